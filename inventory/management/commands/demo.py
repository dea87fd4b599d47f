"""``manage.py demo``: keygov on the bundled AWS emulator with a demo organisation."""

from __future__ import annotations

import secrets
import socket
import time

import boto3
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor
from django.db.models import Count

from inventory.choices import SnapshotStatus
from inventory.models import Account, IamUser
from inventory.services.accounts import import_accounts
from inventory.services.collection import collect_account

ADMIN_USERNAME = "admin"
# One sign-in per role (PRODUCT.md, "Users and roles"). The owner and the approver own keys in the
# demo organisation (chosen after the collection), so "My keys" and the key actions show data.
ROLE_USERS = (("viewer", "viewer"), ("owner", "owner"), ("approver", "approver"))


def _split_addr(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    try:
        return host or "127.0.0.1", int(port)
    except ValueError:
        raise CommandError(f"--addr {addr!r} is not host:port (e.g. 127.0.0.1:8000)") from None


class Command(BaseCommand):
    help = (
        "Start the bundled AWS emulator (moto) in this process, seed a deterministic demo "
        "organisation, import and collect its accounts, create the 'admin' superuser with a "
        "new password, then serve keygov (Ctrl-C stops both). Run `manage.py migrate` first."
    )
    # handle() checks the migrations itself, with a message that says what to run.
    requires_migrations_checks = False

    def add_arguments(self, parser):
        parser.add_argument(
            "--aws-port", type=int, default=5005, help="port of the emulator (default 5005)"
        )
        parser.add_argument(
            "--addr",
            default="127.0.0.1:8000",
            help="host:port the web server listens on (default 127.0.0.1:8000)",
        )
        parser.add_argument(
            "--no-serve",
            action="store_true",
            help="seed and collect, then stop (the emulator stops with the command)",
        )
        parser.add_argument(
            "--seed",
            type=int,
            default=42,
            help="seed of the organisation: the same seed gives the same account and key ids",
        )

    def handle(self, *args, aws_port, addr, no_serve, seed, **options):
        try:
            from inventory import demo
        except ImportError as exc:
            raise CommandError(
                f"the demo needs the bundled AWS emulator ({exc}): pip install -e '.[demo]'"
            ) from None
        self._check_database(demo)
        host, port = _split_addr(addr)
        if not no_serve:
            self._check_web_port(host, port)

        started = time.monotonic()
        try:
            with demo.running_emulator(aws_port) as url:
                self.stdout.write(f"AWS emulator (moto) listening on {url}")
                seeded = demo.seed_emulator(seed)
                self.stdout.write(
                    f"Seeded a demo organisation (seed {seed}) in "
                    f"{time.monotonic() - started:.1f} s: {len(seeded)} accounts, "
                    f"{sum(a.users for a in seeded)} IAM users, {sum(a.keys for a in seeded)} "
                    "access keys"
                )
                # One boto3 session for every account: each new session would parse the service
                # models again, which costs more than collecting a demo account.
                session = boto3.Session()
                accounts = self._import(demo, session)
                self._collect(accounts, session)
                password = self._reset_users(demo.ADMIN_EMAIL)
                self.stdout.write(
                    f"Demo ready in {time.monotonic() - started:.1f} s: "
                    f"{len(accounts)} accounts collected."
                )
                self.stdout.write(
                    self.style.SUCCESS(
                        f"Log in at http://{host}:{port}/ as {ADMIN_USERNAME} / {password}"
                    )
                )
                self.stdout.write(
                    f"One user per role, all with the password {password} (new on every run):"
                )
                for username, role, email in self._role_users:
                    self.stdout.write(f"  {username:<9} {role:<9} {email}")
                if no_serve:
                    return
                if settings.REDIS_URL:
                    self.stdout.write(
                        self.style.WARNING(
                            "REDIS_URL is set: 'Collect now' queues tasks for Celery workers, "
                            "which do not see this process's emulator. Unset it for the demo."
                        )
                    )
                # Same process as the emulator, so "Collect now" (tasks run in-process without
                # Redis) reaches it. --insecure: the demo serves the admin's static files itself.
                call_command(
                    "runserver",
                    addr,
                    use_reloader=False,
                    insecure_serving=True,
                    shutdown_message="Stopping keygov and the AWS emulator.",
                )
        except demo.EmulatorError as exc:
            raise CommandError(str(exc)) from None

    def _check_database(self, demo) -> None:
        try:
            executor = MigrationExecutor(connection)
            pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
        except DatabaseError as exc:
            raise CommandError(f"cannot use the database: {exc}") from None
        if pending:
            raise CommandError(
                f"the database is not ready ({len(pending)} migration(s) not applied): "
                "run `python manage.py migrate` first"
            )
        # The demo adds made-up accounts and resets the password of 'admin': never in a
        # database that keygov uses for real accounts.
        real = Account.objects.exclude(external_id=demo.EXTERNAL_ID)
        if real.exists():
            raise CommandError(
                f"this database holds {real.count()} account(s) that are not the demo's "
                f"(e.g. {real.first().account_id}); the demo would mix made-up accounts into "
                "them and reset the admin password. Run it on its own database, e.g. "
                "KEYGOV_DATA_DIR=/tmp/keygov-demo."
            )

    def _check_web_port(self, host: str, port: int) -> None:
        # runserver would notice too, but only after the seeding and collection.
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError as exc:
                raise CommandError(
                    f"cannot serve on {host}:{port}: {exc.strerror}. Stop the program using it "
                    "or choose another address with --addr."
                ) from None

    def _import(self, demo, session):
        """The organisation's accounts, through the same path as real ones."""
        result = import_accounts(demo.ROLE_NAME, external_id=demo.EXTERNAL_ID, session=session)
        for account in result.created:
            self.stdout.write(f"  added   {account.account_id} {account.name}")
        for account in result.updated:
            self.stdout.write(f"  updated {account.account_id} {account.name}")
        return [*result.created, *result.updated]

    def _collect(self, accounts, session) -> None:
        # The emulator lives in this process only: a lease left by a demo stopped in the middle
        # of a collection cannot belong to a running one, and would block the account for the
        # lease's half hour.
        Account.objects.filter(pk__in=[a.pk for a in accounts]).update(collecting_until=None)
        failed = []
        for account in accounts:
            self.stdout.write(f"Collecting {account.name} ({account.account_id}):")
            snapshot = collect_account(
                account.pk,
                session=session,
                progress=lambda phase: self.stdout.write(f"  {phase}"),
            )
            if snapshot is None:
                self.stdout.write(self.style.WARNING("  skipped: another collection is running"))
            elif snapshot.status == SnapshotStatus.FAILED:
                failed.append(account.account_id)
                self.stdout.write(self.style.ERROR(f"  failed: {snapshot.error}"))
        if failed:
            raise CommandError(f"the collection of {', '.join(failed)} failed (see above)")

    def _reset_users(self, admin_email: str) -> str:
        """The superuser 'admin' and one user per role, all with one new password: printed,
        never stored. The owner and the approver are the two owners of the most keys."""
        password = secrets.token_urlsafe(12)
        owners = (
            IamUser.objects.filter(deleted=False, access_keys__deleted=False)
            .exclude(owner__in=["", admin_email])
            # Team mailboxes own service users in the demo; people sign in.
            .exclude(owner__contains="-team@")
            .values("owner")
            .annotate(n=Count("access_keys"))
            .order_by("-n", "owner")
            .values_list("owner", flat=True)[:2]
        )
        owner_emails = [*owners, "", ""]
        emails = {"viewer": f"viewer@{_demo_domain(admin_email)}", "owner": owner_emails[0]}
        emails["approver"] = owner_emails[1]
        people = [(ADMIN_USERNAME, "admin", admin_email)]
        people += [(username, role, emails[role]) for username, role in ROLE_USERS]
        User = get_user_model()
        for username, role, email in people:
            user, _ = User.objects.get_or_create(username=username)
            user.email = email
            user.is_active = True
            user.is_staff = user.is_superuser = role == "admin"
            user.set_password(password)
            user.save()
            user.groups.set([Group.objects.get_or_create(name=role)[0]])
        self._role_users = people
        return password


def _demo_domain(email: str) -> str:
    return email.rpartition("@")[2] or "example.com"
