"""What the API returns and accepts. Keys carry the export's columns in the export's order
(PRODUCT.md, "Key export"; inventory/tables.py ``AccessKeyExportTable``) and the flags shown
beside a key's state. Every timestamp is ISO 8601 in UTC to the second (``…T12:00:00Z``), as in
the export; every age is in whole days, rounded down, as everywhere in keygov."""

from __future__ import annotations

import re

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from inventory.choices import (
    CloseReason,
    ExceptionStatus,
    KeyState,
    KeyStatus,
    MigrationStatus,
    SnapshotStatus,
    VerifiedBy,
)
from inventory.models import Account, IamUser, KeyRequestStatus
from inventory.policy import whole_days
from inventory.services import dashboard
from inventory.services.kpis import AGE_BUCKETS, STATE_FIELDS
from inventory.tables import iso

# "" for a key that no evaluation has judged yet.
KEY_STATES = [("", "Not evaluated yet"), *KeyState.choices]


class UtcDateTimeField(serializers.DateTimeField):
    """ISO 8601 in UTC to the second, like the export: ``2026-05-15T12:00:00Z``."""

    def to_representation(self, value):
        return iso(value) or None


def _now(serializer) -> object:
    return serializer.context.get("now") or timezone.now()


def _username(user) -> str | None:
    return user.get_username() if user is not None else None


# --- keys --------------------------------------------------------------------------------------


class AccessKeySerializer(serializers.Serializer):
    """One key: the export's columns in order, then its flags."""

    access_key_id = serializers.CharField()
    account_id = serializers.CharField(source="account.account_id")
    account_name = serializers.CharField(source="account.name")
    user_name = serializers.CharField(source="user.name")
    owner = serializers.CharField(
        source="user.owner", help_text="The owner tag's value, lower-cased; empty: unowned."
    )
    status = serializers.ChoiceField(choices=KeyStatus.choices)
    state = serializers.ChoiceField(choices=KEY_STATES)
    created = UtcDateTimeField(help_text="CreateDate in AWS.")
    age_days = serializers.SerializerMethodField()
    last_used = UtcDateTimeField(source="last_used_at", allow_null=True)
    last_used_service = serializers.CharField()
    last_used_region = serializers.CharField()
    two_active_keys = serializers.BooleanField(help_text="Its IAM user holds two active keys.")
    unowned = serializers.BooleanField(help_text="Its IAM user carries no owner tag.")
    unapproved = serializers.BooleanField(help_text="Appeared without an approved key request.")
    is_root = serializers.BooleanField(help_text="A root-account key: always critical.")
    deleted = serializers.BooleanField(help_text="No longer in AWS.")

    @extend_schema_field(OpenApiTypes.INT)
    def get_age_days(self, key) -> int:
        return whole_days(key.created, _now(self))


class MigrationSerializer(serializers.Serializer):
    """A key's migration mark (to an IAM role)."""

    access_key_id = serializers.CharField(source="key.access_key_id")
    status = serializers.ChoiceField(choices=MigrationStatus.choices)
    role_arn = serializers.CharField()
    note = serializers.CharField()
    marked_by = serializers.SerializerMethodField()
    marked_at = UtcDateTimeField()
    verified_at = UtcDateTimeField(allow_null=True, help_text="When keygov saw the move done.")
    verified_by = serializers.ChoiceField(choices=[("", ""), *VerifiedBy.choices])
    key_state = serializers.ChoiceField(
        source="key.state", choices=KEY_STATES, help_text="The key's state after the mark."
    )

    @extend_schema_field(OpenApiTypes.STR)
    def get_marked_by(self, mark) -> str:
        return _username(mark.marked_by)


class AccessKeyDetailSerializer(AccessKeySerializer):
    """One key with its live migration mark."""

    migration = serializers.SerializerMethodField()

    @extend_schema_field(MigrationSerializer(allow_null=True))
    def get_migration(self, key):
        marks = getattr(key, "live_marks", [])
        return MigrationSerializer(marks[0], context=self.context).data if marks else None


class MigrationInputSerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=MigrationStatus.choices, help_text="migrating, or migrated once the role is used."
    )
    role_arn = serializers.CharField(
        max_length=2048, help_text="The IAM role that replaces the key."
    )
    note = serializers.CharField(max_length=4000, required=False, allow_blank=True, default="")


# --- accounts ----------------------------------------------------------------------------------


