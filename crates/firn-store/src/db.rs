//! The SQLite database, with CppNix's schema (version 10) and pragmas, and every query the store
//! makes. Paths are stored as full (logical) store paths, hashes as `sha256:<base16>`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use firn_format::{ContentAddress, Hash, StoreDir, StorePath};
use rusqlite::{params, Connection, OptionalExtension};

use crate::error::{Result, StoreError};
use crate::path_info::ValidPathInfo;

/// The schema of a new database, as CppNix 2.8 creates it. (The tables of its
/// `ca-derivations` extension are made by [`crate::realisations::migrate_ca_schema`], only
/// when the feature is on, as CppNix does.)
pub(crate) const SCHEMA: &str = "
create table if not exists ValidPaths (
    id               integer primary key autoincrement not null,
    path             text unique not null,
    hash             text not null,
    registrationTime integer not null,
    deriver          text,
    narSize          integer,
    ultimate         integer,
    sigs             text,
    ca               text
);
create table if not exists Refs (
    referrer  integer not null,
    reference integer not null,
    primary key (referrer, reference),
    foreign key (referrer) references ValidPaths(id) on delete cascade,
    foreign key (reference) references ValidPaths(id) on delete restrict
);
create index if not exists IndexReferrer on Refs(referrer);
create index if not exists IndexReference on Refs(reference);
create trigger if not exists DeleteSelfRefs before delete on ValidPaths
  begin
    delete from Refs where referrer = old.id and reference = old.id;
  end;
create table if not exists DerivationOutputs (
    drv  integer not null,
    id   text not null,
    path text not null,
    primary key (drv, id),
    foreign key (drv) references ValidPaths(id) on delete cascade
);
create index if not exists IndexDerivationOutputs on DerivationOutputs(path);
";

/// The schema version this store uses and writes to `db/schema`.
pub const SCHEMA_VERSION: u32 = 10;

/// An open database.
pub struct Db {
    conn: Connection,
    file: PathBuf,
    store_dir: StoreDir,
    infos: InfoCache,
}

/// Path infos already read, as CppNix caches them per store object: closures and topological
/// sorts read each path many times. Only valid paths are kept.
///
/// It never serves what the database no longer says:
/// - this connection's writes drop the entries of the paths they touch (registration,
///   signatures, invalidation, and the collector's deletions through
///   [`Db::forget_infos`]);
/// - another connection's (another process: CppNix, a concurrent firn) commits change SQLite's
///   `data_version`, which is read before an entry is served: when it moved, everything is
///   dropped. The version is read before the first entry of a generation is, so an entry is
///   never older than the version it is checked against (a miss need not read it again).
#[derive(Default)]
struct InfoCache {
    map: HashMap<StorePath, Arc<ValidPathInfo>>,
    /// `pragma data_version` when the entries of `map` started to be read.
    version: Option<i64>,
}

fn sql_err<'a>(op: &'static str, db: &'a Path) -> impl FnOnce(rusqlite::Error) -> StoreError + 'a {
    move |source| StoreError::Sqlite {
        op,
        db: db.to_path_buf(),
        source,
    }
}

