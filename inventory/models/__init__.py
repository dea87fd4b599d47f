"""The domain models: the collected inventory and the governance built on it."""

from inventory.models.governance import (
    AuditEvent,
    Finding,
    KeyMigration,
    KpiRollup,
    PolicyException,
    RotationPolicy,
)
from inventory.models.inventory import AccessKey, Account, IamUser, KeyObservation, Snapshot
from inventory.models.requests import KeyRequest, KeyRequestComment, KeyRequestStatus

__all__ = [
    "AccessKey",
    "Account",
    "AuditEvent",
    "Finding",
    "IamUser",
    "KeyMigration",
    "KeyObservation",
    "KeyRequest",
    "KeyRequestComment",
    "KeyRequestStatus",
    "KpiRollup",
    "PolicyException",
    "RotationPolicy",
    "Snapshot",
]
