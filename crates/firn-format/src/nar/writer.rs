//! Writing NARs: a state machine that emits the exact bytes and refuses calls out of order.
//!
//! The fixed tokens around each node are framed at compile time, and what one call emits goes
//! out in one write (framed in a buffer kept from call to call): a tree of small files is
//! mostly framing, written a few bytes at a time otherwise.

use std::io::{Read, Write};

use super::{padding, valid_name, NarError, MAX_DEPTH, MAX_TARGET_LEN};

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
    /// Open directories (the `Dir` frames in `stack`).
    depth: usize,
    expect_node: bool,
    done: bool,
    written: u64,
    /// The size announced by [`NarWriter::begin_contents`] while its contents are written.
    contents: Option<u64>,
    /// Copy buffer for file contents, kept between files.
    buf: Vec<u8>,
    /// Where one call's framing is put together, to go out in one write.
    frame: Vec<u8>,
}

/// Largest copy buffer used for file contents.
const COPY_BUF: usize = 256 * 1024;

/// `parts` framed as NAR strings (length, bytes, zero padding to 8 bytes), one after another;
/// `N` must be their framed length.
const fn framed<const N: usize>(parts: &[&[u8]]) -> [u8; N] {
    let mut out = [0u8; N];
    let mut at = 0;
    let mut i = 0;
    while i < parts.len() {
        let p = parts[i];
        let len = (p.len() as u64).to_le_bytes();
        let mut j = 0;
        while j < 8 {
            out[at + j] = len[j];
            j += 1;
        }
        at += 8;
        let mut j = 0;
        while j < p.len() {
            out[at + j] = p[j];
            j += 1;
        }
        at += p.len().div_ceil(8) * 8;
        i += 1;
    }
    assert!(at == N, "the framed length is N");
    out
}

/// The start of every node.
const NODE: [u8; 32] = framed(&[b"(", b"type"]);
/// A regular file's node up to its size.
const REGULAR: [u8; 64] = framed(&[b"(", b"type", b"regular", b"contents"]);
/// An executable file's node up to its size.
const EXECUTABLE: [u8; 96] = framed(&[b"(", b"type", b"regular", b"executable", b"", b"contents"]);
/// A symlink's node up to its target.
const SYMLINK: [u8; 64] = framed(&[b"(", b"type", b"symlink", b"target"]);
/// A directory's node up to its entries.
const DIRECTORY: [u8; 56] = framed(&[b"(", b"type", b"directory"]);
/// An entry up to its name.
const ENTRY: [u8; 48] = framed(&[b"entry", b"(", b"name"]);
/// Between an entry's name and its node.
const ENTRY_NODE: [u8; 16] = framed(&[b"node"]);
/// The end of a node (or of an entry).
const CLOSE: [u8; 16] = framed(&[b")"]);

