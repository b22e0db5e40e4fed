//! Finding GC roots as CppNix does: symlinks under `gcroots/` and `profiles/` (with indirect
//! roots through `gcroots/auto`), runtime roots of live processes (from `/proc`), and the
//! temporary roots of live processes.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use firn_format::StorePath;

use crate::error::{io_err, Result};
use crate::local::LocalStore;
use crate::lock::{lock_file, LockType};

/// Root store path -> the links (or `{temp:PID}`, `{censored}`, `/proc/...`) that hold it.
pub type Roots = BTreeMap<StorePath, BTreeSet<String>>;

const CENSORED: &str = "{censored}";

impl LocalStore {
    /// All roots: permanent, runtime and temporary.
    pub fn find_roots(&self, censor: bool) -> Result<Roots> {
        let mut roots = self.find_roots_no_temp(censor)?;
        for (p, links) in self.find_temp_roots(censor)? {
            roots.entry(p).or_default().extend(links);
        }
        Ok(roots)
    }

    /// Roots under gcroots/ and profiles/, and runtime roots.
    pub fn find_roots_no_temp(&self, censor: bool) -> Result<Roots> {
        let mut roots = Roots::new();
        let l = self.layout().clone();
        self.find_roots_in(&l.gcroots_dir, &mut roots)?;
        self.find_roots_in(&l.profiles_dir, &mut roots)?;
        self.find_runtime_roots(&mut roots, censor)?;
        Ok(roots)
    }

    fn found_root(&self, link: &Path, target: &str, roots: &mut Roots) -> Result<()> {
        if let Ok((p, _)) = self.store_dir().parse_inside(target) {
            if self.is_valid_path(&p)? {
                roots
                    .entry(p)
                    .or_default()
                    .insert(link.to_string_lossy().into_owned());
            } else {
                tracing::info!(
                    "skipping invalid root from '{}' to '{}'",
                    link.display(),
                    target
                );
            }
        }
        Ok(())
    }

