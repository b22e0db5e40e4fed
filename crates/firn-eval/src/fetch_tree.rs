//! `builtins.fetchTree`, as CppNix 2.8 has it (there behind the `flakes` experimental
//! feature; in firn always available), and the input machinery `builtins.fetchGit` shares
//! with it (CppNix's `libfetchers`):
//!
//! - The argument is a set of input attributes with a `type`, or a URL. A URL is read as 2.8
//!   does (a string without `://` is a `file://` URL: `/x/y.tar.gz`, `git+file:///repo?ref=..`,
//!   `path:///x`, `https://../x.tar.gz`); one that 2.8 does not understand is read as the
//!   current Nix manual's URL-like references (`path:/x`, `github:owner/repo/ref`,
//!   `tarball+https://..`, `file+file:///x`, `flake:nixpkgs`), with [`crate::flakeref`].
//! - Types: `path` (a local tree, `lastModified` its newest modification time), `tarball` and
//!   `file` (downloads over `file://`/`http(s)://`, see [`crate::fetch`]; `file` is the current
//!   manual's, which 2.8 lacks), `git` ([`crate::fetch_git`]), `github`/`gitlab`/`sourcehut`
//!   (their HTTP APIs, so they need the network), `hg` ([`crate::fetch_hg`]), `indirect`
//!   (looked up in the user, system and global flake registries).
//! - `Input::fetch`: an input with a `narHash` whose store path is valid is not fetched again
//!   (for `git`, `github`... only with the other attributes that lock it); otherwise it is
//!   fetched, and a `narHash` that does not match is CppNix's error, raised before anything is
//!   added to the store. Fetchers go through CppNix's fetcher cache.
//! - The result is CppNix's `emitTreeAttrs`: `outPath`, `narHash`, and as the input has them
//!   `rev`/`shortRev`, `revCount`, `lastModified`/`lastModifiedDate`, `submodules` (`git`).
//!
//! Not here: pure evaluation (firn's evaluator has no such mode), access tokens for the
//! `github`-like types, substituting a locked input from a binary cache.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::OnceLock;

use firn_format::{Hash, HashAlgo, StorePath};

use crate::builtins::{force, PrimFn};
use crate::error::{err, EResult, EvalError};
use crate::eval::{no_context, Evaluator};
use crate::fetch::{self, attrs_of};
pub(crate) use crate::flakeref::{attrs_to_json, Attr, Attrs};
use crate::value::*;

// ---------------------------------------------------------------------------------------------
// URLs, as CppNix 2.8's `parseURL`.

/// A URL split as CppNix 2.8's `ParsedURL` (components percent-decoded where 2.8 decodes them:
/// the query and the fragment).
#[derive(Clone, Debug)]
pub(crate) struct ParsedUrl {
    /// The whole URL as given.
    pub url: String,
    /// Everything before the query and fragment.
    pub base: String,
    pub scheme: String,
    pub authority: Option<String>,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub fragment: String,
}

fn url_regex() -> &'static regex::Regex {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    RE.get_or_init(|| {
        let pct = r"(?:%[0-9a-fA-F][0-9a-fA-F])";
        let scheme = r"(?:[a-z][a-z0-9+.\-]*)";
        let seg6 = r"[0-9a-fA-F:]+(?:%\w+)?";
        let ipv6 = format!(r"(?:\[{seg6}\]|{seg6})");
        let unreserved = r"(?:[a-zA-Z0-9\-._~])";
        let subdelims = r#"(?:[!$&'"()*+,;=])"#;
        let hostname = format!("(?:(?:{unreserved}|{pct}|{subdelims})*)");
        let host = format!("(?:{ipv6}|{hostname})");
        let user = format!("(?:(?:{unreserved}|{pct}|{subdelims}|:)*)");
        let authority = format!("(?:{user}@)?{host}(?::[0-9]+)?");
        let pchar = format!("(?:{unreserved}|{pct}|{subdelims}|[:@])");
        let query = format!(r#"(?:{pchar}|[/? "])*"#);
        let segment = format!("(?:{pchar}*)");
        let abs_path = format!("(?:(?:/{segment})*/?)");
        let path = format!("(?:{segment}(?:/{segment})*/?)");
        let re = format!(
            r"^(({scheme}):(?:(?://({authority})({abs_path}))|(/?{path})))(?:\?({query}))?(?:#({query}))?$"
        );
        regex::Regex::new(&re).expect("the URL regex is valid")
    })
}

/// `%XX` escapes decoded (2.8's message for a malformed one).
fn percent_decode(s: &str) -> EResult<String> {
    crate::flakeref::percent_decode(s)
        .map_err(|_| EvalError::new(format!("invalid URI parameter '{s}'")))
}

/// CppNix's `percentEncode` (bytes above 0x7f come out sign-extended, as there).
fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for &c in s.as_bytes() {
        if c.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&c) {
            out.push(c as char);
        } else if c >= 0x80 {
            out.push_str(&format!("%ffffff{c:02x}"));
        } else {
            out.push_str(&format!("%{c:02x}"));
        }
    }
    out
}

/// CppNix 2.8's `parseURL`.
pub(crate) fn parse_url(url: &str) -> EResult<ParsedUrl> {
    let Some(m) = url_regex().captures(url) else {
        return err(format!("'{url}' is not a valid URL"));
    };
    let get = |i: usize| m.get(i).map(|x| x.as_str().to_string());
    let scheme = get(2).unwrap_or_default();
    let authority = get(3);
    let mut path = get(4).or_else(|| get(5)).unwrap_or_default();
    let is_file = scheme.contains("file");
    if let Some(a) = &authority {
        if !a.is_empty() && is_file {
            return err(format!(
                "file:// URL '{url}' has unexpected authority '{a}'"
            ));
        }
    }
    if is_file && path.is_empty() {
        path = "/".into();
    }
    let mut query = BTreeMap::new();
    for kv in get(6)
        .unwrap_or_default()
        .split('&')
        .filter(|s| !s.is_empty())
    {
        if let Some((k, v)) = kv.split_once('=') {
            query.entry(k.to_string()).or_insert(percent_decode(v)?);
        }
    }
    Ok(ParsedUrl {
        url: url.to_string(),
        base: get(1).unwrap_or_default(),
        scheme,
        authority,
        path,
        query,
        fragment: percent_decode(&get(7).unwrap_or_default())?,
    })
}

impl ParsedUrl {
    /// A URL made of parts (`url` and `base` are only kept for messages).
    fn new(scheme: &str, path: String, query: BTreeMap<String, String>) -> ParsedUrl {
        ParsedUrl {
            url: String::new(),
            base: String::new(),
            scheme: scheme.to_string(),
            authority: None,
            path,
            query,
            fragment: String::new(),
        }
    }

    /// CppNix's `ParsedURL::to_string`.
    pub(crate) fn to_url_string(&self) -> String {
        let mut s = format!("{}:", self.scheme);
        if let Some(a) = &self.authority {
            s.push_str("//");
            s.push_str(a);
        }
        s.push_str(&self.path);
        if !self.query.is_empty() {
            s.push('?');
            let q: Vec<String> = self
                .query
                .iter()
                .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
                .collect();
            s.push_str(&q.join("&"));
        }
        if !self.fragment.is_empty() {
            s.push('#');
            s.push_str(&percent_encode(&self.fragment));
        }
        s
    }
}

