#!/usr/bin/env bash
# test_board_http.sh: the leaderboard over real HTTP: `arena serve` on a database of its own,
# synthetic votes loaded with tests/board_synth.sql, then every leaderboard
# route (docs/api.md), a new vote showing up within seconds, the admin
# export and dashboard (401 without auth, streamed with it), and a short
# latency run of `arena bench leaderboard`. The million-vote timing is
# tests/bench_board.sh (not run by ctest).
source "$(dirname "$0")/serve_lib.sh"
[ -n "${ARENA_TEST_PGCONN:-}" ] && command -v psql >/dev/null &&
    command -v jq >/dev/null || exit 77

W="$ARENA_TEST_OUT/board_http.$$"
DB="board_sh_$$"
rm -rf "$W"; mkdir -p "$W"
psql "$ARENA_TEST_PGCONN" -qc "CREATE DATABASE $DB" || exit 1
cleanup() {
    [ -n "$ARENA_PID" ] && kill -9 "$ARENA_PID" 2>/dev/null
    psql "$ARENA_TEST_PGCONN" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
}
trap cleanup EXIT
URL="$ARENA_TEST_PGCONN dbname=$DB"
TOKEN=board-test-token
jqt() { jq -e "$@" >/dev/null; } # a jq test, quiet
AUTH=(-H "Authorization: Bearer $TOKEN")

DATABASE_URL="$URL" serve_start "$W" --data-dir "$W/var" \
    --admin-token "$TOKEN" --board-poll 200 --board-debounce 100 \
    --board-bootstrap 50 || exit 1

req GET /api/leaderboard
check "empty leaderboard answers 200" [ "$STATUS" = 200 ]
check "empty leaderboard has no models" \
    [ "$(jq '.models | length' <<<"$BODY")" = 0 ]

N=3000
psql "$URL" -q -v n=$N -v models=8 -f "$ARENA_SOURCE_DIR/tests/board_synth.sql" \
    >"$W/synth.log" 2>&1
check "synthetic votes loaded" [ "$(psql "$URL" -tAc 'SELECT count(*) FROM votes')" = $N ]
COUNTED=$(psql "$URL" -tAc "SELECT count(*) FROM votes WHERE counted")

# The board finds votes written by another process through its poll.
seen=
for _ in $(seq 1 300); do
    req GET /api/leaderboard
    [ "$(jq -r .votes <<<"$BODY" 2>/dev/null)" = "$COUNTED" ] && { seen=1; break; }
    sleep 0.1
done
check "leaderboard shows the $COUNTED counted votes" [ -n "$seen" ]
check "8 models ranked" [ "$(jq '.models | length' <<<"$BODY")" = 8 ]
# jq: whether an object has every key of a list.
HAS='def haskeys($ks): . as $o | all($ks[]; . as $k | $o | has($k));'
check "answer shape" jqt "$HAS"'.category == "overall" and .method == "bt"
    and (.updated_at | test("^20[0-9-]+T")) and (.models[0] | haskeys(["model",
    "display_name", "organization", "license", "rating", "ci_low", "ci_high",
    "battles", "rank_ub", "provisional", "price_in", "price_out",
    "tokens_per_s", "ttft_ms"]))' <<<"$BODY"
check "intervals around ratings" jqt \
    'all(.models[]; .ci_low <= .rating and .rating <= .ci_high)' <<<"$BODY"
check "ranked by rating" jqt \
    '[.models[].rating] as $r | $r == ($r | sort | reverse)' <<<"$BODY"
# Synthetic strengths are 1000 + 10 k: 70 points apart at the ends.
check "the strongest synthetic model above the weakest" jqt '
    (.models | map({(.model): .rating}) | add) as $r |
    $r["synth-008"] > $r["synth-001"]' <<<"$BODY"
check "cache header" has "$HEADERS" "Cache-Control: no-cache"
# `arena ratings` without --input reads the same votes the same way.
"$ARENA_BIN" ratings --db "$URL" --json --bootstrap 50 >"$W/cli.json" 2>"$W/cli.err"
check "arena ratings --db" [ $? = 0 ]
check "arena ratings --db agrees with the endpoint" jqt -n \
    --slurpfile cli "$W/cli.json" --argjson web "$BODY" '
    [$cli[0].models[] | {model, r: .rating}] as $a |
    [$web.models[] | {model, r: .rating}] as $b |
    ($a | length) == ($b | length) and
    all(range($a | length); $a[.].model == $b[.].model and
        (($a[.].r - $b[.].r) | fabs) < 1e-6)'

req GET "/api/leaderboard?category=coding&method=elo"
check "coding/elo 200" [ "$STATUS" = 200 ]
check "elo has no intervals" jqt 'all(.models[]; .ci_low == null)' <<<"$BODY"
check "coding count" [ "$(jq .votes <<<"$BODY")" = \
    "$(psql "$URL" -tAc "SELECT count(*) FROM votes v JOIN battles b ON b.id = v.battle_id WHERE v.counted AND b.has_code")" ]
req GET "/api/leaderboard?category=no-such"
check "unknown category: 400 invalid_field" \
    [ "$STATUS" = 400 -a "$(error_code)" = invalid_field ]
req GET "/api/leaderboard?method=glicko"
check "unknown method: 400 invalid_field" \
    [ "$STATUS" = 400 -a "$(error_code)" = invalid_field ]

req GET /api/leaderboard/categories
check "categories list" jqt '.categories[0].name == "overall" and
    ([.categories[].name] | index("lang:zh") != null) and
    ([.categories[].name] | index("include_flagged") != null)' <<<"$BODY"
