//! Deleting store entries quickly: directory file descriptors and `*at` calls instead of full
//! paths, bytes freed counted as CppNix counts them (a file with one or two links frees its
//! size), and the cleanup of `.links` and of junk that is not a store path.

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{chmodat, openat, statat, unlinkat, AtFlags, Dir, FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::error::{Result, StoreError};

fn err(op: &'static str, path: &Path, e: Errno) -> StoreError {
    StoreError::Io {
        op,
        path: path.to_path_buf(),
        source: e.into(),
    }
}

/// Open a directory for reading (and for use as the base of `*at` calls).
pub(super) fn open_dir(dirfd: BorrowedFd<'_>, name: &OsStr, path: &Path) -> Result<OwnedFd> {
    openat(
        dirfd,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| err("opening directory", path, e))
}

/// Names in a directory, without `.` and `..`.
pub(super) fn list(fd: BorrowedFd<'_>, path: &Path) -> Result<Vec<(Vec<u8>, FileType)>> {
    let mut dir = Dir::read_from(fd).map_err(|e| err("reading directory", path, e))?;
    let mut names = Vec::new();
    while let Some(e) = dir.read() {
        let e = e.map_err(|e| err("reading directory", path, e))?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push((n.to_vec(), e.file_type()));
        }
    }
    Ok(names)
}

/// Delete `name` in the directory `dirfd` (whose path is `path`'s parent) and everything
/// below it; returns the bytes freed. A missing entry frees nothing.
pub(super) fn delete_entry(dirfd: BorrowedFd<'_>, name: &OsStr, path: &mut PathBuf) -> Result<u64> {
    let st = match statat(dirfd, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(0),
        Err(e) => return Err(err("getting status of", path, e)),
    };
    let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
    let mut freed = 0u64;
    if is_dir {
        if st.st_mode & 0o700 != 0o700 {
            chmodat(
                dirfd,
                name,
                Mode::from_raw_mode((st.st_mode & 0o7777) | 0o700),
                AtFlags::empty(),
            )
            .map_err(|e| err("making writable", path, e))?;
        }
        let fd = open_dir(dirfd, name, path)?;
        for (child, _) in list(fd.as_fd(), path)? {
            let child = OsStr::from_bytes(&child);
            path.push(child);
            let r = delete_entry(fd.as_fd(), child, path);
            path.pop();
            freed += r?;
        }
    } else if st.st_nlink <= 2 {
        // One link: the last. Two: probably the other is in `.links`, which the collector
        // removes at the end (CppNix counts it here, and so do we).
        freed += st.st_size.max(0) as u64;
    }
    let flags = if is_dir {
        AtFlags::REMOVEDIR
    } else {
        AtFlags::empty()
    };
    match unlinkat(dirfd, name, flags) {
        Ok(()) | Err(Errno::NOENT) => Ok(freed),
        Err(e) => Err(err("deleting", path, e)),
    }
}

/// Delete the store entries `names` (in the directory `dir_fd`, whose path is `dir`) and
/// return the bytes freed. Several threads share the work: most of the time goes to the
/// kernel, and paths with many files gain from it.
pub(super) fn delete_entries(dir_fd: BorrowedFd<'_>, dir: &Path, names: &[&str]) -> Result<u64> {
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, 4)
        .min(names.len().div_ceil(32).max(1));
    if threads <= 1 {
        let mut freed = 0;
        for n in names {
            freed += delete_entry(dir_fd, OsStr::new(n), &mut dir.join(n))?;
        }
        return Ok(freed);
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let work = || -> Result<u64> {
        let mut freed = 0;
        loop {
            let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(n) = names.get(k) else {
                return Ok(freed);
            };
            freed += delete_entry(dir_fd, OsStr::new(n), &mut dir.join(n))?;
        }
    };
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads).map(|_| scope.spawn(work)).collect();
        let mut freed = 0;
        let mut first_err = None;
        for h in handles {
            match h.join() {
                Ok(Ok(n)) => freed += n,
                Ok(Err(e)) => {
                    first_err.get_or_insert(e);
                }
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(freed),
        }
    })
}

/// Remove every file in `.links` that nothing else links to any more (link count 1).
/// Returns the bytes that hard linking saves now, as CppNix reports it after a collection.
pub(super) fn delete_unused_links(links_dir: &Path) -> Result<i64> {
    let fd = match openat(
        rustix::fs::CWD,
        links_dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(0),
        Err(e) => return Err(err("opening directory", links_dir, e)),
    };
    let (mut actual, mut unshared) = (0i64, 0i64);
    for (name, _) in list(fd.as_fd(), links_dir)? {
        let name = OsStr::from_bytes(&name);
        let st = match statat(fd.as_fd(), name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => continue,
            Err(e) => return Err(err("getting status of", &links_dir.join(name), e)),
        };
        if st.st_nlink != 1 {
            actual += st.st_size;
            unshared += (st.st_nlink as i64 - 1) * st.st_size;
            continue;
        }
        match unlinkat(fd.as_fd(), name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => return Err(err("deleting", &links_dir.join(name), e)),
        }
    }
    let overhead = rustix::fs::fstat(&fd)
        .map(|st| st.st_blocks * 512)
        .unwrap_or(0);
    Ok(unshared - actual - overhead)
}

