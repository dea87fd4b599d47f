"""Key requests: approval of new long-term access keys, and their fulfilment.

PRODUCT.md, "Key request". An owner files a request; an approver other than the requester
approves or rejects it; the requester may cancel it while it is pending. An approved request is
fulfilled either by keygov (the account has a write role: CreateAccessKey, the secret into
Secrets Manager, see :func:`fulfil_request`) or, for a read-only account, by the next complete
snapshot that finds a key of that user created after the approval (:func:`link_snapshot_keys`,
called by the ingest). A key that appears without an approved request is flagged ``unapproved``.

Every transition is one transaction holding the change, its audit row and the e-mails (sent
after commit). A transition is a conditional UPDATE on the state it leaves, so two people
acting at once cannot both succeed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone

from inventory.aws import provisioning
from inventory.aws.connection import AccountTarget, connect
from inventory.aws.errors import AWS_ERRORS, describe_aws_error
from inventory.choices import SnapshotStatus
from inventory.models import (
    AccessKey,
    Account,
    AuditEvent,
    IamUser,
    KeyRequest,
    KeyRequestComment,
    KeyRequestStatus,
    Snapshot,
)
from inventory.roles import APPROVER, OWNER, has_role
from inventory.services.audit import audit_event, fields_of, record
from inventory.services.errors import GovernanceError, NotAllowed
from inventory.services.evaluation import effective_policy
from inventory.services.notifications import notify_transition, transition_recipients

log = logging.getLogger(__name__)

Status = KeyRequestStatus
AUDITED = [
    "status", "review_on", "owner_email", "decided_by", "decided_at", "decision_comment",
    "cancelled_at", "fulfilled_at", "created_access_key_id", "secret_arn", "access_key", "error",
]  # fmt: skip
# A fulfilment that started longer ago than this and never finished was interrupted (a worker
# died between AWS and the database): it is marked failed, never attempted a second time.
FULFILMENT_LEASE = timedelta(minutes=15)
# AWS's CreateDate has whole seconds and its clock is not keygov's: a key created this long
# before the approval still counts as created after it.
CLOCK_TOLERANCE = timedelta(minutes=1)


def max_review_date(account: Account, today: date) -> date:
    """The latest expiry/review date a request may ask for: today + the account's max age."""
    return today + timedelta(days=effective_policy(account).max_age_days)


def _audit(action: str, req: KeyRequest, *, actor, before=None, at=None) -> AuditEvent:
    return record(
        f"keyrequest.{action}",
        req,
        actor=actor,
        before=before,
        after=fields_of(req, AUDITED),
        account_id=req.account.account_id,
        at=at,
    )


def _notify(req: KeyRequest, action: str, actor) -> None:
    """Mail the requester, the decider, the key's owner (and approvers while pending)."""
    people = set(transition_recipients(req, actor))
    actor_email = (getattr(actor, "email", "") or "").strip().lower() if actor else ""
    if req.owner_email and req.owner_email != actor_email:
        people.add(req.owner_email)
    notify_transition(req, f"keyrequest.{action}", actor, recipients=sorted(people))


def _load(request_id: int) -> KeyRequest:
    return KeyRequest.objects.select_related(
        "account", "iam_user", "requested_by", "decided_by"
    ).get(pk=request_id)


# ------------------------------------------------------------------------------------------
# Filing, deciding, cancelling, commenting.


