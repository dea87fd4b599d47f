"""The Content-Security-Policy in a real browser: keygov's pages, the Django admin and the API's
Swagger UI load without a single policy violation, script error or console error (a blocked
inline script or style shows up as both a violation and a console error)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from inventory.models import Account
from keygov.security import CONTENT_SECURITY_POLICY
from tests.browser.conftest import PASSWORD, log_in
from tests.gov_factories import key_record, person, take_snapshot, user_record

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

KEY_ID = "AKIAPRODOVERDUE00001"
# Runs in every document before its own scripts; the policy does not apply to it.
LISTEN = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__violations.push(`${e.violatedDirective} blocked ${e.blockedURI || "inline"} `
    + `at ${e.sourceFile}:${e.lineNumber}`);
});
"""


@pytest.fixture
def watched(page):
    """The page, recording policy violations, uncaught script errors and console errors;
    ``watched.check(url)`` opens ``url`` and fails on any of them."""
    problems: list[str] = []
    page.context.add_init_script(LISTEN)
    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))

    def failed(response):
        if response.status >= 400:
            problems.append(f"HTTP {response.status}: {response.url}")

    def console(message):
        # keygov's pages name their icon (static/favicon.svg); the Django admin's pages do not,
        # so the browser asks for /favicon.ico there.
        if message.type == "error" and not message.location["url"].endswith("/favicon.ico"):
            problems.append(f"console error: {message.text} ({message.location['url']})")

    page.on("response", failed)
    page.on("console", console)

    def check(url: str, title: str) -> None:
        response = page.goto(url)
        assert response is not None and response.status == 200, url
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        expect(page).to_have_title(re.compile(title))
        page.wait_for_load_state("networkidle")
        problems.extend(f"{url}: {v}" for v in page.evaluate("window.__violations"))
        page.shot(re.sub(r"\W+", "-", url).strip("-") or "overview")
        assert problems == [], "\n".join(problems)

    page.check = check
    return page


@pytest.fixture
def organisation():
    now = timezone.now()
    prod = Account.objects.create(account_id="111111111111", name="prod")
    take_snapshot(
        prod,
        now,
        [user_record(prod, "billing-exporter", "olivia.owner@example.com")],
        [key_record(KEY_ID, "billing-exporter", now - timedelta(days=200),
                    last_used_at=now - timedelta(days=1))],
    )  # fmt: skip
    return prod


def _signed_in(username: str, role: str | None, **extra):
    user = person(username, role)
    user.set_password(PASSWORD)
    for name, value in extra.items():
        setattr(user, name, value)
    user.save()
    return user


def test_it_renders_keygovs_pages_without_a_policy_violation(watched, organisation):
    """GIVEN an approver (every action on a key is offered to them)
    WHEN they open the overview (charts), the keys, a key's page (forms, htmx panel) and the
    accounts THEN the browser reports no violation and no error."""
    _signed_in("abe", "approver")
    log_in(watched, "abe")

    watched.check("/", "Overview")
    expect(watched.locator("canvas").first).to_be_visible()
    watched.check("/keys/", "Access keys")
    watched.check(f"/keys/{KEY_ID}/", KEY_ID)
    watched.check("/accounts/", "Accounts")
    watched.check("/login/", "Log in")


def test_it_renders_the_admin_without_a_policy_violation(watched, organisation):
    _signed_in("root", None, is_staff=True, is_superuser=True)
    watched.goto("/admin/login/")
    watched.get_by_label("Username").fill("root")
    watched.get_by_label("Password").fill(PASSWORD)
    watched.get_by_role("button", name="Log in").click()

    watched.check("/admin/", "Site administration")
    watched.check("/admin/inventory/account/", "Select account")
    watched.check(f"/admin/inventory/account/{organisation.pk}/change/", "Change account")
    watched.check("/admin/auth/user/add/", "Add user")


def test_it_renders_the_api_docs_without_a_policy_violation(watched):
    _signed_in("vera", "viewer")
    log_in(watched, "vera")

    watched.check("/api/docs/", "keygov API")
    expect(watched.get_by_text("/api/keys/").first).to_be_visible()
