//! Files read and parsed ahead of their `import`, on a thread of their own.
//!
//! Nix code names the files it will import with path literals: a package set calls
//! `callPackage ./pkgs/foo.nix { }` for each of thousands of packages, NixOS lists every
//! module in `module-list.nix`. When the evaluator has imported a file, the path literals in
//! it are handed to [`Prefetcher::want`]. A worker thread reads each (a directory: its
//! `default.nix`; a file only if its name ends in `.nix`) and parses it apart from the
//! evaluator's symbols ([`firn_syntax::detach`]). When the evaluator imports one of them,
//! [`Prefetcher::take`] gives it the text and the tree, which the evaluator attaches to its
//! own symbols on its own thread: the result is the tree a parse at that moment would have
//! made. Anything the worker cannot do (a missing file, a parse error, a file not meant for
//! Nix) it leaves to the evaluator, which then reads and parses the file itself and reports
//! what it finds. A file is read once per evaluation either way (as Nix caches imports); it
//! may be read a little earlier than its `import` runs. One read more than [`STALE_AFTER`]
//! ago (in a long session such as the repl) is taken only if the file is unchanged since.
//!
//! The worker goes through the files in the order they were named; when the evaluator
//! reaches a file the worker has not got to, the worker turns to the files named next to it
//! first ([`State::follow`]), as evaluation tends to go on among neighbours.
//!
//! The worker stays within a budget, so an evaluation that imports few of the files it names
//! (one package of a large set) wastes little: the source parsed and not taken yet is kept
//! under [`WINDOW`] bytes plus the bytes the evaluation has imported so far.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use firn_syntax::detach::{parse_detached, Detached};
use firn_syntax::{Interner, Lints, Source};

use crate::positions::Offsets;

/// Bytes of source the worker may parse beyond what the evaluation has imported.
const WINDOW: usize = 4 << 20;

/// How many of the files wanted next to one the evaluator had to read itself the worker
/// turns to (see [`State::follow`]).
const FOLLOW: usize = 32;

/// How files are parsed: the parts of [`Source`] that are the evaluator's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseSettings {
    pub home: String,
    pub pipe_operators: bool,
    pub lints: Lints,
}

impl ParseSettings {
    /// Whether these are the settings `home`, `pipe_operators` and `lints`.
    pub fn is(&self, home: &str, pipe_operators: bool, lints: Lints) -> bool {
        (&*self.home, self.pipe_operators, self.lints) == (home, pipe_operators, lints)
    }
}

/// A file read and parsed by the worker.
pub struct Prefetched {
    /// The file read: the path asked for, or its `default.nix`.
    pub path: String,
    /// Its length, as [`firn_syntax::bytes::decode`] gives its text.
    pub len: usize,
    /// Its text, kept only when the parse has warnings to show (a text freed here is
    /// memory this thread reuses for the next file).
    pub text: Option<String>,
    pub tree: Detached,
    /// The path literals in it ([`firn_syntax::ast::path_literals`]), found here rather
    /// than on the evaluator's thread.
    pub paths: Vec<String>,
    /// The settings it was parsed with.
    pub settings: ParseSettings,
    /// The first of the span offsets the tree was moved to (taken for it from the
    /// evaluator's [`Offsets`]).
    pub base: u32,
    /// The text's hash ([`crate::positions::text_hash`]).
    pub hash: u64,
    /// When it was read, and what it was then (see [`Prefetched::still_current`]).
    read_at: std::time::Instant,
    stamp: Stamp,
}

/// What a file was when read: its modification time, size and inode.
#[derive(PartialEq)]
struct Stamp(Option<std::time::SystemTime>, u64, u64);

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp(meta.modified().ok(), meta.len(), meta.ino())
    }
}

/// How old a file read ahead may be before it is checked against the file on disk when
/// taken. A batch evaluation takes its files well within this; a long session (a repl)
/// may take a file read minutes ago, which must not stand for a file edited since.
const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

impl Prefetched {
    /// Whether the file is as it was read (checked only once it is [`STALE_AFTER`] old).
    fn still_current(&self) -> bool {
        self.read_at.elapsed() < STALE_AFTER
            || std::fs::metadata(&self.path).is_ok_and(|m| Stamp::of(&m) == self.stamp)
    }
}

