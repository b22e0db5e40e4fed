//! `nix store ...`: add, cat, ls, dump-path, gc, delete, verify, optimise, info,
//! path-from-hash-part, sign, make-content-addressed (in [`super::make_ca`]).

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use firn_cache::copy::AnyStore;
use firn_cache::BinaryCache;
use firn_format::{FileIngestionMethod, Hash, HashAlgo};
use firn_store::gc::{GcAction, GcOptions};
use firn_store::{LocalStore, ValidPathInfo};

use crate::cmd::accessor::{list_json, list_text, Accessor, FsAccessor, NarAccessor, Stat};
use crate::cmd::installables::StorePathArgs;
use crate::context::{Ctx, Failure};
use crate::paths::{absolute, follow_links_to_store_path, path_info, show_bytes};

#[derive(Subcommand, Debug)]
pub enum StoreCmd {
    /// Add a file or directory to the Nix store.
    Add(AddArgs),
    /// Add a path to the Nix store (its NAR serialisation).
    #[command(name = "add-path")]
    AddPath(AddArgs),
    /// Add a regular file to the Nix store (its contents, flat).
    #[command(name = "add-file")]
    AddFile(AddArgs),
    /// Print the contents of a file in the Nix store on stdout.
    Cat { path: String },
    /// Show information about a path in the Nix store.
    Ls(LsArgs),
    /// Serialise a store path to stdout in NAR format.
    #[command(name = "dump-path")]
    DumpPath(StorePathArgs),
    /// Perform garbage collection on a Nix store.
    Gc {
        /// Do not delete anything; print the paths that would be deleted.
        #[arg(long = "dry-run")]
        dry_run: bool,
        /// Stop after freeing N bytes of disk space.
        #[arg(long = "max")]
        max: Option<String>,
    },
    /// Delete paths from the Nix store.
    Delete {
        /// Do not check whether the paths are reachable from a root.
        #[arg(long = "ignore-liveness")]
        ignore_liveness: bool,
        #[command(flatten)]
        paths: StorePathArgs,
    },
    /// Verify the integrity of store paths.
    Verify(VerifyArgs),
    /// Replace identical files in the store by hard links.
    Optimise,
    /// Test whether a store can be accessed.
    #[command(alias = "ping")]
    Info,
    /// Get a store path from its hash part.
    #[command(name = "path-from-hash-part")]
    PathFromHashPart { hash_part: String },
    /// Rewrite a path or closure to content-addressed form.
    #[command(name = "make-content-addressed")]
    MakeContentAddressed(Box<super::make_ca::MakeCaArgs>),
    /// Sign store paths with a local key.
    Sign {
        /// File containing the secret signing key.
        #[arg(short = 'k', long = "key-file")]
        key_file: String,
        #[command(flatten)]
        paths: StorePathArgs,
    },
}

#[derive(Args, Debug)]
pub struct AddArgs {
    /// Override the name of the store path (default: the base name of the path).
    #[arg(short = 'n', long)]
    name: Option<String>,
    /// How to hash the input: `nar` (default for add and add-path) or `flat`.
    #[arg(long)]
    mode: Option<String>,
    /// Hash algorithm (default sha256).
    #[arg(long = "hash-algo", default_value = "sha256")]
    hash_algo: String,
    /// Show what would be added without adding it.
    #[arg(long = "dry-run")]
    dry_run: bool,
    path: String,
}

#[derive(Args, Debug)]
pub struct LsArgs {
    /// List subdirectories recursively.
    #[arg(short = 'R', long)]
    recursive: bool,
    /// Show detailed file information.
    #[arg(short = 'l', long)]
    long: bool,
    /// Show directories rather than their contents.
    #[arg(short = 'd', long)]
    directory: bool,
    /// Produce output in JSON format.
    #[arg(long)]
    json: bool,
    path: String,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Do not verify the contents of each store path.
    #[arg(long = "no-contents")]
    no_contents: bool,
    /// Do not verify whether each store path is trusted.
    #[arg(long = "no-trust")]
    no_trust: bool,
    /// Require that each path is signed by at least N different keys.
    #[arg(short = 'n', long = "sigs-needed", default_value_t = 0)]
    sigs_needed: usize,
    #[command(flatten)]
    paths: StorePathArgs,
}

