"""Write one collected inventory into the database as a complete snapshot, in one transaction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from django.db import connection, transaction
from django.utils import timezone

from inventory.aws.collector import AccountInventory
from inventory.choices import STATE_CODES, KeyStatus, SnapshotStatus
from inventory.models import AccessKey, IamUser, KeyObservation, Snapshot
from inventory.services.evaluation import evaluate_account
from inventory.services.key_requests import link_snapshot_keys
from inventory.services.kpis import roll_up_account

BATCH = 2000


class SnapshotSuperseded(Exception):
    """The snapshot stopped being the account's running collection while it was being written."""


def owner_from_tags(tags: Mapping[str, str], tag_keys: Sequence[str]) -> str:
    """The value of the first owner tag, in the order of ``tag_keys``; "" when there is none.

    AWS does not promise an order for a user's tags, so the configured order decides which tag
    wins when a user carries several. The value is lower-cased: owners are matched to sign-in
    e-mail addresses case-insensitively.
    """
    for key in tag_keys:
        value = (tags.get(key) or "").strip()
        if value:
            return value.lower()
    return ""


# Compared with what the database holds: a row is written only when one of these changed.
USER_FIELDS = ("name", "arn", "path", "created", "tags", "has_password", "is_root", "owner")
KEY_FIELDS = (
    "account_id", "user_id", "status", "created", "last_used_at", "last_used_service",
    "last_used_region", "is_root",
)  # fmt: skip


def _upsert_changed(model, rows: list, existing: dict, key: str, fields, unique_fields) -> None:
    """Write the rows that are new, changed or coming back from deletion; leave the rest alone
    (an unchanged account's second snapshot writes no user or key row at all)."""
    changed = []
    for row in rows:
        old = existing.get(getattr(row, key))
        if old is None or old["deleted"] or any(old[f] != getattr(row, f) for f in fields):
            changed.append(row)
        else:
            row.pk = old["pk"]
    model.objects.bulk_create(
        changed,
        batch_size=BATCH,
        update_conflicts=True,
        unique_fields=unique_fields,
        update_fields=[f.removesuffix("_id") for f in fields] + ["deleted", "deleted_at"],
    )


def _mark_seen_and_gone(model, account, existing: dict, seen: set, seen_at) -> None:
    """Mark what this complete snapshot no longer contains as deleted; stamp the rest seen."""
    gone = [old["pk"] for k, old in existing.items() if k not in seen and not old["deleted"]]
    if gone:
        model.objects.filter(pk__in=gone).update(deleted=True, deleted_at=seen_at)
    model.objects.filter(account=account, deleted=False).update(last_seen=seen_at)


def _write_history(snapshot: Snapshot, keys: list[AccessKey], states: dict) -> None:
    """One KeyObservation per key. On Postgres through COPY: the history is the largest table
    and this insert runs on every snapshot."""
    rows = [
        (k.pk, snapshot.pk, k.status == KeyStatus.ACTIVE, states.get(k.pk, ""), k.last_used_at)
        for k in keys
    ]
    if connection.vendor == "postgresql":
        table = KeyObservation._meta.db_table
        code = STATE_CODES.__getitem__  # COPY writes the column's value: the state's code
        with (
            connection.cursor() as cursor,
            cursor.cursor.copy(
                f"COPY {table} (key_id, snapshot_id, active, state, last_used_at) FROM STDIN"
            ) as copy,
        ):
            for key_id, snapshot_id, active, state, last_used_at in rows:
                copy.write_row((key_id, snapshot_id, active, code(state), last_used_at))
        return
    KeyObservation.objects.bulk_create(
        [
            KeyObservation(
                key_id=r[0], snapshot_id=r[1], active=r[2], state=r[3], last_used_at=r[4]
            )
            for r in rows
        ],
        batch_size=BATCH,
    )


@transaction.atomic
def ingest_inventory(
    snapshot: Snapshot, inventory: AccountInventory, owner_tag_keys: Sequence[str]
) -> Snapshot:
    """Write one complete snapshot: users and keys that are new or changed, deletion marks for
    what the account no longer has, the policy evaluation, the history and the KPI roll-ups.

    ``snapshot.started_at`` is the time of the observation (``last_seen``, ``deleted_at``).
    """
    seen_at = snapshot.started_at
    account = snapshot.account
    # Claim the snapshot first: if a newer collection took the account over, write nothing.
    if not Snapshot.objects.filter(pk=snapshot.pk, status=SnapshotStatus.RUNNING).update(
        phase="writing"
    ):
        raise SnapshotSuperseded(f"snapshot {snapshot.pk} is no longer running")

    existing_users = {
        row["user_id"]: row
        for row in IamUser.objects.filter(account=account).values(
            "pk", "user_id", "deleted", *USER_FIELDS
        )
    }
    users = [
        IamUser(
            account=account,
            user_id=u.user_id,
            name=u.name,
            arn=u.arn,
            path=u.path,
            created=u.created,
            tags=u.tags,
            has_password=u.has_password,
            is_root=u.is_root,
            owner=owner_from_tags(u.tags, owner_tag_keys),
            first_seen=seen_at,
            last_seen=seen_at,
            deleted=False,
            deleted_at=None,
        )
        for u in inventory.users
    ]
    _upsert_changed(IamUser, users, existing_users, "user_id", USER_FIELDS, ["account", "user_id"])
    _mark_seen_and_gone(IamUser, account, existing_users, {u.user_id for u in users}, seen_at)

    existing_keys = {
        row["access_key_id"]: row
        for row in AccessKey.objects.filter(account=account).values(
            "pk", "access_key_id", "deleted", *KEY_FIELDS
        )
    }
    user_pk = {u.name: u.pk for u in users}
    keys = [
        AccessKey(
            access_key_id=k.access_key_id,
            account=account,
            user_id=user_pk[k.user_name],
            status=k.status,
            created=k.created,
            last_used_at=k.last_used_at,
            last_used_service=k.last_used_service,
            last_used_region=k.last_used_region,
            is_root=k.is_root,
            first_seen=seen_at,
            last_seen=seen_at,
            deleted=False,
            deleted_at=None,
        )
        for k in inventory.keys
    ]
    _upsert_changed(AccessKey, keys, existing_keys, "access_key_id", KEY_FIELDS, ["access_key_id"])
    _mark_seen_and_gone(AccessKey, account, existing_keys, {k.access_key_id for k in keys}, seen_at)
    # Key requests: a read-only account's approved request is fulfilled by its user's new key;
    # a new key without one is flagged unapproved.
    link_snapshot_keys(snapshot, keys, {k.access_key_id for k in keys} - existing_keys.keys())

    # Judge the keys as this snapshot left them, before recording what it saw.
    evaluation = evaluate_account(account, now=seen_at)
    _write_history(snapshot, keys, evaluation.states)
    roll_up_account(account, now=seen_at)

    snapshot.status = SnapshotStatus.COMPLETE
    snapshot.phase = ""
    snapshot.report_generated_at = inventory.report_generated_at
    snapshot.api_calls = inventory.api_calls
    snapshot.user_count = sum(1 for u in inventory.users if not u.is_root)
    snapshot.key_count = len(keys)
    snapshot.active_key_count = sum(1 for k in keys if k.status == KeyStatus.ACTIVE)
    snapshot.finished_at = max(seen_at, timezone.now())
    snapshot.save()
    return snapshot
