//! Tokens of the Nix language outside strings and paths, matched as Nix's flex lexer matches
//! them: the longest match wins, and keywords win over identifiers of the same length.
//! Strings, indented strings and interpolated paths are scanned by the parser, which knows
//! when it is inside one.

/// A token in the default lexer state: its kind only. Its text is the source's bytes where
/// it was found (see [`token_text`]), so a token is a small `Copy` value the parser can look
/// at and pass around freely.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tok {
    Id,
    Int,
    Float,
    /// A path literal, possibly ending in `/` (then an interpolation must follow).
    Path,
    /// `~/...`
    HPath,
    /// `<nixpkgs/lib>` (its text is without the brackets).
    SPath,
    Uri,
    If,
    Then,
    Else,
    Assert,
    With,
    Let,
    In,
    Rec,
    Inherit,
    OrKw,
    Ellipsis,
    Eq,
    NEq,
    Leq,
    Geq,
    And,
    Or,
    Impl,
    Update,
    Concat,
    PipeFrom,
    PipeInto,
    DollarCurly,
    /// `"`: a string starts.
    Quote,
    /// `''`: an indented string starts (the optional spaces and newline after it included).
    IndOpen,
    /// Any other single ASCII character: `{ } [ ] ( ) ; : . , @ ? = + - * / ! < >`, or an
    /// invalid token.
    Char(u8),
    /// A single character outside ASCII (an invalid token).
    Other,
    Eof,
    /// Not a token: a `/*` comment without its end where a token should be (the parser
    /// reports it; [`skip_trivia`] finds it).
    Unterminated,
}

/// The text of a token of kind `tok` found at `src[start..end]`: the identifier, number,
/// path (without `<` and `>` for a `<...>` path) or URI as written.
#[inline]
pub fn token_text(src: &str, tok: Tok, start: usize, end: usize) -> &str {
    match tok {
        Tok::SPath => &src[start + 1..end - 1],
        _ => &src[start..end],
    }
}

impl Tok {
    /// How the token is named in error messages (as bison names them).
    pub fn describe(&self) -> String {
        match self {
            Tok::Id => "identifier".into(),
            Tok::Int => "integer".into(),
            Tok::Float => "floating-point literal".into(),
            Tok::Path => "path".into(),
            Tok::HPath => "'~/…' path".into(),
            Tok::SPath => "'<…>' path".into(),
            Tok::Uri => "URI".into(),
            Tok::If => "'if'".into(),
            Tok::Then => "'then'".into(),
            Tok::Else => "'else'".into(),
            Tok::Assert => "'assert'".into(),
            Tok::With => "'with'".into(),
            Tok::Let => "'let'".into(),
            Tok::In => "'in'".into(),
            Tok::Rec => "'rec'".into(),
            Tok::Inherit => "'inherit'".into(),
            Tok::OrKw => "'or'".into(),
            Tok::Ellipsis => "'...'".into(),
            Tok::Eq => "'=='".into(),
            Tok::NEq => "'!='".into(),
            Tok::Leq => "'<='".into(),
            Tok::Geq => "'>='".into(),
            Tok::And => "'&&'".into(),
            Tok::Or => "'||'".into(),
            Tok::Impl => "'->'".into(),
            Tok::Update => "'//'".into(),
            Tok::Concat => "'++'".into(),
            Tok::PipeFrom => "'<|'".into(),
            Tok::PipeInto => "'|>'".into(),
            Tok::DollarCurly => "'${'".into(),
            Tok::Quote => "'\"'".into(),
            Tok::IndOpen => "start of an indented string".into(),
            Tok::Char(c) if b"{}[]();:.,@?=+-*/!<>".contains(c) => format!("'{}'", *c as char),
            Tok::Char(_) | Tok::Other => "invalid token".into(),
            Tok::Eof => "end of file".into(),
            Tok::Unterminated => "unterminated comment".into(),
        }
    }
}

pub fn is_path_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-' | b'+')
}

