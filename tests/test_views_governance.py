"""The governance pages: findings, exceptions (with approve / reject / cancel) and the audit log."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from inventory.choices import CloseReason, ExceptionStatus, KeyState
from inventory.governance_tables import CappedCountPaginator, changes
from inventory.models import AuditEvent, Finding, PolicyException
from inventory.services.audit import record
from inventory.services.exceptions import request_exception
from inventory.views.governance import AuditListView
from tests.gov_factories import AccessKeyFactory, AccountFactory, IamUserFactory, person

pytestmark = pytest.mark.django_db

FINDINGS = reverse("inventory:finding_list")
EXCEPTIONS = reverse("inventory:exception_list")
AUDIT = reverse("inventory:audit_list")
ALICE = "alice@example.com"


def decide_url(exc) -> str:
    return reverse("inventory:exception_decide", args=[exc.pk])


def cancel_url(exc) -> str:
    return reverse("inventory:exception_cancel", args=[exc.pk])


@pytest.fixture
def now():
    return timezone.now()


@pytest.fixture
def viewer():
    return person("vera", "viewer")


@pytest.fixture
def alice():
    return person("alice", "owner", email=ALICE)


@pytest.fixture
def manager():
    return person("manager", "approver")


@pytest.fixture
def boss():
    return person("boss", "approver")


def signed_in(client, user):
    client.force_login(user)
    return client


def query_count(client, url: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200
    return len(ctx.captured_queries)


def page(response) -> str:
    assert response.status_code == 200
    return response.content.decode()


def alice_key(account=None, **kw):
    user_kw = {"owner": ALICE, **({"account": account} if account else {})}
    return AccessKeyFactory(user=IamUserFactory(**user_kw), **kw)


# --- findings ----------------------------------------------------------------------------------


def finding(key, now, *, opened_days=10, closed_days=None, kind=KeyState.OVERDUE, reason=""):
    """A finding of ``key`` opened ``opened_days`` ago, closed ``closed_days`` ago (or open)."""
    closed = now - timedelta(days=closed_days) if closed_days is not None else None
    return Finding.objects.create(
        key=key,
        account=key.account,
        kind=kind,
        opened_at=now - timedelta(days=opened_days),
        closed_at=closed,
        close_reason=reason or (CloseReason.ROTATED if closed else ""),
    )


def rows_of(html: str, ids: list[str]) -> list[str]:
    """The ids among ``ids`` that the page shows, in the page's order."""
    found = [(html.find(f">{i}<"), i) for i in ids]
    return [i for pos, i in sorted(found) if pos >= 0]


def test_it_lists_findings_open_first_with_their_key_owner_and_duration(client, viewer, now):
    """GIVEN an old closed finding, an open one and a newer closed one
    WHEN a viewer opens /findings/ THEN the open one comes first, then the closed ones newest
    first; each links to its key, and shows the account, user, owner, kind, state and duration."""
    old = finding(
        alice_key(access_key_id="AKIAOLDCLOSED0000001"), now, opened_days=40, closed_days=30
    )
    open_ = finding(
        AccessKeyFactory(access_key_id="AKIAOPEN000000000001"), now, opened_days=12, kind="unused"
    )
    new = finding(
        alice_key(access_key_id="AKIANEWCLOSED0000001"), now, opened_days=20, closed_days=1
    )

    html = page(signed_in(client, viewer).get(FINDINGS))

    ids = ["AKIAOLDCLOSED0000001", "AKIAOPEN000000000001", "AKIANEWCLOSED0000001"]
    assert rows_of(html, ids) == [
        "AKIAOPEN000000000001",
        "AKIANEWCLOSED0000001",
        "AKIAOLDCLOSED0000001",
    ]
    assert f'href="{reverse("inventory:accesskey_detail", args=["AKIAOPEN000000000001"])}"' in html
    assert open_.key.user.name in html and open_.account.name in html
    assert ALICE in html
    assert "unowned" in html  # the open finding's user carries no owner tag
    assert '<span class="badge state-unused">Unused</span>' in html
    assert '<span class="badge text-bg-warning">open</span>' in html
    assert "12 days" in html and "so far" in html
    assert "10 days" in html  # the old one: opened 40, closed 30 days ago
    assert "Key rotated" in html
    assert old.pk and new.pk


