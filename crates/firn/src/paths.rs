//! Turning command-line arguments into store paths, as Nix does, and small output helpers.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use firn_format::{StoreDir, StorePath};
use firn_store::{LocalStore, ValidPathInfo};

/// Make `s` absolute against the current directory and normalise `.`/`..` lexically (Nix's
/// `absPath` + `canonPath`).
pub fn absolute(s: &str) -> Result<String> {
    let p = if s.starts_with('/') {
        PathBuf::from(s)
    } else {
        std::env::current_dir()
            .context("getting the current directory")?
            .join(s)
    };
    Ok(canon(&p.to_string_lossy()))
}

/// The current directory, as a string.
pub fn cwd() -> Result<String> {
    Ok(std::env::current_dir()
        .context("getting the current directory")?
        .to_string_lossy()
        .into_owned())
}

/// Lexically normalise an absolute path: collapse `//`, drop `.`, resolve `..`.
pub use firn_syntax::parser::canon_path as canon;

/// Nix's `followLinksToStorePath`: follow symlinks (e.g. `./result`) until the path is in the
/// store, then take the store path it is in.
pub fn follow_links_to_store_path(sd: &StoreDir, s: &str) -> Result<StorePath> {
    let mut path = absolute(s)?;
    let mut hops = 0;
    while !sd.is_in_store(&path) {
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(_) => break,
        };
        if !meta.file_type().is_symlink() {
            break;
        }
        hops += 1;
        if hops > 1024 {
            bail!("too many symbolic links at '{s}'");
        }
        let target =
            std::fs::read_link(&path).with_context(|| format!("reading symbolic link '{path}'"))?;
        let target = target.to_string_lossy();
        path = if target.starts_with('/') {
            canon(&target)
        } else {
            let dir = Path::new(&path)
                .parent()
                .map(|d| d.to_string_lossy().into_owned())
                .unwrap_or_else(|| "/".into());
            canon(&format!("{dir}/{target}"))
        };
    }
    let (sp, _) = sd
        .parse_inside(&path)
        .with_context(|| format!("path '{path}' is not in the Nix store"))?;
    Ok(sp)
}

/// The path info of a valid path, or Nix's error for an invalid one.
pub fn path_info(store: &LocalStore, p: &StorePath) -> Result<ValidPathInfo> {
    match store.query_path_info(p)? {
        Some(i) => Ok(i),
        None => bail!("path '{}' is not valid", store.store_dir().display(p)),
    }
}

/// What CppNix says after deleting garbage: the `.links` savings, then the summary.
pub fn print_gc_summary(
    out: &mut impl std::io::Write,
    res: &firn_store::gc::GcResults,
) -> std::io::Result<()> {
    eprintln!(
        "note: currently hard linking saves {:.2} MiB",
        res.hard_linking_saves as f64 / (1024.0 * 1024.0)
    );
    writeln!(
        out,
        "{} store paths deleted, {} freed",
        res.paths.len(),
        show_bytes(res.bytes_freed)
    )
}

/// `showBytes`: a byte count in MiB with two decimals.
pub fn show_bytes(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canon_paths() {
        assert_eq!(canon("/a//b/./c/../d/"), "/a/b/d");
        assert_eq!(canon("/.."), "/");
    }

    #[test]
    fn follow_store_paths() {
        let sd = StoreDir::default();
        let s = "/nix/store/ffffffffffffffffffffffffffffffff-x/bin/sh";
        assert_eq!(
            follow_links_to_store_path(&sd, s).unwrap().base_name(),
            "ffffffffffffffffffffffffffffffff-x"
        );
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("result");
        std::os::unix::fs::symlink("/nix/store/ffffffffffffffffffffffffffffffff-x", &link).unwrap();
        assert_eq!(
            follow_links_to_store_path(&sd, &link.to_string_lossy())
                .unwrap()
                .name(),
            "x"
        );
        assert!(follow_links_to_store_path(&sd, "/tmp").is_err());
    }
}
