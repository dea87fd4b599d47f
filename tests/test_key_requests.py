"""Key requests (services/key_requests.py): filing, the decision rules (never one's own — in the
service, the database and under concurrency), cancelling, comments, audit and mail, and what a
snapshot does: link a read-only account's approved request, flag keys nobody approved."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from inventory.models import AccessKey, AuditEvent, KeyRequest, KeyRequestStatus, RotationPolicy
from inventory.services import key_requests
from inventory.services.errors import GovernanceError, NotAllowed
from tests.gov_factories import (
    NOW,
    AccountFactory,
    IamUserFactory,
    ago,
    key_record,
    person,
    take_snapshot,
    user_record,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def people():
    return {
        "viewer": person("vera", "viewer", "vera@example.com"),
        "owner": person("olive", "owner", "olive@example.com"),
        "approver": person("abe", "approver", "abe@example.com"),
        "approver2": person("ada", "approver", "ada@example.com"),
        "admin": person("root", "admin", "root@example.com"),
    }


@pytest.fixture
def account():
    return AccountFactory(account_id="333333333333", name="payments")


@pytest.fixture
def iam_user(account):
    return IamUserFactory(account=account, name="batch-export", owner="olive@example.com")


def file(requested_by, iam_user, now=None, **overrides):
    now = now or timezone.now()
    fields = {
        "requested_by": requested_by,
        "account": iam_user.account,
        "iam_user": iam_user,
        "justification": "Nightly export to a partner's SFTP gateway",
        "why_not_role": "The partner's on-premises host cannot assume AWS roles",
        "owner_email": requested_by.email,
        "review_on": (now + timedelta(days=60)).date(),
        "now": now,
        **overrides,
    }
    return key_requests.file_request(**fields)


def audit_actions(req) -> list[str]:
    return list(
        AuditEvent.objects.filter(object_type="keyrequest", object_id=str(req.pk))
        .order_by("at", "id")
        .values_list("action", flat=True)
    )


# --- filing ------------------------------------------------------------------------------------


def test_it_files_a_pending_request_with_an_audit_row(people, iam_user):
    req = file(people["owner"], iam_user)

    assert req.status == KeyRequestStatus.PENDING
    assert req.owner_email == "olive@example.com"
    assert audit_actions(req) == ["keyrequest.request"]
    event = AuditEvent.objects.get(object_type="keyrequest")
    assert event.actor_name == "olive" and event.account_id == "333333333333"


def test_it_refuses_a_viewer(people, iam_user):
    with pytest.raises(NotAllowed):
        file(people["viewer"], iam_user)
    assert not KeyRequest.objects.exists()


def test_it_caps_the_review_date_at_the_accounts_max_age(people, iam_user, account):
    """GIVEN the account's policy allows 30 days
    WHEN an owner asks for 31 days, then 30
    THEN 31 is refused with the date, 30 is accepted."""
    RotationPolicy.objects.create(account=account, max_age_days=30, warn_days=7)

    with pytest.raises(GovernanceError, match="on or before 2026-06-14"):
        file(people["owner"], iam_user, now=NOW, review_on=(NOW + timedelta(days=31)).date())
    req = file(people["owner"], iam_user, now=NOW, review_on=(NOW + timedelta(days=30)).date())

    assert req.review_on == (NOW + timedelta(days=30)).date()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"justification": "  "}, "what the key is for"),
        ({"why_not_role": ""}, "IAM role"),
        ({"owner_email": "not an address"}, "e-mail"),
        ({"now": NOW, "review_on": NOW.date()}, "future"),
    ],
)
def test_it_refuses_an_incomplete_request(people, iam_user, overrides, message):
    with pytest.raises(GovernanceError, match=message):
        file(people["owner"], iam_user, **overrides)
    assert not KeyRequest.objects.exists()
    assert not AuditEvent.objects.exists()


def test_it_refuses_a_user_of_another_account_a_deleted_user_and_root(people, iam_user):
    other = IamUserFactory(name="elsewhere")
    with pytest.raises(GovernanceError, match="is not in account"):
        file(people["owner"], other, account=iam_user.account)
    gone = IamUserFactory(account=iam_user.account, name="gone", deleted=True)
    with pytest.raises(GovernanceError, match="no longer exists"):
        file(people["owner"], gone)
    root = IamUserFactory(account=iam_user.account, name="<root_account>", is_root=True)
    with pytest.raises(GovernanceError, match="root"):
        file(people["owner"], root)


def test_it_refuses_a_second_open_request_for_the_same_user(people, iam_user):
    first = file(people["owner"], iam_user)
    with pytest.raises(GovernanceError, match=f"Request #{first.pk} .* still pending"):
        file(people["approver"], iam_user)

    key_requests.cancel_request(first.pk, by=people["owner"])
    assert file(people["approver"], iam_user).status == KeyRequestStatus.PENDING


# --- deciding ----------------------------------------------------------------------------------


def test_it_approves_with_a_comment_and_audits_it(people, iam_user):
    req = file(people["owner"], iam_user)

    key_requests.decide_request(
        req.pk, approver=people["approver"], approve=True, comment="fine for 60 days"
    )

    req.refresh_from_db()
    assert (req.status, req.decided_by, req.decision_comment) == (
        KeyRequestStatus.APPROVED,
        people["approver"],
        "fine for 60 days",
    )
    assert audit_actions(req) == ["keyrequest.request", "keyrequest.approve"]
    approve = AuditEvent.objects.get(action="keyrequest.approve")
    assert approve.before["status"] == "pending" and approve.after["status"] == "approved"


def test_it_needs_a_comment_to_decide(people, iam_user):
    req = file(people["owner"], iam_user)
    with pytest.raises(GovernanceError, match="comment"):
        key_requests.decide_request(req.pk, approver=people["approver"], approve=False, comment="")
    req.refresh_from_db()
    assert req.status == KeyRequestStatus.PENDING


def test_it_refuses_an_owner_deciding(people, iam_user):
    req = file(people["approver"], iam_user)
    with pytest.raises(NotAllowed, match="Only approvers"):
        key_requests.decide_request(req.pk, approver=people["owner"], approve=True, comment="x")


@pytest.mark.parametrize("role", ["approver", "admin"])
def test_it_refuses_self_approval_in_the_service(people, iam_user, role):
    """Admins included (PRODUCT.md)."""
    req = file(people[role], iam_user)

    with pytest.raises(NotAllowed, match="You filed this request"):
        key_requests.decide_request(req.pk, approver=people[role], approve=True, comment="me")

    req.refresh_from_db()
    assert req.status == KeyRequestStatus.PENDING and req.decided_by is None
    assert audit_actions(req) == ["keyrequest.request"]


def test_it_refuses_self_approval_in_the_database(people, iam_user):
    """GIVEN a pending request
    WHEN a raw UPDATE makes its requester its decider
    THEN the database's check constraint refuses it."""
    req = file(people["approver"], iam_user)

    with (
        pytest.raises(IntegrityError, match="keyrequest_not_self_decided"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(
            f"UPDATE {KeyRequest._meta.db_table} SET status = 'approved', "  # noqa: S608
            "decided_by_id = requested_by_id, decided_at = now() WHERE id = %s",
            [req.pk],
        )

    req.refresh_from_db()
    assert req.status == KeyRequestStatus.PENDING


def test_it_refuses_a_decision_on_a_decided_request(people, iam_user):
    req = file(people["owner"], iam_user)
    key_requests.decide_request(req.pk, approver=people["approver"], approve=False, comment="no")

    with pytest.raises(GovernanceError, match="no longer pending"):
        key_requests.decide_request(
            req.pk, approver=people["approver2"], approve=True, comment="yes"
        )
    req.refresh_from_db()
    assert (req.status, req.decided_by) == (KeyRequestStatus.REJECTED, people["approver"])


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need Postgres")
def test_it_lets_exactly_one_of_two_concurrent_approvers_win(people, iam_user):
    """GIVEN a pending request, and two approvers who both loaded it as pending
    WHEN both decide at the same moment, on their own database connections
    THEN exactly one decision is stored (and audited); the other is told someone acted first."""
    req = file(people["owner"], iam_user)
    both_loaded = threading.Barrier(2, timeout=10)
    real_load = key_requests._load
    loads = threading.local()

    def load_then_wait(pk):
        obj = real_load(pk)
        if not getattr(loads, "done", False):  # the first load, before the UPDATE
            loads.done = True
            both_loaded.wait()
        return obj

    results: dict[str, object] = {}

    def decide(who: str, approve: bool) -> None:
        try:
            key_requests.decide_request(
                req.pk, approver=people[who], approve=approve, comment=f"{who} says so"
            )
            results[who] = "won"
        except GovernanceError as error:
            results[who] = error
        finally:
            connection.close()

    key_requests._load = load_then_wait
    try:
        threads = [
            threading.Thread(target=decide, args=("approver", True)),
            threading.Thread(target=decide, args=("approver2", False)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
    finally:
        key_requests._load = real_load

    assert sorted(str(r) == "won" for r in results.values()) == [False, True]
    loser = next(r for r in results.values() if r != "won")
    assert "Someone else acted first" in str(loser)
    req.refresh_from_db()
    winner = next(who for who, r in results.items() if r == "won")
    assert req.decided_by == people[winner]
    decisions = AuditEvent.objects.filter(action__in=["keyrequest.approve", "keyrequest.reject"])
    assert decisions.count() == 1


# --- cancelling and comments -------------------------------------------------------------------


def test_it_lets_only_the_requester_cancel_and_only_while_pending(people, iam_user):
    req = file(people["owner"], iam_user)
    with pytest.raises(NotAllowed, match="Only the requester"):
        key_requests.cancel_request(req.pk, by=people["admin"])

    key_requests.cancel_request(req.pk, by=people["owner"])
    req.refresh_from_db()
    assert req.status == KeyRequestStatus.CANCELLED and req.cancelled_at is not None
    with pytest.raises(GovernanceError, match="only a pending request"):
        key_requests.cancel_request(req.pk, by=people["owner"])
    assert audit_actions(req) == ["keyrequest.request", "keyrequest.cancel"]


def test_it_refuses_to_cancel_an_approved_request(people, iam_user):
    req = file(people["owner"], iam_user)
    key_requests.decide_request(req.pk, approver=people["approver"], approve=True, comment="ok")
    with pytest.raises(GovernanceError, match="approved: only a pending request"):
        key_requests.cancel_request(req.pk, by=people["owner"])


def test_it_threads_comments_from_owners_and_up_but_not_viewers(people, iam_user):
    req = file(people["owner"], iam_user)
    key_requests.add_comment(req.pk, author=people["approver"], body="Which partner?", now=NOW)
    key_requests.add_comment(
        req.pk, author=people["owner"], body="Acme", now=NOW + timedelta(minutes=1)
    )
    with pytest.raises(NotAllowed):
        key_requests.add_comment(req.pk, author=people["viewer"], body="hello")
    with pytest.raises(GovernanceError, match="empty"):
        key_requests.add_comment(req.pk, author=people["owner"], body="  ")

    assert list(req.comments.values_list("author__username", "body")) == [
        ("abe", "Which partner?"),
        ("olive", "Acme"),
    ]


# --- mail --------------------------------------------------------------------------------------


def test_it_mails_approvers_when_filed_and_the_requester_when_decided(
    people, iam_user, mailoutbox, django_capture_on_commit_callbacks
):
    """GIVEN an owner files a request
    THEN every approver is mailed (not the requester)
    WHEN an approver rejects it
    THEN the requester is mailed, not the approver who acted."""
    with django_capture_on_commit_callbacks(execute=True):
        req = file(people["owner"], iam_user)
    assert len(mailoutbox) == 1
    assert set(mailoutbox[0].to) >= {"abe@example.com", "ada@example.com"}
    assert "olive@example.com" not in mailoutbox[0].to
    assert f"Key request #{req.pk}" in mailoutbox[0].subject

    with django_capture_on_commit_callbacks(execute=True):
        key_requests.decide_request(
            req.pk, approver=people["approver"], approve=False, comment="use a role"
        )
    assert mailoutbox[1].to == ["olive@example.com"]
    assert "reject" in mailoutbox[1].subject


def test_it_mails_nobody_when_the_transition_is_refused(
    people, iam_user, mailoutbox, django_capture_on_commit_callbacks
):
    req = file(people["approver"], iam_user)
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(NotAllowed):
        key_requests.decide_request(req.pk, approver=people["approver"], approve=True, comment="x")
    assert mailoutbox == []


# --- snapshots: linking and unapproved keys ----------------------------------------------------


@pytest.fixture
def collected(account):
    """An account keygov has looked at once: user ``batch-export`` with one old key."""
    users = [user_record(account, "batch-export", "olive@example.com")]
    take_snapshot(
        account, ago(30), users, [key_record("AKIAOLD0000000000001", "batch-export", ago(200))]
    )
    return users


def test_it_never_flags_keys_that_existed_before_keygov_first_looked(account, collected):
    assert AccessKey.objects.get(access_key_id="AKIAOLD0000000000001").unapproved is False


def test_it_flags_a_new_key_without_an_approved_request(account, collected):
    """GIVEN an account keygov already collected
    WHEN a snapshot finds a key created since, with no request (or only a pending one)
    THEN the key is flagged unapproved, and the flag is audited."""
    from inventory.models import IamUser

    owner = person("olive", "owner", "olive@example.com")
    file(owner, IamUser.objects.get(name="batch-export"), now=ago(5))
    keys = [
        key_record("AKIAOLD0000000000001", "batch-export", ago(200)),
        key_record("AKIANEW0000000000002", "batch-export", ago(2)),
    ]

    take_snapshot(account, ago(1), collected, keys)

    new = AccessKey.objects.get(access_key_id="AKIANEW0000000000002")
    assert new.unapproved is True
    assert AccessKey.objects.get(access_key_id="AKIAOLD0000000000001").unapproved is False
    assert AuditEvent.objects.filter(
        action="accesskey.unapproved", object_id=str(new.pk), account_id=account.account_id
    ).exists()
    assert KeyRequest.objects.get().status == KeyRequestStatus.PENDING


def test_it_links_a_read_only_accounts_approved_request_to_the_new_key(
    account, collected, mailoutbox, django_capture_on_commit_callbacks
):
    """GIVEN an approved request for batch-export in a read-only account
    WHEN the next snapshot finds a key of that user created after the approval
    THEN the request is fulfilled and linked to the key, which is not flagged; it is audited
    by "system" and the requester is mailed."""
    from inventory.models import IamUser

    owner = person("olive", "owner", "olive@example.com")
    approver = person("abe", "approver", "abe@example.com")
    req = file(owner, IamUser.objects.get(name="batch-export"), now=ago(6))
    key_requests.decide_request(req.pk, approver=approver, approve=True, comment="ok", now=ago(5))
    keys = [
        key_record("AKIAOLD0000000000001", "batch-export", ago(200)),
        key_record("AKIANEW0000000000002", "batch-export", ago(4)),
        key_record("AKIANEW0000000000003", "batch-export", ago(3)),
    ]

    with django_capture_on_commit_callbacks(execute=True):
        take_snapshot(account, ago(1), collected, keys)

    req.refresh_from_db()
    assert req.status == KeyRequestStatus.FULFILLED
    assert req.access_key.access_key_id == "AKIANEW0000000000002"
    assert req.created_access_key_id == "AKIANEW0000000000002"
    assert req.fulfilled_at == ago(1)
    # One request, one key: the second new key was not approved.
    flags = dict(
        AccessKey.objects.filter(access_key_id__startswith="AKIANEW").values_list(
            "access_key_id", "unapproved"
        )
    )
    assert flags == {"AKIANEW0000000000002": False, "AKIANEW0000000000003": True}
    fulfil = AuditEvent.objects.get(action="keyrequest.fulfil")
    assert fulfil.actor_name == "system" and fulfil.after["access_key"] == req.access_key.pk
    assert any("fulfil" in m.subject and "olive@example.com" in m.to for m in mailoutbox)


def test_it_does_not_link_a_key_created_before_the_approval(account, collected):
    """A key made before anyone approved is not the approved one."""
    from inventory.models import IamUser

    owner = person("olive", "owner", "olive@example.com")
    approver = person("abe", "approver", "abe@example.com")
    req = file(owner, IamUser.objects.get(name="batch-export"), now=ago(6))
    key_requests.decide_request(req.pk, approver=approver, approve=True, comment="ok", now=ago(3))
    keys = [
        key_record("AKIAOLD0000000000001", "batch-export", ago(200)),
        key_record("AKIAEARLY00000000002", "batch-export", ago(4)),
    ]

    take_snapshot(account, ago(1), collected, keys)

    req.refresh_from_db()
    assert req.status == KeyRequestStatus.APPROVED and req.access_key is None
    assert AccessKey.objects.get(access_key_id="AKIAEARLY00000000002").unapproved is True


def test_it_links_a_key_keygov_created_once_a_snapshot_sees_it(account, collected):
    """GIVEN a request fulfilled through the write role (key id recorded, not yet collected)
    WHEN a snapshot sees that key
    THEN the request is linked to it and the key is not flagged."""
    from inventory.models import IamUser

    owner = person("olive", "owner", "olive@example.com")
    approver = person("abe", "approver", "abe@example.com")
    req = file(owner, IamUser.objects.get(name="batch-export"), now=ago(6))
    key_requests.decide_request(req.pk, approver=approver, approve=True, comment="ok", now=ago(5))
    KeyRequest.objects.filter(pk=req.pk).update(
        status=KeyRequestStatus.FULFILLED,
        created_access_key_id="AKIAMADE000000000002",
        secret_arn="arn:aws:secretsmanager:us-east-1:333333333333:secret:x",
        fulfilment_started_at=ago(5),
    )
    keys = [
        key_record("AKIAOLD0000000000001", "batch-export", ago(200)),
        key_record("AKIAMADE000000000002", "batch-export", ago(5)),
    ]

    take_snapshot(account, ago(1), collected, keys)

    req.refresh_from_db()
    assert req.access_key.access_key_id == "AKIAMADE000000000002"
    assert AccessKey.objects.get(access_key_id="AKIAMADE000000000002").unapproved is False


def test_it_checks_the_snapshot_in_a_few_queries_whatever_the_number_of_new_keys(
    account, django_assert_max_num_queries
):
    """The linking adds a constant number of queries to a snapshot's write."""
    users = [user_record(account, f"u{i}") for i in range(20)]
    take_snapshot(account, ago(30), users, [])
    keys = [key_record(f"AKIAQ{i:015d}", f"u{i}", ago(2)) for i in range(20)]
    snapshot = take_snapshot(account, ago(1), users, keys)
    stored = list(AccessKey.objects.filter(account=account))

    with django_assert_max_num_queries(6):
        key_requests.link_snapshot_keys(
            snapshot, stored, {k.access_key_id for k in stored} | {"AKIAGONE"}
        )
    assert AccessKey.objects.filter(account=account, unapproved=True).count() == 20
