//! `nix-store`: the legacy store tool, with CppNix 2.8's operations, flags and output.

use std::collections::BTreeSet;
use std::io::Write;

use anyhow::{bail, Context, Result};
use firn_format::{FileIngestionMethod, HashAlgo, StorePath};
use firn_store::LocalStore;

use crate::context::{usage, Ctx, Failure};
use crate::paths::{follow_links_to_store_path, show_bytes};

mod dummy;
mod serve;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    Version,
    Add,
    AddFixed,
    PrintFixedPath,
    Delete,
    Query,
    DumpDb,
    LoadDb,
    RegisterValidity,
    CheckValidity,
    Gc,
    Dump,
    Restore,
    Export,
    Import,
    Init,
    Verify,
    VerifyPath,
    Optimise,
    GenerateBinaryCacheKey,
    Realise,
    ReadLog,
    Serve,
    RepairPath,
}

struct Invocation {
    op: Op,
    flags: Vec<String>,
    args: Vec<String>,
    gc_root: Option<String>,
    /// Without `--no-gc-warning`: warn that a realised path without `--add-root` is no root.
    gc_warning: bool,
    build: crate::realise::BuildFlags,
}

fn parse(args: Vec<String>) -> Result<Option<Invocation>> {
    let mut op: Option<Op> = None;
    let mut flags = Vec::new();
    let mut rest = Vec::new();
    let mut gc_root = None;
    let mut gc_warning = true;
    let mut build = crate::realise::BuildFlags {
        legacy: true,
        ..crate::realise::BuildFlags::default()
    };
    let mut it = args.into_iter();
    let mut dash_dash = false;
    while let Some(a) = it.next() {
        if dash_dash {
            rest.push(a);
            continue;
        }
        if build.take(&a) {
            continue;
        }
        let new_op = match a.as_str() {
            "--" => {
                dash_dash = true;
                continue;
            }
            "--help" => {
                out!("{HELP}");
                return Ok(None);
            }
            "--version" => Some(Op::Version),
            "--add" | "-A" => Some(Op::Add),
            "--add-fixed" => Some(Op::AddFixed),
            "--print-fixed-path" => Some(Op::PrintFixedPath),
            "--delete" => Some(Op::Delete),
            "--query" | "-q" => Some(Op::Query),
            "--dump-db" => Some(Op::DumpDb),
            "--load-db" => Some(Op::LoadDb),
            "--register-validity" => Some(Op::RegisterValidity),
            "--check-validity" => Some(Op::CheckValidity),
            "--gc" => Some(Op::Gc),
            "--dump" => Some(Op::Dump),
            "--restore" => Some(Op::Restore),
            "--export" => Some(Op::Export),
            "--import" => Some(Op::Import),
            "--init" => Some(Op::Init),
            "--verify" => Some(Op::Verify),
            "--verify-path" => Some(Op::VerifyPath),
            "--optimise" | "--optimize" => Some(Op::Optimise),
            "--generate-binary-cache-key" => Some(Op::GenerateBinaryCacheKey),
            "--realise" | "--realize" | "-r" => Some(Op::Realise),
            "--read-log" | "-l" => Some(Op::ReadLog),
            "--serve" => Some(Op::Serve),
            "--repair-path" => Some(Op::RepairPath),
            "--print-env" => {
                bail!("nix-store operation '{a}' is not implemented by firn yet")
            }
            "--add-root" => {
                let v = it
                    .next()
                    .ok_or_else(|| usage("flag '--add-root' requires 1 argument"))?;
                gc_root = Some(crate::paths::absolute(&v)?);
                None
            }
            "--no-gc-warning" => {
                gc_warning = false;
                None
            }
            "-Q" | "--no-build-output" => {
                build.no_build_output = true;
                None
            }
            "--indirect" | "--no-output" | "--fallback" | "--readonly-mode"
            | "--ignore-unknown" => None,
            "--cores" | "--max-silent-time" | "--timeout" => {
                it.next()
                    .ok_or_else(|| usage(format!("flag '{a}' requires 1 argument")))?;
                None
            }
            s if s.starts_with('-') && s.len() > 1 => {
                flags.push(a.clone());
                if matches!(s, "--max-freed" | "--max-links" | "--max-atime") {
                    let v = it
                        .next()
                        .ok_or_else(|| usage(format!("flag '{s}' requires an argument")))?;
                    flags.push(v);
                }
                None
            }
            _ => {
                rest.push(a);
                None
            }
        };
        if let Some(n) = new_op {
            if op.is_some_and(|o| o != n) {
                return Err(usage("only one operation may be specified"));
            }
            op = Some(n);
        }
    }
    let op = op.ok_or_else(|| usage("no operation specified"))?;
    Ok(Some(Invocation {
        op,
        flags,
        args: rest,
        gc_root,
        gc_warning,
        build,
    }))
}

