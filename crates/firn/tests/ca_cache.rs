//! Realisations in binary caches (`ca-derivations`), firn against CppNix 2.8: CppNix builds two
//! content-addressed derivations (one on top of the other) and copies them to a `file://`
//! cache, which writes `realisations/<hash>!out.doi`; firn, on an empty chroot store with that
//! cache as a substituter, substitutes both outputs instead of building them and records the
//! realisations. The other way round, firn's `nix copy` writes the same realisation files
//! (signed with the cache's key), which CppNix verifies (`nix copy --from`) and substitutes
//! from. A realisation whose signature does not verify is not taken: firn builds instead.
//! The builders are the host's static busybox.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

const FEATURE: [&str; 2] = ["--extra-experimental-features", "ca-derivations"];

const EXPR: &str = r#"
let
  bb = builtins.path { path = /usr/bin; name = "busybox"; filter = p: t: baseNameOf p == "busybox"; };
  mk = name: script: derivation {
    inherit name;
    system = "x86_64-linux";
    builder = "${bb}/busybox";
    args = [ "sh" "-c" script ];
    __contentAddressed = true;
  };
in rec {
  a = mk "ca-a" "mkdir $out; echo hello > $out/f; echo $out > $out/self";
  b = mk "ca-b" "mkdir $out; echo ${a} > $out/ref; cat ${a}/f > $out/g";
}
"#;

struct Env {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    expr: String,
    secret: String,
    public: String,
}

fn env() -> Env {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    let expr = dir.join("e.nix");
    std::fs::write(&expr, EXPR).expect("writing the expression");
    let secret = dir.join("sk");
    let key = ok(cppnix("nix").args(["key", "generate-secret", "--key-name", "cache-1"]));
    std::fs::write(&secret, &key).expect("writing the key");
    let public = ok_str(
        cppnix("nix")
            .args(["key", "convert-secret-to-public"])
            .stdin(std::fs::File::open(&secret).expect("opening the key")),
    );
    Env {
        _tmp: tmp,
        expr: expr.to_string_lossy().into_owned(),
        secret: secret.to_string_lossy().into_owned(),
        public: public.trim().to_string(),
        dir,
    }
}

impl Env {
    fn store(&self, name: &str) -> String {
        store_dir(&self.dir, name)
    }

    fn cache(&self, name: &str) -> (PathBuf, String) {
        let d = self.dir.join(name);
        let uri = format!("file://{}", d.display());
        (d, uri)
    }

    /// `nix-build` of attribute `attr` on `store` (firn's sandboxed, as CppNix's default).
    fn build(&self, firn_side: bool, store: &str, attr: &str, opts: &[&str]) -> Command {
        let mut c = if firn_side {
            firn("nix-build")
        } else {
            cppnix("nix-build")
        };
        c.args(FEATURE).args(["--store", store]);
        if firn_side {
            c.args(["--option", "sandbox", "true"]);
        }
        c.args([&self.expr, "-A", attr, "--no-out-link"]).args(opts);
        c
    }

    /// The same, with `cache` as the only substituter and its key trusted.
    fn build_from(&self, firn_side: bool, store: &str, cache: &str, extra: &[&str]) -> Command {
        let mut opts = vec![
            "--option",
            "substituters",
            cache,
            "--option",
            "trusted-public-keys",
            &self.public,
        ];
        opts.extend_from_slice(extra);
        self.build(firn_side, store, "b", &opts)
    }

    /// `nix copy` of attribute `b` from `store` to `to`.
    fn copy_to(&self, firn_side: bool, store: &str, to: &str) -> Command {
        let mut c = if firn_side {
            firn("nix")
        } else {
            cppnix("nix")
        };
        c.args(FEATURE)
            .args(["--extra-experimental-features", "nix-command"])
            .args(["copy", "--store", store, "--to", to, "-f", &self.expr, "b"]);
        c
    }
}

