//! Link-time layout of the release binary: the functions that evaluation and the common store
//! commands run (`hot-functions.txt`, written by `scripts/hot-functions.sh`) are placed side by
//! side, so that a run maps under 2 MiB of the binary's text instead of scattered pages over
//! half of its 13 MiB (the kernel maps the cached pages around each one touched), which is
//! peak memory and page faults.
//!
//! Only for release builds on x86_64 Linux with the toolchain's own linker (LLD, rustc's
//! default there), whose `--symbol-ordering-file` this is; names that are no longer in the
//! binary are skipped without a warning. `FIRN_NO_LINK_ORDER=1` turns it off (for a linker
//! that lacks the option).

use std::env;
use std::path::Path;

fn main() {
    let list =
        Path::new(&env::var("CARGO_MANIFEST_DIR").expect("set by cargo")).join("hot-functions.txt");
    println!("cargo:rerun-if-changed={}", list.display());
    println!("cargo:rerun-if-env-changed=FIRN_NO_LINK_ORDER");
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER");
    let var = |k: &str| env::var(k).unwrap_or_default();
    let release = var("PROFILE") == "release";
    let target = var("TARGET") == "x86_64-unknown-linux-gnu";
    let own_linker = !var("CARGO_ENCODED_RUSTFLAGS").contains("linker")
        && env::var_os("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_none();
    let off = var("FIRN_NO_LINK_ORDER") == "1";
    if release && target && own_linker && !off && list.exists() {
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            list.display()
        );
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}
