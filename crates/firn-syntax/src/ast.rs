//! The abstract syntax tree, with byte spans on every node and interned identifiers.
//!
//! The parser desugars as CppNix does (so `nix-instantiate --parse` output matches): `a - b` is a
//! call of `__sub`, `a < b` of `__lessThan`, `<p>` of `__findFile __nixPath "p"`, `a + b` is a
//! (non-string) concatenation, and nested attribute paths in bindings become nested sets.

pub use crate::symmap::SymMap;

/// A byte range in the source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Span {
        Span {
            start: start as u32,
            end: end as u32,
        }
    }
}

/// An interned identifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Symbol(pub u32);

/// Interns identifier strings; shared by the parser and, later, the evaluator.
#[derive(Clone, Debug, Default)]
pub struct Interner {
    /// The names, by symbol.
    names: Vec<Box<str>>,
    /// The symbols by name: an open-addressing table (linear probing, a power of two long,
    /// at most half full) of each name's hash and its symbol plus one (0: an empty slot).
    slots: Vec<(u32, u32)>,
}

impl Interner {
    pub fn intern(&mut self, s: &str) -> Symbol {
        if self.names.len() * 2 >= self.slots.len() {
            self.grow();
        }
        let h = name_hash(s);
        let i = match self.probe(s, h) {
            Ok(sym) => return sym,
            Err(empty) => empty,
        };
        let id = self.names.len() as u32;
        self.names.push(s.into());
        self.slots[i] = (h, id + 1);
        Symbol(id)
    }

    /// The names interned, by symbol (the first interned first).
    pub fn into_names(self) -> Vec<Box<str>> {
        self.names
    }

    /// How many names are interned (the next new name's symbol).
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The names of symbols `start` and on.
    pub fn names_from(&self, start: usize) -> &[Box<str>] {
        self.names.get(start..).unwrap_or(&[])
    }

    /// Forget the symbols `n` and on (the interner is then as it was when it held `n`).
    pub fn truncate(&mut self, n: usize) {
        while self.names.len() > n {
            let sym = self.names.len() as u32 - 1;
            let h = name_hash(&self.names[sym as usize]);
            let mask = self.slots.len() - 1;
            let mut i = h as usize & mask;
            while self.slots[i].1 != sym + 1 {
                i = (i + 1) & mask;
            }
            self.remove_slot(i);
            self.names.pop();
        }
    }

    /// Empty slot `i`, moving later entries of its run back so that every entry stays
    /// reachable from its hash's slot (deletion in linear probing without tombstones).
    fn remove_slot(&mut self, mut i: usize) {
        let mask = self.slots.len() - 1;
        self.slots[i] = (0, 0);
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            let (h, sym) = self.slots[j];
            if sym == 0 {
                return;
            }
            // The entry at `j` may move to `i` unless its home slot lies after `i`, up to `j`
            // (going round the end of the table).
            let home = h as usize & mask;
            let stays = if i <= j {
                i < home && home <= j
            } else {
                i < home || home <= j
            };
            if !stays {
                self.slots[i] = self.slots[j];
                self.slots[j] = (0, 0);
                i = j;
            }
        }
    }

    pub fn name(&self, s: Symbol) -> &str {
        &self.names[s.0 as usize]
    }

    /// The symbol of `s` if it was interned (without interning it).
    pub fn find(&self, s: &str) -> Option<Symbol> {
        if self.slots.is_empty() {
            return None;
        }
        self.probe(s, name_hash(s)).ok()
    }

    /// `s`'s symbol (its hash `h`), or the empty slot where it would go. The table must not be
    /// empty.
    #[inline]
    fn probe(&self, s: &str, h: u32) -> Result<Symbol, usize> {
        let mask = self.slots.len() - 1;
        let mut i = h as usize & mask;
        loop {
            let (sh, sym) = self.slots[i];
            if sym == 0 {
                return Err(i);
            }
            if sh == h && *self.names[(sym - 1) as usize] == *s {
                return Ok(Symbol(sym - 1));
            }
            i = (i + 1) & mask;
        }
    }

    /// Double the table (placing each symbol again by its hash).
    #[cold]
    fn grow(&mut self) {
        let len = (self.slots.len() * 2).max(256);
        let mask = len - 1;
        let mut slots = vec![(0u32, 0u32); len];
        for &(h, sym) in self.slots.iter().filter(|(_, sym)| *sym != 0) {
            let mut i = h as usize & mask;
            while slots[i].1 != 0 {
                i = (i + 1) & mask;
            }
            slots[i] = (h, sym);
        }
        self.slots = slots;
    }
}

