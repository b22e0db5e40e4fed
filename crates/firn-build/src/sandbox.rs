//! The Linux sandbox: the builder runs in new user, mount, PID, IPC, UTS and (unless the
//! derivation is fixed-output) network namespaces, inside a chroot that holds only its input
//! closure, the configured sandbox paths, a private build directory, a minimal `/dev`, a fresh
//! `/proc` and Nix's `/etc` files.
//!
//! The parent (the scheduler) prepares the chroot directory as plain files and directories;
//! the namespaces are entered by a separate, single-threaded *stage* process (firn re-executed
//! with [`STAGE_ARG`]), because `unshare(CLONE_NEWUSER)` needs a single-threaded caller and a
//! PID namespace needs a fork. The stage maps the sandbox uid/gid (1000/100, as Nix) to the
//! calling user, forks the namespace's PID 1, which mounts everything, pivots into the chroot,
//! drops every capability by executing the builder as a non-root user, and dies with the stage
//! (`PR_SET_PDEATHSIG`), so killing the stage kills the whole build.
//!
//! Input store paths are bind-mounted read-only: the builder owns nothing it did not create.

use std::ffi::CString;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The first argument that makes the firn binary run [`stage_main`].
pub const STAGE_ARG: &str = "__firn-sandbox-stage";
/// The environment variable that carries the [`Spec`] (JSON) to the stage.
pub const SPEC_VAR: &str = "FIRN_SANDBOX_SPEC";
/// The file descriptor on which the stage reports a setup failure (closed on a good `exec`).
pub const STATUS_FD: i32 = 3;

/// Nix's uid and gid for the builder inside the sandbox.
pub const SANDBOX_UID: u32 = 1000;
pub const SANDBOX_GID: u32 = 100;

/// One bind mount: `source` on the host to `target` inside the chroot.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Bind {
    pub source: PathBuf,
    /// Absolute path inside the sandbox.
    pub target: String,
    pub read_only: bool,
    /// A missing source is skipped instead of failing the build.
    pub optional: bool,
}

/// Everything the stage needs to start a sandboxed builder.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Spec {
    /// The prepared chroot directory on the host.
    pub chroot: PathBuf,
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
    /// Only create the namespaces and exit: a check that the sandbox works here.
    #[serde(default)]
    pub probe: bool,
}

/// Prepare the chroot's skeleton on the host: `/etc` files, `/tmp`, the store directory, the
/// build directory, `/dev` and `/proc` mount points, and a mount point for every bind.
pub fn prepare_chroot(
    chroot: &Path,
    store_dir: &str,
    work_dir: &str,
    binds: &[Bind],
    fixed_output: bool,
) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let mkdir = |p: &Path, mode: u32| -> std::io::Result<()> {
        fs::DirBuilder::new().recursive(true).mode(mode).create(p)?;
        fs::set_permissions(p, fs::Permissions::from_mode(mode))
    };
    mkdir(chroot, 0o750)?;
    mkdir(&chroot.join("tmp"), 0o1777)?;
    mkdir(&chroot.join("etc"), 0o755)?;
    fs::write(
        chroot.join("etc/passwd"),
        format!(
            "root:x:0:0:Nix build user:{work_dir}:/noshell\n\
             nixbld:x:{SANDBOX_UID}:{SANDBOX_GID}:Nix build user:{work_dir}:/noshell\n\
             nobody:x:65534:65534:Nobody:/:/noshell\n"
        ),
    )?;
    fs::write(
        chroot.join("etc/group"),
        format!("root:x:0:\nnixbld:!:{SANDBOX_GID}:\nnogroup:x:65534:\n"),
    )?;
    if fixed_output {
        fs::write(
            chroot.join("etc/nsswitch.conf"),
            "hosts: files dns\nservices: files\n",
        )?;
    } else {
        fs::write(
            chroot.join("etc/hosts"),
            "127.0.0.1 localhost\n::1 localhost\n",
        )?;
    }
    let inner = |p: &str| chroot.join(p.trim_start_matches('/'));
    mkdir(&inner(store_dir), 0o1775)?;
    mkdir(&inner(work_dir), 0o700)?;
    mkdir(&chroot.join("proc"), 0o555)?;
    mkdir(&chroot.join("dev/shm"), 0o1777)?;
    mkdir(&chroot.join("dev/pts"), 0o755)?;
    for (link, to) in [
        ("dev/fd", "/proc/self/fd"),
        ("dev/stdin", "/proc/self/fd/0"),
        ("dev/stdout", "/proc/self/fd/1"),
        ("dev/stderr", "/proc/self/fd/2"),
    ] {
        std::os::unix::fs::symlink(to, chroot.join(link))?;
    }
    for b in binds {
        let meta = match fs::metadata(&b.source) {
            Ok(m) => m,
            Err(e) if b.optional && e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("getting attributes of path '{}': {e}", b.source.display()),
                ))
            }
        };
        let t = inner(&b.target);
        if meta.is_dir() {
            fs::create_dir_all(&t)?;
        } else {
            if let Some(parent) = t.parent() {
                fs::create_dir_all(parent)?;
            }
            if fs::symlink_metadata(&t).is_err() {
                fs::write(&t, b"")?;
            }
        }
    }
    Ok(())
}