class AccountSerializer(serializers.Serializer):
    """An AWS account, its last collection and its latest KPI roll-up."""

    account_id = serializers.CharField()
    name = serializers.CharField()
    enabled = serializers.BooleanField(help_text="Collected on the schedule.")
    last_collection_status = serializers.SerializerMethodField()
    last_collection_at = serializers.SerializerMethodField()
    last_collection_error = serializers.SerializerMethodField()
    collecting_since = serializers.SerializerMethodField()
    kpi_day = serializers.DateField(allow_null=True, help_text="Day of the latest roll-up.")
    users = serializers.IntegerField(source="n_users", allow_null=True)
    keys = serializers.IntegerField(source="n_keys", allow_null=True)
    active_keys = serializers.IntegerField(source="n_active", allow_null=True)
    overdue_keys = serializers.IntegerField(source="n_overdue", allow_null=True)
    compliance_rate = serializers.FloatField(
        source="compliance", allow_null=True, help_text="% of active keys that comply."
    )

    def _last(self, account):
        cache = self.context.setdefault("_last", {})
        if account.pk not in cache:
            cache[account.pk] = dashboard.last_collection(account)
        return cache[account.pk]

    @extend_schema_field(
        serializers.ChoiceField(
            choices=[SnapshotStatus.COMPLETE, SnapshotStatus.FAILED], allow_null=True
        )
    )
    def get_last_collection_status(self, account):
        return self._last(account).status

    @extend_schema_field(UtcDateTimeField(allow_null=True))
    def get_last_collection_at(self, account):
        return iso(self._last(account).at) or None

    @extend_schema_field(OpenApiTypes.STR)
    def get_last_collection_error(self, account) -> str:
        return self._last(account).error or ""

    @extend_schema_field(UtcDateTimeField(allow_null=True))
    def get_collecting_since(self, account):
        return iso(self._last(account).running_since) or None


# --- findings and exceptions -------------------------------------------------------------------


class FindingSerializer(serializers.Serializer):
    """A stale key (overdue or unused) from the evaluation that saw it until it was fixed."""

    id = serializers.IntegerField()
    access_key_id = serializers.CharField(source="key.access_key_id")
    account_id = serializers.CharField(source="account.account_id")
    account_name = serializers.CharField(source="account.name")
    user_name = serializers.CharField(source="key.user.name")
    owner = serializers.CharField(source="key.user.owner")
    kind = serializers.ChoiceField(choices=[KeyState.OVERDUE, KeyState.UNUSED])
    opened_at = UtcDateTimeField()
    closed_at = UtcDateTimeField(allow_null=True, help_text="Null while open.")
    close_reason = serializers.ChoiceField(choices=[("", ""), *CloseReason.choices])
    duration_days = serializers.SerializerMethodField()

    @extend_schema_field(OpenApiTypes.INT)
    def get_duration_days(self, finding) -> int:
        return whole_days(finding.opened_at, finding.closed_at or _now(self))


class PolicyExceptionSerializer(serializers.Serializer):
    """An exception for a key, or for every key of an IAM user."""

    id = serializers.IntegerField()
    access_key_id = serializers.CharField(source="key.access_key_id", allow_null=True)
    iam_user_name = serializers.CharField(
        source="iam_user.name", allow_null=True, help_text="Set when it covers a whole user."
    )
    account_id = serializers.CharField(source="account.account_id")
    account_name = serializers.CharField(source="account.name")
    reason = serializers.CharField()
    status = serializers.ChoiceField(choices=ExceptionStatus.choices)
    expires_at = UtcDateTimeField()
    requested_by = serializers.SerializerMethodField()
    requested_at = UtcDateTimeField()
    decided_by = serializers.SerializerMethodField()
    decided_at = UtcDateTimeField(allow_null=True)
    decision_comment = serializers.CharField()

    @extend_schema_field(OpenApiTypes.STR)
    def get_requested_by(self, obj) -> str:
        return _username(obj.requested_by)

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_decided_by(self, obj):
        return _username(obj.decided_by)


# --- key requests ------------------------------------------------------------------------------


class KeyRequestSerializer(serializers.Serializer):
    """A request for a new long-term key; keygov never holds the secret, only where it is."""

    id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=KeyRequestStatus.choices)
    account_id = serializers.CharField(source="account.account_id")
    account_name = serializers.CharField(source="account.name")
    user_name = serializers.CharField(source="iam_user.name")
    owner_email = serializers.CharField()
    justification = serializers.CharField()
    why_not_role = serializers.CharField()
    review_on = serializers.DateField()
    requested_by = serializers.SerializerMethodField()
    requested_at = UtcDateTimeField()
    decided_by = serializers.SerializerMethodField()
    decided_at = UtcDateTimeField(allow_null=True)
    decision_comment = serializers.CharField()
    cancelled_at = UtcDateTimeField(allow_null=True)
    fulfilled_at = UtcDateTimeField(allow_null=True)
    created_access_key_id = serializers.CharField()
    secret_arn = serializers.CharField(
        help_text="The Secrets Manager secret that holds the new key's secret."
    )
    error = serializers.CharField(help_text="Why fulfilment failed.")

    @extend_schema_field(OpenApiTypes.STR)
    def get_requested_by(self, obj) -> str:
        return _username(obj.requested_by)

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_decided_by(self, obj):
        return _username(obj.decided_by)


