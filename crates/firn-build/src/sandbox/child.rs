//! The sandbox's child side: the setup steps ([`Op`]s) the parent worked out, and the function
//! the builder is cloned into, which runs them and executes the builder. Everything here runs
//! in a child of a multi-threaded process that shares its memory (`CLONE_VM`): system calls
//! only, no allocation, no locks.

use std::ffi::CString;

use super::{SANDBOX_GID, SANDBOX_UID};

/// One step of the child's setup, with every argument ready for the system call. Paths after
/// the [`Op::Chdir`] into the new root are relative to it.
pub(super) enum Op {
    Mkdir(CString, libc::mode_t),
    /// Create an empty file (a mount point for a non-directory).
    Touch(CString),
    Write(CString, Vec<u8>),
    Symlink(CString, CString),
    Mount {
        src: Option<CString>,
        target: CString,
        fstype: Option<CString>,
        flags: libc::c_ulong,
        data: Option<CString>,
    },
    /// Make a mount read-only (only that flag changes; `mount_setattr`, or a remount keeping
    /// the flags it has where that is missing).
    MakeReadOnly(CString),
    /// Mount an overlay with the first of `data` that works; when none does, run the
    /// fallback instead.
    Overlay {
        target: CString,
        data: Vec<CString>,
        fallback: Vec<Op>,
    },
    /// Mount devpts (optional: failure is ignored, as Nix does).
    Devpts(CString, CString),
    SetHostname,
    LoopbackUp,
    /// `pivot_root` into the current directory and detach the old root.
    PivotRoot,
    Chdir(CString),
    /// Give a path on the sandbox's root to its owner `NOBODY` (see there), keeping the
    /// group.
    Disown(CString),
    /// Take the sandbox uid/gid (mapped to a build user) before anything is created, keeping
    /// the namespace's capabilities until `exec` (the old uid was not mapped, so nothing drops
    /// them).
    BecomeBuilder,
}

impl Op {
    /// What the op does, for the message when it failed.
    pub(super) fn describe(&self) -> String {
        let s = |c: &CString| c.to_string_lossy().into_owned();
        match self {
            Op::Mkdir(p, _) => format!("creating directory '{}'", s(p)),
            Op::Touch(p) | Op::Write(p, _) => format!("writing '{}'", s(p)),
            Op::Symlink(_, l) => format!("creating symlink '{}'", s(l)),
            Op::Mount { src, target, .. } => format!(
                "mounting {}'{}'",
                src.as_ref()
                    .map(|x| format!("'{}' on ", s(x)))
                    .unwrap_or_default(),
                s(target)
            ),
            Op::MakeReadOnly(t) => format!("making '{}' read-only", s(t)),
            Op::Overlay { target, .. } => format!("mounting the store overlay on '{}'", s(target)),
            Op::Devpts(t, _) => format!("mounting devpts on '{}'", s(t)),
            Op::SetHostname => "setting the host name".into(),
            Op::LoopbackUp => "setting the loopback interface flags".into(),
            Op::PivotRoot => "pivoting into the sandbox's root".into(),
            Op::Chdir(d) => format!("changing into '{}'", s(d)),
            Op::BecomeBuilder => "taking the build user's uid and gid".into(),
            Op::Disown(p) => format!("changing the owner of '{}'", s(p)),
        }
    }
}

/// What the child runs: the ops, then `execve`.
pub(super) struct Plan {
    pub ops: Vec<Op>,
    pub builder: CString,
    pub argv: Vec<CString>,
    pub env: Vec<CString>,
    pub argv_p: Vec<*const libc::c_char>,
    pub env_p: Vec<*const libc::c_char>,
    pub linux32: bool,
    pub uname26: bool,
    /// Installed last before `exec`; a failure is the build's only when `filter_required`.
    pub syscall_filter: Option<crate::seccomp::Filter>,
    pub filter_required: bool,
    /// Read end of the "maps are written" pipe, write end of the status pipe, the log pipe.
    pub sync_r: i32,
    pub sync_w: i32,
    pub status_w: i32,
    pub status_r: i32,
    pub log_w: i32,
    pub log_r: i32,
}

pub(super) fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// `struct mount_attr` of `mount_setattr(2)`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;

