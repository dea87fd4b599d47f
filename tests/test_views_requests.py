"""The key-request pages: the list with its filters, the form, a request's page, and every
action through the pages as each role — including every refused transition."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from inventory import tasks
from inventory.models import AuditEvent, KeyRequest, KeyRequestStatus
from inventory.services import key_requests
from tests.gov_factories import AccessKeyFactory, AccountFactory, IamUserFactory, person

pytestmark = pytest.mark.django_db

LIST = reverse("inventory:keyrequest_list")
NEW = reverse("inventory:keyrequest_create")


def url(name: str, req) -> str:
    return reverse(f"inventory:keyrequest_{name}", args=[req.pk if hasattr(req, "pk") else req])


def messages_of(response) -> list[str]:
    """The messages this response added (earlier, unread ones are left out)."""
    return [str(m) for m in get_messages(response.wsgi_request)][-1:]


@pytest.fixture
def people():
    return {
        "viewer": person("vera", "viewer", "vera@example.com"),
        "owner": person("olive", "owner", "olive@example.com"),
        "owner2": person("otto", "owner", "otto@example.com"),
        "approver": person("abe", "approver", "abe@example.com"),
        "approver2": person("ada", "approver", "ada@example.com"),
        "admin": person("root", "admin", "root@example.com"),
        "nobody": person("nemo", None, "nemo@example.com"),
    }


@pytest.fixture
def iam_user():
    account = AccountFactory(account_id="444444444444", name="analytics")
    return IamUserFactory(account=account, name="etl-runner", owner="olive@example.com")


def as_(client, user):
    client.force_login(user)
    return client


def form_data(iam_user, **overrides):
    return {
        "account": iam_user.account.account_id,
        "user_name": iam_user.name,
        "justification": "Legacy ETL tool on a partner's server",
        "why_not_role": "It runs outside AWS and only supports static keys",
        "owner_email": "olive@example.com",
        "review_on": (timezone.now() + timedelta(days=30)).date().isoformat(),
        **overrides,
    }


def file_as(user, iam_user) -> KeyRequest:
    return key_requests.file_request(
        requested_by=user,
        account=iam_user.account,
        iam_user=iam_user,
        justification="Legacy ETL tool on a partner's server",
        why_not_role="It runs outside AWS",
        owner_email=user.email,
        review_on=(timezone.now() + timedelta(days=30)).date(),
    )


# --- access --------------------------------------------------------------------------------


def test_it_sends_anonymous_people_to_the_login(client, iam_user):
    for path in (LIST, NEW):
        response = client.get(path)
        assert response.status_code == 302 and response["Location"].startswith("/login/")


@pytest.mark.parametrize(
    ("role", "list_status", "new_status"),
    [("nobody", 403, 403), ("viewer", 200, 403), ("owner", 200, 200), ("approver", 200, 200)],
)
def test_it_lets_each_role_see_what_it_may(client, people, iam_user, role, list_status, new_status):
    as_(client, people[role])
    assert client.get(LIST).status_code == list_status
    assert client.get(NEW).status_code == new_status
    req = file_as(people["owner"], iam_user)
    assert client.get(url("detail", req)).status_code == (403 if role == "nobody" else 200)


def test_it_answers_404_for_a_request_that_does_not_exist(client, people):
    as_(client, people["admin"])
    assert client.get(url("detail", 999)).status_code == 404
    for action in ("decide", "cancel", "comment", "retry"):
        assert client.post(url(action, 999), {"decision": "approve"}).status_code == 404


def test_it_refuses_actions_to_the_roles_below_them(client, people, iam_user):
    """Viewers may not file, comment or cancel; owners may not decide or retry: 403, and
    nothing changes."""
    req = file_as(people["owner"], iam_user)
    as_(client, people["viewer"])
    assert client.post(NEW, form_data(iam_user)).status_code == 403
    assert client.post(url("comment", req), {"body": "hi"}).status_code == 403
    assert client.post(url("cancel", req)).status_code == 403
    as_(client, people["owner2"])
    assert (
        client.post(url("decide", req), {"decision": "approve", "comment": "x"}).status_code == 403
    )
    assert client.post(url("retry", req)).status_code == 403
    req.refresh_from_db()
    assert req.status == KeyRequestStatus.PENDING and not req.comments.exists()


def test_it_takes_actions_only_by_post_with_a_csrf_token(people, iam_user):
    req = file_as(people["owner"], iam_user)
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(people["approver"])
    assert strict.get(url("decide", req)).status_code == 405
    assert (
        strict.post(url("decide", req), {"decision": "approve", "comment": "ok"}).status_code == 403
    )
    req.refresh_from_db()
    assert req.status == KeyRequestStatus.PENDING


# --- the form ------------------------------------------------------------------------------


def test_it_prefills_the_form_from_the_query(client, people, iam_user):
    as_(client, people["owner"])
    response = client.get(NEW, {"account": "444444444444", "user": "etl-runner"})
    html = response.content.decode()
    assert response.status_code == 200
    assert '<option value="444444444444" selected>' in html
    assert 'value="etl-runner"' in html
    assert 'value="olive@example.com"' in html  # the owner defaults to the requester
    assert "at most 90 days" in html  # the chosen account's limit


def test_it_files_a_request_and_shows_it(client, people, iam_user):
    as_(client, people["owner"])
    response = client.post(NEW, form_data(iam_user))

    req = KeyRequest.objects.get()
    assert response.status_code == 302 and response["Location"] == url("detail", req)
    assert (req.iam_user, req.requested_by, req.status) == (
        iam_user,
        people["owner"],
        KeyRequestStatus.PENDING,
    )
    page = client.get(url("detail", req)).content.decode()
    assert "Legacy ETL tool on a partner&#x27;s server" in page
    assert "Requested" in page  # the history
    assert "Cancel my request" in page


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"justification": ""}, "This field is required."),
        ({"user_name": "nobody-here"}, "keygov knows no IAM user"),
        ({"account": "999999999999"}, "Select a valid choice"),
        (
            {"review_on": (timezone.now() + timedelta(days=200)).date().isoformat()},
            "at most 90 days",
        ),
        ({"owner_email": "olive"}, "Enter a valid email address."),
    ],
)
def test_it_never_half_saves_a_bad_form(client, people, iam_user, overrides, error):
    as_(client, people["owner"])
    response = client.post(NEW, form_data(iam_user, **overrides))

    assert response.status_code == 200
    assert error in response.content.decode()
    assert not KeyRequest.objects.exists()
    assert not AuditEvent.objects.exists()


# --- the life-cycle through the pages --------------------------------------------------------


def test_it_walks_a_request_from_filing_to_approval_refusing_every_wrong_step(
    client, people, iam_user
):
    """GIVEN an approver files a request for a read-only account
    WHEN they try to approve it themselves, another approver approves it without then with a
    comment, a third tries again, and the requester tries to cancel the approved request
    THEN only the second approver's decision (with a comment) counts; each refusal says why."""
    as_(client, people["approver"])
    client.post(NEW, form_data(iam_user, owner_email="abe@example.com"))
    req = KeyRequest.objects.get()

    page = client.get(url("detail", req)).content.decode()
    assert "You filed this request: another approver must decide it." in page
    assert 'name="decision"' not in page
    response = client.post(url("decide", req), {"decision": "approve", "comment": "me"})
    assert response.status_code == 302
    assert messages_of(response) == ["You filed this request: another approver must decide it."]

    as_(client, people["approver2"])
    assert 'name="decision"' in client.get(url("detail", req)).content.decode()
    response = client.post(url("decide", req), {"decision": "approve", "comment": ""})
    assert "say why" in messages_of(response)[0]
    req.refresh_from_db()
    assert req.status == KeyRequestStatus.PENDING

    response = client.post(url("decide", req), {"decision": "approve", "comment": "30 days ok"})
    assert "Approved #" in messages_of(response)[0]
    assert "next snapshot links the key" in messages_of(response)[0]
    req.refresh_from_db()
    assert (req.status, req.decided_by) == (KeyRequestStatus.APPROVED, people["approver2"])

    as_(client, people["admin"])
    response = client.post(url("decide", req), {"decision": "reject", "comment": "no"})
    assert messages_of(response) == [
        "This request was already decided: approved by ada at "
        f"{req.decided_at:%Y-%m-%d %H:%M} UTC. Nothing changed."
    ]

    as_(client, people["approver"])
    response = client.post(url("cancel", req))
    assert "only a pending request can be cancelled" in messages_of(response)[0]
    page = client.get(url("detail", req)).content.decode()
    assert "create the key for <strong>etl-runner</strong> in AWS" in page
    history = page[page.index(">History<") :]
    assert history.index(">Requested<") < history.index(">Approved<")
    req.refresh_from_db()
    assert req.status == KeyRequestStatus.APPROVED
    assert [a for a in AuditEvent.objects.order_by("id").values_list("action", flat=True)] == [
        "keyrequest.request",
        "keyrequest.approve",
    ]