/// The device nodes every sandbox gets.
pub const DEVICES: &[&str] = &[
    "/dev/full",
    "/dev/null",
    "/dev/random",
    "/dev/tty",
    "/dev/urandom",
    "/dev/zero",
];

fn cstr(p: impl AsRef<[u8]>) -> Result<CString, String> {
    CString::new(p.as_ref().to_vec()).map_err(|_| "a path contains a NUL byte".to_string())
}

fn path_c(p: &Path) -> Result<CString, String> {
    cstr(p.as_os_str().as_bytes())
}

fn last_os_error(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

fn write_file(path: &str, text: &str) -> Result<(), String> {
    fs::write(path, text).map_err(|e| format!("writing '{path}': {e}"))
}

fn mount(
    src: Option<&CString>,
    target: &CString,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> Result<(), String> {
    let fstype = fstype.map(cstr).transpose()?;
    let data = data.map(cstr).transpose()?;
    // SAFETY: every pointer is either null or a NUL-terminated string that outlives the call.
    let r = unsafe {
        libc::mount(
            src.map_or(std::ptr::null(), |s| s.as_ptr()),
            target.as_ptr(),
            fstype.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            flags,
            data.as_ref()
                .map_or(std::ptr::null(), |s| s.as_ptr() as *const libc::c_void),
        )
    };
    if r == -1 {
        return Err(last_os_error(&format!(
            "mounting '{}'",
            target.to_string_lossy()
        )));
    }
    Ok(())
}

/// Remount a bind mount read-only, keeping the flags the kernel will not let us drop.
fn remount_read_only(target: &CString) -> Result<(), String> {
    // SAFETY: statvfs fills the zeroed struct; `target` is NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(target.as_ptr(), &mut st) } == -1 {
        return Err(last_os_error(&format!(
            "getting the mount flags of '{}'",
            target.to_string_lossy()
        )));
    }
    let mut flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY;
    let f = st.f_flag;
    for (st_flag, ms_flag) in [
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
    ] {
        if f & st_flag != 0 {
            flags |= ms_flag;
        }
    }
    mount(None, target, None, flags | libc::MS_NOSUID, None)
}

/// The stage's entry point: read the spec, enter the namespaces and run the builder as PID 1 of
/// the new PID namespace. Never returns.
pub fn stage_main() -> ! {
    let code = match stage() {
        Ok(code) => code,
        Err(msg) => {
            report_setup_failure(&msg);
            126
        }
    };
    std::process::exit(code)
}

fn report_setup_failure(msg: &str) {
    // SAFETY: STATUS_FD was set up by the parent; if it is not open, the write fails harmlessly.
    let mut f = unsafe { <fs::File as std::os::fd::FromRawFd>::from_raw_fd(STATUS_FD) };
    let _ = f.write_all(msg.as_bytes());
    std::mem::forget(f);
}

fn stage() -> Result<i32, String> {
    let spec = std::env::var(SPEC_VAR).map_err(|_| format!("{SPEC_VAR} is not set"))?;
    let spec: Spec = serde_json::from_str(&spec).map_err(|e| format!("bad sandbox spec: {e}"))?;
    // SAFETY: plain syscalls without pointers.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let mut flags = libc::CLONE_NEWUSER
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS;
    if spec.private_network {
        flags |= libc::CLONE_NEWNET;
    }
    if unsafe { libc::unshare(flags) } == -1 {
        return Err(last_os_error("creating the sandbox namespaces"));
    }
    write_file("/proc/self/setgroups", "deny")?;
    write_file("/proc/self/uid_map", &format!("{SANDBOX_UID} {uid} 1"))?;
    write_file("/proc/self/gid_map", &format!("{SANDBOX_GID} {gid} 1"))?;
    if spec.probe {
        return Ok(0);
    }
    // The builder must be PID 1 of the new PID namespace, which only a child can be.
    let pid = unsafe { libc::fork() };
    if pid == -1 {
        return Err(last_os_error("forking the sandbox's first process"));
    }
    if pid == 0 {
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
        let err = match child(&spec) {
            Ok(never) => match never {},
            Err(e) => e,
        };
        report_setup_failure(&err);
        unsafe { libc::_exit(126) };
    }
    // The stage's copy of the status pipe must not keep it open.
    unsafe { libc::close(STATUS_FD) };
    let mut status = 0;
    loop {
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        if r == -1 {
            return Err(last_os_error("waiting for the builder"));
        }
        break;
    }
    if libc::WIFEXITED(status) {
        return Ok(libc::WEXITSTATUS(status));
    }
    if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        // Die of the same signal, so the scheduler sees what happened to the builder.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            libc::kill(libc::getpid(), sig);
        }
        return Ok(128 + sig);
    }
    Ok(1)
}

