//! Pure and restricted evaluation (the `pure-eval` and `restrict-eval` settings; `nix eval
//! --expr` and the other new commands evaluate purely unless `--impure`), as CppNix 2.8:
//!
//! - Files may be read (imported, read, listed, hashed, copied to the store) only under the
//!   allowed paths: the search path's entries, store paths the evaluation itself made by
//!   copying sources, and fetched trees. Anything else is "access to absolute path '…' is
//!   forbidden in pure eval mode (use '--impure' to override)" (or "in restricted mode"),
//!   checked on the path as written and again with its symbolic links resolved.
//! - `builtins.getEnv` gives `""`.
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
        self.allowed_paths = self
            .search_path_entries()
            .into_iter()
            .filter(|p| p.starts_with('/'))
            .map(|p| firn_syntax::parser::canon_path(&p))
            .collect();
    }

    /// Whether evaluation is pure (`pure-eval`).
    pub fn pure(&self) -> bool {
        self.restriction == Restriction::Pure
    }

    /// Whether the environment is hidden from `builtins.getEnv` (pure or restricted).
    pub(crate) fn hides_env(&self) -> bool {
        self.restriction != Restriction::None
    }

    /// Let evaluation read `path` (and what is under it) from now on.
    pub fn allow_path(&mut self, path: &str) {
        if self.restriction != Restriction::None {
            self.allowed_paths.push(path.to_string());
        }
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
            self.allowed_paths.push(shown.to_string());
            if real != shown {
                self.allowed_paths.push(real);
            }
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

    fn allowed(&self, abs: &str) -> bool {
        self.allowed_paths.iter().any(|a| {
            let a = a.trim_end_matches('/');
            abs == a
                || abs
                    .strip_prefix(a)
                    .is_some_and(|rest| rest.starts_with('/'))
                || a.is_empty()
        })
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
