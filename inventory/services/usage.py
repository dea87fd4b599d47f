"""Where is a key used: a CloudTrail lookup of the last 90 days, summarised and cached, and a
verdict ("in use", "idle for N days", "never used") from it and the credential report.

A lookup runs as a Celery task (``inventory.tasks.lookup_key_usage``): :func:`start_lookup`
opens a running ``KeyUsageLookup`` row, :func:`run_lookup` reads AWS outside any transaction
and writes the summary, and the key page polls the row for progress.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from inventory.aws import cloudtrail
from inventory.aws.cloudtrail import RateLimiter, RegionEvents, TrailEvent
from inventory.aws.connection import connect
from inventory.aws.errors import AWS_ERRORS, describe_aws_error
from inventory.models import AccessKey, KeyUsageLookup
from inventory.models.alerts import LookupStatus
from inventory.policy import Policy, whole_days
from inventory.services.collection import aws_settings, read_target
from inventory.services.evaluation import effective_policy

log = logging.getLogger(__name__)

# CloudTrail's event history keeps 90 days.
WINDOW_DAYS = 90
# A summary older than this is offered a refresh.
FRESH_FOR = timedelta(days=1)
# A lookup still "running" after this died with its worker (the task's hard time limit is
# shorter): a new lookup may start.
STALE_AFTER = timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 60)
WAITING = "Waiting for a worker"
# Values kept per dimension of the summary (the rest are counted in "others").
TOP = 25

DIMENSIONS = {
    "event_sources": lambda e: e.event_source,
    "event_names": lambda e: f"{e.event_source.split('.', 1)[0]}:{e.event_name}",
    "source_ips": lambda e: e.source_ip,
    "user_agents": lambda e: e.user_agent,
    "regions": lambda e: e.region,
}


# --- Pure functions -------------------------------------------------------------------------


def summarise(
    results: Iterable[RegionEvents], start: datetime, end: datetime, *, top: int = TOP
) -> dict:
    """A JSON-ready summary of the events: per dimension, each value with its count and first
    and last seen (most frequent first), plus totals and which regions were read in full."""
    results = list(results)
    events: list[TrailEvent] = [e for r in results for e in r.events]
    summary: dict = {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "regions_searched": [r.region for r in results],
        "truncated_regions": [r.region for r in results if r.truncated],
        "pages": sum(r.pages for r in results),
        "events": len(events),
        "refused": sum(1 for e in events if e.error_code),
        "first_seen": min(e.event_time for e in events).isoformat() if events else None,
        "last_seen": max(e.event_time for e in events).isoformat() if events else None,
    }
    for name, value_of in DIMENSIONS.items():
        stats: dict[str, list] = {}
        for event in events:
            value = value_of(event) or "(none)"
            row = stats.get(value)
            if row is None:
                stats[value] = [1, event.event_time, event.event_time]
            else:
                row[0] += 1
                row[1] = min(row[1], event.event_time)
                row[2] = max(row[2], event.event_time)
        ordered = sorted(stats.items(), key=lambda item: (-item[1][0], item[0]))
        summary[name] = [
            {
                "value": value,
                "count": count,
                "first_seen": first.isoformat(),
                "last_seen": last.isoformat(),
            }
            for value, (count, first, last) in ordered[:top]
        ]
        summary[f"{name}_others"] = sum(count for _, (count, _f, _l) in ordered[top:])
    return summary


@dataclass(frozen=True)
class Verdict:
    """Whether rotating the key would break something that uses it."""

    kind: str  # "in_use" | "idle" | "never_used"
    idle_days: int | None
    last_used_at: datetime | None
    source: str  # where the last use comes from: "CloudTrail", "credential report" or ""

    @property
    def label(self) -> str:
        if self.kind == "never_used":
            return "never used"
        if self.kind == "idle":
            return f"idle for {self.idle_days} days"
        return "in use"


def verdict(
    *,
    report_last_used: datetime | None,
    trail_last_seen: datetime | None,
    policy: Policy,
    now: datetime,
) -> Verdict:
    """The later of the credential report's last use and CloudTrail's last event decides:
    used within the policy's ``unused_days`` is "in use" (the same line that makes a key
    ``unused``: a monthly job still uses its key), older is "idle for N days", no use at all
    is "never used"."""
    candidates = [
        (t, source)
        for t, source in ((trail_last_seen, "CloudTrail"), (report_last_used, "credential report"))
        if t is not None
    ]
    if not candidates:
        return Verdict("never_used", None, None, "")
    last, source = max(candidates, key=lambda c: c[0])
    idle = whole_days(last, now)
    kind = "in_use" if idle <= policy.unused_days else "idle"
    return Verdict(kind, idle, last, source)


def regions_for(key: AccessKey, configured: list[str]) -> list[str]:
    """The configured regions, and the region of the key's last use when it is another one."""
    regions = list(dict.fromkeys(configured))
    region = key.last_used_region
    if region and region not in regions and region not in ("N/A", "global"):
        regions.append(region)
    return regions


# --- The lookup -----------------------------------------------------------------------------


def latest_lookup(key: AccessKey) -> KeyUsageLookup | None:
    return KeyUsageLookup.objects.filter(key=key).order_by("-started_at", "-id").first()


def is_fresh(lookup: KeyUsageLookup | None, now: datetime) -> bool:
    """A complete lookup younger than ``FRESH_FOR``: no new one is offered."""
    return (
        lookup is not None
        and lookup.status == LookupStatus.COMPLETE
        and lookup.finished_at is not None
        and now - lookup.finished_at < FRESH_FOR
    )


