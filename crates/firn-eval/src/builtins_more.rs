//! More builtins: JSON, hashing, versions, closures, warnings, and reading files (through the
//! evaluator's IO).

use crate::rc_str::RcStr;
use std::rc::Rc;

use firn_format::Hash;

use crate::builtins::{string_arg, PrimFn};
use crate::error::{err, EResult, EvalError};
use crate::eval::Evaluator;
use crate::value::*;

fn string(ev: &mut Evaluator, t: &Thunk) -> EResult<NixString> {
    match ev.force(t)? {
        Value::String(s) => Ok(s),
        v => Err(ev.type_error("a string", &v)),
    }
}

/// The path a file builtin (`readFile`, `pathExists`, ...) is given: as CppNix's
/// `realisePath`, anything that coerces to an absolute path (a path, a string, a set with
/// `__toString` or `outPath`).
fn path_of(ev: &mut Evaluator, t: &Thunk) -> EResult<String> {
    let p = unchecked_path_of(ev, t)?;
    ev.check_source_path(&p)?;
    Ok(p)
}

/// [`path_of`] before the check of pure and restricted evaluation: where the file is on disk
/// (in a chroot store, a store path's files are under its root), as CppNix's `realisePath`.
fn unchecked_path_of(ev: &mut Evaluator, t: &Thunk) -> EResult<String> {
    let v = ev.force(t)?;
    let ctx = Some(("while realising the context of a path", None));
    let (p, context) = crate::builtins_drv::coerce_path_value(ev, &v, ctx)?;
    let p = crate::ifd::realise_path(ev, p, &context)?;
    Ok(ev.store.real_path(&p).to_string_lossy().into_owned())
}

/// `builtins.toJSON`, collecting the context of the strings in `ctx`; paths are copied to the
/// store when `copy` (as `toJSON` and structured attributes do).
pub fn to_json(
    ev: &mut Evaluator,
    v: &Value,
    out: &mut String,
    ctx: &mut Vec<RcStr>,
    copy: bool,
) -> EResult<()> {
    to_json_at(ev, v, out, ctx, copy, None)
}

/// Where a value [`to_json_at`] writes was defined, for its error frames: the set and the
/// name of the attribute it is (looked up only when an error needs it).
type JsonPos<'a> = Option<(&'a AttrSet, &'a str)>;

/// The span offset of a [`JsonPos`].
#[cold]
#[inline(never)]
fn json_pos_offset(ev: &Evaluator, pos: JsonPos) -> Option<u32> {
    let (set, name) = pos?;
    ev.positions.attr_offset(set, name, &ev.interner)
}

/// [`to_json`] of a value found at `pos`.
fn to_json_at(
    ev: &mut Evaluator,
    v: &Value,
    out: &mut String,
    ctx: &mut Vec<RcStr>,
    copy: bool,
    pos: JsonPos,
) -> EResult<()> {
    // Nesting counts against max-call-depth, as in current Nix, so a deep structure is an
    // error, not a crash.
    if ev.depth > ev.max_call_depth {
        return Err(json_depth_error(ev, pos));
    }
    ev.depth += 1;
    let r = ev
        .check_stack()
        .and_then(|()| to_json_inner(ev, v, out, ctx, copy, pos));
    ev.depth -= 1;
    r
}

/// [`to_json_at`] of an element: forced at the depth of its nesting, as in current Nix.
fn to_json_thunk(
    ev: &mut Evaluator,
    t: &Thunk,
    out: &mut String,
    ctx: &mut Vec<RcStr>,
    copy: bool,
    pos: JsonPos,
) -> EResult<()> {
    if let Some(v) = t.peek() {
        return to_json_at(ev, &v, out, ctx, copy, pos);
    }
    // Forcing it is a call one deeper (for a builtin's application, one that fails before
    // it starts, at the element: current Nix's positions).
    if ev.depth > ev.max_call_depth
        || (ev.depth >= ev.max_call_depth && t.applied_site() != NOT_APPLIED)
    {
        return Err(json_depth_error(ev, pos));
    }
    ev.depth += 1;
    let r = ev.force(t).and_then(|v| {
        ev.check_stack()
            .and_then(|()| to_json_inner(ev, &v, out, ctx, copy, pos))
    });
    ev.depth -= 1;
    r
}

