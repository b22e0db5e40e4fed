//! Substitution: asking the configured caches (`substituters`, in priority order) for paths,
//! checking what they say against `trusted-public-keys` (`require-sigs`), and fetching whole
//! closures into the local store — references before referrers, several at once, each path
//! once, the NAR downloaded, decompressed, hashed and restored in one streaming pass.
//!
//! A cache that cannot be reached is warned about once and not asked again in this run.

use std::collections::{BTreeSet, HashMap};
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use firn_format::narinfo::NarInfo;
use firn_format::signature::PublicKeys;
use firn_format::{StoreDir, StorePath};
use firn_store::local::StagedNar;
use firn_store::realisations::{DrvOutput, Realisation};
use firn_store::LocalStore;

use crate::cache::{narinfo_to_path_info, BinaryCache, OpenOptions};
use crate::disk_cache::{DiskCache, Lookup};
use crate::graph::{self, Outcome};
use crate::{CacheError, Result};

/// Which narinfos to believe.
#[derive(Clone, Debug, Default)]
pub struct TrustPolicy {
    pub require_sigs: bool,
    pub keys: PublicKeys,
}

impl TrustPolicy {
    /// A narinfo is trusted with a valid signature by a trusted key, when it is content
    /// addressed (its path follows from its contents), or when signatures are not required.
    pub fn accepts(&self, sd: &StoreDir, ni: &NarInfo) -> bool {
        !self.require_sigs || ni.valid_signatures(sd, &self.keys) > 0 || ni.is_content_addressed(sd)
    }
}

struct Entry {
    cache: BinaryCache,
    disk_id: Option<i64>,
    broken: AtomicBool,
}

/// A path some cache can provide.
#[derive(Clone, Debug)]
pub struct Available {
    /// Index into [`Substituters::uris`].
    pub cache: usize,
    pub info: NarInfo,
}

/// A closure to fetch (each path with where from), or the paths no cache has.
pub type ClosurePlan = std::result::Result<Vec<(StorePath, Available)>, BTreeSet<StorePath>>;

/// What substitution reports while it works.
pub enum Progress<'a> {
    /// `copying path '...' from '...'`.
    Start {
        path: &'a StorePath,
        from: &'a str,
        nar_size: u64,
    },
    /// Bytes of NAR received so far for a path.
    Bytes {
        path: &'a StorePath,
        done: u64,
    },
    Done {
        path: &'a StorePath,
    },
}

/// What [`Substituters::substitute_paths`] did.
#[derive(Debug, Default)]
pub struct SubstituteReport {
    /// Fetched and registered.
    pub substituted: Vec<StorePath>,
    /// Not fetched: no cache has them (or one of their references).
    pub unsubstitutable: BTreeSet<StorePath>,
    /// Fetching failed (bad download, hash mismatch, ...), with why.
    pub failed: Vec<(StorePath, CacheError)>,
}

pub struct Substituters {
    entries: Vec<Entry>,
    disk: Option<DiskCache>,
    trust: TrustPolicy,
    sd: StoreDir,
    /// Parallel queries and downloads.
    pub jobs: usize,
    warnings: Mutex<Vec<String>>,
}