pub fn main(args: Vec<String>) -> Result<()> {
    let (ctx, args) = Ctx::legacy(super::expand_short_flags(args))?;
    let Some(inv) = parse(args)? else {
        return Ok(());
    };
    let Invocation {
        op,
        flags,
        args,
        gc_root,
        gc_warning,
        build,
    } = inv;
    let gc_warning = gc_warning && crate::context::shows_warnings(ctx.verbosity);
    let no_flags = |flags: &[String]| -> Result<()> {
        match flags.first() {
            Some(f) => Err(usage(format!("unknown flag '{f}'"))),
            None => Ok(()),
        }
    };
    match op {
        Op::Version => {
            outln!("{}", crate::version_line("nix-store"));
            Ok(())
        }
        Op::Dump => {
            no_flags(&flags)?;
            if args.len() != 1 {
                return Err(usage("only one argument allowed"));
            }
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::with_capacity(1 << 17, stdout.lock());
            firn_store::nar_fs::dump_path(std::path::Path::new(&args[0]), &mut out)?;
            out.flush().context("writing to standard output")?;
            Ok(())
        }
        Op::Restore => {
            no_flags(&flags)?;
            if args.len() != 1 {
                return Err(usage("only one argument allowed"));
            }
            let stdin = std::io::stdin();
            let mut input = std::io::BufReader::with_capacity(1 << 17, stdin.lock());
            firn_store::nar_fs::restore_path(&mut input, std::path::Path::new(&args[0]))?;
            Ok(())
        }
        Op::GenerateBinaryCacheKey => {
            no_flags(&flags)?;
            if args.len() != 3 {
                return Err(usage("three arguments expected"));
            }
            crate::cmd::key::generate_key_files(&args[0], &args[1], &args[2])
        }
        _ if ctx.dummy_store() => {
            if matches!(op, Op::Init | Op::Realise | Op::ReadLog) {
                no_flags(&flags)?;
            }
            dummy::run(&ctx, op, &flags, &args)
        }
        Op::Init => {
            no_flags(&flags)?;
            if !args.is_empty() {
                return Err(usage("no arguments expected"));
            }
            ctx.open_store()?;
            Ok(())
        }
        Op::Realise => {
            no_flags(&flags)?;
            let store = ctx.open_store()?;
            realise_op(&ctx, &store, &args, gc_root, gc_warning, &build)
        }
        Op::Serve => {
            let mut write = false;
            for f in &flags {
                match f.as_str() {
                    "--write" => write = true,
                    _ => return Err(usage(format!("unknown flag '{f}'"))),
                }
            }
            if !args.is_empty() {
                return Err(usage("no arguments expected"));
            }
            let store = ctx.open_store()?;
            serve::serve_op(&ctx, &store, write)
        }
        Op::ReadLog => {
            no_flags(&flags)?;
            let store = ctx.open_store()?;
            let settings = crate::realise::build_settings(&ctx, &store, &build)?;
            for a in &args {
                crate::realise::print_log(&store, &settings.log_dir, a)?;
            }
            Ok(())
        }
        _ => {
            let store = ctx.open_store()?;
            run_store_op(&ctx, &store, op, flags, args, gc_root)
        }
    }
}

