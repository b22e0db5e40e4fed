//! The Nix language's syntax (being written).
