"""The API's views: read-only viewsets over the pages' querysets and FilterSets, and the two
writes (filing a key request, marking a migration), which call the same services as the pages.

Lists are paginated by key set (inventory/api/pagination.py) in a fixed order per endpoint; each
list reads a constant number of queries whatever its length (tests/test_api.py counts them)."""

from __future__ import annotations

from datetime import timedelta

from django.core.exceptions import PermissionDenied
from django.db.models import BooleanField, ExpressionWrapper, Prefetch, Q
from django.utils import timezone
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from inventory.choices import ExceptionStatus
from inventory.filtersets import AccessKeyFilterSet
from inventory.governance_tables import ExceptionFilterSet, FindingFilterSet
from inventory.models import (
    AccessKey,
    Account,
    Finding,
    KeyMigration,
    KeyRequest,
    KeyRequestStatus,
    PolicyException,
)
from inventory.roles import OWNER, can_manage_key
from inventory.services import dashboard, kpis, role_migrations
from inventory.services import key_requests as key_request_service
from inventory.views.accounts import AccountFilterSet
from inventory.views.requests import KeyRequestFilterSet

from . import serializers as s

# How far back a KPI trend goes unless ``since`` says otherwise (the pages' year).
TREND_DAYS = dashboard.TREND_DAYS


def _pending_first(status_value: str):
    return ExpressionWrapper(Q(status=status_value), output_field=BooleanField())


class ApiViewSet(viewsets.GenericViewSet):
    """Shared by every viewset: one "now" per request (ages and durations agree across rows)."""

    # The lowest role for every action; ``action_roles`` raises it for some.
    required_role = "viewer"
    action_roles: dict[str, str] = {}
    keyset: tuple[str, ...] = ("id",)
    # Any one path segment reaches the view, which answers a JSON 404 for an id that is not one
    # (rather than Django's HTML page for a URL that matches nothing).
    lookup_value_regex = "[^/]+"

    def get_serializer_context(self):
        context = super().get_serializer_context()
        context.setdefault("now", timezone.now())
        return context

    def filter_queryset(self, queryset):
        # One object is found by its id, not through the list's filters (which, for keys, hide
        # deleted ones).
        if self.action != "list":
            return queryset
        return super().filter_queryset(queryset)


# --- keys --------------------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(
        summary="Access keys",
        description=(
            "Every key, filtered as on the keys page (deleted keys hidden unless `deleted` asks "
            "for them), oldest first. The export's columns, then the key's flags."
        ),
        parameters=[
            OpenApiParameter(
                "deleted",
                str,
                enum=["include", "only"],
                description="Deleted keys: `include` them, or `only` them (default: hidden).",
            )
        ],
    ),
    retrieve=extend_schema(summary="One access key, with its live migration mark"),
)
class AccessKeyViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    queryset = AccessKey.objects.with_flags().select_related("user", "account")
    filterset_class = AccessKeyFilterSet
    serializer_class = s.AccessKeySerializer
    lookup_field = "access_key_id"
    # The keys table's default order, on the (created, id) index of the keys that exist.
    keyset = ("created", "id")
    action_roles = {"migration": OWNER, "withdraw_migration": OWNER}

    def get_queryset(self):
        queryset = super().get_queryset()
        if self.action != "list":
            live = KeyMigration.objects.filter(withdrawn_at__isnull=True).select_related(
                "marked_by"
            )
            queryset = queryset.prefetch_related(
                Prefetch("migrations", queryset=live, to_attr="live_marks")
            )
        return queryset

    def get_serializer_class(self):
        if self.action == "retrieve":
            return s.AccessKeyDetailSerializer
        if self.action in ("migration", "withdraw_migration"):
            return s.MigrationInputSerializer
        return super().get_serializer_class()

    def _managed_key(self) -> AccessKey:
        key = self.get_object()
        if not can_manage_key(self.request.user, key):
            raise PermissionDenied(
                "Only the key's owner or an approver can act on this key"
                + (
                    f" (its owner is {key.user.owner})."
                    if key.user.owner
                    else " (it has no owner)."
                )
            )
        return key

    @extend_schema(
        summary="Mark the key migrating or migrated to an IAM role",
        description=(
            "The key's owner, an approver or an admin. Creates the key's live mark or updates "
            "it; the key is judged again at once (`key_state`)."
        ),
        request=s.MigrationInputSerializer,
        responses={200: s.MigrationSerializer},
    )
    @action(detail=True, methods=["post"], url_path="migration")
    def migration(self, request, access_key_id=None):
        key = self._managed_key()
        data = self.get_serializer(data=request.data)
        data.is_valid(raise_exception=True)
        mark = role_migrations.mark_migration(key, by=request.user, **data.validated_data)
        key.refresh_from_db(fields=["state"])
        mark.key = key
        return Response(s.MigrationSerializer(mark, context=self.get_serializer_context()).data)

    @extend_schema(
        summary="Withdraw the key's migration mark",
        request=None,
        responses={200: s.MigrationSerializer},
    )
    @migration.mapping.delete
    def withdraw_migration(self, request, access_key_id=None):
        key = self._managed_key()
        mark = role_migrations.withdraw_migration(key, by=request.user)
        key.refresh_from_db(fields=["state"])
        mark.key = key
        return Response(s.MigrationSerializer(mark, context=self.get_serializer_context()).data)


