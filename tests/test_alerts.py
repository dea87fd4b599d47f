"""Owner alerts and notifications: digests (content, cadence, sent once), the admins' list of
unreachable owners, the approvers' digest, and the mail of every request transition."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.db import transaction

from inventory.choices import ExceptionStatus
from inventory.models import PolicyException
from inventory.services import notifications
from tests.gov_factories import NOW, AccessKeyFactory, IamUserFactory, person

pytestmark = pytest.mark.django_db


def pending_exception(requested_by, **kwargs) -> PolicyException:
    key = kwargs.pop("key", None) or AccessKeyFactory(user=IamUserFactory(owner=requested_by.email))
    return PolicyException.objects.create(
        key=key,
        account=key.account,
        reason="vendor tool needs a static key",
        expires_at=NOW + timedelta(days=30),
        requested_by=requested_by,
        requested_at=NOW,
        **kwargs,
    )


# --- notify_transition ------------------------------------------------------------------------


def test_it_mails_the_approvers_of_a_new_pending_request_but_not_its_requester(
    mailoutbox, django_capture_on_commit_callbacks
):
    """GIVEN an owner and two approvers WHEN the owner files a request THEN after commit each
    approver (not the requester, who acted) gets one mail naming the object, status and link."""
    owner = person("olivia", "owner", "olivia@example.com")
    person("anna", "approver", "anna@example.com")
    person("bert", "approver", "bert@example.com")
    exception = pending_exception(owner)

    with django_capture_on_commit_callbacks(execute=True):
        notifications.notify_transition(exception, "exception.request", owner)

    assert len(mailoutbox) == 1
    mail = mailoutbox[0]
    assert sorted(mail.to) == ["anna@example.com", "bert@example.com"]
    assert mail.subject == f"[keygov] {exception}: request"
    assert "Status now: Pending" in mail.body
    assert "by olivia" in mail.body
    assert mail.alternatives[0][1] == "text/html"


def test_it_mails_the_requester_when_an_approver_decides(
    mailoutbox, django_capture_on_commit_callbacks
):
    owner = person("olivia", "owner", "olivia@example.com")
    approver = person("anna", "approver", "anna@example.com")
    person("bert", "approver", "bert@example.com")
    exception = pending_exception(owner)
    exception.status = ExceptionStatus.APPROVED
    exception.decided_by = approver

    with django_capture_on_commit_callbacks(execute=True):
        notifications.notify_transition(exception, "exception.approve", approver)

    assert [m.to for m in mailoutbox] == [["olivia@example.com"]]
    assert "approve by anna" in mailoutbox[0].body
    assert "Status now: Approved" in mailoutbox[0].body


def test_it_sends_nothing_when_the_transition_rolls_back(mailoutbox):
    owner = person("olivia", "owner", "olivia@example.com")
    person("anna", "approver", "anna@example.com")
    exception = pending_exception(owner)

    with pytest.raises(RuntimeError), transaction.atomic():
        notifications.notify_transition(exception, "exception.request", owner)
        raise RuntimeError("the transition failed")

    assert mailoutbox == []


def test_it_posts_a_summary_to_the_slack_webhook(
    settings, monkeypatch, mailoutbox, django_capture_on_commit_callbacks
):
    settings.KEYGOV_SLACK_WEBHOOK_URL = "https://hooks.example.com/T000/B000"
    posted = []

    class Response:
        status = 200

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def urlopen(request, timeout):
        posted.append((request.full_url, json.loads(request.data), timeout))
        return Response()

    monkeypatch.setattr(notifications.urllib.request, "urlopen", urlopen)
    owner = person("olivia", "owner", "olivia@example.com")
    exception = pending_exception(owner)

    with django_capture_on_commit_callbacks(execute=True):
        notifications.notify_transition(exception, "exception.request", owner)

    assert len(posted) == 1
    url, body, timeout = posted[0]
    assert url == "https://hooks.example.com/T000/B000"
    assert body["text"].startswith(f"{exception}: request by olivia (now Pending)")
    assert timeout == notifications.SLACK_TIMEOUT


def test_it_logs_a_failing_slack_webhook_instead_of_raising(settings, monkeypatch, caplog):
    settings.KEYGOV_SLACK_WEBHOOK_URL = "https://hooks.example.com/T000/B000"

    def urlopen(request, timeout):
        raise TimeoutError("timed out")

    monkeypatch.setattr(notifications.urllib.request, "urlopen", urlopen)

    assert notifications.post_to_slack("hello") is False
    assert "Slack webhook not reached: timed out" in caplog.text
