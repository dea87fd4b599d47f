"""The audit log: one append-only row per change, written in the change's own transaction."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.db import models
from django.utils import timezone

from inventory.models import AuditEvent

SYSTEM = "system"


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, models.Model):
        return value.pk
    return value


def fields_of(instance: models.Model, fields: list[str]) -> dict[str, Any]:
    """The named fields of ``instance`` as JSON-ready values (foreign keys as ids)."""
    out = {}
    for name in fields:
        field = instance._meta.get_field(name)
        out[name] = _jsonable(getattr(instance, field.attname))
    return out


def audit_event(
    action: str,
    obj: models.Model,
    *,
    actor=None,
    before: dict | None = None,
    after: dict | None = None,
    account_id: str = "",
    at: datetime | None = None,
) -> AuditEvent:
    """An unsaved audit row (for bulk writes); ``record`` saves one."""
    return AuditEvent(
        at=at or timezone.now(),
        actor=actor if actor is not None and actor.is_authenticated else None,
        actor_name=(actor.get_username() if actor is not None else SYSTEM) or SYSTEM,
        action=action,
        object_type=obj._meta.model_name,
        object_id=str(obj.pk),
        account_id=account_id,
        before=before,
        after=after,
    )


def record(action: str, obj: models.Model, **kwargs) -> AuditEvent:
    event = audit_event(action, obj, **kwargs)
    event.save()
    return event
