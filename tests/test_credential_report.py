"""The credential report: parsed exactly as AWS (and moto) write it, refused clearly when garbled,
and fetched through generate → poll with backoff → get, without real sleeping."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from inventory.aws.credential_report import (
    CredentialReportError,
    fetch_credential_report,
    parse_credential_report,
)

SAMPLES = Path(__file__).parent / "samples"
AWS_REPORT = (SAMPLES / "credential_report_aws.csv").read_bytes()
MOTO_REPORT = (SAMPLES / "credential_report_moto.csv").read_bytes()
HEADER = AWS_REPORT.decode().splitlines()[0]
ALICE = AWS_REPORT.decode().splitlines()[2]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def by_user(rows):
    return {row.user: row for row in rows}


def report(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def with_field(line: str, column: str, value: str) -> str:
    fields = line.split(",")
    fields[HEADER.split(",").index(column)] = value
    return ",".join(fields)


# --- parsing what AWS writes -------------------------------------------------------------------


def test_it_reads_every_row_of_an_aws_report():
    rows = parse_credential_report(AWS_REPORT)

    assert [row.user for row in rows] == [
        "<root_account>",
        "alice",
        "build-bot",
        "bob",
        "legacy-etl",
    ]


def test_it_reads_the_root_row_with_its_placeholders():
    root = by_user(parse_credential_report(AWS_REPORT))["<root_account>"]

    assert root.is_root
    assert root.arn == "arn:aws:iam::111122223333:root"
    assert root.created == utc(2015, 1, 21, 19, 51, 53)
    # "not_supported" is not a password: root is not told apart from workloads by this flag.
    assert root.password_enabled is False
    (slot,) = root.slots
    assert slot.slot == 1
    assert slot.active is True
    assert slot.created == utc(2016, 3, 1, 9, 10, 11)
    assert slot.last_used_at == utc(2019, 7, 2, 11, 0, 0)
    assert (slot.last_used_region, slot.last_used_service) == ("us-east-1", "iam")


def test_it_reads_a_user_with_two_keys_one_inactive_in_upper_case():
    alice = by_user(parse_credential_report(AWS_REPORT))["alice"]

    assert not alice.is_root
    assert alice.password_enabled is True  # "TRUE"
    first, second = alice.slots
    assert (first.slot, first.active, first.created) == (1, True, utc(2023, 2, 14, 9, 30))
    assert first.last_used_at == utc(2024, 11, 30, 17, 4)
    assert (first.last_used_region, first.last_used_service) == ("eu-west-1", "s3")
    assert (second.slot, second.active, second.created) == (2, False, utc(2021, 6, 1, 12))
    assert second.last_used_at == utc(2022, 1, 10, 6, 15)
    assert (second.last_used_region, second.last_used_service) == ("us-east-1", "ec2")


def test_it_reads_a_never_used_key_as_having_no_last_use():
    bot = by_user(parse_credential_report(AWS_REPORT))["build-bot"]

    assert bot.password_enabled is False
    assert bot.arn == "arn:aws:iam::111122223333:user/service/build-bot"
    (slot,) = bot.slots
    assert slot.active is True
    assert slot.created == utc(2024, 8, 1, 8, 0, 5)
    assert slot.last_used_at is None
    assert slot.last_used_region == ""  # "N/A", not a region called "N/A"
    assert slot.last_used_service == ""


def test_it_gives_a_user_without_keys_no_slots():
    bob = by_user(parse_credential_report(AWS_REPORT))["bob"]

    assert bob.password_enabled is True
    assert bob.slots == ()


def test_it_keeps_the_slot_number_of_a_key_in_the_second_slot_only():
    etl = by_user(parse_credential_report(AWS_REPORT))["legacy-etl"]

    assert etl.password_enabled is False  # "False"
    (slot,) = etl.slots
    assert (slot.slot, slot.active) == (2, True)  # "True"
    assert slot.created == utc(2019, 12, 31, 23, 59, 59)
    assert (slot.last_used_region, slot.last_used_service) == ("us-west-2", "sts")


def test_it_reads_a_report_given_as_text_with_crlf_and_a_byte_order_mark():
    text = "\ufeff" + AWS_REPORT.decode().replace("\n", "\r\n")

    assert parse_credential_report(text) == parse_credential_report(AWS_REPORT)


def test_it_reads_a_report_with_no_users():
    assert parse_credential_report(report(HEADER)) == ()


def test_it_reads_moto_reports():
    rows = by_user(parse_credential_report(MOTO_REPORT))

    assert set(rows) == {"build-bot", "carol", "nokeys"}  # moto writes no root row
    assert rows["carol"].password_enabled is True
    assert [s.active for s in rows["carol"].slots] == [True, False]
    (slot,) = rows["build-bot"].slots
    # moto writes "not_supported" where AWS writes a region and a service.
    assert (slot.last_used_region, slot.last_used_service, slot.last_used_at) == ("", "", None)
    assert rows["nokeys"].slots == ()


def test_it_reads_the_report_moto_writes_today(monkeypatch):
    """GIVEN users made in moto (in-process) WHEN moto writes its report THEN it parses: the
    stored sample above would not notice a change in moto's format."""
    from moto import mock_aws

    # In-process moto only intercepts AWS's own endpoints; the emulator fixture may have set one.
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        iam = boto3.client(
            "iam",
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        iam.create_user(UserName="dora")
        iam.create_access_key(UserName="dora")
        iam.generate_credential_report()
        content = iam.get_credential_report()["Content"]

    (row,) = parse_credential_report(content)
    assert row.user == "dora"
    assert len(row.slots) == 1


# --- refusing what is not a credential report --------------------------------------------------


def test_it_refuses_text_that_is_not_csv():
    with pytest.raises(CredentialReportError, match="not an IAM credential report") as exc:
        parse_credential_report(b"<html><body>503 Service Unavailable</body></html>\n")
    assert "missing column(s) user, arn" in str(exc.value)


def test_it_refuses_an_empty_report():
    with pytest.raises(CredentialReportError, match="missing column"):
        parse_credential_report(b"")


def test_it_names_the_missing_columns():
    header = HEADER.replace(",access_key_2_last_used_region", "")

    with pytest.raises(CredentialReportError) as exc:
        parse_credential_report(report(header))

    assert str(exc.value).endswith("missing column(s) access_key_2_last_used_region")


@pytest.mark.parametrize("line", [ALICE + ",extra", ALICE.rsplit(",", 1)[0]])
def test_it_names_the_line_with_a_wrong_number_of_fields(line):
    content = report(HEADER, ALICE, line)

    with pytest.raises(CredentialReportError, match=r"^line 3: expected 22 fields"):
        parse_credential_report(content)


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("access_key_1_last_rotated", "2023-13-45T09:30:00+00:00", "expected an ISO 8601 time"),
        ("access_key_2_last_used_date", "yesterday", "expected an ISO 8601 time"),
        ("user_creation_time", "2018-05-01T10:00:00", "has no time zone"),
        ("password_enabled", "yes", "expected true or false, found 'yes'"),
        ("access_key_1_active", "1", "expected true or false, found '1'"),
    ],
)
def test_it_names_the_line_and_column_of_a_bad_value(column, value, message):
    content = report(HEADER, ALICE, with_field(ALICE, column, value))

    with pytest.raises(CredentialReportError) as exc:
        parse_credential_report(content)

    assert str(exc.value).startswith(f"line 3, column {column}: ")
    assert message in str(exc.value)
    assert value in str(exc.value)


