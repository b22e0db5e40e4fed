//! What the builds of one realisation look up again and again, looked up once: the references
//! of valid store paths (input closures overlap from one build to the next), whether a store
//! path is a directory (its mount point in the sandbox must match), the outputs recorded for a
//! derivation, the temporary roots this process already holds, and the build users.
//!
//! All of it stays true while the realisation runs: a valid path's references and file type
//! are fixed by its contents, which never change, and the paths looked up here are temporary
//! roots, so no collector removes them meanwhile. (The store's own path-info cache is emptied
//! by every registration, that is after every build.)

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use firn_format::StorePath;
use firn_store::LocalStore;

use crate::plan::{output_paths, read_derivation};
use crate::users::{BuildUser, UserPool};
use crate::BuildError;

/// Lookups shared by the builds of one realisation (see the module documentation).
#[derive(Default)]
pub struct BuildCache {
    references: Mutex<HashMap<StorePath, Arc<[StorePath]>>>,
    is_dir: Mutex<HashMap<StorePath, bool>>,
    drv_outputs: Mutex<HashMap<StorePath, Arc<BTreeMap<String, StorePath>>>>,
    temp_roots: Mutex<HashSet<StorePath>>,
    users: OnceLock<Result<UserPool, String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl BuildCache {
    pub fn new() -> BuildCache {
        BuildCache::default()
    }

    /// `store.add_temp_root(p)`, once per path.
    pub fn add_temp_root(&self, store: &LocalStore, p: &StorePath) -> Result<(), BuildError> {
        if lock(&self.temp_roots).contains(p) {
            return Ok(());
        }
        store.add_temp_root(p)?;
        lock(&self.temp_roots).insert(p.clone());
        Ok(())
    }

    /// The references of a valid path.
    fn references(
        &self,
        store: &LocalStore,
        p: &StorePath,
    ) -> Result<Arc<[StorePath]>, BuildError> {
        if let Some(r) = lock(&self.references).get(p) {
            return Ok(r.clone());
        }
        let info = store.query_path_info_shared(p)?.ok_or_else(|| {
            BuildError::Other(format!(
                "dependency '{}' of the build is not valid",
                store.store_dir().display(p)
            ))
        })?;
        let refs: Arc<[StorePath]> = info.references.iter().cloned().collect();
        lock(&self.references).insert(p.clone(), refs.clone());
        Ok(refs)
    }

    /// The closure of `start` in the store; every path must be valid.
    pub fn closure(
        &self,
        store: &LocalStore,
        start: &BTreeSet<StorePath>,
    ) -> Result<BTreeSet<StorePath>, BuildError> {
        let mut done = BTreeSet::new();
        let mut todo: Vec<StorePath> = start.iter().cloned().collect();
        while let Some(p) = todo.pop() {
            if done.contains(&p) {
                continue;
            }
            let refs = self.references(store, &p)?;
            todo.extend(refs.iter().filter(|r| !done.contains(*r)).cloned());
            done.insert(p);
        }
        Ok(done)
    }

    /// Whether the valid path `p` is a directory (following a symbolic link, as a bind
    /// mount does).
    pub fn is_dir(&self, store: &LocalStore, p: &StorePath) -> Result<bool, BuildError> {
        if let Some(d) = lock(&self.is_dir).get(p) {
            return Ok(*d);
        }
        let real = store.real_path(p);
        let d = std::fs::metadata(&real)
            .map_err(|e| BuildError::io("getting attributes of path", &real, e))?
            .is_dir();
        lock(&self.is_dir).insert(p.clone(), d);
        Ok(d)
    }

    /// The output paths of `drv` by name: as recorded in the database, or from the `.drv`
    /// file when the database does not have all of `wanted`.
    pub fn derivation_outputs(
        &self,
        store: &LocalStore,
        drv: &StorePath,
        wanted: &BTreeSet<String>,
    ) -> Result<Arc<BTreeMap<String, StorePath>>, BuildError> {
        if let Some(o) = lock(&self.drv_outputs).get(drv) {
            if wanted.iter().all(|w| o.contains_key(w)) {
                return Ok(o.clone());
            }
        }
        let mut paths = store.query_derivation_outputs(drv)?;
        if !wanted.iter().all(|o| paths.contains_key(o)) {
            paths = output_paths(drv, &read_derivation(store, drv)?, store)?;
        }
        let paths = Arc::new(paths);
        lock(&self.drv_outputs).insert(drv.clone(), paths.clone());
        Ok(paths)
    }

    /// Take a free member of `group` (its members looked up on first use).
    pub fn build_user(&self, group: &str, state_dir: &Path) -> Result<BuildUser, BuildError> {
        let pool = self
            .users
            .get_or_init(|| UserPool::new(group, state_dir).map_err(|e| e.to_string()));
        match pool {
            Ok(p) => p.acquire(),
            Err(e) => Err(BuildError::Other(e.clone())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closure_and_type_lookups_are_remembered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalStore::open(firn_store::LocalStoreConfig {
            root: Some(dir.path().to_path_buf()),
            ..Default::default()
        })
        .expect("open store");
        let a = store.add_text("a", b"a", &BTreeSet::new()).expect("add a");
        let b = store
            .add_text("b", b"refers to a", &BTreeSet::from([a.clone()]))
            .expect("add b");
        let cache = BuildCache::new();
        let c = cache
            .closure(&store, &BTreeSet::from([b.clone()]))
            .expect("closure");
        assert_eq!(c, BTreeSet::from([a.clone(), b.clone()]));
        assert!(!cache.is_dir(&store, &a).expect("type"));
        // Remembered: the answers stay although the files are gone.
        std::fs::remove_file(store.real_path(&a)).expect("remove");
        assert!(!cache.is_dir(&store, &a).expect("type"));
        assert_eq!(
            cache
                .closure(&store, &BTreeSet::from([b]))
                .expect("closure"),
            c
        );
    }
}
