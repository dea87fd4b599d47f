"""Judge every key of an account against its policy, open and close findings, verify migrations.

Runs after every complete snapshot (inside the snapshot's transaction) and whenever a policy,
exception or migration changes. Idempotent: running it twice at the same ``now`` changes nothing.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from inventory.choices import (
    STALE_STATES,
    CloseReason,
    ExceptionStatus,
    KeyState,
    KeyStatus,
    MigrationStatus,
    VerifiedBy,
)
from inventory.models import (
    AccessKey,
    Account,
    AuditEvent,
    Finding,
    KeyMigration,
    PolicyException,
    RotationPolicy,
)
from inventory.policy import KeyFacts, Policy, key_state, whole_days
from inventory.services.audit import audit_event
from inventory.services.kpis import roll_up_account

logger = logging.getLogger(__name__)

KEY_FIELDS = (
    "id", "access_key_id", "user_id", "status", "created", "last_used_at", "deleted", "is_root",
    "state",
)  # fmt: skip


@dataclass
class Evaluation:
    """What one evaluation of one account did."""

    keys: int = 0
    states: dict[int, KeyState] = field(default_factory=dict)  # key pk -> state
    changed: int = 0
    opened: int = 0
    closed: int = 0
    verified: int = 0


def global_policy() -> RotationPolicy:
    policy, _ = RotationPolicy.objects.get_or_create(account=None)
    return policy


def effective_policy(account: Account) -> Policy:
    """The account's override, or the global policy (one query when the global one exists)."""
    # NULLS LAST: the override (account set) comes before the global policy.
    rows = RotationPolicy.objects.filter(Q(account=account) | Q(account__isnull=True))
    found = rows.order_by(F("account").asc(nulls_last=True)).first()
    return (found or global_policy()).rules()


def _facts(row: dict) -> KeyFacts:
    return KeyFacts(
        active=row["status"] == KeyStatus.ACTIVE,
        created=row["created"],
        last_used_at=row["last_used_at"],
        deleted=row["deleted"],
        is_root=row["is_root"],
    )


def _close_reason(row: dict, state: KeyState, finding: Finding, rows_by_user) -> CloseReason:
    if state in (KeyState.DELETED, KeyState.INACTIVE):
        # Rotated: retired while its user holds a newer active key (the usual rotation: create
        # a key, move the workload, retire the old one — whether before or after the finding).
        rotated = any(
            other["id"] != row["id"]
            and not other["deleted"]
            and other["status"] == KeyStatus.ACTIVE
            and other["created"] > row["created"]
            for other in rows_by_user[row["user_id"]]
        )
        if rotated:
            return CloseReason.ROTATED
        return CloseReason.DELETED if state == KeyState.DELETED else CloseReason.DEACTIVATED
    if state == KeyState.MIGRATED:
        return CloseReason.MIGRATED
    if state == KeyState.EXCEPTED:
        return CloseReason.EXCEPTED
    # Only an idle key leaves its finding by being used: an overdue key in daily use that
    # complies again did so because the policy changed.
    used = row["last_used_at"] and row["last_used_at"] > finding.opened_at
    if finding.kind == KeyState.UNUSED and used:
        return CloseReason.USED
    return CloseReason.POLICY


def _verification(mark: KeyMigration, row: dict, policy: Policy, now: datetime) -> str:
    if row["deleted"]:
        return VerifiedBy.DELETED
    if row["status"] != KeyStatus.ACTIVE:
        return VerifiedBy.DEACTIVATED
    since = max(mark.marked_at, row["last_used_at"] or mark.marked_at)
    if whole_days(since, now) >= policy.unused_days:
        return VerifiedBy.UNUSED
    return ""


