"""Benchmark of issue 4: server time and queries of the dashboard pages, then a short load.

Run from the repository root:

    .venv/bin/python bench/pages.py              # --quick for a smoke check; --help for options

The database is Postgres from ``DATABASE_URL`` (default below, the database of
``bench/kpis.py``: created when missing, migrated, filled once with the data set of
``bench/_kpi_data.py`` — 100,000 keys in 500 accounts, a year of daily snapshots and KPI
roll-ups — and reused afterwards; ``--regenerate`` starts again). SQLite is refused.

1. **Server time**: Django's test ``Client`` in this process, signed in (``force_login``) as a
   viewer (``/mine/`` as an owner whose e-mail owns the most live keys of the data set). Each page
   is requested ``--warmup`` times untimed (the first under ``CaptureQueriesContext``: its query
   count), then ``--repeat`` timed rounds over all the pages in turn; wall time of
   ``client.get`` (middleware, session, view, template) with ``KEYGOV_DEBUG`` off. The CSV export
   of every key (``/keys/?_export=csv``) is timed apart, ``--export-repeat`` times.
2. **Load**: gunicorn (``keygov.wsgi``, ``--workers`` sync workers on a free 127.0.0.1 port, the
   same database, debug off) as a subprocess; one HTTP sign-in (GET /login/ for the CSRF cookie
   and token, POST the credentials) gives a session cookie; ``--clients`` threads then request
   the main pages in turn for ``--duration`` seconds (after an untimed warm-up of a sixth of
   that). Latency is measured by the client (queueing included); a response other than 200 or a
   failed connection is an error. gunicorn is stopped (SIGTERM) at the end, whatever happens.

It prints a table and, as its last line, one JSON object:
``{"pages": {"<path>": {"p50_ms", "p95_ms", "queries", ...}}, "load": {"rps", "p95_ms", "errors",
...}, ...}``. ``--explain`` prints EXPLAIN (ANALYZE, BUFFERS) of the three slowest queries of
every page that misses a target.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "keygov.settings")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/keygov_bench_kpis")
# Measured as served in production: no debug. The test client's host must be allowed here; the
# gunicorn subprocess gets the hosts it was given (plus 127.0.0.1).
os.environ["KEYGOV_DEBUG"] = "false"
SERVER_HOSTS = os.environ.get("KEYGOV_ALLOWED_HOSTS", "127.0.0.1,localhost")
os.environ["KEYGOV_ALLOWED_HOSTS"] = SERVER_HOSTS + ",testserver"

import _kpi_data as data  # noqa: E402
from kpis import p95  # noqa: E402

TARGET_MS = 150  # p95 of every page
TARGET_QUERIES = 15  # fewer than this per page
# The two bench users only, in the bench database.
PASSWORD = "bench-pages-password"  # noqa: S105
VIEWER_NAME, OWNER_NAME = "bench-pages-viewer", "bench-pages-owner"


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``kpis.p95`` generalised)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


# --- what to request -------------------------------------------------------------------------


def bench_users() -> tuple:
    """A viewer, and an owner whose e-mail is the owner tag with the most live keys."""
    from django.contrib.auth.models import Group, User
    from django.db.models import Count

    from inventory.models import AccessKey

    top = (
        AccessKey.objects.filter(deleted=False)
        .exclude(user__owner="")
        .values("user__owner")
        .annotate(n=Count("pk"))
        .order_by("-n", "user__owner")
        .first()
    )
    users = []
    for name, role, email in (
        (VIEWER_NAME, "viewer", f"{VIEWER_NAME}@example.com"),
        (OWNER_NAME, "owner", top["user__owner"]),
    ):
        user, _ = User.objects.get_or_create(username=name)
        user.email = email
        user.set_password(PASSWORD)
        user.save()
        user.groups.set([Group.objects.get(name=role)])
        users.append(user)
    return users[0], users[1], top


def key_filters(account) -> dict:
    """The filtered key list: overdue keys of one account, with the FilterSet's own names."""
    params = {"state": "overdue", "account": account.pk}
    try:
        from inventory.views.keys import AccessKeyListView

        filters = AccessKeyListView.filterset_class.base_filters
    except (ImportError, AttributeError):
        return params
    account_filter = filters.get("account")
    if account_filter is not None:
        field = account_filter.extra.get("to_field_name") or "pk"
        params["account"] = getattr(account, field)
    return params


