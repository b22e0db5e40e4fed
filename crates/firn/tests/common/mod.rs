//! Shared helpers for the integration tests: the firn binary under Nix's tool names, CppNix's
//! tools (the oracle), isolated chroot stores, and awkward file trees.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// A directory of links named `nix`, `nix-store`, ... pointing at the firn binary.
pub fn firn_bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // One directory per firn binary (not per test process), so runs do not leave a
        // directory each behind; links are made under a temporary name and renamed into
        // place, so concurrent test binaries can share it.
        let exe = env!("CARGO_BIN_EXE_firn");
        let tag: u64 = exe.bytes().fold(0xcbf29ce484222325, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100000001b3)
        });
        let dir = std::env::temp_dir().join(format!("firn-test-bin-{tag:016x}"));
        std::fs::create_dir_all(&dir).expect("creating the link directory");
        for name in [
            "nix",
            "nix-store",
            "nix-hash",
            "nix-instantiate",
            "nix-build",
            "nix-copy-closure",
        ] {
            let link = dir.join(name);
            if std::fs::read_link(&link).is_ok_and(|t| t == Path::new(exe)) {
                continue;
            }
            let tmp = dir.join(format!(".{name}.{}", std::process::id()));
            let _ = std::fs::remove_file(&tmp);
            std::os::unix::fs::symlink(exe, &tmp).expect("creating a link to firn");
            std::fs::rename(&tmp, &link).expect("moving a link to firn into place");
        }
        dir
    })
}

/// A scratch directory for one test (removed when dropped), for chroot stores and files.
pub struct Env {
    _tmp: tempfile::TempDir,
    pub dir: PathBuf,
}

/// A fresh [`Env`].
pub fn env() -> Env {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    Env { _tmp: tmp, dir }
}

impl Env {
    /// The chroot store `name` in this directory.
    pub fn store(&self, name: &str) -> String {
        store_dir(&self.dir, name)
    }

    /// Write `text` to file `name` here; returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(&p, text).expect("write");
        p
    }
}

/// Run firn as `tool`.
pub fn firn(tool: &str) -> Command {
    let mut c = Command::new(firn_bin_dir().join(tool));
    isolate(&mut c);
    c
}

/// Run CppNix's `tool`.
pub fn cppnix(tool: &str) -> Command {
    let mut c = Command::new(format!("/usr/bin/{tool}"));
    isolate(&mut c);
    if tool == "nix" {
        c.args(["--extra-experimental-features", "nix-command"]);
    }
    c
}

/// No user configuration leaks into the tests.
fn isolate(c: &mut Command) {
    c.env("NIX_CONF_DIR", "/nonexistent-firn-test-conf")
        .env("NIX_USER_CONF_FILES", "")
        .env("NIX_CONFIG", "substituters =")
        .env_remove("NIX_REMOTE")
        .env("NIX_IGNORE_SYMLINK_STORE", "1");
}

