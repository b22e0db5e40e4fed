//! `nix flake lock`, `nix flake update`, `nix flake metadata` (`info`), `nix flake show`,
//! `nix flake archive`, `nix flake clone`, `nix flake prefetch` and `nix flake init`/`new`
//! (from templates): a flake's inputs locked (its `flake.lock` written when that changes,
//! all locked afresh for `update`), its metadata and its outputs shown, its sources copied,
//! its repository cloned, as CppNix 2.8 does (`--json` too). The locking itself is
//! firn-eval's (`flake.rs`); `nix flake check` is `flake_check.rs`.

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
    /// Show the outputs of a flake.
    Show(ShowArgs),
    /// Download a flake's source tree into the store.
    Prefetch(FlakeArgs),
    /// Create a flake in the current directory from a template.
    Init(InitArgs),
    /// Create a flake in a new directory from a template.
    New(NewArgs),
    /// Check that the flake's outputs evaluate, and run its checks.
    Check(super::flake_check::CheckArgs),
    /// Copy a flake and all its inputs to a store.
    Archive(ArchiveArgs),
    /// Clone a flake's repository.
    Clone(CloneArgs),
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
    /// Commit a changed lock file (in a Git repository).
    #[arg(long)]
    commit_lock_file: bool,
    /// Use the inputs of this flake as registry entries.
    #[arg(long, value_name = "FLAKE_URL")]
    inputs_from: Option<String>,
    /// Resolve a flake reference (a flake ID) to another one, before the registries.
    #[arg(long, num_args = 2, value_names = ["ORIGINAL_REF", "RESOLVED_REF"])]
    override_flake: Vec<String>,
}

