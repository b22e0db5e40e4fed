//! NARs and the filesystem: dump a tree as a NAR, hash it, and restore a NAR into a new
//! directory without ever writing outside it.
//!
//! Dumping never follows symlinks and sorts entries by the raw bytes of their names, as Nix
//! does. Restoring creates every object with `O_EXCL`-style creation (`create_new`, `mkdir`,
//! `symlink`), so an existing object, and in particular a symlink, is never written through.

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use firn_format::nar::{self, NarError, NarWriter, Visitor};
use firn_format::{Hash, HashAlgo, Hasher};
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

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> NarFsError + 'a {
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
    dump_node(path, &mut w)?;
    w.finish().map_err(wr)?;
    Ok(())
}

/// The NAR hash and NAR size of `path`.
/// Reading and hashing overlap on two threads.
pub fn hash_path(path: &Path, algo: HashAlgo) -> Result<(Hash, u64), NarFsError> {
    let ((), h, n) = crate::pipe::hash_produced(algo, |w| dump_path(path, w))?;
    Ok((h, n))
}

fn dump_node<W: Write>(path: &Path, w: &mut NarWriter<W>) -> Result<(), NarFsError> {
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
        let f = fs::File::open(path).map_err(io_err("opening file", path))?;
        let size = meta.len();
        let mut r = ExactReader {
            inner: f,
            path,
            err: None,
        };
        match w.regular(executable, size, &mut r) {
            Ok(()) => {}
            Err(NarError::SizeMismatch { .. }) => return Err(NarFsError::Changed(path.into())),
            Err(e) => {
                if let Some(e) = r.err.take() {
                    return Err(e);
                }
                return Err(wr(e));
            }
        }
    } else if ft.is_dir() {
        let mut names: Vec<Vec<u8>> = Vec::new();
        for e in fs::read_dir(path).map_err(io_err("reading directory", path))? {
            let e = e.map_err(io_err("reading directory", path))?;
            names.push(e.file_name().as_bytes().to_vec());
        }
        names.sort();
        w.begin_directory().map_err(wr)?;
        for n in names {
            let child = path.join(OsStr::from_bytes(&n));
            w.entry(&n).map_err(|source| NarFsError::Write {
                path: child.clone(),
                source,
            })?;
            dump_node(&child, w)?;
        }
        w.end_directory().map_err(wr)?;
    } else {
        return Err(NarFsError::UnsupportedType(path.to_path_buf()));
    }
    Ok(())
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

/// Restore the NAR read from `input` at `target`, which must not exist. Returns the NAR size.
pub fn restore_path(input: &mut impl Read, target: &Path) -> Result<u64, NarFsError> {
    let mut r = Restorer {
        path: target.to_path_buf(),
        pending_root: true,
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

struct Restorer {
    /// The path of the object being created next (or the directory being filled).
    path: PathBuf,
    pending_root: bool,
    err: Option<NarFsError>,
}

impl Restorer {
    fn fail(&mut self, e: NarFsError) -> NarError {
        let msg = e.to_string();
        self.err = Some(e);
        NarError::Visitor(msg)
    }
}

impl Visitor for Restorer {
    fn regular(
        &mut self,
        executable: bool,
        _size: u64,
        contents: &mut dyn Read,
    ) -> Result<(), NarError> {
        self.pending_root = false;
        let mode = if executable { 0o777 } else { 0o666 };
        let mut f = match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&self.path)
        {
            Ok(f) => f,
            Err(e) => {
                let p = self.path.clone();
                return Err(self.fail(io_err("creating file", &p)(e)));
            }
        };
        if let Err(e) = io::copy(contents, &mut f) {
            let p = self.path.clone();
            return Err(self.fail(io_err("writing file", &p)(e)));
        }
        Ok(())
    }

    fn symlink(&mut self, target: &[u8]) -> Result<(), NarError> {
        self.pending_root = false;
        if let Err(e) = std::os::unix::fs::symlink(OsStr::from_bytes(target), &self.path) {
            let p = self.path.clone();
            return Err(self.fail(io_err("creating symbolic link", &p)(e)));
        }
        Ok(())
    }

    fn directory_start(&mut self) -> Result<(), NarError> {
        self.pending_root = false;
        if let Err(e) = fs::create_dir(&self.path) {
            let p = self.path.clone();
            return Err(self.fail(io_err("creating directory", &p)(e)));
        }
        Ok(())
    }

    fn directory_end(&mut self) -> Result<(), NarError> {
        Ok(())
    }

    fn entry_start(&mut self, name: &[u8]) -> Result<(), NarError> {
        // The parser has checked the name: no '/', not '.' or '..', not empty.
        self.path.push(OsStr::from_bytes(name));
        Ok(())
    }

    fn entry_end(&mut self) -> Result<(), NarError> {
        self.path.pop();
        Ok(())
    }
}

/// Copy the tree at `src` to `dst` (which must not exist) in one pass, returning the NAR hash
/// and NAR size of `src` as it was read. Symlinks are copied, never followed. The copy is
/// already canonical (modes 0444/0555, modification time 1).
pub fn copy_path_hashed(src: &Path, dst: &Path, algo: HashAlgo) -> Result<(Hash, u64), NarFsError> {
    let ((), h, n) = crate::pipe::hash_produced(algo, |out| {
        let wr = |source| NarFsError::Write {
            path: src.to_path_buf(),
            source,
        };
        let mut w = NarWriter::new(out).map_err(wr)?;
        copy_node(src, dst, &mut w)?;
        w.finish().map_err(wr)?;
        Ok(())
    })?;
    Ok((h, n))
}

/// Access time left alone, modification time 1: what canonical store objects have.
fn store_times() -> rustix::fs::Timestamps {
    rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: 1,
            tv_nsec: 0,
        },
    }
}

