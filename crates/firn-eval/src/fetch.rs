//! The fetchers `builtins.fetchurl` and `builtins.fetchTarball` (`file://`, `http://`,
//! `https://`), as CppNix 2.8 has them: the download becomes a fixed-output store path
//! (`fetchurl`: the file, flat, named after the URL; `fetchTarball`: the single top-level
//! entry of the unpacked archive, recursive, named `source`), checked against
//! `sha256` when given; with a known hash and a valid path, nothing is downloaded.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use firn_format::hash::HashFormat;
use firn_format::{Hash, HashAlgo};

use crate::builtins::{attrs, force, PrimFn};
use crate::error::{err, EResult, EvalError};
use crate::eval::Evaluator;
use crate::value::*;

/// A temporary directory removed when dropped (read-only parts included).
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new() -> EResult<TempDir> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "firn-fetch-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&p)
            .map_err(|e| EvalError::new(format!("creating '{}': {e}", p.display())))?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = make_writable(&self.0);
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Unpacked archives and git objects may be read-only; open directories up so the tree can be
/// removed.
fn make_writable(p: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let m = fs::symlink_metadata(p)?;
    if m.is_dir() {
        fs::set_permissions(p, fs::Permissions::from_mode(0o755))?;
        for e in fs::read_dir(p)? {
            make_writable(&e?.path())?;
        }
    }
    Ok(())
}

/// The body of `url` as a stream.
fn open_url(url: &str) -> EResult<Box<dyn Read>> {
    let fail = |why: String| EvalError::new(format!("unable to download '{url}': {why}"));
    if let Some(path) = url.strip_prefix("file://") {
        return Ok(Box::new(
            fs::File::open(path).map_err(|e| fail(e.to_string()))?,
        ));
    }
    if url.starts_with("http://") || url.starts_with("https://") {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(std::time::Duration::from_secs(30))
            .timeout_read(std::time::Duration::from_secs(300))
            .user_agent(concat!("firn/", env!("CARGO_PKG_VERSION")))
            .build();
        return match agent.get(url).call() {
            Ok(r) => Ok(r.into_reader()),
            Err(ureq::Error::Status(code, r)) => {
                Err(fail(format!("HTTP error {code} ({})", r.status_text())))
            }
            Err(ureq::Error::Transport(t)) => Err(fail(t.to_string())),
        };
    }
    Err(fail(
        "unsupported URL scheme (firn fetches file://, http:// and https://)".into(),
    ))
}

/// Download `url` to `dest`.
fn download(url: &str, dest: &Path) -> EResult<()> {
    let mut r = open_url(url)?;
    let mut f = fs::File::create(dest)
        .map_err(|e| EvalError::new(format!("creating '{}': {e}", dest.display())))?;
    io::copy(&mut r, &mut f)
        .map_err(|e| EvalError::new(format!("unable to download '{url}': {e}")))?;
    Ok(())
}

/// The arguments of a fetcher: a URL string, or `{ url, sha256?, name? }`.
struct Args {
    url: String,
    name: Option<String>,
    sha256: Option<Hash>,
}

fn args(ev: &mut Evaluator, t: &Thunk, who: &str) -> EResult<Args> {
    let v = force(ev, t)?;
    let str_of = |ev: &mut Evaluator, t: &Thunk| -> EResult<String> {
        match force(ev, t)? {
            Value::String(s) => Ok(s.s.to_string()),
            Value::Path(p) => Ok(p.to_string()),
            other => err(format!(
                "value is {} while a string was expected",
                other.type_name()
            )),
        }
    };
    if let Value::Attrs(_) = v {
        let a = attrs(ev, t)?;
        let mut out = Args {
            url: String::new(),
            name: None,
            sha256: None,
        };
        for (k, t) in a.iter() {
            match &**k {
                "url" => out.url = str_of(ev, t)?,
                "name" => out.name = Some(str_of(ev, t)?),
                "sha256" => {
                    let s = str_of(ev, t)?;
                    out.sha256 = Some(
                        Hash::parse(&s, Some(HashAlgo::Sha256))
                            .map_err(|e| EvalError::new(e.to_string()))?,
                    );
                }
                other => {
                    return err(format!("unsupported argument '{other}' to '{who}'"));
                }
            }
        }
        if out.url.is_empty() {
            return err(format!("'url' argument required in call to '{who}'"));
        }
        Ok(out)
    } else {
        Ok(Args {
            url: str_of(ev, t)?,
            name: None,
            sha256: None,
        })
    }
}

