//! The Linux sandbox: the builder runs in new user, mount, PID, IPC, UTS and (unless the
//! derivation is fixed-output) network namespaces, inside a root that holds only its input
//! closure, the configured sandbox paths, a private build directory, a minimal `/dev`, a fresh
//! `/proc` and Nix's `/etc` files.
//!
//! How: everything the child must do is worked out first, in the parent, as a list of
//! [`Op`]s (mounts, directories, files) with every string already converted. The builder is
//! then started with `clone()` directly into the new namespaces, as PID 1 of its PID namespace;
//! the parent writes its uid/gid maps (sandbox uid 1000 and gid 100, as Nix, mapped to the
//! calling user) and lets it go. The child only makes system calls (no allocation, no locks,
//! which is what a child of a multi-threaded process may do): it mounts a tmpfs as the sandbox
//! root, builds the skeleton there, mounts the store directory as an overlay whose upper layer
//! is on the store's filesystem (the outputs land there and are renamed into the store
//! afterwards), bind-mounts the inputs read-only, pivots into the root and executes the
//! builder, which drops every capability because it is not uid 0. A setup failure is reported
//! as the index of the failed operation and `errno` on a pipe that a successful `exec` closes.

use std::ffi::CString;
use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Nix's uid and gid for the builder inside the sandbox.
pub const SANDBOX_UID: u32 = 1000;
pub const SANDBOX_GID: u32 = 100;

/// One bind mount: `source` on the host to `target` inside the sandbox.
#[derive(Clone, Debug)]
pub struct Bind {
    pub source: PathBuf,
    /// Absolute path inside the sandbox.
    pub target: String,
    pub read_only: bool,
    /// A missing source is skipped instead of failing the build.
    pub optional: bool,
}

/// Everything needed to start a sandboxed builder.
#[derive(Clone, Debug)]
pub struct Spec {
    /// The sandbox directory on the host (see [`prepare_chroot`]).
    pub chroot: PathBuf,
    /// The store directory as builders see it (`/nix/store`).
    pub store_dir: String,
    pub binds: Vec<Bind>,
    pub private_network: bool,
    /// The working directory inside the sandbox (`/build`).
    pub work_dir: String,
    pub builder: String,
    /// The builder's argv, `argv[0]` included.
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    /// `sandbox-dev-shm-size`.
    pub shm_size: String,
    /// `i686-linux` on `x86_64`: a 32-bit personality.
    pub linux32: bool,
    /// `impersonate-linux-26`.
    pub uname26: bool,
    /// The build user (uid, gid) the sandbox's uid 1000 / gid 100 stand for; None: the
    /// calling user.
    pub build_user: Option<(u32, u32)>,
}

/// Prepare the sandbox directory on the host: `root/` (where the child mounts a tmpfs with the
/// sandbox's skeleton), and `upper/` and `work/` for the store directory's overlay, on the
/// store's filesystem so outputs can be renamed into place.
pub fn prepare_chroot(chroot: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let mkdir = |p: &Path, mode: u32| -> std::io::Result<()> {
        fs::DirBuilder::new().mode(mode).create(p)?;
        fs::set_permissions(p, fs::Permissions::from_mode(mode))
    };
    mkdir(chroot, 0o700)?;
    mkdir(&chroot.join("root"), 0o755)?;
    mkdir(&chroot.join("upper"), 0o1775)?;
    mkdir(&chroot.join("work"), 0o700)?;
    Ok(())
}

/// Where an output the builder made is found on the host after the build.
pub fn output_location(chroot: &Path, base_name: &str) -> PathBuf {
    chroot.join("upper").join(base_name)
}

/// The device nodes every sandbox gets (those the host has).
pub const DEVICES: &[&str] = &[
    "/dev/full",
    "/dev/kvm",
    "/dev/null",
    "/dev/random",
    "/dev/tty",
    "/dev/urandom",
    "/dev/zero",
];

