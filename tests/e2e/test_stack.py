"""The compose stack's processes, without Docker (issue 6, item 1): gunicorn, a Celery worker and
beat on PostgreSQL and Redis against moto; beat alone starts the collection."""

from __future__ import annotations

import json
import re

import pytest

from tests.e2e.conftest import Http, wait_until
from tests.moto_org import create_organization, create_user, iam_in

pytestmark = pytest.mark.e2e


def test_it_collects_on_beats_schedule_and_serves_the_figures_through_gunicorn(aws, stack):
    """GIVEN two member accounts in moto (3 users, 3 keys between them) registered in keygov,
    and gunicorn (2 workers), one Celery worker and beat firing every minute
    WHEN nobody asks for a collection
    THEN within 90 s both accounts have one complete snapshot of the beat's slot, a viewer
    signed in over HTTP sees the collected figures on the overview, and /health/ answers 200."""
    ids = create_organization(aws, "prod", "dev")
    create_user(iam_in(aws, ids["prod"]), "alice", {"owner": "alice@example.com"}, keys=2)
    create_user(iam_in(aws, ids["prod"]), "deployer")
    create_user(iam_in(aws, ids["dev"]), "build-bot", keys=1)
    stack.add_accounts(ids)
    stack.env["KEYGOV_COLLECT_CRON"] = "* * * * *"

    web = stack.gunicorn()
    stack.worker()
    beat = stack.beat()

    def collected():
        rows = {name: stack.snapshots(account_id) for name, account_id in ids.items()}
        done = all(any(r[0] == "complete" for r in snaps) for snaps in rows.values())
        return rows if done else None

    rows = wait_until(collected, 90, interval=1, what="a complete snapshot of both accounts")

    assert "Sending due task collect-all-accounts" in beat.text()
    for name, snaps in rows.items():
        assert len(snaps) == 1, (name, snaps)
        status, run_key, _key_count, error = snaps[0]
        assert status == "complete", error
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\dZ", run_key), run_key  # beat's slot
    assert rows["prod"][0][2] == 2 and rows["dev"][0][2] == 1

    viewer = Http(web.port).login("e2e-viewer")
    status, html, _ = viewer.get("/")
    assert status == 200
    # 2 of the 3 users have an active key; every key is younger than the policy's limit.
    assert 'data-kpi="pct_users_with_active_keys">66.7 %<' in html, html
    assert 'data-kpi="compliance_rate">100.0 %<' in html
    status, html, _ = viewer.get("/accounts/")
    assert status == 200
    assert ids["prod"] in html and ids["dev"] in html

    status, body, _ = Http(web.port).get("/health/")
    assert status == 200, body
    health = json.loads(body)
    assert {name: check["status"] for name, check in health["checks"].items()} == {
        "database": "ok",
        "broker": "ok",
        "snapshot": "ok",
    }, health
