//! The local store: CppNix's on-disk layout and database, shared with it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use firn_format::{
    ContentAddress, FileIngestionMethod, Hash, HashAlgo, Hasher, StoreDir, StorePath,
};

use crate::canon::{canonicalise, delete_path};
use crate::config::{Layout, LocalStoreConfig};
use crate::db::{Db, SCHEMA_VERSION};
use crate::error::{io_err, Result, StoreError};
use crate::lock::{lock_file, open_lock_file, LockType, PathLocks};
use crate::nar_fs;
use crate::path_info::ValidPathInfo;

/// A local store (the real `/nix/store` or a chroot store).
pub struct LocalStore {
    config: LocalStoreConfig,
    layout: Layout,
    db: Mutex<Db>,
    _big_lock: Option<File>,
    pub(crate) temp_roots: Mutex<crate::temproots::LocalTempRoots>,
    tmp_counter: AtomicU64,
    /// This store object's staging directory (see [`LocalStore::temp_dir`]), once made.
    staging: Mutex<Option<PathBuf>>,
}

fn create_dirs(p: &Path) -> Result<()> {
    fs::create_dir_all(p).map_err(io_err("creating directory", p))
}

impl LocalStore {
    /// Open the store, creating its directories and database on first use.
    pub fn open(config: LocalStoreConfig) -> Result<LocalStore> {
        let layout = Layout::new(&config);
        if !config.read_only {
            create_dirs(&layout.real_store_dir)?;
            create_dirs(&layout.links_dir)?;
            create_dirs(&layout.profiles_dir)?;
            create_dirs(&layout.temproots_dir)?;
            create_dirs(&layout.db_dir)?;
            if !layout.gcroots_dir.exists() {
                create_dirs(&layout.gcroots_dir)?;
                let link = layout.gcroots_dir.join("profiles");
                std::os::unix::fs::symlink(&layout.profiles_dir, &link)
                    .map_err(io_err("creating symbolic link", &link))?;
            }
            for d in [
                layout.profiles_dir.join("per-user"),
                layout.gcroots_dir.join("per-user"),
            ] {
                create_dirs(&d)?;
                fs::set_permissions(&d, fs::Permissions::from_mode(0o755))
                    .map_err(io_err("changing mode of", &d))?;
            }
            if let Ok(user) = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")) {
                if !user.is_empty() && !user.contains('/') {
                    for base in [&layout.profiles_dir, &layout.gcroots_dir] {
                        let d = base.join("per-user").join(&user);
                        create_dirs(&d)?;
                    }
                }
            }
            // Dummy space to free before a GC when the disk is full, as CppNix keeps it.
            if fs::metadata(&layout.reserved).map(|m| m.len()).unwrap_or(0) != 8 * 1024 * 1024 {
                if let Ok(f) = File::create(&layout.reserved) {
                    let _ = f.set_len(8 * 1024 * 1024);
                }
            }
        }
        let big_lock = if config.read_only {
            None
        } else {
            let f = open_lock_file(&layout.big_lock, true)?;
            if let Some(f) = &f {
                if !lock_file(f, LockType::Read, false, &layout.big_lock)? {
                    tracing::info!("waiting for the big Nix store lock...");
                    lock_file(f, LockType::Read, true, &layout.big_lock)?;
                }
            }
            f
        };
        let schema = match fs::read_to_string(&layout.schema_file) {
            Ok(s) => s.trim().parse::<u32>().map_err(|_| {
                StoreError::Corrupt(layout.schema_file.clone(), "bad schema version".into())
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(io_err("reading", &layout.schema_file)(e)),
        };
        if schema > SCHEMA_VERSION {
            return Err(StoreError::SchemaTooNew(schema));
        }
        if schema != 0 && schema < SCHEMA_VERSION {
            return Err(StoreError::Other(format!(
                "the Nix store database has schema version {schema}; upgrade it with CppNix first"
            )));
        }
        if config.read_only && schema == 0 {
            return Err(StoreError::Other(format!(
                "the Nix store at '{}' does not exist yet",
                layout.real_store_dir.display()
            )));
        }
        let db = Db::open(
            &layout.db_file,
            config.store_dir.clone(),
            schema == 0,
            true,
            true,
        )?;
        if schema == 0 {
            fs::write(&layout.schema_file, SCHEMA_VERSION.to_string())
                .map_err(io_err("writing", &layout.schema_file))?;
        }
        let mut db = db;
        if config.ca_derivations && !config.read_only {
            crate::realisations::migrate_ca_schema(&mut db, &layout.db_dir.join("ca-schema"))?;
        }
        Ok(LocalStore {
            config,
            layout,
            db: Mutex::new(db),
            _big_lock: big_lock,
            temp_roots: Mutex::new(Default::default()),
            tmp_counter: AtomicU64::new(0),
            staging: Mutex::new(None),
        })
    }

    pub fn store_dir(&self) -> &StoreDir {
        &self.config.store_dir
    }

    pub fn config(&self) -> &LocalStoreConfig {
        &self.config
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The database, locked for this thread. It keeps the path-info cache: its writing
    /// methods forget the infos they change (see [`Db::conn`] for raw access).
    pub fn db(&self) -> MutexGuard<'_, Db> {
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where a store path's files are on disk.
    /// Whether the `ca-derivations` feature is on for this store.
    pub fn ca_derivations(&self) -> bool {
        self.config.ca_derivations
    }

    /// Whether the `impure-derivations` feature is on for this store's builds.
    pub fn impure_derivations(&self) -> bool {
        self.config.impure_derivations
    }

    /// The realisation of an output of a derivation, if one is recorded (and the feature is
    /// on; without it CppNix does not look).
    pub fn query_realisation(
        &self,
        id: &crate::realisations::DrvOutput,
    ) -> Result<Option<crate::realisations::Realisation>> {
        if !self.config.ca_derivations {
            return Ok(None);
        }
        crate::realisations::query_realisation(&mut self.db(), id)
    }

    /// Record a realisation (its output path must be valid).
    pub fn register_realisation(&self, r: &crate::realisations::Realisation) -> Result<()> {
        crate::realisations::register_realisation(&mut self.db(), r)
    }

    pub fn real_path(&self, p: &StorePath) -> PathBuf {
        self.layout.real_store_dir.join(p.base_name())
    }

    pub fn is_valid_path(&self, p: &StorePath) -> Result<bool> {
        self.db().is_valid(p)
    }

    pub fn query_path_info(&self, p: &StorePath) -> Result<Option<ValidPathInfo>> {
        Ok(self.query_path_info_shared(p)?.map(|i| (*i).clone()))
    }

    /// Like [`LocalStore::query_path_info`], without copying a cached entry.
    pub fn query_path_info_shared(&self, p: &StorePath) -> Result<Option<Arc<ValidPathInfo>>> {
        self.db().cached_path_info(p)
    }

    /// The infos of many paths (`None` for those not valid), read in one transaction.
    pub fn query_path_infos(&self, paths: &[StorePath]) -> Result<Vec<Option<Arc<ValidPathInfo>>>> {
        self.db().cached_path_infos(paths)
    }

    /// Which of `paths` are valid, read in one transaction.
    pub fn are_valid_paths(&self, paths: &[StorePath]) -> Result<Vec<bool>> {
        self.db()
            .in_read_transaction(|db| paths.iter().map(|p| db.is_valid(p)).collect())
    }

    /// Forget every cached info.
    pub fn forget_cached_infos(&self) {
        self.db().forget_all_infos();
    }

    pub fn query_referrers(&self, p: &StorePath) -> Result<BTreeSet<StorePath>> {
        self.db().query_referrers(p)
    }

    pub fn query_valid_derivers(&self, p: &StorePath) -> Result<BTreeSet<StorePath>> {
        self.db().query_valid_derivers(p)
    }

    /// The outputs registered for a derivation, by name.
    pub fn query_derivation_outputs(&self, drv: &StorePath) -> Result<BTreeMap<String, StorePath>> {
        self.db().query_derivation_outputs(drv)
    }

    pub fn query_path_from_hash_part(&self, hash_part: &str) -> Result<Option<StorePath>> {
        self.db().query_path_from_hash_part(hash_part)
    }

    pub fn query_all_valid_paths(&self) -> Result<BTreeSet<StorePath>> {
        self.db().query_all_valid_paths()
    }

    fn info_or_invalid(&self, p: &StorePath) -> Result<ValidPathInfo> {
        self.query_path_info(p)?
            .ok_or_else(|| StoreError::InvalidPath(self.store_dir().display(p)))
    }

    /// A fresh staging directory: a new subdirectory of this store object's staging directory
    /// (see [`LocalStore::staging_dir`]).
    fn temp_dir(&self) -> Result<PathBuf> {
        let base = self.staging_dir()?;
        loop {
            let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
            let p = base.join(n.to_string());
            match fs::create_dir(&p) {
                Ok(()) => return Ok(p),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_err("creating temporary directory", &p)(e)),
            }
        }
    }

    /// The directory, inside the real store directory, where this store object stages what
    /// it adds, made on first use. Its name has the form of a store path and it is registered
    /// as a temporary root first, so that no garbage collector, firn's or CppNix's, deletes it
    /// while this process works in it; if the process dies, the next GC removes it. One
    /// directory (and one root) serves every path added, so staging a path takes no lock.
    fn staging_dir(&self) -> Result<PathBuf> {
        let mut staging = self.staging.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = &*staging {
            return Ok(p.clone());
        }
        loop {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
            let seed = format!("{}-{}-{}", std::process::id(), n, nanos);
            let digest = Hash::digest(HashAlgo::Sha256, seed.as_bytes()).truncate_xor(20);
            let mut bytes = [0u8; 20];
            bytes.copy_from_slice(&digest);
            let name = StorePath::from_parts(&bytes, "firn-staging")?;
            self.add_temp_root(&name)?;
            let p = self.layout.real_store_dir.join(name.base_name());
            match fs::create_dir(&p) {
                Ok(()) => {
                    *staging = Some(p.clone());
                    return Ok(p);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_err("creating temporary directory", &p)(e)),
            }
        }
    }

    /// The store path `add_path` would give, without adding anything.
    pub fn compute_path_for(
        &self,
        name: &str,
        src: &Path,
        method: FileIngestionMethod,
        algo: HashAlgo,
    ) -> Result<StorePath> {
        let h = match method {
            FileIngestionMethod::Recursive => nar_fs::hash_path(src, algo)?.0,
            FileIngestionMethod::Flat => hash_file(src, algo)?.0,
        };
        Ok(self
            .store_dir()
            .make_fixed_output_path(name, method, &h, [], false)?)
    }

    /// Add a file or tree from the filesystem (`nix-store --add`, `--add-fixed`).
    pub fn add_path(
        &self,
        name: &str,
        src: &Path,
        method: FileIngestionMethod,
        algo: HashAlgo,
    ) -> Result<StorePath> {
        firn_format::store_path::validate_name(name)?;
        let tmp = self.temp_dir()?;
        let guard = TempGuard(tmp.clone());
        let staged = tmp.join("x");
        // One pass over the source: copy it while hashing.
        let (ca_hash, nar) = match method {
            FileIngestionMethod::Recursive => {
                let (h, n) = nar_fs::copy_path_hashed(src, &staged, algo)?;
                if algo == HashAlgo::Sha256 {
                    (h.clone(), Some((h, n)))
                } else {
                    (h, None)
                }
            }
            FileIngestionMethod::Flat => {
                let meta = fs::symlink_metadata(src).map_err(io_err("getting status of", src))?;
                if !meta.file_type().is_file() {
                    return Err(StoreError::Other(format!(
                        "cannot add '{}' as a flat file: it is not a regular file",
                        src.display()
                    )));
                }
                let (h, _) = copy_file_hashed(src, &staged, algo)?;
                (h, None)
            }
        };
        let path = self
            .store_dir()
            .make_fixed_output_path(name, method, &ca_hash, [], false)?;
        let (nar_hash, nar_size) = match nar {
            Some(x) => x,
            None => nar_fs::hash_path(&staged, HashAlgo::Sha256)?,
        };
        let mut info = ValidPathInfo::new(path.clone(), nar_hash, nar_size);
        info.ca = Some(ContentAddress::Fixed(method, ca_hash));
        // A recursive copy is canonical as made; a flat file is canonicalised here.
        self.commit_staged(&staged, info, method == FileIngestionMethod::Recursive)?;
        drop(guard);
        Ok(path)
    }

    /// Move a staged tree into place as `info.path` and register it, unless the path is already
    /// valid. The caller's temp dir is removed by its guard either way.
    fn commit_staged(&self, staged: &Path, info: ValidPathInfo, canonical: bool) -> Result<()> {
        let path = info.path.clone();
        self.add_temp_root(&path)?;
        if self.is_valid_path(&path)? {
            return Ok(());
        }
        let real = self.real_path(&path);
        let mut locks = PathLocks::lock(std::slice::from_ref(&real))?;
        if !self.is_valid_path(&path)? {
            // Left over from a crash: an invalid path is junk.
            delete_path(&real)?;
            if !canonical {
                canonicalise(staged)?;
            }
            if self.config.fsync_store_paths {
                fsync_tree(staged)?;
            }
            // Moving a directory to another parent needs write access to it (for `..`), which a
            // canonical directory lacks unless we are root: open it up for the rename, and
            // canonicalise the top again after it (the rename may touch its times).
            crate::canon::make_writable(staged)?;
            fs::rename(staged, &real).map_err(io_err("moving into place", &real))?;
            crate::canon::canonicalise_top(&real)?;
            if self.config.auto_optimise {
                self.optimise_path(&real)?;
            }
            let drv_outputs = self.drv_outputs_for(std::slice::from_ref(&info))?;
            self.db().register(&[info], &drv_outputs)?;
        }
        locks.set_deletion(true);
        Ok(())
    }

    /// For `.drv` paths being registered, their output paths (from the file itself).
    fn drv_outputs_for(
        &self,
        infos: &[ValidPathInfo],
    ) -> Result<BTreeMap<StorePath, BTreeMap<String, StorePath>>> {
        let mut out = BTreeMap::new();
        for i in infos.iter().filter(|i| i.path.is_derivation()) {
            let real = self.real_path(&i.path);
            let text = match fs::read_to_string(&real) {
                Ok(t) => t,
                Err(e) => return Err(io_err("reading derivation", &real)(e)),
            };
            let name = i.path.name().trim_end_matches(".drv");
            let drv = firn_format::derivation::Derivation::parse(self.store_dir(), &text, name)
                .map_err(|e| {
                    StoreError::Other(format!(
                        "error parsing derivation '{}': {e}",
                        self.store_dir().display(&i.path)
                    ))
                })?;
            // Outputs without a path (floating content-addressed ones) are not recorded.
            let outputs = drv
                .outputs
                .into_iter()
                .filter_map(|(id, o)| o.path.map(|p| (id, p)))
                .collect();
            out.insert(i.path.clone(), outputs);
        }
        Ok(out)
    }

    /// Add a text file with references (`builtins.toFile`, `.drv` files).
    pub fn add_text(
        &self,
        name: &str,
        text: &[u8],
        refs: &BTreeSet<StorePath>,
    ) -> Result<StorePath> {
        let h = Hash::digest(HashAlgo::Sha256, text);
        let path = self.store_dir().make_text_path(name, &h, refs)?;
        self.add_temp_root(&path)?;
        if self.is_valid_path(&path)? {
            return Ok(path);
        }
        let tmp = self.temp_dir()?;
        let guard = TempGuard(tmp.clone());
        let staged = tmp.join("x");
        fs::write(&staged, text).map_err(io_err("writing", &staged))?;
        let (nar_hash, nar_size) = nar_fs::hash_path(&staged, HashAlgo::Sha256)?;
        let mut info = ValidPathInfo::new(path.clone(), nar_hash, nar_size);
        info.references = refs.clone();
        info.ca = Some(ContentAddress::Text(h));
        self.commit_staged(&staged, info, false)?;
        drop(guard);
        Ok(path)
    }

    /// Add a path from its NAR and metadata (import, substitution). The NAR is restored while
    /// it streams and its hash and size are checked against `info`; on a mismatch nothing is
    /// registered.
    pub fn add_nar(&self, info: &ValidPathInfo, nar: &mut dyn Read) -> Result<()> {
        match self.stage_nar(info, nar)? {
            Some(staged) => self.commit_nar(staged),
            None => Ok(()),
        }
    }

    /// The first half of [`LocalStore::add_nar`]: restore and check the NAR in a staging
    /// directory (a temporary root), without registering anything, so that many paths can be
    /// fetched at once and registered in reference order with [`LocalStore::commit_nar`].
    /// `None` when the path is valid already (the NAR is read to its end).
    pub fn stage_nar(&self, info: &ValidPathInfo, nar: &mut dyn Read) -> Result<Option<StagedNar>> {
        self.add_temp_root(&info.path)?;
        if self.is_valid_path(&info.path)? {
            // Consume the NAR so the stream stays in sync.
            firn_format::nar::parse(&mut { nar }, &mut firn_format::nar::reader::Validate)?;
            return Ok(None);
        }
        let tmp = self.temp_dir()?;
        let guard = TempGuard(tmp.clone());
        let staged = tmp.join("x");
        let (h, n) = nar_fs::restore_path_hashed(&mut { nar }, &staged, info.nar_hash.algo())?;
        if h != info.nar_hash {
            return Err(StoreError::HashMismatch {
                path: self.store_dir().display(&info.path),
                expected: info.nar_hash.to_string(),
                got: h.to_string(),
            });
        }
        if info.nar_size != 0 && n != info.nar_size {
            return Err(StoreError::Other(format!(
                "size mismatch importing path '{}': expected {} bytes, got {}",
                self.store_dir().display(&info.path),
                info.nar_size,
                n
            )));
        }
        let mut info = info.clone();
        info.nar_size = n;
        Ok(Some(StagedNar {
            guard,
            staged,
            info,
        }))
    }

    /// Move many staged paths into place and register them in one transaction (their
    /// references must be valid or among them). Paths that became valid meanwhile are
    /// skipped.
    pub fn commit_nars(&self, staged: Vec<StagedNar>) -> Result<()> {
        if staged.is_empty() {
            return Ok(());
        }
        let reals: Vec<PathBuf> = staged
            .iter()
            .map(|s| self.real_path(&s.info.path))
            .collect();
        // Roots already when staged by this store object: then this takes no lock.
        let paths: Vec<StorePath> = staged.iter().map(|s| s.info.path.clone()).collect();
        self.add_temp_roots(&paths)?;
        let mut locks = PathLocks::lock(&reals)?;
        let mut infos = Vec::new();
        for (s, real) in staged.iter().zip(&reals) {
            if self.is_valid_path(&s.info.path)? {
                continue;
            }
            delete_path(real)?;
            canonicalise(&s.staged)?;
            if self.config.fsync_store_paths {
                fsync_tree(&s.staged)?;
            }
            crate::canon::make_writable(&s.staged)?;
            fs::rename(&s.staged, real).map_err(io_err("moving into place", real))?;
            crate::canon::canonicalise_top(real)?;
            if self.config.auto_optimise {
                self.optimise_path(real)?;
            }
            infos.push(s.info.clone());
        }
        let drv_outputs = self.drv_outputs_for(&infos)?;
        self.db().register(&infos, &drv_outputs)?;
        locks.set_deletion(true);
        drop(staged);
        Ok(())
    }

    /// Move a staged path into place and register it (its references must be valid).
    pub fn commit_nar(&self, s: StagedNar) -> Result<()> {
        self.commit_staged(&s.staged, s.info, false)?;
        drop(s.guard);
        Ok(())
    }

    /// Register paths that are already in place (`--register-validity`, `--load-db`), in one
    /// transaction.
    pub fn register_valid_paths(&self, infos: &[ValidPathInfo]) -> Result<()> {
        let drv_outputs = self.drv_outputs_for(infos)?;
        self.db().register(infos, &drv_outputs)
    }

    /// Write the NAR of a valid path.
    pub fn nar_from_path(&self, p: &StorePath, out: &mut dyn Write) -> Result<()> {
        if !self.is_valid_path(p)? {
            return Err(StoreError::InvalidPath(self.store_dir().display(p)));
        }
        nar_fs::dump_path(&self.real_path(p), &mut { out })?;
        Ok(())
    }

    /// Hash the NAR of a valid path as it is on disk now.
    pub fn hash_valid_path(&self, p: &StorePath, algo: HashAlgo) -> Result<(Hash, u64)> {
        Ok(nar_fs::hash_path(&self.real_path(p), algo)?)
    }

    /// Add signatures to a valid path.
    pub fn add_signatures(&self, p: &StorePath, sigs: &[String]) -> Result<()> {
        let mut info = self.info_or_invalid(p)?;
        info.sigs.extend(sigs.iter().cloned());
        self.db().set_sigs(p, &info.sigs)
    }

    /// `nix-store --export`: the paths in topological order, each as its NAR and trailer.
    pub fn export_paths(&self, paths: &BTreeSet<StorePath>, out: &mut dyn Write) -> Result<()> {
        let sorted = crate::export::sort_for_export(self, paths)?;
        for p in sorted {
            crate::export::write_u64(out, 1)?;
            let info = self.info_or_invalid(&p)?;
            let mut tee = HashingWriter {
                inner: &mut *out,
                hasher: Hasher::new(HashAlgo::Sha256),
            };
            nar_fs::dump_path(&self.real_path(&p), &mut tee)?;
            let h = tee.hasher.finish();
            if h != info.nar_hash {
                return Err(StoreError::Other(format!(
                    "hash of path '{}' has changed from '{}' to '{}'!",
                    self.store_dir().display(&p),
                    info.nar_hash,
                    h
                )));
            }
            crate::export::write_trailer(out, self.store_dir(), &info)?;
        }
        crate::export::write_u64(out, 0)?;
        Ok(())
    }

    /// `nix-store --import`: add every path in an export stream.
    pub fn import_paths(&self, input: &mut dyn Read) -> Result<Vec<StorePath>> {
        let mut res = Vec::new();
        loop {
            match crate::export::read_u64(input)? {
                0 => break,
                1 => {}
                _ => {
                    return Err(StoreError::Other(
                        "input doesn't look like something created by 'nix-store --export'".into(),
                    ))
                }
            }
            let tmp = self.temp_dir()?;
            let guard = TempGuard(tmp.clone());
            let staged = tmp.join("x");
            let (nar_hash, nar_size) =
                nar_fs::restore_path_hashed(&mut { &mut *input }, &staged, HashAlgo::Sha256)?;
            let t = crate::export::read_trailer(input, self.store_dir())?;
            let mut info = ValidPathInfo::new(t.path.clone(), nar_hash, nar_size);
            info.references = t.references;
            info.deriver = t.deriver;
            self.commit_staged(&staged, info, false)?;
            drop(guard);
            res.push(t.path);
        }
        Ok(res)
    }

    /// Check the store: every valid path exists, and with `check_contents` has its recorded
    /// NAR hash. Returns whether errors remain. With `repair`, invalid entries whose files are
    /// gone are removed from the database.
    pub fn verify_store(&self, check_contents: bool, repair: bool) -> Result<bool> {
        self.verify_store_with(check_contents, repair, &|_| Ok(false))
    }

    /// Replace the contents of the valid path `info.path` by the NAR from `nar` (which must
    /// have the registered hash and size): restored aside, checked, then swapped in under the
    /// path's lock. The registration is unchanged. For repairing modified paths.
    pub fn repair_nar(&self, info: &ValidPathInfo, nar: &mut dyn Read) -> Result<()> {
        let registered = self.info_or_invalid(&info.path)?;
        if registered.nar_hash != info.nar_hash {
            return Err(StoreError::Other(format!(
                "cannot repair '{}' from a NAR with another hash",
                self.store_dir().display(&info.path)
            )));
        }
        let tmp = self.temp_dir()?;
        let guard = TempGuard(tmp.clone());
        let staged = tmp.join("x");
        let (h, _) = nar_fs::restore_path_hashed(&mut { nar }, &staged, info.nar_hash.algo())?;
        if h != info.nar_hash {
            return Err(StoreError::HashMismatch {
                path: self.store_dir().display(&info.path),
                expected: info.nar_hash.to_string(),
                got: h.to_string(),
            });
        }
        canonicalise(&staged)?;
        let real = self.real_path(&info.path);
        let _locks = PathLocks::lock(std::slice::from_ref(&real))?;
        let old = tmp.join("old");
        crate::canon::make_writable(&staged)?;
        if fs::symlink_metadata(&real).is_ok() {
            crate::canon::make_writable(&real)?;
            fs::rename(&real, &old).map_err(io_err("moving aside", &real))?;
        }
        fs::rename(&staged, &real).map_err(io_err("moving into place", &real))?;
        crate::canon::canonicalise_top(&real)?;
        self.forget_cached_infos();
        drop(guard);
        Ok(())
    }

    /// [`LocalStore::verify_store`], with `repair_modified` asked to repair each path whose
    /// contents no longer match their hash (it returns whether it did).
    pub fn verify_store_with(
        &self,
        check_contents: bool,
        repair: bool,
        repair_modified: &dyn Fn(&StorePath) -> Result<bool>,
    ) -> Result<bool> {
        let sd = self.store_dir().clone();
        let mut errors = false;
        tracing::info!("checking path existence...");
        eprintln!("reading the Nix store...");
        eprintln!("checking path existence...");
        let all = self.query_all_valid_paths()?;
        let mut missing = Vec::new();
        for p in &all {
            if fs::symlink_metadata(self.real_path(p)).is_err() {
                eprintln!(
                    "error: path '{}' disappeared, but it still has valid referrers!",
                    sd.display(p)
                );
                missing.push(p.clone());
            }
        }
        if !missing.is_empty() {
            if repair {
                // Only paths without referrers can be dropped from the database.
                let mut droppable = Vec::new();
                for p in &missing {
                    let refs = self.query_referrers(p)?;
                    if refs.iter().all(|r| r == p || missing.contains(r)) {
                        droppable.push(p.clone());
                    } else {
                        errors = true;
                    }
                }
                self.db().invalidate(&droppable)?;
            } else {
                errors = true;
            }
        }
        if check_contents {
            eprintln!("checking link count of the Nix store...");
            eprintln!("checking hashes...");
            for p in &all {
                if missing.contains(p) {
                    continue;
                }
                let info = self.info_or_invalid(p)?;
                let (h, n) = self.hash_valid_path(p, info.nar_hash.algo())?;
                if h != info.nar_hash {
                    eprintln!(
                        "error: path '{}' was modified! expected hash '{}', got '{}'",
                        sd.display(p),
                        info.nar_hash,
                        h
                    );
                    let repaired = repair
                        && match repair_modified(p) {
                            Ok(done) => done,
                            Err(e) => {
                                eprintln!("error: repairing '{}': {e}", sd.display(p));
                                false
                            }
                        };
                    if !repaired {
                        errors = true;
                    }
                } else if info.nar_size != n {
                    let mut fixed = info.clone();
                    fixed.nar_size = n;
                    if repair || info.nar_size == 0 {
                        self.db().register(&[fixed], &BTreeMap::new())?;
                    }
                }
            }
        }
        Ok(errors)
    }
}

impl Drop for LocalStore {
    fn drop(&mut self) {
        // Our temporary roots end when their file is closed, after this: a running collector
        // must hear of them first (see `hand_temp_roots_over`).
        self.hand_temp_roots_over();
        // Empty unless something staged outlives the store object (then the next GC removes
        // it, once this process's temporary roots are gone).
        let staging = self.staging.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = staging.take() {
            let _ = fs::remove_dir(&p);
        }
    }
}

/// Hash a regular file's bytes.
pub fn hash_file(p: &Path, algo: HashAlgo) -> Result<(Hash, u64)> {
    let mut f = File::open(p).map_err(io_err("opening file", p))?;
    let mut h = Hasher::new(algo);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(io_err("reading file", p))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let n = h.len();
    Ok((h.finish(), n))
}

/// Copy a regular file to `dst` (created), hashing its bytes.
fn copy_file_hashed(src: &Path, dst: &Path, algo: HashAlgo) -> Result<(Hash, u64)> {
    let mut f = File::open(src).map_err(io_err("opening file", src))?;
    let mut out = File::create_new(dst).map_err(io_err("creating file", dst))?;
    let mut h = Hasher::new(algo);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(io_err("reading file", src))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(io_err("writing file", dst))?;
    }
    let n = h.len();
    Ok((h.finish(), n))
}

fn fsync_tree(p: &Path) -> Result<()> {
    let meta = fs::symlink_metadata(p).map_err(io_err("getting status of", p))?;
    if meta.is_dir() {
        for e in fs::read_dir(p).map_err(io_err("reading directory", p))? {
            let e = e.map_err(io_err("reading directory", p))?;
            fsync_tree(&e.path())?;
        }
    }
    if !meta.file_type().is_symlink() {
        File::open(p)
            .and_then(|f| f.sync_all())
            .map_err(io_err("syncing", p))?;
    }
    Ok(())
}

/// Removes a temporary directory when dropped.
struct TempGuard(PathBuf);

/// A path restored and checked by [`LocalStore::stage_nar`], not yet valid; dropping it
/// deletes it.
pub struct StagedNar {
    guard: TempGuard,
    staged: PathBuf,
    info: ValidPathInfo,
}

impl StagedNar {
    pub fn path(&self) -> &StorePath {
        &self.info.path
    }
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        let _ = delete_path(&self.0);
    }
}

struct HashingWriter<'a> {
    inner: &'a mut dyn Write,
    hasher: Hasher,
}

impl Write for HashingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
