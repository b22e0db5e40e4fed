//! Binary caches against CppNix 2.8, both ways: CppNix copies and substitutes from caches firn
//! wrote (xz, zstd, bzip2, none; signed), firn copies and substitutes from caches CppNix
//! wrote, signatures made by one verify in the other; and bad caches (unsigned, wrongly signed,
//! corrupted NARs, lying narinfos, malicious NARs, URLs leaving the cache) are refused with
//! nothing registered. S3 buckets (s3s-fs): copies both ways, multipart uploads, and
//! credentials from `~/.aws/credentials` profiles.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// A store with a small closure: `plain`, an input-addressed path (no `CA`, so it needs a
/// signature) registered with `--register-validity`, referring to a text file (`note`) that
/// refers to an awkward source tree. Returns `plain` and `note`.
fn make_closure(tmp: &Path, store: &str) -> (String, String) {
    let tree = tmp.join("tree");
    awkward_tree(&tree);
    let e = format!(
        r#"let tree = builtins.path {{ path = {}; name = "tree"; }};
           in builtins.toFile "note" "see ${{tree}}""#,
        tree.display()
    );
    let note = ok_str(firn("nix-instantiate").args([
        "--store",
        store,
        "--eval",
        "--read-write-mode",
        "-E",
        &e,
    ]));
    let note = note.trim().trim_matches('"').to_string();
    // The input-addressed path: a directory naming `note`, put in place and registered.
    let plain = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-plain".to_string();
    let real = Path::new(store).join(&plain[1..]);
    std::fs::create_dir_all(real.join("share")).expect("mkdir");
    std::fs::write(real.join("share/ref"), format!("uses {note}\n")).expect("write");
    std::fs::write(real.join("data"), vec![7u8; 100_000]).expect("write");
    let hash = ok_str(
        cppnix("nix-hash")
            .args(["--type", "sha256", "--base32"])
            .arg(&real),
    );
    let mut dump = cppnix("nix-store");
    dump.args(["--dump"]).arg(&real);
    let size = ok(&mut dump).len();
    let reg = format!("{plain}\nsha256:{}\n{size}\n\n1\n{note}\n", hash.trim());
    let out = run_with_input(
        // (CppNix 2.8 looks at the logical path here, so chroot stores need firn.)
        firn("nix-store").args(["--store", store, "--register-validity", "--hash-given"]),
        reg.as_bytes(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (plain, note)
}

fn keygen(tmp: &Path, name: &str) -> (String, String) {
    let sk = tmp.join(format!("{name}.sk"));
    let pk = tmp.join(format!("{name}.pk"));
    ok(cppnix("nix-store")
        .args(["--generate-binary-cache-key", name])
        .arg(&sk)
        .arg(&pk));
    (
        sk.to_string_lossy().into_owned(),
        std::fs::read_to_string(&pk).expect("read pk"),
    )
}

fn closure(store: &str, p: &str) -> Vec<String> {
    let mut v: Vec<String> = ok_str(cppnix("nix-store").args(["--store", store, "-qR", p]))
        .lines()
        .map(String::from)
        .collect();
    v.sort();
    v
}

fn hashes(store: &str, paths: &[String]) -> Vec<String> {
    paths
        .iter()
        .map(|p| ok_str(cppnix("nix-store").args(["--store", store, "-q", "--hash", p])))
        .collect()
}

fn assert_same_closure(a: &str, b: &str, root: &str) {
    let ca = closure(a, root);
    assert_eq!(ca, closure(b, root));
    assert_eq!(hashes(a, &ca), hashes(b, &ca));
    ok(cppnix("nix-store").args(["--store", b, "--verify", "--check-contents"]));
}

#[test]
fn cppnix_reads_caches_firn_wrote() {
    let tmp = tempfile::tempdir().expect("tmp");
    let a = store_dir(tmp.path(), "a");
    let (root, txt) = make_closure(tmp.path(), &a);
    let (sk, pk) = keygen(tmp.path(), "firn-test-1");
    for compression in ["xz", "zstd", "bzip2", "none"] {
        let cache = tmp.path().join(format!("cache-{compression}"));
        let uri = format!(
            "file://{}?compression={compression}&secret-key={sk}",
            cache.display()
        );
        ok(firn("nix").args(["copy", "--store", &a, "--to", &uri, &root]));
        // Every narinfo of the closure is there, with a NAR of the right extension.
        let narinfos = std::fs::read_dir(&cache)
            .expect("cache dir")
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".narinfo"))
            })
            .count();
        assert_eq!(narinfos, closure(&a, &root).len(), "{compression}");

        // CppNix copies the closure out of it, checking firn's signatures.
        let b = store_dir(tmp.path(), &format!("b-{compression}"));
        let base = format!("file://{}", cache.display());
        ok(cppnix("nix").args([
            "copy",
            "--from",
            &base,
            "--store",
            &b,
            "--option",
            "trusted-public-keys",
            &pk,
            &root,
        ]));
        assert_same_closure(&a, &b, &root);
        // The signatures travelled and verify with CppNix.
        ok(cppnix("nix").args([
            "store",
            "verify",
            "--store",
            &b,
            "--sigs-needed",
            "1",
            "-r",
            "--option",
            "trusted-public-keys",
            &pk,
            &root,
        ]));
        // CppNix substitutes from it during a realisation.
        let c = store_dir(tmp.path(), &format!("c-{compression}"));
        ok(cppnix("nix-store").args([
            "--store",
            &c,
            "-r",
            &txt,
            "--option",
            "substituters",
            &base,
            "--option",
            "trusted-public-keys",
            &pk,
        ]));
        assert_same_closure(&a, &c, &txt);
    }
}

