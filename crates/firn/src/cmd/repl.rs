//! `nix repl`: the interactive read–eval–print loop, as CppNix's. Output follows CppNix 2.8
//! (the banner, `nix-repl> ` prompts, values shown one level deep, messages on stderr, the
//! echo of piped input), with the current manual's long command names, `--file` and `--expr`.
//!
//! Everything runs on one thread with a large stack (the evaluator is not `Send`): the
//! [`Session`] holds the evaluator and the variables in scope; `input` reads lines (with
//! rustyline's editing, history and completion on a terminal, plainly otherwise), `print`
//! shows values, `complete` finds completions.

mod complete;
mod input;
mod print;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::rc::Rc;

use anyhow::{Context as _, Result};
use clap::Args;
use firn_eval::error::EvalError;
use firn_eval::rc_str::RcStr;
use firn_eval::store::EvalStore;
use firn_eval::value::{AttrMap, Env, Scope, Thunk, Value, VarMap};
use firn_eval::Evaluator;
use firn_store::LocalStore;
use firn_syntax::ast::{Expr, Symbol};

use crate::context::{Ctx, Failure};

#[derive(Args, Debug)]
pub struct ReplArgs {
    /// Interpret the attribute paths given as arguments against the value of this file, and
    /// load the result into scope.
    #[arg(short = 'f', long)]
    file: Option<String>,
    /// Interpret the attribute paths given as arguments against the value of this
    /// expression, and load the result into scope.
    #[arg(long)]
    expr: Option<String>,
    #[command(flatten)]
    common: crate::cmd::eval::CommonEvalArgs,
    /// Allow access to mutable paths and repositories (accepted: firn's evaluation is not
    /// restricted to pure mode).
    #[arg(long)]
    impure: bool,
    /// Files (or `<name>` search path entries) to load, as `:l` does; with `--file` or
    /// `--expr`, attribute paths of that value.
    files: Vec<String>,
}

/// The prompt, and the prompt of continuation lines (as wide, blank).
pub(crate) const PROMPT: &str = "nix-repl> ";
pub(crate) const CONTINUATION: &str = "          ";

/// The origin of expressions typed at the prompt (CppNix's name for it).
const ORIGIN: &str = "«string»";

pub fn run(ctx: Ctx, a: ReplArgs) -> Result<()> {
    let auto_args = a.common.auto_args();
    let installable = match (&a.file, &a.expr) {
        (Some(_), Some(_)) => anyhow::bail!("'--expr' and '--file' cannot be used together"),
        (Some(f), None) => Some(Source::File(f.clone())),
        (None, Some(e)) => Some(Source::Expr(e.clone())),
        (None, None) => None,
    };
    let (files, attr_paths) = match installable {
        Some(_) if a.files.is_empty() => (Vec::new(), vec![String::new()]),
        Some(_) => (Vec::new(), a.files.clone()),
        None => (a.files.clone(), Vec::new()),
    };
    // As CppNix's repl, evaluation writes to the store (derivations, sources); without a
    // usable store, paths are only computed.
    let store = match ctx.open_store() {
        Ok(s) => Some(s),
        Err(e) => {
            eprintln!(
                "warning: {}; evaluating without writing to the store",
                firn_eval::term::for_stderr(&crate::report::error_text(e.as_ref()))
            );
            None
        }
    };
    let cwd = crate::paths::cwd()?;
    let opts = Options {
        include: a.common.include.clone(),
        cwd,
        auto_args,
        installable,
        attr_paths,
        color: use_color(),
    };
    crate::alloc::configure();
    let code = std::thread::Builder::new()
        .stack_size(firn_eval::eval::EVAL_THREAD_STACK)
        .spawn(move || repl_thread(ctx, opts, store, files))
        .context("starting the evaluator thread")?
        .join()
        .map_err(|_| anyhow::anyhow!("the evaluator panicked"))?;
    if code != 0 {
        return Err(Failure {
            code,
            msg: "the repl failed to start".into(),
            silent: true,
        }
        .into());
    }
    Ok(())
}

/// Colours on stdout, as Nix's `shouldANSI`: a terminal, `TERM` not `dumb`, no `NO_COLOR`.
fn use_color() -> bool {
    std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none()
        && std::env::var("TERM").map_or(true, |t| t != "dumb")
}

