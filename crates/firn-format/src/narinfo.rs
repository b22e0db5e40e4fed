//! `.narinfo` files: a binary cache's metadata for one store path.
//!
//! A narinfo is `Key: value` lines: `StorePath`, `URL`, `Compression`, `FileHash`, `FileSize`,
//! `NarHash`, `NarSize`, `References` (base names), `Deriver`, `System`, any number of `Sig`,
//! and `CA`. Reading follows CppNix (unknown keys are ignored; `StorePath`, `NarHash`, `URL`
//! and a non-zero `NarSize` are required); printing uses its field order and hash forms
//! (`sha256:<nix32>`).

use std::collections::BTreeSet;

use thiserror::Error;

use crate::hash::{Hash, HashAlgo};
use crate::signature::{fingerprint, FingerprintError, PublicKeys, SecretKey};
use crate::store_path::{ContentAddress, StoreDir, StorePath};

pub use crate::cache_info::CacheInfo;

/// A narinfo that cannot be read.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum NarInfoError {
    #[error("NAR info file '{whence}' is corrupt: {why}")]
    Corrupt { whence: String, why: String },
}

/// The metadata of one path in a binary cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NarInfo {
    pub path: StorePath,
    /// Where the (compressed) NAR is, relative to the cache.
    pub url: String,
    /// `none`, `xz`, `bzip2`, `zstd`, ... (`bzip2` when the file does not say).
    pub compression: String,
    pub file_hash: Option<Hash>,
    pub file_size: u64,
    pub nar_hash: Hash,
    pub nar_size: u64,
    pub references: BTreeSet<StorePath>,
    pub deriver: Option<StorePath>,
    pub system: String,
    pub sigs: BTreeSet<String>,
    pub ca: Option<ContentAddress>,
}

impl NarInfo {
    /// A narinfo with only the required fields (and `Compression: none`).
    pub fn new(path: StorePath, url: String, nar_hash: Hash, nar_size: u64) -> NarInfo {
        NarInfo {
            path,
            url,
            compression: "none".into(),
            file_hash: None,
            file_size: 0,
            nar_hash,
            nar_size,
            references: BTreeSet::new(),
            deriver: None,
            system: String::new(),
            sigs: BTreeSet::new(),
            ca: None,
        }
    }

