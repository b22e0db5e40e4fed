//! More builtins: JSON, hashing, versions, closures, warnings, and reading files (through the
//! evaluator's IO).

use crate::rc_str::RcStr;
use std::rc::Rc;

use firn_format::Hash;

use crate::builtins::{string_arg, PrimFn};
use crate::error::{err, EResult, EvalError};
use crate::eval::Evaluator;
use crate::value::*;

fn string(ev: &mut Evaluator, t: &Thunk) -> EResult<NixString> {
    match ev.force(t)? {
        Value::String(s) => Ok(s),
        v => Err(ev.type_error("a string", &v)),
    }
}

/// The path a file builtin (`readFile`, `pathExists`, ...) is given: as CppNix's
/// `realisePath`, anything that coerces to an absolute path (a path, a string, a set with
/// `__toString` or `outPath`).
fn path_of(ev: &mut Evaluator, t: &Thunk) -> EResult<String> {
    Ok(crate::builtins_drv::coerce_to_path(ev, t)?.0)
}

/// `builtins.toJSON`, collecting the context of the strings in `ctx`; paths are copied to the
/// store when `copy` (as `toJSON` and structured attributes do).
pub fn to_json(
    ev: &mut Evaluator,
    v: &Value,
    out: &mut String,
    ctx: &mut Vec<RcStr>,
    copy: bool,
) -> EResult<()> {
    // Nesting counts against max-call-depth, as in current Nix, so a deep structure is an
    // error, not a crash.
    ev.depth += 1;
    if ev.depth > ev.max_call_depth {
        ev.depth -= 1;
        return err("stack overflow; max-call-depth exceeded");
    }
    let r = ev
        .check_stack()
        .and_then(|()| to_json_inner(ev, v, out, ctx, copy));
    ev.depth -= 1;
    r
}

/// A JSON string: `s` quoted and escaped, or CppNix's error when the bytes `s` stands for
/// are not UTF-8 (see [`firn_syntax::bytes`]).
fn json_string(out: &mut String, s: &str) -> EResult<()> {
    let s = firn_syntax::bytes::utf8_for_json(s).map_err(|e| {
        EvalError::new(format!(
            "JSON serialization error: [json.exception.type_error.316] {e}"
        ))
    })?;
    out.push_str(&serde_json::Value::String(s.into_owned()).to_string());
    Ok(())
}

fn to_json_inner(
    ev: &mut Evaluator,
    v: &Value,
    out: &mut String,
    ctx: &mut Vec<RcStr>,
    copy: bool,
) -> EResult<()> {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => out.push_str(&i.to_string()),
        Value::Float(f) => out.push_str(
            &serde_json::Number::from_f64(*f)
                .map(|n| n.to_string())
                .unwrap_or_else(|| "null".into()),
        ),
        Value::String(s) => {
            ctx.extend(s.context.iter().cloned());
            json_string(out, &s.s)?
        }
        Value::Path(p) => {
            let s = if copy {
                ev.copy_path_to_store(p)?
            } else {
                NixString::plain(p.clone())
            };
            ctx.extend(s.context.iter().cloned());
            json_string(out, &s.s)?
        }
        Value::List(l) => {
            out.push('[');
            for (i, t) in l.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let x = ev.force(t)?;
                to_json(ev, &x, out, ctx, copy)?;
            }
            out.push(']');
        }
        Value::Attrs(a) => {
            if !a.contains_key("__toString") && !a.contains_key("outPath") {
                return json_object(ev, a, out, ctx, copy);
            }
            return match peel_for_json(ev, v)? {
                (Value::Attrs(p), _) => json_object(ev, &p, out, ctx, copy),
                // A path from `__toString` is not copied (CppNix's quirk).
                (p, through_to_string) => to_json(ev, &p, out, ctx, copy && !through_to_string),
            };
        }
        other => return err(format!("cannot convert {} to JSON", other.type_name())),
    }
    Ok(())
}