fn id_len(s: &[u8]) -> usize {
    match s.first() {
        Some(c) if c.is_ascii_alphabetic() || *c == b'_' => {}
        _ => return 0,
    }
    1 + s[1..]
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'\'' | b'-'))
        .count()
}

fn digits(s: &[u8]) -> usize {
    s.iter().take_while(|c| c.is_ascii_digit()).count()
}

fn float_len(s: &[u8]) -> usize {
    // (([1-9][0-9]*\.[0-9]*)|(0?\.[0-9]+))([Ee][+-]?[0-9]+)?
    let mut n = 0;
    let a = match s.first() {
        Some(b'1'..=b'9') => {
            let d = digits(s);
            if s.get(d) == Some(&b'.') {
                d + 1 + digits(&s[d + 1..])
            } else {
                0
            }
        }
        _ => 0,
    };
    let b = {
        let z = usize::from(s.first() == Some(&b'0'));
        if s.get(z) == Some(&b'.') && digits(&s[z + 1..]) > 0 {
            z + 1 + digits(&s[z + 1..])
        } else {
            0
        }
    };
    n = n.max(a).max(b);
    if n == 0 {
        return 0;
    }
    if matches!(s.get(n), Some(b'e') | Some(b'E')) {
        let mut m = n + 1;
        if matches!(s.get(m), Some(b'+') | Some(b'-')) {
            m += 1;
        }
        let d = digits(&s[m.min(s.len())..]);
        if d > 0 {
            n = m + d;
        }
    }
    n
}

/// `{PATH_CHAR}*(\/{PATH_CHAR}+)+\/?`
pub fn path_len(s: &[u8]) -> usize {
    let mut i = s.iter().take_while(|c| is_path_char(**c)).count();
    let mut segs = 0;
    loop {
        if s.get(i) == Some(&b'/') {
            let k = s[i + 1..].iter().take_while(|c| is_path_char(**c)).count();
            if k > 0 {
                i += 1 + k;
                segs += 1;
                continue;
            }
        }
        break;
    }
    if segs == 0 {
        return 0;
    }
    if s.get(i) == Some(&b'/') {
        i += 1;
    }
    i
}

/// `{PATH_CHAR}*\/`
pub fn path_seg_len(s: &[u8]) -> usize {
    let i = s.iter().take_while(|c| is_path_char(**c)).count();
    if s.get(i) == Some(&b'/') {
        i + 1
    } else {
        0
    }
}

/// `\~(\/{PATH_CHAR}+)+\/?`
fn hpath_len(s: &[u8]) -> usize {
    if s.first() != Some(&b'~') || s.get(1) != Some(&b'/') {
        return 0;
    }
    let n = path_len(&s[1..]);
    // path_len allows a leading PATH_CHAR run, which cannot happen after '~' here since s[1]=='/'.
    if n == 0 {
        0
    } else {
        1 + n
    }
}

fn spath_len(s: &[u8]) -> usize {
    if s.first() != Some(&b'<') {
        return 0;
    }
    let mut i = 1;
    let k = s[i..].iter().take_while(|c| is_path_char(**c)).count();
    if k == 0 {
        return 0;
    }
    i += k;
    while s.get(i) == Some(&b'/') {
        let k = s[i + 1..].iter().take_while(|c| is_path_char(**c)).count();
        if k == 0 {
            return 0;
        }
        i += 1 + k;
    }
    if s.get(i) == Some(&b'>') {
        i + 1
    } else {
        0
    }
}

fn uri_len(s: &[u8]) -> usize {
    match s.first() {
        Some(c) if c.is_ascii_alphabetic() => {}
        _ => return 0,
    }
    let scheme = 1 + s[1..]
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
        .count();
    if s.get(scheme) != Some(&b':') {
        return 0;
    }
    let rest = s[scheme + 1..]
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || b"%/?:@&=+$,-_.!~*'".contains(c))
        .count();
    if rest == 0 {
        0
    } else {
        scheme + 1 + rest
    }
}

