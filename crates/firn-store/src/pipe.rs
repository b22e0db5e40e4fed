//! A two-thread pipeline for hashing: one thread produces bytes (walking a tree, reading files,
//! framing the NAR) while the caller's thread hashes them. SHA-256 of one stream cannot be split,
//! but the IO and the hashing can overlap, which is most of the time either of them takes.
//!
//! The producer fills fixed buffers (chunks) in place, files included (it reads them straight
//! into a chunk's free space, [`ChunkWriter::spare`]), and ships them full; the hashing thread
//! hands them back empty. The chunks are cut from one mapping made up front, as the producer
//! first needs them, so nothing is allocated per chunk. A thread waiting for the other spins
//! briefly before it sleeps ([`SPIN`]): most waits are shorter than a sleep and its wakeup.
//!
//! The two sides share the rest of the work as each has time for it: a chunk can carry [`Op`]s
//! for the hashing thread (whole files to read and hash at their place in the stream, bytes to
//! write to a copy, copies to finish, descriptors to close). The producer hands work over only
//! while the hashing thread is short of it ([`ChunkWriter::hand_over`]: fewer than two chunks
//! waiting, a chunk being shipped once its bytes and the work it carries make a chunk's worth)
//! and does it itself otherwise, so whichever side would be the bottleneck sheds work to the
//! other. The work queued is bounded in the whole process, as it holds descriptors open.

use std::fs;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, OnceLock};

use firn_format::{Hash, HashAlgo, Hasher};

use crate::nar_fs::place::Place;
use crate::nar_fs::sink::GivenFile;
use crate::nar_fs::NarFsError;

/// Size of one chunk: small enough that the chunks in flight stay in the shared cache between
/// the two cores, large enough that handing one over costs nothing next to hashing it.
const CHUNK: usize = 256 << 10;
/// Full chunks that may wait for the hashing thread: enough to let the producer go on while
/// the hashing thread reads a large file it was given, and to run ahead through large files
/// (where reading is faster than hashing) the lead it loses again in stretches of small ones.
/// 64 MiB in all, touched only as far as the producer gets ahead: on /usr/share (2 cores) the
/// producer never waits for an empty chunk; with 64 chunks it waited ~70 ms in all, and
/// nix-hash was ~8% slower (best of 12-20 alternated runs, ~400 against ~370 ms); 16 chunks
/// were 5% slower than 64.
const IN_FLIGHT: usize = 256;
/// Chunks in all: those in flight, the one being hashed, the one being filled. No more are
/// made: a producer that is ahead waits for an empty one (allocating instead would have the
/// allocator hand fresh pages to be zeroed for every chunk, and free them again).
const CHUNKS: usize = IN_FLIGHT + 2;
/// A chunk holding this much (bytes and work) is shipped before it is full when the hashing
/// thread has nothing left: where the tree yields few bytes (many directories, symlinks, small
/// files), a full chunk would keep it waiting for long.
const EAGER: u64 = 32 << 10;
/// The hashing thread counts as short of work while the chunks waiting for it hold less than
/// this (bytes to hash, and to read or write for the work they carry).
const IDLE_BELOW: u64 = 1 << 20;
/// Most work items queued for hashing threads at once, in the whole process (pipelines may run
/// side by side): each holds up to two descriptors open until it runs, which must stay well
/// below what a process may have open (see [`ops_budget`]).
const MAX_OPS_QUEUED: usize = 256;

/// Work items queued, in all pipelines.
static OPS_QUEUED: AtomicUsize = AtomicUsize::new(0);

/// How many work items may be queued: [`MAX_OPS_QUEUED`], or less where the process may open
/// few descriptors (two per item, and a margin for everything else).
fn ops_budget() -> usize {
    static BUDGET: OnceLock<usize> = OnceLock::new();
    *BUDGET.get_or_init(|| {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(u64::MAX);
        (limit.saturating_sub(256) / 2).min(MAX_OPS_QUEUED as u64) as usize
    })
}