impl LockArgs {
    /// The options of the evaluator's locking (the commit message's summary from
    /// `settings`).
    pub fn options(&self, settings: &crate::settings::Settings) -> firn_eval::flake::LockOptions {
        let summary = ["commit-lockfile-summary", "commit-lock-file-summary"]
            .iter()
            .find_map(|k| settings.get(k).filter(|v| !v.is_empty()))
            .unwrap_or_default();
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
            commit: self.commit_lock_file.then(|| summary.to_string()),
            inputs_from: self.inputs_from.clone(),
            // Set by the commands that apply a flake's `nixConfig`.
            apply_config: false,
            accept_config: settings.get_bool("accept-flake-config"),
            override_flakes: self
                .override_flake
                .chunks(2)
                .map(|p| (p[0].clone(), p[1].clone()))
                .collect(),
        }
    }

    /// These flags for looking nixpkgs up beside `flake` (`nix develop`'s bash): the flake's
    /// inputs as registry entries, no input updated or overridden.
    pub fn for_nixpkgs(&self, flake: Option<String>) -> LockArgs {
        LockArgs {
            update_input: Vec::new(),
            override_input: Vec::new(),
            inputs_from: flake,
            ..self.clone()
        }
    }

    /// [`Self::options`] for a command that applies the flake's `nixConfig` (installables,
    /// `nix flake lock|update|check`, `nix run`, as CppNix's `applyNixConfig`).
    pub fn applied_options(
        &self,
        settings: &crate::settings::Settings,
    ) -> firn_eval::flake::LockOptions {
        firn_eval::flake::LockOptions {
            apply_config: true,
            ..self.options(settings)
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

#[derive(Args, Debug)]
pub struct CloneArgs {
    /// Clone the flake to this directory.
    #[arg(short = 'f', long, value_name = "PATH")]
    dest: Option<String>,
    /// The flake reference (default `.`).
    flake: Option<String>,
}

#[derive(Args, Debug)]
pub struct ArchiveArgs {
    /// URI of the destination store (default: none, the sources are only fetched).
    #[arg(long, value_name = "STORE_URI")]
    to: Option<String>,
    /// Only show what would be copied (its store paths computed, nothing fetched).
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    flake: FlakeArgs,
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    /// Show the contents of `legacyPackages` too.
    #[arg(long)]
    legacy: bool,
    #[command(flatten)]
    flake: FlakeArgs,
}

#[derive(Args, Debug)]
pub struct InitArgs {
    /// The template: `FLAKEREF#NAME` (its `templates.NAME`; `defaultTemplate` without NAME).
    #[arg(short = 't', long = "template", default_value = "templates")]
    template: String,
}

#[derive(Args, Debug)]
pub struct NewArgs {
    /// The template: `FLAKEREF#NAME` (its `templates.NAME`; `defaultTemplate` without NAME).
    #[arg(short = 't', long = "template", default_value = "templates")]
    template: String,
    /// The directory to create the flake in.
    dest: String,
}

/// Run a `nix flake` subcommand.
pub fn run(cmd: FlakeCmd, ctx: &crate::context::Ctx) -> Result<()> {
    let show_trace = ctx.settings.get_bool("show-trace");
    let (features, registry) = (ctx.settings.eval_features(), super::flake_registry(ctx));
    require_flakes(&features)?;
    let store = match cmd {
        // Opened by the command itself.
        FlakeCmd::Check(_) => None,
        _ => super::eval_store(ctx),
    };
    let (args, update_all, show) = match cmd {
        FlakeCmd::Show(a) => {
            let options = a.flake.lock.options(&ctx.settings);
            return show_outputs(a, options, show_trace, (features, registry), store);
        }
        FlakeCmd::Prefetch(a) => return prefetch(a, show_trace, (features, registry), store),
        FlakeCmd::Init(a) => {
            return from_template(&a.template, ".", show_trace, (features, registry), store)
        }
        FlakeCmd::New(a) => {
            return from_template(
                &a.template,
                &a.dest,
                show_trace,
                (features, registry),
                store,
            )
        }
        FlakeCmd::Check(a) => return super::flake_check::check(ctx, a),
        FlakeCmd::Archive(a) => return archive(ctx, a, show_trace, (features, registry), store),
        FlakeCmd::Lock(a) => (a, false, false),
        FlakeCmd::Update(a) => (a, true, false),
        FlakeCmd::Metadata(a) => (a, false, true),
        FlakeCmd::Clone(a) => {
            let Some(dest) = a.dest else {
                bail!("missing flag '--dest'");
            };
            let cwd = crate::paths::cwd()?;
            let reference = a.flake.unwrap_or_else(|| ".".into());
            return with_evaluator((features, registry), store, show_trace, move |ev| {
                firn_eval::flake::clone(ev, &reference, &cwd, &dest)
            });
        }
        FlakeCmd::Info(a) => {
            crate::logger::line(
                crate::logger::WARN,
                "warning: 'nix flake info' is a deprecated alias for 'nix flake metadata'",
            );
            (a, false, true)
        }
    };
    let cwd = crate::paths::cwd()?;
    let reference = args.flake.clone().unwrap_or_else(|| ".".into());
    let mut options = args.lock.options(&ctx.settings);
    options.recreate |= update_all;
    // `nix flake lock` and `update` apply the flake's `nixConfig` (not `metadata`).
    options.apply_config = !show;
    let json = args.json;
    let m = with_evaluator((features, registry), store, show_trace, move |ev| {
        firn_eval::flake::lock_command(ev, &reference, &cwd, &options)
    })?;
    if show {
        let s = if json {
            metadata_json(&m)
        } else {
            metadata_text(&m)
        };
        firn_eval::term::write_stdout(&s, true)?;
    }
    Ok(())
}

/// The evaluator of the flake commands: pure, fetching into `store` (computing paths only
/// without one).
fn evaluator(
    features: firn_eval::Features,
    registry: String,
    store: Option<firn_store::LocalStore>,
) -> firn_eval::Evaluator {
    let mut ev = firn_eval::Evaluator::with_features(features);
    ev.set_stack_size(firn_eval::eval::EVAL_THREAD_STACK);
    ev.flake_registry = registry;
    if let Some(store) = store {
        ev.store = firn_eval::store::EvalStore::with_store(std::rc::Rc::new(store), true);
    }
    ev.restrict(firn_eval::purity::Restriction::Pure);
    ev
}

/// The `flakes` experimental feature must be on for flake commands and installables.
pub(crate) fn require_flakes(features: &firn_eval::Features) -> Result<()> {
    if !features.flakes {
        bail!("experimental Nix feature 'flakes' is disabled; use '--extra-experimental-features flakes' to override");
    }
    Ok(())
}

/// Run `job` with a flake command's evaluator ([`evaluator`]) on the evaluation thread; its
/// error rendered (with `--show-trace`'s frames if asked).
fn with_evaluator<T: Send + 'static>(
    (features, registry): (firn_eval::Features, String),
    store: Option<firn_store::LocalStore>,
    show_trace: bool,
    job: impl FnOnce(&mut firn_eval::Evaluator) -> Result<T, firn_eval::error::EvalError>
        + Send
        + 'static,
) -> Result<T> {
    require_flakes(&features)?;
    let out = crate::eval_thread::run(move || {
        let mut ev = evaluator(features, registry, store);
        let r = job(&mut ev).map_err(|e| e.render(show_trace));
        // The store is closed; the evaluator's values are left to the process's end.
        ev.store = firn_eval::store::EvalStore::read_only(ev.store.dir.clone());
        std::mem::forget(ev);
        r
    })?;
    out.map_err(|msg| anyhow::anyhow!("{msg}"))
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

/// `nix flake show`: the outputs as a tree (or `--json`), each known kind of output named
/// (package, app, template, NixOS module, ...) as CppNix 2.8 names it; `legacyPackages`'
/// systems are only listed without `--legacy`. What it is evaluating goes to stderr when
/// that is not a terminal, as CppNix's plain logger shows it.
fn show_outputs(
    a: ShowArgs,
    options: firn_eval::flake::LockOptions,
    show_trace: bool,
    (features, registry): (firn_eval::Features, String),
    store: Option<firn_store::LocalStore>,
) -> Result<()> {
    let cwd = crate::paths::cwd()?;
    let reference = a.flake.flake.clone().unwrap_or_else(|| ".".into());

    let (json, legacy) = (a.flake.json, a.legacy);
    let j = with_evaluator((features, registry), store, show_trace, move |ev| {
        let (v, locked) = firn_eval::flake::outputs(ev, &reference, &cwd, &options)?;
        let mut show = Show { ev, legacy, json };
        let root = firn_eval::value::Thunk::value(v);
        show.visit(root, &[], &format!("\x1b[1m{locked}\x1b[0m"), "")
    })?;
    if json {
        firn_eval::term::write_stdout(&firn_format::json::sort_json(&j).to_string(), true)?;
    }
    Ok(())
}

/// The walk of `nix flake show`.
struct Show<'a> {
    ev: &'a mut firn_eval::Evaluator,
    legacy: bool,
    json: bool,
}

impl Show<'_> {
    /// A line of the tree, written at once (as CppNix, so what was shown before an error
    /// stays).
    fn out(&mut self, line: String) {
        if !self.json {
            // A closed standard output ends the command as it does elsewhere.
            let _ = firn_eval::term::write_stdout(&line, true);
        }
    }

    /// Show `v`, at attribute path `path`, on the line `header`; its children's lines start
    /// with `next`.
    fn visit(
        &mut self,
        t: firn_eval::value::Thunk,
        path: &[String],
        header: &str,
        next: &str,
    ) -> Result<serde_json::Value, firn_eval::error::EvalError> {
        use firn_eval::error::EvalError;
        if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            firn_eval::term::write_stderr_line(&format!("evaluating '{}'...", path.join(".")));
        }
        let first = path.first().map(String::as_str).unwrap_or("");
        let n = path.len();
        let mut j = serde_json::Map::new();
        let result = (|| {
            // Forced here, so that an error under `legacyPackages` is passed over.
            let v = self.ev.force(&t)?;
            let recurse = n == 0
                || (n == 1
                    && matches!(
                        first,
                        "defaultPackage"
                            | "devShell"
                            | "formatter"
                            | "nixosConfigurations"
                            | "nixosModules"
                            | "defaultApp"
                            | "templates"
                            | "overlays"
                    ))
                || ((n == 1 || n == 2)
                    && matches!(first, "checks" | "packages" | "devShells" | "apps"));
            let derivation = (n == 2
                && matches!(first, "defaultPackage" | "devShell" | "formatter"))
                || (n == 3 && matches!(first, "checks" | "packages" | "devShells"));
            if recurse {
                return self.recurse(&v, path, header, next, &mut j);
            }
            if derivation {
                return match self.is_derivation(&v)? {
                    true => self.show_derivation(&v, path, header, &mut j),
                    false => Err(EvalError::new("expected a derivation")),
                };
            }
            if first == "hydraJobs" {
                return match self.is_derivation(&v)? {
                    true => self.show_derivation(&v, path, header, &mut j),
                    false => self.recurse(&v, path, header, next, &mut j),
                };
            }
            if first == "legacyPackages" {
                if n == 1 {
                    return self.recurse(&v, path, header, next, &mut j);
                }
                if !self.legacy {
                    firn_eval::term::write_stderr_line(&format!(
                        "warning: {header}: \x1b[35;1momitted\x1b[0m (use '--legacy' to show)"
                    ));
                    return Ok(());
                }
                if self.is_derivation(&v)? {
                    return self.show_derivation(&v, path, header, &mut j);
                }
                if n <= 2 {
                    return self.recurse(&v, path, header, next, &mut j);
                }
                return Ok(());
            }
            if (n == 2 && first == "defaultApp") || (n == 3 && first == "apps") {
                let ty = self.string_attr(&v, "type")?;
                if ty.as_deref() != Some("app") {
                    return Err(EvalError::new("not an app definition"));
                }
                j.insert("type".into(), "app".into());
                self.out(format!("{header}: app"));
                return Ok(());
            }
            if (n == 1 && first == "defaultTemplate") || (n == 2 && first == "templates") {
                let description = self
                    .string_attr(&v, "description")?
                    .ok_or_else(|| EvalError::new("attribute 'description' missing"))?;
                j.insert("type".into(), "template".into());
                j.insert("description".into(), description.as_str().into());
                self.out(format!("{header}: template: \x1b[1m{description}\x1b[0m"));
                return Ok(());
            }
            let (ty, what) = if (n == 1 && first == "overlay") || (n == 2 && first == "overlays") {
                ("nixpkgs-overlay", "Nixpkgs overlay")
            } else if n == 2 && first == "nixosConfigurations" {
                ("nixos-configuration", "NixOS configuration")
            } else if (n == 1 && first == "nixosModule") || (n == 2 && first == "nixosModules") {
                ("nixos-module", "NixOS module")
            } else {
                ("unknown", "unknown")
            };
            j.insert("type".into(), ty.into());
            self.out(format!("{header}: \x1b[35;1m{what}\x1b[0m"));
            Ok(())
        })();
        match result {
            Ok(()) => Ok(serde_json::Value::Object(j)),
            // Errors under `legacyPackages` are passed over, as CppNix's.
            Err(_) if first == "legacyPackages" => Ok(serde_json::Value::Object(j)),
            Err(e) => Err(e),
        }
    }

    /// The header line, then each attribute of `v` (a set) under it.
    fn recurse(
        &mut self,
        v: &firn_eval::Value,
        path: &[String],
        header: &str,
        next: &str,
        j: &mut serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), firn_eval::error::EvalError> {
        let firn_eval::Value::Attrs(set) = v else {
            return Err(firn_eval::error::EvalError::new(format!(
                "'{}' is not an attribute set",
                path.join(".")
            )));
        };
        self.out(header.to_string());
        let set = set.clone();
        let len = set.len();
        for (i, (name, t)) in set.iter().enumerate() {
            let last = i + 1 == len;
            let (conn, more) = match last {
                true => ("\u{2514}\u{2500}\u{2500}\u{2500}", "    "),
                false => ("\u{251c}\u{2500}\u{2500}\u{2500}", "\u{2502}   "),
            };
            let mut path2 = path.to_vec();
            path2.push(name.to_string());
            let header2 = format!("\x1b[32;1m{next}{conn}\x1b[0m\x1b[1m{name}\x1b[0m");
            let j2 = self.visit(t.clone(), &path2, &header2, &format!("{next}{more}"))?;
            j.insert(name.to_string(), j2);
        }
        Ok(())
    }

    fn show_derivation(
        &mut self,
        v: &firn_eval::Value,
        path: &[String],
        header: &str,
        j: &mut serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), firn_eval::error::EvalError> {
        let name = self.string_attr(v, "name")?.unwrap_or_default();
        if self.json {
            let description = match self.attr(v, "meta")? {
                Some(meta) => self.string_attr(&meta, "description")?,
                None => None,
            };
            j.insert("type".into(), "derivation".into());
            j.insert("name".into(), name.as_str().into());
            if let Some(d) = description {
                j.insert("description".into(), d.into());
            }
            return Ok(());
        }
        let (n, first) = (path.len(), path.first().map(String::as_str).unwrap_or(""));
        let kind = if (n == 2 && first == "devShell") || (n >= 2 && first == "devShells") {
            "development environment"
        } else if (n == 3 && first == "checks") || (n >= 1 && first == "hydraJobs") {
            "derivation"
        } else {
            "package"
        };
        self.out(format!("{header}: {kind} '{name}'"));
        Ok(())
    }

    /// Whether `v` is a derivation (a set whose `type` is `"derivation"`).
    fn is_derivation(&mut self, v: &firn_eval::Value) -> Result<bool, firn_eval::error::EvalError> {
        Ok(self.string_attr(v, "type")?.as_deref() == Some("derivation"))
    }

    fn attr(
        &mut self,
        v: &firn_eval::Value,
        name: &str,
    ) -> Result<Option<firn_eval::Value>, firn_eval::error::EvalError> {
        match v {
            firn_eval::Value::Attrs(set) => match set.get(name) {
                Some(t) => Ok(Some(self.ev.force(&t.clone())?)),
                None => Ok(None),
            },
            _ => Ok(None),
        }
    }

    fn string_attr(
        &mut self,
        v: &firn_eval::Value,
        name: &str,
    ) -> Result<Option<String>, firn_eval::error::EvalError> {
        Ok(match self.attr(v, name)? {
            Some(firn_eval::Value::String(s)) => Some(s.s.to_string()),
            _ => None,
        })
    }
}

