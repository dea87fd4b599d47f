"""``manage.py collect`` and ``manage.py import_accounts`` against moto."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from inventory.choices import SnapshotStatus
from inventory.models import Account, Snapshot
from tests.conftest import MOTO_MANAGEMENT_ACCOUNT, inject_error
from tests.moto_org import (
    create_organization,
    create_user,
    iam_in,
    json_error_response,
    register_account,
    request_body,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def two_accounts(aws_everywhere):
    aws = aws_everywhere
    ids = create_organization(aws, "prod", "dev")
    create_user(iam_in(aws, ids["prod"]), "alice", {"owner": "alice@example.com"}, keys=2)
    create_user(iam_in(aws, ids["dev"]), "bob", keys=1)
    return {
        "session": aws,
        "ids": ids,
        "prod": register_account(ids["prod"], "prod"),
        "dev": register_account(ids["dev"], "dev"),
    }


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


# --- collect -------------------------------------------------------------------------------------


def test_it_collects_every_enabled_account_with_progress(two_accounts):
    output = run("collect")

    prod_id, dev_id = two_accounts["ids"]["prod"], two_accounts["ids"]["dev"]
    assert f"prod ({prod_id}):" in output
    assert f"dev ({dev_id}):" in output
    assert "  assuming the read role" in output
    assert "  generating the credential report" in output
    assert "  writing 1 users and 2 keys" in output
    assert "  complete: 1 users, 2 keys," in output
    assert "  complete: 1 users, 1 keys," in output
    assert Snapshot.objects.filter(status=SnapshotStatus.COMPLETE).count() == 2


def test_it_collects_only_the_accounts_asked_for(two_accounts):
    output = run("collect", "--account", two_accounts["ids"]["dev"])

    assert "dev (" in output and "prod (" not in output
    assert list(Snapshot.objects.values_list("account__name", flat=True)) == ["dev"]


def test_it_exits_with_the_error_when_a_collection_fails(two_accounts):
    """GIVEN AssumeRole into dev denied
    WHEN every account is collected from the shell
    THEN prod is collected, dev's failure is printed with AWS's error, and the command fails
    (non-zero exit) saying how many collections failed."""
    dev_id = two_accounts["ids"]["dev"]
    inject_error(
        two_accounts["session"],
        "before-send.sts.AssumeRole",
        "AccessDenied",
        "not authorized to perform sts:AssumeRole",
        status=403,
        when=lambda request: dev_id in request_body(request),
    )
    out = StringIO()

    with pytest.raises(CommandError, match="1 of 2 collections failed"):
        call_command("collect", stdout=out)

    assert (
        "  failed: AssumeRole failed: AccessDenied: not authorized to perform sts:AssumeRole"
        in out.getvalue()
    )
    assert Snapshot.objects.get(account=two_accounts["prod"]).status == SnapshotStatus.COMPLETE
    assert Snapshot.objects.get(account=two_accounts["dev"]).status == SnapshotStatus.FAILED


def test_it_exits_non_zero_from_the_command_line(two_accounts, monkeypatch):
    """The CommandError becomes exit status 1 with the message on stderr, as manage.py runs it."""
    from django.core.management import ManagementUtility

    inject_error(two_accounts["session"], "before-send.sts.AssumeRole", "AccessDenied", "no")
    err = StringIO()
    monkeypatch.setattr("sys.stderr", err)
    monkeypatch.setattr("sys.stdout", StringIO())

    with pytest.raises(SystemExit) as exit_info:
        ManagementUtility(["manage.py", "collect"]).execute()

    assert exit_info.value.code == 1
    assert "CommandError: 2 of 2 collections failed" in err.getvalue()


def test_it_refuses_an_unknown_account(two_accounts):
    with pytest.raises(CommandError, match="unknown account"):
        run("collect", "--account", "999999999999")
    assert not Snapshot.objects.exists()


def test_it_says_what_to_do_when_there_is_no_account(aws):
    Account.objects.create(account_id="111111111111", enabled=False)

    with pytest.raises(CommandError, match="import_accounts"):
        run("collect")


# --- import_accounts -----------------------------------------------------------------------------


def test_it_imports_the_organizations_accounts_with_the_read_role(aws_everywhere):
    """GIVEN an organisation with two member accounts
    WHEN its accounts are imported with a role name and ExternalId, then imported again
    THEN every account (management included) is read through that role with that ExternalId, and
    the second import updates rather than duplicates."""
    ids = create_organization(aws_everywhere, "prod", "dev")

    output = run("import_accounts", "--role-name", "KeygovRead", "--external-id", "X")

    accounts = {a.account_id: a for a in Account.objects.all()}
    assert set(accounts) == {ids["prod"], ids["dev"], MOTO_MANAGEMENT_ACCOUNT}
    for account_id, account in accounts.items():
        assert account.role_arn == f"arn:aws:iam::{account_id}:role/KeygovRead"
        assert account.external_id == "X"
        assert account.enabled
    assert accounts[ids["prod"]].name == "prod"
    assert f"added   {ids['prod']} prod via arn:aws:iam::{ids['prod']}:role/KeygovRead" in output
    assert "3 added, 0 updated" in output

    again = run("import_accounts", "--role-name", "KeygovRead", "--external-id", "Y")

    assert "0 added, 3 updated" in again
    assert Account.objects.count() == 3
    assert set(Account.objects.values_list("external_id", flat=True)) == {"Y"}

    run("import_accounts", "--role-name", "KeygovRead")  # no --external-id: each keeps its own

    assert set(Account.objects.values_list("external_id", flat=True)) == {"Y"}


def test_it_collects_the_imported_accounts(aws_everywhere):
    ids = create_organization(aws_everywhere, "prod")
    create_user(iam_in(aws_everywhere, ids["prod"]), "alice", keys=1)
    run("import_accounts", "--role-name", "KeygovRead")

    run("collect")

    prod = Account.objects.get(account_id=ids["prod"])
    assert prod.snapshots.get().status == SnapshotStatus.COMPLETE
    assert prod.access_keys.count() == 1


@pytest.mark.parametrize("role_name", ["Keygov Read", "Keygov*", ""])
def test_it_refuses_an_invalid_role_name(aws_everywhere, role_name):
    with pytest.raises(CommandError, match="is not a valid IAM role name"):
        run("import_accounts", "--role-name", role_name)
    assert not Account.objects.exists()


def test_it_reports_an_aws_error_while_importing(aws_everywhere):
    create_organization(aws_everywhere, "prod")
    aws_everywhere.events.register(
        "before-send.organizations.ListAccounts",
        lambda **_: json_error_response(
            "AccessDeniedException", "You don't have permissions to access this resource."
        ),
    )

    with pytest.raises(
        CommandError, match="ListAccounts failed: AccessDeniedException: You don't have"
    ):
        run("import_accounts", "--role-name", "KeygovRead")
    assert not Account.objects.exists()
