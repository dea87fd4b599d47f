"""Key-hygiene KPIs, computed with SQL aggregates, and their daily roll-ups.

Live values aggregate the current keys; roll-ups store the same counts per day for the
organisation, each account and each owner, so that a year of trend is a few hundred rows. Counts
and sums are stored, never ratios, so org-wide rows are exact sums of the accounts' rows.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.db import IntegrityError, connection, transaction
from django.db.models import (
    BigIntegerField,
    Count,
    DateTimeField,
    DurationField,
    ExpressionWrapper,
    F,
    Func,
    IntegerField,
    OuterRef,
    Q,
    Subquery,
    Sum,
    Value,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from inventory.choices import COMPLIANT_STATES, KeyState, KeyStatus, KpiScope, SnapshotStatus
from inventory.models import (
    AccessKey,
    Account,
    Finding,
    IamUser,
    KeyMigration,
    KeyObservation,
    KpiRollup,
    Snapshot,
)

MTTR_WINDOW = timedelta(days=90)
# (field, lowest age, highest age) in whole days; active keys only.
AGE_BUCKETS = (
    ("age_0_30", 0, 30),
    ("age_31_60", 31, 60),
    ("age_61_90", 61, 90),
    ("age_91_180", 91, 180),
    ("age_181_365", 181, 365),
    ("age_over_365", 366, None),
)
STATE_FIELDS = {
    KeyState.OK: "state_ok",
    KeyState.DUE_SOON: "state_due_soon",
    KeyState.OVERDUE: "state_overdue",
    KeyState.UNUSED: "state_unused",
    KeyState.EXCEPTED: "state_excepted",
    KeyState.MIGRATED: "state_migrated",
    KeyState.INACTIVE: "state_inactive",
}
COUNT_FIELDS = (
    "users", "users_with_active_keys", "users_with_two_active_keys", "active_keys",
    "active_key_age_days_sum", "unowned_keys", "compliant_keys", *STATE_FIELDS.values(),
    *(b[0] for b in AGE_BUCKETS), "findings_closed", "findings_closed_seconds_sum",
    "open_findings", "migrations_verified_quarter",
)  # fmt: skip


@dataclass(frozen=True)
class Kpis:
    """KPI values derived from one set of counts (a live aggregate or a roll-up row)."""

    counts: dict

    def __getattr__(self, name):
        try:
            return self.counts[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def pct_users_with_active_keys(self) -> float | None:
        users = self.counts["users"]
        return 100.0 * self.counts["users_with_active_keys"] / users if users else None

    @property
    def avg_active_key_age_days(self) -> float | None:
        n = self.counts["active_keys"]
        return self.counts["active_key_age_days_sum"] / n if n else None

    @property
    def mttr_days(self) -> float | None:
        n = self.counts["findings_closed"]
        return self.counts["findings_closed_seconds_sum"] / n / 86400 if n else None

    @property
    def compliance_rate(self) -> float | None:
        n = self.counts["active_keys"]
        return 100.0 * self.counts["compliant_keys"] / n if n else None

    @property
    def states(self) -> dict[str, int]:
        return {state.value: self.counts[f] for state, f in STATE_FIELDS.items()}

    @property
    def age_buckets(self) -> dict[str, int]:
        return {f: self.counts[f] for f, _, _ in AGE_BUCKETS}


def quarter_start(day: date) -> date:
    return date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)


def _zero() -> dict:
    return dict.fromkeys(COUNT_FIELDS, 0)


def _seconds(value) -> int:
    if value is None:
        return 0
    if isinstance(value, timedelta):
        return int(value.total_seconds())
    return int(value) // 1_000_000  # some backends hand back microseconds


def _grouped(qs, group: str | None, aggregates: dict) -> dict:
    if group is None:
        return {None: qs.aggregate(**aggregates)}
    return {row.pop(group): row for row in qs.values(group).annotate(**aggregates).order_by()}


class WholeDays(Func):
    """Whole days from ``start`` to ``end`` in SQL, rounded down and never below 0: the age of
    a key exactly as ``inventory.policy.whole_days`` counts it."""

    output_field = IntegerField()

    def __init__(self, end, start, **extra):
        super().__init__(end, start, **extra)

    def as_sqlite(self, compiler, connection, **extra_context):
        # The embedded default counts whole seconds; sub-second parts do not matter there. A
        # literal % is written %% in a query that also carries %s placeholders.
        return self.as_sql(
            compiler,
            connection,
            template="MAX((CAST(strftime('%%%%s', %(expressions)s) AS INTEGER)) / 86400, 0)",
            arg_joiner=") AS INTEGER) - CAST(strftime('%%s', ",
            **extra_context,
        )

    def as_postgresql(self, compiler, connection, **extra_context):
        return self.as_sql(
            compiler,
            connection,
            template="GREATEST(FLOOR(EXTRACT(EPOCH FROM (%(expressions)s)) / 86400), 0)::integer",
            arg_joiner=" - ",
            **extra_context,
        )


def _key_counts(qs, now: datetime, prefix: str, active: Q, group: str | None) -> dict:
    """Per-key counts over ``qs`` (current keys, or one snapshot's observations)."""
    created = f"{prefix}created"
    age = WholeDays(Value(now, output_field=DateTimeField()), F(created))
    aggregates = {
        "active_keys": Count("pk", filter=active),
        "active_key_age_days_sum": Coalesce(
            Sum(age, filter=active), 0, output_field=BigIntegerField()
        ),
        "compliant_keys": Count("pk", filter=active & Q(state__in=COMPLIANT_STATES)),
        "unowned_keys": Count("pk", filter=Q(**{f"{prefix}user__owner": ""})),
    }
    for state, name in STATE_FIELDS.items():
        aggregates[name] = Count("pk", filter=Q(state=state))
    for name, low, high in AGE_BUCKETS:
        # age >= d  <=>  created <= now - d days (ages are whole days, rounded down); the first
        # bucket has no lower bound, so that a key newer than ``now`` counts as 0 days old.
        in_bucket = Q(**{f"{created}__lte": now - timedelta(days=low)}) if low else Q()
        if high is not None:
            in_bucket &= Q(**{f"{created}__gt": now - timedelta(days=high + 1)})
        aggregates[name] = Count("pk", filter=active & in_bucket)
    return _grouped(qs, group, aggregates)


def _user_counts(users_qs, users_group, keys_qs, user_field: str) -> dict:
    """Users (root excluded) and those holding one or two active keys (``keys_qs`` holds the
    active keys of non-root users; ``user_field`` leads from one of them to its user)."""
    if users_group is None:
        # Org-wide or one account: group the keys per user in a subquery and count the groups,
        # rather than fetch one row per user (tens of thousands in a large organisation).
        per_user = keys_qs.values(user_field).annotate(n=Count("pk")).order_by()
        out = {
            None: per_user.aggregate(
                users_with_active_keys=Count(user_field),
                users_with_two_active_keys=Count(user_field, filter=Q(n__gte=2)),
            )
        }
        out[None]["users"] = users_qs.count()
        return out
    # Grouped (per owner): each user's number of active keys as a correlated subquery, and the
    # users counted per group in the same aggregate.
    active_keys_of_user = (
        keys_qs.filter(**{user_field: OuterRef("pk")})
        .order_by()
        .values(user_field)
        .annotate(n=Count("pk"))
        .values("n")
    )
    return _grouped(
        users_qs.annotate(n_active=Coalesce(Subquery(active_keys_of_user), 0)),
        users_group,
        {
            "users": Count("pk"),
            "users_with_active_keys": Count("pk", filter=Q(n_active__gte=1)),
            "users_with_two_active_keys": Count("pk", filter=Q(n_active__gte=2)),
        },
    )


def _finding_counts(findings_qs, now: datetime, group: str | None) -> dict:
    duration = ExpressionWrapper(F("closed_at") - F("opened_at"), output_field=DurationField())
    closed = Q(closed_at__gt=now - MTTR_WINDOW, closed_at__lte=now)
    rows = _grouped(
        findings_qs.filter(opened_at__lte=now),
        group,
        {
            "findings_closed": Count("pk", filter=closed),
            "closed_duration": Sum(duration, filter=closed),
            "open_findings": Count("pk", filter=Q(closed_at__isnull=True) | Q(closed_at__gt=now)),
        },
    )
    for row in rows.values():
        row["findings_closed_seconds_sum"] = _seconds(row.pop("closed_duration"))
    return rows


def _migration_counts(migrations_qs, now: datetime, group: str | None) -> dict:
    start = datetime.combine(quarter_start(now.date()), datetime.min.time(), tzinfo=now.tzinfo)
    return _grouped(
        migrations_qs.filter(verified_at__gte=start, verified_at__lte=now),
        group,
        {"migrations_verified_quarter": Count("pk")},
    )


def _merge(*parts: dict) -> dict:
    merged: dict = defaultdict(_zero)
    for part in parts:
        for key, row in part.items():
            merged[key].update({k: v or 0 for k, v in row.items()})
    return dict(merged)


def live_counts(
    now: datetime | None = None,
    *,
    account: Account | None = None,
    owner: str | None = None,
    group: str | None = None,
) -> dict:
    """Counts of the current keys, optionally for one account or owner, optionally grouped by
    ``"owner"`` (the lower-cased owner e-mail; "" for unowned). Five aggregate queries."""
    now = now or timezone.now()
    keys = AccessKey.objects.filter(deleted=False)
    users = IamUser.objects.filter(deleted=False, is_root=False)
    findings = Finding.objects.all()
    migrations = KeyMigration.objects.filter(withdrawn_at__isnull=True)
    if account is not None:
        keys, users = keys.filter(account=account), users.filter(account=account)
        findings, migrations = findings.filter(account=account), migrations.filter(account=account)
    if owner is not None:
        owner = owner.lower()  # owners are stored lower-cased
        keys, users = keys.filter(user__owner=owner), users.filter(owner=owner)
        findings = findings.filter(key__user__owner=owner)
        migrations = migrations.filter(key__user__owner=owner)
    by = {"owner": ("user__owner", "owner", "key__user__owner")}.get(group, (None, None, None))
    active = Q(status=KeyStatus.ACTIVE)
    return _merge(
        _key_counts(keys, now, "", active, by[0]),
        _user_counts(users, by[1], keys.filter(active, is_root=False), "user_id"),
        _finding_counts(findings, now, by[2]),
        _migration_counts(migrations, now, by[2]),
    )


def current_kpis(
    now: datetime | None = None, *, account: Account | None = None, owner: str | None = None
) -> Kpis:
    """The KPIs right now, org-wide or for one account or owner."""
    counts = live_counts(now, account=account, owner=owner).get(None) or _zero()
    return Kpis({**_zero(), **counts})


def snapshot_counts(snapshot: Snapshot, group: str | None = None) -> dict:
    """Counts as one complete snapshot saw its account, from the key history."""
    at = snapshot.started_at
    account = snapshot.account
    observed = KeyObservation.objects.filter(snapshot=snapshot)
    users = IamUser.objects.filter(account=account, is_root=False, first_seen__lte=at).filter(
        Q(deleted_at__isnull=True) | Q(deleted_at__gt=at)
    )
    findings = Finding.objects.filter(account=account)
    migrations = KeyMigration.objects.filter(account=account).filter(
        Q(withdrawn_at__isnull=True) | Q(withdrawn_at__gt=at)
    )
    by = {"owner": ("key__user__owner", "owner", "key__user__owner")}.get(group, (None,) * 3)
    return _merge(
        _key_counts(observed, at, "key__", Q(active=True), by[0]),
        _user_counts(
            users, by[1], observed.filter(active=True, key__is_root=False), "key__user_id"
        ),
        _finding_counts(findings, at, by[2]),
        _migration_counts(migrations, at, by[2]),
    )


# pg_advisory_xact_lock's first key: the org roll-up of one day (the second key is the day).
ORG_ROW_LOCK = 0x6B67  # "kg"


def _upsert_org_row(day: date, now: datetime) -> None:
    """The org row of ``day``: the sum of every account's latest row up to that day (an account
    whose collection failed today still counts with its last known figures)."""
    if connection.vendor == "postgresql":
        # Accounts finish their collections at the same moment: without the lock, two of them
        # would each sum the other's old row and the later write would lose the earlier one.
        # Held to the end of the transaction, so the next one sums this one's committed row.
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [ORG_ROW_LOCK, day.toordinal()])
    latest = Account.objects.annotate(
        rollup=Subquery(
            KpiRollup.objects.filter(
                scope=KpiScope.ACCOUNT, account=OuterRef("pk"), owner="", day__lte=day
            )
            .order_by("-day")
            .values("pk")[:1]
        )
    ).values("rollup")
    # One index probe per account (the (scope, account, owner, day) index), not a scan of every
    # account row of every past day: this runs inside each snapshot's transaction.
    totals = KpiRollup.objects.filter(pk__in=latest).aggregate(
        **{f: Coalesce(Sum(f), 0) for f in COUNT_FIELDS}
    )
    lookup = {"scope": KpiScope.ORG, "account": None, "owner": "", "day": day}
    values = {**totals, "computed_at": now}
    if KpiRollup.objects.filter(**lookup).update(**values):
        return
    try:
        with transaction.atomic():
            KpiRollup.objects.create(**lookup, **values)
    except IntegrityError:
        # Another account's collection created it a moment ago.
        KpiRollup.objects.filter(**lookup).update(**values)


