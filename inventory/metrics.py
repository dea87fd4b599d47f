"""Prometheus metrics, read from the database at each scrape by a custom collector.

Why not counters incremented where the work happens: keygov runs as several gunicorn workers and
several Celery workers on other machines; each process would count only its own share, and a
restart would reset it (prometheus-client's multiprocess mode covers one machine only, through a
shared directory). The database already holds every number, written once by whichever worker did
the work: the KPIs in the day's organisation-wide roll-up (``KpiRollup``), the collection runs in
``Snapshot`` rows (status, start, end, AWS API calls). A scrape costs two queries whatever the
size of the inventory: one roll-up row, and the enabled accounts with index probes into their
snapshots (``account, status, -started_at``). Any worker answers the same.

Units follow Prometheus's conventions: seconds and ratios (0 to 1), where the dashboard shows days
and percentages. A KPI without data (no active keys, no closed finding) is left out, not 0.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

from django.db.models import Count, Exists, IntegerField, OuterRef, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from inventory.choices import KpiScope, SnapshotStatus
from inventory.models import Account, KpiRollup, Snapshot
from inventory.services.kpis import AGE_BUCKETS, COUNT_FIELDS, Kpis

RUN_WINDOW = timedelta(days=1)
DAY = 86400.0

# Roll-up counts exposed as they are: (metric name, help, roll-up field).
COUNT_METRICS = (
    ("keygov_iam_users", "IAM users (root excluded)", "users"),
    ("keygov_iam_users_with_active_keys", "IAM users with an active key", "users_with_active_keys"),
    (
        "keygov_iam_users_with_two_active_keys",
        "IAM users with two active keys",
        "users_with_two_active_keys",
    ),
    ("keygov_active_keys", "Active access keys", "active_keys"),
    ("keygov_unowned_keys", "Access keys whose user has no owner", "unowned_keys"),
    ("keygov_open_findings", "Open findings (overdue or unused keys)", "open_findings"),
    (
        "keygov_migrations_verified_quarter",
        "Migrations to IAM roles verified in the current calendar quarter",
        "migrations_verified_quarter",
    ),
)


def _timestamp(value: datetime | None) -> float | None:
    return value.timestamp() if value else None


def _runs(status: str, since: datetime):
    return Snapshot.objects.filter(
        account=OuterRef("pk"), status=status, started_at__gte=since
    ).values("account")


def _count(status: str, since: datetime):
    return Coalesce(
        Subquery(_runs(status, since).annotate(n=Count("pk")).values("n")[:1]),
        0,
        output_field=IntegerField(),
    )


def _calls(status: str, since: datetime):
    return Coalesce(
        Subquery(_runs(status, since).annotate(n=Sum("api_calls")).values("n")[:1]),
        0,
        output_field=IntegerField(),
    )


def _latest_complete(field: str):
    return Subquery(
        Snapshot.objects.filter(account=OuterRef("pk"), status=SnapshotStatus.COMPLETE)
        .order_by("-started_at")
        .values(field)[:1]
    )


class KeygovCollector(Collector):
    """The KPIs of the latest organisation-wide roll-up, and each enabled account's collection
    runs (the last day's, and the latest complete one)."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now

    def collect(self) -> Iterator[Metric]:
        now = self.now or timezone.now()
        yield from self.kpi_metrics()
        yield from self.collection_metrics(now)

    def kpi_metrics(self) -> Iterator[Metric]:
        row = (
            KpiRollup.objects.filter(scope=KpiScope.ORG, account=None, owner="")
            .order_by("-day")
            .first()
        )
        if row is None:
            return  # nothing collected yet
        kpis = Kpis({field: getattr(row, field) for field in COUNT_FIELDS})

        def gauge(name: str, doc: str, value: float | None) -> Iterator[Metric]:
            if value is not None:
                yield GaugeMetricFamily(name, doc, value=value)

        yield from gauge(
            "keygov_kpi_computed_timestamp_seconds",
            "When the KPIs below were computed (the latest organisation-wide roll-up)",
            row.computed_at.timestamp(),
        )
        pct = kpis.pct_users_with_active_keys
        yield from gauge(
            "keygov_users_with_active_keys_ratio",
            "KPI: share of IAM users that have an active access key",
            None if pct is None else pct / 100,
        )
        avg = kpis.avg_active_key_age_days
        yield from gauge(
            "keygov_active_key_age_average_seconds",
            "KPI: average age of the active access keys (whole days, in seconds)",
            None if avg is None else avg * DAY,
        )
        mttr = kpis.mttr_days
        yield from gauge(
            "keygov_findings_mttr_seconds",
            "KPI: mean time to remediate the findings closed in the last 90 days",
            None if mttr is None else mttr * DAY,
        )
        rate = kpis.compliance_rate
        yield from gauge(
            "keygov_compliance_ratio",
            "Share of the active keys that comply with the rotation policy",
            None if rate is None else rate / 100,
        )
        for name, doc, field in COUNT_METRICS:
            yield from gauge(name, doc, kpis.counts[field])
        states = GaugeMetricFamily(
            "keygov_keys", "Access keys (not deleted) by state", labels=["state"]
        )
        for state, n in kpis.states.items():
            states.add_metric([state], n)
        yield states
        ages = GaugeMetricFamily(
            "keygov_active_keys_by_age", "Active access keys by age in days", labels=["days"]
        )
        for field, low, high in AGE_BUCKETS:
            ages.add_metric([f"{low}-{high}" if high else f"{low}+"], kpis.counts[field])
        yield ages

    def collection_metrics(self, now: datetime) -> Iterator[Metric]:
        since = now - RUN_WINDOW
        accounts = (
            Account.objects.filter(enabled=True)
            .order_by("account_id")
            .annotate(
                complete_runs=_count(SnapshotStatus.COMPLETE, since),
                failed_runs=_count(SnapshotStatus.FAILED, since),
                complete_calls=_calls(SnapshotStatus.COMPLETE, since),
                failed_calls=_calls(SnapshotStatus.FAILED, since),
                last_started=_latest_complete("started_at"),
                last_finished=_latest_complete("finished_at"),
                last_calls=_latest_complete("api_calls"),
                running=Exists(
                    Snapshot.objects.filter(account=OuterRef("pk"), status=SnapshotStatus.RUNNING)
                ),
            )
            .values(
                "account_id",
                "name",
                "complete_runs",
                "failed_runs",
                "complete_calls",
                "failed_calls",
                "last_started",
                "last_finished",
                "last_calls",
                "running",
            )
        )
        info = InfoMetricFamily(
            "keygov_account", "The enabled accounts keygov collects", labels=["account"]
        )
        runs = GaugeMetricFamily(
            "keygov_collection_runs_last_day",
            "Collection runs started in the last 24 hours, by outcome",
            labels=["account", "status"],
        )
        calls = GaugeMetricFamily(
            "keygov_collection_api_calls_last_day",
            "AWS API calls of the collection runs started in the last 24 hours",
            labels=["account"],
        )
        duration = GaugeMetricFamily(
            "keygov_collection_last_duration_seconds",
            "Duration of the latest complete collection",
            labels=["account"],
        )
        last_calls = GaugeMetricFamily(
            "keygov_collection_last_api_calls",
            "AWS API calls of the latest complete collection",
            labels=["account"],
        )
        success = GaugeMetricFamily(
            "keygov_collection_last_success_timestamp_seconds",
            "When the latest complete collection finished",
            labels=["account"],
        )
        running = GaugeMetricFamily(
            "keygov_collection_running", "1 while a collection runs", labels=["account"]
        )
        for a in accounts:
            account = a["account_id"]
            info.add_metric([account], {"name": a["name"]})
            runs.add_metric([account, SnapshotStatus.COMPLETE.value], a["complete_runs"])
            runs.add_metric([account, SnapshotStatus.FAILED.value], a["failed_runs"])
            calls.add_metric([account], a["complete_calls"] + a["failed_calls"])
            running.add_metric([account], 1 if a["running"] else 0)
            if a["last_finished"] is not None:
                seconds = (a["last_finished"] - a["last_started"]).total_seconds()
                duration.add_metric([account], seconds)
                last_calls.add_metric([account], a["last_calls"])
                success.add_metric([account], a["last_finished"].timestamp())
        yield from (info, runs, calls, duration, last_calls, success, running)
