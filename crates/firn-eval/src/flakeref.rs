//! Flake references: their URL-like form (`github:NixOS/nixpkgs/23.05?dir=lib`, `nixpkgs`,
//! `/abs/path`, `git+https://...`, `https://.../x.tar.gz`, ...) and their attribute-set form
//! (`{ type = "github"; owner = "NixOS"; ... }`), converted both ways as upstream Nix's
//! `libflake`/`libfetchers` do, plus the builtins `parseFlakeRef` and `flakeRefToString`.
//!
//! The module has no evaluator state and does no IO, so that a future `firn-flake` crate can
//! use [`FlakeRef`] directly. Parsing follows upstream's order: a flake ID
//! (`nixpkgs/branch/rev`), then a URL (an error in the URL syntax, or one the input scheme
//! calls a bad URL, falls through), then a path, which must be absolute (the builtins have
//! no base directory to resolve a relative path against).
//!
//! URLs are parsed with RFC 3986's grammar and Nix's leniency (unescaped spaces and `"` in
//! queries, also `^` in fragments); components are kept percent-decoded (the path as its
//! `/`-separated segments, so `%2F` survives) and re-encoded on printing.

use std::collections::BTreeMap;
use std::rc::Rc;

use firn_format::{Hash, HashAlgo};

use crate::builtins::{attrs, force, string, PrimFn};
use crate::error::{err, EResult, EvalError};
use crate::eval::{no_context, Evaluator};
use crate::value::*;

// ---------------------------------------------------------------------------------------------
// Errors

/// A flake reference that cannot be parsed, converted or printed. `bad_url` marks what
/// upstream calls a `BadURL`: while parsing, such an error in the URL form makes the parser
/// try the path form instead.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{msg}")]
pub struct FlakeRefError {
    pub msg: String,
    pub bad_url: bool,
}

impl FlakeRefError {
    fn other(msg: impl Into<String>) -> FlakeRefError {
        FlakeRefError {
            msg: msg.into(),
            bad_url: false,
        }
    }

    fn bad_url(msg: impl Into<String>) -> FlakeRefError {
        FlakeRefError {
            msg: msg.into(),
            bad_url: true,
        }
    }
}

type Result<T> = std::result::Result<T, FlakeRefError>;

fn warn(msg: &str) {
    eprintln!("warning: {msg}");
}

// ---------------------------------------------------------------------------------------------
// Percent-encoding

fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