def test_it_explains_an_empty_findings_table(client, viewer):
    html = page(signed_in(client, viewer).get(FINDINGS))
    assert "No findings match" in html


@pytest.fixture
def finding_mix(now):
    """Four findings that differ in each filtered attribute."""
    acct_a, acct_b = AccountFactory(name="payments"), AccountFactory(name="search")
    bob_user = IamUserFactory(account=acct_b, owner="bob@example.com", name="indexer")
    return {
        "open_overdue": finding(
            alice_key(acct_a, access_key_id="AKIAFOPENOVERDUE0001"), now, opened_days=5
        ),
        "open_unused": finding(
            AccessKeyFactory(user=bob_user, access_key_id="AKIAFOPENUNUSED00001"),
            now,
            opened_days=50,
            kind=KeyState.UNUSED,
        ),
        "closed_rotated": finding(
            alice_key(acct_b, access_key_id="AKIAFCLOSEDROTATED01"),
            now,
            opened_days=100,
            closed_days=90,
            reason=CloseReason.ROTATED,
        ),
        "closed_excepted": finding(
            AccessKeyFactory(
                user=IamUserFactory(account=acct_a), access_key_id="AKIAFCLOSEDEXCEPT001"
            ),
            now,
            opened_days=200,
            closed_days=150,
            kind=KeyState.UNUSED,
            reason=CloseReason.EXCEPTED,
        ),
    }


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"state": "open"}, {"open_overdue", "open_unused"}),
        ({"state": "closed"}, {"closed_rotated", "closed_excepted"}),
        ({"kind": "unused"}, {"open_unused", "closed_excepted"}),
        ({"owner": "Alice@Example.com"}, {"open_overdue", "closed_rotated"}),
        ({"owner": "unowned"}, {"closed_excepted"}),
        ({"close_reason": "excepted"}, {"closed_excepted"}),
        ({"q": "indexer"}, {"open_unused"}),  # IAM user name
        ({"q": "fclosedrot"}, {"closed_rotated"}),  # key id, any case
        ({"q": "bob@"}, {"open_unused"}),  # owner
    ],
)
def test_it_filters_findings(client, viewer, finding_mix, params, expected):
    response = signed_in(client, viewer).get(FINDINGS, params)
    shown = {f.pk for f in response.context["table"].data}
    assert shown == {finding_mix[name].pk for name in expected}


def test_it_filters_findings_by_account(client, viewer, finding_mix):
    account = finding_mix["open_overdue"].account
    response = signed_in(client, viewer).get(FINDINGS, {"account": account.account_id})
    assert {f.pk for f in response.context["table"].data} == {
        finding_mix["open_overdue"].pk,
        finding_mix["closed_excepted"].pk,
    }


def test_it_filters_findings_by_the_day_they_opened(client, viewer, finding_mix, now):
    """The range includes both days it names, whole days in UTC."""
    params = {
        "opened_from": (now - timedelta(days=100)).date().isoformat(),
        "opened_to": (now - timedelta(days=50)).date().isoformat(),
    }
    response = signed_in(client, viewer).get(FINDINGS, params)
    assert {f.pk for f in response.context["table"].data} == {
        finding_mix["open_unused"].pk,
        finding_mix["closed_rotated"].pk,
    }


@pytest.mark.parametrize("sort", ["", "key", "-account", "duration", "-duration", "owner"])
def test_it_keeps_the_findings_query_count_flat(client, viewer, now, sort):
    signed_in(client, viewer)
    url = f"{FINDINGS}?sort={sort}"
    for _ in range(2):
        finding(alice_key(), now)
    few = query_count(client, url)
    for i in range(18):
        finding(alice_key(), now, opened_days=30 + i, closed_days=i)
    assert query_count(client, url) == few
    assert few <= 10


