//! Nix's data formats, byte for byte.
//!
//! This crate is pure: it does no filesystem IO and no async. Streams are plain
//! [`std::io::Read`]/[`std::io::Write`]; walking or restoring a directory tree belongs to the
//! store crate. Everything here must match CppNix exactly, since firn and Nix share stores and
//! caches.

pub mod hash;
pub mod nixbase32;
pub mod store_path;

pub use cache_info::CacheInfo;
pub use derivation::{Derivation, DerivationOutput, DrvError};
pub use hash::{Hash, HashAlgo, HashFormat, Hasher};
pub use narinfo::NarInfo;
pub use signature::{PublicKey, PublicKeys, SecretKey};
pub use store_path::{ContentAddress, FileIngestionMethod, StoreDir, StorePath};
pub mod cache_info;
pub mod derivation;
pub mod json;
pub mod nar;
pub mod narinfo;
pub mod rewrite;
pub mod signature;
