"""KPIs on a hand-built organisation equal the values worked out by hand; roll-ups store them
per day and can be rebuilt from the key history."""

from __future__ import annotations

import io
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command

from inventory.choices import CloseReason, ExceptionStatus, KeyStatus, KpiScope
from inventory.models import AccessKey, Finding, KeyMigration, KpiRollup, PolicyException
from inventory.services.evaluation import evaluate_account
from inventory.services.kpis import (
    COUNT_FIELDS,
    current_kpis,
    live_counts,
    rebuild_rollups,
    roll_up_account,
    trend,
)
from inventory.services.role_migrations import mark_migration
from tests.gov_factories import (
    NOW,
    ROLE_ARN,
    AccessKeyFactory,
    AccountFactory,
    IamUserFactory,
    ago,
    days,
    key_record,
    person,
    take_snapshot,
    user_record,
)

pytestmark = pytest.mark.django_db

ALICE, BOB, CAROL, ERIN = (f"{n}@example.com" for n in ("alice", "bob", "carol", "erin"))


@dataclass
class Org:
    a: object
    b: object
    keys: dict


def _key(user, age: float, used: float | None = 1, **kw) -> AccessKey:
    return AccessKeyFactory(
        user=user, created=ago(age), last_used_at=None if used is None else ago(used), **kw
    )


def _closed(key, opened: float, closed: float) -> Finding:
    return Finding.objects.create(
        key=key,
        account=key.account,
        kind="overdue",
        opened_at=ago(opened),
        closed_at=ago(closed),
        close_reason=CloseReason.ROTATED,
    )


def build_org(now=NOW) -> Org:
    """Two accounts, worked out by hand at NOW (ages in days):

    account A                                       account B
      alice (alice@)  a1 10d ok, a2 100d overdue      dave (alice@)  d1 200d excepted
      bob (bob@)      b1 80d due_soon, b2 inactive    erin (erin@)   e1 400d overdue,
      svc (unowned)   s1 50d never used: unused                      e2 deleted,
      carol (carol@)  no keys                                        e3 20d migrated
      root            r 5d: overdue                   gone (deleted user)
    Closed findings: a1 2 days, b1 5 days, d1 11 days (in the last 90 days), a1 1 day (100
    days ago: outside). Open: e1 (by hand), a2, r, s1 (by the evaluation).
    Migrations: e3 verified 10 days ago (this quarter), e2 verified in March (last quarter),
    b2 verified 5 days ago but withdrawn."""
    a, b = AccountFactory(name="alpha"), AccountFactory(name="beta")
    alice = IamUserFactory(account=a, name="alice", owner=ALICE)
    bob = IamUserFactory(account=a, name="bob", owner=BOB)
    svc = IamUserFactory(account=a, name="svc", owner="")
    IamUserFactory(account=a, name="carol", owner=CAROL)
    root = IamUserFactory(account=a, name="<root_account>", is_root=True)
    dave = IamUserFactory(account=b, name="dave", owner=ALICE)
    erin = IamUserFactory(account=b, name="erin", owner=ERIN)
    IamUserFactory(account=b, name="gone", owner=ERIN, deleted=True, deleted_at=ago(3))
    k = {
        "a1": _key(alice, 10),
        "a2": _key(alice, 100),
        "b1": _key(bob, 80),
        "b2": _key(bob, 400, used=300, status=KeyStatus.INACTIVE),
        "s1": _key(svc, 50, used=None),
        "r": _key(root, 5),
        "d1": _key(dave, 200),
        "e1": _key(erin, 400),
        "e2": _key(erin, 30, deleted=True, deleted_at=ago(2)),
        "e3": _key(erin, 20),
    }
    _closed(k["a1"], 20, 18)
    _closed(k["b1"], 35, 30)
    _closed(k["d1"], 16, 5)
    _closed(k["a1"], 101, 100)
    Finding.objects.create(key=k["e1"], account=b, kind="overdue", opened_at=ago(3))
    requester, approver = person("req", "owner", ALICE), person("boss", "approver")
    PolicyException.objects.create(
        key=k["d1"],
        account=b,
        reason="vendor appliance",
        expires_at=NOW + days(30),
        status=ExceptionStatus.APPROVED,
        requested_by=requester,
        requested_at=ago(20),
        decided_by=approver,
        decided_at=ago(19),
    )
    last_quarter = datetime(2026, 3, 20, tzinfo=UTC)
    marks = [("e3", ago(10), None), ("e2", last_quarter, None), ("b2", ago(5), ago(4))]
    for key, verified, withdrawn in marks:
        KeyMigration.objects.create(
            key=k[key],
            account=k[key].account,
            status="migrated",
            role_arn=ROLE_ARN,
            marked_by=requester,
            marked_at=ago(60),
            verified_at=verified,
            verified_by="unused",
            withdrawn_at=withdrawn,
        )
    evaluate_account(a, now)
    evaluate_account(b, now)
    return Org(a=a, b=b, keys=k)


