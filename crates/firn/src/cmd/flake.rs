//! `nix flake lock`, `nix flake update` and `nix flake metadata` (`info`): a flake's inputs
//! locked (its `flake.lock` written when that changes, all locked afresh for `update`) and
//! its metadata shown, as CppNix 2.8 shows it (`--json` too). The locking itself is
//! firn-eval's (`flake.rs`).

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

#[derive(Subcommand, Debug)]
pub enum FlakeCmd {
    /// Create missing lock file entries.
    Lock(FlakeArgs),
    /// Update the flake's lock file: every input locked afresh.
    Update(FlakeArgs),
    /// Show flake metadata.
    Metadata(FlakeArgs),
    /// Show flake metadata (deprecated: `metadata`).
    Info(FlakeArgs),
    /// Other subcommands (`show`, `check`, `init`, ...), which firn does not have yet.
    #[command(external_subcommand)]
    Other(Vec<String>),
}

/// How the command line lets a flake's lock change (CppNix's flake options).
#[derive(Args, Debug, Clone, Default)]
pub struct LockArgs {
    /// Lock every input afresh, as if there were no lock file.
    #[arg(long)]
    recreate_lock_file: bool,
    /// Fail if the lock file would change.
    #[arg(long)]
    no_update_lock_file: bool,
    /// Do not write a changed lock file (a warning shows the change).
    #[arg(long)]
    no_write_lock_file: bool,
    /// Lock this input (`a/b`) afresh.
    #[arg(long, value_name = "INPUT_PATH")]
    update_input: Vec<String>,
    /// Take this input (`a/b`) from another flake reference.
    #[arg(long, num_args = 2, value_names = ["INPUT_PATH", "FLAKE_URL"])]
    override_input: Vec<String>,
}

impl LockArgs {
    /// The options of the evaluator's locking.
    pub fn options(&self) -> firn_eval::flake::LockOptions {
        firn_eval::flake::LockOptions {
            recreate: self.recreate_lock_file,
            update: !self.no_update_lock_file,
            // An override is not written to the lock file (as CppNix: it implies
            // `--no-write-lock-file`).
            write: !self.no_write_lock_file && self.override_input.is_empty(),
            update_inputs: self.update_input.clone(),
            override_inputs: self
                .override_input
                .chunks(2)
                .map(|p| (p[0].clone(), p[1].clone()))
                .collect(),
        }
    }
}

#[derive(Args, Debug)]
pub struct FlakeArgs {
    #[command(flatten)]
    lock: LockArgs,
    /// Print the metadata as JSON (`metadata`).
    #[arg(long)]
    json: bool,
    /// The flake reference (default `.`).
    flake: Option<String>,
}

/// Run a `nix flake` subcommand; `features` the experimental features on, `store` the
/// store fetched into.
pub fn run(
    cmd: FlakeCmd,
    show_trace: bool,
    features: firn_eval::Features,
    store: Option<firn_store::LocalStore>,
) -> Result<()> {
    if !features.flakes {
        bail!("experimental Nix feature 'flakes' is disabled; use '--extra-experimental-features flakes' to override");
    }
    let (args, update_all, show) = match cmd {
        FlakeCmd::Lock(a) => (a, false, false),
        FlakeCmd::Update(a) => (a, true, false),
        FlakeCmd::Metadata(a) => (a, false, true),
        FlakeCmd::Other(args) => bail!(
            "'nix flake {}' is not implemented by firn yet (it has 'lock', 'update' and 'metadata')",
            args.first().map_or("", String::as_str)
        ),
        FlakeCmd::Info(a) => {
            crate::logger::line(
                crate::logger::WARN,
                "warning: 'nix flake info' is a deprecated alias for 'nix flake metadata'",
            );
            (a, false, true)
        }
    };
    let cwd = std::env::current_dir()
        .context("getting the current directory")?
        .to_string_lossy()
        .into_owned();
    let reference = args.flake.clone().unwrap_or_else(|| ".".into());
    let mut options = args.lock.options();
    options.recreate |= update_all;
    let json = args.json;
    let out = crate::eval_thread::run(move || -> Result<String, String> {
        let mut ev = firn_eval::Evaluator::with_features(features);
        ev.set_stack_size(firn_eval::eval::EVAL_THREAD_STACK);
        if let Some(store) = store {
            ev.store = firn_eval::store::EvalStore::with_store(std::rc::Rc::new(store), true);
        }
        ev.restrict(firn_eval::purity::Restriction::Pure);
        let m = firn_eval::flake::lock_command(&mut ev, &reference, &cwd, &options)
            .map_err(|e| e.render(show_trace));
        ev.store = firn_eval::store::EvalStore::read_only(ev.store.dir.clone());
        std::mem::forget(ev);
        let m = m?;
        if !show {
            return Ok(String::new());
        }
        Ok(if json {
            metadata_json(&m)
        } else {
            metadata_text(&m)
        })
    })?;
    match out {
        Ok(s) if s.is_empty() => Ok(()),
        Ok(s) => Ok(firn_eval::term::write_stdout(&s, true)?),
        Err(msg) => bail!("{msg}"),
    }
}

/// `nix flake metadata --json`: CppNix's object (keys in order).
fn metadata_json(m: &firn_eval::flake::Metadata) -> String {
    let mut j = serde_json::Map::new();
    let mut put = |k: &str, v: serde_json::Value| {
        j.insert(k.to_string(), v);
    };
    if let Some(d) = &m.description {
        put("description", d.as_str().into());
    }
    if let Some(t) = m.last_modified {
        put("lastModified", t.into());
    }
    put("locked", m.locked.clone());
    put("locks", m.locks.clone());
    put("original", m.original.clone());
    put("originalUrl", m.original_url.as_str().into());
    put("path", m.path.as_str().into());
    put("resolved", m.resolved.clone());
    put("resolvedUrl", m.resolved_url.as_str().into());
    if let Some(n) = m.rev_count {
        put("revCount", n.into());
    }
    if let Some(r) = &m.revision {
        put("revision", r.as_str().into());
    }
    put("url", m.locked_url.as_str().into());
    serde_json::Value::Object(j).to_string()
}

/// `nix flake metadata`: labelled lines (labels in bold), then the tree of inputs.
fn metadata_text(m: &firn_eval::flake::Metadata) -> String {
    let mut lines = Vec::new();
    let mut line = |label: &str, value: &str| {
        lines.push(format!("\x1b[1m{label}\x1b[0m{value}"));
    };
    line("Resolved URL:", &format!("  {}", m.resolved_url));
    line("Locked URL:", &format!("    {}", m.locked_url));
    if let Some(d) = &m.description {
        line("Description:", &format!("   {d}"));
    }
    line("Path:", &format!("          {}", m.path));
    if let Some(r) = &m.revision {
        line("Revision:", &format!("      {r}"));
    }
    if let Some(n) = m.rev_count {
        line("Revisions:", &format!("     {n}"));
    }
    if let Some(t) = m.last_modified {
        line("Last modified:", &format!(" {}", local_time(t)));
    }
    line("Inputs:", "");
    lines.extend(m.tree.iter().cloned());
    lines.join("\n")
}

/// `%F %T` in the local time zone, as CppNix prints a flake's modification time.
fn local_time(t: u64) -> String {
    let secs = t as libc::time_t;
    // SAFETY: `localtime_r` writes only into `tm`, a plain struct we own.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    if unsafe { libc::localtime_r(&secs, &mut tm) }.is_null() {
        return t.to_string();
    }
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}