/// max-call-depth exceeded writing the value at `pos` (the error is there, as CppNix's).
#[cold]
#[inline(never)]
fn json_depth_error(ev: &Evaluator, pos: JsonPos) -> EvalError {
    let mut x = EvalError::new("stack overflow; max-call-depth exceeded");
    x.at = json_pos_offset(ev, pos).and_then(|o| ev.positions.render(o));
    x
}

/// A JSON string: `s` quoted and escaped, or CppNix's error when the bytes `s` stands for
/// are not UTF-8 (see [`firn_syntax::bytes`]).
fn json_string(out: &mut String, s: &str) -> EResult<()> {
    let s = firn_syntax::bytes::utf8_for_json(s).map_err(|e| {
        EvalError::new(format!(
            "JSON serialization error: [json.exception.type_error.316] {e}"
        ))
    })?;
    out.push_str(&serde_json::Value::String(s.into_owned()).to_string());
    Ok(())
}

fn to_json_inner(
    ev: &mut Evaluator,
    v: &Value,
    out: &mut String,
    ctx: &mut Vec<RcStr>,
    copy: bool,
    pos: JsonPos,
) -> EResult<()> {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => out.push_str(&i.to_string()),
        Value::Float(f) => out.push_str(
            &serde_json::Number::from_f64(*f)
                .map(|n| n.to_string())
                .unwrap_or_else(|| "null".into()),
        ),
        Value::String(s) => {
            ctx.extend(s.context.iter().cloned());
            json_string(out, &s.s)?
        }
        Value::Path(p) => {
            let s = if copy {
                ev.copy_path_to_store(p)?
            } else {
                NixString::plain(p.clone())
            };
            ctx.extend(s.context.iter().cloned());
            json_string(out, &s.s)?
        }
        Value::List(l) => {
            out.push('[');
            for (i, t) in l.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                if let Err(x) = to_json_thunk(ev, t, out, ctx, copy, pos) {
                    return Err(json_element_frame(ev, x, i, pos));
                }
            }
            out.push(']');
        }
        Value::Attrs(a) => {
            if !a.contains_key("__toString") && !a.contains_key("outPath") {
                return json_object(ev, a, out, ctx, copy);
            }
            return json_peel(ev, v, out, ctx, copy, pos, None);
        }
        other => return err(format!("cannot convert {} to JSON", other.type_name())),
    }
    Ok(())
}

/// "while evaluating list element at index I", at the list's position.
#[cold]
#[inline(never)]
fn json_element_frame(ev: &Evaluator, mut x: EvalError, i: usize, pos: JsonPos) -> EvalError {
    let text = format!("while evaluating list element at index {i}");
    x.trace.push(match json_pos_offset(ev, pos) {
        Some(o) => ev.frame(text, o),
        None => text,
    });
    x
}

