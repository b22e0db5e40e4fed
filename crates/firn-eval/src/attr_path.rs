//! Attribute paths of the command line (`-A a.b.0`, `nix eval --file f a.b`, the repl's
//! installables), as CppNix's `findAlongAttrPath` follows them: the path is split at dots
//! (a `"quoted"` part may hold dots), a part that is a number indexes a list, any other
//! names an attribute, and before each step the value is called with the auto-arguments
//! when it is a function taking a set. The errors are CppNix's, with "Did you mean"
//! suggestions for a missing attribute.

use crate::error::{EResult, EvalError};
use crate::eval::Evaluator;
use crate::value::{AttrMap, Value};

/// The parts of `path`: split at each dot outside quotes (an empty part between two dots is
/// kept, a trailing one is not); quotes are taken out.
pub fn parse(path: &str) -> EResult<Vec<String>> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = path.chars();
    while let Some(c) = chars.next() {
        match c {
            '.' => parts.push(std::mem::take(&mut cur)),
            '"' => loop {
                match chars.next() {
                    Some('"') => break,
                    Some(c) => cur.push(c),
                    None => {
                        return Err(EvalError::new(format!(
                            "missing closing quote in selection path '{path}'"
                        )))
                    }
                }
            },
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        parts.push(cur);
    }
    Ok(parts)
}

/// The value at `path` in `v`, each value on the way called with `args` first (see
/// [`Evaluator::auto_call`]).
pub fn find(ev: &mut Evaluator, mut v: Value, path: &str, args: &AttrMap) -> EResult<Value> {
    for part in parse(path)? {
        v = ev.auto_call(v, args)?;
        let t = match part.parse::<u32>() {
            Err(_) => {
                let Value::Attrs(set) = &v else {
                    return Err(EvalError::new(format!(
                        "the expression selected by the selection path '{path}' should be a set but is {}",
                        v.type_name()
                    )));
                };
                if part.is_empty() {
                    return Err(EvalError::new(format!(
                        "empty attribute name in selection path '{path}'"
                    )));
                }
                match set.get(&part) {
                    Some(t) => t.clone(),
                    None => {
                        let mut e = EvalError::new(format!(
                            "attribute '{part}' in selection path '{path}' not found"
                        ));
                        e.suggestions =
                            firn_syntax::suggest::best_matches(&part, set.keys().map(|k| &**k));
                        return Err(e);
                    }
                }
            }
            Ok(i) => {
                let Value::List(list) = &v else {
                    return Err(EvalError::new(format!(
                        "the expression selected by the selection path '{path}' should be a list but is {}",
                        v.type_name()
                    )));
                };
                match list.get(i as usize) {
                    Some(t) => t.clone(),
                    None => {
                        return Err(EvalError::new(format!(
                            "list index {i} in selection path '{path}' is out of range"
                        )))
                    }
                }
            }
        };
        v = ev.force(&t)?;
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts() {
        let p = |s: &str| parse(s).map_err(|e| e.msg.clone());
        assert_eq!(p("a.b.0").unwrap(), ["a", "b", "0"]);
        assert_eq!(p("a.\"b.c\".d").unwrap(), ["a", "b.c", "d"]);
        assert_eq!(p("a..b").unwrap(), ["a", "", "b"]);
        assert_eq!(p(".a.").unwrap(), ["", "a"]);
        assert_eq!(p("").unwrap(), Vec::<String>::new());
        assert_eq!(
            p("a.\"b").unwrap_err(),
            "missing closing quote in selection path 'a.\"b'"
        );
    }

    #[test]
    fn steps() {
        let mut ev = Evaluator::new();
        let e = ev
            .parse(
                "{ x ? 1 }: { a = { y ? 2 }: { b = [ x y ]; }; n = 3; }",
                "«test»",
                "/",
            )
            .unwrap();
        let top = ev.eval_top(e).unwrap();
        let mut run = |path: &str| match find(&mut ev, top.clone(), path, &AttrMap::new()) {
            Ok(Value::Int(i)) => format!("{i}"),
            Ok(v) => v.type_name().to_string(),
            Err(e) => e.render(false),
        };
        assert_eq!(run("a.b.1"), "2");
        assert_eq!(run(""), "a function");
        assert_eq!(run("a"), "a function");
        assert_eq!(
            run("a.c"),
            "attribute 'c' in selection path 'a.c' not found\n       Did you mean b?"
        );
        assert_eq!(
            run("a.b.2"),
            "list index 2 in selection path 'a.b.2' is out of range"
        );
        assert_eq!(
            run("a.b.x"),
            "the expression selected by the selection path 'a.b.x' should be a set but is a list"
        );
        assert_eq!(
            run("n.0"),
            "the expression selected by the selection path 'n.0' should be a list but is an integer"
        );
        assert_eq!(run("a..b"), "empty attribute name in selection path 'a..b'");
    }
}
