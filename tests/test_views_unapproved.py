"""Keys that appeared without an approved key request are flagged on the keys table (with a
filter), on the key's page and on the overview."""

from __future__ import annotations

import pytest
from django.urls import reverse

from inventory.services.kpis import roll_up_account
from tests.gov_factories import AccessKeyFactory, IamUserFactory, person

pytestmark = pytest.mark.django_db


@pytest.fixture
def viewer(client):
    client.force_login(person("vic", "viewer"))
    return client


@pytest.fixture
def keys():
    user = IamUserFactory(owner="olivia@example.com")
    flagged = AccessKeyFactory(user=user, access_key_id="AKIAUNAPPROVED000001", unapproved=True)
    approved = AccessKeyFactory(user=user, access_key_id="AKIAAPPROVED00000002")
    return flagged, approved


def test_it_flags_unapproved_keys_in_the_table_and_filters_them(viewer, keys):
    everything = viewer.get(reverse("inventory:accesskey_list")).content.decode()
    only = viewer.get(reverse("inventory:accesskey_list") + "?unapproved=true").content.decode()
    others = viewer.get(reverse("inventory:accesskey_list") + "?unapproved=false").content.decode()

    assert everything.count(">unapproved</span>") == 1
    assert "AKIAUNAPPROVED000001" in only and "AKIAAPPROVED00000002" not in only
    assert "AKIAAPPROVED00000002" in others and "AKIAUNAPPROVED000001" not in others


def test_it_says_on_the_key_page_that_no_request_approved_it(viewer, keys):
    flagged, approved = keys

    page = viewer.get(reverse("inventory:accesskey_detail", args=[flagged.access_key_id]))
    other = viewer.get(reverse("inventory:accesskey_detail", args=[approved.access_key_id]))

    assert ">unapproved</span>" in page.content.decode()
    assert "appeared without an approved key request" in page.content.decode()
    assert ">unapproved</span>" not in other.content.decode()


def test_it_counts_unapproved_keys_on_the_overview_with_a_link_to_them(viewer, keys):
    flagged, _ = keys
    AccessKeyFactory(unapproved=True, deleted=True)  # gone: not counted
    roll_up_account(flagged.account)  # the overview reads the day's roll-up

    page = viewer.get(reverse("inventory:overview")).content.decode()

    assert (
        'id="unapproved-keys"><a class="text-danger fw-semibold" href="/keys/?unapproved=true">'
        "1</a>"
    ) in page
