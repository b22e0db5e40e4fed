//! The Nix store.
