//! The Nix language's syntax: a lexer and parser that produce the same (desugared) AST as
//! CppNix's, with byte spans on every node, interned identifiers, readable parse errors with
//! line, column and a caret, and CppNix's `--parse` printer.

pub mod ast;
pub mod bytes;
pub mod detach;
pub mod lexer;
pub mod lint;
pub mod parser;
pub mod scope;
pub mod show;
pub mod suggest;
pub mod symmap;

pub use ast::{Expr, ExprKind, Interner, Span, Symbol};
pub use lint::{Diagnose, Lints};
pub use parser::{line_col, line_starts, ParseError, ParseWarning};

/// Where a source text comes from, for error messages and resolving relative paths.
#[derive(Clone, Debug)]
pub struct Source<'a> {
    /// The file name as shown in errors (`«stdin»`, `«string»` or a path).
    pub origin: &'a str,
    /// The directory relative path literals are resolved against.
    pub base_dir: &'a str,
    /// `$HOME`, for `~/` paths.
    pub home: &'a str,
    /// Whether `|>` and `<|` are allowed: the `pipe-operators` experimental feature
    /// (`experimental-features`); without it they are an error where they appear.
    pub pipe_operators: bool,
    /// The lints literals are checked against (`lint-*-literals`).
    pub lints: Lints,
}

/// A parsed expression and the parser's warnings (lints set to `warn`, legacy `or` calls).
#[derive(Debug)]
pub struct Parsed {
    pub expr: Expr,
    pub warnings: Vec<ParseWarning>,
}

/// Parse a whole Nix expression. Runs on a thread with a large stack so that deep (but
/// allowed) nesting cannot overflow; deeper nesting than [`parser::MAX_DEPTH`] is an error.
pub fn parse(text: &str, src: &Source<'_>, interner: &mut Interner) -> Result<Expr, ParseError> {
    parse_on_big_stack(text, src, interner, Some(&[])).map(|p| p.expr)
}

/// [`parse`], with the parser's warnings (which the caller shows).
pub fn parse_linted(
    text: &str,
    src: &Source<'_>,
    interner: &mut Interner,
) -> Result<Parsed, ParseError> {
    parse_on_big_stack(text, src, interner, Some(&[]))
}

/// [`parse`] for a file evaluated with `extra` names in scope above the globals
/// (`scopedImport`).
pub fn parse_with_names(
    text: &str,
    src: &Source<'_>,
    interner: &mut Interner,
    extra: &[Symbol],
) -> Result<Parsed, ParseError> {
    parse_on_big_stack(text, src, interner, Some(extra))
}

/// The stack that parsing may need: the most nesting [`parser::MAX_DEPTH`] allows.
pub const PARSE_STACK: usize = 512 * 1024 * 1024;

/// [`parse_with_names`] on the calling thread, which must have [`PARSE_STACK`] bytes of
/// stack free (an evaluator on a big stack parses each imported file this way, without a
/// thread per file).
pub fn parse_with_names_here(
    text: &str,
    src: &Source<'_>,
    interner: &mut Interner,
    extra: &[Symbol],
) -> Result<Parsed, ParseError> {
    parse_here(text, src, interner, Some(extra))
}

/// Parse without checking variable scopes (for tools that print or format syntax only).
pub fn parse_syntax(
    text: &str,
    src: &Source<'_>,
    interner: &mut Interner,
) -> Result<Expr, ParseError> {
    parse_on_big_stack(text, src, interner, None).map(|p| p.expr)
}

/// Parse on this thread, checking scopes (with `extra` names in scope) unless
/// `check_scopes` is `None`.
fn parse_here(
    text: &str,
    src: &Source<'_>,
    interner: &mut Interner,
    check_scopes: Option<&[Symbol]>,
) -> Result<Parsed, ParseError> {
    let mut p = parser::Parser::new(text, interner, src.origin, src.base_dir, src.home)
        .with_pipe_operators(src.pipe_operators)
        .with_lints(src.lints);
    let mut expr = p.parse_file()?;
    let warnings = p.take_warnings();
    if let Some(extra) = check_scopes {
        scope::check(interner, &mut expr, extra)?;
    }
    Ok(Parsed { expr, warnings })
}

