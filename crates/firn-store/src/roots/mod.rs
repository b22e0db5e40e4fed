//! Finding GC roots as CppNix does: symlinks under `gcroots/` and `profiles/` (with indirect
//! roots through `gcroots/auto`), runtime roots of live processes (from `/proc`), and the
//! temporary roots of live processes; and making permanent and indirect roots.

mod runtime;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use firn_format::{Hash, HashAlgo, StorePath};

use crate::error::{io_err, Result, StoreError};
use crate::local::LocalStore;
use crate::lock::{lock_file, LockType};

/// Root store path -> what holds it: link paths, `/proc/...` files, `{temp:PID}`, or
/// `{censored}` (as `nix-store --gc --print-roots` prints them).
pub type Roots = BTreeMap<StorePath, BTreeSet<String>>;

/// What stands for a runtime or temporary root when the caller may not see its details.
pub const CENSORED: &str = "{censored}";

impl LocalStore {
    /// All roots: permanent, runtime and temporary.
    pub fn find_roots(&self, censor: bool) -> Result<Roots> {
        let mut roots = self.find_roots_no_temp(censor)?;
        for (p, links) in self.find_temp_roots(censor)? {
            roots.entry(p).or_default().extend(links);
        }
        Ok(roots)
    }

    /// Roots under `gcroots/` and `profiles/`, and runtime roots.
    pub fn find_roots_no_temp(&self, censor: bool) -> Result<Roots> {
        let mut roots = Roots::new();
        let l = self.layout();
        self.find_roots_in(&l.gcroots_dir, &mut roots)?;
        self.find_roots_in(&l.profiles_dir, &mut roots)?;
        self.find_runtime_roots(&mut roots, censor)?;
        Ok(roots)
    }

    /// The store path `target` (a path in or below a store path) is in, if it is a valid one.
    fn valid_store_path_of(&self, target: &str) -> Result<Option<StorePath>> {
        match self.store_dir().parse_inside(target) {
            Ok((p, _)) if self.is_valid_path(&p)? => Ok(Some(p)),
            _ => Ok(None),
        }
    }

    fn found_root(&self, link: &Path, target: &str, roots: &mut Roots) -> Result<()> {
        if self.store_dir().parse_inside(target).is_err() {
            return Ok(());
        }
        match self.valid_store_path_of(target)? {
            Some(p) => {
                roots
                    .entry(p)
                    .or_default()
                    .insert(link.to_string_lossy().into_owned());
            }
            None => tracing::info!(
                "skipping invalid root from '{}' to '{}'",
                link.display(),
                target
            ),
        }
        Ok(())
    }

    fn find_roots_in(&self, path: &Path, roots: &mut Roots) -> Result<()> {
        let Ok(meta) = fs::symlink_metadata(path) else {
            return Ok(());
        };
        let ft = meta.file_type();
        if ft.is_dir() {
            let Ok(rd) = fs::read_dir(path) else {
                tracing::info!("cannot read potential root '{}'", path.display());
                return Ok(());
            };
            let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
            entries.sort();
            for e in entries {
                self.find_roots_in(&e, roots)?;
            }
        } else if ft.is_symlink() {
            let Ok(target) = fs::read_link(path) else {
                return Ok(());
            };
            let target = target.to_string_lossy().into_owned();
            if self.store_dir().is_in_store(&target) {
                return self.found_root(path, &target, roots);
            }
            // An indirect root: a link to a link elsewhere (e.g. gcroots/auto/X -> ./result).
            let abs = canon_path(&path.parent().unwrap_or(Path::new("/")).join(&target));
            match fs::symlink_metadata(&abs) {
                Err(_) => {
                    if path.starts_with(self.layout().gcroots_dir.join("auto")) {
                        tracing::info!(
                            "removing stale link from '{}' to '{}'",
                            path.display(),
                            abs.display()
                        );
                        let _ = fs::remove_file(path);
                    }
                }
                Ok(m) if m.file_type().is_symlink() => {
                    if let Ok(t2) = fs::read_link(&abs) {
                        let t2 = t2.to_string_lossy();
                        if self.store_dir().is_in_store(&t2) {
                            self.found_root(&abs, &t2, roots)?;
                        }
                    }
                }
                Ok(_) => {}
            }
        } else if ft.is_file() {
            // A regular file named like a store path roots that path.
            if let Some(name) = path.file_name() {
                if let Ok(p) = StorePath::from_base_name(&name.to_string_lossy()) {
                    if self.is_valid_path(&p)? {
                        roots
                            .entry(p)
                            .or_default()
                            .insert(path.to_string_lossy().into_owned());
                    }
                }
            }
        }
        Ok(())
    }

    /// Store paths that live processes use (including this one), as CppNix finds them in
    /// `/proc`. For a chroot store, paths under its real store directory count too.
    fn find_runtime_roots(&self, roots: &mut Roots, censor: bool) -> Result<()> {
        let logical = self.store_dir().as_str().to_string();
        let real = self.layout().real_store_dir.to_string_lossy().into_owned();
        let dirs: Vec<&str> = if real == logical {
            vec![&logical]
        } else {
            vec![&logical, &real]
        };
        for (target, links) in runtime::scan_proc(&dirs) {
            let target = match target.strip_prefix(real.as_str()) {
                Some(rest) if real != logical && rest.starts_with('/') => {
                    format!("{logical}{rest}")
                }
                _ => target,
            };
            if !self.store_dir().is_in_store(&target) {
                continue;
            }
            if let Some(p) = self.valid_store_path_of(&target)? {
                let e = roots.entry(p).or_default();
                if censor {
                    e.insert(CENSORED.to_string());
                } else {
                    e.extend(links);
                }
            }
        }
        Ok(())
    }