/// What `toJSON` writes for `v`, a set with `__toString` or `outPath` (or what they gave), as
/// CppNix peels it: the result of `__toString` (called with the set) or the `outPath`, again
/// while that is a set with either; with the frames of each step. `to_string` is the set and
/// its `__toString` once one was called: its result must then be a string or a path (the
/// error is at that attribute), and a path is not copied (CppNix's quirk).
fn json_peel(
    ev: &mut Evaluator,
    v: &Value,
    out: &mut String,
    ctx: &mut Vec<RcStr>,
    copy: bool,
    pos: JsonPos,
    to_string: Option<&AttrSet>,
) -> EResult<()> {
    ev.check_stack()?;
    match v {
        Value::Attrs(a) => {
            if let Some(f) = a.get("__toString") {
                let r = match ev.force(&f.clone()) {
                    Ok(f) => ev.call(f, Thunk::value(v.clone())),
                    Err(x) => Err(x),
                };
                let r = r.map_err(|x| ev.peel_frame(x, a, "__toString", false))?;
                return json_peel(ev, &r, out, ctx, copy, pos, Some(a))
                    .map_err(|x| ev.peel_frame(x, a, "__toString", true));
            }
            if let Some(o) = a.get("outPath") {
                let o = ev
                    .force(&o.clone())
                    .map_err(|x| ev.peel_frame(x, a, "outPath", false))?;
                return json_peel(ev, &o, out, ctx, copy, pos, to_string)
                    .map_err(|x| ev.peel_frame(x, a, "outPath", true));
            }
            match to_string {
                Some(t) => Err(to_string_result_error(ev, "must", v, t)),
                None => json_object(ev, a, out, ctx, copy),
            }
        }
        Value::String(_) | Value::Path(_) => {
            to_json_at(ev, v, out, ctx, copy && to_string.is_none(), pos)
        }
        _ => match to_string {
            Some(t) => Err(to_string_result_error(ev, "should", v, t)),
            None => to_json_at(ev, v, out, ctx, copy, pos),
        },
    }
}

/// "`__toString` should/must return a string, but got …" (CppNix says "must" for a set), at
/// the `__toString` of `set`.
#[cold]
#[inline(never)]
fn to_string_result_error(ev: &Evaluator, verb: &str, v: &Value, set: &AttrSet) -> EvalError {
    let mut x = EvalError::new(format!(
        "`__toString` {verb} return a string, but got {}: {}",
        crate::print::show_type(v),
        crate::print::show_for_error(ev, v)
    ));
    x.at = json_pos_offset(ev, Some((set, "__toString"))).and_then(|o| ev.positions.render(o));
    x
}

/// A set as a JSON object (attributes in order).
fn json_object(
    ev: &mut Evaluator,
    a: &AttrSet,
    out: &mut String,
    ctx: &mut Vec<RcStr>,
    copy: bool,
) -> EResult<()> {
    out.push('{');
    for (i, (k, t)) in a.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_string(out, k)?;
        out.push(':');
        if let Err(x) = to_json_thunk(ev, t, out, ctx, copy, Some((a, k))) {
            return Err(json_attr_frame(ev, x, a, k));
        }
    }
    out.push('}');
    Ok(())
}

/// "while evaluating attribute 'K'", at the attribute.
#[cold]
#[inline(never)]
fn json_attr_frame(ev: &Evaluator, mut x: EvalError, a: &AttrSet, k: &str) -> EvalError {
    let text = format!("while evaluating attribute '{k}'");
    x.trace.push(match json_pos_offset(ev, Some((a, k))) {
        Some(o) => ev.frame(text, o),
        None => text,
    });
    x
}

/// The keys `genericClosure` has seen.
#[derive(Default)]
struct SeenKeys {
    /// A key of the first kind, for error messages when another kind turns up.
    first: Option<Value>,
    strings: std::collections::HashSet<RcStr, foldhash::fast::RandomState>,
    ints: std::collections::HashSet<i64, foldhash::fast::RandomState>,
    /// Other keys (floats, paths, lists, and ints once a float was seen), sorted.
    sorted: Vec<Value>,
}

impl SeenKeys {
    /// Add `key`; false if an equal key was there.
    fn insert(&mut self, ev: &mut Evaluator, key: Value) -> EResult<bool> {
        let Some(first) = &self.first else {
            self.first = Some(key.clone());
            return self.insert_kind(ev, key);
        };
        let same_kind = matches!(
            (first, &key),
            (Value::String(_), Value::String(_))
                | (
                    Value::Int(_) | Value::Float(_),
                    Value::Int(_) | Value::Float(_)
                )
                | (Value::Path(_), Value::Path(_))
                | (Value::List(_), Value::List(_))
        );
        if !same_kind {
            // Raises the comparison error: the new key is the left operand, as in
            // CppNix's `std::set` insertion.
            let first = first.clone();
            crate::builtins::less_than(ev, &key, &first)?;
        }
        if matches!(key, Value::Float(_)) && !self.ints.is_empty() {
            for i in self.ints.drain() {
                self.sorted.push(Value::Int(i));
            }
            self.sorted.sort_by(|a, b| match (a, b) {
                (Value::Int(x), Value::Int(y)) => x.cmp(y),
                _ => std::cmp::Ordering::Equal,
            });
        }
        self.insert_kind(ev, key)
    }

