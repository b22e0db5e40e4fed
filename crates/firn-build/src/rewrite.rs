//! Hash rewriting, for builds without the sandbox whose outputs are (partly) valid already, or
//! that `--check` them. A valid output cannot be built over, so, as CppNix does, the builder
//! is given a *fallback path* for it instead ([`fallback_path`]): every mention of the real
//! path's hash part in its environment and arguments becomes the fallback's. Afterwards the
//! outputs get the real hash parts back ([`rewrite_path`]) in everything their NAR
//! serialisation holds: file contents, symlink targets and file names. [`HashRewriter`] is the
//! streaming replacement itself, CppNix's `RewritingSink`.
//!
//! CppNix rewrites the NAR as one string and restores it. Here each of the NAR's strings is
//! rewritten while the tree is copied, which gives the same bytes (a hash part cannot run
//! across a NAR's framing: every string is preceded by its length, whose upper bytes are
//! zero), except that a directory whose entries change names is sorted again: a rewritten
//! NAR can have its entries out of order, which a strict NAR reader (firn's) refuses.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use firn_format::store_path::StorePathError;
use firn_format::{Hash, HashAlgo, StoreDir, StorePath};
use thiserror::Error;

/// Length of a store path's hash part.
const HASH_LEN: usize = 32;

/// How much of a file is read at a time while it is rewritten.
const READ_BUF: usize = 1 << 16;

