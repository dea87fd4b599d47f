"""``/health/``: is keygov able to do its job? For load balancers, container health checks and
monitoring; no login (it shows no inventory data, only each check's status and the age of the
newest complete snapshot).

Three checks, each in the JSON body:

- ``database``: a ``SELECT 1`` (PostgreSQL's connect timeout is 5 s, settings.py);
- ``broker``: a Redis PING with a one-second timeout and no retry, so that a hung Redis (one that
  accepts connections and never answers) costs one second, not a hung request; ``embedded`` when
  there is no REDIS_URL (tasks run in-process);
- ``snapshot``: the age of the newest complete snapshot against
  ``KEYGOV_HEALTH_MAX_SNAPSHOT_AGE`` (default: twice the longest gap between two scheduled
  collections). A new installation is healthy until an enabled account has waited that long
  without a complete snapshot.

200 when every check passes, 503 otherwise. ``?only=database,broker`` runs only the checks named
(a liveness probe that must not fail because AWS refused a collection).
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta

import redis
from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import connection
from django.db.models import Count, Max, OuterRef, Q, Subquery
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from redis.backoff import NoBackoff
from redis.retry import Retry

from inventory.choices import SnapshotStatus
from inventory.models import Account, Snapshot
from keygov.cron import parse_cron, previous_fire_time

BROKER_TIMEOUT = 1.0  # seconds, for connecting and for the answer to PING
CHECKS = ("database", "broker", "snapshot")


def _error(exc: BaseException) -> str:
    # The exception's type and first line: enough to act on, no connection string.
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def check_database() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # any database failure means "not healthy"
        return {"ok": False, "error": _error(exc)}
    return {"ok": True}


def check_broker() -> dict:
    if not settings.REDIS_URL:
        return {"ok": True, "broker": "embedded"}
    client = redis.Redis.from_url(
        settings.REDIS_URL,
        socket_timeout=BROKER_TIMEOUT,
        socket_connect_timeout=BROKER_TIMEOUT,
        retry=Retry(NoBackoff(), 0),
        retry_on_timeout=False,
    )
    try:
        client.ping()
    except Exception as exc:  # refused, timed out, auth: the broker is not usable
        return {"ok": False, "broker": "redis", "error": _error(exc)}
    finally:
        client.close()
    return {"ok": True, "broker": "redis"}


@functools.cache
def longest_collect_gap(cron: str) -> timedelta:
    """The longest time between two consecutive runs of the collection schedule ``cron``,
    looked for over the 400 days before a fixed date (a monthly cron has gaps of 31 days)."""
    schedule = parse_cron("KEYGOV_COLLECT_CRON", cron)
    end = datetime(2025, 1, 1, tzinfo=UTC)
    t = previous_fire_time(schedule, end)
    longest = timedelta(0)
    # At most 2,000 runs: a schedule that fires more often than that in 400 days has short gaps.
    for _ in range(2000):
        earlier = previous_fire_time(schedule, t - timedelta(minutes=1))
        longest = max(longest, t - earlier)
        t = earlier
        if end - t > timedelta(days=400):
            break
    return longest


def max_snapshot_age() -> timedelta:
    seconds = settings.KEYGOV_HEALTH_MAX_SNAPSHOT_AGE
    if seconds:
        return timedelta(seconds=seconds)
    return 2 * longest_collect_gap(settings.KEYGOV_COLLECT_CRON)


def check_snapshot(now: datetime) -> dict:
    limit = max_snapshot_age()
    result: dict = {"max_age_seconds": int(limit.total_seconds())}
    latest = (
        Snapshot.objects.filter(account=OuterRef("pk"), status=SnapshotStatus.COMPLETE)
        .order_by("-started_at")
        .values("finished_at")[:1]
    )
    try:
        # Each account's newest complete run is one probe of the (account, status, -started_at)
        # index: a few milliseconds for 500 accounts, however long the history.
        row = Account.objects.annotate(last=Subquery(latest)).aggregate(
            newest=Max("last"),
            waiting=Count("pk", filter=Q(enabled=True, created_at__lt=now - limit)),
        )
    except Exception as exc:  # the database check says why
        return {"ok": False, "error": _error(exc), **result}
    finished, waiting = row["newest"], row["waiting"]
    if finished is None:
        result["age_seconds"] = None
        if waiting:
            return {"ok": False, "error": "no complete snapshot yet", **result}
        return {"ok": True, **result}
    age = max(now - finished, timedelta(0))
    result["age_seconds"] = int(age.total_seconds())
    result["finished_at"] = finished.isoformat()
    if age > limit:
        return {"ok": False, "error": "the newest complete snapshot is too old", **result}
    return {"ok": True, **result}


@login_not_required
@never_cache
def health(request):
    """Each check's status; 200 when all pass, 503 otherwise (see the module's docstring)."""
    only = [c.strip() for c in request.GET.get("only", "").split(",") if c.strip()]
    unknown = sorted(set(only) - set(CHECKS))
    if unknown:
        return JsonResponse(
            {"status": "error", "error": f"unknown check(s): {', '.join(unknown)}"}, status=400
        )
    wanted = [c for c in CHECKS if not only or c in only]
    checks: dict[str, dict] = {}
    if "database" in wanted:
        checks["database"] = check_database()
    if "broker" in wanted:
        checks["broker"] = check_broker()
    if "snapshot" in wanted:
        if checks.get("database", {}).get("ok", True):
            checks["snapshot"] = check_snapshot(timezone.now())
        else:
            # Asking again would wait for the database's connect timeout a second time.
            checks["snapshot"] = {"ok": False, "error": "the database is unavailable"}
    healthy = all(check["ok"] for check in checks.values())
    body = {
        "status": "ok" if healthy else "error",
        "checks": {
            name: {"status": "ok" if check.pop("ok") else "error", **check}
            for name, check in checks.items()
        },
    }
    return JsonResponse(body, status=200 if healthy else 503)
