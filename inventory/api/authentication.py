"""Bearer-token authentication for scripts (``Authorization: Bearer kgt_…``), against the
hashed tokens of ``ApiToken``. The browser uses Django's session (DRF's SessionAuthentication,
with CSRF checks on writes)."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed

from inventory.api.models import ApiToken, digest

KEYWORDS = (b"bearer", b"token")


class ApiTokenAuthentication(BaseAuthentication):
    """``Authorization: Bearer <token>`` (``Token <token>`` works too). No header: not this
    scheme (the session may still authenticate). A bad, expired or revoked token: 401."""

    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() not in KEYWORDS:
            return None
        if len(parts) != 2:
            raise AuthenticationFailed("Send the token as 'Authorization: Bearer <token>'.")
        try:
            token = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise AuthenticationFailed("Invalid token.") from None
        row = ApiToken.objects.select_related("user").filter(digest=digest(token)).first()
        now = timezone.now()
        if row is None or not row.is_valid(now) or not row.user.is_active:
            raise AuthenticationFailed("Invalid, expired or revoked token.")
        row.touch(now)
        return row.user, row

    def authenticate_header(self, request) -> str:
        # Makes DRF answer 401 (not 403) to a request without credentials.
        return 'Bearer realm="keygov"'


class ApiTokenScheme(OpenApiAuthenticationExtension):
    target_class = "inventory.api.authentication.ApiTokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API token from `manage.py api_token create <username>`.",
        }
