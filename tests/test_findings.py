"""Findings across a series of snapshots: opened when a key turns stale, closed with the reason
it stopped being stale, never duplicated."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import IntegrityError, transaction

from inventory.choices import CloseReason, KeyState, KeyStatus
from inventory.models import AccessKey, AuditEvent, Finding, RotationPolicy
from inventory.services.audit import fields_of
from inventory.services.evaluation import evaluate_account
from inventory.services.exceptions import decide_exception, request_exception
from inventory.services.policies import FIELDS, save_policy
from inventory.services.role_migrations import mark_migration
from tests.gov_factories import (
    ROLE_ARN,
    AccountFactory,
    days,
    key_record,
    person,
    take_snapshot,
    user_record,
)

pytestmark = pytest.mark.django_db

# Creation time of the key under test; snapshots happen at C + n days.
C = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
INACTIVE = KeyStatus.INACTIVE


@pytest.fixture
def account():
    return AccountFactory()


@pytest.fixture
def users(account):
    return [user_record(account, "alice", "alice@example.com")]


def snap(account, users, at, *keys):
    return take_snapshot(account, at, users, list(keys))


def old_key(**kw):
    """The key under test, created at C and used every day up to ``used`` (default: C)."""
    return key_record("AKIAOLD", "alice", C, last_used_at=kw.pop("used", C), **kw)


def state_of(key_id: str) -> str:
    return AccessKey.objects.get(access_key_id=key_id).state


def findings_of(key_id: str):
    return list(Finding.objects.filter(key__access_key_id=key_id).order_by("opened_at"))


def test_it_opens_a_finding_when_a_key_turns_overdue_and_closes_it_when_deleted(account, users):
    """GIVEN snapshots of a key in daily use at 80 days (due soon) and 91 days (overdue)
    WHEN a later snapshot no longer contains the key
    THEN one overdue finding opened at the 91-day snapshot and closed as "deleted" then."""
    snap(account, users, C + days(80), old_key(used=C + days(80)))
    assert state_of("AKIAOLD") == KeyState.DUE_SOON
    assert findings_of("AKIAOLD") == []

    snap(account, users, C + days(91), old_key(used=C + days(91)))
    assert state_of("AKIAOLD") == KeyState.OVERDUE
    [finding] = findings_of("AKIAOLD")
    assert (finding.kind, finding.opened_at, finding.closed_at) == ("overdue", C + days(91), None)

    snap(account, users, C + days(92), old_key(used=C + days(92)))
    assert len(findings_of("AKIAOLD")) == 1  # still the same open finding

    snap(account, users, C + days(95))
    assert state_of("AKIAOLD") == KeyState.DELETED
    [finding] = findings_of("AKIAOLD")
    assert (finding.closed_at, finding.close_reason) == (C + days(95), CloseReason.DELETED)


def test_it_changes_nothing_when_evaluated_twice_at_the_same_time(account, users):
    """GIVEN a snapshot that opened an overdue finding WHEN the account is evaluated again at
    the same time THEN no state changes, no finding opens or closes and no audit row is added."""
    snap(account, users, C + days(100), old_key(used=C + days(99)))
    findings = Finding.objects.count()
    events = AuditEvent.objects.count()
    assert findings == 1
    assert AuditEvent.objects.filter(action="finding.open").count() == 1

    again = evaluate_account(account, C + days(100))
    assert (again.changed, again.opened, again.closed, again.verified) == (0, 0, 0, 0)
    assert again.states[AccessKey.objects.get().pk] == KeyState.OVERDUE
    assert Finding.objects.count() == findings
    assert AuditEvent.objects.count() == events


def test_it_opens_an_unused_finding_for_a_key_never_used(account, users):
    snap(account, users, C + days(45), key_record("AKIAIDLE", "alice", C))
    assert state_of("AKIAIDLE") == KeyState.OK
    snap(account, users, C + days(46), key_record("AKIAIDLE", "alice", C))
    assert state_of("AKIAIDLE") == KeyState.UNUSED
    [finding] = findings_of("AKIAIDLE")
    assert (finding.kind, finding.opened_at) == ("unused", C + days(46))


def test_it_opens_a_finding_for_an_active_root_key_at_once(account, users):
    root = [*users, user_record(account, "<root_account>", is_root=True)]
    snap(account, root, C + days(1), key_record("ROOT-1", "<root_account>", C, is_root=True))
    [finding] = findings_of("ROOT-1")
    assert finding.kind == KeyState.OVERDUE
    assert finding.opened_at == C + days(1)


def test_it_closes_as_rotated_when_a_new_key_replaces_a_deactivated_one(account, users):
    """GIVEN an overdue key with an open finding
    WHEN the next snapshot shows a new active key of the same user and the old one Inactive
    THEN the finding closes as "rotated" and the new key is ok."""
    snap(account, users, C + days(91), old_key(used=C + days(91)))
    new = key_record("AKIANEW", "alice", C + days(92), last_used_at=C + days(93))
    snap(account, users, C + days(93), old_key(used=C + days(92), status=INACTIVE), new)
    [finding] = findings_of("AKIAOLD")
    assert (finding.closed_at, finding.close_reason) == (C + days(93), CloseReason.ROTATED)
    assert state_of("AKIAOLD") == KeyState.INACTIVE
    assert state_of("AKIANEW") == KeyState.OK
    assert findings_of("AKIANEW") == []


def test_it_closes_as_rotated_when_a_new_key_replaces_a_deleted_one(account, users):
    snap(account, users, C + days(91), old_key(used=C + days(91)))
    new = key_record("AKIANEW", "alice", C + days(92), last_used_at=C + days(93))
    snap(account, users, C + days(93), new)
    [finding] = findings_of("AKIAOLD")
    assert finding.close_reason == CloseReason.ROTATED


def test_it_closes_as_deactivated_when_the_key_is_switched_off_without_replacement(account, users):
    """GIVEN an overdue key whose user also holds an OLDER second key
    WHEN the overdue key is deactivated THEN the finding closes as "deactivated", not rotated:
    nothing newer replaced it."""
    older_spare = key_record("AKIASPARE", "alice", C - days(10), last_used_at=C + days(90))
    snap(account, users, C + days(91), old_key(used=C + days(91)), older_spare)
    snap(account, users, C + days(93), old_key(used=C + days(91), status=INACTIVE), older_spare)
    [finding] = findings_of("AKIAOLD")
    assert (finding.closed_at, finding.close_reason) == (C + days(93), CloseReason.DEACTIVATED)


def test_it_closes_as_rotated_when_the_owner_made_the_new_key_before_the_deadline(account, users):
    """GIVEN an owner warned at 85 days who created a replacement key then
    WHEN the old key, overdue at 91 days, is deleted at 95 days
    THEN the finding closes as "rotated": the replacement predates the finding, not the key."""
    new = key_record("AKIANEW", "alice", C + days(85), last_used_at=C + days(90))
    snap(account, users, C + days(91), old_key(used=C + days(91)), new)
    snap(account, users, C + days(95), new)
    [finding] = findings_of("AKIAOLD")
    assert (finding.closed_at, finding.close_reason) == (C + days(95), CloseReason.ROTATED)


def test_it_closes_as_deleted_when_the_key_goes_without_replacement(account, users):
    snap(account, users, C + days(46), key_record("AKIAIDLE", "alice", C))
    snap(account, users, C + days(50))
    [finding] = findings_of("AKIAIDLE")
    assert (finding.kind, finding.close_reason) == ("unused", CloseReason.DELETED)


def test_it_closes_as_used_when_an_unused_key_is_used_again(account, users):
    """GIVEN a never-used key judged unused at 46 days
    WHEN a snapshot at 50 days shows it used the day before
    THEN the finding closes as "used" and the key is ok."""
    snap(account, users, C + days(46), key_record("AKIAIDLE", "alice", C))
    used = key_record("AKIAIDLE", "alice", C, last_used_at=C + days(49))
    snap(account, users, C + days(50), used)
    [finding] = findings_of("AKIAIDLE")
    assert (finding.closed_at, finding.close_reason) == (C + days(50), CloseReason.USED)
    assert state_of("AKIAIDLE") == KeyState.OK


def test_it_closes_as_migrated_when_the_owner_marks_the_key_migrated(account, users):
    owner = person("alice", "owner", email="alice@example.com")
    snap(account, users, C + days(91), old_key(used=C + days(91)))
    key = AccessKey.objects.get(access_key_id="AKIAOLD")
    mark_migration(key, by=owner, status="migrated", role_arn=ROLE_ARN, now=C + days(92))
    [finding] = findings_of("AKIAOLD")
    assert (finding.closed_at, finding.close_reason) == (C + days(92), CloseReason.MIGRATED)
    assert state_of("AKIAOLD") == KeyState.MIGRATED


def test_it_closes_as_excepted_when_an_exception_is_approved(account, users):
    owner = person("alice", "owner", email="alice@example.com")
    manager = person("manager", "approver")
    snap(account, users, C + days(91), old_key(used=C + days(91)))
    key = AccessKey.objects.get(access_key_id="AKIAOLD")
    exc = request_exception(
        requested_by=owner,
        key=key,
        reason="vendor appliance",
        expires_at=C + days(150),
        now=C + days(92),
    )
    decide_exception(exc.pk, approver=manager, approve=True, now=C + days(93))
    [finding] = findings_of("AKIAOLD")
    assert (finding.closed_at, finding.close_reason) == (C + days(93), CloseReason.EXCEPTED)


def test_it_closes_as_policy_when_the_policy_tolerates_the_key(account, users):
    """GIVEN a never-used key judged unused at 46 days
    WHEN the account's override allows 60 idle days THEN the finding closes as "policy"."""
    admin = person("admin", "admin")
    snap(account, users, C + days(46), key_record("AKIAIDLE", "alice", C))
    policy = RotationPolicy(account=account, unused_days=60)
    save_policy(policy, by=admin, now=C + days(47))
    [finding] = findings_of("AKIAIDLE")
    assert (finding.closed_at, finding.close_reason) == (C + days(47), CloseReason.POLICY)


