//! A build slot's kept lower layer for the sandbox's store overlay: a directory on a tmpfs
//! (`/dev/shm`) holding one mount point per input — an empty directory or file named like the
//! store path. Made once per slot and brought in line with each build's inputs (only what
//! changed is made or removed), instead of every sandbox making one mount point per input on
//! its own tmpfs: consecutive builds share most of their inputs.
//!
//! It only ever holds empty mount points: the sandbox binds the inputs over them (in the
//! overlay, which never writes to its lower layer), and the slot changes it only between its
//! builds. It is used only where `/dev/shm` is a tmpfs, and only the caller (and the build
//! users' group, for whom the sandbox mounts it) may enter it. One left by a process that died
//! is removed when the next one is made.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::Input;

/// Why the kept lower layer could not be made or brought in line.
#[derive(Debug, Error)]
#[error("{op} '{path}': {source}")]
pub struct LowerError {
    op: &'static str,
    path: PathBuf,
    source: std::io::Error,
}

fn err(op: &'static str, path: &Path) -> LowerError {
    LowerError {
        op,
        path: path.to_path_buf(),
        source: std::io::Error::last_os_error(),
    }
}

/// `statfs(2)`'s `f_type` of a tmpfs.
const TMPFS_MAGIC: i64 = 0x0102_1994;

/// A slot's kept lower layer (deleted when dropped).
pub struct LowerDir {
    path: PathBuf,
    dir: OwnedFd,
    /// What it holds: name → is a directory.
    entries: HashMap<String, bool>,
}

impl LowerDir {
    /// Make one for slot `slot` in `/dev/shm`; None where that is not a tmpfs. `group`: the
    /// build users' group, which must be able to enter it (else only the caller can).
    pub fn create(slot: usize, group: Option<u32>) -> Result<Option<LowerDir>, LowerError> {
        let shm = Path::new("/dev/shm");
        // SAFETY: statfs fills the struct; the path is NUL-terminated.
        let is_tmpfs = unsafe {
            let mut st: libc::statfs = std::mem::zeroed();
            libc::statfs(c"/dev/shm".as_ptr(), &mut st) == 0 && st.f_type as i64 == TMPFS_MAGIC
        };
        if !is_tmpfs {
            return Ok(None);
        }
        remove_stale(shm);
        let mode = if group.is_some() { 0o750 } else { 0o700 };
        for n in 0u32.. {
            let path = shm.join(format!("firn-sandbox-{}-{slot}-{n}", std::process::id()));
            let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| err("naming", &path))?;
            // SAFETY: NUL-terminated path.
            if unsafe { libc::mkdir(c.as_ptr(), mode) } == -1 {
                if std::io::Error::last_os_error().raw_os_error() == Some(libc::EEXIST) {
                    continue;
                }
                return Err(err("creating directory", &path));
            }
            // SAFETY: as above; the descriptor is new and owned here.
            let fd = unsafe {
                libc::open(
                    c.as_ptr(),
                    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                )
            };
            if fd == -1 {
                let e = err("opening", &path);
                // SAFETY: removing the directory just made.
                unsafe { libc::rmdir(c.as_ptr()) };
                return Err(e);
            }
            // SAFETY: see above.
            let dir = unsafe { OwnedFd::from_raw_fd(fd) };
            let lower = LowerDir {
                path,
                dir,
                entries: HashMap::new(),
            };
            if let Some(gid) = group {
                // SAFETY: fchown/fchmod of our directory.
                unsafe {
                    if libc::fchown(lower.dir.as_raw_fd(), 0, gid) == -1
                        || libc::fchmod(lower.dir.as_raw_fd(), mode) == -1
                    {
                        return Err(err("changing the owner of", &lower.path));
                    }
                }
            }
            return Ok(Some(lower));
        }
        Err(err("finding a free name in", shm))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Make it hold exactly the mount points of `inputs`.
    pub fn sync(&mut self, inputs: &[Input]) -> Result<(), LowerError> {
        let wanted: HashMap<&str, bool> =
            inputs.iter().map(|i| (i.name.as_str(), i.is_dir)).collect();
        let stale: Vec<(String, bool)> = self
            .entries
            .iter()
            .filter(|(name, is_dir)| wanted.get(name.as_str()) != Some(*is_dir))
            .map(|(n, d)| (n.clone(), *d))
            .collect();
        let fd = self.dir.as_raw_fd();
        for (name, is_dir) in stale {
            let c = self.c_name(&name)?;
            let flags = if is_dir { libc::AT_REMOVEDIR } else { 0 };
            // SAFETY: removing an entry of our directory.
            if unsafe { libc::unlinkat(fd, c.as_ptr(), flags) } == -1
                && std::io::Error::last_os_error().raw_os_error() != Some(libc::ENOENT)
            {
                return Err(err("removing a mount point in", &self.path));
            }
            self.entries.remove(&name);
        }
        for (name, is_dir) in wanted {
            if self.entries.contains_key(name) {
                continue;
            }
            let c = self.c_name(name)?;
            // SAFETY: making an entry in our directory.
            let r = unsafe {
                if is_dir {
                    libc::mkdirat(fd, c.as_ptr(), 0o755)
                } else {
                    libc::mknodat(fd, c.as_ptr(), libc::S_IFREG | 0o644, 0)
                }
            };
            if r == -1 {
                return Err(err("making a mount point in", &self.path));
            }
            self.entries.insert(name.to_string(), is_dir);
        }
        Ok(())
    }

