#!/usr/bin/env bash
# Store benchmarks: firn vs CppNix 2.8 on the same work, in the same run. Prints ratios
# (CppNix time / firn time; above 1 means firn is faster).
#   bench/store.sh            # all
#   BENCH_TREE=/usr/share/doc bench/store.sh
#   FIRN_BIN=/tmp/t/release/firn BENCH_RUNS=7 bench/store.sh   # another build, more runs
#   BENCH_ONLY=nar bench/store.sh   # only the NAR hash and add (not GC, path-info)
source "$(dirname "$0")/lib.sh"
ensure_firn
TREE="${BENCH_TREE:-/usr/share}"
N="${BENCH_PATHS:-10000}"
echo "tree: $TREE ($(du -sh "$TREE" 2>/dev/null | cut -f1)), paths: $N, tmp: $BENCH_TMP"

# timed CMD...: run CMD (stdout discarded); print "<wall ms> <user+sys ms>".
timed() {
    /usr/bin/time -o "$BENCH_TMP/time" -f "%e %U %S" "$@" >/dev/null 2>&1
    awk '{ printf "%d %d\n", $1 * 1000 + 0.5, ($2 + $3) * 1000 + 0.5 }' "$BENCH_TMP/time"
}

# report_both NAME CPPNIX_WALL FIRN_WALL CPPNIX_CPU FIRN_CPU: the wall-clock line, then CPU time.
report_both() {
    report "$1" "$2" "$3"
    report "  cpu (user+sys)" "$4" "$5"
}

# The machine may be shared: runs of the two alternate, and the best of each is kept, for wall
# time and (separately) for CPU time.
RUNS="${BENCH_RUNS:-5}"

# 1. NAR hash of a large tree (warm cache: one untimed pass first).
nix-hash --type sha256 "$TREE" >/dev/null
"$LINKS/nix-hash" --type sha256 "$TREE" >/dev/null
cw=999999999; fw=999999999; cc=999999999; fc=999999999
for _ in $(seq "$RUNS"); do
    read -r w c < <(timed nix-hash --type sha256 "$TREE")
    [ "$w" -lt "$cw" ] && cw=$w; [ "$c" -lt "$cc" ] && cc=$c
    read -r w c < <(timed "$LINKS/nix-hash" --type sha256 "$TREE")
    [ "$w" -lt "$fw" ] && fw=$w; [ "$c" -lt "$fc" ] && fc=$c
done
[ "$(nix-hash --type sha256 "$TREE")" = "$("$LINKS/nix-hash" --type sha256 "$TREE")" ] || { echo "hash mismatch"; exit 1; }
report_both "nar hash ($TREE)" "$cw" "$fw" "$cc" "$fc"

# 2. nix-store --add of the tree into a fresh store.
add_once() {
    local tool=$1 store=$2
    rm -rf "$store"
    "$tool" --store "$store" --init 2>/dev/null || true
    timed "$tool" --store "$store" --add "$TREE"
}
cw=999999999; fw=999999999; cc=999999999; fc=999999999
for _ in $(seq "$(( (RUNS + 1) / 2 ))"); do
    read -r w c < <(add_once nix-store "$BENCH_TMP/add-c")
    [ "$w" -lt "$cw" ] && cw=$w; [ "$c" -lt "$cc" ] && cc=$c
    read -r w c < <(add_once "$LINKS/nix-store" "$BENCH_TMP/add-f")
    [ "$w" -lt "$fw" ] && fw=$w; [ "$c" -lt "$fc" ] && fc=$c
done
[ "$(nix-store --store "$BENCH_TMP/add-c" --add "$TREE")" = "$("$LINKS/nix-store" --store "$BENCH_TMP/add-f" --add "$TREE")" ] || { echo "path mismatch"; exit 1; }
rm -rf "$BENCH_TMP/add-c" "$BENCH_TMP/add-f"
report_both "nix-store --add ($TREE)" "$cw" "$fw" "$cc" "$fc"

if [ "${BENCH_ONLY:-}" = nar ]; then
    rm -rf "$BENCH_TMP"
    exit 0
fi

# 3. GC of N dead paths (chains of 10), each implementation on its own copy of one store.
TEMPLATE="$BENCH_TMP/gc-template"
nix-store --store "$TEMPLATE" --init
python3 "$(dirname "$0")/gen_store.py" "$TEMPLATE" "$N" 10 | nix-store --store "$TEMPLATE" --load-db
gc_once() { local tool=$1 store=$2; rm -rf "$store"; cp -a "$TEMPLATE" "$store"; time_ms "$tool" --store "$store" --gc; }
c=$(gc_once nix-store "$BENCH_TMP/gc-c")
f=$(gc_once "$LINKS/nix-store" "$BENCH_TMP/gc-f")
left_c=$(nix-store --store "$BENCH_TMP/gc-c" --dump-db | grep -c '^/nix/store/' || true)
left_f=$(nix-store --store "$BENCH_TMP/gc-f" --dump-db | grep -c '^/nix/store/' || true)
[ "$left_c" = "$left_f" ] || { echo "GC results differ: $left_c vs $left_f paths left"; exit 1; }
rm -rf "$BENCH_TMP/gc-c" "$BENCH_TMP/gc-f" "$TEMPLATE"
report "nix-store --gc ($N dead paths)" "$c" "$f"

# 4. nix path-info -r over a closure of N paths (one chain).
CL="$BENCH_TMP/closure"
nix-store --store "$CL" --init
python3 "$(dirname "$0")/gen_store.py" "$CL" "$N" "$N" | nix-store --store "$CL" --load-db
HEAD_PATH=$(nix-store --store "$CL" --dump-db | grep '^/nix/store/' | grep -- "-p$((N - 1))\$")
read -r c f < <(best_pair "$RUNS" nix --extra-experimental-features nix-command path-info --store "$CL" -r "$HEAD_PATH" ::: "$LINKS/nix" path-info --store "$CL" -r "$HEAD_PATH")
cmp <(nix --extra-experimental-features nix-command path-info --store "$CL" -r "$HEAD_PATH") <("$LINKS/nix" path-info --store "$CL" -r "$HEAD_PATH") || { echo "path-info output differs"; exit 1; }
rm -rf "$CL"
report "nix path-info -r ($N-path closure)" "$c" "$f"
rm -rf "$BENCH_TMP"
