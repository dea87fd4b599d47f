"""Writing a snapshot: one transaction, all or nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from inventory.aws.collector import AccountInventory, KeyRecord, UserRecord
from inventory.choices import KeyState, KeyStatus, SnapshotStatus
from inventory.models import AccessKey, Account, IamUser, KeyObservation, Snapshot
from inventory.services import ingest
from inventory.services.collection import collect_account
from inventory.services.ingest import SnapshotSuperseded, ingest_inventory, owner_from_tags
from tests.factories import AccessKeyFactory, AccountFactory, IamUserFactory, SnapshotFactory
from tests.moto_org import create_organization, create_user, iam_in, register_account

OWNER_TAG_KEYS = ["owner", "Owner", "OwnerEmail", "owner_email", "OwnerContact"]


def db_state(account: Account) -> dict:
    """Every row the collection writes for an account, to compare before and after."""
    return {
        "users": sorted(IamUser.objects.filter(account=account).values_list()),
        "keys": sorted(AccessKey.objects.filter(account=account).values_list()),
        "observations": sorted(
            KeyObservation.objects.filter(key__account=account).values_list(
                "key_id", "snapshot_id", "active", "last_used_at"
            )
        ),
    }


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "crash_point",
    [
        pytest.param((AccessKey.objects, "bulk_create"), id="keys"),
        pytest.param((ingest, "_write_history"), id="history"),
        pytest.param((ingest, "roll_up_account"), id="rollups"),
    ],
)
def test_it_leaves_no_partial_data_when_the_write_crashes(aws, monkeypatch, crash_point):
    """GIVEN an account collected once, then changed in AWS (a user added, a key deleted, a tag
    changed)
    WHEN the next collection's write crashes after the users were written
    THEN users, keys and history are exactly as before, the snapshot is failed with the error,
    the previous complete snapshot is intact and the account's lease is released."""
    ids = create_organization(aws, "prod")
    iam = iam_in(aws, ids["prod"])
    (k1,) = create_user(iam, "alice", {"owner": "alice@example.com"}, keys=1)
    (k2,) = create_user(iam, "bob", keys=1)
    account = register_account(ids["prod"], "prod")
    previous = collect_account(account.pk, session=aws)
    assert previous.status == SnapshotStatus.COMPLETE, previous.error

    create_user(iam, "mallory", {"owner": "mallory@example.com"}, keys=1)
    iam.delete_access_key(UserName="bob", AccessKeyId=k2)
    iam.tag_user(UserName="alice", Tags=[{"Key": "owner", "Value": "someone@example.com"}])
    before = db_state(account)
    written_before_crash = {}

    def crash(*args, **kwargs):
        # Inside the transaction, the users are already there: the crash is mid-write.
        written_before_crash["users"] = set(
            IamUser.objects.filter(account=account).values_list("name", flat=True)
        )
        raise RuntimeError("disk full")

    monkeypatch.setattr(*crash_point, crash)

    with pytest.raises(RuntimeError, match="disk full"):
        collect_account(account.pk, session=aws)

    assert "mallory" in written_before_crash["users"]
    assert db_state(account) == before
    failed = Snapshot.objects.exclude(pk=previous.pk).get(account=account)
    assert failed.status == SnapshotStatus.FAILED
    assert failed.error == "Internal error while collecting: RuntimeError: disk full"
    assert failed.finished_at is not None
    assert failed.observations.count() == 0
    previous_now = Snapshot.objects.get(pk=previous.pk)
    assert previous_now.status == SnapshotStatus.COMPLETE
    assert (previous_now.user_count, previous_now.key_count) == (2, 2)
    assert previous_now.observations.count() == 2
    assert Account.objects.get(pk=account.pk).collecting_until is None

    # The next collection, without the crash, applies every change.
    monkeypatch.undo()
    after = collect_account(account.pk, session=aws)
    assert after.status == SnapshotStatus.COMPLETE, after.error
    assert AccessKey.objects.get(access_key_id=k2).deleted
    assert not AccessKey.objects.get(access_key_id=k1).deleted
    assert IamUser.objects.get(account=account, name="alice").owner == "someone@example.com"
    assert IamUser.objects.filter(account=account, name="mallory").exists()


