"""The accounts table and an account's page; "Collect now" (admins only, a clear answer within
seconds when the task queue is down) and the progress box htmx polls while a collection runs."""

from __future__ import annotations

import csv
import io
import re
import socket
import time
from types import SimpleNamespace

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from inventory import tasks
from inventory.choices import SnapshotStatus
from inventory.models import Account, RotationPolicy, Snapshot
from inventory.services.dashboard import LastCollection, last_collection
from tests.gov_factories import (
    NOW,
    AccountFactory,
    ago,
    days,
    key_record,
    person,
    take_snapshot,
    user_record,
)
from tests.test_views_overview import build_org

pytestmark = pytest.mark.django_db

ACCOUNTS = reverse("inventory:account_list")


def detail(account: Account) -> str:
    return reverse("inventory:account_detail", args=[account.account_id])


def collect(account: Account) -> str:
    return reverse("inventory:account_collect", args=[account.account_id])


def progress(account: Account) -> str:
    return reverse("inventory:account_progress", args=[account.account_id])


def signed_in(client, role: str | None):
    client.force_login(person(f"someone-{role}", role))
    return client


@pytest.fixture
def org():
    return build_org()


@pytest.fixture
def viewer(client):
    return signed_in(client, "viewer")


@pytest.fixture
def admin(client):
    return signed_in(client, "admin")


def rows(response) -> dict[str, object]:
    return {row.record.name: row.record for row in response.context["table"].rows}


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


# --- the list -------------------------------------------------------------------------------


def test_it_lists_the_accounts_with_their_latest_rollup_and_last_collection(viewer, org):
    response = viewer.get(ACCOUNTS)

    assert response.status_code == 200
    records = rows(response)
    alpha, beta = records["alpha"], records["beta"]
    # alpha: alice, bob, svc, carol; a1 a2 b1 b2 s1, four active, a2 overdue, a1 b1 comply.
    assert (alpha.n_users, alpha.n_keys, alpha.n_active, alpha.n_overdue) == (4, 5, 4, 1)
    assert alpha.compliance == pytest.approx(50.0)
    # beta: dave, erin, mig; d1 e1 m1 m2 m3, d1 and e1 active, d1 overdue, e1 complies.
    assert (beta.n_users, beta.n_keys, beta.n_active, beta.n_overdue) == (3, 5, 2, 1)
    assert beta.compliance == pytest.approx(50.0)
    assert last_collection(alpha) == LastCollection("complete", NOW, "", None)
    html = response.content.decode()
    assert detail(org.a) in html
    assert org.a.account_id in html
    assert '<span class="badge text-bg-success">complete</span>' in html
    assert "50.0 %" in html


def test_it_shows_the_last_collection_failure_with_its_error(viewer, org):
    """GIVEN beta's latest collection failed after a complete one
    WHEN a viewer lists the accounts
    THEN beta shows a failed badge, the failure's time and error; alpha stays complete."""
    Snapshot.objects.create(
        account=org.b,
        status=SnapshotStatus.FAILED,
        started_at=NOW + days(0.25),
        finished_at=NOW + days(0.26),
        error="AccessDenied: not authorized to perform sts:AssumeRole",
    )

    response = viewer.get(ACCOUNTS)

    beta = last_collection(rows(response)["beta"])
    assert (beta.status, beta.at) == ("failed", NOW + days(0.25))
    assert beta.error == "AccessDenied: not authorized to perform sts:AssumeRole"
    assert "AccessDenied: not authorized" in response.content.decode()
    assert last_collection(rows(response)["alpha"]).status == "complete"