fn run(c: &mut Command) -> (bool, String, String) {
    let out = c.output().expect("run");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `drvPath!outputName outputPath` of each row of a store's `Realisations` table, sorted.
fn realisation_rows(store: &str) -> Vec<String> {
    let db = rusqlite::Connection::open(Path::new(store).join("nix/var/nix/db/db.sqlite"))
        .expect("opening the database");
    let mut st = db
        .prepare(
            "select drvPath||'!'||outputName||' '||path from Realisations \
             join ValidPaths on ValidPaths.id = outputPath",
        )
        .expect("preparing");
    let mut rows: Vec<String> = st
        .query_map([], |r| r.get(0))
        .expect("querying")
        .collect::<Result<_, _>>()
        .expect("reading rows");
    rows.sort();
    rows
}

/// The realisation files of a cache: name → contents.
fn doi_files(cache: &Path) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = std::fs::read_dir(cache.join("realisations"))
        .map(|d| {
            d.map(|e| {
                let e = e.expect("reading the directory");
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read_to_string(e.path()).expect("reading a realisation"),
                )
            })
            .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Whether a build log was written (a builder ran) in `store`.
fn has_build_logs(store: &str) -> bool {
    let d = Path::new(store).join("nix/var/log/nix/drvs");
    std::fs::read_dir(d).is_ok_and(|mut r| r.next().is_some())
}

/// CppNix builds (signing its realisations with `secret-key-files`, as it does locally) and
/// copies to a cache; returns the output path of `b`.
fn cppnix_cache(e: &Env, cache: &str) -> String {
    let s = e.store("cpp");
    let out = ok_str(&mut e.build(false, &s, "b", &["--option", "secret-key-files", &e.secret]));
    ok(&mut e.copy_to(false, &s, &format!("{cache}?secret-key={}", e.secret)));
    out.trim().to_string()
}

#[test]
fn firn_substitutes_realisations_cppnix_wrote() {
    need_busybox();
    let e = env();
    let (dir, uri) = e.cache("cache");
    let want = cppnix_cache(&e, &uri);
    assert_eq!(
        doi_files(&dir).len(),
        2,
        "CppNix wrote a realisation per output"
    );

    let s = e.store("firn");
    let (success, stdout, stderr) = run(&mut e.build_from(true, &s, &uri, &[]));
    assert!(success, "firn failed:\n{stderr}");
    assert_eq!(stdout.trim(), want);
    assert!(!stderr.contains("building '"), "firn built:\n{stderr}");
    assert!(stderr.contains("copying path"), "{stderr}");
    assert!(!has_build_logs(&s), "a builder ran");
    // The realisations recorded are CppNix's (same hashes, same paths).
    let cpp_rows = realisation_rows(&e.store("cpp"));
    let rows = realisation_rows(&s);
    assert_eq!(rows.len(), 2, "{rows:?}");
    for r in &rows {
        assert!(cpp_rows.contains(r), "{r} not in {cpp_rows:?}");
    }
    // Built again: nothing to do.
    let (success, stdout, stderr) = run(&mut e.build_from(true, &s, &uri, &[]));
    assert!(success && stdout.trim() == want, "{stderr}");
    assert!(!stderr.contains("copying path"), "{stderr}");
}

#[test]
fn cppnix_reads_the_realisations_firn_wrote() {
    need_busybox();
    let e = env();
    // The same realisations, built by CppNix and copied by it, for comparison.
    let (cpp_dir, cpp_uri) = e.cache("cpp-cache");
    let want = cppnix_cache(&e, &cpp_uri);

    let s = e.store("firn");
    let out = ok_str(&mut e.build(true, &s, "b", &[]));
    assert_eq!(out.trim(), want);
    let (dir, uri) = e.cache("firn-cache");
    ok(&mut e.copy_to(true, &s, &format!("{uri}?secret-key={}", e.secret)));
    // Byte for byte CppNix's files: ed25519 signatures are deterministic, and CppNix signed
    // its realisations with the same key when it built them.
    assert_eq!(doi_files(&dir), doi_files(&cpp_dir));

    // CppNix verifies the signatures when it copies realisations into its store.
    let t = e.store("cpp-copy");
    ok(cppnix("nix")
        .args(FEATURE)
        .args(["copy", "--store", &t, "--from", &uri, "-f", &e.expr, "b"])
        .args(["--option", "trusted-public-keys", &e.public]));
    let (copied, built) = (realisation_rows(&t), realisation_rows(&s));
    assert_eq!(copied.len(), 2, "{copied:?}");
    for r in &copied {
        assert!(built.contains(r), "{r} not in {built:?}");
    }

    // CppNix substitutes from firn's cache instead of building.
    let u = e.store("cpp-subst");
    let (success, stdout, stderr) = run(&mut e.build_from(false, &u, &uri, &[]));
    assert!(success, "CppNix failed:\n{stderr}");
    assert_eq!(stdout.trim(), want);
    assert!(!has_build_logs(&u), "CppNix built:\n{stderr}");
    assert_eq!(realisation_rows(&u).len(), 2);
}

#[test]
fn a_realisation_with_a_bad_signature_is_not_taken() {
    need_busybox();
    let e = env();
    let (dir, uri) = e.cache("cache");
    let want = cppnix_cache(&e, &uri);
    // Point b's realisation's signature at another realisation: it no longer verifies.
    let files = doi_files(&dir);
    let sig_of = |text: &str| -> String {
        let v: serde_json::Value = serde_json::from_str(text).expect("JSON");
        v["signatures"][0]
            .as_str()
            .expect("a signature")
            .to_string()
    };
    let (a_name, a_text) = files
        .iter()
        .find(|(_, t)| t.contains("\"dependentRealisations\":{}"))
        .expect("a's realisation");
    let (b_name, b_text) = files
        .iter()
        .find(|(n, _)| n != a_name)
        .expect("b's realisation");
    let forged = b_text.replace(&sig_of(b_text), &sig_of(a_text));
    assert_ne!(&forged, b_text);
    std::fs::write(dir.join("realisations").join(b_name), forged).expect("writing");

    // Refused: b is built (a, whose realisation is good, is substituted).
    let s = e.store("firn");
    let (success, stdout, stderr) = run(&mut e.build_from(true, &s, &uri, &[]));
    assert!(success, "firn failed:\n{stderr}");
    assert_eq!(stdout.trim(), want);
    assert!(
        stderr.contains("does not have a valid signature for realisation"),
        "{stderr}"
    );
    assert!(stderr.contains("building '"), "b was not built:\n{stderr}");
    assert!(has_build_logs(&s));

    // Without require-sigs it is taken.
    let t = e.store("firn-nosigs");
    let (success, stdout, stderr) =
        run(&mut e.build_from(true, &t, &uri, &["--option", "require-sigs", "false"]));
    assert!(success, "firn failed:\n{stderr}");
    assert_eq!(stdout.trim(), want);
    assert!(!has_build_logs(&t), "firn built:\n{stderr}");
}
