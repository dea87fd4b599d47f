"""Create an approved access key and put its secret in AWS Secrets Manager, in the key's account.

boto3 only: no ORM. The secret access key lives in one local variable from the CreateAccessKey
answer to the CreateSecret call and is never returned, logged or put in an exception message:
callers get the AccessKeyId and the secret's ARN. botocore logs request and response bodies at
DEBUG; while a key is being provisioned, a filter on the AWS libraries' loggers withholds any
record that mentions a secret access key or contains the secret itself.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from inventory.aws.connection import AwsConnection
from inventory.aws.errors import describe_aws_error

# Secrets Manager names: letters, digits and /_+=.@- (IAM user names may also hold a comma).
_SECRET_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9/_+=.@-]")
SECRET_NAME_MAX = 512
WITHHELD = "[log record withheld by keygov: it contained a secret access key]"
REDACTED = "[redacted]"


@dataclass(frozen=True)
class CreatedKey:
    """What keygov keeps of a created key: its id and where its secret is."""

    access_key_id: str
    secret_arn: str
    secret_name: str


class ProvisioningError(Exception):
    """Creating the key or storing its secret failed. The message is safe to store and show
    (AWS error code and message; never the secret). ``orphan_key_id`` names a key that was
    created but could not be deleted again."""

    def __init__(self, message: str, *, orphan_key_id: str = "") -> None:
        super().__init__(message)
        self.orphan_key_id = orphan_key_id


def secret_name(template: str, **values: str) -> str:
    """The secret's name from ``KEYGOV_SECRET_NAME_TEMPLATE`` (placeholders ``{account_id}``,
    ``{user_name}``, ``{request_id}``), with characters Secrets Manager refuses replaced."""
    name = template.format(**values)
    return _SECRET_NAME_UNSAFE.sub("-", name)[:SECRET_NAME_MAX]


# ------------------------------------------------------------------------------------------
# Keeping the secret out of the logs.

_IN_FLIGHT: set[str] = set()
_IN_FLIGHT_LOCK = threading.Lock()
_GUARDS = [0]  # provisionings in progress in this process
# What a body holding the secret looks like (IAM's XML answer, Secrets Manager's JSON request).
_SECRET_FIELDS = re.compile(r"SecretAccessKey|SecretString")
# The libraries that log HTTP bodies at DEBUG (botocore: "Response body", "Making request...").
_LOGGER_PREFIXES = ("botocore", "boto3", "urllib3", "s3transfer")


class _SecretFilter(logging.Filter):
    """Withhold a record that contains a secret currently being provisioned."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _GUARDS[0]:
            return True
        try:
            text = record.getMessage()
        except Exception:  # a record whose arguments do not format: judge its raw text
            text = f"{record.msg} {record.args}"
        text += record.exc_text or ""
        with _IN_FLIGHT_LOCK:
            leaked = bool(_SECRET_FIELDS.search(text)) or any(s in text for s in _IN_FLIGHT)
        if leaked:
            record.msg, record.args = WITHHELD, ()
            record.exc_info = record.exc_text = None
        return True


_FILTER = _SecretFilter()


def _guard_loggers() -> None:
    # A logger's filters apply to the records created on that very logger, so every logger of
    # the AWS libraries gets the filter (idempotent: addFilter ignores a filter already there).
    names = [
        name
        for name in list(logging.root.manager.loggerDict)
        if name.split(".", 1)[0] in _LOGGER_PREFIXES
    ]
    for name in {*names, *_LOGGER_PREFIXES}:
        logging.getLogger(name).addFilter(_FILTER)


@contextmanager
def _guarded() -> Iterator[None]:
    """While a key is provisioned, log records that mention a secret are withheld."""
    _guard_loggers()
    with _IN_FLIGHT_LOCK:
        _GUARDS[0] += 1
    try:
        yield
    finally:
        with _IN_FLIGHT_LOCK:
            _GUARDS[0] -= 1


@contextmanager
def _secret_in_flight(secret: str) -> Iterator[None]:
    with _IN_FLIGHT_LOCK:
        _IN_FLIGHT.add(secret)
    try:
        yield
    finally:
        with _IN_FLIGHT_LOCK:
            _IN_FLIGHT.discard(secret)


def _safe(text: str, secret: str) -> str:
    return text.replace(secret, REDACTED) if secret else text


# ------------------------------------------------------------------------------------------


def create_key_with_secret(
    conn: AwsConnection,
    *,
    user_name: str,
    name: str,
    tags: Mapping[str, str],
    description: str = "",
) -> CreatedKey:
    """CreateAccessKey for ``user_name``, then CreateSecret ``name`` (tagged with ``tags``)
    holding ``{"AccessKeyId": ..., "SecretAccessKey": ...}``. If the secret cannot be stored the
    key is deleted again (DeleteAccessKey), so no key exists without its secret; if that fails
    too, the error says so and names the key. Raises :class:`ProvisioningError`."""
    with _guarded():
        return _create_key_with_secret(
            conn, user_name=user_name, name=name, tags=tags, description=description
        )


def _create_key_with_secret(
    conn: AwsConnection,
    *,
    user_name: str,
    name: str,
    tags: Mapping[str, str],
    description: str = "",
) -> CreatedKey:
    iam = conn.client("iam")
    secrets = conn.client("secretsmanager")
    try:
        created = iam.create_access_key(UserName=user_name)["AccessKey"]
    except Exception as exc:
        raise ProvisioningError(describe_aws_error(exc)) from None
    key_id = created["AccessKeyId"]
    secret = created.pop("SecretAccessKey")
    del created
    error = ""
    with _secret_in_flight(secret):
        try:
            arn = secrets.create_secret(
                Name=name,
                Description=description,
                SecretString=json.dumps({"AccessKeyId": key_id, "SecretAccessKey": secret}),
                Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
            )["ARN"]
        except Exception as exc:
            # A parameter-validation error may quote the value it refused: scrub it.
            error = _safe(describe_aws_error(exc), secret)
        finally:
            secret = ""  # nosec B105  # drops the secret, sets none
    if not error:
        return CreatedKey(access_key_id=key_id, secret_arn=arn, secret_name=name)
    try:
        iam.delete_access_key(UserName=user_name, AccessKeyId=key_id)
    except Exception as exc:
        raise ProvisioningError(
            f"{error}. The new key {key_id} could not be deleted again "
            f"({describe_aws_error(exc)}): delete it in IAM by hand.",
            orphan_key_id=key_id,
        ) from None
    raise ProvisioningError(f"{error}. The new key {key_id} was deleted again.") from None
