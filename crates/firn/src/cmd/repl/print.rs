//! Values as the repl shows them (CppNix 2.8's repl printer): sets with sorted attributes and
//! lists to a depth (one level for plain expressions, all for `:p`; deeper ones as
//! `{ ... }` and `[ ... ]`), derivations as `«derivation /nix/store/….drv»`, functions as
//! `«lambda @ FILE:LINE:COL»`, `«primop»` and `«primop-app»`, a set or list met again as
//! `«repeated»`, and a `throw` or failed `assert` inside a value as `«error: …»` in its
//! place (other errors stop the printing). Colours when asked (stdout on a terminal).

use std::collections::HashSet;

use firn_eval::error::{EResult, EvalError};
use firn_eval::value::{Thunk, Value};
use firn_eval::Evaluator;

const CYAN: &str = "\x1b[36;1m";
const MAGENTA: &str = "\x1b[35;1m";
const GREEN: &str = "\x1b[32;1m";
const BLUE: &str = "\x1b[34;1m";
const RED: &str = "\x1b[31;1m";
const NORMAL: &str = "\x1b[0m";

/// Print `v` (already forced) into `out`, `max_depth` levels of sets and lists deep. On an
/// error, `out` holds what was printed before it.
pub fn print_value(
    ev: &mut Evaluator,
    v: &Value,
    max_depth: usize,
    color: bool,
    out: &mut String,
) -> EResult<()> {
    let mut p = Printer {
        ev,
        color,
        out,
        seen: HashSet::new(),
    };
    p.value(v, max_depth)
}

struct Printer<'a> {
    ev: &'a mut Evaluator,
    color: bool,
    out: &'a mut String,
    /// The thunks of the sets and lists printed so far.
    seen: HashSet<usize>,
}

impl Printer<'_> {
    fn colored(&mut self, color: &str, s: &str) {
        if self.color {
            self.out.push_str(color);
            self.out.push_str(s);
            self.out.push_str(NORMAL);
        } else {
            self.out.push_str(s);
        }
    }

    fn value(&mut self, v: &Value, depth: usize) -> EResult<()> {
        match v {
            Value::Int(i) => self.colored(CYAN, &i.to_string()),
            Value::Bool(b) => self.colored(CYAN, if *b { "true" } else { "false" }),
            Value::Null => self.colored(CYAN, "null"),
            Value::Float(f) => self.out.push_str(&firn_syntax::show::format_float(*f)),
            Value::String(s) => {
                let mut q = String::new();
                quote(&mut q, &s.s);
                self.colored(MAGENTA, &q);
            }
            Value::Path(p) => self.colored(GREEN, p),
            Value::Attrs(a) => {
                if self.ev.is_derivation(a)? {
                    self.out.push_str("«derivation ");
                    match a.get("drvPath").cloned() {
                        Some(t) => {
                            let r = self.drv_path(&t);
                            let p = r.map_err(|mut e| {
                                // As CppNix: the error points at the `drvPath` attribute.
                                if e.at.is_none() {
                                    let ev = &*self.ev;
                                    e.at = ev
                                        .positions
                                        .attr_offset(a, "drvPath", &ev.interner)
                                        .and_then(|o| ev.positions.render(o));
                                }
                                e
                            })?;
                            self.out.push_str(&p);
                        }
                        None => self.out.push_str("???"),
                    }
                    self.out.push('»');
                } else if depth > 0 {
                    self.out.push_str("{ ");
                    for (k, t) in a.iter() {
                        if is_plain_name(k) {
                            self.out.push_str(k);
                        } else {
                            quote(self.out, k);
                        }
                        self.out.push_str(" = ");
                        self.child(t, depth - 1)?;
                        self.out.push_str("; ");
                    }
                    self.out.push('}');
                } else {
                    self.out.push_str("{ ... }");
                }
            }
            Value::List(l) => {
                self.out.push_str("[ ");
                if depth > 0 {
                    for t in l.iter() {
                        self.child(t, depth - 1)?;
                        self.out.push(' ');
                    }
                } else {
                    self.out.push_str("... ");
                }
                self.out.push(']');
            }
            Value::Lambda(l) => {
                let pos = self.ev.positions.shown(l.expr.span.start);
                self.colored(BLUE, &format!("«lambda @ {pos}»"));
            }
            Value::PrimOp(_) => self.colored(MAGENTA, "«primop»"),
            Value::PrimOpApp(..) => self.colored(BLUE, "«primop-app»"),
        }
        Ok(())
    }

    /// A derivation's `drvPath`, which must be a store path.
    fn drv_path(&mut self, t: &Thunk) -> EResult<String> {
        let p = self.ev.force(t)?;
        let p = self.ev.coerce_to_string(&p, false, false)?;
        let dir = &self.ev.store.dir;
        match dir.parse(&p.s) {
            Ok(sp) => Ok(dir.display(&sp).to_string()),
            Err(_) => Err(EvalError::new(format!(
                "path '{}' is not in the Nix store",
                p.s
            ))),
        }
    }

    /// An attribute's value or a list element: `«repeated»` for a set or list printed
    /// before, `«error: …»` for a `throw` or failed assertion.
    fn child(&mut self, t: &Thunk, depth: usize) -> EResult<()> {
        let slot = t.addr();
        if self.seen.contains(&slot) {
            self.out.push_str("«repeated»");
            return Ok(());
        }
        let r = match self.ev.force(t) {
            Ok(v) => {
                if matches!(v, Value::Attrs(_) | Value::List(_)) {
                    self.seen.insert(slot);
                }
                self.value(&v, depth)
            }
            Err(e) => Err(e),
        };
        match r {
            Err(e) if e.catchable() => {
                let text = format!("«error: error: {}»", e.render_alone());
                self.colored(RED, &text);
                Ok(())
            }
            r => r,
        }
    }
}

