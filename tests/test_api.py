"""The REST API (/api/): each endpoint's fields, filters and cursor pages, the role rules of the
pages (anonymous 401, no role 403, viewers read, owners act on their own keys, approvers on any),
token and session authentication, the writes' refusals, and flat query counts."""

from __future__ import annotations

import base64
import csv
import io
import json
from datetime import timedelta
from io import StringIO

import pytest
import time_machine
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from inventory.api.models import ApiToken, digest
from inventory.choices import ExceptionStatus, KeyState, KeyStatus, MigrationStatus
from inventory.models import (
    AccessKey,
    AuditEvent,
    Finding,
    KeyMigration,
    KeyRequest,
    KeyRequestStatus,
    PolicyException,
)
from tests.gov_factories import (
    NOW,
    ROLE_ARN,
    AccessKeyFactory,
    AccountFactory,
    IamUserFactory,
    ago,
    key_record,
    person,
    take_snapshot,
    user_record,
)

pytestmark = pytest.mark.django_db

EXPORT_COLUMNS = [
    "access_key_id", "account_id", "account_name", "user_name", "owner", "status", "state",
    "created", "age_days", "last_used", "last_used_service", "last_used_region",
]  # fmt: skip
FLAGS = ["two_active_keys", "unowned", "unapproved", "is_root", "deleted"]
LISTS = [
    "/api/accounts/",
    "/api/keys/",
    "/api/findings/",
    "/api/exceptions/",
    "/api/requests/",
    "/api/kpis/",
    "/api/kpis/trend/",
]
OLIVE = "olive@example.com"


@pytest.fixture
def people():
    return {
        "viewer": person("vera", "viewer", "vera@example.com"),
        "owner": person("olive", "owner", OLIVE),
        "approver": person("abe", "approver", "abe@example.com"),
        "admin": person("root", "admin", "root@example.com"),
        "nobody": person("nemo", None, "nemo@example.com"),
    }


def api(user=None, **client_kwargs) -> Client:
    """A client signed in as ``user`` through an API token (none: anonymous)."""
    if user is None:
        return Client(**client_kwargs)
    _, token = ApiToken.issue(user, "tests")
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}", **client_kwargs)


@pytest.fixture
def world():
    """Two accounts; olive owns two keys in prod (one overdue), someone else one; a root key."""
    prod = AccountFactory(account_id="111111111111", name="prod")
    dev = AccountFactory(account_id="222222222222", name="dev")
    app = IamUserFactory(account=prod, name="app", owner=OLIVE)
    batch = IamUserFactory(account=prod, name="batch", owner="sam@example.com")
    orphan = IamUserFactory(account=dev, name="orphan")
    root = IamUserFactory(account=dev, name="<root_account>", is_root=True)
    young = timezone.now() - timedelta(days=10)
    keys = {
        "old": AccessKeyFactory(
            user=app,
            access_key_id="AKIAOLIVEOLD00000001",
            created=timezone.now() - timedelta(days=200, hours=3),
            state=KeyState.OVERDUE,
            last_used_at=timezone.now() - timedelta(days=1),
            last_used_service="s3",
            last_used_region="eu-west-1",
        ),
        "new": AccessKeyFactory(
            user=app,
            access_key_id="AKIAOLIVENEW00000002",
            created=young,
            state=KeyState.OK,
            unapproved=True,
        ),
        "theirs": AccessKeyFactory(
            user=batch, access_key_id="AKIASAMSKEY000000003", created=young, state=KeyState.OK
        ),
        "orphan": AccessKeyFactory(
            user=orphan,
            access_key_id="AKIAORPHAN0000000004",
            created=young,
            status=KeyStatus.INACTIVE,
            state=KeyState.INACTIVE,
        ),
        "root": AccessKeyFactory(
            user=root, access_key_id="ROOT-222222222222-1", created=young, state=KeyState.OVERDUE
        ),
        "gone": AccessKeyFactory(
            user=batch,
            access_key_id="AKIAGONE000000000005",
            created=young,
            deleted=True,
            state=KeyState.DELETED,
        ),
    }
    return {"prod": prod, "dev": dev, "app": app, "batch": batch, **keys}


def results(response) -> list[dict]:
    assert response.status_code == 200, response.content
    return response.json()["results"]


def ids(response) -> list[str]:
    return [row["access_key_id"] for row in results(response)]


# --- authentication and roles ------------------------------------------------------------------