def test_it_exports_the_filtered_findings_as_csv(client, viewer, finding_mix):
    response = signed_in(client, viewer).get(FINDINGS, {"state": "open", "_export": "csv"})
    assert response.status_code == 200
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert rows[0][:3] == ["Key", "Account", "IAM user"]
    by_key = {row[0]: row for row in rows[1:]}
    assert set(by_key) == {"AKIAFOPENOVERDUE0001", "AKIAFOPENUNUSED00001"}
    assert by_key["AKIAFOPENUNUSED00001"][4] == "unused"
    assert by_key["AKIAFOPENUNUSED00001"][7] == "50"


def test_it_refuses_findings_to_a_person_without_a_role(client):
    response = signed_in(client, person("nobody")).get(FINDINGS)
    assert response.status_code == 403


# --- exceptions: the list ----------------------------------------------------------------------


def ask(by, *, key=None, iam_user=None, days=30, reason="vendor appliance cannot rotate"):
    """A pending exception requested now by ``by``, expiring in ``days`` days (and an hour)."""
    return request_exception(
        requested_by=by,
        key=key,
        iam_user=iam_user,
        reason=reason,
        expires_at=timezone.now() + timedelta(days=days, hours=1),
    )


def test_it_lists_exceptions_pending_first_with_targets_reasons_and_expiry(
    client, viewer, alice, manager, boss
):
    """GIVEN an approved exception for a key (with a comment), a pending one for every key of
    an IAM user and a long reason WHEN a viewer opens /exceptions/ THEN the pending one comes
    first; the key links to its page, the user one says it covers all the user's keys, the
    reason is cut with its full text in a tooltip, statuses are badges, expiries relative."""
    approved = ask(alice, key=alice_key(access_key_id="AKIAEXCAPPROVED00001"), days=20)
    from inventory.services.exceptions import decide_exception

    decide_exception(approved.pk, approver=manager, approve=True, comment="until the vendor fix")
    long_reason = "The legacy batch job signs requests with a key baked into a vendor image. " * 3
    pending = ask(manager, iam_user=IamUserFactory(name="batch-runner"), days=5, reason=long_reason)

    html = page(signed_in(client, viewer).get(EXCEPTIONS))

    assert html.find("batch-runner") < html.find("AKIAEXCAPPROVED00001")
    assert f'href="{reverse("inventory:accesskey_detail", args=["AKIAEXCAPPROVED00001"])}"' in html
    assert "all keys of the user" in html
    assert f'title="{long_reason.strip()}"' in html
    assert html.count(long_reason.strip()) == 1  # only in the tooltip: the cell is cut
    assert '<span class="badge text-bg-warning">Pending</span>' in html
    assert '<span class="badge text-bg-success">Approved</span>' in html
    assert "in 20 days" in html and "in 5 days" in html
    assert "until the vendor fix" in html
    assert pending.requested_by.username in html
    # A viewer decides nothing: no decision column, no forms.
    assert 'value="approve"' not in html and '<form method="post" action="/exceptions/' not in html


def test_it_shows_expired_exceptions_as_expired(client, viewer, alice, manager):
    exc = ask(alice, key=alice_key())
    PolicyException.objects.filter(pk=exc.pk).update(expires_at=timezone.now() - timedelta(hours=1))
    html = page(signed_in(client, viewer).get(EXCEPTIONS))
    assert "expired" in html


def test_it_offers_approvers_a_decision_on_other_peoples_pending_requests(client, alice, manager):
    """GIVEN alice's pending request and one of the manager's own WHEN the manager opens the
    list THEN alice's row has Approve and Reject (with a comment field and CSRF token); the
    manager's own row says another approver must decide it and offers to cancel."""
    theirs = ask(alice, key=alice_key())
    mine = ask(manager, key=alice_key())

    html = page(signed_in(client, manager).get(EXCEPTIONS, {"status": "pending"}))

    assert f'action="{decide_url(theirs)}"' in html
    assert f'action="{decide_url(mine)}"' not in html
    assert f'action="{cancel_url(mine)}"' in html
    assert "awaiting another approver" in html
    assert 'name="csrfmiddlewaretoken"' in html
    assert f'for="decision-comment-{theirs.pk}"' in html
    # Each button names its request for a screen reader.
    assert f'aria-label="Approve the exception for {theirs.key.access_key_id}"' in html
    assert 'name="next" value="/exceptions/?status=pending"' in html


