"""Single sign-on (docs/sso.md): the whole OpenID Connect code flow against a provider run in the
test (tests/oidc_stub.py), with keygov's settings read from the environment as at start-up."""

from __future__ import annotations

import logging
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from django.contrib.auth.models import User
from django.core.exceptions import ImproperlyConfigured
from django.urls import NoReverseMatch, reverse

from inventory.roles import ADMIN, OWNER, VIEWER
from tests.gov_factories import AccessKeyFactory, AccountFactory, IamUserFactory, person
from tests.oidc_stub import CLIENT_SECRET, OIDCStub, oidc_enabled, settings_from_env

pytestmark = pytest.mark.django_db

ALICE = {
    "sub": "00u-alice",
    "email": "Alice.Smith@Example.com",
    "email_verified": True,
    "preferred_username": "alice",
    "given_name": "Alice",
    "family_name": "Smith",
    "groups": ["keygov-viewers", "everyone"],
}


@pytest.fixture(scope="module")
def stub():
    provider = OIDCStub().start()
    yield provider
    provider.stop()


@pytest.fixture
def sso(stub):
    """keygov started with single sign-on against the stub; the stub's person is Alice."""
    stub.person = dict(ALICE)
    stub.signing_key, stub.algorithm, stub.token_claims = stub.key, "RS256", {}
    with oidc_enabled(stub.env):
        yield stub


def roles(user) -> set[str]:
    return set(user.groups.values_list("name", flat=True))


def sign_in(client, stub, next_url: str | None = None):
    """Click "Sign in with ...", let the provider send the browser back, return keygov's
    answer to the callback."""
    start = reverse("oidc_authentication_init") + (f"?next={next_url}" if next_url else "")
    response = client.get(start)
    assert response.status_code == 302
    assert response["Location"].startswith(f"{stub.url}/authorize?")
    at_provider = requests.get(response["Location"], allow_redirects=False, timeout=5)
    assert at_provider.status_code == 302, at_provider.text
    back = urlsplit(at_provider.headers["Location"])
    assert back.path == reverse("oidc_authentication_callback")
    return client.get(f"{back.path}?{back.query}")


def test_it_signs_a_new_person_in_with_the_role_of_their_group(client, sso, caplog):
    """GIVEN Alice, unknown to keygov, in the provider's keygov-viewers group
    WHEN she signs in through the provider
    THEN keygov redirected her with state, nonce and a PKCE challenge, the provider got the code
    back with the verifier, and she is signed in as a new viewer named after her claims."""
    caplog.set_level(logging.INFO, logger="keygov.security")

    response = client.get(reverse("oidc_authentication_init"), {"next": "/keys/"})
    query = parse_qs(urlsplit(response["Location"]).query)
    assert {"state", "nonce", "code_challenge"} <= set(query)
    assert query["scope"] == ["openid email profile groups"]
    assert query["redirect_uri"] == ["http://testserver/oidc/callback/"]
    back = requests.get(response["Location"], allow_redirects=False, timeout=5)
    callback = client.get(back.headers["Location"].removeprefix("http://testserver"))

    assert callback.status_code == 302
    assert callback["Location"] == "/keys/"
    user = User.objects.get(email="alice.smith@example.com")
    assert (user.username, user.first_name, user.last_name) == ("alice", "Alice", "Smith")
    assert roles(user) == {VIEWER}
    assert not user.is_staff and not user.has_usable_password()
    assert client.get("/").status_code == 200
    assert sso.token_requests[-1]["code_verifier"]
    assert "sso_login user='alice'" in caplog.text and "roles=viewer new_user=True" in caplog.text
    assert "login_succeeded user='alice'" in caplog.text


def test_it_sets_the_roles_to_exactly_the_mapped_ones_on_every_sign_in(client, sso):
    """GIVEN Alice in the owners and admins groups, signed in once
    WHEN the provider takes her out of the admins group and she signs in again
    THEN she keeps owner, loses admin and the Django admin (is_staff), never was superuser."""
    sso.person["groups"] = ["keygov-owners", "keygov-admins"]
    sign_in(client, sso)
    user = User.objects.get(username="alice")
    assert roles(user) == {OWNER, ADMIN}
    assert user.is_staff and not user.is_superuser
    client.logout()

    sso.person["groups"] = ["keygov-owners"]
    sign_in(client, sso)

    user.refresh_from_db()
    assert roles(user) == {OWNER}
    assert not user.is_staff
    assert User.objects.count() == 1


def test_it_gives_no_role_to_a_person_in_no_mapped_group(client, sso):
    """GIVEN Bob, whose groups map to no role
    WHEN he signs in through the provider
    THEN he is signed in but every page refuses him (deny by default)."""
    sso.person = {**ALICE, "email": "bob@example.com", "preferred_username": "bob"}
    sso.person["groups"] = ["marketing", "everyone"]

    sign_in(client, sso)

    bob = User.objects.get(username="bob")
    assert roles(bob) == set()
    assert client.get("/").status_code == 403
    assert client.get(reverse("inventory:accesskey_list")).status_code == 403