@pytest.mark.parametrize("path", [*LISTS, "/api/", "/api/schema/"])
def test_it_answers_401_with_a_bearer_challenge_to_anonymous_requests(path):
    response = api().get(path)

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert "json" in response["Content-Type"] or path.endswith("schema/")


@pytest.mark.parametrize("path", [*LISTS, "/api/", "/api/schema/?format=json"])
def test_it_refuses_a_signed_in_person_without_a_role(people, path):
    response = api(people["nobody"]).get(path)

    assert response.status_code == 403
    assert b"This needs the viewer role." in response.content


@pytest.mark.parametrize("role", ["viewer", "owner", "approver", "admin"])
@pytest.mark.parametrize("path", [*LISTS, "/api/"])
def test_it_lets_every_role_read(people, world, role, path):
    assert api(people[role]).get(path).status_code == 200


def test_it_lets_a_viewer_neither_file_requests_nor_mark_migrations(people, world):
    client = api(people["viewer"])

    filed = client.post("/api/requests/", {}, content_type="application/json")
    marked = client.post(
        f"/api/keys/{world['old'].access_key_id}/migration/",
        {"status": "migrating", "role_arn": ROLE_ARN},
        content_type="application/json",
    )

    assert (filed.status_code, marked.status_code) == (403, 403)
    assert filed.json() == {"detail": "This needs the owner role."}
    assert not KeyMigration.objects.exists()


