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

/// How much of a value an error message shows (current Nix's `errorPrintOptions`): nesting
/// depth, and the number of attributes, of list items and of a string's bytes. The
/// attribute and item budgets are for the whole value, not for each set or list in it.
const ERROR_MAX_DEPTH: usize = 10;
const ERROR_MAX_ATTRS: usize = 10;
const ERROR_MAX_ITEMS: usize = 10;
const ERROR_MAX_STRING: usize = 1024;

/// A value as error messages show it: nothing is forced (an unevaluated part is `«thunk»`),
/// nesting, attributes, list items and string length are limited as CppNix limits them,
/// `type` and `_type` come first in a set, a set or list met again is `«repeated»`, and
/// functions show where they were defined.
pub fn show_for_error(ev: &Evaluator, v: &Value) -> String {
    let mut p = ErrorPrinter {
        ev,
        out: String::new(),
        attrs_printed: 0,
        items_printed: 0,
        seen: HashSet::new(),
    };
    p.value(v, 0, None);
    p.out
}

/// The state of one [`show_for_error`]: what has been printed so far counts against the
/// budgets.
struct ErrorPrinter<'a> {
    ev: &'a Evaluator,
    out: String,
    attrs_printed: usize,
    items_printed: usize,
    /// Sets (by address) and lists (by the slot they were found in) printed so far.
    seen: HashSet<usize>,
}

impl ErrorPrinter<'_> {
    /// Print `v`, found at nesting `depth` (in the thunk at address `slot`, if any).
    fn value(&mut self, v: &Value, depth: usize, slot: Option<usize>) {
        match v {
            Value::Null => self.out.push_str("null"),
            Value::Bool(b) => self.out.push_str(if *b { "true" } else { "false" }),
            Value::Int(i) => self.out.push_str(&i.to_string()),
            Value::Float(f) => self.out.push_str(&format_float(*f)),
            Value::String(s) => self.string(&s.s),
            Value::Path(p) => self.out.push_str(p),
            Value::Lambda(l) => self.lambda(l),
            Value::PrimOp(p) => self.out.push_str(&format!("«primop {}»", p.name)),
            Value::PrimOpApp(p, _) => self
                .out
                .push_str(&format!("«partially applied primop {}»", p.name)),
            Value::Attrs(a) => self.attrs(a, depth),
            Value::List(l) => self.list(l, depth, slot),
        }
    }

    /// A string literal, cut after [`ERROR_MAX_STRING`] bytes.
    fn string(&mut self, s: &str) {
        if s.len() <= ERROR_MAX_STRING {
            literal_string(&mut self.out, s);
            return;
        }
        let mut cut = ERROR_MAX_STRING;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        literal_string(&mut self.out, &s[..cut]);
        self.out.push(' ');
        self.elided(s.len() - cut, "byte", "bytes");
    }

    /// `«lambda NAME @ FILE:LINE:COL»`.
    fn lambda(&mut self, l: &Lambda) {
        self.out.push_str("«lambda");
        if let Some(name) = firn_syntax::scope::lambda_name(l.expr) {
            self.out.push(' ');
            self.out.push_str(self.ev.interner.name(name));
        }
        if let Some((file, line, col)) = self.ev.positions.locate(l.expr.span.start) {
            self.out.push_str(&format!(" @ {file}:{line}:{col}"));
        }
        self.out.push('»');
    }

    /// `«N things elided»`.
    fn elided(&mut self, n: usize, one: &str, many: &str) {
        if n == 1 {
            self.out.push_str(&format!("«1 {one} elided»"));
        } else {
            self.out.push_str(&format!("«{n} {many} elided»"));
        }
    }

    /// A set: `type` and `_type` first, then the others by name, until the attribute
    /// budget is spent.
    fn attrs(&mut self, a: &Rc<AttrSet>, depth: usize) {
        // An empty set is never "repeated" (CppNix shares one empty set, so it would be).
        if !a.is_empty() && !self.seen.insert(Rc::as_ptr(a) as usize) {
            self.out.push_str("«repeated»");
            return;
        }
        if depth >= ERROR_MAX_DEPTH {
            self.out.push_str("{ ... }");
            return;
        }
        let important = |k: &str| k == "type" || k == "_type";
        let first = a.iter().filter(|(k, _)| important(k));
        let rest = a.iter().filter(|(k, _)| !important(k));
        self.out.push('{');
        for (printed, (k, t)) in first.chain(rest).enumerate() {
            self.out.push(' ');
            if self.attrs_printed >= ERROR_MAX_ATTRS {
                self.elided(a.len() - printed, "attribute", "attributes");
                break;
            }
            self.out.push_str(&error_attr_name(k));
            self.out.push_str(" = ");
            self.thunk(t, depth + 1);
            self.out.push(';');
            self.attrs_printed += 1;
        }
        self.out.push_str(" }");
    }

    /// A list, until the item budget is spent.
    fn list(&mut self, l: &[Thunk], depth: usize, slot: Option<usize>) {
        if let Some(slot) = slot.filter(|_| !l.is_empty()) {
            if !self.seen.insert(slot) {
                self.out.push_str("«repeated»");
                return;
            }
        }
        if depth >= ERROR_MAX_DEPTH {
            self.out.push_str("[ ... ]");
            return;
        }
        self.out.push('[');
        for (printed, t) in l.iter().enumerate() {
            self.out.push(' ');
            if self.items_printed >= ERROR_MAX_ITEMS {
                self.elided(l.len() - printed, "item", "items");
                break;
            }
            self.thunk(t, depth + 1);
            self.items_printed += 1;
        }
        self.out.push_str(" ]");
    }

    /// The value of a thunk if it has been computed, else `«thunk»`.
    fn thunk(&mut self, t: &Thunk, depth: usize) {
        match t.peek() {
            Some(v) => self.value(&v, depth, Some(t.addr())),
            None => self.out.push_str("«thunk»"),
        }
    }
}

/// An attribute name in an error message: bare when it could be a variable name (`or`
/// included), quoted otherwise, as current Nix prints a symbol (`printIdentifier`).
pub(crate) fn error_attr_name(k: &str) -> String {
    if k == "or" {
        k.to_string()
    } else {
        print_attr_name(k)
    }
}

/// The type of a value as CppNix's `showType` names it in messages: as
/// [`Value::type_name`], but a string with context and builtins are told apart.
pub fn show_type(v: &Value) -> String {
    match v {
        Value::String(s) if !s.context.is_empty() => "a string with context".to_string(),
        Value::PrimOp(p) => format!("the built-in function '{}'", p.name),
        Value::PrimOpApp(p, _) => format!("the partially applied built-in function '{}'", p.name),
        _ => v.type_name().to_string(),
    }
}