def test_it_takes_a_lone_group_sent_as_a_string(client, sso):
    sso.person["groups"] = "keygov-approvers"

    sign_in(client, sso)

    assert roles(User.objects.get(username="alice")) == {"approver"}


def test_it_finds_a_local_account_by_its_email_and_shows_them_their_keys(client, sso):
    """GIVEN a local account olivia with a viewer role, and a key tagged with her e-mail
    WHEN she signs in through the provider with her e-mail in another case, as an owner
    THEN it is the same account, its e-mail lower-cased, owner now, and "My keys" lists the key."""
    olivia = person("olivia", VIEWER, email="olivia@example.com")
    account = AccountFactory(account_id="111111111111", name="prod")
    AccessKeyFactory(
        user=IamUserFactory(account=account, name="app", owner="olivia@example.com"),
        access_key_id="AKIAOWNEDBYOLIVIA001",
    )
    sso.person = {**ALICE, "email": "OLIVIA@example.com", "preferred_username": "o.other"}
    sso.person["groups"] = ["keygov-owners"]

    sign_in(client, sso)

    olivia.refresh_from_db()
    assert olivia.email == "olivia@example.com"
    assert roles(olivia) == {OWNER}
    assert User.objects.count() == 1
    mine = client.get(reverse("inventory:mine"))
    assert mine.status_code == 200
    assert b"AKIAOWNEDBYOLIVIA001" in mine.content


def test_it_names_a_new_person_by_email_when_their_preferred_username_is_taken(client, sso):
    person("alice", email="another.alice@example.com")

    sign_in(client, sso)

    assert User.objects.get(email="alice.smith@example.com").username == "alice.smith@example.com"


def test_it_refuses_an_id_token_with_a_bad_signature(client, sso, caplog):
    """GIVEN a provider that signs the ID token with a key its JWKS does not publish
    WHEN Alice signs in
    THEN she is back on the login page with an error, not signed in, and the log says why."""
    sso.signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    caplog.set_level(logging.INFO, logger="keygov.security")

    response = sign_in(client, sso)

    assert response.status_code == 302
    assert response["Location"] == reverse("login")
    page = client.get(reverse("login"))
    assert b"Single sign-on did not sign you in" in page.content
    assert not User.objects.exists()
    assert client.get("/").status_code == 302  # to the login page
    assert "sso_login_failed" in caplog.text and "JWS token verification failed" in caplog.text


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"iss": "https://idp.example.com"}, "ID token issued by 'https://idp.example.com'"),
        ({"aud": "another-client"}, "ID token issued for another client"),
        ({"exp": 1_000_000_000}, "ExpiredSignatureError"),
        ({"nonce": "not-the-one-sent"}, "JWT Nonce verification failed"),
    ],
)
def test_it_refuses_an_id_token_not_meant_for_keygov(client, sso, caplog, claims, reason):
    sso.token_claims = claims
    caplog.set_level(logging.INFO, logger="keygov.security")

    response = sign_in(client, sso)

    assert response["Location"] == reverse("login")
    assert not User.objects.exists()
    assert reason in caplog.text


def test_it_refuses_an_id_token_signed_with_another_algorithm(client, sso, caplog):
    """GIVEN a token signed HS256 with the client secret, which an attacker who knew the secret
    could forge, while keygov expects RS256
    WHEN Alice signs in
    THEN it is refused: the provider publishes no key for that algorithm (and the library would
    refuse any algorithm but the configured one next)."""
    sso.signing_key, sso.algorithm = CLIENT_SECRET, "HS256"
    caplog.set_level(logging.INFO, logger="keygov.security")

    response = sign_in(client, sso)

    assert response["Location"] == reverse("login")
    assert not User.objects.exists()
    assert "sso_login_failed" in caplog.text
    assert "SuspiciousOperation: Could not find a valid JWKS" in caplog.text


def test_it_never_sends_a_password_sign_in_to_the_provider(client, sso):
    """GIVEN single sign-on on and a code and state for it in the login page's query string
    WHEN someone posts the password form there
    THEN the provider's token endpoint is not called: only the callback uses the provider."""
    start = client.get(reverse("oidc_authentication_init"))
    back = urlsplit(
        requests.get(start["Location"], allow_redirects=False, timeout=5).headers["Location"]
    )
    calls = len(sso.token_requests)

    response = client.post(
        f"{reverse('login')}?{back.query}", {"username": "alice", "password": "wrong-password"}
    )

    assert response.status_code == 200  # the form again, with its error
    assert len(sso.token_requests) == calls
    assert not User.objects.exists()


def test_it_refuses_an_email_the_provider_has_not_verified(client, sso, caplog):
    sso.person["email_verified"] = False
    caplog.set_level(logging.INFO, logger="keygov.security")

    response = sign_in(client, sso)

    assert response["Location"] == reverse("login")
    assert not User.objects.exists()
    assert "the e-mail address is not verified" in caplog.text


def test_it_refuses_a_disabled_account(client, sso):
    former = person("alice", VIEWER, email="alice.smith@example.com")
    former.is_active = False
    former.save()

    response = sign_in(client, sso)

    assert response["Location"] == reverse("login")
    assert client.get("/").status_code == 302


