//! CppNix's topological sort of store paths: referrers before the paths they reference, with
//! ties broken by the order of the set, found by a depth-first search (iterative here, so long
//! chains cannot overflow the stack).

use std::collections::BTreeSet;

use firn_format::StorePath;

/// Sort `paths`; `refs_of` gives each path's references (only those inside `paths` count).
pub fn topo_sort(
    paths: &BTreeSet<StorePath>,
    refs_of: impl Fn(&StorePath) -> BTreeSet<StorePath>,
) -> Result<Vec<StorePath>, String> {
    let mut sorted = Vec::with_capacity(paths.len());
    let mut visited = BTreeSet::new();
    let mut parents = BTreeSet::new();
    for start in paths {
        if visited.contains(start) {
            continue;
        }
        let mut stack: Vec<(StorePath, Vec<StorePath>, usize)> = Vec::new();
        visited.insert(start.clone());
        parents.insert(start.clone());
        let kids = refs_of(start)
            .into_iter()
            .filter(|c| c != start && paths.contains(c))
            .collect();
        stack.push((start.clone(), kids, 0));
        while let Some(top) = stack.last_mut() {
            if top.2 < top.1.len() {
                let child = top.1[top.2].clone();
                top.2 += 1;
                if parents.contains(&child) {
                    return Err(format!(
                        "cycle detected in the references of '{}' from '{}'",
                        child, top.0
                    ));
                }
                if visited.insert(child.clone()) {
                    parents.insert(child.clone());
                    let kids = refs_of(&child)
                        .into_iter()
                        .filter(|c| *c != child && paths.contains(c))
                        .collect();
                    stack.push((child, kids, 0));
                }
            } else if let Some((p, _, _)) = stack.pop() {
                parents.remove(&p);
                sorted.push(p);
            }
        }
    }
    sorted.reverse();
    Ok(sorted)
}
