"""Fault tests of issue 6 ("nothing lost"), on the compose stack's processes (see conftest.py).

Each is bounded in time. Redis faults use a redis-server (or a hung socket) of the test's own,
never the machine's Redis; the PostgreSQL "restart" terminates the e2e database's connections
(``pg_terminate_backend``) rather than restarting a cluster other sessions use.
"""

from __future__ import annotations

import re
import shutil
import socket
import threading
import time
from datetime import UTC, datetime

import pytest
import redis
from celery import Celery

from tests.e2e.conftest import Http, free_port, wait_until
from tests.moto_org import create_organization, create_user, iam_in

pytestmark = pytest.mark.e2e

FAKE_ACCOUNT = "111122223333"
# Every page of the dashboard an admin reads, and two of the API's lists.
PAGES = (
    "/",
    "/keys/",
    "/mine/",
    "/accounts/",
    f"/accounts/{FAKE_ACCOUNT}/",
    "/findings/",
    "/exceptions/",
    "/requests/",
    "/audit/",
    "/api/keys/",
    "/api/kpis/",
)
COLLECT_NOW_LIMIT = 5.0  # seconds: issue 6
NOT_STARTED = "was not started: the task queue is unavailable"
HELD_PHASE = "e2e: held before reading AWS"  # tests/e2e/slow_worker.py's (not imported here)


def pages_and_collect_now(port: int) -> dict:
    """Sign in as an admin, read every page, press "Collect now"; returns the timings."""
    t0 = time.monotonic()
    admin = Http(port).login("e2e-admin")
    timings = {"login_s": time.monotonic() - t0}
    for path in PAGES:
        t0 = time.monotonic()
        status, _, _ = admin.get(path)
        timings[path] = time.monotonic() - t0
        assert status == 200, (path, status)
    t0 = time.monotonic()
    status, _, headers = admin.post(f"/accounts/{FAKE_ACCOUNT}/collect/")
    timings["collect_now_s"] = time.monotonic() - t0
    assert status == 302, status
    status, html, _ = admin.get(headers["Location"])
    assert status == 200
    assert NOT_STARTED in html, html[:2000]
    print(f"\ntimings (s): { {k: round(v, 2) for k, v in timings.items()} }")
    return timings


@pytest.fixture
def broken_redis_stack(stack):
    """The stack with a fake account (no collection happens) for the broker tests."""
    stack.add_accounts({"fake": FAKE_ACCOUNT})
    return stack


def test_it_serves_every_page_and_refuses_collect_now_quickly_when_redis_stopped(
    broken_redis_stack,
):
    """GIVEN gunicorn on a Redis of its own that answered, then stopped (killed)
    WHEN an admin signs in, reads every page and presses "Collect now"
    THEN every page answers 200, and "Collect now" answers within 5 s with a clear message."""
    if shutil.which("redis-server") is None:
        pytest.skip("needs Debian's redis-server (a Redis of the test's own, to stop)")
    stack = broken_redis_stack
    port = free_port()
    server = stack.start(
        "redis",
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--daemonize", "no", "--dir", str(stack.tmp)],
    )  # fmt: skip
    client = redis.Redis(port=port, socket_timeout=1)
    wait_until(lambda: _pings(client), 10, what="the private redis-server")
    web = stack.gunicorn(REDIS_URL=f"redis://127.0.0.1:{port}/0")
    status, body, _ = Http(web.port).get("/health/?only=broker")
    assert status == 200, body  # the broker worked before it stopped

    server.kill()

    timings = pages_and_collect_now(web.port)
    assert timings["collect_now_s"] < COLLECT_NOW_LIMIT
    assert Http(web.port).get("/health/?only=broker")[0] == 503


def _pings(client) -> bool:
    try:
        return client.ping()
    except redis.RedisError:
        return False


