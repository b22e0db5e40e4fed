//! firn and CppNix 2.8 collecting one store: each keeps the other's roots and deletes the
//! other's dead paths, and firn's temporary roots reach a running CppNix collector through its
//! socket.

mod gc_support;

use std::os::unix::fs::FileTypeExt;

use firn_format::StorePath;
use firn_store::gc::{GcAction, GcOptions};
use gc_support::*;

/// Add a file through CppNix; returns its store path.
fn cppnix_add(ts: &TestStore, name: &str, content: &str) -> StorePath {
    let src = ts.root().join("src").join(name);
    std::fs::create_dir_all(src.parent().expect("parent")).expect("mkdir");
    std::fs::write(&src, content).expect("write");
    let out = ts.cppnix_lines(&["--add", src.to_str().expect("utf-8 temp dir")]);
    let printed = out.into_iter().next().expect("CppNix printed the path");
    firn_format::StoreDir::default()
        .parse(&printed)
        .expect("a store path")
}

#[test]
fn firn_keeps_cppnix_roots_and_deletes_its_dead_paths() {
    let ts = TestStore::new();
    let rooted = cppnix_add(&ts, "rooted", "r");
    let linked = cppnix_add(&ts, "linked", "l");
    let dead = cppnix_add(&ts, "dead", "d");
    let link = ts.root().join("home/result");
    ts.cppnix_lines(&[
        "--add-root",
        link.to_str().expect("utf-8"),
        "--realise",
        &format!("/nix/store/{}", rooted.base_name()),
    ]);
    let s = ts.open();
    direct_root(&ts, &s, "linked", &linked);
    let res = s
        .collect_garbage(&GcOptions::default())
        .expect("collecting garbage");
    assert_eq!(res.paths, printed(&s, &[&dead]));
    assert_eq!(valid(&s), printed(&s, &[&rooted, &linked]));
    assert!(!ts.real(&dead).exists());
    drop(s);
    let out = ts.cppnix(&["--verify", "--check-contents"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("error"));
}

#[test]
fn cppnix_keeps_firn_roots_and_deletes_its_dead_paths() {
    let ts = TestStore::new();
    let s = ts.open();
    let base = add(&s, "base", "b", &[]);
    let rooted = add(&s, "rooted", "r", &[&base]);
    let direct = add(&s, "direct", "x", &[]);
    let dead = add(&s, "dead", "d", &[&base]);
    s.add_perm_root(&rooted, &ts.root().join("home/result"))
        .expect("adding a root");
    direct_root(&ts, &s, "direct", &direct);
    drop(s);
    let out = ts.cppnix(&["--gc"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = ts.open();
    assert_eq!(valid(&s), printed(&s, &[&base, &rooted, &direct]));
    assert!(!ts.real(&dead).exists());
    assert!(ts.real(&base).exists());
    // And firn agrees there is nothing left to collect.
    let res = s
        .collect_garbage(&GcOptions {
            action: GcAction::ReturnDead,
            ..GcOptions::default()
        })
        .expect("gc");
    assert!(res.paths.is_empty(), "{:?}", res.paths);
}

/// Wait until someone holds `gc.lock` exclusively (a collector is running).
fn wait_for_collector(ts: &TestStore) {
    let lock = ts.state().join("gc.lock");
    for _ in 0..1000 {
        if let Ok(f) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&lock)
        {
            if rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockShared).is_err() {
                return;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("no collector took the GC lock");
}

/// CppNix's collector (verbose), holding the lock and serving its socket, stopped at its
/// synchronisation point until [`release`]d.
fn paused_cppnix_collector(ts: &TestStore, fifo: &std::path::Path) -> std::process::Child {
    let child = ts
        .cppnix_cmd(&["--gc", "-vvvvv"])
        .env("_NIX_TEST_GC_SYNC", fifo)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawning CppNix's collector");
    wait_for_collector(ts);
    child
}

#[test]
fn firn_temp_roots_reach_a_running_cppnix_collector() {
    let ts = TestStore::new();
    let kept = cppnix_add(&ts, "kept", "k");
    let dead = cppnix_add(&ts, "dead", "d");
    let fifo = sync_fifo(&ts);
    let s = ts.open();
    // CppNix's collector stops at its synchronisation point, holding the lock and serving
    // its socket, until we write to the fifo.
    let child = paused_cppnix_collector(&ts, &fifo);
    let socket = ts.state().join("gc-socket/socket");
    s.add_temp_root(&kept).expect("adding a temporary root");
    assert!(std::fs::symlink_metadata(&socket).is_ok_and(|m| m.file_type().is_socket()));
    release(&fifo);
    cppnix_heard_root(child, &kept);
    assert!(ts.real(&kept).exists());
    assert!(!ts.real(&dead).exists());
    assert_eq!(valid(&s), printed(&s, &[&kept]));
}

#[test]
fn firn_hands_its_temp_roots_to_a_running_cppnix_collector_when_dropped() {
    // CppNix reads the permanent roots before the temporary ones: a path we make valid (that
    // a root points to) after its first read, our store object gone before its second, would
    // be deleted. So as it goes, a store object tells a running collector all its roots.
    let ts = TestStore::new();
    let s = ts.open();
    // No collector runs: the temporary root goes to our file only.
    let made = add(&s, "made", "m", &[]);
    let fifo = sync_fifo(&ts);
    let child = paused_cppnix_collector(&ts, &fifo);
    drop(s);
    release(&fifo);
    cppnix_heard_root(child, &made);
    assert!(ts.real(&made).exists());
}

/// Wait for CppNix's collector `child`: it succeeded and was told of root `path` over its
/// socket.
fn cppnix_heard_root(child: std::process::Child, path: &StorePath) {
    let out = child.wait_with_output().expect("waiting for CppNix");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "got new GC root '/nix/store/{}'",
            path.base_name()
        )),
        "CppNix did not hear of the root over its socket:\n{stderr}"
    );
}