# --- ingest_inventory on hand-made inventories ---------------------------------------------------

T0 = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)


def user_record(user: IamUser, **changes) -> UserRecord:
    fields = {
        "user_id": user.user_id,
        "name": user.name,
        "arn": user.arn,
        "path": user.path,
        "created": user.created,
        "tags": user.tags,
        "has_password": user.has_password,
    }
    fields.update(changes)
    return UserRecord(**fields)


def key_record(key: AccessKey, **changes) -> KeyRecord:
    fields = {
        "access_key_id": key.access_key_id,
        "user_name": key.user.name,
        "status": key.status,
        "created": key.created,
        "last_used_at": key.last_used_at,
    }
    fields.update(changes)
    return KeyRecord(**fields)


@pytest.mark.django_db
def test_it_keeps_first_seen_and_moves_last_seen():
    """GIVEN a key first seen at T0
    WHEN a snapshot at T0 + 1 day sees it again, now Inactive and used
    THEN first_seen stays, last_seen, status and last use follow the snapshot."""
    key = AccessKeyFactory(first_seen=T0, user__first_seen=T0)
    snapshot = SnapshotFactory(
        account=key.account, status=SnapshotStatus.RUNNING, started_at=T0 + timedelta(days=1)
    )
    used = T0 + timedelta(hours=20)
    inventory = AccountInventory(
        account_id=key.account.account_id,
        report_generated_at=T0,
        users=[user_record(key.user)],
        keys=[key_record(key, status=KeyStatus.INACTIVE, last_used_at=used)],
        api_calls=4,
    )

    ingest_inventory(snapshot, inventory, OWNER_TAG_KEYS)

    key.refresh_from_db()
    assert key.first_seen == T0
    assert key.last_seen == snapshot.started_at
    assert (key.status, key.last_used_at) == (KeyStatus.INACTIVE, used)
    assert key.user.first_seen == T0
    snapshot.refresh_from_db()
    assert snapshot.status == SnapshotStatus.COMPLETE
    assert (snapshot.api_calls, snapshot.key_count, snapshot.active_key_count) == (4, 1, 0)
    observation = KeyObservation.objects.get(snapshot=snapshot)
    assert (observation.active, observation.state) == (False, KeyState.INACTIVE)


@pytest.mark.django_db
def test_it_records_each_keys_evaluated_state_in_the_history():
    """GIVEN an account with a new key, a 100-day-old key and a 60-day-idle key
    WHEN a snapshot sees them
    THEN each observation holds the state the evaluation gave the key (written with COPY on
    Postgres, as a code the field reads back as the state's name)."""
    now = T0 + timedelta(days=1)
    account = AccountFactory()
    new = AccessKeyFactory(account=account, created=now - timedelta(days=3), last_used_at=None)
    old = AccessKeyFactory(account=account, created=now - timedelta(days=100), last_used_at=now)
    idle = AccessKeyFactory(
        account=account,
        created=now - timedelta(days=70),
        last_used_at=now - timedelta(days=60),
    )
    snapshot = SnapshotFactory(account=account, status=SnapshotStatus.RUNNING, started_at=now)
    keys = [new, old, idle]
    inventory = AccountInventory(
        account_id=account.account_id,
        report_generated_at=now,
        users=[user_record(k.user) for k in keys],
        keys=[key_record(k) for k in keys],
        api_calls=4,
    )

    ingest_inventory(snapshot, inventory, OWNER_TAG_KEYS)

    observed = dict(snapshot.observations.values_list("key__access_key_id", "state"))
    assert observed == {
        new.access_key_id: KeyState.OK,
        old.access_key_id: KeyState.OVERDUE,
        idle.access_key_id: KeyState.UNUSED,
    }
    assert snapshot.observations.filter(state__in=[KeyState.OVERDUE, KeyState.UNUSED]).count() == 2


