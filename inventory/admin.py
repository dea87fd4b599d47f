from django.contrib import admin, messages
from django.db.models import Count, Q
from django.utils import timezone
from django.utils.html import format_html_join

from inventory.models import (
    AccessKey,
    Account,
    AlertRecord,
    AuditEvent,
    Finding,
    IamUser,
    KeyMigration,
    KeyObservation,
    KeyRequest,
    KeyUsageLookup,
    KpiRollup,
    PolicyException,
    RotationPolicy,
    Snapshot,
)
from inventory.roles import ADMIN, has_role


class ReadOnlyAdmin(admin.ModelAdmin):
    """Collected data changes only through collections."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    list_display = ("account_id", "name", "role_arn", "enabled", "user_count", "key_count")
    list_filter = ("enabled",)
    search_fields = ("account_id", "name", "role_arn")
    actions = ("collect_now",)
    readonly_fields = ("collecting_until", "created_at", "updated_at")

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                n_users=Count("iam_users", filter=Q(iam_users__deleted=False), distinct=True),
                n_keys=Count("access_keys", filter=Q(access_keys__deleted=False), distinct=True),
            )
        )

    @admin.display(description="IAM users", ordering="n_users")
    def user_count(self, obj):
        return obj.n_users

    @admin.display(description="keys", ordering="n_keys")
    def key_count(self, obj):
        return obj.n_keys

    @admin.action(description="Collect now")
    def collect_now(self, request, queryset):
        from kombu.exceptions import OperationalError as BrokerError

        from inventory.tasks import collect_account

        try:
            for account in queryset:
                collect_account.delay(account.pk)
        except BrokerError as exc:
            self.message_user(
                request, f"The task queue is unavailable, try again later: {exc}", messages.ERROR
            )
            return
        self.message_user(request, f"Collection queued for {queryset.count()} account(s).")


@admin.register(Snapshot)
class SnapshotAdmin(ReadOnlyAdmin):
    list_display = (
        "account", "started_at", "status", "phase", "duration", "api_calls", "user_count",
        "key_count", "active_key_count", "report_generated_at",
    )  # fmt: skip
    list_filter = ("status", "account")
    list_select_related = ("account",)
    date_hierarchy = "started_at"
    search_fields = ("account__account_id", "account__name", "error")


@admin.register(IamUser)
class IamUserAdmin(ReadOnlyAdmin):
    list_display = ("name", "account", "owner", "has_password", "is_root", "created", "deleted")
    list_filter = ("deleted", "has_password", "is_root", "account")
    list_select_related = ("account",)
    search_fields = ("name", "user_id", "owner", "arn")


@admin.register(AccessKey)
class AccessKeyAdmin(ReadOnlyAdmin):
    list_display = (
        "access_key_id", "user_name", "account", "owner", "status", "state", "flags", "age_days",
        "last_used_at", "last_used_service", "deleted",
    )  # fmt: skip
    list_filter = ("state", "status", "deleted", "is_root", "account")
    list_select_related = ("user", "account")
    search_fields = ("access_key_id", "user__name", "user__owner")
    readonly_fields = ("history",)

    def get_queryset(self, request):
        return super().get_queryset(request).with_flags()

    @admin.display(description="flags")
    def flags(self, obj):
        flags = []
        if obj.is_root and obj.is_active:
            flags.append("root key")
        if getattr(obj, "two_active_keys", False):
            flags.append("user has two active keys")
        if getattr(obj, "unowned", False):
            flags.append("unowned")
        return ", ".join(flags)

    @admin.display(description="user", ordering="user__name")
    def user_name(self, obj):
        return obj.user.name

    @admin.display(description="owner", ordering="user__owner")
    def owner(self, obj):
        return obj.user.owner or "(unowned)"

    @admin.display(description="age (days)", ordering="created")
    def age_days(self, obj):
        return (timezone.now() - obj.created).days

    @admin.display(description="history (last 50 snapshots)")
    def history(self, obj):
        rows = (
            KeyObservation.objects.filter(key=obj)
            .select_related("snapshot")
            .order_by("-snapshot__started_at")[:50]
        )
        return format_html_join(
            "\n",
            "<div>{} — {} — last used {}</div>",
            (
                (
                    f"{o.snapshot.started_at:%Y-%m-%d %H:%M}",
                    "active" if o.active else "inactive",
                    o.last_used_at or "never",
                )
                for o in rows
            ),
        )


@admin.register(RotationPolicy)
class RotationPolicyAdmin(admin.ModelAdmin):
    """Admins edit the policy here; every save is validated, audited and re-judges the keys."""

    list_display = ("__str__", "max_age_days", "warn_days", "unused_days", "new_key_grace_days")
    list_select_related = ("account",)

    def get_readonly_fields(self, request, obj=None):
        # A policy keeps its scope: moving it would drop the global policy or an override.
        return ("account",) if obj is not None else ()

    def save_model(self, request, obj, form, change):
        from inventory.services.audit import fields_of
        from inventory.services.policies import FIELDS, save_policy

        before = None
        if change:
            before = fields_of(RotationPolicy.objects.get(pk=obj.pk), FIELDS)
        save_policy(obj, by=request.user, before=before)

    def has_delete_permission(self, request, obj=None):
        # The global policy stays; an override can go (the global policy applies again).
        return obj is None or obj.account_id is not None

    def delete_model(self, request, obj):
        from inventory.services.policies import delete_override

        delete_override(obj, by=request.user)


@admin.register(Finding)
class FindingAdmin(ReadOnlyAdmin):
    list_display = ("key", "account", "kind", "opened_at", "closed_at", "close_reason")
    list_filter = ("kind", "close_reason", "account")
    list_select_related = ("key", "account")
    search_fields = ("key__access_key_id",)


@admin.register(PolicyException)
class PolicyExceptionAdmin(ReadOnlyAdmin):
    list_display = ("__str__", "account", "status", "expires_at", "requested_by", "decided_by")
    list_filter = ("status", "account")
    list_select_related = ("account", "requested_by", "decided_by")


@admin.register(KeyMigration)
class KeyMigrationAdmin(ReadOnlyAdmin):
    list_display = ("key", "status", "role_arn", "marked_by", "marked_at", "verified_at")
    list_filter = ("status", "verified_by", "account")
    list_select_related = ("key", "marked_by")


@admin.register(KpiRollup)
class KpiRollupAdmin(ReadOnlyAdmin):
    list_display = ("day", "scope", "account", "owner", "active_keys", "compliant_keys")
    list_filter = ("scope",)
    date_hierarchy = "day"


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("at", "actor_name", "action", "object_type", "object_id", "account_id")
    list_filter = ("action", "object_type")
    search_fields = ("object_id", "actor_name", "account_id")


@admin.register(KeyRequest)
class KeyRequestAdmin(ReadOnlyAdmin):
    """Requests change only through their workflow (/requests/), which audits every step."""

    list_display = (
        "pk", "account", "iam_user", "owner_email", "status", "requested_by", "decided_by",
        "requested_at", "created_access_key_id",
    )  # fmt: skip
    list_filter = ("status", "account")
    list_select_related = ("account", "iam_user", "requested_by", "decided_by")
    search_fields = ("iam_user__name", "owner_email", "created_access_key_id")


@admin.register(AlertRecord)
class AlertRecordAdmin(ReadOnlyAdmin):
    list_display = (
        "decided_at",
        "audience",
        "recipient",
        "kind",
        "object_id",
        "milestone",
        "sent_at",
    )
    list_filter = ("audience", "kind")
    search_fields = ("recipient", "object_id")


@admin.register(KeyUsageLookup)
class KeyUsageLookupAdmin(ReadOnlyAdmin):
    list_display = ("key", "status", "requested_by", "started_at", "finished_at", "api_calls")
    list_filter = ("status",)
    list_select_related = ("key", "requested_by")


def _admins_only(request) -> bool:
    """Only the admin role opens the Django admin (PRODUCT.md: accounts, policies, schedules);
    ``is_staff`` alone is not enough."""
    return request.user.is_active and has_role(request.user, ADMIN)


admin.site.has_permission = _admins_only
admin.site.site_header = admin.site.site_title = "keygov"
admin.site.site_url = "/"
