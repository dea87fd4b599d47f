"""The dashboard in a real browser, as its users work with it: a viewer reads the overview,
filters keys and exports them; an owner marks a key migrated; an approver approves an exception;
a viewer is refused an action. Screenshots of each page: test-output/screenshots/."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from inventory.choices import ExceptionStatus, KeyState, MigrationStatus
from inventory.models import AccessKey, Account, KeyMigration, PolicyException
from tests.browser.conftest import PASSWORD, log_in
from tests.gov_factories import key_record, person, take_snapshot, user_record

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

EXPORT_HEADER = [
    "access_key_id", "account_id", "account_name", "user_name", "owner", "status", "state",
    "created", "age_days", "last_used", "last_used_service", "last_used_region",
]  # fmt: skip
OWNER_EMAIL = "olivia.owner@example.com"
ROLE_ARN = "arn:aws:iam::111111111111:role/billing-exporter"


def _signed_in(username: str, role: str, email: str = ""):
    user = person(username, role, email=email)
    user.set_password(PASSWORD)
    user.save()
    return user


@pytest.fixture
def organisation():
    """Two accounts collected through the real ingest (states, findings, roll-ups): in prod,
    two overdue keys, a due-soon one and a fresh one; in dev, one overdue key."""
    now = timezone.now()
    prod = Account.objects.create(account_id="111111111111", name="prod")
    dev = Account.objects.create(account_id="222222222222", name="dev")
    take_snapshot(
        prod,
        now,
        [
            user_record(prod, "billing-exporter", OWNER_EMAIL),
            user_record(prod, "ci-deployer", "someone@example.com"),
            user_record(prod, "legacy-batch"),
        ],
        [
            key_record("AKIAPRODOVERDUE00001", "billing-exporter", now - timedelta(days=200),
                       last_used_at=now - timedelta(days=1)),
            key_record("AKIAPRODOVERDUE00002", "legacy-batch", now - timedelta(days=400),
                       last_used_at=now - timedelta(days=2)),
            key_record("AKIAPRODDUESOON00003", "ci-deployer", now - timedelta(days=80),
                       last_used_at=now - timedelta(days=1)),
            key_record("AKIAPRODFRESHKEY0004", "ci-deployer", now - timedelta(days=3)),
        ],
    )  # fmt: skip
    take_snapshot(
        dev,
        now,
        [user_record(dev, "dev-tool", "someone@example.com")],
        [
            key_record("AKIADEVOVERDUE000005", "dev-tool", now - timedelta(days=120),
                       last_used_at=now - timedelta(days=1)),
        ],
    )  # fmt: skip
    return prod, dev


def test_it_lets_a_viewer_read_the_overview_filter_keys_and_export_them(page, organisation):
    """GIVEN a collected organisation and a viewer
    WHEN the viewer signs in, reads the overview, filters the keys to overdue ones of prod and
    exports them as CSV
    THEN the overview shows the KPIs, the table only prod's overdue keys, and the file exactly
    those keys with the export columns in order."""
    _signed_in("vera", "viewer")
    log_in(page, "vera")

    expect(page).to_have_title(re.compile("Overview"))
    expect(page.get_by_text("IAM users with an active key")).to_be_visible()
    expect(page.get_by_text("Compliance rate").first).to_be_visible()
    # The age-bucket chart is drawn by the vendored Chart.js (no CDN): its canvas has pixels.
    expect(page.locator("canvas").first).to_be_visible()
    page.shot("overview")

    page.get_by_role("link", name="Keys", exact=True).click()
    expect(page).to_have_title(re.compile("Access keys"))
    page.shot("keys")
    page.get_by_label("Account").select_option(value="111111111111")
    page.locator("label", has_text=re.compile(r"^\s*Overdue\s*$")).click()
    page.get_by_role("button", name="Filter").click()

    expect(page).to_have_url(re.compile(r"state=overdue"))
    expect(page).to_have_url(re.compile(r"account=111111111111"))
    rows = page.locator("table tbody tr")
    expect(rows).to_have_count(2)
    expect(page.get_by_text("AKIAPRODOVERDUE00001")).to_be_visible()
    expect(page.get_by_text("AKIADEVOVERDUE000005")).to_have_count(0)
    page.shot("keys-overdue-in-prod")

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Export CSV").click()
    content = open(download_info.value.path(), encoding="utf-8").read()  # noqa: SIM115
    exported = list(csv.reader(io.StringIO(content)))

    assert exported[0] == EXPORT_HEADER
    assert sorted(row[0] for row in exported[1:]) == [
        "AKIAPRODOVERDUE00001",
        "AKIAPRODOVERDUE00002",
    ]
    by_id = {row[0]: dict(zip(EXPORT_HEADER, row, strict=True)) for row in exported[1:]}
    first = by_id["AKIAPRODOVERDUE00001"]
    assert first["account_id"] == "111111111111"
    assert first["account_name"] == "prod"
    assert first["user_name"] == "billing-exporter"
    assert first["owner"] == OWNER_EMAIL
    assert first["status"] == "Active"
    assert first["state"] == "overdue"
    assert first["age_days"] == "200"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", first["created"]), first["created"]


def test_it_lets_an_owner_mark_their_key_migrated(page, organisation):
    """GIVEN an owner whose e-mail is the owner tag of an overdue key
    WHEN they open the key from "My keys" and mark it migrated to a role
    THEN the key is migrated, its finding closes, and the page says so."""
    owner = _signed_in("olivia", "owner", email=OWNER_EMAIL)
    log_in(page, "olivia")

    page.get_by_role("link", name="My keys").click()
    expect(page).to_have_title(re.compile("My keys"))
    page.shot("my-keys")
    page.get_by_role("link", name="AKIAPRODOVERDUE00001").click()
    expect(page).to_have_title(re.compile("AKIAPRODOVERDUE00001"))
    page.shot("key-before")

    page.get_by_label(re.compile("^Migrated")).check()
    page.get_by_label("Role ARN").fill(ROLE_ARN)
    page.get_by_label("Note").fill("runs on the ECS task role since release 42")
    page.get_by_role("button", name="Mark").click()

    expect(page.locator(".alert-success")).to_be_visible()
    expect(page.get_by_text(ROLE_ARN).first).to_be_visible()
    page.shot("key-marked-migrated")
    key = AccessKey.objects.get(access_key_id="AKIAPRODOVERDUE00001")
    assert key.state == KeyState.MIGRATED
    mark = KeyMigration.objects.get(key=key, withdrawn_at__isnull=True)
    assert (mark.status, mark.role_arn, mark.marked_by) == (
        MigrationStatus.MIGRATED,
        ROLE_ARN,
        owner,
    )
    assert not key.findings.filter(closed_at__isnull=True).exists()


def test_it_lets_an_approver_approve_an_exception(page, organisation):
    """GIVEN an exception requested by an owner for their overdue key
    WHEN an approver approves it on the exceptions page
    THEN it is approved by them and the key is excepted."""
    owner = _signed_in("olivia", "owner", email=OWNER_EMAIL)
    approver = _signed_in("april", "approver", email="april@example.com")
    key = AccessKey.objects.get(access_key_id="AKIAPRODOVERDUE00001")
    now = timezone.now()
    exception = PolicyException.objects.create(
        key=key,
        account=key.account,
        reason="the vendor appliance cannot assume roles until its 2027 release",
        expires_at=now + timedelta(days=60),
        requested_by=owner,
        requested_at=now,
    )
    log_in(page, "april")

    page.get_by_role("link", name="Exceptions").click()
    expect(page).to_have_title(re.compile("Exceptions"))
    page.shot("exceptions-pending")
    page.get_by_role("button", name=re.compile("Approve")).click()

    expect(page.locator(".alert-success")).to_be_visible()
    page.shot("exceptions-approved")
    exception.refresh_from_db()
    assert exception.status == ExceptionStatus.APPROVED
    assert exception.decided_by == approver
    key.refresh_from_db()
    assert key.state == KeyState.EXCEPTED


def test_it_refuses_a_viewer_an_action(page, organisation):
    """GIVEN a viewer on a key's page
    THEN no action is offered, and asking for one anyway is refused."""
    _signed_in("vera", "viewer")
    log_in(page, "vera")

    page.goto("/keys/AKIAPRODOVERDUE00001/")
    expect(page).to_have_title(re.compile("AKIAPRODOVERDUE00001"))
    expect(page.get_by_role("button", name="Mark")).to_have_count(0)
    page.shot("key-as-viewer")

    response = page.goto("/keys/AKIAPRODOVERDUE00001/exception/")

    assert response.status == 403
    expect(page.get_by_role("heading", name="You may not do this")).to_be_visible()
    page.shot("refused")
    assert not PolicyException.objects.exists()
