//! Static scope checking, done right after parsing as CppNix does (its `bindVars`): a variable
//! must be bound by an enclosing lambda, `let`, recursive set or the global scope, unless a
//! `with` encloses it. Variables only the global scope binds (and no `with` encloses) become
//! [`ExprKind::Global`], which the evaluator finds without walking the environment.
//!
//! A variable bound lexically also gets its address (see [`var_address`]): how many scopes
//! out it is bound and its position there. The evaluator's environments have one scope per
//! level seen here (a lambda's argument or formals sorted by symbol, a `let` or recursive
//! set's names sorted by symbol, a `with` with none), so it finds the binding without
//! searching by name. A variable inside a `with` that no scope of the file binds gets how
//! many scopes out the innermost `with` is (see [`with_address`]): the evaluator tries the
//! global scope (the one lexical scope outside a file whose names are not known here), then
//! goes straight to that `with`, instead of searching every scope on the way for a name
//! none of them binds.

use crate::ast::*;
use crate::parser::ParseError;

/// Names in the global scope besides the `__`-prefixed builtins.
const GLOBALS: &[&str] = &[
    "true",
    "false",
    "null",
    "builtins",
    "derivation",
    "derivationStrict",
    "import",
    "abort",
    "throw",
    "baseNameOf",
    "dirOf",
    "isNull",
    "map",
    "removeAttrs",
    "toString",
    "fetchTarball",
    "fetchGit",
    "fetchMercurial",
    "fetchTree",
    "placeholder",
    "scopedImport",
    "fromTOML",
];

/// Boxed, so that a check's result is a register.
type CResult = Result<(), Box<ParseError>>;

struct Checker<'a> {
    interner: &'a Interner,
    /// Enclosing scopes, innermost last: the names each binds, sorted by symbol (empty for
    /// a `with`).
    scopes: Vec<Vec<Symbol>>,
    /// The emptied vectors of scopes left, for the next scopes entered.
    spare: Vec<Vec<Symbol>>,
    /// The positions in `scopes` of the enclosing `with`s' scopes, innermost last.
    withs: Vec<usize>,
}

/// The vectors of a check (`scopes` and `spare`), kept for the next check on this thread.
type Kept = (Vec<Vec<Symbol>>, Vec<Vec<Symbol>>);

/// Spare vectors beyond this many are not kept for the next check.
const SPARE_KEPT: usize = 256;

thread_local! {
    /// The vectors of the last check on this thread: checking many small files then does
    /// not grow new ones for each.
    static KEPT: std::cell::Cell<Option<Kept>> = const { std::cell::Cell::new(None) };
}

/// The address of a lexically bound variable node: `(scopes out, position in that scope)`,
/// if the scope check found one.
pub fn var_address(e: &Expr) -> Option<(usize, usize)> {
    match (&e.kind, e.memo.get()) {
        // One test: a lexical address is positive, a `with` address negative as an `i32`.
        (ExprKind::Var(_), m) if m as i32 > 0 => {
            Some(((m >> 16) as usize, (m & 0xffff) as usize - 1))
        }
        _ => None,
    }
}

/// For a variable node that no lexical scope of its file binds but a `with` encloses: how
/// many scopes out the innermost `with`'s scope is, if the scope check found it. (Kept in
/// the node's `memo` with the top bit set, which a lexical address never has; the count in
/// the low 15 bits, and the evaluator's [`with_hint`] in the 16 bits between.)
#[inline]
pub fn with_address(e: &Expr) -> Option<usize> {
    match (&e.kind, e.memo.get()) {
        (ExprKind::Var(_), m) if m & WITH_ADDRESS != 0 => Some((m & WITH_UP) as usize),
        _ => None,
    }
}

/// For a variable node with a [`with_address`]: where in a `with`'s set the evaluator found
/// the name the last time (its index plus one; 0 for none yet). A lookup reads that entry
/// first and takes it if it holds the name, so a wrong hint (another set, another shape)
/// costs one comparison and never changes the result.
#[inline]
pub fn with_hint(e: &Expr) -> usize {
    ((e.memo.get() & WITH_HINT) >> WITH_HINT_SHIFT) as usize
}

/// Remember index `i` of a `with`'s set as variable `e`'s [`with_hint`] (an index too large
/// for the hint is not remembered).
#[inline]
pub fn set_with_hint(e: &Expr, i: usize) {
    let m = e.memo.get();
    if m & WITH_ADDRESS != 0 && i < (WITH_HINT >> WITH_HINT_SHIFT) as usize {
        e.memo
            .set((m & !WITH_HINT) | ((i as u32 + 1) << WITH_HINT_SHIFT));
    }
}

/// The bit of a variable node's `memo` that marks a `with` address (see [`with_address`]).
const WITH_ADDRESS: u32 = 1 << 31;
/// The bits of a `with` address that count the scopes out to the innermost `with`.
const WITH_UP: u32 = 0x7fff;
/// The bits of a `with` address that hold the [`with_hint`], and where they start.
const WITH_HINT: u32 = !(WITH_ADDRESS | WITH_UP);
const WITH_HINT_SHIFT: u32 = 15;