/// What `toJSON` writes for a set with `__toString` or `outPath`, as CppNix peels it: the
/// result of `__toString` (called with the set) or the `outPath`, again while that is a set
/// with either; and whether a `__toString` was called, whose result must then be a string
/// or a path.
fn peel_for_json(ev: &mut Evaluator, v: &Value) -> EResult<(Value, bool)> {
    let mut cur = v.clone();
    let mut through_to_string = false;
    loop {
        ev.check_stack()?;
        let next = match &cur {
            Value::Attrs(a) => {
                if let Some(f) = a.get("__toString") {
                    let f = ev.force(&f.clone())?;
                    through_to_string = true;
                    ev.call(f, Thunk::value(cur.clone()))?
                } else if let Some(o) = a.get("outPath") {
                    ev.force(&o.clone())?
                } else if through_to_string {
                    return Err(to_string_result_error(ev, "must", &cur));
                } else {
                    return Ok((cur, false));
                }
            }
            Value::String(_) | Value::Path(_) => return Ok((cur, through_to_string)),
            _ if through_to_string => return Err(to_string_result_error(ev, "should", &cur)),
            _ => return Ok((cur, false)),
        };
        cur = next;
    }
}

/// "`__toString` should/must return a string, but got …" (CppNix says "must" for a set).
#[cold]
fn to_string_result_error(ev: &Evaluator, verb: &str, v: &Value) -> EvalError {
    EvalError::new(format!(
        "`__toString` {verb} return a string, but got {}: {}",
        crate::print::show_type(v),
        crate::print::show_for_error(ev, v)
    ))
}

/// A set as a JSON object (attributes in order).
fn json_object(
    ev: &mut Evaluator,
    a: &AttrMap,
    out: &mut String,
    ctx: &mut Vec<RcStr>,
    copy: bool,
) -> EResult<()> {
    out.push('{');
    for (i, (k, t)) in a.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_string(out, k)?;
        out.push(':');
        let x = ev.force(t)?;
        to_json(ev, &x, out, ctx, copy)?;
    }
    out.push('}');
    Ok(())
}

/// The keys `genericClosure` has seen.
#[derive(Default)]
struct SeenKeys {
    /// A key of the first kind, for error messages when another kind turns up.
    first: Option<Value>,
    strings: std::collections::HashSet<RcStr, foldhash::fast::RandomState>,
    ints: std::collections::HashSet<i64, foldhash::fast::RandomState>,
    /// Other keys (floats, paths, lists, and ints once a float was seen), sorted.
    sorted: Vec<Value>,
}

impl SeenKeys {
    /// Add `key`; false if an equal key was there.
    fn insert(&mut self, ev: &mut Evaluator, key: Value) -> EResult<bool> {
        let Some(first) = &self.first else {
            self.first = Some(key.clone());
            return self.insert_kind(ev, key);
        };
        let same_kind = matches!(
            (first, &key),
            (Value::String(_), Value::String(_))
                | (
                    Value::Int(_) | Value::Float(_),
                    Value::Int(_) | Value::Float(_)
                )
                | (Value::Path(_), Value::Path(_))
                | (Value::List(_), Value::List(_))
        );
        if !same_kind {
            // Raises the comparison error: the new key is the left operand, as in
            // CppNix's `std::set` insertion.
            let first = first.clone();
            crate::builtins::less_than(ev, &key, &first)?;
        }
        if matches!(key, Value::Float(_)) && !self.ints.is_empty() {
            for i in self.ints.drain() {
                self.sorted.push(Value::Int(i));
            }
            self.sorted.sort_by(|a, b| match (a, b) {
                (Value::Int(x), Value::Int(y)) => x.cmp(y),
                _ => std::cmp::Ordering::Equal,
            });
        }
        self.insert_kind(ev, key)
    }

