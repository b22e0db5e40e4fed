//! `nix run` and `nix shell`, as CppNix 2.8's:
//! - `nix shell INSTALLABLES... [-c CMD ARGS...]`: the installables built, their outputs'
//!   `bin` directories (and those of the packages their
//!   `nix-support/propagated-user-env-packages` name) put before `PATH`, and the command
//!   (`$SHELL`, or `bash`) run in their place;
//! - `nix run INSTALLABLE [ARGS...]`: an app (`{ type = "app"; program = ...; }`, what its
//!   program's string context names built) or a derivation (built; the program is
//!   `bin/` + `meta.mainProgram`, `pname` or the name without its version) run with the
//!   arguments. A flake installable is looked up among the apps first.
//!
//! A store kept elsewhere on disk (`--store /some/root`) is mounted at its store directory
//! in a mount namespace of the program's own (a user namespace too when not root), as
//! CppNix does, so that the paths the program was built with are there.

use anyhow::{bail, Context, Result};
use clap::Args;
use firn_build::DerivedPath;
use firn_store::LocalStore;

use crate::cmd::build::{resolve_installables, InstallableArgs, SourceArgs};
use crate::context::Ctx;
use crate::realise::{built_outputs, realise, BuildFlags};

#[derive(Args, Debug)]
pub struct ShellArgs {
    #[command(flatten)]
    inst: InstallableArgs,
    /// The command to run, and its arguments (default: `$SHELL`).
    #[arg(short = 'c', long = "command", num_args = 1.., allow_hyphen_values = true)]
    command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// The app or package to run (default `.`), then its arguments (after `--` if they
    /// look like options: before it, options are `nix run`'s, as in CppNix).
    args: Vec<String>,
}

/// `nix shell`.
pub fn shell(ctx: &Ctx, a: ShellArgs) -> Result<()> {
    let (wanted, store) = resolve_installables(ctx, &a.inst)?;
    build(ctx, &store, &wanted)?;
    let mut outputs = Vec::new();
    for p in &wanted {
        outputs.extend(built_outputs(&store, p)?.into_iter().map(|(_, p)| p));
    }
    // Each output's `bin`, and those of the packages it propagates, first in `PATH`.
    let sd = store.store_dir().clone();
    let mut path: Vec<String> = std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect();
    let mut done = std::collections::HashSet::new();
    let mut todo: std::collections::VecDeque<_> = outputs.into_iter().collect();
    while let Some(p) = todo.pop_front() {
        if !done.insert(p.clone()) {
            continue;
        }
        path.insert(0, format!("{}/bin", sd.display(&p)));
        let propagated = store
            .real_path(&p)
            .join("nix-support/propagated-user-env-packages");
        if let Ok(text) = std::fs::read_to_string(&propagated) {
            for word in text.split_whitespace() {
                todo.push_back(
                    sd.parse(word)
                        .with_context(|| format!("reading '{}'", propagated.display()))?,
                );
            }
        }
    }
    let command = match a.command.is_empty() {
        true => vec![std::env::var("SHELL").unwrap_or_else(|_| "bash".into())],
        false => a.command,
    };
    exec_in_store(&store, &command[0], &command[1..], Some(&path.join(":")))
}

/// `nix run`.
pub fn run(ctx: &Ctx, a: RunArgs) -> Result<()> {
    let mut args = a.args.into_iter();
    let installable = args.next().unwrap_or_else(|| ".".into());
    let rest: Vec<String> = args.collect();
    let source = a.source.eval_source(&a.source.lock)?;
    let (program, wanted, store) = program_to_run(ctx, &installable, &source)?;
    build(ctx, &store, &wanted)?;
    exec_in_store(&store, &program, &rest, None)
}

/// Build what the command needs, with the settings the flakes' `nixConfig` set.
fn build(ctx: &Ctx, store: &LocalStore, wanted: &[DerivedPath]) -> Result<()> {
    realise(
        &ctx.with_flake_config(),
        store,
        wanted,
        &BuildFlags::default(),
    )
}

/// Where an installable is evaluated (`nix run`, `nix develop`): a flake installable, or
/// with `from`, an attribute path of that expression (true) or file; with the command's
/// `--impure`, `--arg`s, `-I`s and lock flags.
pub(crate) struct EvalSource<'a> {
    pub from: Option<(String, bool)>,
    pub impure: bool,
    pub common: &'a crate::cmd::eval::CommonEvalArgs,
    pub lock: &'a crate::cmd::flake::LockArgs,
}

