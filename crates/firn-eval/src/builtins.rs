//! The builtin functions (`builtins.*` and the global ones such as `map` and `throw`).

use crate::rc_str::RcStr;
use std::collections::BTreeMap;
use std::rc::Rc;

use crate::error::{err, EResult, ErrorKind, EvalError};
use crate::eval::Evaluator;
use crate::value::*;

pub type PrimFn = fn(&mut Evaluator, &[Thunk]) -> EResult<Value>;

pub(crate) fn force(ev: &mut Evaluator, t: &Thunk) -> EResult<Value> {
    ev.force(t)
}

/// The integer `t` holds. A computed one (the usual index or count) is copied out, without
/// the general clone and drop of its value.
pub(crate) fn int(ev: &mut Evaluator, t: &Thunk) -> EResult<i64> {
    if let Some(i) = t.peek_int() {
        return Ok(i);
    }
    match force(ev, t)? {
        Value::Int(i) => Ok(i),
        v => Err(ev.type_error("an integer", &v)),
    }
}

pub(crate) fn list(ev: &mut Evaluator, t: &Thunk) -> EResult<Rc<Vec<Thunk>>> {
    match force(ev, t)? {
        Value::List(l) => Ok(l),
        v => Err(ev.type_error("a list", &v)),
    }
}

pub(crate) fn attrs(ev: &mut Evaluator, t: &Thunk) -> EResult<Rc<AttrSet>> {
    match force(ev, t)? {
        Value::Attrs(a) => Ok(a),
        v => Err(ev.type_error("a set", &v)),
    }
}

pub(crate) fn string(ev: &mut Evaluator, t: &Thunk) -> EResult<NixString> {
    match force(ev, t)? {
        Value::String(s) => Ok(s),
        v => Err(ev.type_error("a string", &v)),
    }
}

/// A function (or a set with `__functor`), forced; as CppNix's `forceFunction`.
pub(crate) fn function(ev: &mut Evaluator, t: &Thunk) -> EResult<Value> {
    let v = force(ev, t)?;
    match &v {
        Value::Lambda(_) | Value::PrimOp(_) | Value::PrimOpApp(..) => Ok(v),
        Value::Attrs(a) if a.contains_key("__functor") => Ok(v),
        _ => Err(ev.type_error("a function", &v)),
    }
}

pub(crate) fn boolean(ev: &mut Evaluator, t: &Thunk) -> EResult<bool> {
    match force(ev, t)? {
        Value::Bool(b) => Ok(b),
        v => Err(ev.type_error("a Boolean", &v)),
    }
}