/// Errors from computing fallback paths or rewriting an output, naming the path involved.
#[derive(Debug, Error)]
pub enum RewriteError {
    #[error("computing the fallback path of '{path}' for '{drv}': {source}")]
    FallbackPath {
        drv: String,
        path: String,
        #[source]
        source: StorePathError,
    },
    #[error("rewriting hashes: {op} '{path}': {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("rewriting hashes: file '{0}' has an unsupported type (only regular files, directories and symlinks can be stored)")]
    UnsupportedType(PathBuf),
    #[error("rewriting hashes: two entries of directory '{dir}' would both be named '{name}'")]
    Collision { dir: PathBuf, name: String },
    #[error(transparent)]
    Store(#[from] firn_store::StoreError),
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> RewriteError + 'a {
    move |source| RewriteError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// CppNix's `makeFallbackPath` for an output path known in advance: the path the builder
/// writes `output` of `drv_path` at when `output` is valid and there is no sandbox. Its type is
/// `rewrite:<drv base name>:<output base name>`, its inner hash SHA-256 of all zeroes, and it
/// keeps the output's name.
pub fn fallback_path(
    sd: &StoreDir,
    drv_path: &StorePath,
    output: &StorePath,
) -> Result<StorePath, RewriteError> {
    let zero =
        Hash::from_bytes(HashAlgo::Sha256, &[0u8; 32]).expect("32 bytes are a SHA-256 digest");
    let ty = format!("rewrite:{}:{}", drv_path.base_name(), output.base_name());
    sd.make_store_path(&ty, &zero, output.name())
        .map_err(|source| RewriteError::FallbackPath {
            drv: sd.display(drv_path),
            path: sd.display(output),
            source,
        })
}

fn is_nix32(c: u8) -> bool {
    // nixbase32's alphabet: digits and lower-case letters except e, o, u and t.
    matches!(c, b'0'..=b'9' | b'a'..=b'z') && !matches!(c, b'e' | b'o' | b'u' | b't')
}

/// Which hash parts become which (`from` → `to`, both 32 characters).
#[derive(Clone, Debug, Default)]
pub struct Rewrites {
    map: HashMap<[u8; HASH_LEN], [u8; HASH_LEN]>,
}

impl Rewrites {
    /// Rewrite the hash part of each `from` path into that of its `to` path.
    pub fn new<'a>(pairs: impl IntoIterator<Item = (&'a StorePath, &'a StorePath)>) -> Rewrites {
        let mut map = HashMap::new();
        for (from, to) in pairs {
            if from.hash_part() == to.hash_part() {
                continue;
            }
            let mut f = [0u8; HASH_LEN];
            let mut t = [0u8; HASH_LEN];
            f.copy_from_slice(from.hash_part().as_bytes());
            t.copy_from_slice(to.hash_part().as_bytes());
            map.insert(f, t);
        }
        Rewrites { map }
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Replace in `buf`, left to right without overlapping; returns how many leading bytes are
    /// decided (the rest, fewer than 32, may start a hash part that more data completes).
    fn replace(&self, buf: &mut [u8]) -> usize {
        let mut i = 0;
        while i + HASH_LEN <= buf.len() {
            // A character outside the alphabet rules out every window containing it.
            if let Some(j) = buf[i..i + HASH_LEN].iter().rposition(|&c| !is_nix32(c)) {
                i += j + 1;
                continue;
            }
            let mut key = [0u8; HASH_LEN];
            key.copy_from_slice(&buf[i..i + HASH_LEN]);
            match self.map.get(&key) {
                Some(to) => {
                    buf[i..i + HASH_LEN].copy_from_slice(to);
                    i += HASH_LEN;
                }
                None => i += 1,
            }
        }
        i
    }

    /// A whole string rewritten (a file name, a symlink target).
    pub fn apply(&self, s: &[u8]) -> Vec<u8> {
        let mut v = s.to_vec();
        self.replace(&mut v);
        v
    }
}

/// A `Write` adapter that rewrites hash parts before passing the stream on, like CppNix's
/// `RewritingSink`. One split across writes is still found, because the last 31 bytes are
/// held back until more data (or [`HashRewriter::finish`]) decides them.
pub struct HashRewriter<'a, W: Write> {
    rewrites: &'a Rewrites,
    inner: W,
    /// Bytes not passed on yet: fewer than `HASH_LEN`, which a later write may complete.
    held: Vec<u8>,
}

impl<'a, W: Write> HashRewriter<'a, W> {
    pub fn new(rewrites: &'a Rewrites, inner: W) -> HashRewriter<'a, W> {
        HashRewriter {
            rewrites,
            inner,
            held: Vec::new(),
        }
    }

    /// Pass on what is held back, flush, and give the inner writer back.
    pub fn finish(mut self) -> io::Result<W> {
        let held = std::mem::take(&mut self.held);
        self.inner.write_all(&held)?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for HashRewriter<'_, W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.rewrites.is_empty() {
            self.inner.write_all(data)?;
            return Ok(data.len());
        }
        self.held.extend_from_slice(data);
        let decided = self.rewrites.replace(&mut self.held);
        self.inner.write_all(&self.held[..decided])?;
        self.held.drain(..decided);
        Ok(data.len())
    }

