# placeholder: being written (issue 4)
from django.http import HttpResponse
from django.views.generic import TemplateView

from inventory.roles import APPROVER, OWNER
from inventory.views.base import RoleRequiredMixin, role_required


class FindingListView(RoleRequiredMixin, TemplateView):
    template_name = "base.html"


class ExceptionListView(RoleRequiredMixin, TemplateView):
    template_name = "base.html"


class AuditListView(RoleRequiredMixin, TemplateView):
    template_name = "base.html"


@role_required(APPROVER)
def decide_exception(request, pk):
    return HttpResponse()


@role_required(OWNER)
def cancel_exception(request, pk):
    return HttpResponse()
