"""Form widgets for keygov's pages."""

from __future__ import annotations

from django import forms
from django.forms.utils import flatatt
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

SELECTED = mark_safe(" selected")  # nosec B308  # constant markup


class FastSelect(forms.Select):
    """A single ``<select>`` rendered in Python. Django renders each ``<option>`` through a
    template: for the 500 accounts of an organisation that was 20-38 ms of every list page with
    an account filter (docs/benchmarks.md, issue 4); this takes about a millisecond. No option
    groups: a flat list of choices."""

    def render(self, name, value, attrs=None, renderer=None):
        final_attrs = self.build_attrs(self.attrs, attrs)
        final_attrs["name"] = name
        values = value if isinstance(value, list | tuple) else [value]
        chosen = {str(v) for v in values if v not in (None, "")}
        options = format_html_join(
            "",
            '<option value="{}"{}>{}</option>',
            (
                (option, SELECTED if str(option) in chosen else "", label)
                for option, label in self.choices
            ),
        )
        return format_html("<select{}>{}</select>", flatatt(final_attrs), options)
