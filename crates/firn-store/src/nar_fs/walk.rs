//! The tree walk behind dumping, hashing and copying into the store, written for few and cheap
//! system calls:
//!
//! - directories are read through handles ([`super::dirs`]): `getdents64` into buffers kept
//!   from one directory to the next; each entry is opened relative to its directory's handle
//!   (`openat`, `readlinkat`), never by a full path;
//! - the type comes from the directory entry, so directories and symlinks are never `stat`ed
//!   and a regular file is examined once, through its open descriptor (`fstat`); an entry whose
//!   type is unknown or changed since it was listed is looked at with `fstatat`;
//! - contents are read straight into the sink's buffer ([`NarSink`]), asking for one byte more
//!   than the file has left, so that the end of the file is seen without another read: a file
//!   that grew or shrank while it was read is an error ([`NarFsError::Changed`]), never a
//!   wrong NAR;
//! - a copy (adding to the store) creates each object relative to its new directory's handle
//!   with its final mode, writes the bytes just read, and sets the store's time through the
//!   descriptor;
//! - a sink may take over part of the work: read a whole file itself, write the copy, close
//!   the file ([`NarSink::give_file`], [`NarSink::copy_kept`], [`NarSink::close`]); the hashing
//!   pipeline ([`crate::pipe`]) does so on its hashing thread while that thread has time.
//!
//! Symlinks are never followed (`O_NOFOLLOW`, and `readlinkat` on the entry itself). At most
//! [`KEEP_OPEN`] directory handles per side are held; deeper ancestors are closed and reopened
//! by name when the walk climbs back to them, so trees as deep as the NAR format allows need no
//! more descriptors than that.

use std::ffi::{CStr, OsStr};
use std::fs;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use firn_format::nar::{NarError, NarWriter, MAX_TARGET_LEN};
use firn_format::Hasher;
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::dirs::{Entries, Hint, DIR_FLAGS};
use super::place::Place;
use super::sink::{FillError, GivenFile, HashSink, NarSink};
use super::{KeepFn, NarFsError};
use crate::pipe::CopyFile;

/// Directory handles kept open per side (source, copy) beyond the root's.
const KEEP_OPEN: usize = 32;

const FILE_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::NOFOLLOW)
    .union(OFlags::NOCTTY)
    .union(OFlags::CLOEXEC);

/// A directory being walked.
struct Level {
    /// Its path, shared with the places of its entries.
    path: Arc<Path>,
    /// Its handle; `None` while closed to bound the handles held (reopened by name).
    fd: Option<OwnedFd>,
    /// The path of its copy, when copying.
    dst_path: Option<Arc<Path>>,
    /// The handle on its copy, when copying.
    dst: Option<OwnedFd>,
    entries: Entries,
    /// The next entry to visit.
    next: usize,
}

/// Where the object being visited is: the entry `name` of the directory `dir`, or (without a
/// name) `dir` itself. Its path is only made when needed.
#[derive(Clone, Copy)]
struct Loc<'a> {
    dir: &'a Arc<Path>,
    name: Option<&'a CStr>,
}

impl Loc<'_> {
    fn path(&self) -> PathBuf {
        match self.name {
            Some(n) => self.dir.join(os(n)),
            None => self.dir.to_path_buf(),
        }
    }

    fn place(&self) -> Place {
        match self.name {
            Some(n) => Place::entry(self.dir, n.to_bytes()),
            None => Place::at(self.dir),
        }
    }
}

/// An object opened for dumping.
enum Node {
    Regular {
        fd: OwnedFd,
        size: u64,
        executable: bool,
    },
    /// The target is in [`State::target`].
    Symlink,
    Directory(OwnedFd),
}

