"""Owner alerts sent (one row per alert, so each is sent once) and CloudTrail usage lookups."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class AlertAudience(models.TextChoices):
    OWNER = "owner", "Key owner"
    ADMIN = "admin", "Admin (owner unreachable)"
    APPROVER = "approver", "Approver"


class AlertKind(models.TextChoices):
    DUE_SOON = "due_soon", "Due soon"
    OVERDUE = "overdue", "Overdue"
    UNUSED = "unused", "Unused"
    UNAPPROVED = "unapproved", "Unapproved"
    EXCEPTION_EXPIRING = "exception", "Exception expiring"
    PENDING_EXCEPTION = "pending_exc", "Exception to decide"
    PENDING_REQUEST = "pending_req", "Key request to decide"


class AlertRecord(models.Model):
    """One alert about one object for one recipient at one milestone of the cadence
    (``due-14``, ``due-7``, ``overdue-week-3``...). Unique, so a second run of the daily task
    decides nothing new.

    Written unsent (``sent_at`` empty) in the transaction that decides it; a run then claims
    it (``claim``), sends the digest after commit, and sets ``sent_at`` only once the e-mail
    backend has accepted the message. A failed send releases the claim and keeps the error: the
    next run sends it again while its milestone is still the current one."""

    audience = models.CharField(max_length=8, choices=AlertAudience.choices)
    recipient = models.CharField(max_length=320, help_text="The e-mail address (lower case).")
    object_type = models.CharField(max_length=16)  # "key", "exception", "request"
    object_id = models.CharField(max_length=128)
    kind = models.CharField(max_length=12, choices=AlertKind.choices)
    milestone = models.CharField(max_length=32)
    decided_at = models.DateTimeField()
    claim = models.CharField(max_length=32, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-decided_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["recipient", "object_type", "object_id", "kind", "milestone"],
                name="alert_sent_once",
            ),
        ]
        indexes = [
            models.Index(fields=["recipient"], condition=Q(sent_at=None), name="alert_unsent")
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.milestone} of {self.object_type} {self.object_id} to {self.recipient}"


class LookupStatus(models.TextChoices):
    RUNNING = "running", "Running"
    COMPLETE = "complete", "Complete"
    FAILED = "failed", "Failed"


class KeyUsageLookup(models.Model):
    """One search of CloudTrail's event history for the events signed with a key, and its
    summary (sources, names, IPs, user agents, regions with counts and first/last seen)."""

    key = models.ForeignKey(
        "inventory.AccessKey", on_delete=models.CASCADE, related_name="usage_lookups"
    )
    status = models.CharField(
        max_length=10, choices=LookupStatus.choices, default=LookupStatus.RUNNING
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    # What a running lookup is doing ("us-east-1: 350 events (7 pages)").
    progress = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    summary = models.JSONField(null=True, blank=True)
    api_calls = models.PositiveIntegerField("AWS API calls", default=0)

    class Meta:
        ordering = ["-started_at", "-id"]
        get_latest_by = "started_at"
        constraints = [
            # One lookup at a time per key: a second click joins the running one.
            models.UniqueConstraint(
                fields=["key"], condition=Q(status="running"), name="usage_one_running_per_key"
            ),
        ]
        indexes = [models.Index(fields=["key", "-started_at"])]

    def __str__(self) -> str:
        return f"usage of {self.key_id} {self.started_at:%Y-%m-%d %H:%M} {self.status}"