/// CppNix's `fixURIForGit`: scp-style `user@host:path` becomes `ssh://user@host/path`; a
/// string without `://` is a `file://` URL.
pub(crate) fn fix_uri_for_git(uri: &str) -> String {
    static SCP: OnceLock<regex::Regex> = OnceLock::new();
    let scp = SCP.get_or_init(|| regex::Regex::new(r"^([^/]*)@(.*):(.*)$").expect("valid"));
    if !uri.starts_with('/') {
        if let Some(c) = scp.captures(uri) {
            let fixed = format!("{}@{}/{}", &c[1], &c[2], &c[3]);
            return fix_uri(&fixed, "ssh");
        }
    }
    fix_uri(uri, "file")
}

/// CppNix's `fixURI`: a string without `://` gets `default_scheme://`.
pub(crate) fn fix_uri(uri: &str, default_scheme: &str) -> String {
    if uri.contains("://") {
        uri.to_string()
    } else {
        format!("{default_scheme}://{uri}")
    }
}

fn ref_regex() -> &'static regex::Regex {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    RE.get_or_init(|| regex::Regex::new(r"^[a-zA-Z0-9][a-zA-Z0-9_./-]*$").expect("valid"))
}

fn is_flake_id(s: &str) -> bool {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    RE.get_or_init(|| regex::Regex::new(r"^[a-zA-Z][a-zA-Z0-9_-]*$").expect("valid"))
        .is_match(s)
}

// ---------------------------------------------------------------------------------------------
// Inputs

/// The input schemes of CppNix 2.8, and `file` of the current manual.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scheme {
    Path,
    File,
    Tarball,
    Git,
    GitHub,
    GitLab,
    SourceHut,
    Indirect,
    Mercurial,
}

impl Scheme {
    fn from_type(t: &str) -> Option<Scheme> {
        Some(match t {
            "path" => Scheme::Path,
            "file" => Scheme::File,
            "tarball" => Scheme::Tarball,
            "git" => Scheme::Git,
            "github" => Scheme::GitHub,
            "gitlab" => Scheme::GitLab,
            "sourcehut" => Scheme::SourceHut,
            "indirect" => Scheme::Indirect,
            "hg" => Scheme::Mercurial,
            _ => return None,
        })
    }
}

/// A fetcher input: its attributes and the scheme of its `type` (none for an unknown type,
/// which is an error only when fetching, as in CppNix).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Input {
    pub attrs: Attrs,
    pub scheme: Option<Scheme>,
}

impl Input {
    /// The attributes as JSON, as CppNix prints them in messages.
    pub(crate) fn json(&self) -> String {
        attrs_to_json(&self.attrs)
    }

    pub(crate) fn str(&self, name: &str) -> EResult<Option<String>> {
        match self.attrs.get(name) {
            None => Ok(None),
            Some(Attr::Str(s)) => Ok(Some(s.clone())),
            Some(_) => err(format!(
                "input attribute '{name}' is not a string {}",
                self.json()
            )),
        }
    }

    pub(crate) fn req_str(&self, name: &str) -> EResult<String> {
        self.str(name)?
            .ok_or_else(|| EvalError::new(format!("input attribute '{name}' is missing")))
    }

    pub(crate) fn int(&self, name: &str) -> EResult<Option<u64>> {
        match self.attrs.get(name) {
            None => Ok(None),
            Some(Attr::Int(i)) => Ok(Some(*i)),
            Some(_) => err(format!("input attribute '{name}' is not an integer")),
        }
    }

    pub(crate) fn bool(&self, name: &str) -> EResult<Option<bool>> {
        match self.attrs.get(name) {
            None => Ok(None),
            Some(Attr::Bool(b)) => Ok(Some(*b)),
            Some(_) => err(format!("input attribute '{name}' is not a Boolean")),
        }
    }

    pub(crate) fn url(&self) -> EResult<String> {
        self.req_str("url")
    }

    /// The store path name (`source` unless a `name` is given).
    pub(crate) fn name(&self) -> EResult<String> {
        Ok(self.str("name")?.unwrap_or_else(|| "source".into()))
    }

    pub(crate) fn git_ref(&self) -> EResult<Option<String>> {
        self.str("ref")
    }

    /// `rev`: a hash with its algorithm named, or SHA-1 in any encoding.
    pub(crate) fn rev(&self) -> EResult<Option<Hash>> {
        let Some(s) = self.str("rev")? else {
            return Ok(None);
        };
        let prefixed = (s.contains(':') || s.contains('-'))
            .then(|| Hash::parse(&s, None).ok())
            .flatten();
        match prefixed {
            Some(h) => Ok(Some(h)),
            None => Hash::parse(&s, Some(HashAlgo::Sha1))
                .map(Some)
                .map_err(|e| EvalError::new(e.to_string())),
        }
    }

    pub(crate) fn nar_hash(&self) -> EResult<Option<Hash>> {
        let Some(s) = self.str("narHash")? else {
            return Ok(None);
        };
        let h = if s.is_empty() {
            Hash::from_bytes(HashAlgo::Sha256, &[0; 32]).expect("32 bytes")
        } else {
            Hash::parse_sri(&s).map_err(|e| EvalError::new(e.to_string()))?
        };
        if h.algo() != HashAlgo::Sha256 {
            return err("narHash must use SHA-256");
        }
        Ok(Some(h))
    }

    pub(crate) fn set(&mut self, name: &str, v: Attr) {
        self.attrs.insert(name.to_string(), v);
    }

    /// CppNix's `Input::toURL`.
    pub(crate) fn to_url(&self) -> EResult<ParsedUrl> {
        let Some(scheme) = self.scheme else {
            return err(format!("cannot show unsupported input '{}'", self.json()));
        };
        Ok(match scheme {
            Scheme::Path => {
                let mut query = BTreeMap::new();
                for (k, v) in &self.attrs {
                    if k == "path" || k == "type" {
                        continue;
                    }
                    let v = match v {
                        Attr::Str(s) => s.clone(),
                        Attr::Int(n) => n.to_string(),
                        Attr::Bool(b) => if *b { "1" } else { "0" }.to_string(),
                    };
                    query.insert(k.clone(), v);
                }
                ParsedUrl::new("path", self.req_str("path")?, query)
            }
            Scheme::File | Scheme::Tarball => {
                let mut url = parse_url(&self.url()?)?;
                if let Some(h) = self.nar_hash()? {
                    url.query.insert("narHash".into(), h.to_sri());
                }
                url
            }
            Scheme::Git | Scheme::Mercurial => {
                let mut url = parse_url(&self.url()?)?;
                if scheme == Scheme::Mercurial {
                    url.scheme = format!("hg+{}", url.scheme);
                } else if url.scheme != "git" {
                    url.scheme = format!("git+{}", url.scheme);
                }
                if let Some(rev) = self.rev()? {
                    url.query.insert("rev".into(), rev.to_base16());
                }
                if let Some(r) = self.git_ref()? {
                    url.query.insert("ref".into(), r);
                }
                if scheme == Scheme::Git && self.bool("shallow")? == Some(true) {
                    url.query.insert("shallow".into(), "1".into());
                }
                url
            }
            Scheme::GitHub | Scheme::GitLab | Scheme::SourceHut | Scheme::Indirect => {
                let (ty, mut path) = match scheme {
                    Scheme::Indirect => ("flake", self.req_str("id")?),
                    s => {
                        let ty = match s {
                            Scheme::GitHub => "github",
                            Scheme::GitLab => "gitlab",
                            _ => "sourcehut",
                        };
                        let owner = self.req_str("owner")?;
                        (ty, format!("{owner}/{}", self.req_str("repo")?))
                    }
                };
                if let Some(r) = self.git_ref()? {
                    path.push('/');
                    path.push_str(&r);
                }
                if let Some(rev) = self.rev()? {
                    path.push('/');
                    path.push_str(&rev.to_base16());
                }
                ParsedUrl::new(ty, path, BTreeMap::new())
            }
        })
    }

