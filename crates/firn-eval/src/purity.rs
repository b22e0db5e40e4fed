//! Pure and restricted evaluation (the `pure-eval` and `restrict-eval` settings; `nix eval
//! --expr` and the other new commands evaluate purely unless `--impure`), as CppNix 2.8:
//!
//! - Files may be read (imported, read, listed, hashed, copied to the store) only under the
//!   allowed paths: the search path's entries, store paths the evaluation itself made by
//!   copying sources, and fetched trees. Anything else is "access to absolute path '…' is
//!   forbidden in pure eval mode (use '--impure' to override)" (or "in restricted mode"),
//!   checked on the path as written and again with its symbolic links resolved.
//! - `builtins.getEnv` gives `""`.
//! - Restricted only: fetchers take only URIs under an `allowed-uris` prefix, or paths that
//!   may be read (`check_uri`).
//! - Pure only: no search path (`<…>` fails, `builtins.nixPath` is empty), no
//!   `currentSystem` or `currentTime`, no `builtins.storePath`, and fetchers need a hash
//!   (`fetchurl`, `fetchTarball`) or a locked input (`fetchTree`, `fetchGit`).

use crate::error::{err, EResult};
use crate::eval::{Evaluator, COREPKGS};
use crate::value::{NixString, ThunkState, Value};

/// How evaluation may reach outside its inputs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Restriction {
    #[default]
    None,
    /// `restrict-eval`.
    Restricted,
    /// `pure-eval`.
    Pure,
}

impl Evaluator {
    /// Evaluate with restriction `r` from here on: call it once, after the search path is set
    /// ([`Evaluator::set_search_path`]) and before evaluating.
    pub fn restrict(&mut self, r: Restriction) {
        self.restriction = r;
        if r == Restriction::None {
            return;
        }
        if r == Restriction::Pure {
            self.set_search_path_entries(Vec::new());
            self.remove_builtins(&["currentSystem", "currentTime"]);
        }
        // The search path's entries are readable (pure evaluation has none).
        for p in self.search_path_entries() {
            if p.starts_with('/') {
                self.allow(&firn_syntax::parser::canon_path(&p));
            }
        }
    }

    /// Whether evaluation is pure (`pure-eval`).
    pub fn pure(&self) -> bool {
        self.restriction == Restriction::Pure
    }

    /// Whether the environment is hidden from `builtins.getEnv` (pure or restricted).
    pub(crate) fn hides_env(&self) -> bool {
        self.restriction != Restriction::None
    }

    /// Store path `p` as a string with itself as context, readable by the evaluation from now
    /// on (CppNix's `allowAndSetStorePathString`): what `builtins.path`, the fetchers and
    /// sources copied to the store give.
    pub(crate) fn allowed_store_string(&mut self, p: &firn_format::StorePath) -> NixString {
        let s = self.store.dir.display(p);
        self.allow_store_path(&s);
        NixString::with_context(s.clone(), vec![s.as_str().into()])
    }

    /// Let evaluation read store path `shown` (as printed), which it made or fetched: the
    /// path, and where a chroot store keeps it.
    pub fn allow_store_path(&mut self, shown: &str) {
        if self.restriction != Restriction::None {
            let real = self.store.real_path(shown).to_string_lossy().into_owned();
            self.allow(shown);
            self.allow(&real);
        }
    }

    /// `path` if evaluation may read it (CppNix's `checkSourcePath`), as given; an error if
    /// not.
    pub fn check_source_path(&self, path: &str) -> EResult<()> {
        if self.restriction == Restriction::None {
            return Ok(());
        }
        let abs = firn_syntax::parser::canon_path(path);
        if abs.starts_with(COREPKGS) {
            return Ok(());
        }
        let mode = if self.pure() {
            "in pure eval mode (use '--impure' to override)"
        } else {
            "in restricted mode"
        };
        if !self.allowed(&abs) {
            return err(format!(
                "access to absolute path '{abs}' is forbidden {mode}"
            ));
        }
        // With symbolic links resolved, it must still be allowed (a link must not lead out).
        // A path that does not exist is left to the reading to report.
        if let Ok(real) = std::fs::canonicalize(&abs) {
            let real = real.to_string_lossy();
            if !self.allowed(&real) {
                return err(format!(
                    "access to canonical path '{real}' is forbidden {mode}"
                ));
            }
        }
        Ok(())
    }

