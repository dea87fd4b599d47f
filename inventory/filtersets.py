"""Filter sets of keygov's tables (django-filter): GET parameters, so a filtered view is a URL
that can be shared."""

from __future__ import annotations

from datetime import timedelta

import django_filters
from django import forms
from django.db.models import Count, Q
from django.utils import timezone

from inventory.choices import KeyState, KeyStatus
from inventory.models import AccessKey, Account
from inventory.widgets import FastSelect

_YES_NO = forms.Select(
    choices=[("", "Any"), ("true", "Yes"), ("false", "No")],
    attrs={"class": "form-select form-select-sm"},
)


def _text(placeholder: str = "") -> forms.TextInput:
    return forms.TextInput(
        attrs={"class": "form-control form-control-sm", "placeholder": placeholder}
    )


def _days(placeholder: str) -> forms.NumberInput:
    return forms.NumberInput(
        attrs={"class": "form-control form-control-sm", "min": 0, "placeholder": placeholder}
    )


class AccessKeyFilterSet(django_filters.FilterSet):
    """The keys table's filters. Deleted keys are hidden unless ``deleted`` asks for them."""

    q = django_filters.CharFilter(
        method="search", label="Search", widget=_text("Key id, user or owner")
    )
    account = django_filters.ModelChoiceFilter(
        queryset=Account.objects.only("account_id", "name"),
        to_field_name="account_id",
        empty_label="All accounts",
        widget=FastSelect(attrs={"class": "form-select form-select-sm"}),
    )
    state = django_filters.MultipleChoiceFilter(
        # No join multiplies rows here: DISTINCT would only slow the count and the page down.
        choices=KeyState.choices,
        distinct=False,
        widget=forms.CheckboxSelectMultiple,
    )
    status = django_filters.ChoiceFilter(
        choices=KeyStatus.choices,
        empty_label="Any status",
        widget=forms.Select(attrs={"class": "form-select form-select-sm"}),
    )
    owner = django_filters.CharFilter(
        method="filter_owner", label="Owner", widget=_text("name@example.com")
    )
    unowned = django_filters.BooleanFilter(method="filter_unowned", label="Unowned", widget=_YES_NO)
    min_age = django_filters.NumberFilter(
        method="filter_min_age",
        label="Age from (days)",
        min_value=0,
        max_value=36500,
        widget=_days("0"),
    )
    max_age = django_filters.NumberFilter(
        method="filter_max_age",
        label="Age to (days)",
        min_value=0,
        max_value=36500,
        widget=_days("any"),
    )
    never_used = django_filters.BooleanFilter(
        field_name="last_used_at", lookup_expr="isnull", label="Never used", widget=_YES_NO
    )
    two_active_keys = django_filters.BooleanFilter(
        method="filter_two_active_keys", label="User has 2 active keys", widget=_YES_NO
    )
    unapproved = django_filters.BooleanFilter(label="Created without approval", widget=_YES_NO)
    deleted = django_filters.ChoiceFilter(
        method="filter_deleted",
        label="Deleted keys",
        choices=[("include", "Include deleted"), ("only", "Only deleted")],
        empty_label="Hide deleted",
        widget=forms.Select(attrs={"class": "form-select form-select-sm"}),
    )

    class Meta:
        model = AccessKey
        fields: list[str] = []

    def __init__(self, data=None, *args, **kwargs):
        # Always bound: an empty query string still hides deleted keys (filter_queryset below).
        super().__init__(data if data is not None else {}, *args, **kwargs)

    def filter_queryset(self, queryset):
        queryset = super().filter_queryset(queryset)
        if not self.form.cleaned_data.get("deleted"):
            queryset = queryset.filter(deleted=False)
        return queryset

    def search(self, queryset, name, value):
        value = value.strip()
        if not value:
            return queryset
        return queryset.filter(
            Q(access_key_id__icontains=value)
            | Q(user__name__icontains=value)
            | Q(user__owner__icontains=value.lower())
        )

    def filter_owner(self, queryset, name, value):
        # Owners are stored lower-cased (IamUser.owner): an exact match that uses the index.
        return queryset.filter(user__owner=value.strip().lower())

    def filter_unowned(self, queryset, name, value):
        return queryset.filter(user__owner="") if value else queryset.exclude(user__owner="")

    # Ages are whole days rounded down: age >= n  <=>  created <= now - n days, and
    # age <= n  <=>  created > now - (n + 1) days.
    def filter_min_age(self, queryset, name, value):
        return queryset.filter(created__lte=timezone.now() - timedelta(days=int(value)))

    def filter_max_age(self, queryset, name, value):
        return queryset.filter(created__gt=timezone.now() - timedelta(days=int(value) + 1))

    def filter_two_active_keys(self, queryset, name, value):
        # AccessKeyQuerySet.with_flags()'s ``two_active_keys``, as one semi-join rather than a
        # subquery per key.
        pair = Q(
            status=KeyStatus.ACTIVE,
            deleted=False,
            user__in=AccessKey.objects.filter(status=KeyStatus.ACTIVE, deleted=False)
            .order_by()
            .values("user")
            .annotate(n=Count("pk"))
            .filter(n__gte=2)
            .values("user"),
        )
        return queryset.filter(pair) if value else queryset.exclude(pair)

    def filter_deleted(self, queryset, name, value):
        return queryset.filter(deleted=True) if value == "only" else queryset