@transaction.atomic
def evaluate_account(account: Account, now: datetime | None = None, actor=None) -> Evaluation:
    """Evaluate every key of ``account`` that can still change (deleted keys once).

    Evaluations of one account are serialised by a lock on its row, and never go back in time:
    a snapshot that started before the last evaluation is judged at that evaluation's moment,
    so that it cannot reopen what was closed or close a finding before it opened."""
    now = now or timezone.now()
    locked = Account.objects.select_for_update().only("evaluated_at").get(pk=account.pk)
    if locked.evaluated_at is not None and locked.evaluated_at > now:
        now = locked.evaluated_at
    else:
        Account.objects.filter(pk=account.pk).update(evaluated_at=now)
    account.evaluated_at = now
    policy = effective_policy(account)
    result = Evaluation()
    events: list[AuditEvent] = []
    acct = account.account_id

    rows = list(
        AccessKey.objects.filter(account=account)
        .filter(Q(deleted=False) | ~Q(state=KeyState.DELETED))
        .values(*KEY_FIELDS)
    )
    rows_by_id = {row["id"]: row for row in rows}
    rows_by_user: dict[int, list[dict]] = defaultdict(list)
    for row in rows:
        rows_by_user[row["user_id"]].append(row)

    covering = PolicyException.objects.filter(
        account=account, status=ExceptionStatus.APPROVED, expires_at__gt=now
    ).values_list("key_id", "iam_user_id")
    excepted_keys = {k for k, _ in covering if k}
    excepted_users = {u for _, u in covering if u}
    marks = {m.key_id: m for m in KeyMigration.objects.filter(account=account, withdrawn_at=None)}
    open_findings = {
        f.key_id: f for f in Finding.objects.filter(account=account, closed_at__isnull=True)
    }

    # Migrations first: a verified "migrating" mark becomes "migrated", which the state reads.
    for mark in marks.values():
        row = rows_by_id.get(mark.key_id)
        if row is None or mark.verified_at is not None:
            continue
        how = _verification(mark, row, policy, now)
        if how:
            before = {"status": mark.status, "verified_at": None}
            mark.verified_at, mark.verified_by, mark.status = now, how, MigrationStatus.MIGRATED
            mark.save(update_fields=["verified_at", "verified_by", "status"])
            after = {"status": mark.status, "verified_at": now.isoformat(), "verified_by": how}
            events.append(
                audit_event(
                    "migration.verify",
                    mark,
                    actor=actor,
                    before=before,
                    after=after,
                    account_id=acct,
                    at=now,
                )
            )
            result.verified += 1

    changed: dict[KeyState, list[int]] = defaultdict(list)
    to_open: list[Finding] = []
    to_close: dict[CloseReason, list[Finding]] = defaultdict(list)
    for row in rows:
        mark = marks.get(row["id"])
        state = key_state(
            _facts(row),
            policy,
            now,
            migrated=mark is not None and mark.status == MigrationStatus.MIGRATED,
            excepted=row["id"] in excepted_keys or row["user_id"] in excepted_users,
        )
        result.states[row["id"]] = state
        if state != row["state"]:
            changed[state].append(row["id"])
        finding = open_findings.get(row["id"])
        if state in STALE_STATES and finding is None:
            to_open.append(Finding(key_id=row["id"], account=account, kind=state, opened_at=now))
        elif state not in STALE_STATES and finding is not None:
            to_close[_close_reason(row, state, finding, rows_by_user)].append(finding)

    for state, ids in changed.items():
        AccessKey.objects.filter(pk__in=ids).update(state=state, state_since=now)
    Finding.objects.bulk_create(to_open)
    for reason, findings in to_close.items():
        Finding.objects.filter(pk__in=[f.pk for f in findings]).update(
            closed_at=now, close_reason=reason
        )
        for f in findings:
            events.append(
                audit_event(
                    "finding.close",
                    f,
                    actor=actor,
                    before={"closed_at": None},
                    after={"closed_at": now.isoformat(), "close_reason": reason},
                    account_id=acct,
                    at=now,
                )
            )
    for f in to_open:
        events.append(
            audit_event(
                "finding.open",
                f,
                actor=actor,
                after={"key": f.key_id, "kind": f.kind, "opened_at": now.isoformat()},
                account_id=acct,
                at=now,
            )
        )
    AuditEvent.objects.bulk_create(events)

    result.keys = len(rows)
    result.changed = sum(len(ids) for ids in changed.values())
    result.opened = len(to_open)
    result.closed = sum(len(fs) for fs in to_close.values())
    return result


def evaluate_all_accounts(now: datetime | None = None) -> dict[str, Evaluation | Exception]:
    """Judge every account again and refresh its roll-ups of the day, each in its own
    transaction: time passes (keys age, exceptions expire) even when no snapshot comes.

    One account's failure is logged and returned; the others are still judged."""
    now = now or timezone.now()
    results: dict[str, Evaluation | Exception] = {}
    for account in Account.objects.all():
        try:
            with transaction.atomic():
                results[account.account_id] = evaluate_account(account, now)
                roll_up_account(account, account.evaluated_at or now)
        except Exception as exc:  # one account's error must not stop the daily pass
            logger.exception("evaluating account %s failed", account.account_id)
            results[account.account_id] = exc
    return results
