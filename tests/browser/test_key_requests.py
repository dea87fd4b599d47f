"""A key request in a real browser: an owner files it, an approver approves it, and the next
snapshot of the (read-only) account links the new key to it."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from inventory.models import AccessKey, Account, KeyRequest
from tests.browser.conftest import PASSWORD, log_in
from tests.gov_factories import key_record, person, take_snapshot, user_record

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

OWNER_EMAIL = "olivia.owner@example.com"


def _signed_in(username: str, role: str, email: str):
    user = person(username, role, email=email)
    user.set_password(PASSWORD)
    user.save()
    return user


def test_it_takes_a_key_request_from_filing_to_the_linked_key(page):
    """GIVEN a read-only account (no write role) with an IAM user of the owner
    WHEN the owner files a request for a key, an approver approves it, and a later snapshot
    sees a new key of that user
    THEN the request is fulfilled by that key, which is not flagged unapproved."""
    now = timezone.now()
    prod = Account.objects.create(account_id="111111111111", name="prod")
    users = [user_record(prod, "billing-exporter", OWNER_EMAIL)]
    old_key = key_record("AKIAOLDKEY0000000001", "billing-exporter", now - timedelta(days=30))
    take_snapshot(prod, now - timedelta(hours=1), users, [old_key])
    _signed_in("olivia", "owner", OWNER_EMAIL)
    approver = _signed_in("april", "approver", "april@example.com")

    log_in(page, "olivia")
    page.get_by_role("link", name="Requests").click()
    page.get_by_role("link", name="Request a key").click()
    page.get_by_label("AWS account").select_option(value="111111111111")
    page.get_by_label("IAM user").fill("billing-exporter")
    page.get_by_label("What is the key for?").fill("the billing vendor pulls cost reports")
    page.get_by_label("Why will an IAM role not do?").fill(
        "the vendor runs outside AWS and cannot federate"
    )
    page.get_by_label("Expiry / review date").fill((now + timedelta(days=60)).date().isoformat())
    page.shot("request-form")
    page.get_by_role("button", name="File the request").click()

    expect(page).to_have_title(re.compile(r"Key request #\d+"))
    expect(page.get_by_text("Pending").first).to_be_visible()
    page.shot("request-pending")
    request = KeyRequest.objects.get()
    assert (request.status, request.owner_email) == ("pending", OWNER_EMAIL)

    page.get_by_role("button", name="Log out").click()
    log_in(page, "april")
    page.goto(f"/requests/{request.pk}/")
    page.get_by_label("Comment on your decision").fill("ok for one quarter")
    page.get_by_role("button", name="Approve").click()

    expect(page.get_by_text("Approved").first).to_be_visible()
    page.shot("request-approved")
    request.refresh_from_db()
    assert (request.status, request.decided_by) == ("approved", approver)

    new_key = key_record("AKIANEWKEY0000000002", "billing-exporter", timezone.now())
    take_snapshot(prod, timezone.now() + timedelta(minutes=5), users, [old_key, new_key])
    page.reload()

    expect(page.get_by_text("Fulfilled").first).to_be_visible()
    expect(page.get_by_role("link", name="AKIANEWKEY0000000002")).to_be_visible()
    page.shot("request-fulfilled")
    request.refresh_from_db()
    assert request.status == "fulfilled"
    assert request.access_key.access_key_id == "AKIANEWKEY0000000002"
    assert not AccessKey.objects.get(access_key_id="AKIANEWKEY0000000002").unapproved
