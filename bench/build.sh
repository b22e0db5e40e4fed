#!/usr/bin/env bash
# Build benchmark: a DAG of 200 trivial derivations (20 layers of 10, each depending on the
# whole previous layer, each builder one `echo` into $out), realised with -j2 in /nix/store by
# CppNix 2.8 (sandbox off, no substituters) and by firn (sandbox ON). Each implementation gets
# its own salt, so both build all 200 derivations from scratch; the .drv files are written
# first (not timed). Prints ratios (CppNix time / firn time).
#   bench/build.sh [LAYERS] [WIDTH]
source "$(dirname "$0")/lib.sh"
ensure_firn
LAYERS=${1:-20}
WIDTH=${2:-10}
cat > "$BENCH_TMP/dag.nix" <<'NIX'
{ salt, layers, width }:
let
  bb = builtins.path {
    path = /usr/bin;
    name = "busybox";
    filter = p: t: baseNameOf p == "busybox";
  };
  mk = l: i: deps: derivation {
    name = "dag-${toString l}-${toString i}";
    system = builtins.currentSystem;
    builder = "${bb}/busybox";
    args = [ "sh" "-c" "echo ${salt} ${toString deps} > $out" ];
  };
  layer = l: prev: builtins.genList (i: mk l i prev) width;
  go = l: prev: if l == layers then prev else go (l + 1) (layer l prev);
in go 0 [ ]
NIX
[ -x /usr/bin/busybox ] || { echo "needs /usr/bin/busybox (apt-get install busybox-static)"; exit 1; }
salt="$(date +%s%N)"
inst() {
    nix-instantiate "$BENCH_TMP/dag.nix" --argstr salt "$1" --arg layers "$LAYERS" --arg width "$WIDTH" 2>/dev/null
}
# The leaves' .drv paths; realising them builds the whole DAG.
cpp_drvs=$(inst "cppnix-$salt")
firn_drvs=$(inst "firn-$salt")
n=$((LAYERS * WIDTH))
c=$(time_ms nix-store --realise -j2 --option sandbox false --option substituters '' $cpp_drvs)
f=$(time_ms "$LINKS/nix-store" --realise -j2 --option sandbox true --option substituters '' $firn_drvs)
if [ -n "${FIRN_NOSANDBOX:-}" ]; then
    firn2_drvs=$(inst "firn-nosandbox-$salt")
    f2=$(time_ms "$LINKS/nix-store" --realise -j2 --option sandbox false --option substituters '' $firn2_drvs)
    report "$((LAYERS * WIDTH)) derivations, -j2 (firn unsandboxed)" "$c" "$f2"
fi
# Same builds, same bytes: the outputs of both runs must exist and be registered.
nix-store --check-validity $("$LINKS/nix-store" -q --outputs $firn_drvs)
report "$n derivations, -j2 (firn sandboxed)" "$c" "$f"
echo "per derivation: cppnix $((c * 1000 / n)) us, firn $((f * 1000 / n)) us"
rm -rf "$BENCH_TMP"
