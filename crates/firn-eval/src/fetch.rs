//! Downloading for the evaluator's fetchers, and the fetchers `builtins.fetchurl` and
//! `builtins.fetchTarball` (`file://`, `http://`, `https://`), as CppNix 2.8 has them.
//!
//! - [`download_file`] and [`download_tarball`] are CppNix's `downloadFile`/`downloadTarball`:
//!   the download becomes a flat store path named `name`; a tarball is also unpacked and its
//!   single top-level entry added (recursive) under the same name. Both go through CppNix's
//!   fetcher cache, so a download is not repeated within `tarball-ttl` (one hour), and an
//!   expired entry is revalidated with its `ETag` (`If-None-Match`).
//! - The fetcher cache is CppNix's own file, `$XDG_CACHE_HOME/nix/fetcher-cache-v1.sqlite`
//!   (`~/.cache/...`), with its schema and its JSON keys, so that firn and CppNix find each
//!   other's entries. An entry whose store path is not valid is ignored. Without a store to
//!   read (paths only computed) the cache is not used.
//! - `fetchurl`: the file, flat, named after the URL; `fetchTarball`: the unpacked tree, named
//!   `source`; both checked against `sha256` when given, and with a known hash and a valid
//!   path nothing is downloaded. They write to the store even in read-only evaluation, as
//!   CppNix's do.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsString;
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use firn_format::hash::HashFormat;
use firn_format::{Hash, HashAlgo, StorePath};

use crate::builtins::{attrs, force, PrimFn};
use crate::error::{err, EResult, EvalError};
use crate::eval::Evaluator;
use crate::flakeref::{attrs_to_json, Attr, Attrs};
use crate::value::*;

/// CppNix's default `tarball-ttl`: how long an unlocked cache entry (a download, the tip of
/// a Git branch) is used without asking the source again.
pub(crate) const TARBALL_TTL: u64 = 3600;

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

