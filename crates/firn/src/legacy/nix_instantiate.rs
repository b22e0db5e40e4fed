//! `nix-instantiate`: instantiate derivations (write their `.drv` files and print their paths),
//! `--eval` (`--strict`, `--json`) in CppNix's read-only mode, and `--parse`.

use std::io::Read;
use std::rc::Rc;

use anyhow::{Context, Result};
use firn_syntax::{parse_linted, render_error, render_warning, show::show, Interner, Source};

use crate::context::{usage, Ctx, Failure};

pub fn main(args: Vec<String>) -> Result<()> {
    let (ctx, args) = Ctx::legacy(super::expand_short_flags(args))?;
    let mut parse_only = false;
    let mut opts = EvalOptions::from_settings(&ctx)?;
    let mut exprs: Vec<String> = Vec::new();
    let mut from_expr = false;
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--help" => {
                outln!("Usage: nix-instantiate [--parse | --eval [--strict] [--raw | --json | --xml [--no-location]]] [-E] [-A ATTR] [--arg NAME EXPR] [--argstr NAME STRING] [--add-root PATH] [-I PATH] FILES...");
                return Ok(());
            }
            "--version" => {
                outln!("{}", crate::version_line("nix-instantiate"));
                return Ok(());
            }
            "--parse" | "--parse-only" => parse_only = true,
            "-E" | "--expr" => from_expr = true,
            "--eval" | "--eval-only" => opts.eval = true,
            "--strict" => opts.strict = true,
            // One output kind: the last flag given, as CppNix.
            "--json" => opts.output = Output::Json,
            // Current Nix: a string printed verbatim, without quotes or a newline.
            "--raw" => opts.output = Output::Raw,
            "--read-write-mode" => opts.read_write = true,
            // Derivations computed, not written (CppNix's read-only mode).
            "--dry-run" => opts.dry_run = true,
            "--show-trace" => opts.show_trace = true,
            "--find-file" => opts.find_file = true,
            "--add-root" => {
                opts.add_root = Some(
                    it.next()
                        .ok_or_else(|| usage("flag '--add-root' requires 1 argument"))?,
                )
            }
            // Current Nix's evaluation flag; the legacy commands never evaluate purely.
            "--indirect" | "--impure" => {}
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
            "--xml" => opts.output = Output::Xml,
            "--no-location" => opts.no_location = true,
            "-I" => opts.include.push(
                it.next()
                    .ok_or_else(|| usage("flag '-I' requires 1 argument"))?,
            ),
            s if s.starts_with("-I") && s.len() > 2 => opts.include.push(s[2..].to_string()),
            s if s.starts_with('-') && s != "-" => {
                return Err(usage(format!("unrecognised flag '{s}'")))
            }
            _ => exprs.push(a),
        }
    }
    if opts.find_file {
        return find_files(&exprs, &opts);
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
    let mut inputs = Vec::new();
    for e in &exprs {
        let input = read_input(e, from_expr, &cwd)?;
        if !parse_only {
            inputs.push(input);
            continue;
        }
        let Input {
            text,
            origin,
            base_dir,
            ..
        } = if input.lookup {
            // Looked up as evaluation would (the search path, a download).
            let include = opts.include.clone();
            let features = opts.features;
            crate::eval_thread::run(move || {
                let mut ev = firn_eval::Evaluator::with_features(features);
                ev.set_search_path(&include);
                let found = resolve_input(&mut ev, input);
                std::mem::forget(ev);
                found
            })?
            .map_err(|msg| Failure {
                code: 1,
                msg,
                silent: false,
            })?
        } else {
            input
        };
        let src = Source {
            origin: &origin,
            base_dir: &base_dir,
            home: &home,
            pipe_operators: opts.features.pipe_operators,
            lints: opts.lints,
        };
        let mut interner = Interner::default();
        match parse_linted(&text, &src, &mut interner) {
            Ok(parsed) => {
                for w in &parsed.warnings {
                    firn_eval::term::write_stderr_line(&render_warning(w, &text, &origin));
                }
                firn_eval::term::write_stdout(&show(&interner, &parsed.expr), true)?
            }
            Err(err) => {
                let shown = render_error(&err, &text, &origin);
                firn_eval::term::write_stderr_line(shown.trim_end_matches('\n'));
                return Err(Failure {
                    code: 1,
                    msg: err.msg,
                    silent: true,
                }
                .into());
            }
        }
    }
    if parse_only {
        return Ok(());
    }
    let store = if ctx.dummy_store() {
        Backend::Dummy(ctx.store_dir())
    } else {
        Backend::Local(Box::new(ctx.open_store()?))
    };
    evaluate_with(inputs, opts, store, true).map(|_| ())
}

