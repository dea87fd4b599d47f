"""The flags beside a key's state: its user holds two active keys; its user has no owner."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from inventory.choices import KeyStatus
from inventory.models import AccessKey
from tests.gov_factories import AccessKeyFactory, IamUserFactory, ago

pytestmark = pytest.mark.django_db


def flags() -> dict[str, tuple[int, bool, bool]]:
    return {
        k.access_key_id: (k.user_active_keys, k.two_active_keys, k.unowned)
        for k in AccessKey.objects.with_flags()
    }


def test_it_flags_both_active_keys_of_a_user_and_the_keys_of_unowned_users():
    """GIVEN alice (owned) with two active keys, bob (owned) with one active and one inactive,
    and a service user without an owner tag holding one key, plus one deleted key of alice's
    THEN only alice's two active keys carry the two-keys flag, and only the service key is unowned."""
    alice = IamUserFactory(owner="alice@example.com")
    bob = IamUserFactory(owner="bob@example.com", account=alice.account)
    bot = IamUserFactory(owner="", account=alice.account)
    AccessKeyFactory(access_key_id="A1", user=alice, created=ago(10))
    AccessKeyFactory(access_key_id="A2", user=alice, created=ago(5))
    AccessKeyFactory(access_key_id="A3", user=alice, created=ago(400), deleted=True)
    AccessKeyFactory(access_key_id="B1", user=bob, created=ago(10))
    AccessKeyFactory(access_key_id="B2", user=bob, created=ago(99), status=KeyStatus.INACTIVE)
    AccessKeyFactory(access_key_id="S1", user=bot, created=ago(3))

    assert flags() == {
        "A1": (2, True, False),
        "A2": (2, True, False),
        "A3": (2, False, False),
        "B1": (1, False, False),
        "B2": (1, False, False),
        "S1": (1, False, True),
    }


def test_it_flags_keys_in_one_query_whatever_their_number():
    for _ in range(30):
        AccessKeyFactory()
    with CaptureQueriesContext(connection) as queries:
        assert len(flags()) == 30
    assert len(queries.captured_queries) == 1
