//! Garbage collection, compatible with CppNix's protocol: hold `gc.lock` exclusively, serve
//! `gc-socket/socket` so processes can announce new temporary roots while we run, and never
//! delete a path that is a root, reachable from one, or a temporary root of a live process.
//!
//! Unlike CppNix, which walks referrers one SQL query at a time, this loads the whole reference
//! graph in two queries, computes liveness in memory, and unregisters dead paths in large
//! transactions (referrers before the paths they reference, so a crash never leaves a valid path
//! with a missing reference).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use firn_format::StorePath;

use crate::canon::delete_path;
use crate::error::{io_err, Result, StoreError};
use crate::local::LocalStore;
use crate::lock::{lock_file, open_lock_file, LockType};

/// What a collection does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum GcAction {
    ReturnLive,
    ReturnDead,
    #[default]
    DeleteDead,
    DeleteSpecific(BTreeSet<StorePath>),
}

#[derive(Clone, Debug)]
pub struct GcOptions {
    pub action: GcAction,
    /// With `DeleteSpecific`: delete even live paths (but never ones with live referrers).
    pub ignore_liveness: bool,
    /// Stop after freeing this many bytes.
    pub max_freed: u64,
    /// Keep the outputs of live derivations.
    pub keep_outputs: bool,
    /// Keep the derivations of live outputs.
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

#[derive(Clone, Debug, Default)]
pub struct GcResults {
    /// The paths deleted (or, for the `Return*` actions, found).
    pub paths: BTreeSet<String>,
    pub bytes_freed: u64,
}

/// Temp roots announced to the GC while it runs, and the hash parts being deleted right now.
#[derive(Default)]
struct Shared {
    temp_roots: HashSet<String>,
    pending: HashSet<String>,
}

type SharedState = Arc<(Mutex<Shared>, Condvar)>;

/// The socket server that receives temporary roots during a collection.
struct RootsServer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    socket: std::path::PathBuf,
}

impl RootsServer {
    fn start(socket: &Path, shared: SharedState) -> Result<RootsServer> {
        if let Some(dir) = socket.parent() {
            std::fs::create_dir_all(dir).map_err(io_err("creating directory", dir))?;
        }
        let _ = std::fs::remove_file(socket);
        let listener = UnixListener::bind(socket).map_err(io_err("binding socket", socket))?;
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o666));
        }
        listener
            .set_nonblocking(true)
            .map_err(io_err("configuring socket", socket))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let shared = shared.clone();
                        let stop3 = stop2.clone();
                        std::thread::spawn(move || serve_client(conn, shared, stop3));
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
                }
            }
        });
        Ok(RootsServer {
            stop,
            thread: Some(thread),
            socket: socket.to_path_buf(),
        })
    }
}

impl Drop for RootsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

fn serve_client(conn: std::os::unix::net::UnixStream, shared: SharedState, stop: Arc<AtomicBool>) {
    let _ = conn.set_nonblocking(false);
    let Ok(mut w) = conn.try_clone() else {
        return;
    };
    let r = BufReader::new(conn);
    for line in r.lines() {
        let Ok(line) = line else { break };
        if let Some(hash) = hash_part_of(&line) {
            let (lock, cv) = &*shared;
            let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
            s.temp_roots.insert(hash.clone());
            // Do not let the client use a path we are deleting until we are done.
            while s.pending.contains(&hash) && !stop.load(Ordering::Relaxed) {
                s = cv.wait(s).unwrap_or_else(|e| e.into_inner());
            }
        }
        if w.write_all(b"1").is_err() {
            break;
        }
    }
}

/// The hash part of a printed store path (`/nix/store/<hash>-...`).
fn hash_part_of(s: &str) -> Option<String> {
    let base = s.rsplit('/').next()?;
    if base.len() > 32 && base.as_bytes()[32] == b'-' {
        Some(base[..32].to_string())
    } else {
        None
    }
}