    fn insert_kind(&mut self, ev: &mut Evaluator, key: Value) -> EResult<bool> {
        match &key {
            Value::String(s) => return Ok(self.strings.insert(s.s.clone())),
            Value::Int(i) if self.sorted.is_empty() => return Ok(self.ints.insert(*i)),
            _ => {}
        }
        let (mut lo, mut hi) = (0, self.sorted.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            if crate::builtins::less_than(ev, &self.sorted[mid], &key)? {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo < self.sorted.len() && !crate::builtins::less_than(ev, &key, &self.sorted[lo])? {
            return Ok(false);
        }
        self.sorted.insert(lo, key);
        Ok(true)
    }
}

/// A `genericClosure` frame naming element `v` (`text` and the value, shown as in errors).
#[cold]
#[inline(never)]
fn closure_frame(ev: &Evaluator, mut x: EvalError, text: &str, v: &Value) -> EvalError {
    x.trace
        .push(format!("{text} {}", crate::print::show_for_error(ev, v)));
    x
}

/// The frames of an error comparing the key of `genericClosure` element `item` with those
/// of the elements kept (`out`), as current Nix: the element and the first kept one whose
/// key cannot be compared with it.
#[cold]
#[inline(never)]
fn compare_frames(
    ev: &mut Evaluator,
    x: EvalError,
    key: &Value,
    item: &Rc<AttrSet>,
    out: &[Thunk],
) -> EvalError {
    let this = Value::Attrs(item.clone());
    for t in out {
        let Some(Value::Attrs(other)) = t.peek() else {
            continue;
        };
        let Some(Some(k)) = other.get("key").map(Thunk::peek) else {
            continue;
        };
        if crate::builtins::less_than(ev, key, &k).is_err() {
            let x = closure_frame(ev, x, "with element", &Value::Attrs(other.clone()));
            return closure_frame(ev, x, "while comparing element", &this);
        }
    }
    closure_frame(ev, x, "while checking key of element", &this)
}

/// Nix strings cannot hold NUL bytes.
pub fn no_nul(s: &str) -> EResult<&str> {
    if s.contains('\0') {
        return err(format!(
            "input string '{}' cannot be represented as Nix string because it contains null bytes",
            s.replace('\0', "\u{2400}")
        ));
    }
    Ok(s)
}

fn from_json(j: serde_json::Value) -> EResult<Value> {
    Ok(match j {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None if n.is_u64() => {
                return err(format!(
                    "unsigned json number {n} outside of Nix integer range"
                ))
            }
            None => Value::Float(n.as_f64().unwrap_or(0.0)),
        },
        serde_json::Value::String(s) => Value::str(no_nul(&s)?),
        serde_json::Value::Array(a) => Value::List(Rc::new(
            a.into_iter()
                .map(|x| from_json(x).map(Thunk::value))
                .collect::<EResult<_>>()?,
        )),
        serde_json::Value::Object(o) => {
            let mut m = AttrMap::new();
            for (k, v) in o {
                no_nul(&k)?;
                m.insert(k.into(), Thunk::value(from_json(v)?));
            }
            Value::Attrs(Rc::new(m.into()))
        }
    })
}

/// Nix's version components: runs of digits, runs of other non-separator characters.
pub fn split_version(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < b.len() {
        if b[i] == '.' || b[i] == '-' {
            i += 1;
            continue;
        }
        let digit = b[i].is_ascii_digit();
        let start = i;
        while i < b.len() && b[i] != '.' && b[i] != '-' && b[i].is_ascii_digit() == digit {
            i += 1;
        }
        out.push(b[start..i].iter().collect());
    }
    out
}

fn component_less(a: &str, b: &str) -> bool {
    let an = a.parse::<u64>().ok();
    let bn = b.parse::<u64>().ok();
    match (an, bn) {
        (Some(x), Some(y)) => x < y,
        _ if a.is_empty() && bn.is_some() => true,
        _ if a == "pre" && b != "pre" => true,
        _ if b == "pre" => false,
        // Numbers are newer than words.
        (None, Some(_)) => true,
        (Some(_), None) => false,
        _ => a < b,
    }
}

/// `builtins.compareVersions`.
pub fn compare_versions(a: &str, b: &str) -> i64 {
    let x = split_version(a);
    let y = split_version(b);
    let n = x.len().max(y.len());
    for i in 0..n {
        let p = x.get(i).map(String::as_str).unwrap_or("");
        let q = y.get(i).map(String::as_str).unwrap_or("");
        if component_less(p, q) {
            return -1;
        }
        if component_less(q, p) {
            return 1;
        }
    }
    0
}

pub fn table() -> Vec<(&'static str, usize, PrimFn)> {
    vec![
        ("toJSON", 1, |ev, a| {
            let v = ev.force(&a[0])?;
            let mut s = String::new();
            let mut ctx = Vec::new();
            to_json(ev, &v, &mut s, &mut ctx, true)?;
            Ok(Value::String(NixString::with_context(s, ctx)))
        }),
        ("fromJSON", 1, |ev, a| {
            let s = string_arg(ev, &a[0], (0, "builtins.fromJSON"))?;
            let j: serde_json::Value = serde_json::from_str(&s.s)
                .map_err(|e| EvalError::new(format!("while parsing JSON: {e}")))?;
            from_json(j)
        }),
        ("hashString", 2, |ev, a| {
            let algo = string_arg(ev, &a[0], (0, "builtins.hashString"))?;
            let algo = crate::builtins_misc::algo(&algo.s)?;
            let s = string_arg(ev, &a[1], (1, "builtins.hashString"))?;
            Ok(Value::str(Hash::digest(algo, s.s.as_bytes()).to_base16()))
        }),
        ("compareVersions", 2, |ev, a| {
            let x = string_arg(ev, &a[0], (0, "builtins.compareVersions"))?;
            let y = string_arg(ev, &a[1], (1, "builtins.compareVersions"))?;
            Ok(Value::Int(compare_versions(&x.s, &y.s)))
        }),
        ("splitVersion", 1, |ev, a| {
            let s = string_arg(ev, &a[0], (0, "builtins.splitVersion"))?;
            Ok(Value::List(Rc::new(
                split_version(&s.s)
                    .into_iter()
                    .map(|c| Thunk::value(Value::str(c)))
                    .collect(),
            )))
        }),
        ("genericClosure", 1, |ev, a| {
            let args = crate::builtins::attrs_arg(ev, &a[0], (0, "builtins.genericClosure"))?;
            // As CppNix: the start set (an empty one needs no operator), then the operator.
            let missing = |name: &str| {
                crate::builtins::text_frame(
                    EvalError::new(crate::eval::attr_missing_text(name)),
                    "in the attrset passed as argument to builtins.genericClosure",
                )
            };
            let start = args.get("startSet").ok_or_else(|| missing("startSet"))?;
            // A queue, as CppNix's work list: items in the order they were found.
            let mut work: std::collections::VecDeque<Thunk> = match ev.force(start)? {
                Value::List(l) if l.is_empty() => return Ok(Value::List(l)),
                Value::List(l) => l.iter().cloned().collect(),
                v => {
                    return Err(crate::builtins::text_frame(
                        ev.type_error("a list", &v),
                        "while evaluating the 'startSet' attribute passed as argument to builtins.genericClosure",
                    ))
                }
            };
            let op = args.get("operator").ok_or_else(|| missing("operator"))?;
            let op = crate::builtins::function(ev, op).map_err(|x| {
                crate::builtins::text_frame(
                    x,
                    "while evaluating the 'operator' attribute passed as argument to builtins.genericClosure",
                )
            })?;
            // Keys are compared with Nix's ordering, as CppNix's std::set with CompareValues:
            // keys that cannot be compared (sets, different types) are an error. Strings and
            // integers (nearly all keys) go in hash sets; other keys in a sorted vector.
            let mut seen = SeenKeys::default();
            let mut out = Vec::new();
            while let Some(t) = work.pop_front() {
                let item = match ev.force(&t) {
                    Ok(Value::Attrs(m)) => m,
                    Ok(v) => {
                        let x = ev.type_error("a set", &v);
                        return Err(closure_frame(ev, x, "in genericClosure element", &v));
                    }
                    Err(x) => return Err(x),
                };
                let Some(key) = item.get("key").cloned() else {
                    let x = EvalError::new("attribute 'key' missing");
                    let v = Value::Attrs(item);
                    return Err(closure_frame(ev, x, "in genericClosure element", &v));
                };
                let key = ev.force(&key)?;
                match seen.insert(ev, key.clone()) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(x) => return Err(compare_frames(ev, x, &key, &item, &out)),
                }
                out.push(t.clone());
                let r = match ev.call(op.clone(), t) {
                    Ok(Value::List(l)) => {
                        // CppNix forces each new item as it adds it.
                        l.iter().try_for_each(|x| {
                            ev.force(x)?;
                            work.push_back(x.clone());
                            Ok(())
                        })
                    }
                    Ok(v) => Err(crate::builtins::text_frame(
                        ev.type_error("a list", &v),
                        "while evaluating the return value of the `operator` passed to builtins.genericClosure",
                    )),
                    Err(x) => Err(x),
                };
                if let Err(x) = r {
                    let v = Value::Attrs(item);
                    return Err(closure_frame(
                        ev,
                        x,
                        "while calling operator on genericClosure element",
                        &v,
                    ));
                }
            }
            Ok(Value::List(Rc::new(out)))
        }),
        ("warn", 2, |ev, a| {
            let msg = string(ev, &a[0])?;
            crate::term::write_stderr_line(&warning_text(&msg.s));
            if ev.abort_on_warn {
                return err("aborting to reveal stack trace of warning, as abort-on-warn is set");
            }
            ev.force(&a[1])
        }),
        ("readFile", 1, |ev, a| {
            let p = path_of(ev, &a[0])?;
            let bytes =
                std::fs::read(&p).map_err(|e| crate::error::io_error("reading file", &p, &e))?;
            if bytes.contains(&0) {
                return err(format!(
                    "the contents of the file '{p}' cannot be represented as a Nix string"
                ));
            }
            Ok(Value::str(firn_syntax::bytes::decode(bytes)))
        }),
        ("pathExists", 1, |ev, a| {
            // A path evaluation may not read does not exist for it, as in CppNix.
            let p = unchecked_path_of(ev, &a[0])?;
            let readable = ev.check_source_path(&p).is_ok();
            Ok(Value::Bool(
                readable && std::fs::symlink_metadata(&p).is_ok(),
            ))
        }),
        ("readFileType", 1, |ev, a| {
            let p = path_of(ev, &a[0])?;
            let m = std::fs::symlink_metadata(&p)
                .map_err(|e| crate::error::io_error("getting status of", &p, &e))?;
            Ok(Value::str(file_type(&m.file_type())))
        }),
        ("readDir", 1, |ev, a| {
            let p = path_of(ev, &a[0])?;
            let mut m = AttrMap::new();
            for e in std::fs::read_dir(&p)
                .map_err(|e| crate::error::io_error("reading directory", &p, &e))?
            {
                let e = e.map_err(|e| EvalError::new(format!("reading directory '{p}': {e}")))?;
                let ft = e
                    .file_type()
                    .map_err(|e| EvalError::new(format!("reading directory '{p}': {e}")))?;
                m.insert(
                    e.file_name().to_string_lossy().into_owned().into(),
                    Thunk::value(Value::str(file_type(&ft))),
                );
            }
            Ok(Value::Attrs(Rc::new(m.into())))
        }),
    ]
}

