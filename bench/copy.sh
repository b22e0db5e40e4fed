#!/usr/bin/env bash
# Binary-cache benchmark: `nix copy` of a closure of N paths (default 1000, ~10 KiB each, each
# referring to the previous path and to the one seven back) by CppNix 2.8 and by firn:
#   1. to a fresh `file://` cache (default compression, xz, for both);
#   2. the same with compression=zstd;
#   3. from an HTTP cache (the cache CppNix wrote, served by nginx) into an empty store.
# Each is run RUNS times (default 3), CppNix and firn taking turns, each time into a fresh
# destination (removed untimed) with an empty narinfo disk cache; the best time of each is
# kept, which damps the noise of other work on the machine. Prints ratios (CppNix / firn).
#   bench/copy.sh [N]
# A temporary directory made here (not given as BENCH_TMP) is removed at the end.
own_tmp=${BENCH_TMP:-yes}
source "$(dirname "$0")/lib.sh"
cleanup() { if [ "$own_tmp" = yes ]; then rm -rf "$BENCH_TMP"; fi; }
trap cleanup EXIT
ensure_firn
N=${1:-1000}
command -v nginx >/dev/null || { echo "needs nginx (apt-get install nginx)"; exit 1; }
SRC="$BENCH_TMP/src"
cat > "$BENCH_TMP/closure.nix" <<'NIX'
{ n }:
let
  body = i: builtins.concatStringsSep "" (builtins.genList
    (j: "path ${toString i} line ${toString j}: some text that compresses\n") 160);
  p = builtins.genList (i: builtins.toFile "p${toString i}" (body i
    + (if i == 0 then "" else builtins.elemAt p (i - 1))
    + (if i >= 7 then builtins.elemAt p (i - 7) else ""))) n;
in builtins.elemAt p (n - 1)
NIX
root=$("$LINKS/nix-instantiate" --store "$SRC" --eval --read-write-mode "$BENCH_TMP/closure.nix" --arg n "$N" | tr -d '"')
count=$(nix-store --store "$SRC" -qR "$root" | wc -l)
echo "closure of $count paths, $(du -sh "$SRC/nix/store" | cut -f1) on disk"

export XDG_CACHE_HOME="$BENCH_TMP/xdg"
RUNS=${RUNS:-3}
nixc() { nix --extra-experimental-features nix-command "$@"; }

# compare NAME CPPNIX_DEST FIRN_DEST: run cppnix_copy and firn_copy (shell functions taking
# their destination) RUNS times each, alternately, each into a fresh destination.
compare() {
    local c=999999999 f=999999999 t
    for _ in $(seq "$RUNS"); do
        rm -rf "$2" "$XDG_CACHE_HOME"
        t=$(time_ms cppnix_copy "$2")
        [ "$t" -lt "$c" ] && c=$t
        rm -rf "$3" "$XDG_CACHE_HOME"
        t=$(time_ms firn_copy "$3")
        [ "$t" -lt "$f" ] && f=$t
    done
    report "$1" "$c" "$f"
}

cppnix_copy() { nixc copy --store "$SRC" --to "file://$1" "$root"; }
firn_copy() { "$LINKS/nix" copy --store "$SRC" --to "file://$1" "$root"; }
compare "nix copy --to file:// (xz), $count paths" "$BENCH_TMP/cpp-xz" "$BENCH_TMP/firn-xz"

cppnix_copy() { nixc copy --store "$SRC" --to "file://$1?compression=zstd" "$root"; }
firn_copy() { "$LINKS/nix" copy --store "$SRC" --to "file://$1?compression=zstd" "$root"; }
compare "nix copy --to file:// (zstd), $count paths" "$BENCH_TMP/cpp-zst" "$BENCH_TMP/firn-zst"

# Serve the cache CppNix wrote with nginx, and copy it into empty stores.
port=$((20000 + RANDOM % 20000))
start_nginx "$BENCH_TMP/cpp-xz" "$port"
trap 'kill $NGINX_PID 2>/dev/null || true; cleanup' EXIT
url="http://127.0.0.1:$port"
cppnix_copy() { nixc copy --from "$url" --store "$1" "$root"; }
firn_copy() { "$LINKS/nix" copy --from "$url" --store "$1" "$root"; }
compare "nix copy --from http:// (xz), $count paths" "$BENCH_TMP/cpp-dst" "$BENCH_TMP/firn-dst"
[ "$(nix-store --store "$BENCH_TMP/firn-dst" -qR "$root" | wc -l)" = "$count" ] || { echo "firn copied an incomplete closure"; exit 1; }
