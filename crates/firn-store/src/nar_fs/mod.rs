//! NARs and the filesystem: dump a tree as a NAR, hash it, and restore a NAR into a new
//! directory without ever writing outside it.
//!
//! Dumping never follows symlinks and sorts entries by the raw bytes of their names, as Nix
//! does; a regular file is executable in the NAR when its owner may execute it (`S_IXUSR`), as
//! in CppNix. Dumping, hashing and the one-pass copy the store uses to add trees ([`copy`]) share
//! one walk ([`walk`]) that writes into a [`sink`]; restoring is in [`restore`].

mod copy;
mod dirs;
pub(crate) mod place;
mod restore;
pub(crate) mod sink;
mod walk;

pub(crate) use walk::hash_given_file;

pub use copy::copy_path_hashed;
pub use restore::{restore_path, restore_path_hashed, TeeHash};

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use firn_format::nar::NarError;
use firn_format::{Hash, HashAlgo};
use thiserror::Error;

use sink::Plain;

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

/// Access time left alone, modification time 1: what canonical store objects have.
pub(crate) fn store_times() -> rustix::fs::Timestamps {
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

/// Serialise the file, directory or symlink at `path` as a NAR into `out`.
pub fn dump_path(path: &Path, out: &mut impl Write) -> Result<(), NarFsError> {
    walk::walk(path, &mut Plain::new(out), None, None)
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
    walk::walk(path, &mut Plain::new(out), Some(keep), None)
}

/// The NAR hash and NAR size of `path`.
/// Reading and hashing overlap on two threads.
pub fn hash_path(path: &Path, algo: HashAlgo) -> Result<(Hash, u64), NarFsError> {
    let ((), h, n) = crate::pipe::hash_produced(algo, |w| walk::walk(path, w, None, None))?;
    Ok((h, n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use firn_format::nar;
    use std::os::unix::fs::PermissionsExt;

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
