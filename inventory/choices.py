from django.db import models


class SnapshotStatus(models.TextChoices):
    RUNNING = "running", "Running"
    COMPLETE = "complete", "Complete"
    FAILED = "failed", "Failed"


class KeyStatus(models.TextChoices):
    ACTIVE = "Active", "Active"
    INACTIVE = "Inactive", "Inactive"


class KeyState(models.TextChoices):
    """Where a key stands against the rotation policy (PRODUCT.md, "Policy and states")."""

    DELETED = "deleted", "Deleted"
    MIGRATED = "migrated", "Migrated"
    EXCEPTED = "excepted", "Excepted"
    INACTIVE = "inactive", "Inactive"
    OVERDUE = "overdue", "Overdue"
    UNUSED = "unused", "Unused"
    DUE_SOON = "due_soon", "Due soon"
    OK = "ok", "OK"


# States that open a finding, and the states an active key may be in and still comply.
STALE_STATES = frozenset({KeyState.OVERDUE, KeyState.UNUSED})
COMPLIANT_STATES = frozenset({KeyState.OK, KeyState.DUE_SOON, KeyState.EXCEPTED})


class CloseReason(models.TextChoices):
    DELETED = "deleted", "Key deleted"
    DEACTIVATED = "deactivated", "Key deactivated"
    ROTATED = "rotated", "Key rotated"
    MIGRATED = "migrated", "Migrated to a role"
    EXCEPTED = "excepted", "Exception approved"
    USED = "used", "Used again"
    POLICY = "policy", "Policy changed"


class ExceptionStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    CANCELLED = "cancelled", "Cancelled"


class MigrationStatus(models.TextChoices):
    MIGRATING = "migrating", "Migrating"
    MIGRATED = "migrated", "Migrated"


class VerifiedBy(models.TextChoices):
    DELETED = "deleted", "Key deleted"
    DEACTIVATED = "deactivated", "Key deactivated"
    UNUSED = "unused", "Not used since the mark"


class KpiScope(models.TextChoices):
    ORG = "org", "Organisation"
    ACCOUNT = "account", "Account"
    OWNER = "owner", "Owner"


# KeyObservation stores a key's state as a small integer (2 bytes, not a varchar of up to 9):
# the history has one row per key per snapshot. These codes are stored; never renumber them.
STATE_CODES = {
    "": 0,
    KeyState.OK: 1,
    KeyState.DUE_SOON: 2,
    KeyState.OVERDUE: 3,
    KeyState.UNUSED: 4,
    KeyState.EXCEPTED: 5,
    KeyState.MIGRATED: 6,
    KeyState.INACTIVE: 7,
    KeyState.DELETED: 8,
}
