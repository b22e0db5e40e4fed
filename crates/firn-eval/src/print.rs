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
    let slot = Some(Rc::as_ptr(&t.0) as *const () as usize);
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
