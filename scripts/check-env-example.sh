#!/usr/bin/env bash
# Every environment variable that keygov/settings.py reads must be documented in .env.example.
set -euo pipefail
cd "$(dirname "$0")/.."

# A call may span lines: join them first.
read_by_settings=$(tr '\n' ' ' <keygov/settings.py |
    grep -oE '(env_[a-z]+\(\s*|environ(\.get)?[(\[]\s*)"[A-Z][A-Z0-9_]*"' |
    grep -oE '"[A-Z0-9_]+"' | tr -d '"' | sort -u)
missing=()
for name in $read_by_settings; do
    grep -qE "^#? ?$name=" .env.example || missing+=("$name")
done
if ((${#missing[@]})); then
    echo ".env.example does not document: ${missing[*]}" >&2
    exit 1
fi
echo "all $(wc -w <<<"$read_by_settings") settings read by keygov/settings.py are in .env.example"
