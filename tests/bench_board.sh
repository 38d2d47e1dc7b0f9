#!/usr/bin/env bash
# bench_board.sh: the leaderboard with a million votes (not run by ctest:
# loading takes minutes on 2 cores). Usage:
#
#   tests/bench_board.sh [ARENA_BIN] [VOTES]
#
# ARENA_BIN: a Release build (default build-board-rel/arena); VOTES: default
# 1000000. Needs a PostgreSQL superuser conninfo in ARENA_TEST_PGCONN (the
# synthetic load skips foreign-key triggers); without one it starts a
# throwaway cluster with tests/pg_cluster.sh. Prints: load time, time until
# the board holds every vote, the endpoint's latency percentiles (4 and 16
# keep-alive clients), and how long a new vote takes to show.
set -u
here=$(cd "$(dirname "$0")" && pwd)
BIN=${1:-$here/../build-board-rel/arena}
N=${2:-1000000}
W=$(mktemp -d /tmp/arena-bench-board.XXXXXX)
OWN_PG=
if [ -z "${ARENA_TEST_PGCONN:-}" ]; then
    OWN_PG=$W/pg
    bash "$here/pg_cluster.sh" start "$OWN_PG" >/dev/null || exit 1
    ARENA_TEST_PGCONN="host=$OWN_PG port=5432 user=postgres dbname=postgres"
fi
DB=bench_board_$$
URL="$ARENA_TEST_PGCONN dbname=$DB"
PID=
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    psql "$ARENA_TEST_PGCONN" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
    [ -n "$OWN_PG" ] && bash "$here/pg_cluster.sh" stop "$OWN_PG"
    rm -rf "$W"
}
trap cleanup EXIT
psql "$ARENA_TEST_PGCONN" -qc "CREATE DATABASE $DB" || exit 1
DATABASE_URL="$URL" "$BIN" import /dev/null >/dev/null 2>&1 # migrations

t0=$(date +%s.%N)
psql "$URL" -q -v n="$N" -v models=50 -f "$here/board_synth.sql" >/dev/null ||
    exit 1
t1=$(date +%s.%N)
echo "loaded $N votes (50 models) in $(echo "$t1 - $t0" | bc) s"

DATABASE_URL="$URL" "$BIN" serve --port 0 --port-file "$W/port" \
    --data-dir "$W/var" --access-log off >"$W/serve.log" 2>&1 &
PID=$!
for _ in $(seq 1 600); do [ -s "$W/port" ] && break; sleep 0.05; done
PORT=$(cat "$W/port")
t2=$(date +%s.%N)
want=$(psql "$URL" -tAc "SELECT count(*) FROM votes WHERE counted")
while :; do
    v=$(curl -s "http://127.0.0.1:$PORT/api/leaderboard" | jq -r .votes)
    [ "$v" = "$want" ] && break
    sleep 0.2
done
t3=$(date +%s.%N)
echo "server start to a full board: $(echo "$t3 - $t2" | bc) s" \
     "(first load of every vote, then every category computed)"

for c in 4 16; do
    "$BIN" bench leaderboard --url "http://127.0.0.1:$PORT" --clients $c \
        --seconds 10
done
"$BIN" bench leaderboard --url "http://127.0.0.1:$PORT" --clients 4 \
    --seconds 5 --path "/api/leaderboard/matrices?category=overall"

t4=$(date +%s.%N)
psql "$URL" -qc "WITH b AS (INSERT INTO battles (mode, model_a, model_b,
    state, turns) SELECT 'anonymous', 1, 2, 'voted', 1 RETURNING id, model_a,
    model_b) INSERT INTO votes (battle_id, model_a, model_b, winner, mode)
    SELECT id, model_a, model_b, 'model_a', 'anonymous' FROM b"
while :; do
    v=$(curl -s "http://127.0.0.1:$PORT/api/leaderboard" | jq -r .votes)
    [ "$v" = $((want + 1)) ] && break
    sleep 0.05
done
t5=$(date +%s.%N)
echo "a new vote (from another process) shown after $(echo "$t5 - $t4" | bc) s"
echo "resident memory of arena serve: $(ps -o rss= -p $PID) KB"