    fn find_roots_in(&self, path: &Path, roots: &mut Roots) -> Result<()> {
        let meta = match fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(_) => return Ok(()),
        };
        let ft = meta.file_type();
        if ft.is_dir() {
            let rd = match fs::read_dir(path) {
                Ok(rd) => rd,
                Err(_) => return Ok(()),
            };
            let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
            entries.sort();
            for e in entries {
                self.find_roots_in(&e, roots)?;
            }
        } else if ft.is_symlink() {
            let target = match fs::read_link(path) {
                Ok(t) => t.to_string_lossy().into_owned(),
                Err(_) => return Ok(()),
            };
            if self.store_dir().is_in_store(&target) {
                return self.found_root(path, &target, roots);
            }
            // An indirect root: a link to a link elsewhere (e.g. ./result).
            let abs = if target.starts_with('/') {
                PathBuf::from(&target)
            } else {
                path.parent().unwrap_or(Path::new("/")).join(&target)
            };
            match fs::symlink_metadata(&abs) {
                Err(_) => {
                    let auto = self.layout().gcroots_dir.join("auto");
                    if path.starts_with(&auto) {
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
                        let t2 = t2.to_string_lossy().into_owned();
                        if self.store_dir().is_in_store(&t2) {
                            self.found_root(&abs, &t2, roots)?;
                        }
                    }
                }
                Ok(_) => {}
            }
        } else if ft.is_file() {
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

    /// Store paths that live processes use (executables, cwd, open files, mapped files,
    /// environment), as CppNix finds them in `/proc`.
    fn find_runtime_roots(&self, roots: &mut Roots, censor: bool) -> Result<()> {
        let mut unchecked: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let sd = self.store_dir().as_str().to_string();
        let me = std::process::id().to_string();
        if let Ok(rd) = fs::read_dir("/proc") {
            for e in rd.flatten() {
                let pid = e.file_name().to_string_lossy().into_owned();
                if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == me {
                    continue;
                }
                let base = format!("/proc/{pid}");
                for l in ["exe", "cwd"] {
                    read_proc_link(&format!("{base}/{l}"), &mut unchecked);
                }
                if let Ok(fds) = fs::read_dir(format!("{base}/fd")) {
                    for fd in fds.flatten() {
                        let f = format!("{base}/fd/{}", fd.file_name().to_string_lossy());
                        read_proc_link(&f, &mut unchecked);
                    }
                }
                let maps = format!("{base}/maps");
                if let Ok(text) = fs::read_to_string(&maps) {
                    for line in text.lines() {
                        let fields: Vec<&str> = line.split_whitespace().collect();
                        if fields.len() >= 6 && fields[5].starts_with('/') {
                            unchecked
                                .entry(fields[5].to_string())
                                .or_default()
                                .insert(maps.clone());
                        }
                    }
                }
                let env = format!("{base}/environ");
                if let Ok(bytes) = fs::read(&env) {
                    let text = String::from_utf8_lossy(&bytes);
                    for p in find_store_paths(&text, &sd) {
                        unchecked.entry(p).or_default().insert(env.clone());
                    }
                }
            }
        }
        for f in [
            "/proc/sys/kernel/modprobe",
            "/proc/sys/kernel/fbsplash",
            "/proc/sys/kernel/poweroff_cmd",
        ] {
            if let Ok(t) = fs::read_to_string(f) {
                unchecked.entry(t).or_default().insert(f.to_string());
            }
        }
        for (target, links) in unchecked {
            if !self.store_dir().is_in_store(&target) {
                continue;
            }
            if let Ok((p, _)) = self.store_dir().parse_inside(&target) {
                if !self.is_valid_path(&p)? {
                    continue;
                }
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

    /// Temporary roots of live processes; stale files (whose process died) are removed.
    pub fn find_temp_roots(&self, censor: bool) -> Result<Roots> {
        let mut roots = Roots::new();
        let dir = self.layout().temproots_dir.clone();
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(roots),
            Err(e) => return Err(io_err("reading directory", &dir)(e)),
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let path = e.path();
            let mut f = match fs::OpenOptions::new().read(true).write(true).open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err("opening temporary roots file", &path)(e)),
            };
            if name == std::process::id().to_string() {
                // Our own file: we hold its lock ourselves.
            } else if lock_file(&f, LockType::Write, false, &path)? {
                tracing::info!("removing stale temporary roots file '{}'", path.display());
                let _ = fs::remove_file(&path);
                use std::io::Write;
                let _ = f.write_all(b"d");
                continue;
            }
            let mut contents = Vec::new();
            use std::io::Read;
            f.read_to_end(&mut contents)
                .map_err(io_err("reading temporary roots file", &path))?;
            for root in contents.split(|b| *b == 0).filter(|r| !r.is_empty()) {
                let s = String::from_utf8_lossy(root);
                if let Ok(p) = self.store_dir().parse(&s) {
                    roots.entry(p).or_default().insert(if censor {
                        CENSORED.to_string()
                    } else {
                        format!("{{temp:{name}}}")
                    });
                }
            }
        }
        Ok(roots)
    }

    /// Make `link` a symlink to `path` and register it as an indirect root
    /// (`gcroots/auto/<nix32 sha1 of the link path>`), as `--add-root` does.
    pub fn add_perm_root(&self, path: &StorePath, link: &Path) -> Result<PathBuf> {
        let link_s = link.to_string_lossy().into_owned();
        if self.store_dir().is_in_store(&link_s) {
            return Err(crate::error::StoreError::Other(format!(
                "creating a garbage collector root ({link_s}) in the Nix store is forbidden (are you running nix-build inside the store?)"
            )));
        }
        self.add_temp_root(path)?;
        if let Ok(m) = fs::symlink_metadata(link) {
            let points_into_store = m.file_type().is_symlink()
                && fs::read_link(link)
                    .map(|t| self.store_dir().is_in_store(&t.to_string_lossy()))
                    .unwrap_or(false);
            if !points_into_store {
                return Err(crate::error::StoreError::Other(format!(
                    "cannot create symlink '{link_s}'; already exists"
                )));
            }
        }
        make_symlink(link, Path::new(&self.store_dir().display(path)))?;
        self.add_indirect_root(link)?;
        Ok(link.to_path_buf())
    }

    /// Register `link` (a symlink outside the store) as an indirect root.
    pub fn add_indirect_root(&self, link: &Path) -> Result<()> {
        let h = firn_format::Hash::digest(
            firn_format::HashAlgo::Sha1,
            link.to_string_lossy().as_bytes(),
        );
        let auto = self.layout().gcroots_dir.join("auto").join(h.to_nix32());
        make_symlink(&auto, link)
    }
}

/// Atomically make `link` point to `target` (through a temporary name and a rename).
fn make_symlink(link: &Path, target: &Path) -> Result<()> {
    if let Some(parent) = link.parent() {
        fs::create_dir_all(parent).map_err(io_err("creating directory", parent))?;
    }
    let mut tmp = link.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}-{}", std::process::id(), rand_suffix()));
    let tmp = PathBuf::from(tmp);
    std::os::unix::fs::symlink(target, &tmp).map_err(io_err("creating symbolic link", &tmp))?;
    fs::rename(&tmp, link).map_err(io_err("renaming symbolic link to", link))?;
    Ok(())
}

fn rand_suffix() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0)
}

fn read_proc_link(file: &str, out: &mut BTreeMap<String, BTreeSet<String>>) {
    if let Ok(t) = fs::read_link(file) {
        let t = t.to_string_lossy().into_owned();
        if t.starts_with('/') {
            out.entry(t).or_default().insert(file.to_string());
        }
    }
}

/// Store paths mentioned in `text` (`<storeDir>/<hash>-<name chars>`).
fn find_store_paths(text: &str, store_dir: &str) -> Vec<String> {
    let mut out = Vec::new();
    let prefix = format!("{store_dir}/");
    let mut rest = text;
    while let Some(i) = rest.find(&prefix) {
        let after = &rest[i + prefix.len()..];
        let len = after
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || b"+-._?=".contains(b))
            .count();
        if len > 0 {
            out.push(format!("{prefix}{}", &after[..len]));
        }
        rest = &after[len..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_paths_in_environment() {
        let env = "PATH=/nix/store/abc-x/bin:/usr/bin\0FOO=/nix/store/def-y\0";
        assert_eq!(
            find_store_paths(env, "/nix/store"),
            vec!["/nix/store/abc-x", "/nix/store/def-y"]
        );
    }
}
