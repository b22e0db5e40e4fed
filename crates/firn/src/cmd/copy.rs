//! `nix copy --to URI | --from URI`: copy closures between the local store and binary caches
//! (or another local store), skipping what the destination has.

use std::collections::BTreeSet;

use anyhow::{bail, Result};
use clap::Args;
use firn_build::DerivedPath;
use firn_cache::copy::{copy_closure, copy_realisations, AnyStore, CopyOptions};
use firn_format::StorePath;
use firn_store::realisations::{DrvOutput, Realisation};
use firn_store::LocalStore;

use crate::cmd::build::InstallableArgs;
use crate::context::{Ctx, Failure};
use crate::paths::follow_links_to_store_path;
use crate::realise::BuildFlags;

#[derive(Args, Debug)]
pub struct CopyArgs {
    /// URI of the destination store.
    #[arg(long)]
    to: Option<String>,
    /// URI of the source store.
    #[arg(long)]
    from: Option<String>,
    /// Do not require that paths are signed by trusted keys.
    #[arg(long = "no-check-sigs")]
    no_check_sigs: bool,
    /// Let the destination first fetch the paths from its own substituters; only what it
    /// cannot get is copied from the source.
    #[arg(short = 's', long = "substitute-on-destination")]
    substitute_on_destination: bool,
    /// Copy every valid path of the source store.
    #[arg(long)]
    all: bool,
    /// Accepted for compatibility: closures are always copied.
    #[arg(short = 'r', long)]
    recursive: bool,
    /// Store paths (or links to them), DRV^OUTPUTS, or with --file/--expr attribute paths.
    #[command(flatten)]
    inst: InstallableArgs,
}

pub fn run(ctx: &Ctx, a: CopyArgs) -> Result<()> {
    let _ = a.recursive;
    let (src, mut dst) = match (&a.from, &a.to) {
        (None, None) => bail!("you must pass '--from' and/or '--to'"),
        (Some(f), None) => (ctx.open_any_at(f)?, ctx.open_any()?),
        (None, Some(t)) => (ctx.open_any()?, ctx.open_any_at(t)?),
        (Some(f), Some(t)) => (ctx.open_any_at(f)?, ctx.open_any_at(t)?),
    };
    // What goes up to a remote cache is looked up in, and recorded in, the narinfo disk
    // cache, as CppNix does.
    if let AnyStore::Cache(c) = &mut dst {
        ctx.attach_disk_cache(c)?;
    }
    let sd = src.store_dir().clone();
    let jobs = ctx.transfer_jobs(&[&src, &dst]);
    let mut paths: BTreeSet<StorePath> = BTreeSet::new();
    if a.all {
        if !a.inst.installables.is_empty() {
            bail!("'--all' does not expect arguments");
        }
        match &src {
            AnyStore::Local(s) => paths.extend(s.query_all_valid_paths()?),
            // A file:// or s3:// cache is listed; an HTTP one cannot be.
            AnyStore::Cache(c) => paths.extend(c.query_all_valid_paths(jobs)?),
            other => bail!(
                "operation 'queryAllValidPaths' is not supported by store '{}'",
                other.describe()
            ),
        }
    }
    // Derivation outputs (`DRV^OUT`, or what --file/--expr evaluate to) are realised first,
    // and with `ca-derivations` their realisations are copied after the paths, as CppNix's
    // `copyPaths` does for built paths.
    let derived = a.inst.names_derivations();
    let mut realisations = Vec::new();
    if derived {
        let (resolved, local) = crate::cmd::build::resolve_installables(ctx, &a.inst)?;
        for path in resolved {
            match path {
                DerivedPath::Opaque(p) => {
                    paths.insert(p);
                }
                DerivedPath::Built { drv, outputs } => {
                    let (outs, rs) = built_outputs(ctx, &src, &local, &drv, outputs)?;
                    paths.extend(outs);
                    realisations.extend(rs);
                }
            }
        }
    } else {
        for i in &a.inst.installables {
            paths.insert(follow_links_to_store_path(&sd, i)?);
        }
    }
    let check_sigs = if a.no_check_sigs || !ctx.settings.get_bool("require-sigs") {
        None
    } else {
        Some(ctx.trust_policy()?)
    };
    // A local destination substitutes from this command's substituters (ssh:// ones from
    // their own).
    let dst_subs = match (&dst, a.substitute_on_destination) {
        (AnyStore::Local(_), true) => ctx.substituters()?,
        _ => None,
    };
    let log = CopyLog::new(ctx, &src, &dst);
    let opts = CopyOptions {
        jobs,
        check_sigs,
        substitute: a.substitute_on_destination,
        dst_substituters: dst_subs.as_ref(),
        on_start: Some(&|n| log.start(n)),
    };
    let report = copy_closure(&src, &dst, &paths, &opts, &|p| log.path(p))?;
    finish(&sd, &report)?;
    if !realisations.is_empty() {
        copy_realisations(&src, &dst, &realisations, opts.check_sigs.as_ref())?;
    }
    Ok(())
}

