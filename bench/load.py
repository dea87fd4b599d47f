"""Benchmark of issue 6: the compose stack's processes under load, and a full collection sweep.

Run from the repository root (PostgreSQL and Redis up):

    .venv/bin/python bench/load.py                 # --quick for a smoke check; --help for options

1. **Load**: gunicorn (``keygov.wsgi``, ``--workers`` sync workers) and two Celery workers
   (``celery -A keygov worker -c 1``, idle here) on the 100,000-key database of
   ``bench/_kpi_data.py`` (``keygov_bench_kpis``, generated once by bench/kpis.py or
   bench/pages.py and reused) and Redis. One HTTP sign-in as a viewer gives a session cookie;
   ``--clients`` threads then request the main pages (those of bench/pages.py) and the API's
   lists (``/api/keys/``, ``/api/kpis/``, ``/api/accounts/``, ``/api/findings/``, session
   authentication) in turn for ``--duration`` seconds, after an untimed warm-up. The HTTP
   client, gunicorn launcher and sign-in are bench/pages.py's (imported, not copied). Latency
   is measured by the client (queueing included); anything but a 200 is an error.
2. **Sweep**: ``--accounts`` emulated accounts in moto (server mode, in this process; each
   seeded with ``--users`` users of one key, straight into moto's backend) registered in a
   database of their own (``keygov_bench_load``, created and migrated here, emptied at each
   run: the 100,000-key data set stays as it is), the two workers restarted on it, and one
   fan-out (``collect_all_accounts``) sent through Redis. Measured from the send to the last
   snapshot's end: accounts per minute, and AWS API calls (the snapshots' own counts).

Prints a table, then one JSON object as its last line with ``rps``, ``p50_ms``, ``p95_ms``,
``p99_ms``, ``errors``, ``sweep_accounts_per_min`` and the details. Every process it starts is
stopped (SIGTERM to its process group, then SIGKILL) whatever happens.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

import pages  # noqa: E402 (sets DATABASE_URL's default, KEYGOV_DEBUG=false, the hosts)
from collect import start_moto  # noqa: E402 (moto in this process; sets AWS_ENDPOINT_URL)

API_PATHS = ["/api/keys/", "/api/kpis/", "/api/accounts/", "/api/findings/"]
TARGET_P95_MS = 300
SWEEP_DB = "keygov_bench_load"


def with_path(url: str, path: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=path))


def start(argv: list[str], env: dict, log) -> subprocess.Popen:
    return subprocess.Popen(
        argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def start_workers(env: dict, logdir: Path, tag: str, n: int = 2) -> list[subprocess.Popen]:
    procs = []
    for i in range(n):
        log = (logdir / f"worker{i + 1}-{tag}.log").open("w")
        procs.append(
            start(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "keygov",
                    "worker",
                    "-c",
                    "1",
                    "--without-mingle",
                    "--without-gossip",
                    "--loglevel",
                    "WARNING",
                    "-n",
                    f"bench{i + 1}-{os.getpid()}@%h",
                ],
                env,
                log,
            )
        )
    time.sleep(3)
    for proc in procs:
        if proc.poll() is not None:
            raise RuntimeError(f"a Celery worker exited ({proc.returncode}); see {logdir}")
    return procs


# --- 2. the sweep ------------------------------------------------------------------------------


def seed_moto(accounts: int, users: int) -> list[str]:
    """``accounts`` emulated accounts, each with ``users`` users of one active key."""
    from moto.iam.models import iam_backends

    ids = []
    for a in range(accounts):
        account_id = f"{500000000000 + a:012d}"
        backend = iam_backends[account_id]["aws"]
        for u in range(users):
            name = f"bench-user-{u:03d}"
            backend.create_user("us-east-1", name, tags=[{"Key": "owner", "Value": f"o{u}@x.io"}])
            backend.create_access_key(name)
        ids.append(account_id)
    return ids


def sweep(args, env: dict, logdir: Path) -> dict:
    import psycopg
    from celery import Celery

    moto = start_moto()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's request log
    db_url = with_path(env["DATABASE_URL"], f"/{SWEEP_DB}")
    try:
        t0 = time.perf_counter()
        ids = seed_moto(args.accounts, args.users)
        seed_s = time.perf_counter() - t0
        with psycopg.connect(with_path(db_url, "/postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{SWEEP_DB}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{SWEEP_DB}"')
        sweep_env = env | {
            "DATABASE_URL": db_url,
            "AWS_ENDPOINT_URL": os.environ["AWS_ENDPOINT_URL"],
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        manage = [sys.executable, "manage.py"]
        subprocess.run(
            [*manage, "migrate", "--noinput", "-v", "0"], cwd=REPO, env=sweep_env, check=True
        )
        create = (
            "from inventory.models import Account\n"
            f"Account.objects.bulk_create([Account(account_id=i, name='bench-'+i,"
            f" role_arn=f'arn:aws:iam::{{i}}:role/KeygovRead') for i in {ids!r}])\n"
        )
        subprocess.run([*manage, "shell", "-c", create], cwd=REPO, env=sweep_env, check=True)
        workers = start_workers(sweep_env, logdir, "sweep")
        try:
            run_key = f"bench-{datetime.now(UTC):%Y%m%dT%H%M%S}"
            app = Celery(broker=env["REDIS_URL"])
            began = time.time()
            app.send_task("inventory.tasks.collect_all_accounts", kwargs={"run_key": run_key})
            deadline = time.monotonic() + args.sweep_timeout
            with psycopg.connect(db_url, autocommit=True) as conn:
                while True:
                    row = conn.execute(
                        "SELECT count(*) FILTER (WHERE status <> 'running'),"
                        " count(*) FILTER (WHERE status = 'complete'), coalesce(sum(api_calls), 0),"
                        " extract(epoch FROM max(finished_at)), coalesce(sum(key_count), 0)"
                        " FROM inventory_snapshot WHERE run_key = %s",
                        [run_key],
                    ).fetchone()
                    if row[0] >= len(ids) or time.monotonic() > deadline:
                        break
                    time.sleep(0.5)
        finally:
            for proc in workers:
                stop(proc)
        finished, complete, api_calls, last_end, keys = row
        elapsed = (float(last_end) - began) if last_end else float("nan")
        return {
            "accounts": len(ids),
            "users_per_account": args.users,
            "seed_s": seed_s,
            "finished": finished,
            "complete": complete,
            "keys": int(keys),
            "elapsed_s": elapsed,
            "accounts_per_min": complete / elapsed * 60 if complete else 0.0,
            "api_calls": int(api_calls),
            "api_calls_per_account": int(api_calls) / max(complete, 1),
            "workers": 2,
            "timed_out": finished < len(ids),
        }
    finally:
        moto.stop()


# --- main ----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50, help="concurrent HTTP clients")
    parser.add_argument("--duration", type=float, default=60, help="load seconds")
    parser.add_argument(
        "--workers", type=int, default=3, help="gunicorn workers (compose: WEB_CONCURRENCY=3)"
    )
    parser.add_argument("--accounts", type=int, default=50, help="emulated accounts to sweep")
    parser.add_argument("--users", type=int, default=50, help="users (one key each) per account")
    parser.add_argument("--sweep-timeout", type=float, default=600, help="seconds")
    parser.add_argument(
        "--redis-url", default=os.environ.get("KEYGOV_BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
    )
    parser.add_argument("--no-sweep", action="store_true")
    parser.add_argument("--no-load", action="store_true")
    parser.add_argument(
        "--quick", action="store_true", help="smoke check: 10 clients, 5 s, 5 accounts"
    )
    args = parser.parse_args()
    if args.quick:
        args.clients, args.duration, args.accounts = 10, 5, 5

    import redis

    redis.Redis.from_url(args.redis_url).flushdb()  # the bench's own Redis database
    os.environ["REDIS_URL"] = args.redis_url
    # The data set's snapshots are as old as its generation: /health/ (which gunicorn's start-up
    # waits for, bench/pages.py) must not call them stale.
    os.environ["KEYGOV_HEALTH_MAX_SNAPSHOT_AGE"] = str(10 * 365 * 86400)
    description = pages.data.ready(os.environ["DATABASE_URL"])
    from django.test import Client

    viewer, _owner, _top = pages.bench_users()
    client = Client()
    client.force_login(viewer)
    page_paths, _facts = pages.build_pages(client, description)
    paths = [p for label, p in page_paths.items() if label != "mine (owner)"] + API_PATHS
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= {"KEYGOV_DEBUG": "false", "PYTHONUNBUFFERED": "1"}
    logdir = Path(tempfile.mkdtemp(prefix="keygov-bench-load-"))
    cpu = os.cpu_count()
    load_at_start = os.getloadavg()[0]

    load = None
    if not args.no_load:
        workers = start_workers(env, logdir, "load")
        try:
            cpu0, wall0 = time.process_time(), time.perf_counter()
            load = pages.run_load(paths, args.clients, args.duration, args.workers)
            # The clients share the 2 cores with the server: their own CPU share, warm-up included.
            load["client_cpu_share"] = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
        finally:
            for proc in workers:
                stop(proc)
    swept = None if args.no_sweep else sweep(args, env, logdir)

    print()
    print(
        f"machine: {cpu} CPUs (shared), load average {load_at_start:.2f} at start; "
        f"data set: {description['accounts']} accounts, {description['keys']:,} keys; logs {logdir}"
    )
    if load:
        print(
            f"\nload: {load['clients']} clients, {load['duration_s']:.0f} s, gunicorn "
            f"{load['workers']} workers, 2 idle Celery workers"
        )
        print(f"{'path':64} {'n':>6} {'p50 ms':>8}")
        for path, r in load["by_path"].items():
            print(f"{path[:64]:64} {r['n']:6} {r['p50_ms']:8.0f}")
        print(
            f"{'all':64} {load['requests']:6} {load['p50_ms']:8.0f}   "
            f"{load['rps']:.1f} req/s, p95 {load['p95_ms']:.0f} ms, p99 {load['p99_ms']:.0f} ms, "
            f"max {load['max_ms']:.0f} ms, errors {load['errors']} {load['error_kinds'] or ''}"
        )
        print(
            f"the load generator itself used {load['client_cpu_share']:.2f} of the 2 cores; "
            f"load average {load['loadavg_1m_before']:.2f} before, {load['loadavg_1m_after']:.2f} after"
        )
        print(
            f"target: no errors and p95 < {TARGET_P95_MS} ms: "
            f"{'met' if not load['errors'] and load['p95_ms'] < TARGET_P95_MS else 'MISSED'}"
        )
    if swept:
        print(
            f"\nsweep: {swept['accounts']} accounts x {swept['users_per_account']} users (1 key "
            f"each), 2 Celery workers (-c 1): {swept['complete']} complete in "
            f"{swept['elapsed_s']:.1f} s = {swept['accounts_per_min']:.1f} accounts/min; "
            f"{swept['api_calls']} AWS API calls ({swept['api_calls_per_account']:.1f} per account)"
            f"{'; TIMED OUT' if swept['timed_out'] else ''}"
        )
    summary = {
        "rps": round(load["rps"], 1) if load else None,
        "p50_ms": round(load["p50_ms"], 1) if load else None,
        "p95_ms": round(load["p95_ms"], 1) if load else None,
        "p99_ms": round(load["p99_ms"], 1) if load else None,
        "errors": load["errors"] if load else None,
        "sweep_accounts_per_min": round(swept["accounts_per_min"], 1) if swept else None,
        "sweep": swept,
        "load": {k: v for k, v in (load or {}).items() if k != "by_path"},
        "cpus": cpu,
    }
    print(json.dumps(summary, default=str))


if __name__ == "__main__":
    main()
