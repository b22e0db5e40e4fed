#!/usr/bin/env bash
# Binary-cache serving benchmark: `firn serve` against nginx serving the same cache as static
# files (the practical limit), both under wrk on loopback, in the same run:
#   1. narinfo lookups over N paths (default 1000), 64 connections, 10 s;
#   2. the same with 2000 connections at once;
#   3. downloads of one 32 MiB NAR, 16 connections, 10 s.
# nginx serves a `file://` cache that firn wrote uncompressed from the same store, so both
# send the same NAR bytes. Prints requests/s and MB/s of each and the ratio (firn / nginx).
#   bench/serve.sh [N] [SECONDS]
# A temporary directory made here (not given as BENCH_TMP) is removed at the end.
own_tmp=${BENCH_TMP:-yes}
source "$(dirname "$0")/lib.sh"
cleanup() { if [ "$own_tmp" = yes ]; then rm -rf "$BENCH_TMP"; fi; }
trap cleanup EXIT
ensure_firn
N=${1:-1000}
SECS=${2:-10}
command -v nginx >/dev/null || { echo "needs nginx (apt-get install nginx)"; exit 1; }
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)"; exit 1; }
SRC="$BENCH_TMP/src"
cat > "$BENCH_TMP/closure.nix" <<'NIX'
{ n }:
let
  p = builtins.genList (i: builtins.toFile "p${toString i}" "path ${toString i}\n"
    + (if i == 0 then "" else builtins.elemAt p (i - 1))) n;
in builtins.elemAt p (n - 1)
NIX
root=$("$LINKS/nix-instantiate" --store "$SRC" --eval --read-write-mode "$BENCH_TMP/closure.nix" --arg n "$N" | tr -d '"')
head -c $((32 << 20)) /dev/urandom > "$BENCH_TMP/big.bin"
big=$("$LINKS/nix-store" --store "$SRC" --add "$BENCH_TMP/big.bin")
"$LINKS/nix" copy --store "$SRC" --to "file://$BENCH_TMP/cache?compression=none" "$root" "$big"

# 2000 connections need more descriptors than the usual 1024 (for wrk, nginx and firn).
ulimit -n 16384 2>/dev/null || echo "warning: could not raise the descriptor limit; the 2000-connection run may fail"
nginx_port=$((20000 + RANDOM % 10000))
firn_port=$((nginx_port + 1))
start_nginx "$BENCH_TMP/cache" "$nginx_port"
"$FIRN_BIN" serve --store "$SRC" --listen "127.0.0.1:$firn_port" 2>/dev/null &
firn_pid=$!
trap 'kill $NGINX_PID $firn_pid 2>/dev/null || true; cleanup' EXIT
wait_http "http://127.0.0.1:$firn_port/nix-cache-info"

# wrk scripts: cycle through a list of request paths.
nix-store --store "$SRC" -qR "$root" | sed -E 's|/nix/store/([a-z0-9]{32}).*|/\1.narinfo|' > "$BENCH_TMP/narinfos.txt"
cat > "$BENCH_TMP/list.lua" <<'LUA'
local paths = {}
local i = 0
function init(args)
  for line in io.lines(args[1]) do paths[#paths + 1] = line end
end
function request()
  i = (i % #paths) + 1
  return wrk.format("GET", paths[i])
end
LUA
run_wrk() { # URL CONNECTIONS LIST -> "req/s MB/s"
    wrk -t2 -c"$2" -d"${SECS}s" -s "$BENCH_TMP/list.lua" "$1" -- "$3" 2>/dev/null |
        awk '/Requests\/sec/ { r = $2 } /Transfer\/sec/ { v = $2; u = substr(v, length(v) - 1); n = v + 0;
             if (u == "GB") n *= 1024; if (u == "KB") n /= 1024; if (u == "B") n /= 1048576; b = n }
             END { printf "%d %.1f", r, b }'
}
line() { # NAME NGINX FIRN (req/s MB/s pairs)
    set -- "$1" $2 $3
    ratio=$(awk -v a="$4" -v b="$2" 'BEGIN { printf "%.2f", (b == 0 ? 0 : a / b) }')
    printf '%-34s nginx %8d req/s %8.1f MB/s   firn %8d req/s %8.1f MB/s   firn/nginx %sx\n' "$1" "$2" "$3" "$4" "$5" "$ratio"
}

n=$(run_wrk "http://127.0.0.1:$nginx_port" 64 "$BENCH_TMP/narinfos.txt")
f=$(run_wrk "http://127.0.0.1:$firn_port" 64 "$BENCH_TMP/narinfos.txt")
line "narinfo lookups ($N paths, 64 conns)" "$n" "$f"
# Thousands of clients at once (file descriptors raised above for wrk and both servers).
n=$(run_wrk "http://127.0.0.1:$nginx_port" 2000 "$BENCH_TMP/narinfos.txt")
f=$(run_wrk "http://127.0.0.1:$firn_port" 2000 "$BENCH_TMP/narinfos.txt")
line "narinfo lookups (2000 conns)" "$n" "$f"

hash=$(echo "$big" | sed -E 's|/nix/store/([a-z0-9]{32}).*|\1|')
grep '^URL: ' "$BENCH_TMP/cache/$hash.narinfo" | sed 's|URL: |/|' > "$BENCH_TMP/nginx-nar.txt"
curl -sf "http://127.0.0.1:$firn_port/$hash.narinfo" | grep '^URL: ' | sed 's|URL: |/|' > "$BENCH_TMP/firn-nar.txt"
n=$(run_wrk "http://127.0.0.1:$nginx_port" 16 "$BENCH_TMP/nginx-nar.txt")
f=$(run_wrk "http://127.0.0.1:$firn_port" 16 "$BENCH_TMP/firn-nar.txt")
line "32 MiB NAR downloads (16 conns)" "$n" "$f"
