//! Temporary GC roots: each process that adds paths lists them in `temproots/<pid>`, a file it
//! holds write-locked while it lives, so a garbage collector (firn's or CppNix's) never deletes
//! a path that is being added. While a GC runs (it holds `gc.lock` exclusively), new roots are
//! also sent to it over the socket `gc-socket/socket` and acknowledged with `1`.
//!
//! The shared lock on `gc.lock` is held from the check until the root is written to our file,
//! so a collector either starts before the check (and hears about the root on its socket) or
//! after the write (and reads it from the file).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use firn_format::{StoreDir, StorePath};

use crate::config::Layout;
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

/// A store object's temporary roots: the file and locks, and the paths announced already. A
/// root lasts as long as the store object (its file is never rewritten), so announcing a path
/// again would change nothing: it is skipped, without touching `gc.lock`.
#[derive(Default)]
pub struct LocalTempRoots {
    state: TempRootsState,
    announced: HashSet<StorePath>,
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
        self.add_temp_roots(std::slice::from_ref(path))
    }

    /// [`LocalStore::add_temp_root`] for many paths at once: those not announced yet are
    /// announced together (under one shared lock on `gc.lock`, in one write).
    pub fn add_temp_roots(&self, paths: &[StorePath]) -> Result<()> {
        if self.config().read_only {
            return Ok(());
        }
        let mut guard = self.temp_roots.lock().unwrap_or_else(|e| e.into_inner());
        let roots = &mut *guard;
        let mut new: Vec<&StorePath> = paths
            .iter()
            .filter(|p| !roots.announced.contains(*p))
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        new.sort();
        new.dedup();
        let printed: Vec<String> = new.iter().map(|p| self.store_dir().display(p)).collect();
        announce(&mut roots.state, self.layout(), &printed, true)?;
        roots.announced.extend(new.into_iter().cloned());
        Ok(())
    }

    /// Called as the store object goes away, before its temp-roots file is closed (which ends
    /// its temporary roots): if a collector is running, tell it every root of ours over its
    /// socket. Such a collector may have read the permanent roots while a path we were adding
    /// was not valid yet (so a root pointing at it did not count) and read the temporary
    /// roots only after this: CppNix's collector does so in this order, and would find our
    /// file stale and delete the path we have just made valid. Announced on the socket, the
    /// roots last as long as the collector.
    pub(crate) fn hand_temp_roots_over(&mut self) {
        let sd = self.store_dir().clone();
        let layout = self.layout().clone();
        let roots = self.temp_roots.get_mut().unwrap_or_else(|e| e.into_inner());
        if roots.state.file.is_none() || roots.announced.is_empty() {
            return;
        }
        let mut printed: Vec<String> = roots.announced.iter().map(|p| sd.display(p)).collect();
        printed.sort();
        if let Err(e) = announce(&mut roots.state, &layout, &printed, false) {
            tracing::warn!("telling the garbage collector about temporary roots: {e}");
        }
    }
}

/// Make the paths `printed` roots: tell a running collector over its socket, or (none
/// running) write them to the temp-roots file under the shared GC lock, so no collector
/// starts in between. Without `record`, only a running collector is told: nothing is written.
fn announce(
    st: &mut TempRootsState,
    layout: &Layout,
    printed: &[String],
    record: bool,
) -> Result<()> {
    if st.file.is_none() {
        st.file = Some(create_temp_roots_file(&layout.temproots_dir)?);
    }
    if st.gc_lock.is_none() {
        st.gc_lock = open_lock_file(&layout.gc_lock, true)?;
    }
    let gc_lock = st
        .gc_lock
        .as_ref()
        .ok_or_else(|| StoreError::Other(format!("cannot open '{}'", layout.gc_lock.display())))?;
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
            Some(sock) => printed.iter().all(|p| {
                let mut ack = [0u8; 1];
                sock.write_all(format!("{p}\n").as_bytes()).is_ok()
                    && sock.read_exact(&mut ack).is_ok()
                    && ack[0] == b'1'
            }),
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
    if !record {
        return Ok(());
    }
    let f = st
        .file
        .as_mut()
        .ok_or_else(|| StoreError::Other("the temporary roots file is not open".into()))?;
    let mut text = String::new();
    for p in printed {
        text.push_str(p);
        text.push('\0');
    }
    f.write_all(text.as_bytes())
        .map_err(io_err("writing temporary roots to", &layout.temproots_dir))?;
    Ok(())
}

/// Temporary roots that are given up again, for a long-running process (`firn serve` holds
/// each path it is sending): roots added with [`LocalStore::add_temp_root`] last as long as
/// the store object, so they would pile up. These live in a temp-roots file of their own (the
/// same format and protocol, so CppNix's collector honours them too); a root is announced
/// when it is first held and, once no [`TempRootGuard`] holds it any more, the file is
/// rewritten without it (skipped while a collector runs: it read the file when it started, and
/// a root kept too long only keeps a path a little longer; the next release catches up).
pub struct ScopedTempRoots {
    layout: Layout,
    store_dir: StoreDir,
    read_only: bool,
    state: Mutex<ScopedState>,
}

