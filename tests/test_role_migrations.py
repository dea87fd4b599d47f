"""Migrations to IAM roles: who may mark them, the role ARN, the three ways a mark is verified,
withdrawal, and the quarter's count."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from inventory.choices import CloseReason, KeyState, KeyStatus, MigrationStatus, VerifiedBy
from inventory.models import AccessKey, AuditEvent, Finding, KeyMigration
from inventory.services.errors import GovernanceError, NotAllowed
from inventory.services.evaluation import evaluate_account
from inventory.services.kpis import current_kpis
from inventory.services.role_migrations import mark_migration, withdraw_migration
from tests.gov_factories import (
    NOW,
    ROLE_ARN,
    AccessKeyFactory,
    AccountFactory,
    IamUserFactory,
    ago,
    days,
    person,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice():
    return person("alice", "owner", email="ALICE@example.com")


@pytest.fixture
def key():
    """Alice's key, 30 days old, last used yesterday."""
    return AccessKeyFactory(
        user=IamUserFactory(owner="alice@example.com"), created=ago(30), last_used_at=ago(1)
    )


def mark(key, by, status=MigrationStatus.MIGRATING, at=NOW, role_arn=ROLE_ARN, note=""):
    return mark_migration(key, by=by, status=status, role_arn=role_arn, note=note, now=at)


def state_of(key) -> str:
    return AccessKey.objects.get(pk=key.pk).state


def test_it_lets_the_owner_mark_their_key_migrating(alice, key):
    """GIVEN alice, whose sign-in e-mail matches the key's owner tag ignoring case
    WHEN she marks the key migrating THEN the mark is stored and audited; the key is still
    judged on its own (migrating is not migrated)."""
    migration = mark(key, alice, note="  moving to IRSA  ")
    assert (migration.status, migration.role_arn, migration.note) == (
        "migrating",
        ROLE_ARN,
        "moving to IRSA",
    )
    assert (migration.marked_by, migration.marked_at, migration.verified_at) == (alice, NOW, None)
    assert state_of(key) == KeyState.OK
    event = AuditEvent.objects.get(action="migration.mark")
    assert (event.actor, event.before) == (alice, None)
    assert event.after["status"] == "migrating"
    assert event.after["role_arn"] == ROLE_ARN
    assert event.account_id == key.account.account_id


def test_it_updates_the_live_mark_to_migrated(alice, key):
    first = mark(key, alice)
    second = mark(key, alice, status=MigrationStatus.MIGRATED, at=NOW + days(1))
    assert second.pk == first.pk
    assert KeyMigration.objects.count() == 1
    assert state_of(key) == KeyState.MIGRATED
    update = AuditEvent.objects.filter(action="migration.mark").order_by("id").last()
    assert (update.before["status"], update.after["status"]) == ("migrating", "migrated")


def test_it_closes_the_finding_of_a_key_marked_migrated(alice):
    key = AccessKeyFactory(
        user=IamUserFactory(owner="alice@example.com"), created=ago(100), last_used_at=ago(1)
    )
    evaluate_account(key.account, NOW - days(1))
    mark(key, alice, status=MigrationStatus.MIGRATED)
    finding = Finding.objects.get(key=key)
    assert (finding.closed_at, finding.close_reason) == (NOW, CloseReason.MIGRATED)


@pytest.mark.parametrize("role", ["approver", "admin"])
def test_it_lets_an_approver_or_admin_mark_anyones_key(key, role):
    manager = person("manager", role)
    migration = mark(key, manager, status=MigrationStatus.MIGRATED)
    assert migration.marked_by == manager
    assert state_of(key) == KeyState.MIGRATED


@pytest.mark.parametrize(
    ("role", "email"),
    [("owner", "bob@example.com"), ("viewer", "alice@example.com"), (None, "alice@example.com")],
)
def test_it_refuses_anyone_else(key, role, email):
    # A viewer or a user without a role is refused even with the owner's e-mail.
    who = person("someone", role, email=email)
    with pytest.raises(NotAllowed, match="Only the key's owner or an approver"):
        mark(key, who)
    assert not KeyMigration.objects.exists()
    assert not AuditEvent.objects.exists()


