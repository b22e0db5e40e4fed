//! A recursive-descent (Pratt for operators) parser for the Nix language, producing the
//! desugared AST that CppNix's bison parser produces.

use crate::ast::*;
use crate::lexer::{
    is_path_char, next_token, next_token_cached, path_len, path_seg_len, skip_trivia, Tok,
};
use crate::lint::{self, Diagnose, Lints};

/// Deepest nesting of expressions accepted; deeper input gets an error instead of exhausting
/// the stack (the parser runs on a thread with a stack sized for this).
pub const MAX_DEPTH: usize = 4000;

/// A parse error at a byte range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub msg: String,
    pub span: Span,
}

type PResult<T> = Result<T, ParseError>;

pub struct Parser<'a> {
    src: &'a [u8],
    pos: usize,
    /// Lookahead: the token at `pos` (after trivia), its start and end.
    peeked: Option<(Tok<'a>, usize, usize)>,
    /// See [`next_token_cached`].
    dead_run: (usize, usize),
    pub interner: &'a mut Interner,
    base_dir: String,
    home: String,
    origin: String,
    depth: usize,
    /// Whether `|>` and `<|` are allowed (the `pipe-operators` experimental feature).
    pipe_operators: bool,
    /// The lints to check literals against.
    lints: Lints,
    /// What the lints set to `warn` found, in source order.
    warnings: Vec<ParseError>,
}

/// `v` without spare capacity: syntax trees live as long as the evaluation, so the slack a
/// growing vector leaves would be kept for good.
fn tight<T>(mut v: Vec<T>) -> Vec<T> {
    v.shrink_to_fit();
    v
}

/// Give back the spare capacity of a parsed set and of the sets its attribute paths made
/// (`a.b.c = 1;` makes `b` and `c`, which grow as bindings arrive). Sets written out are
/// tight already, as their own bindings were tightened when parsed, so only the made ones
/// (with spare room) are descended into.
fn tighten(attrs: &mut Attrs) {
    attrs.attrs.shrink_to_fit();
    attrs.dynamic.shrink_to_fit();
    attrs.inherit_from.shrink_to_fit();
    let made = attrs
        .attrs
        .values_mut()
        .map(|d| &mut d.value)
        .chain(attrs.dynamic.iter_mut().map(|(_, v, _)| v));
    for v in made {
        if let ExprKind::Attrs(inner) = &mut v.kind {
            if inner.attrs.has_spare() {
                tighten(inner);
            }
        }
    }
}

fn err<T>(msg: impl Into<String>, start: usize, end: usize) -> PResult<T> {
    Err(ParseError {
        msg: msg.into(),
        span: Span::new(start, end),
    })
}

