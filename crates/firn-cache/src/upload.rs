//! Copying many paths into a binary cache: the NARs (the work: dump, compression, hashing,
//! upload) go up on `jobs` threads at once, references first; each narinfo is written as soon
//! as its NAR is up and the narinfos of its references are written, so the cache never shows
//! a narinfo without its NAR or its references, and no narinfo waits for unrelated uploads.

use std::io::Write;
use std::sync::Mutex;

use firn_format::NarInfo;
use firn_store::ValidPathInfo;

use crate::cache::{BinaryCache, NarSource};
use crate::graph::{parallel_map, Outcome};
use crate::{CacheError, Result};

/// Where the narinfos stand.
struct State {
    /// Uploaded NARs whose narinfo is not written yet.
    uploaded: Vec<Option<Result<NarInfo>>>,
    /// How many references (in the set) still lack their narinfo.
    waiting: Vec<usize>,
    outcome: Vec<Option<Outcome<CacheError>>>,
}

/// Upload `todo[i]` (its NAR written by `produce`) for every `i`, after `deps[i]` as far as
/// the narinfos go. Returns each one's outcome (a path whose reference failed is skipped).
pub fn upload_all(
    cache: &BinaryCache,
    todo: &[&ValidPathInfo],
    deps: &[Vec<usize>],
    jobs: usize,
    produce: impl Fn(&ValidPathInfo, &mut dyn Write) -> Result<()> + Sync,
) -> Vec<Outcome<CacheError>> {
    let n = todo.len();
    let mut dependents = vec![Vec::new(); n];
    let mut waiting = vec![0usize; n];
    for (i, ds) in deps.iter().enumerate() {
        for &d in ds.iter().filter(|&&d| d != i) {
            dependents[d].push(i);
            waiting[i] += 1;
        }
    }
    let order = topological(&waiting, &dependents);
    let state = Mutex::new(State {
        uploaded: (0..n).map(|_| None).collect(),
        waiting,
        outcome: (0..n).map(|_| None).collect(),
    });
    parallel_map(&order, jobs, |&i| {
        let info = todo[i];
        let mut nar = |w: &mut dyn Write| produce(info, w);
        let r = cache.upload_nar(info, NarSource::Producer(&mut nar));
        let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
        st.uploaded[i] = Some(r);
        // Narinfos are small: they are written under the lock, which keeps them in order.
        let mut ready = vec![i];
        while let Some(j) = ready.pop() {
            if st.outcome[j].is_some() || st.waiting[j] > 0 {
                continue;
            }
            let Some(r) = st.uploaded[j].take() else {
                continue;
            };
            match r.and_then(|ni| cache.write_narinfo(ni)) {
                Ok(_) => {
                    st.outcome[j] = Some(Outcome::Done);
                    for &k in &dependents[j] {
                        st.waiting[k] -= 1;
                        if st.waiting[k] == 0 {
                            ready.push(k);
                        }
                    }
                }
                Err(e) => {
                    st.outcome[j] = Some(Outcome::Failed(e));
                    skip_dependents(&mut st.outcome, &dependents, j);
                }
            }
        }
    });
    let st = state.into_inner().unwrap_or_else(|p| p.into_inner());
    st.outcome
        .into_iter()
        .map(|o| o.unwrap_or(Outcome::Skipped(usize::MAX)))
        .collect()
}

/// Mark everything that refers (transitively) to the failed `j` as skipped because of it.
fn skip_dependents(
    outcome: &mut [Option<Outcome<CacheError>>],
    dependents: &[Vec<usize>],
    j: usize,
) {
    let mut stack = vec![j];
    while let Some(x) = stack.pop() {
        for &k in &dependents[x] {
            if outcome[k].is_none() {
                outcome[k] = Some(Outcome::Skipped(j));
                stack.push(k);
            }
        }
    }
}

/// References before referrers (Kahn's algorithm); nodes on a cycle come last, in index
/// order.
fn topological(waiting: &[usize], dependents: &[Vec<usize>]) -> Vec<usize> {
    let n = waiting.len();
    let mut left = waiting.to_vec();
    let mut ready: Vec<usize> = (0..n).rev().filter(|&i| left[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    let mut placed = vec![false; n];
    while let Some(i) = ready.pop() {
        order.push(i);
        placed[i] = true;
        for &k in dependents[i].iter().rev() {
            left[k] -= 1;
            if left[k] == 0 {
                ready.push(k);
            }
        }
    }
    order.extend((0..n).filter(|&i| !placed[i]));
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_come_first() {
        // 2 -> 1 -> 0, 3 -> 0; 4 and 5 form a cycle.
        let deps: Vec<Vec<usize>> = vec![vec![], vec![0], vec![1], vec![0], vec![5], vec![4]];
        let mut dependents = vec![Vec::new(); deps.len()];
        let mut waiting = vec![0; deps.len()];
        for (i, ds) in deps.iter().enumerate() {
            for &d in ds {
                dependents[d].push(i);
                waiting[i] += 1;
            }
        }
        let order = topological(&waiting, &dependents);
        let pos = |x: usize| order.iter().position(|&y| y == x).unwrap();
        assert_eq!(order.len(), 6);
        assert!(pos(0) < pos(1) && pos(1) < pos(2) && pos(0) < pos(3));
        assert!(pos(4) >= 4 && pos(5) >= 4);
    }
}
