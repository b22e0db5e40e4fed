//! Garbage collection, compatible with CppNix's protocol so both can collect one store: hold
//! `gc.lock` exclusively, serve `gc-socket/socket` so processes can announce new temporary
//! roots while we run, and never delete a path that is a root, reachable from one, or a
//! temporary root of a live process (CppNix's or firn's).
//!
//! Unlike CppNix, which walks referrers one SQL query at a time, this loads the whole reference
//! graph at once ([`graph`]), computes liveness in memory, and unregisters dead paths in large
//! transactions, referrers before the paths they reference. A batch is removed from the
//! database before its files are deleted (as CppNix does), so a crash leaves at worst invalid
//! leftovers, which the next collection removes, and never a valid path with missing files.

mod delete;
mod graph;
mod server;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Arc;

use firn_format::StorePath;
use rusqlite::TransactionBehavior;

use crate::error::{io_err, Result, StoreError};
use crate::local::LocalStore;
use crate::lock::{lock_file, open_lock_file, LockType};
use graph::{Graph, Ix, Keep};
use server::{hash_part_of, RootsServer, SharedState};

/// What a collection does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum GcAction {
    /// Report the live paths (`--print-live`).
    ReturnLive,
    /// Report what would be deleted (`--print-dead`).
    ReturnDead,
    /// Delete everything that is not live (`--gc`).
    #[default]
    DeleteDead,
    /// Delete these paths, refusing if one is live (`--delete`).
    DeleteSpecific(BTreeSet<StorePath>),
}

/// How to collect.
#[derive(Clone, Debug)]
pub struct GcOptions {
    pub action: GcAction,
    /// With `DeleteSpecific`: ignore the roots (but never delete a path whose referrers stay,
    /// nor a temporary root).
    pub ignore_liveness: bool,
    /// Stop once more than this many bytes are freed (0: delete nothing).
    pub max_freed: u64,
    /// Keep the outputs of live derivations (`keep-outputs`, default false).
    pub keep_outputs: bool,
    /// Keep the derivations of live outputs (`keep-derivations`, default true).
    pub keep_derivations: bool,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            action: GcAction::DeleteDead,
            ignore_liveness: false,
            max_freed: u64::MAX,
            keep_outputs: false,
            keep_derivations: true,
        }
    }
}

/// What a collection did or found.
#[derive(Clone, Debug, Default)]
pub struct GcResults {
    /// The paths deleted (or, for the `Return*` actions, found), printed.
    pub paths: BTreeSet<String>,
    /// Bytes freed, counted as CppNix counts them.
    pub bytes_freed: u64,
    /// After a deleting collection: what hard linking in `.links` saves now, in bytes (CppNix
    /// prints it as "note: currently hard linking saves N MiB").
    pub hard_linking_saves: i64,
}

/// Paths unregistered per transaction.
const BATCH: usize = 4096;

/// The bytes freed by a batch sent to the deleting thread, or its error.
fn wait_freed(rx: &std::sync::mpsc::Receiver<Result<u64>>) -> Result<u64> {
    rx.recv().unwrap_or_else(|_| {
        Err(StoreError::Other(
            "the thread deleting dead paths stopped".into(),
        ))
    })
}

/// Remove the paths with these row ids (and their references) from the database: two
/// statements for the whole batch rather than one per path (each of which would open a
/// statement journal). The batch's own references go first, so that the `on delete restrict`
/// of `Refs.reference` (checked row by row, in whatever order SQLite deletes) fails exactly
/// when a path outside the batch still references one in it.
fn unregister_ids(
    conn: &rusqlite::Connection,
    ids: impl Iterator<Item = i64>,
) -> rusqlite::Result<()> {
    let ids = id_list(ids);
    conn.prepare_cached("delete from Refs where referrer in (select value from json_each(?1))")?
        .execute([&ids])?;
    conn.prepare_cached("delete from ValidPaths where id in (select value from json_each(?1))")?
        .execute([&ids])?;
    Ok(())
}

