"""Tables and filter sets of the governance pages: findings, exceptions and the audit log.

Each page is a queryset, a FilterSet and a Table (NetBox's pattern, inventory/views/base.py).
Every related object a row shows comes from the view's queryset (``select_related`` for small
tables, ``prefetch_related`` for keys and IAM users, so that the page is cut before the join),
or, for the audit log (whose rows point at objects of several models), from one query for the
page's rows (``AuditTable.before_render``): never one query per row.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta
from typing import Any

import django_filters
import django_tables2 as tables
from django import forms
from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import CharField, Q, QuerySet, Value
from django.middleware.csrf import get_token
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.text import Truncator

from inventory.choices import CloseReason, ExceptionStatus, KeyState
from inventory.models import (
    AccessKey,
    Account,
    AuditEvent,
    Finding,
    IamUser,
    KeyMigration,
    PolicyException,
)
from inventory.policy import whole_days
from inventory.roles import APPROVER, has_role
from inventory.templatetags.keygov import state_badge, utc, utc_time
from inventory.widgets import FastSelect

# --- shared pieces -----------------------------------------------------------------------------


class BootstrapFilterSet(django_filters.FilterSet):
    """A filter set whose widgets carry Bootstrap's small form classes."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for field in self.form.fields.values():
            widget = field.widget
            if isinstance(widget, forms.CheckboxInput):
                css = "form-check-input d-block"
            elif isinstance(widget, forms.Select):
                css = "form-select form-select-sm"
            else:
                css = "form-control form-control-sm"
            widget.attrs["class"] = f"{widget.attrs.get('class', '')} {css}".strip()


class DayFilter(django_filters.DateFilter):
    """A day (UTC) as a bound on a timestamp: ``start`` keeps rows from that day's first
    instant, ``end`` rows up to that day's last. Compares the column itself (no ``__date``),
    so an index on it serves the range."""

    def __init__(self, *args, bound: str, **kwargs):
        self.bound = bound
        kwargs.setdefault("widget", forms.DateInput(attrs={"type": "date"}))
        super().__init__(*args, **kwargs)

    def filter(self, qs, value):
        if not value:
            return qs
        start = datetime.combine(value, time.min, tzinfo=UTC)
        if self.bound == "start":
            return qs.filter(**{f"{self.field_name}__gte": start})
        return qs.filter(**{f"{self.field_name}__lt": start + timedelta(days=1)})


def account_choices() -> list[tuple[str, str]]:
    """Every account as (account id, "name (id)"), for filters on a plain account-id column."""
    return [
        (account_id, f"{name} ({account_id})" if name else account_id)
        for account_id, name in Account.objects.order_by("name", "account_id").values_list(
            "account_id", "name"
        )
    ]


class AccountFilter(django_filters.ChoiceFilter):
    """An account, by its 12-digit id (readable in a shared URL); choices read as plain values,
    not as 500 model instances."""

    def __init__(self, field_name="account__account_id", **kwargs):
        kwargs.setdefault("label", "Account")
        kwargs.setdefault("empty_label", "All accounts")
        kwargs.setdefault("widget", FastSelect)
        super().__init__(field_name=field_name, choices=account_choices, **kwargs)


def key_link(access_key_id: str) -> str:
    return format_html(
        '<a class="font-monospace-sm" href="{}">{}</a>',
        reverse("inventory:accesskey_detail", args=[access_key_id]),
        access_key_id,
    )


def account_cell(account: Account) -> str:
    """An account's name over its id, linked to its page."""
    return format_html(
        '<a href="{}">{}</a><div class="small text-body-secondary font-monospace-sm">{}</div>',
        reverse("inventory:account_detail", args=[account.account_id]),
        account.name or account.account_id,
        account.account_id,
    )


def plural_days(n: int) -> str:
    return f"{n} day{'s' if n != 1 else ''}"


def iso(value: datetime | None) -> str:
    return value.astimezone(UTC).isoformat() if value else ""