    fn insert_kind(&mut self, ev: &mut Evaluator, key: Value) -> EResult<bool> {
        match &key {
            Value::String(s) => return Ok(self.strings.insert(s.s.clone())),
            Value::Int(i) if self.sorted.is_empty() => return Ok(self.ints.insert(*i)),
            _ => {}
        }
        let (mut lo, mut hi) = (0, self.sorted.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            if crate::builtins::less_than(ev, &self.sorted[mid], &key)? {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo < self.sorted.len() && !crate::builtins::less_than(ev, &key, &self.sorted[lo])? {
            return Ok(false);
        }
        self.sorted.insert(lo, key);
        Ok(true)
    }
}

/// Nix strings cannot hold NUL bytes.
pub fn no_nul(s: &str) -> EResult<&str> {
    if s.contains('\0') {
        return err(format!(
            "input string '{}' cannot be represented as Nix string because it contains null bytes",
            s.replace('\0', "\u{2400}")
        ));
    }
    Ok(s)
}

fn from_json(j: serde_json::Value) -> EResult<Value> {
    Ok(match j {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None if n.is_u64() => {
                return err(format!(
                    "unsigned json number {n} outside of Nix integer range"
                ))
            }
            None => Value::Float(n.as_f64().unwrap_or(0.0)),
        },
        serde_json::Value::String(s) => Value::str(no_nul(&s)?),
        serde_json::Value::Array(a) => Value::List(Rc::new(
            a.into_iter()
                .map(|x| from_json(x).map(Thunk::value))
                .collect::<EResult<_>>()?,
        )),
        serde_json::Value::Object(o) => {
            let mut m = AttrMap::new();
            for (k, v) in o {
                no_nul(&k)?;
                m.insert(k.into(), Thunk::value(from_json(v)?));
            }
            Value::Attrs(Rc::new(m.into()))
        }
    })
}

/// Nix's version components: runs of digits, runs of other non-separator characters.
pub fn split_version(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < b.len() {
        if b[i] == '.' || b[i] == '-' {
            i += 1;
            continue;
        }
        let digit = b[i].is_ascii_digit();
        let start = i;
        while i < b.len() && b[i] != '.' && b[i] != '-' && b[i].is_ascii_digit() == digit {
            i += 1;
        }
        out.push(b[start..i].iter().collect());
    }
    out
}

fn component_less(a: &str, b: &str) -> bool {
    let an = a.parse::<u64>().ok();
    let bn = b.parse::<u64>().ok();
    match (an, bn) {
        (Some(x), Some(y)) => x < y,
        _ if a.is_empty() && bn.is_some() => true,
        _ if a == "pre" && b != "pre" => true,
        _ if b == "pre" => false,
        // Numbers are newer than words.
        (None, Some(_)) => true,
        (Some(_), None) => false,
        _ => a < b,
    }
}

/// `builtins.compareVersions`.
pub fn compare_versions(a: &str, b: &str) -> i64 {
    let x = split_version(a);
    let y = split_version(b);
    let n = x.len().max(y.len());
    for i in 0..n {
        let p = x.get(i).map(String::as_str).unwrap_or("");
        let q = y.get(i).map(String::as_str).unwrap_or("");
        if component_less(p, q) {
            return -1;
        }
        if component_less(q, p) {
            return 1;
        }
    }
    0
}

pub fn table() -> Vec<(&'static str, usize, PrimFn)> {
    vec![
        ("toJSON", 1, |ev, a| {
            let v = ev.force(&a[0])?;
            let mut s = String::new();
            let mut ctx = Vec::new();
            to_json(ev, &v, &mut s, &mut ctx, true)?;
            Ok(Value::String(NixString::with_context(s, ctx)))
        }),
        ("fromJSON", 1, |ev, a| {
            let s = string_arg(ev, &a[0], (0, "builtins.fromJSON"))?;
            let j: serde_json::Value = serde_json::from_str(&s.s)
                .map_err(|e| EvalError::new(format!("while parsing JSON: {e}")))?;
            from_json(j)
        }),
        ("hashString", 2, |ev, a| {
            let algo = string_arg(ev, &a[0], (0, "builtins.hashString"))?;
            let algo = crate::builtins_misc::algo(&algo.s)?;
            let s = string_arg(ev, &a[1], (1, "builtins.hashString"))?;
            Ok(Value::str(Hash::digest(algo, s.s.as_bytes()).to_base16()))
        }),
        ("compareVersions", 2, |ev, a| {
            let x = string_arg(ev, &a[0], (0, "builtins.compareVersions"))?;
            let y = string_arg(ev, &a[1], (1, "builtins.compareVersions"))?;
            Ok(Value::Int(compare_versions(&x.s, &y.s)))
        }),
        ("splitVersion", 1, |ev, a| {
            let s = string_arg(ev, &a[0], (0, "builtins.splitVersion"))?;
            Ok(Value::List(Rc::new(
                split_version(&s.s)
                    .into_iter()
                    .map(|c| Thunk::value(Value::str(c)))
                    .collect(),
            )))
        }),
        ("genericClosure", 1, |ev, a| {
            let args = crate::builtins::attrs_arg(ev, &a[0], (0, "builtins.genericClosure"))?;
            // As CppNix: the start set (an empty one needs no operator), then the operator.
            let missing = |name: &str| {
                crate::builtins::text_frame(
                    EvalError::new(format!("attribute '{name}' missing")),
                    "in the attrset passed as argument to builtins.genericClosure",
                )
            };
            let start = args.get("startSet").ok_or_else(|| missing("startSet"))?;
            // A queue, as CppNix's work list: items in the order they were found.
            let mut work: std::collections::VecDeque<Thunk> = match ev.force(start)? {
                Value::List(l) if l.is_empty() => return Ok(Value::List(l)),
                Value::List(l) => l.iter().cloned().collect(),
                v => {
                    return Err(crate::builtins::text_frame(
                        ev.type_error("a list", &v),
                        "while evaluating the 'startSet' attribute passed as argument to builtins.genericClosure",
                    ))
                }
            };
            let op = args.get("operator").ok_or_else(|| missing("operator"))?;
            let op = crate::builtins::function(ev, op).map_err(|x| {
                crate::builtins::text_frame(
                    x,
                    "while evaluating the 'operator' attribute passed as argument to builtins.genericClosure",
                )
            })?;
            // Keys are compared with Nix's ordering, as CppNix's std::set with CompareValues:
            // keys that cannot be compared (sets, different types) are an error. Strings and
            // integers (nearly all keys) go in hash sets; other keys in a sorted vector.
            let mut seen = SeenKeys::default();
            let mut out = Vec::new();
            while let Some(t) = work.pop_front() {
                let item = match ev.force(&t)? {
                    Value::Attrs(m) => m,
                    v => return Err(ev.type_error("a set", &v)),
                };
                let key = item
                    .get("key")
                    .cloned()
                    .ok_or_else(|| EvalError::new("attribute 'key' missing"))?;
                let key = ev.force(&key)?;
                if !seen.insert(ev, key)? {
                    continue;
                }
                out.push(t.clone());
                match ev.call(op.clone(), t)? {
                    Value::List(l) => {
                        // CppNix forces each new item as it adds it.
                        for x in l.iter() {
                            ev.force(x)?;
                            work.push_back(x.clone());
                        }
                    }
                    v => return Err(ev.type_error("a list", &v)),
                }
            }
            Ok(Value::List(Rc::new(out)))
        }),
        ("warn", 2, |ev, a| {
            let msg = string(ev, &a[0])?;
            crate::term::write_stderr_line(&format!("evaluation warning: {}", msg.s));
            if ev.abort_on_warn {
                return err("aborting to reveal stack trace of warning, as abort-on-warn is set");
            }
            ev.force(&a[1])
        }),
        ("readFile", 1, |ev, a| {
            let p = path_of(ev, &a[0])?;
            let bytes =
                std::fs::read(&p).map_err(|e| crate::error::io_error("reading file", &p, &e))?;
            if bytes.contains(&0) {
                return err(format!(
                    "the contents of the file '{p}' cannot be represented as a Nix string"
                ));
            }
            Ok(Value::str(firn_syntax::bytes::decode(bytes)))
        }),
        ("pathExists", 1, |ev, a| {
            let p = path_of(ev, &a[0])?;
            Ok(Value::Bool(std::fs::symlink_metadata(&p).is_ok()))
        }),
        ("readFileType", 1, |ev, a| {
            let p = path_of(ev, &a[0])?;
            let m = std::fs::symlink_metadata(&p)
                .map_err(|e| crate::error::io_error("getting status of", &p, &e))?;
            Ok(Value::str(file_type(&m.file_type())))
        }),
        ("readDir", 1, |ev, a| {
            let p = path_of(ev, &a[0])?;
            let mut m = AttrMap::new();
            for e in std::fs::read_dir(&p)
                .map_err(|e| crate::error::io_error("reading directory", &p, &e))?
            {
                let e = e.map_err(|e| EvalError::new(format!("reading directory '{p}': {e}")))?;
                let ft = e
                    .file_type()
                    .map_err(|e| EvalError::new(format!("reading directory '{p}': {e}")))?;
                m.insert(
                    e.file_name().to_string_lossy().into_owned().into(),
                    Thunk::value(Value::str(file_type(&ft))),
                );
            }
            Ok(Value::Attrs(Rc::new(m.into())))
        }),
    ]
}

fn file_type(ft: &std::fs::FileType) -> &'static str {
    if ft.is_dir() {
        "directory"
    } else if ft.is_symlink() {
        "symlink"
    } else if ft.is_file() {
        "regular"
    } else {
        "unknown"
    }
}

