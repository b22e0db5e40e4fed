#!/usr/bin/env bash
# Evaluation benchmarks: firn's evaluator vs CppNix 2.8 on the same expressions, in the same
# run (`nix-instantiate --eval --strict`). Prints ratios (CppNix time / firn time).
# These are small language workloads; a real package set needs derivations, which firn's
# evaluator does not have yet.
source "$(dirname "$0")/lib.sh"
ensure_firn
run() {
    local name=$1 expr=$2
    local a b
    a=$(nix-instantiate --eval --strict -E "$expr")
    b=$("$LINKS/nix-instantiate" --eval --strict -E "$expr")
    [ "$a" = "$b" ] || { echo "$name: results differ: $a vs $b"; exit 1; }
    local c f
    c=$(best_of 3 nix-instantiate --eval --strict -E "$expr")
    f=$(best_of 3 "$LINKS/nix-instantiate" --eval --strict -E "$expr")
    report "$name" "$c" "$f"
}
run "fib 25 (calls, arithmetic)" 'let fib = n: if n < 2 then n else fib (n - 1) + fib (n - 2); in fib 25'
run "foldl' over 1e6 elements" "builtins.foldl' (a: b: a + b) 0 (builtins.genList (x: x) 1000000)"
run "attrset building (listToAttrs 1e5)" 'builtins.length (builtins.attrNames (builtins.listToAttrs (builtins.genList (i: { name = toString i; value = i; }) 100000)))'
run "string concatenation (1e5)" 'builtins.stringLength (builtins.concatStringsSep "," (builtins.genList toString 100000))'
run "sort 1e5" 'builtins.head (builtins.sort (a: b: a < b) (builtins.genList (i: 100000 - i) 100000))'
rm -rf "$BENCH_TMP"
