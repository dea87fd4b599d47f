"""AWS Organizations: the accounts of an organisation."""

from __future__ import annotations

from dataclasses import dataclass

from inventory.aws.connection import AwsConnection


@dataclass(frozen=True)
class OrgAccount:
    account_id: str
    name: str
    email: str
    status: str
    arn: str

    @property
    def partition(self) -> str:
        # arn:<partition>:organizations::<management>:account/o-…/<id>
        return self.arn.split(":")[1] if self.arn.startswith("arn:") else "aws"


def list_accounts(conn: AwsConnection) -> list[OrgAccount]:
    """Every account of the organisation (ListAccounts, every page)."""
    org = conn.client("organizations")
    accounts: list[OrgAccount] = []
    params: dict = {}
    while True:
        page = org.list_accounts(**params)
        for a in page.get("Accounts", []):
            accounts.append(
                OrgAccount(
                    account_id=a["Id"],
                    name=a.get("Name", ""),
                    email=a.get("Email", ""),
                    # "State" replaces the deprecated "Status" in newer API versions.
                    status=a.get("State") or a.get("Status", ""),
                    arn=a.get("Arn", ""),
                )
            )
        token = page.get("NextToken")
        if not token:
            return accounts
        params["NextToken"] = token
