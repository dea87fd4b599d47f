"""Findings, exceptions and the audit log as tables; approvers decide exceptions here.

The decisions themselves are the services' (inventory/services/exceptions.py): these views
turn a refusal into a message and go back to the list the person came from.
"""

from __future__ import annotations

from django.contrib import messages
from django.db.models import BooleanField, DurationField, ExpressionWrapper, F, Prefetch, Q
from django.db.models.functions import Coalesce, Now
from django.http import Http404, HttpResponseRedirect
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from inventory.choices import ExceptionStatus
from inventory.governance_tables import (
    AuditFilterSet,
    AuditTable,
    CappedCountPaginator,
    ExceptionFilterSet,
    ExceptionTable,
    FindingFilterSet,
    FindingTable,
)
from inventory.models import AccessKey, AuditEvent, Finding, PolicyException
from inventory.roles import APPROVER, OWNER, has_role
from inventory.services import exceptions as exception_service
from inventory.services.errors import GovernanceError, NotAllowed
from inventory.templatetags.keygov import utc
from inventory.views.base import ObjectListView, role_required


class FindingListView(ObjectListView):
    # The page's keys and their users come in a second query (prefetch) rather than a join:
    # Postgres would otherwise join every finding to its key before sorting and cutting the
    # page (107 ms on 40,000 findings, a third of that for sorting the findings alone).
    queryset = (
        Finding.objects.select_related("account")
        .prefetch_related(Prefetch("key", queryset=AccessKey.objects.select_related("user")))
        .annotate(
            open_first=ExpressionWrapper(Q(closed_at__isnull=True), output_field=BooleanField()),
            duration=ExpressionWrapper(
                Coalesce(F("closed_at"), Now()) - F("opened_at"), output_field=DurationField()
            ),
        )
        # Open first, newest first.
        .order_by("-open_first", "-opened_at", "-pk")
    )
    filterset_class = FindingFilterSet
    table_class = FindingTable
    title = "Findings"
    description = (
        "Keys that became overdue or unused, from the evaluation that saw it until the one "
        "that saw it fixed. Open findings first."
    )
    export_formats = ("csv", "xlsx")
    export_name = "findings"


class ExceptionListView(ObjectListView):
    # Small tables join; keys and IAM users (large) come per page (see FindingListView).
    queryset = (
        PolicyException.objects.select_related("account", "requested_by", "decided_by")
        .prefetch_related("key", "iam_user")
        .annotate(
            is_pending=ExpressionWrapper(
                Q(status=ExceptionStatus.PENDING), output_field=BooleanField()
            )
        )
        # Pending requests first (they wait for someone), newest first.
        .order_by("-is_pending", "-requested_at", "-pk")
    )
    filterset_class = ExceptionFilterSet
    table_class = ExceptionTable
    template_name = "inventory/exception_list.html"
    title = "Exceptions"
    description = (
        "Exceptions let a key, or every key of an IAM user, break the rotation policy for a "
        "reason until they expire. Pending requests first. “Expiring within” shows pending and "
        "approved exceptions that end in the next N days."
    )
    export_formats = ("csv",)
    export_name = "exceptions"

    def get_table_kwargs(self):
        # Viewers can neither decide nor cancel: no empty column for them.
        if has_role(self.request.user, OWNER):
            return {}
        return {"exclude": ("actions",)}


class AuditListView(ObjectListView):
    # No joins: every column is the row's own (the table resolves links per page). The
    # default order and the "When" column read the ``at`` index.
    queryset = AuditEvent.objects.order_by("-at", "-id")
    filterset_class = AuditFilterSet
    table_class = AuditTable
    table_pagination = {"per_page": 50, "paginator_class": CappedCountPaginator}
    template_name = "inventory/audit_list.html"
    title = "Audit log"
    description = (
        "Every change, by whom and when: requests and decisions, migration marks, policy "
        "edits, and the findings that evaluations open and close (by “system”)."
    )


def _back(request) -> HttpResponseRedirect:
    """Back to the list (with its filters) the form was posted from, if that is ours."""
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = reverse("inventory:exception_list")
    return HttpResponseRedirect(target)


def _label(exc: PolicyException) -> str:
    if exc.key_id:
        return f"the exception for key {exc.key.access_key_id}"
    return f"the exception for IAM user {exc.iam_user.name}"


def _refusal(error: GovernanceError, pk: int) -> str:
    """The service's reason, or who got there first when the request is no longer pending."""
    exc = PolicyException.objects.select_related("decided_by").filter(pk=pk).first()
    if exc is not None and exc.decided_by_id is not None:
        return (
            f"This exception was already decided: {exc.get_status_display().lower()} by "
            f"{exc.decided_by.get_username()} at {utc(exc.decided_at)}. Nothing changed."
        )
    if exc is not None and exc.status == ExceptionStatus.CANCELLED:
        return "The requester cancelled this request. Nothing changed."
    return str(error)


def _target(pk: int) -> PolicyException:
    try:
        return PolicyException.objects.select_related("key", "iam_user").get(pk=pk)
    except PolicyException.DoesNotExist:
        raise Http404("No such exception.") from None


@role_required(APPROVER)
@require_POST
def decide_exception(request, pk):
    """Approve or reject a pending exception (never one's own: the service refuses)."""
    exc = _target(pk)
    decision = request.POST.get("decision")
    if decision not in ("approve", "reject"):
        messages.error(request, "Choose Approve or Reject.")
        return _back(request)
    try:
        exception_service.decide_exception(
            exc.pk,
            approver=request.user,
            approve=decision == "approve",
            comment=request.POST.get("comment", "").strip(),
        )
    except NotAllowed as error:
        messages.error(request, str(error))
    except GovernanceError as error:
        messages.error(request, _refusal(error, exc.pk))
    else:
        verb = "Approved" if decision == "approve" else "Rejected"
        messages.success(request, f"{verb} {_label(exc)}.")
    return _back(request)


@role_required(OWNER)
@require_POST
def cancel_exception(request, pk):
    """The requester withdraws their own pending request."""
    exc = _target(pk)
    try:
        exception_service.cancel_exception(exc.pk, by=request.user)
    except NotAllowed as error:
        messages.error(request, str(error))
    except GovernanceError as error:
        messages.error(request, _refusal(error, exc.pk))
    else:
        messages.success(request, f"Cancelled your request for {_label(exc)}.")
    return _back(request)
