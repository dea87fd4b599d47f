# placeholder: being written (issue 4)
from django.views.generic import TemplateView

from inventory.views.base import RoleRequiredMixin


class OverviewView(RoleRequiredMixin, TemplateView):
    template_name = "base.html"
