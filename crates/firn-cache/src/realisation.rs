//! Realisations in binary caches (`ca-derivations`), as CppNix 2.8 keeps them: one file per
//! derivation output, `realisations/<sha256:base16>!<output>.doi`, holding JSON with the keys
//! in sorted order and no spaces:
//! `{"dependentRealisations":{"<id>":"<base name>",...},"id":"<id>","outPath":"<base name>","signatures":[...]}`.
//! Output paths are store path base names (no store directory). A signature is made over the
//! same JSON without the `signatures` key (the fingerprint).

use std::collections::{BTreeMap, BTreeSet};

use firn_format::signature::{PublicKeys, SecretKey};
use firn_format::{Hash, StorePath};
use firn_store::realisations::{DrvOutput, Realisation};
use serde_json::Value;
use thiserror::Error;

/// A realisation file that cannot be read.
#[derive(Debug, Error)]
pub enum RealisationError {
    #[error("parsing realisation file '{file}': {why}")]
    Parse { file: String, why: String },
}

/// The cache key of the realisation of `id`.
pub fn key(id: &DrvOutput) -> String {
    format!("realisations/{id}.doi")
}

/// `hash!output` as CppNix's `DrvOutput::parse` reads it (any prefixed hash form).
pub fn parse_id(s: &str) -> Result<DrvOutput, String> {
    let (h, o) = s
        .split_once('!')
        .ok_or_else(|| format!("invalid derivation output id '{s}'"))?;
    let drv_hash = Hash::parse(h, None).map_err(|e| format!("bad hash in '{s}': {e}"))?;
    Ok(DrvOutput {
        drv_hash,
        output: o.to_string(),
    })
}

/// The file's contents for `r`.
pub fn to_json(r: &Realisation) -> String {
    r.to_json(true)
}

/// What signatures of `r` are made over: its JSON without the `signatures` key.
pub fn fingerprint(r: &Realisation) -> String {
    r.fingerprint()
}

/// Add a signature by `key`.
pub fn sign(r: &mut Realisation, key: &SecretKey) {
    r.sign(key)
}

/// How many of `r`'s signatures are valid signatures by `keys`.
pub fn valid_signatures(r: &Realisation, keys: &PublicKeys) -> usize {
    let fp = fingerprint(r);
    r.signatures
        .iter()
        .filter(|s| keys.verify(fp.as_bytes(), s))
        .count()
}

/// Read a realisation file (`file` names it in errors). As CppNix: `id` and `outPath` are
/// required, `signatures` and `dependentRealisations` optional.
pub fn parse(text: &[u8], file: &str) -> Result<Realisation, RealisationError> {
    let bad = |why: String| RealisationError::Parse {
        file: file.to_string(),
        why,
    };
    let v: Value = serde_json::from_slice(text).map_err(|e| bad(e.to_string()))?;
    let obj = v
        .as_object()
        .ok_or_else(|| bad("not a JSON object".into()))?;
    let field = |name: &str| -> Result<&str, RealisationError> {
        match obj.get(name) {
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(bad(format!("field '{name}' is not a string"))),
            None => Err(bad(format!("missing field '{name}'"))),
        }
    };
    let path = |s: &str| StorePath::from_base_name(s).map_err(|e| bad(format!("'{s}': {e}")));
    let id = parse_id(field("id")?).map_err(bad)?;
    let out_path = path(field("outPath")?)?;
    let mut signatures = BTreeSet::new();
    match obj.get("signatures") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) => {
            for s in a {
                let s = s
                    .as_str()
                    .ok_or_else(|| bad("a signature is not a string".into()))?;
                signatures.insert(s.to_string());
            }
        }
        Some(_) => return Err(bad("field 'signatures' is not a list".into())),
    }
    let mut dependent = BTreeMap::new();
    match obj.get("dependentRealisations") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, p) in m {
                let p = p
                    .as_str()
                    .ok_or_else(|| bad(format!("dependent realisation '{k}' is not a string")))?;
                dependent.insert(parse_id(k).map_err(bad)?, path(p)?);
            }
        }
        Some(_) => return Err(bad("field 'dependentRealisations' is not an object".into())),
    }
    Ok(Realisation {
        id,
        out_path,
        signatures,
        dependent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // A realisation file CppNix 2.8 wrote (`nix copy --to file://...` after a build with
    // `secret-key-files`), and the public key of the key that signed it.
    const CPPNIX: &str = r#"{"dependentRealisations":{"sha256:9a6be1b14569ad770d4c2469ef5dbe3686f07326371e8cb002f6da24ddfef734!out":"4ak3j2nay70ar2l1v4pwl52fwxnbr568-ca-a"},"id":"sha256:5ea34968fff8187dfb7602cd9388370bda14005c8c8dce5c39dc4ae31f1a8780!out","outPath":"dvz2d27kkx07wkhrjz1s4arj2wifmj87-ca-b","signatures":["test-1:GHO+We0fFoO9bYOubM5zXYOVfW4v2nhgX/eCkO9tvrGp0tVA2fxlrkP3cY0JcVx5HT9g0htDsY52essuCfaJBg=="]}"#;
    const PUBLIC: &str = "test-1:vs2fuPsljtmw+vrtwkX2KSdbWQkfDvWAAveSCZN5jlk=";

    #[test]
    fn cppnix_file_round_trips_and_verifies() {
        let r = parse(CPPNIX.as_bytes(), "x.doi").unwrap();
        assert_eq!(
            r.out_path.base_name(),
            "dvz2d27kkx07wkhrjz1s4arj2wifmj87-ca-b"
        );
        assert_eq!(r.dependent.len(), 1);
        assert_eq!(to_json(&r), CPPNIX);
        assert_eq!(key(&r.id), "realisations/sha256:5ea34968fff8187dfb7602cd9388370bda14005c8c8dce5c39dc4ae31f1a8780!out.doi");
        let mut keys = PublicKeys::default();
        keys.insert(firn_format::signature::PublicKey::parse(PUBLIC).unwrap());
        assert_eq!(valid_signatures(&r, &keys), 1);
        // Another output path: the signature no longer holds.
        let mut other = r.clone();
        other.out_path =
            StorePath::from_base_name("4ak3j2nay70ar2l1v4pwl52fwxnbr568-ca-a").unwrap();
        assert_eq!(valid_signatures(&other, &keys), 0);
    }

    #[test]
    fn signing_verifies_with_the_public_key() {
        let mut r = parse(CPPNIX.as_bytes(), "x.doi").unwrap();
        r.signatures.clear();
        let sk = SecretKey::generate("k");
        sign(&mut r, &sk);
        let mut keys = PublicKeys::default();
        keys.insert(sk.to_public());
        assert_eq!(valid_signatures(&r, &keys), 1);
    }

    #[test]
    fn bad_files_are_errors() {
        for bad in [
            "",
            "[]",
            r#"{"id":"x","outPath":"dvz2d27kkx07wkhrjz1s4arj2wifmj87-ca-b"}"#,
            r#"{"id":"sha256:5ea34968fff8187dfb7602cd9388370bda14005c8c8dce5c39dc4ae31f1a8780!out"}"#,
            r#"{"id":"sha256:5ea34968fff8187dfb7602cd9388370bda14005c8c8dce5c39dc4ae31f1a8780!out","outPath":"../x"}"#,
        ] {
            assert!(parse(bad.as_bytes(), "x.doi").is_err(), "{bad}");
        }
    }
}