def test_it_offers_an_owner_to_cancel_their_own_request_only(client, alice, manager):
    own = ask(alice, key=alice_key())
    other = ask(manager, key=alice_key())
    html = page(signed_in(client, alice).get(EXCEPTIONS))
    assert f'action="{cancel_url(own)}"' in html
    assert f'action="{cancel_url(other)}"' not in html
    assert f'action="{decide_url(other)}"' not in html
    assert "Request an exception" in html  # where requests are filed


@pytest.fixture
def exception_mix(alice, manager, boss):
    acct = AccountFactory(name="ledger")
    items = {
        "pending_alice": ask(alice, key=alice_key(acct), days=3),
        "pending_manager": ask(manager, key=alice_key(), days=100),
        "approved_soon": ask(alice, key=alice_key(acct), days=10),
        "rejected_soon": ask(alice, key=alice_key(), days=2),
    }
    from inventory.services.exceptions import decide_exception

    decide_exception(items["approved_soon"].pk, approver=boss, approve=True)
    decide_exception(items["rejected_soon"].pk, approver=boss, approve=False)
    return items


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"status": "pending"}, {"pending_alice", "pending_manager"}),
        ({"status": "approved"}, {"approved_soon"}),
        # Rejected requests cover nothing: their expiry is not "expiring".
        ({"expiring_within": "14"}, {"pending_alice", "approved_soon"}),
        ({"expiring_within": "5"}, {"pending_alice"}),
        ({"mine": "on"}, {"pending_alice", "approved_soon", "rejected_soon"}),
    ],
)
def test_it_filters_exceptions(client, alice, exception_mix, params, expected):
    response = signed_in(client, alice).get(EXCEPTIONS, params)
    assert {e.pk for e in response.context["table"].data} == {
        exception_mix[name].pk for name in expected
    }


def test_it_filters_exceptions_by_account(client, viewer, exception_mix):
    account = exception_mix["pending_alice"].account
    response = signed_in(client, viewer).get(EXCEPTIONS, {"account": account.account_id})
    assert {e.pk for e in response.context["table"].data} == {
        exception_mix["pending_alice"].pk,
        exception_mix["approved_soon"].pk,
    }


def test_it_keeps_the_exceptions_query_count_flat(client, alice, manager, boss):
    """Rows of every kind (key and user targets, decided with a comment) for an approver who
    sees decision forms: the query count stays the same from 2 to 20 rows."""
    from inventory.services.exceptions import decide_exception

    def make(n):
        for i in range(n):
            exc = (
                ask(alice if i % 2 else manager, key=alice_key())
                if i % 3
                else ask(manager, iam_user=IamUserFactory())
            )
            if i % 4 == 1:
                decide_exception(exc.pk, approver=boss, approve=True, comment="fine")

    signed_in(client, manager)
    make(2)
    few = query_count(client, EXCEPTIONS)
    make(18)
    assert query_count(client, EXCEPTIONS) == few
    assert few <= 10


def test_it_exports_exceptions_as_csv(client, viewer, exception_mix):
    response = signed_in(client, viewer).get(EXCEPTIONS, {"status": "approved", "_export": "csv"})
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert len(rows) == 2
    assert rows[1][0] == exception_mix["approved_soon"].key.access_key_id
    assert rows[1][3] == "approved"
    assert "Decision" not in rows[0]


# --- exceptions: deciding ----------------------------------------------------------------------


