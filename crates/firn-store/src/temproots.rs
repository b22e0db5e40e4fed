//! Temporary GC roots: each process that adds paths lists them in `temproots/<pid>`, a file it
//! holds write-locked while it lives, so a garbage collector (firn's or CppNix's) never deletes
//! a path that is being added. While a GC runs (it holds `gc.lock` exclusively), new roots are
//! also sent to it over the socket `gc-socket/socket` and acknowledged with `1`.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use firn_format::StorePath;

use crate::error::{io_err, Result, StoreError};
use crate::local::LocalStore;
use crate::lock::{lock_file, open_lock_file, LockType};

/// This process's temp-roots file, the GC lock file and a connection to a running GC.
#[derive(Default)]
pub struct TempRootsState {
    file: Option<(File, std::path::PathBuf)>,
    gc_lock: Option<File>,
    socket: Option<UnixStream>,
}

impl LocalStore {
    /// Register `path` as a temporary root of this process.
    pub fn add_temp_root(&self, path: &StorePath) -> Result<()> {
        if self.config().read_only {
            return Ok(());
        }
        let layout = self.layout().clone();
        let mut st = self.temp_roots.lock().unwrap_or_else(|e| e.into_inner());
        if st.file.is_none() {
            let fname = layout.temproots_dir.join(std::process::id().to_string());
            loop {
                // A leftover file with our pid must be stale.
                let _ = std::fs::remove_file(&fname);
                let f = open_lock_file(&fname, true)?.ok_or_else(|| {
                    StoreError::Other(format!("cannot create '{}'", fname.display()))
                })?;
                lock_file(&f, LockType::Write, true, &fname)?;
                let len = f
                    .metadata()
                    .map_err(io_err("getting status of", &fname))?
                    .len();
                if len == 0 {
                    st.file = Some((f, fname.clone()));
                    break;
                }
                // A GC deleted it before we locked it; try again.
            }
        }
        if st.gc_lock.is_none() {
            st.gc_lock = open_lock_file(&layout.gc_lock, true)?;
        }
        let printed = self.store_dir().display(path);
        loop {
            let gc_lock = st.gc_lock.as_ref().ok_or_else(|| {
                StoreError::Other(format!("cannot open '{}'", layout.gc_lock.display()))
            })?;
            if lock_file(gc_lock, LockType::Read, false, &layout.gc_lock)? {
                // No GC is running; it will read our file when it starts.
                lock_file(gc_lock, LockType::Unlock, false, &layout.gc_lock)?;
                break;
            }
            // A GC is running: tell it about the root and wait for its acknowledgement.
            if st.socket.is_none() {
                match UnixStream::connect(&layout.gc_socket) {
                    Ok(s) => st.socket = Some(s),
                    Err(_) => {
                        std::thread::sleep(std::time::Duration::from_millis(10));
                        continue;
                    }
                }
            }
            let ok = {
                let Some(sock) = st.socket.as_mut() else {
                    continue;
                };
                let mut ack = [0u8; 1];
                sock.write_all(format!("{printed}\n").as_bytes()).is_ok()
                    && sock.read_exact(&mut ack).is_ok()
                    && ack[0] == b'1'
            };
            if ok {
                break;
            }
            // The GC went away; start over.
            st.socket = None;
        }
        let f = &mut st
            .file
            .as_mut()
            .ok_or_else(|| StoreError::Other("temp roots file is not open".into()))?
            .0;
        f.write_all(format!("{printed}\0").as_bytes())
            .map_err(io_err("writing temporary roots of", &layout.temproots_dir))?;
        Ok(())
    }
}

impl Drop for TempRootsState {
    fn drop(&mut self) {
        // Our roots end with us; remove the file (the lock goes with the descriptor).
        if let Some((_, path)) = self.file.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}