/// The hash of a name in [`Interner`]'s table. Names are short and trusted (source text): a
/// fast hash, not SipHash.
#[inline]
fn name_hash(s: &str) -> u32 {
    use std::hash::BuildHasher;
    let h = foldhash::fast::FixedState::default().hash_one(s);
    (h ^ (h >> 32)) as u32
}

/// An element of an attribute path: a name, or an interpolation `${e}` / `"${e}"`.
#[derive(Clone, Debug, PartialEq)]
pub enum AttrName {
    Static(Symbol),
    Dynamic(Box<Expr>),
}

/// Binary operators that stay operators after desugaring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Eq,
    NEq,
    And,
    Or,
    Impl,
    Update,
    ConcatLists,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Eq => "==",
            BinOp::NEq => "!=",
            BinOp::And => "&&",
            BinOp::Or => "||",
            BinOp::Impl => "->",
            BinOp::Update => "//",
            BinOp::ConcatLists => "++",
        }
    }
}

/// How an attribute got its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttrKind {
    Plain,
    /// `inherit x;`
    Inherited,
    /// `inherit (e) x;`: the index of `e` in [`Attrs::inherit_from`].
    InheritedFrom(u32),
}

#[derive(Clone, Debug, PartialEq)]
pub struct AttrDef {
    pub kind: AttrKind,
    pub value: Expr,
    pub span: Span,
}

/// An attribute set (also the bindings of `let`).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Attrs {
    pub rec: bool,
    pub attrs: SymMap<AttrDef>,
    pub dynamic: Vec<(Expr, Expr, Span)>,
    pub inherit_from: Vec<Expr>,
}

