//! `nix-build`: instantiate the derivations an expression yields, build them, make `result`
//! links (`result`, `result-2`, `result-dev`...) registered as GC roots, and print the output
//! paths, as CppNix 2.8 does.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use firn_build::DerivedPath;

use super::nix_instantiate::{evaluate, evaluate_with, read_input, Backend, EvalOptions};
use crate::context::{usage, Ctx, DummyStoreError};
use crate::realise::{make_result_link, realise, BuildFlags};

pub fn main(args: Vec<String>) -> Result<()> {
    let (ctx, args) = Ctx::legacy(super::expand_short_flags(args))?;
    let mut opts = EvalOptions::from_settings(&ctx)?;
    let mut flags = BuildFlags {
        legacy: true,
        ..BuildFlags::default()
    };
    let mut exprs: Vec<String> = Vec::new();
    let mut from_expr = false;
    let mut out_link = Some("./result".to_string());
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        if flags.take(&a) {
            continue;
        }
        let mut need = |flag: &str| {
            it.next()
                .ok_or_else(|| usage(format!("flag '{flag}' requires an argument")))
        };
        match a.as_str() {
            "--help" => {
                outln!("Usage: nix-build [FILE | -E EXPR] [-A ATTR] [--arg NAME EXPR] [--argstr NAME STRING] [-o LINK | --no-out-link] [--dry-run] [--check] [-K] [-k] [-j N] [-I PATH]");
                return Ok(());
            }
            "--version" => {
                outln!("{}", crate::version_line("nix-build"));
                return Ok(());
            }
            "-E" | "--expr" => from_expr = true,
            "-A" | "--attr" => opts.attr_paths.push(need(&a)?),
            "--arg" | "--argstr" => {
                let name = need(&a)?;
                let value = need(&a)?;
                opts.args.push((name, value, a == "--argstr"));
            }
            "-o" | "--out-link" => out_link = Some(need(&a)?),
            "--no-out-link" | "--no-link" => out_link = None,
            "-I" => opts.include.push(need("-I")?),
            s if s.starts_with("-I") && s.len() > 2 => opts.include.push(s[2..].to_string()),
            "--show-trace" => opts.show_trace = true,
            "-Q" | "--no-build-output" => flags.no_build_output = true,
            // Obsolete in CppNix 2.8, which accepts and ignores them (`--drv-link` with its
            // argument; `--add-root` is `nix-shell`'s); `--impure` as current Nix's: the
            // legacy commands never evaluate purely.
            "--add-drv-link" | "--indirect" | "--impure" => {}
            "--drv-link" | "--add-root" => {
                need(&a)?;
            }
            s if s.starts_with('-') && s != "-" => {
                return Err(usage(format!("unrecognised flag '{s}'")))
            }
            _ => exprs.push(a),
        }
    }
    if exprs.is_empty() {
        if from_expr {
            return Err(usage("'-E' needs an expression"));
        }
        exprs.push("./default.nix".into());
    }
    // As CppNix: an argument naming a `.drv` in the store (links followed, `!OUTPUT`
    // allowed) is built as it is, before what the expressions give; it is not evaluated.
    let mut drv_args = Vec::new();
    if !from_expr {
        let sd = ctx.store_dir();
        exprs.retain(|e| match drv_argument(e, &sd) {
            Some(d) => {
                drv_args.push(d);
                false
            }
            None => true,
        });
    }
    let cwd = std::env::current_dir().context("getting the current directory")?;
    let cwd = cwd.to_string_lossy().into_owned();
    let inputs = exprs
        .iter()
        .map(|e| read_input(e, from_expr, &cwd))
        .collect::<Result<Vec<_>>>()?;
    if ctx.dummy_store() {
        // Instantiating writes `.drv` files, which a dummy store refuses; with nothing to
        // build there is nothing to do, as in CppNix.
        let (drvs, _) = evaluate_with(inputs, opts, Backend::Dummy(ctx.store_dir()), false)?;
        if drvs.is_empty() && drv_args.is_empty() {
            return Ok(());
        }
        return Err(DummyStoreError::Unsupported("buildPaths").into());
    }
    let store = ctx.open_store()?;
    let (evaluated, store) = evaluate(inputs, opts, store, false)?;
    let sd = store.store_dir().clone();
    let mut drvs = Vec::new();
    for (path, outputs) in &drv_args {
        let sp = sd.parse(path)?;
        let d = firn_build::plan::read_derivation(&store, &sp)?;
        // CppNix's `DrvInfo` of a path: the output named, else the derivation's
        // `outputName`, else `out`.
        let output = match outputs {
            Some(o) if o.contains(',') => anyhow::bail!(
                "building more than one derivation output is not supported, in '{path}!{o}'"
            ),
            Some(o) => o.clone(),
            None => d
                .env
                .get("outputName")
                .cloned()
                .unwrap_or_else(|| "out".into()),
        };
        if !d.outputs.contains_key(&output) {
            anyhow::bail!("derivation '{path}' does not have output '{output}'");
        }
        drvs.push((path.clone(), output));
    }
    drvs.extend(evaluated);

    // One entry per derivation (numbered in order of first appearance) with its outputs.
    let mut wanted = Vec::new();
    let mut numbering: BTreeMap<String, usize> = BTreeMap::new();
    let mut ordered = Vec::new();
    for (drv, output) in &drvs {
        let sp = sd.parse(drv)?;
        wanted.push(DerivedPath::Built {
            drv: sp.clone(),
            outputs: Some([output.clone()].into()),
        });
        let n = numbering.len();
        let nr = *numbering.entry(drv.clone()).or_insert(n);
        ordered.push((sp, output.clone(), nr));
    }
    realise(&ctx, &store, &wanted, &flags)?;
    if flags.dry_run {
        return Ok(());
    }
    let mut printed = Vec::new();
    for (drv, output, nr) in ordered {
        let d = firn_build::plan::read_derivation(&store, &drv)?;
        let outs = firn_build::plan::output_paths(&drv, &d, &store)?;
        let path = outs
            .get(&output)
            .ok_or_else(|| {
                anyhow::anyhow!("derivation '{}' has no output '{output}'", sd.display(&drv))
            })?
            .clone();
        if let Some(link) = &out_link {
            let mut name = link.clone();
            if nr > 0 {
                name.push_str(&format!("-{}", nr + 1));
            }
            if output != "out" {
                name.push('-');
                name.push_str(&output);
            }
            make_result_link(&store, std::path::Path::new(&name), &path)?;
        }
        printed.push(sd.display(&path));
    }
    for p in printed {
        outln!("{p}");
    }
    Ok(())
}

/// A command-line argument that names a derivation in the store, as CppNix's `nix-build`
/// tells them apart from files to evaluate: the argument made absolute with its links
/// followed (as it is when that fails, as for a chroot store's logical paths), then split at
/// `!` into the path and the outputs asked for.
fn drv_argument(arg: &str, sd: &firn_format::StoreDir) -> Option<(String, Option<String>)> {
    let resolved = crate::paths::absolute(arg)
        .ok()
        .and_then(|a| std::fs::canonicalize(a).ok())
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|| arg.to_string());
    let (path, outputs) = match resolved.split_once('!') {
        Some((p, o)) => (p.to_string(), Some(o.to_string())),
        None => (resolved, None),
    };
    (path.ends_with(".drv") && sd.parse(&path).is_ok()).then_some((path, outputs))
}
