"""The key pages: /keys/ (filters, sorting, pagination), a key's page and its actions, /mine/."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from inventory.choices import ExceptionStatus, KeyState, KeyStatus, MigrationStatus
from inventory.models import (
    AccessKey,
    AuditEvent,
    Finding,
    KeyMigration,
    PolicyException,
    RotationPolicy,
)
from inventory.services.evaluation import evaluate_account
from inventory.services.role_migrations import mark_migration
from inventory.tables import AccessKeyTable
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

LIST = reverse("inventory:accesskey_list")
MINE = reverse("inventory:mine")


@pytest.fixture(autouse=True)
def frozen():
    """Ages in days are exact: the clock stands still at NOW."""
    with time_machine.travel(NOW, tick=False):
        yield


def signed_in(client, username, role, email=""):
    user = person(username, role, email=email)
    client.force_login(user)
    return user


@pytest.fixture
def viewer(client):
    signed_in(client, "vera", "viewer")
    return client


def detail(key) -> str:
    return reverse("inventory:accesskey_detail", args=[key.access_key_id])


def ids(response) -> list[str]:
    """The key ids of the table's rows, in order."""
    return re.findall(r'href="/keys/([^/"]+)/"', response.content.decode())


def rows(response) -> str:
    """The table's body, without the filters above it."""
    html = response.content.decode()
    return html[html.index("<tbody") : html.index("</tbody>")]


def make_keys(n, **kwargs):
    return [AccessKeyFactory(**kwargs) for _ in range(n)]


def query_count(client, url, **extra) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url, **extra)
        assert response.status_code == 200
        if getattr(response, "streaming", False):
            b"".join(response.streaming_content)
    return len(queries.captured_queries)


# ----- /keys/ -----------------------------------------------------------------------------------


def test_it_lists_keys_with_account_user_owner_age_and_state(viewer):
    account = AccountFactory(account_id="210987654321", name="payments-prod")
    user = IamUserFactory(account=account, name="ci-deployer", owner="dana@example.com")
    key = AccessKeyFactory(
        user=user,
        created=ago(97, NOW) - timedelta(hours=3),
        last_used_at=ago(2),
        last_used_service="s3",
        last_used_region="eu-west-1",
        state=KeyState.OVERDUE,
    )
    unowned = AccessKeyFactory(state=KeyState.OK)

    response = viewer.get(LIST)

    assert response.status_code == 200
    html = response.content.decode()
    assert ids(response) == [key.access_key_id, unowned.access_key_id]  # oldest first
    assert "payments-prod" in html and "210987654321" in html
    assert "ci-deployer" in html and "dana@example.com" in html
    assert "97 days" in html
    body = rows(response)
    assert '<span class="badge state-overdue">Overdue</span>' in body
    assert '<span class="badge state-ok">OK</span>' in body
    assert "2 days ago" in html and "s3 · eu-west-1" in html
    assert 'title="2026-05-13 12:00 UTC"' in html
    assert ">unowned</span>" in html
    assert "2 rows" in html


def test_it_flags_two_active_keys_and_root_keys(viewer):
    user = IamUserFactory()
    AccessKeyFactory.create_batch(2, user=user)
    root = IamUserFactory(is_root=True, name="<root_account>")
    AccessKeyFactory(user=root, access_key_id="ROOT-1", is_root=True)

    html = rows(viewer.get(LIST))

    assert html.count(">2 active keys</span>") == 2
    assert html.count(">root</span>") == 1


def test_it_explains_an_empty_table(viewer):
    response = viewer.get(LIST, {"q": "nothing-like-this"})

    assert response.status_code == 200
    assert "No key matches these filters." in response.content.decode()
    assert "0 rows match the filters" in response.content.decode()


def test_it_paginates_by_50_rows(viewer):
    make_keys(51)

    first = viewer.get(LIST)
    second = viewer.get(LIST, {"page": 2})

    assert len(ids(first)) == 50
    assert len(ids(second)) == 1
    assert "51 rows" in first.content.decode()


