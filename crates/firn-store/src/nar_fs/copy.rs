//! Copying a tree into the store while hashing its NAR, in one pass: the copy is created
//! already canonical, so adding a path needs no second walk. The walk is the one that dumps
//! and hashes ([`super::walk`]): each file is read once, into the buffer being hashed, and
//! written to the copy from there.

use std::path::Path;

use firn_format::{Hash, HashAlgo};

use super::NarFsError;

/// Copy the tree at `src` to `dst` (which must not exist) in one pass, returning the NAR hash
/// and NAR size of `src` as it was read. Symlinks are copied, never followed. The copy is
/// already canonical (modes 0444/0555, modification time 1).
pub fn copy_path_hashed(src: &Path, dst: &Path, algo: HashAlgo) -> Result<(Hash, u64), NarFsError> {
    let ((), h, n) =
        crate::pipe::hash_produced(algo, |out| super::walk::walk(src, out, None, Some(dst)))?;
    Ok((h, n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn copy_is_canonical_and_hashes_the_source() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        fs::create_dir_all(src.join("sub/deeper")).unwrap();
        fs::write(src.join("sub/f"), b"file").unwrap();
        fs::write(src.join("x"), b"#!").unwrap();
        fs::set_permissions(src.join("x"), fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::symlink("sub/f", src.join("l")).unwrap();
        let dst = d.path().join("dst");
        let (h, n) = copy_path_hashed(&src, &dst, HashAlgo::Sha256).unwrap();
        assert_eq!(
            (h, n),
            super::super::hash_path(&src, HashAlgo::Sha256).unwrap()
        );
        let (mut a, mut b) = (Vec::new(), Vec::new());
        super::super::dump_path(&src, &mut a).unwrap();
        super::super::dump_path(&dst, &mut b).unwrap();
        assert_eq!(a, b);
        for (p, mode) in [
            ("", 0o555),
            ("sub", 0o555),
            ("sub/deeper", 0o555),
            ("sub/f", 0o444),
            ("x", 0o555),
        ] {
            let m = fs::symlink_metadata(dst.join(p)).unwrap();
            assert_eq!(m.mode() & 0o7777, mode, "mode of {p:?}");
            assert_eq!(m.mtime(), 1, "time of {p:?}");
        }
        assert_eq!(fs::symlink_metadata(dst.join("l")).unwrap().mtime(), 1);
        // The destination must not exist.
        assert!(copy_path_hashed(&src, &dst, HashAlgo::Sha256).is_err());
    }
}