fn run_store_op(
    ctx: &Ctx,
    store: &LocalStore,
    op: Op,
    flags: Vec<String>,
    args: Vec<String>,
    _gc_root: Option<String>,
) -> Result<()> {
    let sd = store.store_dir().clone();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let follow = |s: &str| follow_links_to_store_path(&sd, s);
    let unknown = |f: &String| usage(format!("unknown flag '{f}'"));
    match op {
        Op::RepairPath => {
            if let Some(f) = flags.first() {
                return Err(unknown(f));
            }
            let subs = ctx.substituters()?;
            for a in &args {
                let p = follow(a)?;
                let done = match &subs {
                    Some(s) => s.repair(store, &p)?,
                    None => false,
                };
                if !done {
                    bail!(
                        "cannot repair path '{}': no substituter has it",
                        sd.display(&p)
                    );
                }
            }
        }
        Op::Add => {
            if let Some(f) = flags.first() {
                return Err(unknown(f));
            }
            for a in &args {
                let p = std::path::Path::new(a);
                let name = base_name(a)?;
                let sp =
                    store.add_path(&name, p, FileIngestionMethod::Recursive, HashAlgo::Sha256)?;
                writeln!(out, "{}", sd.display(&sp))?;
            }
        }
        Op::AddFixed => {
            let mut method = FileIngestionMethod::Flat;
            for f in &flags {
                if f == "--recursive" {
                    method = FileIngestionMethod::Recursive;
                } else {
                    return Err(unknown(f));
                }
            }
            let mut it = args.iter();
            let algo: HashAlgo = it
                .next()
                .ok_or_else(|| usage("first argument must be hash algorithm"))?
                .parse()?;
            for a in it {
                let name = base_name(a)?;
                let sp = store.add_path(&name, std::path::Path::new(a), method, algo)?;
                writeln!(out, "{}", sd.display(&sp))?;
            }
        }
        Op::PrintFixedPath => dummy::print_fixed_path(&sd, &flags, &args, &mut out)?,
        Op::Query => {
            // Text results: a reader that went away is not an error (as CppNix).
            let mut text = crate::out::text_stdout();
            crate::legacy::query::run(ctx, store, &mut text, flags, args)?;
            text.flush()?;
        }
        Op::DumpDb => {
            if let Some(f) = flags.first() {
                return Err(unknown(f));
            }
            let paths: Vec<StorePath> = if args.is_empty() {
                store.query_all_valid_paths()?.into_iter().collect()
            } else {
                args.iter().map(|a| follow(a)).collect::<Result<_>>()?
            };
            for p in paths {
                let info = crate::paths::path_info(store, &p)?;
                writeln!(out, "{}", sd.display(&p))?;
                writeln!(out, "{}", info.nar_hash.to_base16())?;
                writeln!(out, "{}", info.nar_size)?;
                writeln!(
                    out,
                    "{}",
                    info.deriver
                        .as_ref()
                        .map(|d| sd.display(d))
                        .unwrap_or_default()
                )?;
                writeln!(out, "{}", info.references.len())?;
                for r in &info.references {
                    writeln!(out, "{}", sd.display(r))?;
                }
            }
        }
        Op::LoadDb | Op::RegisterValidity => {
            let mut reregister = op == Op::LoadDb;
            let mut hash_given = op == Op::LoadDb;
            if op == Op::RegisterValidity {
                for f in &flags {
                    match f.as_str() {
                        "--reregister" => reregister = true,
                        "--hash-given" => hash_given = true,
                        _ => return Err(unknown(f)),
                    }
                }
            } else if let Some(f) = flags.first() {
                return Err(unknown(f));
            }
            if !args.is_empty() {
                return Err(usage("no arguments expected"));
            }
            let stdin = std::io::stdin();
            let regs =
                firn_store::registration::read_registrations(&sd, &mut stdin.lock(), hash_given)?;
            let mut infos = Vec::new();
            for r in regs {
                let mut info = r.info;
                if store.is_valid_path(&info.path)? && !reregister {
                    continue;
                }
                let real = store.real_path(&info.path);
                if op == Op::RegisterValidity {
                    firn_store::canon::canonicalise(&real)?;
                }
                if !r.hash_given {
                    let (h, n) = firn_store::nar_fs::hash_path(&real, HashAlgo::Sha256)?;
                    info.nar_hash = h;
                    info.nar_size = n;
                }
                infos.push(info);
            }
            store.register_valid_paths(&infos)?;
        }
        Op::CheckValidity => {
            let mut print_invalid = false;
            for f in &flags {
                if f == "--print-invalid" {
                    print_invalid = true;
                } else {
                    return Err(unknown(f));
                }
            }
            for a in &args {
                let p = follow(a)?;
                if !store.is_valid_path(&p)? {
                    if print_invalid {
                        writeln!(out, "{}", sd.display(&p))?;
                    } else {
                        bail!("path '{}' is not valid", sd.display(&p));
                    }
                }
            }
        }
        Op::Gc | Op::Delete => {
            // A collection builds its graph in one go: keep its heap off huge pages.
            crate::alloc::configure();
            out.flush()?;
            drop(out);
            return crate::legacy::gc::run(ctx, store, op == Op::Delete, flags, args);
        }
        Op::Export => {
            if let Some(f) = flags.first() {
                return Err(unknown(f));
            }
            let paths: BTreeSet<StorePath> =
                args.iter().map(|a| follow(a)).collect::<Result<_>>()?;
            store.export_paths(&paths, &mut out)?;
        }
        Op::Import => {
            if let Some(f) = flags.first() {
                return Err(unknown(f));
            }
            if !args.is_empty() {
                return Err(usage("no arguments expected"));
            }
            let stdin = std::io::stdin();
            let mut input = std::io::BufReader::with_capacity(1 << 17, stdin.lock());
            for p in store.import_paths(&mut input)? {
                writeln!(out, "{}", sd.display(&p))?;
                out.flush()?;
            }
        }
        Op::Verify => {
            if !args.is_empty() {
                return Err(usage("no arguments expected"));
            }
            let mut check_contents = false;
            let mut repair = false;
            for f in &flags {
                match f.as_str() {
                    "--check-contents" => check_contents = true,
                    "--repair" => repair = true,
                    _ => return Err(unknown(f)),
                }
            }
            let subs = if repair { ctx.substituters()? } else { None };
            let repairer = |p: &StorePath| -> firn_store::error::Result<bool> {
                match &subs {
                    Some(s) => s
                        .repair(store, p)
                        .map_err(|e| firn_store::StoreError::Other(e.to_string())),
                    None => Ok(false),
                }
            };
            let errors = store.verify_store_with(check_contents, repair, &repairer)?;
            if let Some(s) = &subs {
                for w in s.take_warnings() {
                    eprintln!("warning: {w}");
                }
            }
            if errors {
                eprintln!("warning: not all store errors were fixed");
                return Err(Failure {
                    code: 1,
                    msg: "store errors".into(),
                    silent: true,
                }
                .into());
            }
        }
        Op::VerifyPath => {
            if !flags.is_empty() {
                return Err(usage("no flags expected"));
            }
            let mut status = 0;
            for a in &args {
                let p = follow(a)?;
                let info = crate::paths::path_info(store, &p)?;
                let (current, _) = store.hash_valid_path(&p, info.nar_hash.algo())?;
                if current != info.nar_hash {
                    eprintln!(
                        "error: path '{}' was modified! expected hash '{}', got '{}'",
                        sd.display(&p),
                        info.nar_hash,
                        current
                    );
                    status = 1;
                }
            }
            if status != 0 {
                return Err(Failure {
                    code: 1,
                    msg: "verification failed".into(),
                    silent: true,
                }
                .into());
            }
        }
        Op::Optimise => {
            if !args.is_empty() || !flags.is_empty() {
                return Err(usage("no arguments expected"));
            }
            let stats = store.optimise_store()?;
            eprintln!(
                "{} freed by hard-linking {} files",
                show_bytes(stats.bytes_freed),
                stats.files_linked
            );
        }
        Op::Version
        | Op::Dump
        | Op::Restore
        | Op::GenerateBinaryCacheKey
        | Op::Init
        | Op::Realise
        | Op::Serve
        | Op::ReadLog => {
            unreachable!("handled before opening the store")
        }
    }
    out.flush().context("writing to standard output")?;
    Ok(())
}