/// Skip whitespace and comments from `i`; returns the new position, or an error position for
/// an unterminated `/*` comment.
#[inline]
pub fn skip_trivia(s: &[u8], mut i: usize) -> Result<usize, usize> {
    // Whitespace here, comments (rarer) in a call.
    while let Some(b' ' | b'\t' | b'\r' | b'\n') = s.get(i) {
        i += 1;
    }
    match s.get(i) {
        Some(b'#' | b'/') => skip_comments(s, i),
        _ => Ok(i),
    }
}

/// [`skip_trivia`] from a comment (or a `/`).
#[inline(never)]
fn skip_comments(s: &[u8], mut i: usize) -> Result<usize, usize> {
    loop {
        match s.get(i) {
            Some(b' ' | b'\t' | b'\r' | b'\n') => i += 1,
            Some(b'#') => i += find_either(&s[i..], b'\n', b'\r').unwrap_or(s.len() - i),
            Some(b'/') if s.get(i + 1) == Some(&b'*') => {
                let start = i;
                i += 2;
                loop {
                    // The next `*`, closing the comment if a `/` follows.
                    match find_either(&s[i..], b'*', b'*') {
                        Some(k) if s.get(i + k + 1) == Some(&b'/') => {
                            i += k + 2;
                            break;
                        }
                        Some(k) => i += k + 1,
                        None => return Err(start),
                    }
                }
            }
            _ => return Ok(i),
        }
    }
}

