"""The data set of ``bench/kpis.py``: 100,000 keys in 500 accounts and a year of daily history.

Deterministic (``SEED``), generated once per database and reused: a marker table,
``bench_kpis_dataset``, records the version and parameters of the data set it holds.

What it holds (the figures are printed after generation):

- 500 accounts; account 1 ("bench-1000") has exactly 1,000 live keys at the end of the year, the
  other 499 share the rest of the 100,000 keys with log-normal sizes (a few large, many small);
  every 20th account has a root user with an active root key.
- IAM users with zero (about 1 in 6), one or two keys; humans (console password) are owned 9 times
  in 10, service users 7 in 10, by one of 4,000 owner e-mails clustered per account.
- Keys created over four years (one in ten during the year); 8 % inactive; three usage patterns: used daily (55 %), used until
  a moment and then never again (30 %), never used (15 %). Keys appear during the year (created),
  and some disappear: half of the users with two keys rotated (the older key deleted 0-14 days
  after the newer one was created), and 6 % of the single keys were deleted at a random moment.
- One snapshot per account per day for 365 days (02:00 UTC plus an offset per account) and one
  ``KeyObservation`` per key per snapshot that saw it, with the state the rules give at that moment
  (a SQL transcription of ``inventory.policy.key_state`` for the default policy).
- Findings: one per key that went stale (``overdue``/``unused``) in the year, opened at its first
  stale snapshot and, for keys deleted later, closed at the deletion (``rotated`` when the user has
  a newer active key, ``deleted`` otherwise). In this history a stale key stays stale until deleted.
- Exceptions (approved, some expired, some expiring soon; pending and rejected ones) and migration
  marks (migrating, and migrated ones verified during the year), then every account evaluated once
  at its last snapshot by the real ``evaluate_account`` (excepted and migrated keys take their
  states, marks of deleted or deactivated keys are verified).
- KPI roll-ups for every account and day and the org-wide rows (sums of the accounts'), computed
  in SQL from the generated history, the way ``snapshot_counts`` defines them. Owner-scope
  roll-ups are not generated.

Accounts, IAM users and keys go in with COPY (psycopg 3 ``cursor.copy``); snapshots, the history
and the roll-ups with ``INSERT ... SELECT`` on the server, one day at a time (the history's
primary-key index then grows as it does in production, where each day's snapshots add one entry
per key all over the index).
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from inventory.choices import STATE_CODES

DATASET_VERSION = 2  # 2: 4-byte ids and state codes in the history (migration 0004)
SEED = 3
ACCOUNTS = 500
KEYS = 100_000
BIG_ACCOUNT = 1  # Account.pk of the 1,000-key account
BIG_LIVE_KEYS = 1_000
DAYS = 365
END_DAY = date(2026, 11, 30)
START_DAY = END_DAY - timedelta(days=DAYS - 1)
OWNERS = 4_000
MARKER = "bench_kpis_dataset"
DAY = timedelta(days=1)

# The default policy, which the SQL state below transcribes.
MAX_AGE, WARN, UNUSED, GRACE = 90, 14, 45, 7


def account_offset(pk: int) -> timedelta:
    return timedelta(minutes=((pk - 1) * 7) % 240)


def snap_time(pk: int, day_index: int) -> datetime:
    """When account ``pk`` took its snapshot of day ``day_index`` (0 = START_DAY)."""
    start = datetime(START_DAY.year, START_DAY.month, START_DAY.day, 2, tzinfo=UTC)
    return start + day_index * DAY + account_offset(pk)


END_TIME = snap_time(ACCOUNTS, DAYS - 1)  # the latest snapshot of the data set


def use_offset(key_pk: int) -> timedelta:
    """How long before a snapshot a daily-used key was last used (same formula as the SQL)."""
    return timedelta(seconds=(key_pk * 7919) % 72000)


def first_day_at_or_after(pk: int, moment: datetime) -> int:
    """Index of the first snapshot of account ``pk`` taken at or after ``moment``."""
    delta = moment - snap_time(pk, 0)
    if delta <= timedelta(0):
        return 0
    return math.ceil(delta / DAY)


# --- the inventory, generated in Python -----------------------------------------------------


@dataclass
class Key:
    pk: int
    account: int
    user: int
    created: datetime
    active: bool
    is_root: bool = False
    pattern: str = "daily"  # daily | stop | never
    stop_at: datetime | None = None
    deleted_day: int | None = None  # index of the first snapshot that no longer saw it

    @property
    def first_day(self) -> int:
        return first_day_at_or_after(self.account, self.created)

    @property
    def last_day(self) -> int:
        return DAYS - 1 if self.deleted_day is None else self.deleted_day - 1

    @property
    def deleted_at(self) -> datetime | None:
        return None if self.deleted_day is None else snap_time(self.account, self.deleted_day)

    def last_used(self, at: datetime) -> datetime | None:
        if self.pattern == "never":
            return None
        used = at - use_offset(self.pk)
        if self.pattern == "stop":
            used = min(used, self.stop_at)
        return None if used < self.created else used


@dataclass
class User:
    pk: int
    account: int
    created: datetime
    human: bool
    owner: str
    is_root: bool = False


class Inventory:
    """Accounts, users and keys of the data set, deterministic for ``SEED``."""

    def __init__(self) -> None:
        self.rnd = random.Random(SEED)
        self.users: list[User] = []
        self.keys: list[Key] = []
        self.big_keys = 0
        self._targets: dict[int, int] = {}
        for pk in range(1, ACCOUNTS + 1):
            self._account(pk)
        assert len(self.keys) == KEYS, len(self.keys)

    def _deletion_day(self, key: Key, moment: datetime) -> int | None:
        """The snapshot that first misses a key deleted at ``moment``, if it falls in the year
        after the key's first snapshot; otherwise the key is kept."""
        day = first_day_at_or_after(key.account, moment)
        if key.first_day < day <= DAYS - 1:
            return day
        return None

    def _new_user(self, account: int, created: datetime) -> User:
        rnd = self.rnd
        human = rnd.random() < 0.4
        owned = rnd.random() < (0.9 if human else 0.7)
        owner = ""
        if owned:
            owner = f"owner{(account * 37 + rnd.randint(0, 40)) % OWNERS:04d}@example.com"
        user = User(len(self.users) + 1, account, created, human, owner)
        self.users.append(user)
        return user

    def _new_key(self, user: User, created: datetime) -> Key:
        rnd = self.rnd
        draw = rnd.random()
        pattern = "daily" if draw < 0.55 else "stop" if draw < 0.85 else "never"
        key = Key(
            pk=len(self.keys) + 1,
            account=user.account,
            user=user.pk,
            created=created,
            active=rnd.random() >= 0.08,
            pattern=pattern,
        )
        self.keys.append(key)
        return key

    def _finish(self, key: Key) -> None:
        if key.pattern == "stop":
            end = key.deleted_at or END_TIME
            key.stop_at = key.created + (end - key.created) * self.rnd.random()

    def _user_with_keys(self, account: int, budget: int) -> list[Key]:
        """One IAM user and its keys (at most ``budget``)."""
        rnd = self.rnd
        draw = rnd.random()
        n = 0 if draw < 0.16 else 1 if draw < 0.66 else 2
        n = min(n, budget)
        # Skewed to older keys: about 1 in 10 is created during the year.
        first = END_TIME - timedelta(days=max(0.1, 1500 * rnd.random() ** 0.6))
        user = self._new_user(account, first - timedelta(days=rnd.uniform(1, 200)))
        if n == 0:
            return []
        keys = [self._new_key(user, first)]
        room = (END_TIME - first).days
        if n == 2 and room > 25:
            second = first + timedelta(days=rnd.uniform(20, min(400, room - 1)))
            keys.append(self._new_key(user, second))
            if rnd.random() < 0.5:  # rotated: the older key deleted soon after
                moment = second + timedelta(days=rnd.uniform(0, 14))
                keys[0].deleted_day = self._deletion_day(keys[0], moment)
        elif rnd.random() < 0.06:
            moment = (
                max(first, snap_time(account, 0))
                + (END_TIME - max(first, snap_time(account, 0))) * rnd.random()
            )
            keys[0].deleted_day = self._deletion_day(keys[0], moment)
        for key in keys:
            self._finish(key)
        return keys

    def _account(self, pk: int) -> None:
        if pk % 20 == 7:
            root = User(len(self.users) + 1, pk, END_TIME - timedelta(days=2500), True, "", True)
            self.users.append(root)
            key = self._new_key(root, END_TIME - timedelta(days=self.rnd.uniform(100, 2000)))
            key.is_root, key.active, key.pattern = True, True, "daily"
        if pk == BIG_ACCOUNT:
            live = 0
            while live < BIG_LIVE_KEYS:
                # One key at a time near the end, so that the account ends with exactly 1,000.
                budget = 1 if live == BIG_LIVE_KEYS - 1 else 2
                live += sum(k.deleted_day is None for k in self._user_with_keys(pk, budget))
            self.big_keys = len(self.keys)
            # The other accounts share what is left, in log-normal proportions.
            weights = {p: self.rnd.lognormvariate(0, 1.0) for p in range(2, ACCOUNTS + 1)}
            total, left = sum(weights.values()), KEYS - len(self.keys)
            self._targets = {p: max(10, round(w / total * left)) for p, w in weights.items()}
            return
        stop = KEYS if pk == ACCOUNTS else len(self.keys) + self._targets[pk]
        while len(self.keys) < stop:
            self._user_with_keys(pk, stop - len(self.keys))