def key_sort() -> str:
    """The sorted key list: by age, oldest first, if the table has such a column."""
    try:
        from inventory.views.keys import AccessKeyListView

        columns = AccessKeyListView.table_class.base_columns
    except (ImportError, AttributeError):
        return "-age"
    for name in ("age", "created", "age_days"):
        if name in columns and columns[name].orderable is not False:
            return "created" if name == "created" else f"-{name}"
    return "-age"


def long_history_key(account):
    """A live key of ``account`` seen all year, preferably with an exception and a migration mark
    (the key page then shows every section)."""
    from inventory.models import AccessKey, KeyMigration, PolicyException

    keys = AccessKey.objects.filter(
        account=account, deleted=False, created__lt=data.snap_time(account.pk, 0)
    ).order_by("pk")
    excepted = set(PolicyException.objects.filter(account=account).values_list("key_id", flat=True))
    marked = set(KeyMigration.objects.filter(account=account).values_list("key_id", flat=True))
    ids = list(keys.values_list("pk", flat=True))
    for wanted in (excepted & marked, excepted | marked, set(ids)):
        for pk in ids:
            if pk in wanted:
                return AccessKey.objects.get(pk=pk)
    raise SystemExit(f"no live key in {account}")


def last_page(client, path: str, rows: int, per_page: int = 50) -> int:
    """The last page number the list's pagination links to (or what ``rows`` would make)."""
    body = client.get(path).content.decode()
    pages = [int(n) for n in re.findall(r"[?&;]page=(\d+)", body)]
    return max(pages) if pages else max(1, math.ceil(rows / per_page))


def build_pages(client, description: dict) -> tuple[dict, dict]:
    """(label -> path, facts about the chosen objects)."""
    from django.urls import reverse

    from inventory.models import AccessKey, Account, KeyObservation

    big = Account.objects.get(pk=data.BIG_ACCOUNT)
    key = long_history_key(big)
    live = AccessKey.objects.filter(deleted=False).count()
    keys = reverse("inventory:accesskey_list")
    sort = key_sort()
    pages = {
        "overview": reverse("inventory:overview"),
        "keys": keys,
        "keys filtered": f"{keys}?{urlencode(key_filters(big))}",
        "keys sorted": f"{keys}?{urlencode({'sort': sort})}",
        # A sort on a joined column (the default order is by age already).
        "keys by owner": f"{keys}?sort=owner",
        "keys last page": f"{keys}?page={last_page(client, keys, live)}",
        "key": reverse("inventory:accesskey_detail", args=[key.access_key_id]),
        "account": reverse("inventory:account_detail", args=[big.account_id]),
        "mine (owner)": reverse("inventory:mine"),
        "accounts": reverse("inventory:account_list"),
        "findings": reverse("inventory:finding_list"),
        "exceptions": reverse("inventory:exception_list"),
        "audit": reverse("inventory:audit_list"),
    }
    facts = {
        "live_keys": live,
        "key": key.access_key_id,
        "key_observations": KeyObservation.objects.filter(key=key).count(),
        "account": f"{big.name} ({big.account_id}), "
        f"{AccessKey.objects.filter(account=big, deleted=False).count()} live keys",
    }
    return pages, facts


# --- 1. server time --------------------------------------------------------------------------


class QueryRecorder:
    """Every query a request runs, with its time (a database execute wrapper: unlike
    ``CaptureQueriesContext`` it does not depend on the connection's bounded query log)."""

    def __init__(self) -> None:
        self.queries: list[tuple[float, str, object]] = []

    def __call__(self, execute, sql, params, many, context):
        start = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.queries.append((time.perf_counter() - start, sql, params))


def recorded(call):
    """``call()`` and the queries it ran."""
    from django.db import connection

    recorder = QueryRecorder()
    with connection.execute_wrapper(recorder):
        result = call()
    return result, recorder.queries


def explain(sql: str, params) -> str:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
        return "\n".join(row[0] for row in cur.fetchall())


