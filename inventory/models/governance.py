"""Governance: rotation policy, findings, exceptions, migrations to roles, KPI roll-ups, audit."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import BooleanField, ExpressionWrapper, F, Q, Value
from django.db.models.functions import Coalesce

from inventory.choices import (
    CloseReason,
    ExceptionStatus,
    KeyState,
    KpiScope,
    MigrationStatus,
    VerifiedBy,
)
from inventory.policy import Policy
from inventory.validators import validate_role_arn

MAX_EXCEPTION_DAYS = 180


class RotationPolicy(models.Model):
    """The global rotation policy (``account`` empty) or one account's override of it."""

    account = models.OneToOneField(
        "inventory.Account",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="policy_override",
        help_text="Empty: the global policy.",
    )
    max_age_days = models.PositiveSmallIntegerField(
        default=90, validators=[MinValueValidator(1), MaxValueValidator(3650)]
    )
    warn_days = models.PositiveSmallIntegerField(
        default=14, help_text="Days before the maximum age when a key is due soon."
    )
    unused_days = models.PositiveSmallIntegerField(
        default=45,
        validators=[MinValueValidator(1)],
        help_text="An active key idle for longer is unused.",
    )
    new_key_grace_days = models.PositiveSmallIntegerField(
        default=7, help_text="A key younger than this is never judged unused."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "rotation policies"
        constraints = [
            models.CheckConstraint(
                condition=Q(warn_days__lte=F("max_age_days")), name="policy_warn_within_max_age"
            ),
            # At most one global policy (account empty).
            models.UniqueConstraint(Coalesce("account", Value(0)), name="policy_one_global"),
        ]

    def __str__(self) -> str:
        scope = f"account {self.account}" if self.account_id else "global"
        return f"{scope}: rotate after {self.max_age_days} days"

    def clean(self) -> None:
        if None not in (self.warn_days, self.max_age_days) and self.warn_days > self.max_age_days:
            raise ValidationError(
                {
                    "warn_days": (
                        f"The warning window ({self.warn_days} days) is longer than the "
                        f"maximum age ({self.max_age_days} days): keys would be due soon "
                        "before they exist. Use at most the maximum age."
                    )
                }
            )

    def rules(self) -> Policy:
        return Policy(
            max_age_days=self.max_age_days,
            warn_days=self.warn_days,
            unused_days=self.unused_days,
            new_key_grace_days=self.new_key_grace_days,
        )


class Finding(models.Model):
    """A stale key (overdue or unused) from the evaluation that saw it until the one that saw
    it leave; MTTR is the mean of ``closed_at - opened_at``."""

    key = models.ForeignKey(
        "inventory.AccessKey", on_delete=models.CASCADE, related_name="findings"
    )
    account = models.ForeignKey("inventory.Account", on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(
        max_length=8,
        choices=[(KeyState.OVERDUE, "Overdue"), (KeyState.UNUSED, "Unused")],
        help_text="The state that opened the finding.",
    )
    opened_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)
    close_reason = models.CharField(max_length=12, choices=CloseReason.choices, blank=True)

    class Meta:
        ordering = ["-opened_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["key"], condition=Q(closed_at__isnull=True), name="finding_one_open_per_key"
            ),
            models.CheckConstraint(
                condition=Q(closed_at__isnull=True, close_reason="")
                | (Q(closed_at__isnull=False) & ~Q(close_reason="")),
                name="finding_closed_with_reason",
            ),
            models.CheckConstraint(
                condition=Q(closed_at__isnull=True) | Q(closed_at__gte=F("opened_at")),
                name="finding_closed_after_opened",
            ),
        ]
        indexes = [
            models.Index(fields=["closed_at"]),
            models.Index(fields=["account", "closed_at"]),
            # The findings page: open first, newest first (scanned backwards, a page reads 50).
            models.Index(
                ExpressionWrapper(Q(closed_at__isnull=True), output_field=BooleanField()),
                "opened_at",
                "id",
                name="finding_open_first",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.key_id} since {self.opened_at:%Y-%m-%d}"

    @property
    def is_open(self) -> bool:
        return self.closed_at is None


class PolicyException(models.Model):
    """An approved exception lets a key (or every key of an IAM user) break the policy for a
    reason until it expires; the requester never approves their own."""

    key = models.ForeignKey(
        "inventory.AccessKey",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="policy_exceptions",
    )
    iam_user = models.ForeignKey(
        "inventory.IamUser",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="policy_exceptions",
    )
    account = models.ForeignKey("inventory.Account", on_delete=models.CASCADE, related_name="+")
    reason = models.TextField()
    expires_at = models.DateTimeField()
    status = models.CharField(
        max_length=10, choices=ExceptionStatus.choices, default=ExceptionStatus.PENDING
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    requested_at = models.DateTimeField()
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_comment = models.TextField(blank=True)

    class Meta:
        ordering = ["-requested_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(key__isnull=False, iam_user__isnull=True)
                | Q(key__isnull=True, iam_user__isnull=False),
                name="exception_covers_key_or_user",
            ),
            models.CheckConstraint(
                condition=Q(decided_by__isnull=True) | ~Q(decided_by=F("requested_by")),
                name="exception_not_self_decided",
            ),
            models.CheckConstraint(
                condition=Q(expires_at__lte=F("requested_at") + timedelta(days=MAX_EXCEPTION_DAYS)),
                name="exception_at_most_180_days",
            ),
        ]
        indexes = [models.Index(fields=["account", "status", "expires_at"])]

    def __str__(self) -> str:
        target = f"key {self.key_id}" if self.key_id else f"user {self.iam_user_id}"
        return f"exception for {target} ({self.status})"


class KeyMigration(models.Model):
    """An owner's mark that the workload behind a key moves (or moved) to an IAM role. Verified
    once the key is deleted, deactivated, or idle for ``unused_days`` after the mark."""

    key = models.ForeignKey(
        "inventory.AccessKey", on_delete=models.CASCADE, related_name="migrations"
    )
    account = models.ForeignKey("inventory.Account", on_delete=models.CASCADE, related_name="+")
    status = models.CharField(max_length=10, choices=MigrationStatus.choices)
    role_arn = models.CharField("role ARN", max_length=2048, validators=[validate_role_arn])
    note = models.TextField(blank=True)
    marked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    marked_at = models.DateTimeField()
    verified_at = models.DateTimeField(null=True, blank=True)
    verified_by = models.CharField(max_length=12, choices=VerifiedBy.choices, blank=True)
    withdrawn_at = models.DateTimeField(null=True, blank=True)
    withdrawn_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["-marked_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["key"],
                condition=Q(withdrawn_at__isnull=True),
                name="migration_one_live_mark",
            ),
        ]
        indexes = [models.Index(fields=["verified_at"])]

    def __str__(self) -> str:
        return f"{self.key_id} {self.status} to {self.role_arn}"


