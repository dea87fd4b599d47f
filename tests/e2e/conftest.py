"""The compose stack without Docker: gunicorn, Celery workers and beat as subprocesses, on a
throwaway PostgreSQL database, a Redis database of their own and moto in server mode.

- ``e2e_database`` (session): ``keygov_e2e_<pid>_template`` on the server of ``DATABASE_URL``,
  migrated with ``manage.py migrate``, with an admin and a viewer; each test runs on a copy,
  ``keygov_e2e_<pid>`` (CREATE DATABASE ... TEMPLATE), dropped after it.
- ``stack`` (per test): starts processes (``stack.gunicorn()``, ``stack.worker()``,
  ``stack.beat()``, or any command with ``stack.start``) with the compose environment
  (DATABASE_URL, REDIS_URL, AWS_ENDPOINT_URL and dummy credentials, KEYGOV_SECRET_KEY,
  KEYGOV_ALLOWED_HOSTS); each one's output goes to ``test-output/e2e/<test>-<name>.log``; all
  are stopped at the end of the test (SIGTERM to the process group, then SIGKILL), and the logs'
  tails are printed when the test failed.

Redis is a redis-server of the session's own (``e2e_redis``), emptied at the start of each test.
Needs PostgreSQL and Redis: skipped without them.
"""

from __future__ import annotations

import http.client
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode, urlsplit, urlunsplit

import psycopg
import pytest
import redis

REPO = Path(__file__).resolve().parents[2]
LOGS = REPO / "test-output" / "e2e"
PASSWORD = "e2e-Password-4-keygov"
SECRET_KEY = "e2e-" + secrets.token_urlsafe(40)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float, interval: float = 0.3, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


# --- HTTP ----------------------------------------------------------------------------------------


class Http:
    """A signed-in browser, as far as keygov can tell: cookies, CSRF, no redirects followed."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, body: dict | None = None, timeout: float = 30):
        headers = {"Host": "127.0.0.1"}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        data = None
        if method == "POST":
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            csrf = next((v for k, v in self.cookies.items() if k.endswith("csrftoken")), "")
            headers["X-CSRFToken"] = csrf
            data = urlencode(body or {})
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            text = response.read().decode("utf-8", "replace")
        finally:
            conn.close()
        jar = SimpleCookie()
        for name, value in response.getheaders():
            if name.lower() == "set-cookie":
                jar.load(value)
        self.cookies.update({k: m.value for k, m in jar.items()})
        return response.status, text, dict(response.getheaders())

    def get(self, path: str, timeout: float = 30):
        return self.request("GET", path, timeout=timeout)

    def post(self, path: str, body: dict | None = None, timeout: float = 30):
        return self.request("POST", path, body, timeout=timeout)

    def login(self, username: str, password: str = PASSWORD) -> Http:
        status, text, _ = self.get("/login/")
        assert status == 200, f"GET /login/: {status}"
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', text).group(1)
        status, _, _headers = self.request(
            "POST",
            "/login/",
            {"username": username, "password": password, "csrfmiddlewaretoken": token},
        )
        assert status == 302, f"POST /login/ as {username}: {status}"
        assert any(k.endswith("sessionid") for k in self.cookies), self.cookies
        return self


# --- the database ----------------------------------------------------------------------------------


def _with_db(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def _base_env() -> dict:
    # Nothing of this shell's keygov settings (KEYGOV_HTTPS, a test's REDIS_URL...) leaks in.
    drop = ("KEYGOV_", "DATABASE_URL", "REDIS_URL", "AWS_")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)} | {
        "DJANGO_SETTINGS_MODULE": "keygov.settings",
        "PYTHONUNBUFFERED": "1",
        "KEYGOV_SECRET_KEY": SECRET_KEY,
        "KEYGOV_ALLOWED_HOSTS": "127.0.0.1,localhost",
    }


def manage(env: dict, *args: str, timeout: float = 180) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode:
        raise AssertionError(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


SETUP_USERS = f"""
from django.contrib.auth.models import Group, User
for name, group in (("e2e-admin", "admin"), ("e2e-viewer", "viewer")):
    user = User.objects.create_user(name, f"{{name}}@example.com", {PASSWORD!r})
    user.groups.add(Group.objects.get(name=group))
"""


@pytest.fixture(scope="session")
def e2e_database():
    """A migrated template database, with users ``e2e-admin`` and ``e2e-viewer``; each test
    gets a copy of its own (``fresh_database``)."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        pytest.skip("the end-to-end tests need PostgreSQL (DATABASE_URL=postgres://...)")
    if not os.environ.get("REDIS_URL"):
        pytest.skip("the end-to-end tests need Redis (REDIS_URL)")
    name = f"keygov_e2e_{os.getpid()}_template"
    admin_url = _with_db(url, "postgres")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        env = _base_env() | {"DATABASE_URL": _with_db(url, name)}
        manage(env, "migrate", "--noinput", "-v", "0")
        manage(env, "shell", "-c", SETUP_USERS)
        yield _with_db(url, name)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def fresh_database(template_url: str):
    """``keygov_e2e_<pid>``: a copy of the template, dropped afterwards (connections and all)."""
    template = urlsplit(template_url).path.lstrip("/")
    name = template.removesuffix("_template")
    admin_url = _with_db(template_url, "postgres")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    try:
        yield _with_db(template_url, name)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sql(db_url: str, query: str, params=()) -> list[tuple]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


# --- processes -------------------------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (a Celery worker and its pool's children)."""
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, sig)
        self.popen.wait(timeout=30)


