#!/usr/bin/env bash
# Local services for the tests: object stores for ferry-store's conformance tests and the CLI
# tests, and a database for the vault's PostgreSQL tests:
#   Azurite (Azure Blob emulator, from npm)   on 127.0.0.1:${AZURITE_PORT:-10000}
#   moto server (S3 emulator, from PyPI)       on 127.0.0.1:${MOTO_PORT:-5000}
#   PostgreSQL (Debian's package)              on 127.0.0.1:${PG_PORT:-5433}
#   chromium (Debian) and playwright-core (npm) for the dashboard's browser tests (no service)
#
#   scripts/test-services.sh start    install what is missing, start them, wait until they answer
#   scripts/test-services.sh stop     stop them (also: scripts/stop-services.sh)
#   scripts/test-services.sh status   say what is running
#   scripts/test-services.sh env      print the `export` lines the tests need:
#
#   scripts/test-services.sh start
#   eval "$(scripts/test-services.sh env)"
#   cargo nextest run -p ferry-store
#
# Works on a fresh Debian machine that has only the Rust toolchain, run as root (or with sudo):
# nodejs/npm, python3-venv and postgresql come from apt only when missing. Everything else goes
# into .ci/cache/ (git-ignored): node_modules, the Python venv, PostgreSQL's data folder, logs and
# PID files. Idempotent: `start` on running services does nothing; `stop` on stopped ones does
# nothing.
#
# PostgreSQL refuses to run as root, so as root its cluster is made and run by the `postgres`
# system user (made by Debian's package) with runuser; as another user, by that user. Its data
# folder is .ci/cache/postgres/ when that user can write there, else a folder under /tmp. It
# listens on 127.0.0.1 only; `start` creates the role `ferry` (password `ferry`, may create
# databases and roles) and the database `ferry`; each test creates its own role and database
# from there.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$ROOT/.ci/cache"
HOST=127.0.0.1
AZURITE_PORT="${AZURITE_PORT:-10000}"
MOTO_PORT="${MOTO_PORT:-5000}"
# Azurite 3.36+ requires Node 22; 3.35.0 is the newest that runs on Debian 12's Node 18.
AZURITE_VERSION="${AZURITE_VERSION:-3.35.0}"
PLAYWRIGHT_VERSION="${PLAYWRIGHT_VERSION:-1.65.1}"
MOTO_VERSION="${MOTO_VERSION:-5.2.5}"
PG_PORT="${PG_PORT:-5433}"
WAIT_SECONDS="${WAIT_SECONDS:-60}"
# The well-known Azurite development account key (public, documented by Microsoft).
AZURITE_KEY="Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

NODE_DIR="$CACHE/node"
VENV="$CACHE/venv"
AZURITE_BIN="$NODE_DIR/node_modules/.bin/azurite-blob"
MOTO_BIN="$VENV/bin/moto_server"
PG_URL="postgres://ferry:ferry@$HOST:$PG_PORT/ferry"

say() { echo "test-services: $*" >&2; }
die() { say "error: $*"; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null; then sudo "$@"
    else die "need root to run: $*"; fi
}

