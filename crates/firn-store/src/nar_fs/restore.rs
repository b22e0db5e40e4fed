//! Restoring a NAR into a new file system object, without ever writing outside it.
//!
//! Every object is created relative to a handle on the directory that holds it, a directory this
//! restore created itself, and with calls that never follow a symlink (`mkdirat`, `symlinkat`,
//! `openat` with `O_CREAT | O_EXCL | O_NOFOLLOW`); directories are reopened with `O_NOFOLLOW`.
//! The names come from the parser, which has already refused `.`, `..`, `/` and NUL. Modes are
//! CppNix's before canonicalisation: files `0666`, executables with the three x bits added
//! (`0755` under the usual umask), directories `0777`, all less the umask; the store layer
//! canonicalises afterwards.

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use firn_format::nar::{self, NarError, Visitor};
use firn_format::{Hash, HashAlgo, Hasher};
use rustix::fs::{Mode, OFlags};

use super::{io_err, NarFsError};

/// Directory handles kept open at once (beyond the root's); deeper ancestors are closed and
/// reopened by name when the restore climbs back to them.
const KEEP_OPEN: usize = 32;

/// Copy buffer for file contents.
const COPY_BUF: usize = 256 * 1024;

/// Restore the NAR read from `input` at `target`, which must not exist (its parent must).
/// Returns the NAR's size; nothing after the NAR is read from `input`, so callers that read
/// from an unbuffered source should hand in a buffered reader.
///
/// On error, what was created so far stays under `target` for the caller to remove.
pub fn restore_path(input: &mut impl Read, target: &Path) -> Result<u64, NarFsError> {
    let (parent, name) = split_target(target)?;
    let parent_fd = if parent.as_os_str().is_empty() {
        None
    } else {
        Some(
            rustix::fs::open(
                parent,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| io_err("opening directory", parent)(e.into()))?,
        )
    };
    let mut r = Restorer {
        target: target.to_path_buf(),
        rel: PathBuf::new(),
        parent: parent_fd,
        root_name: name.to_vec(),
        dirs: Vec::new(),
        pending: None,
        buf: Vec::new(),
        err: None,
    };
    match nar::parse(input, &mut r) {
        Ok(n) => Ok(n),
        Err(e) => Err(r.err.take().unwrap_or(NarFsError::Restore {
            path: target.to_path_buf(),
            source: e,
        })),
    }
}

/// Restore like [`restore_path`] while hashing exactly the NAR's bytes: returns the NAR hash and
/// size, in one pass over the input.
pub fn restore_path_hashed(
    input: &mut impl Read,
    target: &Path,
    algo: HashAlgo,
) -> Result<(Hash, u64), NarFsError> {
    let mut tee = TeeHash {
        inner: input,
        hasher: Hasher::new(algo),
    };
    let n = restore_path(&mut tee, target)?;
    Ok((tee.hasher.finish(), n))
}

/// Passes reads through while hashing them.
pub struct TeeHash<'a, R> {
    pub inner: &'a mut R,
    pub hasher: Hasher,
}

impl<R: Read> Read for TeeHash<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// The directory to create in and the name to create.
fn split_target(target: &Path) -> Result<(&Path, &[u8]), NarFsError> {
    let bad = || NarFsError::Io {
        op: "restoring to",
        path: target.to_path_buf(),
        source: io::Error::new(
            io::ErrorKind::InvalidInput,
            "the target must be a path ending in a file name",
        ),
    };
    let name = target.file_name().ok_or_else(bad)?;
    let parent = target.parent().ok_or_else(bad)?;
    Ok((parent, name.as_bytes()))
}

/// A directory being filled: its name in its parent and, while kept open, a handle on it.
struct Dir {
    name: Vec<u8>,
    fd: Option<OwnedFd>,
}

struct Restorer {
    target: PathBuf,
    /// The path of the current object relative to `target`, for messages.
    rel: PathBuf,
    /// The directory `target` is created in (`None`: the working directory).
    parent: Option<OwnedFd>,
    root_name: Vec<u8>,
    /// The directories created and not yet finished, the root first.
    dirs: Vec<Dir>,
    /// The name of the entry whose node comes next.
    pending: Option<Vec<u8>>,
    buf: Vec<u8>,
    /// The real error behind a `NarError::Visitor` handed to the parser.
    err: Option<NarFsError>,
}

