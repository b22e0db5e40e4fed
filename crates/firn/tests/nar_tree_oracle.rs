//! `nix-hash` and `nix-store --add` of a larger tree compared with CppNix 2.8: many small
//! files, files around and beyond the read buffers, symlinks, executables, empty files, empty
//! and deeply nested directories. Whatever the walk does to go fast, the NAR hash, the store
//! path and the store contents must be CppNix's.

mod common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use common::*;

fn write(p: &Path, data: &[u8], mode: u32) {
    std::fs::create_dir_all(p.parent().expect("has a parent")).expect("mkdir");
    std::fs::write(p, data).expect("write");
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn big_tree(root: &Path) {
    // Many small files of every size up to a few KiB (every padding), some executable.
    for d in 0..12 {
        for f in 0..150u64 {
            let size = ((f * 37 + d * 11) % 4100) as usize;
            let mode = if f % 9 == 0 { 0o755 } else { 0o644 };
            write(
                &root.join(format!("small/d{d:02}/f{f:03}")),
                &noise(size, f * 131 + d),
                mode,
            );
        }
    }
    // Large files: around the 256 KiB buffers, a few MiB, one executable.
    for (i, size) in [262_143usize, 262_144, 262_145, 1 << 20, (5 << 20) + 3]
        .into_iter()
        .enumerate()
    {
        let mode = if i == 4 { 0o700 } else { 0o444 };
        write(
            &root.join(format!("large/l{i}")),
            &noise(size, 7 + i as u64),
            mode,
        );
    }
    // Empty files, empty directories, nested empty directories.
    write(&root.join("empty"), b"", 0o644);
    write(&root.join("small/empty-exec"), b"", 0o755);
    std::fs::create_dir_all(root.join("empty-dir")).expect("mkdir");
    std::fs::create_dir_all(root.join("nest/a/b/c/d")).expect("mkdir");
    // Symlinks of every kind, and names that sort differently by bytes than by locale.
    symlink("large/l0", root.join("rel")).expect("symlink");
    symlink("/etc/passwd", root.join("abs")).expect("symlink");
    symlink("nowhere/at/all", root.join("dangling")).expect("symlink");
    symlink("small", root.join("to-dir")).expect("symlink");
    symlink("x/".repeat(500), root.join("long-target")).expect("symlink");
    for name in [&b"B"[..], b"a", b"_", b"\xc3\xa9", b"\xff"] {
        write(&root.join(OsStr::from_bytes(name)), name, 0o644);
    }
    // Deeper than the directory handles the walk keeps open, with entries after each
    // subdirectory (the walk climbs back into directories whose handles it closed).
    let mut p = root.join("deep");
    for i in 0..80 {
        p.push(format!("d{}", i % 3));
        write(&p.join("zz"), format!("level {i}").as_bytes(), 0o644);
    }
}

#[test]
fn nix_hash_of_a_big_tree_equals_cppnix() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let tree = tmp.path().join("tree");
    big_tree(&tree);
    for p in [
        tree.clone(),
        tree.join("small"),
        tree.join("large/l4"),
        tree.join("deep"),
        tree.join("abs"),
        tree.join("empty"),
    ] {
        for args in [&["--type", "sha256"][..], &["--type", "sha512", "--base32"]] {
            let ours = ok_str(firn("nix-hash").args(args).arg(&p));
            let theirs = ok_str(cppnix("nix-hash").args(args).arg(&p));
            assert_eq!(ours, theirs, "nix-hash {args:?} {}", p.display());
        }
    }
}

#[test]
fn add_of_a_big_tree_equals_cppnix() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let tree = tmp.path().join("tree");
    big_tree(&tree);
    let ours_store = store_dir(tmp.path(), "ours");
    let theirs_store = store_dir(tmp.path(), "theirs");
    let ours = ok_str(
        firn("nix-store")
            .args(["--store", &ours_store, "--add"])
            .arg(&tree),
    );
    let theirs = ok_str(
        cppnix("nix-store")
            .args(["--store", &theirs_store, "--add"])
            .arg(&tree),
    );
    assert_eq!(ours, theirs);
    let path = ours.trim();
    // CppNix finds the path valid, with the contents and NAR hash it registers itself.
    ok(cppnix("nix-store").args(["--store", &ours_store, "--verify-path", path]));
    let info = |store: &str| {
        ["--hash", "--size"].map(|q| {
            ok_str(
                cppnix("nix-store")
                    .args(["--store", store, "--query", q])
                    .arg(path),
            )
        })
    };
    assert_eq!(info(&ours_store), info(&theirs_store));
    // The same bytes, modes and times on disk.
    let real = |store: &str| Path::new(store).join(&path[1..]);
    let dump = |store: &str| ok(cppnix("nix-store").arg("--dump").arg(real(store)));
    assert!(
        dump(&ours_store) == dump(&theirs_store),
        "store contents differ"
    );
    let listing = |store: &str| {
        let out = Command::new("find")
            .arg(real(store))
            .args(["-printf", "%P %M %T@ %s\n"])
            .output()
            .expect("running find");
        let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        lines.sort();
        lines
    };
    assert_eq!(listing(&ours_store), listing(&theirs_store));
}

#[test]
fn add_is_canonical_under_a_strict_umask() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let tree = tmp.path().join("tree");
    write(&tree.join("f"), b"file", 0o600);
    write(&tree.join("x"), b"#!", 0o700);
    std::fs::create_dir_all(tree.join("d")).expect("mkdir");
    let store = store_dir(tmp.path(), "s");
    let bin = firn_bin_dir().join("nix-store");
    let out = ok_str(
        Command::new("sh")
            .arg("-c")
            .arg("umask 077 && exec \"$0\" --store \"$1\" --add \"$2\"")
            .arg(&bin)
            .arg(&store)
            .arg(&tree)
            .env("NIX_CONF_DIR", "/nonexistent-firn-test-conf")
            .env("NIX_USER_CONF_FILES", ""),
    );
    let real = Path::new(&store).join(&out.trim()[1..]);
    for (p, mode) in [("", 0o555), ("d", 0o555), ("f", 0o444), ("x", 0o555)] {
        let m = std::fs::symlink_metadata(real.join(p)).expect("stat");
        assert_eq!(m.mode() & 0o7777, mode, "mode of '{p}'");
        assert_eq!(m.mtime(), 1, "time of '{p}'");
    }
    ok(cppnix("nix-store").args(["--store", &store, "--verify-path", out.trim()]));
}
