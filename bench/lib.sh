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

# best_pair N CMD_A... ::: CMD_B...: the fastest of N runs of each, "A_MS B_MS", the two run
# alternately, so that a slow spell of a shared machine weighs on both alike.
best_pair() {
    local n=$1; shift
    local a=() b=() seen=0 arg
    for arg in "$@"; do
        if [ "$arg" = ":::" ]; then seen=1; elif [ $seen = 0 ]; then a+=("$arg"); else b+=("$arg"); fi
    done
    local ba=999999999 bb=999999999 t
    for _ in $(seq "$n"); do
        t=$(time_ms "${a[@]}"); [ "$t" -lt "$ba" ] && ba=$t
        t=$(time_ms "${b[@]}"); [ "$t" -lt "$bb" ] && bb=$t
    done
    echo "$ba $bb"
}

# write_modules_nix FILE N: an expression evaluating nixpkgs' module system ($NIXPKGS_LIB)
# over N modules, each with an option of 20 submodules (20 N in all), to a number.
write_modules_nix() {
    local file=$1 n=$2
    cat > "$file" <<NIX
let
  lib = import $NIXPKGS_LIB;
  mkMod = i: { lib, ... }: {
    options."opt\${toString i}" = lib.mkOption {
      type = lib.types.attrsOf (lib.types.submodule {
        options.x = lib.mkOption { type = lib.types.int; default = i; };
        options.s = lib.mkOption { type = lib.types.str; default = "v\${toString i}"; };
      });
      default = { };
    };
    config."opt\${toString i}" = lib.genAttrs (map toString (lib.range 1 20)) (n: { x = lib.mkDefault (i * 2); });
  };
  r = lib.evalModules { modules = map mkMod (lib.range 1 $n); };
in lib.foldl' (a: b: a + b) 0 (lib.concatMap
  (i: lib.mapAttrsToList (n: v: v.x + builtins.stringLength v.s) r.config."opt\${toString i}")
  (lib.range 1 $n))
NIX
}

# report NAME CPPNIX_MS FIRN_MS
report() {
    local ratio
    ratio=$(awk -v a="$2" -v b="$3" 'BEGIN { if (b == 0) b = 1; printf "%.2f", a / b }')
    printf '%-40s cppnix %7d ms   firn %7d ms   ratio %sx\n' "$1" "$2" "$3" "$ratio"
}

# start_nginx ROOT PORT: serve the directory ROOT as static files on 127.0.0.1:PORT (2 workers,
# sendfile), until the benchmark exits; waits until it answers. Sets NGINX_PID.
start_nginx() {
    local root=$1 port=$2
    cat > "$BENCH_TMP/nginx.conf" <<CONF
daemon off;
user root;
worker_processes 2;
pid $BENCH_TMP/nginx.pid;
error_log $BENCH_TMP/nginx.err;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  server { listen 127.0.0.1:$port; root $root; }
}
CONF
    nginx -c "$BENCH_TMP/nginx.conf" -p "$BENCH_TMP" &
    NGINX_PID=$!
    wait_http "http://127.0.0.1:$port/nix-cache-info"
}

# wait_http URL: wait (up to 10 s) until URL answers.
wait_http() {
    for _ in $(seq 100); do
        curl -sf "$1" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "$1 does not answer" >&2
    return 1
}
