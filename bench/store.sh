#!/usr/bin/env bash
# Store benchmarks: firn vs CppNix 2.8 on the same work, in the same run. Prints ratios
# (CppNix time / firn time; above 1 means firn is faster).
#   bench/store.sh            # all
#   BENCH_TREE=/usr/share/doc bench/store.sh
source "$(dirname "$0")/lib.sh"
ensure_firn
TREE="${BENCH_TREE:-/usr/share}"
N="${BENCH_PATHS:-10000}"
echo "tree: $TREE ($(du -sh "$TREE" 2>/dev/null | cut -f1)), paths: $N, tmp: $BENCH_TMP"

# 1. NAR hash of a large tree (warm cache: one untimed pass first).
nix-hash --type sha256 "$TREE" >/dev/null
c=$(best_of 3 nix-hash --type sha256 "$TREE")
f=$(best_of 3 "$LINKS/nix-hash" --type sha256 "$TREE")
[ "$(nix-hash --type sha256 "$TREE")" = "$("$LINKS/nix-hash" --type sha256 "$TREE")" ] || { echo "hash mismatch"; exit 1; }
report "nar hash ($TREE)" "$c" "$f"

# 2. nix-store --add of the tree into a fresh store.
add_once() { local tool=$1 store=$2; rm -rf "$store"; "$tool" --store "$store" --init 2>/dev/null || true; time_ms "$tool" --store "$store" --add "$TREE"; }
c=999999999; f=999999999
for i in 1 2; do
    t=$(add_once nix-store "$BENCH_TMP/add-c"); [ "$t" -lt "$c" ] && c=$t
    t=$(add_once "$LINKS/nix-store" "$BENCH_TMP/add-f"); [ "$t" -lt "$f" ] && f=$t
done
[ "$(nix-store --store "$BENCH_TMP/add-c" --add "$TREE")" = "$("$LINKS/nix-store" --store "$BENCH_TMP/add-f" --add "$TREE")" ] || { echo "path mismatch"; exit 1; }
rm -rf "$BENCH_TMP/add-c" "$BENCH_TMP/add-f"
report "nix-store --add ($TREE)" "$c" "$f"

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
c=$(best_of 3 nix --extra-experimental-features nix-command path-info --store "$CL" -r "$HEAD_PATH")
f=$(best_of 3 "$LINKS/nix" path-info --store "$CL" -r "$HEAD_PATH")
cmp <(nix --extra-experimental-features nix-command path-info --store "$CL" -r "$HEAD_PATH") <("$LINKS/nix" path-info --store "$CL" -r "$HEAD_PATH") || { echo "path-info output differs"; exit 1; }
rm -rf "$CL"
report "nix path-info -r ($N-path closure)" "$c" "$f"
rm -rf "$BENCH_TMP"
