//! `builtins.fetchTree` against CppNix 2.8 (run with `--extra-experimental-features flakes`),
//! each on its own store and fetcher cache: every input type (`path`, `tarball` over
//! `file://` and `http://`, `git` local, bare, with `ref`/`rev`/`shallow`/`submodules`/
//! `allRefs`, dirty), as attribute sets and as URLs, gives the same attributes (compared as
//! JSON) and a store path with the same NAR hash; a `narHash` that is right makes a second
//! evaluation use the store path without fetching. The current manual's forms that 2.8 lacks
//! (`path:/x`, `tarball+file://`, `file+file://`, `type = "file"`) are compared with what 2.8
//! gives for the same thing. Bad input (unknown type, missing `url` or `type`, `narHash`
//! mismatch, bad URLs, `name`, relative paths) fails in both, and firn adds nothing to its
//! store. The fetcher cache (`fetcher-cache-v1.sqlite`) is shared: downloads are not repeated
//! within the TTL, expired entries are revalidated with `If-None-Match`, and firn and CppNix
//! use each other's entries (tarballs and Git revisions).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use common::*;

// ---------------------------------------------------------------------------------------------
// Fixtures

const DATE1: &str = "2021-03-04T05:06:07Z";
const DATE2: &str = "2022-08-09T10:11:12Z";
const DATE3: &str = "2023-01-02T03:04:05Z";

/// A repository with two commits on `main` and one on `other`; returns the commit ids.
fn make_repo(dir: &Path) -> (String, String, String) {
    std::fs::create_dir_all(dir.join("sub")).expect("mkdir");
    git(dir, &["init", "-q", "-b", "main"], DATE1);
    std::fs::write(dir.join("README"), "first\n").expect("write");
    std::fs::write(dir.join("sub/data"), "deep\n").expect("write");
    std::fs::write(dir.join("run.sh"), "#!/bin/sh\necho hi\n").expect("write");
    std::fs::set_permissions(dir.join("run.sh"), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    std::os::unix::fs::symlink("sub/data", dir.join("link")).expect("symlink");
    git(dir, &["add", "-A"], DATE1);
    git(dir, &["commit", "-q", "-m", "first"], DATE1);
    let first = git(dir, &["rev-parse", "HEAD"], DATE1);
    std::fs::write(dir.join("README"), "second\n").expect("write");
    git(dir, &["commit", "-q", "-am", "second"], DATE2);
    let second = git(dir, &["rev-parse", "HEAD"], DATE2);
    git(dir, &["checkout", "-q", "-b", "other", &first], DATE3);
    std::fs::write(dir.join("other"), "other\n").expect("write");
    git(dir, &["add", "-A"], DATE3);
    git(dir, &["commit", "-q", "-m", "other"], DATE3);
    let other = git(dir, &["rev-parse", "HEAD"], DATE3);
    git(dir, &["checkout", "-q", "main"], DATE3);
    (first, second, other)
}

/// A tar archive of a small tree under one top-level directory (`wrap`) or not.
fn tarball(wrap: bool) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let prefix = if wrap { "proj-1.0/" } else { "" };
    if wrap {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_size(0);
        h.set_mode(0o755);
        h.set_mtime(1_600_000_123);
        h.set_cksum();
        b.append_data(&mut h, "proj-1.0/", &[][..]).expect("dir");
    }
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
    b.into_inner().expect("finish")
}

/// One request the server saw: its path, its `If-None-Match`, the status sent.
type Hit = (String, Option<String>, u16);

/// An HTTP/1.1 server for `files` that sends an `ETag` (and `304` to a matching
/// `If-None-Match`), recording every request.
fn etag_server(files: Vec<(&'static str, Vec<u8>)>) -> (u16, Arc<Mutex<Vec<Hit>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = log.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut reader = BufReader::new(conn.try_clone().expect("clone"));
            let mut first = String::new();
            if reader.read_line(&mut first).is_err() {
                continue;
            }
            let mut inm = None;
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                if let Some((k, v)) = line.split_once(':') {
                    if k.eq_ignore_ascii_case("if-none-match") {
                        inm = Some(v.trim().to_string());
                    }
                }
                line.clear();
            }
            // The query is not part of the file's name (2.8 sends `?narHash=...` along).
            let target = first.split_whitespace().nth(1).unwrap_or("");
            let path = target.split('?').next().unwrap_or("").to_string();
            let mut conn = conn;
            let status = match files.iter().find(|(p, _)| *p == path) {
                Some((_, body)) => {
                    let etag = format!(
                        "\"e{}-{}\"",
                        body.len(),
                        body.iter().map(|&b| b as u64).sum::<u64>()
                    );
                    if inm.as_deref() == Some(etag.as_str()) {
                        let _ = write!(
                            conn,
                            "HTTP/1.1 304 Not Modified\r\nETag: {etag}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        );
                        304
                    } else {
                        let _ = write!(
                            conn,
                            "HTTP/1.1 200 OK\r\nETag: {etag}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        );
                        let _ = conn.write_all(body);
                        200
                    }
                }
                None => {
                    let _ = conn.write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                    404
                }
            };
            log2.lock().expect("log").push((path, inm, status));
        }
    });
    (port, log)
}