def test_it_shows_a_running_collection_and_a_never_collected_account(viewer, org):
    AccountFactory(name="fresh")
    Snapshot.objects.create(
        account=org.a, status=SnapshotStatus.RUNNING, started_at=NOW + days(0.1)
    )

    response = viewer.get(ACCOUNTS)

    alpha, fresh = (last_collection(rows(response)[n]) for n in ("alpha", "fresh"))
    assert (alpha.status, alpha.running_since) == ("complete", NOW + days(0.1))
    assert (fresh.status, fresh.at, fresh.running_since) == (None, None, None)
    assert rows(response)["fresh"].n_keys is None
    html = response.content.decode()
    assert '<span class="badge text-bg-info">running</span>' in html
    assert '<span class="badge text-bg-secondary">never collected</span>' in html


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"q": "alp"}, {"alpha"}),
        ({"q": "BETA"}, {"beta"}),
        ({"enabled": "false"}, {"off"}),
        ({"enabled": "true"}, {"alpha", "beta"}),
        ({"last_status": "failed"}, {"beta"}),
        ({"last_status": "complete"}, {"alpha"}),
        ({"last_status": "never"}, {"off"}),
        ({"last_status": "running"}, {"alpha"}),
    ],
)
def test_it_filters_the_accounts(viewer, org, query, expected):
    AccountFactory(name="off", enabled=False)
    Snapshot.objects.create(
        account=org.b, status=SnapshotStatus.FAILED, started_at=NOW + days(0.1), error="x"
    )
    # A run that died long ago (older than the last complete one) is not running.
    Snapshot.objects.create(account=org.b, status=SnapshotStatus.RUNNING, started_at=ago(30))
    Snapshot.objects.create(account=org.a, status=SnapshotStatus.RUNNING, started_at=NOW + days(1))

    assert set(rows(viewer.get(ACCOUNTS, query))) == expected


def test_it_finds_an_account_by_part_of_its_id(viewer, org):
    assert set(rows(viewer.get(ACCOUNTS, {"q": org.b.account_id[-4:]}))) == {"beta"}


def test_it_sorts_by_overdue_keys_and_compliance_with_uncollected_accounts_last(viewer, org):
    """GIVEN alpha (1 overdue, 50 %), beta (1 overdue, 50 %), gamma (2 overdue, 0 %) and a
    fresh account with no roll-up
    WHEN the table is sorted by overdue keys or compliance, either way
    THEN the fresh account comes last each time."""
    gamma = AccountFactory(name="gamma")
    take_snapshot(
        gamma,
        NOW,
        [user_record(gamma, "old")],
        [key_record("AKIAG1", "old", ago(200)), key_record("AKIAG2", "old", ago(300))],
    )
    AccountFactory(name="fresh")

    def order(sort):
        return list(rows(viewer.get(ACCOUNTS, {"sort": sort})))

    assert order("-n_overdue")[0] == "gamma"
    assert order("-n_overdue")[-1] == "fresh"
    assert order("n_overdue")[-1] == "fresh"
    assert order("compliance")[0] == "gamma"
    assert order("-compliance")[-1] == "fresh"


def test_it_exports_the_filtered_accounts_as_csv(viewer, org):
    response = viewer.get(ACCOUNTS, {"q": "alpha", "_export": "csv"})

    assert response.status_code == 200
    lines = list(csv.reader(io.StringIO(response.content.decode())))
    assert lines[0] == [
        "Account", "Name", "Enabled", "Last collection", "Users", "Keys", "Active keys",
        "Overdue", "Compliance",
    ]  # fmt: skip
    assert lines[1:] == [
        [org.a.account_id, "alpha", "True", "complete", "4", "5", "4", "1", "50.0"]
    ]


def _accounts(n: int) -> None:
    for i in range(n):
        account = AccountFactory(name=f"acct-{i:02d}")
        take_snapshot(
            account,
            NOW,
            [user_record(account, "u")],
            [key_record(f"AKIA{account.account_id}", "u", ago(100))],
        )
        Snapshot.objects.create(
            account=account, status=SnapshotStatus.FAILED, started_at=NOW + days(0.1), error="e"
        )


@pytest.mark.parametrize("sort", ["", "-n_overdue", "last_collection"])
def test_it_lists_2_or_20_accounts_in_the_same_few_queries(viewer, sort):
    counts = []
    for n in (2, 18):
        _accounts(n)
        with CaptureQueriesContext(connection) as ctx:
            response = viewer.get(ACCOUNTS, {"sort": sort} if sort else {})
        assert len(response.context["table"].rows) == Account.objects.count()
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1] < 15


# --- one account ----------------------------------------------------------------------------


