//! `builtins.fetchGit`, as CppNix 2.8 has it (its `git` input scheme, through `fetchTree`),
//! driving the `git` command-line tool:
//!
//! - A local repository (a path, or a `file://` URL of a directory with a `.git`) without
//!   `rev` or `ref`: a dirty working tree (`git diff HEAD` finds changes to tracked files)
//!   gives its tracked files (`git ls-files`) with the all-zero `rev` and `revCount = 0`;
//!   a clean one gives `HEAD` (the current branch).
//! - Otherwise the commit (`rev`, or the tip of `ref`) is exported with `git archive` (or,
//!   with `submodules = true`, checked out with its submodules, without `.git`). A local
//!   repository is read in place; any other (a remote, a bare repository) is fetched into a
//!   bare cache repository `$XDG_CACHE_HOME/nix/gitv3/<nix32 sha256 of the URL>`, the one
//!   CppNix uses, refreshed when the ref there is older than `tarball-ttl` (one hour).
//!
//! The result is `{ outPath, narHash, submodules, rev, shortRev, revCount, lastModified,
//! lastModifiedDate }`. The store path is added even in read-only evaluation, as CppNix does.
//! CppNix's fetcher cache (`fetcher-cache-v1.sqlite`) is not consulted: a locked revision
//! already in the store is still exported again (same path) unless `narHash` and
//! `lastModified` (and `revCount` with a `ref`) are all given.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::sync::OnceLock;

use firn_format::{Hash, HashAlgo, StorePath};

use crate::builtins::{force, PrimFn};
use crate::error::{err, EResult, EvalError};
use crate::eval::Evaluator;
use crate::fetch::TempDir;
use crate::value::*;

/// The initial branch of cache repositories (its value does not matter: CppNix's).
const GIT_INITIAL_BRANCH: &str = "__nix_dummy_branch";

/// CppNix's default `tarball-ttl`.
const TARBALL_TTL: u64 = 3600;

// ---------------------------------------------------------------------------------------------
// URLs, as CppNix 2.8's `parseURL`.