    /// The input as a URL (CppNix's `Input::to_string`).
    pub(crate) fn to_url_string(&self) -> EResult<String> {
        Ok(self.to_url()?.to_url_string())
    }

    /// For messages: the URL, or the attributes when there is none.
    pub(crate) fn show(&self) -> String {
        self.to_url_string().unwrap_or_else(|_| self.json())
    }

    /// CppNix's `hasAllInfo`: enough is known to compute the store path.
    fn has_all_info(&self) -> EResult<bool> {
        if self.nar_hash()?.is_none() {
            return Ok(false);
        }
        Ok(match self.scheme {
            None | Some(Scheme::Indirect) | Some(Scheme::File) => false,
            Some(Scheme::Path | Scheme::Tarball) => true,
            Some(Scheme::Git) => {
                let shallow = self.bool("shallow")?.unwrap_or(false);
                self.int("lastModified")?.is_some()
                    && (shallow || self.git_ref()?.is_none() || self.int("revCount")?.is_some())
            }
            Some(Scheme::GitHub | Scheme::GitLab | Scheme::SourceHut) => {
                self.rev()?.is_some() && self.int("lastModified")?.is_some()
            }
            Some(Scheme::Mercurial) => {
                self.git_ref()?.as_deref() == Some("default") || self.int("revCount")?.is_some()
            }
        })
    }
}

/// `unsupported ... input attribute` unless every attribute is in `allowed`.
fn check_allowed(attrs: &Attrs, allowed: &[&str], what: &str) -> EResult<()> {
    match attrs
        .keys()
        .find(|k| *k != "type" && !allowed.contains(&k.as_str()))
    {
        Some(k) => err(format!("unsupported {what}input attribute '{k}'")),
        None => Ok(()),
    }
}

/// CppNix 2.8's `Input::fromAttrs`: the scheme's checks, then the common ones.
pub(crate) fn input_from_attrs(attrs: Attrs) -> EResult<Input> {
    let probe = Input {
        attrs,
        scheme: None,
    };
    let scheme = probe.str("type")?.as_deref().and_then(Scheme::from_type);
    let input = Input {
        attrs: probe.attrs,
        scheme,
    };
    match scheme {
        None => {}
        Some(Scheme::Tarball) => {
            check_allowed(&input.attrs, &["url", "narHash", "name"], "tarball ")?
        }
        Some(Scheme::File) => check_allowed(&input.attrs, &["url", "narHash", "name"], "file ")?,
        Some(Scheme::Path) => {
            input.req_str("path")?;
            check_allowed(
                &input.attrs,
                &["rev", "revCount", "lastModified", "narHash", "path"],
                "path ",
            )?;
        }
        Some(Scheme::Git) => crate::fetch_git::check_attrs(&input)?,
        Some(Scheme::GitHub | Scheme::GitLab | Scheme::SourceHut) => {
            check_allowed(
                &input.attrs,
                &[
                    "owner",
                    "repo",
                    "ref",
                    "rev",
                    "narHash",
                    "lastModified",
                    "host",
                ],
                "",
            )?;
            input.req_str("owner")?;
            input.req_str("repo")?;
        }
        Some(Scheme::Indirect) => {
            check_allowed(&input.attrs, &["id", "ref", "rev", "narHash"], "indirect ")?;
            let id = input.req_str("id")?;
            if !is_flake_id(&id) {
                return err(format!("'{id}' is not a valid flake ID"));
            }
        }
        Some(Scheme::Mercurial) => {
            check_allowed(
                &input.attrs,
                &["url", "ref", "rev", "revCount", "narHash", "name"],
                "Mercurial ",
            )?;
            parse_url(&input.url()?)?;
            if let Some(r) = input.git_ref()? {
                if !ref_regex().is_match(&r) {
                    return err(format!("invalid Mercurial branch/tag name '{r}'"));
                }
            }
        }
    }
    // `fixupInput`.
    input.req_str("type")?;
    input.git_ref()?;
    input.rev()?;
    input.int("revCount")?;
    input.int("lastModified")?;
    input.nar_hash()?;
    Ok(input)
}

fn has_tarball_extension(path: &str) -> bool {
    [
        ".zip", ".tar", ".tgz", ".tar.gz", ".tar.xz", ".tar.bz2", ".tar.zst",
    ]
    .iter()
    .any(|ext| path.ends_with(ext))
}

