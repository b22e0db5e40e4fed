//! Nix's base-32 encoding ("nixbase32").
//!
//! Nix encodes hashes in a base-32 variant with its own alphabet (no `e`, `o`, `u`, `t`) and its
//! own bit order: the last character holds the lowest bits of the first byte. The encoded length
//! of `n` bytes is `ceil(n * 8 / 5)`.

use thiserror::Error;

/// The 32 characters Nix uses, in digit order.
pub const ALPHABET: &[u8; 32] = b"0123456789abcdfghijklmnpqrsvwxyz";

/// A string that is not valid nixbase32 for the expected length.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("invalid character {0:?} in nixbase32 string")]
    InvalidChar(char),
    #[error("nixbase32 string has length {got}, expected {expected}")]
    BadLength { got: usize, expected: usize },
    #[error("nixbase32 string has bits set beyond the decoded length")]
    TrailingBits,
}

/// Length of the nixbase32 encoding of `len` bytes.
pub const fn encoded_len(len: usize) -> usize {
    if len == 0 {
        0
    } else {
        (len * 8 - 1) / 5 + 1
    }
}

/// Encode bytes as nixbase32.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(encoded_len(bytes.len()));
    encode_into(&mut out, bytes);
    out
}

/// Append the nixbase32 encoding of `bytes` to `out` (store paths are built this way, with
/// no string of their own for the hash part).
pub fn encode_into(out: &mut String, bytes: &[u8]) {
    // Up to a SHA-512's worth, the digits go to a buffer first and are appended in one go:
    // a `char` pushed at a time is checked for room and encoded each time.
    let mut buf = [0u8; encoded_len(64)];
    let len = encoded_len(bytes.len());
    if len > buf.len() {
        out.reserve(len);
        for n in (0..len).rev() {
            out.push(char::from(digit_at(bytes, n)));
        }
        return;
    }
    // Five bytes are exactly eight digits: each group of five is read as one number and its
    // digits taken by shifting, rather than each digit gathered from the bytes it straddles.
    // The last digit holds the lowest bits, so the groups fill the digits from the end; the
    // digits of the bytes left over (fewer than five) come first.
    let digits = &mut buf[..len];
    let word = |chunk: &[u8]| {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        u64::from_le_bytes(w)
    };
    let groups = bytes.chunks_exact(5);
    let rest = groups.remainder();
    for (eight, chunk) in digits.rchunks_exact_mut(8).zip(groups) {
        let v = word(chunk);
        for (k, d) in eight.iter_mut().rev().enumerate() {
            *d = ALPHABET[((v >> (5 * k)) & 0x1f) as usize];
        }
    }
    if !rest.is_empty() {
        let v = word(rest);
        let first = len - bytes.len() / 5 * 8;
        for (k, d) in digits[..first].iter_mut().rev().enumerate() {
            *d = ALPHABET[((v >> (5 * k)) & 0x1f) as usize];
        }
    }
    out.push_str(std::str::from_utf8(&buf[..len]).expect("nixbase32 digits are ASCII"));
}

/// The character for the `n`th group of five bits of `bytes` (from the lowest bits of the
/// first byte).
fn digit_at(bytes: &[u8], n: usize) -> u8 {
    let b = n * 5;
    let i = b / 8;
    let j = b % 8;
    let lo = (bytes[i] as u16) >> j;
    let hi = if i + 1 < bytes.len() {
        (bytes[i + 1] as u16) << (8 - j)
    } else {
        0
    };
    ALPHABET[((lo | hi) & 0x1f) as usize]
}

fn digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'd' => Some(c - b'a' + 10),
        b'f'..=b'n' => Some(c - b'f' + 14),
        b'p'..=b's' => Some(c - b'p' + 23),
        b'v'..=b'z' => Some(c - b'v' + 27),
        _ => None,
    }
}

/// Which bytes are characters of the alphabet: store paths are checked a character at a
/// time, and a table is one load where [`digit`]'s ranges are several comparisons.
const VALID: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < ALPHABET.len() {
        t[ALPHABET[i] as usize] = true;
        i += 1;
    }
    t
};