/// Where a file wanted is. A path wanted once is never queued again.
enum Slot {
    Queued,
    Parsing,
    Ready(Box<Prefetched>),
    /// Taken, or left to the evaluator.
    Gone,
}

struct State {
    /// Every path wanted, in the order wanted.
    order: Vec<String>,
    /// Where the worker is in `order`.
    next: usize,
    /// Places in `order` the worker goes to before `next` ([`State::follow`]).
    ahead: VecDeque<usize>,
    /// The place in `order` of the last file the evaluator read itself.
    last_missed: Option<usize>,
    /// Each path wanted: its place in `order`, and where it is.
    slots: HashMap<String, (usize, Slot), foldhash::fast::RandomState>,
    settings: ParseSettings,
    /// Bytes of source parsed and not taken.
    waiting: usize,
    /// Bytes of source the evaluation has imported.
    imported: usize,
    stop: bool,
    /// Names the evaluator interned that the worker's mirror of its interner lacks yet,
    /// in the order of their symbols.
    names: Vec<Box<str>>,
    /// Whether the worker waits on [`Shared::work`], and the evaluator on
    /// [`Shared::done`]: each side wakes the other only then (a wake is a system call).
    worker_waits: bool,
    evaluator_waits: bool,
}

impl State {
    fn new(settings: ParseSettings) -> State {
        State {
            order: Vec::new(),
            next: 0,
            ahead: VecDeque::new(),
            last_missed: None,
            slots: HashMap::default(),
            settings,
            waiting: 0,
            imported: 0,
            stop: false,
            names: Vec::new(),
            worker_waits: false,
            evaluator_waits: false,
        }
    }

    /// Whether the worker has a file to parse within its budget.
    fn can_work(&self) -> bool {
        (self.next < self.order.len() || !self.ahead.is_empty())
            && self.waiting < WINDOW + self.imported
    }

    /// Where the file wanted at `path` is now.
    fn set(&mut self, path: &str, to: Slot) {
        if let Some((_, slot)) = self.slots.get_mut(path) {
            *slot = to;
        }
    }

    /// The next file for the worker, marked as being parsed: the first place in `ahead`,
    /// else the next in `order`, that is still queued.
    fn start_next(&mut self) -> Option<String> {
        loop {
            let at = match self.ahead.pop_front() {
                Some(at) => at,
                None if self.next < self.order.len() => {
                    self.next += 1;
                    self.next - 1
                }
                None => return None,
            };
            let path = &self.order[at];
            if let Some((_, slot @ Slot::Queued)) = self.slots.get_mut(path) {
                *slot = Slot::Parsing;
                return Some(path.clone());
            }
        }
    }

    /// The evaluator had to read the file at `at` in `order` itself: the worker had not
    /// got to it. Evaluation tends to go on to files named near the one it imports (the
    /// packages a package depends on are often its neighbours in the list that names
    /// them), and in the direction it has been going (down a chain of dependencies, or up
    /// a list): the worker turns to the next [`FOLLOW`] files that way, then goes on where
    /// it was.
    fn follow(&mut self, at: usize) {
        let (down, up) = match self.last_missed.replace(at) {
            Some(last) if last.abs_diff(at) <= FOLLOW => (at < last, at > last),
            _ => (true, true),
        };
        self.ahead.clear();
        for d in 1..=FOLLOW {
            let below = at.checked_sub(d).filter(|_| down);
            let above = Some(at + d).filter(|&i| up && i < self.order.len());
            for i in below.into_iter().chain(above) {
                if matches!(self.slots.get(&self.order[i]), Some((_, Slot::Queued))) {
                    self.ahead.push_back(i);
                }
            }
        }
    }
}

struct Shared {
    state: Mutex<State>,
    /// The evaluator's span offsets.
    offsets: Offsets,
    /// The worker waits here for work (or budget).
    work: Condvar,
    /// The evaluator waits here for a file being parsed.
    done: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic on the worker while it held the lock leaves the state as consistent as
        // any other moment (each change is one assignment): carry on.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The evaluator's side of the worker (started with the first file wanted).
pub struct Prefetcher {
    shared: Arc<Shared>,
    /// The settings files are parsed with from now on (the worker's copy is in the state).
    settings: ParseSettings,
    started: bool,
    /// How many of the evaluator's names the worker has been given.
    published: usize,
}

impl Prefetcher {
    /// A prefetcher for an evaluator whose span offsets are `offsets`.
    pub fn new(settings: ParseSettings, offsets: Offsets) -> Prefetcher {
        Prefetcher {
            shared: Arc::new(Shared {
                offsets,
                state: Mutex::new(State::new(settings.clone())),
                work: Condvar::new(),
                done: Condvar::new(),
            }),
            settings,
            started: false,
            published: 0,
        }
    }