/// Resolve `.` and `..` lexically in an absolute path (Nix's `canonPath`, without symlinks).
pub fn canon_path(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

fn unescape(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let c = raw[i];
        i += 1;
        if c == b'\\' && i < raw.len() {
            let e = raw[i];
            i += 1;
            out.push(match e {
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                other => other,
            });
        } else if c == b'\r' {
            // CR and CR LF become LF.
            out.push(b'\n');
            if raw.get(i) == Some(&b'\n') {
                i += 1;
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A piece of an indented string before indentation stripping.
enum IndPart {
    Text {
        s: Vec<u8>,
        has_indentation: bool,
        span: Span,
    },
    Expr(Expr),
}

impl<'a> Parser<'a> {
    pub fn new(
        src: &'a str,
        interner: &'a mut Interner,
        origin: &str,
        base_dir: &str,
        home: &str,
    ) -> Parser<'a> {
        Parser {
            src: src.as_bytes(),
            pos: 0,
            peeked: None,
            dead_run: (0, 0),
            interner,
            base_dir: base_dir.trim_end_matches('/').to_string(),
            home: home.to_string(),
            origin: origin.to_string(),
            depth: 0,
            pipe_operators: false,
            lints: Lints::default(),
            warnings: Vec::new(),
        }
    }

    /// Check literals against `lints` (none by default).
    pub fn with_lints(mut self, lints: Lints) -> Parser<'a> {
        self.lints = lints;
        self
    }

    /// The warnings of the lints set to `warn` so far, taken out of the parser.
    pub fn take_warnings(&mut self) -> Vec<ParseError> {
        std::mem::take(&mut self.warnings)
    }

    /// Apply lint `level` (of setting `setting`) to a literal at `start..end`: a warning kept
    /// for [`Self::take_warnings`], or an error. `msg` is only made when needed.
    fn lint(
        &mut self,
        level: Diagnose,
        setting: &str,
        span: (usize, usize),
        msg: impl FnOnce(bool) -> String,
    ) -> PResult<()> {
        if level == Diagnose::Ignore {
            return Ok(());
        }
        let fatal = level == Diagnose::Fatal;
        let e = ParseError {
            msg: format!("{} ({setting})", msg(fatal)),
            span: Span::new(span.0, span.1),
        };
        if fatal {
            return Err(e);
        }
        self.warnings.push(e);
        Ok(())
    }

    /// The lints on path literal `p` (as written) at `start..end`.
    fn lint_path(&mut self, p: &str, start: usize, end: usize) -> PResult<()> {
        if p.starts_with('/') {
            let level = self.lints.absolute_path_literals;
            self.lint(level, "lint-absolute-path-literals", (start, end), |_| {
                lint::absolute_message(p, false)
            })
        } else if !p.starts_with('.') {
            let level = self.lints.short_path_literals;
            self.lint(level, "lint-short-path-literals", (start, end), |_| {
                lint::short_message(p)
            })
        } else {
            Ok(())
        }
    }

    /// Allow `|>` and `<|` (the `pipe-operators` experimental feature; refused by default).
    pub fn with_pipe_operators(mut self, on: bool) -> Parser<'a> {
        self.pipe_operators = on;
        self
    }

    fn peek(&mut self) -> PResult<(Tok<'a>, usize, usize)> {
        self.peek_ref().cloned()
    }

    /// The next token, without copying it.
    #[inline]
    fn peek_ref(&mut self) -> PResult<&(Tok<'a>, usize, usize)> {
        if self.peeked.is_none() {
            self.lex_next()?;
        }
        match &self.peeked {
            Some(p) => Ok(p),
            None => err("internal error: no token", self.pos, self.pos),
        }
    }

    /// Read the token at `pos` (after trivia) into `peeked`.
    #[inline(never)]
    fn lex_next(&mut self) -> PResult<()> {
        {
            let start = match skip_trivia(self.src, self.pos) {
                Ok(s) => s,
                Err(at) => return err("unterminated comment", at, self.src.len()),
            };
            let (tok, n) = next_token_cached(self.src, start, &mut self.dead_run);
            if matches!(tok, Tok::PipeInto | Tok::PipeFrom) && !self.pipe_operators {
                // As CppNix's lexer: as soon as the token is read, whatever follows.
                return err(
                    "experimental Nix feature 'pipe-operators' is disabled; add \
                     '--extra-experimental-features pipe-operators' to enable it",
                    start,
                    start + n,
                );
            }
            self.peeked = Some((tok, start, start + n));
        }
        Ok(())
    }

    /// The kind of the next token (a cheap look: no copy of its text).
    fn peek_tok(&mut self) -> PResult<&Tok<'a>> {
        Ok(&self.peek_ref()?.0)
    }

    fn bump(&mut self) -> PResult<(Tok<'a>, usize, usize)> {
        let p = match self.peeked.take() {
            Some(p) => p,
            None => self.peek()?,
        };
        self.pos = p.2;
        self.peeked = None;
        Ok(p)
    }

    fn unexpected<T>(&mut self, expecting: &str) -> PResult<T> {
        let (t, s, e) = self.peek()?;
        // Where bison could expect many things, it lists none.
        let msg = if expecting == "expression" {
            format!("syntax error, unexpected {}", t.describe())
        } else {
            format!(
                "syntax error, unexpected {}, expecting {}",
                t.describe(),
                expecting
            )
        };
        err(msg, s, e.max(s + 1).min(self.src.len().max(s)))
    }

    fn expect_char(&mut self, c: char) -> PResult<usize> {
        match *self.peek_tok()? {
            Tok::Char(x) if x == c => Ok(self.bump()?.2),
            _ => self.unexpected(&format!("'{c}'")),
        }
    }

    fn expect(&mut self, t: Tok, what: &str) -> PResult<usize> {
        if *self.peek_tok()? == t {
            Ok(self.bump()?.2)
        } else {
            self.unexpected(what)
        }
    }

    fn sym(&mut self, s: &str) -> Symbol {
        self.interner.intern(s)
    }

    fn var(&mut self, name: &str, span: Span) -> Expr {
        let s = self.sym(name);
        Expr::new(ExprKind::Var(s), span)
    }

    fn call(&mut self, fun: Expr, args: Vec<Expr>, span: Span) -> Expr {
        // `f a b` is one call with two arguments, as CppNix's makeCall builds it.
        match fun.kind {
            ExprKind::Call { fun: f, args: a } => {
                let mut all = a.into_vec();
                all.extend(args);
                Expr::new(
                    ExprKind::Call {
                        fun: f,
                        args: all.into_boxed_slice(),
                    },
                    span,
                )
            }
            kind => Expr::new(
                ExprKind::Call {
                    fun: Box::new(Expr::new(kind, fun.span)),
                    args: args.into_boxed_slice(),
                },
                span,
            ),
        }
    }

    /// Parse a whole file.
    pub fn parse_file(&mut self) -> PResult<Expr> {
        let e = self.parse_expr()?;
        match self.peek()? {
            (Tok::Eof, _, _) => Ok(e),
            _ => self.unexpected("end of file"),
        }
    }

    fn enter(&mut self) -> PResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            let (_, s, e) = self.peek()?;
            return err(
                format!("expression nested too deeply (more than {MAX_DEPTH} levels)"),
                s,
                e,
            );
        }
        Ok(())
    }

    /// `expr_function`: lambdas, `assert`, `with`, `let ... in`, and below them `if` and
    /// operators.
    pub fn parse_expr(&mut self) -> PResult<Expr> {
        self.enter()?;
        let r = self.parse_expr_inner();
        self.depth -= 1;
        r
    }

    fn parse_expr_inner(&mut self) -> PResult<Expr> {
        let (t, start, end) = self.peek()?;
        match t {
            Tok::Id(name) => {
                // `x: body` or `x @ { ... }: body`
                let save = (self.pos, self.peeked);
                self.bump()?;
                match *self.peek_tok()? {
                    Tok::Char(':') => {
                        self.bump()?;
                        let body = self.parse_expr()?;
                        let arg = self.sym(name);
                        let span = Span::new(start, body.span.end as usize);
                        return Ok(Expr::new(
                            ExprKind::Lambda {
                                arg: Some(arg),
                                formals: None,
                                body: Box::new(body),
                            },
                            span,
                        ));
                    }
                    Tok::Char('@') => {
                        self.bump()?;
                        let (t2, s2, _) = self.peek()?;
                        if t2 != Tok::Char('{') {
                            return self.unexpected("'{'");
                        }
                        let _ = s2;
                        let formals = self.parse_formals()?;
                        self.expect_char(':')?;
                        let body = self.parse_expr()?;
                        let arg = self.sym(name);
                        self.validate_formals(&formals, Some((arg, start, end)))?;
                        let span = Span::new(start, body.span.end as usize);
                        return Ok(Expr::new(
                            ExprKind::Lambda {
                                arg: Some(arg),
                                formals: Some(Box::new(formals)),
                                body: Box::new(body),
                            },
                            span,
                        ));
                    }
                    _ => {
                        self.pos = save.0;
                        self.peeked = save.1;
                    }
                }
            }
            Tok::Char('{') if self.looks_like_formals()? => {
                let formals = self.parse_formals()?;
                let mut arg = None;
                if *self.peek_tok()? == Tok::Char('@') {
                    self.bump()?;
                    match self.bump()? {
                        (Tok::Id(n), s, e) => arg = Some((self.sym(n), s, e)),
                        (t, s, e) => {
                            return err(
                                format!(
                                    "syntax error, unexpected {}, expecting identifier",
                                    t.describe()
                                ),
                                s,
                                e,
                            )
                        }
                    }
                }
                self.expect_char(':')?;
                let body = self.parse_expr()?;
                self.validate_formals(&formals, arg)?;
                let span = Span::new(start, body.span.end as usize);
                return Ok(Expr::new(
                    ExprKind::Lambda {
                        arg: arg.map(|a| a.0),
                        formals: Some(Box::new(formals)),
                        body: Box::new(body),
                    },
                    span,
                ));
            }
            Tok::Assert => {
                self.bump()?;
                let cond = self.parse_expr()?;
                self.expect_char(';')?;
                let body = self.parse_expr()?;
                let span = Span::new(start, body.span.end as usize);
                return Ok(Expr::new(
                    ExprKind::Assert {
                        cond: Box::new(cond),
                        body: Box::new(body),
                    },
                    span,
                ));
            }
            Tok::With => {
                self.bump()?;
                let env = self.parse_expr()?;
                self.expect_char(';')?;
                let body = self.parse_expr()?;
                let span = Span::new(start, body.span.end as usize);
                return Ok(Expr::new(
                    ExprKind::With {
                        env: Box::new(env),
                        body: Box::new(body),
                    },
                    span,
                ));
            }
            Tok::Let => {
                // `let { ... }` is the legacy form, handled as a simple expression.
                let save = (self.pos, self.peeked);
                self.bump()?;
                if *self.peek_tok()? != Tok::Char('{') {
                    let attrs = self.parse_binds(&[Tok::In])?;
                    self.expect(Tok::In, "'in'")?;
                    let body = self.parse_expr()?;
                    // As CppNix's grammar: once the whole `let` is read, at the `let`.
                    if !attrs.dynamic.is_empty() {
                        return err("dynamic attributes not allowed in let", start, start + 3);
                    }
                    let span = Span::new(start, body.span.end as usize);
                    return Ok(Expr::new(
                        ExprKind::Let {
                            attrs: Box::new(attrs),
                            body: Box::new(body),
                        },
                        span,
                    ));
                }
                self.pos = save.0;
                self.peeked = save.1;
            }
            Tok::If => {
                self.bump()?;
                let cond = self.parse_expr()?;
                self.expect(Tok::Then, "'then'")?;
                let then = self.parse_expr()?;
                self.expect(Tok::Else, "'else'")?;
                let else_ = self.parse_expr()?;
                let span = Span::new(start, else_.span.end as usize);
                return Ok(Expr::new(
                    ExprKind::If {
                        cond: Box::new(cond),
                        then: Box::new(then),
                        else_: Box::new(else_),
                    },
                    span,
                ));
            }
            _ => {}
        }
        self.parse_pipes()
    }

    /// Decide whether `{` starts a set pattern (formals) rather than an attribute set.
    fn looks_like_formals(&mut self) -> PResult<bool> {
        let s = self.src;
        let (_, _, mut i) = self.peek()?;
        let tok_at = |i: usize| -> (Tok<'a>, usize, usize) {
            let st = skip_trivia(s, i).unwrap_or(s.len());
            let (t, n) = next_token(s, st);
            (t, st, st + n)
        };
        let (t1, _, e1) = tok_at(i);
        match t1 {
            Tok::Ellipsis => Ok(true),
            Tok::Char('}') => {
                let (t2, _, _) = tok_at(e1);
                Ok(matches!(t2, Tok::Char(':') | Tok::Char('@')))
            }
            Tok::Id(_) => {
                i = e1;
                let (t2, _, e2) = tok_at(i);
                match t2 {
                    Tok::Char(',') | Tok::Char('?') => Ok(true),
                    Tok::Char('}') => {
                        let (t3, _, _) = tok_at(e2);
                        Ok(matches!(t3, Tok::Char(':') | Tok::Char('@')))
                    }
                    _ => Ok(false),
                }
            }
            _ => Ok(false),
        }
    }

    fn parse_formals(&mut self) -> PResult<Formals> {
        self.expect_char('{')?;
        let mut formals = Vec::new();
        let mut ellipsis = false;
        loop {
            match self.peek()? {
                (Tok::Char('}'), _, _) => {
                    self.bump()?;
                    break;
                }
                (Tok::Ellipsis, _, _) => {
                    self.bump()?;
                    ellipsis = true;
                    self.expect_char('}')?;
                    break;
                }
                (Tok::Id(n), s, e) => {
                    self.bump()?;
                    let name = self.sym(n);
                    let default = if *self.peek_tok()? == Tok::Char('?') {
                        self.bump()?;
                        Some(Box::new(self.parse_expr()?))
                    } else {
                        None
                    };
                    formals.push(Formal {
                        name,
                        default,
                        span: Span::new(s, e),
                    });
                    match *self.peek_tok()? {
                        Tok::Char(',') => {
                            self.bump()?;
                        }
                        Tok::Char('}') => {
                            self.bump()?;
                            break;
                        }
                        _ => return self.unexpected("'}' or ','"),
                    }
                }
                _ => return self.unexpected("identifier, '...' or '}'"),
            }
        }
        Ok(Formals {
            formals: formals.into_boxed_slice(),
            ellipsis,
        })
    }

    fn validate_formals(
        &mut self,
        f: &Formals,
        arg: Option<(Symbol, usize, usize)>,
    ) -> PResult<()> {
        let mut seen: Vec<(&str, Span)> = Vec::new();
        let mut dup: Option<(String, Span)> = None;
        for x in &f.formals {
            let n = self.interner.name(x.name);
            if seen.iter().any(|(m, _)| *m == n) {
                let cand = (n.to_string(), x.span);
                if dup
                    .as_ref()
                    .is_none_or(|d| (d.0.as_str(), d.1.start) > (cand.0.as_str(), cand.1.start))
                {
                    dup = Some(cand);
                }
            }
            seen.push((n, x.span));
        }
        if let Some((n, span)) = dup {
            return err(
                format!("duplicate formal function argument '{n}'"),
                span.start as usize,
                span.end as usize,
            );
        }
        if let Some((a, s, e)) = arg {
            if f.formals.iter().any(|x| x.name == a) {
                let n = self.interner.name(a).to_string();
                return err(format!("duplicate formal function argument '{n}'"), s, e);
            }
        }
        Ok(())
    }

    /// `expr_pipe_from` / `expr_pipe_into` / `expr_op`.
    fn parse_pipes(&mut self) -> PResult<Expr> {
        let first = self.parse_op(0)?;
        match *self.peek_tok()? {
            Tok::PipeInto => {
                let mut acc = first;
                while *self.peek_tok()? == Tok::PipeInto {
                    let (_, s, _) = self.bump()?;
                    let f = self.parse_op(0)?;
                    let span = Span::new(acc.span.start as usize, f.span.end as usize);
                    let _ = s;
                    acc = self.call(f, vec![acc], span);
                }
                if *self.peek_tok()? == Tok::PipeFrom {
                    return self.unexpected("'|>'");
                }
                Ok(acc)
            }
            Tok::PipeFrom => {
                let mut items = vec![first];
                while *self.peek_tok()? == Tok::PipeFrom {
                    self.bump()?;
                    items.push(self.parse_op(0)?);
                }
                if *self.peek_tok()? == Tok::PipeInto {
                    return self.unexpected("'<|'");
                }
                let mut acc = items.pop().expect("at least two items");
                while let Some(f) = items.pop() {
                    let span = Span::new(f.span.start as usize, acc.span.end as usize);
                    acc = self.call(f, vec![acc], span);
                }
                Ok(acc)
            }
            _ => Ok(first),
        }
    }

    /// Binding power of an infix operator: (left bp, right bp, kind).
    fn infix(t: &Tok) -> Option<(u8, u8)> {
        Some(match t {
            Tok::Impl => (2, 1),
            Tok::Or => (3, 4),
            Tok::And => (5, 6),
            Tok::Eq | Tok::NEq => (7, 8),
            Tok::Char('<') | Tok::Char('>') | Tok::Leq | Tok::Geq => (9, 10),
            Tok::Update => (12, 11),
            // NOT is 13 (prefix)
            Tok::Char('+') | Tok::Char('-') => (15, 16),
            Tok::Char('*') | Tok::Char('/') => (17, 18),
            Tok::Concat => (20, 19),
            Tok::Char('?') => (21, 22),
            // NEGATE is 23 (prefix)
            _ => return None,
        })
    }

    fn parse_op(&mut self, min_bp: u8) -> PResult<Expr> {
        self.enter()?;
        let r = self.parse_op_inner(min_bp);
        self.depth -= 1;
        r
    }

    fn parse_op_inner(&mut self, min_bp: u8) -> PResult<Expr> {
        let (t, start, _) = self.peek()?;
        let mut lhs = match t {
            Tok::Char('!') => {
                self.bump()?;
                let e = self.parse_op(13)?;
                let span = Span::new(start, e.span.end as usize);
                Expr::new(ExprKind::Not(Box::new(e)), span)
            }
            Tok::Char('-') => {
                self.bump()?;
                let e = self.parse_op(23)?;
                let span = Span::new(start, e.span.end as usize);
                let sub = self.var("__sub", span);
                let zero = Expr::new(ExprKind::Int(0), span);
                Expr::new(
                    ExprKind::Call {
                        fun: Box::new(sub),
                        args: vec![zero, e].into_boxed_slice(),
                    },
                    span,
                )
            }
            _ => self.parse_app()?,
        };
        let mut last_nonassoc: Option<u8> = None;
        loop {
            let (t, os, oe) = self.peek()?;
            let Some((lbp, rbp)) = Self::infix(&t) else {
                break;
            };
            if lbp < min_bp {
                break;
            }
            // Non-associative operators cannot be chained at the same level.
            let nonassoc = matches!(lbp, 7 | 9 | 21);
            if nonassoc && last_nonassoc == Some(lbp) {
                return err(format!("syntax error, unexpected {}", t.describe()), os, oe);
            }
            self.bump()?;
            if t == Tok::Char('?') {
                let path = self.parse_attrpath()?;
                let end = self.pos;
                lhs = Expr::new(
                    ExprKind::HasAttr {
                        e: Box::new(lhs),
                        path: path.into_boxed_slice(),
                    },
                    Span::new(start, end),
                );
                last_nonassoc = Some(lbp);
                continue;
            }
            let rhs = self.parse_op(rbp)?;
            let span = Span::new(start, rhs.span.end as usize);
            let opspan = Span::new(os, oe);
            lhs = match t {
                Tok::Impl => bin(BinOp::Impl, lhs, rhs, span),
                Tok::Or => bin(BinOp::Or, lhs, rhs, span),
                Tok::And => bin(BinOp::And, lhs, rhs, span),
                Tok::Eq => bin(BinOp::Eq, lhs, rhs, span),
                Tok::NEq => bin(BinOp::NEq, lhs, rhs, span),
                Tok::Update => bin(BinOp::Update, lhs, rhs, span),
                Tok::Concat => bin(BinOp::ConcatLists, lhs, rhs, span),
                Tok::Char('+') => Expr::new(
                    ExprKind::Concat {
                        force_string: false,
                        parts: vec![lhs, rhs].into_boxed_slice(),
                    },
                    span,
                ),
                Tok::Char('-') => self.builtin_call("__sub", lhs, rhs, span, opspan),
                Tok::Char('*') => self.builtin_call("__mul", lhs, rhs, span, opspan),
                Tok::Char('/') => self.builtin_call("__div", lhs, rhs, span, opspan),
                Tok::Char('<') => self.builtin_call("__lessThan", lhs, rhs, span, opspan),
                Tok::Char('>') => self.builtin_call("__lessThan", rhs, lhs, span, opspan),
                Tok::Leq => {
                    let c = self.builtin_call("__lessThan", rhs, lhs, span, opspan);
                    Expr::new(ExprKind::Not(Box::new(c)), span)
                }
                Tok::Geq => {
                    let c = self.builtin_call("__lessThan", lhs, rhs, span, opspan);
                    Expr::new(ExprKind::Not(Box::new(c)), span)
                }
                _ => unreachable!("infix() only returns operators handled here"),
            };
            last_nonassoc = if nonassoc { Some(lbp) } else { None };
        }
        Ok(lhs)
    }

    fn builtin_call(&mut self, name: &str, a: Expr, b: Expr, span: Span, opspan: Span) -> Expr {
        let f = self.var(name, opspan);
        Expr::new(
            ExprKind::Call {
                fun: Box::new(f),
                args: vec![a, b].into_boxed_slice(),
            },
            span,
        )
    }

    /// Can the token start an argument of a function application (`expr_select`)?
    fn starts_simple(t: &Tok) -> bool {
        matches!(
            t,
            Tok::Id(_)
                | Tok::Int(_)
                | Tok::Float(_)
                | Tok::Path(_)
                | Tok::HPath(_)
                | Tok::SPath(_)
                | Tok::Uri(_)
                | Tok::Quote
                | Tok::IndOpen
                | Tok::Let
                | Tok::Rec
                | Tok::Char('(')
                | Tok::Char('{')
                | Tok::Char('[')
        )
    }

    /// `expr_app`: function application.
    fn parse_app(&mut self) -> PResult<Expr> {
        let start = self.peek()?.1;
        let f = self.parse_select()?;
        let mut args = Vec::new();
        let mut end = f.span.end as usize;
        while Self::starts_simple(self.peek_tok()?) {
            let a = self.parse_select()?;
            end = a.span.end as usize;
            args.push(a);
        }
        if args.is_empty() {
            return Ok(f);
        }
        Ok(self.call(f, tight(args), Span::new(start, end)))
    }

    /// `expr_select`: `e.a.b`, `e.a or d`, and the legacy `e or` (a call of `or`).
    fn parse_select(&mut self) -> PResult<Expr> {
        let (_, start, _) = self.peek()?;
        let e = self.parse_simple()?;
        match *self.peek_tok()? {
            Tok::Char('.') => {
                self.bump()?;
                let path = self.parse_attrpath()?;
                let default = if *self.peek_tok()? == Tok::OrKw {
                    self.bump()?;
                    Some(Box::new(self.parse_select()?))
                } else {
                    None
                };
                let end = default
                    .as_ref()
                    .map(|d| d.span.end as usize)
                    .unwrap_or(self.pos);
                let path = path.into_boxed_slice();
                let kind = match default {
                    None => ExprKind::Select {
                        e: Box::new(e),
                        path,
                    },
                    Some(default) => ExprKind::SelectOr(Box::new(SelectOr {
                        e,
                        path,
                        default: *default,
                    })),
                };
                Ok(Expr::new(kind, Span::new(start, end)))
            }
            Tok::OrKw => {
                let (_, s, en) = self.bump()?;
                let or = self.var("or", Span::new(s, en));
                Ok(Expr::new(
                    ExprKind::Call {
                        fun: Box::new(e),
                        args: vec![or].into_boxed_slice(),
                    },
                    Span::new(start, en),
                ))
            }
            _ => Ok(e),
        }
    }

    fn parse_attrpath(&mut self) -> PResult<Vec<AttrName>> {
        let mut path = vec![self.parse_attr()?];
        while *self.peek_tok()? == Tok::Char('.') {
            self.bump()?;
            path.push(self.parse_attr()?);
        }
        Ok(tight(path))
    }

    /// One attribute name: an identifier (`or` included), a string, or `${e}`.
    fn parse_attr(&mut self) -> PResult<AttrName> {
        let (t, s, e) = self.peek()?;
        match t {
            Tok::Id(n) => {
                self.bump()?;
                Ok(AttrName::Static(self.sym(n)))
            }
            Tok::OrKw => {
                self.bump()?;
                Ok(AttrName::Static(self.sym("or")))
            }
            Tok::Quote => {
                self.bump()?;
                let str_expr = self.parse_string_rest(s)?;
                match str_expr.kind {
                    ExprKind::Str(v) => Ok(AttrName::Static(self.sym(&v))),
                    _ => Ok(AttrName::Dynamic(Box::new(str_expr))),
                }
            }
            Tok::DollarCurly => {
                self.bump()?;
                let x = self.parse_expr()?;
                self.expect_char('}')?;
                // `${"name"}` with a plain string is a static name, as in CppNix.
                match x.kind {
                    ExprKind::Str(v) => Ok(AttrName::Static(self.sym(&v))),
                    _ => Ok(AttrName::Dynamic(Box::new(x))),
                }
            }
            _ => {
                let _ = e;
                self.unexpected("identifier or 'or' or '${' or '\"'")
            }
        }
    }

    /// `expr_simple`.
    fn parse_simple(&mut self) -> PResult<Expr> {
        let (t, start, end) = self.peek()?;
        let span = Span::new(start, end);
        match t {
            Tok::Id(n) => {
                self.bump()?;
                if n == "__curPos" {
                    Ok(Expr::new(ExprKind::CurPos, span))
                } else {
                    Ok(self.var(n, span))
                }
            }
            Tok::Int(s) => {
                self.bump()?;
                match s.parse::<i64>() {
                    Ok(v) => Ok(Expr::new(ExprKind::Int(v), span)),
                    Err(_) => err(format!("invalid integer '{s}'"), start, end),
                }
            }
            Tok::Float(s) => {
                self.bump()?;
                match s.parse::<f64>() {
                    Ok(v) if v.is_finite() => Ok(Expr::new(ExprKind::Float(v), span)),
                    _ => err(format!("invalid float '{s}'"), start, end),
                }
            }
            Tok::Quote => {
                self.bump()?;
                self.parse_string_rest(start)
            }
            Tok::IndOpen => {
                self.bump()?;
                self.parse_ind_string_rest(start)
            }
            Tok::Path(p) => {
                self.bump()?;
                self.lint_path(p, start, end)?;
                let resolved = if p.starts_with('/') {
                    let mut c = canon_path(p);
                    if p.len() > 1 && p.ends_with('/') {
                        c.push('/');
                    }
                    c
                } else {
                    let mut c = canon_path(&format!("{}/{}", self.base_dir, p));
                    if p.len() > 1 && p.ends_with('/') {
                        c.push('/');
                    }
                    c
                };
                self.parse_path_rest(resolved, p.ends_with('/'), start)
            }
            Tok::HPath(p) => {
                self.bump()?;
                let level = self.lints.absolute_path_literals;
                self.lint(level, "lint-absolute-path-literals", (start, end), |_| {
                    lint::absolute_message(p, true)
                })?;
                let resolved = format!("{}{}", self.home, &p[1..]);
                self.parse_path_rest(resolved, p.ends_with('/'), start)
            }
            Tok::SPath(p) => {
                self.bump()?;
                let f = self.var("__findFile", span);
                let np = self.var("__nixPath", span);
                Ok(Expr::new(
                    ExprKind::Call {
                        fun: Box::new(f),
                        args: vec![np, Expr::new(ExprKind::Str(p.to_string().into()), span)]
                            .into_boxed_slice(),
                    },
                    span,
                ))
            }
            Tok::Uri(u) => {
                self.bump()?;
                let level = self.lints.url_literals;
                self.lint(level, "lint-url-literals", (start, end), |fatal| {
                    lint::url_message(u, fatal)
                })?;
                Ok(Expr::new(ExprKind::Str(u.to_string().into()), span))
            }
            Tok::Char('(') => {
                self.bump()?;
                let e = self.parse_expr()?;
                self.expect_char(')')?;
                Ok(e)
            }
            Tok::Let => {
                // Legacy `let { ...; body = ...; }`: `(rec { ... }).body`.
                self.bump()?;
                self.expect_char('{')?;
                let mut attrs = self.parse_binds(&[Tok::Char('}')])?;
                let e2 = self.expect_char('}')?;
                attrs.rec = true;
                let sp = Span::new(start, e2);
                let body = self.sym("body");
                Ok(Expr::new(
                    ExprKind::Select {
                        e: Box::new(Expr::new(ExprKind::Attrs(Box::new(attrs)), sp)),
                        path: Box::new([AttrName::Static(body)]),
                    },
                    sp,
                ))
            }
            Tok::Rec => {
                self.bump()?;
                self.expect_char('{')?;
                let mut attrs = self.parse_binds(&[Tok::Char('}')])?;
                let e2 = self.expect_char('}')?;
                attrs.rec = true;
                Ok(Expr::new(
                    ExprKind::Attrs(Box::new(attrs)),
                    Span::new(start, e2),
                ))
            }
            Tok::Char('{') => {
                self.bump()?;
                let attrs = self.parse_binds(&[Tok::Char('}')])?;
                let e2 = self.expect_char('}')?;
                Ok(Expr::new(
                    ExprKind::Attrs(Box::new(attrs)),
                    Span::new(start, e2),
                ))
            }
            Tok::Char('[') => {
                self.bump()?;
                let mut items = Vec::new();
                loop {
                    if *self.peek_tok()? == Tok::Char(']') {
                        let (_, _, e2) = self.bump()?;
                        return Ok(Expr::new(
                            ExprKind::List(items.into_boxed_slice()),
                            Span::new(start, e2),
                        ));
                    }
                    if !Self::starts_simple(self.peek_tok()?) {
                        return self.unexpected("']'");
                    }
                    self.enter()?;
                    let item = self.parse_select();
                    self.depth -= 1;
                    items.push(item?);
                }
            }
            _ => self.unexpected("expression"),
        }
    }

    /// The rest of an interpolated path after its first token.
    fn parse_path_rest(&mut self, first: String, mut slash: bool, start: usize) -> PResult<Expr> {
        let first_span = Span::new(start, self.pos);
        let mut parts = vec![Expr::new(ExprKind::Path(first.into()), first_span)];
        loop {
            let rest = &self.src[self.pos..];
            if rest.starts_with(b"${") {
                self.pos += 2;
                self.peeked = None;
                let e = self.parse_expr()?;
                self.expect_char('}')?;
                parts.push(e);
                slash = false;
                continue;
            }
            // `{PATH}|{PATH_SEG}|{PATH_CHAR}+`, longest.
            let n = path_len(rest)
                .max(path_seg_len(rest))
                .max(rest.iter().take_while(|c| is_path_char(**c)).count());
            if n > 0 && parts.len() > 1 {
                let s = String::from_utf8_lossy(&rest[..n]).into_owned();
                let sp = Span::new(self.pos, self.pos + n);
                self.pos += n;
                self.peeked = None;
                slash = s.ends_with('/');
                parts.push(Expr::new(ExprKind::Str(s.into()), sp));
                continue;
            }
            if slash {
                // As CppNix's lexer: at what follows the slash.
                let end = (self.pos + 1).min(self.src.len()).max(self.pos);
                return err("path has a trailing slash", self.pos, end);
            }
            break;
        }
        self.peeked = None;
        if parts.len() == 1 {
            return Ok(parts.pop().expect("one part"));
        }
        Ok(Expr::new(
            ExprKind::Concat {
                force_string: false,
                parts: parts.into_boxed_slice(),
            },
            Span::new(start, self.pos),
        ))
    }

    /// The rest of a `"..."` string after the opening quote.
    fn parse_string_rest(&mut self, start: usize) -> PResult<Expr> {
        let mut parts: Vec<Expr> = Vec::new();
        let mut buf: Vec<u8> = Vec::new();
        let mut buf_start = self.pos;
        self.peeked = None;
        loop {
            let i = self.pos;
            let s = self.src;
            match s.get(i) {
                None => {
                    return err(
                        "syntax error, unexpected end of file, expecting '\"'",
                        s.len(),
                        s.len(),
                    )
                }
                Some(b'"') => {
                    self.pos += 1;
                    break;
                }
                Some(b'$') if s.get(i + 1) == Some(&b'{') => {
                    if !buf.is_empty() {
                        let text = String::from_utf8_lossy(&unescape(&buf)).into_owned();
                        parts.push(Expr::new(
                            ExprKind::Str(text.into()),
                            Span::new(buf_start, i),
                        ));
                        buf.clear();
                    }
                    self.pos += 2;
                    let e = self.parse_expr()?;
                    self.expect_char('}')?;
                    self.peeked = None;
                    parts.push(e);
                    buf_start = self.pos;
                }
                Some(b'\\') => {
                    if i + 1 >= s.len() {
                        return err(
                            "syntax error, unexpected end of file, expecting '\"'",
                            s.len(),
                            s.len(),
                        );
                    }
                    // Keep the escape for unescape(), taking the whole next character.
                    let ch_len = std::str::from_utf8(&s[i + 1..])
                        .ok()
                        .or_else(|| std::str::from_utf8(&s[i + 1..(i + 5).min(s.len())]).ok())
                        .and_then(|t| t.chars().next())
                        .map(|c| c.len_utf8())
                        .unwrap_or(1);
                    buf.extend_from_slice(&s[i..i + 1 + ch_len]);
                    self.pos += 1 + ch_len;
                }
                Some(b'$') if !matches!(s.get(i + 1), Some(b'"') | Some(b'\\') | None) => {
                    // `$` and the character after it are literal (so `$${` is not `${`).
                    buf.push(b'$');
                    buf.push(s[i + 1]);
                    self.pos += 2;
                }
                Some(&c) => {
                    buf.push(c);
                    self.pos += 1;
                }
            }
        }
        let end = self.pos;
        if parts.is_empty() {
            let text = String::from_utf8_lossy(&unescape(&buf)).into_owned();
            return Ok(Expr::new(ExprKind::Str(text.into()), Span::new(start, end)));
        }
        if !buf.is_empty() {
            let text = String::from_utf8_lossy(&unescape(&buf)).into_owned();
            parts.push(Expr::new(
                ExprKind::Str(text.into()),
                Span::new(buf_start, end - 1),
            ));
        }
        Ok(Expr::new(
            ExprKind::Concat {
                force_string: true,
                parts: parts.into_boxed_slice(),
            },
            Span::new(start, end),
        ))
    }

    /// The rest of a `''...''` string after its opening.
    fn parse_ind_string_rest(&mut self, start: usize) -> PResult<Expr> {
        let mut parts: Vec<IndPart> = Vec::new();
        self.peeked = None;
        let s = self.src;
        loop {
            let i = self.pos;
            let text = |a: usize, b: usize, has: bool| IndPart::Text {
                s: s[a..b].to_vec(),
                has_indentation: has,
                span: Span::new(a, b),
            };
            match s.get(i) {
                None => {
                    return err(
                        "syntax error, unexpected end of file, expecting ''",
                        s.len(),
                        s.len(),
                    )
                }
                Some(b'\'') if s.get(i + 1) == Some(&b'\'') => match s.get(i + 2) {
                    Some(b'$') => {
                        parts.push(IndPart::Text {
                            s: b"$".to_vec(),
                            has_indentation: false,
                            span: Span::new(i, i + 3),
                        });
                        self.pos += 3;
                    }
                    Some(b'\'') => {
                        parts.push(IndPart::Text {
                            s: b"''".to_vec(),
                            has_indentation: false,
                            span: Span::new(i, i + 3),
                        });
                        self.pos += 3;
                    }
                    Some(b'\\') if i + 3 < s.len() => {
                        let ch_len = std::str::from_utf8(&s[i + 3..(i + 7).min(s.len())])
                            .ok()
                            .and_then(|t| t.chars().next())
                            .map(|c| c.len_utf8())
                            .unwrap_or(1);
                        let un = unescape(&s[i + 2..i + 3 + ch_len]);
                        parts.push(IndPart::Text {
                            s: un,
                            has_indentation: false,
                            span: Span::new(i, i + 3 + ch_len),
                        });
                        self.pos += 3 + ch_len;
                    }
                    _ => {
                        self.pos += 2;
                        break;
                    }
                },
                Some(b'$') if s.get(i + 1) == Some(&b'{') => {
                    self.pos += 2;
                    let e = self.parse_expr()?;
                    self.expect_char('}')?;
                    self.peeked = None;
                    parts.push(IndPart::Expr(e));
                }
                _ => {
                    // ([^$']|$[^{']|'[^'$])+
                    let mut j = i;
                    loop {
                        match s.get(j) {
                            Some(b'$') => match s.get(j + 1) {
                                Some(b'{') | Some(b'\'') | None => break,
                                Some(_) => j += 2,
                            },
                            Some(b'\'') => match s.get(j + 1) {
                                Some(b'\'') | Some(b'$') | None => break,
                                Some(_) => j += 2,
                            },
                            Some(_) => j += 1,
                            None => break,
                        }
                    }
                    if j > i {
                        parts.push(text(i, j, true));
                        self.pos = j;
                    } else {
                        // A lone `$` or `'`.
                        parts.push(text(i, i + 1, false));
                        self.pos = i + 1;
                    }
                }
            }
        }
        let end = self.pos;
        Ok(strip_indentation(parts, Span::new(start, end)))
    }

    /// Bindings of a set or `let`, until one of `until` (not consumed).
    fn parse_binds(&mut self, until: &[Tok]) -> PResult<Attrs> {
        let mut attrs = Attrs::default();
        loop {
            let (t, s, _) = self.peek()?;
            if until.contains(&t) {
                tighten(&mut attrs);
                return Ok(attrs);
            }
            if t == Tok::Inherit {
                self.bump()?;
                let from = if *self.peek_tok()? == Tok::Char('(') {
                    self.bump()?;
                    let e = self.parse_expr()?;
                    self.expect_char(')')?;
                    Some(e)
                } else {
                    None
                };
                let from_idx = from.map(|e| {
                    attrs.inherit_from.push(e);
                    attrs.inherit_from.len() - 1
                });
                loop {
                    let (t, s2, e2) = self.peek()?;
                    let name = match t {
                        Tok::Char(';') => {
                            self.bump()?;
                            break;
                        }
                        Tok::Id(n) => {
                            self.bump()?;
                            self.sym(n)
                        }
                        Tok::OrKw => {
                            self.bump()?;
                            self.sym("or")
                        }
                        Tok::Quote => {
                            self.bump()?;
                            match self.parse_string_rest(s2)?.kind {
                                ExprKind::Str(v) => self.sym(&v),
                                _ => {
                                    return err(
                                        "dynamic attributes not allowed in inherit",
                                        s2,
                                        self.pos,
                                    )
                                }
                            }
                        }
                        Tok::DollarCurly => match self.parse_attr()? {
                            AttrName::Static(sym) => sym,
                            AttrName::Dynamic(_) => {
                                return err("dynamic attributes not allowed in inherit", s2, e2)
                            }
                        },
                        _ => return self.unexpected("expression"),
                    };
                    let span = Span::new(s2, self.pos);
                    if let Some(prev) = attrs.attrs.get(&name) {
                        let n = self.interner.name(name).to_string();
                        return err(
                            format!(
                                "attribute '{n}' already defined at {}",
                                self.describe_pos(prev.span)
                            ),
                            span.start as usize,
                            span.end as usize,
                        );
                    }
                    let (kind, value) = match from_idx {
                        None => (AttrKind::Inherited, Expr::new(ExprKind::Var(name), span)),
                        Some(i) => (
                            AttrKind::InheritedFrom(i as u32),
                            Expr::new(
                                ExprKind::Select {
                                    e: Box::new(Expr::new(ExprKind::InheritFrom(i), span)),
                                    path: Box::new([AttrName::Static(name)]),
                                },
                                span,
                            ),
                        ),
                    };
                    attrs.attrs.insert(name, AttrDef { kind, value, span });
                }
                continue;
            }
            if !matches!(t, Tok::Id(_) | Tok::OrKw | Tok::Quote | Tok::DollarCurly) {
                // What bison reports here.
                return self.unexpected("'inherit'");
            }
            let path = self.parse_attrpath()?;
            let path_end = self.pos;
            if *self.peek_tok()? != Tok::Char('=') {
                return self.unexpected("'.' or '='");
            }
            self.bump()?;
            let value = self.parse_expr()?;
            self.expect_char(';')?;
            self.add_attr(&mut attrs, path, Span::new(s, path_end), value)?;
        }
    }

    /// "FILE:LINE:COL" of a span, for "already defined at" messages.
    pub fn describe_pos(&self, span: Span) -> String {
        let (l, c) = line_col(self.src, span.start as usize);
        format!("{}:{l}:{c}", self.origin)
    }

    fn show_path(&self, path: &[AttrName]) -> String {
        path.iter()
            .map(|a| match a {
                AttrName::Static(s) => self.interner.name(*s).to_string(),
                AttrName::Dynamic(e) => format!("\"${{{}}}\"", crate::show::show(self.interner, e)),
            })
            .collect::<Vec<_>>()
            .join(".")
    }

    fn add_attr(
        &mut self,
        top: &mut Attrs,
        path: Vec<AttrName>,
        span: Span,
        value: Expr,
    ) -> PResult<()> {
        let mut attrs = top;
        let n = path.len();
        for (k, a) in path.iter().enumerate().take(n - 1) {
            match a {
                AttrName::Static(sym) => {
                    let exists = attrs.attrs.contains_key(sym);
                    if exists {
                        let is_attrs = matches!(
                            attrs.attrs.get(sym).map(|d| &d.value.kind),
                            Some(ExprKind::Attrs(_))
                        );
                        if !is_attrs {
                            let prev = attrs.attrs[sym].span;
                            return err(
                                format!(
                                    "attribute '{}' already defined at {}",
                                    self.show_path(&path[..=k]),
                                    self.describe_pos(prev)
                                ),
                                span.start as usize,
                                span.end as usize,
                            );
                        }
                    } else {
                        attrs.attrs.insert(
                            *sym,
                            AttrDef {
                                kind: AttrKind::Plain,
                                value: Expr::new(ExprKind::Attrs(Box::default()), span),
                                span,
                            },
                        );
                    }
                    let def = attrs.attrs.get_mut(sym).expect("inserted or present");
                    match &mut def.value.kind {
                        ExprKind::Attrs(inner) => attrs = inner,
                        _ => unreachable!("checked to be an attribute set"),
                    }
                }
                AttrName::Dynamic(e) => {
                    attrs.dynamic.push((
                        (**e).clone(),
                        Expr::new(ExprKind::Attrs(Box::default()), span),
                        span,
                    ));
                    let last = attrs.dynamic.last_mut().expect("just pushed");
                    match &mut last.1.kind {
                        ExprKind::Attrs(inner) => attrs = inner,
                        _ => unreachable!("just created as an attribute set"),
                    }
                }
            }
        }
        match &path[n - 1] {
            AttrName::Static(sym) => {
                let def = AttrDef {
                    kind: AttrKind::Plain,
                    value,
                    span,
                };
                let mut p = path.clone();
                self.insert_attr(attrs, &mut p, *sym, def)
            }
            AttrName::Dynamic(e) => {
                attrs.dynamic.push(((**e).clone(), value, span));
                Ok(())
            }
        }
    }

    fn insert_attr(
        &mut self,
        attrs: &mut Attrs,
        path: &mut Vec<AttrName>,
        sym: Symbol,
        def: AttrDef,
    ) -> PResult<()> {
        if let Some(existing) = attrs.attrs.get_mut(&sym) {
            let both_sets = matches!(existing.value.kind, ExprKind::Attrs(_))
                && matches!(def.value.kind, ExprKind::Attrs(_));
            if !both_sets {
                let prev = existing.span;
                return err(
                    format!(
                        "attribute '{}' already defined at {}",
                        self.show_path(path),
                        self.describe_pos(prev)
                    ),
                    def.span.start as usize,
                    def.span.end as usize,
                );
            }
            let ExprKind::Attrs(new) = def.value.kind else {
                unreachable!("checked above")
            };
            let mut new = *new;
            let ExprKind::Attrs(old) = &mut existing.value.kind else {
                unreachable!("checked above")
            };
            let offset = old.inherit_from.len();
            let old: &mut Attrs = old;
            let mut moved: Vec<(Symbol, AttrDef)> =
                std::mem::take(&mut new.attrs).into_iter().collect();
            moved.sort_by_key(|(s, _)| *s);
            for (s, mut d) in moved {
                if let AttrKind::InheritedFrom(i) = d.kind {
                    d.kind = AttrKind::InheritedFrom(i + offset as u32);
                    if let ExprKind::Select { e, .. } = &mut d.value.kind {
                        e.kind = ExprKind::InheritFrom(i as usize + offset);
                    }
                }
                path.push(AttrName::Static(s));
                let r = self.insert_attr(old, path, s, d);
                path.pop();
                r?;
            }
            old.dynamic.append(&mut new.dynamic);
            old.inherit_from.append(&mut new.inherit_from);
            Ok(())
        } else {
            attrs.attrs.insert(sym, def);
            Ok(())
        }
    }
}

