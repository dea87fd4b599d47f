"""Collection of several accounts from moto (server mode) into the database.

Every test builds an AWS Organization in moto whose member accounts are read through
``arn:aws:iam::<id>:role/KeygovRead``, exactly as ``import_accounts`` sets them up.
"""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import boto3
import pytest
from botocore.retries.standard import ExponentialBackoff
from django.conf import settings as django_settings
from django.db import connections
from django.db.models import F
from django.utils import timezone

from inventory.choices import KeyStatus, SnapshotStatus
from inventory.models import AccessKey, Account, IamUser, KeyObservation, Snapshot
from inventory.services.collection import collect_account, start_snapshot
from tests.conftest import inject_error
from tests.moto_org import (
    CallSpy,
    backdate_key,
    create_organization,
    create_user,
    iam_in,
    register_account,
    request_body,
)

pytestmark = pytest.mark.django_db(transaction=True)

OWNER_TAG_KEYS = ["owner", "Owner", "OwnerEmail", "owner_email", "OwnerContact"]
# What moto's GetCredentialReport always answers as GeneratedTime.
MOTO_REPORT_TIME = datetime(2015, 2, 2, 20, 2, 2, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _owner_tags(settings):
    settings.KEYGOV_OWNER_TAG_KEYS = OWNER_TAG_KEYS


@pytest.fixture
def fast_retries(monkeypatch):
    """Keep botocore's retry logic but not its multi-second throttling back-off."""
    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0.01)


def ago(**kwargs) -> datetime:
    return (timezone.now() - timedelta(**kwargs)).replace(microsecond=0)


@pytest.fixture
def org(aws):
    """Two member accounts with users and keys of every kind keygov must tell apart.

    prod: alice (owner tag among others; an old used key and a new key made Inactive),
          build-bot (no owner tag; one key), carol (OwnerContact tag; no key).
    dev:  dave (owner_email tag; two keys), erin (no tags; one key).
    """
    ids = create_organization(aws, "prod", "dev")
    prod_iam, dev_iam = iam_in(aws, ids["prod"]), iam_in(aws, ids["dev"])
    o = SimpleNamespace(session=aws, ids=ids, iam={"prod": prod_iam, "dev": dev_iam}, keys={})

    # AWS returns tags in no promised order; the configured key order decides the owner.
    o.keys["a1"], o.keys["a2"] = create_user(
        prod_iam,
        "alice",
        {
            "OwnerEmail": "someone-else@example.com",
            "team": "payments",
            "owner": "Alice@Example.COM",
        },
        keys=2,
    )
    (o.keys["b1"],) = create_user(prod_iam, "build-bot", {"team": "ci"}, keys=1)
    create_user(prod_iam, "carol", {"OwnerContact": "Carol@Example.com"})
    o.keys["d1"], o.keys["d2"] = create_user(
        dev_iam, "dave", {"owner_email": "DAVE@example.com"}, 2
    )
    (o.keys["e1"],) = create_user(dev_iam, "erin", keys=1)

    prod_iam.update_access_key(UserName="alice", AccessKeyId=o.keys["a2"], Status="Inactive")

    o.created = {
        "a1": ago(days=400),
        "a2": ago(days=10),
        "b1": ago(days=100),
        "d1": ago(days=200),
        "d2": ago(days=20),
        "e1": ago(days=60),
    }
    o.last_used = {"a1": ago(days=2), "b1": ago(days=50), "d1": ago(hours=5)}
    for label, key_id in o.keys.items():
        account = ids["prod"] if label[0] in "ab" else ids["dev"]
        backdate_key(account, key_id, created=o.created[label], last_used=o.last_used.get(label))

    o.prod = register_account(ids["prod"], "prod")
    o.dev = register_account(ids["dev"], "dev")
    return o


def collect(account: Account, session, **kwargs) -> Snapshot:
    snapshot = collect_account(account.pk, session=session, **kwargs)
    assert snapshot is not None, "the collection was skipped"
    return snapshot


def key_state(account: Account) -> dict[str, tuple]:
    """Everything the database holds about an account's keys and users, to compare before/after."""
    keys = {
        k.access_key_id: (
            k.user.name,
            k.status,
            k.created,
            k.last_used_at,
            k.deleted,
            k.deleted_at,
            k.last_seen,
        )
        for k in AccessKey.objects.filter(account=account).select_related("user")
    }
    users = {
        u.name: (u.owner, u.tags, u.deleted, u.deleted_at, u.last_seen)
        for u in IamUser.objects.filter(account=account)
    }
    observations = KeyObservation.objects.filter(key__account=account).count()
    return {"keys": keys, "users": users, "observations": observations}


