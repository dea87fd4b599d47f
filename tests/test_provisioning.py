"""Fulfilment of approved key requests against moto in server mode: the key is created through
the account's write role, its secret goes to Secrets Manager and nowhere else (database, logs,
task result, page), and a failure leaves no key behind."""

from __future__ import annotations

import json
import logging
from datetime import date, timedelta

import pytest
from botocore.awsrequest import AWSResponse
from django.db import connection
from django.urls import reverse

from inventory import tasks
from inventory.models import KeyRequest, KeyRequestStatus
from inventory.services import key_requests
from tests.conftest import inject_error
from tests.gov_factories import AccountFactory, IamUserFactory, person

pytestmark = pytest.mark.django_db

ACCOUNT = "210987654321"
WRITE_ROLE = f"arn:aws:iam::{ACCOUNT}:role/KeygovWrite"


def clients(session, account_id: str = ACCOUNT):
    """IAM and Secrets Manager clients acting inside ``account_id`` (moto maps assumed-role
    credentials to that account)."""
    creds = session.client("sts").assume_role(
        RoleArn=f"arn:aws:iam::{account_id}:role/test-setup", RoleSessionName="test-setup"
    )["Credentials"]
    kwargs = {
        "aws_access_key_id": creds["AccessKeyId"],
        "aws_secret_access_key": creds["SecretAccessKey"],
        "aws_session_token": creds["SessionToken"],
    }
    return session.client("iam", **kwargs), session.client("secretsmanager", **kwargs)


@pytest.fixture
def aws_for_requests(aws, monkeypatch):
    """The fulfilment (service and task) connects through the test's boto3 session, so that
    errors injected on it apply."""
    real_connect = key_requests.connect

    def connect(target, settings, session=None):
        return real_connect(target, settings, session=session or aws)

    monkeypatch.setattr(key_requests, "connect", connect)
    return aws


@pytest.fixture
def approved(aws_for_requests):
    """An approved request for IAM user ``app-deployer`` of an account with a write role; the
    user exists in (emulated) AWS."""
    iam, _ = clients(aws_for_requests)
    iam.create_user(UserName="app-deployer")
    account = AccountFactory(account_id=ACCOUNT, write_role_arn=WRITE_ROLE)
    user = IamUserFactory(account=account, name="app-deployer")
    owner = person("olive", "owner", "olive@example.com")
    approver = person("abe", "approver", "abe@example.com")
    req = key_requests.file_request(
        requested_by=owner,
        account=account,
        iam_user=user,
        justification="CI pipeline of a vendor tool",
        why_not_role="The vendor's SaaS runs outside AWS and cannot assume roles",
        owner_email="olive@example.com",
        review_on=date.today() + timedelta(days=30),
    )
    key_requests.decide_request(req.pk, approver=approver, approve=True, comment="ok, 30 days")
    req.refresh_from_db()
    assert req.status == KeyRequestStatus.APPROVED
    return req


def every_text_in_database() -> str:
    """Every row of every table, as text (a pg_dump of the test database, in short)."""
    chunks = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f'SELECT * FROM "{table}"')  # noqa: S608 - table names from the catalogue
            chunks.extend(repr(row) for row in cursor.fetchall())
    return "\n".join(chunks)