/// Make the mount at `t` read-only.
pub(super) unsafe fn make_read_only(t: &CString) -> Result<(), i32> {
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let r = libc::syscall(
        libc::SYS_mount_setattr,
        libc::AT_FDCWD,
        t.as_ptr(),
        0,
        &attr as *const MountAttr,
        std::mem::size_of::<MountAttr>(),
    );
    if r == 0 {
        return Ok(());
    }
    // Before Linux 5.12 (or where it is filtered): a remount, which must repeat the flags
    // the mount has (some may be locked by the user namespace).
    let mut st: libc::statvfs = std::mem::zeroed();
    if libc::statvfs(t.as_ptr(), &mut st) == -1 {
        return Err(errno());
    }
    let mut flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY;
    for (stf, msf) in [
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
    ] {
        if st.f_flag & stf != 0 {
            flags |= msf;
        }
    }
    if libc::mount(
        std::ptr::null(),
        t.as_ptr(),
        std::ptr::null(),
        flags,
        std::ptr::null(),
    ) == -1
    {
        return Err(errno());
    }
    Ok(())
}

/// Run one op in the child. Only system calls.
unsafe fn run_op(op: &Op) -> Result<(), i32> {
    let ptr = |o: &Option<CString>| o.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
    let check = |r: libc::c_int| if r == -1 { Err(errno()) } else { Ok(()) };
    match op {
        Op::Mkdir(p, mode) => check(libc::mkdir(p.as_ptr(), *mode)),
        Op::Touch(p) => check(libc::mknod(p.as_ptr(), libc::S_IFREG | 0o644, 0)),
        Op::Write(p, data) => {
            let fd = libc::open(
                p.as_ptr(),
                libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC | libc::O_CLOEXEC,
                0o644,
            );
            check(fd)?;
            let n = libc::write(fd, data.as_ptr() as *const libc::c_void, data.len());
            libc::close(fd);
            if n as usize != data.len() {
                return Err(libc::EIO);
            }
            Ok(())
        }
        Op::Symlink(to, link) => check(libc::symlink(to.as_ptr(), link.as_ptr())),
        Op::Mount {
            src,
            target,
            fstype,
            flags,
            data,
        } => check(libc::mount(
            ptr(src),
            target.as_ptr(),
            ptr(fstype),
            *flags,
            ptr(data) as *const libc::c_void,
        )),
        Op::MakeReadOnly(t) => make_read_only(t),
        Op::Overlay {
            target,
            data,
            fallback,
        } => {
            for d in data {
                let r = libc::mount(
                    c"overlay".as_ptr(),
                    target.as_ptr(),
                    c"overlay".as_ptr(),
                    0,
                    d.as_ptr() as *const libc::c_void,
                );
                if r == 0 {
                    return Ok(());
                }
            }
            for f in fallback {
                run_op(f)?;
            }
            Ok(())
        }
        Op::Devpts(pts, ptmx) => {
            let r = libc::mount(
                c"none".as_ptr(),
                pts.as_ptr(),
                c"devpts".as_ptr(),
                libc::MS_NOSUID | libc::MS_NOEXEC,
                c"newinstance,mode=0620".as_ptr() as *const libc::c_void,
            );
            if r == 0 {
                libc::symlink(c"/dev/pts/ptmx".as_ptr(), ptmx.as_ptr());
            }
            Ok(())
        }
        Op::SetHostname => {
            let host = b"localhost";
            let domain = b"(none)";
            check(libc::sethostname(
                host.as_ptr() as *const libc::c_char,
                host.len(),
            ))?;
            check(libc::setdomainname(
                domain.as_ptr() as *const libc::c_char,
                domain.len(),
            ))
        }
        Op::LoopbackUp => {
            let fd = libc::socket(
                libc::PF_INET,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                libc::IPPROTO_IP,
            );
            check(fd)?;
            let mut ifr: libc::ifreq = std::mem::zeroed();
            ifr.ifr_name[0] = b'l' as libc::c_char;
            ifr.ifr_name[1] = b'o' as libc::c_char;
            ifr.ifr_ifru.ifru_flags =
                (libc::IFF_UP | libc::IFF_LOOPBACK | libc::IFF_RUNNING) as libc::c_short;
            let r = libc::ioctl(fd, libc::SIOCSIFFLAGS, &ifr);
            libc::close(fd);
            check(r)
        }
        Op::PivotRoot => {
            // The current directory is the new root: the old one ends up stacked on it, and
            // is detached (with every host mount under it).
            if libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) == -1 {
                return Err(errno());
            }
            check(libc::umount2(c".".as_ptr(), libc::MNT_DETACH))
        }
        Op::Chdir(d) => check(libc::chdir(d.as_ptr())),
        Op::Disown(p) => check(libc::lchown(p.as_ptr(), super::NOBODY, libc::gid_t::MAX)),
        Op::BecomeBuilder => {
            check(libc::setgroups(0, std::ptr::null()))?;
            check(libc::setresgid(SANDBOX_GID, SANDBOX_GID, SANDBOX_GID))?;
            check(libc::setresuid(SANDBOX_UID, SANDBOX_UID, SANDBOX_UID))?;
            // Changing credentials cleared the parent-death signal: set it again.
            check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0))
        }
    }
}

