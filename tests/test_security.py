"""Security hardening (issue 6, docs/security.md): headers, cookies, session timeouts, login rate
limiting, the security log, and production settings that pass ``check --deploy``."""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from django.core.cache import caches
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from inventory.roles import VIEWER
from keygov import settings as keygov_settings
from keygov.security import CONTENT_SECURITY_POLICY, LoginThrottle, _is_public, throttle
from tests.gov_factories import AccountFactory, person
from tests.test_settings import start

pytestmark = pytest.mark.django_db

REPO = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery staple"
WRONG = "Tr0ub4dor&3-not-it"
EXPECTED_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'self'; "
    "object-src 'none'"
)
# What a production .env holds (docker-compose.yml behind a TLS proxy).
PRODUCTION = {
    "KEYGOV_SECRET_KEY": "p" * 10 + "Q7w9Zx2LmN4vB8cR1tY6uI3oP5aS0dF9gH2jK4lM7nB",
    "KEYGOV_HTTPS": "true",
    "KEYGOV_ALLOWED_HOSTS": "keygov.example.com,localhost",
    "KEYGOV_CSRF_TRUSTED_ORIGINS": "https://keygov.example.com",
}


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def throttle_cache(settings):
    """Each test counts failures in a fresh in-process cache, with the cache taken as up."""
    settings.CACHES = {
        **settings.CACHES,
        "throttle": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": f"throttle-{uuid.uuid4()}",
        },
    }
    LoginThrottle._down_until = 0.0
    yield caches["throttle"]
    LoginThrottle._down_until = 0.0


def signed_in(username: str, role: str | None = VIEWER):
    user = person(username, role)
    user.set_password(PASSWORD)
    user.save()
    return user


def log_in(client, username: str, password: str, ip: str = "10.0.0.1", path: str = "/login/"):
    return client.post(path, {"username": username, "password": password}, REMOTE_ADDR=ip)


def security_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "keygov.security"]


# --- headers ---------------------------------------------------------------------------------


def test_it_sends_the_content_security_policy_on_pages_errors_and_the_login_page(client):
    assert CONTENT_SECURITY_POLICY == EXPECTED_CSP
    assert "unsafe" not in CONTENT_SECURITY_POLICY

    anonymous = client.get("/login/")
    client.force_login(signed_in("vera"))
    page = client.get(reverse("inventory:overview"))
    missing = client.get("/keys/AKIANOSUCHKEY0000000/")

    assert (anonymous.status_code, page.status_code, missing.status_code) == (200, 200, 404)
    for response in (anonymous, page, missing):
        assert response["Content-Security-Policy"] == EXPECTED_CSP


def test_it_marks_pages_for_signed_in_people_no_store(client):
    """GIVEN a signed-in viewer WHEN they open pages THEN no cache may keep them."""
    client.force_login(signed_in("vera"))

    for name in ("inventory:overview", "inventory:accesskey_list", "inventory:finding_list"):
        response = client.get(reverse(name))
        assert response.status_code == 200
        assert "no-store" in response["Cache-Control"], name


