"""A small OpenID Connect provider for the tests, on a free 127.0.0.1 port, and the settings that
point keygov at it (read from the environment by keygov/settings.py itself).

It serves discovery, authorization (redirects straight back with a code: the person is whoever
``stub.person`` says), token (an RS256-signed ID token carrying the request's nonce), JWKS and
userinfo, and checks what a real provider checks: the client's id and secret, the redirect URI,
single-use codes, and the PKCE verifier.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib
import json
import os
import runpy
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from unittest import mock
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from django.test import override_settings
from django.urls import clear_url_caches

CLIENT_ID = "keygov-test"
CLIENT_SECRET = "stub-client-secret-0123456789abcdef"
ROLE_MAP = "keygov-viewers=viewer,keygov-owners=owner,keygov-approvers=approver,keygov-admins=admin"
# Single sign-on on, against an issuer that no request reaches (for tests that only need the
# URL patterns and the redirect to the provider).
DUMMY_ENV = {
    "KEYGOV_OIDC_ISSUER": "https://idp.invalid",
    "KEYGOV_OIDC_CLIENT_ID": CLIENT_ID,
    "KEYGOV_OIDC_CLIENT_SECRET": CLIENT_SECRET,
    "KEYGOV_OIDC_AUTHORIZATION_ENDPOINT": "https://idp.invalid/authorize",
    "KEYGOV_OIDC_TOKEN_ENDPOINT": "https://idp.invalid/token",
    "KEYGOV_OIDC_USERINFO_ENDPOINT": "https://idp.invalid/userinfo",
    "KEYGOV_OIDC_JWKS_URI": "https://idp.invalid/jwks",
    "KEYGOV_OIDC_ROLE_MAP": ROLE_MAP,
}
SETTINGS_FILE = Path(__file__).resolve().parent.parent / "keygov" / "settings.py"


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class OIDCStub:
    """The provider. ``person`` holds the claims of whoever signs in next; ``signing_key`` signs
    the ID tokens (replace it with another key to send a token the JWKS does not vouch for)."""

    def __init__(self) -> None:
        self.key = _new_key()
        self.signing_key = self.key
        self.algorithm = "RS256"
        # Claims put into (or over) the next ID tokens' own: {"aud": "someone-else"}, ...
        self.token_claims: dict = {}
        self.kid = "stub-key-1"
        self.person: dict = {}
        self.codes: dict[str, dict] = {}
        self.tokens: dict[str, dict] = {}
        self.token_requests: list[dict] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> OIDCStub:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def env(self) -> dict[str, str]:
        """The environment that points keygov at this provider (docs/sso.md)."""
        return {
            "KEYGOV_OIDC_ISSUER": self.url,
            "KEYGOV_OIDC_CLIENT_ID": CLIENT_ID,
            "KEYGOV_OIDC_CLIENT_SECRET": CLIENT_SECRET,
            "KEYGOV_OIDC_AUTHORIZATION_ENDPOINT": f"{self.url}/authorize",
            "KEYGOV_OIDC_TOKEN_ENDPOINT": f"{self.url}/token",
            "KEYGOV_OIDC_USERINFO_ENDPOINT": f"{self.url}/userinfo",
            "KEYGOV_OIDC_JWKS_URI": f"{self.url}/jwks",
            "KEYGOV_OIDC_ROLE_MAP": ROLE_MAP,
            "KEYGOV_OIDC_PROVIDER_NAME": "Stub ID",
        }

    # --- the endpoints ---------------------------------------------------------------------

    def discovery(self) -> dict:
        return {
            "issuer": self.url,
            "authorization_endpoint": f"{self.url}/authorize",
            "token_endpoint": f"{self.url}/token",
            "userinfo_endpoint": f"{self.url}/userinfo",
            "jwks_uri": f"{self.url}/jwks",
            "response_types_supported": ["code"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
        }

    def authorize(self, query: dict[str, str]) -> tuple[int, dict, str]:
        if query.get("client_id") != CLIENT_ID or query.get("response_type") != "code":
            return 400, {}, "unknown client or response type"
        if query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
            return 400, {}, "PKCE (S256) required"
        code = secrets.token_urlsafe(16)
        self.codes[code] = {**query, "person": dict(self.person)}
        back = urlencode({"code": code, "state": query["state"]})
        return 302, {"Location": f"{query['redirect_uri']}?{back}"}, ""

    def token(self, form: dict[str, str]) -> tuple[int, dict, str]:
        self.token_requests.append(form)
        grant = self.codes.pop(form.get("code", ""), None)  # a code works once
        if grant is None or form.get("grant_type") != "authorization_code":
            return 400, {}, json.dumps({"error": "invalid_grant"})
        if (form.get("client_id"), form.get("client_secret")) != (CLIENT_ID, CLIENT_SECRET):
            return 401, {}, json.dumps({"error": "invalid_client"})
        if form.get("redirect_uri") != grant["redirect_uri"]:
            return 400, {}, json.dumps({"error": "invalid_grant"})
        challenge = (
            base64.urlsafe_b64encode(
                hashlib.sha256(form.get("code_verifier", "").encode()).digest()
            )
            .rstrip(b"=")
            .decode()
        )
        if challenge != grant["code_challenge"]:
            return 400, {}, json.dumps({"error": "invalid_grant", "error_description": "PKCE"})
        person = grant["person"]
        now = int(time.time())
        claims = {
            "iss": self.url,
            "aud": CLIENT_ID,
            "iat": now,
            "exp": now + 300,
            "nonce": grant["nonce"],
            **person,
            **self.token_claims,
        }
        id_token = jwt.encode(
            claims, self.signing_key, algorithm=self.algorithm, headers={"kid": self.kid}
        )
        access_token = secrets.token_urlsafe(16)
        self.tokens[access_token] = person
        body = {"access_token": access_token, "token_type": "Bearer", "expires_in": 300}
        return 200, {}, json.dumps({**body, "id_token": id_token})

    def jwks(self) -> dict:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [{**jwk, "kid": self.kid, "alg": "RS256", "use": "sig"}]}

    def userinfo(self, authorization: str) -> tuple[int, dict, str]:
        person = self.tokens.get(authorization.removeprefix("Bearer "))
        if person is None:
            return 401, {}, ""
        return 200, {}, json.dumps(person)

    def _handler(self):
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def _answer(self, status: int, headers: dict, body: str | dict) -> None:
                if isinstance(body, dict):
                    body = json.dumps(body)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for name, value in headers.items():
                    self.send_header(name, value)
                data = body.encode()
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                if parts.path == "/.well-known/openid-configuration":
                    self._answer(200, {}, stub.discovery())
                elif parts.path == "/authorize":
                    self._answer(*stub.authorize(query))
                elif parts.path == "/jwks":
                    self._answer(200, {}, stub.jwks())
                elif parts.path == "/userinfo":
                    self._answer(*stub.userinfo(self.headers.get("Authorization", "")))
                else:
                    self._answer(404, {}, "")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                if self.path == "/token":
                    self._answer(*stub.token(form))
                else:
                    self._answer(404, {}, "")

        return Handler


def settings_from_env(env: dict[str, str]) -> dict:
    """keygov/settings.py's single sign-on settings for ``env`` (on top of the current one), as
    start-up would compute them."""
    with mock.patch.dict(os.environ, {"KEYGOV_SECRET_KEY": "x" * 50, **env}):
        values = runpy.run_path(str(SETTINGS_FILE))
    names = {"AUTHENTICATION_BACKENDS", "LOGIN_REDIRECT_URL_FAILURE"}
    return {
        name: value
        for name, value in values.items()
        if name in names or name.startswith(("OIDC_", "KEYGOV_OIDC_"))
    }


def _reload_urls() -> None:
    import keygov.urls

    importlib.reload(keygov.urls)
    clear_url_caches()


@contextlib.contextmanager
def oidc_enabled(env: dict[str, str]):
    """keygov as started with ``env``: its settings and its URL patterns (``/oidc/...``)."""
    try:
        with override_settings(**settings_from_env(env)):
            _reload_urls()
            yield
    finally:
        _reload_urls()
