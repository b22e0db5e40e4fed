//! Store paths: `<storeDir>/<nixbase32 hash>-<name>`, and how Nix computes them.
//!
//! A store path's 160-bit hash part is the XOR-fold of a SHA-256 over a fingerprint
//! `<type>:sha256:<hex inner hash>:<storeDir>:<name>`. The type says what the inner hash is of:
//! `text:<refs>` for text files added with references, `source:<refs>[:self]` for NAR-hashed
//! sources, `output:<id>` for derivation outputs. Fixed-output paths that are not recursive
//! SHA-256 go through one more step (`fixed:out:[r:]<algo>:<hex>:`).

use std::fmt;

use thiserror::Error;

use crate::hash::{Hash, HashAlgo};
use crate::nixbase32;

/// Length in bytes of a store path's hash part.
pub const HASH_BYTES: usize = 20;
/// Length of a store path's hash part in nixbase32 characters.
pub const HASH_CHARS: usize = 32;
/// Longest name Nix accepts.
pub const MAX_NAME_LEN: usize = 211;

/// Why a string is not a store path or a store path name.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum StorePathError {
    #[error("path '{0}' is not in the Nix store")]
    NotInStore(String),
    #[error("path '{0}' is not a valid store path: {1}")]
    Invalid(String, &'static str),
    #[error("store path name '{name}' is invalid: {reason}")]
    BadName { name: String, reason: String },
}

/// The bytes a store path name may have: `[A-Za-z0-9+-._?=]`.
const NAME_CHARS: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.' | b'_' | b'?' | b'=');
        c += 1;
    }
    t
};

/// Check a store path name: 1 to 211 characters from `[A-Za-z0-9+-._?=]`, not `.` or `..`,
/// and not starting with `.-` or `..-`.
pub fn validate_name(name: &str) -> Result<(), StorePathError> {
    // Every derivation checks several names (its own, its outputs', each input path's):
    // a valid name costs one table look-up a byte; the reasons are worked out only when
    // it is not.
    let b = name.as_bytes();
    if !b.is_empty()
        && b.len() <= MAX_NAME_LEN
        && b[0] != b'.'
        && b.iter().all(|&c| NAME_CHARS[usize::from(c)])
    {
        return Ok(());
    }
    name_error(name)
}

/// Why `name` is not a valid store path name (or `Ok` for a valid name starting with `.`).
#[cold]
fn name_error(name: &str) -> Result<(), StorePathError> {
    let bad = |reason: String| StorePathError::BadName {
        name: name.to_string(),
        reason,
    };
    if name.is_empty() {
        return Err(bad("names must not be empty".into()));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(bad(format!(
            "names must be at most {MAX_NAME_LEN} characters long"
        )));
    }
    if name == "." || name == ".." || name.starts_with(".-") || name.starts_with("..-") {
        return Err(bad(
            "names must not be '.' or '..' or begin with '.-' or '..-'".into(),
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "+-._?=".contains(*c)))
    {
        return Err(bad(format!(
            "the character {c:?} is not allowed; use only letters, digits and '+-._?='"
        )));
    }
    Ok(())
}

/// A store path without its store directory: the 20-byte hash and the name.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StorePath {
    // Ordered by the printed base name, which sorts like Nix's std::set<StorePath>.
    base: String,
}

impl StorePath {
    /// Build from a digest part and a name (the name is validated).
    pub fn from_parts(hash: &[u8; HASH_BYTES], name: &str) -> Result<StorePath, StorePathError> {
        validate_name(name)?;
        Ok(Self::from_valid_parts(hash, name))
    }

    /// [`StorePath::from_parts`] for a name already validated.
    fn from_valid_parts(hash: &[u8; HASH_BYTES], name: &str) -> StorePath {
        let mut base = String::with_capacity(HASH_CHARS + 1 + name.len());
        nixbase32::encode_into(&mut base, hash);
        base.push('-');
        base.push_str(name);
        StorePath { base }
    }

    /// Parse `<hash>-<name>` (no directory).
    pub fn from_base_name(base: &str) -> Result<StorePath, StorePathError> {
        if base.len() < HASH_CHARS + 2 || base.as_bytes()[HASH_CHARS] != b'-' {
            return Err(StorePathError::Invalid(base.to_string(), "too short"));
        }
        let (h, name) = (&base[..HASH_CHARS], &base[HASH_CHARS + 1..]);
        if !nixbase32::all_valid_chars(h.as_bytes()) {
            return Err(StorePathError::Invalid(
                base.to_string(),
                "the hash part is not nixbase32",
            ));
        }
        // 32 nixbase32 characters are exactly 160 bits: any of them decode to 20 bytes.
        validate_name(name)?;
        Ok(StorePath {
            base: base.to_string(),
        })
    }

