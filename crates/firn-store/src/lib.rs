//! The Nix store.

pub mod nar_fs;
