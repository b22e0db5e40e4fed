//! Realisations in binary caches (`ca-derivations`), firn against CppNix 2.8: CppNix builds two
//! content-addressed derivations (one on top of the other) and copies them to a `file://`
//! cache, which writes `realisations/<hash>!out.doi`; firn, on an empty chroot store with that
//! cache as a substituter, substitutes both outputs instead of building them and records the
//! realisations. The other way round, firn's `nix copy` writes the same realisation files
//! (signed with the cache's key), which CppNix verifies (`nix copy --from`) and substitutes
//! from. A realisation whose signature does not verify is not taken: firn builds instead.
//! Over HTTP, `firn serve` serves a store's realisations to firn and to CppNix 2.8 (which asks
//! HTTP caches for them as it asks file caches), and both keep what they learnt in the shared
//! narinfo disk cache (`Realisations` table), so a second lookup does not reach the server.
//! `nix copy --to` an S3 bucket (s3s-fs) and an HTTP server taking `PUT` writes CppNix's
//! realisation files, which firn substitutes from. (CppNix 2.8 on Debian has no S3 support: it
//! reads the bucket's directory as a `file://` cache.)
//! The builders are the host's static busybox.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

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
  c = mk "ca-c" "echo never-in-a-cache > $out";
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

/// `firn serve` of a store with `ca-derivations` on, signing with `key`, and the requests it
/// answered (from its debug log: `PEER METHOD PATH STATUS`); killed when dropped.
struct Serve {
    child: Child,
    port: u16,
    log: Arc<Mutex<Vec<String>>>,
}

impl Serve {
    fn start(store: &str, key: &str) -> Serve {
        let mut child = firn("nix")
            .args(FEATURE)
            .args(["serve", "--store", store, "--listen", "127.0.0.1:0"])
            .args(["--secret-key-file", key, "-vv"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting firn serve");
        let stderr = child.stderr.take().expect("stderr is piped");
        let mut lines = BufReader::new(stderr).lines();
        let mut port = 0;
        for line in lines.by_ref() {
            let line = line.expect("reading the server's log");
            if let Some(addr) = line.strip_prefix("firn serve: listening on http://") {
                port = addr
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .expect("a port");
                break;
            }
        }
        assert!(port != 0, "firn serve did not start");
        let log = Arc::new(Mutex::new(Vec::new()));
        let l = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                l.lock().expect("the log").push(line);
            }
        });
        Serve { child, port, log }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// How many requests for realisation files it has answered.
    fn realisation_requests(&self) -> usize {
        // (The log is written before the response is: by the time a client is done, its
        // requests are there.)
        std::thread::sleep(std::time::Duration::from_millis(200));
        let log = self.log.lock().expect("the log");
        log.iter()
            .filter(|l| l.contains(" GET /realisations/"))
            .count()
    }

