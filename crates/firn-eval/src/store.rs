//! The evaluator's side of the store: the store paths of sources copied in (`"${./src}"`,
//! `builtins.path`, `filterSource`), of text files (`toFile`) and of derivations, written to a
//! real store when the evaluation may write, or only computed when it may not (as CppNix's
//! read-only mode, which `nix-instantiate --eval` uses).
//!
//! Derivations made by this evaluation are remembered with their hashes modulo, so inputs
//! never have to be read back (in read-only mode they could not be), and with their
//! references and output names (for `=` contexts), and with the `dynamic-derivations` feature
//! their output paths (for `builtins.outputOf`); the rest of each derivation is dropped once
//! written.
//!
//! A `dummy://` store ([`EvalStore::dummy`]) is CppNix's dummy store: no path is valid and
//! nothing can be added, so an evaluation that only computes paths (read-only mode) works and
//! one that must write fails, naming the store operation as CppNix does.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use firn_format::derivation::{Derivation, DrvHashes, Instantiated};
use firn_format::store_path::{ContentAddress, FileIngestionMethod};
use firn_format::{Hash, HashAlgo, StoreDir, StorePath};
use firn_store::{LocalStore, ValidPathInfo};

use crate::error::{EResult, EvalError};

/// Where store paths go during an evaluation.
pub struct EvalStore {
    pub dir: StoreDir,
    /// The store read from (validity, references, derivations), if any.
    backend: Option<Rc<LocalStore>>,
    /// Whether new paths are written to `backend` (otherwise only computed).
    write: bool,
    /// A `dummy://` store: writing (when `write`) fails instead of only computing paths.
    dummy: bool,
    /// Hashes modulo of derivations, by `.drv` path (unmasked, as their dependents need).
    drv_hashes: DrvHashes,
    /// Derivations made by this evaluation: what later derivations need of them.
    drvs: HashMap<StorePath, MadeDrv, foldhash::fast::RandomState>,
    /// The paths those derivations refer to, each kept once and known by its place.
    referenced: indexmap::IndexSet<StorePath, foldhash::fast::RandomState>,
    /// Lists of output names those derivations have, each kept once.
    output_lists: Vec<Rc<[String]>>,
    /// Sources copied without a filter, by their path on disk.
    sources: HashMap<PathBuf, StorePath>,
    /// The output paths of derivations made by this evaluation, kept only when asked for
    /// ([`EvalStore::keep_output_paths`]: `builtins.outputOf` needs them, and read-only
    /// evaluations cannot read them back from a `.drv` file).
    output_paths: HashMap<StorePath, OutputPaths>,
}

/// Each output of a derivation with its path (none for outputs known only after a build).
pub type OutputPaths = Vec<(String, Option<StorePath>)>;

/// What is kept of a derivation made by this evaluation.
struct MadeDrv {
    /// In order (from a set), as places in [`EvalStore::referenced`]: the derivations of a
    /// package set refer to each other many times over, and a path is some 70 bytes.
    references: Box<[u32]>,
    /// Shared with the other derivations that have the same outputs.
    outputs: Rc<[String]>,
}

/// How many of the latest distinct lists of output names are looked through for one to
/// share (derivations of one package set mostly have one of a few).
const OUTPUT_LISTS_KEPT: usize = 8;

