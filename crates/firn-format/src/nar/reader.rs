//! Reading NARs: a strict parser that reports each object to a [`Visitor`].
//!
//! The parser refuses anything CppNix would not write: bad magic, unknown tokens, names that are
//! empty, `.`, `..`, or contain `/` or NUL, entries out of order or repeated, non-zero padding,
//! absurd lengths, and nesting deeper than [`MAX_DEPTH`]. It reads exactly the bytes of the NAR
//! and nothing after it.

use std::io::{self, Read};

use super::{padding, valid_name, NarError, MAX_DEPTH, MAX_NAME_LEN, MAX_TARGET_LEN};

/// Receives the objects of a NAR in order. Returning an error stops the parse.
pub trait Visitor {
    /// A regular file; `contents` yields exactly `size` bytes. Whatever the visitor does not
    /// read is skipped.
    fn regular(
        &mut self,
        executable: bool,
        size: u64,
        contents: &mut dyn Read,
    ) -> Result<(), NarError>;
    fn symlink(&mut self, target: &[u8]) -> Result<(), NarError>;
    /// A directory starts; its entries follow.
    fn directory_start(&mut self) -> Result<(), NarError>;
    /// A directory ends.
    fn directory_end(&mut self) -> Result<(), NarError>;
    /// An entry of the current directory starts; its node follows.
    fn entry_start(&mut self, name: &[u8]) -> Result<(), NarError>;
    /// The current entry ends.
    fn entry_end(&mut self) -> Result<(), NarError> {
        Ok(())
    }
}

/// A reader that counts what it has consumed.
pub struct Counting<R> {
    inner: R,
    pub pos: u64,
}

impl<R: Read> Counting<R> {
    pub fn new(inner: R) -> Self {
        Counting { inner, pos: 0 }
    }
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

struct Parser<'a, R: Read> {
    r: Counting<&'a mut R>,
}

const MAX_TOKEN: u64 = 16;

