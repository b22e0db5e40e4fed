//! `nix eval`: evaluate an expression (`--expr`) or a file (`--file`), optionally select an
//! attribute path and apply a function, and print the result as Nix, `--json` or `--raw`.

use anyhow::{bail, Context, Result};
use clap::Args;

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Interpret the installable as this Nix expression.
    #[arg(long)]
    expr: Option<String>,
    /// Allow access to mutable paths and repositories: evaluate an `--expr` impurely.
    #[arg(long)]
    impure: bool,
    /// Interpret the installable as an attribute path of the value of this file.
    #[arg(short = 'f', long)]
    file: Option<String>,
    /// Apply the function to the result.
    #[arg(long)]
    apply: Option<String>,
    /// Print strings without quotes or escapes.
    #[arg(long)]
    raw: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// An attribute path (with --file or --expr).
    installable: Option<String>,
}

/// `nix eval`; `features` are the experimental features on, `max_call_depth` and `lints` the settings of those names,
/// `restriction` what the `pure-eval` and `restrict-eval` settings ask for (with the
/// `allowed-uris` of restricted evaluation), `store` the store
/// written to (None: paths are computed, nothing is written).
pub fn run(
    a: EvalArgs,
    show_trace: bool,
    features: firn_eval::Features,
    max_call_depth: usize,
    lints: firn_syntax::Lints,
    (restriction, allowed_uris): (firn_eval::purity::Restriction, Vec<String>),
    store: Option<firn_store::LocalStore>,
) -> Result<()> {
    // As CppNix's `nix`: an expression is evaluated purely unless `--impure` (a file never
    // is).
    let restriction = if a.expr.is_some() && !a.impure {
        firn_eval::purity::Restriction::Pure
    } else {
        restriction
    };
    let cwd = std::env::current_dir()
        .context("getting the current directory")?
        .to_string_lossy()
        .into_owned();
    let (text, origin, base) = match (&a.expr, &a.file) {
        (Some(e), None) => (e.clone(), "«string»".to_string(), cwd),
        (None, Some(f)) => {
            let mut path = crate::paths::absolute(f)?;
            if std::path::Path::new(&path).is_dir() {
                path = format!("{path}/default.nix");
            }
            let text = std::fs::read(&path)
                .map(firn_syntax::bytes::decode)
                .with_context(|| format!("reading file '{path}'"))?;
            let dir = std::path::Path::new(&path)
                .parent()
                .map(|d| d.to_string_lossy().into_owned())
                .unwrap_or_else(|| "/".into());
            (text, path, dir)
        }
        (Some(_), Some(_)) => bail!("'--expr' and '--file' cannot be used together"),
        (None, None) => bail!(
            "'nix eval' of a flake installable is not implemented by firn yet; use '--expr' or '--file'"
        ),
    };
    let attr = a.installable.clone().unwrap_or_default();
    let (apply, raw, json) = (a.apply.clone(), a.raw, a.json);
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
        ev.restrict(restriction);
        ev.allowed_uris = allowed_uris;
        let body = |ev: &mut firn_eval::Evaluator| -> Result<String, String> {
            let e = ev
                .parse(&text, &origin, &base)
                .map_err(|e| e.render(show_trace))?;
            let mut v = ev.eval_top(e).map_err(|e| e.render(show_trace))?;
            for part in crate::legacy::nix_instantiate::attr_path_parts(&attr)? {
                let part = part.as_str();
                v = match &v {
                    Value::Attrs(m) => match m.get(part) {
                        Some(t) => ev.force(&t.clone()).map_err(|e| e.render(show_trace))?,
                        None => return Err(format!("attribute '{part}' missing")),
                    },
                    other => return Err(format!("expected a set but found {}", other.type_name())),
                };
            }
            if let Some(f) = apply {
                let fe = ev
                    .parse(&f, "«string»", "/")
                    .map_err(|e| e.render(show_trace))?;
                let fv = ev.eval_top(fe).map_err(|e| e.render(show_trace))?;
                v = ev
                    .call(fv, Thunk::value(v))
                    .map_err(|e| e.render(show_trace))?;
            }
            firn_eval::builtins::deep_force(ev, &v).map_err(|e| e.render(show_trace))?;
            if json {
                let mut s = String::new();
                firn_eval::builtins_more::to_json(ev, &v, &mut s, &mut Vec::new(), true)
                    .map_err(|e| e.render(show_trace))?;
                return Ok(s);
            }
            if raw {
                return match &v {
                    Value::String(s) => Ok(s.s.to_string()),
                    other => ev
                        .coerce_to_string(other, false, true)
                        .map(|s| s.s.to_string())
                        .map_err(|e| e.render(show_trace)),
                };
            }
            firn_eval::print::print_value(ev, &v, true).map_err(|e| e.render(show_trace))
        };
        let out = body(&mut ev);
        // The store is closed (its staging directory removed); the evaluator's values are left
        // to the process's end (see eval_thread).
        ev.store = firn_eval::store::EvalStore::read_only(ev.store.dir.clone());
        std::mem::forget(ev);
        out
    })?;
    match out {
        Ok(s) => Ok(firn_eval::term::write_stdout(&s, !raw)?),
        Err(msg) => bail!("{msg}"),
    }
}