#[test]
fn firn_reads_caches_cppnix_wrote() {
    let tmp = tempfile::tempdir().expect("tmp");
    let a = store_dir(tmp.path(), "a");
    let (root, txt) = make_closure(tmp.path(), &a);
    let (sk, pk) = keygen(tmp.path(), "cppnix-test-1");
    for compression in ["xz", "bzip2", "none"] {
        let cache = tmp.path().join(format!("cache-{compression}"));
        let uri = format!(
            "file://{}?compression={compression}&secret-key={sk}",
            cache.display()
        );
        ok(cppnix("nix").args(["copy", "--store", &a, "--to", &uri, &root]));
        let base = format!("file://{}", cache.display());

        let b = store_dir(tmp.path(), &format!("b-{compression}"));
        ok(firn("nix").args([
            "copy",
            "--from",
            &base,
            "--store",
            &b,
            "--option",
            "trusted-public-keys",
            &pk,
            &root,
        ]));
        assert_same_closure(&a, &b, &root);
        // CppNix's signatures verify in firn.
        ok(firn("nix").args([
            "store",
            "verify",
            "--store",
            &b,
            "--sigs-needed",
            "1",
            "-r",
            "--option",
            "trusted-public-keys",
            &pk,
            &root,
        ]));

        // firn substitutes from it when realising a path it does not have.
        let c = store_dir(tmp.path(), &format!("c-{compression}"));
        let out = firn("nix-store")
            .args([
                "--store",
                &c,
                "-r",
                &txt,
                "--option",
                "substituters",
                &base,
                "--option",
                "trusted-public-keys",
                &pk,
            ])
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert!(
            err.contains(&format!("copying path '{txt}' from '{base}'")),
            "{err}"
        );
        assert_same_closure(&a, &c, &txt);
    }
}

#[test]
fn caches_firn_writes_and_reads() {
    // firn → cache → firn, with the `.ls` listing, and `nix copy` between two local stores.
    let tmp = tempfile::tempdir().expect("tmp");
    let a = store_dir(tmp.path(), "a");
    let (root, _) = make_closure(tmp.path(), &a);
    let cache = tmp.path().join("cache");
    let uri = format!(
        "file://{}?write-nar-listing=1&compression=zstd",
        cache.display()
    );
    ok(firn("nix").args(["copy", "--store", &a, "--to", &uri, &root]));
    // Copying again uploads nothing new.
    let before = std::fs::read_dir(cache.join("nar"))
        .expect("nar dir")
        .count();
    ok(firn("nix").args(["copy", "--store", &a, "--to", &uri, &root]));
    assert_eq!(
        before,
        std::fs::read_dir(cache.join("nar"))
            .expect("nar dir")
            .count()
    );
    let tree_path = closure(&a, &root)
        .into_iter()
        .find(|p| p.ends_with("-tree"))
        .expect("tree in closure");
    let hash = &tree_path["/nix/store/".len().."/nix/store/".len() + 32];
    let ls = std::fs::read_to_string(cache.join(format!("{hash}.ls"))).expect("listing");
    assert!(
        ls.starts_with("{\"version\":1,\"root\":{\"type\":\"directory\""),
        "{ls}"
    );

    let b = store_dir(tmp.path(), "b");
    ok(firn("nix").args([
        "copy",
        "--no-check-sigs",
        "--from",
        &format!("file://{}", cache.display()),
        "--store",
        &b,
        &root,
    ]));
    assert_same_closure(&a, &b, &root);

    // Local to local (a chroot store as the destination).
    let c = store_dir(tmp.path(), "c");
    ok(firn("nix").args(["copy", "--no-check-sigs", "--store", &a, "--to", &c, &root]));
    assert_same_closure(&a, &c, &root);
}

/// A cache with the closure of `root`, written by firn with `compression=none`.
fn plain_cache(tmp: &Path, a: &str, root: &str, sk: Option<&str>) -> std::path::PathBuf {
    let cache = tmp.join("cache");
    let mut uri = format!("file://{}?compression=none", cache.display());
    if let Some(sk) = sk {
        uri.push_str(&format!("&secret-key={sk}"));
    }
    ok(firn("nix").args(["copy", "--store", a, "--to", &uri, root]));
    cache
}

fn narinfo_file(cache: &Path, p: &str) -> std::path::PathBuf {
    let hash = &p["/nix/store/".len().."/nix/store/".len() + 32];
    cache.join(format!("{hash}.narinfo"))
}