/// CppNix 2.8's `Input::fromURL` (its `tarball`, `git`, `path`, `flake` and `hg+` URLs).
fn input_from_url_28(url: &str) -> EResult<Input> {
    let u = parse_url(url)?;
    let mut attrs = Attrs::new();
    match u.scheme.as_str() {
        "file" | "http" | "https" if has_tarball_extension(&u.path) => {
            attrs.insert("type".into(), "tarball".into());
            attrs.insert("url".into(), Attr::Str(u.to_url_string()));
            if let Some(h) = u.query.get("narHash") {
                attrs.insert("narHash".into(), Attr::Str(h.clone()));
            }
        }
        "git" | "git+http" | "git+https" | "git+ssh" | "git+file" | "hg+http" | "hg+https"
        | "hg+ssh" | "hg+file" => {
            let git = u.scheme.starts_with("git");
            let mut u2 = u.clone();
            if let Some(t) = u2.scheme.split_once('+').map(|(_, t)| t.to_string()) {
                u2.scheme = t;
            }
            u2.query.clear();
            attrs.insert("type".into(), if git { "git" } else { "hg" }.into());
            for (k, v) in &u.query {
                match k.as_str() {
                    "rev" | "ref" => {
                        attrs.insert(k.clone(), Attr::Str(v.clone()));
                    }
                    "shallow" | "submodules" if git => {
                        attrs.insert(k.clone(), Attr::Bool(v == "1"));
                    }
                    _ => {
                        u2.query.insert(k.clone(), v.clone());
                    }
                }
            }
            attrs.insert("url".into(), Attr::Str(u2.to_url_string()));
        }
        "path" => {
            if let Some(a) = u.authority.as_deref().filter(|a| !a.is_empty()) {
                return err(format!(
                    "path URL '{}' should not have an authority ('{a}')",
                    u.url
                ));
            }
            attrs.insert("type".into(), "path".into());
            attrs.insert("path".into(), Attr::Str(u.path.clone()));
            crate::flakeref::path_query_attrs(&u.query, &mut attrs)
                .map_err(|e| EvalError::new(format!("path URL '{}' has {e}", u.to_url_string())))?;
        }
        "flake" => {
            let parts: Vec<&str> = u.path.split('/').filter(|s| !s.is_empty()).collect();
            let rev_re = |s: &str| s.len() == 40 && s.bytes().all(|c| c.is_ascii_hexdigit());
            let sha1 = |s: &str| {
                Hash::parse(s, Some(HashAlgo::Sha1)).map_err(|e| EvalError::new(e.to_string()))
            };
            let (mut r#ref, mut rev) = (None, None);
            match parts.as_slice() {
                [_] => {}
                [_, x] if rev_re(x) => rev = Some(sha1(x)?),
                [_, x] if ref_regex().is_match(x) => r#ref = Some(x.to_string()),
                [_, x] => {
                    return err(format!(
                        "in flake URL '{}', '{x}' is not a commit hash or branch/tag name",
                        u.url
                    ))
                }
                [_, x, y] => {
                    if !ref_regex().is_match(x) {
                        return err(format!(
                            "in flake URL '{}', '{x}' is not a branch/tag name",
                            u.url
                        ));
                    }
                    r#ref = Some(x.to_string());
                    if !rev_re(y) {
                        return err(format!(
                            "in flake URL '{}', '{y}' is not a commit hash",
                            u.url
                        ));
                    }
                    rev = Some(sha1(y)?);
                }
                _ => return err(format!("GitHub URL '{}' is invalid", u.url)),
            }
            attrs.insert("type".into(), "indirect".into());
            attrs.insert("id".into(), Attr::Str(parts[0].to_string()));
            if let Some(r) = rev {
                attrs.insert("rev".into(), Attr::Str(r.to_base16()));
            }
            if let Some(r) = r#ref {
                attrs.insert("ref".into(), Attr::Str(r));
            }
        }
        _ => return err(format!("input '{url}' is unsupported")),
    }
    input_from_attrs(attrs)
}

/// A URL argument: as CppNix 2.8 reads it (after `fixURI`), or else as a URL-like reference
/// of the current manual.
pub(crate) fn input_from_url(s: &str) -> EResult<Input> {
    // `file:` with a relative path (2.8 would read `file:.` as a host): current Nix's
    // complaint about a tarball there, which it makes when fetching the input.
    if let Some(path) = s.strip_prefix("file:").filter(|p| !p.starts_with('/')) {
        let path = path.split(['?', '#']).next().unwrap_or_default();
        if has_tarball_extension(path) {
            let mut e = EvalError::new(format!(
                "tarball '{s}' must use an absolute path. The 'file' scheme does not support relative paths."
            ));
            e.trace.push(format!("while fetching the input '{s}'"));
            return Err(e);
        }
    }
    let e28 = match input_from_url_28(&fix_uri(s, "file")) {
        Ok(i) => return Ok(i),
        Err(e) => e,
    };
    let Ok(url) = crate::flakeref::parse_url(s, false) else {
        return Err(e28);
    };
    match crate::flakeref::Input::from_url(&url, true) {
        Ok(i) => input_from_attrs(i.attrs),
        // 2.8 read it as a URL: its complaint is the one to show.
        Err(_) if s.contains("://") => Err(e28),
        Err(e) => Err(EvalError::new(e.msg)),
    }
}

// ---------------------------------------------------------------------------------------------
// Flake registries (for `indirect` inputs)

struct RegistryEntry {
    from: Input,
    to: Input,
    exact: bool,
}

fn config_home(ev: &Evaluator) -> String {
    if let Some(c) = std::env::var_os("XDG_CONFIG_HOME") {
        return c.to_string_lossy().into_owned();
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| ev.home.clone());
    format!("{home}/.config")
}

/// CppNix's `Registry::read` (a file that is missing is empty; one that cannot be read is
/// reported and what was read of it kept).
fn read_registry(path: &str) -> Vec<RegistryEntry> {
    let mut out = Vec::new();
    let Ok(text) = std::fs::read_to_string(path) else {
        return out;
    };
    let json: serde_json::Value = match serde_json::from_str(&text) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("warning: cannot parse flake registry '{path}': {e}");
            return out;
        }
    };
    let version = json.get("version").and_then(|v| v.as_u64()).unwrap_or(0);
    if version != 2 {
        eprintln!(
            "warning: cannot read flake registry '{path}': flake registry '{path}' has unsupported version {version}"
        );
        return out;
    }
    let empty = Vec::new();
    let flakes = json
        .get("flakes")
        .and_then(|f| f.as_array())
        .unwrap_or(&empty);
    for f in flakes {
        let attrs = |k: &str| {
            f.get(k)
                .and_then(|v| fetch::attrs_from_json(&v.to_string()))
                .ok_or_else(|| EvalError::new("unsupported input attribute type in lock file"))
        };
        let entry = (|| -> EResult<RegistryEntry> {
            let mut to = attrs("to")?;
            to.remove("dir");
            Ok(RegistryEntry {
                from: input_from_attrs(attrs("from")?)?,
                to: input_from_attrs(to)?,
                exact: f.get("exact").and_then(|e| e.as_bool()).unwrap_or(false),
            })
        })();
        match entry {
            Ok(e) => out.push(e),
            Err(e) => {
                eprintln!("warning: cannot read flake registry '{path}': {}", e.msg);
                break;
            }
        }
    }
    out
}

/// CppNix's `applyOverrides`.
fn apply_overrides(input: &Input, r#ref: Option<String>, rev: Option<Hash>) -> EResult<Input> {
    let mut out = input.clone();
    match input.scheme {
        None => {}
        Some(Scheme::Git | Scheme::Mercurial | Scheme::Indirect) => {
            if let Some(rev) = &rev {
                out.set("rev", Attr::Str(rev.to_base16()));
            }
            if let Some(r) = r#ref {
                out.set("ref", Attr::Str(r));
            }
            if input.scheme != Some(Scheme::Indirect)
                && out.git_ref()?.is_none()
                && out.rev()?.is_some()
            {
                let what = if input.scheme == Some(Scheme::Git) {
                    "Git"
                } else {
                    "Mercurial"
                };
                return err(format!(
                    "{what} input '{}' has a commit hash but no branch/tag name",
                    out.show()
                ));
            }
        }
        Some(Scheme::GitHub | Scheme::GitLab | Scheme::SourceHut) => {
            if let (Some(rev), Some(r)) = (&rev, &r#ref) {
                return err(format!(
                    "cannot apply both a commit hash ({}) and a branch/tag name ('{r}') to input '{}'",
                    rev.to_base16(),
                    input.show()
                ));
            }
            if let Some(rev) = rev {
                out.set("rev", Attr::Str(rev.to_base16()));
                out.attrs.remove("ref");
            }
            if let Some(r) = r#ref {
                out.set("ref", Attr::Str(r));
                out.attrs.remove("rev");
            }
        }
        Some(Scheme::Path | Scheme::File | Scheme::Tarball) => {
            if let Some(r) = r#ref {
                return err(format!(
                    "don't know how to set branch/tag name of input '{}' to '{r}'",
                    input.show()
                ));
            }
            if let Some(rev) = rev {
                return err(format!(
                    "don't know how to set revision of input '{}' to '{}'",
                    input.show(),
                    rev.to_base16()
                ));
            }
        }
    }
    Ok(out)
}

