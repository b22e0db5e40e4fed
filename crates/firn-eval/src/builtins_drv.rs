//! Builtins that make store paths and work with string context: `derivationStrict` (and the
//! `derivation` wrapper, written in Nix), `placeholder`, `toFile`, `path`, `filterSource`,
//! `storePath`, and the context functions (`getContext`, `appendContext`, ...).
//!
//! Context elements are kept in CppNix's encoding: `/nix/store/…` for a plain path,
//! `=/nix/store/….drv` for a derivation with all its outputs (what `drvPath` carries), and
//! `!out!/nix/store/….drv` for one output of a derivation.

use crate::rc_str::RcStr;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use firn_format::derivation::{
    downstream_placeholder, hash_placeholder, Derivation, DerivationOutput,
};
use firn_format::store_path::FileIngestionMethod;
use firn_format::{Hash, HashAlgo, StorePath};

use crate::builtins::{
    arg_frame, attrs, attrs_arg, boolean, force, function_arg, list, string, string_arg,
    text_frame, Arg, PrimFn, ONLY,
};
use crate::error::{err, EResult, EvalError, FramePrint};
use crate::eval::Evaluator;
use crate::value::*;

/// `derivation`, as CppNix defines it: `derivationStrict` plus the attributes every output
/// shares (`all`, `drvAttrs`, one attribute per output, `outPath`, `drvPath`, `type`).
/// Error traces show lines of this text, as current Nix shows its own: the lines they show
/// (the call of `derivationStrict`, each output's `outPath`) are where current Nix has them.
pub const DERIVATION_NIX: &str = r#"
# The built-in `derivation` function.
#
# Its argument is the set of derivation attributes; `derivationStrict` turns it into a
# store derivation and returns the paths (`drvPath` and one attribute per output).
#
# The result is the set for the first output. Every output's set has:
#   - all the attributes that were given (also as `drvAttrs`);
#   - one attribute per output, that output's set;
#   - `all`, the list of the outputs' sets;
#   - `outPath`, the output's path; `drvPath`, the derivation's;
#   - `outputName`, the output's name;
#   - `type = "derivation"`.
#
# Evaluating any output's path (or `drvPath`) instantiates the derivation, once for all
# outputs: `strict` is shared.
#
# Error traces of a failing derivation point at these lines:
#   - the call of `derivationStrict` (the derivation could not be made);
#   - the `outPath` of an output (what asked for it).
# Their line numbers are kept as they are in current Nix, so that traces read the same
# (this header only makes room for that).
#
#
#
#
#
#
drvAttrs@{
  outputs ? [ "out" ],
  ...
}:

let

  strict = derivationStrict drvAttrs;

  commonAttrs = drvAttrs // builtins.listToAttrs outputsList // {
    all = map (o: o.value) outputsList;
    inherit drvAttrs;
  };

  # An element of `outputsList` (a name-value pair for `listToAttrs`): the output's name
  # and its set, the common attributes with this output's paths.
  outputToAttrListElement = outputName: {
    name = outputName;
    # `strict` is only evaluated when a path is.
    value = commonAttrs // {
      outPath = strict.${outputName};
      drvPath = strict.drvPath;
      type = "derivation";
      inherit outputName;
    };
  };

  outputsList = map outputToAttrListElement outputs;
in
(builtins.head outputsList).value
"#;

/// A string that must not refer to the store (CppNix's `forceStringNoCtx`).
fn string_no_ctx(ev: &mut Evaluator, t: &Thunk) -> EResult<RcStr> {
    crate::eval::no_context(string(ev, t)?)
}

/// [`string_no_ctx`] for argument `arg` of a builtin, as CppNix's `forceStringNoCtx`: any error
/// gets the argument's frame.
fn string_no_ctx_arg(ev: &mut Evaluator, t: &Thunk, arg: Arg) -> EResult<RcStr> {
    crate::eval::no_context(string_arg(ev, t, arg)?).map_err(|x| arg_frame(x, arg))
}

/// The store path a context element is about (for an output of an output, the derivation it
/// starts from).
pub fn context_path(c: &str) -> &str {
    if let Some(p) = c.strip_prefix('=') {
        p
    } else if let Some(rest) = c.strip_prefix('!') {
        rest.rsplit_once('!').map(|(_, p)| p).unwrap_or(rest)
    } else {
        c
    }
}

