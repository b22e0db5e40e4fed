//! Where an object met in a walk is, kept without building its path: the path of its directory
//! (shared by all its entries) and its name, held inline. The path itself is only made for a
//! message; a walk over many files allocates nothing per file, on either thread.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use firn_format::nar::MAX_NAME_LEN;

/// A directory's path (or the walked path itself) and, inside it, an entry's name.
#[derive(Clone)]
pub(crate) struct Place {
    dir: Arc<Path>,
    /// The name's length; 0 for the directory's path itself (names are never empty).
    len: u8,
    name: [u8; MAX_NAME_LEN],
}

impl Place {
    /// The path `dir` itself.
    pub(crate) fn at(dir: &Arc<Path>) -> Place {
        Place {
            dir: dir.clone(),
            len: 0,
            name: [0; MAX_NAME_LEN],
        }
    }

    /// The entry `name` of `dir`; a name longer than an entry name can be (which a directory
    /// never lists) stands for `dir` itself.
    pub(crate) fn entry(dir: &Arc<Path>, name: &[u8]) -> Place {
        let mut p = Place::at(dir);
        if let Ok(len) = u8::try_from(name.len()) {
            if usize::from(len) <= MAX_NAME_LEN {
                p.len = len;
                p.name[..name.len()].copy_from_slice(name);
            }
        }
        p
    }

    /// The full path.
    pub(crate) fn path(&self) -> PathBuf {
        match self.len {
            0 => self.dir.to_path_buf(),
            n => self
                .dir
                .join(OsStr::from_bytes(&self.name[..usize::from(n)])),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let d: Arc<Path> = Arc::from(Path::new("/a/b"));
        assert_eq!(Place::at(&d).path(), Path::new("/a/b"));
        assert_eq!(Place::entry(&d, b"c").path(), Path::new("/a/b/c"));
        let long = vec![b'n'; MAX_NAME_LEN];
        assert_eq!(
            Place::entry(&d, &long).path(),
            Path::new("/a/b").join(OsStr::from_bytes(&long))
        );
    }
}