/// Is a store entry that is not a store path a temporary directory still in use? Recognised:
/// newer CppNix's `tmp-*` (locked while in use), and `add-<pid>-*` (CppNix 2.8 and firn's
/// staging directories) and `.tmp-link-<pid>-*` (the optimiser's) of a live process.
pub(super) fn temp_entry_in_use(store_fd: BorrowedFd<'_>, name: &[u8]) -> bool {
    if name.starts_with(b"tmp-") {
        let Ok(fd) = openat(
            store_fd,
            OsStr::from_bytes(name),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) else {
            return false;
        };
        return rustix::fs::flock(&fd, rustix::fs::FlockOperation::NonBlockingLockExclusive)
            .is_err();
    }
    let rest = name
        .strip_prefix(b"add-")
        .or_else(|| name.strip_prefix(b".tmp-link-"));
    let Some(rest) = rest else {
        return false;
    };
    let digits: Vec<u8> = rest
        .iter()
        .copied()
        .take_while(u8::is_ascii_digit)
        .collect();
    match std::str::from_utf8(&digits)
        .ok()
        .and_then(|d| d.parse::<i32>().ok())
    {
        Some(pid) if pid > 0 => process_alive(pid),
        _ => false,
    }
}

fn process_alive(pid: i32) -> bool {
    // Signal 0 checks existence; EPERM means it exists but belongs to someone else.
    // SAFETY: kill with signal 0 sends nothing.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn deletes_read_only_trees_and_counts_bytes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let top = dir.path().join("x");
        std::fs::create_dir_all(top.join("sub")).expect("mkdir");
        std::fs::write(top.join("a"), b"12345").expect("write");
        std::fs::write(top.join("sub/b"), b"123").expect("write");
        std::fs::write(top.join("sub/c"), b"1234567").expect("write");
        // c has three links: deleting one of them frees nothing.
        std::fs::hard_link(top.join("sub/c"), dir.path().join("c2")).expect("link");
        std::fs::hard_link(top.join("sub/c"), dir.path().join("c3")).expect("link");
        std::os::unix::fs::symlink("target", top.join("l")).expect("symlink");
        for d in [top.join("sub"), top.clone()] {
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o555)).expect("chmod");
        }
        let base = open_dir(rustix::fs::CWD, dir.path().as_os_str(), dir.path()).expect("open");
        let freed = delete_entry(base.as_fd(), OsStr::new("x"), &mut top.clone()).expect("delete");
        assert_eq!(freed, 5 + 3 + "target".len() as u64);
        assert!(!top.exists());
        let again = delete_entry(base.as_fd(), OsStr::new("x"), &mut top.clone()).expect("delete");
        assert_eq!(again, 0);
    }

    #[test]
    fn unused_links_are_removed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let links = dir.path().join(".links");
        std::fs::create_dir(&links).expect("mkdir");
        std::fs::write(links.join("lonely"), b"x").expect("write");
        std::fs::write(links.join("shared"), b"xy").expect("write");
        std::fs::hard_link(links.join("shared"), dir.path().join("user")).expect("link");
        delete_unused_links(&links).expect("cleanup");
        assert!(!links.join("lonely").exists());
        assert!(links.join("shared").exists());
    }

    #[test]
    fn temp_entries_of_live_processes_are_in_use() {
        let dir = tempfile::tempdir().expect("temp dir");
        let fd = open_dir(rustix::fs::CWD, dir.path().as_os_str(), dir.path()).expect("open");
        let me = std::process::id();
        assert!(temp_entry_in_use(
            fd.as_fd(),
            format!("add-{me}-0").as_bytes()
        ));
        assert!(temp_entry_in_use(
            fd.as_fd(),
            format!(".tmp-link-{me}-9").as_bytes()
        ));
        // No process has pid 2^22 + 1 (above Linux's maximum pid).
        assert!(!temp_entry_in_use(fd.as_fd(), b"add-4194305-0"));
        assert!(!temp_entry_in_use(fd.as_fd(), b"whatever"));
        std::fs::create_dir(dir.path().join("tmp-1")).expect("mkdir");
        assert!(!temp_entry_in_use(fd.as_fd(), b"tmp-1"));
        let held = std::fs::File::open(dir.path().join("tmp-1")).expect("open");
        rustix::fs::flock(&held, rustix::fs::FlockOperation::LockExclusive).expect("lock");
        assert!(temp_entry_in_use(fd.as_fd(), b"tmp-1"));
    }
}