def test_it_names_the_line_a_person_sees_after_a_blank_line():
    content = report(HEADER, ALICE, "", with_field(ALICE, "password_enabled", "maybe"))

    with pytest.raises(CredentialReportError, match=r"^line 4, column password_enabled"):
        parse_credential_report(content)


def test_it_refuses_a_row_without_a_user_name():
    content = report(HEADER, with_field(ALICE, "user", ""))

    with pytest.raises(CredentialReportError, match=r"^line 2, column user: empty user name"):
        parse_credential_report(content)


def test_it_refuses_bytes_that_are_not_utf8():
    content = AWS_REPORT.replace(b"alice", "alicé".encode("latin-1"))

    with pytest.raises(CredentialReportError, match="not UTF-8"):
        parse_credential_report(content)


@pytest.mark.parametrize(
    ("content", "line"),
    [(b"\x01" * 200_000, 1), (report(HEADER, ALICE, "x" * 200_000), 3)],
)
def test_it_refuses_a_binary_blob_with_a_report_error(content, line):
    # A huge unquoted "field" trips the csv module's own limit; that must still read as a
    # report problem (a failed snapshot), not as an internal error.
    with pytest.raises(CredentialReportError, match=f"^line {line}: not readable as CSV"):
        parse_credential_report(content)


# --- fetching: generate, poll with backoff, get -----------------------------------------------