// ---------------------------------------------------------------------------------------------
// Running both

/// Where an evaluation keeps its store and its caches.
#[derive(Clone)]
struct Side {
    home: PathBuf,
    cache: PathBuf,
    store: String,
}

impl Side {
    fn new(dir: &Path, tag: &str) -> Side {
        Side {
            home: dir.to_path_buf(),
            cache: dir.join(format!("cache-{tag}")),
            store: store_dir(dir, &format!("store-{tag}")),
        }
    }

    /// The store paths in the store (none for a store never written).
    fn paths(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(Path::new(&self.store).join("nix/store"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

struct Ran {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn run(cpp: bool, side: &Side, expr: &str) -> Ran {
    let mut c = if cpp {
        let mut c = cppnix("nix-instantiate");
        c.args(["--extra-experimental-features", "flakes"]);
        c
    } else {
        firn("nix-instantiate")
    };
    let out = c
        .env("HOME", &side.home)
        .env("XDG_CACHE_HOME", &side.cache)
        .env("XDG_CONFIG_HOME", side.home.join("config"))
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_COUNT", "1")
        .env("GIT_CONFIG_KEY_0", "protocol.file.allow")
        .env("GIT_CONFIG_VALUE_0", "always")
        .args([
            "--store",
            &side.store,
            "--eval",
            "--strict",
            "--json",
            "-E",
            expr,
        ])
        .output()
        .expect("running nix-instantiate");
    Ran {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Every attribute of the result; `outPath` as `out` (a set with `outPath` prints as it).
fn wrap(call: &str) -> String {
    format!("let r = {call}; in (removeAttrs r [\"outPath\"]) // {{ out = r.outPath; }}")
}

fn json(tag: &str, who: &str, r: &Ran) -> serde_json::Value {
    assert!(r.ok, "{tag}: {who} failed:\n{}", r.stderr);
    serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("{tag}: {who} printed {e}: {}", r.stdout))
}

/// The NAR hash of a path in a store, in SRI form.
fn nar_hash(store: &str, out: &str) -> String {
    let h = ok_str(cppnix("nix-store").args(["--store", store, "-q", "--hash", out]));
    ok_str(cppnix("nix").args(["hash", "to-sri", h.trim()]))
        .trim()
        .to_string()
}

/// `mine` with firn and `theirs` with CppNix (each on `sides`) give the same attributes, and
/// `outPath` is valid in both stores with the NAR hash `narHash` says.
fn same_on(tag: &str, sides: (&Side, &Side), mine: &str, theirs: &str) -> serde_json::Value {
    let m = json(tag, "firn", &run(false, sides.0, &wrap(mine)));
    let t = json(tag, "CppNix", &run(true, sides.1, &wrap(theirs)));
    assert_eq!(m, t, "{tag}: {mine}");
    let out = m["out"].as_str().expect("outPath is a string").to_string();
    let h = nar_hash(&sides.0.store, &out);
    assert_eq!(h, nar_hash(&sides.1.store, &out), "{tag}");
    assert_eq!(m["narHash"].as_str(), Some(h.as_str()), "{tag}: narHash");
    m
}

/// [`same_on`] with fresh stores and caches.
fn same2(dir: &Path, tag: &str, mine: &str, theirs: &str) -> serde_json::Value {
    let f = Side::new(dir, &format!("firn-{tag}"));
    let c = Side::new(dir, &format!("cpp-{tag}"));
    same_on(tag, (&f, &c), mine, theirs)
}

fn same(dir: &Path, tag: &str, expr: &str) -> serde_json::Value {
    same2(dir, tag, expr, expr)
}

/// Both fail; firn's message has `msg` (and CppNix's too unless `cpp_differs`), and firn's
/// store has nothing new.
fn both_fail(dir: &Path, tag: &str, expr: &str, msg: &str, cpp_differs: bool) -> String {
    let f = Side::new(dir, &format!("firn-{tag}"));
    let c = Side::new(dir, &format!("cpp-{tag}"));
    let mine = run(false, &f, &wrap(expr));
    let theirs = run(true, &c, &wrap(expr));
    assert!(!theirs.ok, "{tag}: CppNix succeeded: {}", theirs.stdout);
    assert!(!mine.ok, "{tag}: firn succeeded: {}", mine.stdout);
    assert!(
        mine.stderr.contains(msg),
        "{tag}: firn said:\n{}",
        mine.stderr
    );
    if !cpp_differs {
        assert!(
            theirs.stderr.contains(msg),
            "{tag}: CppNix said:\n{}",
            theirs.stderr
        );
    }
    assert_eq!(
        f.paths(),
        Vec::<String>::new(),
        "{tag}: firn added to its store"
    );
    mine.stderr
}

// ---------------------------------------------------------------------------------------------
// The tests

#[test]
fn path_inputs() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    let src = dir.join("src");
    awkward_tree(&src);
    let src_s = src.to_string_lossy().into_owned();

    let v = same(
        dir,
        "url",
        &format!("builtins.fetchTree \"path://{src_s}\""),
    );
    assert!(v["lastModified"].as_i64().is_some_and(|t| t > 0));
    assert!(v["lastModifiedDate"].is_string());
    assert!(v.get("rev").is_none());
    let out = v["out"].as_str().expect("out").to_string();
    assert!(out.ends_with("-source"));
    let nar = v["narHash"].as_str().expect("narHash").to_string();

    // As attributes (a string or a path value), and as the current manual's `path:/x`.
    same(
        dir,
        "attrs",
        &format!("builtins.fetchTree {{ type = \"path\"; path = \"{src_s}\"; }}"),
    );
    same(
        dir,
        "pathval",
        &format!("builtins.fetchTree {{ type = \"path\"; path = {src_s}; }}"),
    );
    let v = same2(
        dir,
        "modern",
        &format!("builtins.fetchTree \"path:{src_s}\""),
        &format!("builtins.fetchTree \"path://{src_s}\""),
    );
    assert_eq!(v["out"], out.as_str());

    // Given tree attributes are kept.
    let v = same(
        dir,
        "info",
        &format!(
            "builtins.fetchTree {{ type = \"path\"; path = \"{src_s}\"; rev = \"{}\"; revCount = 5; }}",
            "ab".repeat(20)
        ),
    );
    assert_eq!(v["rev"], "ab".repeat(20).as_str());
    assert_eq!(v["shortRev"], "abababa");
    assert_eq!(v["revCount"], 5);

    // A right narHash: fetched in a fresh store; in a store that has the path, not read
    // again (no lastModified then, as CppNix).
    let expr = format!(
        "builtins.fetchTree {{ type = \"path\"; path = \"{src_s}\"; narHash = \"{nar}\"; }}"
    );
    let f = Side::new(dir, "firn-locked");
    let c = Side::new(dir, "cpp-locked");
    let v = same_on("locked", (&f, &c), &expr, &expr);
    assert!(v["lastModified"].is_i64());
    let v = same_on("locked-again", (&f, &c), &expr, &expr);
    assert!(v.get("lastModified").is_none(), "{v}");
    assert_eq!(v["out"], out.as_str());

    // A store path named `source` that is valid is used as it is (lastModified 0).
    let v = same_on(
        "storepath",
        (&f, &c),
        &format!("builtins.fetchTree \"path://{out}\""),
        &format!("builtins.fetchTree \"path://{out}\""),
    );
    assert_eq!(v["lastModified"], 0);

    // A single file.
    same(
        dir,
        "file",
        &format!("builtins.fetchTree \"path://{src_s}/a\""),
    );

    // Errors.
    both_fail(
        dir,
        "mismatch",
        &format!(
            "builtins.fetchTree {{ type = \"path\"; path = \"{src_s}\"; narHash = \"sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\"; }}"
        ),
        &format!("NAR hash mismatch in input 'path:{src_s}?narHash=sha256-47DEQpj8HBSa+%2fTImW+5JCeuQeRkm5NMpJWZG3hSuFU=' ("),
        false,
    );
    // (Known only once the tree is in the store, in both.)
    let f = Side::new(dir, "firn-lastmod");
    let expr = wrap(&format!(
        "builtins.fetchTree {{ type = \"path\"; path = \"{src_s}\"; lastModified = 7; }}"
    ));
    for r in [
        run(false, &f, &expr),
        run(true, &Side::new(dir, "cpp-lastmod"), &expr),
    ] {
        assert!(!r.ok);
        assert!(
            r.stderr.contains(&format!(
                "'lastModified' attribute mismatch in input 'path:{src_s}?lastModified="
            )),
            "{}",
            r.stderr
        );
    }
    both_fail(
        dir,
        "missing",
        &format!("builtins.fetchTree \"path://{src_s}/nope\""),
        &format!("getting status of '{src_s}/nope': No such file or directory"),
        false,
    );
    both_fail(
        dir,
        "relative",
        "builtins.fetchTree { type = \"path\"; path = \"src\"; }",
        "cannot fetch input 'path:src' because it uses a relative path",
        false,
    );
    both_fail(
        dir,
        "nopath",
        "builtins.fetchTree { type = \"path\"; }",
        "input attribute 'path' is missing",
        false,
    );
    both_fail(
        dir,
        "badattr",
        &format!("builtins.fetchTree {{ type = \"path\"; path = \"{src_s}\"; foo = 1; }}"),
        "unsupported path input attribute 'foo'",
        false,
    );
    both_fail(
        dir,
        "badparam",
        &format!("builtins.fetchTree \"path://{src_s}?foo=1\""),
        "has unsupported parameter 'foo'",
        false,
    );
}

#[test]
fn tarball_and_file_inputs() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    let wrapped = tarball(true);
    let files: Vec<(&'static str, Vec<u8>)> = vec![
        ("/p.tar.gz", gzip(&wrapped)),
        ("/p.tar.xz", xz(&wrapped)),
        ("/archive/main", gzip(&wrapped)),
        ("/flat.tar.gz", gzip(&tarball(false))),
        ("/notes.txt", b"some notes\n".to_vec()),
    ];
    for (name, data) in &files {
        let p = dir.join(name.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, data).expect("write");
    }
    let (port, _) = etag_server(files);
    let d = dir.to_string_lossy().into_owned();
    let http = format!("http://127.0.0.1:{port}");

    let v = same(
        dir,
        "file-url",
        &format!("builtins.fetchTree \"file://{d}/p.tar.gz\""),
    );
    // 2.8's tarball results have no other attributes.
    let keys: Vec<&String> = v.as_object().expect("a set").keys().collect();
    assert_eq!(keys, ["narHash", "out"]);
    let out = v["out"].as_str().expect("out").to_string();
    let nar = v["narHash"].as_str().expect("narHash").to_string();
    for (tag, expr) in [
        ("abs", format!("builtins.fetchTree \"{d}/p.tar.gz\"")),
        ("http", format!("builtins.fetchTree \"{http}/p.tar.gz\"")),
        ("xz", format!("builtins.fetchTree \"{http}/p.tar.xz\"")),
        ("attrs", format!("builtins.fetchTree {{ type = \"tarball\"; url = \"{http}/p.tar.gz\"; }}")),
        ("attrs-path", format!("builtins.fetchTree {{ type = \"tarball\"; url = \"{d}/p.tar.gz\"; }}")),
        ("narhash", format!("builtins.fetchTree {{ type = \"tarball\"; url = \"{http}/p.tar.gz\"; narHash = \"{nar}\"; }}")),
        ("narhash-url", format!("builtins.fetchTree \"{http}/p.tar.gz?narHash={}\"", nar.replace('/', "%2F").replace('+', "%2B").replace('=', "%3D"))),
    ] {
        let v = same(dir, tag, &expr);
        assert_eq!(v["out"], out.as_str(), "{tag}");
    }

    // The current manual's forms, against what 2.8 gives for the same download.
    for (tag, mine, theirs) in [
        (
            "tarball+",
            format!("builtins.fetchTree \"tarball+{http}/archive/main\""),
            format!("builtins.fetchTree \"{http}/p.tar.gz\""),
        ),
        (
            "no-ext",
            format!("builtins.fetchTree \"{http}/archive/main\""),
            format!("builtins.fetchTree \"{http}/p.tar.gz\""),
        ),
        (
            "tarball+file",
            format!("builtins.fetchTree \"tarball+file://{d}/p.tar.gz\""),
            format!("builtins.fetchTree \"file://{d}/p.tar.gz\""),
        ),
    ] {
        let v = same2(dir, tag, &mine, &theirs);
        assert_eq!(v["out"], out.as_str(), "{tag}");
    }
    // `file`: the download, flat, named `source` (as `fetchurl` with that name).
    for (tag, mine) in [
        (
            "file-type",
            format!("builtins.fetchTree {{ type = \"file\"; url = \"{http}/notes.txt\"; }}"),
        ),
        (
            "file+",
            format!("builtins.fetchTree \"file+file://{d}/notes.txt\""),
        ),
    ] {
        let f = Side::new(dir, &format!("firn-{tag}"));
        let m = json(tag, "firn", &run(false, &f, &wrap(&mine)));
        let c = Side::new(dir, &format!("cpp-{tag}"));
        let t = run(
            true,
            &c,
            &format!("builtins.fetchurl {{ url = \"{http}/notes.txt\"; name = \"source\"; }}"),
        );
        assert!(t.ok, "{}", t.stderr);
        assert_eq!(
            m["out"].as_str(),
            Some(t.stdout.trim().trim_matches('"')),
            "{tag}"
        );
        let out = m["out"].as_str().expect("out");
        assert_eq!(
            m["narHash"].as_str(),
            Some(nar_hash(&f.store, out).as_str())
        );
        assert_eq!(nar_hash(&f.store, out), nar_hash(&c.store, out));
        let keys: Vec<&String> = m.as_object().expect("a set").keys().collect();
        assert_eq!(keys, ["narHash", "out"]);
    }

    // Errors.
    let stderr = both_fail(
        dir,
        "mismatch",
        &format!("builtins.fetchTree {{ type = \"tarball\"; url = \"{http}/p.tar.gz\"; narHash = \"sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\"; }}"),
        &format!("NAR hash mismatch in input '{http}/p.tar.gz?narHash=sha256-47DEQpj8HBSa+%2fTImW+5JCeuQeRkm5NMpJWZG3hSuFU=' ("),
        false,
    );
    assert!(stderr.contains(&format!("got '{nar}'")), "{stderr}");
    both_fail(
        dir,
        "file-mismatch",
        &format!("builtins.fetchTree {{ type = \"file\"; url = \"{http}/notes.txt\"; narHash = \"sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\"; }}"),
        "NAR hash mismatch in input",
        true,
    );
    both_fail(
        dir,
        "nourl",
        "builtins.fetchTree { type = \"tarball\"; }",
        "input attribute 'url' is missing",
        false,
    );
    both_fail(
        dir,
        "notype",
        &format!("builtins.fetchTree {{ url = \"{http}/p.tar.gz\"; }}"),
        "attribute 'type' is missing in call to 'fetchTree'",
        false,
    );
    both_fail(
        dir,
        "unknown-type",
        &format!("builtins.fetchTree {{ type = \"foo\"; url = \"{http}/p.tar.gz\"; }}"),
        &format!(
            "cannot fetch unsupported input '{{\"type\":\"foo\",\"url\":\"{http}/p.tar.gz\"}}'"
        ),
        false,
    );
    both_fail(
        dir,
        "name",
        &format!(
            "builtins.fetchTree {{ type = \"tarball\"; url = \"{http}/p.tar.gz\"; name = \"x\"; }}"
        ),
        "attribute 'name' isn't supported in call to 'fetchTree'",
        false,
    );
    both_fail(
        dir,
        "badattr",
        &format!(
            "builtins.fetchTree {{ type = \"tarball\"; url = \"{http}/p.tar.gz\"; foo = \"x\"; }}"
        ),
        "unsupported tarball input attribute 'foo'",
        false,
    );
    both_fail(
        dir,
        "404",
        &format!("builtins.fetchTree \"{http}/nope.tar.gz\""),
        &format!("unable to download '{http}/nope.tar.gz'"),
        false,
    );
    both_fail(
        dir,
        "several",
        &format!("builtins.fetchTree \"{http}/flat.tar.gz\""),
        "contains an unexpected number of top-level files",
        false,
    );
    both_fail(
        dir,
        "bad-url",
        "builtins.fetchTree \"https://exa mple.com/x.tar.gz\"",
        "'https://exa mple.com/x.tar.gz' is not a valid URL",
        false,
    );
    both_fail(
        dir,
        "not-url",
        &format!("builtins.fetchTree \"{d}/notes.txt\""),
        &format!("input 'file://{d}/notes.txt' is unsupported"),
        false,
    );
    both_fail(
        dir,
        "int",
        "builtins.fetchTree 42",
        "cannot coerce an integer to a string",
        false,
    );
    both_fail(
        dir,
        "list-attr",
        &format!(
            "builtins.fetchTree {{ type = \"tarball\"; url = \"{http}/p.tar.gz\"; narHash = []; }}"
        ),
        "fetchTree argument 'narHash' is a list while a string, Boolean or integer is expected",
        false,
    );
}

#[test]
fn git_inputs() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    let repo = dir.join("repo");
    let (first, second, other) = make_repo(&repo);
    let r = repo.to_string_lossy().into_owned();

    let v = same(
        dir,
        "attrs",
        &format!("builtins.fetchTree {{ type = \"git\"; url = \"{r}\"; }}"),
    );
    assert_eq!(v["rev"], second.as_str());
    assert_eq!(v["revCount"], 2);
    assert_eq!(v["submodules"], false);
    assert_eq!(v["lastModifiedDate"], "20220809101112");
    let clean = v["out"].as_str().expect("out").to_string();
    let nar = v["narHash"].as_str().expect("narHash").to_string();
    let last_modified = v["lastModified"].as_i64().expect("lastModified");
    for (tag, expr) in [
        ("url", format!("builtins.fetchTree \"git+file://{r}\"")),
        ("ref", format!("builtins.fetchTree \"git+file://{r}?ref=main\"")),
        ("rev", format!("builtins.fetchTree \"git+file://{r}?ref=main&rev={second}\"")),
        ("shallow", format!("builtins.fetchTree {{ type = \"git\"; url = \"file://{r}\"; ref = \"main\"; shallow = true; }}")),
        ("narhash", format!("builtins.fetchTree {{ type = \"git\"; url = \"{r}\"; narHash = \"{nar}\"; }}")),
    ] {
        let v = same(dir, tag, &expr);
        assert_eq!(v["out"], clean.as_str(), "{tag}");
    }
    let v = same(
        dir,
        "old",
        &format!("builtins.fetchTree {{ type = \"git\"; url = \"{r}\"; rev = \"{first}\"; }}"),
    );
    assert_eq!(v["revCount"], 1);
    let v = same(
        dir,
        "other",
        &format!("builtins.fetchTree {{ type = \"git\"; url = \"{r}\"; ref = \"other\"; }}"),
    );
    assert_eq!(v["rev"], other.as_str());

    // A locked input (narHash, lastModified, revCount) already in the store is not fetched.
    let locked = format!(
        "builtins.fetchTree {{ type = \"git\"; url = \"{r}\"; ref = \"main\"; rev = \"{second}\"; narHash = \"{nar}\"; lastModified = {last_modified}; revCount = 2; }}"
    );
    let f = Side::new(dir, "firn-locked");
    let c = Side::new(dir, "cpp-locked");
    let v = same_on("locked", (&f, &c), &locked, &locked);
    assert_eq!(v["out"], clean.as_str());
    let v = same_on("locked-again", (&f, &c), &locked, &locked);
    assert_eq!(v["rev"], second.as_str());

    // A bare repository (through the gitv3 cache), all refs.
    let bare = dir.join("bare.git");
    git(
        dir,
        &["clone", "-q", "--bare", &r, &bare.to_string_lossy()],
        DATE3,
    );
    let b = bare.to_string_lossy().into_owned();
    let v = same(
        dir,
        "bare",
        &format!("builtins.fetchTree {{ type = \"git\"; url = \"file://{b}\"; ref = \"main\"; }}"),
    );
    assert_eq!(v["out"], clean.as_str());
    let v = same(
        dir,
        "allrefs",
        &format!("builtins.fetchTree {{ type = \"git\"; url = \"file://{b}\"; rev = \"{other}\"; allRefs = true; }}"),
    );
    assert_eq!(v["rev"], other.as_str());

    // Submodules.
    let top = dir.join("top");
    std::fs::create_dir_all(&top).expect("mkdir");
    git(&top, &["init", "-q", "-b", "main"], DATE1);
    std::fs::write(top.join("top.txt"), "top\n").expect("write");
    git(&top, &["add", "-A"], DATE1);
    git(
        &top,
        &["submodule", "add", "-q", &format!("file://{r}"), "dep"],
        DATE1,
    );
    git(&top, &["commit", "-q", "-m", "with a submodule"], DATE1);
    let t = top.to_string_lossy().into_owned();
    let v = same(
        dir,
        "submodules",
        &format!("builtins.fetchTree {{ type = \"git\"; url = \"{t}\"; submodules = true; }}"),
    );
    assert_eq!(v["submodules"], true);
    let v2 = same(
        dir,
        "no-submodules",
        &format!("builtins.fetchTree {{ type = \"git\"; url = \"{t}\"; }}"),
    );
    assert_ne!(v["narHash"], v2["narHash"]);

    // A dirty tree: no rev or revCount from fetchTree (fetchGit shows zeros).
    std::fs::write(repo.join("README"), "changed\n").expect("write");
    let v = same(
        dir,
        "dirty",
        &format!("builtins.fetchTree {{ type = \"git\"; url = \"{r}\"; }}"),
    );
    assert!(v.get("rev").is_none() && v.get("revCount").is_none(), "{v}");
    assert_eq!(v["lastModifiedDate"], "20220809101112");
    let v = same(dir, "dirty-fetchgit", &format!("builtins.fetchGit \"{r}\""));
    assert_eq!(v["rev"], "0".repeat(40).as_str());

    // Errors.
    both_fail(
        dir,
        "mismatch",
        &format!("builtins.fetchTree {{ type = \"git\"; url = \"{r}\"; ref = \"main\"; narHash = \"sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\"; }}"),
        "NAR hash mismatch in input 'git+file://",
        false,
    );
    both_fail(
        dir,
        "badref",
        &format!("builtins.fetchTree {{ type = \"git\"; url = \"{r}\"; ref = \"a..b\"; }}"),
        "invalid Git branch/tag name 'a..b'",
        false,
    );
    both_fail(
        dir,
        "nourl",
        "builtins.fetchTree { type = \"git\"; }",
        "input attribute 'url' is missing",
        false,
    );
    both_fail(
        dir,
        "badrev",
        &format!(
            "builtins.fetchTree {{ type = \"git\"; url = \"{r}\"; rev = \"{}\"; }}",
            "1".repeat(40)
        ),
        "Cannot find Git revision",
        false,
    );
}

#[test]
fn network_inputs_fail_clearly() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    // Offline: the forge's API cannot be reached; the error says which URL.
    let e = both_fail(
        dir,
        "github",
        "builtins.fetchTree \"github:NixOS/nix/2.8.0\"",
        "unable to download 'https://api.github.com/repos/NixOS/nix/commits/2.8.0'",
        true,
    );
    assert!(!e.contains("panicked"), "{e}");
    let f = Side::new(dir, "gh-attrs");
    let r = run(
        false,
        &f,
        &wrap("builtins.fetchTree { type = \"gitlab\"; owner = \"o\"; repo = \"r\"; rev = \"0123456789abcdef0123456789abcdef01234567\"; }"),
    );
    assert!(!r.ok);
    assert!(
        r.stderr.contains("unable to download 'https://gitlab.com/api/v4/projects/o%2Fr/repository/archive.tar.gz?sha=0123456789abcdef0123456789abcdef01234567'"),
        "{}",
        r.stderr
    );
    for (expr, msg) in [
        (
            "builtins.fetchTree { type = \"github\"; owner = \"o\"; }",
            "input attribute 'repo' is missing",
        ),
        (
            "builtins.fetchTree { type = \"github\"; owner = \"o\"; repo = \"r\"; url = \"x\"; }",
            "unsupported input attribute 'url'",
        ),
        (
            "builtins.fetchTree { type = \"indirect\"; id = \"not a flake id\"; }",
            "'not a flake id' is not a valid flake ID",
        ),
        (
            "builtins.fetchTree \"hg+file:///nowhere\"",
            "hg failed with exit code 255",
        ),
    ] {
        let r = run(false, &f, &wrap(expr));
        assert!(!r.ok, "{expr}");
        assert!(r.stderr.contains(msg), "{expr}: {}", r.stderr);
    }
    assert_eq!(f.paths(), Vec::<String>::new());
}

#[test]
fn indirect_inputs_use_the_user_registry() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    let src = dir.join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("f"), "f\n").expect("write");
    let reg = dir.join("config/nix");
    std::fs::create_dir_all(&reg).expect("mkdir");
    std::fs::write(
        reg.join("registry.json"),
        format!(
            r#"{{"version":2,"flakes":[{{"from":{{"type":"indirect","id":"mine"}},"to":{{"type":"path","path":"{}"}}}}]}}"#,
            src.display()
        ),
    )
    .expect("write");
    let f = Side::new(dir, "firn-reg");
    let v = json(
        "registry",
        "firn",
        &run(false, &f, &wrap("builtins.fetchTree \"flake:mine\"")),
    );
    let direct = json(
        "direct",
        "firn",
        &run(
            false,
            &f,
            &wrap(&format!("builtins.fetchTree \"path:{}\"", src.display())),
        ),
    );
    assert_eq!(v, direct);
}

