# Shared helpers for the benchmarks: timing and ratio printing. Sourced, not run.
# Each benchmark runs CppNix and firn on the same work in the same run and prints
#   <name>: cppnix <ms> ms, firn <ms> ms, ratio <cppnix/firn>x
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FIRN_BIN="${FIRN_BIN:-$ROOT/target/release/firn}"
# Stores live on tmpfs when there is one: disk and journal noise (seen here: the same add taking
# 3 s or 15 s from one run to the next) would otherwise swamp the difference being measured.
if [ -z "${BENCH_TMP:-}" ]; then
    if [ -d /dev/shm ] && [ -w /dev/shm ]; then
        BENCH_TMP=$(mktemp -d /dev/shm/firn-bench.XXXXXX)
    else
        BENCH_TMP=$(mktemp -d /tmp/firn-bench.XXXXXX)
    fi
fi
LINKS="$BENCH_TMP/links"

ensure_firn() {
    if [ ! -x "$FIRN_BIN" ]; then
        (cd "$ROOT" && cargo build --release -p firn)
    fi
    mkdir -p "$LINKS"
    "$FIRN_BIN" install-links "$LINKS" >/dev/null
}

# now_ms: wall-clock milliseconds.
now_ms() { date +%s%3N; }

# time_ms CMD...: run CMD (stdout discarded), print elapsed ms.
time_ms() {
    local t0 t1
    t0=$(now_ms)
    "$@" >/dev/null 2>&1
    t1=$(now_ms)
    echo $((t1 - t0))
}

# best_of N CMD...: the fastest of N runs, in ms.
best_of() {
    local n=$1; shift
    local best=999999999 t
    for _ in $(seq "$n"); do
        t=$(time_ms "$@")
        [ "$t" -lt "$best" ] && best=$t
    done
    echo "$best"
}

# report NAME CPPNIX_MS FIRN_MS
report() {
    local ratio
    ratio=$(awk -v a="$2" -v b="$3" 'BEGIN { if (b == 0) b = 1; printf "%.2f", a / b }')
    printf '%-40s cppnix %7d ms   firn %7d ms   ratio %sx\n' "$1" "$2" "$3" "$ratio"
}