/// The whole repl, on the evaluator's thread; returns the exit code.
fn repl_thread(ctx: Ctx, opts: Options, store: Option<LocalStore>, files: Vec<String>) -> u8 {
    let mut session = match Session::new(ctx, opts, store.map(Rc::new)) {
        Ok(s) => s,
        Err(e) => {
            report(&e);
            return 1;
        }
    };
    notice(&format!(
        "Welcome to Nix {} (firn {}). Type :? for help.\n",
        firn_eval::NIX_VERSION,
        env!("CARGO_PKG_VERSION")
    ));
    session.loaded_files = files;
    match session.load_all() {
        Ok(true) => notice(""),
        Ok(false) => {}
        Err(e) => {
            report(&e);
            return 1;
        }
    }
    let session = Rc::new(RefCell::new(session));
    let mut reader = input::Reader::new(session.clone());
    let mut text = String::new();
    loop {
        let prompt = if text.is_empty() {
            PROMPT
        } else {
            CONTINUATION
        };
        match reader.read_line(prompt) {
            input::Line::Text(l) => {
                text.push_str(&l);
                text.push('\n');
            }
            input::Line::Interrupted => {
                text.clear();
                continue;
            }
            input::Line::Eof => {
                reader.finish();
                break;
            }
        }
        // A panic in the evaluator (a bug) is reported, and the session goes on.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            session.borrow_mut().process_line(&text)
        }))
        .unwrap_or_else(|_| {
            Err(LineError::Msg(
                "firn's evaluator failed on this input (a bug in firn)".into(),
            ))
        });
        match outcome {
            Ok(Flow::Prompt) => {}
            Ok(Flow::Quit) => break,
            Err(LineError::Incomplete) => continue,
            Err(e) => report(&e),
        }
        text.clear();
        outln!();
    }
    0
}

/// Print a message on stderr (after what stdout has so far, so the two interleave as
/// written).
pub(crate) fn notice(msg: &str) {
    let _ = std::io::stdout().flush();
    firn_eval::term::write_stderr_line(msg);
}

/// Print an error as the CLI does.
fn report(e: &LineError) {
    let msg = match e {
        LineError::Incomplete => "unexpected end of input".to_string(),
        // Without `--show-trace`, CppNix 2.8's repl shows no frames (current Nix shows the
        // first few, as the other commands do).
        LineError::Eval(e, true) => e.render(true),
        LineError::Eval(e, false) => e.render_alone(),
        LineError::Msg(m) => m.clone(),
    };
    notice(&firn_eval::error::error_line(&msg));
}

/// What the command line asked for, kept for reloading.
struct Options {
    cwd: String,
    include: Vec<String>,
    /// `--arg`/`--argstr` (true for `--argstr`).
    auto_args: Vec<(String, String, bool)>,
    /// `--file`/`--expr`.
    installable: Option<Source>,
    /// The attribute paths of `installable` to load.
    attr_paths: Vec<String>,
    color: bool,
}

enum Source {
    File(String),
    Expr(String),
}

/// After a line: prompt again, or leave.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    Prompt,
    Quit,
}

/// Why a line failed.
#[derive(Debug)]
pub(crate) enum LineError {
    /// The input ends inside an expression: read another line.
    Incomplete,
    /// An evaluation error, and whether to show its trace.
    Eval(EvalError, bool),
    Msg(String),
}

type LineResult<T> = Result<T, LineError>;

fn msg<T>(s: impl Into<String>) -> LineResult<T> {
    Err(LineError::Msg(s.into()))
}

/// The evaluator and what is in scope.
pub(crate) struct Session {
    ev: Evaluator,
    ctx: Ctx,
    opts: Options,
    store: Option<Rc<LocalStore>>,
    show_trace: bool,
    /// `--arg`/`--argstr` values, for functions that loaded files evaluate to.
    auto_args: AttrMap,
    /// The variables the repl added (bindings, loaded attributes), above the globals.
    vars: BTreeMap<Symbol, Thunk>,
    /// The environment with `vars`, made when first needed after a change.
    env: Option<Env>,
    /// Files loaded with `:l` or on the command line, reloaded by `:r`.
    loaded_files: Vec<String>,
    /// The names `:a`/`:l` added last (`:ll`).
    last_loaded: Vec<RcStr>,
}

impl Session {
    fn new(ctx: Ctx, opts: Options, store: Option<Rc<LocalStore>>) -> LineResult<Session> {
        let show_trace = ctx.settings.get_bool("show-trace");
        let mut s = Session {
            ev: Evaluator::new(),
            ctx,
            opts,
            store,
            show_trace,
            auto_args: AttrMap::new(),
            vars: BTreeMap::new(),
            env: None,
            loaded_files: Vec::new(),
            last_loaded: Vec::new(),
        };
        s.reset()?;
        Ok(s)
    }

