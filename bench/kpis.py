"""Benchmark of issue 3: policy evaluation, current KPIs, a year of trend, size of the history.

Run from the repository root:

    .venv/bin/python bench/kpis.py [--repeat N] [--regenerate] [--profile]

The database is Postgres from ``DATABASE_URL`` (default below; created when missing, migrated);
SQLite is refused. The first run fills it with the data set of ``bench/_kpi_data.py`` (100,000
keys in 500 accounts, a year of daily snapshots: 182,500 snapshots and about 33.5 million key
observations, the KPI roll-ups of every account and day); later runs reuse it, ``--regenerate``
drops the database and starts again.

Then it measures, each ``--repeat`` times after one untimed warm-up, median and p95:

1. ``evaluate_account`` on the account with 1,000 live keys, at its next snapshot: each
   repetition first applies, untimed, what an ingest of that snapshot would change (2 % of the keys
   deleted, 1 % deactivated, new keys, last use refreshed, some unused keys used again), evaluates,
   then runs ``roll_up_account`` (the rest of the post-snapshot work), and rolls everything back;
   once at the next day's snapshot and once 30 days later (many keys change state);
2. ``current_kpis()`` org-wide (also for one account and one owner);
3. ``trend(since=<a year ago>)`` org-wide and for one account;
4. bytes per row of ``inventory_keyobservation`` (table, TOAST and indexes / rows).

A ``SELECT 1`` round trip is measured as the baseline. ``--profile`` adds cProfile's top functions
of one evaluation and EXPLAIN ANALYZE of the slowest queries of each measured call.
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import math
import os
import pstats
import random
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "keygov.settings")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/keygov_bench_kpis")

import _kpi_data as data  # noqa: E402

TARGETS = {
    "evaluate_1000_s": 0.5,
    "kpis_current_s": 0.2,
    "trend_year_s": 0.05,
    "history_bytes_per_key_snapshot": 100,
}


# --- timing ----------------------------------------------------------------------------------


def p95(values: list[float]) -> float:
    """Nearest-rank 95th percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def summary(times: list[float]) -> dict:
    return {
        "median": statistics.median(times),
        "p95": p95(times),
        "min": min(times),
        "n": len(times),
    }


def timed(call, repeat: int, warmup: int = 1) -> tuple[dict, object]:
    result = None
    times = []
    for i in range(warmup + repeat):
        start = time.perf_counter()
        result = call()
        elapsed = time.perf_counter() - start
        if i >= warmup:
            times.append(elapsed)
    return summary(times), result


# --- 1. evaluation after a new snapshot ------------------------------------------------------