# --- SQL ---------------------------------------------------------------------------------------

DAY_OBS_SQL = f"""
INSERT INTO bench_day_obs
SELECT k.id, s.id, s.account_id, k.user_id, u.owner, k.is_root, k.status = 'Active',
       s.started_at, k.created, lu.at,
       CASE
           WHEN k.status <> 'Active' THEN 'inactive'
           WHEN k.is_root OR a.age > {MAX_AGE} THEN 'overdue'
           WHEN a.age > {GRACE} AND a.idle > {UNUSED} THEN 'unused'
           WHEN a.age > {MAX_AGE - WARN} THEN 'due_soon'
           ELSE 'ok'
       END
FROM inventory_snapshot s
JOIN inventory_accesskey k ON k.account_id = s.account_id
JOIN inventory_iamuser u ON u.id = k.user_id
CROSS JOIN LATERAL (
    SELECT CASE
        WHEN k.last_used_at IS NULL THEN NULL
        WHEN LEAST(s.started_at - ((k.id * 7919) %% 72000) * interval '1 second', k.last_used_at)
             < k.created THEN NULL
        ELSE LEAST(s.started_at - ((k.id * 7919) %% 72000) * interval '1 second', k.last_used_at)
    END AS at
) lu
CROSS JOIN LATERAL (
    SELECT floor(extract(epoch FROM s.started_at - k.created) / 86400) AS age,
           floor(extract(epoch FROM s.started_at - COALESCE(lu.at, k.created)) / 86400) AS idle
) a
WHERE s.id BETWEEN %(first)s AND %(last)s
  AND k.created <= s.started_at
  AND (k.deleted_at IS NULL OR k.deleted_at > s.started_at)
"""