def test_it_lists_in_queries_that_do_not_grow_with_rows(viewer):
    make_keys(2)
    few = query_count(viewer, LIST)
    make_keys(40)
    many = query_count(viewer, LIST)

    assert many == few
    assert few <= 10


def test_it_refuses_the_list_to_a_person_without_a_role(client):
    signed_in(client, "nobody", None)

    assert client.get(LIST).status_code == 403


# Filters: each one keeps exactly the keys it names.


def _ids_for(client, params) -> set[str]:
    response = client.get(LIST, params)
    assert response.status_code == 200
    return set(ids(response))


def test_it_filters_by_account(viewer):
    a, b = AccountFactory(account_id="111111111111"), AccountFactory(account_id="222222222222")
    in_a = AccessKeyFactory(user=IamUserFactory(account=a))
    AccessKeyFactory(user=IamUserFactory(account=b))

    assert _ids_for(viewer, {"account": "111111111111"}) == {in_a.access_key_id}


def test_it_filters_by_one_or_more_states(viewer):
    overdue = AccessKeyFactory(state=KeyState.OVERDUE)
    unused = AccessKeyFactory(state=KeyState.UNUSED)
    AccessKeyFactory(state=KeyState.OK)

    assert _ids_for(viewer, {"state": "overdue"}) == {overdue.access_key_id}
    assert _ids_for(viewer, {"state": ["overdue", "unused"]}) == {
        overdue.access_key_id,
        unused.access_key_id,
    }


def test_it_filters_by_status(viewer):
    inactive = AccessKeyFactory(status=KeyStatus.INACTIVE)
    AccessKeyFactory(status=KeyStatus.ACTIVE)

    assert _ids_for(viewer, {"status": "Inactive"}) == {inactive.access_key_id}


def test_it_filters_by_owner_ignoring_case(viewer):
    mine = AccessKeyFactory(user=IamUserFactory(owner="dana@example.com"))
    AccessKeyFactory(user=IamUserFactory(owner="dana@example.org"))

    assert _ids_for(viewer, {"owner": " Dana@Example.COM "}) == {mine.access_key_id}


def test_it_filters_unowned_keys_and_owned_keys(viewer):
    owned = AccessKeyFactory(user=IamUserFactory(owner="dana@example.com"))
    unowned = AccessKeyFactory()

    assert _ids_for(viewer, {"unowned": "true"}) == {unowned.access_key_id}
    assert _ids_for(viewer, {"unowned": "false"}) == {owned.access_key_id}


def test_it_filters_by_age_range_in_whole_days(viewer):
    """GIVEN keys 29 days 23 hours, 30 days 1 hour, 60 days and 61 days old
    WHEN the age range is 30 to 60 days THEN the 30- and the 60-day-old keys are kept."""
    k29 = AccessKeyFactory(created=ago(30) + timedelta(hours=1))
    k30 = AccessKeyFactory(created=ago(30) - timedelta(hours=1))
    k60 = AccessKeyFactory(created=ago(60) - timedelta(hours=23))
    k61 = AccessKeyFactory(created=ago(61))

    assert _ids_for(viewer, {"min_age": 30, "max_age": 60}) == {
        k30.access_key_id,
        k60.access_key_id,
    }
    assert _ids_for(viewer, {"max_age": 29}) == {k29.access_key_id}
    assert _ids_for(viewer, {"min_age": 61}) == {k61.access_key_id}


def test_it_reports_a_malformed_age_instead_of_failing(viewer):
    response = viewer.get(LIST, {"min_age": "-3"})

    assert response.status_code == 200
    assert "greater than or equal to 0" in response.content.decode()


def test_it_filters_never_used_keys(viewer):
    never = AccessKeyFactory(last_used_at=None)
    used = AccessKeyFactory(last_used_at=ago(1))

    assert _ids_for(viewer, {"never_used": "true"}) == {never.access_key_id}
    assert _ids_for(viewer, {"never_used": "false"}) == {used.access_key_id}