    /// A fresh evaluator (nothing cached, no variables), set up from the options.
    fn reset(&mut self) -> LineResult<()> {
        let mut ev = Evaluator::with_features(self.ctx.settings.eval_features());
        ev.flake_registry = crate::cmd::flake_registry(&self.ctx);
        ev.set_stack_size(firn_eval::eval::EVAL_THREAD_STACK);
        ev.trace_verbose = self.ctx.settings.get_bool("trace-verbose");
        ev.abort_on_warn = self.ctx.settings.get_bool("abort-on-warn");
        ev.lints = self.ctx.settings.lints().unwrap_or_default();
        ev.max_call_depth = self
            .ctx
            .settings
            .max_call_depth()
            .unwrap_or(firn_eval::eval::MAX_CALL_DEPTH);
        if let Some(store) = &self.store {
            ev.store = EvalStore::with_store(store.clone(), true);
        }
        ev.set_search_path(&self.opts.include);
        let mut args = AttrMap::new();
        for (name, value, is_str) in &self.opts.auto_args {
            let t = if *is_str {
                Thunk::value(Value::str(value.as_str()))
            } else {
                let e = ev
                    .parse(value, ORIGIN, &self.opts.cwd)
                    .map_err(|e| LineError::Eval(e, self.show_trace))?;
                let env = ev.base_env.clone();
                ev.thunk(e, &env)
            };
            args.insert(name.as_str().into(), t);
        }
        self.ev = ev;
        self.auto_args = args;
        self.vars.clear();
        self.env = None;
        Ok(())
    }

    fn eval_err(&self, e: EvalError) -> LineError {
        LineError::Eval(e, self.show_trace)
    }

    /// The environment of typed expressions: the globals, then the repl's variables.
    fn env(&mut self) -> Env {
        if let Some(env) = &self.env {
            return env.clone();
        }
        let vars = VarMap::from(self.vars.clone());
        let env = self.ev.base_env.push(Scope::Vars(vars));
        self.env = Some(env.clone());
        env
    }

