//! `file://DIR`: a binary cache in a local directory, laid out as CppNix's (`nix-cache-info`,
//! `*.narinfo`, `nar/`, `log/`, `realisations/`). Files are written to a temporary name in
//! the same directory and renamed into place; they are world-readable, so a web server can
//! serve the directory as it is.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{check_key, Backend, Upload};
use crate::{CacheError, Result};

pub struct FileBackend {
    dir: PathBuf,
    name: String,
    counter: AtomicU64,
    pid: u32,
}

impl FileBackend {
    pub fn new(dir: PathBuf) -> FileBackend {
        FileBackend {
            name: format!("file://{}", dir.display()),
            dir,
            counter: AtomicU64::new(0),
            pid: std::process::id(),
        }
    }

    /// Create the directory and its `nar/`, `realisations/` and `log/` subdirectories (as
    /// CppNix makes them).
    pub fn create_dirs(&self) -> Result<()> {
        for d in [
            self.dir.clone(),
            self.dir.join("nar"),
            self.dir.join("realisations"),
            self.dir.join("log"),
        ] {
            fs::create_dir_all(&d).map_err(|e| self.io("creating directory", &d, e))?;
        }
        Ok(())
    }

    fn io(&self, op: &'static str, p: &Path, e: io::Error) -> CacheError {
        CacheError::Io {
            op,
            key: p.display().to_string(),
            cache: self.name.clone(),
            source: e,
        }
    }

    fn temp_name(&self, target: &Path) -> PathBuf {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut s = target.as_os_str().to_owned();
        s.push(format!(".tmp.{}.{n}", self.pid));
        PathBuf::from(s)
    }
}

impl Backend for FileBackend {
    fn list_top(&self) -> Result<Option<Vec<String>>> {
        let entries = fs::read_dir(&self.dir).map_err(|e| self.io("listing", &self.dir, e))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| self.io("listing", &self.dir, e))?;
            // Names that are not UTF-8 are no cache's files.
            if let Ok(name) = entry.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(Some(names))
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn get(&self, key: &str) -> Result<Option<Box<dyn Read + Send>>> {
        check_key(key, &self.name)?;
        let p = self.dir.join(key);
        match fs::File::open(&p) {
            Ok(f) => Ok(Some(Box::new(io::BufReader::with_capacity(1 << 16, f)))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io("opening", &p, e)),
        }
    }

    fn exists(&self, key: &str) -> Result<bool> {
        check_key(key, &self.name)?;
        let p = self.dir.join(key);
        match fs::symlink_metadata(&p) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.io("checking", &p, e)),
        }
    }

    fn put(&self, key: &str, data: Upload<'_>, _mime: &str) -> Result<()> {
        check_key(key, &self.name)?;
        let target = self.dir.join(key);
        // `nar/` and the top exist; other directories (`log/`, `debuginfo/`) on demand.
        if let Some(parent) = target
            .parent()
            .filter(|p| *p != self.dir && *p != self.dir.join("nar"))
        {
            fs::create_dir_all(parent).map_err(|e| self.io("creating directory", parent, e))?;
        }
        match data {
            Upload::File { path, .. } if path.parent() == target.parent() => {
                fs::rename(path, &target).map_err(|e| self.io("renaming", path, e))
            }
            data => {
                let tmp = self.temp_name(&target);
                let r = (|| -> io::Result<()> {
                    let mut f = fs::File::create(&tmp)?;
                    match data {
                        Upload::Bytes(b) => f.write_all(b)?,
                        Upload::File { path, .. } => {
                            io::copy(&mut fs::File::open(path)?, &mut f)?;
                        }
                    }
                    f.flush()?;
                    fs::rename(&tmp, &target)
                })();
                if let Err(e) = r {
                    let _ = fs::remove_file(&tmp);
                    return Err(self.io("writing", &target, e));
                }
                Ok(())
            }
        }
    }

    fn staging_dir(&self) -> Option<PathBuf> {
        Some(self.dir.join("nar"))
    }
}
