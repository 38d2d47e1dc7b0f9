#!/usr/bin/env bash
# The real `arena serve` against the test PostgreSQL (a database of its own):
# health checks, JSON errors, the access log, migrations (also `arena
# migrate` with a config file), a clean SIGTERM
# shutdown; and the one-line errors for a bad port and an unreachable
# database.
source "$(dirname "$0")/serve_lib.sh"
[ -n "${ARENA_TEST_PGCONN:-}" ] && command -v psql >/dev/null || exit 77

W="$ARENA_TEST_OUT/serve.$$"
DB="serve_$$"
rm -rf "$W"; mkdir -p "$W"
psql "$ARENA_TEST_PGCONN" -qc "CREATE DATABASE $DB" || exit 1
cleanup() {
    [ -n "$ARENA_PID" ] && kill -9 "$ARENA_PID" 2>/dev/null
    psql "$ARENA_TEST_PGCONN" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
}
trap cleanup EXIT
URL="$ARENA_TEST_PGCONN dbname=$DB"

# Bad settings: one line, exit 2.
out=$("$ARENA_BIN" serve --port notaport 2>&1); rc=$?
check "--port notaport exits 2" [ $rc = 2 ]
check "--port notaport says so in one line" \
    [ "$out" = "arena: --port takes a number between 0 and 65535" ]
out=$(ARENA_MAX_BODY=lots "$ARENA_BIN" serve 2>&1); rc=$?
check "bad env value exits 2 naming it" \
    [ $rc = 2 -a "${out%% takes*}" = "arena: ARENA_MAX_BODY" ]
help=$("$ARENA_BIN" serve --help)
check "serve --help lists the settings with env names" \
    has "$help" "env DATABASE_URL"
check "serve --help lists --models-dir" has "$help" "--models-dir"

# An unreachable database: one clear line, exit 1, promptly.
for bad in "host=/nonexistent-arena-dir port=5432 dbname=x" \
           "postgresql://127.0.0.1:1/x"; do
    start=$SECONDS
    out=$(DATABASE_URL="$bad" "$ARENA_BIN" serve --port 0 2>&1); rc=$?
    check "unreachable '$bad' exits 1" [ $rc = 1 ]
    check "unreachable '$bad' gives one line" [ "$(printf '%s\n' "$out" | wc -l)" = 1 ]
    check "unreachable '$bad' says what failed" \
        starts "$out" "arena: cannot connect to the database: "
    check "unreachable '$bad' fails fast" [ $((SECONDS - start)) -lt 15 ]
done

# `arena migrate` reads the database from serve's config file too (a
# database of its own), below the flag and the environment.
MDB="serve_mig_$$"
psql "$ARENA_TEST_PGCONN" -qc "CREATE DATABASE $MDB" || exit 1
printf '{"database_url": "%s dbname=%s", "threads": 8}\n' \
    "$ARENA_TEST_PGCONN" "$MDB" >"$W/migrate.json"
out=$(env -u DATABASE_URL "$ARENA_BIN" migrate --status --config "$W/migrate.json" 2>&1); rc=$?
check "migrate --status --config: pending, exit 1" [ $rc = 1 ] && check "says pending" has "$out" "pending"
out=$(env -u DATABASE_URL ARENA_CONFIG="$W/migrate.json" "$ARENA_BIN" migrate 2>&1); rc=$?
check "migrate with ARENA_CONFIG applies" [ $rc = 0 ]
n=$(psql "$ARENA_TEST_PGCONN dbname=$MDB" -tAc "SELECT count(*) FROM schema_migrations")
check "migrate wrote the config file's database" [ "${n:-0}" -ge 1 ]
out=$(env -u DATABASE_URL "$ARENA_BIN" migrate --status --config "$W/migrate.json" 2>&1); rc=$?
check "migrate --status after: none pending" [ $rc = 0 ] && check "says 0 pending" starts "$out" "0 of "
out=$(DATABASE_URL="host=/nonexistent-arena-dir dbname=x" "$ARENA_BIN" migrate --config "$W/migrate.json" 2>&1); rc=$?
check "DATABASE_URL wins over the config file" [ $rc = 1 ]
psql "$ARENA_TEST_PGCONN" -qc "DROP DATABASE IF EXISTS $MDB WITH (FORCE)"
printf '{"database_url": 5}\n' >"$W/bad.json"
out=$(env -u DATABASE_URL "$ARENA_BIN" migrate --config "$W/bad.json" 2>&1); rc=$?
check "migrate: a bad config value exits 2 naming it" [ $rc = 2 ] && check "names database_url" has "$out" "database_url"
printf '{"database_url": \n' >"$W/bad.json"
out=$(env -u DATABASE_URL "$ARENA_BIN" migrate --config "$W/bad.json" 2>&1); rc=$?
check "migrate: a malformed config file exits 2" [ $rc = 2 ] && check "names the file" has "$out" "bad.json"