/// CppNix's `lookupInRegistries`: the command line's entries (`Evaluator::flag_registry`),
/// the user registry, the system one (`$NIX_CONF_DIR`), and the global one
/// (`Evaluator::flake_registry`: read or downloaded, and only when the others do not have
/// the input).
pub(crate) fn lookup_in_registries(ev: &mut Evaluator, input: &Input) -> EResult<Input> {
    let flags = ev
        .flag_registry
        .iter()
        .map(|(from, to)| RegistryEntry {
            from: from.clone(),
            to: to.clone(),
            exact: false,
        })
        .collect();
    let mut regs = vec![
        flags,
        read_registry(&format!("{}/nix/registry.json", config_home(ev))),
        read_registry(&format!(
            "{}/registry.json",
            std::env::var("NIX_CONF_DIR").unwrap_or_else(|_| "/etc/nix".into())
        )),
    ];
    let mut have_global = false;
    let mut input = input.clone();
    let mut n = 0;
    'restart: loop {
        n += 1;
        if n > 100 {
            return err(format!(
                "cycle detected in flake registry for '{}'",
                input.show()
            ));
        }
        let mut i = 0;
        loop {
            if i == regs.len() {
                if have_global || input.scheme != Some(Scheme::Indirect) {
                    break 'restart;
                }
                have_global = true;
                // The `flake-registry` setting: a file, a URL to download, or "" for none.
                let global = ev.flake_registry.clone();
                if global.starts_with('/') {
                    regs.push(read_registry(&global));
                } else if !global.is_empty() {
                    let f = fetch::download_file(ev, &global, "flake-registry.json", false)?;
                    let real = ev.store.real_path(&ev.store.dir.display(&f.path));
                    regs.push(read_registry(&real.to_string_lossy()));
                }
                continue;
            }
            for entry in &regs[i] {
                let matched = if entry.exact {
                    entry.from == input
                } else {
                    let mut bare = input.clone();
                    bare.attrs.remove("ref");
                    bare.attrs.remove("rev");
                    entry.from == input || entry.from == bare
                };
                if !matched {
                    continue;
                }
                input = if entry.exact {
                    entry.to.clone()
                } else {
                    let r#ref = match entry.from.git_ref()? {
                        None => input.git_ref()?,
                        Some(_) => None,
                    };
                    let rev = match entry.from.rev()? {
                        None => input.rev()?,
                        Some(_) => None,
                    };
                    apply_overrides(&entry.to, r#ref, rev)?
                };
                continue 'restart;
            }
            i += 1;
        }
    }
    if input.scheme == Some(Scheme::Indirect) {
        return err(format!(
            "cannot find flake '{}' in the flake registries",
            input.show()
        ));
    }
    Ok(input)
}

// ---------------------------------------------------------------------------------------------
// Fetching

/// What the generic fetch expects of a scheme's result: the `narHash` given, checked before
/// anything is added, and the error a mismatch is (given the path the tree would have had and
/// its hash).
pub(crate) struct Check<'a> {
    pub expected: Option<&'a Hash>,
    pub mismatch: &'a dyn Fn(&Evaluator, &StorePath, &Hash) -> EvalError,
}

/// A scheme's result: the store path, its NAR hash, and the input completed (locked).
pub(crate) struct Fetched {
    pub path: StorePath,
    pub nar_hash: Hash,
    pub input: Input,
}

/// CppNix's NAR hash mismatch error for `input`.
fn nar_mismatch(
    ev: &Evaluator,
    input: &Input,
    p: &StorePath,
    want: &Hash,
    got: &Hash,
) -> EvalError {
    let shown = ev.store.dir.display(p);
    EvalError::new(format!(
        "NAR hash mismatch in input '{}' ({}), expected '{}', got '{}'",
        input.show(),
        ev.store.real_path(&shown).display(),
        want.to_sri(),
        got.to_sri()
    ))
}

/// The newest modification time in a tree (CppNix's `dumpPathAndGetMtime`; links not
/// followed).
fn newest_mtime(p: &std::path::Path) -> EResult<i64> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(p).map_err(|e| {
        EvalError::new(format!(
            "getting status of '{}': {}",
            p.display(),
            fetch::io_msg(&e)
        ))
    })?;
    let mut t = m.mtime();
    if m.is_dir() {
        let entries = std::fs::read_dir(p).map_err(|e| {
            EvalError::new(format!(
                "opening directory '{}': {}",
                p.display(),
                fetch::io_msg(&e)
            ))
        })?;
        for e in entries {
            let e = e.map_err(|e| {
                EvalError::new(format!(
                    "reading directory '{}': {}",
                    p.display(),
                    fetch::io_msg(&e)
                ))
            })?;
            t = t.max(newest_mtime(&e.path())?);
        }
    }
    Ok(t)
}

/// `PathInputScheme::fetch`.
fn fetch_path(ev: &mut Evaluator, input: &Input, check: &Check) -> EResult<Fetched> {
    let mut input = input.clone();
    let path = input.req_str("path")?;
    if !path.starts_with('/') {
        return err(format!(
            "cannot fetch input '{}' because it uses a relative path",
            input.show()
        ));
    }
    // A store path named `source` that is valid is used as it is.
    let store_path = ev.store.dir.parse(&path).ok();
    if let (Some(sp), Some(store)) = (&store_path, ev.store.backend()) {
        store
            .add_temp_root(sp)
            .map_err(|e| EvalError::new(format!("adding a temporary root for '{path}': {e}")))?;
    }
    let (p, nar_hash, mtime) = match store_path {
        Some(sp) if sp.name() == "source" && ev.store.is_valid(&sp)? => {
            let h = fetch::nar_hash_of(ev, &sp, None)?;
            (sp, h, 0)
        }
        _ => {
            let src = std::path::Path::new(&path);
            let mtime = newest_mtime(src)?;
            let (p, h) =
                fetch::add_tree_checked(ev, "source", src, None, check.expected, check.mismatch)?;
            (p, h, mtime)
        }
    };
    input.set("lastModified", Attr::Int(mtime as u64));
    Ok(Fetched {
        path: p,
        nar_hash,
        input,
    })
}

/// The `file` scheme of the current manual: the download, flat.
fn fetch_file(ev: &mut Evaluator, input: &Input, check: &Check) -> EResult<Fetched> {
    let url = input.url()?;
    let name = input.name()?;
    let (f, nar_hash) = fetch::download_file_checked(
        ev,
        &url,
        &name,
        check.expected.is_some(),
        check.expected,
        check.mismatch,
    )?;
    Ok(Fetched {
        path: f.path,
        nar_hash,
        input: input.clone(),
    })
}