def test_it_approves_an_exception_and_comes_back_to_the_filtered_list(client, alice, manager):
    """GIVEN alice's pending exception WHEN the manager approves it with a comment from the
    filtered list THEN it is approved by the manager, the approval is audited, the browser
    goes back to the same filtered list and a message confirms it."""
    exc = ask(alice, key=alice_key(access_key_id="AKIAAPPROVEME0000001"))
    signed_in(client, manager)

    response = client.post(
        decide_url(exc),
        {"decision": "approve", "comment": " known vendor ", "next": "/exceptions/?status=pending"},
    )

    assert response.status_code == 302
    assert response["Location"] == "/exceptions/?status=pending"
    exc.refresh_from_db()
    assert (exc.status, exc.decided_by, exc.decision_comment) == (
        ExceptionStatus.APPROVED,
        manager,
        "known vendor",
    )
    event = AuditEvent.objects.get(action="exception.approve")
    assert (event.actor, event.object_id) == (manager, str(exc.pk))
    html = page(client.get(response["Location"]))
    assert "Approved the exception for key AKIAAPPROVEME0000001." in html


def test_it_rejects_an_exception(client, alice, manager):
    exc = ask(alice, key=alice_key(access_key_id="AKIAREJECTME00000001"))
    response = signed_in(client, manager).post(
        decide_url(exc), {"decision": "reject", "comment": "rotate it"}, follow=True
    )
    exc.refresh_from_db()
    assert (exc.status, exc.decision_comment) == (ExceptionStatus.REJECTED, "rotate it")
    assert AuditEvent.objects.filter(action="exception.reject", actor=manager).exists()
    assert response.redirect_chain == [(EXCEPTIONS, 302)]
    assert "Rejected the exception for key AKIAREJECTME00000001." in page(response)


def test_it_refuses_self_approval_with_a_clear_message(client, manager):
    """GIVEN an exception the manager requested WHEN the manager tries to approve it (forging
    the form) THEN nothing changes and the page says another approver must decide it."""
    exc = ask(manager, key=alice_key())
    response = signed_in(client, manager).post(
        decide_url(exc), {"decision": "approve"}, follow=True
    )
    assert "You requested this exception: another approver must decide it." in page(response)
    exc.refresh_from_db()
    assert (exc.status, exc.decided_by) == (ExceptionStatus.PENDING, None)
    assert not AuditEvent.objects.filter(action="exception.approve").exists()


def test_it_tells_the_second_approver_that_the_request_was_already_decided(
    client, alice, manager, boss
):
    """GIVEN two approvers looking at the same pending request WHEN both approve it THEN the
    first wins and the second is told who decided it already; only one approval is audited."""
    exc = ask(alice, key=alice_key())
    signed_in(client, manager).post(decide_url(exc), {"decision": "approve"})

    response = signed_in(client, boss).post(decide_url(exc), {"decision": "reject"}, follow=True)

    html = page(response)
    assert "This exception was already decided: approved by manager" in html
    exc.refresh_from_db()
    assert (exc.status, exc.decided_by) == (ExceptionStatus.APPROVED, manager)
    assert AuditEvent.objects.filter(action__startswith="exception.a").count() == 1
    assert not AuditEvent.objects.filter(action="exception.reject").exists()


def test_it_refuses_to_approve_an_expired_request(client, alice, manager):
    exc = ask(alice, key=alice_key())
    PolicyException.objects.filter(pk=exc.pk).update(expires_at=timezone.now() - timedelta(hours=1))
    response = signed_in(client, manager).post(
        decide_url(exc), {"decision": "approve"}, follow=True
    )
    assert "This exception has already expired; request a new one." in page(response)
    assert PolicyException.objects.get(pk=exc.pk).status == ExceptionStatus.PENDING


@pytest.mark.parametrize("role", ["viewer", "owner"])
def test_it_refuses_a_decision_below_the_approver_role(client, alice, role):
    exc = ask(alice, key=alice_key())
    response = signed_in(client, person("someone", role)).post(
        decide_url(exc), {"decision": "approve"}
    )
    assert response.status_code == 403
    assert PolicyException.objects.get(pk=exc.pk).status == ExceptionStatus.PENDING