/// What is wrong with a store path name, in CppNix's words (`checkName`): it must be 1 to
/// 211 characters from `[A-Za-z0-9+-._?=]`, not `.` or `..`, and not start with `.-` or
/// `..-`.
pub fn name_problem(name: &str) -> Option<String> {
    // Every derivation's name is checked: a valid one without working out each reason.
    if firn_format::store_path::validate_name(name).is_ok() {
        return None;
    }
    if name.is_empty() {
        return Some("name must not be empty".to_string());
    }
    let max = firn_format::store_path::MAX_NAME_LEN;
    if name.len() > max {
        return Some(format!(
            "name '{name}' must be no longer than {max} characters"
        ));
    }
    if name == "." || name == ".." {
        return Some(format!("name '{name}' is not valid"));
    }
    for dots in ["..", "."] {
        if name.starts_with(&format!("{dots}-")) {
            return Some(format!(
                "name '{name}' is not valid: first dash-separated component must not be '{dots}'"
            ));
        }
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "+-._?=".contains(c);
    name.chars()
        .find(|c| !allowed(*c))
        .map(|c| format!("name '{name}' contains illegal character '{c}'"))
}

fn store_err(op: &str, what: impl std::fmt::Display, e: impl std::fmt::Display) -> EvalError {
    EvalError::new(format!("{op} '{what}': {e}"))
}

impl EvalStore {
    /// Paths are computed for `dir`, nothing is written.
    pub fn read_only(dir: StoreDir) -> EvalStore {
        EvalStore {
            dir,
            backend: None,
            write: false,
            dummy: false,
            drv_hashes: DrvHashes::new(),
            drvs: HashMap::default(),
            referenced: Default::default(),
            output_lists: Vec::new(),
            sources: HashMap::new(),
            output_paths: HashMap::new(),
        }
    }

    /// Paths are read from `store`, and written to it when `write` (CppNix's read-only mode
    /// is `write == false`).
    pub fn with_store(store: Rc<LocalStore>, write: bool) -> EvalStore {
        let mut s = EvalStore::read_only(store.store_dir().clone());
        s.backend = Some(store);
        s.write = write;
        s
    }

    /// CppNix's `dummy://` store for `dir`: no path is valid; when `write` (the evaluation
    /// is not read-only) adding anything fails, otherwise paths are computed as in
    /// [`EvalStore::read_only`]. Fetchers fail either way, since they always write.
    pub fn dummy(dir: StoreDir, write: bool) -> EvalStore {
        let mut s = EvalStore::read_only(dir);
        s.write = write;
        s.dummy = true;
        s
    }

    /// The error for store operation `op` on a `dummy://` store, if this is one and the
    /// operation writes (`always`: even in read-only mode, as fetchers do).
    fn refused(&self, op: &str, always: bool) -> EResult<()> {
        if self.dummy && (self.write || always) {
            return Err(EvalError::new(format!(
                "operation '{op}' is not supported by store 'dummy'"
            )));
        }
        Ok(())
    }

    /// The store being read, if any.
    pub fn backend(&self) -> Option<&Rc<LocalStore>> {
        self.backend.as_ref()
    }

    /// Whether new paths are written (not only computed); a `dummy://` store outside
    /// read-only mode counts (writing to it fails).
    pub fn writes(&self) -> bool {
        self.writer().is_some() || (self.dummy && self.write)
    }

    /// The store being written to, if any.
    fn writer(&self) -> Option<&Rc<LocalStore>> {
        self.backend.as_ref().filter(|_| self.write)
    }

    /// The name of a path copied to the store: its last component, which must make a valid
    /// store path name and must not look like a derivation.
    pub fn source_name(path: &str) -> EResult<String> {
        let name = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
        if name.ends_with(".drv") {
            return Err(EvalError::new(format!(
                "file names are not allowed to end in '.drv' (while copying '{path}')"
            )));
        }
        firn_format::store_path::validate_name(name).map_err(|e| store_err("copying", path, e))?;
        Ok(name.to_string())
    }

    /// Copy the file or tree at `path` into the store under `name`; `recursive` as NAR
    /// serialisation, otherwise as a flat file. `keep` leaves entries out (for a recursive copy
    /// only); `expected` is the SHA-256 the result must have (NAR hash when recursive).
    pub fn add_source(
        &mut self,
        name: &str,
        path: &Path,
        recursive: bool,
        keep: Option<firn_store::nar_fs::KeepFn<'_>>,
        expected: Option<&Hash>,
    ) -> EResult<StorePath> {
        let method = if recursive {
            FileIngestionMethod::Recursive
        } else {
            FileIngestionMethod::Flat
        };
        if let Some(h) = expected {
            // Already there: nothing to read.
            let p = self
                .dir
                .make_fixed_output_path(name, method, h, [], false)
                .map_err(|e| store_err("adding", path.display(), e))?;
            if self.is_valid(&p)? {
                return Ok(p);
            }
        }
        let plain = keep.is_none() && recursive && name == Self::source_name_of(path);
        if plain && expected.is_none() {
            if let Some(p) = self.sources.get(path) {
                return Ok(p.clone());
            }
        }
        let p = match keep {
            Some(keep) if recursive => self.add_filtered(name, path, keep)?,
            _ => match self.writer() {
                Some(store) => store
                    .add_path(name, path, method, HashAlgo::Sha256)
                    .map_err(|e| store_err("copying", path.display(), e))?,
                None => {
                    self.refused("addToStoreFromDump", false)?;
                    let h = if recursive {
                        firn_store::nar_fs::hash_path(path, HashAlgo::Sha256)
                            .map_err(|e| store_err("hashing", path.display(), e))?
                            .0
                    } else {
                        firn_store::local::hash_file(path, HashAlgo::Sha256)
                            .map_err(|e| store_err("hashing", path.display(), e))?
                            .0
                    };
                    self.dir
                        .make_fixed_output_path(name, method, &h, [], false)
                        .map_err(|e| store_err("copying", path.display(), e))?
                }
            },
        };
        if let Some(h) = expected {
            let want = self
                .dir
                .make_fixed_output_path(name, method, h, [], false)
                .map_err(|e| store_err("adding", path.display(), e))?;
            if want != p {
                return Err(EvalError::new(format!(
                    "store path mismatch in (possibly filtered) path added from '{}'",
                    path.display()
                )));
            }
        }
        if plain {
            self.sources.insert(path.to_path_buf(), p.clone());
        }
        Ok(p)
    }

    fn source_name_of(path: &Path) -> String {
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// A recursive copy with a filter: the NAR is made in memory (sources are small), hashed,
    /// and added from it.
    fn add_filtered(
        &mut self,
        name: &str,
        path: &Path,
        keep: firn_store::nar_fs::KeepFn<'_>,
    ) -> EResult<StorePath> {
        self.refused("addToStoreFromDump", false)?;
        let to = self.writer().cloned();
        Ok(self.add_filtered_to(name, path, keep, to.as_ref())?.0)
    }

    /// The NAR of `path` without what `keep` rejects, made in memory (sources are small),
    /// hashed, and added to `to` (if any) as a recursive fixed-output path named `name`.
    fn add_filtered_to(
        &self,
        name: &str,
        path: &Path,
        keep: firn_store::nar_fs::KeepFn<'_>,
        to: Option<&Rc<LocalStore>>,
    ) -> EResult<(StorePath, Hash)> {
        let mut nar = Vec::new();
        firn_store::nar_fs::dump_path_filtered(path, &mut nar, keep)
            .map_err(|e| store_err("copying", path.display(), e))?;
        let h = Hash::digest(HashAlgo::Sha256, &nar);
        let p = self
            .dir
            .make_fixed_output_path(name, FileIngestionMethod::Recursive, &h, [], false)
            .map_err(|e| store_err("copying", path.display(), e))?;
        if let Some(store) = to {
            let mut info = ValidPathInfo::new(p.clone(), h.clone(), nar.len() as u64);
            info.ca = Some(ContentAddress::Fixed(
                FileIngestionMethod::Recursive,
                h.clone(),
            ));
            store
                .add_nar(&info, &mut &nar[..])
                .map_err(|e| store_err("copying", path.display(), e))?;
        }
        Ok((p, h))
    }

    /// Add something a fetcher downloaded (a file, flat; or an unpacked tree, recursive) under
    /// `name`. Fetchers write to the store even when evaluation is otherwise read-only (as
    /// CppNix's do), so that what they fetched can be read; without any store the path is only
    /// computed. Returns the path and the SHA-256 of the contents (of the NAR when recursive).
    pub fn add_download(
        &mut self,
        name: &str,
        path: &Path,
        recursive: bool,
    ) -> EResult<(StorePath, Hash)> {
        let method = if recursive {
            FileIngestionMethod::Recursive
        } else {
            FileIngestionMethod::Flat
        };
        self.refused("addToStore", true)?;
        // With a store, adding hashes the contents on the way (the hash is in the path's
        // content address); without one, hash them here.
        if let Some(store) = &self.backend {
            let p = store
                .add_path(name, path, method, HashAlgo::Sha256)
                .map_err(|e| store_err("adding", path.display(), e))?;
            let info = store
                .query_path_info(&p)
                .map_err(|e| store_err("querying", path.display(), e))?;
            if let Some(ContentAddress::Fixed(_, h)) = info.and_then(|i| i.ca) {
                return Ok((p, h));
            }
        }
        let h = if recursive {
            firn_store::nar_fs::hash_path(path, HashAlgo::Sha256)
                .map_err(|e| store_err("hashing", path.display(), e))?
                .0
        } else {
            firn_store::local::hash_file(path, HashAlgo::Sha256)
                .map_err(|e| store_err("hashing", path.display(), e))?
                .0
        };
        let p = self
            .dir
            .make_fixed_output_path(name, method, &h, [], false)
            .map_err(|e| store_err("adding", path.display(), e))?;
        Ok((p, h))
    }

    /// The path a fetcher's result would have, if its hash is known (`FileIngestionMethod`
    /// recursive or flat), and whether it is valid already.
    pub fn known_download(
        &mut self,
        name: &str,
        recursive: bool,
        h: &Hash,
    ) -> EResult<(StorePath, bool)> {
        let method = if recursive {
            FileIngestionMethod::Recursive
        } else {
            FileIngestionMethod::Flat
        };
        let p = self
            .dir
            .make_fixed_output_path(name, method, h, [], false)
            .map_err(|e| store_err("adding", name, e))?;
        let valid = match &self.backend {
            Some(store) => store
                .is_valid_path(&p)
                .map_err(|e| store_err("querying", self.dir.display(&p), e))?,
            None => false,
        };
        Ok((p, valid))
    }

    /// A text file with references (`builtins.toFile`).
    pub fn add_text(
        &mut self,
        name: &str,
        text: &str,
        refs: &BTreeSet<StorePath>,
    ) -> EResult<StorePath> {
        self.add_text_refs(name, text, None, &refs.iter().collect::<Vec<_>>())
    }

    /// [`Self::add_text`] with the references borrowed, in order: a derivation's are in two
    /// sets, and only a store that is written to needs them as one. `text_hash` is the
    /// SHA-256 of `text` if known already (a store that is written to hashes it itself).
    fn add_text_refs(
        &mut self,
        name: &str,
        text: &str,
        text_hash: Option<Hash>,
        refs: &[&StorePath],
    ) -> EResult<StorePath> {
        match self.writer() {
            Some(store) => {
                let refs: BTreeSet<StorePath> = refs.iter().map(|r| (*r).clone()).collect();
                store
                    .add_text(name, text.as_bytes(), &refs)
                    .map_err(|e| store_err("writing", name, e))
            }
            None => {
                self.refused("addTextToStore", false)?;
                let h =
                    text_hash.unwrap_or_else(|| Hash::digest(HashAlgo::Sha256, text.as_bytes()));
                self.dir
                    .make_text_path(name, &h, refs.iter().copied())
                    .map_err(|e| store_err("writing", name, e))
            }
        }
    }

    /// Fill in the output paths of a freshly made derivation and write it (or compute its
    /// path): [`Self::compute_output_paths`] and [`Self::write_derivation`] in one, sharing
    /// the work of writing its text (see [`firn_format::derivation::DrvHashes::instantiate`]).
    /// Gives the `.drv` path and each output's path (none for outputs known only after a
    /// build).
    pub fn instantiate(&mut self, mut drv: Derivation) -> EResult<(StorePath, OutputPaths)> {
        let dir = self.dir.clone();
        let backend = &self.backend;
        // Only a store that is not written to needs the text's hash from here.
        let text_hash = self.writer().is_none();
        let made = self
            .drv_hashes
            .instantiate_hashed(&dir, &mut drv, text_hash, |p| {
                load_derivation(&dir, backend, p)
            })?;
        let p = self.register_derivation(&drv, made)?;
        let outputs = drv
            .outputs
            .into_iter()
            .map(|(id, o)| (id, o.path))
            .collect();
        Ok((p, outputs))
    }

    /// Write (or compute the path of) `drv` with its text and hash modulo already made.
    fn register_derivation(&mut self, drv: &Derivation, made: Instantiated) -> EResult<StorePath> {
        let Instantiated {
            text,
            hash: h,
            text_hash,
        } = made;
        let references = drv.sorted_references();
        let mut name = String::with_capacity(drv.name.len() + 4);
        name.push_str(&drv.name);
        name.push_str(".drv");
        let p = self.add_text_refs(&name, &text, text_hash, &references)?;
        self.drv_hashes.insert_new(&p, h);
        let outputs = self.output_list(&drv.outputs);
        // Most references are to paths already known (derivations of a package set share
        // their inputs): those are not cloned.
        let references = references
            .into_iter()
            .map(|r| {
                let i = match self.referenced.get_index_of(r) {
                    Some(i) => i,
                    None => self.referenced.insert_full(r.clone()).0,
                };
                u32::try_from(i).expect("fewer than 2^32 store paths")
            })
            .collect();
        self.drvs.insert(
            p.clone(),
            MadeDrv {
                references,
                outputs,
            },
        );
        Ok(p)
    }

    /// The shared list of these output names.
    fn output_list<V>(&mut self, names: &BTreeMap<String, V>) -> Rc<[String]> {
        let same = |l: &&Rc<[String]>| {
            l.len() == names.len() && l.iter().zip(names.keys()).all(|(a, b)| a == b)
        };
        if let Some(l) = self.output_lists.iter().rev().find(same) {
            return l.clone();
        }
        let l: Rc<[String]> = names.keys().cloned().collect();
        if self.output_lists.len() == OUTPUT_LISTS_KEPT {
            self.output_lists.remove(0);
        }
        self.output_lists.push(l.clone());
        l
    }

    /// The output names of derivation `p` (made by this evaluation or found in the store).
    pub fn output_names(&self, p: &StorePath) -> EResult<Vec<String>> {
        match self.drvs.get(p) {
            Some(d) => Ok(d.outputs.to_vec()),
            None => Ok(load_derivation(&self.dir, &self.backend, p)?
                .outputs
                .into_keys()
                .collect()),
        }
    }

    /// Remember the output paths of `drv`, made by this evaluation, for
    /// [`EvalStore::output_path`].
    pub fn keep_output_paths(&mut self, drv: &StorePath, outputs: &OutputPaths) {
        self.output_paths.insert(drv.clone(), outputs.clone());
    }

    /// Output `output` of derivation `drv` (one kept by [`EvalStore::keep_output_paths`], or
    /// one in the store): `None` if it has no such output, else its path, if that is known
    /// before the derivation is built.
    pub fn output_path(&self, drv: &StorePath, output: &str) -> EResult<Option<Option<StorePath>>> {
        if let Some(outs) = self.output_paths.get(drv) {
            return Ok(outs
                .iter()
                .find(|(id, _)| id == output)
                .map(|(_, p)| p.clone()));
        }
        if self.backend.is_some() && !self.is_valid(drv)? {
            return Err(EvalError::new(format!(
                "path '{}' is not a valid store path",
                self.dir.display(drv)
            )));
        }
        let mut d = load_derivation(&self.dir, &self.backend, drv)?;
        Ok(d.outputs.remove(output).map(|o| o.path))
    }

    /// Whether `p` exists: made by this evaluation, or valid in the store.
    pub fn is_valid(&self, p: &StorePath) -> EResult<bool> {
        if self.drvs.contains_key(p) {
            return Ok(true);
        }
        match &self.backend {
            Some(store) => store
                .is_valid_path(p)
                .map_err(|e| store_err("querying", self.dir.display(p), e)),
            None => Ok(false),
        }
    }

    /// The references of `p` (a derivation of this evaluation, or a valid path).
    pub fn references(&self, p: &StorePath) -> EResult<BTreeSet<StorePath>> {
        if let Some(d) = self.drvs.get(p) {
            return Ok(d
                .references
                .iter()
                .filter_map(|&i| self.referenced.get_index(i as usize).cloned())
                .collect());
        }
        let Some(store) = &self.backend else {
            return Err(EvalError::new(format!(
                "path '{}' is not valid (the evaluation does not write to a store)",
                self.dir.display(p)
            )));
        };
        match store
            .query_path_info(p)
            .map_err(|e| store_err("querying", self.dir.display(p), e))?
        {
            Some(i) => Ok(i.references.clone()),
            None => Err(EvalError::new(format!(
                "path '{}' is not valid",
                self.dir.display(p)
            ))),
        }
    }

    /// `p` and everything it refers to, transitively.
    pub fn closure(&self, p: &StorePath) -> EResult<BTreeSet<StorePath>> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![p.clone()];
        while let Some(q) = todo.pop() {
            if !seen.insert(q.clone()) {
                continue;
            }
            for r in self.references(&q)? {
                if !seen.contains(&r) {
                    todo.push(r);
                }
            }
        }
        Ok(seen)
    }

    /// Where the files of a path inside the store are on disk (chroot stores keep them
    /// elsewhere); other paths are returned as they are.
    pub fn real_path(&self, path: &str) -> PathBuf {
        if let Some(store) = &self.backend {
            if let Ok((sp, rest)) = self.dir.parse_inside(path) {
                let base = store.real_path(&sp);
                return if rest.is_empty() {
                    base
                } else {
                    base.join(rest)
                };
            }
        }
        PathBuf::from(path)
    }

    /// [`EvalStore::add_download`] of a tree (recursive) leaving out the entries for which
    /// `keep` is false (`fetchGit` of a dirty working tree: only the tracked files). The NAR
    /// is made in memory. Returns the path and the SHA-256 of the NAR.
    pub fn add_download_filtered(
        &mut self,
        name: &str,
        path: &Path,
        keep: firn_store::nar_fs::KeepFn<'_>,
    ) -> EResult<(StorePath, Hash)> {
        firn_format::store_path::validate_name(name).map_err(|e| store_err("adding", name, e))?;
        self.refused("addToStoreFromDump", true)?;
        let to = self.backend.clone();
        self.add_filtered_to(name, path, keep, to.as_ref())
    }
}

/// Read derivation `p` from the store (derivations made by this evaluation have their
/// hashes remembered and are never read back).
fn load_derivation(
    dir: &StoreDir,
    backend: &Option<Rc<LocalStore>>,
    p: &StorePath,
) -> EResult<Derivation> {
    let shown = dir.display(p);
    let real = match backend {
        Some(store) => store.real_path(p),
        None => PathBuf::from(&shown),
    };
    let text = fs::read_to_string(&real).map_err(|e| store_err("reading derivation", &shown, e))?;
    let name = p.name().strip_suffix(".drv").unwrap_or(p.name());
    Derivation::parse(dir, &text, name).map_err(|e| store_err("parsing derivation", &shown, e))
}

impl From<firn_format::derivation::DrvError> for EvalError {
    fn from(e: firn_format::derivation::DrvError) -> EvalError {
        EvalError::new(e.to_string())
    }
}