def test_it_serves_static_files_through_whitenoise_without_no_store(client):
    """Static files are the same for everyone: whitenoise answers them (no collectstatic in
    tests: from the source folders) with an ordinary cache header, signed in or not."""
    client.force_login(signed_in("vera"))

    for path in ("/static/css/keygov.css", "/static/admin/js/theme.js"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert "no-store" not in response.get("Cache-Control", ""), path
        assert "max-age" in response["Cache-Control"], path
        b"".join(response.streaming_content)  # close the file


def test_it_leaves_the_cache_headers_of_static_files_and_health_alone():
    assert _is_public("/static/vendor/htmx/htmx.min.js")
    assert _is_public(reverse("inventory:health"))
    assert not _is_public(reverse("inventory:overview"))
    assert not _is_public("/statics/")


def test_it_refuses_inline_script_style_and_event_handlers_in_every_template():
    """The policy allows no inline code: a template that adds some would be broken in the
    browser. (Email templates are not pages: they may style inline.)"""
    offences = []
    for path in (REPO / "templates").rglob("*.html"):
        if "email" in path.parts:
            continue
        text = re.sub(r"{#.*?#}|{% comment %}.*?{% endcomment %}", "", path.read_text(), flags=re.S)
        for pattern in (r"<script(?![^>]*\bsrc=)[^>]*>", r"<style\b", r"\sstyle=", r"\son[a-z]+="):
            offences += [f"{path.name}: {m.group(0)}" for m in re.finditer(pattern, text)]
    # json_script's data blocks are the one allowed kind of script without src.
    assert [o for o in offences if "application/json" not in o] == []


# --- the Django admin under the policy ---------------------------------------------------------


def test_it_keeps_the_admin_working_under_the_policy(client, django_user_model):
    """GIVEN an administrator WHEN they open the admin's index, a list and an add form THEN each
    page renders with the policy, carries no inline script or style, and every script and
    stylesheet it references is served."""
    AccountFactory(account_id="111111111111", name="prod")
    client.force_login(django_user_model.objects.create_superuser("root", "root@example.com"))

    assets = set()
    for url in ("/admin/", "/admin/inventory/account/", "/admin/inventory/account/add/"):
        response = client.get(url)
        assert response.status_code == 200, url
        assert response["Content-Security-Policy"] == EXPECTED_CSP
        html = response.content.decode()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), url
        assert not re.search(r"<style\b|\sstyle=\"|\son[a-z]+=\"", html), url
        assets |= set(re.findall(r'<(?:script|link)[^>]+(?:src|href)="(/[^"]+)"', html))

    assert any(a.endswith(".js") for a in assets) and any(a.endswith(".css") for a in assets)
    for asset in sorted(assets):
        response = client.get(asset)
        assert response.status_code == 200, asset
        if hasattr(response, "streaming_content"):
            b"".join(response.streaming_content)


# --- session timeouts --------------------------------------------------------------------------

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def test_it_signs_out_after_thirty_idle_minutes(client, caplog):
    """GIVEN a viewer who signed in at 08:00 and is active every 29 minutes WHEN they then stay
    away 30 minutes THEN the next request goes to the login page, which says why."""
    caplog.set_level(logging.INFO, logger="keygov.security")
    overview = reverse("inventory:overview")
    with time_machine.travel(START, tick=False) as clock:
        client.force_login(signed_in("vera"))
        for _ in range(3):
            clock.shift(timedelta(minutes=29))
            assert client.get(overview).status_code == 200

        clock.shift(timedelta(minutes=30))
        response = client.get(overview, follow=True)

    assert response.redirect_chain[0][0].startswith("/login/?next=")
    assert "after 30 minutes without activity" in response.content.decode()
    assert any("session_expired user='vera'" in line and "reason=idle" in line
               for line in security_lines(caplog))  # fmt: skip


def test_it_signs_out_twelve_hours_after_login_however_active(client, caplog):
    """GIVEN a viewer active every 20 minutes since 08:00 WHEN 12 hours have passed THEN they
    are signed out, though never idle."""
    caplog.set_level(logging.INFO, logger="keygov.security")
    overview = reverse("inventory:overview")
    with time_machine.travel(START, tick=False) as clock:
        client.force_login(signed_in("vera"))
        for _ in range(35):  # 11 h 40 min
            clock.shift(timedelta(minutes=20))
            assert client.get(overview).status_code == 200

        clock.shift(timedelta(minutes=20))
        response = client.get(overview, follow=True)

    assert response.redirect_chain[0][0].startswith("/login/?next=")
    assert "a session lasts at most 12 hours" in response.content.decode()
    assert any("reason=absolute" in line for line in security_lines(caplog))


