//! Explaining a failed `assert a == b`: as current Nix, the two sides are compared again,
//! following `==` step by step, and the first difference found is the error ("string '"x"'
//! is not equal to string '"y"'"), with `--show-trace` frames saying where in the values
//! it is (list elements, attributes and their definitions, derivations' `outPath`).

use std::rc::Rc;

use firn_syntax::ast::{BinOp, Expr, ExprKind};

use crate::error::{EResult, ErrorKind, EvalError};
use crate::eval::Evaluator;
use crate::print::{show_for_error, show_type};
use crate::value::*;

/// A catchable assertion error with this message.
fn assertion(msg: String) -> EvalError {
    EvalError::with_kind(ErrorKind::Assert, msg)
}

impl Evaluator {
    /// The error of `assert` expression `assert` whose condition `cond` was false in `env`:
    /// for an equality, its first difference; otherwise (or if the comparison finds none)
    /// "assertion 'COND' failed".
    #[cold]
    #[inline(never)]
    pub(crate) fn assertion_failed(
        &mut self,
        assert: &'static Expr,
        cond: &'static Expr,
        env: &Env,
    ) -> EvalError {
        let text = firn_syntax::show::show(&self.interner, cond);
        if let ExprKind::Bin {
            op: BinOp::Eq,
            a,
            b,
        } = &cond.kind
        {
            // Where the `==` is, as CppNix's frames show the comparison.
            let pos = self
                .positions
                .find_between(a.span.end, b.span.start, "==")
                .unwrap_or(cond.span.start);
            if let Err(mut x) = self.explain_inequality(a, b, pos, env) {
                if x.kind == ErrorKind::Assert {
                    let what = format!("while evaluating the condition of the assertion '{text}'");
                    x.trace.push(self.frame(what, assert.span.start));
                    // As CppNix: the difference has no position of its own (the frames say
                    // where it is); an empty one keeps the `assert` from claiming it.
                    x.at.get_or_insert_with(String::new);
                }
                return x;
            }
        }
        assertion(format!("assertion '{text}' failed"))
    }

    /// Evaluate both sides of `a == b` again and explain why they differ (at `pos`, the
    /// comparison).
    fn explain_inequality(
        &mut self,
        a: &'static Expr,
        b: &'static Expr,
        pos: u32,
        env: &Env,
    ) -> EResult<()> {
        let x = self.eval(a, env)?;
        let y = self.eval(b, env)?;
        self.explain_values(&x, &y, pos)
    }

    /// As [`Evaluator::equal_thunks`], but failing with the difference.
    fn explain_thunks(&mut self, a: &Thunk, b: &Thunk, pos: u32) -> EResult<()> {
        let p = self.force(a)?;
        let q = self.force(b)?;
        if Thunk::ptr_eq(a, b) {
            return Ok(());
        }
        self.explain_values(&p, &q, pos)
    }

    /// As [`Evaluator::equal`], but failing with the first difference instead of saying
    /// `false`.
    fn explain_values(&mut self, a: &Value, b: &Value, pos: u32) -> EResult<()> {
        self.check_stack()?;
        let numeric = |v: &Value| matches!(v, Value::Int(_) | Value::Float(_));
        if numeric(a) && numeric(b) {
            if self.equal(a, b)? {
                return Ok(());
            }
            return Err(self.unequal("with value", a, b));
        }
        if a.type_of() != b.type_of() {
            return Err(self.unequal("of value", a, b));
        }
        let same = match (a, b) {
            (Value::Bool(x), Value::Bool(y)) => x == y,
            (Value::String(x), Value::String(y)) => x.s == y.s,
            (Value::Path(x), Value::Path(y)) => x == y,
            (Value::List(x), Value::List(y)) => return self.explain_lists(x, y, pos),
            (Value::Attrs(x), Value::Attrs(y)) => return self.explain_sets(x, y, pos),
            (Value::Null, Value::Null) => true,
            _ => {
                return Err(assertion(
                    "distinct functions and immediate comparisons of identical functions \
                     compare as unequal"
                        .to_string(),
                ))
            }
        };
        if same {
            return Ok(());
        }
        let what = match a {
            Value::Bool(_) => "boolean",
            Value::String(_) => "string",
            _ => "path",
        };
        Err(assertion(format!(
            "{what} '{}' is not equal to {what} '{}'",
            show_for_error(self, a),
            show_for_error(self, b)
        )))
    }