/// `--find-file`: print where each `<path>` is found in the search path.
fn find_files(names: &[String], opts: &EvalOptions) -> Result<()> {
    let mut ev = firn_eval::Evaluator::new();
    ev.set_search_path(&opts.include);
    for n in names {
        let t = ev
            .builtins
            .peek()
            .and_then(|b| match b {
                firn_eval::Value::Attrs(m) => m.get("nixPath").cloned(),
                _ => None,
            })
            .ok_or_else(|| anyhow::anyhow!("no search path"))?;
        match firn_eval::builtins_more::find_file(&mut ev, &t, n) {
            Ok(firn_eval::Value::Path(p)) => outln!("{p}"),
            Ok(_) => {}
            Err(e) => return Err(anyhow::anyhow!("{}", e.msg)),
        }
    }
    Ok(())
}

/// One expression to evaluate.
pub struct Input {
    pub text: String,
    pub origin: String,
    pub base_dir: String,
    /// `origin` is a file argument the evaluator looks up (`<name>` in the search path, or
    /// a URI of a tarball; see [`resolve_input`]), and `text` is empty until then.
    pub lookup: bool,
    /// `origin` is a flake installable (`REF#ATTRPATH`), evaluated as `nix build` takes one.
    pub flake: bool,
}

impl Input {
    /// The flake installable `installable`.
    pub fn flake(installable: &str) -> Input {
        Input {
            text: String::new(),
            origin: installable.to_string(),
            base_dir: String::new(),
            lookup: false,
            flake: true,
        }
    }
}

/// What to do with the values.
#[derive(Clone, Debug, Default)]
pub struct EvalOptions {
    /// `trace-verbose`: `builtins.traceVerbose` prints. (`--show-trace` is the `show-trace`
    /// setting, taken with the other setting flags.)
    pub trace_verbose: bool,
    /// `abort-on-warn`: `builtins.warn` is an error after printing.
    pub abort_on_warn: bool,
    /// The experimental features on.
    pub features: firn_eval::Features,
    /// The parser's lints (`lint-url-literals`, ...).
    pub lints: firn_syntax::Lints,
    /// `max-call-depth` (None: Nix's default).
    pub max_call_depth: Option<usize>,
    /// `--eval`: print values instead of instantiating derivations.
    pub eval: bool,
    pub strict: bool,
    /// How `--eval` prints the value.
    pub output: Output,
    /// `--no-location`: no places in `--xml` output.
    pub no_location: bool,
    pub read_write: bool,
    /// `--dry-run`: instantiate without writing `.drv` files (read-only mode).
    pub dry_run: bool,
    pub show_trace: bool,
    pub find_file: bool,
    /// `--add-root`: register each `.drv` as an indirect root (`PATH`, `PATH-2`, ...).
    pub add_root: Option<String>,
    /// `-A` attribute paths (each printed in turn; none means the whole value).
    pub attr_paths: Vec<String>,
    /// How a flake installable's lock may change (`nix build`'s flake options).
    pub flake_lock: firn_eval::flake::LockOptions,
    /// `--arg NAME EXPR` and `--argstr NAME STRING` (the flag is true for `--argstr`).
    pub args: Vec<(String, String, bool)>,
    /// `-I` search path entries.
    pub include: Vec<String>,
    /// Pure or restricted evaluation (`pure-eval`, `restrict-eval`; the new commands' default
    /// with `--expr`).
    pub restriction: firn_eval::purity::Restriction,
    /// `allowed-uris`: what fetchers may use in restricted evaluation.
    pub allowed_uris: Vec<String>,
    /// The `flake-registry` setting (for flake installables' indirect inputs).
    pub flake_registry: String,
}

/// How `nix-instantiate --eval` prints the value (the last of `--json`, `--xml` and `--raw`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Output {
    /// As Nix writes values.
    #[default]
    Plain,
    /// `--json`.
    Json,
    /// `--xml`: CppNix's XML, with where each attribute and function is defined unless
    /// `--no-location`.
    Xml,
    /// `--raw`: the value coerced to a string, printed as it is.
    Raw,
}