def test_it_accepts_a_session_for_the_browser_and_checks_csrf_on_writes(people, world):
    """GIVEN olive signed in with a session (CSRF enforced, as in a browser)
    WHEN she reads keys, then posts a migration without and with the CSRF token
    THEN the read works, the post without a token is refused, the one with it is done."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(people["owner"])
    path = f"/api/keys/{world['old'].access_key_id}/migration/"
    body = {"status": "migrating", "role_arn": ROLE_ARN}

    read = client.get("/api/keys/")
    refused = client.post(path, body, content_type="application/json")
    client.get("/login/")  # sets the CSRF cookie
    token = client.cookies["csrftoken"].value
    done = client.post(path, body, content_type="application/json", HTTP_X_CSRFTOKEN=token)

    assert read.status_code == 200
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["detail"]
    assert done.status_code == 200, done.content


def test_it_keeps_only_a_hash_of_each_token_and_records_its_use(people):
    row, token = ApiToken.issue(people["viewer"], "report script")

    response = Client(HTTP_AUTHORIZATION=f"Bearer {token}").get("/api/keys/")

    row.refresh_from_db()
    assert response.status_code == 200
    assert row.digest == digest(token) != token
    assert token not in json.dumps(list(ApiToken.objects.values()), default=str)
    assert row.prefix == token[:12]
    assert row.last_used_at is not None


@pytest.mark.parametrize("problem", ["revoked", "expired", "inactive user", "unknown", "mangled"])
def test_it_refuses_a_bad_token_with_401(people, problem):
    row, token = ApiToken.issue(people["viewer"], "script")
    header = f"Bearer {token}"
    if problem == "revoked":
        ApiToken.objects.filter(pk=row.pk).update(revoked_at=timezone.now())
    elif problem == "expired":
        ApiToken.objects.filter(pk=row.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    elif problem == "inactive user":
        people["viewer"].is_active = False
        people["viewer"].save()
    elif problem == "unknown":
        header = "Bearer kgt_" + "x" * 43
    else:
        header = f"Bearer {token} extra"

    response = Client(HTTP_AUTHORIZATION=header).get("/api/keys/")

    assert response.status_code == 401
    assert "token" in response.json()["detail"].lower()


def test_it_issues_lists_and_revokes_tokens_from_the_command_line(people):
    """GIVEN an admin issues a token for vera with manage.py api_token create
    WHEN the printed token is used, then revoked
    THEN it works until revoked, and both steps are in the audit log."""
    out = StringIO()
    call_command("api_token", "create", "vera", "--name", "kpi export", "--days", "30", stdout=out)
    token = out.getvalue().strip().splitlines()[-1]
    row = ApiToken.objects.get()
    listing = StringIO()
    call_command("api_token", "list", stdout=listing)

    before = Client(HTTP_AUTHORIZATION=f"Bearer {token}").get("/api/kpis/")
    call_command("api_token", "revoke", str(row.pk), stdout=StringIO())
    after = Client(HTTP_AUTHORIZATION=f"Bearer {token}").get("/api/kpis/")

    assert token.startswith("kgt_")
    assert (before.status_code, after.status_code) == (200, 401)
    assert "kpi export" in listing.getvalue() and token not in listing.getvalue()
    assert row.expires_at - row.created_at == timedelta(days=30)
    assert list(
        AuditEvent.objects.filter(object_type="apitoken").values_list("action", flat=True)
    ) == ["apitoken.revoke", "apitoken.issue"]


# --- keys --------------------------------------------------------------------------------------


def test_it_returns_each_key_with_the_exports_columns_in_order_then_its_flags(people, world):
    browser = Client()
    browser.force_login(people["viewer"])
    with time_machine.travel(timezone.now(), tick=False):
        rows = results(api(people["viewer"]).get("/api/keys/"))
        response = browser.get("/keys/?_export=csv")
        body = b"".join(response.streaming_content) if response.streaming else response.content
        export = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))

    assert all(list(row) == EXPORT_COLUMNS + FLAGS for row in rows)
    header, *lines = export
    assert header == EXPORT_COLUMNS
    exported = {line[0]: line for line in lines}
    for row in rows:
        # The same values as the CSV export (which writes "" for "none").
        assert [str(row[c]) if row[c] is not None else "" for c in EXPORT_COLUMNS] == exported[
            row["access_key_id"]
        ]
    old = next(r for r in rows if r["access_key_id"] == world["old"].access_key_id)
    assert old["created"].endswith("Z") and old["age_days"] == 200
    assert (old["last_used_service"], old["last_used_region"]) == ("s3", "eu-west-1")
    assert old["two_active_keys"] is True and old["unowned"] is False


def test_it_flags_keys_as_the_keys_page_does(people, world):
    rows = {r["access_key_id"]: r for r in results(api(people["viewer"]).get("/api/keys/"))}

    assert rows[world["new"].access_key_id]["unapproved"] is True
    assert rows[world["orphan"].access_key_id]["unowned"] is True
    assert rows[world["root"].access_key_id]["is_root"] is True
    assert rows[world["theirs"].access_key_id]["two_active_keys"] is False
    assert world["gone"].access_key_id not in rows  # deleted keys are hidden by default


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("state=overdue", ["root", "old"]),
        ("state=overdue&state=inactive", ["root", "old", "orphan"]),
        ("account=222222222222", ["root", "orphan"]),
        (f"owner={OLIVE.upper()}", ["old", "new"]),
        ("unowned=true", ["root", "orphan"]),
        ("status=Inactive", ["orphan"]),
        ("q=samskey", ["theirs"]),
        ("min_age=100", ["old"]),
        ("deleted=only", ["gone"]),
        ("two_active_keys=true", ["old", "new"]),
    ],
)
def test_it_filters_keys_with_the_keys_pages_filters(people, world, query, expected):
    got = ids(api(people["viewer"]).get(f"/api/keys/?{query}"))

    assert sorted(got) == sorted(world[k].access_key_id for k in expected)


@pytest.mark.parametrize(
    "query", ["state=bogus", "account=999999999999", "min_age=-1", "status=active"]
)
def test_it_answers_400_to_an_invalid_filter(people, world, query):
    response = api(people["viewer"]).get(f"/api/keys/?{query}")

    assert response.status_code == 400
    assert response.json()  # says which parameter


def test_it_pages_keys_by_cursor_without_repeating_or_skipping_any(people):
    """GIVEN 23 keys, several created in the same second
    WHEN a script follows ``next`` seven keys at a time
    THEN it sees every key once, oldest first (ties by id), and the last page has no next."""
    user = IamUserFactory()
    same = timezone.now() - timedelta(days=40)
    for i in range(23):
        AccessKeyFactory(user=user, created=same if i % 3 == 0 else same + timedelta(hours=i))
    client = api(people["viewer"])

    seen, url, pages = [], "/api/keys/?page_size=7", 0
    while url:
        body = client.get(url).json()
        seen += [r["access_key_id"] for r in body["results"]]
        url, pages = body["next"], pages + 1

    expected = list(
        AccessKey.objects.order_by("created", "id").values_list("access_key_id", flat=True)
    )
    assert seen == expected
    assert pages == 4


def test_it_keeps_the_filters_in_the_next_link(people, world):
    response = api(people["viewer"]).get("/api/keys/?account=111111111111&page_size=1")
    body = response.json()

    assert "account=111111111111" in body["next"]
    rest = ids(api(people["viewer"]).get(body["next"]))
    assert world["dev"].account_id not in {
        AccessKey.objects.get(access_key_id=k).account.account_id for k in rest
    }


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage!",
        base64.urlsafe_b64encode(b'{"a": 1}').decode(),
        base64.urlsafe_b64encode(b'["2026-01-01T00:00:00"]').decode(),
        base64.urlsafe_b64encode(b'["not a date", 1]').decode(),
        base64.urlsafe_b64encode(b'["2026-01-01T00:00:00", 1]').decode(),  # naive
    ],
)
def test_it_answers_400_to_a_tampered_cursor(people, world, cursor):
    response = api(people["viewer"]).get(f"/api/keys/?cursor={cursor}")

    assert response.status_code == 400
    assert "cursor" in response.json()["detail"]


@pytest.mark.parametrize("size", ["0", "1001", "ten"])
def test_it_answers_400_to_a_page_size_out_of_range(people, size):
    assert api(people["viewer"]).get(f"/api/keys/?page_size={size}").status_code == 400


def test_it_returns_one_key_even_deleted_with_its_live_migration_mark(people, world):
    KeyMigration.objects.create(
        key=world["old"],
        account=world["prod"],
        status=MigrationStatus.MIGRATING,
        role_arn=ROLE_ARN,
        marked_by=people["owner"],
        marked_at=NOW,
    )
    client = api(people["viewer"])

    old = client.get(f"/api/keys/{world['old'].access_key_id}/")
    gone = client.get(f"/api/keys/{world['gone'].access_key_id}/")
    missing = client.get("/api/keys/AKIADOESNOTEXIST0000/")

    assert old.status_code == 200
    assert old.json()["migration"]["role_arn"] == ROLE_ARN
    assert old.json()["migration"]["marked_by"] == "olive"
    assert gone.status_code == 200 and gone.json()["deleted"] is True
    assert gone.json()["migration"] is None
    assert missing.status_code == 404


# --- marking a migration -----------------------------------------------------------------------


def mark(client, key, **body):
    return client.post(
        f"/api/keys/{key.access_key_id}/migration/",
        {"status": "migrated", "role_arn": ROLE_ARN, "note": "on ECS now", **body},
        content_type="application/json",
    )


def test_it_lets_an_owner_mark_their_own_key_migrated(people, world):
    response = mark(api(people["owner"]), world["old"])

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["access_key_id"] == world["old"].access_key_id
    assert (body["status"], body["role_arn"], body["note"]) == ("migrated", ROLE_ARN, "on ECS now")
    assert body["marked_by"] == "olive"
    # Judged again at once, as on the page.
    assert body["key_state"] == KeyState.MIGRATED == AccessKey.objects.get(pk=world["old"].pk).state
    assert AuditEvent.objects.filter(action="migration.mark", actor=people["owner"]).exists()


def test_it_refuses_an_owner_a_key_someone_else_owns(people, world):
    response = mark(api(people["owner"]), world["theirs"])

    assert response.status_code == 403
    assert response.json()["detail"] == (
        "Only the key's owner or an approver can act on this key (its owner is sam@example.com)."
    )
    assert not KeyMigration.objects.exists()


@pytest.mark.parametrize("role", ["approver", "admin"])
def test_it_lets_approvers_and_admins_mark_any_key(people, world, role):
    assert mark(api(people[role]), world["theirs"]).status_code == 200


@pytest.mark.parametrize(
    ("key", "body", "message"),
    [
        ("old", {"role_arn": "arn:aws:iam::1:user/x"}, "role"),
        ("root", {}, "Root-account keys cannot be migrated"),
        ("gone", {}, "no longer exists in AWS"),
    ],
)
def test_it_answers_400_with_the_services_reason(people, world, key, body, message):
    response = mark(api(people["approver"]), world[key], **body)

    assert response.status_code == 400
    assert message in response.json()["detail"]
    assert not KeyMigration.objects.exists()


def test_it_names_each_invalid_field_of_a_migration(people, world):
    response = mark(api(people["owner"]), world["old"], status="done", role_arn="")

    assert response.status_code == 400
    assert set(response.json()) == {"status", "role_arn"}


def test_it_withdraws_a_migration_mark(people, world):
    client = api(people["owner"])
    mark(client, world["old"], status="migrating")

    response = client.delete(f"/api/keys/{world['old'].access_key_id}/migration/")
    again = client.delete(f"/api/keys/{world['old'].access_key_id}/migration/")

    assert response.status_code == 200
    assert KeyMigration.objects.get().withdrawn_at is not None
    assert again.status_code == 400


# --- key requests ------------------------------------------------------------------------------


def filing(world, **overrides):
    return {
        "account_id": "111111111111",
        "user_name": "app",
        "justification": "vendor appliance",
        "why_not_role": "it cannot assume roles",
        "review_on": (timezone.now().date() + timedelta(days=30)).isoformat(),
        **overrides,
    }


def test_it_lets_an_owner_file_a_key_request(people, world):
    response = api(people["owner"]).post(
        "/api/requests/", filing(world), content_type="application/json"
    )

    assert response.status_code == 201, response.content
    body = response.json()
    req = KeyRequest.objects.get()
    assert body["id"] == req.pk
    assert (body["status"], body["account_id"], body["user_name"]) == (
        "pending",
        "111111111111",
        "app",
    )
    assert body["owner_email"] == OLIVE  # the requester's, when not given
    assert body["requested_by"] == "olive" and body["decided_by"] is None
    assert AuditEvent.objects.filter(action="keyrequest.request").count() == 1


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"account_id": "999999999999"}, "account_id"),
        ({"user_name": "nobody-here"}, "user_name"),
        ({"account_id": "12"}, "account_id"),
        ({"review_on": "someday"}, "review_on"),
        ({"owner_email": "not-an-address"}, "owner_email"),
        ({"justification": ""}, "justification"),
    ],
)
def test_it_names_the_invalid_field_of_a_key_request(people, world, overrides, field):
    response = api(people["owner"]).post(
        "/api/requests/", filing(world, **overrides), content_type="application/json"
    )

    assert response.status_code == 400
    assert field in response.json()
    assert not KeyRequest.objects.exists()


def test_it_answers_400_with_the_services_reason_for_a_refused_request(people, world):
    """GIVEN olive filed a request for app
    WHEN she files a second one, and one with a review date past the policy's maximum age
    THEN both are refused with the service's sentence."""
    client = api(people["owner"])
    client.post("/api/requests/", filing(world), content_type="application/json")
    too_far = (timezone.now().date() + timedelta(days=400)).isoformat()

    second = client.post("/api/requests/", filing(world), content_type="application/json")
    late = client.post(
        "/api/requests/",
        filing(world, user_name="batch", review_on=too_far),
        content_type="application/json",
    )

    assert second.status_code == 400
    assert "is still pending" in second.json()["detail"]
    assert late.status_code == 400
    assert "on or before" in late.json()["detail"]
    assert KeyRequest.objects.count() == 1