    /// Parse narinfo text; `whence` names it in errors (a URL or file).
    pub fn parse(sd: &StoreDir, text: &str, whence: &str) -> Result<NarInfo, NarInfoError> {
        let corrupt = |why: String| NarInfoError::Corrupt {
            whence: whence.to_string(),
            why,
        };
        let mut path = None;
        let mut url = String::new();
        let mut compression = String::new();
        let mut file_hash = None;
        let mut file_size = 0u64;
        let mut nar_hash = None;
        let mut nar_size = 0u64;
        let mut references = BTreeSet::new();
        let mut deriver = None;
        let mut system = String::new();
        let mut sigs = BTreeSet::new();
        let mut ca = None;
        for (n, line) in text.split_inclusive('\n').enumerate() {
            let n = n + 1;
            let Some(line) = line.strip_suffix('\n') else {
                return Err(corrupt(format!("line {n} does not end with a newline")));
            };
            let (key, value) = match line.split_once(": ") {
                Some(kv) => kv,
                None => match line.strip_suffix(':') {
                    Some(k) if !k.contains(':') => (k, ""),
                    _ => return Err(corrupt(format!("line {n} is not 'Key: value'"))),
                },
            };
            let hash = |v: &str| {
                Hash::parse(v, None).map_err(|e| corrupt(format!("bad {key} on line {n}: {e}")))
            };
            let num = |v: &str| {
                v.parse::<u64>()
                    .map_err(|_| corrupt(format!("bad {key} on line {n}: '{v}' is not a number")))
            };
            let base_name = |v: &str| {
                StorePath::from_base_name(v)
                    .map_err(|e| corrupt(format!("bad {key} on line {n}: {e}")))
            };
            match key {
                "StorePath" => {
                    path = Some(
                        sd.parse(value)
                            .map_err(|e| corrupt(format!("bad StorePath: {e}")))?,
                    )
                }
                "URL" => url = value.to_string(),
                "Compression" => compression = value.to_string(),
                "FileHash" => file_hash = Some(hash(value)?),
                "FileSize" => file_size = num(value)?,
                "NarHash" => nar_hash = Some(hash(value)?),
                "NarSize" => nar_size = num(value)?,
                "References" => {
                    // A second References line is an error only if the first named anything.
                    if !references.is_empty() {
                        return Err(corrupt(format!("References given twice (line {n})")));
                    }
                    for r in value.split(' ').filter(|r| !r.is_empty()) {
                        references.insert(base_name(r)?);
                    }
                }
                "Deriver" if value != "unknown-deriver" => deriver = Some(base_name(value)?),
                "Deriver" => {}
                "System" => system = value.to_string(),
                "Sig" => {
                    sigs.insert(value.to_string());
                }
                "CA" => {
                    if ca.is_some() {
                        return Err(corrupt(format!("CA given twice (line {n})")));
                    }
                    if !value.is_empty() {
                        ca = Some(
                            ContentAddress::parse(value)
                                .map_err(|e| corrupt(format!("bad CA on line {n}: {e}")))?,
                        );
                    }
                }
                // Unknown keys are ignored, as CppNix does.
                _ => {}
            }
        }
        if compression.is_empty() {
            compression = "bzip2".into();
        }
        let path = path.ok_or_else(|| corrupt("it has no StorePath".into()))?;
        let nar_hash = nar_hash.ok_or_else(|| corrupt("it has no NarHash".into()))?;
        if url.is_empty() {
            return Err(corrupt("it has no URL".into()));
        }
        if nar_size == 0 {
            return Err(corrupt("it has no NarSize, or a NarSize of 0".into()));
        }
        Ok(NarInfo {
            path,
            url,
            compression,
            file_hash,
            file_size,
            nar_hash,
            nar_size,
            references,
            deriver,
            system,
            sigs,
            ca,
        })
    }

    /// The text of the narinfo, in CppNix's field order.
    pub fn to_text(&self, sd: &StoreDir) -> String {
        let mut s = String::new();
        s.push_str(&format!("StorePath: {}\n", sd.display(&self.path)));
        s.push_str(&format!("URL: {}\n", self.url));
        s.push_str(&format!("Compression: {}\n", self.compression));
        if let Some(h) = &self.file_hash {
            s.push_str(&format!("FileHash: {h}\n"));
        }
        s.push_str(&format!("FileSize: {}\n", self.file_size));
        s.push_str(&format!("NarHash: {}\n", self.nar_hash));
        s.push_str(&format!("NarSize: {}\n", self.nar_size));
        let refs: Vec<&str> = self.references.iter().map(|r| r.base_name()).collect();
        s.push_str(&format!("References: {}\n", refs.join(" ")));
        if let Some(d) = &self.deriver {
            s.push_str(&format!("Deriver: {}\n", d.base_name()));
        }
        if !self.system.is_empty() {
            s.push_str(&format!("System: {}\n", self.system));
        }
        for sig in &self.sigs {
            s.push_str(&format!("Sig: {sig}\n"));
        }
        if let Some(ca) = &self.ca {
            s.push_str(&format!("CA: {ca}\n"));
        }
        s
    }

    /// The fingerprint signatures are made over.
    pub fn fingerprint(&self, sd: &StoreDir) -> Result<String, FingerprintError> {
        fingerprint(
            sd,
            &self.path,
            &self.nar_hash,
            self.nar_size,
            &self.references,
        )
    }

    /// Add a signature by `key`.
    pub fn sign(&mut self, sd: &StoreDir, key: &SecretKey) -> Result<(), FingerprintError> {
        let fp = self.fingerprint(sd)?;
        self.sigs.insert(key.sign(fp.as_bytes()));
        Ok(())
    }

    /// How many signatures verify with `keys` (not counting content addressing; see
    /// [`NarInfo::is_content_addressed`]).
    pub fn valid_signatures(&self, sd: &StoreDir, keys: &PublicKeys) -> usize {
        match self.fingerprint(sd) {
            Ok(fp) => self
                .sigs
                .iter()
                .filter(|s| keys.verify(fp.as_bytes(), s))
                .count(),
            Err(_) => 0,
        }
    }

