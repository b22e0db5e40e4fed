//! Running jobs over a graph of paths in parallel: a job starts once the jobs it depends on
//! (its references) are done; a job whose dependency failed is not run.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

/// How a job ended.
#[derive(Debug)]
pub enum Outcome<E> {
    Done,
    Failed(E),
    /// A dependency failed (its index).
    Skipped(usize),
}

/// Run `job(i)` for every node `0..deps.len()`, each after the nodes in `deps[i]`, on up to
/// `jobs` threads. Returns each node's outcome.
pub fn run<E: Send>(
    deps: &[Vec<usize>],
    jobs: usize,
    job: impl Fn(usize) -> Result<(), E> + Sync,
) -> Vec<Outcome<E>> {
    let n = deps.len();
    let mut dependents = vec![Vec::new(); n];
    let mut waiting = vec![0usize; n];
    for (i, ds) in deps.iter().enumerate() {
        for &d in ds {
            if d != i {
                dependents[d].push(i);
                waiting[i] += 1;
            }
        }
    }
    struct State<E> {
        ready: Vec<usize>,
        waiting: Vec<usize>,
        outcome: Vec<Option<Outcome<E>>>,
        finished: usize,
    }
    let ready: Vec<usize> = (0..n).rev().filter(|&i| waiting[i] == 0).collect();
    let state = Mutex::new(State {
        ready,
        waiting,
        outcome: (0..n).map(|_| None).collect(),
        finished: 0,
    });
    let cv = Condvar::new();
    let lock = || state.lock().unwrap_or_else(|p| p.into_inner());

    // Mark `i` finished; dependents become ready, or are skipped (transitively) on failure.
    // Returns how many nodes became ready.
    let finish = |st: &mut State<E>, i: usize, o: Outcome<E>| -> usize {
        let before = st.ready.len();
        let ok = matches!(o, Outcome::Done);
        st.outcome[i] = Some(o);
        st.finished += 1;
        let mut stack = vec![(i, ok)];
        while let Some((j, ok)) = stack.pop() {
            for &k in &dependents[j] {
                if st.outcome[k].is_some() {
                    continue;
                }
                if ok {
                    st.waiting[k] -= 1;
                    if st.waiting[k] == 0 {
                        st.ready.push(k);
                    }
                } else {
                    st.outcome[k] = Some(Outcome::Skipped(j));
                    st.finished += 1;
                    stack.push((k, false));
                }
            }
        }
        st.ready.len() - before
    };

    std::thread::scope(|s| {
        for _ in 0..jobs.clamp(1, n.max(1)) {
            s.spawn(|| loop {
                let i = {
                    let mut st = lock();
                    loop {
                        if let Some(i) = st.ready.pop() {
                            break i;
                        }
                        if st.finished == n {
                            return;
                        }
                        st = cv.wait(st).unwrap_or_else(|p| p.into_inner());
                    }
                };
                let o = match job(i) {
                    Ok(()) => Outcome::Done,
                    Err(e) => Outcome::Failed(e),
                };
                let mut st = lock();
                let woken = finish(&mut st, i, o);
                // Wake only as many workers as there is new work for (this one takes one
                // itself); everyone when all is done.
                if st.finished == n {
                    cv.notify_all();
                } else {
                    for _ in 1..woken {
                        cv.notify_one();
                    }
                }
            });
        }
    });
    let st = state.into_inner().unwrap_or_else(|p| p.into_inner());
    st.outcome
        .into_iter()
        .map(|o| o.unwrap_or(Outcome::Skipped(usize::MAX)))
        .collect()
}

/// Run `f` for each item on up to `jobs` threads, keeping the results in order.
pub fn parallel_map<T: Sync, R: Send>(
    items: &[T],
    jobs: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    // One job: no threads (a handoff per call costs a scheduling round on a busy machine).
    if jobs <= 1 || items.len() <= 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let out: Vec<Mutex<Option<R>>> = items.iter().map(|_| Mutex::new(None)).collect();
    let work = || loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= items.len() {
            break;
        }
        let r = f(&items[i]);
        *out[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
    };
    // This thread is one of the workers.
    std::thread::scope(|s| {
        for _ in 1..jobs.min(items.len()) {
            s.spawn(work);
        }
        work();
    });
    out.into_iter()
        .map(|m| {
            m.into_inner()
                .unwrap_or_else(|p| p.into_inner())
                .expect("every item is mapped")
        })
        .collect()
}

