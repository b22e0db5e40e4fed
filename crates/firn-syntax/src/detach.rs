//! Parsing apart from the evaluator's interner, so that a file can be parsed on another
//! thread ahead of its `import` ([`parse_detached`]), and the tree joined to the evaluator's
//! symbols later, on its thread ([`Detached::attach`]).
//!
//! The tree attached is the one [`crate::parse_with_names_here`] would have made with the
//! evaluator's interner at that moment: the file's names are interned there in the order the
//! parser first met them (the order a parse there would have interned them in), every symbol
//! in the tree is mapped, the sets' bindings are sorted again by the new symbols, and only
//! then is the scope check run (its addresses depend on that order). A parse that failed is
//! not attached: the caller parses the text again where it is, since which of several errors
//! is found first may depend on the order of symbols.

use crate::ast::*;
use crate::parser::{ParseError, Parser};
use crate::{scope, Parsed, Source};

/// A file parsed with an interner of its own.
#[derive(Debug)]
pub struct Detached {
    expr: Expr,
    /// The names of the file's own interner, by symbol.
    names: Vec<Box<str>>,
    warnings: Vec<ParseError>,
}

/// Parse `text` with an interner of its own, without the scope check. Runs on the calling
/// thread, which must have [`crate::PARSE_STACK`] bytes of stack free.
pub fn parse_detached(text: &str, src: &Source<'_>) -> Result<Detached, ParseError> {
    let mut interner = Interner::default();
    let mut p = Parser::new(text, &mut interner, src.origin, src.base_dir, src.home)
        .with_pipe_operators(src.pipe_operators)
        .with_lints(src.lints);
    let expr = p.parse_file()?;
    let warnings = p.take_warnings();
    Ok(Detached {
        expr,
        names: interner.into_names(),
        warnings,
    })
}

impl Detached {
    /// The tree's path literals ([`crate::ast::path_literals`]).
    pub fn path_literals(&self) -> Vec<&str> {
        path_literals(&self.expr)
    }

    /// The tree with `interner`'s symbols, scope-checked with `extra` names in scope above
    /// the globals (see the module header).
    pub fn attach(self, interner: &mut Interner, extra: &[Symbol]) -> Result<Parsed, ParseError> {
        let map: Vec<Symbol> = self.names.iter().map(|n| interner.intern(n)).collect();
        let mut expr = self.expr;
        rekey_symbols(&mut expr, &map);
        scope::check(interner, &mut expr, extra)?;
        Ok(Parsed {
            expr,
            warnings: self.warnings,
        })
    }
}

/// Replace every symbol `s` in `e` by `map[s]`, sorting sets' bindings again.
fn rekey_symbols(e: &mut Expr, map: &[Symbol]) {
    let m = |s: Symbol| map.get(s.0 as usize).copied().unwrap_or(s);
    fn names<'a>(
        path: &'a mut [AttrName],
        m: &impl Fn(Symbol) -> Symbol,
        stack: &mut Vec<&'a mut Expr>,
    ) {
        for a in path {
            match a {
                AttrName::Static(s) => *s = m(*s),
                AttrName::Dynamic(e) => stack.push(e),
            }
        }
    }
    fn attrs<'a>(a: &'a mut Attrs, m: &impl Fn(Symbol) -> Symbol, stack: &mut Vec<&'a mut Expr>) {
        a.attrs.rekey(m);
        for d in a.attrs.values_mut() {
            stack.push(&mut d.value);
        }
        for (n, v, _) in a.dynamic.iter_mut() {
            stack.push(n);
            stack.push(v);
        }
        for e in a.inherit_from.iter_mut() {
            stack.push(e);
        }
    }
    // An explicit stack: nesting may be deep.
    let mut stack: Vec<&mut Expr> = vec![e];
    while let Some(e) = stack.pop() {
        match &mut e.kind {
            ExprKind::Int(_)
            | ExprKind::Float(_)
            | ExprKind::Str(_)
            | ExprKind::Path(_)
            | ExprKind::CurPos
            | ExprKind::InheritFrom(_) => {}
            ExprKind::Var(s) | ExprKind::Global(s) => *s = m(*s),
            ExprKind::Select { e, path } | ExprKind::HasAttr { e, path } => {
                names(path, &m, &mut stack);
                stack.push(e);
            }
            ExprKind::SelectOr(s) => {
                names(&mut s.path, &m, &mut stack);
                stack.push(&mut s.e);
                stack.push(&mut s.default);
            }
            ExprKind::Attrs(a) => attrs(a, &m, &mut stack),
            ExprKind::List(items) => stack.extend(items.iter_mut()),
            ExprKind::Lambda { arg, formals, body } => {
                if let Some(a) = arg {
                    *a = m(*a);
                }
                if let Some(f) = formals {
                    for x in f.formals.iter_mut() {
                        x.name = m(x.name);
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
                attrs(a, &m, &mut stack);
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
