"""The tables of keygov's pages (django-tables2), and the keys export.

The HTML tables speak to people ("97 days", coloured badges); the export table speaks to
spreadsheets and scripts: PRODUCT.md's "Key export" columns, in that order, with ISO 8601 UTC
timestamps, streamed from the database in chunks.
"""

from __future__ import annotations

import csv
import tempfile
from datetime import UTC, datetime

import django_tables2 as tables
from django.db.models import F
from django.http import FileResponse, StreamingHttpResponse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django_tables2.data import TableQuerysetData
from django_tables2.export import TableExport

from inventory.choices import KeyStatus
from inventory.policy import whole_days
from inventory.templatetags.keygov import days_ago, days_since, state_badge, utc

UNOWNED = mark_safe(  # nosec B308  # constant markup
    '<span class="badge rounded-pill text-bg-light border text-body-secondary">unowned</span>'
)
NEVER = mark_safe('<span class="text-body-secondary">never</span>')  # nosec B308  # constant markup


def _flags(record) -> str:
    """The small badges beside a key's state."""
    flags = []
    if getattr(record, "two_active_keys", False):
        flags.append(("text-bg-warning", "2 active keys", "Its IAM user holds two active keys"))
    if record.is_root:
        flags.append(("text-bg-danger", "root", "A root-account key: always critical"))
    if record.unapproved:
        flags.append(("text-bg-danger", "unapproved", "Created without an approved key request"))
    return format_html_join(
        "",
        ' <span class="badge rounded-pill {}" title="{}">{}</span>',
        ((c, t, n) for c, n, t in flags),
    )


class AccessKeyTable(tables.Table):
    """The inventory: one row per key, linked to the key's page."""

    access_key_id = tables.Column(
        "Access key",
        linkify=("inventory:accesskey_detail", [tables.A("access_key_id")]),
        attrs={"td": {"class": "font-monospace-sm text-nowrap"}},
        order_by=("access_key_id",),
    )
    account = tables.Column("Account", order_by=("account__name", "account__account_id", "id"))
    user = tables.Column("IAM user", accessor="user__name", order_by=("user__name", "id"))
    owner = tables.Column(
        "Owner",
        accessor="user__owner",
        # (owner, user, key): presorted by the index on IAM users' (owner, id).
        order_by=("user__owner", "user_id", "id"),
        default=UNOWNED,
    )
    status = tables.Column("Status", order_by=("status", "id"))
    state = tables.Column("State", empty_values=(), order_by=("state", "id"))
    age = tables.Column(
        "Age",
        accessor="created",
        # Youngest first when ascending: age grows as the creation date goes back.
        order_by=("-created", "-id"),
        attrs={"td": {"class": "text-nowrap"}},
    )
    last_used = tables.Column(
        "Last used", accessor="last_used_at", empty_values=(), attrs={"td": {"class": "small"}}
    )

    class Meta:
        attrs = {"class": "table table-sm table-hover align-middle mb-0"}
        row_attrs = {"class": lambda record: "text-body-secondary" if record.deleted else ""}
        empty_text = "No key matches these filters."

    def render_account(self, value, record):
        return format_html(
            '{}<br><span class="small text-body-secondary font-monospace-sm">{}</span>',
            value.name or value.account_id,
            value.account_id,
        )

    def render_status(self, value):
        if value == KeyStatus.ACTIVE:
            return value
        return format_html('<span class="text-body-secondary">{}</span>', value)

    def render_state(self, record):
        # ``value`` would be the choice's label ("Due soon"); the badge wants the state.
        return format_html("{}{}", state_badge(record.state), _flags(record))

    def render_age(self, value):
        return format_html('<span title="created {}">{}</span>', utc(value), days_since(value))

    def render_last_used(self, value, record):
        if value is None:
            return NEVER
        where = " · ".join(x for x in (record.last_used_service, record.last_used_region) if x)
        return format_html(
            '<time datetime="{}" title="{}">{}</time>{}',
            value.isoformat(),
            utc(value),
            days_ago(value),
            format_html('<br><span class="text-body-secondary">{}</span>', where) if where else "",
        )

    def order_last_used(self, queryset, is_descending):
        # A key never used is the least recently used one: first when ascending.
        field = F("last_used_at")
        order = field.desc(nulls_last=True) if is_descending else field.asc(nulls_first=True)
        return queryset.order_by(order, "-id" if is_descending else "id"), True


class MyKeysTable(AccessKeyTable):
    """A person's own keys, most urgent first (the view sorts them; the columns do not)."""

    rotate_by = tables.Column("Rotate by", accessor="deadline", empty_values=())
    days_left = tables.Column("Days left", empty_values=())

    class Meta(AccessKeyTable.Meta):
        orderable = False
        exclude = ("owner",)
        sequence = ("access_key_id", "account", "user", "state", "rotate_by", "days_left", "...")
        empty_text = "You own no key."

    def render_rotate_by(self, value, record):
        if record.exception_until:
            return format_html(
                '<span title="An approved exception covers it">excepted until {}</span>',
                utc(record.exception_until, False),
            )
        if value is None:
            return mark_safe('<span class="text-body-secondary">—</span>')  # nosec B308  # constant markup
        return format_html('<span title="{}">{}</span>', utc(value), utc(value, False))

    def render_days_left(self, value, record):
        if value is None:
            return mark_safe('<span class="text-body-secondary">—</span>')  # nosec B308  # constant markup
        if value < 0:
            n = -value
            return format_html(
                '<span class="fw-semibold text-danger">{} day{} overdue</span>',
                n,
                "" if n == 1 else "s",
            )
        css = "text-warning-emphasis fw-semibold" if record.state == "due_soon" else ""
        return format_html(
            '<span class="{}">{} day{}</span>', css, value, "" if value == 1 else "s"
        )


