"""Marks that a key's workload moves to an IAM role; verified by the evaluation."""

from __future__ import annotations

from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from inventory.choices import MigrationStatus
from inventory.models import AccessKey, KeyMigration
from inventory.roles import can_manage_key
from inventory.services.audit import fields_of, record
from inventory.services.errors import GovernanceError, NotAllowed
from inventory.services.evaluation import evaluate_account
from inventory.validators import validate_role_arn

AUDITED = ["status", "role_arn", "note", "verified_at", "verified_by", "withdrawn_at"]


@transaction.atomic
def mark_migration(
    key: AccessKey,
    *,
    by,
    status: str,
    role_arn: str,
    note: str = "",
    now: datetime | None = None,
) -> KeyMigration:
    """Mark ``key`` migrating or migrated to ``role_arn`` (or update the live mark)."""
    now = now or timezone.now()
    if not can_manage_key(by, key):
        raise NotAllowed("Only the key's owner or an approver can mark a migration.")
    if key.is_root:
        raise GovernanceError(
            "Root-account keys cannot be migrated to a role: delete them (they are always critical)."
        )
    if key.deleted:
        raise GovernanceError("This key no longer exists in AWS: there is nothing to migrate.")
    if status not in MigrationStatus.values:
        raise GovernanceError(f"Unknown migration status {status!r}.")
    role_arn = role_arn.strip()
    try:
        validate_role_arn(role_arn)
    except ValidationError as exc:
        raise GovernanceError(exc.messages[0]) from None
    mark = (
        KeyMigration.objects.select_for_update().filter(key=key, withdrawn_at__isnull=True).first()
    )
    before = fields_of(mark, AUDITED) if mark else None
    if mark is None:
        mark = KeyMigration(key=key, account=key.account, marked_by=by, marked_at=now)
    if mark.pk and status == MigrationStatus.MIGRATING and mark.status != status:
        # The owner says the move is not finished after all: verify it again from scratch,
        # counting idle days from this new mark.
        mark.verified_at, mark.verified_by = None, ""
        mark.marked_at, mark.marked_by = now, by
    mark.status, mark.role_arn, mark.note = status, role_arn, note.strip()
    mark.save()
    record(
        "migration.mark",
        mark,
        actor=by,
        before=before,
        after=fields_of(mark, AUDITED),
        account_id=key.account.account_id,
        at=now,
    )
    evaluate_account(key.account, now, actor=by)
    return mark


@transaction.atomic
def withdraw_migration(key: AccessKey, *, by, now: datetime | None = None) -> KeyMigration:
    """Withdraw the live mark; the key is judged on its own again."""
    now = now or timezone.now()
    if not can_manage_key(by, key):
        raise NotAllowed("Only the key's owner or an approver can withdraw a migration mark.")
    mark = (
        KeyMigration.objects.select_for_update().filter(key=key, withdrawn_at__isnull=True).first()
    )
    if mark is None:
        raise GovernanceError("This key has no migration mark to withdraw.")
    before = fields_of(mark, AUDITED)
    mark.withdrawn_at, mark.withdrawn_by = now, by
    mark.save(update_fields=["withdrawn_at", "withdrawn_by"])
    record(
        "migration.withdraw",
        mark,
        actor=by,
        before=before,
        after=fields_of(mark, AUDITED),
        account_id=key.account.account_id,
        at=now,
    )
    evaluate_account(key.account, now, actor=by)
    return mark