fn parse_on_big_stack(
    text: &str,
    src: &Source<'_>,
    interner: &mut Interner,
    check_scopes: Option<&[Symbol]>,
) -> Result<Parsed, ParseError> {
    std::thread::scope(|scope| {
        let h = std::thread::Builder::new()
            .stack_size(PARSE_STACK)
            .spawn_scoped(scope, || parse_here(text, src, interner, check_scopes));
        match h {
            Ok(h) => match h.join() {
                Ok(r) => r,
                Err(p) => std::panic::resume_unwind(p),
            },
            // No thread could be made: parse here (deep nesting may then be refused earlier).
            Err(_) => Err(ParseError {
                msg: "could not start the parser thread".into(),
                span: Span::default(),
            }),
        }
    })
}

/// An error rendered as CppNix prints it: the message, then its location (see
/// [`render_location`]).
pub fn render_error(e: &ParseError, text: &str, origin: &str) -> String {
    format!(
        "error: {}\n{}",
        e.msg,
        render_location(text, origin, e.span.start as usize)
    )
}

/// A parser's warning as current Nix logs it, with no trailing line break. A lint's:
/// `warning: ` and the message, then its location (see [`render_location`]) indented under
/// the message (two columns further than under `error: `). A legacy `e or`'s: where it is,
/// why, and the expression in the parentheses that keep its meaning.
pub fn render_warning(w: &ParseWarning, text: &str, origin: &str) -> String {
    let w = match w {
        ParseWarning::Lint(w) => w,
        ParseWarning::CursedOr(span) => {
            let (line, col) = line_col(text.as_bytes(), span.start as usize);
            let snippet = text
                .get(span.start as usize..span.end as usize)
                .unwrap_or("could not read expression");
            return format!(
                "warning: at {origin}:{line}:{col}: This expression uses `or` as an identifier in a \
                 way that will change in a future Nix release.\n\
                 Wrap this entire expression in parentheses to preserve its current meaning:\n    \
                 ({snippet})\nGive feedback at https://github.com/NixOS/nix/pull/11121"
            );
        }
    };
    let mut out = format!("warning: {}", w.msg);
    for line in render_location(text, origin, w.span.start as usize).lines() {
        out.push('\n');
        if !line.trim().is_empty() {
            out.push_str("  ");
            out.push_str(line.trim_end());
        }
    }
    out
}

/// Where `offset` of `text` is, as current Nix prints it under an error: `at
/// ORIGIN:LINE:COL:`, then the line before, the line itself, a caret under the position, and
/// the line after.
pub fn render_location(text: &str, origin: &str, offset: usize) -> String {
    let starts: Vec<u32> = line_starts(text.as_bytes())
        .into_iter()
        .map(|s| u32::try_from(s).unwrap_or(u32::MAX))
        .collect();
    render_location_in(text, &starts, origin, offset)
}

/// The line and column (both from 1; the column in bytes of the text as read, see
/// [`crate::bytes`]) of `offset` in `text`, whose lines start at `starts`.
fn line_col_in(text: &str, starts: &[u32], offset: usize) -> (usize, usize) {
    let off = offset.min(text.len());
    // 1-based: the last line starting at or before `off`.
    let line = starts.partition_point(|&s| s as usize <= off).max(1);
    let start = starts.get(line - 1).map_or(0, |&s| s as usize).min(off);
    let stand_ins = crate::bytes::count_stand_ins(&text.as_bytes()[start..off]);
    (line, off - start - 3 * stand_ins + 1)
}

/// [`render_location`] given where the lines of `text` start ([`line_starts`]): the work is
/// then on the lines shown only, not on the whole text (an evaluation may place many errors
/// in one large file).
pub fn render_location_in(text: &str, starts: &[u32], origin: &str, offset: usize) -> String {
    let (line, col) = line_col_in(text, starts, offset);
    let line_text = |n: usize| -> &str {
        let Some(&s) = n.checked_sub(1).and_then(|i| starts.get(i)) else {
            return "";
        };
        let end = starts.get(n).map_or(text.len(), |&e| e as usize);
        text.get(s as usize..end)
            .unwrap_or("")
            .trim_end_matches('\n')
            .trim_end_matches('\r')
    };
    let show = |n: usize| -> String {
        let t = line_text(n).trim_end();
        if t.is_empty() {
            format!("{n:>13}|\n")
        } else {
            format!("{n:>13}| {t}\n")
        }
    };
    let mut out = format!("       at {origin}:{line}:{col}:\n");
    if line > 1 {
        out.push_str(&show(line - 1));
    }
    out.push_str(&show(line));
    out.push_str(&format!(
        "{:>13}| {}^\n",
        "",
        " ".repeat(col.saturating_sub(1))
    ));
    if line < starts.len() {
        out.push_str(&show(line + 1));
    }
    out
}
