#!/usr/bin/env bash
# `arena ratings` and `arena bench ratings` from the command line: help,
# usage errors (exit 2, one line), run-time errors (exit 1), the table,
# reproducibility of the printed intervals, and a small benchmark run.
set -u
fail=0
data="$ARENA_SHARED/data/llmfao.csv"
out="$ARENA_TEST_OUT/ratings"
mkdir -p "$out"

check() { # description, expected exit code, command...
    local what=$1 want=$2; shift 2
    "$@" >"$out/stdout" 2>"$out/stderr"
    local got=$?
    if [ "$got" != "$want" ]; then
        echo "FAIL $what: exit $got, want $want"; cat "$out/stderr"
        fail=$((fail + 1))
    else
        echo "ok   $what"
    fi
}
one_line_error() { # description: stderr is one line naming the problem
    local what=$1 pattern=$2
    if [ "$(wc -l <"$out/stderr")" != 1 ] || ! grep -q -- "$pattern" "$out/stderr"; then
        echo "FAIL $what: stderr:"; cat "$out/stderr"; fail=$((fail + 1))
    fi
}

check "ratings --help" 0 "$ARENA_BIN" ratings --help
grep -q -- "--anchor MODEL=RATING" "$out/stdout" || { echo "FAIL help lists --anchor"; fail=$((fail + 1)); }
check "bench ratings --help" 0 "$ARENA_BIN" bench ratings --help

# Without --input it reads the database (test_board.c covers that path);
# an unreachable one is one line and exit 1.
check "no --input, no database" 1 env DATABASE_URL="host=/nonexistent-arena port=5432 dbname=x" "$ARENA_BIN" ratings
one_line_error "no --input, no database" "cannot connect to the database"
check "bad --method" 2 "$ARENA_BIN" ratings --input "$data" --method glicko
one_line_error "bad --method" "--method takes bt or elo"
check "unknown option" 2 "$ARENA_BIN" ratings --input "$data" --frobnicate 1
one_line_error "unknown option" "unknown option '--frobnicate'"
check "missing value" 2 "$ARENA_BIN" ratings --input
one_line_error "missing value" "--input needs a value"
check "bad --bootstrap" 2 "$ARENA_BIN" ratings --input "$data" --bootstrap -3
check "bad --anchor" 2 "$ARENA_BIN" ratings --input "$data" --anchor GPT
one_line_error "bad --anchor" "MODEL=RATING"
check "bad --category" 2 "$ARENA_BIN" ratings --input "$data" --category poetry
check "bench bad option" 2 "$ARENA_BIN" bench ratings --battles lots

check "missing file" 1 "$ARENA_BIN" ratings --input "$out/nope.csv"
one_line_error "missing file" "No such file"
check "unknown anchor model" 1 "$ARENA_BIN" ratings --input "$data" --anchor "Nobody=1000"
one_line_error "unknown anchor model" "no model 'Nobody'"
printf 'model_a,model_b,winner\nx,y,model_a\nx,y,maybe\n' >"$out/bad.csv"
check "bad winner" 1 "$ARENA_BIN" ratings --input "$out/bad.csv"
one_line_error "bad winner" "line 3: unknown winner 'maybe'"

check "table" 0 "$ARENA_BIN" ratings --input "$data" --bootstrap 100
head -2 "$out/stdout" | grep -q "GPT 4" || { echo "FAIL table: GPT 4 on top"; cat "$out/stdout"; fail=$((fail + 1)); }
cp "$out/stdout" "$out/t1"
check "table, 1 thread" 0 "$ARENA_BIN" ratings --input "$data" --bootstrap 100 --threads 1
cmp -s "$out/stdout" "$out/t1" || { echo "FAIL same table with 1 thread"; fail=$((fail + 1)); }
check "table, other seed" 0 "$ARENA_BIN" ratings --input "$data" --bootstrap 100 --seed 2
cmp -s "$out/stdout" "$out/t1" && { echo "FAIL another seed, same intervals"; fail=$((fail + 1)); }
check "elo table" 0 "$ARENA_BIN" ratings --input "$data" --method elo --format csv
check "--name=value form" 0 "$ARENA_BIN" ratings --input="$data" --bootstrap=0 --json

printf '{"model_a":"x","model_b":"y","winner":"model_a"}\n{"model_a":"y","model_b":"x","winner":"tie"}\n' >"$out/b.jsonl"
check "jsonl by extension" 0 "$ARENA_BIN" ratings --input "$out/b.jsonl" --json --bootstrap 10
grep -q '"prior' "$out/stdout" && true # the shape is checked in test_rating.c

check "bench, small" 0 "$ARENA_BIN" bench ratings --battles 20000 --models 20 --bootstrap 50 --repeat 1
grep -q "end to end" "$out/stdout" || { echo "FAIL bench prints the total"; fail=$((fail + 1)); }

[ $fail = 0 ]
