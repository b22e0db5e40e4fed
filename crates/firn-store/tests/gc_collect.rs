//! The collector on chroot stores: exactly the unreachable set goes, the closure of the roots
//! stays, `--print-dead`/`--print-live` equal CppNix 2.8's, `max-freed` stops early,
//! `--delete` refuses live paths with CppNix's message, and temporary roots of live
//! processes are kept.

mod gc_support;

use std::collections::BTreeSet;
use std::io::Write;

use firn_format::StorePath;
use firn_store::gc::{GcAction, GcOptions};
use firn_store::LocalStore;
use gc_support::*;

/// a <- b <- c (rooted), a <- d, e <- f, g: live {a, b, c}, dead {d, e, f, g}.
struct Fixture {
    ts: TestStore,
    live: Vec<StorePath>,
    dead: Vec<StorePath>,
    named_junk: String,
}

fn fixture() -> Fixture {
    let ts = TestStore::new();
    let s = ts.open();
    let a = add(&s, "a", "aaaa", &[]);
    let b = add(&s, "b", "bbbbb", &[&a]);
    let c = add(&s, "c", "cccccc", &[&b]);
    let d = add(&s, "d", "ddddddd", &[&a]);
    let e = add(&s, "e", "eeeeeeee", &[]);
    let f = add(&s, "f", "fffffffff", &[&e]);
    let g = add(&s, "g", &"g".repeat(1000), &[]);
    direct_root(&ts, &s, "c-root", &c);
    drop(s); // its temporary roots go with it
             // Leftovers: a store-path-named entry that is not valid, and a crashed add's staging dir.
    let named_junk = "0123456789abcdfghijklmnpqrsvwxyz-junk".to_string();
    std::fs::write(ts.root().join("nix/store").join(&named_junk), "junk!").expect("write");
    std::fs::create_dir(ts.root().join("nix/store/add-4194305-0")).expect("mkdir");
    Fixture {
        ts,
        live: vec![a, b, c],
        dead: vec![d, e, f, g],
        named_junk,
    }
}

fn gc(s: &LocalStore, action: GcAction) -> firn_store::gc::GcResults {
    s.collect_garbage(&GcOptions {
        action,
        ..GcOptions::default()
    })
    .expect("collecting garbage")
}

#[test]
fn print_dead_and_live_equal_cppnix() {
    let fx = fixture();
    let s = fx.ts.open();
    let dead = gc(&s, GcAction::ReturnDead).paths;
    let mut expected = printed(&s, &fx.dead.iter().collect::<Vec<_>>());
    expected.insert(format!("/nix/store/{}", fx.named_junk));
    // CppNix 2.8 lists entries that are not store paths too.
    expected.insert("/nix/store/add-4194305-0".into());
    assert_eq!(dead, expected);
    let live = gc(&s, GcAction::ReturnLive).paths;
    assert_eq!(live, printed(&s, &fx.live.iter().collect::<Vec<_>>()));
    // Nothing was deleted by looking.
    assert_eq!(valid(&s).len(), 7);
    assert!(fx.ts.root().join("nix/store/add-4194305-0").exists());
    drop(s);
    assert_eq!(fx.ts.cppnix_lines(&["--gc", "--print-dead"]), dead);
    assert_eq!(fx.ts.cppnix_lines(&["--gc", "--print-live"]), live);
}

