"""Where is a key used: start a CloudTrail lookup (POST) and the panel the key page polls (GET).

Who may start one: the key's owner, or any approver or admin (``can_manage_key``) — the people
who rotate keys. A lookup costs CloudTrail calls against the account's quota (2 a second a
region, shared with everything else reading that account's event history), so viewers see the
cached result but do not start new lookups. Reading the panel needs the viewer role.
"""

from __future__ import annotations

from datetime import datetime

from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from inventory import tasks
from inventory.models import AccessKey
from inventory.roles import OWNER, VIEWER, can_manage_key
from inventory.services import usage
from inventory.services.usage import DIMENSIONS, UsageView
from inventory.views.base import role_required

TEMPLATE = "inventory/_key_usage.html"

DIMENSION_TITLES = {
    "event_sources": "Services (event sources)",
    "event_names": "API calls (event names)",
    "source_ips": "Source IP addresses",
    "user_agents": "User agents",
    "regions": "Regions",
}


def _rows(summary: dict) -> list[dict]:
    """The summary's dimensions for the template, timestamps as datetimes."""
    tables = []
    for name in DIMENSIONS:
        rows = [
            {
                **row,
                "first_seen": datetime.fromisoformat(row["first_seen"]),
                "last_seen": datetime.fromisoformat(row["last_seen"]),
            }
            for row in summary.get(name, [])
        ]
        tables.append(
            {
                "name": name,
                "title": DIMENSION_TITLES[name],
                "rows": rows,
                "others": summary.get(f"{name}_others", 0),
            }
        )
    return tables


def usage_context(request, key: AccessKey, policy=None) -> dict:
    """What ``inventory/_key_usage.html`` needs; the key page includes the partial with it
    (and hands over the account's policy, which it has read already)."""
    view: UsageView = usage.usage_of(key, policy=policy)
    summary = view.lookup.summary if view.lookup and view.lookup.summary else None
    return {
        "key": key,
        "usage": view,
        "usage_tables": _rows(summary) if summary else [],
        "usage_summary": summary,
        "usage_window_days": usage.WINDOW_DAYS,
        "can_start_usage": can_manage_key(request.user, key) and not view.running,
    }


def _key(access_key_id: str) -> AccessKey:
    return get_object_or_404(
        AccessKey.objects.select_related("account", "user"), access_key_id=access_key_id
    )


@require_POST
@role_required(OWNER)
def start_lookup(request, access_key_id: str):
    """Start a lookup unless a fresh or running one exists; htmx gets the panel back, a plain
    form post goes back to the key page."""
    key = _key(access_key_id)
    if not can_manage_key(request.user, key):
        raise PermissionDenied("Only the key's owner, an approver or an admin can look it up.")
    latest = usage.latest_lookup(key)
    if not usage.is_fresh(latest, timezone.now()):
        lookup, created = usage.start_lookup(key, by=request.user)
        if created:
            try:
                tasks.lookup_key_usage.delay(key.pk)
            except Exception as exc:  # the broker is down: say so rather than spin forever
                usage.fail_lookup(lookup, f"The task queue is unavailable ({exc}); try again.")
    if request.headers.get("HX-Request"):
        return render(request, TEMPLATE, usage_context(request, key))
    return redirect("inventory:accesskey_detail", access_key_id=key.access_key_id)


@require_GET
@role_required(VIEWER)
def lookup_status(request, access_key_id: str):
    """The usage panel; while a lookup runs it asks for itself again every 2 seconds."""
    key = _key(access_key_id)
    return render(request, TEMPLATE, usage_context(request, key))
