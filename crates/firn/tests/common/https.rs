//! An HTTPS file server for the tests: rustls over `std::net`, serving a directory (a
//! `file://` cache's files) with GET and HEAD, one request per connection. Its certificate is
//! `tests/data/tls/server.pem` (for 127.0.0.1), signed by the test CA `tests/data/tls/ca.pem`.
//! Include it with `#[path = "common/https.rs"] mod https;` (only the tests that need TLS
//! link rustls).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::{ServerConfig, ServerConnection, StreamOwned};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A file in `tests/data/tls/`.
pub fn tls_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/tls")
        .join(name)
}

/// The test CA's certificate (the bundle that makes the server trusted).
pub fn test_ca() -> PathBuf {
    tls_fixture("ca.pem")
}

fn server_config() -> Arc<ServerConfig> {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(tls_fixture("server.pem"))
            .expect("opening the server certificate")
            .collect::<Result<_, _>>()
            .expect("parsing the server certificate");
    let key = PrivateKeyDer::from_pem_file(tls_fixture("server.key")).expect("the server key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("the server certificate and key");
    Arc::new(config)
}

/// Serve `dir` over HTTPS on a free port of 127.0.0.1 until the test process ends; returns
/// the port. Clients that refuse the certificate just end their connection.
pub fn https_server(dir: PathBuf) -> u16 {
    let config = server_config();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let config = config.clone();
            let dir = dir.clone();
            std::thread::spawn(move || {
                let _ = serve_one(config, tcp, &dir);
            });
        }
    });
    port
}

/// One request on one connection: the handshake, the request head, the answer.
fn serve_one(config: Arc<ServerConfig>, tcp: TcpStream, dir: &Path) -> std::io::Result<()> {
    tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
    let conn = ServerConnection::new(config).map_err(std::io::Error::other)?;
    let mut tls = StreamOwned::new(conn, tcp);
    // The request head, up to its blank line (a failed handshake ends here).
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if tls.read(&mut byte)? == 0 || head.len() > 16 * 1024 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    let mut words = head.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let rel = path.trim_start_matches('/');
    let file = (!rel.split('/').any(|c| c == ".." || c.is_empty()))
        .then(|| dir.join(rel))
        .and_then(|f| std::fs::read(f).ok());
    match (method, file) {
        ("GET" | "HEAD", Some(body)) => {
            write!(
                tls,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )?;
            if method == "GET" {
                tls.write_all(&body)?;
            }
        }
        ("GET" | "HEAD", None) => tls.write_all(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )?,
        _ => tls.write_all(
            b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )?,
    }
    tls.conn.send_close_notify();
    tls.flush()
}
