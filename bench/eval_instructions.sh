#!/usr/bin/env bash
# Evaluation work counted in instructions (valgrind's callgrind), firn vs CppNix 2.8 on the same
# expressions: a measure that does not move with the load of a shared machine, where wall times
# drift by a third within minutes. Instructions are not time (a cache miss costs more than an
# add, and under valgrind SHA-256 runs in software, so hashing weighs more than it does on
# hardware with SHA extensions), but a change that removes work shows up here exactly.
# Prints, for each workload, millions of instructions for each and the ratio (CppNix / firn),
# less what each takes to start and evaluate `1` (CppNix's dynamic linking alone is 40 M); then,
# construct by construct (a call, `let`, a set literal, ...), instructions per evaluation of it.
#   bench/eval_instructions.sh
#   NIXPKGS_LIB=/path/to/nixpkgs/lib bench/eval_instructions.sh   # with the module system
# Needs valgrind (Debian package).
source "$(dirname "$0")/lib.sh"
ensure_firn
command -v valgrind >/dev/null || { echo "valgrind is not installed"; exit 1; }

# instructions CMD...: millions of instructions CMD executes (all its threads).
instructions() {
    valgrind --tool=callgrind --callgrind-out-file="$BENCH_TMP/cg.out" "$@" 2>&1 >/dev/null \
        | awk '/Collected/ { printf "%d", $4 / 1000000 }'
}

BASE_C=$(instructions nix-instantiate --eval -E 1)
BASE_F=$(instructions "$LINKS/nix-instantiate" --eval -E 1)
echo "startup (evaluating 1): cppnix ${BASE_C} M, firn ${BASE_F} M (subtracted below)"

run() {
    local name=$1; shift
    local a b c f
    a=$(nix-instantiate "$@")
    b=$("$LINKS/nix-instantiate" "$@")
    [ "$a" = "$b" ] || { echo "$name: results differ"; exit 1; }
    c=$(( $(instructions nix-instantiate "$@") - BASE_C ))
    f=$(( $(instructions "$LINKS/nix-instantiate" "$@") - BASE_F ))
    awk -v n="$name" -v c="$c" -v f="$f" \
        'BEGIN { printf "%-40s cppnix %7d M   firn %7d M   ratio %.2fx\n", n, c, f, c / (f ? f : 1) }'
}

run "fib 22 (calls, arithmetic)" --eval --strict -E \
    'let fib = n: if n < 2 then n else fib (n - 1) + fib (n - 2); in fib 22'
run "foldl' over 2e5 elements" --eval --strict -E \
    "builtins.foldl' (a: b: if a < 0 then b else a + b) 0 (builtins.genList (x: x) 200000)"
run "listToAttrs 2e4" --eval --strict -E \
    'builtins.length (builtins.attrNames (builtins.listToAttrs (builtins.genList (i: { name = toString i; value = i; }) 20000)))'
run "sort 2e4" --eval --strict -E \
    'builtins.head (builtins.sort (a: b: a < b) (builtins.genList (i: 20000 - i) 20000))'
bash "$(dirname "$0")/gen_pkgset.sh" "$BENCH_TMP/pkgset" 500 >/dev/null
run "package set (500 packages) to drvPaths" --eval --strict --json "$BENCH_TMP/pkgset/drvpaths.nix"

# Instructions per evaluation of one construct: a `foldl'` whose step evaluates BODY (`e` is the
# element, 0 to N - 1; PRELUDE is bound around the loop), run over 100001 elements and over 1, the
# difference divided by 100000. Startup, parsing and the loop's set-up cancel out; the loop's own
# step is in every line (the first line is that step alone). Where the ratio is near 1 firn is
# no better than CppNix at that construct, which is where whole programs (the module system)
# lose their lead.
count() {
    valgrind --tool=callgrind --callgrind-out-file="$BENCH_TMP/cg.out" "$@" 2>&1 >/dev/null \
        | awk '/Collected/ { printf "%d", $4 }'
}
construct() {
    local name=$1 prelude=$2 body=$3 a b c f
    loop() { echo "let inherit (builtins) foldl' genList; $prelude in foldl' (i: e: $body) 0 (genList (n: n) $1)"; }
    a=$(nix-instantiate --eval --strict -E "$(loop 1000)")
    b=$("$LINKS/nix-instantiate" --eval --strict -E "$(loop 1000)")
    [ "$a" = "$b" ] || { echo "$name: results differ: $a vs $b"; exit 1; }
    c=$(( ($(count nix-instantiate --eval --strict -E "$(loop 100001)") \
        - $(count nix-instantiate --eval --strict -E "$(loop 1)")) / 100000 ))
    f=$(( ($(count "$LINKS/nix-instantiate" --eval --strict -E "$(loop 100001)") \
        - $(count "$LINKS/nix-instantiate" --eval --strict -E "$(loop 1)")) / 100000 ))
    awk -v n="$name" -v c="$c" -v f="$f" \
        'BEGIN { printf "  %-38s cppnix %5d   firn %5d   ratio %.2fx\n", n, c, f, c / (f ? f : 1) }'
}
echo "instructions per element of a foldl' loop whose step is:"
construct "the element (the loop alone)" "" "e"
construct "a call of a one-argument lambda" "f = x: x;" "f e"
construct "a call of a lambda with formals" "f = { a, b ? 1, ... }: a; s = { a = 1; c = 2; };" "f s"
construct "a call of a set with __functor" "o = { __functor = self: x: x; };" "o e"
construct "let y = e; in y" "" "let y = e; in y"
construct "assert e >= 0; e" "" "assert e >= 0; e"
construct "an attribute of a set" "s = { a = 1; b = 2; };" "s.a + e"
construct "a set literal and an attribute of it" "" "{ a = e; b = 1; }.a"
construct "// of two small sets" "s = { a = 1; b = 2; };" "(s // { b = e; }).b"
construct "mapAttrs over three attributes" "s = { a = 1; b = 2; c = 3; };" "(builtins.mapAttrs (n: v: v + e) s).b"
construct "a string with an interpolation" "" "builtins.stringLength \"a\${toString e}b\""
construct "if e < 0 then 0 else e - 1" "" "if e < 0 then 0 else e - 1"

if [ -n "${NIXPKGS_LIB:-}" ]; then
    f="$BENCH_TMP/modules.nix"
    write_modules_nix "$f" 40
    run "module system (40 modules, 800 submodules)" --eval --strict "$f"
else
    echo "module system: skipped (set NIXPKGS_LIB to a nixpkgs lib directory)"
fi
rm -rf "$BENCH_TMP"
