//! The JSON listing of a NAR (`.ls` files, `nix nar ls --json`): every object with its type,
//! size, executable flag and, for regular files, the offset of its contents in the NAR.

use std::io::Read;

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
}
