//! NARs and the filesystem: dump a tree as a NAR, hash it, and restore a NAR into a new
//! directory without ever writing outside it.
//!
//! Dumping never follows symlinks and sorts entries by the raw bytes of their names, as Nix
//! does; a regular file is executable in the NAR when its owner may execute it (`S_IXUSR`), as
//! in CppNix. Restoring is in [`restore`], the one-pass copy the store uses to add trees in
//! [`copy`].

mod copy;
mod restore;

pub use copy::copy_path_hashed;
pub use restore::{restore_path, restore_path_hashed, TeeHash};

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use firn_format::nar::{NarError, NarWriter};
use firn_format::{Hash, HashAlgo};
use thiserror::Error;

/// Errors from dumping or restoring, naming the path involved.
#[derive(Debug, Error)]
pub enum NarFsError {
    #[error("{op} '{path}': {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("file '{0}' has an unsupported type (only regular files, directories and symlinks can be stored)")]
    UnsupportedType(PathBuf),
    #[error("file '{0}' changed size while it was being read")]
    Changed(PathBuf),
    #[error("restoring into '{path}': {source}")]
    Restore {
        path: PathBuf,
        #[source]
        source: NarError,
    },
    #[error("writing NAR of '{path}': {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: NarError,
    },
}

pub(crate) fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> NarFsError + 'a {
    move |source| NarFsError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Serialise the file, directory or symlink at `path` as a NAR into `out`.
pub fn dump_path(path: &Path, out: &mut impl Write) -> Result<(), NarFsError> {
    let wr = |source| NarFsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut w = NarWriter::new(out).map_err(wr)?;
    dump_tree(path, &mut w, None)?;
    w.finish().map_err(wr)?;
    Ok(())
}

/// Decides whether an entry (its path and type) goes into a NAR being dumped.
pub type KeepFn<'a> = &'a mut dyn FnMut(&Path, fs::FileType) -> bool;

/// [`dump_path`], leaving out every entry below `path` for which `keep(entry, type)` is false
/// (a directory left out is not entered). This is how `builtins.path`'s `filter` works.
pub fn dump_path_filtered(
    path: &Path,
    out: &mut impl Write,
    keep: KeepFn<'_>,
) -> Result<(), NarFsError> {
    let wr = |source| NarFsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut w = NarWriter::new(out).map_err(wr)?;
    dump_tree(path, &mut w, Some(keep))?;
    w.finish().map_err(wr)?;
    Ok(())
}

/// The NAR hash and NAR size of `path`.
/// Reading and hashing overlap on two threads.
pub fn hash_path(path: &Path, algo: HashAlgo) -> Result<(Hash, u64), NarFsError> {
    let ((), h, n) = crate::pipe::hash_produced(algo, |w| dump_path(path, w))?;
    Ok((h, n))
}

/// The names in directory `path`, sorted by their bytes.
pub(crate) fn sorted_names(path: &Path) -> Result<Vec<Vec<u8>>, NarFsError> {
    let mut names: Vec<Vec<u8>> = Vec::new();
    for e in fs::read_dir(path).map_err(io_err("reading directory", path))? {
        let e = e.map_err(io_err("reading directory", path))?;
        names.push(e.file_name().as_bytes().to_vec());
    }
    names.sort_unstable();
    Ok(names)
}

/// A directory being walked: its path and the names still to visit, in order.
struct Pending {
    path: PathBuf,
    names: std::vec::IntoIter<Vec<u8>>,
}

/// Dump the tree at `root`, depth first with an explicit stack (deep trees cannot overflow the
/// Rust stack; the writer stops them at `MAX_DEPTH`).
fn dump_tree<W: Write>(
    root: &Path,
    w: &mut NarWriter<W>,
    mut keep: Option<KeepFn<'_>>,
) -> Result<(), NarFsError> {
    let mut stack: Vec<Pending> = Vec::new();
    let mut next = root.to_path_buf();
    loop {
        if let Some(names) = dump_one(&next, w)? {
            stack.push(Pending {
                path: next,
                names: names.into_iter(),
            });
        }
        // Find the next object: the next entry of the innermost unfinished directory.
        loop {
            let Some(top) = stack.last_mut() else {
                return Ok(());
            };
            match top.names.next() {
                Some(n) => {
                    let child = top.path.join(OsStr::from_bytes(&n));
                    if let Some(keep) = keep.as_mut() {
                        let ft = fs::symlink_metadata(&child)
                            .map_err(io_err("getting status of", &child))?
                            .file_type();
                        if !keep(&child, ft) {
                            continue;
                        }
                    }
                    w.entry(&n).map_err(|source| NarFsError::Write {
                        path: child.clone(),
                        source,
                    })?;
                    next = child;
                    break;
                }
                None => {
                    let done = stack.pop().expect("the stack has a top: just looked at it");
                    w.end_directory().map_err(|source| NarFsError::Write {
                        path: done.path,
                        source,
                    })?;
                }
            }
        }
    }
}

