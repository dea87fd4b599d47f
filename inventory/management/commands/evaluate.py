from django.core.management.base import BaseCommand

from inventory.services.evaluation import evaluate_all_accounts


class Command(BaseCommand):
    help = "Judge every key against the policy now (states, findings, migrations) and refresh roll-ups."

    def handle(self, *args, **options):
        for account_id, r in evaluate_all_accounts().items():
            self.stdout.write(
                f"{account_id}: {r.keys} keys, {r.changed} changed state, "
                f"{r.opened} findings opened, {r.closed} closed, {r.verified} migrations verified"
            )
