"""Key states as a pure function of key, policy and ``now`` (PRODUCT.md, "Policy and states")."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from inventory.choices import KeyState
from inventory.policy import (
    KeyFacts,
    Policy,
    age_days,
    deadline,
    explain_state,
    key_state,
    whole_days,
)

NOW = datetime(2026, 5, 15, 12, 0, tzinfo=UTC)
DEFAULT = Policy()  # 90 / 14 / 45 / 7
TEN_MINUTES = timedelta(minutes=10)


def aged(age: timedelta, *, idle: timedelta | None = timedelta(0), **kw) -> KeyFacts:
    """An active key ``age`` old, last used ``idle`` ago (None: never used)."""
    return KeyFacts(
        active=kw.pop("active", True),
        created=NOW - age,
        last_used_at=None if idle is None else NOW - idle,
        **kw,
    )


def d(n: int, extra: timedelta = timedelta(0)) -> timedelta:
    return timedelta(days=n) + extra


def test_it_defaults_to_the_product_policy():
    assert Policy() == Policy(max_age_days=90, warn_days=14, unused_days=45, new_key_grace_days=7)


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        (d(0), KeyState.OK),
        (d(76), KeyState.OK),
        (d(76, timedelta(hours=23, minutes=59)), KeyState.OK),
        (d(77), KeyState.DUE_SOON),
        (d(89), KeyState.DUE_SOON),
        (d(90), KeyState.DUE_SOON),
        (d(90, TEN_MINUTES), KeyState.DUE_SOON),
        (d(90, timedelta(hours=23, minutes=59, seconds=59)), KeyState.DUE_SOON),
        (d(91), KeyState.OVERDUE),
        (d(91, TEN_MINUTES), KeyState.OVERDUE),
        (d(400), KeyState.OVERDUE),
    ],
)
def test_it_judges_age_in_whole_days_rounded_down(age, expected):
    assert key_state(aged(age), DEFAULT, NOW) == expected


def test_it_counts_90_days_and_10_minutes_as_90_days():
    assert whole_days(NOW - d(90, TEN_MINUTES), NOW) == 90


@pytest.mark.parametrize(
    ("idle", "expected"),
    [
        (d(44), KeyState.OK),
        (d(45), KeyState.OK),
        (d(45, timedelta(hours=23)), KeyState.OK),
        (d(46), KeyState.UNUSED),
        (d(60), KeyState.UNUSED),
    ],
)
def test_it_marks_a_key_idle_for_more_than_unused_days_unused(idle, expected):
    # 60 days old: neither due soon nor overdue, so only idleness decides.
    assert key_state(aged(d(60), idle=idle), DEFAULT, NOW) == expected


@pytest.mark.parametrize(
    ("age", "expected"),
    [(d(44), KeyState.OK), (d(45), KeyState.OK), (d(46), KeyState.UNUSED)],
)
def test_it_judges_a_never_used_key_from_its_creation(age, expected):
    assert key_state(aged(age, idle=None), DEFAULT, NOW) == expected


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        (d(5), KeyState.OK),
        (d(7), KeyState.OK),
        (d(7, timedelta(hours=23)), KeyState.OK),
        (d(8), KeyState.UNUSED),
    ],
)
def test_it_never_judges_a_key_within_its_grace_period_unused(age, expected):
    policy = Policy(unused_days=3, new_key_grace_days=7)
    assert key_state(aged(age, idle=None), policy, NOW) == expected


def test_it_judges_a_key_used_long_ago_after_the_grace_period():
    """GIVEN unused_days 3 and a grace of 7 days WHEN a key 10 days old was last used 5 days
    ago THEN it is unused; used 3 days ago it is not."""
    policy = Policy(unused_days=3, new_key_grace_days=7)
    assert key_state(aged(d(10), idle=d(5)), policy, NOW) == KeyState.UNUSED
    assert key_state(aged(d(10), idle=d(3)), policy, NOW) == KeyState.OK


def test_it_applies_the_first_matching_row():
    """GIVEN an old, never-used, root key WHEN each higher row's condition is removed in turn
    THEN the state walks down the table: deleted, migrated, excepted, inactive, overdue."""
    old = d(200)
    everything = aged(old, idle=None, deleted=True, active=False)
    assert key_state(everything, DEFAULT, NOW, migrated=True, excepted=True) == KeyState.DELETED
    inactive = aged(old, idle=None, active=False)
    assert key_state(inactive, DEFAULT, NOW, migrated=True, excepted=True) == KeyState.MIGRATED
    assert key_state(inactive, DEFAULT, NOW, excepted=True) == KeyState.EXCEPTED
    assert key_state(inactive, DEFAULT, NOW) == KeyState.INACTIVE
    # Overdue beats unused: 200 days old and never used.
    assert key_state(aged(old, idle=None), DEFAULT, NOW) == KeyState.OVERDUE


def test_it_prefers_unused_to_due_soon():
    # 80 days old (due soon) and idle for 50 days (unused).
    assert key_state(aged(d(80), idle=d(50)), DEFAULT, NOW) == KeyState.UNUSED
    assert key_state(aged(d(80), idle=d(1)), DEFAULT, NOW) == KeyState.DUE_SOON


def test_it_excepts_or_migrates_an_overdue_active_key():
    overdue = aged(d(200))
    assert key_state(overdue, DEFAULT, NOW, excepted=True) == KeyState.EXCEPTED
    assert key_state(overdue, DEFAULT, NOW, migrated=True) == KeyState.MIGRATED


@pytest.mark.parametrize("age", [d(0), d(1), d(30), d(200)])
def test_it_judges_an_active_root_key_overdue_whatever_its_age(age):
    assert key_state(aged(age, is_root=True), DEFAULT, NOW) == KeyState.OVERDUE


def test_it_judges_a_deactivated_or_deleted_root_key_by_the_rows_above_overdue():
    root = aged(d(1), is_root=True, active=False)
    assert key_state(root, DEFAULT, NOW) == KeyState.INACTIVE
    deleted = aged(d(1), is_root=True, deleted=True)
    assert key_state(deleted, DEFAULT, NOW) == KeyState.DELETED


def test_it_follows_a_custom_policy():
    policy = Policy(max_age_days=30, warn_days=5, unused_days=10, new_key_grace_days=2)
    assert key_state(aged(d(25)), policy, NOW) == KeyState.OK
    assert key_state(aged(d(26)), policy, NOW) == KeyState.DUE_SOON
    assert key_state(aged(d(30)), policy, NOW) == KeyState.DUE_SOON
    assert key_state(aged(d(31)), policy, NOW) == KeyState.OVERDUE
    assert key_state(aged(d(20), idle=d(11)), policy, NOW) == KeyState.UNUSED


def test_it_sets_the_deadline_at_the_first_moment_a_key_is_overdue():
    facts = KeyFacts(active=True, created=NOW - d(10), last_used_at=NOW + d(80))
    due = deadline(facts, DEFAULT)
    assert due == facts.created + d(91)
    assert key_state(facts, DEFAULT, due - timedelta(microseconds=1)) == KeyState.DUE_SOON
    assert key_state(facts, DEFAULT, due) == KeyState.OVERDUE


def test_it_explains_an_overdue_key_with_its_age_and_the_maximum():
    facts = aged(d(91, TEN_MINUTES))
    text = explain_state(facts, DEFAULT, NOW, KeyState.OVERDUE)
    assert text == "91 days old, above the maximum age of 90 days."


def test_it_explains_a_key_due_soon_with_the_days_left():
    text = explain_state(aged(d(80)), DEFAULT, NOW, KeyState.DUE_SOON)
    assert text == "80 days old: rotate within 10 days (maximum 90)."


def test_it_explains_an_unused_key_with_its_idle_days_and_the_limit():
    used = explain_state(aged(d(60), idle=d(46)), DEFAULT, NOW, KeyState.UNUSED)
    assert "last used 46 days ago" in used
    assert "45-day limit" in used
    never = explain_state(aged(d(50), idle=None), DEFAULT, NOW, KeyState.UNUSED)
    assert "never used in 50 days" in never


def test_it_explains_a_root_key_as_critical():
    text = explain_state(aged(d(1), is_root=True), DEFAULT, NOW, KeyState.OVERDUE)
    assert "Root" in text
    assert "always critical" in text


def test_it_explains_a_compliant_key_with_its_age_and_last_use():
    text = explain_state(aged(d(12), idle=d(3)), DEFAULT, NOW, KeyState.OK)
    assert text == "12 days old, last used 3 days ago: within the policy."


def test_it_keeps_an_active_root_key_overdue_whatever_marks_or_exceptions_say():
    root = aged(d(5), is_root=True)
    assert key_state(root, DEFAULT, NOW, excepted=True) == KeyState.OVERDUE
    assert key_state(root, DEFAULT, NOW, migrated=True) == KeyState.OVERDUE


def test_it_counts_a_key_created_after_now_as_0_days_old():
    # A key created while its snapshot was being taken is newer than the snapshot's moment.
    future = KeyFacts(active=True, created=NOW + timedelta(minutes=3))
    assert age_days(future, NOW) == 0
    assert key_state(future, DEFAULT, NOW) == KeyState.OK