fn copy_from(cache: &Path, store: &str, p: &str, extra: &[&str]) -> (bool, String) {
    let out = firn("nix")
        .args([
            "copy",
            "--from",
            &format!("file://{}", cache.display()),
            "--store",
            store,
        ])
        .args(extra)
        .arg(p)
        .output()
        .expect("run");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn signatures_are_required() {
    let tmp = tempfile::tempdir().expect("tmp");
    let a = store_dir(tmp.path(), "a");
    let (root, _) = make_closure(tmp.path(), &a);
    let (sk, pk) = keygen(tmp.path(), "signer-1");
    let (_, other_pk) = keygen(tmp.path(), "other-1");
    let cache = plain_cache(tmp.path(), &a, &root, Some(&sk));
    let base = format!("file://{}", cache.display());

    // Signed, but not by a key we trust: refused, nothing registered.
    let b = store_dir(tmp.path(), "b");
    let (okay, err) = copy_from(
        &cache,
        &b,
        &root,
        &["--option", "trusted-public-keys", &other_pk],
    );
    assert!(!okay);
    assert!(err.contains("lacks a valid signature"), "{err}");
    assert!(!is_valid(&b, &root));
    // Substitution skips the untrusted cache and says why.
    let out = firn("nix-store")
        .args([
            "--store",
            &b,
            "-r",
            &root,
            "--option",
            "substituters",
            &base,
            "--option",
            "trusted-public-keys",
            &other_pk,
        ])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("does not have a valid signature"), "{err}");
    assert!(!is_valid(&b, &root));

    // A narinfo changed after signing (its references dropped) no longer verifies.
    let ni = narinfo_file(&cache, &root);
    let signed = std::fs::read_to_string(&ni).expect("narinfo");
    let tampered: String = signed
        .lines()
        .map(|l| {
            if l.starts_with("References: ") {
                "References: ".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    std::fs::write(&ni, tampered).expect("write");
    let (okay, err) = copy_from(&cache, &b, &root, &["--option", "trusted-public-keys", &pk]);
    assert!(!okay);
    assert!(err.contains("lacks a valid signature"), "{err}");
    assert!(!is_valid(&b, &root));
    std::fs::write(&ni, signed).expect("restore");

    // The right key: accepted.
    let (okay, err) = copy_from(&cache, &b, &root, &["--option", "trusted-public-keys", &pk]);
    assert!(okay, "{err}");
    assert_same_closure(&a, &b, &root);
    // And without signatures at all, only with --no-check-sigs.
    let unsigned = tmp.path().join("unsigned");
    ok(firn("nix").args([
        "copy",
        "--store",
        &a,
        "--to",
        &format!("file://{}", unsigned.display()),
        &root,
    ]));
    let c = store_dir(tmp.path(), "c");
    let (okay, _) = copy_from(
        &unsigned,
        &c,
        &root,
        &["--option", "trusted-public-keys", &pk],
    );
    assert!(!okay);
    assert!(!is_valid(&c, &root));
    let (okay, err) = copy_from(&unsigned, &c, &root, &["--no-check-sigs"]);
    assert!(okay, "{err}");
    assert!(is_valid(&c, &root));
}

#[test]
fn corrupt_caches_are_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let a = store_dir(tmp.path(), "a");
    let (root, txt) = make_closure(tmp.path(), &a);
    let cache = plain_cache(tmp.path(), &a, &root, None);
    let ni_path = narinfo_file(&cache, &txt);
    let original = std::fs::read_to_string(&ni_path).expect("narinfo");
    let url = original
        .lines()
        .find_map(|l| l.strip_prefix("URL: "))
        .expect("URL")
        .to_string();
    let nar_file = cache.join(&url);
    let nar = std::fs::read(&nar_file).expect("nar");
    let fresh = |name: &str| store_dir(tmp.path(), name);

    // 1. A NAR whose bytes differ from the narinfo's hash.
    let mut bad = nar.clone();
    let i = bad.windows(4).position(|w| w == b"see ").expect("contents") + 1;
    bad[i] ^= 0x20;
    std::fs::write(&nar_file, &bad).expect("write");
    let s = fresh("s1");
    let (okay, err) = copy_from(&cache, &s, &txt, &["--no-check-sigs"]);
    assert!(!okay);
    assert!(err.contains("hash mismatch"), "{err}");
    assert!(!is_valid(&s, &txt));
    // As a substitute of a realisation: one error saying once what failed, with the cache.
    let s = fresh("s1r");
    let out = firn("nix-store")
        .args([
            "--store",
            &s,
            "-r",
            &txt,
            "--option",
            "require-sigs",
            "false",
        ])
        .args([
            "--option",
            "substituters",
            &format!("file://{}", cache.display()),
        ])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let line = err
        .lines()
        .find(|l| l.contains("hash mismatch"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        line.starts_with(&format!("error: substituting '{txt}' from 'file://")),
        "{line}"
    );
    assert_eq!(line.matches("substituting '").count(), 1, "{line}");
    assert!(!is_valid(&s, &txt));
    std::fs::write(&nar_file, &nar).expect("restore");

    // 2. A narinfo that lies about the NAR's size.
    let lied = original
        .lines()
        .map(|l| match l.strip_prefix("NarSize: ") {
            Some(n) => format!("NarSize: {}", n.parse::<u64>().expect("size") + 8),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    std::fs::write(&ni_path, lied).expect("write");
    let s = fresh("s2");
    let (okay, err) = copy_from(&cache, &s, &txt, &["--no-check-sigs"]);
    assert!(!okay, "{err}");
    assert!(!is_valid(&s, &txt));

    // 3. A narinfo for another path under this path's hash.
    let other = closure(&a, &root)
        .into_iter()
        .find(|p| p.ends_with("-tree"))
        .expect("tree");
    let foreign = std::fs::read_to_string(narinfo_file(&cache, &other)).expect("narinfo");
    std::fs::write(&ni_path, foreign).expect("write");
    let s = fresh("s3");
    let (okay, err) = copy_from(&cache, &s, &txt, &["--no-check-sigs"]);
    assert!(!okay);
    assert!(err.contains("is for path"), "{err}");
    assert!(!is_valid(&s, &txt));

    // 4. A URL that leaves the cache.
    let escaping = original.replace(&format!("URL: {url}"), "URL: ../../../../etc/passwd");
    std::fs::write(&ni_path, escaping).expect("write");
    let s = fresh("s4");
    let (okay, err) = copy_from(&cache, &s, &txt, &["--no-check-sigs"]);
    assert!(!okay);
    assert!(err.contains("invalid file name"), "{err}");
    assert!(!is_valid(&s, &txt));

    // 5. A malicious NAR (an entry named `..`) with a narinfo that matches it.
    let evil = evil_nar();
    let evil_hash = ok_str(
        cppnix("nix-hash")
            .args(["--type", "sha256", "--flat", "--base32"])
            .arg({
                let p = tmp.path().join("evil.nar");
                std::fs::write(&p, &evil).expect("write");
                p
            }),
    );
    std::fs::write(cache.join("nar/evil.nar"), &evil).expect("write");
    let mut ni = String::new();
    for l in original.lines() {
        if l.starts_with("URL: ") {
            ni.push_str("URL: nar/evil.nar\n");
        } else if l.starts_with("NarHash: ") {
            ni.push_str(&format!("NarHash: sha256:{}\n", evil_hash.trim()));
        } else if l.starts_with("NarSize: ") {
            ni.push_str(&format!("NarSize: {}\n", evil.len()));
        } else if l.starts_with("FileHash: ")
            || l.starts_with("FileSize: ")
            || l.starts_with("CA: ")
        {
        } else {
            ni.push_str(l);
            ni.push('\n');
        }
    }
    std::fs::write(&ni_path, ni).expect("write");
    let s = fresh("s5");
    let (okay, err) = copy_from(&cache, &s, &txt, &["--no-check-sigs"]);
    assert!(!okay);
    assert!(!is_valid(&s, &txt));
    assert!(!tmp.path().join("pwned").exists(), "{err}");
    std::fs::write(&ni_path, &original).expect("restore");

    // After all that, the intact cache still works.
    let s = fresh("s6");
    let (okay, err) = copy_from(&cache, &s, &txt, &["--no-check-sigs"]);
    assert!(okay, "{err}");
    assert_same_closure(&a, &s, &txt);
}

/// A NAR of a directory with an entry named `..` holding a file `pwned`.
fn evil_nar() -> Vec<u8> {
    fn s(out: &mut Vec<u8>, x: &[u8]) {
        out.extend_from_slice(&(x.len() as u64).to_le_bytes());
        out.extend_from_slice(x);
        out.resize(out.len().div_ceil(8) * 8, 0);
    }
    let mut o = Vec::new();
    for t in [
        &b"nix-archive-1"[..],
        b"(",
        b"type",
        b"directory",
        b"entry",
        b"(",
        b"name",
        b"..",
        b"node",
        b"(",
        b"type",
        b"directory",
        b"entry",
        b"(",
        b"name",
        b"pwned",
        b"node",
        b"(",
        b"type",
        b"regular",
        b"contents",
        b"x",
        b")",
        b")",
        b")",
        b")",
        b")",
    ] {
        s(&mut o, t);
    }
    o
}

#[allow(dead_code)]
fn unused(_: Command) {}

#[test]
fn queries_on_caches_match_cppnix() {
    let tmp = tempfile::tempdir().expect("tmp");
    let a = store_dir(tmp.path(), "a");
    let (root, _) = make_closure(tmp.path(), &a);
    let (sk, pk) = keygen(tmp.path(), "q-1");
    let (sk2, pk2) = keygen(tmp.path(), "q-2");
    let cache = tmp.path().join("cache");
    let uri = format!("file://{}?secret-key={sk}", cache.display());
    ok(firn("nix").args(["copy", "--store", &a, "--to", &uri, &root]));
    let base = format!("file://{}", cache.display());
    for args in [
        vec!["path-info", "-r", "--sigs", "-S", "-s"],
        vec!["path-info", "-r", "--json", "-S"],
        vec!["path-info", "--json"],
        vec!["path-info", "--all", "--json"],
        vec!["path-info", "--all", "-r", "--json", "-S"],
        vec!["path-info", "--all"],
    ] {
        // `--all` lists the cache's narinfos instead of taking paths.
        let paths: &[&str] = if args.contains(&"--all") {
            &[]
        } else {
            &[&root]
        };
        let mine = ok_str(firn("nix").args(&args).args(["--store", &base]).args(paths));
        let theirs = ok_str(
            cppnix("nix")
                .args(&args)
                .args(["--store", &base])
                .args(paths),
        );
        if args.contains(&"--json") {
            let m: serde_json::Value = serde_json::from_str(&mine).expect("json");
            let t: serde_json::Value = serde_json::from_str(&theirs).expect("json");
            assert_eq!(m, t, "{args:?}");
        } else if args.contains(&"--all") {
            // The same paths. CppNix lists a cache's paths as `<hash>-x` (NixOS/nix#8473), so
            // its topological sort finds no references among them and it prints them by
            // hash; firn knows their names and puts references first, as for any other query.
            let mut m: Vec<&str> = mine.lines().collect();
            let mut t: Vec<&str> = theirs.lines().collect();
            m.sort_unstable();
            t.sort_unstable();
            assert_eq!(m, t, "{args:?}");
        } else {
            assert_eq!(mine, theirs, "{args:?}");
        }
    }
    // A second signature added by firn verifies with CppNix, and the other way round.
    ok(firn("nix").args(["store", "sign", "--store", &base, "-k", &sk2, "-r", &root]));
    // `nix store verify` of `paths` in the cache by both tools, `needed` signatures from `keys`.
    let both_verify = |paths: &[&str], needed: &str, keys: &str| {
        for tool in [cppnix("nix"), firn("nix")] {
            let mut c = tool;
            c.args(["store", "verify", "--store", &base, "--sigs-needed", needed]);
            ok(c.args(["--option", "trusted-public-keys", keys])
                .args(paths));
        }
    };
    both_verify(&["-r", &root], "2", &format!("{pk} {pk2}"));
    // `--all` signs and verifies every path the cache lists.
    let (sk3, pk3) = keygen(tmp.path(), "q-3");
    ok(firn("nix").args(["store", "sign", "--store", &base, "-k", &sk3, "--all"]));
    both_verify(&["--all"], "1", &pk3);
    // With a key missing, two signatures cannot be found.
    let out = firn("nix")
        .args([
            "store",
            "verify",
            "--store",
            &base,
            "-r",
            "--sigs-needed",
            "2",
            "--option",
            "trusted-public-keys",
            &pk,
            &root,
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn s3_caches() {
    let tmp = tempfile::tempdir().expect("tmp");
    let a = store_dir(tmp.path(), "a");
    let (root, _) = make_closure(tmp.path(), &a);
    let (sk, pk) = keygen(tmp.path(), "s3-test-1");
    let s3 = start_s3(tmp.path(), "cache");
    let base = format!(
        "s3://cache?endpoint=127.0.0.1:{}&scheme=http&region=eu-test-1",
        s3.port
    );
    let with_creds = |c: &mut Command, secret: &str| {
        c.env("AWS_ACCESS_KEY_ID", "firn-test-ak")
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env("HOME", tmp.path())
            .env("XDG_CACHE_HOME", tmp.path().join("xdg"));
    };

    // A wrong secret is refused by the server: nothing is written.
    let mut c = firn("nix");
    with_creds(&mut c, "wrong");
    let out = c
        .args(["copy", "--store", &a, "--to", &base, &root])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("HTTP error 403"), "{err}");

    // The seeds' flow: sign, copy to the bucket (multipart for the 5 MiB file), then build in
    // an empty store and watch the paths come from the bucket.
    // (Signed in the store with the deprecated `nix sign-paths` the seeds use; the narinfos
    // carry the store's signatures.)
    ok(firn("nix").args(["sign-paths", "--store", &a, "-k", &sk, "-r", &root]));
    let mut c = firn("nix");
    with_creds(&mut c, "firn-test-sk");
    ok(c.args([
        "copy",
        "--store",
        &a,
        "--to",
        &format!("{base}&compression=none&multipart-upload=true&buffer-size=5242880"),
        &root,
    ]));
    let b = store_dir(tmp.path(), "b");
    let mut c = firn("nix-store");
    with_creds(&mut c, "firn-test-sk");
    let out = c
        .args([
            "--store",
            &b,
            "-r",
            &root,
            "--option",
            "substituters",
            &base,
            "--option",
            "trusted-public-keys",
            &pk,
        ])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!("copying path '{root}' from 's3://cache'")),
        "{err}"
    );
    assert_same_closure(&a, &b, &root);

    // `nix copy --all` lists the bucket: every path it has (all of `a`).
    let all = store_dir(tmp.path(), "all");
    let mut c = firn("nix");
    with_creds(&mut c, "firn-test-sk");
    ok(c.args(["copy", "--all", "--from", &base, "--store", &all])
        .args(["--option", "trusted-public-keys", &pk]));
    assert_eq!(all_paths(&all), all_paths(&a));

    // s3s-fs keeps objects as files, so the bucket is also a file:// cache: CppNix (built
    // without S3 support on Debian) reads what firn uploaded, signatures included.
    let c_store = store_dir(tmp.path(), "c");
    ok(cppnix("nix").args([
        "copy",
        "--from",
        &format!("file://{}", s3.root.join("cache").display()),
        "--store",
        &c_store,
        "--option",
        "trusted-public-keys",
        &pk,
        &root,
    ]));
    assert_same_closure(&a, &c_store, &root);
}

#[test]
fn ls_and_cat_on_caches_match_cppnix() {
    let tmp = tempfile::tempdir().expect("tmp");
    let a = store_dir(tmp.path(), "a");
    let (root, _) = make_closure(tmp.path(), &a);
    let tree = closure(&a, &root)
        .into_iter()
        .find(|p| p.ends_with("-tree"))
        .expect("tree");
    let cache = tmp.path().join("cache");
    ok(firn("nix").args([
        "copy",
        "--store",
        &a,
        "--to",
        &format!("file://{}", cache.display()),
        &root,
    ]));
    let base = format!("file://{}", cache.display());
    for args in [
        vec!["store", "ls", "-lR"],
        vec!["store", "ls", "--json", "-R"],
        vec!["store", "ls", "-d"],
    ] {
        let mine = ok(firn("nix").args(&args).args(["--store", &base, &tree]));
        let theirs = ok(cppnix("nix").args(&args).args(["--store", &base, &tree]));
        assert_eq!(
            String::from_utf8_lossy(&mine),
            String::from_utf8_lossy(&theirs),
            "{args:?}"
        );
    }
    for file in ["sub/exe", "big.bin", "a"] {
        let p = format!("{tree}/{file}");
        let mine = ok(firn("nix").args(["store", "cat", "--store", &base, &p]));
        let theirs = ok(cppnix("nix").args(["store", "cat", "--store", &base, &p]));
        assert!(mine == theirs, "{file}");
    }
    let out = firn("nix")
        .args(["store", "cat", "--store", &base, &format!("{tree}/sub")])
        .output()
        .expect("run");
    assert!(!out.status.success());
}

/// Every valid path of `store` with its NAR hash, sorted (what `--all` copies, and how it
/// arrived).
fn all_paths(store: &str) -> Vec<String> {
    let paths = ok_str(cppnix("nix").args(["path-info", "--all", "--store", store]));
    with_nar_hashes(store, paths.lines())
}

/// `nix copy --all --from file://...` copies every path the cache has, references first.
/// CppNix 2.8 lists the narinfos too, but names the paths `<hash>-x`, which defeats its own
/// ordering: it copies in hash order and fails on a path whose reference comes later
/// (NixOS/nix#8473). So the oracle is CppNix copying the listed paths by name, and CppNix's
/// `--all` where hash order happens to work (paths without references). An HTTP cache cannot
/// be listed: the same error as CppNix's.
#[test]
fn copy_all_from_caches() {
    let tmp = tempfile::tempdir().expect("tmp");
    let a = store_dir(tmp.path(), "a");
    let (root, _) = make_closure(tmp.path(), &a);
    // A path no other refers to.
    let lone_file = tmp.path().join("lone");
    std::fs::write(&lone_file, "on its own\n").expect("write");
    let lone = ok_str(
        cppnix("nix-store")
            .args(["--store", &a, "--add"])
            .arg(&lone_file),
    );
    let lone = lone.trim().to_string();
    let tree = closure(&a, &root)
        .into_iter()
        .find(|p| p.ends_with("-tree"))
        .expect("the tree in the closure");
    let (sk, pk) = keygen(tmp.path(), "all-1");
    let cache = tmp.path().join("cache");
    let base = format!("file://{}", cache.display());
    ok(firn("nix").args([
        "copy",
        "--store",
        &a,
        "--to",
        &format!("{base}?secret-key={sk}"),
        &root,
        &lone,
    ]));
    let everything = all_paths(&a);
    assert_eq!(everything.len(), 4, "{everything:?}");

    // firn: every path, checked against the trusted key.
    let b = store_dir(tmp.path(), "b");
    ok(firn("nix")
        .args(["copy", "--all", "--from", &base, "--store", &b])
        .args(["--option", "trusted-public-keys", &pk]));
    assert_eq!(all_paths(&b), everything);
    ok(cppnix("nix-store").args(["--store", &b, "--verify", "--check-contents"]));
    // Unsigned paths are refused, as without --all.
    let unsigned = store_dir(tmp.path(), "unsigned");
    let out = firn("nix")
        .args(["copy", "--all", "--from", &base, "--store", &unsigned])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(!is_valid(&unsigned, &root));

    // CppNix, given the same paths by name, makes the same store.
    let c = store_dir(tmp.path(), "c");
    let names: Vec<&str> = everything
        .iter()
        .map(|l| l.split(' ').next().expect("a path"))
        .collect();
    ok(cppnix("nix")
        .args(["copy", "--from", &base, "--store", &c])
        .args(["--option", "trusted-public-keys", &pk])
        .args(&names));
    assert_eq!(all_paths(&c), everything);
    // CppNix's own --all trips over the order (`plain`'s hash part sorts first).
    let out = cppnix("nix")
        .args(["copy", "--all", "--from", &base, "--store"])
        .arg(store_dir(tmp.path(), "cppnix-all"))
        .args(["--option", "trusted-public-keys", &pk])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("is not valid"),
        "{err}"
    );

    // A cache of paths without references: CppNix's --all works, and firn's gives the same.
    let flat = tmp.path().join("flat");
    let flat_base = format!("file://{}", flat.display());
    ok(firn("nix").args(["copy", "--store", &a, "--to", &flat_base, &tree, &lone]));
    let mine = store_dir(tmp.path(), "flat-firn");
    let theirs = store_dir(tmp.path(), "flat-cppnix");
    ok(firn("nix").args(["copy", "--all", "--from", &flat_base, "--store", &mine]));
    ok(cppnix("nix").args(["copy", "--all", "--from", &flat_base, "--store", &theirs]));
    assert_eq!(all_paths(&mine), all_paths(&theirs));
    assert_eq!(all_paths(&mine).len(), 2);

    // Over HTTP there is no listing.
    let port = put_server(cache.clone());
    let url = format!("http://127.0.0.1:{port}");
    let expected =
        format!("error: operation 'queryAllValidPaths' is not supported by store '{url}'");
    for (who, mut c) in [("firn", firn("nix")), ("cppnix", cppnix("nix"))] {
        let out = c
            .env("XDG_CACHE_HOME", tmp.path().join(format!("xdg-{who}")))
            .args(["copy", "--all", "--from", &url, "--store"])
            .arg(store_dir(tmp.path(), &format!("http-{who}")))
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{who}: {err}");
        assert!(err.contains(&expected), "{who}: {err}");
    }
}

#[test]
fn http_caches_are_written_with_put() {
    let tmp = tempfile::tempdir().expect("tmp");
    let a = store_dir(tmp.path(), "a");
    let (root, _) = make_closure(tmp.path(), &a);
    let (sk, pk) = keygen(tmp.path(), "put-1");
    let dir = tmp.path().join("webroot");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let port = put_server(dir.clone());
    let url = format!("http://127.0.0.1:{port}");
    // An empty server: firn creates nix-cache-info, then uploads NARs and narinfos.
    ok(firn("nix")
        .env("XDG_CACHE_HOME", tmp.path().join("xdg"))
        .args([
            "copy",
            "--store",
            &a,
            "--to",
            &format!("{url}?secret-key={sk}&compression=zstd"),
            &root,
        ]));
    assert!(dir.join("nix-cache-info").exists());
    // CppNix reads what arrived on the server's disk as a file:// cache.
    let b = store_dir(tmp.path(), "b");
    ok(cppnix("nix").args([
        "copy",
        "--from",
        &format!("file://{}", dir.display()),
        "--store",
        &b,
        "--option",
        "trusted-public-keys",
        &pk,
        &root,
    ]));
    assert_same_closure(&a, &b, &root);
    // And firn reads it back over HTTP.
    let c = store_dir(tmp.path(), "c");
    ok(firn("nix")
        .env("XDG_CACHE_HOME", tmp.path().join("xdg"))
        .args([
            "copy",
            "--from",
            &url,
            "--store",
            &c,
            "--option",
            "trusted-public-keys",
            &pk,
            &root,
        ]));
    assert_same_closure(&a, &c, &root);
}

/// `nix-store --verify --check-contents --repair` and `--repair-path` fetch damaged paths
/// again from the substituters and swap the contents in; without a cache that has them, the
/// damage is reported and stays.
#[test]
fn repair_from_substituters() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().expect("tmp");
    let a = store_dir(tmp.path(), "a");
    let (root, note) = make_closure(tmp.path(), &a);
    let (sk, pk) = keygen(tmp.path(), "repair-1");
    let cache = plain_cache(tmp.path(), &a, &root, Some(&sk));
    let base = format!("file://{}", cache.display());
    let damage = |p: &str, file: &str| {
        let real = Path::new(&a).join(p.trim_start_matches('/'));
        let target = if file.is_empty() {
            real.clone()
        } else {
            real.join(file)
        };
        let _ = std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o755));
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        std::fs::write(&target, "damaged\n").expect("damage");
    };
    damage(&root, "data");
    damage(&note, "");
    let verify = |extra: &[&str]| {
        firn("nix-store")
            .args(["--store", &a, "--verify", "--check-contents"])
            .args(extra)
            .output()
            .expect("run")
    };
    let out = verify(&[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("was modified"));
    // No substituter: reported, not fixed.
    let out = verify(&["--repair"]);
    assert!(!out.status.success());
    // With the cache: both repaired.
    let out = verify(&[
        "--repair",
        "--option",
        "substituters",
        &base,
        "--option",
        "trusted-public-keys",
        &pk,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains(&format!("repairing path '{root}'")), "{err}");
    ok(cppnix("nix-store").args(["--store", &a, "--verify", "--check-contents"]));
    // --repair-path on a damaged path.
    damage(&root, "data");
    ok(firn("nix-store").args([
        "--store",
        &a,
        "--repair-path",
        &root,
        "--option",
        "substituters",
        &base,
        "--option",
        "trusted-public-keys",
        &pk,
    ]));
    ok(cppnix("nix-store").args(["--store", &a, "--verify", "--check-contents"]));
}

const LEAF: &str = "/nix/store/11111111111111111111111111111111-leaf";
const MID: &str = "/nix/store/22222222222222222222222222222222-mid";
const TOP: &str = "/nix/store/33333333333333333333333333333333-top";

/// The source store for the `--substitute-on-destination` tests: `top` → `mid` → `leaf`,
/// input-addressed, each saying it comes from the source.
fn substitution_source(store: &str) {
    register_files(
        store,
        &[
            (LEAF, "leaf from the source\n", &[]),
            (MID, "mid from the source\n", &[LEAF]),
            (TOP, "top from the source\n", &[MID]),
        ],
    );
}

/// A signed file:// cache with other versions of `leaf` and `top` (but not `mid`, so `top`
/// cannot be substituted: its reference can only come from the source). Returns its URI.
fn substitution_cache(tmp: &Path, sk: &str) -> String {
    let b = store_dir(tmp, "cache-src");
    register_files(
        &b,
        &[
            (LEAF, "leaf from the cache\n", &[]),
            (MID, "mid from the cache\n", &[LEAF]),
            (TOP, "top from the cache\n", &[MID]),
        ],
    );
    let cache = tmp.join("subst-cache");
    let uri = format!("file://{}", cache.display());
    ok(firn("nix").args([
        "copy",
        "--store",
        &b,
        "--to",
        &format!("{uri}?compression=xz&secret-key={sk}"),
        TOP,
    ]));
    std::fs::remove_file(narinfo_file(&cache, MID)).expect("removing mid's narinfo");
    uri
}

fn contents(store: &str, p: &str) -> String {
    std::fs::read_to_string(Path::new(store).join(&p[1..])).expect("reading a store path")
}

#[test]
fn copy_substitutes_on_destination() {
    let tmp = tempfile::tempdir().expect("tmp");
    let a = store_dir(tmp.path(), "a");
    substitution_source(&a);
    let (sk, pk) = keygen(tmp.path(), "subst-1");
    let uri = substitution_cache(tmp.path(), &sk);
    let subst_opts = [
        "--option",
        "substituters",
        &uri,
        "--option",
        "trusted-public-keys",
        &pk,
    ];

    // Without -s everything comes from the source.
    let plain = store_dir(tmp.path(), "plain");
    ok(firn("nix")
        .args([
            "copy",
            "--no-check-sigs",
            "--store",
            &a,
            "--to",
            &plain,
            TOP,
        ])
        .args(subst_opts));
    for p in [LEAF, MID, TOP] {
        assert!(contents(&plain, p).ends_with("from the source\n"), "{p}");
    }

    // With -s: `leaf` from the cache; `top` is in the cache too, but `mid` is not, so
    // both come from the source.
    let c = store_dir(tmp.path(), "c");
    let out = firn("nix")
        .args([
            "copy",
            "-v",
            "-s",
            "--no-check-sigs",
            "--store",
            &a,
            "--to",
            &c,
            TOP,
        ])
        .args(subst_opts)
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(contents(&c, LEAF), "leaf from the cache\n");
    assert_eq!(contents(&c, MID), "mid from the source\n");
    assert_eq!(contents(&c, TOP), "top from the source\n");
    assert!(
        err.contains(&format!("copying path '{LEAF}' from '{uri}'")),
        "{err}"
    );
    // The registered hashes are those of what is there, and CppNix agrees.
    ok(cppnix("nix-store").args(["--store", &c, "--verify", "--check-contents"]));
    let cached_leaf = std::fs::read_to_string(narinfo_file(
        Path::new(uri.trim_start_matches("file://")),
        LEAF,
    ))
    .expect("leaf's narinfo");
    let nar_hash = ok_str(cppnix("nix-store").args(["--store", &c, "-q", "--hash", LEAF]));
    assert!(
        cached_leaf.contains(&format!("NarHash: {}", nar_hash.trim())),
        "{cached_leaf}\n{nar_hash}"
    );

    // Untrusted (no key): nothing is substituted.
    let d = store_dir(tmp.path(), "d");
    ok(firn("nix")
        .args([
            "copy",
            "-s",
            "--no-check-sigs",
            "--store",
            &a,
            "--to",
            &d,
            TOP,
        ])
        .args(["--option", "substituters", &uri]));
    assert_eq!(contents(&d, LEAF), "leaf from the source\n");

    // A substitution that fails (the cached NAR is damaged) is a warning; the path is copied
    // from the source instead.
    let cache_dir = Path::new(uri.trim_start_matches("file://"));
    let leaf_info = std::fs::read_to_string(narinfo_file(cache_dir, LEAF)).expect("narinfo");
    let url = leaf_info
        .lines()
        .find_map(|l| l.strip_prefix("URL: "))
        .expect("URL");
    std::fs::write(cache_dir.join(url), b"not xz at all").expect("damaging the NAR");
    let e = store_dir(tmp.path(), "e");
    let out = firn("nix")
        .args([
            "copy",
            "-s",
            "--no-check-sigs",
            "--store",
            &a,
            "--to",
            &e,
            TOP,
        ])
        .args(subst_opts)
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("warning:"), "{err}");
    assert_eq!(contents(&e, LEAF), "leaf from the source\n");
    ok(cppnix("nix-store").args(["--store", &e, "--verify", "--check-contents"]));
}

/// Unpadded URL-safe base64, as s3s-fs names its metadata files.
fn base64_url(data: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(char::from(A[(n >> (18 - 6 * i)) as usize & 63]));
        }
    }
    out
}

