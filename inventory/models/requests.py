"""Key requests: an owner asks for a new long-term access key; another person approves it."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.urls import reverse


class KeyRequestStatus(models.TextChoices):
    """PRODUCT.md, "Key request": pending → approved | rejected | cancelled;
    approved → fulfilled | failed."""

    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    CANCELLED = "cancelled", "Cancelled"
    FULFILLED = "fulfilled", "Fulfilled"
    FAILED = "failed", "Failed"


# States in which somebody decided the request (and so ``decided_by`` is set).
DECIDED_STATES = [
    KeyRequestStatus.APPROVED,
    KeyRequestStatus.REJECTED,
    KeyRequestStatus.FULFILLED,
    KeyRequestStatus.FAILED,
]


class KeyRequest(models.Model):
    """A request for a new long-term access key for an IAM user. The requester never decides
    their own request: the service refuses, the decision is a conditional UPDATE, and the
    database refuses a row whose decider is its requester.

    keygov never holds the secret access key: a fulfilled request records the AccessKeyId and
    the ARN of the Secrets Manager secret that holds it (or, for a read-only account, only the
    key that the next snapshot found)."""

    account = models.ForeignKey(
        "inventory.Account", on_delete=models.CASCADE, related_name="key_requests"
    )
    iam_user = models.ForeignKey(
        "inventory.IamUser", on_delete=models.CASCADE, related_name="key_requests"
    )
    justification = models.TextField(help_text="What the key is for.")
    why_not_role = models.TextField(
        "why not an IAM role",
        help_text="Why an instance profile, task role or IAM Identity Center will not do.",
    )
    owner_email = models.EmailField(
        "owner", max_length=320, help_text="Who answers for the key (lower-cased e-mail)."
    )
    review_on = models.DateField(
        "expiry / review date",
        help_text="When the key is to be rotated or reviewed; at most the policy's maximum age.",
    )
    status = models.CharField(
        max_length=10,
        choices=KeyRequestStatus.choices,
        default=KeyRequestStatus.PENDING,
        db_index=True,
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
    cancelled_at = models.DateTimeField(null=True, blank=True)
    # Fulfilment. A worker claims the request before calling AWS (a conditional UPDATE), so a
    # redelivered task never creates a second key.
    fulfilment_started_at = models.DateTimeField(null=True, blank=True)
    fulfilled_at = models.DateTimeField(null=True, blank=True)
    created_access_key_id = models.CharField(
        "AccessKeyId",
        max_length=128,
        blank=True,
        help_text="The key created (or found by a snapshot) for this request.",
    )
    secret_arn = models.CharField(
        "secret ARN",
        max_length=2048,
        blank=True,
        help_text="The Secrets Manager secret holding the key's secret (never the secret itself).",
    )
    # The key in keygov's inventory, once a snapshot has seen it.
    access_key = models.OneToOneField(
        "inventory.AccessKey",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="key_request",
    )
    error = models.TextField(blank=True, help_text="Why fulfilment failed (the AWS error).")

    class Meta:
        ordering = ["-requested_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(decided_by__isnull=True) | ~Q(decided_by=F("requested_by")),
                name="keyrequest_not_self_decided",
            ),
            models.CheckConstraint(
                condition=Q(
                    status__in=[KeyRequestStatus.PENDING, KeyRequestStatus.CANCELLED],
                    decided_by__isnull=True,
                )
                | Q(status__in=DECIDED_STATES, decided_by__isnull=False),
                name="keyrequest_decided_states_have_decider",
            ),
            models.CheckConstraint(
                condition=~Q(status=KeyRequestStatus.FULFILLED) | ~Q(created_access_key_id=""),
                name="keyrequest_fulfilled_has_key",
            ),
        ]
        indexes = [
            models.Index(fields=["account", "status"]),
            models.Index(fields=["iam_user", "status"]),
        ]

    # Bootstrap badge classes of the states (pages and tables).
    STATUS_CSS = {
        KeyRequestStatus.PENDING: "text-bg-warning",
        KeyRequestStatus.APPROVED: "text-bg-primary",
        KeyRequestStatus.REJECTED: "text-bg-danger",
        KeyRequestStatus.CANCELLED: "text-bg-secondary",
        KeyRequestStatus.FULFILLED: "text-bg-success",
        KeyRequestStatus.FAILED: "text-bg-danger",
    }

    def __str__(self) -> str:
        return f"Key request #{self.pk}"

    def get_absolute_url(self) -> str:
        return reverse("inventory:keyrequest_detail", args=[self.pk])

    @property
    def is_open(self) -> bool:
        return self.status in (KeyRequestStatus.PENDING, KeyRequestStatus.APPROVED)


class KeyRequestComment(models.Model):
    """One message in a request's discussion thread."""

    request = models.ForeignKey(KeyRequest, on_delete=models.CASCADE, related_name="comments")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    at = models.DateTimeField()
    body = models.TextField()

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["request", "at"])]

    def __str__(self) -> str:
        return f"comment on #{self.request_id} by {self.author_id}"
