"""Owner alerts: one digest e-mail a day per person, each alert in it sent once.

What is alerted (PRODUCT.md, "Owner alerts"), to the key's owner:

- ``due_soon``: at ``due-14`` and ``due-7`` (``KEYGOV_ALERT_DAYS``): when at most that many
  whole days are left before the key's deadline (``policy.deadline``, the account's policy);
- ``overdue``: ``overdue-week-0`` on the first day overdue, then weekly (``-week-1``...)
  while it stays overdue (``KEYGOV_ALERT_OVERDUE_EVERY_DAYS``);
- ``unused``: the same weekly cadence from the day the key became unused;
- ``unapproved``: once, for a key that appeared without an approved key request;
- ``exception``: an approved exception that covers the key (or its IAM user) expires in at most
  14, then 7 days.

An owner tag that is not an e-mail address, or no owner tag, sends the key's alerts to the
admins instead. Approvers get pending exceptions and key requests (not their own), when new and
then weekly while pending.

Sent once: every alert is an ``AlertRecord`` (recipient, object, kind, milestone) under a unique
constraint. The run decides and claims its records in one transaction, sends after commit, and
marks a record sent only when the e-mail backend accepted the digest. A failed digest releases
its claim: the next run sends it again while its milestone is still current. A worker killed
between the send and the mark leaves a claim that expires after ``CLAIM_TTL``; that alert may
then go out twice (at least once, rather than possibly never).
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import Q
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone

from inventory.choices import ExceptionStatus, KeyState, KeyStatus
from inventory.models import (
    AccessKey,
    AlertRecord,
    KeyRequest,
    KeyRequestStatus,
    PolicyException,
    RotationPolicy,
)
from inventory.models.alerts import AlertAudience, AlertKind
from inventory.policy import KeyFacts, Policy, deadline, key_state, whole_days
from inventory.roles import ADMIN, APPROVER
from inventory.services.notifications import (
    absolute_url,
    post_to_slack,
    render_message,
    send_message,
)

log = logging.getLogger(__name__)

# A claim older than this belongs to a run that died: its alerts may be sent again.
CLAIM_TTL = timedelta(hours=6)


@dataclass(frozen=True)
class Cadence:
    """When alerts fall due: days before a deadline (largest first), and every how many days a
    stale key or pending decision is recalled (0: once)."""

    alert_days: tuple[int, ...] = (14, 7)
    repeat_days: int = 7

    @classmethod
    def from_settings(cls) -> Cadence:
        return cls(
            alert_days=tuple(sorted(settings.KEYGOV_ALERT_DAYS, reverse=True)),
            repeat_days=settings.KEYGOV_ALERT_OVERDUE_EVERY_DAYS,
        )


# --- Pure rules -----------------------------------------------------------------------------


def countdown_milestone(days_left: int, alert_days: tuple[int, ...], prefix: str) -> str | None:
    """``"<prefix>-D"`` for the smallest alert day D with ``days_left <= D``: a key first seen
    with 5 days left gets ``due-7`` only, never ``due-14`` as well. None before the first."""
    if days_left < 0:
        return None
    due = [d for d in alert_days if days_left <= d]
    return f"{prefix}-{min(due)}" if due else None


def repeat_milestone(since: datetime, now: datetime, every: int, prefix: str) -> str:
    """``"<prefix>-week-N"``: the N-th recall of something that has lasted since ``since``
    (``-week-0`` on its first day). With ``every`` other than 7 the period is named in days."""
    if every <= 0:
        return prefix
    n = whole_days(since, now) // every
    return f"{prefix}-week-{n}" if every == 7 else f"{prefix}-{every}d-{n}"


def unused_since(facts: KeyFacts, policy: Policy) -> datetime:
    """The first moment ``key_state`` judges the key unused (idle and past its grace)."""
    idle_from = facts.last_used_at or facts.created
    return max(
        idle_from + timedelta(days=policy.unused_days + 1),
        facts.created + timedelta(days=policy.new_key_grace_days + 1),
    )


def key_milestone(
    facts: KeyFacts, policy: Policy, now: datetime, cadence: Cadence
) -> tuple[str, str] | None:
    """``(kind, milestone)`` of the alert a key is due now, or None."""
    state = key_state(facts, policy, now)
    if state == KeyState.OVERDUE:
        limit = deadline(facts, policy)
        since = limit if limit <= now else facts.created  # root keys: overdue from the start
        return AlertKind.OVERDUE, repeat_milestone(since, now, cadence.repeat_days, "overdue")
    if state == KeyState.UNUSED:
        since = unused_since(facts, policy)
        return AlertKind.UNUSED, repeat_milestone(since, now, cadence.repeat_days, "unused")
    if state in (KeyState.DUE_SOON, KeyState.OK):
        left = (deadline(facts, policy) - now).days
        milestone = countdown_milestone(left, cadence.alert_days, "due")
        if milestone:
            return AlertKind.DUE_SOON, milestone
    return None


def is_email(value: str) -> bool:
    try:
        validate_email(value)
    except ValidationError:
        return False
    return True


# --- Deciding -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Alert:
    """One line of a digest, and the identity under which it is recorded."""

    audience: str
    recipient: str
    object_type: str
    object_id: str
    kind: str
    milestone: str
    title: str
    detail: str
    url: str
    owner: str = ""  # for the admins' list: the owner tag that could not be mailed

    @property
    def identity(self) -> tuple[str, str, str, str, str]:
        return (self.recipient, self.object_type, self.object_id, self.kind, self.milestone)


@dataclass
class AlertRun:
    """What one run decided and sent."""

    alerts: list[Alert] = field(default_factory=list)  # decided now (or again, after a failure)
    sent: list[str] = field(default_factory=list)  # recipients whose digest went out
    failed: list[str] = field(default_factory=list)
    digests: dict[str, list[Alert]] = field(default_factory=dict)

    def summary(self) -> str:
        counts = defaultdict(int)
        for alert in self.alerts:
            counts[alert.kind] += 1
        kinds = ", ".join(f"{n} {AlertKind(k).label.lower()}" for k, n in sorted(counts.items()))
        text = f"{len(self.alerts)} alerts in {len(self.digests)} digests"
        if kinds:
            text += f" ({kinds})"
        if self.failed:
            text += f"; {len(self.failed)} digests not sent (retried next run)"
        return text


def _policies() -> tuple[Policy, dict[int, Policy]]:
    """The global policy and every account override: one query."""
    rows = list(RotationPolicy.objects.all())
    glob = next((p.rules() for p in rows if p.account_id is None), Policy())
    return glob, {p.account_id: p.rules() for p in rows if p.account_id is not None}


def _key_title(row: dict) -> str:
    account = row["account__name"] or row["account__account_id"]
    return f"{row['access_key_id']} (IAM user {row['user__name']}, account {account})"


def _key_url(access_key_id: str) -> str:
    return absolute_url(reverse("inventory:accesskey_detail", args=[access_key_id]))


def _people(role: str) -> list[tuple[int, str]]:
    """(user id, e-mail) of the active users with ``role`` or above and an e-mail address."""
    names = [APPROVER, ADMIN] if role == APPROVER else [ADMIN]
    rows = (
        get_user_model()
        .objects.filter(is_active=True)
        .filter(Q(groups__name__in=names) | Q(is_superuser=True))
        .exclude(email="")
        .values_list("pk", "email")
        .distinct()
    )
    return sorted({(pk, email.strip().lower()) for pk, email in rows}, key=lambda p: p[1])


def _route(owner: str, admins: list[str], **alert) -> list[Alert]:
    """The alert for the owner, or for each admin when the owner cannot be mailed."""
    if owner and is_email(owner):
        return [Alert(audience=AlertAudience.OWNER, recipient=owner, owner=owner, **alert)]
    return [
        Alert(audience=AlertAudience.ADMIN, recipient=admin, owner=owner, **alert)
        for admin in admins
    ]


def decide_alerts(now: datetime, cadence: Cadence) -> list[Alert]:
    """Every alert due at ``now``, whether or not it was already sent (the records decide).

    A fixed number of queries: policies, candidate keys, expiring exceptions, pending decisions
    and the people with roles."""
    glob, overrides = _policies()
    admins = [email for _, email in _people(ADMIN)]
    approvers = _people(APPROVER)
    furthest = max(cadence.alert_days, default=0)
    every = [glob, *overrides.values()]
    # SQL narrows to keys that can be due soon, stale, or unapproved under some policy.
    young = min(p.max_age_days - furthest for p in every)
    idle = min(min(p.unused_days, p.new_key_grace_days) for p in every)
    rows = (
        AccessKey.objects.filter(deleted=False, status=KeyStatus.ACTIVE)
        .exclude(state__in=[KeyState.EXCEPTED, KeyState.MIGRATED])
        .annotate(idle_from=Coalesce("last_used_at", "created"))
        .filter(
            Q(created__lt=now - timedelta(days=max(young, 0)))
            | Q(idle_from__lt=now - timedelta(days=idle))
            | Q(unapproved=True)
            | Q(is_root=True)
        )
        .order_by("account_id", "access_key_id")
        .values(
            "id",
            "access_key_id",
            "created",
            "last_used_at",
            "is_root",
            "unapproved",
            "account_id",
            "account__account_id",
            "account__name",
            "user__name",
            "user__owner",
        )
    )
    alerts: list[Alert] = []
    for row in rows:
        policy = overrides.get(row["account_id"], glob)
        facts = KeyFacts(
            active=True,
            created=row["created"],
            last_used_at=row["last_used_at"],
            is_root=row["is_root"],
        )
        common = {
            "object_type": "key",
            "object_id": row["access_key_id"],
            "title": _key_title(row),
            "url": _key_url(row["access_key_id"]),
        }
        due = key_milestone(facts, policy, now, cadence)
        if due is not None:
            kind, milestone = due
            alerts += _route(
                row["user__owner"],
                admins,
                kind=kind,
                milestone=milestone,
                detail=_key_detail(kind, facts, policy, now),
                **common,
            )
        if row["unapproved"]:
            alerts += _route(
                row["user__owner"],
                admins,
                kind=AlertKind.UNAPPROVED,
                milestone="unapproved",
                detail="It appeared in AWS without an approved key request.",
                **common,
            )
    alerts += _expiring_exceptions(now, cadence, furthest, admins)
    alerts += _pending_decisions(now, cadence, approvers)
    return alerts


def _key_detail(kind: str, facts: KeyFacts, policy: Policy, now: datetime) -> str:
    age = whole_days(facts.created, now)
    limit = deadline(facts, policy)
    if kind == AlertKind.OVERDUE:
        if facts.is_root:
            return "A root-account key: always critical. Delete it."
        return (
            f"{age} days old, overdue since {limit:%Y-%m-%d} (maximum {policy.max_age_days} "
            "days): rotate it now."
        )
    if kind == AlertKind.UNUSED:
        idle = whole_days(facts.last_used_at or facts.created, now)
        used = f"last used {idle} days ago" if facts.last_used_at else "never used"
        return f"Active but {used}: deactivate or delete it if nothing needs it."
    left = (limit - now).days
    return f"{age} days old: rotate it before {limit:%Y-%m-%d} ({left} days left)."


def _expiring_exceptions(
    now: datetime, cadence: Cadence, furthest: int, admins: list[str]
) -> list[Alert]:
    exceptions = PolicyException.objects.filter(
        status=ExceptionStatus.APPROVED,
        expires_at__gt=now,
        expires_at__lte=now + timedelta(days=furthest + 1),
    ).select_related("key__user", "iam_user", "account")
    alerts = []
    for exc in exceptions:
        milestone = countdown_milestone(
            (exc.expires_at - now).days, cadence.alert_days, "exception"
        )
        if milestone is None:
            continue
        if exc.key is not None:
            owner, what, url = (
                exc.key.user.owner,
                f"key {exc.key.access_key_id}",
                _key_url(exc.key.access_key_id),
            )
        else:
            owner, what = exc.iam_user.owner, f"every key of IAM user {exc.iam_user.name}"
            url = absolute_url(reverse("inventory:exception_list"))
        alerts += _route(
            owner,
            admins,
            object_type="exception",
            object_id=str(exc.pk),
            kind=AlertKind.EXCEPTION_EXPIRING,
            milestone=milestone,
            title=f"Exception for {what} in account {exc.account}",
            detail=(
                f"Expires {exc.expires_at:%Y-%m-%d %H:%M} UTC: the policy applies again "
                "after that. Rotate the key or ask for a new exception."
            ),
            url=url,
        )
    return alerts


def _pending_decisions(
    now: datetime, cadence: Cadence, approvers: list[tuple[int, str]]
) -> list[Alert]:
    """Pending exceptions and key requests, for every approver but their requester."""
    items = []
    for exc in PolicyException.objects.filter(status=ExceptionStatus.PENDING).select_related(
        "key", "iam_user", "account", "requested_by"
    ):
        what = f"key {exc.key.access_key_id}" if exc.key else f"IAM user {exc.iam_user.name}"
        items.append(
            (
                exc,
                "exception",
                AlertKind.PENDING_EXCEPTION,
                f"Exception for {what} in account {exc.account}",
                absolute_url(reverse("inventory:exception_list") + "?status=pending"),
            )
        )
    for req in KeyRequest.objects.filter(status=KeyRequestStatus.PENDING).select_related(
        "iam_user", "account", "requested_by"
    ):
        items.append(
            (
                req,
                "request",
                AlertKind.PENDING_REQUEST,
                f"{req}: a new key for IAM user {req.iam_user.name} in account {req.account}",
                absolute_url(req.get_absolute_url()),
            )
        )
    alerts = []
    for obj, object_type, kind, title, url in items:
        milestone = repeat_milestone(obj.requested_at, now, cadence.repeat_days, "pending")
        by = obj.requested_by.get_username()
        waiting = whole_days(obj.requested_at, now)
        for pk, email in approvers:
            if pk == obj.requested_by_id:
                continue  # nobody decides their own request
            alerts.append(
                Alert(
                    audience=AlertAudience.APPROVER,
                    recipient=email,
                    object_type=object_type,
                    object_id=str(obj.pk),
                    kind=kind,
                    milestone=milestone,
                    title=title,
                    detail=f"Requested by {by}, waiting for {waiting} days.",
                    url=url,
                )
            )
    return alerts


# --- Recording and sending ------------------------------------------------------------------


def _claim(alerts: list[Alert], now: datetime, token: str) -> set[tuple]:
    """Record the alerts (existing records stay as they are) and claim those not yet sent and
    not held by another live run. Returns the identities this run now holds."""
    AlertRecord.objects.bulk_create(
        [
            AlertRecord(
                audience=a.audience,
                recipient=a.recipient,
                object_type=a.object_type,
                object_id=a.object_id,
                kind=a.kind,
                milestone=a.milestone,
                decided_at=now,
            )
            for a in alerts
        ],
        ignore_conflicts=True,
        batch_size=1000,
    )
    wanted = {a.identity for a in alerts}
    # Unsent records are few (today's, and failures): read them by recipient, match here.
    free = AlertRecord.objects.filter(
        recipient__in={a.recipient for a in alerts}, sent_at__isnull=True
    ).filter(Q(claim="") | Q(claimed_at__lt=now - CLAIM_TTL))
    ids = [
        pk
        for pk, *identity in free.values_list(
            "pk", "recipient", "object_type", "object_id", "kind", "milestone"
        )
        if tuple(identity) in wanted
    ]
    # Conditional: a concurrent run that claimed a record first keeps it.
    AlertRecord.objects.filter(pk__in=ids, sent_at__isnull=True).filter(
        Q(claim="") | Q(claimed_at__lt=now - CLAIM_TTL)
    ).update(claim=token, claimed_at=now)
    return set(
        AlertRecord.objects.filter(claim=token).values_list(
            "recipient", "object_type", "object_id", "kind", "milestone"
        )
    )


def digest_message(recipient: str, alerts: list[Alert], now: datetime):
    """One person's digest: their keys by kind, decisions waiting for them, and (for admins)
    keys whose owner cannot be mailed."""
    sections = []
    mine = [a for a in alerts if a.audience == AlertAudience.OWNER]
    for kind in (
        AlertKind.OVERDUE,
        AlertKind.UNUSED,
        AlertKind.DUE_SOON,
        AlertKind.UNAPPROVED,
        AlertKind.EXCEPTION_EXPIRING,
    ):
        lines = [a for a in mine if a.kind == kind]
        if lines:
            sections.append((SECTION_TITLES[kind], lines))
    decisions = [a for a in alerts if a.audience == AlertAudience.APPROVER]
    if decisions:
        sections.append(("Waiting for your decision", decisions))
    orphans = sorted(
        (a for a in alerts if a.audience == AlertAudience.ADMIN), key=lambda a: (a.owner, a.title)
    )
    if orphans:
        sections.append(
            ("Keys whose owner keygov cannot e-mail (unowned or not an address)", orphans)
        )
    n = len(alerts)
    subject = f"[keygov] {n} key alert{'s' if n != 1 else ''} for {now:%Y-%m-%d}"
    return render_message(
        [recipient],
        subject,
        "digest",
        {"recipient": recipient, "sections": sections, "now": now, "count": n},
    )


SECTION_TITLES = {
    AlertKind.OVERDUE: "Overdue: rotate now",
    AlertKind.UNUSED: "Unused: deactivate or delete",
    AlertKind.DUE_SOON: "Due soon",
    AlertKind.UNAPPROVED: "Created without an approved request",
    AlertKind.EXCEPTION_EXPIRING: "Exceptions ending soon",
}


def send_alerts(
    now: datetime | None = None, *, cadence: Cadence | None = None, dry_run: bool = False
) -> AlertRun:
    """Decide today's alerts, record and claim them in one transaction, then send one digest
    per recipient. ``dry_run`` records and sends nothing: it returns what would be sent."""
    now = now or timezone.now()
    cadence = cadence or Cadence.from_settings()
    decided = decide_alerts(now, cadence)
    run = AlertRun()
    if dry_run:
        sent = set(
            AlertRecord.objects.filter(
                recipient__in={a.recipient for a in decided}, sent_at__isnull=False
            ).values_list("recipient", "object_type", "object_id", "kind", "milestone")
        )
        run.alerts = [a for a in decided if a.identity not in sent]
    else:
        token = uuid.uuid4().hex
        with transaction.atomic():
            held = _claim(decided, now, token) if decided else set()
        run.alerts = [a for a in decided if a.identity in held]
    for alert in run.alerts:
        run.digests.setdefault(alert.recipient, []).append(alert)
    if dry_run:
        return run
    for recipient, alerts in sorted(run.digests.items()):
        ok = send_message(digest_message(recipient, alerts, now))
        records = AlertRecord.objects.filter(claim=token, recipient=recipient)
        if ok:
            records.update(sent_at=timezone.now(), error="")
            run.sent.append(recipient)
        else:
            records.update(claim="", claimed_at=None, error="The e-mail backend refused it.")
            run.failed.append(recipient)
    if run.sent:
        post_to_slack(f"keygov: {run.summary()}. {absolute_url('/')}")
    return run


def unsent_count() -> int:
    """Records decided but never sent (failed, or superseded before a retry succeeded)."""
    return AlertRecord.objects.filter(sent_at__isnull=True).count()
