from django.core.management.base import BaseCommand

from inventory.services.kpis import rebuild_rollups


class Command(BaseCommand):
    help = "Recompute every KPI roll-up from the key history (each account's snapshots)."

    def handle(self, *args, **options):
        written = rebuild_rollups(progress=lambda line: self.stdout.write(f"  {line}"))
        self.stdout.write(self.style.SUCCESS(f"{written} account-days of roll-ups rebuilt"))
