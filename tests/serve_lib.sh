# serve_lib.sh: shared by the test_serve*.sh and test_embedded*.sh scripts
# (sourced, not a test itself). Starts the real `arena serve` and talks HTTP
# to it with curl.
#
#   serve_start WORKDIR [args...]  start arena serve --port 0 in the
#                                  background; sets ARENA_PID and PORT
#   req METHOD PATH [curl args]    sets STATUS, BODY (and HEADERS)
#   wait_for PATH STATUS SECONDS   poll until PATH answers STATUS
#   wait_exit PID SECONDS          wait for PID to exit; sets EXIT_CODE
#   check WHAT CONDITION...        count a failure unless the command holds
set -u
FAILS=0
ARENA_PID=
PORT=

check() { # description, command...
    local what=$1; shift
    if "$@"; then
        echo "ok   $what"
    else
        echo "FAIL $what"; FAILS=$((FAILS + 1))
    fi
}

serve_start() { # workdir, args...
    local dir=$1; shift
    rm -f "$dir/port"
    "$ARENA_BIN" serve --port 0 --port-file "$dir/port" "$@" \
        >>"$dir/serve.log" 2>&1 &
    ARENA_PID=$!
    for _ in $(seq 1 600); do
        if [ -s "$dir/port" ]; then
            PORT=$(cat "$dir/port")
            return 0
        fi
        kill -0 "$ARENA_PID" 2>/dev/null || break
        sleep 0.05
    done
    echo "arena serve did not start; its log:"; cat "$dir/serve.log"
    return 1
}

req() { # method, path, curl args...
    local method=$1 path=$2; shift 2
    local tmp
    tmp=$(mktemp)
    STATUS=$(curl -s -o "$tmp" -D "$tmp.h" -w '%{http_code}' -X "$method" \
        --max-time 10 "$@" "http://127.0.0.1:$PORT$path") || true
    BODY=$(cat "$tmp")
    HEADERS=$(cat "$tmp.h" 2>/dev/null || true)
    rm -f "$tmp" "$tmp.h"
}

wait_for() { # path, status, seconds
    local end=$((SECONDS + $3))
    while [ $SECONDS -le $end ]; do
        req GET "$1"
        [ "$STATUS" = "$2" ] && return 0
        sleep 0.1
    done
    return 1
}

wait_exit() { # pid, seconds
    local end=$((SECONDS + $2))
    while kill -0 "$1" 2>/dev/null; do
        if [ $SECONDS -gt $end ]; then
            EXIT_CODE=timeout
            return 1
        fi
        sleep 0.05
    done
    wait "$1"
    EXIT_CODE=$?
    return 0
}

# The JSON error code of BODY.
error_code() {
    printf '%s' "$BODY" | sed -n 's/.*"code":"\([^"]*\)".*/\1/p'
}

# has TEXT PART: TEXT contains PART. starts TEXT PREFIX.
has() { [[ "$1" == *"$2"* ]]; }
starts() { [[ "$1" == "$2"* ]]; }
