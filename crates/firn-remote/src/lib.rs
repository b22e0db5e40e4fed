//! Other Nix stores reached over a byte stream.
//!
//! - [`wire`]: Nix's wire encoding (little-endian 64-bit integers, length-prefixed strings
//!   padded to 8 bytes, counted lists);
//! - [`serve`]: the `nix-store --serve` protocol (version 2.7, CppNix 2.8's): the client side
//!   ([`serve::SshStore`], `ssh://HOST` stores, `nix-copy-closure`) and the server side
//!   ([`serve::serve`], `nix-store --serve [--write]`);
//! - [`build`]: what builds over that protocol carry (build options, basic derivations, build
//!   results), for remote builders;
//! - [`hangup`]: the server's watch for a client that hangs up while its build runs.

pub mod build;
pub mod hangup;
pub mod serve;
pub mod wire;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum RemoteError {
    #[error("{op} '{host}': {source}")]
    Io {
        op: &'static str,
        host: String,
        source: std::io::Error,
    },
    #[error("'nix-store --serve' protocol mismatch from '{host}'{got}")]
    Mismatch { host: String, got: String },
    #[error("unsupported 'nix-store --serve' protocol version {version:#x} on '{host}'")]
    Version { host: String, version: u64 },
    #[error("cannot connect to '{0}'")]
    Connect(String),
    #[error("protocol error from '{host}': {why}")]
    Protocol { host: String, why: String },
    #[error(transparent)]
    Store(#[from] firn_store::StoreError),
    #[error(transparent)]
    Nar(#[from] firn_format::nar::NarError),
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = RemoteError> = std::result::Result<T, E>;