fn is_sub_delim(c: u8) -> bool {
    matches!(
        c,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
}

fn is_pchar(c: u8) -> bool {
    is_unreserved(c) || is_sub_delim(c) || c == b':' || c == b'@'
}

/// Percent-encode every byte that is neither unreserved nor in `keep` (upper-case hex).
pub fn percent_encode(s: &str, keep: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if is_unreserved(b) || keep.as_bytes().contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-encode only the bytes in `set` (Nix's leniency fix-ups).
fn encode_only(s: &str, set: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii() && set.contains(&(c as u8)) {
            out.push_str(&format!("%{:02X}", c as u8));
        } else {
            out.push(c);
        }
    }
    out
}

/// Is every `%` followed by two hex digits?
fn valid_escapes(s: &[u8]) -> bool {
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            if i + 2 >= s.len() || !(s[i + 1].is_ascii_hexdigit() && s[i + 2].is_ascii_hexdigit()) {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

/// The query parameters a `path:` URL may have (`rev`, `narHash`, `revCount`,
/// `lastModified`) into `attrs`; the error names the parameter ("invalid parameter 'x'" or
/// "unsupported parameter 'x'").
pub(crate) fn path_query_attrs(
    query: &BTreeMap<String, String>,
    attrs: &mut Attrs,
) -> std::result::Result<(), String> {
    for (name, value) in query {
        match name.as_str() {
            "rev" | "narHash" => {
                attrs.insert(name.clone(), Attr::Str(value.clone()));
            }
            "revCount" | "lastModified" => match value.parse::<u64>() {
                Ok(n) => {
                    attrs.insert(name.clone(), Attr::Int(n));
                }
                Err(_) => return Err(format!("invalid parameter '{name}'")),
            },
            _ => return Err(format!("unsupported parameter '{name}'")),
        }
    }
    Ok(())
}

/// Decode `%XX` escapes; a malformed escape is a bad URL.
pub fn percent_decode(s: &str) -> Result<String> {
    let b = s.as_bytes();
    if !valid_escapes(b) {
        return Err(FlakeRefError::bad_url(format!(
            "invalid URI parameter '{s}': invalid percent-encoding"
        )));
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("00");
            out.push(u8::from_str_radix(hex, 16).unwrap_or(0));
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Do all bytes of `s` satisfy `ok`, with `%XX` escapes allowed?
fn chars_ok(s: &str, ok: impl Fn(u8) -> bool) -> bool {
    valid_escapes(s.as_bytes()) && s.bytes().all(|c| c == b'%' || ok(c))
}

// ---------------------------------------------------------------------------------------------
// URLs

/// The kind of host in a URL's authority.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostType {
    Name,
    IPv4,
    IPv6,
    IPvFuture,
}

/// `[user[:password]@]host[:port]`, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authority {
    pub host_type: HostType,
    pub host: String,
    pub user: Option<String>,
    pub password: Option<String>,
    pub port: Option<u16>,
}

impl Authority {
    fn empty() -> Authority {
        Authority {
            host_type: HostType::Name,
            host: String::new(),
            user: None,
            password: None,
            port: None,
        }
    }

    fn parse(s: &str) -> Result<Authority> {
        let bad =
            |why: &str| FlakeRefError::bad_url(format!("invalid URL authority: '{s}': {why}"));
        let (userinfo, hostport) = match s.find('@') {
            Some(i) => (Some(&s[..i]), &s[i + 1..]),
            None => (None, s),
        };
        let (mut user, mut password) = (None, None);
        if let Some(ui) = userinfo {
            if !chars_ok(ui, |c| is_unreserved(c) || is_sub_delim(c) || c == b':') {
                return Err(bad("invalid userinfo"));
            }
            match ui.find(':') {
                Some(i) => {
                    user = Some(percent_decode(&ui[..i])?);
                    password = Some(percent_decode(&ui[i + 1..])?);
                }
                None => user = Some(percent_decode(ui)?),
            }
        }
        let (host_type, host, port) = if let Some(rest) = hostport.strip_prefix('[') {
            let close = rest
                .find(']')
                .ok_or_else(|| bad("unterminated IP literal"))?;
            let lit = &rest[..close];
            let after = &rest[close + 1..];
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(bad("leftover characters after the host")),
            };
            let ty = if lit.starts_with(['v', 'V']) {
                if !valid_ipvfuture(lit) {
                    return Err(bad("invalid IP literal"));
                }
                HostType::IPvFuture
            } else {
                if !valid_ipv6(lit) {
                    return Err(bad("invalid IPv6 address"));
                }
                HostType::IPv6
            };
            // Kept decoded (a zone's `%25` is `%`), as upstream.
            (ty, percent_decode(lit)?, port)
        } else {
            let (h, port) = match hostport.find(':') {
                Some(i) => (&hostport[..i], Some(&hostport[i + 1..])),
                None => (hostport, None),
            };
            if is_ipv4(h) {
                (HostType::IPv4, h.to_string(), port)
            } else {
                if !chars_ok(h, |c| is_unreserved(c) || is_sub_delim(c)) {
                    return Err(bad("invalid host"));
                }
                (HostType::Name, percent_decode(h)?, port)
            }
        };
        let port = match port {
            None | Some("") => None,
            Some(p) => {
                if !p.bytes().all(|c| c.is_ascii_digit()) {
                    return Err(bad("invalid port"));
                }
                match p.parse::<u16>() {
                    Ok(n) if n != 0 => Some(n),
                    _ => {
                        return Err(FlakeRefError::bad_url(format!("port '{p}' is invalid")));
                    }
                }
            }
        };
        Ok(Authority {
            host_type,
            host,
            user,
            password,
            port,
        })
    }
}

impl std::fmt::Display for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(u) = &self.user {
            f.write_str(&percent_encode(u, ""))?;
            if let Some(p) = &self.password {
                write!(f, ":{}", percent_encode(p, ""))?;
            }
            f.write_str("@")?;
        }
        match self.host_type {
            HostType::Name => f.write_str(&percent_encode(&self.host, ""))?,
            HostType::IPv4 => f.write_str(&self.host)?,
            HostType::IPv6 | HostType::IPvFuture => {
                write!(f, "[{}]", percent_encode(&self.host, ":"))?
            }
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

/// RFC 3986 `IPv4address`: four decimal octets without leading zeros.
fn is_ipv4(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 4
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.len() <= 3
                && p.bytes().all(|c| c.is_ascii_digit())
                && (p.len() == 1 || !p.starts_with('0'))
                && p.parse::<u16>().is_ok_and(|n| n <= 255)
        })
}

/// An IPv6 address, optionally with an RFC 6874 zone (`%25zone`).
fn valid_ipv6(s: &str) -> bool {
    let (addr, zone) = match s.find("%25") {
        Some(i) => (&s[..i], Some(&s[i + 3..])),
        None => (s, None),
    };
    if let Some(z) = zone {
        if z.is_empty() || !chars_ok(z, is_unreserved) {
            return false;
        }
    }
    addr.parse::<std::net::Ipv6Addr>().is_ok()
}

/// `"v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )`.
fn valid_ipvfuture(s: &str) -> bool {
    let rest = &s[1..];
    let Some(dot) = rest.find('.') else {
        return false;
    };
    let (hex, tail) = (&rest[..dot], &rest[dot + 1..]);
    !hex.is_empty()
        && hex.bytes().all(|c| c.is_ascii_hexdigit())
        && !tail.is_empty()
        && tail
            .bytes()
            .all(|c| is_unreserved(c) || is_sub_delim(c) || c == b':')
}

/// A parsed URL with its components decoded (Nix's `ParsedURL`).
///
/// `path` is the list of `/`-separated segments: `https://h/a/b` has `["", "a", "b"]`,
/// `https://h` has `[""]`, `tel:123` has `["123"]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedUrl {
    pub scheme: String,
    pub authority: Option<Authority>,
    pub path: Vec<String>,
    pub query: BTreeMap<String, String>,
    pub fragment: String,
}

/// `(application, transport)` of a scheme such as `git+https`.
fn split_scheme(scheme: &str) -> (Option<&str>, &str) {
    match scheme.split_once('+') {
        Some((a, t)) => (Some(a), t),
        None => (None, scheme),
    }
}

fn valid_scheme(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphabetic()
        && b[1..]
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
}

/// Nix's leniency: spaces and `"` may appear unescaped in the query, and also `^` in the
/// fragment; escape them before parsing.
fn lenient_fixup(url: &str) -> String {
    let mut fixed = String::with_capacity(url.len());
    let mut view = url;
    if let Some(q) = view.find('?') {
        fixed.push_str(&view[..q + 1]);
        view = &view[q + 1..];
        let end = view.find('#').unwrap_or(view.len());
        fixed.push_str(&encode_only(&view[..end], b" \""));
        view = &view[end..];
    }
    if let Some(h) = view.find('#') {
        fixed.push_str(&view[..h + 1]);
        fixed.push_str(&encode_only(&view[h + 1..], b" \"^"));
        return fixed;
    }
    fixed.push_str(view);
    fixed
}

/// Decode a query string into a map (the first of repeated keys wins; a parameter without
/// `=` is ignored with a warning).
pub fn decode_query(query: &str, lenient: bool) -> Result<BTreeMap<String, String>> {
    let fixed;
    let q = if lenient {
        fixed = encode_only(query, b" \"");
        fixed.as_str()
    } else {
        query
    };
    if !chars_ok(q, |c| is_pchar(c) || c == b'/' || c == b'?') {
        return Err(FlakeRefError::bad_url(format!(
            "invalid URI query '{query}': invalid character"
        )));
    }
    let mut out = BTreeMap::new();
    if q.is_empty() {
        return Ok(out);
    }
    for param in q.split('&') {
        let Some((k, v)) = param.split_once('=') else {
            warn(&format!(
                "dubious URI query '{param}' is missing equal sign '=', ignoring"
            ));
            continue;
        };
        out.entry(percent_decode(k)?).or_insert(percent_decode(v)?);
    }
    Ok(out)
}

/// Parse an absolute URL (Nix's `parseURL`); with `lenient`, Nix's extra characters are
/// accepted in the query and fragment.
pub fn parse_url(url: &str, lenient: bool) -> Result<ParsedUrl> {
    let text = if lenient {
        lenient_fixup(url)
    } else {
        url.to_string()
    };
    let invalid = |why: &str| FlakeRefError::bad_url(format!("'{url}' is not a valid URL: {why}"));
    let (before_frag, fragment) = match text.find('#') {
        Some(i) => (&text[..i], Some(&text[i + 1..])),
        None => (text.as_str(), None),
    };
    let (before_query, query) = match before_frag.find('?') {
        Some(i) => (&before_frag[..i], Some(&before_frag[i + 1..])),
        None => (before_frag, None),
    };
    let path_ok = |s: &str| chars_ok(s, |c| is_pchar(c) || c == b'/');
    let query_ok = |s: &str| chars_ok(s, |c| is_pchar(c) || c == b'/' || c == b'?');
    if let Some(q) = query {
        if !query_ok(q) {
            return Err(invalid("invalid character in the query"));
        }
    }
    if let Some(f) = fragment {
        if !query_ok(f) {
            return Err(invalid("invalid character in the fragment"));
        }
    }
    let scheme_end = before_query.find([':', '/']);
    let (scheme, hier) = match scheme_end {
        Some(i) if before_query.as_bytes()[i] == b':' && valid_scheme(&before_query[..i]) => {
            (&before_query[..i], &before_query[i + 1..])
        }
        _ => {
            // A relative reference (or nothing valid at all).
            let first_seg = before_query.split('/').next().unwrap_or("");
            if path_ok(before_query) && !first_seg.contains(':') {
                return Err(FlakeRefError::bad_url(format!(
                    "'{}' doesn't have a scheme",
                    text
                )));
            }
            return Err(invalid("invalid URL syntax"));
        }
    };
    let (authority, enc_path) = match hier.strip_prefix("//") {
        Some(rest) => {
            let end = rest.find('/').unwrap_or(rest.len());
            (Some(Authority::parse(&rest[..end])?), &rest[end..])
        }
        None => (None, hier),
    };
    if !path_ok(enc_path) {
        return Err(invalid("invalid character in the path"));
    }
    let transport_is_file = split_scheme(scheme).1 == "file";
    if let Some(a) = &authority {
        if transport_is_file && !a.host.is_empty() {
            return Err(FlakeRefError::bad_url(format!(
                "file:// URL '{text}' has unexpected authority '{a}'"
            )));
        }
    }
    let enc_path = if transport_is_file && enc_path.is_empty() {
        "/"
    } else {
        enc_path
    };
    let path = enc_path
        .split('/')
        .map(percent_decode)
        .collect::<Result<Vec<_>>>()?;
    Ok(ParsedUrl {
        scheme: scheme.to_string(),
        authority,
        path,
        query: decode_query(query.unwrap_or(""), lenient)?,
        fragment: percent_decode(fragment.unwrap_or(""))?,
    })
}

/// Encode path segments, joined by `/` (a `/` inside a segment becomes `%2F`).
pub fn encode_url_path(path: &[String]) -> String {
    path.iter()
        .map(|p| percent_encode(p, ":@"))
        .collect::<Vec<_>>()
        .join("/")
}

/// Encode a query map (`k=v&...`, sorted by key).
pub fn encode_query(q: &BTreeMap<String, String>) -> String {
    q.iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                percent_encode(k, ":@/?"),
                percent_encode(v, ":@/?")
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

impl ParsedUrl {
    fn new(scheme: &str, path: Vec<String>) -> ParsedUrl {
        ParsedUrl {
            scheme: scheme.to_string(),
            authority: None,
            path,
            query: BTreeMap::new(),
            fragment: String::new(),
        }
    }

    /// The path segments that are not empty.
    fn segments(&self) -> Vec<String> {
        self.path
            .iter()
            .filter(|s| !s.is_empty())
            .cloned()
            .collect()
    }
}

impl std::fmt::Display for ParsedUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:", self.scheme)?;
        if let Some(a) = &self.authority {
            write!(f, "//{a}")?;
        }
        f.write_str(&encode_url_path(&self.path))?;
        if !self.query.is_empty() {
            write!(f, "?{}", encode_query(&self.query))?;
        }
        if !self.fragment.is_empty() {
            write!(f, "#{}", percent_encode(&self.fragment, ""))?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// File system paths <-> URL paths (with `std::filesystem::path`'s rules on POSIX)

/// The URL path of a file system path: a leading `""` for an absolute path, one segment per
/// component, and a trailing `""` for a path that ends in `/` (or is only `/`).
fn path_to_url_path(p: &str) -> Vec<String> {
    let mut out = Vec::new();
    if p.starts_with('/') {
        out.push(String::new());
    }
    let rel = p.trim_start_matches('/');
    if !rel.is_empty() {
        out.extend(rel.split('/').filter(|c| !c.is_empty()).map(String::from));
        if rel.ends_with('/') {
            out.push(String::new());
        }
    }
    // `filename()` is empty for "", "/" and anything ending in '/'.
    if p.is_empty() || p.ends_with('/') {
        out.push(String::new());
    }
    out
}

/// The file system path of a URL path.
fn url_path_to_path(segs: &[String]) -> Result<String> {
    for s in segs {
        if s.contains('/') {
            return Err(FlakeRefError::bad_url(format!(
                "URL path component '{s}' contains '/', which is not allowed in file names"
            )));
        }
        if s.contains('\0') {
            return Err(FlakeRefError::bad_url(format!(
                "URL path component '{}' contains NUL byte which is not allowed",
                s.replace('\0', "␀")
            )));
        }
    }
    let mut it = segs.iter().peekable();
    let mut out = String::new();
    if it.peek().is_some_and(|s| s.is_empty()) {
        it.next();
        out.push('/');
    }
    for s in it {
        // `path /= s`: a separator when the path so far has a file name.
        if !out.is_empty() && !out.ends_with('/') {
            out.push('/');
        }
        out.push_str(s);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Git names and revisions

/// Upstream's `refRegex`: `[a-zA-Z0-9@][a-zA-Z0-9_.\/@+-]*`.
fn matches_ref_regex(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphanumeric() || b[0] == b'@')
        && b[1..].iter().all(|&c| {
            c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'/' | b'@' | b'+' | b'-')
        })
}

/// Upstream's `revRegex`: 40 hex digits.
fn matches_rev_regex(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|c| c.is_ascii_hexdigit())
}

/// libgit2's check of one `/`-separated component of a reference name.
fn ref_segment_ok(seg: &[u8], allow_caret: bool) -> bool {
    if seg.first() == Some(&b'.') {
        return false;
    }
    let start = usize::from(allow_caret && seg.first() == Some(&b'^'));
    let mut prev = 0u8;
    for &c in &seg[start..] {
        if c <= b' ' || matches!(c, b'~' | b'^' | b':' | b'\\' | b'?' | b'[' | b'*') {
            return false;
        }
        if (prev == b'.' && c == b'.') || (prev == b'@' && c == b'{') {
            return false;
        }
        prev = c;
    }
    !seg.ends_with(b".lock")
}

/// libgit2's "all capitals and underscores" test for one-level names such as `HEAD`.
fn caps_name(seg: &[u8]) -> bool {
    !seg.is_empty()
        && seg
            .iter()
            .enumerate()
            .all(|(i, &c)| (i == 0 && c == b'^') || c.is_ascii_uppercase() || c == b'_')
        && seg[0] != b'_'
        && seg[seg.len() - 1] != b'_'
}

/// libgit2's `git_reference_name_is_valid` (one-level names allowed if all capitals).
fn git_reference_name_ok(name: &[u8]) -> bool {
    if name.first() == Some(&b'/') {
        return false;
    }
    let segs: Vec<&[u8]> = name.split(|&c| c == b'/').collect();
    for (i, seg) in segs.iter().enumerate() {
        if seg.is_empty() || !ref_segment_ok(seg, i == 0) {
            return false;
        }
    }
    let last = segs[segs.len() - 1];
    if last.ends_with(b".") {
        return false;
    }
    if segs.len() == 1 {
        caps_name(name)
    } else {
        !caps_name(segs[0])
    }
}

/// Is `name` a legal Git branch or tag name (or reference name)? As upstream's
/// `isLegalRefName` over libgit2.
pub fn is_legal_ref_name(name: &str) -> bool {
    if name == "@" || name.contains('\x7f') {
        return false;
    }
    let b = name.as_bytes();
    if git_reference_name_ok(b) {
        return true;
    }
    if name.starts_with('-') {
        return false;
    }
    (name != "HEAD" && git_reference_name_ok(format!("refs/heads/{name}").as_bytes()))
        || git_reference_name_ok(format!("refs/tags/{name}").as_bytes())
}

fn hash_err(e: firn_format::hash::HashError) -> FlakeRefError {
    FlakeRefError::other(e.to_string())
}

/// A revision: a hash with its algorithm (`sha1:...`, SRI), or else SHA-1 digits.
fn parse_rev(s: &str) -> Result<Hash> {
    Hash::parse(s, None)
        .or_else(|_| Hash::parse(s, Some(HashAlgo::Sha1)))
        .map_err(hash_err)
}

/// A NAR hash: SRI SHA-256 (an empty string is the zero hash).
fn parse_nar_hash(s: &str) -> Result<Hash> {
    if s.is_empty() {
        return Ok(Hash::from_bytes(HashAlgo::Sha256, &[0; 32]).expect("32 bytes"));
    }
    let h = match Hash::parse_sri(s) {
        Ok(h) => h,
        Err(e) => {
            // Old lock files lack the base-64 padding.
            let (algo, digits) = s
                .split_once('-')
                .ok_or_else(|| FlakeRefError::other(format!("hash '{s}' is not SRI")))?;
            let mut padded = digits.to_string();
            while padded.len() % 4 != 0 {
                padded.push('=');
            }
            Hash::parse_sri(&format!("{algo}-{padded}")).map_err(|_| hash_err(e))?
        }
    };
    if h.algo() != HashAlgo::Sha256 {
        return Err(FlakeRefError::other("narHash must use SHA-256"));
    }
    Ok(h)
}

// ---------------------------------------------------------------------------------------------
// Git URLs

/// Upstream's `fixGitURL`: an absolute path becomes a `file://` URL, an SCP-style
/// `[user@]host:path` an `ssh://` URL, and `git+` is dropped from the scheme.
fn fix_git_url(url: &str) -> Result<ParsedUrl> {
    if url.starts_with('/') {
        let mut u = ParsedUrl::new("file", path_to_url_path(url));
        u.authority = Some(Authority::empty());
        return Ok(u);
    }
    if let Some(u) = parse_scp_style(url)? {
        return Ok(u);
    }
    let mut parsed = parse_url(url, false)?;
    if let (Some("git"), transport) = split_scheme(&parsed.scheme) {
        parsed.scheme = transport.to_string();
    }
    Ok(parsed)
}

const SCHEMES_SUPPORTED_BY_GIT: [&str; 7] = ["ssh", "http", "https", "file", "ftp", "ftps", "git"];

fn parse_scp_style(url: &str) -> Result<Option<ParsedUrl>> {
    if url.contains("://") {
        return Ok(None);
    }
    let Some(colon) = url.find(':') else {
        return Ok(None);
    };
    let mut host = &url[..colon];
    if host.contains('/') {
        return Ok(None);
    }
    if SCHEMES_SUPPORTED_BY_GIT
        .iter()
        .any(|s| host == *s || host.strip_prefix("git+") == Some(s))
    {
        return Ok(None);
    }
    // A bracketed host (`[::1]:path`, `user@[::1]:path`) ends at its `]`.
    let bracket = match url.find("@[") {
        Some(i) => Some(i + 1),
        None if url.starts_with('[') => Some(0),
        None => None,
    };
    if let Some(b) = bracket {
        if let Some(close) = url[b + 1..].find(']').map(|i| i + b + 1) {
            if url.as_bytes().get(close + 1) == Some(&b':') {
                host = &url[..close + 1];
            } else {
                return Ok(None);
            }
        }
    }
    let path = &url[host.len() + 1..];
    let (user, host_part) = match host.find('@') {
        Some(i) => (Some(host[..i].to_string()), &host[i + 1..]),
        None => (None, host),
    };
    let mut authority = if is_ipv4(host_part) {
        Authority {
            host_type: HostType::IPv4,
            host: host_part.to_string(),
            ..Authority::empty()
        }
    } else if let Some(inner) = host_part
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
    {
        match inner.parse::<std::net::Ipv6Addr>() {
            Ok(a) => Authority {
                host_type: HostType::IPv6,
                host: a.to_string(),
                ..Authority::empty()
            },
            Err(_) => {
                return Err(FlakeRefError::bad_url(format!(
                    "Git SCP bracketed URL is not valid: '{inner}' is not a valid IPv6 address"
                )))
            }
        }
    } else {
        Authority {
            host: host_part.to_string(),
            ..Authority::empty()
        }
    };
    authority.user = user;
    if path.is_empty() {
        return Err(FlakeRefError::bad_url(format!(
            "SCP-style Git URL '{url}' has an empty path"
        )));
    }
    let mut res = ParsedUrl::new("ssh", path.split('/').map(String::from).collect());
    res.authority = Some(authority);
    if !res.path[0].is_empty() {
        res.path.insert(0, String::new());
        if !res.path[1].starts_with('~') {
            let mut tilde = res.clone();
            tilde.path.insert(1, "~".into());
            warn(&format!(
                "SCP-style URL '{url}' has a relative path which cannot be faithfully converted to an SSH URL: \
                 we will convert it to an absolute path when making an SSH URL.\n\n\
                 Use an explicit absolute path:\n\n    {host}:/{path}\n\n\
                 or with an explicit SSH URL:\n\n    {res}\n\n\
                 instead, to explicitly use an absolute path (and silence this warning). \
                 Or, to be relative to the remote user's home directory:\n\n    {host}:~/{path}\n\n\
                 or with an explicit SSH URL:\n\n    {tilde}"
            ));
        }
    }
    Ok(Some(res))
}

// ---------------------------------------------------------------------------------------------
// Input attributes

/// The value of an input attribute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attr {
    Str(String),
    Int(u64),
    Bool(bool),
}

impl From<&str> for Attr {
    fn from(s: &str) -> Attr {
        Attr::Str(s.to_string())
    }
}

impl From<String> for Attr {
    fn from(s: String) -> Attr {
        Attr::Str(s)
    }
}

/// Input attributes, sorted by name.
pub type Attrs = BTreeMap<String, Attr>;

/// The attributes as compact JSON (for error messages, as upstream prints them).
pub fn attrs_to_json(attrs: &Attrs) -> String {
    attrs_to_value(attrs).to_string()
}

/// The attributes as a JSON object.
pub fn attrs_to_value(attrs: &Attrs) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for (k, v) in attrs {
        let j = match v {
            Attr::Str(s) => serde_json::Value::String(s.clone()),
            Attr::Int(n) => serde_json::Value::from(*n),
            Attr::Bool(b) => serde_json::Value::Bool(*b),
        };
        m.insert(k.clone(), j);
    }
    serde_json::Value::Object(m)
}