/// `NIX_PATH` (and `-I` entries, given first) as `__nixPath`'s list of `{ prefix; path; }`.
pub fn nix_path_value(extra: &[String]) -> Value {
    let mut entries: Vec<String> = extra.to_vec();
    if let Ok(p) = std::env::var("NIX_PATH") {
        entries.extend(p.split(':').filter(|s| !s.is_empty()).map(str::to_string));
    }
    let items = entries
        .into_iter()
        .map(|e| {
            let (prefix, path) = match e.split_once('=') {
                Some((p, v)) => (p.to_string(), v.to_string()),
                None => (String::new(), e),
            };
            let mut m = AttrMap::new();
            m.insert("prefix".into(), Thunk::value(Value::str(prefix)));
            m.insert("path".into(), Thunk::value(Value::str(path)));
            Thunk::value(Value::Attrs(Rc::new(m.into())))
        })
        .collect();
    Value::List(Rc::new(items))
}

/// `builtins.findFile`: the first entry of the search path under which `name` exists.
pub fn find_file(ev: &mut Evaluator, search: &Thunk, name: &str) -> EResult<Value> {
    let list = match ev.force(search)? {
        Value::List(l) => l,
        v => return Err(ev.type_error("a list", &v)),
    };
    for t in list.iter() {
        let entry = match ev.force(t)? {
            Value::Attrs(m) => m,
            v => return Err(ev.type_error("a set", &v)),
        };
        let prefix = match entry.get("prefix") {
            Some(p) => string(ev, &p.clone())?.s.to_string(),
            None => String::new(),
        };
        let path = match entry.get("path") {
            Some(p) => match ev.force(&p.clone())? {
                Value::Path(x) => x.to_string(),
                Value::String(s) => s.s.to_string(),
                v => return Err(ev.type_error("a path", &v)),
            },
            None => return err("attribute 'path' missing"),
        };
        let rest = if prefix.is_empty() {
            Some(name.to_string())
        } else if name == prefix {
            Some(String::new())
        } else {
            name.strip_prefix(&format!("{prefix}/")).map(str::to_string)
        };
        if let Some(rest) = rest {
            // A relative entry is relative to the current directory, as CppNix's absPath.
            let path = if path.starts_with('/') || path.contains("://") {
                path
            } else {
                let cwd = std::env::current_dir()
                    .map(|d| d.to_string_lossy().into_owned())
                    .unwrap_or_else(|_| "/".into());
                format!("{}/{path}", cwd.trim_end_matches('/'))
            };
            let candidate = if rest.is_empty() {
                path.clone()
            } else {
                format!("{}/{}", path.trim_end_matches('/'), rest)
            };
            if std::path::Path::new(&candidate).exists() {
                return Ok(Value::Path(crate::eval::canon_path(&candidate).into()));
            }
        }
    }
    Err(EvalError::with_kind(
        crate::error::ErrorKind::Throw,
        format!(
            "file '{name}' was not found in the Nix search path (add it using $NIX_PATH or -I)"
        ),
    ))
}