def start_lookup(
    key: AccessKey, *, by=None, now: datetime | None = None
) -> tuple[KeyUsageLookup, bool]:
    """Open a running lookup of ``key``; ``(lookup, False)`` when one is already running (the
    caller joins it instead of paying for a second one). A lookup left running by a dead
    worker is marked failed first."""
    now = now or timezone.now()
    with transaction.atomic():
        KeyUsageLookup.objects.filter(
            key=key, status=LookupStatus.RUNNING, started_at__lt=now - STALE_AFTER
        ).update(
            status=LookupStatus.FAILED,
            finished_at=now,
            error="The lookup stopped without finishing (its worker ended).",
        )
        running = KeyUsageLookup.objects.filter(key=key, status=LookupStatus.RUNNING).first()
        if running is not None:
            return running, False
        try:
            with transaction.atomic():
                lookup = KeyUsageLookup.objects.create(
                    key=key,
                    requested_by=by if by is not None and by.is_authenticated else None,
                    started_at=now,
                    progress=WAITING,
                )
        except IntegrityError:
            # Another click won the race (the one-running-lookup constraint).
            return KeyUsageLookup.objects.get(key=key, status=LookupStatus.RUNNING), False
    return lookup, True


def fail_lookup(lookup: KeyUsageLookup, error: str) -> None:
    """End a lookup that cannot run."""
    KeyUsageLookup.objects.filter(pk=lookup.pk, status=LookupStatus.RUNNING).update(
        status=LookupStatus.FAILED, finished_at=timezone.now(), error=error, progress=""
    )


def pending_lookup(key_id: int) -> KeyUsageLookup | None:
    """The lookup of a key that waits for a worker, if any."""
    return KeyUsageLookup.objects.filter(
        key_id=key_id, status=LookupStatus.RUNNING, progress=WAITING
    ).first()


def run_lookup(
    lookup_id: int,
    *,
    session=None,
    limiter: RateLimiter | None = None,
    now: datetime | None = None,
) -> KeyUsageLookup:
    """Read CloudTrail for the lookup's key (through the account's read role, outside any
    transaction) and store the summary, or the error."""
    lookup = KeyUsageLookup.objects.select_related("key__account").get(pk=lookup_id)
    # Claimed by one worker only: a redelivered message finds it taken (or finished).
    claimed = KeyUsageLookup.objects.filter(
        pk=lookup_id, status=LookupStatus.RUNNING, progress=WAITING
    ).update(progress="Connecting to the account")
    if not claimed:
        return lookup
    key = lookup.key
    account = key.account
    end = now or timezone.now()
    start = end - timedelta(days=WINDOW_DAYS)

    def progress(text: str) -> None:
        KeyUsageLookup.objects.filter(pk=lookup.pk).update(progress=text[:200])

    conn = None
    try:
        conn = connect(read_target(account), aws_settings(), session=session)
        results = cloudtrail.lookup_key_events(
            conn,
            account.account_id,
            key.access_key_id,
            regions_for(key, settings.KEYGOV_CLOUDTRAIL_REGIONS),
            start,
            end,
            limiter=limiter or cloudtrail.LIMITER,
            progress=progress,
        )
    except AWS_ERRORS as exc:
        log.warning("usage lookup of %s failed: %s", key.access_key_id, exc)
        KeyUsageLookup.objects.filter(pk=lookup.pk).update(
            status=LookupStatus.FAILED,
            finished_at=timezone.now(),
            error=describe_aws_error(exc),
            progress="",
            api_calls=conn.api_calls if conn else 0,
        )
        lookup.refresh_from_db()
        return lookup
    KeyUsageLookup.objects.filter(pk=lookup.pk).update(
        status=LookupStatus.COMPLETE,
        finished_at=timezone.now(),
        summary=summarise(results, start, end),
        progress="",
        api_calls=conn.api_calls,
    )
    lookup.refresh_from_db()
    return lookup


@dataclass
class UsageView:
    """What the key page's usage panel shows."""

    key: AccessKey
    lookup: KeyUsageLookup | None
    verdict: Verdict
    fresh: bool
    running: bool


def usage_of(
    key: AccessKey, now: datetime | None = None, policy: Policy | None = None
) -> UsageView:
    """The latest lookup of ``key`` and the verdict (two queries: the lookup and the policy,
    unless the caller has the account's ``policy`` already)."""
    now = now or timezone.now()
    lookup = latest_lookup(key)
    summary = lookup.summary if lookup is not None and lookup.summary else None
    # The latest complete summary feeds the verdict even while a new lookup runs.
    if summary is None and lookup is not None and lookup.status != LookupStatus.COMPLETE:
        previous = (
            KeyUsageLookup.objects.filter(key=key, status=LookupStatus.COMPLETE)
            .order_by("-started_at")
            .only("summary")
            .first()
        )
        summary = previous.summary if previous else None
    trail_last = (
        datetime.fromisoformat(summary["last_seen"]) if summary and summary["last_seen"] else None
    )
    policy = policy or effective_policy(key.account)
    return UsageView(
        key=key,
        lookup=lookup,
        verdict=verdict(
            report_last_used=key.last_used_at,
            trail_last_seen=trail_last,
            policy=policy,
            now=now,
        ),
        fresh=is_fresh(lookup, now),
        running=lookup is not None and lookup.status == LookupStatus.RUNNING,
    )
