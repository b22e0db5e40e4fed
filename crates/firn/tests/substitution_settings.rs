//! Substitution settings end to end, run by firn and by CppNix 2.8 under the same settings
//! (the oracle) wherever the behaviour is shared: `--fallback` when a substitute fails or is
//! gone, cache priorities from `nix-cache-info` (and `?priority=`), `extra-substituters`,
//! each NAR fetched once, the narinfo disk cache's negative and positive TTLs,
//! `http-connections = 1`, streaming a large NAR without holding it in memory, and
//! `compression-level`. The HTTP caches are served by a small server in this file that counts
//! the requests for each file and how many are answered at once.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

/// firn or CppNix: the same test runs both.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Tool {
    Firn,
    CppNix,
}

const TOOLS: [Tool; 2] = [Tool::CppNix, Tool::Firn];

impl Tool {
    fn cmd(self, name: &str) -> Command {
        match self {
            Tool::Firn => firn(name),
            Tool::CppNix => cppnix(name),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Tool::Firn => "firn",
            Tool::CppNix => "cppnix",
        }
    }
}

/// What a [`CountingServer`] saw.
#[derive(Default)]
struct Stats {
    /// Requests per path (any method).
    requests: Mutex<HashMap<String, usize>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// An HTTP/1.1 server (keep-alive, GET and HEAD) over a binary cache directory written as a
/// `file://` cache, which counts the requests for each path and how many it answers at once
/// (each answer waits `delay` first, so that requests made at once overlap). It runs until
/// the test process ends.
struct CountingServer {
    port: u16,
    stats: Arc<Stats>,
}

impl CountingServer {
    fn start(dir: PathBuf, delay: Duration) -> CountingServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let stats = Arc::new(Stats::default());
        let st = stats.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (dir, st) = (dir.clone(), st.clone());
                std::thread::spawn(move || serve_connection(conn, &dir, &st, delay));
            }
        });
        CountingServer { port, stats }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Requests for `path` (`/nix-cache-info`, `/HASH.narinfo`, ...).
    fn count(&self, path: &str) -> usize {
        let r = self
            .stats
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        r.get(path).copied().unwrap_or(0)
    }

    /// Requests for each NAR (`/nar/...`).
    fn nar_counts(&self) -> Vec<(String, usize)> {
        let r = self
            .stats
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<(String, usize)> = r
            .iter()
            .filter(|(k, _)| k.starts_with("/nar/"))
            .map(|(k, n)| (k.clone(), *n))
            .collect();
        v.sort();
        v
    }

    fn nar_requests(&self) -> usize {
        self.nar_counts().iter().map(|(_, n)| n).sum()
    }

    fn narinfo_requests(&self, path: &str) -> usize {
        self.count(&format!("/{}.narinfo", hash_part(path)))
    }

    fn max_in_flight(&self) -> usize {
        self.stats.max_in_flight.load(Ordering::SeqCst)
    }

    fn reset(&self) {
        self.stats
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.stats.max_in_flight.store(0, Ordering::SeqCst);
    }
}

fn serve_connection(conn: std::net::TcpStream, dir: &Path, st: &Stats, delay: Duration) {
    let Ok(read_half) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut out = conn;
    loop {
        let mut first = String::new();
        if reader.read_line(&mut first).unwrap_or(0) == 0 {
            return;
        }
        let mut close = first.contains("HTTP/1.0");
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h == "\r\n" || h == "\n" {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("connection") && v.trim().eq_ignore_ascii_case("close") {
                    close = true;
                }
            }
        }
        let mut parts = first.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("");
        let path = target.split('?').next().unwrap_or("").to_string();
        *st.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(path.clone())
            .or_default() += 1;
        let now = st.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        st.max_in_flight.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(delay);
        let rel = path.trim_start_matches('/');
        let file = (!rel.is_empty() && !rel.contains(".."))
            .then(|| dir.join(rel))
            .and_then(|f| std::fs::File::open(f).ok())
            .and_then(|f| f.metadata().ok().filter(|m| m.is_file()).map(|m| (f, m)));
        let ok = match file {
            Some((mut f, meta)) => {
                let head = write!(
                    out,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\r\n",
                    meta.len()
                );
                head.is_ok() && (method == "HEAD" || std::io::copy(&mut f, &mut out).is_ok())
            }
            None => out
                .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                .is_ok(),
        };
        st.in_flight.fetch_sub(1, Ordering::SeqCst);
        if !ok || close {
            return;
        }
    }
}

