"""/health/: the database, the broker and the age of the newest complete snapshot; 200 or 503,
quickly even when Redis hangs."""

from __future__ import annotations

import os
import socket
import threading
import time
from datetime import timedelta
from unittest import mock

import pytest
from django.db.utils import OperationalError
from django.utils import timezone

from inventory.choices import SnapshotStatus
from inventory.models import Account
from inventory.views.health import longest_collect_gap
from tests.factories import AccountFactory, SnapshotFactory

pytestmark = pytest.mark.django_db

URL = "/health/"
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def redis_up(settings):
    settings.REDIS_URL = REDIS_URL


@pytest.fixture
def collected():
    """An account whose last collection finished a minute ago."""
    now = timezone.now()
    return SnapshotFactory(
        started_at=now - timedelta(minutes=2), finished_at=now - timedelta(minutes=1)
    )


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nobody listens once the socket is closed


@pytest.fixture
def hung_redis():
    """A server that accepts connections and never answers (a hung Redis)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            held.append(conn)  # read nothing, write nothing

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_it_answers_200_when_every_check_passes(
    client, redis_up, collected, django_assert_max_num_queries
):
    with django_assert_max_num_queries(2):
        response = client.get(URL)

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"] == {"status": "ok"}
    assert body["checks"]["broker"] == {"status": "ok", "broker": "redis"}
    snapshot = body["checks"]["snapshot"]
    assert snapshot["status"] == "ok"
    assert 55 <= snapshot["age_seconds"] <= 120
    assert snapshot["max_age_seconds"] == 12 * 3600  # twice the default 6-hour schedule
    assert response["Cache-Control"].startswith("max-age=0")


def test_it_says_embedded_without_a_broker(client, settings, collected):
    settings.REDIS_URL = ""

    response = client.get(URL)

    assert response.status_code == 200
    assert response.json()["checks"]["broker"] == {"status": "ok", "broker": "embedded"}


def test_it_answers_503_when_the_broker_is_down(client, settings, collected):
    settings.REDIS_URL = f"redis://127.0.0.1:{_closed_port()}/0"

    response = client.get(URL)

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "error"
    assert body["checks"]["broker"]["status"] == "error"
    assert body["checks"]["broker"]["error"].startswith("ConnectionError")
    assert body["checks"]["database"]["status"] == "ok"


def test_it_answers_within_seconds_when_the_broker_hangs(client, settings, collected, hung_redis):
    """GIVEN a Redis that accepts the connection and never answers
    WHEN /health/ is asked
    THEN it answers 503 in about a second (one timeout, no retries), naming a timeout."""
    settings.REDIS_URL = hung_redis

    started = time.monotonic()
    response = client.get(URL)
    elapsed = time.monotonic() - started

    assert response.status_code == 503
    assert elapsed < 3
    assert response.json()["checks"]["broker"]["error"].startswith("TimeoutError")


def test_it_answers_503_when_the_newest_complete_snapshot_is_too_old(client, redis_up):
    """GIVEN an account last collected 13 hours ago (the schedule runs every 6 hours), and a
    failed run since WHEN /health/ is asked THEN the snapshot check fails, with the age."""
    now = timezone.now()
    old = SnapshotFactory(
        started_at=now - timedelta(hours=13), finished_at=now - timedelta(hours=13)
    )
    SnapshotFactory(account=old.account, status=SnapshotStatus.FAILED, started_at=now)

    response = client.get(URL)

    assert response.status_code == 503
    snapshot = response.json()["checks"]["snapshot"]
    assert snapshot["status"] == "error"
    assert snapshot["error"] == "the newest complete snapshot is too old"
    assert 13 * 3600 - 5 <= snapshot["age_seconds"] <= 13 * 3600 + 60
    assert snapshot["max_age_seconds"] == 43200


def test_it_finds_the_newest_run_by_time_not_by_row_order(client, redis_up):
    """A slot delivered again takes over its older snapshot row: the newest complete run need
    not be the newest row."""
    now = timezone.now()
    SnapshotFactory(started_at=now - timedelta(minutes=5), finished_at=now - timedelta(minutes=4))
    SnapshotFactory(started_at=now - timedelta(hours=20), finished_at=now - timedelta(hours=20))

    response = client.get(URL)

    assert response.status_code == 200
    assert response.json()["checks"]["snapshot"]["age_seconds"] < 600


def test_it_takes_the_threshold_from_the_setting(client, settings, redis_up):
    settings.KEYGOV_HEALTH_MAX_SNAPSHOT_AGE = 3600
    now = timezone.now()
    SnapshotFactory(started_at=now - timedelta(hours=2), finished_at=now - timedelta(hours=2))

    response = client.get(URL)

    assert response.status_code == 503
    assert response.json()["checks"]["snapshot"]["max_age_seconds"] == 3600
    settings.KEYGOV_HEALTH_MAX_SNAPSHOT_AGE = 3 * 3600
    assert client.get(URL).status_code == 200


def test_it_derives_the_threshold_from_the_collection_schedule(client, settings, redis_up):
    settings.KEYGOV_COLLECT_CRON = "0 3 * * *"  # daily: twice a day's gap
    now = timezone.now()
    SnapshotFactory(started_at=now - timedelta(hours=30), finished_at=now - timedelta(hours=30))

    response = client.get(URL)

    assert response.status_code == 200
    assert response.json()["checks"]["snapshot"]["max_age_seconds"] == 48 * 3600


def test_it_is_healthy_on_a_new_installation_until_an_account_has_waited_too_long(client, redis_up):
    """GIVEN no complete snapshot at all: healthy while no account is older than the threshold,
    then 503 ("no complete snapshot yet")."""
    account = AccountFactory()

    response = client.get(URL)
    assert response.status_code == 200
    assert response.json()["checks"]["snapshot"]["age_seconds"] is None

    Account.objects.filter(pk=account.pk).update(created_at=timezone.now() - timedelta(days=1))
    response = client.get(URL)
    assert response.status_code == 503
    assert response.json()["checks"]["snapshot"]["error"] == "no complete snapshot yet"


def test_it_answers_503_when_the_database_fails(client, redis_up, collected):
    with mock.patch("inventory.views.health.connection") as connection:
        connection.cursor.side_effect = OperationalError("could not connect to server")
        response = client.get(URL)

    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"] == {
        "status": "error",
        "error": "OperationalError: could not connect to server",
    }
    assert checks["snapshot"] == {"status": "error", "error": "the database is unavailable"}
    assert checks["broker"]["status"] == "ok"


def test_it_runs_only_the_checks_asked_for(client, settings):
    """A liveness probe asks for the database and the broker: a stale snapshot (AWS refusing
    collections) must not get the web server restarted."""
    settings.REDIS_URL = ""
    now = timezone.now()
    SnapshotFactory(started_at=now - timedelta(days=3), finished_at=now - timedelta(days=3))

    assert client.get(URL).status_code == 503
    response = client.get(URL, {"only": "database,broker"})
    assert response.status_code == 200
    assert set(response.json()["checks"]) == {"database", "broker"}
    assert client.get(URL, {"only": "disk"}).status_code == 400


@pytest.mark.parametrize(
    ("cron", "gap"),
    [
        ("0 */6 * * *", timedelta(hours=6)),
        ("0 9,17 * * *", timedelta(hours=16)),
        ("30 2 * * 1-5", timedelta(days=3)),  # Friday to Monday
        ("0 0 1 * *", timedelta(days=31)),
    ],
)
def test_it_finds_the_longest_gap_of_a_schedule(cron, gap):
    assert longest_collect_gap(cron) == gap