/// Why an object could not be opened.
enum OpenError {
    Io(&'static str, io::Error),
    Unsupported,
}

impl From<(&'static str, Errno)> for OpenError {
    fn from((op, e): (&'static str, Errno)) -> OpenError {
        OpenError::Io(op, e.into())
    }
}

/// Why copying a file's contents failed.
enum ContentsError {
    /// Reading the file.
    Read(io::Error),
    /// Writing the NAR.
    Sink(io::Error),
    /// Writing the copy.
    Copy(NarFsError),
    /// The file grew or shrank while it was read.
    Changed,
}

/// Where a copy goes, and what it has learnt of the umask.
struct CopyTo {
    /// The copy of the root.
    root: Arc<Path>,
    /// Whether new files must be `fchmod`ed to get their mode (a umask that takes bits from
    /// `0444`/`0555`); found out on the first file.
    chmod_files: Option<bool>,
}

/// A directory opened by [`State::emit`], for the walk to enter.
struct Opened {
    fd: OwnedFd,
    dst: Option<OwnedFd>,
}

/// Walk `root` and write its NAR into `out`, leaving out what `keep` refuses; with `dst`, also
/// copy it there (which must not exist), already canonical: modes 0444/0555, time 1.
pub(crate) fn walk<S: NarSink>(
    root: &Path,
    out: &mut S,
    keep: Option<KeepFn<'_>>,
    dst: Option<&Path>,
) -> Result<(), NarFsError> {
    let wr = |source| NarFsError::Write {
        path: root.to_path_buf(),
        source,
    };
    let mut w = NarWriter::new(out).map_err(wr)?;
    let mut walk = Walk {
        levels: Vec::new(),
        free: Vec::new(),
        dents: Vec::new(),
        s: State {
            keep,
            copy: dst.map(|d| CopyTo {
                root: Arc::from(d),
                chmod_files: None,
            }),
            link: vec![MaybeUninit::uninit(); MAX_TARGET_LEN + 1],
            target: Vec::new(),
        },
    };
    walk.run(&mut w, &Arc::from(root))?;
    w.finish().map_err(wr)?;
    Ok(())
}

struct Walk<'k> {
    /// The directories entered and not finished, the root's first.
    levels: Vec<Level>,
    /// Finished levels, kept for their buffers.
    free: Vec<Level>,
    dents: Vec<u8>,
    s: State<'k>,
}

/// What visiting one object needs besides the directories being walked.
struct State<'k> {
    keep: Option<KeepFn<'k>>,
    copy: Option<CopyTo>,
    link: Vec<MaybeUninit<u8>>,
    /// The target of the last symlink read.
    target: Vec<u8>,
}

/// A name from a directory as a path component.
fn os(name: &CStr) -> &OsStr {
    OsStr::from_bytes(name.to_bytes())
}

fn open_error(e: OpenError, path: PathBuf) -> NarFsError {
    match e {
        OpenError::Io(op, source) => NarFsError::Io { op, path, source },
        OpenError::Unsupported => NarFsError::UnsupportedType(path),
    }
}

/// An error with the operation and path.
fn fail(op: &'static str, path: PathBuf) -> impl FnOnce(Errno) -> NarFsError {
    move |e| NarFsError::Io {
        op,
        path,
        source: e.into(),
    }
}