# A config file sets the pool, the environment the database.
printf '{"db_pool_size": 2, "threads": 8}\n' >"$W/arena.json"
DATABASE_URL="$URL" serve_start "$W" --config "$W/arena.json" \
    --data-dir "$W/var" || exit 1

req GET /healthz
check "healthz 200" [ "$STATUS" = 200 -a "$BODY" = '{"status":"ok"}' ]
req GET /readyz
check "readyz 200" [ "$STATUS" = 200 ]
ready=$BODY
n=$(psql "$URL" -tAc "SELECT count(*) FROM schema_migrations")
check "migrations recorded at start" [ "${n:-0}" -ge 1 ]
check "readyz and migrations agree" has "$ready" "\"migrations\":$n}"

req GET /api/nothing-here
check "404 JSON (router)" [ "$STATUS" = 404 -a "$(error_code)" = not_found ]
req GET /no-such-file.html
check "404 JSON (static)" [ "$STATUS" = 404 -a "$(error_code)" = not_found ]
req POST /healthz
check "405 JSON" [ "$STATUS" = 405 -a "$(error_code)" = method_not_allowed ]
check "405 says Allow: GET" has "$HEADERS" "Allow: GET"
head -c 3000000 /dev/zero >"$W/big"
req POST /healthz --data-binary @"$W/big"
check "413 JSON" [ "$STATUS" = 413 -a "$(error_code)" = too_large ]
# A malformed header: CivetWeb's own 400, in our JSON shape.
resp=$(exec 3<>"/dev/tcp/127.0.0.1/$PORT"
       printf 'GET / HTTP/1.1\r\nNot a header line\r\n\r\n' >&3
       timeout 5 cat <&3)
check "400 for a malformed request" starts "$resp" "HTTP/1.1 400"
check "400 in our JSON shape" has "$resp" '"code":"bad_request"' 
req GET /
check "static page served" [ "$STATUS" = 200 ]
check "security headers" has "$HEADERS" "X-Content-Type-Options: nosniff"

check "access log line per request" \
    grep -Eq 'access 127\.0\.0\.1 GET /healthz 200 [0-9]+B [0-9.]+ms id=[0-9a-f]{16}' "$W/serve.log"
check "access log records errors" grep -q 'access 127.0.0.1 POST /healthz 413' "$W/serve.log"

# SIGTERM while a slow client is connected: exit 0, promptly.
start=$SECONDS
kill -TERM "$ARENA_PID"
wait_exit "$ARENA_PID" 15
check "SIGTERM exits 0" [ "$EXIT_CODE" = 0 ]
check "SIGTERM exits within 5 s" [ $((SECONDS - start)) -le 5 ]
check "shutdown logged" grep -q 'serve: stopped' "$W/serve.log"
ARENA_PID=
n=$(psql "$ARENA_TEST_PGCONN" -tAc "SELECT count(*) FROM pg_stat_activity WHERE datname = '$DB'")
check "database connections closed" [ "$n" = 0 ]

# SIGINT stops arena even when it was started with SIGINT ignored (as a
# script's background job is, without job control).
DATABASE_URL="$URL" bash -c 'trap "" INT; exec "$@"' _ "$ARENA_BIN" serve \
    --port 0 --port-file "$W/port2" --data-dir "$W/var" >>"$W/serve.log" 2>&1 &
pid=$!
for _ in $(seq 1 300); do [ -s "$W/port2" ] && break; sleep 0.05; done
kill -INT "$pid"
wait_exit "$pid" 15
check "SIGINT stops arena started with SIGINT ignored" [ "$EXIT_CODE" = 0 ]
kill -9 "$pid" 2>/dev/null

[ $FAILS = 0 ] || { echo "--- serve.log"; cat "$W/serve.log"; exit 1; }
rm -rf "$W"
