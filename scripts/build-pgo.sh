#!/usr/bin/env bash
# build-pgo.sh: build firn with profile-guided optimisation, into target/pgo/release/firn.
#
# 1. build an instrumented firn (target/pgo-gen), which writes a profile of every run;
# 2. run it on a training set of evaluations and store work (scripts/training.sh);
# 3. merge the profiles with the toolchain's own llvm-profdata (rustup's `llvm-tools`
#    component, added if missing: its LLVM must be the one rustc uses);
# 4. build firn again with the merged profile (target/pgo).
#
# The training set is scripts/training.sh's (generated there, not the benchmarks' input).
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
source "$root/scripts/training.sh"
training_runs
unset LLVM_PROFILE_FILE

echo "build-pgo: 3/4 merging profiles" >&2
"$profdata" merge -o "$work/firn.profdata" "$work/raw"

echo "build-pgo: 4/4 optimised build (target/pgo)" >&2
RUSTFLAGS="-Cprofile-use=$work/firn.profdata" CARGO_TARGET_DIR="$root/target/pgo" \
    cargo build --release --locked -p firn
echo "build-pgo: built $root/target/pgo/release/firn" >&2