/// A formal argument of a lambda with a set pattern.
#[derive(Clone, Debug, PartialEq)]
pub struct Formal {
    pub name: Symbol,
    /// Boxed: most formals have no default, and a formal is then 24 bytes, not 64.
    pub default: Option<Box<Expr>>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Formals {
    pub formals: Box<[Formal]>,
    pub ellipsis: bool,
}

/// A selection with a default: `e.path or default`.
#[derive(Clone, Debug, PartialEq)]
pub struct SelectOr {
    pub e: Expr,
    pub path: Box<[AttrName]>,
    pub default: Expr,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    Int(i64),
    Float(f64),
    Str(Box<str>),
    /// An absolute path (relative ones are resolved against the file's directory).
    Path(Box<str>),
    Var(Symbol),
    /// A variable the scope check found bound by nothing but the global scope (no enclosing
    /// binding, no enclosing `with`): the evaluator looks it up there directly.
    Global(Symbol),
    CurPos,
    Select {
        e: Box<Expr>,
        path: Box<[AttrName]>,
    },
    /// `e.path or default` (boxed: a node is as small as its largest kind).
    SelectOr(Box<SelectOr>),
    HasAttr {
        e: Box<Expr>,
        path: Box<[AttrName]>,
    },
    Attrs(Box<Attrs>),
    List(Box<[Expr]>),
    Lambda {
        arg: Option<Symbol>,
        formals: Option<Box<Formals>>,
        body: Box<Expr>,
    },
    Call {
        fun: Box<Expr>,
        args: Box<[Expr]>,
    },
    Let {
        attrs: Box<Attrs>,
        body: Box<Expr>,
    },
    With {
        env: Box<Expr>,
        body: Box<Expr>,
    },
    If {
        cond: Box<Expr>,
        then: Box<Expr>,
        else_: Box<Expr>,
    },
    Assert {
        cond: Box<Expr>,
        body: Box<Expr>,
    },
    Not(Box<Expr>),
    Bin {
        op: BinOp,
        a: Box<Expr>,
        b: Box<Expr>,
    },
    /// `a + b` (`force_string == false`) or string interpolation (`true`).
    Concat {
        force_string: bool,
        parts: Box<[Expr]>,
    },
    /// The `e` of an `inherit (e)`, by index into the enclosing set's `inherit_from`.
    InheritFrom(usize),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
    /// A number remembered per node, 0 until set: for a literal, the evaluator keeps the
    /// index of its value in its own table here; for a lambda bound to a name, the scope
    /// check keeps that name (see `scope::lambda_name`); for a variable bound lexically,
    /// its address (see `scope::var_address`), and for one only a `with` or a global can
    /// bind, how far out the innermost `with` is (`scope::with_address`); for a selection `e.a.b` or a test `e ? a.b`,
    /// the evaluator keeps where in the set each name was found (or found missing) last
    /// time; for a set expression built more than once, the index of its attributes' name
    /// order in the evaluator's table.
    pub memo: std::cell::Cell<u32>,
}

impl Expr {
    pub fn new(kind: ExprKind, span: Span) -> Expr {
        Expr {
            kind,
            span,
            memo: std::cell::Cell::new(0),
        }
    }
}

/// What a walk over a tree ([`walk_mut`]) changes: each node (before its children are
/// walked), each static name of an attribute path, each set's (or `let`'s) bindings and
/// each formal.
pub trait VisitMut {
    fn node(&mut self, e: &mut Expr);
    fn name(&mut self, _s: &mut Symbol) {}
    fn attrs(&mut self, _a: &mut Attrs) {}
    fn formal(&mut self, _f: &mut Formal) {}
}

/// Walk every node of `e` (with an explicit stack: nesting may be deep), and the parts of
/// each [`VisitMut`] names.
pub fn walk_mut(e: &mut Expr, v: &mut impl VisitMut) {
    fn path<'a>(path: &'a mut [AttrName], v: &mut impl VisitMut, stack: &mut Vec<&'a mut Expr>) {
        for a in path {
            match a {
                AttrName::Static(s) => v.name(s),
                AttrName::Dynamic(e) => stack.push(e),
            }
        }
    }
    fn attrs<'a>(a: &'a mut Attrs, v: &mut impl VisitMut, stack: &mut Vec<&'a mut Expr>) {
        v.attrs(a);
        stack.extend(a.attrs.values_mut().map(|d| &mut d.value));
        for (n, x, _) in a.dynamic.iter_mut() {
            stack.push(n);
            stack.push(x);
        }
        stack.extend(a.inherit_from.iter_mut());
    }
    let mut stack: Vec<&mut Expr> = vec![e];
    while let Some(e) = stack.pop() {
        v.node(e);
        match &mut e.kind {
            ExprKind::Int(_)
            | ExprKind::Float(_)
            | ExprKind::Str(_)
            | ExprKind::Path(_)
            | ExprKind::Var(_)
            | ExprKind::Global(_)
            | ExprKind::CurPos
            | ExprKind::InheritFrom(_) => {}
            ExprKind::Select { e, path: p } | ExprKind::HasAttr { e, path: p } => {
                path(p, v, &mut stack);
                stack.push(e);
            }
            ExprKind::SelectOr(s) => {
                path(&mut s.path, v, &mut stack);
                stack.push(&mut s.e);
                stack.push(&mut s.default);
            }
            ExprKind::Attrs(a) => attrs(a, v, &mut stack),
            ExprKind::List(items) => stack.extend(items.iter_mut()),
            ExprKind::Lambda { formals, body, .. } => {
                if let Some(f) = formals {
                    for x in f.formals.iter_mut() {
                        v.formal(x);
                        if let Some(d) = &mut x.default {
                            stack.push(d);
                        }
                    }
                }
                stack.push(body);
            }
            ExprKind::Call { fun, args } => {
                stack.push(fun);
                stack.extend(args.iter_mut());
            }
            ExprKind::Let { attrs: a, body } => {
                attrs(a, v, &mut stack);
                stack.push(body);
            }
            ExprKind::With { env, body } => {
                stack.push(env);
                stack.push(body);
            }
            ExprKind::If { cond, then, else_ } => {
                stack.push(cond);
                stack.push(then);
                stack.push(else_);
            }
            ExprKind::Assert { cond, body } => {
                stack.push(cond);
                stack.push(body);
            }
            ExprKind::Not(e) => stack.push(e),
            ExprKind::Bin { a, b, .. } => {
                stack.push(a);
                stack.push(b);
            }
            ExprKind::Concat { parts, .. } => stack.extend(parts.iter_mut()),
        }
    }
}

