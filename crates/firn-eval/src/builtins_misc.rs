//! Builtins for errors and debugging (`addErrorContext`, `break`, `traceVerbose`), hashes of
//! files and conversions between hash formats, `toPath`, `scopedImport`, `fromTOML`,
//! `toXML`, and `unsafeGetAttrPos`.

use crate::rc_str::RcStr;
use std::rc::Rc;

use firn_format::{Hash, HashAlgo};

use crate::builtins::{attrs, force, string, PrimFn};
use crate::error::{err, EResult, ErrorKind, EvalError, FramePrint};
use crate::eval::Evaluator;
use crate::value::*;

/// A hash algorithm by name, with current Nix's message for an unknown one.
pub(crate) fn algo(s: &str) -> EResult<HashAlgo> {
    s.parse::<HashAlgo>().map_err(|_| {
        EvalError::with_kind(
            ErrorKind::Usage,
            format!(
                "unknown hash algorithm '{s}', expect 'blake3', 'md5', 'sha1', 'sha256', or 'sha512'"
            ),
        )
    })
}

fn convert_hash(ev: &mut Evaluator, a: &[Thunk]) -> EResult<Value> {
    let args = attrs(ev, &a[0])?;
    let get = |n: &str| args.get(n).cloned();
    let hash = match get("hash") {
        Some(t) => string(ev, &t)?.s,
        None => return err("attribute 'hash' missing in call to 'convertHash'"),
    };
    let algo = match get("hashAlgo") {
        Some(t) => Some(algo(&string(ev, &t)?.s)?),
        None => None,
    };
    let format = match get("toHashFormat") {
        Some(t) => string(ev, &t)?.s,
        None => return err("attribute 'toHashFormat' missing in call to 'convertHash'"),
    };
    let h = Hash::parse(&hash, algo).map_err(|e| EvalError::new(e.to_string()))?;
    let out = match &*format {
        "base16" => h.to_base16(),
        "nix32" => h.to_nix32(),
        "base32" => {
            // Current Nix still takes the old name, with a warning.
            crate::term::write_stderr_line(
                r#"warning: "base32" is a deprecated alias for hash format "nix32"."#,
            );
            h.to_nix32()
        }
        "base64" => h.to_base64(),
        "sri" => h.to_sri(),
        other => {
            return Err(EvalError::with_kind(
                ErrorKind::Usage,
                format!(
                    "unknown hash format '{other}', expect 'base16', 'base32', 'base64', or 'sri'"
                ),
            ))
        }
    };
    Ok(Value::str(out))
}

fn hash_file(ev: &mut Evaluator, a: &[Thunk]) -> EResult<Value> {
    let algo = algo(&crate::builtins::string_arg(ev, &a[0], (0, "builtins.hashFile"))?.s)?;
    let v = force(ev, &a[1])?;
    let p = ev.coerce_to_string(&v, false, false)?;
    let p = crate::ifd::realise_path(ev, p.s.to_string(), &p.context)?;
    ev.check_source_path(&p)?;
    let real = ev.store.real_path(&p);
    let data = std::fs::read(&real).map_err(|e| crate::error::io_error("reading file", &p, &e))?;
    Ok(Value::str(Hash::digest(algo, data).to_base16()))
}