pub fn run(ctx: &Ctx, cmd: StoreCmd) -> Result<()> {
    if firn_cache::CacheUri::is_cache_uri(&ctx.store_uri()) {
        return run_cache(ctx, cmd);
    }
    let store = ctx.open_store()?;
    let sd = store.store_dir().clone();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match cmd {
        StoreCmd::Add(a) => add(&store, &mut out, a, FileIngestionMethod::Recursive)?,
        StoreCmd::AddPath(a) => add(&store, &mut out, a, FileIngestionMethod::Recursive)?,
        StoreCmd::AddFile(a) => add(&store, &mut out, a, FileIngestionMethod::Flat)?,
        StoreCmd::Cat { path } => {
            let (sp, rest) = store_subpath(&sd, &path)?;
            let acc = FsAccessor {
                root: store.real_path(&sp),
            };
            cat(&acc, &rest, &path, &mut out)?;
        }
        StoreCmd::Ls(a) => {
            let (sp, rest) = store_subpath(&sd, &a.path)?;
            let acc = FsAccessor {
                root: store.real_path(&sp),
            };
            ls(&acc, &rest, &a, &mut out)?;
        }
        StoreCmd::DumpPath(p) => {
            let paths = p.resolve(&store)?;
            if paths.len() != 1 {
                bail!("this command requires exactly one store path");
            }
            store.nar_from_path(&paths[0], &mut out)?;
        }
        StoreCmd::Gc { dry_run, max } => {
            // A collection builds its graph in one go: keep its heap off huge pages.
            crate::alloc::configure();
            let mut opts = GcOptions {
                keep_outputs: ctx.settings.get_bool("keep-outputs"),
                keep_derivations: ctx.settings.get_bool("keep-derivations"),
                ..GcOptions::default()
            };
            opts.action = if dry_run {
                GcAction::ReturnDead
            } else {
                GcAction::DeleteDead
            };
            if let Some(m) = max {
                opts.max_freed = crate::legacy::gc::parse_size(&m)?;
            }
            let res = store.collect_garbage(&opts)?;
            if dry_run {
                for p in &res.paths {
                    writeln!(out, "{p}")?;
                }
            } else {
                crate::paths::print_gc_summary(&mut out, &res)?;
            }
        }
        StoreCmd::Delete {
            ignore_liveness,
            paths,
        } => {
            let set: BTreeSet<_> = paths.resolve(&store)?.into_iter().collect();
            let opts = GcOptions {
                action: GcAction::DeleteSpecific(set),
                ignore_liveness,
                keep_outputs: ctx.settings.get_bool("keep-outputs"),
                keep_derivations: ctx.settings.get_bool("keep-derivations"),
                ..GcOptions::default()
            };
            let res = store.collect_garbage(&opts)?;
            crate::paths::print_gc_summary(&mut out, &res)?;
        }
        StoreCmd::Verify(v) => {
            out.flush()?;
            drop(out);
            return verify(ctx, &store, v);
        }
        StoreCmd::Optimise => {
            let stats = store.optimise_store()?;
            eprintln!(
                "{} freed by hard-linking {} files",
                show_bytes(stats.bytes_freed),
                stats.files_linked
            );
        }
        StoreCmd::Info => {
            let uri = ctx.settings.get("store").unwrap_or("auto");
            let uri = if uri == "auto" { "local" } else { uri };
            writeln!(out, "Store URL: {uri}")?;
        }
        StoreCmd::PathFromHashPart { hash_part } => {
            match store.query_path_from_hash_part(&hash_part)? {
                Some(p) => writeln!(out, "{}", sd.display(&p))?,
                None => bail!("there is no store path corresponding to '{hash_part}'"),
            }
        }
        StoreCmd::MakeContentAddressed(a) => {
            drop(out);
            return super::make_ca::run(ctx, *a);
        }
        StoreCmd::Sign { key_file, paths } => {
            let key = crate::cmd::key::read_secret_key(Path::new(&key_file))?;
            let mut added = 0usize;
            for p in paths.resolve(&store)? {
                let info = path_info(&store, &p)?;
                let sig = crate::cmd::key::sign_path_info(&key, &sd, &info)?;
                if !info.sigs.contains(&sig) {
                    store.add_signatures(&p, &[sig])?;
                    added += 1;
                }
            }
            eprintln!("added {added} signatures");
        }
    }
    out.flush().context("writing to standard output")?;
    Ok(())
}

fn add(
    store: &LocalStore,
    out: &mut impl Write,
    a: AddArgs,
    default: FileIngestionMethod,
) -> Result<()> {
    let method = match a.mode.as_deref() {
        None => default,
        Some("nar") => FileIngestionMethod::Recursive,
        Some("flat") => FileIngestionMethod::Flat,
        Some(m) => bail!("unknown file ingestion method '{m}', expect 'flat' or 'nar'"),
    };
    let algo: HashAlgo = a.hash_algo.parse()?;
    let path = absolute(&a.path)?;
    let name = match a.name {
        Some(n) => n,
        None => path.rsplit('/').next().unwrap_or("").to_string(),
    };
    let sp = if a.dry_run {
        store.compute_path_for(&name, Path::new(&path), method, algo)?
    } else {
        store.add_path(&name, Path::new(&path), method, algo)?
    };
    writeln!(out, "{}", store.store_dir().display(&sp))?;
    Ok(())
}