def write_rollups(
    account: Account, counts: dict, owner_counts: dict, now: datetime, day: date | None = None
) -> None:
    """Replace ``account``'s rows of ``day`` (its own and its owners'), then refresh the org row.

    The caller holds the account's row lock, so delete-and-insert is safe; the org row is
    shared by every account and is upserted under a lock of its day."""
    day = day or now.date()
    KpiRollup.objects.filter(account=account, day=day).delete()
    rows = [KpiRollup(scope=KpiScope.ACCOUNT, account=account, day=day, computed_at=now, **counts)]
    rows += [
        KpiRollup(scope=KpiScope.OWNER, account=account, owner=owner, day=day, computed_at=now, **c)
        for owner, c in owner_counts.items()
        if owner
    ]
    KpiRollup.objects.bulk_create(rows)
    _upsert_org_row(day, now)


@transaction.atomic
def roll_up_account(account: Account, now: datetime | None = None) -> None:
    """Store today's roll-ups of ``account`` from its current keys (after an evaluation)."""
    now = now or timezone.now()
    # One writer of the account's rows at a time (the evaluation takes the same lock).
    list(Account.objects.select_for_update().filter(pk=account.pk).values_list("pk"))
    counts = live_counts(now, account=account).get(None) or _zero()
    owners = live_counts(now, account=account, group="owner")
    write_rollups(account, {**_zero(), **counts}, owners, now)


