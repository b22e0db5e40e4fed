//! Tab completion, as CppNix's repl completes the word before the cursor: a variable in
//! scope, an attribute path (`foo.ba` evaluates `foo`, quietly ignoring errors, and offers
//! its attributes starting with `ba`), a file name when the word has a `/`, and the repl's
//! commands at the start of the line.

use firn_eval::value::Value;

use super::{is_var_name, Session};

/// Characters that end the word being completed.
const SEPARATORS: &[char] = &[' ', '\n', '\r', '\t', '(', ')', '{', '}', '[', ']'];

/// Commands offered for `:<TAB>`.
const COMMANDS: &[&str] = &[
    ":?",
    ":a",
    ":add",
    ":b",
    ":bl",
    ":doc",
    ":e",
    ":edit",
    ":help",
    ":l",
    ":last-loaded",
    ":ll",
    ":load",
    ":log",
    ":p",
    ":print",
    ":q",
    ":quit",
    ":r",
    ":reload",
    ":st",
    ":t",
    ":te",
];

/// Completions of the end of `prefix` (the line up to the cursor): where the completed word
/// starts, and its possible replacements, sorted.
pub fn complete(session: &mut Session, prefix: &str) -> (usize, Vec<String>) {
    let start = prefix.rfind(SEPARATORS).map_or(0, |i| i + 1);
    let cur = &prefix[start..];
    let found = if start == 0 && cur.starts_with(':') {
        COMMANDS
            .iter()
            .filter(|c| c.starts_with(cur))
            .map(|c| c.to_string())
            .collect()
    } else if let Some(slash) = cur.rfind('/') {
        files(cur, slash)
    } else if cur.contains('.') {
        attributes(session, cur)
    } else {
        session
            .names()
            .into_iter()
            .filter(|n| n.starts_with(cur))
            .collect()
    };
    (start, found)
}

/// Entries of the directory before the last `/` whose names continue the rest (hidden ones
/// left out); directories get a `/`.
fn files(cur: &str, slash: usize) -> Vec<String> {
    let dir = &cur[..slash];
    let name_prefix = &cur[slash + 1..];
    let Ok(entries) = std::fs::read_dir(if dir.is_empty() { "/" } else { dir }) else {
        return Vec::new();
    };
    let mut out: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !name.starts_with(name_prefix) {
                return None;
            }
            let is_dir = std::fs::metadata(e.path()).is_ok_and(|m| m.is_dir());
            Some(format!("{dir}/{name}{}", if is_dir { "/" } else { "" }))
        })
        .collect();
    out.sort();
    out
}

/// `EXPR.PREFIX`: the attributes of `EXPR`'s value that start with `PREFIX`. The split is
/// at the last `.` after which the text before parses (so `a."b.c".d` works).
fn attributes(session: &mut Session, cur: &str) -> Vec<String> {
    let mut end = cur.len();
    while let Some(dot) = cur[..end].rfind('.') {
        let (expr, rest) = (&cur[..dot], &cur[dot + 1..]);
        end = dot;
        if expr.is_empty() {
            break;
        }
        let Ok(e) = session.parse(expr) else {
            continue;
        };
        let env = session.env();
        let Ok(Value::Attrs(set)) = session.ev.eval(e, &env) else {
            return Vec::new();
        };
        let (quoted, want) = match rest.strip_prefix('"') {
            Some(r) => (true, r.trim_end_matches('"')),
            None => (false, rest),
        };
        return set
            .keys()
            .filter(|k| k.starts_with(want))
            .map(|k| {
                if !quoted && is_var_name(k) {
                    format!("{expr}.{k}")
                } else {
                    let mut q = String::new();
                    firn_syntax::show::literal_string(&mut q, k);
                    format!("{expr}.{q}")
                }
            })
            .collect();
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    #[test]
    fn separators_split_words() {
        let p = "map (x: foo.ba";
        let start = p.rfind(super::SEPARATORS).map_or(0, |i| i + 1);
        assert_eq!(&p[start..], "foo.ba");
    }
}
