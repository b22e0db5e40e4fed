//! The whole reference graph of the store in memory, loaded in three queries, with the
//! liveness rules of CppNix's collector: a path is live if a root reaches it through
//! references, through `keep-outputs` (a derivation keeps its outputs) or through
//! `keep-derivations` (an output keeps its deriver).

use std::collections::HashMap;

use firn_format::{StoreDir, StorePath};
use rusqlite::Connection;

use crate::error::{Result, StoreError};

/// A node's index in [`Graph`].
pub(super) type Ix = u32;

/// Which extra edges count besides references.
#[derive(Clone, Copy, Debug)]
pub(super) struct Keep {
    pub outputs: bool,
    pub derivations: bool,
}

/// Valid paths and their relations, by index.
pub(super) struct Graph {
    pub paths: Vec<StorePath>,
    pub ids: Vec<i64>,
    pub nar_size: Vec<u64>,
    pub index: HashMap<StorePath, Ix>,
    pub by_id: HashMap<i64, Ix>,
    pub refs: Vec<Vec<Ix>>,
    pub referrers: Vec<Vec<Ix>>,
    /// The deriver column, if it names a valid path.
    pub deriver: Vec<Option<Ix>>,
    /// For derivations: their registered outputs that are valid.
    pub outputs: Vec<Vec<Ix>>,
    /// The reverse of `outputs`: the valid derivations that list a path as an output.
    pub derivers: Vec<Vec<Ix>>,
    /// The largest row id seen; rows above it were registered after the snapshot.
    pub max_id: i64,
}

fn sql_err(db: &std::path::Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |source| StoreError::Sqlite {
        op: "loading the reference graph",
        db: db.to_path_buf(),
        source,
    }
}

impl Graph {
    /// Load every valid path, reference and derivation output.
    pub fn load(conn: &Connection, db_file: &std::path::Path, sd: &StoreDir) -> Result<Graph> {
        let e = sql_err(db_file);
        let mut st = conn
            .prepare("select id, path, deriver, narSize from ValidPaths")
            .map_err(&e)?;
        let mut rows = st.query([]).map_err(&e)?;
        let mut g = Graph {
            paths: Vec::new(),
            ids: Vec::new(),
            nar_size: Vec::new(),
            index: HashMap::new(),
            by_id: HashMap::new(),
            refs: Vec::new(),
            referrers: Vec::new(),
            deriver: Vec::new(),
            outputs: Vec::new(),
            derivers: Vec::new(),
            max_id: 0,
        };
        let mut deriver_names: Vec<Option<String>> = Vec::new();
        while let Some(r) = rows.next().map_err(&e)? {
            let id: i64 = r.get(0).map_err(&e)?;
            let path: String = r.get(1).map_err(&e)?;
            let p = sd.parse(&path).map_err(|err| {
                StoreError::Corrupt(db_file.to_path_buf(), format!("bad path '{path}': {err}"))
            })?;
            let ix = g.paths.len() as Ix;
            g.by_id.insert(id, ix);
            g.index.insert(p.clone(), ix);
            g.paths.push(p);
            g.ids.push(id);
            g.max_id = g.max_id.max(id);
            g.nar_size
                .push(r.get::<_, Option<i64>>(3).map_err(&e)?.unwrap_or(0).max(0) as u64);
            deriver_names.push(r.get::<_, Option<String>>(2).map_err(&e)?);
        }
        drop(rows);
        let n = g.paths.len();
        g.refs = vec![Vec::new(); n];
        g.referrers = vec![Vec::new(); n];
        g.outputs = vec![Vec::new(); n];
        g.derivers = vec![Vec::new(); n];
        let mut st = conn
            .prepare("select referrer, reference from Refs")
            .map_err(&e)?;
        let mut rows = st.query([]).map_err(&e)?;
        while let Some(r) = rows.next().map_err(&e)? {
            let (a, b): (i64, i64) = (r.get(0).map_err(&e)?, r.get(1).map_err(&e)?);
            if let (Some(&a), Some(&b)) = (g.by_id.get(&a), g.by_id.get(&b)) {
                if a != b {
                    g.refs[a as usize].push(b);
                    g.referrers[b as usize].push(a);
                }
            }
        }
        drop(rows);
        g.deriver = deriver_names
            .iter()
            .map(|d| {
                d.as_deref()
                    .and_then(|d| sd.parse(d).ok())
                    .and_then(|d| g.index.get(&d).copied())
            })
            .collect();
        let mut st = conn
            .prepare("select drv, path from DerivationOutputs")
            .map_err(&e)?;
        let mut rows = st.query([]).map_err(&e)?;
        while let Some(r) = rows.next().map_err(&e)? {
            let drv: i64 = r.get(0).map_err(&e)?;
            let out: String = r.get(1).map_err(&e)?;
            let out = sd.parse(&out).ok().and_then(|p| g.index.get(&p).copied());
            if let (Some(&d), Some(o)) = (g.by_id.get(&drv), out) {
                g.outputs[d as usize].push(o);
                g.derivers[o as usize].push(d);
            }
        }
        Ok(g)
    }

    pub fn len(&self) -> usize {
        self.paths.len()
    }

    /// What `i` keeps alive: its references, and with the `keep` settings its outputs and
    /// its deriver.
    pub fn kept_by(&self, i: Ix, keep: Keep, mut f: impl FnMut(Ix)) {
        let u = i as usize;
        self.refs[u].iter().for_each(|&r| f(r));
        if keep.outputs {
            self.outputs[u].iter().for_each(|&o| f(o));
        }
        if keep.derivations {
            if let Some(d) = self.deriver[u] {
                f(d);
            }
        }
    }

