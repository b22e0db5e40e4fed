//! Text that is not UTF-8. Nix reads source files (and `readFile`) as bytes, so a string
//! literal may hold any bytes; firn's strings are UTF-8. A byte that is not part of valid
//! UTF-8 is therefore carried as a stand-in character, U+10FF00 plus the byte (the range
//! U+10FF80..=U+10FFFF at the end of a private-use plane), and turned back into that byte
//! where text leaves firn (stderr, stdout) and where bytes are what counts (`toJSON`'s
//! UTF-8 check, columns in positions). Those 128 code points written as UTF-8 in a source
//! are taken for the bytes they stand for.

use std::borrow::Cow;

/// The stand-in of raw byte `b` (0x80..=0xFF; ASCII is always valid UTF-8).
pub fn stand_in(b: u8) -> char {
    char::from_u32(0x10FF00 + u32::from(b)).unwrap_or(char::REPLACEMENT_CHARACTER)
}

/// The raw byte that `c` stands for, if it is a stand-in.
pub fn raw_byte(c: char) -> Option<u8> {
    match u32::from(c) {
        c @ 0x10FF80..=0x10FFFF => Some((c - 0x10FF00) as u8),
        _ => None,
    }
}

/// Whether `bytes` (UTF-8) hold a stand-in: `F4 8F BE xx` or `F4 8F BF xx`.
fn stand_in_at(bytes: &[u8], i: usize) -> bool {
    bytes[i] == 0xF4
        && bytes.get(i + 1) == Some(&0x8F)
        && matches!(bytes.get(i + 2), Some(0xBE | 0xBF))
}

/// How many stand-ins the UTF-8 text `bytes` holds (each is 4 bytes for 1 raw byte).
pub fn count_stand_ins(bytes: &[u8]) -> usize {
    (0..bytes.len()).filter(|&i| stand_in_at(bytes, i)).count()
}

/// Whether `s` holds any stand-in.
pub fn has_raw(s: &str) -> bool {
    let b = s.as_bytes();
    // Quick: a stand-in starts with 0xF4, which text rarely has.
    b.contains(&0xF4) && count_stand_ins(b) > 0
}

/// Bytes as text: valid UTF-8 as it is, every other byte as its stand-in.
pub fn decode(bytes: Vec<u8>) -> String {
    let bytes = match String::from_utf8(bytes) {
        Ok(s) => return s,
        Err(e) => e.into_bytes(),
    };
    let mut out = String::with_capacity(bytes.len() + 16);
    let mut rest = &bytes[..];
    loop {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                out.push_str(s);
                return out;
            }
            Err(e) => {
                let (valid, after) = rest.split_at(e.valid_up_to());
                // Valid up to there, by `valid_up_to`.
                out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                let bad = e.error_len().unwrap_or(after.len());
                out.extend(after[..bad].iter().map(|&b| stand_in(b)));
                rest = &after[bad..];
            }
        }
    }
}

/// Text as the bytes it stands for (stand-ins back to their raw bytes).
pub fn encode(s: &str) -> Cow<'_, [u8]> {
    if !has_raw(s) {
        return Cow::Borrowed(s.as_bytes());
    }
    let mut out = Vec::with_capacity(s.len());
    for c in s.chars() {
        match raw_byte(c) {
            Some(b) => out.push(b),
            None => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    Cow::Owned(out)
}

/// `s` as valid UTF-8 for a JSON string, or the error CppNix's JSON library gives for the
/// bytes it stands for ("invalid UTF-8 byte at index 16: 0xFF", the index in bytes).
/// Stand-ins that together are valid UTF-8 become the characters they spell.
pub fn utf8_for_json(s: &str) -> Result<Cow<'_, str>, String> {
    if !has_raw(s) {
        return Ok(Cow::Borrowed(s));
    }
    let bytes = encode(s).into_owned();
    match String::from_utf8(bytes) {
        Ok(v) => Ok(Cow::Owned(v)),
        Err(e) => {
            let bytes = e.as_bytes();
            let e = e.utf8_error();
            let at = e.valid_up_to();
            Err(match e.error_len() {
                // A byte that starts no sequence is refused where it is; otherwise the
                // byte that does not continue the sequence is.
                Some(n) => {
                    let i = if matches!(bytes[at], 0x80..=0xC1 | 0xF5..=0xFF) {
                        at
                    } else {
                        at + n
                    };
                    format!("invalid UTF-8 byte at index {i}: 0x{:02X}", bytes[i])
                }
                None => format!(
                    "incomplete UTF-8 string; last byte: 0x{:02X}",
                    bytes.last().copied().unwrap_or(0)
                ),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip() {
        for bytes in [
            b"plain".to_vec(),
            b"caf\xc3\xa9".to_vec(),
            b"_\xff_".to_vec(),
            b"\xc3".to_vec(),
            b"a\xe2\x82".to_vec(),
            b"\xf0\x90\x41\x80\x80".to_vec(),
        ] {
            let text = decode(bytes.clone());
            assert_eq!(&*encode(&text), &bytes[..], "{text:?}");
            assert_eq!(
                count_stand_ins(text.as_bytes()),
                text.chars().filter(|c| raw_byte(*c).is_some()).count()
            );
        }
        assert_eq!(decode(b"_\xff_".to_vec()), "_\u{10FFFF}_");
        assert!(!has_raw("caf\u{e9} \u{10FF7F}"));
    }

    #[test]
    fn json_errors_as_cppnix() {
        let check = |bytes: &[u8]| utf8_for_json(&decode(bytes.to_vec())).map(|s| s.into_owned());
        assert_eq!(check(b"ok"), Ok("ok".to_string()));
        assert_eq!(
            check(b"_invalid UTF-8: \xff_"),
            Err("invalid UTF-8 byte at index 16: 0xFF".to_string())
        );
        assert_eq!(
            check(b"\xc3x"),
            Err("invalid UTF-8 byte at index 1: 0x78".to_string())
        );
        assert_eq!(
            check(b"\xc0\xaf"),
            Err("invalid UTF-8 byte at index 0: 0xC0".to_string())
        );
        assert_eq!(
            check(b"ab\xe2\x82"),
            Err("incomplete UTF-8 string; last byte: 0x82".to_string())
        );
        // Raw bytes that spell a character (halves of it, joined) are that character.
        let joined = format!("{}{}", stand_in(0xc3), stand_in(0xa9));
        assert_eq!(utf8_for_json(&joined).as_deref(), Ok("\u{e9}"));
    }
}
