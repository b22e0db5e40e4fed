//! `nix build` and `nix log`: installables are attribute paths of `--file`/`--expr`, store
//! paths, or `DRV^OUTPUTS`; `nix build` realises them and makes `result` links (`result`,
//! `result-1`, `result-dev`, ...) as GC roots, with `--no-link`, `-o`, `--print-out-paths`,
//! `--json`, `--dry-run`, `-L`.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use clap::Args;
use firn_build::DerivedPath;
use firn_store::LocalStore;

use crate::context::{Ctx, Failure};
use crate::legacy::nix_instantiate::{evaluate, read_input, EvalOptions};
use crate::realise::{make_result_link, realise, BuildFlags};

/// Where installables are evaluated (`nix build`, `nix run`, `nix develop`, ...): a flake's
/// by default, or attribute paths of `--expr`/`--file`.
#[derive(Args, Debug, Default)]
pub struct SourceArgs {
    /// Evaluate the installable as an attribute path of this expression.
    #[arg(long)]
    pub expr: Option<String>,
    /// Allow access to mutable paths and repositories.
    #[arg(long)]
    pub impure: bool,
    /// Evaluate the installable as an attribute path of this file.
    #[arg(short = 'f', long)]
    pub file: Option<String>,
    #[command(flatten)]
    pub common: crate::cmd::eval::CommonEvalArgs,
    #[command(flatten)]
    pub lock: crate::cmd::flake::LockArgs,
}

impl SourceArgs {
    /// Whether the installable is a flake's (neither `--expr` nor `--file`).
    pub fn is_flake(&self) -> bool {
        self.expr.is_none() && self.file.is_none()
    }

    /// These arguments as a [`crate::cmd::run::EvalSource`] (`lock` for the flakes).
    pub fn eval_source<'a>(
        &'a self,
        lock: &'a crate::cmd::flake::LockArgs,
    ) -> Result<crate::cmd::run::EvalSource<'a>> {
        let from = match (&self.expr, &self.file) {
            (Some(_), Some(_)) => bail!("'--expr' and '--file' cannot be used together"),
            (Some(e), None) => Some((e.clone(), true)),
            (None, Some(f)) => Some((f.clone(), false)),
            (None, None) => None,
        };
        Ok(crate::cmd::run::EvalSource {
            from,
            impure: self.impure,
            common: &self.common,
            lock,
        })
    }
}

#[derive(Args, Debug, Default)]
pub struct InstallableArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Installables: attribute paths (with --file/--expr), store paths, DRV^OUTPUTS, or
    /// flake installables (`REF#ATTRPATH`).
    pub installables: Vec<String>,
}

impl InstallableArgs {
    /// Whether these name derivation outputs to build (`--file`/`--expr` attribute paths, or
    /// `DRV^OUT`/`DRV!OUT`) rather than only store paths.
    pub fn names_derivations(&self) -> bool {
        !self.source.is_flake()
            || self.installables.iter().any(|i| {
                i.rsplit_once(['!', '^'])
                    .is_some_and(|(p, _)| p.ends_with(".drv"))
            })
    }
}

#[derive(Args, Debug)]
pub struct BuildArgs {
    #[command(flatten)]
    pub inst: InstallableArgs,
    /// Do not create `result` links.
    #[arg(long)]
    no_link: bool,
    /// The prefix of the links to create (default `result`).
    #[arg(short = 'o', long = "out-link")]
    out_link: Option<String>,
    /// Print the output paths.
    #[arg(long)]
    print_out_paths: bool,
    /// Print what was built as JSON.
    #[arg(long)]
    json: bool,
    /// Show what would be built without building.
    #[arg(long)]
    dry_run: bool,
    /// Rebuild and compare with the valid outputs (`--rebuild`, as CppNix names it here).
    #[arg(long, alias = "rebuild")]
    check: bool,
    /// Keep the build directory of failed builds.
    #[arg(short = 'K', long)]
    keep_failed: bool,
    /// Go on with other builds after one failed.
    #[arg(short = 'k', long)]
    keep_going: bool,
    /// Print full build logs on stderr.
    #[arg(short = 'L', long)]
    print_build_logs: bool,
}

#[derive(Args, Debug)]
pub struct LogArgs {
    #[command(flatten)]
    pub inst: InstallableArgs,
}

/// One installable, resolved to what must be realised.
struct Resolved {
    path: DerivedPath,
}

/// Resolve installables (evaluating `--file`/`--expr` where given).
fn resolve(ctx: &Ctx, inst: &InstallableArgs) -> Result<(Vec<Resolved>, LocalStore)> {
    resolve_installables(ctx, inst).map(|(paths, store)| {
        (
            paths.into_iter().map(|path| Resolved { path }).collect(),
            store,
        )
    })
}