def test_it_lets_an_approver_reject_with_a_comment(client, people, iam_user):
    req = file_as(people["owner"], iam_user)
    as_(client, people["approver"])
    client.post(url("decide", req), {"decision": "reject", "comment": "Use IAM Roles Anywhere"})

    req.refresh_from_db()
    assert req.status == KeyRequestStatus.REJECTED
    page = client.get(url("detail", req)).content.decode()
    assert "Use IAM Roles Anywhere" in page and "Rejected" in page


def test_it_lets_only_the_requester_cancel(client, people, iam_user):
    req = file_as(people["owner"], iam_user)
    as_(client, people["owner2"])
    assert "Cancel my request" not in client.get(url("detail", req)).content.decode()
    response = client.post(url("cancel", req))
    assert messages_of(response) == ["Only the requester can cancel a request."]

    as_(client, people["owner"])
    response = client.post(url("cancel", req))
    assert messages_of(response) == [f"Cancelled your request #{req.pk}."]
    req.refresh_from_db()
    assert req.status == KeyRequestStatus.CANCELLED
    as_(client, people["approver"])
    response = client.post(url("decide", req), {"decision": "approve", "comment": "late"})
    assert "no longer pending" in messages_of(response)[0]


def test_it_threads_comments(client, people, iam_user):
    req = file_as(people["owner"], iam_user)
    as_(client, people["approver"])
    client.post(url("comment", req), {"body": "Which partner is it?"})
    as_(client, people["owner"])
    client.post(url("comment", req), {"body": "Acme <b>Corp</b>"})
    response = client.post(url("comment", req), {"body": ""})
    assert "Write a comment first" in messages_of(response)[0]

    as_(client, people["viewer"])
    page = client.get(url("detail", req)).content.decode()
    assert page.index("Which partner is it?") < page.index("Acme &lt;b&gt;Corp&lt;/b&gt;")
    assert 'name="body"' not in page  # viewers read, they do not write
    assert req.comments.count() == 2


