"""The overview: the key-hygiene KPIs with their trend, where the overdue keys are, and which
accounts failed their last collection. Filterable by account and owner."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.views.generic import TemplateView

from inventory.models import Account
from inventory.services import dashboard
from inventory.views.base import RoleRequiredMixin

PERIODS = (("30", "30 days"), ("90", "90 days"), ("180", "180 days"), ("365", "a year"))


class OverviewFilterForm(forms.Form):
    account = forms.ModelChoiceField(
        queryset=Account.objects.only("pk", "account_id", "name"),
        # The 12-digit id in the URL, as the keys table's filter takes it.
        to_field_name="account_id",
        required=False,
        empty_label="All accounts",
        widget=forms.Select(attrs={"class": "form-select form-select-sm"}),
    )
    owner = forms.CharField(
        required=False,
        max_length=320,
        label="Owner",
        widget=forms.TextInput(
            attrs={
                "class": "form-control form-control-sm",
                "placeholder": "owner@example.com",
                "autocomplete": "off",
            }
        ),
    )
    days = forms.TypedChoiceField(
        choices=PERIODS,
        coerce=int,
        required=False,
        empty_value=dashboard.TREND_DAYS,
        label="Trend over",
        widget=forms.Select(attrs={"class": "form-select form-select-sm"}),
    )

    def clean_owner(self) -> str | None:
        return self.cleaned_data["owner"].strip().lower() or None


class OverviewView(RoleRequiredMixin, TemplateView):
    template_name = "inventory/overview.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        form = OverviewFilterForm(self.request.GET or None)
        account = owner = None
        days = dashboard.TREND_DAYS
        if form.is_bound and form.is_valid():
            account = form.cleaned_data["account"]
            owner = form.cleaned_data["owner"]
            days = form.cleaned_data["days"] or dashboard.TREND_DAYS
        view = dashboard.kpi_view(account=account, owner=owner, days=days)
        by_account = [] if account else dashboard.overdue_by_account(owner=owner)
        by_owner = (
            [] if owner else dashboard.overdue_by_owner(account=account, version=view.version)
        )
        charts = {"trend": dashboard.trend_chart(view.series)}
        if view.kpis is not None:
            charts["ages"] = dashboard.age_chart(view.kpis)
        if by_account:
            charts["overdue_accounts"] = dashboard.overdue_chart_by_account(by_account)
        if by_owner:
            charts["overdue_owners"] = dashboard.overdue_chart_by_owner(by_owner)
        failed = dashboard.failed_accounts()
        if account is not None:
            failed = failed.filter(pk=account.pk)
        context.update(
            title="Overview",
            form=form,
            account=account,
            owner=owner,
            days=days,
            filtered=bool(account or owner),
            kpi=view,
            charts=charts,
            overdue_by_account=by_account,
            overdue_by_owner=by_owner,
            age_rows=dashboard.chart_rows(charts["ages"]) if "ages" in charts else [],
            top=dashboard.TOP,
            failed_accounts=list(failed[:50]),
            unapproved_keys=dashboard.unapproved_keys(account=account, owner=owner),
            collect_cron=settings.KEYGOV_COLLECT_CRON,
            # The empty states: no account at all, or no complete collection yet.
            has_accounts=view.kpis is not None or Account.objects.exists(),
        )
        return context
