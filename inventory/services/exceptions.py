"""Policy exceptions: requested by one person, approved or rejected by another."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from inventory.choices import ExceptionStatus
from inventory.models import AccessKey, IamUser, PolicyException
from inventory.models.governance import MAX_EXCEPTION_DAYS
from inventory.roles import APPROVER, OWNER, can_manage_key, has_role
from inventory.services.audit import fields_of, record
from inventory.services.errors import GovernanceError, NotAllowed
from inventory.services.evaluation import evaluate_account

AUDITED = ["status", "reason", "expires_at", "decided_by", "decided_at", "decision_comment"]


@transaction.atomic
def request_exception(
    *,
    requested_by,
    reason: str,
    expires_at: datetime,
    key: AccessKey | None = None,
    iam_user: IamUser | None = None,
    now: datetime | None = None,
) -> PolicyException:
    """File a pending exception for a key or for every key of an IAM user."""
    now = now or timezone.now()
    if (key is None) == (iam_user is None):
        raise GovernanceError("An exception covers either one key or one IAM user.")
    if key is not None:
        if not can_manage_key(requested_by, key):
            raise NotAllowed("Only the key's owner or an approver can request an exception.")
        if key.is_root:
            raise GovernanceError(
                "Root-account keys cannot be excepted: they are always critical. Delete them."
            )
        if key.deleted:
            raise GovernanceError("This key no longer exists in AWS.")
        account = key.account
    else:
        if not has_role(requested_by, APPROVER) and not (
            has_role(requested_by, OWNER)
            and iam_user.owner
            and iam_user.owner == (requested_by.email or "").lower()
        ):
            raise NotAllowed("Only the user's owner or an approver can request an exception.")
        if iam_user.is_root:
            raise GovernanceError(
                "The root user's keys cannot be excepted: they are always critical."
            )
        account = iam_user.account
    if not reason.strip():
        raise GovernanceError("Say why the key cannot follow the policy.")
    if expires_at <= now:
        raise GovernanceError("The expiry must be in the future.")
    if expires_at > now + timedelta(days=MAX_EXCEPTION_DAYS):
        raise GovernanceError(f"An exception lasts at most {MAX_EXCEPTION_DAYS} days.")
    exc = PolicyException.objects.create(
        key=key,
        iam_user=iam_user,
        account=account,
        reason=reason.strip(),
        expires_at=expires_at,
        requested_by=requested_by,
        requested_at=now,
    )
    record(
        "exception.request",
        exc,
        actor=requested_by,
        after=fields_of(exc, ["key", "iam_user", *AUDITED]),
        account_id=account.account_id,
        at=now,
    )
    return exc


@transaction.atomic
def decide_exception(
    exception_id: int, *, approver, approve: bool, comment: str = "", now: datetime | None = None
) -> PolicyException:
    """Approve or reject a pending exception. The requester can never decide their own; two
    approvers deciding at once cannot both succeed (conditional UPDATE on ``pending``)."""
    now = now or timezone.now()
    if not has_role(approver, APPROVER):
        raise NotAllowed("Only approvers decide exceptions.")
    exc = PolicyException.objects.select_related("account").get(pk=exception_id)
    if exc.requested_by_id == approver.pk:
        raise NotAllowed("You requested this exception: another approver must decide it.")
    if approve and exc.expires_at <= now:
        raise GovernanceError("This exception has already expired; request a new one.")
    before = fields_of(exc, AUDITED)
    status = ExceptionStatus.APPROVED if approve else ExceptionStatus.REJECTED
    updated = (
        PolicyException.objects.filter(pk=exc.pk, status=ExceptionStatus.PENDING)
        .exclude(requested_by=approver)
        .update(status=status, decided_by=approver, decided_at=now, decision_comment=comment)
    )
    if updated != 1:
        raise GovernanceError(f"This exception is no longer pending (it is {exc.status}).")
    exc.refresh_from_db()
    record(
        f"exception.{'approve' if approve else 'reject'}",
        exc,
        actor=approver,
        before=before,
        after=fields_of(exc, AUDITED),
        account_id=exc.account.account_id,
        at=now,
    )
    if approve:
        evaluate_account(exc.account, now, actor=approver)
    return exc


@transaction.atomic
def cancel_exception(exception_id: int, *, by, now: datetime | None = None) -> PolicyException:
    """The requester withdraws a pending request."""
    now = now or timezone.now()
    exc = PolicyException.objects.select_related("account").get(pk=exception_id)
    if exc.requested_by_id != by.pk:
        raise NotAllowed("Only the requester can cancel a request.")
    before = fields_of(exc, AUDITED)
    if not PolicyException.objects.filter(pk=exc.pk, status=ExceptionStatus.PENDING).update(
        status=ExceptionStatus.CANCELLED
    ):
        raise GovernanceError(f"This exception is no longer pending (it is {exc.status}).")
    exc.refresh_from_db()
    record(
        "exception.cancel",
        exc,
        actor=by,
        before=before,
        after=fields_of(exc, AUDITED),
        account_id=exc.account.account_id,
        at=now,
    )
    return exc