fn maybe_str(attrs: &Attrs, name: &str) -> Result<Option<String>> {
    match attrs.get(name) {
        None => Ok(None),
        Some(Attr::Str(s)) => Ok(Some(s.clone())),
        Some(_) => Err(FlakeRefError::other(format!(
            "input attribute '{name}' is not a string {}",
            attrs_to_json(attrs)
        ))),
    }
}

fn get_str(attrs: &Attrs, name: &str) -> Result<String> {
    maybe_str(attrs, name)?
        .ok_or_else(|| FlakeRefError::other(format!("input attribute '{name}' is missing")))
}

fn maybe_int(attrs: &Attrs, name: &str) -> Result<Option<u64>> {
    match attrs.get(name) {
        None => Ok(None),
        Some(Attr::Int(n)) => Ok(Some(*n)),
        Some(_) => Err(FlakeRefError::other(format!(
            "input attribute '{name}' is not an integer"
        ))),
    }
}

fn maybe_bool(attrs: &Attrs, name: &str) -> Result<Option<bool>> {
    match attrs.get(name) {
        None => Ok(None),
        Some(Attr::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(FlakeRefError::other(format!(
            "input attribute '{name}' is not a Boolean"
        ))),
    }
}

/// Attributes as URL query parameters (integers in decimal, Booleans as `1`/`0`).
fn attrs_to_query(attrs: &Attrs) -> BTreeMap<String, String> {
    attrs
        .iter()
        .map(|(k, v)| {
            let s = match v {
                Attr::Str(s) => s.clone(),
                Attr::Int(n) => n.to_string(),
                Attr::Bool(b) => if *b { "1" } else { "0" }.to_string(),
            };
            (k.clone(), s)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Input schemes

/// The input schemes upstream registers, in the order it tries them on a URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    File,
    Git,
    GitHub,
    GitLab,
    Mercurial,
    Indirect,
    Path,
    SourceHut,
    Tarball,
}

const ALL_SCHEMES: [Scheme; 9] = [
    Scheme::File,
    Scheme::Git,
    Scheme::GitHub,
    Scheme::GitLab,
    Scheme::Mercurial,
    Scheme::Indirect,
    Scheme::Path,
    Scheme::SourceHut,
    Scheme::Tarball,
];

const CURL_ATTRS: &[&str] = &[
    "url",
    "narHash",
    "name",
    "unpack",
    "rev",
    "revCount",
    "lastModified",
];

impl Scheme {
    /// The `type` attribute of its inputs.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::File => "file",
            Scheme::Git => "git",
            Scheme::GitHub => "github",
            Scheme::GitLab => "gitlab",
            Scheme::Mercurial => "hg",
            Scheme::Indirect => "indirect",
            Scheme::Path => "path",
            Scheme::SourceHut => "sourcehut",
            Scheme::Tarball => "tarball",
        }
    }

    fn from_name(name: &str) -> Option<Scheme> {
        ALL_SCHEMES.iter().copied().find(|s| s.name() == name)
    }

    fn allowed_attrs(self) -> &'static [&'static str] {
        match self {
            Scheme::File | Scheme::Tarball => CURL_ATTRS,
            Scheme::Git => &[
                "url",
                "ref",
                "rev",
                "shallow",
                "submodules",
                "lfs",
                "exportIgnore",
                "lastModified",
                "revCount",
                "narHash",
                "allRefs",
                "name",
                "dirtyRev",
                "dirtyShortRev",
                "verifyCommit",
                "keytype",
                "publicKey",
                "publicKeys",
            ],
            Scheme::GitHub | Scheme::GitLab | Scheme::SourceHut => &[
                "owner",
                "repo",
                "ref",
                "rev",
                "narHash",
                "lastModified",
                "host",
                "treeHash",
            ],
            Scheme::Mercurial => &["url", "ref", "rev", "revCount", "narHash", "name"],
            Scheme::Indirect => &["id", "ref", "rev", "narHash"],
            Scheme::Path => &["path", "rev", "revCount", "lastModified", "narHash"],
        }
    }

    /// The input for `url` if this scheme handles it.
    fn input_from_url(self, url: &ParsedUrl, require_tree: bool) -> Result<Option<Attrs>> {
        match self {
            Scheme::File | Scheme::Tarball => Ok(curl_from_url(self, url, require_tree)),
            Scheme::Git => git_from_url(url),
            Scheme::GitHub | Scheme::GitLab | Scheme::SourceHut => git_archive_from_url(self, url),
            Scheme::Mercurial => hg_from_url(url),
            Scheme::Indirect => indirect_from_url(url),
            Scheme::Path => path_from_url(url),
        }
    }

    /// Check (and normalise) the attributes of an input of this scheme.
    fn input_from_attrs(self, mut attrs: Attrs) -> Result<Attrs> {
        match self {
            Scheme::File | Scheme::Tarball => {}
            Scheme::Path => {
                get_str(&attrs, "path")?;
            }
            Scheme::Indirect => {
                let id = get_str(&attrs, "id")?;
                if !is_flake_id(&id) {
                    return Err(FlakeRefError::bad_url(format!(
                        "'{id}' is not a valid flake ID"
                    )));
                }
            }
            Scheme::GitHub | Scheme::GitLab | Scheme::SourceHut => {
                get_str(&attrs, "owner")?;
                get_str(&attrs, "repo")?;
                let r#ref = maybe_str(&attrs, "ref")?;
                let rev = maybe_str(&attrs, "rev")?;
                if let (Some(r), Some(v)) = (&r#ref, &rev) {
                    return Err(FlakeRefError::bad_url(format!(
                        "input {} contains both a commit hash ('{v}') and a branch/tag name ('{r}')",
                        attrs_to_json(&attrs)
                    )));
                }
                if let Some(v) = &rev {
                    Hash::parse(v, Some(HashAlgo::Sha1)).map_err(hash_err)?;
                }
                if r#ref.as_deref().is_some_and(|r| !is_legal_ref_name(r)) {
                    return Err(FlakeRefError::bad_url(format!(
                        "input {} contains an invalid branch/tag name",
                        attrs_to_json(&attrs)
                    )));
                }
                if let Some(h) = maybe_str(&attrs, "host")? {
                    if !h
                        .bytes()
                        .all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'-')
                    {
                        return Err(FlakeRefError::bad_url(format!(
                            "input {} contains an invalid instance host",
                            attrs_to_json(&attrs)
                        )));
                    }
                }
            }
            Scheme::Git => {
                for name in ["verifyCommit", "keytype", "publicKey", "publicKeys"] {
                    if attrs.contains_key(name) {
                        return Err(FlakeRefError::other(
                            "experimental Nix feature 'verified-fetches' is disabled; add \
                             '--extra-experimental-features verified-fetches' to enable it",
                        ));
                    }
                }
                if let Some(r) = maybe_str(&attrs, "ref")? {
                    if !is_legal_ref_name(&r) {
                        return Err(FlakeRefError::bad_url(format!(
                            "invalid Git branch/tag name '{r}'"
                        )));
                    }
                }
                let url = fix_git_url(&get_str(&attrs, "url")?)?;
                attrs.insert("url".into(), Attr::Str(url.to_string()));
                for name in ["shallow", "submodules", "allRefs"] {
                    maybe_bool(&attrs, name)?;
                }
            }
            Scheme::Mercurial => {
                parse_url(&get_str(&attrs, "url")?, false)?;
                if let Some(r) = maybe_str(&attrs, "ref")? {
                    if !matches_ref_regex(&r) {
                        return Err(FlakeRefError::bad_url(format!(
                            "invalid Mercurial branch/tag name '{r}'"
                        )));
                    }
                }
            }
        }
        Ok(attrs)
    }

    /// The URL form of an input of this scheme.
    fn to_url(self, attrs: &Attrs) -> Result<ParsedUrl> {
        let rev = || -> Result<Option<Hash>> {
            maybe_str(attrs, "rev")?.map(|s| parse_rev(&s)).transpose()
        };
        let nar_hash = || -> Result<Option<Hash>> {
            maybe_str(attrs, "narHash")?
                .map(|s| parse_nar_hash(&s))
                .transpose()
        };
        match self {
            Scheme::Path => {
                let mut query = attrs_to_query(attrs);
                for k in ["path", "type", "__final"] {
                    query.remove(k);
                }
                let mut url = ParsedUrl::new("path", path_to_url_path(&get_str(attrs, "path")?));
                url.query = query;
                Ok(url)
            }
            Scheme::Indirect => {
                let mut path = vec![get_str(attrs, "id")?];
                if let Some(r) = maybe_str(attrs, "ref")? {
                    path.push(r);
                }
                if let Some(h) = rev()? {
                    path.push(h.to_base16());
                }
                Ok(ParsedUrl::new("flake", path))
            }
            Scheme::GitHub | Scheme::GitLab | Scheme::SourceHut => {
                let mut path = vec![get_str(attrs, "owner")?, get_str(attrs, "repo")?];
                if let Some(r) = maybe_str(attrs, "ref")? {
                    path.push(r);
                }
                if let Some(h) = rev()? {
                    path.push(h.to_base16());
                }
                let mut url = ParsedUrl::new(self.name(), path);
                if let Some(h) = nar_hash()? {
                    url.query.insert("narHash".into(), h.to_sri());
                }
                if let Some(h) = maybe_str(attrs, "host")? {
                    url.query.insert("host".into(), h);
                }
                Ok(url)
            }
            Scheme::File | Scheme::Tarball => {
                let mut url = parse_url(&get_str(attrs, "url")?, false)?;
                if let Some(h) = nar_hash()? {
                    url.query.insert("narHash".into(), h.to_sri());
                }
                Ok(url)
            }
            Scheme::Git => {
                let mut url = parse_url(&get_str(attrs, "url")?, false)?;
                if url.scheme != "git" {
                    url.scheme = format!("git+{}", url.scheme);
                }
                if let Some(h) = rev()? {
                    url.query.insert("rev".into(), h.to_base16());
                }
                if let Some(r) = maybe_str(attrs, "ref")? {
                    url.query.insert("ref".into(), r);
                }
                for name in [
                    "shallow",
                    "lfs",
                    "submodules",
                    "exportIgnore",
                    "verifyCommit",
                ] {
                    if maybe_bool(attrs, name)?.unwrap_or(false) {
                        url.query.insert(name.into(), "1".into());
                    }
                }
                Ok(url)
            }
            Scheme::Mercurial => {
                let mut url = parse_url(&get_str(attrs, "url")?, false)?;
                url.scheme = format!("hg+{}", url.scheme);
                if let Some(h) = rev()? {
                    url.query.insert("rev".into(), h.to_base16());
                }
                if let Some(r) = maybe_str(attrs, "ref")? {
                    url.query.insert("ref".into(), r);
                }
                Ok(url)
            }
        }
    }
}