/// Walk a graph from `roots` on up to `jobs` threads: `visit(node)` gives the node's result
/// and its neighbours, each of which is visited once, as soon as it is found (no waiting for
/// the rest of a level: a chain of remote lookups costs one round trip per link, not per
/// level and thread start). Stops at the first error.
pub fn discover<N, R, E>(
    roots: Vec<N>,
    jobs: usize,
    visit: impl Fn(&N) -> Result<(R, Vec<N>), E> + Sync,
) -> Result<Vec<(N, R)>, E>
where
    N: Clone + Eq + std::hash::Hash + Send + Sync,
    R: Send,
    E: Send,
{
    struct State<N, R, E> {
        queue: Vec<N>,
        seen: std::collections::HashSet<N>,
        in_flight: usize,
        done: Vec<(N, R)>,
        error: Option<E>,
    }
    let mut seen = std::collections::HashSet::new();
    let queue: Vec<N> = roots
        .into_iter()
        .filter(|r| seen.insert(r.clone()))
        .collect();
    let state = Mutex::new(State {
        queue,
        seen,
        in_flight: 0,
        done: Vec::new(),
        error: None,
    });
    let cv = Condvar::new();
    let lock = || state.lock().unwrap_or_else(|p| p.into_inner());
    let work = || loop {
        let node = {
            let mut st = lock();
            loop {
                if st.error.is_some() {
                    return;
                }
                if let Some(n) = st.queue.pop() {
                    st.in_flight += 1;
                    break n;
                }
                if st.in_flight == 0 {
                    return;
                }
                st = cv.wait(st).unwrap_or_else(|p| p.into_inner());
            }
        };
        let r = visit(&node);
        let mut st = lock();
        st.in_flight -= 1;
        match r {
            Ok((r, next)) => {
                let before = st.queue.len();
                for n in next {
                    if st.seen.insert(n.clone()) {
                        st.queue.push(n);
                    }
                }
                st.done.push((node, r));
                let added = st.queue.len() - before;
                if st.queue.is_empty() && st.in_flight == 0 {
                    cv.notify_all();
                } else {
                    // This worker takes one itself.
                    for _ in 1..added {
                        cv.notify_one();
                    }
                }
            }
            Err(e) => {
                st.error.get_or_insert(e);
                cv.notify_all();
            }
        }
    };
    std::thread::scope(|s| {
        for _ in 1..jobs {
            s.spawn(work);
        }
        work();
    });
    let st = state.into_inner().unwrap_or_else(|p| p.into_inner());
    match st.error {
        Some(e) => Err(e),
        None => Ok(st.done),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn order_and_failure() {
        // 0 <- 1 <- 2, 3 independent, 4 depends on 3 and 0.
        let deps = vec![vec![], vec![0], vec![1], vec![], vec![3, 0]];
        let log = Mutex::new(Vec::new());
        let out = run(&deps, 3, |i| {
            log.lock().unwrap().push(i);
            if i == 1 {
                Err("boom")
            } else {
                Ok(())
            }
        });
        let log = log.into_inner().unwrap();
        assert!(log.iter().position(|&x| x == 0) < log.iter().position(|&x| x == 1));
        assert!(!log.contains(&2));
        assert!(matches!(out[2], Outcome::Skipped(1)));
        assert!(matches!(out[1], Outcome::Failed("boom")));
        assert!(matches!(out[4], Outcome::Done));
        assert_eq!(run::<()>(&[], 4, |_| Ok(())).len(), 0);
    }

    #[test]
    fn discover_visits_each_node_once() {
        // i -> i+1 and i -> 2i, up to 200.
        let visits = Mutex::new(Vec::new());
        let got = discover(vec![1u32, 1], 4, |&n| {
            visits.lock().unwrap().push(n);
            let next: Vec<u32> = [n + 1, 2 * n].into_iter().filter(|&m| m <= 200).collect();
            Ok::<_, ()>((n * 10, next))
        })
        .unwrap();
        let mut v = visits.into_inner().unwrap();
        v.sort();
        assert_eq!(v, (1..=200).collect::<Vec<_>>());
        assert!(got.iter().all(|(n, r)| *r == n * 10));
        let err = discover(vec![1u32], 3, |&n| {
            if n == 50 {
                Err(n)
            } else {
                Ok(((), vec![n + 1]))
            }
        });
        assert_eq!(err.unwrap_err(), 50);
    }
}
