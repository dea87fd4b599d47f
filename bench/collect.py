"""Benchmark of issue 2: keygov's collection of one account against the naive per-user path.

Run from the repository root:

    .venv/bin/python bench/collect.py [--repeat N]

In one run on this machine it starts moto in server mode in-process, seeds one account with
2,000 IAM users and 3,000 access keys (straight into moto's in-process backend objects: creating
them through the API would take longer than the benchmark itself), and then, ``--repeat`` times:

1. keygov's AWS part alone with ``KEYGOV_AWS_CONCURRENCY=1`` (sequential, like the naive path);
2. keygov's first collection of the account (``inventory.services.collection.collect_account``,
   the real service), with its AWS part and its Postgres ingest timed separately;
3. a second collection of the unchanged account (its API calls: the target is at most 10);
4. the naive per-user path: ListUsers (every page), ListUserTags and ListAccessKeys per user,
   GetAccessKeyLastUsed per key, sequential, as a plain script would do it.

Call counts are exact (botocore ``before-call`` events, the collector's own counter); times are
medians over the repetitions. The last line printed is one JSON object with the figures.
The database is Postgres from ``DATABASE_URL`` (default below; created when missing, migrated);
SQLite is refused: the ingest figure is meant for the deployment at scale.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import logging
import math
import os
import pstats
import random
import socket
import statistics
import sys
import time
from collections import Counter
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "keygov.settings")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/keygov_bench")

ACCOUNT_ID = "210987654321"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/KeygovRead"
USERS = 2000
# 250 users without keys, 500 with one, 1,250 with two: 3,000 keys held by 1,750 users.
# (With 2,000 users and 3,000 keys at most two per user, at least 1,000 users must have two.)
USERS_WITHOUT_KEYS = 250
USERS_WITH_ONE_KEY = 500
SEED = 2


# --- environment ----------------------------------------------------------------------------


def ensure_database(url: str) -> None:
    """Create the Postgres database named in ``url`` when it does not exist yet."""
    import dj_database_url
    import psycopg
    from psycopg import sql

    config = dj_database_url.parse(url)
    if config["ENGINE"] != "django.db.backends.postgresql":
        sys.exit(f"bench/collect.py measures Postgres; DATABASE_URL is {config['ENGINE']}: {url}")
    params = {
        "host": config.get("HOST") or None,
        "port": config.get("PORT") or None,
        "user": config.get("USER") or None,
        "password": config.get("PASSWORD") or None,
    }
    params = {k: v for k, v in params.items() if v}
    with psycopg.connect(dbname="postgres", autocommit=True, **params) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [config["NAME"]]
        ).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(config["NAME"])))
            print(f"created database {config['NAME']}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto():
    """moto in server mode in this process, with boto3 pointed at it through AWS_ENDPOINT_URL."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    # Always the emulator, never a real account, whatever the shell has configured.
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE"):
        os.environ.pop(name, None)
    os.environ.update(
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",  # noqa: S106 - moto's dummy credentials
        AWS_DEFAULT_REGION="us-east-1",
    )
    return server


# --- the emulated account ---------------------------------------------------------------------


