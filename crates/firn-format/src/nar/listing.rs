//! The JSON listing of a NAR (`.ls` files, `nix nar ls --json`): every object with its type,
//! size, executable flag and, for regular files, the offset of its contents in the NAR.
//!
//! Two forms: [`list_nar`] builds a [`serde_json::Value`] (names and targets that are not UTF-8
//! are converted lossily), and [`write_listing`] streams the exact bytes CppNix 2.8 writes:
//! compact, keys in the order `type`, `size`, `executable`, `narOffset` (or `type`, `entries`;
//! `type`, `target`), entries in NAR order, and CppNix's string escaping (only `"`, `\`, `\n`,
//! `\r`, `\t` and other control bytes as `\u00XX` are escaped; every other byte, UTF-8 or
//! not, is copied as is).

use std::io::{Read, Write};

use serde_json::{json, Map, Value};

use super::reader::{parse, Counting, Visitor};
use super::NarError;

struct Lister {
    /// Open directories: their entries so far and the name of the entry being read.
    stack: Vec<(Map<String, Value>, Option<String>)>,
    root: Option<Value>,
    pos: std::rc::Rc<std::cell::Cell<u64>>,
}

impl Lister {
    fn put(&mut self, v: Value) {
        match self.stack.last_mut() {
            Some((entries, Some(name))) => {
                entries.insert(std::mem::take(name), v);
            }
            _ => self.root = Some(v),
        }
    }
}

impl Visitor for Lister {
    fn regular(&mut self, x: bool, size: u64, _: &mut dyn Read) -> Result<(), NarError> {
        let mut o = Map::new();
        o.insert("type".into(), json!("regular"));
        o.insert("size".into(), json!(size));
        if x {
            o.insert("executable".into(), json!(true));
        }
        o.insert("narOffset".into(), json!(self.pos.get()));
        self.put(Value::Object(o));
        Ok(())
    }
    fn symlink(&mut self, t: &[u8]) -> Result<(), NarError> {
        self.put(json!({"type": "symlink", "target": String::from_utf8_lossy(t)}));
        Ok(())
    }
    fn directory_start(&mut self) -> Result<(), NarError> {
        self.stack.push((Map::new(), None));
        Ok(())
    }
    fn directory_end(&mut self) -> Result<(), NarError> {
        let (entries, _) = self
            .stack
            .pop()
            .ok_or(NarError::Misuse("directory end without start"))?;
        self.put(json!({"type": "directory", "entries": entries}));
        Ok(())
    }
    fn entry_start(&mut self, name: &[u8]) -> Result<(), NarError> {
        if let Some(top) = self.stack.last_mut() {
            top.1 = Some(String::from_utf8_lossy(name).into_owned());
        }
        Ok(())
    }
}

/// A reader that publishes its position through a shared cell, so the lister knows where each
/// file's contents start.
struct Tracking<R> {
    inner: Counting<R>,
    pos: std::rc::Rc<std::cell::Cell<u64>>,
}

impl<R: Read> Read for Tracking<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pos.set(self.inner.pos);
        Ok(n)
    }
}

/// List the NAR read from `input` as JSON: the root object (`{"type": ...}`), or with `wrap`
/// `{"version": 1, "root": ...}` as in `.ls` files.
pub fn list_nar<R: Read>(input: &mut R, wrap: bool) -> Result<Value, NarError> {
    let pos = std::rc::Rc::new(std::cell::Cell::new(0));
    let mut t = Tracking {
        inner: Counting::new(input),
        pos: pos.clone(),
    };
    let mut l = Lister {
        stack: Vec::new(),
        root: None,
        pos,
    };
    parse(&mut t, &mut l)?;
    let root = l.root.ok_or(NarError::Misuse("empty NAR"))?;
    Ok(if wrap {
        json!({"version": 1, "root": root})
    } else {
        root
    })
}

/// Streams the listing as JSON text while the NAR is parsed.
struct JsonLister<W> {
    out: W,
    /// Open directories: has an entry been written yet?
    first: Vec<bool>,
    pos: std::rc::Rc<std::cell::Cell<u64>>,
}

impl<W: Write> JsonLister<W> {
    fn put(&mut self, b: &[u8]) -> Result<(), NarError> {
        Ok(self.out.write_all(b)?)
    }
}

/// Append `s` as a JSON string the way CppNix 2.8 escapes it.
fn json_string(s: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for &c in s {
        match c {
            b'"' | b'\\' => out.extend_from_slice(&[b'\\', c]),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=31 => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(c >> 4) as usize]);
                out.push(HEX[(c & 0xf) as usize]);
            }
            _ => out.push(c),
        }
    }
    out.push(b'"');
}

impl<W: Write> Visitor for JsonLister<W> {
    fn regular(&mut self, x: bool, size: u64, _: &mut dyn Read) -> Result<(), NarError> {
        let mut s = format!("{{\"type\":\"regular\",\"size\":{size}");
        if x {
            s.push_str(",\"executable\":true");
        }
        // CppNix leaves out an offset of 0 (which no real NAR has).
        let off = self.pos.get();
        if off != 0 {
            s.push_str(&format!(",\"narOffset\":{off}"));
        }
        s.push('}');
        self.put(s.as_bytes())
    }
    fn symlink(&mut self, t: &[u8]) -> Result<(), NarError> {
        let mut s = b"{\"type\":\"symlink\",\"target\":".to_vec();
        json_string(t, &mut s);
        s.push(b'}');
        self.put(&s)
    }
    fn directory_start(&mut self) -> Result<(), NarError> {
        self.first.push(true);
        self.put(b"{\"type\":\"directory\",\"entries\":{")
    }
    fn directory_end(&mut self) -> Result<(), NarError> {
        self.first.pop();
        self.put(b"}}")
    }
    fn entry_start(&mut self, name: &[u8]) -> Result<(), NarError> {
        let mut s = Vec::with_capacity(name.len() + 4);
        if let Some(first) = self.first.last_mut() {
            if !std::mem::replace(first, false) {
                s.push(b',');
            }
        }
        json_string(name, &mut s);
        s.push(b':');
        self.put(&s)
    }
}

