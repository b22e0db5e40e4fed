//! The new-style `nix` command line (`firn <command>`), parsed with clap.

pub mod accessor;
pub mod build;
pub mod copy;
pub mod derivation;
pub mod develop;
pub mod eval;
pub mod flake;
pub mod flake_check;
pub mod hash;
pub mod installables;
pub mod key;
pub mod make_ca;
pub mod nar;
pub mod path_info;
pub mod repl;
pub mod run;
pub mod serve;
pub mod store;
pub mod why_depends;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::context::{usage, Ctx};

#[derive(Parser, Debug)]
#[command(
    name = "nix",
    version,
    about = "firn: a drop-in Nix",
    disable_help_subcommand = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Compute and convert cryptographic hashes.
    #[command(subcommand)]
    Hash(hash::HashCmd),
    /// Manipulate a Nix store.
    #[command(subcommand)]
    Store(store::StoreCmd),
    /// Query information about store paths.
    #[command(name = "path-info")]
    PathInfo(path_info::PathInfoArgs),
    /// Create or inspect NAR files.
    #[command(subcommand)]
    Nar(nar::NarCmd),
    /// Work with derivations.
    #[command(subcommand)]
    Derivation(DerivationCmd),
    /// Show the contents of store derivations (deprecated; use `nix derivation show`).
    #[command(name = "show-derivation")]
    ShowDerivation(derivation::ShowArgs),
    /// Evaluate a Nix expression.
    Eval(eval::EvalArgs),
    /// Run an app or a package.
    Run(run::RunArgs),
    /// Run a shell (or a command) with packages in PATH.
    Shell(run::ShellArgs),
    /// Manage flakes: lock, update, metadata.
    /// Run a bash shell that provides the build environment of a derivation.
    Develop(Box<develop::DevelopArgs>),
    /// Print shell code that recreates the build environment of a derivation.
    #[command(name = "print-dev-env")]
    PrintDevEnv(Box<develop::PrintDevEnvArgs>),
    #[command(subcommand)]
    Flake(flake::FlakeCmd),
    /// Build derivations (`--file`/`--expr` attribute paths, store paths, DRV^OUTPUTS).
    Build(build::BuildArgs),
    /// Show the build log of a derivation or of the derivation that built a path.
    Log(build::LogArgs),
    /// Sign store paths (deprecated; use `nix store sign`).
    #[command(name = "sign-paths")]
    SignPaths {
        /// File containing the secret signing key.
        #[arg(short = 'k', long = "key-file")]
        key_file: String,
        #[command(flatten)]
        paths: installables::StorePathArgs,
    },
    /// Copy paths (with their closures) between stores and binary caches.
    Copy(copy::CopyArgs),
    /// Show why a package has another package in its closure.
    #[command(name = "why-depends")]
    WhyDepends(why_depends::WhyDependsArgs),
    /// Generate and convert Nix signing keys.
    #[command(subcommand)]
    Key(key::KeyCmd),
    /// Serve the store as an HTTP binary cache (as nix-serve and harmonia).
    Serve(serve::ServeArgs),
    /// Start an interactive environment for evaluating Nix expressions.
    Repl(repl::ReplArgs),
    /// Create links named after the Nix tools (nix, nix-store, nix-hash, ...) pointing to firn.
    #[command(name = "install-links")]
    InstallLinks {
        /// The directory to create the links in.
        dir: std::path::PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum DerivationCmd {
    /// Show the contents of store derivations as JSON.
    Show(derivation::ShowArgs),
}

pub fn main(args: Vec<String>) -> Result<()> {
    let (ctx, args) = Ctx::new(args)?;
    let cli = match Cli::try_parse_from(std::iter::once("nix".to_string()).chain(args)) {
        Ok(c) => c,
        Err(e) => match e.kind() {
            clap::error::ErrorKind::DisplayHelp
            | clap::error::ErrorKind::DisplayVersion
            | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                e.print()?;
                return Ok(());
            }
            _ => {
                let msg = e.to_string();
                let first = msg
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim_start_matches("error: ");
                return Err(usage(first.to_string()));
            }
        },
    };
    run(ctx, cli.command)
}

fn run(ctx: Ctx, cmd: Command) -> Result<()> {
    match cmd {
        Command::Hash(c) => hash::run(c),
        Command::Store(c) => store::run(&ctx, c),
        Command::SignPaths { key_file, paths } => {
            store::run(&ctx, store::StoreCmd::Sign { key_file, paths })
        }
        Command::PathInfo(a) => match ctx.open_any()? {
            firn_cache::copy::AnyStore::Cache(mut c) => {
                ctx.attach_disk_cache(&mut c)?;
                path_info::run_cache(&c, a)
            }
            firn_cache::copy::AnyStore::Local(s) => path_info::run(&s, a),
            firn_cache::copy::AnyStore::Ssh(s) => {
                anyhow::bail!(
                    "'nix path-info' is not supported for '{}' by firn yet",
                    s.uri()
                )
            }
        },
        Command::Nar(c) => nar::run(c),
        Command::Key(c) => key::run(c),
        Command::Eval(a) => eval::run(a, &ctx),
        Command::Flake(c) => flake::run(c, &ctx),
        Command::Run(a) => run::run(&ctx, a),
        Command::Develop(a) => develop::develop(&ctx, *a),
        Command::PrintDevEnv(a) => develop::print_dev_env(&ctx, *a),
        Command::Shell(a) => run::shell(&ctx, a),
        Command::Copy(a) => copy::run(&ctx, a),
        Command::Serve(a) => serve::run(&ctx, a),
        Command::Build(a) => build::build(&ctx, a),
        Command::Log(a) => build::log(&ctx, a),
        Command::WhyDepends(a) => why_depends::run(&ctx.open_store()?, a),
        Command::Derivation(DerivationCmd::Show(a)) | Command::ShowDerivation(a) => {
            derivation::show(&ctx.open_store()?, a)
        }
        Command::InstallLinks { dir } => install_links(&dir),
        Command::Repl(a) => repl::run(ctx, a),
    }
}

/// The `flake-registry` setting: the global flake registry (a file, a URL, or "" for none).
pub(crate) fn flake_registry(ctx: &Ctx) -> String {
    ctx.settings.get("flake-registry").unwrap_or("").to_string()
}

/// The store `nix eval` writes to. One that cannot be opened (no write access to `/nix`, which
/// CppNix would reach through its daemon) leaves the evaluation read-only, with a warning.
pub(crate) fn eval_store(ctx: &Ctx) -> Option<firn_store::LocalStore> {
    match ctx.open_store() {
        Ok(s) => Some(s),
        Err(e) => {
            if crate::context::shows_warnings(ctx.verbosity) {
                let text = format!(
                    "warning: evaluating without writing to the store: {}",
                    crate::report::error_text(e.as_ref())
                );
                crate::logger::line(crate::logger::WARN, &text);
            }
            None
        }
    }
}

fn install_links(dir: &std::path::Path) -> Result<()> {
    use anyhow::Context;
    let exe = std::env::current_exe().context("finding the firn executable")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating '{}'", dir.display()))?;
    for name in crate::TOOL_NAMES {
        let link = dir.join(name);
        match std::fs::symlink_metadata(&link) {
            Ok(_) => std::fs::remove_file(&link)
                .with_context(|| format!("replacing '{}'", link.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("checking '{}'", link.display())),
        }
        std::os::unix::fs::symlink(&exe, &link)
            .with_context(|| format!("creating link '{}'", link.display()))?;
    }
    outln!(
        "created {} links in '{}'",
        crate::TOOL_NAMES.len(),
        dir.display()
    );
    Ok(())
}
