//! Network namespaces kept for reuse by one build slot (a scheduler thread).
//!
//! A new network namespace is the most expensive part of a sandbox: the kernel sets up every
//! protocol's per-namespace state on creation and tears it down again (in a worker thread, with
//! global locks) after the build. Yet the namespace a non-fixed-output build gets is always the
//! same: nothing but a loopback interface that is up. So a slot makes one, keeps it open, and
//! its builds start in it: the slot's thread `setns`es into it just for the `clone()` of the
//! builder (which then gets no `CLONE_NEWNET`) and returns to the host's namespace at once, so
//! nothing else the thread does (fetching, post-build hooks) loses the network.
//!
//! Isolation: the namespace belongs to the initial user namespace (it is made by root), so a
//! builder — in its own user namespace, without capabilities there — cannot change its
//! interfaces, routes or sysctls. Only one build at a time uses a slot's namespace, and all
//! of a build's processes are dead before the next starts (it is PID 1 of its own PID
//! namespace). What could outlive them is socket state: TCP connections still closing or in
//! `TIME_WAIT`, bound sockets kept alive by descriptors in flight, IPv6 flow labels. Before
//! every reuse the slot reads the namespace's own counters (`/proc/net/sockstat`,
//! `sockstat6`) and lists (`unix`, `ip6_flowlabel`); unless they are all empty the namespace
//! is dropped and a fresh one is made. TCP metrics are not saved in it
//! (`tcp_no_metrics_save`), so not even timing state carries over.
//!
//! Only root can do this (making and joining a namespace needs `CAP_SYS_ADMIN`); otherwise,
//! or if anything fails, builds get a new namespace each (`CLONE_NEWNET`), as before.

use std::ffi::CStr;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;

use thiserror::Error;

