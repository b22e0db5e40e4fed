//! Temporary GC roots: each process that adds paths lists them in `temproots/<pid>`, a file it
//! holds write-locked while it lives, so a garbage collector (firn's or CppNix's) never deletes
//! a path that is being added. While a GC runs (it holds `gc.lock` exclusively), new roots are
//! also sent to it over the socket `gc-socket/socket` and acknowledged with `1`.
//!
//! The shared lock on `gc.lock` is held from the check until the root is written to our file,
//! so a collector either starts before the check (and hears about the root on its socket) or
//! after the write (and reads it from the file).

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use firn_format::StorePath;

use crate::error::{io_err, Result, StoreError};
use crate::local::LocalStore;
use crate::lock::{lock_file, open_lock_file, LockType};

/// This process's temp-roots file, the GC lock file and a connection to a running GC.
#[derive(Default)]
pub struct TempRootsState {
    file: Option<File>,
    gc_lock: Option<File>,
    socket: Option<UnixStream>,
}

/// Releases a shared lock on `gc.lock` when dropped.
struct SharedGcLock<'a>(&'a File, &'a Path);

impl Drop for SharedGcLock<'_> {
    fn drop(&mut self) {
        let _ = lock_file(self.0, LockType::Unlock, false, self.1);
    }
}

/// Open and write-lock a fresh temp-roots file for this process. Its name is the pid (what
/// CppNix uses and parses); if another store object in this same process already holds that
/// file, `<pid>-<n>` is used instead (CppNix reads the leading number of the name).
fn create_temp_roots_file(dir: &Path) -> Result<File> {
    let pid = std::process::id();
    for n in 0u32..u32::MAX {
        let fname: PathBuf = if n == 0 {
            dir.join(pid.to_string())
        } else {
            dir.join(format!("{pid}-{n}"))
        };
        // An existing file with our pid is stale, unless another store object of this
        // process holds it (flock locks belong to open files, so we would not get it).
        if let Some(old) = open_lock_file(&fname, false)? {
            if !lock_file(&old, LockType::Write, false, &fname)? {
                continue;
            }
            let _ = std::fs::remove_file(&fname);
            let _ = (&old).write_all(b"d");
        }
        loop {
            let f = open_lock_file(&fname, true)?
                .ok_or_else(|| StoreError::Other(format!("cannot create '{}'", fname.display())))?;
            lock_file(&f, LockType::Write, true, &fname)?;
            let len = f
                .metadata()
                .map_err(io_err("getting status of", &fname))?
                .len();
            if len == 0 {
                return Ok(f);
            }
            // A GC found the file stale and deleted it before we locked it; try again.
        }
    }
    Err(StoreError::Other(format!(
        "cannot create a temporary roots file in '{}'",
        dir.display()
    )))
}

impl LocalStore {
    /// Register `path` as a temporary root of this process: a collector (firn's or CppNix's)
    /// running now or later will not delete it while this store object lives.
    pub fn add_temp_root(&self, path: &StorePath) -> Result<()> {
        if self.config().read_only {
            return Ok(());
        }
        let layout = self.layout();
        let mut guard = self.temp_roots.lock().unwrap_or_else(|e| e.into_inner());
        let st = &mut *guard;
        if st.file.is_none() {
            st.file = Some(create_temp_roots_file(&layout.temproots_dir)?);
        }
        if st.gc_lock.is_none() {
            st.gc_lock = open_lock_file(&layout.gc_lock, true)?;
        }
        let gc_lock = st.gc_lock.as_ref().ok_or_else(|| {
            StoreError::Other(format!("cannot open '{}'", layout.gc_lock.display()))
        })?;
        let printed = self.store_dir().display(path);
        let mut attempts = 0u32;
        let _shared = loop {
            if lock_file(gc_lock, LockType::Read, false, &layout.gc_lock)? {
                // No GC is running, and none can start until we have written the root.
                break Some(SharedGcLock(gc_lock, &layout.gc_lock));
            }
            // A GC is running: tell it about the root and wait for its acknowledgement.
            if st.socket.is_none() {
                match UnixStream::connect(&layout.gc_socket) {
                    Ok(s) => st.socket = Some(s),
                    Err(e) => {
                        // The GC may be starting (no socket yet) or exiting; check again.
                        attempts += 1;
                        if attempts.is_multiple_of(500) {
                            tracing::warn!(
                                "still waiting for the garbage collector's socket '{}': {e}",
                                layout.gc_socket.display()
                            );
                        }
                        std::thread::sleep(std::time::Duration::from_millis(10));
                        continue;
                    }
                }
            }
            let acked = match st.socket.as_mut() {
                Some(sock) => {
                    let mut ack = [0u8; 1];
                    sock.write_all(format!("{printed}\n").as_bytes()).is_ok()
                        && sock.read_exact(&mut ack).is_ok()
                        && ack[0] == b'1'
                }
                None => false,
            };
            if acked {
                // The running GC knows; the file is for the collectors after it. We cannot
                // take the shared lock now, and need not.
                break None;
            }
            // The GC went away; start over.
            st.socket = None;
        };
        let f = st
            .file
            .as_mut()
            .ok_or_else(|| StoreError::Other("the temporary roots file is not open".into()))?;
        f.write_all(format!("{printed}\0").as_bytes())
            .map_err(io_err("writing temporary roots to", &layout.temproots_dir))?;
        Ok(())
    }
}