impl EvalOptions {
    /// The defaults, with the evaluation settings (`trace-verbose`, `abort-on-warn`,
    /// `max-call-depth`, ...).
    pub fn from_settings(ctx: &Ctx) -> Result<EvalOptions> {
        Ok(EvalOptions {
            trace_verbose: ctx.settings.get_bool("trace-verbose"),
            abort_on_warn: ctx.settings.get_bool("abort-on-warn"),
            features: ctx.settings.eval_features(),
            lints: ctx.settings.lints()?,
            max_call_depth: Some(ctx.settings.max_call_depth()?),
            show_trace: ctx.settings.get_bool("show-trace"),
            restriction: restriction(ctx),
            allowed_uris: ctx.settings.get_list("allowed-uris"),
            flake_registry: ctx.settings.get("flake-registry").unwrap_or("").to_string(),
            ..EvalOptions::default()
        })
    }
}

/// The restriction the `pure-eval` and `restrict-eval` settings ask for.
pub fn restriction(ctx: &Ctx) -> firn_eval::purity::Restriction {
    use firn_eval::purity::Restriction;
    if ctx.settings.get_bool("pure-eval") {
        Restriction::Pure
    } else if ctx.settings.get_bool("restrict-eval") {
        Restriction::Restricted
    } else {
        Restriction::None
    }
}

/// The derivations an evaluation produced (`.drv` path and output name), and the store.
pub type Instantiated = (Vec<(String, String)>, firn_store::LocalStore);

/// The store an evaluation reads and writes.
pub enum Backend {
    /// Boxed: a store is much larger than a store directory.
    Local(Box<firn_store::LocalStore>),
    /// A `dummy://` store with this store directory: paths are computed (in read-only mode),
    /// writing fails ([`firn_eval::store::EvalStore::dummy`]).
    Dummy(firn_format::StoreDir),
}

/// Evaluate the inputs and print values or (when `print`) `.drv` paths, on a thread with a
/// stack sized for deep evaluations. Returns the derivations and the store back.
pub fn evaluate(
    inputs: Vec<Input>,
    opts: EvalOptions,
    store: firn_store::LocalStore,
    print: bool,
) -> Result<Instantiated> {
    match evaluate_with(inputs, opts, Backend::Local(Box::new(store)), print)? {
        (found, Some(store)) => Ok((found, store)),
        (_, None) => anyhow::bail!("the evaluation did not give the store back"),
    }
}

/// The derivations an evaluation produced, and the local store if it had one.
pub type Evaluated = (Vec<(String, String)>, Option<firn_store::LocalStore>);