    /// The settings files are parsed with.
    pub fn settings(&self) -> &ParseSettings {
        &self.settings
    }

    /// Parse the files wanted from now on with `settings`.
    pub fn set_settings(&mut self, settings: ParseSettings) {
        self.shared.lock().settings = settings.clone();
        self.settings = settings;
    }

    /// Ask for `paths` (absolute) to be read and parsed, in this order, after the
    /// evaluation imported a file of `imported` bytes that names them; the trees are made
    /// for `interner` (the evaluator's: the only one they may be attached to).
    pub fn want<'a>(
        &mut self,
        paths: impl IntoIterator<Item = &'a str>,
        imported: usize,
        interner: &Interner,
    ) {
        let mut st = self.shared.lock();
        st.imported += imported;
        let new = interner.names_from(self.published);
        st.names.extend(new.iter().cloned());
        self.published += new.len();
        for p in paths {
            if !st.slots.contains_key(p) {
                let at = st.order.len();
                st.slots.insert(p.to_string(), (at, Slot::Queued));
                st.order.push(p.to_string());
            }
        }
        if !self.started {
            if !st.can_work() {
                return;
            }
            drop(st);
            self.started = true;
            let shared = self.shared.clone();
            let spawned = std::thread::Builder::new()
                .name("firn-prefetch".into())
                .stack_size(firn_syntax::PARSE_STACK)
                .spawn(move || work(&shared));
            if spawned.is_err() {
                // No thread: the evaluator reads every file itself.
                self.shared.lock().stop = true;
            }
            return;
        }
        let wake = st.worker_waits && st.can_work();
        drop(st);
        if wake {
            self.shared.work.notify_one();
        }
    }

    /// The file `path` parsed, if the worker has it (waiting for it if the worker is on it
    /// now). `None` when it is not wanted, not done yet, or the worker left it; from then on
    /// the worker leaves it alone.
    pub fn take(&mut self, path: &str) -> Option<Box<Prefetched>> {
        if !self.started {
            return None;
        }
        let mut st = self.shared.lock();
        loop {
            let (at, slot) = st.slots.get_mut(path)?;
            let at = *at;
            match slot {
                Slot::Parsing => {
                    st.evaluator_waits = true;
                    st = self.shared.done.wait(st).unwrap_or_else(|p| p.into_inner());
                    st.evaluator_waits = false;
                }
                Slot::Ready(_) | Slot::Queued => {
                    let taken = std::mem::replace(slot, Slot::Gone);
                    let Slot::Ready(p) = taken else {
                        st.follow(at);
                        return None;
                    };
                    st.waiting -= p.len;
                    drop(st);
                    return p.still_current().then_some(p);
                }
                Slot::Gone => return None,
            }
        }
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        st.stop = true;
        let wake = st.worker_waits;
        drop(st);
        if wake {
            self.shared.work.notify_one();
        }
    }
}

/// The worker: files in the order wanted (or followed), within the budget, until told to
/// stop.
fn work(shared: &Shared) {
    // The evaluator's interner as far as it has been given (see `firn_syntax::detach`).
    let mut mirror = Interner::default();
    loop {
        let (path, settings) = {
            let mut st = shared.lock();
            loop {
                if st.stop {
                    return;
                }
                if st.can_work() {
                    if let Some(p) = st.start_next() {
                        for n in st.names.drain(..) {
                            mirror.intern(&n);
                        }
                        break (p, st.settings.clone());
                    }
                    continue;
                }
                st.worker_waits = true;
                st = shared.work.wait(st).unwrap_or_else(|p| p.into_inner());
                st.worker_waits = false;
            }
        };
        // A panic in the parser (a bug) must not leave the file `Parsing`, which the
        // evaluator would wait for forever: the files are left to the evaluator instead.
        let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            read_and_parse(&path, settings, &mut mirror, &shared.offsets)
        }));
        let Ok(done) = done else {
            // The mirror may hold the names of the file that failed: no more files.
            let mut st = shared.lock();
            st.set(&path, Slot::Gone);
            st.stop = true;
            let wake = st.evaluator_waits;
            drop(st);
            if wake {
                shared.done.notify_all();
            }
            return;
        };
        let mut st = shared.lock();
        match done {
            Some(p) => {
                st.waiting += p.len;
                st.set(&path, Slot::Ready(p));
            }
            None => st.set(&path, Slot::Gone),
        }
        let wake = st.evaluator_waits;
        drop(st);
        if wake {
            shared.done.notify_all();
        }
    }
}

