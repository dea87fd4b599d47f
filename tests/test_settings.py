"""Settings come only from the environment; a bad value stops start-up naming the variable.

Each case starts a fresh interpreter, as keygov's processes start, so that the settings module
really is imported with that environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from keygov.env import env_bool, env_choice, env_int, env_list, env_str

REPO = Path(__file__).resolve().parent.parent
PRINT_SETTINGS = (
    "import django; django.setup(); from django.conf import settings as s; "
    "print(s.DEBUG, s.KEYGOV_AWS_MAX_ATTEMPTS, s.CELERY_TASK_ALWAYS_EAGER, "
    "s.DATABASES['default']['ENGINE'], s.DATABASES['default']['NAME'], "
    "s.KEYGOV_COLLECT_CRON, sep='|')"
)


def start(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """Run keygov in a fresh interpreter with only ``env`` set of keygov's own variables."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("KEYGOV_", "DATABASE_URL", "REDIS_URL", "DJANGO_"))
    }
    clean.update({"DJANGO_SETTINGS_MODULE": "keygov.settings", "KEYGOV_DATA_DIR": str(tmp_path)})
    clean.update(env)
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


# --- start-up ----------------------------------------------------------------------------------


def test_it_starts_on_the_embedded_default_with_nothing_set(tmp_path):
    run = start(tmp_path, "-c", PRINT_SETTINGS)

    assert run.returncode == 0, run.stderr
    debug, attempts, eager, engine, name, cron = run.stdout.strip().split("|")
    assert (debug, attempts, eager, cron) == ("False", "10", "True", "0 */6 * * *")
    assert engine == "django.db.backends.sqlite3"
    # Everything it writes goes to the data directory, never into the repository.
    assert name == str(tmp_path / "keygov.sqlite3")
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_it_reads_values_written_loosely(tmp_path):
    run = start(
        tmp_path,
        "-c",
        PRINT_SETTINGS,
        KEYGOV_DEBUG=" Yes ",
        KEYGOV_AWS_MAX_ATTEMPTS=" 3 ",
        KEYGOV_COLLECT_CRON="15 */4 * * *",
        REDIS_URL="redis://127.0.0.1:6379/0",
        DATABASE_URL="postgres://keygov:pw@db.example.com:5432/keygov",
    )

    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().split("|") == [
        "True",
        "3",
        "False",
        "django.db.backends.postgresql",
        "keygov",
        "15 */4 * * *",
    ]


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("KEYGOV_AWS_MAX_ATTEMPTS", "abc", "KEYGOV_AWS_MAX_ATTEMPTS='abc' is not an integer"),
        ("KEYGOV_AWS_MAX_ATTEMPTS", "0", "KEYGOV_AWS_MAX_ATTEMPTS='0' must be at least 1"),
        ("KEYGOV_AWS_CONCURRENCY", "-2", "KEYGOV_AWS_CONCURRENCY='-2' must be at least 1"),
        ("KEYGOV_REPORT_TIMEOUT", "5m", "KEYGOV_REPORT_TIMEOUT='5m' is not an integer"),
        ("KEYGOV_DB_CONN_MAX_AGE", "forever", "KEYGOV_DB_CONN_MAX_AGE='forever' is not an integer"),
        ("KEYGOV_DEBUG", "maybe", "KEYGOV_DEBUG='maybe' is not a boolean"),
        ("KEYGOV_COLLECT_CRON", "bad", "KEYGOV_COLLECT_CRON='bad' is not a cron expression"),
        ("KEYGOV_COLLECT_CRON", "0 25 * * *", "KEYGOV_COLLECT_CRON='0 25 * * *' is not a valid"),
        ("KEYGOV_COLLECT_TIME_LIMIT", "10", "KEYGOV_COLLECT_TIME_LIMIT='10' must be at least 60"),
        (
            "KEYGOV_BROKER_VISIBILITY_TIMEOUT",
            "1000",
            "KEYGOV_BROKER_VISIBILITY_TIMEOUT must exceed",
        ),
        ("KEYGOV_SECRET_KEY", "short", "KEYGOV_SECRET_KEY must be at least 32 characters"),
        ("REDIS_URL", "http://x", "REDIS_URL='http://x' is not a redis:// URL"),
        ("DATABASE_URL", "nonsense://", "DATABASE_URL is not a usable database URL"),
        ("DATABASE_URL", "postgres://u@h:port/db", "DATABASE_URL is not a usable database URL"),
        ("KEYGOV_LOG_LEVEL", "verbose", "KEYGOV_LOG_LEVEL='verbose' is not one of DEBUG, INFO"),
        ("KEYGOV_AWS_REGION", "Frankfurt", "KEYGOV_AWS_REGION='Frankfurt' is not an AWS region"),
        (
            "KEYGOV_ASSUME_ROLE_SESSION_NAME",
            "key gov",
            "KEYGOV_ASSUME_ROLE_SESSION_NAME='key gov' is not a role session name",
        ),
        (
            "KEYGOV_COLLECT_TIME_LIMIT",
            "7200",
            "KEYGOV_COLLECT_TIME_LIMIT='7200' must be at most 3600",
        ),
    ],
)
def test_it_stops_start_up_on_a_bad_value_naming_the_variable(tmp_path, variable, value, message):
    run = start(tmp_path, "-c", "import django; django.setup()", **{variable: value})

    assert run.returncode != 0
    assert run.stdout == ""
    # The last line of the output is the one a person reads: it names the variable.
    assert message in last_line(run.stderr), run.stderr
    assert "ImproperlyConfigured" in last_line(run.stderr)


