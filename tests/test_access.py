"""The role matrix: every URL pattern of the project by every kind of visitor → the status each
must get (PRODUCT.md, "Users and roles"; deny by default).

A URL pattern missing from ``MATRIX`` fails ``test_it_declares_the_access_of_every_url``, so a
new page cannot land without saying who may use it. The Django admin's many patterns share one
rule (only the admin role), checked on its index and on every model's list.
"""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
from django.contrib import admin
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from inventory.models import Finding, KeyRequest, PolicyException
from inventory.roles import ADMIN, APPROVER, OWNER, VIEWER
from tests.gov_factories import AccessKeyFactory, AccountFactory, IamUserFactory, person
from tests.oidc_stub import DUMMY_ENV as SSO_ENV
from tests.oidc_stub import oidc_enabled

pytestmark = pytest.mark.django_db

VISITORS = ("anonymous", "nobody", VIEWER, OWNER, APPROVER, ADMIN)
OWNER_EMAIL = "olivia@example.com"
ROLE_ARN = "arn:aws:iam::111111111111:role/app-runner"

LOGIN = "→login"  # a redirect to the login page, with ?next=
OK, FOUND, FORBIDDEN, NOT_ALLOWED = 200, 302, 403, 405
UNAUTHORIZED = 401


def _everyone(status):
    return dict.fromkeys(VISITORS, status)


def _from(role: str, allowed, refused=FORBIDDEN) -> dict:
    """Anonymous visitors go to the login page; signed-in people below ``role`` get
    ``refused``; ``role`` and above get ``allowed``."""
    rank = VISITORS.index(role)
    return {
        v: LOGIN if v == "anonymous" else (allowed if i >= rank else refused)
        for i, v in enumerate(VISITORS)
    }


def _api(role: str, allowed) -> dict:
    """The REST API: as ``_from``, but anonymous requests get 401 (no redirect to a page)."""
    return {**_from(role, allowed), "anonymous": UNAUTHORIZED}