    fn c_name(&self, name: &str) -> Result<CString, LowerError> {
        if name.contains('/') || name == "." || name == ".." {
            return Err(LowerError {
                op: "making a mount point in",
                path: self.path.clone(),
                source: std::io::Error::from_raw_os_error(libc::EINVAL),
            });
        }
        CString::new(name).map_err(|_| LowerError {
            op: "making a mount point in",
            path: self.path.clone(),
            source: std::io::Error::from_raw_os_error(libc::EINVAL),
        })
    }
}

/// Remove the lower layers a process of the caller left when it died without dropping them.
fn remove_stale(shm: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(shm) else {
        return;
    };
    // SAFETY: a plain getter.
    let me = unsafe { libc::geteuid() };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("firn-sandbox-"))
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        // SAFETY: signal 0 only checks whether the process exists.
        let gone = pid > 0
            && unsafe { libc::kill(pid, 0) } == -1
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        let ours = e.metadata().map(|m| m.uid() == me).unwrap_or(false);
        if gone && ours {
            let _ = firn_store::canon::delete_path(&e.path());
        }
    }
}

impl Drop for LowerDir {
    fn drop(&mut self) {
        let _ = firn_store::canon::delete_path(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_exactly_the_inputs() {
        let Ok(Some(mut l)) = LowerDir::create(999, None) else {
            return; // no tmpfs at /dev/shm here
        };
        let input = |name: &str, is_dir| Input {
            name: name.to_string(),
            is_dir,
        };
        let list = |l: &LowerDir| {
            let mut v: Vec<(String, bool)> = std::fs::read_dir(l.path())
                .expect("read")
                .map(|e| {
                    let e = e.expect("entry");
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        e.file_type().expect("type").is_dir(),
                    )
                })
                .collect();
            v.sort();
            v
        };
        l.sync(&[input("a", true), input("b", false)])
            .expect("sync");
        assert_eq!(list(&l), vec![("a".into(), true), ("b".into(), false)]);
        l.sync(&[input("b", false), input("c", true)])
            .expect("sync");
        assert_eq!(list(&l), vec![("b".into(), false), ("c".into(), true)]);
        // A name whose type changed is made again.
        l.sync(&[input("c", false)]).expect("sync");
        assert_eq!(list(&l), vec![("c".into(), false)]);
        assert!(l.sync(&[input("../x", false)]).is_err());
        let path = l.path().to_path_buf();
        drop(l);
        assert!(!path.exists());
    }
}