impl Db {
    /// Open (and with `create`, initialise) the database at `file`.
    pub fn open(
        file: &Path,
        store_dir: StoreDir,
        create: bool,
        wal: bool,
        fsync: bool,
    ) -> Result<Db> {
        let conn = Connection::open(file).map_err(sql_err("opening the database", file))?;
        conn.busy_timeout(Duration::from_secs(60 * 60))
            .map_err(sql_err("setting the busy timeout", file))?;
        let db = Db {
            conn,
            file: file.to_path_buf(),
            store_dir,
            infos: InfoCache::default(),
        };
        let e = |op| sql_err(op, file);
        db.conn
            .execute_batch("pragma foreign_keys = 1;")
            .map_err(e("enabling foreign keys"))?;
        db.conn
            .execute_batch(if fsync {
                "pragma synchronous = normal;"
            } else {
                "pragma synchronous = off;"
            })
            .map_err(e("setting the synchronous mode"))?;
        let want = if wal { "wal" } else { "truncate" };
        let mode: String = db
            .conn
            .query_row("pragma main.journal_mode;", [], |r| r.get(0))
            .map_err(e("querying the journal mode"))?;
        if mode != want {
            db.conn
                .query_row(&format!("pragma main.journal_mode = {want};"), [], |_| {
                    Ok(())
                })
                .map_err(e("setting the journal mode"))?;
        }
        if wal {
            db.conn
                .query_row("pragma wal_autocheckpoint = 40000;", [], |_| Ok(()))
                .map_err(e("setting the checkpoint interval"))?;
        }
        if create {
            db.conn
                .execute_batch(SCHEMA)
                .map_err(e("creating the schema"))?;
        }
        Ok(db)
    }

    /// The raw connection, for queries that live with their callers. The caller may write
    /// anything through it, so every cached path info is forgotten.
    pub fn conn(&mut self) -> &mut Connection {
        self.forget_all_infos();
        &mut self.conn
    }

    /// The raw connection, for callers that change no `ValidPaths` or `Refs` row through it
    /// (queries, realisations) or that call [`Db::forget_infos`] for those they change (the
    /// collector).
    pub(crate) fn conn_keeping_infos(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// Forget the cached infos of `paths` (their rows were changed through the raw connection).
    pub fn forget_infos<'a>(&mut self, paths: impl IntoIterator<Item = &'a StorePath>) {
        for p in paths {
            self.infos.map.remove(p);
        }
    }

    /// Forget every cached path info.
    pub fn forget_all_infos(&mut self) {
        self.infos.map.clear();
        self.infos.version = None;
    }

    /// SQLite's count of commits by other connections to this database (`pragma
    /// data_version`).
    fn data_version(&self) -> Result<i64> {
        self.conn
            .prepare_cached("pragma data_version")
            .and_then(|mut st| st.query_row([], |r| r.get(0)))
            .map_err(self.e("checking for changes by other processes"))
    }

    /// Drop the cached infos if another connection committed since they were read; start a
    /// new generation (reading the version) when there are none.
    fn revalidate_infos(&mut self) -> Result<()> {
        let now = self.data_version()?;
        if self.infos.version != Some(now) {
            self.infos.map.clear();
            self.infos.version = Some(now);
        }
        Ok(())
    }

    /// A valid path's info through the cache (`None` when the path is not valid).
    pub fn cached_path_info(&mut self, p: &StorePath) -> Result<Option<Arc<ValidPathInfo>>> {
        if self.infos.map.contains_key(p) {
            self.revalidate_infos()?;
            if let Some(i) = self.infos.map.get(p) {
                return Ok(Some(i.clone()));
            }
        } else if self.infos.version.is_none() {
            // What is read now is at least as new as the version read first; reading the
            // version again for every miss would add a query to each.
            self.infos.version = Some(self.data_version()?);
        }
        let info = self.query_path_info(p)?.map(Arc::new);
        if let Some(i) = &info {
            self.infos.map.insert(p.clone(), i.clone());
        }
        Ok(info)
    }

    /// The infos of many paths through the cache, those not cached read in one transaction
    /// (`None` for paths that are not valid).
    pub fn cached_path_infos(
        &mut self,
        paths: &[StorePath],
    ) -> Result<Vec<Option<Arc<ValidPathInfo>>>> {
        self.in_read_transaction(|db| db.cached_path_infos_in_transaction(paths))
    }

    fn cached_path_infos_in_transaction(
        &mut self,
        paths: &[StorePath],
    ) -> Result<Vec<Option<Arc<ValidPathInfo>>>> {
        // Inside the transaction the version is that of the snapshot every read below sees.
        self.revalidate_infos()?;
        let mut out = Vec::with_capacity(paths.len());
        for p in paths {
            let info = match self.infos.map.get(p) {
                Some(i) => Some(i.clone()),
                None => {
                    let info = self.query_path_info(p)?.map(Arc::new);
                    if let Some(i) = &info {
                        self.infos.map.insert(p.clone(), i.clone());
                    }
                    info
                }
            };
            out.push(info);
        }
        Ok(out)
    }