/// The value of `field` in a narinfo.
fn narinfo_field(info: &str, field: &str) -> String {
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}: ")))
        .unwrap_or_else(|| panic!("no {field} in {info}"))
        .to_string()
}

/// `multipart-upload=true&buffer-size=5242880`: a 12 MiB uncompressed NAR goes up in three
/// parts (s3s-fs records the multipart ETag, `<md5>-3`, and keeps no part behind), and CppNix
/// 2.8 substitutes the path from what landed in the bucket, with the same NAR hash.
#[test]
fn s3_multipart_uploads() {
    let tmp = tempfile::tempdir().expect("tmp");
    let a = store_dir(tmp.path(), "a");
    let file = tmp.path().join("noise");
    std::fs::write(&file, noise(12 << 20, 0x9e37_79b9_7f4a_7c15)).expect("write");
    let p = ok_str(firn("nix-store").args(["--store", &a, "--add"]).arg(&file));
    let p = p.trim().to_string();
    let (sk, pk) = keygen(tmp.path(), "s3-multipart-1");
    let s3 = start_s3(tmp.path(), "cache");
    let uri = format!(
        "s3://cache?endpoint=127.0.0.1:{}&scheme=http&region=eu-test-1&compression=none\
         &multipart-upload=true&buffer-size=5242880&secret-key={sk}",
        s3.port
    );
    ok(firn("nix")
        .env("AWS_ACCESS_KEY_ID", "firn-test-ak")
        .env("AWS_SECRET_ACCESS_KEY", "firn-test-sk")
        .env("HOME", tmp.path())
        .env("XDG_CACHE_HOME", tmp.path().join("xdg"))
        .args(["copy", "--store", &a, "--to", &uri, &p]));

    let bucket = s3.root.join("cache");
    let base = p.rsplit('/').next().expect("a store path");
    let info = std::fs::read_to_string(bucket.join(format!("{}.narinfo", &base[..32])))
        .expect("the narinfo is in the bucket");
    assert_eq!(narinfo_field(&info, "Compression"), "none", "{info}");
    let nar_key = narinfo_field(&info, "URL");
    let nar_size: u64 = narinfo_field(&info, "NarSize").parse().expect("a size");
    assert!(nar_size > 2 * 5242880, "{info}");
    assert_eq!(
        std::fs::metadata(bucket.join(&nar_key))
            .expect("the NAR")
            .len(),
        nar_size
    );
    let meta = s3.root.join(format!(
        ".bucket-{}.object-{}.internal.json",
        base64_url(b"cache"),
        base64_url(nar_key.as_bytes())
    ));
    let meta = std::fs::read_to_string(&meta).expect("s3s-fs's metadata of the NAR");
    let etag: serde_json::Value = serde_json::from_str(&meta).expect("JSON");
    let etag = etag["e_tag"].as_str().expect("an ETag").trim_matches('"');
    assert!(etag.ends_with("-3"), "not a three-part upload: {meta}");
    let leftovers: Vec<String> = std::fs::read_dir(&s3.root)
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".upload"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // CppNix (without S3 support on Debian) substitutes from the bucket's files.
    let b = store_dir(tmp.path(), "b");
    ok(cppnix("nix-store")
        .env("XDG_CACHE_HOME", tmp.path().join("xdg-cppnix"))
        .args(["--store", &b, "-r", &p])
        .args(["--option", "substituters"])
        .arg(format!("file://{}", bucket.display()))
        .args(["--option", "trusted-public-keys", &pk]));
    assert_same_closure(&a, &b, &p);
    assert_eq!(
        ok_str(cppnix("nix-store").args(["--store", &b, "-q", "--hash", &p])).trim(),
        narinfo_field(&info, "NarHash")
    );
}

