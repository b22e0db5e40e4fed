//! One chroot store, two implementations: paths, queries, GC, export/import and signatures
//! compared with CppNix 2.8 on the same store.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::*;

const EXPR: &str = r#"
let
  src = builtins.toFile "src.txt" "hello \"world\"\n";
  dep = derivation { name = "dep"; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" "echo > $out" ]; };
  fixed = derivation { name = "fixed"; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" "echo -n > $out" ];
    outputHashMode = "flat"; outputHashAlgo = "sha256"; outputHash = "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73"; };
in derivation {
  name = "top"; system = "x86_64-linux"; builder = "/bin/sh";
  args = [ "-c" "cat ${src} ${dep} ${fixed} > $out; echo > $dev" ];
  outputs = [ "out" "dev" ];
  weird = "tab\there\nnewline \\ backslash";
}
"#;

/// Instantiate EXPR with CppNix into `store`; returns the top .drv path.
fn cppnix_instantiate(store: &str, dir: &Path) -> String {
    let f = dir.join("expr.nix");
    std::fs::write(&f, EXPR).unwrap();
    ok_str(cppnix("nix-instantiate").args(["--store", store]).arg(&f))
        .trim()
        .to_string()
}

fn lines(s: &str) -> BTreeSet<String> {
    s.lines().map(str::to_string).collect()
}

#[test]
fn added_paths_equal_cppnix() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    awkward_tree(&tree);
    let ours = store_dir(tmp.path(), "ours");
    let theirs = store_dir(tmp.path(), "theirs");
    let p1 = ok_str(
        firn("nix-store")
            .args(["--store", &ours, "--add"])
            .arg(&tree),
    );
    let p2 = ok_str(
        cppnix("nix-store")
            .args(["--store", &theirs, "--add"])
            .arg(&tree),
    );
    assert_eq!(p1, p2);
    for args in [
        vec!["sha256"],
        vec!["md5"],
        vec!["sha1"],
        vec!["sha512"],
        vec!["--recursive", "sha256"],
        vec!["--recursive", "sha1"],
    ] {
        let f = tree.join("big.bin");
        let a = ok_str(
            firn("nix-store")
                .args(["--store", &ours, "--add-fixed"])
                .args(&args)
                .arg(&f),
        );
        let b = ok_str(
            cppnix("nix-store")
                .args(["--store", &theirs, "--add-fixed"])
                .args(&args)
                .arg(&f),
        );
        assert_eq!(a, b, "--add-fixed {args:?}");
    }
    let a = ok_str(firn("nix-store").args([
        "--store",
        &ours,
        "--print-fixed-path",
        "sha256",
        "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73",
        "x",
    ]));
    let b = ok_str(cppnix("nix-store").args([
        "--store",
        &theirs,
        "--print-fixed-path",
        "sha256",
        "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73",
        "x",
    ]));
    assert_eq!(a, b);
}