    pub fn file(&self) -> &Path {
        &self.file
    }

    pub fn store_dir(&self) -> &StoreDir {
        &self.store_dir
    }

    fn e(&self, op: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
        sql_err(op, &self.file)
    }

    fn parse(&self, s: &str) -> Result<StorePath> {
        self.store_dir
            .parse(s)
            .map_err(|err| StoreError::Corrupt(self.file.clone(), format!("bad path '{s}': {err}")))
    }

    /// Run `f` inside one read transaction: many queries then take the database's locks once
    /// instead of once each.
    pub fn in_read_transaction<T>(&mut self, f: impl FnOnce(&mut Db) -> Result<T>) -> Result<T> {
        self.conn
            .execute_batch("begin")
            .map_err(sql_err("starting a transaction", &self.file))?;
        let r = f(self);
        // Nothing was written: ending it cannot lose anything.
        let end = self
            .conn
            .execute_batch("commit")
            .map_err(sql_err("ending a transaction", &self.file));
        let v = r?;
        end?;
        Ok(v)
    }

    /// The row id of a valid path.
    pub fn path_id(&self, p: &StorePath) -> Result<Option<i64>> {
        self.conn
            .prepare_cached("select id from ValidPaths where path = ?")
            .and_then(|mut st| {
                st.query_row([self.store_dir.display(p)], |r| r.get(0))
                    .optional()
            })
            .map_err(self.e("querying a path"))
    }

    pub fn is_valid(&self, p: &StorePath) -> Result<bool> {
        Ok(self.path_id(p)?.is_some())
    }

