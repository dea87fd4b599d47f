"""Celery tasks: thin wrappers over the services. They take ids and return a short summary."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from inventory.models import Account
from inventory.services import collection, evaluation
from keygov.cron import previous_fire_time

# How often a scheduled slot waits for a collection that holds its account (a run of another
# slot, a manual run, or a dead worker's run whose lease has not expired yet).
LEASE_WAITS = 3
# A worker's clock a little behind beat's must still name the slot beat fired.
SLOT_CLOCK_TOLERANCE = timedelta(seconds=60)


@shared_task(
    bind=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=5,
    retry_jitter=True,
    max_retries=3,
)
def collect_account(self, account_id: int, run_key: str = "") -> str:
    try:
        snapshot = collection.collect_account(account_id, run_key=run_key)
    except Account.DoesNotExist:
        # Deleted between the fan-out and this run: nothing to collect.
        return f"account {account_id}: no longer exists"
    if snapshot is None:
        wait = collection.lease_wait(account_id, run_key)
        if wait is not None and self.request.retries < LEASE_WAITS:
            # The slot is not collected and someone holds the account, perhaps a worker that
            # died mid-run (its message came back to us): try again once its lease is over.
            raise self.retry(countdown=wait + 5, max_retries=LEASE_WAITS)
        return f"account {account_id}: skipped (already collected or in progress)"
    summary = (
        f"account {snapshot.account.account_id}: {snapshot.status}, {snapshot.user_count} users, "
        f"{snapshot.key_count} keys, {snapshot.api_calls} AWS calls"
    )
    if snapshot.error:
        summary += f" ({snapshot.error})"
    return summary


@shared_task
def collect_all_accounts(run_key: str = "") -> str:
    """Fan out one collection per enabled account, all tagged with the schedule's current slot so
    that a second delivery (or a second beat) yields no second snapshot."""
    if not run_key:
        slot = previous_fire_time(
            settings.KEYGOV_COLLECT_SCHEDULE, timezone.now() + SLOT_CLOCK_TOLERANCE
        )
        run_key = slot.strftime("%Y-%m-%dT%H:%MZ")
    ids = list(Account.objects.filter(enabled=True).values_list("pk", flat=True))
    for account_id in ids:
        collect_account.delay(account_id, run_key=run_key)
    return f"slot {run_key}: {len(ids)} account collections queued"


@shared_task(
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=5,
    retry_jitter=True,
    max_retries=3,
)
def evaluate_all_accounts() -> str:
    """Daily re-judgement: keys age and exceptions expire between snapshots too."""
    results = evaluation.evaluate_all_accounts()
    done = [r for r in results.values() if not isinstance(r, Exception)]
    opened = sum(r.opened for r in done)
    closed = sum(r.closed for r in done)
    summary = f"{len(done)} accounts evaluated: {opened} findings opened, {closed} closed"
    if len(done) < len(results):
        summary += f"; {len(results) - len(done)} failed (see the log)"
    return summary


@shared_task(
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=5,
    retry_jitter=True,
    max_retries=3,
)
def fulfil_key_request(request_id: int) -> str:
    """Create an approved key through the account's write role (services/key_requests.py).
    Idempotent: a redelivered task finds the request fulfilled, failed or claimed, and stops.
    The summary names the key id, never its secret."""
    from inventory.services import key_requests

    return key_requests.fulfil_request(request_id)


@shared_task(
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=5,
    retry_jitter=True,
    max_retries=3,
)
def send_owner_alerts() -> str:
    """The daily digests: owners, approvers, and admins for keys nobody can be mailed about."""
    from inventory.services import alerts

    return alerts.send_alerts().summary()


@shared_task
def lookup_key_usage(key_id: int) -> str:
    """Run the CloudTrail lookup that the key page started for ``key_id`` (AccessKey.pk)."""
    from inventory.services import usage

    lookup = usage.pending_lookup(key_id)
    if lookup is None:
        return f"key {key_id}: no lookup waiting (already running or done)"
    lookup = usage.run_lookup(lookup.pk)
    if lookup.error:
        return f"key {key_id}: {lookup.status} ({lookup.error})"
    return f"key {key_id}: {lookup.status}, {(lookup.summary or {}).get('events', 0)} events"
