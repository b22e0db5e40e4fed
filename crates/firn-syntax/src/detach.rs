//! Parsing apart from the evaluator's interner, so that a file can be parsed on another
//! thread ahead of its `import` ([`parse_detached`]), and the tree joined to the evaluator's
//! symbols later, on its thread ([`Detached::attach`]).
//!
//! The other thread parses with a mirror of the evaluator's interner: a copy of its first
//! names, kept up to date as the evaluator interns more. Names the mirror has get their
//! symbols there, which are the evaluator's; a new name gets the next symbol, as a parse in
//! the evaluator at that moment would give it, and the mirror forgets the new names after the
//! parse. The scope check (an imported file's: nothing in scope but the globals) runs there
//! too. When the tree is attached, the new names are interned in the evaluator in the order
//! the parser first met them (the order a parse there would have interned them in). If the
//! evaluator interned nothing meanwhile, they get the very symbols the parse gave them and
//! the tree is used as it is; otherwise every new name's symbol in the tree is replaced, the
//! sets' bindings are sorted again and the scopes are checked again (addresses depend on
//! the order of symbols). So the tree attached is the one [`crate::parse_with_names_here`]
//! would have made with the evaluator's interner at the moment of attaching. A parse that
//! failed is not attached: the caller parses the text again where it is, since which of
//! several errors is found first may depend on the order of symbols.

use crate::ast::*;
use crate::parser::{ParseError, ParseWarning, Parser};
use crate::{scope, Parsed, Source};

/// A file parsed with a mirror of the evaluator's interner.
#[derive(Clone, Debug)]
pub struct Detached {
    expr: Expr,
    /// How many names the mirror had: symbols below are the evaluator's.
    known: usize,
    /// The names new to the mirror, by symbol from `known` on (the order the parser met
    /// them in).
    new_names: Vec<Box<str>>,
    warnings: Vec<ParseWarning>,
}

/// Parse `text` with `mirror`, an interner whose names are the first names of the
/// interner the tree will be attached to (its own new names are forgotten again), and
/// check its scopes as an imported file's (no names in scope but the globals). Runs on the
/// calling thread, which must have [`crate::PARSE_STACK`] bytes of stack free.
pub fn parse_detached(
    text: &str,
    src: &Source<'_>,
    mirror: &mut Interner,
) -> Result<Detached, ParseError> {
    let known = mirror.len();
    let mut p = Parser::new(text, mirror, src.origin, src.base_dir, src.home)
        .with_pipe_operators(src.pipe_operators)
        .with_lints(src.lints);
    let parsed = p.parse_file();
    let warnings = p.take_warnings();
    let checked = parsed.and_then(|mut expr| {
        scope::check(mirror, &mut expr, &[])?;
        Ok(expr)
    });
    let new_names = mirror.names_from(known).to_vec();
    mirror.truncate(known);
    Ok(Detached {
        expr: checked?,
        known,
        new_names,
        warnings,
    })
}

impl Detached {
    /// Whether the parse has warnings to show (which need the text).
    pub fn has_warnings(&self) -> bool {
        !self.warnings.is_empty()
    }

    /// Move the tree's spans by `by` ([`crate::ast::shift_spans`]).
    pub fn shift_spans(&mut self, by: u32) {
        shift_spans(&mut self.expr, by);
    }

    /// The tree's path literals ([`crate::ast::path_literals`]).
    pub fn path_literals(&self) -> Vec<&str> {
        path_literals(&self.expr)
    }

    /// The tree with `interner`'s symbols (see the module header). `interner`'s first
    /// names must be the mirror's at the parse.
    pub fn attach(self, interner: &mut Interner) -> Result<Parsed, ParseError> {
        let known = self.known;
        let mut expr = self.expr;
        let map: Vec<Symbol> = self.new_names.iter().map(|n| interner.intern(n)).collect();
        // Nothing interned since the parse: the new names got the symbols the parse gave,
        // and the tree, its sets' order and its scope addresses are right as they are.
        let same = map
            .iter()
            .enumerate()
            .all(|(k, s)| s.0 as usize == known + k);
        if !same {
            rekey_symbols(
                &mut expr,
                &|s: Symbol| match (s.0 as usize).checked_sub(known) {
                    Some(k) => map[k],
                    None => s,
                },
            );
            // Addresses follow the new order of the scopes' names.
            scope::check(interner, &mut expr, &[])?;
        }
        Ok(Parsed {
            expr,
            warnings: self.warnings,
        })
    }
}

/// Replace every symbol `s` in `e` by `m(s)`, sorting sets' bindings again, and forget
/// what the scope check kept in the nodes (variables' addresses, lambdas' names), for the
/// check to be made again.
fn rekey_symbols(e: &mut Expr, m: &impl Fn(Symbol) -> Symbol) {
    struct Rekey<'m, M>(&'m M);
    impl<M: Fn(Symbol) -> Symbol> VisitMut for Rekey<'_, M> {
        fn node(&mut self, e: &mut Expr) {
            match &mut e.kind {
                ExprKind::Var(s) | ExprKind::Global(s) => *s = self.0(*s),
                ExprKind::Lambda { arg, .. } => {
                    if let Some(a) = arg {
                        *a = self.0(*a);
                    }
                }
                _ => return,
            }
            e.memo.set(0);
        }
        fn name(&mut self, s: &mut Symbol) {
            *s = self.0(*s);
        }
        fn attrs(&mut self, a: &mut Attrs) {
            a.attrs.rekey(self.0);
        }
        fn formal(&mut self, f: &mut Formal) {
            f.name = self.0(f.name);
        }
    }
    walk_mut(e, &mut Rekey(m));
}
