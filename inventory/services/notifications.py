"""Sending e-mail and Slack messages: rendered from templates/email/, sent after commit, and a
failure to send is logged, never raised into the change that caused it.

Every message goes through Django's e-mail backend (``EMAIL_BACKEND``: SMTP when
``KEYGOV_SMTP_HOST`` is set, the console otherwise) and, when ``KEYGOV_SLACK_WEBHOOK_URL`` is set,
a one-line summary goes to that Slack-compatible webhook.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.db.models import Q
from django.template.loader import render_to_string

from inventory.roles import ADMIN, APPROVER

log = logging.getLogger(__name__)

SLACK_TIMEOUT = 5  # seconds: a slow chat service must not hold a worker


@dataclass(frozen=True)
class Message:
    """One e-mail ready to send: plain text and HTML bodies rendered from the same context."""

    to: tuple[str, ...]
    subject: str
    text: str
    html: str


def absolute_url(path: str) -> str:
    """A link for a message: ``KEYGOV_BASE_URL`` followed by the page's path."""
    return settings.KEYGOV_BASE_URL.rstrip("/") + path


def render_message(to: Iterable[str], subject: str, template: str, context: dict) -> Message:
    """Render ``templates/email/<template>.txt`` and ``.html`` with ``context``."""
    context = {"subject": subject, "base_url": settings.KEYGOV_BASE_URL.rstrip("/"), **context}
    return Message(
        to=tuple(sorted(set(to))),
        subject=subject,
        text=render_to_string(f"email/{template}.txt", context),
        html=render_to_string(f"email/{template}.html", context),
    )


def send_message(message: Message) -> bool:
    """Send one e-mail now; True when the backend accepted it. A failure is logged."""
    if not message.to:
        return False
    mail = EmailMultiAlternatives(
        subject=message.subject,
        body=message.text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=list(message.to),
    )
    mail.attach_alternative(message.html, "text/html")
    try:
        return mail.send() == 1
    except Exception:
        # SMTP refusals, timeouts, DNS: the caller decides what an unsent message means.
        log.exception("e-mail %r to %s not sent", message.subject, ", ".join(message.to))
        return False


def post_to_slack(text: str) -> bool:
    """POST ``{"text": text}`` to ``KEYGOV_SLACK_WEBHOOK_URL`` when set; True when it answered
    2xx. Failures are logged, never raised: the e-mail is the message of record."""
    url = settings.KEYGOV_SLACK_WEBHOOK_URL
    if not url:
        return False
    request = urllib.request.Request(  # noqa: S310 (the URL is validated as https:// in settings)
        url,
        data=json.dumps({"text": text}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=SLACK_TIMEOUT) as response:  # noqa: S310  # nosec B310  # https:// only (settings)
            return 200 <= response.status < 300
    except Exception as exc:
        log.warning("Slack webhook not reached: %s", exc)
        return False


def emails_of_role(role: str) -> list[str]:
    """E-mail addresses of the active users holding ``role`` or above (superusers are admins)."""
    ranks = {APPROVER: [APPROVER, ADMIN], ADMIN: [ADMIN]}[role]
    users = (
        get_user_model()
        .objects.filter(is_active=True)
        .filter(Q(groups__name__in=ranks) | Q(is_superuser=True))
        .exclude(email="")
        .values_list("email", flat=True)
        .distinct()
    )
    return sorted({email.strip().lower() for email in users})


def _email(user) -> str:
    return (getattr(user, "email", "") or "").strip().lower() if user is not None else ""


def transition_recipients(obj, actor) -> list[str]:
    """Who hears of a transition of a request-like object: its requester and its decider and,
    while it waits for a decision, every approver. Never the person who acted (they know)."""
    status = str(getattr(obj, "status", ""))
    people = {_email(getattr(obj, "requested_by", None)), _email(getattr(obj, "decided_by", None))}
    if status == "pending":
        people.update(emails_of_role(APPROVER))
    people.discard(_email(actor))
    people.discard("")
    return sorted(people)


def notify_transition(obj, action: str, actor, *, recipients: Iterable[str] | None = None) -> None:
    """Mail the people concerned by a transition of ``obj`` (a key request, an exception...).

    Call it inside the transaction that makes the transition: the messages are built now and
    sent only once that transaction commits, so a rolled-back transition mails nobody. A
    failure to send is logged and never undoes the transition.

    - ``obj``: the changed object. Its ``str()`` names it in the subject; ``obj.status`` is
      shown; ``obj.get_absolute_url()``, when the model has it, gives the link.
    - ``action``: what happened, in words or as a dotted audit action (``"key_request.approve"``
      reads as "approve").
    - ``actor``: the user who acted, or None for keygov itself (a task).
    - ``recipients``: e-mail addresses; by default :func:`transition_recipients` (requester,
      decider, and every approver while the object is pending, minus the actor).

    A one-line summary also goes to the Slack webhook when one is configured.
    """
    to = sorted(set(recipients)) if recipients is not None else transition_recipients(obj, actor)
    verb = action.rsplit(".", 1)[-1].replace("_", " ")
    who = actor.get_username() if actor is not None else "keygov"
    status = getattr(obj, "get_status_display", lambda: getattr(obj, "status", ""))()
    url = absolute_url(obj.get_absolute_url()) if hasattr(obj, "get_absolute_url") else ""
    subject = f"[keygov] {obj}: {verb}"
    message = render_message(
        to,
        subject,
        "transition",
        {"object": str(obj), "action": verb, "actor": who, "status": status, "url": url},
    )
    slack = f"{obj}: {verb} by {who} (now {status}) {url}".strip()

    def send() -> None:
        if message.to:
            send_message(message)
        post_to_slack(slack)

    transaction.on_commit(send)