/// Where the first byte of `s` that is `a` or `b` is, looking at eight bytes at a time (for
/// comments and the text of indented strings, which are long).
pub(crate) fn find_either(s: &[u8], a: u8, b: u8) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // The high bit of each zero byte of `v` is set, and perhaps of bytes above the first
    // zero byte, never below it: the lowest bit set is the first zero byte's.
    let zero_bytes = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    let (aa, bb) = (ONES * u64::from(a), ONES * u64::from(b));
    let mut chunks = s.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        let v = u64::from_le_bytes(word);
        let found = zero_bytes(v ^ aa) | zero_bytes(v ^ bb);
        if found != 0 {
            return Some(at + (found.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    let tail = chunks.remainder().iter().position(|&c| c == a || c == b);
    tail.map(|k| at + k)
}

/// The token at `i` (after trivia) and its length.
pub fn next_token(s: &[u8], i: usize) -> (Tok, usize) {
    next_token_cached(s, i, &mut (0, 0))
}

/// The keyword spelled `word`, if it is one.
fn keyword(word: &[u8]) -> Option<Tok> {
    Some(match word {
        b"if" => Tok::If,
        b"then" => Tok::Then,
        b"else" => Tok::Else,
        b"assert" => Tok::Assert,
        b"with" => Tok::With,
        b"let" => Tok::Let,
        b"in" => Tok::In,
        b"rec" => Tok::Rec,
        b"inherit" => Tok::Inherit,
        b"or" => Tok::OrKw,
        _ => return None,
    })
}

/// The common tokens without trying every rule: those starting with a character that starts
/// no identifier, number, path or URI (punctuation, operators, strings, `<...>` paths), `.`
/// where no path or float follows, and identifiers (or keywords) and integers that no path,
/// URI or float rule could extend. `None` leaves the token (floats, paths, `/`, `+`, `-`,
/// `~`, ...) to the full longest-match rules. `fresh` is whether `i` is outside the known
/// run of path characters (which is updated as the full rules would).
#[inline]
fn quick_token(
    rest: &[u8],
    fresh: bool,
    i: usize,
    run: &mut (usize, usize),
) -> Option<(Tok, usize)> {
    let c = *rest.first()?;
    match c {
        // None of these is a path, URI or identifier character, nor starts a fixed token.
        b'{' | b'}' | b'(' | b')' | b'[' | b']' | b';' | b',' | b'@' | b':' | b'?' | b'*' => {
            Some((Tok::Char(c), 1))
        }
        // Nor are these, which start only the fixed tokens tried here.
        b'"' => Some((Tok::Quote, 1)),
        b'=' => Some(pair(rest, b'=', Tok::Eq)),
        b'!' => Some(pair(rest, b'=', Tok::NEq)),
        b'>' => Some(pair(rest, b'=', Tok::Geq)),
        b'&' => Some(pair(rest, b'&', Tok::And)),
        b'$' => Some(pair(rest, b'{', Tok::DollarCurly)),
        b'\'' if rest.get(1) == Some(&b'\'') => Some((Tok::IndOpen, ind_open_len(rest))),
        b'\'' => Some((Tok::Char(b'\''), 1)),
        // A `<...>` path is longer than `<=` or `<|`.
        b'<' => Some(match (spath_len(rest), rest.get(1)) {
            (0, Some(b'=')) => (Tok::Leq, 2),
            (0, Some(b'|')) => (Tok::PipeFrom, 2),
            (0, _) => (Tok::Char(b'<'), 1),
            (n, _) => (Tok::SPath, n),
        }),
        // `.` starts a float before a digit, and a path if a `/` follows its run of path
        // characters (which cannot be when `i` is inside the known run).
        b'.' if !matches!(rest.get(1), Some(b'0'..=b'9')) => {
            if fresh {
                let run_len = rest
                    .iter()
                    .take_while(|c| CLASSES[**c as usize] & PATH_C != 0)
                    .count();
                if rest.get(run_len) == Some(&b'/') {
                    return None;
                }
                *run = (i, i + run_len);
            }
            Some(if rest.starts_with(b"...") {
                (Tok::Ellipsis, 3)
            } else {
                (Tok::Char(b'.'), 1)
            })
        }
        b'|' => Some(match rest.get(1) {
            Some(b'|') => (Tok::Or, 2),
            Some(b'>') => (Tok::PipeInto, 2),
            _ => (Tok::Char(b'|'), 1),
        }),
        b'a'..=b'z' | b'A'..=b'Z' | b'_' => quick_word(rest, fresh, i, run),
        // An integer that no float or path rule could extend: its digits end it, and no
        // path character or `/` follows them.
        b'0'..=b'9' => {
            let n = digits(rest);
            if rest
                .get(n)
                .is_some_and(|c| CLASSES[*c as usize] & PATH_C != 0 || *c == b'/')
            {
                return None;
            }
            if fresh {
                *run = (i, i + n);
            }
            Some((Tok::Int, n))
        }
        _ => None,
    }
}

/// [`quick_token`] of a word (`rest` starts with a letter or `_`).
#[inline(always)]
fn quick_word(
    rest: &[u8],
    fresh: bool,
    i: usize,
    run: &mut (usize, usize),
) -> Option<(Tok, usize)> {
    // A path needs a `/` after a run of path characters, a URI a `:` after its scheme;
    // with neither, the identifier is the longest match. The three runs are measured in
    // one pass over the word.
    let (path_run, scheme, n) = word_runs(rest);
    if rest.get(path_run) == Some(&b'/') {
        return None;
    }
    if rest.get(scheme) == Some(&b':') {
        return None;
    }
    if fresh {
        *run = (i, i + path_run);
    }
    let word = &rest[..n];
    let tok = match keyword(word) {
        Some(k) => k,
        None => Tok::Id,
    };
    Some((tok, n))
}

/// The length of the `''` that starts `rest`, with the spaces and newline that may follow:
/// `''(\ *\n)?`.
fn ind_open_len(rest: &[u8]) -> usize {
    let sp = rest[2..].iter().take_while(|c| **c == b' ').count();
    if rest.get(2 + sp) == Some(&b'\n') {
        2 + sp + 1
    } else {
        2
    }
}

/// The first byte of `rest` as a character token, or `tok` if `second` follows it.
#[inline]
fn pair(rest: &[u8], second: u8, tok: Tok) -> (Tok, usize) {
    if rest.get(1) == Some(&second) {
        (tok, 2)
    } else {
        (Tok::Char(rest[0]), 1)
    }
}

/// Character classes of the three runs [`word_runs`] measures.
const PATH_C: u8 = 1;
const SCHEME_C: u8 = 2;
const ID_C: u8 = 4;

/// Which runs each byte may continue: path characters (`[a-zA-Z0-9._+-]`), URI scheme
/// characters (`[a-zA-Z0-9+.-]`), identifier characters (`[a-zA-Z0-9_'-]`).
static CLASSES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        let alnum = b.is_ascii_alphanumeric();
        let mut k = 0;
        if alnum || matches!(b, b'.' | b'_' | b'-' | b'+') {
            k |= PATH_C;
        }
        if alnum || matches!(b, b'+' | b'-' | b'.') {
            k |= SCHEME_C;
        }
        if alnum || matches!(b, b'_' | b'\'' | b'-') {
            k |= ID_C;
        }
        t[c] = k;
        c += 1;
    }
    t
};

