//! `nix flake check [FLAKE]`, as CppNix 2.8's: the flake's outputs evaluated and checked by
//! kind (`checks`, `packages`, `devShells`, `defaultPackage`, `devShell` and Hydra jobs are
//! derivations; systems are `ARCH-OS`; overlays take `final` and `prev`; NixOS modules are
//! open; NixOS configurations have a derivation at `config.system.build.toplevel`;
//! templates have a store `path` and a `description`; bundlers are functions), deprecated
//! and unknown outputs warned about, then the checks of this system built (unless
//! `--no-build`). The first error ends the command; with `--keep-going` each is shown as
//! ignored and the command fails at the end.
//!
//! As in CppNix, `hydraJobs` is checked first, without import from derivation unless the user
//! set `allow-import-from-derivation`; the other outputs follow in name order (2.8's order is
//! that of its symbol table).

use anyhow::{bail, Result};
use clap::Args;
use firn_eval::error::{EvalError, FramePrint};
use firn_eval::value::{AttrSet, Thunk, Value};
use firn_eval::Evaluator;
use std::rc::Rc;

use crate::context::Ctx;
use crate::realise::{realise, BuildFlags};

#[derive(Args, Debug)]
pub struct CheckArgs {
    #[command(flatten)]
    lock: super::flake::LockArgs,
    /// Do not build checks.
    #[arg(long)]
    no_build: bool,
    /// Go on after an error (each is shown as ignored), and with other builds after one
    /// failed.
    #[arg(short = 'k', long)]
    keep_going: bool,
    /// Print full build logs on stderr.
    #[arg(short = 'L', long)]
    print_build_logs: bool,
    /// Allow access to mutable paths and repositories.
    #[arg(long)]
    impure: bool,
    /// The flake reference (default `.`).
    flake: Option<String>,
}

/// `nix flake check`.
pub fn check(ctx: &Ctx, a: CheckArgs) -> Result<()> {
    let features = ctx.settings.eval_features();
    super::flake::require_flakes(&features)?;
    let store = ctx.open_store()?;
    let cwd = crate::paths::cwd()?;
    let reference = a.flake.clone().unwrap_or_else(|| ".".into());
    let options = a.lock.applied_options(&ctx.settings);
    let keep_going = a.keep_going || ctx.settings.get_bool("keep-going");
    let show_trace = ctx.settings.get_bool("show-trace");
    let system = ctx.settings.get("system").unwrap_or_default().to_string();
    let registry = super::flake_registry(ctx);
    let build = !a.no_build;
    let pure = !a.impure;
    let sd = store.store_dir().clone();
    let (store, out) = crate::eval_thread::run(move || {
        let store = Rc::new(store);
        let mut ev = Evaluator::with_features(features);
        ev.set_stack_size(firn_eval::eval::EVAL_THREAD_STACK);
        // Without builds, the evaluation writes no derivations (CppNix's read-only mode).
        ev.store = firn_eval::store::EvalStore::with_store(store.clone(), build);
        ev.flake_registry = registry;
        if pure {
            ev.restrict(firn_eval::purity::Restriction::Pure);
        }
        if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            firn_eval::term::write_stderr_line("evaluating flake...");
        }
        let mut c = Checker {
            ev: &mut ev,
            keep_going,
            show_trace,
            errors: false,
            system,
            checks: Vec::new(),
        };
        let out = firn_eval::flake::outputs(c.ev, &reference, &cwd, &options)
            .and_then(|(v, _)| c.outputs(v))
            .map(|()| (c.checks, c.errors))
            .map_err(|e| e.render(show_trace));
        ev.store = firn_eval::store::EvalStore::read_only(ev.store.dir.clone());
        std::mem::forget(ev);
        (Rc::try_unwrap(store).ok(), out)
    })?;
    let (checks, errors) = out.map_err(|msg| anyhow::anyhow!("{msg}"))?;
    if build && !checks.is_empty() {
        let store = match store {
            Some(s) => s,
            None => ctx.open_store()?,
        };
        if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            firn_eval::term::write_stderr_line("running flake checks...");
        }
        let mut wanted = Vec::new();
        for drv in &checks {
            wanted.push(firn_build::DerivedPath::Built {
                drv: sd.parse(drv)?,
                outputs: None,
            });
        }
        let flags = BuildFlags {
            keep_going,
            print_build_logs: a.print_build_logs,
            build_paths_errors: true,
            ..BuildFlags::default()
        };
        realise(&ctx.with_flake_config(), &store, &wanted, &flags)?;
    }
    if errors {
        bail!("some errors were encountered during the evaluation");
    }
    Ok(())
}