APT_UPDATED=""
apt_install() {
    command -v apt-get >/dev/null || die "$* missing and no apt-get: install $* yourself"
    if [ -z "$APT_UPDATED" ]; then
        as_root apt-get update -qq >&2
        APT_UPDATED=1
    fi
    say "apt-get install $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

# --- installation -------------------------------------------------------------------------

install_azurite() {
    [ -x "$AZURITE_BIN" ] && return
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        apt_install nodejs npm
    fi
    say "installing azurite@$AZURITE_VERSION into $NODE_DIR"
    mkdir -p "$NODE_DIR"
    npm install --prefix "$NODE_DIR" --no-audit --no-fund --loglevel=error \
        "azurite@$AZURITE_VERSION" >&2
    [ -x "$AZURITE_BIN" ] || die "npm install did not provide $AZURITE_BIN"
}

# The dashboard's browser tests: Debian's chromium, driven by playwright-core (npm).
install_browser() {
    command -v chromium >/dev/null || apt_install --no-install-recommends chromium
    [ -f "$NODE_DIR/node_modules/playwright-core/package.json" ] && return
    say "installing playwright-core@$PLAYWRIGHT_VERSION into $NODE_DIR"
    mkdir -p "$NODE_DIR"
    npm install --prefix "$NODE_DIR" --no-audit --no-fund --loglevel=error \
        "playwright-core@$PLAYWRIGHT_VERSION" >&2
    [ -f "$NODE_DIR/node_modules/playwright-core/package.json" ] || die "npm install did not provide playwright-core"
}

install_moto() {
    [ -x "$MOTO_BIN" ] && return
    command -v python3 >/dev/null || apt_install python3
    # Debian splits venv/ensurepip into python3-venv.
    if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
        apt_install python3-venv
    fi
    say "installing moto[server]==$MOTO_VERSION into $VENV"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION" >&2
    [ -x "$MOTO_BIN" ] || die "pip install did not provide $MOTO_BIN"
}

# The newest PostgreSQL server's bin folder from Debian's packages (empty if none).
pg_bin() {
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    if [ -n "$d" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/initdb" ] && [ -x "$d/psql" ]; then echo "$d"; fi
}

install_postgres() {
    [ -n "$(pg_bin)" ] && return
    apt_install postgresql
    [ -n "$(pg_bin)" ] || die "apt-get install postgresql did not provide /usr/lib/postgresql/*/bin/pg_ctl"
}

# --- processes ----------------------------------------------------------------------------

# The status line of `GET /` on HOST:$1 (empty if nothing answers), without curl.
http_status() {
    # shellcheck disable=SC2016 # $0 and $1 are expanded by the inner bash
    timeout 3 bash -c '
        exec 3<>"/dev/tcp/$0/$1" || exit 1
        printf "GET / HTTP/1.0\r\nHost: %s:%s\r\n\r\n" "$0" "$1" >&3
        IFS= read -r line <&3 && printf "%s" "$line"
    ' "$HOST" "$1" 2>/dev/null | tr -d '\r' || true
}

# PID from .ci/cache/NAME.pid if that process is alive and is ours (its command line mentions
# MATCH), else nothing.
live_pid() {
    local name=$1 match=$2 pid
    [ -f "$CACHE/$name.pid" ] || return 0
    pid=$(cat "$CACHE/$name.pid")
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null &&
        tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$match"; then
        echo "$pid"
    fi
}

# start NAME PORT MATCH COMMAND...
start_one() {
    local name=$1 port=$2 match=$3
    shift 3
    if [ -n "$(live_pid "$name" "$match")" ]; then
        say "$name already running (pid $(cat "$CACHE/$name.pid")) on $HOST:$port"
        return
    fi
    if [ -n "$(http_status "$port")" ]; then
        die "$HOST:$port is already taken by another process; stop it or set ${name^^}_PORT"
    fi
    say "starting $name on $HOST:$port (log: $CACHE/$name.log)"
    # setsid: the service outlives this script and the terminal it runs in. Run in .ci/cache so
    # that anything a service writes to its working directory lands there.
    (cd "$CACHE" && exec setsid "$@") >"$CACHE/$name.log" 2>&1 </dev/null &
    echo $! >"$CACHE/$name.pid"
}

wait_for() {
    local name=$1 port=$2 match=$3 deadline=$((SECONDS + WAIT_SECONDS)) status
    while :; do
        status=$(http_status "$port")
        if [ -n "$status" ]; then
            say "$name answers on $HOST:$port ($status)"
            return
        fi
        # Only whether the process lives: right after the start its command line may still be
        # the subshell's, before `exec` replaces it with the service.
        if ! kill -0 "$(cat "$CACHE/$name.pid")" 2>/dev/null; then
            tail -n 20 "$CACHE/$name.log" >&2 || true
            die "$name exited during start-up; log above ($CACHE/$name.log)"
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            tail -n 20 "$CACHE/$name.log" >&2 || true
            die "$name did not answer on $HOST:$port within ${WAIT_SECONDS}s ($CACHE/$name.log)"
        fi
        sleep 0.5
    done
}

stop_one() {
    local name=$1 match=$2 pid
    pid=$(live_pid "$name" "$match")
    if [ -z "$pid" ]; then
        rm -f "$CACHE/$name.pid"
        say "$name not running"
        return
    fi
    kill "$pid"
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "$name (pid $pid) ignored SIGTERM; killing"
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$CACHE/$name.pid"
    say "$name stopped (pid $pid)"
}

# --- PostgreSQL -----------------------------------------------------------------------------

# Runs a command as the user that owns the cluster: `postgres` when we are root (from /, since
# it may not enter the current folder), else ourselves.
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

# The cluster's folder (data/, the socket in run/): .ci/cache/postgres if the cluster's user can
# write there, else /tmp/ferry-postgres-<hash of this checkout> (for checkouts under a folder
# that user cannot enter, such as /root). The choice is remembered in .ci/cache/postgres.dir.
PG_DIR=""
pg_dir() {
    [ -n "$PG_DIR" ] && return
    if [ -f "$CACHE/postgres.dir" ]; then
        PG_DIR=$(cat "$CACHE/postgres.dir")
        # A folder under /tmp may have been cleaned away since.
        if [ "${1:-}" = create ] && [ ! -d "$PG_DIR" ]; then
            mkdir -p "$PG_DIR"
            [ "$(id -u)" -ne 0 ] || chown postgres: "$PG_DIR"
        fi
        return
    fi
    [ "${1:-}" = create ] || return 0
    if [ "$(id -u)" -eq 0 ]; then
        getent passwd postgres >/dev/null ||
            die "no 'postgres' system user (Debian's postgresql package makes it); PostgreSQL will not run as root"
    fi
    PG_DIR="$CACHE/postgres"
    mkdir -p "$PG_DIR"
    [ "$(id -u)" -ne 0 ] || chown postgres: "$PG_DIR"
    if ! as_pg test -w "$PG_DIR" 2>/dev/null; then
        PG_DIR="/tmp/ferry-postgres-$(printf '%s' "$ROOT" | cksum | cut -d' ' -f1)"
        say "the postgres user cannot write to $CACHE/postgres (a parent folder is closed to it); using $PG_DIR"
        mkdir -p "$PG_DIR"
        [ "$(id -u)" -ne 0 ] || chown postgres: "$PG_DIR"
        rmdir "$CACHE/postgres" 2>/dev/null || true
    fi
    echo "$PG_DIR" >"$CACHE/postgres.dir"
}

# Whether something accepts TCP connections on HOST:$1.
port_open() {
    # shellcheck disable=SC2016 # $0 and $1 are expanded by the inner bash
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$HOST" "$1" 2>/dev/null
}

pg_running() {
    pg_dir
    [ -n "$PG_DIR" ] && [ -f "$PG_DIR/data/PG_VERSION" ] &&
        as_pg "$(pg_bin)/pg_ctl" status -D "$PG_DIR/data" >/dev/null 2>&1
}

pg_psql() {
    as_pg "$(pg_bin)/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_DIR/run" -p "$PG_PORT" -U postgres -d postgres "$@"
}

start_postgres() {
    local bin
    bin=$(pg_bin)
    pg_dir create
    if pg_running; then
        say "postgres already running (data $PG_DIR/data) on $HOST:$PG_PORT"
    else
        if port_open "$PG_PORT"; then
            die "$HOST:$PG_PORT is already taken by another process; stop it or set PG_PORT"
        fi
        if [ ! -f "$PG_DIR/data/PG_VERSION" ]; then
            say "initdb $PG_DIR/data"
            # trust on the Unix socket (its folder is 0700: only this user reaches it), passwords
            # (SCRAM) on TCP, which is how the tests connect.
            as_pg "$bin/initdb" -D "$PG_DIR/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
                -E UTF8 --locale=C >"$CACHE/postgres-initdb.log" 2>&1 ||
                { tail -n 20 "$CACHE/postgres-initdb.log" >&2; die "initdb failed ($CACHE/postgres-initdb.log)"; }
        fi
        as_pg mkdir -p "$PG_DIR/run"
        as_pg chmod 0700 "$PG_DIR/run"
        say "starting postgres on $HOST:$PG_PORT (log: $PG_DIR/postgres.log)"
        # pg_ctl -w waits until the server accepts connections; the server detaches by itself.
        # fsync=off: a test database, rebuilt at will; it makes CREATE DATABASE fast.
        as_pg "$bin/pg_ctl" start -D "$PG_DIR/data" -l "$PG_DIR/postgres.log" -w -t "$WAIT_SECONDS" \
            -o "-c listen_addresses=$HOST -p $PG_PORT -k $PG_DIR/run -c max_connections=300 -c fsync=off" >/dev/null ||
            { tail -n 20 "$PG_DIR/postgres.log" >&2 || true; die "postgres did not start ($PG_DIR/postgres.log)"; }
    fi
    # The tests' role and database (idempotent).
    pg_psql <<'SQL'
SELECT 'CREATE ROLE ferry LOGIN PASSWORD ''ferry''' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ferry')\gexec
ALTER ROLE ferry CREATEDB CREATEROLE;
SELECT 'CREATE DATABASE ferry OWNER ferry' WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'ferry')\gexec
SQL
    say "postgres answers on $HOST:$PG_PORT ($PG_URL)"
}

stop_postgres() {
    if ! pg_running; then
        say "postgres not running"
        return
    fi
    as_pg "$(pg_bin)/pg_ctl" stop -D "$PG_DIR/data" -m fast -w -t "$WAIT_SECONDS" >/dev/null
    say "postgres stopped"
}

cmd_start() {
    mkdir -p "$CACHE"
    install_azurite
    install_moto
    install_postgres
    install_browser
    start_one azurite "$AZURITE_PORT" azurite-blob \
        "$AZURITE_BIN" --blobHost "$HOST" --blobPort "$AZURITE_PORT" \
        --inMemoryPersistence --skipApiVersionCheck --loose --disableProductStyleUrl \
        --disableTelemetry
    start_one moto "$MOTO_PORT" moto_server "$MOTO_BIN" -H "$HOST" -p "$MOTO_PORT"
    wait_for azurite "$AZURITE_PORT" azurite-blob
    wait_for moto "$MOTO_PORT" moto_server
    start_postgres
    say "ready; now: eval \"\$(scripts/test-services.sh env)\""
}

cmd_stop() {
    stop_one azurite azurite-blob
    stop_one moto moto_server
    if [ -n "$(pg_bin)" ]; then stop_postgres; else say "postgres not installed"; fi
}

cmd_status() {
    local name match port pid
    for entry in "azurite azurite-blob $AZURITE_PORT" "moto moto_server $MOTO_PORT"; do
        read -r name match port <<<"$entry"
        pid=$(live_pid "$name" "$match")
        if [ -n "$pid" ]; then pid="running, pid $pid"; else pid="not running"; fi
        echo "$name: $pid; $HOST:$port answers: $(http_status "$port")"
    done
    if [ -n "$(pg_bin)" ] && pg_running; then
        echo "postgres: running, pid $(head -n 1 "$PG_DIR/data/postmaster.pid"); data $PG_DIR/data; $PG_URL"
    else
        echo "postgres: not running"
    fi
}

cmd_env() {
    cat <<EOF
export FERRY_TEST_AZURITE=1
export AZURE_STORAGE_USE_EMULATOR=true
export AZURE_STORAGE_ACCOUNT_NAME=devstoreaccount1
export AZURE_STORAGE_ACCOUNT_KEY='$AZURITE_KEY'
export AZURITE_BLOB_STORAGE_URL=http://$HOST:$AZURITE_PORT
export FERRY_TEST_S3=1
export AWS_ACCESS_KEY_ID=testing
export AWS_SECRET_ACCESS_KEY=testing
export AWS_DEFAULT_REGION=us-east-1
export AWS_ENDPOINT=http://$HOST:$MOTO_PORT
export AWS_ALLOW_HTTP=true
export FERRY_TEST_POSTGRES=$PG_URL
export FERRY_TEST_BROWSER=$NODE_DIR/node_modules/playwright-core
export FERRY_TEST_CHROMIUM=$(command -v chromium || echo /usr/bin/chromium)
EOF
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) cmd_env ;;
    *)
        echo "usage: $0 start|stop|status|env" >&2
        exit 2
        ;;
esac