/// Check that every variable in `e` is bound (by `e` itself, as a global, or in `extra`).
pub fn check(interner: &Interner, e: &mut Expr, extra: &[Symbol]) -> Result<(), ParseError> {
    let (scopes, spare) = KEPT
        .try_with(|k| k.take())
        .ok()
        .flatten()
        .unwrap_or_default();
    let mut c = Checker {
        interner,
        scopes,
        spare,
        withs: Vec::new(),
    };
    if !extra.is_empty() {
        c.enter(extra.iter().copied());
    }
    let r = c.expr(e).map_err(|e| *e);
    // Left emptied (a failed check leaves scopes entered).
    while !c.scopes.is_empty() {
        c.leave();
    }
    c.spare.truncate(SPARE_KEPT);
    let _ = KEPT.try_with(|k| k.set(Some((c.scopes, c.spare))));
    r
}

/// A lambda bound to a name in a set or `let` is known by that name (CppNix's
/// `ExprLambda::setName`, for messages and traces): its symbol (plus one) goes in the node's
/// `memo`, which the evaluator reads through [`lambda_name`].
fn name_lambdas(a: &mut Attrs) {
    for (sym, d) in a.attrs.iter_mut() {
        if !matches!(d.kind, AttrKind::Plain) {
            continue;
        }
        // The lambdas of a curried function share its name, as in CppNix.
        let mut e = &d.value;
        while let ExprKind::Lambda { body, .. } = &e.kind {
            e.memo.set(sym.0.wrapping_add(1));
            e = body;
        }
    }
}

/// The name a lambda expression was bound to, if any (see [`name_lambdas`]).
pub fn lambda_name(e: &Expr) -> Option<Symbol> {
    match (&e.kind, e.memo.get()) {
        (ExprKind::Lambda { .. }, m) if m != 0 => Some(Symbol(m - 1)),
        _ => None,
    }
}

