//! Store URIs for binary caches: `file:///dir`, `http(s)://host/path`, `s3://bucket`, each
//! with `?name=value&...` parameters.
//!
//! As in CppNix, the parameters are split off and the rest is the cache's identity (the key of
//! the narinfo disk cache and what messages print); a trailing `/` of an HTTP URL is dropped.

use std::collections::BTreeMap;

use crate::{CacheError, Result};

/// The kind of location a binary cache lives at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A directory on this machine.
    File(std::path::PathBuf),
    /// `http://` or `https://` base URL, without a trailing slash.
    Http(String),
    /// An S3 bucket.
    S3 { bucket: String },
}

/// A parsed binary-cache URI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheUri {
    pub location: Location,
    pub params: BTreeMap<String, String>,
}

impl CacheUri {
    /// Whether `uri` names a binary cache (rather than a local or daemon store).
    pub fn is_cache_uri(uri: &str) -> bool {
        ["file://", "http://", "https://", "s3://"]
            .iter()
            .any(|p| uri.starts_with(p))
    }

    pub fn parse(uri: &str) -> Result<CacheUri> {
        let bad = |why: &str| CacheError::BadUri {
            uri: uri.to_string(),
            why: why.to_string(),
        };
        let (base, query) = match uri.split_once('?') {
            Some((b, q)) => (b, q),
            None => (uri, ""),
        };
        let mut params = BTreeMap::new();
        for kv in query.split('&').filter(|s| !s.is_empty()) {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            params.insert(percent_decode(k), percent_decode(v));
        }
        let location = if let Some(dir) = base.strip_prefix("file://") {
            if !dir.starts_with('/') {
                return Err(bad("a file:// cache needs an absolute directory"));
            }
            let dir = dir.trim_end_matches('/');
            Location::File(if dir.is_empty() { "/" } else { dir }.into())
        } else if base.starts_with("http://") || base.starts_with("https://") {
            let url = base.trim_end_matches('/');
            if url.ends_with(':') || url.ends_with("//") {
                return Err(bad("no host"));
            }
            Location::Http(url.to_string())
        } else if let Some(bucket) = base.strip_prefix("s3://") {
            let bucket = bucket.trim_end_matches('/');
            if bucket.is_empty() || bucket.contains('/') {
                return Err(bad("expected s3://BUCKET"));
            }
            Location::S3 {
                bucket: bucket.to_string(),
            }
        } else {
            return Err(bad(
                "not a binary cache (file://, http://, https:// or s3://)",
            ));
        };
        Ok(CacheUri { location, params })
    }

    /// The cache's identity: the URI without its parameters.
    pub fn base(&self) -> String {
        match &self.location {
            Location::File(d) => format!("file://{}", d.display()),
            Location::Http(u) => u.clone(),
            Location::S3 { bucket } => format!("s3://{bucket}"),
        }
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    /// A boolean parameter (`1`/`true`), or `default`.
    pub fn flag(&self, name: &str, default: bool) -> bool {
        match self.param(name) {
            Some(v) => v == "1" || v == "true",
            None => default,
        }
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_kinds() {
        let u = CacheUri::parse("file:///tmp/c?compression=zstd&secret-key=/k").unwrap();
        assert_eq!(u.location, Location::File("/tmp/c".into()));
        assert_eq!(u.param("compression"), Some("zstd"));
        assert_eq!(u.base(), "file:///tmp/c");
        let u = CacheUri::parse("https://cache.nixos.org/").unwrap();
        assert_eq!(u.base(), "https://cache.nixos.org");
        let u = CacheUri::parse("s3://b?endpoint=localhost%3A9000&region=x").unwrap();
        assert_eq!(u.param("endpoint"), Some("localhost:9000"));
        assert!(CacheUri::parse("file://rel").is_err());
        assert!(CacheUri::parse("s3://").is_err());
        assert!(CacheUri::parse("ssh://x").is_err());
        assert!(u.flag("missing", true));
    }
}