/// Row ids as a JSON array, for `json_each` in one statement over a whole batch.
fn id_list(ids: impl Iterator<Item = i64>) -> String {
    use std::fmt::Write;
    let mut s = String::from("[");
    for (k, id) in ids.enumerate() {
        if k > 0 {
            s.push(',');
        }
        let _ = write!(s, "{id}");
    }
    s.push(']');
    s
}

/// Clears the pending deletions (waking waiting clients) when dropped.
struct PendingGuard<'a>(&'a SharedState);

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.0.clear_pending();
    }
}

/// The state of one collection.
struct Run<'a> {
    store: &'a LocalStore,
    opts: &'a GcOptions,
    keep: Keep,
    shared: Arc<SharedState>,
    store_fd: OwnedFd,
    results: GcResults,
}

impl LocalStore {
    /// Run the garbage collector.
    pub fn collect_garbage(&self, opts: &GcOptions) -> Result<GcResults> {
        let layout = self.layout();
        let specific = matches!(opts.action, GcAction::DeleteSpecific(_));
        // With --ignore-liveness, following keep-* edges could delete far more than asked.
        let keep = if specific && opts.ignore_liveness {
            Keep {
                outputs: false,
                derivations: false,
            }
        } else {
            Keep {
                outputs: opts.keep_outputs,
                derivations: opts.keep_derivations,
            }
        };
        let deleting = matches!(
            opts.action,
            GcAction::DeleteDead | GcAction::DeleteSpecific(_)
        );
        if deleting {
            match std::fs::remove_file(&layout.reserved) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("deleting", &layout.reserved)(e)),
            }
        }
        let gc_lock = open_lock_file(&layout.gc_lock, true)?.ok_or_else(|| {
            StoreError::Other(format!("cannot open '{}'", layout.gc_lock.display()))
        })?;
        if !lock_file(&gc_lock, LockType::Write, false, &layout.gc_lock)? {
            tracing::warn!("waiting for the big garbage collector lock...");
            lock_file(&gc_lock, LockType::Write, true, &layout.gc_lock)?;
        }
        let shared = Arc::new(SharedState::default());
        let _server = RootsServer::start(&layout.gc_socket, shared.clone())?;

        // Roots: the temporary roots written before we took the lock (newer ones come over the
        // socket), then the permanent and runtime ones. The temporary roots must come first
        // (CppNix reads them last): a permanent root only counts once its path is valid, and
        // a process can make a path valid that a root already points to (or make the root),
        // then exit, between the two reads. Read the other way round, the permanent root was
        // read while its path was not valid yet and the temporary root is gone (the process
        // died: its file is stale), so the new path would be deleted. This way a process
        // alive when its temporary roots are read keeps them for the whole collection, and
        // one that is gone by then made its paths valid and rooted before the permanent
        // roots are read.
        let mut roots: BTreeSet<StorePath> = BTreeSet::new();
        for p in self.find_temp_roots(true)?.into_keys() {
            shared.lock().temp_roots.insert(p.hash_part().to_string());
            roots.insert(p);
        }
        // A synchronisation point of firn's own for tests: between the two reads.
        if let Some(p) = std::env::var_os("_FIRN_TEST_GC_SYNC_TEMP_ROOTS") {
            let _ = std::fs::read(p);
        }
        if !opts.ignore_liveness {
            roots.extend(self.find_roots_no_temp(true)?.into_keys());
        }
        // CppNix's synchronisation point for tests of concurrent collection.
        if let Some(p) = std::env::var_os("_NIX_TEST_GC_SYNC") {
            let _ = std::fs::read(p);
        }

        let g = {
            let mut db = self.db();
            let file = db.file().to_path_buf();
            Graph::load(db.conn_keeping_infos(), &file, self.store_dir())?
        };
        let mut live = vec![false; g.len()];
        let announced = shared.lock().temp_roots.clone();
        let starts: Vec<Ix> = roots
            .iter()
            .filter_map(|p| g.index.get(p).copied())
            .chain(
                (0..g.len() as Ix).filter(|&i| announced.contains(g.paths[i as usize].hash_part())),
            )
            .collect();
        g.mark(starts, keep, &mut live);

        let store_fd = delete::open_dir(
            rustix::fs::CWD,
            layout.real_store_dir.as_os_str(),
            &layout.real_store_dir,
        )?;
        let mut run = Run {
            store: self,
            opts,
            keep,
            shared: shared.clone(),
            store_fd,
            results: GcResults::default(),
        };
        match &opts.action {
            GcAction::ReturnLive => {
                for (i, p) in g.paths.iter().enumerate() {
                    if live[i] {
                        run.results.paths.insert(self.store_dir().display(p));
                    }
                }
                return Ok(run.results);
            }
            GcAction::DeleteSpecific(wanted) => run.delete_specific(&g, &live, wanted)?,
            GcAction::ReturnDead | GcAction::DeleteDead => {
                if opts.max_freed > 0 {
                    run.collect_dead(&g, &live, deleting)?;
                }
                if !deleting {
                    return Ok(run.results);
                }
            }
        }
        run.results.hard_linking_saves = delete::delete_unused_links(&layout.links_dir)?;
        Ok(run.results)
    }
}