    /// `<hash>-<name>`.
    pub fn base_name(&self) -> &str {
        &self.base
    }

    /// The 32-character nixbase32 hash part.
    pub fn hash_part(&self) -> &str {
        &self.base[..HASH_CHARS]
    }

    /// The 20 raw bytes of the hash part.
    pub fn hash_bytes(&self) -> [u8; HASH_BYTES] {
        let v = nixbase32::decode(self.hash_part(), HASH_BYTES).expect("validated at creation");
        let mut out = [0u8; HASH_BYTES];
        out.copy_from_slice(&v);
        out
    }

    pub fn name(&self) -> &str {
        &self.base[HASH_CHARS + 1..]
    }

    /// Is this a derivation (`.drv`)?
    pub fn is_derivation(&self) -> bool {
        self.name().ends_with(".drv")
    }
}

impl fmt::Display for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base)
    }
}

impl fmt::Debug for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StorePath({})", self.base)
    }
}

/// How the contents of a content-addressed path were hashed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileIngestionMethod {
    /// The file's bytes (a regular file only).
    Flat,
    /// The NAR serialisation of the tree.
    Recursive,
}

/// A content address as stored in the `ca` column and narinfo `CA:` field.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ContentAddress {
    /// `text:sha256:<nix32>`: a text file added with references.
    Text(Hash),
    /// `fixed:[r:]<algo>:<nix32>`.
    Fixed(FileIngestionMethod, Hash),
}

impl fmt::Display for ContentAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContentAddress::Text(h) => write!(f, "text:{h}"),
            ContentAddress::Fixed(FileIngestionMethod::Flat, h) => write!(f, "fixed:{h}"),
            ContentAddress::Fixed(FileIngestionMethod::Recursive, h) => write!(f, "fixed:r:{h}"),
        }
    }
}

/// A `ContentAddress` string that cannot be parsed.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid content address '{0}'")]
pub struct BadContentAddress(pub String);

impl ContentAddress {
    pub fn parse(s: &str) -> Result<ContentAddress, BadContentAddress> {
        let bad = || BadContentAddress(s.to_string());
        if let Some(rest) = s.strip_prefix("text:") {
            let h = Hash::parse(rest, None).map_err(|_| bad())?;
            if h.algo() != HashAlgo::Sha256 {
                return Err(bad());
            }
            Ok(ContentAddress::Text(h))
        } else if let Some(rest) = s.strip_prefix("fixed:") {
            let (method, rest) = match rest.strip_prefix("r:") {
                Some(r) => (FileIngestionMethod::Recursive, r),
                None => (FileIngestionMethod::Flat, rest),
            };
            let h = Hash::parse(rest, None).map_err(|_| bad())?;
            Ok(ContentAddress::Fixed(method, h))
        } else {
            Err(bad())
        }
    }

    pub fn hash(&self) -> &Hash {
        match self {
            ContentAddress::Text(h) | ContentAddress::Fixed(_, h) => h,
        }
    }
}

/// A store directory such as `/nix/store`: turns [`StorePath`]s into full paths and back, and
/// computes store paths, since the directory is part of every fingerprint.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StoreDir(String);

impl Default for StoreDir {
    fn default() -> Self {
        StoreDir("/nix/store".to_string())
    }
}

