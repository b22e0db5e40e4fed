//! A build slot's store tree: with build users, the store directory the slot's sandboxes see,
//! kept from one build to the next instead of being put together in every sandbox.
//!
//! The slot has a mount namespace of its own (a copy of the host's, receiving its mount events
//! but sending none back), where `<sandbox dir>/store/` holds one read-only bind mount per
//! input (bound from `<sandbox dir>/ro/`, the host's store directory bound read-only). Before
//! each build the tree is brought in line with the build's inputs — only what changed is
//! bound or unbound — and everything else in it (what the last builder made: outputs already
//! moved into the store, or anything a failed build left) is deleted. The slot's thread steps
//! into that namespace only for this and to clone a sandbox ([`MountNs`]), which inherits a
//! copy of it and binds the whole tree (one recursive bind) as its store directory; the rest
//! of the thread's work (moving outputs into the store, which must be done from the host's
//! namespace, logs, hooks) sees the host's mounts. The outputs land in the tree, on the
//! store's filesystem (in the host's namespace `<sandbox dir>/store/` is a plain directory),
//! and are moved into place from there.
//!
//! Compared with an overlay per sandbox this saves, per build, the overlay's own setup (a work
//! directory and the probes it makes there on the store's filesystem), a lookup through the
//! overlay and a bind per input. It is only used with build users: `store/` is owned by root
//! and the build users' group, mode 1775, as the real store directory is, so a builder may add
//! entries but — not being its owner — cannot change its mode, attributes or ACLs, nor (sticky
//! bit) remove what it did not make, nor anything mounted. So all a build can leave is entries,
//! which the next build's preparation deletes.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::Input;

/// Why the store tree could not be made, prepared, entered or left.
#[derive(Debug, Error)]
pub enum TreeError {
    #[error("{op} '{path}': {source}")]
    Path {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{op}: {source}")]
    Sys {
        op: &'static str,
        source: std::io::Error,
    },
}

fn err(op: &'static str, path: &Path) -> TreeError {
    TreeError::Path {
        op,
        path: path.to_path_buf(),
        source: std::io::Error::last_os_error(),
    }
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> TreeError {
    let path = path.to_path_buf();
    move |source| TreeError::Path { op, path, source }
}

fn c_path(p: &Path) -> Result<CString, TreeError> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io_err("using", p)(std::io::Error::from_raw_os_error(libc::EINVAL)))
}

fn mount(src: Option<&Path>, target: &Path, flags: libc::c_ulong) -> Result<(), TreeError> {
    let t = c_path(target)?;
    let s = src.map(c_path).transpose()?;
    // SAFETY: NUL-terminated paths (or null), no data.
    let r = unsafe {
        libc::mount(
            s.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            t.as_ptr(),
            std::ptr::null(),
            flags,
            std::ptr::null(),
        )
    };
    if r == -1 {
        return Err(err("mounting", target));
    }
    Ok(())
}

fn open_c(path: &Path, flags: libc::c_int) -> Result<OwnedFd, TreeError> {
    let c = c_path(path)?;
    // SAFETY: NUL-terminated path; the descriptor is new and owned here.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd == -1 {
        return Err(err("opening", path));
    }
    // SAFETY: see above.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A slot's mount namespace, which the slot's thread steps into and back out of. (Joining a
/// mount namespace moves the thread to its root: its working directory is restored on the way
/// back.)
pub struct MountNs {
    slot: OwnedFd,
    host: OwnedFd,
    cwd: OwnedFd,
}

