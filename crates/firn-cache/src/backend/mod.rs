//! Where a binary cache's files live. A backend only moves whole files by key (`nix-cache-info`,
//! `<hash>.narinfo`, `nar/<file hash>.nar.xz`, ...): reads stream, writes are atomic (a reader
//! sees the old file or the new one, never part of one).

pub mod file;
pub mod http;
pub mod s3;

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::Result;

/// Data to upload: small files in memory, NARs from a staged file.
pub enum Upload<'a> {
    Bytes(&'a [u8]),
    File { path: &'a Path, size: u64 },
}

pub trait Backend: Send + Sync {
    /// The cache's identity, for messages.
    fn name(&self) -> &str;
    /// The file's contents as a stream, or `None` if the cache does not have it.
    fn get(&self, key: &str) -> Result<Option<Box<dyn Read + Send>>>;
    fn exists(&self, key: &str) -> Result<bool>;
    /// Create or replace a file.
    fn put(&self, key: &str, data: Upload<'_>, mime: &str) -> Result<()>;
    /// A directory where staged uploads should be written so that [`Backend::put`] can move
    /// them into place without copying (file caches); `None` to use the temporary directory.
    fn staging_dir(&self) -> Option<PathBuf> {
        None
    }

    /// The names of the files at the top of the cache (not those under `nar/` and the
    /// like), to find every narinfo; `None` when the backend cannot list (HTTP).
    fn list_top(&self) -> Result<Option<Vec<String>>> {
        Ok(None)
    }

    /// The whole file, for small files such as narinfos.
    fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let Some(mut r) = self.get(key)? else {
            return Ok(None);
        };
        let mut v = Vec::new();
        r.read_to_end(&mut v).map_err(|e| crate::CacheError::Io {
            op: "reading",
            key: key.to_string(),
            cache: self.name().to_string(),
            source: e,
        })?;
        Ok(Some(v))
    }
}

/// A failed HTTP request in words: the status (with `detail` drawn from the response body, if
/// given: S3 explains its errors there) or the transport error.
pub(crate) fn describe_ureq(e: ureq::Error, detail: Option<fn(&str) -> Option<String>>) -> String {
    match e {
        ureq::Error::Status(code, resp) => {
            let status = resp.status_text().to_string();
            let extra = match detail {
                Some(f) => f(&resp.into_string().unwrap_or_default()).unwrap_or_default(),
                None => String::new(),
            };
            format!("HTTP error {code} ({status}) {extra}")
                .trim_end()
                .to_string()
        }
        ureq::Error::Transport(t) => t.to_string(),
    }
}

/// Keys are made by firn, but a narinfo's `URL` comes from the cache: refuse anything that
/// could leave the cache (absolute, `..`, empty components, backslashes, control characters).
pub fn check_key(key: &str, cache: &str) -> Result<()> {
    let bad = key.is_empty()
        || key.starts_with('/')
        || key
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
        || key.bytes().any(|b| b < 0x20 || b == b'\\' || b == 0x7f);
    if bad {
        return Err(crate::CacheError::Other(format!(
            "binary cache '{cache}' refers to the invalid file name '{}'",
            key.escape_debug()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys() {
        for good in [
            "nix-cache-info",
            "nar/abc.nar.xz",
            "x.narinfo",
            "log/a-b.drv",
        ] {
            super::check_key(good, "c").unwrap();
        }
        for bad in [
            "",
            "/etc/passwd",
            "nar/../../x",
            "a//b",
            "./a",
            "a\\b",
            "a\nb",
        ] {
            assert!(super::check_key(bad, "c").is_err(), "{bad}");
        }
    }
}