def test_it_creates_the_key_and_stores_its_secret_only_in_secrets_manager(
    approved, aws_for_requests, caplog, client
):
    """GIVEN an approved request of an account with a write role, and AWS libraries logging at
    DEBUG
    WHEN the fulfilment task runs
    THEN the key exists in IAM, the secret is in Secrets Manager (tagged, named from the
    template), the request records the key id and the secret's ARN, and the secret value is
    in no table, log record, task result or rendered page."""
    caplog.set_level(logging.DEBUG)
    for name in ("botocore", "boto3", "urllib3"):
        caplog.set_level(logging.DEBUG, logger=name)

    result = tasks.fulfil_key_request(approved.pk)
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    # The scan below can find what it looks for: botocore logged the bodies.
    assert "Response body" in logged

    approved.refresh_from_db()
    assert approved.status == KeyRequestStatus.FULFILLED
    assert approved.error == ""
    iam, secrets = clients(aws_for_requests)
    keys = iam.list_access_keys(UserName="app-deployer")["AccessKeyMetadata"]
    assert [k["AccessKeyId"] for k in keys] == [approved.created_access_key_id]
    secret = secrets.describe_secret(SecretId=approved.secret_arn)
    assert secret["Name"] == f"keygov/{ACCOUNT}/app-deployer/{approved.pk}"
    tags = {t["Key"]: t["Value"] for t in secret["Tags"]}
    assert tags["keygov:request-id"] == str(approved.pk)
    assert tags["keygov:owner"] == "olive@example.com"
    value = json.loads(secrets.get_secret_value(SecretId=approved.secret_arn)["SecretString"])
    assert value["AccessKeyId"] == approved.created_access_key_id
    secret_key = value["SecretAccessKey"]
    assert len(secret_key) >= 20

    # The scan finds what is there (the key id), and not the secret.
    assert approved.created_access_key_id in every_text_in_database()
    assert secret_key not in every_text_in_database()
    assert approved.created_access_key_id in logged
    assert secret_key not in logged
    assert secret_key not in result and approved.created_access_key_id in result
    client.force_login(person("vera", "viewer"))
    page = client.get(reverse("inventory:keyrequest_detail", args=[approved.pk]))
    assert page.status_code == 200
    assert approved.secret_arn in page.content.decode()
    assert secret_key not in page.content.decode()


def test_it_deletes_the_key_when_the_secret_cannot_be_stored(approved, aws_for_requests):
    """GIVEN Secrets Manager refuses CreateSecret
    WHEN the fulfilment runs
    THEN the request is failed with the AWS error and the new key is deleted again."""
    inject_error(
        aws_for_requests,
        "before-send.secretsmanager.CreateSecret",
        "AccessDeniedException",
        "not authorised to perform secretsmanager:CreateSecret",
    )

    result = key_requests.fulfil_request(approved.pk)

    approved.refresh_from_db()
    assert approved.status == KeyRequestStatus.FAILED
    # conftest's injected answer is in the XML (query) protocol that Secrets Manager does not
    # speak, so botocore reports it raw; test_it_reports_the_aws_error_code_and_message shows
    # a real JSON error.
    assert approved.error.startswith("CreateSecret failed:")
    assert "AccessDeniedException" in approved.error
    assert "not authorised to perform secretsmanager:CreateSecret" in approved.error
    assert "was deleted again" in approved.error
    assert approved.secret_arn == "" and approved.created_access_key_id == ""
    iam, _ = clients(aws_for_requests)
    assert iam.list_access_keys(UserName="app-deployer")["AccessKeyMetadata"] == []
    assert "failed" in result
    assert list(approved.account.key_requests.values_list("status", flat=True)) == [
        KeyRequestStatus.FAILED
    ]


def test_it_says_so_when_the_orphan_key_cannot_be_deleted_either(approved, aws_for_requests):
    """GIVEN CreateSecret and DeleteAccessKey both fail
    WHEN the fulfilment runs
    THEN the error names the key left in IAM, for a person to delete."""
    inject_error(aws_for_requests, "before-send.secretsmanager.CreateSecret", "InternalFailure")
    inject_error(aws_for_requests, "before-send.iam.DeleteAccessKey", "AccessDenied", "no")

    key_requests.fulfil_request(approved.pk)

    approved.refresh_from_db()
    iam, _ = clients(aws_for_requests)
    (left,) = iam.list_access_keys(UserName="app-deployer")["AccessKeyMetadata"]
    assert approved.status == KeyRequestStatus.FAILED
    assert f"The new key {left['AccessKeyId']} could not be deleted again" in approved.error
    assert "DeleteAccessKey failed: AccessDenied" in approved.error


def test_it_fails_readably_when_the_write_role_cannot_be_assumed(approved, aws_for_requests):
    inject_error(aws_for_requests, "before-send.sts.AssumeRole", "AccessDenied", "not trusted")

    key_requests.fulfil_request(approved.pk)

    approved.refresh_from_db()
    assert approved.status == KeyRequestStatus.FAILED
    assert approved.error.startswith("AssumeRole failed: AccessDenied: not trusted")


def test_it_does_nothing_when_the_task_is_delivered_again(approved, aws_for_requests):
    """GIVEN a fulfilled request
    WHEN its task is delivered again
    THEN no second key is created and nothing changes."""
    tasks.fulfil_key_request(approved.pk)
    approved.refresh_from_db()
    before = (approved.status, approved.created_access_key_id, approved.secret_arn)

    again = tasks.fulfil_key_request(approved.pk)

    approved.refresh_from_db()
    assert (approved.status, approved.created_access_key_id, approved.secret_arn) == before
    assert "nothing to do" in again
    iam, _ = clients(aws_for_requests)
    assert len(iam.list_access_keys(UserName="app-deployer")["AccessKeyMetadata"]) == 1