# name → (method, the path's arguments from the world, POST data, status per visitor)
MATRIX = {
    "login": ("GET", None, None, _everyone(OK)),
    "logout": ("POST", None, None, _everyone(FOUND)),
    "inventory:health": ("GET", None, None, _everyone(OK)),
    # Off without KEYGOV_METRICS_TOKEN; with it, the bearer token alone opens it, never a
    # session (tests/test_metrics.py).
    "inventory:metrics": ("GET", None, None, _everyone(404)),
    "inventory:overview": ("GET", None, None, _from(VIEWER, OK)),
    "inventory:accesskey_list": ("GET", None, None, _from(VIEWER, OK)),
    "inventory:accesskey_detail": ("GET", "own_key", None, _from(VIEWER, OK)),
    # Owners act on their own keys only (the world's owner owns own_key); approvers on any.
    "inventory:accesskey_migration": (
        "POST",
        "own_key",
        {"status": "migrating", "role_arn": ROLE_ARN, "note": "moving to ECS"},
        _from(OWNER, FOUND),
    ),
    "inventory:accesskey_migration_withdraw": ("POST", "marked_key", {}, _from(OWNER, FOUND)),
    "inventory:accesskey_exception": ("GET", "own_key", None, _from(OWNER, OK)),
    # A CloudTrail lookup spends the account's quota: the key's owner, approvers and admins.
    "inventory:accesskey_usage": ("POST", "own_key", {}, _from(OWNER, FOUND)),
    "inventory:accesskey_usage_status": ("GET", "own_key", None, _from(VIEWER, OK)),
    "inventory:mine": ("GET", None, None, _from(OWNER, OK)),
    "inventory:account_list": ("GET", None, None, _from(VIEWER, OK)),
    "inventory:account_detail": ("GET", "account", None, _from(VIEWER, OK)),
    "inventory:account_collect": ("POST", "account", {}, _from(ADMIN, FOUND)),
    "inventory:account_progress": ("GET", "account", None, _from(VIEWER, OK)),
    "inventory:finding_list": ("GET", None, None, _from(VIEWER, OK)),
    "inventory:exception_list": ("GET", None, None, _from(VIEWER, OK)),
    "inventory:exception_decide": (
        "POST",
        "exception",
        {"decision": "approve", "comment": "ok"},
        _from(APPROVER, FOUND),
    ),
    "inventory:exception_cancel": ("POST", "exception", {}, _from(OWNER, FOUND)),
    "inventory:audit_list": ("GET", None, None, _from(VIEWER, OK)),
    # Key requests: everyone reads them; owners file, comment and cancel (their own: the page
    # says so); approvers decide (never their own: the page says so) and re-queue fulfilments.
    "inventory:keyrequest_list": ("GET", None, None, _from(VIEWER, OK)),
    "inventory:keyrequest_create": ("GET", None, None, _from(OWNER, OK)),
    "inventory:keyrequest_detail": ("GET", "key_request", None, _from(VIEWER, OK)),
    "inventory:keyrequest_decide": (
        "POST",
        "key_request",
        {"decision": "reject", "comment": "use a role"},
        _from(APPROVER, FOUND),
    ),
    "inventory:keyrequest_cancel": ("POST", "key_request", {}, _from(OWNER, FOUND)),
    "inventory:keyrequest_comment": ("POST", "key_request", {"body": "why?"}, _from(OWNER, FOUND)),
    "inventory:keyrequest_retry": ("POST", "key_request", {}, _from(APPROVER, FOUND)),
    # The REST API (docs/api.md): the pages' rules, 401 for anonymous requests. Its Swagger UI is
    # a page: anonymous visitors go to the login page.
    "api:api-root": ("GET", None, None, _api(VIEWER, OK)),
    "api:schema": ("GET", None, None, _api(VIEWER, OK)),
    "api:docs": ("GET", None, None, _from(VIEWER, OK)),
    "api:account-list": ("GET", None, None, _api(VIEWER, OK)),
    "api:account-detail": ("GET", "account", None, _api(VIEWER, OK)),
    "api:accesskey-list": ("GET", None, None, _api(VIEWER, OK)),
    "api:accesskey-detail": ("GET", "own_key", None, _api(VIEWER, OK)),
    "api:accesskey-migration": (
        "POST",
        "own_key",
        {"status": "migrating", "role_arn": ROLE_ARN, "note": "moving to ECS"},
        _api(OWNER, OK),
    ),
    "api:finding-list": ("GET", None, None, _api(VIEWER, OK)),
    "api:finding-detail": ("GET", "finding", None, _api(VIEWER, OK)),
    "api:exception-list": ("GET", None, None, _api(VIEWER, OK)),
    "api:exception-detail": ("GET", "exception", None, _api(VIEWER, OK)),
    # GET here; filing a request (POST, owners and up) is in tests/test_api.py.
    "api:keyrequest-list": ("GET", None, None, _api(VIEWER, OK)),
    "api:keyrequest-detail": ("GET", "key_request", None, _api(VIEWER, OK)),
    "api:kpi-list": ("GET", None, None, _api(VIEWER, OK)),
    "api:kpi-trend": ("GET", None, None, _api(VIEWER, OK)),
}

# Single sign-on's URLs exist only with KEYGOV_OIDC_ISSUER set (docs/sso.md): these rows are
# checked with it set, against an issuer no request reaches (tests/oidc_stub.py). Open to all: the
# first sends anyone to the provider, the second (with no code from it) to the login page. The
# sign-in itself is tested against a provider run in the test (tests/test_oidc.py).
SSO_MATRIX = {
    "oidc_authentication_init": ("GET", None, None, _everyone(FOUND)),
    "oidc_authentication_callback": ("GET", None, None, _everyone(FOUND)),
}

