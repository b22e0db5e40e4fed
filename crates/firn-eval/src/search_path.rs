//! The Nix search path's entries and the files named on command lines, as CppNix resolves
//! them:
//! - [`split_nix_path`]: `NIX_PATH` split at colons, but not at a URI's after its scheme
//!   (`nixpkgs=https://host/x.tar.gz:other=/p` is two entries);
//! - [`resolve_entry`]: an entry's directory: a path as it is (absolute), a URI
//!   (`http(s)://`, `file://`, `channel:NAME`, …) downloaded as a tarball and unpacked into
//!   the store; one that does not exist or cannot be downloaded is skipped with CppNix's
//!   warning. Each is resolved once per evaluation;
//! - [`lookup_file_arg`]: a file argument of `nix-instantiate`, `nix-build`, `nix eval
//!   --file`, the repl's `:l`: a URI (a tarball, unpacked), `<name>` (looked up in the search
//!   path), or a path.

use crate::error::EResult;
use crate::eval::Evaluator;
use crate::value::{Thunk, Value};

/// Whether `s` is a URI the search path and file arguments download (CppNix's `isUri`).
pub fn is_uri(s: &str) -> bool {
    if s.starts_with("channel:") {
        return true;
    }
    let Some(at) = s.find("://") else {
        return false;
    };
    matches!(
        &s[..at],
        "http" | "https" | "file" | "channel" | "git" | "s3" | "ssh"
    )
}

/// The URL of `uri`: `channel:NAME` is the channel's tarball on nixos.org.
pub fn resolve_uri(uri: &str) -> String {
    match uri.strip_prefix("channel:") {
        Some(name) => format!("https://nixos.org/channels/{name}/nixexprs.tar.xz"),
        None => uri.to_string(),
    }
}

/// `NIX_PATH`'s entries (`PREFIX=PATH` or `PATH`): split at each colon except the one after
/// a URI entry's scheme, as CppNix splits it (a port's colon still splits the entry there).
pub fn split_nix_path(s: &str) -> Vec<String> {
    let b = s.as_bytes();
    let mut entries = Vec::new();
    let mut p = 0;
    loop {
        let start = p;
        // Where the entry's path starts (after `PREFIX=`).
        let mut path = p;
        while p < b.len() && b[p] != b':' {
            if b[p] == b'=' {
                path = p + 1;
            }
            p += 1;
        }
        if p == b.len() {
            if p > start {
                entries.push(s[start..p].to_string());
            }
            return entries;
        }
        if is_uri(&s[path..]) {
            p += 1;
            while p < b.len() && b[p] != b':' {
                p += 1;
            }
        }
        // An empty entry between two colons is kept (a trailing one is not), as CppNix's.
        entries.push(s[start..p].to_string());
        if p == b.len() {
            return entries;
        }
        p += 1;
    }
}

/// The directory search path entry `path` stands for, or None (with CppNix's warning) if it
/// does not exist or cannot be downloaded. Resolved once per evaluation.
pub fn resolve_entry(ev: &mut Evaluator, path: &str) -> EResult<Option<String>> {
    if let Some(known) = ev.search_path_resolved.get(path) {
        return Ok(known.clone());
    }
    let resolved = if is_uri(path) {
        match download(ev, &resolve_uri(path)) {
            Ok(dir) => Some(dir),
            Err(e) if e.kind == crate::error::ErrorKind::Other => {
                warn(&e.msg);
                warn(&format!(
                    "Nix search path entry '{path}' cannot be downloaded, ignoring"
                ));
                None
            }
            Err(e) => return Err(e),
        }
    } else {
        let dir = absolute(path);
        if std::path::Path::new(&dir).exists() {
            Some(dir)
        } else {
            warn(&format!(
                "Nix search path entry '{path}' does not exist, ignoring"
            ));
            None
        }
    };
    ev.search_path_resolved
        .insert(path.to_string(), resolved.clone());
    Ok(resolved)
}

/// Where a file argument is (CppNix's `lookupFileArg`): a URI's tarball unpacked in the
/// store, `<name>` found in the search path, otherwise the path made absolute.
pub fn lookup_file_arg(ev: &mut Evaluator, arg: &str) -> EResult<String> {
    if is_uri(arg) {
        return download(ev, &resolve_uri(arg));
    }
    if arg.len() > 2 && arg.starts_with('<') && arg.ends_with('>') {
        let search = match ev.builtins.peek() {
            Some(Value::Attrs(m)) => m.get("nixPath").cloned(),
            _ => None,
        };
        let search = search.unwrap_or_else(|| Thunk::value(Value::List(Default::default())));
        let found = crate::builtins_more::find_file(ev, &search, &arg[1..arg.len() - 1])?;
        return Ok(match found {
            Value::Path(p) => p.to_string(),
            other => ev.coerce_to_string(&other, false, false)?.s.to_string(),
        });
    }
    Ok(absolute(arg))
}

/// `url`'s tarball, unpacked into the store (named `source`, as CppNix's), where it is on
/// disk; the evaluation may read it.
fn download(ev: &mut Evaluator, url: &str) -> EResult<String> {
    let no_check = |_: &Evaluator, _: &firn_format::StorePath, _: &firn_format::hash::Hash| {
        crate::error::EvalError::new("the download was not expected to have a hash")
    };
    let t = crate::fetch::download_tarball(ev, url, "source", false, None, &no_check)?;
    let shown = ev.allowed_store_string(&t.path);
    Ok(ev.store.real_path(&shown.s).to_string_lossy().into_owned())
}

/// `path` made absolute against the current directory (not resolving symbolic links), as
/// CppNix's `absPath`.
fn absolute(path: &str) -> String {
    if path.starts_with('/') {
        return crate::eval::canon_path(path);
    }
    let cwd = std::env::current_dir()
        .map(|d| d.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "/".into());
    crate::eval::canon_path(&format!("{}/{path}", cwd.trim_end_matches('/')))
}

fn warn(text: &str) {
    crate::term::write_stderr_line(&format!("warning: {text}"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        for s in [
            "https://x/y.tar.gz",
            "file:///a",
            "channel:nixos-24.05",
            "s3://b/k",
        ] {
            assert!(is_uri(s), "{s}");
        }
        for s in ["/nix/store", "ftp://x", "relative", "a=b", "nixpkgs"] {
            assert!(!is_uri(s), "{s}");
        }
        assert_eq!(
            resolve_uri("channel:nixos-unstable"),
            "https://nixos.org/channels/nixos-unstable/nixexprs.tar.xz"
        );
        assert_eq!(resolve_uri("https://h/x"), "https://h/x");
    }

    #[test]
    fn nix_path_is_split_outside_uris() {
        assert_eq!(
            split_nix_path("foo=file:///tmp/t.tar.gz:bar=/tmp:channel:nixos-unstable"),
            [
                "foo=file:///tmp/t.tar.gz",
                "bar=/tmp",
                "channel:nixos-unstable"
            ]
        );
        assert_eq!(
            split_nix_path("nixpkgs=https://host:8080/x.tar.gz:/p::/q:"),
            ["nixpkgs=https://host", "8080/x.tar.gz", "/p", "", "/q"]
        );
        assert_eq!(split_nix_path("a=/x:b=/y"), ["a=/x", "b=/y"]);
        assert_eq!(split_nix_path(""), Vec::<String>::new());
        assert_eq!(split_nix_path("/only"), ["/only"]);
        assert_eq!(split_nix_path(":"), [""]);
    }
}