/// Move every span of `e` by `by` bytes: the evaluator gives each parsed file its own range
/// of offsets, so a span alone says which file (and, with the file's text, which line and
/// column) a node comes from.
pub fn shift_spans(e: &mut Expr, by: u32) {
    struct Shift(u32);
    impl Shift {
        fn span(&self, s: &mut Span) {
            s.start += self.0;
            s.end += self.0;
        }
    }
    impl VisitMut for Shift {
        fn node(&mut self, e: &mut Expr) {
            self.span(&mut e.span);
        }
        fn attrs(&mut self, a: &mut Attrs) {
            for d in a.attrs.values_mut() {
                self.span(&mut d.span);
            }
            for (_, _, s) in a.dynamic.iter_mut() {
                self.span(s);
            }
        }
        fn formal(&mut self, f: &mut Formal) {
            self.span(&mut f.span);
        }
    }
    walk_mut(e, &mut Shift(by));
}

/// The path literals of `e` (not the parts of interpolated paths): the files it may import.
/// They come in the order of the tree, which is the order of the source except that a set's
/// bindings come in the order of their names' symbols.
pub fn path_literals(e: &Expr) -> Vec<&str> {
    fn attrs<'a>(a: &'a Attrs, stack: &mut Vec<&'a Expr>) {
        // Pushed in reverse, as the stack pops the last first.
        stack.extend(a.inherit_from.iter().rev());
        for (n, v, _) in a.dynamic.iter().rev() {
            stack.push(v);
            stack.push(n);
        }
        stack.extend(a.attrs.values().rev().map(|d| &d.value));
    }
    let mut out = Vec::new();
    let mut stack: Vec<&Expr> = vec![e];
    while let Some(e) = stack.pop() {
        match &e.kind {
            ExprKind::Path(p) => out.push(&**p),
            ExprKind::Int(_)
            | ExprKind::Float(_)
            | ExprKind::Str(_)
            | ExprKind::Var(_)
            | ExprKind::Global(_)
            | ExprKind::CurPos
            | ExprKind::InheritFrom(_) => {}
            ExprKind::Select { e, path } | ExprKind::HasAttr { e, path } => {
                stack.extend(dynamic_names(path));
                stack.push(e);
            }
            ExprKind::SelectOr(s) => {
                stack.push(&s.default);
                stack.extend(dynamic_names(&s.path));
                stack.push(&s.e);
            }
            ExprKind::Attrs(a) => attrs(a, &mut stack),
            ExprKind::List(items) => stack.extend(items.iter().rev()),
            ExprKind::Lambda { formals, body, .. } => {
                stack.push(body);
                if let Some(f) = formals {
                    stack.extend(f.formals.iter().rev().filter_map(|x| x.default.as_deref()));
                }
            }
            ExprKind::Call { fun, args } => {
                stack.extend(args.iter().rev());
                stack.push(fun);
            }
            ExprKind::Let { attrs: a, body } => {
                stack.push(body);
                attrs(a, &mut stack);
            }
            ExprKind::With { env, body } => {
                stack.push(body);
                stack.push(env);
            }
            ExprKind::If { cond, then, else_ } => {
                stack.push(else_);
                stack.push(then);
                stack.push(cond);
            }
            ExprKind::Assert { cond, body } => {
                stack.push(body);
                stack.push(cond);
            }
            ExprKind::Not(e) => stack.push(e),
            ExprKind::Bin { a, b, .. } => {
                stack.push(b);
                stack.push(a);
            }
            // An interpolated path is a concatenation starting with a path: only the
            // interpolated expressions are looked into.
            ExprKind::Concat { parts, .. } => stack.extend(
                parts
                    .iter()
                    .rev()
                    .filter(|p| !matches!(p.kind, ExprKind::Path(_))),
            ),
        }
    }
    out
}

