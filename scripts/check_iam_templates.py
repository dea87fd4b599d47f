"""The IAM actions keygov's code calls, the ones it declares, and the ones its templates grant
must be the same lists.

1. Every boto3 call in inventory/aws/ is found by parsing the source (``ast``): calls on a client
   (``iam.list_access_keys(...)``, ``conn.client("sts").assume_role(...)``), paginators
   (``get_paginator("list_accounts")``); each is named as an IAM action with botocore's own service
   models (``iam:ListAccessKeys``) and attributed to the identity that makes it
   (inventory/aws/permissions.py, ``MODULE_IDENTITIES``).
2. Those actions, plus the declared implied ones, must equal ``REQUIRED_ACTIONS`` identity by
   identity.
3. The read and write roles of the CloudFormation template (deploy/aws/keygov-roles.yaml), of the
   Terraform module (deploy/aws/terraform/main.tf) and of the README's policies must grant exactly
   ``REQUIRED_ACTIONS["read"]`` and ``["write"]``. ListAccounts belongs to the management account
   and AssumeRole to keygov's own principal: neither may appear in the roles.

Prints what it checked; exits non-zero with one line per disagreement.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import botocore.session
import yaml
from botocore import xform_name

ROOT = Path(__file__).resolve().parent.parent
AWS_DIR = ROOT / "inventory" / "aws"
CFN_TEMPLATE = ROOT / "deploy" / "aws" / "keygov-roles.yaml"
TERRAFORM = ROOT / "deploy" / "aws" / "terraform" / "main.tf"
README = ROOT / "README.md"

sys.path.insert(0, str(ROOT))
from inventory.aws.permissions import (  # noqa: E402
    IMPLIED_ACTIONS,
    MODULE_IDENTITIES,
    READ,
    REQUIRED_ACTIONS,
    WRITE,
)

# Client methods that are not API operations.
CLIENT_HELPERS = {"get_paginator", "get_waiter", "can_paginate", "close", "generate_presigned_url"}
ROLE_IDENTITIES = (READ, WRITE)
# CloudFormation logical ids and Terraform local-name prefixes of the two roles.
CFN_ROLES = {READ: "ReadRole", WRITE: "WriteRole"}


class CheckError(Exception):
    """The source cannot be read unambiguously: say where, and how to fix it."""


@dataclass(frozen=True, order=True)
class Call:
    """One AWS API call in the source."""

    path: str
    line: int
    service: str
    operation: str  # PascalCase, as in the API and in IAM actions
    action: str


# -----------------------------------------------------------------------------------------------
# 1. The calls in the source.


class _Services:
    """botocore's service models: snake_case method → operation name, and the action prefix."""

    def __init__(self, names: set[str]) -> None:
        session = botocore.session.get_session()
        self.ops: dict[str, dict[str, str]] = {}
        self.prefix: dict[str, str] = {}
        for name in names:
            model = session.get_service_model(name)
            self.ops[name] = {xform_name(op): op for op in model.operation_names}
            self.prefix[name] = model.signing_name

    def owners(self, method: str) -> list[str]:
        return sorted(s for s, ops in self.ops.items() if method in ops)


def _is_client_call(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "client"
    )


def _client_service(node: ast.AST) -> str | None:
    """``anything.client("svc")`` → "svc"; None for anything else."""
    if _is_client_call(node) and node.args and isinstance(node.args[0], ast.Constant):
        value = node.args[0].value
        return value if isinstance(value, str) else None
    return None


def _services_created(trees: dict[str, ast.Module]) -> set[str]:
    """The services of every ``.client("svc")``. A client made from a variable is refused (its
    calls could not be checked), except in the factory itself, a function named ``client``."""
    names = set()
    for path, tree in trees.items():
        for scope in _scopes(tree):
            for node in _own_nodes(scope):
                if not _is_client_call(node):
                    continue
                service = _client_service(node)
                if service:
                    names.add(service)
                elif getattr(scope, "name", "") != "client":
                    raise CheckError(
                        f"{path}:{node.lineno}: a client whose service is not a string "
                        'literal; write .client("iam") so that its calls can be checked'
                    )
    return names


def _scopes(tree: ast.Module):
    """The module, then every function: each has its own local names."""
    yield tree
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            yield node


def _own_nodes(scope: ast.AST):
    """The nodes of ``scope`` outside the functions nested in it."""
    todo = list(ast.iter_child_nodes(scope))
    while todo:
        node = todo.pop()
        yield node
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            todo.extend(ast.iter_child_nodes(node))


