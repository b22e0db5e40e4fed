//! The new-style store commands and the legacy odds and ends, against CppNix 2.8 where it has
//! the same command, and against the documented behaviour where it does not.

mod common;

use std::path::Path;

use common::*;

#[test]
fn store_ls_cat_dump_and_lookup_match_cppnix() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    awkward_tree(&tree);
    let store = store_dir(tmp.path(), "s");
    let p = ok_str(
        firn("nix")
            .args(["store", "add-path", "--store", &store])
            .arg(&tree),
    )
    .trim()
    .to_string();
    assert_eq!(
        p,
        ok_str(
            cppnix("nix-store")
                .args(["--store", &store_dir(tmp.path(), "r"), "--add"])
                .arg(&tree)
        )
        .trim()
    );
    let both = |args: &[&str]| -> (Vec<u8>, Vec<u8>) {
        (
            ok(firn("nix").args(args).args(["--store", &store])),
            ok(cppnix("nix").args(args).args(["--store", &store])),
        )
    };
    for args in [
        vec!["store", "ls", "-R", &p],
        vec!["store", "ls", "-lR", &p],
        vec!["store", "ls", "-d", &p],
    ] {
        let (a, b) = both(&args);
        assert_eq!(
            String::from_utf8_lossy(&a),
            String::from_utf8_lossy(&b),
            "{args:?}"
        );
    }
    let (a, b) = both(&["store", "ls", "--json", "-R", &p]);
    let a: serde_json::Value = serde_json::from_slice(&a).unwrap();
    let b: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(a, b);
    let file = format!("{p}/sub/exe");
    let (a, b) = both(&["store", "cat", &file]);
    assert_eq!(a, b);
    let (a, b) = both(&["store", "dump-path", &p]);
    assert!(a == b, "dump-path differs");
    let hash_part = &p["/nix/store/".len().."/nix/store/".len() + 32];
    let found =
        ok_str(firn("nix").args(["store", "path-from-hash-part", "--store", &store, hash_part]));
    assert_eq!(found.trim(), p);
    let out = firn("nix")
        .args([
            "store",
            "path-from-hash-part",
            "--store",
            &store,
            "00000000000000000000000000000000",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    // An invalid path is an error with CppNix's wording.
    let bogus = "/nix/store/00000000000000000000000000000000-nope";
    let out = firn("nix")
        .args(["path-info", "--store", &store, bogus])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not valid"));
}

#[test]
fn store_gc_delete_and_roots() {
    let tmp = tempfile::tempdir().unwrap();
    let store = store_dir(tmp.path(), "s");
    let f = tmp.path().join("f");
    std::fs::write(&f, "data").unwrap();
    let p = ok_str(
        firn("nix")
            .args(["store", "add-file", "--store", &store])
            .arg(&f),
    )
    .trim()
    .to_string();
    let g = tmp.path().join("g");
    std::fs::write(&g, "more").unwrap();
    let q = ok_str(
        firn("nix")
            .args(["store", "add-file", "--store", &store])
            .arg(&g),
    )
    .trim()
    .to_string();
    // A root for p, then `nix-store -q --roots` agrees with CppNix.
    let gcroots = Path::new(&store).join("nix/var/nix/gcroots");
    std::os::unix::fs::symlink(&p, gcroots.join("keep")).unwrap();
    let a = ok_str(firn("nix-store").args(["--store", &store, "-q", "--roots", &p]));
    let b = ok_str(cppnix("nix-store").args(["--store", &store, "-q", "--roots", &p]));
    assert_eq!(a, b);
    let dry = ok_str(firn("nix").args(["store", "gc", "--dry-run", "--store", &store]));
    assert!(dry.contains(&q) && !dry.contains(&p), "{dry}");
    let out = firn("nix")
        .args(["store", "delete", "--store", &store, &p])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "a rooted path cannot be deleted"
    );
    let out = ok_str(firn("nix").args(["store", "gc", "--store", &store]));
    assert!(out.starts_with("1 store paths deleted"), "{out}");
    ok(cppnix("nix-store").args(["--store", &store, "--check-validity", &p]));
    std::fs::remove_file(gcroots.join("keep")).unwrap();
    let out = ok_str(firn("nix").args(["store", "delete", "--store", &store, &p]));
    assert!(out.starts_with("1 store paths deleted"), "{out}");
    // --max-freed stops early.
    let store2 = store_dir(tmp.path(), "s2");
    for i in 0..5 {
        let f = tmp.path().join(format!("x{i}"));
        std::fs::write(&f, vec![b'x'; 10000 + i]).unwrap();
        ok(firn("nix-store")
            .args(["--store", &store2, "--add"])
            .arg(&f));
    }
    let out = ok_str(firn("nix-store").args(["--store", &store2, "--gc", "--max-freed", "1"]));
    assert!(out.starts_with("1 store paths deleted"), "{out}");
}

