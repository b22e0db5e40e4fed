//! ed25519 keys and signatures in Nix's `name:base64` form, and the fingerprint Nix signs.
//!
//! A secret key is `name:base64(seed ‖ public key)` (64 bytes), a public key
//! `name:base64(public key)` (32 bytes), a signature `name:base64(signature)` (64 bytes). What
//! is signed for a store path is its fingerprint
//! `1;<path>;<sha256:nix32 NAR hash>;<NAR size>;<comma-separated reference paths>`.

use std::collections::{BTreeMap, BTreeSet};

use data_encoding::BASE64;
use ed25519_dalek::{Signer, Verifier};
use thiserror::Error;

use crate::hash::{Hash, HashFormat};
use crate::store_path::{StoreDir, StorePath};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("key '{0}' is not of the form 'name:base64'")]
    NoName(String),
    #[error("key named '{name}' is not valid base64")]
    BadBase64 { name: String },
    #[error("{what} named '{name}' has {got} bytes, expected {expected}")]
    BadLength {
        what: &'static str,
        name: String,
        got: usize,
        expected: usize,
    },
    #[error("secret key '{0}': its public half does not match its seed")]
    Inconsistent(String),
}

fn split_key(s: &str) -> Result<(&str, Vec<u8>), KeyError> {
    let (name, b64) = s
        .trim()
        .split_once(':')
        .filter(|(n, _)| !n.is_empty())
        .ok_or_else(|| KeyError::NoName(s.chars().take(40).collect()))?;
    let bytes = BASE64
        .decode(b64.as_bytes())
        .map_err(|_| KeyError::BadBase64 {
            name: name.to_string(),
        })?;
    Ok((name, bytes))
}

/// A signing key.
#[derive(Clone)]
pub struct SecretKey {
    pub name: String,
    key: ed25519_dalek::SigningKey,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey({})", self.name)
    }
}

impl SecretKey {
    /// A new random key.
    pub fn generate(name: &str) -> SecretKey {
        let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
        SecretKey {
            name: name.to_string(),
            key,
        }
    }

    pub fn parse(s: &str) -> Result<SecretKey, KeyError> {
        let (name, bytes) = split_key(s)?;
        let arr: [u8; 64] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::BadLength {
                what: "secret key",
                name: name.to_string(),
                got: bytes.len(),
                expected: 64,
            })?;
        let key = ed25519_dalek::SigningKey::from_keypair_bytes(&arr)
            .map_err(|_| KeyError::Inconsistent(name.to_string()))?;
        Ok(SecretKey {
            name: name.to_string(),
            key,
        })
    }

    pub fn to_public(&self) -> PublicKey {
        PublicKey {
            name: self.name.clone(),
            key: self.key.verifying_key(),
        }
    }

    /// `name:base64(signature)` of `data`.
    pub fn sign(&self, data: &[u8]) -> String {
        let sig = self.key.sign(data);
        format!("{}:{}", self.name, BASE64.encode(&sig.to_bytes()))
    }
}

impl std::fmt::Display for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}",
            self.name,
            BASE64.encode(&self.key.to_keypair_bytes())
        )
    }
}

/// A verifying key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    pub name: String,
    key: ed25519_dalek::VerifyingKey,
}

impl PublicKey {
    pub fn parse(s: &str) -> Result<PublicKey, KeyError> {
        let (name, bytes) = split_key(s)?;
        let arr: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::BadLength {
                what: "public key",
                name: name.to_string(),
                got: bytes.len(),
                expected: 32,
            })?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&arr)
            .map_err(|_| KeyError::Inconsistent(name.to_string()))?;
        Ok(PublicKey {
            name: name.to_string(),
            key,
        })
    }

    /// Does `sig` (`name:base64`) sign `data` with this key? A signature by another key name,
    /// or malformed, is simply not valid.
    pub fn verify(&self, data: &[u8], sig: &str) -> bool {
        let Some((name, b64)) = sig.split_once(':') else {
            return false;
        };
        if name != self.name {
            return false;
        }
        let Ok(bytes) = BASE64.decode(b64.as_bytes()) else {
            return false;
        };
        let Ok(arr) = <[u8; 64]>::try_from(bytes.as_slice()) else {
            return false;
        };
        let sig = ed25519_dalek::Signature::from_bytes(&arr);
        self.key.verify(data, &sig).is_ok()
    }
}

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.name, BASE64.encode(self.key.as_bytes()))
    }
}