def test_it_queues_the_fulfilment_when_approved_for_an_account_with_a_write_role(
    client, people, iam_user, monkeypatch, django_capture_on_commit_callbacks
):
    iam_user.account.write_role_arn = "arn:aws:iam::444444444444:role/KeygovWrite"
    iam_user.account.save()
    queued = []
    monkeypatch.setattr(tasks.fulfil_key_request, "delay", queued.append)
    req = file_as(people["owner"], iam_user)
    as_(client, people["approver"])

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url("decide", req), {"decision": "approve", "comment": "ok"})

    assert queued == [req.pk]
    assert "keygov now creates the key" in messages_of(response)[0]
    page = client.get(url("detail", req)).content.decode()
    assert "Run the fulfilment again" in page
    with django_capture_on_commit_callbacks(execute=True):
        client.post(url("retry", req))
    assert queued == [req.pk, req.pk]


def test_it_shows_a_failed_fulfilment_with_its_error(client, people, iam_user):
    req = file_as(people["owner"], iam_user)
    key_requests.decide_request(req.pk, approver=people["approver"], approve=True, comment="ok")
    KeyRequest.objects.filter(pk=req.pk).update(
        status=KeyRequestStatus.FAILED, error="CreateAccessKey failed: LimitExceeded: 2 keys"
    )
    as_(client, people["viewer"])
    page = client.get(url("detail", req)).content.decode()
    assert "CreateAccessKey failed: LimitExceeded: 2 keys" in page
    assert "Failed" in page