impl fmt::Display for StoreDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl StoreDir {
    /// A store directory; trailing slashes are removed.
    pub fn new(dir: impl Into<String>) -> StoreDir {
        let mut d: String = dir.into();
        while d.len() > 1 && d.ends_with('/') {
            d.pop();
        }
        StoreDir(d)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The full path of a store path.
    pub fn display(&self, p: &StorePath) -> String {
        let mut s = String::with_capacity(self.0.len() + 1 + p.base_name().len());
        self.display_into(&mut s, p);
        s
    }

    /// Append the full path of `p` to `out`.
    pub fn display_into(&self, out: &mut String, p: &StorePath) {
        out.push_str(&self.0);
        out.push('/');
        out.push_str(p.base_name());
    }

    /// Parse a full store path (exactly `<dir>/<base>`, nothing after it).
    pub fn parse(&self, s: &str) -> Result<StorePath, StorePathError> {
        let base = s
            .strip_prefix(self.0.as_str())
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(|| StorePathError::NotInStore(s.to_string()))?;
        // A `/` is in neither the hash nor the name, so a path with one below it fails to
        // parse anyway: only then is it looked for, to say so.
        StorePath::from_base_name(base).map_err(|e| match base.contains('/') {
            true => StorePathError::Invalid(s.to_string(), "it has a path below the store path"),
            false => e,
        })
    }

    /// Given any path inside the store (`/nix/store/<base>/sub/dir`), the store path it is in
    /// and the rest (without a leading slash).
    pub fn parse_inside<'a>(&self, s: &'a str) -> Result<(StorePath, &'a str), StorePathError> {
        let rest = s
            .strip_prefix(self.0.as_str())
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(|| StorePathError::NotInStore(s.to_string()))?;
        let (base, sub) = match rest.split_once('/') {
            Some((b, sub)) => (b, sub),
            None => (rest, ""),
        };
        Ok((StorePath::from_base_name(base)?, sub))
    }

    /// Is `s` a path inside this store directory (not necessarily a store path itself)?
    pub fn is_in_store(&self, s: &str) -> bool {
        s.strip_prefix(self.0.as_str())
            .is_some_and(|r| r.starts_with('/') && r.len() > 1)
    }

    /// `makeStorePath`: the path for a fingerprint type, an inner hash and a name.
    pub fn make_store_path(
        &self,
        ty: &str,
        inner: &Hash,
        name: &str,
    ) -> Result<StorePath, StorePathError> {
        self.make_store_path_with(ty.len(), |fp| fp.push_str(ty), inner, name)
    }

    /// [`StoreDir::make_store_path`] with the type written into the fingerprint by
    /// `write_type` (about `type_len` bytes): derivations make several paths each, and
    /// their types (`output:<id>`, `text:<references>`) need no string of their own.
    fn make_store_path_with(
        &self,
        type_len: usize,
        write_type: impl FnOnce(&mut String),
        inner: &Hash,
        name: &str,
    ) -> Result<StorePath, StorePathError> {
        validate_name(name)?;
        let algo = inner.algo().name();
        let mut fingerprint = String::with_capacity(
            type_len + algo.len() + 2 * inner.as_bytes().len() + self.0.len() + name.len() + 4,
        );
        write_type(&mut fingerprint);
        fingerprint.push(':');
        fingerprint.push_str(algo);
        fingerprint.push(':');
        inner.push_base16(&mut fingerprint);
        fingerprint.push(':');
        fingerprint.push_str(&self.0);
        fingerprint.push(':');
        fingerprint.push_str(name);
        let h = Hash::digest(HashAlgo::Sha256, fingerprint.as_bytes());
        Ok(StorePath::from_valid_parts(&h.fold_into(), name))
    }

