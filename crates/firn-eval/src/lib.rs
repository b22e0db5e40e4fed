//! The Nix evaluator (early): lazy evaluation with shared thunks and black-holing, lexical and
//! `with` scopes, the core builtins, and `nix-instantiate --eval` printing. See `value.rs` for
//! the memory strategy. Derivations, string context from the store, fetchers and paths copied
//! to the store are not here yet.

pub mod builtins;
pub mod builtins_more;
pub mod error;
pub mod eval;
pub mod print;
pub mod value;

pub use error::{ErrorKind, EvalError};
pub use eval::Evaluator;
pub use value::Value;
