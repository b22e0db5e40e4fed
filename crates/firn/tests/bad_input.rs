//! Bad input and bad luck: malicious NARs, crashes in the middle of an add, and concurrent adds
//! of the same path. Each ends with a clear error or a consistent store, never damage.

mod common;

use std::path::Path;
use std::process::Stdio;

use common::*;

fn s(x: &[u8]) -> Vec<u8> {
    let mut v = (x.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(x);
    v.resize(v.len() + (8 - x.len() % 8) % 8, 0);
    v
}

fn nar(tokens: &[&[u8]]) -> Vec<u8> {
    tokens.iter().flat_map(|t| s(t)).collect()
}

fn dir_with_entries(names: &[&[u8]]) -> Vec<u8> {
    let mut t: Vec<&[u8]> = vec![b"nix-archive-1", b"(", b"type", b"directory"];
    for n in names {
        t.extend_from_slice(&[
            b"entry",
            b"(",
            b"name",
            n,
            b"node",
            b"(",
            b"type",
            b"regular",
            b"contents",
            b"pwned",
            b")",
            b")",
        ]);
    }
    t.push(b")");
    nar(&t)
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = walk(dir);
    v.sort();
    v
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            out.push(p.to_string_lossy().into_owned());
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                out.extend(walk(&p));
            }
        }
    }
    out
}

#[test]
fn malicious_nars_are_refused_and_write_nothing_outside() {
    let tmp = tempfile::tempdir().unwrap();
    let sandbox = tmp.path().join("sandbox");
    std::fs::create_dir_all(sandbox.join("inner")).unwrap();
    let mut huge = nar(&[b"nix-archive-1", b"(", b"type", b"regular", b"contents"]);
    huge.extend_from_slice(&(1u64 << 62).to_le_bytes());
    let mut long_name = nar(&[
        b"nix-archive-1",
        b"(",
        b"type",
        b"directory",
        b"entry",
        b"(",
        b"name",
    ]);
    long_name.extend_from_slice(&(1u64 << 40).to_le_bytes());
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("dotdot", dir_with_entries(&[b".."]), "invalid file name"),
        ("dot", dir_with_entries(&[b"."]), "invalid file name"),
        (
            "slash",
            dir_with_entries(&[b"../../escape"]),
            "invalid file name",
        ),
        ("empty", dir_with_entries(&[b""]), "invalid file name"),
        ("nul", dir_with_entries(&[b"a\0b"]), "invalid file name"),
        (
            "unsorted",
            dir_with_entries(&[b"b", b"a"]),
            "not strictly sorted",
        ),
        (
            "duplicate",
            dir_with_entries(&[b"a", b"a"]),
            "not strictly sorted",
        ),
        (
            "truncated",
            dir_with_entries(&[b"a", b"b"])[..100].to_vec(),
            "ends early",
        ),
        ("huge", huge, "ends early"),
        ("long name", long_name, "too long"),
        (
            "not a nar",
            b"hello world, this is not a NAR".to_vec(),
            "not a NAR",
        ),
    ];
    for (what, bytes, msg) in cases {
        let before = listing(tmp.path());
        let target = sandbox.join("inner/target");
        let out = run_with_input(firn("nix-store").arg("--restore").arg(&target), &bytes);
        assert_eq!(out.status.code(), Some(1), "{what}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(msg), "{what}: {err}");
        // Only the target itself may have appeared (partially); nothing else anywhere.
        let after: Vec<String> = listing(tmp.path())
            .into_iter()
            .filter(|p| !Path::new(p).starts_with(&target))
            .collect();
        assert_eq!(after, before, "{what} wrote outside the target");
        let _ = std::fs::remove_dir_all(&target);
        let _ = std::fs::remove_file(&target);
    }
    // Restoring over an existing file or symlink is refused, and the symlink is not followed.
    let victim = tmp.path().join("victim");
    std::fs::write(&victim, "keep").unwrap();
    let link = sandbox.join("link");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let good = nar(&[
        b"nix-archive-1",
        b"(",
        b"type",
        b"regular",
        b"contents",
        b"new",
        b")",
    ]);
    let out = run_with_input(firn("nix-store").arg("--restore").arg(&link), &good);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
}