impl MountNs {
    pub fn enter(&self) -> Result<(), TreeError> {
        // SAFETY: setns with a namespace descriptor we own; this thread only.
        if unsafe { libc::setns(self.slot.as_raw_fd(), libc::CLONE_NEWNS) } == -1 {
            return Err(TreeError::Sys {
                op: "entering the slot's mount namespace",
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(())
    }

    pub fn leave(&self) -> Result<(), TreeError> {
        return_to(&self.host, &self.cwd)
    }
}

/// Back to the host's mount namespace `host` and the working directory `cwd`.
fn return_to(host: &OwnedFd, cwd: &OwnedFd) -> Result<(), TreeError> {
    // SAFETY: setns and fchdir with descriptors we own; this thread only.
    unsafe {
        if libc::setns(host.as_raw_fd(), libc::CLONE_NEWNS) == -1 {
            return Err(TreeError::Sys {
                op: "returning to the host's mount namespace",
                source: std::io::Error::last_os_error(),
            });
        }
        if libc::fchdir(cwd.as_raw_fd()) == -1 {
            return Err(TreeError::Sys {
                op: "returning to the working directory",
                source: std::io::Error::last_os_error(),
            });
        }
    }
    Ok(())
}

/// A slot's store tree (see the module documentation).
pub struct StoreTree {
    base: PathBuf,
    ro: PathBuf,
    ns: MountNs,
    /// The inputs bound in it: name → is a directory.
    bound: HashMap<String, bool>,
}

impl StoreTree {
    /// Make the slot's mount namespace and the tree in it, in `sandbox_dir`. `gid`: the
    /// build users' group. The calling thread (which gets filesystem attributes of its own)
    /// is in the host's namespace again when this returns, unless the error says it could
    /// not get back.
    pub fn create(
        sandbox_dir: &Path,
        real_store_dir: &Path,
        gid: u32,
    ) -> Result<StoreTree, TreeError> {
        let cwd = open_c(Path::new("."), libc::O_PATH | libc::O_DIRECTORY)?;
        let host = open_c(Path::new("/proc/thread-self/ns/mnt"), libc::O_RDONLY)?;
        // SAFETY: only this thread's mount namespace (and filesystem attributes) change.
        if unsafe { libc::unshare(libc::CLONE_NEWNS) } == -1 {
            return Err(err("making a mount namespace for", sandbox_dir));
        }
        let made = Self::set_up(sandbox_dir, real_store_dir, gid).and_then(|(base, ro)| {
            let slot = open_c(Path::new("/proc/thread-self/ns/mnt"), libc::O_RDONLY)?;
            Ok((base, ro, slot))
        });
        // Back to the host's namespace, whatever happened.
        return_to(&host, &cwd)?;
        let (base, ro, slot) = made?;
        Ok(StoreTree {
            base,
            ro,
            ns: MountNs { slot, host, cwd },
            bound: HashMap::new(),
        })
    }

    /// The slot's mount namespace, to clone sandboxes in.
    pub fn mount_ns(&self) -> &MountNs {
        &self.ns
    }

    fn set_up(
        sandbox_dir: &Path,
        real_store_dir: &Path,
        gid: u32,
    ) -> Result<(PathBuf, PathBuf), TreeError> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        // First of all: nothing mounted here may reach the host's namespace.
        mount(None, Path::new("/"), libc::MS_SLAVE | libc::MS_REC)?;
        let base = sandbox_dir.join("store");
        let ro = sandbox_dir.join("ro");
        for (p, mode) in [(&base, 0o1775), (&ro, 0o755)] {
            std::fs::DirBuilder::new()
                .mode(mode)
                .create(p)
                .map_err(io_err("creating directory", p))?;
        }
        std::os::unix::fs::chown(&base, Some(0), Some(gid))
            .and_then(|_| std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o1775)))
            .map_err(io_err("changing the owner of", &base))?;
        // The host's store directory, read-only: binds of its entries are read-only too.
        mount(Some(real_store_dir), &ro, libc::MS_BIND)?;
        let ro_c = c_path(&ro)?;
        // SAFETY: a NUL-terminated path; only system calls.
        if let Err(e) = unsafe { super::child::make_read_only(&ro_c) } {
            return Err(TreeError::Path {
                op: "making read-only",
                path: ro.clone(),
                source: std::io::Error::from_raw_os_error(e),
            });
        }
        // The tree is a mount of its own (so that it goes in one piece).
        mount(Some(&base), &base, libc::MS_BIND)?;
        Ok((base, ro))
    }

    /// The tree, to be bound (recursively) as a sandbox's store directory.
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// Bind exactly `inputs` in the tree and delete anything else in it.
    pub fn prepare(&mut self, inputs: &[Input]) -> Result<(), TreeError> {
        self.ns.enter()?;
        let r = self.prepare_inside(inputs);
        self.ns.leave()?;
        r
    }