pub fn search_table() -> Vec<(&'static str, usize, PrimFn)> {
    vec![("findFile", 2, |ev, a| {
        let name = string(ev, &a[1])?;
        find_file(ev, &a[0], &name.s)
    })]
}

/// Compile a POSIX extended regular expression with the `regex` crate (the syntaxes agree on
/// what Nix code uses; POSIX classes like `[[:alpha:]]` are supported by both). Compiled
/// expressions are cached for the evaluation.
fn compile_regex(ev: &mut Evaluator, re: &str, anchored: bool) -> EResult<Rc<regex::Regex>> {
    let cache = &mut ev.regex_cache[usize::from(!anchored)];
    if let Some(r) = cache.get(re) {
        return Ok(r.clone());
    }
    // In POSIX expressions `.` matches newlines too.
    let pattern = if anchored {
        format!("(?s)^(?:{re})$")
    } else {
        format!("(?s){re}")
    };
    let r = regex::Regex::new(&pattern).map_err(|e| {
        EvalError::new(match e {
            regex::Error::CompiledTooBig(_) => {
                format!("memory limit exceeded by regular expression '{re}'")
            }
            _ => format!("invalid regular expression '{re}'"),
        })
    })?;
    let r = Rc::new(r);
    cache.insert(re.to_string(), r.clone());
    Ok(r)
}

