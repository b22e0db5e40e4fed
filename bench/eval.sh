#!/usr/bin/env bash
# Evaluation benchmarks: firn's evaluator vs CppNix 2.8 on the same expressions, in the same
# run (`nix-instantiate --eval --strict`), the best of 5 runs each, the two alternating. Prints
# ratios (CppNix time / firn time) and peak
# memory: small language workloads; a generated nixpkgs-style package set (gen_pkgset.sh)
# evaluated to drvPaths; and, with NIXPKGS_LIB=/path/to/nixpkgs/lib (e.g. a checkout of
# nix-community/nixpkgs.lib), nixpkgs' module system evaluating 150 modules with submodules;
# with NIXPKGS_LIB_GIT=/path/to/nixpkgs.lib's git directory, lib/tests/misc.nix at a commit of
# January 2024 (later ones need builtins CppNix 2.8 lacks, or its old `fromTOML` overflow).
source "$(dirname "$0")/lib.sh"
ensure_firn
run() {
    local name=$1 expr=$2
    local a b
    a=$(nix-instantiate --eval --strict -E "$expr")
    b=$("$LINKS/nix-instantiate" --eval --strict -E "$expr")
    [ "$a" = "$b" ] || { echo "$name: results differ: $a vs $b"; exit 1; }
    local c f
    read -r c f < <(best_pair 5 nix-instantiate --eval --strict -E "$expr" ::: "$LINKS/nix-instantiate" --eval --strict -E "$expr")
    report "$name" "$c" "$f"
}
run "fib 25 (calls, arithmetic)" 'let fib = n: if n < 2 then n else fib (n - 1) + fib (n - 2); in fib 25'
run "foldl' over 1e6 elements" "builtins.foldl' (a: b: a + b) 0 (builtins.genList (x: x) 1000000)"
run "attrset building (listToAttrs 1e5)" 'builtins.length (builtins.attrNames (builtins.listToAttrs (builtins.genList (i: { name = toString i; value = i; }) 100000)))'
run "string concatenation (1e5)" 'builtins.stringLength (builtins.concatStringsSep "," (builtins.genList toString 100000))'
run "sort 1e5" 'builtins.head (builtins.sort (a: b: a < b) (builtins.genList (i: 100000 - i) 100000))'
peak_kb() {
    /usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -1
}
# A nixpkgs-style package set of 2000 packages to drvPaths (see gen_pkgset.sh).
bash "$(dirname "$0")/gen_pkgset.sh" "$BENCH_TMP/pkgset" 2000
f="$BENCH_TMP/pkgset/drvpaths.nix"
a=$(nix-instantiate --eval --strict --json "$f")
b=$("$LINKS/nix-instantiate" --eval --strict --json "$f")
[ "$a" = "$b" ] || { echo "package set: drvPaths differ"; exit 1; }
read -r c fm < <(best_pair 5 nix-instantiate --eval --strict --json "$f" ::: "$LINKS/nix-instantiate" --eval --strict --json "$f")
report "package set (2000 packages) to drvPaths" "$c" "$fm"
echo "  peak memory: cppnix $(peak_kb nix-instantiate --eval --strict --json "$f") KB, firn $(peak_kb "$LINKS/nix-instantiate" --eval --strict --json "$f") KB"
if [ -n "${NIXPKGS_LIB:-}" ]; then
    f="$BENCH_TMP/modules.nix"
    write_modules_nix "$f" 150
    a=$(nix-instantiate --eval --strict "$f")
    b=$("$LINKS/nix-instantiate" --eval --strict "$f")
    [ "$a" = "$b" ] || { echo "modules: results differ: $a vs $b"; exit 1; }
    read -r c fm < <(best_pair 5 nix-instantiate --eval --strict "$f" ::: "$LINKS/nix-instantiate" --eval --strict "$f")
    report "module system (150 modules, 3000 submodules)" "$c" "$fm"
    echo "  peak memory: cppnix $(peak_kb nix-instantiate --eval --strict "$f") KB (its GC heap starts at 384 MiB), firn $(peak_kb "$LINKS/nix-instantiate" --eval --strict "$f") KB"
else
    echo "module system: skipped (set NIXPKGS_LIB to a nixpkgs lib directory)"
fi
if [ -n "${NIXPKGS_LIB_GIT:-}" ]; then
    # nixpkgs.lib as of 2024-01-01; two of misc.nix's tests import nixpkgs itself for its
    # `hello`, which a stub at the top stands in for.
    commit=95aabeb207339add36de2b42a109564ce55a4a86
    mkdir -p "$BENCH_TMP/nlib"
    git -C "$NIXPKGS_LIB_GIT" archive "$commit" | tar -x -C "$BENCH_TMP/nlib"
    cat > "$BENCH_TMP/nlib/default.nix" <<'NIX'
{ system ? builtins.currentSystem, ... }:
{ hello = derivation { name = "hello-2.12"; inherit system; builder = "/bin/sh"; }; }
NIX
    f="$BENCH_TMP/nlib/lib/tests/misc.nix"
    a=$(nix-instantiate --eval --strict "$f")
    b=$("$LINKS/nix-instantiate" --eval --strict "$f")
    [ "$a" = "[ ]" ] && [ "$b" = "[ ]" ] || { echo "misc.nix: failing tests: $a vs $b"; exit 1; }
    read -r c fm < <(best_pair 5 nix-instantiate --eval --strict "$f" ::: "$LINKS/nix-instantiate" --eval --strict "$f")
    report "nixpkgs lib/tests/misc.nix (2024-01)" "$c" "$fm"
    echo "  peak memory: cppnix $(peak_kb nix-instantiate --eval --strict "$f") KB, firn $(peak_kb "$LINKS/nix-instantiate" --eval --strict "$f") KB"
else
    echo "lib/tests/misc.nix: skipped (set NIXPKGS_LIB_GIT to a nixpkgs.lib git directory)"
fi
rm -rf "$BENCH_TMP"