# Actions on a key someone else owns: an owner is refused, an approver is not.
OTHERS_KEY = {
    "inventory:accesskey_migration": (
        "POST",
        {"status": "migrating", "role_arn": ROLE_ARN},
        {OWNER: FORBIDDEN, APPROVER: FOUND},
    ),
    "inventory:accesskey_exception": ("GET", None, {OWNER: FORBIDDEN, APPROVER: OK}),
    "inventory:accesskey_usage": ("POST", {}, {OWNER: FORBIDDEN, APPROVER: FOUND}),
    "api:accesskey-migration": (
        "POST",
        {"status": "migrating", "role_arn": ROLE_ARN},
        {OWNER: FORBIDDEN, APPROVER: OK},
    ),
}


def _patterns(resolver: URLResolver, namespace: str = "") -> list[str]:
    names = []
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            names += _patterns(entry, inner)
        elif isinstance(entry, URLPattern):
            names.append(f"{namespace}{entry.name or f'<unnamed {entry.pattern}>'}")
    return names


def test_it_declares_the_access_of_every_url():
    undeclared = [
        name
        for name in _patterns(get_resolver())
        if name not in MATRIX and not name.startswith("admin:")
    ]
    assert not undeclared, f"add these URL patterns to tests/test_access.py's MATRIX: {undeclared}"


def test_it_declares_the_access_of_every_url_with_single_sign_on():
    with oidc_enabled(SSO_ENV):
        names = _patterns(get_resolver())
    undeclared = [
        name for name in names if name not in MATRIX | SSO_MATRIX and not name.startswith("admin:")
    ]
    assert set(SSO_MATRIX) <= set(names)
    assert not undeclared, f"add these URL patterns to tests/test_access.py's MATRIX: {undeclared}"


@pytest.fixture
def world():
    """An account with a key owned by the world's owner (one marked migrating, one owned by
    someone else), a pending exception requested by the owner, and one person per visitor."""
    people = {
        "nobody": person("nobody"),  # signed in, but no role
        VIEWER: person("vic", VIEWER),
        OWNER: person("olivia", OWNER, email=OWNER_EMAIL),
        APPROVER: person("april", APPROVER),
        ADMIN: person("adam", ADMIN),
    }
    account = AccountFactory(account_id="111111111111", name="prod")
    mine = IamUserFactory(account=account, name="app", owner=OWNER_EMAIL)
    own_key = AccessKeyFactory(user=mine, access_key_id="AKIAOWNEDBYOLIVIA001")
    marked_key = AccessKeyFactory(user=mine, access_key_id="AKIAOWNEDBYOLIVIA002")
    marked_key.migrations.create(
        account=account,
        status="migrating",
        role_arn=ROLE_ARN,
        marked_by=people[OWNER],
        marked_at=timezone.now(),
    )
    theirs = IamUserFactory(account=account, name="batch", owner="someone@example.com")
    others_key = AccessKeyFactory(user=theirs, access_key_id="AKIAOWNEDBYSOMEONE01")
    now = timezone.now()
    exception = PolicyException.objects.create(
        key=own_key,
        account=account,
        reason="vendor appliance cannot assume roles",
        expires_at=now + timedelta(days=30),
        requested_by=people[OWNER],
        requested_at=now,
    )
    key_request = KeyRequest.objects.create(
        account=account,
        iam_user=mine,
        justification="vendor appliance",
        why_not_role="it cannot assume roles",
        owner_email=OWNER_EMAIL,
        review_on=(now + timedelta(days=30)).date(),
        requested_by=people[OWNER],
        requested_at=now,
    )
    finding = Finding.objects.create(
        key=own_key, account=account, kind="overdue", opened_at=now - timedelta(days=3)
    )
    args = {
        "finding": [finding.pk],
        "own_key": [own_key.access_key_id],
        "marked_key": [marked_key.access_key_id],
        "others_key": [others_key.access_key_id],
        "account": [account.account_id],
        "exception": [exception.pk],
        "key_request": [key_request.pk],
    }
    return people, args


def _request(client, people, visitor, method, path, data):
    if visitor != "anonymous":
        client.force_login(people[visitor])
    # Tasks must not reach a broker or AWS here: the queueing is what is checked.
    with (
        mock.patch("inventory.tasks.collect_account.delay"),
        mock.patch("inventory.tasks.lookup_key_usage.delay"),
    ):
        if method == "GET":
            return client.get(path)
        return client.post(path, data or {})


