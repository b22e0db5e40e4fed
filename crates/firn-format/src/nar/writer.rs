//! Writing NARs: a state machine that emits the exact bytes and refuses calls out of order.

use std::io::{Read, Write};

use super::{padding, valid_name, NarError, MAX_TARGET_LEN};

enum Frame {
    /// An open directory and the last entry name written in it.
    Dir(Option<Vec<u8>>),
    /// An open `entry (`: closed after its node.
    Entry,
}

/// Writes one NAR to `W`. Call [`NarWriter::regular`], [`NarWriter::symlink`] or
/// [`NarWriter::begin_directory`] for the root, inside directories call [`NarWriter::entry`]
/// before each node, and [`NarWriter::finish`] at the end.
pub struct NarWriter<W: Write> {
    out: W,
    stack: Vec<Frame>,
    expect_node: bool,
    done: bool,
    written: u64,
}

impl<W: Write> NarWriter<W> {
    /// Start a NAR (writes the magic).
    pub fn new(out: W) -> Result<NarWriter<W>, NarError> {
        let mut w = NarWriter {
            out,
            stack: Vec::new(),
            expect_node: true,
            done: false,
            written: 0,
        };
        w.str(super::MAGIC)?;
        Ok(w)
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    fn raw(&mut self, b: &[u8]) -> Result<(), NarError> {
        self.out.write_all(b)?;
        self.written += b.len() as u64;
        Ok(())
    }

    fn str(&mut self, s: &[u8]) -> Result<(), NarError> {
        self.raw(&(s.len() as u64).to_le_bytes())?;
        self.raw(s)?;
        let pad = padding(s.len() as u64);
        if pad > 0 {
            self.raw(&[0u8; 8][..pad])?;
        }
        Ok(())
    }

    fn begin_node(&mut self) -> Result<(), NarError> {
        if !self.expect_node || self.done {
            return Err(NarError::Misuse("a node is not expected here"));
        }
        self.expect_node = false;
        self.str(b"(")?;
        self.str(b"type")
    }

    fn end_node(&mut self) -> Result<(), NarError> {
        self.str(b")")?;
        match self.stack.last() {
            Some(Frame::Entry) => {
                self.stack.pop();
                self.str(b")")?;
            }
            Some(Frame::Dir(_)) => return Err(NarError::Misuse("node ended inside a directory")),
            None => self.done = true,
        }
        Ok(())
    }

    /// A regular file of `size` bytes, copied from `contents` (exactly `size` bytes are read).
    pub fn regular(
        &mut self,
        executable: bool,
        size: u64,
        contents: &mut dyn Read,
    ) -> Result<(), NarError> {
        self.begin_node()?;
        self.str(b"regular")?;
        if executable {
            self.str(b"executable")?;
            self.str(b"")?;
        }
        self.str(b"contents")?;
        self.raw(&size.to_le_bytes())?;
        let mut buf = vec![0u8; (size as usize).clamp(1, 1 << 16)];
        let mut left = size;
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let n = contents.read(&mut buf[..want])?;
            if n == 0 {
                return Err(NarError::SizeMismatch {
                    expected: size,
                    got: size - left,
                });
            }
            self.raw(&buf[..n])?;
            left -= n as u64;
        }
        let pad = padding(size);
        if pad > 0 {
            self.raw(&[0u8; 8][..pad])?;
        }
        self.end_node()
    }

    /// A symbolic link to `target`.
    pub fn symlink(&mut self, target: &[u8]) -> Result<(), NarError> {
        if target.is_empty() || target.len() > MAX_TARGET_LEN || target.contains(&0) {
            return Err(NarError::BadTarget(self.written));
        }
        self.begin_node()?;
        self.str(b"symlink")?;
        self.str(b"target")?;
        self.str(target)?;
        self.end_node()
    }

    /// Open a directory; its entries follow, then [`NarWriter::end_directory`].
    pub fn begin_directory(&mut self) -> Result<(), NarError> {
        self.begin_node()?;
        self.str(b"directory")?;
        self.stack.push(Frame::Dir(None));
        Ok(())
    }