fn hash_part(path: &str) -> &str {
    &path["/nix/store/".len()..][..32]
}

/// Where `path` of the chroot store `store` is on disk.
fn real(store: &str, path: &str) -> PathBuf {
    Path::new(store).join(path.trim_start_matches('/'))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `nix copy` the closures of `paths` from `store` into a new `file://` cache at `dir` (with
/// `params`, such as `?compression=none`).
fn make_cache(store: &str, dir: &Path, params: &str, paths: &[&str]) {
    ok(firn("nix")
        .args(["copy", "--store", store, "--to"])
        .arg(format!("file://{}{params}", dir.display()))
        .args(paths));
}

/// Give the cache at `dir` this `Priority:` (none for `None`).
fn set_priority(dir: &Path, priority: Option<i32>) {
    let mut info = "StoreDir: /nix/store\nWantMassQuery: 1\n".to_string();
    if let Some(p) = priority {
        info.push_str(&format!("Priority: {p}\n"));
    }
    std::fs::write(dir.join("nix-cache-info"), info).expect("writing nix-cache-info");
}

/// The cache's file for `path`'s NAR (from its narinfo's `URL:`).
fn nar_file(dir: &Path, path: &str) -> PathBuf {
    let ni = std::fs::read_to_string(dir.join(format!("{}.narinfo", hash_part(path))))
        .expect("reading a narinfo");
    let url = ni
        .lines()
        .find_map(|l| l.strip_prefix("URL: "))
        .expect("a narinfo with a URL");
    dir.join(url)
}

/// `nix-store -r` of `paths` into `store` by `tool`, with its own narinfo disk cache under
/// `xdg`, and `opts` as `--option NAME VALUE` pairs.
fn realise(tool: Tool, store: &str, xdg: &Path, paths: &[&str], opts: &[(&str, &str)]) -> Output {
    let mut c = tool.cmd("nix-store");
    c.env("XDG_CACHE_HOME", xdg)
        .args(["--store", store, "-r"])
        .args(paths);
    for (k, v) in opts {
        c.args(["--option", k, v]);
    }
    c.output().expect("running nix-store -r")
}

fn realise_ok(tool: Tool, store: &str, xdg: &Path, paths: &[&str], opts: &[(&str, &str)]) {
    let out = realise(tool, store, xdg, paths, opts);
    assert!(
        out.status.success(),
        "{}: nix-store -r {paths:?} {opts:?} failed ({}):\n{}",
        tool.name(),
        out.status,
        stderr(&out)
    );
}

// Synthetic input-addressed paths (registered with their contents, no derivation).
const DEP: &str = "/nix/store/0aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-dep";
const ROOT1: &str = "/nix/store/1bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-root1";
const ROOT2: &str = "/nix/store/2ccccccccccccccccccccccccccccccc-root2";
const MISSING: &str = "/nix/store/3ddddddddddddddddddddddddddddddd-missing";
const X: &str = "/nix/store/4fffffffffffffffffffffffffffffff-x";
const Y: &str = "/nix/store/5ggggggggggggggggggggggggggggggg-y";

/// A store holding `DEP`, and `ROOT1` and `ROOT2` that both refer to it.
fn shared_dep_store(e: &Env) -> String {
    let store = e.store("src");
    register_files(
        &store,
        &[
            (DEP, "the shared dependency\n", &[]),
            (ROOT1, &format!("root 1 uses {DEP}\n"), &[DEP]),
            (ROOT2, &format!("root 2 uses {DEP}\n"), &[DEP]),
        ],
    );
    store
}

/// Fallback: the narinfo of the derivation's output is there, but its NAR is broken (a
/// byte changed, so the hash does not match) or gone. A broken substitute fails the
/// realisation with status 1 unless `--fallback`, with which the derivation is built; a gone
/// NAR counts as no substitute at all (CppNix 2.8's `SubstituteGone`), so the derivation is
/// built either way.
#[test]
fn fallback_builds_when_a_substitute_fails() {
    need_busybox();
    let e = env();
    let file = e.write(
        "default.nix",
        &format!("{LET_BUSYBOX}{MK_BUSYBOX}in mk \"fallback\" \"echo built > $out\" {{ }}"),
    );
    let src = e.store("src");
    let out = ok_str(
        firn("nix-build")
            .args(["--store", &src, "--no-out-link"])
            .arg(&file),
    );
    let out = out.trim().to_string();
    let cache = e.dir.join("cache");
    make_cache(&src, &cache, "?compression=none", &[&out]);
    let url = format!("file://{}", cache.display());
    let nar = nar_file(&cache, &out);
    let good = std::fs::read(&nar).expect("reading the NAR");
    // The same length, another byte in the file's contents: the NAR parses, its hash differs.
    let at = good
        .windows(6)
        .position(|w| w == b"built\n")
        .expect("the output's contents in the NAR");
    let mut bad = good.clone();
    bad[at] = b'B';
    let opts = [("substituters", url.as_str()), ("require-sigs", "false")];

    for (case, broken) in [("corrupt", true), ("gone", false)] {
        if broken {
            std::fs::write(&nar, &bad).expect("writing the broken NAR");
        } else {
            std::fs::remove_file(&nar).expect("removing the NAR");
        }
        let mut seen = Vec::new();
        for tool in TOOLS {
            let store = e.store(&format!("{case}-{}", tool.name()));
            let xdg = e.dir.join(format!("xdg-{case}-{}", tool.name()));
            let drv = ok_str(
                tool.cmd("nix-instantiate")
                    .args(["--store", &store])
                    .arg(&file),
            );
            let drv = drv.trim().to_string();
            // Without --fallback.
            let r = realise(tool, &store, &xdg, &[&drv], &opts);
            let without = (r.status.code(), is_valid(&store, &out));
            let err = stderr(&r);
            if broken {
                assert_eq!(
                    without,
                    (Some(1), false),
                    "{} {case}, without --fallback:\n{err}",
                    tool.name()
                );
                assert!(err.contains("--fallback"), "{}: {err}", tool.name());
                // With --fallback: built from the derivation.
                let mut c = tool.cmd("nix-store");
                c.env("XDG_CACHE_HOME", &xdg)
                    .args(["--store", &store, "-r", "--fallback", &drv])
                    .args(["--option", "substituters", &url])
                    .args(["--option", "require-sigs", "false"]);
                let r = c.output().expect("running nix-store -r --fallback");
                assert!(
                    r.status.success(),
                    "{} {case}, --fallback:\n{}",
                    tool.name(),
                    stderr(&r)
                );
            }
            assert!(is_valid(&store, &out), "{} {case}", tool.name());
            assert_eq!(
                std::fs::read_to_string(real(&store, &out)).expect("reading the output"),
                "built\n",
                "{} {case}",
                tool.name()
            );
            seen.push(without);
        }
        // firn as CppNix: the same status and result without --fallback.
        assert_eq!(seen[0], seen[1], "{case}: cppnix, firn");
        if !broken {
            assert_eq!(seen[0], (Some(0), true), "{case}");
        }
    }

    // The NAR gone and the output asked for itself (no derivation to build it from): no
    // substitute, the same failure.
    let mut codes = Vec::new();
    for tool in TOOLS {
        let store = e.store(&format!("opaque-{}", tool.name()));
        let xdg = e.dir.join(format!("xdg-opaque-{}", tool.name()));
        let r = realise(tool, &store, &xdg, &[&out], &opts);
        assert!(!r.status.success(), "{}", tool.name());
        assert!(!is_valid(&store, &out), "{}", tool.name());
        codes.push(r.status.code());
    }
    assert_eq!(
        codes[0], codes[1],
        "opaque, gone: exit status of cppnix, firn"
    );

    // Gone from the first cache by priority and there in the next one: fetched from that
    // one, nothing built.
    let cache2 = e.dir.join("cache2");
    make_cache(&src, &cache2, "?compression=none", &[&out]);
    set_priority(&cache, Some(10));
    set_priority(&cache2, Some(20));
    let url2 = format!("file://{}", cache2.display());
    let subs = format!("{url2} {url}");
    for tool in TOOLS {
        let store = e.store(&format!("next-{}", tool.name()));
        let xdg = e.dir.join(format!("xdg-next-{}", tool.name()));
        let drv = ok_str(
            tool.cmd("nix-instantiate")
                .args(["--store", &store])
                .arg(&file),
        );
        let r = realise(
            tool,
            &store,
            &xdg,
            &[drv.trim()],
            &[("substituters", &subs), ("require-sigs", "false")],
        );
        let err = stderr(&r);
        assert!(r.status.success(), "{}: {err}", tool.name());
        assert!(is_valid(&store, &out), "{}", tool.name());
        assert!(!err.contains("building '"), "{}: {err}", tool.name());
        assert!(
            err.contains(&format!("copying path '{out}' from '{url2}'")),
            "{}: {err}",
            tool.name()
        );
    }
}

/// Priorities: of two HTTP caches holding the same path, the one with the lower `Priority:`
/// in its `nix-cache-info` serves the NAR, whatever the order in `substituters`; equal
/// priorities keep that order; a `?priority=` parameter overrides `nix-cache-info`.
#[test]
fn the_lower_priority_cache_is_fetched_from() {
    let e = env();
    let store = shared_dep_store(&e);
    let (dir_a, dir_b) = (e.dir.join("cache-a"), e.dir.join("cache-b"));
    make_cache(&store, &dir_a, "?compression=none", &[DEP]);
    make_cache(&store, &dir_b, "?compression=none", &[DEP]);
    let a = CountingServer::start(dir_a.clone(), Duration::ZERO);
    let b = CountingServer::start(dir_b.clone(), Duration::ZERO);
    let (ua, ub) = (a.url(), b.url());
    // (priority of a, of b, substituters, which serves the NAR: 'a' or 'b').
    let cases: Vec<(Option<i32>, Option<i32>, String, char)> = vec![
        (Some(50), Some(10), format!("{ua} {ub}"), 'b'),
        (Some(50), Some(10), format!("{ub} {ua}"), 'b'),
        (Some(10), Some(50), format!("{ub} {ua}"), 'a'),
        (Some(30), Some(30), format!("{ub} {ua}"), 'b'),
        (Some(30), Some(30), format!("{ua} {ub}"), 'a'),
        (Some(50), Some(10), format!("{ua}?priority=5 {ub}"), 'a'),
    ];
    for (n, (pa, pb, subs, want)) in cases.iter().enumerate() {
        set_priority(&dir_a, *pa);
        set_priority(&dir_b, *pb);
        for tool in TOOLS {
            a.reset();
            b.reset();
            let tag = format!("{n}-{}", tool.name());
            let dst = e.store(&format!("dst-{tag}"));
            let xdg = e.dir.join(format!("xdg-{tag}"));
            let opts = [("substituters", subs.as_str()), ("require-sigs", "false")];
            let out = realise(tool, &dst, &xdg, &[DEP], &opts);
            let err = stderr(&out);
            assert!(out.status.success(), "{tag}: {err}");
            let got = (a.nar_requests(), b.nar_requests());
            let expected = if *want == 'a' { (1, 0) } else { (0, 1) };
            assert_eq!(
                got,
                expected,
                "{}: priorities {pa:?}/{pb:?}, substituters '{subs}': NAR requests to a, b\n{err}",
                tool.name()
            );
            let from = if *want == 'a' { &ua } else { &ub };
            assert!(
                err.contains(&format!("copying path '{DEP}' from '{from}")),
                "{tag}: {err}"
            );
        }
    }
    // A cache without `Priority:` has CppNix's default: firn picks as CppNix does.
    set_priority(&dir_a, None);
    set_priority(&dir_b, Some(10));
    let mut picks = Vec::new();
    for tool in TOOLS {
        a.reset();
        b.reset();
        let dst = e.store(&format!("dst-none-{}", tool.name()));
        let xdg = e.dir.join(format!("xdg-none-{}", tool.name()));
        let subs = format!("{ub} {ua}");
        let opts = [("substituters", subs.as_str()), ("require-sigs", "false")];
        realise_ok(tool, &dst, &xdg, &[DEP], &opts);
        picks.push((a.nar_requests(), b.nar_requests()));
    }
    eprintln!("no Priority line vs Priority 10: NAR requests to each (cppnix, firn): {picks:?}");
    assert_eq!(picks[0], picks[1], "no Priority line: cppnix, firn");
}

/// Signed caches: `a` (key A) holds X, `b` (key B) holds Y. What each configuration lets
/// `nix-store -r X Y` fetch, firn as CppNix: `extra-substituters` and
/// `extra-trusted-public-keys` add to `substituters` and `trusted-public-keys` (on the command
/// line, in `NIX_CONFIG`, or split between them), and a later plain `substituters` replaces
/// what came before.
#[test]
fn extra_substituters_add_to_substituters() {
    let e = env();
    let store = e.store("src");
    register_files(&store, &[(X, "x\n", &[]), (Y, "y\n", &[])]);
    let mut keys = Vec::new();
    for name in ["a", "b"] {
        let (sk, pk) = (
            e.dir.join(format!("{name}.sk")),
            e.dir.join(format!("{name}.pk")),
        );
        ok(cppnix("nix-store")
            .args(["--generate-binary-cache-key", &format!("cache-{name}-1")])
            .arg(&sk)
            .arg(&pk));
        keys.push((
            sk.display().to_string(),
            std::fs::read_to_string(&pk).expect("reading a public key"),
        ));
    }
    let (ca, cb) = (e.dir.join("cache-a"), e.dir.join("cache-b"));
    make_cache(
        &store,
        &ca,
        &format!("?compression=none&secret-key={}", keys[0].0),
        &[X],
    );
    make_cache(
        &store,
        &cb,
        &format!("?compression=none&secret-key={}", keys[1].0),
        &[Y],
    );
    let (ua, ub) = (
        format!("file://{}", ca.display()),
        format!("file://{}", cb.display()),
    );
    let (ka, kb) = (keys[0].1.trim(), keys[1].1.trim());
    // (name, NIX_CONFIG, command-line options, (X fetched, Y fetched)).
    type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, (bool, bool));
    let cases: Vec<Case> = vec![
        (
            "options",
            String::new(),
            vec![
                ("substituters", &ua),
                ("extra-substituters", &ub),
                ("trusted-public-keys", ka),
                ("extra-trusted-public-keys", kb),
            ],
            (true, true),
        ),
        (
            "nix-config",
            format!(
                "substituters = {ua}\nextra-substituters = {ub}\ntrusted-public-keys = {ka}\nextra-trusted-public-keys = {kb}"
            ),
            vec![],
            (true, true),
        ),
        (
            "config-then-extra-option",
            format!("substituters = {ua}\ntrusted-public-keys = {ka} {kb}"),
            vec![("extra-substituters", &ub)],
            (true, true),
        ),
        (
            "only-extra",
            format!("trusted-public-keys = {ka} {kb}"),
            vec![("extra-substituters", &ub)],
            (false, true),
        ),
        (
            "extra-then-plain-replaces",
            format!("extra-substituters = {ub}\ntrusted-public-keys = {ka} {kb}"),
            vec![("substituters", &ua)],
            (true, false),
        ),
        (
            "extra-without-its-key",
            String::new(),
            vec![
                ("substituters", &ua),
                ("extra-substituters", &ub),
                ("trusted-public-keys", ka),
            ],
            (true, false),
        ),
    ];
    for (name, conf, opts, want) in &cases {
        let mut seen = Vec::new();
        for tool in TOOLS {
            let dst = e.store(&format!("dst-{name}-{}", tool.name()));
            let mut c = tool.cmd("nix-store");
            c.env("XDG_CACHE_HOME", e.dir.join("xdg"))
                .args(["--store", &dst, "-r", X, Y]);
            if !conf.is_empty() {
                c.env("NIX_CONFIG", conf);
            }
            for (k, v) in opts {
                c.args(["--option", k, v]);
            }
            let out = c.output().expect("running nix-store -r");
            let got = (is_valid(&dst, X), is_valid(&dst, Y));
            assert_eq!(
                got,
                *want,
                "{} {name}: X, Y fetched ({}):\n{}",
                tool.name(),
                out.status,
                stderr(&out)
            );
            assert_eq!(
                out.status.success(),
                want.0 && want.1,
                "{} {name}",
                tool.name()
            );
            seen.push(out.status.code());
        }
        assert_eq!(seen[0], seen[1], "{name}: exit status of cppnix, firn");
    }
}

/// Each NAR is fetched once: two roots sharing a dependency, one of them asked for twice.
#[test]
fn each_nar_is_fetched_once() {
    let e = env();
    let store = shared_dep_store(&e);
    let dir = e.dir.join("cache");
    make_cache(&store, &dir, "?compression=none", &[ROOT1, ROOT2]);
    let server = CountingServer::start(dir, Duration::ZERO);
    let url = server.url();
    for tool in TOOLS {
        server.reset();
        let dst = e.store(&format!("dst-{}", tool.name()));
        let xdg = e.dir.join(format!("xdg-{}", tool.name()));
        let opts = [("substituters", url.as_str()), ("require-sigs", "false")];
        realise_ok(tool, &dst, &xdg, &[ROOT1, ROOT2, ROOT1], &opts);
        for p in [DEP, ROOT1, ROOT2] {
            assert!(is_valid(&dst, p), "{}: {p}", tool.name());
            assert_eq!(
                server.narinfo_requests(p),
                1,
                "{}: narinfo of {p}",
                tool.name()
            );
        }
        let nars = server.nar_counts();
        assert_eq!(nars.len(), 3, "{}: {nars:?}", tool.name());
        assert!(
            nars.iter().all(|(_, n)| *n == 1),
            "{}: {nars:?}",
            tool.name()
        );
    }
}

/// The narinfo disk cache over HTTP: a path the cache lacks is remembered as missing (not
/// asked for again) until `narinfo-cache-negative-ttl` runs out, which 0 makes at once;
/// likewise a narinfo that was found, with `narinfo-cache-positive-ttl`. Each tool keeps its
/// own disk cache here, then firn answers from the entries CppNix wrote.
#[test]
fn disk_cache_ttls() {
    let e = env();
    let store = shared_dep_store(&e);
    let dir = e.dir.join("cache");
    make_cache(&store, &dir, "?compression=none", &[DEP]);
    let server = CountingServer::start(dir, Duration::ZERO);
    let url = server.url();
    let subs = [("substituters", url.as_str()), ("require-sigs", "false")];
    let with = |name, value| {
        let mut v = subs.to_vec();
        v.push((name, value));
        v
    };
    let mut codes = Vec::new();
    for tool in TOOLS {
        server.reset();
        let t = tool.name();
        let xdg = e.dir.join(format!("xdg-{t}"));
        let dst = e.store(&format!("dst-{t}"));
        // Negative.
        let out = realise(tool, &dst, &xdg, &[MISSING], &subs);
        assert!(!out.status.success(), "{t}");
        codes.push(out.status.code());
        assert_eq!(server.narinfo_requests(MISSING), 1, "{t}: first lookup");
        let _ = realise(tool, &dst, &xdg, &[MISSING], &subs);
        assert_eq!(
            server.narinfo_requests(MISSING),
            1,
            "{t}: remembered as missing"
        );
        let _ = realise(
            tool,
            &dst,
            &xdg,
            &[MISSING],
            &with("narinfo-cache-negative-ttl", "0"),
        );
        // (CppNix 2.8's in-memory cache has the same TTL, so it asks more than once.)
        let asked = server.narinfo_requests(MISSING);
        eprintln!("{t}: with negative TTL 0, {} more request(s)", asked - 1);
        assert!(asked >= 2, "{t}: negative TTL 0");
        // The cache's `nix-cache-info` is remembered too (fetched by the first run only).
        assert_eq!(server.count("/nix-cache-info"), 1, "{t}: nix-cache-info");

        // Positive: each run into a new store, so that the path is fetched each time.
        for (i, (opts, asked_again)) in [
            (subs.to_vec(), true),
            (subs.to_vec(), false),
            (with("narinfo-cache-positive-ttl", "0"), true),
        ]
        .into_iter()
        .enumerate()
        {
            let before = server.narinfo_requests(DEP);
            let dst = e.store(&format!("pos-{t}-{i}"));
            realise_ok(tool, &dst, &xdg, &[DEP], &opts);
            let asked = server.narinfo_requests(DEP) - before;
            eprintln!("{t}: positive run {i}: {asked} narinfo request(s)");
            assert_eq!(asked > 0, asked_again, "{t}: run {i}: {asked} requests");
            if i == 0 {
                assert_eq!(asked, 1, "{t}: the first lookup");
            }
            assert_eq!(server.nar_requests(), i + 1, "{t}: run {i}");
        }
    }
    assert_eq!(
        codes[0], codes[1],
        "a missing path: exit status of cppnix, firn"
    );
    // firn reads the entries CppNix wrote: nothing is asked again.
    server.reset();
    let xdg = e.dir.join("xdg-cppnix");
    let _ = realise(Tool::Firn, &e.store("cross"), &xdg, &[MISSING], &subs);
    realise_ok(Tool::Firn, &e.store("cross"), &xdg, &[DEP], &subs);
    assert_eq!(
        server.narinfo_requests(MISSING),
        0,
        "firn after cppnix: missing"
    );
    assert_eq!(server.narinfo_requests(DEP), 0, "firn after cppnix: found");
    assert_eq!(
        server.count("/nix-cache-info"),
        0,
        "firn after cppnix: cache info"
    );
    assert_eq!(server.nar_requests(), 1);
}

/// `http-connections = 1`: a substitution of many paths completes with never more than one
/// request answered at once (each answer takes a while, so that parallel requests would
/// overlap; with the default firn's do).
#[test]
fn one_http_connection_is_enough() {
    let e = env();
    let store = e.store("src");
    let paths: Vec<String> = (0..8)
        .map(|i| format!("/nix/store/{i}hhhhhhhhhhhhhhhhhhhhhhhhhhhhhhh-p{i}"))
        .collect();
    let entries: Vec<(String, String)> = paths
        .iter()
        .enumerate()
        .map(|(i, p)| (p.clone(), format!("path {i}\n")))
        .collect();
    let reg: Vec<(&str, &str, &[&str])> = entries
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str(), &[] as &[&str]))
        .collect();
    register_files(&store, &reg);
    let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
    let dir = e.dir.join("cache");
    make_cache(&store, &dir, "?compression=none", &refs);
    let server = CountingServer::start(dir, Duration::from_millis(40));
    let url = server.url();
    for tool in TOOLS {
        for conns in ["1", "25"] {
            server.reset();
            let dst = e.store(&format!("dst-{}-{conns}", tool.name()));
            let xdg = e.dir.join(format!("xdg-{}-{conns}", tool.name()));
            let opts = [
                ("substituters", url.as_str()),
                ("require-sigs", "false"),
                ("http-connections", conns),
            ];
            realise_ok(tool, &dst, &xdg, &refs, &opts);
            assert!(refs.iter().all(|p| is_valid(&dst, p)), "{}", tool.name());
            assert_eq!(server.nar_requests(), paths.len(), "{}", tool.name());
            let most = server.max_in_flight();
            eprintln!(
                "{}: http-connections {conns}: at most {most} requests at once",
                tool.name()
            );
            if conns == "1" {
                assert_eq!(most, 1, "{}: http-connections 1", tool.name());
            } else if tool == Tool::Firn {
                assert!(most > 1, "firn: default http-connections: {most} at once");
            }
        }
    }
}

