//! Hash algorithms and Nix's textual hash forms.
//!
//! Nix prints a hash in base16, nixbase32, base64 or SRI (`sha256-<base64>`), optionally prefixed
//! with the algorithm (`sha256:<digits>`). When parsing a bare hash, its length tells the
//! encoding. This module also provides [`Hasher`], a streaming hasher over any algorithm that
//! implements [`std::io::Write`] so it can sit at the end of a NAR stream.

use std::fmt;
use std::str::FromStr;

use data_encoding::{BASE64, HEXLOWER_PERMISSIVE};
use digest::Digest;
use thiserror::Error;

use crate::nixbase32;

/// A hash algorithm Nix knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HashAlgo {
    Md5,
    Sha1,
    Sha256,
    Sha512,
}

impl HashAlgo {
    /// Digest size in bytes.
    pub const fn size(self) -> usize {
        match self {
            HashAlgo::Md5 => 16,
            HashAlgo::Sha1 => 20,
            HashAlgo::Sha256 => 32,
            HashAlgo::Sha512 => 64,
        }
    }

    /// Nix's name for the algorithm (`sha256`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            HashAlgo::Md5 => "md5",
            HashAlgo::Sha1 => "sha1",
            HashAlgo::Sha256 => "sha256",
            HashAlgo::Sha512 => "sha512",
        }
    }

    /// All algorithms, in Nix's order.
    pub const ALL: [HashAlgo; 4] = [
        HashAlgo::Md5,
        HashAlgo::Sha1,
        HashAlgo::Sha256,
        HashAlgo::Sha512,
    ];
}

impl fmt::Display for HashAlgo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for HashAlgo {
    type Err = HashError;
    fn from_str(s: &str) -> Result<Self, HashError> {
        match s {
            "md5" => Ok(HashAlgo::Md5),
            "sha1" => Ok(HashAlgo::Sha1),
            "sha256" => Ok(HashAlgo::Sha256),
            "sha512" => Ok(HashAlgo::Sha512),
            _ => Err(HashError::UnknownAlgo(s.to_string())),
        }
    }
}

/// A textual encoding of a hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashFormat {
    Base16,
    Nix32,
    Base64,
    Sri,
}

impl FromStr for HashFormat {
    type Err = HashError;
    fn from_str(s: &str) -> Result<Self, HashError> {
        match s {
            "base16" => Ok(HashFormat::Base16),
            "nix32" | "base32" => Ok(HashFormat::Nix32),
            "base64" => Ok(HashFormat::Base64),
            "sri" => Ok(HashFormat::Sri),
            _ => Err(HashError::UnknownFormat(s.to_string())),
        }
    }
}

impl HashFormat {
    /// The name `nix hash convert --to` takes.
    pub const fn name(self) -> &'static str {
        match self {
            HashFormat::Base16 => "base16",
            HashFormat::Nix32 => "nix32",
            HashFormat::Base64 => "base64",
            HashFormat::Sri => "sri",
        }
    }
}

/// Errors from parsing hashes.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum HashError {
    #[error("unknown hash algorithm '{0}', expect 'md5', 'sha1', 'sha256', or 'sha512'")]
    UnknownAlgo(String),
    #[error("unknown hash format '{0}', expect 'base16', 'nix32', 'base64', or 'sri'")]
    UnknownFormat(String),
    #[error("hash '{0}' does not include a type, nor is the type otherwise known from context")]
    MissingAlgo(String),
    #[error("hash '{hash}' should have type '{expected}'")]
    AlgoMismatch { hash: String, expected: HashAlgo },
    #[error("hash '{hash}' has wrong length for hash algorithm '{algo}'")]
    BadLength { hash: String, algo: HashAlgo },
    #[error("invalid {encoding} hash '{hash}'")]
    BadEncoding {
        hash: String,
        encoding: &'static str,
    },
}

/// The two base16 digits of each byte.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut t = [[0u8; 2]; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = [DIGITS[b >> 4], DIGITS[b & 0xf]];
        b += 1;
    }
    t
};