/// Seconds since the epoch, now.
pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `$XDG_CACHE_HOME`, or `$HOME/.cache` (CppNix's `getCacheDir`).
pub(crate) fn cache_home(ev: &Evaluator) -> String {
    if let Some(c) = std::env::var_os("XDG_CACHE_HOME") {
        return c.to_string_lossy().into_owned();
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| ev.home.clone());
    format!("{home}/.cache")
}

// ---------------------------------------------------------------------------------------------
// Transfers

/// A response: the body, and what the fetcher cache keeps of it.
struct Response {
    body: Box<dyn Read>,
    /// The `ETag` header as sent (empty when there is none, and for `file://`).
    etag: String,
    /// The URL after redirections.
    effective_url: String,
    /// `304 Not Modified` (or the expected `ETag` again): the cached copy is current.
    not_modified: bool,
}

/// Decode `%XX` escapes (a file name in a `file://` URL).
fn percent_decode_path(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = (b[i] == b'%')
            .then(|| s.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(c) => {
                out.push(c);
                i += 3;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    out
}

/// An IO error as CppNix words it (`strerror`, without Rust's `(os error N)`).
pub(crate) fn io_msg(e: &io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Request `url`; with `expected_etag`, only if it changed.
fn request(url: &str, expected_etag: &str) -> EResult<Response> {
    let fail = |why: String| EvalError::new(format!("unable to download '{url}': {why}"));
    if let Some(rest) = url.strip_prefix("file://") {
        // As curl: no host, and the query and fragment are not part of the file name.
        let path = rest.split(['?', '#']).next().unwrap_or("");
        let path = percent_decode_path(path);
        let path = Path::new(std::ffi::OsStr::from_bytes(&path));
        let f = fs::File::open(path).map_err(|e| fail(io_msg(&e)))?;
        if f.metadata().is_ok_and(|m| m.is_dir()) {
            return Err(fail("it is a directory".into()));
        }
        return Ok(Response {
            body: Box::new(f),
            etag: String::new(),
            effective_url: url.to_string(),
            not_modified: false,
        });
    }
    if url.starts_with("http://") || url.starts_with("https://") {
        let agent = firn_http::agent_builder(url)
            .map_err(|e| fail(e.to_string()))?
            .timeout_connect(std::time::Duration::from_secs(30))
            .timeout_read(std::time::Duration::from_secs(300))
            .build();
        let mut req = agent.get(url);
        if !expected_etag.is_empty() {
            req = req.set("If-None-Match", expected_etag);
        }
        return match req.call() {
            Ok(r) => {
                let etag = r.header("ETag").unwrap_or("").trim().to_string();
                let status = r.status();
                let effective_url = r.get_url().to_string();
                // A server that sends ETags but ignores If-None-Match (GitHub did) answers
                // 200 with the same ETag: that is not modified either.
                let not_modified = status == 304
                    || (status == 200 && !expected_etag.is_empty() && etag == expected_etag);
                Ok(Response {
                    body: Box::new(r.into_reader()),
                    etag: if status == 304 && etag.is_empty() {
                        expected_etag.to_string()
                    } else {
                        etag
                    },
                    effective_url,
                    not_modified,
                })
            }
            Err(ureq::Error::Status(code, r)) => {
                Err(fail(format!("HTTP error {code} ({})", r.status_text())))
            }
            Err(ureq::Error::Transport(t)) => {
                let mut why = t.kind().to_string();
                if let Some(m) = t.message() {
                    why.push_str(&format!(": {m}"));
                }
                if let Some(src) = std::error::Error::source(&t) {
                    why.push_str(&format!(": {src}"));
                }
                Err(fail(why))
            }
        };
    }
    Err(fail(
        "unsupported URL scheme (firn fetches file://, http:// and https://)".into(),
    ))
}

// ---------------------------------------------------------------------------------------------
// The fetcher cache (CppNix's `fetchers::Cache`, `fetcher-cache-v1.sqlite`)

const CACHE_SCHEMA: &str = "
create table if not exists Cache (
    input     text not null,
    info      text not null,
    path      text not null,
    immutable integer not null,
    timestamp integer not null,
    primary key (input)
);
";

thread_local! {
    /// Open cache databases by file (`None`: it could not be opened, which was reported).
    static CACHES: RefCell<HashMap<PathBuf, Option<Rc<rusqlite::Connection>>>> =
        RefCell::new(HashMap::new());
}

fn open_cache(file: &Path) -> Result<rusqlite::Connection, String> {
    if let Some(dir) = file.parent() {
        fs::create_dir_all(dir)
            .map_err(|e| format!("creating '{}': {}", dir.display(), io_msg(&e)))?;
    }
    let setup = || -> rusqlite::Result<rusqlite::Connection> {
        let conn = rusqlite::Connection::open(file)?;
        conn.busy_timeout(std::time::Duration::from_secs(60))?;
        // CppNix's `SQLite::isCache`: the same journal mode, so both can use the file.
        conn.pragma_update(None, "synchronous", "off")?;
        conn.pragma_update(
            Some(rusqlite::DatabaseName::Main),
            "journal_mode",
            "truncate",
        )?;
        conn.execute_batch(CACHE_SCHEMA)?;
        Ok(conn)
    };
    setup().map_err(|e| e.to_string())
}

/// The cache of this evaluation's user, if there is a store to check entries against and the
/// file can be opened (otherwise fetching goes on without it, with a warning).
fn cache(ev: &Evaluator) -> Option<Rc<rusqlite::Connection>> {
    ev.store.backend()?;
    let file = PathBuf::from(format!("{}/nix/fetcher-cache-v1.sqlite", cache_home(ev)));
    CACHES.with(|c| {
        c.borrow_mut()
            .entry(file.clone())
            .or_insert_with(|| match open_cache(&file) {
                Ok(conn) => Some(Rc::new(conn)),
                Err(e) => {
                    eprintln!(
                        "warning: cannot open the fetcher cache '{}': {e}; continuing without it",
                        file.display()
                    );
                    None
                }
            })
            .clone()
    })
}

/// Input attributes from the cache's JSON (CppNix's `jsonToAttrs`).
pub(crate) fn attrs_from_json(s: &str) -> Option<Attrs> {
    attrs_from_value(&serde_json::from_str(s).ok()?)
}

/// The attributes of a JSON object of strings, numbers and Booleans (None for anything else).
pub(crate) fn attrs_from_value(v: &serde_json::Value) -> Option<Attrs> {
    let mut out = Attrs::new();
    for (k, v) in v.as_object()? {
        let a = match v {
            serde_json::Value::Number(n) => Attr::Int(n.as_u64()?),
            serde_json::Value::String(s) => Attr::Str(s.clone()),
            serde_json::Value::Bool(b) => Attr::Bool(*b),
            _ => return None,
        };
        out.insert(k.clone(), a);
    }
    Some(out)
}

/// A cache entry whose store path is valid.
pub(crate) struct Cached {
    pub info: Attrs,
    pub path: StorePath,
    /// Older than `tarball-ttl` and not locked: may be used only when the source is unreachable
    /// or unchanged.
    pub expired: bool,
}

/// CppNix's `Cache::lookupExpired`.
pub(crate) fn cache_lookup_expired(ev: &mut Evaluator, input: &Attrs) -> EResult<Option<Cached>> {
    let Some(conn) = cache(ev) else {
        return Ok(None);
    };
    let key = attrs_to_json(input);
    let row = conn
        .query_row(
            "select info, path, immutable, timestamp from Cache where input = ?",
            [&key],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            },
        )
        .map(Some)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        });
    let (info, path, immutable, timestamp) = match row {
        Ok(Some(r)) => r,
        Ok(None) => return Ok(None),
        Err(e) => {
            eprintln!("warning: reading the fetcher cache: {e}");
            return Ok(None);
        }
    };
    // Entries that do not parse (another store directory, a newer format) are not ours.
    let (Ok(path), Some(info)) = (ev.store.dir.parse(&path), attrs_from_json(&info)) else {
        return Ok(None);
    };
    if let Some(store) = ev.store.backend() {
        store.add_temp_root(&path).map_err(|e| {
            EvalError::new(format!(
                "adding a temporary root for '{}': {e}",
                ev.store.dir.display(&path)
            ))
        })?;
    }
    if !ev.store.is_valid(&path)? {
        return Ok(None);
    }
    let expired =
        immutable == 0 && (timestamp.max(0) as u64).saturating_add(TARBALL_TTL) < now_secs();
    Ok(Some(Cached {
        info,
        path,
        expired,
    }))
}

/// CppNix's `Cache::lookup`: an entry that has not expired.
pub(crate) fn cache_lookup(
    ev: &mut Evaluator,
    input: &Attrs,
) -> EResult<Option<(Attrs, StorePath)>> {
    Ok(cache_lookup_expired(ev, input)?
        .filter(|c| !c.expired)
        .map(|c| (c.info, c.path)))
}

/// CppNix's `Cache::add` (`locked` entries never expire).
pub(crate) fn cache_add(
    ev: &Evaluator,
    input: &Attrs,
    info: &Attrs,
    path: &StorePath,
    locked: bool,
) {
    let Some(conn) = cache(ev) else {
        return;
    };
    let r = conn.execute(
        "insert or replace into Cache(input, info, path, immutable, timestamp) values (?, ?, ?, ?, ?)",
        rusqlite::params![
            attrs_to_json(input),
            attrs_to_json(info),
            ev.store.dir.display(path),
            locked as i64,
            now_secs() as i64
        ],
    );
    if let Err(e) = r {
        eprintln!("warning: writing the fetcher cache: {e}");
    }
}

/// Build input attributes from pairs.
pub(crate) fn attrs_of<const N: usize>(pairs: [(&str, Attr); N]) -> Attrs {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

fn get_str(a: &Attrs, name: &str) -> Option<String> {
    match a.get(name) {
        Some(Attr::Str(s)) => Some(s.clone()),
        _ => None,
    }
}

fn get_int(a: &Attrs, name: &str) -> Option<u64> {
    match a.get(name) {
        Some(Attr::Int(n)) => Some(*n),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Store helpers

/// The NAR hash of a valid path (of a computed one, `fallback`: the files it was made from).
pub(crate) fn nar_hash_of(ev: &Evaluator, p: &StorePath, fallback: Option<&Path>) -> EResult<Hash> {
    let shown = ev.store.dir.display(p);
    if let Some(store) = ev.store.backend() {
        if let Some(info) = store
            .query_path_info(p)
            .map_err(|e| EvalError::new(format!("querying '{shown}': {e}")))?
        {
            return Ok(info.nar_hash);
        }
    }
    let src = fallback
        .map(Path::to_path_buf)
        .unwrap_or_else(|| ev.store.real_path(&shown));
    firn_store::nar_fs::hash_path(&src, HashAlgo::Sha256)
        .map(|(h, _)| h)
        .map_err(|e| EvalError::new(format!("hashing '{}': {e}", src.display())))
}

/// Whether anything (a symbolic link included) is at `p`.
pub(crate) fn path_exists(p: &str) -> bool {
    fs::symlink_metadata(p).is_ok()
}

/// A SHA-1 (a revision) in any encoding, surrounding whitespace ignored.
pub(crate) fn parse_sha1(s: &str) -> EResult<Hash> {
    Hash::parse(s.trim(), Some(HashAlgo::Sha1)).map_err(|e| EvalError::new(e.to_string()))
}

/// The cache directory of a repository fetched from `url`, `$XDG_CACHE_HOME/nix/KIND/<nix32
/// sha256 of the URL>` as CppNix names it (`gitv3`, `hg`), its parent created, and a lock on
/// it held until the guard is dropped (two evaluations do not fetch into it at once).
pub(crate) fn repo_cache_dir(
    ev: &Evaluator,
    kind: &str,
    url: &str,
) -> EResult<(String, firn_store::lock::PathLocks)> {
    let h = Hash::digest(HashAlgo::Sha256, url.as_bytes());
    let dir = format!("{}/nix/{kind}/{}", cache_home(ev), h.to_nix32());
    let parent = Path::new(&dir)
        .parent()
        .expect("the cache directory has a parent");
    fs::create_dir_all(parent)
        .map_err(|e| EvalError::new(format!("creating '{}': {e}", parent.display())))?;
    let lock = firn_store::lock::PathLocks::lock(&[PathBuf::from(&dir)])
        .map_err(|e| EvalError::new(format!("locking '{dir}': {e}")))?;
    Ok((dir, lock))
}

/// Add the files of the working tree at `dir` that a version control tool listed (`listed`:
/// paths relative to `dir`, each ended by a NUL byte), and the directories leading to them,
/// to the store as a recursive path named `name` (a dirty tree's tracked files).
pub(crate) fn add_listed_files(
    ev: &mut Evaluator,
    name: &str,
    dir: &str,
    listed: &[u8],
    check: &crate::fetch_tree::Check,
) -> EResult<(StorePath, Hash)> {
    let files: BTreeSet<&[u8]> = listed
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .collect();
    let root = PathBuf::from(crate::eval::canon_path(dir));
    let mut keep = |p: &Path, ft: std::fs::FileType| -> bool {
        let Ok(rel) = p.strip_prefix(&root) else {
            return false;
        };
        let rel = rel.as_os_str().as_bytes();
        if ft.is_dir() {
            let mut prefix = rel.to_vec();
            prefix.push(b'/');
            files
                .range(prefix.as_slice()..)
                .next()
                .is_some_and(|f| f.starts_with(&prefix))
        } else {
            files.contains(rel)
        }
    };
    add_tree_checked(
        ev,
        name,
        &root,
        Some(&mut keep),
        check.expected,
        check.mismatch,
    )
}

/// Add the tree at `dir` (without what `keep` rejects) to the store as a recursive path named
/// `name`. With `expected`, the NAR hash is checked first, so that a mismatch (reported by
/// `mismatch`, given the path it would have had and the hash found) adds nothing.
pub(crate) fn add_tree_checked(
    ev: &mut Evaluator,
    name: &str,
    dir: &Path,
    mut keep: Option<firn_store::nar_fs::KeepFn<'_>>,
    expected: Option<&Hash>,
    mismatch: &dyn Fn(&Evaluator, &StorePath, &Hash) -> EvalError,
) -> EResult<(StorePath, Hash)> {
    if let Some(want) = expected {
        let hashing = |e: firn_store::nar_fs::NarFsError| {
            EvalError::new(format!("hashing '{}': {e}", dir.display()))
        };
        let got = match keep.as_mut() {
            Some(k) => {
                let mut h = firn_format::hash::Hasher::new(HashAlgo::Sha256);
                firn_store::nar_fs::dump_path_filtered(dir, &mut h, &mut **k).map_err(hashing)?;
                h.finish()
            }
            None => {
                firn_store::nar_fs::hash_path(dir, HashAlgo::Sha256)
                    .map_err(hashing)?
                    .0
            }
        };
        if got != *want {
            let p = ev
                .store
                .dir
                .make_fixed_output_path(
                    name,
                    firn_format::store_path::FileIngestionMethod::Recursive,
                    &got,
                    [],
                    false,
                )
                .map_err(|e| EvalError::new(format!("adding '{}': {e}", dir.display())))?;
            return Err(mismatch(ev, &p, &got));
        }
    }
    match keep {
        Some(k) => ev.store.add_download_filtered(name, dir, k),
        None => ev.store.add_download(name, dir, true),
    }
}

// ---------------------------------------------------------------------------------------------
// downloadFile, downloadTarball

/// A file downloaded into the store (CppNix's `DownloadFileResult`).
pub(crate) struct DownloadedFile {
    pub path: StorePath,
    pub etag: String,
}

/// A download not added to the store yet: the cached path, or a fresh file.
struct PendingFile {
    url: String,
    name: String,
    locked: bool,
    etag: String,
    effective_url: String,
    /// A still valid cache entry (or the source said it is unchanged).
    cached: Option<StorePath>,
    /// Whether the cache entries are to be written (not for an unexpired hit).
    record: bool,
    /// The fresh download.
    fresh: Option<(TempDir, PathBuf)>,
}

impl PendingFile {
    /// Where the contents are.
    fn local_path(&self, ev: &Evaluator) -> PathBuf {
        match (&self.fresh, &self.cached) {
            (Some((_, f)), _) => f.clone(),
            (None, Some(p)) => ev.store.real_path(&ev.store.dir.display(p)),
            (None, None) => PathBuf::new(),
        }
    }

    /// Add the fresh file to the store and record the cache entries.
    fn commit(self, ev: &mut Evaluator) -> EResult<DownloadedFile> {
        let path = match (&self.fresh, self.cached) {
            (Some((_, file)), _) => ev.store.add_download(&self.name, file, false)?.0,
            (None, Some(p)) => p,
            (None, None) => return err(format!("nothing was downloaded from '{}'", self.url)),
        };
        if self.record {
            let info = attrs_of([
                ("etag", Attr::Str(self.etag.clone())),
                ("url", Attr::Str(self.effective_url.clone())),
            ]);
            let key = |url: &str| {
                attrs_of([
                    ("type", "file".into()),
                    ("url", url.into()),
                    ("name", self.name.as_str().into()),
                ])
            };
            cache_add(ev, &key(&self.url), &info, &path, self.locked);
            if self.url != self.effective_url {
                cache_add(ev, &key(&self.effective_url), &info, &path, self.locked);
            }
        }
        Ok(DownloadedFile {
            path,
            etag: self.etag,
        })
    }
}

/// The first half of `downloadFile`: a cache hit, or the file fetched to a temporary
/// directory.
fn start_download(ev: &mut Evaluator, url: &str, name: &str, locked: bool) -> EResult<PendingFile> {
    let key = attrs_of([
        ("type", "file".into()),
        ("url", url.into()),
        ("name", name.into()),
    ]);
    let cached = cache_lookup_expired(ev, &key)?;
    let mut pending = PendingFile {
        url: url.to_string(),
        name: name.to_string(),
        locked,
        etag: String::new(),
        effective_url: url.to_string(),
        cached: None,
        record: true,
        fresh: None,
    };
    let cached_etag = cached.as_ref().and_then(|c| get_str(&c.info, "etag"));
    let use_cached = |mut p: PendingFile, c: Cached| {
        p.etag = get_str(&c.info, "etag").unwrap_or_default();
        p.effective_url = get_str(&c.info, "url").unwrap_or_else(|| p.url.clone());
        p.cached = Some(c.path);
        p
    };
    if let Some(c) = cached.as_ref().filter(|c| !c.expired) {
        let c = Cached {
            info: c.info.clone(),
            path: c.path.clone(),
            expired: false,
        };
        let mut p = use_cached(pending, c);
        p.record = false;
        return Ok(p);
    }
    let res = match request(url, cached_etag.as_deref().unwrap_or("")) {
        Ok(r) => r,
        Err(e) => {
            return match cached {
                Some(c) => {
                    eprintln!("warning: {}; using cached version", e.msg);
                    let mut p = use_cached(pending, c);
                    p.record = false;
                    Ok(p)
                }
                None => Err(e),
            }
        }
    };
    pending.etag = res.etag;
    pending.effective_url = res.effective_url;
    if res.not_modified {
        if let Some(c) = cached {
            pending.cached = Some(c.path);
            return Ok(pending);
        }
    }
    let tmp = TempDir::new()?;
    let file = tmp.0.join("download");
    let mut body = res.body;
    let mut f = fs::File::create(&file)
        .map_err(|e| EvalError::new(format!("creating '{}': {e}", file.display())))?;
    io::copy(&mut body, &mut f)
        .map_err(|e| EvalError::new(format!("unable to download '{url}': {e}")))?;
    pending.fresh = Some((tmp, file));
    Ok(pending)
}

/// CppNix's `downloadFile`: `url` as a flat store path named `name`, through the cache.
pub(crate) fn download_file(
    ev: &mut Evaluator,
    url: &str,
    name: &str,
    locked: bool,
) -> EResult<DownloadedFile> {
    start_download(ev, url, name, locked)?.commit(ev)
}

/// [`download_file`], and the NAR hash of the file; with `expected`, a fresh download whose
/// NAR hash differs is an error (made by `mismatch`) before anything is added.
pub(crate) fn download_file_checked(
    ev: &mut Evaluator,
    url: &str,
    name: &str,
    locked: bool,
    expected: Option<&Hash>,
    mismatch: &dyn Fn(&Evaluator, &StorePath, &Hash) -> EvalError,
) -> EResult<(DownloadedFile, Hash)> {
    let pending = start_download(ev, url, name, locked)?;
    if let (Some(want), Some((_, file))) = (expected, &pending.fresh) {
        let hashing = |e: String| EvalError::new(format!("hashing '{}': {e}", file.display()));
        let got = firn_store::nar_fs::hash_path(file, HashAlgo::Sha256)
            .map_err(|e| hashing(e.to_string()))?
            .0;
        if got != *want {
            let p = pending_path(ev, name, file)?;
            return Err(mismatch(ev, &p, &got));
        }
    }
    // Without a store the path is only computed: hash the file before it goes.
    let early = match (&pending.fresh, ev.store.backend()) {
        (Some((_, file)), None) => {
            Some(nar_hash_of(ev, &pending_path(ev, name, file)?, Some(file))?)
        }
        _ => None,
    };
    let f = pending.commit(ev)?;
    let nar_hash = match early {
        Some(h) => h,
        None => nar_hash_of(ev, &f.path, None)?,
    };
    Ok((f, nar_hash))
}

/// The flat store path `file` will have under `name`.
fn pending_path(ev: &Evaluator, name: &str, file: &Path) -> EResult<StorePath> {
    let h = firn_store::local::hash_file(file, HashAlgo::Sha256)
        .map_err(|e| EvalError::new(format!("hashing '{}': {e}", file.display())))?
        .0;
    ev.store
        .dir
        .make_fixed_output_path(
            name,
            firn_format::store_path::FileIngestionMethod::Flat,
            &h,
            [],
            false,
        )
        .map_err(|e| EvalError::new(format!("adding '{}': {e}", file.display())))
}

/// An unpacked tarball in the store.
pub(crate) struct Tarball {
    pub path: StorePath,
    pub nar_hash: Hash,
    /// The modification time of the top-level entry.
    pub last_modified: u64,
}

/// CppNix's `downloadTarball`: `url` downloaded (as [`download_file`]), unpacked, and its
/// single top-level entry added as a recursive store path named `name`, through the cache.
/// With `expected`, a fresh tree whose NAR hash differs is an error (made by `mismatch`)
/// before anything is added.
pub(crate) fn download_tarball(
    ev: &mut Evaluator,
    url: &str,
    name: &str,
    locked: bool,
    expected: Option<&Hash>,
    mismatch: &dyn Fn(&Evaluator, &StorePath, &Hash) -> EvalError,
) -> EResult<Tarball> {
    let key = attrs_of([
        ("type", "tarball".into()),
        ("url", url.into()),
        ("name", name.into()),
    ]);
    let cached = cache_lookup_expired(ev, &key)?;
    if let Some(c) = cached.as_ref().filter(|c| !c.expired) {
        if let Some(last_modified) = get_int(&c.info, "lastModified") {
            let nar_hash = nar_hash_of(ev, &c.path, None)?;
            return Ok(Tarball {
                path: c.path.clone(),
                nar_hash,
                last_modified,
            });
        }
    }
    let pending = start_download(ev, url, name, locked)?;
    let unchanged = cached.as_ref().filter(|c| {
        !pending.etag.is_empty() && get_str(&c.info, "etag").as_deref() == Some(&pending.etag)
    });
    let (path, nar_hash, last_modified, etag) =
        match unchanged.and_then(|c| get_int(&c.info, "lastModified").map(|m| (c, m))) {
            Some((c, last_modified)) => {
                let etag = pending.commit(ev)?.etag;
                let nar_hash = nar_hash_of(ev, &c.path, None)?;
                (c.path.clone(), nar_hash, last_modified, etag)
            }
            None => {
                let tmp = TempDir::new()?;
                let dir = tmp.0.join("unpacked");
                fs::create_dir_all(&dir)
                    .map_err(|e| EvalError::new(format!("creating '{}': {e}", dir.display())))?;
                let src = pending.local_path(ev);
                let file = fs::File::open(&src)
                    .map_err(|e| EvalError::new(format!("opening '{}': {e}", src.display())))?;
                let times = unpack(Box::new(file), &dir, url)?;
                let (top, last_modified) = single_top(&dir, &times, url)?;
                let (path, nar_hash) = add_tree_checked(ev, name, &top, None, expected, mismatch)?;
                let etag = pending.commit(ev)?.etag;
                (path, nar_hash, last_modified, etag)
            }
        };
    let info = attrs_of([
        ("lastModified", Attr::Int(last_modified)),
        ("etag", Attr::Str(etag)),
    ]);
    cache_add(ev, &key, &info, &path, locked);
    Ok(Tarball {
        path,
        nar_hash,
        last_modified,
    })
}

/// The single top-level entry of an unpacked archive and its modification time (from the
/// archive, as CppNix's unpacking keeps it).
fn single_top(dir: &Path, times: &BTreeMap<OsString, i64>, url: &str) -> EResult<(PathBuf, u64)> {
    let reading = |e: io::Error| EvalError::new(format!("reading '{}': {e}", dir.display()));
    let entries: Vec<_> = fs::read_dir(dir)
        .map_err(reading)?
        .collect::<Result<_, _>>()
        .map_err(reading)?;
    let [one] = entries.as_slice() else {
        return err(format!(
            "tarball '{url}' contains an unexpected number of top-level files"
        ));
    };
    let top = one.path();
    let mtime = match times.get(&one.file_name()) {
        Some(t) => *t,
        None => {
            use std::os::unix::fs::MetadataExt;
            fs::symlink_metadata(&top)
                .map_err(|e| EvalError::new(format!("getting status of '{}': {e}", top.display())))?
                .mtime()
        }
    };
    Ok((top, mtime as u64))
}

// ---------------------------------------------------------------------------------------------
// Unpacking

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
        [b'P', b'K', 3, 4, ..] => {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "zip archives are not supported by firn (only tar, plain or compressed)",
            ))
        }
        _ => Box::new(rest),
    })
}