def test_it_filters_keys_of_users_with_two_active_keys(viewer):
    user = IamUserFactory()
    pair = AccessKeyFactory.create_batch(2, user=user)
    other = IamUserFactory()
    AccessKeyFactory(user=other)
    AccessKeyFactory(user=other, status=KeyStatus.INACTIVE)

    assert _ids_for(viewer, {"two_active_keys": "true"}) == {k.access_key_id for k in pair}


def test_it_hides_deleted_keys_unless_asked(viewer):
    live = AccessKeyFactory()
    gone = AccessKeyFactory(deleted=True, deleted_at=ago(1), state=KeyState.DELETED)

    assert _ids_for(viewer, {}) == {live.access_key_id}
    assert _ids_for(viewer, {"deleted": "include"}) == {live.access_key_id, gone.access_key_id}
    assert _ids_for(viewer, {"deleted": "only"}) == {gone.access_key_id}


def test_it_searches_key_ids_user_names_and_owners(viewer):
    by_id = AccessKeyFactory(access_key_id="AKIAFINDME0000000001")
    by_user = AccessKeyFactory(user=IamUserFactory(name="findme-bot"))
    by_owner = AccessKeyFactory(user=IamUserFactory(owner="findme@example.com"))
    AccessKeyFactory()

    assert _ids_for(viewer, {"q": "FindMe"}) == {
        by_id.access_key_id,
        by_user.access_key_id,
        by_owner.access_key_id,
    }


def test_it_combines_filters_in_a_shareable_url(viewer):
    account = AccountFactory(account_id="333333333333")
    target = AccessKeyFactory(user=IamUserFactory(account=account), state=KeyState.OVERDUE)
    AccessKeyFactory(user=IamUserFactory(account=account), state=KeyState.OK)
    AccessKeyFactory(state=KeyState.OVERDUE)

    response = viewer.get(LIST + "?account=333333333333&state=overdue&sort=-age")

    assert set(ids(response)) == {target.access_key_id}
    html = response.content.decode()
    # The form shows what is applied; the export links keep the filters and the sort.
    assert 'value="overdue" id="id_state_4" autocomplete="off" checked' in html
    assert "?account=333333333333&amp;state=overdue&amp;sort=-age&amp;_export=csv" in html


# Sorting: every orderable column, both ways.


@pytest.fixture
def three_keys():
    """Three keys whose every column sorts them differently from their creation order."""
    a = AccessKeyFactory(
        access_key_id="AKIAC",
        user=IamUserFactory(name="zed", owner="b@example.com", account=AccountFactory(name="beta")),
        status=KeyStatus.ACTIVE,
        state=KeyState.UNUSED,
        created=ago(50),
        last_used_at=None,
    )
    b = AccessKeyFactory(
        access_key_id="AKIAA",
        user=IamUserFactory(
            name="amy", owner="c@example.com", account=AccountFactory(name="gamma")
        ),
        status=KeyStatus.INACTIVE,
        state=KeyState.INACTIVE,
        created=ago(10),
        last_used_at=ago(5),
    )
    c = AccessKeyFactory(
        access_key_id="AKIAB",
        user=IamUserFactory(
            name="max", owner="a@example.com", account=AccountFactory(name="alpha")
        ),
        status=KeyStatus.ACTIVE,
        state=KeyState.OVERDUE,
        created=ago(100),
        last_used_at=ago(1),
    )
    return a, b, c


SORTS = {
    "access_key_id": ["AKIAA", "AKIAB", "AKIAC"],
    "account": ["AKIAB", "AKIAC", "AKIAA"],  # alpha, beta, gamma
    "user": ["AKIAA", "AKIAB", "AKIAC"],  # amy, max, zed
    "owner": ["AKIAB", "AKIAC", "AKIAA"],  # a@, b@, c@
    "status": ["AKIAC", "AKIAB", "AKIAA"],  # Active (ties by row id: AKIAC came first), Inactive
    "state": ["AKIAA", "AKIAB", "AKIAC"],  # inactive, overdue, unused
    "age": ["AKIAA", "AKIAC", "AKIAB"],  # 10, 50, 100 days
    "last_used": ["AKIAC", "AKIAA", "AKIAB"],  # never, 5 days ago, yesterday
}