/// Evaluate `installable` (see [`EvalSource`]; a flake's looked up as `want` says) on the
/// evaluation thread and take from its value what `then` takes; the store it was evaluated
/// in.
pub(crate) fn eval_installable<T: Send + 'static>(
    ctx: &Ctx,
    installable: &str,
    source: &EvalSource<'_>,
    want: firn_eval::flake::Wanted,
    then: impl FnOnce(
            &mut firn_eval::Evaluator,
            firn_eval::Value,
        ) -> Result<T, firn_eval::error::EvalError>
        + Send
        + 'static,
) -> Result<(T, LocalStore)> {
    let features = ctx.settings.eval_features();
    if source.from.is_none() {
        crate::cmd::flake::require_flakes(&features)?;
    }
    let store = ctx.open_store()?;
    let cwd = crate::paths::cwd()?;
    let input = match &source.from {
        Some((s, from_expr)) => Some(crate::legacy::nix_instantiate::read_input(
            s, *from_expr, &cwd,
        )?),
        None => None,
    };
    // As CppNix's `nix`: an expression and a flake are evaluated purely unless `--impure`.
    let pure = !source.impure && !matches!(source.from, Some((_, false)));
    let show_trace = ctx.settings.get_bool("show-trace");
    let options = source.lock.applied_options(&ctx.settings);
    let include = source.common.include.clone();
    let auto_args = source.common.auto_args();
    let installable = installable.to_string();
    let registry = crate::cmd::flake_registry(ctx);
    let (store, out) = crate::eval_thread::run(move || {
        let store = std::rc::Rc::new(store);
        let mut ev = firn_eval::Evaluator::with_features(features);
        ev.set_stack_size(firn_eval::eval::EVAL_THREAD_STACK);
        ev.store = firn_eval::store::EvalStore::with_store(store.clone(), true);
        ev.set_search_path(&include);
        ev.flake_registry = registry;
        if pure {
            ev.restrict(firn_eval::purity::Restriction::Pure);
        }
        let out = (|| -> Result<T, String> {
            let render = |e: firn_eval::error::EvalError| e.render(show_trace);
            let v = match input {
                None => {
                    firn_eval::flake::installable_as(&mut ev, &installable, &cwd, &options, want)
                        .map_err(render)?
                }
                Some(input) => {
                    let input = crate::legacy::nix_instantiate::resolve_input(&mut ev, input)?;
                    let e = ev
                        .parse(&input.text, &input.origin, &input.base_dir)
                        .map_err(render)?;
                    let top = ev.eval_top(e).map_err(render)?;
                    let args = crate::legacy::nix_instantiate::auto_args(&mut ev, &auto_args)
                        .map_err(render)?;
                    firn_eval::attr_path::find(&mut ev, top, &installable, &args).map_err(render)?
                }
            };
            then(&mut ev, v).map_err(render)
        })();
        ev.store = firn_eval::store::EvalStore::read_only(ev.store.dir.clone());
        std::mem::forget(ev);
        (std::rc::Rc::try_unwrap(store).ok(), out)
    })?;
    let out = out.map_err(|msg| anyhow::anyhow!("{msg}"))?;
    let store = match store {
        Some(s) => s,
        None => ctx.open_store()?,
    };
    Ok((out, store))
}

/// The program `nix run` runs for `installable` (see [`EvalSource`]), and what must be built
/// for it.
fn program_to_run(
    ctx: &Ctx,
    installable: &str,
    source: &EvalSource<'_>,
) -> Result<(String, Vec<DerivedPath>, LocalStore)> {
    let name = installable.to_string();
    let ((program, context), store) = eval_installable(
        ctx,
        installable,
        source,
        firn_eval::flake::Wanted::App,
        move |ev, v| program_of(ev, &name, v),
    )?;
    let sd = store.store_dir().clone();
    let mut wanted = Vec::new();
    for c in &context {
        let (path, output) =
            firn_eval::ifd::element(c).map_err(|e| anyhow::anyhow!("{}", e.msg))?;
        wanted.push(match output {
            Some(out) => DerivedPath::Built {
                drv: sd.parse(path)?,
                outputs: Some([out.to_string()].into()),
            },
            None => DerivedPath::Opaque(sd.parse(path)?),
        });
    }
    Ok((program, wanted, store))
}

/// The program of `v` (the value of `installable`) and the string context it needs built:
/// an app's `program`, or a package's `bin/MAIN` under its output path.
fn program_of(
    ev: &mut firn_eval::Evaluator,
    installable: &str,
    v: firn_eval::Value,
) -> Result<(String, Vec<String>), firn_eval::error::EvalError> {
    use firn_eval::error::EvalError;
    use firn_eval::Value;
    let Value::Attrs(set) = &v else {
        return Err(EvalError::new(format!(
            "installable '{installable}' is {} while a set was expected",
            v.type_name()
        )));
    };
    let get = |ev: &mut firn_eval::Evaluator, name: &str| -> Result<Option<Value>, EvalError> {
        match set.get(name) {
            Some(t) => Ok(Some(ev.force(&t.clone())?)),
            None => Ok(None),
        }
    };
    let ty = match get(ev, "type")? {
        Some(Value::String(s)) => s.s.to_string(),
        _ => String::new(),
    };
    let program = match ty.as_str() {
        "app" => {
            let p =
                get(ev, "program")?.ok_or_else(|| EvalError::new("attribute 'program' missing"))?;
            ev.coerce_to_string(&p, false, false)?
        }
        "derivation" => {
            let out =
                get(ev, "outPath")?.ok_or_else(|| EvalError::new("attribute 'outPath' missing"))?;
            let out = ev.coerce_to_string(&out, false, false)?;
            let main = main_program(ev, &v)?;
            firn_eval::value::NixString::with_context(
                format!("{}/bin/{main}", out.s),
                out.context.to_vec(),
            )
        }
        other => {
            return Err(EvalError::new(format!(
            "installable '{installable}' is neither an app nor a package (its type is '{other}')"
        )))
        }
    };
    let context = program.context.iter().map(|c| c.to_string()).collect();
    Ok((program.s.to_string(), context))
}