fn file_type(ft: &std::fs::FileType) -> &'static str {
    if ft.is_dir() {
        "directory"
    } else if ft.is_symlink() {
        "symlink"
    } else if ft.is_file() {
        "regular"
    } else {
        "unknown"
    }
}

/// The entries of `NIX_PATH`.
pub fn nix_path_env() -> Vec<String> {
    std::env::var("NIX_PATH")
        .map(|p| crate::search_path::split_nix_path(&p))
        .unwrap_or_default()
}

/// Search path entries (`PREFIX=PATH` or `PATH`: `-I` entries, then `NIX_PATH`'s) as
/// `__nixPath`'s list of `{ prefix; path; }`.
pub fn nix_path_value(entries: Vec<String>) -> Value {
    let items = entries
        .into_iter()
        .map(|e| {
            let (prefix, path) = match e.split_once('=') {
                Some((p, v)) => (p.to_string(), v.to_string()),
                None => (String::new(), e),
            };
            let mut m = AttrMap::new();
            m.insert("prefix".into(), Thunk::value(Value::str(prefix)));
            m.insert("path".into(), Thunk::value(Value::str(path)));
            Thunk::value(Value::Attrs(Rc::new(m.into())))
        })
        .collect();
    Value::List(Rc::new(items))
}

/// `builtins.findFile`: the first entry of the search path under which `name` exists.
pub fn find_file(ev: &mut Evaluator, search: &Thunk, name: &str) -> EResult<Value> {
    let list = match ev.force(search)? {
        Value::List(l) => l,
        v => return Err(ev.type_error("a list", &v)),
    };
    for t in list.iter() {
        let entry = match ev.force(t)? {
            Value::Attrs(m) => m,
            v => return Err(ev.type_error("a set", &v)),
        };
        let prefix = match entry.get("prefix") {
            Some(p) => string(ev, &p.clone())?.s.to_string(),
            None => String::new(),
        };
        let path = match entry.get("path") {
            Some(p) => match ev.force(&p.clone())? {
                Value::Path(x) => x.to_string(),
                Value::String(s) => s.s.to_string(),
                v => return Err(ev.type_error("a path", &v)),
            },
            None => return err("attribute 'path' missing"),
        };
        let rest = if prefix.is_empty() {
            Some(name.to_string())
        } else if name == prefix {
            Some(String::new())
        } else {
            name.strip_prefix(&format!("{prefix}/")).map(str::to_string)
        };
        if let Some(rest) = rest {
            // Resolved only once its prefix matches (a URI is downloaded then).
            let Some(dir) = crate::search_path::resolve_entry(ev, &path)? else {
                continue;
            };
            let candidate = if rest.is_empty() {
                dir
            } else {
                format!("{}/{}", dir.trim_end_matches('/'), rest)
            };
            if std::path::Path::new(&candidate).exists() {
                let found = crate::eval::canon_path(&candidate);
                ev.check_source_path(&found)?;
                return Ok(Value::Path(found.into()));
            }
        }
    }
    // Nix's own files (`<nix/fetchurl.nix>`), where the search path has none of that name.
    if let Some(rest) = name.strip_prefix("nix/") {
        return Ok(Value::Path(
            format!("{}{rest}", crate::eval::COREPKGS).into(),
        ));
    }
    if ev.pure() {
        return Err(EvalError::with_kind(
            crate::error::ErrorKind::Throw,
            format!(
                "cannot look up '<{name}>' in pure evaluation mode (use '--impure' to override)"
            ),
        ));
    }
    Err(EvalError::with_kind(
        crate::error::ErrorKind::Throw,
        format!(
            "file '{name}' was not found in the Nix search path (add it using $NIX_PATH or -I)"
        ),
    ))
}