pub(crate) fn parse_store_path(ev: &Evaluator, s: &str) -> EResult<StorePath> {
    ev.store
        .dir
        .parse(s)
        .map_err(|e| EvalError::new(format!("'{s}' is not a valid store path: {e}")))
}

/// What `derivationStrict` learns from the attributes.
#[derive(Default)]
struct DrvSpec {
    output_hash: Option<String>,
    output_hash_algo: String,
    method: Option<FileIngestionMethod>,
    outputs: Vec<String>,
}

fn hash_mode(s: &str) -> EResult<FileIngestionMethod> {
    match s {
        "recursive" | "nar" => Ok(FileIngestionMethod::Recursive),
        "flat" => Ok(FileIngestionMethod::Flat),
        _ => err(format!(
            "invalid value '{s}' for 'outputHashMode' attribute"
        )),
    }
}

fn set_outputs(spec: &mut DrvSpec, names: Vec<String>) -> EResult<()> {
    for (i, n) in names.iter().enumerate() {
        // Derivations have a few outputs: looking back is cheaper than a set.
        if names[..i].contains(n) {
            return err(format!("duplicate derivation output '{n}'"));
        }
        if n == "drv" || n == "drvPath" {
            return err(format!("invalid derivation output name '{n}'"));
        }
    }
    if names.is_empty() {
        return err("derivation cannot have an empty set of outputs");
    }
    spec.outputs = names;
    Ok(())
}

fn derivation_strict(ev: &mut Evaluator, a: &[Thunk]) -> EResult<Value> {
    let args = attrs_arg(ev, &a[0], (ONLY, "builtins.derivationStrict"))?;
    let Some(name_t) = args.get("name").cloned() else {
        return Err(text_frame(
            EvalError::new("attribute 'name' missing"),
            "in the attrset passed as argument to builtins.derivationStrict",
        ));
    };
    let drv_name = match string_no_ctx(ev, &name_t) {
        Ok(s) => s.as_str().to_owned(),
        Err(x) => return Err(drv_name_frames(ev, x, &args)),
    };
    derivation_strict_named(ev, &args, &drv_name).map_err(|x| drv_frame(ev, x, &args, &drv_name))
}

/// The frames of an error evaluating the `name` of a derivation, as current Nix's.
#[cold]
#[inline(never)]
fn drv_name_frames(ev: &Evaluator, x: EvalError, args: &AttrSet) -> EvalError {
    let mut x = text_frame(
        x,
        "while evaluating the `name` attribute passed to builtins.derivationStrict",
    );
    let text = "while evaluating the derivation attribute 'name'".to_string();
    x.trace
        .push(match ev.positions.attr_offset(args, "name", &ev.interner) {
            Some(off) => ev.frame(text, off),
            None => text,
        });
    x
}

/// "while evaluating derivation 'N'", with where its name was given (a position, not the
/// source lines: current Nix shows it so).
#[cold]
#[inline(never)]
fn drv_frame(ev: &Evaluator, mut x: EvalError, args: &AttrSet, drv_name: &str) -> EvalError {
    let at = match ev
        .positions
        .attr_offset(args, "name", &ev.interner)
        .and_then(|off| ev.positions.locate(off))
    {
        Some((file, line, col)) => format!("{file}:{line}:{col}"),
        None => "«none»:0".to_string(),
    };
    x.push_frame(
        format!(
            "while evaluating derivation '{drv_name}'\n  whose name attribute is located at {at}"
        ),
        FramePrint::Always,
    );
    x
}

/// "while evaluating attribute 'K' of derivation 'N'", at the attribute's definition.
#[cold]
#[inline(never)]
fn drv_attr_frame(
    ev: &Evaluator,
    mut x: EvalError,
    args: &AttrSet,
    key: &str,
    drv_name: &str,
) -> EvalError {
    let text = format!("while evaluating attribute '{key}' of derivation '{drv_name}'");
    x.trace
        .push(match ev.positions.attr_offset(args, key, &ev.interner) {
            Some(off) => ev.frame(text, off),
            None => text,
        });
    x
}

/// Current Nix's warning about attribute `key` of derivation `drv_name` (a legacy attribute
/// that no longer does what it did): `msg` at the attribute, under "while evaluating
/// derivation".
#[cold]
#[inline(never)]
fn warn_attr(ev: &Evaluator, args: &AttrSet, key: &str, drv_name: &str, msg: String) {
    let mut x = EvalError::new(msg);
    x.at = ev
        .positions
        .attr_offset(args, key, &ev.interner)
        .and_then(|off| ev.positions.render(off));
    x.push_frame(
        format!("while evaluating derivation '{drv_name}'"),
        FramePrint::Always,
    );
    crate::term::write_stderr_line(&x.render_as_warning(true));
}

