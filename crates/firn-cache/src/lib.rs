//! Binary caches: stores that hold compressed NARs and `.narinfo` files instead of a live
//! `/nix/store`, as CppNix's `file://`, `http(s)://` and `s3://` stores do.
//!
//! - [`uri`] parses store URIs and their parameters;
//! - [`backend`] moves files (`get`/`put`/`exists`) for each kind of location;
//! - [`compression`] wraps xz, zstd, bzip2 and `none` as streams;
//! - [`cache`] is a binary cache over a backend: narinfos, NAR upload (compress + hash in one
//!   pass) and download (decompress + hash + restore in one pass);
//! - [`disk_cache`] is CppNix's narinfo cache (`~/.cache/nix/binary-cache-v6.sqlite`, shared);
//! - [`realisation`] is the realisation files (`ca-derivations`) caches hold;
//! - [`substitute`] asks a list of caches for paths, in parallel, and fetches closures;
//! - [`any_store`] is either end of a copy (local, cache, `ssh://`);
//! - [`copy`] copies closures between the local store and caches (`nix copy`); [`upload`]
//!   is the many-paths-into-a-cache part of it.

pub mod any_store;
pub mod backend;
pub mod cache;
pub mod compression;
pub mod copy;
pub mod disk_cache;
pub mod graph;
pub mod realisation;
pub mod substitute;
pub mod upload;
pub mod uri;

pub use cache::BinaryCache;
pub use substitute::{SubstituteReport, Substituters, TrustPolicy};
pub use uri::CacheUri;

use thiserror::Error;

/// What can go wrong talking to a binary cache.
#[derive(Debug, Error)]
pub enum CacheError {
    #[error("invalid store URI '{uri}': {why}")]
    BadUri { uri: String, why: String },
    #[error("{op} '{key}' in binary cache '{cache}': {source}")]
    Io {
        op: &'static str,
        key: String,
        cache: String,
        source: std::io::Error,
    },
    #[error("unable to download '{url}': {why}")]
    Download { url: String, why: String },
    #[error("unable to upload '{url}': {why}")]
    Upload { url: String, why: String },
    #[error("binary cache '{cache}': {source}")]
    Tls {
        cache: String,
        source: firn_http::TlsError,
    },
    #[error("binary cache '{0}' is read-only")]
    ReadOnly(String),
    #[error("file '{key}' does not exist in binary cache '{cache}'")]
    NoSuchFile { key: String, cache: String },
    #[error("unsupported compression method '{0}'")]
    UnknownCompression(String),
    #[error(transparent)]
    NarInfo(#[from] firn_format::narinfo::NarInfoError),
    #[error(transparent)]
    CacheInfo(#[from] firn_format::cache_info::CacheInfoError),
    #[error(transparent)]
    Store(#[from] firn_store::StoreError),
    #[error(transparent)]
    Nar(#[from] firn_format::nar::NarError),
    #[error("narinfo cache '{path}': {source}")]
    DiskCache {
        path: String,
        source: rusqlite::Error,
    },
    #[error(transparent)]
    Realisation(#[from] realisation::RealisationError),
    /// Not substituted because a reference's NAR is gone from every cache that listed it:
    /// as if no cache had the path (CppNix's incomplete closure).
    #[error("its reference '{reference}' is no longer in any binary cache")]
    ReferenceGone { reference: String },
    #[error("{0}")]
    Other(String),
}

impl CacheError {
    /// A substitute that is gone rather than broken: a cache listed the path (its narinfo)
    /// but has no NAR for it, or the path needs such a one. CppNix (`SubstituteGone`) treats
    /// it as if no cache had the path, so a derivation whose output it is gets built, without
    /// `--fallback`.
    pub fn is_gone(&self) -> bool {
        matches!(
            self,
            CacheError::NoSuchFile { .. } | CacheError::ReferenceGone { .. }
        )
    }
}

pub type Result<T, E = CacheError> = std::result::Result<T, E>;
