//! `nix eval`: evaluate an expression (`--expr`) or a file (`--file`), optionally select an
//! attribute path and apply a function, and print the result as Nix, `--json` or `--raw`.

use anyhow::{bail, Result};
use clap::Args;

/// What `nix eval` evaluates: a flake installable, or an expression or file (whose value
/// the installable is an attribute path of).
enum Source {
    Flake(String),
    Input(crate::legacy::nix_instantiate::Input),
}

/// The evaluation options `nix eval`, `nix build` and `nix repl` share (CppNix's
/// `MixEvalArgs`).
#[derive(Args, Debug, Clone, Default)]
pub struct CommonEvalArgs {
    /// `--arg NAME EXPR`: functions taking a set (a file's value, the steps of an attribute
    /// path) get NAME.
    #[arg(long, num_args = 2, value_names = ["NAME", "EXPR"])]
    pub arg: Vec<String>,
    /// `--argstr NAME STRING`: as `--arg` with a string.
    #[arg(long, num_args = 2, value_names = ["NAME", "STRING"])]
    pub argstr: Vec<String>,
    /// Add a path to the search path (`<nixpkgs>`).
    #[arg(short = 'I', long = "include")]
    pub include: Vec<String>,
}

impl CommonEvalArgs {
    /// The `--arg`s and `--argstr`s as `(name, value, is a string)`.
    pub fn auto_args(&self) -> Vec<(String, String, bool)> {
        let args = self
            .arg
            .chunks(2)
            .map(|p| (p[0].clone(), p[1].clone(), false));
        let strs = self
            .argstr
            .chunks(2)
            .map(|p| (p[0].clone(), p[1].clone(), true));
        args.chain(strs).collect()
    }
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Interpret the installable as this Nix expression.
    #[arg(long)]
    expr: Option<String>,
    /// Allow access to mutable paths and repositories: evaluate an `--expr` impurely.
    #[arg(long)]
    impure: bool,
    /// Interpret the installable as an attribute path of the value of this file (`-` for
    /// standard input, `<name>` in the search path, or the URL of a tarball).
    #[arg(short = 'f', long)]
    file: Option<String>,
    #[command(flatten)]
    common: CommonEvalArgs,
    /// Apply the function to the result.
    #[arg(long)]
    apply: Option<String>,
    /// Print strings without quotes or escapes.
    #[arg(long)]
    raw: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// Do not write derivations (and sources) to the store: only compute their paths.
    #[arg(long)]
    read_only: bool,
    /// Write the result to this path: a string as a file, a set as a directory of them.
    #[arg(long)]
    write_to: Option<String>,
    #[command(flatten)]
    lock: crate::cmd::flake::LockArgs,
    /// An attribute path (with --file or --expr), or else a flake installable
    /// (`FLAKEREF#ATTRPATH`; `.` when not given).
    installable: Option<String>,
}