@time_machine.travel(NOW + days(1 / 24), tick=False)
def test_it_shows_an_accounts_kpis_policy_collections_and_overdue_keys(viewer, org):
    response = viewer.get(detail(org.a))

    assert response.status_code == 200
    tiles = {t.name: t for t in response.context["kpi"].tiles}
    assert tiles["pct_users_with_active_keys"].value == pytest.approx(75.0)
    assert tiles["avg_active_key_age_days"].value == pytest.approx(60.0)
    assert tiles["compliance_rate"].value == pytest.approx(50.0)
    assert tiles["avg_active_key_age_days"].delta == pytest.approx(7.0)
    html = response.content.decode()
    assert "alpha" in html
    assert "global" in html
    assert "90 days" in html
    # Its keys, through the keys table's account filter (the 12-digit id).
    assert f"/keys/?account={org.a.account_id}" in html
    # a2 is alpha's one overdue key, linked to its page.
    assert [k.access_key_id for k in response.context["overdue_keys"]] == ["AKIAA2"]
    assert reverse("inventory:accesskey_detail", args=["AKIAA2"]) in html
    # Three complete collections: 16 March, 8 May, 15 May.
    assert [s.started_at for s in response.context["snapshots"]] == [NOW, ago(7), ago(60)]
    assert 'id="chart-trend"' in html


def test_it_shows_an_accounts_policy_override(viewer, org):
    RotationPolicy.objects.create(account=org.b, max_age_days=30, warn_days=5, unused_days=20)

    response = viewer.get(detail(org.b))

    assert response.context["policy_is_override"]
    assert response.context["policy"].max_age_days == 30
    assert "override for this account" in response.content.decode()


def test_it_shows_the_last_ten_collections_with_their_errors(viewer):
    account = AccountFactory(name="busy")
    for i in range(12):
        Snapshot.objects.create(
            account=account,
            status=SnapshotStatus.FAILED,
            started_at=ago(12 - i),
            finished_at=ago(12 - i) + days(1 / 1440),
            error=f"error number {i}",
            api_calls=i,
        )

    response = viewer.get(detail(account))

    html = response.content.decode()
    assert len(response.context["snapshots"]) == 10
    assert "error number 11" in html
    assert "error number 1<" not in html
    assert "60 s" in html  # the duration


def test_it_answers_404_for_an_unknown_account(viewer):
    assert viewer.get(reverse("inventory:account_detail", args=["999999999999"])).status_code == 404
    assert (
        viewer.get(reverse("inventory:account_progress", args=["999999999999"])).status_code == 404
    )


def test_it_explains_an_account_never_collected(viewer):
    account = AccountFactory(name="fresh")

    response = viewer.get(detail(account))

    assert response.status_code == 200
    assert "Never collected" in response.content.decode()
    assert response.context["kpi"].kpis is None


def _account_with(n: int) -> Account:
    account = AccountFactory(name=f"acct-{n}")
    users = [user_record(account, f"u{i}", f"o{i}@example.com") for i in range(n)]
    keys = [key_record(f"AKIA{account.account_id}{i:03d}", f"u{i}", ago(100 + i)) for i in range(n)]
    for d in range(n):
        take_snapshot(account, ago(d), users, keys)
    return account


def test_it_shows_an_account_of_2_or_20_keys_and_collections_in_the_same_few_queries(viewer):
    counts = []
    for n in (2, 20):
        account = _account_with(n)
        with CaptureQueriesContext(connection) as ctx:
            response = viewer.get(detail(account))
        assert len(response.context["overdue_keys"]) == min(n, 10)
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1] < 15


def test_it_shows_collect_now_to_admins_only(client, org):
    signed_in(client, "approver")
    assert "Collect now" not in client.get(detail(org.a)).content.decode()
    signed_in(client, "admin")
    assert "Collect now" in client.get(detail(org.a)).content.decode()


# --- collect now ----------------------------------------------------------------------------


@pytest.fixture
def queued(monkeypatch, settings):
    """Tasks go to a (pretend) broker: ``collect_account.delay`` records the account ids."""
    settings.CELERY_TASK_ALWAYS_EAGER = False
    calls: list[int] = []
    monkeypatch.setattr(tasks.collect_account, "delay", lambda pk: calls.append(pk))
    return calls


def test_it_queues_a_collection_for_an_admin(admin, org, queued):
    response = admin.post(collect(org.a), follow=True)

    assert queued == [org.a.pk]
    assert response.redirect_chain == [(detail(org.a), 302)]
    assert any("queued" in m for m in messages_of(response))


def test_it_runs_the_collection_in_the_request_without_a_broker(admin, org, monkeypatch, settings):
    """The embedded default (no REDIS_URL): the task runs eagerly, its summary is shown."""
    settings.CELERY_TASK_ALWAYS_EAGER = True
    monkeypatch.setattr(
        tasks.collect_account,
        "delay",
        lambda pk: SimpleNamespace(result="account x: complete, 4 users, 5 keys, 6 AWS calls"),
    )

    response = admin.post(collect(org.a), follow=True)

    assert messages_of(response) == [
        "Collection finished: account x: complete, 4 users, 5 keys, 6 AWS calls"
    ]