def test_it_lists_key_requests_with_the_pages_filters(people, world):
    client = api(people["owner"])
    client.post("/api/requests/", filing(world), content_type="application/json")
    api(people["approver"]).post(
        "/api/requests/",
        filing(world, user_name="batch", owner_email="sam@example.com"),
        content_type="application/json",
    )
    KeyRequest.objects.filter(iam_user=world["batch"]).update(
        status=KeyRequestStatus.REJECTED, decided_by=people["admin"], decided_at=timezone.now()
    )

    everything = results(client.get("/api/requests/"))
    pending = results(client.get("/api/requests/?status=pending"))
    mine = results(client.get("/api/requests/?mine=true"))
    one = client.get(f"/api/requests/{everything[0]['id']}/")

    assert [r["status"] for r in everything] == ["pending", "rejected"]  # pending first
    assert [r["user_name"] for r in pending] == ["app"]
    assert [r["user_name"] for r in mine] == ["app"]
    assert one.status_code == 200 and one.json()["justification"] == "vendor appliance"
    assert client.get("/api/requests/999999/").status_code == 404


# --- accounts, findings, exceptions ------------------------------------------------------------


def test_it_returns_accounts_with_their_last_collection_and_latest_kpis(people):
    """GIVEN an account collected once, and one never collected
    WHEN a viewer lists accounts, filters them and asks for one
    THEN each carries its last collection and the latest roll-up's figures."""
    prod = AccountFactory(account_id="333333333333", name="prod")
    AccountFactory(account_id="444444444444", name="sandbox")
    take_snapshot(
        prod,
        ago(1),
        [user_record(prod, "app", OLIVE)],
        [key_record("AKIAPRODKEY000000001", "app", ago(120))],
    )
    client = api(people["viewer"])

    rows = results(client.get("/api/accounts/"))
    never = results(client.get("/api/accounts/?last_status=never"))
    one = client.get("/api/accounts/333333333333/")

    assert [r["name"] for r in rows] == ["prod", "sandbox"]
    assert one.status_code == 200
    body = one.json()
    assert body["last_collection_status"] == "complete"
    assert body["last_collection_at"] == ago(1).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert (body["users"], body["keys"], body["active_keys"], body["overdue_keys"]) == (1, 1, 1, 1)
    assert body["compliance_rate"] == 0.0
    assert [r["account_id"] for r in never] == ["444444444444"]
    assert rows[1]["last_collection_status"] is None and rows[1]["keys"] is None
    assert client.get("/api/accounts/000000000000/").status_code == 404


