//! The local store's path-info cache never serves what the database no longer says: after
//! this store object's own writes (registration, signatures, the collector's deletions) and
//! after another connection's (a second store object, CppNix 2.8, any SQLite client).

mod gc_support;

use std::collections::BTreeSet;

use firn_format::StorePath;
use firn_store::gc::{GcAction, GcOptions};
use firn_store::LocalStore;
use gc_support::*;

/// A chroot store with one path `a` added by a store object that is gone again (so `a` is
/// no temporary root), and a fresh store object that has `a`'s info cached.
fn cached_a() -> (TestStore, LocalStore, StorePath) {
    let ts = TestStore::new();
    let a = {
        let s = ts.open();
        add(&s, "a", "aaaa", &[])
    };
    let s = ts.open();
    let info = s.query_path_info(&a).expect("query").expect("valid");
    assert!(info.sigs.is_empty());
    (ts, s, a)
}

fn delete_specific(s: &LocalStore, p: &StorePath) {
    s.collect_garbage(&GcOptions {
        action: GcAction::DeleteSpecific(BTreeSet::from([p.clone()])),
        ..GcOptions::default()
    })
    .expect("deleting");
}

#[test]
fn own_signatures_and_registrations_are_seen() {
    let (_ts, s, a) = cached_a();
    s.add_signatures(&a, &["k:c2ln".to_string()])
        .expect("adding a signature");
    let info = s.query_path_info(&a).expect("query").expect("valid");
    assert_eq!(info.sigs, BTreeSet::from(["k:c2ln".to_string()]));
    // Registered again with other metadata (as `--register-validity`/`--load-db` do).
    let mut changed = info.clone();
    changed.ultimate = true;
    changed.nar_size += 1;
    s.register_valid_paths(&[changed]).expect("registering");
    let again = s.query_path_info(&a).expect("query").expect("valid");
    assert!(again.ultimate);
    assert_eq!(again.nar_size, info.nar_size + 1);
    // The batched query sees the same.
    let batch = s.query_path_infos(std::slice::from_ref(&a)).expect("query");
    assert_eq!(batch[0].as_deref(), Some(&again));
}

#[test]
fn own_collection_is_seen() {
    let (_ts, s, a) = cached_a();
    delete_specific(&s, &a);
    assert_eq!(s.query_path_info(&a).expect("query"), None);
    assert_eq!(
        s.query_path_infos(std::slice::from_ref(&a)).expect("query"),
        vec![None]
    );
}

#[test]
fn another_store_objects_writes_are_seen() {
    let (ts, s, a) = cached_a();
    let other = ts.open();
    other
        .add_signatures(&a, &["other:c2ln".to_string()])
        .expect("adding a signature");
    let info = s.query_path_info(&a).expect("query").expect("valid");
    assert_eq!(info.sigs, BTreeSet::from(["other:c2ln".to_string()]));
    delete_specific(&other, &a);
    assert_eq!(s.query_path_info(&a).expect("query"), None);
}

#[test]
fn another_process_writes_are_seen() {
    let (ts, s, a) = cached_a();
    // Any other SQLite client, as CppNix writes the signatures column.
    let db = rusqlite::Connection::open(ts.state().join("db/db.sqlite")).expect("db");
    db.busy_timeout(std::time::Duration::from_secs(60))
        .expect("timeout");
    db.execute(
        "update ValidPaths set sigs = 'cpp:c2ln', narSize = 12345 where path = ?",
        [s.store_dir().display(&a)],
    )
    .expect("update");
    let info = s.query_path_info_shared(&a).expect("query").expect("valid");
    assert_eq!(info.sigs, BTreeSet::from(["cpp:c2ln".to_string()]));
    assert_eq!(info.nar_size, 12345);
    drop(db);
    // CppNix 2.8 itself deleting the path while this store object has it cached.
    let out = ts.cppnix(&["--delete", &s.store_dir().display(&a)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!ts.real(&a).exists());
    assert_eq!(s.query_path_info(&a).expect("query"), None);
    assert_eq!(
        s.query_path_infos(std::slice::from_ref(&a)).expect("query"),
        vec![None]
    );
}

#[test]
fn staging_takes_one_directory_and_one_root() {
    let ts = TestStore::new();
    let s = ts.open();
    let a = add(&s, "a", "aaaa", &[]);
    let b = add(&s, "b", "bbbb", &[&a]);
    let c = add(&s, "c", "cccc", &[&a, &b]);
    let staging: Vec<String> = std::fs::read_dir(ts.root().join("nix/store"))
        .expect("listing the store")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with("-firn-staging"))
        .collect();
    assert_eq!(staging.len(), 1, "{staging:?}");
    // Each path once among the temporary roots, with the staging directory.
    let roots = temp_root_entries(&ts);
    for p in [&a, &b, &c] {
        let printed = s.store_dir().display(p);
        assert_eq!(roots.iter().filter(|r| **r == printed).count(), 1);
    }
    assert_eq!(
        roots
            .iter()
            .filter(|r| r.ends_with("-firn-staging"))
            .count(),
        1
    );
    // Nothing left staged, and the directory goes with the store object.
    assert_eq!(
        std::fs::read_dir(ts.root().join("nix/store").join(&staging[0]))
            .expect("listing")
            .count(),
        0
    );
    drop(s);
    assert!(!ts.root().join("nix/store").join(&staging[0]).exists());
}

#[test]
fn temp_roots_are_announced_once() {
    let ts = TestStore::new();
    let s = ts.open();
    let sd = s.store_dir().clone();
    let p = |h: char, n: &str| {
        sd.parse(&format!("/nix/store/{}-{n}", h.to_string().repeat(32)))
            .expect("path")
    };
    let (x, y, z) = (p('1', "x"), p('2', "y"), p('3', "z"));
    s.add_temp_root(&x).expect("root");
    s.add_temp_roots(&[x.clone(), y.clone(), y.clone(), z.clone()])
        .expect("roots");
    s.add_temp_root(&z).expect("root");
    let mut roots = temp_root_entries(&ts);
    roots.sort();
    assert_eq!(
        roots,
        vec![sd.display(&x), sd.display(&y), sd.display(&z)],
        "each root written once"
    );
    // And a collector honours them (they are CppNix's format).
    let found: BTreeSet<StorePath> = s
        .find_temp_roots(false)
        .expect("temp roots")
        .into_keys()
        .collect();
    assert_eq!(found, BTreeSet::from([x, y, z]));
}

/// The entries of every temp-roots file of the store.
fn temp_root_entries(ts: &TestStore) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(ts.state().join("temproots")).expect("listing temproots") {
        let text = std::fs::read(e.expect("entry").path()).expect("reading temproots");
        out.extend(
            text.split(|b| *b == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned()),
        );
    }
    out
}
