"""factory-boy factories for the inventory models.

Defaults describe a plausible, healthy inventory: an enabled account read through a role, a
complete snapshot, a user created a year ago, an active key created 30 days ago and never used.
Override what a test is about, e.g. ``AccessKeyFactory(created=now - timedelta(days=400))``.
"""

from __future__ import annotations

from datetime import timedelta

import factory
from django.utils import timezone

from inventory.choices import KeyStatus, SnapshotStatus
from inventory.models import AccessKey, Account, IamUser, KeyObservation, Snapshot


class AccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Account
        django_get_or_create = ("account_id",)

    account_id = factory.Sequence(lambda n: f"{100000000000 + n:012d}")
    name = factory.Sequence(lambda n: f"account-{n}")
    role_arn = factory.LazyAttribute(lambda o: f"arn:aws:iam::{o.account_id}:role/KeygovRead")
    external_id = ""
    enabled = True


class SnapshotFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Snapshot

    account = factory.SubFactory(AccountFactory)
    status = SnapshotStatus.COMPLETE
    started_at = factory.LazyFunction(timezone.now)
    finished_at = factory.LazyAttribute(
        lambda o: (
            o.started_at + timedelta(seconds=30) if o.status != SnapshotStatus.RUNNING else None
        )
    )
    api_calls = 5
    run_key = ""


class IamUserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = IamUser

    account = factory.SubFactory(AccountFactory)
    user_id = factory.Sequence(lambda n: f"AIDA{n:017d}")
    name = factory.Sequence(lambda n: f"user-{n}")
    arn = factory.LazyAttribute(lambda o: f"arn:aws:iam::{o.account.account_id}:user/{o.name}")
    path = "/"
    created = factory.LazyFunction(lambda: timezone.now() - timedelta(days=365))
    tags = factory.LazyFunction(dict)
    owner = ""
    has_password = False
    is_root = False
    first_seen = factory.LazyFunction(timezone.now)
    last_seen = factory.SelfAttribute("first_seen")


class AccessKeyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AccessKey

    access_key_id = factory.Sequence(lambda n: f"AKIA{n:016d}")
    user = factory.SubFactory(IamUserFactory)
    account = factory.SelfAttribute("user.account")
    status = KeyStatus.ACTIVE
    created = factory.LazyFunction(lambda: timezone.now() - timedelta(days=30))
    last_used_at = None
    last_used_service = ""
    last_used_region = ""
    is_root = False
    first_seen = factory.LazyFunction(timezone.now)
    last_seen = factory.SelfAttribute("first_seen")


class KeyObservationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = KeyObservation

    key = factory.SubFactory(AccessKeyFactory)
    snapshot = factory.SubFactory(SnapshotFactory, account=factory.SelfAttribute("..key.account"))
    active = factory.LazyAttribute(lambda o: o.key.status == KeyStatus.ACTIVE)
    last_used_at = factory.SelfAttribute("key.last_used_at")
