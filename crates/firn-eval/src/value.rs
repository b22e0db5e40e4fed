//! Values, thunks and environments.
//!
//! Memory strategy: reference counting, no tracing GC. Values are immutable once made;
//! thunks are shared cells that are overwritten with their value when forced (black-holed
//! while being forced, which is how infinite recursion is detected). Cycles through recursive
//! sets are not freed before the evaluation ends; an evaluation is one process, so this bounds
//! the leak by the evaluation's own size. Parsed files live for the whole evaluation.
//!
//! The layout is kept compact because real evaluations hold millions of thunks and scopes
//! (the `compact_layout` test pins it): a [`Value`] is 24 bytes, a thunk is one count and a
//! 24-byte state ([`crate::shared::Shared`], no weak count, no `RefCell` flag), strings and
//! attribute names are thin 8-byte handles ([`RcStr`]), so an attribute is 16 bytes.

use crate::rc_str::RcStr;
use std::cell::UnsafeCell;
use std::collections::BTreeMap;
use std::mem::ManuallyDrop;
use std::ptr;
use std::rc::Rc;

use firn_syntax::ast::{Expr, Symbol};

use crate::shared::Shared;

/// A string with its context (the store paths it refers to).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NixString {
    pub s: RcStr,
    pub context: Rc<Vec<RcStr>>,
}

impl NixString {
    pub fn plain(s: impl Into<RcStr>) -> NixString {
        thread_local! {
            // Most strings have no context: they share one empty list.
            static NO_CONTEXT: Rc<Vec<RcStr>> = Rc::new(Vec::new());
        }
        NixString {
            s: s.into(),
            context: NO_CONTEXT.with(Rc::clone),
        }
    }

    /// A string with the given context (sorted and made unique here).
    pub fn with_context(s: impl Into<RcStr>, mut ctx: Vec<RcStr>) -> NixString {
        if ctx.is_empty() {
            return NixString::plain(s);
        }
        ctx.sort_unstable();
        ctx.dedup();
        NixString {
            s: s.into(),
            context: Rc::new(ctx),
        }
    }
}

/// An attribute set's attributes: names to thunks, in one vector sorted by name (so
/// iteration is in Nix's order). As CppNix's `Bindings`: one allocation of exactly the
/// entries (most sets are small), lookups by binary search, `//` a linear merge. Inserting
/// in order appends; for names in any order build with [`AttrMap::from_unsorted`].
#[derive(Clone, Default)]
pub struct AttrMap(Vec<(RcStr, Thunk)>);

/// Which of several entries with one name [`AttrMap::from_unsorted`] keeps.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    First,
    Last,
}

/// The bit of a remembered position ([`AttrMap::get_hinted`]) that says the name was
/// missing there.
const MISSED: u32 = 0x8000;

impl AttrMap {
    pub fn new() -> AttrMap {
        AttrMap(Vec::new())
    }

    pub fn with_capacity(n: usize) -> AttrMap {
        AttrMap(Vec::with_capacity(n))
    }

    /// A map from entries in any order; of equal names, `keep` says which one stays.
    pub fn from_unsorted(mut v: Vec<(RcStr, Thunk)>, keep: Keep) -> AttrMap {
        // Entries often come in order already (`listToAttrs (map f (attrNames s))`): then
        // one pass over them, stopping at the first pair out of order, is all.
        if v.windows(2).all(|w| w[0].0 < w[1].0) {
            return AttrMap(v);
        }
        if keep == Keep::Last {
            v.reverse();
        }
        // Stable: of equal names, the first in `v` stays first.
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v.dedup_by(|later, earlier| later.0 == earlier.0);
        AttrMap(v)
    }

    /// A map from entries already sorted by name, without duplicates.
    pub fn from_sorted(v: Vec<(RcStr, Thunk)>) -> AttrMap {
        debug_assert!(v.windows(2).all(|w| w[0].0 < w[1].0));
        AttrMap(v)
    }

    fn find(&self, k: &str) -> Result<usize, usize> {
        self.0
            .binary_search_by(|(n, _)| crate::rc_str::cmp_str(n, k))
    }

    pub fn get<K: AsRef<str> + ?Sized>(&self, k: &K) -> Option<&Thunk> {
        self.find(k.as_ref()).ok().map(|i| &self.0[i].1)
    }

    /// [`Self::get`] for a name held as an [`RcStr`]. Names written in the source share
    /// one handle per symbol (`Evaluator::name_rc`), in the sets made from syntax and in the
    /// selections of the code, so in a small set the same handle is usually found by
    /// address alone, without reading the strings.
    #[inline]
    pub fn get_rc(&self, k: &RcStr) -> Option<&Thunk> {
        self.index_rc(k).map(|i| &self.0[i].1)
    }

    #[inline]
    fn index_rc(&self, k: &RcStr) -> Option<usize> {
        self.locate_rc(k).ok()
    }

    /// [`Self::get_rc`] trying first the entry at `hint` (an index plus one, 0 for none),
    /// where the same piece of code found the name last time: the thunk and its index. For
    /// a variable of a `with`, whose set is usually the same large one (`with builtins;`,
    /// `with lib;`) where a search compares names at every step.
    #[inline]
    pub fn get_rc_hinted(&self, k: &RcStr, hint: usize) -> Option<(usize, &Thunk)> {
        if let Some((n, t)) = hint.checked_sub(1).and_then(|i| self.0.get(i)) {
            if n == k {
                return Some((hint - 1, t));
            }
        }
        let i = self.index_rc(k)?;
        Some((i, &self.0[i].1))
    }