/// Is `c` a character of the nixbase32 alphabet?
pub fn is_valid_char(c: u8) -> bool {
    VALID[usize::from(c)]
}

/// Are all of `s` characters of the nixbase32 alphabet? Every store path parsed checks its
/// hash part: comparisons without a branch a byte (the digits, and the letters but `e`, `o`,
/// `t`, `u`) are done many bytes at once, where a table is one load a byte.
pub fn all_valid_chars(s: &[u8]) -> bool {
    s.iter().fold(true, |ok, &c| {
        let digit = c.wrapping_sub(b'0') < 10;
        let letter = c.wrapping_sub(b'a') < 26;
        let excluded = (c == b'e') | (c == b'o') | (c == b't') | (c == b'u');
        ok & (digit | (letter & !excluded))
    })
}

/// Decode a nixbase32 string into exactly `out_len` bytes.
pub fn decode(s: &str, out_len: usize) -> Result<Vec<u8>, DecodeError> {
    let s = s.as_bytes();
    if s.len() != encoded_len(out_len) {
        return Err(DecodeError::BadLength {
            got: s.len(),
            expected: encoded_len(out_len),
        });
    }
    let mut out = vec![0u8; out_len];
    for (n, &c) in s.iter().rev().enumerate() {
        let d = digit(c).ok_or(DecodeError::InvalidChar(c as char))? as u16;
        let b = n * 5;
        let i = b / 8;
        let j = b % 8;
        out[i] |= (d << j) as u8;
        let carry = d >> (8 - j);
        if i + 1 < out_len {
            out[i + 1] |= carry as u8;
        } else if carry != 0 {
            return Err(DecodeError::TrailingBits);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        // sha256("") as Nix prints it.
        let h = sha2_empty();
        assert_eq!(
            encode(&h),
            "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73"
        );
        assert_eq!(decode(&encode(&h), 32).unwrap(), h);
    }

    fn sha2_empty() -> Vec<u8> {
        use sha2::Digest;
        sha2::Sha256::digest(b"").to_vec()
    }

    /// The digits made five bytes at a time are those made a digit at a time.
    #[test]
    fn encode_matches_digit_at_a_time() {
        for len in 0..70usize {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 151 + 7) as u8 ^ 0xa5).collect();
            let want: String = (0..encoded_len(len))
                .rev()
                .map(|n| char::from(digit_at(&bytes, n)))
                .collect();
            assert_eq!(encode(&bytes), want, "{len} bytes");
        }
    }

    #[test]
    fn roundtrip_all_lengths() {
        for len in 0..70usize {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(decode(&encode(&bytes), len).unwrap(), bytes);
        }
    }

    #[test]
    fn valid_chars_are_the_digits() {
        for c in 0..=255u8 {
            assert_eq!(is_valid_char(c), digit(c).is_some(), "{c}");
            assert_eq!(all_valid_chars(&[c]), digit(c).is_some(), "{c}");
        }
    }

    /// A string is valid when each of its characters is, wherever a bad one is.
    #[test]
    fn all_valid_chars_finds_any_bad_one() {
        let good = b"0mdqa9w1p6cmli6976v4wi0sw9r4p5pr";
        assert!(all_valid_chars(good));
        assert!(all_valid_chars(b""));
        for i in 0..good.len() {
            for bad in [b'e', b'o', b't', b'u', b'A', b'/', b'-', 0, 0xff] {
                let mut s = *good;
                s[i] = bad;
                assert!(!all_valid_chars(&s), "{bad} at {i}");
            }
        }
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(
            decode("e", 0),
            Err(DecodeError::BadLength {
                got: 1,
                expected: 0
            })
        );
        let s = "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c7e";
        assert_eq!(decode(s, 32), Err(DecodeError::InvalidChar('e')));
        // The first character carries only 1 meaningful bit for 32 bytes.
        let s = "zmdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73";
        assert_eq!(decode(s, 32), Err(DecodeError::TrailingBits));
    }
}
