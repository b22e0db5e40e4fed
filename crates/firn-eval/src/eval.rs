//! The evaluator: forcing thunks, evaluating expressions in environments, calling functions.

use crate::rc_str::RcStr;
use std::collections::HashMap;
use std::rc::Rc;

use firn_syntax::ast::{
    AttrDef, AttrKind, AttrName, Attrs, BinOp, Expr, ExprKind, Interner, Symbol,
};
use firn_syntax::Source;

use crate::error::{err, EResult, ErrorKind, EvalError, FramePrint};
use crate::value::*;
use crate::words::{copy_words, relay};

/// Deepest nesting of function calls before "stack overflow" is reported: the default of
/// Nix's `max-call-depth` ([`Evaluator::max_call_depth`]). Tail calls count, as every call
/// does in Nix, though they take no stack here (see [`Evaluator::eval`]).
pub const MAX_CALL_DEPTH: usize = 10_000;

/// The stack size of the threads firn evaluates on (deep Nix code recurses deeply).
pub const EVAL_THREAD_STACK: usize = 1 << 30;

/// The stack an evaluator may use when the thread's size is not known (Rust's test threads
/// have 2 MiB); see [`Evaluator::set_stack_size`].
const DEFAULT_STACK_LIMIT: usize = 3 << 19;

/// Where `<nix/...>` finds Nix's own files when the search path has none (as CppNix).
pub const COREPKGS: &str = "/__corepkgs__/";
/// `<nix/fetchurl.nix>`.
const COREPKGS_FETCHURL: &str = include_str!("corepkgs/fetchurl.nix");

/// One evaluation: the symbol table, the global scope, and the files imported so far.
pub struct Evaluator {
    pub interner: Interner,
    pub base_env: Env,
    pub builtins: Thunk,
    /// Imported files by path (a fast hash: paths come from the code evaluated).
    imports: HashMap<String, Value, foldhash::fast::RandomState>,
    pub(crate) depth: usize,
    /// Where string coercion last found (or missed) `__toString` and `outPath` in a set
    /// (see `AttrMap::get_hinted`): the sets coerced are mostly derivations of one shape.
    coerce_hints: std::cell::Cell<u32>,
    /// The names `__toString` and `outPath` as the last set coerced that had them held
    /// them: mostly the source's shared handles, so found by address.
    coerce_names: [RcStr; 2],
    pub home: String,
    /// Each symbol's name as a shared string, made once (attribute maps are keyed by them).
    names: Vec<Option<RcStr>>,
    /// Regular expressions compiled so far (`match`, `split`), whole-string ones first. A
    /// `Regex` is shared, not cloned: a clone starts with an empty matching cache.
    pub regex_cache: [HashMap<String, Rc<regex::Regex>, foldhash::fast::FixedState>; 2],
    /// Search path entries resolved so far (a URI's download, a path's existence), each
    /// with its directory or None (skipped); see `search_path::resolve_entry`.
    pub(crate) search_path_resolved: HashMap<String, Option<String>>,
    /// The global flake registry (the `flake-registry` setting): a file, a URL, or "" for
    /// none.
    pub flake_registry: String,
    /// Registry entries of the command line (`--override-flake`, `--inputs-from`): looked
    /// up before all registries (CppNix's flag registry), each `(from, to)`.
    pub(crate) flag_registry: Vec<(crate::fetch_tree::Input, crate::fetch_tree::Input)>,
    /// Whether the command's entries are in `flag_registry` (added by the
    /// first locking).
    pub(crate) flag_registry_added: bool,
    /// Where sources, text files and derivations go (or are only computed for).
    pub store: crate::store::EvalStore,
    /// Whether `builtins.traceVerbose` prints (the `trace-verbose` setting).
    pub trace_verbose: bool,
    /// `abort-on-warn`: `builtins.warn` fails after printing.
    pub abort_on_warn: bool,
    /// The experimental features on (fixed when the evaluator is made: they decide which
    /// builtins exist).
    pub features: crate::features::Features,
    /// The parser's lints (`lint-url-literals`, ...): what to do about some literals.
    pub lints: firn_syntax::Lints,
    /// Whether files named by path literals in imported files are parsed ahead on another
    /// thread (see [`crate::prefetch`]); on unless turned off.
    pub prefetch: bool,
    /// The thread parsing ahead, once a file names others.
    prefetcher: Option<crate::prefetch::Prefetcher>,
    /// How many imported files that thread had parsed.
    prefetched: usize,
    /// `max-call-depth`: how deeply calls may nest.
    pub max_call_depth: usize,
    /// `allowed-uris`: the URI prefixes fetchers may use in restricted evaluation.
    pub allowed_uris: Vec<String>,
    /// Pure or restricted evaluation (see [`crate::purity`]).
    pub(crate) restriction: crate::purity::Restriction,
    /// What pure or restricted evaluation may read, with what is under each (see
    /// [`crate::purity`]): absolute paths without a trailing `/`.
    pub(crate) allowed_paths: std::collections::HashSet<String>,
    /// [`crate::builtins::deep_force`]'s work lists, kept between calls (empty, with their
    /// room) so that a `deepSeq` per element of a list allocates nothing.
    pub(crate) deep_scratch: crate::builtins::DeepScratch,
    /// The errors thunks failed with, once caught (`None` before), by `EvalError::memo`: a
    /// thunk that failed keeps its error, as current Nix's since 2.34 (see
    /// [`Self::force_failed`]).
    failed: Vec<Option<EvalError>>,
    /// `Var(sym)` expressions made for `inherit x` of a `with` variable (one per symbol).
    var_exprs: HashMap<Symbol, &'static Expr>,
    /// The global scope by symbol number, for [`ExprKind::Global`] variables.
    pub globals: Vec<Option<Thunk>>,
    /// Parsed files and the origins of attribute sets, for positions.
    pub positions: crate::positions::Positions,
    /// Literals' values, by the index their node keeps in `Expr::memo` (1-based).
    literals: Vec<(&'static Expr, Thunk)>,
    /// The attributes of set expressions in name order (see [`NameOrder`]), by the index
    /// their node keeps in `Expr::memo` (1-based).
    name_orders: Vec<(&'static Expr, Rc<NameOrder>)>,
    /// The symbol `__overrides`.
    sym_overrides: Symbol,
    /// `__sub`, `__mul`, `__div`, `__lessThan`: the builtins the parser calls for `-`, `*`,
    /// `/` and the comparisons (see [`Self::direct_op`]).
    op_syms: [Symbol; 4],
    /// The global `builtins`, and its members that are builtins by symbol (see
    /// [`Self::global_member_primop`]); set by `builtins::install`.
    pub(crate) builtins_sym: Symbol,
    pub(crate) builtin_ops: Vec<Option<Rc<PrimOp>>>,
    /// Where this thread's stack was when the evaluator was made, and how far below that
    /// evaluation may go: nesting that is not a function call (forcing a chain of thunks,
    /// deep data) ends with an error there instead of overflowing the stack.
    stack_base: usize,
    stack_limit: usize,
    /// The calls [`Self::eval_any`]'s loops made in tail position, innermost last, as
    /// (lambda, call site): an error out of them gets a pair of frames for each, as from
    /// CppNix's nested calls. Each loop owns the entries above where it found the stack.
    tail_calls: Vec<(&'static Expr, &'static Expr)>,
}

impl Evaluator {
    /// An evaluator with no experimental features on.
    pub fn new() -> Evaluator {
        Evaluator::with_features(crate::features::Features::default())
    }

    /// An evaluator with experimental `features` on (those that add builtins add them here).
    pub fn with_features(features: crate::features::Features) -> Evaluator {
        let mut ev = Evaluator {
            interner: Interner::default(),
            base_env: Env::empty(),
            builtins: Thunk::value(Value::Null),
            imports: HashMap::default(),
            depth: 0,
            coerce_hints: std::cell::Cell::new(0),
            coerce_names: ["__toString".into(), "outPath".into()],
            home: std::env::var("HOME").unwrap_or_else(|_| "/homeless-shelter".into()),
            names: Vec::new(),
            regex_cache: Default::default(),
            search_path_resolved: HashMap::new(),
            flake_registry: "https://channels.nixos.org/flake-registry.json".into(),
            flag_registry: Vec::new(),
            flag_registry_added: false,
            store: crate::store::EvalStore::read_only(firn_format::StoreDir::default()),
            trace_verbose: false,
            abort_on_warn: false,
            features,
            lints: firn_syntax::Lints::default(),
            prefetch: true,
            prefetcher: None,
            prefetched: 0,
            max_call_depth: MAX_CALL_DEPTH,
            allowed_uris: Vec::new(),
            restriction: Default::default(),
            allowed_paths: Default::default(),
            deep_scratch: Default::default(),
            failed: Vec::new(),
            var_exprs: HashMap::new(),
            globals: Vec::new(),
            positions: Default::default(),
            literals: Vec::new(),
            name_orders: Vec::new(),
            sym_overrides: Symbol(0),
            op_syms: [Symbol(u32::MAX); 4],
            builtins_sym: Symbol(u32::MAX),
            builtin_ops: Vec::new(),
            stack_base: stack_pointer(),
            stack_limit: DEFAULT_STACK_LIMIT,
            tail_calls: Vec::new(),
        };
        ev.sym_overrides = ev.sym("__overrides");
        ev.op_syms = [
            ev.sym("__sub"),
            ev.sym("__mul"),
            ev.sym("__div"),
            ev.sym("__lessThan"),
        ];
        crate::builtins::install(&mut ev);
        ev
    }

    /// The size of the stack of the thread this evaluator runs on (it is not `Send`, so that
    /// is the thread that made it): evaluation may use all but a margin of it.
    pub fn set_stack_size(&mut self, bytes: usize) {
        self.stack_limit = bytes - (bytes / 8).min(32 << 20);
    }

    /// Bytes of stack used below where the evaluator was made.
    #[inline]
    fn stack_used(&self) -> usize {
        self.stack_base.saturating_sub(stack_pointer())
    }

    /// An error instead of a stack overflow when evaluation nests too deep. Always inlined:
    /// the calls check it on their hot paths, where a call costs more than the check.
    #[inline(always)]
    pub(crate) fn check_stack(&self) -> EResult<()> {
        if self.stack_used() > self.stack_limit {
            return Err(stack_overflow());
        }
        Ok(())
    }

    /// Put `-I` entries before `NIX_PATH` in `builtins.nixPath` (and so in `<...>` lookups).
    pub fn set_search_path(&mut self, extra: &[String]) {
        let mut entries = extra.to_vec();
        entries.extend(crate::builtins_more::nix_path_env());
        self.set_search_path_entries(entries);
    }

    /// `builtins.nixPath` made of `entries` (`PREFIX=PATH` or `PATH`).
    pub(crate) fn set_search_path_entries(&mut self, entries: Vec<String>) {
        if let Value::Attrs(set) = self.builtins.peek().unwrap_or(Value::Null) {
            if let Some(t) = set.get("nixPath") {
                t.set(ThunkState::Done(crate::builtins_more::nix_path_value(
                    entries,
                )));
            }
        }
    }

    /// The paths of `builtins.nixPath`'s entries as they were set (not evaluated).
    pub(crate) fn search_path_entries(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(Value::Attrs(set)) = self.builtins.peek() {
            if let Some(Value::List(l)) = set.get("nixPath").and_then(Thunk::peek) {
                for e in l.iter() {
                    if let Some(Value::Attrs(e)) = e.peek() {
                        if let Some(Value::String(p)) = e.get("path").and_then(Thunk::peek) {
                            out.push(p.s.to_string());
                        }
                    }
                }
            }
        }
        out
    }

    pub fn sym(&mut self, s: &str) -> Symbol {
        self.interner.intern(s)
    }

    /// The name of a symbol as a shared string.
    #[inline]
    pub fn name_rc(&mut self, s: Symbol) -> RcStr {
        if let Some(Some(n)) = self.names.get(s.0 as usize) {
            return n.clone();
        }
        self.new_name_rc(s)
    }

    /// [`Self::name_rc`] the first time a symbol is asked for.
    #[inline(never)]
    fn new_name_rc(&mut self, s: Symbol) -> RcStr {
        let n: RcStr = self.interner.name(s).into();
        set_by_symbol(&mut self.names, s, n.clone());
        n
    }

    /// The shared handle of an attribute name (the one the code's own selections use, so
    /// lookups of it match by address).
    pub fn name_rc_of(&mut self, s: &str) -> RcStr {
        let sym = self.sym(s);
        self.name_rc(sym)
    }

    /// Parse `text` (from `origin`, with relative paths against `base_dir`) and keep its AST
    /// for the rest of the evaluation.
    pub fn parse(&mut self, text: &str, origin: &str, base_dir: &str) -> EResult<&'static Expr> {
        self.parse_with_names(text, origin, base_dir, &[])
    }

    /// [`Self::parse`] for a file that will be evaluated with `names` in scope above the
    /// globals (`scopedImport`).
    pub fn parse_with_names(
        &mut self,
        text: &str,
        origin: &str,
        base_dir: &str,
        names: &[Symbol],
    ) -> EResult<&'static Expr> {
        self.parse_source(text, origin, base_dir, names, false, false)
    }