/// One step of the child's setup, with every argument ready for the system call.
enum Op {
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
    /// Remount a bind mount read-only, keeping the flags it has.
    RemountReadOnly(CString),
    /// Mount an overlay; when that fails, run the fallback instead.
    Overlay {
        target: CString,
        data: CString,
        fallback: Vec<Op>,
    },
    /// Mount devpts (optional: failure is ignored, as Nix does).
    Devpts(CString, CString),
    SetHostname,
    LoopbackUp,
    PivotRoot(CString),
    Chdir(CString),
    /// Take the sandbox uid/gid (mapped to a build user) before anything is created, keeping
    /// the namespace's capabilities until `exec` (the old uid was not mapped, so nothing drops
    /// them).
    BecomeBuilder,
}

impl Op {
    fn describe(&self) -> String {
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
            Op::RemountReadOnly(t) => format!("remounting '{}' read-only", s(t)),
            Op::Overlay { target, .. } => format!("mounting the store overlay on '{}'", s(target)),
            Op::Devpts(t, _) => format!("mounting devpts on '{}'", s(t)),
            Op::SetHostname => "setting the host name".into(),
            Op::LoopbackUp => "setting the loopback interface flags".into(),
            Op::PivotRoot(r) => format!("pivoting into '{}'", s(r)),
            Op::Chdir(d) => format!("changing into '{}'", s(d)),
            Op::BecomeBuilder => "taking the build user's uid and gid".into(),
        }
    }
}

fn cstr(p: impl AsRef<[u8]>) -> Result<CString, String> {
    CString::new(p.as_ref().to_vec()).map_err(|_| "a path contains a NUL byte".to_string())
}

fn path_c(p: &Path) -> Result<CString, String> {
    cstr(p.as_os_str().as_bytes())
}

/// What the child runs: the ops, then `execve`.
struct Plan {
    ops: Vec<Op>,
    builder: CString,
    argv: Vec<CString>,
    env: Vec<CString>,
    argv_p: Vec<*const libc::c_char>,
    env_p: Vec<*const libc::c_char>,
    linux32: bool,
    uname26: bool,
    /// Read end of the "maps are written" pipe, write end of the status pipe, the log pipe.
    sync_r: i32,
    sync_w: i32,
    status_w: i32,
    status_r: i32,
    log_w: i32,
    log_r: i32,
}

fn inner(root: &Path, p: &str) -> PathBuf {
    root.join(p.trim_start_matches('/'))
}

/// Ops making `rel` (and its missing parents) under `root`, each directory once.
fn mkdirs(
    root: &Path,
    made: &mut std::collections::BTreeSet<String>,
    ops: &mut Vec<Op>,
    rel: &str,
    mode: libc::mode_t,
) -> Result<(), String> {
    let mut acc = String::new();
    let parts: Vec<&str> = rel.split('/').filter(|x| !x.is_empty()).collect();
    for (i, part) in parts.iter().enumerate() {
        acc.push('/');
        acc.push_str(part);
        if made.insert(acc.clone()) {
            let m = if i + 1 == parts.len() { mode } else { 0o755 };
            ops.push(Op::Mkdir(path_c(&inner(root, &acc))?, m));
        }
    }
    Ok(())
}

