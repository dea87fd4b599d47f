#!/usr/bin/env bash
# Make sure the PostgreSQL and Redis that the tests use answer.
#
# For a server on this machine (127.0.0.1 / localhost) that is down: start it, after installing
# Debian's package first when it is missing and we run as root. For anything else, or when a step
# is not possible, say plainly what is missing and how to start it. Then wait until both answer.
# Last, Debian's Chromium for the browser tests (installed as root when missing).
#
#   DATABASE_URL  default postgres://postgres@127.0.0.1:5432/keygov
#   REDIS_URL     default redis://127.0.0.1:6379/0
set -euo pipefail

DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/keygov}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
WAIT_SECONDS=${WAIT_SECONDS:-60}

say() { printf 'services: %s\n' "$*"; }
die() {
    printf 'services: %s\n' "$@" >&2
    exit 1
}
is_root() { [[ $(id -u) == 0 ]]; }

# scheme://[user[:password]@]host[:port][/path]  ->  URL_USER URL_HOST URL_PORT URL_PATH
parse_url() {
    local re='^[a-z0-9+]+://(([^:@/]*)(:[^@/]*)?@)?(\[[^]]*\]|[^:/?]*)(:([0-9]+))?(/([^?]*))?'
    [[ $1 =~ $re ]] || die "cannot read host and port from ${1%%@*}..."
    URL_USER=${BASH_REMATCH[2]}
    URL_HOST=${BASH_REMATCH[4]:-127.0.0.1}
    URL_PORT=${BASH_REMATCH[6]:-$2}
    URL_PATH=${BASH_REMATCH[8]}
}
is_local() { [[ $1 == 127.0.0.1 || $1 == localhost || $1 == "[::1]" ]]; }

apt_updated=
apt_install() {
    if [[ -z $apt_updated ]]; then
        say "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        apt_updated=1
    fi
    say "apt-get install -y $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

wait_for() { # description, command...
    local what=$1 i
    shift
    for ((i = 0; i < WAIT_SECONDS * 2; i++)); do
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.5
    done
    die "$what did not answer within ${WAIT_SECONDS} s."
}

# --- PostgreSQL ------------------------------------------------------------------------------

parse_url "$DATABASE_URL" 5432
PG_HOST=$URL_HOST PG_PORT=$URL_PORT PG_USER=${URL_USER:-postgres} PG_DB=${URL_PATH:-keygov}
pg_ready() { pg_isready -q -d "$DATABASE_URL"; }

pg_version() { ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1; }

install_postgres() {
    apt_install postgresql
    local version hba
    version=$(pg_version)
    hba=/etc/postgresql/$version/main/pg_hba.conf
    # The tests connect as postgres over TCP without a password, as on the CI machine's server;
    # a freshly installed Debian cluster asks for one. Trust local TCP for this throwaway server.
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    if pg_ready; then
        pg_ctlcluster --skip-systemctl-redirect "$version" main reload
    fi
}

start_postgres() {
    if ! command -v pg_ctlcluster >/dev/null || [[ -z $(pg_version) ]]; then
        is_root || die "PostgreSQL is not installed. Install and start it:" \
            "  sudo apt-get install -y postgresql" \
            "  sudo pg_ctlcluster --skip-systemctl-redirect \$(ls /etc/postgresql) main start" \
            "or point DATABASE_URL at a server you have."
        install_postgres
        pg_ready && return 0
    fi
    say "starting PostgreSQL $(pg_version)"
    pg_ctlcluster --skip-systemctl-redirect "$(pg_version)" main start ||
        die "could not start PostgreSQL. Start it yourself (as root):" \
            "  pg_ctlcluster --skip-systemctl-redirect \$(ls /etc/postgresql) main start"
}

if ! command -v pg_isready >/dev/null; then
    if is_local "$PG_HOST" && is_root; then
        install_postgres
    else
        die "pg_isready is missing: install the PostgreSQL client (sudo apt-get install -y postgresql-client)."
    fi
fi

if ! pg_ready; then
    rc=0
    pg_isready -q -d "$DATABASE_URL" || rc=$?
    # 1: the server is starting up (or shutting down): just wait. 2: nobody answers.
    if [[ $rc == 2 ]]; then
        is_local "$PG_HOST" || die "PostgreSQL at $PG_HOST:$PG_PORT does not answer: start it, or change DATABASE_URL."
        start_postgres
    fi
fi
wait_for "PostgreSQL at $PG_HOST:$PG_PORT" pg_ready
say "PostgreSQL at $PG_HOST:$PG_PORT answers"

# The database the URL names, for manage.py commands run with it (pytest-django makes its own
# test_<name> database and only needs the server).
if command -v psql >/dev/null && ! psql "$DATABASE_URL" -qtAc 'SELECT 1' >/dev/null 2>&1; then
    if createdb -h "${PG_HOST//[\[\]]/}" -p "$PG_PORT" -U "$PG_USER" "$PG_DB" 2>/dev/null; then
        say "created database $PG_DB"
    else
        say "warning: cannot connect to database $PG_DB as $PG_USER, nor create it; the tests may fail to connect"
    fi
fi

# --- Redis -----------------------------------------------------------------------------------

parse_url "$REDIS_URL" 6379
REDIS_HOST=${URL_HOST//[\[\]]/} REDIS_PORT=$URL_PORT
redis_ready() { [[ $(redis-cli -u "$REDIS_URL" ping 2>/dev/null) == PONG ]]; }

if ! command -v redis-cli >/dev/null || ! command -v redis-server >/dev/null; then
    if is_local "$URL_HOST" && is_root; then
        apt_install redis-server
    elif is_local "$URL_HOST"; then
        die "Redis is not installed. Install and start it:" \
            "  sudo apt-get install -y redis-server" \
            "  redis-server --daemonize yes --bind 127.0.0.1 --port $REDIS_PORT --save '' --appendonly no" \
            "or point REDIS_URL at a server you have."
    else
        die "redis-cli is missing: install it (sudo apt-get install -y redis-tools)."
    fi
fi

if ! redis_ready; then
    is_local "$URL_HOST" || die "Redis at $REDIS_HOST:$REDIS_PORT does not answer: start it, or change REDIS_URL."
    say "starting Redis on port $REDIS_PORT"
    # A throwaway broker for the tests: nothing kept on disk.
    redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
        >/dev/null ||
        die "could not start Redis. Start it yourself:" \
            "  redis-server --daemonize yes --bind 127.0.0.1 --port $REDIS_PORT --save '' --appendonly no"
fi
wait_for "Redis at $REDIS_HOST:$REDIS_PORT" redis_ready
say "Redis at $REDIS_HOST:$REDIS_PORT answers"

# --- Chromium, for the browser tests -----------------------------------------------------------

# Playwright drives Debian's Chromium (it cannot download a browser of its own here).
CHROMIUM=${KEYGOV_CHROMIUM:-/usr/bin/chromium}
if [[ ! -x $CHROMIUM ]]; then
    if is_root && command -v apt-get >/dev/null; then
        apt_install chromium
    else
        die "Chromium is missing at $CHROMIUM; the browser tests need it:" \
            "  sudo apt-get install -y chromium" \
            "or set KEYGOV_CHROMIUM to a Chromium binary."
    fi
fi
say "Chromium: $("$CHROMIUM" --version 2>/dev/null | head -n 1)"
