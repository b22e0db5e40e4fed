//! Values, thunks and environments.
//!
//! Memory strategy: reference counting (`Rc`), no tracing GC. Values are immutable once made;
//! thunks are shared cells that are overwritten with their value when forced (black-holed
//! while being forced, which is how infinite recursion is detected). Cycles through recursive
//! sets are not freed before the evaluation ends; an evaluation is one process, so this bounds
//! the leak by the evaluation's own size. Parsed files live for the whole evaluation.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use firn_syntax::ast::{Expr, Symbol};

/// A string with its context (the store paths it refers to).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NixString {
    pub s: Rc<str>,
    pub context: Rc<Vec<String>>,
}

impl NixString {
    pub fn plain(s: impl Into<Rc<str>>) -> NixString {
        NixString {
            s: s.into(),
            context: Rc::new(Vec::new()),
        }
    }

    /// A string with the given context (sorted and made unique here).
    pub fn with_context(s: impl Into<Rc<str>>, mut ctx: Vec<String>) -> NixString {
        ctx.sort_unstable();
        ctx.dedup();
        NixString {
            s: s.into(),
            context: Rc::new(ctx),
        }
    }
}

/// An attribute set's attributes: names (by their text, so iteration is in Nix's order) to
/// thunks.
pub type AttrMap = BTreeMap<Rc<str>, Thunk>;

/// Where a set was made from syntax, for attribute positions (`unsafeGetAttrPos`).
#[derive(Clone, Copy, Debug)]
pub enum Origin {
    Attrs(&'static firn_syntax::ast::Attrs),
    /// `builtins.functionArgs` of a lambda with these formals.
    Formals(&'static firn_syntax::ast::Formals),
}

/// An attribute set: its attributes (it derefs to them) and, for a set made from syntax,
/// that syntax.
#[derive(Clone, Default)]
pub struct AttrSet {
    pub map: AttrMap,
    pub origin: Option<Origin>,
}

impl AttrSet {
    pub fn with_origin(map: AttrMap, origin: Origin) -> AttrSet {
        AttrSet {
            map,
            origin: Some(origin),
        }
    }
}

impl std::ops::Deref for AttrSet {
    type Target = AttrMap;
    fn deref(&self) -> &AttrMap {
        &self.map
    }
}

impl std::ops::DerefMut for AttrSet {
    fn deref_mut(&mut self) -> &mut AttrMap {
        &mut self.map
    }
}

impl From<AttrMap> for AttrSet {
    fn from(map: AttrMap) -> AttrSet {
        AttrSet { map, origin: None }
    }
}

#[derive(Clone)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(NixString),
    Path(Rc<str>),
    Attrs(Rc<AttrSet>),
    List(Rc<Vec<Thunk>>),
    Lambda(Rc<Lambda>),
    PrimOp(Rc<PrimOp>),
    /// A builtin applied to fewer arguments than it takes.
    PrimOpApp(Rc<PrimOp>, Rc<Vec<Thunk>>),
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a Boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a float",
            Value::String(_) => "a string",
            Value::Path(_) => "a path",
            Value::Attrs(_) => "a set",
            Value::List(_) => "a list",
            Value::Lambda(_) | Value::PrimOp(_) | Value::PrimOpApp(..) => "a function",
        }
    }

    /// `builtins.typeOf`.
    pub fn type_of(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::String(_) => "string",
            Value::Path(_) => "path",
            Value::Attrs(_) => "set",
            Value::List(_) => "list",
            Value::Lambda(_) | Value::PrimOp(_) | Value::PrimOpApp(..) => "lambda",
        }
    }

    pub fn str(s: impl Into<Rc<str>>) -> Value {
        Value::String(NixString::plain(s))
    }
}

/// A user function and the environment it closes over.
pub struct Lambda {
    pub expr: &'static Expr,
    pub env: Env,
}

/// A builtin function.
pub struct PrimOp {
    pub name: &'static str,
    pub arity: usize,
    pub f: crate::builtins::PrimFn,
}

pub enum ThunkState {
    Pending(&'static Expr, Env),
    /// A thunk that is computed by applying a function (lazy builtins like `map`).
    Apply(Thunk, Thunk),
    /// An attribute of another thunk's set (`inherit (e) x`).
    Select(Thunk, Rc<str>),
    Forcing,
    Done(Value),
}

/// A lazily computed value, shared.
#[derive(Clone)]
pub struct Thunk(pub Rc<RefCell<ThunkState>>);

impl Thunk {
    pub fn value(v: Value) -> Thunk {
        Thunk(Rc::new(RefCell::new(ThunkState::Done(v))))
    }
    pub fn pending(e: &'static Expr, env: Env) -> Thunk {
        Thunk(Rc::new(RefCell::new(ThunkState::Pending(e, env))))
    }
    pub fn apply(f: Thunk, arg: Thunk) -> Thunk {
        Thunk(Rc::new(RefCell::new(ThunkState::Apply(f, arg))))
    }
    /// The value if already computed.
    pub fn peek(&self) -> Option<Value> {
        match &*self.0.borrow() {
            ThunkState::Done(v) => Some(v.clone()),
            _ => None,
        }
    }
}

/// The bindings of one lexical scope: a vector sorted by symbol (one allocation, binary
/// search), which suits both one-argument lambdas and large `let`s.
#[derive(Default)]
pub struct VarMap(Vec<(Symbol, Thunk)>);

impl VarMap {
    pub fn get(&self, s: &Symbol) -> Option<&Thunk> {
        self.0
            .binary_search_by(|(k, _)| k.cmp(s))
            .ok()
            .map(|i| &self.0[i].1)
    }

    pub fn insert(&mut self, s: Symbol, t: Thunk) {
        match self.0.binary_search_by(|(k, _)| k.cmp(&s)) {
            Ok(i) => self.0[i].1 = t,
            Err(i) => self.0.insert(i, (s, t)),
        }
    }
}

impl From<BTreeMap<Symbol, Thunk>> for VarMap {
    fn from(m: BTreeMap<Symbol, Thunk>) -> VarMap {
        VarMap(m.into_iter().collect())
    }
}

/// A scope: lexical bindings, or the set of a `with`.
pub enum Scope {
    Vars(RefCell<VarMap>),
    With(Thunk),
}

/// A chain of scopes.
#[derive(Clone)]
pub struct Env(pub Option<Rc<(Scope, Env)>>);

impl Env {
    pub fn empty() -> Env {
        Env(None)
    }
    pub fn push(&self, s: Scope) -> Env {
        Env(Some(Rc::new((s, self.clone()))))
    }
}
