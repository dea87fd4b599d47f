"""Factories and helpers for the governance tests: accounts, IAM users, keys, people with roles,
and snapshots written through the real ingest path."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import factory
from django.contrib.auth.models import Group, User

from inventory.aws.collector import AccountInventory, KeyRecord, UserRecord
from inventory.choices import KeyStatus, SnapshotStatus
from inventory.models import AccessKey, Account, IamUser, Snapshot
from inventory.services.ingest import ingest_inventory

# A fixed "now" in the middle of the second quarter, so that quarters and windows are explicit.
NOW = datetime(2026, 5, 15, 12, 0, tzinfo=UTC)
ROLE_ARN = "arn:aws:iam::111111111111:role/app-runner"


def days(n: float) -> timedelta:
    return timedelta(days=n)


def ago(n: float, at: datetime = NOW) -> datetime:
    """``n`` days before ``at``."""
    return at - timedelta(days=n)


class AccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Account

    account_id = factory.Sequence(lambda n: f"{100000000000 + n:012d}")
    name = factory.Sequence(lambda n: f"account-{n}")


class IamUserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = IamUser

    account = factory.SubFactory(AccountFactory)
    user_id = factory.Sequence(lambda n: f"AIDA{n:016d}")
    name = factory.Sequence(lambda n: f"user-{n}")
    arn = factory.LazyAttribute(lambda o: f"arn:aws:iam::{o.account.account_id}:user/{o.name}")
    created = factory.LazyFunction(lambda: ago(1000))
    owner = ""
    first_seen = factory.LazyFunction(lambda: ago(1000))
    last_seen = NOW


class AccessKeyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AccessKey

    access_key_id = factory.Sequence(lambda n: f"AKIA{n:016d}")
    user = factory.SubFactory(IamUserFactory)
    account = factory.SelfAttribute("user.account")
    status = KeyStatus.ACTIVE
    created = factory.LazyFunction(lambda: ago(10))
    last_used_at = None
    is_root = factory.SelfAttribute("user.is_root")
    first_seen = factory.SelfAttribute("created")
    last_seen = NOW


def group(name: str) -> Group:
    group, _ = Group.objects.get_or_create(name=name)
    return group


def person(username: str, role: str | None = None, email: str = "") -> User:
    """A sign-in user in the Django group ``role`` (viewer, owner, approver, admin)."""
    user = User.objects.create_user(username, email=email or f"{username}@example.com")
    if role:
        user.groups.add(group(role))
    return user


def take_snapshot(
    account: Account,
    at: datetime,
    users: list[UserRecord],
    keys: list[KeyRecord],
) -> Snapshot:
    """A complete snapshot of ``account`` at ``at`` that saw exactly ``users`` and ``keys``,
    written by the real ingest (evaluation, history with states, roll-ups)."""
    snapshot = Snapshot.objects.create(
        account=account, started_at=at, status=SnapshotStatus.RUNNING
    )
    inventory = AccountInventory(
        account_id=account.account_id, report_generated_at=at, users=users, keys=keys
    )
    return ingest_inventory(snapshot, inventory, ["owner"])


def user_record(account: Account, name: str, owner: str = "", *, is_root: bool = False):
    return UserRecord(
        user_id=f"AIDA{account.account_id}{name.upper()}"[:32],
        name=name,
        arn=f"arn:aws:iam::{account.account_id}:{'root' if is_root else 'user/' + name}",
        path="/",
        created=ago(1000),
        tags={"owner": owner} if owner else {},
        has_password=False,
        is_root=is_root,
    )


def key_record(
    key_id: str,
    user_name: str,
    created: datetime,
    *,
    last_used_at: datetime | None = None,
    status: str = KeyStatus.ACTIVE,
    is_root: bool = False,
) -> KeyRecord:
    return KeyRecord(
        access_key_id=key_id,
        user_name=user_name,
        status=status,
        created=created,
        last_used_at=last_used_at,
        is_root=is_root,
    )