BUCKETS = (("age_0_30", 0, 30), ("age_31_60", 31, 60), ("age_61_90", 61, 90),
           ("age_91_180", 91, 180), ("age_181_365", 181, 365), ("age_over_365", 366, None))  # fmt: skip
STATES = ("ok", "due_soon", "overdue", "unused", "excepted", "migrated", "inactive")
# The history stores a state as its code (inventory.choices.STATE_CODES).
STATE_CODE_SQL = (
    "CASE state "
    + " ".join(f"WHEN '{name}' THEN {code}" for name, code in STATE_CODES.items() if name)
    + " ELSE 0 END"
)


def _bucket_sql(low: int, high: int | None) -> str:
    cond = f"created <= t - interval '{low} days'"
    if high is not None:
        cond += f" AND created > t - interval '{high + 1} days'"
    return f"count(*) FILTER (WHERE active AND {cond})"


ROLLUP_SQL = f"""
INSERT INTO inventory_kpirollup (
    scope, account_id, owner, day, computed_at, users, users_with_active_keys,
    users_with_two_active_keys, active_keys, active_key_age_days_sum, unowned_keys,
    compliant_keys, {", ".join(f"state_{s}" for s in STATES)},
    {", ".join(b[0] for b in BUCKETS)},
    findings_closed, findings_closed_seconds_sum, open_findings, migrations_verified_quarter)
SELECT 'account', k.account_id, '', (k.t AT TIME ZONE 'UTC')::date, k.t,
       COALESCE(n.users, 0), COALESCE(p.with1, 0), COALESCE(p.with2, 0),
       k.active_keys, k.age_sum, k.unowned, k.compliant, {", ".join(f"k.state_{s}" for s in STATES)},
       {", ".join(f"k.{b[0]}" for b in BUCKETS)}, 0, 0, 0, 0
FROM (
    SELECT snapshot_id, account_id, t,
           count(*) FILTER (WHERE active) AS active_keys,
           COALESCE(sum(GREATEST(floor(extract(epoch FROM t - created) / 86400), 0))
                    FILTER (WHERE active), 0)::bigint AS age_sum,
           count(*) FILTER (WHERE owner = '') AS unowned,
           count(*) FILTER (WHERE active AND state IN ('ok', 'due_soon', 'excepted')) AS compliant,
           {", ".join(f"count(*) FILTER (WHERE state = '{s}') AS state_{s}" for s in STATES)},
           {", ".join(f"{_bucket_sql(lo, hi)} AS {name}" for name, lo, hi in BUCKETS)}
    FROM bench_day_obs GROUP BY snapshot_id, account_id, t
) k
LEFT JOIN (
    SELECT snapshot_id, count(*) AS with1, count(*) FILTER (WHERE n >= 2) AS with2
    FROM (SELECT snapshot_id, user_id, count(*) AS n FROM bench_day_obs
          WHERE active AND NOT is_root GROUP BY snapshot_id, user_id) per_user
    GROUP BY snapshot_id
) p ON p.snapshot_id = k.snapshot_id
LEFT JOIN (
    SELECT s.id AS snapshot_id, count(u.id) AS users
    FROM inventory_snapshot s JOIN inventory_iamuser u ON u.account_id = s.account_id
    WHERE s.id BETWEEN %(first)s AND %(last)s AND NOT u.is_root AND u.first_seen <= s.started_at
    GROUP BY s.id
) n ON n.snapshot_id = k.snapshot_id
"""

