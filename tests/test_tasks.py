"""Celery tasks: the scheduled fan-out, and a real worker on Redis collecting from moto."""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from celery.contrib.testing.worker import start_worker
from celery.signals import task_postrun
from django.db import connections
from django.utils import timezone

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


@pytest.mark.django_db
def test_it_names_the_slot_beat_fired_from_a_worker_whose_clock_is_a_little_behind(monkeypatch):
    """GIVEN beat firing the 06:00 slot WHEN the worker's clock reads 05:59:30 THEN the slot
    is 06:00, not the 00:00 slot that is already collected (which would skip every account)."""
    AccountFactory()
    queued = []
    monkeypatch.setattr(tasks.collect_account, "delay", lambda *a, **kw: queued.append(kw))

    with time_machine.travel(datetime(2026, 5, 4, 5, 59, 30, tzinfo=UTC), tick=False):
        tasks.collect_all_accounts.apply().get()

    assert queued == [{"run_key": SLOT}]


@pytest.mark.django_db
def test_it_waits_for_the_lease_when_a_dead_run_holds_the_account_of_a_slot(monkeypatch):
    """GIVEN a slot whose worker was killed mid-run (its message comes back; the dead run's
    lease still holds the account for 20 minutes)
    WHEN the redelivered message runs
    THEN it asks to run again once the lease is over, rather than drop the slot."""
    from celery.exceptions import Retry

    from inventory.services.collection import start_snapshot

    account = AccountFactory()
    start_snapshot(account, run_key=SLOT)
    Account.objects.filter(pk=account.pk).update(
        collecting_until=timezone.now() + timedelta(minutes=20)
    )
    asked = []

    def retry(**kwargs):
        asked.append(kwargs)
        return Retry()

    monkeypatch.setattr(tasks.collect_account, "retry", retry)
    with pytest.raises(Retry):
        tasks.collect_account.run(account.pk, run_key=SLOT)

    [kwargs] = asked
    assert 20 * 60 <= kwargs["countdown"] <= 20 * 60 + 5
    assert kwargs["max_retries"] == tasks.LEASE_WAITS


@pytest.mark.django_db
def test_it_does_not_wait_when_the_slot_is_done_or_the_run_is_manual(monkeypatch):
    from inventory.services.collection import lease_wait, start_snapshot

    account = AccountFactory()
    start_snapshot(account)  # a manual run holds the account
    assert lease_wait(account.pk, "") is None  # a manual request is simply skipped
    assert lease_wait(account.pk, SLOT) > 0  # the slot has no snapshot yet
    Snapshot.objects.create(
        account=account, run_key=SLOT, status=SnapshotStatus.COMPLETE, started_at=timezone.now()
    )
    assert lease_wait(account.pk, SLOT) is None
    Account.objects.filter(pk=account.pk).update(collecting_until=None)
    assert lease_wait(account.pk, "2026-05-04T12:00Z") is None  # nobody holds it


@pytest.mark.django_db
def test_it_renews_the_lease_of_a_collection_that_is_still_working(settings):
    """GIVEN a long collection whose lease ends in a minute WHEN it reports its next phase
    THEN its lease runs a full term from now; a lease another run took over is left alone."""
    from inventory.services.collection import _renew

    account = AccountFactory()
    soon = timezone.now() + timedelta(minutes=1)
    Account.objects.filter(pk=account.pk).update(collecting_until=soon)
    account.collecting_until = soon

    _renew(account)

    renewed = Account.objects.get(pk=account.pk).collecting_until
    assert renewed > timezone.now() + timedelta(seconds=settings.KEYGOV_COLLECT_LEASE - 60)
    assert account.collecting_until == renewed
    other = timezone.now() + timedelta(hours=2)
    Account.objects.filter(pk=account.pk).update(collecting_until=other)
    account.collecting_until = soon  # this run's view: it lost the account
    _renew(account)
    assert Account.objects.get(pk=account.pk).collecting_until == other


def test_it_configures_celery_so_that_a_lost_worker_or_a_hung_broker_loses_nothing(settings):
    """Late acks and reject-on-worker-loss bring a killed worker's task back; one message at a
    time per worker process; the hard limit ends a run before Redis would hand it to another
    worker; short socket timeouts keep a hung Redis from hanging a web request."""
    conf = app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_soft_time_limit < conf.task_time_limit
    visibility = conf.broker_transport_options["visibility_timeout"]
    assert conf.task_time_limit < settings.KEYGOV_COLLECT_LEASE < visibility
    assert conf.broker_transport_options["socket_timeout"] <= 5
    assert conf.broker_transport_options["socket_connect_timeout"] <= 3
    assert conf.broker_connection_timeout <= 3
    assert conf.task_publish_retry_policy["max_retries"] <= 1
    assert (
        conf.beat_schedule["collect-all-accounts"]["task"] == "inventory.tasks.collect_all_accounts"
    )


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