/// `nix store cat`: a regular file's contents.
fn cat(acc: &dyn Accessor, rest: &str, path: &str, out: &mut dyn Write) -> Result<()> {
    match acc.stat(rest)? {
        Some(Stat::Regular { .. }) => out.write_all(&acc.read_file(rest)?)?,
        Some(_) => bail!("path '{path}' is not a regular file"),
        None => bail!("path '{path}' does not exist"),
    }
    Ok(())
}

/// `nix store ls`.
fn ls(acc: &dyn Accessor, rest: &str, a: &LsArgs, out: &mut dyn Write) -> Result<()> {
    if a.json {
        if a.directory {
            return Err(crate::context::usage(
                "'--directory' is useless with '--json'",
            ));
        }
        // No newline, as CppNix.
        write!(out, "{}", list_json(acc, rest, a.recursive)?)?;
    } else {
        let mut lines = Vec::new();
        list_text(acc, rest, a.recursive, a.long, a.directory, &mut lines)?;
        for l in lines {
            writeln!(out, "{l}")?;
        }
    }
    Ok(())
}

/// The NAR of a path in a binary cache, downloaded (decompressed) to a temporary file that is
/// deleted when the accessor is dropped.
struct CacheNar {
    acc: NarAccessor,
    file: std::path::PathBuf,
}

impl Drop for CacheNar {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
    }
}

fn cache_nar(cache: &BinaryCache, p: &firn_format::StorePath) -> Result<CacheNar> {
    let sd = cache.store_dir();
    let ni = cache
        .query_narinfo(p)?
        .ok_or_else(|| anyhow::anyhow!("path '{}' is not valid", sd.display(p)))?;
    let file = std::env::temp_dir().join(format!(
        "firn-nar-{}-{}.nar",
        std::process::id(),
        p.hash_part()
    ));
    let mut nar = cache.open_nar(&ni)?;
    let mut f =
        std::fs::File::create(&file).with_context(|| format!("creating '{}'", file.display()))?;
    let copied = std::io::copy(&mut nar, &mut f);
    let guard = (|| -> Result<CacheNar> {
        copied.with_context(|| format!("downloading the NAR of '{}'", sd.display(p)))?;
        Ok(CacheNar {
            acc: NarAccessor::open(file.clone())?,
            file: file.clone(),
        })
    })();
    if guard.is_err() {
        let _ = std::fs::remove_file(&file);
    }
    guard
}

/// A path inside the store: the store path and the path below it.
fn store_subpath(sd: &firn_format::StoreDir, s: &str) -> Result<(firn_format::StorePath, String)> {
    let abs = absolute(s)?;
    if let Ok((sp, rest)) = sd.parse_inside(&abs) {
        return Ok((sp, rest.to_string()));
    }
    let sp = follow_links_to_store_path(sd, s)?;
    Ok((sp, String::new()))
}

/// The store paths named on the command line, for a binary cache (`--all`: every path a
/// `file://` or `s3://` cache lists, as CppNix; `-r` follows the narinfos' references).
fn cache_paths(cache: &BinaryCache, args: &StorePathArgs) -> Result<Vec<firn_format::StorePath>> {
    let sd = cache.store_dir();
    if args.all {
        return Ok(cache.query_all_valid_paths(16)?);
    }
    let mut roots = BTreeSet::new();
    for i in &args.installables {
        roots.insert(follow_links_to_store_path(sd, i)?);
    }
    if !args.recursive {
        return Ok(roots.into_iter().collect());
    }
    let any = AnyStore::Cache(BinaryCache::open(
        cache.uri(),
        sd,
        &firn_cache::cache::OpenOptions::default(),
    )?);
    let infos = firn_cache::copy::closure_infos(&any, &roots, 16)?;
    let mut v: Vec<_> = infos.into_keys().collect();
    v.sort();
    Ok(v)
}