impl Walk<'_> {
    fn run<S: NarSink>(
        &mut self,
        w: &mut NarWriter<&mut S>,
        root: &Arc<Path>,
    ) -> Result<(), NarFsError> {
        // The root: its type is not known yet.
        let at = Loc {
            dir: root,
            name: None,
        };
        let node = self
            .s
            .open(rustix::fs::CWD, &**root, Hint::Look)
            .map_err(|e| open_error(e, at.path()))?;
        let dst_root = self.s.copy.as_ref().map(|c| c.root.clone());
        let dst = dst_root
            .as_ref()
            .map(|d| (rustix::fs::CWD, &**d, Loc { dir: d, name: None }));
        if let Some(dir) = self.s.emit(w, node, at, dst)? {
            self.enter(dir, root.clone(), dst_root)?;
        }
        while let Some(top) = self.levels.len().checked_sub(1) {
            let level = &mut self.levels[top];
            if level.next == level.entries.len() {
                self.end_directory(w)?;
                continue;
            }
            let i = level.next;
            level.next += 1;
            let level = &self.levels[top];
            let (name, hint) = level.entries.get(i);
            let at = Loc {
                dir: &level.path,
                name: Some(name),
            };
            if let Some(keep) = self.s.keep.as_mut() {
                let child = at.path();
                let ft = fs::symlink_metadata(&child)
                    .map_err(super::io_err("getting status of", &child))?
                    .file_type();
                if !keep(&child, ft) {
                    continue;
                }
            }
            w.entry(name.to_bytes())
                .map_err(|source| NarFsError::Write {
                    path: at.path(),
                    source,
                })?;
            let fd = level
                .fd
                .as_ref()
                .expect("the top of the walk has its handle open");
            let node = self
                .s
                .open(fd.as_fd(), name, hint)
                .map_err(|e| open_error(e, at.path()))?;
            let dst = match (&level.dst, &level.dst_path) {
                (Some(d), Some(p)) => Some((
                    d.as_fd(),
                    name,
                    Loc {
                        dir: p,
                        name: Some(name),
                    },
                )),
                _ => None,
            };
            if let Some(dir) = self.s.emit(w, node, at, dst)? {
                let path = Arc::from(at.path());
                let dst_path = dst.map(|(_, _, d)| Arc::from(d.path()));
                self.enter(dir, path, dst_path)?;
            }
        }
        Ok(())
    }

    /// Read the directory just opened (at `path`, copied to `dst_path`) and make it the top of
    /// the walk.
    fn enter(
        &mut self,
        dir: Opened,
        path: Arc<Path>,
        dst_path: Option<Arc<Path>>,
    ) -> Result<(), NarFsError> {
        let mut level = match self.free.pop() {
            Some(mut l) => {
                l.path = path;
                l
            }
            None => Level {
                path,
                fd: None,
                dst_path: None,
                dst: None,
                entries: Entries::default(),
                next: 0,
            },
        };
        level
            .entries
            .read(dir.fd.as_fd(), &mut self.dents)
            .map_err(fail("reading directory", level.path.to_path_buf()))?;
        level.next = 0;
        level.fd = Some(dir.fd);
        level.dst = dir.dst;
        level.dst_path = dst_path;
        // Bound the handles held: close the ones KEEP_OPEN levels up (never the root's).
        let depth = self.levels.len();
        if depth > KEEP_OPEN {
            let old = &mut self.levels[depth - KEEP_OPEN];
            old.fd = None;
            old.dst = None;
        }
        self.levels.push(level);
        Ok(())
    }

    /// Finish the directory at the top of the walk (its copy gets its final mode and time) and
    /// climb back to its parent.
    fn end_directory<S: NarSink>(&mut self, w: &mut NarWriter<&mut S>) -> Result<(), NarFsError> {
        let mut level = self.levels.pop().expect("called with a directory open");
        w.end_directory().map_err(|source| NarFsError::Write {
            path: level.path.to_path_buf(),
            source,
        })?;
        if let (Some(p), Some(dst)) = (&level.dst_path, &level.dst) {
            // Last, once nothing more is created in it.
            rustix::fs::fchmod(dst, Mode::from_raw_mode(0o555))
                .map_err(fail("changing mode of", p.to_path_buf()))?;
            rustix::fs::futimens(dst, &super::store_times())
                .map_err(fail("setting the time of", p.to_path_buf()))?;
        }
        level.fd = None;
        level.dst = None;
        level.dst_path = None;
        self.free.push(level);
        if !self.levels.is_empty() {
            self.reopen_top()?;
        }
        Ok(())
    }

    /// Make sure the directory at the top of the walk has its handles, reopening closed
    /// ancestors by name from the nearest open one (the root's is never closed).
    fn reopen_top(&mut self) -> Result<(), NarFsError> {
        let top = self.levels.len() - 1;
        if self.levels[top].fd.is_some() {
            return Ok(());
        }
        let mut open = top;
        while self.levels[open].fd.is_none() {
            open -= 1;
        }
        for i in open + 1..=top {
            let (parent, rest) = self.levels.split_at_mut(i);
            let (parent, level) = (&parent[i - 1], &mut rest[0]);
            let (name, _) = parent.entries.get(parent.next - 1);
            let fd = parent
                .fd
                .as_ref()
                .expect("opened in the previous iteration or found open");
            level.fd = Some(
                rustix::fs::openat(fd, name, DIR_FLAGS, Mode::empty())
                    .map_err(fail("opening directory", level.path.to_path_buf()))?,
            );
            if let (Some(pdst), Some(p)) = (&parent.dst, &level.dst_path) {
                level.dst = Some(
                    rustix::fs::openat(pdst, name, DIR_FLAGS, Mode::empty())
                        .map_err(fail("opening directory", p.to_path_buf()))?,
                );
            }
        }
        Ok(())
    }
}

