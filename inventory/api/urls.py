"""/api/: the REST API, its OpenAPI schema (/api/schema/) and a Swagger UI (/api/docs/, its
assets from drf-spectacular-sidecar: no CDN).

The API authenticates for itself (token or session) and answers 401/403 rather than redirecting
to the login page: DRF marks its views exempt from ``LoginRequiredMiddleware``, and every one of
them checks a role (``HasRole``, the default permission). The Swagger UI is a page for people:
it keeps the middleware, which sends anonymous visitors to the login page."""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import DefaultRouter

from inventory.api import views

app_name = "api"


class Router(DefaultRouter):
    include_format_suffixes = False


router = Router()
router.register("accounts", views.AccountViewSet, basename="account")
router.register("keys", views.AccessKeyViewSet, basename="accesskey")
router.register("findings", views.FindingViewSet, basename="finding")
router.register("exceptions", views.PolicyExceptionViewSet, basename="exception")
router.register("requests", views.KeyRequestViewSet, basename="keyrequest")
router.register("kpis", views.KpiViewSet, basename="kpi")

docs = SpectacularSwaggerSplitView.as_view(url_name="api:schema")
docs.login_required = True

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", docs, name="docs"),
    *router.urls,
]
