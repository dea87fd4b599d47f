"""The rotation policy: validation, one global policy, account overrides, audited changes."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from inventory.choices import CloseReason, KeyState
from inventory.models import AccessKey, AuditEvent, Finding, RotationPolicy
from inventory.policy import Policy
from inventory.services.audit import fields_of
from inventory.services.evaluation import effective_policy, evaluate_account, global_policy
from inventory.services.policies import FIELDS, delete_override, save_policy
from tests.gov_factories import NOW, AccessKeyFactory, AccountFactory, ago, days, person

pytestmark = pytest.mark.django_db

WARN_MESSAGE = (
    "The warning window (100 days) is longer than the maximum age (90 days): keys would be due "
    "soon before they exist. Use at most the maximum age."
)


def test_it_starts_with_the_product_defaults_as_the_global_policy():
    assert global_policy().rules() == Policy(90, 14, 45, 7)
    assert RotationPolicy.objects.filter(account=None).count() == 1


def test_it_refuses_a_warning_window_longer_than_the_maximum_age_with_a_clear_message():
    policy = global_policy()
    policy.warn_days = 100
    with pytest.raises(ValidationError) as caught:
        policy.full_clean()
    assert WARN_MESSAGE in caught.value.message_dict["warn_days"]


def test_it_accepts_a_warning_window_equal_to_the_maximum_age():
    policy = global_policy()
    policy.warn_days = policy.max_age_days
    policy.full_clean()
    policy.save()
    assert RotationPolicy.objects.get(account=None).warn_days == 90


def test_it_refuses_a_warning_window_longer_than_the_maximum_age_in_the_database():
    account = AccountFactory()
    with pytest.raises(IntegrityError, match="policy_warn_within_max_age"), transaction.atomic():
        RotationPolicy.objects.create(account=account, max_age_days=30, warn_days=31)
    with pytest.raises(IntegrityError, match="policy_warn_within_max_age"), transaction.atomic():
        RotationPolicy.objects.filter(account=None).update(warn_days=91)
    assert global_policy().warn_days == 14


def test_it_keeps_a_single_global_policy():
    global_policy()
    with pytest.raises(IntegrityError, match="policy_one_global"), transaction.atomic():
        RotationPolicy.objects.create(account=None, max_age_days=30, warn_days=5)
    assert RotationPolicy.objects.filter(account=None).count() == 1


def test_it_applies_an_account_override_only_to_that_account():
    overridden, other = AccountFactory(), AccountFactory()
    RotationPolicy.objects.create(account=overridden, max_age_days=30, warn_days=7, unused_days=20)
    assert effective_policy(overridden) == Policy(30, 7, 20, 7)
    assert effective_policy(other) == Policy(90, 14, 45, 7)


def test_it_lowers_the_maximum_age_and_judges_the_keys_again():
    """GIVEN a 60-day-old key in use (ok under the default policy)
    WHEN an admin lowers the global maximum age to 50 days
    THEN the key is overdue, a finding opens, and the change is audited with before/after."""
    admin = person("root-admin", "admin")
    key = AccessKeyFactory(created=ago(60), last_used_at=ago(1))
    evaluate_account(key.account, NOW)
    key.refresh_from_db()
    assert key.state == KeyState.OK

    policy = global_policy()
    before = fields_of(policy, FIELDS)
    policy.max_age_days, policy.warn_days = 50, 10
    save_policy(policy, by=admin, before=before, now=NOW)

    key.refresh_from_db()
    assert key.state == KeyState.OVERDUE
    finding = Finding.objects.get(key=key)
    assert (finding.kind, finding.opened_at, finding.closed_at) == ("overdue", NOW, None)
    event = AuditEvent.objects.get(action="policy.update")
    assert event.actor == admin
    assert event.actor_name == "root-admin"
    assert event.object_type == "rotationpolicy"
    assert event.object_id == str(policy.pk)
    assert event.before["max_age_days"] == 90
    assert event.before["warn_days"] == 14
    assert event.after["max_age_days"] == 50
    assert event.after["warn_days"] == 10
    assert event.at == NOW


def test_it_closes_findings_that_a_relaxed_policy_no_longer_raises():
    """GIVEN a 100-day-old key in daily use with an overdue finding opened 5 days ago
    WHEN the global maximum age rises to 180 days
    THEN the finding closes with the reason "policy" (its use never made it stale)."""
    admin = person("relaxed", "admin")
    key = AccessKeyFactory(created=ago(100, NOW - days(5)), last_used_at=ago(6))
    evaluate_account(key.account, NOW - days(5))
    assert Finding.objects.get(key=key).is_open
    AccessKey.objects.filter(pk=key.pk).update(last_used_at=ago(1))  # still in daily use

    policy = global_policy()
    before = fields_of(policy, FIELDS)
    policy.max_age_days = 180
    save_policy(policy, by=admin, before=before, now=NOW)

    finding = Finding.objects.get(key=key)
    assert (finding.closed_at, finding.close_reason) == (NOW, CloseReason.POLICY)
    assert AccessKey.objects.get(pk=key.pk).state == KeyState.OK


def test_it_judges_an_overridden_account_by_its_override_only():
    """GIVEN two accounts each with a 40-day-old key WHEN one account gets an override with a
    30-day maximum THEN only that account's key is overdue; the override's creation is audited."""
    admin = person("override-admin", "admin")
    key = AccessKeyFactory(created=ago(40), last_used_at=ago(1))
    other = AccessKeyFactory(created=ago(40), last_used_at=ago(1))
    policy = RotationPolicy(account=key.account, max_age_days=30, warn_days=7)
    save_policy(policy, by=admin, now=NOW)

    assert AccessKey.objects.get(pk=key.pk).state == KeyState.OVERDUE
    assert AccessKey.objects.get(pk=other.pk).state == ""  # not judged: not governed by it
    event = AuditEvent.objects.get(action="policy.create")
    assert event.before is None
    assert event.after["account"] == key.account.pk
    assert event.after["max_age_days"] == 30
    assert event.account_id == key.account.account_id


def test_it_refuses_an_invalid_policy_without_saving_or_auditing_it():
    admin = person("careless", "admin")
    policy = global_policy()
    before = fields_of(policy, FIELDS)
    policy.warn_days = 100
    with pytest.raises(ValidationError):
        save_policy(policy, by=admin, before=before, now=NOW)
    assert global_policy().warn_days == 14
    assert not AuditEvent.objects.filter(action__startswith="policy.").exists()


def test_it_returns_an_account_to_the_global_policy_when_its_override_is_deleted():
    """GIVEN an account whose override makes its 40-day-old key overdue
    WHEN the override is deleted THEN the key is judged by the global policy again (ok), the
    finding closes ("policy") and the deletion is audited with the old values."""
    admin = person("undo-admin", "admin")
    key = AccessKeyFactory(created=ago(40), last_used_at=ago(1))
    override = save_policy(
        RotationPolicy(account=key.account, max_age_days=30, warn_days=7), by=admin, now=NOW
    )
    assert AccessKey.objects.get(pk=key.pk).state == KeyState.OVERDUE

    delete_override(override, by=admin, now=NOW + days(1))

    assert effective_policy(key.account) == Policy(90, 14, 45, 7)
    assert AccessKey.objects.get(pk=key.pk).state == KeyState.OK
    finding = Finding.objects.get(key=key)
    assert finding.close_reason == CloseReason.POLICY
    event = AuditEvent.objects.get(action="policy.delete")
    assert event.before["max_age_days"] == 30
    assert event.after is None


def test_it_refuses_to_delete_the_global_policy():
    with pytest.raises(ValueError, match="global policy cannot be deleted"):
        delete_override(global_policy(), by=person("x", "admin"), now=NOW)
    assert RotationPolicy.objects.filter(account=None).exists()


def test_it_refuses_to_move_a_policy_to_another_account():
    admin = person("admin", "admin")
    policy = RotationPolicy.objects.get(account=None)
    before = fields_of(policy, FIELDS)
    policy.account = AccountFactory()
    with pytest.raises(ValidationError, match="cannot be changed"):
        save_policy(policy, by=admin, before=before)
    assert RotationPolicy.objects.filter(account=None).exists()