@pytest.fixture
def org() -> Org:
    return build_org()


def test_it_computes_the_four_kpis_for_the_organisation(org):
    kpis = current_kpis(NOW)
    # 1. six IAM users (root and the deleted user excluded), five with an active key
    assert (kpis.users, kpis.users_with_active_keys) == (6, 5)
    assert kpis.pct_users_with_active_keys == pytest.approx(500 / 6)
    # 2. eight active keys (root included) aged 10+100+80+50+5+200+400+20 = 865 days
    assert kpis.active_keys == 8
    assert kpis.avg_active_key_age_days == pytest.approx(865 / 8)
    # 3. findings closed in the last 90 days after 2, 5 and 11 days
    assert kpis.findings_closed == 3
    assert kpis.mttr_days == pytest.approx(6.0)
    # 4. one migration verified this quarter (March's and the withdrawn one do not count)
    assert kpis.migrations_verified_quarter == 1


def test_it_computes_compliance_states_owners_and_buckets_for_the_organisation(org):
    kpis = current_kpis(NOW)
    # a1 ok, b1 due soon, d1 excepted out of 8 active keys
    assert kpis.compliance_rate == pytest.approx(37.5)
    assert kpis.states == {
        "ok": 1,
        "due_soon": 1,
        "overdue": 3,
        "unused": 1,
        "excepted": 1,
        "migrated": 1,
        "inactive": 1,
    }
    assert kpis.unowned_keys == 2  # svc's key and the root key
    assert kpis.users_with_two_active_keys == 2  # alice and erin
    assert kpis.open_findings == 4  # e1, a2, r, s1
    assert kpis.age_buckets == {
        "age_0_30": 3,  # a1, r, e3
        "age_31_60": 1,  # s1
        "age_61_90": 1,  # b1
        "age_91_180": 1,  # a2
        "age_181_365": 1,  # d1
        "age_over_365": 1,  # e1 (b2 is inactive)
    }


def test_it_computes_the_kpis_of_one_account(org):
    a = current_kpis(NOW, account=org.a)
    assert (a.users, a.users_with_active_keys, a.users_with_two_active_keys) == (4, 3, 1)
    assert a.pct_users_with_active_keys == pytest.approx(75.0)
    assert a.avg_active_key_age_days == pytest.approx(245 / 5)
    assert a.mttr_days == pytest.approx(3.5)
    assert a.migrations_verified_quarter == 0
    assert a.compliance_rate == pytest.approx(40.0)
    assert a.unowned_keys == 2
    assert a.states == {
        "ok": 1,
        "due_soon": 1,
        "overdue": 2,
        "unused": 1,
        "excepted": 0,
        "migrated": 0,
        "inactive": 1,
    }
    assert list(a.age_buckets.values()) == [2, 1, 1, 1, 0, 0]

    b = current_kpis(NOW, account=org.b)
    assert (b.users, b.users_with_active_keys, b.users_with_two_active_keys) == (2, 2, 1)
    assert b.pct_users_with_active_keys == pytest.approx(100.0)
    assert b.avg_active_key_age_days == pytest.approx(620 / 3)
    assert b.mttr_days == pytest.approx(11.0)
    assert b.migrations_verified_quarter == 1
    assert b.compliance_rate == pytest.approx(100 / 3)
    assert b.unowned_keys == 0
    assert list(b.age_buckets.values()) == [1, 0, 0, 0, 1, 1]


