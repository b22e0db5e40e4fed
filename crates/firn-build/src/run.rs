//! Running one builder process: with or without the sandbox stage, its output collected from
//! one pipe (stdout and stderr together, as Nix logs them), `timeout` and `max-silent-time`
//! enforced, and cancellation when another build fails (or the process is interrupted).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::netns::NetSlot;
use crate::sandbox::tree::MountNs;
use crate::sandbox::Spec;
use crate::BuildError;

/// How the builder is started.
pub enum Launch {
    /// Directly, in its own session, with the host's view of the filesystem.
    Direct {
        builder: String,
        argv0: String,
        args: Vec<String>,
        env: BTreeMap<String, String>,
        cwd: PathBuf,
        /// Run as this build user (uid, gid, supplementary groups).
        user: Option<(u32, u32, Vec<u32>)>,
        /// `filter-syscalls` (see [`crate::sandbox::Spec::syscall_filter`]).
        syscall_filter: Option<crate::seccomp::Filter>,
    },
    /// In the sandbox (see [`crate::sandbox`]).
    Sandboxed(Box<Spec>),
}

/// How a builder run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    Exited(i32),
    Signaled(i32),
    /// `timeout` passed.
    TimedOut(u64),
    /// `max-silent-time` passed without output.
    Silent(u64),
    /// More than `max-build-log-size` bytes of output.
    LogLimit(u64),
    /// The sandbox could not be set up (the message says why).
    SetupFailed(String),
    /// Stopped because the whole build is being abandoned.
    Cancelled,
}

/// Limits on one run.
#[derive(Clone, Copy, Debug, Default)]
pub struct Limits {
    pub timeout: Option<Duration>,
    pub max_silent: Option<Duration>,
    /// `max-build-log-size` (bytes; None: unlimited).
    pub max_log: Option<u64>,
}

fn pipe() -> Result<(OwnedFd, OwnedFd), BuildError> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } == -1 {
        return Err(BuildError::Other(format!(
            "creating a pipe: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A running builder.
enum Proc {
    Cmd(std::process::Child),
    Sandboxed(crate::sandbox::Started),
}

impl Proc {
    fn pid(&self) -> i32 {
        match self {
            Proc::Cmd(c) => c.id() as i32,
            Proc::Sandboxed(s) => s.pid,
        }
    }
}

fn wait_pid(pid: i32) -> Result<i32, BuildError> {
    let mut status = 0;
    loop {
        // SAFETY: reaping our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        if r == -1 {
            return Err(BuildError::Other(format!(
                "waiting for the builder: {}",
                std::io::Error::last_os_error()
            )));
        }
        return Ok(status);
    }
}

/// Spawn `c`, trying again for a while when its program is busy (ETXTBSY: open for writing
/// in a child that another thread forked while copying the file, until that child's exec;
/// see the sandbox's exec).
fn spawn_when_not_busy(c: &mut Command) -> std::io::Result<std::process::Child> {
    let mut tries = 0;
    loop {
        match c.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < crate::EXEC_BUSY_TRIES => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(crate::EXEC_BUSY_PAUSE_MS));
            }
            r => return r,
        }
    }
}