/// `[a-zA-Z][a-zA-Z0-9_-]*`.
fn is_flake_id(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphabetic()
        && b[1..]
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
}

fn has_tarball_extension(url: &ParsedUrl) -> bool {
    url.path.last().is_some_and(|p| {
        [
            ".zip", ".tar", ".tgz", ".tar.gz", ".tar.xz", ".tar.bz2", ".tar.zst",
        ]
        .iter()
        .any(|ext| p.ends_with(ext))
    })
}

fn curl_from_url(scheme: Scheme, url: &ParsedUrl, require_tree: bool) -> Option<Attrs> {
    let (app, transport) = split_scheme(&url.scheme);
    if !matches!(transport, "file" | "http" | "https") {
        return None;
    }
    let valid = match app {
        Some(a) => a == scheme.name(),
        None if scheme == Scheme::File => !require_tree && !has_tarball_extension(url),
        None => require_tree || has_tarball_extension(url),
    };
    if !valid {
        return None;
    }
    let mut url = url.clone();
    url.scheme = transport.to_string();
    let mut attrs = Attrs::new();
    if let Some(h) = url.query.get("narHash") {
        attrs.insert("narHash".into(), Attr::Str(h.clone()));
    }
    if let Some(r) = url.query.get("rev") {
        attrs.insert("rev".into(), Attr::Str(r.clone()));
    }
    for name in ["revCount", "lastModified"] {
        if let Some(n) = url.query.get(name).and_then(|v| v.parse::<u64>().ok()) {
            attrs.insert(name.into(), Attr::Int(n));
        }
    }
    for name in CURL_ATTRS {
        url.query.remove(*name);
    }
    attrs.insert("type".into(), scheme.name().into());
    attrs.insert("url".into(), Attr::Str(url.to_string()));
    Some(attrs)
}