def test_it_declares_a_sort_test_for_every_orderable_column():
    table = AccessKeyTable(AccessKey.objects.none())
    assert {c.name for c in table.columns if c.orderable} == set(SORTS)


@pytest.mark.parametrize("column", SORTS)
def test_it_sorts_by_every_column_both_ways(viewer, three_keys, column):
    expected = SORTS[column]

    ascending = ids(viewer.get(LIST, {"sort": column}))
    descending = ids(viewer.get(LIST, {"sort": f"-{column}"}))

    assert ascending == expected
    assert descending == expected[::-1]


def test_it_sorts_every_column_in_queries_that_do_not_grow_with_rows(viewer, three_keys):
    counts = {column: query_count(viewer, LIST + f"?sort={column}") for column in SORTS}
    make_keys(20)
    assert {column: query_count(viewer, LIST + f"?sort={column}") for column in SORTS} == counts


# ----- /keys/<id>/ ------------------------------------------------------------------------------


@pytest.fixture
def dana_key():
    """Dana's 80-day-old key in a judged account, observed by three snapshots: ok 60 days ago,
    due soon the last two days."""
    account = AccountFactory(account_id="444444444444", name="shop-prod")
    take_snapshot(
        account,
        ago(60),
        [user_record(account, "shop-api", "dana@example.com")],
        [key_record("AKIADANA000000000001", "shop-api", ago(80), last_used_at=ago(61))],
    )
    for n in (2, 1):
        take_snapshot(
            account,
            ago(n),
            [user_record(account, "shop-api", "dana@example.com")],
            [
                key_record(
                    "AKIADANA000000000001",
                    "shop-api",
                    ago(80),
                    last_used_at=ago(2),
                )
            ],
        )
    return AccessKey.objects.get(access_key_id="AKIADANA000000000001")


def test_it_shows_a_key_with_its_user_state_deadline_and_history(viewer, dana_key):
    user = dana_key.user
    user.tags = {"owner": "dana@example.com", "team": "shop"}
    user.has_password = False
    user.save()

    response = viewer.get(detail(dana_key))

    assert response.status_code == 200
    html = response.content.decode()
    assert "AKIADANA000000000001" in html
    assert "shop-api" in html and user.arn in html and "service (no console password)" in html
    assert "shop-prod" in html and "444444444444" in html
    assert '<td class="font-monospace-sm">team</td><td class="text-break">shop</td>' in html
    assert "80 days" in html
    # Due soon: 80 days old, rotate after 90 days, warned 14 days before.
    assert '<span class="badge state-due_soon">Due soon</span>' in html
    assert "80 days old: rotate within 10 days (maximum 90)." in html
    assert "2026-05-26 12:00 UTC" in html  # created + 91 days
    assert "11 days left" in html
    # The history: the two later snapshots saw it the same way and are merged.
    assert "What the last 3 collections saw" in html
    assert "2026-05-13 12:00 UTC → 2026-05-14 12:00 UTC" in html
    assert '<td class="small text-nowrap">2026-03-16 12:00 UTC</td>' in html


def test_it_shows_a_keys_findings_exceptions_and_migration(client, dana_key):
    approver = person("ann", "approver")
    signed_in(client, "dana", "owner", email="dana@example.com")
    Finding.objects.create(
        key=dana_key,
        account=dana_key.account,
        kind=KeyState.UNUSED,
        opened_at=ago(40),
        closed_at=ago(20),
        close_reason="used",
    )
    PolicyException.objects.create(
        key=dana_key,
        account=dana_key.account,
        reason="vendor appliance",
        expires_at=NOW + timedelta(days=30),
        requested_by=approver,
        requested_at=ago(1),
    )
    mark_migration(dana_key, by=approver, status=MigrationStatus.MIGRATING, role_arn=ROLE_ARN)

    html = client.get(detail(dana_key)).content.decode()

    assert "Used again" in html
    assert "vendor appliance" in html and "Pending" in html
    assert ROLE_ARN in html and "Migrating" in html
    assert "Withdraw the migration mark" in html