/// `nix flake archive`: the flake and its inputs fetched (their tree with `--json`), and
/// copied with `--to` (unless `--dry-run`), as CppNix 2.8's.
fn archive(
    ctx: &crate::context::Ctx,
    a: ArchiveArgs,
    show_trace: bool,
    (features, registry): (firn_eval::Features, String),
    store: Option<firn_store::LocalStore>,
) -> Result<()> {
    let cwd = crate::paths::cwd()?;
    let reference = a.flake.flake.clone().unwrap_or_else(|| ".".into());
    let options = a.flake.lock.options(&ctx.settings);
    let dry_run = a.dry_run;
    let (tree, paths) = with_evaluator((features, registry), store, show_trace, move |ev| {
        firn_eval::flake::archive(ev, &reference, &cwd, &options, dry_run)
    })?;
    if a.flake.json {
        // Without a final newline, as CppNix 2.8 prints it.
        firn_eval::term::write_stdout(&tree.to_string(), false)?;
    }
    if let (Some(to), false) = (&a.to, dry_run) {
        super::copy::copy_paths(ctx, to, &paths.into_iter().collect())?;
    }
    Ok(())
}

/// `nix flake prefetch`: the flake's source fetched (its reference resolved in the
/// registries), and where it went with its NAR hash.
fn prefetch(
    a: FlakeArgs,
    show_trace: bool,
    (features, registry): (firn_eval::Features, String),
    store: Option<firn_store::LocalStore>,
) -> Result<()> {
    let cwd = crate::paths::cwd()?;
    let reference = a.flake.clone().unwrap_or_else(|| ".".into());
    let (locked, path, hash) =
        with_evaluator((features, registry), store, show_trace, move |ev| {
            firn_eval::flake::prefetch(ev, &reference, &cwd)
        })?;
    if a.json {
        let j = serde_json::json!({ "hash": hash, "storePath": path });
        firn_eval::term::write_stdout(&j.to_string(), true)?;
    } else {
        let text = format!("Downloaded '{locked}' to '{path}' (hash '{hash}').");
        crate::logger::line(crate::logger::NOTICE, &text);
    }
    Ok(())
}

