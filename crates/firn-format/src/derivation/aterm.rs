//! The ATerm text of a `.drv` file:
//! `Derive([outputs],[input drvs],[input srcs],"system","builder",[args],[env])`.
//!
//! Printing follows CppNix exactly, including which strings it escapes (`"`, `\`, newline,
//! carriage return and tab in the builder, arguments and environment) and which it writes as
//! they are (output names and paths, input paths, the system). Parsing never panics: malformed
//! text gives an error with the byte offset.

use std::collections::BTreeMap;

use super::modulo::ModuloInputs;
use super::{output_path_name, parse_method_algo, Derivation, DerivationOutput, DrvError};
use crate::store_path::{StoreDir, StorePath};

/// A cursor over the text being parsed.
struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn expect(&mut self, lit: &str) -> Result<(), DrvError> {
        if self.s[self.i..].starts_with(lit.as_bytes()) {
            self.i += lit.len();
            Ok(())
        } else {
            Err(DrvError::Expected {
                offset: self.i,
                expected: format!("'{lit}'"),
            })
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    /// A quoted string with backslash escapes (`\n`, `\r`, `\t`, and `\c` for any other `c`).
    fn string(&mut self) -> Result<String, DrvError> {
        self.expect("\"")?;
        let start = self.i;
        let mut v = Vec::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(DrvError::Bad {
                    offset: start - 1,
                    msg: "unterminated string".into(),
                });
            };
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let Some(e) = self.peek() else {
                        return Err(DrvError::Bad {
                            offset: start - 1,
                            msg: "unterminated string".into(),
                        });
                    };
                    self.i += 1;
                    v.push(match e {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        other => other,
                    });
                }
                c => v.push(c),
            }
        }
        String::from_utf8(v).map_err(|_| DrvError::Bad {
            offset: start,
            msg: "string is not valid UTF-8".into(),
        })
    }

    /// A quoted store path.
    fn path(&mut self, sd: &StoreDir) -> Result<StorePath, DrvError> {
        let offset = self.i;
        let s = self.string()?;
        sd.parse(&s).map_err(|e| DrvError::Bad {
            offset,
            msg: e.to_string(),
        })
    }

    /// `[item,item,...]`
    fn list<T>(
        &mut self,
        mut item: impl FnMut(&mut Self) -> Result<T, DrvError>,
    ) -> Result<Vec<T>, DrvError> {
        self.expect("[")?;
        let mut out = Vec::new();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(out);
        }
        loop {
            out.push(item(self)?);
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(out);
                }
                _ => {
                    return Err(DrvError::Expected {
                        offset: self.i,
                        expected: "',' or ']'".into(),
                    })
                }
            }
        }
    }

    /// `("id","path","hashAlgo","hash")`, checked and normalised as CppNix reads it.
    fn output(
        &mut self,
        sd: &StoreDir,
        drv_name: &str,
    ) -> Result<(String, DerivationOutput), DrvError> {
        self.expect("(")?;
        let id = self.string()?;
        self.expect(",")?;
        let path_offset = self.i;
        let path = self.string()?;
        self.expect(",")?;
        let algo_offset = self.i;
        let hash_algo = self.string()?;
        self.expect(",")?;
        let hash_offset = self.i;
        let hash = self.string()?;
        self.expect(")")?;
        let bad = |offset: usize, msg: String| DrvError::Bad { offset, msg };
        let store_path = |p: &str| sd.parse(p).map_err(|e| bad(path_offset, e.to_string()));
        if hash_algo.is_empty() {
            // CppNix ignores the hash of an output without an algorithm.
            let out = if path.is_empty() {
                DerivationOutput::deferred()
            } else {
                DerivationOutput::input_addressed(store_path(&path)?)
            };
            return Ok((id, out));
        }
        let (method, algo) = parse_method_algo(&hash_algo)
            .map_err(|e| bad(algo_offset, format!("output '{id}': {e}")))?;
        if hash.is_empty() || hash == "impure" {
            if !path.is_empty() {
                return Err(bad(
                    path_offset,
                    format!("output '{id}' has a path but no fixed hash"),
                ));
            }
            let out = if hash.is_empty() {
                DerivationOutput::floating(method, algo)
            } else {
                DerivationOutput::impure(method, algo)
            };
            return Ok((id, out));
        }
        if !path.starts_with('/') {
            return Err(bad(
                path_offset,
                format!("bad path '{path}' of fixed output '{id}'"),
            ));
        }
        let h =
            super::parse_fixed_hash(&hash, algo).map_err(|e| bad(hash_offset, e.to_string()))?;
        // CppNix keeps only the hash of a fixed output and recomputes its path.
        let p = sd
            .make_fixed_output_path(&output_path_name(drv_name, &id), method, &h, [], false)
            .map_err(|e| bad(path_offset, e.to_string()))?;
        Ok((id, DerivationOutput::fixed_output(method, &h, Some(p))))
    }
}

