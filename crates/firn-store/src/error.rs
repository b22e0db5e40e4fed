//! The store's error type: each variant names the operation and the path it failed on.

use std::path::{Path, PathBuf};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("{op} '{path}': {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("SQLite error while {op} in '{db}': {source}")]
    Sqlite {
        op: &'static str,
        db: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("path '{0}' is not valid")]
    InvalidPath(String),
    #[error(transparent)]
    StorePath(#[from] firn_format::store_path::StorePathError),
    #[error(transparent)]
    NarFs(#[from] crate::nar_fs::NarFsError),
    #[error(transparent)]
    Nar(#[from] firn_format::nar::NarError),
    #[error("hash mismatch importing path '{path}';\n  specified: {expected}\n  got:       {got}")]
    HashMismatch {
        path: String,
        expected: String,
        got: String,
    },
    #[error("current Nix store schema is version {0}, but I only support 10")]
    SchemaTooNew(u32),
    #[error("the database '{0}' is corrupt: {1}")]
    Corrupt(PathBuf, String),
    /// Given up on request ([`crate::lock::interrupt_path_lock_waits`]).
    #[error("interrupted while {op} '{path}'")]
    Interrupted { op: &'static str, path: PathBuf },
    #[error("{0}")]
    Other(String),
}

/// A closure turning an IO error into [`StoreError::Io`] for `op` on `path`.
pub fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