impl Restorer {
    fn path(&self) -> PathBuf {
        if self.rel.as_os_str().is_empty() {
            self.target.clone()
        } else {
            self.target.join(&self.rel)
        }
    }

    fn fail(&mut self, op: &'static str, e: io::Error) -> NarError {
        let err = NarFsError::Io {
            op,
            path: self.path(),
            source: e,
        };
        let msg = err.to_string();
        self.err = Some(err);
        NarError::Visitor(msg)
    }

    /// Make sure the innermost directory has a handle, reopening closed ancestors by name.
    fn reopen_top(&mut self) -> io::Result<()> {
        let Some(top) = self.dirs.len().checked_sub(1) else {
            return Ok(());
        };
        // The root's handle is never closed, so an open ancestor exists.
        let mut open = top;
        while self.dirs[open].fd.is_none() {
            open -= 1;
        }
        for i in open + 1..=top {
            let fd = {
                let parent = self.dirs[i - 1]
                    .fd
                    .as_ref()
                    .expect("opened in the previous iteration or found open");
                open_dir(parent.as_fd(), &self.dirs[i].name)?
            };
            self.dirs[i].fd = Some(fd);
        }
        Ok(())
    }

    /// The directory to create the next object in, and its name there.
    fn place(&mut self) -> io::Result<(BorrowedFd<'_>, Vec<u8>)> {
        match self.pending.take() {
            None => {
                if !self.dirs.is_empty() {
                    return Err(io::Error::other(
                        "a node without an entry inside a directory",
                    ));
                }
                let fd = match &self.parent {
                    Some(fd) => fd.as_fd(),
                    None => rustix::fs::CWD,
                };
                Ok((fd, self.root_name.clone()))
            }
            Some(name) => {
                self.reopen_top()?;
                let fd = self
                    .dirs
                    .last()
                    .and_then(|d| d.fd.as_ref())
                    .ok_or_else(|| io::Error::other("an entry outside a directory"))?;
                Ok((fd.as_fd(), name))
            }
        }
    }

    fn create_file(&mut self, executable: bool) -> io::Result<fs::File> {
        let (dir, name) = self.place()?;
        let fd = rustix::fs::openat(
            dir,
            OsStr::from_bytes(&name),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o666),
        )?;
        if executable {
            let st = rustix::fs::fstat(&fd)?;
            let mode = Mode::from_raw_mode(st.st_mode) | Mode::XUSR | Mode::XGRP | Mode::XOTH;
            rustix::fs::fchmod(&fd, mode)?;
        }
        Ok(fs::File::from(fd))
    }

    fn copy(&mut self, f: &mut fs::File, size: u64, contents: &mut dyn Read) -> io::Result<()> {
        let want = size.clamp(1, COPY_BUF as u64) as usize;
        if self.buf.len() < want {
            self.buf.resize(want, 0);
        }
        loop {
            let n = match contents.read(&mut self.buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            f.write_all(&self.buf[..n])?;
        }
    }
}