def seed_account(now: datetime) -> dict:
    """2,000 users and 3,000 keys in moto's backend for ACCOUNT_ID. Deterministic (SEED).

    Humans (console password, mostly an owner tag) and service users (path /service/, owner tag
    less often); keys from an hour to five years old, 10 % inactive, a quarter never used. Creation
    times are distinct per user, as in AWS where one user's two keys are rarely created within
    the same second.
    """
    from moto.iam.models import AccessKeyLastUsed, iam_backends

    rnd = random.Random(SEED)
    backend = iam_backends[ACCOUNT_ID]["aws"]
    # moto keeps naive UTC datetimes.
    naive_now = now.astimezone(UTC).replace(tzinfo=None, microsecond=0)
    services = ["s3", "sts", "ec2", "dynamodb", "lambda", "sqs", "secretsmanager", "ecr"]
    regions = ["us-east-1", "eu-west-1", "eu-central-1", "us-west-2", "ap-southeast-2"]
    owner_tags = ["owner", "owner", "owner", "Owner", "OwnerEmail", "owner_email", "OwnerContact"]
    teams = ["payments", "search", "platform", "data", "mobile", "growth", "security"]

    key_counts = (
        [0] * USERS_WITHOUT_KEYS
        + [1] * USERS_WITH_ONE_KEY
        + [2] * (USERS - USERS_WITHOUT_KEYS - USERS_WITH_ONE_KEY)
    )
    rnd.shuffle(key_counts)
    stats = Counter()
    for i, n_keys in enumerate(key_counts):
        human = rnd.random() < 0.45
        name = f"person{i:04d}" if human else f"svc-{rnd.choice(teams)}-{i:04d}"
        tags = []
        if rnd.random() < (0.9 if human else 0.7):
            tags.append({"Key": rnd.choice(owner_tags), "Value": f"owner{i % 150:03d}@example.com"})
        if rnd.random() < 0.6:
            tags.append({"Key": "team", "Value": rnd.choice(teams)})
        if rnd.random() < 0.3:
            tags.append({"Key": "cost-center", "Value": f"cc-{rnd.randint(100, 999)}"})
        user = backend.create_user("us-east-1", name, path="/" if human else "/service/", tags=tags)
        age_days = rnd.randint(5, 2000)
        user.create_date = naive_now - timedelta(days=age_days, seconds=rnd.randint(0, 86_399))
        if human:
            user.password = "bench-only"  # noqa: S105 - makes moto report password_enabled
        stats["humans"] += human
        stats["tagged"] += bool(tags)
        # Keys are younger than their user; a second key is younger than the first.
        created = user.create_date
        for _ in range(n_keys):
            span = max(1, int((naive_now - created).total_seconds()) - 3600)
            created = created + timedelta(seconds=rnd.randint(60, span))
            status = "Inactive" if rnd.random() < 0.1 else "Active"
            key = backend.create_access_key(name, status=status)
            key.create_date = created
            if rnd.random() < 0.75:
                used_span = max(1, int((naive_now - created).total_seconds()))
                key.last_used = AccessKeyLastUsed(
                    created + timedelta(seconds=rnd.randint(0, used_span)),
                    rnd.choice(services),
                    rnd.choice(regions),
                )
                stats["used"] += 1
            stats["keys"] += 1
            stats["inactive"] += status == "Inactive"
        stats["users_with_keys"] += n_keys > 0
    stats["users"] = len(key_counts)
    return dict(stats)


def forget_credential_report() -> None:
    """Make the next GenerateCredentialReport start a new report (answer STARTED), as it does in
    AWS for a collection every 6 hours: AWS reuses a report for 4 hours at most."""
    from moto.iam.models import iam_backends

    iam_backends[ACCOUNT_ID]["aws"].credential_report = None


# --- keygov's collection ----------------------------------------------------------------------


@contextmanager
def instrumented_collection(record: dict):
    """Time the AWS part (``read_account``) and the ingest (``ingest_inventory``) of the real
    ``collect_account``, and keep the ``AccountInventory`` it read (calls by operation)."""
    from django.db import connection

    from inventory.services import collection

    read, ingest = collection.read_account, collection.ingest_inventory

    def timed_read(*args, **kwargs):
        t0 = time.perf_counter()
        inventory = read(*args, **kwargs)
        record["aws_s"] = time.perf_counter() - t0
        record["inventory"] = inventory
        return inventory

    def timed_ingest(*args, **kwargs):
        profile = cProfile.Profile() if record.get("profile") else None
        sql = {"s": 0.0, "queries": 0}

        def time_sql(execute, sql_text, params, many, context):
            # Time in cursor.execute: psycopg quoting the values plus Postgres running the query.
            t = time.perf_counter()
            try:
                return execute(sql_text, params, many, context)
            finally:
                sql["s"] += time.perf_counter() - t
                sql["queries"] += 1

        t0, cpu0 = time.perf_counter(), time.process_time()
        if profile:
            profile.enable()
        try:
            with connection.execute_wrapper(time_sql):
                return ingest(*args, **kwargs)
        finally:
            if profile:
                profile.disable()
            record["ingest_s"] = time.perf_counter() - t0
            # CPU time of this process (moto's threads idle meanwhile): steadier than wall time
            # on a loaded machine; Postgres's own CPU is not in it.
            record["ingest_cpu_s"] = time.process_time() - cpu0
            record["ingest_sql_s"] = sql["s"]
            record["ingest_queries"] = sql["queries"]
            if profile:
                out = io.StringIO()
                pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(25)
                record["ingest_profile"] = out.getvalue()

    collection.read_account, collection.ingest_inventory = timed_read, timed_ingest
    try:
        yield record
    finally:
        collection.read_account, collection.ingest_inventory = read, ingest


# The collector's progress messages, in order, and the phase each one opens.
PHASES = (
    ("assuming the read role", "assume_role"),
    ("generating the credential report", "report"),
    ("listing users", "list_users"),
    ("listing access keys", "list_keys"),
    ("writing", "ingest"),
)