/// Which argument of which builtin a value is (0 for the first), and the builtin as current
/// Nix names it in the `--show-trace` frame of an error evaluating it ("builtins.map", or
/// "'builtins.head'" for a few).
pub(crate) type Arg = (usize, &'static str);

/// The frame "while evaluating the first argument passed to builtins.X"; made only when an
/// error propagates.
#[cold]
#[inline(never)]
pub(crate) fn arg_frame(mut x: EvalError, (n, name): Arg) -> EvalError {
    let nth = match n {
        ONLY => "",
        _ => ["first ", "second ", "third ", "fourth "]
            .get(n)
            .copied()
            .unwrap_or("next "),
    };
    x.trace.push(format!(
        "while evaluating the {nth}argument passed to {name}"
    ));
    x
}

/// The argument number of a builtin's only argument where current Nix's frame says "the
/// argument passed to builtins.X" (`attrNames`, `listToAttrs`, ...).
pub(crate) const ONLY: usize = usize::MAX;

/// A frame of fixed text (for the few builtins whose frame is not [`arg_frame`]'s), made only
/// when an error propagates.
#[cold]
#[inline(never)]
pub(crate) fn text_frame(mut x: EvalError, text: &'static str) -> EvalError {
    x.trace.push(text.to_string());
    x
}

/// The set `listToAttrs` makes of `pairs` (in list order; the first of equal names wins)
/// whose definitions are at `offsets` (one for each pair): its origin a table of them.
fn list_to_attrs_placed(pairs: Vec<(RcStr, Thunk)>, offsets: Vec<u32>) -> AttrSet {
    if pairs.windows(2).all(|w| w[0].0 < w[1].0) {
        // In order already (`listToAttrs (map f (attrNames s))`): no copy to sort.
        let table = PosTable::from_sorted(
            pairs
                .iter()
                .zip(offsets)
                .map(|((n, _), o)| (n.clone(), o))
                .collect(),
        );
        let map = AttrMap::from_sorted(pairs);
        return AttrSet::with_origin(map, Origin::Table(Rc::new(table)));
    }
    if let Some(&o) = offsets
        .first()
        .filter(|&&o| offsets.iter().all(|&x| x == o))
    {
        // Every pair from one expression (`map (n: { name = n; value = …; })`, `genAttrs`):
        // the pairs sorted in place as without positions, and one offset for all.
        let map = AttrMap::from_unsorted(pairs, Keep::First);
        let table = PosTable::from_sorted(map.keys().map(|n| (n.clone(), o)).collect());
        return AttrSet::with_origin(map, Origin::Table(Rc::new(table)));
    }
    let mut v: Vec<(RcStr, Thunk, u32)> = pairs
        .into_iter()
        .zip(offsets)
        .map(|((n, t), o)| (n, t, o))
        .collect();
    // Stable: of equal names, the first in the list stays first.
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v.dedup_by(|later, earlier| later.0 == earlier.0);
    let table = PosTable::from_sorted(v.iter().map(|(n, _, o)| (n.clone(), *o)).collect());
    let map = AttrMap::from_sorted(v.into_iter().map(|(n, t, _)| (n, t)).collect());
    AttrSet::with_origin(map, Origin::Table(Rc::new(table)))
}

/// The error of a `name` in `listToAttrs` that is not a string (`r`: the name forced, or the
/// error forcing it): the frame and the type error are at the attribute, as current Nix's.
#[cold]
#[inline(never)]
fn pair_name_error(ev: &Evaluator, r: EResult<Value>, pair: &AttrSet) -> EvalError {
    let off = ev.positions.attr_offset(pair, "name", &ev.interner);
    let mut x = match r {
        Ok(v) => {
            let mut x = ev.type_error("a string", &v);
            x.at = off.and_then(|o| ev.positions.render(o));
            x
        }
        Err(x) => x,
    };
    let text = "while evaluating the `name` attribute of an element of the list passed to builtins.listToAttrs".to_string();
    x.trace.push(match off {
        Some(o) => ev.frame(text, o),
        None => text,
    });
    x
}

/// `concatMap`'s function returned `v`, not a list: the frame is at the function, the
/// error has no position of its own (as current Nix's).
#[cold]
#[inline(never)]
fn concat_map_error(ev: &Evaluator, v: &Value, f: &Value) -> EvalError {
    let mut x = ev.type_error("a list", v);
    x.at = Some(String::new());
    let text = "while evaluating the return value of the function passed to builtins.concatMap"
        .to_string();
    x.trace.push(match f {
        Value::Lambda(l) => ev.frame(text, l.expr.span.start),
        _ => text,
    });
    x
}

/// [`list`] for argument `arg` of a builtin: as CppNix's `forceList`, a value of the wrong
/// type (not an error forcing it) gets the argument's frame.
///
/// A computed list (the usual argument of `elemAt`, `length`) is taken without the general
/// clone and drop of its value.
pub(crate) fn list_arg(ev: &mut Evaluator, t: &Thunk, arg: Arg) -> EResult<Rc<Vec<Thunk>>> {
    if let Some(l) = t.peek_list() {
        return Ok(l);
    }
    match force(ev, t)? {
        Value::List(l) => Ok(l),
        v => Err(arg_frame(ev.type_error("a list", &v), arg)),
    }
}

/// [`attrs`] for argument `arg` of a builtin, as CppNix's `forceAttrs` (see [`list_arg`]).
pub(crate) fn attrs_arg(ev: &mut Evaluator, t: &Thunk, arg: Arg) -> EResult<Rc<AttrSet>> {
    match force(ev, t)? {
        Value::Attrs(a) => Ok(a),
        v => Err(arg_frame(ev.type_error("a set", &v), arg)),
    }
}

/// [`int`] for argument `arg` of a builtin: as CppNix's `forceInt`, any error gets the
/// argument's frame.
pub(crate) fn int_arg(ev: &mut Evaluator, t: &Thunk, arg: Arg) -> EResult<i64> {
    int(ev, t).map_err(|x| arg_frame(x, arg))
}

/// [`function`] for argument `arg` of a builtin, as CppNix's `forceFunction` (see
/// [`int_arg`]).
pub(crate) fn function_arg(ev: &mut Evaluator, t: &Thunk, arg: Arg) -> EResult<Value> {
    function(ev, t).map_err(|x| arg_frame(x, arg))
}

/// [`string`] for argument `arg` of a builtin: as CppNix's `forceString` and
/// `forceStringNoCtx`, any error (one forcing the argument included) gets the argument's frame.
pub(crate) fn string_arg(ev: &mut Evaluator, t: &Thunk, arg: Arg) -> EResult<NixString> {
    string(ev, t).map_err(|x| arg_frame(x, arg))
}

/// A number as a float for argument `arg` of a builtin (an integer as is), as CppNix's
/// `forceFloat`: any error gets the argument's frame.
pub(crate) fn float_arg(ev: &mut Evaluator, t: &Thunk, arg: Arg) -> EResult<Value> {
    match force(ev, t) {
        Ok(v @ (Value::Float(_) | Value::Int(_))) => Ok(v),
        Ok(v) => Err(arg_frame(ev.type_error("a float", &v), arg)),
        Err(x) => Err(arg_frame(x, arg)),
    }
}

/// Argument `arg` of a builtin coerced to a string, as CppNix's `coerceToString`: an error
/// forcing the value itself passes unchanged; one coercing it (a value that cannot be coerced,
/// a list element that fails) gets the argument's frame.
pub(crate) fn coerce_arg(
    ev: &mut Evaluator,
    t: &Thunk,
    coerce_more: bool,
    copy: bool,
    arg: Arg,
) -> EResult<NixString> {
    let v = force(ev, t)?;
    ev.coerce_to_string(&v, coerce_more, copy)
        .map_err(|x| arg_frame(x, arg))
}

/// Integer and float arithmetic with Nix's rules (overflow is an error).
pub fn arith(ev: &Evaluator, op: char, a: &Value, b: &Value) -> EResult<Value> {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => {
            let r = match op {
                '+' => x.checked_add(*y),
                '-' => x.checked_sub(*y),
                '*' => x.checked_mul(*y),
                _ => {
                    if *y == 0 {
                        return err("division by zero");
                    }
                    x.checked_div(*y)
                }
            };
            let verb = match op {
                '+' => "adding",
                '-' => "subtracting",
                '*' => "multiplying",
                _ => "dividing",
            };
            r.map(Value::Int)
                .ok_or_else(|| EvalError::new(format!("integer overflow in {verb} {x} {op} {y}")))
        }
        (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => {
            let f = |v: &Value| match v {
                Value::Int(i) => *i as f64,
                Value::Float(f) => *f,
                _ => 0.0,
            };
            let (x, y) = (f(a), f(b));
            Ok(Value::Float(match op {
                '+' => x + y,
                '-' => x - y,
                '*' => x * y,
                _ => {
                    if y == 0.0 {
                        return err("division by zero");
                    }
                    x / y
                }
            }))
        }
        _ => Err(arith_error(ev, op, a, b)),
    }
}

/// The error of an arithmetic builtin given something that is not a number, as CppNix
/// checks: a division's divisor first (as a float; then whether it is zero), then the
/// operands in order, as floats if either is one, else as integers.
#[cold]
#[inline(never)]
fn arith_error(ev: &Evaluator, op: char, a: &Value, b: &Value) -> EvalError {
    let number = |v: &Value| matches!(v, Value::Int(_) | Value::Float(_));
    if op == '/' {
        match b {
            Value::Int(0) => return EvalError::new("division by zero"),
            Value::Float(f) if *f == 0.0 => return EvalError::new("division by zero"),
            Value::Int(_) | Value::Float(_) => {}
            _ => return ev.type_error("a float", b),
        }
    }
    let float = matches!(a, Value::Float(_)) || matches!(b, Value::Float(_));
    let wrong = if number(a) { b } else { a };
    ev.type_error(if float { "a float" } else { "an integer" }, wrong)
}

fn arith_prim(op: char) -> PrimFn {
    match op {
        '+' => |ev, a| arith_call(ev, '+', a),
        '-' => |ev, a| arith_call(ev, '-', a),
        '*' => |ev, a| arith_call(ev, '*', a),
        _ => |ev, a| arith_call(ev, '/', a),
    }
}

/// `builtins.add` and the like: both arguments forced, then [`arith`]; an argument of the wrong
/// type gets current Nix's frame.
fn arith_call(ev: &mut Evaluator, op: char, a: &[Thunk]) -> EResult<Value> {
    let (x, y) = (force(ev, &a[0])?, force(ev, &a[1])?);
    arith(ev, op, &x, &y).map_err(|e| arith_arg_frame(e, op, &x, &y))
}

/// The frame CppNix's `forceInt`/`forceFloat` give the argument of an arithmetic builtin that
/// is not a number (`div` checks its second argument first); none for other errors.
#[cold]
#[inline(never)]
pub(crate) fn arith_arg_frame(e: EvalError, op: char, x: &Value, y: &Value) -> EvalError {
    let number = |v: &Value| matches!(v, Value::Int(_) | Value::Float(_));
    let float = matches!(x, Value::Float(_)) || matches!(y, Value::Float(_));
    let first = match op {
        _ if number(x) && number(y) => return e,
        // "division by zero" comes before the first argument's type, and has no frame.
        '/' if matches!(y, Value::Int(0)) || matches!(y, Value::Float(f) if *f == 0.0) => return e,
        '/' => number(y),
        _ => !number(x),
    };
    text_frame(
        e,
        match (op, first) {
            ('+', true) => "while evaluating the first argument of the addition",
            ('+', false) => "while evaluating the second argument of the addition",
            ('-', true) => "while evaluating the first argument of the subtraction",
            ('-', false) => "while evaluating the second argument of the subtraction",
            // (sic, in current Nix)
            ('*', true) if float => "while evaluating the first of the multiplication",
            ('*', true) => "while evaluating the first argument of the multiplication",
            ('*', false) => "while evaluating the second argument of the multiplication",
            (_, true) => "while evaluating the first operand of the division",
            (_, false) => "while evaluating the second operand of the division",
        },
    )
}

/// `builtins.lessThan`.
pub fn less_than(ev: &mut Evaluator, a: &Value, b: &Value) -> EResult<bool> {
    Ok(match (a, b) {
        (Value::Int(x), Value::Int(y)) => x < y,
        (Value::Int(x), Value::Float(y)) => (*x as f64) < *y,
        (Value::Float(x), Value::Int(y)) => *x < (*y as f64),
        (Value::Float(x), Value::Float(y)) => x < y,
        (Value::String(x), Value::String(y)) => x.s < y.s,
        (Value::Path(x), Value::Path(y)) => x < y,
        (Value::List(x), Value::List(y)) => {
            for (p, q) in x.iter().zip(y.iter()) {
                let p = ev.force(p)?;
                let q = ev.force(q)?;
                if !ev.equal(&p, &q)? {
                    return less_than(ev, &p, &q)
                        .map_err(|x| text_frame(x, "while comparing two list elements"));
                }
            }
            x.len() < y.len()
        }
        _ => {
            let (x, y) = (
                crate::print::show_for_error(ev, a),
                crate::print::show_for_error(ev, b),
            );
            return err(if a.type_name() == b.type_name() {
                format!(
                    "cannot compare {} with {}; values of that type are incomparable (values are {x} and {y})",
                    a.type_name(),
                    b.type_name()
                )
            } else {
                format!(
                    "cannot compare {} with {}; values are {x} and {y}",
                    a.type_name(),
                    b.type_name()
                )
            });
        }
    })
}

/// Force a value deeply (`deepSeq`, `--strict`), as CppNix: depth first, in order (so the
/// first failing element is the one CppNix reports), each level of nesting counting as a
/// call against `max-call-depth`; an error says, with `--show-trace`, which attributes and
/// list elements lead to it. A set or list met again is not entered again.
pub fn deep_force(ev: &mut Evaluator, v: &Value) -> EResult<()> {
    // A scalar, a function: nothing to do (and nothing to take out and put back).
    if !matches!(v, Value::Attrs(_) | Value::List(_)) {
        return Ok(());
    }
    // The lists of an earlier call, empty; a call made while this one forces an element
    // (a `deepSeq` inside) finds none and makes its own.
    let mut scratch = std::mem::take(&mut ev.deep_scratch);
    let r = deep_force_with(ev, v, &mut scratch);
    scratch.clear();
    if scratch.small() {
        ev.deep_scratch = scratch;
    }
    r
}

/// The work lists of [`deep_force`], empty between calls.
#[derive(Default)]
pub(crate) struct DeepScratch {
    /// The sets and lists entered, outermost first, each with its index in its parent.
    path: Vec<(Value, usize)>,
    /// What is left to do: an element, its depth (`path` length of its parent + 1) and its
    /// index in its parent; the next one last. A list's elements stay in the list, as one
    /// entry (see `DeepNext::Rest`).
    todo: Vec<(DeepNext, usize, usize)>,
    seen: DeepSeen,
}

impl DeepScratch {
    /// The most entries a kept list has room for: the room a value of a million sets
    /// needed is given back once it is forced.
    const KEEP: usize = 4096;

    fn small(&self) -> bool {
        self.path.capacity() <= Self::KEEP
            && self.todo.capacity() <= Self::KEEP
            && self.seen.capacity() <= Self::KEEP
    }

    fn clear(&mut self) {
        self.path.clear();
        self.todo.clear();
        self.seen.clear();
    }
}

/// [`deep_force`] with its work lists.
fn deep_force_with(ev: &mut Evaluator, v: &Value, scratch: &mut DeepScratch) -> EResult<()> {
    let DeepScratch { path, todo, seen } = scratch;
    deep_enter(v, 0, 0, path, todo, seen);
    while let Some(top) = todo.last_mut() {
        let (next, depth, index) = match top {
            (DeepNext::Rest(l), depth, from) => match next_in_list(l, *from) {
                // The list stays on `todo` for the elements after this one.
                Some((i, next)) => {
                    *from = i + 1;
                    (next, *depth, i)
                }
                None => {
                    todo.pop();
                    continue;
                }
            },
            _ => match todo.pop() {
                Some(x) => x,
                None => break,
            },
        };
        path.truncate(depth);
        let r = if ev.depth + depth > ev.max_call_depth {
            err("stack overflow; max-call-depth exceeded")
        } else {
            match next {
                DeepNext::Force(t) => deep_force_thunk(ev, &t, depth),
                DeepNext::Enter(v) => Ok(v),
                // Never taken off `todo` here (see above).
                DeepNext::Rest(_) => continue,
            }
        };
        match r {
            Ok(v) => {
                deep_enter(&v, depth, index, path, todo, seen);
                // Mostly a number, dropped in place.
                v.discard();
            }
            Err(e) => return Err(deep_frames(ev, e, path, index)),
        }
    }
    Ok(())
}

/// Force an element of [`deep_force`] at nesting `depth`, which counts against
/// `max-call-depth` as the calls around it do: in current Nix, each level of nesting is a
/// level of calls, and the element is forced one level further in.
fn deep_force_thunk(ev: &mut Evaluator, t: &Thunk, depth: usize) -> EResult<Value> {
    // A builtin's application (`genList`, `map`) is a call made right there, which current
    // Nix lets go one level deeper than it is forced: too deep, it fails before it starts,
    // at the function applied (current Nix's `determinePos`).
    if ev.depth + depth >= ev.max_call_depth && t.applied_site() != NOT_APPLIED {
        return Err(deep_call_too_deep(ev, t.applied_site()));
    }
    ev.depth += depth + 1;
    let r = ev.force(t);
    ev.depth -= depth + 1;
    r
}

/// "stack overflow" for [`deep_force_thunk`]: at `site` (see [`Thunk::applied_site`]).
#[cold]
#[inline(never)]
fn deep_call_too_deep(ev: &Evaluator, site: u32) -> EvalError {
    let mut e = EvalError::new("stack overflow; max-call-depth exceeded");
    if site != NO_SITE {
        e.at = ev.positions.render(site);
    }
    e
}

/// An element [`deep_force`] has yet to visit: a thunk to force, or a set or list computed
/// already, to enter; or the elements of a list from an index on (`todo`'s third field),
/// looked at in place: a list of a hundred thousand elements is one entry, not one each
/// (which cost a growing stack, its copies included, and a handle on each element).
enum DeepNext {
    Force(Thunk),
    Enter(Value),
    Rest(Rc<Vec<Thunk>>),
}

/// The first element of list `l` from index `from` on that [`deep_force`] has work with (one
/// not computed yet, or a set or list), with its index. Elements computed to anything else
/// have nothing left to force, and are passed over.
#[inline]
fn next_in_list(l: &[Thunk], from: usize) -> Option<(usize, DeepNext)> {
    let rest = l.get(from..)?;
    rest.iter().enumerate().find_map(|(i, t)| {
        // Mostly numbers and the like, copied and dropped in place.
        let next = match t.peek_scalar_first() {
            None => DeepNext::Force(t.clone()),
            Some(v @ (Value::Attrs(_) | Value::List(_))) => DeepNext::Enter(v),
            Some(v) => {
                v.discard();
                return None;
            }
        };
        Some((from + i, next))
    })
}

/// The sets and lists [`deep_force`] has entered, by address.
type DeepSeen = std::collections::HashSet<usize, foldhash::fast::FixedState>;

/// If `v` is a set or list not entered before, enter it (at `depth`, as element `index` of
/// its parent): it joins `path`, its elements that may need work `todo`.
fn deep_enter(
    v: &Value,
    depth: usize,
    index: usize,
    path: &mut Vec<(Value, usize)>,
    todo: &mut Vec<(DeepNext, usize, usize)>,
    seen: &mut DeepSeen,
) {
    // An element computed already to something other than a set or list has nothing left
    // to force.
    let element = |(i, t): (usize, &Thunk)| match t.peek() {
        None => Some((DeepNext::Force(t.clone()), depth + 1, i)),
        Some(v @ (Value::Attrs(_) | Value::List(_))) => Some((DeepNext::Enter(v), depth + 1, i)),
        Some(_) => None,
    };
    match v {
        Value::Attrs(a) if seen.insert(Rc::as_ptr(a) as usize) => {
            let start = todo.len();
            todo.extend(a.values().enumerate().rev().filter_map(element));
            // CppNix goes through a set in the order of its names' symbols, where `outPath`
            // comes first (a derivation fails there, at the output's path): taken first.
            if a.contains_key("outPath") {
                outpath_first(a, &mut todo[start..]);
            }
        }
        Value::List(l) if seen.insert(Rc::as_ptr(l) as usize) => {
            if !l.is_empty() {
                todo.push((DeepNext::Rest(l.clone()), depth + 1, 0));
            }
        }
        _ => return,
    }
    path.push((v.clone(), index));
}

/// Move the `outPath` element of set `a` (if it is among `todo`, the set's elements in
/// reverse order) to the end of `todo`, so that it is done first.
#[cold]
#[inline(never)]
fn outpath_first(a: &AttrSet, todo: &mut [(DeepNext, usize, usize)]) {
    let Some(k) = a.keys().position(|k| &**k == "outPath") else {
        return;
    };
    if let Some(p) = todo.iter().position(|e| e.2 == k) {
        todo[p..].rotate_left(1);
    }
}

/// The `--show-trace` frames of an error forcing element `index` of the innermost set or
/// list of `path`: that element, then each enclosing one.
#[cold]
#[inline(never)]
fn deep_frames(
    ev: &Evaluator,
    mut e: EvalError,
    path: &[(Value, usize)],
    index: usize,
) -> EvalError {
    let mut index = index;
    for (parent, parent_index) in path.iter().rev() {
        let frame = match parent {
            Value::Attrs(a) => match a.iter().nth(index) {
                Some((name, _)) => {
                    let text = format!("while evaluating the attribute '{name}'");
                    match ev.positions.attr_offset(a, name, &ev.interner) {
                        Some(off) => ev.frame(text, off),
                        None => text,
                    }
                }
                None => break,
            },
            _ => format!("while evaluating list element at index {index}"),
        };
        e.trace.push(frame);
        index = *parent_index;
    }
    e
}

/// The elements of `lists` one after the other (`concatLists`, `concatMap`): when at most
/// one of them has elements, that list itself (shared, not copied), as in CppNix; otherwise
/// one allocation of the final size.
fn join_lists(lists: Vec<Rc<Vec<Thunk>>>) -> Rc<Vec<Thunk>> {
    let mut full = lists.iter().filter(|x| !x.is_empty());
    match (full.next(), full.next()) {
        (None, _) => Rc::new(Vec::new()),
        (Some(only), None) => only.clone(),
        _ => {
            let n = lists.iter().map(|x| x.len()).sum();
            let mut out = Vec::with_capacity(n);
            for x in &lists {
                out.extend_from_slice(x);
            }
            Rc::new(out)
        }
    }
}

macro_rules! prim {
    ($ev:ident, $a:ident, $body:expr) => {
        |$ev: &mut Evaluator, $a: &[Thunk]| -> EResult<Value> { $body }
    };
}

/// A function's result as a Boolean for a builtin that calls it (`filter`, `sort`, ...), as
/// CppNix's `forceBool` on it: a value of another type gets the frame `what`.
fn bool_result(ev: &Evaluator, v: Value, what: &'static str) -> EResult<bool> {
    match v {
        Value::Bool(b) => Ok(b),
        v => Err(text_frame(ev.type_error("a Boolean", &v), what)),
    }
}

/// `cmp a b`: whether the user's comparator puts `a` before `b`.
fn sort_less(ev: &mut Evaluator, cmp: &Value, a: &Thunk, b: &Thunk) -> EResult<bool> {
    let v = ev.call2(cmp, a.clone(), b.clone())?;
    bool_result(
        ev,
        v,
        "while evaluating the return value of the sorting function passed to builtins.sort",
    )
}

fn sort_by(ev: &mut Evaluator, items: &[Thunk], cmp: &Value) -> EResult<Vec<Thunk>> {
    // A stable merge sort calling the user's comparator.
    if items.len() <= 1 {
        return Ok(items.to_vec());
    }
    let mid = items.len() / 2;
    let left = sort_by(ev, &items[..mid], cmp)?;
    let right = sort_by(ev, &items[mid..], cmp)?;
    let (l_first, l_last) = (&left[0], &left[left.len() - 1]);
    let (r_first, r_last) = (&right[0], &right[right.len() - 1]);
    // Halves already in order (the least of the right not before the greatest of the left),
    // or in reverse order (all of the right strictly before all of the left), are joined
    // without merging: sorted and reversed input take a linear number of comparisons.
    if !sort_less(ev, cmp, r_first, l_last)? {
        let mut out = left;
        out.extend_from_slice(&right);
        return Ok(out);
    }
    if sort_less(ev, cmp, r_last, l_first)? {
        let mut out = right;
        out.extend_from_slice(&left);
        return Ok(out);
    }
    let mut out = Vec::with_capacity(items.len());
    let (mut i, mut j) = (0, 0);
    while i < left.len() && j < right.len() {
        let right_first = sort_less(ev, cmp, &right[j], &left[i])?;
        if right_first {
            out.push(right[j].clone());
            j += 1;
        } else {
            out.push(left[i].clone());
            i += 1;
        }
    }
    out.extend_from_slice(&left[i..]);
    out.extend_from_slice(&right[j..]);
    Ok(out)
}

/// Which entries of a set `removeAttrs` drops, by index: bits of one word for the small
/// sets nearly all are, a vector for larger ones.
pub(crate) struct Marks {
    small: u64,
    large: Vec<bool>,
    count: usize,
}

impl Marks {
    /// No marks, for a set of `len` entries.
    pub(crate) fn new(len: usize) -> Marks {
        Marks {
            small: 0,
            large: if len > 64 {
                vec![false; len]
            } else {
                Vec::new()
            },
            count: 0,
        }
    }

    /// Mark entry `i` (again is no change).
    pub(crate) fn set(&mut self, i: usize) {
        if !self.get(i) {
            self.count += 1;
            match self.large.get_mut(i) {
                Some(b) => *b = true,
                None => self.small |= 1 << i,
            }
        }
    }

    /// Whether entry `i` is marked.
    pub(crate) fn get(&self, i: usize) -> bool {
        match self.large.get(i) {
            Some(b) => *b,
            None => i < 64 && self.small & (1 << i) != 0,
        }
    }
}

/// The entries of `m` not marked in `gone`, copied in runs between the marked ones (a subset
/// of a set's entries in its order: sorted and unique).
pub(crate) fn without(m: &AttrMap, gone: &Marks) -> AttrMap {
    let e = m.entries();
    let mut out = Vec::with_capacity(e.len() - gone.count);
    let mut start = 0;
    for i in 0..e.len() {
        if gone.get(i) {
            out.extend_from_slice(&e[start..i]);
            start = i + 1;
        }
    }
    out.extend_from_slice(&e[start..]);
    AttrMap::from_sorted(out)
}

/// The names `zipAttrsWith` has met with their values, in the order of the sets.
///
/// The sets zipped tend to have the same names, so the names met go in a vector sorted by
/// name that each set is merged into in one pass over both, its values added in place. A
/// set with new names rebuilds that vector, so where new names keep coming (sets with
/// different names) the entries of the sets after that go in a second vector instead, sorted
/// once at the end: never more than about `n log n` work for `n` entries.
#[derive(Default)]
pub(crate) struct Zip {
    names: Vec<(RcStr, Vec<Thunk>)>,
    /// Entries of later sets (after every value in `names`), in the order of the sets.
    rest: Vec<(RcStr, Thunk)>,
    /// Whether entries go to `rest` now.
    sorting: bool,
    /// Entries added so far, and entries moved by rebuilds of `names`.
    added: usize,
    moved: usize,
}

impl Zip {
    /// Add the entries of set `m`. `left`: the sets still to come with this one, the most
    /// values a new name can get.
    pub(crate) fn add(&mut self, m: &AttrMap, left: usize) {
        self.added += m.len();
        if self.sorting {
            self.rest
                .extend(m.iter().map(|(k, v)| (k.clone(), v.clone())));
            return;
        }
        let acc = &mut self.names;
        let mut new: Vec<(usize, RcStr, Thunk)> = Vec::new();
        let mut j = 0;
        for (k, v) in m.iter() {
            while j < acc.len() && acc[j].0 < *k {
                j += 1;
            }
            match acc.get_mut(j) {
                Some((n, vs)) if n == k => {
                    vs.push(v.clone());
                    j += 1;
                }
                _ => new.push((j, k.clone(), v.clone())),
            }
        }
        if new.is_empty() {
            return;
        }
        self.moved += acc.len();
        if self.moved > 4 * self.added + 64 {
            self.sorting = true;
            self.rest.extend(new.into_iter().map(|(_, k, v)| (k, v)));
            return;
        }
        let mut merged = Vec::with_capacity(acc.len() + new.len());
        let mut old = std::mem::take(acc).into_iter();
        let mut taken = 0;
        for (at, k, v) in new {
            merged.extend(old.by_ref().take(at - taken));
            taken = at;
            let mut vs = Vec::with_capacity(left.min(4));
            vs.push(v);
            merged.push((k, vs));
        }
        merged.extend(old);
        *acc = merged;
    }

    /// The names met, sorted and unique, each with its values in the order of the sets.
    pub(crate) fn finish(self) -> Vec<(RcStr, Vec<Thunk>)> {
        let Zip {
            names, mut rest, ..
        } = self;
        if rest.is_empty() {
            return names;
        }
        // Stable: the values of a name stay in the order of the sets.
        rest.sort_by(|x, y| x.0.cmp(&y.0));
        let mut out = Vec::with_capacity(names.len() + rest.len());
        let mut old = names.into_iter().peekable();
        let mut rest = rest.into_iter().peekable();
        while let Some((k, v)) = rest.next() {
            while let Some(e) = old.next_if(|e| e.0 < k) {
                out.push(e);
            }
            let (k, mut vs) = match old.next_if(|e| e.0 == k) {
                Some(e) => e,
                None => (k, Vec::new()),
            };
            vs.push(v);
            while let Some((_, v)) = rest.next_if(|e| e.0 == k) {
                vs.push(v);
            }
            out.push((k, vs));
        }
        out.extend(old);
        out
    }
}

/// A package name split as `builtins.parseDrvName` splits it: the version starts after the
/// first dash followed by something that is not a letter.
pub fn drv_name(s: &str) -> (&str, &str) {
    let b = s.as_bytes();
    let dash = |i: usize| b[i] == b'-' && b.get(i + 1).is_some_and(|c| !c.is_ascii_alphabetic());
    match (0..b.len()).find(|&i| dash(i)) {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, ""),
    }
}

