#!/usr/bin/env bash
# Flake benchmark: CppNix 2.8 and firn on the same flake, each with a store of its own
# (`--store DIR`), the best of RUNS (default 5) runs each, the two taking turns:
#   1. `nix flake lock` from scratch: a flake with N path inputs (default 40), each a flake
#      with an input of its own (a shared `base`), so 2 N + 1 nodes are locked (the sources
#      are in the store after the first run: later runs hash and look them up);
#   2. `nix flake metadata --json` of the locked flake;
#   3. `nix eval --json` of the drvPaths of the flake's packages (P per input, default 10);
#   4. `nix flake check --no-build` (those packages and as many checks);
#   5. `nix print-dev-env` of a development shell (the host's bash as its builder, in the
#      sandbox through `extra-sandbox-paths`; its environment is built once, untimed).
# Prints ratios (CppNix / firn).
#   bench/flake.sh [N] [P]
own_tmp=${BENCH_TMP:-yes}
source "$(dirname "$0")/lib.sh"
cleanup() { if [ "$own_tmp" = yes ]; then rm -rf "$BENCH_TMP"; fi; }
trap cleanup EXIT
ensure_firn
# firn's sandbox cannot build in a store below a directory only root may enter (mktemp's
# 0700; CppNix 2.8 can): the development shell's environment is built here.
chmod 0755 "$BENCH_TMP"
N=${1:-40}
P=${2:-10}
RUNS=${RUNS:-5}
F="$BENCH_TMP/flakes"
mkdir -p "$F/base" "$F/top"
cat > "$F/base/flake.nix" <<'NIX'
{ outputs = { self }: { lib.mk = name: deps: derivation { inherit name; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" "echo ${toString deps} > $out" ]; }; }; }
NIX
inputs=""
for i in $(seq "$N"); do
    mkdir -p "$F/d$i"
    cat > "$F/d$i/flake.nix" <<NIX
{
  inputs.base.url = "path:$F/base";
  outputs = { self, base }: {
    packages.x86_64-linux = builtins.listToAttrs (builtins.genList (j: {
      name = "p\${toString j}";
      value = base.lib.mk "d$i-p\${toString j}" (if j == 0 then [ ] else [ self.packages.x86_64-linux."p\${toString (j - 1)}" ]);
    }) $P);
  };
}
NIX
    inputs="$inputs    d$i.url = \"path:$F/d$i\";\n"
done
cat > "$F/top/flake.nix" <<NIX
{
  inputs = {
$(printf "%b" "$inputs")  };
  outputs = { self, ... }@inputs: let
    deps = builtins.removeAttrs inputs [ "self" ];
    all = builtins.foldl' (acc: n: acc // builtins.mapAttrs (k: v: v) (builtins.listToAttrs
      (map (p: { name = "\${n}-\${p}"; value = deps.\${n}.packages.x86_64-linux.\${p}; })
        (builtins.attrNames deps.\${n}.packages.x86_64-linux)))) { } (builtins.attrNames deps);
  in {
    packages.x86_64-linux = all;
    checks.x86_64-linux = builtins.mapAttrs (n: p: p // { name = "check-\${p.name}"; }) all;
    drvPaths = builtins.mapAttrs (n: p: p.drvPath) all;
    devShells.x86_64-linux.default = derivation {
      name = "shell"; system = "x86_64-linux"; builder = "/usr/bin/bash";
      args = [ "-c" "echo > \$out" ]; FOO = "bar"; shellHook = "echo hi"; outputs = [ "out" ];
      DEPS = builtins.concatStringsSep " " (builtins.attrNames all);
    };
  };
}
NIX
side() { # side cpp|firn ARGS...: a nix command of that side on its own store
    local s=$1; shift
    local bin=nix
    [ "$s" = firn ] && bin="$LINKS/nix"
    HOME="$BENCH_TMP/$s-home" XDG_CACHE_HOME="$BENCH_TMP/$s-cache" "$bin" --store "$BENCH_TMP/$s-store" \
        --option experimental-features 'nix-command flakes' --option flake-registry "$BENCH_TMP/none.json" \
        --option extra-sandbox-paths "/usr/bin /usr/lib /usr/lib64 /lib64 /lib" --option substituters '' "$@"
}
top="path:$F/top"
# The same results first (the lock written by CppNix, then by firn, must be the same bytes).
side cpp flake lock "$top" 2>/dev/null
cp "$F/top/flake.lock" "$BENCH_TMP/lock.cpp"
rm "$F/top/flake.lock"
side firn flake lock "$top" 2>/dev/null
cmp -s "$F/top/flake.lock" "$BENCH_TMP/lock.cpp" || { echo "flake.lock differs"; exit 1; }
a=$(side cpp eval --json "$top#drvPaths")
b=$(side firn eval --json "$top#drvPaths")
[ "$a" = "$b" ] || { echo "drvPaths differ"; exit 1; }
side cpp flake check --no-build "$top" 2>/dev/null || { echo "cppnix: flake check failed"; exit 1; }
side firn flake check --no-build "$top" 2>/dev/null || { echo "firn: flake check failed"; exit 1; }
echo "$N inputs ($((2 * N + 1)) lock nodes), $((N * P)) packages and as many checks"

relock() { rm -f "$F/top/flake.lock"; side "$1" flake lock "$top"; }
read -r c f < <(best_pair "$RUNS" relock cpp ::: relock firn)
report "flake lock ($((2 * N + 1)) nodes, from scratch)" "$c" "$f"
read -r c f < <(best_pair "$RUNS" side cpp flake metadata --json "$top" ::: side firn flake metadata --json "$top")
report "flake metadata --json" "$c" "$f"
read -r c f < <(best_pair "$RUNS" side cpp eval --json "$top#drvPaths" ::: side firn eval --json "$top#drvPaths")
report "eval of $((N * P)) drvPaths" "$c" "$f"
read -r c f < <(best_pair "$RUNS" side cpp flake check --no-build "$top" ::: side firn flake check --no-build "$top")
report "flake check --no-build ($((2 * N * P)) drvs)" "$c" "$f"
side cpp print-dev-env "$top" >/dev/null 2>&1 || { echo "cppnix: print-dev-env failed"; exit 1; }
side firn print-dev-env "$top" >/dev/null 2>&1 || { echo "firn: print-dev-env failed"; exit 1; }
read -r c f < <(best_pair "$RUNS" side cpp print-dev-env "$top" ::: side firn print-dev-env "$top")
report "print-dev-env (environment built)" "$c" "$f"