/// Unpack the (possibly compressed) tar stream `r` into `dir` (entries never land outside
/// it). Returns the modification times the archive gives its top-level entries.
fn unpack(r: Box<dyn Read>, dir: &Path, url: &str) -> EResult<BTreeMap<OsString, i64>> {
    let fail = |e: io::Error| EvalError::new(format!("unpacking '{url}': {e}"));
    let mut ar = tar::Archive::new(decompress(r).map_err(fail)?);
    ar.set_preserve_permissions(false);
    ar.set_preserve_mtime(false);
    ar.set_unpack_xattrs(false);
    ar.set_overwrite(true);
    let mut times = BTreeMap::new();
    // As `tar::Archive::unpack`: directories last (deepest first), so that their permissions
    // cannot stop what goes inside.
    let mut dirs = Vec::new();
    for entry in ar.entries().map_err(fail)? {
        let mut e = entry.map_err(fail)?;
        let path = e.path().map_err(fail)?.into_owned();
        let mut parts = path
            .components()
            .filter(|c| !matches!(c, Component::CurDir));
        if let (Some(Component::Normal(first)), None) = (parts.next(), parts.next()) {
            if let Ok(t) = e.header().mtime() {
                times.insert(first.to_os_string(), t as i64);
            }
        }
        if e.header().entry_type() == tar::EntryType::Directory {
            dirs.push(e);
        } else {
            e.unpack_in(dir).map_err(fail)?;
        }
    }
    dirs.sort_by(|a, b| b.path_bytes().cmp(&a.path_bytes()));
    for mut d in dirs {
        d.unpack_in(dir).map_err(fail)?;
    }
    Ok(times)
}