def test_it_computes_the_kpis_of_one_owner_across_accounts(org):
    alice = current_kpis(NOW, owner=ALICE)  # alice in A and dave in B
    assert (alice.users, alice.users_with_active_keys, alice.users_with_two_active_keys) == (
        2,
        2,
        1,
    )
    assert alice.pct_users_with_active_keys == pytest.approx(100.0)
    assert alice.avg_active_key_age_days == pytest.approx(310 / 3)
    assert alice.mttr_days == pytest.approx(6.5)  # 2 and 11 days
    assert alice.compliance_rate == pytest.approx(200 / 3)  # a1 ok, d1 excepted; a2 overdue
    assert alice.open_findings == 1
    assert list(alice.age_buckets.values()) == [1, 0, 0, 1, 1, 0]

    erin = current_kpis(NOW, owner=ERIN)
    assert erin.users == 1  # the deleted user "gone" is not counted
    assert erin.avg_active_key_age_days == pytest.approx(210.0)
    assert erin.compliance_rate == pytest.approx(0.0)
    assert erin.migrations_verified_quarter == 1
    assert erin.mttr_days is None

    bob = current_kpis(NOW, owner=BOB)
    assert bob.states["inactive"] == 1
    assert bob.active_keys == 1
    assert bob.mttr_days == pytest.approx(5.0)

    carol = current_kpis(NOW, owner=CAROL)
    assert (carol.users, carol.pct_users_with_active_keys) == (1, 0.0)
    assert carol.avg_active_key_age_days is None
    assert carol.compliance_rate is None


def test_it_counts_only_findings_closed_in_the_trailing_90_days(org):
    """GIVEN the closed findings of the organisation WHEN the KPIs are computed 17 days from
    now THEN the one closed 30 days ago (now 47) still counts and the one closed 100 days ago
    does not; computed 61 days later, b1's (closed 91 days before) drops out."""
    later = current_kpis(NOW + days(17))
    assert (later.findings_closed, later.mttr_days) == (3, pytest.approx(6.0))
    much_later = current_kpis(NOW + days(61))
    assert much_later.findings_closed == 2
    assert much_later.mttr_days == pytest.approx(6.5)  # 2 and 11 days


@pytest.mark.parametrize(
    ("age", "bucket"),
    [
        (0, "age_0_30"),
        (30, "age_0_30"),
        (31, "age_31_60"),
        (60, "age_31_60"),
        (61, "age_61_90"),
        (90, "age_61_90"),
        (91, "age_91_180"),
        (180, "age_91_180"),
        (181, "age_181_365"),
        (365, "age_181_365"),
        (366, "age_over_365"),
        (2000, "age_over_365"),
    ],
)
def test_it_puts_an_active_key_in_exactly_one_age_bucket(age, bucket):
    # 10 minutes past the whole day: ages are whole days rounded down.
    AccessKeyFactory(created=NOW - timedelta(days=age, minutes=10))
    AccessKeyFactory(created=NOW - timedelta(days=age, minutes=10), status=KeyStatus.INACTIVE)
    buckets = current_kpis(NOW).age_buckets
    assert buckets == {name: int(name == bucket) for name in buckets}


def test_it_rolls_up_account_owner_and_org_rows_equal_to_the_live_values(org):
    roll_up_account(org.a, NOW)
    roll_up_account(org.b, NOW)

    rows = KpiRollup.objects.filter(day=NOW.date())
    assert sorted((r.scope, r.account_id, r.owner) for r in rows) == sorted(
        [
            (KpiScope.ORG, None, ""),
            (KpiScope.ACCOUNT, org.a.pk, ""),
            (KpiScope.ACCOUNT, org.b.pk, ""),
            (KpiScope.OWNER, org.a.pk, ALICE),
            (KpiScope.OWNER, org.a.pk, BOB),
            (KpiScope.OWNER, org.a.pk, CAROL),
            (KpiScope.OWNER, org.b.pk, ALICE),
            (KpiScope.OWNER, org.b.pk, ERIN),
        ]
    )
    for row in rows:
        if row.scope == KpiScope.ORG:
            live = current_kpis(NOW)
        elif row.scope == KpiScope.ACCOUNT:
            live = current_kpis(NOW, account=row.account)
        else:
            live = current_kpis(NOW, account=row.account, owner=row.owner)
        assert {f: getattr(row, f) for f in COUNT_FIELDS} == live.counts, row

    [(day, org_kpis)] = trend()
    assert day == NOW.date()
    assert org_kpis.mttr_days == pytest.approx(6.0)
    assert org_kpis.avg_active_key_age_days == pytest.approx(865 / 8)
    [(_, alice)] = trend(owner=ALICE)
    assert alice.counts == current_kpis(NOW, owner=ALICE).counts


