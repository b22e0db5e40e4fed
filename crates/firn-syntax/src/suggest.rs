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

/// Current Nix's suggestions for a misspelt `name`: the candidates at edit distance at most
/// 2, closest first (equally close ones in byte order), at most 5.
pub fn best_matches<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut all: Vec<(usize, &str)> = candidates
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, _)| *d <= 2)
        .collect();
    all.sort_unstable();
    all.dedup();
    all.into_iter()
        .take(5)
        .map(|(_, c)| c.to_string())
        .collect()
}

/// The line current Nix adds for [`best_matches`]: "Did you mean a?", "Did you mean one of
/// a or b?", "Did you mean one of a, b or c?"; none without suggestions.
pub fn did_you_mean(names: &[String]) -> Option<String> {
    let (last, init) = names.split_last()?;
    if init.is_empty() {
        return Some(format!("Did you mean {last}?"));
    }
    Some(format!(
        "Did you mean one of {} or {last}?",
        init.join(", ")
    ))
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

    #[test]
    fn best_matches_as_current_nix() {
        let names = ["x", "z", "foo"];
        let m = best_matches("y", names.into_iter());
        assert_eq!(m, ["x", "z"]);
        assert_eq!(
            did_you_mean(&m).as_deref(),
            Some("Did you mean one of x or z?")
        );
        let m = best_matches("a", ["b", "c", "d"].into_iter());
        assert_eq!(
            did_you_mean(&m).as_deref(),
            Some("Did you mean one of b, c or d?")
        );
        assert_eq!(
            did_you_mean(&["y".into()]).as_deref(),
            Some("Did you mean y?")
        );
        assert_eq!(did_you_mean(&[]), None);
    }
}
