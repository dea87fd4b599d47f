"""The inventory: AWS accounts, collection runs, and the IAM users and access keys they saw."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import BooleanField, Count, ExpressionWrapper, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce

from inventory.choices import KeyState, KeyStatus, SnapshotStatus
from inventory.models.fields import KeyStateCodeField
from inventory.validators import role_arn_account, validate_account_id, validate_role_arn


class Account(models.Model):
    """An AWS account that keygov reads, through a role or the default boto3 credentials."""

    account_id = models.CharField(
        "account id", max_length=12, unique=True, validators=[validate_account_id]
    )
    name = models.CharField(max_length=200, blank=True)
    role_arn = models.CharField(
        "read role ARN",
        max_length=2048,
        blank=True,
        validators=[validate_role_arn],
        help_text="Role keygov assumes to read this account. Empty: the default credentials.",
    )
    external_id = models.CharField(
        "ExternalId",
        max_length=1224,
        blank=True,
        help_text="ExternalId that the role's trust policy requires.",
    )
    write_role_arn = models.CharField(
        "write role ARN",
        max_length=2048,
        blank=True,
        validators=[validate_role_arn],
        help_text="Optional role for write actions (creating approved keys).",
    )
    enabled = models.BooleanField(default=True, help_text="Collected on the schedule.")
    # A collection holds the account until this time; another one waits for the lease to end.
    collecting_until = models.DateTimeField(null=True, blank=True, editable=False)
    # The moment the account's keys were last judged. An evaluation never runs at an earlier
    # moment than this (a snapshot written late must not undo what a later judgement saw).
    evaluated_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "account_id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.account_id})" if self.name else self.account_id

    def clean(self) -> None:
        errors = {}
        for field in ("role_arn", "write_role_arn"):
            arn_account = role_arn_account(getattr(self, field))
            if arn_account and self.account_id and arn_account != self.account_id:
                errors[field] = (
                    f"This role is in account {arn_account}, not in {self.account_id}: keygov "
                    "reads each account through a role of that account."
                )
        if self.external_id and not self.role_arn:
            errors["external_id"] = "An ExternalId only applies with a role ARN."
        if errors:
            raise ValidationError(errors)


class Snapshot(models.Model):
    """One collection run of one account. All-or-nothing: only a complete run changes the data."""

    # 4-byte ids (two thousand million snapshots: 500 accounts collected every 6 hours for ten
    # thousand years) keep the key history, which stores this id in every row, narrow.
    id = models.AutoField(primary_key=True)

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="snapshots")
    status = models.CharField(
        max_length=10, choices=SnapshotStatus.choices, default=SnapshotStatus.RUNNING
    )
    # What a running collection is doing, for progress display.
    phase = models.CharField(max_length=200, blank=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    report_generated_at = models.DateTimeField("credential report generated", null=True, blank=True)
    api_calls = models.PositiveIntegerField("AWS API calls", default=0)
    user_count = models.PositiveIntegerField(default=0)
    key_count = models.PositiveIntegerField(default=0)
    active_key_count = models.PositiveIntegerField(default=0)
    # The scheduled slot this run belongs to ("" for manual runs): one snapshot per slot.
    run_key = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-started_at"]
        get_latest_by = "started_at"
        constraints = [
            models.UniqueConstraint(
                fields=["account", "run_key"],
                condition=~Q(run_key=""),
                name="snapshot_one_per_scheduled_slot",
            ),
        ]
        indexes = [models.Index(fields=["account", "status", "-started_at"])]

    def __str__(self) -> str:
        return f"{self.account.account_id} {self.started_at:%Y-%m-%d %H:%M} {self.status}"

    @property
    def duration(self):
        if self.finished_at is None:
            return None
        return self.finished_at - self.started_at


class IamUser(models.Model):
    """An IAM user (or the account's root user) as last seen by a complete snapshot."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="iam_users")
    user_id = models.CharField("UserId", max_length=128)
    name = models.CharField(max_length=128)
    arn = models.CharField("ARN", max_length=2048)
    path = models.CharField(max_length=512, default="/")
    created = models.DateTimeField()
    tags = models.JSONField(default=dict, blank=True)
    # Console password: a human, not a workload.
    has_password = models.BooleanField(default=False)
    is_root = models.BooleanField(default=False)
    # Lower-cased value of the first owner tag (settings.KEYGOV_OWNER_TAG_KEYS); "" = unowned.
    owner = models.CharField(max_length=320, blank=True)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    deleted = models.BooleanField(default=False)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["account", "name"]
        verbose_name = "IAM user"
        # Serves lookups by owner, and the keys table sorted by owner: (owner, user) presorted,
        # a page reads 50 rows instead of sorting every unowned key.
        indexes = [models.Index(fields=["owner", "id"], name="iamuser_owner_id")]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "user_id"], name="iamuser_unique_per_account"
            )
        ]

    def __str__(self) -> str:
        return self.name


