"""Shared fixtures: the moto emulator in server mode, and fault injection through botocore hooks.

Integration tests run against Postgres and Redis (see the README's test command); the AWS side is
moto in server mode on a free local port, reached through boto3's standard AWS_ENDPOINT_URL.
"""

from __future__ import annotations

import os
import socket
import urllib.request

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from moto.server import ThreadedMotoServer

MOTO_MANAGEMENT_ACCOUNT = "123456789012"  # moto's default account


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def moto_server():
    """moto in server mode for the whole session; every test starts from an empty state."""
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in _AWS_ENV}
    os.environ.update(
        AWS_ENDPOINT_URL=url,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",  # moto's dummy credentials
        AWS_DEFAULT_REGION="us-east-1",
    )
    yield url
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


_AWS_ENV = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")


@pytest.fixture
def aws(moto_server):
    """An empty emulator and a boto3 session pointed at it."""
    # The local emulator's reset endpoint (http:// on 127.0.0.1 only).
    request = urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST")  # noqa: S310
    urllib.request.urlopen(request).close()  # noqa: S310
    return boto3.Session(region_name="us-east-1")


def clients_for_account(session: boto3.Session, account_id: str, role_name: str = "KeygovRead"):
    """An IAM client acting inside ``account_id`` (moto maps assumed-role credentials to it)."""
    creds = session.client("sts").assume_role(
        RoleArn=f"arn:aws:iam::{account_id}:role/{role_name}", RoleSessionName="test-setup"
    )["Credentials"]
    return session.client(
        "iam",
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )


def aws_error_response(code: str, message: str, status: int = 400) -> AWSResponse:
    """An HTTP response carrying an AWS query-protocol error (IAM, STS)."""
    body = (
        f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code>"
        f"<Message>{message}</Message></Error><RequestId>test</RequestId></ErrorResponse>"
    ).encode()

    class _Raw:
        def __init__(self, data: bytes) -> None:
            self._data = data

        def stream(self, **_):
            yield self._data

    return AWSResponse("https://iam.amazonaws.com/", status, {}, _Raw(body))


def inject_error(
    session: boto3.Session,
    event: str,
    code: str,
    message: str = "injected",
    *,
    times: int | None = None,
    status: int = 400,
    when=None,
):
    """Make calls matching ``event`` (e.g. ``"before-send.iam.ListAccessKeys"``) fail with
    ``code``, ``times`` times (None: always), for requests where ``when(request)`` holds.

    Hooks on ``before-send`` short-circuit the HTTP request but still go through botocore's
    parsing and retry logic, as a real throttled response would. Returns a dict with a count.
    """
    state = {"injected": 0}

    def hook(request, **_):
        if times is not None and state["injected"] >= times:
            return None
        if when is not None and not when(request):
            return None
        state["injected"] += 1
        return aws_error_response(code, message, status)

    session.events.register(event, hook)
    return state


@pytest.fixture
def aws_everywhere(aws, monkeypatch):
    """``aws``, also used by the code paths that open their own boto3 session (tasks, commands),
    so that fault-injection and call-counting hooks registered on it apply there too."""
    from inventory.aws import connection
    from inventory.services import accounts, collection

    real_connect = connection.connect

    def connect(target, settings, session=None):
        return real_connect(target, settings, session=session or aws)

    monkeypatch.setattr(collection, "connect", connect)
    monkeypatch.setattr(accounts, "connect", connect)
    return aws
