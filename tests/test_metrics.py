"""/metrics: Prometheus's text format, behind a bearer token, with values read from the
database (the org roll-up's KPIs, the accounts' collection runs) in a fixed number of queries."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from inventory.choices import KpiScope, SnapshotStatus
from inventory.models import KpiRollup
from tests.factories import AccountFactory, SnapshotFactory
from tests.gov_factories import person

pytestmark = pytest.mark.django_db

URL = "/metrics"
TOKEN = "a-token-for-prometheus-0123456789"
AUTH = {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}


@pytest.fixture(autouse=True)
def token(settings):
    settings.KEYGOV_METRICS_TOKEN = TOKEN


def scrape(client) -> dict[tuple[str, tuple], float]:
    """(sample name, sorted labels) → value."""
    response = client.get(URL, **AUTH)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.content.decode())
        for s in family.samples
    }


def rollup(**counts) -> KpiRollup:
    now = timezone.now()
    return KpiRollup.objects.create(
        scope=KpiScope.ORG, day=now.date(), computed_at=now - timedelta(minutes=5), **counts
    )


def test_it_exposes_the_kpis_of_the_latest_org_rollup(client):
    """GIVEN yesterday's and today's org roll-ups WHEN Prometheus scrapes THEN today's counts
    become the four KPIs, the compliance rate and the keys per state, in seconds and ratios."""
    KpiRollup.objects.create(
        scope=KpiScope.ORG,
        day=timezone.now().date() - timedelta(days=1),
        computed_at=timezone.now() - timedelta(days=1),
        users=999,
    )
    today = rollup(
        users=200,
        users_with_active_keys=50,
        users_with_two_active_keys=3,
        active_keys=80,
        active_key_age_days_sum=80 * 45,
        unowned_keys=7,
        compliant_keys=60,
        state_ok=40,
        state_due_soon=12,
        state_overdue=15,
        state_unused=5,
        state_excepted=8,
        state_migrated=2,
        state_inactive=9,
        age_0_30=20,
        age_over_365=4,
        findings_closed=4,
        findings_closed_seconds_sum=4 * 3 * 86400,
        open_findings=20,
        migrations_verified_quarter=6,
    )

    m = scrape(client)

    assert m[("keygov_users_with_active_keys_ratio", ())] == 0.25
    assert m[("keygov_active_key_age_average_seconds", ())] == 45 * 86400
    assert m[("keygov_findings_mttr_seconds", ())] == 3 * 86400
    assert m[("keygov_migrations_verified_quarter", ())] == 6
    assert m[("keygov_compliance_ratio", ())] == 0.75
    assert m[("keygov_iam_users", ())] == 200
    assert m[("keygov_iam_users_with_two_active_keys", ())] == 3
    assert m[("keygov_active_keys", ())] == 80
    assert m[("keygov_unowned_keys", ())] == 7
    assert m[("keygov_open_findings", ())] == 20
    assert m[("keygov_kpi_computed_timestamp_seconds", ())] == today.computed_at.timestamp()
    states = {labels[0][1]: v for (name, labels), v in m.items() if name == "keygov_keys"}
    assert states == {
        "ok": 40,
        "due_soon": 12,
        "overdue": 15,
        "unused": 5,
        "excepted": 8,
        "migrated": 2,
        "inactive": 9,
    }
    assert m[("keygov_active_keys_by_age", (("days", "0-30"),))] == 20
    assert m[("keygov_active_keys_by_age", (("days", "366+"),))] == 4


def test_it_leaves_out_a_kpi_without_data(client):
    rollup(users=0, active_keys=0, findings_closed=0)

    m = scrape(client)

    names = {name for name, _ in m}
    assert "keygov_users_with_active_keys_ratio" not in names
    assert "keygov_findings_mttr_seconds" not in names
    assert "keygov_compliance_ratio" not in names
    assert m[("keygov_active_keys", ())] == 0


def test_it_exposes_each_accounts_collection_runs(client):
    """GIVEN an account with two complete runs and a failed one in the last day (and an older
    run), and an account running its first collection WHEN Prometheus scrapes THEN the runs per
    outcome, their API calls, the latest complete run's duration and calls are per account."""
    now = timezone.now()
    prod = AccountFactory(account_id="111111111111", name="prod")
    SnapshotFactory(account=prod, started_at=now - timedelta(days=2), api_calls=1000)
    SnapshotFactory(
        account=prod,
        started_at=now - timedelta(hours=12),
        finished_at=now - timedelta(hours=12) + timedelta(seconds=40),
        api_calls=30,
    )
    latest = SnapshotFactory(
        account=prod,
        started_at=now - timedelta(hours=6),
        finished_at=now - timedelta(hours=6) + timedelta(seconds=95),
        api_calls=12,
    )
    SnapshotFactory(
        account=prod, status=SnapshotStatus.FAILED, started_at=now - timedelta(hours=1), api_calls=3
    )
    new = AccountFactory(account_id="222222222222", name="new")
    SnapshotFactory(account=new, status=SnapshotStatus.RUNNING, api_calls=0)
    AccountFactory(account_id="333333333333", enabled=False)

    m = scrape(client)

    def v(metric, account, **labels):
        return m.get((metric, tuple(sorted({"account": account, **labels}.items()))))

    assert v("keygov_collection_runs_last_day", "111111111111", status="complete") == 2
    assert v("keygov_collection_runs_last_day", "111111111111", status="failed") == 1
    assert v("keygov_collection_api_calls_last_day", "111111111111") == 30 + 12 + 3
    assert v("keygov_collection_last_duration_seconds", "111111111111") == 95
    assert v("keygov_collection_last_api_calls", "111111111111") == 12
    assert (
        v("keygov_collection_last_success_timestamp_seconds", "111111111111")
        == latest.finished_at.timestamp()
    )
    assert v("keygov_collection_running", "111111111111") == 0
    assert v("keygov_account_info", "111111111111", name="prod") == 1
    # The account still on its first run: no complete run to describe.
    assert v("keygov_collection_running", "222222222222") == 1
    assert v("keygov_collection_runs_last_day", "222222222222", status="complete") == 0
    assert v("keygov_collection_last_duration_seconds", "222222222222") is None
    # Disabled accounts are not collected: not exposed.
    assert not any(dict(labels).get("account") == "333333333333" for _, labels in m)


def test_it_costs_the_same_few_queries_for_2_or_20_accounts(client, django_assert_num_queries):
    rollup(users=10, active_keys=5, compliant_keys=5)
    for _ in range(2):
        SnapshotFactory()
    with django_assert_num_queries(2):
        scrape(client)
    for _ in range(18):
        SnapshotFactory()
    with django_assert_num_queries(2):
        m = scrape(client)
    assert len([k for k in m if k[0] == "keygov_collection_running"]) == 20


def test_it_refuses_a_scrape_without_the_token(client):
    assert client.get(URL).status_code == 401
    response = client.get(URL, HTTP_AUTHORIZATION="Bearer not-the-token")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="keygov metrics"'
    assert client.get(URL, HTTP_AUTHORIZATION=f"Basic {TOKEN}").status_code == 401


def test_it_does_not_open_to_a_signed_in_admin_without_the_token(client):
    client.force_login(person("ada", "admin"))

    assert client.get(URL).status_code == 401


def test_it_does_not_exist_without_a_token_setting(client, settings):
    settings.KEYGOV_METRICS_TOKEN = ""

    assert client.get(URL, **AUTH).status_code == 404
