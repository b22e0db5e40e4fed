#!/usr/bin/env bash
# Binary-cache benchmark: `nix copy` of a closure of N paths (default 1000, ~10 KiB each, each
# referring to the previous path and to the one seven back) by CppNix 2.8 and by firn:
#   1. to a fresh `file://` cache (default compression, xz, for both);
#   2. the same with compression=zstd;
#   3. from an HTTP cache (the cache CppNix wrote, served by nginx) into an empty store.
# Prints ratios (CppNix time / firn time).
#   bench/copy.sh [N]
source "$(dirname "$0")/lib.sh"
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
nixc() { nix --extra-experimental-features nix-command "$@"; }

c=$(time_ms nixc copy --store "$SRC" --to "file://$BENCH_TMP/cpp-xz" "$root")
f=$(time_ms "$LINKS/nix" copy --store "$SRC" --to "file://$BENCH_TMP/firn-xz" "$root")
report "nix copy --to file:// (xz), $count paths" "$c" "$f"

c=$(time_ms nixc copy --store "$SRC" --to "file://$BENCH_TMP/cpp-zst?compression=zstd" "$root")
f=$(time_ms "$LINKS/nix" copy --store "$SRC" --to "file://$BENCH_TMP/firn-zst?compression=zstd" "$root")
report "nix copy --to file:// (zstd), $count paths" "$c" "$f"

# Serve the cache CppNix wrote with nginx, and copy it into empty stores.
port=$((20000 + RANDOM % 20000))
start_nginx "$BENCH_TMP/cpp-xz" "$port"
trap 'kill $NGINX_PID 2>/dev/null || true' EXIT
url="http://127.0.0.1:$port"
rm -rf "$XDG_CACHE_HOME"
c=$(time_ms nixc copy --from "$url" --store "$BENCH_TMP/cpp-dst" "$root")
rm -rf "$XDG_CACHE_HOME"
f=$(time_ms "$LINKS/nix" copy --from "$url" --store "$BENCH_TMP/firn-dst" "$root")
[ "$(nix-store --store "$BENCH_TMP/firn-dst" -qR "$root" | wc -l)" = "$count" ] || { echo "firn copied an incomplete closure"; exit 1; }
report "nix copy --from http:// (xz), $count paths" "$c" "$f"
