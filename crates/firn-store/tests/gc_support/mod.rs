//! Shared helpers for the GC and optimise tests: chroot stores in temp dirs, paths with
//! references, and running CppNix 2.8 (`nix-store --store DIR ...`) on the same store.

#![allow(dead_code)] // Each test file uses a different subset.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use firn_format::StorePath;
use firn_store::{LocalStore, LocalStoreConfig};

/// A chroot store rooted at a fresh temp dir.
pub struct TestStore {
    pub dir: tempfile::TempDir,
}

impl TestStore {
    pub fn new() -> TestStore {
        TestStore {
            dir: tempfile::tempdir().expect("creating a temp dir"),
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Open a firn store object on it (each one has its own temporary roots).
    pub fn open(&self) -> LocalStore {
        LocalStore::open(LocalStoreConfig {
            root: Some(self.root().to_path_buf()),
            ..Default::default()
        })
        .expect("opening the chroot store")
    }

    pub fn state(&self) -> PathBuf {
        self.root().join("nix/var/nix")
    }

    pub fn real(&self, p: &StorePath) -> PathBuf {
        self.root().join("nix/store").join(p.base_name())
    }

    /// Run CppNix's `nix-store --store ROOT ARGS...`.
    pub fn cppnix(&self, args: &[&str]) -> Output {
        self.cppnix_cmd(args)
            .output()
            .expect("running CppNix's nix-store")
    }

    pub fn cppnix_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("nix-store");
        c.arg("--store").arg(self.root()).args(args);
        c.env_remove("NIX_REMOTE");
        c
    }

    /// CppNix's stdout as sorted lines; panics if it failed.
    pub fn cppnix_lines(&self, args: &[&str]) -> BTreeSet<String> {
        let out = self.cppnix(args);
        assert!(
            out.status.success(),
            "nix-store {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// Add a text file with references (through firn).
pub fn add(store: &LocalStore, name: &str, text: &str, refs: &[&StorePath]) -> StorePath {
    let refs: BTreeSet<StorePath> = refs.iter().map(|p| (*p).clone()).collect();
    store
        .add_text(name, text.as_bytes(), &refs)
        .expect("adding a text path")
}

/// Printed paths of a set.
pub fn printed(store: &LocalStore, paths: &[&StorePath]) -> BTreeSet<String> {
    paths.iter().map(|p| store.store_dir().display(p)).collect()
}

/// Make `gcroots/NAME` a direct root symlink to `p`.
pub fn direct_root(ts: &TestStore, store: &LocalStore, name: &str, p: &StorePath) {
    let link = ts.state().join("gcroots").join(name);
    std::fs::create_dir_all(link.parent().expect("has a parent")).expect("mkdir");
    std::os::unix::fs::symlink(store.store_dir().display(p), &link).expect("symlink");
}

/// All valid paths, printed.
pub fn valid(store: &LocalStore) -> BTreeSet<String> {
    store
        .query_all_valid_paths()
        .expect("listing valid paths")
        .iter()
        .map(|p| store.store_dir().display(p))
        .collect()
}

/// A fifo in the test's directory, for a collector's synchronisation point
/// (`_NIX_TEST_GC_SYNC` and the like: the collector reads it and waits for a writer).
pub fn sync_fifo(ts: &TestStore) -> PathBuf {
    let fifo = ts.root().join("sync");
    let st = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(st.success());
    fifo
}

/// Let the collector waiting on `fifo` go on.
pub fn release(fifo: &Path) {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .write(true)
        .open(fifo)
        .and_then(|mut f| f.write_all(b"go"))
        .expect("releasing the collector");
}