def test_it_reads_the_timeouts_from_the_environment(settings, client):
    settings.KEYGOV_SESSION_IDLE_MINUTES = 5
    with time_machine.travel(START, tick=False) as clock:
        client.force_login(signed_in("vera"))
        clock.shift(timedelta(minutes=4))
        assert client.get(reverse("inventory:overview")).status_code == 200
        clock.shift(timedelta(minutes=5))
        assert client.get(reverse("inventory:overview")).status_code == 302


def test_it_writes_the_session_at_most_once_a_minute(client):
    """Being seen is recorded once a minute, not on every request (a session write is a
    database write): a second request within the minute costs no extra query."""
    overview = reverse("inventory:account_list")
    with time_machine.travel(START, tick=False) as clock:
        client.force_login(signed_in("vera"))
        clock.shift(timedelta(minutes=2))
        client.get(overview)  # writes the session
        with CaptureQueriesContext(connection) as writing:
            clock.shift(timedelta(minutes=2))
            client.get(overview)
        with CaptureQueriesContext(connection) as reading:
            clock.shift(timedelta(seconds=10))
            client.get(overview)

    def session_writes(ctx):
        return [q for q in ctx.captured_queries if "django_session" in q["sql"]
                and not q["sql"].lstrip().upper().startswith("SELECT")]  # fmt: skip

    assert session_writes(writing) and not session_writes(reading)


# --- login rate limiting -----------------------------------------------------------------------


def test_it_refuses_the_sixth_attempt_after_five_failures(client, caplog):
    """GIVEN five failed log-ins for ada from one address WHEN a sixth comes, even with the right
    password THEN it is refused with 429 and the login page says to wait; nobody is signed in."""
    caplog.set_level(logging.INFO, logger="keygov.security")
    signed_in("ada")
    for _ in range(5):
        response = log_in(client, "ada", WRONG)
        assert response.status_code == 200
        assert "correct username and password" in response.content.decode()

    refused = log_in(client, "ada", PASSWORD)

    assert refused.status_code == 429
    assert refused["Retry-After"] == "900"
    assert "Too many failed log-ins" in refused.content.decode()
    assert "Wait 15 minutes" in refused.content.decode()
    assert "_auth_user_id" not in client.session
    assert any(line.startswith("login_throttled user='ada'") for line in security_lines(caplog))


def test_it_lets_people_in_again_fifteen_minutes_after_the_last_failure(client):
    signed_in("ada")
    with time_machine.travel(START, tick=False) as clock:
        for _ in range(5):
            log_in(client, "ada", WRONG)
        clock.shift(timedelta(minutes=14))
        assert log_in(client, "ada", PASSWORD).status_code == 429
        clock.shift(timedelta(minutes=1, seconds=1))
        assert log_in(client, "ada", PASSWORD).status_code == 302


def test_it_clears_the_count_on_a_successful_login(client):
    """GIVEN four failures THEN a success starts the count again: five more failures are
    answered as failures, only the attempt after them is refused."""
    signed_in("ada")
    for _ in range(4):
        log_in(client, "ada", WRONG)
    assert log_in(client, "ada", PASSWORD).status_code == 302
    client.post("/logout/")

    statuses = [log_in(client, "ada", WRONG).status_code for _ in range(5)]
    assert statuses == [200] * 5
    assert log_in(client, "ada", PASSWORD).status_code == 429


def test_it_counts_per_username_and_address(client):
    """ada is locked out from 10.0.0.1 only: ada from elsewhere and bob from there still get in."""
    signed_in("ada")
    signed_in("bob")
    for _ in range(5):
        log_in(client, "ada", WRONG, ip="10.0.0.1")

    assert log_in(client, "ada", PASSWORD, ip="10.0.0.1").status_code == 429
    assert log_in(client, "bob", PASSWORD, ip="10.0.0.1").status_code == 302
    client.post("/logout/")
    assert log_in(client, "ada", PASSWORD, ip="10.9.9.9").status_code == 302
    # The username's case does not buy more attempts.
    assert log_in(client, "ADA", PASSWORD, ip="10.0.0.1").status_code == 429