    /// Temporary roots of live processes (firn's and CppNix's); the files of dead processes
    /// are removed.
    pub fn find_temp_roots(&self, censor: bool) -> Result<Roots> {
        let mut roots = Roots::new();
        let dir = &self.layout().temproots_dir;
        let rd = match fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(roots),
            Err(e) => return Err(io_err("reading directory", dir)(e)),
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                // Hidden files keep the directory alive for some package managers.
                continue;
            }
            let path = e.path();
            let mut f = match fs::OpenOptions::new().read(true).write(true).open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err("opening temporary roots file", &path)(e)),
            };
            // The write lock can only be had if the owner is gone (this includes a file of
            // our own process whose store object was dropped).
            if lock_file(&f, LockType::Write, false, &path)? {
                tracing::info!("removing stale temporary roots file '{}'", path.display());
                let _ = fs::remove_file(&path);
                let _ = f.write_all(b"d");
                continue;
            }
            let mut contents = Vec::new();
            f.read_to_end(&mut contents)
                .map_err(io_err("reading temporary roots file", &path))?;
            let pid: String = name.chars().take_while(|c| c.is_ascii_digit()).collect();
            for root in contents.split(|b| *b == 0).filter(|r| !r.is_empty()) {
                let s = String::from_utf8_lossy(root);
                if let Ok(p) = self.store_dir().parse(&s) {
                    roots.entry(p).or_default().insert(if censor {
                        CENSORED.to_string()
                    } else {
                        format!("{{temp:{pid}}}")
                    });
                }
            }
        }
        Ok(roots)
    }

    /// Make `link` a symlink to `path` and register it as an indirect root, as
    /// `nix-store --add-root` does. Returns the link, made absolute and canonical.
    pub fn add_perm_root(&self, path: &StorePath, link: &Path) -> Result<PathBuf> {
        let link = absolute(link)?;
        let link_s = link.to_string_lossy().into_owned();
        if self.store_dir().is_in_store(&link_s) {
            return Err(StoreError::Other(format!(
                "creating a garbage collector root ({link_s}) in the Nix store is forbidden (are you running nix-build inside the store?)"
            )));
        }
        // Superfluous if the caller registered it, but a GC may be running right now.
        self.add_temp_root(path)?;
        if let Ok(m) = fs::symlink_metadata(&link) {
            let points_into_store = m.file_type().is_symlink()
                && fs::read_link(&link)
                    .is_ok_and(|t| self.store_dir().is_in_store(&t.to_string_lossy()));
            if !points_into_store {
                return Err(StoreError::Other(format!(
                    "cannot create symlink '{link_s}'; already exists"
                )));
            }
        }
        make_symlink(&link, Path::new(&self.store_dir().display(path)))?;
        self.add_indirect_root(&link)?;
        Ok(link)
    }

    /// Register `link` (a symlink outside the store, made absolute) as an indirect root:
    /// `gcroots/auto/<nix32 of the SHA-1 of the link's path>` pointing to it.
    pub fn add_indirect_root(&self, link: &Path) -> Result<()> {
        let link = absolute(link)?;
        make_symlink(&self.indirect_root_name(&link), &link)
    }

    /// Where `add_indirect_root` records an (absolute, canonical) link.
    pub fn indirect_root_name(&self, link: &Path) -> PathBuf {
        let h = Hash::digest(HashAlgo::Sha1, link.to_string_lossy().as_bytes());
        self.layout().gcroots_dir.join("auto").join(h.to_nix32())
    }
}

/// `path` made absolute (against the working directory) and canonical.
fn absolute(path: &Path) -> Result<PathBuf> {
    if path.is_absolute() {
        return Ok(canon_path(path));
    }
    let cwd = std::env::current_dir().map_err(io_err("getting the current directory for", path))?;
    Ok(canon_path(&cwd.join(path)))
}

/// Remove `.`, `..` and repeated slashes from an absolute path, without following symlinks.
pub fn canon_path(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// Atomically make `link` point to `target` (through a temporary name and a rename).
fn make_symlink(link: &Path, target: &Path) -> Result<()> {
    if let Some(parent) = link.parent() {
        fs::create_dir_all(parent).map_err(io_err("creating directory", parent))?;
    }
    let mut tmp = link.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}-{}", std::process::id(), unique_suffix()));
    let tmp = PathBuf::from(tmp);
    std::os::unix::fs::symlink(target, &tmp).map_err(io_err("creating symbolic link", &tmp))?;
    fs::rename(&tmp, link).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_err("renaming a symbolic link to", link)(e)
    })
}

fn unique_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{SystemTime, UNIX_EPOCH};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    nanos ^ (COUNTER.fetch_add(1, Ordering::Relaxed) << 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_paths() {
        assert_eq!(canon_path(Path::new("/a/./b//c/../d")), Path::new("/a/b/d"));
        assert_eq!(canon_path(Path::new("/../x")), Path::new("/x"));
        assert_eq!(canon_path(Path::new("/")), Path::new("/"));
    }

    #[test]
    fn relative_links_are_made_absolute() {
        let cwd = std::env::current_dir().expect("a working directory");
        assert_eq!(
            absolute(Path::new("./x/../result")).expect("absolute"),
            cwd.join("result")
        );
        assert_eq!(
            absolute(Path::new("/a/./b")).expect("absolute"),
            Path::new("/a/b")
        );
    }
}