def measure_pages(clients: dict, pages: dict, repeat: int, warmup: int) -> dict:
    results = {}
    for label, path in pages.items():
        client = clients[label]
        response, queries = recorded(lambda: client.get(path))  # noqa: B023 (called at once)
        if response.status_code != 200:
            raise SystemExit(f"{path}: status {response.status_code}")
        for _ in range(warmup - 1):
            client.get(path)
        results[label] = {
            "path": path,
            "queries": len(queries),
            "captured": queries,
            "bytes": len(response.content),
            "times": [],
            "sql": [],
        }
    from django.db import connection

    for _ in range(repeat):  # rounds over every page: noise from the shared machine spreads evenly
        for label, path in pages.items():
            recorder = QueryRecorder()
            with connection.execute_wrapper(recorder):
                start = time.perf_counter()
                response = clients[label].get(path)
                _ = response.content
                elapsed = time.perf_counter() - start
            if response.status_code != 200:
                raise SystemExit(f"{path}: status {response.status_code}")
            results[label]["times"].append(elapsed)
            results[label]["sql"].append(sum(q[0] for q in recorder.queries))
    for r in results.values():
        times = r.pop("times")
        r.update(
            sql_p50_ms=statistics.median(r.pop("sql")) * 1000,
            p50_ms=statistics.median(times) * 1000,
            p95_ms=p95(times) * 1000,
            max_ms=max(times) * 1000,
            n=len(times),
        )
    return results


def measure_export(client, path: str, repeat: int) -> dict:
    def export():
        response = client.get(path)
        content = b"".join(response.streaming_content) if response.streaming else response.content
        return response, content

    times, rows, size, queries = [], 0, 0, 0
    for i in range(repeat):
        start = time.perf_counter()
        (response, content), captured = recorded(export)
        times.append(time.perf_counter() - start)
        if response.status_code != 200:
            raise SystemExit(f"{path}: status {response.status_code}")
        if i == 0:
            rows, size, queries = content.count(b"\n") - 1, len(content), len(captured)
    return {
        "path": path,
        "p50_ms": statistics.median(times) * 1000,
        "max_ms": max(times) * 1000,
        "n": len(times),
        "rows": rows,
        "bytes": size,
        "queries": queries,
        "content_type": response.get("Content-Type", ""),
    }


# --- 2. load against gunicorn ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port: int, method: str, path: str, headers=None, body=None, timeout: float = 60):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read(), response.getheaders()
    finally:
        conn.close()


def cookies_of(headers) -> dict:
    jar = SimpleCookie()
    for name, value in headers:
        if name.lower() == "set-cookie":
            jar.load(value)
    return {name: morsel.value for name, morsel in jar.items()}


def start_gunicorn(port: int, workers: int, log) -> subprocess.Popen:
    env = dict(
        os.environ,
        KEYGOV_DEBUG="false",
        KEYGOV_ALLOWED_HOSTS=SERVER_HOSTS + ",127.0.0.1",
    )
    command = [
        sys.executable, "-m", "gunicorn", "keygov.wsgi", "--workers", str(workers),
        "--bind", f"127.0.0.1:{port}", "--timeout", "60", "--graceful-timeout", "10",
        "--log-level", "warning",
    ]  # fmt: skip
    proc = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    # Readiness, not health: the data set's snapshots are as old as its generation, so the full
    # /health/ (which checks the age of the last collection) answers 503.
    ready = "/health/?only=database"
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {proc.returncode}; see {log.name}")
            try:
                if request(port, "GET", ready, timeout=5)[0] == 200:
                    return proc
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"gunicorn did not answer {ready} within 60 s; see {log.name}")
    except BaseException:
        stop_gunicorn(proc)  # never leave a server behind
        raise


def stop_gunicorn(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)  # graceful: the master stops its workers
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the group this script started (start_new_session)
        proc.wait(timeout=10)


def http_login(port: int, username: str) -> str:
    """Sign in as a person would: the login form's CSRF cookie and token, then the POST."""
    status, body, headers = request(port, "GET", "/login/")
    if status != 200:
        raise RuntimeError(f"GET /login/: {status}")
    csrf = cookies_of(headers)["csrftoken"]
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', body).group(1).decode()
    form = urlencode(
        {"username": username, "password": PASSWORD, "csrfmiddlewaretoken": token, "next": "/"}
    )
    status, _, headers = request(
        port,
        "POST",
        "/login/",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": f"csrftoken={csrf}",
        },
        body=form,
    )
    session = cookies_of(headers).get("sessionid")
    if status != 302 or not session:
        raise RuntimeError(f"POST /login/: {status}, no session cookie")
    cookie = f"csrftoken={csrf}; sessionid={session}"
    status, _, _ = request(port, "GET", "/", headers={"Cookie": cookie})
    if status != 200:
        raise RuntimeError(f"GET / after signing in: {status}")
    return cookie