// ---------------------------------------------------------------------------------------------
// fetchurl, fetchTarball

/// The arguments of a fetcher: a URL string, or `{ url, sha256?, name? }`.
struct Args {
    url: String,
    name: Option<String>,
    sha256: Option<Hash>,
    /// Whether they were given as a set.
    attrs: bool,
}

impl Args {
    /// Fail as CppNix does, before anything is downloaded, when `name` (given or derived
    /// from the URL) cannot name a store path, saying how `who` can be given a valid one.
    fn check_name(&self, name: &str, who: &str) -> EResult<()> {
        let Some(problem) = crate::store::name_problem(name) else {
            return Ok(());
        };
        let how = if self.name.is_some() {
            format!("Please change the value for the 'name' attribute passed to '{who}', so that it can create a valid store path.")
        } else if self.attrs {
            format!("Please add a valid 'name' attribute to the argument for '{who}', so that it can create a valid store path.")
        } else {
            format!("Please pass an attribute set with 'url' and 'name' attributes to '{who}',  so that it can create a valid store path.")
        };
        err(format!(
            "invalid store path name when fetching URL '{}': {problem}. {how}",
            self.url
        ))
    }
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
            attrs: true,
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
        ev.check_uri(&out.url)?;
        Ok(out)
    } else {
        let url = str_of(ev, t)?;
        ev.check_uri(&url)?;
        Ok(Args {
            url,
            name: None,
            sha256: None,
            attrs: false,
        })
    }
}

