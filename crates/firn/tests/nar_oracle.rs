//! NAR bytes, hashes and restores compared with CppNix 2.8.

mod common;

use common::*;

#[test]
fn dump_bytes_equal_cppnix() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    awkward_tree(&tree);
    for p in [
        tree.clone(),
        tree.join("a"),
        tree.join("abs"),
        tree.join("empty"),
    ] {
        let ours = ok(firn("nix-store").arg("--dump").arg(&p));
        let theirs = ok(cppnix("nix-store").arg("--dump").arg(&p));
        assert!(ours == theirs, "NAR of {} differs", p.display());
    }
    let ours = ok(firn("nix").args(["nar", "pack"]).arg(&tree));
    let theirs = ok(cppnix("nix-store").arg("--dump").arg(&tree));
    assert!(ours == theirs, "nix nar pack differs");
}

#[test]
fn nix_hash_equals_cppnix_in_every_base() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    awkward_tree(&tree);
    for algo in ["md5", "sha1", "sha256", "sha512"] {
        for base in [None, Some("--base32")] {
            for (flat, path) in [(false, tree.clone()), (true, tree.join("big.bin"))] {
                let mut args = vec!["--type", algo];
                if let Some(b) = base {
                    args.push(b);
                }
                if flat {
                    args.push("--flat");
                }
                let ours = ok_str(firn("nix-hash").args(&args).arg(&path));
                let theirs = ok_str(cppnix("nix-hash").args(&args).arg(&path));
                assert_eq!(ours, theirs, "nix-hash {args:?}");
            }
        }
        let ours = ok_str(
            firn("nix-hash")
                .args(["--type", algo, "--truncate"])
                .arg(&tree),
        );
        let theirs = ok_str(
            cppnix("nix-hash")
                .args(["--type", algo, "--truncate"])
                .arg(&tree),
        );
        assert_eq!(ours, theirs, "nix-hash --type {algo} --truncate");
    }
    // Conversions.
    let h = ok_str(cppnix("nix-hash").args(["--type", "sha256"]).arg(&tree));
    let h = h.trim();
    for to in ["--to-base32", "--to-base16"] {
        let ours = ok_str(firn("nix-hash").args(["--type", "sha256", to, h]));
        let theirs = ok_str(cppnix("nix-hash").args(["--type", "sha256", to, h]));
        assert_eq!(ours, theirs, "{to}");
    }
    // nix hash path (SRI) against nix-hash --type sha256 (base16) through nix hash convert.
    let sri = ok_str(firn("nix").args(["hash", "path"]).arg(&tree));
    let b16 = ok_str(firn("nix").args(["hash", "convert", "--to", "base16", sri.trim()]));
    assert_eq!(b16.trim(), h);
    let theirs_sri = ok_str(cppnix("nix").args(["hash", "path"]).arg(&tree));
    assert_eq!(sri, theirs_sri);
}

#[test]
fn restores_roundtrip_both_ways() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    awkward_tree(&tree);
    let nar = ok(cppnix("nix-store").arg("--dump").arg(&tree));
    // firn restores CppNix's NAR; CppNix dumps it back identically.
    let ours = tmp.path().join("ours");
    let out = run_with_input(firn("nix-store").arg("--restore").arg(&ours), &nar);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(ok(cppnix("nix-store").arg("--dump").arg(&ours)) == nar);
    // CppNix restores firn's NAR.
    let nar2 = ok(firn("nix-store").arg("--dump").arg(&tree));
    let theirs = tmp.path().join("theirs");
    let out = run_with_input(cppnix("nix-store").arg("--restore").arg(&theirs), &nar2);
    assert!(out.status.success());
    assert!(ok(firn("nix-store").arg("--dump").arg(&theirs)) == nar2);
}

#[test]
fn nar_ls_and_cat_read_a_nar_file() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    awkward_tree(&tree);
    let nar_file = tmp.path().join("t.nar");
    std::fs::write(&nar_file, ok(cppnix("nix-store").arg("--dump").arg(&tree))).unwrap();
    let cat = ok(firn("nix")
        .args(["nar", "cat"])
        .arg(&nar_file)
        .arg("/sub/exe"));
    assert_eq!(cat, b"#!/bin/sh\necho hi\n");
    for args in [
        vec!["-R"],
        vec!["-lR"],
        vec!["--json"],
        vec!["--json", "-R"],
    ] {
        let ours = ok_str(
            firn("nix")
                .args(["nar", "ls"])
                .args(&args)
                .arg(&nar_file)
                .arg("/"),
        );
        let theirs = ok_str(
            cppnix("nix")
                .args(["nar", "ls"])
                .args(&args)
                .arg(&nar_file)
                .arg("/"),
        );
        if args.contains(&"--json") {
            let a: serde_json::Value = serde_json::from_str(&ours).unwrap();
            let b: serde_json::Value = serde_json::from_str(&theirs).unwrap();
            assert_eq!(a, b, "nix nar ls {args:?}");
        } else {
            assert_eq!(ours, theirs, "nix nar ls {args:?}");
        }
    }
}
