//! What the fetcher oracle tests (`fetchGit`, `fetchMercurial`) share: evaluating one
//! expression with firn and with CppNix 2.8, each with its own chroot store and fetcher cache
//! (`XDG_CACHE_HOME`), and comparing every attribute of the results and the NAR hash of
//! `outPath` in each store. Include it with
//! `#[path = "common/fetcher_oracle.rs"] mod fetcher_oracle;` after `mod common;`.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

use crate::common::*;

/// Every attribute of the result; `outPath` as `out` (a set with `outPath` prints as it).
pub fn wrap(call: &str) -> String {
    format!("let r = {call}; in (removeAttrs r [\"outPath\"]) // {{ out = r.outPath; }}")
}

pub struct Ran {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
    pub store: String,
}

pub fn run(mut c: Command, home: &Path, cache: &Path, store: String, expr: &str) -> Ran {
    let out = c
        .env("HOME", home)
        .env("XDG_CACHE_HOME", cache)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        // `fetchTree` is behind the `flakes` feature in CppNix 2.8.
        .env("NIX_CONFIG", "extra-experimental-features = flakes")
        .args([
            "--store", &store, "--eval", "--strict", "--json", "-E", expr,
        ])
        .output()
        .expect("running nix-instantiate");
    Ran {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        store,
    }
}

/// Evaluate `expr` with firn and CppNix, each with its own store and cache.
pub fn both(dir: &Path, tag: &str, expr: &str) -> (Ran, Ran) {
    let mine = run(
        firn("nix-instantiate"),
        dir,
        &dir.join("cache-firn"),
        store_dir(dir, &format!("firn-{tag}")),
        expr,
    );
    let theirs = run(
        cppnix("nix-instantiate"),
        dir,
        &dir.join("cache-cpp"),
        store_dir(dir, &format!("cpp-{tag}")),
        expr,
    );
    (mine, theirs)
}

/// Both succeed with the same attributes, and `outPath` has the same NAR hash in both stores.
pub fn same(dir: &Path, tag: &str, expr: &str) -> Same {
    let (mine, theirs) = both(dir, tag, expr);
    assert!(mine.ok, "{tag}: firn failed:\n{}", mine.stderr);
    assert!(theirs.ok, "{tag}: CppNix failed:\n{}", theirs.stderr);
    let m: serde_json::Value = serde_json::from_str(&mine.stdout).expect("firn prints JSON");
    let t: serde_json::Value = serde_json::from_str(&theirs.stdout).expect("CppNix prints JSON");
    assert_eq!(m, t, "{tag}: {expr}");
    let out = m["out"].as_str().expect("outPath is a string").to_string();
    let hash = |s: &str| ok_str(cppnix("nix-store").args(["--store", s, "-q", "--hash", &out]));
    assert_eq!(hash(&mine.store), hash(&theirs.store), "{tag}");
    // `fetchMercurial` has no `narHash`; where there is one, it is outPath's.
    if let Some(nar_hash) = m.get("narHash") {
        let sri = ok_str(cppnix("nix").args(["hash", "to-sri", hash(&mine.store).trim()]));
        assert_eq!(
            nar_hash.as_str(),
            Some(sri.trim()),
            "{tag}: narHash is the NAR hash of outPath"
        );
    }
    Same {
        v: m,
        stderr: [mine.stderr, theirs.stderr],
    }
}

pub struct Same {
    pub v: serde_json::Value,
    /// firn's and CppNix's.
    pub stderr: [String; 2],
}

/// Where a store path's files are in a chroot store.
pub fn real(store: &str, out: &str) -> std::path::PathBuf {
    Path::new(store).join(out.trim_start_matches('/'))
}

/// The files of a dirty working tree as fetched: `README` as changed on disk, the untracked
/// file and the version control directory (`vcs_dir`) left out, the symlink and the executable
/// kept as such.
pub fn assert_dirty_tree_files(files: &Path, vcs_dir: &str) {
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::read_to_string(files.join("README")).expect("README"),
        "changed\n"
    );
    assert!(!files.join("untracked").exists());
    assert!(!files.join(vcs_dir).exists());
    assert!(std::fs::symlink_metadata(files.join("link"))
        .expect("link")
        .file_type()
        .is_symlink());
    let mode = std::fs::metadata(files.join("run.sh"))
        .expect("run.sh")
        .permissions()
        .mode();
    assert!(mode & 0o100 != 0, "run.sh is executable");
}