def test_it_reads_the_trend_by_day_for_the_org_an_account_and_an_owner():
    """GIVEN the organisation evaluated and rolled up on three consecutive days
    WHEN the trend is read THEN it holds one entry per day, oldest first, whose average
    age grows by one day a day."""
    moments = [NOW - days(2), NOW - days(1), NOW]
    org = build_org(now=moments[0])
    for now in moments:
        for account in (org.a, org.b):
            evaluate_account(account, now)
            roll_up_account(account, now)

    org_trend = trend()
    assert [d for d, _ in org_trend] == [m.date() for m in moments]
    assert [k.avg_active_key_age_days for _, k in org_trend] == pytest.approx(
        [(865 - 16) / 8, (865 - 8) / 8, 865 / 8]
    )
    account_trend = trend(account=org.a)
    assert [k.active_keys for _, k in account_trend] == [5, 5, 5]
    assert [k.avg_active_key_age_days for _, k in account_trend] == pytest.approx(
        [(245 - 10) / 5, (245 - 5) / 5, 245 / 5]
    )
    owner_trend = trend(owner=ALICE)
    assert [k.users for _, k in owner_trend] == [2, 2, 2]
    assert [k.avg_active_key_age_days for _, k in owner_trend] == pytest.approx(
        [(310 - 6) / 3, (310 - 3) / 3, 310 / 3]
    )
    assert [d for d, _ in trend(since=moments[1].date())] == [m.date() for m in moments[1:]]


def test_it_carries_an_account_forward_in_the_org_row_until_it_reports_again():
    """GIVEN account A rolled up on two days and account B only on the first
    WHEN the org row of the second day is read THEN it adds A's second day to B's first."""
    a_key = AccessKeyFactory(created=ago(10))
    b_key = AccessKeyFactory(created=ago(20))
    roll_up_account(a_key.account, NOW - days(1))
    roll_up_account(b_key.account, NOW - days(1))
    AccessKeyFactory(user=a_key.user, created=ago(1))
    roll_up_account(a_key.account, NOW)

    first, second = trend()
    assert first[1].active_keys == 2
    assert second[1].active_keys == 3
    assert second[1].active_key_age_days_sum == 10 + 1 + 19


def test_it_computes_live_counts_per_owner_in_one_pass(org):
    by_owner = live_counts(NOW, group="owner")
    assert set(by_owner) == {ALICE, BOB, CAROL, ERIN, ""}
    assert by_owner[ALICE]["active_keys"] == 3
    assert by_owner[""]["unowned_keys"] == 2


# --- rebuilding roll-ups from the key history ------------------------------------------------

D = datetime(2026, 5, 10, 9, 0, tzinfo=UTC)


def _history():
    """Three days of snapshots of two accounts through the real ingest, with a rotation, a
    deletion, a second snapshot in one day, a deleted user and a verified migration."""
    a, b = AccountFactory(name="alpha"), AccountFactory(name="beta")
    a_users = [
        user_record(a, "alice", ALICE),
        user_record(a, "svc"),
        user_record(a, "<root_account>", is_root=True),
    ]
    b_users = [user_record(b, "erin", ERIN), user_record(b, "dave", ALICE)]
    k1 = key_record("AKIAK1", "alice", D - days(100), last_used_at=D - days(1))
    k2 = key_record("AKIAK2", "alice", D - days(10), last_used_at=D - days(1))
    k3 = key_record("AKIAK3", "svc", D - days(50))
    root = key_record("ROOT-A", "<root_account>", D - days(5), is_root=True)
    k4 = key_record("AKIAK4", "erin", D - days(80), last_used_at=D - days(1))
    k5 = key_record("AKIAK5", "dave", D - days(200), status=KeyStatus.INACTIVE)

    take_snapshot(a, D, a_users, [k1, k2, k3, root])
    take_snapshot(b, D, b_users, [k4, k5])
    manager = person("manager", "approver")
    mark_migration(
        AccessKey.objects.get(access_key_id="AKIAK5"),
        by=manager,
        status="migrating",
        role_arn=ROLE_ARN,
        now=D + timedelta(hours=1),
    )

    day2 = D + days(1)
    k1_off = key_record("AKIAK1", "alice", k1.created, last_used_at=D, status=KeyStatus.INACTIVE)
    k3_used = key_record("AKIAK3", "svc", k3.created, last_used_at=day2 - timedelta(hours=1))
    take_snapshot(a, day2, a_users, [k1_off, k2, k3_used, root])
    take_snapshot(b, day2, b_users, [k4])
    k6 = key_record("AKIAK6", "svc", day2 + timedelta(hours=2))
    take_snapshot(a, day2 + timedelta(hours=9), a_users, [k1_off, k2, k3_used, root, k6])

    day3 = D + days(2)
    take_snapshot(a, day3, a_users, [k2, k3_used, root, k6])
    take_snapshot(b, day3, b_users[:1], [k4])
    return a, b


