"""collect_inventory along the efficient path, every IAM call answered by botocore's Stubber.

The Stubber fails a test on any call it was not told to expect, in order and with the expected
parameters, so each test also proves which calls the collector does NOT make.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import boto3
import pytest
from botocore.stub import Stubber

from inventory.aws.collector import collect_inventory
from inventory.aws.connection import AccountTarget, AwsConnection, AwsSettings, connect
from tests.aws_stubs import StubbedSession, client, count_stubbed_calls

ACCOUNT = "111122223333"
GENERATED = datetime(2024, 12, 1, 6, 0, 0, tzinfo=UTC)
COLUMNS = (
    "user,arn,user_creation_time,password_enabled,password_last_used,password_last_changed,"
    "password_next_rotation,mfa_active,access_key_1_active,access_key_1_last_rotated,"
    "access_key_1_last_used_date,access_key_1_last_used_region,access_key_1_last_used_service,"
    "access_key_2_active,access_key_2_last_rotated,access_key_2_last_used_date,"
    "access_key_2_last_used_region,access_key_2_last_used_service,cert_1_active,"
    "cert_1_last_rotated,cert_2_active,cert_2_last_rotated"
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def iso(ts: datetime | None) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S+00:00") if ts else "N/A"


@dataclass(frozen=True)
class Slot:
    created: datetime
    active: bool = True
    used: datetime | None = None
    region: str = "N/A"
    service: str = "N/A"

    def csv(self) -> str:
        active = "true" if self.active else "false"
        return ",".join([active, iso(self.created), iso(self.used), self.region, self.service])


NO_SLOT = "false,N/A,N/A,N/A,N/A"


def row(name: str, *slots: Slot | None, password: bool = False) -> str:
    """One report line as AWS writes it; ``None`` leaves a slot empty."""
    cells = [Slot.csv(s) if s else NO_SLOT for s in (*slots, None, None)[:2]]
    if name == "<root_account>":
        head = f"{name},arn:aws:iam::{ACCOUNT}:root,2015-01-21T19:51:53+00:00,not_supported,"
        head += "no_information,not_supported,not_supported,true"
    else:
        head = f"{name},arn:aws:iam::{ACCOUNT}:user/{name},2018-05-01T10:00:00+00:00,"
        head += "true,no_information,2018-05-01T10:00:00+00:00" if password else "false,N/A,N/A"
        head += ",N/A,false"
    return ",".join([head, *cells, "false,N/A,false,N/A"])


def user_id(name: str) -> str:
    return ("AIDA" + name.upper().replace("-", "") + "X" * 17)[:21]


class Iam:
    """The IAM answers a test expects, counted, in the order the collector must ask."""

    def __init__(self, stubber: Stubber) -> None:
        self.stubber = stubber
        self.calls = 0

    def add(self, operation: str, response: dict, params: dict) -> None:
        self.stubber.add_response(operation, response, params)
        self.calls += 1

    def report(self, *lines: str) -> None:
        content = "\n".join([COLUMNS, *lines]) + "\n"
        self.add("generate_credential_report", {"State": "COMPLETE"}, {})
        self.add(
            "get_credential_report",
            {"Content": content.encode(), "ReportFormat": "text/csv", "GeneratedTime": GENERATED},
            {},
        )

    def users(self, *pages: list[str]) -> None:
        """GetAccountAuthorizationDetails, one page per list of user names."""
        params: dict = {"Filter": ["User"], "MaxItems": 1000}
        for n, names in enumerate(pages, start=1):
            last = n == len(pages)
            page: dict = {
                "UserDetailList": [
                    {
                        "UserName": name,
                        "UserId": user_id(name),
                        "Arn": f"arn:aws:iam::{ACCOUNT}:user/{name}",
                        "Path": "/",
                        "CreateDate": utc(2018, 5, 1, 10),
                        "Tags": [{"Key": "owner", "Value": f"{name}@example.com"}],
                    }
                    for name in names
                ],
                "IsTruncated": not last,
            }
            if not last:
                page["Marker"] = f"after-page-{n}"
            self.add("get_account_authorization_details", page, dict(params))
            params["Marker"] = f"after-page-{n}"

    def keys(self, user: str, *keys: tuple[str, datetime, str]) -> None:
        """ListAccessKeys of ``user``: (AccessKeyId, CreateDate, Status) in AWS's order."""
        metadata = [
            {"UserName": user, "AccessKeyId": key_id, "CreateDate": created, "Status": status}
            for key_id, created, status in keys
        ]
        self.add(
            "list_access_keys",
            {"AccessKeyMetadata": metadata, "IsTruncated": False},
            {"UserName": user},
        )

    def last_used(self, user: str, key_id: str, used=None, service="N/A", region="N/A") -> None:
        last: dict = {"ServiceName": service, "Region": region}
        if used:
            last["LastUsedDate"] = used
        self.add(
            "get_access_key_last_used",
            {"UserName": user, "AccessKeyLastUsed": last},
            {"AccessKeyId": key_id},
        )