struct ParsedUrl {
    /// Everything before the query and fragment.
    base: String,
    scheme: String,
    authority: Option<String>,
    path: String,
    query: BTreeMap<String, String>,
    fragment: String,
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

fn bad_url(msg: String) -> EvalError {
    EvalError::new(msg)
}

fn percent_decode(s: &str) -> EResult<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .filter(|_| i + 2 < b.len())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| bad_url(format!("invalid URI parameter '{s}'")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
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

fn parse_url(url: &str) -> EResult<ParsedUrl> {
    let Some(m) = url_regex().captures(url) else {
        return Err(bad_url(format!("'{url}' is not a valid URL")));
    };
    let get = |i: usize| m.get(i).map(|x| x.as_str().to_string());
    let scheme = get(2).unwrap_or_default();
    let authority = get(3);
    let mut path = get(4).or_else(|| get(5)).unwrap_or_default();
    let is_file = scheme.contains("file");
    if let Some(a) = &authority {
        if !a.is_empty() && is_file {
            return Err(bad_url(format!(
                "file:// URL '{url}' has unexpected authority '{a}'"
            )));
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
        base: get(1).unwrap_or_default(),
        scheme,
        authority,
        path,
        query,
        fragment: percent_decode(&get(7).unwrap_or_default())?,
    })
}

impl ParsedUrl {
    fn to_url_string(&self) -> String {
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
fn fix_uri_for_git(uri: &str) -> String {
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

fn fix_uri(uri: &str, default_scheme: &str) -> String {
    if uri.contains("://") {
        uri.to_string()
    } else {
        format!("{default_scheme}://{uri}")
    }
}

// ---------------------------------------------------------------------------------------------
// The input: CppNix's `fetchers::Attrs` of a `git` input.

#[derive(Clone, Debug)]
enum Attr {
    Str(String),
    Int(u64),
    Bool(bool),
}

#[derive(Clone)]
struct Input {
    attrs: BTreeMap<String, Attr>,
}

impl Input {
    fn json(&self) -> String {
        let m: serde_json::Map<String, serde_json::Value> = self
            .attrs
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Attr::Str(s) => serde_json::Value::from(s.as_str()),
                    Attr::Int(i) => serde_json::Value::from(*i),
                    Attr::Bool(b) => serde_json::Value::from(*b),
                };
                (k.clone(), v)
            })
            .collect();
        serde_json::Value::Object(m).to_string()
    }

    fn str(&self, name: &str) -> EResult<Option<String>> {
        match self.attrs.get(name) {
            None => Ok(None),
            Some(Attr::Str(s)) => Ok(Some(s.clone())),
            Some(_) => err(format!(
                "input attribute '{name}' is not a string {}",
                self.json()
            )),
        }
    }

    fn int(&self, name: &str) -> EResult<Option<u64>> {
        match self.attrs.get(name) {
            None => Ok(None),
            Some(Attr::Int(i)) => Ok(Some(*i)),
            Some(_) => err(format!("input attribute '{name}' is not an integer")),
        }
    }

    fn bool(&self, name: &str) -> EResult<Option<bool>> {
        match self.attrs.get(name) {
            None => Ok(None),
            Some(Attr::Bool(b)) => Ok(Some(*b)),
            Some(_) => err(format!("input attribute '{name}' is not a Boolean")),
        }
    }

    fn url(&self) -> EResult<String> {
        self.str("url")?
            .ok_or_else(|| EvalError::new("input attribute 'url' is missing"))
    }

    fn name(&self) -> EResult<String> {
        Ok(self.str("name")?.unwrap_or_else(|| "source".into()))
    }

    fn git_ref(&self) -> EResult<Option<String>> {
        self.str("ref")
    }

    /// `rev`: a hash with its algorithm named, or SHA-1 in any encoding.
    fn rev(&self) -> EResult<Option<Hash>> {
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

    fn nar_hash(&self) -> EResult<Option<Hash>> {
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

    fn set(&mut self, name: &str, v: Attr) {
        self.attrs.insert(name.to_string(), v);
    }

    /// `Input::to_string`: `git+<url>?ref=...&rev=...`.
    fn to_url_string(&self) -> String {
        let Ok(url) = self.url() else {
            return self.json();
        };
        let Ok(mut u) = parse_url(&url) else {
            return url;
        };
        if u.scheme != "git" {
            u.scheme = format!("git+{}", u.scheme);
        }
        if let Ok(Some(rev)) = self.rev() {
            u.query.insert("rev".into(), rev.to_base16());
        }
        if let Ok(Some(r)) = self.git_ref() {
            u.query.insert("ref".into(), r);
        }
        if let Ok(Some(true)) = self.bool("shallow") {
            u.query.insert("shallow".into(), "1".into());
        }
        u.to_url_string()
    }
}

fn bad_git_ref(r: &str) -> bool {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    RE.get_or_init(|| {
        regex::Regex::new(
            r"//|^[./]|/\.|\.\.|[[:cntrl:][:space:]:?^~\[]|\\|\*|\.lock$|\.lock/|@\{|[/.]$|^@$|^$",
        )
        .expect("valid")
    })
    .is_match(r)
}

/// `GitInputScheme::inputFromAttrs` and `fixupInput`: the checks made before fetching.
fn input_from_attrs(attrs: BTreeMap<String, Attr>) -> EResult<Input> {
    const KNOWN: &[&str] = &[
        "type",
        "url",
        "ref",
        "rev",
        "shallow",
        "submodules",
        "lastModified",
        "revCount",
        "narHash",
        "allRefs",
        "name",
    ];
    if let Some(k) = attrs.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return err(format!("unsupported Git input attribute '{k}'"));
    }
    let input = Input { attrs };
    parse_url(&input.url()?)?;
    input.bool("shallow")?;
    input.bool("submodules")?;
    input.bool("allRefs")?;
    if let Some(r) = input.git_ref()? {
        if bad_git_ref(&r) {
            return err(format!("invalid Git branch/tag name '{r}'"));
        }
    }
    input.rev()?;
    input.int("revCount")?;
    input.int("lastModified")?;
    input.nar_hash()?;
    Ok(input)
}

/// The argument of `fetchGit`: a URL (or path), or a set of input attributes.
fn input_from_arg(ev: &mut Evaluator, t: &Thunk) -> EResult<Input> {
    let v = force(ev, t)?;
    let mut attrs = BTreeMap::new();
    attrs.insert("type".to_string(), Attr::Str("git".into()));
    if let Value::Attrs(a) = &v {
        if a.contains_key("type") {
            return err("unexpected attribute 'type'");
        }
        for (k, t) in a.iter() {
            let v = force(ev, t)?;
            let attr = match &v {
                Value::String(_) | Value::Path(_) => {
                    let s = ev.coerce_to_string(&v, false, false)?.s.to_string();
                    Attr::Str(if &**k == "url" {
                        fix_uri_for_git(&s)
                    } else {
                        s
                    })
                }
                Value::Bool(b) => Attr::Bool(*b),
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
    } else {
        let s = ev.coerce_to_string(&v, false, false)?.s.to_string();
        attrs.insert("url".into(), Attr::Str(fix_uri_for_git(&s)));
    }
    input_from_attrs(attrs)
}

// ---------------------------------------------------------------------------------------------
// Running git.

/// What a git command printed and how it ended.
struct Run {
    code: Option<i32>,
    stdout: Vec<u8>,
    /// stdout and stderr together (only when asked for).
    merged: String,
}

fn spawn_err(e: std::io::Error) -> EvalError {
    EvalError::new(format!("executing 'git': {e}"))
}

/// Run git, its stderr going to ours (or, with `merge`, captured with its stdout).
fn git_run(args: &[&str], merge: bool, c_locale: bool) -> EResult<Run> {
    let mut c = Command::new("git");
    c.args(args).stdin(Stdio::inherit());
    if c_locale {
        c.env("LC_ALL", "C");
    }
    if !merge {
        c.stderr(Stdio::inherit());
    }
    let out = c.output().map_err(spawn_err)?;
    let mut merged = String::new();
    if merge {
        merged.push_str(&String::from_utf8_lossy(&out.stdout));
        merged.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    Ok(Run {
        code: out.status.code(),
        stdout: out.stdout,
        merged,
    })
}

fn status_text(code: Option<i32>) -> String {
    match code {
        Some(c) => format!("failed with exit code {c}"),
        None => "was killed by a signal".into(),
    }
}

/// CppNix's `runProgram("git", ...)`: stdout, or an error when git fails. The error names the
/// repository being fetched.
fn git(args: &[&str], url: &str) -> EResult<String> {
    let r = git_run(args, false, false)?;
    if r.code != Some(0) {
        return Err(git_failed(r.code, url));
    }
    Ok(String::from_utf8_lossy(&r.stdout).into_owned())
}

fn git_failed(code: Option<i32>, url: &str) -> EvalError {
    EvalError::new(format!(
        "program 'git' {} (while fetching Git repository '{url}')",
        status_text(code)
    ))
}

fn parse_u64(s: &str, what: &str) -> EResult<u64> {
    s.trim()
        .parse()
        .map_err(|_| EvalError::new(format!("invalid {what} '{}' from git", s.trim())))
}

fn parse_sha1(s: &str) -> EResult<Hash> {
    Hash::parse(s.trim(), Some(HashAlgo::Sha1)).map_err(|e| EvalError::new(e.to_string()))
}

fn epoch_secs(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn path_exists(p: &str) -> bool {
    fs::symlink_metadata(p).is_ok()
}

fn cache_home(ev: &Evaluator) -> String {
    if let Some(c) = std::env::var_os("XDG_CACHE_HOME") {
        return c.to_string_lossy().into_owned();
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| ev.home.clone());
    format!("{home}/.cache")
}

// ---------------------------------------------------------------------------------------------
// Fetching.

/// What a fetch produced.
struct Fetched {
    path: StorePath,
    nar_hash: Hash,
}

/// `(is_local, actual_url)`: a `file://` URL of a directory with a `.git` is read in place
/// (unless `_NIX_FORCE_HTTP=1`); anything else is fetched into the cache.
fn actual_url(input: &Input) -> EResult<(bool, String)> {
    let url = parse_url(&input.url()?)?;
    let force_http = std::env::var("_NIX_FORCE_HTTP").is_ok_and(|v| v == "1");
    let bare = url.scheme == "file" && !path_exists(&format!("{}/.git", url.path));
    let local = url.scheme == "file" && !force_http && !bare;
    Ok((local, if local { url.path } else { url.base }))
}

/// The whole export of `rev` from `repo_dir`, added to the store.
fn export(
    ev: &mut Evaluator,
    name: &str,
    repo_dir: &str,
    git_dir: &str,
    rev: &str,
    actual_url: &str,
    submodules: bool,
) -> EResult<(StorePath, Hash)> {
    let tmp = TempDir::new()?;
    let dir = tmp.0.join("export");
    fs::create_dir_all(&dir)
        .map_err(|e| EvalError::new(format!("creating '{}': {e}", dir.display())))?;
    let dir_s = dir.to_string_lossy().into_owned();
    if submodules {
        let git_tmp = TempDir::new()?;
        let gd = git_tmp.0.to_string_lossy().into_owned();
        let init_branch = format!("init.defaultBranch={GIT_INITIAL_BRANCH}");
        git(
            &[
                "-c",
                &init_branch,
                "init",
                &dir_s,
                "--separate-git-dir",
                &gd,
            ],
            actual_url,
        )?;
        git(
            &[
                "-C",
                &dir_s,
                "fetch",
                "--quiet",
                "--force",
                "--update-head-ok",
                "--",
                repo_dir,
                "refs/*:refs/*",
            ],
            actual_url,
        )?;
        git(&["-C", &dir_s, "checkout", "--quiet", rev], actual_url)?;
        git(
            &["-C", &dir_s, "remote", "add", "origin", actual_url],
            actual_url,
        )?;
        git(
            &[
                "-C",
                &dir_s,
                "submodule",
                "--quiet",
                "update",
                "--init",
                "--recursive",
            ],
            actual_url,
        )?;
        let mut keep = |p: &Path, _: fs::FileType| p.file_name().is_none_or(|n| n != ".git");
        return ev.store.add_download_filtered(name, &dir, &mut keep);
    }
    let mut child = Command::new("git")
        .args(["-C", repo_dir, "--git-dir", git_dir, "archive", rev])
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(spawn_err)?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let unpacked = unpack(stdout, &dir);
    let status = child.wait().map_err(spawn_err)?;
    if !status.success() {
        return Err(git_failed(status.code(), actual_url));
    }
    unpacked.map_err(|e| {
        EvalError::new(format!(
            "unpacking revision '{rev}' of Git repository '{actual_url}': {e}"
        ))
    })?;
    ev.store.add_download(name, &dir, true)
}

fn unpack(r: impl Read, dir: &Path) -> std::io::Result<()> {
    let mut ar = tar::Archive::new(r);
    ar.set_preserve_permissions(false);
    ar.set_preserve_mtime(false);
    ar.set_unpack_xattrs(false);
    ar.set_overwrite(true);
    let res = ar.unpack(dir);
    // Read what is left so that git is not killed by a broken pipe.
    let mut rest = ar.into_inner();
    let _ = std::io::copy(&mut rest, &mut std::io::sink());
    res
}

/// The tracked files of a dirty working tree.
fn add_dirty(
    ev: &mut Evaluator,
    name: &str,
    actual_url: &str,
    git_dir: &str,
    submodules: bool,
) -> EResult<(StorePath, Hash)> {
    let mut args = vec!["-C", actual_url, "--git-dir", git_dir, "ls-files", "-z"];
    if submodules {
        args.push("--recurse-submodules");
    }
    let r = git_run(&args, false, false)?;
    if r.code != Some(0) {
        return Err(git_failed(r.code, actual_url));
    }
    let files: BTreeSet<Vec<u8>> = r
        .stdout
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| s.to_vec())
        .collect();
    let root = PathBuf::from(crate::eval::canon_path(actual_url));
    let mut keep = |p: &Path, ft: fs::FileType| -> bool {
        let Ok(rel) = p.strip_prefix(&root) else {
            return false;
        };
        let rel = rel.as_os_str().as_bytes();
        if ft.is_dir() {
            let mut prefix = rel.to_vec();
            prefix.push(b'/');
            files
                .range(prefix.clone()..)
                .next()
                .is_some_and(|f| f.starts_with(&prefix))
        } else {
            files.contains(rel)
        }
    };
    ev.store.add_download_filtered(name, &root, &mut keep)
}

/// `GitInputScheme::fetch`: the store path, and `input` completed with what was found
/// (`rev`, `ref`, `revCount`, `lastModified`).
fn fetch_scheme(ev: &mut Evaluator, input: &mut Input) -> EResult<Fetched> {
    let mut git_dir = std::env::var("GIT_DIR").unwrap_or_else(|_| ".git".into());
    let name = input.name()?;
    let shallow = input.bool("shallow")?.unwrap_or(false);
    let submodules = input.bool("submodules")?.unwrap_or(false);
    let all_refs = input.bool("allRefs")?.unwrap_or(false);
    if let Some(rev) = input.rev()? {
        if !matches!(rev.algo(), HashAlgo::Sha1 | HashAlgo::Sha256) {
            return err(format!(
                "Hash '{}' is not supported by Git. Supported types are sha1 and sha256.",
                rev.encode(firn_format::hash::HashFormat::Base16, true)
            ));
        }
    }

    let (is_local, actual) = actual_url(input)?;

    // A local repository without `ref` or `rev`: its working tree, which may be dirty.
    if input.git_ref()?.is_none() && input.rev()?.is_none() && is_local {
        let r = git_run(
            &[
                "-C",
                &actual,
                "--git-dir",
                &git_dir,
                "rev-parse",
                "--verify",
                "--no-revs",
                "HEAD^{commit}",
            ],
            true,
            true,
        )?;
        if r.merged.contains("fatal: not a git repository") {
            return err(format!("'{actual}' is not a Git repository"));
        }
        if !r.merged.contains("fatal: Needed a single revision") && r.code != Some(0) {
            return err(format!(
                "getting the HEAD of the Git tree '{actual}' failed with exit code {}:\n{}",
                r.code.unwrap_or(-1),
                r.merged
            ));
        }
        let has_head = r.code == Some(0);
        let mut clean = false;
        if has_head {
            let mut args = vec![
                "-C",
                &actual,
                "--git-dir",
                &git_dir,
                "diff",
                "HEAD",
                "--quiet",
            ];
            if !submodules {
                args.push("--ignore-submodules");
            }
            args.push("--");
            let r = git_run(&args, false, false)?;
            match r.code {
                Some(0) => clean = true,
                Some(1) => {}
                other => return Err(git_failed(other, &actual)),
            }
        }
        if !clean {
            eprintln!("warning: Git tree '{actual}' is dirty");
            let (path, nar_hash) = add_dirty(ev, &name, &actual, &git_dir, submodules)?;
            let last_modified = if has_head {
                parse_u64(
                    &git(
                        &[
                            "-C",
                            &crate::eval::canon_path(&actual),
                            "--git-dir",
                            &git_dir,
                            "log",
                            "-1",
                            "--format=%ct",
                            "--no-show-signature",
                            "HEAD",
                        ],
                        &actual,
                    )?,
                    "commit time",
                )?
            } else {
                0
            };
            input.set("lastModified", Attr::Int(last_modified));
            return Ok(Fetched { path, nar_hash });
        }
    }

    if input.git_ref()?.is_none() {
        let head = if is_local {
            git(
                &[
                    "-C",
                    &actual,
                    "--git-dir",
                    ".git",
                    "rev-parse",
                    "--abbrev-ref",
                    "HEAD",
                ],
                &actual,
            )?
            .trim_end_matches('\n')
            .to_string()
        } else {
            "master".to_string()
        };
        input.set("ref", Attr::Str(head));
    }
    let git_ref = input.git_ref()?.expect("ref was just set");

    let repo_dir: String;
    if is_local {
        if input.rev()?.is_none() {
            let out = git(
                &["-C", &actual, "--git-dir", &git_dir, "rev-parse", &git_ref],
                &actual,
            )?;
            input.set("rev", Attr::Str(parse_sha1(&out)?.to_base16()));
        }
        repo_dir = actual.clone();
    } else {
        let h = Hash::digest(HashAlgo::Sha256, actual.as_bytes());
        let cache_dir = format!("{}/nix/gitv3/{}", cache_home(ev), h.to_nix32());
        repo_dir = cache_dir.clone();
        git_dir = ".".into();
        let parent = Path::new(&cache_dir)
            .parent()
            .expect("the cache directory has a parent");
        fs::create_dir_all(parent)
            .map_err(|e| EvalError::new(format!("creating '{}': {e}", parent.display())))?;
        let _lock = firn_store::lock::PathLocks::lock(&[PathBuf::from(&cache_dir)])
            .map_err(|e| EvalError::new(format!("locking '{cache_dir}': {e}")))?;
        if !path_exists(&cache_dir) {
            let init_branch = format!("init.defaultBranch={GIT_INITIAL_BRANCH}");
            git(&["-c", &init_branch, "init", "--bare", &repo_dir], &actual)?;
        }
        let local_ref_file = if git_ref.starts_with("refs/") {
            format!("{cache_dir}/{git_ref}")
        } else {
            format!("{cache_dir}/refs/heads/{git_ref}")
        };
        let now = std::time::SystemTime::now();
        let do_fetch = if let Some(rev) = input.rev()? {
            let r = git_run(
                &[
                    "-C",
                    &repo_dir,
                    "--git-dir",
                    &git_dir,
                    "cat-file",
                    "-e",
                    &rev.to_base16(),
                ],
                false,
                false,
            )?;
            match r.code {
                Some(0) => false,
                Some(_) => true,
                None => return Err(git_failed(None, &actual)),
            }
        } else if all_refs {
            true
        } else {
            // Fetch when the local ref is missing or older than `tarball-ttl`.
            match fs::metadata(&local_ref_file).and_then(|m| m.modified()) {
                Ok(mtime) => epoch_secs(mtime) + TARBALL_TTL <= epoch_secs(now),
                Err(_) => true,
            }
        };
        if do_fetch {
            let fetch_ref = if all_refs {
                "refs/*".to_string()
            } else if git_ref.starts_with("refs/") || git_ref == "HEAD" {
                git_ref.clone()
            } else {
                format!("refs/heads/{git_ref}")
            };
            let spec = format!("{fetch_ref}:{fetch_ref}");
            let r = git(
                &[
                    "-C",
                    &repo_dir,
                    "--git-dir",
                    &git_dir,
                    "fetch",
                    "--quiet",
                    "--force",
                    "--",
                    &actual,
                    &spec,
                ],
                &actual,
            );
            if let Err(e) = r {
                if !path_exists(&local_ref_file) {
                    return Err(e);
                }
                eprintln!(
                    "warning: could not update local clone of Git repository '{actual}'; continuing with the most recent version"
                );
            }
            // Now counts as fresh (CppNix sets both times to `now`, whole seconds).
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(epoch_secs(now));
            if let Ok(f) = fs::File::options().write(true).open(&local_ref_file) {
                let _ = f.set_times(fs::FileTimes::new().set_accessed(t).set_modified(t));
            }
        }
        if input.rev()?.is_none() {
            let s = fs::read_to_string(&local_ref_file)
                .map_err(|e| EvalError::new(format!("opening file '{local_ref_file}': {e}")))?;
            input.set("rev", Attr::Str(parse_sha1(&s)?.to_base16()));
        }
    }

    let is_shallow = git(
        &[
            "-C",
            &repo_dir,
            "--git-dir",
            &git_dir,
            "rev-parse",
            "--is-shallow-repository",
        ],
        &actual,
    )?
    .trim_end()
        == "true";
    if is_shallow && !shallow {
        return err(format!(
            "'{actual}' is a shallow Git repository, but a non-shallow repository is needed"
        ));
    }

    let rev = input.rev()?.expect("rev is known").to_base16();
    let r = git_run(
        &[
            "-C",
            &repo_dir,
            "--git-dir",
            &git_dir,
            "cat-file",
            "commit",
            &rev,
        ],
        true,
        false,
    )?;
    if r.code == Some(128) && r.merged.contains("bad file") {
        return err(format!(
            "Cannot find Git revision '{rev}' in ref '{git_ref}' of repository '{actual}'! \
             Please make sure that the rev exists on the ref you've specified or add \
             allRefs = true; to fetchGit."
        ));
    }

    let (path, nar_hash) = export(ev, &name, &repo_dir, &git_dir, &rev, &actual, submodules)?;

    let last_modified = parse_u64(
        &git(
            &[
                "-C",
                &repo_dir,
                "--git-dir",
                &git_dir,
                "log",
                "-1",
                "--format=%ct",
                "--no-show-signature",
                &rev,
            ],
            &actual,
        )?,
        "commit time",
    )?;
    if !shallow {
        let count = parse_u64(
            &git(
                &[
                    "-C",
                    &repo_dir,
                    "--git-dir",
                    &git_dir,
                    "rev-list",
                    "--count",
                    &rev,
                ],
                &actual,
            )?,
            "revision count",
        )?;
        input.set("revCount", Attr::Int(count));
    }
    input.set("lastModified", Attr::Int(last_modified));
    Ok(Fetched { path, nar_hash })
}

/// `Input::fetch`: a locked input already in the store is used as it is; otherwise fetched,
/// then checked against the `narHash`, `lastModified` and `revCount` given.
fn fetch_input(ev: &mut Evaluator, input: &Input) -> EResult<(Fetched, Input)> {
    let name = input.name()?;
    let nar_hash = input.nar_hash()?;
    if let Some(h) = &nar_hash {
        let shallow = input.bool("shallow")?.unwrap_or(false);
        let has_all = input.int("lastModified")?.is_some()
            && (shallow || input.git_ref()?.is_none() || input.int("revCount")?.is_some());
        if has_all {
            let (p, valid) = ev.store.known_download(&name, true, h)?;
            if valid {
                let f = Fetched {
                    path: p,
                    nar_hash: h.clone(),
                };
                return Ok((f, input.clone()));
            }
        }
    }
    let mut out = input.clone();
    let fetched = fetch_scheme(ev, &mut out).map_err(|mut e| {
        e.trace.push(format!(
            "while fetching the input '{}'",
            input.to_url_string()
        ));
        e
    })?;
    if let Some(want) = &nar_hash {
        if *want != fetched.nar_hash {
            let shown = ev.store.dir.display(&fetched.path);
            return err(format!(
                "NAR hash mismatch in input '{}' ({}), expected '{}', got '{}'",
                input.to_url_string(),
                ev.store.real_path(&shown).display(),
                want.to_sri(),
                fetched.nar_hash.to_sri()
            ));
        }
    }
    if let Some(want) = input.int("lastModified")? {
        if out.int("lastModified")? != Some(want) {
            return err(format!(
                "'lastModified' attribute mismatch in input '{}', expected {want}",
                out.to_url_string()
            ));
        }
    }
    if let Some(want) = input.int("revCount")? {
        if out.int("revCount")? != Some(want) {
            return err(format!(
                "'revCount' attribute mismatch in input '{}', expected {want}",
                out.to_url_string()
            ));
        }
    }
    Ok((fetched, out))
}

/// `%Y%m%d%H%M%S` of a time in seconds since the epoch, in UTC.
fn utc_date(t: i64) -> String {
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

/// `emitTreeAttrs` with the empty-revision fallback `fetchGit` has.
fn tree_attrs(ev: &mut Evaluator, f: &Fetched, input: &Input) -> EResult<Value> {
    let mut m = AttrMap::new();
    let out = ev.store.dir.display(&f.path);
    m.insert(
        "outPath".into(),
        Thunk::value(Value::String(NixString::with_context(
            out.clone(),
            vec![out],
        ))),
    );
    m.insert(
        "narHash".into(),
        Thunk::value(Value::str(f.nar_hash.to_sri())),
    );
    m.insert(
        "submodules".into(),
        Thunk::value(Value::Bool(input.bool("submodules")?.unwrap_or(false))),
    );
    let rev = match input.rev()? {
        Some(r) => r.to_base16(),
        None => "0".repeat(40),
    };
    m.insert("shortRev".into(), Thunk::value(Value::str(&rev[..7])));
    m.insert("rev".into(), Thunk::value(Value::str(rev.as_str())));
    let count = input.int("revCount")?.unwrap_or(0);
    m.insert("revCount".into(), Thunk::value(Value::Int(count as i64)));
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

fn fetch_git(ev: &mut Evaluator, a: &[Thunk]) -> EResult<Value> {
    let input = input_from_arg(ev, &a[0])?;
    let (fetched, input) = fetch_input(ev, &input)?;
    tree_attrs(ev, &fetched, &input)
}

pub fn table() -> Vec<(&'static str, usize, PrimFn)> {
    vec![("fetchGit", 1, fetch_git)]
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn refs() {
        assert!(!bad_git_ref("main"));
        assert!(!bad_git_ref("refs/heads/feature-1"));
        for bad in ["", "a..b", "a b", "x.lock", "/a", "a/", "@", "a@{b", "a~1"] {
            assert!(bad_git_ref(bad), "{bad}");
        }
    }
}