impl Checker<'_> {
    /// Enter a scope binding `names`, ordered as the evaluator orders a scope's names:
    /// sorted by symbol, each once.
    fn enter(&mut self, names: impl IntoIterator<Item = Symbol>) {
        let mut v = self.spare.pop().unwrap_or_default();
        v.extend(names);
        v.sort_unstable();
        v.dedup();
        self.scopes.push(v);
    }

    /// Leave the innermost scope.
    fn leave(&mut self) {
        if let Some(mut v) = self.scopes.pop() {
            v.clear();
            self.spare.push(v);
        }
    }

    /// Bound lexically (or possibly by a `with`)?
    fn lexical(&self, s: Symbol) -> bool {
        self.address(s).is_some() || !self.withs.is_empty()
    }

    /// Where `s` is bound lexically: scopes out, and position in that scope.
    fn address(&self, s: Symbol) -> Option<(usize, usize)> {
        self.scopes
            .iter()
            .rev()
            .enumerate()
            .find_map(|(up, sc)| sc.binary_search(&s).ok().map(|i| (up, i)))
    }

    /// A name in scope close to `name` (variables of enclosing scopes and the globals).
    fn close_name(&self, name: &str) -> Option<String> {
        let vars = self.scopes.iter().flatten().map(|s| self.interner.name(*s));
        crate::suggest::suggest(name, vars.chain(GLOBALS.iter().copied()))
    }

    fn bound(&self, s: Symbol) -> bool {
        if self.lexical(s) {
            return true;
        }
        let n = self.interner.name(s);
        // Every builtin is reachable as `__name`; unknown ones are left to the evaluator.
        n.starts_with("__") || GLOBALS.contains(&n)
    }

    fn path(&mut self, path: &mut [AttrName]) -> CResult {
        for a in path.iter_mut() {
            if let AttrName::Dynamic(e) = a {
                self.child(e)?;
            }
        }
        Ok(())
    }

    /// The bindings of a set: `rec` (and `let`) bind their own names for their values.
    fn attrs(&mut self, a: &mut Attrs, recursive: bool) -> CResult {
        name_lambdas(a);
        if recursive {
            self.enter(a.attrs.keys().copied());
        }
        for e in a.inherit_from.iter_mut() {
            self.child(e)?;
        }
        for d in a.attrs.values_mut() {
            match d.kind {
                // `inherit x;` takes `x` from the scope outside the set.
                AttrKind::Inherited => {
                    if recursive {
                        let inner = self.scopes.pop();
                        let r = self.child(&mut d.value);
                        if let Some(i) = inner {
                            self.scopes.push(i);
                        }
                        r?;
                    } else {
                        self.child(&mut d.value)?;
                    }
                }
                AttrKind::InheritedFrom(_) => {}
                AttrKind::Plain => self.child(&mut d.value)?,
            }
        }
        for (n, v, _) in a.dynamic.iter_mut() {
            self.child(n)?;
            self.child(v)?;
        }
        if recursive {
            self.leave();
        }
        Ok(())
    }

    /// Check `e`: leaves and variables here, the rest in [`Self::expr`] (most nodes are
    /// leaves, which then cost no call).
    #[inline]
    fn child(&mut self, e: &mut Expr) -> CResult {
        match e.kind {
            ExprKind::Var(s) => self.var(e, s),
            ref k if is_leaf(k) => Ok(()),
            _ => self.expr(e),
        }
    }

    /// Check the variable `e`, which is `s`.
    fn var(&mut self, e: &mut Expr, s: Symbol) -> CResult {
        if let Some((up, i)) = self.address(s) {
            // Addresses that do not fit are left to a search by name.
            if up < 0x8000 && i < 0xffff {
                e.memo.set(((up as u32) << 16) | (i as u32 + 1));
            }
            Ok(())
        } else if let Some(&w) = self.withs.last() {
            // A count that does not fit is left to a search.
            match self.scopes.len().checked_sub(w + 1) {
                Some(up) if up <= WITH_UP as usize => e.memo.set(WITH_ADDRESS | up as u32),
                _ => {}
            }
            Ok(())
        } else if self.bound(s) {
            e.kind = ExprKind::Global(s);
            Ok(())
        } else {
            let name = self.interner.name(s);
            let mut msg = format!("undefined variable '{name}'");
            if let Some(m) = self.close_name(name) {
                msg.push_str(&format!("; did you mean '{m}'?"));
            }
            Err(Box::new(ParseError { msg, span: e.span }))
        }
    }

    fn expr(&mut self, e: &mut Expr) -> CResult {
        match &mut e.kind {
            ExprKind::Select { e, path } => {
                self.child(e)?;
                self.path(path)
            }
            ExprKind::SelectOr(s) => {
                self.child(&mut s.e)?;
                self.path(&mut s.path)?;
                self.child(&mut s.default)
            }
            ExprKind::HasAttr { e, path } => {
                self.child(e)?;
                self.path(path)
            }
            ExprKind::Attrs(a) => self.attrs(a, a.rec),
            ExprKind::List(items) => items.iter_mut().try_for_each(|i| self.child(i)),
            ExprKind::Lambda { arg, formals, body } => {
                let formal_names = formals
                    .iter()
                    .flat_map(|f| f.formals.iter().map(|x| x.name));
                self.enter(arg.iter().copied().chain(formal_names));
                let r = (|| {
                    if let Some(f) = formals {
                        for x in f.formals.iter_mut() {
                            if let Some(d) = &mut x.default {
                                self.child(d)?;
                            }
                        }
                    }
                    self.child(body)
                })();
                self.leave();
                r
            }
            ExprKind::Call { fun, args } => {
                self.child(fun)?;
                args.iter_mut().try_for_each(|a| self.child(a))
            }
            ExprKind::Let { attrs, body } => {
                name_lambdas(attrs);
                self.enter(attrs.attrs.keys().copied());
                let r = (|| {
                    for x in attrs.inherit_from.iter_mut() {
                        self.child(x)?;
                    }
                    for d in attrs.attrs.values_mut() {
                        match d.kind {
                            AttrKind::Inherited => {
                                let inner = self.scopes.pop();
                                let r = self.child(&mut d.value);
                                if let Some(i) = inner {
                                    self.scopes.push(i);
                                }
                                r?;
                            }
                            AttrKind::InheritedFrom(_) => {}
                            AttrKind::Plain => self.child(&mut d.value)?,
                        }
                    }
                    self.child(body)
                })();
                self.leave();
                r
            }
            ExprKind::With { env, body } => {
                self.child(env)?;
                self.enter([]);
                self.withs.push(self.scopes.len() - 1);
                let r = self.child(body);
                self.leave();
                self.withs.pop();
                r
            }
            ExprKind::If { cond, then, else_ } => {
                self.child(cond)?;
                self.child(then)?;
                self.child(else_)
            }
            ExprKind::Assert { cond, body } => {
                self.child(cond)?;
                self.child(body)
            }
            ExprKind::Not(e) => self.child(e),
            ExprKind::Bin { a, b, .. } => {
                self.child(a)?;
                self.child(b)
            }
            ExprKind::Concat { parts, .. } => parts.iter_mut().try_for_each(|p| self.child(p)),
            // Leaves and variables (the whole tree's root; below it, `child` takes them).
            _ => self.child(e),
        }
    }
}

/// Whether `k` is a node without children or names to check.
#[inline]
fn is_leaf(k: &ExprKind) -> bool {
    matches!(
        k,
        ExprKind::Int(_)
            | ExprKind::Float(_)
            | ExprKind::Str(_)
            | ExprKind::Path(_)
            | ExprKind::CurPos
            | ExprKind::InheritFrom(_)
            | ExprKind::Global(_)
    )
}
