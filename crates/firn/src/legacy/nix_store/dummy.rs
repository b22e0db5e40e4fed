//! `nix-store` against a `dummy://` store, as CppNix 2.8 answers: no path is valid (validity
//! checks and queries say so), paths are still computed (`--print-fixed-path`), checks that
//! find nothing pass (`--verify`, `--optimise`, `--init`), and whatever would add, build,
//! delete or list paths fails, naming the store operation.

use std::io::Write;

use anyhow::{bail, Result};
use firn_format::{FileIngestionMethod, HashAlgo, StoreDir};

use super::Op;
use crate::context::{usage, Ctx, DummyStoreError};
use crate::paths::follow_links_to_store_path;

/// Run `op` (one that needs a store) against the dummy store.
pub(super) fn run(ctx: &Ctx, op: Op, flags: &[String], args: &[String]) -> Result<()> {
    let sd = ctx.store_dir();
    let follow = |s: &str| follow_links_to_store_path(&sd, s);
    // The first path given, which the dummy store does not have.
    let not_valid = || -> Result<()> {
        match args.first() {
            Some(a) => bail!("path '{}' is not valid", sd.display(&follow(a)?)),
            None => Ok(()),
        }
    };
    let refuse = |op: &'static str| -> Result<()> { Err(DummyStoreError::Unsupported(op).into()) };
    match op {
        Op::Init | Op::Verify | Op::Optimise => Ok(()),
        Op::Add if args.is_empty() => Ok(()),
        Op::Add => refuse("addToStoreFromDump"),
        Op::AddFixed if args.len() <= 1 => Ok(()),
        Op::AddFixed => refuse("addToStore"),
        Op::PrintFixedPath => print_fixed_path(&sd, flags, args, &mut std::io::stdout().lock()),
        Op::Query | Op::VerifyPath | Op::Export => not_valid(),
        Op::CheckValidity => {
            let mut out = std::io::stdout().lock();
            for a in args {
                let p = follow(a)?;
                if flags.iter().any(|f| f == "--print-invalid") {
                    writeln!(out, "{}", sd.display(&p))?;
                } else {
                    bail!("path '{}' is not valid", sd.display(&p));
                }
            }
            Ok(())
        }
        Op::Realise if args.is_empty() => Ok(()),
        Op::Realise => {
            eprintln!("don't know how to build these paths:");
            for a in args {
                eprintln!("  {a}");
            }
            let shown: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
            match args {
                [one] if one.ends_with(".drv") => {
                    bail!("cannot build missing derivation '{one}'")
                }
                _ => bail!("build of {} failed", shown.join(", ")),
            }
        }
        Op::Gc | Op::Delete => Err(usage("Garbage collection not supported by store 'dummy'")),
        Op::ReadLog => Err(usage(
            "Build log storage and retrieval not supported by store 'dummy'",
        )),
        Op::DumpDb => refuse("queryAllValidPaths"),
        Op::LoadDb | Op::RegisterValidity => refuse("registerValidPaths"),
        Op::Import => refuse("addToStore"),
        Op::RepairPath => refuse("repairPath"),
        Op::Serve => Err(DummyStoreError::NeedsStore.into()),
        // Handled before a store is asked for.
        Op::Version | Op::Dump | Op::Restore | Op::GenerateBinaryCacheKey => Ok(()),
    }
}

/// `--print-fixed-path [--recursive] ALGO HASH NAME`: the path, computed.
pub(super) fn print_fixed_path(
    sd: &StoreDir,
    flags: &[String],
    args: &[String],
    out: &mut dyn Write,
) -> Result<()> {
    let mut method = FileIngestionMethod::Flat;
    for f in flags {
        if f == "--recursive" {
            method = FileIngestionMethod::Recursive;
        } else {
            return Err(usage(format!("unknown flag '{f}'")));
        }
    }
    if args.len() != 3 {
        return Err(usage("'--print-fixed-path' requires three arguments"));
    }
    let algo: HashAlgo = args[0].parse()?;
    let h = firn_format::Hash::parse(&args[1], Some(algo))?;
    let p = sd.make_fixed_output_path(&args[2], method, &h, [], false)?;
    writeln!(out, "{}", sd.display(&p))?;
    Ok(())
}
