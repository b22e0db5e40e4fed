//! Build logs where CppNix (and `firn_build::log`) keep them: `<log dir>/drvs/<first two
//! characters of the .drv base name>/<the rest>`, bzip2-compressed (`.bz2`) or plain, or the
//! older flat `<log dir>/<base name>`. The base name is a validated store path name, so these
//! are always files directly inside the log directory's tree.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use firn_format::StorePath;

/// An open log file.
pub struct LogFile {
    pub file: File,
    pub path: PathBuf,
    /// bzip2-compressed?
    pub compressed: bool,
    /// The file's size.
    pub size: u64,
}

/// The log of `drv`, opened; `None` when there is none.
pub fn open_log(log_dir: &Path, drv: &StorePath) -> io::Result<Option<LogFile>> {
    let [bz, plain, flat] = firn_store::config::build_log_paths(log_dir, drv);
    let candidates = [(bz, true), (plain, false), (flat, false)];
    for (path, compressed) in candidates {
        match File::open(&path) {
            Ok(file) => {
                let meta = file.metadata()?;
                if !meta.is_file() {
                    continue;
                }
                return Ok(Some(LogFile {
                    file,
                    path,
                    compressed,
                    size: meta.len(),
                }));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_each_layout() {
        let dir = tempfile::tempdir().unwrap();
        let drv = StorePath::from_base_name("7rjj86a15146cq1d3qy068lml7n8ykzm-a.drv").unwrap();
        assert!(open_log(dir.path(), &drv).unwrap().is_none());
        std::fs::write(dir.path().join(drv.base_name()), "flat").unwrap();
        let l = open_log(dir.path(), &drv).unwrap().unwrap();
        assert!(!l.compressed && l.size == 4);
        let sub = dir.path().join("drvs/7r");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join("jj86a15146cq1d3qy068lml7n8ykzm-a.drv.bz2"), "bz").unwrap();
        let l = open_log(dir.path(), &drv).unwrap().unwrap();
        assert!(
            l.compressed
                && l.path
                    .ends_with("drvs/7r/jj86a15146cq1d3qy068lml7n8ykzm-a.drv.bz2")
        );
    }
}
