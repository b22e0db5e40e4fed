//! `nar_fs` and the NAR listing compared with CppNix 2.8 on trees with the awkward cases:
//! dump bytes against `nix-store --dump`, hashes against `nix-hash`, restores both ways,
//! listings against `nix nar ls --json` and the `.ls` files `nix copy` writes to a binary cache.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use firn_format::nar::listing::write_listing;
use firn_format::HashAlgo;
use firn_store::nar_fs::{dump_path, hash_path, restore_path, restore_path_hashed, NarFsError};

/// Run a command, insist on success, return its stdout.
fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .stderr(Stdio::piped())
        .output()
        .expect("running a nix tool");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Run a command with `input` on stdin; return whether it succeeded.
fn run_with_input(cmd: &mut Command, input: &[u8]) -> bool {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting a nix tool");
    // CppNix may stop reading early on a bad NAR: a broken pipe is fine.
    let _ = child
        .stdin
        .take()
        .expect("stdin was piped")
        .write_all(input);
    child.wait().expect("waiting for a nix tool").success()
}

fn cpp_dump(p: &Path) -> Vec<u8> {
    run(Command::new("nix-store").arg("--dump").arg(p))
}

fn our_dump(p: &Path) -> Vec<u8> {
    let mut v = Vec::new();
    dump_path(p, &mut v).unwrap();
    v
}

fn write_mode(p: &Path, data: &[u8], mode: u32) {
    fs::write(p, data).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// Deterministic pseudo-random bytes.
fn noise(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A tree with every case that is easy to get wrong.
fn awkward_tree(root: &Path) {
    fs::create_dir(root).unwrap();
    // Byte order differs from locale order; non-ASCII and non-UTF-8 names; odd bytes.
    for name in [
        &b"B"[..],
        b"a",
        b"_",
        b"Z",
        b"\xc3\xa9t\xc3\xa9",
        b"\xff\xfe",
        b"with space",
    ] {
        fs::write(root.join(OsStr::from_bytes(name)), name).unwrap();
    }
    for name in [
        &b"tab\there"[..],
        b"new\nline",
        b"\x01ctl",
        b"quote\"back\\",
    ] {
        fs::write(root.join(OsStr::from_bytes(name)), b"odd").unwrap();
    }
    fs::write(root.join("n".repeat(255)), b"long name").unwrap();
    // Executable bits: only the owner's counts.
    write_mode(&root.join("exec"), b"#!/bin/sh\necho hi\n", 0o755);
    write_mode(&root.join("owner-x"), b"x", 0o744);
    write_mode(&root.join("group-x"), b"x", 0o654);
    write_mode(&root.join("other-x"), b"x", 0o601);
    write_mode(&root.join("exec-empty"), b"", 0o700);
    // Contents: no trailing newline, empty, padding boundaries, several MiB.
    fs::write(root.join("no-newline"), b"abc").unwrap();
    fs::write(root.join("empty"), b"").unwrap();
    fs::write(root.join("seven"), b"1234567").unwrap();
    fs::write(root.join("eight"), b"12345678").unwrap();
    fs::write(root.join("nine"), b"123456789").unwrap();
    fs::write(root.join("big.bin"), noise(5 * 1024 * 1024 + 3)).unwrap();
    // Symlinks: relative, absolute, dangling, to a directory, long, to itself.
    symlink("a", root.join("rel-link")).unwrap();
    symlink("/etc/passwd", root.join("abs-link")).unwrap();
    symlink("does/not/exist", root.join("dangling")).unwrap();
    symlink("sub", root.join("dir-link")).unwrap();
    symlink("x/".repeat(1000), root.join("long-link")).unwrap();
    symlink("self", root.join("self")).unwrap();
    // Directories: empty ones, nesting, deep nesting.
    fs::create_dir(root.join("empty-dir")).unwrap();
    fs::create_dir_all(root.join("sub/inner/empty")).unwrap();
    fs::write(root.join("sub/inner/file"), b"inner\n").unwrap();
    symlink("../../B", root.join("sub/inner/up")).unwrap();
    let mut deep = root.join("deep");
    for i in 0..100 {
        deep.push(if i % 2 == 0 { "d" } else { "e" });
    }
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("bottom"), b"bottom").unwrap();
    // A directory whose mode CppNix ignores.
    fs::create_dir(root.join("ro-dir")).unwrap();
    fs::write(root.join("ro-dir/f"), b"f").unwrap();
    fs::set_permissions(root.join("ro-dir"), fs::Permissions::from_mode(0o555)).unwrap();
}

/// The roots worth dumping on their own: the whole tree and single objects of each kind.
fn roots(tree: &Path) -> Vec<PathBuf> {
    [
        "",
        "exec",
        "group-x",
        "empty",
        "no-newline",
        "big.bin",
        "abs-link",
        "dangling",
        "empty-dir",
        "sub",
        "deep",
    ]
    .iter()
    .map(|p| {
        if p.is_empty() {
            tree.to_path_buf()
        } else {
            tree.join(p)
        }
    })
    .collect()
}

#[test]
fn dump_equals_nix_store_dump() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    awkward_tree(&tree);
    for p in roots(&tree) {
        assert!(
            our_dump(&p) == cpp_dump(&p),
            "NAR of {} differs",
            p.display()
        );
    }
}