fn table() -> Vec<(&'static str, usize, PrimFn)> {
    vec![
        ("add", 2, arith_prim('+')),
        ("sub", 2, arith_prim('-')),
        ("mul", 2, arith_prim('*')),
        ("div", 2, arith_prim('/')),
        (
            "lessThan",
            2,
            prim!(ev, a, {
                let (x, y) = (force(ev, &a[0])?, force(ev, &a[1])?);
                Ok(Value::Bool(less_than(ev, &x, &y)?))
            }),
        ),
        (
            "bitAnd",
            2,
            prim!(ev, a, {
                let x = int_arg(ev, &a[0], (0, "builtins.bitAnd"))?;
                Ok(Value::Int(x & int_arg(ev, &a[1], (1, "builtins.bitAnd"))?))
            }),
        ),
        (
            "bitOr",
            2,
            prim!(ev, a, {
                let x = int_arg(ev, &a[0], (0, "builtins.bitOr"))?;
                Ok(Value::Int(x | int_arg(ev, &a[1], (1, "builtins.bitOr"))?))
            }),
        ),
        (
            "bitXor",
            2,
            prim!(ev, a, {
                let x = int_arg(ev, &a[0], (0, "builtins.bitXor"))?;
                Ok(Value::Int(x ^ int_arg(ev, &a[1], (1, "builtins.bitXor"))?))
            }),
        ),
        (
            "ceil",
            1,
            prim!(
                ev,
                a,
                match float_arg(ev, &a[0], (0, "builtins.ceil"))? {
                    Value::Float(f) => Ok(Value::Int(f.ceil() as i64)),
                    Value::Int(i) => Ok(Value::Int(i)),
                    v => Err(ev.type_error("a float", &v)),
                }
            ),
        ),
        (
            "floor",
            1,
            prim!(
                ev,
                a,
                match float_arg(ev, &a[0], (0, "builtins.floor"))? {
                    Value::Float(f) => Ok(Value::Int(f.floor() as i64)),
                    Value::Int(i) => Ok(Value::Int(i)),
                    v => Err(ev.type_error("a float", &v)),
                }
            ),
        ),
        (
            "length",
            1,
            prim!(ev, a, {
                let l = list_arg(ev, &a[0], (0, "builtins.length"))?;
                Ok(Value::Int(l.len() as i64))
            }),
        ),
        (
            "head",
            1,
            prim!(ev, a, {
                let l = list_arg(ev, &a[0], (0, "'builtins.head'"))?;
                match l.first() {
                    Some(t) => force(ev, t),
                    None => err("'builtins.head' called on an empty list"),
                }
            }),
        ),
        (
            "tail",
            1,
            prim!(ev, a, {
                let l = list_arg(ev, &a[0], (0, "'builtins.tail'"))?;
                if l.is_empty() {
                    return err("'builtins.tail' called on an empty list");
                }
                Ok(Value::List(Rc::new(l[1..].to_vec())))
            }),
        ),
        (
            "elemAt",
            2,
            prim!(ev, a, {
                let l = list_arg(ev, &a[0], (0, "'builtins.elemAt'"))?;
                let i = int_arg(ev, &a[1], (1, "'builtins.elemAt'"))?;
                match usize::try_from(i).ok().and_then(|i| l.get(i)) {
                    Some(t) => force(ev, t),
                    None => err(format!(
                        "'builtins.elemAt' called with index {i} on a list of size {}",
                        l.len()
                    )),
                }
            }),
        ),
        (
            "elem",
            2,
            prim!(ev, a, {
                let x = force(ev, &a[0])?;
                let l = list_arg(ev, &a[1], (1, "builtins.elem"))?;
                for t in l.iter() {
                    let y = force(ev, t)?;
                    if ev.equal(&x, &y)? {
                        return Ok(Value::Bool(true));
                    }
                }
                Ok(Value::Bool(false))
            }),
        ),
        (
            "map",
            2,
            prim!(ev, a, {
                let l = list_arg(ev, &a[1], (1, "builtins.map"))?;
                if !l.is_empty() {
                    function_arg(ev, &a[0], (0, "builtins.map"))?;
                }
                Ok(Value::List(Rc::new(
                    l.iter()
                        .map(|t| Thunk::apply(a[0].clone(), t.clone()))
                        .collect(),
                )))
            }),
        ),
        (
            "filter",
            2,
            prim!(ev, a, {
                // As CppNix: the list first, and an empty one needs no function.
                let l = list_arg(ev, &a[1], (1, "builtins.filter"))?;
                if l.is_empty() {
                    return Ok(Value::List(l));
                }
                let f = function_arg(ev, &a[0], (0, "builtins.filter"))?;
                // One allocation of the most that can be kept (no regrowing).
                let mut out = Vec::with_capacity(l.len());
                for t in l.iter() {
                    let v = ev.call(f.clone(), t.clone())?;
                    if bool_result(
                        ev,
                        v,
                        "while evaluating the return value of the filtering function passed to builtins.filter",
                    )? {
                        out.push(t.clone());
                    }
                }
                // All kept: the list itself, as CppNix (a list's identity is not observable
                // here: equality compares its elements, which are the same thunks, and
                // printing tells repeated lists by the value holding them).
                if out.len() == l.len() {
                    return Ok(Value::List(l));
                }
                Ok(Value::List(Rc::new(out)))
            }),
        ),
        (
            "foldl'",
            3,
            prim!(ev, a, {
                let f = function_arg(ev, &a[0], (0, "builtins.foldlStrict"))?;
                // The initial accumulator is only forced if it is the result.
                let mut acc = a[1].clone();
                let l = list_arg(ev, &a[2], (2, "builtins.foldlStrict"))?;
                // The usual two-argument lambda is taken apart once, not per element.
                if let (Some(l2), Some((x, rest))) = (crate::eval::Lambda2::of(&f), l.split_first())
                {
                    return ev.fold_lambda2(l2, acc, x, rest);
                }
                for t in l.iter() {
                    let v = ev.call2(&f, acc, t.clone())?;
                    acc = Thunk::value(v);
                }
                force(ev, &acc)
            }),
        ),
        (
            "concatLists",
            1,
            prim!(ev, a, {
                let l = list_arg(ev, &a[0], (0, "builtins.concatLists"))?;
                let mut lists = Vec::with_capacity(l.len());
                for t in l.iter() {
                    match force(ev, t)? {
                        Value::List(x) => lists.push(x),
                        v => return Err(text_frame(
                            ev.type_error("a list", &v),
                            "while evaluating a value of the list passed to builtins.concatLists",
                        )),
                    }
                }
                Ok(Value::List(join_lists(lists)))
            }),
        ),
        (
            "concatMap",
            2,
            prim!(ev, a, {
                let f = function_arg(ev, &a[0], (0, "builtins.concatMap"))?;
                let l = list_arg(ev, &a[1], (1, "builtins.concatMap"))?;
                let mut lists = Vec::with_capacity(l.len());
                for t in l.iter() {
                    match ev.call(f.clone(), t.clone())? {
                        Value::List(x) => lists.push(x),
                        v => return Err(concat_map_error(ev, &v, &f)),
                    }
                }
                Ok(Value::List(join_lists(lists)))
            }),
        ),
        (
            "genList",
            2,
            prim!(ev, a, {
                let n = int_arg(ev, &a[1], (1, "builtins.genList"))?;
                if n < 0 {
                    return err(format!("cannot create list of size {n}"));
                }
                if n > 0 {
                    function_arg(ev, &a[0], (0, "builtins.genList"))?;
                }
                Ok(Value::List(Rc::new(
                    (0..n)
                        .map(|i| Thunk::apply_index(a[0].clone(), i))
                        .collect(),
                )))
            }),
        ),
        (
            "any",
            2,
            prim!(ev, a, {
                let f = function_arg(ev, &a[0], (0, "builtins.any"))?;
                for t in list_arg(ev, &a[1], (1, "builtins.any"))?.iter() {
                    let v = ev.call(f.clone(), t.clone())?;
                    if bool_result(
                        ev,
                        v,
                        "while evaluating the return value of the function passed to builtins.any",
                    )? {
                        return Ok(Value::Bool(true));
                    }
                }
                Ok(Value::Bool(false))
            }),
        ),
        (
            "all",
            2,
            prim!(ev, a, {
                let f = function_arg(ev, &a[0], (0, "builtins.all"))?;
                for t in list_arg(ev, &a[1], (1, "builtins.all"))?.iter() {
                    let v = ev.call(f.clone(), t.clone())?;
                    if !bool_result(
                        ev,
                        v,
                        "while evaluating the return value of the function passed to builtins.all",
                    )? {
                        return Ok(Value::Bool(false));
                    }
                }
                Ok(Value::Bool(true))
            }),
        ),
        (
            "sort",
            2,
            prim!(ev, a, {
                let l = list_arg(ev, &a[1], (1, "builtins.sort"))?;
                let f = function_arg(ev, &a[0], (0, "builtins.sort"))?;
                Ok(Value::List(Rc::new(sort_by(ev, &l, &f)?)))
            }),
        ),
        (
            "partition",
            2,
            prim!(ev, a, {
                let f = function_arg(ev, &a[0], (0, "builtins.partition"))?;
                let (mut r, mut w) = (Vec::new(), Vec::new());
                for t in list_arg(ev, &a[1], (1, "builtins.partition"))?.iter() {
                    let v = ev.call(f.clone(), t.clone())?;
                    if bool_result(
                        ev,
                        v,
                        "while evaluating the return value of the partition function passed to builtins.partition",
                    )? {
                        r.push(t.clone());
                    } else {
                        w.push(t.clone());
                    }
                }
                let mut m = AttrMap::new();
                m.insert("right".into(), Thunk::value(Value::List(Rc::new(r))));
                m.insert("wrong".into(), Thunk::value(Value::List(Rc::new(w))));
                Ok(Value::Attrs(Rc::new(m.into())))
            }),
        ),
        (
            "attrNames",
            1,
            prim!(ev, a, {
                let m = attrs_arg(ev, &a[0], (ONLY, "builtins.attrNames"))?;
                Ok(Value::List(Rc::new(
                    m.keys()
                        .map(|k| Thunk::value(Value::str(k.clone())))
                        .collect(),
                )))
            }),
        ),
        (
            "attrValues",
            1,
            prim!(ev, a, {
                let m = attrs_arg(ev, &a[0], (ONLY, "builtins.attrValues"))?;
                Ok(Value::List(Rc::new(m.values().cloned().collect())))
            }),
        ),
        (
            "hasAttr",
            2,
            prim!(ev, a, {
                let n = string_arg(ev, &a[0], (0, "builtins.hasAttr"))?;
                let m = attrs_arg(ev, &a[1], (1, "builtins.hasAttr"))?;
                Ok(Value::Bool(m.contains_key(&n.s)))
            }),
        ),
        (
            "getAttr",
            2,
            prim!(ev, a, {
                let n = string_arg(ev, &a[0], (0, "builtins.getAttr"))?;
                let m = attrs_arg(ev, &a[1], (1, "builtins.getAttr"))?;
                match m.get(&n.s) {
                    Some(t) => force(ev, &t.clone()),
                    None => Err(text_frame(
                        EvalError::new(crate::eval::attr_missing_text(&n.s)),
                        "in the attribute set under consideration",
                    )),
                }
            }),
        ),
        (
            "removeAttrs",
            2,
            prim!(ev, a, {
                let m = attrs_arg(ev, &a[0], (0, "builtins.removeAttrs"))?;
                let names = list_arg(ev, &a[1], (1, "builtins.removeAttrs"))?;
                // Each name is looked up in the set (a binary search) and its entry marked;
                // the names need no sorting, and the entries kept are copied in runs.
                let mut gone = Marks::new(m.len());
                for t in names.iter() {
                    match force(ev, t)? {
                        Value::String(s) => {
                            if let Some(i) = m.position(&s.s) {
                                gone.set(i);
                            }
                        }
                        v => return Err(ev.type_error("a string", &v)),
                    }
                }
                // The attributes kept are the set's own: their positions are its.
                Ok(Value::Attrs(Rc::new(AttrSet {
                    map: without(&m, &gone),
                    origin: m.origin.clone(),
                })))
            }),
        ),
        (
            "listToAttrs",
            1,
            prim!(ev, a, {
                let l = list_arg(ev, &a[0], (ONLY, "builtins.listToAttrs"))?;
                let mut out = Vec::with_capacity(l.len());
                let mut offsets: Vec<u32> = Vec::with_capacity(l.len());
                let mut placed = true;
                for t in l.iter() {
                    let p = match force(ev, t)? {
                        Value::Attrs(p) => p,
                        v => {
                            return Err(text_frame(
                                ev.type_error("a set", &v),
                                "while evaluating an element of the list passed to builtins.listToAttrs",
                            ))
                        }
                    };
                    const PAIR: &str = "in a {name=...; value=...;} pair";
                    let name = match p.get("name") {
                        Some(n) => match force(ev, &n.clone()) {
                            Ok(Value::String(s)) => s,
                            r => return Err(pair_name_error(ev, r, &p)),
                        },
                        None => {
                            return Err(text_frame(
                                EvalError::new("attribute 'name' missing"),
                                PAIR,
                            ))
                        }
                    };
                    let value = match p.get("value") {
                        Some(v) => v.clone(),
                        None => {
                            return Err(text_frame(
                                EvalError::new("attribute 'value' missing"),
                                PAIR,
                            ))
                        }
                    };
                    // Each attribute's position is that of its pair's `value`, as in
                    // CppNix; kept only while every pair's is known (a table that lacks a
                    // name would let an update's other side answer for it).
                    if placed {
                        match ev.positions.attr_offset(&p, "value", &ev.interner) {
                            Some(o) => offsets.push(o),
                            None => placed = false,
                        }
                    }
                    out.push((name.s, value));
                }
                if !placed || out.is_empty() {
                    // The first occurrence of a name wins.
                    let out = AttrMap::from_unsorted(out, Keep::First);
                    return Ok(Value::Attrs(Rc::new(out.into())));
                }
                Ok(Value::Attrs(Rc::new(list_to_attrs_placed(out, offsets))))
            }),
        ),
        (
            "intersectAttrs",
            2,
            prim!(ev, a, {
                let x = attrs_arg(ev, &a[0], (0, "builtins.intersectAttrs"))?;
                let y = attrs_arg(ev, &a[1], (1, "builtins.intersectAttrs"))?;
                // Walk the smaller set, look names up in the larger one (`callPackage`
                // intersects a few formals with a whole package set).
                // Either way a subset of a set's names in its order: sorted and unique.
                let out = AttrMap::from_sorted(if x.len() < y.len() {
                    x.keys()
                        .filter_map(|k| y.get(k).map(|v| (k.clone(), v.clone())))
                        .collect()
                } else {
                    y.iter()
                        .filter(|(k, _)| x.contains_key(*k))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
                });
                // The attributes are the second set's: their positions are its.
                Ok(Value::Attrs(Rc::new(AttrSet {
                    map: out,
                    origin: y.origin.clone(),
                })))
            }),
        ),
        (
            "mapAttrs",
            2,
            prim!(ev, a, {
                let m = attrs_arg(ev, &a[1], (1, "builtins.mapAttrs"))?;
                // The names of a set, in its order: already sorted and unique.
                let out = AttrMap::from_sorted(
                    m.iter()
                        .map(|(k, v)| {
                            let partial =
                                Thunk::apply(a[0].clone(), Thunk::value(Value::str(k.clone())));
                            (k.clone(), Thunk::apply(partial, v.clone()))
                        })
                        .collect(),
                );
                Ok(Value::Attrs(Rc::new(out.into())))
            }),
        ),
        (
            "catAttrs",
            2,
            prim!(ev, a, {
                let n = string_arg(ev, &a[0], (0, "builtins.catAttrs"))?;
                let l = list_arg(ev, &a[1], (1, "builtins.catAttrs"))?;
                // At most one value a set: one allocation, no regrowing.
                let mut out = Vec::with_capacity(l.len());
                for t in l.iter() {
                    let m = match force(ev, t)? {
                        Value::Attrs(m) => m,
                        v => {
                            return Err(text_frame(
                                ev.type_error("a set", &v),
                                "while evaluating an element in the list passed as second argument to builtins.catAttrs",
                            ))
                        }
                    };
                    if let Some(v) = m.get(&n.s) {
                        out.push(v.clone());
                    }
                }
                Ok(Value::List(Rc::new(out)))
            }),
        ),
        (
            "functionArgs",
            1,
            prim!(ev, a, {
                match force(ev, &a[0])? {
                    Value::Lambda(l) => {
                        let mut out = AttrMap::new();
                        let mut origin = None;
                        if let firn_syntax::ExprKind::Lambda {
                            formals: Some(f), ..
                        } = &l.expr.kind
                        {
                            for fm in &f.formals {
                                out.insert(
                                    ev.interner.name(fm.name).into(),
                                    Thunk::value(Value::Bool(fm.default.is_some())),
                                );
                            }
                            origin = Some(Origin::Formals(f));
                        }
                        Ok(Value::Attrs(Rc::new(AttrSet { map: out, origin })))
                    }
                    Value::PrimOp(_) | Value::PrimOpApp(..) => {
                        Ok(Value::Attrs(Rc::new(AttrMap::new().into())))
                    }
                    _ => err("'functionArgs' requires a function"),
                }
            }),
        ),
        (
            "isAttrs",
            1,
            prim!(
                ev,
                a,
                Ok(Value::Bool(matches!(force(ev, &a[0])?, Value::Attrs(_))))
            ),
        ),
        (
            "isList",
            1,
            prim!(
                ev,
                a,
                Ok(Value::Bool(matches!(force(ev, &a[0])?, Value::List(_))))
            ),
        ),
        (
            "isString",
            1,
            prim!(
                ev,
                a,
                Ok(Value::Bool(matches!(force(ev, &a[0])?, Value::String(_))))
            ),
        ),
        (
            "isInt",
            1,
            prim!(
                ev,
                a,
                Ok(Value::Bool(matches!(force(ev, &a[0])?, Value::Int(_))))
            ),
        ),
        (
            "isFloat",
            1,
            prim!(
                ev,
                a,
                Ok(Value::Bool(matches!(force(ev, &a[0])?, Value::Float(_))))
            ),
        ),
        (
            "isBool",
            1,
            prim!(
                ev,
                a,
                Ok(Value::Bool(matches!(force(ev, &a[0])?, Value::Bool(_))))
            ),
        ),
        (
            "isNull",
            1,
            prim!(
                ev,
                a,
                Ok(Value::Bool(matches!(force(ev, &a[0])?, Value::Null)))
            ),
        ),
        (
            "isPath",
            1,
            prim!(
                ev,
                a,
                Ok(Value::Bool(matches!(force(ev, &a[0])?, Value::Path(_))))
            ),
        ),
        (
            "isFunction",
            1,
            prim!(
                ev,
                a,
                Ok(Value::Bool(matches!(
                    force(ev, &a[0])?,
                    Value::Lambda(_) | Value::PrimOp(_) | Value::PrimOpApp(..)
                )))
            ),
        ),
        (
            "typeOf",
            1,
            prim!(ev, a, Ok(Value::str(force(ev, &a[0])?.type_of()))),
        ),
        (
            "toString",
            1,
            prim!(ev, a, {
                let s = coerce_arg(ev, &a[0], true, false, (0, "builtins.toString"))?;
                Ok(Value::String(s))
            }),
        ),
        (
            "stringLength",
            1,
            prim!(ev, a, {
                let s = coerce_arg(ev, &a[0], false, true, (ONLY, "builtins.stringLength"))?;
                Ok(Value::Int(s.s.len() as i64))
            }),
        ),
        (
            "substring",
            3,
            prim!(ev, a, {
                let start = int(ev, &a[0]).map_err(|x| {
                    text_frame(
                        x,
                        "while evaluating the first argument (the start offset) passed to builtins.substring",
                    )
                })?;
                let len = int(ev, &a[1]).map_err(|x| {
                    text_frame(
                        x,
                        "while evaluating the second argument (the substring length) passed to builtins.substring",
                    )
                })?;
                let v = force(ev, &a[2])?;
                let s = ev.coerce_to_string(&v, false, true).map_err(|x| {
                    text_frame(
                        x,
                        "while evaluating the third argument (the string) passed to builtins.substring",
                    )
                })?;
                if start < 0 {
                    return err("negative start position in 'substring'");
                }
                let b = s.s.as_bytes();
                let st = (start as usize).min(b.len());
                let en = if len < 0 {
                    b.len()
                } else {
                    st.saturating_add(len as usize).min(b.len())
                };
                Ok(Value::String(NixString {
                    s: String::from_utf8_lossy(&b[st..en]).into_owned().into(),
                    context: s.context.clone(),
                }))
            }),
        ),
        (
            "concatStringsSep",
            2,
            prim!(ev, a, {
                let sep = string(ev, &a[0]).map_err(|x| {
                    text_frame(
                        x,
                        "while evaluating the first argument (the separator string) passed to builtins.concatStringsSep",
                    )
                })?;
                let l = match force(ev, &a[1])? {
                    Value::List(l) => l,
                    v => {
                        return Err(text_frame(
                            ev.type_error("a list", &v),
                            "while evaluating the second argument (the list of strings to concat) passed to builtins.concatStringsSep",
                        ))
                    }
                };
                let mut out = String::new();
                let mut ctx = (*sep.context).clone();
                for (i, t) in l.iter().enumerate() {
                    if i > 0 {
                        out.push_str(&sep.s);
                    }
                    let v = force(ev, t)?;
                    let s = ev.coerce_to_string(&v, false, true).map_err(|x| {
                        text_frame(
                            x,
                            "while evaluating one element of the list of strings to concat passed to builtins.concatStringsSep",
                        )
                    })?;
                    if i == 0 {
                        if l.len() == 1 && ctx.is_empty() {
                            // The one string is the result, as it is.
                            return Ok(Value::String(s));
                        }
                        // Room for elements as long as the first, each after a separator.
                        out.reserve((s.s.len() + sep.s.len()) * l.len());
                    }
                    out.push_str(&s.s);
                    ctx.extend(s.context.iter().cloned());
                }
                if ctx.is_empty() {
                    return Ok(Value::String(NixString::plain(out)));
                }
                Ok(Value::String(NixString {
                    s: out.into(),
                    context: Rc::new(ctx),
                }))
            }),
        ),
        (
            "replaceStrings",
            3,
            prim!(ev, a, {
                let from = list_arg(ev, &a[0], (0, "builtins.replaceStrings"))?;
                let to = list_arg(ev, &a[1], (1, "builtins.replaceStrings"))?;
                if from.len() != to.len() {
                    return err("'from' and 'to' arguments passed to builtins.replaceStrings have different lengths");
                }
                let mut froms = Vec::new();
                for t in from.iter() {
                    froms.push(
                        string(ev, t)
                            .map_err(|x| {
                                text_frame(
                                    x,
                                    "while evaluating one of the strings to replace passed to builtins.replaceStrings",
                                )
                            })?
                            .s,
                    );
                }
                let s = string_arg(ev, &a[2], (2, "builtins.replaceStrings"))?;
                let mut out = String::new();
                let mut i = 0;
                let bytes = s.s.as_bytes();
                let mut cache: Vec<Option<NixString>> = vec![None; to.len()];
                while i <= bytes.len() {
                    let mut matched = false;
                    for (k, f) in froms.iter().enumerate() {
                        if bytes[i..].starts_with(f.as_bytes()) {
                            if cache[k].is_none() {
                                cache[k] = Some(string(ev, &to[k]).map_err(|x| {
                                    text_frame(
                                        x,
                                        "while evaluating one of the replacement strings passed to builtins.replaceStrings",
                                    )
                                })?);
                            }
                            out.push_str(
                                &cache[k].as_ref().map(|x| x.s.clone()).unwrap_or_default(),
                            );
                            if f.is_empty() {
                                if i < bytes.len() {
                                    let ch =
                                        s.s[i..].chars().next().map(|c| c.len_utf8()).unwrap_or(1);
                                    out.push_str(&s.s[i..i + ch]);
                                    i += ch;
                                } else {
                                    i += 1;
                                }
                            } else {
                                i += f.len();
                            }
                            matched = true;
                            break;
                        }
                    }
                    if !matched {
                        if i < bytes.len() {
                            let ch = s.s[i..].chars().next().map(|c| c.len_utf8()).unwrap_or(1);
                            out.push_str(&s.s[i..i + ch]);
                            i += ch;
                        } else {
                            break;
                        }
                    }
                }
                Ok(Value::String(NixString {
                    s: out.into(),
                    context: s.context.clone(),
                }))
            }),
        ),
        (
            "throw",
            1,
            prim!(ev, a, {
                let s = string(ev, &a[0])?;
                Err(EvalError::with_kind(ErrorKind::Throw, s.s.to_string()))
            }),
        ),
        (
            "abort",
            1,
            prim!(ev, a, {
                let s = string(ev, &a[0])?;
                Err(EvalError::with_kind(
                    ErrorKind::Abort,
                    format!(
                        "evaluation aborted with the following error message: '{}'",
                        s.s
                    ),
                ))
            }),
        ),
        (
            "tryEval",
            1,
            prim!(ev, a, {
                let mut m = AttrMap::new();
                match force(ev, &a[0]) {
                    Ok(v) => {
                        m.insert("success".into(), Thunk::value(Value::Bool(true)));
                        m.insert("value".into(), Thunk::value(v));
                    }
                    Err(mut e) if e.catchable() => {
                        // Thunks that failed with it keep it from now on.
                        ev.settle(&mut e);
                        m.insert("success".into(), Thunk::value(Value::Bool(false)));
                        m.insert("value".into(), Thunk::value(Value::Bool(false)));
                    }
                    Err(e) => return Err(e),
                }
                Ok(Value::Attrs(Rc::new(m.into())))
            }),
        ),
        (
            "seq",
            2,
            prim!(ev, a, {
                force(ev, &a[0])?;
                force(ev, &a[1])
            }),
        ),
        (
            "deepSeq",
            2,
            prim!(ev, a, {
                let v = force(ev, &a[0])?;
                deep_force(ev, &v)?;
                force(ev, &a[1])
            }),
        ),
        (
            "trace",
            2,
            prim!(ev, a, {
                let v = force(ev, &a[0])?;
                let shown = match &v {
                    Value::String(s) => s.s.to_string(),
                    other => crate::print::print_value(ev, other, false)?,
                };
                crate::term::write_stderr_line(&format!("trace: {shown}"));
                force(ev, &a[1])
            }),
        ),
        (
            "import",
            1,
            prim!(ev, a, {
                let v = force(ev, &a[0])?;
                let p = match &v {
                    Value::Path(p) => p.to_string(),
                    Value::String(s) => crate::ifd::realise_path(ev, s.s.to_string(), &s.context)?,
                    Value::Attrs(_) => {
                        let s = ev.coerce_to_string(&v, false, false)?;
                        crate::ifd::realise_path(ev, s.s.to_string(), &s.context)?
                    }
                    other => return Err(ev.coerce_error(other)),
                };
                // Where the file is on disk (a chroot store keeps store paths elsewhere).
                let p = ev.store.real_path(&p).to_string_lossy().into_owned();
                ev.import(&p)
            }),
        ),
        (
            "baseNameOf",
            1,
            prim!(ev, a, {
                let s = coerce_arg(ev, &a[0], false, false, (0, "builtins.baseNameOf"))?;
                // One trailing slash is dropped (so "a//" gives ""), as Nix has always done.
                let t = s.s.strip_suffix('/').unwrap_or(&s.s);
                let b = t.rsplit('/').next().unwrap_or(t);
                Ok(Value::String(NixString {
                    s: b.into(),
                    context: s.context.clone(),
                }))
            }),
        ),
        (
            "dirOf",
            1,
            prim!(ev, a, {
                let v = force(ev, &a[0])?;
                let is_path = matches!(v, Value::Path(_));
                let s = ev
                    .coerce_to_string(&v, false, false)
                    .map_err(|x| arg_frame(x, (0, "'builtins.dirOf'")))?;
                let d = match s.s.rfind('/') {
                    Some(0) => "/".to_string(),
                    Some(i) => s.s[..i].to_string(),
                    None => ".".to_string(),
                };
                if is_path {
                    Ok(Value::Path(d.into()))
                } else {
                    Ok(Value::String(NixString {
                        s: d.into(),
                        context: s.context.clone(),
                    }))
                }
            }),
        ),
        (
            "unsafeDiscardStringContext",
            1,
            prim!(ev, a, {
                let s = string(ev, &a[0])?;
                Ok(Value::str(s.s))
            }),
        ),
        (
            "hasContext",
            1,
            prim!(
                ev,
                a,
                Ok(Value::Bool(!string(ev, &a[0])?.context.is_empty()))
            ),
        ),
        (
            "getEnv",
            1,
            prim!(ev, a, {
                let n = string_arg(ev, &a[0], (0, "builtins.getEnv"))?;
                if ev.hides_env() {
                    return Ok(Value::str(""));
                }
                Ok(Value::str(std::env::var(&*n.s).unwrap_or_default()))
            }),
        ),
        (
            "parseDrvName",
            1,
            prim!(ev, a, {
                let s = string_arg(ev, &a[0], (0, "builtins.parseDrvName"))?;
                let (name, version) = drv_name(&s.s);
                let mut m = AttrMap::new();
                m.insert("name".into(), Thunk::value(Value::str(name)));
                m.insert("version".into(), Thunk::value(Value::str(version)));
                Ok(Value::Attrs(Rc::new(m.into())))
            }),
        ),
        (
            "zipAttrsWith",
            2,
            prim!(ev, a, {
                function_arg(ev, &a[0], (0, "builtins.zipAttrsWith"))?;
                let l = list_arg(ev, &a[1], (1, "builtins.zipAttrsWith"))?;
                let mut zip = Zip::default();
                for (n, t) in l.iter().enumerate() {
                    let m = match force(ev, t)? {
                        Value::Attrs(m) => m,
                        v => {
                            return Err(text_frame(
                                ev.type_error("a set", &v),
                                "while evaluating a value of the list passed as second argument to builtins.zipAttrsWith",
                            ))
                        }
                    };
                    zip.add(&m, l.len() - n);
                }
                // Sorted and unique (see `Zip`).
                let out = AttrMap::from_sorted(
                    zip.finish()
                        .into_iter()
                        .map(|(k, vs)| {
                            let partial =
                                Thunk::apply(a[0].clone(), Thunk::value(Value::str(k.clone())));
                            (
                                k,
                                Thunk::apply(partial, Thunk::value(Value::List(Rc::new(vs)))),
                            )
                        })
                        .collect(),
                );
                Ok(Value::Attrs(Rc::new(out.into())))
            }),
        ),
        (
            "groupBy",
            2,
            prim!(ev, a, {
                let f = function_arg(ev, &a[0], (0, "builtins.groupBy"))?;
                let mut acc: BTreeMap<RcStr, Vec<Thunk>> = BTreeMap::new();
                for t in list_arg(ev, &a[1], (1, "builtins.groupBy"))?.iter() {
                    let k = ev.call(f.clone(), t.clone())?;
                    let k = string(ev, &Thunk::value(k)).map_err(|x| {
                        text_frame(
                            x,
                            "while evaluating the return value of the grouping function passed to builtins.groupBy",
                        )
                    })?;
                    acc.entry(k.s).or_default().push(t.clone());
                }
                // A B-tree's keys, in order: sorted and unique.
                let groups = AttrMap::from_sorted(
                    acc.into_iter()
                        .map(|(k, v)| (k, Thunk::value(Value::List(Rc::new(v)))))
                        .collect(),
                );
                Ok(Value::Attrs(Rc::new(groups.into())))
            }),
        ),
    ]
}