fn set_store_time(p: &Path) -> Result<(), NarFsError> {
    rustix::fs::utimensat(
        rustix::fs::CWD,
        p,
        &store_times(),
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| io_err("setting the time of", p)(e.into()))
}

/// Copies what it reads into a second file.
struct TeeFile<'a> {
    src: fs::File,
    dst: fs::File,
    src_path: &'a Path,
    dst_path: &'a Path,
    err: Option<NarFsError>,
}

impl Read for TeeFile<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match self.src.read(buf) {
            Ok(n) => n,
            Err(e) => {
                let kind = e.kind();
                self.err = Some(io_err("reading file", self.src_path)(e));
                return Err(io::Error::new(kind, "read failed"));
            }
        };
        if let Err(e) = self.dst.write_all(&buf[..n]) {
            let kind = e.kind();
            self.err = Some(io_err("writing file", self.dst_path)(e));
            return Err(io::Error::new(kind, "write failed"));
        }
        Ok(n)
    }
}

fn copy_node<W: Write>(src: &Path, dst: &Path, w: &mut NarWriter<W>) -> Result<(), NarFsError> {
    let wr = |source| NarFsError::Write {
        path: src.to_path_buf(),
        source,
    };
    let meta = fs::symlink_metadata(src).map_err(io_err("getting status of", src))?;
    let ft = meta.file_type();
    if ft.is_symlink() {
        let target = fs::read_link(src).map_err(io_err("reading symbolic link", src))?;
        w.symlink(target.as_os_str().as_bytes()).map_err(wr)?;
        std::os::unix::fs::symlink(&target, dst).map_err(io_err("creating symbolic link", dst))?;
        set_store_time(dst)?;
    } else if ft.is_file() {
        let executable = meta.permissions().mode() & 0o100 != 0;
        let f = fs::File::open(src).map_err(io_err("opening file", src))?;
        // Created with the store's final mode; the timestamp is set through the descriptor,
        // so the copy needs no canonicalising walk afterwards.
        let out = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(if executable { 0o555 } else { 0o444 })
            .custom_flags(libc::O_NOFOLLOW)
            .open(dst)
            .map_err(io_err("creating file", dst))?;
        let mut tee = TeeFile {
            src: f,
            dst: out,
            src_path: src,
            dst_path: dst,
            err: None,
        };
        match w.regular(executable, meta.len(), &mut tee) {
            Ok(()) => {}
            Err(NarError::SizeMismatch { .. }) => return Err(NarFsError::Changed(src.into())),
            Err(e) => return Err(tee.err.take().unwrap_or_else(|| wr(e))),
        }
        rustix::fs::futimens(&tee.dst, &store_times())
            .map_err(|e| io_err("setting the time of", dst)(e.into()))?;
    } else if ft.is_dir() {
        fs::create_dir(dst).map_err(io_err("creating directory", dst))?;
        let mut names: Vec<Vec<u8>> = Vec::new();
        for e in fs::read_dir(src).map_err(io_err("reading directory", src))? {
            let e = e.map_err(io_err("reading directory", src))?;
            names.push(e.file_name().as_bytes().to_vec());
        }
        names.sort();
        w.begin_directory().map_err(wr)?;
        for n in names {
            let name = OsStr::from_bytes(&n);
            w.entry(&n).map_err(wr)?;
            copy_node(&src.join(name), &dst.join(name), w)?;
        }
        w.end_directory().map_err(wr)?;
        // Last, once nothing more is created in it.
        fs::set_permissions(dst, fs::Permissions::from_mode(0o555))
            .map_err(io_err("changing mode of", dst))?;
        set_store_time(dst)?;
    } else {
        return Err(NarFsError::UnsupportedType(src.to_path_buf()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn special_files_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let sock = d.path().join("s");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let e = dump_path(&sock, &mut io::sink()).unwrap_err();
        assert!(matches!(e, NarFsError::UnsupportedType(_)), "{e}");
    }
}