def test_it_answers_405_to_a_get_on_decide(client, alice, manager):
    exc = ask(alice, key=alice_key())
    response = signed_in(client, manager).get(decide_url(exc))
    assert response.status_code == 405
    assert PolicyException.objects.get(pk=exc.pk).status == ExceptionStatus.PENDING


def test_it_answers_404_for_an_unknown_exception(client, alice, manager):
    response = signed_in(client, manager).post(
        reverse("inventory:exception_decide", args=[999999]), {"decision": "approve"}
    )
    assert response.status_code == 404
    response = client.post(reverse("inventory:exception_cancel", args=[999999]))
    assert response.status_code == 404


def test_it_needs_a_decision(client, alice, manager):
    exc = ask(alice, key=alice_key())
    response = signed_in(client, manager).post(decide_url(exc), {"decision": "maybe"}, follow=True)
    assert "Choose Approve or Reject." in page(response)
    assert PolicyException.objects.get(pk=exc.pk).status == ExceptionStatus.PENDING


@pytest.mark.parametrize(
    "next_url", ["https://evil.example.com/", "//evil.example.com/exceptions/", ""]
)
def test_it_never_redirects_off_site_after_a_decision(client, alice, manager, next_url):
    exc = ask(alice, key=alice_key())
    response = signed_in(client, manager).post(
        decide_url(exc), {"decision": "reject", "next": next_url}
    )
    assert response.status_code == 302
    assert response["Location"] == EXCEPTIONS


# --- exceptions: cancelling --------------------------------------------------------------------


def test_it_lets_the_requester_cancel_their_pending_request(client, alice):
    exc = ask(alice, key=alice_key(access_key_id="AKIACANCELME00000001"))
    response = signed_in(client, alice).post(
        cancel_url(exc), {"next": "/exceptions/?mine=on"}, follow=True
    )
    assert response.redirect_chain == [("/exceptions/?mine=on", 302)]
    assert "Cancelled your request for the exception for key AKIACANCELME00000001." in page(
        response
    )
    assert PolicyException.objects.get(pk=exc.pk).status == ExceptionStatus.CANCELLED
    assert AuditEvent.objects.filter(action="exception.cancel", actor=alice).exists()


def test_it_refuses_to_cancel_someone_elses_request(client, alice, manager):
    exc = ask(alice, key=alice_key())
    response = signed_in(client, manager).post(cancel_url(exc), follow=True)
    assert "Only the requester can cancel a request." in page(response)
    assert PolicyException.objects.get(pk=exc.pk).status == ExceptionStatus.PENDING
    assert not AuditEvent.objects.filter(action="exception.cancel").exists()


def test_it_refuses_cancel_to_a_viewer_and_a_get(client, alice):
    exc = ask(alice, key=alice_key())
    assert signed_in(client, person("v", "viewer")).post(cancel_url(exc)).status_code == 403
    assert signed_in(client, alice).get(cancel_url(exc)).status_code == 405
    assert PolicyException.objects.get(pk=exc.pk).status == ExceptionStatus.PENDING


def test_it_says_a_decided_request_can_no_longer_be_cancelled(client, alice, manager):
    exc = ask(alice, key=alice_key())
    signed_in(client, manager).post(decide_url(exc), {"decision": "reject"})
    response = signed_in(client, alice).post(cancel_url(exc), follow=True)
    assert "already decided: rejected by manager" in page(response)
    assert PolicyException.objects.get(pk=exc.pk).status == ExceptionStatus.REJECTED


# --- audit log ---------------------------------------------------------------------------------


def event(action, obj, *, actor=None, before=None, after=None, account_id="", at=None):
    return record(
        action, obj, actor=actor, before=before, after=after, account_id=account_id, at=at
    )