@pytest.fixture
def stubbed_iam():
    session = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    # One ListAccessKeys in flight at a time, so that the Stubber's queue has one order.
    conn = AwsConnection(session=session, settings=AwsSettings(concurrency=1, report_timeout=5))
    with Stubber(count_stubbed_calls(conn, "iam")) as stubber:
        yield conn, Iam(stubber)
        stubber.assert_no_pending_responses()


def keys_by_id(inventory) -> dict:
    return {key.access_key_id: key for key in inventory.keys}


# Alice's two keys: the report's slot 1 is the newer one; ListAccessKeys lists the older first.
ALICE_NEW = ("AKIAALICENEW00000001", utc(2023, 2, 14, 9, 30), "Active")
ALICE_OLD = ("AKIAALICEOLD00000002", utc(2021, 6, 1, 12, 0), "Inactive")
BOT_KEY = ("AKIABUILDBOT00000003", utc(2024, 8, 1, 8, 0, 5), "Active")
DAVE_KEY = ("AKIADAVE000000000004", utc(2024, 12, 1, 7, 0, 0), "Active")
ALICE_SLOTS = (
    Slot(ALICE_NEW[1], used=utc(2024, 11, 30, 17, 4), region="eu-west-1", service="s3"),
    Slot(
        ALICE_OLD[1], active=False, used=utc(2022, 1, 10, 6, 15), region="us-east-1", service="ec2"
    ),
)
ROOT_SLOT = Slot(
    utc(2016, 3, 1, 9, 10, 11), used=utc(2019, 7, 2, 11), region="us-east-1", service="iam"
)


def first_collection(iam: Iam) -> None:
    iam.report(
        row("<root_account>", ROOT_SLOT),
        row("alice", *ALICE_SLOTS, password=True),
        row("bob", password=True),
        row("build-bot", Slot(BOT_KEY[1])),
    )
    # dave and erin were created after the report was generated.
    iam.users(["alice", "bob"], ["build-bot", "dave", "erin"])
    iam.keys("alice", ALICE_OLD, ALICE_NEW)
    iam.keys("build-bot", BOT_KEY)
    iam.keys("dave", DAVE_KEY)
    iam.last_used("dave", DAVE_KEY[0], utc(2024, 12, 1, 7, 30), "dynamodb", "us-east-2")
    iam.keys("erin")