def test_it_opens_a_new_finding_when_a_key_turns_stale_again(account, users):
    """GIVEN an account allowing 10 idle days, and a never-used key found unused at 11 days,
    then used at 12 days (finding closed)
    WHEN it stays idle for 11 more days THEN a second finding opens; the first stays closed."""
    RotationPolicy.objects.create(account=account, unused_days=10)
    snap(account, users, C + days(11), key_record("AKIAIDLE", "alice", C))
    used = key_record("AKIAIDLE", "alice", C, last_used_at=C + days(12))
    snap(account, users, C + days(13), used)
    snap(account, users, C + days(22), used)  # idle 10 days: not yet
    assert len(findings_of("AKIAIDLE")) == 1
    assert state_of("AKIAIDLE") == KeyState.OK
    snap(account, users, C + days(23), used)  # idle 11 days
    first, second = findings_of("AKIAIDLE")
    assert (first.opened_at, first.closed_at) == (C + days(11), C + days(13))
    assert first.close_reason == CloseReason.USED
    assert (second.kind, second.opened_at, second.closed_at) == ("unused", C + days(23), None)


def test_it_keeps_one_finding_while_a_key_moves_from_unused_to_overdue(account, users):
    snap(account, users, C + days(46), key_record("AKIAIDLE", "alice", C))
    snap(account, users, C + days(91), key_record("AKIAIDLE", "alice", C))
    assert state_of("AKIAIDLE") == KeyState.OVERDUE
    [finding] = findings_of("AKIAIDLE")
    assert (finding.kind, finding.closed_at) == ("unused", None)


