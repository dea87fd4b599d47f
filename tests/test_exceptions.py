"""Policy exceptions: requested by one person, decided by another, covering a key until expiry."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction

from inventory.choices import CloseReason, ExceptionStatus, KeyState
from inventory.models import AccessKey, AuditEvent, Finding, PolicyException
from inventory.services.errors import GovernanceError, NotAllowed
from inventory.services.evaluation import evaluate_account
from inventory.services.exceptions import cancel_exception, decide_exception, request_exception
from tests.gov_factories import NOW, AccessKeyFactory, IamUserFactory, ago, days, person

pytestmark = pytest.mark.django_db

OWNER_EMAIL = "alice@example.com"
IN_30_DAYS = NOW + days(30)


@pytest.fixture
def alice():
    # Signs in with a differently-cased e-mail than the owner tag.
    return person("alice", "owner", email="Alice@Example.COM")


@pytest.fixture
def approver():
    return person("manager", "approver")


@pytest.fixture
def key():
    """A 100-day-old key of alice's, in daily use: overdue, with an open finding."""
    key = AccessKeyFactory(
        user=IamUserFactory(owner=OWNER_EMAIL), created=ago(100), last_used_at=ago(1)
    )
    evaluate_account(key.account, NOW)
    return key


def state_of(key) -> str:
    return AccessKey.objects.get(pk=key.pk).state


def request(by, key=None, *, expires=IN_30_DAYS, reason="vendor appliance", **kw):
    return request_exception(
        requested_by=by, key=key, reason=reason, expires_at=expires, now=NOW, **kw
    )


def test_it_files_a_pending_exception_for_the_owner_of_the_key(alice, key):
    exc = request(alice, key)
    assert (exc.status, exc.key, exc.account, exc.requested_by) == (
        ExceptionStatus.PENDING,
        key,
        key.account,
        alice,
    )
    assert state_of(key) == KeyState.OVERDUE  # pending covers nothing
    event = AuditEvent.objects.get(action="exception.request")
    assert (event.actor, event.object_id, event.before) == (alice, str(exc.pk), None)
    assert event.after["status"] == "pending"
    assert event.after["key"] == key.pk


def test_it_accepts_an_expiry_of_exactly_180_days(alice, key):
    exc = request(alice, key, expires=NOW + days(180))
    assert exc.expires_at == NOW + days(180)


@pytest.mark.parametrize(
    ("expires", "message"),
    [
        (NOW + days(180) + timedelta(seconds=1), "at most 180 days"),
        (NOW, "must be in the future"),
        (NOW - days(1), "must be in the future"),
    ],
)
def test_it_refuses_an_expiry_out_of_bounds(alice, key, expires, message):
    with pytest.raises(GovernanceError, match=message):
        request(alice, key, expires=expires)
    assert not PolicyException.objects.exists()


@pytest.mark.parametrize("reason", ["", "   \n"])
def test_it_requires_a_reason(alice, key, reason):
    with pytest.raises(GovernanceError, match="Say why"):
        request(alice, key, reason=reason)
    assert not PolicyException.objects.exists()


def test_it_covers_either_a_key_or_a_user(alice, key):
    with pytest.raises(GovernanceError, match="either one key or one IAM user"):
        request(alice, key, iam_user=key.user)
    with pytest.raises(GovernanceError, match="either one key or one IAM user"):
        request(alice)
    with pytest.raises(IntegrityError, match="exception_covers_key_or_user"), transaction.atomic():
        PolicyException.objects.create(
            key=key,
            iam_user=key.user,
            account=key.account,
            reason="both",
            expires_at=NOW + days(1),
            requested_by=alice,
            requested_at=NOW,
        )