def test_it_collects_each_account_into_its_own_snapshot(org):
    """GIVEN two member accounts with users and keys
    WHEN each is collected
    THEN each snapshot holds exactly that account's users and keys, with owner, tags, status,
    creation and last use as AWS has them, and the run's figures recorded."""
    spy = CallSpy(org.session)
    prod_snap = collect(org.prod, org.session)
    prod_calls = len(spy.operations)
    spy.reset()
    dev_snap = collect(org.dev, org.session)

    for snap in (prod_snap, dev_snap):
        assert snap.status == SnapshotStatus.COMPLETE, snap.error
        assert snap.error == ""
        assert snap.finished_at >= snap.started_at
        assert snap.report_generated_at == MOTO_REPORT_TIME

    prod_users = IamUser.objects.filter(account=org.prod)
    assert {u.name for u in prod_users} == {"alice", "build-bot", "carol"}
    assert {u.name for u in IamUser.objects.filter(account=org.dev)} == {"dave", "erin"}
    assert set(AccessKey.objects.filter(account=org.prod).values_list("access_key_id", flat=True)) == {
        org.keys["a1"], org.keys["a2"], org.keys["b1"]
    }  # fmt: skip
    assert set(AccessKey.objects.filter(account=org.dev).values_list("access_key_id", flat=True)) == {
        org.keys["d1"], org.keys["d2"], org.keys["e1"]
    }  # fmt: skip
    # No key hangs off a user of another account.
    assert not AccessKey.objects.exclude(user__account=F("account")).exists()

    owners = dict(IamUser.objects.values_list("name", "owner"))
    assert owners == {
        "alice": "alice@example.com",
        "build-bot": "",
        "carol": "carol@example.com",
        "dave": "dave@example.com",
        "erin": "",
    }
    alice = prod_users.get(name="alice")
    assert alice.tags == {
        "OwnerEmail": "someone-else@example.com",
        "team": "payments",
        "owner": "Alice@Example.COM",
    }
    assert alice.arn == f"arn:aws:iam::{org.ids['prod']}:user/alice"
    assert alice.user_id == org.iam["prod"].get_user(UserName="alice")["User"]["UserId"]

    keys = {k.access_key_id: k for k in AccessKey.objects.all()}
    for label, key_id in org.keys.items():
        key = keys[key_id]
        assert key.created == org.created[label], label
        assert key.last_used_at == org.last_used.get(label), label
        assert key.status == (KeyStatus.INACTIVE if label == "a2" else KeyStatus.ACTIVE), label
        assert not key.deleted
        assert not key.is_root
    assert keys[org.keys["a1"]].user.name == "alice"
    assert keys[org.keys["b1"]].user.name == "build-bot"

    observed = {
        (o.key.access_key_id, o.active, o.last_used_at)
        for o in KeyObservation.objects.filter(snapshot=prod_snap).select_related("key")
    }
    assert observed == {
        (org.keys["a1"], True, org.last_used["a1"]),
        (org.keys["a2"], False, None),
        (org.keys["b1"], True, org.last_used["b1"]),
    }
    assert KeyObservation.objects.filter(snapshot=dev_snap).count() == 3

    assert (prod_snap.user_count, prod_snap.key_count, prod_snap.active_key_count) == (3, 3, 2)
    assert (dev_snap.user_count, dev_snap.key_count, dev_snap.active_key_count) == (2, 3, 3)
    assert prod_snap.api_calls == prod_calls
    assert dev_snap.api_calls == len(spy.operations)
    # The efficient path: one ListAccessKeys per user with keys, nothing per key.
    assert spy.count("ListAccessKeys") == 2
    assert spy.count("GetAccessKeyLastUsed") == 0
    assert spy.count("ListUsers") == spy.count("ListUserTags") == 0
    # Nothing is left holding an account.
    assert not Account.objects.filter(collecting_until__isnull=False).exists()


