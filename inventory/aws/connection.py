"""boto3 clients for one account, with explicit retries and a count of the API calls made."""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config


@dataclass(frozen=True)
class AccountTarget:
    """How to reach one account: assume ``role_arn`` (with ``external_id``), or use the default
    credentials when ``role_arn`` is empty."""

    account_id: str
    role_arn: str = ""
    external_id: str = ""


@dataclass(frozen=True)
class AwsSettings:
    region: str = "us-east-1"
    max_attempts: int = 10
    concurrency: int = 4
    report_timeout: float = 300.0
    session_name: str = "keygov"

    def client_config(self) -> Config:
        # "standard" retries back off with jitter on throttling and transient errors; the attempt
        # count is explicit so that a throttled sweep slows down instead of failing.
        return Config(
            region_name=self.region,
            retries={"mode": "standard", "total_max_attempts": self.max_attempts},
            connect_timeout=5,
            read_timeout=60,
            max_pool_connections=max(10, self.concurrency * 2),
        )


class CallCounter:
    """Counts API calls (operations, not retries) made by every client it is attached to."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls = 0
        self.by_operation: dict[str, int] = {}

    def __call__(self, model: Any, **_: Any) -> None:
        with self._lock:
            self.calls += 1
            self.by_operation[model.name] = self.by_operation.get(model.name, 0) + 1


_SESSION_LOCK = threading.Lock()


@functools.cache
def default_session() -> boto3.Session:
    """One boto3 session per process: loading botocore's models costs ~0.3 s per new session,
    and the default credential chain (instance role, SSO...) is resolved and refreshed once."""
    return boto3.Session()


@dataclass
class AwsConnection:
    """Clients for one account, all created from one boto3 session so that event hooks registered
    on the session (tests inject faults that way) apply to every client."""

    session: boto3.Session
    settings: AwsSettings
    # Temporary credentials from AssumeRole: never printed (repr=False), never stored.
    credentials: dict[str, str] = field(default_factory=dict, repr=False)
    counter: CallCounter = field(default_factory=CallCounter)
    _clients: dict[str, Any] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        if service not in self._clients:
            # Clients are thread-safe; creating them from a shared session is not.
            with _SESSION_LOCK:
                client = self.session.client(
                    service, config=self.settings.client_config(), **self.credentials
                )
            client.meta.events.register("before-call", self.counter)
            self._clients[service] = client
        return self._clients[service]

    @property
    def api_calls(self) -> int:
        return self.counter.calls


def connect(
    target: AccountTarget,
    settings: AwsSettings,
    session: boto3.Session | None = None,
) -> AwsConnection:
    """Connect to an account: AssumeRole (with the ExternalId) or the default credentials."""
    session = session or default_session()
    base = AwsConnection(session=session, settings=settings)
    if not target.role_arn:
        return base
    params = {
        "RoleArn": target.role_arn,
        "RoleSessionName": settings.session_name,
        "DurationSeconds": 3600,
    }
    if target.external_id:
        params["ExternalId"] = target.external_id
    creds = base.client("sts").assume_role(**params)["Credentials"]
    return AwsConnection(
        session=session,
        settings=settings,
        credentials={
            "aws_access_key_id": creds["AccessKeyId"],
            "aws_secret_access_key": creds["SecretAccessKey"],
            "aws_session_token": creds["SessionToken"],
        },
        # The AssumeRole call counts towards this account's collection.
        counter=base.counter,
    )