/// Report a failed op (its index; -1 for exec, -2 for stdio, -3 for the system call filter)
/// and errno, then exit.
unsafe fn child_fail(status_w: i32, index: i32, err: i32) -> ! {
    let mut buf = [0u8; 8];
    buf[..4].copy_from_slice(&index.to_le_bytes());
    buf[4..].copy_from_slice(&err.to_le_bytes());
    libc::write(status_w, buf.as_ptr() as *const libc::c_void, 8);
    libc::_exit(126)
}

/// The child: wait for the uid/gid maps, set up, exec. Only system calls.
pub(super) extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` points to the parent's Plan, which it keeps alive until our exec.
    unsafe {
        let plan = &*(arg as *const Plan);
        // Without CLONE_FILES the descriptor table is our own copy.
        libc::close(plan.sync_w);
        libc::close(plan.status_r);
        libc::close(plan.log_r);
        let mut b = 0u8;
        if libc::read(plan.sync_r, &mut b as *mut u8 as *mut libc::c_void, 1) != 1 {
            libc::_exit(126);
        }
        libc::close(plan.sync_r);
        // The build dies with the thread that runs it (and so with firn).
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        // stdin from /dev/null, stdout and stderr to the log pipe.
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null == -1 || libc::dup2(null, 0) == -1 {
            child_fail(plan.status_w, -2, errno());
        }
        if libc::dup2(plan.log_w, 1) == -1 || libc::dup2(plan.log_w, 2) == -1 {
            child_fail(plan.status_w, -2, errno());
        }
        libc::umask(0);
        for (i, op) in plan.ops.iter().enumerate() {
            if let Err(e) = run_op(op) {
                child_fail(plan.status_w, i as i32, e);
            }
        }
        libc::umask(0o022);
        const UNAME26: libc::c_ulong = 0x0020000;
        const ADDR_NO_RANDOMIZE: libc::c_ulong = 0x0040000;
        if plan.linux32 {
            libc::personality(0x0008);
        }
        let cur = libc::personality(0xffffffff);
        if cur != -1 {
            let mut pers = cur as libc::c_ulong | ADDR_NO_RANDOMIZE;
            if plan.uname26 {
                pers |= UNAME26;
            }
            libc::personality(pers);
        }
        libc::setsid();
        if let Some(f) = &plan.syscall_filter {
            if let Err(e) = f.install() {
                if plan.filter_required {
                    child_fail(plan.status_w, -3, e);
                }
            }
        }
        // A file cannot be executed while it is open for writing anywhere. A child that
        // another thread of this process forks while that thread has the builder open for
        // writing (copying it into the store) holds such a descriptor until its own exec,
        // which comes soon: wait for it a little (ETXTBSY), as the execution would succeed.
        let pause = libc::timespec {
            tv_sec: 0,
            tv_nsec: crate::EXEC_BUSY_PAUSE_MS as i64 * 1_000_000,
        };
        let mut tries = 0;
        loop {
            libc::execve(
                plan.builder.as_ptr(),
                plan.argv_p.as_ptr(),
                plan.env_p.as_ptr(),
            );
            let e = errno();
            tries += 1;
            if e != libc::ETXTBSY || tries == crate::EXEC_BUSY_TRIES {
                child_fail(plan.status_w, -1, e)
            }
            libc::nanosleep(&pause, std::ptr::null_mut());
        }
    }
}
