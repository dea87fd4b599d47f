"""Celery tasks: the scheduled fan-out, and a real worker on Redis collecting from moto."""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime

import pytest
import time_machine
from celery.contrib.testing.worker import start_worker
from celery.signals import task_postrun
from django.db import connections

from inventory import tasks
from inventory.choices import SnapshotStatus
from inventory.models import Account, Snapshot
from keygov.celery import app
from keygov.cron import parse_cron
from tests.factories import AccountFactory
from tests.moto_org import create_organization, create_user, iam_in, register_account

# 07:30 UTC falls in the 06:00 slot of the default schedule, "every 6 hours".
IN_SLOT = datetime(2026, 5, 4, 7, 30, tzinfo=UTC)
SLOT = "2026-05-04T06:00Z"


@pytest.fixture(autouse=True)
def _six_hourly(settings):
    settings.KEYGOV_COLLECT_SCHEDULE = parse_cron("KEYGOV_COLLECT_CRON", "0 */6 * * *")


@pytest.fixture
def eager_fanout(monkeypatch):
    """``collect_account.delay`` runs the task at once, in this process, and records it."""
    runs = []

    def run_now(*args, **kwargs):
        result = tasks.collect_account.apply(args=args, kwargs=kwargs)
        runs.append(result.get())
        return result

    monkeypatch.setattr(tasks.collect_account, "delay", run_now)
    return runs


@pytest.mark.django_db
def test_it_queues_one_collection_per_enabled_account_with_the_slot(monkeypatch):
    """GIVEN two enabled accounts and a disabled one
    WHEN the scheduled fan-out runs at 07:30
    THEN one collection is queued per enabled account, tagged with the 06:00 slot."""
    enabled = [AccountFactory(), AccountFactory()]
    AccountFactory(enabled=False)
    queued = []
    monkeypatch.setattr(
        tasks.collect_account, "delay", lambda *args, **kwargs: queued.append((args, kwargs))
    )

    with time_machine.travel(IN_SLOT, tick=False):
        summary = tasks.collect_all_accounts.apply().get()

    assert sorted(queued) == sorted(((a.pk,), {"run_key": SLOT}) for a in enabled)
    assert summary == f"slot {SLOT}: 2 account collections queued"


@pytest.mark.django_db
def test_it_passes_an_explicit_slot_through(monkeypatch):
    account = AccountFactory()
    queued = []
    monkeypatch.setattr(
        tasks.collect_account, "delay", lambda *args, **kwargs: queued.append((args, kwargs))
    )

    tasks.collect_all_accounts.apply(kwargs={"run_key": "manual-1"}).get()

    assert queued == [((account.pk,), {"run_key": "manual-1"})]


@pytest.mark.django_db(transaction=True)
def test_it_collects_each_account_once_per_slot(aws, eager_fanout):
    """GIVEN two enabled member accounts and a disabled one in moto
    WHEN the scheduled fan-out runs twice within one slot (a second beat, a redelivery)
    THEN each enabled account has exactly one snapshot, complete and tagged with the slot, and
    the second round's collections report that they were skipped."""
    ids = create_organization(aws, "prod", "dev", "sandbox")
    for name in ("prod", "dev", "sandbox"):
        create_user(iam_in(aws, ids[name]), f"{name}-deployer", keys=1)
    prod = register_account(ids["prod"], "prod")
    dev = register_account(ids["dev"], "dev")
    sandbox = register_account(ids["sandbox"], "sandbox", enabled=False)

    with time_machine.travel(IN_SLOT, tick=True):
        tasks.collect_all_accounts.apply().get()
        first_round = list(eager_fanout)
        tasks.collect_all_accounts.apply().get()
    second_round = eager_fanout[len(first_round) :]

    for account in (prod, dev):
        snapshots = list(Snapshot.objects.filter(account=account))
        assert len(snapshots) == 1, account
        assert snapshots[0].status == SnapshotStatus.COMPLETE, snapshots[0].error
        assert snapshots[0].run_key == SLOT
        assert snapshots[0].key_count == 1
    assert not Snapshot.objects.filter(account=sandbox).exists()
    assert len(first_round) == 2
    assert all("complete, 1 users, 1 keys" in summary for summary in first_round), first_round
    assert len(second_round) == 2
    assert all("skipped" in summary for summary in second_round), second_round