fn git_from_url(url: &ParsedUrl) -> Result<Option<Attrs>> {
    if url.scheme != "git" && split_scheme(&url.scheme).0 != Some("git") {
        return Ok(None);
    }
    let mut url2 = url.clone();
    url2.query.clear();
    let mut attrs = Attrs::new();
    attrs.insert("type".into(), "git".into());
    for (name, value) in &url.query {
        match name.as_str() {
            "rev" | "ref" | "keytype" | "publicKey" | "publicKeys" => {
                attrs.insert(name.clone(), Attr::Str(value.clone()));
            }
            "shallow" | "submodules" | "lfs" | "exportIgnore" | "allRefs" | "verifyCommit" => {
                attrs.insert(name.clone(), Attr::Bool(value == "1"));
            }
            _ => {
                url2.query.insert(name.clone(), value.clone());
            }
        }
    }
    attrs.insert("url".into(), Attr::Str(url2.to_string()));
    Scheme::Git.input_from_attrs(attrs).map(Some)
}

fn hg_from_url(url: &ParsedUrl) -> Result<Option<Attrs>> {
    if !matches!(
        url.scheme.as_str(),
        "hg+http" | "hg+https" | "hg+ssh" | "hg+file"
    ) {
        return Ok(None);
    }
    let mut url2 = url.clone();
    url2.scheme = url.scheme[3..].to_string();
    url2.query.clear();
    let mut attrs = Attrs::new();
    attrs.insert("type".into(), "hg".into());
    for (name, value) in &url.query {
        if name == "rev" || name == "ref" {
            attrs.insert(name.clone(), Attr::Str(value.clone()));
        } else {
            url2.query.insert(name.clone(), value.clone());
        }
    }
    attrs.insert("url".into(), Attr::Str(url2.to_string()));
    Scheme::Mercurial.input_from_attrs(attrs).map(Some)
}

fn git_archive_from_url(scheme: Scheme, url: &ParsedUrl) -> Result<Option<Attrs>> {
    if url.scheme != scheme.name() {
        return Ok(None);
    }
    let path = url.segments();
    let mut attrs = Attrs::new();
    match path.len() {
        0 | 1 => return Err(FlakeRefError::bad_url(format!("URL '{url}' is invalid"))),
        2 => {}
        3 => {
            let key = if matches_rev_regex(&path[2]) {
                "rev"
            } else {
                "ref"
            };
            attrs.insert(key.into(), Attr::Str(path[2].clone()));
        }
        _ => {
            attrs.insert("ref".into(), Attr::Str(path[2..].join("/")));
        }
    }
    for (name, value) in &url.query {
        match name.as_str() {
            "rev" | "ref" => {
                if attrs.contains_key(name) {
                    let what = if name == "rev" {
                        "commit hashes"
                    } else {
                        "branch/tag names"
                    };
                    return Err(FlakeRefError::bad_url(format!(
                        "URL '{url}' contains multiple {what}"
                    )));
                }
                attrs.insert(name.clone(), Attr::Str(value.clone()));
            }
            "host" | "narHash" => {
                attrs.insert(name.clone(), Attr::Str(value.clone()));
            }
            _ => {
                return Err(FlakeRefError::bad_url(format!(
                    "URL '{url}' contains unknown parameter '{name}'"
                )))
            }
        }
    }
    attrs.insert("type".into(), scheme.name().into());
    attrs.insert("owner".into(), Attr::Str(path[0].clone()));
    attrs.insert("repo".into(), Attr::Str(path[1].clone()));
    scheme.input_from_attrs(attrs).map(Some)
}

fn indirect_from_url(url: &ParsedUrl) -> Result<Option<Attrs>> {
    if url.scheme != "flake" {
        return Ok(None);
    }
    let path = url.segments();
    let (mut r#ref, mut rev) = (None, None);
    let sha1 = |s: &str| -> Result<String> {
        Ok(Hash::parse(s, Some(HashAlgo::Sha1))
            .map_err(hash_err)?
            .to_base16())
    };
    match path.len() {
        1 => {}
        2 => {
            if matches_rev_regex(&path[1]) {
                rev = Some(sha1(&path[1])?);
            } else if is_legal_ref_name(&path[1]) {
                r#ref = Some(path[1].clone());
            } else {
                return Err(FlakeRefError::bad_url(format!(
                    "in flake URL '{url}', '{}' is not a commit hash or branch/tag name",
                    path[1]
                )));
            }
        }
        3 => {
            if !is_legal_ref_name(&path[1]) {
                return Err(FlakeRefError::bad_url(format!(
                    "in flake URL '{url}', '{}' is not a branch/tag name",
                    path[1]
                )));
            }
            r#ref = Some(path[1].clone());
            if !matches_rev_regex(&path[2]) {
                return Err(FlakeRefError::bad_url(format!(
                    "in flake URL '{url}', '{}' is not a commit hash",
                    path[2]
                )));
            }
            rev = Some(sha1(&path[2])?);
        }
        _ => {
            return Err(FlakeRefError::bad_url(format!(
                "GitHub URL '{url}' is invalid"
            )))
        }
    }
    if !is_flake_id(&path[0]) {
        return Err(FlakeRefError::bad_url(format!(
            "'{}' is not a valid flake ID",
            path[0]
        )));
    }
    let mut attrs = Attrs::new();
    attrs.insert("type".into(), "indirect".into());
    attrs.insert("id".into(), Attr::Str(path[0].clone()));
    if let Some(v) = rev {
        attrs.insert("rev".into(), Attr::Str(v));
    }
    if let Some(r) = r#ref {
        attrs.insert("ref".into(), Attr::Str(r));
    }
    Ok(Some(attrs))
}

fn path_from_url(url: &ParsedUrl) -> Result<Option<Attrs>> {
    if url.scheme != "path" {
        return Ok(None);
    }
    if let Some(a) = &url.authority {
        if !a.host.is_empty() {
            return Err(FlakeRefError::other(format!(
                "path URL '{url}' should not have an authority ('{a}')"
            )));
        }
    }
    let mut attrs = Attrs::new();
    attrs.insert("type".into(), "path".into());
    attrs.insert("path".into(), Attr::Str(url_path_to_path(&url.path)?));
    path_query_attrs(&url.query, &mut attrs)
        .map_err(|e| FlakeRefError::other(format!("path URL '{url}' has {e}")))?;
    Ok(Some(attrs))
}

// ---------------------------------------------------------------------------------------------
// Inputs

/// A fetcher input: its attributes, and the scheme that understands them (none for an
/// unknown `type`, which can be carried around but not printed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Input {
    pub attrs: Attrs,
    pub scheme: Option<Scheme>,
}

impl Input {
    /// The attribute checks every input gets.
    fn fixup(self) -> Result<Input> {
        get_str(&self.attrs, "type")?;
        maybe_str(&self.attrs, "ref")?;
        maybe_int(&self.attrs, "revCount")?;
        maybe_int(&self.attrs, "lastModified")?;
        Ok(self)
    }

    /// The input a URL denotes (`require_tree`: a plain `http(s)` URL is a tarball, not a
    /// file).
    pub fn from_url(url: &ParsedUrl, require_tree: bool) -> Result<Input> {
        for scheme in ALL_SCHEMES {
            if let Some(attrs) = scheme.input_from_url(url, require_tree)? {
                return Input {
                    attrs,
                    scheme: Some(scheme),
                }
                .fixup();
            }
        }
        if split_scheme(&url.scheme) == (Some("file"), "git") {
            return Err(FlakeRefError::other(format!(
                "input '{url}' is unsupported; did you mean 'git+file' instead of 'file+git'?"
            )));
        }
        Err(FlakeRefError::other(format!(
            "input '{url}' is unsupported"
        )))
    }