# --- findings ----------------------------------------------------------------------------------


class FindingFilterSet(BootstrapFilterSet):
    q = django_filters.CharFilter(method="search", label="Search")
    state = django_filters.ChoiceFilter(
        label="Open or closed",
        choices=[("open", "Open"), ("closed", "Closed")],
        empty_label="Open and closed",
        method="filter_state",
    )
    kind = django_filters.ChoiceFilter(
        choices=[(KeyState.OVERDUE, "Overdue"), (KeyState.UNUSED, "Unused")],
        empty_label="Any kind",
    )
    account = AccountFilter()
    owner = django_filters.CharFilter(method="filter_owner", label="Owner")
    close_reason = django_filters.ChoiceFilter(
        label="Close reason", choices=CloseReason.choices, empty_label="Any reason"
    )
    opened_from = DayFilter(field_name="opened_at", bound="start", label="Opened from")
    opened_to = DayFilter(field_name="opened_at", bound="end", label="Opened until")

    class Meta:
        model = Finding
        fields = ["q", "state", "kind", "account", "owner", "close_reason"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.form.fields["q"].widget.attrs["placeholder"] = "Key id, user or owner"
        self.form.fields["owner"].widget.attrs["placeholder"] = "owner@example.com"

    def search(self, queryset, name, value):
        value = value.strip()
        if not value:
            return queryset
        return queryset.filter(
            Q(key__access_key_id__icontains=value)
            | Q(key__user__name__icontains=value)
            | Q(key__user__owner__icontains=value)
        )

    def filter_state(self, queryset, name, value):
        if value == "open":
            return queryset.filter(closed_at__isnull=True)
        if value == "closed":
            return queryset.filter(closed_at__isnull=False)
        return queryset

    def filter_owner(self, queryset, name, value):
        value = value.strip().lower()
        if value in ("unowned", "-"):
            return queryset.filter(key__user__owner="")
        # Owners are stored lower-cased (the owner tag's value).
        return queryset.filter(key__user__owner=value) if value else queryset


class FindingTable(tables.Table):
    key = tables.Column("Key", accessor="key__access_key_id")
    account = tables.Column(order_by=("account__name", "account__account_id"))
    user = tables.Column("IAM user", accessor="key__user__name")
    owner = tables.Column(accessor="key__user__owner", empty_values=())
    kind = tables.Column()
    opened_at = tables.Column("Opened")
    closed_at = tables.Column("Closed", empty_values=())
    duration = tables.Column("Duration", empty_values=(), order_by=("duration",))
    close_reason = tables.Column("Close reason", empty_values=())

    class Meta:
        model = Finding
        fields = ()
        sequence = (
            "key",
            "account",
            "user",
            "owner",
            "kind",
            "opened_at",
            "closed_at",
            "duration",
            "close_reason",
        )
        empty_text = (
            "No findings match. A finding opens when a key becomes overdue or unused, and "
            "closes when the key is rotated, deleted, deactivated, migrated or excepted."
        )

    def __init__(self, *args, now: datetime | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.now = now or timezone.now()

    def render_key(self, value):
        return key_link(value)

    def render_account(self, record):
        return account_cell(record.account)

    def render_owner(self, value):
        return value or mark_safe('<span class="text-body-secondary">unowned</span>')  # nosec B308  # constant markup

    def render_kind(self, record):
        return state_badge(record.kind)

    def render_opened_at(self, value):
        return utc_time(value)

    def render_closed_at(self, value):
        if value is None:
            return mark_safe('<span class="badge text-bg-warning">open</span>')  # nosec B308  # constant markup
        return utc_time(value)

    def render_duration(self, record):
        days = whole_days(record.opened_at, record.closed_at or self.now)
        if record.closed_at is None:
            return format_html(
                '{} <span class="text-body-secondary">so far</span>', plural_days(days)
            )
        return plural_days(days)

    def render_close_reason(self, record):
        return record.get_close_reason_display() or "—"

    # CSV/XLSX: plain values.
    def value_key(self, value):
        return value

    def value_account(self, record):
        return record.account.account_id

    def value_owner(self, value):
        return value

    def value_kind(self, record):
        return record.kind

    def value_opened_at(self, value):
        return iso(value)

    def value_closed_at(self, value):
        return iso(value)

    def value_duration(self, record):
        return whole_days(record.opened_at, record.closed_at or self.now)

    def value_close_reason(self, record):
        return record.close_reason


# --- exceptions --------------------------------------------------------------------------------

# Colours with readable text (Bootstrap's text-bg-* pick a contrasting text colour).
STATUS_BADGES = {
    ExceptionStatus.PENDING: "text-bg-warning",
    ExceptionStatus.APPROVED: "text-bg-success",
    ExceptionStatus.REJECTED: "text-bg-danger",
    ExceptionStatus.CANCELLED: "text-bg-secondary",
}
LIVE_STATUSES = (ExceptionStatus.PENDING, ExceptionStatus.APPROVED)


class ExceptionFilterSet(BootstrapFilterSet):
    status = django_filters.ChoiceFilter(choices=ExceptionStatus.choices, empty_label="Any status")
    account = AccountFilter()
    expiring_within = django_filters.NumberFilter(
        label="Expiring within (days)",
        method="filter_expiring",
        min_value=0,
        max_value=3650,
        widget=forms.NumberInput(attrs={"step": "1"}),
    )
    mine = django_filters.BooleanFilter(
        label="Requested by me", method="filter_mine", widget=forms.CheckboxInput
    )

    class Meta:
        model = PolicyException
        fields = ["status", "account"]

    def filter_expiring(self, queryset, name, value):
        """Pending and approved exceptions that end in the next ``value`` days (a rejected or
        cancelled one covers nothing, so its expiry does not matter)."""
        if value is None:
            return queryset
        now = timezone.now()
        return queryset.filter(
            status__in=LIVE_STATUSES,
            expires_at__gt=now,
            expires_at__lte=now + timedelta(days=int(value)),
        )

    def filter_mine(self, queryset, name, value):
        if not value or self.request is None:
            return queryset
        return queryset.filter(requested_by=self.request.user)


def expiry_text(expires_at: datetime, now: datetime) -> str:
    """ "in 26 days", "within a day", "expired"."""
    if expires_at <= now:
        return "expired"
    days = whole_days(now, expires_at)
    return "within a day" if days == 0 else f"in {plural_days(days)}"


def _short(text: str, length: int) -> str:
    """``text`` cut to ``length`` characters, the full text in its tooltip."""
    if len(text) <= length:
        return format_html("{}", text)
    return format_html('<span title="{}">{}</span>', text, Truncator(text).chars(length))


class ExceptionTable(tables.Table):
    target = tables.Column(
        "Covers", empty_values=(), order_by=("key__access_key_id", "iam_user__name")
    )
    account = tables.Column(order_by=("account__name", "account__account_id"))
    reason = tables.Column(orderable=False)
    status = tables.Column()
    expires_at = tables.Column("Expires")
    requested = tables.Column("Requested", empty_values=(), order_by=("requested_at",))
    decided = tables.Column("Decided", empty_values=(), order_by=("decided_at",))
    actions = tables.Column("Decision", empty_values=(), orderable=False, exclude_from_export=True)

    class Meta:
        model = PolicyException
        fields = ()
        sequence = (
            "target",
            "account",
            "reason",
            "status",
            "expires_at",
            "requested",
            "decided",
            "actions",
        )
        empty_text = (
            "No exceptions match. An exception lets a key break the rotation policy for a "
            "reason until it expires; it is requested from the key's page."
        )

    def __init__(self, *args, now: datetime | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.now = now or timezone.now()

    def render_target(self, record):
        if record.key_id:
            return key_link(record.key.access_key_id)
        return format_html(
            '{} <div class="small text-body-secondary">all keys of the user</div>',
            record.iam_user.name,
        )

    def render_account(self, record):
        return account_cell(record.account)

    def render_reason(self, record):
        return _short(record.reason, 80)

    def render_status(self, record):
        return format_html(
            '<span class="badge {}">{}</span>',
            STATUS_BADGES.get(record.status, "text-bg-secondary"),
            record.get_status_display(),
        )

    def render_expires_at(self, record):
        text = expiry_text(record.expires_at, self.now)
        css = "text-danger" if text == "expired" else "text-body-secondary"
        return format_html(
            '<time datetime="{}">{}</time><div class="small {}">{}</div>',
            iso(record.expires_at),
            utc(record.expires_at),
            css,
            text,
        )

    def render_requested(self, record):
        return format_html(
            '{}<div class="small text-body-secondary">{}</div>',
            record.requested_by.get_username(),
            utc(record.requested_at),
        )

    def render_decided(self, record):
        if record.decided_by_id is None:
            return mark_safe('<span class="text-body-secondary">—</span>')  # nosec B308  # constant markup
        comment = (
            format_html(
                '<div class="small fst-italic">“{}”</div>', _short(record.decision_comment, 60)
            )
            if record.decision_comment
            else ""
        )
        return format_html(
            '{}<div class="small text-body-secondary">{}</div>{}',
            record.decided_by.get_username(),
            utc(record.decided_at),
            comment,
        )

    def render_actions(self, record):
        """Approvers approve or reject (with an optional comment) others' pending requests;
        the requester sees that someone else must decide, and may cancel. Both forms come back
        to this list with its filters (``next``). Built here rather than in a template: a
        template per cell would run every context processor for every row."""
        if record.status != ExceptionStatus.PENDING:
            return ""
        request = self.request
        hidden = format_html(
            '<input type="hidden" name="csrfmiddlewaretoken" value="{}">'
            '<input type="hidden" name="next" value="{}">',
            get_token(request),
            request.get_full_path(),
        )
        if record.requested_by_id == request.user.pk:
            return format_html(
                '<div class="small text-body-secondary mb-1">Your request: awaiting another '
                'approver</div><form method="post" action="{}">{}<button type="submit" '
                'class="btn btn-sm btn-outline-secondary">Cancel request</button></form>',
                reverse("inventory:exception_cancel", args=[record.pk]),
                hidden,
            )
        if not has_role(request.user, APPROVER):
            return mark_safe('<span class="small text-body-secondary">Awaiting an approver</span>')  # nosec B308  # constant markup
        return format_html(
            '<form method="post" action="{action}" '
            'class="d-flex flex-wrap gap-1 align-items-center">{hidden}'
            '<label class="visually-hidden" for="decision-comment-{pk}">Comment on the '
            "decision (optional)</label>"
            '<input type="text" class="form-control form-control-sm w-auto" '
            'id="decision-comment-{pk}" name="comment" maxlength="2000" '
            'placeholder="Comment (optional)">'
            '<button type="submit" name="decision" value="approve" '
            'class="btn btn-sm btn-success" aria-label="Approve the exception for {target}">'
            "Approve</button>"
            '<button type="submit" name="decision" value="reject" '
            'class="btn btn-sm btn-outline-danger" aria-label="Reject the exception for '
            '{target}">Reject</button></form>',
            target=self.value_target(record),
            action=reverse("inventory:exception_decide", args=[record.pk]),
            hidden=hidden,
            pk=record.pk,
        )

    def value_target(self, record):
        return record.key.access_key_id if record.key_id else f"user {record.iam_user.name}"

    def value_account(self, record):
        return record.account.account_id

    def value_reason(self, record):
        return record.reason

    def value_status(self, record):
        return record.status

    def value_expires_at(self, record):
        return iso(record.expires_at)

    def value_requested(self, record):
        return f"{record.requested_by.get_username()} {iso(record.requested_at)}"

    def value_decided(self, record):
        if record.decided_by_id is None:
            return ""
        return f"{record.decided_by.get_username()} {iso(record.decided_at)} {record.decision_comment}".strip()


# --- audit log ---------------------------------------------------------------------------------

SYSTEM = "system"


def audit_actions() -> list[str]:
    """The distinct actions in the audit log, read as a loose index scan: one probe of the
    ``action`` index per distinct value (a handful), never a pass over the whole log."""
    table = connection.ops.quote_name(AuditEvent._meta.db_table)
    sql = (
        f"WITH RECURSIVE a(action) AS ("  # noqa: S608  # nosec B608  # the table name is the model's own
        f" SELECT MIN(action) FROM {table}"
        f" UNION ALL"
        f" SELECT (SELECT MIN(action) FROM {table} WHERE action > a.action)"
        f" FROM a WHERE a.action IS NOT NULL"
        f") SELECT action FROM a WHERE action IS NOT NULL"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return [row[0] for row in cursor.fetchall()]


def actor_choices() -> list[tuple[str, str]]:
    users = get_user_model().objects.order_by("username").values_list("username", flat=True)
    return [(SYSTEM, "system (automatic)"), *((name, name) for name in users)]


def inventory_model_names() -> list[str]:
    """Every ``object_type`` an audit row can carry (the inventory app's model names)."""
    return sorted(m._meta.model_name for m in apps.get_app_config("inventory").get_models())


class AuditFilterSet(BootstrapFilterSet):
    action = django_filters.ChoiceFilter(choices=(), empty_label="Any action")
    actor = django_filters.ChoiceFilter(
        label="Who", choices=(), empty_label="Anyone", method="filter_actor"
    )
    account_id = AccountFilter(field_name="account_id", label="AWS account")
    object = django_filters.CharFilter(label="Object", method="filter_object")
    at_from = DayFilter(field_name="at", bound="start", label="From")
    at_to = DayFilter(field_name="at", bound="end", label="Until")

    class Meta:
        model = AuditEvent
        fields = ["action", "actor", "account_id", "object"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        fields = self.form.fields
        # The fields add their empty label ("Any action", ...) themselves.
        fields["action"].choices = [(a, a) for a in audit_actions()]
        fields["actor"].choices = actor_choices()
        fields["object"].widget.attrs["placeholder"] = "Key id or object id"

    def filter_actor(self, queryset, name, value):
        # actor_id is indexed (a foreign key), actor_name is not.
        if value == SYSTEM:
            return queryset.filter(actor__isnull=True)
        return queryset.filter(actor__username=value)

    def filter_object(self, queryset, name, value):
        """A number: the rows of any object with that id. An AccessKeyId: the key's trail —
        the rows of the key itself and of its findings, exceptions and migration marks.
        Both read the (object_type, object_id) index."""
        value = value.strip()
        if not value:
            return queryset
        if value.isdigit():
            return queryset.filter(object_type__in=inventory_model_names(), object_id=value)
        # The trail's objects are looked up first (one query), so that the log is then read
        # through its (object_type, object_id) index: as subqueries inside an OR, Postgres
        # would scan the whole log instead.
        parts = [
            model.objects.filter(**{lookup: value})
            .order_by()
            .annotate(t=Value(model._meta.model_name, output_field=CharField()))
            .values_list("t", "pk")
            for model, lookup in (
                (AccessKey, "access_key_id"),
                (Finding, "key__access_key_id"),
                (PolicyException, "key__access_key_id"),
                (KeyMigration, "key__access_key_id"),
            )
        ]
        objects: dict[str, list[str]] = {}
        for object_type, pk in parts[0].union(*parts[1:], all=True):
            objects.setdefault(object_type, []).append(str(pk))
        if not objects:
            return queryset.none()
        trail = Q()
        for object_type, pks in objects.items():
            trail |= Q(object_type=object_type, object_id__in=pks)
        return queryset.filter(trail)


# What an audited object's pk stands for, read for a page's rows in one query: the key an
# object belongs to (a key, a finding, an exception, a migration mark), or an IAM user's name.
NAME_OF = {
    AccessKey._meta.model_name: (AccessKey, "access_key_id"),
    Finding._meta.model_name: (Finding, "key__access_key_id"),
    PolicyException._meta.model_name: (PolicyException, "key__access_key_id"),
    KeyMigration._meta.model_name: (KeyMigration, "key__access_key_id"),
    IamUser._meta.model_name: (IamUser, "name"),
}
KEY_TYPES = frozenset(NAME_OF) - {IamUser._meta.model_name}
OBJECT_LABELS = {
    "accesskey": "key",
    "finding": "finding",
    "policyexception": "exception",
    "keymigration": "migration",
    "rotationpolicy": "policy",
    "iamuser": "IAM user",
}
# Audited fields that hold the pk of an object NAME_OF names.
REF_FIELDS = {"key": AccessKey._meta.model_name, "iam_user": IamUser._meta.model_name}
# Audited fields that hold a person's id: shown as the username.
USER_FIELDS = frozenset(
    {"requested_by", "decided_by", "marked_by", "withdrawn_by", "actor", "approved_by"}
)


def changes(before: dict | None, after: dict | None) -> list[tuple[str, Any, Any, bool]]:
    """The fields that differ between ``before`` and ``after``, as (field, old, new, created):
    ``created`` when there was no "before" at all (the row records a creation)."""
    before_d = before if isinstance(before, dict) else {}
    after_d = after if isinstance(after, dict) else {}
    if before is None and after is not None:
        return [(k, None, v, True) for k, v in after_d.items() if v not in (None, "")]
    out = []
    for field in [*before_d, *(k for k in after_d if k not in before_d)]:
        old, new = before_d.get(field), after_d.get(field)
        if old != new:
            out.append((field, old, new, False))
    return out


class CappedCountPaginator(Paginator):
    """Counts at most ``cap`` rows: ``COUNT(*)`` over a subquery with ``LIMIT cap + 1``, which
    stops early on whichever index the filters use, where a full count of a huge log would
    read all of it (and pages past ``cap`` would be deep, slow OFFSETs). ``capped`` tells the
    page to say "more than"."""

    cap = 10_000

    @cached_property
    def count(self) -> int:
        data = getattr(self.object_list, "data", self.object_list)  # BoundRows -> TableData
        queryset = getattr(data, "data", data)
        if not isinstance(queryset, QuerySet):
            return len(self.object_list)
        n = queryset.order_by()[: self.cap + 1].count()
        self.capped = n > self.cap
        return min(n, self.cap)

    capped = False

    @property
    def cap_text(self) -> str:
        return f"{self.cap:,}"


class AuditTable(tables.Table):
    # Only the time sorts: ``at`` is indexed, the other columns are not (the log is huge).
    at = tables.Column("When", order_by=("at", "id"))
    actor_name = tables.Column("Who", orderable=False)
    action = tables.Column(orderable=False)
    object = tables.Column("Object", empty_values=(), orderable=False)
    account_id = tables.Column("AWS account", orderable=False, empty_values=())
    change = tables.Column("Change", empty_values=(), orderable=False)

    class Meta:
        model = AuditEvent
        fields = ()
        sequence = ("at", "actor_name", "action", "object", "account_id", "change")
        empty_text = (
            "No audit events match. Every change keygov makes or is asked to make is recorded here."
        )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # (object type, pk as text) -> AccessKeyId or IAM user name; person id -> username.
        self.names: dict[tuple[str, str], str] = {}
        self.usernames: dict[int, str] = {}

    def before_render(self, request):
        """Resolve what the page's rows point at: one query for every kind of object, one for
        people, whatever the number of rows."""
        page = getattr(self, "page", None)
        self.resolve(list(page.object_list.data) if page else [])

    def resolve(self, records: list[AuditEvent]) -> None:
        wanted: dict[str, set[int]] = {}
        user_ids: set[int] = set()
        for event in records:
            if event.object_type in NAME_OF and event.object_id.isdigit():
                wanted.setdefault(event.object_type, set()).add(int(event.object_id))
            for side in (event.before, event.after):
                for field, value in side.items() if isinstance(side, dict) else ():
                    if not isinstance(value, int):
                        continue
                    if field in USER_FIELDS:
                        user_ids.add(value)
                    elif field in REF_FIELDS:
                        wanted.setdefault(REF_FIELDS[field], set()).add(value)
        parts = [
            NAME_OF[object_type][0]
            .objects.filter(pk__in=pks)
            .order_by()
            .annotate(t=Value(object_type, output_field=CharField()))
            .values_list("t", "pk", NAME_OF[object_type][1])
            for object_type, pks in wanted.items()
        ]
        if parts:
            for object_type, pk, name in parts[0].union(*parts[1:], all=True):
                if name:
                    self.names[(object_type, str(pk))] = name
        if user_ids:
            self.usernames = dict(
                get_user_model().objects.filter(pk__in=user_ids).values_list("pk", "username")
            )

    def show(self, field: str, value: Any) -> str:
        """One audited value as a person reads it: people by username, keys by AccessKeyId,
        IAM users by name, times in UTC."""
        if value is None or value == "":
            return "—"
        if isinstance(value, int) and field in USER_FIELDS:
            return self.usernames.get(value, f"user #{value}")
        if isinstance(value, int) and field in REF_FIELDS:
            return self.names.get((REF_FIELDS[field], str(value)), f"#{value}")
        if isinstance(value, str) and len(value) >= 19 and value[4] == "-" and value[10] == "T":
            try:
                return utc(datetime.fromisoformat(value))
            except ValueError:
                pass
        if isinstance(value, dict | list):
            return json.dumps(value, sort_keys=True)
        return str(value)

    def render_at(self, value):
        return utc_time(value)

    def render_actor_name(self, record):
        if record.actor_id is None and record.actor_name == SYSTEM:
            return mark_safe('<span class="text-body-secondary">system</span>')  # nosec B308  # constant markup
        return record.actor_name

    def render_action(self, value):
        return format_html('<code class="text-body">{}</code>', value)

    def render_object(self, record):
        label = OBJECT_LABELS.get(record.object_type, record.object_type)
        name = self.names.get((record.object_type, record.object_id))
        if name is None:
            return format_html("{} #{}", label, record.object_id)
        if record.object_type == AccessKey._meta.model_name:
            return key_link(name)
        if record.object_type in KEY_TYPES:
            return format_html(
                '{} #{}<div class="small">key {}</div>', label, record.object_id, key_link(name)
            )
        return format_html("{} {}", label, name)

    def render_account_id(self, value):
        if not value:
            return "—"
        return format_html(
            '<a class="font-monospace-sm" href="{}">{}</a>',
            reverse("inventory:account_detail", args=[value]),
            value,
        )

    def render_change(self, record):
        rows = changes(record.before, record.after)
        if not rows:
            return mark_safe('<span class="text-body-secondary">—</span>')  # nosec B308  # constant markup
        items = []
        for field, old, new, created in rows:
            if created:
                text = format_html("{}", self.show(field, new))
            else:
                text = format_html(
                    '{} <span aria-label="changed to">→</span> {}',
                    self.show(field, old),
                    self.show(field, new),
                )
            items.append((field.replace("_", " "), text))
        return format_html(
            '<ul class="list-unstyled mb-0 small">{}</ul>',
            format_html_join("", '<li><span class="text-body-secondary">{}:</span> {}</li>', items),
        )