    /// "TYPE VERB 'A' is not equal to TYPE VERB 'B'", for numbers (`with value`) and values
    /// of different types (`of value`).
    fn unequal(&self, verb: &str, a: &Value, b: &Value) -> EvalError {
        assertion(format!(
            "{} {verb} '{}' is not equal to {} {verb} '{}'",
            show_type(a),
            show_for_error(self, a),
            show_type(b),
            show_for_error(self, b)
        ))
    }

    /// Two lists: their sizes, then their elements in order.
    fn explain_lists(&mut self, x: &Rc<Vec<Thunk>>, y: &Rc<Vec<Thunk>>, pos: u32) -> EResult<()> {
        if Rc::ptr_eq(x, y) {
            return Ok(());
        }
        if x.len() != y.len() {
            let (a, b) = (Value::List(x.clone()), Value::List(y.clone()));
            return Err(assertion(format!(
                "list of size '{}' is not equal to list of size '{}', left hand side is '{}', \
                 right hand side is '{}'",
                x.len(),
                y.len(),
                show_for_error(self, &a),
                show_for_error(self, &b)
            )));
        }
        for (n, (p, q)) in x.iter().zip(y.iter()).enumerate() {
            if let Err(mut e) = self.explain_thunks(p, q, pos) {
                e.trace
                    .push(self.frame(format!("while comparing list element {n}"), pos));
                return Err(e);
            }
        }
        Ok(())
    }

    /// Two sets: derivations by their `outPath`, others by their names, then their
    /// attributes in order.
    fn explain_sets(&mut self, x: &Rc<AttrSet>, y: &Rc<AttrSet>, pos: u32) -> EResult<()> {
        if Rc::ptr_eq(x, y) {
            return Ok(());
        }
        if self.is_derivation(x)? && self.is_derivation(y)? {
            if let (Some(p), Some(q)) = (x.get("outPath"), y.get("outPath")) {
                let (p, q) = (p.clone(), q.clone());
                return self.explain_thunks(&p, &q, pos).map_err(|mut e| {
                    let what = "while comparing a derivation by its 'outPath' attribute";
                    e.trace.push(self.frame(what.to_string(), pos));
                    e
                });
            }
        }
        let shown = |ev: &Evaluator| {
            (
                show_for_error(ev, &Value::Attrs(x.clone())),
                show_for_error(ev, &Value::Attrs(y.clone())),
            )
        };
        if x.len() != y.len() {
            let (a, b) = shown(self);
            return Err(assertion(format!(
                "attribute names of attribute set '{a}' differs from attribute set '{b}'"
            )));
        }
        for ((k1, t1), (k2, t2)) in x.iter().zip(y.iter()) {
            if k1 != k2 {
                let (a, b) = shown(self);
                let only_in_x = !y.contains_key(&**k1);
                let (k1, k2) = (
                    crate::print::error_attr_name(k1),
                    crate::print::error_attr_name(k2),
                );
                return Err(assertion(if only_in_x {
                    format!("attribute name '{k1}' is contained in '{a}', but not in '{b}'")
                } else {
                    format!("attribute name '{k2}' is missing in '{a}', but is contained in '{b}'")
                }));
            }
            if let Err(e) = self.explain_thunks(t1, t2, pos) {
                return Err(self.attribute_frames(e, x, y, k1, pos));
            }
        }
        Ok(())
    }

    /// The frames of a difference in attribute `name` of sets `x` and `y`: where each side
    /// was defined (when known), and the attribute.
    fn attribute_frames(
        &self,
        mut e: EvalError,
        x: &AttrSet,
        y: &AttrSet,
        name: &str,
        pos: u32,
    ) -> EvalError {
        for (set, side) in [(y, "right"), (x, "left")] {
            if let Some(off) = self.positions.attr_offset(set, name, &self.interner) {
                let what = format!("where {side} hand side is");
                e.trace.push(self.frame(what, off));
            }
        }
        let what = format!("while comparing attribute '{name}'");
        e.trace.push(self.frame(what, pos));
        e
    }
}