/// `path` read and parsed as `import` would (a directory meaning its `default.nix`), if it
/// is a Nix file that parses.
fn read_and_parse(
    path: &str,
    settings: ParseSettings,
    mirror: &mut Interner,
    offsets: &Offsets,
) -> Option<Box<Prefetched>> {
    let read_at = std::time::Instant::now();
    let (file, f, meta) = open_nix_file(path)?;
    let stamp = Stamp::of(&meta);
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0) + 1);
    // Through `Take`, which reads into the capacity reserved (a `File` itself would ask
    // the kernel for its size and position again).
    std::io::Read::read_to_end(&mut std::io::Read::take(&f, u64::MAX), &mut bytes).ok()?;
    let text = firn_syntax::bytes::decode(bytes);
    let dir = std::path::Path::new(&file)
        .parent()
        .map(|d| d.to_string_lossy().into_owned())
        .unwrap_or_else(|| "/".into());
    let src = Source {
        origin: &file,
        base_dir: &dir,
        home: &settings.home,
        pipe_operators: settings.pipe_operators,
        lints: settings.lints,
    };
    let mut tree = parse_detached(&text, &src, mirror).ok()?;
    // The tree moved to its own range of offsets here, where it is in this core's cache.
    let base = offsets.reserve(text.len())?;
    tree.shift_spans(base);
    let hash = crate::positions::text_hash(&text);
    let paths = tree.path_literals().into_iter().map(String::from).collect();
    let len = text.len();
    let text = tree.has_warnings().then_some(text);
    Some(Box::new(Prefetched {
        path: file,
        len,
        text,
        tree,
        paths,
        settings,
        base,
        hash,
        read_at,
        stamp,
    }))
}

