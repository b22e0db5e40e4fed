//! A recursive-descent (Pratt for operators) parser for the Nix language, producing the
//! desugared AST that CppNix's bison parser produces.

use crate::ast::*;
use crate::lexer::{
    find_either, is_path_char, next_token_fast, path_len, path_seg_len, skip_trivia, token_text,
    Tok,
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

/// A warning of the parser, shown when its parse is used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseWarning {
    /// A lint set to `warn`: the message, shown over an excerpt at the span.
    Lint(ParseError),
    /// The legacy `e or` (a call of `e` with the variable `or`) where the parse current Nix
    /// plans would read it otherwise (`f e or`, `[ e or ]`, `x.a or e or`); the span covers
    /// `e or`. Current Nix warns there.
    CursedOr(Span),
}

/// Boxed, so that what the parser's functions return in the common case (a token, a
/// position) stays small enough to come back in registers.
type PResult<T> = Result<T, Box<ParseError>>;

/// A token the lexer found: its kind, and where it starts and ends in the source.
#[derive(Clone, Copy)]
struct Token {
    tok: Tok,
    start: u32,
    end: u32,
}

impl Token {
    /// The kind, start and end.
    #[inline]
    fn parts(self) -> (Tok, usize, usize) {
        (self.tok, self.start as usize, self.end as usize)
    }
}

/// How many tokens past the next one the parser may look (see [`Parser::peek_ahead`]).
const AHEAD: usize = 3;

pub struct Parser<'a> {
    /// The source, as text and as bytes.
    text: &'a str,
    src: &'a [u8],
    pos: usize,
    /// Lookahead: the token at `pos` (after trivia), its start and end.
    peeked: Option<Token>,
    /// The tokens after `peeked` lexed already (the first `n_ahead`), each starting after the
    /// one before: looking ahead does not lex a token twice.
    ahead: [Token; AHEAD],
    n_ahead: usize,
    /// The last token lexed as the next token that was not [`Self::acceptable`].
    refused: Token,
    /// See [`next_token_cached`].
    dead_run: (usize, usize),
    pub interner: &'a mut Interner,
    base_dir: &'a str,
    home: &'a str,
    origin: &'a str,
    depth: usize,
    /// Whether `|>` and `<|` are allowed (the `pipe-operators` experimental feature).
    pipe_operators: bool,
    /// The lints to check literals against.
    lints: Lints,
    /// What the lints set to `warn` found, and the legacy `or` calls current Nix warns
    /// about, in source order.
    warnings: Vec<ParseWarning>,
    /// The span of the last `expr_select` parsed when it is a legacy `e or` call, for the
    /// production that uses it to warn or not ([`ParseWarning::CursedOr`]).
    cursed_or: Option<Span>,
    /// Space to collect in (see [`Scratch`]).
    scratch: Scratch,
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
    Err(Box::new(ParseError {
        msg: msg.into(),
        span: Span::new(start, end),
    }))
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

/// Append `text[a..b]` to `buf`. The parser cuts text at ASCII characters and whole
/// characters only, so the range is always on character boundaries; were it not, the bytes
/// would go in as `String::from_utf8_lossy` makes them.
fn push_src(buf: &mut String, text: &str, a: usize, b: usize) {
    match text.get(a..b) {
        Some(t) => buf.push_str(t),
        None => buf.push_str(&String::from_utf8_lossy(&text.as_bytes()[a..b])),
    }
}

/// The items of `v` from `base` on, taken off it into a boxed slice of their exact size (moved
/// as a block, not one by one); `v` keeps its buffer.
fn take_tail<T>(v: &mut Vec<T>, base: usize) -> Box<[T]> {
    if base == 0 {
        let mut out = Vec::with_capacity(v.len());
        out.append(v);
        out.into_boxed_slice()
    } else {
        v.split_off(base).into_boxed_slice()
    }
}

/// Where the line after the first line of `s` starts (after its `\n`), if there is one.
fn line_end(s: &[u8]) -> Option<usize> {
    find_either(s, b'\n', b'\n').map(|k| k + 1)
}

/// How many bytes the UTF-8 character starting with byte `lead` takes.
fn utf8_width(lead: u8) -> usize {
    match lead {
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf7 => 4,
        _ => 1,
    }
}

/// A `"..."` string read by [`Parser::string_rest`].
enum StrLit<'a> {
    /// Text without `\`, `$` or CR (so without escapes or interpolations): this text of
    /// the source.
    Src(&'a str),
    /// Other text without interpolations: it is left in [`Scratch::strbuf`].
    Buf,
    /// With interpolations: the concatenation of its parts.
    Parts(Expr),
}

/// What ends the bindings [`Parser::parse_binds`] reads.
#[derive(Clone, Copy)]
enum BindsEnd {
    Brace,
    In,
}

/// A piece of an indented string before indentation stripping.
enum IndPart {
    Text {
        text: IndText,
        has_indentation: bool,
        span: Span,
    },
    Expr(Expr),
}

/// The text of a piece of an indented string: a range of the source, or an escaped
/// character.
#[derive(Clone, Copy)]
enum IndText {
    Src(usize, usize),
    Escaped(&'static str),
}

impl IndText {
    /// Its bytes, in `text` (the source) or not.
    fn bytes(self, text: &str) -> &[u8] {
        match self {
            IndText::Src(a, b) => &text.as_bytes()[a..b],
            IndText::Escaped(e) => e.as_bytes(),
        }
    }