fn bin(op: BinOp, a: Expr, b: Expr, span: Span) -> Expr {
    Expr::new(
        ExprKind::Bin {
            op,
            a: Box::new(a),
            b: Box::new(b),
        },
        span,
    )
}

/// 1-based line and column of a byte offset.
pub fn line_col(src: &[u8], offset: usize) -> (usize, usize) {
    let off = offset.min(src.len());
    let starts = line_starts(&src[..off]);
    let last = starts.last().copied().unwrap_or(0);
    // In the bytes the text stands for (see `crate::bytes`).
    let stand_ins = crate::bytes::count_stand_ins(&src[last..off]);
    (starts.len(), off - last - 3 * stand_ins + 1)
}

/// Where the lines of `src` start (the first at 0): after each `\n`, `\r\n` or lone `\r`,
/// the line ends Nix counts (columns are then bytes into the line, from 1).
pub fn line_starts(src: &[u8]) -> Vec<usize> {
    let mut starts = vec![0];
    let mut i = 0;
    while i < src.len() {
        match src[i] {
            b'\r' if src.get(i + 1) == Some(&b'\n') => i += 2,
            b'\r' | b'\n' => i += 1,
            _ => {
                i += 1;
                continue;
            }
        }
        starts.push(i);
    }
    starts
}