def phase_timer(record: dict):
    """A progress callback that notes when each phase of the collection starts; ``phase_times``
    turns the notes into durations."""
    marks = record.setdefault("marks", [])

    def progress(message: str) -> None:
        for prefix, phase in PHASES:
            if message.startswith(prefix):
                marks.append((phase, time.perf_counter()))

    return progress


def phase_times(marks) -> dict[str, float]:
    return {phase: end - start for (phase, start), (_, end) in pairwise(marks)}


def fresh_account():
    """The benchmark account in the database with no users, keys or snapshots yet."""
    from inventory.models import Account

    Account.objects.filter(account_id=ACCOUNT_ID).delete()
    return Account.objects.create(account_id=ACCOUNT_ID, name="bench", role_arn=ROLE_ARN)


def keygov_collect(account, session, *, profile: bool = False) -> dict:
    """One real ``collect_account`` run; its calls, phase times and the snapshot written
    (with ``profile``, a cProfile of the ingest too; its overhead inflates that run's time)."""
    from inventory.services.collection import collect_account

    forget_credential_report()
    record: dict = {"profile": profile}
    with instrumented_collection(record):
        t0 = time.perf_counter()
        snapshot = collect_account(account.pk, session=session, progress=phase_timer(record))
        record["total_s"] = time.perf_counter() - t0
    if snapshot is None or snapshot.status != "complete":
        sys.exit(f"collection did not complete: {snapshot and snapshot.error}")
    inventory = record["inventory"]
    record["phases"] = phase_times(record["marks"])
    record["report_s"] = record["phases"]["report"]
    record.update(
        calls=inventory.api_calls,
        by_operation=dict(sorted(inventory.calls_by_operation.items())),
        snapshot=snapshot,
        users=len(inventory.users),
        keys={k.access_key_id: k for k in inventory.keys},
    )
    return record


def keygov_read_sequential(account, session) -> dict:
    """keygov's AWS part alone with one ListAccessKeys call in flight (no database writes)."""
    from django.test import override_settings

    from inventory.services.collection import read_account

    forget_credential_report()
    with override_settings(KEYGOV_AWS_CONCURRENCY=1):
        t0 = time.perf_counter()
        inventory = read_account(account, session=session)
        elapsed = time.perf_counter() - t0
    return {"aws_s": elapsed, "calls": inventory.api_calls}


# --- the naive path ---------------------------------------------------------------------------


def naive_collect(session) -> dict:
    """What a plain script does: assume the role, list users, then ask per user and per key.

    Calls are counted by the same botocore hook as keygov's (``AwsConnection``), AssumeRole
    included on both sides.
    """
    from inventory.aws.connection import AccountTarget, AwsSettings, connect

    op_time: Counter = Counter()

    def timed(op: str, call, **params):
        t0 = time.perf_counter()
        result = call(**params)
        op_time[op] += time.perf_counter() - t0
        return result

    t0 = time.perf_counter()
    conn = connect(AccountTarget(ACCOUNT_ID, ROLE_ARN), AwsSettings(concurrency=1), session=session)
    iam = conn.client("iam")
    users = []
    params: dict = {}
    while True:
        page = timed("ListUsers", iam.list_users, **params)
        users.extend(page["Users"])
        if not page.get("IsTruncated"):
            break
        params["Marker"] = page["Marker"]
    keys = {}
    tags = {}
    for user in users:
        name = user["UserName"]
        tags[name] = timed("ListUserTags", iam.list_user_tags, UserName=name)["Tags"]
        listed = timed("ListAccessKeys", iam.list_access_keys, UserName=name)
        for meta in listed["AccessKeyMetadata"]:
            last = timed(
                "GetAccessKeyLastUsed",
                iam.get_access_key_last_used,
                AccessKeyId=meta["AccessKeyId"],
            )
            keys[meta["AccessKeyId"]] = (meta, last["AccessKeyLastUsed"])
    elapsed = time.perf_counter() - t0
    by_operation = dict(sorted(conn.counter.by_operation.items()))
    return {
        "s": elapsed,
        "calls": conn.api_calls,
        "by_operation": by_operation,
        "ms_per_call": {
            op: 1000 * op_time[op] / by_operation[op] for op in sorted(op_time) if by_operation[op]
        },
        "users": len(users),
        "keys": keys,
    }


