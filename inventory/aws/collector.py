"""Collect one account's IAM users and access keys along the efficient path of PRODUCT.md.

credential report (generate, poll, get) → GetAccountAuthorizationDetails (users with tags, 1,000 a
page) → ListAccessKeys only for users whose report row shows keys that keygov cannot already name.
The report's key slots carry status and last use; they are matched to key ids by creation time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from botocore.exceptions import ClientError

from inventory.aws.connection import AwsConnection
from inventory.aws.credential_report import (
    CredentialReport,
    KeySlot,
    ReportRow,
    fetch_credential_report,
)

Progress = Callable[[str], None]


@dataclass(frozen=True)
class UserRecord:
    user_id: str
    name: str
    arn: str
    path: str
    created: datetime
    tags: dict[str, str]
    has_password: bool
    is_root: bool = False


@dataclass(frozen=True)
class KeyRecord:
    access_key_id: str
    user_name: str
    status: str  # "Active" | "Inactive"
    created: datetime
    last_used_at: datetime | None = None
    last_used_service: str = ""
    last_used_region: str = ""
    is_root: bool = False


@dataclass
class AccountInventory:
    """Everything one collection saw of one account."""

    account_id: str
    report_generated_at: datetime | None
    users: list[UserRecord] = field(default_factory=list)
    keys: list[KeyRecord] = field(default_factory=list)
    api_calls: int = 0
    calls_by_operation: dict[str, int] = field(default_factory=dict)


# user name -> [(access key id, CreateDate)] of the keys keygov already knows.
KnownKeys = Mapping[str, Sequence[tuple[str, datetime]]]


def _second(ts: datetime) -> datetime:
    """Creation times compared to the second, in UTC: the report has no finer resolution."""
    return ts.astimezone(UTC).replace(microsecond=0)


def root_key_id(account_id: str, created: datetime) -> str:
    """A stand-in id for a root-account key: AWS shows root keys only in the credential report.
    Derived from the creation time so a rotated root key gets a new id."""
    return f"ROOT-{account_id}-{_second(created):%Y%m%dT%H%M%SZ}"


def list_users(iam) -> list[dict]:
    """Every IAM user with UserId, path and tags: GetAccountAuthorizationDetails, every page."""
    users: list[dict] = []
    params: dict = {"Filter": ["User"], "MaxItems": 1000}
    while True:
        page = iam.get_account_authorization_details(**params)
        users.extend(page.get("UserDetailList", []))
        if not page.get("IsTruncated"):
            return users
        params["Marker"] = page["Marker"]


def list_access_keys(iam, user_name: str) -> list[dict]:
    keys: list[dict] = []
    params: dict = {"UserName": user_name}
    while True:
        page = iam.list_access_keys(**params)
        keys.extend(page.get("AccessKeyMetadata", []))
        if not page.get("IsTruncated"):
            return keys
        params["Marker"] = page["Marker"]


def _key_from_slot(key_id: str, user: str, slot: KeySlot, status: str | None = None) -> KeyRecord:
    return KeyRecord(
        access_key_id=key_id,
        user_name=user,
        status=status or ("Active" if slot.active else "Inactive"),
        created=_second(slot.created),
        last_used_at=slot.last_used_at,
        last_used_service=slot.last_used_service,
        last_used_region=slot.last_used_region,
    )


def _unique_by_created(items: Iterable, created_of: Callable) -> dict[datetime, object]:
    """Index by creation second, leaving out times shared by two items: those are ambiguous."""
    seen: dict[datetime, object] = {}
    clashes: set[datetime] = set()
    for item in items:
        created = _second(created_of(item))
        if created in seen:
            clashes.add(created)
        seen[created] = item
    return {k: v for k, v in seen.items() if k not in clashes}


def _reuse_known(row: ReportRow, known: Sequence[tuple[str, datetime]]) -> list[KeyRecord] | None:
    """The row's keys named from known ids, or None when the user's keys must be listed: a
    slot's creation time is new, two keys share a creation second (the time alone cannot tell
    them apart), or a known key has no slot. The last happens when the key was deleted, and
    also when AWS hands back a cached report older than a key that an earlier collection
    listed: dropping that key would mark it deleted until the report is regenerated."""
    by_created = _unique_by_created(known, lambda k: k[1])
    if len(_unique_by_created(row.slots, lambda s: s.created)) != len(row.slots):
        return None
    if len(known) != len(row.slots):
        return None
    keys = []
    for slot in row.slots:
        match = by_created.get(_second(slot.created))
        if match is None:
            return None
        keys.append(_key_from_slot(match[0], row.user, slot))
    return keys


def _match_listed(iam, user: str, listed: Iterable[dict], row: ReportRow | None) -> list[KeyRecord]:
    listed = list(listed)
    slots = _unique_by_created(row.slots if row else (), lambda s: s.created)
    # Two listed keys of one second cannot both be the slot of that second (the report may have
    # been written between their creations): neither takes it.
    unique_listed = _unique_by_created(listed, lambda m: m["CreateDate"])
    keys = []
    for meta in listed:
        created = _second(meta["CreateDate"])
        slot = slots.get(created) if created in unique_listed else None
        if slot is not None:
            keys.append(_key_from_slot(meta["AccessKeyId"], user, slot, status=meta["Status"]))
            continue
        # Created after the report was generated, or sharing its creation second with the user's
        # other key: the report cannot say when this one was last used; ask for it.
        try:
            answer = iam.get_access_key_last_used(AccessKeyId=meta["AccessKeyId"])
        except ClientError as exc:
            if _gone(exc):
                continue  # deleted since it was listed: it is not in the account any more
            raise
        last = answer.get("AccessKeyLastUsed", {})
        keys.append(
            KeyRecord(
                access_key_id=meta["AccessKeyId"],
                user_name=user,
                status=meta["Status"],
                created=created,
                last_used_at=last.get("LastUsedDate"),
                last_used_service=_clean(last.get("ServiceName", "")),
                last_used_region=_clean(last.get("Region", "")),
            )
        )
    return keys


def _gone(exc: ClientError) -> bool:
    """The user or key was deleted while the collection ran (a busy account changes under it)."""
    return exc.response.get("Error", {}).get("Code") == "NoSuchEntity"


def _clean(value: str) -> str:
    return "" if value.strip().lower() in {"n/a", "no_information", "not_supported"} else value


def _root_records(account_id: str, row: ReportRow) -> tuple[UserRecord, list[KeyRecord]]:
    created = row.created or datetime(1970, 1, 1, tzinfo=UTC)
    user = UserRecord(
        user_id=f"root-{account_id}",
        name=row.user,
        arn=row.arn,
        path="/",
        created=created,
        tags={},
        has_password=True,
        is_root=True,
    )
    keys = [
        replace(_key_from_slot(root_key_id(account_id, slot.created), row.user, slot), is_root=True)
        for slot in row.slots
    ]
    return user, keys


def collect_inventory(
    conn: AwsConnection,
    account_id: str,
    known: KnownKeys | None = None,
    progress: Progress | None = None,
) -> AccountInventory:
    """Read one account's users and keys. Pure AWS: the caller passes what the database knows."""
    known = known or {}
    say = progress or (lambda _: None)
    iam = conn.client("iam")

    say("generating the credential report")
    report: CredentialReport = fetch_credential_report(iam, timeout=conn.settings.report_timeout)
    rows = {row.user: row for row in report.rows}

    say(f"listing users ({len(rows)} in the credential report)")
    details = list_users(iam)

    inventory = AccountInventory(account_id=account_id, report_generated_at=report.generated_at)
    root = rows.get("<root_account>")
    if root is not None:
        user, keys = _root_records(account_id, root)
        inventory.users.append(user)
        inventory.keys.extend(keys)

    to_list: list[str] = []
    for detail in details:
        name = detail["UserName"]
        row = rows.get(name)
        inventory.users.append(
            UserRecord(
                user_id=detail["UserId"],
                name=name,
                arn=detail["Arn"],
                path=detail.get("Path", "/"),
                created=detail["CreateDate"],
                tags={t["Key"]: t["Value"] for t in detail.get("Tags", [])},
                has_password=row.password_enabled if row else False,
            )
        )
        if row is not None and not row.slots and not known.get(name):
            continue
        reused = _reuse_known(row, known.get(name, ())) if row is not None else None
        if reused is not None:
            inventory.keys.extend(reused)
        else:
            # A slot keygov cannot name yet, or a user newer than the report.
            to_list.append(name)

    say(f"listing access keys of {len(to_list)} users")

    def keys_of(name: str) -> list[KeyRecord] | None:
        try:
            listed = list_access_keys(iam, name)
        except ClientError as exc:
            if _gone(exc):
                return None  # deleted since the user listing
            raise
        return _match_listed(iam, name, listed, rows.get(name))

    # IAM throttles per account: a few calls in flight at most; accounts run in parallel instead.
    gone: set[str] = set()
    with ThreadPoolExecutor(max_workers=conn.settings.concurrency) as pool:
        for name, keys in zip(to_list, pool.map(keys_of, to_list), strict=True):
            if keys is None:
                gone.add(name)
            else:
                inventory.keys.extend(keys)
    if gone:
        inventory.users = [u for u in inventory.users if u.name not in gone]

    inventory.api_calls = conn.api_calls
    inventory.calls_by_operation = dict(conn.counter.by_operation)
    return inventory