    /// `GET path`: status and body.
    fn get(&self, path: &str) -> (u16, String) {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("connecting");
        write!(
            c,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .expect("sending");
        let mut out = String::new();
        c.read_to_string(&mut out).expect("reading");
        let (head, body) = out.split_once("\r\n\r\n").expect("a response");
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status");
        (status, body.to_string())
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Env {
    /// [`Env::build_from`] with the narinfo disk cache in `xdg` (`XDG_CACHE_HOME`).
    fn build_cached(
        &self,
        firn_side: bool,
        store: &str,
        cache: &str,
        xdg: &str,
        extra: &[&str],
    ) -> Command {
        let mut c = self.build_from(firn_side, store, cache, extra);
        c.env("XDG_CACHE_HOME", self.dir.join(xdg));
        c
    }
}

/// Substituted without a builder running, with both realisations recorded.
fn assert_substituted(store: &str, want: &str, r: (bool, String, String)) {
    let (success, stdout, stderr) = r;
    assert!(success, "failed:\n{stderr}");
    assert_eq!(stdout.trim(), want);
    assert!(!has_build_logs(store), "a builder ran:\n{stderr}");
    assert_eq!(realisation_rows(store).len(), 2, "{stderr}");
}

#[test]
fn realisations_over_http_from_firn_serve() {
    need_busybox();
    let e = env();
    // CppNix's own cache of the same outputs, for comparison.
    let (cpp_dir, cpp_uri) = e.cache("cpp-cache");
    let want = cppnix_cache(&e, &cpp_uri);
    let server = Serve::start(&e.store("cpp"), &e.secret);
    let url = server.url();

    // The files are CppNix's byte for byte (CppNix signed them with the same key at build
    // time; ed25519 signatures are deterministic).
    let files = doi_files(&cpp_dir);
    assert_eq!(files.len(), 2);
    for (name, text) in &files {
        assert_eq!(
            server.get(&format!("/realisations/{name}")),
            (200, text.clone())
        );
    }
    let absent = format!("/realisations/sha256:{}!out.doi", "0".repeat(64));
    assert_eq!(server.get(&absent).0, 404);
    assert_eq!(server.get("/realisations/sha256:00!out.doi").0, 400);

    // firn substitutes both outputs over HTTP, asking once for each realisation.
    let before = server.realisation_requests();
    let s = e.store("firn");
    assert_substituted(
        &s,
        &want,
        run(&mut e.build_cached(true, &s, &url, "xdg", &[])),
    );
    let asked = server.realisation_requests();
    assert_eq!(asked, before + 2);
    // Again into an empty store: the realisations come from the disk cache (the NARs from
    // the server).
    let t = e.store("firn-again");
    assert_substituted(
        &t,
        &want,
        run(&mut e.build_cached(true, &t, &url, "xdg", &[])),
    );
    assert_eq!(server.realisation_requests(), asked);
    // A realisation the cache does not have is remembered as missing.
    let dry = |name: &str| {
        let u = e.store(name);
        let subs = ["--option", "substituters", &url];
        let keys = ["--option", "trusted-public-keys", &e.public];
        let mut c = e.build(
            true,
            &u,
            "c",
            &[&subs[..], &keys[..], &["--dry-run"]].concat(),
        );
        c.env("XDG_CACHE_HOME", e.dir.join("xdg"));
        let (success, _, stderr) = run(&mut c);
        assert!(success, "{stderr}");
        assert!(stderr.contains("will be built"), "{stderr}");
    };
    dry("dry-1");
    assert_eq!(server.realisation_requests(), asked + 1);
    dry("dry-2");
    assert_eq!(server.realisation_requests(), asked + 1);

    // CppNix 2.8 asks HTTP caches for realisations too: it substitutes from firn serve.
    let u = e.store("cpp-subst");
    assert_substituted(
        &u,
        &want,
        run(&mut e.build_cached(false, &u, &url, "xdg-cpp", &[])),
    );
    let with_cpp = server.realisation_requests();
    assert_eq!(with_cpp, asked + 1 + 2);
    // And it reads the realisations firn put in the shared disk cache: no request.
    let v = e.store("cpp-shared");
    assert_substituted(
        &v,
        &want,
        run(&mut e.build_cached(false, &v, &url, "xdg", &[])),
    );
    assert_eq!(server.realisation_requests(), with_cpp);
}

#[test]
fn realisations_through_s3_and_http_put_caches() {
    need_busybox();
    let e = env();
    let (cpp_dir, cpp_uri) = e.cache("cpp-cache");
    let want = cppnix_cache(&e, &cpp_uri);
    let s = e.store("firn");
    assert_eq!(ok_str(&mut e.build(true, &s, "b", &[])).trim(), want);
    let aws = |c: &mut Command| {
        c.env("AWS_ACCESS_KEY_ID", "firn-test-ak")
            .env("AWS_SECRET_ACCESS_KEY", "firn-test-sk")
            .env("HOME", &e.dir)
            .env("XDG_CACHE_HOME", e.dir.join("xdg"));
    };

    // S3: `nix copy --to` writes the realisations (CppNix's files, byte for byte) ...
    let s3 = start_s3(&e.dir, "cache");
    let bucket = format!(
        "s3://cache?endpoint=127.0.0.1:{}&scheme=http&region=eu-test-1",
        s3.port
    );
    let mut c = e.copy_to(true, &s, &format!("{bucket}&secret-key={}", e.secret));
    aws(&mut c);
    ok(&mut c);
    assert_eq!(doi_files(&cpp_dir).len(), 2);
    assert_eq!(doi_files(&s3.root.join("cache")), doi_files(&cpp_dir));
    // ... which firn substitutes from,
    let t = e.store("from-s3");
    let mut c = e.build_from(true, &t, &bucket, &[]);
    aws(&mut c);
    assert_substituted(&t, &want, run(&mut c));
    // and CppNix too (the bucket's directory as a file:// cache).
    let u = e.store("cpp-from-s3");
    let dir_uri = format!("file://{}", s3.root.join("cache").display());
    assert_substituted(&u, &want, run(&mut e.build_from(false, &u, &dir_uri, &[])));

    // HTTP with PUT: the same.
    let web = e.dir.join("web");
    std::fs::create_dir_all(&web).expect("mkdir");
    let http = format!("http://127.0.0.1:{}", put_server(web.clone()));
    let mut c = e.copy_to(true, &s, &format!("{http}?secret-key={}", e.secret));
    c.env("XDG_CACHE_HOME", e.dir.join("xdg"));
    ok(&mut c);
    assert_eq!(doi_files(&web), doi_files(&cpp_dir));
    let v = e.store("from-http");
    assert_substituted(
        &v,
        &want,
        run(&mut e.build_cached(true, &v, &http, "xdg-http", &[])),
    );
}