def test_it_rate_limits_the_admin_login_too(client, django_user_model):
    django_user_model.objects.create_superuser("root", "root@example.com", PASSWORD)
    for _ in range(5):
        assert log_in(client, "root", WRONG, path="/admin/login/").status_code == 200
    assert log_in(client, "root", PASSWORD, path="/admin/login/").status_code == 429


def test_it_takes_the_address_from_the_proxy_when_told(settings, client):
    """Behind a proxy every connection comes from the proxy: with KEYGOV_TRUST_X_FORWARDED_FOR
    the last X-Forwarded-For entry tells people apart (what a client put before it is ignored)."""
    settings.KEYGOV_TRUST_X_FORWARDED_FOR = True
    signed_in("ada")
    for _ in range(5):
        client.post("/login/", {"username": "ada", "password": WRONG},
                    REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="1.1.1.1, 203.0.113.7")  # fmt: skip

    spoofed = client.post("/login/", {"username": "ada", "password": PASSWORD},
                          REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="9.9.9.9, 203.0.113.7")  # fmt: skip
    other = client.post("/login/", {"username": "ada", "password": PASSWORD},
                        REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="198.51.100.4")  # fmt: skip
    assert (spoofed.status_code, other.status_code) == (429, 302)


@pytest.fixture
def dead_redis_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: connections are refused


