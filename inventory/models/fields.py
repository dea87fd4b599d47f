"""Model fields of keygov's own."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.functional import cached_property

from inventory.choices import STATE_CODES, KeyState

STATE_NAMES = {code: name for name, code in STATE_CODES.items()}


class KeyStateCodeField(models.SmallIntegerField):
    """A ``KeyState`` value ("ok", "overdue", ... or "") stored as a small integer.

    Python, queries (``state="overdue"``, ``state__in=[...]``) and forms see the state's name;
    only the column holds the code of ``choices.STATE_CODES``. Used by the key history, whose
    rows are counted in tens of millions."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("choices", KeyState.choices)
        kwargs.setdefault("blank", True)
        kwargs.setdefault("default", "")
        super().__init__(*args, **kwargs)

    @cached_property
    def validators(self):
        # The integer range validators of SmallIntegerField do not apply to names.
        return list(self._validators)

    def from_db_value(self, value, expression, connection):
        return None if value is None else STATE_NAMES[value]

    def to_python(self, value):
        if value is None or isinstance(value, str):
            if value not in STATE_CODES and value is not None:
                raise ValidationError(f"{value!r} is not a key state.", code="invalid")
            return value
        try:
            return STATE_NAMES[int(value)]
        except (KeyError, TypeError, ValueError):
            raise ValidationError(f"{value!r} is not a key state code.", code="invalid") from None

    def get_prep_value(self, value):
        if value is None:
            return None
        if isinstance(value, int):  # already a code (e.g. from a raw query)
            return value
        try:
            return STATE_CODES[value]
        except KeyError:
            raise ValueError(f"{value!r} is not a key state") from None

    def value_to_string(self, obj):
        return self.value_from_object(obj) or ""

    def formfield(self, **kwargs):
        return models.Field.formfield(
            self, **{"choices_form_class": forms.TypedChoiceField, "coerce": str, **kwargs}
        )
