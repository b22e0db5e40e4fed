//! Request paths to routes. Only the cache's exact file names are accepted: a hash part is 32
//! nixbase32 characters, a NAR hash is nixbase32, a log name is a valid store path base name, a
//! realisation's name is `sha256:<base16>!<output name>` as CppNix writes it.
//! Nothing is percent-decoded, so `%2f`, `..` and the like can never form a file name; they are
//! refused here, before any lookup.

use firn_cache::compression::Compression;
use firn_format::nixbase32;
use firn_format::store_path::validate_name;
use firn_format::store_path::HASH_CHARS;
use firn_format::{Hash, HashAlgo, StorePath};
use firn_store::realisations::DrvOutput;

/// What a request asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `/nix-cache-info`
    CacheInfo,
    /// `/<hash>.narinfo`
    NarInfo { hash: String },
    /// `/<hash>.ls`
    Listing { hash: String },
    /// `/nar/<hash>[-<nar hash>].nar[.zst|.xz]`
    Nar {
        hash: String,
        nar_hash: Option<String>,
        compression: Compression,
    },
    /// `/log/<base name>` (a `.drv`, or a path whose deriver's log is wanted)
    Log { path: StorePath },
    /// `/realisations/<sha256:base16>!<output>.doi` (`ca-derivations`)
    Realisation { id: DrvOutput },
}

/// Why a path is not a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reject {
    /// No such file in a binary cache (404).
    NotFound,
    /// The right shape but a malformed hash or name (400).
    BadRequest,
}

/// Is `s` a store path hash part?
pub fn is_hash_part(s: &str) -> bool {
    s.len() == HASH_CHARS && s.bytes().all(nixbase32::is_valid_char)
}

fn hash_part(s: &str) -> Result<String, Reject> {
    if is_hash_part(s) {
        Ok(s.to_string())
    } else {
        Err(Reject::BadRequest)
    }
}

/// The route of a request path (without the query string).
pub fn parse(path: &str) -> Result<Route, Reject> {
    if path == "/nix-cache-info" {
        return Ok(Route::CacheInfo);
    }
    if let Some(rest) = path.strip_prefix("/nar/") {
        return parse_nar(rest);
    }
    if let Some(base) = path.strip_prefix("/log/") {
        return StorePath::from_base_name(base)
            .map(|path| Route::Log { path })
            .map_err(|_| Reject::BadRequest);
    }
    if let Some(file) = path.strip_prefix("/realisations/") {
        let id = file.strip_suffix(".doi").ok_or(Reject::NotFound)?;
        return parse_drv_output(id).map(|id| Route::Realisation { id });
    }
    let Some(file) = path.strip_prefix('/') else {
        return Err(Reject::BadRequest);
    };
    if file.contains('/') {
        return Err(Reject::NotFound);
    }
    if let Some(h) = file.strip_suffix(".narinfo") {
        return Ok(Route::NarInfo {
            hash: hash_part(h)?,
        });
    }
    if let Some(h) = file.strip_suffix(".ls") {
        return Ok(Route::Listing {
            hash: hash_part(h)?,
        });
    }
    Err(Reject::NotFound)
}

/// A realisation's id in the one form CppNix names its files by: a SHA-256 in lower-case
/// base16 with its algorithm, `!`, and an output name.
fn parse_drv_output(id: &str) -> Result<DrvOutput, Reject> {
    let (hash, output) = id.split_once('!').ok_or(Reject::BadRequest)?;
    let hex = hash.strip_prefix("sha256:").ok_or(Reject::BadRequest)?;
    let canonical = hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !canonical || validate_name(output).is_err() {
        return Err(Reject::BadRequest);
    }
    let drv_hash = Hash::parse(hex, Some(HashAlgo::Sha256)).map_err(|_| Reject::BadRequest)?;
    Ok(DrvOutput {
        drv_hash,
        output: output.to_string(),
    })
}