/// `derivationStrict` once the derivation's name is known.
fn derivation_strict_named(ev: &mut Evaluator, args: &AttrSet, drv_name: &str) -> EResult<Value> {
    if let Some(problem) = crate::store::name_problem(drv_name) {
        return err(format!(
            "invalid derivation name: {problem}. Please pass a different 'name'."
        ));
    }
    let structured = match args.get("__structuredAttrs") {
        Some(t) => boolean(ev, &t.clone()).map_err(|x| {
            text_frame(
                x,
                "while evaluating the `__structuredAttrs` attribute passed to builtins.derivationStrict",
            )
        })?,
        None => false,
    };
    let ignore_nulls = match args.get("__ignoreNulls") {
        Some(t) => boolean(ev, &t.clone()).map_err(|x| {
            text_frame(
                x,
                "while evaluating the `__ignoreNulls` attribute passed to builtins.derivationStrict",
            )
        })?,
        None => false,
    };

    let mut drv = Derivation {
        name: drv_name.to_string(),
        ..Default::default()
    };
    // The environment in the order of the attributes, which is the map's: made into the
    // map at once, which is cheaper than inserting each.
    let mut env: Vec<(String, String)> = Vec::with_capacity(args.len());
    let mut ctx: Vec<RcStr> = Vec::new();
    let mut spec = DrvSpec {
        outputs: vec!["out".into()],
        ..Default::default()
    };
    let mut json = String::from("{");
    let mut content_addressed = false;
    let mut impure = false;
    for (key, t) in args.iter() {
        if &**key == "__ignoreNulls" {
            continue;
        }
        let r = (|| -> EResult<()> {
            if ignore_nulls && matches!(force(ev, t)?, Value::Null) {
                return Ok(());
            }
            match &**key {
                "__contentAddressed" => {
                    content_addressed = boolean(ev, t)?;
                    if content_addressed && !ev.features.ca_derivations {
                        return err("experimental Nix feature 'ca-derivations' is disabled; use '--extra-experimental-features ca-derivations' to override");
                    }
                }
                "__impure" => {
                    impure = boolean(ev, t)?;
                    if impure && !ev.features.impure_derivations {
                        return err("experimental Nix feature 'impure-derivations' is disabled; use '--extra-experimental-features impure-derivations' to override");
                    }
                }
                "args" => {
                    for x in list(ev, t)?.iter() {
                        let s = force(ev, x)
                            .and_then(|v| ev.coerce_to_string(&v, true, true))
                            .map_err(|x| {
                                text_frame(x, "while evaluating an element of the argument list")
                            })?;
                        ctx.extend(s.context.iter().cloned());
                        drv.args.push(s.s.as_str().to_owned());
                    }
                }
                _ if structured => {
                    if &**key == "__structuredAttrs" {
                        return Ok(());
                    }
                    let v = force(ev, t)?;
                    if json.len() > 1 {
                        json.push(',');
                    }
                    json.push_str(&serde_json::Value::String(key.as_str().to_owned()).to_string());
                    json.push(':');
                    crate::builtins_more::to_json(ev, &v, &mut json, &mut ctx, true)?;
                    match &**key {
                        "builder" => {
                            let s = string(ev, t)?;
                            ctx.extend(s.context.iter().cloned());
                            drv.builder = s.s.as_str().to_owned();
                        }
                        "system" => drv.platform = string_no_ctx(ev, t)?.as_str().to_owned(),
                        "outputHash" => {
                            spec.output_hash = Some(string_no_ctx(ev, t)?.as_str().to_owned())
                        }
                        "outputHashAlgo" => {
                            spec.output_hash_algo = string_no_ctx(ev, t)?.as_str().to_owned()
                        }
                        "outputHashMode" => spec.method = Some(hash_mode(&string_no_ctx(ev, t)?)?),
                        "outputs" => {
                            let mut names = Vec::new();
                            for x in list(ev, t)?.iter() {
                                names.push(string_no_ctx(ev, x)?.as_str().to_owned());
                            }
                            set_outputs(&mut spec, names)?;
                        }
                        "allowedReferences"
                        | "allowedRequisites"
                        | "disallowedReferences"
                        | "disallowedRequisites"
                        | "maxSize"
                        | "maxClosureSize" => warn_attr(
                            ev,
                            args,
                            key,
                            drv_name,
                            format!(
                                "'structuredAttrs' disables the effect of the derivation \
                                 attribute '{key}'; use 'outputChecks.<output>.{key}' instead"
                            ),
                        ),
                        _ => {}
                    }
                }
                _ => {
                    let v = force(ev, t)?;
                    let s = ev.coerce_to_string(&v, true, true)?;
                    ctx.extend(s.context.iter().cloned());
                    let s = s.s.as_str().to_owned();
                    match &**key {
                        "__json" => warn_attr(
                            ev,
                            args,
                            key,
                            drv_name,
                            "setting structured attributes via '__json' is deprecated, and may \
                             be disallowed in future versions of Nix. Set '__structuredAttrs = \
                             true' instead."
                                .into(),
                        ),
                        "builder" => drv.builder = s.clone(),
                        "system" => drv.platform = s.clone(),
                        "outputHash" => spec.output_hash = Some(s.clone()),
                        "outputHashAlgo" => spec.output_hash_algo = s.clone(),
                        "outputHashMode" => spec.method = Some(hash_mode(&s)?),
                        "outputs" => set_outputs(
                            &mut spec,
                            s.split([' ', '\t', '\n', '\r'])
                                .filter(|x| !x.is_empty())
                                .map(String::from)
                                .collect(),
                        )?,
                        _ => {}
                    }
                    env.push((key.as_str().to_owned(), s));
                }
            }
            Ok(())
        })();
        r.map_err(|x| drv_attr_frame(ev, x, args, key, drv_name))?;
    }
    drv.env = env.into_iter().collect();
    if structured {
        json.push('}');
        drv.env.insert("__json".into(), json);
    }

    // Everything the strings refer to becomes an input, each once and in order (which
    // decides which bad element an error names, as CppNix's sorted set). Most repeats are
    // one handle met in several strings (an input's path in its own attribute, in `PATH`,
    // in a script), so those go first by address, which is cheaper than comparing text.
    ctx.sort_unstable_by_key(|c| c.as_str().as_ptr() as usize);
    ctx.dedup_by(|a, b| RcStr::ptr_eq(a, b));
    ctx.sort_unstable();
    ctx.dedup();
    for c in &ctx {
        if let Some(p) = c.strip_prefix('=') {
            let sp = parse_store_path(ev, p)?;
            for q in ev.store.closure(&sp)? {
                if q.is_derivation() {
                    let outs: BTreeSet<String> = ev.store.output_names(&q)?.into_iter().collect();
                    drv.input_drvs.insert(q.clone(), outs);
                }
                drv.input_srcs.insert(q);
            }
        } else if let Some(rest) = c.strip_prefix('!') {
            // The output name is short: a plain scan finds its end sooner than a search
            // set up for long text.
            let (out, p) = rest
                .bytes()
                .position(|b| b == b'!')
                .map(|i| (&rest[..i], &rest[i + 1..]))
                .ok_or_else(|| EvalError::new(format!("invalid string context '{c}'")))?;
            let sp = parse_store_path(ev, p).map_err(|x| {
                // `!OUT!OUT1!/nix/store/….drv`: an output of a derivation that is built.
                if p.contains('!') {
                    crate::output_of::dynamic_input_error(ev, c)
                } else {
                    x
                }
            })?;
            drv.input_drvs.entry(sp).or_default().insert(out.into());
        } else {
            let sp = parse_store_path(ev, c)?;
            drv.input_srcs.insert(sp);
        }
    }

    if drv.builder.is_empty() {
        return err("required attribute 'builder' missing");
    }
    if drv.platform.is_empty() {
        return err("required attribute 'system' missing");
    }
    if drv_name.ends_with(".drv") {
        return err("derivation names are not allowed to end in '.drv'");
    }

    if let Some(h) = &spec.output_hash {
        if spec.outputs != ["out"] {
            return err("multiple outputs are not supported in fixed-output derivations");
        }
        let algo = if spec.output_hash_algo.is_empty() {
            None
        } else {
            Some(
                spec.output_hash_algo
                    .parse::<HashAlgo>()
                    .map_err(|e| EvalError::new(e.to_string()))?,
            )
        };
        let hash = if h.is_empty() {
            let algo = algo.unwrap_or(HashAlgo::Sha256);
            let zero = Hash::from_bytes(algo, &vec![0u8; algo.size()])
                .ok_or_else(|| EvalError::new("cannot make an empty hash"))?;
            eprintln!(
                "warning: found empty hash, assuming '{}'",
                zero.encode(firn_format::hash::HashFormat::Sri, true)
            );
            zero
        } else {
            Hash::parse(h, algo).map_err(|e| EvalError::new(e.to_string()))?
        };
        let method = spec.method.unwrap_or(FileIngestionMethod::Flat);
        drv.outputs.insert(
            "out".into(),
            DerivationOutput::fixed_output(method, &hash, None),
        );
    } else if content_addressed || impure {
        if content_addressed && impure {
            return err("derivation cannot be both content-addressed and impure");
        }
        // As CppNix's `parseHashTypeOpt`: a name it does not know means SHA-256.
        let algo = spec
            .output_hash_algo
            .parse::<HashAlgo>()
            .unwrap_or(HashAlgo::Sha256);
        let method = spec.method.unwrap_or(FileIngestionMethod::Recursive);
        for o in &spec.outputs {
            let out = if impure {
                DerivationOutput::impure(method, algo)
            } else {
                DerivationOutput::floating(method, algo)
            };
            drv.outputs.insert(o.clone(), out);
        }
    } else {
        for o in &spec.outputs {
            drv.outputs.insert(o.clone(), DerivationOutput::deferred());
        }
    }
    let (drv_path, outputs) = ev.store.instantiate(drv)?;
    if ev.features.dynamic_derivations {
        // `builtins.outputOf` may ask for them, and a read-only evaluation cannot read them
        // back from the `.drv`.
        ev.store.keep_output_paths(&drv_path, &outputs);
    }
    let shown = ev.store.dir.display(&drv_path);

    let mut out = AttrMap::new();
    let mut all = String::with_capacity(shown.len() + 1);
    all.push('=');
    all.push_str(&shown);
    out.insert(
        "drvPath".into(),
        Thunk::value(Value::String(NixString::with_context(
            shown.clone(),
            vec![all.into()],
        ))),
    );
    for (id, path) in &outputs {
        let s = match path {
            Some(p) => ev.store.dir.display(p),
            // Built later (floating content-addressed, or deferred): dependents refer to the
            // output through a placeholder that resolving replaces.
            None => downstream_placeholder(&drv_path, drv_name, id),
        };
        let mut built = String::with_capacity(id.len() + shown.len() + 2);
        for part in ["!", id, "!", &shown] {
            built.push_str(part);
        }
        out.insert(
            id.as_str().into(),
            Thunk::value(Value::String(NixString::with_context(
                s,
                vec![built.into()],
            ))),
        );
    }
    Ok(Value::Attrs(Rc::new(out.into())))
}

