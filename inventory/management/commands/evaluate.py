from django.core.management.base import BaseCommand, CommandError

from inventory.services.evaluation import evaluate_all_accounts


class Command(BaseCommand):
    help = "Judge every key against the policy now (states, findings, migrations) and refresh roll-ups."

    def handle(self, *args, **options):
        failed = []
        for account_id, r in evaluate_all_accounts().items():
            if isinstance(r, Exception):
                failed.append(account_id)
                self.stderr.write(f"{account_id}: failed: {r}")
                continue
            self.stdout.write(
                f"{account_id}: {r.keys} keys, {r.changed} changed state, "
                f"{r.opened} findings opened, {r.closed} closed, {r.verified} migrations verified"
            )
        if failed:
            raise CommandError(
                f"{len(failed)} account(s) could not be evaluated: {', '.join(failed)}"
            )