/// The in-memory reference graph.
struct Graph {
    paths: Vec<StorePath>,
    index: HashMap<StorePath, usize>,
    refs: Vec<Vec<usize>>,
    referrers: Vec<Vec<usize>>,
    deriver: Vec<Option<usize>>,
    /// For derivations: their registered outputs that are valid.
    outputs: Vec<Vec<usize>>,
}

impl LocalStore {
    fn load_graph(&self) -> Result<Graph> {
        let db = self.db();
        let (nodes, edges) = db.load_graph()?;
        let drv_outs = db.load_derivation_outputs()?;
        drop(db);
        let sd = self.store_dir();
        let mut paths = Vec::with_capacity(nodes.len());
        let mut by_id = HashMap::with_capacity(nodes.len());
        let mut index = HashMap::with_capacity(nodes.len());
        let mut by_printed: HashMap<&str, usize> = HashMap::with_capacity(nodes.len());
        for (i, n) in nodes.iter().enumerate() {
            let p = sd.parse(&n.path).map_err(|e| {
                StoreError::Corrupt(
                    self.layout().db_file.clone(),
                    format!("bad path '{}': {e}", n.path),
                )
            })?;
            by_id.insert(n.id, i);
            index.insert(p.clone(), i);
            by_printed.insert(n.path.as_str(), i);
            paths.push(p);
        }
        let mut refs = vec![Vec::new(); paths.len()];
        let mut referrers = vec![Vec::new(); paths.len()];
        for (a, b) in edges {
            if let (Some(&a), Some(&b)) = (by_id.get(&a), by_id.get(&b)) {
                if a != b {
                    refs[a].push(b);
                    referrers[b].push(a);
                }
            }
        }
        let deriver = nodes
            .iter()
            .map(|n| {
                n.deriver
                    .as_deref()
                    .and_then(|d| by_printed.get(d).copied())
            })
            .collect();
        let mut outputs = vec![Vec::new(); paths.len()];
        for (drv, out) in drv_outs {
            if let (Some(&d), Some(&o)) = (by_id.get(&drv), by_printed.get(out.as_str())) {
                outputs[d].push(o);
            }
        }
        Ok(Graph {
            paths,
            index,
            refs,
            referrers,
            deriver,
            outputs,
        })
    }

