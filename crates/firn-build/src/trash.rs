//! Deleting build directories (the build directory, the sandbox's) off the builds' path: a
//! build hands them to a thread that deletes them while the next build runs. Deleting a
//! directory can wait for the disk (a filesystem mounted with `discard` trims its block right
//! away), and a real build directory can hold a whole source tree. The realisation waits for
//! the thread before it returns, so nothing is left behind.
//!
//! What is handed over is never used again: build directories and a sandbox's directories
//! have names no other build uses while they exist (a build directory's name is taken again
//! only once it is gone, as CppNix's counter skips existing directories).

use std::path::{Path, PathBuf};
use std::sync::mpsc;

/// A directory to delete, and what it holds when all went as expected (deepest first), each
/// removed with one `rmdir` (or `unlink` for a file); anything else found is deleted entry by
/// entry.
pub struct Doomed {
    pub path: PathBuf,
    pub dirs: &'static [&'static str],
    /// A directory on the same filesystem to move it into first: removing an entry keeps its
    /// parent directory locked, which can last (see the module documentation), so what a
    /// build slot still uses is only locked for the `rename`.
    pub stash: Option<PathBuf>,
}

impl Doomed {
    /// Delete it now.
    pub fn delete(self) {
        let Doomed { path, dirs, stash } = self;
        let mut path = path;
        if let (Some(stash), Some(name)) = (&stash, path.file_name()) {
            let moved = stash.join(name);
            if std::fs::rename(&path, &moved).is_ok() {
                path = moved;
            }
        }
        let quick = dirs.iter().all(|d| rmdir_gone(&path.join(d))) && rmdir_gone(&path);
        if !quick {
            let _ = firn_store::canon::delete_path(&path);
        }
    }
}

/// `rmdir` (`unlink` for a file): true if it is gone (or was never there).
fn rmdir_gone(p: &Path) -> bool {
    match std::fs::remove_dir(p) {
        Ok(()) => true,
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => std::fs::remove_file(p).is_ok(),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// Where builds put what they leave: a deleting thread, or nothing (deleted at once).
#[derive(Clone, Default)]
pub struct Trash(Option<mpsc::Sender<Doomed>>);

impl Trash {
    /// Delete right away, in the calling thread.
    pub fn inline() -> Trash {
        Trash(None)
    }

    /// A thread in `scope` that deletes what is thrown into the returned trash, and ends
    /// when every clone of it is dropped.
    pub fn spawn<'scope>(scope: &'scope std::thread::Scope<'scope, '_>) -> std::io::Result<Trash> {
        let (tx, rx) = mpsc::channel::<Doomed>();
        std::thread::Builder::new()
            .name("build cleanup".into())
            .spawn_scoped(scope, move || {
                for d in rx {
                    d.delete();
                }
            })?;
        Ok(Trash(Some(tx)))
    }

    pub fn throw(&self, d: Doomed) {
        match &self.0 {
            Some(tx) => {
                if let Err(mpsc::SendError(d)) = tx.send(d) {
                    d.delete();
                }
            }
            None => d.delete(),
        }
    }
}