/// For a word starting with a letter or `_`: the lengths of its run of path characters,
/// of its URI scheme (0 unless it starts with a letter) and of its identifier, in one pass.
#[inline(always)]
fn word_runs(s: &[u8]) -> (usize, usize, usize) {
    let first = CLASSES[s[0] as usize];
    let mut open = first | ID_C;
    if !s[0].is_ascii_alphabetic() {
        open &= !SCHEME_C;
    }
    // Letters, digits and `-` go on with all three runs; most words are made of them.
    let common = 1 + s[1..]
        .iter()
        .take_while(|c| CLASSES[**c as usize] == PATH_C | SCHEME_C | ID_C)
        .count();
    if !matches!(s.get(common), Some(b'.' | b'_' | b'\'' | b'+')) {
        // What follows ends all three.
        let scheme = if open & SCHEME_C != 0 { common } else { 0 };
        return (common, scheme, common);
    }
    let (mut path, mut scheme, mut id) = (0, 0, 0);
    let mut k = common;
    loop {
        let c = s.get(k).map_or(0, |b| CLASSES[*b as usize]);
        let closing = open & !c;
        if closing != 0 {
            if closing & PATH_C != 0 {
                path = k;
            }
            if closing & SCHEME_C != 0 {
                scheme = k;
            }
            if closing & ID_C != 0 {
                id = k;
            }
            open &= c;
            if open == 0 {
                return (path, scheme, id);
            }
        }
        k += 1;
    }
}

/// [`next_token`] remembering, in `run`, the last run of path characters that is not followed
/// by `/`: inside it no path can start, which keeps long runs like `------1` linear.
#[inline]
pub fn next_token_cached(s: &[u8], i: usize, run: &mut (usize, usize)) -> (Tok, usize) {
    let rest = &s[i..];
    let in_dead_run = i >= run.0 && i < run.1;
    if rest.is_empty() {
        return (Tok::Eof, 0);
    }
    if let Some(t) = quick_token(rest, !in_dead_run, i, run) {
        return t;
    }
    full_token(s, i, run)
}

/// [`next_token_cached`], with the commonest tokens (single punctuation characters, words)
/// found inline: the rest are left to a call.
#[inline(always)]
pub fn next_token_fast(s: &[u8], i: usize, run: &mut (usize, usize)) -> (Tok, usize) {
    match s.get(i) {
        // As in `quick_token`.
        Some(
            &c
            @ (b'{' | b'}' | b'(' | b')' | b'[' | b']' | b';' | b',' | b'@' | b':' | b'?' | b'*'),
        ) => (Tok::Char(c), 1),
        Some(b'"') => (Tok::Quote, 1),
        Some(b'=') if s.get(i + 1) != Some(&b'=') => (Tok::Char(b'='), 1),
        Some(b'a'..=b'z' | b'A'..=b'Z' | b'_') => {
            let fresh = !(i >= run.0 && i < run.1);
            match quick_word(&s[i..], fresh, i, run) {
                Some(t) => t,
                None => full_token(s, i, run),
            }
        }
        _ => next_token_slow(s, i, run),
    }
}

/// [`next_token_cached`], not inlined.
#[inline(never)]
fn next_token_slow(s: &[u8], i: usize, run: &mut (usize, usize)) -> (Tok, usize) {
    next_token_cached(s, i, run)
}