def hammer(port: int, cookie: str, paths: list[str], clients: int, seconds: float) -> dict:
    """``clients`` threads requesting ``paths`` in turn for ``seconds``."""
    results: list[tuple[str, float, object]] = []
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def client(offset: int) -> None:
        mine = []
        i = offset
        while time.perf_counter() < stop_at:
            path = paths[i % len(paths)]
            i += 1
            start = time.perf_counter()
            try:
                status = request(port, "GET", path, headers={"Cookie": cookie})[0]
            except Exception as exc:  # a refused or dropped connection is an error too
                status = type(exc).__name__
            mine.append((path, time.perf_counter() - start, status))
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    times = [r[1] for r in results]
    errors = [r for r in results if r[2] != 200]
    by_path = {}
    for path in paths:
        mine = [r[1] for r in results if r[0] == path]
        if mine:
            by_path[path] = {"n": len(mine), "p50_ms": statistics.median(mine) * 1000}
    return {
        "requests": len(results),
        "elapsed_s": elapsed,
        "rps": len(results) / elapsed,
        "p50_ms": statistics.median(times) * 1000,
        "p95_ms": percentile(times, 0.95) * 1000,
        "p99_ms": percentile(times, 0.99) * 1000,
        "max_ms": max(times) * 1000,
        "errors": len(errors),
        "error_kinds": sorted({str(e[2]) for e in errors}),
        "by_path": by_path,
    }


def run_load(paths: list[str], clients: int, seconds: float, workers: int) -> dict:
    port = free_port()
    log = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed in the finally)
        "w+", prefix="keygov-bench-gunicorn-", suffix=".log", delete=False
    )
    proc = None
    try:
        proc = start_gunicorn(port, workers, log)
        cookie = http_login(port, OWNER_NAME)
        hammer(port, cookie, paths, clients, max(2.0, seconds / 6))  # warm every worker, untimed
        load_before = os.getloadavg()[0]
        result = hammer(port, cookie, paths, clients, seconds)
        result.update(
            clients=clients,
            duration_s=seconds,
            workers=workers,
            loadavg_1m_before=load_before,
            loadavg_1m_after=os.getloadavg()[0],
        )
        return result
    finally:
        if proc is not None:
            stop_gunicorn(proc)
        log.close()
        if os.path.getsize(log.name):
            print(f"(gunicorn's log: {log.name})")
        else:
            os.unlink(log.name)