def test_it_returns_findings_open_first_with_the_pages_filters(people, world):
    closed = Finding.objects.create(
        key=world["theirs"],
        account=world["prod"],
        kind=KeyState.UNUSED,
        opened_at=NOW - timedelta(days=30),
        closed_at=NOW - timedelta(days=20),
        close_reason="used",
    )
    open_ = Finding.objects.create(
        key=world["old"],
        account=world["prod"],
        kind=KeyState.OVERDUE,
        opened_at=NOW - timedelta(days=60),
    )
    client = api(people["viewer"])

    rows = results(client.get("/api/findings/"))
    only_open = results(client.get("/api/findings/?state=open"))
    olive = results(client.get(f"/api/findings/?owner={OLIVE}"))

    assert [r["id"] for r in rows] == [open_.pk, closed.pk]
    assert rows[1]["duration_days"] == 10 and rows[1]["close_reason"] == "used"
    assert rows[0]["closed_at"] is None and rows[0]["owner"] == OLIVE
    assert rows[0]["access_key_id"] == world["old"].access_key_id
    assert [r["id"] for r in only_open] == [open_.pk]
    assert [r["id"] for r in olive] == [open_.pk]
    assert client.get(f"/api/findings/{closed.pk}/").json()["kind"] == "unused"


def test_it_returns_exceptions_pending_first_with_the_pages_filters(people, world):
    approved = PolicyException.objects.create(
        iam_user=world["batch"],
        account=world["prod"],
        reason="legacy batch",
        expires_at=timezone.now() + timedelta(days=100),
        status=ExceptionStatus.APPROVED,
        requested_by=people["owner"],
        requested_at=timezone.now() - timedelta(days=2),
        decided_by=people["approver"],
        decided_at=timezone.now() - timedelta(days=1),
    )
    pending = PolicyException.objects.create(
        key=world["old"],
        account=world["prod"],
        reason="vendor appliance",
        expires_at=timezone.now() + timedelta(days=10),
        requested_by=people["owner"],
        requested_at=timezone.now() - timedelta(days=3),
    )
    client = api(people["viewer"])

    rows = results(client.get("/api/exceptions/"))
    soon = results(client.get("/api/exceptions/?expiring_within=30"))

    assert [r["id"] for r in rows] == [pending.pk, approved.pk]
    assert rows[0]["access_key_id"] == world["old"].access_key_id
    assert rows[0]["iam_user_name"] is None and rows[0]["decided_by"] is None
    assert rows[1]["access_key_id"] is None and rows[1]["iam_user_name"] == "batch"
    assert rows[1]["decided_by"] == "abe"
    assert [r["id"] for r in soon] == [pending.pk]