/// The last component of a path given on the command line, as Nix's `baseNameOf`.
fn base_name(s: &str) -> Result<String> {
    let t = s.trim_end_matches('/');
    let b = t.rsplit('/').next().unwrap_or(t);
    if b.is_empty() {
        bail!("cannot add '{s}': it has no name");
    }
    Ok(b.to_string())
}

const HELP: &str = "Usage: nix-store OPERATION [OPTIONS...] [ARGUMENTS...]\n\
\n\
Operations:\n\
  --add PATHS              copy paths into the store\n\
  --add-fixed [--recursive] ALGO PATHS\n\
                           add paths as fixed-output content\n\
  --print-fixed-path [--recursive] ALGO HASH NAME\n\
  --query, -q              --outputs --requisites/-R --references --referrers\n\
                           --referrers-closure --deriver/-d --hash --size --tree\n\
                           --graph --resolve --roots [--include-outputs]\n\
  --dump PATH              write the NAR of PATH to stdout\n\
  --restore PATH           restore a NAR from stdin into PATH\n\
  --export PATHS / --import\n\
  --verify [--check-contents] [--repair]\n\
  --verify-path PATHS\n\
  --gc [--print-roots|--print-live|--print-dead] [--max-freed N]\n\
  --delete [--ignore-liveness] PATHS\n\
  --optimise\n\
  --generate-binary-cache-key NAME SECRET-FILE PUBLIC-FILE\n\
  --dump-db [PATHS] / --load-db / --register-validity / --check-validity\n\
\n\
Global options: --store URI, --option NAME VALUE, -v, --quiet, --add-root PATH\n";

