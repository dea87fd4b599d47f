"""The IAM credential report: generate it, wait for it, fetch it, and parse it as AWS writes it.

AWS's report (unlike moto's) has a ``<root_account>`` row, ``N/A`` / ``no_information`` /
``not_supported`` placeholders and booleans in upper or lower case; the parser accepts all of them
and refuses anything else with an error that names the row and column.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from botocore.exceptions import ClientError

ROOT_USER = "<root_account>"
# Placeholders AWS writes where there is no value.
_EMPTY = {"n/a", "no_information", "not_supported", ""}
REQUIRED_COLUMNS = (
    "user",
    "arn",
    "user_creation_time",
    "password_enabled",
    "access_key_1_active",
    "access_key_1_last_rotated",
    "access_key_1_last_used_date",
    "access_key_1_last_used_region",
    "access_key_1_last_used_service",
    "access_key_2_active",
    "access_key_2_last_rotated",
    "access_key_2_last_used_date",
    "access_key_2_last_used_region",
    "access_key_2_last_used_service",
)


class CredentialReportError(Exception):
    """The report could not be obtained or does not read as a credential report."""


@dataclass(frozen=True)
class KeySlot:
    """One of the two access-key columns groups of a report row."""

    slot: int
    active: bool
    created: datetime  # access_key_N_last_rotated: the key's CreateDate
    last_used_at: datetime | None
    last_used_region: str
    last_used_service: str


@dataclass(frozen=True)
class ReportRow:
    user: str
    arn: str
    created: datetime | None  # the root row of some reports has no creation time
    password_enabled: bool
    slots: tuple[KeySlot, ...]

    @property
    def is_root(self) -> bool:
        return self.user == ROOT_USER


@dataclass(frozen=True)
class CredentialReport:
    generated_at: datetime | None
    rows: tuple[ReportRow, ...]


def _is_empty(value: str) -> bool:
    return value.strip().lower() in _EMPTY


def _bool(value: str, where: str) -> bool:
    v = value.strip().lower()
    if v == "true":
        return True
    if v in {"false", "not_supported", "n/a", "no_information"}:
        # Root's password_enabled is "not_supported": root always has a console password, but
        # keygov only uses the flag to tell humans from workloads among IAM users.
        return False
    raise CredentialReportError(f"{where}: expected true or false, found {value!r}")


def _time(value: str, where: str) -> datetime | None:
    if _is_empty(value):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise CredentialReportError(
            f"{where}: expected an ISO 8601 time, found {value!r}"
        ) from None
    if parsed.tzinfo is None:
        raise CredentialReportError(f"{where}: time {value!r} has no time zone")
    return parsed


def _text(value: str) -> str:
    return "" if _is_empty(value) else value.strip()


def _csv_rows(reader: csv.DictReader):
    try:
        yield from reader
    except csv.Error as exc:
        # DictReader only counts lines it read whole; its csv reader counts the failing one.
        raise CredentialReportError(
            f"line {reader.reader.line_num}: not readable as CSV: {exc}"
        ) from None


def parse_credential_report(content: bytes | str) -> tuple[ReportRow, ...]:
    """Parse the CSV content of GetCredentialReport."""
    if isinstance(content, bytes):
        try:
            content = content.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CredentialReportError(f"the credential report is not UTF-8 text: {exc}") from None
    reader = csv.DictReader(io.StringIO(content.lstrip("\ufeff")))
    try:
        header = reader.fieldnames or []
    except csv.Error as exc:
        # DictReader only counts lines it read whole; its csv reader counts the failing one.
        raise CredentialReportError(
            f"line {reader.reader.line_num}: not readable as CSV: {exc}"
        ) from None
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise CredentialReportError(
            "this is not an IAM credential report: missing column(s) " + ", ".join(missing)
        )
    rows = []
    for raw in _csv_rows(reader):
        # The physical line, as an editor shows it: blank lines are skipped but counted.
        line_no = reader.line_num
        if None in raw or any(v is None for v in raw.values()):
            raise CredentialReportError(
                f"line {line_no}: expected {len(header)} fields, found a different number"
            )

        def at(column: str, line_no: int = line_no) -> str:
            return f"line {line_no}, column {column}"

        slots = []
        for n in (1, 2):
            created = _time(raw[f"access_key_{n}_last_rotated"], at(f"access_key_{n}_last_rotated"))
            active = _bool(raw[f"access_key_{n}_active"], at(f"access_key_{n}_active"))
            if created is None:
                # No key in this slot.
                continue
            slots.append(
                KeySlot(
                    slot=n,
                    active=active,
                    created=created,
                    last_used_at=_time(
                        raw[f"access_key_{n}_last_used_date"], at(f"access_key_{n}_last_used_date")
                    ),
                    last_used_region=_text(raw[f"access_key_{n}_last_used_region"]),
                    last_used_service=_text(raw[f"access_key_{n}_last_used_service"]),
                )
            )
        user = raw["user"].strip()
        if not user:
            raise CredentialReportError(f"{at('user')}: empty user name")
        rows.append(
            ReportRow(
                user=user,
                arn=raw["arn"].strip(),
                created=_time(raw["user_creation_time"], at("user_creation_time")),
                password_enabled=_bool(raw["password_enabled"], at("password_enabled")),
                slots=tuple(slots),
            )
        )
    return tuple(rows)


def fetch_credential_report(
    iam,
    *,
    timeout: float = 300.0,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> CredentialReport:
    """Generate (or reuse) the account's credential report, wait until it is ready, and fetch it.

    AWS regenerates at most every 4 hours and otherwise hands back the last report, so a
    GenerateCredentialReport that answers COMPLETE costs one call.
    """
    deadline = monotonic() + timeout
    delay = 0.5

    def wait(why: str) -> None:
        nonlocal delay
        if monotonic() + delay > deadline:
            raise CredentialReportError(
                f"the credential report was not ready after {timeout:.0f} s ({why})"
            )
        sleep(delay)
        delay = min(delay * 2, 8.0)

    while True:
        state = iam.generate_credential_report().get("State", "")
        if state != "COMPLETE":
            # STARTED or INPROGRESS: AWS is still writing it.
            wait(f"state {state}")
            continue
        try:
            response = iam.get_credential_report()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in {"ReportInProgress", "ReportNotPresent", "ReportExpired"}:
                # In progress: wait; absent or expired: generating again starts a new one.
                wait(code)
                continue
            raise
        if response.get("ReportFormat", "text/csv") != "text/csv":
            raise CredentialReportError(
                f"unexpected report format {response.get('ReportFormat')!r}"
            )
        return CredentialReport(
            generated_at=response.get("GeneratedTime"),
            rows=parse_credential_report(response["Content"]),
        )
