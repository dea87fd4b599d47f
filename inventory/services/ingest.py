"""Write one collected inventory into the database as a complete snapshot, in one transaction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from django.db import transaction
from django.utils import timezone

from inventory.aws.collector import AccountInventory
from inventory.choices import KeyStatus, SnapshotStatus
from inventory.models import AccessKey, IamUser, KeyObservation, Snapshot
from inventory.services.evaluation import evaluate_account
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


@transaction.atomic
def ingest_inventory(
    snapshot: Snapshot, inventory: AccountInventory, owner_tag_keys: Sequence[str]
) -> Snapshot:
    """Upsert users and keys, mark what the account no longer has as deleted, record history.

    ``snapshot.started_at`` is the time of the observation: everything seen gets it as
    ``last_seen``; whatever of this account keeps an older ``last_seen`` is gone from AWS.
    """
    seen_at = snapshot.started_at
    account = snapshot.account
    # Claim the snapshot first: if a newer collection took the account over, write nothing.
    if not Snapshot.objects.filter(pk=snapshot.pk, status=SnapshotStatus.RUNNING).update(
        phase="writing"
    ):
        raise SnapshotSuperseded(f"snapshot {snapshot.pk} is no longer running")

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
    IamUser.objects.bulk_create(
        users,
        batch_size=BATCH,
        update_conflicts=True,
        unique_fields=["account", "user_id"],
        update_fields=[
            "name", "arn", "path", "created", "tags", "has_password", "is_root", "owner",
            "last_seen", "deleted", "deleted_at",
        ],
    )  # fmt: skip
    IamUser.objects.filter(account=account, deleted=False, last_seen__lt=seen_at).update(
        deleted=True, deleted_at=seen_at
    )

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
    AccessKey.objects.bulk_create(
        keys,
        batch_size=BATCH,
        update_conflicts=True,
        unique_fields=["access_key_id"],
        update_fields=[
            "account", "user", "status", "created", "last_used_at", "last_used_service",
            "last_used_region", "is_root", "last_seen", "deleted", "deleted_at",
        ],
    )  # fmt: skip
    AccessKey.objects.filter(account=account, deleted=False, last_seen__lt=seen_at).update(
        deleted=True, deleted_at=seen_at
    )

    # Judge the keys as this snapshot left them, before recording what it saw.
    evaluation = evaluate_account(account, now=seen_at)
    KeyObservation.objects.bulk_create(
        [
            KeyObservation(
                key_id=k.pk,
                snapshot=snapshot,
                active=k.status == KeyStatus.ACTIVE,
                state=evaluation.states.get(k.pk, ""),
                last_used_at=k.last_used_at,
            )
            for k in keys
        ],
        batch_size=BATCH,
    )
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