/// The file `import` of `path` reads, opened, with its metadata: `path` itself if its name
/// ends in `.nix`, or the `default.nix` of a directory; only a regular file, told apart by
/// a `stat` of the path before it is opened (opening a named pipe would wait for a writer,
/// and let one that waits go on to write to no reader). A `.nix` file costs a `stat` and an
/// open; the caller reads it without `std`'s `fstat` and `lseek` of `read_to_end`.
fn open_nix_file(path: &str) -> Option<(String, std::fs::File, std::fs::Metadata)> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = path.to_string();
    let mut meta = std::fs::metadata(&file).ok()?;
    if meta.is_dir() {
        file = format!("{}/default.nix", path.trim_end_matches('/'));
        meta = std::fs::metadata(&file).ok()?;
    } else if !path.ends_with(".nix") {
        return None;
    }
    if !meta.is_file() {
        return None;
    }
    // Without waiting all the same, should the file have become a pipe since.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&file)
        .ok()?;
    Some((file, f, meta))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::OpenOptionsExt;

    fn settings() -> ParseSettings {
        ParseSettings {
            home: "/home/u".into(),
            pipe_operators: false,
            lints: Lints::default(),
        }
    }

    /// A fresh directory of its own under the system's temporary one.
    fn temp_dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("firn-prefetch-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("temporary directory");
        d
    }

    /// Wait until the worker has nothing left it may do.
    fn settle(p: &Prefetcher) {
        for _ in 0..2000 {
            let st = p.shared.lock();
            let busy = st.slots.values().any(|(_, s)| matches!(s, Slot::Parsing));
            if !busy && !st.can_work() {
                return;
            }
            drop(st);
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        panic!("the worker did not settle");
    }

    #[test]
    fn files_named_are_parsed_ahead_and_the_rest_left_alone() {
        let d = temp_dir("files");
        let w = |name: &str, text: &str| std::fs::write(d.join(name), text).expect("write");
        w("a.nix", "{ x = 1; }");
        std::fs::create_dir_all(d.join("sub")).expect("mkdir");
        w("sub/default.nix", "y: y");
        w("data.txt", "not nix");
        w("bad.nix", "{ x = ; }");
        std::fs::create_dir_all(d.join("dir.nix")).expect("mkdir");
        std::fs::create_dir_all(d.join("pkg.nix")).expect("mkdir");
        w("pkg.nix/default.nix", "z: z");
        let fifo = std::ffi::CString::new(d.join("fifo.nix").to_string_lossy().as_bytes())
            .expect("no NUL");
        // SAFETY: a NUL-terminated path; mkfifo only creates the file.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0, "mkfifo");
        // A writer waiting for a reader of the pipe: the worker must not open it (that
        // would let the writer go on, to write to no reader).
        let writer_open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (fifo, flag) = (d.join("fifo.nix"), writer_open.clone());
            std::thread::spawn(move || {
                let w = std::fs::OpenOptions::new().write(true).open(fifo);
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
                drop(w);
            })
        };
        std::fs::create_dir_all(d.join("empty")).expect("mkdir");
        let path = |name: &str| d.join(name).to_string_lossy().into_owned();
        let names = [
            "a.nix",
            "sub",
            "pkg.nix",
            "data.txt",
            "bad.nix",
            "empty",
            "missing.nix",
            "fifo.nix",
            "dir.nix",
        ];
        let paths: Vec<String> = names.iter().map(|n| path(n)).collect();
        let mut p = Prefetcher::new(settings(), Offsets::default());
        assert!(p.take(&paths[0]).is_none(), "nothing wanted yet");
        p.want(paths.iter().map(|s| s.as_str()), 0, &Interner::default());
        settle(&p);
        let a = p.take(&paths[0]).expect("a.nix parsed ahead");
        assert_eq!(
            (a.path.as_str(), a.len),
            (paths[0].as_str(), "{ x = 1; }".len())
        );
        let sub = p.take(&paths[1]).expect("sub/default.nix parsed ahead");
        assert_eq!(sub.path, path("sub/default.nix"));
        // A directory whose name ends in `.nix` means its `default.nix` too.
        let pkg = p.take(&paths[2]).expect("pkg.nix/default.nix parsed ahead");
        assert_eq!(pkg.path, path("pkg.nix/default.nix"));
        // Not Nix, not parsing, no default.nix, missing, not a regular file: left to the
        // evaluator.
        for q in &paths[3..] {
            assert!(p.take(q).is_none(), "{q}");
        }
        // Let the writer go (a reader opens), after noting whether it went already.
        std::thread::sleep(std::time::Duration::from_millis(50));
        let writer_went = writer_open.load(std::sync::atomic::Ordering::SeqCst);
        let reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(d.join("fifo.nix"));
        writer.join().expect("writer thread");
        drop(reader);
        assert!(!writer_went, "the worker opened the named pipe");
        // A file is given out once.
        assert!(p.take(&paths[0]).is_none());
        // The tree attaches.
        let mut interner = firn_syntax::Interner::default();
        let parsed = a.tree.attach(&mut interner).expect("attaches");
        assert!(matches!(parsed.expr.kind, firn_syntax::ExprKind::Attrs(_)));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_file_read_long_ago_is_taken_only_if_unchanged() {
        let d = temp_dir("stale");
        let (a, b) = (d.join("a.nix"), d.join("b.nix"));
        std::fs::write(&a, "1").expect("write");
        std::fs::write(&b, "2").expect("write");
        let paths = [a.to_string_lossy(), b.to_string_lossy()];
        let mut p = Prefetcher::new(settings(), Offsets::default());
        p.want(paths.iter().map(|s| &**s), 0, &Interner::default());
        settle(&p);
        std::thread::sleep(STALE_AFTER + std::time::Duration::from_millis(100));
        std::fs::write(&a, "11").expect("write");
        assert!(
            p.take(&paths[0]).is_none(),
            "a.nix changed after it was read"
        );
        assert_eq!(p.take(&paths[1]).expect("b.nix is unchanged").len, 1);
        let _ = std::fs::remove_dir_all(&d);
    }

    /// The text is kept only for a parse with warnings to show.
    #[test]
    fn texts_are_kept_for_warnings_only() {
        let d = temp_dir("warnings");
        let f = d.join("u.nix");
        std::fs::write(&f, "http://example.org/x").expect("write");
        let path = f.to_string_lossy().into_owned();
        let mut warn = settings();
        warn.lints.url_literals = firn_syntax::Diagnose::Warn;
        for (s, kept) in [(settings(), false), (warn, true)] {
            let mut p = Prefetcher::new(s.clone(), Offsets::default());
            p.want([path.as_str()], 0, &Interner::default());
            settle(&p);
            let got = p.take(&path).expect("parsed ahead");
            assert_eq!(got.len, 20);
            assert_eq!(got.text.is_some(), kept);
        }
        let _ = std::fs::remove_dir_all(&d);
    }

    /// A file the evaluator had to read itself turns the worker to the files named next to
    /// it: on both sides after a jump, then on the side the evaluator is going.
    #[test]
    fn the_worker_follows_the_evaluator_after_a_miss() {
        let mut st = State::new(settings());
        for i in 0..200 {
            let p = format!("/p/{i}.nix");
            st.slots.insert(p.clone(), (i, Slot::Queued));
            st.order.push(p);
        }
        // The worker starts at the beginning.
        assert_eq!(st.start_next().as_deref(), Some("/p/0.nix"));
        // The evaluator reads 100 itself (a jump): the files around it come first, the
        // nearest first, then the worker goes on where it was.
        st.set("/p/100.nix", Slot::Gone);
        st.follow(100);
        assert_eq!(st.ahead.len(), 2 * FOLLOW);
        let next: Vec<String> = (0..4).filter_map(|_| st.start_next()).collect();
        assert_eq!(next, ["/p/99.nix", "/p/101.nix", "/p/98.nix", "/p/102.nix"]);
        // Then 97 (going down): the files below it, and not those parsed or gone.
        st.set("/p/97.nix", Slot::Gone);
        st.set("/p/95.nix", Slot::Gone);
        st.follow(97);
        let below: Vec<usize> = st.ahead.iter().copied().collect();
        let want: Vec<usize> = (97 - FOLLOW..97).rev().filter(|&i| i != 95).collect();
        assert_eq!(below, want);
        // Going up from 150 (far from 97: both sides again), then 152: above only.
        st.follow(150);
        st.follow(152);
        let above: Vec<usize> = st.ahead.iter().copied().collect();
        assert_eq!(above, (153..153 + FOLLOW).collect::<Vec<_>>());
        // Past the end of the list there is nothing to follow.
        st.follow(198);
        st.follow(199);
        assert!(st.ahead.is_empty());
        // Once the files followed are done, the worker goes on from where it was.
        while st.ahead.front().is_some() {
            st.start_next();
        }
        assert_eq!(st.start_next().as_deref(), Some("/p/1.nix"));
    }

    #[test]
    fn the_worker_keeps_within_its_budget() {
        let d = temp_dir("budget");
        // Three files of 3/4 of the window each: two fit before anything is imported.
        let big = format!("\"{}\"", "x".repeat(WINDOW * 3 / 4));
        let paths: Vec<String> = (0..3)
            .map(|i| {
                let f = d.join(format!("f{i}.nix"));
                std::fs::write(&f, &big).expect("write");
                f.to_string_lossy().into_owned()
            })
            .collect();
        let mut p = Prefetcher::new(settings(), Offsets::default());
        p.want(paths.iter().map(|s| s.as_str()), 0, &Interner::default());
        settle(&p);
        let ready = |p: &Prefetcher| {
            let st = p.shared.lock();
            st.slots
                .values()
                .filter(|(_, s)| matches!(s, Slot::Ready(_)))
                .count()
        };
        assert_eq!(ready(&p), 2);
        // Taking one makes room for the third.
        assert!(p.take(&paths[0]).is_some());
        p.want([], 0, &Interner::default());
        settle(&p);
        assert_eq!(ready(&p), 2);
        assert!(p.take(&paths[2]).is_some());
        let _ = std::fs::remove_dir_all(&d);
    }
}
