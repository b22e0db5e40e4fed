//! The Linux sandbox: the builder runs in new user, mount, PID, IPC, UTS and (unless the
//! derivation is fixed-output) network namespaces, inside a root that holds only its input
//! closure, the configured sandbox paths, a private build directory, a minimal `/dev`, a fresh
//! `/proc` and Nix's `/etc` files.
//!
//! How: everything the child must do is worked out first, in the parent, as a list of
//! `Op`s (mounts, directories, files) with every string already converted. The builder
//! is then started with `clone()` directly into the new namespaces, as PID 1 of its PID
//! namespace; the parent writes its uid/gid maps (sandbox uid 1000 and gid 100, as Nix, mapped
//! to the calling user or a build user) and lets it go. The child only makes system calls (no
//! allocation, no locks, which is what a child of a multi-threaded process may do): it mounts a
//! tmpfs as the sandbox root and works inside it (relative paths), builds the skeleton there,
//! makes the store directory (see [`StoreView`]), binds the build directory, the devices and the
//! sandbox paths, pivots into the root, detaching the host's mounts, and executes the builder,
//! which drops every capability because it is not uid 0. A setup failure is reported as the
//! index of the failed operation and `errno` on a pipe that a successful `exec` closes.
//!
//! The store directory, where the outputs must land on the store's filesystem (they are renamed
//! into the store afterwards) next to the read-only inputs:
//! - with build users, the build slot's store tree ([`tree::StoreTree`]): kept between builds
//!   in the slot's own mount namespace, one read-only bind per input, and bound as a whole;
//! - otherwise an overlay whose upper layer is the build's directory in the slot's
//!   [`SandboxDir`], whose lower layer holds the inputs' mount points (the slot's kept one,
//!   [`lower::LowerDir`], or made on the tmpfs), with the inputs bound on top: the host's store
//!   directory is first bound onto itself read-only (in the child's mount namespace only), so
//!   that each input bound from it is read-only already — one mount per input instead of a bind
//!   and a remount.
//!
//! The network namespace of a non-fixed-output build comes from the build slot
//! ([`crate::netns::NetSlot`]) where it can be reused; it is new (`CLONE_NEWNET`) otherwise.

mod child;
mod dirs;
pub mod lower;
pub mod tree;

pub use dirs::{BuildDirs, SandboxDir, WORK_DIRS};

use std::ffi::CString;
use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::netns::NetSlot;
use child::{child_main, errno, Op, Plan};
use tree::MountNs;

/// Nix's uid and gid for the builder inside the sandbox.
pub const SANDBOX_UID: u32 = 1000;
pub const SANDBOX_GID: u32 = 100;

/// With a build user, the host's `nobody`, mapped to itself in the sandbox, owns the sandbox's
/// root and what is made on it (`/etc` and its files, `/tmp`, the parents of mount points), so
/// that the builder cannot write there nor change their modes: CppNix's root (`root:<build
/// group>`, 0750) and skeleton belong to root, which the builder sees as 65534 too. A builder
/// writing to its `HOME` (`/homeless-shelter`) thus fails with "Permission denied", as in
/// CppNix. (Without a build user, only the caller's uid is mapped and the root is the
/// builder's own, as in CppNix.)
const NOBODY: u32 = 65534;

/// Whether the sandbox of `spec` maps [`NOBODY`] to give it the root.
fn root_owned_by_nobody(spec: &Spec) -> bool {
    spec.build_user.is_some_and(|(uid, _)| uid != NOBODY)
}

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

/// A store path of the input closure, bound read-only at the same place in the sandbox.
#[derive(Clone, Debug)]
pub struct Input {
    /// Its base name in the store directory.
    pub name: String,
    /// Whether it is a directory (its mount point must be one).
    pub is_dir: bool,
}

/// How a sandbox's store directory is made.
#[derive(Clone, Debug)]
pub enum StoreView {
    /// An overlay: the inputs' mount points below (in `lower`, a slot's kept lower layer, or
    /// else made on the sandbox's tmpfs), the build's `upper` and `work` directories (see
    /// [`BuildDirs`]) on the store's filesystem, and each input bound read-only on top.
    Overlay {
        upper: PathBuf,
        work: PathBuf,
        lower: Option<PathBuf>,
    },
    /// The slot's store tree, bound as a whole (see [`tree::StoreTree`]).
    Tree { base: PathBuf },
}

