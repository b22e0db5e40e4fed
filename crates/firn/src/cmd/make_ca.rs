//! `nix store make-content-addressed [--from URI] [--to URI] [--json] INSTALLABLES`: rewrite
//! the closures of store paths to content-addressed form ([`crate::make_ca`]), from the source
//! store (`--from`, else `--store`) into the destination (`--to`, else `--store`), and say
//! what each path given became: `rewrote 'OLD' to 'NEW'` on stderr, or with `--json`
//! `{"rewrites":{OLD:NEW,…}}` on stdout. Installables are store paths (or links to them), or
//! derivation outputs (`DRV^OUT`, attribute paths with `--file`/`--expr`), built first as
//! `nix copy` builds them.

use std::collections::BTreeSet;

use anyhow::{bail, Result};
use clap::Args;
use firn_cache::cache::NarSource;
use firn_cache::copy::AnyStore;
use firn_format::StorePath;

use crate::cmd::build::InstallableArgs;
use crate::context::Ctx;
use crate::paths::follow_links_to_store_path;

#[derive(Args, Debug)]
pub struct MakeCaArgs {
    /// URI of the source store.
    #[arg(long)]
    from: Option<String>,
    /// URI of the destination store.
    #[arg(long)]
    to: Option<String>,
    /// Produce output in JSON format.
    #[arg(long)]
    json: bool,
    /// Store paths (or links to them), DRV^OUTPUTS, or with --file/--expr attribute paths.
    #[command(flatten)]
    inst: InstallableArgs,
}

pub fn run(ctx: &Ctx, a: MakeCaArgs) -> Result<()> {
    let src = match &a.from {
        Some(f) => ctx.open_any_at(f)?,
        None => ctx.open_any()?,
    };
    let dst = match &a.to {
        Some(t) => ctx.open_any_at(t)?,
        None => ctx.open_any()?,
    };
    let sd = src.store_dir().clone();
    let mut given = Vec::new();
    let derived = a.inst.names_derivations();
    if derived {
        let (resolved, local) = crate::cmd::build::resolve_installables(ctx, &a.inst)?;
        for path in resolved {
            match path {
                firn_build::DerivedPath::Opaque(p) => given.push(p),
                firn_build::DerivedPath::Built { drv, outputs } => {
                    let (outs, _) =
                        crate::cmd::copy::built_outputs(ctx, &src, &local, &drv, outputs)?;
                    given.extend(outs);
                }
            }
        }
    } else {
        for p in &a.inst.installables {
            given.push(follow_links_to_store_path(&sd, p)?);
        }
    }
    let roots: BTreeSet<StorePath> = given.iter().cloned().collect();
    let jobs = ctx.transfer_jobs(&[&src, &dst]);
    let has = |p: &StorePath| -> Result<bool> { Ok(dst.is_valid(p)?) };
    let mut add = |info: &firn_store::ValidPathInfo, nar: &[u8]| -> Result<()> {
        match &dst {
            AnyStore::Local(s) => s.add_nar(info, &mut &nar[..])?,
            AnyStore::Cache(c) => {
                c.add_path(info, NarSource::Reader(&mut &nar[..]))?;
            }
            AnyStore::Ssh(_) => bail!(
                "firn cannot add paths to '{}' (an ssh:// store) here",
                dst.describe()
            ),
        }
        Ok(())
    };
    let show = |line: &str| {
        if ctx.verbosity >= 0 {
            eprintln!("{line}");
        }
    };
    let remapped =
        crate::make_ca::make_content_addressed(&src, &roots, jobs, &has, &mut add, &show)?;
    let became = |p: &StorePath| -> Result<&StorePath> {
        match remapped.get(p) {
            Some(q) => Ok(q),
            None => bail!("'{}' was not rewritten", sd.display(p)),
        }
    };
    if a.json {
        let mut m = serde_json::Map::new();
        for p in &given {
            m.insert(sd.display(p), sd.display(became(p)?).into());
        }
        let doc = serde_json::json!({ "rewrites": m });
        outln!("{doc}");
    } else if ctx.verbosity >= -1 {
        // A notice in CppNix: shown unless more than one `--quiet`.
        for p in &given {
            eprintln!(
                "rewrote '{}' to '{}'",
                sd.display(p),
                sd.display(became(p)?)
            );
        }
    }
    Ok(())
}
