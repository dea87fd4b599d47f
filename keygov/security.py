"""keygov's own security middleware (docs/security.md): the Content-Security-Policy, no caching of
signed-in pages, session idle and absolute timeouts, and login rate limiting.

Django's SecurityMiddleware does HSTS, the HTTPS redirect, nosniff and the referrer policy; the
settings for those come from the environment (``KEYGOV_HTTPS``).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.core.cache import caches
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render, resolve_url
from django.urls import NoReverseMatch, reverse
from django.utils.cache import add_never_cache_headers

from keygov.auth_logging import client_ip, log_event, logger, username_of

# No inline script or style anywhere (templates use json_script and static files): the policy
# needs no 'unsafe-inline' and no nonce. Chart.js draws on a canvas; htmx is told not to inject a
# <style> (the htmx-config meta in base.html); Bootstrap sets element.style via the CSSOM, which a
# policy does not restrict. data: images: Bootstrap's icons (navbar toggler, close button).
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "form-action 'self'",
        "base-uri 'self'",
        "object-src 'none'",
    )
)

# Session keys: when the person signed in and when they were last seen (epoch seconds).
SESSION_LOGIN_AT = "keygov_login_at"
SESSION_SEEN_AT = "keygov_seen_at"
# The last-seen time is written at most once a minute, not on every request: a session write is a
# database write. The idle timeout is therefore exact to the minute.
SEEN_RESOLUTION = 60


class ContentSecurityPolicyMiddleware:
    """Adds the Content-Security-Policy to every response keygov renders (admin included)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        return response