/// Trusted public keys by name.
#[derive(Clone, Debug, Default)]
pub struct PublicKeys(pub BTreeMap<String, PublicKey>);

impl PublicKeys {
    pub fn insert(&mut self, k: PublicKey) {
        self.0.insert(k.name.clone(), k);
    }

    /// Is `sig` a valid signature of `data` by one of these keys?
    pub fn verify(&self, data: &[u8], sig: &str) -> bool {
        let name = sig.split_once(':').map(|(n, _)| n).unwrap_or("");
        self.0.get(name).is_some_and(|k| k.verify(data, sig))
    }
}

/// A fingerprint that cannot be made.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FingerprintError {
    #[error("cannot calculate fingerprint of path '{0}' because its size is not known")]
    UnknownSize(String),
}

/// The fingerprint of a store path that signatures are made over:
/// `1;<path>;<algo>:<nix32 NAR hash>;<NAR size>;<comma-separated full reference paths>`.
/// Like CppNix, any hash algorithm is printed (in practice NAR hashes are SHA-256); a NAR size
/// of 0 means unknown and is an error.
pub fn fingerprint<'a>(
    sd: &StoreDir,
    path: &StorePath,
    nar_hash: &Hash,
    nar_size: u64,
    references: impl IntoIterator<Item = &'a StorePath>,
) -> Result<String, FingerprintError> {
    if nar_size == 0 {
        return Err(FingerprintError::UnknownSize(sd.display(path)));
    }
    let refs: BTreeSet<&StorePath> = references.into_iter().collect();
    let refs: Vec<String> = refs.into_iter().map(|r| sd.display(r)).collect();
    Ok(format!(
        "1;{};{};{};{}",
        sd.display(path),
        nar_hash.encode(HashFormat::Nix32, true),
        nar_size,
        refs.join(",")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::HashAlgo;

    #[test]
    fn roundtrip_and_verify() {
        let sk = SecretKey::generate("cache.example.org-1");
        let sk2 = SecretKey::parse(&sk.to_string()).unwrap();
        let pk = PublicKey::parse(&sk2.to_public().to_string()).unwrap();
        let sig = sk2.sign(b"data");
        assert!(pk.verify(b"data", &sig));
        assert!(!pk.verify(b"other", &sig));
        let other = SecretKey::generate("cache.example.org-1").to_public();
        assert!(!other.verify(b"data", &sig));
        let mut keys = PublicKeys::default();
        keys.insert(pk);
        assert!(keys.verify(b"data", &sig));
        assert!(!keys.verify(b"data", "unknown:AAAA"));
    }

    #[test]
    fn bad_keys() {
        assert!(matches!(
            SecretKey::parse("nocolon"),
            Err(KeyError::NoName(_))
        ));
        assert!(matches!(
            SecretKey::parse("n:!!!"),
            Err(KeyError::BadBase64 { .. })
        ));
        assert!(matches!(
            PublicKey::parse("n:AAAA"),
            Err(KeyError::BadLength { .. })
        ));
    }

    #[test]
    fn fingerprint_form() {
        let sd = StoreDir::default();
        let p = sd
            .parse("/nix/store/ffffffffffffffffffffffffffffffff-x")
            .unwrap();
        let h = Hash::digest(HashAlgo::Sha256, b"");
        let fp = fingerprint(&sd, &p, &h, 8, [&p]).unwrap();
        assert_eq!(
            fp,
            format!(
                "1;{0};sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73;8;{0}",
                sd.display(&p)
            )
        );
    }
}