@pytest.mark.django_db(transaction=True)
def test_it_reports_a_failed_collection_in_the_task_summary(aws_everywhere):
    """GIVEN an account whose read role cannot be assumed
    WHEN its collection task runs
    THEN the task returns the failure with AWS's error, rather than raising (no retry storm)."""
    from tests.conftest import inject_error

    ids = create_organization(aws_everywhere, "prod")
    account = register_account(ids["prod"], "prod")
    inject_error(aws_everywhere, "before-send.sts.AssumeRole", "AccessDenied", "nope", status=403)

    summary = tasks.collect_account.apply(args=(account.pk,)).get()

    assert summary.startswith(f"account {ids['prod']}: failed")
    assert "AssumeRole failed: AccessDenied: nope" in summary


# --- a real worker -------------------------------------------------------------------------------


@pytest.fixture
def redis_url():
    url = os.environ.get("REDIS_URL")
    if not url:
        pytest.skip("REDIS_URL is unset: the end-to-end test needs a Redis broker")
    return url


@pytest.fixture
def celery_on_redis(redis_url):
    """The project's Celery app on Redis, not eager, for this test only."""
    saved = {k: app.conf[k] for k in ("broker_url", "task_always_eager")}
    app.conf.update(broker_url=redis_url, task_always_eager=False)
    yield app
    app.conf.update(saved)


def _close_worker_db_connections(**_):
    # The worker runs tasks in its own thread: close that thread's connection so the test
    # database can be flushed and dropped afterwards.
    connections.close_all()


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_it_collects_through_a_real_worker(aws, celery_on_redis):
    """GIVEN a member account in moto and a Celery worker consuming from Redis
    WHEN its collection is queued
    THEN the worker collects it into the database: a complete snapshot with the account's keys."""
    ids = create_organization(aws, "prod")
    iam = iam_in(aws, ids["prod"])
    create_user(iam, "alice", {"owner": "Alice@Example.com"}, keys=2)
    create_user(iam, "build-bot", keys=1)
    account = register_account(ids["prod"], "prod")
    # A queue of our own: other test runs may share this Redis, and must not feed this worker
    # (nor be fed by it).
    queue = f"keygov-e2e-{uuid.uuid4().hex[:12]}"
    task_postrun.connect(_close_worker_db_connections, weak=False)
    try:
        with start_worker(
            celery_on_redis,
            perform_ping_check=False,
            queues=[queue],
            loglevel="WARNING",
            shutdown_timeout=30,
        ):
            tasks.collect_account.apply_async((account.pk,), queue=queue)
            snapshot = _wait_for_finished_snapshot(account, timeout=90)
    finally:
        task_postrun.disconnect(_close_worker_db_connections)

    assert snapshot is not None, "the worker did not finish the collection in 90 s"
    assert snapshot.status == SnapshotStatus.COMPLETE, snapshot.error
    assert (snapshot.user_count, snapshot.key_count, snapshot.active_key_count) == (2, 3, 3)
    assert account.access_keys.filter(user__owner="alice@example.com").count() == 2
    assert Account.objects.get(pk=account.pk).collecting_until is None


def _wait_for_finished_snapshot(account: Account, timeout: float) -> Snapshot | None:
    """Poll until the account has a finished snapshot (a wait, not a timed assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        snapshot = (
            Snapshot.objects.filter(account=account).exclude(status=SnapshotStatus.RUNNING).first()
        )
        if snapshot is not None:
            return snapshot
        time.sleep(0.2)
    return None