/// Append `s` in quotes with CppNix's escapes (`"`, `\`, newline, return, tab; the same
/// escapes CppNix 2.8's repl prints strings with).
pub fn escaped(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    // Copy the runs between characters that need escaping whole (all of them are ASCII,
    // so splitting there keeps the UTF-8 intact). Most strings of a derivation are short
    // (names, versions, flags), where a byte loop beats setting up a vectorised search;
    // in a long one without a return or a tab, which is nearly always, the others are found
    // with a vectorised search.
    if s.len() >= 32 && memchr::memchr2(b'\r', b'\t', s.as_bytes()).is_none() {
        let mut start = 0;
        for i in memchr::memchr3_iter(b'"', b'\\', b'\n', s.as_bytes()) {
            out.push_str(&s[start..i]);
            out.push_str(escape(s.as_bytes()[i]));
            start = i + 1;
        }
        out.push_str(&s[start..]);
    } else {
        let mut start = 0;
        for (i, &b) in s.as_bytes().iter().enumerate() {
            if NEEDS_ESCAPE[usize::from(b)] {
                out.push_str(&s[start..i]);
                out.push_str(escape(b));
                start = i + 1;
            }
        }
        out.push_str(&s[start..]);
    }
    out.push('"');
}

/// The bytes [`escaped`] writes otherwise.
const NEEDS_ESCAPE: [bool; 256] = {
    let mut t = [false; 256];
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t[b'\n' as usize] = true;
    t[b'\r' as usize] = true;
    t[b'\t' as usize] = true;
    t
};

/// How [`escaped`] writes a byte of [`NEEDS_ESCAPE`].
fn escape(b: u8) -> &'static str {
    match b {
        b'"' => "\\\"",
        b'\\' => "\\\\",
        b'\n' => "\\n",
        b'\r' => "\\r",
        _ => "\\t",
    }
}

/// Append `rest` (written masked by [`Derivation::unparse_rest_marked`]) to `out` with
/// `value(out, output)` writing the value at each mark: the text written unmasked once output
/// paths are known. The values are store paths, which need no escaping.
pub(super) fn splice_output_paths<'a>(
    out: &mut String,
    rest: &str,
    marks: &[(usize, &'a str)],
    mut value: impl FnMut(&mut String, &'a str),
) {
    out.reserve(rest.len() + marks.len() * 80);
    let mut at = 0;
    for (pos, output) in marks {
        out.push_str(&rest[at..*pos]);
        let start = out.len();
        value(out, output);
        debug_assert!(!out[start..]
            .bytes()
            .any(|b| matches!(b, b'"' | b'\\' | b'\n' | b'\r' | b'\t')));
        at = *pos;
    }
    out.push_str(&rest[at..]);
}

/// Append `s` in quotes as it is (CppNix does not escape names, paths and the system).
fn raw(out: &mut String, s: &str) {
    out.push('"');
    out.push_str(s);
    out.push('"');
}

/// Append `[s,s,...]` with each string written by `item`.
fn list<'a>(
    out: &mut String,
    items: impl IntoIterator<Item = &'a str>,
    item: fn(&mut String, &str),
) {
    out.push('[');
    for (i, s) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        item(out, s);
    }
    out.push(']');
}

