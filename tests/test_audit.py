"""The audit log: written in the change's own transaction, and append-only for the application
and (in Postgres) for any SQL client."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.db import DatabaseError, connection, transaction

from inventory.choices import MigrationStatus
from inventory.models import AuditEvent, Finding, KeyMigration, PolicyException, RotationPolicy
from inventory.services.audit import fields_of, record
from inventory.services.evaluation import evaluate_account, global_policy
from inventory.services.exceptions import decide_exception, request_exception
from inventory.services.policies import FIELDS, save_policy
from inventory.services.role_migrations import mark_migration, withdraw_migration
from tests.gov_factories import (
    NOW,
    ROLE_ARN,
    AccessKeyFactory,
    AccountFactory,
    IamUserFactory,
    ago,
    days,
    person,
)

pytestmark = pytest.mark.django_db


class Rollback(Exception):
    """Raised inside a transaction to undo it."""


@pytest.fixture
def world():
    """An overdue key of alice's, never evaluated, and the people who act on it."""
    key = AccessKeyFactory(
        user=IamUserFactory(owner="alice@example.com"), created=ago(100), last_used_at=ago(1)
    )
    return {
        "key": key,
        "alice": person("alice", "owner", email="alice@example.com"),
        "manager": person("manager", "approver"),
        "admin": person("admin", "admin"),
    }


def _policy(w):
    policy = global_policy()
    before = fields_of(policy, FIELDS)
    policy.max_age_days, policy.warn_days = 30, 7
    save_policy(policy, by=w["admin"], before=before, now=NOW)


def _request(w):
    return request_exception(
        requested_by=w["alice"], key=w["key"], reason="r", expires_at=NOW + days(9), now=NOW
    )


def _decide(w):
    decide_exception(w["exception"].pk, approver=w["manager"], approve=True, now=NOW)


def _mark(w):
    mark_migration(w["key"], by=w["alice"], status="migrated", role_arn=ROLE_ARN, now=NOW)


def _withdraw(w):
    withdraw_migration(w["key"], by=w["alice"], now=NOW + days(1))


def _evaluate(w):
    evaluate_account(w["key"].account, NOW)


def _set_up_exception(w):
    w["exception"] = _request(w)


def _set_up_mark(w):
    _mark(w)


# (name, set-up, change, audit action the change writes, what the change leaves behind)
CHANGES = [
    ("policy", None, _policy, "policy.update", lambda: global_policy().max_age_days == 30),
    ("exception request", None, _request, "exception.request", PolicyException.objects.exists),
    (
        "exception approval",
        _set_up_exception,
        _decide,
        "exception.approve",
        lambda: PolicyException.objects.get().status == "approved",
    ),
    (
        "migration mark",
        None,
        _mark,
        "migration.mark",
        lambda: KeyMigration.objects.filter(status=MigrationStatus.MIGRATED).exists(),
    ),
    (
        "migration withdrawal",
        _set_up_mark,
        _withdraw,
        "migration.withdraw",
        lambda: KeyMigration.objects.filter(withdrawn_at__isnull=False).exists(),
    ),
    ("finding", None, _evaluate, "finding.open", Finding.objects.exists),
]


@pytest.mark.parametrize(("name", "set_up", "change", "action", "done"), CHANGES)
def test_it_writes_an_audit_row_with_every_change(world, name, set_up, change, action, done):
    if set_up:
        set_up(world)
    change(world)
    assert done(), name
    event = AuditEvent.objects.filter(action=action).latest("id")
    assert event.at in (NOW, NOW + days(1))
    assert event.after is not None
    assert event.object_id


@pytest.mark.parametrize(("name", "set_up", "change", "action", "done"), CHANGES)
def test_it_rolls_the_audit_row_back_with_its_change(world, name, set_up, change, action, done):
    """GIVEN a change made inside a transaction WHEN the transaction rolls back
    THEN neither the change nor its audit row remains."""
    if set_up:
        set_up(world)
    events = AuditEvent.objects.count()
    with pytest.raises(Rollback), transaction.atomic():
        change(world)
        assert AuditEvent.objects.filter(action=action).exists()
        raise Rollback
    assert not done(), name
    assert not AuditEvent.objects.filter(action=action).exists()
    assert AuditEvent.objects.count() == events


def test_it_records_who_did_what_to_which_object(world):
    event = record(
        "policy.update",
        global_policy(),
        actor=world["admin"],
        before={"max_age_days": 90},
        after={"max_age_days": 60},
        account_id="123456789012",
        at=NOW,
    )
    event = AuditEvent.objects.get(pk=event.pk)
    assert (event.actor, event.actor_name, event.at) == (world["admin"], "admin", NOW)
    assert (event.object_type, event.object_id) == (
        "rotationpolicy",
        str(RotationPolicy.objects.get(account=None).pk),
    )
    assert (event.before, event.after) == ({"max_age_days": 90}, {"max_age_days": 60})
    assert event.account_id == "123456789012"


@pytest.fixture
def event():
    return record("policy.update", global_policy(), after={"max_age_days": 60}, at=NOW)


def test_it_refuses_to_save_an_existing_audit_row(event):
    event.action = "policy.delete"
    with pytest.raises(PermissionError, match="append-only"):
        event.save()
    assert AuditEvent.objects.get(pk=event.pk).action == "policy.update"


def test_it_refuses_to_delete_an_audit_row(event):
    with pytest.raises(PermissionError, match="append-only"):
        event.delete()
    with pytest.raises(PermissionError, match="append-only"):
        AuditEvent.objects.filter(pk=event.pk).delete()
    with pytest.raises(PermissionError, match="append-only"):
        AuditEvent.objects.all().delete()
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_it_refuses_to_update_audit_rows_through_querysets(event):
    with pytest.raises(PermissionError, match="append-only"):
        AuditEvent.objects.filter(pk=event.pk).update(action="x")
    event.action = "x"
    # bulk_update runs in its own atomic block: the refusal rolls that block back.
    with pytest.raises(PermissionError, match="append-only"), transaction.atomic():
        AuditEvent.objects.bulk_update([event], ["action"])
    assert AuditEvent.objects.get(pk=event.pk).action == "policy.update"


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the trigger is Postgres only")
@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE inventory_auditevent SET action = 'forged' WHERE id = %s",
        "UPDATE inventory_auditevent SET actor_name = 'someone else' WHERE id = %s",
        "DELETE FROM inventory_auditevent WHERE id = %s",
    ],
)
def test_it_refuses_raw_sql_updates_and_deletes_in_postgres(event, sql):
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(sql, [event.pk])
    stored = AuditEvent.objects.get(pk=event.pk)
    assert (stored.action, stored.actor_name) == ("policy.update", "system")


def test_it_keeps_the_audit_rows_of_a_deleted_user():
    """GIVEN an audit row written by a sign-in user WHEN the user is deleted
    THEN the row is still there and still names them."""
    temp = person("contractor", "admin")
    account = AccountFactory()
    event = record("policy.create", account, actor=temp, at=NOW)
    temp.delete()
    assert not User.objects.filter(username="contractor").exists()
    stored = AuditEvent.objects.get(pk=event.pk)
    assert stored.actor_name == "contractor"
