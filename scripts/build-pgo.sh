#!/usr/bin/env bash
# build-pgo.sh: build firn with profile-guided optimisation, into target/pgo/release/firn.
#
# 1. build an instrumented firn (target/pgo-gen), which writes a profile of every run;
# 2. run it on a training set of evaluations (below);
# 3. merge the profiles with the toolchain's own llvm-profdata (rustup's `llvm-tools`
#    component, added if missing: its LLVM must be the one rustc uses);
# 4. build firn again with the merged profile (target/pgo).
#
# The training set is generated here and is not the benchmarks' input: a package set of 600
# packages (bench/gen_pkgset.sh; the benchmark evaluates one of 2000) evaluated to drvPaths
# and instantiated into a throw-away store, small language workloads at other sizes than
# bench/eval.sh's, and store work on this repository's sources (hash, add, dump, a binary
# cache written and read, a check, a collection). With NIXPKGS_LIB=/path/to/nixpkgs/lib it also evaluates that lib's
# tests/misc.nix and its module system over 30 modules (the benchmarks: a January 2024
# misc.nix and 150 modules).
#
# Usage: scripts/build-pgo.sh   (about twice a release build's time; PGO_WORK=DIR keeps the
# profiles in DIR instead of a temporary directory)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

work="${PGO_WORK:-$(mktemp -d)}"
mkdir -p "$work"
[ -n "${PGO_WORK:-}" ] || trap 'rm -rf "$work"' EXIT

sysroot="$(rustc --print sysroot)"
host="$(rustc -vV | sed -n 's/^host: //p')"
profdata="$sysroot/lib/rustlib/$host/bin/llvm-profdata"
if [ ! -x "$profdata" ]; then
    rustup component add llvm-tools
fi
[ -x "$profdata" ] || { echo "build-pgo: no llvm-profdata at $profdata" >&2; exit 1; }

echo "build-pgo: 1/4 instrumented build (target/pgo-gen)" >&2
rm -rf "$work/raw"
RUSTFLAGS="-Cprofile-generate=$work/raw" CARGO_TARGET_DIR="$root/target/pgo-gen" \
    cargo build --release --locked -p firn
bin="$work/bin"
mkdir -p "$bin"
"$root/target/pgo-gen/release/firn" install-links "$bin" >/dev/null

echo "build-pgo: 2/4 training runs" >&2
export LLVM_PROFILE_FILE="$work/raw/firn-%p-%m.profraw"
run() {
    "$@" >/dev/null || { echo "build-pgo: training run failed: $*" >&2; exit 1; }
}
bash "$root/bench/gen_pkgset.sh" "$work/pkgset" 600 >/dev/null
run "$bin/nix-instantiate" --eval --strict --json "$work/pkgset/drvpaths.nix"
run "$bin/nix-instantiate" --store "$work/store" "$work/pkgset"
for expr in \
    'let fib = n: if n < 2 then n else fib (n - 1) + fib (n - 2); in fib 20' \
    "builtins.foldl' (a: b: a + b) 0 (builtins.genList (x: x) 200000)" \
    'builtins.length (builtins.attrNames (builtins.listToAttrs (builtins.genList (i: { name = toString i; value = i; }) 20000)))' \
    'builtins.stringLength (builtins.concatStringsSep "," (builtins.genList toString 20000))' \
    'builtins.head (builtins.sort (a: b: a < b) (builtins.genList (i: 20000 - i) 20000))'; do
    run "$bin/nix-instantiate" --eval --strict -E "$expr"
done
# The store's own work, so that its code is not laid out as never run: a NAR hash of a
# tree, adding it to a store, dumping it, a binary cache written and read back, a check of
# the store's contents and a garbage collection.
run "$bin/nix-hash" --type sha256 "$root/crates"
added=$("$bin/nix-store" --store "$work/store" --add "$root/crates")
run "$bin/nix-store" --dump "$work/store$added"
run "$bin/nix" --extra-experimental-features nix-command copy --store "$work/store" \
    --to "file://$work/cache" "$added"
run "$bin/nix" --extra-experimental-features nix-command copy --from "file://$work/cache" \
    --store "$work/store2" --no-check-sigs "$added"
run "$bin/nix-store" --store "$work/store" --verify --check-contents
run "$bin/nix-store" --store "$work/store" --gc
if [ -n "${NIXPKGS_LIB:-}" ]; then
    BENCH_TMP="$work/bench" source "$root/bench/lib.sh"
    write_modules_nix "$work/modules.nix" 30
    run "$bin/nix-instantiate" --eval --strict "$work/modules.nix"
    run "$bin/nix-instantiate" --eval --strict "$NIXPKGS_LIB/tests/misc.nix"
fi
unset LLVM_PROFILE_FILE

echo "build-pgo: 3/4 merging profiles" >&2
"$profdata" merge -o "$work/firn.profdata" "$work/raw"

echo "build-pgo: 4/4 optimised build (target/pgo)" >&2
RUSTFLAGS="-Cprofile-use=$work/firn.profdata" CARGO_TARGET_DIR="$root/target/pgo" \
    cargo build --release --locked -p firn
echo "build-pgo: built $root/target/pgo/release/firn" >&2