    /// Flushes the inner writer only: held bytes may still be the start of a hash part.
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Rewrite the file, directory or symlink at `path` (a build output outside any sandbox,
/// canonicalised) with `rewrites`: a rewritten copy is made next to it (file by file, so no
/// whole file is held in memory), then takes its place. Modes other than the owner's execute
/// bit and times are left for the canonicalisation that follows.
pub fn rewrite_path(path: &Path, rewrites: &Rewrites) -> Result<(), RewriteError> {
    if rewrites.is_empty() {
        return Ok(());
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    firn_store::canon::delete_path(&tmp)?;
    if let Err(e) = copy_rewritten(path, &tmp, rewrites) {
        let _ = firn_store::canon::delete_path(&tmp);
        return Err(e);
    }
    firn_store::canon::delete_path(path)?;
    fs::rename(&tmp, path).map_err(io_err("moving the rewritten copy to", path))?;
    Ok(())
}

/// Copy `src` to `dst` (which must not exist) with every file's contents, symlink's target
/// and entry's name rewritten. Iterative, so a deep tree cannot overflow the stack.
fn copy_rewritten(src: &Path, dst: &Path, rewrites: &Rewrites) -> Result<(), RewriteError> {
    let mut todo = vec![(src.to_path_buf(), dst.to_path_buf())];
    let mut buf = vec![0u8; READ_BUF];
    while let Some((s, d)) = todo.pop() {
        let meta = fs::symlink_metadata(&s).map_err(io_err("getting status of", &s))?;
        let ft = meta.file_type();
        if ft.is_symlink() {
            let target = fs::read_link(&s).map_err(io_err("reading symlink", &s))?;
            let target = rewrites.apply(target.as_os_str().as_bytes());
            std::os::unix::fs::symlink(OsStr::from_bytes(&target), &d)
                .map_err(io_err("creating symlink", &d))?;
        } else if ft.is_file() {
            let mode = if meta.permissions().mode() & 0o100 != 0 {
                0o755
            } else {
                0o644
            };
            let mut input = fs::File::open(&s).map_err(io_err("opening", &s))?;
            let out = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&d)
                .map_err(io_err("creating", &d))?;
            let mut w = HashRewriter::new(rewrites, out);
            loop {
                let n = match input.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(io_err("reading", &s)(e)),
                };
                w.write_all(&buf[..n]).map_err(io_err("writing", &d))?;
            }
            w.finish().map_err(io_err("writing", &d))?;
        } else if ft.is_dir() {
            fs::create_dir(&d).map_err(io_err("creating directory", &d))?;
            let mut names = HashSet::new();
            for e in fs::read_dir(&s).map_err(io_err("reading directory", &s))? {
                let e = e.map_err(io_err("reading directory", &s))?;
                let name = e.file_name();
                let new = rewrites.apply(name.as_bytes());
                if !names.insert(new.clone()) {
                    return Err(RewriteError::Collision {
                        dir: s.clone(),
                        name: String::from_utf8_lossy(&new).into_owned(),
                    });
                }
                todo.push((s.join(&name), d.join(OsStr::from_bytes(&new))));
            }
        } else {
            return Err(RewriteError::UnsupportedType(s));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sp(s: &str) -> StorePath {
        StorePath::from_base_name(s).expect("a valid store path")
    }

    #[test]
    fn fallback_path_is_cppnix_s() {
        // Seen with CppNix 2.8: `nix-build --check` without the sandbox, store /tmp/h1-exp/store.
        let sd = StoreDir::new("/tmp/h1-exp/store");
        let drv = sp("s571lqifmrdl0wl274lbjk88sszh1aa2-det.drv");
        let out = sp("h2gbi1h7zgsygqmcpsqwazyy7a8qzi7m-det");
        let f = fallback_path(&sd, &drv, &out).expect("fallback path");
        assert_eq!(f.base_name(), "wy03a9z3w5bqw08maybnr8rwh5d4y6im-det");
    }

    fn rewrite_in_chunks(text: &[u8], pairs: &[(StorePath, StorePath)], chunk: usize) -> Vec<u8> {
        let rewrites = Rewrites::new(pairs.iter().map(|(a, b)| (a, b)));
        let mut w = HashRewriter::new(&rewrites, Vec::new());
        for part in text.chunks(chunk) {
            w.write_all(part).expect("writing to memory");
        }
        w.finish().expect("writing to memory")
    }

    #[test]
    fn rewrites_hashes_split_across_writes() {
        let a = sp("7rjj86a15146cq1d3qy068lml7n8ykzm-a");
        let a2 = sp("0000000000000000000000000000000a-a");
        let b = sp("ffffffffffffffffffffffffffffffff-b");
        let b2 = sp("11111111111111111111111111111111-b");
        let pairs = vec![(a.clone(), a2.clone()), (b.clone(), b2.clone())];
        let text = format!(
            "/s/{}-a/bin {}{} x{}\n{}",
            a.hash_part(),
            b.hash_part(),
            a.hash_part(),
            b.hash_part(),
            a.hash_part()
        );
        let want = format!(
            "/s/{}-a/bin {}{} x{}\n{}",
            a2.hash_part(),
            b2.hash_part(),
            a2.hash_part(),
            b2.hash_part(),
            a2.hash_part()
        );
        for chunk in [1, 2, 3, 7, 16, 31, 32, 33, 63, 64, 65, 1000] {
            let got = rewrite_in_chunks(text.as_bytes(), &pairs, chunk);
            assert_eq!(String::from_utf8_lossy(&got), want, "chunk {chunk}");
        }
    }

    #[test]
    fn leaves_other_text_alone() {
        let a = sp("7rjj86a15146cq1d3qy068lml7n8ykzm-a");
        let a2 = sp("0000000000000000000000000000000a-a");
        let pairs = vec![(a.clone(), a2)];
        // Almost the hash (one character differs), and a longer run around a non-match.
        let text = b"7rjj86a15146cq1d3qy068lml7n8ykzz 7rjj86a15146cq1d3qy068lml7n8ykz\x007rjj";
        for chunk in [1, 5, 32, 100] {
            assert_eq!(rewrite_in_chunks(text, &pairs, chunk), text.to_vec());
        }
        assert_eq!(rewrite_in_chunks(b"", &pairs, 1), Vec::<u8>::new());
    }

    /// A tree with `hash` in a file (across the read buffer's boundary), a name (which sorts
    /// elsewhere once rewritten), a symlink target, and deeper down.
    fn make_tree(root: &Path, hash: &str) {
        fs::create_dir_all(root.join("sub/deeper")).expect("mkdir");
        let mut big = vec![b'x'; READ_BUF - 10];
        big.extend_from_slice(hash.as_bytes());
        big.extend_from_slice(b"tail");
        big.extend(std::iter::repeat_n(b'y', READ_BUF));
        big.extend_from_slice(hash.as_bytes());
        fs::write(root.join("big"), &big).expect("write");
        fs::write(root.join(format!("{hash}-name")), "x").expect("write");
        fs::write(root.join("5-sorts-between"), "").expect("write");
        fs::write(root.join("exe"), format!("#!/bin/sh\necho {hash}\n")).expect("write");
        fs::set_permissions(root.join("exe"), fs::Permissions::from_mode(0o755)).expect("chmod");
        std::os::unix::fs::symlink(format!("/s/{hash}-a/exe"), root.join("link")).expect("symlink");
        fs::write(root.join("sub/deeper/f"), format!("..{hash}..")).expect("write");
    }

    #[test]
    fn rewrites_a_tree_as_its_nar() {
        let real = sp("7rjj86a15146cq1d3qy068lml7n8ykzm-a");
        let fallback = sp("0000000000000000000000000000000a-a");
        let tmp = tempfile::tempdir().expect("tempdir");
        let got = tmp.path().join("got");
        let want = tmp.path().join("want");
        make_tree(&got, fallback.hash_part());
        make_tree(&want, real.hash_part());
        rewrite_path(&got, &Rewrites::new([(&fallback, &real)])).expect("rewriting");
        let nar = |p: &Path| {
            let mut v = Vec::new();
            firn_store::nar_fs::dump_path(p, &mut v).expect("dumping");
            v
        };
        assert!(nar(&got) == nar(&want), "the rewritten tree differs");
        assert!(!tmp.path().join("got.tmp").exists());
    }

    #[test]
    fn names_that_would_collide_are_refused() {
        let real = sp("7rjj86a15146cq1d3qy068lml7n8ykzm-a");
        let fallback = sp("0000000000000000000000000000000a-a");
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("out");
        fs::create_dir(&root).expect("mkdir");
        fs::write(root.join(real.hash_part()), "").expect("write");
        fs::write(root.join(fallback.hash_part()), "").expect("write");
        let e = rewrite_path(&root, &Rewrites::new([(&fallback, &real)]));
        assert!(matches!(e, Err(RewriteError::Collision { .. })), "{e:?}");
        // The output is as it was, and no copy is left.
        assert!(root.join(fallback.hash_part()).exists());
        assert!(!tmp.path().join("out.tmp").exists());
    }
}
