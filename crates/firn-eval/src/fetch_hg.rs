//! The `hg` input scheme of CppNix 2.8 (`builtins.fetchTree` with `type = "hg"` or an
//! `hg+file://`/`hg+https://` URL, flake inputs of that type) and `builtins.fetchMercurial`,
//! driving Mercurial's `hg` with `HGPLAIN` set (so that a user's `.hgrc` cannot change what it
//! prints):
//!
//! - A local repository (a `file://` URL of a directory with an `.hg`) without `ref` or `rev`
//!   whose working tree has changes (`hg status --modified --added --removed`) gives its
//!   tracked files, with `ref` its current branch and no `rev` (`fetchMercurial` shows the
//!   all-zero one), after the warning "Mercurial tree '…' is unclean".
//! - Otherwise the repository is cloned (`hg clone --noupdate`; later `hg pull`) into
//!   `$XDG_CACHE_HOME/nix/hg/<nix32 sha256 of the URL>`, the directory CppNix uses, unless the
//!   wanted `rev` is already there; `ref` (default `default`) or `rev` is resolved there to the
//!   node, its revision number (`revCount`) and branch (the new `ref`), and the revision is
//!   exported with `hg archive`, without the `.hg_archival.txt` it adds.
//! - CppNix's fetcher cache remembers each exported revision (`{type = "hg"; name; rev}`,
//!   never expiring) and the tip of a ref (`{type; name; url; ref}`, for `tarball-ttl`), as
//!   CppNix's own entries, so either finds the other's.
//!
//! Unlike CppNix, `hg` is quiet when it is asked whether the cache already has a revision.

use std::fs;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;

use firn_format::hash::HashFormat;
use firn_format::{Hash, HashAlgo, StorePath};
use firn_store::exit_status::describe;

use crate::builtins::{force, PrimFn};
use crate::error::{err, EResult, EvalError};
use crate::eval::Evaluator;
use crate::fetch::{self, attrs_of, parse_sha1, path_exists, TempDir};
use crate::fetch_tree::{
    fetch_input, input_from_attrs, parse_url, string_no_ctx, Attr, Attrs, Check, Fetched, Input,
};
use crate::value::*;

// ---------------------------------------------------------------------------------------------
// Running hg.

/// `hg` with the given arguments, in CppNix's environment for it.
fn hg_command(args: &[&str]) -> Command {
    let mut c = Command::new("hg");
    c.args(args).env("HGPLAIN", "").stdin(Stdio::null());
    c
}

fn spawn_err(e: std::io::Error) -> EvalError {
    EvalError::new(format!("executing 'hg' (Mercurial): {e}"))
}

/// What hg printed on stdout, or how it failed (its own messages go to stderr).
fn hg_run(args: &[&str]) -> EResult<Result<Vec<u8>, ExitStatus>> {
    let out = hg_command(args)
        .stderr(Stdio::inherit())
        .output()
        .map_err(spawn_err)?;
    Ok(if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(out.status)
    })
}

/// CppNix's `runHg`: what hg printed, or an error when it fails.
fn hg_out(args: &[&str]) -> EResult<Vec<u8>> {
    hg_run(args)?.or_else(|status| err(format!("hg {}", describe(&status))))
}

/// [`hg_out`] as text.
fn hg(args: &[&str]) -> EResult<String> {
    Ok(String::from_utf8_lossy(&hg_out(args)?).into_owned())
}

/// Whether the repository at `dir` has revision `rev` (hg's complaint, if not, is not shown).
fn has_revision(dir: &str, rev: &str) -> EResult<bool> {
    let out = hg_command(&["log", "-R", dir, "-r", rev, "--template", "1"])
        .stderr(Stdio::null())
        .output()
        .map_err(spawn_err)?;
    Ok(out.stdout == b"1")
}

// ---------------------------------------------------------------------------------------------
// Fetching.

/// `(is_local, actual_url)`: a `file://` URL is read as its path.
fn actual_url(input: &Input) -> EResult<(bool, String)> {
    let url = parse_url(&input.url()?)?;
    let local = url.scheme == "file";
    Ok((local, if local { url.path } else { url.base }))
}

/// The tracked files of the working tree at `dir` (with changes).
fn add_unclean(
    ev: &mut Evaluator,
    name: &str,
    dir: &str,
    check: &Check,
) -> EResult<(StorePath, Hash)> {
    let listed = hg_out(&[
        "status",
        "-R",
        dir,
        "--clean",
        "--modified",
        "--added",
        "--no-status",
        "--print0",
    ])?;
    fetch::add_listed_files(ev, name, dir, &listed, check)
}

/// The fetcher cache's key of an exported revision.
fn locked_attrs(name: &str, rev: &Hash) -> EResult<Attrs> {
    if rev.algo() != HashAlgo::Sha1 {
        return err(format!(
            "Hash '{}' is not supported by Mercurial. Only sha1 is supported.",
            rev.encode(HashFormat::Base16, true)
        ));
    }
    Ok(attrs_of([
        ("type", "hg".into()),
        ("name", name.into()),
        ("rev", rev.to_base16().into()),
    ]))
}