def test_it_renders_only_the_changed_fields_of_an_audit_row():
    before = {"status": "pending", "reason": "x", "decided_at": None, "decision_comment": ""}
    after = {
        "status": "approved",
        "reason": "x",
        "decided_at": "2026-12-04T06:00:00+00:00",
        "decision_comment": "",
    }
    assert changes(before, after) == [
        ("status", "pending", "approved", False),
        ("decided_at", None, "2026-12-04T06:00:00+00:00", False),
    ]
    # A creation lists what was set, skipping empty values.
    assert changes(None, {"status": "pending", "key": 7, "iam_user": None}) == [
        ("status", None, "pending", True),
        ("key", None, 7, True),
    ]
    assert changes({"closed_at": None}, {"closed_at": None}) == []


def test_it_lists_audit_events_newest_first_with_readable_changes(
    client, viewer, alice, manager, now
):
    """GIVEN a finding opened by the system, alice's request and its approval by the manager
    WHEN a viewer opens /audit/ THEN the newest comes first; each row shows when, who, the
    action, the object linked to its key, the account, and only the fields that changed."""
    key = alice_key(access_key_id="AKIAAUDITED000000001")
    f = finding(key, now)
    event(
        "finding.open",
        f,
        after={"key": key.pk, "kind": "overdue", "opened_at": "2026-11-24T06:00:00+00:00"},
        account_id=key.account.account_id,
        at=now - timedelta(days=10),
    )
    exc = ask(alice, key=key)
    from inventory.services.exceptions import decide_exception

    decide_exception(exc.pk, approver=manager, approve=True, comment="ok for now")

    html = page(signed_in(client, viewer).get(AUDIT))

    assert (
        html.find("exception.approve") < html.find("exception.request") < html.find("finding.open")
    )
    arrow = '<span aria-label="changed to">→</span>'
    assert f"status:</span> pending {arrow} approved</li>" in html
    assert f"decided by:</span> — {arrow} manager</li>" in html  # the person, not their id
    assert f"decision comment:</span> — {arrow} ok for now</li>" in html
    assert "reason:</span> vendor appliance cannot rotate</li>" in html  # a creation: what was set
    assert "key:</span> AKIAAUDITED000000001</li>" in html  # the key, not its pk
    assert "opened at:</span> 2026-11-24 06:00 UTC</li>" in html
    # Unchanged fields are left out of the approval's change.
    approval = html[html.find("exception.approve") : html.find("exception.request")]
    assert "reason:" not in approval and "expires at:" not in approval
    assert f'href="{reverse("inventory:accesskey_detail", args=["AKIAAUDITED000000001"])}"' in html
    assert f"exception #{exc.pk}" in html and f"finding #{f.pk}" in html
    assert '<span class="text-body-secondary">system</span>' in html
    assert key.account.account_id in html


def test_it_lists_the_distinct_actions_as_the_action_filters_choices(client, viewer, alice):
    key = alice_key()
    for action in ("migration.mark", "exception.request", "migration.mark", "policy.update"):
        event(action, key, actor=alice)
    response = signed_in(client, viewer).get(AUDIT)
    choices = [value for value, _ in response.context["filter"].form.fields["action"].choices]
    assert choices == ["", "exception.request", "migration.mark", "policy.update"]


@pytest.fixture
def audit_mix(alice, manager, now):
    acct = AccountFactory(account_id="222233334444")
    key = alice_key(acct, access_key_id="AKIATRAIL00000000001")
    f = finding(key, now)
    exc = ask(alice, key=alice_key())  # writes exception.request by alice, in its own account
    return {
        "trail_finding": event(
            "finding.open", f, account_id=acct.account_id, at=now - timedelta(days=40)
        ),
        "trail_key": event("key.touch", key, actor=manager, account_id=acct.account_id, at=now),
        "request": AuditEvent.objects.get(action="exception.request", object_id=str(exc.pk)),
        "other": event("policy.update", acct, actor=manager, at=now - timedelta(days=3)),
    }


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"action": "finding.open"}, {"trail_finding"}),
        ({"actor": "manager"}, {"trail_key", "other"}),
        ({"actor": "alice"}, {"request"}),
        ({"actor": "system"}, {"trail_finding"}),
        ({"account_id": "222233334444"}, {"trail_finding", "trail_key"}),
        ({"object": "AKIATRAIL00000000001"}, {"trail_finding", "trail_key"}),
    ],
)
def test_it_filters_the_audit_log(client, viewer, audit_mix, params, expected):
    response = signed_in(client, viewer).get(AUDIT, params)
    assert {e.pk for e in response.context["table"].data} == {
        audit_mix[name].pk for name in expected
    }


