//! Derivations: the ATerm `.drv` format (parsed and printed byte for byte), the hash "modulo"
//! fixed-output inputs that input-addressed output paths are computed from, and the JSON that
//! `nix derivation show` prints.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};
use thiserror::Error;

use crate::hash::{Hash, HashAlgo};
use crate::store_path::{FileIngestionMethod, StoreDir, StorePath, StorePathError};

/// One output as the `.drv` file states it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DerivationOutput {
    /// The output path; `None` for floating content-addressed or deferred outputs.
    pub path: Option<StorePath>,
    /// `""`, or for content-addressed outputs `[r:]<algo>`.
    pub hash_algo: String,
    /// `""`, or for fixed outputs the expected hash in base16.
    pub hash: String,
}

impl DerivationOutput {
    /// For a fixed output: how its contents are hashed, and the expected hash.
    pub fn fixed(&self) -> Option<(FileIngestionMethod, Hash)> {
        if self.hash.is_empty() {
            return None;
        }
        let (method, algo) = match self.hash_algo.strip_prefix("r:") {
            Some(a) => (FileIngestionMethod::Recursive, a),
            None => (FileIngestionMethod::Flat, self.hash_algo.as_str()),
        };
        let algo: HashAlgo = algo.parse().ok()?;
        Hash::parse(&self.hash, Some(algo))
            .ok()
            .map(|h| (method, h))
    }
}

/// A derivation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Derivation {
    /// The name (the `.drv` file's name without `.drv`); not part of the ATerm.
    pub name: String,
    pub outputs: BTreeMap<String, DerivationOutput>,
    pub input_drvs: BTreeMap<StorePath, BTreeSet<String>>,
    pub input_srcs: BTreeSet<StorePath>,
    pub platform: String,
    pub builder: String,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
}

/// Malformed `.drv` text.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DrvError {
    #[error("malformed derivation at byte {offset}: expected {expected}")]
    Expected { offset: usize, expected: String },
    #[error("malformed derivation at byte {offset}: {msg}")]
    Bad { offset: usize, msg: String },
    #[error(transparent)]
    Path(#[from] StorePathError),
}

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

    fn string(&mut self) -> Result<String, DrvError> {
        self.expect("\"")?;
        let start = self.i;
        let mut v = Vec::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(DrvError::Bad {
                    offset: start,
                    msg: "unterminated string".into(),
                });
            };
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let Some(e) = self.peek() else {
                        return Err(DrvError::Bad {
                            offset: self.i,
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
}

fn escape_into(out: &mut String, s: &str) {
    out.push('"');
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
}

fn strings_into<'a>(out: &mut String, items: impl IntoIterator<Item = &'a str>) {
    out.push('[');
    for (i, s) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        escape_into(out, s);
    }
    out.push(']');
}