    /// [`Self::get_rc`] for a name that is often missing (a lambda's formal with a default
    /// is usually not passed): in a small set a name not found by address is looked for by
    /// its length and bytes in one more pass over the names, cheaper there than a binary
    /// search's ordered comparisons.
    #[inline]
    pub fn get_rc_or_missing(&self, k: &RcStr) -> Option<&Thunk> {
        if self.0.len() > 16 {
            return self.find(k.as_str()).ok().map(|i| &self.0[i].1);
        }
        let found = match self.0.iter().find(|(n, _)| RcStr::ptr_eq(n, k)) {
            Some(e) => Some(e),
            None => {
                let k = k.as_str();
                self.0.iter().find(|(n, _)| n.as_str() == k)
            }
        };
        found.map(|(_, t)| t)
    }

    /// Where `k` is (`Ok`), or would go (`Err`): in a small set first by address (names from
    /// the source share one handle), then by a search of the names.
    #[inline(always)]
    fn locate_rc(&self, k: &RcStr) -> Result<usize, usize> {
        if self.0.len() <= 16 {
            if let Some(i) = self.0.iter().position(|(n, _)| RcStr::ptr_eq(n, k)) {
                return Ok(i);
            }
        }
        self.find(k.as_str())
    }

    /// [`Self::get_rc`] with a remembered position: half `slot` (0 or 1) of `hints` holds
    /// where the name was found the last time this piece of code looked (plus one), or,
    /// with [`MISSED`] set, where it would have been (plus one), which is checked first.
    /// The same selection usually meets the same set (`builtins.x`, `lib.x`) or sets of
    /// one shape, so most lookups then read a single entry (two for a name that is
    /// missing, as `x.a or d` often finds). A stale hint costs one or two comparisons.
    /// Always inlined: selections and `?` call it from the evaluator's hot functions, where
    /// a call would cost more than the look.
    #[inline(always)]
    pub fn get_hinted(
        &self,
        k: &RcStr,
        hints: &std::cell::Cell<u32>,
        slot: usize,
    ) -> Option<&Thunk> {
        self.index_hinted(k, hints, slot).map(|i| &self.0[i].1)
    }

    /// [`Self::get_hinted`] with the name as the map holds it.
    #[inline]
    pub fn entry_hinted(
        &self,
        k: &RcStr,
        hints: &std::cell::Cell<u32>,
        slot: usize,
    ) -> Option<&(RcStr, Thunk)> {
        self.index_hinted(k, hints, slot).map(|i| &self.0[i])
    }

    #[inline(always)]
    fn index_hinted(&self, k: &RcStr, hints: &std::cell::Cell<u32>, slot: usize) -> Option<usize> {
        let shift = 16 * (slot as u32 & 1);
        let h = (hints.get() >> shift) & 0xffff;
        if h != 0 && h & MISSED == 0 {
            if let Some((n, _)) = self.0.get(h as usize - 1) {
                if n == k {
                    return Some(h as usize - 1);
                }
            }
        } else if h != 0 && self.missing_at(k.as_str(), (h & !MISSED) as usize - 1) {
            return None;
        }
        let found = self.locate_rc(k);
        let (i, bit) = match found {
            Ok(i) => (i, 0),
            Err(i) => (i, MISSED),
        };
        if i + 1 < MISSED as usize {
            hints.set((hints.get() & !(0xffff << shift)) | ((i as u32 + 1) | bit) << shift);
        }
        found.ok()
    }

    /// Whether `k` is not in the map because it would go at position `i`: the entry
    /// before sorts below it and the entry there (if any) above it.
    #[inline(always)]
    fn missing_at(&self, k: &str, i: usize) -> bool {
        use std::cmp::Ordering::{Greater, Less};
        if i > self.0.len() {
            return false;
        }
        let below = i == 0 || crate::rc_str::cmp_str(&self.0[i - 1].0, k) == Less;
        below
            && self
                .0
                .get(i)
                .is_none_or(|(n, _)| crate::rc_str::cmp_str(n, k) == Greater)
    }

    /// Where name `k` is among [`Self::entries`], if there.
    pub fn position<K: AsRef<str> + ?Sized>(&self, k: &K) -> Option<usize> {
        self.find(k.as_ref()).ok()
    }

    /// The entries, sorted by name: for builtins that copy runs of them whole.
    pub fn entries(&self) -> &[(RcStr, Thunk)] {
        &self.0
    }

    pub fn contains_key<K: AsRef<str> + ?Sized>(&self, k: &K) -> bool {
        self.find(k.as_ref()).is_ok()
    }