class AccessKeyQuerySet(models.QuerySet):
    def with_flags(self) -> AccessKeyQuerySet:
        """Each key with the flags that go beside its state: ``user_active_keys`` (how many
        active keys its IAM user holds), ``two_active_keys`` (that user holds two: one of them
        should go) and ``unowned`` (the user carries no owner tag). Two subqueries, whatever
        the number of rows."""
        active_of_user = (
            AccessKey.objects.filter(user=OuterRef("user"), status=KeyStatus.ACTIVE, deleted=False)
            .order_by()
            .values("user")
            .annotate(n=Count("pk"))
            .values("n")
        )
        return self.annotate(
            user_active_keys=Coalesce(Subquery(active_of_user), 0),
            two_active_keys=ExpressionWrapper(
                Q(user_active_keys__gte=2, status=KeyStatus.ACTIVE, deleted=False),
                output_field=BooleanField(),
            ),
            unowned=ExpressionWrapper(Q(user__owner=""), output_field=BooleanField()),
        )


class AccessKey(models.Model):
    """A long-term access key. Root-account keys, whose ids AWS never reveals, get a stand-in id."""

    # 4-byte ids, as Snapshot's: the key history stores this id in every row.
    id = models.AutoField(primary_key=True)

    access_key_id = models.CharField("AccessKeyId", max_length=128, unique=True)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="access_keys")
    user = models.ForeignKey(IamUser, on_delete=models.CASCADE, related_name="access_keys")
    status = models.CharField(max_length=8, choices=KeyStatus.choices)
    created = models.DateTimeField(help_text="CreateDate in AWS.")
    last_used_at = models.DateTimeField(null=True, blank=True)
    last_used_service = models.CharField(max_length=128, blank=True)
    last_used_region = models.CharField(max_length=64, blank=True)
    is_root = models.BooleanField(default=False)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    deleted = models.BooleanField(default=False)
    deleted_at = models.DateTimeField(null=True, blank=True)
    # Set by the policy evaluation (services/evaluation.py) after every snapshot and every change
    # of policy, exception or migration; "" until the key is first evaluated.
    state = models.CharField(max_length=8, choices=KeyState.choices, blank=True, db_index=True)
    state_since = models.DateTimeField(null=True, blank=True)
    # Set at ingest: the key appeared after the account's first complete snapshot without an
    # approved key request for its user (services/key_requests.py). Cleared when one is linked.
    unapproved = models.BooleanField(
        default=False, help_text="Appeared in AWS without an approved key request."
    )

    objects = AccessKeyQuerySet.as_manager()

    class Meta:
        # The id breaks ties, so that keys created in the same second keep their page.
        ordering = ["created", "id"]
        indexes = [
            models.Index(fields=["account", "deleted", "status"]),
            models.Index(fields=["deleted", "status", "created"]),
            # The keys table's default order (age), over the keys that still exist.
            models.Index(fields=["created", "id"], condition=Q(deleted=False), name="key_age_live"),
            models.Index(
                fields=["account"], condition=Q(unapproved=True), name="accesskey_unapproved"
            ),
        ]

    def __str__(self) -> str:
        return self.access_key_id

    @property
    def is_active(self) -> bool:
        return self.status == KeyStatus.ACTIVE and not self.deleted


class KeyObservation(models.Model):
    """What one complete snapshot saw of one key. Narrow on purpose: it grows by keys x runs."""

    pk = models.CompositePrimaryKey("key_id", "snapshot_id")
    key = models.ForeignKey(AccessKey, on_delete=models.CASCADE, related_name="observations")
    # The primary key's (key, snapshot) index serves a key's timeline; no second index.
    snapshot = models.ForeignKey(
        Snapshot, on_delete=models.CASCADE, related_name="observations", db_index=False
    )
    active = models.BooleanField()
    # The key's state as evaluated at this snapshot: trends and KPI rebuilds read it from here.
    # A 2-byte code: with the two 4-byte ids and the flag, a row holds 24 bytes of data.
    state = KeyStateCodeField()
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "key observation"

    def __str__(self) -> str:
        return f"{self.key_id}@{self.snapshot_id}"