/// Write the listing of the NAR read from `input` to `out`, byte for byte as CppNix 2.8 does:
/// with `wrap`, as in `.ls` files (`{"version":1,"root":...}`), without, as
/// `nix nar ls --json -R` prints it (no trailing newline). Returns the NAR's size; nothing
/// after the NAR is read. On error, `out` may have received part of the listing.
pub fn write_listing<R: Read, W: Write>(
    input: &mut R,
    out: &mut W,
    wrap: bool,
) -> Result<u64, NarError> {
    let pos = std::rc::Rc::new(std::cell::Cell::new(0));
    let mut t = Tracking {
        inner: Counting::new(input),
        pos: pos.clone(),
    };
    let mut l = JsonLister {
        out,
        first: Vec::new(),
        pos,
    };
    if wrap {
        l.put(b"{\"version\":1,\"root\":")?;
    }
    let n = parse(&mut t, &mut l)?;
    if wrap {
        l.put(b"}")?;
    }
    l.out.flush()?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::super::NarWriter;
    use super::*;

    #[test]
    fn offsets_point_at_contents() {
        let mut w = NarWriter::new(Vec::new()).unwrap();
        w.begin_directory().unwrap();
        w.entry(b"f").unwrap();
        w.regular(true, 3, &mut &b"xyz"[..]).unwrap();
        w.entry(b"l").unwrap();
        w.symlink(b"f").unwrap();
        w.end_directory().unwrap();
        let nar = w.finish().unwrap();
        let v = list_nar(&mut &nar[..], false).unwrap();
        let f = &v["entries"]["f"];
        assert_eq!(f["size"], 3);
        assert_eq!(f["executable"], true);
        let off = f["narOffset"].as_u64().unwrap() as usize;
        assert_eq!(&nar[off..off + 3], b"xyz");
        assert_eq!(v["entries"]["l"]["target"], "f");
    }

    fn sample() -> Vec<u8> {
        let mut w = NarWriter::new(Vec::new()).unwrap();
        w.begin_directory().unwrap();
        w.entry(b"a\"\\\n\r\t\x08\x1f\x7f\xc3\xa9\xff").unwrap();
        w.regular(false, 0, &mut &b""[..]).unwrap();
        w.entry(b"d").unwrap();
        w.begin_directory().unwrap();
        w.end_directory().unwrap();
        w.entry(b"x").unwrap();
        w.regular(true, 2, &mut &b"hi"[..]).unwrap();
        w.entry(b"z").unwrap();
        w.symlink(b"/t\x01").unwrap();
        w.end_directory().unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn exact_bytes_and_escaping() {
        let nar = sample();
        let mut out = Vec::new();
        let n = write_listing(&mut &nar[..], &mut out, false).unwrap();
        assert_eq!(n, nar.len() as u64);
        let off_a = nar
            .windows(8)
            .position(|w| w == b"contents")
            .expect("the sample has a regular file")
            + 16;
        let off_x = nar.windows(8).position(|w| w == b"hi\0\0\0\0\0\0").unwrap();
        let mut want = b"{\"type\":\"directory\",\"entries\":{\"a\\\"\\\\\\n\\r\\t\\u0008\\u001f\x7f\xc3\xa9\xff\":".to_vec();
        want.extend_from_slice(
            format!(
                "{{\"type\":\"regular\",\"size\":0,\"narOffset\":{off_a}}},\"d\":{{\"type\":\"directory\",\"entries\":{{}}}},\"x\":{{\"type\":\"regular\",\"size\":2,\"executable\":true,\"narOffset\":{off_x}}},\"z\":{{\"type\":\"symlink\",\"target\":\"/t\\u0001\"}}}}}}"
            )
            .as_bytes(),
        );
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&want)
        );
        assert_eq!(out, want);
    }

    #[test]
    fn wrapped_matches_value_form() {
        // With UTF-8 names only, both forms describe the same JSON.
        let mut w = NarWriter::new(Vec::new()).unwrap();
        w.begin_directory().unwrap();
        w.entry(b"bin").unwrap();
        w.begin_directory().unwrap();
        w.entry(b"hello").unwrap();
        w.regular(true, 5, &mut &b"#!/sh"[..]).unwrap();
        w.end_directory().unwrap();
        w.entry(b"lib").unwrap();
        w.symlink(b"bin").unwrap();
        w.end_directory().unwrap();
        let nar = w.finish().unwrap();
        let mut out = Vec::new();
        write_listing(&mut &nar[..], &mut out, true).unwrap();
        let parsed: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(parsed, list_nar(&mut &nar[..], true).unwrap());
        assert!(out.starts_with(b"{\"version\":1,\"root\":{\"type\":\"directory\""));
        // The Value keeps CppNix's key order too.
        assert_eq!(serde_json::to_vec(&parsed).unwrap(), out);
    }

    #[test]
    fn bad_nar_is_an_error() {
        let nar = sample();
        assert!(write_listing(&mut &nar[..nar.len() - 1], &mut Vec::new(), true).is_err());
        assert!(list_nar(&mut &nar[..9], true).is_err());
    }
}
