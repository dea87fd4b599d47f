from django.core.management.base import BaseCommand, CommandError

from inventory.choices import SnapshotStatus
from inventory.models import Account
from inventory.services.collection import collect_account


class Command(BaseCommand):
    help = "Collect IAM users and access keys of every enabled account (or of one) now."

    def add_arguments(self, parser):
        parser.add_argument(
            "--account",
            action="append",
            metavar="ID",
            help="12-digit account id to collect (repeatable); default: every enabled account",
        )

    def handle(self, *args, account=None, **options):
        if account:
            accounts = list(Account.objects.filter(account_id__in=account))
            missing = set(account) - {a.account_id for a in accounts}
            if missing:
                raise CommandError(f"unknown account(s): {', '.join(sorted(missing))}")
        else:
            accounts = list(Account.objects.filter(enabled=True))
        if not accounts:
            raise CommandError(
                "no enabled accounts: add them in the admin or with `manage.py import_accounts`"
            )
        failed = 0
        for acc in accounts:
            self.stdout.write(f"{acc}:")
            try:
                snapshot = collect_account(
                    acc.pk, progress=lambda phase: self.stdout.write(f"  {phase}")
                )
            except Exception as exc:
                # Recorded on the snapshot and logged with its traceback; go on with the others.
                failed += 1
                self.stdout.write(self.style.ERROR(f"  failed: {type(exc).__name__}: {exc}"))
                continue
            if snapshot is None:
                self.stdout.write(self.style.WARNING("  skipped: another collection is running"))
            elif snapshot.status == SnapshotStatus.FAILED:
                failed += 1
                self.stdout.write(self.style.ERROR(f"  failed: {snapshot.error}"))
        if failed:
            raise CommandError(f"{failed} of {len(accounts)} collections failed")
