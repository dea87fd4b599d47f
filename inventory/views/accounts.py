"""The accounts: a table of every account with its last collection and latest KPIs, one account's
page (KPIs, trend, policy, collections, overdue keys), and "Collect now" with its progress."""

from __future__ import annotations

import django_filters
import django_tables2 as tables
from django import forms
from django.conf import settings
from django.contrib import messages
from django.db.models import F, Q
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.html import format_html
from django.utils.text import Truncator
from django.views.decorators.http import require_POST
from django.views.generic import TemplateView
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import RedisError

from inventory import tasks
from inventory.choices import KeyState, SnapshotStatus
from inventory.models import AccessKey, Account, Snapshot
from inventory.roles import ADMIN, VIEWER
from inventory.services import dashboard
from inventory.services.evaluation import global_policy
from inventory.templatetags.keygov import days_ago, utc
from inventory.views.base import ObjectListView, RoleRequiredMixin, role_required

# What publishing a task raises when the broker is down or unreachable (kombu wraps most
# connection errors in its OperationalError; a few redis-py ones come through as they are).
BROKER_ERRORS = (BrokerError, RedisError, ConnectionError, TimeoutError)
NEVER = "never"
# Badge class and text of a collection's status (as templates/inventory/_snapshot_status.html).
STATUS_BADGES = {
    SnapshotStatus.COMPLETE: ("text-bg-success", "complete"),
    SnapshotStatus.FAILED: ("text-bg-danger", "failed"),
    SnapshotStatus.RUNNING: ("text-bg-info", "running"),
    None: ("text-bg-secondary", "never collected"),
}


# --- the list -------------------------------------------------------------------------------


class AccountFilterSet(django_filters.FilterSet):
    q = django_filters.CharFilter(
        method="search",
        label="Search",
        widget=forms.TextInput(
            attrs={"class": "form-control form-control-sm", "placeholder": "Name or account id"}
        ),
    )
    enabled = django_filters.BooleanFilter(
        label="Enabled",
        widget=forms.Select(
            choices=[("", "Any"), ("true", "Enabled"), ("false", "Disabled")],
            attrs={"class": "form-select form-select-sm"},
        ),
    )
    last_status = django_filters.ChoiceFilter(
        label="Last collection",
        method="filter_last_status",
        choices=[
            (SnapshotStatus.COMPLETE.value, "Complete"),
            (SnapshotStatus.FAILED.value, "Failed"),
            (SnapshotStatus.RUNNING.value, "Running now"),
            (NEVER, "Never collected"),
        ],
        empty_label="Any",
        widget=forms.Select(attrs={"class": "form-select form-select-sm"}),
    )

    class Meta:
        model = Account
        fields: list[str] = []

    def search(self, queryset, name, value):
        value = value.strip()
        if not value:
            return queryset
        return queryset.filter(Q(name__icontains=value) | Q(account_id__contains=value))

    def filter_last_status(self, queryset, name, value):
        return queryset.filter(dashboard.last_collection_is(None if value == NEVER else value))


def _count(value):
    return "—" if value is None else f"{value:,}"


class AccountTable(tables.Table):
    account_id = tables.Column(
        "Account",
        linkify=("inventory:account_detail", [tables.A("account_id")]),
        order_by=("name", "account_id"),
    )
    # In the exports only (the page shows the name in the account's cell).
    name = tables.Column("Name", visible=False)
    enabled = tables.BooleanColumn("Enabled", yesno="Yes,No")
    last_collection = tables.Column(
        "Last collection",
        # Rendered for accounts never collected too.
        empty_values=(),
        attrs={"td": {"class": "small"}},
    )
    n_users = tables.Column(
        "Users", attrs={"td": {"class": "text-end"}, "th": {"class": "text-end"}}
    )
    n_keys = tables.Column("Keys", attrs={"td": {"class": "text-end"}, "th": {"class": "text-end"}})
    n_active = tables.Column(
        "Active keys", attrs={"td": {"class": "text-end"}, "th": {"class": "text-end"}}
    )
    n_overdue = tables.Column(
        "Overdue", attrs={"td": {"class": "text-end"}, "th": {"class": "text-end"}}
    )
    compliance = tables.Column(
        "Compliance", attrs={"td": {"class": "text-end"}, "th": {"class": "text-end"}}
    )

    class Meta:
        empty_text = "No account matches these filters."
        order_by = ("account_id",)

    def render_account_id(self, value, record):
        return format_html(
            '{}<br><span class="small text-body-secondary font-monospace-sm">{}</span>',
            record.name or value,
            value,
        )

    def render_last_collection(self, record):
        # Python rather than a TemplateColumn: a template per cell re-runs the context
        # processors for each row (a third of the page's time with 50 rows).
        last = dashboard.last_collection(record)
        html = format_html(
            '<span class="badge {}">{}</span>', *STATUS_BADGES.get(last.status, STATUS_BADGES[None])
        )
        if last.at is not None:
            html = format_html(
                '{} <time class="text-nowrap" datetime="{}" title="{}">{}</time>',
                html,
                last.at.isoformat(),
                days_ago(last.at),
                utc(last.at),
            )
        if last.error:
            html = format_html(
                '{}<div class="text-danger text-break" title="{}">{}</div>',
                html,
                last.error,
                Truncator(last.error).chars(120),
            )
        if last.running_since is not None:
            html = format_html(
                '{} <span class="badge {}">{}</span>', html, *STATUS_BADGES[SnapshotStatus.RUNNING]
            )
        return html

    def value_last_collection(self, record):
        return dashboard.last_collection(record).status or NEVER

    def value_account_id(self, value):
        return value

    def render_n_users(self, value):
        return _count(value)

    render_n_keys = render_n_active = render_n_users

    def render_n_overdue(self, value):
        if not value:
            return _count(value)
        return format_html('<span class="text-danger fw-semibold">{}</span>', _count(value))

    def value_n_overdue(self, value):
        return value

    def render_compliance(self, value):
        return f"{value:.1f} %"

    def value_compliance(self, value):
        return None if value is None else round(value, 1)

    # Numbers sort with the accounts never collected (no roll-up yet) last, both ways.
    def _nulls_last(self, queryset, is_descending, field):
        expr = F(field).desc(nulls_last=True) if is_descending else F(field).asc(nulls_last=True)
        return queryset.order_by(expr, "name", "account_id"), True

    def order_n_users(self, queryset, is_descending):
        return self._nulls_last(queryset, is_descending, "n_users")

    def order_n_keys(self, queryset, is_descending):
        return self._nulls_last(queryset, is_descending, "n_keys")

    def order_n_active(self, queryset, is_descending):
        return self._nulls_last(queryset, is_descending, "n_active")

    def order_n_overdue(self, queryset, is_descending):
        return self._nulls_last(queryset, is_descending, "n_overdue")

    def order_compliance(self, queryset, is_descending):
        return self._nulls_last(queryset, is_descending, "compliance")

    def order_last_collection(self, queryset, is_descending):
        order = dashboard.last_collection_order(is_descending)
        return queryset.order_by(order, "name", "account_id"), True