/// `nix-store --realise`: build derivations (or check that paths are valid) and print the
/// output paths, or the roots made with `--add-root` (without it, CppNix's warning once, unless
/// `--no-gc-warning`).
fn realise_op(
    ctx: &Ctx,
    store: &LocalStore,
    args: &[String],
    gc_root: Option<String>,
    gc_warning: bool,
    build: &crate::realise::BuildFlags,
) -> Result<()> {
    let sd = store.store_dir();
    let wanted = args
        .iter()
        .map(|a| crate::realise::parse_derived_path(store, a))
        .collect::<Result<Vec<_>>>()?;
    crate::realise::realise(ctx, store, &wanted, build)?;
    if build.dry_run {
        return Ok(());
    }
    // The paths realised, as text: a reader that went away is not an error (as CppNix).
    let mut out = crate::out::text_stdout();
    let mut root_nr = 0;
    let mut warned = false;
    for w in &wanted {
        for (_, p) in crate::realise::resolved_outputs(store, w)? {
            match &gc_root {
                Some(root) => {
                    root_nr += 1;
                    let mut name = root.clone();
                    if root_nr > 1 {
                        name = format!("{name}-{root_nr}");
                    }
                    let link = store.add_perm_root(&p, std::path::Path::new(&name))?;
                    writeln!(out, "{}", link.display())?;
                }
                None => {
                    if gc_warning && !warned {
                        warned = true;
                        eprintln!("warning: you did not specify '--add-root'; the result might be removed by the garbage collector");
                    }
                    writeln!(out, "{}", sd.display(&p))?
                }
            }
        }
    }
    out.flush().context("writing to standard output")?;
    Ok(())
}