# Keys whose state changed today: their state_since, and the first stale snapshot (findings).
STATE_SQL = """
WITH changed AS (
    SELECT d.key_id, d.state, d.t, d.snapshot_id
    FROM bench_day_obs d LEFT JOIN bench_key_state b ON b.key_id = d.key_id
    WHERE b.state IS DISTINCT FROM d.state
), stale AS (
    INSERT INTO bench_first_stale
    SELECT key_id, state, t FROM changed WHERE state IN ('overdue', 'unused')
    ON CONFLICT (key_id) DO NOTHING
)
INSERT INTO bench_key_state SELECT key_id, state, t FROM changed
ON CONFLICT (key_id) DO UPDATE SET state = EXCLUDED.state, since = EXCLUDED.since
"""

FINDINGS_SQL = """
INSERT INTO inventory_finding (key_id, account_id, kind, opened_at, closed_at, close_reason)
SELECT f.key_id, k.account_id, f.state, f.t, k.deleted_at,
       CASE
           WHEN k.deleted_at IS NULL THEN ''
           WHEN EXISTS (
               SELECT 1 FROM inventory_accesskey o
               WHERE o.user_id = k.user_id AND o.id <> k.id AND o.status = 'Active'
                 AND o.created > f.t AND o.created <= k.deleted_at
                 AND (o.deleted_at IS NULL OR o.deleted_at > k.deleted_at)
           ) THEN 'rotated'
           ELSE 'deleted'
       END
FROM bench_first_stale f JOIN inventory_accesskey k ON k.id = f.key_id
ORDER BY f.t
"""

ROLLUP_FINDINGS_SQL = """
UPDATE inventory_kpirollup r
SET findings_closed = f.closed, findings_closed_seconds_sum = f.seconds, open_findings = f.open
FROM (
    SELECT s.account_id, (s.started_at AT TIME ZONE 'UTC')::date AS day,
           count(*) FILTER (WHERE x.closed) AS closed,
           COALESCE(floor(sum(extract(epoch FROM x.closed_at - x.opened_at))
                          FILTER (WHERE x.closed)), 0)::bigint AS seconds,
           count(*) FILTER (WHERE x.closed_at IS NULL OR x.closed_at > s.started_at) AS open
    FROM inventory_snapshot s
    JOIN LATERAL (
        SELECT f.opened_at, f.closed_at,
               f.closed_at > s.started_at - interval '90 days' AND f.closed_at <= s.started_at
                   AS closed
        FROM inventory_finding f
        WHERE f.account_id = s.account_id AND f.opened_at <= s.started_at
    ) x ON true
    GROUP BY s.account_id, s.started_at
) f
WHERE r.scope = 'account' AND r.account_id = f.account_id AND r.day = f.day
"""

