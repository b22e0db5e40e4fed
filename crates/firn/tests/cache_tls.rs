//! HTTPS caches signed by a private CA, against CppNix 2.8: the CA bundle is the
//! `ssl-cert-file` setting, else `NIX_SSL_CERT_FILE`, else `SSL_CERT_FILE` (else the system's),
//! and only a server its certificates sign (or whose own certificate it holds) is trusted. (CppNix 2.8 reads only the two
//! variables; the setting, which wins over them, is current Nix's, so only firn is run with it.) The server is an in-process rustls one
//! (`common/https.rs`) over a `file://` cache's directory, with the fixed test CA and server
//! certificate of `tests/data/tls/`.

mod common;
#[path = "common/https.rs"]
mod https;

use std::path::Path;
use std::process::{Command, Output};

use common::*;
use https::*;

/// A store holding `top`, which refers to `data` (both content-addressed, so no signatures are
/// needed), copied by CppNix into a `file://` cache. Returns the store, the cache and `top`.
fn cache_with_closure(tmp: &Path) -> (String, std::path::PathBuf, String) {
    let store = store_dir(tmp, "src");
    let data = tmp.join("data");
    std::fs::create_dir_all(data.join("sub")).expect("mkdir");
    std::fs::write(data.join("a"), "a file\n").expect("write");
    std::fs::write(data.join("sub/b"), "another\n").expect("write");
    let data_path = ok_str(
        cppnix("nix-store")
            .args(["--store", &store, "--add"])
            .arg(&data),
    );
    let e = format!(
        r#"builtins.toFile "top" "uses ${{builtins.storePath "{}"}}""#,
        data_path.trim()
    );
    let top = ok_str(cppnix("nix-instantiate").args([
        "--store",
        &store,
        "--eval",
        "--read-write-mode",
        "-E",
        &e,
    ]));
    let top = top.trim().trim_matches('"').to_string();
    let cache = tmp.join("cache");
    ok(cppnix("nix")
        .args(["copy", "--store", &store, "--to"])
        .arg(format!("file://{}", cache.display()))
        .arg(&top));
    (store, cache, top)
}

/// `tool`'s command `name` (firn's or CppNix's) with no CA bundle from the environment and
/// a narinfo disk cache of its own (named `run`).
fn isolated(tool: fn(&str) -> Command, name: &str, tmp: &Path, run: &str) -> Command {
    let mut c = tool(name);
    c.env_remove("NIX_SSL_CERT_FILE")
        .env_remove("SSL_CERT_FILE")
        .env("XDG_CACHE_HOME", tmp.join(format!("xdg-{run}")));
    c
}

fn run(mut c: Command) -> Output {
    c.output().expect("running a command")
}

fn closure(store: &str, p: &str) -> Vec<String> {
    let paths = ok_str(cppnix("nix-store").args(["--store", store, "-qR", p]));
    with_nar_hashes(store, paths.lines())
}

/// How a command is told its CA bundle: environment variables, and the `ssl-cert-file`
/// setting if any.
type Bundle<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>);

/// `nix copy --from https://...` of `top` into the fresh store `dst`, by `tool` (firn or
/// CppNix), with `bundle` choosing the bundle.
fn copy_from(
    tool: fn(&str) -> Command,
    tmp: &Path,
    url: &str,
    dst: &str,
    top: &str,
    (vars, setting): Bundle<'_>,
) -> Output {
    let mut c = isolated(tool, "nix", tmp, &dst.replace('/', "_"));
    c.args(["copy", "--from", url, "--store", dst, top]);
    c.envs(vars.iter().copied());
    if let Some(f) = setting {
        c.args(["--option", "ssl-cert-file", f]);
    }
    run(c)
}

