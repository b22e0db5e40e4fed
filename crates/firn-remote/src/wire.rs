//! Nix's wire encoding, as in CppNix's `serialise.cc`: unsigned 64-bit little-endian integers
//! (booleans are 0/1), strings as a length, the bytes and zero padding to a multiple of 8,
//! lists of strings as a count and the strings. Reading refuses oversized strings and
//! non-zero padding.

use std::io::{self, Read, Write};

/// The longest string accepted (store paths, hashes, signatures: far less).
pub const MAX_STRING: u64 = 1 << 20;
/// The most strings in one list.
pub const MAX_LIST: u64 = 1 << 24;

pub fn read_u64(r: &mut dyn Read) -> io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

pub fn read_bool(r: &mut dyn Read) -> io::Result<bool> {
    Ok(read_u64(r)? != 0)
}

pub fn read_bytes(r: &mut dyn Read, max: u64) -> io::Result<Vec<u8>> {
    let n = read_u64(r)?;
    if n > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("string of {n} bytes is longer than the limit of {max}"),
        ));
    }
    let mut v = vec![0u8; n as usize];
    r.read_exact(&mut v)?;
    let pad = (8 - (n % 8)) % 8;
    let mut p = [0u8; 8];
    r.read_exact(&mut p[..pad as usize])?;
    if p.iter().any(|&b| b != 0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "non-zero padding",
        ));
    }
    Ok(v)
}

pub fn read_string(r: &mut dyn Read) -> io::Result<String> {
    String::from_utf8(read_bytes(r, MAX_STRING)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "string is not UTF-8"))
}

pub fn read_strings(r: &mut dyn Read) -> io::Result<Vec<String>> {
    let n = read_u64(r)?;
    if n > MAX_LIST {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("list of {n} strings is too long"),
        ));
    }
    (0..n).map(|_| read_string(r)).collect()
}

pub fn write_u64(w: &mut dyn Write, n: u64) -> io::Result<()> {
    w.write_all(&n.to_le_bytes())
}

pub fn write_bytes(w: &mut dyn Write, s: &[u8]) -> io::Result<()> {
    write_u64(w, s.len() as u64)?;
    w.write_all(s)?;
    let pad = (8 - (s.len() % 8)) % 8;
    w.write_all(&[0u8; 8][..pad])
}

pub fn write_string(w: &mut dyn Write, s: &str) -> io::Result<()> {
    write_bytes(w, s.as_bytes())
}

pub fn write_strings<'a>(
    w: &mut dyn Write,
    items: impl ExactSizeIterator<Item = &'a str>,
) -> io::Result<()> {
    write_u64(w, items.len() as u64)?;
    for s in items {
        write_string(w, s)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_refusals() {
        let mut buf = Vec::new();
        write_u64(&mut buf, 7).unwrap();
        write_string(&mut buf, "hello").unwrap();
        write_strings(&mut buf, ["a", "bcdefghij"].into_iter()).unwrap();
        assert_eq!(buf.len(), 8 + 16 + 8 + 16 + 24);
        let mut r = &buf[..];
        assert_eq!(read_u64(&mut r).unwrap(), 7);
        assert_eq!(read_string(&mut r).unwrap(), "hello");
        assert_eq!(read_strings(&mut r).unwrap(), vec!["a", "bcdefghij"]);
        assert!(r.is_empty());

        let mut bad = Vec::new();
        write_u64(&mut bad, 1).unwrap();
        bad.extend_from_slice(b"x\x01\0\0\0\0\0\0");
        assert!(read_string(&mut &bad[..]).is_err());
        let mut huge = Vec::new();
        write_u64(&mut huge, u64::MAX).unwrap();
        assert!(read_string(&mut &huge[..]).is_err());
        assert!(read_strings(&mut &huge[..]).is_err());
        assert!(read_string(&mut &b"\x05\0\0\0\0\0\0\0ab"[..]).is_err());
    }
}
