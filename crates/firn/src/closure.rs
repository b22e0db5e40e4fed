//! Closures and topological order over the store's reference graph, as CppNix computes them
//! (the output order of `nix-store -qR`, `--tree` and `nix path-info -r` depends on it).

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result};
use firn_format::derivation::Derivation;
use firn_format::StorePath;
use firn_store::LocalStore;

use crate::paths::path_info;

/// What to follow besides references.
#[derive(Clone, Copy, Debug, Default)]
pub struct ClosureOptions {
    /// Follow referrers instead of references.
    pub flip: bool,
    /// Include the outputs of derivations (or, flipped, the derivers of outputs).
    pub include_outputs: bool,
    /// Include derivers (or, flipped, the outputs of derivations).
    pub include_derivers: bool,
}

/// Nix's `computeFSClosure`.
pub fn compute_closure(
    store: &LocalStore,
    start: impl IntoIterator<Item = StorePath>,
    opts: &ClosureOptions,
) -> Result<BTreeSet<StorePath>> {
    let mut seen = BTreeSet::new();
    let mut stack: Vec<StorePath> = start.into_iter().collect();
    while let Some(p) = stack.pop() {
        if !seen.insert(p.clone()) {
            continue;
        }
        let mut next: Vec<StorePath> = Vec::new();
        if opts.flip {
            next.extend(store.query_referrers(&p)?);
            if opts.include_outputs {
                for d in store.query_valid_derivers(&p)? {
                    next.push(d);
                }
            }
            if opts.include_derivers && p.is_derivation() {
                for o in store.query_derivation_outputs(&p)?.into_values() {
                    if store.is_valid_path(&o)? {
                        next.push(o);
                    }
                }
            }
        } else {
            let info = path_info(store, &p)?;
            next.extend(info.references.iter().cloned());
            if opts.include_outputs && p.is_derivation() {
                for o in store.query_derivation_outputs(&p)?.into_values() {
                    if store.is_valid_path(&o)? {
                        next.push(o);
                    }
                }
            }
            if opts.include_derivers {
                if let Some(d) = &info.deriver {
                    if store.is_valid_path(d)? {
                        next.push(d.clone());
                    }
                }
            }
        }
        stack.extend(next.into_iter().filter(|n| !seen.contains(n)));
    }
    Ok(seen)
}

/// Nix's `topoSortPaths`: referrers before the paths they reference; ties broken by the sorted
/// order of the set, exactly as CppNix's depth-first search does.
pub fn topo_sort(store: &LocalStore, paths: &BTreeSet<StorePath>) -> Result<Vec<StorePath>> {
    // One batch: the store then reads what it has not cached in one transaction.
    let list: Vec<StorePath> = paths.iter().cloned().collect();
    let infos = store.query_path_infos(&list)?;
    let mut refs: BTreeMap<&StorePath, std::sync::Arc<firn_store::ValidPathInfo>> = BTreeMap::new();
    for (p, info) in paths.iter().zip(infos) {
        match info {
            Some(i) => refs.insert(p, i),
            None => anyhow::bail!("path '{}' is not valid", store.store_dir().display(p)),
        };
    }
    topo_sort_with(paths, |p| {
        refs.get(p)
            .map(|i| i.references.clone())
            .unwrap_or_default()
    })
}

/// [`topo_sort`] over any graph.
pub fn topo_sort_with(
    paths: &BTreeSet<StorePath>,
    refs_of: impl Fn(&StorePath) -> BTreeSet<StorePath>,
) -> Result<Vec<StorePath>> {
    firn_store::topo::topo_sort(paths, refs_of).map_err(anyhow::Error::msg)
}

/// Read and parse a `.drv` file from the store.
pub fn read_derivation(store: &LocalStore, drv: &StorePath) -> Result<Derivation> {
    let real = store.real_path(drv);
    let text = std::fs::read_to_string(&real)
        .with_context(|| format!("reading derivation '{}'", store.store_dir().display(drv)))?;
    Derivation::parse(
        store.store_dir(),
        &text,
        drv.name().trim_end_matches(".drv"),
    )
    .with_context(|| format!("parsing derivation '{}'", store.store_dir().display(drv)))
}

/// The output paths a `.drv` file names, by output name.
pub fn derivation_outputs(
    store: &LocalStore,
    drv: &StorePath,
) -> Result<BTreeMap<String, StorePath>> {
    let d = read_derivation(store, drv)?;
    let mut out = BTreeMap::new();
    for (id, o) in d.outputs {
        match o.path {
            Some(p) => {
                out.insert(id, p);
            }
            None => anyhow::bail!(
                "Cannot use output path of floating content-addressed derivation until we know what it is (e.g. by building it)"
            ),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sp(n: &str) -> StorePath {
        StorePath::from_base_name(&format!("{}-{n}", "0".repeat(31) + &n[..1])).unwrap()
    }

    #[test]
    fn referrers_come_first() {
        let (a, b, c) = (sp("a"), sp("b"), sp("c"));
        // a -> b -> c
        let set: BTreeSet<_> = [a.clone(), b.clone(), c.clone()].into();
        let g = |p: &StorePath| -> BTreeSet<StorePath> {
            if *p == a {
                [b.clone()].into()
            } else if *p == b {
                [c.clone()].into()
            } else {
                BTreeSet::new()
            }
        };
        assert_eq!(
            topo_sort_with(&set, g).unwrap(),
            vec![a.clone(), b.clone(), c.clone()]
        );
    }

    #[test]
    fn cycles_are_errors() {
        let (a, b) = (sp("a"), sp("b"));
        let set: BTreeSet<_> = [a.clone(), b.clone()].into();
        let g = |p: &StorePath| -> BTreeSet<StorePath> {
            if *p == a {
                [b.clone()].into()
            } else {
                [a.clone()].into()
            }
        };
        assert!(topo_sort_with(&set, g).is_err());
    }
}
