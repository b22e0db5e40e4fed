//! narinfo files against CppNix 2.8: the ones it writes to a `file://` binary cache parse and
//! print back byte for byte and their signatures verify; narinfos we sign are trusted by it.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use firn_format::narinfo::NarInfo;
use firn_format::signature::{PublicKey, PublicKeys, SecretKey};
use firn_format::{CacheInfo, StoreDir, StorePath};

fn narinfos(cache: &Path) -> Vec<(PathBuf, String)> {
    let mut v: Vec<(PathBuf, String)> = std::fs::read_dir(cache)
        .expect("listing the cache")
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "narinfo"))
        .map(|p| {
            let t = std::fs::read_to_string(&p).expect("reading a narinfo");
            (p, t)
        })
        .collect();
    v.sort();
    v
}

fn cppnix_trusts(cache: &str, p: &StorePath, pk: &str) -> bool {
    cppnix("nix")
        .args([
            "store",
            "verify",
            "--derivation",
            "--no-contents",
            "--store",
            cache,
        ])
        .args(["--option", "trusted-public-keys", pk])
        .arg(StoreDir::default().display(p))
        .output()
        .expect("running nix store verify")
        .status
        .success()
}

#[test]
fn cppnix_caches_roundtrip_and_verify() {
    let dir = Scratch::new("narinfo");
    let sd = StoreDir::default();
    let (sk_file, pk_file) = (dir.0.join("sk"), dir.0.join("pk"));
    run(cppnix("nix-store")
        .args(["--generate-binary-cache-key", "cache-1"])
        .arg(&sk_file)
        .arg(&pk_file));
    let pk_text = std::fs::read_to_string(&pk_file).expect("reading pk");
    let mut keys = PublicKeys::default();
    keys.insert(PublicKey::parse(&pk_text).expect("CppNix's key"));

    let (store, p) = unsigned_store(&dir.0);
    // A content-addressed path too, for the CA field.
    let file = dir.0.join("plain.txt");
    std::fs::write(&file, "plain").expect("writing a file");
    let ca_path = run(cppnix("nix-store")
        .arg("--store")
        .arg(&store)
        .arg("--add")
        .arg(&file));
    for (i, compression) in ["xz", "none"].iter().enumerate() {
        let cache = dir.0.join(format!("cache{i}"));
        let url = format!(
            "file://{}?compression={compression}&secret-key={}",
            cache.display(),
            sk_file.display()
        );
        run(cppnix("nix")
            .args(["copy", "--derivation", "--store"])
            .arg(&store)
            .args(["--to", &url])
            .arg(sd.display(&p)));
        run(cppnix("nix")
            .args(["copy", "--store"])
            .arg(&store)
            .args(["--to", &url])
            .arg(ca_path.trim()));
        let infos = narinfos(&cache);
        assert_eq!(infos.len(), 3, "the .drv, its input and the added file");
        let mut with_ca = 0;
        for (file, text) in infos {
            let n = NarInfo::parse(&sd, &text, &file.display().to_string())
                .expect("parsing CppNix's narinfo");
            assert_eq!(n.to_text(&sd), text, "{}", file.display());
            assert_eq!(n.compression, *compression);
            assert_eq!(
                format!("{}.narinfo", n.path.hash_part()),
                file.file_name().expect("a name").to_string_lossy()
            );
            assert_eq!(n.valid_signatures(&sd, &keys), 1, "{}", file.display());
            with_ca += usize::from(n.ca.is_some());
            assert_eq!(n.is_content_addressed(&sd), n.ca.is_some());
        }
        assert_eq!(with_ca, 1);
        let info = CacheInfo::parse(
            &std::fs::read_to_string(cache.join("nix-cache-info")).expect("nix-cache-info"),
        )
        .expect("parsing nix-cache-info");
        assert_eq!(info.to_text(), CacheInfo::new(&sd).to_text());
        assert!(info.check_store_dir(&sd, "cache").is_ok());
    }

    // Re-sign the .drv's narinfo with our own key only: CppNix trusts it under our key and no
    // longer under its own.
    let cache = dir.0.join("cache0");
    let cache_url = format!("file://{}", cache.display());
    assert!(cppnix_trusts(&cache_url, &p, &pk_text));
    let ours = SecretKey::generate("firn-cache-1");
    let file = cache.join(format!("{}.narinfo", p.hash_part()));
    let mut n = NarInfo::parse(
        &sd,
        &std::fs::read_to_string(&file).expect("reading"),
        "drv",
    )
    .expect("parsing");
    n.sigs.clear();
    n.sign(&sd, &ours).expect("signing");
    std::fs::write(&file, n.to_text(&sd)).expect("writing our narinfo");
    assert!(cppnix_trusts(&cache_url, &p, &ours.to_public().to_string()));
    assert!(!cppnix_trusts(&cache_url, &p, &pk_text));
    let listed = run(cppnix("nix")
        .args(["path-info", "--derivation", "--sigs", "--store", &cache_url])
        .arg(sd.display(&p)));
    assert!(
        listed.contains(n.sigs.iter().next().expect("one signature")),
        "{listed}"
    );
}

#[test]
fn malformed_narinfos_are_errors() {
    let sd = StoreDir::default();
    let good = "StorePath: /nix/store/ffffffffffffffffffffffffffffffff-x\nURL: nar/x.nar\nNarHash: sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73\nNarSize: 8\n";
    let n = NarInfo::parse(&sd, good, "good").expect("the minimal narinfo");
    assert_eq!(n.compression, "bzip2", "CppNix's default");
    for (bad, why) in [
        (good.replace("StorePath: /nix/store/ffffffffffffffffffffffffffffffff-x\n", ""), "no StorePath"),
        (good.replace("URL: nar/x.nar\n", ""), "no URL"),
        (good.replace("NarSize: 8", "NarSize: 0"), "NarSize"),
        (good.replace("NarSize: 8", "NarSize: eight"), "not a number"),
        (good.replace("sha256:0m", "sha256:"), "bad NarHash"),
        (good.replace("sha256:", ""), "bad NarHash"),
        (format!("{good}References: not-a-path\n"), "bad References"),
        (format!("{good}Deriver: x.drv\n"), "bad Deriver"),
        (format!("{good}CA: fixed:nonsense\n"), "bad CA"),
        (format!("{good}References: ffffffffffffffffffffffffffffffff-x\nReferences: ffffffffffffffffffffffffffffffff-x\n"), "twice"),
        (good.trim_end().to_string(), "newline"),
        (format!("{good}garbage\n"), "Key: value"),
    ] {
        let e = NarInfo::parse(&sd, &bad, "t.narinfo").expect_err(why);
        let msg = e.to_string();
        assert!(msg.contains("'t.narinfo' is corrupt") && msg.contains(why), "{msg}");
    }
}