/// A derivation's main program: `meta.mainProgram`, else `pname`, else its name without the
/// version.
fn main_program(
    ev: &mut firn_eval::Evaluator,
    drv: &firn_eval::Value,
) -> Result<String, firn_eval::error::EvalError> {
    use firn_eval::Value;
    // The string at `name` of set `v`, if it is one.
    fn string_at(
        ev: &mut firn_eval::Evaluator,
        v: &Value,
        name: &str,
    ) -> Result<Option<String>, firn_eval::error::EvalError> {
        let Value::Attrs(set) = v else {
            return Ok(None);
        };
        Ok(match set.get(name) {
            Some(t) => match ev.force(&t.clone())? {
                Value::String(s) => Some(s.s.to_string()),
                _ => None,
            },
            None => None,
        })
    }
    if let Value::Attrs(set) = drv {
        if let Some(meta) = set.get("meta") {
            let meta = ev.force(&meta.clone())?;
            if let Some(main) = string_at(ev, &meta, "mainProgram")? {
                return Ok(main);
            }
        }
    }
    if let Some(pname) = string_at(ev, drv, "pname")? {
        return Ok(pname);
    }
    let name = string_at(ev, drv, "name")?.unwrap_or_default();
    Ok(firn_eval::builtins::drv_name(&name).0.to_string())
}

/// Run `program` with `args` in place of this process (with `PATH` set to `path` if given);
/// for a store kept elsewhere on disk, in a mount namespace where it is at its store
/// directory.
pub(crate) fn exec_in_store(
    store: &LocalStore,
    program: &str,
    args: &[String],
    path: Option<&str>,
) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let logical = store.store_dir().to_string();
    let real = store.layout().real_store_dir.clone();
    if real != std::path::Path::new(&logical) {
        mount_store(&real, &logical)?;
    }
    let mut c = std::process::Command::new(program);
    c.args(args).arg0(program);
    if let Some(p) = path {
        c.env("PATH", p);
    }
    let e = c.exec();
    bail!("unable to execute '{program}': {e}")
}

/// Give this process a mount namespace of its own in which `real` is mounted at `logical`
/// (as root; otherwise in a user namespace of its own too, mapping this user to itself).
fn mount_store(real: &std::path::Path, logical: &str) -> Result<()> {
    use std::ffi::CString;
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let flags = match uid {
        0 => libc::CLONE_NEWNS,
        _ => libc::CLONE_NEWNS | libc::CLONE_NEWUSER,
    };
    // SAFETY: unshare changes only this process's namespaces (firn is single-threaded here:
    // the evaluation thread has ended).
    if unsafe { libc::unshare(flags) } != 0 {
        bail!(
            "setting up a mount namespace to run a program from the store at '{}': {}",
            real.display(),
            std::io::Error::last_os_error()
        );
    }
    if uid != 0 {
        std::fs::write("/proc/self/setgroups", "deny").context("writing setgroups")?;
        std::fs::write("/proc/self/uid_map", format!("{uid} {uid} 1"))
            .context("writing uid_map")?;
        std::fs::write("/proc/self/gid_map", format!("{gid} {gid} 1"))
            .context("writing gid_map")?;
    }
    if !std::path::Path::new(logical).is_dir() {
        bail!(
            "cannot run a program from the store at '{}': '{logical}' does not exist here to mount it on",
            real.display()
        );
    }
    let c = |s: &str| CString::new(s).context("a path with a NUL byte");
    let root = c("/")?;
    let src = c(&real.to_string_lossy())?;
    let dst = c(logical)?;
    let none = c("none")?;
    // SAFETY: plain mount(2) calls with NUL-terminated paths that outlive them.
    unsafe {
        if libc::mount(
            none.as_ptr(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
            || libc::mount(
                src.as_ptr(),
                dst.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND | libc::MS_REC,
                std::ptr::null(),
            ) != 0
        {
            bail!(
                "mounting the store at '{}' on '{logical}': {}",
                real.display(),
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(())
}