impl Derivation {
    /// Parse the ATerm text of a derivation named `name` (the `.drv` file's name without
    /// `.drv`). Like CppNix, a repeated output keeps its first definition and a repeated
    /// input derivation or environment variable its last.
    pub fn parse(sd: &StoreDir, text: &str, name: &str) -> Result<Derivation, DrvError> {
        let mut p = Parser {
            s: text.as_bytes(),
            i: 0,
        };
        p.expect("Derive(")?;
        let mut outputs = BTreeMap::new();
        for (id, o) in p.list(|p| p.output(sd, name))? {
            outputs.entry(id).or_insert(o);
        }
        p.expect(",")?;
        let mut input_drvs = BTreeMap::new();
        for (d, outs) in p.list(|p| {
            p.expect("(")?;
            let d = p.path(sd)?;
            p.expect(",")?;
            let outs = p.list(|p| p.string())?;
            p.expect(")")?;
            Ok((d, outs))
        })? {
            input_drvs.insert(d, outs.into_iter().collect());
        }
        p.expect(",")?;
        let input_srcs = p.list(|p| p.path(sd))?.into_iter().collect();
        p.expect(",")?;
        let platform = p.string()?;
        p.expect(",")?;
        let builder = p.string()?;
        p.expect(",")?;
        let args = p.list(|p| p.string())?;
        p.expect(",")?;
        let mut env = BTreeMap::new();
        for (k, v) in p.list(|p| {
            p.expect("(")?;
            let k = p.string()?;
            p.expect(",")?;
            let v = p.string()?;
            p.expect(")")?;
            Ok((k, v))
        })? {
            env.insert(k, v);
        }
        p.expect(")")?;
        if p.i != p.s.len() {
            return Err(DrvError::Bad {
                offset: p.i,
                msg: "trailing data after the derivation".into(),
            });
        }
        Ok(Derivation {
            name: name.to_string(),
            outputs,
            input_drvs,
            input_srcs,
            platform,
            builder,
            args,
            env,
        })
    }

    /// The ATerm text. With `mask_outputs`, output paths and the environment variables named
    /// after outputs are blanked; `input_hashes` (each input's hash modulo with the outputs
    /// used) replaces the input derivations, as for the hash modulo.
    pub(crate) fn unparse(
        &self,
        sd: &StoreDir,
        mask_outputs: bool,
        input_hashes: Option<&ModuloInputs<'_>>,
    ) -> String {
        let mut s = String::with_capacity(1024);
        self.unparse_outputs(&mut s, sd, mask_outputs);
        self.unparse_inputs(&mut s, sd, input_hashes);
        self.unparse_rest(&mut s, sd, mask_outputs);
        s
    }

    /// `Derive([outputs],`
    pub(super) fn unparse_outputs(&self, s: &mut String, sd: &StoreDir, mask_outputs: bool) {
        self.unparse_outputs_with(s, sd, |_, o| match mask_outputs {
            true => None,
            false => o.path.as_ref(),
        });
    }

