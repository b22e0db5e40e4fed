//! Keys and signatures against CppNix 2.8: keys it generates load and sign exactly as it does;
//! keys we generate are accepted by it; signatures cross-verify.

mod common;

use std::path::Path;

use common::*;
use firn_format::signature::{fingerprint, KeyError, PublicKey, PublicKeys, SecretKey};
use firn_format::{Hash, StoreDir, StorePath};

/// The fingerprint of `p` in `store`, from CppNix's `path-info --json`.
fn fingerprint_of(store: &Path, p: &StorePath) -> String {
    let sd = StoreDir::default();
    let json = run(cppnix("nix")
        .args(["path-info", "--derivation", "--json", "--store"])
        .arg(store)
        .arg(sd.display(p)));
    let v: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    let info = &v[0];
    let nar_hash = Hash::parse(info["narHash"].as_str().expect("narHash"), None).expect("hash");
    let refs: Vec<StorePath> = info["references"]
        .as_array()
        .expect("references")
        .iter()
        .map(|r| sd.parse(r.as_str().expect("a string")).expect("a path"))
        .collect();
    assert!(!refs.is_empty(), "the test path should have references");
    fingerprint(
        &sd,
        p,
        &nar_hash,
        info["narSize"].as_u64().expect("narSize"),
        &refs,
    )
    .expect("fingerprint")
}

/// The signatures CppNix lists for `p`.
fn sigs_of(store: &Path, p: &StorePath) -> Vec<String> {
    let out = run(cppnix("nix")
        .args(["path-info", "--derivation", "--sigs", "--store"])
        .arg(store)
        .arg(StoreDir::default().display(p)));
    out.split_whitespace().skip(1).map(str::to_string).collect()
}

/// Does CppNix trust `p` in `store` when only `pk` is trusted?
fn cppnix_trusts(store: &Path, p: &StorePath, pk: &str) -> bool {
    cppnix("nix")
        .args([
            "store",
            "verify",
            "--derivation",
            "--no-contents",
            "--store",
        ])
        .arg(store)
        .args(["--option", "trusted-public-keys", pk])
        .arg(StoreDir::default().display(p))
        .output()
        .expect("running nix store verify")
        .status
        .success()
}

#[test]
fn cppnix_keys_load_and_sign_like_cppnix() {
    let dir = Scratch::new("sig-cppnix");
    let (sk_file, pk_file) = (dir.0.join("sk"), dir.0.join("pk"));
    run(cppnix("nix-store")
        .args(["--generate-binary-cache-key", "cppnix-1"])
        .arg(&sk_file)
        .arg(&pk_file));
    let sk_text = std::fs::read_to_string(&sk_file).expect("reading sk");
    let pk_text = std::fs::read_to_string(&pk_file).expect("reading pk");
    let sk = SecretKey::parse(&sk_text).expect("CppNix's secret key");
    let pk = PublicKey::parse(&pk_text).expect("CppNix's public key");
    assert_eq!(sk.to_string(), sk_text);
    assert_eq!(sk.to_public(), pk);
    assert_eq!(pk.to_string(), pk_text);

    let (store, p) = unsigned_store(&dir.0);
    assert!(!cppnix_trusts(&store, &p, &pk_text), "unsigned yet trusted");
    run(cppnix("nix")
        .args(["store", "sign", "--derivation", "--store"])
        .arg(&store)
        .arg("-k")
        .arg(&sk_file)
        .arg(StoreDir::default().display(&p)));
    let theirs = sigs_of(&store, &p);
    assert_eq!(theirs.len(), 1);
    let fp = fingerprint_of(&store, &p);
    // Ed25519 is deterministic: the same key over the same fingerprint gives the same bytes.
    assert_eq!(sk.sign(fp.as_bytes()), theirs[0]);
    assert!(pk.verify(fp.as_bytes(), &theirs[0]));
    assert!(!pk.verify(format!("{fp}x").as_bytes(), &theirs[0]));
    let mut keys = PublicKeys::default();
    keys.insert(pk);
    assert!(keys.verify(fp.as_bytes(), &theirs[0]));
    assert!(cppnix_trusts(&store, &p, &pk_text));
}