def test_it_refuses_a_replayed_callback(client, sso):
    """GIVEN Alice signed in and out again
    WHEN the same callback URL (code and state) is opened a second time
    THEN keygov refuses it: the state was spent."""
    start = client.get(reverse("oidc_authentication_init"))
    back = requests.get(start["Location"], allow_redirects=False, timeout=5)
    callback = back.headers["Location"].removeprefix("http://testserver")
    assert client.get(callback)["Location"] == "/"
    client.logout()

    replay = client.get(callback)

    assert replay.status_code == 302
    assert replay["Location"] == reverse("login")
    assert client.get("/").status_code == 302


def test_it_keeps_local_accounts_working_beside_the_provider(client, sso):
    """GIVEN single sign-on on, and a local account with a password
    WHEN the login page is opened and the local form is used
    THEN the page offers both, and the password signs in."""
    local = person("vic", VIEWER)
    local.set_password("a-long-local-password")
    local.save()

    page = client.get(reverse("login"), {"next": "/keys/"})
    assert b"Sign in with Stub ID" in page.content
    assert b'href="/oidc/authenticate/?next=/keys/"' in page.content
    response = client.post(
        reverse("login"), {"username": "vic", "password": "a-long-local-password"}
    )

    assert response.status_code == 302
    assert client.get("/").status_code == 200


def test_it_offers_no_single_sign_on_when_it_is_off(client):
    page = client.get(reverse("login"))

    assert b"Sign in with" not in page.content
    with pytest.raises(NoReverseMatch):
        reverse("oidc_authentication_init")
    assert client.get("/oidc/authenticate/").status_code == 404


# --- Settings ---------------------------------------------------------------------------------


def test_it_reads_the_settings_from_the_environment(stub):
    values = settings_from_env(
        {
            **stub.env,
            "KEYGOV_OIDC_ROLE_MAP": "staff=viewer, ops=Owner,ops=approver,,app=keygov=admin",
            "KEYGOV_OIDC_GROUPS_CLAIM": "roles",
        }
    )

    assert values["AUTHENTICATION_BACKENDS"] == [
        "django.contrib.auth.backends.ModelBackend",
        "keygov.oidc.KeygovOIDCBackend",
    ]
    assert values["KEYGOV_OIDC_ROLE_MAP"] == {
        "staff": ["viewer"],
        "ops": ["approver", "owner"],
        "app=keygov": ["admin"],
    }
    assert values["OIDC_RP_SIGN_ALGO"] == "RS256"
    assert values["OIDC_OP_JWKS_ENDPOINT"] == f"{stub.url}/jwks"
    assert values["KEYGOV_OIDC_GROUPS_CLAIM"] == "roles"
    assert values["KEYGOV_OIDC_PROVIDER_NAME"] == "Stub ID"


def test_it_leaves_single_sign_on_off_without_an_issuer():
    values = settings_from_env({"KEYGOV_OIDC_ISSUER": ""})

    assert values["AUTHENTICATION_BACKENDS"] == ["django.contrib.auth.backends.ModelBackend"]
    assert values["KEYGOV_OIDC_ENABLED"] is False


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "KEYGOV_OIDC_ROLE_MAP",
            "keygov-admins=root",
            "KEYGOV_OIDC_ROLE_MAP: 'keygov-admins=root'",
        ),
        ("KEYGOV_OIDC_ROLE_MAP", "", "KEYGOV_OIDC_ROLE_MAP must map at least one group"),
        ("KEYGOV_OIDC_CLIENT_SECRET", "", "KEYGOV_OIDC_CLIENT_SECRET must be set"),
        (
            "KEYGOV_OIDC_TOKEN_ENDPOINT",
            "http://idp.example.com/token",
            "KEYGOV_OIDC_TOKEN_ENDPOINT",
        ),
        ("KEYGOV_OIDC_ISSUER", "idp.example.com", "KEYGOV_OIDC_ISSUER"),
        ("KEYGOV_OIDC_SIGN_ALGO", "none", "KEYGOV_OIDC_SIGN_ALGO"),
        ("KEYGOV_OIDC_SCOPES", "email profile", "KEYGOV_OIDC_SCOPES"),
    ],
)
def test_it_stops_start_up_on_a_bad_value_naming_the_variable(stub, variable, value, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        settings_from_env({**stub.env, variable: value})


def test_it_accepts_id_tokens_signed_with_the_client_secret_when_told_to(client, sso):
    """GIVEN keygov configured for HS256 (no JWKS) and a provider signing with the client secret
    WHEN Alice signs in
    THEN she is signed in."""
    sso.signing_key, sso.algorithm = CLIENT_SECRET, "HS256"
    env = {**sso.env, "KEYGOV_OIDC_SIGN_ALGO": "HS256", "KEYGOV_OIDC_JWKS_URI": ""}

    with oidc_enabled(env):
        response = sign_in(client, sso)

    assert response["Location"] == "/"
    assert roles(User.objects.get(username="alice")) == {VIEWER}