    pub fn query_path_info(&self, p: &StorePath) -> Result<Option<ValidPathInfo>> {
        let row = self
            .conn
            .prepare_cached(
                "select id, hash, registrationTime, deriver, narSize, ultimate, sigs, ca from ValidPaths where path = ?",
            )
            .and_then(|mut st| {
                st.query_row([self.store_dir.display(p)], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, Option<i64>>(4)?,
                        r.get::<_, Option<i64>>(5)?,
                        r.get::<_, Option<String>>(6)?,
                        r.get::<_, Option<String>>(7)?,
                    ))
                })
                .optional()
            })
            .map_err(self.e("querying path info"))?;
        let Some((id, hash, time, deriver, nar_size, ultimate, sigs, ca)) = row else {
            return Ok(None);
        };
        let corrupt = |m: String| StoreError::Corrupt(self.file.clone(), m);
        let nar_hash = Hash::parse(&hash, None)
            .map_err(|e| corrupt(format!("bad hash for '{}': {e}", self.store_dir.display(p))))?;
        let mut info = ValidPathInfo::new(p.clone(), nar_hash, nar_size.unwrap_or(0).max(0) as u64);
        info.registration_time = time;
        info.deriver = match deriver.filter(|d| !d.is_empty()) {
            Some(d) => Some(self.parse(&d)?),
            None => None,
        };
        info.ultimate = ultimate.unwrap_or(0) != 0;
        info.sigs = sigs
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect();
        info.ca = match ca.filter(|c| !c.is_empty()) {
            Some(c) => Some(ContentAddress::parse(&c).map_err(|e| corrupt(e.to_string()))?),
            None => None,
        };
        info.references = self.references_of_id(id)?;
        Ok(Some(info))
    }

    fn references_of_id(&self, id: i64) -> Result<BTreeSet<StorePath>> {
        let mut st = self
            .conn
            .prepare_cached(
                "select path from Refs join ValidPaths on reference = id where referrer = ?",
            )
            .map_err(self.e("querying references"))?;
        let rows = st
            .query_map([id], |r| r.get::<_, String>(0))
            .map_err(self.e("querying references"))?;
        let mut out = BTreeSet::new();
        for r in rows {
            out.insert(self.parse(&r.map_err(self.e("querying references"))?)?);
        }
        Ok(out)
    }

    fn paths_query(&self, sql: &str, arg: &str, op: &'static str) -> Result<BTreeSet<StorePath>> {
        let mut st = self.conn.prepare_cached(sql).map_err(self.e(op))?;
        let rows = st
            .query_map([arg], |r| r.get::<_, String>(0))
            .map_err(self.e(op))?;
        let mut out = BTreeSet::new();
        for r in rows {
            out.insert(self.parse(&r.map_err(self.e(op))?)?);
        }
        Ok(out)
    }

    pub fn query_referrers(&self, p: &StorePath) -> Result<BTreeSet<StorePath>> {
        self.paths_query(
            "select path from Refs join ValidPaths on referrer = id where reference = (select id from ValidPaths where path = ?)",
            &self.store_dir.display(p),
            "querying referrers",
        )
    }

    pub fn query_valid_derivers(&self, p: &StorePath) -> Result<BTreeSet<StorePath>> {
        self.paths_query(
            "select v.path from DerivationOutputs d join ValidPaths v on d.drv = v.id where d.path = ?",
            &self.store_dir.display(p),
            "querying valid derivers",
        )
    }

    /// Output name -> output path, as registered for a derivation.
    pub fn query_derivation_outputs(&self, drv: &StorePath) -> Result<BTreeMap<String, StorePath>> {
        let Some(id) = self.path_id(drv)? else {
            return Err(StoreError::InvalidPath(self.store_dir.display(drv)));
        };
        let op = "querying derivation outputs";
        let mut st = self
            .conn
            .prepare_cached("select id, path from DerivationOutputs where drv = ?")
            .map_err(self.e(op))?;
        let rows = st
            .query_map([id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(self.e(op))?;
        let mut out = BTreeMap::new();
        for r in rows {
            let (name, path) = r.map_err(self.e(op))?;
            out.insert(name, self.parse(&path)?);
        }
        Ok(out)
    }

    pub fn query_path_from_hash_part(&self, hash_part: &str) -> Result<Option<StorePath>> {
        let prefix = format!("{}/{}", self.store_dir, hash_part);
        let found: Option<String> = self
            .conn
            .prepare_cached("select path from ValidPaths where path >= ? limit 1")
            .and_then(|mut st| st.query_row([&prefix], |r| r.get(0)).optional())
            .map_err(self.e("querying a path by hash part"))?;
        match found {
            Some(p) if p.starts_with(&prefix) && p.as_bytes().get(prefix.len()) == Some(&b'-') => {
                Ok(Some(self.parse(&p)?))
            }
            _ => Ok(None),
        }
    }

    pub fn query_all_valid_paths(&self) -> Result<BTreeSet<StorePath>> {
        let op = "listing valid paths";
        let mut st = self
            .conn
            .prepare_cached("select path from ValidPaths")
            .map_err(self.e(op))?;
        let rows = st
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(self.e(op))?;
        let mut out = BTreeSet::new();
        for r in rows {
            out.insert(self.parse(&r.map_err(self.e(op))?)?);
        }
        Ok(out)
    }

    /// Register (or update) paths and their references in one transaction. `drv_outputs` gives,
    /// for derivations among them, their output paths.
    pub fn register(
        &mut self,
        infos: &[ValidPathInfo],
        drv_outputs: &BTreeMap<StorePath, BTreeMap<String, StorePath>>,
    ) -> Result<()> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        // Their rows change (or appear); nothing else's info does (a path's references are
        // its own `Refs` rows).
        self.forget_infos(infos.iter().map(|i| &i.path));
        let sd = self.store_dir.clone();
        let file = self.file.clone();
        let e = |op| sql_err(op, &file);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(e("starting a transaction"))?;
        let mut ids: BTreeMap<&StorePath, i64> = BTreeMap::new();
        for i in infos {
            let path = sd.display(&i.path);
            let hash = format!("sha256:{}", i.nar_hash.to_base16());
            let sigs = i.sigs.iter().cloned().collect::<Vec<_>>().join(" ");
            let ca = i.ca.as_ref().map(|c| c.to_string());
            let existing: Option<i64> = tx
                .prepare_cached("select id from ValidPaths where path = ?")
                .and_then(|mut st| st.query_row([&path], |r| r.get(0)).optional())
                .map_err(e("querying a path"))?;
            let id = match existing {
                Some(id) => {
                    tx.prepare_cached(
                        "update ValidPaths set narSize = ?, hash = ?, ultimate = ?, sigs = ?, ca = ? where path = ?",
                    )
                    .and_then(|mut st| {
                        st.execute(params![
                            i.nar_size as i64,
                            hash,
                            i.ultimate as i64,
                            sigs,
                            ca,
                            path
                        ])
                    })
                    .map_err(e("updating path info"))?;
                    id
                }
                None => {
                    let time = if i.registration_time == 0 {
                        now
                    } else {
                        i.registration_time
                    };
                    tx.prepare_cached(
                        "insert into ValidPaths (path, hash, registrationTime, deriver, narSize, ultimate, sigs, ca) values (?, ?, ?, ?, ?, ?, ?, ?)",
                    )
                    .and_then(|mut st| {
                        st.execute(params![
                            path,
                            hash,
                            time,
                            i.deriver.as_ref().map(|d| sd.display(d)),
                            if i.nar_size != 0 { Some(i.nar_size as i64) } else { None },
                            if i.ultimate { Some(1i64) } else { None },
                            if sigs.is_empty() { None } else { Some(sigs) },
                            ca
                        ])
                    })
                    .map_err(e("registering a path"))?;
                    tx.last_insert_rowid()
                }
            };
            ids.insert(&i.path, id);
            if let Some(outs) = drv_outputs.get(&i.path) {
                for (name, out) in outs {
                    tx.prepare_cached(
                        "insert or replace into DerivationOutputs (drv, id, path) values (?, ?, ?)",
                    )
                    .and_then(|mut st| st.execute(params![id, name, sd.display(out)]))
                    .map_err(e("registering derivation outputs"))?;
                }
            }
        }
        for i in infos {
            let referrer = ids[&i.path];
            for r in &i.references {
                let reference = match ids.get(r) {
                    Some(id) => *id,
                    None => tx
                        .prepare_cached("select id from ValidPaths where path = ?")
                        .and_then(|mut st| st.query_row([sd.display(r)], |row| row.get(0)).optional())
                        .map_err(e("querying a reference"))?
                        .ok_or_else(|| {
                            StoreError::Other(format!(
                                "cannot add path '{}' because it references path '{}' which is not valid",
                                sd.display(&i.path),
                                sd.display(r)
                            ))
                        })?,
                };
                tx.prepare_cached(
                    "insert or replace into Refs (referrer, reference) values (?, ?)",
                )
                .and_then(|mut st| st.execute(params![referrer, reference]))
                .map_err(e("registering a reference"))?;
            }
        }
        tx.commit().map_err(e("committing a transaction"))?;
        Ok(())
    }

    /// Replace the signatures of a valid path.
    pub fn set_sigs(&mut self, p: &StorePath, sigs: &BTreeSet<String>) -> Result<()> {
        self.forget_infos([p]);
        let s = sigs.iter().cloned().collect::<Vec<_>>().join(" ");
        self.conn
            .prepare_cached("update ValidPaths set sigs = ? where path = ?")
            .and_then(|mut st| st.execute(params![s, self.store_dir.display(p)]))
            .map_err(self.e("updating signatures"))?;
        Ok(())
    }

    /// Remove paths from the database in one transaction (the caller checked referrers).
    pub fn invalidate(&mut self, paths: &[StorePath]) -> Result<()> {
        // Deleting a row deletes its own `Refs`; no other path can still refer to it.
        self.forget_infos(paths);
        let sd = self.store_dir.clone();
        let file = self.file.clone();
        let e = |op| sql_err(op, &file);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(e("starting a transaction"))?;
        for p in paths {
            tx.prepare_cached("delete from ValidPaths where path = ?")
                .and_then(|mut st| st.execute([sd.display(p)]))
                .map_err(e("invalidating a path"))?;
        }
        tx.commit().map_err(e("committing a transaction"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use firn_format::HashAlgo;

    fn info(sd: &StoreDir, c: char, name: &str) -> ValidPathInfo {
        let p = sd
            .parse(&format!("/nix/store/{}-{name}", c.to_string().repeat(32)))
            .expect("path");
        ValidPathInfo::new(p, Hash::digest(HashAlgo::Sha256, name.as_bytes()), 8)
    }

    fn cached(db: &Db) -> BTreeSet<String> {
        db.infos.map.keys().map(|p| p.name().to_string()).collect()
    }

    fn names(n: &[&str]) -> BTreeSet<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    /// A write forgets the infos of the paths it touches, and only those.
    #[test]
    fn writes_forget_only_what_they_touch() {
        let dir = tempfile::tempdir().expect("tmp");
        let sd = StoreDir::default();
        let mut db =
            Db::open(&dir.path().join("db.sqlite"), sd.clone(), true, true, false).expect("open");
        let (a, b, c) = (
            info(&sd, '1', "a"),
            info(&sd, '2', "b"),
            info(&sd, '3', "c"),
        );
        db.register(&[a.clone(), b.clone()], &BTreeMap::new())
            .expect("register");
        db.cached_path_infos(&[a.path.clone(), b.path.clone()])
            .expect("query");
        assert_eq!(cached(&db), names(&["a", "b"]));
        db.register(std::slice::from_ref(&c), &BTreeMap::new())
            .expect("register");
        assert_eq!(cached(&db), names(&["a", "b"]));
        db.cached_path_info(&c.path).expect("query");
        db.set_sigs(&a.path, &BTreeSet::from(["k:c2ln".to_string()]))
            .expect("sigs");
        assert_eq!(cached(&db), names(&["b", "c"]));
        let a2 = db.cached_path_info(&a.path).expect("query").expect("valid");
        assert_eq!(a2.sigs.len(), 1);
        db.invalidate(std::slice::from_ref(&b.path))
            .expect("invalidate");
        assert_eq!(cached(&db), names(&["a", "c"]));
        assert_eq!(db.cached_path_info(&b.path).expect("query"), None);
        // Not valid paths are not cached.
        assert_eq!(cached(&db), names(&["a", "c"]));
        // Raw access may change anything.
        db.conn();
        assert!(cached(&db).is_empty());
    }

    /// Another connection's commit drops the cache; this connection's own do not.
    #[test]
    fn other_connections_commits_drop_the_cache() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("db.sqlite");
        let sd = StoreDir::default();
        let mut db = Db::open(&file, sd.clone(), true, true, false).expect("open");
        let (a, b) = (info(&sd, '1', "a"), info(&sd, '2', "b"));
        db.register(&[a.clone(), b.clone()], &BTreeMap::new())
            .expect("register");
        db.cached_path_infos(&[a.path.clone(), b.path.clone()])
            .expect("query");
        db.cached_path_info(&a.path).expect("query");
        assert_eq!(cached(&db), names(&["a", "b"]));
        let other = Connection::open(&file).expect("open");
        other
            .execute(
                "update ValidPaths set narSize = 99 where path = ?",
                [sd.display(&b.path)],
            )
            .expect("update");
        let got = db.cached_path_info(&b.path).expect("query").expect("valid");
        assert_eq!(got.nar_size, 99);
        assert_eq!(cached(&db), names(&["b"]));
    }
}
