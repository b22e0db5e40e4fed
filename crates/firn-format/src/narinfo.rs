//! `.narinfo` files (a binary cache's metadata for one store path) and `nix-cache-info`.
//!
//! A narinfo is `Key: value` lines: `StorePath`, `URL`, `Compression`, `FileHash`, `FileSize`,
//! `NarHash`, `NarSize`, `References` (base names), `Deriver`, `System`, any number of `Sig`,
//! and `CA`. Printing uses CppNix's order and hash forms (`sha256:<nix32>`).

use std::collections::BTreeSet;

use thiserror::Error;

use crate::hash::{Hash, HashAlgo};
use crate::signature::{fingerprint, PublicKeys, SecretKey};
use crate::store_path::{ContentAddress, StoreDir, StorePath};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum NarInfoError {
    #[error("NAR info file '{whence}' is corrupt: {why}")]
    Corrupt { whence: String, why: String },
}

/// The metadata of one path in a binary cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NarInfo {
    pub path: StorePath,
    pub url: String,
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
        let mut references: Option<BTreeSet<StorePath>> = None;
        let mut deriver = None;
        let mut system = String::new();
        let mut sigs = BTreeSet::new();
        let mut ca = None;
        for (n, line) in text.split_inclusive('\n').enumerate() {
            let Some(line) = line.strip_suffix('\n') else {
                return Err(corrupt(format!(
                    "line {} does not end with a newline",
                    n + 1
                )));
            };
            let (key, value) = line
                .split_once(": ")
                .ok_or_else(|| corrupt(format!("line {} is not 'Key: value'", n + 1)))?;
            let hash =
                |v: &str| Hash::parse(v, None).map_err(|e| corrupt(format!("bad {key}: {e}")));
            let num = |v: &str| {
                v.parse::<u64>()
                    .map_err(|_| corrupt(format!("bad {key}: '{v}' is not a number")))
            };
            match key {
                "StorePath" => path = Some(sd.parse(value).map_err(|e| corrupt(e.to_string()))?),
                "URL" => url = value.to_string(),
                "Compression" => compression = value.to_string(),
                "FileHash" => file_hash = Some(hash(value)?),
                "FileSize" => file_size = num(value)?,
                "NarHash" => nar_hash = Some(hash(value)?),
                "NarSize" => nar_size = num(value)?,
                "References" => {
                    if references.is_some() {
                        return Err(corrupt("References given twice".into()));
                    }
                    let mut refs = BTreeSet::new();
                    for r in value.split(' ').filter(|r| !r.is_empty()) {
                        refs.insert(
                            StorePath::from_base_name(r).map_err(|e| corrupt(e.to_string()))?,
                        );
                    }
                    references = Some(refs);
                }
                "Deriver" if value != "unknown-deriver" => {
                    deriver =
                        Some(StorePath::from_base_name(value).map_err(|e| corrupt(e.to_string()))?);
                }
                "Deriver" => {}
                "System" => system = value.to_string(),
                "Sig" => {
                    sigs.insert(value.to_string());
                }
                "CA" => {
                    if ca.is_some() {
                        return Err(corrupt("CA given twice".into()));
                    }
                    ca = Some(ContentAddress::parse(value).map_err(|e| corrupt(e.to_string()))?);
                }
                // Unknown keys are ignored, as CppNix does.
                _ => {}
            }
        }
        if compression.is_empty() {
            compression = "bzip2".into();
        }
        let path = path.ok_or_else(|| corrupt("no StorePath".into()))?;
        let nar_hash = nar_hash.ok_or_else(|| corrupt("no NarHash".into()))?;
        if url.is_empty() {
            return Err(corrupt("no URL".into()));
        }
        if nar_size == 0 {
            return Err(corrupt("no NarSize".into()));
        }
        Ok(NarInfo {
            path,
            url,
            compression,
            file_hash,
            file_size,
            nar_hash,
            nar_size,
            references: references.unwrap_or_default(),
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
    pub fn fingerprint(&self, sd: &StoreDir) -> Result<String, &'static str> {
        fingerprint(
            sd,
            &self.path,
            &self.nar_hash,
            self.nar_size,
            &self.references,
        )
    }

    /// Add a signature by `key`.
    pub fn sign(&mut self, sd: &StoreDir, key: &SecretKey) -> Result<(), &'static str> {
        let fp = self.fingerprint(sd)?;
        self.sigs.insert(key.sign(fp.as_bytes()));
        Ok(())
    }

    /// How many signatures verify with `keys`.
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
}

/// `nix-cache-info`: what a binary cache says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheInfo {
    pub store_dir: String,
    pub want_mass_query: bool,
    pub priority: u32,
}

impl Default for CacheInfo {
    fn default() -> Self {
        CacheInfo {
            store_dir: "/nix/store".into(),
            want_mass_query: false,
            priority: 50,
        }
    }
}

impl CacheInfo {
    /// Parse, ignoring unknown keys (missing ones keep their defaults).
    pub fn parse(text: &str) -> Result<CacheInfo, NarInfoError> {
        let mut c = CacheInfo::default();
        for line in text.lines() {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let v = v.trim();
            match k.trim() {
                "StoreDir" => c.store_dir = v.to_string(),
                "WantMassQuery" => c.want_mass_query = v == "1",
                "Priority" => {
                    c.priority = v.parse().map_err(|_| NarInfoError::Corrupt {
                        whence: "nix-cache-info".into(),
                        why: format!("bad Priority '{v}'"),
                    })?
                }
                _ => {}
            }
        }
        Ok(c)
    }

    pub fn to_text(&self) -> String {
        format!(
            "StoreDir: {}\nWantMassQuery: {}\nPriority: {}\n",
            self.store_dir,
            if self.want_mass_query { 1 } else { 0 },
            self.priority
        )
    }
}

/// Only SHA-256 NAR hashes are signed and stored by Nix.
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

    #[test]
    fn cache_info() {
        let c = CacheInfo::parse("StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n").unwrap();
        assert!(c.want_mass_query);
        assert_eq!(c.priority, 40);
        assert_eq!(CacheInfo::parse(&c.to_text()).unwrap(), c);
    }
}