def _check(response, expected, path):
    if expected == LOGIN:
        assert response.status_code == FOUND, response.status_code
        assert response["Location"].startswith(reverse("login") + "?next="), response["Location"]
    else:
        assert response.status_code == expected, (path, response.status_code)


@pytest.mark.parametrize("visitor", VISITORS)
@pytest.mark.parametrize("name", sorted(MATRIX))
def test_it_gives_each_visitor_the_declared_status(client, world, name, visitor):
    people, args = world
    method, arg, data, statuses = MATRIX[name]
    path = reverse(name, args=args[arg] if arg else None)

    response = _request(client, people, visitor, method, path, data)

    _check(response, statuses[visitor], path)


@pytest.mark.parametrize("visitor", VISITORS)
@pytest.mark.parametrize("name", sorted(SSO_MATRIX))
def test_it_gives_each_visitor_the_declared_status_with_single_sign_on(
    client, world, name, visitor
):
    people, _ = world
    method, _, data, statuses = SSO_MATRIX[name]
    with oidc_enabled(SSO_ENV):
        path = reverse(name)
        response = _request(client, people, visitor, method, path, data)

    _check(response, statuses[visitor], path)


@pytest.mark.parametrize("visitor", [OWNER, APPROVER])
@pytest.mark.parametrize("name", sorted(OTHERS_KEY))
def test_it_lets_only_approvers_act_on_keys_of_other_owners(client, world, name, visitor):
    people, args = world
    method, data, statuses = OTHERS_KEY[name]
    path = reverse(name, args=args["others_key"])

    response = _request(client, people, visitor, method, path, data)

    _check(response, statuses[visitor], path)


@pytest.mark.parametrize("visitor", VISITORS)
def test_it_opens_the_django_admin_to_the_admin_role_only(client, world, visitor):
    people, _ = world
    if visitor != "anonymous":
        client.force_login(people[visitor])
    paths = [reverse("admin:index")] + [
        reverse(f"admin:{m._meta.app_label}_{m._meta.model_name}_changelist")
        for m in admin.site._registry
    ]
    for path in paths:
        response = client.get(path)
        if visitor == ADMIN:
            assert response.status_code == OK, path
        else:
            # A login page: for a signed-in person without the admin role, the admin's own,
            # which tells them they lack access.
            logins = [reverse("admin:login")]
            if visitor == "anonymous":
                logins.append(reverse("login"))
            assert response.status_code == FOUND, path
            assert response["Location"].startswith(tuple(f"{u}?next=" for u in logins)), path


@pytest.mark.parametrize("name", ["inventory:accesskey_detail", "inventory:account_detail"])
def test_it_answers_404_for_objects_that_do_not_exist(client, world, name):
    people, _ = world
    client.force_login(people[VIEWER])

    response = client.get(reverse(name, args=["AKIADOESNOTEXIST0000"]))

    assert response.status_code == 404


def test_it_gives_each_role_group_the_permissions_of_the_roles_below_it_and_its_own():
    from django.contrib.auth.models import Group

    perms = {
        g.name: set(g.permissions.values_list("codename", flat=True))
        for g in Group.objects.filter(name__in=VISITORS)
    }

    assert {"view_accesskey", "view_alertrecord", "view_keyrequest"} <= perms[VIEWER]
    assert not {p for p in perms[VIEWER] if not p.startswith("view_")}
    assert perms[VIEWER] < perms[OWNER] < perms[APPROVER] < perms[ADMIN]
    assert {"add_keymigration", "add_policyexception", "add_keyrequest"} <= perms[OWNER]
    assert "change_keyrequest" not in perms[OWNER]
    assert {"change_policyexception", "change_keyrequest"} <= perms[APPROVER]
    assert "delete_account" not in perms[APPROVER]
    assert {"delete_account", "change_user", "change_rotationpolicy"} <= perms[ADMIN]
