//! `firn serve`: CppNix 2.8 copies closures from it (uncompressed, zstd and xz, signatures checked
//! against the server's key, or either of two keys) into fresh stores that then verify; raw
//! HTTP requests check the narinfo, ranges, listings, logs, HEAD, keep-alive, many connections
//! at once, and that bad paths, methods and oversized headers are refused.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;
use firn_cache::compression::Compression;

/// A running `firn serve`; killed when dropped (also when a test panics).
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(store: &str, extra: &[&str]) -> Server {
        let mut c = firn("nix");
        c.args(["serve", "--store", store, "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("starting firn serve");
        let stderr = child.stderr.take().expect("stderr is piped");
        let mut server = Server { child, port: 0 };
        let mut lines = BufReader::new(stderr).lines();
        for line in lines.by_ref() {
            let line = line.expect("reading the server's stderr");
            if let Some(addr) = line.strip_prefix("firn serve: listening on http://") {
                let port = addr.rsplit(':').next().expect("an address with a port");
                server.port = port.parse().expect("a port number");
                break;
            }
        }
        assert!(server.port != 0, "firn serve did not start");
        // Keep draining the log so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some((200, _, body)) = server.try_get("/nix-cache-info") {
                assert!(String::from_utf8_lossy(&body).contains("StoreDir: /nix/store"));
                break;
            }
            assert!(Instant::now() < deadline, "firn serve does not answer");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn try_get(&self, path: &str) -> Option<(u16, String, Vec<u8>)> {
        request(
            self.port,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
    }

    /// `GET path`: status, head, body.
    fn get(&self, path: &str) -> (u16, String, Vec<u8>) {
        self.try_get(path).expect("the server answers")
    }

    fn raw(&self, req: &[u8]) -> Option<(u16, String, Vec<u8>)> {
        request(self.port, req)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Send `req` on a new connection and read until the server closes it; `None` when the
/// connection fails or is closed without an answer.
fn request(port: u16, req: &[u8]) -> Option<(u16, String, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    // The server may answer and close before reading all of an oversized request.
    let _ = s.write_all(req);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    parse_response(&out)
}

fn parse_response(out: &[u8]) -> Option<(u16, String, Vec<u8>)> {
    let end = out.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&out[..end]).into_owned();
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let mut body = out[end + 4..].to_vec();
    if header(&head, "transfer-encoding") == Some("chunked") {
        body = dechunk(&body)?;
    }
    Some((status, head, body))
}

/// The data of a `Transfer-Encoding: chunked` body.
fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&b[..eol]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        b = &b[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

const EXPR: &str = r#"
let
  bb = builtins.path { path = /usr/bin; name = "busybox"; filter = p: t: baseNameOf p == "busybox"; };
  mk = name: script: derivation {
    inherit name; system = "x86_64-linux"; builder = "${bb}/busybox"; args = [ "sh" "-c" script ];
  };
  dep = mk "dep" "echo dep-data > $out; echo building dep";
in mk "top" "echo building top; mkdir $out; echo ${dep} > $out/ref; ln -s ${bb}/busybox $out/bb; echo data > $out/file"
"#;

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    store: String,
    drv: String,
    /// The built output; its closure is itself, `dep` and the busybox source.
    top: String,
    closure: Vec<String>,
    pk: String,
    /// A key the server does not sign with.
    other_pk: String,
}

impl Fixture {
    fn new() -> Fixture {
        assert!(
            Path::new("/usr/bin/busybox").exists(),
            "the serve test needs /usr/bin/busybox (apt-get install busybox-static)"
        );
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let store = store_dir(&dir, "a");
        let file = dir.join("default.nix");
        std::fs::write(&file, EXPR).expect("write");
        let top = ok_str(
            firn("nix-build")
                .args(["--store", &store, "--no-out-link"])
                .args(["--option", "sandbox", "true"])
                .arg(&file),
        )
        .trim()
        .to_string();
        let drv = ok_str(firn("nix-instantiate").args(["--store", &store]).arg(&file))
            .trim()
            .to_string();
        let closure: Vec<String> =
            ok_str(cppnix("nix-store").args(["--store", &store, "-qR", &top]))
                .lines()
                .map(String::from)
                .collect();
        assert_eq!(closure.len(), 3, "{closure:?}");
        ok(cppnix("nix-store").current_dir(&dir).args([
            "--generate-binary-cache-key",
            "test-1",
            "sk",
            "pk",
        ]));
        let pk = std::fs::read_to_string(dir.join("pk")).expect("read pk");
        ok(cppnix("nix-store").current_dir(&dir).args([
            "--generate-binary-cache-key",
            "test-2",
            "sk2",
            "pk2",
        ]));
        let other_pk = std::fs::read_to_string(dir.join("pk2")).expect("read pk2");
        Fixture {
            _tmp: tmp,
            dir,
            store,
            drv,
            top,
            closure,
            pk,
            other_pk,
        }
    }

    fn sk(&self) -> String {
        self.dir.join("sk").to_string_lossy().into_owned()
    }

    /// A private narinfo disk cache for one client run.
    fn xdg(&self, name: &str) -> PathBuf {
        self.dir.join(format!("xdg-{name}"))
    }

    /// Each path of the closure is valid in `dst` with the same NAR hash and references, and
    /// `dst` verifies.
    fn check_copy(&self, dst: &str) {
        ok(cppnix("nix-store").args(["--store", dst, "--verify", "--check-contents"]));
        for p in &self.closure {
            for q in ["--hash", "--references", "--deriver"] {
                let a = ok_str(cppnix("nix-store").args(["--store", &self.store, "-q", q, p]));
                let b = ok_str(cppnix("nix-store").args(["--store", dst, "-q", q, p]));
                assert_eq!(a, b, "{q} of {p}");
            }
        }
    }

    /// `nix-store --dump` of a path of the store (a file-system path: the chroot's).
    fn dump(&self, p: &str) -> Vec<u8> {
        let real = Path::new(&self.store).join(p.trim_start_matches('/'));
        ok(cppnix("nix-store").arg("--dump").arg(real))
    }

    fn hash_part(p: &str) -> &str {
        let base = p.rsplit('/').next().expect("a store path");
        &base[..32]
    }
}

/// CppNix 2.8 copies the closure from the server, and substitutes it, uncompressed, zstd and
/// xz, only with the server's key trusted.
#[test]
fn cppnix_copies_from_firn_serve() {
    let f = Fixture::new();
    for (name, extra) in [
        ("none", vec![]),
        ("zstd", vec!["--compression", "zstd"]),
        ("xz", vec!["--compression", "xz"]),
    ] {
        let sk = f.sk();
        let mut args = vec!["--secret-key-file", sk.as_str()];
        args.extend(extra);
        let server = Server::start(&f.store, &args);
        let (status, _, info) = server.get(&format!("/{}.narinfo", Fixture::hash_part(&f.top)));
        assert_eq!(status, 200);
        let info = String::from_utf8(info).expect("UTF-8 narinfo");
        assert!(info.contains(&format!("Compression: {name}\n")), "{info}");
        let ext = Compression::parse(name).expect("a method").extension();
        let url_line = info.lines().find(|l| l.starts_with("URL: ")).unwrap_or("");
        assert!(url_line.ends_with(&format!(".nar{ext}")), "{info}");

        let dst = store_dir(&f.dir, &format!("copy-{name}"));
        ok(cppnix("nix")
            .env("XDG_CACHE_HOME", f.xdg(name))
            .args(["copy", "--from", &server.url(), "--store", &dst])
            .args(["--option", "trusted-public-keys", f.pk.trim()])
            .arg(&f.top));
        f.check_copy(&dst);
        // And substitutes from it when realising the path.
        let subst = store_dir(&f.dir, &format!("subst-{name}"));
        ok(cppnix("nix-store")
            .env("XDG_CACHE_HOME", f.xdg(&format!("subst-{name}")))
            .args(["--store", &subst, "-r", &f.top])
            .args(["--option", "substituters", &server.url()])
            .args(["--option", "trusted-public-keys", f.pk.trim()]));
        f.check_copy(&subst);

        // Another key trusted: the signatures do not verify and nothing is copied.
        let wrong = f.other_pk.trim();
        let bad = store_dir(&f.dir, &format!("bad-{name}"));
        let out = cppnix("nix")
            .env("XDG_CACHE_HOME", f.xdg(&format!("bad-{name}")))
            .args(["copy", "--from", &server.url(), "--store", &bad])
            .args(["--option", "trusted-public-keys", wrong])
            .arg(&f.top)
            .output()
            .expect("running nix copy");
        assert!(!out.status.success(), "copied without a trusted signature");
    }
}

/// firn's own binary-cache client copies from the server too.
#[test]
fn firn_copies_from_firn_serve() {
    let f = Fixture::new();
    let sk = f.sk();
    let server = Server::start(
        &f.store,
        &["--secret-key-file", &sk, "--compression", "zstd"],
    );
    let dst = store_dir(&f.dir, "copy-firn");
    ok(firn("nix")
        .env("XDG_CACHE_HOME", f.xdg("firn"))
        .args(["copy", "--from", &server.url(), "--store", &dst])
        .args(["--option", "trusted-public-keys", f.pk.trim()])
        .arg(&f.top));
    f.check_copy(&dst);
}

/// `--secret-key-file` given twice: every narinfo carries a signature by each key, and CppNix
/// 2.8 substitutes the closure when it trusts only the first key, and when it trusts only the
/// second.
#[test]
fn serve_signs_with_every_key() {
    let f = Fixture::new();
    let sk1 = f.sk();
    let sk2 = f.dir.join("sk2").to_string_lossy().into_owned();
    let server = Server::start(
        &f.store,
        &["--secret-key-file", &sk1, "--secret-key-file", &sk2],
    );
    for p in &f.closure {
        let (status, _, info) = server.get(&format!("/{}.narinfo", Fixture::hash_part(p)));
        assert_eq!(status, 200, "narinfo of {p}");
        let info = String::from_utf8(info).expect("UTF-8 narinfo");
        let sigs: Vec<&str> = info.lines().filter(|l| l.starts_with("Sig: ")).collect();
        assert_eq!(sigs.len(), 2, "{info}");
        assert!(sigs.iter().any(|s| s.starts_with("Sig: test-1:")), "{info}");
        assert!(sigs.iter().any(|s| s.starts_with("Sig: test-2:")), "{info}");
    }
    for (name, pk) in [("first", &f.pk), ("second", &f.other_pk)] {
        let subst = store_dir(&f.dir, &format!("two-keys-{name}"));
        ok(cppnix("nix-store")
            .env("XDG_CACHE_HOME", f.xdg(&format!("two-keys-{name}")))
            .args(["--store", &subst, "-r", &f.top])
            .args(["--option", "substituters", &server.url()])
            .args(["--option", "trusted-public-keys", pk.trim()]));
        f.check_copy(&subst);
    }
}

/// The HTTP side: narinfo, ranges, listings, logs, HEAD, keep-alive, concurrency, refusals.
#[test]
fn http_requests() {
    let f = Fixture::new();
    let sk = f.sk();
    let server = Server::start(&f.store, &["--secret-key-file", &sk, "--priority", "42"]);

    let (status, head, body) = server.get("/nix-cache-info");
    assert_eq!(status, 200);
    assert_eq!(header(&head, "content-type"), Some("text/x-nix-cache-info"));
    assert_eq!(
        body,
        b"StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 42\n"
    );

    // The narinfo: signed, with the references and deriver of the store.
    let h = Fixture::hash_part(&f.top);
    let (status, head, body) = server.get(&format!("/{h}.narinfo"));
    assert_eq!(status, 200);
    assert_eq!(header(&head, "content-type"), Some("text/x-nix-narinfo"));
    let info = String::from_utf8(body).expect("UTF-8 narinfo");
    assert!(info.contains(&format!("StorePath: {}\n", f.top)), "{info}");
    assert!(info.contains("Sig: test-1:"), "{info}");
    let nar_hash = ok_str(cppnix("nix-store").args(["--store", &f.store, "-q", "--hash", &f.top]));
    assert!(info.contains(&format!("NarHash: {nar_hash}")), "{info}");
    let drv_base = f.drv.rsplit('/').next().expect("a store path");
    assert!(info.contains(&format!("Deriver: {drv_base}\n")), "{info}");
    let url = info
        .lines()
        .find_map(|l| l.strip_prefix("URL: "))
        .expect("a URL line")
        .to_string();
    assert!(
        url.starts_with(&format!("nar/{h}-")) && url.ends_with(".nar"),
        "{url}"
    );

    // The NARs are byte for byte `nix-store --dump`, under both URL forms.
    for p in &f.closure {
        let dump = f.dump(p);
        let (status, head, body) = server.get(&format!("/nar/{}.nar", Fixture::hash_part(p)));
        assert_eq!(status, 200);
        assert_eq!(header(&head, "content-type"), Some("application/x-nix-nar"));
        assert!(body == dump, "the NAR of {p} differs from nix-store --dump");
        // Compressed as they are dumped (so sent chunked, of no length known before).
        for method in [Compression::Zstd, Compression::Xz] {
            let file = format!("/nar/{}.nar{}", Fixture::hash_part(p), method.extension());
            let (status, head, packed) = server.get(&file);
            assert_eq!(status, 200);
            assert_eq!(header(&head, "transfer-encoding"), Some("chunked"));
            let mut unpacked = Vec::new();
            method
                .decoder(Box::new(&packed[..]))
                .and_then(|mut d| d.read_to_end(&mut unpacked))
                .expect("a compressed stream");
            assert!(
                unpacked == dump,
                "the {} NAR of {p} differs from nix-store --dump",
                method.name()
            );
        }
    }
    let dump = f.dump(&f.top);
    let (status, _, body) = server.get(&format!("/{url}"));
    assert_eq!((status, body == dump), (200, true));
    // A NAR hash that is not the path's: not found.
    let wrong_url = format!("/nar/{h}-{}.nar", "1".repeat(52));
    assert_eq!(server.get(&wrong_url).0, 404);

    // Ranges.
    let range = |spec: &str| {
        server
            .raw(
                format!(
                    "GET /{url} HTTP/1.1\r\nHost: x\r\nRange: {spec}\r\nConnection: close\r\n\r\n"
                )
                .as_bytes(),
            )
            .expect("an answer")
    };
    let (status, head, body) = range("bytes=0-9");
    assert_eq!(status, 206);
    assert_eq!(body, &dump[..10]);
    let n = dump.len();
    let content_range = format!("bytes 0-9/{n}");
    assert_eq!(header(&head, "content-range"), Some(content_range.as_str()));
    let (status, _, body) = range(&format!("bytes={}-", n - 7));
    assert_eq!((status, body.as_slice()), (206, &dump[n - 7..]));
    let (status, head, _) = range(&format!("bytes={n}-"));
    assert_eq!(status, 416);
    let unsatisfiable = format!("bytes */{n}");
    assert_eq!(header(&head, "content-range"), Some(unsatisfiable.as_str()));

    // HEAD: the GET's headers, no body.
    let (status, head, body) = server
        .raw(format!("HEAD /{url} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .expect("an answer");
    assert_eq!((status, body.len()), (200, 0));
    let len = n.to_string();
    assert_eq!(header(&head, "content-length"), Some(len.as_str()));

    // The listing is CppNix's `.ls` for the same path.
    let cache = f.dir.join("lscache");
    ok(cppnix("nix")
        .args(["copy", "--store", &f.store, "--to"])
        .arg(format!("file://{}?write-nar-listing=true", cache.display()))
        .arg(&f.top));
    let expected = std::fs::read(cache.join(format!("{h}.ls"))).expect("CppNix's listing");
    let (status, head, body) = server.get(&format!("/{h}.ls"));
    assert_eq!(status, 200);
    assert_eq!(header(&head, "content-type"), Some("application/json"));
    assert_eq!(
        String::from_utf8_lossy(&body),
        String::from_utf8_lossy(&expected)
    );

    // Build logs, by derivation or by output.
    let (status, _, body) = server.get(&format!("/log/{drv_base}"));
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("building top"));
    let top_base = f.top.rsplit('/').next().expect("a store path");
    let (status, _, body) = server.get(&format!("/log/{top_base}"));
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("building top"));
    assert_eq!(
        server.get("/log/00000000000000000000000000000000-x.drv").0,
        404
    );

    // Keep-alive: two requests on one connection.
    let both = format!(
        "GET /{h}.narinfo HTTP/1.1\r\nHost: x\r\n\r\nGET /nix-cache-info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut s = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    s.write_all(both.as_bytes()).expect("write");
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read");
    let text = String::from_utf8_lossy(&out);
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
    assert!(text.ends_with("Priority: 42\n"), "{text}");

    // Many connections at once: all are open before any is answered.
    let conns: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(("127.0.0.1", server.port)).expect("connect"))
        .collect();
    let threads: Vec<_> = conns
        .into_iter()
        .map(|mut s| {
            let req = format!("GET /{h}.narinfo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            std::thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_secs(60)))
                    .expect("timeout");
                s.write_all(req.as_bytes()).expect("write");
                let mut out = Vec::new();
                s.read_to_end(&mut out).expect("read");
                parse_response(&out).map(|r| r.0)
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().expect("a client thread"), Some(200));
    }

    // Refusals: nothing outside the store, bad hashes, other methods, huge headers.
    for bad in [
        "/nar/../../etc/passwd",
        "/../../etc/passwd",
        "/nar/..%2f..%2fetc%2fpasswd",
        "/xxxx.narinfo",
        "/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee.narinfo",
        "/log/../../../etc/passwd",
        "/log/..%2f..%2fetc%2fpasswd",
        "/nar/",
        "/",
    ] {
        let (status, _, body) = server.get(bad);
        assert!(status == 400 || status == 404, "{bad}: {status}");
        assert!(!String::from_utf8_lossy(&body).contains("root:"), "{bad}");
    }
    assert_eq!(server.get(&format!("/{}.narinfo", "0".repeat(32))).0, 404);
    let (status, head, _) = server
        .raw(b"POST /nix-cache-info HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .expect("an answer");
    assert_eq!(status, 405);
    assert_eq!(header(&head, "allow"), Some("GET, HEAD"));
    let big = format!(
        "GET /nix-cache-info HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    match server.raw(big.as_bytes()) {
        None => {}
        Some((status, _, _)) => assert!(status == 431 || status == 400, "{status}"),
    }
    // Still serving.
    assert_eq!(server.get("/nix-cache-info").0, 200);
}

/// Substitution over HTTP: `nix-build`'s realisation fetches the closure from `firn serve`
/// instead of building it, and the narinfos it learnt go into the narinfo disk cache shared
/// with CppNix: with the server gone, CppNix still answers from what firn recorded, and the
/// other way round.
#[test]
fn substitution_over_http_shares_the_disk_cache() {
    let f = Fixture::new();
    let sk = f.sk();
    let server = Server::start(&f.store, &["--secret-key-file", &sk]);
    let url = server.url();
    let xdg = f.xdg("shared");
    let b = store_dir(&f.dir, "subst");
    let out = firn("nix-store")
        .env("XDG_CACHE_HOME", &xdg)
        .args(["--store", &b, "-r", &f.top])
        .args(["--option", "substituters", &url])
        .args(["--option", "trusted-public-keys", f.pk.trim()])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!("copying path '{}' from '{url}'", f.top)),
        "{err}"
    );
    f.check_copy(&b);
    // The realisation of the derivation itself also substitutes instead of building.
    let c = store_dir(&f.dir, "subst-drv");
    ok(firn("nix").args([
        "copy",
        "--no-check-sigs",
        "--store",
        &f.store,
        "--to",
        &c,
        &f.drv,
    ]));
    let out = firn("nix-store")
        .env("XDG_CACHE_HOME", &xdg)
        .args(["--store", &c, "-r", &f.drv])
        .args(["--option", "substituters", &url])
        .args(["--option", "trusted-public-keys", f.pk.trim()])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("building '"), "{err}");
    assert!(err.contains("will be fetched"), "{err}");

    drop(server);
    // CppNix, with the server gone, knows the cache and the path from firn's entries.
    let info = ok_str(cppnix("nix").env("XDG_CACHE_HOME", &xdg).args([
        "path-info",
        "--store",
        &url,
        &f.top,
    ]));
    assert_eq!(info.trim(), f.top);
    // And firn's planner answers a dry run from the same entries.
    let d = store_dir(&f.dir, "dry");
    let out = firn("nix-store")
        .env("XDG_CACHE_HOME", &xdg)
        .args(["--store", &d, "-r", "--dry-run", &f.top])
        .args(["--option", "substituters", &url])
        .args(["--option", "trusted-public-keys", f.pk.trim()])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("these 3 paths will be fetched"), "{err}");
}

/// A collector (CppNix's, then firn's) run while a NAR is being downloaded slowly does not
/// delete the path: the server holds it as a temporary root until the NAR is sent, and the
/// download completes with the right hash. Once the downloads are over, the root is given up
/// and the next collection deletes the path.
#[test]
fn gc_during_a_download_keeps_the_path() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = store_dir(tmp.path(), "s");
    // Many files, so the dump opens them one after another while it streams (a file already
    // open could still be read after its deletion); 48 MiB, more than socket buffers hold.
    let tree = tmp.path().join("big");
    std::fs::create_dir(&tree).expect("mkdir");
    let mut state: u64 = 0x9e3779b97f4a7c15;
    for i in 0..192 {
        let data = noise_from(&mut state, 256 * 1024);
        std::fs::write(tree.join(format!("f{i:03}")), data).expect("write");
    }
    let path = ok_str(
        firn("nix-store")
            .args(["--store", &store, "--add"])
            .arg(&tree),
    )
    .trim()
    .to_string();
    let valid = || {
        cppnix("nix-store")
            .args(["--store", &store, "--check-validity", &path])
            .output()
            .expect("run")
            .status
            .success()
    };
    let server = Server::start(&store, &[]);
    let (status, _, ni) = server.get(&format!("/{}.narinfo", Fixture::hash_part(&path)));
    assert_eq!(status, 200);
    let ni = String::from_utf8(ni).expect("utf-8 narinfo");
    let field = |k: &str| {
        ni.lines()
            .find_map(|l| l.strip_prefix(k))
            .expect("narinfo field")
            .to_string()
    };
    let url = format!("/{}", field("URL: "));
    let nar_hash = field("NarHash: ");

    for (name, gc) in [("cppnix", cppnix("nix-store")), ("firn", firn("nix-store"))] {
        let mut gc = gc;
        let mut conn = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
        conn.set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        write!(
            conn,
            "GET {url} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .expect("send");
        // Read the head and the first MiB, then stop reading: the server is mid-stream.
        let mut got = Vec::new();
        let mut buf = [0u8; 64 * 1024];
        while got.len() < (1 << 20) {
            let n = conn.read(&mut buf).expect("reading the response");
            assert!(n > 0, "the response ended early");
            got.extend_from_slice(&buf[..n]);
        }
        std::thread::sleep(Duration::from_millis(200));
        let out = gc.args(["--store", &store, "--gc"]).output().expect("gc");
        assert!(
            out.status.success(),
            "{name} GC: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(valid(), "{name}'s GC deleted a path being downloaded");
        conn.read_to_end(&mut got).expect("reading the rest");
        let (status, _, body) = parse_response(&got).expect("a response");
        assert_eq!(status, 200);
        let h = firn_format::Hash::digest(firn_format::HashAlgo::Sha256, &body)
            .encode(firn_format::HashFormat::Nix32, true);
        assert_eq!(h, nar_hash, "{name}: the NAR arrived damaged");
    }
    // The roots went with the downloads.
    let mut deleted = false;
    for _ in 0..50 {
        ok(cppnix("nix-store").args(["--store", &store, "--gc"]));
        if !valid() {
            deleted = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        deleted,
        "the server kept its temporary root after the download"
    );
}