class KeyRequestInputSerializer(serializers.Serializer):
    """Filing a request: the account and IAM user as keygov knows them."""

    account_id = serializers.RegexField(r"^\d{12}$", help_text="The 12-digit AWS account id.")
    user_name = serializers.CharField(max_length=128, help_text="The IAM user's name.")
    justification = serializers.CharField(max_length=4000, help_text="What the key is for.")
    why_not_role = serializers.CharField(
        max_length=4000,
        help_text="Why an instance profile, task role or IAM Identity Center will not do.",
    )
    owner_email = serializers.EmailField(
        max_length=320, required=False, help_text="Who answers for the key (default: you)."
    )
    review_on = serializers.DateField(
        help_text="Expiry / review date: at most the policy's maximum age from today."
    )

    def validate(self, data):
        account = Account.objects.filter(account_id=data["account_id"]).first()
        if account is None:
            raise serializers.ValidationError(
                {"account_id": f"keygov knows no account {data['account_id']}."}
            )
        name = data["user_name"].strip()
        user = IamUser.objects.filter(account=account, name=name, deleted=False).first()
        if user is None:
            raise serializers.ValidationError(
                {
                    "user_name": f"keygov knows no IAM user {name!r} in {account}. Create the "
                    "user in IAM first; it appears after the next collection."
                }
            )
        return {**data, "account": account, "iam_user": user}


# --- KPIs --------------------------------------------------------------------------------------

_EMAILISH = re.compile(r"^\S+$")


class KpiQuerySerializer(serializers.Serializer):
    account = serializers.RegexField(
        r"^\d{12}$", required=False, help_text="An account's 12-digit id: its KPIs."
    )
    owner = serializers.CharField(
        max_length=320, required=False, help_text="An owner's e-mail: the KPIs of their keys."
    )

    def validate_owner(self, value):
        value = value.strip().lower()
        if not _EMAILISH.match(value):
            raise serializers.ValidationError("An owner is an e-mail address.")
        return value

    def validate(self, data):
        if "account" in data and "owner" in data:
            raise serializers.ValidationError("Ask for an account or an owner, not both.")
        if "account" in data:
            account = Account.objects.filter(account_id=data["account"]).first()
            if account is None:
                raise serializers.ValidationError(
                    {"account": f"keygov knows no account {data['account']}."}
                )
            data["account"] = account
        return data


class KpiTrendQuerySerializer(KpiQuerySerializer):
    since = serializers.DateField(
        required=False, help_text="First day (YYYY-MM-DD); default: a year ago."
    )


def _counts_serializer(name: str, fields: list[str]) -> type[serializers.Serializer]:
    return type(name, (serializers.Serializer,), {f: serializers.IntegerField() for f in fields})


KpiStatesSerializer = _counts_serializer("KpiStatesSerializer", [s.value for s in STATE_FIELDS])
KpiAgeBucketsSerializer = _counts_serializer("KpiAgeBucketsSerializer", [b[0] for b in AGE_BUCKETS])


class KpiSerializer(serializers.Serializer):
    """The KPIs of PRODUCT.md (a ``Kpis`` object): the four headline figures, then the counts
    behind them. Ratios are null when there is nothing to divide by."""

    pct_users_with_active_keys = serializers.FloatField(
        allow_null=True, help_text="KPI 1: % of IAM users (root excluded) with an active key."
    )
    avg_active_key_age_days = serializers.FloatField(
        allow_null=True, help_text="KPI 2: average age of active keys, in days."
    )
    mttr_days = serializers.FloatField(
        allow_null=True, help_text="KPI 3: mean time to remediate findings closed in 90 days."
    )
    migrations_verified_quarter = serializers.IntegerField(
        help_text="KPI 4: migrations to roles verified this quarter."
    )
    compliance_rate = serializers.FloatField(
        allow_null=True, help_text="% of active keys in state ok, due_soon or excepted."
    )
    users = serializers.IntegerField()
    users_with_active_keys = serializers.IntegerField()
    users_with_two_active_keys = serializers.IntegerField()
    active_keys = serializers.IntegerField()
    unowned_keys = serializers.IntegerField()
    compliant_keys = serializers.IntegerField()
    open_findings = serializers.IntegerField()
    findings_closed = serializers.IntegerField(help_text="Findings closed in the last 90 days.")
    states = KpiStatesSerializer(help_text="Keys (not deleted) per state.")
    age_buckets = KpiAgeBucketsSerializer(help_text="Active keys per age, in days.")


class CurrentKpisSerializer(serializers.Serializer):
    scope = serializers.ChoiceField(choices=["org", "account", "owner"])
    account_id = serializers.CharField(allow_null=True)
    owner = serializers.CharField(allow_null=True)
    at = UtcDateTimeField()
    kpis = KpiSerializer()


class KpiDaySerializer(serializers.Serializer):
    day = serializers.DateField()
    kpis = KpiSerializer()


class KpiTrendSerializer(serializers.Serializer):
    scope = serializers.ChoiceField(choices=["org", "account", "owner"])
    account_id = serializers.CharField(allow_null=True)
    owner = serializers.CharField(allow_null=True)
    days = KpiDaySerializer(many=True, help_text="One entry per day with a roll-up, oldest first.")
