#!/usr/bin/env bash
# /readyz follows the database: 200, then 503 while the database is down,
# then 200 again once it is back, with the same arena process throughout.
# The outage is staged on a cluster of this test's own (never the shared
# one: ctest runs tests in parallel).
source "$(dirname "$0")/serve_lib.sh"
command -v psql >/dev/null || exit 77
HERE=$(cd "$(dirname "$0")" && pwd)

W="$ARENA_TEST_OUT/dbdown.$$"
PG="/tmp/arena-dbdown-$$"   # short: it holds the Unix socket
rm -rf "$W"; mkdir -p "$W"
cleanup() {
    [ -n "$ARENA_PID" ] && kill -9 "$ARENA_PID" 2>/dev/null
    bash "$HERE/pg_cluster.sh" stop "$PG"
}
trap cleanup EXIT
bash "$HERE/pg_cluster.sh" start "$PG" >/dev/null || exit 1
URL="host=$PG port=5432 user=postgres dbname=postgres"

DATABASE_URL="$URL" serve_start "$W" --data-dir "$W/var" \
    --db-pool-size 2 || exit 1
pid=$ARENA_PID
check "readyz 200 with the database up" wait_for /readyz 200 10

bash "$HERE/pg_cluster.sh" down "$PG"
check "readyz 503 while the database is down" wait_for /readyz 503 10
check "the 503 is a JSON error" [ "$(error_code)" = unavailable ]
check "the 503 names the database" has "$BODY" "database"
req GET /healthz
check "healthz still 200" [ "$STATUS" = 200 ]

bash "$HERE/pg_cluster.sh" up "$PG"
check "readyz 200 again after the database returned" wait_for /readyz 200 15
# Every pooled connection recovered, not just one.
for i in 1 2 3 4; do
    req GET /readyz
    check "readyz 200 (request $i after recovery)" [ "$STATUS" = 200 ]
done
check "same arena process throughout" kill -0 "$pid"
check "no restart logged" [ "$(grep -c 'listening on' "$W/serve.log")" = 1 ]

kill -TERM "$ARENA_PID"
wait_exit "$ARENA_PID" 15
check "SIGTERM exits 0" [ "$EXIT_CODE" = 0 ]
ARENA_PID=

[ $FAILS = 0 ] || { echo "--- serve.log"; cat "$W/serve.log"; exit 1; }
rm -rf "$W"