impl State<'_> {
    /// Open `name` in `at`, trusting `hint` until the object says otherwise.
    fn open<P: rustix::path::Arg + Copy>(
        &mut self,
        at: BorrowedFd<'_>,
        name: P,
        hint: Hint,
    ) -> Result<Node, OpenError> {
        match hint {
            Hint::Directory => match rustix::fs::openat(at, name, DIR_FLAGS, Mode::empty()) {
                Ok(fd) => return Ok(Node::Directory(fd)),
                // Replaced since it was listed: look again.
                Err(Errno::NOTDIR | Errno::LOOP) => {}
                Err(e) => return Err(("opening directory", e).into()),
            },
            Hint::Symlink => match self.read_link(at, name) {
                Ok(()) => return Ok(Node::Symlink),
                Err(Errno::INVAL) => {}
                Err(e) => return Err(("reading symbolic link", e).into()),
            },
            Hint::Regular => match rustix::fs::openat(at, name, FILE_FLAGS, Mode::empty()) {
                Ok(fd) => return opened_file(fd),
                Err(Errno::LOOP) => {}
                Err(e) => return Err(("opening file", e).into()),
            },
            Hint::Look => {}
        }
        let st = rustix::fs::statat(at, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| ("getting status of", e))?;
        match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => {
                let fd = rustix::fs::openat(at, name, FILE_FLAGS, Mode::empty())
                    .map_err(|e| ("opening file", e))?;
                opened_file(fd)
            }
            FileType::Directory => Ok(Node::Directory(
                rustix::fs::openat(at, name, DIR_FLAGS, Mode::empty())
                    .map_err(|e| ("opening directory", e))?,
            )),
            FileType::Symlink => {
                self.read_link(at, name)
                    .map_err(|e| ("reading symbolic link", e))?;
                Ok(Node::Symlink)
            }
            _ => Err(OpenError::Unsupported),
        }
    }

    fn read_link<P: rustix::path::Arg>(
        &mut self,
        at: BorrowedFd<'_>,
        name: P,
    ) -> Result<(), Errno> {
        let (target, _) = rustix::fs::readlinkat_raw(at, name, &mut self.link)?;
        self.target.clear();
        self.target.extend_from_slice(target);
        Ok(())
    }

    /// Write `node` (found at `src`) and copy it to `dst` (`name` in the directory `at`, found
    /// at `loc`). A directory is only begun and opened: returned for the walk to enter.
    fn emit<S: NarSink, P: rustix::path::Arg + Copy>(
        &mut self,
        w: &mut NarWriter<&mut S>,
        node: Node,
        src: Loc<'_>,
        dst: Option<(BorrowedFd<'_>, P, Loc<'_>)>,
    ) -> Result<Option<Opened>, NarFsError> {
        let wr = |source| NarFsError::Write {
            path: src.path(),
            source,
        };
        match node {
            Node::Regular {
                fd,
                size,
                executable,
            } => {
                let copy = match dst {
                    Some((at, name, loc)) => Some(Arc::new(CopyFile {
                        file: self.create_file(at, name, loc, executable)?,
                        place: loc.place(),
                    })),
                    None => None,
                };
                let out = &mut **w.begin_contents(executable, size).map_err(wr)?;
                if out.wants_file(size) {
                    out.give_file(GivenFile {
                        fd,
                        size,
                        place: src.place(),
                        copy,
                    })
                    .map_err(|e| wr(NarError::Io(e)))?;
                    w.end_contents(size).map_err(wr)?;
                    return Ok(None);
                }
                match contents(out, fd.as_fd(), size, copy.as_ref()) {
                    Ok(()) => {}
                    Err(ContentsError::Read(e)) => {
                        return Err(super::io_err("reading file", &src.path())(e))
                    }
                    Err(ContentsError::Sink(e)) => return Err(wr(NarError::Io(e))),
                    Err(ContentsError::Copy(e)) => return Err(e),
                    Err(ContentsError::Changed) => return Err(NarFsError::Changed(src.path())),
                }
                out.close(fd);
                if let Some(copy) = copy {
                    out.finish_copy(copy)?;
                }
                w.end_contents(size).map_err(wr)?;
                Ok(None)
            }
            Node::Symlink => {
                w.symlink(&self.target).map_err(wr)?;
                if let Some((at, name, loc)) = dst {
                    rustix::fs::symlinkat(OsStr::from_bytes(&self.target), at, name)
                        .map_err(|e| fail("creating symbolic link", loc.path())(e))?;
                    rustix::fs::utimensat(
                        at,
                        name,
                        &super::store_times(),
                        AtFlags::SYMLINK_NOFOLLOW,
                    )
                    .map_err(|e| fail("setting the time of", loc.path())(e))?;
                }
                Ok(None)
            }
            Node::Directory(fd) => {
                w.begin_directory().map_err(wr)?;
                let dst = match dst {
                    Some((at, name, loc)) => Some(
                        rustix::fs::mkdirat(at, name, Mode::from_raw_mode(0o777))
                            .and_then(|()| rustix::fs::openat(at, name, DIR_FLAGS, Mode::empty()))
                            .map_err(|e| fail("creating directory", loc.path())(e))?,
                    ),
                    None => None,
                };
                Ok(Some(Opened { fd, dst }))
            }
        }
    }

    /// Create the copy of a regular file (`name` in `at`, found at `loc`), with its final mode.
    fn create_file<P: rustix::path::Arg + Copy>(
        &mut self,
        at: BorrowedFd<'_>,
        name: P,
        loc: Loc<'_>,
        executable: bool,
    ) -> Result<fs::File, NarFsError> {
        let mode = if executable { 0o555 } else { 0o444 };
        let fd = rustix::fs::openat(
            at,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        )
        .map_err(|e| fail("creating file", loc.path())(e))?;
        let copy = self
            .copy
            .as_mut()
            .expect("files are created only when copying");
        let needed = match copy.chmod_files {
            Some(needed) => needed,
            None => {
                // The first file shows whether the umask leaves the modes alone.
                let st =
                    rustix::fs::fstat(&fd).map_err(|e| fail("getting status of", loc.path())(e))?;
                let needed = st.st_mode & 0o7777 != mode;
                copy.chmod_files = Some(needed);
                needed
            }
        };
        if needed {
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))
                .map_err(|e| fail("changing mode of", loc.path())(e))?;
        }
        Ok(fs::File::from(fd))
    }
}