    /// Parse a repl line as bindings, as current Nix's repl does (`a = 1; b = 2;`,
    /// `inherit (s) x y`): the line as the inside of a set, or failing that with a `;` added.
    /// Gives a set expression (not recursive) whose positions are the line's own, or `None`
    /// if the line is not bindings (nothing is shown or kept then).
    pub fn parse_repl_bindings(
        &mut self,
        line: &str,
        origin: &str,
        base_dir: &str,
        names: &[Symbol],
    ) -> Option<&'static Expr> {
        let parsed = ["", ";"].into_iter().find_map(|end| {
            // A set around the line: each offset in it is one more than in the line.
            let text = format!("{{{line}{end}\n}}");
            self.parse_text(&text, origin, base_dir, names, false)
                .ok()
                .filter(|p| matches!(&p.expr.kind, ExprKind::Attrs(_)))
        })?;
        let mut e = parsed.expr;
        // The positions are the line's, as typed; the set's own opening brace falls just
        // before it.
        if let Some(base) = self.positions.add_file(line, origin) {
            firn_syntax::ast::shift_spans(&mut e, base.saturating_sub(1));
        }
        Some(Box::leak(Box::new(e)))
    }

    /// Parse Nix text that is part of firn (the `derivation` wrapper, `<nix/fetchurl.nix>`).
    /// It nests shallowly, so it is parsed on this thread whatever the stack left, without
    /// the thread an unknown text gets on a small stack (each evaluator parses the wrapper
    /// when made, before it is told its stack: a thread per command otherwise).
    pub(crate) fn parse_builtin(
        &mut self,
        text: &'static str,
        origin: &str,
    ) -> EResult<&'static Expr> {
        self.parse_source(text, origin, "/", &[], false, true)
    }

    /// [`Self::parse_with_names`] of the text of file `path` as
    /// [`firn_syntax::bytes::decode`] gives it: the text is not kept for error messages but
    /// read again if one needs it.
    pub fn parse_file(
        &mut self,
        text: &str,
        path: &str,
        base_dir: &str,
        names: &[Symbol],
    ) -> EResult<&'static Expr> {
        self.parse_source(text, path, base_dir, names, true, false)
    }

    /// Parse `text` with this evaluator's settings and symbols, `names` in scope above the
    /// globals; on this thread when the stack left is big enough (or the text is `shallow`),
    /// else on a thread of its own.
    fn parse_text(
        &mut self,
        text: &str,
        origin: &str,
        base_dir: &str,
        names: &[Symbol],
        shallow: bool,
    ) -> Result<firn_syntax::Parsed, firn_syntax::ParseError> {
        let home = self.home.clone();
        let src = Source {
            origin,
            base_dir,
            home: &home,
            pipe_operators: self.features.pipe_operators,
            lints: self.lints,
        };
        let free = self.stack_limit.saturating_sub(self.stack_used());
        if shallow || free > firn_syntax::PARSE_STACK + (16 << 20) {
            firn_syntax::parse_with_names_here(text, &src, &mut self.interner, names)
        } else {
            firn_syntax::parse_with_names(text, &src, &mut self.interner, names)
        }
    }

    fn parse_source(
        &mut self,
        text: &str,
        origin: &str,
        base_dir: &str,
        names: &[Symbol],
        from_disk: bool,
        shallow: bool,
    ) -> EResult<&'static Expr> {
        let parsed = self.parse_text(text, origin, base_dir, names, shallow);
        let kept = if from_disk { Kept::Disk } else { Kept::Text };
        self.finish_parse(parsed, text, origin, kept)
    }

    /// The end of a parse of `text` (from `origin`) that gave `parsed`: the warnings shown,
    /// the text's positions kept as `kept` says, and the tree kept for the rest of the
    /// evaluation; or the error, placed.
    fn finish_parse(
        &mut self,
        parsed: Result<firn_syntax::Parsed, firn_syntax::ParseError>,
        text: &str,
        origin: &str,
        kept: Kept,
    ) -> EResult<&'static Expr> {
        match parsed {
            Ok(firn_syntax::Parsed {
                expr: mut e,
                warnings,
            }) => {
                for w in &warnings {
                    let shown = firn_syntax::render_warning(w, text, origin);
                    crate::term::write_stderr_line(&shown);
                }
                let base = match kept {
                    Kept::Disk => self.positions.add_disk_file(text, origin),
                    Kept::Text => self.positions.add_file(text, origin),
                    Kept::Shifted { base, hash, len } => {
                        self.positions.add_parsed_disk_file(base, len, origin, hash);
                        None
                    }
                };
                if let Some(base) = base {
                    firn_syntax::ast::shift_spans(&mut e, base);
                }
                Ok(Box::leak(Box::new(e)))
            }
            Err(e) => {
                let mut x = EvalError::new(e.msg);
                x.at = Some(firn_syntax::render_location(
                    text,
                    origin,
                    e.span.start as usize,
                ));
                Err(x)
            }
        }
    }

    /// Evaluate a parsed expression in the global scope.
    pub fn eval_top(&mut self, e: &'static Expr) -> EResult<Value> {
        let env = self.base_env.clone();
        self.eval(e, &env)
    }

    /// A thunk of a parsed expression in the global scope, evaluated when forced (a
    /// command line's `--arg`).
    pub fn top_thunk(&mut self, e: &'static Expr) -> Thunk {
        Thunk::pending(e, self.base_env.clone())
    }

    /// `import path`.
    pub fn import(&mut self, path: &str) -> EResult<Value> {
        if let Some(v) = self.imports.get(path) {
            return Ok(v.clone());
        }
        if path.strip_prefix(COREPKGS) == Some("fetchurl.nix") {
            // Built in, as in Nix (found by `<nix/fetchurl.nix>`); parsed as a string is.
            let e = self.parse_builtin(COREPKGS_FETCHURL, "«string»")?;
            return self.eval_import(path.to_string(), e);
        }
        self.check_source_path(path)?;
        if let Some(pf) = self.prefetcher.as_mut().and_then(|f| f.take(path)) {
            if let Some(v) = self.imports.get(&pf.path) {
                return Ok(v.clone());
            }
            if pf
                .settings
                .is(&self.home, self.features.pipe_operators, self.lints)
            {
                // An attach that fails (a scope check after new symbols) is left to the
                // reading in place below, which reports the error with the text.
                if let Ok(parsed) = pf.tree.attach(&mut self.interner) {
                    self.prefetched += 1;
                    let kept = Kept::Shifted {
                        base: pf.base,
                        hash: pf.hash,
                        len: pf.len,
                    };
                    let text = pf.text.as_deref().unwrap_or_default();
                    let e = self.finish_parse(Ok(parsed), text, &pf.path, kept)?;
                    self.want(pf.paths.iter().map(String::as_str), pf.len);
                    return self.eval_import(pf.path, e);
                }
            }
        }
        // One open and one `fstat` tell a file from a directory (whose `default.nix` is
        // meant) and give the size to read.
        let mut p = path.to_string();
        let mut opened = open_with_len(&p);
        if matches!(&opened, Ok((_, None))) {
            p = format!("{}/default.nix", p.trim_end_matches('/'));
            if let Some(v) = self.imports.get(&p) {
                return Ok(v.clone());
            }
            opened = open_with_len(&p);
        }
        let text = opened
            .and_then(|(f, len)| {
                use std::io::Read;
                let mut buf = Vec::with_capacity(len.unwrap_or(0) as usize + 1);
                // Through `Take`, which reads into the capacity reserved (a `File` itself
                // would ask the kernel for its size again).
                std::io::Read::by_ref(&mut &f)
                    .take(u64::MAX)
                    .read_to_end(&mut buf)?;
                Ok(buf)
            })
            .map(firn_syntax::bytes::decode)
            .map_err(|e| crate::error::io_error("reading file", &p, &e))?;
        let dir = std::path::Path::new(&p)
            .parent()
            .map(|d| d.to_string_lossy().into_owned())
            .unwrap_or_else(|| "/".into());
        let e = self.parse_file(&text, &p, &dir, &[])?;
        if self.prefetch {
            self.want(firn_syntax::ast::path_literals(e).into_iter(), text.len());
        }
        self.eval_import(p, e)
    }

    /// Imported file `path`, parsed as `e`: its value, kept for later imports.
    fn eval_import(&mut self, path: String, e: &'static Expr) -> EResult<Value> {
        let v = self.eval_top(e)?;
        self.imports.insert(path, v.clone());
        Ok(v)
    }

    /// How many of the files imported so far were parsed ahead (see [`crate::prefetch`]).
    pub fn prefetched(&self) -> usize {
        self.prefetched
    }

    /// The parser's settings, as the thread parsing ahead needs them.
    fn parse_settings(&self) -> crate::prefetch::ParseSettings {
        crate::prefetch::ParseSettings {
            home: self.home.clone(),
            pipe_operators: self.features.pipe_operators,
            lints: self.lints,
        }
    }

    /// A file `bytes` long was imported, whose path literals are `paths`: the files they
    /// name, not imported yet, are parsed ahead (see [`crate::prefetch`]).
    fn want<'a>(&mut self, paths: impl Iterator<Item = &'a str>, bytes: usize) {
        if !self.prefetch {
            return;
        }
        let (home, pipe, lints) = (&self.home, self.features.pipe_operators, self.lints);
        if !self
            .prefetcher
            .as_ref()
            .is_some_and(|pf| pf.settings().is(home, pipe, lints))
        {
            let settings = self.parse_settings();
            match &mut self.prefetcher {
                Some(pf) => pf.set_settings(settings),
                None => {
                    let offsets = self.positions.offsets();
                    self.prefetcher = Some(crate::prefetch::Prefetcher::new(settings, offsets));
                }
            }
        }
        let Some(pf) = self.prefetcher.as_mut() else {
            return;
        };
        let imports = &self.imports;
        let wanted = paths.filter(|p| !imports.contains_key(*p));
        pf.want(wanted, bytes, &self.interner);
    }

    #[inline]
    pub fn force(&mut self, t: &Thunk) -> EResult<Value> {
        if let Some(v) = t.peek() {
            return Ok(v);
        }
        self.force_pending(t)
    }

    /// [`Self::force`] of a thunk not computed yet. The common state, an expression in its
    /// scope, is handled here; the others, and failures, out of line (this keeps the hot
    /// function's frame small).
    #[inline(never)]
    fn force_pending(&mut self, t: &Thunk) -> EResult<Value> {
        match t.replace(ThunkState::Forcing) {
            ThunkState::Pending(e, env) => {
                if self.stack_used() > self.stack_limit {
                    t.set(ThunkState::Pending(e, env));
                    return Err(stack_overflow());
                }
                match self.eval(e, &env) {
                    Ok(v) => {
                        t.finish(v.clone());
                        Ok(v)
                    }
                    Err(x) => Err(self.pending_failed(t, x, e, env)),
                }
            }
            ThunkState::ApplyIndex(f, i) => self.force_index(t, f, i),
            state => self.force_state(t, state),
        }
    }

    /// [`Self::force_pending`] of an expression that failed with `x`: its state is put back,
    /// so a later force (e.g. after `tryEval`) reports the error again.
    #[cold]
    #[inline(never)]
    fn pending_failed(&mut self, t: &Thunk, x: EvalError, e: &'static Expr, env: Env) -> EvalError {
        let mut x = entering_recursion(x, t);
        if x.blackhole != 0 {
            x = aliased_recursion(x, t, e, &env);
        }
        t.set(ThunkState::Pending(e, env));
        self.keep_failure(t, &mut x);
        x
    }

    /// [`Self::force_pending`] of the states other than an expression (`state`, taken out of
    /// `t`, which holds `Forcing`). Each state is taken apart by value (no generic drop of
    /// the state afterwards); on an error the state is put back.
    #[inline(never)]
    fn force_state(&mut self, t: &Thunk, state: ThunkState) -> EResult<Value> {
        if matches!(state, ThunkState::Forcing) {
            return Err(recursion_error(t));
        }
        if let Err(e) = self.check_stack() {
            t.set(state);
            return Err(e);
        }
        match state {
            ThunkState::Pending(..) => {
                t.set(state);
                self.force_pending(t)
            }
            ThunkState::Apply(f, a) => {
                let arg = a.clone();
                if let Some(l) = simple_lambda(&f) {
                    let r = self.call_simple(l, arg, None, true);
                    let r = r.map_err(|x| self.apply_error(x, &f, crate::value::NOT_APPLIED));
                    return self.finish_forced(t, r, || ThunkState::Apply(f, a));
                }
                if let Some((g, k)) = f.applied_lambda() {
                    return self.force_applied2(t, g, k, f, a);
                }
                self.force_applied(t, f, arg, |f| ThunkState::Apply(f, a))
            }
            ThunkState::ApplyIndex(f, i) => self.force_index(t, f, i),
            ThunkState::Select(src, name) => {
                if name.0 & FAILED != 0 {
                    return self.force_failed(t, src, name);
                }
                let r = match self.force(&src) {
                    Ok(Value::Attrs(a)) => match a.get(self.interner.name(name)) {
                        Some(x) => {
                            let x = x.clone();
                            self.force(&x)
                        }
                        // With the names it might have meant, as a selection's error.
                        None => Err(missing_attr(Some(self.interner.name(name).into()), &a)),
                    },
                    Ok(v) => Err(self.type_error("a set", &v)),
                    Err(e) => Err(e),
                };
                self.finish_forced(t, r, || ThunkState::Select(src, name))
            }
            ThunkState::Done(v) => {
                t.set(ThunkState::Done(v.clone()));
                Ok(v)
            }
            ThunkState::Forcing => Err(recursion_error(t)),
        }
    }

    /// [`Self::force_pending`] of `genList`'s element `f i` (the state taken out of `t`,
    /// which holds `Forcing`), as [`Self::force_state`] forces the other states but in a
    /// function of its own: elements are forced one after another by the million, and
    /// `force_state`'s large frame and dispatch cost more than the call itself.
    #[inline(never)]
    fn force_index(&mut self, t: &Thunk, f: Thunk, i: i64) -> EResult<Value> {
        if let Err(e) = self.check_stack() {
            t.set(ThunkState::ApplyIndex(f, i));
            return Err(e);
        }
        if let Some(l) = simple_lambda(&f) {
            let r = self.call_simple(l, Thunk::int(i), None, true);
            let r = r.map_err(|x| self.apply_error(x, &f, crate::value::NOT_APPLIED));
            return self.finish_forced(t, r, || ThunkState::ApplyIndex(f, i));
        }
        let arg = Thunk::int(i);
        self.force_applied(t, f, arg, |f| ThunkState::ApplyIndex(f, i))
    }

    /// A call of a lambda [`simple_lambda`] found, without the dispatch on the kind of
    /// function: its scope, and its body evaluated, with the depth and frames of
    /// [`Self::call`] (no `site`) or of a call expression `site` (an error of the call itself
    /// placed there, one of the body with the call site's frame). `stack_checked`: the
    /// caller checked the stack in the same frame (this is always inlined, so the check
    /// here would read the same stack pointer and give the same answer).
    #[inline(always)]
    fn call_simple(
        &mut self,
        l: Lambda,
        arg: Thunk,
        site: Option<&'static Expr>,
        stack_checked: bool,
    ) -> EResult<Value> {
        let ExprKind::Lambda {
            arg: Some(n), body, ..
        } = &l.expr.kind
        else {
            return self.call(Value::Lambda(l), arg);
        };
        // As `call_at`: the depth before the call is checked, then the stack.
        if self.depth > self.max_call_depth
            || (!stack_checked && self.stack_used() > self.stack_limit)
        {
            return Err(self.call_refused(site));
        }
        let lambda = l.expr;
        // The scope takes over the closure's handle on its environment.
        let inner = l.env.extend(*n, arg);
        self.depth += 1;
        let r = self.eval(body, &inner);
        self.depth -= 1;
        inner.discard(1);
        match r {
            Err(x) => Err(self.call_simple_failed(x, body, lambda, site)),
            ok => relay(ok),
        }
    }

    /// [`Self::call_simple`] refused to enter the call (the call depth or the stack is used
    /// up): the error, placed at the call expression `site` if there is one.
    #[cold]
    #[inline(never)]
    fn call_refused(&mut self, site: Option<&'static Expr>) -> EvalError {
        let x = if self.depth > self.max_call_depth {
            EvalError::new("stack overflow; max-call-depth exceeded")
        } else {
            stack_overflow()
        };
        match site {
            Some(e) => self.locate_error(x, e),
            None => x,
        }
    }

    /// An error `x` out of the body `body` of lambda `lambda` called by
    /// [`Self::call_simple`] (from the call expression `site`, if any): placed in the body
    /// when there is a call site, with the call's frames.
    #[cold]
    #[inline(never)]
    fn call_simple_failed(
        &mut self,
        x: EvalError,
        body: &'static Expr,
        lambda: &'static Expr,
        site: Option<&'static Expr>,
    ) -> EvalError {
        let x = match site {
            Some(_) => self.locate_error(x, body),
            None => x,
        };
        self.call_frames(x, lambda, site)
    }

    /// [`Self::force_pending`] of an application: `f` called with `arg`; on an error the
    /// thunk gets back the state `restore` makes from `f`, so a later force fails again.
    fn force_applied(
        &mut self,
        t: &Thunk,
        f: Thunk,
        arg: Thunk,
        restore: impl FnOnce(Thunk) -> ThunkState,
    ) -> EResult<Value> {
        // For an error, where the call is (see `Thunk::applied_site`).
        let site = f.applied_site();
        let r = match self.force(&f) {
            Ok(fv) => self.call(fv, arg),
            Err(e) => Err(e),
        };
        let r = r.map_err(|x| self.apply_error(x, &f, site));
        self.finish_forced(t, r, || restore(f))
    }

    /// [`Self::force_state`] of `f a` where `f` is the application `g k` not computed yet
    /// and `g` a computed lambda (`mapAttrs`' and `zipAttrsWith`'s `f name value`): a
    /// two-argument lambda is called with both at once, as [`Self::call2`], without
    /// forcing `f` (usually only the application `t` holds it; where another does, forcing
    /// it later makes the same closure, as the first application of `a: b: ...` evaluates
    /// nothing). On an error `f` gets the value forcing it gives, so the error and the
    /// state put back are those of [`Self::force_applied`]. Other lambdas go that way.
    #[inline(never)]
    fn force_applied2(
        &mut self,
        t: &Thunk,
        g: Lambda,
        k: Thunk,
        f: Thunk,
        a: Thunk,
    ) -> EResult<Value> {
        let g = Value::Lambda(g);
        let Some(l2) = Lambda2::of(&g) else {
            let arg = a.clone();
            return self.force_applied(t, f, arg, |f| ThunkState::Apply(f, a));
        };
        let site = f.applied_site();
        let r = self.call_lambda2(l2, k.clone(), a.clone());
        let r = r.map_err(|x| {
            let partial = Lambda {
                expr: l2.inner,
                env: l2.env.clone().extend(l2.first, k),
            };
            f.set(ThunkState::Done(Value::Lambda(partial)));
            self.apply_error(x, &f, site)
        });
        self.finish_forced(t, r, || ThunkState::Apply(f, a))
    }

    /// The end of forcing thunk `t` (not an expression's: see [`Self::pending_failed`]) with
    /// result `r`: the value stored; or, on an error, the state `restore` makes put back (so
    /// a later force fails again) and the error kept if `tryEval` can catch it.
    fn finish_forced(
        &mut self,
        t: &Thunk,
        r: EResult<Value>,
        restore: impl FnOnce() -> ThunkState,
    ) -> EResult<Value> {
        match r {
            Ok(v) => {
                // Often a number (`genList`'s and `map`'s elements): copied in place, a
                // word at a time (the two paths kept apart: joined, they copy `v` in
                // 16-byte pieces again; see `crate::words`).
                if v.is_scalar() {
                    // SAFETY: a scalar owns nothing: its bitwise copy is a clone.
                    t.finish(unsafe { copy_words(&v) });
                } else {
                    t.finish(v.clone());
                }
                relay(Ok(v))
            }
            Err(x) => {
                let mut x = entering_recursion(x, t);
                t.set(restore());
                self.keep_failure(t, &mut x);
                Err(x)
            }
        }
    }

    /// Thunk `t`, whose computation (its state) failed with `x`: an error `tryEval` can
    /// catch is kept. The state becomes `Select(retry, FAILED | i)`, `retry` a cell with the
    /// state before, `i` the error's place in `failed` (shared by the thunks it failed on its
    /// way out). A state of its own would cost the hot path (a thunk's state is matched and
    /// dropped there); a selection of a symbol that is not one is never made otherwise.
    /// After other errors the thunk is computed again when forced.
    #[cold]
    #[inline(never)]
    fn keep_failure(&mut self, t: &Thunk, x: &mut EvalError) {
        let i = match x.memo {
            _ if !x.catchable() || self.failed.len() >= FAILED as usize => return,
            Some(i) => i,
            None => {
                self.failed.push(None);
                (self.failed.len() - 1) as u32
            }
        };
        x.memo = Some(i);
        let retry = Thunk::new(t.replace(ThunkState::Forcing));
        t.set(ThunkState::Select(retry, Symbol(FAILED | i)));
    }

    /// [`Self::force_pending`] of a thunk that failed (see [`Self::keep_failure`]): a copy
    /// of the error it keeps, or (if that error was not caught) its computation again.
    #[cold]
    #[inline(never)]
    fn force_failed(&mut self, t: &Thunk, retry: Thunk, mark: Symbol) -> EResult<Value> {
        let kept = self
            .failed
            .get((mark.0 & !FAILED) as usize)
            .cloned()
            .flatten();
        match kept {
            Some(x) => {
                t.set(ThunkState::Select(retry, mark));
                Err(x)
            }
            None => {
                t.set(retry.replace(ThunkState::Forcing));
                self.force_pending(t)
            }
        }
    }

    /// Error `x` is caught: the thunks it failed keep it as it is now (current Nix's thunks
    /// keep the exception itself, which gains frames until it is caught).
    pub fn settle(&mut self, x: &mut EvalError) {
        if let Some(i) = x.memo.take() {
            if let Some(slot) = self.failed.get_mut(i as usize) {
                *slot = Some(x.clone());
            }
        }
    }

    /// An error applying thunk `f` (the function of a thunk made by a builtin such as
    /// `genList`), which was the application `site` says (see [`Thunk::applied_site`]). An
    /// error of the call (`f` is computed) is placed as current Nix's `determinePos` does:
    /// at the lambda `f` is, or (when `f` was an application) at the lambda it applied if
    /// that was computed before. There a lambda's body gets a "from call site" frame, and an
    /// error without a position of its own (say, `f` is no function) gets that position.
    #[cold]
    #[inline(never)]
    fn apply_error(&self, mut x: EvalError, f: &Thunk, site: u32) -> EvalError {
        let Some(fv) = f.peek() else { return x };
        let lambda = match &fv {
            Value::Lambda(l) => Some(l.expr.span.start),
            _ => None,
        };
        let site = match site {
            crate::value::NOT_APPLIED => lambda,
            crate::value::NO_SITE => None,
            off => Some(off),
        };
        if x.at.is_none() && x.kind == ErrorKind::Other {
            if let Some(off) = lambda.or(site) {
                x.at = self.positions.render(off);
            }
        }
        if let (Some(_), Some(off)) = (lambda, site) {
            let frame = self.frame("from call site".into(), off);
            x.push_frame(frame, FramePrint::Verbose);
        }
        x
    }

    /// A thunk for `e` in `env` (literals are made directly, and a variable bound lexically
    /// shares the binding's thunk). Only for complete environments: see [`Self::lazy_thunk`].
    pub fn thunk(&mut self, e: &'static Expr, env: &Env) -> Thunk {
        if let ExprKind::Var(s) = &e.kind {
            return match lookup_var(e, *s, env) {
                Some(t) => t,
                None => match firn_syntax::scope::with_address(e)
                    .and_then(|_| self.with_var_global(*s))
                {
                    Some(t) => t,
                    None => Thunk::pending(e, env.clone()),
                },
            };
        }
        if let ExprKind::Global(s) = &e.kind {
            if let Some(Some(t)) = self.globals.get(s.0 as usize) {
                return t.clone();
            }
        }
        // What `lazy_thunk` makes of anything but a variable, without its call and its
        // second look at the kind (this is the thunk of most call arguments and list
        // elements).
        match self.literal(e) {
            Some(t) => t,
            None => Thunk::pending(e, env.clone()),
        }
    }

    /// A thunk for `e` in an environment whose innermost scope may still be being filled
    /// (`rec`, `let`, formals' defaults): a variable of that scope is looked up only when
    /// forced (it may name a binding not made yet). A variable bound further out names a
    /// complete scope, so its thunk is shared, as [`Self::thunk`] and CppNix's maybeThunk
    /// do: no thunk is made for `let a = b;`, and an infinite recursion through it is met
    /// at `b`'s thunk itself (what [`aliased_recursion`] makes of one met through a thunk
    /// of the variable).
    pub fn lazy_thunk(&mut self, e: &'static Expr, env: &Env) -> Thunk {
        if let ExprKind::Var(s) = &e.kind {
            return match outer_var(e, *s, env) {
                Some(t) => t.clone(),
                None => Thunk::pending(e, env.clone()),
            };
        }
        match self.literal(e) {
            Some(t) => t,
            None => Thunk::pending(e, env.clone()),
        }
    }

    /// The value of a literal, made once per node and shared by every use (as CppNix keeps
    /// a literal's value in its node); `None` for anything else.
    #[inline(always)]
    fn literal(&mut self, e: &'static Expr) -> Option<Thunk> {
        if !matches!(
            e.kind,
            ExprKind::Int(_) | ExprKind::Float(_) | ExprKind::Str(_) | ExprKind::Path(_)
        ) {
            return None;
        }
        let m = e.memo.get() as usize;
        if let Some((node, t)) = m.checked_sub(1).and_then(|i| self.literals.get(i)) {
            if std::ptr::eq(*node, e) {
                return Some(t.clone());
            }
        }
        self.new_literal(e)
    }

    /// [`Self::literal`] when this evaluator has no value for the node yet. Most literals
    /// are met once (a package's name, version, flags), so the value is remembered in the
    /// table only when the node is met again: the first time, the memo is only marked
    /// [`LITERAL_SEEN`].
    #[inline(never)]
    fn new_literal(&mut self, e: &'static Expr) -> Option<Thunk> {
        let v = match &e.kind {
            ExprKind::Int(i) => Value::Int(*i),
            ExprKind::Float(f) => Value::Float(*f),
            ExprKind::Str(s) if !s.contains('\0') => Value::str(&**s),
            ExprKind::Path(p) => Value::Path((&**p).into()),
            _ => return None,
        };
        let t = Thunk::value(v);
        if e.memo.get() == 0 {
            e.memo.set(LITERAL_SEEN);
        } else {
            self.literals.push((e, t.clone()));
            e.memo.set(u32::try_from(self.literals.len()).unwrap_or(0));
        }
        Some(t)
    }

    /// A variable of the global scope.
    fn global(&mut self, s: Symbol) -> EResult<Thunk> {
        match self.globals.get(s.0 as usize) {
            Some(Some(t)) => Ok(t.clone()),
            _ => err(format!("undefined variable '{}'", self.name_rc(s))),
        }
    }

    /// The global `s` for a variable the scope check found no lexical scope of its file
    /// binds (one with a `with` address): the global scope is the outermost lexical one
    /// (the only scope outside a file whose names the check does not know), so it comes
    /// before any `with`.
    #[inline]
    fn with_var_global(&self, s: Symbol) -> Option<Thunk> {
        self.globals.get(s.0 as usize).cloned().flatten()
    }

    /// A variable no lexical scope binds (see [`lookup_var`], which the caller has tried):
    /// from the innermost `with` whose set has it.
    fn lookup_with(&mut self, s: Symbol, env: &Env) -> EResult<Thunk> {
        self.lookup_with_from(s, env.0.as_deref(), None)
    }

    /// [`Self::lookup_with`] from scope `start` out (the caller knows no scope inside it
    /// is a `with`, nor binds `s`). The scopes are borrowed from the caller's environment,
    /// which holds them all. For a variable node `var` with a `with` address, where the
    /// name was found is remembered in the node ([`firn_syntax::scope::with_hint`]) and
    /// read first next time.
    fn lookup_with_from(
        &mut self,
        s: Symbol,
        start: Option<&EnvNode>,
        var: Option<&Expr>,
    ) -> EResult<Thunk> {
        let name = self.name_rc(s);
        let hint = var.map_or(0, firn_syntax::scope::with_hint);
        let mut cur = start;
        while let Some(node) = cur {
            if let Scope::With(t) = &node.scope {
                match self.force(t)? {
                    Value::Attrs(a) => {
                        if let Some((i, x)) = a.get_rc_hinted(&name, hint) {
                            if let Some(e) = var.filter(|_| i + 1 != hint) {
                                firn_syntax::scope::set_with_hint(e, i);
                            }
                            return Ok(x.clone());
                        }
                    }
                    v => return Err(self.type_error("a set", &v)),
                }
            }
            cur = node.parent.0.as_deref();
        }
        err(format!("undefined variable '{name}'"))
    }

    /// A selected attribute's name `v` (of `e`) that is not a string.
    #[cold]
    #[inline(never)]
    fn attr_name_error(&self, v: &Value, e: &Expr) -> EvalError {
        let mut x = self.type_error("a string", v);
        x.at = Some(self.positions.render(e.span.start).unwrap_or_default());
        x.trace
            .push(self.frame("while evaluating an attribute name".into(), e.span.start));
        x
    }

    /// The name `a` of a selection or `?` (`None` for a dynamic name that is `null`). A
    /// static name, the usual one, is its symbol's shared handle, without a call.
    #[inline(always)]
    fn attr_name(&mut self, a: &'static AttrName, env: &Env) -> EResult<Option<RcStr>> {
        match a {
            AttrName::Static(s) => Ok(Some(self.name_rc(*s))),
            AttrName::Dynamic(e) => self.dynamic_attr_name(e, env),
        }
    }

    /// [`Self::attr_name`] of a name computed by expression `e`.
    #[inline(never)]
    fn dynamic_attr_name(&mut self, e: &'static Expr, env: &Env) -> EResult<Option<RcStr>> {
        match self.eval(e, env)? {
            Value::String(s) => Ok(Some(no_context(s)?)),
            Value::Null => Ok(None),
            v => Err(self.attr_name_error(&v, e)),
        }
    }

    /// Build an attribute set's map (a recursive one's values live in a scope of their own).
    /// `node` is the set's expression (its memo keeps the attributes' name order, see
    /// [`Self::name_order`]). (A `let` is [`Self::build_let`].)
    fn build_attrs(
        &mut self,
        a: &'static Attrs,
        node: &'static Expr,
        env: &Env,
        recursive: bool,
    ) -> EResult<(AttrMap, Vec<(RcStr, u32)>)> {
        let inner = if recursive {
            env.push_empty()
        } else {
            env.clone()
        };
        let from: Box<[Thunk]> = if a.inherit_from.is_empty() {
            Box::default()
        } else {
            a.inherit_from
                .iter()
                .map(|e| self.attr_thunk(e, &inner, recursive))
                .collect()
        };
        let (mut map, vars) = match self.name_order(node, a) {
            // The map's entries made in its order, the scope's from them.
            Some(order) => {
                let entries = self.entries_in_order(&order, env, &inner, recursive, &from);
                let vars: Vec<(Symbol, Thunk)> = if recursive {
                    a.attrs
                        .keys()
                        .zip(order.by_symbol.iter())
                        .map(|(sym, &i)| (*sym, entries[i as usize].1.clone()))
                        .collect()
                } else {
                    Vec::new()
                };
                (AttrMap::from_sorted(entries), vars)
            }
            None => {
                let mut entries = Vec::with_capacity(a.attrs.len());
                // `a.attrs` is in symbol order, as a scope's bindings are.
                let mut vars = Vec::with_capacity(if recursive { a.attrs.len() } else { 0 });
                for (sym, def) in &a.attrs {
                    let t = self.def_thunk(*sym, def, env, &inner, recursive, &from);
                    if recursive {
                        vars.push((*sym, t.clone()));
                    }
                    entries.push((self.name_rc(*sym), t));
                }
                // Static names are unique (the parser checks), so sorting is all that is
                // needed.
                entries.sort_unstable_by(|x, y| x.0.cmp(&y.0));
                (AttrMap::from_sorted(entries), vars)
            }
        };
        if !recursive {
            // Never filled: an empty vector owns nothing, so no call of its drop glue (as
            // `Value::discard`).
            debug_assert_eq!(vars.capacity(), 0);
            std::mem::forget(vars);
        } else {
            if let Some(Scope::Vars(v)) = inner.scope() {
                v.set_sorted(vars);
            }
            // `__overrides` in a recursive set replaces attributes in the set; in its scope
            // only those the set defines itself (as CppNix: new names are not in scope).
            // (Only a static name can be there yet: dynamic ones are added below.)
            let over = if a.attrs.contains_key(&self.sym_overrides) {
                map.get("__overrides").cloned()
            } else {
                None
            };
            if let Some(o) = over {
                match self.force(&o)? {
                    Value::Attrs(over) => {
                        for (k, t) in over.iter() {
                            map.insert(k.clone(), t.clone());
                            let sym = self.interner.intern(k);
                            if let Some(Scope::Vars(v)) = inner.scope() {
                                v.replace_existing(sym, t.clone());
                            }
                        }
                    }
                    v => {
                        let mut x = self.type_error("a set", &v);
                        x.at = Some(String::new());
                        x.trace
                            .push("while evaluating the `__overrides` attribute".into());
                        return Err(x);
                    }
                }
            }
        }
        let dynamic = if a.dynamic.is_empty() {
            Vec::new()
        } else {
            self.add_dynamic_attrs(a, &inner, &mut map)?
        };
        Ok((map, dynamic))
    }

    /// A set expression that is not recursive and has only static names, without
    /// `inherit (e)`, built the second time on (when its name order is known): its entries
    /// made in the map's order, without [`Self::build_attrs`]'s scope, sources of `inherit
    /// (e)` and checks for those.
    fn plain_set(&mut self, a: &'static Attrs, order: &NameOrder, env: &Env) -> Value {
        let entries = self.entries_in_order(order, env, env, false, &[]);
        Value::Attrs(Rc::new(AttrSet::with_origin(
            AttrMap::from_sorted(entries),
            Origin::Attrs(a),
        )))
    }

    /// A set's entries (definitions in `env`, values in `inner`; `from`: the thunks of its
    /// `inherit (e)` sources) made in its known name order `order`: the map's order.
    #[inline(always)]
    fn entries_in_order(
        &mut self,
        order: &NameOrder,
        env: &Env,
        inner: &Env,
        recursive: bool,
        from: &[Thunk],
    ) -> Vec<(RcStr, Thunk)> {
        let mut entries = Vec::with_capacity(order.defs.len());
        for (name, sym, def) in order.defs.iter() {
            let t = self.def_thunk(*sym, def, env, inner, recursive, from);
            entries.push((name.clone(), t));
        }
        entries
    }

    /// The scope of a `let`: its bindings, recursive, with no map (a `let` is no set:
    /// `__overrides` is a binding like any other, as in CppNix, where only a recursive set
    /// applies it). Dynamic names are a parse error in a `let`.
    fn build_let(&mut self, a: &'static Attrs, env: &Env) -> Env {
        debug_assert!(a.dynamic.is_empty(), "a `let` with a dynamic name");
        let inner = env.push_empty();
        // The sources of `inherit (e)`, in the `let`'s scope.
        let from: Box<[Thunk]> = if a.inherit_from.is_empty() {
            Box::default()
        } else {
            a.inherit_from
                .iter()
                .map(|e| self.lazy_thunk(e, &inner))
                .collect()
        };
        // `a.attrs` is in symbol order, as a scope's bindings are.
        let mut vars = Vec::with_capacity(a.attrs.len());
        for (sym, def) in &a.attrs {
            let t = self.def_thunk(*sym, def, env, &inner, true, &from);
            vars.push((*sym, t));
        }
        if let Some(Scope::Vars(v)) = inner.scope() {
            v.set_sorted(vars);
        }
        inner
    }

    /// The thunk of an attribute's (or `inherit (e)`'s) expression `e` in scope `inner`. In
    /// a recursive set the scope is filled in after the thunks are made: a variable must not
    /// be resolved early (it may name one of the set's own attributes). In a plain set a
    /// lexical variable is shared (the same element, as CppNix's maybeThunk).
    #[inline]
    fn attr_thunk(&mut self, e: &'static Expr, inner: &Env, recursive: bool) -> Thunk {
        if recursive {
            self.lazy_thunk(e, inner)
        } else {
            self.thunk(e, inner)
        }
    }

    /// The thunk of definition `def` of `sym` in a set built in `env` (values in `inner`;
    /// `from`: the thunks of the set's `inherit (e)` sources).
    #[inline(always)]
    fn def_thunk(
        &mut self,
        sym: Symbol,
        def: &'static AttrDef,
        env: &Env,
        inner: &Env,
        recursive: bool,
        from: &[Thunk],
    ) -> Thunk {
        match def.kind {
            AttrKind::Plain => self.attr_thunk(&def.value, inner, recursive),
            // A lexical variable is shared as is; one that can only come from a `with` is
            // looked up when used (looking now could force the `with`'s set while it is
            // being built).
            AttrKind::Inherited => match lookup_var(&def.value, sym, env) {
                Some(t) => t,
                None => {
                    let e = *self.var_exprs.entry(sym).or_insert_with(|| {
                        &*Box::leak(Box::new(Expr::new(
                            ExprKind::Var(sym),
                            firn_syntax::ast::Span::new(0, 0),
                        )))
                    });
                    Thunk::pending(e, env.clone())
                }
            },
            AttrKind::InheritedFrom(i) => {
                Thunk::new(ThunkState::Select(from[i as usize].clone(), sym))
            }
        }
    }

    /// The name order of set expression `node` (whose attributes are `a`): a set's map is
    /// sorted by name, its syntax by symbol, so without this every set built would be
    /// sorted again. Made the second time the node is built (most sets of a package set
    /// are built once: the first time the memo is only marked [`ORDER_SEEN`]); `None`
    /// before.
    #[inline]
    fn name_order(&mut self, node: &'static Expr, a: &'static Attrs) -> Option<Rc<NameOrder>> {
        match self.known_name_order(node) {
            Some(order) => Some(order),
            None => self.new_name_order(node, a),
        }
    }

    /// The name order of set expression `node` if one is made already (see
    /// [`Self::name_order`], which makes it).
    #[inline]
    fn known_name_order(&self, node: &'static Expr) -> Option<Rc<NameOrder>> {
        let m = node.memo.get() as usize;
        match m.checked_sub(1).and_then(|i| self.name_orders.get(i)) {
            Some((n, order)) if std::ptr::eq(*n, node) => Some(order.clone()),
            _ => None,
        }
    }

    /// [`Self::name_order`] when this evaluator has none for the node yet.
    #[inline(never)]
    fn new_name_order(&mut self, node: &'static Expr, a: &'static Attrs) -> Option<Rc<NameOrder>> {
        if node.memo.get() == 0 {
            node.memo.set(ORDER_SEEN);
            return None;
        }
        let mut defs: Vec<(RcStr, Symbol, &'static AttrDef, u32)> =
            Vec::with_capacity(a.attrs.len());
        for (i, (sym, def)) in a.attrs.iter().enumerate() {
            defs.push((self.name_rc(*sym), *sym, def, i as u32));
        }
        defs.sort_unstable_by(|x, y| x.0.cmp(&y.0));
        let mut by_symbol = vec![0u32; defs.len()];
        for (k, d) in defs.iter().enumerate() {
            by_symbol[d.3 as usize] = k as u32;
        }
        let order = Rc::new(NameOrder {
            defs: defs.into_iter().map(|(n, s, d, _)| (n, s, d)).collect(),
            by_symbol: by_symbol.into_boxed_slice(),
        });
        self.name_orders.push((node, order.clone()));
        node.memo
            .set(u32::try_from(self.name_orders.len()).unwrap_or(ORDER_SEEN));
        Some(order)
    }

    /// The `"${name}" = value;` bindings of set `a` (scope `inner`), added to `map`.
    #[inline(never)]
    fn add_dynamic_attrs(
        &mut self,
        a: &'static Attrs,
        inner: &Env,
        map: &mut AttrMap,
    ) -> EResult<Vec<(RcStr, u32)>> {
        let mut dynamic_seen: Vec<(RcStr, u32)> = Vec::new();
        for (n, v, span) in &a.dynamic {
            let name = match self.eval(n, inner)? {
                Value::String(s) => no_context(s)?,
                Value::Null => continue,
                x => return Err(self.type_error("a string", &x)),
            };
            if map.contains_key(&name) {
                return Err(self.duplicate_dynamic(a, &dynamic_seen, &name, span.start));
            }
            dynamic_seen.push((name.clone(), span.start));
            let t = self.lazy_thunk(v, inner);
            map.insert(name, t);
        }
        Ok(dynamic_seen)
    }

    /// Evaluate `e` in `env`. Tail positions (`if` branches, `let`/`with`/`assert` bodies, and
    /// a call whose last application is a lambda) continue in this loop instead of
    /// recursing: a tail call takes no stack and no call depth (so `f = n: if ... else f (n +
    /// 1)` may run as long as it likes, as in current Nix).
    #[inline]
    pub fn eval(&mut self, e: &'static Expr, env: &Env) -> EResult<Value> {
        // One dispatch on the kind: the most common ones go straight to their own
        // function (or, for a variable whose value is computed already and an integer,
        // need none), the rest to `eval_step`. The kinds with tail positions go to
        // `eval_any`, whose loop keeps more state.
        match &e.kind {
            ExprKind::Var(s) => match lookup_var_ref(e, *s, env) {
                Some(t) => match t.peek() {
                    Some(v) => Ok(v),
                    None => self.eval_pending_var(e, t.clone()),
                },
                None => self.eval_step(e, env),
            },
            ExprKind::Int(i) => Ok(Value::Int(*i)),
            // A closure: no call of `eval_step` (whose frame is large) for it.
            ExprKind::Lambda { .. } => Ok(Value::Lambda(Lambda {
                expr: e,
                env: env.clone(),
            })),
            ExprKind::Call { fun, args } => match self.as_direct_op(e) {
                Some((op, a, b)) => self.direct_op(e, op, a, b, env),
                None => self.eval_call_of(e, fun, args, env),
            },
            ExprKind::If { .. } => self.eval_if(e, env),
            ExprKind::Let { .. } | ExprKind::With { .. } | ExprKind::Assert { .. } => {
                self.eval_any(e, env)
            }
            ExprKind::Bin { op, .. } if is_boolean(*op) => self.eval_bool_op(e, env),
            ExprKind::Select { e: inner, path } => self.eval_select(e, inner, path, None, env),
            ExprKind::SelectOr(x) => self.eval_select(e, &x.e, &x.path, Some(&x.default), env),
            ExprKind::Attrs(a) => self.eval_attrs(e, a, env),
            ExprKind::Global(s) => self.eval_global(e, *s, env),
            ExprKind::Concat { .. } => match as_sum_of_var(e) {
                Some((a, b)) => self.eval_sum(e, a, b, env),
                None => self.eval_step(e, env),
            },
            _ => self.eval_step(e, env),
        }
    }

    /// [`Self::eval`] of a set literal (node `e`): its map built, an error placed at `e` as
    /// `eval_step` places it. Sets are among the most common kinds (the module system makes
    /// many), so they skip `eval_step`'s dispatch.
    #[inline(never)]
    fn eval_attrs(&mut self, e: &'static Expr, a: &'static Attrs, env: &Env) -> EResult<Value> {
        if !a.rec && a.inherit_from.is_empty() && a.dynamic.is_empty() {
            if let Some(order) = self.known_name_order(e) {
                return Ok(self.plain_set(a, &order, env));
            }
        }
        match self.build_attrs(a, e, env, a.rec) {
            Ok((map, dynamic)) => {
                let origin = crate::positions::literal_origin(a, dynamic, map.len());
                Ok(Value::Attrs(Rc::new(AttrSet::with_origin(map, origin))))
            }
            Err(x) => Err(self.locate_error(x, e)),
        }
    }

    /// [`Self::eval`] of an operator whose result is a Boolean (node `e`; `==` the most
    /// common, the body of many a predicate such as `x: x == 5`): computed by
    /// [`Self::bool_binop`], an error placed at `e` as `eval_step` places it, without
    /// `eval_step`'s dispatch and large frame. Given the node alone (taken apart here), so
    /// that `eval` passes every argument in a register and jumps here (a tail call).
    #[inline(never)]
    fn eval_bool_op(&mut self, e: &'static Expr, env: &Env) -> EResult<Value> {
        let ExprKind::Bin { op, a, b } = &e.kind else {
            return self.eval_step(e, env);
        };
        let r = match *op {
            BinOp::Eq => self.eq_operands(a, b, env),
            op => self.bool_binop(op, a, b, env),
        };
        match r {
            Ok(b) => Ok(Value::Bool(b)),
            Err(x) => Err(self.locate_error(x, e)),
        }
    }

    /// [`Self::eval`] of a global variable (`true`, `null`, `builtins`, ...; node `e`):
    /// a computed one is copied out without a handle on its thunk. The rest (one not
    /// computed yet, an undefined name, for its error) takes `eval_step`'s way.
    #[inline(never)]
    fn eval_global(&mut self, e: &'static Expr, s: Symbol, env: &Env) -> EResult<Value> {
        if let Some(Some(t)) = self.globals.get(s.0 as usize) {
            if let Some(v) = t.peek() {
                return Ok(v);
            }
        }
        self.eval_step(e, env)
    }

    /// [`Self::eval`] of a variable `e` bound lexically to thunk `t`, not computed yet: `t`
    /// forced, an error placed at `e` (as `eval_step` places it), without `eval_step`'s
    /// second lookup and large frame.
    #[inline(never)]
    fn eval_pending_var(&mut self, e: &'static Expr, t: Thunk) -> EResult<Value> {
        match self.force_pending(&t) {
            Ok(v) => Ok(v),
            Err(x) => Err(self.locate_error(x, e)),
        }
    }

    /// [`Self::eval`] of `a + b` (node `e`, not a string interpolation). Two integers at
    /// hand (literals or computed variables, as `first + n` in `range`'s `genList`) are
    /// added here: nothing is evaluated, and `eval_step`'s large frame is not entered. The
    /// rest (other operands, an overflow, for its error) takes the general way.
    #[inline(never)]
    fn eval_sum(
        &mut self,
        e: &'static Expr,
        a: &'static Expr,
        b: &'static Expr,
        env: &Env,
    ) -> EResult<Value> {
        // The second operand is only looked at when the first is one (`f x + f y` then
        // costs one look).
        if let Some(i) = int_in_place(a, env) {
            if let Some(v) = int_in_place(b, env).and_then(|j| i.checked_add(j)) {
                return Ok(Value::Int(v));
            }
        }
        self.eval_sum_rest(e, a, b, env)
    }

    /// [`Self::eval_sum`] of operands not both integers at hand (or overflowing), out of
    /// line: its frame and saved registers are not paid by the sums done at once.
    #[inline(never)]
    fn eval_sum_rest(
        &mut self,
        e: &'static Expr,
        a: &'static Expr,
        b: &'static Expr,
        env: &Env,
    ) -> EResult<Value> {
        if let Some(i) = int_in_place(a, env) {
            // The first at hand, the second to evaluate (`acc + el` summing a list): as
            // `concat` does it, with `eval_step`'s placing of an error at `e`.
            let r = match self.sum_operand(b, env) {
                Ok(y) => self.add_values(Value::Int(i), y, b),
                Err(x) => Err(self.text_frame_at(x, PLUS_OPERAND, b)),
            };
            return r.map_err(|x| self.locate_error(x, e));
        }
        self.eval_step(e, env)
    }

    /// Number `x` plus `y`, the value of operand `b` of `a + b`: an error (an overflow, a
    /// non-number) is placed at `b`, as in Nix.
    #[inline(always)]
    fn add_values(&mut self, x: Value, y: Value, b: &'static Expr) -> EResult<Value> {
        // Two integers at once (an overflow takes the general way, for its error).
        if let (Value::Int(i), Value::Int(j)) = (&x, &y) {
            if let Some(v) = i.checked_add(*j) {
                x.discard();
                y.discard();
                return Ok(Value::Int(v));
            }
        }
        add_numbers(self, &x, &y).map_err(|x| self.locate_error(x, b))
    }

    /// [`Self::eval_operand_value`] of an operand of `+`, with a variable not computed yet
    /// (an element of a list, a fold's accumulator) forced without `eval_step`'s frame: as
    /// `eval_kind` forces it, the error placed at `b` as `eval_step` places it.
    #[inline(always)]
    fn sum_operand(&mut self, b: &'static Expr, env: &Env) -> EResult<Value> {
        if let ExprKind::Var(s) = &b.kind {
            if let Some(t) = lookup_var_ref(b, *s, env) {
                if let Some(v) = t.peek_scalar_first() {
                    return Ok(v);
                }
                let t = t.clone();
                return match self.force_pending(&t) {
                    Ok(v) => Ok(v),
                    Err(x) => Err(self.locate_error(x, b)),
                };
            }
        }
        self.eval_operand_value(b, env)
    }

    /// [`Self::eval`] of an `if` (`e`), without [`Self::eval_any`]'s loop state when the
    /// branch taken is no tail position of its own: an `if` keeps no state in that loop (no
    /// scope, no call entered), so its branch may as well start a loop of its own, and only a
    /// branch that is one of the loop's kinds (a call that is no operator, `let`, `with`,
    /// `assert`) needs it. Conditions' errors are placed at the `if` as the loop places them.
    #[inline(never)]
    fn eval_if(&mut self, e: &'static Expr, env: &Env) -> EResult<Value> {
        let mut e = e;
        loop {
            let ExprKind::If { cond, then, else_ } = &e.kind else {
                return self.eval_any(e, env);
            };
            let next: &'static Expr =
                match self.eval_bool(cond, env, "while evaluating a branch condition") {
                    Ok(true) => then,
                    Ok(false) => else_,
                    Err(x) => return Err(self.locate_error(x, e)),
                };
            match &next.kind {
                ExprKind::If { .. } => e = next,
                ExprKind::Call { .. } => {
                    return match self.as_direct_op(next) {
                        Some((op, a, b)) => self.direct_op(next, op, a, b, env),
                        None => self.eval_any(next, env),
                    }
                }
                ExprKind::Let { .. } | ExprKind::With { .. } | ExprKind::Assert { .. } => {
                    return self.eval_any(next, env)
                }
                _ => return self.eval(next, env),
            }
        }
    }

    /// [`Self::eval`] with its cheapest cases in place, for operands (mostly a literal or a
    /// variable computed already): an integer, or a computed variable's value, without
    /// the call of `eval` (its frame and dispatch cost more than the look itself).
    #[inline(always)]
    fn eval_operand_value(&mut self, e: &'static Expr, env: &Env) -> EResult<Value> {
        match &e.kind {
            ExprKind::Int(i) => Ok(Value::Int(*i)),
            ExprKind::Var(s) => {
                if let Some(t) = lookup_var_ref(e, *s, env) {
                    if let Some(v) = t.peek_scalar_first() {
                        return Ok(v);
                    }
                    // Not computed yet (a lazy argument, `n - 1` of a recursion): forced
                    // as `eval` forces it, without `eval_step`'s dispatch.
                    return self.eval_pending_var(e, t.clone());
                }
                self.eval_step(e, env)
            }
            _ => self.eval(e, env),
        }
    }

    /// [`Self::eval`] of a call that is no operator (not in a tail position): by the number
    /// of arguments, to the function made for it.
    #[inline(always)]
    fn eval_call_of(
        &mut self,
        e: &'static Expr,
        fun: &'static Expr,
        args: &'static [Expr],
        env: &Env,
    ) -> EResult<Value> {
        match args {
            [arg] => self.eval_call(e, fun, arg, env),
            _ => self.eval_call_var(e, fun, args, env),
        }
    }

    /// [`Self::eval`] of a call of one argument (not in a tail position). The common one, a
    /// variable holding a computed one-argument lambda (`f x`), is made by
    /// [`Self::call_simple`], with the depth, frames and positions [`Self::eval_any`]'s loop
    /// would give it but without the loop's state. A builtin goes to
    /// [`Self::eval_builtin_call`], others to the loop.
    #[inline(never)]
    fn eval_call(
        &mut self,
        e: &'static Expr,
        fun: &'static Expr,
        arg: &'static Expr,
        env: &Env,
    ) -> EResult<Value> {
        if let ExprKind::Var(s) = &fun.kind {
            if let Some(t) = lookup_var_ref(fun, *s, env) {
                if let Some(l) = simple_lambda(t) {
                    let arg = self.arg_thunk(arg, env);
                    return self.call_simple(l, arg, Some(e), false);
                }
                if let Some(p) = t.peek_primop() {
                    return self.eval_builtin_call(e, p, std::slice::from_ref(arg), env);
                }
                // Another lambda (with formals, or returning a function), a set with
                // `__functor`, a builtin given some of its arguments: as
                // `eval_call_other` calls them, without its look at the function again.
                if let Some(l) = t.lambda_where(|_| true) {
                    let arg = self.arg_thunk(arg, env);
                    return self.call_lambda_at(l, arg, e);
                }
                if let Some(v @ (Value::Attrs(_) | Value::PrimOpApp(..))) = t.peek() {
                    let arg = self.arg_thunk(arg, env);
                    return self.call_value_at(v, arg, e);
                }
            }
        }
        self.eval_call_other(e, fun, std::slice::from_ref(arg), env)
    }

    /// A call (expression `site`, not in a tail position) of lambda `l` that is not
    /// [`simple_lambda`]'s kind (one with formals, or one whose body is a function): as
    /// [`Self::eval_any`]'s loop makes it (the depth counted and the stack checked before
    /// the argument is bound, a binding error placed at the call with its "from call site"
    /// frame, the body's errors with the call's frames) but without the loop's state, which
    /// cost as much as the binding itself (`{ a }: a` called with a set: 950 instructions a
    /// call, against 420 for `x: x`).
    #[inline(never)]
    fn call_lambda_at(&mut self, l: Lambda, arg: Thunk, site: &'static Expr) -> EResult<Value> {
        if self.depth > self.max_call_depth {
            let x = EvalError::new("stack overflow; max-call-depth exceeded");
            return Err(self.locate_error(x, site));
        }
        self.depth += 1;
        let bound = match self.check_stack() {
            Ok(()) => self
                .bind_lambda(&l, arg)
                .map_err(|x| self.bind_error(x, Some(site.span.start))),
            Err(x) => Err(x),
        };
        let (body, inner) = match bound {
            Ok(b) => b,
            Err(x) => {
                self.depth -= 1;
                return Err(self.locate_error(x, site));
            }
        };
        let r = self.eval(body, &inner);
        self.depth -= 1;
        drop(inner);
        match r {
            Ok(v) => Ok(v),
            Err(x) => Err(self.call_simple_failed(x, body, l.expr, Some(site))),
        }
    }

    /// [`Self::eval`] of a call `e` of `fun` with `args` that is not a variable's function:
    /// `builtins.NAME` given all its arguments is called as a variable's builtin is (see
    /// [`Self::global_member_primop`]). A call of one argument (`lib.mkOption { ... }`, a
    /// name from a `with`, a lambda with formals, a set with `__functor`) is made here as
    /// the loop makes it, without the loop's state; calls of several arguments go to the
    /// loop. Out of line, so that the callers' frames stay those of their common case.
    #[inline(never)]
    fn eval_call_other(
        &mut self,
        e: &'static Expr,
        fun: &'static Expr,
        args: &'static [Expr],
        env: &Env,
    ) -> EResult<Value> {
        if let Some(p) = self.global_member_primop(fun) {
            return self.eval_builtin_call(e, p, args, env);
        }
        let [arg] = args else {
            return self.eval_any(e, env);
        };
        // What the loop does with a call of one argument, step for step: the function
        // evaluated (an error placed at the call), then by its kind.
        let f = match self.eval(fun, env) {
            Ok(f) => f,
            Err(x) => return Err(self.locate_error(x, e)),
        };
        match f {
            Value::PrimOp(p) if p.arity == 1 => {
                match self.call_builtin_at(e, &p, std::slice::from_ref(arg), env) {
                    Ok(v) => Ok(v),
                    Err(x) => Err(self.locate_error(x, e)),
                }
            }
            Value::Lambda(l) => {
                let t = self.arg_thunk(arg, env);
                if is_simple_lambda(l.expr) {
                    self.call_simple(l, t, Some(e), false)
                } else {
                    self.call_lambda_at(l, t, e)
                }
            }
            other => {
                let t = self.arg_thunk(arg, env);
                self.call_value_at(other, t, e)
            }
        }
    }

    /// A call (expression `site`, not in a tail position) of `f`, a value that is no lambda
    /// (a set with `__functor`, a builtin given some of its arguments, or no function, for
    /// the error): the loop's `call_at` of it, an error placed at the call.
    #[inline(never)]
    fn call_value_at(&mut self, f: Value, arg: Thunk, site: &'static Expr) -> EResult<Value> {
        match self.call_at(f, arg, Some(site.span.start)) {
            Ok(v) => Ok(v),
            Err(x) => Err(self.locate_error(x, site)),
        }
    }

    /// The builtin `fun` names when it is `builtins.NAME` and that member is a builtin: so
    /// that `builtins.elemAt l i` is called as `elemAt l i` is, without the selection made
    /// a value (a search of the set by name) and the call loop's state, which cost about
    /// 270 instructions a call. `builtins` here is the global one: a program that binds the
    /// name (`let`, a function argument, `scopedImport`'s scope) makes it a lexical
    /// variable, and `with` cannot hide a global; the set's builtins never change.
    #[inline(always)]
    fn global_member_primop(&self, fun: &'static Expr) -> Option<Rc<PrimOp>> {
        let ExprKind::Select { e: inner, path } = &fun.kind else {
            return None;
        };
        match (&inner.kind, &path[..]) {
            (ExprKind::Global(s), [AttrName::Static(name)]) if *s == self.builtins_sym => {
                self.builtin_ops.get(name.0 as usize)?.clone()
            }
            _ => None,
        }
    }

    /// [`Self::eval`] of a call of several arguments (not in a tail position). A variable
    /// bound lexically holding a
    /// two-argument lambda given both (`f a b`), or a builtin given all its arguments
    /// (`elemAt l i`), is called here without the loop's state. Others go to that loop.
    /// Kept out of `eval_call`, whose frame stays that of its common case.
    #[inline(never)]
    fn eval_call_var(
        &mut self,
        e: &'static Expr,
        fun: &'static Expr,
        args: &'static [Expr],
        env: &Env,
    ) -> EResult<Value> {
        let t = match &fun.kind {
            ExprKind::Var(s) => match lookup_var_ref(fun, *s, env) {
                Some(t) => t,
                None => return self.eval_any(e, env),
            },
            _ => return self.eval_call_other(e, fun, args, env),
        };
        if let [a, b] = args {
            if let Some(f) = t.lambda_where(|_| true).map(Value::Lambda) {
                if let Some(l2) = Lambda2::of(&f) {
                    let (a, b) = (self.arg_thunk(a, env), self.arg_thunk(b, env));
                    return self.call_lambda2_at(l2, a, b, e);
                }
                return self.eval_any(e, env);
            }
        }
        match t.peek_primop() {
            Some(p) => self.eval_builtin_call(e, p, args, env),
            None => self.eval_any(e, env),
        }
    }

    /// [`Self::eval`] of call `e` of builtin `p` (the value of the variable called) with
    /// `args`: given all its arguments, it is called here, its error placed at the call as
    /// [`Self::eval_any`]'s loop places it; else (a partial application) in that loop.
    #[inline(never)]
    fn eval_builtin_call(
        &mut self,
        e: &'static Expr,
        p: Rc<PrimOp>,
        args: &'static [Expr],
        env: &Env,
    ) -> EResult<Value> {
        if p.arity != args.len() {
            return self.eval_any(e, env);
        }
        match self.call_builtin_at(e, &p, args, env) {
            Ok(v) => Ok(v),
            Err(x) => Err(self.locate_error(x, e)),
        }
    }

    /// A thunk for argument `a` of a call in `env`. The argument is mostly a variable bound
    /// lexically: its thunk is shared without the call of [`Self::thunk`].
    #[inline(always)]
    fn arg_thunk(&mut self, a: &'static Expr, env: &Env) -> Thunk {
        if let ExprKind::Var(s) = &a.kind {
            if let Some(t) = lookup_var_ref(a, *s, env) {
                return t.clone();
            }
        }
        self.thunk(a, env)
    }

    /// [`Self::call_lambda2`] from the call expression `site` (`f a b` in no tail position),
    /// with the depth, frames and positions [`Self::eval_any`]'s loop gives such a call (as
    /// [`Self::call_simple`] for one argument): the first application evaluates nothing,
    /// so only the second is checked and counted, and an error gets the inner lambda's frame.
    #[inline(never)]
    fn call_lambda2_at(
        &mut self,
        l2: Lambda2<'_>,
        a: Thunk,
        b: Thunk,
        site: &'static Expr,
    ) -> EResult<Value> {
        if self.depth > self.max_call_depth || self.stack_used() > self.stack_limit {
            return Err(self.call_refused(Some(site)));
        }
        let env = l2.env.push_two(l2.first, a, l2.second, b);
        self.depth += 1;
        let r = self.eval(l2.body, &env);
        self.depth -= 1;
        env.discard(2);
        match r {
            Ok(v) => Ok(v),
            Err(x) => Err(self.call_simple_failed(x, l2.body, l2.inner, Some(site))),
        }
    }

    /// Builtin `p` called at the call expression `e` with `args` (as many as it takes) in
    /// `env`: one thunk for each argument (the usual arities on the stack), the depth as
    /// [`Self::enter_builtin`] counts it, and an error with the builtin's frame. Always
    /// inlined: a call of it would cost as much as the dispatch it does.
    #[inline(always)]
    fn call_builtin_at(
        &mut self,
        e: &'static Expr,
        p: &PrimOp,
        args: &'static [Expr],
        env: &Env,
    ) -> EResult<Value> {
        let r = match self.enter_builtin() {
            Err(x) => Err(x),
            Ok(()) => {
                let r = match args {
                    [a] => {
                        let a = self.arg_thunk(a, env);
                        (p.f)(self, &[a])
                    }
                    [a, b] => {
                        let (a, b) = (self.arg_thunk(a, env), self.arg_thunk(b, env));
                        (p.f)(self, &[a, b])
                    }
                    [a, b, c] => {
                        let (a, b) = (self.arg_thunk(a, env), self.arg_thunk(b, env));
                        let c = self.arg_thunk(c, env);
                        (p.f)(self, &[a, b, c])
                    }
                    args => {
                        let ts: Vec<Thunk> = args.iter().map(|a| self.thunk(a, env)).collect();
                        (p.f)(self, &ts)
                    }
                };
                match r {
                    Ok(v) => Ok(v),
                    Err(x) => Err(self.builtin_frame(x, p, Some(op_pos(e)))),
                }
            }
        };
        self.depth -= 1;
        r
    }

    /// [`Self::eval`] of a selection, with or without a default (placed as `eval_step`
    /// places).
    #[inline(never)]
    fn eval_select(
        &mut self,
        e: &'static Expr,
        inner: &'static Expr,
        path: &'static [AttrName],
        default: Option<&'static Expr>,
        env: &Env,
    ) -> EResult<Value> {
        match self.select(e, inner, path, default, env) {
            Ok(v) => Ok(v),
            Err(x) => Err(self.locate_error(x, e)),
        }
    }

    /// [`Self::eval`] of the kinds with tail positions (calls, `if`, `let`, `with`,
    /// `assert`).
    #[inline(never)]
    fn eval_any(&mut self, e: &'static Expr, env: &Env) -> EResult<Value> {
        // Every function body entered counts towards `max-call-depth`, tail calls in this
        // loop too (they take no Rust stack, but Nix counts them, and an endless tail
        // recursion must end as it does in Nix); the count is given back on the way out.
        let mut entered = 0;
        let mut at = e;
        let base = self.tail_calls.len();
        let r = self.eval_loop(e, env, &mut entered, &mut at);
        self.depth -= entered;
        match r {
            Ok(v) => {
                self.tail_calls.truncate(base);
                Ok(v)
            }
            Err(x) => Err(self.tail_call_frames(x, at, base)),
        }
    }

    /// An error out of [`Self::eval_any`]'s loop, placed at `at` (where the loop was), with
    /// the frames of the calls the loop made in tail position (those above `base`),
    /// innermost first.
    #[cold]
    #[inline(never)]
    fn tail_call_frames(&mut self, x: EvalError, at: &'static Expr, base: usize) -> EvalError {
        let mut x = self.locate_error(x, at);
        let calls = self.tail_calls.split_off(base);
        for (lambda, site) in calls.into_iter().rev() {
            x = self.call_frames(x, lambda, Some(site));
        }
        x
    }

    /// `--show-trace` frames for an error out of a call: the function, and where it was
    /// called from.
    #[cold]
    #[inline(never)]
    fn call_frames(
        &self,
        mut x: EvalError,
        lambda: &'static Expr,
        site: Option<&'static Expr>,
    ) -> EvalError {
        let what = match firn_syntax::scope::lambda_name(lambda) {
            Some(s) => format!("while calling '{}'", self.interner.name(s)),
            None => "while calling anonymous lambda".to_string(),
        };
        x.push_frame(self.frame(what, lambda.span.start), FramePrint::Verbose);
        if let Some(site) = site {
            let frame = self.frame("from call site".into(), site.span.start);
            x.push_frame(frame, FramePrint::Verbose);
        }
        x
    }

    /// The `--show-trace` frame for an error out of builtin `p`, called at offset `site`
    /// (not for `addErrorContext`, whose own frame says enough, as in current Nix). An error
    /// without a position of its own keeps none with the frames shown: the frame has it.
    #[cold]
    #[inline(never)]
    fn builtin_frame(&self, mut x: EvalError, p: &PrimOp, site: Option<u32>) -> EvalError {
        if p.name == "addErrorContext" {
            return x;
        }
        if x.at.is_none() {
            x.at_in_frame = true;
        }
        let text = format!("while calling the '{}' builtin", p.name);
        x.trace.push(match site {
            Some(off) => self.frame(text, off),
            None => text,
        });
        x
    }

    /// Where attribute `name` of `set` is defined, when the set was made from syntax.
    #[cold]
    #[inline(never)]
    fn def_offset(&self, set: &Value, name: Option<&str>) -> Option<u32> {
        match (set, name) {
            (Value::Attrs(m), Some(name)) => self.positions.attr_offset(m, name, &self.interner),
            _ => None,
        }
    }

    /// The error of a selection that found no attribute `name` in `v` (or `v` is no set):
    /// without a position of its own, as current Nix (its frames have the selection's).
    #[cold]
    #[inline(never)]
    fn select_missing(&self, v: &Value, name: Option<RcStr>, e: &Expr) -> EvalError {
        let mut x = match v {
            Value::Attrs(m) => missing_attr(name, m),
            other => {
                let x = self.type_error("a set", other);
                self.text_frame_at(x, "while selecting an attribute", e)
            }
        };
        x.at = Some(String::new());
        x
    }

    /// `--show-trace` frames for an error of selection `e` (`inner.path`) once `resolved`
    /// names of the path were found, as current Nix: "from the definition of" the last one
    /// found (at `def`, or found again when `inner` can be evaluated again without effects),
    /// then "while evaluating the attribute" at the selection.
    #[cold]
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    fn select_error(
        &mut self,
        mut x: EvalError,
        e: &'static Expr,
        inner: &'static Expr,
        path: &'static [AttrName],
        env: &Env,
        resolved: usize,
        def: Option<u32>,
    ) -> EvalError {
        let def = match def {
            None if resolved > 0 => self.find_definition(inner, &path[..resolved], env),
            def => def,
        };
        if let Some(off) = def {
            let internal = self
                .positions
                .locate(off)
                .is_some_and(|(f, _, _)| f.starts_with("«nix-internal»/derivation-internal"));
            if !internal {
                let shown = self.show_attr_path(&path[..resolved], env);
                x.trace
                    .push(self.frame(format!("from the definition of '{shown}'"), off));
            }
        }
        let shown = self.show_attr_path(path, env);
        x.trace.push(self.frame(
            format!("while evaluating the attribute '{shown}'"),
            e.span.start,
        ));
        x
    }

    /// An attribute path as current Nix shows it in frames: dynamic names evaluated again,
    /// those that fail as `"${e}"`.
    #[cold]
    #[inline(never)]
    fn show_attr_path(&mut self, path: &'static [AttrName], env: &Env) -> String {
        let mut out = String::new();
        for (i, a) in path.iter().enumerate() {
            if i > 0 {
                out.push('.');
            }
            match a {
                AttrName::Static(s) => out.push_str(self.interner.name(*s)),
                AttrName::Dynamic(d) => match self.attr_name(a, env) {
                    Ok(Some(n)) => out.push_str(&n),
                    _ => {
                        out.push_str("\"${");
                        out.push_str(&firn_syntax::show::show(&self.interner, d));
                        out.push_str("}\"");
                    }
                },
            }
        }
        out
    }

    /// Where the last attribute of `path` in `inner` is defined, found again after an error
    /// of its selection: only when `inner` is a variable or a selection from one (whose
    /// values were computed already, so nothing is evaluated for a second time).
    #[cold]
    #[inline(never)]
    fn find_definition(
        &mut self,
        inner: &'static Expr,
        path: &'static [AttrName],
        env: &Env,
    ) -> Option<u32> {
        let mut base = inner;
        while let ExprKind::Select { e, path } = &base.kind {
            if path.iter().any(|a| matches!(a, AttrName::Dynamic(_))) {
                return None;
            }
            base = e;
        }
        if !matches!(base.kind, ExprKind::Var(_)) {
            return None;
        }
        let mut v = self.eval(inner, env).ok()?;
        let (last, init) = path.split_last()?;
        for a in init {
            let n = self.attr_name(a, env).ok()??;
            let Value::Attrs(m) = &v else { return None };
            let t = m.get_rc(&n)?.clone();
            v = self.force(&t).ok()?;
        }
        let n = self.attr_name(last, env).ok()??;
        self.def_offset(&v, Some(&n))
    }

    /// A `--show-trace` frame of fixed text at expression `e` (current Nix's `errorCtx` of an
    /// expression evaluated for an operator or a selection).
    #[cold]
    #[inline(never)]
    pub(crate) fn text_frame_at(&self, mut x: EvalError, text: &str, e: &Expr) -> EvalError {
        x.trace.push(self.frame(text.to_string(), op_pos(e)));
        x
    }

    /// `a ++ b` where `v` (one of them) is not a list: the frame is at the operator, the
    /// error has no position of its own (as current Nix's).
    #[cold]
    #[inline(never)]
    fn concat_lists_error(&self, v: &Value, a: &Expr, b: &Expr) -> EvalError {
        let mut x = self.type_error("a list", v);
        x.at = Some(String::new());
        let text = "while evaluating one of the elements to concatenate".to_string();
        x.trace.push(
            match self.positions.find_between(a.span.end, b.span.start, "++") {
                Some(off) => self.frame(text, off),
                None => text,
            },
        );
        x
    }

    /// "expected X but found Y: VALUE", as current Nix says when a value has the wrong type.
    #[cold]
    #[inline(never)]
    pub fn type_error(&self, expected: &str, v: &Value) -> EvalError {
        EvalError::new(format!(
            "expected {expected} but found {}: {}",
            v.type_name(),
            crate::print::show_for_error(self, v)
        ))
    }

    /// "dynamic attribute 'x' already defined at POS": the position of the first definition
    /// (a static one, or an earlier dynamic one of the same name).
    #[cold]
    #[inline(never)]
    fn duplicate_dynamic(
        &mut self,
        a: &'static Attrs,
        dynamic_seen: &[(RcStr, u32)],
        name: &str,
        here: u32,
    ) -> EvalError {
        let first = a
            .attrs
            .iter()
            .find(|(s, _)| self.interner.name(**s) == name)
            .map(|(_, d)| d.span.start)
            .or_else(|| {
                dynamic_seen
                    .iter()
                    .find(|(n, _)| &**n == name)
                    .map(|(_, off)| *off)
            });
        let mut msg = format!(
            "dynamic attribute '{}' already defined",
            crate::print::error_attr_name(name)
        );
        if let Some((file, line, col)) = first.and_then(|o| self.positions.locate(o)) {
            msg.push_str(&format!(" at {file}:{line}:{col}"));
        }
        // At the second definition, as current Nix.
        let mut x = EvalError::new(msg);
        x.at = self.positions.render(here);
        x
    }

    /// A string literal with a NUL (the only ones without a value made once): as CppNix's
    /// lexer says, with the fragment's source text for an indented string.
    #[cold]
    #[inline(never)]
    fn nul_in_string(&self, e: &Expr, s: &str) -> EvalError {
        let raw = self
            .positions
            .text(e.span.start, e.span.end)
            .filter(|r| r.contains('\0') && !r.starts_with('"'));
        let mut x = match crate::builtins_more::no_nul(raw.unwrap_or(s)) {
            Err(x) => x,
            Ok(_) => EvalError::new("internal error: a string literal without a value"),
        };
        // A quoted string's text starts after its quote, where CppNix's lexer places it.
        if let Some(r) = self.positions.text(e.span.start, e.span.end) {
            if r.starts_with('"') {
                x.at = self.positions.render(e.span.start + 1);
            }
        }
        x
    }

    /// "cannot coerce X to a string: VALUE".
    #[cold]
    #[inline(never)]
    pub fn coerce_error(&self, v: &Value) -> EvalError {
        EvalError::new(format!(
            "cannot coerce {} to a string: {}",
            v.type_name(),
            crate::print::show_for_error(self, v)
        ))
    }

    /// A `--show-trace` frame: its text and, when known, where.
    pub fn frame(&self, text: String, offset: u32) -> String {
        match self.positions.render(offset) {
            Some(at) => format!("{text}\n{}", at.trim_end()),
            None => text,
        }
    }

    /// Give an error the position of `e` (the innermost expression that failed) unless it
    /// has one; `throw` and `abort` have none, as in CppNix 2.8.
    #[cold]
    #[inline(never)]
    fn locate_error(&self, mut x: EvalError, e: &'static Expr) -> EvalError {
        if x.at.is_none() && !matches!(x.kind, ErrorKind::Throw | ErrorKind::Abort) {
            x.at = self.positions.render(e.span.start);
            if x.at.is_none() {
                // Not from a parsed file (positions ran out): mark it so outer expressions
                // do not claim it.
                x.at = Some(String::new());
            }
        }
        x
    }

    /// The loop of [`Self::eval`]; `at` follows the expression being evaluated.
    fn eval_loop(
        &mut self,
        e: &'static Expr,
        env: &Env,
        entered: &mut usize,
        at: &mut &'static Expr,
    ) -> EResult<Value> {
        let mut e = e;
        let mut owned: Option<Env> = None;
        loop {
            *at = e;
            let cur = owned.as_ref().unwrap_or(env);
            let (next, next_env): (&'static Expr, Option<Env>) = match &e.kind {
                ExprKind::If { cond, then, else_ } => {
                    if self.eval_bool(cond, cur, "while evaluating a branch condition")? {
                        (then, None)
                    } else {
                        (else_, None)
                    }
                }
                ExprKind::Let { attrs, body } => (body, Some(self.build_let(attrs, cur))),
                ExprKind::With { env: w, body } => {
                    let t = self.thunk(w, cur);
                    (body, Some(cur.push(Scope::With(t))))
                }
                ExprKind::Assert { cond, body } => {
                    if self.eval_bool(cond, cur, "in the condition of the assert statement")? {
                        (body, None)
                    } else {
                        return Err(self.assertion_failed(e, cond, cur));
                    }
                }
                ExprKind::Call { fun, args } => {
                    if let Some((op, a, b)) = self.as_direct_op(e) {
                        return self.direct_op(e, op, a, b, cur);
                    }
                    let mut f = self.eval(fun, cur)?;
                    let mut rest: &'static [Expr] = args;
                    // A builtin given all its arguments at once is called directly.
                    if let Value::PrimOp(p) = &f {
                        if rest.len() >= p.arity {
                            let arity = p.arity;
                            f = self.call_builtin_at(e, p, &rest[..arity], cur)?;
                            rest = &rest[arity..];
                        }
                    }
                    // All but the last two arguments applied; then a two-argument lambda
                    // given both has its scopes made at once, without the closure of the
                    // first application.
                    let two = rest.len().saturating_sub(2);
                    for a in &rest[..two] {
                        let t = self.arg_thunk(a, cur);
                        f = self.call_at(f, t, Some(e.span.start))?;
                    }
                    rest = &rest[two..];
                    let l2 = match rest {
                        [_, _] => Lambda2::of(&f),
                        _ => None,
                    };
                    if let (Some(l2), [a, b]) = (l2, rest) {
                        let (a, b) = (self.arg_thunk(a, cur), self.arg_thunk(b, cur));
                        self.enter_tail_call(entered)?;
                        let inner = l2.env.push_two(l2.first, a, l2.second, b);
                        self.tail_calls.push((l2.inner, e));
                        (l2.body, Some(inner))
                    } else {
                        let Some((last, init)) = rest.split_last() else {
                            return Ok(f);
                        };
                        for a in init {
                            let t = self.arg_thunk(a, cur);
                            f = self.call_at(f, t, Some(e.span.start))?;
                        }
                        let t = self.arg_thunk(last, cur);
                        match f {
                            Value::Lambda(l) => {
                                self.enter_tail_call(entered)?;
                                let (body, inner) = match self.bind_lambda(&l, t) {
                                    Ok(b) => b,
                                    Err(x) => return Err(self.bind_error(x, Some(e.span.start))),
                                };
                                self.tail_calls.push((l.expr, e));
                                (body, Some(inner))
                            }
                            other => return self.call_at(other, t, Some(e.span.start)),
                        }
                    }
                }
                // A variable computed already (the usual branch of an `if`, body of a
                // lambda) without `eval_step`'s frame.
                ExprKind::Var(s) => {
                    if let Some(v) = lookup_var_ref(e, *s, cur).and_then(Thunk::peek) {
                        return Ok(v);
                    }
                    return self.eval_step(e, cur);
                }
                // `a + b`, for `eval`'s case of it (see `Self::eval_sum`).
                ExprKind::Concat { .. } => {
                    return match as_sum_of_var(e) {
                        Some((a, b)) => self.eval_sum(e, a, b, cur),
                        None => self.eval_step(e, cur),
                    }
                }
                _ => return self.eval_step(e, cur),
            };
            e = next;
            if let Some(n) = next_env {
                owned = Some(n);
            }
        }
    }

    /// [`Self::eval_loop`] entering a lambda's body in tail position: as in current Nix, the
    /// depth before the call is checked; the call counts one level (given back when the loop
    /// ends), and the stack is checked at the loop's first call.
    #[inline(always)]
    fn enter_tail_call(&mut self, entered: &mut usize) -> EResult<()> {
        if self.depth > self.max_call_depth {
            return err("stack overflow; max-call-depth exceeded");
        }
        *entered += 1;
        self.depth += 1;
        if *entered == 1 {
            self.check_stack()?;
        }
        Ok(())
    }

    /// Enter a call of a builtin: as in current Nix, the depth before the call is checked,
    /// and the call counts one level while it runs. The caller gives the level back
    /// (`self.depth -= 1`) whatever the result. Not a function taking the call as a closure:
    /// the closure stayed a function of its own, about 25 instructions of frame a call.
    #[inline(always)]
    fn enter_builtin(&mut self) -> EResult<()> {
        let over = self.depth > self.max_call_depth;
        self.depth += 1;
        if over {
            return err("stack overflow; max-call-depth exceeded");
        }
        self.check_stack()
    }

    /// `e` as an operator the parser made a call of a builtin (`a - b` is `__sub a b`, `a < b`
    /// is `__lessThan a b`, ...), when the name is the global one (not rebound by the
    /// program, which Nix allows): which operator (the index in `op_syms`) and its operands.
    #[inline(always)]
    fn as_direct_op(&self, e: &'static Expr) -> Option<(usize, &'static Expr, &'static Expr)> {
        if let ExprKind::Call { fun, args } = &e.kind {
            if let (ExprKind::Global(s), [a, b]) = (&fun.kind, &args[..]) {
                // The operators' symbols are interned one after the other when the
                // evaluator is made (a test pins it), so the index is a subtraction; the
                // check against the table keeps this right (if slower: the operators would
                // be called as builtins) were they ever not consecutive.
                let op = s.0.wrapping_sub(self.op_syms[0].0) as usize;
                if self.op_syms.get(op) == Some(s) {
                    return Some((op, a, b));
                }
            }
        }
        None
    }

    /// [`Self::as_direct_op`]'s operator applied: both operands evaluated in order, as the
    /// builtin forces its arguments, but without a thunk for each and without the call's
    /// dispatch. As a builtin call, it counts towards the call depth, and an error gets the
    /// builtin's frame.
    #[inline(never)]
    fn direct_op(
        &mut self,
        e: &'static Expr,
        op: usize,
        a: &'static Expr,
        b: &'static Expr,
        env: &Env,
    ) -> EResult<Value> {
        if let Some(v) = self.direct_op_in_place(op, a, b, env) {
            return Ok(v);
        }
        self.direct_op_call(e, op, a, b, env)
    }

    /// [`Self::direct_op`] of operands not both integers at hand (or without a result
    /// there): evaluated and applied as the builtin's call does, counted as one.
    #[inline(never)]
    fn direct_op_call(
        &mut self,
        e: &'static Expr,
        op: usize,
        a: &'static Expr,
        b: &'static Expr,
        env: &Env,
    ) -> EResult<Value> {
        let r = match self.enter_builtin() {
            Ok(()) => self.direct_op_operands(op, a, b, env),
            Err(x) => Err(x),
        };
        self.depth -= 1;
        match r {
            Ok(v) => Ok(v),
            Err(x) => Err(self.direct_op_error(x, e, op)),
        }
    }

    /// [`Self::direct_op_call`]'s operands evaluated, and the operator applied.
    #[inline(always)]
    fn direct_op_operands(
        &mut self,
        op: usize,
        a: &'static Expr,
        b: &'static Expr,
        env: &Env,
    ) -> EResult<Value> {
        let x = self.eval_operand_value(a, env)?;
        let y = self.eval_operand_value(b, env)?;
        // Integers, the common case, at once (overflow and division by zero go the general
        // way, for its errors); they own nothing, so are dropped without a call of the drop
        // glue (see `Value::discard`).
        if let (Value::Int(i), Value::Int(j)) = (&x, &y) {
            let (i, j) = (*i, *j);
            x.discard();
            y.discard();
            return match int_op(op, i, j) {
                Some(v) => Ok(v),
                None => self.apply_op(op, Value::Int(i), Value::Int(j)),
            };
        }
        self.apply_op(op, x, y)
    }

    /// [`Self::direct_op`] of two integers at hand (literals or computed variables), when
    /// it has a result here: nothing is evaluated, so no call can nest inside and the level
    /// the builtin's call would count is never seen; only the depth it starts at is
    /// checked, as the call checks it. The stack check is left to the calls around (this
    /// nests no deeper). Overflow and division by zero (`None`) go the general way, for
    /// their errors.
    #[inline(always)]
    fn direct_op_in_place(
        &self,
        op: usize,
        a: &'static Expr,
        b: &'static Expr,
        env: &Env,
    ) -> Option<Value> {
        let (i, j) = (int_in_place(a, env)?, int_in_place(b, env)?);
        if self.depth > self.max_call_depth {
            return None;
        }
        int_op(op, i, j)
    }

    /// [`Self::direct_op`]'s operator `op` applied to `x` and `y` as its builtin does.
    #[inline(never)]
    fn apply_op(&mut self, op: usize, x: Value, y: Value) -> EResult<Value> {
        if op == 3 {
            return crate::builtins::less_than(self, &x, &y).map(Value::Bool);
        }
        let c = [b'-', b'*', b'/'][op] as char;
        crate::builtins::arith(self, c, &x, &y)
            .map_err(|r| crate::builtins::arith_arg_frame(r, c, &x, &y))
    }

    /// An error out of [`Self::direct_op`], as one out of the builtin's call.
    #[cold]
    #[inline(never)]
    fn direct_op_error(&self, x: EvalError, e: &'static Expr, op: usize) -> EvalError {
        let p = match self.globals.get(self.op_syms[op].0 as usize) {
            Some(Some(t)) => match t.peek() {
                Some(Value::PrimOp(p)) => p,
                _ => return self.locate_error(x, e),
            },
            _ => return self.locate_error(x, e),
        };
        let x = self.builtin_frame(x, &p, Some(op_pos(e)));
        self.locate_error(x, e)
    }

    /// Everything but the tail positions [`Self::eval`] loops over; an error is placed at
    /// `e` unless it has a place already.
    #[inline(never)]
    fn eval_step(&mut self, e: &'static Expr, env: &Env) -> EResult<Value> {
        match self.eval_kind(e, env) {
            Ok(v) => Ok(v),
            Err(x) => Err(self.locate_error(x, e)),
        }
    }

    /// [`Self::eval_step`] without placing errors. Inlined into `eval_step`, whose frame is
    /// the largest any arm needs and whose prologue saves the registers any arm uses: so
    /// each arm with more than a few instructions of work is a call of a function kept out
    /// of line, and the frame stays small for all.
    #[inline(always)]
    fn eval_kind(&mut self, e: &'static Expr, env: &Env) -> EResult<Value> {
        match &e.kind {
            ExprKind::Int(i) => Ok(Value::Int(*i)),
            ExprKind::Float(f) => Ok(Value::Float(*f)),
            ExprKind::Str(_) | ExprKind::Path(_) => self.literal_value(e),
            ExprKind::Var(s) => {
                // Most variables are bound lexically and already computed: their value is
                // copied out without taking a handle on the thunk.
                if let Some(t) = lookup_var_ref(e, *s, env) {
                    if let Some(v) = t.peek() {
                        return Ok(v);
                    }
                    let t = t.clone();
                    return self.force_pending(&t);
                }
                self.var_value(e, *s, env)
            }
            ExprKind::Global(s) => self.global_value(*s),
            ExprKind::CurPos => Ok(self.positions.value(e.span.start)),
            ExprKind::InheritFrom(_) => err("internal error: inherit source outside a set"),
            // `eval_select` places the error as `eval_step` would (a second placing leaves
            // it), and `select` then has one caller, into which it is inlined.
            ExprKind::Select { e: inner, path } => self.eval_select(e, inner, path, None, env),
            ExprKind::SelectOr(x) => self.eval_select(e, &x.e, &x.path, Some(&x.default), env),
            ExprKind::HasAttr { e: inner, path } => {
                self.has_attr(e, inner, path, env).map(Value::Bool)
            }
            ExprKind::Attrs(a) => self.eval_attrs(e, a, env),
            ExprKind::List(items) => self.list_value(items, env),
            ExprKind::Lambda { .. } => Ok(Value::Lambda(Lambda {
                expr: e,
                env: env.clone(),
            })),
            ExprKind::Call { .. }
            | ExprKind::Let { .. }
            | ExprKind::With { .. }
            | ExprKind::If { .. }
            | ExprKind::Assert { .. } => self.eval(e, env),
            ExprKind::Not(x) => Ok(Value::Bool(!self.eval_bool(
                x,
                env,
                "in the argument of '!'",
            )?)),
            // The Boolean operators (`==` the most common) call `bool_binop` here: a call
            // of `binop` in between would cost more than this small arm.
            ExprKind::Bin { op, a, b } if is_boolean(*op) => {
                Ok(Value::Bool(self.bool_binop(*op, a, b, env)?))
            }
            ExprKind::Bin { op, a, b } => self.binop(*op, a, b, env),
            ExprKind::Concat {
                force_string,
                parts,
            } => self.concat(*force_string, parts, env),
        }
    }

    /// [`Self::eval_kind`] of a string or path literal `e` (errors not placed).
    #[inline(never)]
    fn literal_value(&mut self, e: &'static Expr) -> EResult<Value> {
        match (self.literal(e), &e.kind) {
            (Some(t), _) => self.force(&t),
            (None, ExprKind::Str(s)) => Err(self.nul_in_string(e, s)),
            (None, _) => err("internal error: a path literal without a value"),
        }
    }

    /// [`Self::eval_kind`] of variable `s` (node `e`) that has no lexical address: one
    /// from a `with` (looked up from the innermost `with`'s scope if the scope check placed
    /// it), or a lexical one the check could not place (errors not placed).
    #[inline(never)]
    fn var_value(&mut self, e: &Expr, s: Symbol, env: &Env) -> EResult<Value> {
        let t = match with_scope(e, env) {
            Some(w) => match self.with_var_global(s) {
                Some(t) => t,
                None => self.lookup_with_from(s, Some(w), Some(e))?,
            },
            None => match lookup_lexical(s, env) {
                Some(t) => t,
                None => self.lookup_with(s, env)?,
            },
        };
        self.force(&t)
    }

    /// [`Self::eval_kind`] of global variable `s` (errors not placed).
    #[inline(never)]
    fn global_value(&mut self, s: Symbol) -> EResult<Value> {
        let t = self.global(s)?;
        self.force(&t)
    }

    /// [`Self::eval_kind`] of a list literal: a thunk for each item.
    #[inline(never)]
    fn list_value(&mut self, items: &'static [Expr], env: &Env) -> EResult<Value> {
        let ts = items.iter().map(|i| self.thunk(i, env)).collect();
        Ok(Value::List(Rc::new(ts)))
    }

    /// `inner ? path` (node `e`, whose memo keeps the lookup hints of the first two names):
    /// whether the path names an attribute. Errors are not placed (the caller places them at
    /// `e`).
    fn has_attr(
        &mut self,
        e: &'static Expr,
        inner: &'static Expr,
        path: &'static [AttrName],
        env: &Env,
    ) -> EResult<bool> {
        if let [_] = path {
            if let Some(found) = self.step_in_place(e, inner, path, env, |_, t| t.is_some()) {
                return Ok(found);
            }
        }
        let mut v = self.eval_operand(inner, env, "in the argument of '?'")?;
        for (i, a) in path.iter().enumerate() {
            // As a selection's: the first two names' positions are remembered in the node
            // (most `?` ask sets of one shape, often for a name they lack), and a static
            // name is looked up with the handle the table of names keeps, borrowed.
            let found = match a {
                AttrName::Static(s) => match self.names.get(s.0 as usize) {
                    Some(Some(n)) => attr_in(&v, n, &e.memo, i),
                    _ => {
                        let n = self.name_rc(*s);
                        attr_in(&v, &n, &e.memo, i)
                    }
                },
                AttrName::Dynamic(_) => match self.attr_name(a, env)? {
                    Some(n) => attr_in(&v, &n, &e.memo, i),
                    None => None,
                },
            };
            // The last attribute only has to exist, not to be evaluated (nor its thunk
            // taken a handle on).
            let t = match found {
                Some(_) if i + 1 == path.len() => return Ok(true),
                Some(t) => t.clone(),
                None => return Ok(false),
            };
            v = self.force(&t)?;
        }
        Ok(true)
    }

    /// `inner.path` (node `e`, whose memo keeps the lookup hints), or `default` where an
    /// attribute is missing.
    #[inline]
    fn select(
        &mut self,
        e: &'static Expr,
        inner: &'static Expr,
        path: &'static [AttrName],
        default: Option<&'static Expr>,
        env: &Env,
    ) -> EResult<Value> {
        let first = self.step_in_place(e, inner, path, env, |set, t| match t {
            Some(t) => match t.peek() {
                Some(v) => InPlace::Value(v),
                None => InPlace::Pending(Value::Attrs(set.clone()), t.clone()),
            },
            None => InPlace::Missing,
        });
        let (mut v, start) = match (first, default) {
            (Some(InPlace::Value(v)), _) => (v, 1),
            (Some(InPlace::Pending(set, t)), _) => match self.force_pending(&t) {
                Ok(v) => (v, 1),
                Err(x) => return Err(self.step_failed(x, &set, None, e, inner, path, env, 0)),
            },
            (Some(InPlace::Missing), Some(d)) => {
                return match self.eval(d, env) {
                    Ok(v) => Ok(v),
                    Err(x) => Err(self.select_error(x, e, inner, path, env, 0, None)),
                };
            }
            _ => match self.eval(inner, env) {
                Ok(v) => (v, 0),
                Err(x) => return Err(self.text_frame_at(x, "while selecting an attribute", inner)),
            },
        };
        for (i, a) in (start..).zip(&path[start..]) {
            // A static name (nearly all) is looked up with the handle the table of names
            // keeps, borrowed: no count raised and dropped for each name. Its own handle is
            // only taken for an error (`name` then, below); a dynamic name's is kept here.
            let mut dynamic: Option<RcStr> = None;
            let found = match a {
                AttrName::Static(s) => match self.names.get(s.0 as usize) {
                    Some(Some(n)) => attr_in(&v, n, &e.memo, i),
                    _ => {
                        let n = self.name_rc(*s);
                        attr_in(&v, &n, &e.memo, i)
                    }
                },
                AttrName::Dynamic(_) => {
                    dynamic = match self.attr_name(a, env) {
                        Ok(n) => n,
                        Err(x) => return Err(self.select_error(x, e, inner, path, env, i, None)),
                    };
                    match &dynamic {
                        Some(n) => attr_in(&v, n, &e.memo, i),
                        None => None,
                    }
                }
            };
            match found {
                Some(t) => {
                    // A computed attribute is copied out without a handle on it.
                    if let Some(x) = t.peek() {
                        v = x;
                        continue;
                    }
                    let t = t.clone();
                    v = match self.force_pending(&t) {
                        Ok(x) => x,
                        Err(x) => {
                            return Err(self.step_failed(x, &v, dynamic, e, inner, path, env, i))
                        }
                    }
                }
                None => {
                    if let Some(d) = default {
                        return match self.eval(d, env) {
                            Ok(v) => Ok(v),
                            Err(x) => Err(self.select_error(x, e, inner, path, env, i, None)),
                        };
                    }
                    let name = self.static_or(a, dynamic);
                    let x = self.select_missing(&v, name, e);
                    return Err(self.select_error(x, e, inner, path, env, i, None));
                }
            }
        }
        Ok(v)
    }

    /// `f` applied to what the first step of selection or `?` `e` (`inner.path`) finds, taken
    /// in place when `inner` is a variable (or a global: `builtins.x`) whose value is computed
    /// and a set and the first name is static (most are: `lib.x`, `cfg.enable`, `args ? x`):
    /// the set is looked at where its thunk holds it, with no count raised and dropped on
    /// it, nor `inner` evaluated. `None` where this does not apply (the general way then
    /// takes the step).
    #[inline(always)]
    fn step_in_place<R>(
        &self,
        e: &Expr,
        inner: &Expr,
        path: &[AttrName],
        env: &Env,
        f: impl FnOnce(&Rc<AttrSet>, Option<&Thunk>) -> R,
    ) -> Option<R> {
        let Some(AttrName::Static(s)) = path.first() else {
            return None;
        };
        let t = match &inner.kind {
            ExprKind::Var(var) => lookup_var_ref(inner, *var, env)?,
            // `builtins.x`: the global's thunk, where the table of globals holds it.
            ExprKind::Global(g) => self.globals.get(g.0 as usize)?.as_ref()?,
            _ => return None,
        };
        let Some(Some(n)) = self.names.get(s.0 as usize) else {
            return None;
        };
        t.with_attrs(|m| f(m, m.get_hinted(n, &e.memo, 0)))
    }

    /// The error `x` of forcing the attribute that step `i` of selection `e` (`inner.path`)
    /// found in set `v` (`dynamic`: the step's name if it is dynamic, as computed).
    #[cold]
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    fn step_failed(
        &mut self,
        x: EvalError,
        v: &Value,
        dynamic: Option<RcStr>,
        e: &'static Expr,
        inner: &'static Expr,
        path: &'static [AttrName],
        env: &Env,
        i: usize,
    ) -> EvalError {
        let name = self.static_or(&path[i], dynamic);
        let def = self.def_offset(v, name.as_deref());
        self.select_error(x, e, inner, path, env, i + 1, def)
    }

    /// The name of selection step `a`: a static name's handle, or else `dynamic`, the
    /// dynamic name as computed (`None` for `null`). For [`Self::select`]'s errors.
    #[cold]
    #[inline(never)]
    fn static_or(&mut self, a: &AttrName, dynamic: Option<RcStr>) -> Option<RcStr> {
        match a {
            AttrName::Static(s) => Some(self.name_rc(*s)),
            AttrName::Dynamic(_) => dynamic,
        }
    }

    /// `e` evaluated to a Boolean; an error gets the frame `ctx` (what `e` is to its
    /// operator), at `e`. The kinds that make a Boolean (`?`, `!`, `&&`, `||`, `->`, `==`,
    /// `!=`; most conditions are one) are computed as one here, without [`Self::eval`]'s
    /// dispatch, the Boolean value made and taken apart again, and `eval_step`'s frame;
    /// their errors are placed at `e` as `eval_step` places them. Always inlined: only the
    /// dispatch on a call (most conditions are one, `a < b` or `pred x`), so that the
    /// caller calls [`Self::eval_bool_call`] itself, without a function between whose
    /// prologue saves the registers the other kinds need.
    #[inline(always)]
    fn eval_bool(&mut self, e: &'static Expr, env: &Env, ctx: &'static str) -> EResult<bool> {
        match &e.kind {
            ExprKind::Call { fun, args } => self.eval_bool_call(e, fun, args, env, ctx),
            _ => self.eval_bool_kind(e, env, ctx),
        }
    }

    /// [`Self::eval_bool`] of the kinds other than a call.
    #[inline(never)]
    fn eval_bool_kind(&mut self, e: &'static Expr, env: &Env, ctx: &'static str) -> EResult<bool> {
        let r = match &e.kind {
            ExprKind::HasAttr { e: inner, path } => self.has_attr(e, inner, path, env),
            ExprKind::Not(x) => match self.eval_bool(x, env, "in the argument of '!'") {
                Ok(b) => Ok(!b),
                Err(x) => Err(x),
            },
            ExprKind::Bin { op, a, b } if is_boolean(*op) => self.bool_binop(*op, a, b, env),
            _ => return self.eval_bool_value(e, env, ctx),
        };
        match r {
            Ok(b) => Ok(b),
            Err(x) => {
                let x = self.locate_error(x, e);
                Err(self.text_frame_at(x, ctx, e))
            }
        }
    }

    /// [`Self::eval_bool`] of a call `e`: as [`Self::eval`] makes it (an operator the parser
    /// made a call, `a < b`, or a call of a function, `pred x`), without `eval`'s dispatch,
    /// and `a < b` of integers at hand compared here, without the call of `direct_op` and
    /// the Boolean value made and taken apart again.
    #[inline(never)]
    fn eval_bool_call(
        &mut self,
        e: &'static Expr,
        fun: &'static Expr,
        args: &'static [Expr],
        env: &Env,
        ctx: &'static str,
    ) -> EResult<bool> {
        let r = match self.as_direct_op(e) {
            Some((op, a, b)) => {
                if let Some(v) = self.direct_op_in_place(op, a, b, env) {
                    let cond = match v {
                        Value::Bool(c) => Some(c),
                        _ => None,
                    };
                    // A number (`if a - b then`) is no condition: its error is made below.
                    v.discard();
                    if let Some(c) = cond {
                        return Ok(c);
                    }
                }
                self.direct_op_call(e, op, a, b, env)
            }
            None => self.eval_call_of(e, fun, args, env),
        };
        self.bool_of(r, e, ctx)
    }

    /// [`Self::eval_bool`] of the other kinds: `e`'s value, which must be a Boolean.
    fn eval_bool_value(&mut self, e: &'static Expr, env: &Env, ctx: &'static str) -> EResult<bool> {
        let r = self.eval(e, env);
        self.bool_of(r, e, ctx)
    }

    /// The value `r` of condition `e` as a Boolean; an error (`r`'s, or that it is no
    /// Boolean) gets the frame `ctx`, at `e`.
    #[inline(always)]
    fn bool_of(&mut self, r: EResult<Value>, e: &'static Expr, ctx: &'static str) -> EResult<bool> {
        let x = match r {
            Ok(v) => {
                if let Value::Bool(b) = v {
                    // Owns nothing: no call of the drop glue (see `Value::discard`).
                    v.discard();
                    return Ok(b);
                }
                self.type_error("a Boolean", &v)
            }
            Err(x) => x,
        };
        Err(self.text_frame_at(x, ctx, e))
    }

    /// `e` evaluated as an operand; an error gets the frame `ctx`, at `e`.
    #[inline]
    fn eval_operand(&mut self, e: &'static Expr, env: &Env, ctx: &'static str) -> EResult<Value> {
        match self.eval(e, env) {
            Ok(v) => Ok(v),
            Err(x) => Err(self.text_frame_at(x, ctx, e)),
        }
    }

    /// [`Self::eval_operand`] with [`Self::eval_operand_value`]'s cases in place: for the
    /// operands of `==`, `!=` and `+`, mostly literals and computed variables. (Elsewhere,
    /// where operands are sets, lists and strings, the larger code would not pay.)
    #[inline(always)]
    fn eval_scalar_operand(
        &mut self,
        e: &'static Expr,
        env: &Env,
        ctx: &'static str,
    ) -> EResult<Value> {
        match self.eval_operand_value(e, env) {
            Ok(v) => Ok(v),
            Err(x) => Err(self.text_frame_at(x, ctx, e)),
        }
    }

    /// The operators whose result is a Boolean ([`is_boolean`]) applied to `a` and `b`;
    /// errors are not placed (the caller places them at the operation).
    #[inline]
    fn bool_binop(
        &mut self,
        op: BinOp,
        a: &'static Expr,
        b: &'static Expr,
        env: &Env,
    ) -> EResult<bool> {
        Ok(match op {
            BinOp::And => {
                self.eval_bool(a, env, "in the left operand of '&&'")?
                    && self.eval_bool(b, env, "in the right operand of '&&'")?
            }
            BinOp::Or => {
                self.eval_bool(a, env, "in the left operand of '||'")?
                    || self.eval_bool(b, env, "in the right operand of '||'")?
            }
            BinOp::Impl => {
                !self.eval_bool(a, env, "in the left operand of '->'")?
                    || self.eval_bool(b, env, "in the right operand of '->'")?
            }
            BinOp::Eq => self.eq_operands(a, b, env)?,
            BinOp::NEq => {
                let x = self.eval_scalar_operand(a, env, "in the left operand of '!='")?;
                let y = self.eval_scalar_operand(b, env, "in the right operand of '!='")?;
                let r = self.equal(&x, &y);
                x.discard();
                y.discard();
                !r?
            }
            BinOp::Update | BinOp::ConcatLists => {
                return err("internal error: not a Boolean operator")
            }
        })
    }

    /// `a == b` (errors not placed): two integers compared at once, without the call of
    /// `equal`. Always inlined: [`Self::eval_bool_op`] computes the most common operator
    /// with it, without the call of [`Self::bool_binop`].
    #[inline(always)]
    fn eq_operands(&mut self, a: &'static Expr, b: &'static Expr, env: &Env) -> EResult<bool> {
        let x = self.eval_scalar_operand(a, env, "in the left operand of '=='")?;
        // An integer compared with one at hand (`x == 5`): the second operand is not made a
        // value (looking at it evaluates nothing).
        if let Value::Int(i) = &x {
            if let Some(j) = int_in_place(b, env) {
                let r = *i == j;
                x.discard();
                return Ok(r);
            }
        }
        let y = self.eval_scalar_operand(b, env, "in the right operand of '=='")?;
        if let (Value::Int(i), Value::Int(j)) = (&x, &y) {
            let r = i == j;
            x.discard();
            y.discard();
            return Ok(r);
        }
        let r = self.equal(&x, &y);
        x.discard();
        y.discard();
        r
    }

    /// `x // { ... }` with a set literal on the right whose map a plain build makes (not
    /// recursive, no `inherit (e)`, no dynamic name, its name order known: see
    /// [`Self::eval_attrs`]): the result made from `x` and the literal's definitions at
    /// once, without the literal's own set (two allocations, and its entries copied
    /// again). The same result and origin as the general way; `None` where that applies
    /// (`x` not a set, for its error, or either side empty).
    #[inline(never)]
    fn update_with_literal(&mut self, x: &Value, b: &'static Expr, env: &Env) -> Option<Value> {
        let ExprKind::Attrs(lit) = &b.kind else {
            return None;
        };
        if lit.rec || !lit.inherit_from.is_empty() || !lit.dynamic.is_empty() {
            return None;
        }
        let Value::Attrs(x) = x else {
            return None;
        };
        let order = self.known_name_order(b)?;
        if x.is_empty() || order.defs.is_empty() {
            return None;
        }
        let map = x.map.update_sorted(
            order.defs.len(),
            order.defs.iter().map(|(name, sym, def)| {
                (
                    name.clone(),
                    self.def_thunk(*sym, def, env, env, false, &[]),
                )
            }),
        );
        // The literal defines exactly the names it gives (all static).
        let origin =
            crate::positions::joined_origin(x, Origin::Attrs(lit), true, &map, &self.interner);
        Some(Value::Attrs(Rc::new(AttrSet::with_origin(map, origin))))
    }

    #[inline(never)]
    fn binop(
        &mut self,
        op: BinOp,
        a: &'static Expr,
        b: &'static Expr,
        env: &Env,
    ) -> EResult<Value> {
        match op {
            BinOp::And | BinOp::Or | BinOp::Impl | BinOp::Eq | BinOp::NEq => {
                Ok(Value::Bool(self.bool_binop(op, a, b, env)?))
            }
            BinOp::Update => {
                let x = self.eval_operand(a, env, "in the left operand of '//'")?;
                if let Some(r) = self.update_with_literal(&x, b, env) {
                    return Ok(r);
                }
                let y = self.eval_operand(b, env, "in the right operand of '//'")?;
                match (x, y) {
                    (Value::Attrs(x), Value::Attrs(y)) => {
                        if y.is_empty() {
                            return Ok(Value::Attrs(x));
                        }
                        if x.is_empty() {
                            return Ok(Value::Attrs(y));
                        }
                        let map = x.map.update(&y.map);
                        let origin = crate::positions::update_origin(&x, &y, &map, &self.interner);
                        Ok(Value::Attrs(Rc::new(AttrSet { map, origin })))
                    }
                    (x, y) => Err(self
                        .type_error("a set", if matches!(x, Value::Attrs(_)) { &y } else { &x })),
                }
            }
            BinOp::ConcatLists => {
                let x = self.eval_operand(a, env, "in the left operand of '++'")?;
                let y = self.eval_operand(b, env, "in the right operand of '++'")?;
                match (x, y) {
                    // With an empty side, the other list as it is (shared, not copied), as
                    // in CppNix: `acc ++ [ ]` in a fold stays linear.
                    (Value::List(x), Value::List(y)) if y.is_empty() => Ok(Value::List(x)),
                    (Value::List(x), Value::List(y)) if x.is_empty() => Ok(Value::List(y)),
                    (Value::List(x), Value::List(y)) => {
                        // One allocation of the final size (not a copy of `x` grown).
                        let mut v = Vec::with_capacity(x.len() + y.len());
                        v.extend_from_slice(&x);
                        v.extend_from_slice(&y);
                        Ok(Value::List(Rc::new(v)))
                    }
                    (x, y) => {
                        let v = if matches!(x, Value::List(_)) { &y } else { &x };
                        Err(self.concat_lists_error(v, a, b))
                    }
                }
            }
        }
    }

    #[inline(never)]
    fn concat(&mut self, force_string: bool, parts: &'static [Expr], env: &Env) -> EResult<Value> {
        // `a + b` on numbers, without collecting the parts.
        if !force_string && parts.len() == 2 {
            let a = self.eval_scalar_operand(&parts[0], env, PLUS_OPERAND)?;
            if matches!(a, Value::Int(_) | Value::Float(_)) {
                let b = self.eval_scalar_operand(&parts[1], env, PLUS_OPERAND)?;
                return self.add_values(a, b, &parts[1]);
            }
            let b = self.eval_operand(&parts[1], env, PLUS_OPERAND)?;
            return self.concat_values(force_string, vec![a, b], parts);
        }
        let mut vals = Vec::with_capacity(parts.len());
        for p in parts {
            vals.push(self.eval_operand(p, env, PLUS_OPERAND)?);
        }
        self.concat_values(force_string, vals, parts)
    }

    /// The values of `parts` joined (or added, when the first is a number).
    fn concat_values(
        &mut self,
        force_string: bool,
        vals: Vec<Value>,
        parts: &'static [Expr],
    ) -> EResult<Value> {
        let first = vals.first().cloned().unwrap_or(Value::str(""));
        if !force_string {
            match first {
                Value::Int(_) | Value::Float(_) => {
                    let mut acc = first;
                    for (v, part) in vals[1..].iter().zip(&parts[1..]) {
                        acc = add_numbers(self, &acc, v).map_err(|x| self.locate_error(x, part))?;
                    }
                    return Ok(acc);
                }
                Value::Path(p) => {
                    let mut s = p.to_string();
                    for (v, part) in vals[1..].iter().zip(&parts[1..]) {
                        match v {
                            Value::String(x) => {
                                if !x.context.is_empty() {
                                    return err("a string that refers to a store path cannot be appended to a path");
                                }
                                s.push_str(&x.s)
                            }
                            Value::Path(x) => s.push_str(x),
                            other => {
                                return Err(
                                    self.coerce_error_in(other, Some((PATH_SEGMENT, Some(part))))
                                );
                            }
                        }
                    }
                    return Ok(Value::Path(canon_path(&s).into()));
                }
                _ => {}
            }
        }
        let mut s = String::new();
        // The context of the one part that has one is shared as it is (the usual case:
        // `"${drv}/bin"`); only parts with different contexts make a merged list.
        let mut first: Option<Rc<Vec<RcStr>>> = None;
        let mut more: Vec<RcStr> = Vec::new();
        for (v, p) in vals.iter().zip(parts) {
            let part = match v {
                Value::String(s) => s.clone(),
                v => self.coerce_in(v, false, true, Some((PATH_SEGMENT, Some(p))))?,
            };
            s.push_str(&part.s);
            if part.context.is_empty() {
                continue;
            }
            match &first {
                None => first = Some(part.context),
                Some(f) if Rc::ptr_eq(f, &part.context) || **f == *part.context => {}
                Some(_) => more.extend(part.context.iter().cloned()),
            }
        }
        Ok(Value::String(match first {
            None => NixString::plain(s),
            Some(f) if more.is_empty() => NixString {
                s: s.into(),
                context: f,
            },
            Some(f) => {
                more.extend(f.iter().cloned());
                NixString::with_context(s, more)
            }
        }))
    }

    /// `coerceToString`: strings, paths (copied to the store when `copy`, as string
    /// interpolation does), sets with `__toString` or `outPath`; with `coerce_more` (as
    /// `toString` does) also numbers, booleans, null and lists.
    pub fn coerce_to_string(
        &mut self,
        v: &Value,
        coerce_more: bool,
        copy: bool,
    ) -> EResult<NixString> {
        self.coerce_in(v, coerce_more, copy, None)
    }

    /// [`Self::coerce_to_string`] for a value the caller names in `ctx` (a frame's text and
    /// the operand it is about), as current Nix's `errorCtx`: a value that cannot be coerced (also one a
    /// `__toString` or `outPath` gives) gets that frame, and no position of its own.
    pub fn coerce_in(
        &mut self,
        v: &Value,
        coerce_more: bool,
        copy: bool,
        ctx: CoerceCtx,
    ) -> EResult<NixString> {
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Path(p) => {
                if copy {
                    self.copy_path_to_store(p)
                } else {
                    Ok(NixString::plain(p.clone()))
                }
            }
            Value::Attrs(a) => {
                if let Some((n, f)) = a.entry_hinted(&self.coerce_names[0], &self.coerce_hints, 0) {
                    if !RcStr::ptr_eq(n, &self.coerce_names[0]) {
                        self.coerce_names[0] = n.clone();
                    }
                    let r = match self.force(&f.clone()) {
                        Ok(f) => self.call(f, Thunk::value(v.clone())),
                        Err(x) => Err(x),
                    };
                    let r = r.map_err(|x| self.peel_frame(x, a, "__toString", false))?;
                    return self
                        .coerce_in(&r, coerce_more, copy, ctx)
                        .map_err(|x| self.peel_frame(x, a, "__toString", true));
                }
                if let Some((n, o)) = a.entry_hinted(&self.coerce_names[1], &self.coerce_hints, 1) {
                    if !RcStr::ptr_eq(n, &self.coerce_names[1]) {
                        self.coerce_names[1] = n.clone();
                    }
                    let o = self
                        .force(&o.clone())
                        .map_err(|x| self.peel_frame(x, a, "outPath", false))?;
                    return self
                        .coerce_in(&o, coerce_more, copy, ctx)
                        .map_err(|x| self.peel_frame(x, a, "outPath", true));
                }
                Err(self.coerce_error_in(v, ctx))
            }
            Value::Int(i) if coerce_more => Ok(NixString::plain(i.to_string())),
            // C++'s std::to_string: six decimals.
            Value::Float(f) if coerce_more => Ok(NixString::plain(format!("{f:.6}"))),
            Value::Bool(b) if coerce_more => Ok(NixString::plain(if *b { "1" } else { "" })),
            Value::Null if coerce_more => Ok(NixString::plain("")),
            Value::List(items) if coerce_more => {
                let inner = ctx.map(|(_, e)| ("while evaluating one element of the list", e));
                // Lists of one element (a flag, an input) are common: that element's string
                // is the list's, as it is, without a copy.
                if let [t] = &items[..] {
                    let r = match self.force(t) {
                        Ok(x) => self.coerce_in(&x, true, copy, inner),
                        Err(x) => Err(x),
                    };
                    return r.map_err(|x| self.ctx_frame(x, ctx));
                }
                let mut s = String::new();
                let mut ctx_ = Vec::new();
                for (i, t) in items.iter().enumerate() {
                    let r = match self.force(t) {
                        Ok(x) => self.coerce_in(&x, true, copy, inner).map(|p| (x, p)),
                        Err(x) => Err(x),
                    };
                    let (x, part) = r.map_err(|x| self.ctx_frame(x, ctx))?;
                    if i > 0 && !(matches!(x, Value::List(ref l) if l.is_empty())) {
                        s.push(' ');
                    }
                    s.push_str(&part.s);
                    ctx_.extend(part.context.iter().cloned());
                }
                if ctx_.is_empty() {
                    return Ok(NixString::plain(s));
                }
                Ok(NixString {
                    s: s.into(),
                    context: Rc::new(ctx_),
                })
            }
            other => Err(self.coerce_error_in(other, ctx)),
        }
    }

    /// The frame `ctx` of [`Self::coerce_in`].
    #[cold]
    #[inline(never)]
    fn ctx_frame(&self, mut x: EvalError, ctx: CoerceCtx) -> EvalError {
        match ctx {
            Some((text, Some(e))) => {
                let at = self.positions.operand_start(e.span.start, e.span.end);
                x.trace.push(self.frame(text.to_string(), at));
            }
            Some((text, None)) => x.trace.push(text.to_string()),
            None => {}
        }
        x
    }

    /// "cannot coerce" with the frame `ctx` of [`Self::coerce_in`], and then no position of
    /// its own, as in current Nix.
    #[cold]
    #[inline(never)]
    fn coerce_error_in(&self, v: &Value, ctx: CoerceCtx) -> EvalError {
        let mut x = self.coerce_error(v);
        if ctx.is_some() {
            x.at = Some(String::new());
        }
        self.ctx_frame(x, ctx)
    }

    /// The frame of an error getting (`used` false) or using (`used` true) a set's
    /// `__toString` or `outPath` to coerce it, at that attribute; an error of the call
    /// itself (calling something that is not a function) is placed there too.
    #[cold]
    #[inline(never)]
    pub(crate) fn peel_frame(
        &self,
        mut x: EvalError,
        a: &AttrSet,
        name: &str,
        used: bool,
    ) -> EvalError {
        let text = match (name, used) {
            ("__toString", false) => "while calling the `__toString` attribute",
            ("__toString", true) => "while using the result of the `__toString` attribute",
            (_, false) => "while evaluating the `outPath` attribute",
            (_, true) => "while using the `outPath` attribute",
        };
        let off = self.positions.attr_offset(a, name, &self.interner);
        if name == "__toString" && !used && x.at.is_none() && x.kind == ErrorKind::Other {
            x.at = off.and_then(|o| self.positions.render(o));
        }
        x.trace.push(match off {
            Some(o) => self.frame(text.to_string(), o),
            None => text.to_string(),
        });
        x
    }

    /// A path copied into the store (once per path), as its store path with that path as
    /// context.
    pub fn copy_path_to_store(&mut self, p: &str) -> EResult<NixString> {
        let name = crate::store::EvalStore::source_name(p)?;
        self.check_source_path(p)?;
        let sp = match self
            .store
            .add_source(&name, std::path::Path::new(p), true, None, None)
        {
            Ok(sp) => sp,
            // A missing path is worded as Nix does (looked at only when adding failed).
            Err(x) => {
                let mut x = match std::fs::symlink_metadata(p) {
                    Err(e) => crate::error::io_error("getting status of", p, &e),
                    Ok(_) => x,
                };
                // Without a position, as current Nix.
                x.at.get_or_insert_with(String::new);
                return Err(x);
            }
        };
        Ok(self.allowed_store_string(&sp))
    }

    /// `f a b`, as `call(call(f, a), b)`. For the usual two-argument lambda (`a: b: ...`),
    /// as builtins such as `foldl'` and `sort` call, both scopes are made at once and the
    /// body evaluated, without the closure of the first application in between.
    pub fn call2(&mut self, f: &Value, a: Thunk, b: Thunk) -> EResult<Value> {
        if let Some(l2) = Lambda2::of(f) {
            return self.call_lambda2(l2, a, b);
        }
        let g = self.call(f.clone(), a)?;
        self.call(g, b)
    }

    /// [`Self::call2`] of a two-argument lambda taken apart already (a builtin calling the
    /// same function for every element takes it apart once). Always inlined: called from
    /// `call2` and `force_applied2`, and a call of it would cost as much as it does.
    #[inline(always)]
    fn call_lambda2(&mut self, l2: Lambda2<'_>, a: Thunk, b: Thunk) -> EResult<Value> {
        let env = l2.env.push_two(l2.first, a, l2.second, b);
        let r = self.lambda2_body(l2, &env);
        env.discard(2);
        r
    }

    /// `foldl'` of a two-argument lambda (taken apart once) over the list of `first` and
    /// `rest` from the accumulator `acc` (not forced): as [`Self::call_lambda2`] for each
    /// element, but the two scopes of a call are rebound for the next one when nothing made
    /// in them is still alive (the usual case: the result is a number or a set of other
    /// values), and so is the accumulator's cell when nothing else holds it. A fold then
    /// allocates nothing per element where it made three cells.
    pub(crate) fn fold_lambda2(
        &mut self,
        l2: Lambda2<'_>,
        acc: Thunk,
        first: &Thunk,
        rest: &[Thunk],
    ) -> EResult<Value> {
        let mut env = l2.env.push_two(l2.first, acc, l2.second, first.clone());
        let mut v = self.lambda2_body(l2, &env);
        for t in rest {
            let Ok(x) = &v else { break };
            match env.two_bindings_mut() {
                Some((a, b)) => {
                    // SAFETY: `v` is forgotten below: the binding takes what it owned.
                    unsafe { a.rebind_value(x) };
                    *b = t.clone();
                }
                None => {
                    env.discard(2);
                    // SAFETY: as above.
                    let x = unsafe { copy_words(x) };
                    env = l2
                        .env
                        .push_two(l2.first, Thunk::value(x), l2.second, t.clone());
                }
            }
            std::mem::forget(v);
            v = self.lambda2_body(l2, &env);
        }
        env.discard(2);
        v
    }

    /// The body of two-argument lambda `l2` evaluated in `env` (its two arguments bound), as
    /// the second application of a call: the first evaluates nothing (see `call_at`); the
    /// second is a call, checked and counted as one, with its frame on an error.
    #[inline(always)]
    fn lambda2_body(&mut self, l2: Lambda2<'_>, env: &Env) -> EResult<Value> {
        if self.depth > self.max_call_depth {
            return err("stack overflow; max-call-depth exceeded");
        }
        self.check_stack()?;
        self.depth += 1;
        let r = self.eval(l2.body, env);
        self.depth -= 1;
        match r {
            Ok(v) => Ok(v),
            Err(x) => Err(self.call_frames(x, l2.inner, None)),
        }
    }

    /// Apply a function value to an argument.
    pub fn call(&mut self, f: Value, arg: Thunk) -> EResult<Value> {
        self.call_at(f, arg, None)
    }

    /// [`Self::call`] from a call at offset `site` (for the `--show-trace` frame of a
    /// builtin called there).
    #[inline]
    fn call_at(&mut self, f: Value, arg: Thunk, site: Option<u32>) -> EResult<Value> {
        // A closure whose body is a function (`a: b: ...`, applied to its first argument):
        // the result is that function in the bound scope, made here without evaluating
        // anything (so no call depth or stack to check).
        if let Value::Lambda(l) = &f {
            if let ExprKind::Lambda { body, .. } = &l.expr.kind {
                if matches!(body.kind, ExprKind::Lambda { .. }) {
                    return match self.bind_lambda(l, arg) {
                        Ok((body, env)) => Ok(Value::Lambda(Lambda { expr: body, env })),
                        Err(x) => Err(self.bind_error(x, site)),
                    };
                }
            }
        }
        // A lambda of one plain argument, the usual function a builtin calls (`map`'s,
        // `filter`'s): its scope made and its body evaluated without `call_inner`'s
        // dispatch, with the same depth, checks and frames.
        let f = match f {
            Value::Lambda(l)
                if matches!(
                    l.expr.kind,
                    ExprKind::Lambda {
                        arg: Some(_),
                        formals: None,
                        ..
                    }
                ) =>
            {
                return self.call_simple(l, arg, None, false);
            }
            f => f,
        };
        // As in current Nix, the depth before the call is checked.
        if self.depth > self.max_call_depth {
            return err("stack overflow; max-call-depth exceeded");
        }
        self.check_stack()?;
        self.depth += 1;
        let r = self.call_inner(f, arg, site);
        self.depth -= 1;
        r
    }

    /// Bind `arg` to a lambda's parameter (or formals): its body and the environment to
    /// evaluate it in.
    #[inline]
    fn bind_lambda(&mut self, l: &Lambda, arg: Thunk) -> EResult<(&'static Expr, Env)> {
        match &l.expr.kind {
            // The common case: one argument, one binding, no map to build.
            ExprKind::Lambda {
                arg: Some(n),
                formals: None,
                body,
            } => Ok((body, l.env.clone().extend(*n, arg))),
            _ => self.bind_formals(l, arg),
        }
    }

    /// [`Self::bind_lambda`] of a lambda with formals.
    #[inline(never)]
    fn bind_formals(&mut self, l: &Lambda, arg: Thunk) -> EResult<(&'static Expr, Env)> {
        let ExprKind::Lambda {
            arg: name,
            formals,
            body,
        } = &l.expr.kind
        else {
            return err("internal error: a lambda without a lambda expression");
        };
        let Some(formals) = formals else {
            return Ok((body, l.env.push_empty()));
        };
        // Exactly as many as the scope gets (it keeps the vector as its slice: a spare slot
        // would cost a reallocation there).
        let mut vars: Vec<(Symbol, Thunk)> =
            Vec::with_capacity(formals.formals.len() + usize::from(name.is_some()));
        let attrs = match self.force(&arg) {
            Ok(Value::Attrs(a)) => a,
            Ok(v) => return Err(self.lambda_arg_frame(self.type_error("a set", &v), l)),
            Err(x) => return Err(self.lambda_arg_frame(x, l)),
        };
        let env = l.env.push_empty();
        let mut used = 0;
        for fm in &formals.formals {
            // Each formal found takes a different argument (formals' names are unique): once
            // all are taken, the remaining formals are missing without a search.
            let found = if used < attrs.len() {
                match self.names.get(fm.name.0 as usize) {
                    Some(Some(n)) => attrs.get_rc_or_missing(n).cloned(),
                    _ => {
                        let n = self.name_rc(fm.name);
                        attrs.get_rc_or_missing(&n).cloned()
                    }
                }
            } else {
                None
            };
            match found {
                Some(t) => {
                    used += 1;
                    vars.push((fm.name, t));
                }
                None => match &fm.default {
                    Some(d) => {
                        let t = self.lazy_thunk(d, &env);
                        vars.push((fm.name, t));
                    }
                    None => {
                        let msg = format!(
                            "function '{}' called without required argument '{}'",
                            self.lambda_name(l),
                            self.interner.name(fm.name)
                        );
                        return Err(self.lambda_arg_error(l, msg, Vec::new()));
                    }
                },
            }
        }
        if !formals.ellipsis && used < attrs.len() {
            for k in attrs.keys() {
                let known = formals
                    .formals
                    .iter()
                    .any(|fm| self.interner.name(fm.name) == &**k);
                if !known {
                    let msg = format!(
                        "function '{}' called with unexpected argument '{}'",
                        self.lambda_name(l),
                        crate::print::error_attr_name(k)
                    );
                    let names = formals.formals.iter().map(|f| self.interner.name(f.name));
                    let suggestions = firn_syntax::suggest::best_matches(k, names);
                    return Err(self.lambda_arg_error(l, msg, suggestions));
                }
            }
        }
        // A formal of the same name hides the `@` name.
        if let Some(n) = name {
            if !vars.iter().any(|(s, _)| s == n) {
                vars.push((*n, arg));
            }
        }
        vars.sort_unstable_by_key(|(s, _)| *s);
        if let Some(Scope::Vars(v)) = env.scope() {
            v.set_sorted(vars);
        }
        Ok((body, env))
    }

    /// A lambda called with arguments its formals do not take: the error is at the lambda,
    /// as in current Nix (which gives it no "while calling" frame, see [`Self::bind_error`]).
    #[cold]
    #[inline(never)]
    fn lambda_arg_error(&self, l: &Lambda, msg: String, suggestions: Vec<String>) -> EvalError {
        let mut x = EvalError::new(msg);
        x.at = Some(self.positions.render(l.expr.span.start).unwrap_or_default());
        x.suggestions = suggestions;
        x
    }

    /// An error forcing the argument of a lambda with formals.
    #[cold]
    #[inline(never)]
    fn lambda_arg_frame(&self, mut x: EvalError, l: &Lambda) -> EvalError {
        if x.at.is_none() {
            x.at_in_frame = true;
        }
        let text = "while evaluating the value passed for the lambda argument";
        x.trace
            .push(self.frame(text.to_string(), l.expr.span.start));
        x
    }

    /// An error binding a lambda's argument (from [`Self::bind_lambda`]), called at offset
    /// `site`: only the call site's frame, as current Nix adds.
    #[cold]
    #[inline(never)]
    fn bind_error(&self, mut x: EvalError, site: Option<u32>) -> EvalError {
        if let Some(site) = site {
            if x.at.is_none() {
                x.at = Some(String::new());
            }
            x.trace.push(self.frame("from call site".into(), site));
        }
        x
    }

    fn call_inner(&mut self, f: Value, arg: Thunk, site: Option<u32>) -> EResult<Value> {
        match f {
            Value::Lambda(l) => {
                let (body, env) = match self.bind_lambda(&l, arg) {
                    Ok(b) => b,
                    Err(x) => return Err(self.bind_error(x, site)),
                };
                self.eval(body, &env)
                    .map_err(|x| self.call_frames(x, l.expr, None))
            }
            Value::PrimOp(p) => {
                if p.arity == 1 {
                    (p.f)(self, &[arg]).map_err(|x| self.builtin_frame(x, &p, site))
                } else {
                    Ok(Value::PrimOpApp(p, Rc::new(vec![arg])))
                }
            }
            Value::PrimOpApp(p, args) => {
                if args.len() + 1 < p.arity {
                    let mut all = Vec::with_capacity(args.len() + 1);
                    all.extend_from_slice(&args);
                    all.push(arg);
                    return Ok(Value::PrimOpApp(p, Rc::new(all)));
                }
                // Completed: the usual arities' arguments on the stack, without a vector.
                let r = match &args[..] {
                    [a] => (p.f)(self, &[a.clone(), arg]),
                    [a, b] => (p.f)(self, &[a.clone(), b.clone(), arg]),
                    _ => {
                        let mut all = (*args).clone();
                        all.push(arg);
                        (p.f)(self, &all)
                    }
                };
                r.map_err(|x| self.builtin_frame(x, &p, site))
            }
            Value::Attrs(a) if a.contains_key("__functor") => {
                let f = a
                    .get("__functor")
                    .cloned()
                    .ok_or_else(|| EvalError::new("no functor"))?;
                let fv = self.force(&f)?;
                let partial = self.call(fv, Thunk::value(Value::Attrs(a.clone())))?;
                self.call(partial, arg)
            }
            v => err(format!(
                "attempt to call something which is not a function but {}: {}",
                v.type_name(),
                crate::print::show_for_error(self, &v)
            )),
        }
    }

    /// A lambda's name as messages give it: the name it was bound to, if any.
    fn lambda_name(&self, l: &Lambda) -> String {
        match firn_syntax::scope::lambda_name(l.expr) {
            Some(s) => self.interner.name(s).to_string(),
            None => "anonymous lambda".to_string(),
        }
    }

    /// CppNix's `autoCallFunction` (`--arg`, `--argstr`): a function with a set pattern is
    /// called with the given arguments it accepts (all of them if it has `...`); anything else
    /// is returned as it is.
    pub fn auto_call(&mut self, v: Value, args: &AttrMap) -> EResult<Value> {
        let Value::Lambda(l) = &v else {
            return Ok(v);
        };
        let ExprKind::Lambda {
            formals: Some(formals),
            ..
        } = &l.expr.kind
        else {
            return Ok(v);
        };
        let mut given = AttrMap::new();
        if formals.ellipsis {
            given = args.clone();
        } else {
            for fm in &formals.formals {
                let n = self.name_rc(fm.name);
                if let Some(t) = args.get(&n) {
                    given.insert(n, t.clone());
                }
            }
        }
        self.call(v.clone(), Thunk::value(Value::Attrs(Rc::new(given.into()))))
    }

    /// Nix's `==`.
    pub fn equal(&mut self, a: &Value, b: &Value) -> EResult<bool> {
        Ok(match (a, b) {
            (Value::Int(x), Value::Int(y)) => x == y,
            (Value::Int(x), Value::Float(y)) => (*x as f64) == *y,
            (Value::Float(x), Value::Int(y)) => *x == (*y as f64),
            (Value::Float(x), Value::Float(y)) => x == y,
            (Value::String(x), Value::String(y)) => x.s == y.s,
            (Value::Path(x), Value::Path(y)) => x == y,
            (Value::Null, Value::Null) => true,
            // Functions are never equal as values; only the very same element of two lists
            // or sets is (see `equal_thunks`), as in CppNix.
            (Value::Bool(x), Value::Bool(y)) => x == y,
            (Value::List(x), Value::List(y)) => {
                if Rc::ptr_eq(x, y) {
                    return Ok(true);
                }
                self.check_stack()?;
                if x.len() != y.len() {
                    return Ok(false);
                }
                for (p, q) in x.iter().zip(y.iter()) {
                    if !self.equal_thunks(p, q)? {
                        return Ok(false);
                    }
                }
                true
            }
            (Value::Attrs(x), Value::Attrs(y)) => {
                if Rc::ptr_eq(x, y) {
                    return Ok(true);
                }
                self.check_stack()?;
                // Derivations compare by their output path.
                if self.is_derivation(x)? && self.is_derivation(y)? {
                    if let (Some(p), Some(q)) = (x.get("outPath"), y.get("outPath")) {
                        let p = self.force(&p.clone())?;
                        let q = self.force(&q.clone())?;
                        return self.equal(&p, &q);
                    }
                }
                if x.len() != y.len() {
                    return Ok(false);
                }
                for ((k1, v1), (k2, v2)) in x.iter().zip(y.iter()) {
                    if k1 != k2 {
                        return Ok(false);
                    }
                    if !self.equal_thunks(v1, v2)? {
                        return Ok(false);
                    }
                }
                true
            }
            _ => false,
        })
    }

    /// Equality of two elements: the same thunk is equal to itself (whatever its value, so
    /// `[ f ] == [ f ]` holds for a function `f`), otherwise their values are compared.
    pub fn equal_thunks(&mut self, a: &Thunk, b: &Thunk) -> EResult<bool> {
        // Two computed integers (long lists of numbers), compared without a value made and
        // dropped for each.
        if let (Some(i), Some(j)) = (a.peek_int(), b.peek_int()) {
            return Ok(i == j);
        }
        let p = self.force(a)?;
        let q = self.force(b)?;
        if Thunk::ptr_eq(a, b) {
            return Ok(true);
        }
        self.equal(&p, &q)
    }

    pub fn is_derivation(&mut self, a: &AttrMap) -> EResult<bool> {
        match a.get("type") {
            Some(t) => match self.force(&t.clone())? {
                Value::String(s) => Ok(&*s.s == "derivation"),
                _ => Ok(false),
            },
            None => Ok(false),
        }
    }
}

