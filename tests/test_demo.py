"""``manage.py demo``: the bundled emulator's organisation, as keygov shows it after collecting it."""

from __future__ import annotations

import io
import os
import re
import socket
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.migrations.executor import MigrationExecutor
from django.db.models import Count, F, Q
from django.test import Client
from django.utils import timezone

from inventory.choices import SnapshotStatus
from inventory.models import AccessKey, Account, IamUser, Snapshot

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # The demo sets the admin's password and the tests log in with it: skip the slow hash.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_demo(*args: str) -> str:
    out = io.StringIO()
    call_command("demo", "--no-serve", "--aws-port", str(_free_port()), *args, stdout=out)
    return out.getvalue()


def test_it_seeds_and_collects_a_realistic_organisation():
    """GIVEN an empty database
    WHEN the demo runs
    THEN keygov holds a whole organisation with every situation the dashboard must show."""
    output = run_demo()
    now = timezone.now()

    accounts = Account.objects.all()
    assert accounts.count() >= 5
    assert {"acme-management", "acme-prod", "acme-dev"} <= {a.name for a in accounts}
    assert all(a.role_arn.endswith(":role/KeygovRead") for a in accounts)
    assert set(Snapshot.objects.values_list("status", flat=True)) == {SnapshotStatus.COMPLETE}

    users = IamUser.objects.filter(is_root=False, deleted=False)
    assert users.count() >= 200
    assert users.filter(owner="").count() >= 10, "some users are unowned"
    assert users.exclude(owner="").count() > users.count() * 0.7, "most users are owned"
    # Owner tags spelled in several ways, all read; values lower-cased.
    assert {"owner", "Owner", "OwnerEmail"} <= {k for u in users for k in u.tags}
    assert users.filter(owner="maria.garcia@example.com").exists()
    assert users.filter(has_password=True).count() >= 50, "humans sign in to the console"
    assert users.filter(has_password=False, name="ci-deployer").exists(), "service users"

    keys = AccessKey.objects.filter(deleted=False, is_root=False)
    active = keys.filter(status="Active")
    assert keys.filter(created__lt=now - timedelta(days=365)).count() >= 10
    assert keys.filter(created__gt=now - timedelta(days=30)).count() >= 10
    # Active keys in every rotation state of the default policy (max 90 days, warn 14 before).
    assert active.filter(created__gt=now - timedelta(days=76)).exists()
    assert active.filter(
        created__lte=now - timedelta(days=77), created__gt=now - timedelta(days=90)
    ).exists()
    assert active.filter(created__lt=now - timedelta(days=91)).exists()
    assert keys.filter(status="Inactive").count() >= 5
    assert keys.filter(last_used_at__isnull=True).count() >= 5, "never-used keys"
    used = keys.filter(last_used_at__isnull=False)
    assert used.filter(last_used_at__gt=now - timedelta(days=2)).count() >= 20
    # The emulator writes the last use as AWS does: service and region, no placeholders.
    assert not used.filter(Q(last_used_service="") | Q(last_used_region="")).exists()
    assert {"s3", "ecr"} <= set(used.values_list("last_used_service", flat=True))
    assert "eu-west-1" in set(used.values_list("last_used_region", flat=True))
    assert not keys.filter(last_used_at__lt=F("created")).exists(), "used before it existed"

    two_active = users.annotate(
        n=Count("access_keys", filter=Q(access_keys__status="Active", access_keys__deleted=False))
    ).filter(n=2)
    assert two_active.count() >= 5

    root_keys = AccessKey.objects.filter(is_root=True, deleted=False)
    assert root_keys.exists()
    assert root_keys.filter(status="Active").exists()

    password = re.search(r"Log in at http://127\.0\.0\.1:8000/ as admin / (\S+)", output)
    assert password, output
    assert Client().login(username="admin", password=password.group(1))
    # One sign-in per role; the owner and the approver own keys of the demo organisation.
    for username in ("viewer", "owner", "approver"):
        line = re.search(rf"^  {username} +{username} +(\S+)$", output, re.MULTILINE)
        assert line, output
        assert Client().login(username=username, password=password.group(1))
        user = get_user_model().objects.get(username=username)
        assert [g.name for g in user.groups.all()] == [username]
        assert user.email == line.group(1)
        assert not user.is_staff
        if username != "viewer":
            assert IamUser.objects.filter(owner=user.email, access_keys__deleted=False).exists()


def test_it_gives_the_same_ids_on_every_run():
    """GIVEN a collected demo
    WHEN the demo runs again with the same seed
    THEN the accounts and keys keep their ids, nothing is marked deleted, each account gains a
    snapshot, and the admin gets a new password."""
    env_before = os.environ.get("AWS_ENDPOINT_URL")
    first_output = run_demo("--seed", "42")
    first_accounts = set(Account.objects.values_list("account_id", flat=True))
    first_keys = set(AccessKey.objects.values_list("access_key_id", flat=True))

    second_output = run_demo("--seed", "42")

    assert set(Account.objects.values_list("account_id", flat=True)) == first_accounts
    assert set(AccessKey.objects.values_list("access_key_id", flat=True)) == first_keys
    assert not AccessKey.objects.filter(deleted=True).exists()
    assert not IamUser.objects.filter(deleted=True).exists()
    per_account = Snapshot.objects.filter(status=SnapshotStatus.COMPLETE).values("account")
    assert {row["n"] for row in per_account.annotate(n=Count("id"))} == {2}
    old, new = (
        re.search(r"as admin / (\S+)", out).group(1) for out in (first_output, second_output)
    )
    assert not Client().login(username="admin", password=old)
    assert Client().login(username="admin", password=new)
    # The emulator stopped with the command and the process's AWS settings are back.
    assert os.environ.get("AWS_ENDPOINT_URL") == env_before


def test_it_refuses_a_port_in_use_with_a_clear_message():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(CommandError, match=rf"127\.0\.0\.1:{port}.*--aws-port"):
            call_command("demo", "--no-serve", "--aws-port", str(port), stdout=io.StringIO())
    assert not Account.objects.exists()


def test_it_asks_for_migrate_on_an_unmigrated_database(monkeypatch):
    monkeypatch.setattr(MigrationExecutor, "migration_plan", lambda self, targets: [object()])
    with pytest.raises(CommandError, match=r"manage\.py migrate"):
        run_demo()


def test_it_stays_out_of_a_database_with_real_accounts():
    """GIVEN a database where keygov reads a real account
    WHEN the demo is started on it
    THEN it refuses, and neither adds accounts nor touches the admin."""
    Account.objects.create(
        account_id="111122223333", name="real", role_arn="arn:aws:iam::111122223333:role/R"
    )
    with pytest.raises(CommandError, match="not the demo's"):
        run_demo()
    assert list(Account.objects.values_list("account_id", flat=True)) == ["111122223333"]
    assert not get_user_model().objects.filter(username="admin").exists()
