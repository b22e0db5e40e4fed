//! Uploads and the narinfo disk cache: `nix copy --to` a remote cache records what it uploads
//! in `binary-cache-v6.sqlite` as if it had been looked up and found, as CppNix 2.8 does (its
//! `BinaryCacheStore::writeNarInfo`); `file://` caches are not recorded by either.

mod common;

use std::path::Path;

use common::*;

const A: &str = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-up-a";
const B: &str = "/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-up-b";

/// The disk cache's rows for the cache at `url`, every column but ids and timestamps, NULLs
/// shown as such.
fn rows(xdg: &Path, url: &str) -> (Vec<String>, Vec<String>) {
    let db = rusqlite::Connection::open(xdg.join("nix/binary-cache-v6.sqlite")).expect("open");
    let caches = sorted_rows(
        &db,
        &format!(
            "select storeDir || ' ' || wantMassQuery || ' ' || priority from BinaryCaches where url = '{url}'"
        ),
    );
    let nars = sorted_rows(
        &db,
        &format!(
            "select quote(hashPart) || ' ' || quote(namePart) || ' ' || quote(NARs.url) || ' ' || quote(compression) || ' ' || quote(fileHash) || ' ' || quote(fileSize) || ' ' || quote(narHash) || ' ' || quote(narSize) || ' ' || quote(refs) || ' ' || quote(deriver) || ' ' || quote(sigs) || ' ' || quote(ca) || ' ' || present
             from NARs join BinaryCaches on NARs.cache = BinaryCaches.id where BinaryCaches.url = '{url}'"
        ),
    );
    (caches, nars)
}

fn copy(firn_side: bool, xdg: &Path, store: &str, to: &str) {
    let mut c = if firn_side {
        firn("nix")
    } else {
        cppnix("nix")
    };
    ok(c.env("XDG_CACHE_HOME", xdg)
        .args(["copy", "--store", store, "--to", to, B]));
}

#[test]
fn uploads_to_http_caches_are_recorded_as_cppnix_records_them() {
    let e = env();
    let store = e.store("s");
    register_files(&store, &[(A, "a\n", &[]), (B, "b\n", &[A])]);
    let (web_c, web_f) = (e.dir.join("web-c"), e.dir.join("web-f"));
    let url_c = format!("http://127.0.0.1:{}", put_server(web_c.clone()));
    let url_f = format!("http://127.0.0.1:{}", put_server(web_f.clone()));
    let (xdg_c, xdg_f) = (e.dir.join("xdg-c"), e.dir.join("xdg-f"));
    // Uncompressed, so that both write the same files.
    copy(false, &xdg_c, &store, &format!("{url_c}?compression=none"));
    copy(true, &xdg_f, &store, &format!("{url_f}?compression=none"));
    let (caches_c, nars_c) = rows(&xdg_c, &url_c);
    let (caches_f, nars_f) = rows(&xdg_f, &url_f);
    assert_eq!(caches_c, vec!["/nix/store 0 0"]);
    assert_eq!(caches_f, caches_c);
    assert_eq!(nars_c.len(), 2, "{nars_c:?}");
    assert!(nars_c.iter().all(|r| r.ends_with(" 1")), "{nars_c:?}");
    assert_eq!(nars_f, nars_c);

    // Lookups are answered from those rows: with the narinfos gone from the server, CppNix
    // still finds the paths firn uploaded, and firn substitutes from them.
    for p in [A, B] {
        let hash = &p["/nix/store/".len()..][..32];
        std::fs::remove_file(web_f.join(format!("{hash}.narinfo"))).expect("rm narinfo");
    }
    // Copied again, the paths count as there (the disk cache says so): neither uploads.
    for p in [A, B] {
        let hash = &p["/nix/store/".len()..][..32];
        std::fs::remove_file(web_c.join(format!("{hash}.narinfo"))).expect("rm narinfo");
    }
    copy(false, &xdg_c, &store, &format!("{url_c}?compression=none"));
    copy(true, &xdg_f, &store, &format!("{url_f}?compression=none"));
    for (web, side) in [(&web_c, "cppnix"), (&web_f, "firn")] {
        let narinfos = std::fs::read_dir(web)
            .expect("read web dir")
            .filter_map(|d| d.ok())
            .filter(|d| d.file_name().to_string_lossy().ends_with(".narinfo"))
            .count();
        assert_eq!(narinfos, 0, "{side} uploaded again");
    }
    let info = ok_str(cppnix("nix").env("XDG_CACHE_HOME", &xdg_f).args([
        "path-info",
        "--store",
        &url_f,
        B,
    ]));
    assert_eq!(info.trim(), B);
    let info =
        ok_str(
            firn("nix")
                .env("XDG_CACHE_HOME", &xdg_f)
                .args(["path-info", "--store", &url_f, B]),
        );
    assert_eq!(info.trim(), B);
    let dst = e.store("d");
    let out = firn("nix-store")
        .env("XDG_CACHE_HOME", &xdg_f)
        .args(["--store", &dst, "-r", B])
        .args(["--option", "substituters", &url_f])
        .args(["--option", "require-sigs", "false"])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!("copying path '{B}' from '{url_f}'")),
        "{err}"
    );
}

#[test]
fn uploads_to_file_caches_are_not_recorded() {
    let e = env();
    let store = e.store("s");
    register_files(&store, &[(A, "a\n", &[]), (B, "b\n", &[A])]);
    for firn_side in [false, true] {
        let xdg = e.dir.join(format!("xdg-{firn_side}"));
        // The file exists, so that an empty table can be told from no file.
        std::fs::create_dir_all(xdg.join("nix")).expect("mkdir");
        drop(rusqlite::Connection::open(xdg.join("nix/binary-cache-v6.sqlite")).expect("open"));
        let url = format!("file://{}", e.dir.join(format!("fc-{firn_side}")).display());
        copy(firn_side, &xdg, &store, &url);
        let db = rusqlite::Connection::open(xdg.join("nix/binary-cache-v6.sqlite")).expect("open");
        let tables = sorted_rows(
            &db,
            "select name from sqlite_master where type = 'table' and name = 'NARs'",
        );
        if !tables.is_empty() {
            assert_eq!(
                sorted_rows(&db, "select hashPart from NARs"),
                Vec::<String>::new(),
                "firn: {firn_side}"
            );
        }
    }
}