class FakeClock:
    """monotonic() and sleep() for the poll loop: sleeping only moves the clock."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def iam():
    client = boto3.client(
        "iam",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


GENERATED = utc(2024, 12, 1, 6, 0, 0)


def generate(stubber, state: str) -> None:
    stubber.add_response("generate_credential_report", {"State": state}, {})


def get_report(stubber, content: bytes = AWS_REPORT) -> None:
    stubber.add_response(
        "get_credential_report",
        {"Content": content, "ReportFormat": "text/csv", "GeneratedTime": GENERATED},
        {},
    )


def test_it_fetches_a_complete_report_in_two_calls_without_waiting(iam):
    client, stubber = iam
    clock = FakeClock()
    generate(stubber, "COMPLETE")
    get_report(stubber)

    result = fetch_credential_report(client, sleep=clock.sleep, monotonic=clock.monotonic)

    assert clock.sleeps == []
    assert result.generated_at == GENERATED
    assert len(result.rows) == 5


def test_it_polls_through_started_and_inprogress_with_growing_backoff(iam):
    """GIVEN AWS still writing the report for a while WHEN fetching THEN keygov asks again after
    0.5, 1, 2, 4 and then at most 8 seconds, and returns the report once COMPLETE."""
    client, stubber = iam
    clock = FakeClock()
    generate(stubber, "STARTED")
    for _ in range(6):
        generate(stubber, "INPROGRESS")
    generate(stubber, "COMPLETE")
    get_report(stubber)

    result = fetch_credential_report(client, sleep=clock.sleep, monotonic=clock.monotonic)

    assert clock.sleeps == [0.5, 1, 2, 4, 8, 8, 8]
    assert result.rows[0].user == "<root_account>"


@pytest.mark.parametrize(
    ("code", "status"),
    [("ReportInProgress", 404), ("ReportNotPresent", 410), ("ReportExpired", 410)],
)
def test_it_waits_and_generates_again_when_get_says(iam, code, status):
    client, stubber = iam
    clock = FakeClock()
    generate(stubber, "COMPLETE")
    stubber.add_client_error(
        "get_credential_report", service_error_code=code, http_status_code=status
    )
    generate(stubber, "COMPLETE")
    get_report(stubber)

    result = fetch_credential_report(client, sleep=clock.sleep, monotonic=clock.monotonic)

    assert clock.sleeps == [0.5]
    assert len(result.rows) == 5


def test_it_gives_up_with_a_clear_error_at_the_timeout(iam):
    client, stubber = iam
    clock = FakeClock()
    for _ in range(5):
        generate(stubber, "INPROGRESS")

    with pytest.raises(CredentialReportError) as exc:
        fetch_credential_report(client, timeout=10, sleep=clock.sleep, monotonic=clock.monotonic)

    assert str(exc.value) == "the credential report was not ready after 10 s (state INPROGRESS)"
    # It never sleeps past the deadline: 0.5 + 1 + 2 + 4 = 7.5 s, and 8 more would exceed 10.
    assert clock.sleeps == [0.5, 1, 2, 4]


def test_it_gives_up_when_the_report_keeps_expiring(iam):
    client, stubber = iam
    clock = FakeClock()
    for _ in range(3):
        generate(stubber, "COMPLETE")
        stubber.add_client_error(
            "get_credential_report", service_error_code="ReportExpired", http_status_code=410
        )

    with pytest.raises(CredentialReportError, match=r"not ready after 3 s \(ReportExpired\)"):
        fetch_credential_report(client, timeout=3, sleep=clock.sleep, monotonic=clock.monotonic)


def test_it_lets_other_aws_errors_through(iam):
    client, stubber = iam
    clock = FakeClock()
    generate(stubber, "COMPLETE")
    stubber.add_client_error(
        "get_credential_report", service_error_code="AccessDenied", http_status_code=403
    )

    with pytest.raises(ClientError, match="AccessDenied"):
        fetch_credential_report(client, sleep=clock.sleep, monotonic=clock.monotonic)
    assert clock.sleeps == []


def test_it_refuses_a_report_in_another_format(iam):
    client, stubber = iam
    generate(stubber, "COMPLETE")
    stubber.add_response(
        "get_credential_report",
        {"Content": b"{}", "ReportFormat": "application/json", "GeneratedTime": GENERATED},
        {},
    )

    with pytest.raises(CredentialReportError, match="unexpected report format 'application/json'"):
        fetch_credential_report(client)


def test_it_refuses_a_garbled_report_from_aws(iam):
    client, stubber = iam
    generate(stubber, "COMPLETE")
    get_report(stubber, b"user,arn\nalice,arn:aws:iam::111122223333:user/alice\n")

    with pytest.raises(CredentialReportError, match="missing column"):
        fetch_credential_report(client)
