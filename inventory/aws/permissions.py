"""The IAM actions keygov needs, by the identity that needs them.

One declared list that the deployment templates are checked against: the CloudFormation template
and the Terraform module in deploy/aws/, and the README's policies. scripts/check_iam_templates.py
(run by CI and by tests/test_iam_templates.py) also scans this package's source for every boto3
call and fails when a call is not declared here, or a declared action is no longer called.

The identities:

- ``read``: the role keygov assumes in every account to collect it (``Account.role_arn``,
  default name KeygovRead): the collector's IAM calls, and CloudTrail's LookupEvents for the
  on-demand "where is this key used" lookup.
- ``write``: the optional role keygov assumes to create an approved key and store its secret
  (``Account.write_role_arn``, default name KeygovWrite).
- ``management``: the organisation's management account (or a delegated administrator), whose
  credentials ``manage.py import_accounts`` uses. Never granted to the read role: listing the
  organisation is not something a member account can do, and the read role is in every account.
- ``keygov``: keygov's own principal (its instance or task role), which assumes the other roles.
"""

from __future__ import annotations

READ = "read"
WRITE = "write"
MANAGEMENT = "management"
KEYGOV = "keygov"

REQUIRED_ACTIONS: dict[str, tuple[str, ...]] = {
    READ: (
        "iam:GenerateCredentialReport",
        "iam:GetCredentialReport",
        "iam:GetAccountAuthorizationDetails",
        "iam:ListAccessKeys",
        "iam:GetAccessKeyLastUsed",
        "cloudtrail:LookupEvents",
    ),
    WRITE: (
        "iam:CreateAccessKey",
        "iam:DeleteAccessKey",
        "secretsmanager:CreateSecret",
        "secretsmanager:TagResource",
    ),
    MANAGEMENT: ("organizations:ListAccounts",),
    KEYGOV: ("sts:AssumeRole",),
}

# Actions no code calls by name that an API call needs all the same, and why.
IMPLIED_ACTIONS: dict[str, str] = {
    "secretsmanager:TagResource": "CreateSecret with Tags also needs TagResource on the secret",
}

# Which identity makes the calls of each module of inventory/aws/ (the rest: ``read``).
MODULE_IDENTITIES: dict[str, str] = {
    "provisioning.py": WRITE,
    "organizations.py": MANAGEMENT,
    "connection.py": KEYGOV,
}
