//! A binary cache over a [`Backend`]: the `nix-cache-info` handshake, narinfo lookups, NAR
//! download (decompressed as it streams) and upload (NAR hash, compression, file hash and the
//! staged file in one pass), signing, and the `.ls` listing.
//!
//! Upload order is CppNix's: the NAR file first, then the narinfo, so a reader that finds a
//! narinfo always finds its NAR.

use std::collections::HashMap;
use std::fs;
use std::io::{self, BufWriter, Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use firn_format::hash::{HashAlgo, HashFormat, Hasher};
use firn_format::narinfo::NarInfo;
use firn_format::signature::SecretKey;
use firn_format::{CacheInfo, StoreDir, StorePath};
use firn_store::realisations::{DrvOutput, Realisation};
use firn_store::ValidPathInfo;

use crate::backend::file::FileBackend;
use crate::backend::http::HttpBackend;
use crate::backend::s3::S3Backend;
use crate::backend::{check_key, Backend, Upload};
use crate::compression::Compression;
use crate::disk_cache::DiskCache;
use crate::uri::{CacheUri, Location};
use crate::{CacheError, Result};

/// How to open caches (from the settings).
#[derive(Clone, Debug)]
pub struct OpenOptions {
    /// `http-connections`.
    pub http_connections: usize,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            http_connections: 25,
        }
    }
}

pub struct BinaryCache {
    backend: Box<dyn Backend>,
    uri: String,
    sd: StoreDir,
    pub compression: Compression,
    compression_level: i32,
    parallel_compression: bool,
    write_nar_listing: bool,
    secret_keys: Vec<SecretKey>,
    /// Lower is preferred (cache.nixos.org says 40; 0 when `nix-cache-info` does not say, as
    /// CppNix).
    pub priority: i32,
    pub want_mass_query: bool,
    /// Whether narinfos should go through the disk cache (remote caches only, as CppNix).
    pub remote: bool,
    /// The narinfo disk cache its lookups and uploads go through (see
    /// [`BinaryCache::use_disk_cache`]), with the cache's id there.
    disk: Option<(Arc<DiskCache>, i64)>,
    /// The narinfos [`BinaryCache::query_all_valid_paths`] read, which lookups take first
    /// (as CppNix's in-memory path info cache holds what its listing queried).
    listed: Mutex<HashMap<StorePath, NarInfo>>,
    counter: AtomicU64,
    pid: u32,
}