ROLLUP_MIGRATIONS_SQL = """
UPDATE inventory_kpirollup r SET migrations_verified_quarter = m.n
FROM (
    SELECT s.account_id, (s.started_at AT TIME ZONE 'UTC')::date AS day, count(*) AS n
    FROM inventory_snapshot s
    JOIN inventory_keymigration m ON m.account_id = s.account_id
    WHERE m.verified_at <= s.started_at
      AND m.verified_at >= date_trunc('quarter', s.started_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
      AND (m.withdrawn_at IS NULL OR m.withdrawn_at > s.started_at)
    GROUP BY s.account_id, s.started_at
) m
WHERE r.scope = 'account' AND r.account_id = m.account_id AND r.day = m.day
"""

ORG_SQL = """
INSERT INTO inventory_kpirollup (scope, account_id, owner, day, computed_at, {fields})
SELECT 'org', NULL, '', day, max(computed_at), {sums}
FROM inventory_kpirollup WHERE scope = 'account' GROUP BY day
"""


# --- generation --------------------------------------------------------------------------------


class Phases:
    def __init__(self) -> None:
        self.marks: dict[str, float] = {}
        self._t = time.perf_counter()

    def done(self, name: str) -> None:
        now = time.perf_counter()
        self.marks[name] = now - self._t
        self._t = now
        print(f"  {name}: {self.marks[name]:.1f} s", flush=True)


def copy_rows(raw, table: str, columns: list[str], rows) -> None:
    with raw.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def _inventory_rows(inv: Inventory):
    accounts = [
        (
            pk,
            f"{100000000000 + pk * 7919:012d}",
            "bench-1000" if pk == BIG_ACCOUNT else f"acct-{pk:03d}",
        )
        for pk in range(1, ACCOUNTS + 1)
    ]
    account_id = {pk: a for pk, a, _ in accounts}
    first_key: dict[int, datetime] = {}
    for key in inv.keys:
        first_key[key.user] = min(first_key.get(key.user, key.created), key.created)
    start_time = snap_time(1, 0)
    users = []
    for u in inv.users:
        acct = account_id[u.account]
        seen = max(start_time, first_key.get(u.pk, u.created), u.created)
        seen = snap_time(u.account, min(first_day_at_or_after(u.account, seen), DAYS - 1))
        name = "<root_account>" if u.is_root else f"user-{u.pk}"
        arn = f"arn:aws:iam::{acct}:root" if u.is_root else f"arn:aws:iam::{acct}:user/{name}"
        tags = json.dumps({"owner": u.owner} if u.owner else {})
        users.append((
            u.pk, u.account, f"root-{acct}" if u.is_root else f"AIDA{u.pk:017X}", name, arn, "/",
            u.created, tags, u.human, u.is_root, u.owner, seen, END_TIME, False, None,
        ))  # fmt: skip
    keys = []
    for k in inv.keys:
        last_seen = snap_time(k.account, k.last_day)
        used = k.last_used(last_seen)
        keys.append((
            k.pk, f"AKIA{k.pk:016X}", k.account, k.user, "Active" if k.active else "Inactive",
            k.created, used, "s3" if used else "", "us-east-1" if used else "", k.is_root,
            snap_time(k.account, k.first_day), last_seen, k.deleted_day is not None,
            k.deleted_at, "", None,
        ))  # fmt: skip
    return accounts, users, keys