/// `nix eval`; `features` are the experimental features on, `max_call_depth` and `lints` the settings of those names,
/// `restriction` what the `pure-eval` and `restrict-eval` settings ask for (with the
/// `allowed-uris` of restricted evaluation), `flake_registry` that setting, `store` the store
/// written to (None: paths are computed, nothing is written).
pub fn run(a: EvalArgs, ctx: &crate::context::Ctx) -> Result<()> {
    let show_trace = ctx.settings.get_bool("show-trace");
    let (features, flake_registry) = (ctx.settings.eval_features(), super::flake_registry(ctx));
    let max_call_depth = ctx.settings.max_call_depth()?;
    let lints = ctx.settings.lints()?;
    let restriction = crate::legacy::nix_instantiate::restriction(ctx);
    let allowed_uris = ctx.settings.get_list("allowed-uris");
    let store = super::eval_store(ctx);
    let cwd = crate::paths::cwd()?;
    let source = match (&a.expr, &a.file) {
        (Some(e), None) => {
            Source::Input(crate::legacy::nix_instantiate::read_input(e, true, &cwd)?)
        }
        (None, Some(f)) => {
            Source::Input(crate::legacy::nix_instantiate::read_input(f, false, &cwd)?)
        }
        (Some(_), Some(_)) => bail!("'--expr' and '--file' cannot be used together"),
        // Neither: a flake installable.
        (None, None) => {
            crate::cmd::flake::require_flakes(&features)?;
            Source::Flake(a.installable.clone().unwrap_or_else(|| ".".into()))
        }
    };
    // As CppNix's `nix`, an expression and a flake are evaluated purely unless `--impure`
    // (a file never is).
    let restriction = match a.file.is_none() && !a.impure {
        true => firn_eval::purity::Restriction::Pure,
        false => restriction,
    };
    if let Some(dir) = &a.write_to {
        if std::fs::symlink_metadata(dir).is_ok() {
            bail!("path '{dir}' already exists");
        }
    }
    let auto_args = a.common.auto_args();
    let store = store.filter(|_| !a.read_only);
    let lock_options = a.lock.applied_options(&ctx.settings);
    let attr = a.installable.clone().unwrap_or_default();
    let (apply, raw, json, include, write_to) = (
        a.apply.clone(),
        a.raw,
        a.json,
        a.common.include.clone(),
        a.write_to.clone(),
    );
    let out = crate::eval_thread::run(move || -> Result<String, String> {
        use firn_eval::value::{Thunk, Value};
        let mut ev = firn_eval::Evaluator::with_features(features);
        ev.set_stack_size(firn_eval::eval::EVAL_THREAD_STACK);
        ev.max_call_depth = max_call_depth;
        ev.lints = lints;
        // As CppNix's `nix eval` (not read-only): derivations and sources are written to the
        // store, so a `drvPath` printed can be built next.
        if let Some(store) = store {
            ev.store = firn_eval::store::EvalStore::with_store(std::rc::Rc::new(store), true);
        }
        ev.set_search_path(&include);
        ev.restrict(restriction);
        ev.allowed_uris = allowed_uris;
        ev.flake_registry = flake_registry;
        let body = |ev: &mut firn_eval::Evaluator| -> Result<String, String> {
            let render = |e: firn_eval::error::EvalError| e.render(show_trace);
            let mut v = match source {
                Source::Flake(installable) => {
                    firn_eval::flake::installable(ev, &installable, &cwd, &lock_options)
                        .map_err(render)?
                }
                Source::Input(input) => {
                    let input = crate::legacy::nix_instantiate::resolve_input(ev, input)?;
                    let e = ev
                        .parse(&input.text, &input.origin, &input.base_dir)
                        .map_err(render)?;
                    let top = ev.eval_top(e).map_err(render)?;
                    let args = crate::legacy::nix_instantiate::auto_args(ev, &auto_args)
                        .map_err(render)?;
                    firn_eval::attr_path::find(ev, top, &attr, &args).map_err(render)?
                }
            };
            if let Some(f) = apply {
                let fe = ev.parse(&f, "«string»", &cwd).map_err(render)?;
                let fv = ev.eval_top(fe).map_err(render)?;
                v = ev.call(fv, Thunk::value(v)).map_err(render)?;
            }
            if let Some(dir) = write_to {
                write_value(ev, &v, None, std::path::Path::new(&dir)).map_err(render)?;
                return Ok(String::new());
            }
            if json {
                let mut s = String::new();
                firn_eval::builtins_more::to_json(ev, &v, &mut s, &mut Vec::new(), true)
                    .map_err(render)?;
                return Ok(s);
            }
            if raw {
                return match &v {
                    Value::String(s) => Ok(s.s.to_string()),
                    other => ev
                        .coerce_to_string(other, false, true)
                        .map(|s| s.s.to_string())
                        .map_err(render),
                };
            }
            firn_eval::builtins::deep_force(ev, &v).map_err(render)?;
            firn_eval::print::print_value(ev, &v, true).map_err(render)
        };
        let out = body(&mut ev);
        // The store is closed (its staging directory removed); the evaluator's values are left
        // to the process's end (see eval_thread).
        ev.store = firn_eval::store::EvalStore::read_only(ev.store.dir.clone());
        std::mem::forget(ev);
        out
    })?;
    match out {
        Ok(_) if a.write_to.is_some() => Ok(()),
        Ok(s) => Ok(firn_eval::term::write_stdout(&s, !raw)?),
        Err(msg) => bail!("{msg}"),
    }
}

/// `--write-to`: `v` written at `path`, a string as a file, a set as a directory with an
/// entry for each attribute (CppNix's messages for anything else); `at` is the offset of
/// `v`'s definition, if known.
fn write_value(
    ev: &mut firn_eval::Evaluator,
    v: &firn_eval::Value,
    at: Option<u32>,
    path: &std::path::Path,
) -> Result<(), firn_eval::error::EvalError> {
    use firn_eval::error::{EvalError, FramePrint};
    use firn_eval::Value;
    match v {
        Value::String(s) => std::fs::write(path, s.s.as_bytes())
            .map_err(|e| EvalError::new(format!("writing to file '{}': {e}", path.display()))),
        Value::Attrs(set) => {
            std::fs::create_dir(path).map_err(|e| {
                EvalError::new(format!("creating directory '{}': {e}", path.display()))
            })?;
            for (name, t) in set.iter() {
                let offset = ev.positions.attr_offset(set, name, &ev.interner);
                let frame = |ev: &firn_eval::Evaluator, mut e: EvalError| {
                    let text = format!("while evaluating the attribute '{name}'");
                    let text = match offset {
                        Some(o) => ev.frame(text, o),
                        None => text,
                    };
                    e.push_frame(text, FramePrint::Default);
                    e
                };
                if &**name == "." || &**name == ".." {
                    let e = EvalError::new(format!("invalid file name '{name}'"));
                    return Err(frame(ev, e));
                }
                let r = ev
                    .force(&t.clone())
                    .and_then(|v| write_value(ev, &v, offset, &path.join(&**name)));
                r.map_err(|e| frame(ev, e))?;
            }
            Ok(())
        }
        _ => {
            let pos = match at {
                Some(o) => ev.positions.shown(o),
                None => "undefined position".to_string(),
            };
            Err(EvalError::new(format!(
                "value at '{pos}' is not a string or an attribute set"
            )))
        }
    }
}