fn to_file(ev: &mut Evaluator, a: &[Thunk]) -> EResult<Value> {
    let name = string_no_ctx_arg(ev, &a[0], (0, "builtins.toFile"))?;
    let contents = string_arg(ev, &a[1], (1, "builtins.toFile"))?;
    let mut refs = BTreeSet::new();
    for c in contents.context.iter() {
        if !c.starts_with('/') {
            return err(format!(
                "in 'toFile': the file named '{name}' must not contain a reference to a derivation but contains ({c})"
            ));
        }
        refs.insert(parse_store_path(ev, c)?);
    }
    let p = ev.store.add_text(&name, &contents.s, &refs)?;
    let s = ev.store.dir.display(&p);
    Ok(Value::String(NixString::with_context(
        s.clone(),
        vec![s.as_str().into()],
    )))
}

/// A path argument, as CppNix's `coerceToPath`: the value coerced to a string (not copied
/// to the store), which must be an absolute path; with its context.
pub(crate) fn coerce_to_path(ev: &mut Evaluator, t: &Thunk) -> EResult<(String, Vec<RcStr>)> {
    let v = force(ev, t)?;
    coerce_path_value(ev, &v, None)
}

/// CppNix's `coerceToPath` of a value (`ctx` as for [`Evaluator::coerce_in`]): a set's
/// `__toString` or `outPath` is used (with its frames), then the string must be absolute.
pub(crate) fn coerce_path_value(
    ev: &mut Evaluator,
    v: &Value,
    ctx: crate::eval::CoerceCtx,
) -> EResult<(String, Vec<RcStr>)> {
    if let Value::Attrs(a) = v {
        if let Some(f) = a.get("__toString") {
            let r = match ev.force(&f.clone()) {
                Ok(f) => ev.call(f, Thunk::value(v.clone())),
                Err(x) => Err(x),
            };
            let r = r.map_err(|x| ev.peel_frame(x, a, "__toString", false))?;
            return coerce_path_value(ev, &r, ctx)
                .map_err(|x| ev.peel_frame(x, a, "__toString", true));
        }
        if let Some(o) = a.get("outPath") {
            let o = ev
                .force(&o.clone())
                .map_err(|x| ev.peel_frame(x, a, "outPath", false))?;
            return coerce_path_value(ev, &o, ctx)
                .map_err(|x| ev.peel_frame(x, a, "outPath", true));
        }
    }
    let s = ev.coerce_in(v, false, false, ctx)?;
    if !s.s.starts_with('/') {
        let x = EvalError::new(format!(
            "string '{}' doesn't represent an absolute path",
            s.s
        ));
        return Err(match ctx {
            Some((text, _)) => text_frame(x, text),
            None => x,
        });
    }
    Ok((s.s.to_string(), (*s.context).clone()))
}