def test_it_excepts_the_key_and_closes_its_finding_when_another_approver_approves(
    alice, approver, key
):
    """GIVEN an overdue key with an open finding and alice's pending exception for it
    WHEN a manager approves it THEN the key is excepted, the finding closes as "excepted" and
    the approval is audited with the manager as actor and the status before and after."""
    exc = request(alice, key)
    decided = decide_exception(exc.pk, approver=approver, approve=True, comment="ok", now=NOW)

    assert (decided.status, decided.decided_by, decided.decided_at) == ("approved", approver, NOW)
    assert state_of(key) == KeyState.EXCEPTED
    finding = Finding.objects.get(key=key)
    assert (finding.closed_at, finding.close_reason) == (NOW, CloseReason.EXCEPTED)
    event = AuditEvent.objects.get(action="exception.approve")
    assert event.actor == approver
    assert event.before["status"] == "pending"
    assert event.after["status"] == "approved"
    assert event.after["decided_by"] == approver.pk
    assert event.after["decision_comment"] == "ok"


def test_it_leaves_the_key_judged_when_the_exception_is_rejected(alice, approver, key):
    exc = request(alice, key)
    decide_exception(exc.pk, approver=approver, approve=False, comment="rotate it", now=NOW)
    assert PolicyException.objects.get().status == ExceptionStatus.REJECTED
    assert state_of(key) == KeyState.OVERDUE
    assert Finding.objects.get(key=key).is_open
    assert AuditEvent.objects.filter(action="exception.reject", actor=approver).exists()


def test_it_refuses_self_approval_in_the_service(approver, key):
    """GIVEN an approver who requested an exception for a key WHEN they approve it themselves
    THEN the service refuses and the exception stays pending."""
    exc = request(approver, key)
    with pytest.raises(NotAllowed, match="another approver must decide it"):
        decide_exception(exc.pk, approver=approver, approve=True, now=NOW)
    assert PolicyException.objects.get().status == ExceptionStatus.PENDING
    assert state_of(key) == KeyState.OVERDUE


def test_it_refuses_self_approval_for_an_admin_too(key):
    admin = person("platform", "admin")
    exc = request(admin, key)
    with pytest.raises(NotAllowed):
        decide_exception(exc.pk, approver=admin, approve=True, now=NOW)


def test_it_refuses_self_approval_in_the_database(approver, key):
    exc = request(approver, key)
    with pytest.raises(IntegrityError, match="exception_not_self_decided"), transaction.atomic():
        PolicyException.objects.filter(pk=exc.pk).update(
            status=ExceptionStatus.APPROVED, decided_by=approver, decided_at=NOW
        )
    assert PolicyException.objects.get().status == ExceptionStatus.PENDING


def test_it_refuses_to_decide_an_exception_twice(alice, approver, key):
    exc = request(alice, key)
    decide_exception(exc.pk, approver=approver, approve=True, now=NOW)
    other = person("second-manager", "approver")
    with pytest.raises(GovernanceError, match="no longer pending"):
        decide_exception(exc.pk, approver=other, approve=False, now=NOW + days(1))
    exc.refresh_from_db()
    assert (exc.status, exc.decided_by) == (ExceptionStatus.APPROVED, approver)


def test_it_lets_only_approvers_decide(alice, key):
    colleague = person("bob", "owner", email="bob@example.com")
    exc = request(alice, key)
    with pytest.raises(NotAllowed, match="Only approvers"):
        decide_exception(exc.pk, approver=colleague, approve=True, now=NOW)


def test_it_refuses_to_approve_an_exception_that_has_expired(alice, approver, key):
    exc = request(alice, key, expires=NOW + days(2))
    with pytest.raises(GovernanceError, match="already expired"):
        decide_exception(exc.pk, approver=approver, approve=True, now=NOW + days(3))


def test_it_judges_the_key_again_once_the_exception_expires(alice, approver, key):
    """GIVEN an overdue key excepted until NOW + 30 days
    WHEN it is evaluated a minute before and a minute after the expiry
    THEN it is excepted before, overdue after, and a new finding opens at the evaluation
    after the expiry (the first one stays closed as "excepted")."""
    expires = NOW + days(30)
    exc = request(alice, key, expires=expires)
    decide_exception(exc.pk, approver=approver, approve=True, now=NOW)

    evaluate_account(key.account, expires - timedelta(minutes=1))
    assert state_of(key) == KeyState.EXCEPTED
    assert Finding.objects.filter(key=key, closed_at__isnull=True).count() == 0

    after = expires + timedelta(minutes=1)
    evaluate_account(key.account, after)
    assert state_of(key) == KeyState.OVERDUE
    first, second = Finding.objects.filter(key=key).order_by("opened_at")
    assert first.close_reason == CloseReason.EXCEPTED
    assert (second.kind, second.opened_at, second.closed_at) == ("overdue", after, None)


