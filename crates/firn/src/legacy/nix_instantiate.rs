//! `nix-instantiate`: today `--parse` (print the parsed expression as CppNix does); evaluation
//! and instantiation need the evaluator, which firn does not have yet, and say so.

use std::io::Read;

use anyhow::{bail, Context, Result};
use firn_syntax::{parse, render_error, show::show, Interner, Source};

use crate::context::{usage, Ctx, Failure};

pub fn main(args: Vec<String>) -> Result<()> {
    let (_ctx, args) = Ctx::new(super::expand_short_flags(args))?;
    let mut parse_only = false;
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
            "--eval" | "--eval-only" | "--strict" | "--json" | "--xml" | "-A" | "--attr"
            | "--arg" | "--argstr" | "--read-write-mode" | "--add-root" | "--find-file" => {
                bail!("nix-instantiate '{a}' needs the evaluator, which firn does not have yet")
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
    if !parse_only {
        bail!(
            "nix-instantiate without '--parse' needs the evaluator, which firn does not have yet"
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