impl Run<'_> {
    fn is_temp_root(&self, hash: &str) -> bool {
        self.shared.lock().temp_roots.contains(hash)
    }

    fn limit_reached(&self) -> bool {
        self.results.bytes_freed > self.opts.max_freed
    }

    /// Every dead valid path and every store entry that is not a valid path: report them
    /// (`ReturnDead`) or delete them.
    fn collect_dead(&mut self, g: &Graph, live: &[bool], deleting: bool) -> Result<()> {
        let dead: Vec<Ix> = (0..g.len() as Ix).filter(|&i| !live[i as usize]).collect();
        let order = g.referrers_first(&dead);
        // Entries of the store directory that are not valid paths (read after the graph, so a
        // path registered since then shows up here and is checked again before deletion).
        let real_store_dir = &self.store.layout().real_store_dir;
        let mut named_junk = Vec::new();
        let mut other_junk = Vec::new();
        for (name, _) in delete::list(self.store_fd.as_fd(), real_store_dir)? {
            if name == b".links" {
                continue;
            }
            let parsed = std::str::from_utf8(&name)
                .ok()
                .and_then(|n| StorePath::from_base_name(n).ok());
            match parsed {
                Some(p) if g.index.contains_key(&p) => {}
                Some(_) => named_junk.push(name),
                None => other_junk.push(name),
            }
        }
        if !deleting {
            let sd = self.store.store_dir();
            for &i in &order {
                let p = &g.paths[i as usize];
                if !self.is_temp_root(p.hash_part()) {
                    self.results.paths.insert(sd.display(p));
                }
            }
            for name in &named_junk {
                let name = String::from_utf8_lossy(name);
                if !hash_part_of(&name).is_some_and(|h| self.is_temp_root(h)) {
                    self.results.paths.insert(format!("{sd}/{name}"));
                }
            }
            // CppNix 2.8 lists (and, unlike us, deletes) the other entries too.
            for name in &other_junk {
                if !delete::temp_entry_in_use(self.store_fd.as_fd(), name) {
                    let name = String::from_utf8_lossy(name);
                    self.results.paths.insert(format!("{sd}/{name}"));
                }
            }
            return Ok(());
        }
        let mut deleted = vec![false; g.len()];
        let mut rescued = vec![false; g.len()];
        if self.delete_valid(g, &order, &mut deleted, &mut rescued)? {
            return Ok(());
        }
        for name in named_junk.iter().chain(&other_junk) {
            if self.limit_reached() {
                break;
            }
            self.delete_junk(name)?;
        }
        Ok(())
    }

    /// Delete one store entry that is not a valid path, unless it belongs to a temporary
    /// root, became valid meanwhile, or is a temporary directory still in use.
    fn delete_junk(&mut self, name: &[u8]) -> Result<()> {
        let text = String::from_utf8_lossy(name).into_owned();
        let hash = hash_part_of(&text).map(str::to_string);
        if let Ok(p) = StorePath::from_base_name(&text) {
            if self.store.is_valid_path(&p)? {
                return Ok(());
            }
        } else if delete::temp_entry_in_use(self.store_fd.as_fd(), name) {
            return Ok(());
        }
        let _pending = PendingGuard(&self.shared);
        if let Some(h) = &hash {
            let mut s = self.shared.lock();
            if s.temp_roots.contains(h) {
                return Ok(());
            }
            s.pending.insert(h.clone());
        }
        let mut real = self
            .store
            .layout()
            .real_store_dir
            .join(OsStr::from_bytes(name));
        tracing::info!("deleting '{}'", real.display());
        let freed =
            delete::delete_entry(self.store_fd.as_fd(), OsStr::from_bytes(name), &mut real)?;
        self.results.bytes_freed += freed;
        self.results
            .paths
            .insert(format!("{}/{}", self.store.store_dir(), text));
        Ok(())
    }

    /// `nix-store --delete`: each wanted path goes with the paths that keep it (its referrers
    /// and, per the keep settings, outputs or derivers), which must all be wanted and dead.
    /// As in CppNix, paths are handled in order and the first that cannot go stops the run
    /// with an error (the ones before it are deleted).
    fn delete_specific(
        &mut self,
        g: &Graph,
        live: &[bool],
        wanted: &BTreeSet<StorePath>,
    ) -> Result<()> {
        let alive_err = |p: &StorePath| {
            StoreError::Other(format!(
                "Cannot delete path '{}' since it is still alive. To find out why, use: nix-store --query --roots",
                self.store.store_dir().display(p)
            ))
        };
        let mut deleted = vec![false; g.len()];
        let mut rescued = vec![false; g.len()];
        for p in wanted {
            if self.limit_reached() {
                break;
            }
            let Some(&start) = g.index.get(p) else {
                // Not valid: its files (if any) are junk, unless someone is adding it.
                if self.is_temp_root(p.hash_part()) {
                    return Err(alive_err(p));
                }
                let _pending = PendingGuard(&self.shared);
                self.shared.lock().pending.insert(p.hash_part().to_string());
                let mut real = self.store.real_path(p);
                let name = OsStr::new(p.base_name());
                self.results.bytes_freed +=
                    delete::delete_entry(self.store_fd.as_fd(), name, &mut real)?;
                self.results.paths.insert(self.store.store_dir().display(p));
                continue;
            };
            if deleted[start as usize] {
                continue;
            }
            let mut visited = vec![start];
            let mut seen: std::collections::HashSet<Ix> = [start].into();
            let mut k = 0;
            while k < visited.len() {
                let i = visited[k];
                k += 1;
                let path = &g.paths[i as usize];
                if live[i as usize] || rescued[i as usize] || self.is_temp_root(path.hash_part()) {
                    return Err(alive_err(p));
                }
                if !wanted.contains(path) {
                    return Err(alive_err(p));
                }
                g.keepers_of(i, self.keep, |j| {
                    if !deleted[j as usize] && seen.insert(j) {
                        visited.push(j);
                    }
                });
            }
            visited.sort_by(|a, b| g.paths[*a as usize].cmp(&g.paths[*b as usize]));
            let order = g.referrers_first(&visited);
            self.delete_valid(g, &order, &mut deleted, &mut rescued)?;
            if !deleted[start as usize] && !self.limit_reached() {
                return Err(alive_err(p));
            }
        }
        Ok(())
    }

    /// Unregister and delete the paths of `order` (referrers first) that are not `rescued`
    /// (nor `deleted` already), in batches; returns whether `max_freed` was reached. A path
    /// that became a temporary root, or that a path registered since the graph was loaded
    /// keeps, is spared with everything it keeps.
    ///
    /// Each batch is unregistered in one transaction, then its files are deleted on another
    /// thread while the next batch is unregistered (with a byte limit, a batch is planned only
    /// once the bytes of the last one are counted). The first batches are small, so that
    /// deleting starts early. A batch's paths stay pending (clients announcing one of them as
    /// a root wait) until its files are gone.
    fn delete_valid(
        &mut self,
        g: &Graph,
        order: &[Ix],
        deleted: &mut [bool],
        rescued: &mut [bool],
    ) -> Result<bool> {
        let mut max_id = g.max_id;
        let mut pos = 0;
        let real_store_dir = self.store.layout().real_store_dir.clone();
        let limited = self.opts.max_freed != u64::MAX;
        // However this ends, no deletion stays pending.
        let guarded = self.shared.clone();
        let _pending = PendingGuard(&guarded);
        let shared = self.shared.clone();
        let store_fd = self
            .store_fd
            .try_clone()
            .map_err(io_err("duplicating the handle of", &real_store_dir))?;
        // Batches unregistered, on their way to the deleting thread: base names and hash parts.
        let (to_delete, batches) = std::sync::mpsc::sync_channel::<(Vec<String>, Vec<String>)>(1);
        let (freed_tx, freed_rx) = std::sync::mpsc::channel::<Result<u64>>();
        std::thread::scope(|scope| {
            scope.spawn(move || {
                for (names, hashes) in batches {
                    let names: Vec<&str> = names.iter().map(String::as_str).collect();
                    let r = delete::delete_entries(store_fd.as_fd(), &real_store_dir, &names);
                    // Clients waiting for these paths may go on: they are gone.
                    shared.remove_pending(&hashes);
                    let failed = r.is_err();
                    if freed_tx.send(r).is_err() || failed {
                        break;
                    }
                }
            });
            let mut in_flight = 0usize;
            let mut size = 256usize;
            let r = (|| -> Result<bool> {
                while pos < order.len() {
                    if limited {
                        // Count what the last batch freed before planning the next.
                        while in_flight > 0 {
                            self.results.bytes_freed += wait_freed(&freed_rx)?;
                            in_flight -= 1;
                        }
                    } else {
                        while let Ok(r) = freed_rx.try_recv() {
                            self.results.bytes_freed += r?;
                            in_flight -= 1;
                        }
                    }
                    if self.limit_reached() {
                        return Ok(true);
                    }
                    // With a byte limit, take about as much as is left to free (by NAR size,
                    // which is never less than what deleting frees), so that we do not
                    // unregister paths we then leave on disk.
                    let budget = self.opts.max_freed - self.results.bytes_freed;
                    let mut batch: Vec<Ix> = Vec::new();
                    let mut hashes: Vec<String> = Vec::new();
                    {
                        let mut s = self.shared.lock();
                        let mut planned = 0u64;
                        while pos < order.len() && batch.len() < size && planned <= budget {
                            let i = order[pos];
                            pos += 1;
                            if rescued[i as usize] || deleted[i as usize] {
                                continue;
                            }
                            let hash = g.paths[i as usize].hash_part();
                            if s.temp_roots.contains(hash) {
                                g.mark([i], self.keep, rescued);
                                continue;
                            }
                            s.pending.insert(hash.to_string());
                            hashes.push(hash.to_string());
                            planned = planned.saturating_add(g.nar_size[i as usize].max(1));
                            batch.push(i);
                        }
                    }
                    size = (size * 2).min(BATCH);
                    self.unregister(g, &mut batch, &mut max_id, rescued)?;
                    let names: Vec<String> = batch
                        .iter()
                        .map(|&i| g.paths[i as usize].base_name().to_string())
                        .collect();
                    for &i in &batch {
                        let p = self.store.store_dir().display(&g.paths[i as usize]);
                        tracing::info!("deleting '{p}'");
                        self.results.paths.insert(p);
                        deleted[i as usize] = true;
                    }
                    // Rescued paths stay pending until the deletion of their batch ends,
                    // which only makes a client wait a little.
                    if to_delete.send((names, hashes)).is_err() {
                        // The deleting thread stopped: its error is waiting.
                        break;
                    }
                    in_flight += 1;
                }
                Ok(false)
            })();
            drop(to_delete);
            // Whatever happened, wait for the deletions under way (their files are no longer
            // registered) and count them.
            let mut first_err = r.as_ref().err().is_some();
            let mut result = r;
            for _ in 0..in_flight {
                match wait_freed(&freed_rx) {
                    Ok(n) => self.results.bytes_freed += n,
                    Err(e) => {
                        if !first_err {
                            result = Err(e);
                            first_err = true;
                        }
                    }
                }
            }
            result.map(|stopped| stopped || self.limit_reached())
        })
    }

    /// Remove `batch` from the database in one transaction. Paths registered since the graph
    /// was loaded (row ids above `max_id`) are checked first, inside the transaction: what
    /// they keep is spared (marked in `rescued` and dropped from `batch`).
    fn unregister(
        &self,
        g: &Graph,
        batch: &mut Vec<Ix>,
        max_id: &mut i64,
        rescued: &mut [bool],
    ) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let sd = self.store.store_dir().clone();
        let mut db = self.store.db();
        let file: PathBuf = db.file().to_path_buf();
        let e = |op: &'static str| {
            let file = file.clone();
            move |source| StoreError::Sqlite {
                op,
                db: file,
                source,
            }
        };
        for attempt in 0..2 {
            let tx = db
                .conn_keeping_infos()
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(e("starting a transaction"))?;
            let mut kept: Vec<Ix> = Vec::new();
            {
                let new_max: i64 = tx
                    .query_row("select coalesce(max(id), 0) from ValidPaths", [], |r| {
                        r.get(0)
                    })
                    .map_err(e("checking for new paths"))?;
                if new_max > *max_id {
                    let mut st = tx
                        .prepare("select reference from Refs where referrer > ?1")
                        .map_err(e("checking for new paths"))?;
                    let ids = st
                        .query_map([*max_id], |r| r.get::<_, i64>(0))
                        .map_err(e("checking for new paths"))?;
                    for id in ids {
                        let id = id.map_err(e("checking for new paths"))?;
                        kept.extend(g.by_id.get(&id).copied());
                    }
                    let mut names: Vec<String> = Vec::new();
                    if self.keep.derivations {
                        let mut st = tx
                            .prepare("select deriver from ValidPaths where id > ?1 and deriver is not null")
                            .map_err(e("checking for new paths"))?;
                        let rows = st
                            .query_map([*max_id], |r| r.get::<_, String>(0))
                            .map_err(e("checking for new paths"))?;
                        for r in rows {
                            names.push(r.map_err(e("checking for new paths"))?);
                        }
                    }
                    if self.keep.outputs {
                        let mut st = tx
                            .prepare("select path from DerivationOutputs where drv > ?1")
                            .map_err(e("checking for new paths"))?;
                        let rows = st
                            .query_map([*max_id], |r| r.get::<_, String>(0))
                            .map_err(e("checking for new paths"))?;
                        for r in rows {
                            names.push(r.map_err(e("checking for new paths"))?);
                        }
                    }
                    for n in names {
                        if let Ok(p) = sd.parse(&n) {
                            kept.extend(g.index.get(&p).copied());
                        }
                    }
                    *max_id = new_max;
                }
            }
            if !kept.is_empty() {
                g.mark(kept, self.keep, rescued);
                batch.retain(|&i| !rescued[i as usize]);
            }
            // Two statements for the whole batch rather than one per path (each of which
            // would open a statement journal): the batch's own references go first, so that
            // the `on delete restrict` of `Refs.reference` (checked row by row, in whatever
            // order SQLite deletes) fails exactly when a path outside the batch still
            // references one in it.
            let failed = unregister_ids(&tx, batch.iter().map(|&i| g.ids[i as usize])).err();
            match failed {
                None => {
                    tx.commit().map_err(e("committing a transaction"))?;
                    // Unregistered: what this process had cached of them is gone too.
                    db.forget_infos(batch.iter().map(|&i| &g.paths[i as usize]));
                    return Ok(());
                }
                Some(rusqlite::Error::SqliteFailure(f, _))
                    if f.code == rusqlite::ErrorCode::ConstraintViolation && attempt == 0 =>
                {
                    // A path we did not know about references one of these (it was
                    // registered again, or its references changed): spare what is referenced
                    // from outside the batch, then try again.
                    drop(tx);
                    let ids: std::collections::HashSet<i64> =
                        batch.iter().map(|&i| g.ids[i as usize]).collect();
                    let mut spare = Vec::new();
                    {
                        let conn = db.conn_keeping_infos();
                        let mut st = conn
                            .prepare_cached("select referrer from Refs where reference = ?1")
                            .map_err(e("querying referrers"))?;
                        for &i in batch.iter() {
                            let refs = st
                                .query_map([g.ids[i as usize]], |r| r.get::<_, i64>(0))
                                .map_err(e("querying referrers"))?;
                            for r in refs {
                                let r = r.map_err(e("querying referrers"))?;
                                if r != g.ids[i as usize] && !ids.contains(&r) {
                                    spare.push(i);
                                }
                            }
                        }
                    }
                    g.mark(spare, self.keep, rescued);
                    batch.retain(|&i| !rescued[i as usize]);
                }
                Some(err) => return Err(e("invalidating a path")(err)),
            }
        }
        Err(StoreError::Other(
            "cannot unregister dead paths: their references keep changing".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db_with(paths: &[(i64, &[i64])]) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch("pragma foreign_keys = 1;").unwrap();
        conn.execute_batch(crate::db::SCHEMA).unwrap();
        for (id, _) in paths {
            conn.execute(
                "insert into ValidPaths (id, path, hash, registrationTime, narSize) \
                 values (?1, ?2, 'sha256:0', 1, 1)",
                rusqlite::params![id, format!("/nix/store/p{id}")],
            )
            .unwrap();
        }
        for (id, refs) in paths {
            for r in *refs {
                conn.execute(
                    "insert into Refs (referrer, reference) values (?1, ?2)",
                    [id, r],
                )
                .unwrap();
            }
        }
        conn
    }

    fn count(conn: &rusqlite::Connection, table: &str) -> i64 {
        conn.query_row(&format!("select count(*) from {table}"), [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn a_batch_goes_whole_in_any_order_unless_referenced_from_outside() {
        // 3 -> 2 -> 1, 3 -> 3 (itself), 4 -> 1.
        let paths: &[(i64, &[i64])] = &[(1, &[]), (2, &[1]), (3, &[2, 3]), (4, &[1])];
        // Referenced paths before their referrers, and the other way: both go.
        for order in [[1i64, 2, 3], [3, 2, 1], [2, 1, 3]] {
            let mut conn = db_with(paths);
            // 4 references 1: the batch {1, 2, 3} cannot go, and nothing of it goes.
            let tx = conn.transaction().unwrap();
            let e = unregister_ids(&tx, order.into_iter()).unwrap_err();
            assert!(
                matches!(&e, rusqlite::Error::SqliteFailure(f, _)
                    if f.code == rusqlite::ErrorCode::ConstraintViolation),
                "{e}"
            );
            drop(tx);
            assert_eq!((count(&conn, "ValidPaths"), count(&conn, "Refs")), (4, 4));
            // With 4 in the batch too, everything goes with its references.
            let tx = conn.transaction().unwrap();
            unregister_ids(&tx, order.into_iter().chain([4])).unwrap();
            tx.commit().unwrap();
            assert_eq!((count(&conn, "ValidPaths"), count(&conn, "Refs")), (0, 0));
        }
        // A batch that nothing outside references: the rest stays as it was.
        let mut conn = db_with(paths);
        let tx = conn.transaction().unwrap();
        unregister_ids(&tx, [3i64].into_iter()).unwrap();
        tx.commit().unwrap();
        assert_eq!((count(&conn, "ValidPaths"), count(&conn, "Refs")), (3, 2));
    }
}