    /// Parse typed text with the repl's variables in scope.
    fn parse(&mut self, text: &str) -> LineResult<&'static Expr> {
        let names: Vec<Symbol> = self.vars.keys().copied().collect();
        match self
            .ev
            .parse_with_names(text, ORIGIN, &self.opts.cwd, &names)
        {
            Ok(e) => Ok(e),
            Err(e)
                if e.msg
                    .lines()
                    .next()
                    .is_some_and(|l| l.contains("unexpected end of file")) =>
            {
                Err(LineError::Incomplete)
            }
            Err(e) => Err(self.eval_err(e)),
        }
    }

    /// Evaluate typed text (to weak head normal form).
    fn eval_string(&mut self, text: &str) -> LineResult<Value> {
        let e = self.parse(text)?;
        let env = self.env();
        self.ev.eval(e, &env).map_err(|e| self.eval_err(e))
    }

    /// Bind `name` for later lines.
    fn add_var(&mut self, name: &str, t: Thunk) {
        let sym = self.ev.sym(name);
        self.vars.insert(sym, t);
        self.env = None;
    }

    /// The names in scope: the globals and the repl's variables (for completion).
    pub(crate) fn names(&self) -> std::collections::BTreeSet<String> {
        let mut out: std::collections::BTreeSet<String> = self
            .ev
            .globals
            .iter()
            .enumerate()
            .filter(|(_, t)| t.is_some())
            .map(|(i, _)| self.ev.interner.name(Symbol(i as u32)).to_string())
            .collect();
        out.extend(
            self.vars
                .keys()
                .map(|s| self.ev.interner.name(*s).to_string()),
        );
        out
    }

    /// Handle one complete input (possibly several lines).
    pub(crate) fn process_line(&mut self, input: &str) -> LineResult<Flow> {
        let line = input.trim();
        if line.is_empty() {
            return Ok(Flow::Prompt);
        }
        let (command, arg) = if line.starts_with(':') {
            match line.find([' ', '\n', '\r', '\t']) {
                Some(p) => (&line[..p], line[p..].trim()),
                None => (line, ""),
            }
        } else {
            ("", line)
        };
        match command {
            ":?" | ":help" => out!("{}", HELP),
            ":a" | ":add" => {
                let v = self.eval_string(arg)?;
                self.add_attrs(v)?;
            }
            ":l" | ":load" => self.load_file(arg)?,
            ":r" | ":reload" => self.reload()?,
            ":p" | ":print" => {
                let v = self.eval_string(arg)?;
                self.print(&v, usize::MAX)?;
            }
            ":t" => {
                let v = self.eval_string(arg)?;
                outln!("{}", show_type(&v));
            }
            ":q" | ":quit" => return Ok(Flow::Quit),
            ":doc" => self.doc(arg)?,
            ":ll" | ":last-loaded" => {
                for n in &self.last_loaded {
                    outln!("{n}");
                }
            }
            ":st" | ":te" | ":trace-enable" => {
                let on = match arg {
                    "" => !self.show_trace,
                    "true" => true,
                    "false" => false,
                    _ => return msg(format!("unexpected argument '{arg}' to {command}")),
                };
                self.show_trace = on;
                outln!(
                    "{}",
                    if on {
                        "showing error traces"
                    } else {
                        "not showing error traces"
                    }
                );
            }
            ":b" | ":bl" => self.build(arg, command == ":bl")?,
            ":log" => self.log(arg)?,
            ":e" | ":edit" => self.edit(arg)?,
            ":i" | ":s" | ":sh" | ":u" => {
                let what = match command {
                    ":i" => "installing into a profile (nix-env)",
                    ":u" => "a shell with a derivation (nix-shell and nixpkgs)",
                    _ => "a shell with a derivation's dependencies (nix-shell)",
                };
                return msg(format!("'{command}' ({what}) is not supported by firn yet"));
            }
            ":lf" | ":load-flake" => {
                return msg(format!("'{command}': flakes are not supported by firn yet"))
            }
            "" => self.expression_or_binding(line)?,
            _ => return msg(format!("unknown command '{command}'")),
        }
        Ok(Flow::Prompt)
    }

    /// `NAME = EXPR` binds; so do other bindings, as in current Nix (`a = 1; b = 2;`,
    /// `inherit (s) x y`, `inherit x`); anything else is evaluated and printed.
    fn expression_or_binding(&mut self, line: &str) -> LineResult<()> {
        if let Some(p) = line.find('=') {
            let name = line[..p].trim();
            if line.as_bytes().get(p + 1) != Some(&b'=') && is_var_name(name) {
                // The rest is parsed as typed (after the `=`), so columns match CppNix 2.8's.
                match self.parse(&line[p + 1..]) {
                    Ok(e) => {
                        let env = self.env();
                        let t = self.ev.thunk(e, &env);
                        self.add_var(name, t);
                        return Ok(());
                    }
                    // More bindings after the first, or else 2.8's error for the one.
                    Err(x) => {
                        if matches!(x, LineError::Incomplete) || !self.bindings(line)? {
                            return Err(x);
                        }
                        return Ok(());
                    }
                }
            }
        }
        if self.bindings(line)? {
            return Ok(());
        }
        let v = self.eval_string(line)?;
        self.print(&v, 1)
    }

    /// Bind what `line` binds if it is bindings (each in the scope of the line, as current
    /// Nix's repl binds them); false if it is not.
    fn bindings(&mut self, line: &str) -> LineResult<bool> {
        let names: Vec<Symbol> = self.vars.keys().copied().collect();
        let Some(e) = self
            .ev
            .parse_repl_bindings(line, ORIGIN, &self.opts.cwd, &names)
        else {
            return Ok(false);
        };
        let env = self.env();
        let v = self.ev.eval(e, &env).map_err(|x| self.eval_err(x))?;
        if let Value::Attrs(set) = v {
            for (k, t) in set.iter() {
                self.add_var(k, t.clone());
            }
        }
        Ok(true)
    }

    /// Print a value on stdout (what was printed before an error stays, as in CppNix).
    fn print(&mut self, v: &Value, depth: usize) -> LineResult<()> {
        let mut out = String::new();
        let r = print::print_value(&mut self.ev, v, depth, self.opts.color, &mut out);
        match r {
            Ok(()) => {
                outln!("{out}");
                Ok(())
            }
            Err(e) => {
                out!("{out}");
                Err(self.eval_err(e))
            }
        }
    }

    /// Add a set's attributes to the scope (`:a`, `:l`).
    fn add_attrs(&mut self, v: Value) -> LineResult<()> {
        let Value::Attrs(set) = v else {
            return msg(format!(
                "value is {} while a set was expected",
                v.type_name()
            ));
        };
        for (k, t) in set.iter() {
            self.add_var(k, t.clone());
        }
        self.last_loaded = set.keys().cloned().collect();
        notice(&format!("Added {} variables.", set.len()));
        Ok(())
    }

    /// `:l FILE`: evaluate a file (a `<name>` in the search path, a URL of a tarball, or a
    /// path), call it with `--arg`s when it is a function, and add its attributes.
    fn load_file(&mut self, arg: &str) -> LineResult<()> {
        self.loaded_files.retain(|f| f != arg);
        self.loaded_files.push(arg.to_string());
        let path = self.lookup_file_arg(arg)?;
        let v = self.eval_file(&path)?;
        let args = self.auto_args.clone();
        let v = self.ev.auto_call(v, &args).map_err(|e| self.eval_err(e))?;
        self.add_attrs(v)
    }

    /// Where a `:l` argument is (CppNix's `lookupFileArg`).
    fn lookup_file_arg(&mut self, arg: &str) -> LineResult<String> {
        firn_eval::search_path::lookup_file_arg(&mut self.ev, arg).map_err(|e| self.eval_err(e))
    }

    fn path_of(&mut self, v: &Value) -> LineResult<String> {
        let s = self
            .ev
            .coerce_to_string(v, false, false)
            .map_err(|e| self.eval_err(e))?;
        Ok(s.s.to_string())
    }

    /// The value of a file (a directory's `default.nix`), read now even if it was imported
    /// before, with CppNix's messages for missing files.
    fn eval_file(&mut self, path: &str) -> LineResult<Value> {
        let meta = std::fs::metadata(self.ev.store.real_path(path)).map_err(|e| {
            LineError::Msg(format!("getting status of '{path}': {}", io_reason(&e)))
        })?;
        let file = if meta.is_dir() {
            format!("{}/default.nix", path.trim_end_matches('/'))
        } else {
            path.to_string()
        };
        let text = std::fs::read_to_string(self.ev.store.real_path(&file))
            .map_err(|e| LineError::Msg(format!("opening file '{file}': {}", io_reason(&e))))?;
        let dir = std::path::Path::new(&file)
            .parent()
            .map(|d| d.to_string_lossy().into_owned())
            .unwrap_or_else(|| "/".into());
        let e = self
            .ev
            .parse(&text, &file, &dir)
            .map_err(|e| self.eval_err(e))?;
        self.ev.eval_top(e).map_err(|e| self.eval_err(e))
    }

    /// `--file`/`--expr` with their attribute paths.
    fn load_installables(&mut self) -> LineResult<()> {
        let Some(src) = &self.opts.installable else {
            return Ok(());
        };
        let top = match src {
            Source::File(f) => {
                let path = self.lookup_file_arg(&f.clone())?;
                self.eval_file(&path)?
            }
            Source::Expr(e) => {
                let e = e.clone();
                let cwd = self.opts.cwd.clone();
                let x = self
                    .ev
                    .parse(&e, ORIGIN, &cwd)
                    .map_err(|e| self.eval_err(e))?;
                self.ev.eval_top(x).map_err(|e| self.eval_err(e))?
            }
        };
        let args = self.auto_args.clone();
        for path in self.opts.attr_paths.clone() {
            notice(&format!("Loading installable '{path}'..."));
            let v = self.select(top.clone(), &path, &args)?;
            let v = self.ev.auto_call(v, &args).map_err(|e| self.eval_err(e))?;
            self.add_attrs(v)?;
        }
        Ok(())
    }

    /// Follow an attribute path, calling functions on the way with the `--arg`s.
    fn select(&mut self, v: Value, path: &str, args: &AttrMap) -> LineResult<Value> {
        firn_eval::attr_path::find(&mut self.ev, v, path, args).map_err(|e| self.eval_err(e))
    }

    /// Load the files (and `--file`/`--expr`) again, each announced; true if there were any.
    fn load_all(&mut self) -> LineResult<bool> {
        let files = std::mem::take(&mut self.loaded_files);
        let mut first = true;
        for (i, f) in files.iter().enumerate() {
            if !first {
                notice("");
            }
            first = false;
            notice(&format!("Loading '{f}'..."));
            if let Err(e) = self.load_file(f) {
                // Keep the files not reached yet for the next `:r`.
                for rest in &files[i + 1..] {
                    self.loaded_files.retain(|x| x != rest);
                    self.loaded_files.push(rest.clone());
                }
                return Err(e);
            }
        }
        if self.opts.installable.is_some() {
            if !first {
                notice("");
            }
            first = false;
            self.load_installables()?;
        }
        Ok(!first)
    }

    /// `:r`: a fresh evaluator (files are read again), without the variables, then the files.
    fn reload(&mut self) -> LineResult<()> {
        self.reset()?;
        self.load_all().map(|_| ())
    }

    /// `:doc`: a built-in function's synopsis and description (firn's own, from
    /// `firn_eval::builtin_docs`), or a function's name, place and doc comment
    /// ([`Self::lambda_doc`]), laid out as current Nix shows its documentation. A set with
    /// `__functor` is documented as the function it stands for; an attribute `e.name` that is
    /// not a documented function, by where it is defined and the doc comment before it.
    fn doc(&mut self, arg: &str) -> LineResult<()> {
        // `e.name`: the attribute, found once, with its place kept for a value without
        // documentation of its own; anything else evaluated as it is.
        let (v, fallback) = match self.selected_attribute(arg)? {
            Some((name, set, t)) => {
                let off = self
                    .ev
                    .positions
                    .attr_offset(&set, &name, &self.ev.interner);
                let v = self.ev.force(&t).map_err(|e| self.eval_err(e))?;
                (v, off.map(|o| (name, o)))
            }
            None => (self.eval_string(arg)?, None),
        };
        if self.value_doc(v, 0)? {
            return Ok(());
        }
        let Some((name, off)) = fallback else {
            return msg("value does not have documentation");
        };
        let positions = &self.ev.positions;
        outln!("Attribute `{name}`");
        outln!();
        if let Some((file, line, col)) = positions.locate(off) {
            outln!("  … defined at {file}:{line}:{col}");
            outln!();
        }
        let comment = positions
            .text_before(off)
            .and_then(firn_eval::doc_comment::comment_before);
        match comment {
            Some(c) => print_markdown(&c),
            None => outln!("No documentation found."),
        }
        Ok(())
    }

    /// For `:doc e.a.name` (names written out): `name`, the set `e.a` that has it, and its
    /// value. `None` for anything else, or when a set on the way lacks the name (evaluating
    /// the whole then gives the error).
    fn selected_attribute(
        &mut self,
        arg: &str,
    ) -> LineResult<Option<(String, Rc<firn_eval::value::AttrSet>, Thunk)>> {
        let e = self.parse(arg)?;
        let firn_syntax::ExprKind::Select { e: base, path } = &e.kind else {
            return Ok(None);
        };
        let env = self.env();
        let mut v = self.ev.eval(base, &env).map_err(|e| self.eval_err(e))?;
        for (i, a) in path.iter().enumerate() {
            let firn_syntax::ast::AttrName::Static(s) = a else {
                return Ok(None);
            };
            let name = self.ev.interner.name(*s).to_string();
            let Value::Attrs(set) = v else {
                return Ok(None);
            };
            let Some(t) = set.get(&name).cloned() else {
                return Ok(None);
            };
            if i + 1 == path.len() {
                return Ok(Some((name, set, t)));
            }
            v = self.ev.force(&t).map_err(|e| self.eval_err(e))?;
        }
        Ok(None)
    }

    /// Whether `l` is the `derivation` wrapper of `builtins` (a Nix function).
    fn is_derivation_wrapper(&mut self, l: &firn_eval::value::Lambda) -> bool {
        let Some(Value::Attrs(b)) = self.ev.builtins.peek() else {
            return false;
        };
        let Some(t) = b.get("derivation").cloned() else {
            return false;
        };
        matches!(self.ev.force(&t), Ok(Value::Lambda(w)) if std::ptr::eq(w.expr, l.expr))
    }

    /// Print the documentation of `v` if it has some (a builtin, a function, a set with
    /// `__functor` standing for one); whether it did.
    fn value_doc(&mut self, v: Value, depth: usize) -> LineResult<bool> {
        let name = match &v {
            Value::PrimOp(p) => Some(p.name.trim_start_matches("__").to_string()),
            // The `derivation` wrapper is a Nix function, documented as a builtin.
            Value::Lambda(l) if self.is_derivation_wrapper(l) => Some("derivation".to_string()),
            Value::Attrs(a) if depth < 16 => {
                let Some(f) = a.get("__functor").cloned() else {
                    return Ok(false);
                };
                // The function the set stands for: its functor applied to the set.
                let applied = self
                    .ev
                    .force(&f)
                    .and_then(|f| self.ev.call(f, Thunk::value(v.clone())))
                    .map_err(|e| self.eval_err(e))?;
                return self.value_doc(applied, depth + 1);
            }
            _ => None,
        };
        let Some(doc) = name.and_then(|n| firn_eval::builtin_docs::lookup(&n)) else {
            if let Value::Lambda(l) = &v {
                self.lambda_doc(l.expr.span.start)?;
                return Ok(true);
            }
            return Ok(false);
        };
        let mut synopsis = format!("Synopsis: builtins.{}", doc.name);
        for a in doc.args {
            synopsis.push(' ');
            synopsis.push_str(a);
        }
        outln!("{synopsis}");
        outln!();
        print_markdown(doc.text);
        Ok(true)
    }

    /// `:doc` of a function defined at span offset `start`: as current Nix, "Function", its
    /// name and where it is defined, then its doc comment (`/** … */` before it or before the
    /// name it is bound to), if it has one.
    fn lambda_doc(&mut self, start: u32) -> LineResult<()> {
        let positions = &self.ev.positions;
        let doc = positions
            .text_before(start)
            .map(firn_eval::doc_comment::function_doc)
            .unwrap_or_default();
        let place = positions
            .locate(start)
            .map(|(file, line, col)| format!("defined at {file}:{line}:{col}"));
        match (&doc.name, place) {
            (Some(n), Some(p)) => outln!("Function `{n}`\n  … {p}"),
            (Some(n), None) => outln!("Function `{n}`"),
            (None, Some(p)) => outln!("Function {p}"),
            (None, None) => outln!("Function"),
        }
        if let Some(c) = &doc.comment {
            outln!();
            print_markdown(c);
        }
        Ok(())
    }

    /// The `.drv` of a derivation value, which must be valid in the store.
    fn derivation_path(&mut self, v: &Value) -> LineResult<(Rc<LocalStore>, String)> {
        let not_drv = "expression does not evaluate to a derivation, so I can't build it";
        let Value::Attrs(a) = v else {
            return msg(not_drv);
        };
        if !self.ev.is_derivation(a).map_err(|e| self.eval_err(e))? {
            return msg(not_drv);
        }
        if a.get("name").is_none() {
            return msg("derivation name missing");
        }
        let Some(t) = a.get("drvPath").cloned() else {
            return msg(
                "expression did not evaluate to a valid derivation (no 'drvPath' attribute)",
            );
        };
        let pv = self.ev.force(&t).map_err(|e| self.eval_err(e))?;
        let p = self.path_of(&pv)?;
        let Some(store) = self.store.clone() else {
            return msg("building needs a store, and none could be opened");
        };
        let valid = store
            .store_dir()
            .parse(&p)
            .ok()
            .map(|sp| store.is_valid_path(&sp))
            .transpose()
            .map_err(|e| LineError::Msg(crate::report::error_text(&e)))?
            .unwrap_or(false);
        if !valid {
            return msg(format!("expression evaluated to invalid derivation '{p}'"));
        }
        Ok((store, p))
    }

    /// `:b EXPR`: build a derivation and show its outputs (`:bl`: with `repl-result-*` links).
    fn build(&mut self, arg: &str, links: bool) -> LineResult<()> {
        let v = self.eval_string(arg)?;
        let (store, drv) = self.derivation_path(&v)?;
        let sd = store.store_dir().clone();
        let wanted = firn_build::DerivedPath::Built {
            drv: sd.parse(&drv).map_err(|e| LineError::Msg(e.to_string()))?,
            outputs: None,
        };
        let _ = std::io::stdout().flush();
        if let Err(e) = crate::realise::realise(
            &self.ctx,
            &store,
            std::slice::from_ref(&wanted),
            &crate::realise::BuildFlags::default(),
        ) {
            if e.downcast_ref::<Failure>().is_some_and(|f| f.silent) {
                // The failures were printed; the repl goes on.
                return Ok(());
            }
            return msg(crate::report::error_text(e.as_ref()));
        }
        let mut outs = crate::realise::resolved_outputs(&store, &wanted)
            .map_err(|e| LineError::Msg(crate::report::error_text(e.as_ref())))?;
        outs.sort();
        outln!();
        outln!("This derivation produced the following outputs:");
        for (name, p) in outs {
            if links {
                let link = format!("repl-result-{name}");
                crate::realise::make_result_link(&store, std::path::Path::new(&link), &p)
                    .map_err(|e| LineError::Msg(crate::report::error_text(e.as_ref())))?;
                outln!("  ./{link} -> {}", sd.display(&p));
            } else {
                outln!("  {name} -> {}", sd.display(&p));
            }
        }
        Ok(())
    }

    /// `:log EXPR`: the build log of a derivation.
    fn log(&mut self, arg: &str) -> LineResult<()> {
        let v = self.eval_string(arg)?;
        let (store, drv) = self.derivation_path(&v)?;
        let settings = crate::realise::build_settings(
            &self.ctx,
            &store,
            &crate::realise::BuildFlags::default(),
        )
        .map_err(|e| LineError::Msg(crate::report::error_text(e.as_ref())))?;
        let _ = std::io::stdout().flush();
        crate::realise::print_log(&store, &settings.log_dir, &drv)
            .map_err(|e| LineError::Msg(crate::report::error_text(e.as_ref())))
    }

    /// `:e EXPR`: open a file, a function's definition or a package's `meta.position` in
    /// `$EDITOR`, then reload.
    fn edit(&mut self, arg: &str) -> LineResult<()> {
        let v = self.eval_string(arg)?;
        let (file, line) = match &v {
            Value::Path(_) | Value::String(_) => (self.path_of(&v)?, 0),
            Value::Lambda(l) => match self.ev.positions.locate(l.expr.span.start) {
                Some((file, line, _)) if file.starts_with('/') => (file.to_string(), line),
                _ => return msg(format!("'{arg}' cannot be shown in an editor")),
            },
            Value::Attrs(a) => {
                let pos = match a.get("meta").cloned() {
                    Some(m) => match self.ev.force(&m).map_err(|e| self.eval_err(e))? {
                        Value::Attrs(m) => m.get("position").cloned(),
                        _ => None,
                    },
                    None => None,
                };
                let pos = match pos {
                    Some(p) => {
                        let pv = self.ev.force(&p).map_err(|e| self.eval_err(e))?;
                        Some(self.path_of(&pv)?)
                    }
                    None => None,
                };
                match pos.as_deref().and_then(|p| p.rsplit_once(':')) {
                    Some((f, l)) => (f.to_string(), l.parse().unwrap_or(0)),
                    None => {
                        return msg(format!(
                            "package '{arg}' has no source location information"
                        ))
                    }
                }
            }
            _ => {
                return msg(format!(
                    "package '{arg}' has no source location information"
                ))
            }
        };
        let editor = std::env::var("EDITOR").unwrap_or_else(|_| "nano".into());
        let mut words = editor.split_whitespace();
        let Some(program) = words.next() else {
            return msg("$EDITOR is empty");
        };
        let mut cmd = std::process::Command::new(program);
        cmd.args(words);
        if line > 0
            && ["emacs", "nano", "vim", "kak"]
                .iter()
                .any(|e| editor.contains(e))
        {
            cmd.arg(format!("+{line}"));
        }
        cmd.arg(&file);
        let _ = std::io::stdout().flush();
        let status = cmd
            .status()
            .map_err(|e| LineError::Msg(format!("running '{program}': {e}")))?;
        if !status.success() {
            return msg(format!("'{program}' failed ({status})"));
        }
        self.reload()
    }
}