def test_it_filters_the_audit_log_by_object_id(client, viewer, audit_mix):
    target = audit_mix["request"]
    response = signed_in(client, viewer).get(AUDIT, {"object": target.object_id})
    shown = {e.pk for e in response.context["table"].data}
    assert target.pk in shown
    assert all(AuditEvent.objects.get(pk=pk).object_id == target.object_id for pk in shown)


def test_it_filters_the_audit_log_by_day(client, viewer, audit_mix, now):
    day = (now - timedelta(days=3)).date().isoformat()
    response = signed_in(client, viewer).get(AUDIT, {"at_from": day, "at_to": day})
    assert {e.pk for e in response.context["table"].data} == {audit_mix["other"].pk}
    since = (now - timedelta(days=3)).date().isoformat()
    response = client.get(AUDIT, {"at_from": since})
    assert audit_mix["trail_finding"].pk not in {e.pk for e in response.context["table"].data}


def test_it_keeps_the_audit_query_count_flat(client, viewer, alice, manager, now):
    """Rows of each kind of object (findings, exceptions, keys) and people in the changes:
    from 2 rows a kind to 20, the page makes the same number of queries."""
    from inventory.services.exceptions import decide_exception

    def make(n):
        for _ in range(n):
            key = alice_key()
            event("finding.open", finding(key, now), after={"key": key.pk})
            exc = ask(alice, key=key)
            decide_exception(exc.pk, approver=manager, approve=False)
            event("key.touch", key, actor=manager)

    signed_in(client, viewer)
    make(1)
    few = query_count(client, AUDIT)
    make(9)
    assert AuditEvent.objects.count() >= 40
    assert query_count(client, AUDIT) == few
    assert few <= 11


def test_it_paginates_the_audit_log_newest_first(client, viewer, alice, now):
    key = alice_key()
    for i in range(60):
        event("key.touch", key, actor=alice, at=now - timedelta(minutes=i), after={"n": i})
    response = signed_in(client, viewer).get(AUDIT)
    table = response.context["table"]
    assert table.paginator.count == 60
    assert [e.after["n"] for e in table.page.object_list.data][:3] == [0, 1, 2]
    second = client.get(AUDIT, {"page": 2}).context["table"]
    assert [e.after["n"] for e in second.page.object_list.data] == list(range(50, 60))


def test_it_counts_a_huge_audit_log_only_up_to_a_cap(client, viewer, alice, now, monkeypatch):
    """GIVEN more audit rows than the count's cap WHEN a viewer opens the log THEN it says
    "more than" the cap, pages stop at the cap, and the newest rows come first."""
    monkeypatch.setattr(CappedCountPaginator, "cap", 4)
    key = alice_key()
    for i in range(7):
        event("key.touch", key, actor=alice, at=now - timedelta(minutes=i), after={"n": i})
    monkeypatch.setattr(
        AuditListView, "table_pagination", {**AuditListView.table_pagination, "per_page": 2}
    )

    response = signed_in(client, viewer).get(AUDIT)

    assert "More than 4 rows: the newest are shown. Narrow the dates" in page(response)
    table = response.context["table"]
    assert table.paginator.num_pages == 2
    assert [e.after["n"] for e in table.page.object_list.data] == [0, 1]
    beyond = client.get(AUDIT, {"page": 3}).context["table"]  # served as the last page
    assert [e.after["n"] for e in beyond.page.object_list.data] == [2, 3]
    # Under the cap the count is exact.
    event("policy.update", key, actor=alice)
    filtered = client.get(AUDIT, {"action": "policy.update"})
    assert "More than" not in page(filtered)
    assert "1 row match the filters" in page(filtered)
