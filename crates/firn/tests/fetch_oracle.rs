//! The evaluator's fetchers against CppNix 2.8: `builtins.fetchurl` and
//! `builtins.fetchTarball` over `file://` and `http://` give the same store paths (tarballs
//! in gzip, xz, bzip2 and plain tar; several top-level entries are an error), `sha256`
//! is checked (and a known, valid result is not downloaded again), and failures are errors.

mod common;

use std::io::Write;
use std::path::Path;

use common::*;

/// A tar archive of a small tree: with `wrap`, under one top-level directory.
fn tarball(wrap: bool) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let prefix = if wrap { "proj-1.0/" } else { "" };
    let mut add = |path: &str, data: &[u8], mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_mtime(1_600_000_000);
        h.set_cksum();
        b.append_data(&mut h, format!("{prefix}{path}"), data)
            .expect("append");
    };
    add("README", b"read me\n", 0o644);
    add("bin/tool", b"#!/bin/sh\necho tool\n", 0o755);
    add("sub/deep/file", b"deep\n", 0o600);
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    h.set_cksum();
    b.append_link(&mut h, format!("{prefix}link"), "README")
        .expect("link");
    b.into_inner().expect("finish")
}

fn bzip(data: &[u8]) -> Vec<u8> {
    let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
    e.write_all(data).expect("bzip2");
    e.finish().expect("bzip2")
}

fn eval_both(dir: &Path, tag: &str, expr: &str) -> (String, String) {
    let f = store_dir(dir, &format!("firn-{tag}"));
    let c = store_dir(dir, &format!("cpp-{tag}"));
    let mine = ok_str(firn("nix-instantiate").args(["--store", &f, "--eval", "-E", expr]));
    let theirs = ok_str(cppnix("nix-instantiate").args(["--store", &c, "--eval", "-E", expr]));
    // The fetched paths are valid and hash the same.
    let p = mine.trim().trim_matches('"').to_string();
    let h = |s: &str| ok_str(cppnix("nix-store").args(["--store", s, "-q", "--hash", &p]));
    assert_eq!(h(&f), h(&c), "{tag}");
    (mine, theirs)
}

#[test]
fn fetchers_equal_cppnix() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    let wrapped = tarball(true);
    let flat = tarball(false);
    let files: Vec<(&'static str, Vec<u8>)> = vec![
        ("/p.tar.gz", gzip(&wrapped)),
        ("/p.tar.xz", xz(&wrapped)),
        ("/p.tar.bz2", bzip(&wrapped)),
        ("/p.tar", wrapped.clone()),
        ("/flat.tar.gz", gzip(&flat)),
    ];
    for (name, data) in &files {
        std::fs::write(dir.join(name.trim_start_matches('/')), data).expect("write");
    }
    let port = http_server(files);
    for (i, name) in ["p.tar.gz", "p.tar.xz", "p.tar.bz2", "p.tar"]
        .iter()
        .enumerate()
    {
        for (j, url) in [
            format!("file://{}/{name}", dir.display()),
            format!("http://127.0.0.1:{port}/{name}"),
        ]
        .iter()
        .enumerate()
        {
            let (m, t) = eval_both(
                dir,
                &format!("tb{i}-{j}"),
                &format!("builtins.fetchTarball \"{url}\""),
            );
            assert_eq!(m, t, "{url}");
            let (m, t) = eval_both(
                dir,
                &format!("fu{i}-{j}"),
                &format!("builtins.fetchurl \"{url}\""),
            );
            assert_eq!(m, t, "{url}");
        }
    }
    // Several top-level entries: an error in both.
    let flat_url = format!("http://127.0.0.1:{port}/flat.tar.gz");
    let e = format!("builtins.fetchTarball \"{flat_url}\"");
    for mut c in [firn("nix-instantiate"), cppnix("nix-instantiate")] {
        let out = c
            .args(["--store", &store_dir(dir, "flat"), "--eval", "-E", &e])
            .output()
            .expect("run");
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("unexpected number of top-level files"),
            "{err}"
        );
    }
    // Attribute forms with a name and the right hash; then a wrong hash fails in both.
    let url = format!("http://127.0.0.1:{port}/p.tar.gz");
    let hash = {
        let c = store_dir(dir, "hash");
        let p = ok_str(cppnix("nix-instantiate").args([
            "--store",
            &c,
            "--eval",
            "-E",
            &format!("builtins.fetchTarball \"{url}\""),
        ]));
        ok_str(cppnix("nix-store").args([
            "--store",
            &c,
            "-q",
            "--hash",
            p.trim().trim_matches('"'),
        ]))
    };
    let e = format!(
        "builtins.fetchTarball {{ url = \"{url}\"; name = \"proj\"; sha256 = \"{}\"; }}",
        hash.trim()
    );
    let (m, t) = eval_both(dir, "named", &e);
    assert_eq!(m, t);
    let bad = format!("builtins.fetchTarball {{ url = \"{url}\"; sha256 = \"sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\"; }}");
    let out = firn("nix-instantiate")
        .args(["--store", &store_dir(dir, "bad"), "--eval", "-E", &bad])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("hash mismatch"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A 404 is an error naming the URL.
    let missing = format!("builtins.fetchurl \"http://127.0.0.1:{port}/nope\"");
    let out = firn("nix-instantiate")
        .args(["--store", &store_dir(dir, "404"), "--eval", "-E", &missing])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unable to download") && err.contains("404"),
        "{err}"
    );
}
