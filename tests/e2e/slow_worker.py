"""keygov's Celery app for the fault tests, with every collection held for
``KEYGOV_E2E_HOLD_SECONDS`` once it has started (its snapshot running, its account leased), before
it reads AWS: a test can then kill the worker in the middle of a collection. Only when that
variable is set: importing the module elsewhere changes nothing.

    celery -A tests.e2e.slow_worker worker ...
"""

import os
import time

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "keygov.settings")

from keygov.celery import app

django.setup()

from inventory.services import collection  # noqa: E402

HELD_PHASE = "e2e: held before reading AWS"
_read_account = collection.read_account


def _held_read_account(account, *, session=None, progress=None):
    if progress:
        progress(HELD_PHASE)
    time.sleep(float(os.environ.get("KEYGOV_E2E_HOLD_SECONDS", "25")))
    return _read_account(account, session=session, progress=progress)


# Only in the worker started for it (never in a process that merely imports this module).
if os.environ.get("KEYGOV_E2E_HOLD_SECONDS"):
    collection.read_account = _held_read_account

__all__ = ["app"]