#[test]
fn our_keys_work_in_cppnix() {
    let dir = Scratch::new("sig-ours");
    let sk = SecretKey::generate("firn-1");
    let pk = sk.to_public();
    let sk_file = dir.0.join("sk");
    std::fs::write(&sk_file, sk.to_string()).expect("writing sk");
    // CppNix derives the same public key from our secret key.
    let mut conv = cppnix("nix")
        .args(["key", "convert-secret-to-public"])
        .stdin(std::fs::File::open(&sk_file).expect("opening sk"))
        .output()
        .expect("running nix key");
    assert!(
        conv.status.success(),
        "{}",
        String::from_utf8_lossy(&conv.stderr)
    );
    conv.stdout.retain(|b| *b != b'\n');
    assert_eq!(
        String::from_utf8(conv.stdout).expect("UTF-8"),
        pk.to_string()
    );

    // CppNix signs with our key; we verify. Its trust in the path follows our public key.
    let (store, p) = unsigned_store(&dir.0);
    run(cppnix("nix")
        .args(["store", "sign", "--derivation", "--store"])
        .arg(&store)
        .arg("-k")
        .arg(&sk_file)
        .arg(StoreDir::default().display(&p)));
    let theirs = sigs_of(&store, &p);
    let fp = fingerprint_of(&store, &p);
    assert_eq!(theirs, vec![sk.sign(fp.as_bytes())]);
    assert!(pk.verify(fp.as_bytes(), &theirs[0]));
    assert!(cppnix_trusts(&store, &p, &pk.to_string()));
    let stranger = SecretKey::generate("firn-1").to_public();
    assert!(!stranger.verify(fp.as_bytes(), &theirs[0]));
    assert!(!cppnix_trusts(&store, &p, &stranger.to_string()));
}

#[test]
fn malformed_keys_are_errors() {
    let sk = SecretKey::generate("k");
    let text = sk.to_string();
    let (name, b64) = text.split_once(':').expect("name:key");
    assert!(matches!(
        SecretKey::parse(b64),
        Err(KeyError::BadBase64 { .. }) | Err(KeyError::NoName(_))
    ));
    assert!(matches!(
        SecretKey::parse(&format!(":{b64}")),
        Err(KeyError::NoName(_))
    ));
    assert!(matches!(
        SecretKey::parse(&format!("{name}:{}", &b64[..40])),
        Err(KeyError::BadBase64 { .. }) | Err(KeyError::BadLength { .. })
    ));
    assert!(matches!(
        PublicKey::parse(&text),
        Err(KeyError::BadLength {
            expected: 32,
            got: 64,
            ..
        })
    ));
    assert!(matches!(
        SecretKey::parse(&sk.to_public().to_string()),
        Err(KeyError::BadLength {
            expected: 64,
            got: 32,
            ..
        })
    ));
    // A secret key whose public half belongs to another key.
    let other = SecretKey::generate("k").to_public().to_string();
    use data_encoding::BASE64;
    let mut bytes = BASE64.decode(b64.as_bytes()).expect("base64");
    let other_pub = BASE64
        .decode(other.split_once(':').expect("name:key").1.as_bytes())
        .expect("base64");
    bytes[32..].copy_from_slice(&other_pub);
    assert!(matches!(
        SecretKey::parse(&format!("k:{}", BASE64.encode(&bytes))),
        Err(KeyError::Inconsistent(_))
    ));
    // Signatures that are not ours to check are simply not valid.
    let pk = sk.to_public();
    assert!(!pk.verify(b"x", "k:!!!"));
    assert!(!pk.verify(b"x", "k:AAAA"));
    assert!(!pk.verify(b"x", "nocolon"));
}