/// `builtins.path` and `filterSource`: copy `path` under `name`, through `filter` if given.
fn add_path(
    ev: &mut Evaluator,
    path: &str,
    name: &str,
    filter: Option<Value>,
    recursive: bool,
    expected: Option<Hash>,
) -> EResult<Value> {
    // A path whose contents are given by their hash may be read even by a pure evaluation.
    if !(ev.pure() && expected.is_some()) {
        ev.check_source_path(path)?;
    }
    let real = ev.store.real_path(path);
    let p = match filter {
        Some(f) if recursive => {
            // Ask the filter first (it is Nix code and may do anything), then copy what it kept.
            let kept = filtered_entries(ev, &real, path, &f)?;
            let mut keep = |entry: &std::path::Path, _: std::fs::FileType| kept.contains(entry);
            ev.store
                .add_source(name, &real, recursive, Some(&mut keep), expected.as_ref())?
        }
        _ => ev
            .store
            .add_source(name, &real, recursive, None, expected.as_ref())?,
    };
    Ok(Value::String(ev.allowed_store_string(&p)))
}

/// The entries under `real` that `filter` keeps (a directory it drops is not entered). The
/// filter sees each entry as a path under `shown`, the path as the user named it, with its
/// type: `regular`, `directory`, `symlink` or `unknown`. It is called in CppNix's order (as
/// its dump walks the tree): depth first, the entries of a directory by name, a directory
/// kept entered before its next sibling is asked about.
fn filtered_entries(
    ev: &mut Evaluator,
    real: &std::path::Path,
    shown: &str,
    filter: &Value,
) -> EResult<std::collections::HashSet<std::path::PathBuf>> {
    let mut kept = std::collections::HashSet::new();
    if !std::fs::symlink_metadata(real).is_ok_and(|m| m.is_dir()) {
        return Ok(kept);
    }
    let io = |e: std::io::Error, p: &std::path::Path| {
        EvalError::new(format!("reading directory '{}': {e}", p.display()))
    };
    let sorted_names = |dir: &std::path::Path| -> EResult<Vec<std::ffi::OsString>> {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| io(e, dir))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(|e| io(e, dir))?;
        // Byte order, as CppNix's (and the NAR's) sorted entries.
        names.sort();
        names.reverse();
        Ok(names)
    };
    // The directories being walked, each with its entries still to ask about (last first).
    let mut stack = vec![(real.to_path_buf(), sorted_names(real)?)];
    while let Some((dir, names)) = stack.last_mut() {
        let Some(n) = names.pop() else {
            stack.pop();
            continue;
        };
        let entry = dir.join(&n);
        let ft = std::fs::symlink_metadata(&entry)
            .map_err(|e| EvalError::new(format!("getting status of '{}': {e}", entry.display())))?
            .file_type();
        let kind = if ft.is_file() {
            "regular"
        } else if ft.is_dir() {
            "directory"
        } else if ft.is_symlink() {
            "symlink"
        } else {
            "unknown"
        };
        let rel = entry.strip_prefix(real).unwrap_or(&entry);
        let as_named = format!("{}/{}", shown.trim_end_matches('/'), rel.display());
        let g = ev.call(filter.clone(), Thunk::value(Value::str(as_named)))?;
        let keep = match ev.call(g, Thunk::value(Value::str(kind)))? {
            Value::Bool(b) => b,
            v => {
                return Err(text_frame(
                    ev.type_error("a Boolean", &v),
                    "while evaluating the return value of the path filter function",
                ))
            }
        };
        if keep {
            kept.insert(entry.clone());
            if ft.is_dir() {
                let inner = sorted_names(&entry)?;
                stack.push((entry, inner));
            }
        }
    }
    Ok(kept)
}