/// The interpolated names of an attribute path, last first.
fn dynamic_names(path: &[AttrName]) -> impl Iterator<Item = &Expr> {
    path.iter().rev().filter_map(|a| match a {
        AttrName::Dynamic(e) => Some(&**e),
        AttrName::Static(_) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Syntax trees live for the whole evaluation (they were two fifths of a package set's
    /// heap): a change that grows a node costs every node of every file.
    #[test]
    fn truncating_forgets_the_last_names_only() {
        let mut i = Interner::default();
        let names: Vec<String> = (0..3000)
            .map(|k| format!("n{}", k * 7919 % 10007))
            .collect();
        for n in &names[..2000] {
            i.intern(n);
        }
        let kept = i.clone();
        for n in &names[2000..] {
            i.intern(n);
        }
        i.truncate(2000);
        assert_eq!(i.len(), 2000);
        for (k, n) in names[..2000].iter().enumerate() {
            assert_eq!(i.intern(n), Symbol(k as u32), "{n}");
        }
        // Forgotten names come back as new symbols, in the order asked.
        assert_eq!(i.intern(&names[2500]), Symbol(2000));
        assert_eq!(i.intern(&names[2100]), Symbol(2001));
        let mut j = kept;
        assert_eq!(j.intern(&names[2500]), Symbol(2000));
        i.truncate(0);
        assert!(i.is_empty());
        assert_eq!(i.intern("x"), Symbol(0));
    }

    /// Rounds of names interned and forgotten again (as a mirror does for each file), on a
    /// table that grows meanwhile: every name left is found at its symbol.
    #[test]
    fn interning_and_truncating_in_rounds() {
        let mut i = Interner::default();
        let mut kept: Vec<String> = Vec::new();
        let mut x: u64 = 7;
        for round in 0..400 {
            let base = i.len();
            let mut added = Vec::new();
            for _ in 0..(round % 37) {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let n = format!("s{}", (x >> 40) % 5000);
                let sym = i.intern(&n);
                if sym.0 as usize >= base && !added.contains(&n) {
                    added.push(n);
                }
            }
            if round % 3 == 0 {
                kept.extend(added);
            } else {
                i.truncate(base);
            }
            assert_eq!(i.len(), kept.len());
            for (k, n) in kept.iter().enumerate() {
                assert_eq!(i.intern(n), Symbol(k as u32), "round {round}: {n}");
            }
        }
    }

    #[test]
    fn path_literals_are_the_plain_paths() {
        let src = crate::Source {
            origin: "/b/f.nix",
            base_dir: "/b",
            home: "/h",
            pipe_operators: false,
            lints: Default::default(),
        };
        let text = "x: { a = ./a.nix; b = [ (import ./b) ]; c = ./c/${x}; d = \"${./d}\"; \
                    e = ./e + \"/f.nix\"; f = if x then ~/g.nix else { h = <n>; }; }";
        let mut i = Interner::default();
        let e = crate::parse(text, &src, &mut i).expect("parses");
        assert_eq!(path_literals(&e), ["/b/a.nix", "/b/b", "/h/g.nix"]);
    }

    #[test]
    fn compact_nodes() {
        assert_eq!(std::mem::size_of::<ExprKind>(), 32);
        assert_eq!(std::mem::size_of::<Expr>(), 48);
        assert_eq!(std::mem::size_of::<AttrDef>(), 64);
        assert_eq!(std::mem::size_of::<Formal>(), 24);
    }
}