@pytest.fixture
def hung_redis_port():
    """A server that accepts connections and never answers (Redis hung)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held = []

    def accept():
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield server.getsockname()[1]
    server.close()
    for conn in held:
        conn.close()


@pytest.mark.parametrize("redis", ["dead_redis_port", "hung_redis_port"])
def test_it_lets_people_log_in_quickly_when_redis_is_down_or_hung(
    redis, request, settings, client, caplog
):
    """The counts live in Redis: when it refuses connections or never answers, a login still
    works, within a second or so (short timeouts), and the log says the limit is off."""
    port = request.getfixturevalue(redis)
    settings.CACHES = {**settings.CACHES, "throttle": redis_cache(f"redis://127.0.0.1:{port}/0")}
    caplog.set_level(logging.INFO, logger="keygov.security")
    signed_in("ada")

    started = time.monotonic()
    failed = log_in(client, "ada", WRONG)
    succeeded = log_in(client, "ada", PASSWORD)
    elapsed = time.monotonic() - started

    assert (failed.status_code, succeeded.status_code) == (200, 302)
    assert elapsed < 2.5, elapsed
    assert any("login rate limiting unavailable" in line for line in security_lines(caplog))


def redis_cache(url: str) -> dict:
    """The throttle cache as keygov/settings.py configures it for ``url``."""
    return {**keygov_settings.CACHES["throttle"], "LOCATION": url} | (
        {} if keygov_settings.REDIS_URL else REDIS_CACHE_WITHOUT_REDIS_URL
    )


# When the suite runs without REDIS_URL, settings.py configured no Redis cache to copy.
REDIS_CACHE_WITHOUT_REDIS_URL = {
    "BACKEND": "django.core.cache.backends.redis.RedisCache",
    "KEY_PREFIX": "keygov-throttle",
    "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
}


def test_it_shares_the_counts_through_redis_when_there_is_one(settings):
    """With REDIS_URL (production, and this test suite) the counts are in Redis, so every
    gunicorn worker sees them: another process's cache client sees the failures recorded here,
    with an expiry."""
    if not keygov_settings.REDIS_URL:
        pytest.skip("REDIS_URL is not set")
    settings.CACHES = {**settings.CACHES, "throttle": redis_cache(keygov_settings.REDIS_URL)}
    username, ip = f"ada-{uuid.uuid4()}", "10.0.0.1"
    key = LoginThrottle.key(username, ip)
    try:
        for _ in range(5):
            throttle.record_failure(username, ip)
        other_worker = caches.create_connection("throttle")
        assert other_worker.get(key) == 5
        assert 0 < other_worker._cache.get_client(key).ttl(other_worker.make_key(key)) <= 900
        assert throttle.is_locked(username, ip)
    finally:
        caches["throttle"].delete(key)


def test_it_counts_failures_in_the_configured_throttle_cache(throttle_cache):
    for _ in range(3):
        throttle.record_failure("ada", "10.0.0.1")
    assert throttle_cache.get(LoginThrottle.key("ada", "10.0.0.1")) == 3
    assert not throttle.is_locked("ada", "10.0.0.1")


# --- the security log ----------------------------------------------------------------------------


def test_it_logs_login_success_and_failure_without_the_password(client, caplog):
    caplog.set_level(logging.INFO, logger="keygov.security")
    signed_in("ada")

    log_in(client, "ada", WRONG, ip="192.0.2.10")
    log_in(client, "ada", PASSWORD, ip="192.0.2.10")

    lines = security_lines(caplog)
    assert "login_failed user='ada' ip=192.0.2.10 path='/login/'" in lines
    assert "login_succeeded user='ada' ip=192.0.2.10 path='/login/'" in lines
    failed = next(r for r in caplog.records if getattr(r, "event", "") == "login_failed")
    assert (failed.levelname, failed.username, failed.client_ip) == ("WARNING", "ada", "192.0.2.10")
    assert WRONG not in caplog.text and PASSWORD not in caplog.text


def test_it_logs_refused_actions(client, caplog):
    """A signed-in person without a role is refused every page (403); a viewer is refused
    "Collect now" (admins only). Both are logged with who, where from and what."""
    caplog.set_level(logging.INFO, logger="keygov.security")
    account = AccountFactory(account_id="111111111111")
    client.force_login(signed_in("nobody", role=None))
    assert client.get(reverse("inventory:overview"), REMOTE_ADDR="192.0.2.7").status_code == 403
    client.force_login(signed_in("vera"))
    collect = reverse("inventory:account_collect", args=[account.account_id])
    assert client.post(collect, REMOTE_ADDR="192.0.2.8").status_code == 403

    lines = security_lines(caplog)
    assert "refused user='nobody' ip=192.0.2.7 path='/' method=GET status=403" in lines
    assert f"refused user='vera' ip=192.0.2.8 path={collect!r} method=POST status=403" in lines


def test_it_cannot_be_made_to_forge_log_lines(client, caplog):
    caplog.set_level(logging.INFO, logger="keygov.security")
    log_in(client, "ada\nlogin_succeeded user='root'", WRONG)
    assert all("\n" not in line for line in security_lines(caplog))


# --- production settings -----------------------------------------------------------------------

PRINT_RESPONSES = """
import json, django
django.setup()
from django.core.management import call_command
from django.test import Client
call_command("migrate", verbosity=0)
from django.contrib.auth.models import User
User.objects.create_user("ada", password="pw-of-the-subprocess")
https = Client(HTTP_HOST="keygov.example.com", HTTP_X_FORWARDED_PROTO="https")
page = https.get("/login/")
login = https.post("/login/", {"username": "ada", "password": "pw-of-the-subprocess"})
plain = Client(HTTP_HOST="keygov.example.com")
def cookie(m):
    return {k: m[k] for k in ("secure", "httponly", "samesite", "path", "domain")}
print(json.dumps({
    "hsts": page.get("Strict-Transport-Security"),
    "csp": page.get("Content-Security-Policy"),
    "login": login.status_code,
    "cookies": {name: cookie(m) for r in (page, login) for name, m in r.cookies.items()},
    "http": [plain.get("/login/").status_code, plain.get("/login/").get("Location")],
    "health": plain.get("/health/").status_code,
}))
"""


def test_it_hardens_cookies_and_transport_in_production(tmp_path):
    """GIVEN production's environment (KEYGOV_HTTPS on, behind a TLS proxy) THEN pages carry
    HSTS; the session and CSRF cookies are __Host- cookies: Secure, Path=/, no Domain, SameSite
    Lax, the session's HttpOnly; plain http:// is redirected, except the health check."""
    run = start(tmp_path, "-c", PRINT_RESPONSES, DATABASE_URL="sqlite://:memory:", **PRODUCTION)
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout.strip().splitlines()[-1])

    assert seen["hsts"] == "max-age=31536000; includeSubDomains"
    assert seen["csp"] == EXPECTED_CSP
    assert seen["login"] == 302
    session, csrf = seen["cookies"]["__Host-sessionid"], seen["cookies"]["__Host-csrftoken"]
    for attributes in (session, csrf):
        assert attributes["secure"] is True
        assert (attributes["path"], attributes["domain"], attributes["samesite"]) == (
            "/",
            "",
            "Lax",
        )
    assert session["httponly"] is True
    assert seen["http"] == [301, "https://keygov.example.com/login/"]
    assert seen["health"] == 200