fn prim_path(ev: &mut Evaluator, a: &[Thunk]) -> EResult<Value> {
    let args = attrs(ev, &a[0])?;
    let mut path = None;
    let mut name = None;
    let mut filter = None;
    let mut recursive = true;
    let mut expected = None;
    for (k, t) in args.iter() {
        match &**k {
            "path" => path = Some(coerce_to_path(ev, t)?.0),
            "name" => name = Some(string_no_ctx(ev, t)?.to_string()),
            "filter" => filter = Some(force(ev, t)?),
            "recursive" => recursive = boolean(ev, t)?,
            "sha256" => {
                let s = string_no_ctx(ev, t)?;
                expected = Some(
                    Hash::parse(&s, Some(HashAlgo::Sha256))
                        .map_err(|e| EvalError::new(e.to_string()))?,
                );
            }
            other => {
                return err(format!(
                    "unsupported argument '{}' to 'builtins.path'",
                    crate::print::error_attr_name(other)
                ))
            }
        }
    }
    let Some(path) = path else {
        return err("missing required 'path' attribute in the first argument to 'builtins.path'");
    };
    let name = match name {
        Some(n) if !n.is_empty() => n,
        _ => path
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or("")
            .to_string(),
    };
    add_path(ev, &path, &name, filter, recursive, expected).map_err(|mut e| {
        e.trace.push(format!("while adding path '{path}'"));
        e
    })
}