/// A digest together with its algorithm.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash {
    algo: HashAlgo,
    bytes: [u8; 64],
}

impl Hash {
    /// Wrap raw digest bytes; `None` if the length does not match the algorithm.
    pub fn from_bytes(algo: HashAlgo, digest: &[u8]) -> Option<Hash> {
        if digest.len() != algo.size() {
            return None;
        }
        let mut bytes = [0u8; 64];
        bytes[..digest.len()].copy_from_slice(digest);
        Some(Hash { algo, bytes })
    }

    /// Hash a byte string in one go.
    pub fn digest(algo: HashAlgo, data: impl AsRef<[u8]>) -> Hash {
        let mut h = Hasher::new(algo);
        h.update(data.as_ref());
        h.finish()
    }

    pub fn algo(&self) -> HashAlgo {
        self.algo
    }

    /// The raw digest.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.algo.size()]
    }

    pub fn to_base16(&self) -> String {
        let mut s = String::with_capacity(2 * self.algo.size());
        self.push_base16(&mut s);
        s
    }

    /// Append the base16 digits to `out`: derivations write hashes into text they are
    /// building (fingerprints, the hash modulo's inputs), so no string of their own.
    pub fn push_base16(&self, out: &mut String) {
        // Digits go to a buffer first, a byte's pair at a time, and are appended in one go: a
        // `char` pushed at a time is checked for room and encoded each time.
        let mut buf = [[0u8; 2]; 64];
        let bytes = self.as_bytes();
        for (pair, &b) in buf.iter_mut().zip(bytes) {
            *pair = HEX_PAIRS[usize::from(b)];
        }
        let digits = &buf.as_flattened()[..2 * bytes.len()];
        out.push_str(std::str::from_utf8(digits).expect("hex digits are ASCII"));
    }

    pub fn to_nix32(&self) -> String {
        nixbase32::encode(self.as_bytes())
    }

    pub fn to_base64(&self) -> String {
        BASE64.encode(self.as_bytes())
    }

    /// `sha256-<base64>`.
    pub fn to_sri(&self) -> String {
        format!("{}-{}", self.algo, self.to_base64())
    }

    /// Encode in `format`; with `with_algo`, prefix `algo:` (SRI always carries its algorithm).
    pub fn encode(&self, format: HashFormat, with_algo: bool) -> String {
        let digits = match format {
            HashFormat::Base16 => self.to_base16(),
            HashFormat::Nix32 => self.to_nix32(),
            HashFormat::Base64 => self.to_base64(),
            HashFormat::Sri => return self.to_sri(),
        };
        if with_algo {
            format!("{}:{}", self.algo, digits)
        } else {
            digits
        }
    }

    /// Parse any form Nix accepts: `algo:digits`, `algo-base64` (SRI), or bare digits when
    /// `algo` is given. If both the string and `algo` name an algorithm they must agree.
    pub fn parse(s: &str, algo: Option<HashAlgo>) -> Result<Hash, HashError> {
        let (found, rest, is_sri) = if let Some((a, rest)) = s.split_once(':') {
            (Some(a.parse::<HashAlgo>()?), rest, false)
        } else if let Some((a, rest)) = s.split_once('-') {
            match a.parse::<HashAlgo>() {
                Ok(a) => (Some(a), rest, true),
                Err(_) => (None, s, false),
            }
        } else {
            (None, s, false)
        };
        let algo = match (found, algo) {
            (Some(f), Some(e)) if f != e => {
                return Err(HashError::AlgoMismatch {
                    hash: s.to_string(),
                    expected: e,
                })
            }
            (Some(f), _) => f,
            (None, Some(e)) => e,
            (None, None) => return Err(HashError::MissingAlgo(s.to_string())),
        };
        if is_sri {
            return Self::decode_base64(s, rest, algo);
        }
        Self::parse_digits(s, rest, algo)
    }

    /// Like [`Hash::parse`], also telling which encoding the string was in.
    pub fn parse_with_format(
        s: &str,
        algo: Option<HashAlgo>,
    ) -> Result<(Hash, HashFormat), HashError> {
        let h = Self::parse(s, algo)?;
        let is_sri = s
            .split_once('-')
            .is_some_and(|(a, _)| !a.contains(':') && a.parse::<HashAlgo>().is_ok());
        let digits = s.rsplit_once(':').map(|(_, d)| d).unwrap_or(s);
        let format = if is_sri {
            HashFormat::Sri
        } else if digits.len() == h.algo().size() * 2 {
            HashFormat::Base16
        } else if digits.len() == nixbase32::encoded_len(h.algo().size()) {
            HashFormat::Nix32
        } else {
            HashFormat::Base64
        };
        Ok((h, format))
    }

    /// Parse an SRI hash (`algo-base64`) only.
    pub fn parse_sri(s: &str) -> Result<Hash, HashError> {
        let (a, rest) = s
            .split_once('-')
            .ok_or_else(|| HashError::MissingAlgo(s.to_string()))?;
        let algo = a.parse::<HashAlgo>()?;
        Self::decode_base64(s, rest, algo)
    }

    fn parse_digits(whole: &str, digits: &str, algo: HashAlgo) -> Result<Hash, HashError> {
        let size = algo.size();
        let bad = |encoding| HashError::BadEncoding {
            hash: whole.to_string(),
            encoding,
        };
        if digits.len() == size * 2 {
            let bytes = HEXLOWER_PERMISSIVE
                .decode(digits.as_bytes())
                .map_err(|_| bad("base16"))?;
            Ok(Self::from_bytes(algo, &bytes).expect("length checked"))
        } else if digits.len() == nixbase32::encoded_len(size) {
            let bytes = nixbase32::decode(digits, size).map_err(|_| bad("nix32"))?;
            Ok(Self::from_bytes(algo, &bytes).expect("length checked"))
        } else if digits.len() == size.div_ceil(3) * 4 {
            Self::decode_base64(whole, digits, algo)
        } else {
            Err(HashError::BadLength {
                hash: whole.to_string(),
                algo,
            })
        }
    }

    fn decode_base64(whole: &str, digits: &str, algo: HashAlgo) -> Result<Hash, HashError> {
        let bytes = BASE64
            .decode(digits.as_bytes())
            .map_err(|_| HashError::BadEncoding {
                hash: whole.to_string(),
                encoding: "base64",
            })?;
        Self::from_bytes(algo, &bytes).ok_or_else(|| HashError::BadLength {
            hash: whole.to_string(),
            algo,
        })
    }

    /// Nix's `compressHash`: XOR-fold the digest into `len` bytes.
    pub fn truncate_xor(&self, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        for (i, b) in self.as_bytes().iter().enumerate() {
            out[i % len] ^= b;
        }
        out
    }

    /// [`Hash::truncate_xor`] into a fixed size (a store path's 20 bytes), without allocating.
    pub fn fold_into<const N: usize>(&self) -> [u8; N] {
        let mut out = [0u8; N];
        for (i, b) in self.as_bytes().iter().enumerate() {
            out[i % N] ^= b;
        }
        out
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algo, self.to_base16())
    }
}