# ----- Export -----------------------------------------------------------------------------------


def iso(value: datetime | None) -> str:
    """ISO 8601 in UTC to the second, e.g. ``2026-05-15T12:00:00Z``; "" for none."""
    if not value:
        return ""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds") + "Z"


class AccessKeyExportTable(tables.Table):
    """The keys export (PRODUCT.md, "Key export"): the header is the columns' names, in order.

    Never rendered nor sorted itself: the view hands it rows already ordered as the page shows
    them (``AccessKeyTable``'s ``sort``)."""

    access_key_id = tables.Column("access_key_id")
    account_id = tables.Column("account_id")
    account_name = tables.Column("account_name")
    user_name = tables.Column("user_name")
    owner = tables.Column("owner")
    status = tables.Column("status")
    state = tables.Column("state")
    created = tables.Column("created")
    age_days = tables.Column("age_days")
    last_used = tables.Column("last_used")
    last_used_service = tables.Column("last_used_service")
    last_used_region = tables.Column("last_used_region")

    # What each column holds, from a row of ``FIELDS`` (``QuerySet.values``: no model instances,
    # several times faster over 100,000 rows).
    FIELDS = (
        "access_key_id", "account__account_id", "account__name", "user__name", "user__owner",
        "status", "state", "created", "last_used_at", "last_used_service", "last_used_region",
    )  # fmt: skip
    VALUES = {
        "access_key_id": lambda row, now: row["access_key_id"],
        "account_id": lambda row, now: row["account__account_id"],
        "account_name": lambda row, now: row["account__name"],
        "user_name": lambda row, now: row["user__name"],
        "owner": lambda row, now: row["user__owner"],
        "status": lambda row, now: row["status"],
        "state": lambda row, now: row["state"],
        "created": lambda row, now: iso(row["created"]),
        "age_days": lambda row, now: whole_days(row["created"], now),
        "last_used": lambda row, now: iso(row["last_used_at"]),
        "last_used_service": lambda row, now: row["last_used_service"],
        "last_used_region": lambda row, now: row["last_used_region"],
    }

    class Meta:
        orderable = False

    def __init__(self, *args, now: datetime | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.now = now or timezone.now()

    def as_values(self, exclude_columns=None):
        """The header, then one list per key, straight from the rows (``FIELDS``): without the
        per-cell machinery of ``BoundRow``, which would slow an export of 100,000 keys."""
        exclude_columns = exclude_columns or ()
        columns = [c for c in self.columns.iterall() if c.name not in exclude_columns]
        values = [self.VALUES[c.name] for c in columns]
        yield [str(c.header) for c in columns]
        now = self.now
        for key in self.data:
            yield [value(key, now) for value in values]


class PagedQuerysetData(TableQuerysetData):
    """A page of rows read in two steps: the page's primary keys from the filtered, ordered
    rows, then those rows with ``decorate`` applied (e.g. per-row subqueries). An OFFSET on a
    query that carries subqueries makes the database evaluate them for every skipped row;
    this way the last page of 100,000 rows costs what the first does."""

    def __init__(self, data, decorate):
        super().__init__(data)
        self.decorate = decorate

    def __getitem__(self, key):
        if not isinstance(key, slice):
            return super().__getitem__(key)
        ids = list(self.data.values_list("pk", flat=True)[key])
        rows = {
            row.pk: row
            for row in self.decorate(self.data.model._default_manager.filter(pk__in=ids))
        }
        return [rows[pk] for pk in ids if pk in rows]


class StreamedQuerysetData(TableQuerysetData):
    """Table data read with a server-side cursor in chunks, not loaded whole into memory."""

    chunk_size = 2000

    def __iter__(self):
        return self.data.iterator(chunk_size=self.chunk_size)


class _Echo:
    """A file-like object whose ``write`` hands the line back, for streaming ``csv.writer``."""

    def write(self, value):
        return value


class StreamingTableExport(TableExport):
    """``TableExport`` for large tables: CSV is streamed row by row; XLSX is written by
    openpyxl's write-only workbook to a temporary file (constant memory) and sent from there."""

    FORMATS = {
        TableExport.CSV: TableExport.FORMATS[TableExport.CSV],
        TableExport.XLSX: TableExport.FORMATS[TableExport.XLSX],
    }

    def __init__(self, export_format, table, exclude_columns=None, dataset_kwargs=None):
        if not self.is_valid_format(export_format):
            raise TypeError(f'Export format "{export_format}" is not supported.')
        self.format = export_format
        self.table = table
        self.title = (dataset_kwargs or {}).get("title", "Export")

    @classmethod
    def is_valid_format(cls, export_format):
        return export_format in cls.FORMATS

    def response(self, filename=None):
        rows = self.table.as_values()
        if self.format == self.CSV:
            writer = csv.writer(_Echo())
            response = StreamingHttpResponse(
                (writer.writerow(row) for row in rows), content_type=self.content_type()
            )
            if filename:
                response["Content-Disposition"] = f'attachment; filename="{filename}"'
            return response
        return FileResponse(
            self._xlsx(rows),
            as_attachment=True,
            filename=filename,
            content_type=self.content_type(),
        )

    def _xlsx(self, rows):
        from openpyxl import Workbook

        workbook = Workbook(write_only=True)
        sheet = workbook.create_sheet(title=self.title[:31])
        for row in rows:
            sheet.append(row)
        out = tempfile.TemporaryFile()  # noqa: SIM115 - FileResponse closes it
        workbook.save(out)
        out.seek(0)
        return out