impl Default for Evaluator {
    fn default() -> Self {
        Evaluator::new()
    }
}

/// The text of a string that must not refer to the store (attribute names, for example).
pub fn no_context(s: NixString) -> EResult<RcStr> {
    match s.context.first() {
        None => Ok(s.s),
        Some(c) => err(format!(
            "the string '{}' is not allowed to refer to a store path (such as '{c}')",
            s.s
        )),
    }
}

/// Whether `op` makes a Boolean (see [`Evaluator::bool_binop`]).
#[inline(always)]
fn is_boolean(op: BinOp) -> bool {
    matches!(
        op,
        BinOp::And | BinOp::Or | BinOp::Impl | BinOp::Eq | BinOp::NEq
    )
}

/// Where CppNix places expression `e` in a frame: an operator written as a call of a builtin
/// (`a < b` is `__lessThan a b`) at the operator, otherwise where `e` starts.
#[cold]
#[inline(never)]
fn op_pos(e: &Expr) -> u32 {
    match &e.kind {
        ExprKind::Call { fun, .. } if fun.span.start > e.span.start => fun.span.start,
        ExprKind::Not(x) if x.span.start == e.span.start => match &x.kind {
            ExprKind::Call { fun, .. } if fun.span.start > e.span.start => fun.span.start,
            _ => e.span.start,
        },
        _ => e.span.start,
    }
}

