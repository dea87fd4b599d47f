from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from inventory.aws.errors import AWS_ERRORS, describe_aws_error
from inventory.services.accounts import import_accounts


class Command(BaseCommand):
    help = (
        "Import the active accounts of the AWS Organization (run with the management account's "
        "credentials), each read through the role --role-name."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--role-name", required=True, help="name of the read role, e.g. KeygovRead"
        )
        parser.add_argument(
            "--external-id",
            default=None,
            help="ExternalId the role's trust requires (omitted: known accounts keep theirs)",
        )

    def handle(self, *args, role_name, external_id, **options):
        try:
            result = import_accounts(role_name, external_id=external_id)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        except AWS_ERRORS as exc:
            raise CommandError(describe_aws_error(exc)) from None
        for account in result.created:
            self.stdout.write(f"added   {account.account_id} {account.name} via {account.role_arn}")
        for account in result.updated:
            self.stdout.write(f"updated {account.account_id} {account.name} via {account.role_arn}")
        for skipped in result.skipped:
            self.stdout.write(f"skipped {skipped}")
        for account in result.disabled:
            self.stdout.write(f"disabled {account.account_id} {account.name}: no longer active")
        self.stdout.write(
            self.style.SUCCESS(
                f"{len(result.created)} added, {len(result.updated)} updated, "
                f"{len(result.skipped)} not active"
            )
        )
