"""The security log: sign-ins, failed sign-ins, sign-outs and refused actions.

Everything goes to the logger ``keygov.security`` as one line a event, with the username, the
client's address and the path — never a password, a token or a query string (a query string can
carry a secret). Each record also carries the same fields as attributes (``event``, ``username``,
``client_ip``, ``path``) for a structured formatter.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver
from django.http import HttpRequest

logger = logging.getLogger("keygov.security")

# Longer than any username keygov issues (Django's limit is 150): a pasted blob is cut short.
MAX_LOGGED_CHARS = 150


def client_ip(request: HttpRequest | None) -> str:
    """The address of the person behind the request.

    Behind a proxy every request comes from the proxy's address: with
    ``KEYGOV_TRUST_X_FORWARDED_FOR`` on, the last address in X-Forwarded-For is used instead — the
    one the proxy itself saw (addresses before it are whatever the client claimed).
    """
    if request is None:
        return "-"
    if settings.KEYGOV_TRUST_X_FORWARDED_FOR:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        last = forwarded.rsplit(",", 1)[-1].strip()
        if last:
            return last[:64]
    return request.META.get("REMOTE_ADDR") or "-"


def _field(value: object) -> str:
    # repr() quotes and escapes control characters: a username with a newline cannot forge a line.
    return repr(str(value)[:MAX_LOGGED_CHARS])


def log_event(
    level: int, event: str, request: HttpRequest | None, username: str, **details: object
) -> None:
    """One line in the security log: ``event user='…' ip=… path='…'`` and any ``details``."""
    path = request.path if request is not None else "-"
    ip = client_ip(request)
    text = f"{event} user={_field(username)} ip={ip} path={_field(path)}"
    for key, value in details.items():
        text += f" {key}={value}"
    logger.log(
        level,
        "%s",
        text,
        extra={"event": event, "username": str(username)[:MAX_LOGGED_CHARS], "client_ip": ip,
               "path": path, **details},
    )  # fmt: skip


def username_of(request: HttpRequest) -> str:
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return user.get_username()
    return ""


@receiver(user_logged_in, dispatch_uid="keygov-log-login")
def _logged_in(sender, request, user, **kwargs) -> None:
    log_event(logging.INFO, "login_succeeded", request, user.get_username())


@receiver(user_login_failed, dispatch_uid="keygov-log-login-failed")
def _login_failed(sender, credentials, request=None, **kwargs) -> None:
    # ``credentials`` has the password already masked by Django; only the username is read.
    log_event(logging.WARNING, "login_failed", request, credentials.get("username", ""))


@receiver(user_logged_out, dispatch_uid="keygov-log-logout")
def _logged_out(sender, request, user, **kwargs) -> None:
    if user is not None:
        log_event(logging.INFO, "logout", request, user.get_username())