def test_it_answers_404_for_an_unknown_key(viewer):
    response = viewer.get(reverse("inventory:accesskey_detail", args=["AKIANOSUCHKEY"]))

    assert response.status_code == 404


def test_it_shows_a_key_in_queries_that_do_not_grow_with_its_history(viewer):
    """GIVEN a key with findings, exceptions, marks and 2 observations, then the same with 20
    WHEN its page is read THEN the number of queries is the same."""
    account = AccountFactory()
    users = [user_record(account, "svc", "dana@example.com")]

    def snapshot(n):
        take_snapshot(account, ago(n), users, [key_record("AKIAHIST", "svc", ago(200))])

    for n in (40, 39):
        snapshot(n)
    key = AccessKey.objects.get(access_key_id="AKIAHIST")
    few = query_count(viewer, detail(key))
    for n in range(38, 20, -1):
        snapshot(n)
    approver = person("ann", "approver")
    for _ in range(3):
        PolicyException.objects.create(
            key=key,
            account=account,
            reason="r",
            expires_at=NOW + timedelta(days=3),
            requested_by=approver,
            requested_at=NOW,
        )
    many = query_count(viewer, detail(key))

    assert many == few
    assert few <= 12


def test_it_bounds_the_history_to_the_last_120_snapshots(viewer):
    key = AccessKeyFactory()
    from inventory.models import KeyObservation, Snapshot

    snapshots = Snapshot.objects.bulk_create(
        Snapshot(account=key.account, started_at=ago(130 - i), status="complete")
        for i in range(130)
    )
    KeyObservation.objects.bulk_create(
        KeyObservation(key=key, snapshot=s, active=True, state="ok", last_used_at=s.started_at)
        for s in snapshots
    )

    html = viewer.get(detail(key)).content.decode()

    assert "What the last 120 collections saw (older ones are not shown)" in html
    assert ago(1).strftime("%Y-%m-%d") in html
    assert ago(121).strftime("%Y-%m-%d 12:00") not in html


# Actions: who sees them, who may use them.


def test_it_shows_no_action_to_a_viewer_but_says_who_can_act(viewer, dana_key):
    html = viewer.get(detail(dana_key)).content.decode()

    assert reverse("inventory:accesskey_migration", args=[dana_key.access_key_id]) not in html
    assert "Request an exception" not in html
    assert "Only the key's owner" in html and "dana@example.com" in html


def test_it_shows_no_action_to_another_owner(client, dana_key):
    signed_in(client, "olga", "owner", email="olga@example.com")

    html = client.get(detail(dana_key)).content.decode()

    assert "Mark migrated to a role" not in html
    assert "Only the key's owner" in html


@pytest.mark.parametrize(
    ("username", "role", "email"),
    [("dana", "owner", "Dana@Example.com"), ("ann", "approver", ""), ("adam", "admin", "")],
)
def test_it_lets_the_keys_owner_an_approver_or_an_admin_mark_a_migration(
    client, dana_key, username, role, email
):
    """GIVEN the key's owner (e-mail matching in another case), an approver or an admin
    WHEN they post a valid mark THEN it is stored, audited, and they are sent back to the key."""
    signed_in(client, username, role, email=email)
    assert "Mark migrated to a role" in client.get(detail(dana_key)).content.decode()

    response = client.post(
        reverse("inventory:accesskey_migration", args=[dana_key.access_key_id]),
        {"status": "migrated", "role_arn": f"  {ROLE_ARN} ", "note": "moved to IRSA"},
        follow=True,
    )

    assert response.redirect_chain == [(detail(dana_key), 302)]
    mark = KeyMigration.objects.get(key=dana_key)
    assert (mark.status, mark.role_arn, mark.note) == ("migrated", ROLE_ARN, "moved to IRSA")
    assert AccessKey.objects.get(pk=dana_key.pk).state == KeyState.MIGRATED
    assert AuditEvent.objects.filter(action="migration.mark").count() == 1
    html = response.content.decode()
    assert f"AKIADANA000000000001 marked migrated to {ROLE_ARN}." in html
    assert "Update the migration mark" in html


