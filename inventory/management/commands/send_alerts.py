from django.core.management.base import BaseCommand, CommandError

from inventory.services.alerts import send_alerts


class Command(BaseCommand):
    help = (
        "Send today's owner, approver and admin digests (what the daily task does). Each alert "
        "goes out once: running it twice sends nothing new."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="List the digests that would be sent; record and send nothing.",
        )

    def handle(self, *args, dry_run=False, **options):
        run = send_alerts(dry_run=dry_run)
        for recipient, alerts in sorted(run.digests.items()):
            self.stdout.write(f"{recipient}: {len(alerts)} alert(s)")
            for alert in alerts:
                self.stdout.write(f"  {alert.kind} {alert.milestone}: {alert.title}")
        prefix = "dry run, nothing sent: " if dry_run else ""
        self.stdout.write(prefix + run.summary())
        if run.failed:
            raise CommandError(
                f"{len(run.failed)} digest(s) not sent (see the log); the next run retries them"
            )
