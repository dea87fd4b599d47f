"""The overview: KPI tiles equal to hand-computed values with their change since last week and
last quarter, charts' data, the failed-collections panel, filters, empty states, and a query
count that does not grow with the organisation."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pytest
import time_machine
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from inventory.choices import KeyStatus, SnapshotStatus
from inventory.models import AccessKey, Account, Finding, KeyMigration, Snapshot
from inventory.services.dashboard import Tile
from tests.gov_factories import (
    NOW,
    ROLE_ARN,
    AccountFactory,
    ago,
    days,
    key_record,
    person,
    take_snapshot,
    user_record,
)

pytestmark = pytest.mark.django_db

ALICE, BOB, CAROL, ERIN = (f"{n}@example.com" for n in ("alice", "bob", "carol", "erin"))
OVERVIEW = reverse("inventory:overview")

# (key id, account, user, created days before NOW, used the day before each snapshot, status)
KEYS = [
    ("AKIAA1", "a", "alice", 10, True, KeyStatus.ACTIVE),
    ("AKIAA2", "a", "alice", 100, True, KeyStatus.ACTIVE),
    ("AKIAB1", "a", "bob", 80, True, KeyStatus.ACTIVE),
    ("AKIAB2", "a", "bob", 200, True, KeyStatus.INACTIVE),
    ("AKIAS1", "a", "svc", 50, False, KeyStatus.ACTIVE),
    ("AKIAD1", "b", "dave", 400, True, KeyStatus.ACTIVE),
    ("AKIAE1", "b", "erin", 20, True, KeyStatus.ACTIVE),
    ("AKIAM1", "b", "mig", 300, False, KeyStatus.INACTIVE),
    ("AKIAM2", "b", "mig", 300, False, KeyStatus.INACTIVE),
    ("AKIAM3", "b", "mig", 300, False, KeyStatus.INACTIVE),
]
USERS = {
    "a": [("alice", ALICE), ("bob", BOB), ("svc", ""), ("carol", CAROL)],
    "b": [("dave", ALICE), ("erin", ERIN), ("mig", ERIN)],
}


@dataclass
class Org:
    a: Account
    b: Account
    keys: dict


def _snapshot(account: Account, which: str, at):
    users = [user_record(account, name, owner) for name, owner in USERS[which]]
    keys = [
        key_record(
            key_id,
            user,
            ago(age),
            last_used_at=at - days(1) if used else None,
            status=status,
        )
        for key_id, acct, user, age, used, status in KEYS
        if acct == which and ago(age) <= at
    ]
    return take_snapshot(account, at, users, keys)


def _migrated(key: AccessKey, verified_at, by) -> KeyMigration:
    return KeyMigration.objects.create(
        key=key,
        account=key.account,
        status="migrated",
        role_arn=ROLE_ARN,
        marked_by=by,
        marked_at=verified_at - days(10),
        verified_at=verified_at,
        verified_by="deactivated",
    )


def build_org() -> Org:
    """Two accounts collected on 6 and 16 March (Q1), 8 May (a week before NOW) and NOW (15 May).

    account A (alpha)                               account B (beta)
      alice (alice@)  a1 10d ok, a2 100d overdue      dave (alice@)  d1 400d overdue
      bob (bob@)      b1 80d due soon, b2 inactive    erin (erin@)   e1 20d ok
      svc (unowned)   s1 50d never used: unused       mig (erin@)    m1-m3 inactive, migrated
      carol (carol@)  no key
    m1's migration was verified on 11 March (Q1), m2's and m3's on 10 May (Q2). A finding of e1
    opened 15 days ago was closed 3 days ago (by hand: 12 days). At NOW: 7 users, 5 with an
    active key; active keys aged 10+100+80+50+400+20 = 660 days; a1, b1, e1 comply (3 of 6).
    A week before: the same users; ages 618 days in all; a1, b1, s1 (43 days idle) and e1
    comply (4 of 6); no closed finding."""
    a, b = AccountFactory(name="alpha"), AccountFactory(name="beta")
    boss = person("boss", "approver")
    _snapshot(b, "b", ago(70))
    keys = {k.access_key_id: k for k in AccessKey.objects.all()}
    _migrated(keys["AKIAM1"], ago(65), boss)
    _snapshot(a, "a", ago(60))
    _snapshot(b, "b", ago(60))
    _snapshot(a, "a", ago(7))
    _snapshot(b, "b", ago(7))
    keys = {k.access_key_id: k for k in AccessKey.objects.all()}
    _migrated(keys["AKIAM2"], ago(5), boss)
    _migrated(keys["AKIAM3"], ago(5), boss)
    Finding.objects.create(
        key=keys["AKIAE1"],
        account=b,
        kind="unused",
        opened_at=ago(15),
        closed_at=ago(3),
        close_reason="used",
    )
    _snapshot(a, "a", NOW)
    _snapshot(b, "b", NOW)
    return Org(a=a, b=b, keys={k.access_key_id: k for k in AccessKey.objects.all()})


@pytest.fixture(autouse=True)
def _no_cached_rankings():
    cache.clear()


@pytest.fixture
def org() -> Org:
    return build_org()


@pytest.fixture
def viewer(client):
    client.force_login(person("vera", "viewer"))
    return client


def tiles(response) -> dict[str, Tile]:
    return {t.name: t for t in response.context["kpi"].tiles}


def chart(response, chart_id: str) -> dict:
    match = re.search(
        rf'<script id="{chart_id}" type="application/json">(.*?)</script>',
        response.content.decode(),
        re.S,
    )
    assert match, f"no chart data {chart_id}"
    return json.loads(match.group(1))


def test_it_shows_the_organisations_kpis_from_the_latest_rollup(viewer, org):
    response = viewer.get(OVERVIEW)

    assert response.status_code == 200
    t = tiles(response)
    assert t["pct_users_with_active_keys"].value == pytest.approx(500 / 7)
    assert t["avg_active_key_age_days"].value == pytest.approx(110.0)
    assert t["mttr_days"].value == pytest.approx(12.0)
    assert t["migrations_verified_quarter"].value == 2
    assert t["compliance_rate"].value == pytest.approx(50.0)
    html = response.content.decode()
    assert 'data-kpi="pct_users_with_active_keys">71.4 %<' in html
    assert 'data-kpi="avg_active_key_age_days">110.0 days<' in html
    assert 'data-kpi="mttr_days">12.0 days<' in html
    assert 'data-kpi="compliance_rate">50.0 %<' in html
    assert "From the daily roll-up of 2026-05-15" in html


def test_it_shows_each_kpis_change_since_last_week_and_last_quarter(viewer, org):
    t = tiles(viewer.get(OVERVIEW))

    assert t["pct_users_with_active_keys"].delta == pytest.approx(0.0)
    assert t["pct_users_with_active_keys"].direction == "flat"
    # Keys aged a week: 660 - 618 = 42 days in all over 6 keys.
    assert t["avg_active_key_age_days"].delta == pytest.approx(7.0)
    assert t["avg_active_key_age_days"].direction == "bad"
    assert t["avg_active_key_age_days"].compared_with.isoformat() == "2026-05-08"
    assert t["compliance_rate"].delta == pytest.approx(50.0 - 400 / 6)
    assert t["compliance_rate"].delta_display == "\u221216.7 pts"
    assert t["compliance_rate"].direction == "bad"
    # No finding had closed a week ago: nothing to compare with.
    assert t["mttr_days"].delta is None
    # Two this quarter against one in the whole of the last (its last roll-up, 16 March).
    assert t["migrations_verified_quarter"].delta == 1
    assert t["migrations_verified_quarter"].since == "since last quarter"
    assert t["migrations_verified_quarter"].compared_with.isoformat() == "2026-03-16"
    assert t["migrations_verified_quarter"].direction == "good"


def test_it_shows_states_unowned_keys_users_with_two_active_keys_and_age_buckets(viewer, org):
    response = viewer.get(OVERVIEW)

    html = response.content.decode()
    states = dict(re.findall(r'<span data-state="(\w+)">(\d+)</span>', html))
    assert states == {
        "ok": "2",
        "due_soon": "1",
        "overdue": "2",
        "unused": "1",
        "excepted": "0",
        "migrated": "3",
        "inactive": "1",
    }
    assert re.search(r'id="unowned-keys">1<', html)  # s1
    assert re.search(r'id="two-active-keys">1<', html)  # alice
    # a1 10, e1 20 | s1 50 | b1 80 | a2 100 | - | d1 400
    assert chart(response, "chart-ages")["datasets"][0]["data"] == [2, 1, 1, 1, 0, 1]


def test_it_charts_the_trend_of_the_daily_rollups(viewer, org):
    data = chart(viewer.get(OVERVIEW), "chart-trend")

    assert data["labels"] == ["2026-03-06", "2026-03-16", "2026-05-08", "2026-05-15"]
    lines = {d["label"]: d["data"] for d in data["datasets"]}
    assert lines["Compliance rate (%)"][-2:] == [66.7, 50.0]
    assert lines["Average active-key age (days)"][-2:] == [103.0, 110.0]
    assert lines["MTTR (days)"][-1] == 12.0


def test_it_limits_the_trend_to_the_chosen_period(viewer, org):
    # The roll-ups are from 2026: a 30-day window ending at the latest one holds 2 of them.
    data = chart(viewer.get(OVERVIEW, {"days": "30"}), "chart-trend")

    assert data["labels"] == ["2026-05-08", "2026-05-15"]


def test_it_ranks_overdue_keys_by_account_and_by_owner(viewer, org):
    response = viewer.get(OVERVIEW)

    # a2 in alpha, d1 in beta; both belong to alice (alice and dave carry her e-mail).
    assert chart(response, "chart-overdue-accounts")["datasets"][0]["data"] == [1, 1]
    owners = chart(response, "chart-overdue-owners")
    assert (owners["labels"], owners["datasets"][0]["data"]) == ([ALICE], [2])
    html = response.content.decode()
    assert f"?state=overdue&amp;account={org.a.account_id}" in html
    assert "?state=overdue&amp;owner=alice%40example.com" in html


def test_it_ranks_owners_again_once_a_collection_changes_the_rollup(viewer, org):
    """GIVEN the overview was seen (the ranking of owners is cached)
    WHEN a later collection finds bob's key b1 overdue
    THEN the next view ranks bob too."""
    assert chart(viewer.get(OVERVIEW), "chart-overdue-owners")["labels"] == [ALICE]
    later = NOW + days(11)

    _snapshot(org.a, "a", later)

    owners = chart(viewer.get(OVERVIEW), "chart-overdue-owners")
    assert owners["labels"] == [ALICE, BOB]


def test_it_lists_the_accounts_whose_last_collection_failed(viewer, org):
    """GIVEN beta's latest collection failed, alpha's failed but then completed again
    WHEN a viewer opens the overview
    THEN only beta is listed, with its error and a link to its page."""
    Snapshot.objects.create(
        account=org.b,
        started_at=NOW + days(0.1),
        finished_at=NOW + days(0.11),
        status=SnapshotStatus.FAILED,
        error="AccessDenied: sts:AssumeRole on arn:aws:iam::x:role/KeygovRead",
    )
    Snapshot.objects.create(
        account=org.a,
        started_at=ago(1),
        finished_at=ago(1),
        status=SnapshotStatus.FAILED,
        error="Throttling",
    )

    response = viewer.get(OVERVIEW)

    failed = response.context["failed_accounts"]
    assert [a.pk for a in failed] == [org.b.pk]
    html = response.content.decode()
    assert "AccessDenied: sts:AssumeRole" in html
    assert reverse("inventory:account_detail", args=[org.b.account_id]) in html
    assert "Throttling" not in html


@time_machine.travel(NOW + days(1 / 24), tick=False)
def test_it_filters_by_account_with_live_kpis(viewer, org):
    response = viewer.get(OVERVIEW, {"account": org.a.account_id})

    assert response.status_code == 200
    assert response.context["kpi"].live
    t = tiles(response)
    # alpha: 4 users, 3 with an active key; a1 10 + a2 100 + b1 80 + s1 50 = 240 days;
    # a1 and b1 comply; no finding closed there.
    assert t["pct_users_with_active_keys"].value == pytest.approx(75.0)
    assert t["avg_active_key_age_days"].value == pytest.approx(60.0)
    assert t["compliance_rate"].value == pytest.approx(50.0)
    assert t["mttr_days"].value is None
    assert t["migrations_verified_quarter"].value == 0
    # A week before: 212 days over 4 keys, and s1 still complied (3 of 4).
    assert t["avg_active_key_age_days"].delta == pytest.approx(7.0)
    assert t["compliance_rate"].delta == pytest.approx(-25.0)
    assert "Overdue keys by account" not in response.content.decode()
    assert chart(response, "chart-overdue-owners")["labels"] == [ALICE]
    assert chart(response, "chart-trend")["labels"] == [
        "2026-03-16",
        "2026-05-08",
        "2026-05-15",
    ]


@time_machine.travel(NOW + days(1 / 24), tick=False)
def test_it_filters_by_owner_with_live_kpis(viewer, org):
    response = viewer.get(OVERVIEW, {"owner": " Alice@Example.com "})

    assert response.context["owner"] == ALICE
    t = tiles(response)
    # alice (alpha) and dave (beta): both hold an active key; a1 10 + a2 100 + d1 400 days.
    assert t["pct_users_with_active_keys"].value == pytest.approx(100.0)
    assert t["avg_active_key_age_days"].value == pytest.approx(170.0)
    assert t["compliance_rate"].value == pytest.approx(100 / 3)
    assert t["avg_active_key_age_days"].delta == pytest.approx(7.0)
    html = response.content.decode()
    assert "Overdue keys by owner" not in html
    assert chart(response, "chart-overdue-accounts")["datasets"][0]["data"] == [1, 1]
    assert re.search(r'id="two-active-keys">1<', html)


def test_it_says_so_when_an_owner_has_nothing(viewer, org):
    response = viewer.get(OVERVIEW, {"owner": "nobody@example.com"})

    assert response.status_code == 200
    assert "Nothing to show for this filter" in response.content.decode()


def test_it_explains_how_to_add_accounts_when_there_are_none(viewer):
    response = viewer.get(OVERVIEW)

    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="empty-no-accounts"' in html
    assert "manage.py import_accounts" in html
    assert "chart-trend" not in html


def test_it_says_the_first_collection_is_pending_before_any_rollup(viewer):
    AccountFactory(name="fresh")

    response = viewer.get(OVERVIEW)

    html = response.content.decode()
    assert 'id="empty-no-rollups"' in html
    assert "First collection pending" in html
    assert 'id="kpi-' not in html


def test_it_loads_the_vendored_chart_library_and_no_inline_script(viewer, org):
    html = viewer.get(OVERVIEW).content.decode()

    assert "/static/vendor/chartjs/chart.umd.min.js" in html
    assert "/static/js/charts.js" in html
    for attrs in re.findall(r"<script([^>]*)>", html):
        assert "src=" in attrs or 'type="application/json"' in attrs, attrs
    assert "style=" not in html


def test_it_refuses_a_signed_in_person_without_a_role(client):
    client.force_login(person("nobody"))

    assert client.get(OVERVIEW).status_code == 403


def _organisation(n: int) -> None:
    for i in range(n):
        account = AccountFactory(name=f"acct-{i}")
        users = [user_record(account, f"u{j}", f"o{j}@example.com") for j in range(2)]
        keys = [
            key_record(f"AKIA{account.account_id}{j}", f"u{j % 2}", ago(50 + 60 * j))
            for j in range(3)
        ]
        take_snapshot(account, ago(1), users, keys)
        take_snapshot(account, NOW, users, keys)
        if i % 2:
            Snapshot.objects.create(
                account=account,
                started_at=NOW + days(0.1),
                status=SnapshotStatus.FAILED,
                error="boom",
            )


@pytest.mark.parametrize("params", [{}, {"owner": "o1@example.com"}, {"account": "first"}])
def test_it_runs_the_same_few_queries_for_2_or_20_accounts(viewer, params):
    """GIVEN an organisation of 2, then of 20 accounts (keys, roll-ups, failed collections)
    WHEN a viewer opens the overview, whole or filtered
    THEN both take the same number of queries, under 15."""
    counts = []
    for n in (2, 18):  # 2, then 20 in all
        _organisation(n)
        query = dict(params)
        if query.get("account") == "first":
            query["account"] = Account.objects.order_by("pk").first().account_id
        cache.clear()  # the org-wide ranking of owners is cached
        with CaptureQueriesContext(connection) as ctx:
            response = viewer.get(OVERVIEW, query)
        assert response.status_code == 200
        assert response.context["kpi"].kpis is not None
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1]
    assert counts[1] < 15