/// [`evaluate`] with any [`Backend`]; the local store, if any, is given back.
pub fn evaluate_with(
    inputs: Vec<Input>,
    opts: EvalOptions,
    store: Backend,
    print: bool,
) -> Result<Evaluated> {
    let result = crate::eval_thread::run(move || -> Result<Evaluated, String> {
        let show = opts.show_trace;
        let render = move |e: firn_eval::error::EvalError| {
            let mut text = e.render(show);
            if e.kind == firn_eval::ErrorKind::Usage {
                // As CppNix's tools follow a usage error: the program as it was invoked.
                let argv0 = std::env::args().next().unwrap_or_default();
                text.push_str(&format!("\nTry '{argv0} --help' for more information."));
            }
            text
        };
        let (store, dir) = match store {
            Backend::Local(s) => {
                let dir = s.store_dir().clone();
                (Some(Rc::new(*s)), dir)
            }
            Backend::Dummy(dir) => (None, dir),
        };
        let mut ev = firn_eval::Evaluator::with_features(opts.features);
        ev.set_stack_size(firn_eval::eval::EVAL_THREAD_STACK);
        ev.trace_verbose = opts.trace_verbose;
        ev.abort_on_warn = opts.abort_on_warn;
        ev.lints = opts.lints;
        ev.max_call_depth = opts
            .max_call_depth
            .unwrap_or(firn_eval::eval::MAX_CALL_DEPTH);
        // `--eval` runs in read-only mode, as CppNix: paths are computed, not written.
        let write = (!opts.eval && !opts.dry_run) || opts.read_write;
        ev.store = match &store {
            Some(store) => firn_eval::store::EvalStore::with_store(store.clone(), write),
            None => firn_eval::store::EvalStore::dummy(dir, write),
        };
        ev.set_search_path(&opts.include);
        ev.restrict(opts.restriction);
        ev.allowed_uris = opts.allowed_uris.clone();
        ev.flake_registry = opts.flake_registry.clone();
        let args = auto_args(&mut ev, &opts.args).map_err(render)?;
        let mut root_nr = 0;
        let mut warned = !print;
        let mut found = Vec::new();
        for input in inputs {
            let top = if input.flake {
                let cwd = std::env::current_dir()
                    .map(|d| d.to_string_lossy().into_owned())
                    .unwrap_or_else(|_| "/".into());
                firn_eval::flake::installable(&mut ev, &input.origin, &cwd, &opts.flake_lock)
                    .map_err(render)?
            } else {
                let input = resolve_input(&mut ev, input)?;
                // A file given to evaluate is read as `import` reads it (pure evaluation may
                // not).
                if input.origin.starts_with('/') {
                    ev.check_source_path(&input.origin).map_err(render)?;
                }
                let e = ev
                    .parse(&input.text, &input.origin, &input.base_dir)
                    .map_err(render)?;
                ev.eval_top(e).map_err(render)?
            };
            let paths = if opts.attr_paths.is_empty() {
                vec![String::new()]
            } else {
                opts.attr_paths.clone()
            };
            for path in paths {
                let v = firn_eval::attr_path::find(&mut ev, top.clone(), &path, &args)
                    .map_err(render)?;
                if opts.eval {
                    // Called only when there are `--arg`s, as CppNix (`-A`'s steps are).
                    let v = match args.is_empty() {
                        true => v,
                        false => ev.auto_call(v, &args).map_err(render)?,
                    };
                    if opts.output == Output::Raw {
                        let s = ev
                            .coerce_in(
                                &v,
                                false,
                                true,
                                Some(("while generating the nix-instantiate output", None)),
                            )
                            .map_err(render)?;
                        firn_eval::term::write_stdout(&s.s, false).map_err(|e| e.to_string())?;
                        continue;
                    }
                    if opts.output == Output::Xml {
                        // Forced as it is written (when strict), as CppNix: the document
                        // ends with its own newline.
                        let o = firn_eval::builtins_misc::XmlOptions {
                            strict: opts.strict,
                            location: !opts.no_location,
                        };
                        // Written as far as it goes before an error, as CppNix does.
                        let (text, failed) =
                            match firn_eval::builtins_misc::value_to_xml(&mut ev, &v, o) {
                                Ok(x) => (x.s.to_string(), None),
                                Err((partial, e)) => (partial, Some(e)),
                            };
                        firn_eval::term::write_stdout(&text, false).map_err(|e| e.to_string())?;
                        if let Some(e) = failed {
                            return Err(render(e));
                        }
                        continue;
                    }
                    let json = opts.output == Output::Json;
                    if opts.strict || json {
                        firn_eval::builtins::deep_force(&mut ev, &v).map_err(render)?;
                    }
                    let s = if json {
                        let mut s = String::new();
                        firn_eval::builtins_more::to_json(
                            &mut ev,
                            &v,
                            &mut s,
                            &mut Vec::new(),
                            true,
                        )
                        .map_err(render)?;
                        s
                    } else {
                        firn_eval::print::print_value(&mut ev, &v, opts.strict).map_err(render)?
                    };
                    firn_eval::term::write_stdout(&s, true).map_err(|e| e.to_string())?;
                    continue;
                }
                let drvs =
                    firn_eval::drv_info::get_derivations(&mut ev, v, &args).map_err(render)?;
                for d in drvs {
                    let drv_path = d.drv_path(&mut ev).map_err(render)?;
                    let output = d.output_name(&mut ev).map_err(render)?;
                    found.push((drv_path.clone(), output.clone()));
                    if !print {
                        continue;
                    }
                    let mut shown = drv_path.clone();
                    match &opts.add_root {
                        Some(root) => {
                            root_nr += 1;
                            let mut name = root.clone();
                            if root_nr > 1 {
                                name = format!("{name}-{root_nr}");
                            }
                            let Some(store) = &store else {
                                return Err(crate::context::DummyStoreError::Unsupported(
                                    "addPermRoot",
                                )
                                .to_string());
                            };
                            let sp = store
                                .store_dir()
                                .parse(&drv_path)
                                .map_err(|e| e.to_string())?;
                            shown = store
                                .add_perm_root(&sp, std::path::Path::new(&name))
                                .map_err(|e| e.to_string())?
                                .to_string_lossy()
                                .into_owned();
                        }
                        None => {
                            if !warned {
                                eprintln!("warning: you did not specify '--add-root'; the result might be removed by the garbage collector");
                                warned = true;
                            }
                        }
                    }
                    if output != "out" {
                        outln!("{shown}!{output}");
                    } else {
                        outln!("{shown}");
                    }
                }
            }
        }
        // The evaluator lets go of the store; its values are left to the process's end
        // (see eval_thread).
        ev.store = firn_eval::store::EvalStore::read_only(ev.store.dir.clone());
        std::mem::forget(ev);
        let store = store
            .map(|s| {
                Rc::try_unwrap(s).map_err(|_| "the evaluator still holds the store".to_string())
            })
            .transpose()?;
        Ok((found, store))
    })?;
    match result {
        Ok(r) => Ok(r),
        Err(msg) => {
            firn_eval::term::write_stderr_line(&firn_eval::error::error_line(&msg));
            Err(Failure {
                code: 1,
                msg,
                silent: true,
            }
            .into())
        }
    }
}