/// What a value being coerced to a string is, for the frame of an error (see
/// [`Evaluator::coerce_in`]): the frame's text and the operand it is about, if any.
pub type CoerceCtx = Option<(&'static str, Option<&'static Expr>)>;

/// The frame of an error evaluating a part of a string, a path or a sum.
const PLUS_OPERAND: &str = "in an operand of '+'";

/// The frame of a part of a string or path that cannot be coerced to a string.
const PATH_SEGMENT: &str = "while evaluating a path segment";

/// What the first step of a selection found in place ([`Evaluator::step_in_place`]).
enum InPlace {
    /// The attribute, computed: its value.
    Value(Value),
    /// The attribute, not computed yet: the set (for an error's frames) and its thunk.
    Pending(Value, Thunk),
    /// No attribute of the name.
    Missing,
}

/// How [`Evaluator::finish_parse`] keeps a parsed text's positions.
#[derive(Clone, Copy)]
enum Kept {
    /// Read from disk: read again when needed.
    Disk,
    /// Kept as it is (not a file).
    Text,
    /// Read from disk by the thread that parses ahead, which moved the tree to the range
    /// from `base` and hashed the text (`len` bytes; the text given may be empty when there
    /// are no warnings to show). Never for a failed parse.
    Shifted { base: u32, hash: u64, len: usize },
}