enum Never {}

fn child(spec: &Spec) -> Result<Never, String> {
    if spec.private_network {
        bring_up_loopback()?;
    }
    let host = b"localhost";
    let domain = b"(none)";
    if unsafe { libc::sethostname(host.as_ptr() as *const libc::c_char, host.len()) } == -1 {
        return Err(last_os_error("setting the host name"));
    }
    if unsafe { libc::setdomainname(domain.as_ptr() as *const libc::c_char, domain.len()) } == -1 {
        return Err(last_os_error("setting the domain name"));
    }
    let root = cstr("/")?;
    mount(None, &root, None, libc::MS_PRIVATE | libc::MS_REC, None)?;
    let chroot = path_c(&spec.chroot)?;
    mount(Some(&chroot), &chroot, None, libc::MS_BIND, None)?;

    for b in &spec.binds {
        if b.optional && fs::symlink_metadata(&b.source).is_err() {
            continue;
        }
        let target = spec.chroot.join(b.target.trim_start_matches('/'));
        let src = path_c(&b.source)?;
        let tgt = path_c(&target)?;
        mount(Some(&src), &tgt, None, libc::MS_BIND | libc::MS_REC, None)
            .map_err(|e| format!("bind mount from '{}' failed: {e}", b.source.display()))?;
        if b.read_only {
            remount_read_only(&tgt)?;
        }
    }
    for d in DEVICES {
        let target = path_c(&spec.chroot.join(&d[1..]))?;
        if Path::new(d).exists() {
            let _ = fs::write(spec.chroot.join(&d[1..]), b"");
            mount(Some(&cstr(*d)?), &target, None, libc::MS_BIND, None)?;
        }
    }
    let proc_dir = path_c(&spec.chroot.join("proc"))?;
    mount(
        Some(&cstr("none")?),
        &proc_dir,
        Some("proc"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        None,
    )?;
    let shm = path_c(&spec.chroot.join("dev/shm"))?;
    mount(
        Some(&cstr("none")?),
        &shm,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV,
        Some(&format!("size={}", spec.shm_size)),
    )?;
    let pts = path_c(&spec.chroot.join("dev/pts"))?;
    if mount(
        Some(&cstr("none")?),
        &pts,
        Some("devpts"),
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some("newinstance,mode=0620"),
    )
    .is_ok()
    {
        let _ = std::os::unix::fs::symlink("/dev/pts/ptmx", spec.chroot.join("dev/ptmx"));
    }

    // Into the chroot: pivot_root so the host's tree is not reachable at all.
    if unsafe { libc::chdir(chroot.as_ptr()) } == -1 {
        return Err(last_os_error("changing into the chroot"));
    }
    let real_root = cstr("real-root")?;
    if unsafe { libc::mkdir(real_root.as_ptr(), 0) } == -1 {
        return Err(last_os_error("creating the real-root directory"));
    }
    let dot = cstr(".")?;
    if unsafe { libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), real_root.as_ptr()) } == -1 {
        return Err(last_os_error("pivoting into the chroot"));
    }
    if unsafe { libc::chroot(dot.as_ptr()) } == -1 {
        return Err(last_os_error("changing the root directory"));
    }
    if unsafe { libc::umount2(real_root.as_ptr(), libc::MNT_DETACH) } == -1 {
        return Err(last_os_error("unmounting the real root"));
    }
    if unsafe { libc::rmdir(real_root.as_ptr()) } == -1 {
        return Err(last_os_error("removing the real-root directory"));
    }
    let work = cstr(&spec.work_dir)?;
    if unsafe { libc::chdir(work.as_ptr()) } == -1 {
        return Err(last_os_error(&format!("changing into '{}'", spec.work_dir)));
    }
    set_personality(spec);
    unsafe { libc::setsid() };

    let builder = cstr(&spec.builder)?;
    let argv: Vec<CString> = spec.argv.iter().map(cstr).collect::<Result<_, _>>()?;
    let envp: Vec<CString> = spec
        .env
        .iter()
        .map(|(k, v)| cstr(format!("{k}={v}")))
        .collect::<Result<_, _>>()?;
    let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|s| s.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut envp_p: Vec<*const libc::c_char> = envp.iter().map(|s| s.as_ptr()).collect();
    envp_p.push(std::ptr::null());
    // Mark the status pipe close-on-exec: a successful exec closes it, telling the parent the
    // setup worked.
    unsafe { libc::fcntl(STATUS_FD, libc::F_SETFD, libc::FD_CLOEXEC) };
    // SAFETY: argv and envp are null-terminated arrays of NUL-terminated strings.
    unsafe { libc::execve(builder.as_ptr(), argv_p.as_ptr(), envp_p.as_ptr()) };
    Err(last_os_error(&format!("executing '{}'", spec.builder)))
}

