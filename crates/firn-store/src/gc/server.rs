//! The collector's side of the temporary-roots handshake: while a GC runs it listens on
//! `gc-socket/socket`; a process adding a path writes `<store path>\n` and waits for `1`.
//! The root's hash part is recorded before the answer, and if that path is being deleted at
//! that moment the answer waits until the deletion is over (the client then sees the path is
//! gone and makes it again).

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use crate::error::{io_err, Result};

/// Roots announced while the GC runs, and what it is deleting right now (both hash parts).
#[derive(Default)]
pub(super) struct Shared {
    pub temp_roots: HashSet<String>,
    pub pending: HashSet<String>,
    stopping: bool,
}

/// [`Shared`] with the condition variable that announces the end of a deletion.
#[derive(Default)]
pub(super) struct SharedState {
    state: Mutex<Shared>,
    done: Condvar,
}

impl SharedState {
    pub fn lock(&self) -> MutexGuard<'_, Shared> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// These deletions are over: wake the clients waiting for them.
    pub fn remove_pending(&self, hashes: &[String]) {
        let mut s = self.lock();
        for h in hashes {
            s.pending.remove(h);
        }
        drop(s);
        self.done.notify_all();
    }

    /// Forget the pending deletions and wake the clients waiting for them.
    pub fn clear_pending(&self) {
        self.lock().pending.clear();
        self.done.notify_all();
    }
}

type Clients = Arc<Mutex<Vec<(UnixStream, JoinHandle<()>)>>>;

/// The socket server; it stops (closing every client connection) when dropped.
pub(super) struct RootsServer {
    shared: Arc<SharedState>,
    socket: PathBuf,
    listener: UnixListener,
    accept_thread: Option<JoinHandle<()>>,
    clients: Clients,
}

impl RootsServer {
    pub fn start(socket: &Path, shared: Arc<SharedState>) -> Result<RootsServer> {
        if let Some(dir) = socket.parent() {
            std::fs::create_dir_all(dir).map_err(io_err("creating directory", dir))?;
        }
        match std::fs::remove_file(socket) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("removing the old socket", socket)(e)),
        }
        let listener = UnixListener::bind(socket).map_err(io_err("binding socket", socket))?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o666))
                .map_err(io_err("changing mode of", socket))?;
        }
        let listener2 = listener
            .try_clone()
            .map_err(io_err("duplicating socket", socket))?;
        let clients: Clients = Arc::default();
        let (shared2, clients2) = (shared.clone(), clients.clone());
        let accept_thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if shared2.lock().stopping {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let Ok(handle) = conn.try_clone() else {
                    continue;
                };
                let shared3 = shared2.clone();
                let t = std::thread::spawn(move || serve_client(conn, &shared3));
                clients2
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((handle, t));
            }
        });
        Ok(RootsServer {
            shared,
            socket: socket.to_path_buf(),
            listener: listener2,
            accept_thread: Some(accept_thread),
            clients,
        })
    }
}

impl Drop for RootsServer {
    fn drop(&mut self) {
        self.shared.lock().stopping = true;
        self.shared.done.notify_all();
        // Wake the accept loop: shutting a listening socket down makes a blocked accept()
        // fail on Linux; a connection of our own wakes it elsewhere.
        // SAFETY: the descriptor is owned by `self.listener`, which outlives the call.
        unsafe {
            libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR);
        }
        let _ = UnixStream::connect(&self.socket);
        if let Some(t) = self.accept_thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.socket);
        // Close every client connection: a long-lived client must reconnect to the next GC
        // instead of talking to this one's leftovers.
        let clients = std::mem::take(&mut *self.clients.lock().unwrap_or_else(|e| e.into_inner()));
        for (conn, t) in clients {
            let _ = conn.shutdown(Shutdown::Both);
            let _ = t.join();
        }
    }
}

fn serve_client(conn: UnixStream, shared: &SharedState) {
    let Ok(mut w) = conn.try_clone() else {
        return;
    };
    for line in BufReader::new(conn).lines() {
        let Ok(line) = line else { break };
        match hash_part_of(&line) {
            Some(hash) => {
                let mut s = shared.lock();
                if s.stopping {
                    break;
                }
                s.temp_roots.insert(hash.to_string());
                while s.pending.contains(hash) && !s.stopping {
                    s = shared.done.wait(s).unwrap_or_else(|e| e.into_inner());
                }
            }
            None => tracing::error!("received garbage instead of a root from a client"),
        }
        if w.write_all(b"1").is_err() {
            break;
        }
    }
}

/// The hash part of a store path or store entry name (`/nix/store/<hash>-...`, `<hash>-...`).
pub(super) fn hash_part_of(s: &str) -> Option<&str> {
    let base = s.rsplit('/').next()?;
    let b = base.as_bytes();
    if b.len() > 33
        && b[32] == b'-'
        && b[..32]
            .iter()
            .all(|&c| firn_format::nixbase32::is_valid_char(c))
    {
        Some(&base[..32])
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn hash_parts() {
        let h = "0123456789abcdfghijklmnpqrsvwxyz";
        assert_eq!(hash_part_of(&format!("/nix/store/{h}-foo")), Some(h));
        assert_eq!(hash_part_of(&format!("{h}-foo.lock")), Some(h));
        assert_eq!(hash_part_of("add-123-4"), None);
        assert_eq!(hash_part_of(&format!("{h}-")), None);
    }

    #[test]
    fn announces_roots_and_waits_for_pending_deletions() {
        let dir = tempfile::tempdir().expect("temp dir");
        let sock = dir.path().join("gc-socket/socket");
        let shared = Arc::new(SharedState::default());
        let h = "0123456789abcdfghijklmnpqrsvwxyz";
        shared.lock().pending.insert(h.to_string());
        let server = RootsServer::start(&sock, shared.clone()).expect("server starts");
        let mut c = UnixStream::connect(&sock).expect("connects");
        c.write_all(format!("/nix/store/{h}-x\n").as_bytes())
            .expect("writes");
        // The answer must wait for the pending deletion.
        c.set_read_timeout(Some(std::time::Duration::from_millis(200)))
            .expect("timeout");
        let mut ack = [0u8; 1];
        assert!(c.read_exact(&mut ack).is_err(), "answered during deletion");
        assert!(shared.lock().temp_roots.contains(h));
        shared.clear_pending();
        c.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .expect("timeout");
        c.read_exact(&mut ack).expect("answered after deletion");
        assert_eq!(&ack, b"1");
        drop(server);
        // The server closed our connection and removed the socket.
        let mut rest = Vec::new();
        assert_eq!(c.read_to_end(&mut rest).map(|_| rest.len()).unwrap_or(0), 0);
        assert!(!sock.exists());
    }
}