@pytest.mark.parametrize(
    "arn",
    [
        "",
        "arn:aws:iam::111111111111:user/app-runner",
        "arn:aws:iam::11111111111:role/short-account",
        "arn:aws:sts::111111111111:assumed-role/app/session",
        "app-runner",
    ],
)
def test_it_refuses_an_invalid_role_arn_with_a_clear_message(alice, key, arn):
    with pytest.raises(GovernanceError) as caught:
        mark(key, alice, role_arn=arn)
    assert "is not an IAM role ARN: expected arn:aws:iam::123456789012:role/RoleName." in str(
        caught.value
    )
    assert not KeyMigration.objects.exists()


def test_it_refuses_an_unknown_status(alice, key):
    with pytest.raises(GovernanceError, match="Unknown migration status"):
        mark(key, alice, status="done")


def test_it_verifies_a_mark_when_the_key_is_deleted(alice, key):
    """GIVEN a key marked migrating WHEN a later evaluation finds it deleted
    THEN the mark is verified ("deleted") at that evaluation and becomes migrated."""
    mark(key, alice)
    AccessKey.objects.filter(pk=key.pk).update(deleted=True, deleted_at=NOW + days(3))
    result = evaluate_account(key.account, NOW + days(3))

    assert result.verified == 1
    migration = KeyMigration.objects.get()
    assert (migration.verified_at, migration.verified_by) == (NOW + days(3), VerifiedBy.DELETED)
    assert migration.status == MigrationStatus.MIGRATED
    assert state_of(key) == KeyState.DELETED
    event = AuditEvent.objects.get(action="migration.verify")
    assert (event.actor_name, event.after["verified_by"]) == ("system", "deleted")


def test_it_verifies_a_mark_when_the_key_is_deactivated(alice, key):
    mark(key, alice)
    AccessKey.objects.filter(pk=key.pk).update(status=KeyStatus.INACTIVE)
    evaluate_account(key.account, NOW + days(2))
    migration = KeyMigration.objects.get()
    assert (migration.verified_at, migration.verified_by) == (
        NOW + days(2),
        VerifiedBy.DEACTIVATED,
    )
    assert state_of(key) == KeyState.MIGRATED  # migrated beats inactive


def test_it_verifies_a_mark_when_the_key_stays_unused_for_unused_days(alice, key):
    """GIVEN a key last used the day before it was marked migrating
    WHEN it is evaluated 44 and then 45 days after the mark without further use
    THEN the mark is not verified at 44 days and is verified ("unused") at 45."""
    mark(key, alice)
    evaluate_account(key.account, NOW + days(44) + timedelta(hours=23))
    assert KeyMigration.objects.get().verified_at is None
    evaluate_account(key.account, NOW + days(45))
    migration = KeyMigration.objects.get()
    assert (migration.verified_at, migration.verified_by) == (NOW + days(45), VerifiedBy.UNUSED)
    assert state_of(key) == KeyState.MIGRATED


def test_it_does_not_verify_a_mark_while_the_key_is_still_used(alice, key):
    """GIVEN a key marked migrating and then used 10 days after the mark
    WHEN it is evaluated 45 days after the mark THEN the mark is not verified; it is verified
    once the key has been idle for 45 days since that last use."""
    mark(key, alice)
    AccessKey.objects.filter(pk=key.pk).update(last_used_at=NOW + days(10))
    evaluate_account(key.account, NOW + days(45))
    assert KeyMigration.objects.get().verified_at is None
    evaluate_account(key.account, NOW + days(54))
    assert KeyMigration.objects.get().verified_at is None
    evaluate_account(key.account, NOW + days(55))
    assert KeyMigration.objects.get().verified_by == VerifiedBy.UNUSED


def test_it_verifies_a_mark_once(alice, key):
    mark(key, alice)
    AccessKey.objects.filter(pk=key.pk).update(status=KeyStatus.INACTIVE)
    evaluate_account(key.account, NOW + days(1))
    again = evaluate_account(key.account, NOW + days(2))
    assert again.verified == 0
    assert KeyMigration.objects.get().verified_at == NOW + days(1)
    assert AuditEvent.objects.filter(action="migration.verify").count() == 1