fn parse_nar(file: &str) -> Result<Route, Reject> {
    let (stem, compression) = if let Some(s) = file.strip_suffix(".nar.zst") {
        (s, Compression::Zstd)
    } else if let Some(s) = file.strip_suffix(".nar.xz") {
        (s, Compression::Xz)
    } else if let Some(s) = file.strip_suffix(".nar") {
        (s, Compression::None)
    } else {
        return Err(Reject::NotFound);
    };
    let (hash, nar_hash) = match stem.split_once('-') {
        None => (stem, None),
        Some((h, nh)) => {
            let ok = !nh.is_empty() && nh.len() <= 128 && nh.bytes().all(nixbase32::is_valid_char);
            if !ok {
                return Err(Reject::BadRequest);
            }
            (h, Some(nh.to_string()))
        }
    };
    Ok(Route::Nar {
        hash: hash_part(hash)?,
        nar_hash,
        compression,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "7rjj86a15146cq1d3qy068lml7n8ykzm";
    const NH: &str = "0mw6qwsrz35cck0wnjgmfnjzwnjbspsyihnfkng38kxghdc9k9zd";

    #[test]
    fn good_routes() {
        assert_eq!(parse("/nix-cache-info"), Ok(Route::CacheInfo));
        assert_eq!(
            parse(&format!("/{H}.narinfo")),
            Ok(Route::NarInfo { hash: H.into() })
        );
        assert_eq!(
            parse(&format!("/{H}.ls")),
            Ok(Route::Listing { hash: H.into() })
        );
        assert_eq!(
            parse(&format!("/nar/{H}-{NH}.nar")),
            Ok(Route::Nar {
                hash: H.into(),
                nar_hash: Some(NH.into()),
                compression: Compression::None
            })
        );
        assert_eq!(
            parse(&format!("/nar/{H}-{NH}.nar.zst")),
            Ok(Route::Nar {
                hash: H.into(),
                nar_hash: Some(NH.into()),
                compression: Compression::Zstd
            })
        );
        assert_eq!(
            parse(&format!("/nar/{H}-{NH}.nar.xz")),
            Ok(Route::Nar {
                hash: H.into(),
                nar_hash: Some(NH.into()),
                compression: Compression::Xz
            })
        );
        assert_eq!(
            parse(&format!("/nar/{H}.nar")),
            Ok(Route::Nar {
                hash: H.into(),
                nar_hash: None,
                compression: Compression::None
            })
        );
        let log = parse(&format!("/log/{H}-hello.drv")).unwrap();
        assert!(matches!(log, Route::Log { path } if path.name() == "hello.drv"));
        let id = format!("sha256:{}!out", "5e".repeat(32));
        let r = parse(&format!("/realisations/{id}.doi")).unwrap();
        assert!(matches!(r, Route::Realisation { id: ref d } if d.to_string() == id));
    }

    #[test]
    fn refused() {
        use Reject::*;
        for (p, why) in [
            ("", BadRequest),
            ("nix-cache-info", BadRequest),
            ("/", NotFound),
            ("/index.html", NotFound),
            ("/nix-cache-info/", NotFound),
            ("/nar/../../etc/passwd", NotFound),
            ("/nar/../../etc/passwd.nar", BadRequest),
            ("/nar/%2e%2e%2fetc.nar", BadRequest),
            ("/xxxx.narinfo", BadRequest),
            ("/7rjj86a15146cq1d3qy068lml7n8ykze.narinfo", BadRequest),
            ("/7RJJ86A15146CQ1D3QY068LML7N8YKZM.narinfo", BadRequest),
            ("/../7rjj86a15146cq1d3qy068lml7n8ykzm.narinfo", NotFound),
            ("/a/7rjj86a15146cq1d3qy068lml7n8ykzm.narinfo", NotFound),
            ("/nar/7rjj86a15146cq1d3qy068lml7n8ykzm.nar.bz2", NotFound),
            ("/nar/7rjj86a15146cq1d3qy068lml7n8ykzm.nar.xz.zst", NotFound),
            ("/nar/7rjj86a15146cq1d3qy068lml7n8ykze.nar.xz", BadRequest),
            ("/nar/7rjj86a15146cq1d3qy068lml7n8ykzm-.nar", BadRequest),
            ("/nar/7rjj86a15146cq1d3qy068lml7n8ykzm-a/b.nar", BadRequest),
            ("/log/..", BadRequest),
            ("/log/../../etc/passwd", BadRequest),
            ("/log/7rjj86a15146cq1d3qy068lml7n8ykzm-a%2fb", BadRequest),
            ("/log/7rjj86a15146cq1d3qy068lml7n8ykzm-a/b", BadRequest),
            ("/realisations/x.doi", BadRequest),
            ("/realisations/sha256:5e!out.doi", BadRequest),
            (
                "/realisations/sha256:5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E!out.doi",
                BadRequest,
            ),
            (
                "/realisations/sha256:5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e!../x.doi",
                BadRequest,
            ),
            (
                "/realisations/sha256%3a5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e!out.doi",
                BadRequest,
            ),
            ("/realisations/a", NotFound),
        ] {
            assert_eq!(parse(p), Err(why), "{p:?}");
        }
    }
}
