//! The narinfo disk cache, in CppNix's own file and schema (`$XDG_CACHE_HOME/nix/
//! binary-cache-v6.sqlite`), so firn and CppNix share what they learnt about remote caches:
//! positive entries (a narinfo) and negative ones (the cache does not have the path), each
//! trusted for its TTL (`narinfo-cache-positive-ttl`, `narinfo-cache-negative-ttl`).
//! Realisations (`ca-derivations`) are kept the same way in the `Realisations` table: the
//! realisation file's JSON, or null for one the cache does not have, under the same TTLs.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use firn_format::narinfo::NarInfo;
use firn_format::{ContentAddress, Hash, StoreDir, StorePath};
use firn_store::realisations::{DrvOutput, Realisation};
use rusqlite::{params, Connection, OptionalExtension};

use crate::{CacheError, Result};

const SCHEMA: &str = "
create table if not exists BinaryCaches (
    id        integer primary key autoincrement not null,
    url       text unique not null,
    timestamp integer not null,
    storeDir  text not null,
    wantMassQuery integer not null,
    priority  integer not null
);
create table if not exists NARs (
    cache            integer not null,
    hashPart         text not null,
    namePart         text,
    url              text,
    compression      text,
    fileHash         text,
    fileSize         integer,
    narHash          text,
    narSize          integer,
    refs             text,
    deriver          text,
    sigs             text,
    ca               text,
    timestamp        integer not null,
    present          integer not null,
    primary key (cache, hashPart),
    foreign key (cache) references BinaryCaches(id) on delete cascade
);
create table if not exists Realisations (
    cache integer not null,
    outputId text not null,
    content blob,
    timestamp        integer not null,
    primary key (cache, outputId),
    foreign key (cache) references BinaryCaches(id) on delete cascade
);
create table if not exists LastPurge (
    dummy            text primary key,
    value            integer
);
";

/// What the disk cache knows about a path (or a realisation) in a cache.
#[derive(Debug, PartialEq)]
pub enum Lookup<T = NarInfo> {
    Unknown,
    /// The cache did not have it (recently).
    Missing,
    Present(Box<T>),
}

pub struct DiskCache {
    conn: std::sync::Mutex<Connection>,
    path: PathBuf,
    positive_ttl: i64,
    negative_ttl: i64,
}