impl Derivation {
    /// Parse the ATerm text of a derivation named `name`.
    pub fn parse(sd: &StoreDir, text: &str, name: &str) -> Result<Derivation, DrvError> {
        let mut p = Parser {
            s: text.as_bytes(),
            i: 0,
        };
        p.expect("Derive(")?;
        let mut outputs = BTreeMap::new();
        for (id, o) in p.list(|p| {
            p.expect("(")?;
            let id = p.string()?;
            p.expect(",")?;
            let offset = p.i;
            let path = p.string()?;
            p.expect(",")?;
            let hash_algo = p.string()?;
            p.expect(",")?;
            let hash = p.string()?;
            p.expect(")")?;
            let path = if path.is_empty() {
                None
            } else {
                Some(sd.parse(&path).map_err(|e| DrvError::Bad {
                    offset,
                    msg: e.to_string(),
                })?)
            };
            Ok((
                id,
                DerivationOutput {
                    path,
                    hash_algo,
                    hash,
                },
            ))
        })? {
            outputs.insert(id, o);
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
    /// after outputs are blanked; `input_hashes` replaces the input derivations (as used for
    /// the hash modulo).
    pub fn unparse(
        &self,
        sd: &StoreDir,
        mask_outputs: bool,
        input_hashes: Option<&BTreeMap<String, BTreeSet<String>>>,
    ) -> String {
        let mut s = String::with_capacity(1024);
        s.push_str("Derive([");
        for (i, (id, o)) in self.outputs.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push('(');
            escape_into(&mut s, id);
            s.push(',');
            let path = match (&o.path, mask_outputs) {
                (Some(p), false) => sd.display(p),
                _ => String::new(),
            };
            escape_into(&mut s, &path);
            s.push(',');
            escape_into(&mut s, &o.hash_algo);
            s.push(',');
            escape_into(&mut s, &o.hash);
            s.push(')');
        }
        s.push_str("],[");
        let mut first = true;
        let mut input = |s: &mut String, key: &str, outs: &BTreeSet<String>| {
            if !first {
                s.push(',');
            }
            first = false;
            s.push('(');
            escape_into(s, key);
            s.push(',');
            strings_into(s, outs.iter().map(String::as_str));
            s.push(')');
        };
        match input_hashes {
            Some(h) => {
                for (k, outs) in h {
                    input(&mut s, k, outs);
                }
            }
            None => {
                for (d, outs) in &self.input_drvs {
                    input(&mut s, &sd.display(d), outs);
                }
            }
        }
        s.push_str("],");
        let srcs: Vec<String> = self.input_srcs.iter().map(|p| sd.display(p)).collect();
        strings_into(&mut s, srcs.iter().map(String::as_str));
        s.push(',');
        escape_into(&mut s, &self.platform);
        s.push(',');
        escape_into(&mut s, &self.builder);
        s.push(',');
        strings_into(&mut s, self.args.iter().map(String::as_str));
        s.push_str(",[");
        for (i, (k, v)) in self.env.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push('(');
            escape_into(&mut s, k);
            s.push(',');
            let masked = mask_outputs && self.outputs.contains_key(k);
            escape_into(&mut s, if masked { "" } else { v });
            s.push(')');
        }
        s.push_str("])");
        s
    }

    /// The ATerm text as written to the `.drv` file.
    pub fn to_aterm(&self, sd: &StoreDir) -> String {
        self.unparse(sd, false, None)
    }

    /// Is this a fixed-output derivation (a single output `out` with a hash)?
    pub fn is_fixed_output(&self) -> bool {
        self.outputs.len() == 1 && self.outputs.get("out").is_some_and(|o| !o.hash.is_empty())
    }

    /// CppNix's `hashDerivationModulo`: for a fixed-output derivation, a hash of its output's
    /// expected contents and path; otherwise the SHA-256 of its ATerm with each input derivation
    /// replaced by the base16 of its own hash modulo (from `input_hash`).
    pub fn hash_modulo(
        &self,
        sd: &StoreDir,
        mask_outputs: bool,
        mut input_hash: impl FnMut(&StorePath) -> Result<Hash, DrvError>,
    ) -> Result<Hash, DrvError> {
        if self.is_fixed_output() {
            let o = &self.outputs["out"];
            let path = o.path.as_ref().map(|p| sd.display(p)).unwrap_or_default();
            let s = format!("fixed:out:{}:{}:{}", o.hash_algo, o.hash, path);
            return Ok(Hash::digest(HashAlgo::Sha256, s.as_bytes()));
        }
        let mut inputs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (d, outs) in &self.input_drvs {
            let h = input_hash(d)?;
            inputs
                .entry(h.to_base16())
                .or_default()
                .extend(outs.iter().cloned());
        }
        let text = self.unparse(sd, mask_outputs, Some(&inputs));
        Ok(Hash::digest(HashAlgo::Sha256, text.as_bytes()))
    }