pub fn search_table() -> Vec<(&'static str, usize, PrimFn)> {
    vec![("findFile", 2, |ev, a| {
        let name = string(ev, &a[1])?;
        find_file(ev, &a[0], &name.s)
    })]
}

/// Compile a POSIX extended regular expression with the `regex` crate (the syntaxes agree on
/// what Nix code uses; POSIX classes like `[[:alpha:]]` are supported by both). Compiled
/// expressions are cached for the evaluation.
fn compile_regex(ev: &mut Evaluator, re: &str, anchored: bool) -> EResult<Rc<regex::Regex>> {
    let cache = &mut ev.regex_cache[usize::from(!anchored)];
    if let Some(r) = cache.get(re) {
        return Ok(r.clone());
    }
    // In POSIX expressions `.` matches newlines too.
    let pattern = if anchored {
        format!("(?s)^(?:{re})$")
    } else {
        format!("(?s){re}")
    };
    let r = regex::Regex::new(&pattern).map_err(|e| {
        EvalError::new(match e {
            regex::Error::CompiledTooBig(_) => {
                format!("memory limit exceeded by regular expression '{re}'")
            }
            _ => format!("invalid regular expression '{re}'"),
        })
    })?;
    let r = Rc::new(r);
    cache.insert(re.to_string(), r.clone());
    Ok(r)
}