fn open_dir(parent: BorrowedFd<'_>, name: &[u8]) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        parent,
        OsStr::from_bytes(name),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

impl Visitor for Restorer {
    fn regular(
        &mut self,
        executable: bool,
        size: u64,
        contents: &mut dyn Read,
    ) -> Result<(), NarError> {
        let mut f = match self.create_file(executable) {
            Ok(f) => f,
            Err(e) => return Err(self.fail("creating file", e)),
        };
        match self.copy(&mut f, size, contents) {
            Ok(()) => Ok(()),
            // A short NAR shows up as an early end of the contents: the parser's error.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(e.into()),
            Err(e) => Err(self.fail("writing file", e)),
        }
    }

    fn symlink(&mut self, target: &[u8]) -> Result<(), NarError> {
        let res = self.place().and_then(|(dir, name)| {
            Ok(rustix::fs::symlinkat(
                OsStr::from_bytes(target),
                dir,
                OsStr::from_bytes(&name),
            )?)
        });
        res.map_err(|e| self.fail("creating symbolic link", e))
    }

    fn directory_start(&mut self) -> Result<(), NarError> {
        let res = self.place().and_then(|(dir, name)| {
            rustix::fs::mkdirat(dir, OsStr::from_bytes(&name), Mode::from_raw_mode(0o777))?;
            let fd = open_dir(dir, &name)?;
            Ok((name, fd))
        });
        let (name, fd) = res.map_err(|e| self.fail("creating directory", e))?;
        // Bound the handles held: close the one KEEP_OPEN levels up (never the root's).
        let depth = self.dirs.len();
        if depth > KEEP_OPEN {
            self.dirs[depth - KEEP_OPEN].fd = None;
        }
        self.dirs.push(Dir { name, fd: Some(fd) });
        Ok(())
    }

    fn directory_end(&mut self) -> Result<(), NarError> {
        self.dirs.pop();
        Ok(())
    }

    fn entry_start(&mut self, name: &[u8]) -> Result<(), NarError> {
        // The parser has checked the name: no '/', not '.' or '..', not empty, no NUL.
        self.rel.push(OsStr::from_bytes(name));
        self.pending = Some(name.to_vec());
        Ok(())
    }

    fn entry_end(&mut self) -> Result<(), NarError> {
        self.rel.pop();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use firn_format::nar::NarWriter;
    use std::os::unix::fs::PermissionsExt;

    fn deep_nar(levels: usize) -> Vec<u8> {
        let mut w = NarWriter::new(Vec::new()).unwrap();
        for i in 0..levels {
            w.begin_directory().unwrap();
            if i % 7 == 0 {
                w.entry(b"a").unwrap();
                w.regular(i % 2 == 0, 1, &mut &b"x"[..]).unwrap();
            }
            w.entry(b"d").unwrap();
        }
        w.symlink(b"../../..").unwrap();
        for i in 0..levels {
            if i % 5 == 0 {
                w.entry(b"z").unwrap();
                w.begin_directory().unwrap();
                w.end_directory().unwrap();
            }
            w.end_directory().unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn deep_trees_reopen_closed_directories() {
        // Deeper than KEEP_OPEN, so entries after the deep part go into reopened directories.
        let d = tempfile::tempdir().unwrap();
        let nar = deep_nar(KEEP_OPEN * 3 + 5);
        let t = d.path().join("t");
        assert_eq!(restore_path(&mut &nar[..], &t).unwrap(), nar.len() as u64);
        let mut back = Vec::new();
        super::super::dump_path(&t, &mut back).unwrap();
        assert_eq!(back, nar);
    }

    #[test]
    fn modes_follow_cppnix() {
        let d = tempfile::tempdir().unwrap();
        let mut w = NarWriter::new(Vec::new()).unwrap();
        w.begin_directory().unwrap();
        w.entry(b"f").unwrap();
        w.regular(false, 0, &mut &b""[..]).unwrap();
        w.entry(b"x").unwrap();
        w.regular(true, 0, &mut &b""[..]).unwrap();
        w.end_directory().unwrap();
        let nar = w.finish().unwrap();
        let t = d.path().join("t");
        restore_path(&mut &nar[..], &t).unwrap();
        // Read, not set: setting it would race with the other tests' files.
        let status = fs::read_to_string("/proc/self/status").unwrap();
        let umask = status
            .lines()
            .find_map(|l| l.strip_prefix("Umask:"))
            .map(|m| u32::from_str_radix(m.trim(), 8).unwrap())
            .unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&t), 0o777 & !umask);
        assert_eq!(mode(&t.join("f")), 0o666 & !umask);
        assert_eq!(mode(&t.join("x")), (0o666 & !umask) | 0o111);
    }

    #[test]
    fn refuses_unusable_targets() {
        let d = tempfile::tempdir().unwrap();
        let mut w = NarWriter::new(Vec::new()).unwrap();
        w.symlink(b"x").unwrap();
        let nar = w.finish().unwrap();
        assert!(restore_path(&mut &nar[..], Path::new("/")).is_err());
        let missing = d.path().join("no/such/dir");
        let e = restore_path(&mut &nar[..], &missing).unwrap_err();
        assert!(e.to_string().contains("no/such"), "{e}");
        // A symlink where the target should be is not followed or replaced.
        let link = d.path().join("link");
        std::os::unix::fs::symlink(d.path().join("elsewhere"), &link).unwrap();
        assert!(restore_path(&mut &nar[..], &link).is_err());
        assert!(!d.path().join("elsewhere").exists());
    }
}
