#!/usr/bin/env bash
# Validate docker-compose.yml without a Docker engine.
#
# `docker-compose config` (Debian's docker-compose 1.29) checks the file against the Compose
# schema, resolves anchors, variables, env_file and build context, and fails on any error — all
# without talking to an engine. Then the resolved file must have the services and volumes the
# README describes. Runs in a scratch copy of the project so that the .env it needs (made from
# .env.example, with the two required secrets filled in) never lands in the work tree.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v docker-compose >/dev/null ||
    { echo "docker-compose is missing: sudo apt-get install -y docker-compose" >&2; exit 1; }

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cp docker-compose.yml Dockerfile .dockerignore "$scratch/"
cp .env.example "$scratch/.env"
cd "$scratch"

# Without the required secrets, the file must refuse to resolve (and say which variable).
if out=$(env -u POSTGRES_PASSWORD -u KEYGOV_SECRET_KEY docker-compose config -q 2>&1); then
    echo "docker-compose.yml resolves without POSTGRES_PASSWORD / KEYGOV_SECRET_KEY set" >&2
    exit 1
fi
grep -q 'POSTGRES_PASSWORD\|KEYGOV_SECRET_KEY' <<<"$out" ||
    { echo "unexpected error from docker-compose config: $out" >&2; exit 1; }

export POSTGRES_PASSWORD=ci-only-password
export KEYGOV_SECRET_KEY=ci-only-secret-key-of-at-least-32-characters
docker-compose config -q

services=$(docker-compose config --services | sort | tr '\n' ' ')
volumes=$(docker-compose config --volumes | sort | tr '\n' ' ')
[[ $services == "beat migrate postgres redis web worker " ]] ||
    { echo "docker-compose.yml services are: $services" >&2; exit 1; }
[[ $volumes == "postgres-data redis-data " ]] ||
    { echo "docker-compose.yml volumes are: $volumes" >&2; exit 1; }
echo "docker-compose.yml is valid: services $services; volumes $volumes"