/// A tree big enough that an add takes a while.
fn big_tree(root: &Path) {
    for d in 0..20 {
        let dir = root.join(format!("d{d}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..50 {
            let data: Vec<u8> = (0..64 * 1024u32)
                .map(|i| ((i * 7 + f * 13 + d) % 256) as u8)
                .collect();
            std::fs::write(dir.join(format!("f{f}")), data).unwrap();
        }
    }
}

#[test]
fn kill_9_during_add_leaves_a_consistent_store() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    big_tree(&tree);
    let store = store_dir(tmp.path(), "s");
    // Make the store first so each run measures the add itself.
    ok(firn("nix-store").args(["--store", &store, "--init"]));
    let expected = ok_str(
        cppnix("nix-store")
            .args(["--store", &store_dir(tmp.path(), "ref"), "--add"])
            .arg(&tree),
    );
    for delay_ms in [5u64, 20, 40, 80, 160] {
        let mut child = firn("nix-store")
            .args(["--store", &store, "--add"])
            .arg(&tree)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        // Whatever state it died in, the store verifies: the path is valid and whole, or absent.
        let v = cppnix("nix-store")
            .args(["--store", &store, "--verify", "--check-contents"])
            .output()
            .unwrap();
        assert!(
            v.status.success(),
            "after kill at {delay_ms} ms: {}",
            String::from_utf8_lossy(&v.stderr)
        );
        let valid = cppnix("nix-store")
            .args(["--store", &store, "--check-validity", expected.trim()])
            .output()
            .unwrap();
        if valid.status.success() {
            ok(cppnix("nix-store").args(["--store", &store, "--verify-path", expected.trim()]));
        } else {
            // Not registered: no garbage where the path would be that a later add trips on.
            let got = ok_str(
                firn("nix-store")
                    .args(["--store", &store, "--add"])
                    .arg(&tree),
            );
            assert_eq!(got, expected);
            ok(cppnix("nix-store").args(["--store", &store, "--verify-path", expected.trim()]));
            let _ = ok(firn("nix-store").args(["--store", &store, "--delete", expected.trim()]));
        }
    }
    // The GC clears whatever temporary directories the killed processes left.
    ok(firn("nix-store").args(["--store", &store, "--gc"]));
    let leftovers: Vec<_> = std::fs::read_dir(Path::new(&store).join("nix/store"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".links")
        .collect();
    assert!(leftovers.is_empty(), "left over: {leftovers:?}");
}

#[test]
fn concurrent_adds_of_one_path_make_one_copy() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    big_tree(&tree);
    let store = store_dir(tmp.path(), "s");
    ok(firn("nix-store").args(["--store", &store, "--init"]));
    let children: Vec<_> = (0..4)
        .map(|_| {
            firn("nix-store")
                .args(["--store", &store, "--add"])
                .arg(&tree)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    for o in &outs {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(o.stdout, outs[0].stdout);
    }
    let entries: Vec<_> = std::fs::read_dir(Path::new(&store).join("nix/store"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".links")
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let v = cppnix("nix-store")
        .args(["--store", &store, "--verify", "--check-contents"])
        .output()
        .unwrap();
    assert!(v.status.success());
}

#[test]
fn gc_during_add_deletes_nothing_being_added() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    big_tree(&tree);
    let store = store_dir(tmp.path(), "s");
    ok(firn("nix-store").args(["--store", &store, "--init"]));
    // Root the path before it exists: once the add is over the path is kept by the root, and
    // while it runs (the root's target still invalid) only the temporary roots protect it.
    let keep = root_for_coming_path(&store, &tree, tmp.path());
    for gc_tool in ["cppnix", "firn"] {
        let child = firn("nix-store")
            .args(["--store", &store, "--add"])
            .arg(&tree)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Collect garbage over and over while the add runs.
        for _ in 0..5 {
            let mut gc = if gc_tool == "cppnix" {
                cppnix("nix-store")
            } else {
                firn("nix-store")
            };
            ok(gc.args(["--store", &store, "--gc"]));
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{gc_tool}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
        ok(cppnix("nix-store").args(["--store", &store, "--verify-path", &p]));
        ok(firn("nix-store").args(["--store", &store, "--delete", "--ignore-liveness", &p]));
    }
    std::fs::remove_file(keep).unwrap();
}

#[test]
fn firn_gc_during_cppnix_add_spares_the_new_path() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    big_tree(&tree);
    let store = store_dir(tmp.path(), "s");
    ok(cppnix("nix-store").args(["--store", &store, "--init"]));
    let keep = root_for_coming_path(&store, &tree, tmp.path());
    for _ in 0..2 {
        // CppNix announces its temporary root to firn's GC over the GC socket.
        let child = cppnix("nix-store")
            .args(["--store", &store, "--add"])
            .arg(&tree)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        for _ in 0..5 {
            ok(firn("nix-store").args(["--store", &store, "--gc"]));
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
        ok(cppnix("nix-store").args(["--store", &store, "--verify-path", &p]));
        ok(firn("nix-store").args(["--store", &store, "--delete", "--ignore-liveness", &p]));
    }
    std::fs::remove_file(keep).unwrap();
}

/// A GC root (symlink in `gcroots`) for the path `tree` will be added as, made before it exists.
fn root_for_coming_path(store: &str, tree: &Path, tmp: &Path) -> std::path::PathBuf {
    let reference = store_dir(tmp, "reference");
    let p = ok_str(
        cppnix("nix-store")
            .args(["--store", &reference, "--add"])
            .arg(tree),
    );
    let link = Path::new(store).join("nix/var/nix/gcroots/coming");
    std::os::unix::fs::symlink(p.trim(), &link).unwrap();
    link
}