def _governance(inv: Inventory, raw) -> dict:
    """Django users, exceptions and migration marks (a few hundred rows, COPY)."""
    from django.contrib.auth.models import User as DjangoUser

    from inventory.models.governance import MAX_EXCEPTION_DAYS

    people = [
        DjangoUser.objects.create(username=f"bench-{n}", email=f"bench-{n}@example.com")
        for n in ("requester", "approver", "owner")
    ]
    requester, approver, owner = (p.pk for p in people)
    rnd = random.Random(SEED + 1)
    live = [k for k in inv.keys if k.deleted_day is None and not k.is_root]
    big = [k for k in live if k.account == BIG_ACCOUNT]
    exceptions, marks = [], []

    def exception(key: Key | None, user: int | None, account: int, status: str, expires: datetime):
        requested = END_TIME - timedelta(days=rnd.uniform(10, 170))
        # An exception lasts at most MAX_EXCEPTION_DAYS from its request (a check constraint).
        expires = min(expires, requested + timedelta(days=MAX_EXCEPTION_DAYS))
        decided = status in ("approved", "rejected")
        exceptions.append((
            key.pk if key else None, user, account, "bench: legacy integration", expires, status,
            requester, requested, approver if decided else None,
            requested + timedelta(hours=5) if decided else None, "",
        ))  # fmt: skip

    # Approved: most still valid, some already expired, some expiring within the next days.
    for key in rnd.sample(live, 900) + rnd.sample(big, 20):
        draw = rnd.random()
        days = (
            rnd.uniform(-60, -1)
            if draw < 0.2
            else rnd.uniform(0.5, 10)
            if draw < 0.4
            else rnd.uniform(10, 170)
        )
        exception(key, None, key.account, "approved", END_TIME + timedelta(days=days))
    for key in rnd.sample(live, 100):
        exception(
            None, key.user, key.account, "approved", END_TIME + timedelta(days=rnd.uniform(5, 170))
        )
    for status in ("pending", "rejected"):
        for key in rnd.sample(live, 100):
            exception(key, None, key.account, status, END_TIME + timedelta(days=90))

    role = "arn:aws:iam::{}:role/workload"
    marked_keys = set()
    for key in rnd.sample(live, 800) + rnd.sample(big, 20):
        if key.pk in marked_keys:
            continue
        marked_keys.add(key.pk)
        acct = f"{100000000000 + key.account * 7919:012d}"
        marked = END_TIME - timedelta(days=rnd.uniform(1, 60))
        marks.append(
            (
                key.pk,
                key.account,
                "migrating",
                role.format(acct),
                "",
                owner,
                marked,
                None,
                "",
                None,
                None,
            )
        )
    # Verified marks during the year: keys deleted after a mark.
    deleted = [k for k in inv.keys if k.deleted_day is not None and not k.is_root]
    for key in rnd.sample(deleted, 600):
        acct = f"{100000000000 + key.account * 7919:012d}"
        marked = key.deleted_at - timedelta(days=rnd.uniform(1, 30))
        marks.append((
            key.pk, key.account, "migrated", role.format(acct), "", owner, marked, key.deleted_at,
            "deleted", None, None,
        ))  # fmt: skip
    copy_rows(
        raw, "inventory_policyexception",
        ["key_id", "iam_user_id", "account_id", "reason", "expires_at", "status", "requested_by_id",
         "requested_at", "decided_by_id", "decided_at", "decision_comment"],
        exceptions,
    )  # fmt: skip
    copy_rows(
        raw, "inventory_keymigration",
        ["key_id", "account_id", "status", "role_arn", "note", "marked_by_id", "marked_at",
         "verified_at", "verified_by", "withdrawn_at", "withdrawn_by_id"],
        marks,
    )  # fmt: skip
    return {"exceptions": len(exceptions), "migration_marks": len(marks)}