/// The text of an IO error without Rust's `(os error N)`.
fn io_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// A name `NAME = EXPR` can bind (CppNix's test, which lets keywords through).
pub(crate) fn is_var_name(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        None => false,
        Some(c) if c.is_ascii_digit() || c == '-' || c == '\'' => false,
        Some(_) => s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '\'')),
    }
}

/// `:t`: what a value is, as CppNix's `showType`.
fn show_type(v: &Value) -> String {
    match v {
        Value::String(s) if !s.context.is_empty() => "a string with context".into(),
        Value::PrimOp(p) => format!(
            "the built-in function '{}'",
            p.name.trim_start_matches("__")
        ),
        Value::PrimOpApp(p, _) => format!(
            "the partially applied built-in function '{}'",
            p.name.trim_start_matches("__")
        ),
        other => other.type_name().into(),
    }
}

/// `:?`.
const HELP: &str = "\
The following commands are available:

  <expr>               Evaluate an expression and print its value
  <x> = <expr>         Bind a variable to an expression, for later lines
  :a, :add <expr>      Add the attributes of a set to the scope
  :b <expr>            Build a derivation and show its outputs
  :bl <expr>           Build a derivation, with repl-result-* links here
  :doc <expr>          Say which built-in function a value is
  :e, :edit <expr>     Edit a file, a function or a package in $EDITOR, then reload
  :l, :load <path>     Load a Nix file (or <name>) and add its attributes to the scope
  :ll, :last-loaded    List the names the last :a or :l added
  :log <expr>          Show the build log of a derivation
  :p, :print <expr>    Evaluate an expression and print its value completely
  :q, :quit            Leave the repl
  :r, :reload          Load all loaded files again (bindings are dropped)
  :st, :te [bool]      Show (or not) traces with errors; alone, toggle
  :t <expr>            Say what type of value an expression has
  :?, :help            Show this list

Not supported by firn yet: :i (install), :s and :u (shells), :lf (flakes).
";

/// Print documentation written in Markdown as a terminal shows it ([`crate::markdown`]).
fn print_markdown(text: &str) {
    for l in crate::markdown::render(text, 80) {
        outln!("{l}");
    }
}
