//! `SymMap`: the bindings of a set or `let` in the syntax tree, a vector kept sorted by
//! symbol.
//!
//! A set in the source usually has a handful of bindings; a B-tree spends a node sized for
//! eleven on each (the syntax trees of a package set were a third B-tree nodes) and chases
//! pointers to walk them. Bindings are looked up by binary search and iterated in symbol
//! order, which the scope check and the evaluator's scopes rely on. New names in a large set
//! tend to come in the order they were first interned, so most inserts are appends.

use crate::ast::Symbol;

/// A map from symbols to `V`, iterated in symbol order.
#[derive(Clone, Debug, PartialEq)]
pub struct SymMap<V> {
    entries: Vec<(Symbol, V)>,
}

impl<V> Default for SymMap<V> {
    fn default() -> Self {
        SymMap {
            entries: Vec::new(),
        }
    }
}

impl<V> SymMap<V> {
    pub fn new() -> SymMap<V> {
        SymMap::default()
    }

    fn find(&self, k: &Symbol) -> Result<usize, usize> {
        match self.entries.last() {
            // Appends (and misses past the end) skip the search.
            Some((last, _)) if last < k => Err(self.entries.len()),
            _ => self.entries.binary_search_by(|(s, _)| s.cmp(k)),
        }
    }

    /// The map of `entries`, which are sorted by symbol, each symbol once.
    pub(crate) fn from_sorted(entries: Vec<(Symbol, V)>) -> SymMap<V> {
        debug_assert!(entries.windows(2).all(|w| w[0].0 < w[1].0));
        SymMap { entries }
    }

    /// The entries, sorted by symbol.
    pub(crate) fn into_entries(self) -> Vec<(Symbol, V)> {
        self.entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, k: &Symbol) -> Option<&V> {
        self.find(k).ok().map(|i| &self.entries[i].1)
    }

    pub fn get_mut(&mut self, k: &Symbol) -> Option<&mut V> {
        match self.find(k) {
            Ok(i) => Some(&mut self.entries[i].1),
            Err(_) => None,
        }
    }

    pub fn contains_key(&self, k: &Symbol) -> bool {
        self.find(k).is_ok()
    }

    /// Insert or replace; gives back the value replaced.
    pub fn insert(&mut self, k: Symbol, v: V) -> Option<V> {
        match self.find(&k) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, v)),
            Err(i) => {
                self.entries.insert(i, (k, v));
                None
            }
        }
    }

    /// Insert `v` at `k` if `k` is not bound yet; otherwise `v` is given back.
    pub(crate) fn insert_new(&mut self, k: Symbol, v: V) -> Result<(), V> {
        match self.find(&k) {
            Ok(_) => Err(v),
            Err(i) => {
                self.entries.insert(i, (k, v));
                Ok(())
            }
        }
    }

    pub fn remove(&mut self, k: &Symbol) -> Option<V> {
        match self.find(k) {
            Ok(i) => Some(self.entries.remove(i).1),
            Err(_) => None,
        }
    }

    /// Give back spare capacity (called once a set is parsed).
    pub fn shrink_to_fit(&mut self) {
        self.entries.shrink_to_fit();
    }

    /// Whether there is spare capacity to give back.
    pub fn has_spare(&self) -> bool {
        self.entries.capacity() > self.entries.len()
    }

    /// Replace every key `k` by `f(k)` (a one-to-one mapping) and sort again.
    pub(crate) fn rekey(&mut self, f: impl Fn(Symbol) -> Symbol) {
        for (k, _) in self.entries.iter_mut() {
            *k = f(*k);
        }
        self.entries.sort_unstable_by_key(|(k, _)| *k);
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&Symbol, &V)> + ExactSizeIterator {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    pub fn iter_mut(
        &mut self,
    ) -> impl DoubleEndedIterator<Item = (&Symbol, &mut V)> + ExactSizeIterator {
        self.entries.iter_mut().map(|(k, v)| (&*k, v))
    }

    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &Symbol> + ExactSizeIterator {
        self.entries.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &V> + ExactSizeIterator {
        self.entries.iter().map(|(_, v)| v)
    }

    pub fn values_mut(&mut self) -> impl DoubleEndedIterator<Item = &mut V> + ExactSizeIterator {
        self.entries.iter_mut().map(|(_, v)| v)
    }
}

impl<V> IntoIterator for SymMap<V> {
    type Item = (Symbol, V);
    type IntoIter = std::vec::IntoIter<(Symbol, V)>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl<'a, V> IntoIterator for &'a SymMap<V> {
    type Item = (&'a Symbol, &'a V);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (Symbol, V)>,
        fn(&'a (Symbol, V)) -> (&'a Symbol, &'a V),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter().map(|(k, v)| (k, v))
    }
}

impl<V> std::ops::Index<&Symbol> for SymMap<V> {
    type Output = V;
    fn index(&self, k: &Symbol) -> &V {
        match self.get(k) {
            Some(v) => v,
            None => panic!("no binding for symbol {}", k.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn behaves_as_a_btreemap() {
        let mut m = SymMap::new();
        let mut b = BTreeMap::new();
        // A fixed pseudo-random sequence of inserts, replacements and removals.
        let mut x: u32 = 12345;
        for step in 0..2000u32 {
            x = x.wrapping_mul(1103515245).wrapping_add(12345);
            let k = Symbol((x >> 16) % 97);
            if step % 7 == 3 {
                assert_eq!(m.remove(&k), b.remove(&k));
            } else {
                assert_eq!(m.insert(k, step), b.insert(k, step));
            }
            assert_eq!(m.get(&k), b.get(&k));
            assert_eq!(
                m.contains_key(&Symbol(step % 97)),
                b.contains_key(&Symbol(step % 97))
            );
        }
        assert_eq!(m.len(), b.len());
        let mine: Vec<_> = m.iter().map(|(k, v)| (*k, *v)).collect();
        let theirs: Vec<_> = b.iter().map(|(k, v)| (*k, *v)).collect();
        assert_eq!(mine, theirs);
        for v in m.values_mut() {
            *v += 1;
        }
        assert!(m.iter().all(|(k, v)| b[k] + 1 == *v));
    }
}
