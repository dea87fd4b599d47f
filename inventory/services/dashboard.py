"""Read-side helpers of the overview and account pages: the KPI roll-ups and the current keys,
shaped into tiles, chart series and table annotations.

The rules and the KPI definitions stay in ``services/kpis.py`` (``Kpis``, ``trend``,
``current_kpis``); this module only chooses which of them a page reads and how much of it.

Org-wide tiles read the latest org roll-up row (every complete snapshot and the daily evaluation
refresh it) rather than aggregate 100,000 keys on every page view; one account or one owner is
small enough to aggregate live. Every helper is a fixed number of queries, whatever the rows.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from django.core.cache import cache
from django.db.models import (
    Case,
    Count,
    F,
    FloatField,
    IntegerField,
    OuterRef,
    Q,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Cast, Coalesce, Greatest, NullIf
from django.utils import timezone

from inventory.choices import KeyState, KpiScope, SnapshotStatus
from inventory.models import AccessKey, Account, KpiRollup, Snapshot
from inventory.services.kpis import (
    AGE_BUCKETS,
    STATE_FIELDS,
    Kpis,
    current_kpis,
    quarter_start,
    trend,
)

TREND_DAYS = 365
WEEK = timedelta(days=7)
TOP = 10
UNOWNED_LABEL = "(unowned)"

# name: (label, unit, lower is better, how it is measured)
TILES = {
    "pct_users_with_active_keys": (
        "IAM users with an active key",
        "%",
        True,
        "Share of IAM users (root excluded) holding at least one active long-term access key.",
    ),
    "avg_active_key_age_days": (
        "Average active-key age",
        "days",
        True,
        "Mean age in whole days of the active access keys.",
    ),
    "mttr_days": (
        "MTTR of stale-key findings",
        "days",
        True,
        "Mean time from an overdue or unused finding opening to its closing, over the findings "
        "closed in the last 90 days.",
    ),
    "migrations_verified_quarter": (
        "Workloads migrated to roles",
        "",
        False,
        "Migrations to IAM roles verified this calendar quarter (key deleted, deactivated or "
        "no longer used after the mark).",
    ),
    "compliance_rate": (
        "Compliance rate",
        "%",
        False,
        "Active keys that are OK, due soon or excepted, out of all active keys.",
    ),
}
# The chart lines: the four KPIs of the trend chart (the migrations are a quarterly count).
TREND_LINES = (
    ("pct_users_with_active_keys", "Users with an active key (%)", "y"),
    ("compliance_rate", "Compliance rate (%)", "y"),
    ("avg_active_key_age_days", "Average active-key age (days)", "y1"),
    ("mttr_days", "MTTR (days)", "y1"),
)
# En dashes between the bounds (written as escapes: ruff flags the character itself).
AGE_LABELS = ("0\u201330", "31\u201360", "61\u201390", "91\u2013180", "181\u2013365", "> 365")
STATE_ORDER = (
    KeyState.OK,
    KeyState.DUE_SOON,
    KeyState.OVERDUE,
    KeyState.UNUSED,
    KeyState.EXCEPTED,
    KeyState.MIGRATED,
    KeyState.INACTIVE,
)

Series = list[tuple[date, Kpis]]


@dataclass(frozen=True)
class Tile:
    """One KPI: its value now and its change against an earlier roll-up."""

    name: str
    label: str
    value: float | None
    unit: str
    lower_is_better: bool
    help: str
    delta: float | None = None
    since: str = ""
    compared_with: date | None = None

    @property
    def direction(self) -> str:
        """How the change reads for this KPI: "good", "bad" or "flat" (colour and arrow)."""
        if self.delta is None or round(self.delta, 1) == 0:
            return "flat"
        return "good" if (self.delta < 0) == self.lower_is_better else "bad"

    @property
    def delta_class(self) -> str:
        return {"good": "text-success", "bad": "text-danger"}.get(self.direction, "")

    @property
    def display(self) -> str:
        """The value as the tile shows it: "42.5 %", "37.2 days", "12"; "—" when undefined
        (no users, no active keys, no closed finding)."""
        if self.value is None:
            return "—"
        if self.unit == "%":
            return f"{self.value:.1f} %"
        if self.unit == "days":
            return f"{self.value:.1f} days"
        return f"{self.value:,.0f}"

    @property
    def delta_display(self) -> str:
        """The change, signed: "+1.5 pts" (percentage points), "-3.0 days" (a minus sign), "+2"."""
        if self.delta is None:
            return ""
        if self.direction == "flat":
            return "no change"
        sign = "+" if self.delta > 0 else "\u2212" if self.delta < 0 else "\u00b1"
        size = abs(self.delta)
        if self.unit == "%":
            return f"{sign}{size:.1f} pts"
        if self.unit == "days":
            return f"{sign}{size:.1f} days"
        return f"{sign}{size:,.0f}"


def _value(kpis: Kpis, name: str) -> float | None:
    return getattr(kpis, name)


def row_at_or_before(series: Series, day: date) -> tuple[date, Kpis] | None:
    """The latest roll-up of ``series`` (sorted by day) on or before ``day``."""
    i = bisect_right([d for d, _ in series], day)
    return series[i - 1] if i else None


def kpi_tiles(current: Kpis, series: Series, today: date) -> list[Tile]:
    """The five tiles: each KPI with its change since a week before ``today`` (migrations:
    against the whole of the previous quarter)."""
    week = row_at_or_before(series, today - WEEK)
    quarter = row_at_or_before(series, quarter_start(today) - timedelta(days=1))
    tiles = []
    for name, (label, unit, lower, help_text) in TILES.items():
        value = _value(current, name)
        earlier, since = (
            (quarter, "since last quarter")
            if name.startswith("migrations")
            else (
                week,
                "since last week",
            )
        )
        before = _value(earlier[1], name) if earlier else None
        delta = value - before if value is not None and before is not None else None
        tiles.append(
            Tile(
                name=name,
                label=label,
                value=value,
                unit=unit,
                lower_is_better=lower,
                help=help_text,
                delta=delta,
                since=since,
                compared_with=earlier[0] if earlier else None,
            )
        )
    return tiles


@dataclass
class KpiView:
    """What the KPI part of a page shows, for the organisation, one account or one owner."""

    kpis: Kpis | None
    series: Series  # the roll-ups of the chart's period, oldest first
    tiles: list[Tile] = field(default_factory=list)
    as_of: date | datetime | None = None
    live: bool = False
    # Of the org roll-up the figures come from ("" when live): a cache key of derived data.
    version: str = ""

    @property
    def states(self) -> list[tuple[str, int]]:
        if self.kpis is None:
            return []
        states = self.kpis.states
        return [(s.value, states[s.value]) for s in STATE_ORDER]

    @property
    def keys(self) -> int:
        return sum(n for _, n in self.states)


def latest_org_rollup() -> dict | None:
    """The day of the latest org roll-up and a version of it (an index probe): every
    collection and evaluation rewrites that row, so the version changes with the data."""
    row = (
        KpiRollup.objects.filter(scope=KpiScope.ORG, account=None, owner="")
        .order_by("-day")
        .values("day", "pk", "computed_at")
        .first()
    )
    if row is None:
        return None
    return {"day": row["day"], "version": f"{row['pk']}-{row['computed_at'].timestamp()}"}


def kpi_view(
    *,
    account: Account | None = None,
    owner: str | None = None,
    days: int = TREND_DAYS,
    now: datetime | None = None,
) -> KpiView:
    """Tiles and trend of the organisation, or of one account or owner.

    The organisation's figures are its latest org roll-up (two queries: its day, then the
    period's rows), and the period ends there, so that an organisation whose collections
    stopped still shows its last known state. One account or owner is aggregated live
    (``current_kpis``: five aggregate queries) and its period ends today."""
    now = now or timezone.now()
    live = account is not None or owner is not None
    latest = None if live else latest_org_rollup()
    today = now.date() if live else latest and latest["day"]
    if today is None:
        return KpiView(kpis=None, series=[])
    # Read far enough back for the week-ago and last-quarter comparisons too.
    start = min(
        today - timedelta(days=days), quarter_start(today) - timedelta(days=1), today - WEEK
    )
    series = trend(account=account, owner=owner, since=start)
    if live:
        current: Kpis | None = current_kpis(now, account=account, owner=owner)
        as_of: date | datetime | None = now
        if not series and not current.counts["users"] and not current.counts["active_keys"]:
            current = None  # nothing of this account or owner has been collected
    elif series:
        as_of, current = series[-1]
    else:
        current, as_of = None, None
    chart_from = today - timedelta(days=days)
    view = KpiView(
        kpis=current,
        series=[(d, k) for d, k in series if d > chart_from],
        as_of=as_of,
        live=live,
        version=latest["version"] if latest else "",
    )
    if current is not None:
        view.tiles = kpi_tiles(current, series, today)
    return view


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def trend_chart(series: Series) -> dict:
    """Chart.js data of the KPI lines (percentages on the left axis, days on the right)."""
    return {
        "type": "line",
        "labels": [d.isoformat() for d, _ in series],
        "datasets": [
            {"label": label, "data": [_round(_value(k, name)) for _, k in series], "yAxisID": axis}
            for name, label, axis in TREND_LINES
        ],
        "axes": {"y": "%", "y1": "days"},
    }


def age_chart(kpis: Kpis) -> dict:
    buckets = kpis.age_buckets
    return {
        "type": "bar",
        "labels": list(AGE_LABELS),
        "datasets": [{"label": "Active keys", "data": [buckets[f] for f, _, _ in AGE_BUCKETS]}],
        "xTitle": "age (days)",
    }


def chart_rows(chart: dict) -> list[tuple[str, int]]:
    """A one-series chart's data as (label, value) pairs: its table for screen readers."""
    return list(zip(chart["labels"], chart["datasets"][0]["data"], strict=True))