def test_it_leaves_a_failed_request_alone_when_the_task_comes_back(approved, aws_for_requests):
    inject_error(aws_for_requests, "before-send.iam.CreateAccessKey", "LimitExceeded", "2 keys")
    tasks.fulfil_key_request(approved.pk)
    approved.refresh_from_db()
    assert approved.status == KeyRequestStatus.FAILED
    error = approved.error

    assert "nothing to do" in tasks.fulfil_key_request(approved.pk)

    approved.refresh_from_db()
    assert (approved.status, approved.error) == (KeyRequestStatus.FAILED, error)


def test_it_never_runs_twice_while_a_fulfilment_is_in_progress(approved, aws_for_requests):
    """GIVEN another worker claimed the request a minute ago
    WHEN the task runs
    THEN it stops without calling AWS."""
    from django.utils import timezone

    KeyRequest.objects.filter(pk=approved.pk).update(fulfilment_started_at=timezone.now())

    assert "already being fulfilled" in key_requests.fulfil_request(approved.pk)

    iam, _ = clients(aws_for_requests)
    assert iam.list_access_keys(UserName="app-deployer")["AccessKeyMetadata"] == []


def test_it_marks_an_interrupted_fulfilment_failed_instead_of_creating_a_second_key(
    approved, aws_for_requests
):
    from django.utils import timezone

    started = timezone.now() - key_requests.FULFILMENT_LEASE * 2
    KeyRequest.objects.filter(pk=approved.pk).update(fulfilment_started_at=started)

    key_requests.fulfil_request(approved.pk)

    approved.refresh_from_db()
    assert approved.status == KeyRequestStatus.FAILED
    assert "interrupted" in approved.error
    iam, _ = clients(aws_for_requests)
    assert iam.list_access_keys(UserName="app-deployer")["AccessKeyMetadata"] == []


def test_it_names_the_secret_from_the_template_without_characters_aws_refuses(settings):
    from inventory.aws.provisioning import secret_name

    name = secret_name(
        "keygov/{account_id}/{user_name}/{request_id}",
        account_id=ACCOUNT,
        user_name="svc,deploy",
        request_id="7",
    )
    assert name == f"keygov/{ACCOUNT}/svc-deploy/7"


def json_error(code: str, message: str, status: int = 400) -> AWSResponse:
    """An HTTP response carrying an AWS JSON-protocol error (Secrets Manager's)."""
    body = json.dumps({"__type": code, "message": message}).encode()

    class _Raw:
        def stream(self, **_):
            yield body

    return AWSResponse("https://secretsmanager.amazonaws.com/", status, {}, _Raw())


def test_it_reports_the_aws_error_code_and_message(approved, aws_for_requests):
    """GIVEN Secrets Manager refuses CreateSecret (its KMS key), answering as AWS does (JSON)
    WHEN the fulfilment runs
    THEN the request shows the operation, code and message, and no key is left."""
    aws_for_requests.events.register(
        "before-send.secretsmanager.CreateSecret",
        lambda **_: json_error("EncryptionFailure", "the KMS key is disabled"),
    )

    key_requests.fulfil_request(approved.pk)

    approved.refresh_from_db()
    assert approved.status == KeyRequestStatus.FAILED
    assert approved.error.startswith(
        "CreateSecret failed: EncryptionFailure: the KMS key is disabled. The new key AKIA"
    )
    iam, _ = clients(aws_for_requests)
    assert iam.list_access_keys(UserName="app-deployer")["AccessKeyMetadata"] == []


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("keygov/{account}/{request_id}", "is not a valid template"),
        ("keygov/{account_id}/{user_name}", "must contain {request_id}"),
    ],
)
def test_it_refuses_a_secret_name_template_at_start_up(tmp_path, template, message):
    from tests.test_settings import PRINT_SETTINGS, start

    result = start(tmp_path, "-c", PRINT_SETTINGS, KEYGOV_SECRET_NAME_TEMPLATE=template)

    assert result.returncode != 0
    assert "KEYGOV_SECRET_NAME_TEMPLATE" in result.stderr and message in result.stderr