fn set_personality(spec: &Spec) {
    const UNAME26: libc::c_ulong = 0x0020000;
    const ADDR_NO_RANDOMIZE: libc::c_ulong = 0x0040000;
    unsafe {
        if spec.linux32 {
            libc::personality(0x0008); // PER_LINUX32
        }
        let cur = libc::personality(0xffffffff);
        if cur != -1 {
            let mut p = cur as libc::c_ulong | ADDR_NO_RANDOMIZE;
            if spec.uname26 {
                p |= UNAME26;
            }
            libc::personality(p);
        }
    }
}

fn bring_up_loopback() -> Result<(), String> {
    unsafe {
        let fd = libc::socket(libc::PF_INET, libc::SOCK_DGRAM, libc::IPPROTO_IP);
        if fd == -1 {
            return Err(last_os_error("opening an IP socket"));
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo".iter().enumerate() {
            ifr.ifr_name[i] = *b as libc::c_char;
        }
        ifr.ifr_ifru.ifru_flags = (libc::IFF_UP | libc::IFF_LOOPBACK | libc::IFF_RUNNING) as i16;
        let r = libc::ioctl(fd, libc::SIOCSIFFLAGS, &ifr);
        libc::close(fd);
        if r == -1 {
            return Err(last_os_error("setting the loopback interface flags"));
        }
    }
    Ok(())
}
