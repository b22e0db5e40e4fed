//! "Did you mean" hints: the closest of some names to a misspelt one.

/// A close name among `candidates` (edit distance at most 2, and less than the name's
/// length): the closest, and of equally close ones the first in byte order.
pub fn suggest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<String> {
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = edit_distance(name, c);
        if d <= 2
            && d < name.len().max(1)
            && best.is_none_or(|(bd, bs)| d < bd || (d == bd && c < bs))
        {
            best = Some((d, c));
        }
    }
    best.map(|(_, s)| s.to_string())
}

/// Levenshtein distance, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_names_are_suggested() {
        let names = ["foo", "bar", "stdenv"];
        assert_eq!(suggest("fooo", names.into_iter()), Some("foo".into()));
        assert_eq!(suggest("stdnev", names.into_iter()), Some("stdenv".into()));
        assert_eq!(suggest("zzz", names.into_iter()), None);
        assert_eq!(suggest("b", names.into_iter()), None);
    }
}