def generate() -> dict:
    """Fill an empty, migrated database with the data set. Returns its description."""
    from django.db import connection, transaction

    from inventory.models import Account
    from inventory.services.evaluation import evaluate_account
    from inventory.services.kpis import COUNT_FIELDS

    phases = Phases()
    inv = Inventory()
    accounts, users, keys = _inventory_rows(inv)
    phases.done("inventory generated in Python")

    connection.ensure_connection()
    raw = connection.connection
    with transaction.atomic():
        copy_rows(raw, "inventory_account",
                  ["id", "account_id", "name", "role_arn", "external_id", "write_role_arn",
                   "enabled", "created_at", "updated_at"],
                  ((pk, a, n, "", "", "", True, END_TIME, END_TIME) for pk, a, n in accounts))  # fmt: skip
        copy_rows(raw, "inventory_iamuser",
                  ["id", "account_id", "user_id", "name", "arn", "path", "created", "tags",
                   "has_password", "is_root", "owner", "first_seen", "last_seen", "deleted",
                   "deleted_at"], users)  # fmt: skip
        copy_rows(raw, "inventory_accesskey",
                  ["id", "access_key_id", "account_id", "user_id", "status", "created",
                   "last_used_at", "last_used_service", "last_used_region", "is_root",
                   "first_seen", "last_seen", "deleted", "deleted_at", "state", "state_since"],
                  keys)  # fmt: skip
        extra = _governance(inv, raw)
        with connection.cursor() as cur:
            for table in ("account", "iamuser", "accesskey"):
                cur.execute(
                    f"SELECT setval(pg_get_serial_sequence('inventory_{table}', 'id'), "
                    f"(SELECT max(id) FROM inventory_{table}))"
                )
            cur.execute(f"""
                INSERT INTO inventory_snapshot (id, account_id, status, phase, started_at,
                    finished_at, error, report_generated_at, api_calls, user_count, key_count,
                    active_key_count, run_key)
                SELECT d * {ACCOUNTS} + a.id, a.id, 'complete', '', t, t + interval '40 seconds',
                       '', t - interval '1 minute', 5, 0, 0, 0, ''
                FROM generate_series(0, {DAYS - 1}) d CROSS JOIN inventory_account a
                CROSS JOIN LATERAL (SELECT %s::timestamptz + d * interval '1 day'
                    + ((a.id - 1) * 7 %% 240) * interval '1 minute' AS t) x
            """, [snap_time(1, 0)])  # fmt: skip
            cur.execute(
                "SELECT setval(pg_get_serial_sequence('inventory_snapshot', 'id'), "
                "(SELECT max(id) FROM inventory_snapshot))"
            )
    phases.done(
        f"COPY {len(accounts)} accounts, {len(users)} users, {len(keys)} keys; "
        f"{ACCOUNTS * DAYS} snapshots"
    )

    with connection.cursor() as cur:
        cur.execute("""
            CREATE UNLOGGED TABLE IF NOT EXISTS bench_day_obs (
                key_id bigint, snapshot_id bigint, account_id bigint, user_id bigint,
                owner text, is_root boolean, active boolean, t timestamptz, created timestamptz,
                last_used_at timestamptz, state text);
            CREATE UNLOGGED TABLE IF NOT EXISTS bench_key_state (
                key_id bigint PRIMARY KEY, state text, since timestamptz);
            CREATE UNLOGGED TABLE IF NOT EXISTS bench_first_stale (
                key_id bigint PRIMARY KEY, state text, t timestamptz);
        """)
        for day in range(DAYS):
            bounds = {"first": day * ACCOUNTS + 1, "last": (day + 1) * ACCOUNTS}
            with transaction.atomic():
                cur.execute("TRUNCATE bench_day_obs")
                cur.execute(DAY_OBS_SQL, bounds)
                cur.execute(
                    "INSERT INTO inventory_keyobservation (key_id, snapshot_id, active, state, "
                    f"last_used_at) SELECT key_id, snapshot_id, active, {STATE_CODE_SQL}, "
                    "last_used_at FROM bench_day_obs ORDER BY snapshot_id, key_id"
                )
                cur.execute(ROLLUP_SQL, bounds)
                cur.execute(STATE_SQL)
                cur.execute("""
                    UPDATE inventory_snapshot s SET key_count = c.n, active_key_count = c.a,
                        user_count = c.u
                    FROM (SELECT snapshot_id, count(*) AS n, count(*) FILTER (WHERE active) AS a,
                                 count(DISTINCT user_id) FILTER (WHERE NOT is_root) AS u
                          FROM bench_day_obs GROUP BY snapshot_id) c
                    WHERE s.id = c.snapshot_id
                """)
            if day % 30 == 0 or day == DAYS - 1:
                print(f"    history: day {day + 1}/{DAYS}", flush=True)
    phases.done("history: one observation per key per snapshot, account roll-ups")

    with transaction.atomic(), connection.cursor() as cur:
        # The keys' current state: the last day's state for live keys; deleted keys are deleted.
        cur.execute("""
            UPDATE inventory_accesskey k SET state = b.state, state_since = b.since
            FROM bench_key_state b WHERE b.key_id = k.id AND NOT k.deleted
        """)
        cur.execute("""
            UPDATE inventory_accesskey SET state = 'deleted', state_since = deleted_at
            WHERE deleted
        """)
        cur.execute(FINDINGS_SQL)
        cur.execute(ROLLUP_FINDINGS_SQL)
        cur.execute(ROLLUP_MIGRATIONS_SQL)
        fields = ", ".join(COUNT_FIELDS)
        sums = ", ".join(f"sum({f})" for f in COUNT_FIELDS)
        cur.execute(ORG_SQL.format(fields=fields, sums=sums))
    phases.done("findings from the history; findings and migrations in the roll-ups; org roll-ups")

    # The real evaluation once, at each account's last snapshot: exceptions and migration marks.
    evaluated = {"changed": 0, "opened": 0, "closed": 0, "verified": 0}
    for account in Account.objects.order_by("pk"):
        result = evaluate_account(account, now=snap_time(account.pk, DAYS - 1))
        for name in evaluated:
            evaluated[name] += getattr(result, name)
    phases.done(f"evaluate_account at each account's last snapshot: {evaluated}")

    with connection.cursor() as cur:
        cur.execute("DROP TABLE bench_day_obs, bench_key_state, bench_first_stale")
    with connection.cursor() as cur:
        cur.execute("VACUUM ANALYZE")
    phases.done("VACUUM ANALYZE")

    description = {
        "version": DATASET_VERSION,
        "seed": SEED,
        "accounts": ACCOUNTS,
        "keys": len(keys),
        "iam_users": len(users),
        "big_account_keys": inv.big_keys,
        "days": DAYS,
        "first_day": START_DAY.isoformat(),
        "last_day": END_DAY.isoformat(),
        **extra,
        "first_evaluation": evaluated,
        "phases_s": {k: round(v, 1) for k, v in phases.marks.items()},
        "generation_s": round(sum(phases.marks.values()), 1),
    }
    with connection.cursor() as cur:
        cur.execute(f"CREATE TABLE IF NOT EXISTS {MARKER} (description jsonb NOT NULL)")
        cur.execute(f"DELETE FROM {MARKER}")
        cur.execute(f"INSERT INTO {MARKER} VALUES (%s)", [json.dumps(description)])
    return description