/// `nix flake init` (into `.`) and `nix flake new DEST`: the template's files (its `path`,
/// in the store) copied into `dest`, each announced ("wrote: ..."); a file already there
/// with other contents is an error, one with the same is left; in a Git repository the
/// files are added to the index. Then the template's `welcomeText`, if any.
fn from_template(
    template: &str,
    dest: &str,
    show_trace: bool,
    (features, registry): (firn_eval::Features, String),
    store: Option<firn_store::LocalStore>,
) -> Result<()> {
    let cwd = crate::paths::cwd()?;
    let dest = crate::paths::absolute(dest)?;
    let template = template.to_string();
    let (from, welcome) = with_evaluator((features, registry), store, show_trace, move |ev| {
        template_of(ev, &template, &cwd)
    })?;
    let mut written = Vec::new();
    copy_template(
        std::path::Path::new(&from),
        std::path::Path::new(&dest),
        &mut written,
    )?;
    if std::path::Path::new(&dest).join(".git").exists() {
        let status = std::process::Command::new("git")
            .args(["-C", &dest, "add", "--intent-to-add", "--force", "--"])
            .args(&written)
            .status()
            .context("running git")?;
        if !status.success() {
            bail!("git add of the template's files failed ({status})");
        }
    }
    if let Some(text) = welcome {
        // Shown as CppNix lays out a plain paragraph (it renders Markdown; firn shows the
        // text as it is, indented).
        let indented: Vec<String> = text
            .trim_end()
            .lines()
            .map(|l| match l.is_empty() {
                true => String::new(),
                false => format!("    {l}"),
            })
            .collect();
        crate::logger::line(crate::logger::NOTICE, "\n");
        crate::logger::line(crate::logger::NOTICE, &format!("\n{}", indented.join("\n")));
    }
    Ok(())
}

