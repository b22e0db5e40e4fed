//! Copying closures between stores (`nix copy`): the local store and binary caches in any
//! direction. Paths the destination has are skipped; the rest are copied several at once, each
//! after its references (so a cache never shows a narinfo whose references it lacks), with
//! the NAR streamed from source to destination without being held whole anywhere.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::Write;
use std::sync::Mutex;

use firn_format::{NarInfo, StoreDir, StorePath};
use firn_store::local::StagedNar;
use firn_store::realisations::{DrvOutput, Realisation};
use firn_store::{LocalStore, ValidPathInfo};

use crate::cache::{narinfo_to_path_info, BinaryCache, NarSource};
use crate::graph::{self, Outcome};
use crate::substitute::{Progress, Substituters, TrustPolicy};
use crate::{CacheError, Result};

use crate::any_store::remote_err;
pub use crate::any_store::AnyStore;
pub use crate::graph::parallel_map;

/// The closure of `roots` in `src`, with each path's info.
pub fn closure_infos(
    src: &AnyStore,
    roots: &BTreeSet<StorePath>,
    jobs: usize,
) -> Result<HashMap<StorePath, ValidPathInfo>> {
    Ok(closure(src, roots, jobs)?.0)
}

/// The closure of `roots` in `src`: each path's info, and for a cache its narinfo (which says
/// where the NAR is). A cache is walked by `jobs` threads, each lookup as soon as its path is
/// found; local and `ssh://` stores a level at a time, each level in one query.
fn closure(
    src: &AnyStore,
    roots: &BTreeSet<StorePath>,
    jobs: usize,
) -> Result<(
    HashMap<StorePath, ValidPathInfo>,
    HashMap<StorePath, NarInfo>,
)> {
    let missing = |p: &StorePath| {
        CacheError::Other(format!(
            "path '{}' is not valid in '{}'",
            src.store_dir().display(p),
            src.describe()
        ))
    };
    if let AnyStore::Cache(c) = src {
        let found = graph::discover(roots.iter().cloned().collect(), jobs, |p| {
            let ni = c.query_narinfo(p)?.ok_or_else(|| missing(p))?;
            let refs = ni.references.iter().cloned().collect();
            Ok::<_, CacheError>((ni, refs))
        })?;
        let infos = found
            .iter()
            .map(|(p, ni)| (p.clone(), narinfo_to_path_info(ni)))
            .collect();
        return Ok((infos, found.into_iter().collect()));
    }
    let mut infos = HashMap::new();
    let mut seen: BTreeSet<StorePath> = roots.clone();
    let mut frontier: Vec<StorePath> = roots.iter().cloned().collect();
    while !frontier.is_empty() {
        let got = src.query_infos(&frontier, jobs)?;
        let mut next = Vec::new();
        for (p, info) in frontier.into_iter().zip(got) {
            let info = info.ok_or_else(|| missing(&p))?;
            for r in &info.references {
                if seen.insert(r.clone()) {
                    next.push(r.clone());
                }
            }
            infos.insert(p, info);
        }
        frontier = next;
    }
    Ok((infos, HashMap::new()))
}

pub struct CopyOptions<'a> {
    pub jobs: usize,
    /// Check signatures when the destination is the local store (`--no-check-sigs` = None).
    pub check_sigs: Option<TrustPolicy>,
    /// `--substitute-on-destination`: the destination first fetches the missing paths from
    /// its own substituters, and only what it could not get is copied from the source. A
    /// local destination uses `dst_substituters`; an `ssh://` one is asked to (the
    /// `nix-store --serve` query carries the flag); a binary cache has no substituters.
    pub substitute: bool,
    /// The substituters of a local destination (its `substituters` setting).
    pub dst_substituters: Option<&'a Substituters>,
    /// Told how many paths will be copied (those the destination lacks, maybe none) before
    /// the first (CppNix 2.8's `copying N paths`).
    pub on_start: Option<&'a (dyn Fn(usize) + Sync)>,
}

/// What a copy did.
#[derive(Debug, Default)]
pub struct CopyReport {
    pub copied: Vec<StorePath>,
    /// Fetched by the destination from its substituters instead of copied (local
    /// destinations; a remote one does not say which paths it substituted).
    pub substituted: Vec<StorePath>,
    pub failed: Vec<(StorePath, CacheError)>,
    /// Substitutions that failed (the paths were copied from the source instead).
    pub warnings: Vec<String>,
}