/// S3 credentials from `~/.aws/credentials` alone (no `AWS_*` variables): `profile=NAME`
/// picks the valid section of two, `AWS_PROFILE` stands in when the URL names none, and the
/// `default` section (wrong here) is what is used otherwise, refused by the server.
#[test]
fn s3_credentials_from_profiles() {
    let tmp = tempfile::tempdir().expect("tmp");
    let a = store_dir(tmp.path(), "a");
    let home = tmp.path().join("home");
    std::fs::create_dir_all(home.join(".aws")).expect("mkdir");
    std::fs::write(
        home.join(".aws/credentials"),
        "[default]\naws_access_key_id = firn-test-ak\naws_secret_access_key = wrong\n\n\
         # the one s3s-fs accepts\n[firn]\naws_access_key_id = firn-test-ak\n\
         aws_secret_access_key = firn-test-sk\n",
    )
    .expect("write credentials");
    let (sk, pk) = keygen(tmp.path(), "s3-profile-1");
    let s3 = start_s3(tmp.path(), "one");
    std::fs::create_dir_all(s3.root.join("two")).expect("mkdir bucket");
    let uri = |bucket: &str, extra: &str| {
        format!(
            "s3://{bucket}?endpoint=127.0.0.1:{}&scheme=http&region=eu-test-1&secret-key={sk}{extra}",
            s3.port
        )
    };
    let nix = |xdg: &str, aws_profile: Option<&str>| {
        let mut c = firn("nix");
        for v in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
            "AWS_SHARED_CREDENTIALS_FILE",
            "AWS_CONFIG_FILE",
        ] {
            c.env_remove(v);
        }
        if let Some(p) = aws_profile {
            c.env("AWS_PROFILE", p);
        }
        c.env("HOME", &home)
            .env("XDG_CACHE_HOME", tmp.path().join(xdg));
        c
    };
    let add = |name: &str| {
        let f = tmp.path().join(name);
        std::fs::write(&f, format!("{name}\n")).expect("write");
        ok_str(firn("nix-store").args(["--store", &a, "--add"]).arg(&f))
            .trim()
            .to_string()
    };
    let (p1, p2) = (add("by-profile-param"), add("by-aws-profile"));

    // No profile named: `default`, whose secret is wrong.
    let out = nix("xdg-default", None)
        .args(["copy", "--store", &a, "--to", &uri("one", ""), &p1])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "copied with the default profile");
    assert!(err.contains("HTTP error 403"), "{err}");

    // `profile=firn` in the URL (it wins over AWS_PROFILE), both ways.
    ok(nix("xdg-param", Some("default")).args([
        "copy",
        "--store",
        &a,
        "--to",
        &uri("one", "&profile=firn"),
        &p1,
    ]));
    let b = store_dir(tmp.path(), "b");
    ok(nix("xdg-param-from", None)
        .args([
            "copy",
            "--from",
            &uri("one", "&profile=firn"),
            "--store",
            &b,
        ])
        .args(["--option", "trusted-public-keys", &pk, &p1]));
    assert_same_closure(&a, &b, &p1);

    // AWS_PROFILE=firn, no `profile=`, both ways.
    ok(nix("xdg-env", Some("firn")).args(["copy", "--store", &a, "--to", &uri("two", ""), &p2]));
    let c = store_dir(tmp.path(), "c");
    ok(nix("xdg-env-from", Some("firn"))
        .args(["copy", "--from", &uri("two", ""), "--store", &c])
        .args(["--option", "trusted-public-keys", &pk, &p2]));
    assert_same_closure(&a, &c, &p2);
    assert!(s3
        .root
        .join(format!("two/{}.narinfo", &p2[11..43]))
        .exists());
    // Reads are signed with the same credentials: the default profile's are refused.
    let d = store_dir(tmp.path(), "d");
    let out = nix("xdg-default-from", None)
        .args(["copy", "--from", &uri("two", ""), "--store", &d])
        .args(["--option", "trusted-public-keys", &pk, &p2])
        .output()
        .expect("run");
    assert!(
        !out.status.success(),
        "read the bucket with the default profile"
    );
    assert!(!is_valid(&d, &p2));
}

