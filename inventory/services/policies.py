"""Changing the rotation policy: validated, audited, and followed by a re-evaluation."""

from __future__ import annotations

from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from inventory.models import Account, RotationPolicy
from inventory.services.audit import fields_of, record
from inventory.services.evaluation import evaluate_account

FIELDS = ["account", "max_age_days", "warn_days", "unused_days", "new_key_grace_days"]


@transaction.atomic
def save_policy(
    policy: RotationPolicy, *, by, before: dict | None = None, now: datetime | None = None
) -> RotationPolicy:
    """Validate and save ``policy`` (new or changed), audit it, and re-judge the keys it governs.

    ``before`` is the audited state before the change (None for a new policy)."""
    now = now or timezone.now()
    if before is not None and before.get("account") != policy.account_id:
        # Moving a policy between scopes would silently drop the global policy or an
        # account's override: delete the override and create another instead.
        raise ValidationError({"account": "A policy's account cannot be changed."})
    policy.full_clean()
    policy.save()
    record(
        "policy.create" if before is None else "policy.update",
        policy,
        actor=by,
        before=before,
        after=fields_of(policy, FIELDS),
        account_id=policy.account.account_id if policy.account_id else "",
        at=now,
    )
    if policy.account_id:
        accounts = [policy.account]
    else:
        accounts = list(Account.objects.filter(policy_override__isnull=True))
    for account in accounts:
        evaluate_account(account, now, actor=by)
    return policy


@transaction.atomic
def delete_override(policy: RotationPolicy, *, by, now: datetime | None = None) -> None:
    """Remove an account's override: the global policy applies again."""
    now = now or timezone.now()
    if policy.account_id is None:
        raise ValueError("The global policy cannot be deleted.")
    account = policy.account
    record(
        "policy.delete",
        policy,
        actor=by,
        before=fields_of(policy, FIELDS),
        account_id=account.account_id,
        at=now,
    )
    policy.delete()
    evaluate_account(account, now, actor=by)