/// `exec [ program arg ... ]` (only with `allow-unsafe-native-code-during-evaluation`): the
/// program (looked up in `PATH`) run with the arguments, once the paths their contexts name
/// exist (built if need be, as for `import`), and what it prints evaluated as Nix (relative
/// paths in it are relative to `/`, as in current Nix), as CppNix's `exec`.
fn exec(ev: &mut Evaluator, a: &[Thunk]) -> EResult<Value> {
    let items = crate::builtins::list_arg(ev, &a[0], (0, "builtins.exec"))?;
    if items.is_empty() {
        return err("at least one argument to 'exec' required");
    }
    let mut words = Vec::with_capacity(items.len());
    let mut context = Vec::new();
    for (i, t) in items.iter().enumerate() {
        let frame = match i {
            0 => "while evaluating the first element of the argument passed to builtins.exec",
            _ => "while evaluating an element of the argument passed to builtins.exec",
        };
        let s = force(ev, t)
            .and_then(|v| ev.coerce_to_string(&v, false, false))
            .map_err(|x| crate::builtins::text_frame(x, frame))?;
        context.extend(s.context.iter().cloned());
        words.push(s.s.to_string());
    }
    let program = words.remove(0);
    // The placeholders of outputs built replaced (which CppNix leaves to do).
    let rewrites = crate::ifd::realise_context(ev, &context)?;
    let program = crate::ifd::rewrite(program, &rewrites);
    let words: Vec<String> = words
        .into_iter()
        .map(|w| crate::ifd::rewrite(w, &rewrites))
        .collect();
    let out = std::process::Command::new(&program)
        .args(&words)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output();
    let out = match out {
        Ok(out) => out,
        Err(e) => {
            // As CppNix's child says before it exits with 1.
            let why = match e.raw_os_error() {
                // SAFETY: strerror gives a string that is copied at once.
                Some(n) => unsafe {
                    std::ffi::CStr::from_ptr(libc::strerror(n))
                        .to_string_lossy()
                        .into_owned()
                },
                None => e.to_string(),
            };
            crate::term::write_stderr_line(&crate::error::error_line(&format!(
                "executing '{program}': {why}"
            )));
            return err(format!("program '{program}' failed with exit code 1"));
        }
    };
    if !out.status.success() {
        return err(format!(
            "program '{program}' {}",
            firn_store::exit_status::describe(&out.status)
        ));
    }
    let text = firn_syntax::bytes::decode(out.stdout);
    let e = ev
        .parse_with_names(&text, "«string»", "/", &[])
        .map_err(|mut x| {
            x.trace
                .push(format!("while parsing the output from '{program}'"));
            x
        })?;
    ev.eval_top(e).map_err(|mut x| {
        x.trace
            .push(format!("while evaluating the output from '{program}'"));
        x
    })
}

/// `scopedImport attrs path`: evaluate the file with `attrs` in scope above the globals (not
/// cached, since the scope differs between calls).
fn scoped_import(ev: &mut Evaluator, a: &[Thunk]) -> EResult<Value> {
    let scope = attrs(ev, &a[0])?;
    let v = force(ev, &a[1])?;
    let s = ev.coerce_to_string(&v, false, false)?;
    let mut path = crate::ifd::realise_path(ev, s.s.to_string(), &s.context)?;
    ev.check_source_path(&path)?;
    if std::path::Path::new(&path).is_dir() {
        path = format!("{}/default.nix", path.trim_end_matches('/'));
    }
    let text = std::fs::read(ev.store.real_path(&path))
        .map(firn_syntax::bytes::decode)
        .map_err(|e| EvalError::new(format!("reading file '{path}': {e}")))?;
    let dir = std::path::Path::new(&path)
        .parent()
        .map(|d| d.to_string_lossy().into_owned())
        .unwrap_or_else(|| "/".into());
    let names: Vec<_> = scope.keys().map(|k| ev.sym(k)).collect();
    let e = ev.parse_with_names(&text, &path, &dir, &names)?;
    let vars: std::collections::BTreeMap<_, _> =
        names.iter().copied().zip(scope.values().cloned()).collect();
    let env = ev.base_env.push(Scope::Vars(VarMap::from(vars)));
    ev.eval(e, &env)
}

/// A string from TOML, which must not contain a NUL (CppNix's message, as it reaches
/// `fromTOML`'s own).
fn toml_no_nul(s: &str) -> EResult<&str> {
    crate::builtins_more::no_nul(s)
        .map_err(|e| EvalError::new(format!("while parsing TOML: error: {}", e.msg)))
}