/// A file opened as regular: what it is now, seen through its descriptor.
fn opened_file(fd: OwnedFd) -> Result<Node, OpenError> {
    let st = rustix::fs::fstat(&fd).map_err(|e| ("getting status of", e))?;
    match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => Ok(Node::Regular {
            size: st.st_size as u64,
            executable: st.st_mode & 0o100 != 0,
            fd,
        }),
        FileType::Directory => Ok(Node::Directory(fd)),
        _ => Err(OpenError::Unsupported),
    }
}

/// Read, hash and copy a file given whole to the hashing thread ([`NarSink::give_file`]).
pub(crate) fn hash_given_file(
    hasher: &mut Hasher,
    buf: &mut Vec<u8>,
    file: GivenFile,
) -> Result<(), NarFsError> {
    let mut sink = HashSink { hasher, buf };
    match contents(&mut sink, file.fd.as_fd(), file.size, file.copy.as_ref()) {
        Ok(()) => {}
        Err(ContentsError::Read(e)) => {
            return Err(super::io_err("reading file", &file.place.path())(e))
        }
        Err(ContentsError::Sink(e)) => {
            return Err(NarFsError::Write {
                path: file.place.path(),
                source: NarError::Io(e),
            })
        }
        Err(ContentsError::Copy(e)) => return Err(e),
        Err(ContentsError::Changed) => return Err(NarFsError::Changed(file.place.path())),
    }
    match file.copy {
        Some(copy) => sink.finish_copy(copy),
        None => Ok(()),
    }
}

