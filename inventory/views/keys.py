"""The key pages: the inventory table and its export, one key's page with its actions, and
"My keys". The views read and render; the services (role_migrations, exceptions) decide."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST
from django.views.generic import TemplateView
from django_tables2 import RequestConfig, SingleTableMixin

from inventory.choices import ExceptionStatus, KeyState, KeyStatus, MigrationStatus
from inventory.filtersets import AccessKeyFilterSet
from inventory.forms import ExceptionRequestForm, MigrationForm
from inventory.models import (
    AccessKey,
    KeyObservation,
    KeyRequest,
    PolicyException,
    RotationPolicy,
)
from inventory.policy import KeyFacts, Policy, deadline, explain_state, idle_days, whole_days
from inventory.roles import OWNER, can_manage_key
from inventory.services import exceptions as exception_service
from inventory.services import role_migrations
from inventory.services.errors import GovernanceError
from inventory.services.evaluation import effective_policy, global_policy
from inventory.tables import (
    AccessKeyExportTable,
    AccessKeyTable,
    MyKeysTable,
    PagedQuerysetData,
    StreamedQuerysetData,
    StreamingTableExport,
)
from inventory.views.base import ObjectListView, RoleRequiredMixin, role_required
from inventory.views.usage import usage_context

# How much of a key's history its page shows: about a month at four collections a day.
TIMELINE_LENGTH = 120


def _keys():
    return AccessKey.objects.with_flags().select_related("user", "account")


def _with_flags(queryset):
    return queryset.with_flags().select_related("user", "account")


def _facts(key: AccessKey) -> KeyFacts:
    return KeyFacts(
        active=key.status == KeyStatus.ACTIVE,
        created=key.created,
        last_used_at=key.last_used_at,
        deleted=key.deleted,
        is_root=key.is_root,
    )


def _rotate_by(key: AccessKey, policy: Policy) -> datetime | None:
    """The deadline of a key that the age rule still judges; None for the others."""
    if key.deleted or key.is_root or key.status != KeyStatus.ACTIVE:
        return None
    if key.state in (KeyState.MIGRATED, KeyState.EXCEPTED):
        return None
    return deadline(_facts(key), policy)


# ----- /keys/ -----------------------------------------------------------------------------------


class AccessKeyListView(ObjectListView):
    """Every key, filtered, sorted and paginated; ``?_export=csv|xlsx`` exports every filtered
    row in the page's order."""

    # Filtered, counted and ordered without the per-key flags (subqueries); the flags are
    # added to the 50 rows of the page only (PagedQuerysetData).
    queryset = AccessKey.objects.select_related("user", "account")
    filterset_class = AccessKeyFilterSet
    table_class = AccessKeyTable
    template_name = "inventory/accesskey_list.html"
    title = "Access keys"
    description = (
        "Every long-term access key keygov has seen, with its age, last use and state against "
        "the rotation policy. Deleted keys are hidden unless you ask for them."
    )
    export_formats = ("csv", "xlsx")
    export_name = "keygov-keys"
    export_class = StreamingTableExport
    dataset_kwargs = {"title": "Access keys"}

    @property
    def exporting(self) -> bool:
        return self.request.GET.get(self.export_trigger_param) in self.export_formats

    def get_table_class(self):
        return AccessKeyExportTable if self.exporting else AccessKeyTable

    def get_table_data(self):
        return PagedQuerysetData(super().get_table_data(), decorate=_with_flags)

    def get_table(self, **kwargs):
        if not self.exporting:
            return super().get_table(**kwargs)
        # The HTML table knows how each column sorts: let it order the rows, then export them
        # in that order, read from the database in chunks.
        ordered = AccessKeyTable(self.get_table_data())
        RequestConfig(self.request, paginate=False).configure(ordered)
        rows = ordered.data.data.values(*AccessKeyExportTable.FIELDS)
        return AccessKeyExportTable(StreamedQuerysetData(rows))

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        # The keys page lays out its own filters (templates/inventory/key_filters.html).
        key_filter = context.pop("filter")
        more = ("unowned", "min_age", "max_age", "never_used", "two_active_keys", "deleted")
        context.update(
            key_filter=key_filter,
            more_filters=[key_filter.form[name] for name in more],
            more_filters_open=any(self.request.GET.get(name) for name in more),
        )
        return context


# ----- /keys/<id>/ ------------------------------------------------------------------------------


@dataclass
class TimelineRun:
    """Consecutive snapshots that saw the key the same way."""

    first: datetime
    last: datetime
    count: int
    active: bool
    state: str
    last_used_at: datetime | None


