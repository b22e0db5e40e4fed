//! The `git` input scheme of CppNix 2.8 (`builtins.fetchGit`, and `builtins.fetchTree` with
//! `type = "git"`; the generic part is in [`crate::fetch_tree`]), driving the `git`
//! command-line tool:
//!
//! - A local repository (a path, or a `file://` URL of a directory with a `.git`) without
//!   `rev` or `ref`: a dirty working tree (`git diff HEAD` finds changes to tracked files)
//!   gives its tracked files (`git ls-files`) without a `rev` (`fetchGit` shows the all-zero
//!   one and `revCount = 0`); a clean one gives `HEAD` (the current branch).
//! - Otherwise the commit (`rev`, or the tip of `ref`) is exported with `git archive` (or,
//!   with `submodules = true`, checked out with its submodules, without `.git`). A local
//!   repository is read in place; any other (a remote, a bare repository) is fetched into a
//!   bare cache repository `$XDG_CACHE_HOME/nix/gitv3/<nix32 sha256 of the URL>`, the one
//!   CppNix uses, refreshed when the ref there is older than `tarball-ttl` (one hour).
//! - CppNix's fetcher cache (`fetcher-cache-v1.sqlite`, see [`crate::fetch`]) remembers each
//!   exported revision (`{type = "git"; name; rev}`, never expiring) and the tip of a remote
//!   ref (`{type; name; url; ref}`, for `tarball-ttl`), so a known revision is not exported
//!   again; the entries are CppNix's own, so either finds the other's.
//!
//! The store path is added even in read-only evaluation, as CppNix does.

use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;

use firn_format::{Hash, HashAlgo, StorePath};
use firn_store::exit_status::describe;

use crate::builtins::PrimFn;
use crate::error::{err, EResult, EvalError};
use crate::eval::Evaluator;
use crate::fetch::{self, attrs_of, parse_sha1, path_exists, TempDir, TARBALL_TTL};
use crate::fetch_tree::{parse_url, Attr, Attrs, Check, Fetched, Input, Params};
use crate::value::*;

/// The initial branch of cache repositories (its value does not matter: CppNix's).
const GIT_INITIAL_BRANCH: &str = "__nix_dummy_branch";

// ---------------------------------------------------------------------------------------------
// The input: CppNix's `fetchers::Attrs` of a `git` input.

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

/// `GitInputScheme::inputFromAttrs`: the checks made before fetching.
pub(crate) fn check_attrs(input: &Input) -> EResult<()> {
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
    if let Some(k) = input.attrs.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return err(format!("unsupported Git input attribute '{k}'"));
    }
    parse_url(&input.url()?)?;
    input.bool("shallow")?;
    input.bool("submodules")?;
    input.bool("allRefs")?;
    if let Some(r) = input.git_ref()? {
        if bad_git_ref(&r) {
            return err(format!("invalid Git branch/tag name '{r}'"));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Running git.

/// What a git command printed and how it ended.
struct Run {
    status: ExitStatus,
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
        status: out.status,
        code: out.status.code(),
        stdout: out.stdout,
        merged,
    })
}

/// CppNix's `runProgram("git", ...)`: stdout, or an error when git fails. The error names the
/// repository being fetched.
fn git(args: &[&str], url: &str) -> EResult<String> {
    let r = git_run(args, false, false)?;
    if r.code != Some(0) {
        return Err(git_failed(&r.status, url));
    }
    Ok(String::from_utf8_lossy(&r.stdout).into_owned())
}

fn git_failed(status: &ExitStatus, url: &str) -> EvalError {
    EvalError::new(format!(
        "program 'git' {} (while fetching Git repository '{url}')",
        describe(status)
    ))
}

fn parse_u64(s: &str, what: &str) -> EResult<u64> {
    s.trim()
        .parse()
        .map_err(|_| EvalError::new(format!("invalid {what} '{}' from git", s.trim())))
}