def _all_rows() -> list[dict]:
    fields = ["scope", "account_id", "owner", "day", *COUNT_FIELDS]
    return list(KpiRollup.objects.order_by("scope", "account_id", "owner", "day").values(*fields))


def test_it_rebuilds_the_rollups_from_the_key_history():
    """GIVEN three days of snapshots, each of which wrote its roll-ups
    WHEN every roll-up is rebuilt from the history
    THEN the rebuilt rows equal the ones written live, for every scope and day."""
    a, b = _history()
    live = _all_rows()
    assert {r["day"] for r in live} == {D.date(), (D + days(1)).date(), (D + days(2)).date()}
    org = [r for r in live if r["scope"] == KpiScope.ORG]
    # day 1: k1 k2 k3 root k4 active; day 2: k2 k3 root k4 k6; day 3: k2 k3 root k4 k6
    assert [r["active_keys"] for r in org] == [5, 5, 5]
    assert [r["migrations_verified_quarter"] for r in org] == [0, 1, 1]
    assert [r["users"] for r in org] == [4, 4, 3]  # dave gone on day 3
    assert [r["findings_closed"] for r in org] == [0, 2, 2]  # k1 rotated, k3 used

    written = rebuild_rollups()

    assert written == 6  # two accounts x three days
    assert _all_rows() == live
    assert [k.active_keys for _, k in trend(account=a)] == [4, 4, 4]
    assert [k.migrations_verified_quarter for _, k in trend(account=b)] == [0, 1, 1]


def test_it_rebuilds_the_rollups_with_the_command():
    _history()
    live = _all_rows()
    KpiRollup.objects.all().delete()
    out = io.StringIO()
    call_command("rebuild_kpis", stdout=out)
    assert "6 account-days of roll-ups rebuilt" in out.getvalue()
    assert _all_rows() == live


def test_it_averages_key_ages_in_whole_days_as_each_key_page_shows_them():
    # 10 days 23 hours is 10 days old, 20 days 23 hours is 20: the average is 15, not 15.96.
    AccessKeyFactory(created=NOW - timedelta(days=10, hours=23))
    AccessKeyFactory(created=NOW - timedelta(days=20, hours=23))
    kpis = current_kpis(NOW)
    assert kpis.active_key_age_days_sum == 30
    assert kpis.avg_active_key_age_days == 15.0


def test_it_counts_a_key_newer_than_the_moment_as_0_days_old_in_the_first_bucket():
    AccessKeyFactory(created=NOW + timedelta(minutes=5))
    kpis = current_kpis(NOW)
    assert (kpis.active_keys, kpis.age_0_30, kpis.avg_active_key_age_days) == (1, 1, 0.0)


def test_it_finds_an_owner_whatever_the_case_of_the_e_mail_asked_for(org):
    assert current_kpis(NOW, owner=ALICE.upper()).counts == current_kpis(NOW, owner=ALICE).counts
    roll_up_account(org.a, NOW)
    assert [k.active_keys for _, k in trend(owner=ALICE.upper())] == [
        k.active_keys for _, k in trend(owner=ALICE)
    ]
    assert trend(owner=ALICE)


@pytest.mark.django_db(transaction=True)
def test_it_loses_no_account_in_the_org_row_when_two_accounts_roll_up_at_once():
    """GIVEN accounts A and B rolled up, then each gaining a key
    WHEN both roll up at the same moment, B while A's transaction is still open
    THEN the org row counts both new keys (B waited for A's row, then summed it)."""
    from django.db import connection, connections, transaction

    if connection.vendor != "postgresql":
        pytest.skip("SQLite serialises every write transaction anyway")
    a, b = AccessKeyFactory(created=ago(10)), AccessKeyFactory(created=ago(20))
    roll_up_account(a.account, NOW)
    roll_up_account(b.account, NOW)
    AccessKeyFactory(user=a.user, created=ago(1))
    AccessKeyFactory(user=b.user, created=ago(2))
    a_written, errors = threading.Event(), []

    def roll_up_a():
        try:
            with transaction.atomic():
                roll_up_account(a.account, NOW)
                a_written.set()
                time.sleep(0.5)  # B starts its roll-up while this transaction is open
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            a_written.set()
            connections.close_all()

    thread = threading.Thread(target=roll_up_a)
    thread.start()
    assert a_written.wait(10)
    roll_up_account(b.account, NOW)
    thread.join(10)

    assert errors == []
    org_row = KpiRollup.objects.get(scope=KpiScope.ORG, day=NOW.date())
    assert org_row.active_keys == 4