/// `algo:nix32`, the form Nix stores in its database.
impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algo, self.to_nix32())
    }
}

#[derive(Clone)]
enum HasherInner {
    Md5(md5::Md5),
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

/// A streaming hasher that also counts the bytes it has seen. Cloning it keeps what has been
/// hashed so far: two texts with a common start hash it once.
#[derive(Clone)]
pub struct Hasher {
    inner: HasherInner,
    len: u64,
}

impl Hasher {
    pub fn new(algo: HashAlgo) -> Hasher {
        let inner = match algo {
            HashAlgo::Md5 => HasherInner::Md5(md5::Md5::new()),
            HashAlgo::Sha1 => HasherInner::Sha1(sha1::Sha1::new()),
            HashAlgo::Sha256 => HasherInner::Sha256(sha2::Sha256::new()),
            HashAlgo::Sha512 => HasherInner::Sha512(sha2::Sha512::new()),
        };
        Hasher { inner, len: 0 }
    }

    pub fn update(&mut self, data: &[u8]) {
        self.len += data.len() as u64;
        match &mut self.inner {
            HasherInner::Md5(h) => h.update(data),
            HasherInner::Sha1(h) => h.update(data),
            HasherInner::Sha256(h) => h.update(data),
            HasherInner::Sha512(h) => h.update(data),
        }
    }

