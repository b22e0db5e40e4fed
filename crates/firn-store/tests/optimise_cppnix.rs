//! `optimise_store` against CppNix 2.8's `--optimise` on identical stores: the same `.links`
//! names, the same counts, identical files sharing one inode, directories back to their
//! canonical state, CppNix's `--verify --check-contents` clean afterwards, and the collector
//! removing `.links` entries nothing uses any more.

mod gc_support;

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use firn_format::{FileIngestionMethod, HashAlgo, StorePath};
use firn_store::gc::GcOptions;
use firn_store::LocalStore;
use gc_support::*;

/// Two trees sharing a regular file, an executable and a symlink, each with a unique file,
/// plus a flat file with the shared content.
fn populate(ts: &TestStore, s: &LocalStore) -> Vec<StorePath> {
    let mut out = Vec::new();
    for (i, name) in ["one", "two"].iter().enumerate() {
        let src = ts.root().join("src").join(name);
        std::fs::create_dir_all(src.join("sub")).expect("mkdir");
        std::fs::write(src.join("shared"), "the same bytes\n").expect("write");
        std::fs::write(src.join("sub/run"), "#!/bin/sh\necho hi\n").expect("write");
        std::fs::set_permissions(src.join("sub/run"), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        std::os::unix::fs::symlink("../shared", src.join("sub/link")).expect("symlink");
        std::fs::write(src.join("unique"), format!("only in {name} {i}")).expect("write");
        out.push(
            s.add_path(name, &src, FileIngestionMethod::Recursive, HashAlgo::Sha256)
                .expect("adding a tree"),
        );
    }
    let flat = ts.root().join("src/flat");
    std::fs::write(&flat, "the same bytes\n").expect("write");
    out.push(
        s.add_path("flat", &flat, FileIngestionMethod::Flat, HashAlgo::Sha256)
            .expect("adding a file"),
    );
    out
}

fn links(ts: &TestStore) -> BTreeSet<String> {
    std::fs::read_dir(ts.root().join("nix/store/.links"))
        .expect("reading .links")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect()
}

fn ino(p: &Path) -> u64 {
    std::fs::symlink_metadata(p).expect("stat").ino()
}

#[test]
fn optimise_matches_cppnix() {
    let ours = TestStore::new();
    let theirs = TestStore::new();
    let s = ours.open();
    let paths = populate(&ours, &s);
    let t = theirs.open();
    assert_eq!(populate(&theirs, &t), paths);
    drop(t);

    let stats = s.optimise_store().expect("optimising");
    let out = theirs.cppnix(&["--optimise"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // CppNix: "<size> freed by hard-linking <n> files".
    let line = stderr
        .lines()
        .find(|l| l.contains("freed by hard-linking"))
        .expect("CppNix's summary");
    let n: u64 = line
        .split_whitespace()
        .rev()
        .nth(1)
        .and_then(|w| w.parse().ok())
        .expect("a count");
    assert_eq!(stats.files_linked, n, "{line}");
    // shared (in two), run (in one), link (in one) and the flat file are linked to the first.
    assert_eq!(stats.files_linked, 4);
    assert_eq!(links(&ours), links(&theirs));
    assert_eq!(
        links(&ours).len(),
        5,
        "shared, run, link, and the two unique files"
    );

    let [one, two, flat] = [0, 1, 2].map(|i| ours.real(&paths[i]));
    assert_eq!(ino(&one.join("shared")), ino(&two.join("shared")));
    assert_eq!(ino(&one.join("shared")), ino(&flat));
    assert_eq!(ino(&one.join("sub/run")), ino(&two.join("sub/run")));
    assert_eq!(ino(&one.join("sub/link")), ino(&two.join("sub/link")));
    assert_ne!(ino(&one.join("unique")), ino(&two.join("unique")));
    for d in [&two, &two.join("sub")] {
        let m = std::fs::symlink_metadata(d).expect("stat");
        assert_eq!(m.mode() & 0o7777, 0o555, "{}", d.display());
        assert_eq!(m.mtime(), 1, "{}", d.display());
    }
    // Nothing left to do the second time.
    assert_eq!(s.optimise_store().expect("optimising").files_linked, 0);
    drop(s);
    let out = ours.cppnix(&["--verify", "--check-contents"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("error"), "{stderr}");
    // And CppNix finds nothing more to link in our store.
    let out = ours.cppnix(&["--optimise"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("hard-linking 0 files"));
}

#[test]
fn collection_removes_unused_links() {
    let ts = TestStore::new();
    let s = ts.open();
    let paths = populate(&ts, &s);
    s.optimise_store().expect("optimising");
    let before = links(&ts);
    drop(s);
    let s = ts.open();
    // Keep only the second tree.
    direct_root(&ts, &s, "two", &paths[1]);
    let res = s.collect_garbage(&GcOptions::default()).expect("gc");
    assert_eq!(res.paths, printed(&s, &[&paths[0], &paths[2]]));
    let after = links(&ts);
    // The first tree's unique file is gone from `.links`; what the second uses stays.
    assert_eq!(before.len() - 1, after.len());
    for name in &after {
        let m =
            std::fs::symlink_metadata(ts.root().join("nix/store/.links").join(name)).expect("stat");
        assert!(m.nlink() >= 2, "{name} is unused but kept");
    }
    drop(s);
    let out = ts.cppnix(&["--verify", "--check-contents"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