impl Substituters {
    /// Open each cache; one that cannot be opened is left out with a warning (see
    /// [`Substituters::take_warnings`]).
    pub fn open(
        uris: &[String],
        sd: &StoreDir,
        opts: &OpenOptions,
        trust: TrustPolicy,
        disk: Option<DiskCache>,
    ) -> Substituters {
        let mut entries = Vec::new();
        let mut warnings = Vec::new();
        let mut seen = BTreeSet::new();
        for uri in uris {
            if uri.is_empty() || !seen.insert(uri.clone()) {
                continue;
            }
            // What the disk cache knows of a remote cache saves asking for nix-cache-info.
            let remote = !uri.starts_with("file://");
            let base = crate::uri::CacheUri::parse(uri).map(|u| u.base()).ok();
            let known = match (&disk, remote, &base) {
                (Some(d), true, Some(b)) => d.cache_exists(b).ok().flatten(),
                _ => None,
            };
            match BinaryCache::open_known(uri, sd, opts, known.map(|(_, p, w)| (p, w))) {
                Ok(cache) => {
                    let disk_id = match (&disk, cache.remote) {
                        (Some(d), true) => known.map(|(id, _, _)| id).or_else(|| {
                            d.create_cache(cache.uri(), sd, cache.want_mass_query, cache.priority)
                                .ok()
                        }),
                        _ => None,
                    };
                    entries.push(Entry {
                        cache,
                        disk_id,
                        broken: AtomicBool::new(false),
                    });
                }
                Err(e) => warnings.push(format!("ignoring substituter '{uri}': {e}")),
            }
        }
        // Stable: equal priorities keep the configured order.
        entries.sort_by_key(|e| e.cache.priority);
        Substituters {
            entries,
            disk,
            trust,
            sd: sd.clone(),
            jobs: opts.http_connections.clamp(1, 64),
            warnings: Mutex::new(warnings),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn uris(&self) -> Vec<&str> {
        self.entries.iter().map(|e| e.cache.uri()).collect()
    }

    pub fn uri(&self, i: usize) -> &str {
        self.entries[i].cache.uri()
    }

    /// Warnings gathered so far (unreachable caches, untrusted narinfos).
    pub fn take_warnings(&self) -> Vec<String> {
        std::mem::take(&mut *self.warnings.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn warn(&self, w: String) {
        tracing::debug!("{w}");
        self.warnings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(w);
    }

    /// The narinfo of `p` from one cache, through the disk cache for remote caches.
    fn lookup(&self, e: &Entry, p: &StorePath) -> Result<Option<NarInfo>> {
        if let (Some(d), Some(id)) = (&self.disk, e.disk_id) {
            match d.lookup(id, &self.sd, p.hash_part())? {
                Lookup::Missing => return Ok(None),
                Lookup::Present(ni) if ni.path == *p => return Ok(Some(*ni)),
                _ => {}
            }
        }
        let ni = e.cache.query_narinfo(p)?;
        if let (Some(d), Some(id)) = (&self.disk, e.disk_id) {
            d.upsert(id, p.hash_part(), ni.as_ref())?;
        }
        Ok(ni)
    }

    /// The realisation of `id` from one cache, through the disk cache for remote caches.
    fn lookup_realisation(&self, e: &Entry, id: &DrvOutput) -> Result<Option<Realisation>> {
        if let (Some(d), Some(cache)) = (&self.disk, e.disk_id) {
            match d.lookup_realisation(cache, id)? {
                Lookup::Missing => return Ok(None),
                Lookup::Present(r) => return Ok(Some(*r)),
                Lookup::Unknown => {}
            }
        }
        let r = e.cache.query_realisation(id)?;
        if let (Some(d), Some(cache)) = (&self.disk, e.disk_id) {
            d.upsert_realisation(cache, id, r.as_ref())?;
        }
        Ok(r)
    }

    /// A failed lookup in cache `e`: a download error disables the cache for this run (as
    /// CppNix does), anything else is a warning.
    fn lookup_failed(&self, e: &Entry, err: CacheError) {
        if matches!(err, CacheError::Download { .. }) {
            e.broken.store(true, Ordering::Relaxed);
            self.warn(format!(
                "disabling substituter '{}' for this run: {err}",
                e.cache.uri()
            ));
        } else {
            self.warn(err.to_string());
        }
    }

    /// The first cache (by priority) with a trusted narinfo for `p`.
    pub fn query(&self, p: &StorePath) -> Option<Available> {
        for (i, e) in self.entries.iter().enumerate() {
            if e.broken.load(Ordering::Relaxed) {
                continue;
            }
            match self.lookup(e, p) {
                Ok(None) => {}
                Ok(Some(info)) => {
                    if self.trust.accepts(&self.sd, &info) {
                        return Some(Available { cache: i, info });
                    }
                    self.warn(format!(
                        "substituter '{}' does not have a valid signature for path '{}'",
                        e.cache.uri(),
                        self.sd.display(p)
                    ));
                }
                Err(err) => self.lookup_failed(e, err),
            }
        }
        None
    }

    /// The first cache (by priority) with a trusted realisation of `id` (`ca-derivations`):
    /// with `require-sigs`, one signed by a trusted key; a cache whose realisation is not is
    /// passed over with a warning. (CppNix 2.8 takes a cache's realisation without checking its
    /// signatures; the output path itself is checked as every substituted path is.)
    /// Remote caches' answers go through the narinfo disk cache, as CppNix's.
    pub fn query_realisation(&self, id: &DrvOutput) -> Option<(usize, Realisation)> {
        for (i, e) in self.entries.iter().enumerate() {
            if e.broken.load(Ordering::Relaxed) {
                continue;
            }
            match self.lookup_realisation(e, id) {
                Ok(None) => {}
                Ok(Some(r)) => {
                    if !self.trust.require_sigs
                        || crate::realisation::valid_signatures(&r, &self.trust.keys) > 0
                    {
                        return Some((i, r));
                    }
                    self.warn(format!(
                        "substituter '{}' does not have a valid signature for realisation '{id}'",
                        e.cache.uri()
                    ));
                }
                Err(err) => self.lookup_failed(e, err),
            }
        }
        None
    }

    /// Query many paths at once (up to `jobs` in flight).
    pub fn query_many(&self, paths: &[StorePath]) -> Vec<Option<Available>> {
        graph::parallel_map(paths, self.jobs, |p| self.query(p))
    }

    /// What fetching `roots` takes: every path of their closures that is not valid locally,
    /// with where to get it. `Err` lists the paths no cache has (the closure cannot be
    /// substituted).
    pub fn query_closure(
        &self,
        store: &LocalStore,
        roots: &BTreeSet<StorePath>,
    ) -> Result<ClosurePlan> {
        let mut seen: BTreeSet<StorePath> = BTreeSet::new();
        let mut found = Vec::new();
        let mut missing = BTreeSet::new();
        let mut frontier: Vec<StorePath> = Vec::new();
        for r in roots {
            if seen.insert(r.clone()) && !store.is_valid_path(r)? {
                frontier.push(r.clone());
            }
        }
        while !frontier.is_empty() {
            let answers = self.query_many(&frontier);
            let mut next = Vec::new();
            for (p, a) in frontier.into_iter().zip(answers) {
                match a {
                    None => {
                        missing.insert(p);
                    }
                    Some(a) => {
                        for r in &a.info.references {
                            if seen.insert(r.clone()) && !store.is_valid_path(r)? {
                                next.push(r.clone());
                            }
                        }
                        found.push((p, a));
                    }
                }
            }
            frontier = next;
        }
        if missing.is_empty() {
            Ok(Ok(found))
        } else {
            Ok(Err(missing))
        }
    }

    /// What CppNix's `Store::substitutePaths` does (for `nix copy --substitute-on-destination`
    /// into a local store, and for a `nix-store --serve` client that asks for substitution):
    /// fetch from the caches those of `paths` that are missing from `store`, with whatever
    /// of their closures is missing too. Derivations are left out (nothing is built), and so
    /// is a path with a reference that is neither valid nor substitutable (its substitution
    /// could not succeed; the caller copies it some other way). Failures are not errors: the
    /// paths stay missing, and what went wrong is returned.
    pub fn substitute_paths(
        &self,
        store: &LocalStore,
        paths: &BTreeSet<StorePath>,
        progress: &(dyn Fn(Progress<'_>) + Sync),
    ) -> Result<SubstituteReport> {
        let mut report = SubstituteReport::default();
        let mut planned: HashMap<StorePath, Available> = HashMap::new();
        let mut seen: BTreeSet<StorePath> = BTreeSet::new();
        let mut frontier: Vec<StorePath> = Vec::new();
        for p in paths {
            if !p.is_derivation() && seen.insert(p.clone()) && !store.is_valid_path(p)? {
                frontier.push(p.clone());
            }
        }
        // Paths no cache has (and that are not valid).
        let mut unknown: BTreeSet<StorePath> = BTreeSet::new();
        while !frontier.is_empty() {
            let answers = self.query_many(&frontier);
            let mut next = Vec::new();
            for (p, a) in frontier.into_iter().zip(answers) {
                let Some(a) = a else {
                    unknown.insert(p);
                    continue;
                };
                for r in &a.info.references {
                    if seen.insert(r.clone()) && !store.is_valid_path(r)? {
                        next.push(r.clone());
                    }
                }
                planned.insert(p, a);
            }
            frontier = next;
        }
        // Leave out (transitively) what refers to a path that cannot be had.
        let mut referrers: HashMap<StorePath, Vec<StorePath>> = HashMap::new();
        for (p, a) in &planned {
            for r in a.info.references.iter().filter(|r| *r != p) {
                referrers.entry(r.clone()).or_default().push(p.clone());
            }
        }
        let mut dropped: Vec<StorePath> = unknown.iter().cloned().collect();
        while let Some(gone) = dropped.pop() {
            for r in referrers.remove(&gone).unwrap_or_default() {
                if planned.remove(&r).is_some() {
                    report.unsubstitutable.insert(r.clone());
                    dropped.push(r);
                }
            }
        }
        report.unsubstitutable.extend(unknown);
        let mut items: Vec<(StorePath, Available)> = planned.into_iter().collect();
        items.sort_by(|a, b| a.0.cmp(&b.0));
        let failed = self.fetch(store, &items, progress);
        let failed_paths: BTreeSet<&StorePath> = failed.iter().map(|(p, _)| p).collect();
        report.substituted = items
            .iter()
            .map(|(p, _)| p.clone())
            .filter(|p| !failed_paths.contains(p))
            .collect();
        report.failed = failed;
        Ok(report)
    }

    /// Fetch `items` (as from [`Substituters::query_closure`]) into `store`, references first,
    /// up to `jobs` at once. Returns the paths that failed, with why.
    pub fn fetch(
        &self,
        store: &LocalStore,
        items: &[(StorePath, Available)],
        progress: &(dyn Fn(Progress<'_>) + Sync),
    ) -> Vec<(StorePath, CacheError)> {
        let index: HashMap<&StorePath, usize> =
            items.iter().enumerate().map(|(i, (p, _))| (p, i)).collect();
        let deps: Vec<Vec<usize>> = items
            .iter()
            .map(|(p, a)| {
                a.info
                    .references
                    .iter()
                    .filter(|r| *r != p)
                    .filter_map(|r| index.get(r).copied())
                    .collect()
            })
            .collect();
        // Download, decompress, hash and restore everything at once (network-bound for remote
        // caches, CPU-bound for local ones); then register in reference order.
        let remote = self.entries.iter().any(|e| e.cache.remote);
        let jobs = if remote {
            self.jobs.min(16)
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        };
        // Every path a temporary root at once (one shared lock on `gc.lock`), rather than
        // each as it is staged.
        let paths: Vec<StorePath> = items.iter().map(|(p, _)| p.clone()).collect();
        if let Err(err) = store.add_temp_roots(&paths) {
            return paths
                .into_iter()
                .map(|p| {
                    let e = CacheError::Other(format!(
                        "adding a temporary root for '{}': {err}",
                        self.sd.display(&p)
                    ));
                    (p, e)
                })
                .collect();
        }
        let staged: Vec<Mutex<Option<Result<Option<StagedNar>>>>> =
            items.iter().map(|_| Mutex::new(None)).collect();
        let idx: Vec<usize> = (0..items.len()).collect();
        graph::parallel_map(&idx, jobs, |&i| {
            let (p, a) = &items[i];
            let r = self.stage_one(store, p, a, progress);
            *staged[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
        });
        // Everything whose references all arrived is registered in one transaction.
        let (outcomes, ready) = crate::copy::in_reference_order(&deps, staged);
        let paths: Vec<StorePath> = ready.iter().map(|s| s.path().clone()).collect();
        if let Err(err) = store.commit_nars(ready) {
            return paths
                .into_iter()
                .map(|p| {
                    let e =
                        CacheError::Other(format!("registering '{}': {err}", self.sd.display(&p)));
                    (p, e)
                })
                .collect();
        }
        for (p, _) in items {
            progress(Progress::Done { path: p });
        }
        // Whether a skipped path's substitution failed for want of a NAR that is gone (its
        // chain of skipped references ends at a gone one).
        let gone_below = |mut d: usize| -> bool {
            for _ in 0..outcomes.len() {
                match outcomes.get(d) {
                    Some(Outcome::Skipped(next)) => d = *next,
                    Some(Outcome::Failed(e)) => return e.is_gone(),
                    _ => return false,
                }
            }
            false
        };
        let gone: Vec<bool> = outcomes
            .iter()
            .map(|o| matches!(o, Outcome::Skipped(d) if gone_below(*d)))
            .collect();
        let mut failed = Vec::new();
        for (i, o) in outcomes.into_iter().enumerate() {
            match o {
                Outcome::Done => {}
                Outcome::Failed(e) => failed.push((items[i].0.clone(), e)),
                Outcome::Skipped(d) => {
                    let err = match items.get(d) {
                        Some((dp, _)) if gone[i] => CacheError::ReferenceGone {
                            reference: self.sd.display(dp).to_string(),
                        },
                        Some((dp, _)) => CacheError::Other(format!(
                            "its reference '{}' could not be substituted",
                            self.sd.display(dp)
                        )),
                        None => CacheError::Other("its references form a cycle".to_string()),
                    };
                    failed.push((items[i].0.clone(), err));
                }
            }
        }
        failed
    }

    /// Repair a valid path whose contents were damaged: fetch it again from a cache that has
    /// it with the registered NAR hash and swap the contents in. Returns false when no cache
    /// can.
    pub fn repair(&self, store: &LocalStore, p: &StorePath) -> Result<bool> {
        let Some(info) = store.query_path_info(p)? else {
            return Ok(false);
        };
        let Some(a) = self.query(p) else {
            return Ok(false);
        };
        if a.info.nar_hash != info.nar_hash {
            self.warn(format!(
                "substituter '{}' has another version of '{}' (NAR hash {}); not repairing from it",
                self.entries[a.cache].cache.uri(),
                self.sd.display(p),
                a.info.nar_hash
            ));
            return Ok(false);
        }
        eprintln!(
            "repairing path '{}' from '{}'...",
            self.sd.display(p),
            self.entries[a.cache].cache.uri()
        );
        let mut nar = self.entries[a.cache].cache.open_nar(&a.info)?;
        store.repair_nar(&info, &mut nar)?;
        Ok(true)
    }

    /// Open `p`'s NAR from the cache `a` found it in; when that cache no longer has the NAR
    /// (its narinfo is there, the file is gone), from the next cache by priority that has a
    /// trusted narinfo for `p` with the same references, as CppNix tries its next
    /// substituter. The error when every one's NAR is gone is the first cache's
    /// ([`CacheError::is_gone`]).
    fn open_nar_somewhere(
        &self,
        p: &StorePath,
        a: &Available,
        progress: &(dyn Fn(Progress<'_>) + Sync),
    ) -> Result<(&Entry, NarInfo, Box<dyn Read + Send>)> {
        let mut gone: Option<CacheError> = None;
        for i in a.cache..self.entries.len() {
            let e = &self.entries[i];
            let info = if i == a.cache {
                a.info.clone()
            } else {
                if e.broken.load(Ordering::Relaxed) {
                    continue;
                }
                match self.lookup(e, p) {
                    Ok(Some(info))
                        if info.references == a.info.references
                            && self.trust.accepts(&self.sd, &info) =>
                    {
                        info
                    }
                    Ok(_) => continue,
                    Err(err) => {
                        self.lookup_failed(e, err);
                        continue;
                    }
                }
            };
            progress(Progress::Start {
                path: p,
                from: e.cache.uri(),
                nar_size: info.nar_size,
            });
            match e.cache.open_nar(&info) {
                Ok(nar) => return Ok((e, info, nar)),
                Err(err) if err.is_gone() => {
                    tracing::debug!("{err}");
                    gone.get_or_insert(err);
                }
                Err(err) => return Err(err),
            }
        }
        Err(gone.unwrap_or_else(|| {
            CacheError::Other(format!(
                "no binary cache has '{}' any more",
                self.sd.display(p)
            ))
        }))
    }

    fn stage_one(
        &self,
        store: &LocalStore,
        p: &StorePath,
        a: &Available,
        progress: &(dyn Fn(Progress<'_>) + Sync),
    ) -> Result<Option<StagedNar>> {
        if store.is_valid_path(p)? {
            return Ok(None);
        }
        let (e, info, nar) = self.open_nar_somewhere(p, a, progress)?;
        let mut counting = ProgressReader {
            inner: nar,
            done: AtomicU64::new(0),
            last: 0,
            path: p,
            progress,
        };
        store
            .stage_nar(&narinfo_to_path_info(&info), &mut counting)
            .map_err(|err| {
                CacheError::Other(format!(
                    "substituting '{}' from '{}': {err}",
                    self.sd.display(p),
                    e.cache.uri()
                ))
            })
    }
}

struct ProgressReader<'a, R> {
    inner: R,
    done: AtomicU64,
    last: u64,
    path: &'a StorePath,
    progress: &'a (dyn Fn(Progress<'_>) + Sync),
}

impl<R: Read> Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let done = self.done.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        if done - self.last >= 1 << 20 {
            self.last = done;
            (self.progress)(Progress::Bytes {
                path: self.path,
                done,
            });
        }
        Ok(n)
    }
}