/// CppNix's location: `$XDG_CACHE_HOME/nix` or `$HOME/.cache/nix`.
pub fn default_path() -> Option<PathBuf> {
    let base = match std::env::var_os("XDG_CACHE_HOME") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(std::env::var_os("HOME")?).join(".cache"),
    };
    Some(base.join("nix").join("binary-cache-v6.sqlite"))
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl DiskCache {
    pub fn open(path: &Path, positive_ttl: i64, negative_ttl: i64) -> Result<DiskCache> {
        let err = |e| CacheError::DiskCache {
            path: path.display().to_string(),
            source: e,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| CacheError::Io {
                op: "creating directory",
                key: dir.display().to_string(),
                cache: String::new(),
                source: e,
            })?;
        }
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(3600))
            .map_err(err)?;
        // As CppNix's SQLite::isCache().
        conn.execute_batch("pragma synchronous = off; pragma main.journal_mode = truncate;")
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        let cache = DiskCache {
            conn: std::sync::Mutex::new(conn),
            path: path.to_path_buf(),
            positive_ttl,
            negative_ttl,
        };
        cache.purge()?;
        Ok(cache)
    }

    fn err(&self, e: rusqlite::Error) -> CacheError {
        CacheError::DiskCache {
            path: self.path.display().to_string(),
            source: e,
        }
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Once a day, drop entries older than their TTL (at least an hour / 30 days, as CppNix).
    fn purge(&self) -> Result<()> {
        let c = self.conn();
        let t = now();
        let last: Option<i64> = c
            .query_row("select value from LastPurge", [], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))?;
        if last.is_none_or(|l| l < t - 24 * 3600) {
            c.execute(
                "delete from NARs where ((present = 0 and timestamp < ?1) or (present = 1 and timestamp < ?2))",
                params![t - self.negative_ttl.max(3600), t - self.positive_ttl.max(30 * 24 * 3600)],
            )
            .map_err(|e| self.err(e))?;
            // (CppNix leaves expired realisations in the file; neither reads them.)
            c.execute(
                "delete from Realisations where ((content is null and timestamp < ?1) or (content is not null and timestamp < ?2))",
                params![t - self.negative_ttl.max(3600), t - self.positive_ttl.max(30 * 24 * 3600)],
            )
            .map_err(|e| self.err(e))?;
            c.execute(
                "insert or replace into LastPurge(dummy, value) values ('', ?1)",
                params![t],
            )
            .map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// The cache's id, priority and `WantMassQuery`, if it is known.
    pub fn cache_exists(&self, uri: &str) -> Result<Option<(i64, i32, bool)>> {
        self.conn()
            .query_row(
                "select id, priority, wantMassQuery from BinaryCaches where url = ?1",
                params![uri],
                |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? != 0)),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Record a cache (replacing what was known about it); returns its id.
    pub fn create_cache(
        &self,
        uri: &str,
        sd: &StoreDir,
        want_mass_query: bool,
        priority: i32,
    ) -> Result<i64> {
        let c = self.conn();
        c.execute(
            "insert or replace into BinaryCaches(url, timestamp, storeDir, wantMassQuery, priority) values (?1, ?2, ?3, ?4, ?5)",
            params![uri, now(), sd.to_string(), want_mass_query as i64, priority],
        )
        .map_err(|e| self.err(e))?;
        Ok(c.last_insert_rowid())
    }

    pub fn lookup(&self, cache: i64, sd: &StoreDir, hash_part: &str) -> Result<Lookup> {
        let t = now();
        type Row = (
            i64,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<i64>,
            Option<String>,
            Option<i64>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        let row: Option<Row> = self
            .conn()
            .query_row(
                "select present, namePart, url, compression, fileHash, fileSize, narHash, narSize, refs, deriver, sigs, ca from NARs where cache = ?1 and hashPart = ?2 and ((present = 0 and timestamp > ?3) or (present = 1 and timestamp > ?4))",
                params![cache, hash_part, t - self.negative_ttl, t - self.positive_ttl],
                |r| {
                    Ok((
                        r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?,
                        r.get(6)?, r.get(7)?, r.get(8)?, r.get(9)?, r.get(10)?, r.get(11)?,
                    ))
                },
            )
            .optional()
            .map_err(|e| self.err(e))?;
        let Some(r) = row else {
            return Ok(Lookup::Unknown);
        };
        if r.0 == 0 {
            return Ok(Lookup::Missing);
        }
        // An entry we cannot read (written by another version) counts as unknown.
        let parse = || -> Option<NarInfo> {
            let path =
                StorePath::from_base_name(&format!("{hash_part}-{}", r.1.as_deref()?)).ok()?;
            let nar_hash = Hash::parse(r.6.as_deref()?, None).ok()?;
            let mut ni = NarInfo::new(path, r.2.clone()?, nar_hash, r.7? as u64);
            ni.compression = r.3.clone().unwrap_or_default();
            ni.file_hash = match r.4.as_deref() {
                Some(h) if !h.is_empty() => Some(Hash::parse(h, None).ok()?),
                _ => None,
            };
            ni.file_size = r.5.unwrap_or(0) as u64;
            for rf in
                r.8.as_deref()
                    .unwrap_or("")
                    .split(' ')
                    .filter(|s| !s.is_empty())
            {
                ni.references.insert(StorePath::from_base_name(rf).ok()?);
            }
            ni.deriver = match r.9.as_deref() {
                Some(d) if !d.is_empty() => Some(StorePath::from_base_name(d).ok()?),
                _ => None,
            };
            ni.sigs =
                r.10.as_deref()
                    .unwrap_or("")
                    .split(' ')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect();
            ni.ca = match r.11.as_deref() {
                Some(c) if !c.is_empty() => Some(ContentAddress::parse(c).ok()?),
                _ => None,
            };
            let _ = sd;
            Some(ni)
        };
        Ok(match parse() {
            Some(ni) => Lookup::Present(Box::new(ni)),
            None => Lookup::Unknown,
        })
    }

    /// Remember a narinfo (or that the cache lacks `hash_part`, with `None`).
    pub fn upsert(&self, cache: i64, hash_part: &str, ni: Option<&NarInfo>) -> Result<()> {
        let c = self.conn();
        let r = match ni {
            Some(ni) => c.execute(
                "insert or replace into NARs(cache, hashPart, namePart, url, compression, fileHash, fileSize, narHash, narSize, refs, deriver, sigs, ca, timestamp, present) values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, 1)",
                params![
                    cache,
                    hash_part,
                    ni.path.name(),
                    ni.url,
                    ni.compression,
                    ni.file_hash.as_ref().map(|h| h.encode(firn_format::HashFormat::Nix32, true)),
                    (ni.file_size != 0).then_some(ni.file_size as i64),
                    ni.nar_hash.encode(firn_format::HashFormat::Nix32, true),
                    ni.nar_size as i64,
                    ni.references.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(" "),
                    ni.deriver.as_ref().map(|d| d.to_string()),
                    ni.sigs.iter().cloned().collect::<Vec<_>>().join(" "),
                    ni.ca.as_ref().map(|c| c.to_string()).unwrap_or_default(),
                    now(),
                ],
            ),
            None => c.execute(
                "insert or replace into NARs(cache, hashPart, timestamp, present) values (?1, ?2, ?3, 0)",
                params![cache, hash_part, now()],
            ),
        };
        r.map(|_| ()).map_err(|e| self.err(e))
    }

    /// What is known about the realisation of `id` in a cache (an entry that cannot be read,
    /// or is for another output, counts as unknown).
    pub fn lookup_realisation(&self, cache: i64, id: &DrvOutput) -> Result<Lookup<Realisation>> {
        let t = now();
        let row: Option<Option<Vec<u8>>> = self
            .conn()
            .query_row(
                "select content from Realisations where cache = ?1 and outputId = ?2 and ((content is null and timestamp > ?3) or (content is not null and timestamp > ?4))",
                params![cache, id.to_string(), t - self.negative_ttl, t - self.positive_ttl],
                // CppNix binds the JSON as text; read either.
                |r| match r.get_ref(0)? {
                    rusqlite::types::ValueRef::Null => Ok(None),
                    rusqlite::types::ValueRef::Text(b) | rusqlite::types::ValueRef::Blob(b) => {
                        Ok(Some(b.to_vec()))
                    }
                    _ => Ok(Some(Vec::new())),
                },
            )
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(match row {
            None => Lookup::Unknown,
            Some(None) => Lookup::Missing,
            Some(Some(json)) => {
                match crate::realisation::parse(&json, &self.path.display().to_string()) {
                    Ok(r) if r.id == *id => Lookup::Present(Box::new(r)),
                    _ => Lookup::Unknown,
                }
            }
        })
    }

    /// Remember a realisation (or, with `None`, that the cache lacks `id`).
    pub fn upsert_realisation(
        &self,
        cache: i64,
        id: &DrvOutput,
        r: Option<&Realisation>,
    ) -> Result<()> {
        let c = self.conn();
        let r = match r {
            Some(r) => c.execute(
                "insert or replace into Realisations(cache, outputId, content, timestamp) values (?1, ?2, ?3, ?4)",
                params![cache, id.to_string(), crate::realisation::to_json(r), now()],
            ),
            None => c.execute(
                "insert or replace into Realisations(cache, outputId, timestamp) values (?1, ?2, ?3)",
                params![cache, id.to_string(), now()],
            ),
        };
        r.map(|_| ()).map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positive_negative_and_ttl() {
        let dir = tempfile::tempdir().unwrap();
        let sd = StoreDir::default();
        let db = dir.path().join("nix/binary-cache-v6.sqlite");
        let c = DiskCache::open(&db, 3600, 3600).unwrap();
        assert_eq!(c.cache_exists("https://x").unwrap(), None);
        let id = c.create_cache("https://x", &sd, true, 40).unwrap();
        assert_eq!(c.cache_exists("https://x").unwrap(), Some((id, 40, true)));
        let p = StorePath::from_base_name("7rjj86a15146cq1d3qy068lml7n8ykzm-hello").unwrap();
        let h = Hash::digest(firn_format::HashAlgo::Sha256, b"x");
        let mut ni = NarInfo::new(p.clone(), "nar/a.nar.xz".into(), h, 120);
        ni.compression = "xz".into();
        ni.references.insert(p.clone());
        ni.sigs.insert("k:sig".into());
        assert_eq!(c.lookup(id, &sd, p.hash_part()).unwrap(), Lookup::Unknown);
        c.upsert(id, p.hash_part(), Some(&ni)).unwrap();
        assert_eq!(
            c.lookup(id, &sd, p.hash_part()).unwrap(),
            Lookup::Present(Box::new(ni))
        );
        c.upsert(id, "0000000000000000000000000000000a", None)
            .unwrap();
        assert_eq!(
            c.lookup(id, &sd, "0000000000000000000000000000000a")
                .unwrap(),
            Lookup::Missing
        );
        // Expired entries are not returned.
        let c2 = DiskCache::open(&db, -10, -10).unwrap();
        assert_eq!(c2.lookup(id, &sd, p.hash_part()).unwrap(), Lookup::Unknown);
    }

    #[test]
    fn realisations_positive_negative_and_ttl() {
        let dir = tempfile::tempdir().unwrap();
        let sd = StoreDir::default();
        let db = dir.path().join("nix/binary-cache-v6.sqlite");
        let c = DiskCache::open(&db, 3600, 3600).unwrap();
        let id = c.create_cache("https://x", &sd, true, 40).unwrap();
        let out = |h: &[u8]| DrvOutput {
            drv_hash: Hash::digest(firn_format::HashAlgo::Sha256, h),
            output: "out".into(),
        };
        let (a, b) = (out(b"a"), out(b"b"));
        let mut r = Realisation {
            id: a.clone(),
            out_path: StorePath::from_base_name("7rjj86a15146cq1d3qy068lml7n8ykzm-hello").unwrap(),
            signatures: ["k:sig".to_string()].into_iter().collect(),
            dependent: Default::default(),
        };
        r.dependent.insert(
            b.clone(),
            StorePath::from_base_name("0000000000000000000000000000000a-dep").unwrap(),
        );
        assert_eq!(c.lookup_realisation(id, &a).unwrap(), Lookup::Unknown);
        c.upsert_realisation(id, &a, Some(&r)).unwrap();
        c.upsert_realisation(id, &b, None).unwrap();
        assert_eq!(
            c.lookup_realisation(id, &a).unwrap(),
            Lookup::Present(Box::new(r.clone()))
        );
        assert_eq!(c.lookup_realisation(id, &b).unwrap(), Lookup::Missing);
        // The row is CppNix's: the id as text, the realisation file's JSON.
        let conn = Connection::open(&db).unwrap();
        let (key, json): (String, String) = conn
            .query_row(
                "select outputId, content from Realisations where content is not null",
                [],
                |x| Ok((x.get(0)?, x.get(1)?)),
            )
            .unwrap();
        assert_eq!(key, a.to_string());
        assert_eq!(json, crate::realisation::to_json(&r));
        let c2 = DiskCache::open(&db, -10, -10).unwrap();
        assert_eq!(c2.lookup_realisation(id, &a).unwrap(), Lookup::Unknown);
        assert_eq!(c2.lookup_realisation(id, &b).unwrap(), Lookup::Unknown);
    }
}