    /// Set `k` to `t` (replacing, as a map does); returns the old thunk.
    pub fn insert(&mut self, k: RcStr, t: Thunk) -> Option<Thunk> {
        if self.0.last().is_none_or(|(last, _)| *last < k) {
            self.0.push((k, t));
            return None;
        }
        match self.find(&k) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, t)),
            Err(i) => {
                self.0.insert(i, (k, t));
                None
            }
        }
    }

    pub fn remove<K: AsRef<str> + ?Sized>(&mut self, k: &K) -> Option<Thunk> {
        self.find(k.as_ref()).ok().map(|i| self.0.remove(i).1)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&RcStr, &Thunk)> + ExactSizeIterator {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &RcStr> + ExactSizeIterator {
        self.0.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &Thunk> + ExactSizeIterator {
        self.0.iter().map(|(_, v)| v)
    }

    /// `self // other`: `other` winning. Both are sorted, so the result is their merge; when
    /// one side is much smaller (`attrs // { x = ...; }`, the common case), each of its
    /// names is found in the larger side by binary search and the runs between them are
    /// copied whole, without comparing every name of the larger side.
    pub fn update(&self, other: &AttrMap) -> AttrMap {
        let (a, b) = (&self.0, &other.0);
        if b.len() * 4 <= a.len() {
            return AttrMap(update_few(a, b.len(), b.iter().cloned(), true));
        }
        if a.len() * 4 <= b.len() {
            return AttrMap(update_few(b, a.len(), a.iter().cloned(), false));
        }
        let mut out = Vec::with_capacity(a.len() + b.len());
        let (mut i, mut j) = (0, 0);
        while i < a.len() && j < b.len() {
            match a[i].0.cmp(&b[j].0) {
                std::cmp::Ordering::Less => {
                    out.push(a[i].clone());
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    out.push(b[j].clone());
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    out.push(b[j].clone());
                    i += 1;
                    j += 1;
                }
            }
        }
        out.extend_from_slice(&a[i..]);
        out.extend_from_slice(&b[j..]);
        AttrMap(out)
    }

    /// [`Self::update`] with the right side's `n` entries given in name order (each name
    /// once) as they are made, by [`update_few`].
    pub fn update_sorted(&self, n: usize, right: impl Iterator<Item = (RcStr, Thunk)>) -> AttrMap {
        AttrMap(update_few(&self.0, n, right, true))
    }
}

/// [`AttrMap::update`] of the entries `many` and the (much fewer, `n`) entries `few`, in
/// name order: each of `few` is found in `many` by binary search from where the last one
/// was, and the runs of `many` between them copied whole. `few_wins`: whether `few` is the
/// right side (its entries replace those of `many` with equal names) or the left (they are
/// dropped for them). Out of line, so that the merge of two sets of like sizes keeps the
/// code it had.
#[inline(never)]
fn update_few(
    many: &[(RcStr, Thunk)],
    n: usize,
    few: impl Iterator<Item = (RcStr, Thunk)>,
    few_wins: bool,
) -> Vec<(RcStr, Thunk)> {
    let mut out = Vec::with_capacity(many.len() + n);
    let mut i = 0;
    for e in few {
        match search_from(many, i, &e.0) {
            Ok(k) => {
                out.extend_from_slice(&many[i..k]);
                if few_wins {
                    out.push(e);
                    i = k + 1;
                } else {
                    i = k;
                }
            }
            Err(k) => {
                out.extend_from_slice(&many[i..k]);
                out.push(e);
                i = k;
            }
        }
    }
    out.extend_from_slice(&many[i..]);
    out
}

/// Where name `k` is (`Ok`) or would go (`Err`) in the sorted entries `v`, searching from
/// index `from` on (the names before it are known to sort below `k`).
#[inline]
fn search_from(v: &[(RcStr, Thunk)], from: usize, k: &RcStr) -> Result<usize, usize> {
    match v[from..].binary_search_by(|(n, _)| n.cmp(k)) {
        Ok(i) => Ok(from + i),
        Err(i) => Err(from + i),
    }
}

impl FromIterator<(RcStr, Thunk)> for AttrMap {
    /// As a map collects: of equal names the last stays.
    fn from_iter<I: IntoIterator<Item = (RcStr, Thunk)>>(it: I) -> AttrMap {
        AttrMap::from_unsorted(it.into_iter().collect(), Keep::Last)
    }
}

impl Extend<(RcStr, Thunk)> for AttrMap {
    fn extend<I: IntoIterator<Item = (RcStr, Thunk)>>(&mut self, it: I) {
        for (k, v) in it {
            self.insert(k, v);
        }
    }
}

impl IntoIterator for AttrMap {
    type Item = (RcStr, Thunk);
    type IntoIter = std::vec::IntoIter<(RcStr, Thunk)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a AttrMap {
    type Item = (&'a RcStr, &'a Thunk);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (RcStr, Thunk)>,
        fn(&'a (RcStr, Thunk)) -> (&'a RcStr, &'a Thunk),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

/// Where a set was made from syntax, for attribute positions (`unsafeGetAttrPos`, `--xml`,
/// the frames of derivation attributes). For every name the set has, the origin gives the
/// position of its definition or none; what it gives for other names does not matter.
#[derive(Clone, Debug)]
pub enum Origin {
    Attrs(&'static firn_syntax::ast::Attrs),
    /// `builtins.functionArgs` of a lambda with these formals.
    Formals(&'static firn_syntax::ast::Formals),
    /// `x // y` where `y`'s origin names exactly `y`'s attributes: a name it knows is `y`'s,
    /// the others are `x`'s.
    Update(Rc<UpdateOrigin>),
    /// Positions of names not written in the syntax: those a set literal makes dynamically,
    /// and those of `listToAttrs` (each its pair's `value`, as in CppNix).
    Table(Rc<PosTable>),
    /// `x // y` where `y`'s origin also knows names `y` lost (to `removeAttrs`), and both
    /// sides are too large for a table of one side's positions: a name `y` has is looked up
    /// in `y`'s origin, the others in `x`'s.
    Sides(Rc<SidesOrigin>),
}

impl Origin {
    /// How many updates deep this origin is (see [`UpdateOrigin::depth`]).
    pub fn depth(&self) -> u8 {
        match self {
            Origin::Update(u) => u.depth,
            Origin::Sides(s) => s.depth,
            Origin::Attrs(_) | Origin::Formals(_) | Origin::Table(_) => 0,
        }
    }
}

/// The two sides of an update that are told apart by the right side's names
/// ([`Origin::Sides`]).
pub struct SidesOrigin {
    pub left: Origin,
    pub right: Origin,
    /// The right side (its names; its values are the result's too).
    pub right_set: Rc<AttrSet>,
    /// As [`UpdateOrigin::depth`].
    pub depth: u8,
}

impl std::fmt::Debug for SidesOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SidesOrigin")
            .field("left", &self.left)
            .field("right", &self.right)
            .field("right_names", &self.right_set.len())
            .field("depth", &self.depth)
            .finish()
    }
}

/// Names (sorted, each once) with the offset of their definition ([`Origin::Table`]).
#[derive(Debug)]
pub struct PosTable(Box<[(RcStr, u32)]>);

impl PosTable {
    /// The table of `entries`, in any order; of equal names, the first is kept.
    pub fn new(mut entries: Vec<(RcStr, u32)>) -> PosTable {
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries.dedup_by(|later, earlier| later.0 == earlier.0);
        PosTable(entries.into_boxed_slice())
    }

    /// A table of entries already sorted by name, without duplicates.
    pub fn from_sorted(entries: Vec<(RcStr, u32)>) -> PosTable {
        debug_assert!(entries.windows(2).all(|w| w[0].0 < w[1].0));
        PosTable(entries.into_boxed_slice())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Where `name` was defined.
    pub fn get(&self, name: &str) -> Option<u32> {
        self.0
            .binary_search_by(|(n, _)| crate::rc_str::cmp_str(n, name))
            .ok()
            .map(|i| self.0[i].1)
    }

    pub fn names(&self) -> impl Iterator<Item = &RcStr> {
        self.0.iter().map(|(n, _)| n)
    }

    /// The names with their offsets, sorted by name.
    pub fn entries(&self) -> &[(RcStr, u32)] {
        &self.0
    }
}

/// The origins of the two sides of an update ([`Origin::Update`]).
#[derive(Debug)]
pub struct UpdateOrigin {
    pub left: Origin,
    pub right: Origin,
    /// How many updates deep this is (on either side): the chain a fold of updates makes
    /// is cut after [`UpdateOrigin::MAX_DEPTH`] (the older names then have no position), so
    /// that a set's origin is a small tree, looked up without deep recursion.
    pub depth: u8,
    /// Whether the names it knows are exactly those of the set it was made for (`left`'s
    /// exactly `x`'s), and how many that set has: a set with as many names and this origin
    /// (only ever passed on to sets with fewer) is that set.
    pub exact: bool,
    pub len: u32,
}

impl UpdateOrigin {
    pub const MAX_DEPTH: u8 = 16;
}

// One is made for most updates: with its counts behind the reference-count header it fills
// a 56-byte block of the allocator.
const _: () = assert!(std::mem::size_of::<UpdateOrigin>() <= 40);

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

/// A value. The tag is a whole word (`repr(u64)`), so every payload starts at byte 8 and
/// bytes 1-7 are padding in every variant. With the default one-byte tag, `Bool`'s payload
/// sat at byte 1 and every copy of a value (into a thunk, out of one) moved bytes 1-7 as two
/// overlapping 4-byte pieces; read back at other offsets, those stores could not be
/// forwarded to the loads, and the copies stalled. Same size (24 bytes) and the same niche
/// for `ThunkState`; fewer instructions by under 1%, but 3-6% less wall time on the package
/// set and 7-18% on a `foldl'` over a million elements (A/B, alternating runs).
#[derive(Clone)]
#[repr(u64)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(NixString),
    Path(RcStr),
    Attrs(Rc<AttrSet>),
    List(Rc<Vec<Thunk>>),
    /// A closure, held in the value itself (making one allocates nothing).
    Lambda(Lambda),
    PrimOp(Rc<PrimOp>),
    /// A builtin applied to fewer arguments than it takes.
    PrimOpApp(Rc<PrimOp>, Rc<Vec<Thunk>>),
}

impl Value {
    /// Whether the value owns nothing (null, a Boolean, a number): it is copied bitwise and
    /// dropping it does nothing.
    #[inline(always)]
    pub fn is_scalar(&self) -> bool {
        matches!(
            self,
            Value::Null | Value::Bool(_) | Value::Int(_) | Value::Float(_)
        )
    }

    /// [`Clone::clone`] with null, Booleans and numbers copied in place: for the places
    /// where the value is usually one (operands of arithmetic and comparisons), where the
    /// call of the derived `clone` costs more than the copy. Elsewhere (most values are
    /// sets, strings, functions) the check would only add to the call.
    #[inline(always)]
    pub fn clone_scalar_first(&self) -> Value {
        match self {
            Value::Null => Value::Null,
            Value::Bool(b) => Value::Bool(*b),
            Value::Int(i) => Value::Int(*i),
            Value::Float(f) => Value::Float(*f),
            _ => self.clone(),
        }
    }

    /// Drop the value: a scalar without a call of the drop glue, which the compiler keeps
    /// out of line (it is large) even where the value is known to be an integer. For the
    /// evaluator's hot paths, where most values dropped are scalars.
    #[inline(always)]
    pub fn discard(self) {
        if self.is_scalar() {
            std::mem::forget(self);
        } else {
            drop(self);
        }
    }

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

    pub fn str(s: impl Into<RcStr>) -> Value {
        Value::String(NixString::plain(s))
    }
}

/// A user function and the environment it closes over (16 bytes: a value holds it inline).
#[derive(Clone)]
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
    /// A function applied to an integer (`genList`'s elements): the argument is made only
    /// when the element is computed, so a list of n elements holds n cells, not 2n.
    ApplyIndex(Thunk, i64),
    /// An attribute of another thunk's set (`inherit (e) x`).
    Select(Thunk, Symbol),
    Forcing,
    Done(Value),
}

/// [`Thunk::applied_site`]: the thunk is no application (offsets start at 1).
pub const NOT_APPLIED: u32 = 0;
/// [`Thunk::applied_site`]: the function applied has no known position.
pub const NO_SITE: u32 = u32::MAX;

/// A thunk's state, changed in place when it is forced. No reference into the cell ever
/// leaves [`Thunk`]'s methods: they copy a value out or swap the whole state, and neither
/// runs evaluator code while the cell is being accessed. This saves `RefCell`'s flag (and
/// its checks) on the most numerous object of an evaluation.
pub struct ThunkCell(UnsafeCell<ManuallyDrop<ThunkState>>);

impl ThunkCell {
    /// The state (`ManuallyDrop` is transparent: see the `Drop` below for why it is there).
    #[inline(always)]
    fn state(&self) -> *mut ThunkState {
        self.0.get().cast()
    }
}

impl Drop for ThunkCell {
    /// Many thunks freed hold a computed scalar (an integer bound to a lambda's argument,
    /// a fold's accumulator): that state owns nothing, so leaving it undropped frees
    /// nothing less, and saves the call of the state's drop glue (kept out of line).
    #[inline(always)]
    fn drop(&mut self) {
        let state = self.0.get_mut();
        if let ThunkState::Done(v) = &**state {
            if v.is_scalar() {
                return;
            }
        }
        // SAFETY: the cell is being dropped, and this is the only place its state is
        // dropped; nothing uses it afterwards.
        unsafe { ManuallyDrop::drop(state) }
    }
}

/// A lazily computed value, shared.
#[derive(Clone)]
pub struct Thunk(Shared<ThunkCell>);

impl Thunk {
    #[inline]
    pub fn new(state: ThunkState) -> Thunk {
        Thunk::new_with(|| state)
    }
    /// A thunk of the state `make` returns, made in the block (see [`Shared::new_with`]):
    /// for the constructors below, whose states are made here, not by their callers.
    #[inline(always)]
    fn new_with(make: impl FnOnce() -> ThunkState) -> Thunk {
        Thunk(Shared::new_with(|| {
            ThunkCell(UnsafeCell::new(ManuallyDrop::new(make())))
        }))
    }
    #[inline]
    pub fn value(v: Value) -> Thunk {
        Thunk::new_with(|| ThunkState::Done(v))
    }
    /// `Thunk::value(Value::Int(i))`, with the integer stored into the block directly (a
    /// value made first is copied over in 16-byte pieces that stall on the narrower stores
    /// that made it; see [`Shared::new_with`]): `genList`'s elements' arguments.
    #[inline(always)]
    pub fn int(i: i64) -> Thunk {
        Thunk::new_with(|| ThunkState::Done(Value::Int(i)))
    }
    #[inline]
    pub fn pending(e: &'static Expr, env: Env) -> Thunk {
        Thunk::new_with(|| ThunkState::Pending(e, env))
    }
    pub fn apply(f: Thunk, arg: Thunk) -> Thunk {
        Thunk::new_with(|| ThunkState::Apply(f, arg))
    }
    /// `f i`, computed when forced (see [`ThunkState::ApplyIndex`]).
    pub fn apply_index(f: Thunk, i: i64) -> Thunk {
        Thunk::new_with(|| ThunkState::ApplyIndex(f, i))
    }
    /// Make this handle's thunk hold `v`: the cell itself when the handle is its only one
    /// (nothing else can see it change; its old state, usually a computed scalar, is
    /// dropped), else a new cell in the handle's place. For a binding rebound on every call
    /// (`foldl'`'s accumulator), where a new cell would be one allocation more per element.
    ///
    /// # Safety
    /// `*v` is moved in, a word at a time (it is a result just returned: see
    /// `crate::words`): the caller forgets its owner.
    #[inline(always)]
    pub unsafe fn rebind_value(&mut self, v: &Value) {
        // SAFETY: the caller gives up `*v` (see above).
        let v = unsafe { crate::words::copy_words(v) };
        match Shared::get_mut(&mut self.0) {
            Some(cell) => {
                let old =
                    std::mem::replace(cell.0.get_mut(), ManuallyDrop::new(ThunkState::Done(v)));
                match ManuallyDrop::into_inner(old) {
                    ThunkState::Done(old) => old.discard(),
                    other => drop(other),
                }
            }
            None => *self = Thunk::value(v),
        }
    }
    /// The value if already computed.
    #[inline]
    pub fn peek(&self) -> Option<Value> {
        // SAFETY: see `ThunkCell`: a shared look that only clones (cloning a value
        // touches reference counts, never a thunk's state).
        match unsafe { &*self.0.state() } {
            ThunkState::Done(v) => Some(v.clone()),
            _ => None,
        }
    }
    /// The value if it is computed and a lambda whose expression `pred` accepts: cloned
    /// as a lambda (one count raised), not through the general [`Value::clone`].
    #[inline]
    pub fn lambda_where(&self, pred: impl FnOnce(&'static Expr) -> bool) -> Option<Lambda> {
        // SAFETY: see `ThunkCell`: a shared look; `pred` reads only the (immutable,
        // static) syntax and the clone touches a scope's count, never a thunk's state.
        match unsafe { &*self.0.state() } {
            ThunkState::Done(Value::Lambda(l)) if pred(l.expr) => Some(l.clone()),
            _ => None,
        }
    }
    /// `f` applied to the attributes of the value if it is computed and a set: a look at
    /// them without a handle taken on the set (for the first step of a selection or `?`).
    /// `f` must only read the map and clone handles (as [`Self::lambda_where`]'s `pred`).
    #[inline(always)]
    pub fn with_attrs<R>(&self, f: impl FnOnce(&Rc<AttrSet>) -> R) -> Option<R> {
        // SAFETY: see `ThunkCell`: a shared look; `f` reads the map and at most clones
        // handles (counts, never a thunk's state).
        match unsafe { &*self.0.state() } {
            ThunkState::Done(Value::Attrs(a)) => Some(f(a)),
            _ => None,
        }
    }
    /// The value if it is computed and a builtin (one count raised), without the general
    /// [`Value::clone`].
    #[inline]
    pub fn peek_primop(&self) -> Option<Rc<PrimOp>> {
        // SAFETY: as `peek`: a shared look whose clone touches the builtin's count only.
        match unsafe { &*self.0.state() } {
            ThunkState::Done(Value::PrimOp(p)) => Some(p.clone()),
            _ => None,
        }
    }
    /// The value if it is computed and a list (one count raised), without the general
    /// [`Value::clone`].
    #[inline(always)]
    pub fn peek_list(&self) -> Option<Rc<Vec<Thunk>>> {
        // SAFETY: as `peek`: a shared look whose clone touches the list's count only.
        match unsafe { &*self.0.state() } {
            ThunkState::Done(Value::List(l)) => Some(l.clone()),
            _ => None,
        }
    }
    /// [`Self::peek`] for a value that is usually a scalar (see
    /// [`Value::clone_scalar_first`]).
    #[inline(always)]
    pub fn peek_scalar_first(&self) -> Option<Value> {
        // SAFETY: as `peek`.
        match unsafe { &*self.0.state() } {
            ThunkState::Done(v) => Some(v.clone_scalar_first()),
            _ => None,
        }
    }
    /// The value if it is computed and an integer (copied out, no handle taken).
    #[inline(always)]
    pub fn peek_int(&self) -> Option<i64> {
        // SAFETY: as `peek`: a shared look that copies a number out.
        match unsafe { &*self.0.state() } {
            ThunkState::Done(Value::Int(i)) => Some(*i),
            _ => None,
        }
    }
    /// The lambda and argument of an application not computed yet whose function is a
    /// computed lambda (`mapAttrs`'s `f name`, the function of each value's application),
    /// handles cloned: so that forcing the outer application can make both at once.
    #[inline]
    pub fn applied_lambda(&self) -> Option<(Lambda, Thunk)> {
        // SAFETY: see `ThunkCell`: shared looks whose clones touch counts only.
        match unsafe { &*self.0.state() } {
            ThunkState::Apply(g, x) => match unsafe { &*g.0.state() } {
                ThunkState::Done(Value::Lambda(l)) => Some((l.clone(), x.clone())),
                _ => None,
            },
            _ => None,
        }
    }
    /// For the errors of a call of this thunk's value: [`NOT_APPLIED`] when it is not an
    /// application not computed yet; else the position of the function it applies when that
    /// is a computed lambda (current Nix's `determinePos`), or [`NO_SITE`].
    #[inline]
    pub fn applied_site(&self) -> u32 {
        // SAFETY: see `ThunkCell`: shared looks that copy a number out.
        match unsafe { &*self.0.state() } {
            ThunkState::Apply(g, _) | ThunkState::ApplyIndex(g, _) => {
                match unsafe { &*g.0.state() } {
                    ThunkState::Done(Value::Lambda(l)) => l.expr.span.start,
                    _ => NO_SITE,
                }
            }
            _ => NOT_APPLIED,
        }
    }
    /// Put `state` in and return the state it replaces.
    #[inline]
    pub fn replace(&self, state: ThunkState) -> ThunkState {
        // SAFETY: see `ThunkCell`: no other reference into the cell exists while this
        // swap runs (the old state is moved out and dropped by the caller, later).
        unsafe { std::mem::replace(&mut *self.0.state(), state) }
    }
    /// Set the state (the old one is dropped after the cell holds the new one).
    #[inline]
    pub fn set(&self, state: ThunkState) {
        drop(self.replace(state));
    }
    /// Store the value of a thunk being forced (its state is [`ThunkState::Forcing`], which
    /// holds nothing to drop, so the state is overwritten without a drop).
    #[inline]
    pub fn finish(&self, v: Value) {
        let cell = self.0.state();
        // SAFETY: see `ThunkCell`; writing over the state without dropping it is at worst a
        // leak (if it were not `Forcing`), never a double free.
        unsafe {
            debug_assert!(matches!(&*cell, ThunkState::Forcing));
            std::ptr::write(cell, ThunkState::Done(v));
        }
    }
    /// Whether two thunks are the same cell.
    #[inline]
    pub fn ptr_eq(a: &Thunk, b: &Thunk) -> bool {
        Shared::ptr_eq(&a.0, &b.0)
    }
    /// The cell's address (an identity for cycle detection when printing).
    #[inline]
    pub fn addr(&self) -> usize {
        Shared::addr(&self.0)
    }
}

/// The bindings of one lexical scope: a slice sorted by symbol (one allocation, binary
/// search), which suits both one-argument lambdas and large `let`s. It is filled after
/// the scope is made (the bindings of `rec`, `let` and formals' defaults refer to the
/// scope itself); as with [`ThunkCell`], no reference into the cell leaves its methods.
#[derive(Default)]
pub struct VarMap(UnsafeCell<Box<[(Symbol, Thunk)]>>);

impl VarMap {
    /// Bindings already sorted by symbol, without duplicates.
    pub fn from_sorted(v: Vec<(Symbol, Thunk)>) -> VarMap {
        debug_assert!(v.windows(2).all(|w| w[0].0 < w[1].0));
        VarMap(UnsafeCell::new(v.into_boxed_slice()))
    }

    #[inline]
    pub fn get(&self, s: Symbol) -> Option<Thunk> {
        // SAFETY: see the type: the search and the clone of a thunk handle run no
        // evaluator code.
        let v = unsafe { &*self.0.get() };
        v.binary_search_by(|(k, _)| k.cmp(&s))
            .ok()
            .map(|i| v[i].1.clone())
    }

    /// The binding at position `i` if it binds `s` (see `firn_syntax::scope::var_address`).
    #[inline]
    pub fn get_at(&self, i: usize, s: Symbol) -> Option<Thunk> {
        self.get_at_ref(i, s).cloned()
    }

    /// [`Self::get_at`] without taking a handle: for a look at the thunk's value (copied
    /// out at once) or a clone of the handle. The reference must not be kept while
    /// evaluator code runs, which could refill this scope (only scope construction does).
    #[inline]
    pub fn get_at_ref(&self, i: usize, s: Symbol) -> Option<&Thunk> {
        // SAFETY: see the type, and above: the slice is replaced only while the scope is
        // being built, never while a caller holds this reference.
        let v = unsafe { &*self.0.get() };
        match v.get(i) {
            Some((k, t)) if *k == s => Some(t),
            _ => None,
        }
    }

    /// Where thunk `t` (the same one) is bound, if it is.
    pub fn position(&self, t: &Thunk) -> Option<usize> {
        // SAFETY: see the type: a search that runs no evaluator code.
        let v = unsafe { &*self.0.get() };
        v.iter().position(|(_, u)| u.addr() == t.addr())
    }

    /// Replace all bindings (sorted by symbol, without duplicates).
    pub fn set_sorted(&self, v: Vec<(Symbol, Thunk)>) {
        debug_assert!(v.windows(2).all(|w| w[0].0 < w[1].0));
        // SAFETY: see the type; the old bindings are dropped after the swap.
        let old = unsafe { std::mem::replace(&mut *self.0.get(), v.into_boxed_slice()) };
        // Usually the empty slice the scope was made with: it owns nothing, so no call of
        // the drop glue (as `Value::discard`).
        if old.is_empty() {
            std::mem::forget(old);
        } else {
            drop(old);
        }
    }

    /// Rebind `s` if this scope binds it; returns whether it did.
    pub fn replace_existing(&self, s: Symbol, t: Thunk) -> bool {
        // SAFETY: see the type; the old thunk is dropped after the slot holds the new one.
        let v = unsafe { &mut *self.0.get() };
        match v.binary_search_by(|(k, _)| k.cmp(&s)) {
            Ok(i) => {
                let old = std::mem::replace(&mut v[i].1, t);
                drop(old);
                true
            }
            Err(_) => false,
        }
    }
}

impl From<BTreeMap<Symbol, Thunk>> for VarMap {
    fn from(m: BTreeMap<Symbol, Thunk>) -> VarMap {
        VarMap::from_sorted(m.into_iter().collect())
    }
}

/// A scope: lexical bindings, or the set of a `with`.
pub enum Scope {
    Vars(VarMap),
    /// The one binding of a plain lambda's argument (no map to allocate).
    One(Symbol, Thunk),
    With(Thunk),
}

impl Scope {
    /// The lexical binding of `s` in this scope (never looks into a `with`).
    #[inline]
    pub fn get(&self, s: Symbol) -> Option<Thunk> {
        match self {
            Scope::One(n, t) if *n == s => Some(t.clone()),
            Scope::Vars(vars) => vars.get(s),
            _ => None,
        }
    }
}

/// One scope of a chain and the scopes around it.
pub struct EnvNode {
    pub scope: Scope,
    pub parent: Env,
}

/// A chain of scopes.
#[derive(Clone)]
pub struct Env(pub Option<Shared<EnvNode>>);

impl Env {
    pub fn empty() -> Env {
        Env(None)
    }
    #[inline]
    pub fn push(&self, scope: Scope) -> Env {
        Env(Some(Shared::new_with(|| EnvNode {
            scope,
            parent: self.clone(),
        })))
    }
    /// [`Self::push`] of a scope of no bindings yet, filled in place afterwards (a `let`, a
    /// `rec` set, a lambda's formals), made in its block as [`Self::extend`]'s.
    #[inline]
    pub fn push_empty(&self) -> Env {
        Env(Some(Shared::new_with(|| EnvNode {
            scope: Scope::Vars(VarMap::default()),
            parent: self.clone(),
        })))
    }

    /// A scope binding `name = t` (a lambda's argument) pushed onto a chain this one is not
    /// needed for afterwards: the new scope takes over the handle (no count to raise here
    /// and lower when `self` is dropped). Always inlined: it makes the scope of every call
    /// of a one-argument lambda. The scope is made inside [`Shared::new_with`], so its
    /// fields are stored into the block directly.
    #[inline(always)]
    pub fn extend(self, name: Symbol, t: Thunk) -> Env {
        Env(Some(Shared::new_with(|| EnvNode {
            scope: Scope::One(name, t),
            parent: self,
        })))
    }

    /// `self.push(first = a).extend(second = b)`, always inlined: for `Evaluator::call2`,
    /// which binds both arguments of a two-argument lambda on every call (`foldl'`, `sort`),
    /// where the two calls cost as much as the scopes themselves.
    #[inline(always)]
    pub fn push_two(&self, first: Symbol, a: Thunk, second: Symbol, b: Thunk) -> Env {
        let outer = Env(Some(Shared::new_with(|| EnvNode {
            scope: Scope::One(first, a),
            parent: self.clone(),
        })));
        outer.extend(second, b)
    }

    /// Drop this handle, with the innermost `levels` scopes taken apart in place while this
    /// is their last handle: for a call's scopes, dropped as the call returns, where the
    /// generic drop (recursive, so out of line) costs more than the few loads and stores
    /// of a one-binding scope. Any other scope is dropped the usual way, as is the scope
    /// around them when this was its last handle.
    #[inline(always)]
    pub fn discard(self, levels: usize) {
        let mut env = self;
        for _ in 0..levels {
            let Some(node) = env.0 else { return };
            // SAFETY: the scope is dropped in place or its thunk moved out, and the parent
            // moved out: nothing it owns is left behind. Its name is never read, so no
            // load spans the scope's tag and name (see `Shared::take_unique`).
            let taken = unsafe {
                Shared::take_unique(node, |n: *mut EnvNode| {
                    let scope = ptr::addr_of_mut!((*n).scope);
                    match &mut *scope {
                        // A thunk's drop is inline (a count lowered; a computed scalar is
                        // freed without the state's drop glue).
                        Scope::One(_, t) => drop(ptr::read(t)),
                        _ => ptr::drop_in_place(scope),
                    }
                    ptr::read(ptr::addr_of!((*n).parent))
                })
            };
            let Some(parent) = taken else { return };
            env = parent;
        }
        // The scope around them (the closure's environment, usually held elsewhere too):
        // its count lowered in place, not by a call of the generic drop.
        if let Some(node) = env.0 {
            drop(Shared::into_unique(node));
        }
    }

    /// The bindings of the two innermost scopes (one name each, as [`Self::push_two`] makes
    /// them), to rebind, when this is the only handle on both: no closure, thunk or value
    /// made in them is alive, so nothing can see them change. For a caller calling one
    /// two-argument function for each element (`foldl'`), which then keeps its scopes
    /// instead of dropping them and making two new ones per element.
    #[inline(always)]
    pub fn two_bindings_mut(&mut self) -> Option<(&mut Thunk, &mut Thunk)> {
        let EnvNode {
            scope: Scope::One(_, b),
            parent,
        } = Shared::get_mut(self.0.as_mut()?)?
        else {
            return None;
        };
        let EnvNode {
            scope: Scope::One(_, a),
            ..
        } = Shared::get_mut(parent.0.as_mut()?)?
        else {
            return None;
        };
        Some((a, b))
    }

    /// The innermost scope.
    pub fn scope(&self) -> Option<&Scope> {
        self.0.as_deref().map(|n| &n.scope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(names: &[&str]) -> AttrMap {
        AttrMap::from_unsorted(
            names
                .iter()
                .enumerate()
                .map(|(i, n)| (RcStr::from(*n), Thunk::value(Value::Int(i as i64))))
                .collect(),
            Keep::First,
        )
    }

    fn show(m: &AttrMap) -> Vec<(String, i64)> {
        m.iter()
            .map(|(k, t)| match t.peek() {
                Some(Value::Int(i)) => (k.to_string(), i),
                _ => unreachable!("test values are integers"),
            })
            .collect()
    }

    /// `//` on every shape (either side small, both alike, disjoint, overlapping, empty):
    /// the merge of both with the right side winning, as a map would have it.
    #[test]
    fn update_matches_a_map() {
        let names = [
            "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "mm", "z",
        ];
        let mut seed = 7u32;
        let mut pick = |n: usize| -> Vec<&str> {
            let mut v = Vec::new();
            for x in names {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                if (seed >> 16) as usize % names.len() < n {
                    v.push(x);
                }
            }
            v
        };
        for round in 0..200 {
            let (x, y) = (pick(round % 15), pick((round / 15) % 15));
            let (a, b) = (map(&x), map(&y));
            let mut want = std::collections::BTreeMap::new();
            for (k, v) in show(&a)
                .into_iter()
                .chain(show(&b).into_iter().map(|(k, v)| (k, v + 100)))
            {
                want.insert(k, v);
            }
            let b100 = AttrMap::from_sorted(
                b.iter()
                    .map(|(k, t)| match t.peek() {
                        Some(Value::Int(i)) => (k.clone(), Thunk::value(Value::Int(i + 100))),
                        _ => unreachable!(),
                    })
                    .collect(),
            );
            let got = show(&a.update(&b100));
            let want: Vec<_> = want.into_iter().collect();
            assert_eq!(got, want, "{x:?} // {y:?}");
            // The same with the right side's entries given one by one, in name order.
            let sorted =
                a.update_sorted(b100.len(), b100.iter().map(|(k, t)| (k.clone(), t.clone())));
            assert_eq!(show(&sorted), want, "{x:?} // {y:?}, update_sorted");
        }
    }

    /// A map from entries in any order: sorted, of equal names the one `Keep` says; entries
    /// already in order are kept as they are.
    #[test]
    fn from_unsorted_keeps_the_right_one() {
        let e = |v: &[(&str, i64)]| -> Vec<(RcStr, Thunk)> {
            v.iter()
                .map(|(n, i)| (RcStr::from(*n), Thunk::value(Value::Int(*i))))
                .collect()
        };
        let both = [("b", 1), ("a", 2), ("b", 3), ("a", 4)];
        assert_eq!(
            show(&AttrMap::from_unsorted(e(&both), Keep::First)),
            [("a".to_string(), 2), ("b".to_string(), 1)]
        );
        assert_eq!(
            show(&AttrMap::from_unsorted(e(&both), Keep::Last)),
            [("a".to_string(), 4), ("b".to_string(), 3)]
        );
        let dup_in_order = [("a", 1), ("a", 2), ("b", 3)];
        assert_eq!(
            show(&AttrMap::from_unsorted(e(&dup_in_order), Keep::Last)),
            [("a".to_string(), 2), ("b".to_string(), 3)]
        );
        let sorted = [("a", 1), ("b", 2), ("c", 3)];
        assert_eq!(
            show(&AttrMap::from_unsorted(e(&sorted), Keep::First)).len(),
            3
        );
    }

    /// The sizes the memory strategy depends on (see the module header): a change that
    /// grows them costs every thunk of an evaluation.
    #[test]
    fn compact_layout() {
        assert_eq!(std::mem::size_of::<Value>(), 24);
        assert_eq!(std::mem::size_of::<Lambda>(), 16);
        assert_eq!(std::mem::size_of::<ThunkState>(), 24);
        assert_eq!(std::mem::size_of::<Thunk>(), 8);
        assert_eq!(std::mem::size_of::<Env>(), 8);
        assert_eq!(std::mem::size_of::<Scope>(), 24);
        assert_eq!(std::mem::size_of::<(RcStr, Thunk)>(), 16);
    }

    /// The in-place copy of scalars and [`Value::discard`]: scalars are copied, other
    /// values share (a count raised) and are released (lowered) as the derived ones did;
    /// thunks freed with any state release it.
    #[test]
    fn clone_and_discard() {
        for v in [
            Value::Null,
            Value::Bool(true),
            Value::Int(-7),
            Value::Float(0.5),
        ] {
            assert!(v.is_scalar());
            let c = v.clone_scalar_first();
            let same = match (&v, &c) {
                (Value::Null, Value::Null) => true,
                (Value::Bool(a), Value::Bool(b)) => a == b,
                (Value::Int(a), Value::Int(b)) => a == b,
                (Value::Float(a), Value::Float(b)) => a == b,
                _ => false,
            };
            assert!(same);
            c.discard();
        }
        let list = Rc::new(vec![Thunk::value(Value::Int(1))]);
        let v = Value::List(list.clone());
        assert!(!v.is_scalar());
        let c = v.clone_scalar_first();
        assert_eq!(Rc::strong_count(&list), 3);
        c.discard();
        assert_eq!(Rc::strong_count(&list), 2);
        let t = Thunk::value(v);
        let u = Thunk::new(ThunkState::Apply(t.clone(), Thunk::value(Value::Int(2))));
        drop(t);
        assert_eq!(Rc::strong_count(&list), 2);
        drop(u);
        assert_eq!(Rc::strong_count(&list), 1);
        let s = Value::str("text");
        assert!(matches!(s.clone(), Value::String(n) if n.s.as_str() == "text"));
    }
}