fn filter_source(ev: &mut Evaluator, a: &[Thunk]) -> EResult<Value> {
    let (path, _) = coerce_to_path(ev, &a[1]).map_err(|x| {
        text_frame(
            x,
            "while evaluating the second argument (the path to filter) passed to 'builtins.filterSource'",
        )
    })?;
    let f = function_arg(ev, &a[0], (0, "builtins.filterSource"))?;
    let name = path
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or("")
        .to_string();
    add_path(ev, &path, &name, Some(f), true, None).map_err(|mut e| {
        e.trace.push(format!("while adding path '{path}'"));
        e
    })
}

fn store_path(ev: &mut Evaluator, a: &[Thunk]) -> EResult<Value> {
    if ev.pure() {
        return err("'builtins.storePath' is not allowed in pure evaluation mode");
    }
    let (path, _) =
        coerce_to_path(ev, &a[0]).map_err(|x| arg_frame(x, (0, "'builtins.storePath'")))?;
    let (sp, _) = ev
        .store
        .dir
        .parse_inside(&path)
        .map_err(|_| EvalError::new(format!("path '{path}' is not in the Nix store")))?;
    if ev.store.writes() && !ev.store.is_valid(&sp)? {
        // CppNix's `ensurePath` (after substituting, which firn does not try here).
        return err(format!(
            "path '{}' does not exist and cannot be created",
            ev.store.dir.display(&sp)
        ));
    }
    let s = ev.store.dir.display(&sp);
    Ok(Value::String(NixString::with_context(path, vec![s.into()])))
}