    /// Number of bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn finish(self) -> Hash {
        // Each digest is copied straight from the stack: no vector in between.
        let mut bytes = [0u8; 64];
        let algo = match self.inner {
            HasherInner::Md5(h) => Self::put(&mut bytes, HashAlgo::Md5, &h.finalize()),
            HasherInner::Sha1(h) => Self::put(&mut bytes, HashAlgo::Sha1, &h.finalize()),
            HasherInner::Sha256(h) => Self::put(&mut bytes, HashAlgo::Sha256, &h.finalize()),
            HasherInner::Sha512(h) => Self::put(&mut bytes, HashAlgo::Sha512, &h.finalize()),
        };
        Hash { algo, bytes }
    }

    fn put(bytes: &mut [u8; 64], algo: HashAlgo, digest: &[u8]) -> HashAlgo {
        debug_assert_eq!(digest.len(), algo.size());
        bytes[..digest.len()].copy_from_slice(digest);
        algo
    }
}

impl std::io::Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_of_empty_sha256() {
        let h = Hash::digest(HashAlgo::Sha256, b"");
        assert_eq!(
            h.to_base16(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            h.to_sri(),
            "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
        assert_eq!(
            h.to_string(),
            "sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73"
        );
    }

    #[test]
    fn parse_every_form() {
        let h = Hash::digest(HashAlgo::Sha1, b"abc");
        for f in [
            HashFormat::Base16,
            HashFormat::Nix32,
            HashFormat::Base64,
            HashFormat::Sri,
        ] {
            assert_eq!(Hash::parse(&h.encode(f, true), None).unwrap(), h);
            if f != HashFormat::Sri {
                assert_eq!(
                    Hash::parse(&h.encode(f, false), Some(HashAlgo::Sha1)).unwrap(),
                    h
                );
            }
        }
        assert!(matches!(
            Hash::parse(&h.to_base16(), None),
            Err(HashError::MissingAlgo(_))
        ));
        assert!(matches!(
            Hash::parse(&h.to_base16(), Some(HashAlgo::Sha256)),
            Err(HashError::BadLength { .. })
        ));
        assert!(matches!(
            Hash::parse("sha1:zz", None),
            Err(HashError::BadLength { .. })
        ));
        assert!(matches!(
            Hash::parse(&format!("sha256:{}", h.to_base16()), Some(HashAlgo::Sha1)),
            Err(HashError::AlgoMismatch { .. })
        ));
    }

    #[test]
    fn base16_matches_data_encoding() {
        for algo in HashAlgo::ALL {
            let h = Hash::digest(algo, b"abc");
            assert_eq!(h.to_base16(), data_encoding::HEXLOWER.encode(h.as_bytes()));
            let mut s = String::from("x");
            h.push_base16(&mut s);
            assert_eq!(s, format!("x{}", h.to_base16()));
        }
    }

    #[test]
    fn truncate_xor_folds() {
        let h = Hash::from_bytes(HashAlgo::Md5, &[1u8; 16]).unwrap();
        assert_eq!(h.truncate_xor(8), vec![0u8; 8]);
        let h = Hash::digest(HashAlgo::Sha256, b"abc");
        assert_eq!(h.fold_into::<20>().to_vec(), h.truncate_xor(20));
    }
}
