"""The domain models: the collected inventory and the governance built on it."""

from inventory.models.alerts import AlertRecord, KeyUsageLookup
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
    "AlertRecord",
    "AuditEvent",
    "Finding",
    "IamUser",
    "KeyMigration",
    "KeyObservation",
    "KeyRequest",
    "KeyRequestComment",
    "KeyRequestStatus",
    "KeyUsageLookup",
    "KpiRollup",
    "PolicyException",
    "RotationPolicy",
    "Snapshot",
]