/// The memo of a literal met once and not yet given a place in the literal table.
const LITERAL_SEEN: u32 = u32::MAX;

/// The memo of a set expression built once and not yet given a name order.
const ORDER_SEEN: u32 = u32::MAX;

/// A set expression's attributes in the order of the map it makes (by name; its syntax is
/// in symbol order): for each, the name's shared handle, the symbol and the definition.
struct NameOrder {
    defs: Box<[(RcStr, Symbol, &'static AttrDef)]>,
    /// For each attribute in symbol order, its place in `defs`.
    by_symbol: Box<[u32]>,
}

/// The address of a local: where the stack is now.
#[inline(always)]
fn stack_pointer() -> usize {
    let here = 0u8;
    std::hint::black_box(std::ptr::addr_of!(here)) as usize
}

/// Open `path` for reading: the file and its length, or no length for a directory.
fn open_with_len(path: &str) -> std::io::Result<(std::fs::File, Option<u64>)> {
    let f = std::fs::File::open(path)?;
    let meta = f.metadata()?;
    let len = (!meta.is_dir()).then_some(meta.len());
    Ok((f, len))
}

/// The bit of a symbol in a thunk's `Select` state that marks a thunk that failed (see
/// [`Evaluator::keep_failure`]); no symbol has it.
const FAILED: u32 = 1 << 31;

/// "infinite recursion encountered": thunk `t` was forced while being forced.
#[cold]
#[inline(never)]
fn recursion_error(t: &Thunk) -> EvalError {
    let mut x = EvalError::new("infinite recursion encountered");
    x.blackhole = t.addr();
    x
}

/// An error out of forcing thunk `t`: if it is the infinite recursion found at `t`, this is
/// where the cycle starts (current Nix's frame, without a position).
#[inline]
fn entering_recursion(mut x: EvalError, t: &Thunk) -> EvalError {
    if x.blackhole != 0 && x.blackhole == t.addr() {
        x.blackhole = 0;
        x.push_frame("entering the infinite recursion".into(), FramePrint::Always);
    }
    x
}

/// An infinite recursion found forcing thunk `t` (of `e` in `env`) that is met again
/// through `t`'s variable: current Nix binds a variable (in `rec`, `let`, formals'
/// defaults) that is just another variable bound before it to that one's thunk, so there
/// `t` is the thunk met again, and the error is where `t` was forced, not at `e`.
#[cold]
#[inline(never)]
fn aliased_recursion(mut x: EvalError, t: &Thunk, e: &'static Expr, env: &Env) -> EvalError {
    let ExprKind::Var(s) = &e.kind else {
        return x;
    };
    let Some((up, i)) = firn_syntax::scope::var_address(e) else {
        return x;
    };
    match lookup_var_ref(e, *s, env) {
        Some(target) if target.addr() == x.blackhole => {}
        _ => return x,
    }
    // In the same scope, only a variable bound before (scopes are in CppNix's order).
    if up == 0 {
        match env.scope() {
            Some(Scope::Vars(v)) if v.position(t).is_some_and(|j| i < j) => {}
            _ => return x,
        }
    }
    x.at = None;
    x
}

#[cold]
fn stack_overflow() -> EvalError {
    EvalError::new("stack overflow (possible infinite recursion)")
}

/// `a + b` where `a` is a number: CppNix's message when `b` is not one.
fn add_numbers(ev: &Evaluator, a: &Value, b: &Value) -> EResult<Value> {
    match b {
        Value::Int(_) | Value::Float(_) => crate::builtins::arith(ev, '+', a, b),
        other => err(format!(
            "cannot add {} to {}",
            other.type_name(),
            if matches!(a, Value::Int(_)) {
                "an integer"
            } else {
                "a float"
            }
        )),
    }
}

/// A lambda of two plain arguments (`a: b: body`) taken apart, for [`Evaluator::call2`] and
/// [`Evaluator::fold_lambda2`].
#[derive(Clone, Copy)]
pub(crate) struct Lambda2<'a> {
    /// The closure's environment.
    env: &'a Env,
    /// The two parameters.
    first: Symbol,
    second: Symbol,
    /// The inner lambda (`b: body`), for the frame of an error.
    inner: &'static Expr,
    body: &'static Expr,
}

impl<'a> Lambda2<'a> {
    /// `f` taken apart if it is such a lambda.
    #[inline]
    pub(crate) fn of(f: &'a Value) -> Option<Lambda2<'a>> {
        let Value::Lambda(l) = f else { return None };
        let ExprKind::Lambda {
            arg: Some(first),
            formals: None,
            body: inner,
        } = &l.expr.kind
        else {
            return None;
        };
        let ExprKind::Lambda {
            arg: Some(second),
            formals: None,
            body,
        } = &inner.kind
        else {
            return None;
        };
        Some(Lambda2 {
            env: &l.env,
            first: *first,
            second: *second,
            inner,
            body,
        })
    }
}

/// The value of thunk `f` if it is computed and a lambda of one plain argument whose body is
/// no function (so that a call evaluates the body: see [`Evaluator::call_at`]).
#[inline]
fn simple_lambda(f: &Thunk) -> Option<Lambda> {
    f.lambda_where(is_simple_lambda)
}

/// Whether lambda expression `e` takes one plain argument and its body is no function
/// ([`simple_lambda`]'s kind, which [`Evaluator::call_simple`] calls).
#[inline]
fn is_simple_lambda(e: &Expr) -> bool {
    match &e.kind {
        ExprKind::Lambda {
            arg: Some(_),
            formals: None,
            body,
        } => !matches!(body.kind, ExprKind::Lambda { .. }),
        _ => false,
    }
}

/// [`Evaluator::direct_op`]'s operator `op` on two integers, when it has a result here
/// (`None` for an overflow or a division by zero, which take the general way for their
/// errors).
#[inline(always)]
fn int_op(op: usize, i: i64, j: i64) -> Option<Value> {
    match op {
        0 => i.checked_sub(j).map(Value::Int),
        1 => i.checked_mul(j).map(Value::Int),
        2 if j != 0 => i.checked_div(j).map(Value::Int),
        3 => Some(Value::Bool(i < j)),
        _ => None,
    }
}

/// The operands of `e` if it is `a + b` (not a string interpolation) whose first operand
/// is a variable or an integer literal, the case [`Evaluator::eval_sum`] may do at once;
/// other sums (`f x + f y`) go straight to `eval_step`, without that detour.
#[inline(always)]
fn as_sum_of_var(e: &'static Expr) -> Option<(&'static Expr, &'static Expr)> {
    match &e.kind {
        ExprKind::Concat {
            force_string: false,
            parts,
        } => match &parts[..] {
            [a @ Expr {
                kind: ExprKind::Var(_) | ExprKind::Int(_),
                ..
            }, b] => Some((a, b)),
            _ => None,
        },
        _ => None,
    }
}

/// Operand `e` if it is an integer at hand: a literal, or a variable bound lexically whose
/// value is computed. Nothing is evaluated (so it may be looked at before the operands
/// before it are evaluated).
#[inline(always)]
fn int_in_place(e: &Expr, env: &Env) -> Option<i64> {
    match &e.kind {
        ExprKind::Int(i) => Some(*i),
        ExprKind::Var(s) => lookup_var_ref(e, *s, env).and_then(Thunk::peek_int),
        _ => None,
    }
}

/// The thunk of variable `e` (named `s`) if it is bound lexically: at the address the scope
/// check gave it, or else by searching the scopes by name. Never forces a `with` scope.
#[inline]
fn lookup_var(e: &Expr, s: Symbol, env: &Env) -> Option<Thunk> {
    match lookup_var_ref(e, s, env) {
        Some(t) => Some(t.clone()),
        // No scope of its file binds it (it has a `with` address): a search would find
        // only a global, which `Evaluator::thunk` takes from the globals itself.
        None if firn_syntax::scope::with_address(e).is_some() => None,
        None => lookup_lexical(s, env),
    }
}

/// The scope of the innermost `with` around variable `e`, at the count of scopes the scope
/// check gave it (see [`firn_syntax::scope::with_address`]); `None` if it has none (the
/// variable is then looked up by name).
#[inline]
fn with_scope<'e>(e: &Expr, env: &'e Env) -> Option<&'e EnvNode> {
    let up = firn_syntax::scope::with_address(e)?;
    let mut node = env.0.as_deref();
    for _ in 0..up {
        node = node.and_then(|n| n.parent.0.as_deref());
    }
    let found = node.filter(|n| matches!(n.scope, Scope::With(_)));
    debug_assert!(
        found.is_some(),
        "`with` address out of step with the environment"
    );
    found
}