@transaction.atomic
def file_request(
    *,
    requested_by,
    account: Account,
    iam_user: IamUser,
    justification: str,
    why_not_role: str,
    owner_email: str,
    review_on: date,
    now: datetime | None = None,
) -> KeyRequest:
    """File a pending request for a new access key of ``iam_user``."""
    now = now or timezone.now()
    if not has_role(requested_by, OWNER):
        raise NotAllowed("Only owners, approvers and admins can request keys.")
    if iam_user.account_id != account.pk:
        raise GovernanceError(f"IAM user {iam_user.name} is not in account {account}.")
    # One open request per IAM user: lock the user's row so two filings cannot both pass.
    iam_user = IamUser.objects.select_for_update().get(pk=iam_user.pk)
    if iam_user.deleted:
        raise GovernanceError(f"IAM user {iam_user.name} no longer exists in AWS.")
    if iam_user.is_root:
        raise GovernanceError("The root user must never have access keys.")
    if not justification.strip():
        raise GovernanceError("Say what the key is for.")
    if not why_not_role.strip():
        raise GovernanceError(
            "Say why an IAM role (instance profile, task role, IAM Identity Center) will not do."
        )
    owner_email = owner_email.strip().lower()
    try:
        validate_email(owner_email)
    except ValidationError:
        raise GovernanceError("The owner must be an e-mail address.") from None
    today = now.date()
    latest = max_review_date(account, today)
    if review_on <= today:
        raise GovernanceError("The expiry/review date must be in the future.")
    if review_on > latest:
        raise GovernanceError(
            f"The expiry/review date must be on or before {latest:%Y-%m-%d}: the policy allows "
            f"keys of this account at most {(latest - today).days} days."
        )
    open_request = (
        KeyRequest.objects.filter(iam_user=iam_user, status__in=[Status.PENDING, Status.APPROVED])
        .values_list("pk", "status")
        .first()
    )
    if open_request:
        raise GovernanceError(
            f"Request #{open_request[0]} for {iam_user.name} is still {open_request[1]}: "
            "wait for it, or cancel it first."
        )
    req = KeyRequest.objects.create(
        account=account,
        iam_user=iam_user,
        justification=justification.strip(),
        why_not_role=why_not_role.strip(),
        owner_email=owner_email,
        review_on=review_on,
        requested_by=requested_by,
        requested_at=now,
    )
    record(
        "keyrequest.request",
        req,
        actor=requested_by,
        after=fields_of(req, ["iam_user", "justification", "why_not_role", *AUDITED]),
        account_id=account.account_id,
        at=now,
    )
    _notify(req, "request", requested_by)
    return req


def decide_refusal(req: KeyRequest, user) -> str:
    """Why ``user`` may not decide ``req`` ("" when they may)."""
    if not has_role(user, APPROVER):
        return "Only approvers can approve or reject key requests."
    if req.requested_by_id == user.pk:
        return "You filed this request: another approver must decide it."
    if req.status != Status.PENDING:
        return f"This request is {req.get_status_display().lower()}: it is no longer pending."
    return ""


@transaction.atomic
def decide_request(
    request_id: int, *, approver, approve: bool, comment: str, now: datetime | None = None
) -> KeyRequest:
    """Approve or reject a pending request, with a comment. Never the requester's own: refused
    here, by the conditional UPDATE (``exclude(requested_by=approver)``) and by the database's
    check constraint. Of two approvers deciding at once, exactly one succeeds."""
    now = now or timezone.now()
    req = _load(request_id)
    refusal = decide_refusal(req, approver)
    if refusal:
        allowed = has_role(approver, APPROVER) and req.requested_by_id != approver.pk
        raise (GovernanceError if allowed else NotAllowed)(refusal)
    comment = comment.strip()
    if not comment:
        raise GovernanceError("Say why: a decision needs a comment.")
    if approve and req.review_on <= now.date():
        raise GovernanceError(
            "The request's expiry/review date has passed: the requester should file a new one."
        )
    if approve and req.iam_user.deleted:
        raise GovernanceError(f"IAM user {req.iam_user.name} no longer exists in AWS.")
    before = fields_of(req, AUDITED)
    status = Status.APPROVED if approve else Status.REJECTED
    updated = (
        KeyRequest.objects.filter(pk=req.pk, status=Status.PENDING)
        .exclude(requested_by=approver)
        .update(status=status, decided_by=approver, decided_at=now, decision_comment=comment)
    )
    if updated != 1:
        current = KeyRequest.objects.filter(pk=req.pk).values_list("status", flat=True).first()
        raise GovernanceError(
            f"Someone else acted first: this request is now {current}, no longer pending."
        )
    req = _load(req.pk)
    action = "approve" if approve else "reject"
    _audit(action, req, actor=approver, before=before, at=now)
    _notify(req, action, approver)
    if approve and req.account.write_role_arn:
        request_fulfilment(req.pk)
    return req