#[test]
fn cppnix_verifies_what_firn_added() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    awkward_tree(&tree);
    let store = store_dir(tmp.path(), "s");
    let p = ok_str(
        firn("nix-store")
            .args(["--store", &store, "--add"])
            .arg(&tree),
    );
    ok(firn("nix-store")
        .args(["--store", &store, "--add-fixed", "--recursive", "sha1"])
        .arg(tree.join("sub")));
    ok(firn("nix")
        .args(["store", "add-file", "--store", &store])
        .arg(tree.join("a")));
    let out = cppnix("nix-store")
        .args(["--store", &store, "--verify", "--check-contents"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("error"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ok(cppnix("nix-store").args(["--store", &store, "--verify-path", p.trim()]));
    // Same metadata through both implementations.
    let a: serde_json::Value = serde_json::from_slice(&ok(firn("nix").args([
        "path-info",
        "--store",
        &store,
        "--json",
        "--all",
    ])))
    .unwrap();
    let b: serde_json::Value = serde_json::from_slice(&ok(cppnix("nix").args([
        "path-info",
        "--store",
        &store,
        "--json",
        "--all",
    ])))
    .unwrap();
    assert_eq!(a, b);
    // A file whose name is not a valid store path name is refused.
    let bad = tmp.path().join("a b");
    std::fs::write(&bad, "x").unwrap();
    let out = firn("nix-store")
        .args(["--store", &store, "--add"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not allowed"));
}

#[test]
fn firn_reads_what_cppnix_added() {
    let tmp = tempfile::tempdir().unwrap();
    let store = store_dir(tmp.path(), "s");
    let drv = cppnix_instantiate(&store, tmp.path());
    let cmp = |args: &[&str]| {
        let a = ok_str(firn("nix-store").args(["--store", &store]).args(args));
        let b = ok_str(cppnix("nix-store").args(["--store", &store]).args(args));
        assert_eq!(a, b, "nix-store {args:?}");
    };
    cmp(&["-qR", &drv]);
    cmp(&["-q", "--references", &drv]);
    cmp(&["-q", "--tree", &drv]);
    cmp(&["-q", "--graph", &drv]);
    cmp(&["-q", "--outputs", &drv]);
    cmp(&["-q", "--hash", &drv]);
    cmp(&["-q", "--size", &drv]);
    cmp(&["-q", "--deriver", &drv]);
    cmp(&["-q", "--binding", "weird", &drv]);
    cmp(&["--dump-db"]);
    let refs = ok_str(cppnix("nix-store").args(["--store", &store, "-q", "--references", &drv]));
    for r in refs.lines() {
        cmp(&["-q", "--referrers", r]);
        cmp(&["-q", "--referrers-closure", r]);
    }
    let cmp_nix = |args: &[&str], json: bool| {
        let a = ok_str(firn("nix").args(args).args(["--store", &store]));
        let b = ok_str(cppnix("nix").args(args).args(["--store", &store]));
        if json {
            let a: serde_json::Value = serde_json::from_str(&a).unwrap();
            let b: serde_json::Value = serde_json::from_str(&b).unwrap();
            assert_eq!(a, b, "nix {args:?}");
        } else {
            assert_eq!(a, b, "nix {args:?}");
        }
    };
    // (A `.drv` installable means its outputs to CppNix 2.8, so list the store instead.)
    cmp_nix(&["path-info", "--all"], false);
    cmp_nix(&["path-info", "-rsS", "--sigs", "--all"], false);
    cmp_nix(&["path-info", "--json", "--all"], true);
    cmp_nix(&["path-info", "-S", "--json", "--all"], true);
    let src = refs
        .lines()
        .find(|l| l.ends_with("src.txt"))
        .unwrap()
        .to_string();
    cmp_nix(&["path-info", "-r", &src], false);
    let a: serde_json::Value = serde_json::from_slice(&ok(firn("nix").args([
        "derivation",
        "show",
        "--store",
        &store,
        &drv,
    ])))
    .unwrap();
    let b: serde_json::Value = serde_json::from_slice(&ok(cppnix("nix").args([
        "show-derivation",
        "--store",
        &store,
        &drv,
    ])))
    .unwrap();
    assert_eq!(a, b);
}

#[test]
fn gc_agrees_with_cppnix_and_keeps_each_others_roots() {
    let tmp = tempfile::tempdir().unwrap();
    let store = store_dir(tmp.path(), "s");
    let drv = cppnix_instantiate(&store, tmp.path());
    let tree = tmp.path().join("tree");
    awkward_tree(&tree);
    let firn_added = ok_str(
        firn("nix-store")
            .args(["--store", &store, "--add"])
            .arg(&tree),
    )
    .trim()
    .to_string();
    let firn_root = ok_str(
        firn("nix-store")
            .args(["--store", &store, "--add"])
            .arg(tree.join("a")),
    )
    .trim()
    .to_string();
    let cpp_dead = ok_str(
        cppnix("nix-store")
            .args(["--store", &store, "--add"])
            .arg(tree.join("B")),
    )
    .trim()
    .to_string();
    // A root made the CppNix way (a symlink in gcroots) for the derivation, one for firn's path.
    let gcroots = Path::new(&store).join("nix/var/nix/gcroots");
    std::os::unix::fs::symlink(&drv, gcroots.join("drv-root")).unwrap();
    std::os::unix::fs::symlink(&firn_root, gcroots.join("firn-root")).unwrap();
    // An indirect root through a link outside gcroots.
    let result = tmp.path().join("result");
    std::os::unix::fs::symlink(&firn_added, &result).unwrap();
    std::fs::create_dir_all(gcroots.join("auto")).unwrap();
    std::os::unix::fs::symlink(&result, gcroots.join("auto/someroot")).unwrap();

    for flag in ["--print-dead", "--print-live"] {
        let a = lines(&ok_str(
            firn("nix-store").args(["--store", &store, "--gc", flag]),
        ));
        let b = lines(&ok_str(
            cppnix("nix-store").args(["--store", &store, "--gc", flag]),
        ));
        assert_eq!(a, b, "--gc {flag}");
    }
    let a = ok_str(firn("nix-store").args(["--store", &store, "--gc", "--print-roots"]));
    let b = ok_str(cppnix("nix-store").args(["--store", &store, "--gc", "--print-roots"]));
    assert_eq!(a, b);
    let dead = lines(&ok_str(cppnix("nix-store").args([
        "--store",
        &store,
        "--gc",
        "--print-dead",
    ])));
    assert!(dead.contains(&cpp_dead));
    let summary = ok_str(firn("nix-store").args(["--store", &store, "--gc"]));
    assert!(
        summary.starts_with(&format!("{} store paths deleted", dead.len())),
        "{summary}"
    );
    assert!(!Path::new(&store)
        .join(cpp_dead.trim_start_matches('/'))
        .exists());
    for p in [&drv, &firn_added, &firn_root] {
        ok(cppnix("nix-store").args(["--store", &store, "--check-validity", p]));
    }
    // CppNix's GC keeps firn's roots too, and the store stays consistent.
    ok(cppnix("nix-store").args(["--store", &store, "--gc"]));
    for p in [&drv, &firn_added, &firn_root] {
        ok(firn("nix-store").args(["--store", &store, "--check-validity", p]));
    }
    let out = cppnix("nix-store")
        .args(["--store", &store, "--verify", "--check-contents"])
        .output()
        .unwrap();
    assert!(out.status.success());
}

#[test]
fn delete_refuses_live_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let store = store_dir(tmp.path(), "s");
    let drv = cppnix_instantiate(&store, tmp.path());
    let refs = ok_str(cppnix("nix-store").args(["--store", &store, "-q", "--references", &drv]));
    let a_ref = refs.lines().next().unwrap().to_string();
    let out = firn("nix-store")
        .args(["--store", &store, "--delete", &a_ref])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("since it is still alive"));
    ok(firn("nix-store").args(["--store", &store, "--check-validity", &a_ref]));
    // The top derivation has no referrers and no roots: it goes.
    let out = ok_str(firn("nix-store").args(["--store", &store, "--delete", &drv]));
    assert!(out.starts_with("1 store paths deleted"), "{out}");
    let out = ok_str(cppnix("nix-store").args([
        "--store",
        &store,
        "--check-validity",
        "--print-invalid",
        &drv,
    ]));
    assert_eq!(out.trim(), drv);
}

#[test]
fn export_import_both_ways() {
    let tmp = tempfile::tempdir().unwrap();
    let a = store_dir(tmp.path(), "a");
    let drv = cppnix_instantiate(&a, tmp.path());
    let closure = ok_str(cppnix("nix-store").args(["--store", &a, "-qR", &drv]));
    let paths: Vec<&str> = closure.lines().collect();
    let exp_cpp = ok(cppnix("nix-store")
        .args(["--store", &a, "--export"])
        .args(&paths));
    let exp_firn = ok(firn("nix-store")
        .args(["--store", &a, "--export"])
        .args(&paths));
    assert!(exp_cpp == exp_firn, "export streams differ");
    // CppNix's export into a firn store, and firn's into a CppNix store.
    let b = store_dir(tmp.path(), "b");
    let out = run_with_input(
        firn("nix-store").args(["--store", &b, "--import"]),
        &exp_cpp,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        lines(&String::from_utf8_lossy(&out.stdout)),
        lines(&closure)
    );
    let out = cppnix("nix-store")
        .args(["--store", &b, "--verify", "--check-contents"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        ok_str(cppnix("nix-store").args(["--store", &b, "--dump-db"])),
        ok_str(cppnix("nix-store").args(["--store", &a, "--dump-db"]))
    );
    let c = store_dir(tmp.path(), "c");
    let out = run_with_input(
        cppnix("nix-store").args(["--store", &c, "--import"]),
        &exp_firn,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A corrupted stream registers nothing.
    let mut bad = exp_cpp.clone();
    let n = bad.len();
    bad[n / 2] ^= 0xff;
    let d = store_dir(tmp.path(), "d");
    // Whether the damage hits a file's bytes (undetectable: the stream carries no hash) or the
    // structure (an error), every path that did get registered verifies.
    let _ = run_with_input(firn("nix-store").args(["--store", &d, "--import"]), &bad);
    let v = cppnix("nix-store")
        .args(["--store", &d, "--verify", "--check-contents"])
        .output()
        .unwrap();
    assert!(v.status.success());
    // A stream cut short registers nothing from the cut path.
    let e = store_dir(tmp.path(), "e");
    let cut = &exp_cpp[..exp_cpp.len() / 3];
    let out = run_with_input(firn("nix-store").args(["--store", &e, "--import"]), cut);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("error:"));
    for p in String::from_utf8_lossy(&out.stdout).lines() {
        ok(cppnix("nix-store").args(["--store", &e, "--check-validity", p]));
    }
    let v = cppnix("nix-store")
        .args(["--store", &e, "--verify", "--check-contents"])
        .output()
        .unwrap();
    assert!(v.status.success());
}

#[test]
fn optimise_shares_links_with_cppnix() {
    let tmp = tempfile::tempdir().unwrap();
    let store = store_dir(tmp.path(), "s");
    let tree = tmp.path().join("tree");
    awkward_tree(&tree);
    let t2 = tmp.path().join("tree2");
    awkward_tree(&t2);
    std::fs::write(t2.join("extra"), "extra").unwrap();
    ok(firn("nix-store")
        .args(["--store", &store, "--add"])
        .arg(&tree));
    ok(firn("nix-store")
        .args(["--store", &store, "--add"])
        .arg(&t2));
    let copy = store_dir(tmp.path(), "copy");
    ok(std::process::Command::new("cp").args(["-a", &store, &copy]));
    let out = firn("nix-store")
        .args(["--store", &store, "--optimise"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("freed by hard-linking"));
    ok(cppnix("nix-store").args(["--store", &copy, "--optimise"]));
    let names = |s: &str| -> BTreeSet<String> {
        std::fs::read_dir(Path::new(s).join("nix/store/.links"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    assert_eq!(names(&store), names(&copy));
    let out = cppnix("nix-store")
        .args(["--store", &store, "--verify", "--check-contents"])
        .output()
        .unwrap();
    assert!(out.status.success());
}

#[test]
fn signatures_verify_across_implementations() {
    let tmp = tempfile::tempdir().unwrap();
    let store = store_dir(tmp.path(), "s");
    let sk = tmp.path().join("sk");
    let pk = tmp.path().join("pk");
    ok(cppnix("nix-store")
        .arg("--generate-binary-cache-key")
        .arg("test-1")
        .arg(&sk)
        .arg(&pk));
    // A path that is not content-addressed (imported), so only signatures can make it trusted.
    let src = store_dir(tmp.path(), "src");
    let p = ok_str(firn("nix-store").args(["--store", &src, "--add"]).arg(&pk))
        .trim()
        .to_string();
    let exported = ok(firn("nix-store").args(["--store", &src, "--export", &p]));
    let out = run_with_input(
        firn("nix-store").args(["--store", &store, "--import"]),
        &exported,
    );
    assert!(out.status.success());
    let out = firn("nix")
        .args([
            "store",
            "verify",
            "--store",
            &store,
            "--sigs-needed",
            "1",
            &p,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "an unsigned path is untrusted");
    ok(firn("nix")
        .args(["store", "sign", "--store", &store, "-k"])
        .arg(&sk)
        .arg(&p));
    let pubkey = std::fs::read_to_string(&pk).unwrap();
    ok(cppnix("nix").args([
        "store",
        "verify",
        "--store",
        &store,
        "--sigs-needed",
        "1",
        "--option",
        "trusted-public-keys",
        &pubkey,
        &p,
    ]));
    // The other way: firn's key, CppNix's signature, firn's verification.
    let sk2 = tmp.path().join("sk2");
    let pk2 = tmp.path().join("pk2");
    ok(firn("nix-store")
        .arg("--generate-binary-cache-key")
        .arg("test-2")
        .arg(&sk2)
        .arg(&pk2));
    ok(cppnix("nix")
        .args(["store", "sign", "--store", &store, "-k"])
        .arg(&sk2)
        .arg(&p));
    let pubkey2 = std::fs::read_to_string(&pk2).unwrap();
    ok(firn("nix").args([
        "store",
        "verify",
        "--store",
        &store,
        "--sigs-needed",
        "2",
        "--option",
        "trusted-public-keys",
        &format!("{pubkey} {pubkey2}"),
        &p,
    ]));
    // Without trusting the key, verification fails with exit code 2 (untrusted).
    let out = firn("nix")
        .args([
            "store",
            "verify",
            "--store",
            &store,
            "--sigs-needed",
            "1",
            "--option",
            "trusted-public-keys",
            "",
            &p,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    // Same key files format: CppNix converts firn's secret key to the same public key.
    let out = run_with_input(
        cppnix("nix").args(["key", "convert-secret-to-public"]),
        &std::fs::read(&sk2).unwrap(),
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), pubkey2.trim());
}
