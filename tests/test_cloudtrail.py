"""CloudTrail LookupEvents by AccessKeyId, answered by botocore's Stubber with recorded
AWS-format responses (moto has no LookupEvents): paging, throttling and the 2 requests/s quota."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber

from inventory.aws import cloudtrail
from inventory.aws.cloudtrail import RateLimiter, lookup_key_events, lookup_region, parse_event
from inventory.aws.connection import AwsConnection, AwsSettings

SAMPLES = Path(__file__).parent / "samples"
KEY_ID = "AKIAIOSFODNN7EXAMPLE"
ACCOUNT = "123456789012"
END = datetime(2026, 5, 15, 12, 0, tzinfo=UTC)
START = END - timedelta(days=90)


def sample(name: str) -> dict:
    """A recorded LookupEvents response, as boto3 returns it (EventTime parsed to a datetime;
    CloudTrailEvent stays a JSON string, as AWS sends it)."""
    body = json.loads((SAMPLES / f"cloudtrail_lookup_events_{name}.json").read_text())
    for event in body["Events"]:
        event["EventTime"] = datetime.fromisoformat(event["EventTime"].replace("Z", "+00:00"))
    return body


def expected(token: str | None = None) -> dict:
    params = {
        "LookupAttributes": [{"AttributeKey": "AccessKeyId", "AttributeValue": KEY_ID}],
        "StartTime": START,
        "EndTime": END,
        "MaxResults": 50,
    }
    if token:
        params["NextToken"] = token
    return params


class RegionalSession:
    """Stands in for a boto3 Session: one stubbed CloudTrail client per region."""

    def __init__(self, *regions: str) -> None:
        self.clients = {
            region: boto3.client(
                "cloudtrail",
                region_name=region,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
            for region in regions
        }
        self.stubbers = {region: Stubber(c) for region, c in self.clients.items()}

    def client(self, service: str, *, config, **_):
        assert service == "cloudtrail"
        return self.clients[config.region_name]


class FakeClock:
    """A monotonic clock that only moves when the code sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds


def connection(session) -> AwsConnection:
    return AwsConnection(session=session, settings=AwsSettings(region="us-east-1"))


def limiter(clock: FakeClock) -> RateLimiter:
    return RateLimiter(2.0, clock=clock, sleep=clock.sleep)


def test_it_reads_every_page_of_the_key_events():
    """GIVEN a key whose events fill three pages WHEN looking it up THEN each call asks for the
    key's events of the window, 50 a page, passing the previous page's NextToken, and every
    event is read with its source IP, user agent, region and error from CloudTrailEvent."""
    session = RegionalSession("us-east-1")
    page1, page2, page3 = sample("page1"), sample("page2"), sample("page3")
    stubber = session.stubbers["us-east-1"]
    stubber.add_response("lookup_events", page1, expected())
    stubber.add_response("lookup_events", page2, expected(page1["NextToken"]))
    stubber.add_response("lookup_events", page3, expected(page2["NextToken"]))
    seen = []

    with stubber:
        result = lookup_region(
            connection(session),
            ACCOUNT,
            KEY_ID,
            "us-east-1",
            START,
            END,
            limiter=limiter(FakeClock()),
            progress=seen.append,
        )
        stubber.assert_no_pending_responses()

    assert result.pages == 3
    assert not result.truncated
    assert [e.event_name for e in result.events] == [
        "ListBuckets",
        "GetCallerIdentity",
        "DescribeTable",
        "ListBuckets",
        "ListUsers",
        "CreateBucket",
    ]
    denied = result.events[4]
    assert denied.event_source == "iam.amazonaws.com"
    assert denied.source_ip == "198.51.100.7"
    assert denied.user_agent.startswith("aws-cli/2.15.10")
    assert denied.error_code == "AccessDenied"
    assert denied.region == "us-east-1"
    assert denied.event_time == datetime(2026, 5, 9, 21, 10, tzinfo=UTC)
    assert result.events[0].source_ip == "203.0.113.24"
    assert result.events[0].error_code == ""
    assert seen[-1] == "us-east-1: 6 events (3 pages)"


def test_it_asks_a_throttled_page_again_after_a_back_off():
    """GIVEN CloudTrail throttles the second page once WHEN looking up THEN that page is asked
    again with the same NextToken after backing off, and no event is lost or repeated."""
    session = RegionalSession("us-east-1")
    page1, page2, page3 = sample("page1"), sample("page2"), sample("page3")
    stubber = session.stubbers["us-east-1"]
    stubber.add_response("lookup_events", page1, expected())
    stubber.add_client_error(
        "lookup_events",
        service_error_code="ThrottlingException",
        service_message="Rate exceeded",
        http_status_code=400,
        expected_params=expected(page1["NextToken"]),
    )
    stubber.add_response("lookup_events", page2, expected(page1["NextToken"]))
    stubber.add_response("lookup_events", page3, expected(page2["NextToken"]))
    clock = FakeClock()

    with stubber:
        result = lookup_region(
            connection(session), ACCOUNT, KEY_ID, "us-east-1", START, END, limiter=limiter(clock)
        )
        stubber.assert_no_pending_responses()

    assert len(result.events) == 6
    assert len({(e.event_time, e.event_name) for e in result.events}) == 6
    assert 1.0 in clock.sleeps  # the back-off after the throttled call