def _bar(rows: list[tuple[str, int]], label: str) -> dict:
    return {
        "type": "bar",
        "horizontal": True,
        "labels": [name for name, _ in rows],
        "datasets": [{"label": label, "data": [n for _, n in rows]}],
    }


def _overdue(account: Account | None, owner: str | None):
    keys = AccessKey.objects.filter(state=KeyState.OVERDUE, deleted=False)
    if account is not None:
        keys = keys.filter(account=account)
    if owner is not None:
        keys = keys.filter(user__owner=owner.lower())
    return keys


def unapproved_keys(account: Account | None = None, owner: str | None = None) -> int:
    """Keys that appeared without an approved key request (a partial index holds them)."""
    keys = AccessKey.objects.filter(unapproved=True, deleted=False)
    if account is not None:
        keys = keys.filter(account=account)
    if owner is not None:
        keys = keys.filter(user__owner=owner.lower())
    return keys.count()


def overdue_by_account(
    *, account: Account | None = None, owner: str | None = None, top: int = TOP
) -> list[dict]:
    """The accounts with the most overdue keys. Org-wide from each account's latest roll-up
    (one index probe per account, where a GROUP BY would read every overdue key); for one
    owner, a GROUP BY of their keys."""
    if account is None and owner is None:
        accounts = (
            Account.objects.annotate(n=_latest_rollup("state_overdue"))
            .filter(n__gt=0)
            .order_by("-n", "name", "account_id")[:top]
        )
        return [{"account": a, "n": a.n} for a in accounts]
    rows = list(
        _overdue(account, owner)
        .values("account_id")
        .annotate(n=Count("pk"))
        .order_by("-n", "account_id")[:top]
    )
    names = Account.objects.in_bulk([r["account_id"] for r in rows])
    return [{"account": names[r["account_id"]], "n": r["n"]} for r in rows]


