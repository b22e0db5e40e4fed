//! The `nix-store --export` stream: for each path `1`, its NAR, the magic `NIXE`, the path,
//! its references and deriver, and `0` (no legacy signature); `0` at the end. Integers are
//! 64-bit little-endian; strings are length-prefixed and padded to 8 bytes, as in NARs.

use std::collections::BTreeSet;
use std::io::{Read, Write};

use firn_format::{StoreDir, StorePath};

use crate::error::{Result, StoreError};
use crate::local::LocalStore;
use crate::path_info::ValidPathInfo;

/// The magic after each exported NAR.
pub const EXPORT_MAGIC: u64 = 0x4558494e;

fn io(e: std::io::Error) -> StoreError {
    StoreError::Other(format!("export stream: {e}"))
}

pub fn write_u64(out: &mut dyn Write, n: u64) -> Result<()> {
    out.write_all(&n.to_le_bytes()).map_err(io)
}

pub fn write_str(out: &mut dyn Write, s: &str) -> Result<()> {
    write_u64(out, s.len() as u64)?;
    out.write_all(s.as_bytes()).map_err(io)?;
    let pad = (8 - s.len() % 8) % 8;
    out.write_all(&[0u8; 8][..pad]).map_err(io)
}

pub fn read_u64(input: &mut dyn Read) -> Result<u64> {
    let mut b = [0u8; 8];
    input.read_exact(&mut b).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            StoreError::Other("export stream ends early".into())
        } else {
            io(e)
        }
    })?;
    Ok(u64::from_le_bytes(b))
}

pub fn read_str(input: &mut dyn Read, max: u64) -> Result<String> {
    let n = read_u64(input)?;
    if n > max {
        return Err(StoreError::Other(format!(
            "export stream has a string of {n} bytes, more than the {max} allowed"
        )));
    }
    let mut v = vec![0u8; n as usize + (8 - n as usize % 8) % 8];
    input.read_exact(&mut v).map_err(io)?;
    v.truncate(n as usize);
    String::from_utf8(v)
        .map_err(|_| StoreError::Other("export stream has a non-UTF-8 string".into()))
}

/// What follows each NAR.
pub struct Trailer {
    pub path: StorePath,
    pub references: BTreeSet<StorePath>,
    pub deriver: Option<StorePath>,
}

pub fn write_trailer(out: &mut dyn Write, sd: &StoreDir, info: &ValidPathInfo) -> Result<()> {
    write_u64(out, EXPORT_MAGIC)?;
    write_str(out, &sd.display(&info.path))?;
    write_u64(out, info.references.len() as u64)?;
    for r in &info.references {
        write_str(out, &sd.display(r))?;
    }
    write_str(
        out,
        &info
            .deriver
            .as_ref()
            .map(|d| sd.display(d))
            .unwrap_or_default(),
    )?;
    write_u64(out, 0)
}

pub fn read_trailer(input: &mut dyn Read, sd: &StoreDir) -> Result<Trailer> {
    if read_u64(input)? != EXPORT_MAGIC {
        return Err(StoreError::Other(
            "Nix archive cannot be imported; wrong format".into(),
        ));
    }
    let path = sd.parse(&read_str(input, 4096)?)?;
    let n = read_u64(input)?;
    if n > 1_000_000 {
        return Err(StoreError::Other(format!(
            "export stream claims {n} references"
        )));
    }
    let mut references = BTreeSet::new();
    for _ in 0..n {
        references.insert(sd.parse(&read_str(input, 4096)?)?);
    }
    let d = read_str(input, 4096)?;
    let deriver = if d.is_empty() {
        None
    } else {
        Some(sd.parse(&d)?)
    };
    if read_u64(input)? == 1 {
        read_str(input, 1 << 20)?;
    }
    Ok(Trailer {
        path,
        references,
        deriver,
    })
}

/// Referenced paths before their referrers, as CppNix exports them.
pub fn sort_for_export(store: &LocalStore, paths: &BTreeSet<StorePath>) -> Result<Vec<StorePath>> {
    let mut refs = std::collections::BTreeMap::new();
    for p in paths {
        let info = store
            .query_path_info(p)?
            .ok_or_else(|| StoreError::InvalidPath(store.store_dir().display(p)))?;
        refs.insert(p.clone(), info.references);
    }
    let mut sorted = crate::topo::topo_sort(paths, |p| refs.get(p).cloned().unwrap_or_default())
        .map_err(StoreError::Other)?;
    sorted.reverse();
    Ok(sorted)
}