@dataclass
class Stack:
    test: str
    env: dict
    db_url: str
    redis_url: str
    tmp: Path
    procs: list[Proc] = field(default_factory=list)

    def start(self, name: str, argv: list[str], **extra_env: str) -> Proc:
        LOGS.mkdir(parents=True, exist_ok=True)
        log = LOGS / f"{self.test}-{name}.log"
        with log.open("w") as out:
            popen = subprocess.Popen(
                argv,
                cwd=REPO,
                env=self.env | extra_env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def wait_for_log(self, proc: Proc, pattern: str, timeout: float = 60) -> None:
        def seen():
            if proc.popen.poll() is not None:
                pytest.fail(f"{proc.name} exited ({proc.popen.returncode}):\n{proc.text()[-3000:]}")
            return re.search(pattern, proc.text())

        wait_until(seen, timeout, what=f"{proc.name} to log {pattern!r}")

    def gunicorn(self, name: str = "gunicorn", workers: int = 2, **extra_env: str) -> Http:
        port = free_port()
        proc = self.start(
            name,
            [
                sys.executable,
                "-m",
                "gunicorn",
                "keygov.wsgi",
                "-w",
                str(workers),
                "--bind",
                f"127.0.0.1:{port}",
                "--timeout",
                "30",
                "--graceful-timeout",
                "5",
                "--access-logfile",
                "-",
            ],
            **extra_env,
        )
        http_ = Http(port)

        def up():
            if proc.popen.poll() is not None:
                pytest.fail(f"gunicorn exited:\n{proc.text()[-3000:]}")
            try:
                return http_.get("/health/?only=database", timeout=5)[0] == 200
            except OSError:
                return False

        wait_until(up, 60, what="gunicorn to answer /health/")
        http_.proc = proc
        return http_

    def worker(self, name: str = "worker", app: str = "keygov", **extra_env: str) -> Proc:
        proc = self.start(
            name,
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                app,
                "worker",
                "-c",
                "1",
                "--without-mingle",
                "--without-gossip",
                "--loglevel",
                "INFO",
                "-n",
                f"{name}-{os.getpid()}@%h",
            ],
            **extra_env,
        )
        self.wait_for_log(proc, r"ready\.")
        return proc

    def beat(self, name: str = "beat", **extra_env: str) -> Proc:
        schedule = self.tmp / f"{name}-schedule"
        proc = self.start(
            name,
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "keygov",
                "beat",
                "--loglevel",
                "INFO",
                "--schedule",
                str(schedule),
            ],
            **extra_env,
        )
        self.wait_for_log(proc, r"beat: Starting")
        return proc

    def manage(self, *args: str) -> str:
        return manage(self.env, *args)

    def sql(self, query: str, params=()) -> list[tuple]:
        return sql(self.db_url, query, params)

    def add_accounts(self, ids: dict[str, str]) -> None:
        """Register moto's member accounts (name: id) through the read role."""
        code = (
            "from inventory.models import Account\n"
            f"for name, account_id in {ids!r}.items():\n"
            "    Account.objects.update_or_create(account_id=account_id, defaults=dict(name=name,"
            " enabled=True, role_arn=f'arn:aws:iam::{account_id}:role/KeygovRead',"
            " external_id='keygov-test'))\n"
        )
        self.manage("shell", "-c", code)

    def snapshots(self, account_id: str) -> list[tuple]:
        """(status, run_key, key_count, error) of the account's snapshots, oldest first."""
        return self.sql(
            "SELECT s.status, s.run_key, s.key_count, s.error FROM inventory_snapshot s "
            "JOIN inventory_account a ON a.id = s.account_id WHERE a.account_id = %s "
            "ORDER BY s.started_at",
            (account_id,),
        )

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            if proc.popen.poll() is None:
                try:
                    os.killpg(proc.popen.pid, signal.SIGTERM)
                    proc.popen.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.popen.pid, signal.SIGKILL)
                    proc.popen.wait(timeout=15)
                except ProcessLookupError:
                    pass


@pytest.fixture(scope="session")
def e2e_redis(tmp_path_factory):
    """A redis-server of this session's own on a free port (no persistence): other test runs
    on this machine share its Redis, and a FLUSHDB of theirs must not empty our queue (nor
    ours theirs). Without the redis-server binary: database KEYGOV_E2E_REDIS_DB (13) of the
    server of REDIS_URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        parts = urlsplit(os.environ["REDIS_URL"])
        yield urlunsplit(parts._replace(path=f"/{os.environ.get('KEYGOV_E2E_REDIS_DB', '13')}"))
        return
    port = free_port()
    LOGS.mkdir(parents=True, exist_ok=True)
    with (LOGS / "redis-server.log").open("w") as log:
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
             "no", "--daemonize", "no", "--dir", str(tmp_path_factory.mktemp("redis"))],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url, socket_timeout=1)

        def up():
            try:
                return client.ping()
            except redis.RedisError:
                return False

        wait_until(up, 15, what="the session's redis-server")
        client.close()
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def emptied(url: str) -> str:
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    return url


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def stack(request, e2e_database, e2e_redis, moto_server, tmp_path):
    with fresh_database(e2e_database) as db_url:
        env = _base_env() | {
            "DATABASE_URL": db_url,
            "REDIS_URL": emptied(e2e_redis),
            "AWS_ENDPOINT_URL": moto_server,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",  # moto's dummy credentials
            "AWS_DEFAULT_REGION": "us-east-1",
            "KEYGOV_DATA_DIR": str(tmp_path),
        }
        s = Stack(request.node.name, env, db_url, env["REDIS_URL"], tmp_path)
        try:
            yield s
        finally:
            s.stop_all()
            failed = any(
                getattr(getattr(request.node, f"rep_{when}", None), "failed", False)
                for when in ("setup", "call")
            )
            if failed:
                for proc in s.procs:
                    print(f"\n----- {proc.name} ({proc.log}), last lines -----")
                    print("\n".join(proc.text().splitlines()[-60:]))
