//! CppNix's `rewriteStrings`: each `from` in a map replaced by its `to`, one pair after the
//! other in the map's (key) order, every occurrence left to right, the search going on after
//! each replacement. For derivations being resolved, builders' environments, and NARs being
//! made content-addressed.

use std::collections::BTreeMap;

/// [`rewrite_bytes`] of a string.
pub fn rewrite_strings(s: &str, rewrites: &BTreeMap<String, String>) -> String {
    let mut s = s.to_string();
    for (from, to) in rewrites {
        if !from.is_empty() && s.contains(from.as_str()) {
            s = s.replace(from.as_str(), to);
        }
    }
    s
}

/// The rewrites applied to `data` (a NAR, which need not be text).
pub fn rewrite_bytes(mut data: Vec<u8>, rewrites: &BTreeMap<String, String>) -> Vec<u8> {
    for (from, to) in rewrites {
        let (from, to) = (from.as_bytes(), to.as_bytes());
        if from.is_empty() || !data.windows(from.len()).any(|w| w == from) {
            continue;
        }
        let mut out = Vec::with_capacity(data.len());
        let mut i = 0;
        while i < data.len() {
            if data[i..].starts_with(from) {
                out.extend_from_slice(to);
                i += from.len();
            } else {
                out.push(data[i]);
                i += 1;
            }
        }
        data = out;
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacements_go_one_pair_after_the_other() {
        let mut m = BTreeMap::new();
        m.insert("ab".to_string(), "xy".to_string());
        m.insert("yc".to_string(), "zz".to_string());
        // "ab" first gives "xyc", in which "yc" is then found.
        assert_eq!(rewrite_bytes(b"abc ab".to_vec(), &m), b"xzz xy".to_vec());
        assert_eq!(rewrite_strings("abc ab", &m), "xzz xy");
        assert_eq!(
            rewrite_bytes(b"aaa".to_vec(), &BTreeMap::new()),
            b"aaa".to_vec()
        );
        let mut n = BTreeMap::new();
        n.insert("aa".to_string(), "b".to_string());
        assert_eq!(rewrite_bytes(b"aaaaa".to_vec(), &n), b"bba".to_vec());
        assert_eq!(rewrite_strings("aaaaa", &n), "bba");
    }
}