fn epoch_secs(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Fetching.

/// `(is_local, actual_url)`: a `file://` URL of a directory with a `.git` is read in place
/// (unless `_NIX_FORCE_HTTP=1`); anything else is fetched into the cache.
fn actual_url(input: &Input) -> EResult<(bool, String)> {
    let url = parse_url(&input.url()?)?;
    let force_http = std::env::var("_NIX_FORCE_HTTP").is_ok_and(|v| v == "1");
    let bare = url.scheme == "file" && !path_exists(&format!("{}/.git", url.path));
    let local = url.scheme == "file" && !force_http && !bare;
    Ok((local, if local { url.path } else { url.base }))
}

/// Where a revision is exported from.
struct Repo<'a> {
    /// The repository (a working tree, or the bare cache repository).
    dir: &'a str,
    /// Its `--git-dir`.
    git_dir: &'a str,
    /// The URL being fetched (for messages, and the submodules' `origin`).
    actual_url: &'a str,
}

/// The whole export of `rev` from `repo`, added to the store.
fn export(
    ev: &mut Evaluator,
    name: &str,
    repo: &Repo,
    rev: &str,
    submodules: bool,
    check: &Check,
) -> EResult<(StorePath, Hash)> {
    let (repo_dir, git_dir, actual_url) = (repo.dir, repo.git_dir, repo.actual_url);
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
        return fetch::add_tree_checked(
            ev,
            name,
            &dir,
            Some(&mut keep),
            check.expected,
            check.mismatch,
        );
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
        return Err(git_failed(&status, actual_url));
    }
    unpacked.map_err(|e| {
        EvalError::new(format!(
            "unpacking revision '{rev}' of Git repository '{actual_url}': {e}"
        ))
    })?;
    fetch::add_tree_checked(ev, name, &dir, None, check.expected, check.mismatch)
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
    check: &Check,
) -> EResult<(StorePath, Hash)> {
    let mut args = vec!["-C", actual_url, "--git-dir", git_dir, "ls-files", "-z"];
    if submodules {
        args.push("--recurse-submodules");
    }
    let r = git_run(&args, false, false)?;
    if r.code != Some(0) {
        return Err(git_failed(&r.status, actual_url));
    }
    fetch::add_listed_files(ev, name, actual_url, &r.stdout, check)
}

/// The fetcher cache's key of an exported revision.
fn locked_attrs(cache_type: &str, name: &str, rev: &Hash) -> EResult<Attrs> {
    if !matches!(rev.algo(), HashAlgo::Sha1 | HashAlgo::Sha256) {
        return err(format!(
            "Hash '{}' is not supported by Git. Supported types are sha1 and sha256.",
            rev.encode(firn_format::hash::HashFormat::Base16, true)
        ));
    }
    Ok(attrs_of([
        ("type", cache_type.into()),
        ("name", name.into()),
        ("rev", rev.to_base16().into()),
    ]))
}

/// CppNix's `makeResult`: the input completed from a cache entry's information.
fn from_cache(
    ev: &mut Evaluator,
    input: &mut Input,
    shallow: bool,
    info: &Attrs,
    path: StorePath,
) -> EResult<Fetched> {
    let int = |name: &str| match info.get(name) {
        Some(Attr::Int(n)) => Ok(*n),
        Some(_) => err(format!("input attribute '{name}' is not an integer")),
        None => err(format!("input attribute '{name}' is missing")),
    };
    if !shallow {
        input.set("revCount", Attr::Int(int("revCount")?));
    }
    input.set("lastModified", Attr::Int(int("lastModified")?));
    let nar_hash = fetch::nar_hash_of(ev, &path, None)?;
    Ok(Fetched {
        path,
        nar_hash,
        input: input.clone(),
    })
}