/// A TOML date, time or date-time as current Nix writes it (RFC 3339: an upper-case `T`,
/// seconds always, the fraction in 3, 6 or 9 digits, whichever is the shortest exact one).
fn toml_timestamp(d: &toml::value::Datetime) -> String {
    let mut out = String::new();
    if let Some(date) = &d.date {
        out.push_str(&format!(
            "{:04}-{:02}-{:02}",
            date.year, date.month, date.day
        ));
    }
    if let Some(time) = &d.time {
        if d.date.is_some() {
            out.push('T');
        }
        out.push_str(&format!(
            "{:02}:{:02}:{:02}",
            time.hour, time.minute, time.second
        ));
        let ns = time.nanosecond;
        if ns != 0 {
            if ns % 1_000_000 == 0 {
                out.push_str(&format!(".{:03}", ns / 1_000_000));
            } else if ns % 1_000 == 0 {
                out.push_str(&format!(".{:06}", ns / 1_000));
            } else {
                out.push_str(&format!(".{ns:09}"));
            }
        }
    }
    match d.offset {
        Some(toml::value::Offset::Z) => out.push('Z'),
        Some(toml::value::Offset::Custom { minutes }) => {
            let sign = if minutes < 0 { '-' } else { '+' };
            let m = minutes.unsigned_abs();
            out.push_str(&format!("{sign}{:02}:{:02}", m / 60, m % 60));
        }
        None => {}
    }
    out
}

fn toml_value(v: toml::Value, timestamps: bool) -> EResult<Value> {
    Ok(match v {
        toml::Value::String(s) => Value::str(toml_no_nul(&s)?),
        toml::Value::Integer(i) => Value::Int(i),
        toml::Value::Float(f) => Value::Float(f),
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) if timestamps => {
            let mut m = AttrMap::new();
            m.insert("_type".into(), Thunk::value(Value::str("timestamp")));
            m.insert("value".into(), Thunk::value(Value::str(toml_timestamp(&d))));
            Value::Attrs(Rc::new(m.into()))
        }
        toml::Value::Datetime(_) => {
            return err("while parsing TOML: Dates and times are not supported")
        }
        toml::Value::Array(a) => Value::List(Rc::new(
            a.into_iter()
                .map(|x| toml_value(x, timestamps).map(Thunk::value))
                .collect::<EResult<_>>()?,
        )),
        toml::Value::Table(t) => {
            let mut m = AttrMap::new();
            for (k, x) in t {
                toml_no_nul(&k)?;
                m.insert(k.into(), Thunk::value(toml_value(x, timestamps)?));
            }
            Value::Attrs(Rc::new(m.into()))
        }
    })
}

fn from_toml(ev: &mut Evaluator, a: &[Thunk]) -> EResult<Value> {
    let s = string(ev, &a[0])?;
    let t: toml::Table = s.s.parse().map_err(|e: toml::de::Error| {
        let msg = integer_range_error(&s.s, &e).unwrap_or_else(|| e.message().to_string());
        EvalError::new(format!("while parsing TOML: {msg}"))
    })?;
    toml_value(toml::Value::Table(t), ev.features.parse_toml_timestamps)
}

/// For a decimal integer outside the 64-bit range, the message (with the line pointed at)
/// of the TOML parser CppNix uses. As CppNix shows it: highlighted (the escapes are removed
/// when stderr is not a terminal), so the message's last line, empty but for the closing
/// escape, keeps the indentation of a continued message.
fn integer_range_error(text: &str, e: &toml::de::Error) -> Option<String> {
    let m = e.message();
    if !m.starts_with("number too large") && !m.starts_with("number too small") {
        return None;
    }
    // The number around where the parser stopped.
    let in_number = |c: char| c.is_ascii_digit() || matches!(c, '_' | '+' | '-');
    let at = e.span()?.start.min(text.len());
    let start = text[..at].rfind(|c| !in_number(c)).map_or(0, |i| i + 1);
    let end = text[at..]
        .find(|c| !in_number(c))
        .map_or(text.len(), |i| at + i);
    if text[..start].ends_with(['x', 'o', 'b'])
        || text[start..end]
            .trim_start_matches(['+', '-'])
            .starts_with('0')
    {
        return None; // hexadecimal, octal, binary: another message
    }
    let line_start = text[..end].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[end..].find('\n').map_or(text.len(), |i| end + i);
    let line_no = text[..line_start].matches('\n').count() + 1;
    let pad = " ".repeat(line_no.to_string().len());
    let caret = " ".repeat(text[line_start..end].chars().count());
    Some(format!(
        "\x1b[35;1m[error] toml::parse_dec_integer: too large integer: current max digits = 2^63\n \
         --> fromTOML\n \
         {pad} |\n \
         {line_no} | {}\n \
         {pad} | {caret}^-- must be < 2^63\n\x1b[0m",
        &text[line_start..line_end]
    ))
}

