//! Documentation comments (`/** … */`, as current Nix reads them for the repl's `:doc`): the
//! comment right before a function, or before the name the function is bound to
//! (`name = x: …`). Found in the source text before the function, since the parser keeps no
//! comments: blanks may stand between the comment and what it documents.

/// What `:doc` shows of a function: the name it is bound to, and its doc comment.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FunctionDoc {
    pub name: Option<String>,
    pub comment: Option<String>,
}

/// The doc comment and name of a function whose source starts right after `before` (the text
/// of its file up to it).
pub fn function_doc(before: &str) -> FunctionDoc {
    if let Some((comment, rest)) = comment_with_rest(before) {
        return FunctionDoc {
            name: binding_before(rest).map(|(n, _)| n.to_string()),
            comment: Some(comment),
        };
    }
    match binding_before(before) {
        Some((name, rest)) => FunctionDoc {
            name: Some(name.to_string()),
            comment: comment_before(rest),
        },
        None => FunctionDoc::default(),
    }
}

/// The inner text of the doc comment that ends right before `before`'s end (blanks aside).
pub fn comment_before(before: &str) -> Option<String> {
    comment_with_rest(before).map(|(c, _)| c)
}

/// [`comment_before`], with the text before the comment.
fn comment_with_rest(before: &str) -> Option<(String, &str)> {
    let t = before.trim_end();
    let body_end = t.strip_suffix("*/")?;
    // The comment opens at the first `/*` after the end of the comment before it (block
    // comments do not nest, and may contain `/*`).
    let from = body_end.rfind("*/").map(|i| i + 2).unwrap_or(0);
    let open = from + body_end[from..].find("/*")?;
    let inner = body_end[open..].strip_prefix("/**")?;
    // `/**/` is an empty ordinary comment, not documentation.
    if body_end[open..].starts_with("/**/") {
        return None;
    }
    Some((unindent(inner), &body_end[..open]))
}

/// The name bound right before `before`'s end (`name =`, the last part of an attribute path)
/// and the text before the whole path.
fn binding_before(before: &str) -> Option<(&str, &str)> {
    let t = before.trim_end().strip_suffix('=')?;
    // Not `==`, `!=`, `<=`, `>=`.
    if t.ends_with(['=', '!', '<', '>']) {
        return None;
    }
    let t = t.trim_end();
    let is_path = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '\'' | '-' | '.');
    let start = t.rfind(|c: char| !is_path(c)).map(|i| i + 1).unwrap_or(0);
    let path = &t[start..];
    let name = path.rsplit('.').next()?;
    let first = name.chars().next()?;
    if !(first.is_ascii_alphabetic() || first == '_') {
        return None;
    }
    Some((name, &t[..start]))
}

/// `text` without its first and last blank lines and without the indentation its lines share
/// (the first line, on the line of `/**`, aside).
fn unindent(text: &str) -> String {
    let mut lines: Vec<&str> = text.lines().collect();
    while lines.first().is_some_and(|l| l.trim().is_empty()) {
        lines.remove(0);
    }
    while lines.last().is_some_and(|l| l.trim().is_empty()) {
        lines.pop();
    }
    let indent = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    lines
        .iter()
        .map(|l| l.get(indent..).unwrap_or_else(|| l.trim_start()).trim_end())
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_before_bindings_and_functions() {
        let src = "{\n  /**\n    Add one.\n\n    # Example\n      inc 1\n  */\n  inc = ";
        assert_eq!(
            function_doc(src),
            FunctionDoc {
                name: Some("inc".into()),
                comment: Some("Add one.\n\n# Example\n  inc 1".into()),
            }
        );
        // Right before the function itself; an attribute path's last name.
        assert_eq!(
            function_doc("{ a.b = /** Twice. */ "),
            FunctionDoc {
                name: Some("b".into()),
                comment: Some("Twice.".into()),
            }
        );
        // Ordinary comments are not documentation; nor is a comparison a binding.
        assert_eq!(function_doc("/* plain */ f = ").comment, None);
        assert_eq!(function_doc("/**/ f = ").comment, None);
        assert_eq!(function_doc("x == "), FunctionDoc::default());
        assert_eq!(function_doc("map ("), FunctionDoc::default());
        // A comment ends the search at the comment before it.
        assert_eq!(
            comment_before("/* a */ x /** b /* c */ "),
            Some("b /* c".into())
        );
    }
}
