"""Cron strings for the beat schedule, and the slot a scheduled run belongs to."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured

from keygov.cron import parse_cron, previous_fire_time


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- parse_cron ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("bad", "expected 5 fields"),
        ("", "expected 5 fields"),
        ("0 */6 * *", "expected 5 fields"),
        ("0 */6 * * * *", "expected 5 fields"),
        ("61 * * * *", "61 > 59"),
        ("0 24 * * *", "24 > 23"),
        ("0 0 32 * *", "32 > 31"),
        ("0 0 * 13 *", "13 > 12"),
        ("0 0 * * 8", "8 > 6"),
        ("*/0 * * * *", "step cannot be zero"),
        ("0 0 31 2 *", "never occurs"),
        ("0 0 * * funday", "funday"),
        ("0,,1 * * * *", "empty part"),
        ("- * * * *", "negative numbers"),
    ],
)
def test_it_names_the_variable_of_a_bad_cron_string(value, reason):
    with pytest.raises(ImproperlyConfigured) as exc:
        parse_cron("KEYGOV_COLLECT_CRON", value)

    message = str(exc.value)
    assert message.startswith(f"KEYGOV_COLLECT_CRON={value!r} is not a")
    assert reason in message


def test_it_shows_a_good_example_when_the_field_count_is_wrong():
    with pytest.raises(ImproperlyConfigured, match=r"e\.g\. '0 \*/6 \* \* \*'"):
        parse_cron("KEYGOV_COLLECT_CRON", "every 6 hours")


def test_it_reads_a_cron_string_as_celery_does():
    schedule = parse_cron("KEYGOV_COLLECT_CRON", " 30  2 * *   mon ")

    assert schedule.minute == {30}
    assert schedule.hour == {2}
    assert schedule.day_of_week == {1}


# --- previous_fire_time -------------------------------------------------------------------------

EVERY_6_HOURS = parse_cron("X", "0 */6 * * *")
MONDAY_0230 = parse_cron("X", "30 2 * * 1")


@pytest.mark.parametrize(
    ("now", "slot"),
    [
        (utc(2026, 12, 3, 13, 47, 12), utc(2026, 12, 3, 12, 0)),
        (utc(2026, 12, 3, 5, 59, 59), utc(2026, 12, 3, 0, 0)),
        # Exactly on the minute, and anywhere within it: that minute's run.
        (utc(2026, 12, 3, 18, 0, 0), utc(2026, 12, 3, 18, 0)),
        (utc(2026, 12, 3, 18, 0, 59, 999999), utc(2026, 12, 3, 18, 0)),
        (utc(2026, 12, 3, 17, 59, 59, 999999), utc(2026, 12, 3, 12, 0)),
        # Back across midnight, a month end and a year end.
        (utc(2026, 12, 1, 0, 0, 0) - timedelta(microseconds=1), utc(2026, 11, 30, 18, 0)),
        (utc(2027, 1, 1, 5, 30), utc(2027, 1, 1, 0, 0)),
        (utc(2026, 12, 31, 23, 59, 59), utc(2026, 12, 31, 18, 0)),
        (utc(2024, 3, 1, 3, 0), utc(2024, 3, 1, 0, 0)),
    ],
)
def test_it_finds_the_slot_of_an_every_6_hours_schedule(now, slot):
    assert previous_fire_time(EVERY_6_HOURS, now) == slot


@pytest.mark.parametrize(
    ("now", "slot"),
    [
        # 2026-11-30 is a Monday.
        (utc(2026, 11, 30, 2, 30, 0), utc(2026, 11, 30, 2, 30)),
        (utc(2026, 11, 30, 2, 29, 59), utc(2026, 11, 23, 2, 30)),
        (utc(2026, 11, 30, 23, 59), utc(2026, 11, 30, 2, 30)),
        (utc(2026, 12, 6, 12, 0), utc(2026, 11, 30, 2, 30)),  # the Sunday after
        (utc(2027, 1, 1, 0, 0), utc(2026, 12, 28, 2, 30)),  # across the year end
    ],
)
def test_it_finds_the_slot_of_a_weekly_schedule(now, slot):
    assert previous_fire_time(MONDAY_0230, now) == slot


@pytest.mark.parametrize(
    ("cron", "now", "slot"),
    [
        ("0 0 1 * *", utc(2026, 3, 15, 9, 0), utc(2026, 3, 1, 0, 0)),
        ("0 0 1 * *", utc(2026, 3, 1, 0, 0), utc(2026, 3, 1, 0, 0)),
        ("0 0 1 * *", utc(2026, 2, 28, 23, 59), utc(2026, 2, 1, 0, 0)),
        # April has no 31st: back to March.
        ("15 4 31 * *", utc(2026, 5, 1, 0, 0), utc(2026, 3, 31, 4, 15)),
        ("*/15 * * * *", utc(2026, 12, 3, 10, 14, 59), utc(2026, 12, 3, 10, 0)),
        ("*/15 * * * *", utc(2026, 12, 3, 10, 45), utc(2026, 12, 3, 10, 45)),
        ("59 23 * * *", utc(2026, 1, 1, 0, 0), utc(2025, 12, 31, 23, 59)),
        ("0 12 * 6 *", utc(2026, 12, 3, 0, 0), utc(2026, 6, 30, 12, 0)),
    ],
)
def test_it_finds_the_slot_across_month_and_day_boundaries(cron, now, slot):
    assert previous_fire_time(parse_cron("X", cron), now) == slot


def test_it_finds_a_leap_day_slot_years_back():
    """GIVEN a schedule that fires on 29 February only WHEN asked more than a year after the
    last one THEN it still names that run rather than failing the scheduled collection."""
    leap_day = parse_cron("X", "0 6 29 2 *")

    assert previous_fire_time(leap_day, utc(2027, 6, 1, 0, 0)) == utc(2024, 2, 29, 6, 0)


def _brute_force(schedule, now: datetime) -> datetime:
    """The same answer, one minute at a time: slow, but plainly right."""
    t = now.replace(second=0, microsecond=0)
    while not (
        t.minute in schedule.minute
        and t.hour in schedule.hour
        and t.day in schedule.day_of_month
        and t.month in schedule.month_of_year
        and t.isoweekday() % 7 in schedule.day_of_week
    ):
        t -= timedelta(minutes=1)
    return t


@pytest.mark.parametrize(
    "cron", ["0 */6 * * *", "30 2 * * 1", "7,37 9-17 * * 1-5", "0 0 1,15 * *", "5 */4 * * 0,6"]
)
def test_it_agrees_with_a_minute_by_minute_search(cron):
    schedule = parse_cron("X", cron)
    start = utc(2026, 12, 28, 23, 50, 30)  # a Monday night, three days before a year end

    for hours in range(0, 24 * 9, 7):
        now = start + timedelta(hours=hours, minutes=hours % 60)
        assert previous_fire_time(schedule, now) == _brute_force(schedule, now), now


def test_it_keeps_the_time_zone_of_now():
    slot = previous_fire_time(EVERY_6_HOURS, utc(2026, 12, 3, 13, 0))

    assert slot.tzinfo is UTC