    /// What keeps `i` alive, as CppNix's collector walks it backwards: its referrers, with
    /// `keep-derivations` (for a derivation) its outputs that name it as deriver, and with
    /// `keep-outputs` the derivations that list it as an output.
    pub fn keepers_of(&self, i: Ix, keep: Keep, mut f: impl FnMut(Ix)) {
        let u = i as usize;
        self.referrers[u].iter().for_each(|&r| f(r));
        if keep.derivations && self.paths[u].is_derivation() {
            self.outputs[u]
                .iter()
                .filter(|&&o| self.deriver[o as usize] == Some(i))
                .for_each(|&o| f(o));
        }
        if keep.outputs {
            self.derivers[u].iter().for_each(|&d| f(d));
        }
    }

    /// Mark `starts` and everything they keep alive (skipping what is already marked).
    pub fn mark(&self, starts: impl IntoIterator<Item = Ix>, keep: Keep, marked: &mut [bool]) {
        let mut stack: Vec<Ix> = Vec::new();
        for s in starts {
            if !marked[s as usize] {
                marked[s as usize] = true;
                stack.push(s);
            }
        }
        while let Some(i) = stack.pop() {
            self.kept_by(i, keep, |j| {
                if !marked[j as usize] {
                    marked[j as usize] = true;
                    stack.push(j);
                }
            });
        }
    }

    /// Order `set` so that every path comes before the paths it references (CppNix's
    /// `topoSortPaths`: referrers first), so deleting in this order never leaves a valid path
    /// with a missing reference. Ties follow the order of `set`.
    pub fn referrers_first(&self, set: &[Ix]) -> Vec<Ix> {
        // 0 = unvisited, 1 = on the stack, 2 = done; only members of `set` take part.
        let mut state: HashMap<Ix, u8> = set.iter().map(|&i| (i, 0u8)).collect();
        let mut post = Vec::with_capacity(set.len());
        for &start in set {
            if state.get(&start) != Some(&0) {
                continue;
            }
            state.insert(start, 1);
            let mut stack: Vec<(Ix, usize)> = vec![(start, 0)];
            while let Some(top) = stack.last_mut() {
                let (i, k) = *top;
                let refs = &self.refs[i as usize];
                if k < refs.len() {
                    top.1 += 1;
                    let r = refs[k];
                    // A cycle (which valid paths cannot have) is broken by skipping the edge.
                    if state.get(&r) == Some(&0) {
                        state.insert(r, 1);
                        stack.push((r, 0));
                    }
                } else {
                    state.insert(i, 2);
                    post.push(i);
                    stack.pop();
                }
            }
        }
        post.reverse();
        post
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A graph of `n` nodes with the given reference edges (no database).
    fn graph(n: usize, edges: &[(Ix, Ix)]) -> Graph {
        let sd = StoreDir::default();
        let paths: Vec<StorePath> = (0..n)
            .map(|i| {
                let h = firn_format::Hash::digest(firn_format::HashAlgo::Sha256, [i as u8]);
                sd.make_text_path(&format!("p{i}"), &h, [])
                    .expect("valid name")
            })
            .collect();
        let mut refs = vec![Vec::new(); n];
        let mut referrers = vec![Vec::new(); n];
        for &(a, b) in edges {
            refs[a as usize].push(b);
            referrers[b as usize].push(a);
        }
        Graph {
            index: paths.iter().cloned().zip(0..).collect(),
            by_id: (0..n as i64).zip(0..).collect(),
            ids: (0..n as i64).collect(),
            nar_size: vec![0; n],
            paths,
            refs,
            referrers,
            deriver: vec![None; n],
            outputs: vec![Vec::new(); n],
            derivers: vec![Vec::new(); n],
            max_id: n as i64,
        }
    }

    const NO_KEEP: Keep = Keep {
        outputs: false,
        derivations: false,
    };

    #[test]
    fn marking_follows_references_only_forwards() {
        let g = graph(5, &[(0, 1), (1, 2), (3, 2), (4, 0)]);
        let mut live = vec![false; 5];
        g.mark([0], NO_KEEP, &mut live);
        assert_eq!(live, vec![true, true, true, false, false]);
    }

    #[test]
    fn keep_settings_add_edges() {
        let mut g = graph(3, &[]);
        // 0 is a derivation with output 1; 1 names 0 as its deriver; 2 is unrelated.
        g.outputs[0].push(1);
        g.derivers[1].push(0);
        g.deriver[1] = Some(0);
        let mut live = vec![false; 3];
        g.mark([1], NO_KEEP, &mut live);
        assert_eq!(live, vec![false, true, false]);
        let keep_drvs = Keep {
            outputs: false,
            derivations: true,
        };
        let mut live = vec![false; 3];
        g.mark([1], keep_drvs, &mut live);
        assert_eq!(live, vec![true, true, false]);
        let keep_outs = Keep {
            outputs: true,
            derivations: false,
        };
        let mut live = vec![false; 3];
        g.mark([0], keep_outs, &mut live);
        assert_eq!(live, vec![true, true, false]);
        let mut keepers = Vec::new();
        g.keepers_of(1, keep_outs, |k| keepers.push(k));
        assert_eq!(keepers, vec![0]);
    }

    #[test]
    fn referrers_come_first() {
        let g = graph(6, &[(0, 1), (1, 2), (3, 2), (4, 0), (5, 5)]);
        let order = g.referrers_first(&[2, 1, 0, 3, 4, 5]);
        let pos = |x: Ix| order.iter().position(|&y| y == x).expect("in the order");
        assert_eq!(order.len(), 6);
        for (a, b) in [(0, 1), (1, 2), (3, 2), (4, 0)] {
            assert!(pos(a) < pos(b), "{a} must come before {b} in {order:?}");
        }
        // Only members of the set take part.
        assert_eq!(g.referrers_first(&[2, 0]), vec![0, 2]);
    }
}