impl<W: Write> NarWriter<W> {
    /// Start a NAR (writes the magic).
    pub fn new(out: W) -> Result<NarWriter<W>, NarError> {
        let mut w = NarWriter {
            out,
            stack: Vec::new(),
            depth: 0,
            expect_node: true,
            done: false,
            written: 0,
            contents: None,
            buf: Vec::new(),
            frame: Vec::new(),
        };
        w.frame_str(super::MAGIC);
        w.flush_frame()?;
        Ok(w)
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Where the next byte goes: what was written and the framing put together since.
    fn offset(&self) -> u64 {
        self.written + self.frame.len() as u64
    }

    /// Append `s` framed (length, bytes, padding) to the framing being put together.
    fn frame_str(&mut self, s: &[u8]) {
        self.frame
            .extend_from_slice(&(s.len() as u64).to_le_bytes());
        self.frame.extend_from_slice(s);
        self.frame
            .extend_from_slice(&[0u8; 8][..padding(s.len() as u64)]);
    }

    /// Write the framing put together, in one write.
    fn flush_frame(&mut self) -> Result<(), NarError> {
        self.out.write_all(&self.frame)?;
        self.written += self.frame.len() as u64;
        self.frame.clear();
        Ok(())
    }

    /// Put together the end of a node: `)`, and the `)` of its entry if it is one.
    fn frame_end_node(&mut self) -> Result<(), NarError> {
        self.frame.extend_from_slice(&CLOSE);
        match self.stack.last() {
            Some(Frame::Entry) => {
                self.stack.pop();
                self.frame.extend_from_slice(&CLOSE);
            }
            Some(Frame::Dir(_)) => return Err(NarError::Misuse("node ended inside a directory")),
            None => self.done = true,
        }
        Ok(())
    }

    /// Refuses every call while a file's contents are being written by the caller.
    fn check_not_in_contents(&self) -> Result<(), NarError> {
        match self.contents {
            Some(_) => Err(NarError::Misuse("the contents of a file are not finished")),
            None => Ok(()),
        }
    }

    /// Check that a node may begin here and begin it: `head` (its start, from `(`) is put
    /// together to be written.
    fn begin_node(&mut self, head: &[u8]) -> Result<(), NarError> {
        self.check_not_in_contents()?;
        if !self.expect_node || self.done {
            return Err(NarError::Misuse("a node is not expected here"));
        }
        // The same limit as the reader's, so whatever is written can be read back.
        if self.depth > MAX_DEPTH {
            return Err(NarError::TooDeep(self.offset()));
        }
        self.expect_node = false;
        debug_assert!(head.starts_with(&NODE));
        self.frame.extend_from_slice(head);
        Ok(())
    }

    /// A regular file of `size` bytes, copied from `contents` (exactly `size` bytes are read).
    pub fn regular(
        &mut self,
        executable: bool,
        size: u64,
        contents: &mut dyn Read,
    ) -> Result<(), NarError> {
        self.regular_header(executable, size)?;
        let want_buf = size.clamp(1, COPY_BUF as u64) as usize;
        if self.buf.len() < want_buf {
            self.buf.resize(want_buf, 0);
        }
        let mut left = size;
        while left > 0 {
            let want = left.min(self.buf.len() as u64) as usize;
            let n = match contents.read(&mut self.buf[..want]) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            if n == 0 {
                return Err(NarError::SizeMismatch {
                    expected: size,
                    got: size - left,
                });
            }
            self.out.write_all(&self.buf[..n])?;
            self.written += n as u64;
            left -= n as u64;
        }
        self.regular_trailer(size)
    }

    /// Everything of a regular file node up to its contents (with whatever framing was put
    /// together before it), in one write.
    fn regular_header(&mut self, executable: bool, size: u64) -> Result<(), NarError> {
        self.begin_node(if executable { &EXECUTABLE } else { &REGULAR })?;
        self.frame.extend_from_slice(&size.to_le_bytes());
        self.flush_frame()
    }

    /// The padding after `size` bytes of contents, and the end of the node, in one write.
    fn regular_trailer(&mut self, size: u64) -> Result<(), NarError> {
        self.frame.extend_from_slice(&[0u8; 8][..padding(size)]);
        self.frame_end_node()?;
        self.flush_frame()
    }

    /// A regular file of `size` bytes whose contents the caller writes itself, straight into
    /// the returned output (no copy through this writer's buffer): exactly `size` bytes, then
    /// [`NarWriter::end_contents`] with the number written. Every other call in between is
    /// refused.
    pub fn begin_contents(&mut self, executable: bool, size: u64) -> Result<&mut W, NarError> {
        self.regular_header(executable, size)?;
        self.contents = Some(size);
        Ok(&mut self.out)
    }

    /// Finish the contents started by [`NarWriter::begin_contents`]: `written` must be the
    /// size announced there.
    pub fn end_contents(&mut self, written: u64) -> Result<(), NarError> {
        let Some(size) = self.contents.take() else {
            return Err(NarError::Misuse("no file contents to end"));
        };
        self.written += written;
        if written != size {
            return Err(NarError::SizeMismatch {
                expected: size,
                got: written,
            });
        }
        self.regular_trailer(size)
    }

    /// A symbolic link to `target`.
    pub fn symlink(&mut self, target: &[u8]) -> Result<(), NarError> {
        if target.is_empty() || target.len() > MAX_TARGET_LEN || target.contains(&0) {
            return Err(NarError::BadTarget(self.offset()));
        }
        self.begin_node(&SYMLINK)?;
        self.frame_str(target);
        self.frame_end_node()?;
        self.flush_frame()
    }

    /// Open a directory; its entries follow, then [`NarWriter::end_directory`].
    pub fn begin_directory(&mut self) -> Result<(), NarError> {
        self.begin_node(&DIRECTORY)?;
        self.flush_frame()?;
        self.stack.push(Frame::Dir(None));
        self.depth += 1;
        Ok(())
    }

    /// Start an entry named `name` in the open directory; a node must follow. Names must come in
    /// strictly increasing byte order.
    pub fn entry(&mut self, name: &[u8]) -> Result<(), NarError> {
        self.check_not_in_contents()?;
        if !valid_name(name) {
            return Err(NarError::BadName {
                offset: self.offset(),
                name: String::from_utf8_lossy(name).into_owned(),
            });
        }
        let offset = self.offset();
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
                // The buffer is kept from entry to entry.
                match last {
                    Some(prev) => {
                        prev.clear();
                        prev.extend_from_slice(name);
                    }
                    None => *last = Some(name.to_vec()),
                }
            }
            _ => return Err(NarError::Misuse("an entry outside a directory")),
        }
        // Put together only: it goes out with the start of its node.
        self.frame.extend_from_slice(&ENTRY);
        self.frame_str(name);
        self.frame.extend_from_slice(&ENTRY_NODE);
        self.stack.push(Frame::Entry);
        self.expect_node = true;
        Ok(())
    }

    /// Close the innermost open directory.
    pub fn end_directory(&mut self) -> Result<(), NarError> {
        self.check_not_in_contents()?;
        match self.stack.last() {
            Some(Frame::Dir(_)) if !self.expect_node => {
                self.stack.pop();
                self.depth -= 1;
                self.frame_end_node()?;
                self.flush_frame()
            }
            _ => Err(NarError::Misuse("no directory to end")),
        }
    }

    /// Check the NAR is complete, flush, and give back the writer.
    pub fn finish(mut self) -> Result<W, NarError> {
        self.check_not_in_contents()?;
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
    use std::io::Read;

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

    #[test]
    fn refuses_more_misuse() {
        // An entry at the root, ending a directory that is not open, a second root.
        let mut w = NarWriter::new(Vec::new()).unwrap();
        assert!(matches!(w.entry(b"a"), Err(NarError::Misuse(_))));
        assert!(matches!(w.end_directory(), Err(NarError::Misuse(_))));
        w.symlink(b"t").unwrap();
        assert!(matches!(w.symlink(b"u"), Err(NarError::Misuse(_))));
        assert!(matches!(w.begin_directory(), Err(NarError::Misuse(_))));
        // Ending a directory while an entry waits for its node.
        let mut w = NarWriter::new(Vec::new()).unwrap();
        w.begin_directory().unwrap();
        w.entry(b"a").unwrap();
        assert!(matches!(w.end_directory(), Err(NarError::Misuse(_))));
        assert!(matches!(w.entry(b"b"), Err(NarError::Misuse(_))));
        // Names and targets.
        let mut w = NarWriter::new(Vec::new()).unwrap();
        w.begin_directory().unwrap();
        for bad in [&b""[..], b".", b"..", b"a\0", b"/"] {
            assert!(
                matches!(w.entry(bad), Err(NarError::BadName { .. })),
                "{bad:?}"
            );
        }
        assert!(matches!(
            w.entry(&[b'n'; 256]),
            Err(NarError::BadName { .. })
        ));
        w.entry(&[b'n'; 255]).unwrap();
        for bad in [&b""[..], b"a\0b", &[b't'; 4096]] {
            assert!(matches!(w.symlink(bad), Err(NarError::BadTarget(_))));
        }
        w.symlink(&[b't'; 4095]).unwrap();
        w.end_directory().unwrap();
        w.finish().unwrap();
    }

    #[test]
    fn depth_limit_matches_the_reader() {
        let deep = |levels: usize| -> Result<Vec<u8>, NarError> {
            let mut w = NarWriter::new(Vec::new())?;
            for _ in 0..levels {
                w.begin_directory()?;
                w.entry(b"d")?;
            }
            w.symlink(b"x")?;
            for _ in 0..levels {
                w.end_directory()?;
            }
            w.finish()
        };
        let ok = deep(MAX_DEPTH).unwrap();
        super::super::parse(&mut &ok[..], &mut super::super::reader::Validate).unwrap();
        assert!(matches!(deep(MAX_DEPTH + 1), Err(NarError::TooDeep(_))));
    }

    #[test]
    fn small_trees_byte_for_byte() {
        // An executable file at the root.
        let mut w = NarWriter::new(Vec::new()).unwrap();
        w.regular(true, 9, &mut &b"#!/bin/sh"[..]).unwrap();
        let mut want = cat(&[
            b"nix-archive-1",
            b"(",
            b"type",
            b"regular",
            b"executable",
            b"",
            b"contents",
        ]);
        want.extend_from_slice(&s(b"#!/bin/sh"));
        want.extend_from_slice(&s(b")"));
        assert_eq!(w.finish().unwrap(), want);

        // An empty file, a symlink at the root, an empty directory.
        let mut w = NarWriter::new(Vec::new()).unwrap();
        w.regular(false, 0, &mut &b""[..]).unwrap();
        let want = cat(&[
            b"nix-archive-1",
            b"(",
            b"type",
            b"regular",
            b"contents",
            b"",
            b")",
        ]);
        assert_eq!(w.finish().unwrap(), want);
        let mut w = NarWriter::new(Vec::new()).unwrap();
        w.symlink(b"../a b").unwrap();
        let want = cat(&[
            b"nix-archive-1",
            b"(",
            b"type",
            b"symlink",
            b"target",
            b"../a b",
            b")",
        ]);
        assert_eq!(w.finish().unwrap(), want);
        let mut w = NarWriter::new(Vec::new()).unwrap();
        w.begin_directory().unwrap();
        w.end_directory().unwrap();
        let want = cat(&[b"nix-archive-1", b"(", b"type", b"directory", b")"]);
        assert_eq!(w.finish().unwrap(), want);

        // Nested directories: d/e/f holding 8 bytes (no padding needed).
        let mut w = NarWriter::new(Vec::new()).unwrap();
        w.begin_directory().unwrap();
        w.entry(b"d").unwrap();
        w.begin_directory().unwrap();
        w.entry(b"e").unwrap();
        w.begin_directory().unwrap();
        w.entry(b"f").unwrap();
        w.regular(false, 8, &mut &b"12345678"[..]).unwrap();
        w.end_directory().unwrap();
        w.end_directory().unwrap();
        w.end_directory().unwrap();
        let mut want = cat(&[b"nix-archive-1", b"(", b"type", b"directory"]);
        for n in [b"d", b"e"] {
            want.extend(cat(&[
                b"entry",
                b"(",
                b"name",
                n,
                b"node",
                b"(",
                b"type",
                b"directory",
            ]));
        }
        want.extend(cat(&[
            b"entry",
            b"(",
            b"name",
            b"f",
            b"node",
            b"(",
            b"type",
            b"regular",
            b"contents",
            b"12345678",
            b")",
            b")",
        ]));
        want.extend(cat(&[b")", b")", b")", b")", b")"]));
        assert_eq!(w.finish().unwrap(), want);
    }

    #[test]
    fn contents_written_by_the_caller() {
        // The same bytes as `regular`, with and without padding, executable or not.
        for (exec, data) in [(false, &b"abc"[..]), (true, b"12345678"), (false, b"")] {
            let mut a = NarWriter::new(Vec::new()).unwrap();
            a.begin_directory().unwrap();
            a.entry(b"f").unwrap();
            a.regular(exec, data.len() as u64, &mut &data[..]).unwrap();
            a.end_directory().unwrap();
            let mut b = NarWriter::new(Vec::new()).unwrap();
            b.begin_directory().unwrap();
            b.entry(b"f").unwrap();
            let out = b.begin_contents(exec, data.len() as u64).unwrap();
            out.extend_from_slice(data);
            b.end_contents(data.len() as u64).unwrap();
            b.end_directory().unwrap();
            assert_eq!(b.written(), a.written());
            assert_eq!(b.finish().unwrap(), a.finish().unwrap());
        }
        // Nothing else while contents are open; the count must match.
        let mut w = NarWriter::new(Vec::new()).unwrap();
        w.begin_directory().unwrap();
        w.entry(b"f").unwrap();
        w.begin_contents(false, 4).unwrap();
        assert!(matches!(w.entry(b"g"), Err(NarError::Misuse(_))));
        assert!(matches!(w.end_directory(), Err(NarError::Misuse(_))));
        assert!(matches!(w.symlink(b"t"), Err(NarError::Misuse(_))));
        assert!(matches!(
            w.end_contents(3),
            Err(NarError::SizeMismatch {
                expected: 4,
                got: 3
            })
        ));
        assert!(matches!(w.end_contents(4), Err(NarError::Misuse(_))));
        let mut w = NarWriter::new(Vec::new()).unwrap();
        w.begin_contents(false, 0).unwrap();
        assert!(matches!(w.finish(), Err(NarError::Misuse(_))));
    }

    #[test]
    fn written_counts_bytes_and_reads_are_chunked() {
        // A reader that hands out one byte at a time still yields the whole file.
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if self.0.is_empty() || buf.is_empty() {
                    return Ok(0);
                }
                buf[0] = self.0[0];
                self.0 = &self.0[1..];
                Ok(1)
            }
        }
        let data: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let mut w = NarWriter::new(Vec::new()).unwrap();
        w.regular(false, 1000, &mut Trickle(&data)).unwrap();
        let n = w.written();
        let out = w.finish().unwrap();
        assert_eq!(n, out.len() as u64);
        assert!(out.windows(1000).any(|x| x == &data[..]));
    }
}