class KpiRollup(models.Model):
    """The KPIs of one scope (org, account or owner) on one day, written by every complete
    snapshot (the day's last evaluation wins). Trends read these rows, never the history.

    Counts and sums are stored rather than ratios so that an org-wide value is the sum of the
    accounts' rows, and averages are recomputed exactly."""

    scope = models.CharField(max_length=8, choices=KpiScope.choices)
    account = models.ForeignKey(
        "inventory.Account", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    owner = models.CharField(max_length=320, blank=True)
    day = models.DateField()
    computed_at = models.DateTimeField()

    users = models.PositiveIntegerField(default=0)  # IAM users, root excluded
    users_with_active_keys = models.PositiveIntegerField(default=0)
    users_with_two_active_keys = models.PositiveIntegerField(default=0)
    active_keys = models.PositiveIntegerField(default=0)
    # Sum of the active keys' ages in whole days (rounded down, as everywhere in keygov).
    active_key_age_days_sum = models.BigIntegerField(default=0)
    unowned_keys = models.PositiveIntegerField(default=0)
    compliant_keys = models.PositiveIntegerField(default=0)
    # Keys (not deleted) per state.
    state_ok = models.PositiveIntegerField(default=0)
    state_due_soon = models.PositiveIntegerField(default=0)
    state_overdue = models.PositiveIntegerField(default=0)
    state_unused = models.PositiveIntegerField(default=0)
    state_excepted = models.PositiveIntegerField(default=0)
    state_migrated = models.PositiveIntegerField(default=0)
    state_inactive = models.PositiveIntegerField(default=0)
    # Active keys per age bucket (days).
    age_0_30 = models.PositiveIntegerField(default=0)
    age_31_60 = models.PositiveIntegerField(default=0)
    age_61_90 = models.PositiveIntegerField(default=0)
    age_91_180 = models.PositiveIntegerField(default=0)
    age_181_365 = models.PositiveIntegerField(default=0)
    age_over_365 = models.PositiveIntegerField(default=0)
    # Findings closed in the 90 days up to ``day`` and the sum of their durations (MTTR).
    findings_closed = models.PositiveIntegerField(default=0)
    findings_closed_seconds_sum = models.BigIntegerField(default=0)
    open_findings = models.PositiveIntegerField(default=0)
    # Migrations verified in the calendar quarter of ``day``.
    migrations_verified_quarter = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["scope", "day"]
        constraints = [
            models.UniqueConstraint(
                Coalesce("account", Value(0)), "scope", "owner", "day", name="kpi_one_per_scope_day"
            ),
        ]
        indexes = [
            models.Index(fields=["scope", "account", "owner", "day"]),
            # An owner's trend sums their rows across accounts: by owner, then day.
            models.Index(fields=["scope", "owner", "day"], name="kpi_owner_trend"),
        ]

    def __str__(self) -> str:
        who = self.owner or (self.account_id and f"account {self.account_id}") or "org"
        return f"KPIs {who} {self.day}"


class AuditQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise PermissionError("The audit log is append-only: rows cannot be updated.")

    def delete(self):
        raise PermissionError("The audit log is append-only: rows cannot be deleted.")


class AuditEvent(models.Model):
    """An append-only record of a change: who, what, when, before and after. Written in the same
    transaction as the change. In Postgres a trigger refuses UPDATE and DELETE as well."""

    at = models.DateTimeField(db_index=True)
    # No database foreign key: deleting a user must neither fail on nor rewrite the audit log.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    actor_name = models.CharField(max_length=320, help_text='"system" for automatic changes.')
    action = models.CharField(max_length=64, db_index=True)
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=128)
    account_id = models.CharField("AWS account id", max_length=12, blank=True, db_index=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)

    objects = AuditQuerySet.as_manager()

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["object_type", "object_id"])]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor_name} {self.action} {self.object_id}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise PermissionError("The audit log is append-only: rows cannot be updated.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise PermissionError("The audit log is append-only: rows cannot be deleted.")
