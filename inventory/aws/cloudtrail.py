"""What CloudTrail's event history saw of one access key: LookupEvents by AccessKeyId.

boto3 only: returns dataclasses, never touches the database. CloudTrail allows 2 LookupEvents
requests a second per account and region; a :class:`RateLimiter` keeps each (account, region)
under that, and a throttled page is asked again after a back-off, keeping the pages already read
(botocore's standard retries, set in connection.py, retry each call first).

The event history holds management events of the last 90 days. Data events (S3 object reads,
Lambda invocations) are not in it: a key used only for those looks unused here.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from botocore.exceptions import ClientError

from inventory.aws.connection import AwsConnection

# CloudTrail's quota for LookupEvents: 2 requests per second per account per region.
REQUESTS_PER_SECOND = 2.0
PAGE_SIZE = 50  # LookupEvents' maximum
# A busy key can have hundreds of thousands of events in 90 days: read the newest ones only
# (200 pages, about 100 s a region at the quota) and say the result is partial.
MAX_EVENTS_PER_REGION = 10_000
THROTTLING_CODES = frozenset({"ThrottlingException", "Throttling", "TooManyRequestsException"})
# Times a page is asked again after botocore's own retries gave up on throttling.
PAGE_RETRIES = 4

Progress = Callable[[str], None]


@dataclass(frozen=True)
class TrailEvent:
    """One CloudTrail event signed with the key, reduced to what the usage summary needs."""

    event_time: datetime
    event_source: str  # e.g. "s3.amazonaws.com"
    event_name: str  # e.g. "ListBuckets"
    region: str
    source_ip: str
    user_agent: str
    error_code: str = ""  # set when AWS refused the call (AccessDenied...)


@dataclass
class RegionEvents:
    """The events of one region, and whether the read stopped at ``MAX_EVENTS_PER_REGION``."""

    region: str
    events: list[TrailEvent]
    pages: int
    truncated: bool = False


class RateLimiter:
    """At most ``per_second`` calls a second for each key (here: account and region), shared by
    the threads of one process. ``clock`` and ``sleep`` are injectable for tests."""

    def __init__(
        self,
        per_second: float = REQUESTS_PER_SECOND,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = 1.0 / per_second
        self.clock = clock
        self.sleep = sleep
        self._next: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()

    def wait(self, *key: str) -> None:
        """Block until a call for ``key`` keeps the rate; reserve that moment for this call."""
        with self._lock:
            now = self.clock()
            at = max(now, self._next.get(key, now))
            self._next[key] = at + self.interval
        if at > now:
            self.sleep(at - now)

    def pause(self, seconds: float) -> None:
        """Back off (after throttling) with the limiter's own sleep."""
        self.sleep(seconds)


# One limiter per process: concurrent lookups of keys of one account share the account's quota.
LIMITER = RateLimiter()


def regional(conn: AwsConnection, region: str) -> AwsConnection:
    """The same account's credentials and call counter, with clients in ``region``."""
    return AwsConnection(
        session=conn.session,
        settings=replace(conn.settings, region=region),
        credentials=conn.credentials,
        counter=conn.counter,
    )


def parse_event(raw: dict, region: str) -> TrailEvent:
    """A LookupEvents ``Event``: the summary fields, the rest from its CloudTrailEvent JSON."""
    try:
        detail = json.loads(raw.get("CloudTrailEvent") or "{}")
    except ValueError:
        detail = {}
    event_time = raw.get("EventTime")
    if event_time is None:
        event_time = datetime.fromisoformat(detail["eventTime"].replace("Z", "+00:00"))
    return TrailEvent(
        event_time=event_time.astimezone(UTC),
        event_source=raw.get("EventSource") or detail.get("eventSource", ""),
        event_name=raw.get("EventName") or detail.get("eventName", ""),
        region=detail.get("awsRegion") or region,
        source_ip=detail.get("sourceIPAddress", ""),
        user_agent=detail.get("userAgent", ""),
        error_code=detail.get("errorCode", ""),
    )


def _pages(
    client, account_id: str, region: str, params: dict, limiter: RateLimiter
) -> Iterator[dict]:
    """Every page of LookupEvents, within the rate; a throttled page is asked again."""
    token = None
    while True:
        call = dict(params, NextToken=token) if token else params
        for attempt in range(PAGE_RETRIES + 1):
            limiter.wait(account_id, region)
            try:
                page = client.lookup_events(**call)
                break
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code not in THROTTLING_CODES or attempt == PAGE_RETRIES:
                    raise
                limiter.pause(min(2.0**attempt, 20.0))
        yield page
        token = page.get("NextToken")
        if not token:
            return


def lookup_region(
    conn: AwsConnection,
    account_id: str,
    access_key_id: str,
    region: str,
    start: datetime,
    end: datetime,
    *,
    limiter: RateLimiter = LIMITER,
    max_events: int = MAX_EVENTS_PER_REGION,
    progress: Progress | None = None,
) -> RegionEvents:
    """The events signed with ``access_key_id`` in ``region`` between ``start`` and ``end``,
    newest first (CloudTrail's order), every page up to ``max_events``."""
    client = regional(conn, region).client("cloudtrail")
    params = {
        "LookupAttributes": [{"AttributeKey": "AccessKeyId", "AttributeValue": access_key_id}],
        "StartTime": start,
        "EndTime": end,
        "MaxResults": PAGE_SIZE,
    }
    result = RegionEvents(region=region, events=[], pages=0)
    for page in _pages(client, account_id, region, params, limiter):
        result.pages += 1
        result.events.extend(parse_event(raw, region) for raw in page.get("Events", []))
        if progress:
            progress(f"{region}: {len(result.events)} events ({result.pages} pages)")
        if len(result.events) >= max_events and page.get("NextToken"):
            result.events = result.events[:max_events]
            result.truncated = True
            break
    return result


def lookup_key_events(
    conn: AwsConnection,
    account_id: str,
    access_key_id: str,
    regions: list[str],
    start: datetime,
    end: datetime,
    *,
    limiter: RateLimiter = LIMITER,
    max_events: int = MAX_EVENTS_PER_REGION,
    progress: Progress | None = None,
) -> list[RegionEvents]:
    """:func:`lookup_region` for each region in turn (each region has its own quota, but a
    lookup is not urgent enough to hold several connections)."""
    return [
        lookup_region(
            conn,
            account_id,
            access_key_id,
            region,
            start,
            end,
            limiter=limiter,
            max_events=max_events,
            progress=progress,
        )
        for region in regions
    ]