/// A NAR as it comes from somewhere: something that writes it, or something to read it from.
pub enum NarSource<'a> {
    Producer(&'a mut dyn FnMut(&mut dyn Write) -> Result<()>),
    Reader(&'a mut dyn Read),
}

struct CountingHasher<W> {
    inner: W,
    hasher: Hasher,
    n: u64,
}

impl<W: Write> Write for CountingHasher<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl BinaryCache {
    /// Open the cache at `uri` (with its `?parameters`). File caches are created as CppNix
    /// does (the directory, `nar/`, and `nix-cache-info`); an HTTP cache must answer for
    /// `nix-cache-info`.
    pub fn open(uri: &str, sd: &StoreDir, opts: &OpenOptions) -> Result<BinaryCache> {
        Self::open_known(uri, sd, opts, None)
    }

    /// Like [`BinaryCache::open`], but when `known` gives the cache's priority and
    /// `WantMassQuery` (from the narinfo disk cache, as CppNix does for remote caches),
    /// `nix-cache-info` is not fetched again.
    pub fn open_known(
        uri: &str,
        sd: &StoreDir,
        opts: &OpenOptions,
        known: Option<(i32, bool)>,
    ) -> Result<BinaryCache> {
        let parsed = CacheUri::parse(uri)?;
        let base = parsed.base();
        let (backend, remote): (Box<dyn Backend>, bool) = match &parsed.location {
            Location::File(dir) => {
                let b = FileBackend::new(dir.clone());
                b.create_dirs()?;
                (Box::new(b), false)
            }
            Location::Http(url) => (
                Box::new(HttpBackend::new(url.clone(), opts.http_connections)?),
                true,
            ),
            Location::S3 { bucket } => (
                Box::new(S3Backend::new(bucket, &parsed, opts.http_connections)?),
                true,
            ),
        };
        let compression = Compression::parse(parsed.param("compression").unwrap_or("xz"))?;
        let int = |name: &str, default: i32| -> Result<i32> {
            match parsed.param(name) {
                None => Ok(default),
                Some(v) => v.parse().map_err(|_| CacheError::BadUri {
                    uri: uri.to_string(),
                    why: format!("parameter '{name}' must be an integer, not '{v}'"),
                }),
            }
        };
        let mut secret_keys = Vec::new();
        if let Some(files) = parsed.param("secret-key").or(parsed.param("secret-keys")) {
            for file in files.split(',').filter(|s| !s.is_empty()) {
                secret_keys.push(read_secret_key(file)?);
            }
        }
        let mut cache = BinaryCache {
            backend,
            uri: base,
            sd: sd.clone(),
            compression,
            compression_level: int("compression-level", -1)?,
            parallel_compression: parsed.flag("parallel-compression", false),
            write_nar_listing: parsed.flag("write-nar-listing", false),
            secret_keys,
            priority: 0,
            want_mass_query: false,
            remote,
            disk: None,
            listed: Mutex::new(HashMap::new()),
            counter: AtomicU64::new(0),
            pid: std::process::id(),
        };
        let info = match known {
            Some((priority, wmq)) => {
                cache.priority = priority;
                cache.want_mass_query = wmq;
                None
            }
            None => Some(cache.backend.get_bytes("nix-cache-info")?),
        };
        match info {
            None => {}
            Some(Some(bytes)) => {
                let text = String::from_utf8_lossy(&bytes);
                let info = CacheInfo::parse_from(&text, &cache.uri)?;
                info.check_store_dir(sd, &cache.uri)?;
                cache.priority = info.priority.unwrap_or(0);
                cache.want_mass_query = info.want_mass_query.unwrap_or(false);
            }
            Some(None) => {
                let text = CacheInfo::new(sd).to_text();
                cache
                    .backend
                    .put(
                        "nix-cache-info",
                        Upload::Bytes(text.as_bytes()),
                        "text/x-nix-cache-info",
                    )
                    .map_err(|e| match e {
                        CacheError::Upload { .. } => CacheError::Other(format!(
                            "'{}' does not appear to be a binary cache",
                            cache.uri
                        )),
                        e => e,
                    })?;
            }
        }
        if let Some(p) = parsed.param("priority") {
            cache.priority = p.parse().map_err(|_| CacheError::BadUri {
                uri: uri.to_string(),
                why: format!("parameter 'priority' must be an integer, not '{p}'"),
            })?;
        }
        cache.want_mass_query = parsed.flag("want-mass-query", cache.want_mass_query);
        Ok(cache)
    }

    /// Use the narinfo disk cache, as CppNix's binary cache stores do: lookups
    /// ([`Self::query_narinfo`], [`Self::has_narinfo`]) take a recent answer from it and record
    /// the cache's, and every narinfo this cache writes is recorded as found (CppNix's
    /// `BinaryCacheStore::writeNarInfo`), so that a later substitution or `path-info --store`
    /// does not ask the cache again. As in CppNix, only remote caches (HTTP, S3) use the disk
    /// cache: for a `file://` cache this does nothing. The cache's row is made if the disk
    /// cache does not know it yet (an existing row is kept, as CppNix's `init` keeps it).
    pub fn use_disk_cache(&mut self, disk: Arc<DiskCache>) -> Result<()> {
        if !self.remote {
            return Ok(());
        }
        let id = match disk.cache_exists(&self.uri)? {
            Some((id, _, _)) => id,
            None => disk.create_cache(&self.uri, &self.sd, self.want_mass_query, self.priority)?,
        };
        self.disk = Some((disk, id));
        Ok(())
    }

    /// The URI without parameters.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    pub fn store_dir(&self) -> &StoreDir {
        &self.sd
    }

    pub fn backend(&self) -> &dyn Backend {
        &*self.backend
    }

    fn narinfo_key(p: &StorePath) -> String {
        format!("{}.narinfo", p.hash_part())
    }

    /// The narinfo for `p`, or `None`. A narinfo that names another path is an error. With
    /// the disk cache attached ([`Self::use_disk_cache`]), a recent answer there is taken as
    /// it is, and the cache's answer is recorded.
    pub fn query_narinfo(&self, p: &StorePath) -> Result<Option<NarInfo>> {
        if let Some(ni) = self.lock_listed().get(p) {
            return Ok(Some(ni.clone()));
        }
        if let Some(known) = self.disk_answer(p)? {
            return Ok(known);
        }
        let found = self.query_narinfo_uncached(p)?;
        if let Some((disk, id)) = &self.disk {
            disk.upsert(*id, p.hash_part(), found.as_ref())?;
        }
        Ok(found)
    }

    fn lock_listed(&self) -> std::sync::MutexGuard<'_, HashMap<StorePath, NarInfo>> {
        self.listed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every path the cache has (CppNix's `queryAllValidPaths`, for `nix copy --all`): the
    /// narinfos at its top, each read (on `jobs` threads) for the path's name, which the file
    /// name lacks. CppNix names them all `<hash>-x` instead, so that its copies cannot order
    /// them by reference (NixOS/nix#8473). Only `file://` and `s3://` caches can be listed;
    /// for others this is CppNix's error. Files that are no narinfo's (wrong length, not a
    /// hash part) are skipped.
    pub fn query_all_valid_paths(&self, jobs: usize) -> Result<Vec<StorePath>> {
        let Some(names) = self.backend.list_top()? else {
            return Err(CacheError::Other(format!(
                "operation 'queryAllValidPaths' is not supported by store '{}'",
                self.uri
            )));
        };
        let mut hashes: Vec<String> = names
            .into_iter()
            .filter_map(|n| Some(n.strip_suffix(".narinfo")?.to_string()))
            .filter(|h| {
                let ok = h.len() == firn_format::store_path::HASH_CHARS
                    && h.bytes().all(firn_format::nixbase32::is_valid_char);
                if !ok {
                    tracing::warn!("skipping '{h}.narinfo' in '{}': not a hash part", self.uri);
                }
                ok
            })
            .collect();
        hashes.sort();
        let found = crate::graph::parallel_map(&hashes, jobs, |h| self.narinfo_by_hash_part(h));
        let mut paths = Vec::with_capacity(found.len());
        let mut listed = Vec::with_capacity(found.len());
        for ni in found {
            // Listed a moment ago, gone now: not one of the cache's paths any more.
            if let Some(ni) = ni? {
                paths.push(ni.path.clone());
                listed.push(ni);
            }
        }
        self.lock_listed()
            .extend(listed.into_iter().map(|ni| (ni.path.clone(), ni)));
        Ok(paths)
    }

    /// The narinfo in `<hash>.narinfo`, which must be for a path with that hash part.
    fn narinfo_by_hash_part(&self, hash: &str) -> Result<Option<NarInfo>> {
        let Some((info, whence)) = self.read_narinfo(hash)? else {
            return Ok(None);
        };
        if info.path.hash_part() != hash {
            return Err(CacheError::Other(format!(
                "NAR info file '{whence}' is for path '{}'",
                self.sd.display(&info.path)
            )));
        }
        Ok(Some(info))
    }

    /// The file `<hash>.narinfo` parsed (whatever path it is for), and where it was.
    fn read_narinfo(&self, hash: &str) -> Result<Option<(NarInfo, String)>> {
        let key = format!("{hash}.narinfo");
        let Some(bytes) = self.backend.get_bytes(&key)? else {
            return Ok(None);
        };
        let whence = format!("{}/{key}", self.uri);
        let text = String::from_utf8(bytes).map_err(|_| {
            CacheError::Other(format!("NAR info file '{whence}' is not valid UTF-8"))
        })?;
        let info = NarInfo::parse(&self.sd, &text, &whence)?;
        Ok(Some((info, whence)))
    }

    /// The attached disk cache's recent answer for `p`: `Some(Some(narinfo))` there,
    /// `Some(None)` missing, `None` when it does not know (or none is attached).
    fn disk_answer(&self, p: &StorePath) -> Result<Option<Option<NarInfo>>> {
        let Some((disk, id)) = &self.disk else {
            return Ok(None);
        };
        Ok(match disk.lookup(*id, &self.sd, p.hash_part())? {
            crate::disk_cache::Lookup::Present(ni) if ni.path == *p => Some(Some(*ni)),
            crate::disk_cache::Lookup::Missing => Some(None),
            _ => None,
        })
    }

    /// [`Self::query_narinfo`] from the cache itself.
    fn query_narinfo_uncached(&self, p: &StorePath) -> Result<Option<NarInfo>> {
        let Some((info, whence)) = self.read_narinfo(p.hash_part())? else {
            return Ok(None);
        };
        if info.path != *p {
            return Err(CacheError::Other(format!(
                "NAR info file '{whence}' is for path '{}', not '{}'",
                self.sd.display(&info.path),
                self.sd.display(p)
            )));
        }
        Ok(Some(info))
    }

    /// The realisation of `id` (`realisations/<id>.doi`), or `None`. A file for another
    /// derivation output is an error.
    pub fn query_realisation(&self, id: &DrvOutput) -> Result<Option<Realisation>> {
        let key = crate::realisation::key(id);
        let Some(bytes) = self.backend.get_bytes(&key)? else {
            return Ok(None);
        };
        let whence = format!("{}/{key}", self.uri);
        let r = crate::realisation::parse(&bytes, &whence)?;
        if r.id != *id {
            return Err(CacheError::Other(format!(
                "realisation file '{whence}' is for '{}', not '{id}'",
                r.id
            )));
        }
        Ok(Some(r))
    }

    /// Sign `r` with the cache's keys (`secret-key=`) and write it (CppNix's
    /// `registerDrvOutput` on a binary cache, which writes the signatures the realisation has
    /// but adds none of the cache's: firn adds them, so that a cache's realisations can be
    /// checked as its narinfos are). Returns what was written.
    pub fn write_realisation(&self, r: &Realisation) -> Result<Realisation> {
        let mut r = r.clone();
        for k in &self.secret_keys {
            crate::realisation::sign(&mut r, k);
        }
        let json = crate::realisation::to_json(&r);
        self.backend.put(
            &crate::realisation::key(&r.id),
            Upload::Bytes(json.as_bytes()),
            "application/json",
        )?;
        Ok(r)
    }

    /// Whether the cache has a narinfo for `p` (without reading it). With the narinfo disk
    /// cache attached ([`Self::use_disk_cache`]), a recent answer there is taken as it is
    /// and a path the cache lacks is recorded as missing, as CppNix's `isValidPath` does for a
    /// binary cache (so a second `nix copy --to` of the same paths asks the cache nothing).
    pub fn has_narinfo(&self, p: &StorePath) -> Result<bool> {
        if let Some(known) = self.disk_answer(p)? {
            return Ok(known.is_some());
        }
        let found = self.backend.exists(&Self::narinfo_key(p))?;
        if let (false, Some((disk, id))) = (found, &self.disk) {
            disk.upsert(*id, p.hash_part(), None)?;
        }
        Ok(found)
    }

    /// The decompressed NAR of `info` as a stream.
    pub fn open_nar(&self, info: &NarInfo) -> Result<Box<dyn Read + Send>> {
        check_key(&info.url, &self.uri)?;
        let compression = Compression::parse(&info.compression)?;
        let raw = self
            .backend
            .get(&info.url)?
            .ok_or_else(|| CacheError::NoSuchFile {
                key: info.url.clone(),
                cache: self.uri.clone(),
            })?;
        compression
            .decoder(raw)
            .map_err(|e| self.io_err("decompressing", &info.url, e))
    }

    fn io_err(&self, op: &'static str, key: &str, e: io::Error) -> CacheError {
        CacheError::Io {
            op,
            key: key.to_string(),
            cache: self.uri.clone(),
            source: e,
        }
    }

    fn staging_path(&self) -> PathBuf {
        let dir = self
            .backend
            .staging_dir()
            .unwrap_or_else(std::env::temp_dir);
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        dir.join(format!(".firn-upload-{}-{n}", self.pid))
    }

    /// Add a path: the NAR (from `nar`) is hashed, compressed and staged in one pass, checked
    /// against `info`, uploaded unless the cache has that file already, then the narinfo is
    /// written, signed with the cache's secret keys. Returns the narinfo written.
    pub fn add_path(&self, info: &ValidPathInfo, nar: NarSource<'_>) -> Result<NarInfo> {
        let ni = self.upload_nar(info, nar)?;
        self.write_narinfo(ni)
    }

    /// The first half of [`BinaryCache::add_path`]: the NAR file only. Returns the narinfo to
    /// write (unsigned) once the path's references are in the cache.
    pub fn upload_nar(&self, info: &ValidPathInfo, nar: NarSource<'_>) -> Result<NarInfo> {
        let staged = self.staging_path();
        let mut moved = false;
        let result = self.add_path_staged(info, nar, &staged, &mut moved);
        if !moved {
            let _ = fs::remove_file(&staged);
        }
        result
    }

    /// Stage, check and upload the NAR; `moved` is set when the staged file was renamed into
    /// place (nothing is left to remove).
    fn add_path_staged(
        &self,
        info: &ValidPathInfo,
        nar: NarSource<'_>,
        staged: &std::path::Path,
        moved: &mut bool,
    ) -> Result<NarInfo> {
        let what = self.sd.display(&info.path);
        let file = fs::File::create(staged)
            .map_err(|e| self.io_err("creating", &staged.display().to_string(), e))?;
        let file_side = CountingHasher {
            inner: BufWriter::with_capacity(1 << 17, file),
            hasher: Hasher::new(HashAlgo::Sha256),
            n: 0,
        };
        let encoder = self
            .compression
            .encoder(
                file_side,
                self.compression_level,
                self.parallel_compression,
                (info.nar_size != 0).then_some(info.nar_size),
            )
            .map_err(|e| self.io_err("compressing", &what, e))?;
        let mut nar_side = CountingHasher {
            inner: encoder,
            hasher: Hasher::new(HashAlgo::Sha256),
            n: 0,
        };
        match nar {
            NarSource::Producer(produce) => produce(&mut nar_side)?,
            NarSource::Reader(r) => {
                io::copy(r, &mut nar_side)
                    .map_err(|e| self.io_err("reading the NAR of", &what, e))?;
            }
        }
        let nar_hash = nar_side.hasher.finish();
        let nar_size = nar_side.n;
        let mut file_side = nar_side
            .inner
            .finish()
            .map_err(|e| self.io_err("compressing", &what, e))?;
        file_side
            .flush()
            .map_err(|e| self.io_err("writing", &staged.display().to_string(), e))?;
        let file_hash = file_side.hasher.finish();
        let file_size = file_side.n;
        drop(file_side.inner);

        if nar_hash != info.nar_hash || (info.nar_size != 0 && nar_size != info.nar_size) {
            return Err(CacheError::Other(format!(
                "refusing to copy '{what}' to '{}': its NAR has hash {} and size {nar_size}, but the path is registered with hash {} and size {}",
                self.uri,
                nar_hash.encode(HashFormat::Nix32, true),
                info.nar_hash.encode(HashFormat::Nix32, true),
                info.nar_size
            )));
        }
        let url = format!(
            "nar/{}.nar{}",
            file_hash.encode(HashFormat::Nix32, false),
            self.compression.extension()
        );
        if self.write_nar_listing {
            self.write_listing(info, staged)?;
        }
        // A file cache renames the staged file into place: that costs no more than asking
        // whether it is there (and the name is the contents' hash, so a file already there is
        // the same). Elsewhere an upload is worth saving.
        let local = self.backend.staging_dir().is_some();
        if local || !self.backend.exists(&url)? {
            self.backend.put(
                &url,
                Upload::File {
                    path: staged,
                    size: file_size,
                },
                "application/x-nix-nar",
            )?;
            *moved = local;
        }
        let mut ni = NarInfo::new(info.path.clone(), url, nar_hash, nar_size);
        ni.compression = self.compression.name().to_string();
        ni.file_hash = Some(file_hash);
        ni.file_size = file_size;
        ni.references = info.references.clone();
        ni.deriver = info.deriver.clone();
        ni.sigs = info.sigs.clone();
        ni.ca = info.ca.clone();
        Ok(ni)
    }

    /// The `<hash>.ls` file, read back from the staged (compressed) NAR.
    fn write_listing(&self, info: &ValidPathInfo, staged: &std::path::Path) -> Result<()> {
        let f = fs::File::open(staged)
            .map_err(|e| self.io_err("opening", &staged.display().to_string(), e))?;
        let mut nar = self
            .compression
            .decoder(Box::new(io::BufReader::new(f)))
            .map_err(|e| self.io_err("decompressing", &staged.display().to_string(), e))?;
        let mut listing = Vec::new();
        firn_format::nar::listing::write_listing(&mut nar, &mut listing, true)?;
        self.backend.put(
            &format!("{}.ls", info.path.hash_part()),
            Upload::Bytes(&listing),
            "application/json",
        )
    }

    /// Sign (with the cache's keys) and write a narinfo.
    pub fn write_narinfo(&self, mut ni: NarInfo) -> Result<NarInfo> {
        for k in &self.secret_keys {
            ni.sign(&self.sd, k)
                .map_err(|e| CacheError::Other(e.to_string()))?;
        }
        let text = ni.to_text(&self.sd);
        self.backend.put(
            &Self::narinfo_key(&ni.path),
            Upload::Bytes(text.as_bytes()),
            "text/x-nix-narinfo",
        )?;
        if let Some(known) = self.lock_listed().get_mut(&ni.path) {
            *known = ni.clone();
        }
        if let Some((disk, id)) = &self.disk {
            // The narinfo is in the cache: a disk cache that cannot record it only costs a
            // lookup later.
            if let Err(e) = disk.upsert(*id, ni.path.hash_part(), Some(&ni)) {
                tracing::warn!(
                    "not recording '{}' in the narinfo disk cache: {e}",
                    self.sd.display(&ni.path)
                );
            }
        }
        Ok(ni)
    }

    /// Add signatures to a path's narinfo (`nix store sign --store`).
    pub fn add_signatures(&self, p: &StorePath, sigs: &[String]) -> Result<()> {
        let mut ni = self.query_narinfo(p)?.ok_or_else(|| {
            CacheError::Other(format!(
                "path '{}' is not valid in '{}'",
                self.sd.display(p),
                self.uri
            ))
        })?;
        let before = ni.sigs.len();
        ni.sigs.extend(sigs.iter().cloned());
        if ni.sigs.len() != before {
            let text = ni.to_text(&self.sd);
            self.backend.put(
                &Self::narinfo_key(p),
                Upload::Bytes(text.as_bytes()),
                "text/x-nix-narinfo",
            )?;
            if let Some(known) = self.lock_listed().get_mut(p) {
                *known = ni;
            }
        }
        Ok(())
    }
}

/// Read a secret key file (`name:base64`).
pub fn read_secret_key(file: &str) -> Result<SecretKey> {
    let text = fs::read_to_string(file).map_err(|e| CacheError::Io {
        op: "reading secret key",
        key: file.to_string(),
        cache: String::new(),
        source: e,
    })?;
    SecretKey::parse(text.trim())
        .map_err(|e| CacheError::Other(format!("secret key file '{file}': {e}")))
}

/// A narinfo as the store's path info (for registering a substituted path).
pub fn narinfo_to_path_info(ni: &NarInfo) -> ValidPathInfo {
    let mut info = ValidPathInfo::new(ni.path.clone(), ni.nar_hash.clone(), ni.nar_size);
    info.references = ni.references.clone();
    info.deriver = ni.deriver.clone();
    info.sigs = ni.sigs.clone();
    info.ca = ni.ca.clone();
    info
}
