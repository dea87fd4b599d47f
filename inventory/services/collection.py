"""Collect one account: claim it, read AWS (outside any transaction), then write one snapshot.

Two collections of one account never overlap: a collection holds a lease on the account
(``Account.collecting_until``), claimed with a conditional UPDATE. A scheduled run carries the
slot it belongs to (``run_key``); a slot yields at most one complete snapshot however often its
message is delivered.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta

import boto3
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from inventory.aws.collector import AccountInventory, KnownKeys, collect_inventory
from inventory.aws.connection import AccountTarget, AwsSettings, connect
from inventory.aws.errors import AWS_ERRORS, describe_aws_error
from inventory.choices import SnapshotStatus
from inventory.models import AccessKey, Account, Snapshot
from inventory.services.ingest import SnapshotSuperseded, ingest_inventory

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


def aws_settings() -> AwsSettings:
    return AwsSettings(
        region=settings.KEYGOV_AWS_REGION,
        max_attempts=settings.KEYGOV_AWS_MAX_ATTEMPTS,
        concurrency=settings.KEYGOV_AWS_CONCURRENCY,
        report_timeout=settings.KEYGOV_REPORT_TIMEOUT,
        session_name=settings.KEYGOV_ASSUME_ROLE_SESSION_NAME,
    )


def read_target(account: Account) -> AccountTarget:
    return AccountTarget(
        account_id=account.account_id, role_arn=account.role_arn, external_id=account.external_id
    )


def known_keys(account: Account) -> KnownKeys:
    """Key ids keygov already holds for the account, by user, so unchanged users need no call."""
    known: dict[str, list[tuple[str, datetime]]] = defaultdict(list)
    rows = AccessKey.objects.filter(account=account, deleted=False, is_root=False).values_list(
        "user__name", "access_key_id", "created"
    )
    for user_name, key_id, created in rows:
        known[user_name].append((key_id, created))
    return known


def start_snapshot(account: Account, *, run_key: str = "", now: datetime | None = None):
    """Claim the account and open a running snapshot; None when the run must not happen
    (another collection holds the account, or this slot already has a complete snapshot)."""
    now = now or timezone.now()
    lease_until = now + timedelta(seconds=settings.KEYGOV_COLLECT_LEASE)
    with transaction.atomic():
        claimed = (
            Account.objects.filter(pk=account.pk)
            .filter(Q(collecting_until__isnull=True) | Q(collecting_until__lt=now))
            .update(collecting_until=lease_until)
        )
        if not claimed:
            log.info("account %s: another collection is running; skipped", account.account_id)
            return None
        account.collecting_until = lease_until
        # A run whose worker died (lease expired) never finished: say so.
        stale = Snapshot.objects.filter(account=account, status=SnapshotStatus.RUNNING)
        snapshot = None
        if run_key:
            snapshot = Snapshot.objects.filter(account=account, run_key=run_key).first()
            if snapshot is not None and snapshot.status == SnapshotStatus.COMPLETE:
                Account.objects.filter(pk=account.pk).update(collecting_until=None)
                log.info("account %s: slot %s already collected", account.account_id, run_key)
                return None
            if snapshot is not None:
                stale = stale.exclude(pk=snapshot.pk)
        stale.update(
            status=SnapshotStatus.FAILED,
            phase="",
            finished_at=now,
            error="Interrupted: the worker stopped before the collection finished.",
        )
        if snapshot is None:
            snapshot = Snapshot.objects.create(
                account=account, run_key=run_key, started_at=now, phase="starting"
            )
        else:
            # The same slot delivered again after its worker was lost: take the run over.
            snapshot.status = SnapshotStatus.RUNNING
            snapshot.started_at = now
            snapshot.finished_at = None
            snapshot.error = ""
            snapshot.phase = "starting (redelivered)"
            snapshot.save()
    return snapshot


def lease_wait(account_id: int, run_key: str, now: datetime | None = None) -> float | None:
    """Seconds until the collection holding the account lets go, when a scheduled slot that
    has no complete snapshot yet was skipped because of it; None when there is nothing to wait
    for (the slot is done, the run was manual, or the account is free)."""
    now = now or timezone.now()
    if not run_key:
        return None
    if Snapshot.objects.filter(
        account_id=account_id, run_key=run_key, status=SnapshotStatus.COMPLETE
    ).exists():
        return None
    until = Account.objects.filter(pk=account_id).values_list("collecting_until", flat=True).first()
    if until is None or until <= now:
        return None
    return (until - now).total_seconds()


def _renew(account: Account) -> None:
    """Extend the lease of a collection that is still working (each phase is a heartbeat), so
    that a long run without a time limit (``manage.py collect``) is not taken for a dead one."""
    until = timezone.now() + timedelta(seconds=settings.KEYGOV_COLLECT_LEASE)
    if until <= (account.collecting_until or until):
        return
    if Account.objects.filter(pk=account.pk, collecting_until=account.collecting_until).update(
        collecting_until=until
    ):
        account.collecting_until = until


def _release(account: Account) -> None:
    Account.objects.filter(pk=account.pk, collecting_until=account.collecting_until).update(
        collecting_until=None
    )


def _fail(snapshot: Snapshot, error: str) -> Snapshot:
    # Only a running snapshot fails: one taken over by a newer run keeps that run's outcome.
    Snapshot.objects.filter(pk=snapshot.pk, status=SnapshotStatus.RUNNING).update(
        status=SnapshotStatus.FAILED, phase="", error=error, finished_at=timezone.now()
    )
    snapshot.refresh_from_db()
    log.warning("account %s: collection failed: %s", snapshot.account.account_id, error)
    return snapshot


def read_account(
    account: Account,
    *,
    session: boto3.Session | None = None,
    progress: Progress | None = None,
) -> AccountInventory:
    """All the AWS calls of one collection (no database writes)."""
    say = progress or (lambda _: None)
    known = known_keys(account)
    say("assuming the read role" if account.role_arn else "using the default credentials")
    conn = connect(read_target(account), aws_settings(), session=session)
    return collect_inventory(conn, account.account_id, known=known, progress=say)


def collect_account(
    account_id: int,
    *,
    run_key: str = "",
    session: boto3.Session | None = None,
    progress: Progress | None = None,
    now: datetime | None = None,
) -> Snapshot | None:
    """Collect one account into a new snapshot. AWS errors give a failed snapshot, never a
    change to the data; None when the run was skipped (see ``start_snapshot``)."""
    account = Account.objects.get(pk=account_id)
    snapshot = start_snapshot(account, run_key=run_key, now=now)
    if snapshot is None:
        return None

    def say(phase: str) -> None:
        _renew(account)
        Snapshot.objects.filter(pk=snapshot.pk, status=SnapshotStatus.RUNNING).update(phase=phase)
        if progress:
            progress(phase)

    try:
        try:
            inventory = read_account(account, session=session, progress=say)
        except AWS_ERRORS as exc:
            return _fail(snapshot, describe_aws_error(exc))
        say(f"writing {len(inventory.users)} users and {len(inventory.keys)} keys")
        ingest_inventory(snapshot, inventory, settings.KEYGOV_OWNER_TAG_KEYS)
        if progress:
            progress(
                f"complete: {snapshot.user_count} users, {snapshot.key_count} keys, "
                f"{snapshot.api_calls} AWS calls"
            )
        return snapshot
    except SoftTimeLimitExceeded:
        return _fail(
            snapshot,
            f"Timed out after {settings.KEYGOV_COLLECT_TIME_LIMIT - 30} s; nothing changed.",
        )
    except SnapshotSuperseded:
        log.warning("account %s: run taken over by a newer collection", account.account_id)
        snapshot.refresh_from_db()
        return snapshot
    except Exception as exc:
        # A bug or a database failure: the transaction rolled back; record it, then let it surface.
        try:
            _fail(snapshot, f"Internal error while collecting: {type(exc).__name__}: {exc}")
        except Exception:
            log.exception("account %s: could not record the failure", account.account_id)
        raise
    finally:
        try:
            _release(account)
        except Exception:
            # The lease then simply expires (KEYGOV_COLLECT_LEASE).
            log.exception("account %s: could not release the collection lease", account.account_id)