/// Why a slot's namespace could not be made, checked or left.
#[derive(Debug, Error)]
pub enum NetnsError {
    #[error("{op} '{path}': {source}")]
    Path {
        op: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{op}: {source}")]
    Sys {
        op: &'static str,
        source: std::io::Error,
    },
}

fn sys_err(op: &'static str) -> NetnsError {
    NetnsError::Sys {
        op,
        source: std::io::Error::last_os_error(),
    }
}

fn open_c(path: &CStr, flags: libc::c_int) -> Result<OwnedFd, NetnsError> {
    // SAFETY: a NUL-terminated path; the descriptor is new and owned here.
    let fd = unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd == -1 {
        return Err(NetnsError::Path {
            op: "opening",
            path: path.to_string_lossy().into_owned(),
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: see above.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The files that show what is left in a namespace (opened inside it, they keep showing that
/// namespace), and whether each must have no line but its header (else it is a counters file).
const PROBES: &[(&CStr, bool, bool)] = &[
    // (path, is a list, required)
    (c"/proc/thread-self/net/sockstat", false, true),
    (c"/proc/thread-self/net/sockstat6", false, false),
    (c"/proc/thread-self/net/unix", true, true),
    (c"/proc/thread-self/net/ip6_flowlabel", true, false),
];

/// One kept namespace.
struct Kept {
    ns: OwnedFd,
    probes: Vec<(File, bool)>,
}

impl Kept {
    /// Whether nothing a previous build did is left in it.
    fn is_clean(&self) -> bool {
        let mut buf = [0u8; 4096];
        for (f, is_list) in &self.probes {
            let mut text = Vec::new();
            loop {
                match f.read_at(&mut buf, text.len() as u64) {
                    Ok(0) => break,
                    Ok(n) => text.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => return false,
                }
                if text.len() > 1 << 16 {
                    return false;
                }
            }
            let text = String::from_utf8_lossy(&text);
            let clean = if *is_list {
                text.lines().skip(1).all(|l| l.trim().is_empty())
            } else {
                counters_are_zero(&text)
            };
            if !clean {
                return false;
            }
        }
        true
    }
}

/// `sockstat`: every per-namespace count of sockets in use (and of `TIME_WAIT` sockets) is 0.
/// (`orphan`, `alloc` and `mem` count the whole machine; the `sockets:` line too.)
fn counters_are_zero(text: &str) -> bool {
    for line in text.lines() {
        let Some((proto, rest)) = line.split_once(':') else {
            continue;
        };
        if proto == "sockets" {
            continue;
        }
        let words: Vec<&str> = rest.split_ascii_whitespace().collect();
        for pair in words.chunks(2) {
            if let [key, value] = pair {
                if matches!(*key, "inuse" | "tw") && *value != "0" {
                    return false;
                }
            }
        }
    }
    true
}

/// A build slot's network namespace, made on first use and kept while it stays clean.
#[derive(Default)]
pub struct NetSlot {
    /// The thread's own (the host's) namespace, to return to.
    host: Option<OwnedFd>,
    kept: Option<Kept>,
    /// Reuse failed once: every build gets a new namespace.
    disabled: bool,
    /// Namespaces made so far (for tests and debugging).
    made: u64,
}

impl NetSlot {
    pub fn new() -> NetSlot {
        NetSlot::default()
    }

    /// How many namespaces this slot has made.
    pub fn namespaces_made(&self) -> u64 {
        self.made
    }

    /// Make sure a clean namespace is ready; false: the builder must get its own
    /// (`CLONE_NEWNET`).
    pub fn ready(&mut self) -> bool {
        if self.disabled {
            return false;
        }
        if let Some(k) = &self.kept {
            if k.is_clean() {
                return true;
            }
            tracing::debug!("the slot's network namespace is not clean; making a new one");
            self.kept = None;
        }
        match self.make() {
            Ok(k) => {
                self.made += 1;
                self.kept = Some(k);
                true
            }
            Err(e) => {
                tracing::debug!("not reusing network namespaces: {e}");
                self.disabled = true;
                false
            }
        }
    }

    /// Make a namespace: enter a new one, set it up, keep a handle, return to the host's.
    fn make(&mut self) -> Result<Kept, NetnsError> {
        if self.host.is_none() {
            self.host = Some(open_c(c"/proc/thread-self/ns/net", libc::O_RDONLY)?);
        }
        // SAFETY: unshare only affects this thread's namespaces.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } == -1 {
            return Err(sys_err("creating a network namespace"));
        }
        let made = set_up_current();
        // Back to the host's namespace whatever happened; failing that is fatal for reuse.
        self.leave()?;
        made
    }

    /// Enter the slot's namespace (after [`NetSlot::ready`] said true).
    pub fn enter(&self) -> Result<(), NetnsError> {
        let k = self.kept.as_ref().ok_or_else(|| NetnsError::Sys {
            op: "entering the slot's network namespace",
            source: std::io::Error::from_raw_os_error(libc::ENOENT),
        })?;
        // SAFETY: setns with a namespace descriptor we own; affects this thread only.
        if unsafe { libc::setns(k.ns.as_raw_fd(), libc::CLONE_NEWNET) } == -1 {
            return Err(sys_err("entering the slot's network namespace"));
        }
        Ok(())
    }

    /// Return to the host's namespace.
    pub fn leave(&mut self) -> Result<(), NetnsError> {
        let Some(host) = &self.host else {
            return Ok(());
        };
        // SAFETY: as in `enter`.
        if unsafe { libc::setns(host.as_raw_fd(), libc::CLONE_NEWNET) } == -1 {
            self.disabled = true;
            self.kept = None;
            return Err(sys_err("returning to the host's network namespace"));
        }
        Ok(())
    }
}

/// In a new namespace (this thread's): loopback up, no TCP metrics kept, and the handles.
fn set_up_current() -> Result<Kept, NetnsError> {
    loopback_up()?;
    let sysctl = c"/proc/sys/net/ipv4/tcp_no_metrics_save";
    let f = open_c(sysctl, libc::O_WRONLY)?;
    // SAFETY: writing two bytes from a static buffer to our descriptor.
    if unsafe { libc::write(f.as_raw_fd(), b"1\n".as_ptr() as *const libc::c_void, 2) } != 2 {
        return Err(NetnsError::Path {
            op: "writing",
            path: sysctl.to_string_lossy().into_owned(),
            source: std::io::Error::last_os_error(),
        });
    }
    let ns = open_c(c"/proc/thread-self/ns/net", libc::O_RDONLY)?;
    let mut probes = Vec::new();
    for (path, is_list, required) in PROBES {
        match open_c(path, libc::O_RDONLY) {
            Ok(fd) => probes.push((File::from(fd), *is_list)),
            Err(_) if !required => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Kept { ns, probes })
}

/// Bring `lo` up in this thread's namespace.
pub fn loopback_up() -> Result<(), NetnsError> {
    // SAFETY: a socket for the ioctl, closed by OwnedFd; a zeroed ifreq with the name set.
    unsafe {
        let fd = libc::socket(
            libc::PF_INET,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::IPPROTO_IP,
        );
        if fd == -1 {
            return Err(sys_err("creating a socket to configure 'lo'"));
        }
        let fd = OwnedFd::from_raw_fd(fd);
        let mut ifr: libc::ifreq = std::mem::zeroed();
        ifr.ifr_name[0] = b'l' as libc::c_char;
        ifr.ifr_name[1] = b'o' as libc::c_char;
        ifr.ifr_ifru.ifru_flags =
            (libc::IFF_UP | libc::IFF_LOOPBACK | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(fd.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr) == -1 {
            return Err(sys_err("setting the flags of 'lo'"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockstat_counters() {
        let clean = "sockets: used 2\nTCP: inuse 0 orphan 3 tw 0 alloc 1 mem 48\nUDP: inuse 0 mem 0\nUDPLITE: inuse 0\nRAW: inuse 0\nFRAG: inuse 0 memory 0\n";
        assert!(counters_are_zero(clean));
        assert!(counters_are_zero("TCP6: inuse 0\nUDP6: inuse 0\n"));
        assert!(!counters_are_zero(
            "TCP: inuse 1 orphan 0 tw 0 alloc 1 mem 48\n"
        ));
        assert!(!counters_are_zero(
            "TCP: inuse 0 orphan 0 tw 2 alloc 1 mem 48\n"
        ));
        assert!(!counters_are_zero("UDP6: inuse 1\n"));
    }
}