def timeline(key: AccessKey, length: int = TIMELINE_LENGTH) -> tuple[list[TimelineRun], int]:
    """The key's last ``length`` observations, newest first, runs of identical ones merged;
    and how many observations that was. One query on the history's primary-key index."""
    rows = (
        KeyObservation.objects.filter(key=key)
        .order_by("-snapshot_id")
        .values_list("snapshot__started_at", "active", "state", "last_used_at")[:length]
    )
    runs: list[TimelineRun] = []
    n = 0
    for at, active, state, last_used_at in rows:
        n += 1
        run = runs[-1] if runs else None
        if run and (run.active, run.state, run.last_used_at) == (active, state, last_used_at):
            run.first, run.count = at, run.count + 1
        else:
            runs.append(TimelineRun(at, at, 1, active, state, last_used_at))
    return runs, n


def _get_key(access_key_id: str) -> AccessKey:
    try:
        return _keys().get(access_key_id=access_key_id)
    except AccessKey.DoesNotExist:
        raise Http404(f"No access key {access_key_id} in keygov's inventory.") from None


def _require_manager(user, key: AccessKey) -> None:
    if not can_manage_key(user, key):
        raise PermissionDenied(
            "Only the key's owner or an approver can act on this key"
            + (f" (its owner is {key.user.owner})." if key.user.owner else " (it has no owner).")
        )


def key_page_context(request, key: AccessKey, *, migration_form=None) -> dict:
    """Everything the key page shows. A constant number of queries whatever the key's history."""
    now = timezone.now()
    policy = effective_policy(key.account)
    facts = _facts(key)
    findings = list(key.findings.all())
    exceptions = list(
        PolicyException.objects.filter(Q(key=key) | Q(iam_user=key.user_id)).select_related(
            "requested_by", "decided_by"
        )
    )
    marks = list(key.migrations.select_related("marked_by", "withdrawn_by"))
    live_mark = next((m for m in marks if m.withdrawn_at is None), None)
    runs, observed = timeline(key)
    siblings = list(
        AccessKey.objects.filter(user=key.user_id).exclude(pk=key.pk).order_by("-created")
    )
    can_manage = can_manage_key(request.user, key)
    rotate_by = _rotate_by(key, policy)
    days_left = (rotate_by - now).days if rotate_by else None
    if migration_form is None and can_manage:
        initial = {"status": MigrationStatus.MIGRATED} if live_mark else {}
        if live_mark:
            initial.update(role_arn=live_mark.role_arn, note=live_mark.note)
        migration_form = MigrationForm(initial=initial)
    return {
        "title": f"Key {key.access_key_id}",
        "key": key,
        "iam_user": key.user,
        "account": key.account,
        "tags": sorted(key.user.tags.items()) if isinstance(key.user.tags, dict) else [],
        "policy": policy,
        "age_days": whole_days(key.created, now),
        "idle_days": idle_days(facts, now),
        "why": explain_state(facts, policy, now, key.state) if key.state else "",
        "rotate_by": rotate_by,
        "days_left": days_left,
        "days_overdue": -days_left if days_left is not None and days_left < 0 else None,
        "findings": findings,
        "exceptions": exceptions,
        "live_exception": next(
            (
                e
                for e in exceptions
                if e.status in (ExceptionStatus.PENDING, ExceptionStatus.APPROVED)
                and e.expires_at > now
            ),
            None,
        ),
        "migrations": marks,
        "live_mark": live_mark,
        "timeline": runs,
        "observed": observed,
        "timeline_length": TIMELINE_LENGTH,
        "siblings": siblings,
        "can_manage": can_manage,
        "can_act": can_manage and not key.deleted and not key.is_root,
        "migration_form": migration_form,
        "now": now,
    }


class AccessKeyDetailView(RoleRequiredMixin, TemplateView):
    """One key: who, where, how old, its state and why, its governance and its history."""

    template_name = "inventory/accesskey_detail.html"

    def get_context_data(self, **kwargs):
        key = _get_key(kwargs["access_key_id"])
        context = key_page_context(self.request, key)
        return {
            **super().get_context_data(**kwargs),
            **context,
            # Where is it used: the CloudTrail lookup panel (inventory/views/usage.py).
            **usage_context(self.request, key, policy=context["policy"]),
            "key_request": (
                KeyRequest.objects.select_related("decided_by").filter(access_key=key).first()
            ),
        }


@role_required(OWNER)
@require_POST
def mark_migration(request, access_key_id):
    """Mark the key migrating or migrated to a role (the key's owner, an approver, an admin)."""
    key = _get_key(access_key_id)
    _require_manager(request.user, key)
    form = MigrationForm(request.POST)
    if form.is_valid():
        try:
            mark = role_migrations.mark_migration(
                key,
                by=request.user,
                status=form.cleaned_data["status"],
                role_arn=form.cleaned_data["role_arn"],
                note=form.cleaned_data["note"],
            )
        except GovernanceError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(
                request,
                f"{key.access_key_id} marked {mark.get_status_display().lower()} to "
                f"{mark.role_arn}.",
            )
            return redirect("inventory:accesskey_detail", access_key_id=key.access_key_id)
    context = key_page_context(request, key, migration_form=form)
    return render(request, "inventory/accesskey_detail.html", context)


