"""The bundled AWS emulator (moto in server mode) and the demo organisation seeded into it.

Everything here is emulator side: keygov's collector never imports this module and has no demo
code path; it only sees ``AWS_ENDPOINT_URL`` pointing at the emulator.

The organisation is deterministic. ``build_organisation(seed)`` is a pure plan (names, tags, which
users have passwords and keys, key ages as offsets); ``seed_emulator(seed)`` writes it into moto's
in-process backends, with moto's random generator seeded so that account ids, user ids and access
key ids are the same on every run. Times are offsets from the current hour, so the demo always
shows fresh, due-soon and overdue keys; root keys alone have fixed dates, because the collector
derives a root key's stand-in id from its creation time.

moto's credential report differs from AWS's (no ``<root_account>`` row, ``not_supported`` where AWS
writes the region and service of the last use, a fixed 2015 generation time). For IAM backends that
hold a demo account, ``install_emulator_patches`` makes the emulator write the report as AWS does.
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from moto.core import DEFAULT_ACCOUNT_ID
from moto.core.responses import ActionResult
from moto.iam.exceptions import ReportNotPresentException
from moto.iam.models import AccessKeyLastUsed, IAMBackend, iam_backends
from moto.iam.responses import IamResponse
from moto.moto_api._internal import mock_random
from moto.moto_api._internal.models import moto_api_backend
from moto.organizations.models import organizations_backends
from moto.server import ThreadedMotoServer

DEFAULT_SEED = 42
DEFAULT_PORT = 5005
REGION = "us-east-1"
ROLE_NAME = "KeygovRead"
EXTERNAL_ID = "keygov-demo"
# The dummy credentials act in moto's default account, which becomes the management account.
MANAGEMENT_ACCOUNT_ID = DEFAULT_ACCOUNT_ID
DOMAIN = "example.com"
# The demo's keygov admin: an owner of a few keys, so per-owner pages have something to show.
ADMIN_EMAIL = f"maria.garcia@{DOMAIN}"

# Attribute set on a moto IAM backend that holds a demo account (see _DemoIam). moto's reset
# replaces a backend's __dict__, so a reset emulator goes back to moto's own behaviour.
_DEMO_ATTR = "keygov_demo"


class EmulatorError(Exception):
    """The emulator could not be started."""


# --- the plan -------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyPlan:
    age: timedelta  # created this long before the anchor
    active: bool
    last_used_ago: timedelta | None = None  # None: never used
    service: str = ""
    region: str = ""


@dataclass(frozen=True)
class UserPlan:
    name: str
    path: str
    age: timedelta
    tags: tuple[tuple[str, str], ...]
    console: bool  # a login profile: a human
    mfa: bool = False
    password_last_used_ago: timedelta | None = None
    keys: tuple[KeyPlan, ...] = ()


@dataclass(frozen=True)
class RootKeyPlan:
    # Absolute: the collector names a root key ROOT-<account>-<created>, which must not drift.
    created: datetime
    active: bool
    last_used_ago: timedelta | None
    service: str = ""
    region: str = ""


@dataclass(frozen=True)
class AccountPlan:
    name: str
    email: str
    created: datetime
    users: tuple[UserPlan, ...]
    root_keys: tuple[RootKeyPlan, ...] = ()
    root_mfa: bool = True
    root_password_last_used_ago: timedelta | None = None


@dataclass(frozen=True)
class _AccountSpec:
    name: str
    email: str
    created: datetime
    humans: int
    services: tuple[str, ...]
    regions: tuple[str, ...]
    name_style: str  # how this account's admins named human users
    unowned_rate: float
    never_used_rate: float
    root_keys: tuple[RootKeyPlan, ...] = ()
    root_mfa: bool = True
    extra_users: tuple[str, ...] = ()  # throwaway users nobody claims


# (path, services the workload calls, owning team)
SERVICE_USERS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "ci-deployer": ("/ci/", ("ecr", "cloudformation", "sts", "s3"), "platform"),
    "terraform-ci": ("/ci/", ("iam", "sts", "s3", "dynamodb", "ec2"), "platform"),
    "github-actions-deploy": ("/ci/", ("ecr", "ecs", "sts"), "platform"),
    "jenkins-build": ("/ci/", ("ecr", "s3"), "platform"),
    "svc-billing-export": ("/service/", ("s3", "ce"), "finops"),
    "svc-cur-reports": ("/service/", ("s3", "athena"), "finops"),
    "svc-payments-webhook": ("/service/", ("sqs", "sns", "kms"), "payments"),
    "svc-ledger-archiver": ("/service/", ("s3", "kms"), "payments"),
    "svc-notifications": ("/service/", ("sns", "ses"), "growth"),
    "svc-ses-smtp": ("/service/", ("ses",), "growth"),
    "svc-search-indexer": ("/service/", ("es", "sqs"), "search"),
    "svc-media-uploads": ("/service/", ("s3",), "mobile"),
    "svc-push-gateway": ("/service/", ("sns",), "mobile"),
    "svc-identity-sync": ("/service/", ("cognito-idp", "dynamodb"), "identity"),
    "airflow-etl": ("/service/", ("s3", "glue", "athena"), "data"),
    "kinesis-clickstream-producer": ("/service/", ("kinesis",), "data"),
    "ml-training-pipeline": ("/service/", ("sagemaker", "s3"), "data"),
    "dms-replication": ("/service/", ("dms", "s3"), "data"),
    "backup-s3-sync": ("/service/", ("s3",), "sre"),
    "velero-backup": ("/service/", ("s3", "ec2"), "sre"),
    "external-dns": ("/service/", ("route53",), "sre"),
    "cert-manager-route53": ("/service/", ("route53",), "sre"),
    "prometheus-cloudwatch-exporter": ("/service/", ("cloudwatch", "tag"), "sre"),
    "legacy-sftp-upload": ("/service/", ("s3",), "payments"),
    "datadog-integration": ("/integrations/", ("cloudwatch", "ec2", "tag"), "sre"),
    "looker-redshift": ("/integrations/", ("redshift", "s3"), "data"),
    "snowflake-s3-loader": ("/integrations/", ("s3", "kms"), "data"),
    "sentry-sourcemaps": ("/integrations/", ("s3",), "mobile"),
    "cloudflare-logpush": ("/integrations/", ("s3",), "security"),
    "splunk-forwarder": ("/integrations/", ("s3", "sqs"), "security"),
    "pagerduty-cloudwatch": ("/integrations/", ("cloudwatch",), "sre"),
    "svc-sso-scim-sync": ("/service/", ("identitystore", "sso"), "identity"),
    "svc-org-audit": ("/service/", ("organizations", "iam"), "security"),
}

TEAMS = ("platform", "finops", "payments", "growth", "search", "mobile", "identity", "data", "sre",
         "security")  # fmt: skip
FIRST_NAMES = (
    "maria", "james", "wei", "priya", "olivia", "ahmed", "sofia", "lucas", "chen", "fatima",
    "noah", "elena", "david", "aisha", "mateo", "hannah", "raj", "yuki", "omar", "laura",
    "daniel", "ines", "kwame", "anna", "tomas", "mei", "samuel", "zoe", "ivan", "leila", "pedro",
    "grace", "arjun", "nina", "felix", "sara", "hugo", "amara", "ben", "clara",
)  # fmt: skip
LAST_NAMES = (
    "garcia", "smith", "zhang", "patel", "johnson", "hassan", "rossi", "martin", "li", "khan",
    "nguyen", "muller", "kim", "silva", "novak", "okafor", "tanaka", "brown", "lopez", "schmidt",
    "costa", "jensen", "ali", "dubois", "kowalski", "murphy", "sato", "cohen", "fischer", "reyes",
)  # fmt: skip
# Keys of owner tags as organisations really spell them (all in KEYGOV_OWNER_TAG_KEYS' default).
OWNER_TAG_KEYS = (("owner", 50), ("Owner", 20), ("OwnerEmail", 15), ("owner_email", 10),
                  ("OwnerContact", 5))  # fmt: skip
HUMAN_SERVICES = ("s3", "sts", "ec2", "iam", "cloudformation", "lambda", "logs", "dynamodb", "ecr",
                  "cloudwatch", "athena", "secretsmanager")  # fmt: skip
# Global services whose last use AWS reports in us-east-1.
GLOBAL_SERVICES = {"iam", "route53", "organizations", "ce", "sts", "cloudfront"}


def _t(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


ACCOUNT_SPECS = (
    _AccountSpec(
        name="acme-management", email=f"aws-management@{DOMAIN}", created=_t(2015, 6, 10, 8, 30),
        humans=12, services=("svc-billing-export", "svc-cur-reports", "svc-sso-scim-sync",
                             "svc-org-audit", "terraform-ci"),
        regions=("us-east-1",), name_style="dot", unowned_rate=0.08, never_used_rate=0.1,
    ),
    _AccountSpec(
        name="acme-prod", email=f"aws-prod@{DOMAIN}", created=_t(2016, 2, 1, 10, 5),
        humans=45, services=("ci-deployer", "terraform-ci", "github-actions-deploy",
                             "svc-payments-webhook", "svc-ledger-archiver", "svc-notifications",
                             "svc-ses-smtp", "svc-search-indexer", "svc-media-uploads",
                             "svc-push-gateway", "svc-identity-sync", "backup-s3-sync",
                             "velero-backup", "external-dns", "cert-manager-route53",
                             "prometheus-cloudwatch-exporter", "legacy-sftp-upload",
                             "datadog-integration", "sentry-sourcemaps", "cloudflare-logpush",
                             "splunk-forwarder", "pagerduty-cloudwatch"),
        regions=("us-east-1", "eu-west-1"), name_style="dot", unowned_rate=0.1,
        never_used_rate=0.08,
    ),
    _AccountSpec(
        name="acme-staging", email=f"aws-staging@{DOMAIN}", created=_t(2016, 9, 14, 15, 42),
        humans=35, services=("ci-deployer", "terraform-ci", "github-actions-deploy",
                             "jenkins-build", "svc-payments-webhook", "svc-notifications",
                             "svc-search-indexer", "svc-media-uploads", "svc-identity-sync",
                             "external-dns", "cert-manager-route53", "datadog-integration",
                             "sentry-sourcemaps", "velero-backup", "legacy-sftp-upload",
                             "pagerduty-cloudwatch", "backup-s3-sync"),
        regions=("us-east-1",), name_style="dot", unowned_rate=0.15, never_used_rate=0.12,
    ),
    _AccountSpec(
        name="acme-dev", email=f"aws-dev@{DOMAIN}", created=_t(2017, 1, 23, 9, 17),
        humans=60, services=("ci-deployer", "terraform-ci", "github-actions-deploy",
                             "jenkins-build", "svc-notifications", "svc-ses-smtp",
                             "svc-search-indexer", "svc-media-uploads", "svc-push-gateway",
                             "svc-identity-sync", "airflow-etl", "external-dns",
                             "cert-manager-route53", "datadog-integration",
                             "kinesis-clickstream-producer", "ml-training-pipeline",
                             "sentry-sourcemaps", "velero-backup", "backup-s3-sync"),
        regions=("us-east-1", "us-west-2"), name_style="initial", unowned_rate=0.2,
        never_used_rate=0.15,
    ),
    _AccountSpec(
        name="acme-data", email=f"aws-data@{DOMAIN}", created=_t(2018, 4, 3, 13, 0),
        humans=35, services=("airflow-etl", "kinesis-clickstream-producer",
                             "ml-training-pipeline", "dms-replication", "looker-redshift",
                             "snowflake-s3-loader", "terraform-ci", "ci-deployer",
                             "backup-s3-sync", "datadog-integration", "svc-cur-reports",
                             "splunk-forwarder", "svc-ledger-archiver",
                             "prometheus-cloudwatch-exporter", "github-actions-deploy"),
        regions=("us-west-2", "eu-central-1"), name_style="email", unowned_rate=0.12,
        never_used_rate=0.1,
        root_keys=(
            RootKeyPlan(created=_t(2018, 11, 2, 9, 41, 12), active=False,
                        last_used_ago=timedelta(days=1432, hours=5), service="s3",
                        region="us-west-2"),
        ),
    ),
    _AccountSpec(
        name="acme-sandbox", email=f"aws-sandbox@{DOMAIN}", created=_t(2016, 5, 19, 11, 26),
        humans=30, services=("terraform-ci", "github-actions-deploy", "jenkins-build",
                             "ml-training-pipeline", "svc-media-uploads", "legacy-sftp-upload"),
        regions=("us-east-1", "ap-southeast-2"), name_style="dash", unowned_rate=0.4,
        never_used_rate=0.35, root_mfa=False,
        extra_users=("test-user", "tmp-poc", "demo-app", "hackathon-2019", "s3-test",
                     "john-test", "lambda-poc"),
        root_keys=(
            RootKeyPlan(created=_t(2016, 8, 23, 14, 7, 31), active=True,
                        last_used_ago=timedelta(days=37, hours=3), service="ec2",
                        region="us-east-1"),
        ),
    ),
)  # fmt: skip


@dataclass(frozen=True)
class _Person:
    first: str
    last: str
    team: str

    @property
    def email(self) -> str:
        return f"{self.first}.{self.last}@{DOMAIN}"

    def user_name(self, style: str) -> str:
        return {
            "dot": f"{self.first}.{self.last}",
            "initial": f"{self.first[0]}{self.last}",
            "email": self.email,
            "dash": f"{self.first}-{self.last}",
        }[style]


def _weighted(rng: random.Random, choices: tuple[tuple[str, int], ...]) -> str:
    return rng.choices([c for c, _ in choices], weights=[w for _, w in choices])[0]


def _duration(rng: random.Random, days_from: int, days_to: int) -> timedelta:
    return timedelta(days=rng.randint(days_from, days_to), seconds=rng.randint(0, 86_399))


def _key_age(rng: random.Random) -> timedelta:
    """Spread over every age bucket and rotation state (max age 90, warning 14 days)."""
    r = rng.random()
    if r < 0.25:
        return _duration(rng, 1, 30)
    if r < 0.40:
        return _duration(rng, 31, 76)
    if r < 0.50:
        return _duration(rng, 77, 89)  # due soon
    if r < 0.72:
        return _duration(rng, 91, 365)
    return _duration(rng, 366, 2600)


class _Planner:
    def __init__(self, rng: random.Random, spec: _AccountSpec):
        self.rng = rng
        self.spec = spec

    def region(self, service: str) -> str:
        return "us-east-1" if service in GLOBAL_SERVICES else self.rng.choice(self.spec.regions)

    def last_used(
        self, age: timedelta, *, active: bool, workload: bool, services: tuple[str, ...]
    ) -> tuple[timedelta | None, str, str]:
        rng = self.rng
        never = self.spec.never_used_rate if active else 0.3
        if rng.random() < never:
            return None, "", ""
        if not active:
            # Deactivated keys went quiet when they were replaced.
            ago = _duration(rng, 45, 900)
        elif rng.random() < (0.8 if workload else 0.55):
            ago = timedelta(minutes=rng.randint(3, 36 * 60))
        else:
            ago = _duration(rng, 3, 400)
        if ago >= age:
            # A key cannot be used before it exists.
            ago = age * rng.uniform(0.05, 0.9)
        service = rng.choice(services)
        return ago, service, self.region(service)

    def key(self, age: timedelta, *, active: bool, workload: bool, services) -> KeyPlan:
        ago, service, region = self.last_used(
            age, active=active, workload=workload, services=services
        )
        return KeyPlan(age, active, ago, service, region)

    def keys(self, *, workload: bool, services: tuple[str, ...]) -> tuple[KeyPlan, ...]:
        """No key, one key, or two (rotation in progress, or a replaced key left inactive)."""
        rng = self.rng
        shape = _weighted(
            rng,
            (("none", 8), ("one", 55), ("two_active", 17), ("rotated", 20))
            if workload
            else (("none", 50), ("one", 32), ("one_inactive", 6), ("two_active", 6),
                  ("rotated", 6)),
        )  # fmt: skip
        key = self.key
        if shape == "none":
            return ()
        if shape == "one":
            return (key(_key_age(rng), active=True, workload=workload, services=services),)
        if shape == "one_inactive":
            return (key(_duration(rng, 91, 1500), active=False, workload=workload,
                        services=services),)  # fmt: skip
        old = _duration(rng, 91, 1500)
        new = min(_duration(rng, 1, 120), old - timedelta(days=1))
        return (
            key(old, active=shape == "two_active", workload=workload, services=services),
            key(new, active=True, workload=workload, services=services),
        )

    def user_age(self, keys: tuple[KeyPlan, ...]) -> timedelta:
        oldest = max((k.age for k in keys), default=timedelta(0))
        return oldest + _duration(self.rng, 1, 400)

    def owner_tags(self, email: str, unowned_rate: float) -> list[tuple[str, str]]:
        rng = self.rng
        if rng.random() < unowned_rate:
            # Unowned: nothing, or a tag keygov does not read as an owner.
            return rng.choice(([], [("CreatedBy", "jenkins")], [("contact", "see wiki")]))
        value = (
            email if rng.random() > 0.1 else email.title().replace("@Example.Com", "@example.com")
        )
        return [(_weighted(rng, OWNER_TAG_KEYS), value)]


def build_organisation(seed: int = DEFAULT_SEED) -> tuple[AccountPlan, ...]:
    """The demo organisation as a plan: pure and deterministic for a given seed."""
    rng = random.Random(seed)  # nosec B311  # a seeded demo, not security
    names = [(f, la) for f in FIRST_NAMES for la in LAST_NAMES]
    people = [_Person(f, la, rng.choice(TEAMS)) for f, la in rng.sample(names, 180)]
    # The admin of the demo owns keys too (see ADMIN_EMAIL).
    maria = _Person("maria", "garcia", "platform")
    people = [maria, *[p for p in people if p.email != maria.email]]
    leads = {team: next(p for p in people if p.team == team) for team in TEAMS}

    plans = []
    for spec in ACCOUNT_SPECS:
        planner = _Planner(rng, spec)
        users: list[UserPlan] = []
        taken: set[str] = set()
        members = [maria, *rng.sample(people[1:], spec.humans - 1)]
        for person in members:
            name = person.user_name(spec.name_style)
            while name in taken:
                name = f"{name}{rng.randint(2, 9)}"
            taken.add(name)
            if person is maria and spec.name == "acme-prod":
                # Rotating her key right now: the old one is still active and in use.
                keys = (
                    KeyPlan(_duration(rng, 200, 260), True, timedelta(hours=6), "s3", REGION),
                    KeyPlan(_duration(rng, 2, 5), True, None),
                )
            else:
                keys = planner.keys(workload=False, services=HUMAN_SERVICES)
            tags = planner.owner_tags(person.email, 0 if person is maria else spec.unowned_rate)
            if rng.random() < 0.6:
                tags.append(("team", person.team))
            login = rng.random()
            users.append(
                UserPlan(
                    name=name,
                    path="/",
                    age=planner.user_age(keys),
                    tags=tuple(tags),
                    console=True,
                    mfa=rng.random() < 0.8,
                    password_last_used_ago=(
                        None
                        if login < 0.1
                        else _duration(rng, 0, 20)
                        if login < 0.75
                        else _duration(rng, 30, 400)
                    ),
                    keys=keys,
                )
            )
        for name in spec.services:
            path, services, team = SERVICE_USERS[name]
            keys = planner.keys(workload=True, services=services)
            owner = leads[team].email if rng.random() < 0.6 else f"{team}-team@{DOMAIN}"
            tags = planner.owner_tags(owner, spec.unowned_rate)
            tags.append(("team", team))
            if rng.random() < 0.5:
                tags.append(("ManagedBy", "terraform"))
            tags.append(("CostCenter", f"CC-{1000 + 7 * TEAMS.index(team)}"))
            users.append(
                UserPlan(name=name, path=path, age=planner.user_age(keys), tags=tuple(tags),
                         console=False, keys=keys)
            )  # fmt: skip
        for name in spec.extra_users:
            # Throwaway users of experiments long over: unowned, keys mostly never used.
            age = _duration(rng, 400, 2200)
            keys = (KeyPlan(age - _duration(rng, 0, 30), rng.random() < 0.7, None),)
            users.append(UserPlan(name=name, path="/", age=age, tags=(), console=False, keys=keys))
        plans.append(
            AccountPlan(
                name=spec.name,
                email=spec.email,
                created=spec.created,
                users=tuple(users),
                root_keys=spec.root_keys,
                root_mfa=spec.root_mfa,
                # Root signs in rarely: billing, support plans, account settings.
                root_password_last_used_ago=_duration(rng, 20, 700),
            )
        )
    return tuple(plans)


# --- the emulator ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SeededAccount:
    account_id: str
    name: str
    users: int
    keys: int
    root_keys: int


@dataclass
class _RootState:
    created: datetime
    mfa: bool
    password_last_used: datetime | None
    keys: list[tuple[bool, datetime, AccessKeyLastUsed | None]] = field(default_factory=list)


@dataclass
class _DemoIam:
    """What the demo knows of an account that moto does not model: the root user, MFA."""

    root: _RootState
    mfa_users: set[str] = field(default_factory=set)


def _naive(ts: datetime) -> datetime:
    # moto keeps naive UTC datetimes and formats them with a literal "+00:00".
    return ts.astimezone(UTC).replace(tzinfo=None)


def _fmt(ts: datetime | None, empty: str = "N/A") -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S+00:00") if ts is not None else empty


def _key_columns(active: bool, created: datetime | None, last: AccessKeyLastUsed | None):
    if created is None:
        return ["false", "N/A", "N/A", "N/A", "N/A"]
    if last is None:
        return ["true" if active else "false", _fmt(created), "N/A", "N/A", "N/A"]
    return ["true" if active else "false", _fmt(created), _fmt(last.timestamp), last.region,
            last.service]  # fmt: skip


_NO_CERTIFICATES = ("false", "N/A", "false", "N/A")
_REPORT_HEADER = (
    "user,arn,user_creation_time,password_enabled,password_last_used,password_last_changed,"
    "password_next_rotation,mfa_active,access_key_1_active,access_key_1_last_rotated,"
    "access_key_1_last_used_date,access_key_1_last_used_region,access_key_1_last_used_service,"
    "access_key_2_active,access_key_2_last_rotated,access_key_2_last_used_date,"
    "access_key_2_last_used_region,access_key_2_last_used_service,cert_1_active,"
    "cert_1_last_rotated,cert_2_active,cert_2_last_rotated"
)


def _aws_credential_report(backend: IAMBackend, demo: _DemoIam) -> str:
    """The report as AWS writes it: a ``<root_account>`` row first, the last use's region and
    service filled in, ``N/A`` where there is nothing."""
    lines = [_REPORT_HEADER]
    root = demo.root
    slots = [*root.keys, *[(False, None, None)] * (2 - len(root.keys))]
    lines.append(
        ",".join(
            [
                "<root_account>",
                f"arn:aws:iam::{backend.account_id}:root",
                _fmt(root.created),
                "not_supported",
                _fmt(root.password_last_used, "no_information"),
                "not_supported",
                "not_supported",
                "true" if root.mfa else "false",
                *_key_columns(*slots[0]),
                *_key_columns(*slots[1]),
                *_NO_CERTIFICATES,
            ]
        )
    )
    for user in backend.users.values():
        keys = [(k.status == "Active", k.create_date, k.last_used) for k in user.access_keys]
        keys += [(False, None, None)] * (2 - len(keys))
        password = bool(user.password)
        lines.append(
            ",".join(
                [
                    user.name,
                    user.arn,
                    _fmt(user.create_date),
                    "true" if password else "false",
                    _fmt(user.password_last_used, "no_information") if password else "N/A",
                    _fmt(user.create_date) if password else "N/A",
                    "N/A",
                    "true" if user.name in demo.mfa_users else "false",
                    *_key_columns(*keys[0]),
                    *_key_columns(*keys[1]),
                    *_NO_CERTIFICATES,
                ]
            )
        )
    return "\n".join(lines) + "\n"


_patch_lock = threading.Lock()
_patched = False


def install_emulator_patches() -> None:
    """Make moto write the credential report as AWS does, for demo accounts only (idempotent).

    Other backends, e.g. those of tests that share the process, keep moto's behaviour.
    """
    global _patched
    with _patch_lock:
        if _patched:
            return
        original_report = IAMBackend.get_credential_report
        original_response = IamResponse.get_credential_report

        def get_credential_report(self: IAMBackend) -> str:
            demo = getattr(self, _DEMO_ATTR, None)
            if demo is None:
                return original_report(self)
            if not self.credential_report:
                raise ReportNotPresentException("Credential report not present")
            return _aws_credential_report(self, demo)

        def get_credential_report_response(self: IamResponse) -> ActionResult:
            if getattr(self.backend, _DEMO_ATTR, None) is None:
                return original_response(self)
            # moto's report is a live view, so it was "generated" now (moto says 2015).
            return ActionResult(
                {
                    "Content": self.backend.get_credential_report(),
                    "ReportFormat": "text/csv",
                    "GeneratedTime": datetime.now(UTC).replace(microsecond=0),
                }
            )

        IAMBackend.get_credential_report = get_credential_report
        IamResponse.get_credential_report = get_credential_report_response
        _patched = True


def _read_role_documents(management_id: str) -> tuple[str, str]:
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{management_id}:root"},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"sts:ExternalId": EXTERNAL_ID}},
            }
        ],
    }
    permissions = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": [
                    "iam:GenerateCredentialReport",
                    "iam:GetCredentialReport",
                    "iam:GetAccountAuthorizationDetails",
                    "iam:ListAccessKeys",
                    "iam:GetAccessKeyLastUsed",
                ],
                "Resource": "*",
            }
        ],
    }
    return json.dumps(trust), json.dumps(permissions)


def _seed_account(account_id: str, plan: AccountPlan, anchor: datetime) -> SeededAccount:
    iam = iam_backends[account_id]["aws"]
    trust, permissions = _read_role_documents(MANAGEMENT_ACCOUNT_ID)
    iam.create_role(
        role_name=ROLE_NAME,
        assume_role_policy_document=trust,
        path="/",
        permissions_boundary=None,
        description="keygov reads IAM users and access keys",
        tags=[],
        max_session_duration="3600",
    )
    iam.put_role_policy(ROLE_NAME, "keygov-read", permissions)

    demo = _DemoIam(
        root=_RootState(
            created=_naive(plan.created),
            mfa=plan.root_mfa,
            password_last_used=(
                _naive(anchor - plan.root_password_last_used_ago)
                if plan.root_password_last_used_ago is not None
                else None
            ),
        )
    )
    keys = 0
    for u in plan.users:
        user = iam.create_user(
            REGION, u.name, path=u.path, tags=[{"Key": k, "Value": v} for k, v in u.tags]
        )
        user.create_date = _naive(anchor - u.age)
        if u.console:
            iam.create_login_profile(u.name, f"Demo-{u.name}-1!")
            if u.password_last_used_ago is not None:
                user.password_last_used = _naive(anchor - u.password_last_used_ago)
        if u.mfa:
            demo.mfa_users.add(u.name)
        for k in u.keys:
            key = iam.create_access_key(u.name, status="Active" if k.active else "Inactive")
            key.create_date = _naive(anchor - k.age)
            if k.last_used_ago is not None:
                key.last_used = AccessKeyLastUsed(
                    _naive(anchor - k.last_used_ago), k.service, k.region
                )
            keys += 1
    for rk in plan.root_keys:
        last = (
            AccessKeyLastUsed(_naive(anchor - rk.last_used_ago), rk.service, rk.region)
            if rk.last_used_ago is not None
            else None
        )
        demo.root.keys.append((rk.active, _naive(rk.created), last))
    setattr(iam, _DEMO_ATTR, demo)
    # AWS keeps a generated report for hours; the first collection finds one ready.
    iam.generate_report()
    return SeededAccount(
        account_id=account_id,
        name=plan.name,
        users=len(plan.users),
        keys=keys + len(plan.root_keys),
        root_keys=len(plan.root_keys),
    )


def seed_emulator(seed: int = DEFAULT_SEED, *, now: datetime | None = None) -> list[SeededAccount]:
    """Reset the in-process moto backends and write the demo organisation into them.

    Account, user and access key ids depend only on ``seed``; creation and last-use times are
    offsets from the current hour (``now``).
    """
    install_emulator_patches()
    moto_api_backend.reset()
    anchor = (now or datetime.now(UTC)).astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    plans = build_organisation(seed)

    mock_random.seed(seed)
    orgs = organizations_backends[MANAGEMENT_ACCOUNT_ID]["aws"]
    orgs.create_organization(region=REGION, FeatureSet="ALL")
    management = orgs.accounts[0]
    management.name, management.email = plans[0].name, plans[0].email
    orgs.org.master_account_email = plans[0].email
    for plan in plans[1:]:
        orgs.create_account(AccountName=plan.name, Email=plan.email)
    for account, plan in zip(orgs.accounts, plans, strict=True):
        account.create_time = _naive(plan.created)

    seeded = []
    for account, plan in zip(orgs.accounts, plans, strict=True):
        # One stream per account: ids in one account do not depend on what came before it.
        mock_random.seed(f"{seed}/{plan.name}")
        seeded.append(_seed_account(account.id, plan, anchor))
    return seeded


def _check_port(host: str, port: int) -> None:
    with socket.socket() as s:
        # The server sets SO_REUSEADDR too: a port in TIME_WAIT is free, one with a listener not.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise EmulatorError(
                f"cannot start the AWS emulator on {host}:{port}: {exc.strerror}. Another "
                "program (an earlier demo?) is using the port; stop it or choose another "
                "with --aws-port."
            ) from None


# Variables that would send boto3 elsewhere than the emulator, or with other credentials.
_AWS_ENV_OVERRIDES = (
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
)


@contextmanager
def running_emulator(port: int = DEFAULT_PORT, host: str = "127.0.0.1") -> Iterator[str]:
    """Run moto in server mode in this process and point this process's boto3 at it.

    Yields the endpoint URL. On exit the server stops and the environment is restored.
    """
    _check_port(host, port)
    # moto's server logs every request through werkzeug's logger: noise next to the progress.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    url = f"http://{host}:{port}"
    names = {
        *_AWS_ENV_OVERRIDES,
        # Service-specific endpoints (AWS_ENDPOINT_URL_IAM, ...) take precedence over the global one.
        *(k for k in os.environ if k.startswith("AWS_ENDPOINT_URL")),
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_DEFAULT_REGION",
    }
    saved = {k: os.environ.get(k) for k in names}
    for k in names:
        os.environ.pop(k, None)
    os.environ.update(
        AWS_ENDPOINT_URL=url,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",  # noqa: S106 - the emulator's dummy credentials  # nosec B106
        AWS_DEFAULT_REGION=REGION,
    )
    try:
        yield url
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()