def test_it_keeps_plain_cookies_on_the_embedded_default(tmp_path):
    """Without HTTPS a __Host- or Secure cookie would be dropped by the browser: the embedded
    default on http://127.0.0.1 keeps Django's names and no HSTS."""
    run = start(tmp_path, "-c", PRINT_SETTINGS_COOKIES)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "sessionid|csrftoken|False|0|False"


PRINT_SETTINGS_COOKIES = (
    "import django; django.setup(); from django.conf import settings as s; "
    "print(s.SESSION_COOKIE_NAME, s.CSRF_COOKIE_NAME, s.SESSION_COOKIE_SECURE, "
    "s.SECURE_HSTS_SECONDS, s.SECURE_SSL_REDIRECT, sep='|')"
)


def test_it_passes_the_deploy_check_with_production_settings(tmp_path):
    run = start(tmp_path, "manage.py", "check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert run.returncode == 0, run.stdout + run.stderr


def test_it_fails_the_deploy_check_without_https(tmp_path):
    """The check above is not vacuous: without KEYGOV_HTTPS it names what is missing."""
    env = {k: v for k, v in PRODUCTION.items() if k != "KEYGOV_HTTPS"}
    run = start(tmp_path, "manage.py", "check", "--deploy", "--fail-level", "WARNING", **env)
    assert run.returncode != 0
    for check in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert check in run.stdout + run.stderr


def test_it_refuses_a_bad_proxy_header_name(tmp_path):
    run = start(tmp_path, "-c", "import django; django.setup()",
                KEYGOV_PROXY_SSL_HEADER="X-Forwarded Proto", **PRODUCTION)  # fmt: skip
    assert run.returncode != 0
    assert "KEYGOV_PROXY_SSL_HEADER" in run.stderr


def test_it_serves_hashed_compressed_static_files_with_the_manifest(tmp_path):
    """GIVEN the Docker image's way (collectstatic, then KEYGOV_STATIC_MANIFEST on) THEN pages
    link hashed file names and whitenoise serves them cached for a year."""
    env = {"KEYGOV_STATIC_MANIFEST": "true", "DATABASE_URL": "sqlite://:memory:"}
    collect = start(tmp_path, "manage.py", "collectstatic", "--noinput", "-v", "0", **env)
    assert collect.returncode == 0, collect.stderr
    script = (
        "import re, django; django.setup(); from django.test import Client; "
        "from django.core.management import call_command; call_command('migrate', verbosity=0); "
        "c = Client(HTTP_HOST='localhost'); html = c.get('/login/').content.decode(); "
        "url = re.search(r'href=\"(/static/css/keygov\\.[0-9a-f]{12}\\.css)\"', html).group(1); "
        "r = c.get(url, HTTP_ACCEPT_ENCODING='gzip'); "
        "print(r.status_code, r['Cache-Control'], r.get('Content-Encoding'), sep='|')"
    )
    run = start(tmp_path, "-c", script, **env)
    assert run.returncode == 0, run.stderr
    status, cache_control, encoding = run.stdout.strip().splitlines()[-1].split("|")
    assert (status, encoding) == ("200", "gzip")
    assert "max-age=315360000" in cache_control and "immutable" in cache_control
