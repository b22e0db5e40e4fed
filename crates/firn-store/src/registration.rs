//! The registration format of `nix-store --dump-db`, `--load-db` and `--register-validity`:
//! for each path, lines `path`, [`narHash` (base16), `narSize`,] `deriver` (may be empty), the
//! number of references, then the references.

use std::collections::BTreeSet;
use std::io::BufRead;

use firn_format::{Hash, HashAlgo, StoreDir};

use crate::error::{Result, StoreError};
use crate::path_info::ValidPathInfo;

/// One record; without a given hash, `nar` is `None` and the caller hashes the path.
pub struct Registration {
    pub info: ValidPathInfo,
    pub hash_given: bool,
}

/// Read records until the end of the input.
pub fn read_registrations(
    sd: &StoreDir,
    input: &mut dyn BufRead,
    hash_given: bool,
) -> Result<Vec<Registration>> {
    let mut lines = input.lines();
    let mut next = |what: &str| -> Result<Option<String>> {
        match lines.next() {
            None => Ok(None),
            Some(Ok(l)) => Ok(Some(l)),
            Some(Err(e)) => Err(StoreError::Other(format!("reading {what}: {e}"))),
        }
    };
    let mut out = Vec::new();
    loop {
        let Some(path) = next("a path")? else { break };
        if path.is_empty() {
            break;
        }
        let path = sd.parse(&path)?;
        let eof = || StoreError::Other("unexpected end of registration input".into());
        let (hash, size) = if hash_given {
            let h = next("a hash")?.ok_or_else(eof)?;
            let hash = Hash::parse(&h, Some(HashAlgo::Sha256))
                .map_err(|e| StoreError::Other(e.to_string()))?;
            let s = next("a size")?.ok_or_else(eof)?;
            let size: u64 = s
                .trim()
                .parse()
                .map_err(|_| StoreError::Other(format!("number expected, got '{s}'")))?;
            (hash, size)
        } else {
            (Hash::digest(HashAlgo::Sha256, b""), 0)
        };
        let deriver = next("a deriver")?.ok_or_else(eof)?;
        let n = next("a count")?.ok_or_else(eof)?;
        let n: usize = n
            .trim()
            .parse()
            .map_err(|_| StoreError::Other(format!("number expected, got '{n}'")))?;
        let mut refs = BTreeSet::new();
        for _ in 0..n {
            let r = next("a reference")?.ok_or_else(eof)?;
            refs.insert(sd.parse(&r)?);
        }
        let mut info = ValidPathInfo::new(path, hash, size);
        info.references = refs;
        if !deriver.is_empty() {
            info.deriver = Some(sd.parse(&deriver)?);
        }
        out.push(Registration { info, hash_given });
    }
    Ok(out)
}
