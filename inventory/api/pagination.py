"""Keyset ("cursor") pagination: the next page starts after the last row's sort key, read from
an index, so page 1,000 of 100,000 keys costs what page 1 costs (OFFSET would read and drop
every row before it). The sort is fixed per endpoint (``view.keyset``, e.g. ``("created",
"id")``), ends with a unique column, and every column in it is NOT NULL."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import date, datetime

from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.db.models import Q
from rest_framework.exceptions import ParseError
from rest_framework.pagination import BasePagination
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param


def _encode(values: list) -> str:
    plain = [v.isoformat() if isinstance(v, datetime | date) else v for v in values]
    return base64.urlsafe_b64encode(json.dumps(plain).encode()).decode().rstrip("=")


def _decode(cursor: str) -> list:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
    except (binascii.Error, ValueError):
        raise ParseError("Invalid cursor: use the `next` link of the previous page.") from None
    if not isinstance(values, list):
        raise ParseError("Invalid cursor: use the `next` link of the previous page.")
    return values


class KeysetPagination(BasePagination):
    page_size = 100
    max_page_size = 1000
    cursor_query_param = "cursor"
    page_size_query_param = "page_size"

    def paginate_queryset(self, queryset, request, view=None):
        keyset = tuple(view.keyset)
        self.request = request
        self.size = self._page_size(request)
        names = [k.lstrip("-") for k in keyset]
        queryset = queryset.order_by(*keyset)
        cursor = request.query_params.get(self.cursor_query_param)
        if cursor:
            position = self._position(queryset, names, _decode(cursor))
            queryset = queryset.filter(self._after(keyset, position))
        rows = list(queryset[: self.size + 1])
        self.next_position = None
        if len(rows) > self.size:
            rows = rows[: self.size]
            self.next_position = [getattr(rows[-1], name) for name in names]
        return rows

    def _page_size(self, request) -> int:
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        try:
            size = int(raw)
        except ValueError:
            size = 0
        if not 1 <= size <= self.max_page_size:
            raise ParseError(f"page_size must be a whole number from 1 to {self.max_page_size}.")
        return size

    @staticmethod
    def _position(queryset, names: list[str], values: list) -> list:
        """The cursor's values, checked and typed like the columns they stand for."""
        if len(values) != len(names):
            raise ParseError("Invalid cursor: use the `next` link of the previous page.")
        typed = []
        for name, value in zip(names, values, strict=True):
            try:
                field = queryset.model._meta.get_field(name)
            except FieldDoesNotExist:
                field = queryset.query.annotations[name].output_field
            try:
                if value is None or isinstance(value, dict | list):
                    raise ValidationError("not a value")
                value = field.to_python(value)
            except (ValidationError, TypeError, ValueError):
                raise ParseError(
                    "Invalid cursor: use the `next` link of the previous page."
                ) from None
            if isinstance(value, datetime) and value.tzinfo is None:
                raise ParseError("Invalid cursor: use the `next` link of the previous page.")
            typed.append(value)
        return typed

    @staticmethod
    def _after(keyset: tuple[str, ...], values: list) -> Q:
        """Rows after ``values`` in the ``keyset`` order: (a > x) or (a = x and b > y) or …,
        and ``a >= x`` up front so that an index on the first column bounds the scan."""
        after = Q()
        for i, key in enumerate(keyset):
            equal = {k.lstrip("-"): v for k, v in zip(keyset[:i], values[:i], strict=True)}
            op = "lt" if key.startswith("-") else "gt"
            after |= Q(**equal, **{f"{key.lstrip('-')}__{op}": values[i]})
        first = keyset[0]
        bound = "lte" if first.startswith("-") else "gte"
        return Q(**{f"{first.lstrip('-')}__{bound}": values[0]}) & after

    def get_next_link(self) -> str | None:
        if self.next_position is None:
            return None
        url = self.request.build_absolute_uri()
        url = replace_query_param(url, self.cursor_query_param, _encode(self.next_position))
        return url

    def get_paginated_response(self, data):
        return Response({"next": self.get_next_link(), "results": data})

    def get_paginated_response_schema(self, schema):
        return {
            "type": "object",
            "required": ["next", "results"],
            "properties": {
                "next": {
                    "type": "string",
                    "nullable": True,
                    "format": "uri",
                    "description": "The next page (null on the last one).",
                },
                "results": schema,
            },
        }

    def get_schema_operation_parameters(self, view):
        return [
            {
                "name": self.cursor_query_param,
                "required": False,
                "in": "query",
                "description": "Where the page starts: take it from the previous page's `next`.",
                "schema": {"type": "string"},
            },
            {
                "name": self.page_size_query_param,
                "required": False,
                "in": "query",
                "description": f"Rows per page (default {self.page_size}).",
                "schema": {"type": "integer", "minimum": 1, "maximum": self.max_page_size},
            },
        ]
