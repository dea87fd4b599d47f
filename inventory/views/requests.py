"""Key requests: the list, the form to file one, and a request's page with its actions.

Every rule is the service's (inventory/services/key_requests.py): these views check the role a
page needs, turn a refusal into a message, and come back to the request's page.
"""

from __future__ import annotations

import django_filters
import django_tables2 as tables
from django.contrib import messages
from django.db.models import BooleanField, ExpressionWrapper, Q
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from inventory.forms_requests import CommentForm, DecisionForm, KeyRequestForm
from inventory.governance_tables import BootstrapFilterSet, account_cell
from inventory.models import Account, KeyRequest, KeyRequestStatus
from inventory.roles import APPROVER, OWNER, VIEWER, has_role
from inventory.services import key_requests as service
from inventory.services.errors import GovernanceError
from inventory.services.evaluation import effective_policy
from inventory.templatetags.keygov import utc, utc_time
from inventory.views.base import ObjectListView, role_required
from inventory.widgets import FastSelect

# --- the list ------------------------------------------------------------------------------


def status_badge(status: str) -> str:
    label = dict(KeyRequestStatus.choices).get(status, status)
    return format_html('<span class="badge {}">{}</span>', KeyRequest.STATUS_CSS[status], label)


class KeyRequestFilterSet(BootstrapFilterSet):
    status = django_filters.ChoiceFilter(choices=KeyRequestStatus.choices, empty_label="Any status")
    account = django_filters.ModelChoiceFilter(
        queryset=Account.objects.only("pk", "account_id", "name").order_by("name", "account_id"),
        to_field_name="account_id",
        empty_label="All accounts",
        widget=FastSelect,
    )
    mine = django_filters.BooleanFilter(
        method="filter_mine",
        label="Mine (filed by me or owned by me)",
        widget=django_filters.widgets.BooleanWidget(),
    )
    pending_for_me = django_filters.BooleanFilter(
        method="filter_pending_for_me",
        label="Waiting for my decision",
        widget=django_filters.widgets.BooleanWidget(),
    )

    class Meta:
        model = KeyRequest
        fields = ["status", "account", "mine", "pending_for_me"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        yes_no = [("", "—"), ("true", "Yes")]
        for name in ("mine", "pending_for_me"):
            field = self.form.fields[name]
            field.widget = django_filters.widgets.BooleanWidget(
                attrs={"class": "form-select form-select-sm"}
            )
            field.widget.choices = yes_no

    def filter_mine(self, queryset, name, value):
        if not value:
            return queryset
        user = self.request.user
        email = (user.email or "").strip().lower()
        mine = Q(requested_by=user)
        if email:
            mine |= Q(owner_email=email)
        return queryset.filter(mine)

    def filter_pending_for_me(self, queryset, name, value):
        if not value:
            return queryset
        user = self.request.user
        if not has_role(user, APPROVER):
            return queryset.none()
        return queryset.filter(status=KeyRequestStatus.PENDING).exclude(requested_by=user)


class KeyRequestTable(tables.Table):
    id = tables.Column("Request", linkify=False)
    status = tables.Column()
    account = tables.Column(order_by=("account__name", "account__account_id"))
    iam_user = tables.Column("IAM user", accessor="iam_user__name")
    owner_email = tables.Column("Owner")
    requested_by = tables.Column("Requested by", accessor="requested_by__username")
    requested_at = tables.Column("Requested")
    review_on = tables.Column("Review by")
    decided_by = tables.Column("Decided by", accessor="decided_by__username", empty_values=())
    created_access_key_id = tables.Column("Key", empty_values=())

    class Meta:
        model = KeyRequest
        fields = ()
        sequence = (
            "id",
            "status",
            "account",
            "iam_user",
            "owner_email",
            "requested_by",
            "requested_at",
            "review_on",
            "decided_by",
            "created_access_key_id",
        )
        attrs = {"class": "table table-sm table-hover align-middle mb-0"}
        empty_text = "No key request matches the filters."

    def render_id(self, record):
        return format_html('<a href="{}">#{}</a>', record.get_absolute_url(), record.pk)

    def render_status(self, record):
        return status_badge(record.status)

    def render_account(self, record):
        return account_cell(record.account)

    def render_requested_at(self, value):
        return utc_time(value)

    def render_review_on(self, value):
        return value.isoformat()

    def render_decided_by(self, value):
        return value or "—"

    def render_created_access_key_id(self, record):
        if not record.created_access_key_id:
            return "—"
        return format_html(
            '<span class="font-monospace-sm">{}</span>', record.created_access_key_id
        )


class KeyRequestListView(ObjectListView):
    queryset = (
        KeyRequest.objects.select_related("account", "iam_user", "requested_by", "decided_by")
        .annotate(
            is_pending=ExpressionWrapper(
                Q(status=KeyRequestStatus.PENDING), output_field=BooleanField()
            )
        )
        # Requests waiting for a decision first, newest first.
        .order_by("-is_pending", "-requested_at", "-pk")
    )
    filterset_class = KeyRequestFilterSet
    table_class = KeyRequestTable
    template_name = "inventory/keyrequest_list.html"
    title = "Key requests"
    description = (
        "New long-term access keys need an approval: an owner asks, another person approves. "
        "Pending requests first."
    )
    export_formats = ("csv",)
    export_name = "key-requests"


# --- filing a request ----------------------------------------------------------------------


@role_required(OWNER)
def create(request):
    """GET: the form (``?account=<id>&user=<name>`` prefill it). POST: file the request."""
    if request.method == "POST":
        form = KeyRequestForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            try:
                req = service.file_request(
                    requested_by=request.user,
                    account=data["account"],
                    iam_user=data["iam_user"],
                    justification=data["justification"],
                    why_not_role=data["why_not_role"],
                    owner_email=data["owner_email"],
                    review_on=data["review_on"],
                )
            except GovernanceError as error:
                form.add_error(None, str(error))
            else:
                messages.success(
                    request, f"Request #{req.pk} filed: an approver other than you decides it."
                )
                return redirect(req)
    else:
        form = KeyRequestForm(
            initial={
                "account": request.GET.get("account", ""),
                "user_name": request.GET.get("user", ""),
                "owner_email": request.user.email,
            }
        )
    policies = _max_ages(form)
    return render(
        request,
        "inventory/keyrequest_form.html",
        {"form": form, "title": "Request a key", "max_ages": policies},
    )


def _max_ages(form) -> str:
    """The chosen account's limit, to say it beside the date field."""
    account = None
    if form.is_bound:
        account = form.cleaned_data.get("account") if hasattr(form, "cleaned_data") else None
    else:
        account_id = form.initial.get("account")
        account = Account.objects.filter(account_id=account_id).first() if account_id else None
    if account is None:
        return ""
    today = timezone.now().date()
    latest = service.max_review_date(account, today)
    return (
        f"{account}: at most {effective_policy(account).max_age_days} days, "
        f"so on or before {latest:%Y-%m-%d}."
    )


# --- a request's page and its actions ------------------------------------------------------


def _get(pk: int) -> KeyRequest:
    try:
        return KeyRequest.objects.select_related(
            "account", "iam_user", "requested_by", "decided_by", "access_key"
        ).get(pk=pk)
    except KeyRequest.DoesNotExist:
        raise Http404("No such key request.") from None


@role_required(VIEWER)
def detail(request, pk):
    req = _get(pk)
    comments = req.comments.select_related("author").order_by("at", "id")
    return render(
        request,
        "inventory/keyrequest_detail.html",
        {
            "req": req,
            "title": f"Key request #{req.pk}",
            "status": status_badge(req.status),
            "actions": service.actions_for(req, request.user),
            "timeline": service.timeline(req),
            "comments": comments,
            "comment_form": CommentForm(),
            # AWS allows two keys per user: say so before anyone waits for a third.
            "user_key_count": (
                req.iam_user.access_keys.filter(deleted=False).count() if req.is_open else 0
            ),
        },
    )


def _refusal(error: GovernanceError, pk: int) -> str:
    """The service's reason, or who got there first."""
    req = KeyRequest.objects.select_related("decided_by").filter(pk=pk).first()
    if req is not None and req.decided_by_id is not None and "no longer pending" in str(error):
        return (
            f"This request was already decided: {req.get_status_display().lower()} by "
            f"{req.decided_by.get_username()} at {utc(req.decided_at)}. Nothing changed."
        )
    return str(error)


@role_required(APPROVER)
@require_POST
def decide(request, pk):
    req = _get(pk)
    form = DecisionForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose Approve or Reject, and say why in the comment.")
        return redirect(req)
    approve = form.cleaned_data["decision"] == "approve"
    try:
        service.decide_request(
            req.pk, approver=request.user, approve=approve, comment=form.cleaned_data["comment"]
        )
    except GovernanceError as error:
        messages.error(request, _refusal(error, req.pk))
    else:
        if approve and req.account.write_role_arn:
            done = "keygov now creates the key and stores its secret in Secrets Manager."
        elif approve:
            done = "The account is read-only: the next snapshot links the key created in AWS."
        else:
            done = "The requester is told."
        messages.success(request, f"{'Approved' if approve else 'Rejected'} #{req.pk}. {done}")
    return redirect(req)


@role_required(OWNER)
@require_POST
def cancel(request, pk):
    req = _get(pk)
    try:
        service.cancel_request(req.pk, by=request.user)
    except GovernanceError as error:
        messages.error(request, _refusal(error, req.pk))
    else:
        messages.success(request, f"Cancelled your request #{req.pk}.")
    return redirect(req)


@role_required(OWNER)
@require_POST
def comment(request, pk):
    req = _get(pk)
    form = CommentForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Write a comment first (at most 4,000 characters).")
        return redirect(req)
    try:
        service.add_comment(req.pk, author=request.user, body=form.cleaned_data["body"])
    except GovernanceError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, "Comment added.")
    return redirect(f"{reverse('inventory:keyrequest_detail', args=[req.pk])}#comments")


@role_required(APPROVER)
@require_POST
def retry(request, pk):
    """Queue the fulfilment again (a lost task message); the task itself is idempotent."""
    req = _get(pk)
    if not service.actions_for(req, request.user).can_retry:
        messages.error(request, "Only an approved request of an account with a write role runs.")
        return redirect(req)
    service.request_fulfilment(req.pk)
    messages.success(request, f"Fulfilment of #{req.pk} queued again.")
    return redirect(req)