@pytest.mark.parametrize(
    ("role", "email"), [("owner", "olga@example.com"), ("viewer", "dana@example.com")]
)
@pytest.mark.parametrize(
    "action", ["accesskey_migration", "accesskey_migration_withdraw", "accesskey_exception"]
)
def test_it_refuses_every_action_to_another_owner_and_to_a_viewer(
    client, dana_key, role, email, action
):
    signed_in(client, "someone", role, email=email)
    mark_migration(
        dana_key, by=person("ann", "approver"), status=MigrationStatus.MIGRATING, role_arn=ROLE_ARN
    )
    url = reverse(f"inventory:{action}", args=[dana_key.access_key_id])

    response = client.post(
        url,
        {
            "status": "migrated",
            "role_arn": ROLE_ARN,
            "reason": "r",
            "expires_on": "2026-06-01",
        },
    )

    assert response.status_code == 403
    mark = KeyMigration.objects.get(key=dana_key)
    assert (mark.status, mark.withdrawn_at) == ("migrating", None)
    assert not PolicyException.objects.exists()


def test_it_refuses_the_exception_form_to_another_owner(client, dana_key):
    signed_in(client, "olga", "owner", email="olga@example.com")

    url = reverse("inventory:accesskey_exception", args=[dana_key.access_key_id])

    assert client.get(url).status_code == 403


def test_it_answers_404_to_an_action_on_an_unknown_key(client):
    signed_in(client, "ann", "approver")

    url = reverse("inventory:accesskey_migration", args=["AKIANOSUCHKEY"])

    assert client.post(url, {"status": "migrated", "role_arn": ROLE_ARN}).status_code == 404


def test_it_accepts_actions_only_by_post(client, dana_key):
    signed_in(client, "ann", "approver")

    url = reverse("inventory:accesskey_migration", args=[dana_key.access_key_id])

    assert client.get(url).status_code == 405
    assert not KeyMigration.objects.exists()


def test_it_keeps_the_form_and_writes_nothing_for_an_invalid_role_arn(client, dana_key):
    """GIVEN the key's owner WHEN she posts a user ARN instead of a role ARN
    THEN the key page comes back with the error beside the field and her input kept;
    nothing is stored or audited."""
    signed_in(client, "dana", "owner", email="dana@example.com")
    audit_before = AuditEvent.objects.count()
    bad = "arn:aws:iam::123456789012:user/deployer"

    response = client.post(
        reverse("inventory:accesskey_migration", args=[dana_key.access_key_id]),
        {"status": "migrated", "role_arn": bad, "note": "keep me"},
    )

    assert response.status_code == 200
    html = response.content.decode()
    assert "is not an IAM role ARN: expected arn:aws:iam::123456789012:role/RoleName." in html
    assert f'value="{bad}"' in html and ">keep me</textarea>" in html
    assert 'value="migrated" class="form-check-input" id="id_status_1" required checked' in html
    assert "is-invalid" in html
    assert not KeyMigration.objects.exists()
    assert AuditEvent.objects.count() == audit_before
    assert AccessKey.objects.get(pk=dana_key.pk).state == KeyState.DUE_SOON


