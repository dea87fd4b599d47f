"""Paging through AWS's list calls, with botocore's Stubber (moto never pages these calls)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from botocore.stub import Stubber

from inventory.aws.collector import list_users
from inventory.aws.connection import AwsConnection, AwsSettings
from inventory.aws.organizations import OrgAccount, list_accounts
from inventory.models import Account
from inventory.services.accounts import import_accounts
from tests.aws_stubs import StubbedSession, client, count_stubbed_calls

MANAGEMENT = "111122223333"
ORG_ARN = f"arn:aws:organizations::{MANAGEMENT}:account/o-a1b2c3d4e5"


def user_detail(name: str) -> dict:
    return {
        "UserName": name,
        "UserId": f"AIDA{name.upper():0<17}"[:21],
        "Arn": f"arn:aws:iam::{MANAGEMENT}:user/{name}",
        "Path": "/",
        "CreateDate": datetime(2024, 1, 1, tzinfo=UTC),
        "Tags": [{"Key": "owner", "Value": f"{name}@example.com"}],
    }


def org_account(account_id: str, name: str, state: str | None, status: str | None = None) -> dict:
    account = {
        "Id": account_id,
        "Arn": f"{ORG_ARN}/{account_id}",
        "Email": f"{name}@example.com",
        "Name": name,
    }
    if state:
        account["State"] = state
    if status:
        account["Status"] = status
    return account


# --- GetAccountAuthorizationDetails -------------------------------------------------------------


def test_it_reads_every_page_of_the_authorization_details():
    """GIVEN an account whose users fill three pages WHEN listing users THEN each call asks for
    users only, 1,000 a page, and passes on the previous page's Marker."""
    iam = client("iam")
    first = {"Filter": ["User"], "MaxItems": 1000}
    with Stubber(iam) as stubber:
        stubber.add_response(
            "get_account_authorization_details",
            {
                "UserDetailList": [user_detail("alice"), user_detail("bob")],
                "IsTruncated": True,
                "Marker": "page-2",
            },
            first,
        )
        stubber.add_response(
            "get_account_authorization_details",
            {"UserDetailList": [user_detail("carol")], "IsTruncated": True, "Marker": "page-3"},
            {**first, "Marker": "page-2"},
        )
        stubber.add_response(
            "get_account_authorization_details",
            {"UserDetailList": [user_detail("dave")], "IsTruncated": False},
            {**first, "Marker": "page-3"},
        )

        users = list_users(iam)

        stubber.assert_no_pending_responses()
    assert [u["UserName"] for u in users] == ["alice", "bob", "carol", "dave"]
    assert users[2]["Tags"] == [{"Key": "owner", "Value": "carol@example.com"}]


def test_it_reads_a_single_page_in_one_call():
    iam = client("iam")
    with Stubber(iam) as stubber:
        stubber.add_response(
            "get_account_authorization_details",
            {"UserDetailList": [], "IsTruncated": False},
            {"Filter": ["User"], "MaxItems": 1000},
        )

        assert list_users(iam) == []

        stubber.assert_no_pending_responses()


# --- Organizations ListAccounts -----------------------------------------------------------------


def stub_three_pages(stubber: Stubber) -> None:
    stubber.add_response(
        "list_accounts",
        {
            "Accounts": [
                org_account(MANAGEMENT, "management", "ACTIVE", "ACTIVE"),
                org_account("222233334444", "prod", "ACTIVE", "ACTIVE"),
            ],
            "NextToken": "token-2",
        },
        {},
    )
    stubber.add_response(
        "list_accounts",
        {
            "Accounts": [
                # Older answers carry only the deprecated Status.
                org_account("333344445555", "old-sandbox", None, "SUSPENDED"),
                org_account("444455556666", "closing", "PENDING_CLOSURE", "PENDING_CLOSURE"),
            ],
            "NextToken": "token-3",
        },
        {"NextToken": "token-2"},
    )
    stubber.add_response(
        "list_accounts",
        {"Accounts": [org_account("555566667777", "staging", "ACTIVE", None)]},
        {"NextToken": "token-3"},
    )


def test_it_lists_every_page_of_the_organisation():
    conn = AwsConnection(
        session=StubbedSession(organizations=client("organizations")), settings=AwsSettings()
    )
    org = count_stubbed_calls(conn, "organizations")
    with Stubber(org) as stubber:
        stub_three_pages(stubber)

        accounts = list_accounts(conn)

        stubber.assert_no_pending_responses()
    assert [(a.account_id, a.status) for a in accounts] == [
        (MANAGEMENT, "ACTIVE"),
        ("222233334444", "ACTIVE"),
        ("333344445555", "SUSPENDED"),
        ("444455556666", "PENDING_CLOSURE"),
        ("555566667777", "ACTIVE"),
    ]
    assert accounts[1].name == "prod"
    assert conn.api_calls == 3


@pytest.mark.parametrize(
    ("arn", "partition"),
    [
        (f"{ORG_ARN}/222233334444", "aws"),
        ("arn:aws-us-gov:organizations::111122223333:account/o-x/222233334444", "aws-us-gov"),
        ("", "aws"),
    ],
)
def test_it_reads_the_partition_from_the_account_arn(arn, partition):
    account = OrgAccount(account_id="222233334444", name="", email="", status="ACTIVE", arn=arn)

    assert account.partition == partition


@pytest.mark.django_db
def test_it_imports_the_active_accounts_of_every_page():
    """GIVEN an organisation listed over three pages, one account already known and two not
    active WHEN importing THEN the active accounts exist with the role to read them through,
    the known one is updated, and the others are reported as skipped."""
    Account.objects.create(account_id="222233334444", name="old name")
    Account.objects.create(account_id="333344445555", name="suspended since")
    org = client("organizations")
    with Stubber(org) as stubber:
        stub_three_pages(stubber)

        result = import_accounts(
            "/audit/KeygovRead/",  # as IAM writes a path
            external_id="keygov-ext-1",
            session=StubbedSession(organizations=org),
        )

        stubber.assert_no_pending_responses()
    assert sorted(a.account_id for a in result.created) == [MANAGEMENT, "555566667777"]
    assert [a.account_id for a in result.updated] == ["222233334444"]
    assert result.skipped == ["333344445555 (suspended)", "444455556666 (pending_closure)"]
    assert [a.account_id for a in result.disabled] == ["333344445555"]
    assert not Account.objects.get(account_id="333344445555").enabled
    assert set(Account.objects.values_list("account_id", flat=True)) == {
        MANAGEMENT,
        "222233334444",
        "333344445555",
        "555566667777",
    }
    prod = Account.objects.get(account_id="222233334444")
    assert prod.name == "prod"
    assert prod.role_arn == "arn:aws:iam::222233334444:role/audit/KeygovRead"
    assert prod.external_id == "keygov-ext-1"


@pytest.mark.django_db
def test_it_refuses_a_role_name_that_cannot_be_in_an_arn():
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match="'Keygov Read' is not a valid IAM role name"):
        import_accounts("Keygov Read", session=StubbedSession())
    assert not Account.objects.exists()