def test_it_covers_every_key_of_an_iam_user(alice, approver):
    """GIVEN alice's IAM user with two overdue keys, and another user's overdue key
    WHEN an exception for alice's IAM user is approved
    THEN both of her keys are excepted and the other key is still overdue."""
    user = IamUserFactory(owner=OWNER_EMAIL)
    mine = [AccessKeyFactory(user=user, created=ago(n), last_used_at=ago(1)) for n in (100, 95)]
    other = AccessKeyFactory(
        user=IamUserFactory(account=user.account), created=ago(100), last_used_at=ago(1)
    )
    evaluate_account(user.account, NOW)

    exc = request(alice, iam_user=user)
    assert exc.iam_user == user
    decide_exception(exc.pk, approver=approver, approve=True, now=NOW)

    assert [state_of(k) for k in mine] == [KeyState.EXCEPTED, KeyState.EXCEPTED]
    assert state_of(other) == KeyState.OVERDUE


def test_it_refuses_a_viewer_or_another_owner_requesting_for_someone_elses_key(key):
    viewer = person("finops", "viewer")
    bob = person("bob", "owner", email="bob@example.com")
    nobody = person("nobody")
    for who in (viewer, bob, nobody):
        with pytest.raises(NotAllowed):
            request(who, key)
        with pytest.raises(NotAllowed):
            request(who, iam_user=key.user)
    assert not PolicyException.objects.exists()


def test_it_lets_an_approver_request_for_any_key(approver, key):
    assert request(approver, key).requested_by == approver


def test_it_lets_only_the_requester_cancel_a_pending_request(alice, approver, key):
    exc = request(alice, key)
    with pytest.raises(NotAllowed, match="Only the requester"):
        cancel_exception(exc.pk, by=approver, now=NOW)
    cancelled = cancel_exception(exc.pk, by=alice, now=NOW)
    assert cancelled.status == ExceptionStatus.CANCELLED
    with pytest.raises(GovernanceError, match="no longer pending"):
        decide_exception(exc.pk, approver=approver, approve=True, now=NOW)
    event = AuditEvent.objects.get(action="exception.cancel")
    assert (event.actor, event.before["status"], event.after["status"]) == (
        alice,
        "pending",
        "cancelled",
    )


def test_it_refuses_an_exception_for_a_root_key(approver):
    root = AccessKeyFactory(user=IamUserFactory(is_root=True), is_root=True, created=ago(3))
    with pytest.raises(GovernanceError, match="Root-account keys cannot be excepted"):
        request(approver, root)
    with pytest.raises(GovernanceError, match="root user's keys cannot be excepted"):
        request(approver, iam_user=root.user)
    assert not PolicyException.objects.exists()


def test_it_refuses_an_exception_for_a_deleted_key(approver, key):
    AccessKey.objects.filter(pk=key.pk).update(deleted=True)
    key.refresh_from_db()
    with pytest.raises(GovernanceError, match="no longer exists"):
        request(approver, key)


def test_it_refuses_an_exception_over_180_days_in_the_database(alice, key):
    exc = request(alice, key)
    with pytest.raises(IntegrityError, match="exception_at_most_180_days"), transaction.atomic():
        PolicyException.objects.filter(pk=exc.pk).update(
            expires_at=NOW + days(180) + timedelta(seconds=1)
        )
    PolicyException.objects.filter(pk=exc.pk).update(expires_at=NOW + days(180))


def test_it_audits_the_findings_an_approval_closes_as_the_approver(alice, approver, key):
    exc = request(alice, key)
    decide_exception(exc.pk, approver=approver, approve=True, now=NOW)
    closed = AuditEvent.objects.get(action="finding.close")
    assert (closed.actor, closed.after["close_reason"]) == (approver, "excepted")
