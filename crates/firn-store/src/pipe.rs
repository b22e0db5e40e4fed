//! A two-thread pipeline for hashing: one thread produces bytes (walking a tree, reading files,
//! framing the NAR) while the caller's thread hashes them. SHA-256 of one stream cannot be split,
//! but the IO and the hashing can overlap, which is most of the time either of them takes.

use std::io::{self, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use firn_format::{Hash, HashAlgo, Hasher};

const CHUNK: usize = 1 << 20;
const IN_FLIGHT: usize = 4;

/// The producer's end: a `Write` that ships full buffers to the hashing thread.
pub struct ChunkWriter {
    buf: Vec<u8>,
    full: SyncSender<Vec<u8>>,
    empty: Receiver<Vec<u8>>,
}

impl ChunkWriter {
    fn ship(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let next = self
            .empty
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(CHUNK));
        let full = std::mem::replace(&mut self.buf, next);
        self.full
            .send(full)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the hashing thread stopped"))
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.ship()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.ship()
    }
}

/// Run `produce` on a second thread, writing into a [`ChunkWriter`], and hash everything it
/// writes on this thread. Returns the producer's result with the hash and byte count.
pub fn hash_produced<T: Send, E: Send>(
    algo: HashAlgo,
    produce: impl FnOnce(&mut ChunkWriter) -> Result<T, E> + Send,
) -> Result<(T, Hash, u64), E> {
    let (full_tx, full_rx) = sync_channel::<Vec<u8>>(IN_FLIGHT);
    let (empty_tx, empty_rx) = sync_channel::<Vec<u8>>(IN_FLIGHT + 2);
    std::thread::scope(|scope| {
        let producer = scope.spawn(move || {
            let mut w = ChunkWriter {
                buf: Vec::with_capacity(CHUNK),
                full: full_tx,
                empty: empty_rx,
            };
            let r = produce(&mut w);
            let flushed = w.flush();
            (r, flushed)
        });
        let mut h = Hasher::new(algo);
        for mut chunk in full_rx {
            h.update(&chunk);
            chunk.clear();
            let _ = empty_tx.try_send(chunk);
        }
        let (r, flushed) = match producer.join() {
            Ok(x) => x,
            Err(panic) => std::panic::resume_unwind(panic),
        };
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

    #[test]
    fn hashes_what_was_written() {
        let data: Vec<u8> = (0..3 * CHUNK + 17).map(|i| (i % 253) as u8).collect();
        let (_, h, n) =
            hash_produced::<(), io::Error>(HashAlgo::Sha256, |w| w.write_all(&data)).unwrap();
        assert_eq!(n, data.len() as u64);
        assert_eq!(h, Hash::digest(HashAlgo::Sha256, &data));
    }

    #[test]
    fn producer_errors_come_back() {
        let r = hash_produced::<(), &str>(HashAlgo::Sha256, |_| Err("boom"));
        assert!(matches!(r, Err("boom")));
    }
}
