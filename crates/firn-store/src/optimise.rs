//! Store optimisation: identical regular files and symlinks are hard-linked through
//! `<store>/.links/<nix32 of the SHA-256 of the file's NAR>`, exactly the names and steps of
//! CppNix 2.8, so both implementations share `.links`: a file is linked into `.links` if its
//! hash is new, otherwise replaced by a hard link to the existing one (a temporary link in the
//! store, then a rename over the file), with its directory made writable meanwhile.

use std::collections::HashSet;
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use firn_format::HashAlgo;

use crate::error::{io_err, Result, StoreError};
use crate::local::LocalStore;
use crate::nar_fs;

/// What an optimisation achieved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OptimiseStats {
    pub files_linked: u64,
    /// The sizes of the files replaced by links (as CppNix reports "N freed").
    pub bytes_freed: u64,
}

/// Inodes that are already in `.links` (their files need no work).
type InodeHash = HashSet<u64>;

impl LocalStore {
    /// Hard-link identical files across every valid path (`nix-store --optimise`).
    pub fn optimise_store(&self) -> Result<OptimiseStats> {
        let mut stats = OptimiseStats::default();
        let mut inodes = self.load_inode_hash()?;
        for p in self.query_all_valid_paths()? {
            // Keep the GC away while we work on it; skip it if it was collected meanwhile.
            self.add_temp_root(&p)?;
            if !self.is_valid_path(&p)? {
                continue;
            }
            self.optimise_tree(&self.real_path(&p), &mut stats, &mut inodes)?;
        }
        Ok(stats)
    }

    /// Optimise one tree in the store (what `auto-optimise-store` does for a new path).
    pub fn optimise_path(&self, real: &Path) -> Result<OptimiseStats> {
        let mut stats = OptimiseStats::default();
        self.optimise_tree(real, &mut stats, &mut InodeHash::new())?;
        Ok(stats)
    }

    fn load_inode_hash(&self) -> Result<InodeHash> {
        use std::os::unix::fs::DirEntryExt;
        let dir = &self.layout().links_dir;
        let mut inodes = InodeHash::new();
        let rd = match fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(inodes),
            Err(e) => return Err(io_err("opening directory", dir)(e)),
        };
        for e in rd {
            inodes.insert(e.map_err(io_err("reading directory", dir))?.ino());
        }
        Ok(inodes)
    }

    fn optimise_tree(
        &self,
        path: &Path,
        stats: &mut OptimiseStats,
        inodes: &mut InodeHash,
    ) -> Result<()> {
        let meta = fs::symlink_metadata(path).map_err(io_err("getting status of", path))?;
        let ft = meta.file_type();
        if ft.is_dir() {
            use std::os::unix::fs::DirEntryExt;
            let mut names = Vec::new();
            for e in fs::read_dir(path).map_err(io_err("reading directory", path))? {
                let e = e.map_err(io_err("reading directory", path))?;
                // Already linked: nothing to do.
                if !inodes.contains(&e.ino()) {
                    names.push(e.file_name());
                }
            }
            for n in names {
                self.optimise_tree(&path.join(n), stats, inodes)?;
            }
            return Ok(());
        }
        if !(ft.is_file() || ft.is_symlink()) {
            return Ok(());
        }
        // A writable file in the store has been tampered with (or is still being written).
        if ft.is_file() && meta.mode() & 0o200 != 0 {
            tracing::warn!("skipping suspicious writable file '{}'", path.display());
            return Ok(());
        }
        if meta.nlink() > 1 && inodes.contains(&meta.ino()) {
            return Ok(());
        }
        // The NAR hash covers the executable bit, so files differing only in it stay apart.
        let (hash, _) = nar_fs::hash_path(path, HashAlgo::Sha256)?;
        let link = self.layout().links_dir.join(hash.to_nix32());
        if let Ok(lmeta) = fs::symlink_metadata(&link) {
            if lmeta.len() != meta.len() {
                tracing::warn!("removing corrupted link '{}'", link.display());
                let _ = fs::remove_file(&link);
            }
        }
        if fs::symlink_metadata(&link).is_err() {
            match fs::hard_link(path, &link) {
                Ok(()) => {
                    inodes.insert(meta.ino());
                    return Ok(());
                }
                // Someone else created it just now: link to theirs.
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                // A full directory index (ext4): this file just stays unshared.
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                    tracing::info!(
                        "cannot link '{}' to '{}': {e}",
                        link.display(),
                        path.display()
                    );
                    return Ok(());
                }
                Err(e) => return Err(io_err("creating link", &link)(e)),
            }
        }
        let lmeta = fs::symlink_metadata(&link).map_err(io_err("getting status of", &link))?;
        if lmeta.ino() == meta.ino() {
            return Ok(());
        }
        let parent = path.parent().unwrap_or(Path::new("/"));
        let real_store_dir = &self.layout().real_store_dir;
        let _restore = if parent != real_store_dir.as_path() {
            let pmode = fs::symlink_metadata(parent)
                .map_err(io_err("getting status of", parent))?
                .mode();
            fs::set_permissions(parent, fs::Permissions::from_mode((pmode & 0o7777) | 0o200))
                .map_err(io_err("making writable", parent))?;
            Some(ReadOnlyAgain(parent))
        } else {
            None
        };
        let tmp = real_store_dir.join(format!(".tmp-link-{}-{}", std::process::id(), random_u32()));
        match fs::hard_link(&link, &tmp) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EMLINK) => {
                // Too many links to one inode (likely an empty file): leave this one.
                if meta.len() != 0 {
                    tracing::info!("'{}' has the maximum number of links", link.display());
                }
                return Ok(());
            }
            Err(e) => return Err(io_err("creating temporary link", &tmp)(e)),
        }
        if let Err(e) = fs::rename(&tmp, path) {
            if let Err(e2) = fs::remove_file(&tmp) {
                tracing::error!("unable to unlink '{}': {e2}", tmp.display());
            }
            if e.raw_os_error() == Some(libc::EMLINK) {
                return Ok(());
            }
            return Err(StoreError::Io {
                op: "replacing with a link",
                path: path.to_path_buf(),
                source: e,
            });
        }
        stats.files_linked += 1;
        stats.bytes_freed += meta.len();
        Ok(())
    }
}

/// Puts a directory back to its canonical store state (mode 0555 or 0444, mtime 1) when
/// dropped.
struct ReadOnlyAgain<'a>(&'a Path);

impl Drop for ReadOnlyAgain<'_> {
    fn drop(&mut self) {
        let p = self.0;
        if let Ok(m) = fs::symlink_metadata(p) {
            let mode = m.mode() & 0o7777;
            if mode != 0o444 && mode != 0o555 {
                let new = 0o444 | if m.mode() & 0o100 != 0 { 0o111 } else { 0 };
                if let Err(e) = fs::set_permissions(p, fs::Permissions::from_mode(new)) {
                    tracing::warn!("cannot make '{}' read-only again: {e}", p.display());
                }
            }
        }
        if let Err(e) = crate::canon::canonicalise_times(p) {
            tracing::warn!("{e}");
        }
    }
}

/// A random number for temporary names (from the kernel's hashing keys, no extra crate).
fn random_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    );
    h.finish() as u32
}
