//! narinfo files written by CppNix 2.8's `nix copy` to a signed `file://` cache: firn parses
//! them, prints them back byte for byte, and verifies their signatures.

mod common;

use common::*;
use firn_format::narinfo::{CacheInfo, NarInfo};
use firn_format::signature::{PublicKey, PublicKeys};
use firn_format::StoreDir;

#[test]
fn cppnix_narinfos_roundtrip_and_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let store = store_dir(tmp.path(), "s");
    // Two paths, one referencing the other and with a deriver, registered the CppNix way.
    ok(cppnix("nix-store").args(["--store", &store, "--init"]));
    let a = "/nix/store/00000000000000000000000000000000-a";
    let b = "/nix/store/11111111111111111111111111111111-b";
    let drv = "/nix/store/22222222222222222222222222222222-b.drv";
    let mut reg = String::new();
    for (p, data, refs, deriver) in [
        (a, "a\n".to_string(), vec![], ""),
        (b, format!("uses {a}\n"), vec![a], drv),
    ] {
        let real = std::path::Path::new(&store).join(p.trim_start_matches('/'));
        std::fs::write(&real, &data).unwrap();
        let nar = ok(firn("nix-store").arg("--dump").arg(&real));
        let h = firn_format::Hash::digest(firn_format::HashAlgo::Sha256, &nar);
        reg.push_str(&format!(
            "{p}\n{}\n{}\n{deriver}\n{}\n",
            h.to_base16(),
            nar.len(),
            refs.len()
        ));
        for r in refs {
            reg.push_str(&format!("{r}\n"));
        }
    }
    let out = run_with_input(
        cppnix("nix-store").args(["--store", &store, "--load-db"]),
        reg.as_bytes(),
    );
    assert!(out.status.success());
    let added = ok_str(
        cppnix("nix-store")
            .args(["--store", &store, "--add"])
            .arg(plain_file(tmp.path())),
    );
    let sk = tmp.path().join("sk");
    let pk = tmp.path().join("pk");
    ok(cppnix("nix-store")
        .arg("--generate-binary-cache-key")
        .arg("c-1")
        .arg(&sk)
        .arg(&pk));
    let cache = tmp.path().join("cache");
    ok(cppnix("nix")
        .args(["copy", "--store", &store, "--to"])
        .arg(format!(
            "file://{}?secret-key={}&compression=xz",
            cache.display(),
            sk.display()
        ))
        .arg(b)
        .arg(added.trim()));
    let sd = StoreDir::default();
    let mut keys = PublicKeys::default();
    keys.insert(PublicKey::parse(&std::fs::read_to_string(&pk).unwrap()).unwrap());
    let mut seen = 0;
    for e in std::fs::read_dir(&cache).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".narinfo") {
            continue;
        }
        let text = std::fs::read_to_string(e.path()).unwrap();
        let n = NarInfo::parse(&sd, &text, &name).unwrap();
        assert_eq!(n.to_text(&sd), text, "{name}");
        assert_eq!(n.valid_signatures(&sd, &keys), 1, "{name}");
        assert_eq!(format!("{}.narinfo", n.path.hash_part()), name);
        seen += 1;
    }
    assert_eq!(seen, 3, "b, a (its reference) and the added file");
    let info =
        CacheInfo::parse(&std::fs::read_to_string(cache.join("nix-cache-info")).unwrap()).unwrap();
    assert_eq!(info.store_dir, "/nix/store");
}

fn plain_file(dir: &std::path::Path) -> std::path::PathBuf {
    let p = dir.join("plain.txt");
    std::fs::write(&p, "plain").unwrap();
    p
}