class AccountListView(ObjectListView):
    queryset = dashboard.with_latest_kpis(dashboard.with_last_collection(Account.objects.all()))
    filterset_class = AccountFilterSet
    table_class = AccountTable
    title = "Accounts"
    description = (
        "Every AWS account keygov reads: its last collection and the figures of its latest "
        "KPI roll-up. Sort by a column; open an account for its trend, policy and collections."
    )
    export_formats = ("csv", "xlsx")
    export_name = "keygov-accounts"


# --- one account ----------------------------------------------------------------------------


class AccountDetailView(RoleRequiredMixin, TemplateView):
    template_name = "inventory/account_detail.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        account = get_object_or_404(
            Account.objects.select_related("policy_override"), account_id=kwargs["account_id"]
        )
        view = dashboard.kpi_view(account=account)
        snapshots = list(Snapshot.objects.filter(account=account).order_by("-started_at")[:10])
        running = next((s for s in snapshots if s.status == SnapshotStatus.RUNNING), None)
        overdue = (
            AccessKey.objects.filter(account=account, state=KeyState.OVERDUE, deleted=False)
            .select_related("user")
            .order_by("created", "pk")[: dashboard.TOP]
        )
        charts = {"trend": dashboard.trend_chart(view.series)}
        if view.kpis is not None:
            charts["ages"] = dashboard.age_chart(view.kpis)
        context.update(
            title=str(account),
            account=account,
            kpi=view,
            charts=charts,
            age_rows=dashboard.chart_rows(charts["ages"]) if "ages" in charts else [],
            # effective_policy() without looking the override up again (select_related above).
            policy=(
                account.policy_override.rules()
                if hasattr(account, "policy_override")
                else global_policy().rules()
            ),
            policy_is_override=hasattr(account, "policy_override"),
            snapshots=snapshots,
            snapshot=running or (snapshots[0] if snapshots else None),
            running=running is not None,
            overdue_keys=list(overdue),
            top=dashboard.TOP,
        )
        return context


@role_required(ADMIN)
@require_POST
def collect_now(request, account_id):
    """Queue a collection of the account (with Redis), or run it here (embedded default)."""
    account = get_object_or_404(Account, account_id=account_id)
    try:
        result = tasks.collect_account.delay(account.pk)
    except BROKER_ERRORS as exc:
        messages.error(
            request,
            f"The collection of {account} was not started: the task queue is unavailable "
            f"({exc}). Try again in a minute; every page keeps working meanwhile.",
        )
        return redirect("inventory:account_detail", account_id=account.account_id)
    if settings.CELERY_TASK_ALWAYS_EAGER:
        # Embedded default: the collection ran in this request.
        messages.info(request, f"Collection finished: {result.result}")
    else:
        messages.success(
            request,
            f"Collection of {account} queued: this page shows its progress once a worker "
            "starts it.",
        )
    return redirect("inventory:account_detail", account_id=account.account_id)


@role_required(VIEWER)
def progress(request, account_id):
    """The collection status box, polled by htmx every 2 s while a collection runs. Once it
    has finished the box comes back without the trigger (polling stops) and, for htmx, with
    ``HX-Refresh`` so the page reloads with the new figures."""
    account = get_object_or_404(Account, account_id=account_id)
    snapshot = dashboard.collection_status(account)
    running = snapshot is not None and snapshot.status == SnapshotStatus.RUNNING
    response = render(
        request,
        "inventory/_account_progress.html",
        {"account": account, "snapshot": snapshot, "running": running},
    )
    if not running and request.headers.get("HX-Request"):
        response["HX-Refresh"] = "true"
    return response