    /// Does the path follow from its `CA` field and references? Such paths need no
    /// signature: CppNix trusts them fully.
    pub fn is_content_addressed(&self, sd: &StoreDir) -> bool {
        follows_from_ca(sd, &self.path, self.ca.as_ref(), &self.references)
    }
}

/// Whether `path` is the one its content address `ca` and its `references` make (CppNix's
/// `isContentAddressed`, for narinfos and for valid paths alike).
pub fn follows_from_ca(
    sd: &StoreDir,
    path: &StorePath,
    ca: Option<&ContentAddress>,
    references: &BTreeSet<StorePath>,
) -> bool {
    let Some(ca) = ca else {
        return false;
    };
    let self_ref = references.contains(path);
    if self_ref && matches!(ca, ContentAddress::Text(_)) {
        return false;
    }
    let others = references.iter().filter(|r| *r != path);
    sd.make_path_from_ca(path.name(), ca, others, self_ref)
        .is_ok_and(|p| p == *path)
}

/// Only SHA-256 NAR hashes are written to narinfo files by CppNix.
pub fn is_supported_nar_hash(h: &Hash) -> bool {
    h.algo() == HashAlgo::Sha256
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "StorePath: /nix/store/ffffffffffffffffffffffffffffffff-hello-2.12\n\
URL: nar/1w1fff338fvdw53sqgamddn1b2xgds473pv6y13gizdbqjv4i5p3.nar.xz\n\
Compression: xz\n\
FileHash: sha256:1w1fff338fvdw53sqgamddn1b2xgds473pv6y13gizdbqjv4i5p3\n\
FileSize: 41228\n\
NarHash: sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73\n\
NarSize: 206024\n\
References: 00000000000000000000000000000000-glibc ffffffffffffffffffffffffffffffff-hello-2.12\n\
Deriver: 11111111111111111111111111111111-hello-2.12.drv\n\
System: x86_64-linux\n\
Sig: cache.nixos.org-1:AAAA\n";

    #[test]
    fn roundtrip() {
        let sd = StoreDir::default();
        let n = NarInfo::parse(&sd, SAMPLE, "t").unwrap();
        assert_eq!(n.references.len(), 2);
        assert_eq!(n.to_text(&sd), SAMPLE);
        let fp = n.fingerprint(&sd).unwrap();
        assert!(
            fp.starts_with("1;/nix/store/ffffffffffffffffffffffffffffffff-hello-2.12;sha256:0mdq")
        );
        assert!(fp.ends_with(";206024;/nix/store/00000000000000000000000000000000-glibc,/nix/store/ffffffffffffffffffffffffffffffff-hello-2.12"));
    }

    #[test]
    fn signing_verifies() {
        let sd = StoreDir::default();
        let mut n = NarInfo::parse(&sd, SAMPLE, "t").unwrap();
        n.sigs.clear();
        let k = SecretKey::generate("k-1");
        n.sign(&sd, &k).unwrap();
        let mut keys = PublicKeys::default();
        keys.insert(k.to_public());
        assert_eq!(n.valid_signatures(&sd, &keys), 1);
        n.nar_size += 1;
        assert_eq!(n.valid_signatures(&sd, &keys), 0);
    }

    #[test]
    fn corrupt_inputs() {
        let sd = StoreDir::default();
        for bad in [
            "",
            "StorePath: /nix/store/ffffffffffffffffffffffffffffffff-x\n",
            &SAMPLE.replace("NarSize: 206024\n", ""),
            &SAMPLE.replace("NarHash: sha256:0", "NarHash: sha256:e"),
            &SAMPLE.replace("StorePath: /nix/store/", "StorePath: /tmp/"),
            &SAMPLE.replace("FileSize: 41228", "FileSize: -1"),
            &SAMPLE.replace("URL: ", "URL:"),
            &SAMPLE[..SAMPLE.len() - 1],
            &format!("{SAMPLE}References: x\n"),
        ] {
            assert!(NarInfo::parse(&sd, bad, "t").is_err(), "{bad:?}");
        }
    }
}
