"""Build AWS organisations in moto for the collection tests.

moto runs in this process (``moto_server`` is a ThreadedMotoServer), so its IAM backend objects
can be reached directly to do what the IAM API cannot: backdate a key's creation and give it a
last use.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import boto3
from botocore.awsrequest import AWSResponse
from moto.iam.models import AccessKeyLastUsed, iam_backends

from inventory.models import Account
from tests.conftest import clients_for_account

ROLE_NAME = "KeygovRead"
EXTERNAL_ID = "keygov-test"


def create_organization(session: boto3.Session, *names: str) -> dict[str, str]:
    """An organisation with one member account per name; returns {name: account id}."""
    org = session.client("organizations")
    org.create_organization(FeatureSet="ALL")
    ids = {}
    for name in names:
        status = org.create_account(AccountName=name, Email=f"{name}@example.com")
        ids[name] = status["CreateAccountStatus"]["AccountId"]
    return ids


def register_account(account_id: str, name: str, **fields) -> Account:
    """The keygov Account reading ``account_id`` through the organisation's read role."""
    defaults = {
        "name": name,
        "role_arn": f"arn:aws:iam::{account_id}:role/{ROLE_NAME}",
        "external_id": EXTERNAL_ID,
    }
    defaults.update(fields)
    return Account.objects.create(account_id=account_id, **defaults)


def iam_in(session: boto3.Session, account_id: str):
    """An IAM client acting inside ``account_id``."""
    return clients_for_account(session, account_id, role_name=ROLE_NAME)


def _naive_utc(ts: datetime) -> datetime:
    # moto keeps naive UTC datetimes and writes them with a literal "+00:00".
    return ts.astimezone(UTC).replace(tzinfo=None) if ts.tzinfo else ts


def moto_key(account_id: str, access_key_id: str):
    backend = iam_backends[account_id]["aws"]
    for user in backend.users.values():
        for key in user.access_keys:
            if key.access_key_id == access_key_id:
                return key
    raise LookupError(f"{access_key_id} is not a key of account {account_id} in moto")


def backdate_key(
    account_id: str,
    access_key_id: str,
    *,
    created: datetime | None = None,
    last_used: datetime | None = None,
    service: str = "s3",
    region: str = "eu-west-1",
) -> None:
    """Set a key's CreateDate and last use inside moto (the API has no way to do either)."""
    key = moto_key(account_id, access_key_id)
    if created is not None:
        key.create_date = _naive_utc(created)
    if last_used is not None:
        key.last_used = AccessKeyLastUsed(_naive_utc(last_used), service, region)


def create_user(iam, name: str, tags: dict[str, str] | None = None, keys: int = 0) -> list[str]:
    """Create a user with ``tags`` and ``keys`` access keys; returns the key ids."""
    kwargs = {"UserName": name}
    if tags:
        kwargs["Tags"] = [{"Key": k, "Value": v} for k, v in tags.items()]
    iam.create_user(**kwargs)
    return [iam.create_access_key(UserName=name)["AccessKey"]["AccessKeyId"] for _ in range(keys)]


class CallSpy:
    """Records every AWS operation made through clients created from the session afterwards
    (operations, not retries: botocore emits ``before-call`` once per call)."""

    def __init__(self, session: boto3.Session) -> None:
        self.operations: list[str] = []
        session.events.register("before-call", self)

    def __call__(self, model, **_) -> None:
        self.operations.append(model.name)

    def count(self, operation: str) -> int:
        return self.operations.count(operation)

    def reset(self) -> None:
        self.operations.clear()


def request_body(request) -> str:
    """The body of a botocore request as text (a query-protocol body may be str or bytes)."""
    body = request.body or b""
    return body.decode() if isinstance(body, bytes) else str(body)


def json_error_response(code: str, message: str, status: int = 400) -> AWSResponse:
    """An HTTP response carrying an AWS JSON-protocol error (Organizations, STS is query)."""
    body = json.dumps({"__type": code, "message": message}).encode()

    class _Raw:
        def stream(self, **_):
            yield body

    return AWSResponse(
        "https://organizations.us-east-1.amazonaws.com/",
        status,
        {"Content-Type": "application/x-amz-json-1.1"},
        _Raw(),
    )
