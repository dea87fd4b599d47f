"""Single sign-on with OpenID Connect (docs/sso.md): mozilla-django-oidc, with keygov's rules.

- Only the callback signs anyone in, with the code flow (state, nonce and PKCE checked); the ID
  token's signature, issuer, audience and expiry are checked.
- A person is found by e-mail (``email_verified`` must be true when the provider sends it), or
  created; the e-mail is kept lower-cased, because it is what "My keys" compares with the keys'
  owner tags.
- On every sign-in the person's role groups become exactly the roles that the provider's groups
  map to (``KEYGOV_OIDC_ROLE_MAP``): a group removed in the provider removes the role here, and
  no mapped group means no role (403 everywhere). The admin role gives ``is_staff`` (the Django
  admin), never ``is_superuser``.
- Every sign-in and every refusal goes to the security log (``keygov.security``).
"""

from __future__ import annotations

import logging

import jwt
import requests
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.models import Group
from django.core.exceptions import SuspiciousOperation
from django.db import transaction
from django.shortcuts import redirect
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from keygov.auth_logging import log_event

FAILED_MESSAGE = (
    "Single sign-on did not sign you in. Try again, or ask a keygov administrator if it keeps "
    "failing."
)


class SignInRefused(SuspiciousOperation):
    """The provider vouched for someone keygov must not sign in (the reason says why)."""


def roles_for(groups: list[str]) -> set[str]:
    """keygov's roles for the provider's ``groups``, through ``KEYGOV_OIDC_ROLE_MAP``."""
    role_map = settings.KEYGOV_OIDC_ROLE_MAP
    return {role for group in groups for role in role_map.get(group, ())}


def _groups_claim(claims: dict) -> list[str]:
    value = claims.get(settings.KEYGOV_OIDC_GROUPS_CLAIM, [])
    if isinstance(value, str):  # some providers send a lone group as a string
        value = [value]
    if not isinstance(value, list):
        return []
    return [group for group in value if isinstance(group, str)]


def _is_true(value: object) -> bool:
    # Some providers (Amazon Cognito among them) send booleans as strings.
    return value is True or (isinstance(value, str) and value.lower() == "true")


class KeygovOIDCBackend(OIDCAuthenticationBackend):
    """Claims → a keygov user with exactly the mapped roles."""

    def authenticate(self, request, **kwargs):
        # Only the callback view passes a nonce: a password sign-in (or a crafted ?code= on the
        # login page) never reaches the provider through this backend.
        if request is None or "nonce" not in kwargs:
            return None
        try:
            # A refusal about the person (SignInRefused, from get_or_create_user) is logged
            # where it happens and turned into None by the library.
            return super().authenticate(request, **kwargs)
        except (SuspiciousOperation, jwt.InvalidTokenError, requests.RequestException) as exc:
            # A bad signature, an expired or foreign token, a provider that failed to answer.
            self._log_failure(f"{type(exc).__name__}: {exc}")
            return None

    def _log_failure(self, reason: str, username: str = "") -> None:
        log_event(logging.WARNING, "sso_login_failed", self.request, username, reason=repr(reason))

    def _refuse(self, reason: str, claims: dict) -> SignInRefused:
        self._log_failure(reason, claims.get("email") or claims.get("sub") or "")
        return SignInRefused(reason)

    def verify_token(self, token, **kwargs):
        """The library checks the signature, the algorithm and the nonce; keygov also checks
        that the token comes from KEYGOV_OIDC_ISSUER, for this client, with an expiry."""
        payload = super().verify_token(token, **kwargs)
        if payload.get("iss") != settings.KEYGOV_OIDC_ISSUER:
            raise SuspiciousOperation(f"ID token issued by {payload.get('iss')!r}")
        audience = payload.get("aud")
        audiences = [audience] if isinstance(audience, str) else audience or []
        if self.OIDC_RP_CLIENT_ID not in audiences:
            raise SuspiciousOperation("ID token issued for another client")
        if "exp" not in payload:
            raise SuspiciousOperation("ID token without an expiry")
        return payload

    def get_userinfo(self, access_token, id_token, payload):
        """The ID token's claims, completed by the userinfo endpoint's (which win): some
        providers put the groups in one, some in the other."""
        info = super().get_userinfo(access_token, id_token, payload)
        if info.get("sub") != payload.get("sub"):
            raise self._refuse("userinfo is about another subject than the ID token", payload)
        return {**payload, **info}

    def verify_claims(self, claims):
        email = claims.get("email")
        if not isinstance(email, str) or "@" not in email:
            raise self._refuse("no e-mail address in the claims", claims)
        if "email_verified" in claims and not _is_true(claims["email_verified"]):
            raise self._refuse("the e-mail address is not verified", claims)
        return True

    def filter_users_by_claims(self, claims):
        return self.UserModel.objects.filter(email__iexact=claims["email"].strip())

    def get_or_create_user(self, access_token, id_token, payload):
        with transaction.atomic():
            return super().get_or_create_user(access_token, id_token, payload)

    def create_user(self, claims):
        """A new person: username from ``preferred_username``, or the e-mail when that is
        missing or taken; no usable password (they sign in through the provider only)."""
        email = claims["email"].strip().lower()
        taken = self.UserModel.objects.filter
        for candidate in (claims.get("preferred_username"), email):
            if isinstance(candidate, str) and candidate.strip():
                username = candidate.strip()[:150]
                if not taken(username__iexact=username).exists():
                    break
        else:
            raise self._refuse("no free username for this person", claims)
        user = self.UserModel.objects.create_user(username, email=email)
        return self.update_user(user, claims, created=True)

    def update_user(self, user, claims, created: bool = False):
        """The e-mail, names and roles from the claims, on every sign-in."""
        if not user.is_active:
            raise self._refuse("the account is disabled in keygov", claims)
        user.email = claims["email"].strip().lower()
        for field, claim in (("first_name", "given_name"), ("last_name", "family_name")):
            if isinstance(claims.get(claim), str):
                setattr(user, field, claims[claim][:150])
        roles = roles_for(_groups_claim(claims))
        # Superusers are created locally (createsuperuser) and stay staff whatever the provider says.
        user.is_staff = "admin" in roles or user.is_superuser
        user.save(update_fields=["email", "first_name", "last_name", "is_staff"])
        role_groups = Group.objects.filter(name__in=settings.KEYGOV_OIDC_ROLES)
        user.groups.remove(*[g for g in role_groups if g.name not in roles])
        user.groups.add(*[g for g in role_groups if g.name in roles])
        log_event(
            logging.INFO,
            "sso_login",
            self.request,
            user.get_username(),
            roles=",".join(sorted(roles)) or "none",
            new_user=created,
        )
        return user


class AuthenticateView(OIDCAuthenticationRequestView):
    """Sends the browser to the provider's authorization endpoint (state, nonce, PKCE)."""


class CallbackView(OIDCAuthenticationCallbackView):
    """The provider's redirect back: signs the person in, or says on the login page that it
    did not (the reason is in the security log, not on the page)."""

    def get(self, request):
        try:
            return super().get(request)
        except SuspiciousOperation as exc:  # an unknown state: a replayed or forged callback
            log_event(logging.WARNING, "sso_login_failed", request, "", reason=repr(str(exc)))
            return self.login_failure()

    def login_failure(self):
        messages.error(self.request, FAILED_MESSAGE)
        return redirect(settings.LOGIN_URL)