@pytest.mark.parametrize("role", ["viewer", "owner", "approver", None])
def test_it_refuses_collect_now_below_admin(client, org, queued, role):
    signed_in(client, role)

    assert client.post(collect(org.a)).status_code == 403
    assert queued == []


def test_it_sends_an_anonymous_visitor_to_the_login_page(client, org, queued):
    response = client.post(collect(org.a))

    assert response.status_code == 302
    assert reverse("login") in response["Location"]
    assert queued == []


def test_it_only_collects_on_post_for_an_unknown_account_404(admin, org, queued):
    assert admin.get(collect(org.a)).status_code == 405
    assert (
        admin.post(reverse("inventory:account_collect", args=["999999999999"])).status_code == 404
    )
    assert queued == []


@pytest.fixture
def broker_down(monkeypatch, settings):
    """The Celery app publishes to a Redis port where nothing listens."""
    from keygov.celery import app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings.CELERY_TASK_ALWAYS_EAGER = False
    monkeypatch.setitem(app.conf, "task_always_eager", False)
    monkeypatch.setitem(app.conf, "broker_url", f"redis://127.0.0.1:{port}/0")
    # Drop the pooled connections to the real broker (restored afterwards).
    monkeypatch.setattr(app, "_pool", None)
    monkeypatch.setattr(app.amqp, "_producer_pool", None)
    return port


def test_it_answers_within_seconds_when_the_task_queue_is_down(admin, org, broker_down):
    """GIVEN the broker does not answer
    WHEN an admin presses Collect now
    THEN within 5 s they are back on the account page with a clear error, nothing started,
    and the other pages keep serving."""
    started = time.monotonic()
    response = admin.post(collect(org.a), follow=True)
    elapsed = time.monotonic() - started

    assert elapsed < 5, f"took {elapsed:.1f} s"
    assert response.status_code == 200
    assert response.redirect_chain == [(detail(org.a), 302)]
    [message] = messages_of(response)
    assert "was not started: the task queue is unavailable" in message
    assert not Snapshot.objects.filter(account=org.a, status=SnapshotStatus.RUNNING).exists()
    for page in (reverse("inventory:overview"), ACCOUNTS, detail(org.b), progress(org.a)):
        assert admin.get(page).status_code == 200


# --- the progress box -----------------------------------------------------------------------


def test_it_polls_while_a_collection_runs(viewer, org):
    Snapshot.objects.create(
        account=org.a,
        status=SnapshotStatus.RUNNING,
        started_at=NOW + days(0.1),
        phase="generating the credential report",
    )

    page = viewer.get(detail(org.a)).content.decode()
    response = viewer.get(progress(org.a), headers={"HX-Request": "true"})

    html = response.content.decode()
    assert response.status_code == 200
    for fragment in (page, html):
        assert f'hx-get="{progress(org.a)}"' in fragment
        assert 'hx-trigger="every 2s"' in fragment
        assert "generating the credential report" in fragment
    assert "HX-Refresh" not in response
    assert "<html" not in html  # a fragment, not a page


def test_it_stops_polling_and_refreshes_the_page_once_complete(viewer, org):
    response = viewer.get(progress(org.a), headers={"HX-Request": "true"})

    html = response.content.decode()
    assert "hx-trigger" not in html
    assert response["HX-Refresh"] == "true"
    assert '<span class="badge text-bg-success">complete</span>' in html
    assert "4 users, 5 keys (4 active)" in html


def test_it_shows_a_failed_collection_without_polling(viewer, org):
    Snapshot.objects.create(
        account=org.a,
        status=SnapshotStatus.FAILED,
        started_at=NOW + days(0.1),
        finished_at=NOW + days(0.11),
        error="Throttling: Rate exceeded",
    )

    response = viewer.get(progress(org.a), headers={"HX-Request": "true"})

    html = response.content.decode()
    assert "hx-trigger" not in html
    assert "Throttling: Rate exceeded" in html
    assert '<span class="badge text-bg-danger">failed</span>' in html
    assert response["HX-Refresh"] == "true"


def test_it_does_not_poll_on_the_page_of_an_idle_account(viewer, org):
    html = viewer.get(detail(org.a)).content.decode()

    assert "hx-trigger" not in html
    assert re.search(r'id="collection-progress"', html)