# --- KPIs --------------------------------------------------------------------------------------


@pytest.fixture
def collected():
    """One account collected twice: olive's key is old; sam's key is young."""
    prod = AccountFactory(account_id="555555555555", name="prod")
    users = [user_record(prod, "app", OLIVE), user_record(prod, "batch", "sam@example.com")]
    keys = [
        key_record("AKIAOLIVE00000000001", "app", ago(200)),
        key_record("AKIASAM0000000000002", "batch", ago(10), last_used_at=ago(1)),
    ]
    take_snapshot(prod, ago(1), users, keys)
    take_snapshot(prod, NOW, users, keys)
    return prod


def test_it_returns_the_current_kpis_org_wide_by_account_and_by_owner(people, collected):
    client = api(people["viewer"])

    with time_machine.travel(NOW, tick=False):
        org = client.get("/api/kpis/").json()
        account = client.get("/api/kpis/?account=555555555555").json()
        olive = client.get(f"/api/kpis/?owner={OLIVE.upper()}").json()

    assert (org["scope"], org["account_id"], org["owner"]) == ("org", None, None)
    assert org["at"] == "2026-05-15T12:00:00Z"
    assert org["kpis"]["active_keys"] == 2
    assert org["kpis"]["avg_active_key_age_days"] == 105.0
    assert org["kpis"]["states"]["overdue"] == 1 and org["kpis"]["states"]["ok"] == 1
    assert org["kpis"]["age_buckets"]["age_181_365"] == 1
    assert account["scope"] == "account" and account["kpis"] == org["kpis"]
    assert olive["owner"] == OLIVE
    assert olive["kpis"]["active_keys"] == 1 and olive["kpis"]["compliance_rate"] == 0.0


