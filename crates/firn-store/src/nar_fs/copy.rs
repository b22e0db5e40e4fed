//! Copying a tree into the store while hashing its NAR, in one pass: the copy is created
//! already canonical, so adding a path needs no second walk.

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use firn_format::nar::{NarError, NarWriter};
use firn_format::{Hash, HashAlgo};

use super::{io_err, sorted_names, NarFsError};

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
        copy_tree(src, dst, &mut w)?;
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

/// A directory being copied: both paths and the names still to visit, in order.
struct Pending {
    src: PathBuf,
    dst: PathBuf,
    names: std::vec::IntoIter<Vec<u8>>,
}

/// Copy the tree depth first with an explicit stack, as `dump_tree` walks it.
fn copy_tree<W: Write>(src: &Path, dst: &Path, w: &mut NarWriter<W>) -> Result<(), NarFsError> {
    let mut stack: Vec<Pending> = Vec::new();
    let (mut src, mut dst) = (src.to_path_buf(), dst.to_path_buf());
    loop {
        if let Some(names) = copy_one(&src, &dst, w)? {
            stack.push(Pending {
                src,
                dst,
                names: names.into_iter(),
            });
        }
        loop {
            let Some(top) = stack.last_mut() else {
                return Ok(());
            };
            match top.names.next() {
                Some(n) => {
                    let name = OsStr::from_bytes(&n);
                    w.entry(&n).map_err(|source| NarFsError::Write {
                        path: top.src.clone(),
                        source,
                    })?;
                    src = top.src.join(name);
                    dst = top.dst.join(name);
                    break;
                }
                None => {
                    let done = stack.pop().expect("the stack has a top: just looked at it");
                    w.end_directory().map_err(|source| NarFsError::Write {
                        path: done.src.clone(),
                        source,
                    })?;
                    // Last, once nothing more is created in it.
                    fs::set_permissions(&done.dst, fs::Permissions::from_mode(0o555))
                        .map_err(io_err("changing mode of", &done.dst))?;
                    set_store_time(&done.dst)?;
                }
            }
        }
    }
}

/// Copy and write the node at `src`; for a directory, only create and open it and return its
/// sorted names.
fn copy_one<W: Write>(
    src: &Path,
    dst: &Path,
    w: &mut NarWriter<W>,
) -> Result<Option<Vec<Vec<u8>>>, NarFsError> {
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
        let f = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(src)
            .map_err(io_err("opening file", src))?;
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
        let names = sorted_names(src)?;
        w.begin_directory().map_err(wr)?;
        fs::create_dir(dst).map_err(io_err("creating directory", dst))?;
        return Ok(Some(names));
    } else {
        return Err(NarFsError::UnsupportedType(src.to_path_buf()));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn copy_is_canonical_and_hashes_the_source() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        fs::create_dir_all(src.join("sub/deeper")).unwrap();
        fs::write(src.join("sub/f"), b"file").unwrap();
        fs::write(src.join("x"), b"#!").unwrap();
        fs::set_permissions(src.join("x"), fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::symlink("sub/f", src.join("l")).unwrap();
        let dst = d.path().join("dst");
        let (h, n) = copy_path_hashed(&src, &dst, HashAlgo::Sha256).unwrap();
        assert_eq!(
            (h, n),
            super::super::hash_path(&src, HashAlgo::Sha256).unwrap()
        );
        let (mut a, mut b) = (Vec::new(), Vec::new());
        super::super::dump_path(&src, &mut a).unwrap();
        super::super::dump_path(&dst, &mut b).unwrap();
        assert_eq!(a, b);
        for (p, mode) in [
            ("", 0o555),
            ("sub", 0o555),
            ("sub/deeper", 0o555),
            ("sub/f", 0o444),
            ("x", 0o555),
        ] {
            let m = fs::symlink_metadata(dst.join(p)).unwrap();
            assert_eq!(m.mode() & 0o7777, mode, "mode of {p:?}");
            assert_eq!(m.mtime(), 1, "time of {p:?}");
        }
        assert_eq!(fs::symlink_metadata(dst.join("l")).unwrap().mtime(), 1);
        // The destination must not exist.
        assert!(copy_path_hashed(&src, &dst, HashAlgo::Sha256).is_err());
    }
}
