# training.sh: the training set of runs that build-pgo.sh profiles and hot-functions.sh lays
# the binary out by; sourced. `training_runs` expects `run` (a function that runs its
# arguments and stops the script if they fail), `bin` (a directory of firn's links), `work` (a
# scratch directory) and `root` (the repository).
#
# Generated here and not the benchmarks' input: a package set of 600 packages (the benchmark
# evaluates one of 2000) evaluated to drvPaths and instantiated into a throw-away store, small
# language workloads at other sizes than bench/eval.sh's, and store work on this repository's
# sources (hash, add, dump, a binary cache written and read, a check, a collection). With
# NIXPKGS_LIB=/path/to/nixpkgs/lib also that lib's tests/misc.nix and its module system over
# 30 modules (the benchmarks: a January 2024 misc.nix and 150 modules).
training_runs() {
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
}