fn hits(log: &Arc<Mutex<Vec<Hit>>>, path: &str) -> Vec<Hit> {
    log.lock()
        .expect("log")
        .iter()
        .filter(|h| h.0 == path)
        .cloned()
        .collect()
}

#[test]
fn fetcher_cache_is_shared() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    let data = gzip(&tarball(true));
    let (port, log) = etag_server(vec![
        ("/a.tar.gz", data.clone()),
        ("/b.tar.gz", data.clone()),
        ("/c.tar.gz", data.clone()),
    ]);
    let url = |n: &str| format!("http://127.0.0.1:{port}/{n}.tar.gz");
    // One store and one cache for both.
    let side = Side::new(dir, "shared");

    // firn downloads once; a second evaluation (and CppNix) use the cache entry.
    let expr = |n: &str| wrap(&format!("builtins.fetchTree \"{}\"", url(n)));
    let m = json("a", "firn", &run(false, &side, &expr("a")));
    assert_eq!(hits(&log, "/a.tar.gz").len(), 1);
    let m2 = json("a2", "firn", &run(false, &side, &expr("a")));
    assert_eq!(m, m2);
    let t = json("a3", "CppNix", &run(true, &side, &expr("a")));
    assert_eq!(m, t);
    assert_eq!(
        hits(&log, "/a.tar.gz").len(),
        1,
        "the download was repeated"
    );

    // The other way round.
    let t = json("b", "CppNix", &run(true, &side, &expr("b")));
    let m = json("b2", "firn", &run(false, &side, &expr("b")));
    assert_eq!(m, t);
    assert_eq!(
        hits(&log, "/b.tar.gz").len(),
        1,
        "the download was repeated"
    );

    // fetchTarball and fetchurl use the same cache.
    let e = format!("builtins.fetchTarball \"{}\"", url("c"));
    let a = run(false, &side, &e);
    let b = run(false, &side, &e);
    assert!(a.ok && b.ok, "{}{}", a.stderr, b.stderr);
    assert_eq!(a.stdout, b.stdout);
    assert_eq!(
        hits(&log, "/c.tar.gz").len(),
        1,
        "fetchTarball downloaded again"
    );

    // An expired entry is revalidated with its ETag; the server's 304 keeps the cached path.
    let db = side.cache.join("nix/fetcher-cache-v1.sqlite");
    assert!(db.exists());
    let expired = Command::new("sqlite3")
        .arg(&db)
        .arg("update Cache set timestamp = 0 where immutable = 0")
        .status();
    if expired.is_ok_and(|s| s.success()) {
        let m3 = json("a4", "firn", &run(false, &side, &expr("a")));
        assert_eq!(m3["out"], m2["out"]);
        let h = hits(&log, "/a.tar.gz");
        assert_eq!(h.len(), 2, "{h:?}");
        assert!(h[1].1.is_some() && h[1].2 == 304, "not revalidated: {h:?}");
    } else {
        eprintln!("note: no sqlite3 here; the expiry part of the test is skipped");
    }

    // Git: a revision CppNix exported is found by firn in the cache, even with the
    // repository gone.
    let repo = dir.join("repo");
    let (first, _, _) = make_repo(&repo);
    let e = wrap(&format!(
        "builtins.fetchTree {{ type = \"git\"; url = \"{}\"; rev = \"{first}\"; }}",
        repo.display()
    ));
    let t = json("git", "CppNix", &run(true, &side, &e));
    std::fs::rename(&repo, dir.join("repo-gone")).expect("rename");
    let m = json("git2", "firn", &run(false, &side, &e));
    assert_eq!(m, t);
    assert_eq!(m["revCount"], 1);
}
