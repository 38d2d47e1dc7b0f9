#!/usr/bin/env bash
# The embedded default: `arena serve` with no DATABASE_URL runs its own
# PostgreSQL in DATA_DIR/pg. Ready within 30 s; data survives Ctrl-C and a
# restart; a SIGKILLed arena leaves nothing that blocks the next start; a
# second arena on the same data directory is refused.
source "$(dirname "$0")/serve_lib.sh"
command -v psql >/dev/null || exit 77
unset DATABASE_URL

W=$(mktemp -d /tmp/arena-emb-XXXXXX)   # short: it holds the Unix socket
chmod 755 "$W"                         # as root, postgres must reach it
D="$W/var"
cleanup() {
    [ -n "$ARENA_PID" ] && kill -9 "$ARENA_PID" 2>/dev/null
    # A postgres of ours still running is a failure, but do not leave it.
    pid=$(head -1 "$D/pg/postmaster.pid" 2>/dev/null)
    [ -n "$pid" ] && kill -INT "$pid" 2>/dev/null && sleep 1
    rm -rf "$W"
}
trap cleanup EXIT
PSQL=(psql -qtA "host=$D/pg user=arena dbname=arena")
postgres_pid() { head -1 "$D/pg/postmaster.pid" 2>/dev/null; }
gone() { # exited (a zombie waiting for init to reap it counts as gone)
    local st
    st=$(sed -n 's/.*) \(.\).*/\1/p' "/proc/$1/stat" 2>/dev/null)
    [ -z "$st" ] || [ "$st" = Z ] || [ "$st" = X ]
}
wait_gone() { # pid, seconds
    local end=$((SECONDS + $2))
    while ! gone "$1"; do [ $SECONDS -gt $end ] && return 1; sleep 0.1; done
}

# First start: initdb, migrations, ready within 30 s.
start=$SECONDS
serve_start "$W" --data-dir "$D" || exit 1
check "first start: readyz 200 within 30 s" wait_for /readyz 200 30
echo "     (ready after $((SECONDS - start)) s)"
check "cluster in DATA_DIR/pg" [ -f "$D/pg/PG_VERSION" ]
check "postgres log in DATA_DIR/pg.log" [ -s "$D/pg.log" ]
check "socket only" [ -S "$D/pg/.s.PGSQL.5432" ]
if [ "$(id -u)" = 0 ]; then
    owner=$(stat -c %U "$D/pg")
    check "as root, the cluster belongs to postgres" [ "$owner" = postgres ]
    pid=$(postgres_pid)
    check "as root, postgres runs as postgres" \
        [ "$(stat -c %U "/proc/$pid")" = postgres ]
fi
"${PSQL[@]}" -c "INSERT INTO models (name, display_name, backend, path)
                 VALUES ('survivor', 'Survivor', 'local', '/x.gguf')"
check "row written through the socket" \
    [ "$("${PSQL[@]}" -c "SELECT count(*) FROM models WHERE name = 'survivor'")" = 1 ]

# A second arena on the same data directory is refused, clearly.
out=$("$ARENA_BIN" serve --port 0 --data-dir "$D" 2>&1); rc=$?
check "second arena on the same data dir exits 1" [ $rc = 1 ]
check "and says why" has "$out" "in use by another arena process"
check "the first one is still ready" wait_for /readyz 200 5

# Ctrl-C: arena and its postgres stop.
pgpid=$(postgres_pid)
kill -INT "$ARENA_PID"
wait_exit "$ARENA_PID" 20
check "SIGINT exits 0" [ "$EXIT_CODE" = 0 ]
check "postgres stopped with it" gone "$pgpid"
check "postmaster.pid removed" [ ! -e "$D/pg/postmaster.pid" ]
ARENA_PID=

# Restart: same data.
serve_start "$W" --data-dir "$D" || exit 1
check "restart: readyz 200 within 30 s" wait_for /readyz 200 30
check "restart: the row survived" \
    [ "$("${PSQL[@]}" -c "SELECT count(*) FROM models WHERE name = 'survivor'")" = 1 ]

# SIGKILL: postgres notices its parent died and shuts down by itself.
pgpid=$(postgres_pid)
kill -KILL "$ARENA_PID"
wait "$ARENA_PID" 2>/dev/null
ARENA_PID=
check "after SIGKILL of arena, postgres exits by itself" wait_gone "$pgpid" 30

# SIGKILL, then start again at once, while the old postgres may still be
# shutting down or its files remain: the new arena copes.
serve_start "$W" --data-dir "$D" || exit 1
check "start after SIGKILL: readyz 200 within 30 s" wait_for /readyz 200 30
pgpid=$(postgres_pid)
kill -KILL "$ARENA_PID"
wait "$ARENA_PID" 2>/dev/null
serve_start "$W" --data-dir "$D" || exit 1
check "immediate restart after SIGKILL: readyz 200" wait_for /readyz 200 30
check "the old postgres is gone" gone "$pgpid" ||
    ps -o pid,ppid,stat,comm,args -p "$pgpid"
check "the row survived both" \
    [ "$("${PSQL[@]}" -c "SELECT count(*) FROM models WHERE name = 'survivor'")" = 1 ]
kill -INT "$ARENA_PID"
wait_exit "$ARENA_PID" 20
check "final SIGINT exits 0" [ "$EXIT_CODE" = 0 ]
ARENA_PID=

# As root, a data directory postgres cannot reach is named in the error.
if [ "$(id -u)" = 0 ]; then
    mkdir -p "$W/private"; chmod 700 "$W/private"
    out=$("$ARENA_BIN" serve --port 0 --data-dir "$W/private/var" 2>&1); rc=$?
    check "unreachable data dir exits 1" [ $rc = 1 ]
    check "unreachable data dir names the blocking directory" \
        has "$out" "cannot enter $W/private"
fi

[ $FAILS = 0 ] || { echo "--- serve.log"; cat "$W/serve.log";
                    echo "--- pg.log"; tail -20 "$D/pg.log"; exit 1; }