/// A string in double quotes, as the repl escapes it (`"`, `\`, newline, return, tab; `${`
/// is left alone): the escapes of `.drv` files.
fn quote(out: &mut String, s: &str) {
    firn_format::derivation::aterm::escaped(out, s);
}

/// Attribute names shown without quotes (the repl's test: keywords such as `if` pass).
fn is_plain_name(s: &str) -> bool {
    super::is_var_name(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(expr: &str, depth: usize) -> String {
        let mut ev = Evaluator::new();
        let e = ev.parse(expr, "«string»", "/").expect("parses");
        let v = ev.eval_top(e).expect("evaluates");
        let mut out = String::new();
        print_value(&mut ev, &v, depth, false, &mut out).expect("prints");
        out
    }

    #[test]
    fn depth_and_repeats() {
        assert_eq!(
            show("{ b = 1; a = { c = 2; }; }", 1),
            "{ a = { ... }; b = 1; }"
        );
        assert_eq!(show("[ [] {} ]", 1), "[ [ ... ] { ... } ]");
        assert_eq!(
            show("let x = [ 1 ]; in [ x x ]", usize::MAX),
            "[ [ 1 ] «repeated» ]"
        );
        assert_eq!(
            show("let r = { a = r; }; in r", usize::MAX),
            "{ a = { a = «repeated»; }; }"
        );
    }

    #[test]
    fn names_strings_and_errors() {
        assert_eq!(
            show(r#"{ "a b" = 1; "if" = 2; x-y = 3; "1a" = 4; }"#, 1),
            r#"{ "1a" = 4; "a b" = 1; if = 2; x-y = 3; }"#
        );
        assert_eq!(show(r#""a\${x}\n\t\"""#, 1), r#""a${x}\n\t\"""#);
        assert_eq!(
            show(r#"{ a = 1; b = throw "t"; }"#, 1),
            "{ a = 1; b = «error: error: t»; }"
        );
        assert_eq!(show("x: x", 1), "«lambda @ (string):1:1»");
        assert_eq!(show("builtins.add 1", 1), "«primop-app»");
    }
}