def stored_description() -> dict | None:
    """The data set's description when the database holds this version of it, else None."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT to_regclass(%s)", [MARKER])
        if cur.fetchone()[0] is None:
            return None
        cur.execute(f"SELECT description FROM {MARKER}")
        row = cur.fetchone()
    if row is None:
        return None
    description = row[0] if isinstance(row[0], dict) else json.loads(row[0])
    if description.get("version") != DATASET_VERSION:
        return None
    return description


def ensure_database(url: str, *, drop: bool) -> None:
    """Create (or with ``drop``, re-create) the Postgres database named in ``url``."""
    import dj_database_url
    import psycopg
    from psycopg import sql

    config = dj_database_url.parse(url)
    if config["ENGINE"] != "django.db.backends.postgresql":
        sys.exit(f"bench/kpis.py measures Postgres; DATABASE_URL is {config['ENGINE']}: {url}")
    params = {
        "host": config.get("HOST") or None,
        "port": config.get("PORT") or None,
        "user": config.get("USER") or None,
        "password": config.get("PASSWORD") or None,
    }
    params = {k: v for k, v in params.items() if v}
    name = sql.Identifier(config["NAME"])
    with psycopg.connect(dbname="postgres", autocommit=True, **params) as conn:
        if drop:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [config["NAME"]]
        ).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(name))
            print(f"created database {config['NAME']}")


def ready(url: str, *, regenerate: bool = False) -> dict:
    """Create the database when missing (``regenerate``: drop it first), set Django up, migrate,
    and generate the data set when the database does not hold it. Returns its description."""
    ensure_database(url, drop=regenerate)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    description = stored_description()
    if description is not None:
        print(f"reusing the data set generated in {description['generation_s']:.0f} s")
        return description
    print("generating the data set (once; --regenerate to do it again)", flush=True)
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM inventory_accesskey")
        if cur.fetchone()[0]:
            sys.exit("the database holds other data: run with --regenerate")
    description = generate()
    print(f"generated in {description['generation_s']:.0f} s")
    return description