def scan_calls(aws_dir: Path = AWS_DIR) -> list[Call]:
    """Every AWS API call made by the modules in ``aws_dir``."""
    trees = {
        p.relative_to(aws_dir.parent.parent).as_posix(): ast.parse(p.read_text(), str(p))
        for p in sorted(aws_dir.glob("*.py"))
    }
    services = _Services(_services_created(trees))
    calls: list[Call] = []
    for path, tree in trees.items():
        for scope in _scopes(tree):
            nodes = list(_own_nodes(scope))
            # Names bound to a client in this scope: x = <...>.client("svc")
            bound: dict[str, str] = {}
            for node in nodes:
                if isinstance(node, ast.Assign) and len(node.targets) == 1:
                    target = node.targets[0]
                    service = _client_service(node.value)
                    if service and isinstance(target, ast.Name):
                        bound[target.id] = service
            for node in nodes:
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                    continue
                call = _resolve(path, node, bound, services)
                if call:
                    calls.append(call)
    return sorted(calls)


def _resolve(path: str, node: ast.Call, bound: dict[str, str], services: _Services) -> Call | None:
    method = node.func.attr
    receiver = node.func.value
    where = f"{path}:{node.lineno}"
    service = _client_service(receiver)
    if service is None and isinstance(receiver, ast.Name):
        # A client bound in this scope, or a parameter named after its service (``iam``).
        service = bound.get(receiver.id) or (receiver.id if receiver.id in services.ops else None)
    if method in CLIENT_HELPERS:
        if method != "get_paginator":
            return None
        if not (node.args and isinstance(node.args[0], ast.Constant)):
            raise CheckError(f"{where}: get_paginator() with a name that is not a string literal")
        method = node.args[0].value
    if service is None:
        owners = services.owners(method)
        if not owners:
            return None  # not an AWS call (list.append, dict.get, ...)
        if len(owners) > 1:
            raise CheckError(
                f"{where}: .{method}() is an operation of {', '.join(owners)}: name the client "
                f"variable after its service, or bind it with .client(...) in the same function"
            )
        service = owners[0]
    operation = services.ops[service].get(method)
    if operation is None:
        raise CheckError(f"{where}: {service} has no operation {method}()")
    return Call(path, node.lineno, service, operation, f"{services.prefix[service]}:{operation}")


def called_actions(calls: list[Call]) -> dict[str, dict[str, list[Call]]]:
    """identity → action → the calls that need it."""
    by_identity: dict[str, dict[str, list[Call]]] = defaultdict(lambda: defaultdict(list))
    for call in calls:
        identity = MODULE_IDENTITIES.get(Path(call.path).name, READ)
        by_identity[identity][call.action].append(call)
    return by_identity


def check_declared(calls: list[Call]) -> list[str]:
    """The source's calls against REQUIRED_ACTIONS, identity by identity."""
    problems = []
    found = called_actions(calls)
    for identity in sorted(set(REQUIRED_ACTIONS) | set(found)):
        declared = set(REQUIRED_ACTIONS.get(identity, ()))
        called = found.get(identity, {})
        for action in sorted(set(called) - declared):
            sites = ", ".join(f"{c.path}:{c.line}" for c in called[action])
            problems.append(
                f"{sites} calls {action}, which inventory/aws/permissions.py's "
                f"REQUIRED_ACTIONS[{identity!r}] does not declare: add it (and to the templates)"
            )
        for action in sorted(declared - set(called) - set(IMPLIED_ACTIONS)):
            problems.append(
                f"REQUIRED_ACTIONS[{identity!r}] declares {action}, which no code in "
                "inventory/aws/ calls: remove it (from the templates too), or explain it in "
                "IMPLIED_ACTIONS"
            )
    for action in sorted(IMPLIED_ACTIONS):
        if not any(action in actions for actions in REQUIRED_ACTIONS.values()):
            problems.append(f"IMPLIED_ACTIONS names {action}, which REQUIRED_ACTIONS does not")
    return problems


# -----------------------------------------------------------------------------------------------
# 2. What the templates grant.


class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short forms (!Ref, !Sub, !If...) read as their long forms."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node):
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _intrinsic)


def load_cfn(path: Path = CFN_TEMPLATE) -> dict:
    return yaml.load(path.read_text(), Loader=_CfnLoader)  # noqa: S506  # a SafeLoader subclass


def _actions_of(statements) -> set[str]:
    actions: set[str] = set()
    for statement in statements if isinstance(statements, list) else [statements]:
        if statement.get("Effect") != "Allow":
            continue
        listed = statement.get("Action", [])
        actions |= {listed} if isinstance(listed, str) else set(listed)
    return actions