/// A file being copied whose contents the hashing thread may write.
pub(crate) struct CopyFile {
    pub(crate) file: fs::File,
    /// Where it is, for messages.
    pub(crate) place: Place,
}

impl CopyFile {
    /// Write `bytes` at `offset`.
    pub(crate) fn write_at(&self, bytes: &[u8], offset: u64) -> Result<(), NarFsError> {
        self.file
            .write_all_at(bytes, offset)
            .map_err(|e| crate::nar_fs::io_err("writing file", &self.place.path())(e))
    }

    /// All bytes are written: give it the store's modification time.
    pub(crate) fn finish(&self) -> Result<(), NarFsError> {
        rustix::fs::futimens(&self.file, &crate::nar_fs::store_times())
            .map_err(|e| crate::nar_fs::io_err("setting the time of", &self.place.path())(e.into()))
    }
}

/// Work for the hashing thread, run in order as it hashes the chunk the work came with.
// `Hash` (a file's name held inline) is the large variant and the most common one: boxing it
// would allocate for every file, which the inline name is there to avoid.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Op {
    /// Write bytes `start..end` of the chunk to a copy, at `offset`; with `finish`, the copy is
    /// complete after that (as with [`Op::Finish`]).
    Write {
        to: Arc<CopyFile>,
        start: usize,
        end: usize,
        offset: u64,
        finish: bool,
    },
    /// The copy is complete: give it the store's modification time (it is closed when the last
    /// reference goes).
    Finish(Arc<CopyFile>),
    /// Close a descriptor.
    Close(OwnedFd),
    /// Read and hash a whole file, and copy it: its bytes come after the chunk's first `at`.
    Hash { file: GivenFile, at: usize },
}

impl Op {
    fn run(self, chunk: &[u8], h: &mut Hasher, buf: &mut Vec<u8>) -> Result<(), NarFsError> {
        match self {
            Op::Hash { file, .. } => crate::nar_fs::hash_given_file(h, buf, file),
            Op::Write {
                to,
                start,
                end,
                offset,
                finish,
            } => {
                to.write_at(&chunk[start..end], offset)?;
                if finish {
                    to.finish()?;
                }
                Ok(())
            }
            Op::Finish(to) => to.finish(),
            Op::Close(fd) => {
                drop(fd);
                Ok(())
            }
        }
    }
}

/// A buffer, how much of it is filled, and the work that follows hashing it.
struct Chunk<'r> {
    buf: &'r mut [u8],
    len: usize,
    ops: Vec<Op>,
    /// The work its ops give the hashing thread, in bytes (read or written) like `len`: a chunk
    /// whose bytes and work make a chunk's worth is shipped, so that the chunks waiting measure
    /// the hashing thread's backlog.
    work: u64,
}

impl<'r> Chunk<'r> {
    fn new(buf: &'r mut [u8]) -> Chunk<'r> {
        Chunk {
            buf,
            len: 0,
            ops: Vec::new(),
            work: 0,
        }
    }
}

/// The memory of all the chunks, in one anonymous mapping: the chunks are cut from it as the
/// producer needs them, so memory no chunk was cut from is never touched (nor given pages by
/// the kernel); and, unlike memory from the allocator, it is never zeroed by hand. Past its
/// first huge page it is marked for transparent huge pages: a producer running ahead through
/// large files would otherwise take 64 page faults a chunk; small trees never get that far.
struct Ring {
    map: *mut u8,
    map_len: usize,
    /// Where the chunks start in the mapping: aligned to a huge page.
    start: usize,
    chunks: usize,
}

/// The size of a transparent huge page on x86-64 and aarch64 (with 4 KiB pages).
const HUGE_PAGE: usize = 2 << 20;

impl Ring {
    fn new(chunks: usize) -> Ring {
        let len = chunks * CHUNK;
        // Room to align the chunks to a huge page.
        let map_len = len + HUGE_PAGE;
        // SAFETY: a new private anonymous mapping, owned by the ring and unmapped on drop.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            // As for any allocation that fails.
            std::alloc::handle_alloc_error(
                std::alloc::Layout::from_size_align(map_len, HUGE_PAGE)
                    .expect("a valid size and alignment"),
            );
        }
        let map = map.cast::<u8>();
        let start = map.align_offset(HUGE_PAGE).min(HUGE_PAGE);
        if len > HUGE_PAGE {
            // SAFETY: inside the mapping (start + len <= map_len); the advice does not change
            // the contents. A failure (no THP) only leaves small pages.
            unsafe {
                libc::madvise(
                    map.add(start + HUGE_PAGE).cast(),
                    len - HUGE_PAGE,
                    libc::MADV_HUGEPAGE,
                );
            }
        }
        Ring {
            map,
            map_len,
            start,
            chunks,
        }
    }