fn get_context(ev: &mut Evaluator, a: &[Thunk]) -> EResult<Value> {
    let s = string(ev, &a[0])?;
    #[derive(Default)]
    struct Info {
        path: bool,
        all: bool,
        outputs: Vec<String>,
    }
    let mut infos: BTreeMap<String, Info> = BTreeMap::new();
    for c in s.context.iter() {
        if let Some(p) = c.strip_prefix('=') {
            infos.entry(p.into()).or_default().all = true;
        } else if let Some(rest) = c.strip_prefix('!') {
            if let Some((o, p)) = rest.split_once('!') {
                // An output of a derivation that is itself built is listed under the path of
                // that derivation (which must be known).
                let p = if p.contains('!') {
                    crate::output_of::resolved_drv(ev, p)?
                } else {
                    p.into()
                };
                infos.entry(p).or_default().outputs.push(o.into());
            }
        } else {
            infos.entry(c.to_string()).or_default().path = true;
        }
    }
    let mut out = AttrMap::new();
    for (p, i) in infos {
        let mut m = AttrMap::new();
        if i.path {
            m.insert("path".into(), Thunk::value(Value::Bool(true)));
        }
        if i.all {
            m.insert("allOutputs".into(), Thunk::value(Value::Bool(true)));
        }
        if !i.outputs.is_empty() {
            let l = i
                .outputs
                .into_iter()
                .map(|o| Thunk::value(Value::str(o)))
                .collect();
            m.insert("outputs".into(), Thunk::value(Value::List(Rc::new(l))));
        }
        out.insert(p.into(), Thunk::value(Value::Attrs(Rc::new(m.into()))));
    }
    Ok(Value::Attrs(Rc::new(out.into())))
}

fn append_context(ev: &mut Evaluator, a: &[Thunk]) -> EResult<Value> {
    let s = string(ev, &a[0])?;
    let m = attrs(ev, &a[1])?;
    let mut ctx = (*s.context).clone();
    for (p, t) in m.iter() {
        let sp = ev
            .store
            .dir
            .parse(p)
            .map_err(|_| EvalError::new(format!("context key '{p}' is not a store path")))?;
        let info = attrs(ev, t)?;
        if let Some(x) = info.get("path") {
            if boolean(ev, &x.clone())? {
                ctx.push(p.as_str().into());
            }
        }
        if let Some(x) = info.get("allOutputs") {
            if boolean(ev, &x.clone())? {
                if !sp.is_derivation() {
                    return err(format!(
                        "tried to add all-outputs context of {p}, which is not a derivation, to a string"
                    ));
                }
                ctx.push(format!("={p}").into());
            }
        }
        if let Some(x) = info.get("outputs") {
            let outs = list(ev, &x.clone())?;
            if !outs.is_empty() && !sp.is_derivation() {
                return err(format!(
                    "tried to add derivation output context of {p}, which is not a derivation, to a string"
                ));
            }
            for o in outs.iter() {
                let o = string(ev, o)?;
                ctx.push(format!("!{}!{p}", o.s).into());
            }
        }
    }
    Ok(Value::String(NixString::with_context(s.s.clone(), ctx)))
}

fn map_context(s: NixString, f: impl Fn(&str) -> String) -> Value {
    let ctx = s.context.iter().map(|c| RcStr::from(f(c))).collect();
    Value::String(NixString::with_context(s.s.clone(), ctx))
}

pub fn table() -> Vec<(&'static str, usize, PrimFn)> {
    vec![
        ("derivationStrict", 1, derivation_strict),
        ("placeholder", 1, |ev, a| {
            let o = string_no_ctx_arg(ev, &a[0], (0, "builtins.placeholder"))?;
            Ok(Value::str(hash_placeholder(&o)))
        }),
        ("toFile", 2, to_file),
        ("path", 1, prim_path),
        ("filterSource", 2, filter_source),
        ("storePath", 1, store_path),
        ("getContext", 1, get_context),
        ("appendContext", 2, append_context),
        ("unsafeDiscardOutputDependency", 1, |ev, a| {
            let s = string(ev, &a[0])?;
            Ok(map_context(s, |c| {
                c.strip_prefix('=').unwrap_or(c).to_string()
            }))
        }),
        ("addDrvOutputDependencies", 1, |ev, a| {
            let s = string(ev, &a[0])?;
            if s.context.len() != 1 {
                return err(format!(
                    "context of string '{}' must have exactly one element, but has {}",
                    s.s,
                    s.context.len()
                ));
            }
            let c = &s.context[0];
            // `!OUTPUT!DRV`: named by its output.
            if let Some(built) = c.strip_prefix('!') {
                return err(format!(
                    "`addDrvOutputDependencies` can only act on derivations, not on a derivation output such as '{}'",
                    built.split('!').next().unwrap_or_default()
                ));
            }
            if !c.starts_with('=') && !c.ends_with(".drv") {
                return err(format!("path '{c}' is not a derivation"));
            }
            Ok(map_context(s.clone(), |c| {
                if c.starts_with('=') {
                    c.to_string()
                } else {
                    format!("={c}")
                }
            }))
        }),
    ]
}
