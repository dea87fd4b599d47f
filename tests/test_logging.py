"""Structured logs: KEYGOV_LOG_FORMAT=json writes one JSON object a line (keygov/logging.py)."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from keygov.logging import JsonFormatter
from tests.test_settings import start

LOG_SOMETHING = """
import logging, django
django.setup()
log = logging.getLogger("inventory.services.collection")
log.warning("account %s: collection failed", "123456789012", extra={"account": "123456789012"})
"""


def _record(msg="hello %s", args=("world",), exc_info=None, **extra) -> logging.LogRecord:
    record = logging.getLogger("keygov.test").makeRecord(
        "keygov.test", logging.WARNING, "x.py", 1, msg, args, exc_info, extra=extra
    )
    record.created = datetime(2026, 5, 15, 12, 0, 1, 250000, tzinfo=UTC).timestamp()
    return record


def test_it_writes_the_core_fields_and_the_extra_ones():
    line = JsonFormatter().format(_record(account="123456789012", api_calls=17))

    assert json.loads(line) == {
        "timestamp": "2026-05-15T12:00:01.250Z",
        "level": "WARNING",
        "logger": "keygov.test",
        "message": "hello world",
        "account": "123456789012",
        "api_calls": 17,
    }


def test_it_keeps_a_multi_line_message_and_a_traceback_on_one_line():
    try:
        raise ValueError("boom")
    except ValueError:
        record = _record("first\nsecond", (), exc_info=sys.exc_info())

    line = JsonFormatter().format(record)

    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "first\nsecond"
    assert entry["exception"].startswith("Traceback (most recent call last):")
    assert entry["exception"].endswith("ValueError: boom")


def test_it_writes_what_json_cannot_hold_as_text_and_never_lets_extra_replace_a_core_field():
    record = _record(when=datetime(2026, 1, 2, tzinfo=UTC), obj=object())
    record.level = "forged"  # a field named like a core one

    entry = json.loads(JsonFormatter().format(record))

    assert entry["when"] == "2026-01-02 00:00:00+00:00"
    assert entry["obj"].startswith("<object object at")
    assert entry["level"] == "WARNING"


def test_it_logs_json_lines_when_the_setting_asks(tmp_path):
    run = start(tmp_path, "-c", LOG_SOMETHING, KEYGOV_LOG_FORMAT="json")

    assert run.returncode == 0, run.stderr
    entry = json.loads(run.stderr.strip().splitlines()[-1])
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "inventory.services.collection"
    assert entry["message"] == "account 123456789012: collection failed"
    assert entry["account"] == "123456789012"


def test_it_logs_plain_lines_by_default(tmp_path):
    run = start(tmp_path, "-c", LOG_SOMETHING)

    assert run.returncode == 0, run.stderr
    line = run.stderr.strip().splitlines()[-1]
    assert line.endswith(
        "WARNING inventory.services.collection account 123456789012: collection failed"
    )


def test_it_refuses_an_unknown_format(tmp_path):
    run = start(tmp_path, "-c", LOG_SOMETHING, KEYGOV_LOG_FORMAT="xml")

    assert run.returncode != 0
    assert "KEYGOV_LOG_FORMAT='xml' is not one of plain, json" in run.stderr