def test_it_marks_deleted_keys_and_users_at_the_next_snapshot(org):
    """GIVEN both accounts collected once
    WHEN a key of dave and the user erin (with her key) are deleted in AWS and both accounts are
    collected again
    THEN those are marked deleted at the second snapshot's time, nothing else is, and the
    second snapshot's history lists only the keys still there."""
    first = {acc: collect(acc, org.session) for acc in (org.prod, org.dev)}
    dev_iam = org.iam["dev"]
    dev_iam.delete_access_key(UserName="dave", AccessKeyId=org.keys["d2"])
    dev_iam.delete_access_key(UserName="erin", AccessKeyId=org.keys["e1"])
    dev_iam.delete_user(UserName="erin")

    second_prod = collect(org.prod, org.session)
    second_dev = collect(org.dev, org.session)
    assert second_prod.status == second_dev.status == SnapshotStatus.COMPLETE

    keys = {k.access_key_id: k for k in AccessKey.objects.all()}
    for label in ("d2", "e1"):
        assert keys[org.keys[label]].deleted, label
        assert keys[org.keys[label]].deleted_at == second_dev.started_at, label
    for label in ("a1", "a2", "b1", "d1"):
        assert not keys[org.keys[label]].deleted, label
        assert keys[org.keys[label]].deleted_at is None, label

    users = {u.name: u for u in IamUser.objects.all()}
    assert users["erin"].deleted
    assert users["erin"].deleted_at == second_dev.started_at
    assert not any(u.deleted for name, u in users.items() if name != "erin")

    assert set(
        KeyObservation.objects.filter(snapshot=second_dev).values_list(
            "key__access_key_id", flat=True
        )
    ) == {org.keys["d1"]}
    # History of the first run stays as it was seen.
    assert KeyObservation.objects.filter(snapshot=first[org.dev]).count() == 3
    assert (second_dev.user_count, second_dev.key_count) == (1, 1)
    assert KeyObservation.objects.filter(snapshot=second_prod).count() == 3


@pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")),
    reason="parallel writers need Postgres: SQLite locks the database for each one",
)
def test_it_collects_accounts_in_parallel_without_mixing_them(org):
    """GIVEN two accounts
    WHEN they are collected at the same time by two workers (threads, a session each)
    THEN both complete, each with its own users, keys and call count."""
    snapshots = {}

    def worker(account: Account) -> None:
        try:
            session = boto3.Session(region_name="us-east-1")
            snapshots[account.name] = collect_account(account.pk, session=session)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(acc,)) for acc in (org.prod, org.dev)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert {name: s.status for name, s in snapshots.items()} == {
        "prod": SnapshotStatus.COMPLETE,
        "dev": SnapshotStatus.COMPLETE,
    }
    for name, account in (("prod", org.prod), ("dev", org.dev)):
        seen = set(
            KeyObservation.objects.filter(snapshot=snapshots[name]).values_list(
                "key__access_key_id", flat=True
            )
        )
        assert seen == set(
            AccessKey.objects.filter(account=account).values_list("access_key_id", flat=True)
        ), name
        assert len(seen) == 3
    # AssumeRole, report (generate twice: moto answers STARTED first, then get) and
    # GetAccountAuthorizationDetails, plus one ListAccessKeys per user with keys (2 in each).
    assert snapshots["prod"].api_calls == snapshots["dev"].api_calls == 5 + 2


def test_it_reads_last_use_of_keys_the_report_cannot_tell_apart(aws):
    """GIVEN a user whose two keys were created in the same second (the credential report cannot
    say which slot is which key)
    WHEN the account is collected
    THEN each key's last use comes from GetAccessKeyLastUsed, service and region included."""
    ids = create_organization(aws, "shared")
    iam = iam_in(aws, ids["shared"])
    k1, k2 = create_user(iam, "twin", keys=2)
    same_second, used_at = ago(days=30), ago(days=1)
    backdate_key(ids["shared"], k1, created=same_second, last_used=used_at, service="ec2")
    backdate_key(ids["shared"], k2, created=same_second)
    account = register_account(ids["shared"], "shared")
    spy = CallSpy(aws)

    snap = collect(account, aws)

    assert snap.status == SnapshotStatus.COMPLETE, snap.error
    assert spy.count("GetAccessKeyLastUsed") == 2
    used, unused = AccessKey.objects.get(access_key_id=k1), AccessKey.objects.get(access_key_id=k2)
    assert (used.last_used_at, used.last_used_service, used.last_used_region) == (
        used_at,
        "ec2",
        "eu-west-1",
    )
    assert used.created == unused.created == same_second
    assert (unused.last_used_at, unused.last_used_service, unused.last_used_region) == (
        None,
        "",
        "",
    )


# --- AWS errors ----------------------------------------------------------------------------------