/// Resolve installables to derived paths: attribute paths of `--file`/`--expr`, else store
/// paths, `DRV^OUTPUTS`, or flake installables (`REF#ATTRPATH`, `.` when none is given),
/// evaluated; the local store they were resolved in.
pub(crate) fn resolve_installables(
    ctx: &Ctx,
    inst: &InstallableArgs,
) -> Result<(Vec<DerivedPath>, LocalStore)> {
    let mut store = ctx.open_store()?;
    if inst.source.file.is_none() && inst.source.expr.is_none() {
        let given = if inst.installables.is_empty() {
            vec![".".to_string()]
        } else {
            inst.installables.clone()
        };
        let mut out = Vec::new();
        for i in &given {
            // A store path (or `DRV^OUTPUTS`), else a flake installable.
            let stored = !i.contains('#')
                && crate::realise::parse_derived_path(&store, i)
                    .map(|p| out.push(p))
                    .is_ok();
            if stored {
                continue;
            }
            let features = ctx.settings.eval_features();
            crate::cmd::flake::require_flakes(&features)?;
            let mut opts = EvalOptions {
                attr_paths: vec![String::new()],
                include: inst.source.common.include.clone(),
                flake_lock: inst.source.lock.applied_options(&ctx.settings),
                ..EvalOptions::from_settings(ctx)?
            };
            if !inst.source.impure {
                // Flakes are evaluated purely unless `--impure`, as CppNix's.
                opts.restriction = firn_eval::purity::Restriction::Pure;
            }
            let input = crate::legacy::nix_instantiate::Input::flake(i);
            store = evaluate_into(input, opts, store, &mut out)?;
        }
        return Ok((out, store));
    }
    let cwd = crate::paths::cwd()?;
    // (A flake's installables went above.)
    let Some((src, from_expr)) = inst.source.eval_source(&inst.source.lock)?.from else {
        bail!("no --expr or --file");
    };
    let args = inst.source.common.auto_args();
    let attrs = if inst.installables.is_empty() {
        vec![String::new()]
    } else {
        inst.installables.clone()
    };
    let mut out = Vec::new();
    for attr in attrs {
        let mut opts = EvalOptions {
            attr_paths: vec![attr],
            args: args.clone(),
            include: inst.source.common.include.clone(),
            ..EvalOptions::from_settings(ctx)?
        };
        if from_expr && !inst.source.impure {
            // As CppNix's `nix`: an expression is evaluated purely unless `--impure` (a file
            // never is).
            opts.restriction = firn_eval::purity::Restriction::Pure;
        }
        let input = read_input(&src, from_expr, &cwd)?;
        store = evaluate_into(input, opts, store, &mut out)?;
    }
    Ok((out, store))
}

/// Evaluate `input` to derivations, adding the outputs they name to `out`; the store back.
fn evaluate_into(
    input: crate::legacy::nix_instantiate::Input,
    opts: EvalOptions,
    store: LocalStore,
    out: &mut Vec<DerivedPath>,
) -> Result<LocalStore> {
    let (drvs, store) = evaluate(vec![input], opts, store, false)?;
    for (drv, output) in drvs {
        out.push(DerivedPath::Built {
            drv: store.store_dir().parse(&drv)?,
            outputs: Some([output].into()),
        });
    }
    Ok(store)
}

pub fn build(ctx: &Ctx, a: BuildArgs) -> Result<()> {
    let (mut resolved, store) = resolve(ctx, &a.inst)?;
    // CppNix 2.8 reports (and links) the results in the order of its goals, which it keeps
    // sorted by key: paths (`a$<name>$<path>`) before derivations (`b$<name>$<path>`).
    {
        let sd = store.store_dir();
        resolved.sort_by_cached_key(|r| match &r.path {
            DerivedPath::Opaque(p) => format!("a${}${}", p.name(), sd.display(p)),
            DerivedPath::Built { drv, .. } => format!("b${}${}", drv.name(), sd.display(drv)),
        });
    }
    let flags = BuildFlags {
        dry_run: a.dry_run,
        check: a.check,
        keep_failed: a.keep_failed,
        keep_going: a.keep_going,
        print_build_logs: a.print_build_logs,
        ..BuildFlags::default()
    };
    let wanted: Vec<DerivedPath> = resolved.iter().map(|r| r.path.clone()).collect();
    // CppNix 2.8's `nix build` ends with status 1 when builds failed, not with the legacy
    // commands' 100 and up.
    realise(&ctx.with_flake_config(), &store, &wanted, &flags).map_err(|e| {
        match e.downcast::<Failure>() {
            Ok(f) => Failure { code: 1, ..f }.into(),
            Err(e) => e,
        }
    })?;
    if a.dry_run {
        return Ok(());
    }
    let sd = store.store_dir();
    let link_prefix = a.out_link.clone().unwrap_or_else(|| "result".into());
    let mut json = Vec::new();
    for (i, r) in resolved.iter().enumerate() {
        let outs = crate::realise::built_outputs(&store, &r.path)?;
        let mut outputs = BTreeMap::new();
        for (name, p) in &outs {
            if !a.no_link {
                let mut link = link_prefix.clone();
                if i > 0 {
                    link.push_str(&format!("-{i}"));
                }
                if !name.is_empty() && name != "out" {
                    link.push_str(&format!("-{name}"));
                }
                make_result_link(&store, std::path::Path::new(&link), p)?;
            }
            if a.print_out_paths {
                outln!("{}", sd.display(p));
            }
            outputs.insert(name.clone(), sd.display(p));
        }
        match &r.path {
            DerivedPath::Built { drv, .. } => json.push(serde_json::json!({
                "drvPath": sd.display(drv),
                "outputs": outputs,
            })),
            DerivedPath::Opaque(p) => json.push(serde_json::json!({ "path": sd.display(p) })),
        }
    }
    if a.json {
        outln!("{}", serde_json::Value::Array(json));
    }
    Ok(())
}

pub fn log(ctx: &Ctx, a: LogArgs) -> Result<()> {
    let (resolved, store) = resolve(ctx, &a.inst)?;
    let settings = crate::realise::build_settings(ctx, &store, &BuildFlags::default())?;
    for r in resolved {
        let p = match r.path {
            DerivedPath::Built { drv, .. } => drv,
            DerivedPath::Opaque(p) => p,
        };
        crate::realise::print_log(&store, &settings.log_dir, &store.store_dir().display(&p))?;
    }
    Ok(())
}
