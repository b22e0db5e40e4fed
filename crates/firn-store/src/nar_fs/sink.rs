//! Where a tree walk writes its NAR: any `Write` for the framing, and a way to read a file's
//! contents straight into the sink's own buffer, so that file data is copied once (from the
//! page cache) on its way to the hash or the output. A sink also takes the work that follows
//! from what it was given (writing a copy of the bytes, finishing a copy, closing a file): the
//! hashing pipeline may hand that to its other thread ([`crate::pipe`]), a plain writer does it
//! at once.

use std::io::{self, Write};
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::Arc;

use firn_format::Hasher;

use super::place::Place;
use super::NarFsError;
use crate::pipe::{ChunkWriter, CopyFile, Op};

/// Copy buffer for sinks that have none of their own.
const COPY_BUF: usize = 256 * 1024;

/// The outcome of one read into a sink.
pub(crate) struct Filled {
    /// The bytes kept (written to the sink): at most the number wanted.
    pub kept: usize,
    /// What the read returned: one more than wanted means the file has more bytes than that.
    pub got: usize,
    /// What the read asked for: a short read (`got < asked`) is the end of the file.
    pub asked: usize,
}

/// Why [`NarSink::fill_from`] failed.
pub(crate) enum FillError {
    /// Reading the file.
    Read(io::Error),
    /// Writing to the sink.
    Sink(io::Error),
}

/// A NAR output that can take file contents straight from a descriptor.
pub(crate) trait NarSink: Write {
    /// Read from `fd` into the sink, keeping at most `want` bytes. Where the buffer has room
    /// the read asks for one byte more than `want`, so the end of a file is seen without a
    /// read of its own.
    fn fill_from(&mut self, fd: BorrowedFd<'_>, want: u64) -> Result<Filled, FillError>;

    /// Write the `n` bytes just kept by [`NarSink::fill_from`] to the copy `to`, at `offset`.
    fn copy_kept(&mut self, to: &Arc<CopyFile>, offset: u64, n: usize) -> Result<(), NarFsError>;

    /// The copy `to` has all its bytes: give it the store's time and close it.
    fn finish_copy(&mut self, to: Arc<CopyFile>) -> Result<(), NarFsError> {
        to.finish()
    }

    /// Close a file that has been read.
    fn close(&mut self, fd: OwnedFd) {
        drop(fd);
    }

    /// Whether the sink would rather read a whole file of `size` bytes itself
    /// ([`NarSink::give_file`]) than be filled with it.
    fn wants_file(&self, _size: u64) -> bool {
        false
    }

    /// Hand over a whole file (its descriptor and size, where it is, its copy if any) for the
    /// sink to read in its place, and to finish the copy; errors in that come back from the
    /// sink's end.
    fn give_file(&mut self, file: GivenFile) -> io::Result<()> {
        let _ = file;
        Err(io::Error::other("this sink does not take whole files"))
    }
}

/// A file handed to a sink to read itself.
pub(crate) struct GivenFile {
    pub fd: OwnedFd,
    pub size: u64,
    /// Where it is, for messages.
    pub place: Place,
    pub copy: Option<Arc<CopyFile>>,
}

/// One read into `buf` for [`NarSink::fill_from`]: asks for `want + 1` bytes where `buf` has
/// room; returns what was got and what was asked.
fn read_some(fd: BorrowedFd<'_>, buf: &mut [u8], want: u64) -> Result<(usize, usize), FillError> {
    let asked = want.saturating_add(1).min(buf.len() as u64) as usize;
    loop {
        match rustix::io::read(fd, &mut buf[..asked]) {
            Ok(got) => return Ok((got, asked)),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(FillError::Read(e.into())),
        }
    }
}

fn write_copy(to: &CopyFile, bytes: &[u8], offset: u64) -> Result<(), NarFsError> {
    to.write_at(bytes, offset)
}

impl NarSink for ChunkWriter<'_> {
    fn fill_from(&mut self, fd: BorrowedFd<'_>, want: u64) -> Result<Filled, FillError> {
        let room = self.spare().map_err(FillError::Sink)?;
        let (got, asked) = read_some(fd, room, want)?;
        let kept = (got as u64).min(want) as usize;
        self.commit(kept);
        Ok(Filled { kept, got, asked })
    }

    fn copy_kept(&mut self, to: &Arc<CopyFile>, offset: u64, n: usize) -> Result<(), NarFsError> {
        if self.hand_over() {
            self.copy_last(to, n, offset);
            Ok(())
        } else {
            write_copy(to, self.last(n), offset)
        }
    }

    fn finish_copy(&mut self, to: Arc<CopyFile>) -> Result<(), NarFsError> {
        if Arc::strong_count(&to) > 1 {
            // Writes to it are queued: finishing must come after them.
            self.finish_last(to);
            Ok(())
        } else {
            to.finish()
        }
    }

    fn close(&mut self, fd: OwnedFd) {
        if self.hand_over() {
            self.push_op(Op::Close(fd));
        }
    }

    fn wants_file(&self, size: u64) -> bool {
        size > 0 && self.hand_over()
    }

    fn give_file(&mut self, file: GivenFile) -> io::Result<()> {
        ChunkWriter::give_file(self, file);
        Ok(())
    }
}

/// The hashing thread's own sink, for whole files given to it: reads into its buffer and
/// hashes from there (still in its cache).
pub(crate) struct HashSink<'a> {
    pub hasher: &'a mut Hasher,
    pub buf: &'a mut Vec<u8>,
}

impl Write for HashSink<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.hasher.update(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl NarSink for HashSink<'_> {
    fn fill_from(&mut self, fd: BorrowedFd<'_>, want: u64) -> Result<Filled, FillError> {
        if self.buf.is_empty() {
            self.buf.resize(COPY_BUF, 0);
        }
        let (got, asked) = read_some(fd, self.buf, want)?;
        let kept = (got as u64).min(want) as usize;
        self.hasher.update(&self.buf[..kept]);
        Ok(Filled { kept, got, asked })
    }

    fn copy_kept(&mut self, to: &Arc<CopyFile>, offset: u64, n: usize) -> Result<(), NarFsError> {
        write_copy(to, &self.buf[..n], offset)
    }
}

/// Any writer as a sink, with a copy buffer for file contents.
pub(crate) struct Plain<W> {
    out: W,
    buf: Vec<u8>,
}

impl<W: Write> Plain<W> {
    pub(crate) fn new(out: W) -> Plain<W> {
        Plain {
            out,
            buf: Vec::new(),
        }
    }
}

impl<W: Write> Write for Plain<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.out.write(data)
    }

    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.out.write_all(data)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl<W: Write> NarSink for Plain<W> {
    fn fill_from(&mut self, fd: BorrowedFd<'_>, want: u64) -> Result<Filled, FillError> {
        if self.buf.is_empty() {
            self.buf = vec![0u8; COPY_BUF];
        }
        let (got, asked) = read_some(fd, &mut self.buf, want)?;
        let kept = (got as u64).min(want) as usize;
        self.out
            .write_all(&self.buf[..kept])
            .map_err(FillError::Sink)?;
        Ok(Filled { kept, got, asked })
    }

    fn copy_kept(&mut self, to: &Arc<CopyFile>, offset: u64, n: usize) -> Result<(), NarFsError> {
        write_copy(to, &self.buf[..n], offset)
    }
}