/// `nix copy` says what it copies as CppNix 2.8 does: `copying N paths...` (also when none
/// is missing), then a line per path: `to` the cache from the local store, `from` it into
/// one (the per-path lines compared in path order: both copy in parallel).
#[test]
fn copy_messages_agree_with_cppnix() {
    let tmp = tempfile::tempdir().expect("tmp");
    let a = store_dir(tmp.path(), "a");
    let (root, _) = make_closure(tmp.path(), &a);
    let mut seen = Vec::new();
    for side in [false, true] {
        let tool = || if side { firn("nix") } else { cppnix("nix") };
        let name = side_name(side);
        let uri = format!(
            "file://{}",
            tmp.path().join(format!("cache-{name}")).display()
        );
        let b = store_dir(tmp.path(), &format!("b-{name}"));
        let lines = |c: &mut Command| -> Vec<String> {
            let o = c.output().expect("running nix copy");
            let err = String::from_utf8_lossy(&o.stderr).replace(&uri, "CACHE");
            assert!(o.status.success(), "{err}");
            let mut lines: Vec<String> = err.lines().map(String::from).collect();
            if lines.len() > 1 {
                lines[1..].sort();
            }
            lines
        };
        let to = lines(tool().args(["copy", "--store", &a, "--to", &uri, &root]));
        let again = lines(tool().args(["copy", "--store", &a, "--to", &uri, &root]));
        let from = lines(tool().args([
            "copy",
            "--no-check-sigs",
            "--store",
            &b,
            "--from",
            &uri,
            &root,
        ]));
        seen.push((to, again, from));
    }
    assert_eq!(seen[1], seen[0]);
    assert_eq!(seen[0].1, vec!["copying 0 paths...".to_string()]);
    assert!(
        seen[0].0[0].starts_with("copying ") && seen[0].0.len() > 2,
        "{seen:?}"
    );
}
