"""Validators for AWS identifiers, with messages that say what a good value looks like."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError

ACCOUNT_ID_RE = re.compile(r"^\d{12}$")
# arn:<partition>:iam::<12 digits>:role/<optional path/>name
ROLE_ARN_RE = re.compile(
    r"^arn:(?P<partition>aws|aws-cn|aws-us-gov):iam::(?P<account_id>\d{12}):role/"
    r"(?P<name>[\w+=,.@/-]{1,512})$"
)


def validate_account_id(value: str) -> None:
    if not ACCOUNT_ID_RE.match(value or ""):
        raise ValidationError(
            "%(value)s is not an AWS account id: it must be exactly 12 digits, e.g. 123456789012.",
            code="invalid_account_id",
            params={"value": repr(value)},
        )


def validate_role_arn(value: str) -> None:
    if not ROLE_ARN_RE.match(value or ""):
        raise ValidationError(
            "%(value)s is not an IAM role ARN: expected arn:aws:iam::123456789012:role/RoleName.",
            code="invalid_role_arn",
            params={"value": repr(value)},
        )


def role_arn_account(value: str) -> str | None:
    match = ROLE_ARN_RE.match(value or "")
    return match.group("account_id") if match else None
