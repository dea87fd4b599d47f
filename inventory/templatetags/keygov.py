"""Filters every page uses: states as coloured badges, UTC timestamps, relative ages."""

from __future__ import annotations

from datetime import UTC, datetime

from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from inventory.choices import KeyState
from inventory.policy import whole_days

register = template.Library()

_LABELS = dict(KeyState.choices)


@register.filter
def state_badge(state: str) -> str:
    """A state as a coloured badge (colours in static/css/keygov.css)."""
    if not state:
        return mark_safe('<span class="badge state-unknown">not judged</span>')  # nosec B308  # constant markup
    return format_html(
        '<span class="badge state-{}">{}</span>', state, _LABELS.get(state, str(state))
    )


@register.filter
def utc(value: datetime | None, with_time: bool = True) -> str:
    """A timestamp in UTC, e.g. ``2026-12-04 06:00 UTC``; "—" for none."""
    if not value:
        return "—"
    value = value.astimezone(UTC) if timezone.is_aware(value) else value
    return value.strftime("%Y-%m-%d %H:%M UTC") if with_time else value.strftime("%Y-%m-%d")


@register.filter
def days_since(value: datetime | None) -> str:
    """Whole days from ``value`` until now, as "97 days", "1 day", "today"; "never" for none."""
    if not value:
        return "never"
    n = whole_days(value, timezone.now())
    if n == 0:
        return "today"
    return f"{n} day{'s' if n != 1 else ''}"


@register.filter
def days_ago(value: datetime | None) -> str:
    """``days_since`` phrased for the past: "97 days ago", "today", "never"."""
    text = days_since(value)
    return text if text in ("today", "never") else f"{text} ago"


@register.simple_tag
def utc_time(value: datetime | None) -> str:
    """A ``<time>`` element: the UTC timestamp, with the relative age as its tooltip."""
    if not value:
        return "—"
    return format_html(
        '<time datetime="{}" title="{}">{}</time>', value.isoformat(), days_ago(value), utc(value)
    )
