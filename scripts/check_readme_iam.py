"""The README's read-role policy must list exactly the IAM actions the collector calls.

The actions come from the code (``iam.<operation>(`` calls in inventory/aws/), so a new call
without a README update fails CI instead of failing with AccessDenied in someone's account.
Every ```json block of the README must also parse.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def called_iam_actions() -> set[str]:
    calls = set()
    for path in (ROOT / "inventory" / "aws").glob("*.py"):
        calls |= set(re.findall(r"\biam\.([a-z_]+)\(", path.read_text()))
    return {"iam:" + "".join(part.title() for part in name.split("_")) for name in calls}


def readme_policies() -> list[dict]:
    readme = (ROOT / "README.md").read_text()
    policies = []
    for n, block in enumerate(re.findall(r"```json\n(.*?)```", readme, re.S), start=1):
        try:
            policies.append(json.loads(block))
        except json.JSONDecodeError as exc:
            sys.exit(f"README.md: JSON block {n} does not parse: {exc}")
    return policies


def main() -> None:
    documented = set()
    for policy in readme_policies():
        for statement in policy.get("Statement", []):
            actions = statement.get("Action", [])
            actions = [actions] if isinstance(actions, str) else actions
            documented |= {a for a in actions if a.startswith("iam:")}
    called = called_iam_actions()
    if not called:
        sys.exit("found no iam.<operation>( calls in inventory/aws/: has the collector moved?")
    if documented != called:
        sys.exit(
            "README.md's read-role policy and the collector disagree:\n"
            f"  called, not in the README: {sorted(called - documented)}\n"
            f"  in the README, not called: {sorted(documented - called)}"
        )
    print(f"README.md lists the {len(called)} IAM actions the collector calls: {sorted(called)}")


if __name__ == "__main__":
    main()