/// Escape text for an XML attribute value, as CppNix's XML writer does: the markup
/// characters, and newlines (which attribute normalisation would turn into spaces); tabs and
/// carriage returns stay as they are.
fn xml_escape(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\n' => out.push_str("&#xA;"),
            c => out.push(c),
        }
    }
}

/// An XML document written with CppNix's layout: two spaces per level, `<e a="v" />` for empty
/// elements. The elements open are kept, to be closed when writing stops at an error.
struct Xml {
    out: String,
    open: Vec<&'static str>,
}

impl Xml {
    fn tag(&mut self, name: &'static str, attrs: &[(&str, &str)], empty: bool) {
        for _ in 0..self.open.len() {
            self.out.push_str("  ");
        }
        self.out.push('<');
        self.out.push_str(name);
        for (k, v) in attrs {
            self.out.push(' ');
            self.out.push_str(k);
            self.out.push_str("=\"");
            xml_escape(v, &mut self.out);
            self.out.push('"');
        }
        self.out.push_str(if empty { " />\n" } else { ">\n" });
        if !empty {
            self.open.push(name);
        }
    }

    /// Close the innermost element open.
    fn close(&mut self) {
        let Some(name) = self.open.pop() else {
            return;
        };
        for _ in 0..self.open.len() {
            self.out.push_str("  ");
        }
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push_str(">\n");
    }
}

/// How a value is written as XML: `strict` forces values as they are reached (otherwise one
/// not computed yet is `<unevaluated />`), `location` gives each attribute and function the
/// place it is defined at (`column`, `line`, and `path` when that is a file), as CppNix's
/// `nix-instantiate --xml` does. `builtins.toXML` is strict, without locations.
#[derive(Clone, Copy, Debug)]
pub struct XmlOptions {
    pub strict: bool,
    pub location: bool,
}

/// The state of one XML rendering: the document, the options, the context of the strings met
/// and the derivations written out already.
struct XmlWriter {
    x: Xml,
    opts: XmlOptions,
    ctx: Vec<RcStr>,
    seen: std::collections::HashSet<String>,
}

impl XmlWriter {
    /// The value of `t` to write: forced when strict, else as far as it is computed.
    fn value_of(&self, ev: &mut Evaluator, t: &Thunk) -> EResult<Option<Value>> {
        if self.opts.strict {
            ev.force(t).map(Some)
        } else {
            Ok(t.peek())
        }
    }

    /// `column`, `line` and (for a file) `path` of span offset `off`, as XML attributes in
    /// CppNix's order (by name).
    fn location(ev: &Evaluator, off: Option<u32>) -> Vec<(&'static str, String)> {
        let Some((file, line, col)) = off.and_then(|o| ev.positions.locate(o)) else {
            return Vec::new();
        };
        let mut attrs = vec![("column", col.to_string()), ("line", line.to_string())];
        if file.starts_with('/') {
            attrs.push(("path", file.to_string()));
        }
        attrs
    }

    fn attrs(&mut self, ev: &mut Evaluator, set: &AttrSet) -> EResult<()> {
        for (k, t) in set.iter() {
            let mut attrs: Vec<(&str, String)> = Vec::with_capacity(4);
            if self.opts.location {
                let off = ev.positions.attr_offset(set, k, &ev.interner);
                attrs = Self::location(ev, off);
            }
            // By name, as CppNix's attribute map: after `column` and `line`, before `path`.
            let at = attrs
                .iter()
                .position(|(n, _)| *n > "name")
                .unwrap_or(attrs.len());
            attrs.insert(at, ("name", k.to_string()));
            let shown: Vec<(&str, &str)> = attrs.iter().map(|(n, v)| (*n, v.as_str())).collect();
            self.x.tag("attr", &shown, false);
            match self.value_of(ev, t)? {
                Some(v) => self.value(ev, &v)?,
                None => self.x.tag("unevaluated", &[], true),
            }
            self.x.close();
        }
        Ok(())
    }