/// Copy exactly `size` bytes of the file `fd` into `out` (and `copy`), and see that the file
/// ends there.
fn contents<S: NarSink>(
    out: &mut S,
    fd: BorrowedFd<'_>,
    size: u64,
    copy: Option<&Arc<CopyFile>>,
) -> Result<(), ContentsError> {
    let mut left = size;
    loop {
        let f = out.fill_from(fd, left).map_err(|e| match e {
            FillError::Read(e) => ContentsError::Read(e),
            FillError::Sink(e) => ContentsError::Sink(e),
        })?;
        if f.got as u64 > left {
            return Err(ContentsError::Changed);
        }
        if let (Some(c), true) = (copy, f.kept > 0) {
            out.copy_kept(c, size - left, f.kept)
                .map_err(ContentsError::Copy)?;
        }
        left -= f.got as u64;
        if f.got == 0 {
            // The end of the file: where it was expected, or early.
            return if left == 0 {
                Ok(())
            } else {
                Err(ContentsError::Changed)
            };
        }
        if left == 0 && f.got < f.asked {
            // A short read that did not fill the extra byte asked for: the end of the file.
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::sink::Plain;
    use super::super::{dump_path, hash_path};
    use super::*;
    use crate::pipe::{hash_produced_with, HandOver};
    use firn_format::{Hash, HashAlgo};
    use std::os::unix::fs::MetadataExt;

    const POLICIES: [HandOver; 3] = [HandOver::Adaptive, HandOver::Always, HandOver::Never];

    /// Hash (and copy to `dst`) with the hashing thread taking work as `policy` says.
    fn hash_with(
        policy: HandOver,
        src: &Path,
        dst: Option<&Path>,
    ) -> Result<(Hash, u64), NarFsError> {
        let ((), h, n) =
            hash_produced_with(HashAlgo::Sha256, policy, |out| walk(src, out, None, dst))?;
        Ok((h, n))
    }

    #[test]
    fn a_file_of_another_size_than_announced_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        fs::write(&p, &data).unwrap();
        for (size, ok) in [
            (data.len() as u64, true),
            (data.len() as u64 - 1, false),
            (data.len() as u64 + 1, false),
            (0, false),
            (262_144, false),
        ] {
            let f = fs::File::open(&p).unwrap();
            let mut out = Plain::new(Vec::new());
            let r = contents(&mut out, f.as_fd(), size, None);
            match (r, ok) {
                (Ok(()), true) => {}
                (Err(ContentsError::Changed), false) => {}
                (r, _) => panic!("size {size}: {:?}", r.is_ok()),
            }
            // The same on the hashing thread, for files given to it whole.
            let mut h = Hasher::new(HashAlgo::Sha256);
            let mut buf = Vec::new();
            let r = hash_given_file(
                &mut h,
                &mut buf,
                GivenFile {
                    fd: fs::File::open(&p).unwrap().into(),
                    size,
                    place: Place::at(&Arc::from(p.as_path())),
                    copy: None,
                },
            );
            match (r, ok) {
                (Ok(()), true) => {}
                (Err(NarFsError::Changed(f)), false) if f == p => {}
                (r, _) => panic!(
                    "given whole, size {size}: {:?}",
                    r.map_err(|e| e.to_string())
                ),
            }
        }
    }

    #[test]
    fn a_file_whose_size_the_kernel_does_not_know_is_refused() {
        // /proc files say they are empty and are not: CppNix would store them empty.
        let e = hash_path(Path::new("/proc/self/status"), HashAlgo::Sha256).unwrap_err();
        assert!(matches!(e, NarFsError::Changed(_)), "{e}");
        assert!(e.to_string().contains("/proc/self/status"), "{e}");
    }

    #[test]
    fn trees_deeper_than_the_handles_kept_walk_and_copy() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        let mut p = src.clone();
        for i in 0..3 * KEEP_OPEN + 5 {
            p.push(format!("d{}", i % 7));
            fs::create_dir_all(&p).unwrap();
            // Something after the subdirectory in every directory: the walk climbs back to
            // directories whose handles it closed, and must find them again.
            fs::write(p.join("z"), format!("{i}")).unwrap();
            std::os::unix::fs::symlink("z", p.join("l")).unwrap();
        }
        let mut nar = Vec::new();
        dump_path(&src, &mut nar).unwrap();
        let want = (Hash::digest(HashAlgo::Sha256, &nar), nar.len() as u64);
        assert_eq!(hash_path(&src, HashAlgo::Sha256).unwrap(), want);
        for (k, policy) in POLICIES.into_iter().enumerate() {
            let dst = d.path().join(format!("dst{k}"));
            assert_eq!(hash_with(policy, &src, Some(&dst)).unwrap(), want);
            let mut back = Vec::new();
            dump_path(&dst, &mut back).unwrap();
            assert!(back == nar, "the copy differs ({policy:?})");
            let mut p = dst.clone();
            for i in 0..3 * KEEP_OPEN + 5 {
                p.push(format!("d{}", i % 7));
                let m = fs::symlink_metadata(&p).unwrap();
                assert_eq!(
                    (m.mode() & 0o7777, m.mtime()),
                    (0o555, 1),
                    "{}",
                    p.display()
                );
                let m = fs::symlink_metadata(p.join("z")).unwrap();
                assert_eq!((m.mode() & 0o7777, m.mtime()), (0o444, 1));
                assert_eq!(fs::symlink_metadata(p.join("l")).unwrap().mtime(), 1);
            }
        }
    }

    #[test]
    fn many_files_and_large_ones_copy_exactly() {
        // More small files than the hashing thread may hold open, and files around the chunk
        // and buffer sizes.
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        fs::create_dir(&src).unwrap();
        for i in 0..3000u32 {
            let name = format!("f{i:05}");
            fs::write(src.join(&name), vec![(i % 256) as u8; (i % 97) as usize]).unwrap();
        }
        for (i, size) in [
            65_535usize,
            65_536,
            262_143,
            262_144,
            262_145,
            1 << 20,
            3 * (1 << 20) + 7,
        ]
        .into_iter()
        .enumerate()
        {
            let data: Vec<u8> = (0..size).map(|j| (j * 7 + i) as u8).collect();
            fs::write(src.join(format!("big{i}")), data).unwrap();
        }
        let mut nar = Vec::new();
        dump_path(&src, &mut nar).unwrap();
        let want = (Hash::digest(HashAlgo::Sha256, &nar), nar.len() as u64);
        for (k, policy) in POLICIES.into_iter().enumerate() {
            assert_eq!(hash_with(policy, &src, None).unwrap(), want, "{policy:?}");
            let dst = d.path().join(format!("dst{k}"));
            assert_eq!(hash_with(policy, &src, Some(&dst)).unwrap(), want);
            let mut back = Vec::new();
            dump_path(&dst, &mut back).unwrap();
            assert!(back == nar, "the copy differs ({policy:?})");
            for e in fs::read_dir(&dst).unwrap() {
                let m = e.unwrap().metadata().unwrap();
                assert_eq!((m.mode() & 0o7777, m.mtime()), (0o444, 1));
            }
        }
    }

    #[test]
    fn errors_name_the_path() {
        let d = tempfile::tempdir().unwrap();
        let e = hash_path(&d.path().join("missing"), HashAlgo::Sha256).unwrap_err();
        assert!(
            e.to_string().starts_with("getting status of '") && e.to_string().contains("missing"),
            "{e}"
        );
        // A file the kernel will not read: /proc/self/mem at address 0.
        let e = hash_path(Path::new("/proc/self/mem"), HashAlgo::Sha256).unwrap_err();
        let mem = Path::new("/proc/self/mem");
        assert!(
            matches!(&e, NarFsError::Io { op: "reading file", path, .. } if path == mem),
            "{e}"
        );
    }
}
