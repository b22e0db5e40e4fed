//! Streaming response bodies. A producer (dumping a NAR, compressing, decompressing a log) runs
//! on a blocking thread and writes into a [`ChunkWriter`], which hands ~64 KiB chunks to the
//! response through a bounded channel: memory per response stays at a few chunks, and a slow
//! client slows the producer down. When the client goes away (or reads nothing for
//! [`SEND_TIMEOUT`]) the next write fails and the producer stops.
//!
//! Producers are threads of tokio's blocking pool; at most [`MAX_PRODUCERS`] run at once, so
//! that thousands of downloads never take every thread from the short store queries. Further
//! responses wait (their headers are sent; their bodies start when a producer is free).

use std::io::{self, Write};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::{mpsc, Semaphore};

use crate::ServeError;

/// The size of the chunks sent to the client.
pub const CHUNK: usize = 64 * 1024;

/// How many chunks may wait for the client.
const QUEUED_CHUNKS: usize = 4;

/// How many producers run at once, each on its own thread.
pub const MAX_PRODUCERS: usize = 128;

/// A client that takes no chunk for this long is given up on (its permit is needed).
pub const SEND_TIMEOUT: Duration = Duration::from_secs(120);

/// The permits for producers.
pub fn producer_limit() -> Arc<Semaphore> {
    Arc::new(Semaphore::new(MAX_PRODUCERS))
}

/// What a producer sends: data, then the end, or a failure. A channel that closes without
/// `End` (the producer panicked or was never run) fails the body, so a truncated body is never
/// ended as if it were whole.
enum Piece {
    Data(Bytes),
    End,
    Failed(io::Error),
}

/// A response body fed by a producer thread.
pub struct ChannelBody {
    rx: mpsc::Receiver<Piece>,
    len: Option<u64>,
    ended: bool,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        self.rx.poll_recv(cx).map(|piece| match piece {
            Some(Piece::Data(b)) => Some(Ok(Frame::data(b))),
            Some(Piece::End) => {
                self.ended = true;
                None
            }
            Some(Piece::Failed(e)) => Some(Err(e)),
            None => Some(Err(io::Error::other(
                "the response producer stopped before the end",
            ))),
        })
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }

    fn size_hint(&self) -> SizeHint {
        match self.len {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

/// Writes into the channel of a [`ChannelBody`] in [`CHUNK`]-sized pieces.
pub struct ChunkWriter {
    tx: mpsc::Sender<Piece>,
    runtime: tokio::runtime::Handle,
    buf: BytesMut,
    gone: bool,
}

impl ChunkWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = self.buf.split().freeze();
        self.buf.reserve(CHUNK);
        let sent = self.runtime.block_on(tokio::time::timeout(
            SEND_TIMEOUT,
            self.tx.send(Piece::Data(chunk)),
        ));
        match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) | Err(_) => {
                self.gone = true;
                Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "the client went away",
                ))
            }
        }
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// Run `produce` on the blocking pool (once one of the `limit` permits is free), streaming
/// what it writes as the body. `len` is the exact length when known (it is then also the
/// `Content-Length`). A producer error after the response has started aborts the response
/// (the client sees a truncated body, never a wrong one passed off as whole); `what` names the
/// body in the log. Must be called inside the runtime.
pub fn spawn_producer<F>(
    limit: Arc<Semaphore>,
    what: String,
    len: Option<u64>,
    produce: F,
) -> ChannelBody
where
    F: FnOnce(&mut ChunkWriter) -> Result<(), ServeError> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(QUEUED_CHUNKS);
    tokio::spawn(async move {
        let Ok(permit) = limit.acquire_owned().await else {
            return;
        };
        if tx.is_closed() {
            return;
        }
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut w = ChunkWriter {
                tx: tx.clone(),
                runtime: runtime.clone(),
                buf: BytesMut::with_capacity(CHUNK),
                gone: false,
            };
            let r = produce(&mut w).and_then(|()| w.flush().map_err(|_| ServeError::ClientGone));
            match r {
                Ok(()) => {
                    let _ = tx.blocking_send(Piece::End);
                }
                Err(_) if w.gone => tracing::debug!("{what}: the client went away"),
                Err(e) => {
                    tracing::warn!("{e}");
                    let _ = tx.blocking_send(Piece::Failed(io::Error::other(e.to_string())));
                }
            }
        });
    });
    ChannelBody {
        rx,
        len,
        ended: false,
    }
}

/// Passes on bytes `skip..skip + take` of what is written and then refuses more, so a NAR
/// dump stops as soon as a range is sent; [`RangeWriter::done`] tells that failure from a real
/// one.
pub struct RangeWriter<'a, W: Write + ?Sized> {
    inner: &'a mut W,
    skip: u64,
    take: u64,
}

impl<'a, W: Write + ?Sized> RangeWriter<'a, W> {
    pub fn new(inner: &'a mut W, skip: u64, take: u64) -> Self {
        RangeWriter { inner, skip, take }
    }

    /// Has the whole range been written?
    pub fn done(&self) -> bool {
        self.take == 0
    }
}

impl<W: Write + ?Sized> Write for RangeWriter<'_, W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.take == 0 {
            return Err(io::Error::other("the requested range has been sent"));
        }
        let skipped = self.skip.min(data.len() as u64) as usize;
        self.skip -= skipped as u64;
        let rest = &data[skipped..];
        let n = rest
            .len()
            .min(usize::try_from(self.take).unwrap_or(usize::MAX));
        self.inner.write_all(&rest[..n])?;
        self.take -= n as u64;
        Ok(skipped + n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_writer_cuts() {
        let data: Vec<u8> = (0..=255u8).collect();
        for (skip, take) in [(0, 10), (5, 0), (250, 100), (17, 31), (0, 256)] {
            let mut out = Vec::new();
            let mut w = RangeWriter::new(&mut out, skip, take);
            let mut r = Ok(());
            for piece in data.chunks(7) {
                r = w.write_all(piece);
                if r.is_err() {
                    break;
                }
            }
            let done = w.done();
            let end = (skip + take).min(256) as usize;
            assert_eq!(out, &data[skip as usize..end], "{skip} {take}");
            assert!(r.is_ok() || done);
        }
    }

    #[test]
    fn streams_in_order_and_reports_errors() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            use http_body_util::BodyExt;
            let limit = producer_limit();
            let body = spawn_producer(limit.clone(), "test".into(), None, |w| {
                for i in 0..1000u32 {
                    w.write_all(&[(i % 256) as u8; 1000]).unwrap();
                }
                Ok(())
            });
            let all = body.collect().await.unwrap().to_bytes();
            assert_eq!(all.len(), 1_000_000);
            assert!(all
                .chunks(1000)
                .enumerate()
                .all(|(i, c)| c[0] == (i % 256) as u8));

            let body = spawn_producer(limit, "test".into(), None, |w| {
                w.write_all(b"partial").unwrap();
                w.flush().unwrap();
                Err(ServeError::Panicked {
                    op: "testing",
                    path: "x".into(),
                })
            });
            assert!(body.collect().await.is_err());

            let body = spawn_producer(producer_limit(), "test".into(), None, |w| {
                w.write_all(b"partial").unwrap();
                w.flush().unwrap();
                panic!("a producer that dies");
            });
            assert!(body.collect().await.is_err());
        });
    }
}
