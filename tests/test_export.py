"""The keys export (PRODUCT.md, "Key export"): /keys/?_export=csv|xlsx, every filtered row,
the columns in their order, timestamps in ISO 8601 UTC."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import openpyxl
import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from inventory.choices import KeyState, KeyStatus
from tests.gov_factories import NOW, AccessKeyFactory, AccountFactory, IamUserFactory, ago, person

pytestmark = pytest.mark.django_db

LIST = reverse("inventory:accesskey_list")
COLUMNS = [
    "access_key_id",
    "account_id",
    "account_name",
    "user_name",
    "owner",
    "status",
    "state",
    "created",
    "age_days",
    "last_used",
    "last_used_service",
    "last_used_region",
]


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def viewer(client):
    client.force_login(person("vera", "viewer"))
    return client


def content(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def export_csv(client, **params) -> list[list[str]]:
    response = client.get(LIST, {**params, "_export": "csv"})
    assert response.status_code == 200
    return list(csv.reader(io.StringIO(content(response).decode())))


@pytest.fixture
def used_key():
    account = AccountFactory(account_id="210987654321", name="payments-prod")
    user = IamUserFactory(account=account, name="ci-deployer", owner="dana@example.com")
    return AccessKeyFactory(
        access_key_id="AKIAUSED000000000001",
        user=user,
        created=ago(97) - timedelta(hours=3) + timedelta(microseconds=120),  # to the second
        last_used_at=ago(2) + timedelta(minutes=30),
        last_used_service="s3",
        last_used_region="eu-west-1",
        state=KeyState.OVERDUE,
    )


def test_it_exports_csv_with_exactly_the_products_columns_in_order(viewer, used_key):
    never = AccessKeyFactory(
        access_key_id="AKIANEVER00000000002",
        user=IamUserFactory(account=used_key.account, name="batch"),
        status=KeyStatus.INACTIVE,
        state=KeyState.INACTIVE,
        created=ago(10),
    )

    response = viewer.get(LIST, {"_export": "csv"})

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="keygov-keys.csv"'
    assert list(csv.reader(io.StringIO(content(response).decode()))) == [
        COLUMNS,
        [
            "AKIAUSED000000000001",
            "210987654321",
            "payments-prod",
            "ci-deployer",
            "dana@example.com",
            "Active",
            "overdue",
            "2026-02-07T09:00:00Z",
            "97",
            "2026-05-13T12:30:00Z",
            "s3",
            "eu-west-1",
        ],
        [
            never.access_key_id,
            "210987654321",
            "payments-prod",
            "batch",
            "",
            "Inactive",
            "inactive",
            "2026-05-05T12:00:00Z",
            "10",
            "",
            "",
            "",
        ],
    ]


def test_it_exports_every_filtered_row_not_one_page(viewer):
    account = AccountFactory(account_id="333333333333")
    wanted = AccessKeyFactory.create_batch(
        60, user=IamUserFactory(account=account), state=KeyState.OVERDUE
    )
    AccessKeyFactory(user=IamUserFactory(account=account), state=KeyState.OK)
    AccessKeyFactory(state=KeyState.OVERDUE)
    AccessKeyFactory(user=IamUserFactory(account=account), state=KeyState.DELETED, deleted=True)

    rows = export_csv(viewer, account="333333333333", state="overdue", page=2)

    assert rows[0] == COLUMNS
    assert sorted(r[0] for r in rows[1:]) == sorted(k.access_key_id for k in wanted)


def test_it_exports_in_the_order_the_page_shows(viewer):
    young = AccessKeyFactory(created=ago(5), last_used_at=ago(1))
    old = AccessKeyFactory(created=ago(50), last_used_at=None)
    middle = AccessKeyFactory(created=ago(20), last_used_at=ago(3))

    by_age = [r[0] for r in export_csv(viewer, sort="-age")[1:]]
    by_last_use = [r[0] for r in export_csv(viewer, sort="last_used")[1:]]

    assert by_age == [old.access_key_id, middle.access_key_id, young.access_key_id]
    assert by_last_use == [old.access_key_id, middle.access_key_id, young.access_key_id]


def test_it_exports_xlsx_that_a_spreadsheet_opens(viewer, used_key):
    response = viewer.get(LIST, {"_export": "xlsx", "q": "AKIAUSED"})

    assert response.status_code == 200
    assert response["Content-Type"] == (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    assert 'filename="keygov-keys.xlsx"' in response["Content-Disposition"]
    book = openpyxl.load_workbook(io.BytesIO(content(response)), read_only=True)
    sheet = book.active
    assert sheet.title == "Access keys"
    assert [list(row) for row in sheet.iter_rows(values_only=True)] == [
        COLUMNS,
        [
            "AKIAUSED000000000001",
            "210987654321",
            "payments-prod",
            "ci-deployer",
            "dana@example.com",
            "Active",
            "overdue",
            "2026-02-07T09:00:00Z",
            97,
            "2026-05-13T12:30:00Z",
            "s3",
            "eu-west-1",
        ],
    ]


def test_it_exports_an_empty_selection_as_the_header_alone(viewer, used_key):
    assert export_csv(viewer, q="no-such-key") == [COLUMNS]


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_it_exports_in_queries_that_do_not_grow_with_rows(viewer, fmt):
    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            response = viewer.get(LIST, {"_export": fmt, "sort": "account"})
            assert response.status_code == 200
            content(response)
        return len(queries.captured_queries)

    AccessKeyFactory.create_batch(2)
    few = count()
    for _ in range(10):
        AccessKeyFactory.create_batch(4, user=IamUserFactory(owner="o@example.com"))
    many = count()

    assert many == few
    assert few <= 6


def test_it_streams_the_csv(viewer, used_key):
    response = viewer.get(LIST, {"_export": "csv"})

    assert response.streaming


def test_it_shows_export_links_that_keep_the_filters(viewer, used_key):
    html = viewer.get(LIST, {"state": "overdue", "page": 1}).content.decode()

    assert 'href="?state=overdue&amp;_export=csv"' in html
    assert 'href="?state=overdue&amp;_export=xlsx"' in html


def test_it_refuses_the_export_to_a_person_without_a_role(client, used_key):
    client.force_login(person("nobody"))

    assert client.get(LIST, {"_export": "csv"}).status_code == 403