    /// Whether a fetcher may use `uri` (CppNix's `checkURI`): in restricted evaluation only
    /// one equal to an `allowed-uris` prefix or under it (after a `/`), or a path (or
    /// `file://` URI) that may be read.
    pub fn check_uri(&self, uri: &str) -> EResult<()> {
        if self.restriction != Restriction::Restricted {
            return Ok(());
        }
        let under = |prefix: &String| {
            uri == prefix
                || (!prefix.is_empty()
                    && uri.len() > prefix.len()
                    && uri.starts_with(prefix.as_str())
                    && (prefix.ends_with('/') || uri.as_bytes()[prefix.len()] == b'/'))
        };
        if self.allowed_uris.iter().any(under) {
            return Ok(());
        }
        if uri.starts_with('/') {
            return self.check_source_path(uri);
        }
        if let Some(path) = uri.strip_prefix("file://") {
            return self.check_source_path(path);
        }
        err(format!(
            "access to URI '{uri}' is forbidden in restricted mode"
        ))
    }

    /// `path` (absolute) and what is under it become readable.
    fn allow(&mut self, path: &str) {
        let p = path.trim_end_matches('/');
        let p = if p.is_empty() { "/" } else { p };
        if !self.allowed_paths.contains(p) {
            self.allowed_paths.insert(p.to_string());
        }
    }

    /// Whether `abs` (canonical) is an allowed path or under one: a lookup for it and each of
    /// its parents, however many paths were allowed (every source copied and tree fetched
    /// adds one).
    fn allowed(&self, abs: &str) -> bool {
        let mut p = abs.trim_end_matches('/');
        if p.is_empty() {
            p = "/";
        }
        loop {
            if self.allowed_paths.contains(p) {
                return true;
            }
            p = match p.rfind('/') {
                _ if p == "/" => return false,
                Some(0) => "/",
                Some(i) => &p[..i],
                None => return false,
            };
        }
    }

    /// Builtins taken away (`builtins.NAME` and the global `__NAME`).
    fn remove_builtins(&mut self, names: &[&str]) {
        if let Some(Value::Attrs(set)) = self.builtins.peek() {
            let mut kept = (*set).clone();
            for n in names {
                kept.map.remove(*n);
            }
            self.builtins
                .set(ThunkState::Done(Value::Attrs(std::rc::Rc::new(kept))));
        }
        for n in names {
            let sym = self.sym(&format!("__{n}"));
            if let Some(g) = self.globals.get_mut(sym.0 as usize) {
                *g = None;
            }
        }
    }
}

/// In pure evaluation, fetcher `who` must be given the hash of what it fetches.
pub(crate) fn require_hash(ev: &Evaluator, who: &str, has_hash: bool) -> EResult<()> {
    if ev.pure() && !has_hash {
        return err(format!(
            "in pure evaluation mode, '{who}' requires a 'sha256' argument"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_paths_cover_what_is_under_them_only() {
        let mut ev = Evaluator::new();
        ev.restrict(Restriction::Pure);
        ev.allow("/a/b/");
        assert!(ev.allowed("/a/b") && ev.allowed("/a/b/c/d"));
        assert!(!ev.allowed("/a") && !ev.allowed("/a/bc") && !ev.allowed("/"));
        assert!(ev.check_source_path("/a/b/../x").is_err());
        ev.allow("/");
        assert!(ev.allowed("/anything/at/all"));
    }
}
