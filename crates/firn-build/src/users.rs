//! Build users: when firn runs as root, builds run as a member of `build-users-group`
//! (`nixbld1`, `nixbld2`, ... on Debian) rather than as root, as CppNix does. A user is taken
//! by locking `<state dir>/userpool/<uid>` (CppNix's file and protocol, so firn and CppNix
//! never give the same user to two builds at once) for as long as the build runs.

use std::ffi::{CStr, CString};
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::BuildError;

/// A build user, held until dropped.
pub struct BuildUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (for example `kvm`).
    pub groups: Vec<u32>,
    _lock: File,
}

fn cstr(p: *const libc::c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: a NUL-terminated string from the C library.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// The gid and member names of `group`, or None if there is no such group.
fn group_members(group: &str) -> Result<Option<(u32, Vec<String>)>, BuildError> {
    let name = CString::new(group).map_err(|_| BuildError::Other("bad group name".into()))?;
    let mut buf = vec![0 as libc::c_char; 1 << 16];
    // SAFETY: getgrnam_r with a zeroed struct and our buffer.
    unsafe {
        let mut gr: libc::group = std::mem::zeroed();
        let mut res: *mut libc::group = std::ptr::null_mut();
        let r = libc::getgrnam_r(
            name.as_ptr(),
            &mut gr,
            buf.as_mut_ptr(),
            buf.len(),
            &mut res,
        );
        if r != 0 || res.is_null() {
            return Ok(None);
        }
        let mut members = Vec::new();
        let mut p = gr.gr_mem;
        while !p.is_null() && !(*p).is_null() {
            members.push(cstr(*p));
            p = p.add(1);
        }
        Ok(Some((gr.gr_gid, members)))
    }
}

/// uid, primary gid and supplementary groups of `user`.
fn user_ids(user: &str) -> Result<Option<(u32, u32, Vec<u32>)>, BuildError> {
    let name = CString::new(user).map_err(|_| BuildError::Other("bad user name".into()))?;
    let mut buf = vec![0 as libc::c_char; 1 << 16];
    // SAFETY: getpwnam_r / getgrouplist with buffers we own.
    unsafe {
        let mut pw: libc::passwd = std::mem::zeroed();
        let mut res: *mut libc::passwd = std::ptr::null_mut();
        let r = libc::getpwnam_r(
            name.as_ptr(),
            &mut pw,
            buf.as_mut_ptr(),
            buf.len(),
            &mut res,
        );
        if r != 0 || res.is_null() {
            return Ok(None);
        }
        let mut groups = vec![0 as libc::gid_t; 64];
        let mut n = groups.len() as libc::c_int;
        if libc::getgrouplist(name.as_ptr(), pw.pw_gid, groups.as_mut_ptr(), &mut n) == -1 {
            return Err(BuildError::Other(format!(
                "failed to get the supplementary groups of '{user}'"
            )));
        }
        groups.truncate(n.max(0) as usize);
        Ok(Some((pw.pw_uid, pw.pw_gid, groups)))
    }
}

/// Whether `group` exists (to decide on build users by default).
pub fn group_exists(group: &str) -> bool {
    matches!(group_members(group), Ok(Some(_)))
}

/// A member of a build users group: its uid and supplementary groups, or why they are unknown.
type Member = (String, Result<(u32, Vec<u32>), String>);

/// The members of a build users group, looked up once (the user database is read with every
/// lookup, which costs more than the rest of taking a user).
pub struct UserPool {
    group: String,
    gid: u32,
    members: Vec<Member>,
    pool_dir: PathBuf,
}

impl UserPool {
    /// Look up `group` and its members; `state_dir/userpool` holds the locks.
    pub fn new(group: &str, state_dir: &Path) -> Result<UserPool, BuildError> {
        let (gid, names) = group_members(group)?.ok_or_else(|| {
            BuildError::Other(format!(
                "the group '{group}' specified in 'build-users-group' does not exist"
            ))
        })?;
        if names.is_empty() {
            return Err(BuildError::Other(format!(
                "the build users group '{group}' has no members"
            )));
        }
        let pool_dir = state_dir.join("userpool");
        std::fs::create_dir_all(&pool_dir)
            .map_err(|e| BuildError::io("creating directory", &pool_dir, e))?;
        let mut members = Vec::new();
        for m in names {
            let ids = match user_ids(&m) {
                Ok(Some((uid, _, groups))) => Ok((uid, groups)),
                Ok(None) => Err(format!(
                    "the user '{m}' in the group '{group}' does not exist"
                )),
                Err(e) => Err(e.to_string()),
            };
            members.push((m, ids));
        }
        Ok(UserPool {
            group: group.to_string(),
            gid,
            members,
            pool_dir,
        })
    }

    /// Take a free member, waiting while all are busy.
    pub fn acquire(&self) -> Result<BuildUser, BuildError> {
        loop {
            for (m, ids) in &self.members {
                let (uid, groups) = ids.clone().map_err(BuildError::Other)?;
                // SAFETY: plain getters.
                if uid == unsafe { libc::getuid() } || uid == unsafe { libc::geteuid() } {
                    return Err(BuildError::Other(format!(
                        "the Nix user should not be a member of '{}'",
                        self.group
                    )));
                }
                let lock_path = self.pool_dir.join(uid.to_string());
                let f = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .mode(0o600)
                    .custom_flags(libc::O_CLOEXEC)
                    .open(&lock_path)
                    .map_err(|e| BuildError::io("opening user lock", &lock_path, e))?;
                // SAFETY: flock on a descriptor we own.
                if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                    return Ok(BuildUser {
                        name: m.clone(),
                        uid,
                        gid: self.gid,
                        groups,
                        _lock: f,
                    });
                }
            }
            // Every build user is busy: wait for one.
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Take a free member of `group`, waiting while all are busy.
pub fn acquire(group: &str, state_dir: &Path) -> Result<BuildUser, BuildError> {
    UserPool::new(group, state_dir)?.acquire()
}

/// Kill every process of `uid` (what an unsandboxed build may have left behind), from a
/// child that takes that uid, as CppNix does.
pub fn kill_user(uid: u32) {
    // SAFETY: fork; the child only makes system calls and exits.
    unsafe {
        let pid = libc::fork();
        if pid == 0 {
            // One signal to every process of the user (not to this one). Once, as CppNix:
            // repeating until none is left never ends while one of them is an unreaped zombie.
            if libc::setuid(uid) == 0 {
                while libc::kill(-1, libc::SIGKILL) == -1
                    && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
                {
                }
            }
            libc::_exit(0);
        }
        if pid > 0 {
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
    }
}

/// Change the owner of `path` and everything below it (without following links).
pub fn chown_tree(path: &Path, uid: u32, gid: u32) -> Result<(), BuildError> {
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        std::os::unix::fs::lchown(&p, Some(uid), Some(gid))
            .map_err(|e| BuildError::io("changing the owner of", &p, e))?;
        let meta = std::fs::symlink_metadata(&p).map_err(|e| BuildError::io("reading", &p, e))?;
        if meta.is_dir() {
            for e in std::fs::read_dir(&p).map_err(|e| BuildError::io("reading", &p, e))? {
                stack.push(e.map_err(|e| BuildError::io("reading", &p, e))?.path());
            }
        }
    }
    Ok(())
}