/// `nix store sign|verify|info --store <binary cache>`.
fn run_cache(ctx: &Ctx, cmd: StoreCmd) -> Result<()> {
    let uri = ctx.store_uri();
    let cache = BinaryCache::open(&uri, &ctx.store_dir(), &ctx.cache_options())?;
    let sd = cache.store_dir().clone();
    match cmd {
        StoreCmd::MakeContentAddressed(a) => return super::make_ca::run(ctx, *a),
        StoreCmd::Info => outln!("Store URL: {}", cache.uri()),
        StoreCmd::Cat { path } => {
            let (sp, rest) = store_subpath(&sd, &path)?;
            let nar = cache_nar(&cache, &sp)?;
            let mut out = std::io::stdout().lock();
            cat(&nar.acc, &rest, &path, &mut out)?;
            out.flush()?;
        }
        StoreCmd::Ls(a) => {
            let (sp, rest) = store_subpath(&sd, &a.path)?;
            let nar = cache_nar(&cache, &sp)?;
            let mut out = std::io::stdout().lock();
            ls(&nar.acc, &rest, &a, &mut out)?;
            out.flush()?;
        }
        StoreCmd::Sign { key_file, paths } => {
            let key = crate::cmd::key::read_secret_key(Path::new(&key_file))?;
            let mut added = 0usize;
            for p in cache_paths(&cache, &paths)? {
                let ni = cache
                    .query_narinfo(&p)?
                    .ok_or_else(|| anyhow::anyhow!("path '{}' is not valid", sd.display(&p)))?;
                let info = firn_cache::cache::narinfo_to_path_info(&ni);
                let sig = crate::cmd::key::sign_path_info(&key, &sd, &info)?;
                if !ni.sigs.contains(&sig) {
                    cache.add_signatures(&p, &[sig])?;
                    added += 1;
                }
            }
            eprintln!("added {added} signatures");
        }
        StoreCmd::Verify(v) => {
            let paths = cache_paths(&cache, &v.paths)?;
            // The narinfo, and with `contents` the NAR as the cache has it, hashed.
            let check = |p: &firn_format::StorePath, contents: bool| {
                let ni = cache
                    .query_narinfo(p)?
                    .ok_or_else(|| anyhow::anyhow!("path '{}' is not valid", sd.display(p)))?;
                let actual = if contents {
                    let mut nar = cache.open_nar(&ni)?;
                    let mut h = firn_format::Hasher::new(ni.nar_hash.algo());
                    std::io::copy(&mut nar, &mut h)?;
                    Some(h.finish())
                } else {
                    None
                };
                Ok((firn_cache::cache::narinfo_to_path_info(&ni), actual))
            };
            return verify_paths(ctx, &sd, &v, paths, check);
        }
        _ => bail!("this operation is not supported for the binary cache '{}' (firn supports info, sign, verify, cat and ls there)", cache.uri()),
    }
    Ok(())
}

fn verify(ctx: &Ctx, store: &LocalStore, v: VerifyArgs) -> Result<()> {
    let sd = store.store_dir().clone();
    let paths = v.paths.resolve(store)?;
    let check = |p: &firn_format::StorePath, contents: bool| {
        let info = path_info(store, p)?;
        let actual = if contents {
            Some(store.hash_valid_path(p, info.nar_hash.algo())?.0)
        } else {
            None
        };
        Ok((info, actual))
    };
    verify_paths(ctx, &sd, &v, paths, check)
}

/// `nix store verify` over `paths` of a local store or a cache: the contents against the
/// registered hash (`check` gives a path's info and, when asked for the contents, their
/// actual hash), and the signatures against the trusted keys (locally built paths need none
/// unless `--sigs-needed` asks).
fn verify_paths(
    ctx: &Ctx,
    sd: &firn_format::StoreDir,
    v: &VerifyArgs,
    paths: Vec<firn_format::StorePath>,
    check: impl Fn(&firn_format::StorePath, bool) -> Result<(ValidPathInfo, Option<Hash>)>,
) -> Result<()> {
    let keys = crate::cmd::key::trusted_public_keys(&ctx.settings)?;
    let (mut corrupted, mut untrusted, mut failed) = (0usize, 0usize, 0usize);
    for p in paths {
        let res: Result<()> = (|| {
            let (info, actual) = check(&p, !v.no_contents)?;
            if let Some(h) = actual {
                if h != info.nar_hash {
                    corrupted += 1;
                    eprintln!(
                        "error: path '{}' was modified! expected hash '{}', got '{}'",
                        sd.display(&p),
                        info.nar_hash,
                        h
                    );
                }
            }
            if !v.no_trust {
                let good = (info.ultimate && v.sigs_needed == 0)
                    || crate::cmd::key::count_valid_signatures(sd, &info, &keys)
                        >= v.sigs_needed.max(1);
                if !good {
                    untrusted += 1;
                    eprintln!("error: path '{}' is untrusted", sd.display(&p));
                }
            }
            Ok(())
        })();
        if let Err(e) = res {
            eprintln!("error: {e:#}");
            failed += 1;
        }
    }
    verify_status(corrupted, untrusted, failed)
}

/// `nix store verify`'s exit status: 1 corrupted, 2 untrusted, 4 other failures, or'ed.
fn verify_status(corrupted: usize, untrusted: usize, failed: usize) -> Result<()> {
    let code = (if corrupted > 0 { 1 } else { 0 })
        | (if untrusted > 0 { 2 } else { 0 })
        | (if failed > 0 { 4 } else { 0 });
    if code != 0 {
        return Err(Failure {
            code,
            msg: "verification failed".into(),
            silent: true,
        }
        .into());
    }
    Ok(())
}
