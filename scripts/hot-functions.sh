#!/usr/bin/env bash
# hot-functions.sh: write crates/firn/hot-functions.txt, the functions of the release binary
# that a training set of runs executes, in the order they first run; crates/firn/build.rs has
# the linker place them side by side.
#
# The training set is build-pgo.sh's (scripts/training.sh; not the benchmarks' inputs), each
# run under valgrind's callgrind, which lists every function that ran (a sampling profiler
# would miss the rarely called ones, and each of those still maps its page).
#
# Symbol names carry hashes of the crate's build configuration (the toolchain, the features),
# not of the code: the list stays good while functions are edited, and names that are gone are
# skipped. Run this again after a toolchain update or when many functions were added.
#
# Usage: scripts/hot-functions.sh   (needs valgrind; a release build, then a few minutes)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
command -v valgrind >/dev/null || { echo "hot-functions: valgrind is needed" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
target="${CARGO_TARGET_DIR:-$root/target}"

echo "hot-functions: 1/3 release build" >&2
cargo build --release --locked -p firn
bin="$work/bin"
"$target/release/firn" install-links "$bin" >/dev/null

echo "hot-functions: 2/3 training runs under callgrind" >&2
n=0
run() {
    n=$((n + 1))
    valgrind --tool=callgrind --demangle=no --dump-instr=no --trace-children=no \
        --callgrind-out-file="$work/cg.$(printf %03d "$n")" "$@" >/dev/null 2>"$work/err" \
        || { cat "$work/err" >&2; echo "hot-functions: training run failed: $*" >&2; exit 1; }
}
source "$root/scripts/training.sh"
training_runs

echo "hot-functions: 3/3 writing crates/firn/hot-functions.txt" >&2
# callgrind names each function once per file as `fn=(id) name` or `cfn=(id) name` (later
# only by id); a recursive cycle's entries are `name'2`. Keep the binary's own functions.
nm --defined-only "$target/release/firn" | awk '{ print $3 }' | sort -u >"$work/defined"
{
    echo "# The functions firn's training runs execute, in the order they first ran: the linker"
    echo "# places them together (crates/firn/build.rs). Written by scripts/hot-functions.sh."
    sed -n -E "s/^c?fn=\([0-9]+\) (.*)\$/\\1/p" "$work"/cg.* | sed -E "s/'[0-9]+\$//" \
        | awk '!seen[$0]++' | grep -F -x -f "$work/defined"
} >"$root/crates/firn/hot-functions.txt"
echo "hot-functions: $(grep -vc '^#' "$root/crates/firn/hot-functions.txt") functions" >&2
