//! What the store knows about a valid path.

use std::collections::BTreeSet;

use firn_format::signature::{fingerprint, FingerprintError, SecretKey};
use firn_format::{ContentAddress, Hash, StoreDir, StorePath};

/// A valid path's metadata: the `ValidPaths` row and its references.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidPathInfo {
    pub path: StorePath,
    pub deriver: Option<StorePath>,
    /// SHA-256 of the NAR serialisation.
    pub nar_hash: Hash,
    pub references: BTreeSet<StorePath>,
    /// Seconds since the epoch; 0 means "now" when registering.
    pub registration_time: i64,
    pub nar_size: u64,
    /// Built locally (trusted without signatures).
    pub ultimate: bool,
    pub sigs: BTreeSet<String>,
    pub ca: Option<ContentAddress>,
}

impl ValidPathInfo {
    /// Whether the path follows from its `ca` field and references: such paths need no
    /// signature.
    pub fn is_content_addressed(&self, sd: &StoreDir) -> bool {
        firn_format::narinfo::follows_from_ca(sd, &self.path, self.ca.as_ref(), &self.references)
    }

    pub fn new(path: StorePath, nar_hash: Hash, nar_size: u64) -> ValidPathInfo {
        ValidPathInfo {
            path,
            deriver: None,
            nar_hash,
            references: BTreeSet::new(),
            registration_time: 0,
            nar_size,
            ultimate: false,
            sigs: BTreeSet::new(),
            ca: None,
        }
    }

    /// The text a signature of this path signs (`1;<path>;<narHash>;<narSize>;<refs>`).
    pub fn fingerprint(&self, sd: &StoreDir) -> Result<String, FingerprintError> {
        fingerprint(
            sd,
            &self.path,
            &self.nar_hash,
            self.nar_size,
            &self.references,
        )
    }

    /// This path's signature by `key`.
    pub fn signature(&self, sd: &StoreDir, key: &SecretKey) -> Result<String, FingerprintError> {
        Ok(key.sign(self.fingerprint(sd)?.as_bytes()))
    }
}
