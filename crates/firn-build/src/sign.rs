//! `secret-key-files`: what a build registers is signed with each key, as CppNix 2.8 does —
//! every output it builds (and an output a `--check` made ultimately trusted) and, with
//! `ca-derivations`, the realisations of its outputs. Paths added or copied otherwise are not
//! signed. The keys are read when a build has something to sign, so a realisation that
//! builds nothing does not need them.

use std::path::{Path, PathBuf};

use firn_format::signature::{KeyError, SecretKey};
use firn_format::StoreDir;
use firn_store::realisations::Realisation;
use firn_store::ValidPathInfo;
use thiserror::Error;

/// A secret key that cannot be used, or a path that cannot be signed.
#[derive(Debug, Error)]
pub enum SignError {
    #[error("reading secret key file '{path}': {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing secret key file '{path}': {source}")]
    Parse { path: PathBuf, source: KeyError },
    #[error("signing '{path}': {why}")]
    Fingerprint { path: String, why: String },
}

/// The keys of `files` (the `secret-key-files` setting), in its order.
pub fn read_keys(files: &[PathBuf]) -> Result<Vec<SecretKey>, SignError> {
    files.iter().map(|f| read_key(f)).collect()
}

fn read_key(path: &Path) -> Result<SecretKey, SignError> {
    let text = std::fs::read_to_string(path).map_err(|source| SignError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    SecretKey::parse(&text).map_err(|source| SignError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

/// Add a signature by each of `keys` to `info` (over its fingerprint).
pub fn sign_path_info(
    sd: &StoreDir,
    info: &mut ValidPathInfo,
    keys: &[SecretKey],
) -> Result<(), SignError> {
    if keys.is_empty() {
        return Ok(());
    }
    let fp = info.fingerprint(sd).map_err(|e| SignError::Fingerprint {
        path: sd.display(&info.path),
        why: e.to_string(),
    })?;
    for k in keys {
        info.sigs.insert(k.sign(fp.as_bytes()));
    }
    Ok(())
}

/// Add a signature by each of `keys` to `r`.
pub fn sign_realisation(r: &mut Realisation, keys: &[SecretKey]) {
    for k in keys {
        r.sign(k);
    }
}