    /// The input of an attribute set with a `type`.
    pub fn from_attrs(attrs: Attrs) -> Result<Input> {
        let type_name = maybe_str(&attrs, "type")?.ok_or_else(|| {
            FlakeRefError::other(
                "'type' attribute to specify input scheme is required but not provided",
            )
        })?;
        let Some(scheme) = Scheme::from_name(&type_name) else {
            return Input {
                attrs,
                scheme: None,
            }
            .fixup();
        };
        let allowed = scheme.allowed_attrs();
        for name in attrs.keys() {
            if name != "type" && name != "__final" && !allowed.contains(&name.as_str()) {
                return Err(FlakeRefError::other(format!(
                    "input attribute '{name}' not supported by scheme '{type_name}'"
                )));
            }
        }
        Input {
            attrs: scheme.input_from_attrs(attrs)?,
            scheme: Some(scheme),
        }
        .fixup()
    }

    /// The URL form.
    pub fn to_url(&self) -> Result<ParsedUrl> {
        match self.scheme {
            Some(s) => s.to_url(&self.attrs),
            None => Err(FlakeRefError::other(format!(
                "cannot show unsupported input '{}'",
                attrs_to_json(&self.attrs)
            ))),
        }
    }

    /// The URL form as a string, with extra query parameters (that do not replace the
    /// input's own).
    pub fn to_url_string(&self, extra_query: &BTreeMap<String, String>) -> Result<String> {
        let mut url = self.to_url()?;
        for (k, v) in extra_query {
            url.query.entry(k.clone()).or_insert_with(|| v.clone());
        }
        Ok(url.to_string())
    }
}

// ---------------------------------------------------------------------------------------------
// Flake references

/// A flake reference: an input and the subdirectory (`dir`) of the flake in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlakeRef {
    pub input: Input,
    pub subdir: String,
}

impl FlakeRef {
    /// Parse a flake reference as `builtins.parseFlakeRef` does (no base directory, so a
    /// path must be absolute; a fragment is an error).
    pub fn parse(s: &str) -> Result<FlakeRef> {
        let (r, fragment) = FlakeRef::parse_with_fragment(s)?;
        if !fragment.is_empty() {
            return Err(FlakeRefError::other(format!(
                "unexpected fragment '{fragment}' in flake reference '{s}'"
            )));
        }
        Ok(r)
    }

    /// Parse a flake reference followed by an optional `#fragment` (the fragment is returned
    /// decoded). Without a base directory: paths are not looked up in the file system.
    pub fn parse_with_fragment(s: &str) -> Result<(FlakeRef, String)> {
        if let Some(r) = parse_flake_id_ref(s)? {
            return Ok(r);
        }
        match parse_url(s, true).and_then(from_parsed_url) {
            Ok(r) => Ok(r),
            Err(e) if e.bad_url => parse_path_flake_ref(s),
            Err(e) => Err(e),
        }
    }

    /// The flake reference of an attribute set (`dir` is the subdirectory, the rest the
    /// input).
    pub fn from_attrs(attrs: &Attrs) -> Result<FlakeRef> {
        let subdir = maybe_str(attrs, "dir")?.unwrap_or_default();
        let mut rest = attrs.clone();
        rest.remove("dir");
        Ok(FlakeRef {
            input: Input::from_attrs(rest)?,
            subdir,
        })
    }

    /// The attribute-set form (the input's attributes and a non-empty `dir`).
    pub fn to_attrs(&self) -> Attrs {
        let mut attrs = self.input.attrs.clone();
        if !self.subdir.is_empty() {
            attrs
                .entry("dir".into())
                .or_insert_with(|| Attr::Str(self.subdir.clone()));
        }
        attrs
    }

    /// The URL form, e.g. `github:NixOS/nixpkgs/23.05?dir=lib`. Fails for an input of an
    /// unknown type, or with an attribute that does not parse (`rev`, `narHash`, `url`).
    #[allow(clippy::inherent_to_string)]
    pub fn to_string(&self) -> Result<String> {
        let mut extra = BTreeMap::new();
        if !self.subdir.is_empty() {
            extra.insert("dir".to_string(), self.subdir.clone());
        }
        self.input.to_url_string(&extra)
    }
}

fn from_parsed_url(mut url: ParsedUrl) -> Result<(FlakeRef, String)> {
    let subdir = url.query.remove("dir").unwrap_or_default();
    let fragment = std::mem::take(&mut url.fragment);
    Ok((
        FlakeRef {
            input: Input::from_url(&url, true)?,
            subdir,
        },
        fragment,
    ))
}

/// Is `s` a valid fragment (upstream's `fragmentRegex`)?
fn fragment_ok(s: &str) -> bool {
    chars_ok(s, |c| {
        is_pchar(c) || matches!(c, b'"' | b'/' | b'?' | b' ' | b'^')
    })
}

/// `<flake-id>(/<ref-or-rev>(/<rev>)?)?(#<fragment>)?`, e.g. `nixpkgs/nixos-23.05`.
fn parse_flake_id_ref(s: &str) -> Result<Option<(FlakeRef, String)>> {
    let (main, fragment) = match s.find('#') {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let (id, rest) = match main.find('/') {
        Some(i) => (&main[..i], Some(&main[i + 1..])),
        None => (main, None),
    };
    // `rev | ref(/rev)?` is `ref` as a language, since `ref` allows `/` and hex digits.
    if !is_flake_id(id) || !rest.is_none_or(matches_ref_regex) || !fragment.is_none_or(fragment_ok)
    {
        return Ok(None);
    }
    let url = ParsedUrl::new("flake", main.split('/').map(String::from).collect());
    let fragment = percent_decode(fragment.unwrap_or(""))?;
    Ok(Some((
        FlakeRef {
            input: Input::from_url(&url, true)?,
            subdir: String::new(),
        },
        fragment,
    )))
}

/// `/abs/path(?query)?(#fragment)?` (without a base directory, only absolute paths).
fn parse_path_flake_ref(s: &str) -> Result<(FlakeRef, String)> {
    let path_end = s.find(['?', '#']).unwrap_or(s.len());
    let path = &s[..path_end];
    let rest = &s[path_end..];
    let (query, fragment) = match rest.strip_prefix('?') {
        Some(r) => match r.find('#') {
            Some(i) => (&r[..i], Some(&r[i + 1..])),
            None => (r, None),
        },
        None => ("", rest.strip_prefix('#')),
    };
    if fragment.is_some_and(|f| f.contains(['\n', '\r'])) {
        return Err(FlakeRefError::other(format!("invalid flakeref '{s}'")));
    }
    let query = decode_query(query, true)?;
    let fragment = percent_decode(fragment.unwrap_or(""))?;
    if !path.starts_with('/') {
        return Err(FlakeRefError::bad_url(format!(
            "flake reference '{s}' is not an absolute path"
        )));
    }
    let url = ParsedUrl {
        scheme: "path".into(),
        authority: Some(Authority::empty()),
        path: path_to_url_path(path),
        query,
        fragment,
    };
    from_parsed_url(url)
}

// ---------------------------------------------------------------------------------------------
// The builtins

fn eval_err(e: FlakeRefError) -> EvalError {
    EvalError::new(e.msg)
}

/// `builtins.parseFlakeRef "github:NixOS/nixpkgs/23.05?dir=lib"`: the attribute-set form.
fn parse_flake_ref(ev: &mut Evaluator, a: &[Thunk]) -> EResult<Value> {
    let s = no_context(string(ev, &a[0])?)?;
    let r = FlakeRef::parse(&s).map_err(eval_err)?;
    let out: AttrMap = r
        .to_attrs()
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                Attr::Str(s) => Value::str(s),
                // As upstream, a number past the signed range wraps.
                Attr::Int(n) => Value::Int(n as i64),
                Attr::Bool(b) => Value::Bool(b),
            };
            (crate::rc_str::RcStr::from(k.as_str()), Thunk::value(v))
        })
        .collect();
    Ok(Value::Attrs(Rc::new(out.into())))
}

/// `builtins.flakeRefToString { type = "github"; ... }`: the URL form.
fn flake_ref_to_string(ev: &mut Evaluator, a: &[Thunk]) -> EResult<Value> {
    let set = attrs(ev, &a[0])?;
    let mut out = Attrs::new();
    for (name, t) in set.iter() {
        let v = match force(ev, t)? {
            Value::Int(n) if n < 0 => {
                return err(format!(
                    "negative value given for flake ref attr {name}: {n}"
                ))
            }
            Value::Int(n) => Attr::Int(n as u64),
            Value::Bool(b) => Attr::Bool(b),
            Value::String(s) => Attr::Str(s.s.to_string()),
            other => {
                return err(format!(
                    "flake reference attribute sets may only contain integers, Booleans, and \
                     strings, but attribute '{name}' is {}",
                    other.type_name()
                ))
            }
        };
        out.insert(name.to_string(), v);
    }
    let r = FlakeRef::from_attrs(&out).map_err(eval_err)?;
    Ok(Value::str(r.to_string().map_err(eval_err)?))
}

pub fn table() -> Vec<(&'static str, usize, PrimFn)> {
    vec![
        ("parseFlakeRef", 1, parse_flake_ref),
        ("flakeRefToString", 1, flake_ref_to_string),
    ]
}

// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Attr {
        Attr::Str(v.to_string())
    }

    fn attrs(pairs: &[(&str, Attr)]) -> Attrs {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    fn parse(url: &str) -> FlakeRef {
        FlakeRef::parse(url).unwrap_or_else(|e| panic!("parsing '{url}': {e}"))
    }

    fn parse_err(url: &str) -> String {
        match FlakeRef::parse(url) {
            Ok(r) => panic!("'{url}' parsed as {:?}", r.to_attrs()),
            Err(e) => e.msg,
        }
    }

    fn round_trip(url: &str) -> String {
        parse(url).to_string().unwrap()
    }

    /// Parse, check the attributes and the printed URL, and that the printed URL parses to
    /// the same attributes and prints the same (upstream's `InputFromURLTest`).
    fn check(url: &str, want: &[(&str, Attr)], printed: &str) {
        let r = parse(url);
        assert_eq!(r.to_attrs(), attrs(want), "attributes of '{url}'");
        assert_eq!(r.to_string().unwrap(), printed, "printing '{url}'");
        let again = parse(printed);
        assert_eq!(again.to_attrs(), attrs(want), "attributes of '{printed}'");
        assert_eq!(again.to_string().unwrap(), printed);
        let from_attrs = FlakeRef::from_attrs(&attrs(want)).unwrap();
        assert_eq!(from_attrs.to_string().unwrap(), printed, "from attributes");
    }

    #[test]
    fn manual_example() {
        check(
            "github:NixOS/nixpkgs/23.05?dir=lib",
            &[
                ("dir", s("lib")),
                ("owner", s("NixOS")),
                ("ref", s("23.05")),
                ("repo", s("nixpkgs")),
                ("type", s("github")),
            ],
            "github:NixOS/nixpkgs/23.05?dir=lib",
        );
    }

    #[test]
    fn indirect() {
        check(
            "flake:nixpkgs",
            &[("id", s("nixpkgs")), ("type", s("indirect"))],
            "flake:nixpkgs",
        );
        check(
            "nixpkgs",
            &[("id", s("nixpkgs")), ("type", s("indirect"))],
            "flake:nixpkgs",
        );
        check(
            "flake:nixpkgs/branch",
            &[
                ("id", s("nixpkgs")),
                ("ref", s("branch")),
                ("type", s("indirect")),
            ],
            "flake:nixpkgs/branch",
        );
        check(
            "nixpkgs/branch",
            &[
                ("id", s("nixpkgs")),
                ("ref", s("branch")),
                ("type", s("indirect")),
            ],
            "flake:nixpkgs/branch",
        );
        let rev = "2aae6c35c94fcfb415dbe95f408b9ce91ee846ed";
        let want = [
            ("id", s("nixpkgs")),
            ("ref", s("branch")),
            ("rev", s(rev)),
            ("type", s("indirect")),
        ];
        let printed = format!("flake:nixpkgs/branch/{rev}");
        check(&format!("nixpkgs/branch/{rev}"), &want, &printed);
        check(&format!("nixpkgs/branch///{rev}///"), &want, &printed);
        check(
            "nixpkgs/branch////",
            &[
                ("id", s("nixpkgs")),
                ("ref", s("branch")),
                ("type", s("indirect")),
            ],
            "flake:nixpkgs/branch",
        );
        check(
            "flake:/nixpkgs///branch////",
            &[
                ("id", s("nixpkgs")),
                ("ref", s("branch")),
                ("type", s("indirect")),
            ],
            "flake:nixpkgs/branch",
        );
        // A revision alone; upper-case hex digits are normalised.
        check(
            "nixpkgs/2AAE6C35C94FCFB415DBE95F408B9CE91EE846ED",
            &[
                ("id", s("nixpkgs")),
                ("rev", s(rev)),
                ("type", s("indirect")),
            ],
            &format!("flake:nixpkgs/{rev}"),
        );
        assert_eq!(
            parse_err("nixpkgs/release/23.05"),
            "in flake URL 'flake:nixpkgs/release/23.05', '23.05' is not a commit hash"
        );
        assert_eq!(
            parse_err("nixpkgs/a/b/c"),
            "GitHub URL 'flake:nixpkgs/a/b/c' is invalid"
        );
        // A bad URL in the URL form falls back to the path form.
        assert_eq!(
            parse_err("flake:1nixpkgs"),
            "flake reference 'flake:1nixpkgs' is not an absolute path"
        );
    }

    #[test]
    fn git_archives() {
        check(
            "github://////owner%42/////repo%41///branch%43////",
            &[
                ("owner", s("ownerB")),
                ("ref", s("branchC")),
                ("repo", s("repoA")),
                ("type", s("github")),
            ],
            "github:ownerB/repoA/branchC",
        );
        check(
            "gitlab:/owner%252Fsubgroup/////repo%41///branch%43////",
            &[
                ("owner", s("owner%2Fsubgroup")),
                ("ref", s("branchC")),
                ("repo", s("repoA")),
                ("type", s("gitlab")),
            ],
            "gitlab:owner%252Fsubgroup/repoA/branchC",
        );
        assert_eq!(
            round_trip("github:foo/bar/branch%23"),
            "github:foo/bar/branch%23"
        );
        assert_eq!(
            round_trip("github:foo/bar?ref=branch%23"),
            "github:foo/bar/branch%23"
        );
        let (r, frag) =
            FlakeRef::parse_with_fragment("github:foo/bar?ref=branch#\"name.with.dot\"").unwrap();
        assert_eq!(frag, "\"name.with.dot\"");
        assert_eq!(r.to_string().unwrap(), "github:foo/bar/branch");
        let (r, frag) = FlakeRef::parse_with_fragment("github:foo/bar#\"name.with.dot\"").unwrap();
        assert_eq!(frag, "\"name.with.dot\"");
        assert_eq!(r.to_string().unwrap(), "github:foo/bar");
        // A ref with slashes is one path segment when printed.
        check(
            "github:NixOS/nixpkgs/pull/357207/head",
            &[
                ("owner", s("NixOS")),
                ("ref", s("pull/357207/head")),
                ("repo", s("nixpkgs")),
                ("type", s("github")),
            ],
            "github:NixOS/nixpkgs/pull%2F357207%2Fhead",
        );
        let rev = "a3a3dda3bacf61e8a39258a0ed9c924eeca8e293";
        check(
            &format!("github:NixOS/nixpkgs/{rev}"),
            &[
                ("owner", s("NixOS")),
                ("repo", s("nixpkgs")),
                ("rev", s(rev)),
                ("type", s("github")),
            ],
            &format!("github:NixOS/nixpkgs/{rev}"),
        );
        check(
            "sourcehut:~misterio/nix-colors?host=git.example.org",
            &[
                ("host", s("git.example.org")),
                ("owner", s("~misterio")),
                ("repo", s("nix-colors")),
                ("type", s("sourcehut")),
            ],
            "sourcehut:~misterio/nix-colors?host=git.example.org",
        );
        // narHash is printed in SRI form with padding.
        let zero = format!("sha256-{}=", "A".repeat(43));
        let r = FlakeRef::from_attrs(&attrs(&[
            ("type", s("github")),
            ("owner", s("o")),
            ("repo", s("r")),
            ("narHash", s("")),
        ]))
        .unwrap();
        assert_eq!(
            r.to_string().unwrap(),
            format!("github:o/r?narHash={}", zero.replace('=', "%3D"))
        );
        // Malformed ones: the URL form fails, then the path form.
        for bad in [
            "github:nixos/nixpkgs/nixpkgs.git?ref=aead170c1a49253ebfa5027010dfd89a77b73ca4",
            "github:foo",
            "github:foo/bar?xyzzy=1",
            "github:foo/bar/a..b",
        ] {
            assert_eq!(
                parse_err(bad),
                format!("flake reference '{bad}' is not an absolute path")
            );
        }
        // But a bad hash is not a bad URL.
        assert!(parse_err("github:foo/bar?rev=xyz").contains("xyz"));
    }

    #[test]
    fn git() {
        check(
            "git://somewhere/repo?ref=branch",
            &[
                ("ref", s("branch")),
                ("type", s("git")),
                ("url", s("git://somewhere/repo")),
            ],
            "git://somewhere/repo?ref=branch",
        );
        check(
            "git+https://somewhere.aaaaaaa/repo?ref=branch",
            &[
                ("ref", s("branch")),
                ("type", s("git")),
                ("url", s("https://somewhere.aaaaaaa/repo")),
            ],
            "git+https://somewhere.aaaaaaa/repo?ref=branch",
        );
        check(
            "git+ssh://git@github.com/NixOS/nix?ref=v1.2.3&shallow=1&dir=sub",
            &[
                ("dir", s("sub")),
                ("ref", s("v1.2.3")),
                ("shallow", Attr::Bool(true)),
                ("type", s("git")),
                ("url", s("ssh://git@github.com/NixOS/nix")),
            ],
            "git+ssh://git@github.com/NixOS/nix?dir=sub&ref=v1.2.3&shallow=1",
        );
        // Other parameters stay in the URL; false Booleans are not printed.
        let r = parse("git+file:///home/user/repo?submodules=0&foo=bar&lfs=1");
        assert_eq!(
            r.to_attrs(),
            attrs(&[
                ("lfs", Attr::Bool(true)),
                ("submodules", Attr::Bool(false)),
                ("type", s("git")),
                ("url", s("file:///home/user/repo?foo=bar")),
            ])
        );
        assert_eq!(
            r.to_string().unwrap(),
            "git+file:///home/user/repo?foo=bar&lfs=1"
        );
        // A path or SCP-style location in the attribute form.
        let r = FlakeRef::from_attrs(&attrs(&[("type", s("git")), ("url", s("/a b/c"))])).unwrap();
        assert_eq!(r.to_attrs()["url"], s("file:///a%20b/c"));
        assert_eq!(r.to_string().unwrap(), "git+file:///a%20b/c");
        let r = FlakeRef::from_attrs(&attrs(&[
            ("type", s("git")),
            ("url", s("git@github.com:/NixOS/nix.git")),
            ("rev", s("A3A3DDA3BACF61E8A39258A0ED9C924EECA8E293")),
            ("allRefs", Attr::Bool(true)),
        ]))
        .unwrap();
        assert_eq!(
            r.to_string().unwrap(),
            "git+ssh://git@github.com/NixOS/nix.git?rev=a3a3dda3bacf61e8a39258a0ed9c924eeca8e293"
        );
        assert_eq!(
            parse_err("git+https://x/y?ref=a..b"),
            "flake reference 'git+https://x/y?ref=a..b' is not an absolute path"
        );
        assert!(parse_err("git+https://x/y?verifyCommit=1").contains("verified-fetches"));
        assert_eq!(
            parse_err("file+git:///x"),
            "input 'file+git:///x' is unsupported; did you mean 'git+file' instead of 'file+git'?"
        );
    }

    #[test]
    fn mercurial() {
        check(
            "hg+https://example.org/repo?ref=default&x=1",
            &[
                ("ref", s("default")),
                ("type", s("hg")),
                ("url", s("https://example.org/repo?x=1")),
            ],
            "hg+https://example.org/repo?ref=default&x=1",
        );
    }

    #[test]
    fn tarballs_and_files() {
        check(
            "https://github.com/NixOS/patchelf/archive/master.tar.gz",
            &[
                ("type", s("tarball")),
                (
                    "url",
                    s("https://github.com/NixOS/patchelf/archive/master.tar.gz"),
                ),
            ],
            "https://github.com/NixOS/patchelf/archive/master.tar.gz",
        );
        assert_eq!(
            round_trip("http://localhost:8181/test/+3d.tar.gz"),
            "http://localhost:8181/test/%2B3d.tar.gz"
        );
        // A flake is a tree: a URL without an archive extension is still a tarball.
        let r = parse("https://example.org/x?lastModified=12&narHash=sha256-abc&foo=bar&dir=d");
        assert_eq!(
            r.to_attrs(),
            attrs(&[
                ("dir", s("d")),
                ("lastModified", Attr::Int(12)),
                ("narHash", s("sha256-abc")),
                ("type", s("tarball")),
                ("url", s("https://example.org/x?foo=bar")),
            ])
        );
        let r = parse("file+https://example.org/x.txt");
        assert_eq!(
            r.to_attrs(),
            attrs(&[("type", s("file")), ("url", s("https://example.org/x.txt"))])
        );
        assert_eq!(r.to_string().unwrap(), "https://example.org/x.txt");
        assert_eq!(
            parse("tarball+file:///x/y").to_attrs(),
            attrs(&[("type", s("tarball")), ("url", s("file:///x/y"))])
        );
    }

    #[test]
    fn paths() {
        assert_eq!(round_trip("/foo/bar"), "path:/foo/bar");
        assert_eq!(
            parse("/foo/bar").to_attrs(),
            attrs(&[("path", s("/foo/bar")), ("type", s("path"))])
        );
        let rev = "a".repeat(40);
        assert_eq!(
            round_trip(&format!("/foo/bar?revCount=123&rev={rev}")),
            format!("path:/foo/bar?rev={rev}&revCount=123")
        );
        assert_eq!(
            parse_err("/foo/bar?xyzzy=123"),
            "path URL 'path:///foo/bar?xyzzy=123' has unsupported parameter 'xyzzy'"
        );
        assert_eq!(
            parse_err("/foo/bar#bla"),
            "unexpected fragment 'bla' in flake reference '/foo/bar#bla'"
        );
        let (r, frag) = FlakeRef::parse_with_fragment("/foo/bar?revCount=123#bla").unwrap();
        assert_eq!(r.to_string().unwrap(), "path:/foo/bar?revCount=123");
        assert_eq!(frag, "bla");
        let r = parse("/foo bar/baz?dir=bla space");
        assert_eq!(
            r.to_string().unwrap(),
            "path:/foo%20bar/baz?dir=bla%20space"
        );
        assert_eq!(r.to_attrs()["dir"], s("bla space"));
        assert_eq!(
            parse("path:/foo//bar?lastModified=5").to_attrs(),
            attrs(&[
                ("lastModified", Attr::Int(5)),
                ("path", s("/foo/bar")),
                ("type", s("path"))
            ])
        );
        // Relative paths: only with an explicit `path:`.
        assert_eq!(
            parse("path:./sub/dir").to_attrs(),
            attrs(&[("path", s("./sub/dir")), ("type", s("path"))])
        );
        assert_eq!(round_trip("path:../parent"), "path:../parent");
        for rel in [".", "./foo", "../x", "foo/", ""] {
            assert_eq!(
                parse_err(rel),
                format!("flake reference '{rel}' is not an absolute path")
            );
        }
        assert!(parse_err("path://host/x").contains("should not have an authority"));
        assert!(parse_err("/x?revCount=abc").contains("has invalid parameter 'revCount'"));
    }

    #[test]
    fn unsupported() {
        assert_eq!(parse_err("foo:bar"), "input 'foo:bar' is unsupported");
        let e = FlakeRef::from_attrs(&attrs(&[("type", s("foo")), ("x", Attr::Int(1))]))
            .unwrap()
            .to_string()
            .unwrap_err();
        assert_eq!(
            e.msg,
            "cannot show unsupported input '{\"type\":\"foo\",\"x\":1}'"
        );
        let e = FlakeRef::from_attrs(&attrs(&[("owner", s("o"))])).unwrap_err();
        assert_eq!(
            e.msg,
            "'type' attribute to specify input scheme is required but not provided"
        );
        let e = FlakeRef::from_attrs(&attrs(&[
            ("type", s("github")),
            ("owner", s("o")),
            ("repo", s("r")),
            ("url", s("u")),
        ]))
        .unwrap_err();
        assert_eq!(
            e.msg,
            "input attribute 'url' not supported by scheme 'github'"
        );
        let e =
            FlakeRef::from_attrs(&attrs(&[("type", s("github")), ("owner", s("o"))])).unwrap_err();
        assert_eq!(e.msg, "input attribute 'repo' is missing");
        let e = FlakeRef::from_attrs(&attrs(&[("type", s("path")), ("path", Attr::Int(1))]))
            .unwrap_err();
        assert_eq!(
            e.msg,
            "input attribute 'path' is not a string {\"path\":1,\"type\":\"path\"}"
        );
    }

    #[test]
    fn ref_names() {
        for good in [
            "master",
            "nixos-23.05",
            "23.05",
            "HEAD",
            "refs/heads/main",
            "release/v1",
            "branch#",
            "a@b",
            "FOO_BAR",
            "ünï",
        ] {
            assert!(is_legal_ref_name(good), "{good}");
        }
        for bad in [
            "", "@", "-x", "a..b", ".a", "a.", "a/", "/a", "a//b", "a.lock", "a b", "a~1", "a^",
            "a:b", "a?", "a[", "a*", "a\\b", "a@{1}", "a\x7f",
        ] {
            assert!(!is_legal_ref_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn urls() {
        let u = parse_url("https://user:pw@[::1]:8080/a%2Fb/c?x=1&y#frag%20", true).unwrap();
        assert_eq!(u.authority.as_ref().unwrap().host_type, HostType::IPv6);
        assert_eq!(u.path, vec!["", "a/b", "c"]);
        assert_eq!(
            u.query,
            BTreeMap::from([("x".to_string(), "1".to_string())])
        );
        assert_eq!(u.fragment, "frag ");
        assert_eq!(
            u.to_string(),
            "https://user:pw@[::1]:8080/a%2Fb/c?x=1#frag%20"
        );
        let u = parse_url("http://[fe80::1%25eth0]/x", true).unwrap();
        assert_eq!(u.authority.as_ref().unwrap().host, "fe80::1%eth0");
        assert_eq!(u.to_string(), "http://[fe80::1%25eth0]/x");
        let u = parse_url("http://10.0.0.1:80/x", true).unwrap();
        assert_eq!(u.authority.as_ref().unwrap().host_type, HostType::IPv4);
        assert_eq!(u.to_string(), "http://10.0.0.1:80/x");
        assert!(parse_url("https://h:0/", true).is_err());
        assert!(parse_url("https://h:99999/", true).is_err());
        assert!(parse_url("file://host/x", true).is_err());
        assert_eq!(parse_url("file:", true).unwrap().path, vec!["", ""]);
        assert!(parse_url("no-scheme/x", true)
            .unwrap_err()
            .msg
            .contains("doesn't have a scheme"));
        assert!(parse_url("https://h/a b", true).is_err());
        assert_eq!(
            parse_url("https://h/?q=a b\"#f^", true)
                .unwrap()
                .to_string(),
            "https://h/?q=a%20b%22#f%5E"
        );
        assert!(parse_url("https://h/?q=a b", false).is_err());
        assert!(parse_url("https://h/%zz", true).is_err());
    }

    #[test]
    fn fs_paths() {
        let v = |p: &str| path_to_url_path(p);
        assert_eq!(v("/"), vec!["", ""]);
        assert_eq!(v("/foo/bar"), vec!["", "foo", "bar"]);
        assert_eq!(v("foo"), vec!["foo"]);
        assert_eq!(v(""), vec![""]);
        assert_eq!(v("/foo//bar/"), vec!["", "foo", "bar", "", ""]);
        let p = |segs: &[&str]| {
            url_path_to_path(&segs.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
        };
        assert_eq!(p(&["", ""]), "/");
        assert_eq!(p(&["", "foo", "", "bar"]), "/foo/bar");
        assert_eq!(p(&["", "foo", "bar", ""]), "/foo/bar/");
        assert_eq!(p(&["foo"]), "foo");
        assert_eq!(p(&[""]), "/");
        assert!(url_path_to_path(&["a/b".to_string()]).is_err());
    }
}