# The org-wide ranking of owners reads every overdue key (tens of thousands in a large
# organisation; the owner roll-ups have no index to serve it): kept until the org roll-up
# changes (every collection and evaluation rewrites it), at most this long.
OVERDUE_BY_OWNER_CACHE = 600  # seconds


def overdue_by_owner(
    *, account: Account | None = None, owner: str | None = None, top: int = TOP, version: str = ""
) -> list[dict]:
    """The owners with the most overdue keys ("" is unowned): one GROUP BY on the state
    index. Org-wide with the ``version`` of the latest org roll-up, cached under it."""

    def compute() -> list[dict]:
        rows = (
            _overdue(account, owner)
            .values(owner_email=F("user__owner"))
            .annotate(n=Count("pk"))
            .order_by("-n", "owner_email")[:top]
        )
        return [{"owner": r["owner_email"], "n": r["n"]} for r in rows]

    if account is None and owner is None and version:
        key = f"keygov:overdue-by-owner:{top}:{version}"
        return cache.get_or_set(key, compute, OVERDUE_BY_OWNER_CACHE)
    return compute()


def overdue_chart_by_account(rows: list[dict]) -> dict:
    return _bar([(r["account"].name or r["account"].account_id, r["n"]) for r in rows], "Overdue")


def overdue_chart_by_owner(rows: list[dict]) -> dict:
    return _bar([(r["owner"] or UNOWNED_LABEL, r["n"]) for r in rows], "Overdue")


# --- accounts: last collection and latest roll-up, as annotations ------------------------------


def _latest_snapshot(status: str, column: str = "started_at"):
    # One probe of the (account, status, -started_at) index per account.
    return Subquery(
        Snapshot.objects.filter(account=OuterRef("pk"), status=status)
        .order_by("-started_at")
        .values(column)[:1]
    )