#[test]
fn https_caches_signed_by_a_private_ca() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let tmp = tmp.path();
    let (src, cache, top) = cache_with_closure(tmp);
    let port = https_server(cache);
    let url = format!("https://127.0.0.1:{port}");
    let ca = test_ca();
    let ca = ca.to_str().expect("a UTF-8 path");
    // A bundle without the test CA.
    let wrong = tls_fixture("other-ca.pem");
    // The server's own certificate (no CA): trusted by itself, as curl trusts it.
    let pinned = tls_fixture("server.pem");
    let pinned = pinned.to_str().expect("a UTF-8 path");
    let wrong = wrong.to_str().expect("a UTF-8 path");
    let missing = tmp.join("no-such-bundle.pem");
    let missing = missing.to_str().expect("a UTF-8 path");

    for (who, tool) in [("firn", firn as fn(&str) -> Command), ("cppnix", cppnix)] {
        // Trusted through each of the three ways of naming the bundle.
        let trusted: [(&str, Bundle); 5] = [
            ("nix-ssl-cert-file", (&[("NIX_SSL_CERT_FILE", ca)], None)),
            ("ssl-cert-file-var", (&[("SSL_CERT_FILE", ca)], None)),
            // The setting wins over the environment.
            ("setting", (&[("NIX_SSL_CERT_FILE", wrong)], Some(ca))),
            ("pinned", (&[("NIX_SSL_CERT_FILE", pinned)], None)),
            // NIX_SSL_CERT_FILE wins over SSL_CERT_FILE.
            (
                "nix-var-first",
                (&[("NIX_SSL_CERT_FILE", ca), ("SSL_CERT_FILE", wrong)], None),
            ),
        ];
        for (how, bundle) in trusted {
            if who == "cppnix" && how.contains("setting") {
                continue;
            }
            let dst = store_dir(tmp, &format!("{who}-{how}"));
            let out = copy_from(tool, tmp, &url, &dst, &top, bundle);
            assert!(
                out.status.success(),
                "{who} ({how}): {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(closure(&src, &top), closure(&dst, &top), "{who} ({how})");
        }

        // Refused: no bundle that has the CA (the system's, if any), a wrong one, a missing
        // one. Nothing is copied.
        let refused: [(&str, Bundle); 4] = [
            ("none", (&[], None)),
            ("wrong", (&[("NIX_SSL_CERT_FILE", wrong)], None)),
            ("wrong-setting", (&[("NIX_SSL_CERT_FILE", ca)], Some(wrong))),
            ("missing", (&[("NIX_SSL_CERT_FILE", missing)], None)),
        ];
        for (how, bundle) in refused {
            if who == "cppnix" && how.contains("setting") {
                continue;
            }
            let dst = store_dir(tmp, &format!("{who}-refused-{how}"));
            let out = copy_from(tool, tmp, &url, &dst, &top, bundle);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{who} ({how}) copied: {err}");
            assert!(!is_valid(&dst, &top), "{who} ({how})");
            if who == "firn" {
                let why = match how {
                    "missing" => missing,
                    _ => "UnknownIssuer",
                };
                assert!(err.contains(why), "{who} ({how}): {err}");
            }
        }
    }

    // Substitution (`nix-store -r` with the cache as a substituter) with the CA trusted.
    for (who, tool) in [("firn", firn as fn(&str) -> Command), ("cppnix", cppnix)] {
        for trusted in [true, false] {
            let dst = store_dir(tmp, &format!("{who}-subst-{trusted}"));
            let mut c = isolated(tool, "nix-store", tmp, &format!("{who}-subst-{trusted}"));
            c.args(["--store", &dst, "-r", &top])
                .args(["--option", "substituters", &url]);
            if trusted {
                c.env("NIX_SSL_CERT_FILE", ca);
            }
            let out = run(c);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.success(), trusted, "{who} ({trusted}): {err}");
            assert_eq!(is_valid(&dst, &top), trusted, "{who} ({trusted})");
            if trusted {
                assert_eq!(closure(&src, &top), closure(&dst, &top), "{who}");
            }
        }
    }
}