/// Random-looking bytes (xorshift), written to `path` a MiB at a time.
fn write_noise(path: &Path, len: usize) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut left = len;
    while left > 0 {
        let n = left.min(1 << 20);
        f.write_all(&noise_from(&mut state, n)).expect("write");
        left -= n;
    }
    f.flush().expect("flush");
}

/// Streaming: a 200 MiB path substituted over HTTP (uncompressed) with firn's peak resident
/// memory far below the NAR's size.
#[test]
fn a_large_nar_is_streamed() {
    const SIZE: usize = 200 << 20;
    let e = env();
    let src = e.store("src");
    let file = e.dir.join("big");
    write_noise(&file, SIZE);
    let p = ok_str(
        firn("nix-store")
            .args(["--store", &src, "--add"])
            .arg(&file),
    );
    let p = p.trim().to_string();
    std::fs::remove_file(&file).expect("rm");
    let dir = e.dir.join("cache");
    make_cache(&src, &dir, "?compression=none", &[&p]);
    std::fs::remove_dir_all(&src).expect("removing the source store");
    let server = CountingServer::start(dir, Duration::ZERO);
    let dst = e.store("dst");
    let c = firn("nix-store");
    let mut timed = Command::new("/usr/bin/time");
    timed.arg("-v").arg(c.get_program());
    for (k, v) in c.get_envs() {
        match v {
            Some(v) => timed.env(k, v),
            None => timed.env_remove(k),
        };
    }
    timed
        .env("XDG_CACHE_HOME", e.dir.join("xdg"))
        .args(["--store", &dst, "-r", &p])
        .args(["--option", "substituters", &server.url()])
        .args(["--option", "require-sigs", "false"]);
    let out = timed
        .output()
        .expect("running /usr/bin/time -v nix-store -r");
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(is_valid(&dst, &p));
    assert_eq!(
        std::fs::metadata(real(&dst, &p)).expect("stat").len(),
        SIZE as u64
    );
    let kib: u64 = err
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
        })
        .and_then(|v| v.trim().parse().ok())
        .expect("time -v reports the peak RSS");
    eprintln!(
        "firn: peak RSS {kib} KiB substituting a {} MiB NAR",
        SIZE >> 20
    );
    assert!(
        kib < 64 * 1024,
        "peak RSS {kib} KiB for a {} MiB NAR",
        SIZE >> 20
    );
}

