//! File locks compatible with CppNix: `flock(2)` on lock files, and per-path `<path>.lock` files
//! with CppNix's protocol for stale lock files (a lock file that has been written to has been
//! unlinked by its last holder, so whoever locked it must retry).
//!
//! Waiting for a path lock that another process holds (its build of the same output) can be
//! given up: [`interrupt_path_lock_waits`] makes every wait end with
//! [`StoreError::Interrupted`], as CppNix's interrupt ends its goals' waits for locks (for
//! example when the client of `nix-store --serve` hangs up).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rustix::fs::{flock, FlockOperation};

use crate::error::{io_err, StoreError};

/// Shared (read) or exclusive (write) lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockType {
    Read,
    Write,
    Unlock,
}

/// Open (creating if needed, mode 0600) a lock file.
pub fn open_lock_file(path: &Path, create: bool) -> Result<Option<File>, StoreError> {
    let r = OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(path);
    match r {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !create => Ok(None),
        Err(e) => Err(io_err("opening lock file", path)(e)),
    }
}

/// Lock `f`; with `wait == false`, return `Ok(false)` if someone else holds it.
pub fn lock_file(f: &File, ty: LockType, wait: bool, path: &Path) -> Result<bool, StoreError> {
    let op = match (ty, wait) {
        (LockType::Read, true) => FlockOperation::LockShared,
        (LockType::Read, false) => FlockOperation::NonBlockingLockShared,
        (LockType::Write, true) => FlockOperation::LockExclusive,
        (LockType::Write, false) => FlockOperation::NonBlockingLockExclusive,
        (LockType::Unlock, _) => FlockOperation::Unlock,
    };
    loop {
        match flock(f.as_fd(), op) {
            Ok(()) => return Ok(true),
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::WOULDBLOCK) if !wait => return Ok(false),
            Err(e) => return Err(io_err("locking", path)(e.into())),
        }
    }
}

static PATH_LOCK_WAITS_INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// End every wait for a path lock in this process, now and from now on, with
/// [`StoreError::Interrupted`] (locks already held are kept until dropped). It cannot be
/// undone: the process is expected to end.
pub fn interrupt_path_lock_waits() {
    PATH_LOCK_WAITS_INTERRUPTED.store(true, Ordering::SeqCst);
}

/// The longest pause between two attempts at a lock someone else holds.
const MAX_LOCK_POLL: Duration = Duration::from_millis(200);

/// Wait for an exclusive lock on `f` that another process holds: attempts without blocking,
/// the pauses growing to [`MAX_LOCK_POLL`], so that [`interrupt_path_lock_waits`] is noticed
/// (a blocking `flock` would not return).
fn wait_for_lock(f: &File, lock_path: &Path) -> Result<(), StoreError> {
    let mut pause = Duration::from_millis(5);
    loop {
        if PATH_LOCK_WAITS_INTERRUPTED.load(Ordering::SeqCst) {
            return Err(StoreError::Interrupted {
                op: "waiting for the lock",
                path: lock_path.to_path_buf(),
            });
        }
        std::thread::sleep(pause);
        if lock_file(f, LockType::Write, false, lock_path)? {
            return Ok(());
        }
        pause = (pause * 2).min(MAX_LOCK_POLL);
    }
}

/// Exclusive locks on `<path>.lock` for a set of store paths, taken in sorted order.
pub struct PathLocks {
    held: Vec<(File, PathBuf)>,
    delete_on_release: bool,
}

impl PathLocks {
    /// Lock every path (real paths, without `.lock`), waiting as long as needed (or until
    /// [`interrupt_path_lock_waits`]).
    pub fn lock(paths: &[PathBuf]) -> Result<PathLocks, StoreError> {
        let locks = Self::take(paths, true)?;
        Ok(locks.expect("a waiting lock is always taken"))
    }

    /// Lock every path if none is held by someone else now; otherwise take none and return
    /// `None` (CppNix's `lockPaths(..., wait = false)`, after which a build reports that it
    /// waits and then waits with [`PathLocks::lock`]).
    pub fn try_lock(paths: &[PathBuf]) -> Result<Option<PathLocks>, StoreError> {
        Self::take(paths, false)
    }

    /// Lock the paths in sorted order, waiting for each if `wait`; without `wait`, `None` as
    /// soon as one is held elsewhere (those taken so far are released, not deleted, as they
    /// are dropped).
    fn take(paths: &[PathBuf], wait: bool) -> Result<Option<PathLocks>, StoreError> {
        let mut sorted: Vec<&PathBuf> = paths.iter().collect();
        sorted.sort();
        sorted.dedup();
        let mut held = Vec::new();
        for p in sorted {
            let mut lock_path = p.clone().into_os_string();
            lock_path.push(".lock");
            let lock_path = PathBuf::from(lock_path);
            loop {
                let f = open_lock_file(&lock_path, true)?.ok_or_else(|| {
                    StoreError::Other(format!("cannot create '{}'", lock_path.display()))
                })?;
                if !lock_file(&f, LockType::Write, false, &lock_path)? {
                    if !wait {
                        return Ok(None);
                    }
                    // (Quietly, as CppNix's `lockPaths` without a message: callers that
                    // report a wait use [`PathLocks::try_lock`] first.)
                    tracing::debug!("waiting for lock on '{}'", p.display());
                    wait_for_lock(&f, &lock_path)?;
                }
                let meta = f
                    .metadata()
                    .map_err(io_err("getting status of lock file", &lock_path))?;
                if meta.len() != 0 {
                    // Its last holder deleted it: lock the new file instead.
                    continue;
                }
                held.push((f, lock_path));
                break;
            }
        }
        Ok(Some(PathLocks {
            held,
            delete_on_release: false,
        }))
    }

    /// Delete the lock files when the locks are released (once the paths are valid).
    pub fn set_deletion(&mut self, delete: bool) {
        self.delete_on_release = delete;
    }
}

impl Drop for PathLocks {
    fn drop(&mut self) {
        for (mut f, path) in self.held.drain(..) {
            if self.delete_on_release {
                // Unlink first, then mark the file stale for anyone already waiting on it.
                let _ = std::fs::remove_file(&path);
                let _ = f.write_all(b"d");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn try_lock_takes_all_or_none() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let paths = [a.clone(), b.clone()];
        let held = PathLocks::try_lock(&paths)
            .unwrap()
            .expect("free locks are taken");
        // (flock locks belong to open files: a second open conflicts, even in one process.)
        assert!(PathLocks::try_lock(std::slice::from_ref(&b))
            .unwrap()
            .is_none());
        drop(held);
        let only_b = PathLocks::try_lock(std::slice::from_ref(&b))
            .unwrap()
            .unwrap();
        // `a` is free but `b` is not: nothing is kept, so `a` can be taken again.
        assert!(PathLocks::try_lock(&paths).unwrap().is_none());
        assert!(PathLocks::try_lock(std::slice::from_ref(&a))
            .unwrap()
            .is_some());
        drop(only_b);
    }
}