def test_it_shows_a_refusal_of_the_service_on_the_form(client):
    """GIVEN an approver and a root-account key WHEN they post a mark THEN the service's
    refusal is shown on the page and nothing is stored."""
    signed_in(client, "ann", "approver")
    root = AccessKeyFactory(user=IamUserFactory(is_root=True), access_key_id="ROOT-KEY")

    response = client.post(
        reverse("inventory:accesskey_migration", args=[root.access_key_id]),
        {"status": "migrated", "role_arn": ROLE_ARN},
    )

    assert response.status_code == 200
    assert "Root-account keys cannot be migrated to a role" in response.content.decode()
    assert not KeyMigration.objects.exists()


def test_it_withdraws_a_migration_mark(client, dana_key):
    dana = signed_in(client, "dana", "owner", email="dana@example.com")
    mark_migration(dana_key, by=dana, status=MigrationStatus.MIGRATED, role_arn=ROLE_ARN)

    response = client.post(
        reverse("inventory:accesskey_migration_withdraw", args=[dana_key.access_key_id]),
        follow=True,
    )

    assert response.redirect_chain == [(detail(dana_key), 302)]
    assert KeyMigration.objects.get(key=dana_key).withdrawn_at == NOW
    assert AccessKey.objects.get(pk=dana_key.pk).state == KeyState.DUE_SOON
    assert "Migration mark of AKIADANA000000000001 withdrawn." in response.content.decode()


def test_it_says_so_when_there_is_no_mark_to_withdraw(client, dana_key):
    signed_in(client, "dana", "owner", email="dana@example.com")

    response = client.post(
        reverse("inventory:accesskey_migration_withdraw", args=[dana_key.access_key_id]),
        follow=True,
    )

    assert "This key has no migration mark to withdraw." in response.content.decode()


@pytest.mark.parametrize(
    ("username", "role", "email"), [("dana", "owner", "dana@example.com"), ("ann", "approver", "")]
)
def test_it_lets_the_owner_or_an_approver_request_an_exception(
    client, dana_key, username, role, email
):
    user = signed_in(client, username, role, email=email)
    url = reverse("inventory:accesskey_exception", args=[dana_key.access_key_id])
    form = client.get(url)
    assert form.status_code == 200
    assert 'max="2026-11-11"' in form.content.decode()  # NOW + 180 days

    response = client.post(
        url, {"reason": "  vendor appliance  ", "expires_on": "2026-11-11"}, follow=True
    )

    assert response.redirect_chain == [(detail(dana_key), 302)]
    exc = PolicyException.objects.get(key=dana_key)
    assert (exc.status, exc.reason, exc.requested_by) == (
        ExceptionStatus.PENDING,
        "vendor appliance",
        user,
    )
    assert exc.expires_at.isoformat() == "2026-11-11T00:00:00+00:00"
    assert "Exception requested for AKIADANA000000000001 until 2026-11-11" in (
        response.content.decode()
    )


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"reason": "r", "expires_on": "2026-11-12"}, "An exception lasts at most 180 days"),
        ({"reason": "r", "expires_on": "2026-05-15"}, "Pick a day after today."),
        ({"reason": "   ", "expires_on": "2026-06-01"}, "This field is required."),
        ({"reason": "r", "expires_on": "next week"}, "Enter a valid date."),
    ],
)
def test_it_refuses_a_malformed_exception_request_and_keeps_the_input(
    client, dana_key, data, error
):
    signed_in(client, "dana", "owner", email="dana@example.com")

    response = client.post(
        reverse("inventory:accesskey_exception", args=[dana_key.access_key_id]), data
    )

    assert response.status_code == 200
    html = response.content.decode()
    assert error in html
    assert f'value="{data["expires_on"]}"' in html
    assert not PolicyException.objects.exists()


# ----- /mine/ -----------------------------------------------------------------------------------