#[derive(Default)]
struct ScopedState {
    base: TempRootsState,
    /// Printed paths held, with how many guards hold each.
    held: HashMap<String, usize>,
    /// Whether the file lists roots no longer held.
    stale: bool,
}

/// Keeps a path a temporary root until dropped.
pub struct TempRootGuard {
    roots: Arc<ScopedTempRoots>,
    printed: String,
}

impl std::fmt::Debug for TempRootGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TempRootGuard({})", self.printed)
    }
}

impl ScopedTempRoots {
    /// Scoped roots for `store` (its file is created when the first root is held).
    pub fn new(store: &LocalStore) -> Arc<ScopedTempRoots> {
        Arc::new(ScopedTempRoots {
            layout: store.layout().clone(),
            store_dir: store.store_dir().clone(),
            read_only: store.config().read_only,
            state: Mutex::new(ScopedState::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ScopedState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Make `path` a temporary root until the guard is dropped. A collector running now or
    /// later does not delete it meanwhile; if one is deleting it right now, this waits until
    /// it is gone (so check that the path is valid after this returns).
    pub fn hold(self: &Arc<Self>, path: &StorePath) -> Result<TempRootGuard> {
        let printed = self.store_dir.display(path);
        if !self.read_only {
            let mut st = self.lock();
            if let Some(n) = st.held.get_mut(&printed) {
                *n += 1;
            } else {
                announce(
                    &mut st.base,
                    &self.layout,
                    std::slice::from_ref(&printed),
                    true,
                )?;
                st.held.insert(printed.clone(), 1);
            }
        }
        Ok(TempRootGuard {
            roots: self.clone(),
            printed,
        })
    }

    /// How many distinct paths are held now.
    pub fn held(&self) -> usize {
        self.lock().held.len()
    }

    fn release(&self, printed: &str) {
        if self.read_only {
            return;
        }
        let mut st = self.lock();
        let gone = match st.held.get_mut(printed) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => true,
            None => false,
        };
        if gone {
            st.held.remove(printed);
            st.stale = true;
        }
        if st.stale {
            if let Err(e) = self.rewrite(&mut st) {
                tracing::warn!("{e}");
            }
        }
    }

    /// Write the roots still held over the file, unless a collector is running.
    fn rewrite(&self, st: &mut ScopedState) -> Result<()> {
        let ScopedState { base, held, stale } = st;
        let (Some(file), Some(gc_lock)) = (base.file.as_mut(), base.gc_lock.as_ref()) else {
            return Ok(());
        };
        if !lock_file(gc_lock, LockType::Read, false, &self.layout.gc_lock)? {
            return Ok(());
        }
        let _shared = SharedGcLock(gc_lock, &self.layout.gc_lock);
        let mut text = String::new();
        for p in held.keys() {
            text.push_str(p);
            text.push('\0');
        }
        let dir = &self.layout.temproots_dir;
        (|| {
            file.set_len(0)?;
            file.seek(SeekFrom::Start(0))?;
            file.write_all(text.as_bytes())
        })()
        .map_err(io_err("rewriting temporary roots in", dir))?;
        *stale = false;
        Ok(())
    }
}

impl Drop for TempRootGuard {
    fn drop(&mut self) {
        self.roots.release(&self.printed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LocalStoreConfig;

    #[test]
    fn scoped_roots_come_and_go() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = LocalStore::open(LocalStoreConfig {
            root: Some(dir.path().to_path_buf()),
            ..Default::default()
        })
        .expect("open");
        let sd = store.store_dir().clone();
        let a = sd
            .parse("/nix/store/11111111111111111111111111111111-a")
            .expect("path");
        let b = sd
            .parse("/nix/store/22222222222222222222222222222222-b")
            .expect("path");
        let roots = ScopedTempRoots::new(&store);
        let held = |store: &LocalStore| -> Vec<StorePath> {
            store
                .find_temp_roots(true)
                .expect("temp roots")
                .into_keys()
                .collect()
        };
        let ga1 = roots.hold(&a).expect("hold");
        let ga2 = roots.hold(&a).expect("hold");
        let gb = roots.hold(&b).expect("hold");
        assert_eq!(held(&store), vec![a.clone(), b.clone()]);
        drop(ga1);
        assert_eq!(held(&store), vec![a.clone(), b.clone()]);
        drop(gb);
        assert_eq!(held(&store), vec![a.clone()]);
        drop(ga2);
        assert!(held(&store).is_empty());
        assert_eq!(roots.held(), 0);
        // Held again after being released.
        let _g = roots.hold(&b).expect("hold");
        assert_eq!(held(&store), vec![b]);
    }
}