fn result(ev: &mut Evaluator, p: &StorePath) -> Value {
    Value::String(ev.allowed_store_string(p))
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
    let name = match &args.name {
        Some(n) => n.clone(),
        None => args
            .url
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or("")
            .to_string(),
    };
    args.check_name(&name, "fetchurl")?;
    crate::purity::require_hash(ev, "fetchurl", args.sha256.is_some())?;
    if let Some(h) = &args.sha256 {
        let (p, valid) = ev.store.known_download(&name, false, h)?;
        if valid {
            return Ok(result(ev, &p));
        }
    }
    let pending = start_download(ev, &args.url, &name, args.sha256.is_some())?;
    let src = pending.local_path(ev);
    let got = firn_store::local::hash_file(&src, HashAlgo::Sha256)
        .map_err(|e| EvalError::new(format!("hashing '{}': {e}", src.display())))?
        .0;
    let p = pending.commit(ev)?.path;
    if let Some(want) = &args.sha256 {
        if *want != got {
            return Err(mismatch(&args.url, want, &got));
        }
    }
    Ok(result(ev, &p))
}

fn fetch_tarball(ev: &mut Evaluator, a: &[Thunk]) -> EResult<Value> {
    let args = args(ev, &a[0], "fetchTarball")?;
    let name = args.name.clone().unwrap_or_else(|| "source".to_string());
    args.check_name(&name, "fetchTarball")?;
    crate::purity::require_hash(ev, "fetchTarball", args.sha256.is_some())?;
    if let Some(h) = &args.sha256 {
        let (p, valid) = ev.store.known_download(&name, true, h)?;
        if valid {
            return Ok(result(ev, &p));
        }
    }
    let no_check = |_: &Evaluator, _: &StorePath, _: &Hash| EvalError::new("unreachable");
    let t = download_tarball(ev, &args.url, &name, args.sha256.is_some(), None, &no_check)?;
    if let Some(want) = &args.sha256 {
        if *want != t.nar_hash {
            return Err(mismatch(&args.url, want, &t.nar_hash));
        }
    }
    Ok(result(ev, &t.path))
}

pub fn table() -> Vec<(&'static str, usize, PrimFn)> {
    vec![
        ("fetchurl", 1, fetchurl),
        ("fetchTarball", 1, fetch_tarball),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_attrs() {
        let a = attrs_of([
            ("type", "tarball".into()),
            ("url", "file:///x y/é.tar.gz".into()),
            ("name", "source".into()),
        ]);
        let j = attrs_to_json(&a);
        assert_eq!(
            j,
            r#"{"name":"source","type":"tarball","url":"file:///x y/é.tar.gz"}"#
        );
        assert_eq!(attrs_from_json(&j), Some(a));
        let info =
            attrs_from_json(r#"{"etag":"","lastModified":1796136025,"b":true}"#).expect("parses");
        assert_eq!(info.get("lastModified"), Some(&Attr::Int(1_796_136_025)));
        assert_eq!(info.get("b"), Some(&Attr::Bool(true)));
        assert_eq!(attrs_from_json(r#"{"x":[1]}"#), None);
    }

    #[test]
    fn file_url_names() {
        assert_eq!(percent_decode_path("/a%20b/c%2"), b"/a b/c%2");
    }
}
