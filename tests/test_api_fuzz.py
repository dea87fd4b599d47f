"""Fuzzing the REST API against its own OpenAPI schema (schemathesis, in-process through the
WSGI app): for requests generated from every operation's parameters and bodies, keygov never
answers 5xx, answers only the statuses the schema declares, and every body matches the schema.

Bounded: a fixed number of examples per operation, derandomized (the same requests on every
run), so CI spends seconds here, not minutes. Run alone with
``pytest tests/test_api_fuzz.py``; ``KEYGOV_FUZZ_EXAMPLES`` raises the count for a longer hunt.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from inventory.api.models import ApiToken
from inventory.choices import ExceptionStatus, KeyState, KeyStatus
from inventory.models import Finding, KeyRequest, PolicyException
from keygov.wsgi import application
from tests.gov_factories import (
    ROLE_ARN,
    AccessKeyFactory,
    AccountFactory,
    IamUserFactory,
    person,
)

pytestmark = pytest.mark.django_db

EXAMPLES = int(os.environ.get("KEYGOV_FUZZ_EXAMPLES", "12"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def _openapi() -> dict:
    """The schema /api/schema/ serves, as JSON (plain dicts and strings)."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return json.loads(OpenApiJsonRenderer().render(schema))


schema = schemathesis.openapi.from_dict(_openapi())
schema.app = application


@pytest.fixture
def wsgi_in_test_transaction():
    """Requests through the WSGI app, in the test's transaction: as Django's test client does,
    do not close the database connection at the end of each request."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def token(wsgi_in_test_transaction):
    """An approver (who may read everything, file requests and mark any key) and a little of
    everything the API lists, so that responses carry rows to check against the schema."""
    approver = person("fuzzer", "approver", "fuzzer@example.com")
    owner = person("olive", "owner", "olive@example.com")
    account = AccountFactory(account_id="111111111111", name="prod")
    app = IamUserFactory(account=account, name="app", owner="olive@example.com")
    orphan = IamUserFactory(account=account, name="orphan")
    now = timezone.now()
    key = AccessKeyFactory(user=app, created=now - timedelta(days=200), state=KeyState.OVERDUE)
    AccessKeyFactory(user=orphan, status=KeyStatus.INACTIVE, state=KeyState.INACTIVE)
    key.migrations.create(
        account=account, status="migrating", role_arn=ROLE_ARN, marked_by=owner, marked_at=now
    )
    Finding.objects.create(key=key, account=account, kind=KeyState.OVERDUE, opened_at=now)
    PolicyException.objects.create(
        iam_user=orphan,
        account=account,
        reason="legacy",
        expires_at=now + timedelta(days=30),
        status=ExceptionStatus.PENDING,
        requested_by=owner,
        requested_at=now,
    )
    KeyRequest.objects.create(
        account=account,
        iam_user=orphan,
        justification="vendor appliance",
        why_not_role="it cannot assume roles",
        owner_email="olive@example.com",
        review_on=(now + timedelta(days=30)).date(),
        requested_by=owner,
        requested_at=now,
    )
    _, secret = ApiToken.issue(approver, "fuzz")
    return secret


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
def test_it_answers_generated_requests_as_its_schema_says(case, token):
    case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)
