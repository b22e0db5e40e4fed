//! Either end of a copy: the local store, a binary cache, or an `ssh://` store (a
//! `nix-store --serve` session), with the queries a copy needs, batched where the store
//! allows (a local store reads many paths in one transaction, an `ssh://` store answers many
//! in one round trip, a remote cache is asked several at once).

use std::collections::{BTreeSet, HashMap};
use std::io::Write;

use firn_format::{StoreDir, StorePath};
use firn_remote::serve::SshStore;
use firn_store::realisations::{DrvOutput, Realisation};
use firn_store::{LocalStore, ValidPathInfo};

use crate::cache::{narinfo_to_path_info, BinaryCache};
use crate::graph::parallel_map;
use crate::{CacheError, Result};

/// Either end of a copy (a command has one or two, so the size difference does not matter).
#[allow(clippy::large_enum_variant)]
pub enum AnyStore {
    Local(LocalStore),
    Cache(BinaryCache),
    /// `ssh://HOST`: a `nix-store --serve` session.
    Ssh(SshStore),
}

impl AnyStore {
    pub fn store_dir(&self) -> &StoreDir {
        match self {
            AnyStore::Local(s) => s.store_dir(),
            AnyStore::Cache(c) => c.store_dir(),
            AnyStore::Ssh(s) => s.store_dir(),
        }
    }

    /// A name for messages.
    pub fn describe(&self) -> String {
        match self {
            AnyStore::Local(s) => match &s.config().root {
                Some(r) => r.display().to_string(),
                None => "local".to_string(),
            },
            AnyStore::Cache(c) => c.uri().to_string(),
            AnyStore::Ssh(s) => s.uri(),
        }
    }

    pub fn query_info(&self, p: &StorePath) -> Result<Option<ValidPathInfo>> {
        Ok(match self {
            AnyStore::Local(s) => s.query_path_info(p)?,
            AnyStore::Cache(c) => c.query_narinfo(p)?.map(|ni| narinfo_to_path_info(&ni)),
            AnyStore::Ssh(s) => s
                .query_path_infos(std::slice::from_ref(p))
                .map_err(remote_err)?
                .into_iter()
                .find(|i| i.path == *p),
        })
    }

    pub fn is_valid(&self, p: &StorePath) -> Result<bool> {
        match self {
            AnyStore::Local(s) => Ok(s.is_valid_path(p)?),
            AnyStore::Cache(c) => c.has_narinfo(p),
            AnyStore::Ssh(s) => Ok(s
                .query_valid_paths(&BTreeSet::from([p.clone()]))
                .map_err(remote_err)?
                .contains(p)),
        }
    }

    /// Write the NAR of `p` (known to be valid, described by `info`).
    pub fn dump_nar(&self, p: &StorePath, out: &mut dyn Write) -> Result<()> {
        match self {
            AnyStore::Local(s) => Ok(s.nar_from_path(p, out)?),
            AnyStore::Ssh(s) => s.dump_nar(p, out).map_err(remote_err),
            AnyStore::Cache(c) => {
                let ni = c.query_narinfo(p)?.ok_or_else(|| {
                    CacheError::Other(format!(
                        "path '{}' is not valid in '{}'",
                        c.store_dir().display(p),
                        c.uri()
                    ))
                })?;
                let mut r = c.open_nar(&ni)?;
                std::io::copy(&mut r, out).map_err(|e| CacheError::Io {
                    op: "reading the NAR of",
                    key: ni.url.clone(),
                    cache: c.uri().to_string(),
                    source: e,
                })?;
                Ok(())
            }
        }
    }
}

impl AnyStore {
    /// The realisation of `id` (`ca-derivations`), if the store has one. An `ssh://` store
    /// (the `nix-store --serve` protocol) has no way to say.
    pub fn query_realisation(&self, id: &DrvOutput) -> Result<Option<Realisation>> {
        match self {
            AnyStore::Local(s) => Ok(s.query_realisation(id)?),
            AnyStore::Cache(c) => c.query_realisation(id),
            AnyStore::Ssh(s) => Err(CacheError::Other(format!(
                "querying the realisation of '{id}': '{}' does not support realisations",
                s.uri()
            ))),
        }
    }

    /// Record a realisation (its output path is there already). A cache signs it with its
    /// keys; a local store, given `trust`, refuses one without a valid signature by a trusted
    /// key (CppNix's `registerDrvOutput` with `checkSigs`).
    pub fn register_realisation(
        &self,
        r: &Realisation,
        trust: Option<&crate::TrustPolicy>,
    ) -> Result<()> {
        match self {
            AnyStore::Local(s) => {
                if let Some(t) = trust {
                    if t.require_sigs && crate::realisation::valid_signatures(r, &t.keys) == 0 {
                        return Err(CacheError::Other(format!(
                            "cannot register realisation '{}' because it lacks a valid signature",
                            r.out_path.base_name()
                        )));
                    }
                }
                Ok(s.register_realisation(r)?)
            }
            AnyStore::Cache(c) => c.write_realisation(r).map(|_| ()),
            AnyStore::Ssh(s) => Err(CacheError::Other(format!(
                "registering the realisation of '{}': '{}' does not support realisations",
                r.id,
                s.uri()
            ))),
        }
    }
}

impl AnyStore {
    /// The infos of `paths` (`None` for those not valid): a local store reads them in one
    /// transaction, an `ssh://` store in one round trip, a cache `jobs` at a time.
    pub fn query_infos(
        &self,
        paths: &[StorePath],
        jobs: usize,
    ) -> Result<Vec<Option<ValidPathInfo>>> {
        match self {
            AnyStore::Local(s) => Ok(s
                .query_path_infos(paths)?
                .into_iter()
                .map(|i| i.map(|i| (*i).clone()))
                .collect()),
            AnyStore::Ssh(s) => {
                let mut got: HashMap<StorePath, ValidPathInfo> = s
                    .query_path_infos(paths)
                    .map_err(remote_err)?
                    .into_iter()
                    .map(|i| (i.path.clone(), i))
                    .collect();
                Ok(paths.iter().map(|p| got.remove(p)).collect())
            }
            AnyStore::Cache(_) => parallel_map(paths, jobs, |p| self.query_info(p))
                .into_iter()
                .collect(),
        }
    }

    /// Which of `paths` are valid (as [`AnyStore::query_infos`]).
    pub fn query_valid(&self, paths: &[StorePath], jobs: usize) -> Result<Vec<bool>> {
        match self {
            AnyStore::Local(s) => Ok(s.are_valid_paths(paths)?),
            AnyStore::Ssh(s) => {
                let valid = s
                    .query_valid_paths(&paths.iter().cloned().collect())
                    .map_err(remote_err)?;
                Ok(paths.iter().map(|p| valid.contains(p)).collect())
            }
            AnyStore::Cache(_) => parallel_map(paths, jobs, |p| self.is_valid(p))
                .into_iter()
                .collect(),
        }
    }

    /// How many queries to have in flight: remote caches wait on the network; a local
    /// store, a file cache or an `ssh://` session answers at once.
    pub(crate) fn query_jobs(&self, jobs: usize) -> usize {
        match self {
            AnyStore::Cache(c) if c.remote => jobs.max(8),
            _ => 1,
        }
    }
}

pub(crate) fn remote_err(e: firn_remote::RemoteError) -> CacheError {
    CacheError::Other(e.to_string())
}
