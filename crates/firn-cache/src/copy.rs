//! Copying closures between stores (`nix copy`): the local store and binary caches in any
//! direction. Paths the destination has are skipped; the rest are copied several at once, each
//! after its references (so a cache never shows a narinfo whose references it lacks), with
//! the NAR streamed from source to destination without being held whole anywhere.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::sync::Mutex;

use firn_format::{StoreDir, StorePath};
use firn_remote::serve::SshStore;
use firn_store::local::StagedNar;
use firn_store::{LocalStore, ValidPathInfo};

use crate::cache::{narinfo_to_path_info, BinaryCache, NarSource};
use crate::graph::{self, Outcome};
use crate::substitute::TrustPolicy;
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

pub use crate::graph::parallel_map;

/// The closure of `roots` in `src`, with each path's info.
pub fn closure_infos(
    src: &AnyStore,
    roots: &BTreeSet<StorePath>,
    jobs: usize,
) -> Result<HashMap<StorePath, ValidPathInfo>> {
    let mut infos = HashMap::new();
    let mut seen: BTreeSet<StorePath> = roots.clone();
    let mut frontier: Vec<StorePath> = roots.iter().cloned().collect();
    while !frontier.is_empty() {
        let got = parallel_map(&frontier, jobs, |p| src.query_info(p));
        let mut next = Vec::new();
        for (p, r) in frontier.into_iter().zip(got) {
            let info = r?.ok_or_else(|| {
                CacheError::Other(format!(
                    "path '{}' is not valid in '{}'",
                    src.store_dir().display(&p),
                    src.describe()
                ))
            })?;
            for r in &info.references {
                if seen.insert(r.clone()) {
                    next.push(r.clone());
                }
            }
            infos.insert(p, info);
        }
        frontier = next;
    }
    Ok(infos)
}

pub struct CopyOptions {
    pub jobs: usize,
    /// Check signatures when the destination is the local store (`--no-check-sigs` = None).
    pub check_sigs: Option<TrustPolicy>,
}

/// What a copy did.
#[derive(Debug, Default)]
pub struct CopyReport {
    pub copied: Vec<StorePath>,
    pub failed: Vec<(StorePath, CacheError)>,
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
    // The local store answers from one database connection: no point in threads there.
    let query_jobs = |s: &AnyStore| match s {
        AnyStore::Local(_) | AnyStore::Ssh(_) => 1,
        AnyStore::Cache(_) => opts.jobs.max(8),
    };
    let infos = closure_infos(src, paths, query_jobs(src))?;
    let all: Vec<&StorePath> = infos.keys().collect();
    let present = parallel_map(&all, query_jobs(dst), |p| dst.is_valid(p));
    let mut todo: Vec<&ValidPathInfo> = Vec::new();
    for (p, has) in all.iter().zip(present) {
        if !has? {
            todo.push(&infos[*p]);
        }
    }
    todo.sort_by(|a, b| a.path.cmp(&b.path));
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
        // Into a cache, the NARs (the work: compression, upload) go up in any order, all at
        // once; only the narinfos must follow the references, and they are small.
        (AnyStore::Cache(c), _) => {
            let uploaded: Vec<Mutex<Option<Result<firn_format::NarInfo>>>> =
                todo.iter().map(|_| Mutex::new(None)).collect();
            let idx: Vec<usize> = (0..todo.len()).collect();
            parallel_map(&idx, opts.jobs, |&i| {
                let info = todo[i];
                on_copy(&info.path);
                let mut produce = |w: &mut dyn Write| src.dump_nar(&info.path, w);
                let r = c.upload_nar(info, NarSource::Producer(&mut produce));
                *uploaded[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
            });
            graph::run(&deps, 1, |i| {
                let r = uploaded[i]
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take()
                    .unwrap_or_else(|| Err(CacheError::Other("not uploaded".into())));
                c.write_narinfo(r?).map(|_| ())
            })
        }
        // From a cache, the downloads (and decompression) run all at once into staging
        // directories; registration follows the references.
        (AnyStore::Local(d), AnyStore::Cache(c)) => {
            let staged: Vec<Mutex<Option<Result<Option<StagedNar>>>>> =
                todo.iter().map(|_| Mutex::new(None)).collect();
            let idx: Vec<usize> = (0..todo.len()).collect();
            parallel_map(&idx, opts.jobs, |&i| {
                let info = todo[i];
                on_copy(&info.path);
                let r = check_signature(c.store_dir(), info, opts)
                    .and_then(|()| stage_from_cache(c, d, info));
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
    let mut report = CopyReport::default();
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
                    if let Some(staged) = stage_from_cache(c, d, info)? {
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
/// `d` (None when `d` has it already).
fn stage_from_cache(
    c: &BinaryCache,
    d: &LocalStore,
    info: &ValidPathInfo,
) -> Result<Option<StagedNar>> {
    let sd = c.store_dir();
    let ni = c.query_narinfo(&info.path)?.ok_or_else(|| {
        CacheError::Other(format!(
            "path '{}' disappeared from '{}'",
            sd.display(&info.path),
            c.uri()
        ))
    })?;
    let mut r = c.open_nar(&ni)?;
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

fn remote_err(e: firn_remote::RemoteError) -> CacheError {
    CacheError::Other(e.to_string())
}

/// The signature-relevant part of a path info, as a narinfo.
pub fn path_info_as_narinfo(info: &ValidPathInfo) -> firn_format::NarInfo {
    let mut ni = firn_format::NarInfo::new(
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