def test_it_collects_an_account_along_the_efficient_path(stubbed_iam):
    """GIVEN an account seen for the first time WHEN collecting THEN keys are listed only for users
    the report shows with keys (not bob) or that are newer than the report (dave, erin), and
    GetAccessKeyLastUsed is asked only for the key the report cannot describe."""
    conn, iam = stubbed_iam
    first_collection(iam)
    said: list[str] = []

    inventory = collect_inventory(conn, ACCOUNT, progress=said.append)

    assert inventory.account_id == ACCOUNT
    assert inventory.report_generated_at == GENERATED
    assert [u.name for u in inventory.users] == [
        "<root_account>",
        "alice",
        "bob",
        "build-bot",
        "dave",
        "erin",
    ]
    assert inventory.api_calls == iam.calls == 9
    assert inventory.calls_by_operation == {
        "GenerateCredentialReport": 1,
        "GetCredentialReport": 1,
        "GetAccountAuthorizationDetails": 2,
        "ListAccessKeys": 4,
        "GetAccessKeyLastUsed": 1,
    }
    assert "listing access keys of 4 users" in said


def test_it_matches_report_slots_to_key_ids_by_creation_time(stubbed_iam):
    conn, iam = stubbed_iam
    first_collection(iam)

    keys = keys_by_id(collect_inventory(conn, ACCOUNT))

    new, old = keys[ALICE_NEW[0]], keys[ALICE_OLD[0]]
    assert (new.status, new.created) == ("Active", ALICE_NEW[1])
    assert new.last_used_at == utc(2024, 11, 30, 17, 4)
    assert (new.last_used_region, new.last_used_service) == ("eu-west-1", "s3")
    assert (old.status, old.created) == ("Inactive", ALICE_OLD[1])
    assert old.last_used_at == utc(2022, 1, 10, 6, 15)
    assert (old.last_used_region, old.last_used_service) == ("us-east-1", "ec2")
    bot = keys[BOT_KEY[0]]
    assert (bot.last_used_at, bot.last_used_region, bot.last_used_service) == (None, "", "")
    assert {k.user_name for k in keys.values() if not k.is_root} == {"alice", "build-bot", "dave"}


def test_it_asks_aws_for_the_last_use_of_a_key_newer_than_the_report(stubbed_iam):
    conn, iam = stubbed_iam
    first_collection(iam)

    inventory = collect_inventory(conn, ACCOUNT)

    dave = keys_by_id(inventory)[DAVE_KEY[0]]
    assert (dave.user_name, dave.status, dave.created) == ("dave", "Active", DAVE_KEY[1])
    assert dave.last_used_at == utc(2024, 12, 1, 7, 30)
    assert (dave.last_used_service, dave.last_used_region) == ("dynamodb", "us-east-2")
    users = {u.name: u for u in inventory.users}
    assert users["dave"].has_password is False  # not in the report yet: no evidence of one
    assert users["dave"].tags == {"owner": "dave@example.com"}
    assert users["dave"].user_id == user_id("dave")


def test_it_inventories_root_keys_with_stand_in_ids(stubbed_iam):
    conn, iam = stubbed_iam
    first_collection(iam)

    inventory = collect_inventory(conn, ACCOUNT)

    root_user = next(u for u in inventory.users if u.is_root)
    assert (root_user.name, root_user.user_id) == ("<root_account>", f"root-{ACCOUNT}")
    assert root_user.arn == f"arn:aws:iam::{ACCOUNT}:root"
    (root_key,) = (k for k in inventory.keys if k.is_root)
    assert root_key.access_key_id == f"ROOT-{ACCOUNT}-20160301T091011Z"
    assert (root_key.status, root_key.user_name) == ("Active", "<root_account>")
    assert root_key.last_used_at == utc(2019, 7, 2, 11)
    assert root_key.last_used_service == "iam"


def test_it_gives_two_root_keys_two_ids_without_listing_them(stubbed_iam):
    conn, iam = stubbed_iam
    iam.report(
        row("<root_account>", ROOT_SLOT, Slot(utc(2020, 2, 2, 2, 2, 2), active=False)),
    )
    iam.users([])

    inventory = collect_inventory(conn, ACCOUNT)

    assert {(k.access_key_id, k.status) for k in inventory.keys} == {
        (f"ROOT-{ACCOUNT}-20160301T091011Z", "Active"),
        (f"ROOT-{ACCOUNT}-20200202T020202Z", "Inactive"),
    }
    assert all(k.is_root for k in inventory.keys)
    assert inventory.api_calls == iam.calls == 3