    /// Append `bytes[a..b]` of its bytes (see [`Self::bytes`]) to `out`.
    fn push_part(self, out: &mut String, text: &str, a: usize, b: usize) {
        match self {
            IndText::Src(start, _) => push_src(out, text, start + a, start + b),
            IndText::Escaped(e) => push_src(out, e, a, b),
        }
    }
}

/// The vectors a parse collects in, emptied after each use and kept for the next parse on
/// the same thread: parsing many small files then does not grow new ones for each.
#[derive(Default)]
struct Scratch {
    /// Expressions being collected (list items, arguments, parts of strings), innermost
    /// last: each collection pushes onto the end and takes its own items off when done, so
    /// one vector serves them all, and what is kept is allocated once at its exact size.
    exprs: Vec<Expr>,
    /// Attribute paths being collected, as `exprs`.
    names: Vec<AttrName>,
    /// The pieces of indented strings being read, as `exprs`.
    ind_parts: Vec<IndPart>,
    /// Formals being collected, as `exprs`.
    formals: Vec<Formal>,
    /// Vectors the bindings of sets are collected in, kept for the next set: a set in the
    /// syntax tree gets its bindings allocated once at their exact number.
    binding_vecs: Vec<Vec<(Symbol, AttrDef)>>,
    /// The text of the string literal being read.
    strbuf: String,
}

/// Scratch vectors larger than this (in elements) are not kept for the next parse.
const SCRATCH_KEPT: usize = 1 << 16;

/// How many vectors for bindings are kept for the next parse (one is in use per set being
/// read, so as many as sets nest).
const BINDING_VECS_KEPT: usize = 64;

thread_local! {
    /// The scratch space of the last parse on this thread.
    static KEPT: std::cell::Cell<Option<Scratch>> = const { std::cell::Cell::new(None) };
}

impl Scratch {
    /// The scratch space kept by the last parse on this thread, or a new one.
    fn take() -> Scratch {
        KEPT.try_with(|k| k.take())
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    /// Keep this scratch space for the next parse on this thread, emptied (a parse that
    /// failed may leave items behind) and without vectors grown too large to keep.
    fn keep(mut self) {
        fn empty<T>(v: &mut Vec<T>) {
            v.clear();
            if v.capacity() > SCRATCH_KEPT {
                *v = Vec::new();
            }
        }
        empty(&mut self.exprs);
        empty(&mut self.names);
        empty(&mut self.ind_parts);
        empty(&mut self.formals);
        self.binding_vecs.iter_mut().for_each(empty);
        self.binding_vecs.truncate(BINDING_VECS_KEPT);
        self.strbuf.clear();
        if self.strbuf.capacity() > SCRATCH_KEPT {
            self.strbuf = String::new();
        }
        // A thread being torn down keeps nothing.
        let _ = KEPT.try_with(|k| k.set(Some(self)));
    }
}

impl<'a> Parser<'a> {
    pub fn new(
        src: &'a str,
        interner: &'a mut Interner,
        origin: &'a str,
        base_dir: &'a str,
        home: &'a str,
    ) -> Parser<'a> {
        Parser {
            text: src,
            src: src.as_bytes(),
            pos: 0,
            peeked: None,
            ahead: [Token {
                tok: Tok::Eof,
                start: 0,
                end: 0,
            }; AHEAD],
            n_ahead: 0,
            refused: Token {
                tok: Tok::Eof,
                start: 0,
                end: 0,
            },
            dead_run: (0, 0),
            interner,
            base_dir: base_dir.trim_end_matches('/'),
            home,
            origin,
            depth: 0,
            pipe_operators: false,
            lints: Lints::default(),
            warnings: Vec::new(),
            cursed_or: None,
            scratch: Scratch::take(),
        }
    }

    /// Check literals against `lints` (none by default).
    pub fn with_lints(mut self, lints: Lints) -> Parser<'a> {
        self.lints = lints;
        self
    }

    /// The warnings so far (see [`ParseWarning`]), taken out of the parser.
    pub fn take_warnings(&mut self) -> Vec<ParseWarning> {
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
            return Err(Box::new(e));
        }
        self.warnings.push(ParseWarning::Lint(e));
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

    /// The next token.
    #[inline]
    fn peek(&mut self) -> PResult<(Tok, usize, usize)> {
        if let Some(p) = self.peeked {
            return Ok(p.parts());
        }
        self.lex_next();
        match self.peeked {
            Some(t) => Ok(t.parts()),
            None => self.refuse(self.refused).map(Token::parts),
        }
    }