/// CppNix's `makeResult`: the input completed with the `revCount` a cache entry has.
fn from_cache(
    ev: &mut Evaluator,
    mut input: Input,
    info: &Attrs,
    path: StorePath,
) -> EResult<Fetched> {
    match info.get("revCount") {
        Some(Attr::Int(n)) => input.set("revCount", Attr::Int(*n)),
        Some(_) => return err("input attribute 'revCount' is not an integer"),
        None => return err("input attribute 'revCount' is missing"),
    }
    let nar_hash = fetch::nar_hash_of(ev, &path, None)?;
    Ok(Fetched {
        path,
        nar_hash,
        input,
    })
}

/// `MercurialInputScheme::fetch`: the store path, and the input completed with what was
/// found (`rev`, `ref` (the branch), `revCount`).
pub(crate) fn fetch_scheme(ev: &mut Evaluator, orig: &Input, check: &Check) -> EResult<Fetched> {
    let mut input = orig.clone();
    let name = input.name()?;
    let (is_local, actual) = actual_url(&input)?;

    if input.git_ref()?.is_none()
        && input.rev()?.is_none()
        && is_local
        && path_exists(&format!("{actual}/.hg"))
    {
        let changes = hg(&[
            "status",
            "-R",
            &actual,
            "--modified",
            "--added",
            "--removed",
        ])?;
        if !changes.is_empty() {
            eprintln!("warning: Mercurial tree '{actual}' is unclean");
            let branch = hg(&["branch", "-R", &actual])?;
            input.set("ref", Attr::Str(branch.trim_end_matches('\n').to_string()));
            let (path, nar_hash) = add_unclean(ev, &name, &actual, check)?;
            return Ok(Fetched {
                path,
                nar_hash,
                input,
            });
        }
    }

    if input.git_ref()?.is_none() {
        input.set("ref", Attr::Str("default".into()));
    }
    if let Some(rev) = input.rev()? {
        if let Some((info, path)) = fetch::cache_lookup(ev, &locked_attrs(&name, &rev)?)? {
            return from_cache(ev, input, &info, path);
        }
    }
    let Some(hg_ref) = input.git_ref()? else {
        return err("the Mercurial input has no ref");
    };
    let rev_or_ref = match input.rev()? {
        Some(r) => r.to_base16(),
        None => hg_ref.clone(),
    };
    let unlocked = attrs_of([
        ("type", "hg".into()),
        ("name", name.as_str().into()),
        ("url", actual.as_str().into()),
        ("ref", hg_ref.as_str().into()),
    ]);
    if let Some((info, path)) = fetch::cache_lookup(ev, &unlocked)? {
        let rev2 = match info.get("rev") {
            Some(Attr::Str(s)) => parse_sha1(s)?,
            _ => return err("input attribute 'rev' is missing"),
        };
        if input.rev()?.is_none_or(|r| r == rev2) {
            input.set("rev", Attr::Str(rev2.to_base16()));
            return from_cache(ev, input, &info, path);
        }
    }

    let (cache_dir, _lock) = fetch::repo_cache_dir(ev, "hg", &actual)?;
    let have = match input.rev()? {
        Some(r) => path_exists(&cache_dir) && has_revision(&cache_dir, &r.to_base16())?,
        None => false,
    };
    if !have {
        if path_exists(&cache_dir) {
            if let Err(status) = hg_run(&["pull", "-R", &cache_dir, "--", &actual])? {
                // An interrupted pull leaves a journal that makes every later one fail.
                if !path_exists(&format!("{cache_dir}/.hg/store/journal")) {
                    return err(format!("'hg pull' {}", describe(&status)));
                }
                hg(&["recover", "-R", &cache_dir])?;
                hg(&["pull", "-R", &cache_dir, "--", &actual])?;
            }
        } else {
            hg(&["clone", "--noupdate", "--", &actual, &cache_dir])?;
        }
    }

    let found = hg(&[
        "log",
        "-R",
        &cache_dir,
        "-r",
        &rev_or_ref,
        "--template",
        "{node} {rev} {branch}",
    ])?;
    let tokens: Vec<&str> = found.split_whitespace().collect();
    let [node, count, branch] = tokens[..] else {
        return err(format!(
            "unexpected output of 'hg log' for '{rev_or_ref}' in '{actual}': '{found}'"
        ));
    };
    let rev = parse_sha1(node)?;
    let count: u64 = count
        .parse()
        .map_err(|_| EvalError::new(format!("invalid revision number '{count}' from 'hg log'")))?;
    input.set("rev", Attr::Str(rev.to_base16()));
    input.set("ref", Attr::Str(branch.to_string()));

    let locked = locked_attrs(&name, &rev)?;
    if let Some((info, path)) = fetch::cache_lookup(ev, &locked)? {
        return from_cache(ev, input, &info, path);
    }

    let tmp = TempDir::new()?;
    let dir = tmp.0.join("archive");
    let dir_s = dir.to_string_lossy().into_owned();
    hg(&["archive", "-R", &cache_dir, "-r", &rev.to_base16(), &dir_s])?;
    let stamp = dir.join(".hg_archival.txt");
    match fs::remove_file(&stamp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return err(format!("removing '{}': {e}", stamp.display()));
        }
    }
    let (path, nar_hash) =
        fetch::add_tree_checked(ev, &name, &dir, None, check.expected, check.mismatch)?;

    let info = attrs_of([
        ("rev", rev.to_base16().into()),
        ("revCount", Attr::Int(count)),
    ]);
    if orig.rev()?.is_none() {
        fetch::cache_add(ev, &unlocked, &info, &path, false);
    }
    fetch::cache_add(ev, &locked, &info, &path, true);
    input.set("revCount", Attr::Int(count));
    Ok(Fetched {
        path,
        nar_hash,
        input,
    })
}