def known_after_first_collection() -> dict:
    return {
        "alice": [ALICE_NEW[:2], ALICE_OLD[:2]],
        "build-bot": [BOT_KEY[:2]],
        "dave": [DAVE_KEY[:2]],
    }


def test_it_reuses_known_keys_of_an_unchanged_account_without_listing_keys(stubbed_iam):
    """GIVEN keygov knows every key and a newer report shows the same creation times WHEN
    collecting again THEN three calls suffice and each slot's last use lands on its known key."""
    conn, iam = stubbed_iam
    iam.report(
        row("<root_account>", ROOT_SLOT),
        row("alice", *ALICE_SLOTS, password=True),
        row("bob", password=True),
        row(
            "build-bot",
            Slot(BOT_KEY[1], used=utc(2024, 12, 2), region="eu-central-1", service="ecr"),
        ),
        row(
            "dave",
            Slot(DAVE_KEY[1], used=utc(2024, 12, 1, 7, 30), region="us-east-2", service="dynamodb"),
        ),
    )
    iam.users(["alice", "bob", "build-bot", "dave"])

    inventory = collect_inventory(conn, ACCOUNT, known=known_after_first_collection())

    assert inventory.api_calls == iam.calls == 3
    assert "ListAccessKeys" not in inventory.calls_by_operation
    keys = keys_by_id(inventory)
    assert set(keys) == {
        ALICE_NEW[0],
        ALICE_OLD[0],
        BOT_KEY[0],
        DAVE_KEY[0],
        f"ROOT-{ACCOUNT}-20160301T091011Z",
    }
    assert (keys[ALICE_NEW[0]].status, keys[ALICE_NEW[0]].last_used_service) == ("Active", "s3")
    assert (keys[ALICE_OLD[0]].status, keys[ALICE_OLD[0]].last_used_service) == ("Inactive", "ec2")
    bot = keys[BOT_KEY[0]]
    assert (bot.last_used_at, bot.last_used_region, bot.last_used_service) == (
        utc(2024, 12, 2),
        "eu-central-1",
        "ecr",
    )


def test_it_lists_keys_only_for_the_user_whose_slot_changed(stubbed_iam):
    """GIVEN alice rotated her old key (slot 2 has a new creation time) WHEN collecting again THEN
    only alice's keys are listed and the new key gets slot 2's last use."""
    conn, iam = stubbed_iam
    rotated = ("AKIAALICEROTATED0005", utc(2024, 11, 20, 10), "Active")
    iam.report(
        row(
            "alice",
            ALICE_SLOTS[0],
            Slot(rotated[1], used=utc(2024, 11, 29), region="ap-south-1", service="sqs"),
            password=True,
        ),
        row("build-bot", Slot(BOT_KEY[1])),
        row("dave", Slot(DAVE_KEY[1])),
    )
    iam.users(["alice", "build-bot", "dave"])
    iam.keys("alice", ALICE_NEW, rotated)

    inventory = collect_inventory(conn, ACCOUNT, known=known_after_first_collection())

    assert inventory.api_calls == iam.calls == 4
    assert inventory.calls_by_operation["ListAccessKeys"] == 1
    keys = keys_by_id(inventory)
    assert ALICE_OLD[0] not in keys  # deleted in AWS: no longer seen
    new = keys[rotated[0]]
    assert (new.created, new.last_used_region, new.last_used_service) == (
        rotated[1],
        "ap-south-1",
        "sqs",
    )
    assert keys[ALICE_NEW[0]].last_used_service == "s3"
    assert keys[BOT_KEY[0]].user_name == "build-bot"