check "include_flagged counts every vote" jqt --argjson n $N \
    '.categories[] | select(.name == "include_flagged") | .battles == $n' <<<"$BODY"

req GET "/api/leaderboard/matrices?category=lang:en"
check "matrices 8x8" jqt '(.models | length) == 8 and
    (.battles | length) == 8 and (.win_rate[0] | length) == 8 and
    (.predicted | length) == 8' <<<"$BODY"

req GET "/api/stats/votes?bucket=hour"
check "votes per hour" jqt '.bucket == "hour" and (.series | length) > 0 and
    (.series[0] | has("t", "votes", "battles"))' <<<"$BODY"
req GET "/api/stats/votes?bucket=day"
check "votes per day add up" jqt --argjson n $N \
    '([.series[].votes] | add) == $n' <<<"$BODY"
req GET "/api/stats/votes?bucket=week"
check "unknown bucket: 400" [ "$STATUS" = 400 ]

# A new vote shows up within a few seconds (the poll; the vote path's
# arena_board_touch() makes it faster still).
t0=$(date +%s.%N)
psql "$URL" -qc "WITH b AS (INSERT INTO battles (mode, model_a, model_b,
    state, turns) SELECT 'anonymous', (SELECT id FROM models WHERE name =
    'synth-001'), (SELECT id FROM models WHERE name = 'synth-002'), 'voted',
    1 RETURNING id, model_a, model_b) INSERT INTO votes (battle_id, model_a,
    model_b, winner, mode) SELECT id, model_a, model_b, 'model_a',
    'anonymous' FROM b"
seen=
for _ in $(seq 1 200); do
    req GET /api/leaderboard
    [ "$(jq -r .votes <<<"$BODY")" = $((COUNTED + 1)) ] && { seen=1; break; }
    sleep 0.05
done
t1=$(date +%s.%N)
echo "a new vote appeared after $(echo "$t1 - $t0" | bc) s"
# Typically 0.5-3 s here under sanitizers on a busy 2-core machine; the
# bound leaves room for CI.
check "a new vote shows within 10 s" [ -n "$seen" ]

# Admin endpoints refuse without auth.
req GET /api/admin/export
check "export without auth: 401" [ "$STATUS" = 401 -a "$(error_code)" = unauthorized ]
req GET /api/admin/dashboard
check "dashboard without auth: 401" [ "$STATUS" = 401 ]
req GET /api/admin/export -H "Authorization: Bearer wrong"
check "export with a wrong token: 401" [ "$STATUS" = 401 ]

curl -s -D "$W/h" "${AUTH[@]}" -o "$W/all.jsonl" \
    "http://127.0.0.1:$PORT/api/admin/export?format=battles"
check "export is chunked" grep -qi '^Transfer-Encoding: chunked' "$W/h"
check "export has every vote" [ "$(wc -l <"$W/all.jsonl")" = $((N + 1)) ]
check "export records in the public schema" jqt -s "$HAS"'all(.[];
    haskeys(["question_id", "model_a", "model_b", "winner", "judge",
    "conversation_a", "conversation_b", "turn", "anony", "language",
    "tstamp"]))' "$W/all.jsonl"
req GET "/api/admin/export?format=csv&model=synth-003&category=lang:fr" "${AUTH[@]}"
check "csv export filtered" [ "$STATUS" = 200 -a \
    "$(printf '%s\n' "$BODY" | head -1 | cut -d, -f1-4)" = "question_id,model_a,model_b,winner" ]
check "csv rows match the filter" [ "$(printf '%s\n' "$BODY" | tail -n +2 | wc -l)" = \
    "$(psql "$URL" -tAc "SELECT count(*) FROM votes v JOIN battles b ON b.id = v.battle_id JOIN models ma ON ma.id = v.model_a JOIN models mb ON mb.id = v.model_b WHERE v.counted AND b.excluded_reason IS NULL AND b.language = 'fr' AND 'synth-003' IN (ma.name, mb.name)")" ]
req GET "/api/admin/export?format=xml" "${AUTH[@]}"
check "export bad format: 400" [ "$STATUS" = 400 ]
req GET "/api/admin/export?from=soon" "${AUTH[@]}"
check "export bad time: 400" [ "$STATUS" = 400 -a "$(error_code)" = invalid_field ]

req GET /api/admin/dashboard "${AUTH[@]}"
check "dashboard 200" [ "$STATUS" = 200 ]
check "dashboard shape" jqt --argjson n $((N + 1)) "$HAS"'.totals.votes ==
    $n and (.votes_over_time.series | length) > 0 and (.categories | length)
    > 0 and (.languages | length) > 0 and haskeys(["themes",
    "flagged_visitors", "cost_per_battle_usd", "models"])' <<<"$BODY"

# Latency of the endpoint under 4 keep-alive readers (a short run: this
# build may carry sanitizers; the million-vote figure is bench_board.sh's).
out=$("$ARENA_BIN" bench leaderboard --url "http://127.0.0.1:$PORT" \
      --seconds 2 --clients 4)
echo "$out"
p99=$(sed -n 's/.* p99 \([0-9.]*\) .*/\1/p' <<<"$out")
check "bench leaderboard ran" [ -n "$p99" ]
check "p99 under 100 ms even here" [ "$(echo "$p99 < 100" | bc)" = 1 ]

kill -TERM "$ARENA_PID"
wait_exit "$ARENA_PID" 30
check "clean stop" [ "$EXIT_CODE" = 0 ]
ARENA_PID=
[ $FAILS = 0 ] || { echo "$FAILS failures; log:"; tail -20 "$W/serve.log"; }
exit $((FAILS > 0))