/// Copy `paths` and their closures from `src` to `dst`. `on_copy` is told of each path as
/// its copy starts.
pub fn copy_closure(
    src: &AnyStore,
    dst: &AnyStore,
    paths: &BTreeSet<StorePath>,
    opts: &CopyOptions,
    on_copy: &(dyn Fn(&StorePath) + Sync),
) -> Result<CopyReport> {
    let (infos, narinfos) = closure(src, paths, src.query_jobs(opts.jobs))?;
    let mut all: Vec<StorePath> = infos.keys().cloned().collect();
    all.sort();
    let mut report = CopyReport::default();
    let mut valid: HashSet<StorePath> = match dst {
        // One round trip; with `substitute`, the remote store substitutes first.
        AnyStore::Ssh(s) => s
            .query_valid_paths_substituting(&all.iter().cloned().collect(), opts.substitute)
            .map_err(remote_err)?
            .into_iter()
            .collect(),
        _ => all
            .iter()
            .zip(dst.query_valid(&all, dst.query_jobs(opts.jobs))?)
            .filter(|(_, v)| *v)
            .map(|(p, _)| p.clone())
            .collect(),
    };
    if let (true, AnyStore::Local(d), Some(subs)) = (opts.substitute, dst, opts.dst_substituters) {
        let missing: BTreeSet<StorePath> = all
            .iter()
            .filter(|p| !valid.contains(*p))
            .cloned()
            .collect();
        valid.extend(substitute_on_destination(d, subs, &missing, &mut report)?);
    }
    // In path order (`all` is sorted).
    let todo: Vec<&ValidPathInfo> = all
        .iter()
        .filter(|p| !valid.contains(*p))
        .map(|p| &infos[p])
        .collect();
    if let Some(start) = opts.on_start {
        start(todo.len());
    }
    let index: HashMap<&StorePath, usize> =
        todo.iter().enumerate().map(|(i, x)| (&x.path, i)).collect();
    let deps: Vec<Vec<usize>> = todo
        .iter()
        .map(|info| {
            info.references
                .iter()
                .filter(|r| **r != info.path)
                .filter_map(|r| index.get(r).copied())
                .collect()
        })
        .collect();
    let sd = src.store_dir();
    let outcomes = match (dst, src) {
        // Into a cache, the NARs (the work: compression, upload) go up all at once; each
        // narinfo follows as soon as its NAR and its references' narinfos are there.
        (AnyStore::Cache(c), _) => {
            crate::upload::upload_all(c, &todo, &deps, opts.jobs, |info, w| {
                on_copy(&info.path);
                src.dump_nar(&info.path, w)
            })
        }
        // From a cache, the downloads (and decompression) run all at once into staging
        // directories; registration follows the references.
        (AnyStore::Local(d), AnyStore::Cache(c)) => {
            // Every path a temporary root at once (one shared lock on `gc.lock`), rather
            // than each as it is staged.
            let paths: Vec<StorePath> = todo.iter().map(|i| i.path.clone()).collect();
            d.add_temp_roots(&paths)?;
            let staged: Vec<Mutex<Option<Result<Option<StagedNar>>>>> =
                todo.iter().map(|_| Mutex::new(None)).collect();
            let idx: Vec<usize> = (0..todo.len()).collect();
            parallel_map(&idx, opts.jobs, |&i| {
                let info = todo[i];
                on_copy(&info.path);
                let r = check_signature(c.store_dir(), info, opts)
                    .and_then(|()| stage_from_cache(c, d, info, narinfos.get(&info.path)));
                *staged[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
            });
            // Registered together, once the references are known to have arrived.
            let (outcomes, ready) = in_reference_order(&deps, staged);
            d.commit_nars(ready)?;
            outcomes
        }
        (AnyStore::Local(_), _) => graph::run(&deps, opts.jobs, |i| {
            let info = todo[i];
            on_copy(&info.path);
            copy_one(src, dst, info, opts)
        }),
        // One session: one path at a time, references first.
        (AnyStore::Ssh(s), _) => graph::run(&deps, 1, |i| {
            let info = todo[i];
            on_copy(&info.path);
            let mut produce = |w: &mut dyn Write| {
                src.dump_nar(&info.path, w)
                    .map_err(|e| firn_remote::RemoteError::Other(e.to_string()))
            };
            s.add_to_store_nar(info, &mut produce).map_err(remote_err)
        }),
    };
    for (i, o) in outcomes.into_iter().enumerate() {
        let p = todo[i].path.clone();
        match o {
            Outcome::Done => report.copied.push(p),
            Outcome::Failed(e) => report.failed.push((p, e)),
            Outcome::Skipped(d) => {
                let why = match todo.get(d) {
                    Some(x) => format!(
                        "cannot copy '{}' because its reference '{}' could not be copied",
                        sd.display(&p),
                        sd.display(&x.path)
                    ),
                    None => format!(
                        "cannot copy '{}': its references form a cycle",
                        sd.display(&p)
                    ),
                };
                report.failed.push((p, CacheError::Other(why)));
            }
        }
    }
    Ok(report)
}

/// `--substitute-on-destination` into a local store: fetch what its substituters have of
/// `missing`; returns the paths now valid (and notes them, and what failed, in `report`).
fn substitute_on_destination(
    d: &LocalStore,
    subs: &Substituters,
    missing: &BTreeSet<StorePath>,
    report: &mut CopyReport,
) -> Result<Vec<StorePath>> {
    let sd = d.store_dir();
    let r = subs.substitute_paths(d, missing, &|ev| {
        if let Progress::Start { path, from, .. } = ev {
            tracing::info!("copying path '{}' from '{from}'", sd.display(path));
        }
    })?;
    report.warnings.extend(subs.take_warnings());
    for (p, e) in r.failed {
        report.warnings.push(format!(
            "substituting '{}' failed, copying it instead: {e}",
            sd.display(&p)
        ));
    }
    report.substituted = r.substituted.clone();
    Ok(r.substituted)
}

fn copy_one(
    src: &AnyStore,
    dst: &AnyStore,
    info: &ValidPathInfo,
    opts: &CopyOptions,
) -> Result<()> {
    let sd = src.store_dir();
    match dst {
        AnyStore::Cache(c) => {
            let mut produce = |w: &mut dyn Write| src.dump_nar(&info.path, w);
            c.add_path(info, NarSource::Producer(&mut produce))?;
            Ok(())
        }
        AnyStore::Ssh(_) => Err(CacheError::Other(
            "copy to ssh:// is done by copy_closure".into(),
        )),
        AnyStore::Local(d) => {
            check_signature(sd, info, opts)?;
            match src {
                AnyStore::Ssh(s) => {
                    s.with_nar(&info.path, |r| {
                        d.add_nar(info, r)
                            .map_err(|e| firn_remote::RemoteError::Other(e.to_string()))
                    })
                    .map_err(remote_err)?;
                }
                AnyStore::Cache(c) => {
                    if let Some(staged) = stage_from_cache(c, d, info, None)? {
                        d.commit_nar(staged)?;
                    }
                }
                AnyStore::Local(s) => {
                    let (mut reader, mut writer) = std::io::pipe().map_err(|e| CacheError::Io {
                        op: "creating a pipe for",
                        key: sd.display(&info.path),
                        cache: String::new(),
                        source: e,
                    })?;
                    std::thread::scope(|scope| -> Result<()> {
                        let dumper = scope.spawn(move || s.nar_from_path(&info.path, &mut writer));
                        let added = d.add_nar(info, &mut reader);
                        drop(reader);
                        let dumped = dumper
                            .join()
                            .map_err(|_| CacheError::Other("the NAR writer panicked".into()))?;
                        dumped?;
                        added?;
                        Ok(())
                    })?;
                }
            }
            Ok(())
        }
    }
}

/// Download, decompress, hash and restore a path from a cache into a staging directory of
/// `d` (None when `d` has it already). `ni` is its narinfo when already read.
fn stage_from_cache(
    c: &BinaryCache,
    d: &LocalStore,
    info: &ValidPathInfo,
    ni: Option<&NarInfo>,
) -> Result<Option<StagedNar>> {
    let sd = c.store_dir();
    let read;
    let ni = match ni {
        Some(ni) => ni,
        None => {
            read = c.query_narinfo(&info.path)?.ok_or_else(|| {
                CacheError::Other(format!(
                    "path '{}' disappeared from '{}'",
                    sd.display(&info.path),
                    c.uri()
                ))
            })?;
            &read
        }
    };
    let mut r = c.open_nar(ni)?;
    Ok(d.stage_nar(info, &mut r)?)
}

fn check_signature(sd: &StoreDir, info: &ValidPathInfo, opts: &CopyOptions) -> Result<()> {
    if let Some(trust) = &opts.check_sigs {
        if !trust.accepts(sd, &path_info_as_narinfo(info)) {
            return Err(CacheError::Other(format!(
                "cannot add path '{}' because it lacks a valid signature",
                sd.display(&info.path)
            )));
        }
    }
    Ok(())
}

/// What fetching each node staged: a path to commit, `None` if it was valid already, or the
/// error (the slot is emptied when taken).
pub(crate) type Staged = Vec<Mutex<Option<Result<Option<StagedNar>>>>>;

/// Walk the nodes in reference order: the outcome of each (failed, or skipped because a
/// reference failed), and the staged paths whose references all arrived, ready to commit.
pub(crate) fn in_reference_order(
    deps: &[Vec<usize>],
    staged: Staged,
) -> (Vec<Outcome<CacheError>>, Vec<StagedNar>) {
    let ready: Mutex<Vec<StagedNar>> = Mutex::new(Vec::new());
    let outcomes = graph::run(deps, 1, |i| {
        let r = staged[i]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or_else(|| Err(CacheError::Other("not downloaded".into())));
        if let Some(s) = r? {
            ready.lock().unwrap_or_else(|p| p.into_inner()).push(s);
        }
        Ok(())
    });
    (
        outcomes,
        ready.into_inner().unwrap_or_else(|p| p.into_inner()),
    )
}

/// The signature-relevant part of a path info, as a narinfo.
pub fn path_info_as_narinfo(info: &ValidPathInfo) -> NarInfo {
    let mut ni = NarInfo::new(
        info.path.clone(),
        String::new(),
        info.nar_hash.clone(),
        info.nar_size,
    );
    ni.references = info.references.clone();
    ni.sigs = info.sigs.clone();
    ni.ca = info.ca.clone();
    ni
}

/// The realisations half of CppNix's `copyPaths` (`ca-derivations`): `roots` and, through
/// their dependent realisations (read from `src`), everything they depend on, recorded on
/// `dst` dependencies first. Their output paths must have been copied already. `check_sigs`
/// as for paths: a local destination refuses realisations without a trusted signature.
/// Returns the number recorded.
pub fn copy_realisations(
    src: &AnyStore,
    dst: &AnyStore,
    roots: &[Realisation],
    check_sigs: Option<&TrustPolicy>,
) -> Result<usize> {
    let mut known: BTreeMap<DrvOutput, Realisation> = BTreeMap::new();
    let mut order: Vec<DrvOutput> = Vec::new();
    let mut done: BTreeSet<DrvOutput> = BTreeSet::new();
    let mut visiting: BTreeSet<DrvOutput> = BTreeSet::new();
    for root in roots {
        known.insert(root.id.clone(), root.clone());
    }
    // Depth first, each realisation after its dependencies (iteratively: the depth is the
    // source's to choose).
    for root in roots {
        let mut stack: Vec<(DrvOutput, bool)> = vec![(root.id.clone(), false)];
        while let Some((id, expanded)) = stack.pop() {
            if done.contains(&id) {
                continue;
            }
            if expanded {
                visiting.remove(&id);
                done.insert(id.clone());
                order.push(id);
                continue;
            }
            if !visiting.insert(id.clone()) {
                return Err(CacheError::Other(format!(
                    "the realisations of '{}' depend on themselves (through '{id}')",
                    root.id
                )));
            }
            stack.push((id.clone(), true));
            let deps: Vec<DrvOutput> = known[&id].dependent.keys().cloned().collect();
            for dep in deps {
                if done.contains(&dep) {
                    continue;
                }
                if !known.contains_key(&dep) {
                    let r = src.query_realisation(&dep)?.ok_or_else(|| {
                        CacheError::Other(format!(
                            "incomplete realisation closure: '{dep}' is a dependency of '{id}' but isn't registered"
                        ))
                    })?;
                    known.insert(dep.clone(), r);
                }
                stack.push((dep, false));
            }
        }
    }
    for id in &order {
        dst.register_realisation(&known[id], check_sigs)?;
    }
    Ok(order.len())
}
