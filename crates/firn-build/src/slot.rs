//! A build slot: one of the scheduler's threads, running one build after another, and what it
//! keeps from one sandboxed build to the next — its network namespace ([`NetSlot`]), its
//! sandbox directory ([`SandboxDir`]) and, with build users, its store tree ([`StoreTree`], in
//! a mount namespace of its own) or otherwise its overlay's lower layer ([`LowerDir`]). Each is
//! made by the first build that needs it; one that cannot be made or kept is given up for the
//! slot, and its builds are set up from scratch as before. When the slot ends, its sandbox
//! directory goes to the [`Trash`].

use std::path::{Path, PathBuf};

use firn_format::StorePath;
use firn_store::LocalStore;

use crate::cache::BuildCache;
use crate::netns::NetSlot;
use crate::sandbox::lower::LowerDir;
use crate::sandbox::tree::{MountNs, StoreTree};
use crate::sandbox::{BuildDirs, Input, SandboxDir, StoreView};
use crate::trash::{Doomed, Trash};
use crate::BuildError;

/// See the module documentation.
pub struct Slot<'a> {
    /// Which slot (in the names of what it makes).
    index: usize,
    /// Lookups shared by every build of the realisation.
    cache: &'a BuildCache,
    net: NetSlot,
    sandbox_dir: Option<SandboxDir>,
    tree: Option<StoreTree>,
    tree_tried: bool,
    lower: Option<LowerDir>,
    lower_tried: bool,
    /// Where a build's directories go when it is done.
    trash: Trash,
}

/// How a sandboxed build's store directory is made, and where its outputs appear.
pub struct SandboxStore {
    /// The mount point of the sandbox's root.
    pub root: PathBuf,
    pub view: StoreView,
    pub out_dir: PathBuf,
    /// The build's own directories (with an overlay), to delete after it through
    /// [`SandboxStore::trash`].
    pub dirs: Option<BuildDirs>,
    pub trash: PathBuf,
}

impl<'a> Slot<'a> {
    pub fn new(index: usize, cache: &'a BuildCache, trash: Trash) -> Slot<'a> {
        Slot {
            index,
            cache,
            net: NetSlot::new(),
            sandbox_dir: None,
            tree: None,
            tree_tried: false,
            lower: None,
            lower_tried: false,
            trash,
        }
    }

    pub fn cache(&self) -> &'a BuildCache {
        self.cache
    }

    pub fn trash(&self) -> &Trash {
        &self.trash
    }

    /// The store directory of the next sandboxed build, whose closure is `inputs`; `user`:
    /// its build user (uid, gid), if any.
    pub fn sandbox_store(
        &mut self,
        store: &LocalStore,
        inputs: &[Input],
        user: Option<(u32, u32)>,
    ) -> Result<SandboxStore, BuildError> {
        let real_store_dir = &store.layout().real_store_dir;
        if self.sandbox_dir.is_none() {
            let name = SandboxDir::new_name(self.index);
            // A temporary root first: no collector (firn's or CppNix's) may take it.
            if let Ok(p) = StorePath::from_base_name(&name) {
                self.cache.add_temp_root(store, &p)?;
            }
            let d = SandboxDir::create(real_store_dir, name, user.map(|u| u.1)).map_err(|e| {
                BuildError::io("creating a sandbox directory in", real_store_dir, e)
            })?;
            self.sandbox_dir = Some(d);
        }
        let Some(dir) = self.sandbox_dir.as_mut() else {
            return Err(BuildError::Other(
                "the slot has no sandbox directory".into(),
            ));
        };
        let root = dir.root();
        let trash = dir.trash();
        // With a build user: the slot's store tree.
        if let (Some((_, gid)), false) = (user, self.tree_tried) {
            self.tree_tried = true;
            match StoreTree::create(&dir.path, real_store_dir, gid) {
                Ok(t) => self.tree = Some(t),
                Err(e) => tracing::debug!("not keeping the sandbox's store tree: {e}"),
            }
        }
        if let (Some(_), Some(tree)) = (user, self.tree.as_mut()) {
            match tree.prepare(inputs) {
                Ok(()) => {
                    let base = tree.base().to_path_buf();
                    return Ok(SandboxStore {
                        root,
                        view: StoreView::Tree { base: base.clone() },
                        out_dir: base,
                        dirs: None,
                        trash,
                    });
                }
                Err(e) => {
                    tracing::debug!("not keeping the sandbox's store tree: {e}");
                    self.tree = None;
                }
            }
        }
        // Otherwise an overlay, on the build's own directories.
        let dirs = dir
            .next_build(user)
            .map_err(|e| BuildError::io("setting up the sandbox in", &dir.path, e))?;
        if !self.lower_tried {
            self.lower_tried = true;
            match LowerDir::create(self.index, user.map(|u| u.1)) {
                Ok(l) => self.lower = l,
                Err(e) => tracing::debug!("not keeping the sandbox's lower layer: {e}"),
            }
        }
        let lower = match self.lower.as_mut().map(|l| l.sync(inputs)) {
            Some(Ok(())) => self.lower.as_ref().map(|l| l.path().to_path_buf()),
            Some(Err(e)) => {
                tracing::debug!("not keeping the sandbox's lower layer: {e}");
                self.lower = None;
                None
            }
            None => None,
        };
        Ok(SandboxStore {
            root,
            view: StoreView::Overlay {
                upper: dirs.upper.clone(),
                work: dirs.work.clone(),
                lower,
            },
            out_dir: dirs.upper.clone(),
            dirs: Some(dirs),
            trash,
        })
    }

    /// The namespaces to start a sandbox in: the slot's network namespace, and its mount
    /// namespace if the build's outputs appear in its store tree (`out_dir`).
    pub fn namespaces(&mut self, out_dir: Option<&Path>) -> (&mut NetSlot, Option<&MountNs>) {
        let mount = match (&self.tree, out_dir) {
            (Some(t), Some(d)) if d == t.base() => Some(t.mount_ns()),
            _ => None,
        };
        (&mut self.net, mount)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if let Some(d) = self.sandbox_dir.take() {
            self.trash.throw(Doomed {
                path: d.path,
                dirs: &["root", "trash", "ro"],
                stash: None,
            });
        }
    }
}