    /// Start an entry named `name` in the open directory; a node must follow. Names must come in
    /// strictly increasing byte order.
    pub fn entry(&mut self, name: &[u8]) -> Result<(), NarError> {
        if !valid_name(name) {
            return Err(NarError::BadName {
                offset: self.written,
                name: String::from_utf8_lossy(name).into_owned(),
            });
        }
        let offset = self.written;
        match self.stack.last_mut() {
            Some(Frame::Dir(last)) if !self.expect_node => {
                if let Some(prev) = last {
                    if prev.as_slice() >= name {
                        return Err(NarError::NotSorted {
                            offset,
                            prev: String::from_utf8_lossy(prev).into_owned(),
                            name: String::from_utf8_lossy(name).into_owned(),
                        });
                    }
                }
                *last = Some(name.to_vec());
            }
            _ => return Err(NarError::Misuse("an entry outside a directory")),
        }
        self.str(b"entry")?;
        self.str(b"(")?;
        self.str(b"name")?;
        self.str(name)?;
        self.str(b"node")?;
        self.stack.push(Frame::Entry);
        self.expect_node = true;
        Ok(())
    }

    /// Close the innermost open directory.
    pub fn end_directory(&mut self) -> Result<(), NarError> {
        match self.stack.last() {
            Some(Frame::Dir(_)) if !self.expect_node => {
                self.stack.pop();
                self.end_node()
            }
            _ => Err(NarError::Misuse("no directory to end")),
        }
    }

    /// Check the NAR is complete, flush, and give back the writer.
    pub fn finish(mut self) -> Result<W, NarError> {
        if !self.done {
            return Err(NarError::Misuse("the NAR is incomplete"));
        }
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &[u8]) -> Vec<u8> {
        let mut v = (x.len() as u64).to_le_bytes().to_vec();
        v.extend_from_slice(x);
        v.resize(v.len() + padding(x.len() as u64), 0);
        v
    }

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.iter().flat_map(|p| s(p)).collect()
    }

    #[test]
    fn regular_file_bytes() {
        let mut w = NarWriter::new(Vec::new()).unwrap();
        w.regular(false, 3, &mut &b"abc"[..]).unwrap();
        let got = w.finish().unwrap();
        let mut want = cat(&[b"nix-archive-1", b"(", b"type", b"regular", b"contents"]);
        want.extend_from_slice(&s(b"abc"));
        want.extend_from_slice(&s(b")"));
        assert_eq!(got, want);
    }

    #[test]
    fn directory_bytes() {
        let mut w = NarWriter::new(Vec::new()).unwrap();
        w.begin_directory().unwrap();
        w.entry(b"a").unwrap();
        w.symlink(b"/x").unwrap();
        w.entry(b"b").unwrap();
        w.regular(true, 0, &mut &b""[..]).unwrap();
        w.end_directory().unwrap();
        let got = w.finish().unwrap();
        let want = cat(&[
            b"nix-archive-1",
            b"(",
            b"type",
            b"directory",
            b"entry",
            b"(",
            b"name",
            b"a",
            b"node",
            b"(",
            b"type",
            b"symlink",
            b"target",
            b"/x",
            b")",
            b")",
            b"entry",
            b"(",
            b"name",
            b"b",
            b"node",
            b"(",
            b"type",
            b"regular",
            b"executable",
            b"",
            b"contents",
            b"",
            b")",
            b")",
            b")",
        ]);
        assert_eq!(got, want);
    }

    #[test]
    fn refuses_misuse() {
        let mut w = NarWriter::new(Vec::new()).unwrap();
        w.begin_directory().unwrap();
        w.entry(b"b").unwrap();
        w.symlink(b"t").unwrap();
        assert!(matches!(w.entry(b"a"), Err(NarError::NotSorted { .. })));
        assert!(matches!(w.entry(b"b"), Err(NarError::NotSorted { .. })));
        assert!(matches!(w.entry(b".."), Err(NarError::BadName { .. })));
        assert!(matches!(w.entry(b"a/b"), Err(NarError::BadName { .. })));
        assert!(w.regular(false, 0, &mut &b""[..]).is_err());
        let mut w = NarWriter::new(Vec::new()).unwrap();
        assert!(matches!(
            w.regular(false, 5, &mut &b"abc"[..]),
            Err(NarError::SizeMismatch { .. })
        ));
        let w = NarWriter::new(Vec::new()).unwrap();
        assert!(w.finish().is_err());
    }
}