def trend(
    *,
    account: Account | None = None,
    owner: str | None = None,
    since: date | None = None,
) -> list[tuple[date, Kpis]]:
    """Daily KPIs from the roll-ups: org-wide, or for one account, or for one owner."""
    rows = KpiRollup.objects.all()
    if since is not None:
        rows = rows.filter(day__gte=since)
    if owner is not None:
        # An owner's keys may sit in several accounts: add their rows up per day.
        per_day = (
            rows.filter(scope=KpiScope.OWNER, owner=owner.lower())
            .values("day")
            .annotate(**{f"sum_{f}": Sum(f) for f in COUNT_FIELDS})
            .order_by("day")
        )
        return [(r["day"], Kpis({f: r[f"sum_{f}"] or 0 for f in COUNT_FIELDS})) for r in per_day]
    if account is not None:
        rows = rows.filter(scope=KpiScope.ACCOUNT, account=account)
    else:
        rows = rows.filter(scope=KpiScope.ORG)
    return [
        (r["day"], Kpis({f: r[f] for f in COUNT_FIELDS}))
        for r in rows.order_by("day").values("day", *COUNT_FIELDS)
    ]


def rebuild_rollups(progress=None) -> int:
    """Recompute every roll-up from the key history: for each account and day, the day's last
    complete snapshot; then the org rows. Returns the number of account-days written."""
    say = progress or (lambda _: None)
    written = 0
    days: set[date] = set()
    with transaction.atomic():
        KpiRollup.objects.all().delete()
        for account in Account.objects.all():
            snapshots = Snapshot.objects.filter(account=account, status=SnapshotStatus.COMPLETE)
            last_of_day: dict[date, Snapshot] = {}
            for snap in snapshots.order_by("started_at"):
                last_of_day[snap.started_at.date()] = snap
            for day, snap in sorted(last_of_day.items()):
                counts = snapshot_counts(snap).get(None) or {}
                write_rows = {**_zero(), **counts}
                owners = snapshot_counts(snap, group="owner")
                KpiRollup.objects.filter(account=account, day=day).delete()
                KpiRollup.objects.bulk_create(
                    [
                        KpiRollup(
                            scope=KpiScope.ACCOUNT,
                            account=account,
                            day=day,
                            computed_at=snap.started_at,
                            **write_rows,
                        ),
                        *(
                            KpiRollup(
                                scope=KpiScope.OWNER,
                                account=account,
                                owner=o,
                                day=day,
                                computed_at=snap.started_at,
                                **{**_zero(), **c},
                            )
                            for o, c in owners.items()
                            if o
                        ),
                    ]
                )
                days.add(day)
                written += 1
            say(f"{account.account_id}: {len(last_of_day)} days")
        for day in sorted(days):
            _upsert_org_row(day, timezone.now())
    return written