# --- main ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30, help="timed requests of each page")
    parser.add_argument("--warmup", type=int, default=3, help="untimed requests of each page")
    parser.add_argument("--export-repeat", type=int, default=3, help="timed CSV exports")
    parser.add_argument("--clients", type=int, default=20, help="concurrent load clients")
    parser.add_argument("--duration", type=float, default=30, help="load seconds")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers")
    parser.add_argument("--no-load", action="store_true", help="skip the gunicorn load")
    parser.add_argument(
        "--load-exclude", default="", help="comma-separated page labels the load leaves out"
    )
    parser.add_argument("--quick", action="store_true", help="smoke check: few repetitions")
    parser.add_argument("--explain", action="store_true", help="EXPLAIN pages that miss")
    parser.add_argument("--regenerate", action="store_true", help="drop and rebuild the data")
    args = parser.parse_args()
    if args.quick:
        args.repeat, args.warmup, args.export_repeat = 5, 1, 1
        args.duration = min(args.duration, 5)

    load_start = os.getloadavg()[0]
    description = data.ready(os.environ["DATABASE_URL"], regenerate=args.regenerate)
    import django
    from django.db import connection
    from django.test import Client

    viewer, owner, top_owner = bench_users()
    viewer_client, owner_client = Client(), Client()
    viewer_client.force_login(viewer)
    owner_client.force_login(owner)
    pages, facts = build_pages(viewer_client, description)
    clients = {label: viewer_client for label in pages}
    clients["mine (owner)"] = owner_client

    with connection.cursor() as cur:
        cur.execute("SELECT current_setting('server_version'), current_setting('shared_buffers')")
        pg_version, shared_buffers = cur.fetchone()

    results = measure_pages(clients, pages, args.repeat, args.warmup)
    export = measure_export(
        viewer_client, f"{pages['keys']}?{urlencode({'_export': 'csv'})}", args.export_repeat
    )
    load_pages = os.getloadavg()[0]
    load = None
    if not args.no_load:
        excluded = {x.strip() for x in args.load_exclude.split(",") if x.strip()}
        unknown = excluded - set(pages)
        if unknown:
            raise SystemExit(f"--load-exclude: no page {sorted(unknown)}; pages: {list(pages)}")
        paths = [path for label, path in pages.items() if label not in excluded]
        load = run_load(paths, args.clients, args.duration, args.workers)

    # --- report ---
    import gunicorn

    print()
    print(
        f"PostgreSQL {pg_version} (shared_buffers {shared_buffers}), "
        f"Django {django.get_version()}, gunicorn {gunicorn.__version__}, Python "
        f"{sys.version.split()[0]}, {os.cpu_count()} CPUs"
    )
    print(
        f"data set: {description['accounts']} accounts, {description['keys']:,} keys "
        f"({facts['live_keys']:,} live), {description['days']} days of snapshots"
    )
    print(
        f"key page: {facts['key']} ({facts['key_observations']} observations); account page: "
        f"{facts['account']}; /mine/: {top_owner['user__owner']} ({top_owner['n']} live keys)"
    )
    print(
        f"load average (1 min): {load_start:.2f} at start, {load_pages:.2f} after the page timings"
    )
    print()
    print(
        f"{'page':16} {'path':44} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'SQL p50':>8} "
        f"{'queries':>7} {'KiB':>6} {'n':>4}  target"
    )
    missed = []
    for label, r in results.items():
        ok = r["p95_ms"] < TARGET_MS and r["queries"] < TARGET_QUERIES
        if not ok:
            missed.append(label)
        print(
            f"{label:16} {r['path'][:44]:44} {r['p50_ms']:8.1f} {r['p95_ms']:8.1f} "
            f"{r['max_ms']:8.1f} {r['sql_p50_ms']:8.1f} {r['queries']:7} {r['bytes'] / 1024:6.0f} "
            f"{r['n']:4}  "
            f"{'met' if ok else 'MISSED'}"
        )
    print(
        f"\nCSV export {export['path']}: median {export['p50_ms']:.0f} ms, max "
        f"{export['max_ms']:.0f} ms (n={export['n']}), {export['rows']:,} rows, "
        f"{export['bytes'] / 2**20:.1f} MiB, {export['queries']} queries "
        f"({export['content_type']}; not held to the page target)"
    )
    if load:
        print(
            f"\nload: {load['clients']} clients for {load['duration_s']:.0f} s against gunicorn "
            f"with {load['workers']} workers: {load['requests']} requests, {load['rps']:.1f} "
            f"requests/s, p50 {load['p50_ms']:.0f} ms, p95 {load['p95_ms']:.0f} ms, p99 "
            f"{load['p99_ms']:.0f} ms, max {load['max_ms']:.0f} ms, errors {load['errors']}"
            f"{' ' + str(load['error_kinds']) if load['errors'] else ''}; load average {load['loadavg_1m_before']:.2f} before, "
            f"{load['loadavg_1m_after']:.2f} after"
        )
        for path, r in load["by_path"].items():
            print(f"  {path[:60]:60} n={r['n']:5}  p50 {r['p50_ms']:7.0f} ms")
    print()
    print(f"target: p95 < {TARGET_MS} ms and < {TARGET_QUERIES} queries on every page: ", end="")
    print("met" if not missed else f"MISSED by {', '.join(missed)}")
    if load:
        print(f"target: no errors under load: {'met' if not load['errors'] else 'MISSED'}")

    if args.explain:
        for label in missed:
            slowest = sorted(results[label]["captured"], key=lambda q: -q[0])[:3]
            print(f"\n--- {label} {results[label]['path']}: slowest queries ---")
            for seconds, sql, params in slowest:
                print(f"\n{seconds * 1000:.1f} ms: {sql} {params!r}")
                if sql.lstrip().upper().startswith("SELECT"):
                    print(explain(sql, params))

    out = {
        "pages": {
            r["path"]: {
                "p50_ms": round(r["p50_ms"], 1),
                "p95_ms": round(r["p95_ms"], 1),
                "queries": r["queries"],
                "sql_p50_ms": round(r["sql_p50_ms"], 1),
            }
            for r in results.values()
        },
        "load": None
        if load is None
        else {
            "rps": round(load["rps"], 1),
            "p95_ms": round(load["p95_ms"], 1),
            "errors": load["errors"],
            "p50_ms": round(load["p50_ms"], 1),
            "p99_ms": round(load["p99_ms"], 1),
            "requests": load["requests"],
            "clients": load["clients"],
            "duration_s": load["duration_s"],
            "workers": load["workers"],
            "loadavg_1m_after": round(load["loadavg_1m_after"], 2),
        },
        "export_csv": {
            "p50_ms": round(export["p50_ms"], 1),
            "rows": export["rows"],
            "queries": export["queries"],
        },
        "repeat": args.repeat,
        "missed": missed,
        "loadavg_1m": round(load_pages, 2),
    }
    print()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
