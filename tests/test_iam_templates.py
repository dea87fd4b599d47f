"""The read and write roles keygov is deployed with grant exactly what its code calls.

scripts/check_iam_templates.py finds every boto3 call of inventory/aws/ by parsing the source and
compares it with inventory/aws/permissions.py, the CloudFormation template, the Terraform module
and the README. These tests run it on the real tree, and on altered copies to show that each kind
of drift fails with a message that says what to change.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cfnlint.api import lint_file

from inventory.aws.permissions import IMPLIED_ACTIONS, READ, REQUIRED_ACTIONS, WRITE

ROOT = Path(__file__).resolve().parent.parent


def _load_checker():
    spec = importlib.util.spec_from_file_location(
        "check_iam_templates", ROOT / "scripts" / "check_iam_templates.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


check = _load_checker()


def _aws_layer(tmp_path: Path, **modules: str) -> Path:
    """A stand-in inventory/aws/ holding ``modules`` (name → source)."""
    aws_dir = tmp_path / "inventory" / "aws"
    aws_dir.mkdir(parents=True)
    for name, source in modules.items():
        (aws_dir / f"{name}.py").write_text(textwrap.dedent(source))
    return aws_dir


def test_it_finds_every_call_of_the_real_aws_layer():
    actions = {(Path(c.path).name, c.action) for c in check.scan_calls()}

    assert ("credential_report.py", "iam:GenerateCredentialReport") in actions
    assert ("collector.py", "iam:GetAccountAuthorizationDetails") in actions
    assert ("cloudtrail.py", "cloudtrail:LookupEvents") in actions  # a `client` parameter
    assert ("provisioning.py", "secretsmanager:CreateSecret") in actions
    assert ("connection.py", "sts:AssumeRole") in actions  # conn.client("sts").assume_role()
    assert ("organizations.py", "organizations:ListAccounts") in actions


def test_it_finds_the_code_the_declaration_and_every_template_in_step():
    assert check.all_problems() == []


def test_it_keeps_list_accounts_and_assume_role_out_of_the_roles():
    template = check.cfn_role_actions(check.load_cfn())
    terraform = check.terraform_role_actions()
    readme = check.readme_role_actions()

    for granted in (template, terraform, readme):
        every = granted[READ] | granted[WRITE]
        assert "organizations:ListAccounts" not in every
        assert "sts:AssumeRole" not in every
        assert not any(action.endswith("*") for action in every)


def test_it_names_the_calls_of_clients_paginators_and_parameters(tmp_path):
    aws_dir = _aws_layer(
        tmp_path,
        collector="""
            def collect(conn, iam):
                trail = conn.client("cloudtrail")
                trail.lookup_events(MaxResults=50)
                iam.list_users()                       # a parameter named after its service
                pages = conn.client("organizations").get_paginator("list_accounts")
                {}.get("not an AWS call")
                return pages

            def connect(conn):
                return conn.client("iam")
        """,
    )

    calls = check.scan_calls(aws_dir)

    assert [(c.path, c.line, c.action) for c in calls] == [
        ("inventory/aws/collector.py", 4, "cloudtrail:LookupEvents"),
        ("inventory/aws/collector.py", 5, "iam:ListUsers"),
        ("inventory/aws/collector.py", 6, "organizations:ListAccounts"),
    ]


def test_it_fails_on_a_call_that_is_not_declared_and_an_action_no_longer_called(tmp_path):
    """GIVEN an AWS layer that calls ListUsers and no longer calls GetAccessKeyLastUsed
    WHEN its calls are compared with REQUIRED_ACTIONS
    THEN both are reported, with the line of the call."""
    source = "\n".join(
        f"def f{n}(iam):\n    iam.{name}()\n"
        for n, name in enumerate(
            [
                "generate_credential_report",
                "get_credential_report",
                "get_account_authorization_details",
                "list_access_keys",
                "list_users",
            ]
        )
    )
    aws_dir = _aws_layer(
        tmp_path,
        collector=source,
        cloudtrail="def g(c):\n    c.client('cloudtrail').lookup_events()\n",
        provisioning=(
            "def p(conn):\n    iam = conn.client('iam')\n    sm = conn.client('secretsmanager')\n"
            "    iam.create_access_key()\n    sm.create_secret()\n    iam.delete_access_key()\n"
        ),
        organizations="def o(conn):\n    conn.client('organizations').list_accounts()\n",
        connection="def c(base):\n    base.client('sts').assume_role()\n",
    )

    problems = check.check_declared(check.scan_calls(aws_dir))

    assert problems == [
        "inventory/aws/collector.py:14 calls iam:ListUsers, which inventory/aws/permissions.py's "
        "REQUIRED_ACTIONS['read'] does not declare: add it (and to the templates)",
        "REQUIRED_ACTIONS['read'] declares iam:GetAccessKeyLastUsed, which no code in "
        "inventory/aws/ calls: remove it (from the templates too), or explain it in "
        "IMPLIED_ACTIONS",
    ]


def test_it_refuses_a_call_it_cannot_attribute_to_one_service(tmp_path):
    aws_dir = _aws_layer(
        tmp_path,
        collector="""
            def tag(conn, client):
                conn.client("secretsmanager")
                conn.client("organizations")
                client.create_secret()
                client.tag_resource()
        """,
    )

    with pytest.raises(
        check.CheckError, match=r"collector.py:6: \.tag_resource\(\) is an operation"
    ):
        check.scan_calls(aws_dir)


def test_it_refuses_a_client_made_from_a_variable(tmp_path):
    aws_dir = _aws_layer(tmp_path, collector="def f(conn, name):\n    conn.client(name).x()\n")

    with pytest.raises(check.CheckError, match=r"collector\.py:2: a client whose service"):
        check.scan_calls(aws_dir)


def test_it_reports_a_missing_and_an_extra_action_of_a_role():
    granted = {
        READ: set(REQUIRED_ACTIONS[READ]) - {"cloudtrail:LookupEvents"} | {"iam:ListUsers"},
        WRITE: set(REQUIRED_ACTIONS[WRITE]),
    }

    assert check.compare("somewhere.yaml", granted) == [
        "somewhere.yaml: the read role lacks cloudtrail:LookupEvents (keygov calls it)",
        "somewhere.yaml: the read role grants iam:ListUsers, which keygov does not call with "
        "that role (inventory/aws/permissions.py)",
    ]
    assert check.compare("x", {READ: set(REQUIRED_ACTIONS[READ])}) == [
        "x: no write role policy found"
    ]


def test_it_reads_the_roles_of_the_cloudformation_template():
    template = check.load_cfn()

    granted = check.cfn_role_actions(template)

    assert granted == {READ: set(REQUIRED_ACTIONS[READ]), WRITE: set(REQUIRED_ACTIONS[WRITE])}
    assert check.cfn_problems(template) == []
    assert template["Parameters"]["ReadRoleName"]["Default"] == "KeygovRead"
    assert template["Resources"]["WriteRole"]["Condition"] == "WithWriteRole"


def test_it_fails_a_template_that_trusts_anyone_or_shows_the_external_id():
    template = check.load_cfn()
    del template["Parameters"]["ExternalId"]["NoEcho"]
    trust = template["Resources"]["ReadRole"]["Properties"]["AssumeRolePolicyDocument"]
    trust["Statement"][0]["Principal"] = {"AWS": "*"}
    del trust["Statement"][0]["Condition"]

    assert check.cfn_problems(template) == [
        "deploy/aws/keygov-roles.yaml: the ExternalId parameter must be NoEcho",
        "deploy/aws/keygov-roles.yaml: ReadRole must trust only KeygovPrincipalArn",
        "deploy/aws/keygov-roles.yaml: ReadRole must require the ExternalId",
    ]


def test_it_notices_an_action_dropped_from_the_terraform_module(tmp_path):
    main_tf = tmp_path / "main.tf"
    main_tf.write_text(
        check.TERRAFORM.read_text().replace('    "iam:GetAccessKeyLastUsed",\n', "", 1)
    )

    problems = check.compare("main.tf", check.terraform_role_actions(main_tf))

    assert problems == ["main.tf: the read role lacks iam:GetAccessKeyLastUsed (keygov calls it)"]


def test_it_explains_every_implied_action():
    for action, why in IMPLIED_ACTIONS.items():
        assert why
        assert any(action in actions for actions in REQUIRED_ACTIONS.values())


def test_it_passes_cfn_lint(tmp_path):
    assert lint_file(check.CFN_TEMPLATE) == []
    # The same lint fails a broken copy: the test can fail.
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        check.CFN_TEMPLATE.read_text().replace(
            "MaxSessionDuration: 3600", "MaxSessionDuration: 1", 1
        )
    )
    assert [m.rule.id for m in lint_file(broken)] == ["E3034"]


@pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform is not installed")
def test_it_keeps_the_terraform_module_parseable_and_formatted():
    # `terraform fmt` parses the HCL (offline: `validate` would need the AWS provider).
    result = subprocess.run(
        ["terraform", "fmt", "-check", "-diff", str(check.TERRAFORM.parent)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_it_scopes_the_write_role_to_a_user_path_and_the_secret_prefix():
    template = check.load_cfn()
    policy = template["Resources"]["WriteRole"]["Properties"]["Policies"][0]["PolicyDocument"]

    resources = {s["Sid"]: s["Resource"]["Fn::Sub"] for s in policy["Statement"]}

    assert resources == {
        "KeygovWriteAccessKeys": "arn:${AWS::Partition}:iam::${AWS::AccountId}:user${WriteUserPath}*",
        "KeygovWriteSecrets": (
            "arn:${AWS::Partition}:secretsmanager:*:${AWS::AccountId}:secret:${SecretNamePrefix}*"
        ),
    }
    assert template["Parameters"]["WriteUserPath"]["Default"] == "/"
    assert template["Parameters"]["SecretNamePrefix"]["Default"] == "keygov/"