/// `compression-level`: the same closure written with xz at levels 0 and 9 gives different
/// sizes (by firn, and by CppNix), and CppNix substitutes from both of firn's caches.
#[test]
fn compression_level_changes_xz_output() {
    let e = env();
    let src = e.store("src");
    // Text of words from a small vocabulary: compressible, and not in a few repeats.
    let words = [
        "store",
        "path",
        "narinfo",
        "cache",
        "build",
        "fetch",
        "hash",
        "closure",
        "derivation",
        "output",
        "sandbox",
        "substitute",
        "priority",
        "signature",
        "reference",
        "nix",
    ];
    let mut s: u64 = 0x2545_f491_4f6c_dd1d;
    let mut text = String::new();
    while text.len() < 2 << 20 {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        text.push_str(words[(s % words.len() as u64) as usize]);
        text.push(if s.is_multiple_of(13) { '\n' } else { ' ' });
    }
    let file = e.write("words", &text);
    let p = ok_str(
        firn("nix-store")
            .args(["--store", &src, "--add"])
            .arg(&file),
    );
    let p = p.trim().to_string();
    let mut sizes = HashMap::new();
    for tool in TOOLS {
        for level in ["0", "9"] {
            let dir = e.dir.join(format!("cache-{}-{level}", tool.name()));
            ok(tool
                .cmd("nix")
                .args(["copy", "--store", &src, "--to"])
                .arg(format!(
                    "file://{}?compression=xz&compression-level={level}",
                    dir.display()
                ))
                .arg(&p));
            let nar = nar_file(&dir, &p);
            assert!(nar.to_string_lossy().ends_with(".nar.xz"), "{nar:?}");
            let len = std::fs::metadata(&nar).expect("stat").len();
            eprintln!("{}: xz level {level}: {len} bytes", tool.name());
            sizes.insert((tool.name(), level), len);
        }
    }
    for tool in TOOLS {
        let t = tool.name();
        assert!(
            sizes[&(t, "0")] > sizes[&(t, "9")],
            "{t}: level 0 {} bytes, level 9 {} bytes",
            sizes[&(t, "0")],
            sizes[&(t, "9")]
        );
    }
    // CppNix reads both of firn's caches (a realisation that substitutes, checking the hash).
    for level in ["0", "9"] {
        let dst = e.store(&format!("dst-{level}"));
        let url = format!(
            "file://{}",
            e.dir.join(format!("cache-firn-{level}")).display()
        );
        realise_ok(
            Tool::CppNix,
            &dst,
            &e.dir.join("xdg"),
            &[&p],
            &[("substituters", &url), ("require-sigs", "false")],
        );
        assert_eq!(
            std::fs::read_to_string(real(&dst, &p)).expect("reading the path"),
            text,
            "level {level}"
        );
    }
}