@role_required(OWNER)
@require_POST
def withdraw_migration(request, access_key_id):
    """Withdraw the key's migration mark: it is judged on its own again."""
    key = _get_key(access_key_id)
    _require_manager(request.user, key)
    try:
        role_migrations.withdraw_migration(key, by=request.user)
    except GovernanceError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Migration mark of {key.access_key_id} withdrawn.")
    return redirect("inventory:accesskey_detail", access_key_id=key.access_key_id)


@role_required(OWNER)
@require_http_methods(["GET", "POST"])
def request_exception(request, access_key_id):
    """Ask for an exception for the key; an approver other than the requester decides."""
    key = _get_key(access_key_id)
    _require_manager(request.user, key)
    if request.method == "POST":
        form = ExceptionRequestForm(request.POST)
        if form.is_valid():
            try:
                exception_service.request_exception(
                    requested_by=request.user,
                    key=key,
                    reason=form.cleaned_data["reason"],
                    expires_at=form.expires_at,
                )
            except GovernanceError as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(
                    request,
                    f"Exception requested for {key.access_key_id} until "
                    f"{form.cleaned_data['expires_on']:%Y-%m-%d}: an approver will decide it.",
                )
                return redirect("inventory:accesskey_detail", access_key_id=key.access_key_id)
    else:
        form = ExceptionRequestForm()
    context = {
        "title": f"Request an exception for {key.access_key_id}",
        "key": key,
        "form": form,
        "policy": effective_policy(key.account),
        "age_days": whole_days(key.created, timezone.now()),
        "cancel_url": reverse("inventory:accesskey_detail", args=[key.access_key_id]),
    }
    return render(request, "inventory/accesskey_exception.html", context)


# ----- /mine/ -----------------------------------------------------------------------------------

# Most urgent first: overdue, unused, due soon, ok; keys the age rule no longer judges last.
URGENCY = {
    KeyState.OVERDUE: 0,
    KeyState.UNUSED: 1,
    KeyState.DUE_SOON: 2,
    KeyState.OK: 3,
    "": 3,
    KeyState.INACTIVE: 4,
    KeyState.EXCEPTED: 4,
    KeyState.MIGRATED: 4,
}


def my_keys(email: str, now: datetime) -> list[AccessKey]:
    """The keys (not deleted) whose IAM user's owner tag is ``email``, most urgent first, each
    with ``deadline``, ``days_left`` and ``exception_until``. Four queries, for one person's
    keys (a few dozen at most, usually)."""
    email = (email or "").strip().lower()
    if not email:
        return []
    keys = list(_keys().filter(user__owner=email, deleted=False))
    if not keys:
        return []
    default = global_policy().rules()
    overrides = {
        p.account_id: p.rules()
        for p in RotationPolicy.objects.filter(account__in={k.account_id for k in keys})
    }
    until: dict[tuple[str, int], datetime] = {}
    for key_id, user_id, expires_at in PolicyException.objects.filter(
        Q(key__in=keys) | Q(iam_user__in={k.user_id for k in keys}),
        status=ExceptionStatus.APPROVED,
        expires_at__gt=now,
    ).values_list("key_id", "iam_user_id", "expires_at"):
        target = ("key", key_id) if key_id else ("user", user_id)
        until[target] = max(expires_at, until.get(target, expires_at))
    for key in keys:
        key.deadline = _rotate_by(key, overrides.get(key.account_id, default))
        key.days_left = (key.deadline - now).days if key.deadline else None
        covered = [until.get(("key", key.pk)), until.get(("user", key.user_id))]
        key.exception_until = (
            max(d for d in covered if d)
            if key.state == KeyState.EXCEPTED and any(covered)
            else None
        )
    keys.sort(
        key=lambda k: (
            URGENCY.get(k.state, 3),
            k.deadline or k.exception_until or datetime.max.replace(tzinfo=now.tzinfo),
            k.access_key_id,
        )
    )
    return keys


class MyKeysView(RoleRequiredMixin, SingleTableMixin, TemplateView):
    """The signed-in owner's keys with their deadlines, most urgent first."""

    required_role = OWNER
    template_name = "inventory/mine.html"
    table_class = MyKeysTable
    table_pagination = {"per_page": 50}

    def get_table_data(self):
        self.keys = my_keys(self.request.user.email, timezone.now())
        return self.keys

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        counts: dict[str, int] = {}
        for key in self.keys:
            counts[key.state] = counts.get(key.state, 0) + 1
        context.update(
            title="My keys",
            email=(self.request.user.email or "").strip(),
            owner_tag_keys=settings.KEYGOV_OWNER_TAG_KEYS,
            total=len(self.keys),
            counts=[
                (state, label, counts[state])
                for state, label in KeyState.choices
                if counts.get(state)
            ],
            to_act=sum(counts.get(s, 0) for s in (KeyState.OVERDUE, KeyState.UNUSED)),
        )
        return context
