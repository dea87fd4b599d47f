"""KeyStateCodeField: a key state stored as a small integer, seen as its name."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from inventory.choices import STATE_CODES, KeyState
from inventory.models import KeyObservation
from inventory.models.fields import KeyStateCodeField
from tests.factories import KeyObservationFactory


def test_it_gives_every_state_a_distinct_code():
    assert set(STATE_CODES) == {"", *KeyState.values}
    assert len(set(STATE_CODES.values())) == len(STATE_CODES)


@pytest.mark.django_db
def test_it_stores_the_code_and_reads_back_the_name():
    observation = KeyObservationFactory(state=KeyState.DUE_SOON)
    table = KeyObservation._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT state FROM {table} WHERE key_id = %s AND snapshot_id = %s",  # noqa: S608
            [observation.key_id, observation.snapshot_id],
        )
        assert cursor.fetchone()[0] == STATE_CODES[KeyState.DUE_SOON] == 2
    stored = KeyObservation.objects.get(pk=observation.pk)
    assert stored.state == "due_soon"
    assert stored.get_state_display() == "Due soon"


@pytest.mark.django_db
def test_it_filters_by_state_names():
    KeyObservationFactory(state=KeyState.OVERDUE)
    KeyObservationFactory(state=KeyState.OK)
    KeyObservationFactory(state="")

    assert KeyObservation.objects.filter(state=KeyState.OVERDUE).count() == 1
    assert KeyObservation.objects.filter(state__in=["ok", "overdue"]).count() == 2
    assert KeyObservation.objects.filter(state="").count() == 1
    assert list(KeyObservation.objects.order_by("state").values_list("state", flat=True)) == [
        "",
        "ok",
        "overdue",
    ]


def test_it_refuses_a_value_that_is_not_a_state():
    field = KeyStateCodeField()
    with pytest.raises(ValidationError):
        field.to_python("stale")
    with pytest.raises(ValidationError):
        field.to_python(42)
    with pytest.raises(ValueError, match="not a key state"):
        field.get_prep_value("stale")
    assert field.to_python(3) == KeyState.OVERDUE