# --- the list ------------------------------------------------------------------------------


def many_requests(n: int, people) -> list[KeyRequest]:
    account = AccountFactory()
    reqs = []
    for i in range(n):
        user = IamUserFactory(account=account, name=f"svc-{i}")
        reqs.append(file_as(people["owner"] if i % 2 else people["owner2"], user))
    return reqs


def test_it_lists_requests_pending_first_with_filters(client, people, iam_user):
    mine = file_as(people["owner"], iam_user)
    others = many_requests(3, people)
    key_requests.decide_request(
        others[0].pk, approver=people["approver"], approve=False, comment="no"
    )
    own_pending = file_as(people["approver"], IamUserFactory(account=iam_user.account))
    as_(client, people["approver"])

    def ids(**query) -> list[int]:
        response = client.get(LIST, query)
        assert response.status_code == 200
        return [r.pk for r in response.context["table"].page.object_list.data]

    everything = ids()
    assert len(everything) == 5 and everything[-1] == others[0].pk  # decided last
    assert ids(status="rejected") == [others[0].pk]
    assert ids(account="444444444444") == sorted([mine.pk, own_pending.pk], key=everything.index)
    assert ids(mine="true") == [own_pending.pk]
    pending_for_me = ids(pending_for_me="true")
    assert own_pending.pk not in pending_for_me and len(pending_for_me) == 3
    as_(client, people["owner"])
    assert set(ids(mine="true")) == {mine.pk, others[1].pk}
    assert ids(pending_for_me="true") == []  # owners decide nothing


def test_it_shows_the_request_link_and_the_nav_entry(client, people, iam_user):
    as_(client, people["viewer"])
    html = client.get(LIST).content.decode()
    assert f'href="{LIST}"' in html and ">Requests<" in html
    assert "Request a key" not in html  # viewers file nothing
    assert "No key request matches" in html
    as_(client, people["owner"])
    assert "Request a key" in client.get(LIST).content.decode()


def test_it_exports_the_filtered_requests_as_csv(client, people, iam_user):
    file_as(people["owner"], iam_user)
    as_(client, people["viewer"])
    response = client.get(LIST, {"_export": "csv"})
    body = b"".join(response.streaming_content if response.streaming else [response.content])
    assert response.status_code == 200
    assert b"etl-runner" in body


def count_queries(client, path) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(path).status_code == 200
    return len(ctx.captured_queries)


def test_the_list_query_count_does_not_grow_with_rows(client, people):
    as_(client, people["viewer"])
    many_requests(2, people)
    few = count_queries(client, LIST)
    many_requests(20, people)
    assert count_queries(client, LIST) == few
    assert few <= 15


def test_the_request_page_query_count_does_not_grow_with_comments(client, people, iam_user):
    req = file_as(people["owner"], iam_user)
    as_(client, people["approver"])
    for i in range(2):
        key_requests.add_comment(req.pk, author=people["owner"], body=f"c{i}")
    few = count_queries(client, url("detail", req))
    for i in range(20):
        key_requests.add_comment(req.pk, author=people["approver2"], body=f"d{i}")
        key_requests.add_comment(req.pk, author=people["owner2"], body=f"e{i}")
    assert count_queries(client, url("detail", req)) == few
    assert few <= 15


def test_it_warns_when_the_user_already_holds_two_keys(client, people, iam_user):
    req = file_as(people["owner"], iam_user)
    as_(client, people["viewer"])
    AccessKeyFactory(user=iam_user)
    assert "the most AWS" not in client.get(url("detail", req)).content.decode()

    AccessKeyFactory(user=iam_user)

    page = client.get(url("detail", req)).content.decode()
    assert "already holds 2 access keys, the most AWS" in " ".join(page.split())