    /// Write `v`, one level deeper: as CppNix, each level counts towards `max-call-depth`
    /// (a set that contains itself ends with that error, not with the memory exhausted).
    fn value(&mut self, ev: &mut Evaluator, v: &Value) -> EResult<()> {
        if ev.depth >= ev.max_call_depth {
            return err("stack overflow; max-call-depth exceeded");
        }
        ev.depth += 1;
        let r = ev.check_stack().and_then(|()| self.value_here(ev, v));
        ev.depth -= 1;
        r
    }

    fn value_here(&mut self, ev: &mut Evaluator, v: &Value) -> EResult<()> {
        let x = &mut self.x;
        match v {
            Value::Int(i) => x.tag("int", &[("value", &i.to_string())], true),
            Value::Bool(b) => x.tag(
                "bool",
                &[("value", if *b { "true" } else { "false" })],
                true,
            ),
            Value::String(s) => {
                self.ctx.extend(s.context.iter().cloned());
                x.tag("string", &[("value", &s.s)], true)
            }
            Value::Path(p) => x.tag("path", &[("value", p)], true),
            Value::Null => x.tag("null", &[], true),
            Value::Float(f) => x.tag(
                "float",
                &[("value", &firn_syntax::show::format_float(*f))],
                true,
            ),
            Value::List(l) => {
                x.tag("list", &[], false);
                for t in l.iter() {
                    match self.value_of(ev, t)? {
                        Some(v) => self.value(ev, &v)?,
                        None => self.x.tag("unevaluated", &[], true),
                    }
                }
                self.x.close();
            }
            Value::Attrs(m) => {
                if ev.is_derivation(m)? {
                    let mut found = Vec::new();
                    let mut drv_path = String::new();
                    for key in ["drvPath", "outPath"] {
                        if let Some(t) = m.get(key) {
                            if let Some(Value::String(s)) = self.value_of(ev, &t.clone())? {
                                self.ctx.extend(s.context.iter().cloned());
                                if key == "drvPath" {
                                    drv_path = s.s.to_string();
                                }
                                found.push((key, s.s.to_string()));
                            }
                        }
                    }
                    let attrs: Vec<(&str, &str)> =
                        found.iter().map(|(k, v)| (*k, v.as_str())).collect();
                    self.x.tag("derivation", &attrs, false);
                    if !drv_path.is_empty() && self.seen.insert(drv_path) {
                        self.attrs(ev, m)?;
                    } else {
                        self.x.tag("repeated", &[], true);
                    }
                    self.x.close();
                } else {
                    self.x.tag("attrs", &[], false);
                    self.attrs(ev, m)?;
                    self.x.close();
                }
            }
            Value::Lambda(l) => {
                let firn_syntax::ExprKind::Lambda { arg, formals, .. } = &l.expr.kind else {
                    return err("internal error: a lambda without a lambda expression");
                };
                let place = if self.opts.location {
                    Self::location(ev, Some(l.expr.span.start))
                } else {
                    Vec::new()
                };
                let shown: Vec<(&str, &str)> =
                    place.iter().map(|(n, v)| (*n, v.as_str())).collect();
                let x = &mut self.x;
                x.tag("function", &shown, false);
                match formals {
                    Some(f) => {
                        let name = arg.map(|a| ev.interner.name(a).to_string());
                        let mut attrs: Vec<(&str, &str)> = Vec::new();
                        if f.ellipsis {
                            attrs.push(("ellipsis", "1"));
                        }
                        if let Some(n) = &name {
                            attrs.push(("name", n));
                        }
                        x.tag("attrspat", &attrs, false);
                        let mut names: Vec<String> = f
                            .formals
                            .iter()
                            .map(|fm| ev.interner.name(fm.name).to_string())
                            .collect();
                        names.sort();
                        for n in names {
                            x.tag("attr", &[("name", &n)], true);
                        }
                        x.close();
                    }
                    None => {
                        let n = arg
                            .map(|a| ev.interner.name(a).to_string())
                            .unwrap_or_default();
                        x.tag("varpat", &[("name", &n)], true);
                    }
                }
                x.close();
            }
            Value::PrimOp(_) | Value::PrimOpApp(..) => x.tag("unevaluated", &[], true),
        }
        Ok(())
    }
}