/// The template's directory on disk and its welcome text.
fn template_of(
    ev: &mut firn_eval::Evaluator,
    template: &str,
    cwd: &str,
) -> Result<(String, Option<String>), firn_eval::error::EvalError> {
    use firn_eval::error::EvalError;
    use firn_eval::Value;
    let options = firn_eval::flake::LockOptions {
        write: false,
        ..Default::default()
    };
    let (v, at) = firn_eval::flake::installable_at(
        ev,
        template,
        cwd,
        &options,
        firn_eval::flake::Wanted::Template,
    )?;
    let Value::Attrs(set) = &v else {
        return Err(EvalError::new(format!(
            "template '{template}' is {} while a set was expected",
            v.type_name()
        )));
    };
    let path = match set.get("path") {
        Some(t) => ev.force(&t.clone())?,
        None => return Err(EvalError::new("attribute 'path' missing")),
    };
    let path = ev.coerce_to_string(&path, false, true)?.s.to_string();
    if ev.store.dir.parse_inside(&path).is_err() {
        return Err(EvalError::new(format!(
            "'{path}' was not found in the Nix store\nIf you've set '{at}.path' to a string, try using a path instead."
        )));
    }
    let welcome = match set.get("welcomeText") {
        Some(t) => match ev.force(&t.clone())? {
            Value::String(s) => Some(s.s.to_string()),
            _ => None,
        },
        None => None,
    };
    Ok((
        ev.store.real_path(&path).to_string_lossy().into_owned(),
        welcome,
    ))
}