def test_it_withdraws_a_mark_and_judges_the_key_on_its_own_again(alice):
    """GIVEN an overdue key marked migrated (its finding closed)
    WHEN alice withdraws the mark THEN the key is overdue again, a new finding opens, and the
    withdrawal is audited; there is nothing left to withdraw afterwards."""
    key = AccessKeyFactory(
        user=IamUserFactory(owner="alice@example.com"), created=ago(100), last_used_at=ago(1)
    )
    evaluate_account(key.account, NOW - days(1))
    mark(key, alice, status=MigrationStatus.MIGRATED)
    assert state_of(key) == KeyState.MIGRATED

    withdrawn = withdraw_migration(key, by=alice, now=NOW + days(1))

    assert (withdrawn.withdrawn_at, withdrawn.withdrawn_by) == (NOW + days(1), alice)
    assert state_of(key) == KeyState.OVERDUE
    first, second = Finding.objects.filter(key=key).order_by("opened_at")
    assert first.close_reason == CloseReason.MIGRATED
    assert (second.opened_at, second.closed_at) == (NOW + days(1), None)
    event = AuditEvent.objects.get(action="migration.withdraw")
    assert event.before["withdrawn_at"] is None
    assert event.after["withdrawn_at"] == (NOW + days(1)).isoformat()
    with pytest.raises(GovernanceError, match="no migration mark"):
        withdraw_migration(key, by=alice, now=NOW + days(2))
    # A new mark may follow a withdrawn one.
    mark(key, alice, at=NOW + days(3))
    assert KeyMigration.objects.filter(key=key).count() == 2


def test_it_refuses_a_withdrawal_by_another_owner(alice, key):
    mark(key, alice)
    bob = person("bob", "owner", email="bob@example.com")
    with pytest.raises(NotAllowed):
        withdraw_migration(key, by=bob, now=NOW)
    assert KeyMigration.objects.get().withdrawn_at is None


def test_it_counts_the_migrations_verified_in_the_quarter():
    """GIVEN three keys marked migrating and deactivated, verified on 30 March, 1 April at
    midnight and 10 May WHEN the KPIs are read on 15 May THEN two were verified this quarter;
    read on 31 March, one."""
    manager = person("manager", "approver")
    account = AccountFactory()
    verified_at = [
        datetime(2026, 3, 30, 12, tzinfo=UTC),
        datetime(2026, 4, 1, tzinfo=UTC),
        datetime(2026, 5, 10, tzinfo=UTC),
    ]
    for at in verified_at:
        key = AccessKeyFactory(
            user=IamUserFactory(account=account), created=datetime(2026, 1, 5, tzinfo=UTC)
        )
        mark(key, manager, at=at - days(5))
        AccessKey.objects.filter(pk=key.pk).update(status=KeyStatus.INACTIVE)
        evaluate_account(account, at)
    assert sorted(KeyMigration.objects.values_list("verified_at", flat=True)) == verified_at

    assert current_kpis(NOW).migrations_verified_quarter == 2
    assert current_kpis(NOW, account=account).migrations_verified_quarter == 2
    march = datetime(2026, 3, 31, 12, tzinfo=UTC)
    assert current_kpis(march).migrations_verified_quarter == 1
    assert current_kpis(verified_at[1] - timedelta(seconds=1)).migrations_verified_quarter == 1


def test_it_clears_the_verification_when_a_verified_mark_is_marked_migrating_again(alice, key):
    """GIVEN a mark verified because the key stayed idle for 45 days
    WHEN the owner marks the key migrating again (the move was not finished) and uses it
    THEN the mark is unverified and migrating, and the next evaluation does not verify it."""
    mark(key, alice)
    evaluate_account(key.account, NOW + days(45))
    assert KeyMigration.objects.get().status == MigrationStatus.MIGRATED

    mark(key, alice, status=MigrationStatus.MIGRATING, at=NOW + days(46))
    AccessKey.objects.filter(pk=key.pk).update(last_used_at=NOW + days(46))
    evaluate_account(key.account, NOW + days(47))

    migration = KeyMigration.objects.get()
    assert (migration.status, migration.verified_at, migration.verified_by) == (
        MigrationStatus.MIGRATING,
        None,
        "",
    )
    assert state_of(key) != KeyState.MIGRATED


def test_it_refuses_to_mark_a_root_key_or_a_deleted_key():
    admin = person("admin", "admin")
    root = AccessKeyFactory(user=IamUserFactory(is_root=True), is_root=True, created=ago(3))
    gone = AccessKeyFactory(deleted=True, created=ago(300))
    with pytest.raises(GovernanceError, match="Root-account keys cannot be migrated"):
        mark(root, admin)
    with pytest.raises(GovernanceError, match="no longer exists"):
        mark(gone, admin)
    assert not KeyMigration.objects.exists()
