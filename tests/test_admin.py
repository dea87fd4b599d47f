"""The Django admin: until the dashboard lands it is where the collected data is read, and it
stays where admins manage accounts and the rotation policy."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib import admin
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from inventory.models import AuditEvent, RotationPolicy, Snapshot
from tests.factories import AccessKeyFactory, AccountFactory, KeyObservationFactory

pytestmark = pytest.mark.django_db

INVENTORY_MODELS = [m for m in admin.site._registry if m._meta.app_label == "inventory"]


@pytest.fixture
def staff(client, django_user_model):
    user = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(user)
    return client


def _inventory(n_keys: int):
    account = AccountFactory()
    keys = [AccessKeyFactory(user__account=account, account=account) for _ in range(n_keys)]
    for key in keys:
        KeyObservationFactory(key=key)
    return account, keys


def test_it_brands_the_admin_as_keygov(staff):
    response = staff.get(reverse("admin:index"))

    assert response.status_code == 200
    assert b"<title>Site administration | keygov</title>" in response.content
    assert b'<a href="/admin/">keygov</a>' in response.content


@pytest.mark.parametrize("model", INVENTORY_MODELS, ids=lambda m: m.__name__)
def test_it_lists_every_inventory_model_in_queries_that_do_not_grow_with_rows(staff, model):
    url = reverse(f"admin:inventory_{model._meta.model_name}_changelist")
    _inventory(2)
    with CaptureQueriesContext(connection) as few:
        assert staff.get(url).status_code == 200
    _inventory(12)
    with CaptureQueriesContext(connection) as many:
        assert staff.get(url).status_code == 200

    assert len(many.captured_queries) == len(few.captured_queries)


def test_it_shows_a_key_with_its_history(staff):
    key = AccessKeyFactory(created=timezone.now() - timedelta(days=97, hours=1))
    KeyObservationFactory(key=key, last_used_at=None)

    response = staff.get(reverse("admin:inventory_accesskey_change", args=[key.pk]))

    assert response.status_code == 200
    assert key.access_key_id.encode() in response.content
    assert b"last used never" in response.content


def test_it_refuses_a_malformed_account_id_with_a_clear_message(staff):
    response = staff.post(
        reverse("admin:inventory_account_add"),
        {"account_id": "12345", "name": "bad", "role_arn": "", "external_id": "", "enabled": "on"},
    )

    assert response.status_code == 200  # the form again, with the error
    assert b"12 digits" in response.content
    assert not AuditEvent.objects.exists()


def test_it_refuses_a_warning_window_longer_than_the_maximum_age(staff):
    policy = RotationPolicy.objects.get(account__isnull=True)
    url = reverse("admin:inventory_rotationpolicy_change", args=[policy.pk])

    response = staff.post(
        url, {"max_age_days": 30, "warn_days": 45, "unused_days": 45, "new_key_grace_days": 7}
    )

    assert response.status_code == 200
    assert b"warning window" in response.content.lower()
    policy.refresh_from_db()
    assert (policy.max_age_days, policy.warn_days) == (90, 14)
    assert not AuditEvent.objects.filter(action__startswith="policy").exists()


def test_it_audits_a_policy_change_made_in_the_admin(staff):
    policy = RotationPolicy.objects.get(account__isnull=True)
    url = reverse("admin:inventory_rotationpolicy_change", args=[policy.pk])

    response = staff.post(
        url, {"max_age_days": 60, "warn_days": 10, "unused_days": 30, "new_key_grace_days": 7}
    )

    assert response.status_code == 302
    event = AuditEvent.objects.get(action__startswith="policy")
    assert event.actor_name == "root"
    assert event.before["max_age_days"] == 90
    assert event.after["max_age_days"] == 60


def test_it_queues_a_collection_from_the_accounts_list(staff, monkeypatch):
    from inventory import tasks

    queued = []
    monkeypatch.setattr(tasks.collect_account, "delay", lambda pk: queued.append(pk))
    account = AccountFactory()

    response = staff.post(
        reverse("admin:inventory_account_changelist"),
        {"action": "collect_now", "_selected_action": [account.pk]},
        follow=True,
    )

    assert queued == [account.pk]
    assert b"Collection queued for 1 account(s)." in response.content


def test_it_says_so_when_the_task_queue_is_down(staff, monkeypatch):
    from kombu.exceptions import OperationalError

    from inventory import tasks

    def refuse(pk):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(tasks.collect_account, "delay", refuse)
    account = AccountFactory()

    response = staff.post(
        reverse("admin:inventory_account_changelist"),
        {"action": "collect_now", "_selected_action": [account.pk]},
        follow=True,
    )

    assert response.status_code == 200
    assert b"The task queue is unavailable, try again later" in response.content
    assert not Snapshot.objects.filter(account=account).exists()


def test_it_flags_a_user_with_two_active_keys_and_an_unowned_key_in_the_key_list(staff):
    first = AccessKeyFactory(user__owner="")
    AccessKeyFactory(user=first.user, account=first.account)

    response = staff.get(reverse("admin:inventory_accesskey_changelist"))

    assert response.content.count(b"user has two active keys, unowned") == 2
