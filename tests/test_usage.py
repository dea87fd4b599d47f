"""Where is a key used: the summary and verdict (pure), the lookup (Stubber-answered CloudTrail
through the account's connection), and the two views (start, polled status panel)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from inventory import tasks
from inventory.aws import cloudtrail
from inventory.aws.cloudtrail import RegionEvents, TrailEvent
from inventory.models import KeyUsageLookup
from inventory.models.alerts import LookupStatus
from inventory.policy import Policy
from inventory.services import usage
from tests.gov_factories import AccessKeyFactory, IamUserFactory, person
from tests.test_cloudtrail import (
    KEY_ID,
    FakeClock,
    RegionalSession,
    limiter,
    sample,
)

NOW = datetime(2026, 5, 15, 12, 0, tzinfo=UTC)
START = NOW - timedelta(days=90)
OWNER = "olivia@example.com"


def event(days_ago: float, **kwargs) -> TrailEvent:
    fields = {
        "event_time": NOW - timedelta(days=days_ago),
        "event_source": "s3.amazonaws.com",
        "event_name": "ListBuckets",
        "region": "us-east-1",
        "source_ip": "203.0.113.24",
        "user_agent": "Boto3/1.34.11",
    }
    return TrailEvent(**(fields | kwargs))


# --- Summary and verdict (pure) -------------------------------------------------------------------


def test_it_summarises_each_dimension_with_counts_and_first_and_last_seen():
    results = [
        RegionEvents(
            "us-east-1",
            [
                event(1),
                event(3, event_name="GetObject"),
                event(10),
                event(
                    5,
                    source_ip="198.51.100.7",
                    user_agent="aws-cli/2.15",
                    error_code="AccessDenied",
                ),
            ],
            pages=2,
        ),
        RegionEvents(
            "eu-west-1",
            [
                event(
                    2,
                    region="eu-west-1",
                    event_source="ec2.amazonaws.com",
                    event_name="DescribeInstances",
                )
            ],
            pages=1,
            truncated=True,
        ),
    ]
    summary = usage.summarise(results, START, NOW)

    assert summary["events"] == 5
    assert summary["pages"] == 3
    assert summary["refused"] == 1
    assert summary["regions_searched"] == ["us-east-1", "eu-west-1"]
    assert summary["truncated_regions"] == ["eu-west-1"]
    assert summary["first_seen"] == (NOW - timedelta(days=10)).isoformat()
    assert summary["last_seen"] == (NOW - timedelta(days=1)).isoformat()
    assert summary["event_sources"][0] == {
        "value": "s3.amazonaws.com",
        "count": 4,
        "first_seen": (NOW - timedelta(days=10)).isoformat(),
        "last_seen": (NOW - timedelta(days=1)).isoformat(),
    }
    assert [(r["value"], r["count"]) for r in summary["event_names"]] == [
        ("s3:ListBuckets", 3),
        ("ec2:DescribeInstances", 1),
        ("s3:GetObject", 1),
    ]
    assert [(r["value"], r["count"]) for r in summary["source_ips"]] == [
        ("203.0.113.24", 4),
        ("198.51.100.7", 1),
    ]
    assert [(r["value"], r["count"]) for r in summary["regions"]] == [
        ("us-east-1", 4),
        ("eu-west-1", 1),
    ]


def test_it_keeps_the_most_frequent_values_and_counts_the_others():
    events = [event(i, source_ip=f"203.0.113.{i % 30}") for i in range(60)]
    summary = usage.summarise([RegionEvents("us-east-1", events, pages=2)], START, NOW, top=25)
    assert len(summary["source_ips"]) == 25
    assert summary["source_ips_others"] == 60 - sum(r["count"] for r in summary["source_ips"])


def test_it_summarises_no_events():
    summary = usage.summarise([RegionEvents("us-east-1", [], pages=1)], START, NOW)
    assert summary["events"] == 0
    assert summary["first_seen"] is None and summary["last_seen"] is None
    assert summary["event_sources"] == []


@pytest.mark.parametrize(
    ("report", "trail", "kind", "label", "source"),
    [
        (None, None, "never_used", "never used", ""),
        (NOW - timedelta(days=3), None, "in_use", "in use", "credential report"),
        (NOW - timedelta(days=45, hours=1), None, "in_use", "in use", "credential report"),
        (NOW - timedelta(days=46), None, "idle", "idle for 46 days", "credential report"),
        (NOW - timedelta(days=200), NOW - timedelta(days=2), "in_use", "in use", "CloudTrail"),
        (None, NOW - timedelta(days=60), "idle", "idle for 60 days", "CloudTrail"),
    ],
)
def test_it_gives_a_verdict_from_the_later_of_both_last_uses(report, trail, kind, label, source):
    verdict = usage.verdict(
        report_last_used=report, trail_last_seen=trail, policy=Policy(unused_days=45), now=NOW
    )
    assert (verdict.kind, verdict.label, verdict.source) == (kind, label, source)


# --- The lookup -----------------------------------------------------------------------------------


@pytest.fixture
def stubbed_aws(monkeypatch, settings):
    """CloudTrail in us-east-1 answered from the recorded pages; the default credentials (the
    account has no role, so no AssumeRole); a fake clock for the quota."""
    settings.KEYGOV_CLOUDTRAIL_REGIONS = ["us-east-1"]
    stubbed = RegionalSession("us-east-1")
    real_connect = usage.connect

    def connect(target, aws_settings, session=None):
        return real_connect(target, aws_settings, session=stubbed)

    monkeypatch.setattr(usage, "connect", connect)
    monkeypatch.setattr(cloudtrail, "LIMITER", limiter(FakeClock()))
    return stubbed


def three_pages(stubber, *, throttle: bool = False):
    page1, page2, page3 = sample("page1"), sample("page2"), sample("page3")
    stubber.add_response("lookup_events", page1)
    if throttle:
        stubber.add_client_error("lookup_events", service_error_code="ThrottlingException")
    stubber.add_response("lookup_events", page2)
    stubber.add_response("lookup_events", page3)


def usage_key(**kwargs):
    user = IamUserFactory(owner=OWNER, account__role_arn="")
    return AccessKeyFactory(access_key_id=KEY_ID, user=user, **kwargs)


@pytest.mark.django_db
def test_it_looks_a_key_up_through_every_page_and_stores_the_summary(stubbed_aws):
    """GIVEN a key whose CloudTrail events fill three pages, one throttled once WHEN the task
    runs its lookup THEN the lookup completes with the summary of all six events."""
    key = usage_key()
    lookup, created = usage.start_lookup(key)
    stubber = stubbed_aws.stubbers["us-east-1"]
    three_pages(stubber, throttle=True)

    with stubber, time_machine.travel(NOW, tick=False):
        summary = tasks.lookup_key_usage.apply(args=[key.pk]).get()
        stubber.assert_no_pending_responses()

    assert created
    assert summary == f"key {key.pk}: complete, 6 events"
    lookup.refresh_from_db()
    assert lookup.status == LookupStatus.COMPLETE
    assert lookup.finished_at == NOW
    assert lookup.summary["events"] == 6
    assert lookup.summary["refused"] == 1
    assert lookup.summary["start"] == START.isoformat()
    assert [(r["value"], r["count"]) for r in lookup.summary["source_ips"]] == [
        ("203.0.113.24", 5),
        ("198.51.100.7", 1),
    ]
    assert lookup.progress == ""


@pytest.mark.django_db
def test_it_records_why_a_lookup_failed(stubbed_aws):
    key = usage_key()
    usage.start_lookup(key)
    stubber = stubbed_aws.stubbers["us-east-1"]
    stubber.add_client_error(
        "lookup_events",
        service_error_code="AccessDeniedException",
        service_message="not authorized to perform: cloudtrail:LookupEvents",
        http_status_code=403,
    )
    with stubber:
        tasks.lookup_key_usage.apply(args=[key.pk]).get()
    lookup = KeyUsageLookup.objects.get()
    assert lookup.status == LookupStatus.FAILED
    assert "AccessDeniedException" in lookup.error
    assert "README" in lookup.error


@pytest.mark.django_db
def test_it_runs_one_lookup_at_a_time_and_ends_one_whose_worker_died():
    key = usage_key()
    with time_machine.travel(NOW, tick=False):
        first, created = usage.start_lookup(key)
        again, created_again = usage.start_lookup(key)
    assert created and not created_again and again.pk == first.pk

    later = NOW + usage.STALE_AFTER + timedelta(minutes=1)
    with time_machine.travel(later, tick=False):
        second, created = usage.start_lookup(key)
    first.refresh_from_db()
    assert created and second.pk != first.pk
    assert first.status == LookupStatus.FAILED
    assert "stopped without finishing" in first.error


@pytest.mark.django_db
def test_it_never_runs_a_lookup_twice_when_its_message_comes_back(stubbed_aws):
    key = usage_key()
    lookup, _ = usage.start_lookup(key)
    stubber = stubbed_aws.stubbers["us-east-1"]
    three_pages(stubber)
    with stubber:
        usage.run_lookup(lookup.pk)
        usage.run_lookup(lookup.pk)  # the Stubber would refuse a fourth call
    assert (
        tasks.lookup_key_usage.apply(args=[key.pk])
        .get()
        .endswith("no lookup waiting (already running or done)")
    )


def test_it_also_searches_the_region_of_the_last_use():
    key = AccessKeyFactory.build(last_used_region="eu-central-1")
    assert usage.regions_for(key, ["us-east-1"]) == ["us-east-1", "eu-central-1"]
    key.last_used_region = "N/A"
    assert usage.regions_for(key, ["us-east-1", "us-east-1"]) == ["us-east-1"]


# --- Views ----------------------------------------------------------------------------------------


@pytest.fixture
def queued(monkeypatch):
    calls = []
    monkeypatch.setattr(tasks.lookup_key_usage, "delay", lambda *args: calls.append(args))
    return calls


def start_url(key):
    return reverse("inventory:accesskey_usage", args=[key.access_key_id])


def status_url(key):
    return reverse("inventory:accesskey_usage_status", args=[key.access_key_id])


@pytest.mark.django_db
def test_it_starts_a_lookup_for_the_keys_owner_and_shows_its_progress(client, queued):
    """GIVEN the key's owner WHEN they click "Look up in CloudTrail" (htmx) THEN a lookup is
    queued and the panel comes back running, polling its status every 2 seconds."""
    key = usage_key()
    client.force_login(person("olivia", "owner", OWNER))

    response = client.post(start_url(key), HTTP_HX_REQUEST="true")

    assert response.status_code == 200
    assert queued == [(key.pk,)]
    html = response.content.decode()
    assert "Reading CloudTrail" in html
    assert f'hx-get="{status_url(key)}"' in html
    assert 'hx-trigger="every 2s"' in html
    assert KeyUsageLookup.objects.get().requested_by.username == "olivia"


@pytest.mark.django_db
def test_it_sends_a_plain_form_post_back_to_the_key_page(client, queued):
    key = usage_key()
    client.force_login(person("anna", "approver"))
    response = client.post(start_url(key))
    assert response.status_code == 302
    assert response["Location"] == reverse("inventory:accesskey_detail", args=[key.access_key_id])
    assert len(queued) == 1


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["viewer", "other-owner"])
def test_it_refuses_a_lookup_to_viewers_and_to_owners_of_other_keys(client, queued, who):
    key = usage_key()
    user = person("v", "viewer") if who == "viewer" else person("p", "owner", "piotr@example.com")
    client.force_login(user)
    response = client.post(start_url(key), HTTP_HX_REQUEST="true")
    assert response.status_code == 403
    assert queued == []
    assert not KeyUsageLookup.objects.exists()


@pytest.mark.django_db
def test_it_does_not_start_a_second_lookup_while_one_is_fresh(client, queued):
    key = usage_key()
    KeyUsageLookup.objects.create(
        key=key,
        status=LookupStatus.COMPLETE,
        started_at=NOW - timedelta(hours=3),
        finished_at=NOW - timedelta(hours=3),
        summary=usage.summarise([RegionEvents("us-east-1", [], pages=1)], START, NOW),
    )
    client.force_login(person("anna", "approver"))
    with time_machine.travel(NOW, tick=False):
        response = client.post(start_url(key), HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert queued == []
    assert KeyUsageLookup.objects.count() == 1
    assert "A new lookup can be made a day after this one." in response.content.decode()

    with time_machine.travel(NOW + timedelta(days=1), tick=False):
        client.post(start_url(key), HTTP_HX_REQUEST="true")
    assert len(queued) == 1


@pytest.mark.django_db
def test_it_fails_the_lookup_when_the_task_queue_is_down(client, monkeypatch):
    def down(*args):
        raise ConnectionError("Redis unreachable")

    monkeypatch.setattr(tasks.lookup_key_usage, "delay", down)
    key = usage_key()
    client.force_login(person("olivia", "owner", OWNER))
    response = client.post(start_url(key), HTTP_HX_REQUEST="true")
    assert "The task queue is unavailable (Redis unreachable)" in response.content.decode()
    assert KeyUsageLookup.objects.get().status == LookupStatus.FAILED


def complete_lookup(key, n_ips: int) -> KeyUsageLookup:
    events = [event(i % 80, source_ip=f"203.0.113.{i}") for i in range(n_ips)]
    return KeyUsageLookup.objects.create(
        key=key,
        status=LookupStatus.COMPLETE,
        started_at=NOW - timedelta(days=2),
        finished_at=NOW - timedelta(days=2),
        summary=usage.summarise([RegionEvents("us-east-1", events, pages=1)], START, NOW),
    )


@pytest.mark.django_db
def test_it_shows_viewers_the_summary_and_verdict_without_a_start_button(client):
    key = usage_key(last_used_at=NOW - timedelta(days=70), last_used_service="s3")
    complete_lookup(key, 3)
    client.force_login(person("v", "viewer"))

    with time_machine.travel(NOW, tick=False):
        response = client.get(status_url(key))

    html = response.content.decode()
    assert response.status_code == 200
    assert 'data-verdict="in_use"' in html and ">in use<" in html
    assert "(from the CloudTrail)" in html
    assert "3 events in us-east-1" in html
    assert "<code>203.0.113.2</code>" in html
    assert "Source IP addresses" in html
    assert "last used <time" in html and "by s3" in html
    assert "hx-trigger" not in html  # finished: no polling
    assert "Look up again in CloudTrail" not in html  # viewers cannot start one


@pytest.mark.django_db
def test_it_offers_the_owner_a_new_lookup_once_the_last_is_a_day_old(client):
    key = usage_key()
    complete_lookup(key, 2)
    client.force_login(person("olivia", "owner", OWNER))
    with time_machine.travel(NOW, tick=False):
        html = client.get(status_url(key)).content.decode()
    assert "Look up again in CloudTrail" in html
    assert f'hx-post="{start_url(key)}"' in html


@pytest.mark.django_db
def test_it_says_never_used_and_explains_before_any_lookup(client):
    key = usage_key()
    client.force_login(person("olivia", "owner", OWNER))
    html = client.get(status_url(key)).content.decode()
    assert ">never used<" in html
    assert "No CloudTrail lookup yet." in html
    assert "Look up in CloudTrail" in html


@pytest.mark.django_db
def test_it_shows_a_failed_lookup(client):
    key = usage_key()
    KeyUsageLookup.objects.create(
        key=key,
        status=LookupStatus.FAILED,
        started_at=NOW,
        finished_at=NOW,
        error="LookupEvents failed: AccessDeniedException: not allowed",
    )
    client.force_login(person("v", "viewer"))
    html = client.get(status_url(key)).content.decode()
    assert "failed: <span" in html and "AccessDeniedException" in html


@pytest.mark.django_db
def test_it_answers_404_for_an_unknown_key(client):
    client.force_login(person("v", "viewer"))
    assert (
        client.get(reverse("inventory:accesskey_usage_status", args=["AKIANOPE"])).status_code
        == 404
    )


@pytest.mark.django_db
def test_it_renders_the_panel_in_the_same_number_of_queries_for_2_or_20_values(client):
    client.force_login(person("v", "viewer"))

    def queries(n: int) -> int:
        KeyUsageLookup.objects.all().delete()
        key = usage_key() if n == 2 else AccessKeyFactory(access_key_id=f"AKIA{n:016d}")
        complete_lookup(key, n)
        with CaptureQueriesContext(connection) as ctx:
            response = client.get(status_url(key))
        assert response.content.decode().count("<code>203.0.113.") == min(n, usage.TOP)
        return len(ctx.captured_queries)

    assert queries(2) == queries(20)