/// Run and require success; return stdout.
pub fn ok(c: &mut Command) -> Vec<u8> {
    let out = c.output().expect("running a command");
    assert!(
        out.status.success(),
        "{:?} failed ({}):\n{}",
        c,
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `len` deterministic bytes that no compressor shrinks (xorshift64 from `seed`, made odd:
/// a zero state would stay zero); [`noise_from`] goes on from a state.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    noise_from(&mut state, len)
}

/// [`noise`] continuing from `state` (for data made piece by piece).
pub fn noise_from(state: &mut u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// How one command of a test ended.
#[derive(Debug)]
pub struct Outcome {
    pub code: Option<i32>,
    pub stdout: String,
    /// stderr from the first `error:` on (or all of it).
    pub error: String,
    pub stderr: String,
}

/// `paths` of `store`, each with its NAR hash as CppNix gives it (`P HASH`), sorted: what
/// two stores must agree on after a copy.
pub fn with_nar_hashes<'a>(store: &str, paths: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut v: Vec<String> = paths
        .into_iter()
        .map(|p| {
            let h = ok_str(cppnix("nix-store").args(["--store", store, "-q", "--hash", p]));
            format!("{p} {}", h.trim())
        })
        .collect();
    v.sort();
    v
}

/// Both tools failed with exit `code` and the same error, which says `part` (`what` names
/// the case in a failure).
#[allow(dead_code)]
pub fn assert_both_failed((c, f): &(Outcome, Outcome), code: i32, part: &str, what: &str) {
    assert_eq!(c.code, Some(code), "{what} (CppNix): {}", c.stderr);
    assert_eq!(f.code, Some(code), "{what} (firn): {}", f.stderr);
    assert!(c.error.contains(part), "{what}: {}", c.error);
    assert_eq!(f.error, c.error, "{what}");
}

/// Run `c` to its end.
pub fn outcome(c: &mut Command) -> Outcome {
    let out = c.output().expect("running a command");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let error = stderr[stderr.find("error:").unwrap_or(0)..]
        .trim_end()
        .to_string();
    Outcome {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        error,
        stderr,
    }
}

/// "firn" or "CppNix", for messages and names.
pub fn side_name(firn_side: bool) -> &'static str {
    if firn_side {
        "firn"
    } else {
        "CppNix"
    }
}

/// `tool` of firn or of CppNix.
pub fn tool_of(firn_side: bool, name: &str) -> Command {
    if firn_side {
        firn(name)
    } else {
        cppnix(name)
    }
}

/// A tool of either side with flakes on, its store and caches in `dir` (its own per side).
pub fn flake_tool(firn_side: bool, name: &str, dir: &Path) -> Command {
    let side = dir.join(side_name(firn_side));
    let mut c = tool_of(firn_side, name);
    c.env("XDG_CACHE_HOME", side.join("cache"))
        .env("HOME", side.join("home"))
        .env("NIX_PATH", "")
        .args(["--store", &side.join("store").to_string_lossy()])
        .args(["--option", "experimental-features", "nix-command flakes"]);
    c
}

/// A file of derivations that CppNix 2.8 and firn each build in chroot stores of their own,
/// sandboxed, for comparing what happens.
pub struct BuildOracle {
    pub e: Env,
    pub file: PathBuf,
}

impl BuildOracle {
    /// The chroot store `tag` of one side.
    pub fn store(&self, firn_side: bool, tag: &str) -> String {
        self.e.store(&format!("{tag}-{}", side_name(firn_side)))
    }

    /// `nix-build -A attr --no-out-link` (sandboxed) in the store `tag`, with `extra`.
    pub fn build_cmd(&self, firn_side: bool, tag: &str, attr: &str, extra: &[&str]) -> Command {
        let mut c = tool_of(firn_side, "nix-build");
        c.arg("--store")
            .arg(self.store(firn_side, tag))
            .args(["--option", "sandbox", "true", "--no-out-link", "-A", attr])
            .args(extra)
            .arg(&self.file);
        c
    }

    /// [`Self::build_cmd`], run.
    pub fn build(&self, firn_side: bool, tag: &str, attr: &str, extra: &[&str]) -> Outcome {
        outcome(&mut self.build_cmd(firn_side, tag, attr, extra))
    }

    /// [`Self::build`] by both; returns (CppNix's, firn's).
    pub fn both(&self, tag: &str, attr: &str, extra: &[&str]) -> (Outcome, Outcome) {
        (
            self.build(false, tag, attr, extra),
            self.build(true, tag, attr, extra),
        )
    }
}

/// Whether CppNix finds `path` valid in the chroot store `store`.
pub fn is_valid(store: &str, path: &str) -> bool {
    cppnix("nix-store")
        .args(["--store", store, "--check-validity", path])
        .output()
        .expect("running nix-store --check-validity")
        .status
        .success()
}

pub fn ok_str(c: &mut Command) -> String {
    String::from_utf8(ok(c)).expect("output is UTF-8")
}

/// Run with `input` on stdin.
pub fn run_with_input(c: &mut Command, input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning a command");
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let data = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().expect("waiting for a command");
    let _ = writer.join();
    out
}

/// A fresh directory for a chroot store (`--store DIR`).
pub fn store_dir(tmp: &Path, name: &str) -> String {
    tmp.join(name).to_string_lossy().into_owned()
}

/// A tree with the awkward cases: executable files, relative, absolute and dangling symlinks,
/// empty directories, names that sort differently by bytes than by locale, non-ASCII names,
/// files without a trailing newline, an empty file, a large file, and nesting.
pub fn awkward_tree(root: &Path) {
    let w = |p: &str, data: &[u8]| {
        let path = root.join(p);
        std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
        std::fs::write(path, data).expect("write");
    };
    w("a", b"hello\n");
    w("B", b"no newline");
    w("_under", b"");
    w("Z", b"zed\n");
    w("\u{fc}n\u{ef}c\u{f6}d\u{e9}", "caf\u{e9}\n".as_bytes());
    w("sub/exe", b"#!/bin/sh\necho hi\n");
    std::fs::set_permissions(root.join("sub/exe"), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    w("sub/deeper/deepest/file", b"deep");
    std::fs::create_dir_all(root.join("empty")).expect("mkdir");
    std::fs::create_dir_all(root.join("sub/empty2")).expect("mkdir");
    std::os::unix::fs::symlink("../a", root.join("sub/rel")).expect("symlink");
    std::os::unix::fs::symlink("/etc/passwd", root.join("abs")).expect("symlink");
    std::os::unix::fs::symlink("/nonexistent/dangling", root.join("dangling")).expect("symlink");
    let big: Vec<u8> = (0..5 * 1024 * 1024 + 3)
        .map(|i: u32| (i % 251) as u8)
        .collect();
    w("big.bin", &big);
}

/// A minimal HTTP/1.1 server on a free port serving `files` (path → bytes), 404 otherwise;
/// it runs until the test process ends.
pub fn http_server(files: Vec<(&'static str, Vec<u8>)>) -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut reader = BufReader::new(conn.try_clone().expect("clone"));
            let mut first = String::new();
            if reader.read_line(&mut first).is_err() {
                continue;
            }
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let path = first.split_whitespace().nth(1).unwrap_or("").to_string();
            let mut conn = conn;
            match files.iter().find(|(p, _)| *p == path) {
                Some((_, body)) => {
                    let _ = write!(
                        conn,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = conn.write_all(body);
                }
                None => {
                    let _ = conn.write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                }
            }
        }
    });
    port
}

/// Put regular files at input-addressed store paths of the chroot store `store` and register
/// them (in order, so references come first): `(path, contents, references)`. Such paths need
/// a signature to be trusted from a cache, and the same path can have different contents in
/// two stores (which shows where a copy came from).
pub fn register_files(store: &str, paths: &[(&str, &str, &[&str])]) {
    let mut reg = String::new();
    for (path, contents, refs) in paths {
        let real = Path::new(store).join(&path[1..]);
        std::fs::create_dir_all(real.parent().expect("has a parent")).expect("mkdir");
        std::fs::write(&real, contents).expect("write");
        let hash = ok_str(
            cppnix("nix-hash")
                .args(["--type", "sha256", "--base32"])
                .arg(&real),
        );
        let size = ok(cppnix("nix-store").arg("--dump").arg(&real)).len();
        reg.push_str(&format!(
            "{path}\nsha256:{}\n{size}\n\n{}\n",
            hash.trim(),
            refs.len()
        ));
        for r in refs.iter() {
            reg.push_str(r);
            reg.push('\n');
        }
    }
    // (CppNix 2.8 looks at the logical path here, so chroot stores need firn.)
    let out = run_with_input(
        firn("nix-store").args(["--store", store, "--register-validity", "--hash-given"]),
        reg.as_bytes(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// git with a fixed identity and dates, and no user or system configuration.
pub fn git(dir: &Path, args: &[&str], date: &str) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("HOME", dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_COUNT", "1")
        .env("GIT_CONFIG_KEY_0", "protocol.file.allow")
        .env("GIT_CONFIG_VALUE_0", "always")
        .env("GIT_AUTHOR_NAME", "Firn Test")
        .env("GIT_AUTHOR_EMAIL", "test@firn.invalid")
        .env("GIT_COMMITTER_NAME", "Firn Test")
        .env("GIT_COMMITTER_EMAIL", "test@firn.invalid")
        .env("GIT_AUTHOR_DATE", date)
        .env("GIT_COMMITTER_DATE", date)
        .output()
        .expect("running git");
    assert!(
        out.status.success(),
        "git {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("git output is UTF-8")
        .trim()
        .to_string()
}

/// `data` gzip-compressed.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

/// `data` xz-compressed.
pub fn xz(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = xz2::write::XzEncoder::new(Vec::new(), 6);
    e.write_all(data).expect("xz");
    e.finish().expect("xz")
}

/// The start of the build tests' expressions: `let` and `bb`, the host's static busybox
/// copied into the store (the builders run it). Their own text follows it.
pub const LET_BUSYBOX: &str = r#"
let
  bb = builtins.path {
    path = /usr/bin;
    name = "busybox";
    filter = p: t: baseNameOf p == "busybox";
  };
"#;

/// The first column of every row `q` gives on store database `db`, sorted (to compare two
/// stores' tables).
pub fn sorted_rows(db: &rusqlite::Connection, q: &str) -> Vec<String> {
    let mut st = db.prepare(q).expect("preparing a query");
    let mut v: Vec<String> = st
        .query_map([], |r| r.get::<_, String>(0))
        .expect("querying")
        .map(|r| r.expect("reading a row"))
        .collect();
    v.sort();
    v
}

/// `mk name script attrs`: a derivation whose builder runs `script` with busybox's `sh`
/// (written after [`LET_BUSYBOX`]).
pub const MK_BUSYBOX: &str = r#"  mk = name: script: attrs: derivation ({
    inherit name;
    system = "x86_64-linux";
    builder = "${bb}/busybox";
    args = [ "sh" "-c" script ];
  } // attrs);
"#;

/// The build tests' builders are the host's static busybox (copied into the test stores);
/// its absence is a failure, not a skip.
pub fn need_busybox() {
    assert!(
        Path::new("/usr/bin/busybox").exists(),
        "the build tests need /usr/bin/busybox (apt-get install busybox-static)"
    );
}

/// An S3-compatible server (s3s-fs 0.14.1, which `.ci/run` installs) on a free port, killed
/// when dropped.
pub struct S3Server {
    child: std::process::Child,
    pub port: u16,
    /// The directory s3s-fs keeps its buckets in (one directory each).
    pub root: std::path::PathBuf,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn s3s_fs_binary() -> std::path::PathBuf {
    let candidates = [
        std::env::var_os("S3S_FS").map(std::path::PathBuf::from),
        std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo/bin/s3s-fs")),
        Some("/usr/local/bin/s3s-fs".into()),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.exists())
        .expect("the S3 tests need s3s-fs (cargo install s3s-fs --version 0.14.1 --features binary --locked)")
}

/// s3s-fs on a free port with the bucket `bucket`, the credentials `firn-test-ak` /
/// `firn-test-sk`.
pub fn start_s3(tmp: &Path, bucket: &str) -> S3Server {
    let root = tmp.join("s3root");
    std::fs::create_dir_all(root.join(bucket)).expect("mkdir bucket");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let child = Command::new(s3s_fs_binary())
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args([
            "--access-key",
            "firn-test-ak",
            "--secret-key",
            "firn-test-sk",
        ])
        .arg(&root)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starting s3s-fs");
    let server = S3Server { child, port, root };
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return server;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("s3s-fs did not start");
}

/// A small HTTP/1.1 server over a directory: GET and HEAD (404 when missing) and PUT (the
/// body, by Content-Length, written atomically). What `nix copy --to http://...` needs of a
/// WebDAV-ish server, for the test's lifetime.
pub fn put_server(dir: std::path::PathBuf) -> u16 {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let dir = dir.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().expect("clone"));
                let mut out = conn;
                loop {
                    let mut first = String::new();
                    if reader.read_line(&mut first).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut len = 0usize;
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        if h == "\r\n" {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':') {
                            if k.eq_ignore_ascii_case("content-length") {
                                len = v.trim().parse().unwrap_or(0);
                            }
                        }
                    }
                    let mut parts = first.split_whitespace();
                    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                    let rel = path.trim_start_matches('/');
                    assert!(!rel.contains(".."), "{rel}");
                    let file = dir.join(rel);
                    match method {
                        "PUT" => {
                            let mut body = vec![0u8; len];
                            if reader.read_exact(&mut body).is_err() {
                                return;
                            }
                            std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
                            let tmp = file.with_extension("uploading");
                            std::fs::write(&tmp, &body).expect("write");
                            std::fs::rename(&tmp, &file).expect("rename");
                            let _ =
                                out.write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n");
                        }
                        "GET" | "HEAD" => match std::fs::read(&file) {
                            Ok(body) => {
                                let _ = write!(
                                    out,
                                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                                    body.len()
                                );
                                if method == "GET" {
                                    let _ = out.write_all(&body);
                                }
                            }
                            Err(_) => {
                                let _ = out.write_all(
                                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
                                );
                            }
                        },
                        _ => {
                            let _ = out.write_all(
                                b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n",
                            );
                        }
                    }
                }
            });
        }
    });
    port
}
