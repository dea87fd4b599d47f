"""keygov's pages (PRODUCT.md, "Pages"). Every one needs a login except /health/; each view
declares the lowest role that may use it (tests/test_access.py walks them all)."""

from django.urls import path

from inventory.views import accounts, governance, health, keys, metrics, overview
from inventory.views import requests as request_views
from inventory.views import usage as usage_views

app_name = "inventory"

urlpatterns = [
    path("", overview.OverviewView.as_view(), name="overview"),
    # Keys
    path("keys/", keys.AccessKeyListView.as_view(), name="accesskey_list"),
    path("keys/<str:access_key_id>/", keys.AccessKeyDetailView.as_view(), name="accesskey_detail"),
    path("keys/<str:access_key_id>/migration/", keys.mark_migration, name="accesskey_migration"),
    path(
        "keys/<str:access_key_id>/migration/withdraw/",
        keys.withdraw_migration,
        name="accesskey_migration_withdraw",
    ),
    path("keys/<str:access_key_id>/exception/", keys.request_exception, name="accesskey_exception"),
    path("keys/<str:access_key_id>/usage/", usage_views.start_lookup, name="accesskey_usage"),
    path(
        "keys/<str:access_key_id>/usage/status/",
        usage_views.lookup_status,
        name="accesskey_usage_status",
    ),
    path("mine/", keys.MyKeysView.as_view(), name="mine"),
    # Accounts
    path("accounts/", accounts.AccountListView.as_view(), name="account_list"),
    path("accounts/<str:account_id>/", accounts.AccountDetailView.as_view(), name="account_detail"),
    path("accounts/<str:account_id>/collect/", accounts.collect_now, name="account_collect"),
    path("accounts/<str:account_id>/progress/", accounts.progress, name="account_progress"),
    # Governance
    path("findings/", governance.FindingListView.as_view(), name="finding_list"),
    path("exceptions/", governance.ExceptionListView.as_view(), name="exception_list"),
    path("exceptions/<int:pk>/decide/", governance.decide_exception, name="exception_decide"),
    path("exceptions/<int:pk>/cancel/", governance.cancel_exception, name="exception_cancel"),
    path("audit/", governance.AuditListView.as_view(), name="audit_list"),
    # Key requests
    path("requests/", request_views.KeyRequestListView.as_view(), name="keyrequest_list"),
    path("requests/new/", request_views.create, name="keyrequest_create"),
    path("requests/<int:pk>/", request_views.detail, name="keyrequest_detail"),
    path("requests/<int:pk>/decide/", request_views.decide, name="keyrequest_decide"),
    path("requests/<int:pk>/cancel/", request_views.cancel, name="keyrequest_cancel"),
    path("requests/<int:pk>/comment/", request_views.comment, name="keyrequest_comment"),
    path("requests/<int:pk>/retry/", request_views.retry, name="keyrequest_retry"),
    # For load balancers: no login.
    path("health/", health.health, name="health"),
    # For Prometheus: a bearer token (KEYGOV_METRICS_TOKEN), no login; 404 when unset.
    path("metrics", metrics.metrics, name="metrics"),
]