/// The set functions are called with (CppNix's auto-arguments): each `--argstr` (`true`) a
/// string, each `--arg` its expression, parsed now and evaluated only if it is used.
pub fn auto_args(
    ev: &mut firn_eval::Evaluator,
    given: &[(String, String, bool)],
) -> Result<firn_eval::value::AttrMap, firn_eval::error::EvalError> {
    use firn_eval::value::{AttrMap, Thunk, Value};
    let mut args = AttrMap::new();
    for (name, value, is_str) in given {
        let t = if *is_str {
            Thunk::value(Value::str(value.as_str()))
        } else {
            let cwd = std::env::current_dir()
                .map(|d| d.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "/".into());
            let e = ev.parse(value, "«string»", &cwd)?;
            ev.top_thunk(e)
        };
        args.insert(name.as_str().into(), t);
    }
    Ok(args)
}

/// One expression from the command line: `-E` text, `-` for stdin, or a file (a directory
/// means its `default.nix`); `<name>` and URIs are looked up by the evaluator
/// ([`resolve_input`]).
pub fn read_input(e: &str, from_expr: bool, cwd: &str) -> Result<Input> {
    if from_expr {
        return Ok(Input {
            text: e.to_string(),
            origin: "«string»".to_string(),
            base_dir: cwd.to_string(),
            lookup: false,
            flake: false,
        });
    }
    if e == "-" {
        let mut s = Vec::new();
        std::io::stdin()
            .read_to_end(&mut s)
            .context("reading standard input")?;
        return Ok(Input {
            text: firn_syntax::bytes::decode(s),
            origin: "«stdin»".to_string(),
            base_dir: cwd.to_string(),
            lookup: false,
            flake: false,
        });
    }
    if firn_eval::search_path::is_uri(e) || (e.len() > 2 && e.starts_with('<') && e.ends_with('>'))
    {
        return Ok(Input {
            text: String::new(),
            origin: e.to_string(),
            base_dir: String::new(),
            lookup: true,
            flake: false,
        });
    }
    read_file(&crate::paths::absolute(e)?)
}

/// The file at `path` (absolute; a directory means its `default.nix`) to evaluate.
fn read_file(path: &str) -> Result<Input> {
    let mut path = path.to_string();
    if std::path::Path::new(&path).is_dir() {
        path = format!("{path}/default.nix");
    }
    let text = std::fs::read(&path)
        .map(firn_syntax::bytes::decode)
        .with_context(|| format!("reading file '{path}'"))?;
    let base_dir = std::path::Path::new(&path)
        .parent()
        .map(|d| d.to_string_lossy().into_owned())
        .unwrap_or_else(|| "/".into());
    Ok(Input {
        text,
        origin: path,
        base_dir,
        lookup: false,
        flake: false,
    })
}

/// `input` read, once the evaluator has looked up where its file argument is (CppNix's
/// `lookupFileArg`: `<name>` in the search path, a URI's tarball unpacked in the store).
pub fn resolve_input(ev: &mut firn_eval::Evaluator, input: Input) -> Result<Input, String> {
    if !input.lookup {
        return Ok(input);
    }
    let path =
        firn_eval::search_path::lookup_file_arg(ev, &input.origin).map_err(|e| e.render(false))?;
    read_file(&path).map_err(|e| crate::report::error_text(e.as_ref()))
}