# Older than any collection: stands in for "none" in comparisons (SQLite's MAX() and comparisons
# with NULL give NULL).
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def with_last_collection(accounts):
    """Annotate each account with the start of its latest complete, failed and running
    collection (``complete_at``, ``failed_at``, ``running_at``) and the latest failure's
    ``failed_error``: four index probes per account rather than a sort of its whole history.
    ``last_collection(account)`` reads them; ``last_collection_is(status)`` filters on them."""
    return accounts.annotate(
        complete_at=_latest_snapshot(SnapshotStatus.COMPLETE),
        failed_at=_latest_snapshot(SnapshotStatus.FAILED),
        running_at=_latest_snapshot(SnapshotStatus.RUNNING),
        failed_error=_latest_snapshot(SnapshotStatus.FAILED, "error"),
    )


@dataclass(frozen=True)
class LastCollection:
    """An account's last finished collection (``status`` None: none yet) and whether another
    one is running now."""

    status: str | None
    at: datetime | None
    error: str
    running_since: datetime | None


def last_collection(account) -> LastCollection:
    """Read the annotations of ``with_last_collection``."""
    complete, failed, running = account.complete_at, account.failed_at, account.running_at
    finished = max((t for t in (complete, failed) if t is not None), default=None)
    if failed is not None and failed == finished and (complete is None or failed > complete):
        status, error = SnapshotStatus.FAILED.value, account.failed_error
    elif complete is not None:
        status, error = SnapshotStatus.COMPLETE.value, ""
    else:
        status, error = None, ""
    if running is not None and finished is not None and running < finished:
        running = None  # an older run that never finished (its worker died)
    return LastCollection(status=status, at=finished, error=error, running_since=running)


def _after(field: str, *others: str) -> Q:
    """``field`` is set and later than each of ``others`` (or they are unset)."""
    q = Q(**{f"{field}__isnull": False})
    for other in others:
        q &= Q(**{f"{field}__gt": Coalesce(F(other), Value(EPOCH))})
    return q


def last_collection_is(status: str | None) -> Q:
    """Accounts whose last finished collection is ``status`` (None: never collected), or which
    are collecting now (``running``). For ``with_last_collection`` querysets."""
    if status == SnapshotStatus.FAILED:
        return _after("failed_at", "complete_at")
    if status == SnapshotStatus.COMPLETE:
        return Q(complete_at__isnull=False) & ~_after("failed_at", "complete_at")
    if status == SnapshotStatus.RUNNING:
        return _after("running_at", "complete_at", "failed_at")
    return Q(complete_at__isnull=True, failed_at__isnull=True)


def last_collection_order(descending: bool):
    """Order by the last finished collection's start, the accounts never collected last."""
    latest = Greatest(
        Coalesce(F("complete_at"), Value(EPOCH)), Coalesce(F("failed_at"), Value(EPOCH))
    )
    return latest.desc() if descending else latest.asc()


def failed_accounts():
    """The accounts whose last finished collection failed, the latest failure first."""
    return (
        with_last_collection(Account.objects.all())
        .filter(last_collection_is(SnapshotStatus.FAILED))
        .order_by("-failed_at")
    )


def _latest_rollup(column):
    return Subquery(
        KpiRollup.objects.filter(scope=KpiScope.ACCOUNT, account=OuterRef("pk"), owner="")
        .order_by("-day")
        .values(column)[:1]
    )


def with_latest_kpis(accounts):
    """Annotate each account with the counts of its latest roll-up (one index probe each):
    ``n_users``, ``n_keys`` (not deleted), ``n_active``, ``n_overdue``, ``n_compliant`` and
    ``compliance`` (the same ratio as ``Kpis.compliance_rate``, in SQL so the table sorts by it)."""
    keys = sum((F(f) for f in STATE_FIELDS.values()), Value(0))
    all_keys = Subquery(
        KpiRollup.objects.filter(scope=KpiScope.ACCOUNT, account=OuterRef("pk"), owner="")
        .order_by("-day")
        .annotate(keys=keys)
        .values("keys")[:1],
        output_field=IntegerField(),
    )
    return accounts.annotate(
        kpi_day=_latest_rollup("day"),
        n_users=_latest_rollup("users"),
        n_keys=all_keys,
        n_active=_latest_rollup("active_keys"),
        n_overdue=_latest_rollup("state_overdue"),
        n_compliant=_latest_rollup("compliant_keys"),
    ).annotate(
        compliance=Cast(F("n_compliant"), FloatField())
        * 100.0
        / NullIf(Cast(F("n_active"), FloatField()), Value(0.0)),
    )


# --- a running collection ----------------------------------------------------------------------


def collection_status(account: Account) -> Snapshot | None:
    """The account's running collection if there is one, else its latest snapshot."""
    return (
        Snapshot.objects.filter(account=account)
        .order_by(
            Case(When(status=SnapshotStatus.RUNNING, then=0), default=1),
            "-started_at",
        )
        .first()
    )