    /// The chunks' buffers, in order.
    fn buffers(&mut self) -> impl Iterator<Item = &mut [u8]> + Send {
        // SAFETY: `chunks * CHUNK` bytes from `start` lie inside the mapping, which is readable,
        // writable and initialised (zero pages), and borrowed mutably from the ring as long as
        // the slice lives.
        let all = unsafe {
            std::slice::from_raw_parts_mut(self.map.add(self.start), self.chunks * CHUNK)
        };
        all.chunks_exact_mut(CHUNK)
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `Ring::new`; nothing borrows it any more.
        unsafe {
            libc::munmap(self.map.cast(), self.map_len);
        }
    }
}

/// When the producer hands work to the hashing thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) enum HandOver {
    /// While the hashing thread waits for chunks.
    Adaptive,
    /// Whenever it can (for tests: every path taken).
    Always,
    /// Never (for tests).
    Never,
}

/// What both threads see.
struct Shared {
    /// The bytes and work of the chunks sent and not yet hashed (with their work done).
    waiting: AtomicU64,
    /// The hashing thread failed: the producer should stop.
    failed: AtomicBool,
}

/// The producer's end: a `Write` that ships full chunks to the hashing thread.
pub struct ChunkWriter<'r> {
    cur: Chunk<'r>,
    /// Buffers no chunk was made of yet.
    unused: Box<dyn Iterator<Item = &'r mut [u8]> + Send + 'r>,
    full: SyncSender<Chunk<'r>>,
    empty: Receiver<Chunk<'r>>,
    shared: Arc<Shared>,
    policy: HandOver,
}

fn stopped() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the hashing thread stopped")
}