/// Start the builder, pass everything it writes to `on_output`, and wait for it. A sandboxed
/// builder gets its network namespace from `net` where it can, and is cloned in `mount`, the
/// slot's mount namespace, when it has one (see [`crate::sandbox::start`]).
pub fn run(
    launch: Launch,
    net: &mut NetSlot,
    mount: Option<&MountNs>,
    limits: Limits,
    cancel: &AtomicBool,
    on_output: &mut dyn FnMut(&[u8]),
) -> Result<Ended, BuildError> {
    let (proc_, out_r) = match launch {
        Launch::Direct {
            builder,
            argv0,
            args,
            env,
            cwd,
            user,
            syscall_filter,
        } => {
            let (out_r, out_w) = pipe()?;
            let out_w2 = out_w
                .try_clone()
                .map_err(|e| BuildError::Other(format!("duplicating a pipe: {e}")))?;
            let mut c = Command::new(&builder);
            c.arg0(argv0)
                .args(args)
                .env_clear()
                .envs(env)
                .current_dir(cwd)
                .stdin(Stdio::null())
                .stdout(Stdio::from(out_w))
                .stderr(Stdio::from(out_w2));
            // SAFETY: setsid, setgroups, setgid, setuid and prctl are async-signal-safe, and
            // so is installing the filter (system calls on memory allocated before the fork).
            unsafe {
                c.pre_exec(move || {
                    libc::setsid();
                    // Before the build user is taken, as CppNix (without `no_new_privs`,
                    // only root may install it); only a build with a build user fails
                    // without it.
                    if let Some(f) = &syscall_filter {
                        if let Err(e) = f.install() {
                            if user.is_some() {
                                return Err(std::io::Error::from_raw_os_error(e));
                            }
                        }
                    }
                    if let Some((uid, gid, groups)) = &user {
                        if libc::setgroups(groups.len(), groups.as_ptr()) == -1
                            || libc::setgid(*gid) == -1
                            || libc::setuid(*uid) == -1
                        {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    // The build dies with the thread that runs it (and so with firn).
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
                    Ok(())
                });
            }
            let child = match spawn_when_not_busy(&mut c) {
                Ok(ch) => ch,
                Err(e) => return Ok(Ended::SetupFailed(format!("executing '{builder}': {e}"))),
            };
            drop(c);
            (Proc::Cmd(child), out_r)
        }
        Launch::Sandboxed(spec) => match crate::sandbox::start(&spec, net, mount) {
            Ok((started, log)) => (Proc::Sandboxed(started), log),
            Err(e) => return Ok(Ended::SetupFailed(e)),
        },
    };
    let pid = proc_.pid();
    let kill_group = matches!(proc_, Proc::Cmd(_));
    let kill = || {
        // SAFETY: signalling our own child (or its process group). Killing PID 1 of the
        // sandbox's PID namespace kills everything in it.
        unsafe {
            if kill_group {
                libc::kill(-pid, libc::SIGKILL);
            }
            libc::kill(pid, libc::SIGKILL);
        }
    };
    let start = Instant::now();
    let mut last_output = start;
    let mut logged = 0u64;
    let mut file = File::from(out_r);
    let fd = file.as_raw_fd();
    let mut buf = vec![0u8; 64 * 1024];
    let mut ended: Option<Ended> = None;
    let mut read_error = None;
    loop {
        let now = Instant::now();
        if ended.is_none() {
            if cancel.load(Ordering::Relaxed) || crate::interrupted() {
                kill();
                ended = Some(Ended::Cancelled);
            } else if let Some(t) = limits.timeout.filter(|t| now - start >= *t) {
                kill();
                ended = Some(Ended::TimedOut(t.as_secs()));
            } else if let Some(t) = limits.max_silent.filter(|t| now - last_output >= *t) {
                kill();
                ended = Some(Ended::Silent(t.as_secs()));
            }
        }
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // Wake up at least every 100 ms to check the limits and for cancellation.
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, 100) };
        if r == -1 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            kill();
            read_error = Some(format!("waiting for the builder's output: {e}"));
            break;
        }
        if r == 0 {
            continue;
        }
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                last_output = Instant::now();
                logged += n as u64;
                if let Some(max) = limits.max_log.filter(|m| logged > *m) {
                    if ended.is_none() {
                        kill();
                        ended = Some(Ended::LogLimit(max));
                    }
                    continue;
                }
                on_output(&buf[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                kill();
                read_error = Some(format!("reading the builder's output: {e}"));
                break;
            }
        }
    }
    let status = match proc_ {
        Proc::Cmd(mut child) => {
            let st = child
                .wait()
                .map_err(|e| BuildError::Other(format!("waiting for the builder: {e}")))?;
            // Anything the builder left running in its session goes with it.
            // SAFETY: signalling the builder's process group.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            st
        }
        Proc::Sandboxed(started) => {
            let st = wait_pid(pid)?;
            if let Some(msg) = started.setup_failure() {
                if ended.is_none() {
                    return Ok(Ended::SetupFailed(msg));
                }
            }
            std::process::ExitStatus::from_raw(st)
        }
    };
    if let Some(e) = read_error {
        return Err(BuildError::Other(e));
    }
    if let Some(e) = ended {
        return Ok(e);
    }
    Ok(match (status.code(), status.signal()) {
        (Some(c), _) => Ended::Exited(c),
        (None, Some(s)) => Ended::Signaled(s),
        _ => Ended::Exited(1),
    })
}