/// [`next_token_cached`] by the full longest-match rules only.
fn full_token(s: &[u8], i: usize, run: &mut (usize, usize)) -> (Tok, usize) {
    let rest = &s[i..];
    let in_dead_run = i >= run.0 && i < run.1;
    if rest.is_empty() {
        return (Tok::Eof, 0);
    }
    // Longest match among the pattern rules; fixed tokens are checked after, and since flex
    // prefers the earlier rule on ties, keywords beat identifiers.
    let mut best: (usize, u8) = (0, 0);
    let mut consider = |n: usize, kind: u8| {
        if n > best.0 {
            best = (n, kind);
        }
    };
    consider(id_len(rest), 1);
    consider(digits(rest), 2);
    consider(float_len(rest), 3);
    // `{PATH_SEG}\$\{` and `{HPATH_START}\$\{` count their `${` for the longest match.
    if !in_dead_run {
        let run_len = rest.iter().take_while(|c| is_path_char(**c)).count();
        if rest.get(run_len) != Some(&b'/') {
            *run = (i, i + run_len);
        } else {
            let ps = path_seg_len(rest);
            if ps > 0 && rest[ps..].starts_with(b"${") {
                consider(ps + 2, 4);
            }
            consider(path_len(rest), 6);
        }
    }
    if rest.starts_with(b"~/${") {
        consider(4, 5);
    }
    consider(hpath_len(rest), 7);
    consider(spath_len(rest), 8);
    consider(uri_len(rest), 9);
    let fixed: &[(&str, Tok)] = &[
        ("...", Tok::Ellipsis),
        ("==", Tok::Eq),
        ("!=", Tok::NEq),
        ("<=", Tok::Leq),
        (">=", Tok::Geq),
        ("&&", Tok::And),
        ("||", Tok::Or),
        ("->", Tok::Impl),
        ("//", Tok::Update),
        ("++", Tok::Concat),
        ("<|", Tok::PipeFrom),
        ("|>", Tok::PipeInto),
        ("${", Tok::DollarCurly),
        ("''", Tok::IndOpen),
    ];
    let mut fixed_match: Option<(usize, Tok)> = None;
    for (lit, tok) in fixed {
        if rest.starts_with(lit.as_bytes()) {
            fixed_match = Some((lit.len(), *tok));
            break;
        }
    }
    if let Some((n, tok)) = &fixed_match {
        // Fixed tokens come before the pattern rules in Nix's lexer: they win ties.
        if *n >= best.0 {
            if *tok == Tok::IndOpen {
                return (Tok::IndOpen, ind_open_len(rest));
            }
            return (*tok, *n);
        }
    }
    match best {
        (0, _) => {
            let c = rest[0];
            if c == b'"' {
                return (Tok::Quote, 1);
            }
            // Only the first character is decoded (not the rest of the file).
            let width = match c {
                0xc0..=0xdf => 2,
                0xe0..=0xef => 3,
                0xf0..=0xf7 => 4,
                _ => 1,
            };
            let ch = std::str::from_utf8(&rest[..width.min(rest.len())])
                .ok()
                .and_then(|s| s.chars().next())
                .unwrap_or(c as char);
            let tok = if ch.is_ascii() {
                Tok::Char(ch as u8)
            } else {
                Tok::Other
            };
            (tok, ch.len_utf8().max(1))
        }
        (n, 1) => (keyword(&rest[..n]).unwrap_or(Tok::Id), n),
        (n, 2) => (Tok::Int, n),
        (n, 3) => (Tok::Float, n),
        (n, 4) => (Tok::Path, n - 2),
        (_, 5) => (Tok::HPath, 2),
        (n, 6) => (Tok::Path, n),
        (n, 7) => (Tok::HPath, n),
        (n, 8) => (Tok::SPath, n),
        (n, _) => (Tok::Uri, n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 20,000 inputs of bytes from `alphabet`, each of a length in `lens`, from a xorshift
    /// generator started at `seed` (the same inputs every run).
    fn random_inputs(
        alphabet: &[u8],
        seed: u64,
        lens: std::ops::Range<usize>,
    ) -> impl Iterator<Item = Vec<u8>> + '_ {
        let mut state = seed;
        (0..20_000).map(move |_| {
            let len = lens.start + (state % (lens.end - lens.start) as u64) as usize;
            (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    alphabet[(state % alphabet.len() as u64) as usize]
                })
                .collect()
        })
    }

    /// The token at the start of `s`, its text and its length.
    fn tok(s: &str) -> (Tok, &str, usize) {
        let (t, n) = next_token(s.as_bytes(), 0);
        let text = match t {
            Tok::Id | Tok::Int | Tok::Float | Tok::Path | Tok::HPath | Tok::SPath | Tok::Uri => {
                token_text(s, t, 0, n)
            }
            _ => "",
        };
        (t, text, n)
    }

    /// The quick paths give what the full rules give, at every position of inputs made of
    /// the characters that matter to them.
    #[test]
    fn quick_tokens_agree_with_the_full_rules() {
        let alphabet: &[u8] = b"ab_'-+./:<>=~${}()@?;1 \n\"!&|*Z9";
        for input in random_inputs(alphabet, 0x2545f4914f6cdd1d, 1..13) {
            for i in 0..input.len() {
                let quick = next_token_cached(&input, i, &mut (0, 0));
                let full = full_token(&input, i, &mut (0, 0));
                let fast = next_token_fast(&input, i, &mut (0, 0));
                assert_eq!(
                    quick,
                    fast,
                    "at {i} of {:?}",
                    String::from_utf8_lossy(&input)
                );
                assert_eq!(
                    quick,
                    full,
                    "at {i} of {:?}",
                    String::from_utf8_lossy(&input)
                );
            }
        }
    }

    /// Trivia are skipped as a byte at a time would skip them.
    #[test]
    fn trivia_as_byte_by_byte() {
        fn reference(s: &[u8], mut i: usize) -> Result<usize, usize> {
            loop {
                match s.get(i) {
                    Some(b' ' | b'\t' | b'\r' | b'\n') => i += 1,
                    Some(b'#') => {
                        while i < s.len() && s[i] != b'\n' && s[i] != b'\r' {
                            i += 1;
                        }
                    }
                    Some(b'/') if s.get(i + 1) == Some(&b'*') => {
                        let start = i;
                        i += 2;
                        loop {
                            if i + 1 >= s.len() {
                                return Err(start);
                            }
                            if s[i] == b'*' && s[i + 1] == b'/' {
                                i += 2;
                                break;
                            }
                            i += 1;
                        }
                    }
                    _ => return Ok(i),
                }
            }
        }
        for input in random_inputs(b"/*#\n\r a", 0x9e3779b97f4a7c15, 0..40) {
            for i in 0..=input.len() {
                assert_eq!(
                    skip_trivia(&input, i),
                    reference(&input, i),
                    "{input:?} at {i}"
                );
            }
        }
    }

    #[test]
    fn longest_match() {
        assert_eq!(tok("if"), (Tok::If, "", 2));
        assert_eq!(tok("iffy"), (Tok::Id, "iffy", 4));
        assert_eq!(tok("a/b c"), (Tok::Path, "a/b", 3));
        assert_eq!(tok("2/3"), (Tok::Path, "2/3", 3));
        assert_eq!(tok("1.5e3"), (Tok::Float, "1.5e3", 5));
        assert_eq!(tok(".5"), (Tok::Float, ".5", 2));
        assert_eq!(tok("123"), (Tok::Int, "123", 3));
        assert_eq!(tok("./${x}"), (Tok::Path, "./", 2));
        assert_eq!(tok("http://x.org/y"), (Tok::Uri, "http://x.org/y", 14));
        assert_eq!(tok("<nixpkgs/lib>"), (Tok::SPath, "nixpkgs/lib", 13));
        assert_eq!(tok("a-b'"), (Tok::Id, "a-b'", 4));
        assert_eq!(tok("//"), (Tok::Update, "", 2));
        assert_eq!(tok("''  \nx"), (Tok::IndOpen, "", 5));
        assert_eq!(tok("~/a/b"), (Tok::HPath, "~/a/b", 5));
    }
}