# --- accounts ----------------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(summary="AWS accounts", description="By name, then id."),
    retrieve=extend_schema(summary="One AWS account"),
)
class AccountViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    queryset = dashboard.with_latest_kpis(dashboard.with_last_collection(Account.objects.all()))
    filterset_class = AccountFilterSet
    serializer_class = s.AccountSerializer
    lookup_field = "account_id"
    keyset = ("name", "account_id")


# --- findings and exceptions -------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(summary="Findings", description="Open findings first, newest first."),
    retrieve=extend_schema(summary="One finding"),
)
class FindingViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    # As the findings page: keys and their users per page (prefetch), not joined before the cut.
    queryset = (
        Finding.objects.select_related("account")
        .prefetch_related(Prefetch("key", queryset=AccessKey.objects.select_related("user")))
        .annotate(
            open_first=ExpressionWrapper(Q(closed_at__isnull=True), output_field=BooleanField())
        )
    )
    filterset_class = FindingFilterSet
    serializer_class = s.FindingSerializer
    # The findings page's order, on its (open first, opened_at, id) index.
    keyset = ("-open_first", "-opened_at", "-id")


@extend_schema_view(
    list=extend_schema(summary="Exceptions", description="Pending first, newest first."),
    retrieve=extend_schema(summary="One exception"),
)
class PolicyExceptionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    queryset = (
        PolicyException.objects.select_related("account", "requested_by", "decided_by")
        .prefetch_related("key", "iam_user")
        .annotate(is_pending=_pending_first(ExceptionStatus.PENDING))
    )
    filterset_class = ExceptionFilterSet
    serializer_class = s.PolicyExceptionSerializer
    keyset = ("-is_pending", "-requested_at", "-id")


# --- key requests ------------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(summary="Key requests", description="Pending first, newest first."),
    retrieve=extend_schema(summary="One key request"),
    create=extend_schema(
        summary="File a key request",
        description=(
            "Owners, approvers and admins. An approver other than you decides it. One open "
            "request per IAM user; the review date is at most the policy's maximum age away."
        ),
        request=s.KeyRequestInputSerializer,
        responses={201: s.KeyRequestSerializer},
    ),
)
class KeyRequestViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, ApiViewSet
):
    queryset = KeyRequest.objects.select_related(
        "account", "iam_user", "requested_by", "decided_by"
    ).annotate(is_pending=_pending_first(KeyRequestStatus.PENDING))
    filterset_class = KeyRequestFilterSet
    serializer_class = s.KeyRequestSerializer
    keyset = ("-is_pending", "-requested_at", "-id")
    action_roles = {"create": OWNER}

    def get_serializer_class(self):
        if self.action == "create":
            return s.KeyRequestInputSerializer
        return super().get_serializer_class()

    def create(self, request, *args, **kwargs):
        data = self.get_serializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        req = key_request_service.file_request(
            requested_by=request.user,
            account=v["account"],
            iam_user=v["iam_user"],
            justification=v["justification"],
            why_not_role=v["why_not_role"],
            owner_email=v.get("owner_email") or request.user.email or "",
            review_on=v["review_on"],
        )
        out = s.KeyRequestSerializer(req, context=self.get_serializer_context())
        return Response(out.data, status=status.HTTP_201_CREATED)


# --- KPIs --------------------------------------------------------------------------------------


def _scope(query: dict) -> dict:
    account, owner = query.get("account"), query.get("owner")
    return {
        "scope": "account" if account else "owner" if owner else "org",
        "account_id": account.account_id if account else None,
        "owner": owner,
    }


class OneObjectSchema(AutoSchema):
    """``list`` here answers one object (the KPIs), not a list of them."""

    def _is_list_view(self, serializer=None) -> bool:
        return False


class KpiViewSet(ApiViewSet):
    """KPIs now (computed from the current keys) and their daily trend (from the roll-ups)."""

    schema = OneObjectSchema()
    pagination_class = None
    filter_backends: list = []
    serializer_class = s.CurrentKpisSerializer

    def _query(self, serializer_class) -> dict:
        query = serializer_class(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        return dict(query.validated_data)

    @extend_schema(
        summary="KPIs now: org-wide, or for one account or one owner",
        parameters=[s.KpiQuerySerializer],
        responses={200: s.CurrentKpisSerializer},
    )
    def list(self, request):
        query = self._query(s.KpiQuerySerializer)
        now = timezone.now()
        values = kpis.current_kpis(now, account=query.get("account"), owner=query.get("owner"))
        body = {**_scope(query), "at": now, "kpis": values}
        return Response(s.CurrentKpisSerializer(body).data)

    @extend_schema(
        summary="KPIs per day, from the daily roll-ups",
        parameters=[s.KpiTrendQuerySerializer],
        responses={200: s.KpiTrendSerializer},
    )
    @action(detail=False, methods=["get"])
    def trend(self, request):
        query = self._query(s.KpiTrendQuerySerializer)
        since = query.get("since") or timezone.now().date() - timedelta(days=TREND_DAYS)
        rows = kpis.trend(account=query.get("account"), owner=query.get("owner"), since=since)
        body = {**_scope(query), "days": [{"day": day, "kpis": k} for day, k in rows]}
        return Response(s.KpiTrendSerializer(body).data)