/// Work out the child's operations.
fn plan_ops(spec: &Spec) -> Result<Vec<Op>, String> {
    let root = spec.chroot.join("root");
    let p = |rel: &str| path_c(&inner(&root, rel));
    let mut ops = Vec::new();
    if spec.build_user.is_some() {
        // First: what is made from here on belongs to the build user.
        ops.push(Op::BecomeBuilder);
    }
    if spec.private_network {
        ops.push(Op::LoopbackUp);
    }
    ops.push(Op::SetHostname);
    ops.push(Op::Mount {
        src: None,
        target: cstr("/")?,
        fstype: None,
        flags: libc::MS_PRIVATE | libc::MS_REC,
        data: None,
    });
    ops.push(Op::Mount {
        src: Some(cstr("none")?),
        target: path_c(&root)?,
        fstype: Some(cstr("tmpfs")?),
        flags: libc::MS_NOSUID | libc::MS_NODEV,
        data: Some(cstr("mode=0755")?),
    });
    // The skeleton, on the tmpfs.
    ops.push(Op::Mkdir(p("/tmp")?, 0o1777));
    ops.push(Op::Mkdir(p("/etc")?, 0o755));
    let wd = &spec.work_dir;
    ops.push(Op::Write(
        p("/etc/passwd")?,
        format!(
            "root:x:0:0:Nix build user:{wd}:/noshell\n\
             nixbld:x:{SANDBOX_UID}:{SANDBOX_GID}:Nix build user:{wd}:/noshell\n\
             nobody:x:65534:65534:Nobody:/:/noshell\n"
        )
        .into_bytes(),
    ));
    ops.push(Op::Write(
        p("/etc/group")?,
        format!("root:x:0:\nnixbld:!:{SANDBOX_GID}:\nnogroup:x:65534:\n").into_bytes(),
    ));
    if spec.private_network {
        ops.push(Op::Write(
            p("/etc/hosts")?,
            b"127.0.0.1 localhost\n::1 localhost\n".to_vec(),
        ));
    } else {
        ops.push(Op::Write(
            p("/etc/nsswitch.conf")?,
            b"hosts: files dns\nservices: files\n".to_vec(),
        ));
    }
    let mut made = std::collections::BTreeSet::new();
    made.insert("/tmp".to_string());
    made.insert("/etc".to_string());
    mkdirs(&root, &mut made, &mut ops, &spec.store_dir, 0o1775)?;
    mkdirs(&root, &mut made, &mut ops, wd, 0o700)?;
    mkdirs(&root, &mut made, &mut ops, "/proc", 0o555)?;
    mkdirs(&root, &mut made, &mut ops, "/dev/shm", 0o1777)?;
    mkdirs(&root, &mut made, &mut ops, "/dev/pts", 0o755)?;
    for (link, to) in [
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
    ] {
        ops.push(Op::Symlink(cstr(to)?, p(link)?));
    }
    let devices: Vec<&str> = DEVICES
        .iter()
        .copied()
        .filter(|d| Path::new(d).exists())
        .collect();
    for d in &devices {
        ops.push(Op::Touch(p(d)?));
    }
    // Mount points for the binds (those in the store directory are in the overlay's lower
    // layer, so they cost nothing on disk).
    let mut binds = Vec::new();
    let mut store_points = Vec::new();
    for b in &spec.binds {
        let meta = match fs::metadata(&b.source) {
            Ok(m) => m,
            Err(e) if b.optional && e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(format!(
                    "getting attributes of path '{}': {e}",
                    b.source.display()
                ))
            }
        };
        let target = b.target.trim_end_matches('/');
        if let Some((parent, _)) = target.rsplit_once('/') {
            mkdirs(&root, &mut made, &mut ops, parent, 0o755)?;
        }
        let point = if meta.is_dir() {
            if made.insert(target.to_string()) {
                Some(Op::Mkdir(p(target)?, 0o755))
            } else {
                None
            }
        } else {
            Some(Op::Touch(p(target)?))
        };
        if let Some(pt) = point {
            let in_store = target.starts_with(&format!("{}/", spec.store_dir));
            if in_store {
                store_points.push(match &pt {
                    Op::Mkdir(c, m) => Op::Mkdir(c.clone(), *m),
                    Op::Touch(c) => Op::Touch(c.clone()),
                    _ => unreachable!("mount points are directories or files"),
                });
            }
            ops.push(pt);
        }
        binds.push(b);
    }
    let store_c = p(&spec.store_dir)?;
    let lower = inner(&root, &spec.store_dir);
    let data = format!(
        "lowerdir={},upperdir={},workdir={},userxattr",
        lower.display(),
        spec.chroot.join("upper").display(),
        spec.chroot.join("work").display()
    );
    let mut fallback = vec![Op::Mount {
        src: Some(path_c(&spec.chroot.join("upper"))?),
        target: store_c.clone(),
        fstype: None,
        flags: libc::MS_BIND,
        data: None,
    }];
    fallback.extend(store_points);
    ops.push(Op::Overlay {
        target: store_c,
        data: cstr(data)?,
        fallback,
    });
    for b in binds {
        let t = p(&b.target)?;
        ops.push(Op::Mount {
            src: Some(path_c(&b.source)?),
            target: t.clone(),
            fstype: None,
            flags: libc::MS_BIND | libc::MS_REC,
            data: None,
        });
        if b.read_only {
            ops.push(Op::RemountReadOnly(t));
        }
    }
    for d in &devices {
        ops.push(Op::Mount {
            src: Some(cstr(*d)?),
            target: p(d)?,
            fstype: None,
            flags: libc::MS_BIND,
            data: None,
        });
    }
    ops.push(Op::Mount {
        src: Some(cstr("none")?),
        target: p("/proc")?,
        fstype: Some(cstr("proc")?),
        flags: libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        data: None,
    });
    ops.push(Op::Mount {
        src: Some(cstr("none")?),
        target: p("/dev/shm")?,
        fstype: Some(cstr("tmpfs")?),
        flags: libc::MS_NOSUID | libc::MS_NODEV,
        data: Some(cstr(format!("size={}", spec.shm_size))?),
    });
    ops.push(Op::Devpts(p("/dev/pts")?, p("/dev/ptmx")?));
    ops.push(Op::PivotRoot(path_c(&root)?));
    ops.push(Op::Chdir(cstr(wd)?));
    Ok(ops)
}

fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// Run one op in the child. Only system calls.
unsafe fn run_op(op: &Op) -> Result<(), i32> {
    let ptr = |o: &Option<CString>| o.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
    let check = |r: libc::c_int| if r == -1 { Err(errno()) } else { Ok(()) };
    match op {
        Op::Mkdir(p, mode) => check(libc::mkdir(p.as_ptr(), *mode)),
        Op::Touch(p) => {
            let fd = libc::open(
                p.as_ptr(),
                libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                0o644,
            );
            check(fd)?;
            libc::close(fd);
            Ok(())
        }
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
        Op::RemountReadOnly(t) => {
            let mut st: libc::statvfs = std::mem::zeroed();
            check(libc::statvfs(t.as_ptr(), &mut st))?;
            let mut flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID;
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
            check(libc::mount(
                std::ptr::null(),
                t.as_ptr(),
                std::ptr::null(),
                flags,
                std::ptr::null(),
            ))
        }
        Op::Overlay {
            target,
            data,
            fallback,
        } => {
            let r = libc::mount(
                c"overlay".as_ptr(),
                target.as_ptr(),
                c"overlay".as_ptr(),
                0,
                data.as_ptr() as *const libc::c_void,
            );
            if r == 0 {
                return Ok(());
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
        Op::PivotRoot(root) => {
            check(libc::chdir(root.as_ptr()))?;
            check(libc::mkdir(c"real-root".as_ptr(), 0))?;
            if libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c"real-root".as_ptr()) == -1 {
                return Err(errno());
            }
            check(libc::chroot(c".".as_ptr()))?;
            check(libc::umount2(c"real-root".as_ptr(), libc::MNT_DETACH))?;
            check(libc::rmdir(c"real-root".as_ptr()))
        }
        Op::Chdir(d) => check(libc::chdir(d.as_ptr())),
        Op::BecomeBuilder => {
            check(libc::setgroups(0, std::ptr::null()))?;
            check(libc::setresgid(SANDBOX_GID, SANDBOX_GID, SANDBOX_GID))?;
            check(libc::setresuid(SANDBOX_UID, SANDBOX_UID, SANDBOX_UID))
        }
    }
}

/// Report a failed op (its index, or -1 for exec) and errno, then exit.
unsafe fn child_fail(status_w: i32, index: i32, err: i32) -> ! {
    let mut buf = [0u8; 8];
    buf[..4].copy_from_slice(&index.to_le_bytes());
    buf[4..].copy_from_slice(&err.to_le_bytes());
    libc::write(status_w, buf.as_ptr() as *const libc::c_void, 8);
    libc::_exit(126)
}

/// The child: wait for the uid/gid maps, set up, exec. Only system calls.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` points to the parent's Plan, copied into this address space by clone().
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
        libc::execve(
            plan.builder.as_ptr(),
            plan.argv_p.as_ptr(),
            plan.env_p.as_ptr(),
        );
        child_fail(plan.status_w, -1, errno())
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } == -1 {
        return Err(format!(
            "creating a pipe: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: both descriptors are new and owned here.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A started sandboxed builder.
pub struct Started {
    pub pid: libc::pid_t,
    /// What the child reported on the status pipe (8 bytes on a setup failure).
    status: Option<[u8; 8]>,
    ops: Vec<String>,
    builder: String,
}

impl Started {
    /// After the builder ended: why its setup failed, if it did.
    pub fn setup_failure(self) -> Option<String> {
        let buf = self.status?;
        let index = i32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let err =
            std::io::Error::from_raw_os_error(i32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]));
        Some(match index {
            -1 => format!("executing '{}': {err}", self.builder),
            -2 => format!("setting up standard input and output: {err}"),
            i => match self.ops.get(i as usize) {
                Some(what) => format!("{what}: {err}"),
                None => format!("sandbox setup: {err}"),
            },
        })
    }
}

fn write_proc(pid: libc::pid_t, file: &str, text: &str) -> Result<(), String> {
    let p = format!("/proc/{pid}/{file}");
    fs::write(&p, text).map_err(|e| format!("writing '{p}': {e}"))
}

/// Start the builder in the sandbox; also returns the read end of its output (stdout and
/// stderr). The caller reads that until EOF and then reaps `pid`.
pub fn start(spec: &Spec) -> Result<(Started, OwnedFd), String> {
    let ops = plan_ops(spec)?;
    let descriptions = ops.iter().map(Op::describe).collect();
    let (sync_r, sync_w) = pipe()?;
    let (status_r, status_w) = pipe()?;
    let (log_r, log_w) = pipe()?;
    let builder = cstr(&spec.builder)?;
    let argv: Vec<CString> = spec.argv.iter().map(cstr).collect::<Result<_, _>>()?;
    let env: Vec<CString> = spec
        .env
        .iter()
        .map(|(k, v)| cstr(format!("{k}={v}")))
        .collect::<Result<_, _>>()?;
    let mut plan = Plan {
        ops,
        builder,
        argv_p: Vec::new(),
        env_p: Vec::new(),
        argv,
        env,
        linux32: spec.linux32,
        uname26: spec.uname26,
        sync_r: sync_r.as_raw_fd(),
        sync_w: sync_w.as_raw_fd(),
        status_w: status_w.as_raw_fd(),
        status_r: status_r.as_raw_fd(),
        log_w: log_w.as_raw_fd(),
        log_r: log_r.as_raw_fd(),
    };
    plan.argv_p = plan.argv.iter().map(|s| s.as_ptr()).collect();
    plan.argv_p.push(std::ptr::null());
    plan.env_p = plan.env.iter().map(|s| s.as_ptr()).collect();
    plan.env_p.push(std::ptr::null());
    // Without an exec in between, the child keeps every descriptor: it closes the ones it
    // must not hold, dup2s the log pipe onto stdout and stderr, and the status pipe closes on
    // its exec.
    let mut flags = libc::CLONE_NEWUSER
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS;
    if spec.private_network {
        flags |= libc::CLONE_NEWNET;
    }
    // The child shares our memory (CLONE_VM, as posix_spawn does: no page tables to copy, no
    // copy-on-write faults) until it executes the builder; it runs on `stack`, only makes
    // system calls, and we keep `plan` and `stack` alive until its exec (see below).
    let mut stack = Vec::<u8>::with_capacity(128 * 1024);
    // SAFETY: see above; `stack` is never read by us, only used as the child's stack.
    let pid = unsafe {
        let top = stack.as_mut_ptr().add(stack.capacity());
        let top = (top as usize & !15) as *mut libc::c_void;
        libc::clone(
            child_main,
            top,
            flags | libc::CLONE_VM | libc::SIGCHLD,
            &plan as *const Plan as *mut libc::c_void,
        )
    };
    if pid == -1 {
        return Err(format!(
            "cloning the builder into new namespaces: {}",
            std::io::Error::last_os_error()
        ));
    }
    drop(sync_r);
    drop(status_w);
    drop(log_w);
    let maps = match spec.build_user {
        // As root, for a build user: the child drops its supplementary groups itself, so
        // `setgroups` stays allowed.
        Some((uid, gid)) => write_proc(pid, "uid_map", &format!("{SANDBOX_UID} {uid} 1"))
            .and_then(|_| write_proc(pid, "gid_map", &format!("{SANDBOX_GID} {gid} 1"))),
        None => {
            // SAFETY: plain getters.
            let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
            write_proc(pid, "setgroups", "deny")
                .and_then(|_| write_proc(pid, "uid_map", &format!("{SANDBOX_UID} {uid} 1")))
                .and_then(|_| write_proc(pid, "gid_map", &format!("{SANDBOX_GID} {gid} 1")))
        }
    };
    if let Err(e) = maps {
        // SAFETY: killing and reaping our own child.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
        return Err(e);
    }
    // Let the child go, and wait until it has executed the builder (the status pipe closes)
    // or failed (it reports why): until then it runs on `stack` and reads `plan`.
    // SAFETY: writing one byte to our pipe, reading into a local buffer.
    let mut buf = [0u8; 8];
    let mut got = 0usize;
    unsafe {
        libc::write(sync_w.as_raw_fd(), b"1".as_ptr() as *const libc::c_void, 1);
        loop {
            let n = libc::read(
                status_r.as_raw_fd(),
                buf[got..].as_mut_ptr() as *mut libc::c_void,
                8 - got,
            );
            if n == -1 && errno() == libc::EINTR {
                continue;
            }
            if n <= 0 {
                break;
            }
            got += n as usize;
            if got == 8 {
                break;
            }
        }
    }
    drop(sync_w);
    drop(plan);
    drop(stack);
    let started = Started {
        pid,
        status: if got == 8 { Some(buf) } else { None },
        ops: descriptions,
        builder: spec.builder.clone(),
    };
    Ok((started, log_r))
}

/// Whether namespaces can be created here: clone a child into them that exits at once.
pub fn probe() -> Result<(), String> {
    extern "C" fn exit_now(_: *mut libc::c_void) -> libc::c_int {
        0
    }
    let mut stack = vec![0u8; 64 * 1024];
    let flags = libc::CLONE_NEWUSER
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWNET;
    // SAFETY: as in `start`, with a child that only returns.
    let pid = unsafe {
        let top = stack.as_mut_ptr().add(stack.len());
        let top = (top as usize & !15) as *mut libc::c_void;
        libc::clone(exit_now, top, flags | libc::SIGCHLD, std::ptr::null_mut())
    };
    if pid == -1 {
        return Err(format!(
            "cannot create the sandbox's namespaces: {}",
            std::io::Error::last_os_error()
        ));
    }
    let mut status = 0;
    // SAFETY: reaping our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    Ok(())
}
