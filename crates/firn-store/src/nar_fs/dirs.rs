//! Reading directories for a walk: their entries in NAR order (sorted by the bytes of their
//! names), with the type each entry says it has (so that most objects need no `stat`), read
//! with `getdents64` into buffers kept from one directory to the next.

use std::ffi::CStr;
use std::os::fd::BorrowedFd;

use rustix::fs::{FileType, OFlags, RawDir};
use rustix::io::Errno;

/// Buffer for `getdents64`.
const DENTS_BUF: usize = 64 * 1024;

/// How a directory is opened: never through a symlink.
pub(crate) const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// What a directory entry says an object is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hint {
    Regular,
    Directory,
    Symlink,
    /// Unknown or not storable: looked at with `fstatat`.
    Look,
}

impl Hint {
    fn of(t: FileType) -> Hint {
        match t {
            FileType::RegularFile => Hint::Regular,
            FileType::Directory => Hint::Directory,
            FileType::Symlink => Hint::Symlink,
            _ => Hint::Look,
        }
    }
}

/// One entry of a directory: where its name (stored with its NUL) is, and its type.
struct Entry {
    start: usize,
    len: usize,
    hint: Hint,
}

/// The entries of a directory, sorted by name.
#[derive(Default)]
pub(crate) struct Entries {
    /// The names, each followed by a NUL.
    names: Vec<u8>,
    list: Vec<Entry>,
}

impl Entries {
    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    pub(crate) fn get(&self, i: usize) -> (&CStr, Hint) {
        let e = &self.list[i];
        let name = CStr::from_bytes_with_nul(&self.names[e.start..=e.start + e.len])
            .expect("names are stored with their NUL and have none inside");
        (name, e.hint)
    }

    /// Read the directory `fd` (which must be at its start) into these buffers, `dents` being
    /// the buffer for `getdents64`.
    pub(crate) fn read(&mut self, fd: BorrowedFd<'_>, dents: &mut Vec<u8>) -> Result<(), Errno> {
        self.names.clear();
        self.list.clear();
        if dents.capacity() < DENTS_BUF {
            dents.reserve(DENTS_BUF);
        }
        let mut it = RawDir::new(fd, dents.spare_capacity_mut());
        while let Some(e) = it.next() {
            let e = e?;
            let name = e.file_name().to_bytes_with_nul();
            if name == b".\0" || name == b"..\0" {
                continue;
            }
            self.list.push(Entry {
                start: self.names.len(),
                len: name.len() - 1,
                hint: Hint::of(e.file_type()),
            });
            self.names.extend_from_slice(name);
        }
        let names = &self.names;
        self.list.sort_unstable_by(|a, b| {
            names[a.start..a.start + a.len].cmp(&names[b.start..b.start + b.len])
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fs::Mode;
    use std::ffi::OsStr;
    use std::fs;
    use std::os::fd::AsFd;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn entries_come_sorted_by_bytes_with_their_types() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        for name in [&b"b"[..], b"B", b"a", b"\xff", b"_"] {
            fs::write(root.join(OsStr::from_bytes(name)), b"").unwrap();
        }
        fs::create_dir(root.join("dir")).unwrap();
        std::os::unix::fs::symlink("a", root.join("link")).unwrap();
        let fd = rustix::fs::openat(rustix::fs::CWD, root, DIR_FLAGS, Mode::empty()).unwrap();
        let mut entries = Entries::default();
        // Twice into the same buffers: the second read starts afresh.
        for _ in 0..2 {
            rustix::fs::seek(&fd, rustix::fs::SeekFrom::Start(0)).unwrap();
            entries.read(fd.as_fd(), &mut Vec::new()).unwrap();
            let got: Vec<(Vec<u8>, Hint)> = (0..entries.len())
                .map(|i| {
                    let (n, h) = entries.get(i);
                    (n.to_bytes().to_vec(), h)
                })
                .collect();
            let want: Vec<(Vec<u8>, Hint)> = vec![
                (b"B".to_vec(), Hint::Regular),
                (b"_".to_vec(), Hint::Regular),
                (b"a".to_vec(), Hint::Regular),
                (b"b".to_vec(), Hint::Regular),
                (b"dir".to_vec(), Hint::Directory),
                (b"link".to_vec(), Hint::Symlink),
                (b"\xff".to_vec(), Hint::Regular),
            ];
            assert_eq!(got, want);
        }
    }
}