/// The thunk of variable `e` at the address the scope check gave it, by reference (see
/// [`VarMap::get_at_ref`] for how long it may be held); `None` when it has no address (a
/// variable of a `with`, or one the check could not place), to be looked up by name.
/// Always inlined: it is the look of every variable, a few loads where a call would cost
/// as much again.
/// Attribute `n` of `v` if it is a set that has one, for step `i` of a selection: the
/// positions of the first two names are remembered in the node's `memo` (see
/// [`AttrMap::get_hinted`]).
#[inline(always)]
fn attr_in<'v>(
    v: &'v Value,
    n: &RcStr,
    memo: &std::cell::Cell<u32>,
    i: usize,
) -> Option<&'v Thunk> {
    match v {
        Value::Attrs(m) if i < 2 => m.get_hinted(n, memo, i),
        Value::Attrs(m) => m.get_rc(n),
        _ => None,
    }
}

/// Entry `s` of a table indexed by symbol (the evaluator's names, globals, builtins) set to
/// `x`, the table grown to hold it.
pub(crate) fn set_by_symbol<T: Clone>(table: &mut Vec<Option<T>>, s: Symbol, x: T) {
    let i = s.0 as usize;
    if table.len() <= i {
        table.resize(i + 1, None);
    }
    table[i] = Some(x);
}

#[inline(always)]
fn lookup_var_ref<'e>(e: &Expr, s: Symbol, env: &'e Env) -> Option<&'e Thunk> {
    let (up, i) = firn_syntax::scope::var_address(e)?;
    let mut node = env.0.as_deref();
    for _ in 0..up {
        node = node.and_then(|n| n.parent.0.as_deref());
    }
    let found = match node.map(|n| &n.scope) {
        Some(Scope::One(n, t)) if *n == s => Some(t),
        Some(Scope::Vars(v)) => v.get_at_ref(i, s),
        _ => None,
    };
    debug_assert!(
        found.is_some(),
        "variable address out of step with the environment"
    );
    found
}

/// The thunk of variable `e` (named `s`) if the scope check placed it at least one scope out
/// of `env`'s innermost scope (which may still be being filled: see
/// [`Evaluator::lazy_thunk`]).
#[inline]
fn outer_var<'e>(e: &Expr, s: Symbol, env: &'e Env) -> Option<&'e Thunk> {
    match firn_syntax::scope::var_address(e) {
        Some((up, _)) if up > 0 => lookup_var_ref(e, s, env),
        _ => None,
    }
}

/// The thunk of a lexically bound variable, without forcing any `with` scope.
fn lookup_lexical(s: Symbol, env: &Env) -> Option<Thunk> {
    let mut cur = &env.0;
    while let Some(node) = cur {
        if let Some(t) = node.scope.get(s) {
            return Some(t);
        }
        cur = &node.parent.0;
    }
    None
}

pub use firn_syntax::parser::canon_path;

/// "attribute 'n' missing", the name shown as current Nix shows a symbol.
pub(crate) fn attr_missing_text(name: &str) -> String {
    format!(
        "attribute '{}' missing",
        crate::print::error_attr_name(name)
    )
}

/// "attribute 'n' missing", with current Nix's suggestions among the set's names.
#[cold]
#[inline(never)]
fn missing_attr(name: Option<RcStr>, m: &AttrMap) -> EvalError {
    let n = name.unwrap_or_else(|| "null".into());
    let mut x = EvalError::new(attr_missing_text(&n));
    x.suggestions = firn_syntax::suggest::best_matches(&n, m.keys().map(|k| &**k));
    x
}

