#!/usr/bin/env bash
# Print the path of a Python interpreter that satisfies pyproject.toml's requires-python and can
# create a virtualenv; otherwise say plainly what is missing and exit 1.
#
# Candidates, in order: $PYTHON, python3.11, python3, python3.12, python3.13, python.
set -euo pipefail
cd "$(dirname "$0")/.."

# Run by each candidate. tomllib is new in 3.11, so an older interpreter fails at the import,
# which is the answer we want. Exit 3: the version fits but the venv module is missing (Debian
# and Ubuntu ship it separately, as python3.X-venv).
read -r -d '' CHECK <<'PY' || true
import operator, sys, tomllib

spec = tomllib.load(open("pyproject.toml", "rb"))["project"]["requires-python"]
have = sys.version_info[:2]
ops = {">=": operator.ge, "<=": operator.le, "==": operator.eq, "!=": operator.ne,
       ">": operator.gt, "<": operator.lt}
for clause in filter(None, (c.strip() for c in spec.split(","))):
    op = next(o for o in ops if clause.startswith(o))
    want = tuple(int(p) for p in clause[len(op):].strip().removesuffix(".*").split(".")[:2])
    if not ops[op](have, want):
        sys.exit(1)
try:
    import ensurepip, venv  # noqa: F401
except ImportError:
    sys.exit(3)
PY

spec=$(sed -n 's/^requires-python *= *"\(.*\)"/\1/p' pyproject.toml)
seen=()
for name in ${PYTHON:-} python3.11 python3 python3.12 python3.13 python; do
    path=$(command -v "$name" 2>/dev/null) || continue
    version=$("$path" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null) \
        || continue
    rc=0
    "$path" -c "$CHECK" 2>/dev/null || rc=$?
    case $rc in
        0) echo "$path"; exit 0 ;;
        3) seen+=("$path ($version, but without the venv module)") ;;
        *) seen+=("$path ($version)") ;;
    esac
done

{
    echo "keygov needs Python $spec with the venv module, and none was found."
    if ((${#seen[@]})); then
        echo "Found, but not usable:"
        printf '  %s\n' "${seen[@]}"
    else
        echo "No python3 at all on PATH."
    fi
    echo "Install it (Debian 12 / Ubuntu: sudo apt-get install python3.11 python3.11-venv),"
    echo "or point PYTHON at one: make PYTHON=/path/to/python3.11 ..."
} >&2
exit 1
