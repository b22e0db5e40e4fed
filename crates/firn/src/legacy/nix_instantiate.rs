//! `nix-instantiate`: `--parse` (print the parsed expression as CppNix does) and `--eval`
//! (`--strict`) with firn's early evaluator; instantiating derivations is not there yet and
//! says so.

use std::io::Read;

use anyhow::{bail, Context, Result};
use firn_syntax::{parse, render_error, show::show, Interner, Source};

use crate::context::{usage, Ctx, Failure};

pub fn main(args: Vec<String>) -> Result<()> {
    let (_ctx, args) = Ctx::new(super::expand_short_flags(args))?;
    let mut parse_only = false;
    let mut eval = false;
    let mut opts = EvalOptions::default();
    let mut exprs: Vec<String> = Vec::new();
    let mut from_expr = false;
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--help" => {
                println!("Usage: nix-instantiate [--parse] [-E] FILES... (evaluation is not implemented by firn yet)");
                return Ok(());
            }
            "--version" => {
                println!("nix-instantiate (firn) {}", env!("CARGO_PKG_VERSION"));
                return Ok(());
            }
            "--parse" => parse_only = true,
            "-E" | "--expr" => from_expr = true,
            "--eval" | "--eval-only" => eval = true,
            "--strict" => opts.strict = true,
            "--json" => opts.json = true,
            "--read-write-mode" | "--show-trace" => {}
            "-A" | "--attr" => opts.attr_paths.push(
                it.next()
                    .ok_or_else(|| usage(format!("flag '{a}' requires 1 argument")))?,
            ),
            "--arg" | "--argstr" => {
                let name = it
                    .next()
                    .ok_or_else(|| usage(format!("flag '{a}' requires 2 arguments")))?;
                let value = it
                    .next()
                    .ok_or_else(|| usage(format!("flag '{a}' requires 2 arguments")))?;
                opts.args.push((name, value, a == "--argstr"));
            }
            "--xml" | "--add-root" | "--find-file" => {
                bail!("nix-instantiate '{a}' is not implemented by firn yet")
            }
            "-I" => {
                it.next()
                    .ok_or_else(|| usage("flag '-I' requires 1 argument"))?;
            }
            s if s.starts_with('-') && s != "-" => {
                return Err(usage(format!("unrecognised flag '{s}'")))
            }
            _ => exprs.push(a),
        }
    }
    if !parse_only && !eval {
        bail!(
            "instantiating derivations is not implemented by firn yet; use '--eval' or '--parse'"
        );
    }
    if exprs.is_empty() {
        if from_expr {
            return Err(usage("'-E' needs an expression"));
        }
        exprs.push("default.nix".into());
    }
    let cwd = std::env::current_dir().context("getting the current directory")?;
    let cwd = cwd.to_string_lossy().into_owned();
    let home = std::env::var("HOME").unwrap_or_else(|_| "/homeless-shelter".into());
    for e in &exprs {
        let (text, origin, base_dir) = if from_expr {
            (e.clone(), "«string»".to_string(), cwd.clone())
        } else if e == "-" {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading standard input")?;
            (s, "«stdin»".to_string(), cwd.clone())
        } else {
            let mut path = crate::paths::absolute(e)?;
            if std::path::Path::new(&path).is_dir() {
                path = format!("{path}/default.nix");
            }
            let text =
                std::fs::read_to_string(&path).with_context(|| format!("reading file '{path}'"))?;
            let dir = std::path::Path::new(&path)
                .parent()
                .map(|d| d.to_string_lossy().into_owned())
                .unwrap_or_else(|| "/".into());
            (text, path, dir)
        };
        let src = Source {
            origin: &origin,
            base_dir: &base_dir,
            home: &home,
        };
        if eval && !parse_only {
            evaluate(&text, &origin, &base_dir, &opts)?;
            continue;
        }
        let mut interner = Interner::default();
        match parse(&text, &src, &mut interner) {
            Ok(expr) => println!("{}", show(&interner, &expr)),
            Err(err) => {
                eprint!("{}", render_error(&err, &text, &origin));
                return Err(Failure {
                    code: 1,
                    msg: err.msg,
                    silent: true,
                }
                .into());
            }
        }
    }
    Ok(())
}

/// What `--eval` does with the value.
#[derive(Clone, Debug, Default)]
struct EvalOptions {
    strict: bool,
    json: bool,
    /// `-A` attribute paths (each printed in turn; none means the whole value).
    attr_paths: Vec<String>,
    /// `--arg NAME EXPR` and `--argstr NAME STRING` (the flag is true for `--argstr`).
    args: Vec<(String, String, bool)>,
}

/// Evaluate `text` and print the value, on a thread with a stack sized for deep evaluations.
fn evaluate(text: &str, origin: &str, base_dir: &str, opts: &EvalOptions) -> Result<()> {
    let (text, origin, base_dir, opts) = (
        text.to_string(),
        origin.to_string(),
        base_dir.to_string(),
        opts.clone(),
    );
    let result = std::thread::Builder::new()
        .stack_size(1 << 30)
        .spawn(move || -> Result<String, String> {
            use firn_eval::value::{AttrMap, Thunk, Value};
            let mut ev = firn_eval::Evaluator::new();
            let mut args = AttrMap::new();
            for (name, value, is_str) in &opts.args {
                let v = if *is_str {
                    Value::str(value.as_str())
                } else {
                    let e = ev.parse(value, "«string»", &base_dir).map_err(|e| e.msg)?;
                    ev.eval_top(e).map_err(|e| e.msg)?
                };
                args.insert(name.as_str().into(), Thunk::value(v));
            }
            let e = ev.parse(&text, &origin, &base_dir).map_err(|e| e.msg)?;
            let top = ev.eval_top(e).map_err(|e| e.msg)?;
            let top = ev.auto_call(top, &args).map_err(|e| e.msg)?;
            let paths = if opts.attr_paths.is_empty() {
                vec![String::new()]
            } else {
                opts.attr_paths.clone()
            };
            let mut outs = Vec::new();
            for path in paths {
                let mut v = top.clone();
                for part in path.split('.').filter(|p| !p.is_empty()) {
                    v = match &v {
                        Value::Attrs(m) => match m.get(part) {
                            Some(t) => ev.force(&t.clone()).map_err(|e| e.msg)?,
                            None => {
                                return Err(format!(
                                    "attribute '{part}' in selection path '{path}' not found"
                                ))
                            }
                        },
                        other => {
                            return Err(format!("expected a set but found {}", other.type_name()))
                        }
                    };
                    v = ev.auto_call(v, &args).map_err(|e| e.msg)?;
                }
                if opts.strict || opts.json {
                    firn_eval::builtins::deep_force(&mut ev, &v).map_err(|e| e.msg)?;
                }
                outs.push(if opts.json {
                    let mut s = String::new();
                    firn_eval::builtins_more::to_json(&mut ev, &v, &mut s).map_err(|e| e.msg)?;
                    s
                } else {
                    firn_eval::print::print_value(&mut ev, &v, opts.strict).map_err(|e| e.msg)?
                });
            }
            Ok(outs.join("\n"))
        })
        .context("starting the evaluator thread")?
        .join()
        .map_err(|_| anyhow::anyhow!("the evaluator panicked"))?;
    match result {
        Ok(s) => {
            println!("{s}");
            Ok(())
        }
        Err(msg) => {
            eprintln!("error: {msg}");
            Err(Failure {
                code: 1,
                msg,
                silent: true,
            }
            .into())
        }
    }
}
