//! Import from derivation: the paths a string refers to made to exist before a file builtin
//! (`import`, `readFile`, `readDir`, `pathExists`, ...) reads it, as CppNix's
//! `realiseContext`. Every path of the context must be valid in the store (a derivation
//! made by a read-only evaluation is not); the outputs of derivations named in it are built
//! (or substituted) first. Building is not the evaluator's business: the program installs a
//! [`Builder`] ([`set_builder`]) that builds with its settings, and refuses when
//! `allow-import-from-derivation` is off.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use firn_format::StorePath;
use firn_store::LocalStore;

use crate::builtins_drv::parse_store_path;
use crate::error::{err, EResult, EvalError};
use crate::eval::Evaluator;
use crate::rc_str::RcStr;

/// How derivation outputs are built during an evaluation.
pub trait Builder: Send + Sync {
    /// Build (or substitute) `outputs` of each derivation into `store`; `Err` is the
    /// message of the error the evaluation stops with.
    fn build(
        &self,
        store: &LocalStore,
        wanted: &BTreeMap<StorePath, BTreeSet<String>>,
    ) -> Result<(), String>;
}

static BUILDER: OnceLock<Box<dyn Builder>> = OnceLock::new();

/// Install the builder of this process (the first one installed stays).
pub fn set_builder(builder: Box<dyn Builder>) {
    let _ = BUILDER.set(builder);
}

/// A context element taken apart: the store path, and the output for `!OUT!DRV`.
fn element(c: &str) -> EResult<(&str, Option<&str>)> {
    if let Some(p) = c.strip_prefix('=') {
        return Ok((p, None));
    }
    match c.strip_prefix('!').and_then(|r| r.split_once('!')) {
        Some((_, rest)) if rest.contains('!') => err(format!(
            "building an output of an output ('{c}') during evaluation is not supported"
        )),
        Some((out, drv)) => Ok((drv, Some(out))),
        None => Ok((c, None)),
    }
}

/// Make the paths of `context`, the context of `path`, exist ([`realise_context`]); an error
/// gets CppNix's frame.
pub(crate) fn realise_path(ev: &mut Evaluator, path: &str, context: &[RcStr]) -> EResult<()> {
    if context.is_empty() {
        return Ok(());
    }
    realise_context(ev, context).map_err(|mut x| {
        x.trace
            .push(format!("while realising the context of path '{path}'"));
        x
    })
}

/// Make every path of `context` exist: each must be valid in the store, and the derivation
/// outputs named are built. A path built is readable in pure and restricted evaluation.
pub(crate) fn realise_context(ev: &mut Evaluator, context: &[RcStr]) -> EResult<()> {
    let mut wanted: BTreeMap<StorePath, BTreeSet<String>> = BTreeMap::new();
    for c in context {
        let (path, output) = element(c)?;
        let p = parse_store_path(ev, path)?;
        if !valid_in_store(ev, &p)? {
            return err(format!("path '{path}' is not valid"));
        }
        if let Some(o) = output.filter(|_| p.is_derivation()) {
            wanted.entry(p).or_default().insert(o.to_string());
        }
    }
    if wanted.is_empty() {
        return Ok(());
    }
    let Some(store) = ev.store.backend().cloned() else {
        return err("cannot build during an evaluation without a store");
    };
    let Some(builder) = BUILDER.get() else {
        let (drv, _) = wanted.iter().next().expect("not empty");
        return err(format!(
            "cannot build '{}' during evaluation in this program",
            ev.store.dir.display(drv)
        ));
    };
    builder.build(&store, &wanted).map_err(EvalError::new)?;
    for (drv, outputs) in &wanted {
        for o in outputs {
            if let Some(Some(p)) = ev.store.output_path(drv, o)? {
                let shown = ev.store.dir.display(&p);
                ev.allow_store_path(&shown);
            }
        }
    }
    Ok(())
}

/// Whether `p` is in the store itself (a derivation of a read-only evaluation is not).
fn valid_in_store(ev: &Evaluator, p: &StorePath) -> EResult<bool> {
    if ev.store.writes() {
        return ev.store.is_valid(p);
    }
    match ev.store.backend() {
        Some(s) => s.is_valid_path(p).map_err(|e| {
            EvalError::new(format!("querying path '{}': {e}", ev.store.dir.display(p)))
        }),
        None => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_elements_are_taken_apart() {
        let drv = "/nix/store/00000000000000000000000000000000-x.drv";
        assert_eq!(element(drv).ok(), Some((drv, None)));
        assert_eq!(element(&format!("={drv}")).ok(), Some((drv, None)));
        assert_eq!(
            element(&format!("!out!{drv}")).ok(),
            Some((drv, Some("out")))
        );
        assert!(element(&format!("!out!dev!{drv}")).is_err());
    }
}
