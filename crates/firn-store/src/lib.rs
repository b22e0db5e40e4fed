//! The Nix store, on disk exactly as CppNix keeps it.
//!
//! [`LocalStore`] is a local store (the real `/nix/store`, or a chroot store whose files live
//! under another root): CppNix's SQLite database (schema 10), its lock files and lock protocol,
//! GC roots, temporary roots and the GC socket, and `.links` for optimisation, so firn and
//! CppNix can work on one store at the same time. [`nar_fs`] turns trees into NARs and back.

pub mod canon;
pub mod config;
pub mod db;
pub mod error;
pub mod exit_status;
pub mod export;
pub mod gc;
pub mod local;
pub mod lock;
pub mod nar_fs;
pub mod optimise;
pub mod path_info;
pub mod pipe;
pub mod realisations;
pub mod registration;
pub mod roots;
pub mod temproots;
pub mod topo;

pub use config::LocalStoreConfig;
pub use error::StoreError;
pub use local::LocalStore;
pub use path_info::ValidPathInfo;
