#!/usr/bin/env bash
# The arena binary's dispatch: help, unknown commands, exit codes.
set -u
fail=0
check() { # description, expected exit code, command...
    local what=$1 want=$2; shift 2
    "$@" >/dev/null 2>&1
    local got=$?
    if [ "$got" != "$want" ]; then
        echo "FAIL $what: exit $got, want $want"; fail=$((fail + 1))
    else
        echo "ok   $what"
    fi
}
check "arena --help" 0 "$ARENA_BIN" --help
check "arena with no command" 2 "$ARENA_BIN"
check "unknown command" 2 "$ARENA_BIN" frobnicate
check "unknown benchmark" 2 "$ARENA_BIN" bench frobnicate
check "arena serve --help" 0 "$ARENA_BIN" serve --help
check "arena migrate --help" 0 "$ARENA_BIN" migrate --help
check "serve with a bad flag" 2 "$ARENA_BIN" serve --frobnicate
check "serve with a bad port" 2 "$ARENA_BIN" serve --port notaport
check "migrate with a bad flag" 2 "$ARENA_BIN" migrate --frobnicate
"$ARENA_BIN" --help | grep -q serve || { echo "FAIL help lists serve"; fail=$((fail + 1)); }
[ $fail = 0 ]