    /// Run the garbage collector.
    pub fn collect_garbage(&self, opts: &GcOptions) -> Result<GcResults> {
        let layout = self.layout().clone();
        let mut results = GcResults::default();
        let (mut keep_outputs, mut keep_derivations) = (opts.keep_outputs, opts.keep_derivations);
        let specific = matches!(opts.action, GcAction::DeleteSpecific(_));
        if specific && opts.ignore_liveness {
            keep_outputs = false;
            keep_derivations = false;
        }
        let deleting = matches!(
            opts.action,
            GcAction::DeleteDead | GcAction::DeleteSpecific(_)
        );
        if deleting {
            let _ = std::fs::remove_file(&layout.reserved);
        }
        let gc_lock = open_lock_file(&layout.gc_lock, true)?.ok_or_else(|| {
            StoreError::Other(format!("cannot open '{}'", layout.gc_lock.display()))
        })?;
        if !lock_file(&gc_lock, LockType::Write, false, &layout.gc_lock)? {
            eprintln!("waiting for the big garbage collector lock...");
            lock_file(&gc_lock, LockType::Write, true, &layout.gc_lock)?;
        }
        let shared: SharedState = Arc::new((Mutex::new(Shared::default()), Condvar::new()));
        let _server = RootsServer::start(&layout.gc_socket, shared.clone())?;

        // Roots: permanent and runtime ones, then the temporary roots of live processes.
        let mut root_paths: BTreeSet<StorePath> = BTreeSet::new();
        if !opts.ignore_liveness {
            root_paths.extend(self.find_roots_no_temp(true)?.into_keys());
        }
        {
            let temp = self.find_temp_roots(true)?;
            let mut s = shared.0.lock().unwrap_or_else(|e| e.into_inner());
            for p in temp.into_keys() {
                s.temp_roots.insert(p.hash_part().to_string());
                root_paths.insert(p);
            }
        }

        let g = self.load_graph()?;
        let n = g.paths.len();
        // Liveness: the closure of the roots.
        let mut live = vec![false; n];
        let mut stack: Vec<usize> = root_paths
            .iter()
            .filter_map(|p| g.index.get(p).copied())
            .collect();
        let mark = |i: usize, live: &mut Vec<bool>, stack: &mut Vec<usize>| {
            if !live[i] {
                live[i] = true;
                stack.push(i);
            }
        };
        for &i in &stack.clone() {
            live[i] = false;
        }
        let roots0 = std::mem::take(&mut stack);
        for i in roots0 {
            mark(i, &mut live, &mut stack);
        }
        let close = |live: &mut Vec<bool>, stack: &mut Vec<usize>| {
            while let Some(i) = stack.pop() {
                for &r in &g.refs[i] {
                    mark(r, live, stack);
                }
                if keep_outputs {
                    for &o in &g.outputs[i] {
                        mark(o, live, stack);
                    }
                }
                if keep_derivations {
                    if let Some(d) = g.deriver[i] {
                        mark(d, live, stack);
                    }
                }
            }
        };
        close(&mut live, &mut stack);

        // What to delete (or report), as indices into the graph, plus invalid entries by name.
        let mut dead: Vec<usize> = Vec::new();
        let mut junk: Vec<String> = Vec::new();
        match &opts.action {
            GcAction::DeleteSpecific(wanted) => {
                let mut cand: HashSet<usize> = HashSet::new();
                for p in wanted {
                    match g.index.get(p) {
                        Some(&i) if !live[i] => {
                            cand.insert(i);
                        }
                        Some(_) => {
                            return Err(StoreError::Other(format!(
                                "Cannot delete path '{}' since it is still alive. To find out why, use: nix-store --query --roots",
                                self.store_dir().display(p)
                            )))
                        }
                        None => junk.push(p.base_name().to_string()),
                    }
                }
                // A path can only go if everything that keeps it goes too.
                loop {
                    let blocked: Vec<usize> = cand
                        .iter()
                        .copied()
                        .filter(|&i| {
                            let mut keepers = g.referrers[i].iter().copied().collect::<Vec<_>>();
                            if keep_derivations && g.paths[i].is_derivation() {
                                keepers.extend(
                                    g.outputs[i]
                                        .iter()
                                        .copied()
                                        .filter(|&o| g.deriver[o] == Some(i)),
                                );
                            }
                            if keep_outputs {
                                keepers.extend((0..n).filter(|&d| g.outputs[d].contains(&i)));
                            }
                            keepers.iter().any(|k| !cand.contains(k))
                        })
                        .collect();
                    if blocked.is_empty() {
                        break;
                    }
                    if let Some(&b) = blocked.iter().min_by_key(|&&b| &g.paths[b]) {
                        if wanted.contains(&g.paths[b]) {
                            return Err(StoreError::Other(format!(
                                "Cannot delete path '{}' since it is still alive. To find out why, use: nix-store --query --roots",
                                self.store_dir().display(&g.paths[b])
                            )));
                        }
                    }
                    for b in blocked {
                        cand.remove(&b);
                    }
                }
                dead.extend(cand);
            }
            _ => {
                dead.extend((0..n).filter(|&i| !live[i]));
                // Entries in the store directory that are not valid paths.
                let rd = std::fs::read_dir(&layout.real_store_dir)
                    .map_err(io_err("reading directory", &layout.real_store_dir))?;
                for e in rd.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if name == ".links" {
                        continue;
                    }
                    match StorePath::from_base_name(&name) {
                        Ok(p) if g.index.contains_key(&p) => {}
                        Ok(_) => junk.push(name),
                        // Not a store path name at all (leftovers of other tools).
                        Err(_) if deleting => junk.push(name),
                        Err(_) => {}
                    }
                }
            }
        }

        if opts.action == GcAction::ReturnLive {
            for (i, p) in g.paths.iter().enumerate() {
                if live[i] {
                    results.paths.insert(self.store_dir().display(p));
                }
            }
            return Ok(results);
        }