/// `GitInputScheme::fetch`: the store path, and the input completed with what was found
/// (`rev`, `ref`, `revCount`, `lastModified`).
pub(crate) fn fetch_scheme(ev: &mut Evaluator, orig: &Input, check: &Check) -> EResult<Fetched> {
    let mut owned = orig.clone();
    let input = &mut owned;
    let mut git_dir = std::env::var("GIT_DIR").unwrap_or_else(|_| ".git".into());
    let name = input.name()?;
    let shallow = input.bool("shallow")?.unwrap_or(false);
    let submodules = input.bool("submodules")?.unwrap_or(false);
    let all_refs = input.bool("allRefs")?.unwrap_or(false);
    let mut cache_type = "git".to_string();
    if shallow {
        cache_type.push_str("-shallow");
    }
    if submodules {
        cache_type.push_str("-submodules");
    }
    if all_refs {
        cache_type.push_str("-all-refs");
    }
    if let Some(rev) = input.rev()? {
        let key = locked_attrs(&cache_type, &name, &rev)?;
        if let Some((info, path)) = fetch::cache_lookup(ev, &key)? {
            return from_cache(ev, input, shallow, &info, path);
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
                _ => return Err(git_failed(&r.status, &actual)),
            }
        }
        if !clean {
            eprintln!("warning: Git tree '{actual}' is dirty");
            let (path, nar_hash) = add_dirty(ev, &name, &actual, &git_dir, submodules, check)?;
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
            return Ok(Fetched {
                path,
                nar_hash,
                input: input.clone(),
            });
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
    let Some(git_ref) = input.git_ref()? else {
        return err("the Git input has no ref");
    };
    let unlocked = attrs_of([
        ("type", cache_type.as_str().into()),
        ("name", name.as_str().into()),
        ("url", actual.as_str().into()),
        ("ref", git_ref.as_str().into()),
    ]);

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
        if let Some((info, path)) = fetch::cache_lookup(ev, &unlocked)? {
            let rev2 = match info.get("rev") {
                Some(Attr::Str(s)) => parse_sha1(s)?,
                _ => return err("input attribute 'rev' is missing"),
            };
            if input.rev()?.is_none_or(|r| r == rev2) {
                input.set("rev", Attr::Str(rev2.to_base16()));
                return from_cache(ev, input, shallow, &info, path);
            }
        }
        let (cache_dir, _lock) = fetch::repo_cache_dir(ev, "gitv3", &actual)?;
        repo_dir = cache_dir.clone();
        git_dir = ".".into();
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
                None => return Err(git_failed(&r.status, &actual)),
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

    let Some(rev_hash) = input.rev()? else {
        return err("the Git input has no rev");
    };
    // Now that the revision is known, it may have been exported before.
    let locked = locked_attrs(&cache_type, &name, &rev_hash)?;
    if let Some((info, path)) = fetch::cache_lookup(ev, &locked)? {
        return from_cache(ev, input, shallow, &info, path);
    }
    let rev = rev_hash.to_base16();
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

    let repo = Repo {
        dir: &repo_dir,
        git_dir: &git_dir,
        actual_url: &actual,
    };
    let (path, nar_hash) = export(ev, &name, &repo, &rev, submodules, check)?;

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
    let mut info = attrs_of([
        ("rev", rev.as_str().into()),
        ("lastModified", Attr::Int(last_modified)),
    ]);
    if let Some(n) = input.int("revCount")?.filter(|_| !shallow) {
        info.insert("revCount".into(), Attr::Int(n));
    }
    if orig.rev()?.is_none() {
        fetch::cache_add(ev, &unlocked, &info, &path, false);
    }
    fetch::cache_add(ev, &locked, &info, &path, true);
    Ok(Fetched {
        path,
        nar_hash,
        input: input.clone(),
    })
}

fn fetch_git(ev: &mut Evaluator, a: &[Thunk]) -> EResult<Value> {
    crate::fetch_tree::fetch_tree_with(
        ev,
        &a[0],
        Some("git"),
        Params {
            empty_rev_fallback: true,
            allow_name: true,
        },
    )
}

pub fn table() -> Vec<(&'static str, usize, PrimFn)> {
    vec![("fetchGit", 1, fetch_git)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs() {
        assert!(!bad_git_ref("main"));
        assert!(!bad_git_ref("refs/heads/feature-1"));
        for bad in ["", "a..b", "a b", "x.lock", "/a", "a/", "@", "a@{b", "a~1"] {
            assert!(bad_git_ref(bad), "{bad}");
        }
    }
}