/// `TarballInputScheme::fetch`.
fn fetch_tarball(ev: &mut Evaluator, input: &Input, check: &Check) -> EResult<Fetched> {
    let t = fetch::download_tarball(
        ev,
        &input.url()?,
        &input.name()?,
        false,
        check.expected,
        check.mismatch,
    )?;
    Ok(Fetched {
        path: t.path,
        nar_hash: t.nar_hash,
        input: input.clone(),
    })
}

/// The contents of a store path made by [`fetch::download_file`].
fn read_download(ev: &mut Evaluator, url: &str) -> EResult<String> {
    let f = fetch::download_file(ev, url, "source", false)?;
    let real = ev.store.real_path(&ev.store.dir.display(&f.path));
    std::fs::read_to_string(&real)
        .map_err(|e| EvalError::new(format!("reading '{}': {e}", real.display())))
}

fn sha1_of(s: &str) -> EResult<Hash> {
    Hash::parse(s, Some(HashAlgo::Sha1)).map_err(|e| EvalError::new(e.to_string()))
}

/// `getRevFromRef` of the `github`, `gitlab` and `sourcehut` schemes.
fn rev_from_ref(ev: &mut Evaluator, scheme: Scheme, input: &Input, r#ref: &str) -> EResult<Hash> {
    let owner = input.req_str("owner")?;
    let repo = input.req_str("repo")?;
    let host = input.str("host")?;
    let bad_json = |url: &str| EvalError::new(format!("unexpected answer from '{url}'"));
    match scheme {
        Scheme::GitHub => {
            let host = host.unwrap_or_else(|| "github.com".into());
            let url = format!("https://api.{host}/repos/{owner}/{repo}/commits/{}", r#ref);
            let json: serde_json::Value =
                serde_json::from_str(&read_download(ev, &url)?).map_err(|_| bad_json(&url))?;
            sha1_of(json["sha"].as_str().ok_or_else(|| bad_json(&url))?)
        }
        Scheme::GitLab => {
            let host = host.unwrap_or_else(|| "gitlab.com".into());
            let url = format!(
                "https://{host}/api/v4/projects/{owner}%2F{repo}/repository/commits?ref_name={}",
                r#ref
            );
            let json: serde_json::Value =
                serde_json::from_str(&read_download(ev, &url)?).map_err(|_| bad_json(&url))?;
            sha1_of(json[0]["id"].as_str().ok_or_else(|| bad_json(&url))?)
        }
        _ => {
            let host = host.unwrap_or_else(|| "git.sr.ht".into());
            let base = format!("https://{host}/{owner}/{repo}");
            let ref_uri = if r#ref == "HEAD" {
                let head = read_download(ev, &format!("{base}/HEAD"))?;
                let line = head.lines().next().unwrap_or("");
                match line.find("ref: ") {
                    Some(i) => line[i + 5..].to_string(),
                    None => {
                        return err(format!(
                            "in '{}', couldn't resolve HEAD ref '{}'",
                            input.show(),
                            r#ref
                        ))
                    }
                }
            } else {
                format!("refs/(heads|tags)/{}", r#ref)
            };
            let pattern = regex::Regex::new(&format!("{ref_uri}$"))
                .map_err(|e| EvalError::new(format!("invalid ref '{}': {e}", r#ref)))?;
            let refs = read_download(ev, &format!("{base}/info/refs"))?;
            let id = refs
                .lines()
                .find(|l| pattern.is_match(l))
                .map(|l| l.split('\t').next().unwrap_or("").to_string());
            match id {
                Some(id) if !id.is_empty() => sha1_of(&id),
                _ => err(format!(
                    "in '{}', couldn't find ref '{}'",
                    input.show(),
                    r#ref
                )),
            }
        }
    }
}

/// `GitArchiveInputScheme::fetch`: the commit's tarball from the forge's HTTP API.
fn fetch_git_archive(
    ev: &mut Evaluator,
    scheme: Scheme,
    input: &Input,
    check: &Check,
) -> EResult<Fetched> {
    let mut input = input.clone();
    let r#ref = input.git_ref()?.unwrap_or_else(|| "HEAD".into());
    let rev = match input.rev()? {
        Some(r) => r,
        None => rev_from_ref(ev, scheme, &input, &r#ref)?,
    };
    input.attrs.remove("ref");
    input.set("rev", Attr::Str(rev.to_base16()));
    let locked = attrs_of([
        ("type", "git-tarball".into()),
        ("rev", rev.to_base16().into()),
    ]);
    if let Some((info, path)) = fetch::cache_lookup(ev, &locked)? {
        if let Some(Attr::Int(t)) = info.get("lastModified") {
            input.set("lastModified", Attr::Int(*t));
            let nar_hash = fetch::nar_hash_of(ev, &path, None)?;
            return Ok(Fetched {
                path,
                nar_hash,
                input,
            });
        }
    }
    let owner = input.req_str("owner")?;
    let repo = input.req_str("repo")?;
    let host = input.str("host")?;
    let hex = rev.to_base16();
    let url = match scheme {
        Scheme::GitHub => format!(
            "https://api.{}/repos/{owner}/{repo}/tarball/{hex}",
            host.unwrap_or_else(|| "github.com".into())
        ),
        Scheme::GitLab => format!(
            "https://{}/api/v4/projects/{owner}%2F{repo}/repository/archive.tar.gz?sha={hex}",
            host.unwrap_or_else(|| "gitlab.com".into())
        ),
        _ => format!(
            "https://{}/{owner}/{repo}/archive/{hex}.tar.gz",
            host.unwrap_or_else(|| "git.sr.ht".into())
        ),
    };
    let t = fetch::download_tarball(
        ev,
        &url,
        &input.name()?,
        true,
        check.expected,
        check.mismatch,
    )?;
    input.set("lastModified", Attr::Int(t.last_modified));
    let info = attrs_of([
        ("rev", hex.into()),
        ("lastModified", Attr::Int(t.last_modified)),
    ]);
    fetch::cache_add(ev, &locked, &info, &t.path, true);
    Ok(Fetched {
        path: t.path,
        nar_hash: t.nar_hash,
        input,
    })
}

fn fetch_scheme(
    ev: &mut Evaluator,
    scheme: Scheme,
    input: &Input,
    check: &Check,
) -> EResult<Fetched> {
    match scheme {
        Scheme::Path => fetch_path(ev, input, check),
        Scheme::File => fetch_file(ev, input, check),
        Scheme::Tarball => fetch_tarball(ev, input, check),
        Scheme::Git => crate::fetch_git::fetch_scheme(ev, input, check),
        Scheme::Mercurial => crate::fetch_hg::fetch_scheme(ev, input, check),
        Scheme::GitHub | Scheme::GitLab | Scheme::SourceHut => {
            fetch_git_archive(ev, scheme, input, check)
        }
        Scheme::Indirect => err(format!(
            "indirect input '{}' cannot be fetched directly",
            input.show()
        )),
    }
}

/// CppNix's `Input::fetch`: the store path and the input completed with what was found.
pub(crate) fn fetch_input(ev: &mut Evaluator, input: &Input) -> EResult<(StorePath, Input)> {
    let Some(scheme) = input.scheme else {
        return err(format!("cannot fetch unsupported input '{}'", input.json()));
    };
    let expected = input.nar_hash()?;
    // Already in the store: nothing to fetch.
    if let (true, Some(h)) = (input.has_all_info()?, &expected) {
        let (p, valid) = ev.store.known_download(&input.name()?, true, h)?;
        if valid {
            if let Some(store) = ev.store.backend() {
                store.add_temp_root(&p).map_err(|e| {
                    EvalError::new(format!(
                        "adding a temporary root for '{}': {e}",
                        ev.store.dir.display(&p)
                    ))
                })?;
            }
            return Ok((p, input.clone()));
        }
    }
    let mismatch = |ev: &Evaluator, p: &StorePath, got: &Hash| match &expected {
        Some(want) => nar_mismatch(ev, input, p, want, got),
        None => EvalError::new("NAR hash mismatch"),
    };
    let check = Check {
        expected: expected.as_ref(),
        mismatch: &mismatch,
    };
    let f = fetch_scheme(ev, scheme, input, &check).map_err(|mut e| {
        if let Ok(s) = input.to_url_string() {
            e.trace.push(format!("while fetching the input '{s}'"));
        }
        e
    })?;
    let mut out = f.input;
    out.set("narHash", Attr::Str(f.nar_hash.to_sri()));
    if let Some(want) = &expected {
        if *want != f.nar_hash {
            return Err(nar_mismatch(ev, input, &f.path, want, &f.nar_hash));
        }
    }
    if let Some(want) = input.int("lastModified")? {
        if out.int("lastModified")? != Some(want) {
            return err(format!(
                "'lastModified' attribute mismatch in input '{}', expected {want}",
                out.show()
            ));
        }
    }
    if let Some(want) = input.int("revCount")? {
        if out.int("revCount")? != Some(want) {
            return err(format!(
                "'revCount' attribute mismatch in input '{}', expected {want}",
                out.show()
            ));
        }
    }
    Ok((f.path, out))
}

// ---------------------------------------------------------------------------------------------
// The result, and the builtin

/// `%Y%m%d%H%M%S` of a time in seconds since the epoch, in UTC.
pub(crate) fn utc_date(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// CppNix's `emitTreeAttrs`; `empty_rev_fallback` (for `fetchGit`): the all-zero `rev` and
/// `revCount = 0` when the input has none (a dirty working tree).
pub(crate) fn emit_tree_attrs(
    ev: &mut Evaluator,
    path: &StorePath,
    input: &Input,
    empty_rev_fallback: bool,
) -> EResult<Value> {
    let mut m = AttrMap::new();
    let out = ev.store.dir.display(path);
    m.insert(
        "outPath".into(),
        Thunk::value(Value::String(NixString::with_context(
            out.clone(),
            vec![out.into()],
        ))),
    );
    if let Some(h) = input.nar_hash()? {
        m.insert("narHash".into(), Thunk::value(Value::str(h.to_sri())));
    }
    if input.scheme == Some(Scheme::Git) {
        m.insert(
            "submodules".into(),
            Thunk::value(Value::Bool(input.bool("submodules")?.unwrap_or(false))),
        );
    }
    let rev = match input.rev()? {
        Some(r) => Some(r.to_base16()),
        None if empty_rev_fallback => Some("0".repeat(40)),
        None => None,
    };
    if let Some(rev) = rev {
        m.insert(
            "shortRev".into(),
            Thunk::value(Value::str(rev.get(..7).unwrap_or(&rev))),
        );
        m.insert("rev".into(), Thunk::value(Value::str(rev.as_str())));
    }
    let count = match input.int("revCount")? {
        Some(n) => Some(n),
        None if empty_rev_fallback => Some(0),
        None => None,
    };
    if let Some(n) = count {
        m.insert("revCount".into(), Thunk::value(Value::Int(n as i64)));
    }
    if let Some(t) = input.int("lastModified")? {
        let t = t as i64;
        m.insert("lastModified".into(), Thunk::value(Value::Int(t)));
        m.insert(
            "lastModifiedDate".into(),
            Thunk::value(Value::str(utc_date(t))),
        );
    }
    Ok(Value::Attrs(Rc::new(m.into())))
}

/// How `fetchTree` is called (`fetchGit` is `fetchTree` with `type = "git"`).
pub(crate) struct Params {
    pub empty_rev_fallback: bool,
    pub allow_name: bool,
}

/// A string without context (CppNix's `forceStringNoCtx`).
pub(crate) fn string_no_ctx(ev: &mut Evaluator, t: &Thunk) -> EResult<String> {
    match force(ev, t)? {
        Value::String(s) => Ok(no_context(s)?.to_string()),
        other => err(format!(
            "value is {} while a string was expected",
            other.type_name()
        )),
    }
}

/// CppNix's `fetchTree` (the function behind `builtins.fetchTree` and `builtins.fetchGit`):
/// the input from the argument, looked up in the registries if indirect, fetched, and the
/// result set.
pub(crate) fn fetch_tree_with(
    ev: &mut Evaluator,
    arg: &Thunk,
    ty: Option<&str>,
    params: Params,
) -> EResult<Value> {
    let v = force(ev, arg)?;
    let ty_given = ty;
    let input = if let Value::Attrs(a) = &v {
        let ty = match a.get("type") {
            Some(t) => {
                if ty.is_some() {
                    return err("unexpected attribute 'type'");
                }
                string_no_ctx(ev, t)?
            }
            None => match ty {
                Some(t) => t.to_string(),
                None => return err("attribute 'type' is missing in call to 'fetchTree'"),
            },
        };
        let mut attrs = Attrs::new();
        attrs.insert("type".into(), Attr::Str(ty.clone()));
        for (k, t) in a.iter() {
            if &**k == "type" {
                continue;
            }
            let v = force(ev, t)?;
            let attr = match &v {
                Value::String(_) | Value::Path(_) => {
                    let s = ev.coerce_to_string(&v, false, false)?.s.to_string();
                    if &**k == "url" {
                        ev.check_uri(&s)?;
                    }
                    Attr::Str(match &**k {
                        "url" if ty == "git" => fix_uri_for_git(&s),
                        "url" => fix_uri(&s, "file"),
                        _ => s,
                    })
                }
                Value::Bool(b) => Attr::Bool(*b),
                Value::Int(i) if *i < 0 => {
                    let fetcher = if ty_given.is_some() {
                        "fetchGit"
                    } else {
                        "fetchTree"
                    };
                    return err(format!(
                        "negative value given for '{fetcher}' argument '{k}': {i}"
                    ));
                }
                Value::Int(i) => Attr::Int(*i as u64),
                other => {
                    return err(format!(
                    "fetchTree argument '{k}' is {} while a string, Boolean or integer is expected",
                    other.type_name()
                ))
                }
            };
            attrs.insert(k.to_string(), attr);
        }
        if !params.allow_name && attrs.contains_key("name") {
            return err("attribute 'name' isn't supported in call to 'fetchTree'");
        }
        input_from_attrs(attrs)?
    } else {
        let s = ev.coerce_to_string(&v, false, false)?.s.to_string();
        ev.check_uri(&s)?;
        if ty == Some("git") {
            input_from_attrs(attrs_of([
                ("type", "git".into()),
                ("url", Attr::Str(fix_uri_for_git(&s))),
            ]))?
        } else {
            input_from_url(&s)?
        }
    };
    // A pure evaluation takes only a locked input (one with its revision or NAR hash), as it
    // is, without the registries.
    let locked = input.attrs.contains_key("rev") || input.attrs.contains_key("narHash");
    if ev.pure() && !locked {
        return err("in pure evaluation mode, 'fetchTree' requires a locked input");
    }
    let input = if input.scheme == Some(Scheme::Indirect) && !ev.pure() {
        lookup_in_registries(ev, &input)?
    } else {
        input
    };
    let (path, input) = fetch_input(ev, &input)?;
    let shown = ev.store.dir.display(&path);
    ev.allow_store_path(&shown);
    emit_tree_attrs(ev, &path, &input, params.empty_rev_fallback)
}

fn prim_fetch_tree(ev: &mut Evaluator, a: &[Thunk]) -> EResult<Value> {
    fetch_tree_with(
        ev,
        &a[0],
        None,
        Params {
            empty_rev_fallback: false,
            allow_name: false,
        },
    )
}

pub fn table() -> Vec<(&'static str, usize, PrimFn)> {
    vec![("fetchTree", 1, prim_fetch_tree)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Attr {
        Attr::Str(v.to_string())
    }

    #[test]
    fn dates() {
        assert_eq!(utc_date(0), "19700101000000");
        assert_eq!(utc_date(1_577_923_200), "20200102000000");
        assert_eq!(utc_date(951_782_400 + 3661), "20000229010101");
    }

    #[test]
    fn urls() {
        assert_eq!(fix_uri_for_git("/tmp/x"), "file:///tmp/x");
        assert_eq!(
            fix_uri_for_git("git@github.com:NixOS/nix"),
            "ssh://git@github.com/NixOS/nix"
        );
        assert_eq!(
            fix_uri_for_git("https://example.org/a.git"),
            "https://example.org/a.git"
        );
        let u = parse_url("file:///tmp/x?a=b").unwrap();
        assert_eq!(u.path, "/tmp/x");
        assert_eq!(u.base, "file:///tmp/x");
        assert!(parse_url("file://host/x").is_err());
        assert!(parse_url("/tmp/my repo").is_err());
        let u = parse_url("https://example.org:8080/a.git").unwrap();
        assert_eq!(u.authority.as_deref(), Some("example.org:8080"));
        assert_eq!(u.path, "/a.git");
    }

    #[test]
    fn inputs_from_urls() {
        let i = input_from_url("/tmp/x.tar.gz").unwrap();
        assert_eq!(i.scheme, Some(Scheme::Tarball));
        assert_eq!(i.attrs.get("url"), Some(&s("file:///tmp/x.tar.gz")));
        let i = input_from_url("path:///tmp/src").unwrap();
        assert_eq!(i.attrs.get("path"), Some(&s("/tmp/src")));
        // 2.8 does not read these; the current manual does.
        let i = input_from_url("path:/tmp/src").unwrap();
        assert_eq!(i.attrs.get("path"), Some(&s("/tmp/src")));
        let i = input_from_url("tarball+file:///tmp/x.tgz").unwrap();
        assert_eq!(i.scheme, Some(Scheme::Tarball));
        assert_eq!(i.attrs.get("url"), Some(&s("file:///tmp/x.tgz")));
        let i = input_from_url("file+https://example.org/x").unwrap();
        assert_eq!(i.scheme, Some(Scheme::File));
        let i = input_from_url("github:NixOS/nix/2.8.0").unwrap();
        assert_eq!(i.scheme, Some(Scheme::GitHub));
        assert_eq!(i.attrs.get("ref"), Some(&s("2.8.0")));
        assert_eq!(i.show(), "github:NixOS/nix/2.8.0");
        let i = input_from_url(
            "git+file:///repo?ref=main&rev=0123456789abcdef0123456789abcdef01234567&shallow=1&x=y",
        )
        .unwrap();
        assert_eq!(i.attrs.get("url"), Some(&s("file:///repo?x=y")));
        assert_eq!(i.attrs.get("shallow"), Some(&Attr::Bool(true)));
        assert_eq!(
            i.show(),
            "git+file:///repo?ref=main&rev=0123456789abcdef0123456789abcdef01234567&shallow=1&x=y"
        );
        let e = input_from_url("/tmp/src").unwrap_err();
        assert_eq!(e.msg, "input 'file:///tmp/src' is unsupported");
        let e = input_from_url("path:///x?foo=1").unwrap_err();
        assert_eq!(
            e.msg,
            "path URL 'path:///x?foo=1' has unsupported parameter 'foo'"
        );
        let e = input_from_url("https://exa mple.com/x.tar.gz").unwrap_err();
        assert_eq!(e.msg, "'https://exa mple.com/x.tar.gz' is not a valid URL");
    }

    #[test]
    fn inputs_from_attrs() {
        let a = |pairs: &[(&str, Attr)]| -> Attrs {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect()
        };
        let e = input_from_attrs(a(&[("type", s("tarball")), ("foo", s("x"))])).unwrap_err();
        assert_eq!(e.msg, "unsupported tarball input attribute 'foo'");
        let e = input_from_attrs(a(&[("type", s("path"))])).unwrap_err();
        assert_eq!(e.msg, "input attribute 'path' is missing");
        let i = input_from_attrs(a(&[("type", s("foo"))])).unwrap();
        assert_eq!(i.scheme, None);
        let e = input_from_attrs(a(&[
            ("type", s("path")),
            ("path", s("/x")),
            ("narHash", s("sha1-abc")),
        ]))
        .unwrap_err();
        assert!(!e.msg.is_empty());
        let i = input_from_attrs(a(&[
            ("type", s("path")),
            ("path", s("/t/src")),
            ("rev", s("0000000000000000000000000000000000000001")),
            ("revCount", Attr::Int(5)),
        ]))
        .unwrap();
        assert_eq!(
            i.show(),
            "path:/t/src?rev=0000000000000000000000000000000000000001&revCount=5"
        );
    }

    #[test]
    fn overrides() {
        let gh = input_from_url("github:o/r").unwrap();
        let rev = Hash::parse(
            "0123456789abcdef0123456789abcdef01234567",
            Some(HashAlgo::Sha1),
        )
        .unwrap();
        let o = apply_overrides(&gh, None, Some(rev.clone())).unwrap();
        assert_eq!(
            o.show(),
            "github:o/r/0123456789abcdef0123456789abcdef01234567"
        );
        let p = input_from_url("path:/x").unwrap();
        assert!(apply_overrides(&p, Some("main".into()), None).is_err());
    }
}