impl ChunkWriter<'_> {
    fn ship(&mut self) -> io::Result<()> {
        if self.cur.len == 0 && self.cur.ops.is_empty() {
            return Ok(());
        }
        if self.shared.failed.load(Ordering::Relaxed) {
            return Err(stopped());
        }
        let next = match self.empty.try_recv() {
            Ok(c) => c,
            Err(_) => match self.unused.next() {
                Some(buf) => Chunk::new(buf),
                None => recv_spinning(&self.empty).ok_or_else(stopped)?,
            },
        };
        let full = std::mem::replace(&mut self.cur, next);
        self.shared
            .waiting
            .fetch_add(full.len as u64 + full.work, Ordering::Relaxed);
        self.full.send(full).map_err(|unsent| {
            OPS_QUEUED.fetch_sub(unsent.0.ops.len(), Ordering::Relaxed);
            stopped()
        })
    }

    /// The free space of the current chunk, never empty (a full chunk, one carrying a chunk's
    /// worth of work, or one worth shipping early ([`EAGER`]), is shipped first). Bytes put
    /// there count once [`ChunkWriter::commit`]ted.
    pub(crate) fn spare(&mut self) -> io::Result<&mut [u8]> {
        let filled = self.cur.len as u64 + self.cur.work;
        if filled >= CHUNK as u64
            || (filled >= EAGER && self.shared.waiting.load(Ordering::Relaxed) == 0)
        {
            self.ship()?;
        }
        Ok(&mut self.cur.buf[self.cur.len..])
    }

    /// Count `n` more bytes of the free space as written.
    pub(crate) fn commit(&mut self, n: usize) {
        self.cur.len = (self.cur.len + n).min(CHUNK);
    }

    /// Whether to hand work to the hashing thread now: it is short of work (so that work given
    /// to it costs the producer nothing in waiting), and not too much is queued already.
    pub(crate) fn hand_over(&self) -> bool {
        let idle = match self.policy {
            HandOver::Adaptive => self.shared.waiting.load(Ordering::Relaxed) < IDLE_BELOW,
            HandOver::Always => true,
            HandOver::Never => false,
        };
        idle && OPS_QUEUED.load(Ordering::Relaxed) < ops_budget()
    }

    /// The last `n` bytes written (of the current chunk).
    pub(crate) fn last(&self, n: usize) -> &[u8] {
        &self.cur.buf[self.cur.len - n..self.cur.len]
    }

    /// Have the last `n` bytes written (of the current chunk) also written to `to` at
    /// `offset`, by the hashing thread.
    pub(crate) fn copy_last(&mut self, to: &Arc<CopyFile>, n: usize, offset: u64) {
        if n > 0 {
            self.cur.work += n as u64;
            self.push_op(Op::Write {
                to: to.clone(),
                start: self.cur.len - n,
                end: self.cur.len,
                offset,
                finish: false,
            });
        }
    }

    /// Have the hashing thread finish the copy `to` after the writes to it queued so far.
    pub(crate) fn finish_last(&mut self, to: Arc<CopyFile>) {
        // Most often the last write queued is this file's: it finishes the copy too.
        if let Some(Op::Write {
            to: last, finish, ..
        }) = self.cur.ops.last_mut()
        {
            if Arc::ptr_eq(last, &to) {
                *finish = true;
                return;
            }
        }
        self.push_op(Op::Finish(to));
    }

    /// Have the hashing thread run `op` once it has hashed everything written so far.
    pub(crate) fn push_op(&mut self, op: Op) {
        OPS_QUEUED.fetch_add(1, Ordering::Relaxed);
        self.cur.ops.push(op);
    }

    /// Have the hashing thread read, hash (after everything written so far) and copy a whole
    /// file.
    pub(crate) fn give_file(&mut self, file: GivenFile) {
        let at = self.cur.len;
        self.cur.work += file.size;
        self.push_op(Op::Hash { file, at });
    }
}

impl Drop for ChunkWriter<'_> {
    fn drop(&mut self) {
        // Work never shipped (the producer stopped early) is not queued any more.
        OPS_QUEUED.fetch_sub(self.cur.ops.len(), Ordering::Relaxed);
    }
}

impl Write for ChunkWriter<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = self.spare()?;
        let n = data.len().min(room.len());
        room[..n].copy_from_slice(&data[..n]);
        self.cur.len += n;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.ship()
    }
}

/// How long a thread waiting for the other spins before it sleeps: a sleep and the wakeup
/// that ends it cost both threads system calls (and, in a VM, an interrupt between cores),
/// while the other thread most often has the chunk ready within a few microseconds.
const SPIN: std::time::Duration = std::time::Duration::from_micros(50);

/// The next item from `rx`, spinning for up to [`SPIN`] before sleeping; `None` once the other
/// end is gone.
fn recv_spinning<T>(rx: &Receiver<T>) -> Option<T> {
    let start = std::time::Instant::now();
    loop {
        for _ in 0..32 {
            match rx.try_recv() {
                Ok(x) => return Some(x),
                Err(TryRecvError::Disconnected) => return None,
                Err(TryRecvError::Empty) => std::hint::spin_loop(),
            }
        }
        if start.elapsed() >= SPIN {
            return rx.recv().ok();
        }
    }
}