@transaction.atomic
def cancel_request(request_id: int, *, by, now: datetime | None = None) -> KeyRequest:
    """The requester withdraws their pending request."""
    now = now or timezone.now()
    req = _load(request_id)
    if req.requested_by_id != by.pk:
        raise NotAllowed("Only the requester can cancel a request.")
    before = fields_of(req, AUDITED)
    if not KeyRequest.objects.filter(pk=req.pk, status=Status.PENDING, requested_by=by).update(
        status=Status.CANCELLED, cancelled_at=now
    ):
        req.refresh_from_db(fields=["status"])
        raise GovernanceError(
            f"This request is {req.get_status_display().lower()}: only a pending request "
            "can be cancelled."
        )
    req = _load(req.pk)
    _audit("cancel", req, actor=by, before=before, at=now)
    _notify(req, "cancel", by)
    return req


@transaction.atomic
def add_comment(
    request_id: int, *, author, body: str, now: datetime | None = None
) -> KeyRequestComment:
    """A message in the request's thread (owners, approvers and admins)."""
    now = now or timezone.now()
    if not has_role(author, OWNER):
        raise NotAllowed("Viewers can read requests but not comment on them.")
    body = body.strip()
    if not body:
        raise GovernanceError("A comment cannot be empty.")
    req = _load(request_id)
    comment = KeyRequestComment.objects.create(request=req, author=author, at=now, body=body)
    record(
        "keyrequest.comment",
        req,
        actor=author,
        after={"comment": comment.pk},
        account_id=req.account.account_id,
        at=now,
    )
    return comment


@dataclass(frozen=True)
class RequestActions:
    """What a person may do on a request's page, and why not."""

    can_decide: bool
    decide_refusal: str
    can_cancel: bool
    can_comment: bool
    can_retry: bool


def actions_for(req: KeyRequest, user) -> RequestActions:
    refusal = decide_refusal(req, user)
    return RequestActions(
        can_decide=not refusal,
        decide_refusal=refusal,
        can_cancel=req.status == Status.PENDING and req.requested_by_id == user.pk,
        can_comment=has_role(user, OWNER),
        can_retry=(
            has_role(user, APPROVER)
            and req.status == Status.APPROVED
            and bool(req.account.write_role_arn)
        ),
    )


TIMELINE_LABELS = {
    "keyrequest.request": "Requested",
    "keyrequest.approve": "Approved",
    "keyrequest.reject": "Rejected",
    "keyrequest.cancel": "Cancelled by the requester",
    "keyrequest.fulfil": "Fulfilled",
    "keyrequest.fail": "Fulfilment failed",
}


def timeline(req: KeyRequest) -> list[tuple[str, AuditEvent]]:
    """The request's state history from its audit rows, oldest first, with a label each."""
    events = AuditEvent.objects.filter(
        object_type="keyrequest", object_id=str(req.pk), action__in=list(TIMELINE_LABELS)
    ).order_by("at", "id")
    return [(TIMELINE_LABELS[event.action], event) for event in events]


# ------------------------------------------------------------------------------------------
# Fulfilment through the account's write role.


def request_fulfilment(request_id: int) -> None:
    """Queue the fulfilment task once the current transaction commits."""
    from inventory import tasks  # the tasks module imports the services

    transaction.on_commit(lambda: tasks.fulfil_key_request.delay(request_id))


@transaction.atomic
def _finish(
    req: KeyRequest,
    status: str,
    now: datetime,
    *,
    key_id: str = "",
    secret_arn: str = "",
    error: str = "",
) -> bool:
    before = fields_of(req, AUDITED)
    changes = {"status": status, "error": error}
    if status == Status.FULFILLED:
        changes.update(
            fulfilled_at=now,
            created_access_key_id=key_id,
            secret_arn=secret_arn,
            access_key=AccessKey.objects.filter(access_key_id=key_id).first(),
        )
    if not KeyRequest.objects.filter(pk=req.pk, status=Status.APPROVED).update(**changes):
        return False
    req = _load(req.pk)
    action = "fulfil" if status == Status.FULFILLED else "fail"
    _audit(action, req, actor=None, before=before, at=now)
    _notify(req, action, None)
    return True


