"""Structured logs: one JSON object a line (``KEYGOV_LOG_FORMAT=json``), with the standard library.

Each line holds ``timestamp`` (UTC, ISO 8601, milliseconds), ``level``, ``logger`` and
``message``, then every ``extra={...}`` field of the call and ``exception`` with the traceback
when there is one. Values JSON cannot hold are written as their ``str()``. A log shipper (Loki,
CloudWatch, Elasticsearch) reads the fields without parsing patterns.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

# The attributes every LogRecord has: anything else on a record came from ``extra``.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}
_CORE = ("timestamp", "level", "logger", "message")


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON (see the module's docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "timestamp": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and key not in _CORE and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)