def test_it_allows_one_open_finding_per_key_in_the_database(account, users):
    snap(account, users, C + days(91), old_key(used=C + days(91)))
    key = AccessKey.objects.get(access_key_id="AKIAOLD")
    # Postgres names the index; SQLite the column of the partial unique index.
    one_open = "finding_one_open_per_key|UNIQUE constraint failed: inventory_finding.key_id"
    with pytest.raises(IntegrityError, match=one_open), transaction.atomic():
        Finding.objects.create(key=key, account=account, kind="overdue", opened_at=C + days(92))
    # A closed one next to it is fine.
    Finding.objects.create(
        key=key,
        account=account,
        kind="overdue",
        opened_at=C,
        closed_at=C + days(1),
        close_reason=CloseReason.DELETED,
    )
    assert Finding.objects.filter(key=key).count() == 2


def test_it_audits_findings_as_the_system(account, users):
    snap(account, users, C + days(91), old_key(used=C + days(91)))
    snap(account, users, C + days(93))
    finding = Finding.objects.get()
    opened = AuditEvent.objects.get(action="finding.open")
    closed = AuditEvent.objects.get(action="finding.close")
    for event in (opened, closed):
        assert (event.actor, event.actor_name) == (None, "system")
        assert (event.object_type, event.object_id) == ("finding", str(finding.pk))
        assert event.account_id == account.account_id
    assert opened.at == C + days(91)
    assert opened.after["kind"] == "overdue"
    assert closed.at == C + days(93)
    assert closed.before == {"closed_at": None}
    assert closed.after["close_reason"] == CloseReason.DELETED


