# placeholder: being written (issue 4)
from django.http import HttpResponse
from django.views.generic import TemplateView

from inventory.roles import OWNER
from inventory.views.base import RoleRequiredMixin, role_required


class AccessKeyListView(RoleRequiredMixin, TemplateView):
    template_name = "base.html"


class AccessKeyDetailView(RoleRequiredMixin, TemplateView):
    template_name = "base.html"


class MyKeysView(RoleRequiredMixin, TemplateView):
    required_role = OWNER
    template_name = "base.html"


@role_required(OWNER)
def mark_migration(request, access_key_id):
    return HttpResponse()


@role_required(OWNER)
def withdraw_migration(request, access_key_id):
    return HttpResponse()


@role_required(OWNER)
def request_exception(request, access_key_id):
    return HttpResponse()
