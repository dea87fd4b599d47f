"""Validators for AWS identifiers, with messages that say what a good value looks like."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError

# Matched whole (fullmatch) and in ASCII: "$" would let a trailing newline through, and "\d" or
# "\w" would accept other scripts' digits and letters, which AWS does not.
ACCOUNT_ID_RE = re.compile(r"[0-9]{12}")
# arn:<partition>:iam::<12 digits>:role/<optional path/>name; a path segment is printable ASCII,
# a role name at most 64 of [A-Za-z0-9+=,.@_-].
ROLE_ARN_RE = re.compile(
    r"arn:(?P<partition>aws|aws-cn|aws-us-gov):iam::(?P<account_id>[0-9]{12}):role/"
    r"(?P<name>(?:[\x21-\x2e\x30-\x7e]+/)*[\w+=,.@-]{1,64})",
    re.ASCII,
)


def validate_account_id(value: str) -> None:
    if not ACCOUNT_ID_RE.fullmatch(value or ""):
        raise ValidationError(
            "%(value)s is not an AWS account id: it must be exactly 12 digits, e.g. 123456789012.",
            code="invalid_account_id",
            params={"value": repr(value)},
        )


def validate_role_arn(value: str) -> None:
    if not ROLE_ARN_RE.fullmatch(value or ""):
        raise ValidationError(
            "%(value)s is not an IAM role ARN: expected arn:aws:iam::123456789012:role/RoleName.",
            code="invalid_role_arn",
            params={"value": repr(value)},
        )


def role_arn_account(value: str) -> str | None:
    match = ROLE_ARN_RE.fullmatch(value or "")
    return match.group("account_id") if match else None