impl<R: Read> Parser<'_, R> {
    fn exact(&mut self, buf: &mut [u8]) -> Result<(), NarError> {
        match self.r.read_exact(buf) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                Err(NarError::Truncated(self.r.pos))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn u64(&mut self) -> Result<u64, NarError> {
        let mut b = [0u8; 8];
        self.exact(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn pad(&mut self, len: u64) -> Result<(), NarError> {
        let p = padding(len);
        if p > 0 {
            let mut b = [0u8; 8];
            self.exact(&mut b[..p])?;
            if b[..p].iter().any(|&x| x != 0) {
                return Err(NarError::BadPadding(self.r.pos - p as u64));
            }
        }
        Ok(())
    }

    /// A string of at most `max` bytes.
    fn string(&mut self, max: u64, what: &'static str) -> Result<Vec<u8>, NarError> {
        let offset = self.r.pos;
        let len = self.u64()?;
        if len > max {
            return Err(NarError::TooLong { offset, len, what });
        }
        // The string and its padding in one read.
        let pad = padding(len);
        let mut v = vec![0u8; len as usize + pad];
        self.exact(&mut v)?;
        if v[len as usize..].iter().any(|&x| x != 0) {
            return Err(NarError::BadPadding(self.r.pos - pad as u64));
        }
        v.truncate(len as usize);
        Ok(v)
    }

    fn token(&mut self) -> Result<(u64, Vec<u8>), NarError> {
        let offset = self.r.pos;
        Ok((offset, self.string(MAX_TOKEN, "a token")?))
    }

    fn expect(&mut self, want: &'static str) -> Result<(), NarError> {
        let (offset, t) = self.token()?;
        if t != want.as_bytes() {
            return Err(NarError::Unexpected {
                offset,
                expected: want,
                found: String::from_utf8_lossy(&t).into_owned(),
            });
        }
        Ok(())
    }

    /// Parse one node (and everything below it) with an explicit stack, so deep trees cannot
    /// overflow the Rust stack.
    fn node(&mut self, v: &mut dyn Visitor) -> Result<(), NarError> {
        // The open directories, each with the name of its last entry.
        let mut dirs: Vec<Option<Vec<u8>>> = Vec::new();
        loop {
            // A node starts here.
            if dirs.len() > MAX_DEPTH {
                return Err(NarError::TooDeep(self.r.pos));
            }
            self.expect("(")?;
            self.expect("type")?;
            let (offset, ty) = self.token()?;
            match ty.as_slice() {
                b"regular" => self.regular(v)?,
                b"symlink" => {
                    self.expect("target")?;
                    let offset = self.r.pos;
                    let target = self.string(MAX_TARGET_LEN as u64, "a symlink target")?;
                    if target.is_empty() || target.contains(&0) {
                        return Err(NarError::BadTarget(offset));
                    }
                    v.symlink(&target)?;
                    self.expect(")")?;
                }
                b"directory" => {
                    v.directory_start()?;
                    dirs.push(None);
                }
                _ => {
                    return Err(NarError::Unexpected {
                        offset,
                        expected: "regular, symlink or directory",
                        found: String::from_utf8_lossy(&ty).into_owned(),
                    })
                }
            }
            // Close finished nodes (and the entries and directories they finish) until the
            // next entry starts.
            let mut node_done = ty.as_slice() != b"directory";
            loop {
                if node_done {
                    if dirs.is_empty() {
                        return Ok(());
                    }
                    v.entry_end()?;
                    self.expect(")")?;
                }
                let Some(prev) = dirs.last_mut() else {
                    return Err(NarError::Misuse("directory stack is empty"));
                };
                let (offset, t) = self.token()?;
                match t.as_slice() {
                    b")" => {
                        dirs.pop();
                        v.directory_end()?;
                        node_done = true;
                    }
                    b"entry" => {
                        self.expect("(")?;
                        self.expect("name")?;
                        let offset = self.r.pos;
                        let name = self.string(MAX_NAME_LEN as u64, "a file name")?;
                        if !valid_name(&name) {
                            return Err(NarError::BadName {
                                offset,
                                name: String::from_utf8_lossy(&name).into_owned(),
                            });
                        }
                        if let Some(p) = prev {
                            if p.as_slice() >= name.as_slice() {
                                return Err(NarError::NotSorted {
                                    offset,
                                    prev: String::from_utf8_lossy(p).into_owned(),
                                    name: String::from_utf8_lossy(&name).into_owned(),
                                });
                            }
                        }
                        self.expect("node")?;
                        v.entry_start(&name)?;
                        *prev = Some(name);
                        break;
                    }
                    _ => {
                        return Err(NarError::Unexpected {
                            offset,
                            expected: "entry or )",
                            found: String::from_utf8_lossy(&t).into_owned(),
                        })
                    }
                }
            }
        }
    }

    /// The rest of a regular file node, after its type.
    fn regular(&mut self, v: &mut dyn Visitor) -> Result<(), NarError> {
        let (offset, t) = self.token()?;
        let executable = match t.as_slice() {
            b"executable" => {
                let (o2, e) = self.token()?;
                if !e.is_empty() {
                    return Err(NarError::Unexpected {
                        offset: o2,
                        expected: "an empty string after 'executable'",
                        found: String::from_utf8_lossy(&e).into_owned(),
                    });
                }
                self.expect("contents")?;
                true
            }
            b"contents" => false,
            _ => {
                return Err(NarError::Unexpected {
                    offset,
                    expected: "contents or executable",
                    found: String::from_utf8_lossy(&t).into_owned(),
                })
            }
        };
        let size = self.u64()?;
        let start = self.r.pos;
        {
            let mut contents = (&mut self.r).take(size);
            v.regular(executable, size, &mut contents)?;
            // Skip what the visitor did not read.
            io::copy(&mut contents, &mut io::sink())?;
        }
        if self.r.pos - start != size {
            return Err(NarError::Truncated(self.r.pos));
        }
        self.pad(size)?;
        self.expect(")")
    }
}

/// Parse one NAR from `input`, reporting to `visitor`. Returns the number of bytes the NAR had;
/// nothing after it is read.
pub fn parse<R: Read>(input: &mut R, visitor: &mut dyn Visitor) -> Result<u64, NarError> {
    let mut p = Parser {
        r: Counting::new(input),
    };
    let magic = match p.string(MAX_TOKEN, "the magic") {
        Ok(m) => m,
        Err(NarError::TooLong { .. }) | Err(NarError::BadPadding(_)) => {
            return Err(NarError::BadMagic)
        }
        Err(e) => return Err(e),
    };
    if magic != super::MAGIC {
        return Err(NarError::BadMagic);
    }
    p.node(visitor)?;
    Ok(p.r.pos)
}

/// A visitor that only checks (and skips file contents): validates a NAR.
pub struct Validate;

impl Visitor for Validate {
    fn regular(&mut self, _: bool, _: u64, _: &mut dyn Read) -> Result<(), NarError> {
        Ok(())
    }
    fn symlink(&mut self, _: &[u8]) -> Result<(), NarError> {
        Ok(())
    }
    fn directory_start(&mut self) -> Result<(), NarError> {
        Ok(())
    }
    fn directory_end(&mut self) -> Result<(), NarError> {
        Ok(())
    }
    fn entry_start(&mut self, _: &[u8]) -> Result<(), NarError> {
        Ok(())
    }
}

/// Copies a NAR event stream into a [`super::NarWriter`]; parsing then re-writing gives the
/// same bytes, which tests use as a roundtrip check.
pub struct Rewrite<W: io::Write>(pub super::NarWriter<W>);

impl<W: io::Write> Visitor for Rewrite<W> {
    fn regular(&mut self, x: bool, size: u64, c: &mut dyn Read) -> Result<(), NarError> {
        self.0.regular(x, size, c)
    }
    fn symlink(&mut self, t: &[u8]) -> Result<(), NarError> {
        self.0.symlink(t)
    }
    fn directory_start(&mut self) -> Result<(), NarError> {
        self.0.begin_directory()
    }
    fn directory_end(&mut self) -> Result<(), NarError> {
        self.0.end_directory()
    }
    fn entry_start(&mut self, name: &[u8]) -> Result<(), NarError> {
        self.0.entry(name)
    }
}

#[cfg(test)]
mod tests {
    use super::super::NarWriter;
    use super::*;

    fn sample() -> Vec<u8> {
        let mut w = NarWriter::new(Vec::new()).unwrap();
        w.begin_directory().unwrap();
        w.entry(b"a").unwrap();
        w.regular(true, 5, &mut &b"hello"[..]).unwrap();
        w.entry(b"d").unwrap();
        w.begin_directory().unwrap();
        w.end_directory().unwrap();
        w.entry(b"l").unwrap();
        w.symlink(b"../x").unwrap();
        w.end_directory().unwrap();
        w.finish().unwrap()
    }

    fn s(x: &[u8]) -> Vec<u8> {
        let mut v = (x.len() as u64).to_le_bytes().to_vec();
        v.extend_from_slice(x);
        v.resize(v.len() + padding(x.len() as u64), 0);
        v
    }

    fn nar_of(tokens: &[&[u8]]) -> Vec<u8> {
        tokens.iter().flat_map(|t| s(t)).collect()
    }

    #[test]
    fn roundtrip_and_trailing_data() {
        let nar = sample();
        let mut input = nar.clone();
        input.extend_from_slice(b"trailing");
        let mut r = &input[..];
        let mut rw = Rewrite(NarWriter::new(Vec::new()).unwrap());
        let n = parse(&mut r, &mut rw).unwrap();
        assert_eq!(n, nar.len() as u64);
        assert_eq!(r, b"trailing");
        assert_eq!(rw.0.finish().unwrap(), nar);
    }

    #[test]
    fn truncation_anywhere_is_an_error() {
        let nar = sample();
        for cut in 0..nar.len() {
            assert!(
                parse(&mut &nar[..cut], &mut Validate).is_err(),
                "cut at {cut}"
            );
        }
    }

    fn dir_with(names: &[&[u8]]) -> Vec<u8> {
        let mut t: Vec<&[u8]> = vec![b"nix-archive-1", b"(", b"type", b"directory"];
        for n in names {
            t.extend_from_slice(&[
                b"entry", b"(", b"name", n, b"node", b"(", b"type", b"symlink", b"target", b"x",
                b")", b")",
            ]);
        }
        t.push(b")");
        nar_of(&t)
    }

    #[test]
    fn refuses_bad_names_and_order() {
        assert!(parse(&mut &dir_with(&[b"a", b"b"])[..], &mut Validate).is_ok());
        for bad in [&b"."[..], b"..", b"", b"a/b", b"a\0b"] {
            let e = parse(&mut &dir_with(&[bad])[..], &mut Validate).unwrap_err();
            assert!(matches!(e, NarError::BadName { .. }), "{bad:?}: {e}");
        }
        let e = parse(&mut &dir_with(&[b"b", b"a"])[..], &mut Validate).unwrap_err();
        assert!(matches!(e, NarError::NotSorted { .. }));
        let e = parse(&mut &dir_with(&[b"a", b"a"])[..], &mut Validate).unwrap_err();
        assert!(matches!(e, NarError::NotSorted { .. }));
        let long = vec![b'x'; 256];
        let e = parse(&mut &dir_with(&[&long])[..], &mut Validate).unwrap_err();
        assert!(matches!(e, NarError::TooLong { .. }));
    }

    #[test]
    fn refuses_garbage() {
        assert!(matches!(
            parse(&mut &b"not a nar at all, really"[..], &mut Validate),
            Err(NarError::BadMagic)
        ));
        let mut nar = nar_of(&[b"nix-archive-1", b"(", b"type", b"regular", b"contents"]);
        nar.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            parse(&mut &nar[..], &mut Validate),
            Err(NarError::Truncated(_))
        ));
        let mut nar = nar_of(&[b"nix-archive-1", b"(", b"type", b"regular", b"contents"]);
        nar.extend_from_slice(&1u64.to_le_bytes());
        nar.extend_from_slice(&[b'x', 0, 0, 1, 0, 0, 0, 0]);
        nar.extend_from_slice(&s(b")"));
        assert!(matches!(
            parse(&mut &nar[..], &mut Validate),
            Err(NarError::BadPadding(_))
        ));
        let nar = nar_of(&[b"nix-archive-1", b"(", b"type", b"fifo", b")"]);
        assert!(matches!(
            parse(&mut &nar[..], &mut Validate),
            Err(NarError::Unexpected { .. })
        ));
    }

    fn regular_nar(tokens_before_size: &[&[u8]], contents: &[u8]) -> Vec<u8> {
        let mut t: Vec<&[u8]> = vec![b"nix-archive-1", b"(", b"type", b"regular"];
        t.extend_from_slice(tokens_before_size);
        let mut nar = nar_of(&t);
        nar.extend_from_slice(&s(contents));
        nar.extend_from_slice(&s(b")"));
        nar
    }

    #[test]
    fn refuses_bad_tokens_and_lengths() {
        // The well-formed baselines parse.
        let ok = regular_nar(&[b"executable", b"", b"contents"], b"x");
        assert_eq!(parse(&mut &ok[..], &mut Validate).unwrap(), ok.len() as u64);
        // 'executable' must be followed by an empty string.
        let bad = regular_nar(&[b"executable", b"yes", b"contents"], b"x");
        assert!(matches!(
            parse(&mut &bad[..], &mut Validate),
            Err(NarError::Unexpected { offset: 96, .. })
        ));
        // An unknown token where 'contents' belongs.
        let bad = regular_nar(&[b"content"], b"x");
        assert!(matches!(
            parse(&mut &bad[..], &mut Validate),
            Err(NarError::Unexpected { .. })
        ));
        // A token with an absurd length is refused before anything is allocated.
        let mut bad = nar_of(&[b"nix-archive-1", b"("]);
        bad.extend_from_slice(&(1u64 << 60).to_le_bytes());
        assert!(matches!(
            parse(&mut &bad[..], &mut Validate),
            Err(NarError::TooLong { offset: 40, .. })
        ));
        let bad = nar_of(&[b"nix-archive-1", b"(", b"typetypetypetypetype"]);
        assert!(matches!(
            parse(&mut &bad[..], &mut Validate),
            Err(NarError::TooLong { .. })
        ));
        // Symlink targets: too long, empty, with NUL.
        let symlink = |target: &[u8]| {
            nar_of(&[
                b"nix-archive-1",
                b"(",
                b"type",
                b"symlink",
                b"target",
                target,
                b")",
            ])
        };
        parse(&mut &symlink(&[b'x'; 4095])[..], &mut Validate).unwrap();
        assert!(matches!(
            parse(&mut &symlink(&[b'x'; 4096])[..], &mut Validate),
            Err(NarError::TooLong { .. })
        ));
        for bad in [&b""[..], b"a\0b"] {
            assert!(matches!(
                parse(&mut &symlink(bad)[..], &mut Validate),
                Err(NarError::BadTarget(_))
            ));
        }
        // A name of 255 bytes is fine.
        parse(&mut &dir_with(&[&[b'n'; 255]])[..], &mut Validate).unwrap();
        // Non-zero padding inside a token.
        let mut bad = nar_of(&[b"nix-archive-1", b"(", b"type", b"symlink", b"target", b"t"]);
        let last = bad.len() - 1;
        bad[last] = 7;
        assert!(matches!(
            parse(&mut &bad[..], &mut Validate),
            Err(NarError::BadPadding(o)) if o == last as u64 - 6
        ));
        // A missing closing parenthesis after the root.
        let mut bad = symlink(b"t");
        bad.truncate(bad.len() - 16);
        bad.extend_from_slice(&s(b"("));
        assert!(matches!(
            parse(&mut &bad[..], &mut Validate),
            Err(NarError::Unexpected { .. })
        ));
    }

    #[test]
    fn refuses_bad_magic() {
        for magic in [
            &b"nix-archive-2"[..],
            b"",
            b"nix-archive-1\0",
            b"NIX-ARCHIVE-1",
        ] {
            let nar = nar_of(&[magic, b"(", b"type", b"symlink", b"target", b"t", b")"]);
            assert!(
                matches!(parse(&mut &nar[..], &mut Validate), Err(NarError::BadMagic)),
                "{magic:?}"
            );
        }
        let mut nar = (u64::MAX).to_le_bytes().to_vec();
        nar.extend_from_slice(b"nix-archive-1");
        assert!(matches!(
            parse(&mut &nar[..], &mut Validate),
            Err(NarError::BadMagic)
        ));
        assert!(matches!(
            parse(&mut &b""[..], &mut Validate),
            Err(NarError::Truncated(0))
        ));
    }

    #[test]
    fn visitor_errors_stop_the_parse() {
        struct Refuse;
        impl Visitor for Refuse {
            fn regular(&mut self, _: bool, _: u64, _: &mut dyn Read) -> Result<(), NarError> {
                Err(NarError::Visitor("no files".into()))
            }
            fn symlink(&mut self, _: &[u8]) -> Result<(), NarError> {
                Ok(())
            }
            fn directory_start(&mut self) -> Result<(), NarError> {
                Ok(())
            }
            fn directory_end(&mut self) -> Result<(), NarError> {
                Ok(())
            }
            fn entry_start(&mut self, _: &[u8]) -> Result<(), NarError> {
                Ok(())
            }
        }
        // The error comes back at once, without reading the rest of a (here endless) file.
        let mut head = regular_nar(&[b"contents"], b"");
        head.truncate(head.len() - 16);
        let len_at = head.len() - 8;
        head[len_at..].copy_from_slice(&u64::MAX.to_le_bytes());
        let mut input = std::io::Read::chain(&head[..], std::io::repeat(0));
        assert!(matches!(
            parse(&mut input, &mut Refuse),
            Err(NarError::Visitor(_))
        ));
    }

    #[test]
    fn partial_reads_by_the_visitor_are_skipped() {
        struct ReadOne(Vec<u8>);
        impl Visitor for ReadOne {
            fn regular(&mut self, _: bool, _: u64, c: &mut dyn Read) -> Result<(), NarError> {
                let mut b = [0u8; 1];
                c.read_exact(&mut b)?;
                self.0.push(b[0]);
                Ok(())
            }
            fn symlink(&mut self, _: &[u8]) -> Result<(), NarError> {
                Ok(())
            }
            fn directory_start(&mut self) -> Result<(), NarError> {
                Ok(())
            }
            fn directory_end(&mut self) -> Result<(), NarError> {
                Ok(())
            }
            fn entry_start(&mut self, _: &[u8]) -> Result<(), NarError> {
                Ok(())
            }
        }
        let nar = sample();
        let mut v = ReadOne(Vec::new());
        assert_eq!(parse(&mut &nar[..], &mut v).unwrap(), nar.len() as u64);
        assert_eq!(v.0, b"h");
    }

    #[test]
    fn refuses_deep_nesting() {
        let mut t: Vec<&[u8]> = vec![b"nix-archive-1"];
        let depth = super::MAX_DEPTH + 2;
        for _ in 0..depth {
            t.extend_from_slice(&[
                b"(",
                b"type",
                b"directory",
                b"entry",
                b"(",
                b"name",
                b"d",
                b"node",
            ]);
        }
        let nar = nar_of(&t);
        assert!(matches!(
            parse(&mut &nar[..], &mut Validate),
            Err(NarError::TooDeep(_))
        ));
    }
}
