"""Turn AWS and botocore exceptions into one line a person can act on."""

from __future__ import annotations

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
)

from inventory.aws.credential_report import CredentialReportError

# Errors the collector expects from AWS; anything else is a bug and is re-raised.
AWS_ERRORS = (ClientError, BotoCoreError, CredentialReportError)


def describe_aws_error(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code", "Unknown")
        message = error.get("Message", "")
        hint = ""
        if code in {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"}:
            hint = (
                " Check that the role exists in the account, that its trust policy names keygov's "
                "principal and ExternalId, and that it allows the actions listed in the README."
            )
        return f"{exc.operation_name} failed: {code}: {message}{hint}".strip()
    if isinstance(exc, NoCredentialsError):
        return (
            "No AWS credentials found: set them the usual boto3 way (environment, profile, role)."
        )
    if isinstance(exc, EndpointConnectionError):
        return f"Cannot reach AWS: {exc}"
    if isinstance(exc, CredentialReportError):
        return f"Credential report: {exc}"
    return f"{type(exc).__name__}: {exc}"