def fulfil_request(request_id: int, *, now: datetime | None = None, session=None) -> str:
    """Create the approved key through the account's write role and store its secret in
    Secrets Manager; record only the AccessKeyId and the secret's ARN. Idempotent: a request
    that is not ``approved`` (or that another worker is fulfilling) is left alone. AWS is
    called outside any transaction. Returns a short summary (never the secret)."""
    now = now or timezone.now()
    req = KeyRequest.objects.select_related("account", "iam_user").filter(pk=request_id).first()
    if req is None:
        return f"key request {request_id}: no longer exists"
    if req.status != Status.APPROVED:
        return f"key request {req.pk}: {req.status}, nothing to do"
    account = req.account
    if not account.write_role_arn:
        return f"key request {req.pk}: read-only account, a snapshot will link the new key"
    claimed = KeyRequest.objects.filter(
        pk=req.pk, status=Status.APPROVED, fulfilment_started_at__isnull=True
    ).update(fulfilment_started_at=now)
    if not claimed:
        req.refresh_from_db()
        started = req.fulfilment_started_at
        if req.status == Status.APPROVED and started and started < now - FULFILMENT_LEASE:
            error = (
                f"An earlier attempt that started {started:%Y-%m-%d %H:%M} UTC was interrupted "
                f"before it finished. Check IAM user {req.iam_user.name} for a key created "
                "then, and the secret named after this request in Secrets Manager; file a new "
                "request if none exists."
            )
            _finish(req, Status.FAILED, now, error=error)
            return f"key request {req.pk}: failed ({error})"
        return f"key request {req.pk}: already being fulfilled or {req.status}"

    name = provisioning.secret_name(
        settings.KEYGOV_SECRET_NAME_TEMPLATE,
        account_id=account.account_id,
        user_name=req.iam_user.name,
        request_id=str(req.pk),
    )
    target = AccountTarget(
        account_id=account.account_id,
        role_arn=account.write_role_arn,
        external_id=account.external_id,
    )
    # Imported here: collection imports the ingest, which imports this module.
    from inventory.services.collection import aws_settings

    error = ""
    try:
        aws = replace(aws_settings(), region=settings.KEYGOV_SECRET_REGION)
        conn = connect(target, aws, session=session)
        created = provisioning.create_key_with_secret(
            conn,
            user_name=req.iam_user.name,
            name=name,
            tags={
                "keygov:request-id": str(req.pk),
                "keygov:owner": req.owner_email,
                "keygov:iam-user": req.iam_user.name,
            },
            description=(
                f"Access key of IAM user {req.iam_user.name}, created by keygov for key "
                f"request #{req.pk} (owner {req.owner_email})."
            ),
        )
    except provisioning.ProvisioningError as exc:
        error = str(exc)
    except AWS_ERRORS as exc:  # AssumeRole of the write role
        error = describe_aws_error(exc)
    if error:
        log.warning("key request %s: fulfilment failed: %s", req.pk, error)
        _finish(req, Status.FAILED, timezone.now(), error=error)
        return f"key request {req.pk}: failed ({error})"
    try:
        _finish(
            req,
            Status.FULFILLED,
            timezone.now(),
            key_id=created.access_key_id,
            secret_arn=created.secret_arn,
        )
    except Exception:
        log.exception(
            "key request %s: key %s and secret %s were created but not recorded",
            req.pk,
            created.access_key_id,
            created.secret_arn,
        )
        raise
    log.info("key request %s: created key %s", req.pk, created.access_key_id)
    return f"key request {req.pk}: fulfilled, key {created.access_key_id}"


# ------------------------------------------------------------------------------------------
# Snapshots: link approved requests to their keys; flag the keys nobody approved.


