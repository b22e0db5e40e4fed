//! Store optimisation: identical regular files (and symlinks) are hard-linked through
//! `<store>/.links/<nix32 of the SHA-256 of the file's NAR>`, the same names CppNix uses, so
//! both implementations share `.links`.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use firn_format::HashAlgo;

use crate::error::{io_err, Result};
use crate::local::LocalStore;
use crate::nar_fs;

/// What an optimisation achieved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OptimiseStats {
    pub files_linked: u64,
    pub bytes_freed: u64,
}

impl LocalStore {
    /// Hard-link identical files across every valid path.
    pub fn optimise_store(&self) -> Result<OptimiseStats> {
        let mut stats = OptimiseStats::default();
        let mut seen = HashSet::new();
        for p in self.query_all_valid_paths()? {
            self.add_temp_root(&p)?;
            if !self.is_valid_path(&p)? {
                continue;
            }
            self.optimise_tree(&self.real_path(&p), &mut stats, &mut seen)?;
        }
        Ok(stats)
    }

    /// Optimise one path (used with `auto-optimise-store`).
    pub fn optimise_path(&self, real: &Path) -> Result<OptimiseStats> {
        let mut stats = OptimiseStats::default();
        self.optimise_tree(real, &mut stats, &mut HashSet::new())?;
        Ok(stats)
    }

    fn optimise_tree(
        &self,
        path: &Path,
        stats: &mut OptimiseStats,
        seen: &mut HashSet<(u64, u64)>,
    ) -> Result<()> {
        let meta = fs::symlink_metadata(path).map_err(io_err("getting status of", path))?;
        let ft = meta.file_type();
        if ft.is_dir() {
            for e in fs::read_dir(path).map_err(io_err("reading directory", path))? {
                let e = e.map_err(io_err("reading directory", path))?;
                self.optimise_tree(&e.path(), stats, seen)?;
            }
            return Ok(());
        }
        // Regular files and, as on Linux CppNix does too, symlinks are linked.
        if !ft.is_file() && !ft.is_symlink() {
            return Ok(());
        }
        // A writable file may still be changing (e.g. a build output being written).
        if ft.is_file() && meta.mode() & 0o200 != 0 {
            return Ok(());
        }
        // Already linked to an inode we saw in this run.
        if !seen.insert((meta.dev(), meta.ino())) {
            return Ok(());
        }
        let (h, _) = nar_fs::hash_path(path, HashAlgo::Sha256)?;
        let links = &self.layout().links_dir;
        let link = links.join(h.to_nix32());
        match fs::hard_link(path, &link) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e)
                if e.raw_os_error() == Some(libc::EMLINK)
                    || e.raw_os_error() == Some(libc::ENOSPC) =>
            {
                return Ok(())
            }
            Err(e) => return Err(io_err("creating link", &link)(e)),
        }
        let lmeta = fs::symlink_metadata(&link).map_err(io_err("getting status of", &link))?;
        if lmeta.ino() == meta.ino() && lmeta.dev() == meta.dev() {
            return Ok(());
        }
        if lmeta.len() != meta.len() {
            // Corrupt or foreign link: leave it.
            tracing::warn!("'{}' has the wrong size; not linking", link.display());
            return Ok(());
        }
        let parent = path.parent().unwrap_or(Path::new("/"));
        let pmeta = fs::metadata(parent).map_err(io_err("getting status of", parent))?;
        let restore_perm = pmeta.mode() & 0o200 == 0;
        if restore_perm {
            fs::set_permissions(
                parent,
                fs::Permissions::from_mode((pmeta.mode() & 0o7777) | 0o200),
            )
            .map_err(io_err("making writable", parent))?;
        }
        let tmp = self.layout().real_store_dir.join(format!(
            ".tmp-link-{}-{}",
            std::process::id(),
            meta.ino()
        ));
        let r = fs::hard_link(&link, &tmp)
            .map_err(io_err("creating temporary link", &tmp))
            .and_then(|()| {
                fs::rename(&tmp, path).map_err(|e| {
                    let _ = fs::remove_file(&tmp);
                    io_err("replacing with a link", path)(e)
                })
            });
        if restore_perm {
            let _ = fs::set_permissions(parent, fs::Permissions::from_mode(pmeta.mode() & 0o7777));
            // Keep the directory's canonical timestamp.
            let _ = crate::canon::canonicalise_times(parent);
        }
        match r {
            Ok(()) => {
                stats.files_linked += 1;
                if meta.nlink() == 1 {
                    stats.bytes_freed += meta.len();
                }
                Ok(())
            }
            Err(e) => {
                if let crate::error::StoreError::Io { source, .. } = &e {
                    if source.raw_os_error() == Some(libc::EMLINK) {
                        return Ok(());
                    }
                }
                Err(e)
            }
        }
    }
}