def test_it_lists_keys_of_a_known_user_whose_key_is_not_known(stubbed_iam):
    conn, iam = stubbed_iam
    iam.report(row("build-bot", Slot(BOT_KEY[1])))
    iam.users(["build-bot"])
    iam.keys("build-bot", BOT_KEY)

    inventory = collect_inventory(conn, ACCOUNT, known={"build-bot": []})

    assert list(keys_by_id(inventory)) == [BOT_KEY[0]]
    assert inventory.api_calls == iam.calls == 4


SAME_SECOND = utc(2024, 10, 10, 10, 10, 10)
CAROL_USED = ("AKIACAROLUSED0000006", SAME_SECOND, "Active")
CAROL_IDLE = ("AKIACAROLIDLE0000007", SAME_SECOND, "Inactive")
CAROL_SLOTS = (
    Slot(SAME_SECOND, used=utc(2024, 11, 1), region="us-east-1", service="s3"),
    Slot(SAME_SECOND, active=False),
)


@pytest.mark.parametrize("known", [{}, {"carol": [CAROL_USED[:2], CAROL_IDLE[:2]]}])
def test_it_does_not_confuse_two_keys_created_in_the_same_second(stubbed_iam, known):
    """GIVEN two keys of one user created in the same second (the report cannot tell which slot
    is which) WHEN collecting, whether or not keygov knows them, THEN each key's last use comes
    from GetAccessKeyLastUsed for that key."""
    conn, iam = stubbed_iam
    iam.report(row("carol", *CAROL_SLOTS, password=True))
    iam.users(["carol"])
    iam.keys("carol", CAROL_IDLE, CAROL_USED)
    iam.last_used("carol", CAROL_IDLE[0])
    iam.last_used("carol", CAROL_USED[0], utc(2024, 11, 1), "s3", "us-east-1")

    inventory = collect_inventory(conn, ACCOUNT, known=known)

    keys = keys_by_id(inventory)
    used, idle = keys[CAROL_USED[0]], keys[CAROL_IDLE[0]]
    assert (used.status, used.last_used_at, used.last_used_service) == (
        "Active",
        utc(2024, 11, 1),
        "s3",
    )
    assert (idle.status, idle.last_used_at, idle.last_used_service, idle.last_used_region) == (
        "Inactive",
        None,
        "",
        "",
    )
    assert inventory.api_calls == iam.calls == 6


def test_it_does_not_give_a_key_made_after_the_report_its_twin_s_last_use(stubbed_iam):
    """GIVEN a report showing one key, and a second key created in the same second right after
    the report was written WHEN collecting THEN neither key is given the other's last use."""
    conn, iam = stubbed_iam
    iam.report(row("carol", CAROL_SLOTS[0], password=True))
    iam.users(["carol"])
    iam.keys("carol", CAROL_USED, CAROL_IDLE)
    iam.last_used("carol", CAROL_USED[0], utc(2024, 11, 1), "s3", "us-east-1")
    iam.last_used("carol", CAROL_IDLE[0])

    keys = keys_by_id(collect_inventory(conn, ACCOUNT))

    assert keys[CAROL_USED[0]].last_used_service == "s3"
    assert keys[CAROL_IDLE[0]].last_used_at is None
    assert keys[CAROL_IDLE[0]].last_used_service == ""


def test_it_reads_an_account_through_its_role_with_the_external_id():
    """GIVEN an account read through a role WHEN connecting THEN AssumeRole carries the
    ExternalId, and the IAM client uses the temporary credentials with explicit retries."""
    sts = client("sts")
    session = StubbedSession(sts=sts, iam=client("iam"))
    role = f"arn:aws:iam::{ACCOUNT}:role/KeygovRead"
    with Stubber(sts) as stubber:
        stubber.add_response(
            "assume_role",
            {
                "Credentials": {
                    "AccessKeyId": "ASIAEXAMPLE000000000",
                    "SecretAccessKey": "temporary-secret",
                    "SessionToken": "temporary-token",
                    "Expiration": utc(2030, 1, 1),
                }
            },
            {
                "RoleArn": role,
                "RoleSessionName": "keygov-test",
                "DurationSeconds": 3600,
                "ExternalId": "ext-1",
            },
        )

        conn = connect(
            AccountTarget(ACCOUNT, role, "ext-1"),
            AwsSettings(max_attempts=7, session_name="keygov-test"),
            session=session,
        )
        conn.client("iam")

        stubber.assert_no_pending_responses()
    assert "temporary-secret" not in repr(conn)
    service, kwargs = session.made[-1]
    assert service == "iam"
    assert kwargs["aws_access_key_id"] == "ASIAEXAMPLE000000000"
    assert kwargs["aws_session_token"] == "temporary-token"
    assert kwargs["config"].retries == {"mode": "standard", "total_max_attempts": 7}