def link_snapshot_keys(
    snapshot: Snapshot, keys: list[AccessKey], new_key_ids: set[str]
) -> dict[str, int]:
    """Called by the ingest inside the snapshot's transaction, once ``keys`` (every key the
    snapshot saw, with primary keys) are written; ``new_key_ids`` are the ones keygov had never
    seen. For each new key of a user with an approved, unclaimed request approved before the
    key was created: link it and mark the request fulfilled (a read-only account's path). A
    new key with no such request is flagged ``unapproved`` — unless it existed before keygov
    first looked at the account. Requests fulfilled by keygov get their key linked.

    A handful of queries whatever the number of keys."""
    account = snapshot.account
    at = snapshot.started_at
    counts = {"linked": 0, "unapproved": 0}
    by_id = {k.access_key_id: k for k in keys}

    # Keys that keygov created: link them to their request once a snapshot sees them.
    for req in KeyRequest.objects.filter(
        account=account, status=Status.FULFILLED, access_key__isnull=True
    ).exclude(created_access_key_id=""):
        key = by_id.get(req.created_access_key_id)
        if key is not None:
            KeyRequest.objects.filter(pk=req.pk, access_key__isnull=True).update(access_key=key)

    recorded = set(
        KeyRequest.objects.filter(
            account=account, created_access_key_id__in=new_key_ids
        ).values_list("created_access_key_id", flat=True)
    )
    new_keys = sorted(
        (
            k
            for k in keys
            if k.access_key_id in new_key_ids and k.access_key_id not in recorded and not k.is_root
        ),
        key=lambda k: k.created,
    )
    if not new_keys:
        return counts
    first_look = (
        Snapshot.objects.filter(account=account, status=SnapshotStatus.COMPLETE)
        .exclude(pk=snapshot.pk)
        .order_by("started_at")
        .values_list("started_at", flat=True)
        .first()
    )
    waiting: dict[int, list[KeyRequest]] = {}
    for req in (
        KeyRequest.objects.select_related("account", "requested_by", "decided_by", "iam_user")
        .filter(iam_user_id__in={k.user_id for k in new_keys}, status=Status.APPROVED)
        .order_by("decided_at", "pk")
    ):
        waiting.setdefault(req.iam_user_id, []).append(req)

    flagged = []
    for key in new_keys:
        candidates = waiting.get(key.user_id, [])
        match = next(
            (
                r
                for r in candidates
                if r.fulfilment_started_at is None and key.created >= r.decided_at - CLOCK_TOLERANCE
            ),
            None,
        )
        if match is not None:
            candidates.remove(match)
            before = fields_of(match, AUDITED)
            KeyRequest.objects.filter(pk=match.pk, status=Status.APPROVED).update(
                status=Status.FULFILLED,
                fulfilled_at=at,
                created_access_key_id=key.access_key_id,
                access_key=key,
            )
            match.refresh_from_db()
            _audit("fulfil", match, actor=None, before=before, at=at)
            _notify(match, "fulfil", None)
            counts["linked"] += 1
            continue
        # keygov is creating this user's key right now: the task records it, not the snapshot.
        in_progress = any(
            r.fulfilment_started_at and key.created >= r.fulfilment_started_at - CLOCK_TOLERANCE
            for r in candidates
        )
        if in_progress:
            continue
        if first_look is not None and key.created > first_look:
            flagged.append(key)
    if flagged:
        AccessKey.objects.filter(pk__in=[k.pk for k in flagged]).update(unapproved=True)
        AuditEvent.objects.bulk_create(
            [
                audit_event(
                    "accesskey.unapproved",
                    key,
                    after={"unapproved": True, "user": key.user_id},
                    account_id=account.account_id,
                    at=at,
                )
                for key in flagged
            ]
        )
        for key in flagged:
            key.unapproved = True
            log.warning(
                "account %s: key %s appeared without an approved request",
                account.account_id,
                key.access_key_id,
            )
        counts["unapproved"] = len(flagged)
    return counts
