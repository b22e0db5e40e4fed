//! Import from derivation: the paths a string refers to made to exist before a file builtin
//! (`import`, `readFile`, `readDir`, `pathExists`, ...) reads it, as CppNix's
//! `realiseContext`. Every path of the context must be valid in the store (a derivation
//! made by a read-only evaluation is not); the outputs of derivations named in it are built
//! (or substituted) first, and the placeholders of those whose paths were not known before
//! (floating content-addressed outputs) replaced in the path read by the paths built.
//! Building is not the evaluator's business: the program installs a
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
    /// Build (or substitute) `outputs` of each derivation into `store`, and give the path of
    /// each output built, by derivation and output name; `Err` is the message of the error
    /// the evaluation stops with.
    fn build(
        &self,
        store: &LocalStore,
        wanted: &BTreeMap<StorePath, BTreeSet<String>>,
    ) -> Result<BTreeMap<StorePath, BTreeMap<String, StorePath>>, String>;
}

static BUILDER: OnceLock<Box<dyn Builder>> = OnceLock::new();

/// Install the builder of this process (the first one installed stays).
pub fn set_builder(builder: Box<dyn Builder>) {
    let _ = BUILDER.set(builder);
}

/// A context element taken apart: the store path, and the output for `!OUT!DRV` (a plain
/// path and a whole derivation `=DRV` have none).
pub fn element(c: &str) -> EResult<(&str, Option<&str>)> {
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

/// What the placeholders of outputs built stand for: pairs of a placeholder and the path.
pub(crate) type Rewrites = Vec<(String, String)>;

/// `s` with each placeholder of `rewrites` replaced by its path (CppNix's `rewriteStrings`).
pub(crate) fn rewrite(s: String, rewrites: &Rewrites) -> String {
    rewrites.iter().fold(s, |s, (from, to)| {
        if s.contains(from.as_str()) {
            s.replace(from.as_str(), to)
        } else {
            s
        }
    })
}

/// Make the paths of `context`, the context of `path`, exist ([`realise_context`]), and give
/// `path` with the placeholders of outputs built replaced; an error gets CppNix's frame.
pub(crate) fn realise_path(ev: &mut Evaluator, path: String, context: &[RcStr]) -> EResult<String> {
    if context.is_empty() {
        return Ok(path);
    }
    match realise_context(ev, context) {
        Ok(rewrites) => Ok(rewrite(path, &rewrites)),
        Err(mut x) => {
            x.trace
                .push(format!("while realising the context of path '{path}'"));
            Err(x)
        }
    }
}

/// Make every path of `context` exist: each must be valid in the store, and the derivation
/// outputs named are built. A path built is readable in pure and restricted evaluation.
/// Gives what the placeholders of the outputs built stand for (a floating content-addressed
/// output is named by one until it is built).
pub(crate) fn realise_context(ev: &mut Evaluator, context: &[RcStr]) -> EResult<Rewrites> {
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
        return Ok(Vec::new());
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
    let built = builder.build(&store, &wanted).map_err(EvalError::new)?;
    let mut rewrites = Vec::new();
    for (drv, outputs) in &wanted {
        let drv_name = drv.name().strip_suffix(".drv").unwrap_or(drv.name());
        for o in outputs {
            let Some(p) = built.get(drv).and_then(|m| m.get(o)) else {
                return err(format!(
                    "derivation '{}' does not have an output named '{o}'",
                    ev.store.dir.display(drv)
                ));
            };
            let shown = ev.store.dir.display(p);
            ev.allow_store_path(&shown);
            let placeholder =
                firn_format::derivation::modulo::downstream_placeholder(drv, drv_name, o);
            rewrites.push((placeholder, shown));
        }
    }
    Ok(rewrites)
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

    #[test]
    fn placeholders_are_replaced_by_the_paths_built() {
        let r = vec![
            ("/aaa".to_string(), "/nix/store/x-a".to_string()),
            ("/bbb".to_string(), "/nix/store/y-b".to_string()),
        ];
        assert_eq!(rewrite("/aaa/sub".into(), &r), "/nix/store/x-a/sub");
        assert_eq!(
            rewrite("/bbb:/aaa".into(), &r),
            "/nix/store/y-b:/nix/store/x-a"
        );
        assert_eq!(rewrite("/ccc".into(), &r), "/ccc");
    }
}