    /// A path whose type is `base` followed by `:<path>` for each reference (in order, each
    /// once) and `:self` if it refers to itself.
    fn make_path_with_refs<'a>(
        &self,
        base: &str,
        refs: impl IntoIterator<Item = &'a StorePath>,
        self_ref: bool,
        inner: &Hash,
        name: &str,
    ) -> Result<StorePath, StorePathError> {
        // Sorted and without repeats, as CppNix's `StorePathSet`; callers mostly give them
        // so already, which the sort finds in one pass.
        let mut sorted: Vec<&StorePath> = refs.into_iter().collect();
        sorted.sort_unstable();
        sorted.dedup();
        let len = base.len()
            + sorted
                .iter()
                .map(|r| self.0.len() + r.base.len() + 2)
                .sum::<usize>()
            + if self_ref { 5 } else { 0 };
        let write_type = |ty: &mut String| {
            ty.push_str(base);
            for r in sorted {
                ty.push(':');
                self.display_into(ty, r);
            }
            if self_ref {
                ty.push_str(":self");
            }
        };
        self.make_store_path_with(len, write_type, inner, name)
    }

    /// The path of a text file added with `references` (`builtins.toFile`, `.drv` files).
    pub fn make_text_path<'a>(
        &self,
        name: &str,
        text_hash: &Hash,
        refs: impl IntoIterator<Item = &'a StorePath>,
    ) -> Result<StorePath, StorePathError> {
        self.make_path_with_refs("text", refs, false, text_hash, name)
    }

    /// The path of fixed-output content: a recursive SHA-256 is a `source` path (which may
    /// have references); everything else goes through `fixed:out:`.
    pub fn make_fixed_output_path<'a>(
        &self,
        name: &str,
        method: FileIngestionMethod,
        hash: &Hash,
        refs: impl IntoIterator<Item = &'a StorePath>,
        self_ref: bool,
    ) -> Result<StorePath, StorePathError> {
        if method == FileIngestionMethod::Recursive && hash.algo() == HashAlgo::Sha256 {
            self.make_path_with_refs("source", refs, self_ref, hash, name)
        } else {
            let inner = format!(
                "fixed:out:{}{}:{}:",
                if method == FileIngestionMethod::Recursive {
                    "r:"
                } else {
                    ""
                },
                hash.algo(),
                hash.to_base16()
            );
            let h = Hash::digest(HashAlgo::Sha256, inner.as_bytes());
            self.make_store_path("output:out", &h, name)
        }
    }

    /// The path for a content address with references (the inverse of what `ca` records).
    pub fn make_path_from_ca<'a>(
        &self,
        name: &str,
        ca: &ContentAddress,
        refs: impl IntoIterator<Item = &'a StorePath>,
        self_ref: bool,
    ) -> Result<StorePath, StorePathError> {
        match ca {
            ContentAddress::Text(h) => self.make_text_path(name, h, refs),
            ContentAddress::Fixed(m, h) => self.make_fixed_output_path(name, *m, h, refs, self_ref),
        }
    }

    /// The output path of an input-addressed derivation output.
    pub fn make_output_path(
        &self,
        output: &str,
        drv_hash: &Hash,
        drv_name: &str,
    ) -> Result<StorePath, StorePathError> {
        let name = if output == "out" {
            std::borrow::Cow::Borrowed(drv_name)
        } else {
            std::borrow::Cow::Owned(crate::derivation::output_path_name(drv_name, output))
        };
        let write_type = |ty: &mut String| {
            ty.push_str("output:");
            ty.push_str(output);
        };
        self.make_store_path_with(7 + output.len(), write_type, drv_hash, &name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("hello-2.12.1").is_ok());
        assert!(validate_name("a+b=c?d_e.f").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name(".").is_err());
        assert!(validate_name("..").is_err());
        assert!(validate_name(".-x").is_err());
        assert!(validate_name("a b").is_err());
        assert!(validate_name("a/b").is_err());
        assert!(validate_name("é").is_err());
        assert!(validate_name(&"x".repeat(211)).is_ok());
        assert!(validate_name(&"x".repeat(212)).is_err());
    }

    #[test]
    fn parse_and_print() {
        let sd = StoreDir::default();
        let s = "/nix/store/ffffffffffffffffffffffffffffffff-x";
        let p = sd.parse(s).unwrap();
        assert_eq!(p.name(), "x");
        assert_eq!(sd.display(&p), s);
        assert!(sd
            .parse("/nix/store/ffffffffffffffffffffffffffffffff-x/y")
            .is_err());
        assert!(sd
            .parse("/nix/store/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-x")
            .is_err());
        assert!(sd.parse("/tmp/ffffffffffffffffffffffffffffffff-x").is_err());
        let inside = format!("{s}/bin/sh");
        let (p2, rest) = sd.parse_inside(&inside).unwrap();
        assert_eq!((p2, rest), (p, "bin/sh"));
    }

    #[test]
    fn text_path_matches_nix() {
        // `builtins.toFile "foo" "bar"` in CppNix 2.8 gives this path.
        let sd = StoreDir::default();
        let h = Hash::digest(HashAlgo::Sha256, b"bar");
        let p = sd.make_text_path("foo", &h, []).unwrap();
        assert_eq!(
            sd.display(&p),
            "/nix/store/vxjiwkjkn7x4079qvh1jkl5pn05j2aw0-foo"
        );
    }

    #[test]
    fn content_address_roundtrip() {
        for s in [
            "fixed:r:sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73",
            "fixed:sha1:1f0lhslxmc5d6dp7ppaxphdb93z8cwcc",
            "text:sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73",
        ] {
            let ca = ContentAddress::parse(s).unwrap();
            assert_eq!(ca.to_string(), s);
        }
        assert!(ContentAddress::parse("fixed:").is_err());
    }
}