/// Everything needed to start a sandboxed builder.
#[derive(Clone, Debug)]
pub struct Spec {
    /// The mount point of the sandbox's root (see [`SandboxDir`]).
    pub root: PathBuf,
    /// How its store directory is made.
    pub store: StoreView,
    /// The store directory as builders see it (`/nix/store`).
    pub store_dir: String,
    /// Where the store directory's files are on the host.
    pub real_store_dir: PathBuf,
    /// The input closure.
    pub inputs: Vec<Input>,
    /// Every other bind mount (the build directory, `sandbox-paths`, ...).
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
    /// `filter-syscalls`: the filter the builder runs under (failing to install it fails
    /// the build only with a build user, as in CppNix).
    pub syscall_filter: Option<crate::seccomp::Filter>,
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

/// The devices of [`DEVICES`] this host has (looked up once).
fn host_devices() -> &'static [&'static str] {
    static PRESENT: OnceLock<Vec<&'static str>> = OnceLock::new();
    PRESENT.get_or_init(|| {
        DEVICES
            .iter()
            .copied()
            .filter(|d| Path::new(d).exists())
            .collect()
    })
}

fn cstr(p: impl AsRef<[u8]>) -> Result<CString, String> {
    CString::new(p.as_ref().to_vec()).map_err(|_| "a path contains a NUL byte".to_string())
}

fn path_c(p: &Path) -> Result<CString, String> {
    cstr(p.as_os_str().as_bytes())
}

/// A path inside the sandbox, relative to its root (the child's working directory while it
/// sets up).
fn rel(p: &str) -> Result<CString, String> {
    let r = p.trim_start_matches('/');
    cstr(if r.is_empty() { "." } else { r })
}

/// Ops making `path` (and its missing parents) inside the sandbox, each directory once.
fn mkdirs(
    made: &mut std::collections::HashSet<String>,
    ops: &mut Vec<Op>,
    path: &str,
    mode: libc::mode_t,
) -> Result<(), String> {
    let mut acc = String::new();
    let parts: Vec<&str> = path.split('/').filter(|x| !x.is_empty()).collect();
    for (i, part) in parts.iter().enumerate() {
        acc.push('/');
        acc.push_str(part);
        if made.insert(acc.clone()) {
            let m = if i + 1 == parts.len() { mode } else { 0o755 };
            ops.push(Op::Mkdir(rel(&acc)?, m));
        }
    }
    Ok(())
}

fn bind_op(source: &Path, target: &str, flags: libc::c_ulong) -> Result<Op, String> {
    Ok(Op::Mount {
        src: Some(path_c(source)?),
        target: rel(target)?,
        fstype: None,
        flags: libc::MS_BIND | flags,
        data: None,
    })
}