def test_it_lists_my_keys_most_urgent_first_with_deadlines(client):
    """GIVEN keys of dana (owner tag in another case irrelevant: stored lower-cased) in every
    state, and a key of someone else WHEN dana opens /mine/ THEN she sees hers only: overdue,
    unused, due soon by nearest deadline, ok, then the keys the age rule no longer judges."""
    signed_in(client, "dana", "owner", email="Dana@Example.com")
    user = IamUserFactory(owner="dana@example.com")

    def key(key_id, state, days_old, **kw):
        return AccessKeyFactory(
            access_key_id=key_id, user=user, state=state, created=ago(days_old), **kw
        )

    key("AKIAOK", KeyState.OK, 10)
    key("AKIAINACTIVE", KeyState.INACTIVE, 200, status=KeyStatus.INACTIVE)
    key("AKIADUE2", KeyState.DUE_SOON, 80)
    key("AKIAOVERDUE", KeyState.OVERDUE, 120)
    key("AKIADUE1", KeyState.DUE_SOON, 85)
    key("AKIAUNUSED", KeyState.UNUSED, 60)
    key("AKIAGONE", KeyState.DELETED, 300, deleted=True)
    AccessKeyFactory(user=IamUserFactory(owner="olga@example.com"), access_key_id="AKIAOLGA")

    response = client.get(MINE)

    assert response.status_code == 200
    assert ids(response) == [
        "AKIAOVERDUE",
        "AKIAUNUSED",
        "AKIADUE1",
        "AKIADUE2",
        "AKIAOK",
        "AKIAINACTIVE",
    ]
    html = response.content.decode()
    assert '<span class="badge state-overdue">Overdue</span>' in rows(response)
    assert "29 days overdue" in html  # created 120 days ago, overdue after day 91
    assert ">6 days</span>" in html  # 85 days old: deadline in 6 days
    assert "2026-05-21" in html
    assert "2 need action now" in html


def test_it_uses_the_accounts_policy_override_for_deadlines(client):
    signed_in(client, "dana", "owner", email="dana@example.com")
    account = AccountFactory()
    RotationPolicy.objects.create(account=account, max_age_days=30, warn_days=5)
    AccessKeyFactory(
        user=IamUserFactory(account=account, owner="dana@example.com"),
        state=KeyState.DUE_SOON,
        created=ago(28),
    )

    assert ">3 days</span>" in client.get(MINE).content.decode()


def test_it_shows_until_when_an_exception_covers_my_key(client):
    dana = signed_in(client, "dana", "owner", email="dana@example.com")
    key = AccessKeyFactory(user=IamUserFactory(owner="dana@example.com"), created=ago(120))
    exc = PolicyException.objects.create(
        key=key,
        account=key.account,
        reason="r",
        expires_at=NOW + timedelta(days=20),
        requested_by=dana,
        requested_at=NOW,
    )
    PolicyException.objects.filter(pk=exc.pk).update(
        status=ExceptionStatus.APPROVED, decided_by=person("ann", "approver"), decided_at=NOW
    )
    evaluate_account(key.account, NOW)

    html = client.get(MINE).content.decode()

    assert "excepted until 2026-06-04" in html


def test_it_explains_that_no_user_carries_my_email(client):
    signed_in(client, "dana", "owner", email="dana@example.com")
    AccessKeyFactory(user=IamUserFactory(owner="olga@example.com"))

    response = client.get(MINE)

    assert response.status_code == 200
    assert "No IAM user carries your e-mail dana@example.com in an owner tag." in (
        response.content.decode()
    )


def test_it_explains_that_my_sign_in_has_no_email(client):
    user = signed_in(client, "dana", "owner")
    user.email = ""
    user.save()

    assert "Your keygov sign-in has no e-mail address" in client.get(MINE).content.decode()


def test_it_refuses_my_keys_to_a_viewer(viewer):
    assert viewer.get(MINE).status_code == 403


def test_it_lists_my_keys_in_queries_that_do_not_grow_with_rows(client):
    signed_in(client, "dana", "owner", email="dana@example.com")
    user = IamUserFactory(owner="dana@example.com")
    make_keys(2, user=IamUserFactory(owner="dana@example.com"), state=KeyState.OK)
    few = query_count(client, MINE)
    make_keys(30, user=user, state=KeyState.DUE_SOON, created=ago(80))
    many = query_count(client, MINE)

    assert many == few
    assert few <= 10