fn group_value(m: Option<regex::Match<'_>>) -> Thunk {
    Thunk::value(match m {
        Some(m) => Value::str(m.as_str()),
        None => Value::Null,
    })
}

pub fn regex_table() -> Vec<(&'static str, usize, PrimFn)> {
    vec![
        ("match", 2, |ev, a| {
            let re = string_arg(ev, &a[0], (0, "builtins.match"))?;
            let s = string_arg(ev, &a[1], (1, "builtins.match"))?;
            let r = compile_regex(ev, &re.s, true)?;
            match r.captures(&s.s) {
                None => Ok(Value::Null),
                Some(c) => Ok(Value::List(Rc::new(
                    (1..c.len()).map(|i| group_value(c.get(i))).collect(),
                ))),
            }
        }),
        ("split", 2, |ev, a| {
            let re = string_arg(ev, &a[0], (0, "builtins.split"))?;
            let s = string_arg(ev, &a[1], (1, "builtins.split"))?;
            let r = compile_regex(ev, &re.s, false)?;
            let mut out = Vec::new();
            let mut last = 0;
            for c in r.captures_iter(&s.s) {
                let whole = c.get(0).expect("group 0 is the whole match");
                out.push(Thunk::value(Value::str(&s.s[last..whole.start()])));
                out.push(Thunk::value(Value::List(Rc::new(
                    (1..c.len()).map(|i| group_value(c.get(i))).collect(),
                ))));
                last = whole.end();
            }
            out.push(Thunk::value(Value::str(&s.s[last..])));
            Ok(Value::List(Rc::new(out)))
        }),
    ]
}

/// `builtins.warn`'s message as current Nix lays it out: after `evaluation warning: `, the
/// lines after the first indented under the first (each without trailing blanks); a message
/// that starts with a line break is printed as it is, right after the colon.
fn warning_text(msg: &str) -> String {
    const PREFIX: &str = "evaluation warning:";
    let msg = msg.trim_end_matches([' ', '\n', '\r', '\t']);
    if msg.starts_with('\n') {
        return format!("{PREFIX}{msg}");
    }
    let text = crate::error::indent_lines(msg, PREFIX.len() + 1);
    if text.is_empty() {
        return PREFIX.to_string();
    }
    format!("{PREFIX} {text}")
}

#[cfg(test)]
mod warning_tests {
    use super::warning_text;

    #[test]
    fn warnings_are_laid_out_as_current_nix_does() {
        assert_eq!(warning_text("foo"), "evaluation warning: foo");
        assert_eq!(
            warning_text("foo\nbar  \n\nbaz\n"),
            "evaluation warning: foo\n                    bar\n\n                    baz"
        );
        assert_eq!(warning_text("\nfoo\nbar"), "evaluation warning:\nfoo\nbar");
        assert_eq!(warning_text(""), "evaluation warning:");
    }
}
