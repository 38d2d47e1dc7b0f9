#!/usr/bin/env bash
# run.sh SRC BUILD_DIR SHARED: builds the libFuzzer targets with clang in
# BUILD_DIR (-DARENA_FUZZ=ON, ASan+UBSan), writes seed corpora from SHARED,
# and runs each fuzzer for ARENA_FUZZ_SECONDS (default 30) seconds. Exits
# non-zero on any crash, leak, timeout or sanitizer report (the input is
# kept as BUILD_DIR/crash-*), 77 if clang's libFuzzer is not installed.
set -euo pipefail
src=$1 dir=$2 shared=$3
secs=${ARENA_FUZZ_SECONDS:-30}

if ! command -v clang >/dev/null ||
   ! echo 'int LLVMFuzzerTestOneInput(const char *d, long n){return 0;}' |
     clang -x c -fsanitize=fuzzer -o /dev/null - 2>/dev/null; then
    echo "fuzz: clang with libFuzzer not installed (clang, libclang-rt-14-dev)"
    exit 77
fi

cmake -S "$src" -B "$dir" -DCMAKE_C_COMPILER=clang -DARENA_FUZZ=ON \
      -DARENA_SANITIZE=address,undefined -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DARENA_SHARED_DIR="$shared" >/dev/null
cmake --build "$dir" -j2 --target fuzz_gguf fuzz_tok_load fuzz_tok_encode \
      fuzz_seeds >/dev/null

seeds=$dir/seeds
rm -rf "$seeds" "$dir"/corpus-* "$dir"/crash-*
mkdir -p "$seeds/gguf" "$seeds/load" "$seeds/encode"
"$dir/tests/fuzz_seeds" "$seeds" "$shared"

export ARENA_SHARED=$shared
status=0
run() { # target seed-dir max-len
    local work=$dir/corpus-$1
    mkdir -p "$work"
    echo "fuzz: $1 for ${secs}s"
    if ! "$dir/tests/$1" -max_total_time="$secs" -timeout=10 \
            -rss_limit_mb=2048 -max_len="$3" -print_final_stats=1 \
            -artifact_prefix="$dir/crash-$1-" "$work" "$2" \
            >"$dir/$1.log" 2>&1; then
        echo "fuzz: $1 FAILED; log $dir/$1.log, input $dir/crash-$1-*"
        tail -40 "$dir/$1.log"
        status=1
    else
        grep -E "^stat::number_of_executed_units|^Done" "$dir/$1.log" || true
    fi
}
run fuzz_gguf "$seeds/gguf" 20000
run fuzz_tok_load "$seeds/load" 16384
run fuzz_tok_encode "$seeds/encode" 4097
exit $status