def test_it_absorbs_throttling(org, fast_retries):
    """GIVEN IAM answering Throttling twice to each step of the collection (and STS once)
    WHEN both accounts are collected
    THEN botocore's retries absorb it: both snapshots complete with every key."""
    injected = [
        inject_error(org.session, f"before-send.iam.{op}", "Throttling", "Rate exceeded", times=2)
        for op in (
            "GenerateCredentialReport",
            "GetCredentialReport",
            "GetAccountAuthorizationDetails",
            "ListAccessKeys",
        )
    ]
    injected.append(
        inject_error(
            org.session, "before-send.sts.AssumeRole", "Throttling", "Rate exceeded", times=1
        )
    )

    snaps = [collect(org.prod, org.session), collect(org.dev, org.session)]

    assert [s.status for s in snaps] == [SnapshotStatus.COMPLETE] * 2, [s.error for s in snaps]
    assert [s["injected"] for s in injected] == [2, 2, 2, 2, 1]
    assert AccessKey.objects.count() == 6
    assert [s.key_count for s in snaps] == [3, 3]


def test_it_fails_cleanly_when_throttling_never_stops(org, fast_retries):
    """GIVEN a first complete snapshot
    WHEN IAM throttles every GetAccountAuthorizationDetails of the next run
    THEN the retries give up: the snapshot fails naming the operation and the error, and the
    data stays as it was."""
    collect(org.prod, org.session)
    before = key_state(org.prod)
    state = inject_error(
        org.session,
        "before-send.iam.GetAccountAuthorizationDetails",
        "Throttling",
        "Rate exceeded",
    )

    snap = collect(org.prod, org.session)

    assert snap.status == SnapshotStatus.FAILED
    assert "GetAccountAuthorizationDetails failed: Throttling: Rate exceeded" in snap.error
    assert state["injected"] == django_settings.KEYGOV_AWS_MAX_ATTEMPTS
    assert key_state(org.prod) == before


def test_it_fails_only_the_account_whose_role_cannot_be_assumed(org):
    """GIVEN both accounts collected once, then a new user with a key in each
    WHEN AssumeRole into dev is denied and both are collected again
    THEN dev's snapshot fails with AWS's error text and dev's data is untouched, while prod's
    snapshot completes with its new user."""
    collect(org.prod, org.session)
    collect(org.dev, org.session)
    dev_before = key_state(org.dev)
    create_user(org.iam["prod"], "new-prod", keys=1)
    create_user(org.iam["dev"], "new-dev", keys=1)
    dev_id = org.ids["dev"]
    message = f"User is not authorized to perform: sts:AssumeRole on arn:aws:iam::{dev_id}:role/x"
    denied = inject_error(
        org.session,
        "before-send.sts.AssumeRole",
        "AccessDenied",
        message,
        status=403,
        when=lambda request: dev_id in request_body(request),
    )

    prod_snap = collect(org.prod, org.session)
    dev_snap = collect(org.dev, org.session)

    assert denied["injected"] == 1
    assert dev_snap.status == SnapshotStatus.FAILED
    assert dev_snap.error.startswith(f"AssumeRole failed: AccessDenied: {message}")
    assert "ExternalId" in dev_snap.error  # the hint on what to check
    assert dev_snap.finished_at is not None
    assert key_state(org.dev) == dev_before
    assert not IamUser.objects.filter(name="new-dev").exists()
    # The failed run is visible, and the previous complete one still is the latest complete.
    assert org.dev.snapshots.filter(status=SnapshotStatus.COMPLETE).count() == 1

    assert prod_snap.status == SnapshotStatus.COMPLETE, prod_snap.error
    assert IamUser.objects.filter(account=org.prod, name="new-prod").exists()
    assert prod_snap.key_count == 4
    assert not Account.objects.filter(collecting_until__isnull=False).exists()


# --- runs that must not happen twice -------------------------------------------------------------


def test_it_collects_a_scheduled_slot_once(org):
    """GIVEN a slot collected once
    WHEN the same slot's message is delivered again
    THEN the second delivery is skipped: one snapshot for the slot."""
    first = collect(org.prod, org.session, run_key="2026-05-04T06:00Z")
    again = collect_account(org.prod.pk, session=org.session, run_key="2026-05-04T06:00Z")

    assert first.status == SnapshotStatus.COMPLETE
    assert again is None
    assert list(Snapshot.objects.filter(account=org.prod)) == [first]
    assert KeyObservation.objects.count() == 3
    assert Account.objects.get(pk=org.prod.pk).collecting_until is None


