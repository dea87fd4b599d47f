"""Accounts: import an AWS Organization's accounts with the role keygov reads each through."""

from __future__ import annotations

from dataclasses import dataclass, field

import boto3
from django.core.exceptions import ValidationError
from django.db import transaction

from inventory.aws.connection import AccountTarget, connect
from inventory.aws.organizations import list_accounts
from inventory.models import Account
from inventory.services.collection import aws_settings
from inventory.validators import validate_role_arn


@dataclass
class ImportResult:
    created: list[Account]
    updated: list[Account]
    skipped: list[str]  # "<id> (<state>)" of accounts that are not active
    disabled: list[Account] = field(default_factory=list)  # known, no longer active: not collected


def import_accounts(
    role_name: str,
    *,
    external_id: str | None = None,
    session: boto3.Session | None = None,
) -> ImportResult:
    """Create or update an Account for every ACTIVE account of the organisation, and stop
    collecting known accounts that are no longer active (suspended, closing): their reads
    would only fail. ``external_id`` None keeps each known account's ExternalId.

    The caller's credentials must be those of the management account (or a delegated
    administrator): ListAccounts is called with the default credentials, every page.
    """
    # IAM writes paths with slashes around them (/audit/): the ARN has none before the path.
    probe = f"arn:aws:iam::123456789012:role/{role_name.strip('/')}"
    try:
        validate_role_arn(probe)
    except ValidationError:
        raise ValidationError(f"{role_name!r} is not a valid IAM role name (path/name).") from None

    conn = connect(AccountTarget(account_id=""), aws_settings(), session=session)
    org_accounts = list_accounts(conn)

    result = ImportResult(created=[], updated=[], skipped=[])
    with transaction.atomic():
        for org in org_accounts:
            if org.status.upper() != "ACTIVE":
                result.skipped.append(f"{org.account_id} ({org.status.lower()})")
                gone = Account.objects.filter(account_id=org.account_id, enabled=True).first()
                if gone is not None:
                    gone.enabled = False
                    gone.save(update_fields=["enabled", "updated_at"])
                    result.disabled.append(gone)
                continue
            role_arn = f"arn:{org.partition}:iam::{org.account_id}:role/{role_name.strip('/')}"
            account, created = Account.objects.get_or_create(
                account_id=org.account_id,
                defaults={"name": org.name, "role_arn": role_arn, "external_id": external_id or ""},
            )
            if not created:
                account.name = org.name
                account.role_arn = role_arn
                if external_id is not None:
                    account.external_id = external_id
            account.full_clean()
            account.save()
            (result.created if created else result.updated).append(account)
    return result