#[test]
fn hash_equals_nix_hash() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    awkward_tree(&tree);
    for p in [tree.clone(), tree.join("big.bin"), tree.join("abs-link")] {
        let size = cpp_dump(&p).len() as u64;
        for (algo, name) in [
            (HashAlgo::Md5, "md5"),
            (HashAlgo::Sha1, "sha1"),
            (HashAlgo::Sha256, "sha256"),
            (HashAlgo::Sha512, "sha512"),
        ] {
            let want = run(Command::new("nix-hash")
                .args(["--type", name, "--base32"])
                .arg(&p));
            let (h, n) = hash_path(&p, algo).unwrap();
            assert_eq!(
                h.to_nix32(),
                String::from_utf8(want).unwrap().trim(),
                "{name} of {}",
                p.display()
            );
            assert_eq!(n, size, "NAR size of {}", p.display());
        }
    }
}

/// `(relative path, mode)` of everything under `root` that is not a symlink, sorted.
fn modes(root: &Path) -> Vec<(PathBuf, u32)> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(p) = todo.pop() {
        let m = fs::symlink_metadata(&p).unwrap();
        if m.file_type().is_symlink() {
            continue;
        }
        out.push((
            p.strip_prefix(root).unwrap().to_path_buf(),
            m.permissions().mode() & 0o7777,
        ));
        if m.is_dir() {
            for e in fs::read_dir(&p).unwrap() {
                todo.push(e.unwrap().path());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn restores_agree_both_ways() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    awkward_tree(&tree);
    for (i, p) in roots(&tree).iter().enumerate() {
        let nar = cpp_dump(p);
        // Ours restores CppNix's NAR into a tree that dumps back identically.
        let ours = tmp.path().join(format!("ours-{i}"));
        let (h, n) = restore_path_hashed(&mut &nar[..], &ours, HashAlgo::Sha256).unwrap();
        assert_eq!(n, nar.len() as u64);
        assert_eq!(h, hash_path(p, HashAlgo::Sha256).unwrap().0);
        assert!(cpp_dump(&ours) == nar, "restore of {} differs", p.display());
        // CppNix restores our NAR into a tree that dumps back identically.
        let theirs = tmp.path().join(format!("theirs-{i}"));
        assert!(run_with_input(
            Command::new("nix-store").arg("--restore").arg(&theirs),
            &our_dump(p)
        ));
        assert!(
            our_dump(&theirs) == nar,
            "CppNix's restore of {} differs",
            p.display()
        );
        // And both restores leave the same modes (same umask: this process's).
        assert_eq!(
            modes(&ours),
            modes(&theirs),
            "modes after restoring {}",
            p.display()
        );
    }
}

#[test]
fn restore_reads_exactly_the_nar() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    awkward_tree(&tree);
    let nar = cpp_dump(&tree.join("sub"));
    let mut input = nar.clone();
    input.extend_from_slice(b"the next thing on the stream");
    let mut r = &input[..];
    assert_eq!(
        restore_path(&mut r, &tmp.path().join("out")).unwrap(),
        nar.len() as u64
    );
    assert_eq!(r, b"the next thing on the stream");
}

#[test]
fn listing_equals_nix_nar_ls() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    awkward_tree(&tree);
    for p in [tree.clone(), tree.join("exec"), tree.join("abs-link")] {
        let nar_file = tmp.path().join("x.nar");
        let nar = cpp_dump(&p);
        fs::write(&nar_file, &nar).unwrap();
        let want = run(Command::new("nix")
            .args([
                "--extra-experimental-features",
                "nix-command",
                "nar",
                "ls",
                "--json",
                "-R",
            ])
            .arg(&nar_file)
            .arg("/"));
        let mut got = Vec::new();
        write_listing(&mut &nar[..], &mut got, false).unwrap();
        assert!(
            got == want,
            "listing of {} differs:\nours:   {}\nCppNix: {}",
            p.display(),
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want)
        );
    }
}

#[test]
fn listing_equals_ls_file_in_binary_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    awkward_tree(&tree);
    let store = tmp.path().join("store");
    let cache = tmp.path().join("cache");
    let path = run(Command::new("nix-store")
        .arg("--store")
        .arg(&store)
        .arg("--add")
        .arg(&tree));
    let path = String::from_utf8(path).unwrap().trim().to_string();
    run(Command::new("nix")
        .args([
            "--extra-experimental-features",
            "nix-command",
            "copy",
            "--no-check-sigs",
        ])
        .arg("--from")
        .arg(&store)
        .arg("--to")
        .arg(format!(
            "file://{}?write-nar-listing=true&compression=none",
            cache.display()
        ))
        .arg(&path));
    let hash_part = &path["/nix/store/".len().."/nix/store/".len() + 32];
    let ls = fs::read(cache.join(format!("{hash_part}.ls"))).unwrap();
    let nars: Vec<_> = fs::read_dir(cache.join("nar"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(nars.len(), 1, "one NAR in the cache");
    let nar = fs::read(&nars[0]).unwrap();
    let mut got = Vec::new();
    write_listing(&mut &nar[..], &mut got, true).unwrap();
    assert!(
        got == ls,
        "listing differs:\nours:   {}\nCppNix: {}",
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&ls)
    );
}

#[test]
fn special_files_are_refused_like_cppnix() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("dir");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("a"), b"a").unwrap();
    let fifo = dir.join("fifo");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    let e = dump_path(&dir, &mut std::io::sink()).unwrap_err();
    assert!(
        matches!(&e, NarFsError::UnsupportedType(p) if *p == fifo),
        "{e}"
    );
    assert!(e.to_string().contains("fifo"), "{e}");
    assert!(hash_path(&dir, HashAlgo::Sha256).is_err());
    let out = Command::new("nix-store")
        .arg("--dump")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!out.status.success(), "CppNix refuses a fifo too");
}