@pytest.mark.django_db
def test_it_marks_what_the_snapshot_lacks_as_deleted_only_in_its_account():
    """GIVEN two keys of one user, and a key in another account
    WHEN a snapshot of the first account sees only one of the two keys
    THEN the other is deleted at the snapshot's time; the other account's key is untouched."""
    account = AccountFactory()
    kept = AccessKeyFactory(user__account=account, first_seen=T0, user__first_seen=T0)
    gone = AccessKeyFactory(user=kept.user, first_seen=T0)
    elsewhere = AccessKeyFactory(first_seen=T0, user__first_seen=T0)
    snapshot = SnapshotFactory(
        account=account, status=SnapshotStatus.RUNNING, started_at=T0 + timedelta(days=1)
    )

    ingest_inventory(
        snapshot,
        AccountInventory(
            account_id=account.account_id,
            report_generated_at=T0,
            users=[user_record(kept.user)],
            keys=[key_record(kept)],
        ),
        OWNER_TAG_KEYS,
    )

    gone.refresh_from_db()
    kept.refresh_from_db()
    elsewhere.refresh_from_db()
    assert (gone.deleted, gone.deleted_at) == (True, snapshot.started_at)
    assert (kept.deleted, kept.deleted_at) == (False, None)
    assert (elsewhere.deleted, elsewhere.deleted_at) == (False, None)


@pytest.mark.django_db
def test_it_brings_back_a_key_seen_again_after_being_marked_deleted():
    """GIVEN a key marked deleted
    WHEN a complete snapshot contains it again
    THEN it is no longer deleted."""
    key = AccessKeyFactory(deleted=True, deleted_at=T0, first_seen=T0, user__first_seen=T0)
    snapshot = SnapshotFactory(
        account=key.account, status=SnapshotStatus.RUNNING, started_at=T0 + timedelta(days=1)
    )

    ingest_inventory(
        snapshot,
        AccountInventory(
            account_id=key.account.account_id,
            report_generated_at=T0,
            users=[user_record(key.user)],
            keys=[key_record(key)],
        ),
        OWNER_TAG_KEYS,
    )

    key.refresh_from_db()
    assert (key.deleted, key.deleted_at) == (False, None)


@pytest.mark.django_db
def test_it_refuses_to_write_a_snapshot_that_is_no_longer_running():
    """GIVEN a snapshot already failed (e.g. taken over by a newer run)
    WHEN its inventory arrives late
    THEN nothing is written."""
    user = IamUserFactory()
    snapshot = SnapshotFactory(account=user.account, status=SnapshotStatus.FAILED)

    with pytest.raises(SnapshotSuperseded):
        ingest_inventory(
            snapshot,
            AccountInventory(
                account_id=user.account.account_id,
                report_generated_at=timezone.now(),
                users=[user_record(user, name="renamed")],
            ),
            OWNER_TAG_KEYS,
        )

    user.refresh_from_db()
    assert user.name != "renamed"
    assert Snapshot.objects.get(pk=snapshot.pk).status == SnapshotStatus.FAILED


@pytest.mark.parametrize(
    ("tags", "owner"),
    [
        ({"OwnerContact": "c@x.io", "Owner": "B@X.io", "owner": "a@x.io"}, "a@x.io"),
        ({"OwnerContact": "c@x.io", "OwnerEmail": "E@X.IO"}, "e@x.io"),
        ({"owner": "  ", "owner_email": "Fallback@X.io"}, "fallback@x.io"),
        ({"team": "ci", "OWNER": "not-a-configured-key@x.io"}, ""),
        ({}, ""),
    ],
)
def test_it_takes_the_owner_from_the_first_configured_tag(tags, owner):
    assert owner_from_tags(tags, OWNER_TAG_KEYS) == owner