def cfn_role_actions(template: dict) -> dict[str, set[str]]:
    """Role identity → the actions its inline policies allow."""
    resources = template.get("Resources", {})
    granted = {}
    for identity, logical_id in CFN_ROLES.items():
        role = resources.get(logical_id, {}).get("Properties")
        if role is None:
            continue
        actions: set[str] = set()
        for policy in role.get("Policies", []):
            actions |= _actions_of(policy["PolicyDocument"]["Statement"])
        granted[identity] = actions
    return granted


def cfn_problems(template: dict) -> list[str]:
    """What the template must say beyond its actions: trust, ExternalId, no managed policies."""
    problems = []
    where = CFN_TEMPLATE.relative_to(ROOT)
    params = template.get("Parameters", {})
    if not params.get("ExternalId", {}).get("NoEcho"):
        problems.append(f"{where}: the ExternalId parameter must be NoEcho")
    for identity, logical_id in CFN_ROLES.items():
        role = template.get("Resources", {}).get(logical_id)
        if role is None:
            problems.append(f"{where}: no {logical_id} (the {identity} role)")
            continue
        props = role.get("Properties", {})
        if props.get("ManagedPolicyArns"):
            problems.append(f"{where}: {logical_id} must not attach managed policies")
        for statement in props.get("AssumeRolePolicyDocument", {}).get("Statement", []):
            principal = statement.get("Principal", {})
            condition = statement.get("Condition", {}).get("StringEquals", {})
            if principal != {"AWS": {"Ref": "KeygovPrincipalArn"}}:
                problems.append(f"{where}: {logical_id} must trust only KeygovPrincipalArn")
            if condition.get("sts:ExternalId") != {"Ref": "ExternalId"}:
                problems.append(f"{where}: {logical_id} must require the ExternalId")
    return problems


def terraform_role_actions(path: Path = TERRAFORM) -> dict[str, set[str]]:
    """``locals { read_… = [...] write_… = [...] }`` lists of main.tf, by role."""
    text = path.read_text()
    granted: dict[str, set[str]] = {}
    for identity, body in re.findall(
        r"^\s*(read|write)_\w*actions\s*=\s*\[(.*?)\]", text, re.M | re.S
    ):
        granted.setdefault(identity, set()).update(re.findall(r'"([a-z0-9-]+:[A-Za-z*]+)"', body))
    return granted


def readme_role_actions(path: Path = README) -> dict[str, set[str]]:
    """The README's permission policies: a statement whose Sid starts with KeygovWrite belongs to
    the write role; trust policies (a Principal) are left out; the rest is the read role."""
    granted: dict[str, set[str]] = {}
    for block in re.findall(r"```json\n(.*?)```", path.read_text(), re.S):
        policy = json.loads(block)
        for statement in policy.get("Statement", []):
            if "Principal" in statement:
                continue
            identity = WRITE if statement.get("Sid", "").startswith("KeygovWrite") else READ
            granted.setdefault(identity, set()).update(_actions_of(statement))
    return granted


def compare(source: str, granted: dict[str, set[str]]) -> list[str]:
    problems = []
    for identity in ROLE_IDENTITIES:
        required = set(REQUIRED_ACTIONS[identity])
        actual = granted.get(identity)
        if actual is None:
            problems.append(f"{source}: no {identity} role policy found")
            continue
        for action in sorted(required - actual):
            problems.append(f"{source}: the {identity} role lacks {action} (keygov calls it)")
        for action in sorted(actual - required):
            problems.append(
                f"{source}: the {identity} role grants {action}, which keygov does not call "
                f"with that role (inventory/aws/permissions.py)"
            )
    return problems


def all_problems() -> list[str]:
    try:
        calls = scan_calls()
    except CheckError as exc:
        return [str(exc)]
    if not calls:
        return ["found no AWS calls in inventory/aws/: has the AWS layer moved?"]
    template = load_cfn()
    return [
        *check_declared(calls),
        *compare(str(CFN_TEMPLATE.relative_to(ROOT)), cfn_role_actions(template)),
        *cfn_problems(template),
        *compare(str(TERRAFORM.relative_to(ROOT)), terraform_role_actions()),
        *compare("README.md", readme_role_actions()),
    ]


def main() -> None:
    problems = all_problems()
    if problems:
        print("The IAM actions of the code, permissions.py and the templates disagree:")
        for problem in problems:
            print(f"  - {problem}")
        sys.exit(1)
    for identity in ROLE_IDENTITIES:
        print(f"{identity} role: {', '.join(REQUIRED_ACTIONS[identity])}")
    print(
        "inventory/aws/'s calls, permissions.py, deploy/aws/ (CloudFormation, Terraform) and "
        "README.md agree"
    )


if __name__ == "__main__":
    main()
