//! The Nix evaluator: lazy evaluation with shared thunks and black-holing, lexical and `with`
//! scopes, the builtins, string context, derivations and sources written through
//! [`store::EvalStore`], and `nix-instantiate --eval` printing. See `value.rs` for the memory
//! strategy. The fetchers (`fetchurl`, `fetchTarball`, `fetchGit`) are in `fetch.rs` and
//! `fetch_git.rs`.

mod assert_eq;
pub mod attr_path;
pub mod builtin_docs;
pub mod builtins;
pub mod builtins_drv;
pub mod builtins_misc;
pub mod builtins_more;
pub mod doc_comment;
pub mod drv_info;
pub mod error;
pub mod eval;
pub mod features;
pub mod fetch;
pub mod fetch_closure;
pub mod fetch_git;
pub mod fetch_hg;
pub mod fetch_tree;
pub mod flake;
pub mod flake_config;
pub mod flakeref;
pub mod ifd;
pub mod output_of;
pub mod pool;
pub mod positions;
pub mod prefetch;
pub mod print;
pub mod purity;
pub mod rc_str;
pub mod search_path;
pub mod shared;
pub mod store;
pub mod term;
pub mod value;
mod words;

pub use error::{ErrorKind, EvalError};
pub use eval::Evaluator;
pub use features::Features;
pub use value::Value;

/// The version of Nix firn implements: `builtins.nixVersion`, and what the tools' `--version`
/// print, so that code and scripts that check for a Nix version accept firn.
pub const NIX_VERSION: &str = "2.24.0";