fn result(ev: &mut Evaluator, p: &firn_format::StorePath) -> Value {
    let s = ev.store.dir.display(p);
    Value::String(NixString::with_context(s.clone(), vec![s]))
}

fn mismatch(url: &str, want: &Hash, got: &Hash) -> EvalError {
    EvalError::new(format!(
        "hash mismatch in file downloaded from '{url}':\n  specified: {}\n  got:       {}",
        want.encode(HashFormat::Nix32, true),
        got.encode(HashFormat::Nix32, true)
    ))
}

fn fetchurl(ev: &mut Evaluator, a: &[Thunk]) -> EResult<Value> {
    let args = args(ev, &a[0], "fetchurl")?;
    let name = match args.name {
        Some(n) => n,
        None => args
            .url
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or("")
            .to_string(),
    };
    if let Some(h) = &args.sha256 {
        let (p, valid) = ev.store.known_download(&name, false, h)?;
        if valid {
            return Ok(result(ev, &p));
        }
    }
    let tmp = TempDir::new()?;
    let file = tmp.0.join("download");
    download(&args.url, &file)?;
    let (p, got) = ev.store.add_download(&name, &file, false)?;
    if let Some(want) = &args.sha256 {
        if *want != got {
            return Err(mismatch(&args.url, want, &got));
        }
    }
    Ok(result(ev, &p))
}

/// Which decompressor a tarball needs, from its first bytes.
fn decompress(mut r: Box<dyn Read>) -> io::Result<Box<dyn Read>> {
    let mut head = [0u8; 6];
    let mut n = 0;
    while n < head.len() {
        let k = r.read(&mut head[n..])?;
        if k == 0 {
            break;
        }
        n += k;
    }
    let rest = io::Cursor::new(head[..n].to_vec()).chain(r);
    Ok(match &head[..n] {
        [0x1f, 0x8b, ..] => Box::new(flate2::read::MultiGzDecoder::new(rest)),
        [0xfd, b'7', b'z', b'X', b'Z', 0] => {
            Box::new(xz2::read::XzDecoder::new_multi_decoder(rest))
        }
        [b'B', b'Z', b'h', ..] => Box::new(bzip2::read::MultiBzDecoder::new(rest)),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Box::new(zstd::stream::read::Decoder::new(rest)?),
        _ => Box::new(rest),
    })
}

/// Unpack the tar stream `r` into `dir` (entries never land outside it).
fn unpack(r: Box<dyn Read>, dir: &Path, url: &str) -> EResult<()> {
    let fail = |e: io::Error| EvalError::new(format!("unpacking '{url}': {e}"));
    let mut ar = tar::Archive::new(decompress(r).map_err(fail)?);
    ar.set_preserve_permissions(false);
    ar.set_preserve_mtime(false);
    ar.set_unpack_xattrs(false);
    ar.set_overwrite(true);
    ar.unpack(dir).map_err(fail)
}

fn fetch_tarball(ev: &mut Evaluator, a: &[Thunk]) -> EResult<Value> {
    let args = args(ev, &a[0], "fetchTarball")?;
    let name = args.name.unwrap_or_else(|| "source".to_string());
    if let Some(h) = &args.sha256 {
        let (p, valid) = ev.store.known_download(&name, true, h)?;
        if valid {
            return Ok(result(ev, &p));
        }
    }
    let tmp = TempDir::new()?;
    let dir = tmp.0.join("unpacked");
    fs::create_dir_all(&dir)
        .map_err(|e| EvalError::new(format!("creating '{}': {e}", dir.display())))?;
    unpack(open_url(&args.url)?, &dir, &args.url)?;
    // As CppNix 2.8: exactly one top-level entry, which is the result.
    let entries: Vec<_> = fs::read_dir(&dir)
        .map_err(|e| EvalError::new(format!("reading '{}': {e}", dir.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| EvalError::new(format!("reading '{}': {e}", dir.display())))?;
    let top = match entries.as_slice() {
        [one] => one.path(),
        _ => {
            return err(format!(
                "tarball '{}' contains an unexpected number of top-level files",
                args.url
            ))
        }
    };
    let (p, got) = ev.store.add_download(&name, &top, true)?;
    if let Some(want) = &args.sha256 {
        if *want != got {
            return Err(mismatch(&args.url, want, &got));
        }
    }
    Ok(result(ev, &p))
}

pub fn table() -> Vec<(&'static str, usize, PrimFn)> {
    vec![
        ("fetchurl", 1, fetchurl),
        ("fetchTarball", 1, fetch_tarball),
    ]
}