def test_it_takes_over_the_run_of_a_lost_worker(org):
    """GIVEN a slot whose worker died mid-run (its snapshot still running, its lease expired)
    and a manual run that died the same way
    WHEN the slot's message is redelivered
    THEN the redelivered run completes the slot's own snapshot (still one for the slot) and the
    dead manual run is marked failed as interrupted."""
    lost_at = timezone.now() - timedelta(seconds=django_settings.KEYGOV_COLLECT_LEASE + 120)
    dead_manual = start_snapshot(org.prod, now=lost_at - timedelta(minutes=1))
    Account.objects.filter(pk=org.prod.pk).update(collecting_until=None)
    lost = start_snapshot(org.prod, run_key="2026-05-04T06:00Z", now=lost_at)
    assert lost is not None and lost.status == SnapshotStatus.RUNNING

    redelivered = collect(org.prod, org.session, run_key="2026-05-04T06:00Z")

    assert redelivered.pk == lost.pk
    assert redelivered.status == SnapshotStatus.COMPLETE, redelivered.error
    assert Snapshot.objects.filter(account=org.prod, run_key="2026-05-04T06:00Z").count() == 1
    assert redelivered.key_count == 3
    dead_manual.refresh_from_db()
    assert dead_manual.status == SnapshotStatus.FAILED
    assert "Interrupted" in dead_manual.error
    assert Account.objects.get(pk=org.prod.pk).collecting_until is None


def test_it_never_runs_two_collections_of_one_account_at_once(org):
    """GIVEN a collection of prod in the middle of its AWS calls
    WHEN a second collection of prod starts (another worker)
    THEN the second is skipped; a collection of dev meanwhile proceeds; the first completes."""
    outcome = {}

    def second_worker() -> None:
        try:
            outcome["prod"] = collect_account(org.prod.pk, session=org.session)
            outcome["dev"] = collect_account(org.dev.pk, session=org.session)
        finally:
            connections.close_all()

    def during_user_listing(request, **_):
        if "prod" in outcome:
            return None
        worker = threading.Thread(target=second_worker)
        worker.start()
        worker.join(timeout=120)
        return None

    org.session.events.register(
        "before-send.iam.GetAccountAuthorizationDetails", during_user_listing
    )

    first = collect(org.prod, org.session)

    assert outcome["prod"] is None
    assert outcome["dev"] is not None and outcome["dev"].status == SnapshotStatus.COMPLETE
    assert first.status == SnapshotStatus.COMPLETE, first.error
    assert list(Snapshot.objects.filter(account=org.prod)) == [first]


def test_it_skips_an_account_whose_lease_is_held(org):
    """GIVEN another worker holding prod's lease
    WHEN prod is collected
    THEN nothing runs: no AWS call, no snapshot."""
    holder = start_snapshot(org.prod)
    spy = CallSpy(org.session)

    assert collect_account(org.prod.pk, session=org.session) is None

    assert spy.operations == []
    assert list(Snapshot.objects.filter(account=org.prod)) == [holder]


# --- efficiency ----------------------------------------------------------------------------------


def test_it_recollects_an_unchanged_account_without_listing_keys(org):
    """GIVEN an account collected once
    WHEN it is collected again unchanged
    THEN the known key ids are reused: no ListAccessKeys, at most 10 calls, the same keys."""
    first = collect(org.prod, org.session)
    spy = CallSpy(org.session)

    second = collect(org.prod, org.session)

    assert second.status == SnapshotStatus.COMPLETE, second.error
    assert spy.count("ListAccessKeys") == 0
    assert second.api_calls == len(spy.operations) <= 10
    assert second.api_calls < first.api_calls
    assert second.key_count == first.key_count == 3
    assert not AccessKey.objects.filter(deleted=True).exists()
    assert KeyObservation.objects.filter(snapshot=second).count() == 3


def test_it_lists_keys_again_only_for_a_user_whose_key_changed(org):
    """GIVEN an account collected once
    WHEN alice rotates a key (deletes one, creates one)
    THEN only alice's keys are listed; the new key is collected and the old one marked deleted."""
    collect(org.prod, org.session)
    iam = org.iam["prod"]
    iam.delete_access_key(UserName="alice", AccessKeyId=org.keys["a1"])
    new_key = iam.create_access_key(UserName="alice")["AccessKey"]["AccessKeyId"]
    spy = CallSpy(org.session)

    snap = collect(org.prod, org.session)

    assert snap.status == SnapshotStatus.COMPLETE, snap.error
    assert spy.count("ListAccessKeys") == 1
    assert AccessKey.objects.get(access_key_id=org.keys["a1"]).deleted
    assert not AccessKey.objects.get(access_key_id=new_key).deleted
    assert AccessKey.objects.get(access_key_id=new_key).user.name == "alice"