def apply_new_snapshot(account, now, rnd: random.Random) -> dict:
    """What ``ingest_inventory`` would have written for a snapshot at ``now`` before it evaluates:
    some keys gone, some deactivated, a few new ones, last use refreshed. Not timed."""
    from django.db import connection

    from inventory.choices import KeyState, KeyStatus
    from inventory.models import AccessKey

    live = list(
        AccessKey.objects.filter(account=account, deleted=False)
        .order_by("pk")
        .values_list("pk", "user_id", "status", "state")
    )
    rnd.shuffle(live)
    n = len(live)
    gone = live[: n // 50]
    deactivated = [k for k in live[n // 50 : n // 50 + n // 100] if k[2] == KeyStatus.ACTIVE]
    unused = [k for k in live if k[3] == KeyState.UNUSED][:10]
    AccessKey.objects.filter(pk__in=[k[0] for k in gone]).update(deleted=True, deleted_at=now)
    AccessKey.objects.filter(pk__in=[k[0] for k in deactivated]).update(status=KeyStatus.INACTIVE)
    with connection.cursor() as cur:
        # Keys in daily use were used again shortly before this snapshot.
        cur.execute(
            "UPDATE inventory_accesskey SET last_seen = %s, last_used_at = %s - "
            "((id * 7919) %% 72000) * interval '1 second' "
            "WHERE account_id = %s AND NOT deleted AND last_used_at > last_seen - interval '1 day'",
            [now, now, account.pk],
        )
    AccessKey.objects.filter(pk__in=[k[0] for k in unused]).update(
        last_used_at=now - timedelta(hours=3)
    )
    # The users of the deleted keys rotated them: a new key each.
    AccessKey.objects.bulk_create(
        [
            AccessKey(
                access_key_id=f"AKIANEW{now:%Y%m%d}{i:06d}",
                account=account,
                user_id=user_id,
                status=KeyStatus.ACTIVE,
                created=now - timedelta(hours=2),
                first_seen=now,
                last_seen=now,
            )
            for i, (_, user_id, _, _) in enumerate(gone)
        ]
    )
    return {"deleted": len(gone), "deactivated": len(deactivated), "used_again": len(unused)}


def measure_evaluation(account, now, repeat: int, profile: bool = False) -> dict:
    """Evaluate (and roll up) ``account`` at ``now`` after a simulated ingest, rolled back."""
    from django.db import transaction

    from inventory.services.evaluation import evaluate_account
    from inventory.services.kpis import roll_up_account

    evaluate, post = [], []
    last = None
    changes = None
    profiler = cProfile.Profile() if profile else None
    for i in range(1 + repeat):
        with transaction.atomic():
            changes = apply_new_snapshot(account, now, random.Random(i))
            start = time.perf_counter()
            if profiler and i == 1:
                profiler.enable()
            last = evaluate_account(account, now=now)
            if profiler and i == 1:
                profiler.disable()
            middle = time.perf_counter()
            roll_up_account(account, now)
            end = time.perf_counter()
            transaction.set_rollback(True)
        if i:  # the first is the warm-up
            evaluate.append(middle - start)
            post.append(end - start)
    out = {
        "evaluate": summary(evaluate),
        "post_snapshot": summary(post),
        "keys": last.keys,
        "changed": last.changed,
        "opened": last.opened,
        "closed": last.closed,
        "verified": last.verified,
        "ingest": changes,
    }
    if profiler:
        buffer = io.StringIO()
        pstats.Stats(profiler, stream=buffer).sort_stats("cumulative").print_stats(25)
        out["profile"] = buffer.getvalue()
    return out


# --- profiling of SQL ------------------------------------------------------------------------


def slowest_queries(call, top: int = 3) -> list[tuple[float, str, list]]:
    """The ``top`` slowest queries of ``call`` with their parameters, by their time in Django."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        call()
    queries = sorted(ctx.captured_queries, key=lambda q: -float(q["time"]))
    return [(float(q["time"]), q["sql"]) for q in queries[:top]]


def explain(sql: str) -> str:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
        return "\n".join(row[0] for row in cur.fetchall())


# --- main ------------------------------------------------------------------------------------


def fmt_s(seconds: float) -> str:
    return f"{seconds * 1000:9.1f} ms" if seconds < 10 else f"{seconds:9.1f} s "


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15, help="timed repetitions of each")
    parser.add_argument("--regenerate", action="store_true", help="drop and rebuild the data")
    parser.add_argument("--profile", action="store_true", help="cProfile and EXPLAIN ANALYZE")
    args = parser.parse_args()

    data.ensure_database(os.environ["DATABASE_URL"], drop=args.regenerate)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from inventory.models import Account, IamUser
    from inventory.services.kpis import current_kpis, trend

    call_command("migrate", verbosity=0)
    description = data.stored_description()
    if description is None:
        print("generating the data set (once; --regenerate to do it again)", flush=True)
        with connection.cursor() as cur:
            cur.execute("SELECT count(*) FROM inventory_accesskey")
            if cur.fetchone()[0]:
                sys.exit("the database holds other data: run with --regenerate")
        description = data.generate()
        print(f"generated in {description['generation_s']:.0f} s")
    else:
        print(f"reusing the data set generated in {description['generation_s']:.0f} s")

    with connection.cursor() as cur:
        cur.execute("SELECT version(), current_setting('shared_buffers')")
        pg_version, shared_buffers = cur.fetchone()

    def select_one():
        with connection.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchone()

    baseline, _ = timed(select_one, 200, warmup=5)
    results: dict[str, dict] = {}
    big = Account.objects.get(pk=data.BIG_ACCOUNT)
    next_snapshot = data.snap_time(big.pk, data.DAYS)
    now = data.END_TIME + timedelta(hours=1)
    since = data.END_DAY - timedelta(days=364)
    owner = IamUser.objects.filter(account=big).exclude(owner="").values_list("owner", flat=True)[0]

    # 1. evaluation
    ev_next = measure_evaluation(big, next_snapshot, args.repeat, profile=args.profile)
    ev_month = measure_evaluation(big, next_snapshot + timedelta(days=29), args.repeat)
    results["evaluate (next day)"] = ev_next["evaluate"]
    results["evaluate + roll_up_account (next day)"] = ev_next["post_snapshot"]
    results["evaluate (30 days later)"] = ev_month["evaluate"]
    results["evaluate + roll_up_account (30 days later)"] = ev_month["post_snapshot"]
    # 2. current KPIs
    results["current_kpis() org-wide"], kpis = timed(lambda: current_kpis(now), args.repeat)
    results["current_kpis(account=1,000-key)"], _ = timed(
        lambda: current_kpis(now, account=big), args.repeat
    )
    results["current_kpis(owner=...)"], _ = timed(
        lambda: current_kpis(now, owner=owner), args.repeat
    )
    # 3. a year of trend
    reps = max(args.repeat, 30)
    results["trend(since=a year ago) org-wide"], org_trend = timed(lambda: trend(since=since), reps)
    results["trend(account=..., since=a year ago)"], acct_trend = timed(
        lambda: trend(account=big, since=since), reps
    )
    # 4. storage
    with connection.cursor() as cur:
        cur.execute("""
            SELECT pg_total_relation_size('inventory_keyobservation'),
                   pg_relation_size('inventory_keyobservation'),
                   pg_indexes_size('inventory_keyobservation'),
                   (SELECT count(*) FROM inventory_keyobservation)
        """)
        total_bytes, heap_bytes, index_bytes, observations = cur.fetchone()
    per_row = total_bytes / observations

    # --- report ---
    print()
    print(f"PostgreSQL: {pg_version.split(' on ')[0]}, shared_buffers {shared_buffers}")
    print(
        f"data set: {description['accounts']} accounts, {description['keys']:,} keys, "
        f"{description['iam_users']:,} IAM users, {description['days']} daily snapshots per "
        f"account ({description['first_day']} .. {description['last_day']}), "
        f"{observations:,} key observations"
    )
    print(f"baseline SELECT 1 round trip: median {baseline['median'] * 1e3:.3f} ms")
    print()
    print(f"{'measure':45} {'median':>12} {'p95':>12} {'x SELECT 1':>11} {'n':>4}")
    for name, r in results.items():
        ratio = r["median"] / baseline["median"]
        print(f"{name:45} {fmt_s(r['median'])} {fmt_s(r['p95'])} {ratio:11.0f} {r['n']:4}")
    print()
    for label, ev in (("next day", ev_next), ("30 days later", ev_month)):
        print(
            f"evaluation ({label}): {ev['keys']} keys judged, {ev['changed']} changed state, "
            f"{ev['opened']} findings opened, {ev['closed']} closed, {ev['verified']} migrations "
            f"verified; simulated ingest: {ev['ingest']}"
        )
    print(
        f"current KPIs: {kpis.active_keys:,} active keys, {kpis.pct_users_with_active_keys:.1f} % "
        f"of users with an active key, average age {kpis.avg_active_key_age_days:.0f} days, "
        f"MTTR {kpis.mttr_days:.1f} days, compliance {kpis.compliance_rate:.1f} %"
    )
    print(f"trend rows: org-wide {len(org_trend)}, one account {len(acct_trend)}")
    print(
        f"history: {observations:,} rows, {total_bytes / 2**20:,.0f} MiB "
        f"(table {heap_bytes / 2**20:,.0f} MiB, indexes {index_bytes / 2**20:,.0f} MiB): "
        f"{per_row:.1f} bytes per key per snapshot "
        f"(table {heap_bytes / observations:.1f}, indexes {index_bytes / observations:.1f})"
    )

    figures = {
        "evaluate_1000_s": round(results["evaluate (next day)"]["median"], 4),
        "kpis_current_s": round(results["current_kpis() org-wide"]["median"], 4),
        "trend_year_s": round(results["trend(since=a year ago) org-wide"]["median"], 4),
        "history_bytes_per_key_snapshot": round(per_row, 1),
    }
    print()
    for name, target in TARGETS.items():
        verdict = "met" if figures[name] <= target else "MISSED"
        print(f"target {name} <= {target}: {figures[name]} {verdict}")

    if args.profile:
        print("\n--- cProfile: one evaluate_account (next day), cumulative ---")
        print(ev_next["profile"])
        for label, call in (
            ("current_kpis() org-wide", lambda: current_kpis(now)),
            ("trend org-wide", lambda: trend(since=since)),
        ):
            print(f"\n--- slowest queries of {label} ---")
            for seconds, sql in slowest_queries(call):
                print(f"\n{seconds * 1000:.1f} ms: {sql}\n{explain(sql)}")

    print()
    print(
        json.dumps(
            {
                **figures,
                "evaluate_1000_p95_s": round(results["evaluate (next day)"]["p95"], 4),
                "post_snapshot_1000_s": round(
                    results["evaluate + roll_up_account (next day)"]["median"], 4
                ),
                "evaluate_1000_30_days_s": round(results["evaluate (30 days later)"]["median"], 4),
                "kpis_current_p95_s": round(results["current_kpis() org-wide"]["p95"], 4),
                "trend_year_p95_s": round(results["trend(since=a year ago) org-wide"]["p95"], 4),
                "trend_year_account_s": round(
                    results["trend(account=..., since=a year ago)"]["median"], 4
                ),
                "select_1_s": round(baseline["median"], 6),
                "observations": observations,
                "generation_s": description["generation_s"],
            }
        )
    )


if __name__ == "__main__":
    main()