/// Copy the tree `from` into `to` (made if missing), adding each path written to `written`.
fn copy_template(
    from: &std::path::Path,
    to: &std::path::Path,
    written: &mut Vec<String>,
) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating '{}'", to.display()))?;
    let mut entries: Vec<_> = std::fs::read_dir(from)
        .with_context(|| format!("reading '{}'", from.display()))?
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("reading '{}'", from.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let (from2, to2) = (entry.path(), to.join(entry.file_name()));
        let kind = entry
            .file_type()
            .with_context(|| format!("reading '{}'", from2.display()))?;
        if kind.is_dir() {
            copy_template(&from2, &to2, written)?;
        } else if kind.is_file() {
            let contents =
                std::fs::read(&from2).with_context(|| format!("reading '{}'", from2.display()))?;
            match std::fs::read(&to2) {
                Ok(there) if there != contents => {
                    bail!("refusing to overwrite existing file '{}'", to2.display())
                }
                Ok(_) => {}
                Err(_) => std::fs::write(&to2, &contents)
                    .with_context(|| format!("writing '{}'", to2.display()))?,
            }
        } else if kind.is_symlink() {
            let target = std::fs::read_link(&from2)
                .with_context(|| format!("reading '{}'", from2.display()))?;
            match std::fs::read_link(&to2) {
                Ok(there) if there != target => {
                    bail!("refusing to overwrite existing symlink '{}'", to2.display())
                }
                Ok(_) => {}
                Err(_) => std::os::unix::fs::symlink(&target, &to2)
                    .with_context(|| format!("creating '{}'", to2.display()))?,
            }
        } else {
            bail!("file '{}' has unsupported type", from2.display());
        }
        let shown = to2.to_string_lossy().into_owned();
        crate::logger::line(crate::logger::NOTICE, &format!("wrote: {shown}"));
        written.push(shown);
    }
    Ok(())
}