/// CppNix's indentation stripping of `''` strings.
fn strip_indentation(parts: Vec<IndPart>, span: Span) -> Expr {
    if parts.is_empty() {
        return Expr::new(ExprKind::Str(String::new().into()), span);
    }
    let mut at_start = true;
    let mut min_indent = usize::MAX;
    let mut cur = 0usize;
    for p in &parts {
        match p {
            IndPart::Text {
                s,
                has_indentation: true,
                ..
            } => {
                for &c in s {
                    if at_start {
                        if c == b' ' {
                            cur += 1;
                        } else if c == b'\n' {
                            cur = 0;
                        } else {
                            at_start = false;
                            min_indent = min_indent.min(cur);
                        }
                    } else if c == b'\n' {
                        at_start = true;
                        cur = 0;
                    }
                }
            }
            _ => {
                if at_start {
                    at_start = false;
                    min_indent = min_indent.min(cur);
                }
            }
        }
    }
    let mut out: Vec<Expr> = Vec::new();
    at_start = true;
    let mut dropped = 0usize;
    let n = parts.len();
    for (idx, p) in parts.into_iter().enumerate() {
        match p {
            IndPart::Expr(e) => {
                at_start = false;
                dropped = 0;
                out.push(e);
            }
            IndPart::Text { s, span: sp, .. } => {
                let mut s2: Vec<u8> = Vec::new();
                for &c in &s {
                    if at_start {
                        if c == b' ' {
                            if dropped >= min_indent {
                                s2.push(c);
                            }
                            dropped += 1;
                        } else if c == b'\n' {
                            dropped = 0;
                            s2.push(c);
                        } else {
                            at_start = false;
                            dropped = 0;
                            s2.push(c);
                        }
                    } else {
                        s2.push(c);
                        if c == b'\n' {
                            at_start = true;
                        }
                    }
                }
                if idx + 1 == n {
                    if let Some(p) = s2.iter().rposition(|&c| c == b'\n') {
                        if s2[p + 1..].iter().all(|&c| c == b' ') {
                            s2.truncate(p + 1);
                        }
                    }
                }
                if !s2.is_empty() {
                    out.push(Expr::new(
                        ExprKind::Str(String::from_utf8_lossy(&s2).into_owned().into()),
                        sp,
                    ));
                }
            }
        }
    }
    if out.is_empty() {
        return Expr::new(ExprKind::Str(String::new().into()), span);
    }
    if out.len() == 1 && matches!(out[0].kind, ExprKind::Str(_)) {
        return out.pop().expect("one element");
    }
    Expr::new(
        ExprKind::Concat {
            force_string: true,
            parts: out.into_boxed_slice(),
        },
        span,
    )
}