@pytest.fixture
def hung_redis():
    """A server that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        listener.close()


def test_it_serves_every_page_and_refuses_collect_now_quickly_when_redis_hangs(
    broken_redis_stack, hung_redis
):
    """GIVEN gunicorn whose Redis accepts connections and never answers
    WHEN an admin signs in, reads every page and presses "Collect now"
    THEN every page answers 200, and "Collect now" answers within 5 s with a clear message."""
    web = broken_redis_stack.gunicorn(REDIS_URL=f"redis://127.0.0.1:{hung_redis}/0")

    timings = pages_and_collect_now(web.port)

    assert timings["collect_now_s"] < COLLECT_NOW_LIMIT
    assert max(v for k, v in timings.items() if k.startswith("/")) < COLLECT_NOW_LIMIT


def test_it_recovers_from_a_database_restart_without_restarting_keygov(stack):
    """GIVEN gunicorn (2 workers) under load from 4 clients reading the overview and the keys
    WHEN every connection to keygov's database is terminated three times, 1.5 s apart (what a
    PostgreSQL restart does to them)
    THEN the same gunicorn processes keep serving: every request started after the last
    termination answers 200; at most the requests whose query was cut off fail."""
    stack.add_accounts({"fake": FAKE_ACCOUNT})
    web = stack.gunicorn()
    master = web.proc.popen.pid
    cookies = Http(web.port).login("e2e-viewer").cookies
    results: list[tuple[float, float, int | str]] = []  # (started, elapsed, status)
    stop = threading.Event()

    def client(paths):
        me = Http(web.port)
        me.cookies = dict(cookies)
        i = 0
        while not stop.is_set():
            started = time.monotonic()
            try:
                status = me.get(paths[i % len(paths)], timeout=15)[0]
            except OSError as exc:
                status = type(exc).__name__
            results.append((started, time.monotonic() - started, status))
            i += 1

    threads = [
        threading.Thread(target=client, args=(("/", "/keys/", "/accounts/"),)) for _ in range(4)
    ]
    for t in threads:
        t.start()
    terminated = []
    try:
        time.sleep(1.5)
        for _ in range(3):
            killed = stack.sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            terminated.append((time.monotonic(), len(killed)))
            time.sleep(1.5)
        time.sleep(2)
    finally:
        stop.set()
        for t in threads:
            t.join(20)

    last_kill = terminated[-1][0]
    after = [r for r in results if r[0] > last_kill + 0.05]
    failed = [r for r in results if r[2] != 200]
    print(
        f"\n{len(results)} requests, {len(failed)} failed ({sorted({str(r[2]) for r in failed})}); "
        f"connections terminated: {[n for _, n in terminated]}"
    )
    assert all(n > 0 for _, n in terminated), terminated  # gunicorn's workers were connected
    assert len(after) >= 10, len(after)
    assert [r for r in after if r[2] != 200] == []
    assert web.proc.popen.poll() is None and web.proc.popen.pid == master
    assert len(failed) <= 3 * 2, failed  # at most the requests in flight at each termination


def _seed(aws, *names: str, users: int = 1) -> dict[str, str]:
    ids = create_organization(aws, *names)
    for name in names:
        iam = iam_in(aws, ids[name])
        for n in range(users):
            create_user(iam, f"{name}-user-{n}", keys=1)
    return ids


def test_it_redelivers_the_collection_of_a_killed_worker_and_completes_the_slot_once(aws, stack):
    """GIVEN a scheduled slot's collection running on a worker (held before it reads AWS), a
    collection time limit of 60 s (lease 120 s) and a visibility timeout of 125 s
    WHEN the worker (its whole process group) is SIGKILLed mid-collection, and a second worker
    runs
    THEN Redis hands the unacknowledged message to the second worker after the visibility
    timeout, which takes the slot's run over: exactly one snapshot of the slot, complete."""
    ids = _seed(aws, "prod", users=2)
    stack.add_accounts(ids)
    stack.env.update(KEYGOV_COLLECT_TIME_LIMIT="60", KEYGOV_BROKER_VISIBILITY_TIMEOUT="125")
    slot = "2026-05-04T06:00Z"
    first = stack.worker("worker1", app="tests.e2e.slow_worker", KEYGOV_E2E_HOLD_SECONDS="25")
    app = Celery(broker=stack.redis_url)
    account_pk = stack.sql("SELECT id FROM inventory_account WHERE account_id = %s", (ids["prod"],))
    app.send_task(
        "inventory.tasks.collect_account", args=[account_pk[0][0]], kwargs={"run_key": slot}
    )
    app.close()
    wait_until(
        lambda: stack.sql(
            "SELECT 1 FROM inventory_snapshot WHERE phase = %s AND status = 'running'",
            (HELD_PHASE,),
        ),
        30,
        what="the collection to start",
    )
    delivered = time.monotonic()
    first.kill()
    assert stack.snapshots(ids["prod"])[0][:2] == ("running", slot)  # the run was cut off

    # Each worker looks for overdue unacknowledged messages when it starts, then every 100 s
    # (kombu: unacked_restore_interval 10 s x unacked_restore_throttle 10): start the second
    # worker once the message is overdue, as a fleet's next look would find it.
    time.sleep(max(0.0, delivered + 125 + 2 - time.monotonic()))
    second = stack.worker("worker2")
    wait_until(
        lambda: [s for s in stack.snapshots(ids["prod"]) if s[0] != "running"],
        60,
        interval=1,
        what="the redelivered collection to finish",
    )
    redelivered_after = time.monotonic() - delivered

    snaps = stack.snapshots(ids["prod"])
    print(f"\nredelivered and finished {redelivered_after:.0f} s after the kill: {snaps}")
    assert [(s[0], s[1], s[2]) for s in snaps] == [("complete", slot, 2)], snaps
    assert "succeeded" in second.text() and "complete, 2 users, 2 keys" in second.text()
    lease = stack.sql("SELECT collecting_until FROM inventory_account WHERE id = %s", account_pk[0])
    assert lease == [(None,)]


def test_it_collects_each_account_once_per_slot_with_two_beats(aws, stack):
    """GIVEN two member accounts, one worker and TWO beats started by mistake, both firing
    every minute
    WHEN both send the scheduled fan-out for the same minute
    THEN each account has exactly one snapshot of that slot, complete; the second fan-out's
    collections are skipped."""
    ids = _seed(aws, "prod", "dev")
    stack.add_accounts(ids)
    stack.env["KEYGOV_COLLECT_CRON"] = "* * * * *"
    # Both beats must start within one minute, or their first runs fall in different slots.
    if datetime.now(UTC).second > 48:
        time.sleep(61 - datetime.now(UTC).second)
    worker = stack.worker()
    beats = [stack.beat("beat1"), stack.beat("beat2")]

    def settled():
        text = worker.text()
        done = text.count("complete, 1 users, 1 keys") + text.count("skipped (already")
        return text if text.count("collections queued") >= 2 and done >= 4 else None

    text = wait_until(settled, 100, interval=1, what="both fan-outs' collections to run")

    for beat in beats:
        assert "Sending due task collect-all-accounts" in beat.text()
    fanouts = re.findall(r"slot (\S+): 2 account collections queued", text)
    assert len(fanouts) == 2 and fanouts[0] == fanouts[1], fanouts  # one slot, sent twice
    for name, account_id in ids.items():
        snaps = stack.snapshots(account_id)
        assert [(s[0], s[1], s[2]) for s in snaps] == [("complete", fanouts[0], 1)], (name, snaps)
    assert text.count("complete, 1 users, 1 keys") == 2
    assert text.count("skipped (already") == 2
