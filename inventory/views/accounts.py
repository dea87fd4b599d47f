# placeholder: being written (issue 4)
from django.http import HttpResponse
from django.views.generic import TemplateView

from inventory.views.base import RoleRequiredMixin, role_required


class AccountListView(RoleRequiredMixin, TemplateView):
    template_name = "base.html"


class AccountDetailView(RoleRequiredMixin, TemplateView):
    template_name = "base.html"


@role_required("viewer")
def collect_now(request, account_id):
    return HttpResponse()


@role_required("viewer")
def progress(request, account_id):
    return HttpResponse()
