"""Cron strings for the beat schedule, and the slot a scheduled run belongs to."""

from __future__ import annotations

from datetime import datetime, timedelta

from celery.schedules import ParseException, crontab
from django.core.exceptions import ImproperlyConfigured


def parse_cron(name: str, value: str) -> crontab:
    """Turn ``"m h dom mon dow"`` into a Celery crontab; a bad value names the variable."""
    fields = value.split()
    if len(fields) != 5:
        raise ImproperlyConfigured(
            f"{name}={value!r} is not a cron expression: expected 5 fields "
            "'minute hour day-of-month month day-of-week', e.g. '0 */6 * * *'"
        )
    minute, hour, day_of_month, month_of_year, day_of_week = fields
    try:
        return crontab(
            minute=minute,
            hour=hour,
            day_of_month=day_of_month,
            month_of_year=month_of_year,
            day_of_week=day_of_week,
        )
    # ParseException (e.g. '0,,1' or '-') is not a ValueError.
    except (ValueError, TypeError, ParseException) as exc:
        raise ImproperlyConfigured(
            f"{name}={value!r} is not a valid cron expression: {exc}"
        ) from None


def previous_fire_time(schedule: crontab, now: datetime) -> datetime:
    """The latest time at or before ``now`` at which ``schedule`` fires (minute resolution).

    A scheduled collection is identified by this slot, so that a message delivered twice, or sent
    by two beats started by mistake, maps to the same run.
    """
    t = now.replace(second=0, microsecond=0)
    # Walk backwards a day, an hour or a minute at a time: at most ~400 days of steps.
    for _ in range(400 * 24 + 60 * 24):
        day_ok = (
            t.month in schedule.month_of_year
            and t.day in schedule.day_of_month
            and t.isoweekday() % 7 in schedule.day_of_week
        )
        if not day_ok:
            t = t.replace(hour=23, minute=59) - timedelta(days=1)
            continue
        if t.hour not in schedule.hour:
            t = t.replace(minute=59) - timedelta(hours=1)
            continue
        earlier = [m for m in schedule.minute if m <= t.minute]
        if earlier:
            return t.replace(minute=max(earlier))
        t = t.replace(minute=59) - timedelta(hours=1)
    raise ValueError(f"{schedule} never fired in the 400 days before {now}")