    /// Fill in the output paths (and their environment variables) of an input-addressed or
    /// fixed-output derivation whose outputs are still blank, given its hash modulo computed with
    /// `mask_outputs` (for fixed-output derivations the hash is not needed).
    pub fn fill_output_paths(&mut self, sd: &StoreDir, drv_hash: &Hash) -> Result<(), DrvError> {
        let fixed = self.is_fixed_output();
        let names: Vec<String> = self.outputs.keys().cloned().collect();
        for id in names {
            let path = if fixed {
                let o = &self.outputs[&id];
                let (method, h) = o.fixed().ok_or_else(|| DrvError::Bad {
                    offset: 0,
                    msg: format!("invalid fixed output hash '{}:{}'", o.hash_algo, o.hash),
                })?;
                sd.make_fixed_output_path(&self.name, method, &h, [], false)?
            } else {
                sd.make_output_path(&id, drv_hash, &self.name)?
            };
            self.env.insert(id.clone(), sd.display(&path));
            if let Some(o) = self.outputs.get_mut(&id) {
                o.path = Some(path);
            }
        }
        Ok(())
    }

    /// The references of the `.drv` file: input sources and input derivations.
    pub fn references(&self) -> BTreeSet<StorePath> {
        let mut r = self.input_srcs.clone();
        r.extend(self.input_drvs.keys().cloned());
        r
    }

    /// The store path of the `.drv` file itself.
    pub fn drv_path(&self, sd: &StoreDir) -> Result<StorePath, StorePathError> {
        let text = self.to_aterm(sd);
        let h = Hash::digest(HashAlgo::Sha256, text.as_bytes());
        sd.make_text_path(&format!("{}.drv", self.name), &h, &self.references())
    }

    /// The JSON object `nix derivation show` prints for this derivation.
    pub fn to_json(&self, sd: &StoreDir) -> Value {
        let mut outputs = Map::new();
        for (id, o) in &self.outputs {
            let mut m = Map::new();
            if let Some(p) = &o.path {
                m.insert("path".into(), json!(sd.display(p)));
            }
            if !o.hash_algo.is_empty() {
                m.insert("hashAlgo".into(), json!(o.hash_algo));
            }
            if !o.hash.is_empty() {
                m.insert("hash".into(), json!(o.hash));
            }
            outputs.insert(id.clone(), Value::Object(m));
        }
        let srcs: Vec<String> = self.input_srcs.iter().map(|p| sd.display(p)).collect();
        let mut drvs = Map::new();
        for (d, outs) in &self.input_drvs {
            drvs.insert(sd.display(d), json!(outs.iter().collect::<Vec<_>>()));
        }
        json!({
            "outputs": outputs,
            "inputSrcs": srcs,
            "inputDrvs": drvs,
            "system": self.platform,
            "builder": self.builder,
            "args": self.args,
            "env": self.env,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"Derive([("out","/nix/store/zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz-x","","")],[("/nix/store/ffffffffffffffffffffffffffffffff-dep.drv",["dev","out"])],["/nix/store/ssssssssssssssssssssssssssssssss-src"],"x86_64-linux","/bin/sh",["-c","echo \"hi\"\n\\ \t"],[("a","b\r"),("out","/nix/store/zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz-x")])"#;

    #[test]
    fn parse_print_roundtrip() {
        let sd = StoreDir::default();
        let d = Derivation::parse(&sd, SAMPLE, "x").unwrap();
        assert_eq!(d.args[1], "echo \"hi\"\n\\ \t");
        assert_eq!(d.env["a"], "b\r");
        assert_eq!(d.to_aterm(&sd), SAMPLE);
    }

    #[test]
    fn malformed_is_an_error() {
        let sd = StoreDir::default();
        for cut in 0..SAMPLE.len() {
            assert!(Derivation::parse(&sd, &SAMPLE[..cut], "x").is_err());
        }
        assert!(Derivation::parse(&sd, &format!("{SAMPLE}x"), "x").is_err());
        assert!(Derivation::parse(
            &sd,
            "Derive([(\"out\",\"/tmp/x\",\"\",\"\")],[],[],\"\",\"\",[],[])",
            "x"
        )
        .is_err());
    }
}