// ---------------------------------------------------------------------------------------------
// `builtins.fetchMercurial`

/// A full SHA-1 in hexadecimal (CppNix's `revRegex`).
fn is_rev(s: &str) -> bool {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    RE.get_or_init(|| regex::Regex::new("^[0-9a-fA-F]{40}$").expect("valid"))
        .is_match(s)
}

/// `fetchMercurial URL` or `fetchMercurial { url; rev ? ; name ? }`, where `rev` is either
/// a revision (40 hexadecimal digits) or a branch or tag name.
fn prim_fetch_mercurial(ev: &mut Evaluator, a: &[Thunk]) -> EResult<Value> {
    let v = force(ev, &a[0])?;
    let mut url = String::new();
    let mut rev: Option<Hash> = None;
    let mut hg_ref: Option<String> = None;
    let mut name = "source".to_string();
    if let Value::Attrs(set) = &v {
        for (k, t) in set.iter() {
            match &**k {
                "url" => {
                    let uv = force(ev, t)?;
                    url = ev.coerce_to_string(&uv, false, false)?.s.to_string();
                }
                "rev" => {
                    let s = string_no_ctx(ev, t)?;
                    if is_rev(&s) {
                        rev = Some(parse_sha1(&s)?);
                    } else {
                        hg_ref = Some(s);
                    }
                }
                "name" => name = string_no_ctx(ev, t)?,
                other => {
                    return err(format!(
                        "unsupported argument '{other}' to 'fetchMercurial'"
                    ))
                }
            }
        }
        if url.is_empty() {
            return err("'url' argument required");
        }
    } else {
        url = ev.coerce_to_string(&v, false, false)?.s.to_string();
    }
    ev.check_uri(&url)?;
    if ev.pure() && rev.is_none() {
        return err("in pure evaluation mode, 'fetchMercurial' requires a Mercurial revision");
    }
    let url = if url.contains("://") {
        url
    } else {
        format!("file://{url}")
    };
    let mut attrs: Attrs = attrs_of([
        ("type", "hg".into()),
        ("url", Attr::Str(url)),
        ("name", Attr::Str(name)),
    ]);
    if let Some(r) = hg_ref {
        attrs.insert("ref".into(), Attr::Str(r));
    }
    if let Some(r) = &rev {
        attrs.insert("rev".into(), Attr::Str(r.to_base16()));
    }
    let input = input_from_attrs(attrs)?;
    let (path, got) = fetch_input(ev, &input)?;

    let mut m = AttrMap::new();
    m.insert(
        "outPath".into(),
        Thunk::value(Value::String(ev.allowed_store_string(&path))),
    );
    if let Some(b) = got.git_ref()? {
        m.insert("branch".into(), Thunk::value(Value::str(b.as_str())));
    }
    let rev = match got.rev()? {
        Some(r) => r.to_base16(),
        None => "0".repeat(40),
    };
    m.insert(
        "shortRev".into(),
        Thunk::value(Value::str(rev.get(..12).unwrap_or(&rev))),
    );
    m.insert("rev".into(), Thunk::value(Value::str(rev.as_str())));
    if let Some(n) = got.int("revCount")? {
        m.insert("revCount".into(), Thunk::value(Value::Int(n as i64)));
    }
    Ok(Value::Attrs(std::rc::Rc::new(m.into())))
}

pub fn table() -> Vec<(&'static str, usize, PrimFn)> {
    vec![("fetchMercurial", 1, prim_fetch_mercurial)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions() {
        assert!(is_rev("d5f39d934a00f1df340c81ca942e0526012f7c8f"));
        assert!(is_rev("D5F39D934A00F1DF340C81CA942E0526012F7C8F"));
        assert!(!is_rev("default"));
        assert!(!is_rev("d5f39d934a00"));
        assert!(!is_rev("d5f39d934a00f1df340c81ca942e0526012f7c8f0"));
    }

    #[test]
    fn only_sha1_revisions() {
        let sha1 = Hash::digest(HashAlgo::Sha1, b"x");
        assert!(locked_attrs("source", &sha1).is_ok());
        let sha256 = Hash::digest(HashAlgo::Sha256, b"x");
        let e = locked_attrs("source", &sha256).expect_err("sha256 is refused");
        assert!(e.msg.contains("not supported by Mercurial"), "{}", e.msg);
    }
}