def test_it_uses_the_default_credentials_without_a_role():
    session = StubbedSession(iam=client("iam"))

    conn = connect(AccountTarget(ACCOUNT), AwsSettings(), session=session)
    conn.client("iam")

    # No AssumeRole: an STS client was never even made.
    assert [service for service, _ in session.made] == ["iam"]
    assert "aws_session_token" not in session.made[0][1]


def test_it_keeps_a_known_key_newer_than_a_cached_report(stubbed_iam):
    """GIVEN a collection that listed build-bot's second key and bob's first, both created after
    the report AWS still hands back (it caches a report for up to 4 hours)
    WHEN collecting again with that same report
    THEN both users' keys are listed again, so neither new key is taken for deleted."""
    conn, iam = stubbed_iam
    bot2 = ("AKIABUILDBOT2NEWER08", utc(2024, 12, 1, 6, 30), "Active")
    bob_key = ("AKIABOBNEWER00000009", utc(2024, 12, 1, 6, 45), "Active")
    iam.report(row("build-bot", Slot(BOT_KEY[1])), row("bob", password=True))
    iam.users(["build-bot", "bob"])
    iam.keys("build-bot", BOT_KEY, bot2)
    iam.last_used("build-bot", bot2[0], utc(2024, 12, 1, 7), "sts", "eu-central-1")
    iam.keys("bob", bob_key)
    iam.last_used("bob", bob_key[0])
    known = {"build-bot": [BOT_KEY[:2], bot2[:2]], "bob": [bob_key[:2]]}

    inventory = collect_inventory(conn, ACCOUNT, known=known)

    keys = keys_by_id(inventory)
    assert set(keys) == {BOT_KEY[0], bot2[0], bob_key[0]}
    assert (keys[bot2[0]].last_used_service, keys[bot2[0]].last_used_region) == (
        "sts",
        "eu-central-1",
    )
    assert inventory.calls_by_operation["ListAccessKeys"] == 2


def test_it_leaves_out_a_user_or_key_deleted_while_the_collection_runs(stubbed_iam):
    """GIVEN erin deleted between the user listing and her ListAccessKeys, and dave's key
    deleted between his ListAccessKeys and its GetAccessKeyLastUsed
    WHEN collecting THEN the account still completes, without erin and without dave's key."""
    conn, iam = stubbed_iam
    iam.report(row("bob", password=True))
    iam.users(["bob", "dave", "erin"])
    iam.keys("dave", DAVE_KEY)
    iam.stubber.add_client_error(
        "get_access_key_last_used",
        service_error_code="NoSuchEntity",
        service_message=f"The Access Key with id {DAVE_KEY[0]} cannot be found.",
        http_status_code=404,
        expected_params={"AccessKeyId": DAVE_KEY[0]},
    )
    iam.stubber.add_client_error(
        "list_access_keys",
        service_error_code="NoSuchEntity",
        service_message="The user with name erin cannot be found.",
        http_status_code=404,
        expected_params={"UserName": "erin"},
    )

    inventory = collect_inventory(conn, ACCOUNT)

    assert [u.name for u in inventory.users] == ["bob", "dave"]
    assert inventory.keys == []