/// A close name among `candidates`, for "did you mean" hints.
pub fn suggest<'a>(name: &str, candidates: impl Iterator<Item = &'a RcStr>) -> Option<String> {
    firn_syntax::suggest::suggest(name, candidates.map(|c| &**c))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `text` evaluated strictly and printed, or the error.
    fn eval_text(text: &str) -> EResult<String> {
        let mut ev = Evaluator::new();
        let e = ev.parse(text, "«test»", "/")?;
        let v = ev.eval_top(e)?;
        crate::builtins::deep_force(&mut ev, &v)?;
        crate::print::print_value(&mut ev, &v, true)
    }

    /// [`eval_text`] with the error's message.
    fn run(text: &str) -> Result<String, String> {
        eval_text(text).map_err(|x| x.msg.clone())
    }

    /// A set expression built many times (its name order is then remembered in the node,
    /// see `Evaluator::name_order`) makes the same map each time: names in order, `rec`,
    /// `inherit`, `inherit (e)`, `__overrides` and dynamic names included, and laziness
    /// kept.
    #[test]
    fn sets_built_again_keep_their_order() {
        let each =
            |set: &str| format!("builtins.genList (i: let x = i; s = {{ a = 0; }}; in {set}) 3");
        assert_eq!(
            run(&each("{ zz = x; b = 1; a = 2; y = x; }")).unwrap(),
            "[ { a = 2; b = 1; y = 0; zz = 0; } { a = 2; b = 1; y = 1; zz = 1; } \
             { a = 2; b = 1; y = 2; zz = 2; } ]"
        );
        assert_eq!(
            run(&each(
                "rec { zz = b + x; b = 1; inherit x; inherit (s) a; }"
            ))
            .unwrap(),
            "[ { a = 0; b = 1; x = 0; zz = 1; } { a = 0; b = 1; x = 1; zz = 2; } \
             { a = 0; b = 1; x = 2; zz = 3; } ]"
        );
        assert_eq!(
            run(&each("rec { b = 1; c = b; __overrides = { b = x; }; }.c")).unwrap(),
            "[ 0 1 2 ]"
        );
        assert_eq!(
            run(&each("{ m = 1; \"${toString x}\" = x; a = 5; }")).unwrap(),
            "[ { \"0\" = 0; a = 5; m = 1; } { \"1\" = 1; a = 5; m = 1; } \
             { \"2\" = 2; a = 5; m = 1; } ]"
        );
        assert_eq!(
            run(&each(
                "builtins.attrNames { c = throw \"lazy\"; b = x; a = 1; }"
            ))
            .unwrap(),
            "[ [ \"a\" \"b\" \"c\" ] [ \"a\" \"b\" \"c\" ] [ \"a\" \"b\" \"c\" ] ]"
        );
        // An error in a value, caught, and again the next time the set is made.
        assert_eq!(
            run("builtins.genList (i: builtins.tryEval ({ b = throw \"no\"; a = i; }).b) 3")
                .unwrap(),
            "[ { success = false; value = false; } { success = false; value = false; } \
             { success = false; value = false; } ]"
        );
        // A duplicate dynamic name is still found when the static ones come from the order.
        let x = run("builtins.genList (i: { a = 1; b = 2; \"${\"a\"}\" = i; }) 3").unwrap_err();
        assert!(x.contains("attribute 'a' already defined"), "{x}");
    }

    /// `?` remembers where names were found (or would be) in the node; sets of other
    /// shapes asked at the same place still answer right.
    #[test]
    fn has_attr_with_remembered_positions() {
        assert_eq!(
            run(
                "map (s: [ (s ? b) (s ? a.c) ]) [ { a = 1; } { b = 1; } { a.c = 1; b = 2; } \
                 { } { a = { }; z = 1; } { b = 1; } ]"
            )
            .unwrap(),
            "[ [ false false ] [ true false ] [ true true ] [ false false ] [ false false ] \
             [ true false ] ]"
        );
        let x = run("builtins.genList (i: { a = i; } ? ${throw \"name\"}) 2").unwrap_err();
        assert_eq!(x, "name");
    }

    /// The kinds that make a Boolean are computed as one where a Boolean is wanted (see
    /// `Evaluator::eval_bool`): the same values as elsewhere, laziness (`&&`, `||`, `->`
    /// stop early) kept, and errors placed as before: at the operation, with the operand's
    /// frame and the condition's.
    #[test]
    fn boolean_conditions_computed_in_place() {
        let cond = |c: &str| format!("if {c} then 1 else 0");
        for (c, want) in [
            ("{ a = 1; } ? a", "1"),
            ("{ a.b = 1; } ? a.c", "0"),
            ("1 ? a", "0"),
            ("!({ } ? a)", "1"),
            ("!(!true)", "1"),
            ("false && throw \"no\"", "0"),
            ("true || throw \"no\"", "1"),
            ("false -> throw \"no\"", "1"),
            ("true -> false", "0"),
            ("1 == 1 && \"a\" != \"b\"", "1"),
            ("(x: x) == (x: x)", "0"),
            ("[ 1 ] == [ 1 ] && { a = 1; } != { a = 2; }", "1"),
            ("{ a = throw \"no\"; } ? a", "1"),
        ] {
            assert_eq!(run(&cond(c)).unwrap(), want, "{c}");
        }
        // The same kinds as values, and in `assert` and `builtins.filter`.
        assert_eq!(
            run("let s = { a.b = 1; }; in [ (s ? a.b) (!(s ? a.c)) (1 == 2 || s ? a) (true -> s ? x) ]")
                .unwrap(),
            "[ true true true false ]"
        );
        assert_eq!(run("assert !({ } ? a) && 1 != 2; 3").unwrap(), "3");
        assert_eq!(
            run("builtins.filter (x: !(x ? a)) [ { a = 1; } { } ]").unwrap(),
            "[ { } ]"
        );
        // Errors: the operand's frame, then the condition's; the error placed at the
        // operation that wanted the Boolean.
        let x = run_trace(&cond("true && 1"));
        let operand = x.find("in the right operand of '&&'").unwrap();
        let branch = x.find("while evaluating a branch condition").unwrap();
        assert!(branch < operand, "{x}");
        assert!(
            x.contains("expected a Boolean but found an integer: 1\n       at «test»:1:4:"),
            "{x}"
        );
        let x = run_trace(&cond("!(1 == 1 && 2)"));
        assert!(x.contains("in the argument of '!'"), "{x}");
        assert!(x.contains("in the right operand of '&&'"), "{x}");
        assert_eq!(
            run(&cond("!({ a = 1; } ? ${1})")).unwrap_err(),
            "expected a string but found an integer: 1"
        );
        assert_eq!(run(&cond("(throw \"t\") == 1")).unwrap_err(), "t");
        assert_eq!(
            run(&cond("!(builtins.abort \"a\")")).unwrap_err(),
            "evaluation aborted with the following error message: 'a'"
        );
    }

    /// `++` makes a new list of both sides, an empty side included.
    #[test]
    fn concatenated_lists() {
        assert_eq!(
            run("let l = [ 1 2 ]; in [ (l ++ [ ]) ([ ] ++ l) (l ++ [ 3 ] ++ l) ]").unwrap(),
            "[ [ 1 2 ] [ 1 2 ] [ 1 2 3 1 2 ] ]"
        );
    }

    /// `text` evaluated strictly: its error rendered as with `--show-trace`.
    fn run_trace(text: &str) -> String {
        match eval_text(text) {
            Ok(v) => panic!("{text}: no error but {v}"),
            Err(x) => x.render(true),
        }
    }

    /// A `let`, `rec` or default binding that is a variable bound further out shares that
    /// binding's thunk (see `Evaluator::lazy_thunk`): values, laziness and infinite
    /// recursions (their messages, where they are reported, the frame where they start)
    /// are those of CppNix, which shares it too.
    #[test]
    fn aliases_of_outer_bindings() {
        let cases = [
            ("let a = 1; in let b = a; in let c = b; in c", "1"),
            (
                "builtins.foldl' (acc: i: let a = acc; b = a; in b + 1) 0 (builtins.genList (x: x) 10)",
                "10",
            ),
            (
                "let x = 1; in rec { inherit x; y = x; z = y; }",
                "{ x = 1; y = 1; z = 1; }",
            ),
            ("let y = 2; f = { x ? y }: x; in f { }", "2"),
            ("with { x = 1; }; let y = x; in y", "1"),
            // Laziness: an alias is not forced, neither of a binding of its own scope nor
            // of one further out.
            ("let a = throw \"x\"; b = a; in 1", "1"),
            ("let a = throw \"x\"; in let b = a; in 1", "1"),
            (
                "let t = throw \"boom\"; in let u = t; v = u; in (builtins.tryEval v).success",
                "false",
            ),
            // `__overrides` replaces bindings after the set's own values were made: an
            // alias made while forcing it keeps the binding it shared, as a plain set's
            // does.
            (
                "rec { a = 1; __overrides = let x = a; in { a = 2; c = x; }; }.c",
                "1",
            ),
            ("rec { a = 1; __overrides = { a = 2; c = a; }; }.c", "1"),
        ];
        for (text, want) in cases {
            assert_eq!(run(text).as_deref(), Ok(want), "{text}");
        }
    }

    /// Infinite recursion through aliases, of the same scope (still looked up when forced)
    /// and of scopes further out (shared): the same message, and one "entering the
    /// infinite recursion" frame.
    #[test]
    fn infinite_recursion_through_aliases() {
        for text in [
            "let a = b; b = a; in a",
            "rec { a = b; b = a; }.a",
            "let x = { y = x.y; }; in x.y",
            "let a = let b = a; in b; in a",
            "let a = rec { b = a; }.b; in a",
            "let a = ({ b ? a }: b) { }; in a",
            "let a = b; b = let c = a; in c; in a",
            "let a = b; b = c; c = let d = a; in d; in [ a b c ]",
        ] {
            let x = run(text).unwrap_err();
            assert_eq!(x, "infinite recursion encountered", "{text}");
            let r = run_trace(text);
            assert_eq!(
                r.matches("entering the infinite recursion").count(),
                1,
                "{text}: {r}"
            );
        }
        // Where it is reported: at the variable that met the thunk being forced.
        let r = run_trace("let a = let b = a; in b; in a");
        assert!(r.contains("at «test»:1:23:"), "{r}");
        let r = run_trace("rec { a = let c = b; in c; b = a; }.a");
        assert!(r.contains("at «test»:1:25:"), "{r}");
        let r = run_trace("let a = b; b = a; in a");
        assert!(r.contains("at «test»:1:9:"), "{r}");
    }

    /// Calls of lambdas with formals (`Evaluator::bind_formals`): values with defaults taken
    /// or not, defaults referring to other formals and to the `@` name (either side), the
    /// `@` name hidden by nothing, and the messages and frames of its errors (a missing
    /// argument, the first in source order; an unexpected one with its suggestion; an
    /// argument that is no set).
    #[test]
    fn calls_with_formals() {
        for (text, want) in [
            ("({ a, b ? a + 1 }: b) { a = 1; }", "2"),
            ("({ b ? a + 1, a }: b) { a = 1; }", "2"),
            ("(args@{ a, b ? args.a + 10 }: b) { a = 1; }", "11"),
            ("({ a, b ? args.a + 10 }@args: b) { a = 1; }", "11"),
            ("({ a, ... }@args: args.b + a) { a = 1; b = 2; }", "3"),
            ("({ a ? throw \"no a\" }: 1) { }", "1"),
            (
                "({ z, y, x, w ? 4, v ? z }: [ z y x w v ]) { x = 1; y = 2; z = 3; }",
                "[ 3 2 1 4 3 ]",
            ),
            (
                "map ({ a, b ? a * 2 }: b) [ { a = 1; } { a = 2; b = 0; } ]",
                "[ 2 0 ]",
            ),
        ] {
            assert_eq!(run(text).as_deref(), Ok(want), "{text}");
        }
        for (text, want) in [
            (
                "({ a, b, c }: a) { a = 1; }",
                "function 'anonymous lambda' called without required argument 'b'",
            ),
            (
                "let f = { a, b }: a; in f { b = 1; }",
                "function 'f' called without required argument 'a'",
            ),
            (
                "({ a }: a) { a = 1; b = 2; }",
                "function 'anonymous lambda' called with unexpected argument 'b'",
            ),
            ("({ a, b ? throw \"no b\" }: b) { a = 1; }", "no b"),
            (
                "({ a ? b, b ? a }: a) { }",
                "infinite recursion encountered",
            ),
            ("({ a }: a) 1", "expected a set but found an integer: 1"),
        ] {
            assert_eq!(run(text).unwrap_err(), want, "{text}");
        }
        let r = run_trace("({ foo }: foo) { foo = 1; fo = 2; }");
        assert!(r.contains("Did you mean foo?"), "{r}");
        // A name inherited from a set that lacks it is suggested as a selection's is (as
        // CppNix 2.8 and current Nix).
        let r = run_trace("let a = { x = 1; }; s = { inherit (a) y; }; in s.y");
        assert!(
            r.contains("attribute 'y' missing") && r.contains("Did you mean x?"),
            "{r}"
        );
        let (frames, _) = frames_and_place(&run_trace("({ a }: a) 1"));
        assert_eq!(
            frames,
            [
                "… from call site",
                "… while evaluating the value passed for the lambda argument",
            ]
        );
    }

    /// The `--show-trace` frames of `r` (their first lines) and where its error is.
    fn frames_and_place(r: &str) -> (Vec<String>, Vec<String>) {
        let lines = r.lines().map(str::trim);
        let frames = lines
            .clone()
            .filter(|l| l.starts_with('…'))
            .map(String::from);
        let places = lines.filter(|l| l.starts_with("at ") || l.starts_with("error: "));
        (frames.collect(), places.map(String::from).collect())
    }

    /// A selection or `?` whose set is a computed variable takes its first step in place
    /// (`Evaluator::step_in_place`): values, defaults, and the frames and positions of its
    /// errors (an attribute that fails, one missing, a later step) are the general way's.
    #[test]
    fn fast_paths_of_selections_in_place() {
        assert_eq!(
            run(
                "let s = { a = 1; b = { c = 2; }; d = 1 + 2; }; in builtins.seq s [ (s.a) \
                 (s.a or 2) (s.x or 3) (s ? a) (s ? x) (s ? b.c) (s ? a.b) (s.b.c) (s.d) \
                 (s.d) (s.b.x or 4) ]"
            )
            .unwrap(),
            "[ 1 1 3 true false true false 2 3 3 4 ]"
        );
        let cases: [(&str, &[&str], &[&str]); 3] = [
            (
                "let s = { a = { b = throw \"t\"; }; }; in builtins.seq s s.a.b",
                &[
                    "… while calling the 'seq' builtin",
                    "… while evaluating the attribute 'a.b'",
                    "… from the definition of 'a.b'",
                    "… while calling the 'throw' builtin",
                ],
                &[
                    "at «test»:1:41:",
                    "at «test»:1:56:",
                    "at «test»:1:17:",
                    "at «test»:1:21:",
                    "error: t",
                ],
            ),
            (
                "let s = { a = 1; b = s.a + \"x\"; }; in builtins.seq s (s.b or 1)",
                &[
                    "… while calling the 'seq' builtin",
                    "… while evaluating the attribute 'b'",
                    "… from the definition of 'b'",
                ],
                &[
                    "at «test»:1:39:",
                    "at «test»:1:55:",
                    "at «test»:1:18:",
                    "error: cannot add a string to an integer",
                    "at «test»:1:28:",
                ],
            ),
            (
                "let s = { a = 1; }; in builtins.seq s s.c",
                &[
                    "… while calling the 'seq' builtin",
                    "… while evaluating the attribute 'c'",
                ],
                &[
                    "at «test»:1:24:",
                    "at «test»:1:39:",
                    "error: attribute 'c' missing",
                ],
            ),
        ];
        for (text, want_frames, want_places) in cases {
            let (frames, places) = frames_and_place(&run_trace(text));
            assert_eq!(frames, want_frames, "{text}");
            assert_eq!(places, want_places, "{text}");
        }
    }

    /// Calls and operators with fast paths (a two-argument lambda called by `foldl'`, a
    /// `genList` element, a one-argument lambda called by name, operands that are literals
    /// or computed variables, `==`, `+` and the arithmetic of integers, conditions) give
    /// the values, and for errors the frames and positions, of the general way (as CppNix
    /// gives them).
    #[test]
    fn fast_paths_of_calls_and_operators() {
        // `lib.lists.findFirstIndex` over `lib.range`, as nixpkgs writes it.
        let find = |pred: &str| {
            format!(
                "let range = first: last: builtins.genList (n: first + n) (last - first + 1); \
                 pred = {pred}; r = builtins.foldl' (index: el: if index < 0 then \
                 (if pred el then - index - 1 else index - 1) else index) (-1) (range 0 9); \
                 in if r < 0 then null else r"
            )
        };
        assert_eq!(run(&find("x: x == 7")).unwrap(), "7");
        assert_eq!(run(&find("x: x == 70")).unwrap(), "null");
        assert_eq!(run(&find("x: x * x > 10 && x != 5")).unwrap(), "4");
        assert_eq!(
            run("let f = a: b: [ a b ]; in builtins.foldl' f [ ] [ 1 2.5 \"s\" null ]").unwrap(),
            "[ [ [ [ [ ] 1 ] 2.5 ] \"s\" ] null ]"
        );
        assert_eq!(
            run("builtins.foldl' (a: b: a == b) 1 [ 1 1.0 ]").unwrap(),
            "false"
        );
        // A value bound to a lambda's argument outlives the call.
        assert_eq!(
            run("map (f: f 0) (builtins.genList (i: j: i + j + 1) 3)").unwrap(),
            "[ 1 2 3 ]"
        );
        let caught = "builtins.tryEval (builtins.foldl' (a: b: if b == 1 then throw \"t\" else a) 0 [ 0 1 ])";
        assert_eq!(run(caught).unwrap(), "{ success = false; value = false; }");

        // An operator's error in a curried lambda `foldl'` calls.
        let (frames, places) =
            frames_and_place(&run_trace("builtins.foldl' (a: b: a - b) 0 [ 1 \"x\" ]"));
        assert_eq!(
            frames,
            [
                "… while calling the 'foldl'' builtin",
                "… while calling anonymous lambda",
                "… while calling the 'sub' builtin",
                "… while evaluating the second argument of the subtraction",
            ]
        );
        assert_eq!(
            places,
            [
                "at «test»:1:1:",
                "at «test»:1:21:",
                "at «test»:1:26:",
                "error: expected an integer but found a string: \"x\"",
            ]
        );
        // A condition that is no Boolean.
        let (frames, places) = frames_and_place(&run_trace(
            "builtins.foldl' (a: b: if b then a else a) 0 [ true 1 ]",
        ));
        assert_eq!(
            frames,
            [
                "… while calling the 'foldl'' builtin",
                "… while calling anonymous lambda",
                "… while evaluating a branch condition",
            ]
        );
        assert_eq!(
            places[3..],
            [
                "error: expected a Boolean but found an integer: 1",
                "at «test»:1:24:"
            ]
        );
        // An operand of `==` that fails.
        let (frames, places) = frames_and_place(&run_trace(
            "builtins.foldl' (a: b: a == b.x) 0 [ { x = 0; } { } ]",
        ));
        assert_eq!(
            frames,
            [
                "… while calling the 'foldl'' builtin",
                "… while calling anonymous lambda",
                "… in the right operand of '=='",
                "… while evaluating the attribute 'x'",
            ]
        );
        assert_eq!(
            places.last().map(String::as_str),
            Some("error: attribute 'x' missing")
        );
        // A `genList` element whose `+` fails, and one whose division does.
        let (frames, places) = frames_and_place(&run_trace(
            "let l = builtins.genList (n: n + \"x\") 3; in builtins.elemAt l 1",
        ));
        assert_eq!(
            frames,
            [
                "… while calling the 'elemAt' builtin",
                "… from call site",
                "… while calling anonymous lambda",
            ]
        );
        assert_eq!(
            places[3..],
            [
                "error: cannot add a string to an integer",
                "at «test»:1:34:"
            ]
        );
        let (frames, _) = frames_and_place(&run_trace("builtins.genList (n: 10 / (n - 1)) 3"));
        assert_eq!(
            frames,
            [
                "… while evaluating list element at index 1",
                "… from call site",
                "… while calling anonymous lambda",
                "… while calling the 'div' builtin",
            ]
        );
        // `max-call-depth` through `foldl'`'s calls.
        let mut ev = Evaluator::new();
        ev.max_call_depth = 50;
        let text = "let f = n: builtins.foldl' (a: b: f (n + 1)) 0 [ 1 ]; in f 0";
        let e = ev.parse(text, "«test»", "/").unwrap();
        let x = ev.eval_top(e).map(|_| ()).unwrap_err();
        assert_eq!(x.msg, "stack overflow; max-call-depth exceeded");
    }

    /// `foldl'` rebinding its function's scopes and accumulator cell from one element to the
    /// next (only when nothing made in them is still alive), and conditions that are calls
    /// (`a < b`, `pred x`) or `==` bodies computed without `eval`'s dispatch.
    #[test]
    fn fast_paths_of_folds_and_conditions() {
        // The accumulator kept by the value, a closure keeping the scopes, thunks keeping
        // both, the initial accumulator not forced.
        for (text, want) in [
            ("builtins.foldl' (a: b: [ a b ]) 0 [ 1 2 3 ]", "[ [ [ 0 1 ] 2 ] 3 ]"),
            ("(builtins.foldl' (a: b: x: a x + b) (x: x) [ 1 2 3 ]) 10", "16"),
            (
                "builtins.foldl' (a: b: { s = a; inherit b; }) null [ 1 2 ]",
                "{ b = 2; s = { b = 1; s = null; }; }",
            ),
            ("builtins.foldl' (a: b: b) (throw \"no\") [ 1 ]", "1"),
            (
                "builtins.foldl' (i: e: if i < 0 then (if e == 3 then - i - 1 else i - 1) else i) (-1) [ 5 4 3 2 ]",
                "2",
            ),
            ("let p = x: x == 1; in [ (if p 1 then 1 else 2) (if 2 < 1 then 1 else 2) ]", "[ 1 2 ]"),
        ] {
            assert_eq!(run(text).unwrap(), want, "{text}");
        }
        for (text, msg) in [
            (
                "if 1 - 1 then 1 else 2",
                "expected a Boolean but found an integer",
            ),
            (
                "let p = x: x; in if p 3 then 1 else 2",
                "expected a Boolean but found an integer",
            ),
        ] {
            let r = run(text).unwrap_err();
            assert!(r.contains(msg), "{text}: {r}");
        }
        // An error in the middle of a fold: the frames of the call it came from.
        let (frames, places) = frames_and_place(&run_trace(
            "builtins.foldl' (a: b: if b == 2 then throw \"x\" else a + b) 0 [ 1 2 3 ]",
        ));
        assert_eq!(
            frames,
            [
                "… while calling the 'foldl'' builtin",
                "… while calling anonymous lambda",
                "… while calling the 'throw' builtin",
            ]
        );
        assert_eq!(
            places,
            [
                "at «test»:1:1:",
                "at «test»:1:21:",
                "at «test»:1:39:",
                "error: x",
            ]
        );
    }

    /// The scopes of calls taken apart in place as the call returns (`call_simple`'s one
    /// binding, `foldl'`'s two): a scope still held (by a closure or a thunk made in the
    /// call) stays whole; `max-call-depth` counts every call of these paths (a `genList`
    /// element, a lambda called by name, `foldl'`'s function), with the same frames.
    #[test]
    fn fast_paths_of_call_scopes() {
        // Scopes outliving their call: a closure from `foldl'`'s function, a set of thunks
        // from a lambda called by name, a `genList` element's.
        assert_eq!(
            run("map (f: f 1) (builtins.foldl' (l: b: l ++ [ (x: x + b) ]) [ ] [ 10 20 ])")
                .unwrap(),
            "[ 11 21 ]"
        );
        assert_eq!(
            run("let f = x: { v = x + 1; w = [ x ]; }; r = f 1; in [ r.v r.w (f 2).v ]").unwrap(),
            "[ 2 [ 1 ] 3 ]"
        );
        assert_eq!(
            run("map (s: s.v) (builtins.genList (n: { v = n * 2; }) 3)").unwrap(),
            "[ 0 2 4 ]"
        );
        // Functions `foldl'` does not take apart: more arguments, formals, one argument.
        assert_eq!(
            run("(builtins.foldl' ({ a ? 1 }: b: { a = a + b; }) { } [ 5 10 ]).a").unwrap(),
            "16"
        );
        assert_eq!(
            run("(builtins.foldl' (a: b: c: a + b + c) 1 [ 2 ]) 3").unwrap(),
            "6"
        );
        assert_eq!(run("builtins.foldl' (a: a) (b: 7) [ 1 ]").unwrap(), "7");
        // Each level of these recursions is three calls (`f`, the builtin, the lambda it
        // calls): with a depth of 20, six levels fit and seven do not, on every path.
        for text in [
            "let f = n: if n == 0 then 0 else 1 + builtins.elemAt (builtins.genList (i: f (n - 1)) 1) 0; in f N",
            "let f = n: if n == 0 then 0 else builtins.foldl' (a: b: 1 + f (n - 1)) 0 [ 1 ]; in f N",
            "let f = n: if n == 0 then 0 else 1 + builtins.head (map (x: f (n - 1)) [ 1 ]); in f N",
        ] {
            for (n, fits) in [(6, true), (7, false)] {
                let mut ev = Evaluator::new();
                ev.max_call_depth = 20;
                let e = ev
                    .parse(&text.replace('N', &n.to_string()), "«test»", "/")
                    .unwrap();
                match ev.eval_top(e) {
                    Ok(v) => assert!(fits && matches!(v, Value::Int(6)), "{text} {n}"),
                    Err(x) => {
                        assert!(!fits, "{text} {n}: {}", x.msg);
                        assert_eq!(x.msg, "stack overflow; max-call-depth exceeded");
                    }
                }
            }
        }
        // The frames of an error in the body of a lambda called by name, and in a
        // `genList` element's.
        let (frames, places) = frames_and_place(&run_trace(
            "let p = x: x.a; in builtins.foldl' (a: b: if p b then a else a) 0 [ { a = true; } { } ]",
        ));
        assert_eq!(
            frames,
            [
                "… while calling the 'foldl'' builtin",
                "… while calling anonymous lambda",
                "… while evaluating a branch condition",
                "… from call site",
                "… while calling 'p'",
                "… while evaluating the attribute 'a'",
            ]
        );
        assert_eq!(
            places,
            [
                "at «test»:1:20:",
                "at «test»:1:40:",
                "at «test»:1:46:",
                "at «test»:1:46:",
                "at «test»:1:9:",
                "at «test»:1:12:",
                "error: attribute 'a' missing",
            ]
        );
    }

    /// The fast paths of element-wise code: `+` of integers at hand, `++` and
    /// `concatLists`/`concatMap` with empty lists (the other list shared), `deepSeq` going
    /// through a list in place, and `==` of computed integer elements. Results, messages,
    /// places and frames are those of the general ways.
    #[test]
    fn fast_paths_of_sums_lists_and_deep_forcing() {
        // `+` of integers at hand; an overflow, a float or a string take the general way.
        assert_eq!(
            run("let x = 1; y = 2; in [ (x + y) (x + 2) (1 + y) ]").unwrap(),
            "[ 3 3 3 ]"
        );
        assert_eq!(run("let x = 1; y = 2.5; in x + y").unwrap(), "3.5");
        assert_eq!(
            run("builtins.foldl' (acc: el: acc + el) 0 (builtins.genList (n: 5 + n) 100)").unwrap(),
            "5450"
        );
        let overflow = "integer overflow in adding 9223372036854775807 + 1";
        assert_eq!(
            run("let x = 9223372036854775807; in x + 1").unwrap_err(),
            overflow
        );
        // An error without frames: its message first, then its place (at the operand).
        let r = run_trace("let x = 9223372036854775807; y = 1; in x + y");
        assert!(r.starts_with(overflow), "{r}");
        assert_eq!(frames_and_place(&r).1, ["at «test»:1:44:"]);
        let r = run_trace("let x = 1; y = \"a\"; in x + y");
        assert!(r.starts_with("cannot add a string to an integer"), "{r}");
        assert_eq!(frames_and_place(&r).1, ["at «test»:1:28:"]);
        // The second operand evaluated (a list's element), failing and not a number.
        let (frames, places) = frames_and_place(&run_trace(
            "builtins.foldl' (acc: el: acc + el) 0 [ 1 (throw \"t\") ]",
        ));
        assert_eq!(
            frames,
            [
                "… while calling the 'foldl'' builtin",
                "… while calling anonymous lambda",
                "… in an operand of '+'",
                "… while calling the 'throw' builtin",
            ]
        );
        assert_eq!(places.last().map(String::as_str), Some("error: t"));
        let (_, places) = frames_and_place(&run_trace(
            "builtins.foldl' (acc: el: acc + el) 0 [ 1 \"a\" ]",
        ));
        assert_eq!(
            places[2..],
            [
                "error: cannot add a string to an integer",
                "at «test»:1:33:"
            ]
        );
        let (frames, places) = frames_and_place(&run_trace("let x = \"a\"; y = 1; in x + y"));
        assert_eq!(frames, ["… while evaluating a path segment"]);
        assert_eq!(
            places.last().map(String::as_str),
            Some("error: cannot coerce an integer to a string: 1")
        );
        let (frames, places) = frames_and_place(&run_trace(
            "builtins.genList (n: 9223372036854775807 + n) 3",
        ));
        assert_eq!(
            frames,
            [
                "… while evaluating list element at index 1",
                "… from call site",
                "… while calling anonymous lambda",
            ]
        );
        assert_eq!(
            places[2..],
            [format!("error: {overflow}"), "at «test»:1:44:".into()]
        );

        // `++` and `concatLists`/`concatMap` with empty lists; a non-list still fails.
        assert_eq!(
            run("let l = [ 1 ]; in [ ([ ] ++ l) (l ++ [ ]) ([ ] ++ [ ]) ((l ++ [ ]) ++ (l ++ [ 2 ])) ]")
                .unwrap(),
            "[ [ 1 ] [ 1 ] [ ] [ 1 1 2 ] ]"
        );
        let message = "expected a list but found an integer: 1";
        for text in ["let x = [ ]; in x ++ 1", "let x = [ ]; in 1 ++ x"] {
            let (frames, places) = frames_and_place(&run_trace(text));
            assert_eq!(
                frames,
                ["… while evaluating one of the elements to concatenate"]
            );
            assert_eq!(
                places.last().map(String::as_str),
                Some(&*format!("error: {message}"))
            );
        }
        assert_eq!(
            run(
                "with builtins; [ (concatLists [ [ ] [ 1 2 ] [ ] ]) (concatLists [ [ ] [ ] ]) \
                 (concatLists [ [ 1 ] [ 2 ] [ ] [ 3 ] ]) \
                 (concatMap (x: if x == 2 then [ x ] else [ ]) [ 1 2 3 ]) ]"
            )
            .unwrap(),
            "[ [ 1 2 ] [ ] [ 1 2 3 ] [ 2 ] ]"
        );
        assert_eq!(
            run("builtins.concatLists [ [ ] [ 1 2 ] 3 ]").unwrap_err(),
            "expected a list but found an integer: 3"
        );
        let (frames, _) = frames_and_place(&run_trace("builtins.concatMap (x: x) [ [ ] 1 ]"));
        assert_eq!(
            frames,
            [
                "… while calling the 'concatMap' builtin",
                "… while evaluating the return value of the function passed to builtins.concatMap",
            ]
        );

        // `deepSeq`'s work lists, kept between calls: a `deepSeq` inside an element being
        // forced (which makes its own), and calls after one that failed (its lists left
        // empty, so nothing it had entered counts as seen).
        assert_eq!(
            run("let f = x: builtins.deepSeq x x; s = { a = [ 1 ]; }; in [ \
                 (builtins.tryEval (f [ s (throw \"a\") ])).success \
                 (f { b = f [ s s ]; }) (f [ s (f { c = [ s ]; }) ]) \
                 (builtins.tryEval (f [ s { d = [ (throw \"d\") ]; } ])).success ]")
            .unwrap(),
            // As CppNix 2.8 prints it.
            "[ false { b = [ { a = [ 1 ]; } «repeated» ]; } [ «repeated» { c = [ «repeated» ]; } ] false ]"
        );

        // `deepSeq` through lists in place: the first failing element in order, with the
        // path to it; lists met twice, nested, and elements computed already.
        assert_eq!(
            run("let l = [ 1 [ 2 ] ]; in builtins.deepSeq [ l l (builtins.genList (x: [ x ]) 3) [ ] ] 0")
                .unwrap(),
            "0"
        );
        let (frames, places) = frames_and_place(&run_trace(
            "builtins.deepSeq (builtins.genList (x: if x == 5 then throw \"five\" else x) 10) 0",
        ));
        assert_eq!(
            frames,
            [
                "… while calling the 'deepSeq' builtin",
                "… while evaluating list element at index 5",
                "… from call site",
                "… while calling anonymous lambda",
                "… while calling the 'throw' builtin",
            ]
        );
        assert_eq!(places.last().map(String::as_str), Some("error: five"));
        let (frames, _) = frames_and_place(&run_trace(
            "builtins.deepSeq [ 1 [ 2 { a = 3; b = [ (throw \"deep\") ]; } ] ] 0",
        ));
        assert_eq!(
            frames,
            [
                "… while calling the 'deepSeq' builtin",
                "… while evaluating list element at index 1",
                "… while evaluating list element at index 1",
                "… while evaluating the attribute 'b'",
                "… while evaluating list element at index 0",
                "… while calling the 'throw' builtin",
            ]
        );

        // `==` of lists: computed integers, a float equal to an integer, the same function
        // element, errors of elements forced.
        let eq = "let g = builtins.genList; l = g (x: x) 5; f = x: x; in builtins.deepSeq l [ \
                  (l == g (x: x) 5) (l == g (x: x + 0) 5) (l == g (x: if x == 4 then 5 else x) 5) \
                  ([ 1 2 3 ] == [ 1 2 3.0 ]) ([ f ] == [ f ]) (let m = [ f ]; in m == m) \
                  ([ 1 (throw \"e\") ] == [ 2 (throw \"e\") ]) ]";
        assert_eq!(run(eq).unwrap(), "[ true true false true true true false ]");
        assert_eq!(
            run("[ 1 (throw \"e\") ] == [ 1 (throw \"e\") ]").unwrap_err(),
            "e"
        );
    }

    /// The second round of fast paths: an `if` outside `eval_any`'s loop (its branches
    /// still tail positions, its errors placed and framed as before), operators on
    /// integers at hand (without the builtin call's bookkeeping, but with its depth check
    /// and its errors), and the operators found by symbol; and lambdas called by `foldl'`
    /// and `genList` that keep their arguments (a check for reusing those cells).
    /// Selections (with and without a default, static and dynamic names), `?`, set
    /// literals and globals, which `eval` sends to their own functions (not `eval_step`),
    /// give the values, and for errors the frames and positions, of the general way (as
    /// CppNix gives them).
    #[test]
    fn fast_paths_of_selections_sets_and_globals() {
        assert_eq!(
            run(
                "let s = { a = { b = 1; }; }; n = \"a\"; i = 1; in [ (s.a.b) (s.${n}.b) \
                 (s.x or 2) (s.a.x or 3) (s.${null} or 4) (s ? a.b) (s ? ${n}) (s ? ${null}) \
                 (s ? a.c) ({ a = 1; }.a or 5) (i.a or 6) true null (with s; a.b) ]"
            )
            .unwrap(),
            "[ 1 1 2 3 4 true true false false 1 6 true null 1 ]"
        );
        let cases: [(&str, &[&str], &[&str]); 6] = [
            (
                "let s = { a = 1; }; in s.b",
                &["… while evaluating the attribute 'b'"],
                &["at «test»:1:24:", "error: attribute 'b' missing"],
            ),
            (
                "let s = { a = { b = throw \"t\"; }; }; in s.a.b",
                &[
                    "… while evaluating the attribute 'a.b'",
                    "… from the definition of 'a.b'",
                    "… while calling the 'throw' builtin",
                ],
                &[
                    "at «test»:1:41:",
                    "at «test»:1:17:",
                    "at «test»:1:21:",
                    "error: t",
                ],
            ),
            (
                "let s = { a = 1; }; in s.a.b",
                &[
                    "… while evaluating the attribute 'a.b'",
                    "… from the definition of 'a'",
                    "… while selecting an attribute",
                ],
                &[
                    "at «test»:1:24:",
                    "at «test»:1:11:",
                    "at «test»:1:24:",
                    "error: expected a set but found an integer: 1",
                ],
            ),
            (
                "let s = { a = 1; }; in s.${1}",
                &[
                    "… while evaluating the attribute '\"${1}\"'",
                    "… while evaluating an attribute name",
                ],
                &[
                    "at «test»:1:24:",
                    "at «test»:1:28:",
                    "error: expected a string but found an integer: 1",
                    "at «test»:1:28:",
                ],
            ),
            (
                "let s = { a = 1; }; in s ? ${1}",
                &["… while evaluating an attribute name"],
                &[
                    "at «test»:1:30:",
                    "error: expected a string but found an integer: 1",
                    "at «test»:1:30:",
                ],
            ),
            (
                "let x = { a = 1 + \"b\"; }; in x.a or 1",
                &[
                    "… while evaluating the attribute 'a'",
                    "… from the definition of 'a'",
                ],
                &[
                    "at «test»:1:30:",
                    "at «test»:1:11:",
                    "error: cannot add a string to an integer",
                    "at «test»:1:19:",
                ],
            ),
        ];
        for (text, want_frames, want_places) in cases {
            let (frames, places) = frames_and_place(&run_trace(text));
            assert_eq!(frames, want_frames, "{text}");
            assert_eq!(places, want_places, "{text}");
        }
        // A set literal's error is placed at the set.
        let r = run_trace("let n = \"a\"; in { ${n} = 1; a = 2; }");
        assert!(
            r.contains("dynamic attribute 'a' already defined at «test»:1:29"),
            "{r}"
        );
        assert!(r.contains("at «test»:1:19:"), "{r}");
    }

    /// Conditions dispatched by `eval_bool` (a call straight to `eval_bool_call`),
    /// `eval_bool_op` given the node alone, `==` of an integer and one at hand, and sums
    /// split between `eval_sum` and `eval_sum_rest`: values, and the frames of errors.
    #[test]
    fn fast_paths_of_predicates_comparisons_and_sums() {
        // Conditions of every kind (calls, `!`, `&&`, `?`, `==`), a predicate's `==` with an
        // integer at hand or not, sums at hand and not (an overflow, a string).
        assert_eq!(
            run(
                "let p = x: x == 3; q = x: 3 == x; s = { a = 1; }; l = builtins.genList (n: 2 + n) 4; \
                 in [ (builtins.filter p l) (builtins.filter q l) \
                 (map (x: if !(p x) && s ? a then x + 1 else x) l) \
                 (if \"a\" == \"a\" then 1 else 0) (if 1 == 1.0 then 1 else 0) ]"
            )
            .unwrap(),
            "[ [ 3 ] [ 3 ] [ 3 3 5 6 ] 1 1 ]"
        );
        assert_eq!(
            run(
                "let lib = { f = i: if i < 0 then (if i == -3 then -i - 1 else i - 1) else i; }; \
                 in builtins.foldl' (i: x: lib.f i) (-1) [ 1 2 3 4 ]"
            )
            .unwrap(),
            "2"
        );
        // A predicate whose operand fails: the frames of the call and the condition.
        let (frames, places) = frames_and_place(&run_trace(
            "let p = x: x == 1; l = builtins.genList (n: n + \"a\") 2; in if p (builtins.head l) then 1 else 0",
        ));
        assert_eq!(
            frames,
            [
                "… while evaluating a branch condition",
                "… from call site",
                "… while calling 'p'",
                "… in the left operand of '=='",
                "… while calling the 'head' builtin",
                "… from call site",
                "… while calling anonymous lambda",
            ]
        );
        assert_eq!(
            places[places.len() - 2..],
            [
                "error: cannot add a string to an integer",
                "at «test»:1:49:"
            ]
        );
        // A condition that is no Boolean, a predicate that gives none.
        let (frames, places) =
            frames_and_place(&run_trace("let p = x: x + 1; in if p 2 then 1 else 0"));
        assert_eq!(frames, ["… while evaluating a branch condition"]);
        assert_eq!(places.last().map(String::as_str), Some("at «test»:1:22:"));
        let (frames, _) = frames_and_place(&run_trace(
            "let x = 9223372036854775807; in if !(x + 1 == 0) then 1 else 0",
        ));
        assert_eq!(
            frames,
            [
                "… while evaluating a branch condition",
                "… in the argument of '!'",
                "… in the left operand of '=='",
            ]
        );
    }

    #[test]
    fn fast_paths_of_conditions_operators_and_cells() {
        // Conditions: nested, branches of every kind, conditions that are no Booleans.
        assert_eq!(
            run(
                "let f = n: if n < 0 then -1 else if n == 0 then 0 else if n > 9 then \"big\" \
                 else { x = n; }.x; in map f [ (-5) 0 3 10 ]"
            )
            .unwrap(),
            "[ -1 0 3 \"big\" ]"
        );
        assert_eq!(
            run(
                "let x = 4; in [ (if true then x - 1 else 0) (if false then 0 else x * x) \
                 (if true then let y = x; in y else 0) (if true then assert x == 4; x else 0) \
                 (if true then with { z = 7; }; z else 0) (if x < 5 then x / 2 else 0) ]"
            )
            .unwrap(),
            "[ 3 16 4 4 7 2 ]"
        );
        // A tail call in a branch: the frames of each call, as the loop gives them.
        let (frames, places) = frames_and_place(&run_trace(
            "let f = n: if n == 0 then throw \"x\" else f (n - 1); in f 2",
        ));
        assert_eq!(
            frames,
            [
                "… from call site",
                "… while calling 'f'",
                "… from call site",
                "… while calling 'f'",
                "… from call site",
                "… while calling 'f'",
                "… while calling the 'throw' builtin",
            ]
        );
        assert_eq!(places.last().map(String::as_str), Some("error: x"));
        let (frames, places) =
            frames_and_place(&run_trace("let f = n: if n then 1 else 2; in f 3"));
        assert_eq!(
            frames,
            [
                "… from call site",
                "… while calling 'f'",
                "… while evaluating a branch condition",
            ]
        );
        assert_eq!(
            places[3..],
            [
                "error: expected a Boolean but found an integer: 3",
                "at «test»:1:12:"
            ]
        );
        let (frames, places) = frames_and_place(&run_trace(
            "let f = n: if n < 1 then (if n < 0 then n else let z = n; in z + \"a\") \
             else 0; in f 0",
        ));
        assert_eq!(frames, ["… from call site", "… while calling 'f'"]);
        assert_eq!(
            places[2..],
            [
                "error: cannot add a string to an integer",
                "at «test»:1:66:"
            ]
        );
        assert_eq!(
            run("if true then assert false; 1 else 2").unwrap_err(),
            "assertion 'false' failed"
        );

        // Operators on integers at hand: values, and the errors of the builtins.
        assert_eq!(
            run("let a = 7; b = 2; in [ (a - b) (a * b) (a / b) (a < b) (b < a) (a - 9) ]")
                .unwrap(),
            "[ 5 14 3 false true -2 ]"
        );
        let (frames, places) = frames_and_place(&run_trace(
            "let x = 9223372036854775807; y = -1; in if true then x - y else 0",
        ));
        assert_eq!(frames, ["… while calling the 'sub' builtin"]);
        assert_eq!(
            places,
            [
                "at «test»:1:56:",
                "error: integer overflow in subtracting 9223372036854775807 - -1"
            ]
        );
        let (frames, places) = frames_and_place(&run_trace(
            "let x = 1; y = 0; in if x < 2 then x / y else 0",
        ));
        assert_eq!(frames, ["… while calling the 'div' builtin"]);
        assert_eq!(places, ["at «test»:1:38:", "error: division by zero"]);
        // The depth an operator starts at is checked as the builtin's call checks it:
        // operands at hand (a literal, computed variables) need the depth operands to be
        // computed (which nest no call) need.
        let least_depth = |body: &str| {
            let text = format!("let f = n: let y = {body}; in n - y; g = n: f n; in g (g 1)");
            (0..20)
                .find(|d| {
                    let mut ev = Evaluator::new();
                    ev.max_call_depth = *d;
                    let e = ev.parse(&text, "«test»", "/").unwrap();
                    match ev.eval_top(e) {
                        Ok(_) => true,
                        Err(x) => {
                            assert_eq!(x.msg, "stack overflow; max-call-depth exceeded");
                            false
                        }
                    }
                })
                .unwrap()
        };
        assert_eq!(least_depth("1"), least_depth("1 + 0"));
        assert_eq!(least_depth("n"), least_depth("1 + 0"));
        // The operators' symbols are consecutive (see `as_direct_op`).
        let ev = Evaluator::new();
        for (i, s) in ev.op_syms.iter().enumerate() {
            assert_eq!(s.0, ev.op_syms[0].0 + i as u32);
        }

        // `foldl'`'s accumulator kept by the function: each one is its own.
        assert_eq!(
            run("(builtins.foldl' (a: b: { prev = a; v = b; }) 0 [ 1 2 3 ]).prev.prev").unwrap(),
            "{ prev = 0; v = 1; }"
        );
        assert_eq!(
            run("map (f: f 0) (builtins.foldl' (a: b: a ++ [ (x: b + x) ]) [ ] [ 1 2 3 ])")
                .unwrap(),
            "[ 1 2 3 ]"
        );
        assert_eq!(
            run("builtins.foldl' (a: b: let g = x: a; in g 0 + b) 0 [ 1 2 3 4 ]").unwrap(),
            "10"
        );
        // `genList`'s argument kept by the element, or another element computed inside.
        assert_eq!(
            run("map (s: s.v) (builtins.genList (i: { v = i; }) 3)").unwrap(),
            "[ 0 1 2 ]"
        );
        assert_eq!(
            run("map (g: g 0) (builtins.genList (i: let g = x: i; in g) 3)").unwrap(),
            "[ 0 1 2 ]"
        );
        assert_eq!(
            run("builtins.genList (i: builtins.elemAt (builtins.genList (j: i * 10 + j) 3) 1) 3")
                .unwrap(),
            "[ 1 11 21 ]"
        );
        assert_eq!(
            run("builtins.genList (i: [ i (i + 1) ]) 3").unwrap(),
            "[ [ 0 1 ] [ 1 2 ] [ 2 3 ] ]"
        );
    }

    /// Calls of a variable with several arguments (a two-argument lambda given both, a
    /// curried lambda of more, a builtin given all its arguments), in tail position and
    /// not: the values, the frames and positions of errors, and the call depth they count,
    /// as the general way gives them.
    #[test]
    fn fast_paths_of_calls_with_arguments() {
        let values = [
            ("let f = a: b: a - b; in [ (f 5 2) ]", "[ 3 ]"),
            (
                "let f = a: b: c: a - b - c; in [ (f 9 2 3) ((f 9 2) 3) ]",
                "[ 4 4 ]",
            ),
            ("let f = a: b: a b; in [ (f (x: x + 1) 2) ]", "[ 3 ]"),
            (
                "let e = builtins.elemAt; l = [ 1 2 ]; in [ (e l 1) (e [ 7 ] 0) ]",
                "[ 2 7 ]",
            ),
            (
                "let g = builtins.getAttr; in [ (g \"a\" { a = 1; }) ]",
                "[ 1 ]",
            ),
            ("let p = builtins.add; in [ ((p 1) 2) (p 1 2) ]", "[ 3 3 ]"),
            (
                "let f = a: b: if a == 0 then b else f (a - 1) (b + 1); in [ (f 9 0) ]",
                "[ 9 ]",
            ),
            ("let f = { x }: b: x + b; in [ (f { x = 1; } 2) ]", "[ 3 ]"),
        ];
        for (text, v) in values {
            assert_eq!(run(text).unwrap(), v, "{text}");
        }
        // An error in the body of a two-argument lambda, called in no tail position and in
        // one (then from a third argument's application).
        let (frames, places) =
            frames_and_place(&run_trace("let f = a: b: a - b; in [ (f 1 \"x\") ]"));
        assert_eq!(
            frames,
            [
                "… while evaluating list element at index 0",
                "… from call site",
                "… while calling 'f'",
                "… while calling the 'sub' builtin",
                "… while evaluating the second argument of the subtraction",
            ]
        );
        assert_eq!(
            places,
            [
                "at «test»:1:28:",
                "at «test»:1:12:",
                "at «test»:1:17:",
                "error: expected an integer but found a string: \"x\"",
            ]
        );
        let (frames, places) =
            frames_and_place(&run_trace("let f = a: b: c: a - b - c; in f 1 2 \"x\""));
        assert_eq!(
            frames,
            [
                "… from call site",
                "… while calling 'f'",
                "… while calling the 'sub' builtin",
                "… while evaluating the second argument of the subtraction",
            ]
        );
        assert_eq!(
            places,
            [
                "at «test»:1:32:",
                "at «test»:1:15:",
                "at «test»:1:24:",
                "error: expected an integer but found a string: \"x\"",
            ]
        );
        // A builtin's own error: its frame, at the call.
        let (frames, places) = frames_and_place(&run_trace(
            "let elemAt = builtins.elemAt; in [ (elemAt [ 1 ] 5) ]",
        ));
        assert_eq!(
            frames,
            [
                "… while evaluating list element at index 0",
                "… while calling the 'elemAt' builtin",
            ]
        );
        assert_eq!(
            places,
            [
                "at «test»:1:37:",
                "error: 'builtins.elemAt' called with index 5 on a list of size 1",
            ]
        );
        // Each level is one call (the lambda), or three (the builtin, the lambda it calls, `f`):
        // with a depth of 20, the recursions fit up to their limit and fail beyond.
        for (text, fits, fails) in [
            ("let f = a: b: if a == 0 then 0 else 1 + f (a - 1) b; in f N 0", 19, 20),
            ("let f = a: b: if a == 0 then 0 else f (a - 1) b; in f N 0", 19, 20),
            (
                "let e = builtins.foldl'; f = a: b: if a == 0 then 0 else e (x: y: f (a - 1) b) 0 [ 1 ]; in f N 0",
                6,
                7,
            ),
        ] {
            for (n, ok) in [(fits, true), (fails, false)] {
                let mut ev = Evaluator::new();
                ev.max_call_depth = 20;
                let e = ev
                    .parse(&text.replace('N', &n.to_string()), "«test»", "/")
                    .unwrap();
                match ev.eval_top(e) {
                    Ok(_) => assert!(ok, "{text} {n}"),
                    Err(x) => {
                        assert!(!ok, "{text} {n}: {}", x.msg);
                        assert_eq!(x.msg, "stack overflow; max-call-depth exceeded");
                    }
                }
            }
        }
    }

    /// A lambda's formals are bound from its argument set as before: defaults, `@`, names
    /// not from the source (not shared handles), sets too large for the linear search,
    /// and the errors (a missing argument reported before an unexpected one, suggestions).
    #[test]
    fn formals_bound_from_arguments() {
        let f = "{ a, b ? 1, c ? 2, ... }: a + b + c";
        let big = "builtins.listToAttrs (builtins.genList (i: { name = \"n${toString i}\"; value = i; }) 40)";
        let values = [
            (format!("({f}) {{ a = 1; c = 3; }}"), "5"),
            (format!("({f}) {{ a = 1; }}"), "4"),
            (format!("({f}) {{ c = 1; a = 1; b = 1; d = 0; }}"), "3"),
            (
                "({ a ? 1, b ? 2 }: a + b) (builtins.listToAttrs [ { name = \"b\"; value = 7; } ])"
                    .into(),
                "8",
            ),
            (format!("({{ n5 ? 0, x ? 9, ... }}: n5 + x) ({big})"), "14"),
            (format!("({{ x, ... }}: x) ({big} // {{ x = 3; }})"), "3"),
            (
                "(args@{ a, ... }: args) { a = 1; b = 2; }".into(),
                "{ a = 1; b = 2; }",
            ),
            ("({ a, b ? a }: b) { a = 5; }".into(), "5"),
        ];
        for (text, want) in &values {
            assert_eq!(run(text).as_deref(), Ok(*want), "{text}");
        }
        let errors = [
            (
                "let f = { a, b, c }: a; in f { a = 1; e = 2; }".to_string(),
                "function 'f' called without required argument 'b'",
            ),
            (
                "let f = { c, b, a }: a; in f { a = 1; }".into(),
                "function 'f' called without required argument 'c'",
            ),
            (
                "let f = { a, b ? 1 }: a; in f { a = 1; d = 2; c = 3; }".into(),
                "function 'f' called with unexpected argument 'c'",
            ),
            (
                format!("({{ x }}: x) ({big})"),
                "function 'anonymous lambda' called without required argument 'x'",
            ),
        ];
        for (text, want) in &errors {
            assert_eq!(
                run(text).as_ref().map_err(String::as_str),
                Err(*want),
                "{text}"
            );
        }
        let r = run_trace("let f = { aa, bb ? 1 }: aa; in f { aa = 1; bc = 1; }");
        assert!(r.contains("unexpected argument 'bc'"), "{r}");
        assert!(r.contains("Did you mean"), "{r}");
    }

    /// Functions called by builtins (`Evaluator::call_at` of a plain lambda by
    /// `call_simple`, `mapAttrs`' two-argument lambda by `force_applied2`) and builtins
    /// applied in parts (`PrimOpApp` completed): values, and the frames and positions of an
    /// error in the body, also when forced again after `tryEval`.
    #[test]
    fn fast_paths_of_calls_by_builtins() {
        let values = [
            (
                "builtins.mapAttrs (n: v: n + v) { a = \"x\"; }",
                "{ a = \"ax\"; }",
            ),
            (
                "builtins.mapAttrs (n: { y }: y) { a = { y = 2; }; }",
                "{ a = 2; }",
            ),
            (
                "builtins.mapAttrs (n: v: w: v) { a = 1; }",
                "{ a = <LAMBDA>; }",
            ),
            ("builtins.mapAttrs builtins.add { }", "{ }"),
            (
                "builtins.zipAttrsWith (n: vs: vs) [ { a = 1; } ]",
                "{ a = [ 1 ]; }",
            ),
            ("builtins.filter (x: x > 1) [ 1 2 ]", "[ 2 ]"),
            ("builtins.concatMap (x: [ x x ]) [ 1 ]", "[ 1 1 ]"),
            ("let m = map (x: x + 1); in m [ 1 ]", "[ 2 ]"),
            (
                "let g = builtins.substring 0; in [ (g 2 \"abc\") ((g 1) \"abc\") ]",
                "[ \"ab\" \"a\" ]",
            ),
        ];
        for (text, v) in values {
            assert_eq!(run(text).unwrap(), v, "{text}");
        }
        let text = "let s = builtins.mapAttrs (n: v: v + 1) { b = \"x\"; }; in s.b";
        let (frames, places) = frames_and_place(&run_trace(text));
        assert_eq!(
            frames,
            [
                "… while evaluating the attribute 'b'",
                "… while calling anonymous lambda",
                "… while evaluating a path segment"
            ]
        );
        assert_eq!(
            places,
            [
                "at «test»:1:58:",
                "at «test»:1:31:",
                "at «test»:1:38:",
                "error: cannot coerce an integer to a string: 1"
            ]
        );
        let text = "let s = builtins.mapAttrs (n: v: throw n) { b = 1; }; \
                    in [ (builtins.tryEval s.b) s.b ]";
        let (frames, places) = frames_and_place(&run_trace(text));
        assert_eq!(
            frames,
            [
                "… while evaluating list element at index 1",
                "… while evaluating the attribute 'b'",
                "… while evaluating the attribute 'b'",
                "… while calling anonymous lambda",
                "… while calling the 'throw' builtin"
            ]
        );
        assert_eq!(
            places,
            [
                "at «test»:1:83:",
                "at «test»:1:78:",
                "at «test»:1:31:",
                "at «test»:1:34:",
                "error: b"
            ]
        );
        let (frames, places) = frames_and_place(&run_trace("builtins.filter (x: x + 1) [ 1 ]"));
        assert_eq!(frames, ["… while calling the 'filter' builtin", "… while evaluating the return value of the filtering function passed to builtins.filter"]);
        assert_eq!(
            places,
            [
                "at «test»:1:1:",
                "error: expected a Boolean but found an integer: 2"
            ]
        );
        let (frames, places) =
            frames_and_place(&run_trace("let m = map (x: x + 1); in m [ \"x\" ]"));
        assert_eq!(
            frames,
            [
                "… while evaluating list element at index 0",
                "… from call site",
                "… while calling anonymous lambda",
                "… while evaluating a path segment"
            ]
        );
        assert_eq!(
            places,
            [
                "at «test»:1:14:",
                "at «test»:1:14:",
                "at «test»:1:21:",
                "error: cannot coerce an integer to a string: 1"
            ]
        );
        let text = "let g = builtins.substring 0; in g 2 3";
        let (frames, places) = frames_and_place(&run_trace(text));
        assert_eq!(
            frames,
            [
                "… while calling the 'substring' builtin",
                "… while evaluating the third argument (the string) passed to builtins.substring"
            ]
        );
        assert_eq!(
            places,
            [
                "at «test»:1:34:",
                "error: cannot coerce an integer to a string: 3"
            ]
        );
    }

    /// Variables of a `with` (looked up from the innermost `with` the scope check placed):
    /// lexical bindings and globals come first, inner `with`s before outer ones, the
    /// `with`'s set forced only when a variable needs it, and its errors unchanged.
    #[test]
    fn fast_paths_of_with_variables() {
        let values = [
            ("with { a = 1; }; with { b = 2; }; [ a b ]", "[ 1 2 ]"),
            ("with { a = 1; }; with { a = 2; }; a", "2"),
            ("let a = 3; in with { a = 1; }; a", "3"),
            ("x: with x; a", "<LAMBDA>"),
            (
                "with { false = 1; map = 2; }; [ false (map (x: x) [ 1 ]) ]",
                "[ false [ 1 ] ]",
            ),
            ("with { __nope = 5; }; __nope", "5"),
            ("with { a = 1; }; let f = y: a + y; in f 2", "3"),
            ("with { a = 1; }; rec { b = a; c = b; }.c", "1"),
            ("with { a = 1; }; { inherit a; }.a", "1"),
            ("with { a = 1; }; builtins.genList (i: a + i) 2", "[ 1 2 ]"),
            ("with throw \"no\"; [ true 1 ]", "[ true 1 ]"),
            (
                "let s = { a = 1; }; in with s; let t = { b = a; }; in with t; [ a b ]",
                "[ 1 1 ]",
            ),
        ];
        for (text, v) in values {
            assert_eq!(run(text).unwrap(), v, "{text}");
        }
        assert_eq!(
            run("with { x = 1; }; y").unwrap_err(),
            "undefined variable 'y'"
        );
        assert_eq!(
            run("with { }; __nope").unwrap_err(),
            "undefined variable '__nope'"
        );
        assert_eq!(
            run("with 1; y").unwrap_err(),
            "expected a set but found an integer: 1"
        );
        let (frames, places) = frames_and_place(&run_trace("with { a = throw \"x\"; }; [ a ]"));
        assert_eq!(
            frames,
            [
                "… while evaluating list element at index 0",
                "… while calling the 'throw' builtin"
            ]
        );
        assert_eq!(places, ["at «test»:1:12:", "error: x"]);
    }

    /// `let` bindings: plain ones (the scope built directly), `inherit` from the scope
    /// outside, `inherit (e)` (the general way), bindings referring to later ones and to
    /// themselves; `__overrides` is a binding like any other in a `let`, as in every CppNix
    /// (only a recursive set applies it). Values equal to CppNix 2.8's.
    #[test]
    fn let_bindings() {
        let values = [
            (
                "let x = 1; in let inherit x; y = x + 1; in [ x y ]",
                "[ 1 2 ]",
            ),
            ("let a = b; b = 2; in a", "2"),
            ("let f = n: if n == 0 then 0 else f (n - 1); in f 10", "0"),
            ("let a = { b = 1; }; in let inherit (a) b; c = b; in c", "1"),
            ("let inherit ({ q = 3; }) q; r = q; in r", "3"),
            ("let __overrides = 5; in 1", "1"),
            (
                "let __overrides = { a = 1; }; a = 2; inherit ({ b = 3; }) b; in \
                 [ a b __overrides.a ]",
                "[ 2 3 1 ]",
            ),
            ("let __overrides = { a = 1; }; a = 2; in a", "2"),
        ];
        for (text, v) in values {
            assert_eq!(run(text).unwrap(), v, "{text}");
        }
        assert_eq!(
            run("let x = x; in x").unwrap_err(),
            "infinite recursion encountered"
        );
    }

    /// A set expression built again and again (its entries made in the known name order
    /// from the second time on): `inherit`, nested names, an attribute never forced that
    /// would fail, `inherit (e)` and `rec` (the general way), a plain set's `__overrides`
    /// (an ordinary attribute, as in CppNix). Values equal to CppNix 2.8's.
    #[test]
    fn sets_built_again() {
        let values = [
            (
                "let f = x: { b = 2; a = x; inherit x; }; in map (x: (f x).a + (f x).x) [ 1 2 3 ]",
                "[ 2 4 6 ]",
            ),
            (
                "let f = x: { a.b = x; a.c = 1; }; in map (x: (f x).a) [ 1 2 ]",
                "[ { b = 1; c = 1; } { b = 2; c = 1; } ]",
            ),
            (
                "let f = x: { a = throw \"no\"; b = x; }; in map (x: (f x).b) [ 1 2 3 ]",
                "[ 1 2 3 ]",
            ),
            (
                "let f = x: { inherit ({ y = x; }) y; z = x; }; in map (x: (f x).y) [ 1 2 3 ]",
                "[ 1 2 3 ]",
            ),
            (
                "let f = x: rec { a = x; b = a; }; in map (x: (f x).b) [ 1 2 3 ]",
                "[ 1 2 3 ]",
            ),
            (
                "let f = x: { __overrides = { a = 5; }; a = x; }; in map (x: (f x).a) [ 1 2 3 ]",
                "[ 1 2 3 ]",
            ),
        ];
        for (text, v) in values {
            assert_eq!(run(text).unwrap(), v, "{text}");
        }
    }

    /// Selections and `?` from the global `builtins` (looked up in place), from a
    /// `builtins` bound lexically (a variable then, not the global) and inside a `with`
    /// that has one (the global comes first); missing names with `or`, and errors.
    #[test]
    fn selections_from_globals() {
        let values = [
            ("builtins.length [ 1 2 ]", "2"),
            ("builtins.nope or 5", "5"),
            (
                "[ (builtins ? length) (builtins ? nope) ]",
                "[ true false ]",
            ),
            ("let builtins = { length = 1; }; in builtins.length", "1"),
            ("with { builtins = 1; }; builtins.length [ 1 ]", "1"),
            ("builtins.builtins.builtins.head [ 7 ]", "7"),
        ];
        for (text, v) in values {
            assert_eq!(run(text).unwrap(), v, "{text}");
        }
        assert_eq!(
            run("builtins.nope").unwrap_err(),
            "attribute 'nope' missing"
        );
        assert_eq!(
            run("builtins.length.x").unwrap_err(),
            "expected a set but found a function: «primop length»"
        );
    }

    /// A variable of a `with` remembers where in the set it was found, and reads that entry
    /// first next time: one node meeting sets of other shapes (the name elsewhere, another
    /// name at the remembered place, the name only in an outer `with`, nowhere) still gets
    /// the innermost binding, and the same as a search.
    #[test]
    fn with_hints_of_other_sets() {
        let values = [
            (
                "let f = s: with s; x; in map f [ { a = 0; x = 1; } { x = 2; z = 3; } \
                 { b = 0; c = 0; x = 4; } { x = 5; } { a = 0; x = 6; } ]",
                "[ 1 2 4 5 6 ]",
            ),
            (
                "let f = s: t: with s; with t; x; in [ (f { x = 1; } { y = 2; }) \
                 (f { x = 1; } { x = 2; }) (f { a = 0; x = 3; } { }) \
                 (f { x = 4; } { a = 0; x = 5; }) (f { a = 0; b = 0; x = 6; } { x = 7; }) ]",
                "[ 1 2 3 5 7 ]",
            ),
            (
                "let f = s: with builtins; with s; [ (isInt x) x ]; in \
                 map f [ { x = 1; } { isInt = _: \"mine\"; x = 2; } { x = 3; } ]",
                "[ [ true 1 ] [ \"mine\" 2 ] [ true 3 ] ]",
            ),
        ];
        for (text, v) in values {
            assert_eq!(run(text).unwrap(), v, "{text}");
        }
        let e = run("let f = s: with s; x; in map f [ { x = 1; } { y = 1; } ]").unwrap_err();
        assert_eq!(e, "undefined variable 'x'");
    }

    /// `builtins.NAME args` (called as a variable's builtin, `Evaluator::global_member_primop`)
    /// is the global's member only: a `builtins` the program binds, by `scopedImport` too,
    /// is its own; partial applications and members that are no builtin take the loop.
    #[test]
    fn builtins_members_called_directly() {
        let file = std::env::temp_dir().join(format!("firn-members-{}.nix", std::process::id()));
        std::fs::write(&file, "builtins.elemAt [ 1 ] 5").expect("write");
        let scoped = format!(
            "scopedImport {{ builtins = {{ elemAt = l: i: 6; }}; }} {}",
            file.display()
        );
        let values = [
            ("builtins.elemAt [ 1 2 3 ] 1", "2"),
            ("builtins.genList (builtins.add 1) 3", "[ 1 2 3 ]"),
            ("builtins.elemAt [ (builtins.sub 5 2) ] 0", "3"),
            (
                "let builtins = { elemAt = l: i: 7; }; in builtins.elemAt [ 1 ] 5",
                "7",
            ),
            (
                "with { builtins = { elemAt = l: i: 9; }; }; builtins.elemAt [ 1 2 ] 1",
                "2",
            ),
            ("builtins.langVersion", "6"),
            (&scoped, "6"),
        ];
        for (text, v) in values {
            assert_eq!(run(text).unwrap(), v, "{text}");
        }
        let _ = std::fs::remove_file(&file);
        let e = eval_text("builtins.elemAt [ 1 ] 5").unwrap_err();
        assert_eq!(
            e.msg,
            "'builtins.elemAt' called with index 5 on a list of size 1"
        );
        let e = run("builtins.add 1 2 3").unwrap_err();
        assert_eq!(
            e,
            "attempt to call something which is not a function but an integer: 3"
        );
    }
}