/// Work out the child's operations. `fresh_net`: the builder gets a new network namespace,
/// whose loopback interface it must bring up itself.
fn plan_ops(spec: &Spec, fresh_net: bool) -> Result<Vec<Op>, String> {
    let root = &spec.root;
    let mut ops = Vec::new();
    if spec.build_user.is_some() {
        // First: what is made from here on belongs to the build user.
        ops.push(Op::BecomeBuilder);
    }
    if spec.private_network && fresh_net {
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
    // As CppNix's root: 0750, of the builder's group (its owner, see `NOBODY`).
    ops.push(Op::Mount {
        src: Some(cstr("none")?),
        target: path_c(root)?,
        fstype: Some(cstr("tmpfs")?),
        flags: libc::MS_NOSUID | libc::MS_NODEV,
        data: Some(cstr("mode=0750")?),
    });
    // From here on, paths are relative to the root.
    ops.push(Op::Chdir(path_c(root)?));
    // The skeleton, on the tmpfs.
    ops.push(Op::Mkdir(rel("/tmp")?, 0o1777));
    ops.push(Op::Mkdir(rel("/etc")?, 0o755));
    let wd = &spec.work_dir;
    ops.push(Op::Write(
        rel("/etc/passwd")?,
        format!(
            "root:x:0:0:Nix build user:{wd}:/noshell\n\
             nixbld:x:{SANDBOX_UID}:{SANDBOX_GID}:Nix build user:{wd}:/noshell\n\
             nobody:x:65534:65534:Nobody:/:/noshell\n"
        )
        .into_bytes(),
    ));
    ops.push(Op::Write(
        rel("/etc/group")?,
        format!("root:x:0:\nnixbld:!:{SANDBOX_GID}:\nnogroup:x:65534:\n").into_bytes(),
    ));
    let mut etc_files = vec!["/etc/passwd", "/etc/group"];
    if spec.private_network {
        ops.push(Op::Write(
            rel("/etc/hosts")?,
            b"127.0.0.1 localhost\n::1 localhost\n".to_vec(),
        ));
        etc_files.push("/etc/hosts");
    } else {
        ops.push(Op::Write(
            rel("/etc/nsswitch.conf")?,
            b"hosts: files dns\nservices: files\n".to_vec(),
        ));
        etc_files.push("/etc/nsswitch.conf");
    }
    let mut made = std::collections::HashSet::new();
    made.insert("/tmp".to_string());
    made.insert("/etc".to_string());
    // The store directory's mount point (for an overlay without a kept lower layer, also that
    // layer).
    if let Some(parent) = spec.store_dir.rsplit_once('/').map(|(p, _)| p) {
        mkdirs(&mut made, &mut ops, parent, 0o755)?;
    }
    ops.push(Op::Mkdir(rel(&spec.store_dir)?, 0o1775));
    made.insert(spec.store_dir.clone());
    mkdirs(&mut made, &mut ops, wd, 0o700)?;
    mkdirs(&mut made, &mut ops, "/proc", 0o555)?;
    mkdirs(&mut made, &mut ops, "/dev/shm", 0o1777)?;
    mkdirs(&mut made, &mut ops, "/dev/pts", 0o755)?;
    for (link, to) in [
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
    ] {
        ops.push(Op::Symlink(cstr(to)?, rel(link)?));
    }
    let devices = host_devices();
    for d in devices {
        ops.push(Op::Touch(rel(d)?));
    }
    // Mount points. With an overlay, the inputs' are in its lower layer, so they cost nothing
    // on disk: in the slot's kept lower layer ([`lower::LowerDir`]) where there is one, else
    // made here on the tmpfs (and if the overlay cannot be mounted, in the upper layer: see
    // the fallback below). The store tree has its own.
    let store_prefix = format!("{}/", spec.store_dir);
    let mut store_points = Vec::new();
    if let StoreView::Overlay { lower, .. } = &spec.store {
        for i in &spec.inputs {
            let target = rel(&format!("{store_prefix}{}", i.name))?;
            let point = |t: CString| {
                if i.is_dir {
                    Op::Mkdir(t, 0o755)
                } else {
                    Op::Touch(t)
                }
            };
            if lower.is_none() {
                ops.push(point(target.clone()));
            }
            store_points.push(point(target));
        }
    }
    // The other binds: those inside the store directory are made (in the upper layer) and
    // mounted after the inputs (they may be on top of one), the rest before.
    let mut early = Vec::new();
    let mut late = Vec::new();
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
        let mut point_ops = Vec::new();
        if let Some((parent, _)) = target.rsplit_once('/') {
            mkdirs(&mut made, &mut point_ops, parent, 0o755)?;
        }
        if !meta.is_dir() {
            point_ops.push(Op::Touch(rel(target)?));
        } else if made.insert(target.to_string()) {
            point_ops.push(Op::Mkdir(rel(target)?, 0o755));
        }
        let mut mount_ops = vec![bind_op(&b.source, target, libc::MS_REC)?];
        if b.read_only {
            mount_ops.push(Op::MakeReadOnly(rel(target)?));
        }
        if target.starts_with(&store_prefix) {
            late.extend(point_ops);
            late.extend(mount_ops);
        } else {
            ops.extend(point_ops);
            early.extend(mount_ops);
        }
    }
    if root_owned_by_nobody(spec) {
        // Everything on the tmpfs is made by now (what is made later is in the store
        // directory); mount points are given away before anything is mounted on them. The
        // child keeps its capabilities over what `NOBODY` owns, since it is mapped.
        let mut owned: Vec<&str> = made
            .iter()
            .map(String::as_str)
            .filter(|d| *d != spec.store_dir && !d.starts_with(&store_prefix))
            .chain(etc_files)
            .collect();
        owned.sort_unstable();
        ops.push(Op::Disown(rel("/")?));
        for p in owned {
            ops.push(Op::Disown(rel(p)?));
        }
    }
    let store_rel = rel(&spec.store_dir)?;
    match &spec.store {
        StoreView::Tree { base } => {
            ops.push(Op::Mount {
                src: Some(path_c(base)?),
                target: store_rel,
                fstype: None,
                flags: libc::MS_BIND | libc::MS_REC,
                data: None,
            });
            ops.extend(early);
        }
        StoreView::Overlay { upper, work, lower } => {
            // (Without a kept lower layer, the mount point doubles as the lower layer: the
            // overlay is mounted on top of it.)
            let lower = match lower {
                Some(l) => l.clone(),
                None => root.join(spec.store_dir.trim_start_matches('/')),
            };
            let data = format!(
                "lowerdir={},upperdir={},workdir={},userxattr",
                lower.display(),
                upper.display(),
                work.display()
            );
            // `volatile` (Linux 5.10): no sync of the store's whole filesystem when the
            // overlay goes away at the end of the build (the outputs are moved into the store
            // and registered like any other build's, which are not synced either).
            // `uuid=off` (6.6): no attempt to record one in an upper layer we do not own.
            let data = vec![
                cstr(format!("{data},volatile,uuid=off"))?,
                cstr(format!("{data},volatile"))?,
                cstr(data)?,
            ];
            let mut fallback = vec![Op::Mount {
                src: Some(path_c(upper)?),
                target: store_rel.clone(),
                fstype: None,
                flags: libc::MS_BIND,
                data: None,
            }];
            fallback.extend(store_points);
            ops.push(Op::Overlay {
                target: store_rel,
                data,
                fallback,
            });
            ops.extend(early);
            if !spec.inputs.is_empty() {
                // The host's store directory, read-only (in this mount namespace): binds of
                // its entries are read-only from the start. (The overlay above was mounted
                // before, so its upper layer is writable.)
                let real = path_c(&spec.real_store_dir)?;
                ops.push(Op::Mount {
                    src: Some(real.clone()),
                    target: real.clone(),
                    fstype: None,
                    flags: libc::MS_BIND,
                    data: None,
                });
                ops.push(Op::MakeReadOnly(real));
                for i in &spec.inputs {
                    ops.push(bind_op(
                        &spec.real_store_dir.join(&i.name),
                        &format!("{store_prefix}{}", i.name),
                        0,
                    )?);
                }
            }
        }
    }
    ops.extend(late);
    for d in devices {
        ops.push(bind_op(Path::new(d), d, 0)?);
    }
    ops.push(Op::Mount {
        src: Some(cstr("none")?),
        target: rel("/proc")?,
        fstype: Some(cstr("proc")?),
        flags: libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        data: None,
    });
    ops.push(Op::Mount {
        src: Some(cstr("none")?),
        target: rel("/dev/shm")?,
        fstype: Some(cstr("tmpfs")?),
        flags: libc::MS_NOSUID | libc::MS_NODEV,
        data: Some(cstr(format!("size={}", spec.shm_size))?),
    });
    ops.push(Op::Devpts(rel("/dev/pts")?, rel("/dev/ptmx")?));
    ops.push(Op::PivotRoot);
    ops.push(Op::Chdir(cstr(wd)?));
    Ok(ops)
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
    /// The setup, to describe a failed step.
    ops: Vec<Op>,
    builder: String,
    /// The child's stack: a child that reported a failure may still run on it until it
    /// exits, so it lives until the child is reaped.
    _stack: Vec<u8>,
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
            -3 => format!("installing the system call filter: {err}"),
            i => match self.ops.get(i as usize) {
                Some(op) => format!("{}: {err}", op.describe()),
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
/// stderr). The caller reads that until EOF and then reaps `pid`. `net` is the build slot's
/// network namespace, used (for a non-fixed-output build) where it can be; `mount` the slot's
/// mount namespace (with its store tree), where the sandbox must be cloned.
pub fn start(
    spec: &Spec,
    net: &mut NetSlot,
    mount: Option<&MountNs>,
) -> Result<(Started, OwnedFd), String> {
    let reuse_net = spec.private_network && net.ready();
    let ops = plan_ops(spec, !reuse_net)?;
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
        syscall_filter: spec.syscall_filter.clone(),
        filter_required: spec.build_user.is_some(),
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
    if spec.private_network && !reuse_net {
        flags |= libc::CLONE_NEWNET;
    }
    // This thread steps into the slot's namespaces only for the clone (the child inherits
    // them).
    if let Some(m) = mount {
        m.enter().map_err(|e| e.to_string())?;
    }
    if reuse_net {
        if let Err(e) = net.enter() {
            if let Some(m) = mount {
                m.leave().map_err(|e| e.to_string())?;
            }
            return Err(e.to_string());
        }
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
    let clone_err = std::io::Error::last_os_error();
    let left = if reuse_net {
        net.leave().map_err(|e| e.to_string())
    } else {
        Ok(())
    };
    let left = left.and(match mount {
        Some(m) => m.leave().map_err(|e| e.to_string()),
        None => Ok(()),
    });
    if pid == -1 {
        return Err(format!(
            "cloning the builder into new namespaces: {clone_err}"
        ));
    }
    if let Err(e) = left {
        // SAFETY: killing and reaping our own child (still waiting for its maps).
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
        return Err(e);
    }
    drop(sync_r);
    drop(status_w);
    drop(log_w);
    let maps = match spec.build_user {
        // As root, for a build user: the child drops its supplementary groups itself, so
        // `setgroups` stays allowed. `NOBODY` owns the root (see there).
        Some((uid, gid)) => {
            let mut uids = format!("{SANDBOX_UID} {uid} 1");
            if root_owned_by_nobody(spec) {
                uids.push_str(&format!("\n{NOBODY} {NOBODY} 1"));
            }
            write_proc(pid, "uid_map", &uids)
                .and_then(|_| write_proc(pid, "gid_map", &format!("{SANDBOX_GID} {gid} 1")))
        }
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
    let ops = std::mem::take(&mut plan.ops);
    drop(plan);
    let started = Started {
        pid,
        status: if got == 8 { Some(buf) } else { None },
        ops,
        builder: spec.builder.clone(),
        _stack: stack,
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
