#!/usr/bin/env bash
# Start a throwaway PostgreSQL on 127.0.0.1 for the hub tests, and print its URL.
#
#   eval "$(scripts/start-postgres.sh)"      # sets TASKORCH_TEST_PG_URL and TASKORCH_PG_DIR
#   .venv/bin/pytest tests/unit/federation/
#   "$TASKORCH_PG_STOP"                       # stop it and delete its data
#
# Installs Debian's `postgresql` when its binaries are missing (needs root), initdb's a
# cluster in a fresh temp dir and runs it as a non-root user (postgres refuses root), on a
# free loopback port, with a random password. Only the export lines go to stdout.
set -euo pipefail

log() { echo "start-postgres: $*" >&2; }

find_bin() {
    local dir
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then echo "$dir"; return 0; fi
    done
    return 1
}

if ! PG_BIN=$(find_bin); then
    if [[ $(id -u) -ne 0 ]]; then
        log "PostgreSQL is not installed and installing it needs root (apt-get install -y postgresql)"
        exit 1
    fi
    log "installing Debian's postgresql"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q postgresql >&2 || { apt-get update -q >&2 && apt-get install -y -q postgresql >&2; }
    PG_BIN=$(find_bin)
fi

# Postgres will not run as root: use the package's `postgres` user (or the caller).
if [[ $(id -u) -eq 0 ]]; then
    RUN_AS=${TASKORCH_PG_USER:-postgres}
    id "$RUN_AS" >/dev/null 2>&1 || useradd --system --no-create-home "$RUN_AS"
    as_user() { runuser -u "$RUN_AS" -- "$@"; }
else
    RUN_AS=$(id -un)
    as_user() { "$@"; }
fi

PY=$(command -v python3 || command -v python)
PORT=${TASKORCH_PG_PORT:-$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}
PASSWORD=$("$PY" -c 'import secrets; print(secrets.token_hex(16))')
DIR=$(mktemp -d "${TMPDIR:-/tmp}/taskorch-pg.XXXXXX")
chmod 700 "$DIR"
[[ $(id -u) -eq 0 ]] && chown "$RUN_AS" "$DIR"

PWFILE="$DIR/pw"
as_user sh -c "umask 077; printf '%s\n' '$PASSWORD' > '$PWFILE'"
log "initdb in $DIR (user $RUN_AS)"
as_user "$PG_BIN/initdb" -D "$DIR/data" -U taskorch --pwfile="$PWFILE" \
    --auth=scram-sha-256 -E UTF8 --no-locale >"$DIR/initdb.log" 2>&1 \
    || { cat "$DIR/initdb.log" >&2; exit 1; }
rm -f "$PWFILE"

log "starting on 127.0.0.1:$PORT"
as_user "$PG_BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -c port=$PORT -c unix_socket_directories=$DIR -c fsync=off -c max_connections=100" \
    start >&2 || { cat "$DIR/server.log" >&2; exit 1; }

PGPASSWORD=$PASSWORD "$PG_BIN/createdb" -h 127.0.0.1 -p "$PORT" -U taskorch taskorch_test

STOP="$DIR/stop.sh"
cat >"$STOP" <<STOP_EOF
#!/usr/bin/env bash
# Stop the throwaway PostgreSQL started by start-postgres.sh and delete its data.
$( [[ $(id -u) -eq 0 ]] && echo "runuser -u $RUN_AS -- " )"$PG_BIN/pg_ctl" -D "$DIR/data" -m fast stop >&2
rm -rf "$DIR"
STOP_EOF
chmod 755 "$STOP"
chmod 755 "$DIR"   # the stop script must be readable by whoever runs it

echo "export TASKORCH_TEST_PG_URL=postgresql://taskorch:$PASSWORD@127.0.0.1:$PORT/taskorch_test"
echo "export TASKORCH_PG_DIR=$DIR"
echo "export TASKORCH_PG_STOP=$STOP"