/// Copy `paths` (with their closures) from the local store to the store at `to`, as
/// `nix copy --to` does (`nix flake archive --to`).
pub(crate) fn copy_paths(ctx: &Ctx, to: &str, paths: &BTreeSet<StorePath>) -> Result<()> {
    let src = ctx.open_any()?;
    let mut dst = ctx.open_any_at(to)?;
    if let AnyStore::Cache(c) = &mut dst {
        ctx.attach_disk_cache(c)?;
    }
    let sd = src.store_dir().clone();
    let check_sigs = match ctx.settings.get_bool("require-sigs") {
        true => Some(ctx.trust_policy()?),
        false => None,
    };
    let log = CopyLog::new(ctx, &src, &dst);
    let opts = CopyOptions {
        jobs: ctx.transfer_jobs(&[&src, &dst]),
        check_sigs,
        substitute: false,
        dst_substituters: None,
        on_start: Some(&|n| log.start(n)),
    };
    let report = copy_closure(&src, &dst, paths, &opts, &|p| log.path(p))?;
    finish(&sd, &report)
}

/// CppNix's messages of a copy between stores (`copyPaths`): `copying N paths...`, then
/// `copying path 'P' to 'DST'...` (from a local store), `... from 'SRC'...` (to one), or
/// `... from 'SRC' to 'DST'...`; not with `--quiet`.
pub(crate) struct CopyLog {
    shown: bool,
    sd: firn_format::StoreDir,
    from: Option<String>,
    to: Option<String>,
}

impl CopyLog {
    pub(crate) fn new(ctx: &Ctx, src: &AnyStore, dst: &AnyStore) -> CopyLog {
        let uri = |s: &AnyStore| match s {
            AnyStore::Local(_) => None,
            other => Some(other.describe()),
        };
        CopyLog {
            shown: ctx.verbosity >= 0,
            sd: src.store_dir().clone(),
            from: uri(src),
            to: uri(dst),
        }
    }

    pub(crate) fn start(&self, n: usize) {
        if self.shown {
            crate::logger::line(crate::logger::INFO, &format!("copying {n} paths..."));
        }
    }

    pub(crate) fn path(&self, p: &StorePath) {
        if !self.shown {
            return;
        }
        let p = self.sd.display(p);
        let line = match (&self.from, &self.to) {
            (None, to) => format!(
                "copying path '{p}' to '{}'...",
                to.as_deref().unwrap_or("local")
            ),
            (Some(from), None) => format!("copying path '{p}' from '{from}'..."),
            (Some(from), Some(to)) => format!("copying path '{p}' from '{from}' to '{to}'..."),
        };
        crate::logger::line(crate::logger::INFO, &line);
    }
}

/// The paths of the wanted outputs (`None`: all) of `drv` in the source store, and with
/// `ca-derivations` their realisations there. A local source builds what is missing first.
pub(crate) fn built_outputs(
    ctx: &Ctx,
    src: &AnyStore,
    local: &LocalStore,
    drv_path: &StorePath,
    outputs: Option<BTreeSet<String>>,
) -> Result<(Vec<StorePath>, Vec<Realisation>)> {
    let sd = local.store_dir();
    if matches!(src, AnyStore::Local(_)) {
        let wanted = [DerivedPath::Built {
            drv: drv_path.clone(),
            outputs: outputs.clone(),
        }];
        crate::realise::realise(ctx, local, &wanted, &BuildFlags::default())?;
    }
    let drv = firn_build::plan::read_derivation(local, drv_path)?;
    let known = firn_build::ca::output_map(local, &drv)?;
    let hashes = if local.ca_derivations() {
        Some(firn_build::ca::static_hashes(local, &drv)?)
    } else {
        None
    };
    let mut paths = Vec::new();
    let mut realisations = Vec::new();
    for name in drv.outputs.keys() {
        if outputs.as_ref().is_some_and(|o| !o.contains(name)) {
            continue;
        }
        let realisation = match hashes.as_ref().and_then(|h| h.get(name)) {
            Some(h) => src.query_realisation(&DrvOutput {
                drv_hash: h.clone(),
                output: name.clone(),
            })?,
            None => None,
        };
        match (realisation, known.get(name)) {
            (Some(r), _) => {
                paths.push(r.out_path.clone());
                realisations.push(r);
            }
            (None, Some(Some(p))) => paths.push(p.clone()),
            (None, _) => bail!(
                "output '{name}' of '{}' is not realised in '{}'",
                sd.display(drv_path),
                src.describe()
            ),
        }
    }
    Ok((paths, realisations))
}

/// Print each path that could not be copied; fail (exit 1) if any.
pub fn finish(sd: &firn_format::StoreDir, report: &firn_cache::copy::CopyReport) -> Result<()> {
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    if report.failed.is_empty() {
        return Ok(());
    }
    for (p, e) in &report.failed {
        eprintln!("error: copying '{}': {e}", sd.display(p));
    }
    Err(Failure {
        code: 1,
        msg: format!("{} paths could not be copied", report.failed.len()),
        silent: true,
    }
    .into())
}