def test_it_returns_the_kpi_trend_from_the_roll_ups(people, collected):
    client = api(people["viewer"])

    org = client.get("/api/kpis/trend/?since=2026-01-01").json()
    olive = client.get(f"/api/kpis/trend/?owner={OLIVE}&since=2026-01-01").json()
    later = client.get("/api/kpis/trend/?since=2026-05-15").json()

    assert [d["day"] for d in org["days"]] == ["2026-05-14", "2026-05-15"]
    assert org["days"][-1]["kpis"]["active_keys"] == 2
    assert [d["kpis"]["active_keys"] for d in olive["days"]] == [1, 1]
    assert [d["day"] for d in later["days"]] == ["2026-05-15"]


@pytest.mark.parametrize(
    "query",
    [
        "account=555555555555&owner=olive@example.com",
        "account=000000000000",
        "account=abc",
        "owner=two%20words",
    ],
)
def test_it_answers_400_to_an_invalid_kpi_query(people, collected, query):
    response = api(people["viewer"]).get(f"/api/kpis/?{query}")

    assert response.status_code == 400


# --- queries -----------------------------------------------------------------------------------


def _grow(n: int, people) -> None:
    """``n`` of everything each list shows."""
    for i in range(n):
        account = AccountFactory()
        user = IamUserFactory(account=account, owner=f"owner{i}@example.com")
        key = AccessKeyFactory(user=user, state=KeyState.OVERDUE)
        Finding.objects.create(key=key, account=account, kind=KeyState.OVERDUE, opened_at=NOW)
        PolicyException.objects.create(
            key=key,
            account=account,
            reason="r",
            expires_at=timezone.now() + timedelta(days=10),
            requested_by=people["owner"],
            requested_at=timezone.now(),
        )
        KeyRequest.objects.create(
            account=account,
            iam_user=user,
            justification="j",
            why_not_role="w",
            owner_email=OLIVE,
            review_on=timezone.now().date() + timedelta(days=30),
            requested_by=people["owner"],
            requested_at=timezone.now(),
        )


def _queries(client, path) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(path).status_code == 200
    return len(ctx)


@pytest.mark.parametrize("path", [p for p in LISTS if "kpis" not in p])
def test_it_reads_as_many_queries_for_20_rows_as_for_2(people, path):
    client = api(people["viewer"])
    _grow(2, people)
    client.get(path)  # the token's first use is recorded once
    few = _queries(client, path)
    _grow(18, people)

    many = _queries(client, path)

    assert len(results(client.get(path))) == 20
    assert many == few, path
    assert many <= 8, path


def test_it_reads_the_kpis_in_a_few_queries_whatever_the_number_of_keys(people):
    client = api(people["viewer"])
    _grow(2, people)
    client.get("/api/kpis/")
    few = _queries(client, "/api/kpis/")
    _grow(18, people)

    assert _queries(client, "/api/kpis/") == few <= 10


# --- schema ------------------------------------------------------------------------------------


def test_it_serves_the_openapi_schema_and_its_ui_to_viewers(people):
    client = api(people["viewer"])

    schema = client.get("/api/schema/?format=json")
    browser = Client()
    browser.force_login(people["viewer"])
    docs = browser.get("/api/docs/")

    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert {"/api/keys/", "/api/requests/", "/api/kpis/trend/"} <= set(paths)
    assert "post" in paths["/api/keys/{access_key_id}/migration/"]
    assert docs.status_code == 200
    assert b"swagger" in docs.content.lower()
    assert b"cdn" not in docs.content.lower() and b"https://" not in docs.content
    assert Client().get("/api/docs/")["Location"].startswith("/login/?next=")