/// Put the builtins into the evaluator's global scope.
pub fn install(ev: &mut Evaluator) {
    let mut set = AttrMap::new();
    let mut globals: BTreeMap<&'static str, Thunk> = BTreeMap::new();
    let features = ev.features;
    for (name, arity, f) in table()
        .into_iter()
        .chain(crate::builtins_more::table())
        .chain(crate::builtins_more::search_table())
        .chain(crate::builtins_more::regex_table())
        .chain(crate::builtins_drv::table())
        .chain(crate::builtins_misc::table())
        .chain(crate::fetch::table())
        .chain(crate::flakeref::table())
        .chain(crate::flake::table())
        .chain(crate::fetch_git::table())
        .chain(crate::fetch_hg::table())
        .chain(crate::fetch_tree::table())
        .chain(crate::fetch_closure::table())
        .chain(crate::output_of::table())
        .filter(|(name, _, _)| features.has_builtin(name))
    {
        let t = Thunk::value(Value::PrimOp(Rc::new(PrimOp { name, arity, f })));
        set.insert(ev.name_rc_of(name), t.clone());
        globals.insert(name, t);
    }
    let consts: Vec<(&str, Value)> = vec![
        ("true", Value::Bool(true)),
        ("false", Value::Bool(false)),
        ("null", Value::Null),
        ("langVersion", Value::Int(6)),
        ("nixVersion", Value::str(crate::NIX_VERSION)),
        ("storeDir", Value::str("/nix/store")),
        ("currentSystem", Value::str("x86_64-linux")),
        (
            "nixPath",
            crate::builtins_more::nix_path_value(crate::builtins_more::nix_path_env()),
        ),
    ];
    for (name, v) in consts {
        let t = Thunk::value(v);
        set.insert(ev.name_rc_of(name), t.clone());
        globals.insert(name, t);
    }
    // `builtins.currentTime` (impure, only under `builtins`): seconds since the epoch, fixed
    // for the whole evaluation.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    set.insert(ev.name_rc_of("currentTime"), Thunk::value(Value::Int(now)));
    // `derivation` is Nix code over `derivationStrict`; it is parsed once the global scope it
    // closes over exists.
    let derivation = Thunk::value(Value::Null);
    set.insert(ev.name_rc_of("derivation"), derivation.clone());
    globals.insert("derivation", derivation.clone());
    let builtins = Thunk::value(Value::Null);
    set.insert(ev.name_rc_of("builtins"), builtins.clone());
    let set: Rc<AttrSet> = Rc::new(set.into());
    builtins.set(ThunkState::Done(Value::Attrs(set.clone())));
    ev.builtins = builtins.clone();
    let mut vars = BTreeMap::new();
    // Every builtin as `__name`, a few also without the prefix, and `builtins` itself.
    for (name, t) in set.iter() {
        vars.insert(ev.sym(&format!("__{name}")), t.clone());
    }
    for name in [
        "true",
        "false",
        "null",
        "throw",
        "abort",
        "map",
        "toString",
        "import",
        "baseNameOf",
        "dirOf",
        "isNull",
        "removeAttrs",
        "derivation",
        "placeholder",
        "fetchTarball",
        "fetchGit",
        "fetchMercurial",
        "fetchTree",
        "fromTOML",
        "scopedImport",
        "derivationStrict",
        "break",
    ] {
        if let Some(t) = globals.get(name) {
            vars.insert(ev.sym(name), t.clone());
        }
    }
    vars.insert(ev.sym("builtins"), builtins);
    for (sym, t) in &vars {
        crate::eval::set_by_symbol(&mut ev.globals, *sym, t.clone());
    }
    ev.base_env = Env::empty().push(Scope::Vars(VarMap::from(vars)));
    ev.builtins_sym = ev.sym("builtins");
    if let Some(Value::Attrs(set)) = ev.builtins.peek() {
        for (name, t) in set.iter() {
            if let Some(p) = t.peek_primop() {
                let s = ev.sym(name);
                crate::eval::set_by_symbol(&mut ev.builtin_ops, s, p);
            }
        }
    }
    match ev.parse_builtin(
        crate::builtins_drv::DERIVATION_NIX,
        "«nix-internal»/derivation-internal.nix",
    ) {
        Ok(e) => derivation.set(ThunkState::Pending(e, ev.base_env.clone())),
        Err(e) => unreachable!("the built-in definition of 'derivation' parses: {}", e.msg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `text` evaluated strictly and printed, or the error's message.
    fn run(text: &str) -> Result<String, String> {
        let go = |ev: &mut Evaluator| -> EResult<String> {
            let e = ev.parse(text, "«test»", "/")?;
            let v = ev.eval_top(e)?;
            deep_force(ev, &v)?;
            crate::print::print_value(ev, &v, true)
        };
        go(&mut Evaluator::new()).map_err(|x| x.msg.clone())
    }

    /// `removeAttrs`: names missing, repeated or in any order; every entry of a set bigger
    /// than a word of marks; no names; a name that is not a string (after the earlier names,
    /// as before); laziness of the values kept.
    #[test]
    fn remove_attrs() {
        let s = "{ a = 1; b = 2; c = 3; d = 4; }";
        for (names, out) in [
            ("[ ]", "{ a = 1; b = 2; c = 3; d = 4; }"),
            ("[ \"c\" \"a\" \"c\" \"zz\" ]", "{ b = 2; d = 4; }"),
            ("[ \"d\" \"b\" \"a\" \"c\" ]", "{ }"),
            ("[ \"a\" \"d\" ]", "{ b = 2; c = 3; }"),
        ] {
            assert_eq!(run(&format!("removeAttrs {s} {names}")).unwrap(), out);
        }
        let big = "builtins.listToAttrs (builtins.genList (i: { name = \"n${toString i}\"; \
                   value = i; }) 100)";
        assert_eq!(
            run(&format!(
                "builtins.attrNames (removeAttrs ({big}) (builtins.genList (i: \
                 \"n${{toString (i + 3)}}\") 99))"
            ))
            .unwrap(),
            "[ \"n0\" \"n1\" \"n2\" ]"
        );
        assert_eq!(
            run(&format!("builtins.length (builtins.attrNames (removeAttrs ({big}) [ \"n99\" \"n0\" \"n99\" ]))")).unwrap(),
            "98"
        );
        let e = run("removeAttrs { a = 1; } [ \"a\" 1 (throw \"later\") ]").unwrap_err();
        assert!(e.contains("expected a string but found an integer"), "{e}");
        let e = run("removeAttrs { a = 1; } [ (throw \"first\") 1 ]").unwrap_err();
        assert_eq!(e, "first");
        assert_eq!(
            run("(removeAttrs { a = throw \"lazy\"; b = 1; } [ \"c\" ]).b").unwrap(),
            "1"
        );
        // A new set each time (printing tells a set seen before).
        assert_eq!(
            run("let s = { a = 1; }; in [ s (removeAttrs s [ ]) ]").unwrap(),
            "[ { a = 1; } { a = 1; } ]"
        );
    }

    /// `zipAttrsWith`: names in order, values in the order of the sets, for sets with the
    /// same names, with different ones (enough to sort the later ones at the end) and mixed.
    #[test]
    fn zip_attrs_with() {
        let z = |sets: &str| run(&format!("builtins.zipAttrsWith (n: v: [ n ] ++ v) {sets}"));
        assert_eq!(z("[ ]").unwrap(), "{ }");
        assert_eq!(
            z("[ { b = 1; a = 2; } { a = 3; c = 4; } { } { c = 5; a = 6; b = 7; } ]").unwrap(),
            "{ a = [ \"a\" 2 3 6 ]; b = [ \"b\" 1 7 ]; c = [ \"c\" 4 5 ]; }"
        );
        // Each set a new name: most entries go the sorting way.
        let many = "builtins.genList (i: { \"k${toString (99 - i)}\" = i; x = i; \
                    \"j${toString (i / 2)}\" = -i; }) 100";
        let expect = run(&format!(
            "let sets = {many}; names = builtins.concatMap builtins.attrNames sets; in \
             builtins.listToAttrs (map (n: {{ name = n; value = [ n ] ++ \
             builtins.catAttrs n sets; }}) names)"
        ))
        .unwrap();
        assert_eq!(z(&format!("({many})")).unwrap(), expect);
        assert!(expect.contains("j24 = [ \"j24\" -48 -49 ]"), "{expect}");
        let e = z("[ { a = 1; } 2 ]").unwrap_err();
        assert!(e.contains("expected a set but found an integer"), "{e}");
        assert_eq!(
            run("builtins.attrNames (builtins.zipAttrsWith (throw \"lazy\") [ { a = 1; } ])")
                .unwrap_err(),
            "lazy"
        );
    }

    /// `filter` keeping all, some or none; an element kept once per occurrence.
    #[test]
    fn filter() {
        let f = |p: &str| run(&format!("builtins.filter ({p}) [ 1 2 3 2 ]"));
        assert_eq!(f("x: true").unwrap(), "[ 1 2 3 2 ]");
        assert_eq!(f("x: x == 2").unwrap(), "[ 2 2 ]");
        assert_eq!(f("x: false").unwrap(), "[ ]");
        assert_eq!(
            run("let l = [ 1 (x: x) ]; in builtins.filter (x: true) l == l").unwrap(),
            "true"
        );
        let e = f("x: 1").unwrap_err();
        assert!(e.contains("expected a Boolean but found an integer"), "{e}");
    }

    /// `catAttrs`, `intersectAttrs` and `listToAttrs` (input in order or not, repeated names:
    /// the first wins).
    #[test]
    fn attr_builtins() {
        assert_eq!(
            run("builtins.catAttrs \"a\" [ { a = 1; } { } { a = 2; b = 3; } ]").unwrap(),
            "[ 1 2 ]"
        );
        for (x, y, out) in [
            (
                "{ a = 1; c = 2; }",
                "{ a = 3; b = 4; c = 5; d = 6; e = 7; }",
                "{ a = 3; c = 5; }",
            ),
            (
                "{ a = 1; b = 2; c = 3; }",
                "{ c = 4; z = 5; }",
                "{ c = 4; }",
            ),
            ("{ }", "{ a = 1; }", "{ }"),
        ] {
            assert_eq!(
                run(&format!("builtins.intersectAttrs {x} {y}")).unwrap(),
                out
            );
        }
        let l = |pairs: &str| run(&format!("builtins.listToAttrs [ {pairs} ]"));
        assert_eq!(
            l("{ name = \"a\"; value = 1; } { name = \"b\"; value = 2; }").unwrap(),
            "{ a = 1; b = 2; }"
        );
        assert_eq!(
            l("{ name = \"b\"; value = 1; } { name = \"a\"; value = 2; } \
               { name = \"b\"; value = 3; }")
            .unwrap(),
            "{ a = 2; b = 1; }"
        );
        assert_eq!(
            l("{ name = \"a\"; value = 1; } { name = \"a\"; value = 2; }").unwrap(),
            "{ a = 1; }"
        );
    }
}