type EResult<T> = Result<T, EvalError>;

/// The walk over a flake's outputs.
struct Checker<'a> {
    ev: &'a mut Evaluator,
    keep_going: bool,
    show_trace: bool,
    /// Whether an error was passed over (`--keep-going`).
    errors: bool,
    /// This machine's system type: its checks are built.
    system: String,
    /// The derivations of this system's checks.
    checks: Vec<String>,
}

impl Checker<'_> {
    /// An error of a check: shown and passed over with `--keep-going`, else the command's.
    fn report(&mut self, e: EvalError) -> EResult<()> {
        if !self.keep_going {
            return Err(e);
        }
        self.errors = true;
        firn_eval::term::write_stderr_line(&format!(
            "error (ignored): error: {}",
            e.render(self.show_trace)
        ));
        Ok(())
    }

    /// `e` with the frame `text` at offset `at` (when known) around it.
    fn traced(&self, mut e: EvalError, text: String, at: Option<u32>) -> EvalError {
        let frame = match at {
            Some(offset) => self.ev.frame(text, offset),
            None => text,
        };
        e.push_frame(frame, FramePrint::Default);
        e
    }

    /// Run `check`; its error with frame `text` at `at`, reported.
    fn guarded(
        &mut self,
        text: impl FnOnce() -> String,
        at: Option<u32>,
        check: impl FnOnce(&mut Self) -> EResult<()>,
    ) -> EResult<()> {
        match check(self) {
            Ok(()) => Ok(()),
            Err(e) => {
                let e = self.traced(e, text(), at);
                self.report(e)
            }
        }
    }

    /// Where attribute `name` of `set` was defined.
    fn pos(&self, set: &AttrSet, name: &str) -> Option<u32> {
        self.ev.positions.attr_offset(set, name, &self.ev.interner)
    }

    fn force(&mut self, t: &Thunk) -> EResult<Value> {
        self.ev.force(t)
    }

    /// `v` as a set, or CppNix's type error (at `at`, where `v` was defined).
    fn attrs(&mut self, v: &Value, at: Option<u32>) -> EResult<Rc<AttrSet>> {
        match v {
            Value::Attrs(s) => Ok(s.clone()),
            other => {
                let mut e = self.ev.type_error("a set", other);
                if e.at.is_none() {
                    e.at = at.and_then(|offset| self.ev.positions.render(offset));
                }
                Err(e)
            }
        }
    }

    /// The attributes of `v`, a set ([`Self::attrs`]), with where each was defined.
    fn members(
        &mut self,
        v: &Value,
        at: Option<u32>,
    ) -> EResult<Vec<(String, Thunk, Option<u32>)>> {
        let set = self.attrs(v, at)?;
        Ok(self.entries(&set))
    }

    /// The attributes of `set` in order, each with where it was defined.
    fn entries(&self, set: &Rc<AttrSet>) -> Vec<(String, Thunk, Option<u32>)> {
        set.iter()
            .map(|(k, t)| (k.to_string(), t.clone(), self.pos(set, k)))
            .collect()
    }

    /// Every output, `hydraJobs` first.
    fn outputs(&mut self, v: Value) -> EResult<()> {
        let mut outputs = self.members(&v, None)?;
        outputs.sort_by_key(|(name, _, _)| name != "hydraJobs");
        for (name, t, at) in outputs {
            self.guarded(
                || format!("while checking flake output '{name}'"),
                at,
                |c| c.output(&name, &t, at),
            )?;
        }
        Ok(())
    }

    fn output(&mut self, name: &str, t: &Thunk, at: Option<u32>) -> EResult<()> {
        // As CppNix: no import from derivation in Hydra jobs unless the user allows it.
        crate::eval_builds::set_ifd_by_default(name != "hydraJobs");
        let v = self.force(t)?;
        let replacement = match name {
            "defaultPackage" => "packages.<system>.default",
            "defaultApps" => "apps.<system>.default",
            "defaultTemplate" => "templates.default",
            "defaultBundler" => "bundlers.<system>.default",
            "overlay" => "overlays.default",
            "devShell" => "devShells.<system>.default",
            "nixosModule" => "nixosModules.default",
            _ => "",
        };
        if !replacement.is_empty() {
            firn_eval::term::write_stderr_line(&format!(
                "warning: flake output attribute '{name}' is deprecated; use '{replacement}' instead"
            ));
        }
        match name {
            "checks" | "packages" | "devShells" | "apps" | "bundlers" => {
                for (system, t, at) in self.members(&v, at)? {
                    self.system_name(&system, at)?;
                    let per_system = self.force(&t)?;
                    for (attr, t, at) in self.members(&per_system, at)? {
                        let path = format!("{name}.{system}.{attr}");
                        match name {
                            "checks" => {
                                let drv = self.derivation(&path, &t, at)?;
                                if let (Some(drv), true) = (drv, system == self.system) {
                                    self.checks.push(drv);
                                }
                            }
                            "packages" | "devShells" => {
                                self.derivation(&path, &t, at)?;
                            }
                            "bundlers" => self.bundler(&path, &t, at)?,
                            // Apps are not checked (CppNix 2.8's check is disabled).
                            _ => {}
                        }
                    }
                }
            }
            "defaultPackage" | "devShell" | "formatter" | "defaultApp" | "defaultBundler" => {
                for (system, t, at) in self.members(&v, at)? {
                    self.system_name(&system, at)?;
                    let path = format!("{name}.{system}");
                    match name {
                        "defaultPackage" | "devShell" => {
                            self.derivation(&path, &t, at)?;
                        }
                        "defaultBundler" => self.bundler(&path, &t, at)?,
                        // A formatter or an app: not checked, as in CppNix 2.8.
                        _ => {}
                    }
                }
            }
            "legacyPackages" => {
                for (system, _, at) in self.members(&v, at)? {
                    self.system_name(&system, at)?;
                }
            }
            "overlay" => self.overlay(name, t, at)?,
            "nixosModule" => self.module(name, t, at)?,
            "defaultTemplate" => self.template(name, t, at)?,
            "hydraJobs" => self.hydra_jobs(name, t, at)?,
            "overlays" | "nixosModules" | "nixosConfigurations" | "templates" => {
                for (attr, t, at) in self.members(&v, at)? {
                    let path = format!("{name}.{attr}");
                    match name {
                        "overlays" => self.overlay(&path, &t, at)?,
                        "nixosModules" => self.module(&path, &t, at)?,
                        "nixosConfigurations" => self.nixos_configuration(&path, &t, at)?,
                        _ => self.template(&path, &t, at)?,
                    }
                }
            }
            _ => firn_eval::term::write_stderr_line(&format!(
                "warning: unknown flake output '{name}'"
            )),
        }
        Ok(())
    }

    /// A system type must be `ARCH-OS` (have a dash).
    fn system_name(&mut self, system: &str, at: Option<u32>) -> EResult<()> {
        if system.contains('-') {
            return Ok(());
        }
        let shown = match at {
            Some(offset) => self.ev.positions.shown(offset),
            None => "undefined position".to_string(),
        };
        self.report(EvalError::new(format!(
            "'{system}' is not a valid system type, at {shown}"
        )))
    }

    /// A derivation's path, if `t` is one that evaluates (else the error is reported).
    fn derivation(&mut self, path: &str, t: &Thunk, at: Option<u32>) -> EResult<Option<String>> {
        let mut drv = None;
        self.guarded(
            || format!("while checking the derivation '{path}'"),
            at,
            |c| {
                let v = c.force(t)?;
                let set = match &v {
                    Value::Attrs(set) if c.ev.is_derivation(set)? => set.clone(),
                    _ => {
                        return Err(EvalError::new(format!(
                            "flake attribute '{path}' is not a derivation"
                        )))
                    }
                };
                match set.get("name") {
                    Some(t) => match c.force(&t.clone())? {
                        Value::String(_) => {}
                        other => return Err(c.ev.type_error("a string", &other)),
                    },
                    None => return Err(EvalError::new("derivation name missing")),
                }
                if let Some(t) = set.get("drvPath") {
                    let v = c.force(&t.clone())?;
                    drv = Some(c.ev.coerce_to_string(&v, false, false)?.s.to_string());
                }
                Ok(())
            },
        )?;
        Ok(drv)
    }

    /// An overlay is `final: prev: ...` (a name may also be `_` or have a `_` before it).
    fn overlay(&mut self, path: &str, t: &Thunk, at: Option<u32>) -> EResult<()> {
        use firn_syntax::ast::ExprKind;
        self.guarded(
            || format!("while checking the overlay '{path}'"),
            at,
            |c| {
                let v = c.force(t)?;
                let named = |c: &Self, arg: &Option<firn_syntax::ast::Symbol>, want: &str| {
                    arg.is_some_and(|s| arg_has_name(c.ev.interner.name(s), want))
                };
                let outer = match &v {
                    Value::Lambda(l) => match &l.expr.kind {
                        ExprKind::Lambda {
                            arg,
                            formals: None,
                            body,
                        } if named(c, arg, "final") => Some(body),
                        _ => None,
                    },
                    _ => None,
                };
                let Some(body) = outer else {
                    return Err(EvalError::new(
                        "overlay does not take an argument named 'final'",
                    ));
                };
                match &body.kind {
                    ExprKind::Lambda {
                        arg, formals: None, ..
                    } if named(c, arg, "prev") => Ok(()),
                    _ => Err(EvalError::new(
                        "overlay does not take an argument named 'prev'",
                    )),
                }
            },
        )
    }

    /// A NixOS module is a function of an open set, or a set (each attribute evaluates).
    fn module(&mut self, path: &str, t: &Thunk, at: Option<u32>) -> EResult<()> {
        use firn_syntax::ast::ExprKind;
        self.guarded(
            || format!("while checking the NixOS module '{path}'"),
            at,
            |c| match c.force(t)? {
                Value::Lambda(l) => match &l.expr.kind {
                    ExprKind::Lambda {
                        formals: Some(f), ..
                    } if f.ellipsis => Ok(()),
                    _ => Err(EvalError::new(
                        "module must match an open attribute set ('{ config, ... }')",
                    )),
                },
                Value::Attrs(set) => {
                    for (name, t, at) in c.entries(&set) {
                        if let Err(e) = c.force(&t) {
                            return Err(c.traced(
                                e,
                                format!("while evaluating the option '{name}'"),
                                at,
                            ));
                        }
                    }
                    Ok(())
                }
                _ => Err(EvalError::new(
                    "module must be a function or an attribute set",
                )),
            },
        )
    }

    /// A NixOS configuration has a derivation at `config.system.build.toplevel`.
    fn nixos_configuration(&mut self, path: &str, t: &Thunk, at: Option<u32>) -> EResult<()> {
        self.guarded(
            || format!("while checking the NixOS configuration '{path}'"),
            at,
            |c| {
                let v = c.force(t)?;
                let top = firn_eval::attr_path::find(
                    c.ev,
                    v,
                    "config.system.build.toplevel",
                    &Default::default(),
                )?;
                let set = c.attrs(&top, at)?;
                match c.ev.is_derivation(&set)? {
                    true => Ok(()),
                    false => Err(EvalError::new(
                        "attribute 'config.system.build.toplevel' is not a derivation",
                    )),
                }
            },
        )
    }

    /// A template has a `path` in the store and a `description`, and nothing but those and
    /// `welcomeText`.
    fn template(&mut self, path: &str, t: &Thunk, at: Option<u32>) -> EResult<()> {
        self.guarded(
            || format!("while checking the template '{path}'"),
            at,
            |c| {
                let v = c.force(t)?;
                let set = c.attrs(&v, at)?;
                let Some(p) = set.get("path") else {
                    return Err(EvalError::new(format!(
                        "template '{path}' lacks attribute 'path'"
                    )));
                };
                let p = c.force(&p.clone())?;
                let s = c.ev.coerce_to_string(&p, false, false)?;
                let dir = c.ev.store.dir.to_string();
                if !s.s.starts_with('/') {
                    return Err(EvalError::new(format!(
                        "string '{}' doesn't represent an absolute path",
                        s.s
                    )));
                }
                if !s.s.strip_prefix(&*dir).is_some_and(|r| r.starts_with('/')) {
                    return Err(EvalError::new(format!(
                        "template '{path}' has a bad 'path' attribute"
                    )));
                }
                match set.get("description") {
                    Some(d) => match c.force(&d.clone())? {
                        Value::String(s) if s.context.is_empty() => {}
                        Value::String(s) => {
                            return Err(EvalError::new(format!(
                                "the string '{}' is not allowed to refer to a store path (such as '{}')",
                                s.s,
                                s.context.first().map(|c| c.to_string()).unwrap_or_default()
                            )))
                        }
                        other => return Err(c.ev.type_error("a string", &other)),
                    },
                    None => {
                        return Err(EvalError::new(format!(
                            "template '{path}' lacks attribute 'description'"
                        )))
                    }
                }
                for name in set.keys() {
                    if !matches!(&**name, "path" | "description" | "welcomeText") {
                        return Err(EvalError::new(format!(
                            "template '{path}' has unsupported attribute '{name}'"
                        )));
                    }
                }
                Ok(())
            },
        )
    }

    /// A bundler is a function.
    fn bundler(&mut self, path: &str, t: &Thunk, at: Option<u32>) -> EResult<()> {
        self.guarded(
            || format!("while checking the bundler '{path}'"),
            at,
            |c| match c.force(t)? {
                Value::Lambda(_) => Ok(()),
                _ => Err(EvalError::new("bundler must be a function")),
            },
        )
    }

    /// Hydra jobs: a tree of sets (not a derivation at the top) with derivations as leaves.
    fn hydra_jobs(&mut self, path: &str, t: &Thunk, at: Option<u32>) -> EResult<()> {
        self.guarded(
            || format!("while checking the Hydra jobset '{path}'"),
            at,
            |c| {
                let v = c.force(t)?;
                let set = c.attrs(&v, at)?;
                if c.ev.is_derivation(&set)? {
                    return Err(EvalError::new(
                        "jobset should not be a derivation at top-level",
                    ));
                }
                for (name, t, at) in c.entries(&set) {
                    let v = c.force(&t)?;
                    let job = c.attrs(&v, at)?;
                    let path = format!("{path}.{name}");
                    if c.ev.is_derivation(&job)? {
                        c.derivation(&path, &t, at)?;
                    } else {
                        c.hydra_jobs(&path, &t, at)?;
                    }
                }
                Ok(())
            },
        )
    }
}

/// Whether a function's argument `arg` stands for `expected`: that name, `_`, or the name
/// after a `_`.
fn arg_has_name(arg: &str, expected: &str) -> bool {
    arg == expected || arg == "_" || arg.strip_prefix('_') == Some(expected)
}

#[cfg(test)]
mod tests {
    use super::arg_has_name;

    #[test]
    fn overlay_argument_names() {
        for (arg, ok) in [
            ("final", true),
            ("_", true),
            ("_final", true),
            ("self", false),
            ("__final", false),
            ("finale", false),
        ] {
            assert_eq!(arg_has_name(arg, "final"), ok, "{arg}");
        }
    }
}