#[test]
fn deletes_exactly_the_unreachable_set() {
    let fx = fixture();
    let s = fx.ts.open();
    let res = gc(&s, GcAction::DeleteDead);
    let mut expected = printed(&s, &fx.dead.iter().collect::<Vec<_>>());
    expected.insert(format!("/nix/store/{}", fx.named_junk));
    expected.insert("/nix/store/add-4194305-0".into());
    assert_eq!(res.paths, expected);
    // File sizes: d, e, f, g and the junk file.
    assert_eq!(res.bytes_freed, 7 + 8 + 9 + 1000 + 5);
    assert_eq!(valid(&s), printed(&s, &fx.live.iter().collect::<Vec<_>>()));
    for p in &fx.dead {
        assert!(!fx.ts.real(p).exists(), "{p} is still on disk");
    }
    for p in &fx.live {
        assert!(fx.ts.real(p).exists(), "{p} was deleted");
    }
    assert!(fx.ts.root().join("nix/store/.links").is_dir());
    drop(s);
    // CppNix finds the store consistent, and nothing more to collect.
    let out = fx.ts.cppnix(&["--verify", "--check-contents"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("error"));
    assert!(fx.ts.cppnix_lines(&["--gc", "--print-dead"]).is_empty());
}

#[test]
fn many_batches_delete_exactly_the_unreachable_set() {
    // More dead paths than the first batches hold, in chains whose links land in different
    // batches: each batch is deleted while the next is unregistered.
    let ts = TestStore::new();
    let s = ts.open();
    let mut live = Vec::new();
    let mut dead = Vec::new();
    for chain in 0..150 {
        let mut prev: Option<StorePath> = None;
        for k in 0..10 {
            let refs: Vec<&StorePath> = prev.iter().collect();
            let p = add(&s, &format!("c{chain}-{k}"), &format!("{chain} {k}"), &refs);
            prev = Some(p);
        }
        let head = prev.expect("a chain has paths");
        if chain % 7 == 0 {
            direct_root(&ts, &s, &format!("r{chain}"), &head);
        }
        // Every path of a chain is live or dead with its head.
        let closure = s
            .query_all_valid_paths()
            .expect("listing")
            .into_iter()
            .filter(|p| p.name().starts_with(&format!("c{chain}-")))
            .collect::<Vec<_>>();
        if chain % 7 == 0 {
            live.extend(closure);
        } else {
            dead.extend(closure);
        }
    }
    assert_eq!(live.len() + dead.len(), 1500);
    drop(s);
    let s = ts.open();
    let res = gc(&s, GcAction::DeleteDead);
    assert_eq!(res.paths, printed(&s, &dead.iter().collect::<Vec<_>>()));
    assert_eq!(valid(&s), printed(&s, &live.iter().collect::<Vec<_>>()));
    for p in &dead {
        assert!(!ts.real(p).exists(), "{p} is still on disk");
    }
    for p in &live {
        assert!(ts.real(p).exists(), "{p} was deleted");
    }
    drop(s);
    let out = ts.cppnix(&["--verify", "--check-contents"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(ts.cppnix_lines(&["--gc", "--print-dead"]).is_empty());
}

#[test]
fn max_freed_stops_early() {
    let ts = TestStore::new();
    let s = ts.open();
    let paths: Vec<StorePath> = (0..20)
        .map(|i| {
            add(
                &s,
                &format!("p{i}"),
                &format!("{i:04}{}", "x".repeat(996)),
                &[],
            )
        })
        .collect();
    drop(s);
    let s = ts.open();
    let none = s
        .collect_garbage(&GcOptions {
            max_freed: 0,
            ..GcOptions::default()
        })
        .expect("gc");
    assert!(none.paths.is_empty());
    assert_eq!(valid(&s).len(), 20);
    let res = s
        .collect_garbage(&GcOptions {
            max_freed: 2500,
            ..GcOptions::default()
        })
        .expect("gc");
    // Each path frees 1000 bytes: the third one passes the limit.
    assert_eq!(res.bytes_freed, 3000);
    assert_eq!(res.paths.len(), 3);
    let left = valid(&s);
    assert_eq!(left.len(), 17);
    // What is still valid is still on disk, and what was deleted is gone from both.
    for p in &paths {
        let shown = s.store_dir().display(p);
        assert_eq!(left.contains(&shown), ts.real(p).exists(), "{shown}");
        assert_eq!(res.paths.contains(&shown), !ts.real(p).exists(), "{shown}");
    }
}

#[test]
fn delete_specific_paths() {
    let fx = fixture();
    let s = fx.ts.open();
    let [d, e, f, g] = [0, 1, 2, 3].map(|i| fx.dead[i].clone());
    let c = fx.live[2].clone();
    let specific = |paths: &[&StorePath], ignore_liveness: bool| {
        s.collect_garbage(&GcOptions {
            action: GcAction::DeleteSpecific(paths.iter().map(|p| (*p).clone()).collect()),
            ignore_liveness,
            ..GcOptions::default()
        })
    };
    let msg = |p: &StorePath| {
        format!(
            "Cannot delete path '{}' since it is still alive. To find out why, use: nix-store --query --roots",
            s.store_dir().display(p)
        )
    };
    // A live path is refused, with CppNix's message (and CppNix says the same).
    let err = specific(&[&c], false).expect_err("c is live");
    assert_eq!(err.to_string(), msg(&c));
    let cpp = fx.ts.cppnix(&["--delete", &s.store_dir().display(&c)]);
    assert!(!cpp.status.success());
    assert!(String::from_utf8_lossy(&cpp.stderr).contains(&msg(&c)));
    // e is dead but f (not being deleted) refers to it.
    let err = specific(&[&e], false).expect_err("f keeps e");
    assert_eq!(err.to_string(), msg(&e));
    assert!(fx.ts.real(&e).exists());
    // Together they go, referrer first; d and g are untouched.
    let res = specific(&[&e, &f], false).expect("deleting e and f");
    assert_eq!(res.paths, printed(&s, &[&e, &f]));
    assert_eq!(res.bytes_freed, 8 + 9);
    assert!(fx.ts.real(&d).exists() && fx.ts.real(&g).exists());
    // With --ignore-liveness a root can go (nothing refers to c).
    let res = specific(&[&c], true).expect("ignoring liveness");
    assert_eq!(res.paths, printed(&s, &[&c]));
    assert!(!fx.ts.real(&c).exists());
    drop(s);
    let out = fx.ts.cppnix(&["--verify", "--check-contents"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn temp_roots_of_a_live_process_are_kept() {
    let fx = fixture();
    let s = fx.ts.open();
    let [d, e, f, g] = [0, 1, 2, 3].map(|i| fx.dead[i].clone());
    drop(s);
    // A child process holds a temporary roots file naming f, locked as CppNix and firn do.
    let file = fx.ts.state().join("temproots/4194306");
    let mut fh = std::fs::File::create(&file).expect("create");
    fh.write_all(format!("/nix/store/{}\0", f.base_name()).as_bytes())
        .expect("write");
    drop(fh);
    let mut child = std::process::Command::new("flock")
        .arg("--no-fork")
        .arg(&file)
        .args(["sleep", "60"])
        .spawn()
        .expect("spawning flock");
    // Wait until the child holds the lock.
    let probe = std::fs::File::open(&file).expect("open");
    for _ in 0..500 {
        if rustix::fs::flock(&probe, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err()
        {
            break;
        }
        let _ = rustix::fs::flock(&probe, rustix::fs::FlockOperation::Unlock);
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let s = fx.ts.open();
    let roots = s.find_roots(false).expect("roots");
    assert_eq!(
        roots.get(&f).cloned().unwrap_or_default(),
        BTreeSet::from(["{temp:4194306}".to_string()])
    );
    // CppNix sees it too.
    let cpp_dead = fx.ts.cppnix_lines(&["--gc", "--print-dead"]);
    assert!(!cpp_dead.contains(&s.store_dir().display(&f)));
    assert!(!cpp_dead.contains(&s.store_dir().display(&e)));
    let res = gc(&s, GcAction::DeleteDead);
    // f and what it keeps (e) stay; d and g go.
    assert!(res.paths.contains(&s.store_dir().display(&d)));
    assert!(res.paths.contains(&s.store_dir().display(&g)));
    assert!(fx.ts.real(&f).exists() && fx.ts.real(&e).exists());
    assert!(valid(&s).contains(&s.store_dir().display(&f)));
    child.kill().expect("killing the child");
    child.wait().expect("reaping the child");
    // Now its file is stale: it is removed and f and e are collected.
    let res = gc(&s, GcAction::DeleteDead);
    assert_eq!(res.paths, printed(&s, &[&e, &f]));
    assert!(!file.exists());
}
