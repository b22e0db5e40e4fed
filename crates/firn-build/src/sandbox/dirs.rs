//! A build slot's sandbox directory, in the store directory (on the store's filesystem, so
//! outputs can be renamed into place), made once and used by the slot's builds one after
//! another: `root/`, where each build's child mounts the tmpfs that becomes its root; with
//! build users the slot's store tree (`store/` and `ro/`, see [`super::tree`]); otherwise
//! each build's `upper-<n>/` and `work-<n>/` for the store directory's overlay, moved to
//! `trash/` to be deleted when the build is done. (Directories made and removed in the store
//! directory itself for each build would keep it locked meanwhile; removing one can wait for
//! the disk. And each directory made and removed makes the next one slower to make on a
//! filesystem without a journal, which keeps recently freed inodes unused for a while.)
//!
//! Its name ends in `.chroot` and is a store path's (`<hash>-firn-sandbox-<slot>.chroot`, the
//! hash of this process, the slot and the time), so it can be a temporary root: collectors
//! (firn's and CppNix's) leave it alone while it is in use, and remove it as garbage if a
//! crash leaves it behind.

use std::fs;
use std::path::{Path, PathBuf};

/// A build slot's sandbox directory (see the module documentation).
pub struct SandboxDir {
    pub path: PathBuf,
    pub name: String,
    next: u64,
}

/// One build's directories for the store overlay in a [`SandboxDir`].
#[derive(Clone, Debug)]
pub struct BuildDirs {
    /// The overlay's upper layer: what the builder adds to the store directory (where its
    /// outputs are found after the build).
    pub upper: PathBuf,
    /// The overlay's work directory.
    pub work: PathBuf,
}

/// What a work directory holds after its overlay is gone (deepest first);
/// `incompat/volatile/dirty` marks an overlay mounted `volatile`.
pub const WORK_DIRS: &[&str] = &[
    "work/incompat/volatile/dirty",
    "work/incompat/volatile",
    "work/incompat",
    "work",
];

impl SandboxDir {
    /// A new name for slot `slot`'s directory (to make a temporary root before it exists).
    pub fn new_name(slot: usize) -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let seed = format!("firn-sandbox:{}:{slot}:{nanos}", std::process::id());
        let h = firn_format::Hash::digest(firn_format::HashAlgo::Sha256, seed);
        format!(
            "{}-firn-sandbox-{slot}.chroot",
            firn_format::nixbase32::encode(&h.as_bytes()[..20])
        )
    }

    /// Make the directory `name` in `real_store_dir`. `group`: the build users' group, which
    /// must be able to enter it (else only the caller can).
    pub fn create(
        real_store_dir: &Path,
        name: String,
        group: Option<u32>,
    ) -> std::io::Result<SandboxDir> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let path = real_store_dir.join(&name);
        let mode = if group.is_some() { 0o750 } else { 0o700 };
        fs::DirBuilder::new().mode(mode).create(&path)?;
        if let Some(gid) = group {
            std::os::unix::fs::chown(&path, Some(0), Some(gid))?;
            fs::set_permissions(&path, fs::Permissions::from_mode(mode))?;
        }
        mark_top_directory(&path);
        fs::DirBuilder::new()
            .mode(0o755)
            .create(path.join("root"))?;
        fs::DirBuilder::new()
            .mode(0o700)
            .create(path.join("trash"))?;
        Ok(SandboxDir {
            path,
            name,
            next: 0,
        })
    }

    /// The mount point of the sandboxes' roots.
    pub fn root(&self) -> PathBuf {
        self.path.join("root")
    }

    /// Where a build's directories go to be deleted.
    pub fn trash(&self) -> PathBuf {
        self.path.join("trash")
    }

    /// The directories of the next build; `owner`: the build user who must own them.
    pub fn next_build(&mut self, owner: Option<(u32, u32)>) -> std::io::Result<BuildDirs> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let n = self.next;
        self.next += 1;
        let work = self.path.join(format!("work-{n}"));
        fs::DirBuilder::new().mode(0o700).create(&work)?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::lchown(&work, Some(uid), Some(gid))?;
        }
        let upper = self.path.join(format!("upper-{n}"));
        // The umask may have taken the sticky and group bits.
        fs::DirBuilder::new().mode(0o1775).create(&upper)?;
        fs::set_permissions(&upper, fs::Permissions::from_mode(0o1775))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::lchown(&upper, Some(uid), Some(gid))?;
        }
        Ok(BuildDirs { upper, work })
    }
}

/// Mark `dir` as the top of a hierarchy (`chattr +T`): ext4 then places the directories made
/// in it in block groups of their own, where nothing else is made and removed all the time.
/// (Without a journal, ext4 scans past every inode freed in the last seconds when it makes
/// one, so making files next to the store directory's churn — lock files, build directories —
/// costs more and more.) Best effort: other filesystems ignore or refuse it.
fn mark_top_directory(dir: &Path) {
    use std::os::fd::AsRawFd;
    const FS_TOPDIR_FL: libc::c_int = 0x0002_0000;
    let Ok(f) = fs::File::open(dir) else {
        return;
    };
    let mut flags: libc::c_int = 0;
    // SAFETY: the flag ioctls read or write one int through the pointer.
    unsafe {
        if libc::ioctl(f.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) == 0 {
            flags |= FS_TOPDIR_FL;
            libc::ioctl(f.as_raw_fd(), libc::FS_IOC_SETFLAGS, &flags);
        }
    }
}
