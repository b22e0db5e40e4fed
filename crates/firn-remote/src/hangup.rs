//! Noticing that a client went away while nothing reads from it: the server side of a session
//! runs a build without reading its input, and a client that hangs up meanwhile must stop the
//! build (CppNix's `MonitorFdHup`).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::thread::JoinHandle;

/// Watches a descriptor for a hang-up (`POLLHUP`: every writer of a pipe closed, or a socket's
/// peer gone) until dropped, and calls a function once if it sees one. Nothing is read from
/// the descriptor.
pub struct HangupWatch {
    /// Closed on drop, which wakes the watching thread.
    stop: Option<OwnedFd>,
    thread: Option<JoinHandle<()>>,
}

impl HangupWatch {
    /// Watch `fd` (which must stay open while watched) and call `on_hangup` when it hangs up.
    pub fn start(fd: RawFd, on_hangup: impl FnOnce() + Send + 'static) -> io::Result<HangupWatch> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills the two-element array.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } == -1 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors are new and owned here.
        let (stop_r, stop_w) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let thread = std::thread::Builder::new()
            .name("hangup watch".into())
            .spawn(move || {
                let mut pfds = [
                    // Only the conditions poll always reports: input that is waiting is the
                    // session's next request, not a reason to wake up.
                    libc::pollfd {
                        fd,
                        events: 0,
                        revents: 0,
                    },
                    libc::pollfd {
                        fd: stop_r.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    },
                ];
                loop {
                    // SAFETY: two valid pollfds.
                    let r = unsafe { libc::poll(pfds.as_mut_ptr(), 2, -1) };
                    if r == -1 {
                        if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                            continue;
                        }
                        return;
                    }
                    if pfds[1].revents != 0 || pfds[0].revents & libc::POLLNVAL != 0 {
                        return;
                    }
                    if pfds[0].revents & (libc::POLLHUP | libc::POLLERR) != 0 {
                        on_hangup();
                        return;
                    }
                }
            })?;
        Ok(HangupWatch {
            stop: Some(stop_w),
            thread: Some(thread),
        })
    }
}

impl Drop for HangupWatch {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    fn pipe() -> (OwnedFd, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills the array; the descriptors are owned by the caller.
        unsafe {
            assert_eq!(libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC), 0);
            (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))
        }
    }

    fn wait_for(flag: &AtomicBool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if flag.load(Ordering::SeqCst) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    #[test]
    fn a_closed_writer_is_a_hangup_and_waiting_input_is_not() {
        let (r, w) = pipe();
        let seen = Arc::new(AtomicBool::new(false));
        let s = seen.clone();
        let watch = HangupWatch::start(r.as_raw_fd(), move || s.store(true, Ordering::SeqCst))
            .expect("watching");
        // SAFETY: writing to our own pipe.
        unsafe { libc::write(w.as_raw_fd(), b"x".as_ptr() as *const libc::c_void, 1) };
        std::thread::sleep(Duration::from_millis(100));
        assert!(!seen.load(Ordering::SeqCst));
        drop(w);
        assert!(wait_for(&seen));
        drop(watch);
    }

    #[test]
    fn dropping_the_watch_stops_it() {
        let (r, w) = pipe();
        let seen = Arc::new(AtomicBool::new(false));
        let s = seen.clone();
        let watch = HangupWatch::start(r.as_raw_fd(), move || s.store(true, Ordering::SeqCst))
            .expect("watching");
        drop(watch);
        drop(w);
        std::thread::sleep(Duration::from_millis(50));
        assert!(!seen.load(Ordering::SeqCst));
    }
}