def test_it_gives_up_when_throttling_does_not_stop():
    session = RegionalSession("us-east-1")
    stubber = session.stubbers["us-east-1"]
    for _ in range(cloudtrail.PAGE_RETRIES + 1):
        stubber.add_client_error("lookup_events", service_error_code="ThrottlingException")
    clock = FakeClock()

    with stubber, pytest.raises(cloudtrail.ClientError, match="ThrottlingException"):
        lookup_region(
            connection(session), ACCOUNT, KEY_ID, "us-east-1", START, END, limiter=limiter(clock)
        )
    assert [s for s in clock.sleeps if s >= 1] == [1.0, 2.0, 4.0, 8.0]


def test_it_does_not_retry_other_errors():
    session = RegionalSession("us-east-1")
    stubber = session.stubbers["us-east-1"]
    stubber.add_client_error(
        "lookup_events", service_error_code="AccessDeniedException", http_status_code=403
    )

    with stubber, pytest.raises(cloudtrail.ClientError, match="AccessDeniedException"):
        lookup_region(
            connection(session),
            ACCOUNT,
            KEY_ID,
            "us-east-1",
            START,
            END,
            limiter=limiter(FakeClock()),
        )
        stubber.assert_no_pending_responses()


def test_it_keeps_two_requests_a_second_per_account_and_region():
    """GIVEN three pages answered instantly WHEN looking up THEN the calls are spaced half a
    second apart (CloudTrail's quota), measured on an injected clock."""
    session = RegionalSession("us-east-1")
    page1, page2, page3 = sample("page1"), sample("page2"), sample("page3")
    stubber = session.stubbers["us-east-1"]
    called_at = []
    clock = FakeClock()
    stubber.add_response("lookup_events", page1, expected())
    stubber.add_response("lookup_events", page2, expected(page1["NextToken"]))
    stubber.add_response("lookup_events", page3, expected(page2["NextToken"]))
    client = session.clients["us-east-1"]
    real_call = client.lookup_events

    def timed_call(**params):
        called_at.append(clock.now)
        return real_call(**params)

    client.lookup_events = timed_call

    with stubber:
        lookup_region(
            connection(session), ACCOUNT, KEY_ID, "us-east-1", START, END, limiter=limiter(clock)
        )

    assert called_at == [100.0, 100.5, 101.0]


def test_it_keeps_a_separate_quota_for_each_region_and_account():
    clock = FakeClock()
    rate = limiter(clock)

    rate.wait(ACCOUNT, "us-east-1")
    rate.wait(ACCOUNT, "eu-west-1")
    rate.wait("210987654321", "us-east-1")
    assert clock.sleeps == []

    rate.wait(ACCOUNT, "us-east-1")
    assert clock.sleeps == [0.5]
    clock.now += 2  # time passes: the next call needs no wait
    rate.wait(ACCOUNT, "us-east-1")
    assert clock.sleeps == [0.5]


def test_it_stops_at_the_event_cap_and_says_so():
    session = RegionalSession("us-east-1")
    page1 = sample("page1")
    stubber = session.stubbers["us-east-1"]
    stubber.add_response("lookup_events", page1, expected())

    with stubber:
        result = lookup_region(
            connection(session),
            ACCOUNT,
            KEY_ID,
            "us-east-1",
            START,
            END,
            limiter=limiter(FakeClock()),
            max_events=2,
        )
        stubber.assert_no_pending_responses()

    assert result.truncated
    assert len(result.events) == 2


def test_it_reads_each_region_through_a_client_of_that_region():
    session = RegionalSession("us-east-1", "eu-west-1")
    session.stubbers["us-east-1"].add_response("lookup_events", sample("page3"), expected())
    session.stubbers["eu-west-1"].add_response("lookup_events", sample("eu_west_1"), expected())
    conn = connection(session)

    with session.stubbers["us-east-1"], session.stubbers["eu-west-1"]:
        results = lookup_key_events(
            conn,
            ACCOUNT,
            KEY_ID,
            ["us-east-1", "eu-west-1"],
            START,
            END,
            limiter=limiter(FakeClock()),
        )

    assert [(r.region, [e.event_name for e in r.events]) for r in results] == [
        ("us-east-1", ["CreateBucket"]),
        ("eu-west-1", ["DescribeInstances"]),
    ]
    assert results[1].events[0].region == "eu-west-1"


def test_it_reads_an_event_whose_detail_is_missing():
    event = parse_event(
        {"EventName": "GetObject", "EventSource": "s3.amazonaws.com", "EventTime": END},
        "us-west-2",
    )
    assert (event.region, event.source_ip, event.user_agent) == ("us-west-2", "", "")