    /// `Derive([outputs],` with each output's path as `path` gives it (blank for none).
    pub(super) fn unparse_outputs_with<'p>(
        &'p self,
        s: &mut String,
        sd: &StoreDir,
        path: impl Fn(&str, &'p DerivationOutput) -> Option<&'p StorePath>,
    ) {
        s.push_str("Derive([");
        for (i, (id, o)) in self.outputs.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push('(');
            raw(s, id);
            s.push(',');
            match path(id, o) {
                Some(p) => {
                    s.push('"');
                    sd.display_into(s, p);
                    s.push('"');
                }
                None => raw(s, ""),
            }
            s.push(',');
            raw(s, &o.hash_algo);
            s.push(',');
            raw(s, &o.hash);
            s.push(')');
        }
        s.push_str("],");
    }

    /// `[input derivations],`, by path or (for the hash modulo) by hash.
    pub(super) fn unparse_inputs(
        &self,
        s: &mut String,
        sd: &StoreDir,
        input_hashes: Option<&ModuloInputs<'_>>,
    ) {
        s.push('[');
        match input_hashes {
            Some(h) => {
                for (i, (hash, outs)) in h.groups().enumerate() {
                    if i > 0 {
                        s.push(',');
                    }
                    s.push_str("(\"");
                    hash.push_base16(s);
                    s.push_str("\",");
                    list(s, outs, raw);
                    s.push(')');
                }
            }
            None => {
                for (i, (d, outs)) in self.input_drvs.iter().enumerate() {
                    if i > 0 {
                        s.push(',');
                    }
                    s.push_str("(\"");
                    sd.display_into(s, d);
                    s.push_str("\",");
                    list(s, outs.iter().map(String::as_str), raw);
                    s.push(')');
                }
            }
        }
        s.push_str("],");
    }

    /// About how long [`Self::unparse_rest`] is, to allocate once: exact but for escapes,
    /// for which a sixteenth more is allowed (scripts have a newline every few dozen bytes;
    /// without room for them, the text would be copied into a buffer twice as large).
    pub(super) fn rest_len_hint(&self, sd: &StoreDir) -> usize {
        let srcs: usize = self
            .input_srcs
            .iter()
            .map(|p| sd.as_str().len() + p.base_name().len() + 4)
            .sum();
        let args: usize = self.args.iter().map(|a| a.len() + 3).sum();
        let env: usize = self.env.iter().map(|(k, v)| k.len() + v.len() + 8).sum();
        let exact = srcs + self.platform.len() + self.builder.len() + args + env + 16;
        exact + exact / 16
    }

    /// `[sources],"system","builder",[args],[env])`
    fn unparse_rest(&self, s: &mut String, sd: &StoreDir, mask_outputs: bool) {
        self.unparse_rest_marked(s, sd, mask_outputs, &mut Vec::new());
    }

    /// [`Self::unparse_rest`], noting in `marks` (in the order of the environment) where the
    /// value of each variable named after an output starts, with the output's name: with
    /// `mask_outputs` these are empty, and the paths can be put in later (see
    /// [`splice_output_paths`]).
    pub(super) fn unparse_rest_marked<'a>(
        &'a self,
        s: &mut String,
        sd: &StoreDir,
        mask_outputs: bool,
        marks: &mut Vec<(usize, &'a str)>,
    ) {
        s.push('[');
        for (i, p) in self.input_srcs.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push('"');
            sd.display_into(s, p);
            s.push('"');
        }
        s.push(']');
        s.push(',');
        raw(s, &self.platform);
        s.push(',');
        escaped(s, &self.builder);
        s.push(',');
        list(s, self.args.iter().map(String::as_str), escaped);
        s.push_str(",[");
        for (i, (k, v)) in self.env.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push('(');
            escaped(s, k);
            s.push(',');
            let masked = mask_outputs && self.outputs.contains_key(k);
            if masked {
                marks.push((s.len() + 1, k.as_str()));
            }
            escaped(s, if masked { "" } else { v });
            s.push(')');
        }
        s.push_str("])");
    }

    /// The ATerm text as written to the `.drv` file.
    pub fn to_aterm(&self, sd: &StoreDir) -> String {
        self.unparse(sd, false, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"Derive([("out","/nix/store/zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz-x","","")],[("/nix/store/ffffffffffffffffffffffffffffffff-dep.drv",["dev","out"])],["/nix/store/ssssssssssssssssssssssssssssssss-src"],"x86_64-linux","/bin/sh",["-c","echo \"hi\"\n\\ \t"],[("a","b\r"),("out","/nix/store/zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz-x")])"#;

    /// The hint for the text after the inputs leaves room for the escapes of a script (a
    /// newline and a quote or two a line), so that the text is written without growing.
    #[test]
    fn rest_hint_has_room_for_escapes() {
        let sd = StoreDir::default();
        let mut d = Derivation::parse(&sd, SAMPLE, "x").unwrap();
        let script = "make -j$NIX_BUILD_CORES install PREFIX=\"$out\"\n".repeat(40);
        d.args.push(script.clone());
        d.env.insert("buildPhase".into(), script);
        let hint = d.rest_len_hint(&sd);
        let mut s = String::with_capacity(hint);
        d.unparse_rest(&mut s, &sd, false);
        assert!(s.len() <= hint, "{} > {hint}", s.len());
    }

    #[test]
    fn parse_print_roundtrip() {
        let sd = StoreDir::default();
        let d = Derivation::parse(&sd, SAMPLE, "x").unwrap();
        assert_eq!(d.args[1], "echo \"hi\"\n\\ \t");
        assert_eq!(d.env["a"], "b\r");
        assert_eq!(d.input_drvs.values().next().unwrap().len(), 2);
        assert_eq!(d.to_aterm(&sd), SAMPLE);
    }

    #[test]
    fn escaping_agrees_with_a_byte_by_byte_reference() {
        fn reference(s: &str) -> String {
            let mut out = String::from("\"");
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c => out.push(c),
                }
            }
            out.push('"');
            out
        }
        let pieces = [
            "",
            "a",
            "\"",
            "\\",
            "\n",
            "\r",
            "\t",
            "é",
            "long run of text ",
            "$",
        ];
        // Every string of up to four pieces: both the vectorised path (no return, no tab) and
        // the byte loop, escapes at the start, the end and next to each other.
        let mut cases = vec![String::new()];
        for _ in 0..4 {
            let mut next = Vec::new();
            for c in &cases {
                for p in pieces {
                    next.push(format!("{c}{p}"));
                }
            }
            cases.extend(next);
            cases.sort();
            cases.dedup();
        }
        for c in &cases {
            let mut out = String::new();
            escaped(&mut out, c);
            assert_eq!(out, reference(c), "escaping {c:?}");
        }
    }

    #[test]
    fn every_prefix_is_an_error() {
        let sd = StoreDir::default();
        for cut in 0..SAMPLE.len() {
            assert!(Derivation::parse(&sd, &SAMPLE[..cut], "x").is_err());
        }
        assert!(Derivation::parse(&sd, &format!("{SAMPLE}x"), "x").is_err());
    }

    #[test]
    fn errors_carry_the_offset() {
        let sd = StoreDir::default();
        let e = Derivation::parse(&sd, "Derive([],[],[],\"s\",\"b\",[\"a\" \"b\"],[])", "x");
        assert_eq!(
            e,
            Err(DrvError::Expected {
                offset: 28,
                expected: "',' or ']'".into()
            })
        );
        let e = Derivation::parse(
            &sd,
            "Derive([(\"out\",\"/tmp/x\",\"\",\"\")],[],[],\"\",\"\",[],[])",
            "x",
        );
        assert!(matches!(e, Err(DrvError::Bad { offset: 15, .. })), "{e:?}");
    }

    #[test]
    fn escapes_runs_and_keeps_unicode() {
        let mut out = String::new();
        escaped(&mut out, "é\"x\\\n\r\tü end");
        assert_eq!(out, "\"é\\\"x\\\\\\n\\r\\tü end\"");
        out.clear();
        escaped(&mut out, "");
        assert_eq!(out, "\"\"");
    }

    #[test]
    fn names_and_system_are_not_escaped_but_env_is() {
        let sd = StoreDir::default();
        let mut d = Derivation::parse(&sd, SAMPLE, "x").unwrap();
        d.platform = "a\tb".into();
        d.env.insert("k\"".into(), "\\".into());
        let text = d.to_aterm(&sd);
        assert!(text.contains(",\"a\tb\","), "{text}");
        assert!(text.contains("(\"k\\\"\",\"\\\\\")"), "{text}");
    }

    #[test]
    fn outputs_are_normalised_like_cppnix() {
        let sd = StoreDir::default();
        // A fixed output given in nix32 with a wrong path: the hash is printed back in base16
        // and the path recomputed.
        let text = "Derive([(\"out\",\"/nix/store/zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz-f\",\"sha256\",\"0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73\")],[],[],\"s\",\"b\",[],[])";
        let d = Derivation::parse(&sd, text, "f").unwrap();
        let o = &d.outputs["out"];
        assert_eq!(
            o.hash,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_ne!(o.path.as_ref().unwrap().hash_part(), "z".repeat(32));
        // An input-addressed output's stray hash is dropped.
        let text = "Derive([(\"out\",\"/nix/store/zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz-f\",\"\",\"junk\")],[],[],\"s\",\"b\",[],[])";
        let d = Derivation::parse(&sd, text, "f").unwrap();
        assert_eq!(d.outputs["out"].hash, "");
        // A repeated output keeps the first.
        let text = "Derive([(\"out\",\"\",\"\",\"\"),(\"out\",\"/nix/store/zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz-f\",\"\",\"\")],[],[],\"s\",\"b\",[],[])";
        let d = Derivation::parse(&sd, text, "f").unwrap();
        assert_eq!(d.outputs["out"].path, None);
    }

    #[test]
    fn bad_outputs() {
        let sd = StoreDir::default();
        for o in [
            r#"("out","","sha257","")"#,
            r#"("out","/nix/store/zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz-f","sha256","")"#,
            r#"("out","","sha256","abcd")"#,
            r#"("out","/nix/store/zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz-f","sha256","abcd")"#,
            r#"("out","/nix/store/zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz-f","sha256","sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73")"#,
            r#"("out","relative","","")"#,
        ] {
            let text = format!("Derive([{o}],[],[],\"s\",\"b\",[],[])");
            assert!(Derivation::parse(&sd, &text, "f").is_err(), "{o}");
        }
    }
}
