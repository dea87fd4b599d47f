"""Owner alerts and notifications: digests (content, cadence, sent once), the admins' list of
unreachable owners, the approvers' digest, and the mail of every request transition."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
import time_machine
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from inventory import tasks
from inventory.choices import ExceptionStatus, KeyState, KeyStatus
from inventory.models import AccessKey, AlertRecord, KeyRequest, PolicyException, RotationPolicy
from inventory.services import alerts, notifications
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


# --- Owner digests ----------------------------------------------------------------------------

OWNER = "olivia@example.com"


def send(**kwargs):
    return alerts.send_alerts(**kwargs)


def key_due_in(days: int, owner: str = OWNER, **kwargs):
    """An active key whose deadline (age > 90 days) is ``days`` days after NOW, used yesterday."""
    created = NOW - timedelta(days=91 - days)
    user = kwargs.pop("user", None) or IamUserFactory(owner=owner, name=kwargs.pop("name", "ci"))
    return AccessKeyFactory(
        user=user, created=created, last_used_at=NOW - timedelta(days=1), **kwargs
    )


def at(moment, key=None):
    """Travel to ``moment``; the key was used the day before (a collection saw it)."""
    if key is not None:
        AccessKey.objects.filter(pk=key.pk).update(last_used_at=moment - timedelta(days=1))
    return time_machine.travel(moment, tick=False)


def test_it_alerts_14_and_7_days_before_the_deadline_then_weekly_while_overdue(mailoutbox):
    """GIVEN a key whose deadline is 20 days away WHEN the daily task runs every day for seven
    weeks THEN its owner hears of it at 14 days, 7 days, on its first overdue day, and every 7
    days after that — and on no other day."""
    key = key_due_in(20)
    deadline = NOW + timedelta(days=20)
    sent_on = {}
    for day in range(0, 50):
        moment = NOW + timedelta(days=day)
        with at(moment, key):
            before = len(mailoutbox)
            send()
            if len(mailoutbox) > before:
                sent_on[(moment - deadline).days] = mailoutbox[-1]
    assert sorted(sent_on) == [-14, -7, 0, 7, 14, 21, 28]
    assert "rotate it before" in sent_on[-14].body and "(14 days left)" in sent_on[-14].body
    assert "(7 days left)" in sent_on[-7].body
    assert "Overdue: rotate now" in sent_on[0].body
    assert list(
        AlertRecord.objects.filter(object_id=key.access_key_id)
        .order_by("decided_at")
        .values_list("milestone", flat=True)
    ) == [
        "due-14",
        "due-7",
        "overdue-week-0",
        "overdue-week-1",
        "overdue-week-2",
        "overdue-week-3",
        "overdue-week-4",
    ]


def test_it_sends_each_alert_once_when_the_task_runs_twice(mailoutbox):
    key_due_in(14)
    with time_machine.travel(NOW, tick=False):
        first = send()
        second = send()
    assert len(mailoutbox) == 1
    assert first.sent == [OWNER]
    assert second.alerts == [] and second.sent == []
    assert AlertRecord.objects.count() == 1
    assert AlertRecord.objects.get().sent_at == NOW


def test_it_sends_a_key_first_seen_with_5_days_left_only_its_7_day_alert(mailoutbox):
    key_due_in(5)
    with time_machine.travel(NOW, tick=False):
        send()
    assert AlertRecord.objects.get().milestone == "due-7"


def test_it_sends_each_owner_one_digest_of_all_their_keys(mailoutbox, settings):
    """GIVEN an owner with an overdue, an unused, a due-soon and an unapproved key, and another
    owner with one key WHEN the task runs THEN each owner gets exactly one e-mail listing their
    own keys by kind, with links to the key pages."""
    settings.KEYGOV_BASE_URL = "https://keygov.example.com"
    user = IamUserFactory(owner=OWNER, name="deployer")
    overdue = key_due_in(-3, user=user)
    unused = AccessKeyFactory(user=user, created=NOW - timedelta(days=60), last_used_at=None)
    due = key_due_in(10, user=user)
    unapproved = AccessKeyFactory(user=user, created=NOW - timedelta(days=2), unapproved=True)
    other = key_due_in(7, owner="piotr@example.com", name="reporting")

    with time_machine.travel(NOW, tick=False):
        run = send()

    assert sorted(run.sent) == [OWNER, "piotr@example.com"]
    assert len(mailoutbox) == 2
    mail = next(m for m in mailoutbox if m.to == [OWNER])
    assert mail.subject == "[keygov] 4 key alerts for 2026-05-15"
    body = mail.body
    for title in (
        "Overdue: rotate now",
        "Unused: deactivate or delete",
        "Due soon",
        "Created without an approved request",
    ):
        assert title in body
    for key in (overdue, unused, due, unapproved):
        assert f"https://keygov.example.com/keys/{key.access_key_id}/" in body
    assert other.access_key_id not in body
    assert body.index("Overdue: rotate now") < body.index(overdue.access_key_id)
    assert "Active but never used" in body
    assert f'href="https://keygov.example.com/keys/{due.access_key_id}/"' in mail.alternatives[0][0]


def test_it_leaves_alone_keys_that_are_excepted_migrated_inactive_or_deleted(mailoutbox):
    for kwargs in (
        {"state": KeyState.EXCEPTED},
        {"state": KeyState.MIGRATED},
        {"status": KeyStatus.INACTIVE},
        {"deleted": True},
    ):
        key_due_in(-3, name=f"u-{len(kwargs)}-{next(iter(kwargs.values()))}", **kwargs)
    with time_machine.travel(NOW, tick=False):
        run = send()
    assert run.alerts == []
    assert mailoutbox == []


def test_it_follows_the_accounts_own_policy():
    """GIVEN an account whose policy allows 30 days WHEN its 20-day-old key is judged THEN it is
    due in 11 days (the account's deadline), not in 71."""
    key = AccessKeyFactory(
        user=IamUserFactory(owner=OWNER),
        created=NOW - timedelta(days=20),
        last_used_at=NOW - timedelta(days=1),
    )
    RotationPolicy.objects.create(account=key.account, max_age_days=30, warn_days=7)
    decided = alerts.decide_alerts(NOW, alerts.Cadence())
    assert [(a.kind, a.milestone) for a in decided] == [("due_soon", "due-14")]
    assert "(11 days left)" in decided[0].detail


def test_it_warns_the_owner_before_an_exception_ends(mailoutbox):
    owner = person("olivia", "owner", OWNER)
    approver = person("anna", "approver", "anna@example.com")
    key = key_due_in(-30, state=KeyState.EXCEPTED)
    PolicyException.objects.create(
        key=key,
        account=key.account,
        reason="vendor appliance",
        expires_at=NOW + timedelta(days=6, hours=3),
        requested_by=owner,
        requested_at=NOW - timedelta(days=60),
        status=ExceptionStatus.APPROVED,
        decided_by=approver,
        decided_at=NOW - timedelta(days=59),
    )
    with time_machine.travel(NOW, tick=False):
        send()
    mail = next(m for m in mailoutbox if m.to == [OWNER])
    assert "Exceptions ending soon" in mail.body
    assert "Expires 2026-05-21 15:00 UTC" in mail.body
    assert AlertRecord.objects.get(recipient=OWNER).milestone == "exception-7"


# --- Admins: owners keygov cannot mail ----------------------------------------------------------


def test_it_lists_keys_of_unreachable_owners_for_the_admins(mailoutbox):
    """GIVEN an overdue key tagged with a team name, and an unowned overdue key WHEN the task
    runs THEN every admin with an e-mail gets both in one digest, with the owner tag shown, and
    nobody else gets mail."""
    person("ada", "admin", "ada@example.com")
    root = User.objects.create_superuser("root", "root@example.com", "x")
    person("viv", "viewer", "viv@example.com")
    team = key_due_in(-3, owner="team-payments", name="payments")
    orphan = key_due_in(-10, owner="", name="legacy")

    with time_machine.travel(NOW, tick=False):
        send()

    assert sorted(m.to[0] for m in mailoutbox) == ["ada@example.com", root.email]
    body = mailoutbox[0].body
    assert "Keys whose owner keygov cannot e-mail" in body
    assert f"{team.access_key_id} (IAM user payments" in body
    assert "[owner tag: team-payments]" in body
    assert f"{orphan.access_key_id} (IAM user legacy" in body
    assert "[no owner tag]" in body


# --- Approvers ----------------------------------------------------------------------------------


def test_it_sends_approvers_the_pending_decisions_but_not_their_own(mailoutbox):
    """GIVEN a pending exception filed by approver Anna and a pending key request filed by an
    owner WHEN the task runs THEN approver Bert gets both, Anna only the key request (she cannot
    decide her own), and a week later both are recalled once."""
    anna = person("anna", "approver", "anna@example.com")
    person("bert", "approver", "bert@example.com")
    owner = person("olivia", "owner", OWNER)
    key = AccessKeyFactory(user=IamUserFactory(owner=OWNER))
    PolicyException.objects.create(
        key=key,
        account=key.account,
        reason="vendor appliance",
        expires_at=NOW + timedelta(days=30),
        requested_by=anna,
        requested_at=NOW - timedelta(hours=2),
    )
    request = KeyRequest.objects.create(
        account=key.account,
        iam_user=key.user,
        justification="nightly export",
        why_not_role="runs outside AWS",
        owner_email=OWNER,
        review_on=(NOW + timedelta(days=60)).date(),
        requested_by=owner,
        requested_at=NOW - timedelta(hours=1),
    )

    with time_machine.travel(NOW, tick=False):
        send()
    by_person = {m.to[0]: m for m in mailoutbox}
    assert sorted(by_person) == ["anna@example.com", "bert@example.com"]
    assert "Waiting for your decision" in by_person["bert@example.com"].body
    assert f"Exception for key {key.access_key_id}" in by_person["bert@example.com"].body
    assert f"Key request #{request.pk}" in by_person["bert@example.com"].body
    assert "Exception for key" not in by_person["anna@example.com"].body
    assert f"Key request #{request.pk}" in by_person["anna@example.com"].body

    mailoutbox.clear()
    with time_machine.travel(NOW + timedelta(days=3), tick=False):
        send()
    assert mailoutbox == []
    with time_machine.travel(NOW + timedelta(days=7), tick=False):
        send()
    assert sorted(m.to[0] for m in mailoutbox) == ["anna@example.com", "bert@example.com"]
    assert "waiting for 7 days" in mailoutbox[0].body


# --- Failures -----------------------------------------------------------------------------------


def test_it_does_not_record_as_sent_a_digest_that_failed_and_sends_it_next_run(
    mailoutbox, monkeypatch
):
    """GIVEN the mail server refuses the first attempt WHEN the task runs THEN the alert is
    recorded unsent with the error; the next run sends it, once."""
    key_due_in(14)
    real_send = notifications.send_message
    monkeypatch.setattr(alerts, "send_message", lambda message: False)
    with time_machine.travel(NOW, tick=False):
        run = send()
    assert run.failed == [OWNER]
    record = AlertRecord.objects.get()
    assert record.sent_at is None
    assert record.error
    assert record.claim == ""

    monkeypatch.setattr(alerts, "send_message", real_send)
    with time_machine.travel(NOW + timedelta(hours=1), tick=False):
        run = send()
        again = send()
    assert run.sent == [OWNER]
    assert again.sent == []
    assert len(mailoutbox) == 1
    assert AlertRecord.objects.get().sent_at == NOW + timedelta(hours=1)


def test_it_returns_false_when_the_mail_backend_raises(settings, caplog):
    settings.EMAIL_BACKEND = "tests.test_alerts.BrokenBackend"
    message = notifications.render_message(["a@example.com"], "hi", "transition", {})
    assert notifications.send_message(message) is False
    assert "not sent" in caplog.text


class BrokenBackend:
    def __init__(self, *args, **kwargs):
        pass

    def send_messages(self, messages):
        raise ConnectionRefusedError("SMTP down")


def test_it_leaves_a_record_claimed_by_a_live_run_to_that_run(mailoutbox):
    """GIVEN another run claimed the alert a minute ago and has not sent it yet WHEN a second
    run starts THEN it does not send it too."""
    key_due_in(14)
    with time_machine.travel(NOW, tick=False):
        decided = alerts.decide_alerts(NOW, alerts.Cadence())
        alerts._claim(decided, NOW, "other-run")
    with time_machine.travel(NOW + timedelta(minutes=1), tick=False):
        run = send()
    assert run.alerts == []
    assert mailoutbox == []


# --- Efficiency, command and task -----------------------------------------------------------------


def test_it_decides_with_the_same_number_of_queries_for_2_or_20_keys():
    def queries(n: int) -> int:
        AccessKey.objects.all().delete()
        for i in range(n):
            key_due_in(-i, owner=f"o{i}@example.com", name=f"u{n}-{i}")
        with CaptureQueriesContext(connection) as ctx:
            decided = alerts.decide_alerts(NOW, alerts.Cadence())
        assert len(decided) == n
        return len(ctx.captured_queries)

    assert queries(2) == queries(20)


def test_it_runs_as_a_command_with_a_dry_run_that_sends_and_records_nothing(mailoutbox):
    key = key_due_in(14)
    out = io.StringIO()
    with time_machine.travel(NOW, tick=False):
        call_command("send_alerts", "--dry-run", stdout=out)
    assert f"{OWNER}: 1 alert(s)" in out.getvalue()
    assert f"due_soon due-14: {key.access_key_id}" in out.getvalue()
    assert "dry run, nothing sent" in out.getvalue()
    assert mailoutbox == []
    assert not AlertRecord.objects.exists()

    with time_machine.travel(NOW, tick=False):
        call_command("send_alerts", stdout=io.StringIO())
        call_command("send_alerts", "--dry-run", stdout=(out := io.StringIO()))
    assert len(mailoutbox) == 1
    assert "0 alerts in 0 digests" in out.getvalue()


def test_it_runs_daily_from_celery_beat(mailoutbox):
    key_due_in(7)
    with time_machine.travel(NOW, tick=False):
        summary = tasks.send_owner_alerts.apply().get()
    assert summary == "1 alerts in 1 digests (1 due soon)"
    assert django_settings.CELERY_BEAT_SCHEDULE["send-owner-alerts"]["task"] == (
        "inventory.tasks.send_owner_alerts"
    )


@pytest.mark.parametrize(
    ("days_left", "milestone"),
    [(15, None), (14, "due-14"), (8, "due-14"), (7, "due-7"), (0, "due-7"), (-1, None)],
)
def test_it_names_the_countdown_milestone(days_left, milestone):
    assert alerts.countdown_milestone(days_left, (14, 7), "due") == milestone


def test_it_names_repeats_by_period():
    assert alerts.repeat_milestone(NOW, NOW + timedelta(days=20), 7, "overdue") == "overdue-week-2"
    assert alerts.repeat_milestone(NOW, NOW + timedelta(days=20), 10, "overdue") == "overdue-10d-2"
    assert alerts.repeat_milestone(NOW, NOW + timedelta(days=20), 0, "overdue") == "overdue"