/// Write the node at `path`; for a directory, only open it and return its sorted names.
fn dump_one<W: Write>(
    path: &Path,
    w: &mut NarWriter<W>,
) -> Result<Option<Vec<Vec<u8>>>, NarFsError> {
    let wr = |source| NarFsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let meta = fs::symlink_metadata(path).map_err(io_err("getting status of", path))?;
    let ft = meta.file_type();
    if ft.is_symlink() {
        let target = fs::read_link(path).map_err(io_err("reading symbolic link", path))?;
        w.symlink(target.as_os_str().as_bytes()).map_err(wr)?;
    } else if ft.is_file() {
        let executable = meta.permissions().mode() & 0o100 != 0;
        // Not following a symlink that replaced the file since it was examined.
        let f = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(io_err("opening file", path))?;
        let size = meta.len();
        let mut r = ExactReader {
            inner: f,
            path,
            err: None,
        };
        match w.regular(executable, size, &mut r) {
            Ok(()) => {}
            Err(NarError::SizeMismatch { .. }) => return Err(NarFsError::Changed(path.into())),
            Err(e) => return Err(r.err.take().unwrap_or_else(|| wr(e))),
        }
    } else if ft.is_dir() {
        let names = sorted_names(path)?;
        w.begin_directory().map_err(wr)?;
        return Ok(Some(names));
    } else {
        return Err(NarFsError::UnsupportedType(path.to_path_buf()));
    }
    Ok(None)
}

/// Reads a file, keeping the real IO error (with the path) for the caller.
struct ExactReader<'a> {
    inner: fs::File,
    path: &'a Path,
    err: Option<NarFsError>,
}

impl Read for ExactReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => Ok(n),
            Err(e) => {
                let kind = e.kind();
                self.err = Some(NarFsError::Io {
                    op: "reading file",
                    path: self.path.to_path_buf(),
                    source: e,
                });
                Err(io::Error::new(kind, "read failed"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use firn_format::nar;

    #[test]
    fn dump_restore_roundtrip() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        fs::create_dir(&src).unwrap();
        fs::write(src.join("b"), b"bee").unwrap();
        fs::write(src.join("x"), b"#!/bin/sh\n").unwrap();
        fs::set_permissions(src.join("x"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::create_dir(src.join("empty")).unwrap();
        std::os::unix::fs::symlink("b", src.join("link")).unwrap();
        let mut nar = Vec::new();
        dump_path(&src, &mut nar).unwrap();
        let dst = d.path().join("dst");
        let (h, n) = restore_path_hashed(&mut &nar[..], &dst, HashAlgo::Sha256).unwrap();
        assert_eq!(n, nar.len() as u64);
        assert_eq!(h, Hash::digest(HashAlgo::Sha256, &nar));
        let mut nar2 = Vec::new();
        dump_path(&dst, &mut nar2).unwrap();
        assert_eq!(nar, nar2);
        assert_eq!(hash_path(&dst, HashAlgo::Sha256).unwrap(), (h, n));
        // The target must not exist.
        assert!(restore_path(&mut &nar[..], &dst).is_err());
    }

    #[test]
    fn trees_deeper_than_the_limit_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let mut p = d.path().join("top");
        for _ in 0..nar::MAX_DEPTH {
            p.push("d");
        }
        fs::create_dir_all(&p).unwrap();
        // At the limit: fine, and restores back.
        let top = d.path().join("top");
        let (h, n) = hash_path(&top, HashAlgo::Sha256).unwrap();
        let mut bytes = Vec::new();
        dump_path(&top, &mut bytes).unwrap();
        assert_eq!(n, bytes.len() as u64);
        let back = d.path().join("back");
        assert_eq!(
            restore_path_hashed(&mut &bytes[..], &back, HashAlgo::Sha256).unwrap(),
            (h, n)
        );
        // One more level: an error, not a crash.
        fs::create_dir(p.join("d")).unwrap();
        let e = dump_path(&top, &mut io::sink()).unwrap_err();
        assert!(
            matches!(
                e,
                NarFsError::Write {
                    source: NarError::TooDeep(_),
                    ..
                }
            ),
            "{e}"
        );
        assert!(hash_path(&top, HashAlgo::Sha256).is_err());
    }

    #[test]
    fn special_files_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let sock = d.path().join("s");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let e = dump_path(&sock, &mut io::sink()).unwrap_err();
        assert!(matches!(e, NarFsError::UnsupportedType(_)), "{e}");
    }
}