fn group_value(m: Option<regex::Match<'_>>) -> Thunk {
    Thunk::value(match m {
        Some(m) => Value::str(m.as_str()),
        None => Value::Null,
    })
}

pub fn regex_table() -> Vec<(&'static str, usize, PrimFn)> {
    vec![
        ("match", 2, |ev, a| {
            let re = string_arg(ev, &a[0], (0, "builtins.match"))?;
            let s = string_arg(ev, &a[1], (1, "builtins.match"))?;
            let r = compile_regex(ev, &re.s, true)?;
            match r.captures(&s.s) {
                None => Ok(Value::Null),
                Some(c) => Ok(Value::List(Rc::new(
                    (1..c.len()).map(|i| group_value(c.get(i))).collect(),
                ))),
            }
        }),
        ("split", 2, |ev, a| {
            let re = string_arg(ev, &a[0], (0, "builtins.split"))?;
            let s = string_arg(ev, &a[1], (1, "builtins.split"))?;
            let r = compile_regex(ev, &re.s, false)?;
            let mut out = Vec::new();
            let mut last = 0;
            for c in r.captures_iter(&s.s) {
                let whole = c.get(0).expect("group 0 is the whole match");
                out.push(Thunk::value(Value::str(&s.s[last..whole.start()])));
                out.push(Thunk::value(Value::List(Rc::new(
                    (1..c.len()).map(|i| group_value(c.get(i))).collect(),
                ))));
                last = whole.end();
            }
            out.push(Thunk::value(Value::str(&s.s[last..])));
            Ok(Value::List(Rc::new(out)))
        }),
    ]
}