def test_it_stops_start_up_on_a_data_directory_it_cannot_create(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    run = start(
        tmp_path, "-c", "import django; django.setup()", KEYGOV_DATA_DIR=str(blocker / "var")
    )

    assert run.returncode != 0
    assert "KEYGOV_DATA_DIR=" in last_line(run.stderr), run.stderr
    assert "is not a directory keygov can create" in last_line(run.stderr)


def test_it_stops_manage_py_on_a_bad_value(tmp_path):
    run = start(tmp_path, "manage.py", "check", KEYGOV_DEBUG="maybe")

    assert run.returncode != 0
    assert "KEYGOV_DEBUG='maybe' is not a boolean" in last_line(run.stderr)


def test_it_passes_manage_py_check_with_good_values(tmp_path):
    run = start(tmp_path, "manage.py", "check", KEYGOV_DEBUG="false")

    assert run.returncode == 0, run.stderr
    assert "no issues" in run.stdout


# --- the helpers, in-process --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", True),
        ("TRUE", True),
        (" yes ", True),
        ("On", True),
        ("0", False),
        ("False", False),
        ("no", False),
        ("off", False),
        ("", False),
    ],
)
def test_it_reads_booleans_in_any_case(monkeypatch, raw, expected):
    monkeypatch.setenv("KEYGOV_FLAG", raw)

    assert env_bool("KEYGOV_FLAG", default=not expected) is expected


def test_it_uses_the_default_of_an_unset_variable(monkeypatch):
    monkeypatch.delenv("KEYGOV_UNSET", raising=False)

    assert env_bool("KEYGOV_UNSET", True) is True
    assert env_int("KEYGOV_UNSET", 7) == 7
    assert env_str("KEYGOV_UNSET", "x") == "x"
    assert env_list("KEYGOV_UNSET", "a, b") == ["a", "b"]


def test_it_uses_the_default_of_a_blank_integer(monkeypatch):
    # `KEYGOV_X=` in a compose .env file means "not set".
    monkeypatch.setenv("KEYGOV_NUMBER", "  ")

    assert env_int("KEYGOV_NUMBER", 7, minimum=1) == 7


@pytest.mark.parametrize("raw", ["1.5", "ten", "0x10", "1e3"])
def test_it_refuses_an_integer_it_cannot_read(monkeypatch, raw):
    monkeypatch.setenv("KEYGOV_NUMBER", raw)

    with pytest.raises(ImproperlyConfigured, match=f"^KEYGOV_NUMBER='{raw}' is not an integer"):
        env_int("KEYGOV_NUMBER", 7)


def test_it_drops_blank_items_of_a_list(monkeypatch):
    monkeypatch.setenv("KEYGOV_ITEMS", " owner, ,Owner ,, ")

    assert env_list("KEYGOV_ITEMS") == ["owner", "Owner"]


@pytest.mark.parametrize(
    ("raw", "expected"), [("warning", "WARNING"), (" Debug ", "DEBUG"), ("", "INFO")]
)
def test_it_reads_a_choice_in_any_case(monkeypatch, raw, expected):
    monkeypatch.setenv("KEYGOV_LEVEL", raw)

    assert env_choice("KEYGOV_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING")) == expected
