"""``/metrics``: Prometheus's text format (inventory/metrics.py), for a scraper holding the bearer
token ``KEYGOV_METRICS_TOKEN``; no session login (a scraper has none). Without the setting the
page does not exist (404): the KPIs and the account ids are not for anyone who can reach keygov.
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import Http404, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from inventory.metrics import KeygovCollector


def _bearer_token(request) -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


@login_not_required
@never_cache
@require_GET
def metrics(request):
    """The metrics, to a request with ``Authorization: Bearer <KEYGOV_METRICS_TOKEN>``."""
    expected = settings.KEYGOV_METRICS_TOKEN
    if not expected:
        raise Http404("metrics are off: set KEYGOV_METRICS_TOKEN")
    if not hmac.compare_digest(_bearer_token(request).encode(), expected.encode()):
        response = HttpResponse(
            "A bearer token is required (Authorization: Bearer <KEYGOV_METRICS_TOKEN>).\n",
            status=401,
            content_type="text/plain; charset=utf-8",
        )
        response["WWW-Authenticate"] = 'Bearer realm="keygov metrics"'
        return response
    registry = CollectorRegistry()
    registry.register(KeygovCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
