//! Canonicalising new store objects as Nix does: permissions 0444 (0555 when executable or a
//! directory), modification time 1 (one second into the epoch), no setuid/setgid/sticky bits.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use rustix::fs::{utimensat, AtFlags, Timespec, Timestamps, CWD};

use crate::error::{io_err, Result, StoreError};

/// Modification time of everything in the store.
pub const MTIME_STORE: i64 = 1;

/// Canonicalise `path` and everything below it.
pub fn canonicalise(path: &Path) -> Result<()> {
    let meta = fs::symlink_metadata(path).map_err(io_err("getting status of", path))?;
    let ft = meta.file_type();
    if !(ft.is_file() || ft.is_dir() || ft.is_symlink()) {
        return Err(StoreError::Other(format!(
            "file '{}' has an unsupported type",
            path.display()
        )));
    }
    if ft.is_dir() {
        for e in fs::read_dir(path).map_err(io_err("reading directory", path))? {
            let e = e.map_err(io_err("reading directory", path))?;
            canonicalise(&e.path())?;
        }
    }
    canonicalise_top(path)
}

/// Canonicalise only `path` itself, not what is below it.
pub fn canonicalise_top(path: &Path) -> Result<()> {
    let meta = fs::symlink_metadata(path).map_err(io_err("getting status of", path))?;
    if !meta.file_type().is_symlink() {
        let mode = meta.mode() & 0o7777;
        if mode != 0o444 && mode != 0o555 {
            let new = 0o444 | if mode & 0o100 != 0 { 0o111 } else { 0 };
            fs::set_permissions(path, fs::Permissions::from_mode(new))
                .map_err(io_err("changing mode of", path))?;
        }
    }
    if meta.mtime() != MTIME_STORE {
        canonicalise_times(path)?;
    }
    Ok(())
}

/// Make a (canonicalised, read-only) tree writable again so it can be deleted or replaced.
pub fn make_writable(path: &Path) -> Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("getting status of", path)(e)),
    };
    if meta.file_type().is_dir() && meta.mode() & 0o700 != 0o700 {
        fs::set_permissions(
            path,
            fs::Permissions::from_mode((meta.mode() & 0o7777) | 0o700),
        )
        .map_err(io_err("changing mode of", path))?;
    }
    Ok(())
}

/// Delete a file or tree (making directories writable as needed); returns the bytes freed,
/// counted as CppNix counts them (files with one or two links).
pub fn delete_path(path: &Path) -> Result<u64> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_err("getting status of", path)(e)),
    };
    let mut freed = 0;
    if meta.file_type().is_dir() {
        make_writable(path)?;
        for e in fs::read_dir(path).map_err(io_err("reading directory", path))? {
            let e = e.map_err(io_err("reading directory", path))?;
            freed += delete_path(&e.path())?;
        }
        match fs::remove_dir(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("deleting directory", path)(e)),
        }
    } else {
        if meta.nlink() <= 2 {
            freed += meta.len();
        }
        match fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("deleting", path)(e)),
        }
    }
    Ok(freed)
}

/// Reset only the modification time of `path` to the store's.
pub fn canonicalise_times(path: &Path) -> Result<()> {
    let meta = fs::symlink_metadata(path).map_err(io_err("getting status of", path))?;
    let times = Timestamps {
        last_access: Timespec {
            tv_sec: meta.atime(),
            tv_nsec: 0,
        },
        last_modification: Timespec {
            tv_sec: MTIME_STORE,
            tv_nsec: 0,
        },
    };
    utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| io_err("changing modification time of", path)(e.into()))
}