#[test]
fn settings_options_and_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let store = store_dir(tmp.path(), "s");
    let f = tmp.path().join("f");
    std::fs::write(&f, "data").unwrap();
    // The store from NIX_CONFIG, from --option, and from NIX_REMOTE.
    let p1 = ok_str(
        firn("nix-store")
            .env("NIX_CONFIG", format!("store = {store}"))
            .arg("--add")
            .arg(&f),
    );
    let p2 = ok_str(
        firn("nix-store")
            .args(["--option", "store", &store, "--add"])
            .arg(&f),
    );
    let p3 = ok_str(
        firn("nix-store")
            .env("NIX_REMOTE", &store)
            .arg("--add")
            .arg(&f),
    );
    assert_eq!(p1, p2);
    assert_eq!(p2, p3);
    assert!(Path::new(&store)
        .join(p1.trim().trim_start_matches('/'))
        .exists());
    // nix.conf in NIX_CONF_DIR, with extra- settings and includes.
    let conf = tmp.path().join("conf");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(conf.join("extra.conf"), format!("store = {store}\n")).unwrap();
    std::fs::write(conf.join("nix.conf"), "# a comment\ninclude extra.conf\n").unwrap();
    let p4 = ok_str(
        firn("nix-store")
            .env("NIX_CONF_DIR", &conf)
            .arg("--add")
            .arg(&f),
    );
    assert_eq!(p1, p4);
    // Usage errors: exit 1 and a hint, as CppNix.
    for args in [vec!["--bogus-flag"], vec![], vec!["--add", "--query"]] {
        let a = firn("nix-store").args(&args).output().unwrap();
        let b = cppnix("nix-store").args(&args).output().unwrap();
        assert_eq!(a.status.code(), b.status.code(), "{args:?}");
        // Both name the program as it was invoked; compare without the directories.
        let ours = String::from_utf8_lossy(&a.stderr)
            .replace(&format!("{}/", firn_bin_dir().display()), "");
        let theirs = String::from_utf8_lossy(&b.stderr).replace("/usr/bin/", "");
        assert_eq!(ours, theirs, "{args:?}");
    }
    let out = firn("nix-hash")
        .args(["--type", "sha7"])
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    // The experimental-feature flags CppNix needs are accepted.
    ok(firn("nix")
        .args([
            "--extra-experimental-features",
            "nix-command flakes",
            "hash",
            "file",
        ])
        .arg(&f));
}

#[test]
fn keys_and_hash_conversion() {
    let sk = ok_str(firn("nix").args(["key", "generate-secret", "--key-name", "k-1"]));
    assert!(sk.starts_with("k-1:"));
    let out = run_with_input(
        firn("nix").args(["key", "convert-secret-to-public"]),
        sk.as_bytes(),
    );
    let ours = String::from_utf8_lossy(&out.stdout).to_string();
    let out = run_with_input(
        cppnix("nix").args(["key", "convert-secret-to-public"]),
        sk.as_bytes(),
    );
    assert_eq!(ours, String::from_utf8_lossy(&out.stdout));
    let h = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
    for to in ["base16", "nix32", "base64", "sri"] {
        let a = ok_str(firn("nix").args(["hash", "convert", "--to", to, h]));
        let back = ok_str(firn("nix").args([
            "hash",
            "convert",
            "--hash-algo",
            "sha256",
            "--to",
            "sri",
            a.trim(),
        ]));
        assert_eq!(back.trim(), h, "via {to}");
    }
    for (cmd, want) in [
        (
            "to-base16",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ),
        (
            "to-base32",
            "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73",
        ),
    ] {
        let a = ok_str(firn("nix").args(["hash", cmd, h]));
        let b = ok_str(cppnix("nix").args(["hash", cmd, h]));
        assert_eq!(a, b);
        assert_eq!(a.trim(), want);
    }
    let out = firn("nix")
        .args(["hash", "convert", "--from", "base16", h])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

/// `TOOL --version` has CppNix's shape (`nix-store (Nix) 2.8.0`) with the version of Nix firn
/// implements, the one `builtins.nixVersion` gives, so scripts that check it accept firn.
#[test]
fn versions_have_cppnix_shape() {
    let nix_version = ok_str(firn("nix-instantiate").args(["--eval", "-E", "builtins.nixVersion"]));
    let nix_version = nix_version.trim().trim_matches('"');
    for tool in [
        "nix",
        "nix-store",
        "nix-build",
        "nix-hash",
        "nix-instantiate",
        "nix-copy-closure",
    ] {
        let line = ok_str(firn(tool).arg("--version"));
        assert_eq!(line.trim(), format!("{tool} (firn) {nix_version}"));
        // CppNix's own line has the same three words, the version last.
        let cpp = ok_str(cppnix(tool).arg("--version"));
        assert_eq!(cpp.split_whitespace().count(), 3, "{cpp}");
    }
}
