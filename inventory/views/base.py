"""What every page shares: access by role (deny by default) and the generic list view.

Every page needs a login (``LoginRequiredMiddleware``); on top of that each view names the lowest
role that may use it, and a signed-in person without that role gets 403. A list view is three
declarations — ``queryset``, ``filterset_class``, ``table_class`` — rendered by one template
(NetBox's pattern).
"""

from __future__ import annotations

from functools import wraps

from django.core.exceptions import PermissionDenied
from django.http import QueryDict
from django_filters.views import FilterView
from django_tables2 import SingleTableMixin
from django_tables2.export import ExportMixin

from inventory.roles import VIEWER, has_role


def require_role(user, role: str) -> None:
    """Refuse (403) a person below ``role``."""
    if not has_role(user, role):
        raise PermissionDenied(f"This needs the {role} role.")


def role_required(role: str):
    """Decorator for function views: the lowest role that may use the view."""

    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            require_role(request.user, role)
            return view(request, *args, **kwargs)

        wrapped.required_role = role
        return wrapped

    return decorator


class RoleRequiredMixin:
    """Class-based views: ``required_role`` is the lowest role that may use the view."""

    required_role = VIEWER

    def dispatch(self, request, *args, **kwargs):
        require_role(request.user, self.required_role)
        return super().dispatch(request, *args, **kwargs)


class ObjectListView(RoleRequiredMixin, ExportMixin, SingleTableMixin, FilterView):
    """A filtered, sortable, paginated table; ``export_formats`` adds ``?_export=csv|xlsx`` of
    every filtered row (not one page)."""

    template_name = "generic/object_list.html"
    # The table paginates; Django's own list pagination would COUNT the rows a second time.
    paginate_by = None
    table_pagination = {"per_page": 50}
    export_formats: tuple[str, ...] = ()
    export_trigger_param = "_export"
    title = ""
    # One sentence under the title, and what to say when no row matches.
    description = ""

    def get_export_filename(self, export_format):
        return f"{self.export_name}.{export_format}"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        params = self.request.GET.copy()
        for drop in ("page", self.export_trigger_param):
            params.pop(drop, None)
        context.update(
            title=self.title,
            description=self.description,
            export_links=[
                (fmt.upper(), _with(params, **{self.export_trigger_param: fmt}))
                for fmt in self.export_formats
            ],
            filtered=any(k not in ("sort", "page", "per_page") for k in params),
        )
        return context


def _with(params: QueryDict, **extra) -> str:
    query = params.copy()
    for key, value in extra.items():
        query[key] = value
    return "?" + query.urlencode()