    fn prepare_inside(&mut self, inputs: &[Input]) -> Result<(), TreeError> {
        let wanted: HashMap<&str, bool> =
            inputs.iter().map(|i| (i.name.as_str(), i.is_dir)).collect();
        // Mount points made earlier that stay (bound or not).
        let mut keep: HashMap<String, bool> = std::mem::take(&mut self.bound);
        let mut bound: HashMap<String, bool> = HashMap::new();
        if keep.iter().any(|(n, d)| wanted.get(n.as_str()) != Some(d)) {
            // Some input is no longer one: the whole tree goes and comes back (unmounting one
            // bind at a time waits for the kernel to forget each, as long as unmounting all).
            let c = c_path(&self.base)?;
            // SAFETY: NUL-terminated path.
            if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == -1 {
                return Err(err("unmounting", &self.base));
            }
            mount(Some(&self.base), &self.base, libc::MS_BIND)?;
            keep.retain(|n, d| wanted.get(n.as_str()) == Some(d));
        } else {
            bound = keep.clone();
        }
        // Whatever else is there goes: unbound mount points, and what a builder made.
        let read_err = |e: std::io::Error| TreeError::Path {
            op: "reading directory",
            path: self.base.clone(),
            source: e,
        };
        for e in std::fs::read_dir(&self.base).map_err(read_err)? {
            let e = e.map_err(read_err)?;
            if keep.contains_key(e.file_name().to_string_lossy().as_ref()) {
                continue;
            }
            let p = e.path();
            firn_store::canon::delete_path(&p).map_err(|e| TreeError::Path {
                op: "deleting",
                path: p.clone(),
                source: std::io::Error::other(e.to_string()),
            })?;
        }
        for (name, is_dir) in wanted {
            if bound.contains_key(name) {
                continue;
            }
            if name.is_empty() || name.contains('/') || name.starts_with('.') {
                return Err(TreeError::Path {
                    op: "binding an input in",
                    path: self.base.clone(),
                    source: std::io::Error::from_raw_os_error(libc::EINVAL),
                });
            }
            let p = self.base.join(name);
            if !keep.contains_key(name) {
                let c = c_path(&p)?;
                // SAFETY: NUL-terminated path.
                let r = unsafe {
                    if is_dir {
                        libc::mkdir(c.as_ptr(), 0o755)
                    } else {
                        libc::mknod(c.as_ptr(), libc::S_IFREG | 0o644, 0)
                    }
                };
                if r == -1 {
                    return Err(err("making a mount point", &p));
                }
            }
            mount(Some(&self.ro.join(name)), &p, libc::MS_BIND)?;
            bound.insert(name.to_string(), is_dir);
        }
        self.bound = bound;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In a thread of its own (the tree changes the thread's mount namespace): the tree holds
    /// exactly the inputs, read-only, and nothing else survives a preparation.
    #[test]
    fn tree_holds_the_inputs_read_only() {
        // SAFETY: a plain getter.
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        std::thread::spawn(|| {
            let tmp = tempfile::tempdir().expect("tempdir");
            let store = tmp.path().join("store");
            std::fs::create_dir_all(store.join("a")).expect("mkdir");
            std::fs::write(store.join("a/f"), "a").expect("write");
            std::fs::write(store.join("b"), "b").expect("write");
            std::fs::write(store.join("c"), "c").expect("write");
            let sandbox = tmp.path().join("sandbox");
            std::fs::create_dir(&sandbox).expect("mkdir");
            let mut t = match StoreTree::create(&sandbox, &store, 0) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("skipped: {e}");
                    return;
                }
            };
            let input = |name: &str, is_dir| Input {
                name: name.into(),
                is_dir,
            };
            let list = |t: &StoreTree| {
                let mut v: Vec<String> = std::fs::read_dir(t.base())
                    .expect("read")
                    .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                    .collect();
                v.sort();
                v
            };
            t.prepare(&[input("a", true), input("b", false)])
                .expect("prepare");
            assert_eq!(list(&t), ["a", "b"]);
            // In the host's namespace: mount points only.
            assert!(!t.base().join("a/f").exists());
            t.mount_ns().enter().expect("enter");
            assert_eq!(
                std::fs::read_to_string(t.base().join("a/f")).expect("read"),
                "a"
            );
            let e = std::fs::write(t.base().join("b"), "x").expect_err("read-only");
            assert_eq!(e.raw_os_error(), Some(libc::EROFS));
            t.mount_ns().leave().expect("leave");
            // What a builder leaves goes; an input that is no longer one goes.
            std::fs::write(t.base().join("junk"), "j").expect("write");
            t.prepare(&[input("b", false), input("c", false)])
                .expect("prepare");
            assert_eq!(list(&t), ["b", "c"]);
            t.mount_ns().enter().expect("enter");
            assert_eq!(
                std::fs::read_to_string(t.base().join("c")).expect("read"),
                "c"
            );
            t.mount_ns().leave().expect("leave");
            // The host's store directory was not touched.
            assert_eq!(std::fs::read_to_string(store.join("b")).expect("read"), "b");
        })
        .join()
        .expect("thread");
    }
}