class SessionTimeoutMiddleware:
    """Signs a person out after ``KEYGOV_SESSION_IDLE_MINUTES`` without a request, and
    ``KEYGOV_SESSION_MAX_HOURS`` after they signed in whatever they do; the request then goes on
    as anonymous (the login page, with a message saying why)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            self._check(request)
        return self.get_response(request)

    def _check(self, request: HttpRequest) -> None:
        session = request.session
        now = time.time()
        login_at = session.get(SESSION_LOGIN_AT)
        seen_at = session.get(SESSION_SEEN_AT)
        if login_at is None:
            # A session from before these timeouts existed: its clocks start now.
            session[SESSION_LOGIN_AT] = session[SESSION_SEEN_AT] = now
            return
        idle = settings.KEYGOV_SESSION_IDLE_MINUTES * 60
        longest = settings.KEYGOV_SESSION_MAX_HOURS * 3600
        if now - login_at >= longest:
            reason = "absolute"
            text = (
                f"You were signed out: a session lasts at most "
                f"{settings.KEYGOV_SESSION_MAX_HOURS} hours. Log in again."
            )
        elif seen_at is not None and now - seen_at >= idle:
            reason = "idle"
            text = (
                f"You were signed out after {settings.KEYGOV_SESSION_IDLE_MINUTES} minutes "
                f"without activity. Log in again."
            )
        else:
            if seen_at is None or now - seen_at >= SEEN_RESOLUTION:
                session[SESSION_SEEN_AT] = now
            return
        username = request.user.get_username()
        logout(request)
        log_event(logging.INFO, "session_expired", request, username, reason=reason)
        messages.info(request, text)


@receiver(user_logged_in, dispatch_uid="keygov-session-clock")
def _start_session_clock(sender, request, user, **kwargs) -> None:
    if request is not None and hasattr(request, "session"):
        request.session[SESSION_LOGIN_AT] = request.session[SESSION_SEEN_AT] = time.time()


class PrivateResponseMiddleware:
    """``Cache-Control: no-store`` on every response to a signed-in person (a shared cache or the
    browser's history must not keep a page of keys), and a security-log line for each refused
    action (403: PermissionDenied, a role check, a CSRF failure)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.status_code == 403:
            log_event(
                logging.WARNING,
                "refused",
                request,
                username_of(request),
                method=request.method,
                status=403,
            )
        if username_of(request) and not _is_public(request.path):
            add_never_cache_headers(response)
        return response


def _is_public(path: str) -> bool:
    """Static files and the health check are the same for everyone: caching them is fine."""
    static = "/" + settings.STATIC_URL.lstrip("/")
    return path.startswith(static) or path == reverse("inventory:health")


# --- Login rate limiting ---------------------------------------------------------------------


class LoginThrottle:
    """Counts failed sign-ins per username and client address in the ``throttle`` cache (Redis
    when ``REDIS_URL`` is set, so every gunicorn worker sees the same counts).

    After ``KEYGOV_LOGIN_FAILURE_LIMIT`` failures, further attempts for that username from that
    address are refused until ``KEYGOV_LOGIN_LOCKOUT_MINUTES`` have passed since the last failure;
    a successful sign-in clears the count. When the cache does not answer, sign-in works without
    a limit (fail open, with a warning in the log): a broken Redis must not lock everyone out.
    """

    # After a cache failure, skip the cache for this long: a hung Redis costs one short timeout
    # per this many seconds, not one per login.
    RETRY_AFTER_FAILURE = 30.0
    _down_until = 0.0

    @property
    def cache(self):
        return caches["throttle"]

    @property
    def window(self) -> int:
        return settings.KEYGOV_LOGIN_LOCKOUT_MINUTES * 60

    @staticmethod
    def key(username: str, ip: str) -> str:
        digest = hashlib.sha256(f"{username.strip().casefold()}\n{ip}".encode()).hexdigest()
        return f"login-failures:{digest}"

    def _available(self) -> bool:
        return time.monotonic() >= LoginThrottle._down_until

    def _failed(self, exc: Exception) -> None:
        LoginThrottle._down_until = time.monotonic() + self.RETRY_AFTER_FAILURE
        logger.warning(
            "login rate limiting unavailable (%s: %s): sign-ins are not limited for %d s",
            type(exc).__name__,
            exc,
            self.RETRY_AFTER_FAILURE,
        )

    def failures(self, username: str, ip: str) -> int:
        if not self._available():
            return 0
        try:
            return int(self.cache.get(self.key(username, ip), 0))
        except Exception as exc:  # any cache failure: fail open
            self._failed(exc)
            return 0

    def is_locked(self, username: str, ip: str) -> bool:
        return self.failures(username, ip) >= settings.KEYGOV_LOGIN_FAILURE_LIMIT

    def record_failure(self, username: str, ip: str) -> None:
        if not self._available():
            return
        key = self.key(username, ip)
        try:
            if not self.cache.add(key, 1, self.window):
                try:
                    self.cache.incr(key)
                except ValueError:  # expired between add() and incr()
                    self.cache.set(key, 1, self.window)
                # The window runs from the latest failure (and a key that lost its expiry in a
                # race gets one back).
                self.cache.touch(key, self.window)
        except Exception as exc:  # any cache failure: fail open
            self._failed(exc)

    def reset(self, username: str, ip: str) -> None:
        if not self._available():
            return
        try:
            self.cache.delete(self.key(username, ip))
        except Exception as exc:  # any cache failure: fail open
            self._failed(exc)


throttle = LoginThrottle()


@receiver(user_login_failed, dispatch_uid="keygov-throttle-failure")
def _count_failure(sender, credentials, request=None, **kwargs) -> None:
    # Without a request (a script calling authenticate()) there is no address to count against.
    if request is not None:
        throttle.record_failure(str(credentials.get("username", "")), client_ip(request))


@receiver(user_logged_in, dispatch_uid="keygov-throttle-success")
def _clear_failures(sender, request, user, **kwargs) -> None:
    if request is not None:
        throttle.reset(user.get_username(), client_ip(request))


def _login_paths() -> set[str]:
    paths = {resolve_url(settings.LOGIN_URL)}
    with contextlib.suppress(NoReverseMatch):
        paths.add(reverse("admin:login"))
    return paths


class LoginThrottleMiddleware:
    """Refuses a sign-in (HTTP 429, the login page saying to wait) for a username and address
    that have failed too often; the password is not even checked."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method == "POST" and request.path in _login_paths():
            username = request.POST.get("username", "")
            if username and throttle.is_locked(username, client_ip(request)):
                return self._refuse(request, username)
        return self.get_response(request)

    def _refuse(self, request: HttpRequest, username: str) -> HttpResponse:
        minutes = settings.KEYGOV_LOGIN_LOCKOUT_MINUTES
        log_event(logging.WARNING, "login_throttled", request, username)
        form = AuthenticationForm(request, initial={"username": username})
        form.cleaned_data = {}  # an unbound form: add_error() expects it
        form.add_error(
            None,
            f"Too many failed log-ins for this username from your address. Wait {minutes} "
            f"minutes, then try again.",
        )
        response = render(
            request,
            "registration/login.html",
            {"form": form, "next": request.POST.get("next", "")},
            status=429,
        )
        response["Retry-After"] = str(minutes * 60)
        return response