def same_keys(keygov: dict, naive: dict) -> list[str]:
    """Differences between what keygov and the naive path saw of the keys (should be none)."""
    problems = []
    if set(keygov) != set(naive):
        problems.append(f"key ids differ: {len(set(keygov) ^ set(naive))} not in both")
    for key_id in set(keygov) & set(naive):
        record, (meta, last) = keygov[key_id], naive[key_id]
        if record.status != meta["Status"]:
            problems.append(f"{key_id}: status {record.status} vs {meta['Status']}")
        seen = last.get("LastUsedDate")
        if (record.last_used_at is None) != (seen is None) or (
            seen is not None
            and record.last_used_at.replace(microsecond=0) != seen.replace(microsecond=0)
        ):
            problems.append(f"{key_id}: last used {record.last_used_at} vs {seen}")
    return problems[:5]


# --- main -------------------------------------------------------------------------------------


def median(values):
    return statistics.median(values) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="timed repetitions (default 3)")
    parser.add_argument(
        "--profile-ingest",
        action="store_true",
        help="after the timed runs, profile one more first and second ingest (cProfile)",
    )
    args = parser.parse_args()

    ensure_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    import boto3
    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    # The emulator's access log (a line per request, through keygov's INFO root logger) would
    # flood the output and cost both paths time that AWS would not.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    load_before = os.getloadavg()[0]
    server = start_moto()
    try:
        t0 = time.perf_counter()
        stats = seed_account(datetime.now(UTC))
        seed_s = time.perf_counter() - t0
        print(
            f"seeded account {ACCOUNT_ID} in {seed_s:.1f} s: {stats['users']} users "
            f"({stats['humans']} with a console password, {stats['tagged']} tagged), "
            f"{stats['keys']} keys held by {stats['users_with_keys']} users "
            f"({stats['inactive']} inactive, {stats['keys'] - stats['used']} never used)"
        )
        session = boto3.Session(region_name="us-east-1")
        runs = []
        for i in range(args.repeat):
            account = fresh_account()
            # Before the first collection: with nothing in the database it reads everything.
            sequential = keygov_read_sequential(account, session)
            first = keygov_collect(account, session)
            second = keygov_collect(account, session)
            naive = naive_collect(session)
            problems = same_keys(first["keys"], naive["keys"])
            if problems:
                print("WARNING: keygov and the naive path disagree: " + "; ".join(problems))
            if len(first["keys"]) != stats["keys"] or first["users"] != stats["users"]:
                print(f"WARNING: keygov saw {first['users']} users, {len(first['keys'])} keys")
            runs.append((first, second, sequential, naive))
            print(
                f"run {i + 1}/{args.repeat}: keygov {first['calls']} calls "
                f"AWS {first['aws_s']:.2f} s (report {first['report_s']:.2f} s), "
                f"ingest {first['ingest_s']:.2f} s (SQL {first['ingest_sql_s']:.2f} s, "
                f"CPU {first['ingest_cpu_s']:.2f} s); re-collection {second['calls']} calls, "
                f"ingest {second['ingest_s']:.2f} s; keygov sequential {sequential['aws_s']:.2f} s; "
                f"naive {naive['calls']} calls {naive['s']:.2f} s"
            )
        if args.profile_ingest:
            account = fresh_account()
            for label in ("first", "second"):
                profiled = keygov_collect(account, session, profile=True)
                print(f"\ncProfile of the {label} ingest ({profiled['ingest_s']:.2f} s profiled):")
                print(profiled["ingest_profile"])
    finally:
        server.stop()

    first, second, sequential, naive = runs[-1]
    for label, values in (
        ("keygov", [r[0]["calls"] for r in runs]),
        ("re-collection", [r[1]["calls"] for r in runs]),
        ("naive", [r[3]["calls"] for r in runs]),
    ):
        if len(set(values)) != 1:
            print(f"WARNING: {label} call counts differ between runs: {values}")

    users, keys, users_with_keys = stats["users"], stats["keys"], stats["users_with_keys"]
    pages = math.ceil(users / 1000)
    theory_keygov = 4 + pages + users_with_keys
    theory_naive = 1 + pages + 2 * users + keys
    theory_recollect = 4 + pages
    keygov_s = median([r[0]["aws_s"] for r in runs])
    naive_s = median([r[3]["s"] for r in runs])
    ingest_s = median([r[0]["ingest_s"] for r in runs])
    figures = {
        "keygov_calls": first["calls"],
        "naive_calls": naive["calls"],
        "call_ratio": round(naive["calls"] / first["calls"], 2),
        "keygov_s": round(keygov_s, 3),
        "naive_s": round(naive_s, 3),
        "recollect_calls": second["calls"],
        "ingest_s": round(ingest_s, 3),
        "time_ratio": round(naive_s / keygov_s, 2),
        "keygov_report_s": round(median([r[0]["report_s"] for r in runs]), 3),
        "keygov_sequential_s": round(median([r[2]["aws_s"] for r in runs]), 3),
        "keygov_total_s": round(median([r[0]["total_s"] for r in runs]), 3),
        "ingest_cpu_s": round(median([r[0]["ingest_cpu_s"] for r in runs]), 3),
        "ingest_sql_s": round(median([r[0]["ingest_sql_s"] for r in runs]), 3),
        "recollect_s": round(median([r[1]["aws_s"] for r in runs]), 3),
        "recollect_ingest_s": round(median([r[1]["ingest_s"] for r in runs]), 3),
        "theory_keygov_calls": theory_keygov,
        "theory_naive_calls": theory_naive,
        "theory_recollect_calls": theory_recollect,
        "users": users,
        "keys": keys,
        "users_with_keys": users_with_keys,
        "concurrency": settings.KEYGOV_AWS_CONCURRENCY,
        "repeats": len(runs),
        "cpus": os.cpu_count(),
        "loadavg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "keygov_s_runs": [round(r[0]["aws_s"], 3) for r in runs],
        "naive_s_runs": [round(r[3]["s"], 3) for r in runs],
        "ingest_s_runs": [round(r[0]["ingest_s"], 3) for r in runs],
    }
    figures["targets_met"] = (
        figures["call_ratio"] >= 3 and figures["recollect_calls"] <= 10 and ingest_s < 2
    )

    def row(label, calls, theory, seconds, note=""):
        return f"{label:<34} {calls:>7} {theory:>8} {seconds:>9} {note}"

    print()
    print(
        f"One account, {users} users ({users_with_keys} with keys), {keys} keys; moto server "
        f"mode; Postgres; {len(runs)} runs, times are medians; keygov concurrency "
        f"{settings.KEYGOV_AWS_CONCURRENCY} (KEYGOV_AWS_CONCURRENCY), naive path sequential; "
        "formula = PRODUCT.md's count."
    )
    print(row("", "calls", "formula", "time (s)"))
    print(
        row(
            "keygov first collection (AWS)",
            first["calls"],
            theory_keygov,
            f"{keygov_s:.2f}",
            f"incl. {figures['keygov_report_s']:.2f} s credential report",
        )
    )
    print(
        row(
            "  same, concurrency 1",
            sequential["calls"],
            "",
            f"{figures['keygov_sequential_s']:.2f}",
        )
    )
    print(
        row(
            "  ingest into Postgres",
            "",
            "",
            f"{ingest_s:.2f}",
            f"target < 2 s; {figures['ingest_sql_s']:.2f} s in {first['ingest_queries']} "
            f"queries, {figures['ingest_cpu_s']:.2f} s CPU (keygov's process)",
        )
    )
    print(row("  whole collect_account", "", "", f"{figures['keygov_total_s']:.2f}"))
    print(
        row(
            "keygov re-collection (unchanged)",
            second["calls"],
            theory_recollect,
            f"{figures['recollect_s']:.2f}",
            f"target <= 10 calls; ingest {figures['recollect_ingest_s']:.2f} s",
        )
    )
    print(row("naive per-user path", naive["calls"], theory_naive, f"{naive_s:.2f}"))
    print(
        row(
            "naive / keygov",
            f"{figures['call_ratio']:.2f}x",
            f"{theory_naive / theory_keygov:.2f}x",
            f"{figures['time_ratio']:.2f}x",
            "target >= 3x fewer calls",
        )
    )
    print()
    phases = {
        phase: median([r[0]["phases"][phase] for r in runs if phase in r[0]["phases"]])
        for _, phase in PHASES
        if phase != "ingest"
    }
    print(
        "keygov phases:  "
        + ", ".join(f"{k} {v:.2f} s" for k, v in phases.items() if v is not None)
        + " (medians; the ListAccessKeys phase runs "
        + f"{settings.KEYGOV_AWS_CONCURRENCY} calls at a time)"
    )
    print("keygov calls:   " + ", ".join(f"{k} {v}" for k, v in first["by_operation"].items()))
    print("re-collection:  " + ", ".join(f"{k} {v}" for k, v in second["by_operation"].items()))
    print("naive calls:    " + ", ".join(f"{k} {v}" for k, v in naive["by_operation"].items()))
    print(
        "naive ms/call:  "
        + ", ".join(f"{k} {v:.2f}" for k, v in naive["ms_per_call"].items())
        + " (last run)"
    )
    print("targets met" if figures["targets_met"] else "TARGETS NOT MET")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