        // Referrers before references.
        let dead_set: BTreeSet<StorePath> = dead.iter().map(|&i| g.paths[i].clone()).collect();
        let order = crate::topo::topo_sort(&dead_set, |p| {
            g.index
                .get(p)
                .map(|&i| g.refs[i].iter().map(|&r| g.paths[r].clone()).collect())
                .unwrap_or_default()
        })
        .map_err(StoreError::Other)?;

        if opts.action == GcAction::ReturnDead {
            let s = shared.0.lock().unwrap_or_else(|e| e.into_inner());
            for p in &order {
                if !s.temp_roots.contains(p.hash_part()) {
                    results.paths.insert(self.store_dir().display(p));
                }
            }
            for name in &junk {
                let h = hash_part_of(name).unwrap_or_default();
                if !s.temp_roots.contains(&h) {
                    results
                        .paths
                        .insert(format!("{}/{}", self.store_dir(), name));
                }
            }
            return Ok(results);
        }

        // Delete, in batches, announcing each batch as pending so that a client that adds a
        // temporary root for one of them waits until it is gone (and then recreates it).
        let mut rescued: HashSet<usize> = HashSet::new();
        let mut limit_reached = false;
        for chunk in order.chunks(512) {
            if limit_reached {
                break;
            }
            let mut batch: Vec<StorePath> = Vec::new();
            {
                let (lock, _) = &*shared;
                let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
                for p in chunk {
                    let i = g.index[p];
                    if rescued.contains(&i) {
                        continue;
                    }
                    if s.temp_roots.contains(p.hash_part()) {
                        // Became a temporary root: keep it and its closure.
                        let mut st = vec![i];
                        while let Some(j) = st.pop() {
                            if rescued.insert(j) {
                                st.extend(g.refs[j].iter().copied());
                            }
                        }
                        continue;
                    }
                    s.pending.insert(p.hash_part().to_string());
                    batch.push(p.clone());
                }
            }
            let res = self.delete_batch(&batch, opts, &mut results);
            {
                let (lock, cv) = &*shared;
                let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
                s.pending.clear();
                cv.notify_all();
            }
            limit_reached = res?;
        }
        if !limit_reached {
            for name in junk {
                let h = hash_part_of(&name).unwrap_or_default();
                {
                    let (lock, _) = &*shared;
                    let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
                    if !h.is_empty() && s.temp_roots.contains(&h) {
                        continue;
                    }
                    // Our own in-progress staging directories are not junk.
                    if name.starts_with(&format!("add-{}-", std::process::id())) {
                        continue;
                    }
                    s.pending.insert(h.clone());
                }
                let real = layout.real_store_dir.join(&name);
                let freed = delete_path(&real);
                {
                    let (lock, cv) = &*shared;
                    let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
                    s.pending.clear();
                    cv.notify_all();
                }
                results.bytes_freed += freed?;
                results
                    .paths
                    .insert(format!("{}/{}", self.store_dir(), name));
                if results.bytes_freed > opts.max_freed {
                    break;
                }
            }
        }
        if deleting {
            self.delete_unused_links()?;
        }
        Ok(results)
    }

    /// Unregister then delete a batch of dead paths; returns whether `max_freed` was reached.
    fn delete_batch(
        &self,
        batch: &[StorePath],
        opts: &GcOptions,
        results: &mut GcResults,
    ) -> Result<bool> {
        if batch.is_empty() {
            return Ok(false);
        }
        self.db().invalidate(batch)?;
        for p in batch {
            let freed = delete_path(&self.real_path(p))?;
            results.bytes_freed += freed;
            results.paths.insert(self.store_dir().display(p));
            if results.bytes_freed > opts.max_freed {
                // The rest of the batch is already invalid: it is junk for the next GC, which
                // is what CppNix leaves too when it stops early.
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Remove files in `.links` that nothing else links to any more.
    fn delete_unused_links(&self) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        let dir = self.layout().links_dir.clone();
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err("opening directory", &dir)(e)),
        };
        for e in rd.flatten() {
            if let Ok(m) = e.path().symlink_metadata() {
                if m.nlink() == 1 {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        Ok(())
    }
}
