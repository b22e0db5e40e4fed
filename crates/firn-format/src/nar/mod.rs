//! NAR (Nix ARchive): the canonical serialisation of a file system object.
//!
//! A NAR is a sequence of length-prefixed strings (u64 little-endian length, bytes, zero padding
//! to 8 bytes): the magic `nix-archive-1`, then one node. A node is `(` `type` and then either
//! `regular` [`executable` ``] `contents` <bytes>, or `symlink` `target` <target>, or
//! `directory` followed by `entry` `(` `name` <name> `node` <node> `)` for each entry in strictly
//! increasing byte order of the name, and finally `)`.
//!
//! [`writer::NarWriter`] produces NARs from a stream of calls; [`reader::parse`] checks a NAR
//! from any reader and reports it to a [`reader::Visitor`]; [`listing`] builds the JSON listing
//! CppNix writes next to cached NARs (`.ls` files) and prints for `nix nar ls --json`.

pub mod listing;
pub mod reader;
pub mod writer;

use thiserror::Error;

/// The magic string every NAR starts with.
pub const MAGIC: &[u8] = b"nix-archive-1";
/// Longest entry name accepted (Linux's NAME_MAX).
pub const MAX_NAME_LEN: usize = 255;
/// Longest symlink target accepted (Linux's PATH_MAX less the NUL).
pub const MAX_TARGET_LEN: usize = 4095;
/// Deepest directory nesting accepted, when reading and when writing: a node may have at most
/// this many directories above it. Well beyond what real trees use (CppNix itself cannot
/// restore much deeper trees, as its paths would exceed PATH_MAX), and low enough that restoring
/// keeps a bounded number of directory handles and the stack of open directories stays small.
pub const MAX_DEPTH: usize = 1024;

pub use reader::{parse, Visitor};
pub use writer::NarWriter;

/// Errors from reading or writing NARs.
#[derive(Debug, Error)]
pub enum NarError {
    #[error("I/O error in NAR stream: {0}")]
    Io(#[from] std::io::Error),
    #[error("NAR stream ends early (at byte {0})")]
    Truncated(u64),
    #[error("input is not a NAR archive: bad magic")]
    BadMagic,
    #[error("malformed NAR at byte {offset}: expected {expected}, found {found:?}")]
    Unexpected {
        offset: u64,
        expected: &'static str,
        found: String,
    },
    #[error("malformed NAR at byte {offset}: string of {len} bytes is too long for {what}")]
    TooLong {
        offset: u64,
        len: u64,
        what: &'static str,
    },
    #[error("malformed NAR at byte {0}: non-zero padding")]
    BadPadding(u64),
    #[error("NAR contains an invalid file name {name:?} (at byte {offset})")]
    BadName { offset: u64, name: String },
    #[error(
        "NAR directory entries are not strictly sorted: {prev:?} then {name:?} (at byte {offset})"
    )]
    NotSorted {
        offset: u64,
        prev: String,
        name: String,
    },
    #[error("NAR nests directories deeper than {MAX_DEPTH} levels (at byte {0})")]
    TooDeep(u64),
    #[error("NAR contains an invalid symlink target (at byte {0})")]
    BadTarget(u64),
    #[error("NAR writer used out of order: {0}")]
    Misuse(&'static str),
    #[error("regular file contents are {got} bytes, {expected} were announced")]
    SizeMismatch { expected: u64, got: u64 },
    #[error("{0}")]
    Visitor(String),
}

/// Is `name` acceptable as a directory entry name?
pub fn valid_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name != b"."
        && name != b".."
        && name.len() <= MAX_NAME_LEN
        && !name.contains(&b'/')
        && !name.contains(&0)
}

/// Padding needed after `len` bytes.
pub(crate) fn padding(len: u64) -> usize {
    ((8 - (len % 8)) % 8) as usize
}
