"""The rotation policy and the state of a key: pure functions of key, policy and ``now``.

No database here: the same rules judge live keys, historical observations and test data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from inventory.choices import KeyState

DAY_SECONDS = 86400


@dataclass(frozen=True)
class Policy:
    max_age_days: int = 90
    warn_days: int = 14
    unused_days: int = 45
    new_key_grace_days: int = 7


@dataclass(frozen=True)
class KeyFacts:
    """What the rules need to know of a key."""

    active: bool
    created: datetime
    last_used_at: datetime | None = None
    deleted: bool = False
    is_root: bool = False


def whole_days(start: datetime, end: datetime) -> int:
    """Whole days from ``start`` to ``end``, rounded down (90 days and 10 minutes is 90)."""
    # Never negative: a key created while its snapshot was being taken is 0 days old.
    return max(0, (end - start).days)


def age_days(facts: KeyFacts, now: datetime) -> int:
    return whole_days(facts.created, now)


def idle_days(facts: KeyFacts, now: datetime) -> int:
    """Days since the last use, or since creation for a key never used."""
    return whole_days(facts.last_used_at or facts.created, now)


def key_state(
    facts: KeyFacts,
    policy: Policy,
    now: datetime,
    *,
    migrated: bool = False,
    excepted: bool = False,
) -> KeyState:
    """The first matching row of PRODUCT.md's state table wins."""
    if facts.deleted:
        return KeyState.DELETED
    if facts.is_root and facts.active:
        # Always critical: no migration mark or exception covers a root-account key.
        return KeyState.OVERDUE
    if migrated:
        return KeyState.MIGRATED
    if excepted:
        return KeyState.EXCEPTED
    if not facts.active:
        return KeyState.INACTIVE
    age = age_days(facts, now)
    if age > policy.max_age_days:
        return KeyState.OVERDUE
    if age > policy.new_key_grace_days and idle_days(facts, now) > policy.unused_days:
        return KeyState.UNUSED
    if age > policy.max_age_days - policy.warn_days:
        return KeyState.DUE_SOON
    return KeyState.OK


def explain_state(
    facts: KeyFacts,
    policy: Policy,
    now: datetime,
    state: KeyState,
) -> str:
    """One sentence saying why a key is in ``state``."""
    age = age_days(facts, now)
    idle = idle_days(facts, now)
    used = f"last used {idle} days ago" if facts.last_used_at else f"never used in {age} days"
    match state:
        case KeyState.DELETED:
            return "The key no longer exists in AWS."
        case KeyState.MIGRATED:
            return "The owner marked the workload migrated to an IAM role."
        case KeyState.EXCEPTED:
            return "An approved exception covers this key until it expires."
        case KeyState.INACTIVE:
            return "The key is deactivated; it cannot be used and does not count in age KPIs."
        case KeyState.OVERDUE if facts.is_root:
            return "Root-account access keys are always critical: delete them."
        case KeyState.OVERDUE:
            return f"{age} days old, above the maximum age of {policy.max_age_days} days."
        case KeyState.UNUSED:
            return f"Active but {used}, above the {policy.unused_days}-day limit for idle keys."
        case KeyState.DUE_SOON:
            left = policy.max_age_days - age
            return f"{age} days old: rotate within {left} days (maximum {policy.max_age_days})."
        case _:
            return f"{age} days old, {used}: within the policy."


def deadline(facts: KeyFacts, policy: Policy) -> datetime:
    """When an active key becomes overdue: the first moment its age exceeds the maximum."""
    return facts.created + timedelta(days=policy.max_age_days + 1)
