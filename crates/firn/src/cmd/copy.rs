//! `nix copy --to URI | --from URI`: copy closures between the local store and binary caches
//! (or another local store), skipping what the destination has.

use std::collections::BTreeSet;

use anyhow::{bail, Result};
use clap::Args;
use firn_cache::copy::{copy_closure, AnyStore, CopyOptions};
use firn_format::StorePath;

use crate::context::{Ctx, Failure};
use crate::paths::follow_links_to_store_path;

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
    /// Store paths, or links to them.
    installables: Vec<String>,
}

pub fn run(ctx: &Ctx, a: CopyArgs) -> Result<()> {
    let _ = a.recursive;
    let (src, dst) = match (&a.from, &a.to) {
        (None, None) => bail!("you must pass '--from' and/or '--to'"),
        (Some(f), None) => (ctx.open_any_at(f)?, ctx.open_any()?),
        (None, Some(t)) => (ctx.open_any()?, ctx.open_any_at(t)?),
        (Some(f), Some(t)) => (ctx.open_any_at(f)?, ctx.open_any_at(t)?),
    };
    let sd = src.store_dir().clone();
    let mut paths: BTreeSet<StorePath> = BTreeSet::new();
    if a.all {
        if !a.installables.is_empty() {
            bail!("'--all' does not expect arguments");
        }
        match &src {
            AnyStore::Local(s) => paths.extend(s.query_all_valid_paths()?),
            other => bail!("'--all' is not supported for '{}'", other.describe()),
        }
    }
    for i in &a.installables {
        paths.insert(follow_links_to_store_path(&sd, i)?);
    }
    let check_sigs = if a.no_check_sigs || !ctx.settings.get_bool("require-sigs") {
        None
    } else {
        Some(ctx.trust_policy()?)
    };
    // Remote ends wait on the network: many at once. Otherwise the work is compression and
    // hashing: one per core.
    let remote = |s: &AnyStore| matches!(s, AnyStore::Cache(c) if c.remote);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let ssh = |s: &AnyStore| matches!(s, AnyStore::Ssh(_));
    let jobs = if ssh(&src) || ssh(&dst) {
        1
    } else if remote(&src) || remote(&dst) {
        ctx.cache_options().http_connections.clamp(1, 64)
    } else {
        cores
    };
    // A local destination substitutes from this command's substituters (ssh:// ones from
    // their own).
    let dst_subs = match (&dst, a.substitute_on_destination) {
        (AnyStore::Local(_), true) => ctx.substituters()?,
        _ => None,
    };
    let opts = CopyOptions {
        jobs,
        check_sigs,
        substitute: a.substitute_on_destination,
        dst_substituters: dst_subs.as_ref(),
    };
    let from = src.describe();
    let to = dst.describe();
    let report = copy_closure(&src, &dst, &paths, &opts, &|p| {
        tracing::info!("copying path '{}' from '{from}' to '{to}'", sd.display(p));
    })?;
    finish(&sd, &report)
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