/// `builtins.toXML`: the value as CppNix's XML (forced throughout, no locations), with the
/// context of the strings in it.
pub fn to_xml(ev: &mut Evaluator, v: &Value) -> EResult<NixString> {
    let opts = XmlOptions {
        strict: true,
        location: false,
    };
    value_to_xml(ev, v, opts).map_err(|(_, e)| e)
}

/// `v` as CppNix's XML document, written as `opts` says (`nix-instantiate --xml`), with the
/// context of the strings in it. On an error, the document as far as it was written, with
/// the elements open closed (as CppNix prints it before the error), and the error.
pub fn value_to_xml(
    ev: &mut Evaluator,
    v: &Value,
    opts: XmlOptions,
) -> Result<NixString, (String, EvalError)> {
    let mut w = XmlWriter {
        x: Xml {
            out: String::from("<?xml version='1.0' encoding='utf-8'?>\n"),
            open: Vec::new(),
        },
        opts,
        ctx: Vec::new(),
        seen: Default::default(),
    };
    w.x.tag("expr", &[], false);
    let r = w.value(ev, v);
    while !w.x.open.is_empty() {
        w.x.close();
    }
    match r {
        Ok(()) => Ok(NixString::with_context(w.x.out, w.ctx)),
        Err(e) => Err((w.x.out, e)),
    }
}

pub fn table() -> Vec<(&'static str, usize, PrimFn)> {
    vec![
        // As in CppNix, the message is evaluated only when there is an error to give it to
        // (the module system passes messages that are costly to build, such as an option's
        // name shown with `showOption`); an error in the message replaces the first one.
        ("addErrorContext", 2, |ev, a| match force(ev, &a[1]) {
            Ok(v) => Ok(v),
            Err(mut e) => {
                let m = force(ev, &a[0])?;
                let s = ev.coerce_to_string(&m, false, false).map_err(|x| {
                    crate::builtins::text_frame(
                        x,
                        "while evaluating the error message passed to builtins.addErrorContext",
                    )
                })?;
                e.push_frame(s.s.to_string(), FramePrint::Always);
                Err(e)
            }
        }),
        // Without a debugger attached, `break` is the identity.
        ("break", 1, |ev, a| force(ev, &a[0])),
        ("traceVerbose", 2, |ev, a| {
            if ev.trace_verbose {
                let v = force(ev, &a[0])?;
                let shown = match &v {
                    Value::String(s) => s.s.to_string(),
                    other => crate::print::print_value(ev, other, false)?,
                };
                crate::term::write_stderr_line(&format!("trace: {shown}"));
            }
            force(ev, &a[1])
        }),
        ("convertHash", 1, convert_hash),
        ("hashFile", 2, hash_file),
        ("exec", 1, exec),
        ("toPath", 1, |ev, a| {
            const ARG: crate::builtins::Arg = (0, "builtins.toPath");
            let s = crate::builtins::coerce_arg(ev, &a[0], false, false, ARG)?;
            if !s.s.starts_with('/') {
                return Err(crate::builtins::arg_frame(
                    EvalError::new(format!(
                        "string '{}' doesn't represent an absolute path",
                        s.s
                    )),
                    ARG,
                ));
            }
            Ok(Value::String(NixString {
                s: crate::eval::canon_path(&s.s).into(),
                context: s.context.clone(),
            }))
        }),
        ("scopedImport", 2, scoped_import),
        ("fromTOML", 1, from_toml),
        ("toXML", 1, |ev, a| {
            let v = force(ev, &a[0])?;
            crate::builtins::deep_force(ev, &v)?;
            Ok(Value::String(to_xml(ev, &v)?))
        }),
        // Known for sets made from syntax (and `functionArgs`), and what `removeAttrs` and
        // `intersectAttrs` keep of them, and for the right side of `//`; otherwise null
        // (CppNix keeps a position with every attribute, firn one origin with a set).
        ("unsafeGetAttrPos", 2, |ev, a| {
            let name = string(ev, &a[0])?;
            let set = attrs(ev, &a[1])?;
            if !set.contains_key(&*name.s) {
                return Ok(Value::Null);
            }
            Ok(
                match ev.positions.attr_offset(&set, &name.s, &ev.interner) {
                    Some(off) => ev.positions.value(off),
                    None => Value::Null,
                },
            )
        }),
    ]
}