/// Run `produce` on a second thread, writing into a [`ChunkWriter`], and hash everything it
/// writes on this thread (running the [`Op`]s it hands over). Returns the producer's result
/// with the hash and byte count; an op that failed comes first.
pub fn hash_produced<T: Send, E: Send + From<NarFsError>>(
    algo: HashAlgo,
    produce: impl FnOnce(&mut ChunkWriter<'_>) -> Result<T, E> + Send,
) -> Result<(T, Hash, u64), E> {
    hash_produced_with(algo, HandOver::Adaptive, produce)
}

/// [`hash_produced`], handing work over as `policy` says.
pub(crate) fn hash_produced_with<T: Send, E: Send + From<NarFsError>>(
    algo: HashAlgo,
    policy: HandOver,
    produce: impl FnOnce(&mut ChunkWriter<'_>) -> Result<T, E> + Send,
) -> Result<(T, Hash, u64), E> {
    // Before the channels: the chunks in them borrow it.
    let mut ring = Ring::new(CHUNKS);
    let mut unused = ring.buffers();
    let (full_tx, full_rx) = sync_channel::<Chunk>(IN_FLIGHT);
    let (empty_tx, empty_rx) = sync_channel::<Chunk>(CHUNKS);
    let first = unused.next().expect("a ring has chunks");
    let shared = Arc::new(Shared {
        waiting: AtomicU64::new(0),
        failed: AtomicBool::new(false),
    });
    let producer_shared = shared.clone();
    std::thread::scope(|scope| {
        let producer = scope.spawn(move || {
            let mut w = ChunkWriter {
                cur: Chunk::new(first),
                unused: Box::new(unused),
                full: full_tx,
                empty: empty_rx,
                shared: producer_shared,
                policy,
            };
            let r = produce(&mut w);
            let flushed = w.flush();
            (r, flushed)
        });
        let mut h = Hasher::new(algo);
        // For files given whole ([`Op::Hash`]).
        let mut buf = Vec::new();
        let mut failed: Option<NarFsError> = None;
        while let Some(mut chunk) = recv_spinning(&full_rx) {
            // Hashed up to here: a whole file given comes in at its place.
            let mut hashed = 0;
            let ops = chunk.ops.len();
            for op in chunk.ops.drain(..) {
                if let Op::Hash { at, .. } = op {
                    h.update(&chunk.buf[hashed..at]);
                    hashed = at;
                }
                if failed.is_none() {
                    if let Err(e) = op.run(&chunk.buf[..chunk.len], &mut h, &mut buf) {
                        failed = Some(e);
                        shared.failed.store(true, Ordering::Relaxed);
                    }
                }
            }
            h.update(&chunk.buf[hashed..chunk.len]);
            let size = chunk.len as u64 + chunk.work;
            chunk.len = 0;
            chunk.work = 0;
            // Counted out once run, and their descriptors closed.
            OPS_QUEUED.fetch_sub(ops, Ordering::Relaxed);
            shared.waiting.fetch_sub(size, Ordering::Relaxed);
            let _ = empty_tx.try_send(chunk);
        }
        let (r, flushed) = match producer.join() {
            Ok(x) => x,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        if let Some(e) = failed {
            return Err(e.into());
        }
        let v = r?;
        // A flush failure can only mean this thread stopped receiving, which it did not.
        debug_assert!(flushed.is_ok());
        let n = h.len();
        Ok((v, h.finish(), n))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn io(e: io::Error) -> NarFsError {
        crate::nar_fs::io_err("test", Path::new("t"))(e)
    }

    #[test]
    fn hashes_what_was_written() {
        let data: Vec<u8> = (0..3 * CHUNK + 17).map(|i| (i % 253) as u8).collect();
        let (_, h, n) =
            hash_produced::<(), NarFsError>(HashAlgo::Sha256, |w| w.write_all(&data).map_err(io))
                .unwrap();
        assert_eq!(n, data.len() as u64);
        assert_eq!(h, Hash::digest(HashAlgo::Sha256, &data));
    }

    /// More bytes than all the chunks of the ring hold, in writes of odd sizes: chunks
    /// come back empty and are filled again, and the hash is still the stream's.
    #[test]
    fn chunks_are_reused_past_the_ring() {
        let piece: Vec<u8> = (0..CHUNK / 3 + 11).map(|i| (i % 251) as u8).collect();
        let rounds = 2 * CHUNKS * CHUNK / piece.len() + 7;
        let mut expected = Hasher::new(HashAlgo::Sha256);
        for _ in 0..rounds {
            expected.update(&piece);
        }
        let (_, h, n) = hash_produced::<(), NarFsError>(HashAlgo::Sha256, |w| {
            for _ in 0..rounds {
                w.write_all(&piece).map_err(io)?;
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(n, (rounds * piece.len()) as u64);
        assert_eq!(h, expected.finish());
    }

    #[test]
    fn bytes_put_in_place_count_once_committed_and_copies_get_them() {
        let d = tempfile::tempdir().unwrap();
        let copy_path = d.path().join("copy");
        let data: Vec<u8> = (0..2 * CHUNK + 5).map(|i| (i % 241) as u8).collect();
        let (_, h, n) = hash_produced::<(), NarFsError>(HashAlgo::Sha256, |w| {
            let to = Arc::new(CopyFile {
                file: fs::File::create(&copy_path).map_err(io)?,
                place: Place::at(&Arc::from(copy_path.as_path())),
            });
            w.write_all(&data[..3]).map_err(io)?;
            let mut rest = &data[3..];
            let mut offset = 0;
            while !rest.is_empty() {
                let room = w.spare().map_err(io)?;
                let k = room.len().min(rest.len()).min(100_000);
                room[..k].copy_from_slice(&rest[..k]);
                // Bytes left in the free space without a commit do not count.
                if k < room.len() {
                    room[k] = 0xff;
                }
                w.commit(k);
                assert_eq!(w.last(k), &rest[..k]);
                w.copy_last(&to, k, offset);
                offset += k as u64;
                rest = &rest[k..];
            }
            w.push_op(Op::Finish(to));
            Ok(())
        })
        .unwrap();
        assert_eq!(n, data.len() as u64);
        assert_eq!(h, Hash::digest(HashAlgo::Sha256, &data));
        assert_eq!(fs::read(&copy_path).unwrap(), &data[3..]);
        use std::os::unix::fs::MetadataExt;
        assert_eq!(fs::metadata(&copy_path).unwrap().mtime(), 1);
    }

    #[test]
    fn producer_errors_come_back() {
        let r = hash_produced::<(), NarFsError>(HashAlgo::Sha256, |_| {
            Err(NarFsError::Changed("f".into()))
        });
        assert!(matches!(r, Err(NarFsError::Changed(_))));
    }

    #[test]
    fn op_errors_come_back_and_stop_the_producer() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("ro");
        fs::write(&p, b"x").unwrap();
        // Opened for reading only: writing to it fails on the hashing thread.
        let to = Arc::new(CopyFile {
            file: fs::File::open(&p).unwrap(),
            place: Place::at(&Arc::from(p.as_path())),
        });
        let r = hash_produced::<(), NarFsError>(HashAlgo::Sha256, |w| {
            w.write_all(b"abc").map_err(io)?;
            w.copy_last(&to, 3, 0);
            // Keep writing until the producer is told to stop.
            loop {
                w.write_all(&[0u8; 4096]).map_err(io)?;
            }
        });
        match r {
            Err(NarFsError::Io { op, path, .. }) => {
                assert_eq!(op, "writing file");
                assert_eq!(path, p);
            }
            other => panic!("{:?}", other.map(|_| ())),
        }
    }
}
