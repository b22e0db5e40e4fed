//! Running one builder process: with or without the sandbox stage, its output collected from
//! one pipe (stdout and stderr together, as Nix logs them), `timeout` and `max-silent-time`
//! enforced, and cancellation when another build fails.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::sandbox::{Spec, SPEC_VAR, STAGE_ARG, STATUS_FD};
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
    },
    /// Through the sandbox stage (firn re-executed).
    Sandboxed { stage_exe: PathBuf, spec: Box<Spec> },
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

/// Start the builder, pass everything it writes to `on_output`, and wait for it.
pub fn run(
    launch: Launch,
    limits: Limits,
    cancel: &AtomicBool,
    on_output: &mut dyn FnMut(&[u8]),
) -> Result<Ended, BuildError> {
    let (out_r, out_w) = pipe()?;
    let out_w2 = out_w
        .try_clone()
        .map_err(|e| BuildError::Other(format!("duplicating a pipe: {e}")))?;
    let mut status_pipe = None;
    let (mut cmd, kill_group, what) = match launch {
        Launch::Direct {
            builder,
            argv0,
            args,
            env,
            cwd,
        } => {
            let mut c = Command::new(&builder);
            c.arg0(argv0)
                .args(args)
                .env_clear()
                .envs(env)
                .current_dir(cwd);
            // SAFETY: setsid is async-signal-safe.
            unsafe {
                c.pre_exec(|| {
                    libc::setsid();
                    Ok(())
                });
            }
            (c, true, builder)
        }
        Launch::Sandboxed { stage_exe, spec } => {
            let (sr, sw) = pipe()?;
            let json = serde_json::to_string(&spec)
                .map_err(|e| BuildError::Other(format!("encoding the sandbox spec: {e}")))?;
            let mut c = Command::new(&stage_exe);
            c.arg(STAGE_ARG).env_clear().env(SPEC_VAR, json);
            let sw_fd = sw.as_raw_fd();
            // SAFETY: dup2 and fcntl are async-signal-safe.
            unsafe {
                c.pre_exec(move || {
                    if sw_fd != STATUS_FD && libc::dup2(sw_fd, STATUS_FD) == -1 {
                        return Err(std::io::Error::last_os_error());
                    }
                    libc::fcntl(STATUS_FD, libc::F_SETFD, 0);
                    Ok(())
                });
            }
            status_pipe = Some((sr, sw));
            let b = spec.builder.clone();
            (c, false, b)
        }
    };
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(out_w))
        .stderr(Stdio::from(out_w2));
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Ok(Ended::SetupFailed(format!("executing '{what}': {e}")));
        }
    };
    drop(cmd);
    let status_r = status_pipe.map(|(r, w)| {
        drop(w);
        r
    });
    let pid = child.id() as i32;
    let kill = || {
        // SAFETY: signalling our own child (or its process group).
        unsafe {
            if kill_group {
                libc::kill(-pid, libc::SIGKILL);
            }
            libc::kill(pid, libc::SIGKILL);
        }
    };
    let start = Instant::now();
    let mut last_output = start;
    let mut file = File::from(out_r);
    let fd = file.as_raw_fd();
    let mut buf = vec![0u8; 64 * 1024];
    let mut ended: Option<Ended> = None;
    loop {
        let now = Instant::now();
        if ended.is_none() {
            if cancel.load(Ordering::Relaxed) {
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
            let _ = child.wait();
            return Err(BuildError::Other(format!(
                "waiting for the builder's output: {e}"
            )));
        }
        if r == 0 {
            continue;
        }
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                last_output = Instant::now();
                on_output(&buf[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                kill();
                let _ = child.wait();
                return Err(BuildError::Other(format!(
                    "reading the builder's output: {e}"
                )));
            }
        }
    }
    let status = child
        .wait()
        .map_err(|e| BuildError::Other(format!("waiting for the builder: {e}")))?;
    if kill_group {
        // Anything the builder left running in its session goes with it.
        // SAFETY: signalling the builder's process group.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
    }
    if let Some(e) = ended {
        return Ok(e);
    }
    if let Some(r) = status_r {
        let mut msg = String::new();
        let _ = File::from(r).read_to_string(&mut msg);
        if !msg.is_empty() {
            return Ok(Ended::SetupFailed(msg));
        }
    }
    Ok(match (status.code(), status.signal()) {
        (Some(c), _) => Ended::Exited(c),
        (None, Some(s)) => Ended::Signaled(s),
        _ => Ended::Exited(1),
    })
}
