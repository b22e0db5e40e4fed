//! Printing values as `nix-instantiate --eval` does.

use std::collections::HashSet;
use std::rc::Rc;

use firn_syntax::show::{format_float, literal_string};

use crate::error::EResult;
use crate::eval::Evaluator;
use crate::value::*;

/// Print `v`; with `strict`, force everything (`--strict`), else show unevaluated parts as
/// `<CODE>`.
pub fn print_value(ev: &mut Evaluator, v: &Value, strict: bool) -> EResult<String> {
    let mut out = String::new();
    let mut seen = HashSet::new();
    go(ev, v, strict, &mut out, &mut seen, None)?;
    Ok(out)
}

/// `slot`: the thunk the value was found in. As CppNix, a set is "repeated" when its
/// attributes were printed before, a list when the same slot (value) was: the top-level list
/// is a copy, so `let x = [ x ]; in x` prints `[ [ «repeated» ] ]`.
fn go(
    ev: &mut Evaluator,
    v: &Value,
    strict: bool,
    out: &mut String,
    seen: &mut HashSet<usize>,
    slot: Option<usize>,
) -> EResult<()> {
    ev.check_stack()?;
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => out.push_str(&i.to_string()),
        Value::Float(f) => out.push_str(&format_float(*f)),
        Value::String(s) => literal_string(out, &s.s),
        Value::Path(p) => out.push_str(p),
        Value::Lambda(_) => out.push_str("<LAMBDA>"),
        Value::PrimOp(_) => out.push_str("<PRIMOP>"),
        Value::PrimOpApp(..) => out.push_str("<PRIMOP-APP>"),
        Value::Attrs(a) => {
            if !a.is_empty() && !seen.insert(Rc::as_ptr(a) as usize) {
                out.push_str("«repeated»");
                return Ok(());
            }
            if ev.is_derivation(a)? {
                if let Some(p) = a.get("drvPath") {
                    let p = ev.force(&p.clone())?;
                    if let Value::String(s) = p {
                        out.push_str(&format!("«derivation {}»", s.s));
                        return Ok(());
                    }
                }
            }
            out.push_str("{ ");
            for (k, t) in a.iter() {
                out.push_str(&print_attr_name(k));
                out.push_str(" = ");
                item(ev, t, strict, out, seen)?;
                out.push_str("; ");
            }
            out.push('}');
        }
        Value::List(l) => {
            if let Some(slot) = slot.filter(|_| !l.is_empty()) {
                if !seen.insert(slot) {
                    out.push_str("«repeated»");
                    return Ok(());
                }
            }
            out.push_str("[ ");
            for t in l.iter() {
                item(ev, t, strict, out, seen)?;
                out.push(' ');
            }
            out.push(']');
        }
    }
    Ok(())
}

fn item(
    ev: &mut Evaluator,
    t: &Thunk,
    strict: bool,
    out: &mut String,
    seen: &mut HashSet<usize>,
) -> EResult<()> {
    let slot = Some(t.addr());
    if strict {
        let v = ev.force(t)?;
        go(ev, &v, strict, out, seen, slot)
    } else {
        match t.peek() {
            Some(v) => go(ev, &v, strict, out, seen, slot),
            None => {
                out.push_str("<CODE>");
                Ok(())
            }
        }
    }
}

/// Attribute names print bare when they are identifiers, quoted otherwise.
fn print_attr_name(k: &str) -> String {
    let is_id = k
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '\'' | '-'));
    let keyword = matches!(
        k,
        "if" | "then" | "else" | "assert" | "with" | "let" | "in" | "rec" | "inherit" | "or"
    );
    if is_id && !keyword {
        k.to_string()
    } else {
        let mut s = String::new();
        literal_string(&mut s, k);
        s
    }
}

/// How much of a value an error message shows (current Nix's `errorPrintOptions`).
const ERROR_MAX_DEPTH: usize = 10;
const ERROR_MAX_ITEMS: usize = 10;
const ERROR_MAX_STRING: usize = 1024;

/// A value as error messages show it: nothing is forced (an unevaluated part is `«thunk»`),
/// nesting, list items, attributes and string length are limited, functions show where they
/// were defined.
pub fn show_for_error(ev: &Evaluator, v: &Value) -> String {
    let mut out = String::new();
    show_limited(ev, v, 0, &mut out);
    out
}

fn show_limited(ev: &Evaluator, v: &Value, depth: usize, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => out.push_str(&i.to_string()),
        Value::Float(f) => out.push_str(&format_float(*f)),
        Value::String(s) => {
            if s.s.len() > ERROR_MAX_STRING {
                let mut cut = ERROR_MAX_STRING;
                while !s.s.is_char_boundary(cut) {
                    cut -= 1;
                }
                literal_string(out, &s.s[..cut]);
                out.push_str(&format!("«{} bytes elided»", s.s.len() - cut));
            } else {
                literal_string(out, &s.s);
            }
        }
        Value::Path(p) => out.push_str(p),
        Value::Lambda(l) => {
            out.push_str("«lambda");
            if let Some(name) = firn_syntax::scope::lambda_name(l.expr) {
                out.push(' ');
                out.push_str(ev.interner.name(name));
            }
            if let Some((file, line, col)) = ev.positions.locate(l.expr.span.start) {
                out.push_str(&format!(" @ {file}:{line}:{col}"));
            }
            out.push('»');
        }
        Value::PrimOp(p) => out.push_str(&format!("«primop {}»", p.name)),
        Value::PrimOpApp(p, _) => out.push_str(&format!("«partially applied primop {}»", p.name)),
        Value::Attrs(a) => {
            if a.is_empty() {
                out.push_str("{ }");
                return;
            }
            if let (Some(t), Some(d)) = (a.get("type"), a.get("drvPath")) {
                if let (Some(Value::String(ty)), Some(Value::String(p))) = (t.peek(), d.peek()) {
                    if &*ty.s == "derivation" {
                        out.push_str(&format!("«derivation {}»", p.s));
                        return;
                    }
                }
            }
            if depth >= ERROR_MAX_DEPTH {
                out.push_str("{ ... }");
                return;
            }
            out.push_str("{ ");
            for (k, t) in a.iter().take(ERROR_MAX_ITEMS) {
                out.push_str(&print_attr_name(k));
                out.push_str(" = ");
                show_thunk(ev, t, depth + 1, out);
                out.push_str("; ");
            }
            if a.len() > ERROR_MAX_ITEMS {
                out.push_str(&format!(
                    "«{} attributes elided» ",
                    a.len() - ERROR_MAX_ITEMS
                ));
            }
            out.push('}');
        }
        Value::List(l) => {
            if l.is_empty() {
                out.push_str("[ ]");
                return;
            }
            if depth >= ERROR_MAX_DEPTH {
                out.push_str("[ ... ]");
                return;
            }
            out.push_str("[ ");
            for t in l.iter().take(ERROR_MAX_ITEMS) {
                show_thunk(ev, t, depth + 1, out);
                out.push(' ');
            }
            if l.len() > ERROR_MAX_ITEMS {
                out.push_str(&format!("«{} items elided» ", l.len() - ERROR_MAX_ITEMS));
            }
            out.push(']');
        }
    }
}

fn show_thunk(ev: &Evaluator, t: &Thunk, depth: usize, out: &mut String) {
    match t.peek() {
        Some(v) => show_limited(ev, &v, depth, out),
        None => out.push_str("«thunk»"),
    }
}