    /// The text of the token `tok` at `start..end` (see [`token_text`]).
    #[inline]
    fn tok_text(&self, tok: Tok, start: usize, end: usize) -> &'a str {
        token_text(self.text, tok, start, end)
    }

    /// The token at `i` (after trivia), as lexed: for an unterminated comment, a
    /// [`Tok::Unterminated`] from where the comment starts to the end of the text.
    #[inline(always)]
    fn lex_at(&mut self, i: usize) -> Token {
        let start = match skip_trivia(self.src, i) {
            Ok(start) => start,
            Err(at) => {
                return Token {
                    tok: Tok::Unterminated,
                    start: at as u32,
                    end: self.src.len() as u32,
                }
            }
        };
        let (tok, n) = next_token_fast(self.src, start, &mut self.dead_run);
        Token {
            tok,
            start: start as u32,
            end: (start + n) as u32,
        }
    }

    /// Whether a lexed token may be the next token: an unterminated comment is an error, and
    /// so is a pipe operator without the feature (as CppNix's lexer: as soon as the token is
    /// read, whatever follows).
    #[inline]
    fn acceptable(&self, t: Token) -> bool {
        match t.tok {
            Tok::PipeInto | Tok::PipeFrom => self.pipe_operators,
            Tok::Unterminated => false,
            _ => true,
        }
    }

    /// A lexed token as the next token (see [`Self::acceptable`]).
    #[inline]
    fn accept(&self, t: Token) -> PResult<Token> {
        if self.acceptable(t) {
            Ok(t)
        } else {
            self.refuse(t)
        }
    }

    /// The error of a token that is not [`Self::acceptable`].
    #[cold]
    fn refuse(&self, t: Token) -> PResult<Token> {
        if t.tok == Tok::Unterminated {
            return err("unterminated comment", t.start as usize, t.end as usize);
        }
        err(
            "experimental Nix feature 'pipe-operators' is disabled; add \
             '--extra-experimental-features pipe-operators' to enable it",
            t.start as usize,
            t.end as usize,
        )
    }

    /// Lex the token at `pos` (after trivia), or take it from `ahead`: it becomes `peeked`
    /// if it is [`Self::acceptable`], and `refused` if not.
    #[inline(never)]
    fn lex_next(&mut self) {
        let t = if self.n_ahead > 0 {
            self.take_ahead()
        } else {
            self.lex_at(self.pos)
        };
        if self.acceptable(t) {
            self.peeked = Some(t);
        } else {
            self.refused = t;
        }
    }

    /// The first of the tokens lexed ahead, taken off them.
    #[inline(never)]
    fn take_ahead(&mut self) -> Token {
        let first = self.ahead[0];
        self.ahead.copy_within(1.., 0);
        self.n_ahead -= 1;
        first
    }

    /// The token `k` (1..=[`AHEAD`]) after the next one, as lexed (see [`Self::accept`]),
    /// without taking any: it is kept for when it comes. Past an unterminated comment
    /// everything is that comment.
    fn peek_ahead(&mut self, k: usize) -> PResult<Token> {
        let (_, _, mut end) = self.peek()?;
        while self.n_ahead < k.min(AHEAD) {
            if let Some(prev) = self.n_ahead.checked_sub(1).map(|i| self.ahead[i]) {
                if prev.tok == Tok::Unterminated {
                    return Ok(prev);
                }
                end = prev.end as usize;
            }
            self.ahead[self.n_ahead] = self.lex_at(end);
            self.n_ahead += 1;
        }
        Ok(self.ahead[k.min(AHEAD) - 1])
    }

    /// Forget the tokens lexed ahead: the parser reads the source itself from `pos` (in
    /// strings and paths).
    #[inline]
    fn forget_lookahead(&mut self) {
        self.peeked = None;
        self.n_ahead = 0;
    }

    /// The kind of the next token.
    #[inline]
    fn peek_tok(&mut self) -> PResult<Tok> {
        Ok(self.peek()?.0)
    }

    /// Whether the next token is the character `c`.
    #[inline]
    fn at_char(&mut self, c: u8) -> PResult<bool> {
        Ok(matches!(self.peek()?.0, Tok::Char(x) if x == c))
    }

    /// Take the next token.
    #[inline]
    fn bump(&mut self) -> PResult<(Tok, usize, usize)> {
        let p = self.peek()?;
        self.pos = p.2;
        self.peeked = None;
        Ok(p)
    }

    /// Take the next token, which has been peeked.
    #[inline]
    fn advance(&mut self) {
        if let Some(p) = self.peeked.take() {
            self.pos = p.end as usize;
        }
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

    fn expect_char(&mut self, c: u8) -> PResult<usize> {
        match self.peek_tok()? {
            Tok::Char(x) if x == c => Ok(self.bump()?.2),
            _ => self.unexpected(&format!("'{}'", c as char)),
        }
    }

    fn expect(&mut self, t: Tok, what: &str) -> PResult<usize> {
        if self.peek_tok()? == t {
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

    fn call(&mut self, fun: Expr, args: Box<[Expr]>, span: Span) -> Expr {
        // `f a b` is one call with two arguments, as CppNix's makeCall builds it.
        match fun.kind {
            ExprKind::Call { fun: f, args: a } => {
                let mut all = a.into_vec();
                all.extend(args.into_vec());
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
                    args,
                },
                span,
            ),
        }
    }

    /// Parse a whole file.
    pub fn parse_file(&mut self) -> Result<Expr, ParseError> {
        let r = self.expr().and_then(|e| match self.peek()? {
            (Tok::Eof, _, _) => Ok(e),
            _ => self.unexpected("end of file"),
        });
        // The file is read: the scratch space is kept for the next parse on this thread.
        std::mem::take(&mut self.scratch).keep();
        r.map_err(|e| *e)
    }

    /// One level deeper (undone by the caller), refused past [`MAX_DEPTH`].
    #[inline]
    fn enter(&mut self) -> PResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.too_deep();
        }
        Ok(())
    }

    #[cold]
    fn too_deep(&mut self) -> PResult<()> {
        let (_, s, e) = self.peek()?;
        err(
            format!("expression nested too deeply (more than {MAX_DEPTH} levels)"),
            s,
            e,
        )
    }

    /// `expr_function`: lambdas, `assert`, `with`, `let ... in`, and below them `if` and
    /// operators.
    pub fn parse_expr(&mut self) -> Result<Expr, ParseError> {
        self.expr().map_err(|e| *e)
    }

    /// [`Self::parse_expr`].
    fn expr(&mut self) -> PResult<Expr> {
        self.enter()?;
        let r = self.parse_expr_inner();
        self.depth -= 1;
        r
    }

    fn parse_expr_inner(&mut self) -> PResult<Expr> {
        let (t, start, end) = self.peek()?;
        match t {
            Tok::Id => {
                // `x: body` or `x @ { ... }: body`
                let name = self.tok_text(t, start, end);
                let next = self.peek_ahead(1)?;
                match self.accept(next)?.tok {
                    Tok::Char(b':') => {
                        self.advance();
                        self.bump()?;
                        let body = self.expr()?;
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
                    Tok::Char(b'@') => {
                        self.advance();
                        self.bump()?;
                        let (t2, s2, _) = self.peek()?;
                        if t2 != Tok::Char(b'{') {
                            return self.unexpected("'{'");
                        }
                        let _ = s2;
                        let formals = self.parse_formals()?;
                        self.expect_char(b':')?;
                        let body = self.expr()?;
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
                    // A variable alone (the commonest expression), if entering the
                    // operator level below would be allowed: straight to its node.
                    t if ends_expr(t) && self.depth < MAX_DEPTH => {
                        self.advance();
                        return Ok(self.simple_var(name, Span::new(start, end)));
                    }
                    _ => {}
                }
            }
            Tok::Char(b'{') if self.looks_like_formals()? => {
                let formals = self.parse_formals()?;
                let mut arg = None;
                if self.at_char(b'@')? {
                    self.bump()?;
                    match self.bump()? {
                        (Tok::Id, s, e) => {
                            let n = self.tok_text(Tok::Id, s, e);
                            arg = Some((self.sym(n), s, e))
                        }
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
                self.expect_char(b':')?;
                let body = self.expr()?;
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
                let cond = self.expr()?;
                self.expect_char(b';')?;
                let body = self.expr()?;
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
                let env = self.expr()?;
                self.expect_char(b';')?;
                let body = self.expr()?;
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
                let next = self.peek_ahead(1)?;
                if !matches!(self.accept(next)?.tok, Tok::Char(b'{')) {
                    self.advance();
                    let attrs = self.parse_binds(BindsEnd::In)?;
                    self.expect(Tok::In, "'in'")?;
                    let body = self.expr()?;
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
            }
            Tok::If => {
                self.bump()?;
                let cond = self.expr()?;
                self.expect(Tok::Then, "'then'")?;
                let then = self.expr()?;
                self.expect(Tok::Else, "'else'")?;
                let else_ = self.expr()?;
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
        if self.depth < MAX_DEPTH && Self::starts_simple(&t) {
            // As `parse_pipes` (one level deeper for the operators, which is allowed here),
            // without passing through the levels between it and the simple expression.
            self.depth += 1;
            let r = self.simple_chain(start);
            self.depth -= 1;
            return self.pipes_rest(r?);
        }
        self.parse_pipes()
    }

    /// The operator expression (`expr_op`) that starts with the simple expression at
    /// `start`, the next token: as [`Self::parse_op`] at the lowest binding power, where
    /// what follows the simple expression often ends the expression.
    fn simple_chain(&mut self, start: usize) -> PResult<Expr> {
        let e = self.parse_simple()?;
        if ends_expr(self.peek_tok()?) {
            return Ok(e);
        }
        let e = self.select_rest(e, start)?;
        let e = self.app_rest(e, start)?;
        self.op_rest(e, start, 0)
    }

    /// Decide whether `{` starts a set pattern (formals) rather than an attribute set.
    fn looks_like_formals(&mut self) -> PResult<bool> {
        // The tokens after the `{`; an unterminated comment ends the text.
        let mut tok_at = |k: usize| -> PResult<Tok> {
            Ok(match self.peek_ahead(k)?.tok {
                Tok::Unterminated => Tok::Eof,
                t => t,
            })
        };
        Ok(match tok_at(1)? {
            Tok::Ellipsis => true,
            Tok::Char(b'}') => matches!(tok_at(2)?, Tok::Char(b':') | Tok::Char(b'@')),
            Tok::Id => match tok_at(2)? {
                Tok::Char(b',') | Tok::Char(b'?') => true,
                Tok::Char(b'}') => matches!(tok_at(3)?, Tok::Char(b':') | Tok::Char(b'@')),
                _ => false,
            },
            _ => false,
        })
    }

    fn parse_formals(&mut self) -> PResult<Formals> {
        self.expect_char(b'{')?;
        let base = self.scratch.formals.len();
        let mut ellipsis = false;
        loop {
            match self.peek()? {
                (Tok::Char(b'}'), _, _) => {
                    self.bump()?;
                    break;
                }
                (Tok::Ellipsis, _, _) => {
                    self.bump()?;
                    ellipsis = true;
                    self.expect_char(b'}')?;
                    break;
                }
                (Tok::Id, s, e) => {
                    self.bump()?;
                    let n = self.tok_text(Tok::Id, s, e);
                    let name = self.sym(n);
                    let default = if self.at_char(b'?')? {
                        self.bump()?;
                        Some(Box::new(self.expr()?))
                    } else {
                        None
                    };
                    self.scratch.formals.push(Formal {
                        name,
                        default,
                        span: Span::new(s, e),
                    });
                    match self.peek_tok()? {
                        Tok::Char(b',') => {
                            self.bump()?;
                        }
                        Tok::Char(b'}') => {
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
            formals: take_tail(&mut self.scratch.formals, base),
            ellipsis,
        })
    }

    fn validate_formals(
        &mut self,
        f: &Formals,
        arg: Option<(Symbol, usize, usize)>,
    ) -> PResult<()> {
        // Names are equal when their symbols are: the names are only looked at for the
        // message.
        let mut dup: Option<(&str, Span)> = None;
        for (k, x) in f.formals.iter().enumerate() {
            if f.formals[..k].iter().any(|y| y.name == x.name) {
                let n = self.interner.name(x.name);
                if dup.is_none_or(|(dn, ds)| (dn, ds.start) > (n, x.span.start)) {
                    dup = Some((n, x.span));
                }
            }
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
    #[inline]
    fn parse_pipes(&mut self) -> PResult<Expr> {
        let first = self.parse_op(0)?;
        self.pipes_rest(first)
    }

    /// [`Self::parse_pipes`] after its first operand, `first`.
    #[inline]
    fn pipes_rest(&mut self, first: Expr) -> PResult<Expr> {
        match self.peek_tok()? {
            Tok::PipeInto | Tok::PipeFrom => self.pipes(first),
            _ => Ok(first),
        }
    }

    /// [`Self::pipes_rest`] at a pipe operator.
    #[cold]
    fn pipes(&mut self, first: Expr) -> PResult<Expr> {
        match self.peek_tok()? {
            Tok::PipeInto => {
                let mut acc = first;
                while matches!(self.peek_tok()?, Tok::PipeInto) {
                    let (_, s, _) = self.bump()?;
                    let f = self.parse_op(0)?;
                    let span = Span::new(acc.span.start as usize, f.span.end as usize);
                    let _ = s;
                    acc = self.call(f, Box::new([acc]), span);
                }
                if matches!(self.peek_tok()?, Tok::PipeFrom) {
                    return self.unexpected("'|>'");
                }
                Ok(acc)
            }
            _ => {
                let mut items = vec![first];
                while matches!(self.peek_tok()?, Tok::PipeFrom) {
                    self.bump()?;
                    items.push(self.parse_op(0)?);
                }
                if matches!(self.peek_tok()?, Tok::PipeInto) {
                    return self.unexpected("'<|'");
                }
                let mut acc = items.pop().expect("at least two items");
                while let Some(f) = items.pop() {
                    let span = Span::new(f.span.start as usize, acc.span.end as usize);
                    acc = self.call(f, Box::new([acc]), span);
                }
                Ok(acc)
            }
        }
    }

    /// Binding power of an infix operator: (left bp, right bp, kind).
    fn infix(t: &Tok) -> Option<(u8, u8)> {
        Some(match t {
            Tok::Impl => (2, 1),
            Tok::Or => (3, 4),
            Tok::And => (5, 6),
            Tok::Eq | Tok::NEq => (7, 8),
            Tok::Char(b'<') | Tok::Char(b'>') | Tok::Leq | Tok::Geq => (9, 10),
            Tok::Update => (12, 11),
            // NOT is 13 (prefix)
            Tok::Char(b'+') | Tok::Char(b'-') => (15, 16),
            Tok::Char(b'*') | Tok::Char(b'/') => (17, 18),
            Tok::Concat => (20, 19),
            Tok::Char(b'?') => (21, 22),
            // NEGATE is 23 (prefix)
            _ => return None,
        })
    }

    #[inline]
    fn parse_op(&mut self, min_bp: u8) -> PResult<Expr> {
        self.enter()?;
        let r = self.parse_op_inner(min_bp);
        self.depth -= 1;
        r
    }

    fn parse_op_inner(&mut self, min_bp: u8) -> PResult<Expr> {
        let (t, start, _) = self.peek()?;
        let lhs = match t {
            Tok::Char(b'!') => {
                self.bump()?;
                let e = self.parse_op(13)?;
                let span = Span::new(start, e.span.end as usize);
                Expr::new(ExprKind::Not(Box::new(e)), span)
            }
            Tok::Char(b'-') => {
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
        self.op_rest(lhs, start, min_bp)
    }

    /// [`Self::parse_op_inner`] after its left operand, `lhs`, which starts at `start`.
    fn op_rest(&mut self, mut lhs: Expr, start: usize, min_bp: u8) -> PResult<Expr> {
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
            if matches!(t, Tok::Char(b'?')) {
                let path = self.parse_attrpath_boxed()?;
                let end = self.pos;
                lhs = Expr::new(
                    ExprKind::HasAttr {
                        e: Box::new(lhs),
                        path,
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
                Tok::Char(b'+') => Expr::new(
                    ExprKind::Concat {
                        force_string: false,
                        parts: vec![lhs, rhs].into_boxed_slice(),
                    },
                    span,
                ),
                Tok::Char(b'-') => self.builtin_call("__sub", lhs, rhs, span, opspan),
                Tok::Char(b'*') => self.builtin_call("__mul", lhs, rhs, span, opspan),
                Tok::Char(b'/') => self.builtin_call("__div", lhs, rhs, span, opspan),
                Tok::Char(b'<') => self.builtin_call("__lessThan", lhs, rhs, span, opspan),
                Tok::Char(b'>') => self.builtin_call("__lessThan", rhs, lhs, span, opspan),
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
            Tok::Id
                | Tok::Int
                | Tok::Float
                | Tok::Path
                | Tok::HPath
                | Tok::SPath
                | Tok::Uri
                | Tok::Quote
                | Tok::IndOpen
                | Tok::Let
                | Tok::Rec
                | Tok::Char(b'(')
                | Tok::Char(b'{')
                | Tok::Char(b'[')
        )
    }

    /// `expr_app`: function application.
    fn parse_app(&mut self) -> PResult<Expr> {
        let start = self.peek()?.1;
        let f = self.parse_select()?;
        self.app_rest(f, start)
    }

    /// [`Self::parse_app`] after the function, `f`, which starts at `start`.
    #[inline]
    fn app_rest(&mut self, f: Expr, start: usize) -> PResult<Expr> {
        let base = self.scratch.exprs.len();
        let mut end = f.span.end as usize;
        while Self::starts_simple(&self.peek_tok()?) {
            let a = self.parse_select()?;
            self.warn_if_cursed_or();
            end = a.span.end as usize;
            self.scratch.exprs.push(a);
        }
        if self.scratch.exprs.len() == base {
            return Ok(f);
        }
        let args = take_tail(&mut self.scratch.exprs, base);
        Ok(self.call(f, args, Span::new(start, end)))
    }

    /// `expr_select`: `e.a.b`, `e.a or d`, and the legacy `e or` (a call of `or`).
    fn parse_select(&mut self) -> PResult<Expr> {
        let (_, start, _) = self.peek()?;
        let e = self.parse_simple()?;
        self.select_rest(e, start)
    }

    /// [`Self::parse_select`] after the simple expression `e`, which starts at `start`.
    #[inline]
    fn select_rest(&mut self, e: Expr, start: usize) -> PResult<Expr> {
        // What was parsed inside `e` is not this `expr_select`.
        self.cursed_or = None;
        match self.peek_tok()? {
            Tok::Char(b'.') => {
                self.bump()?;
                let path = self.parse_attrpath_boxed()?;
                let default = if matches!(self.peek_tok()?, Tok::OrKw) {
                    self.bump()?;
                    let d = self.parse_select()?;
                    self.warn_if_cursed_or();
                    Some(Box::new(d))
                } else {
                    None
                };
                let end = default
                    .as_ref()
                    .map(|d| d.span.end as usize)
                    .unwrap_or(self.pos);
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
                self.cursed_or = Some(Span::new(start, en));
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

    /// After an `expr_select` that a production uses where current Nix warns about a legacy
    /// `e or` call: the warning, if it was one.
    fn warn_if_cursed_or(&mut self) {
        if let Some(span) = self.cursed_or.take() {
            self.warnings.push(ParseWarning::CursedOr(span));
        }
    }

    /// An attribute path, pushed onto `names`; returns where it starts there.
    fn parse_attrpath(&mut self) -> PResult<usize> {
        let base = self.scratch.names.len();
        let first = self.parse_attr()?;
        self.scratch.names.push(first);
        while self.at_char(b'.')? {
            self.advance();
            let a = self.parse_attr()?;
            self.scratch.names.push(a);
        }
        Ok(base)
    }

    /// An attribute path, as a selection keeps it.
    fn parse_attrpath_boxed(&mut self) -> PResult<Box<[AttrName]>> {
        let base = self.parse_attrpath()?;
        Ok(take_tail(&mut self.scratch.names, base))
    }

    /// One attribute name: an identifier (`or` included), a string, or `${e}`.
    fn parse_attr(&mut self) -> PResult<AttrName> {
        let (t, s, e) = self.peek()?;
        match t {
            Tok::Id => {
                self.bump()?;
                let n = self.tok_text(t, s, e);
                Ok(AttrName::Static(self.sym(n)))
            }
            Tok::OrKw => {
                self.bump()?;
                Ok(AttrName::Static(self.sym("or")))
            }
            Tok::Quote => {
                self.bump()?;
                match self.string_rest(s)? {
                    StrLit::Src(t) => Ok(AttrName::Static(self.interner.intern(t))),
                    StrLit::Buf => Ok(AttrName::Static(self.interner.intern(&self.scratch.strbuf))),
                    StrLit::Parts(parts) => Ok(AttrName::Dynamic(Box::new(parts))),
                }
            }
            Tok::DollarCurly => {
                self.bump()?;
                let x = self.expr()?;
                self.expect_char(b'}')?;
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

    /// The simple expression of identifier `n` at `span`.
    #[inline]
    fn simple_var(&mut self, n: &str, span: Span) -> Expr {
        if n == "__curPos" {
            Expr::new(ExprKind::CurPos, span)
        } else {
            self.var(n, span)
        }
    }

    /// `expr_simple`.
    fn parse_simple(&mut self) -> PResult<Expr> {
        let (t, start, end) = self.peek()?;
        let span = Span::new(start, end);
        match t {
            Tok::Id => {
                self.bump()?;
                let n = self.tok_text(t, start, end);
                Ok(self.simple_var(n, span))
            }
            Tok::Int => {
                self.bump()?;
                let s = self.tok_text(t, start, end);
                match s.parse::<i64>() {
                    Ok(v) => Ok(Expr::new(ExprKind::Int(v), span)),
                    Err(_) => err(format!("invalid integer '{s}'"), start, end),
                }
            }
            Tok::Float => {
                self.bump()?;
                let s = self.tok_text(t, start, end);
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
            Tok::Path => {
                self.bump()?;
                let p = self.tok_text(t, start, end);
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
            Tok::HPath => {
                self.bump()?;
                let p = self.tok_text(t, start, end);
                let level = self.lints.absolute_path_literals;
                self.lint(level, "lint-absolute-path-literals", (start, end), |_| {
                    lint::absolute_message(p, true)
                })?;
                let resolved = format!("{}{}", self.home, &p[1..]);
                self.parse_path_rest(resolved, p.ends_with('/'), start)
            }
            Tok::SPath => {
                self.bump()?;
                let p = self.tok_text(t, start, end);
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
            Tok::Uri => {
                self.bump()?;
                let u = self.tok_text(t, start, end);
                let level = self.lints.url_literals;
                self.lint(level, "lint-url-literals", (start, end), |fatal| {
                    lint::url_message(u, fatal)
                })?;
                Ok(Expr::new(ExprKind::Str(u.to_string().into()), span))
            }
            Tok::Char(b'(') => {
                self.bump()?;
                let e = self.expr()?;
                self.expect_char(b')')?;
                Ok(e)
            }
            Tok::Let => {
                // Legacy `let { ...; body = ...; }`: `(rec { ... }).body`.
                self.bump()?;
                self.expect_char(b'{')?;
                let mut attrs = self.parse_binds(BindsEnd::Brace)?;
                let e2 = self.expect_char(b'}')?;
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
                self.expect_char(b'{')?;
                let mut attrs = self.parse_binds(BindsEnd::Brace)?;
                let e2 = self.expect_char(b'}')?;
                attrs.rec = true;
                Ok(Expr::new(
                    ExprKind::Attrs(Box::new(attrs)),
                    Span::new(start, e2),
                ))
            }
            Tok::Char(b'{') => {
                self.bump()?;
                let attrs = self.parse_binds(BindsEnd::Brace)?;
                let e2 = self.expect_char(b'}')?;
                Ok(Expr::new(
                    ExprKind::Attrs(Box::new(attrs)),
                    Span::new(start, e2),
                ))
            }
            Tok::Char(b'[') => {
                self.bump()?;
                let base = self.scratch.exprs.len();
                loop {
                    if self.at_char(b']')? {
                        let (_, _, e2) = self.bump()?;
                        let items = take_tail(&mut self.scratch.exprs, base);
                        return Ok(Expr::new(ExprKind::List(items), Span::new(start, e2)));
                    }
                    if !Self::starts_simple(&self.peek_tok()?) {
                        return self.unexpected("']'");
                    }
                    self.enter()?;
                    let item = self.parse_select();
                    self.depth -= 1;
                    self.scratch.exprs.push(item?);
                    self.warn_if_cursed_or();
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
                self.forget_lookahead();
                let e = self.expr()?;
                self.expect_char(b'}')?;
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
                self.forget_lookahead();
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
        self.forget_lookahead();
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
        match self.string_rest(start)? {
            StrLit::Src(t) => Ok(Expr::new(
                ExprKind::Str(t.into()),
                Span::new(start, self.pos),
            )),
            StrLit::Buf => Ok(Expr::new(
                ExprKind::Str(self.scratch.strbuf.as_str().into()),
                Span::new(start, self.pos),
            )),
            StrLit::Parts(parts) => Ok(parts),
        }
    }

    /// Read the rest of a `"..."` string after the opening quote (see [`StrLit`]).
    fn string_rest(&mut self, start: usize) -> PResult<StrLit<'a>> {
        const EOF: &str = "syntax error, unexpected end of file, expecting '\"'";
        self.forget_lookahead();
        let s = self.src;
        // Most strings are text alone: taken from the source as they are.
        let mut i = self.pos;
        while i < s.len() && !matches!(s[i], b'"' | b'\\' | b'$' | b'\r') {
            i += 1;
        }
        if s.get(i) == Some(&b'"') {
            if let Some(t) = self.text.get(self.pos..i) {
                self.pos = i + 1;
                return Ok(StrLit::Src(t));
            }
        }
        let base = self.scratch.exprs.len();
        self.scratch.strbuf.clear();
        let mut i = self.pos;
        // Where the text since the last interpolation starts.
        let mut text_start = i;
        loop {
            let run = i;
            while i < s.len() && !matches!(s[i], b'"' | b'\\' | b'$' | b'\r') {
                i += 1;
            }
            push_src(&mut self.scratch.strbuf, self.text, run, i);
            match s.get(i) {
                None => return err(EOF, s.len(), s.len()),
                Some(b'"') => break,
                Some(b'$') => match s.get(i + 1) {
                    Some(b'{') => {
                        if !self.scratch.strbuf.is_empty() {
                            let text = ExprKind::Str(self.scratch.strbuf.as_str().into());
                            self.scratch
                                .exprs
                                .push(Expr::new(text, Span::new(text_start, i)));
                            self.scratch.strbuf.clear();
                        }
                        self.pos = i + 2;
                        let e = self.string_interpolation()?;
                        self.scratch.exprs.push(e);
                        self.scratch.strbuf.clear();
                        i = self.pos;
                        text_start = i;
                    }
                    // `$$` is literal, so `$${` is not an interpolation.
                    Some(b'$') => {
                        self.scratch.strbuf.push_str("$$");
                        i += 2;
                    }
                    _ => {
                        self.scratch.strbuf.push('$');
                        i += 1;
                    }
                },
                Some(b'\\') => {
                    let Some(&c) = s.get(i + 1) else {
                        return err(EOF, s.len(), s.len());
                    };
                    let end = (i + 1 + utf8_width(c)).min(s.len());
                    match c {
                        b'n' => self.scratch.strbuf.push('\n'),
                        b'r' => self.scratch.strbuf.push('\r'),
                        b't' => self.scratch.strbuf.push('\t'),
                        // Any other character stands for itself (the whole character).
                        _ => push_src(&mut self.scratch.strbuf, self.text, i + 1, end),
                    }
                    i = end;
                }
                // A CR or CR LF line end is a LF.
                _ => {
                    self.scratch.strbuf.push('\n');
                    i += if s.get(i + 1) == Some(&b'\n') { 2 } else { 1 };
                }
            }
        }
        let end = i + 1;
        self.pos = end;
        if self.scratch.exprs.len() == base {
            return Ok(StrLit::Buf);
        }
        if !self.scratch.strbuf.is_empty() {
            let text = ExprKind::Str(self.scratch.strbuf.as_str().into());
            self.scratch
                .exprs
                .push(Expr::new(text, Span::new(text_start, i)));
        }
        let parts = take_tail(&mut self.scratch.exprs, base);
        Ok(StrLit::Parts(Expr::new(
            ExprKind::Concat {
                force_string: true,
                parts,
            },
            Span::new(start, end),
        )))
    }

    /// The rest of a `''...''` string after its opening.
    fn parse_ind_string_rest(&mut self, start: usize) -> PResult<Expr> {
        let base = self.scratch.ind_parts.len();
        self.forget_lookahead();
        let s = self.src;
        loop {
            let i = self.pos;
            let text = |a: usize, b: usize, has: bool| IndPart::Text {
                text: IndText::Src(a, b),
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
                        self.scratch.ind_parts.push(IndPart::Text {
                            text: IndText::Src(i + 2, i + 3),
                            has_indentation: false,
                            span: Span::new(i, i + 3),
                        });
                        self.pos += 3;
                    }
                    Some(b'\'') => {
                        self.scratch.ind_parts.push(IndPart::Text {
                            text: IndText::Src(i, i + 2),
                            has_indentation: false,
                            span: Span::new(i, i + 3),
                        });
                        self.pos += 3;
                    }
                    Some(b'\\') if i + 3 < s.len() => {
                        // The escaped character, whole (the source is UTF-8 text; CppNix
                        // takes one byte and the rest of the character as text after it,
                        // which gives the same string).
                        let ch_len = utf8_width(s[i + 3]).min(s.len() - (i + 3));
                        let text = match s[i + 3] {
                            b'n' => IndText::Escaped("\n"),
                            b'r' => IndText::Escaped("\r"),
                            b't' => IndText::Escaped("\t"),
                            _ => IndText::Src(i + 3, i + 3 + ch_len),
                        };
                        self.scratch.ind_parts.push(IndPart::Text {
                            text,
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
                    let e = self.string_interpolation()?;
                    self.scratch.ind_parts.push(IndPart::Expr(e));
                }
                _ => {
                    // ([^$']|$[^{']|'[^'$])+
                    let mut j = i;
                    loop {
                        j += find_either(&s[j..], b'$', b'\'').unwrap_or(s.len() - j);
                        match (s.get(j), s.get(j + 1)) {
                            (Some(b'$'), Some(b'{' | b'\'') | None) => break,
                            (Some(b'\''), Some(b'\'' | b'$') | None) => break,
                            (Some(_), Some(_)) => j += 2,
                            _ => break,
                        }
                    }
                    if j > i {
                        self.scratch.ind_parts.push(text(i, j, true));
                        self.pos = j;
                    } else {
                        // A lone `$` or `'`.
                        self.scratch.ind_parts.push(text(i, i + 1, false));
                        self.pos = i + 1;
                    }
                }
            }
        }
        let end = self.pos;
        Ok(self.strip_indentation(base, Span::new(start, end)))
    }

    /// An interpolation in a string or indented string, read from `pos` (after the `${`)
    /// to after its `}`: the commonest shapes quickly ([`Self::quick_interpolation`]), the
    /// others as an expression. The string's scanning goes on from `pos`, so nothing
    /// looked ahead is kept.
    fn string_interpolation(&mut self) -> PResult<Expr> {
        let e = match self.quick_interpolation() {
            Some(e) => e,
            None => {
                let e = self.expr()?;
                self.expect_char(b'}')?;
                e
            }
        };
        self.forget_lookahead();
        Ok(e)
    }

    /// The commonest interpolations, `${x}` and `${x.y}` written without spaces, read
    /// from `pos` (after the `${`) to after their `}`, as [`Self::expr`] and the `}` would
    /// read them; `None` (and nothing read) for any other.
    #[inline(never)]
    fn quick_interpolation(&mut self) -> Option<Expr> {
        // The levels `expr` and the operators below it enter must be allowed.
        if self.depth + 1 >= MAX_DEPTH {
            return None;
        }
        let s = self.src;
        let word_at = |j: usize| matches!(s.get(j), Some(b'a'..=b'z' | b'A'..=b'Z' | b'_'));
        let i = self.pos;
        if !word_at(i) {
            return None;
        }
        // Lexed as the parser would, the cache of path runs updated only if taken.
        let mut run = self.dead_run;
        let (Tok::Id, n) = next_token_fast(s, i, &mut run) else {
            return None;
        };
        let (end, attr) = match s.get(i + n) {
            Some(b'}') => (i + n, None),
            Some(b'.') if word_at(i + n + 1) => {
                let dot = i + n;
                if dot >= run.0 && dot < run.1 {
                    // Inside the known run of path characters (as after most words), a `.`
                    // before a letter is that token, and lexing it changes nothing.
                    debug_assert!({
                        let mut after = run;
                        next_token_fast(s, dot, &mut after) == (Tok::Char(b'.'), 1) && after == run
                    });
                } else {
                    let (Tok::Char(b'.'), 1) = next_token_fast(s, dot, &mut run) else {
                        return None;
                    };
                }
                let a = dot + 1;
                match next_token_fast(s, a, &mut run) {
                    (Tok::Id, k) if s.get(a + k) == Some(&b'}') => (a + k, Some((a, a + k))),
                    _ => return None,
                }
            }
            _ => return None,
        };
        let name = self.text.get(i..i + n)?;
        let attr_name = match attr {
            Some((a, b)) => Some(self.text.get(a..b)?),
            None => None,
        };
        self.dead_run = run;
        self.pos = end + 1;
        let var = self.simple_var(name, Span::new(i, i + n));
        Some(match attr_name {
            None => var,
            Some(a) => {
                let sym = self.sym(a);
                Expr::new(
                    ExprKind::Select {
                        e: Box::new(var),
                        path: Box::new([AttrName::Static(sym)]),
                    },
                    Span::new(i, end),
                )
            }
        })
    }

    /// CppNix's indentation stripping of `''` strings: the string of the pieces
    /// `ind_parts[base..]` (taken off), spanning `span`.
    fn strip_indentation(&mut self, base: usize, span: Span) -> Expr {
        let src = self.text;
        let mut parts = std::mem::take(&mut self.scratch.ind_parts);
        let mut at_start = true;
        let mut min_indent = usize::MAX;
        let mut cur = 0usize;
        for p in &parts[base..] {
            match p {
                IndPart::Text {
                    text,
                    has_indentation: true,
                    ..
                } => {
                    let bytes = text.bytes(src);
                    let mut k = 0;
                    while k < bytes.len() {
                        if at_start {
                            match bytes[k] {
                                b' ' => cur += 1,
                                b'\n' => cur = 0,
                                _ => {
                                    at_start = false;
                                    min_indent = min_indent.min(cur);
                                }
                            }
                            k += 1;
                        } else {
                            // To the start of the next line.
                            match line_end(&bytes[k..]) {
                                Some(n) => {
                                    k += n;
                                    at_start = true;
                                    cur = 0;
                                }
                                None => k = bytes.len(),
                            }
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
        let out = self.scratch.exprs.len();
        at_start = true;
        let mut dropped = 0usize;
        let n = parts.len() - base;
        // The text of each piece, stripped.
        let mut s2 = std::mem::take(&mut self.scratch.strbuf);
        for (idx, p) in parts.drain(base..).enumerate() {
            match p {
                IndPart::Expr(e) => {
                    at_start = false;
                    dropped = 0;
                    self.scratch.exprs.push(e);
                }
                IndPart::Text { text, span: sp, .. } => {
                    s2.clear();
                    let bytes = text.bytes(src);
                    let mut k = 0;
                    while k < bytes.len() {
                        if at_start {
                            match bytes[k] {
                                b' ' => {
                                    if dropped >= min_indent {
                                        s2.push(' ');
                                    }
                                    dropped += 1;
                                    k += 1;
                                }
                                b'\n' => {
                                    dropped = 0;
                                    s2.push('\n');
                                    k += 1;
                                }
                                // The line's text starts here: copied below.
                                _ => {
                                    at_start = false;
                                    dropped = 0;
                                }
                            }
                        } else {
                            // The rest of the line, as it is.
                            let end = match line_end(&bytes[k..]) {
                                Some(n) => {
                                    at_start = true;
                                    k + n
                                }
                                None => bytes.len(),
                            };
                            text.push_part(&mut s2, src, k, end);
                            k = end;
                        }
                    }
                    if idx + 1 == n {
                        if let Some(p) = s2.rfind('\n') {
                            if s2[p + 1..].bytes().all(|c| c == b' ') {
                                s2.truncate(p + 1);
                            }
                        }
                    }
                    if !s2.is_empty() {
                        let text = ExprKind::Str(s2.as_str().into());
                        self.scratch.exprs.push(Expr::new(text, sp));
                    }
                }
            }
        }
        self.scratch.strbuf = s2;
        self.scratch.ind_parts = parts;
        if self.scratch.exprs.len() == out {
            return Expr::new(ExprKind::Str(String::new().into()), span);
        }
        if self.scratch.exprs.len() == out + 1
            && matches!(self.scratch.exprs[out].kind, ExprKind::Str(_))
        {
            return self.scratch.exprs.pop().expect("one element");
        }
        Expr::new(
            ExprKind::Concat {
                force_string: true,
                parts: take_tail(&mut self.scratch.exprs, out),
            },
            span,
        )
    }

    /// Bindings of a set (`until` `}`, not consumed) or of a `let` (until `in`).
    fn parse_binds(&mut self, until: BindsEnd) -> PResult<Attrs> {
        let mut attrs = Attrs::default();
        if let Some(v) = self.scratch.binding_vecs.pop() {
            attrs.attrs = SymMap::from_sorted(v);
        }
        loop {
            let (t, s, _) = self.peek()?;
            let at_end = match until {
                BindsEnd::Brace => matches!(t, Tok::Char(b'}')),
                BindsEnd::In => matches!(t, Tok::In),
            };
            if at_end {
                // The bindings at their exact number; the vector is kept for the next set.
                let mut v = std::mem::take(&mut attrs.attrs).into_entries();
                let mut exact = Vec::with_capacity(v.len());
                exact.append(&mut v);
                attrs.attrs = SymMap::from_sorted(exact);
                self.scratch.binding_vecs.push(v);
                tighten(&mut attrs);
                return Ok(attrs);
            }
            if matches!(t, Tok::Inherit) {
                self.bump()?;
                let from = if self.at_char(b'(')? {
                    self.bump()?;
                    let e = self.expr()?;
                    self.expect_char(b')')?;
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
                        Tok::Char(b';') => {
                            self.bump()?;
                            break;
                        }
                        Tok::Id => {
                            self.bump()?;
                            let n = self.tok_text(t, s2, e2);
                            self.sym(n)
                        }
                        Tok::OrKw => {
                            self.bump()?;
                            self.sym("or")
                        }
                        Tok::Quote => {
                            self.bump()?;
                            match self.string_rest(s2)? {
                                StrLit::Src(t) => self.interner.intern(t),
                                StrLit::Buf => self.interner.intern(&self.scratch.strbuf),
                                StrLit::Parts(_) => {
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
            if !matches!(t, Tok::Id | Tok::OrKw | Tok::Quote | Tok::DollarCurly) {
                // What bison reports here.
                return self.unexpected("'inherit'");
            }
            let base = self.parse_attrpath()?;
            let path_end = self.pos;
            if !self.at_char(b'=')? {
                return self.unexpected("'.' or '='");
            }
            self.advance();
            let mut value = self.expr()?;
            self.expect_char(b';')?;
            let span = Span::new(s, path_end);
            if let [AttrName::Static(sym)] = self.scratch.names[base..] {
                // One name, not bound yet (the commonest binding): bound here.
                let def = AttrDef {
                    kind: AttrKind::Plain,
                    value,
                    span,
                };
                match attrs.attrs.insert_new(sym, def) {
                    Ok(()) => {
                        self.scratch.names.truncate(base);
                        continue;
                    }
                    Err(def) => value = def.value,
                }
            }
            self.add_attr(&mut attrs, base, span, value)?;
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

    /// Bind the attribute path `names[base..]` (taken off `names`) to `value` in `top`.
    fn add_attr(&mut self, top: &mut Attrs, base: usize, span: Span, value: Expr) -> PResult<()> {
        let mut names = std::mem::take(&mut self.scratch.names);
        let r = self.add_path(top, &mut names, base, span, value);
        names.truncate(base);
        self.scratch.names = names;
        r
    }

    /// [`Self::add_attr`] of the path `names[base..]`, which may be left changed.
    fn add_path(
        &mut self,
        top: &mut Attrs,
        names: &mut Vec<AttrName>,
        base: usize,
        span: Span,
        value: Expr,
    ) -> PResult<()> {
        let mut attrs = top;
        let last = names.len() - 1;
        for k in base..last {
            // A dynamic name's expression is moved into the tree: what follows it goes into
            // sets made here, where nothing can clash, so no message shows the path again.
            match std::mem::replace(&mut names[k], AttrName::Static(Symbol(0))) {
                AttrName::Static(sym) => {
                    names[k] = AttrName::Static(sym);
                    let exists = attrs.attrs.contains_key(&sym);
                    if exists {
                        let is_attrs = matches!(
                            attrs.attrs.get(&sym).map(|d| &d.value.kind),
                            Some(ExprKind::Attrs(_))
                        );
                        if !is_attrs {
                            let prev = attrs.attrs[&sym].span;
                            return err(
                                format!(
                                    "attribute '{}' already defined at {}",
                                    self.show_path(&names[base..=k]),
                                    self.describe_pos(prev)
                                ),
                                span.start as usize,
                                span.end as usize,
                            );
                        }
                    } else {
                        attrs.attrs.insert(
                            sym,
                            AttrDef {
                                kind: AttrKind::Plain,
                                value: Expr::new(ExprKind::Attrs(Box::default()), span),
                                span,
                            },
                        );
                    }
                    let def = attrs.attrs.get_mut(&sym).expect("inserted or present");
                    match &mut def.value.kind {
                        ExprKind::Attrs(inner) => attrs = inner,
                        _ => unreachable!("checked to be an attribute set"),
                    }
                }
                AttrName::Dynamic(e) => {
                    attrs.dynamic.push((
                        *e,
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
        match std::mem::replace(&mut names[last], AttrName::Static(Symbol(0))) {
            AttrName::Static(sym) => {
                names[last] = AttrName::Static(sym);
                let def = AttrDef {
                    kind: AttrKind::Plain,
                    value,
                    span,
                };
                self.insert_attr(attrs, names, base, sym, def)
            }
            AttrName::Dynamic(e) => {
                attrs.dynamic.push((*e, value, span));
                Ok(())
            }
        }
    }

    /// Bind `sym`, the end of the attribute path `path[base..]`, to `def` in `attrs`,
    /// merging sets bound twice.
    fn insert_attr(
        &mut self,
        attrs: &mut Attrs,
        path: &mut Vec<AttrName>,
        base: usize,
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
                        self.show_path(&path[base..]),
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
                let r = self.insert_attr(old, path, base, s, d);
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

/// Whether token `t` after an operand ends the expression it is in: no selection,
/// argument, operator or pipe can follow.
#[inline]
fn ends_expr(t: Tok) -> bool {
    matches!(t, Tok::Char(b';' | b'}' | b']' | b')' | b','))
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