def test_it_judges_a_deleted_key_once(account, users):
    snap(account, users, C + days(91), old_key(used=C + days(91)))
    snap(account, users, C + days(93))
    key = AccessKey.objects.get(access_key_id="AKIAOLD")
    later = evaluate_account(account, C + days(200))
    assert key.pk not in later.states
    assert state_of("AKIAOLD") == KeyState.DELETED
    assert Finding.objects.filter(key=key, closed_at__isnull=True).count() == 0


def test_it_judges_keys_again_when_policy_fields_change_through_the_service(account, users):
    """GIVEN a key 60 days old WHEN the global policy's maximum age drops to 59 days
    THEN an overdue finding opens at the change."""
    admin = person("admin", "admin")
    snap(account, users, C + days(60), old_key(used=C + days(60)))
    policy = RotationPolicy.objects.get(account=None)
    before = fields_of(policy, FIELDS)
    policy.max_age_days, policy.warn_days = 59, 7
    save_policy(policy, by=admin, before=before, now=C + days(60) + timedelta(hours=1))
    [finding] = findings_of("AKIAOLD")
    assert (finding.kind, finding.opened_at) == ("overdue", C + days(60) + timedelta(hours=1))


def test_it_records_since_when_a_key_is_in_its_state(account, users):
    snap(account, users, C + days(80), old_key(used=C + days(80)))
    snap(account, users, C + days(85), old_key(used=C + days(85)))
    key = AccessKey.objects.get(access_key_id="AKIAOLD")
    assert (key.state, key.state_since) == (KeyState.DUE_SOON, C + days(80))
    snap(account, users, C + days(91), old_key(used=C + days(91)))
    key.refresh_from_db()
    assert (key.state, key.state_since) == (KeyState.OVERDUE, C + days(91))


def test_it_never_judges_an_account_at_an_earlier_moment_than_its_last_evaluation(account, users):
    """GIVEN the daily pass at C+91d 00:15 opened an overdue finding
    WHEN a snapshot taken at 00:00 (91 days minus 15 minutes: only 90 days old) is written later
    THEN the key stays overdue and the finding open: the snapshot is judged at 00:15."""
    snap(account, users, C + days(89), old_key(used=C + days(89)))
    evaluate_account(account, C + days(91) + timedelta(minutes=15))
    [finding] = findings_of("AKIAOLD")

    snap(account, users, C + days(91) - timedelta(minutes=15), old_key(used=C + days(90)))

    assert state_of("AKIAOLD") == KeyState.OVERDUE
    assert findings_of("AKIAOLD") == [finding]
    assert Finding.objects.get().closed_at is None
    account.refresh_from_db()
    assert account.evaluated_at == C + days(91) + timedelta(minutes=15)


def test_it_refuses_a_finding_closed_before_it_opened_in_the_database(account, users):
    snap(account, users, C + days(91), old_key(used=C + days(91)))
    finding = Finding.objects.get()
    with pytest.raises(IntegrityError, match="finding_closed_after_opened"), transaction.atomic():
        Finding.objects.filter(pk=finding.pk).update(
            closed_at=finding.opened_at - timedelta(minutes=1), close_reason=CloseReason.DELETED
        )


def test_it_judges_the_other_accounts_when_one_fails_in_the_daily_pass(account, users, monkeypatch):
    from inventory.services import evaluation

    snap(account, users, C + days(91), old_key(used=C + days(91)))
    broken = AccountFactory()
    real = evaluation.evaluate_account

    def evaluate(acct, now=None, actor=None):
        if acct.pk == broken.pk:
            raise RuntimeError("disk full")
        return real(acct, now, actor)

    monkeypatch.setattr(evaluation, "evaluate_account", evaluate)
    results = evaluation.evaluate_all_accounts(C + days(200))

    assert isinstance(results[broken.account_id], RuntimeError)
    assert results[account.account_id].keys == 1
