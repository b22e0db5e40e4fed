//! Compressors that are reused from one NAR to the next. Setting up an xz or zstd encoder
//! allocates (and for xz clears) hash tables of hundreds of KiB; for the many small NARs of a
//! store that setup, and the page faults on fresh memory, cost as much as compressing. So
//! finished encoders go back to a small pool and the next NAR resets one (liblzma and zstd keep
//! their allocations across a reset). Big NARs (where setup is noise and the tables are big)
//! are not pooled.
//!
//! xz goes through liblzma's C API directly (`lzma-sys`): the `xz2` wrapper cannot reset a
//! stream.

use std::io::{self, Write};
use std::sync::Mutex;

use lzma_sys as sys;
use zstd::stream::raw::{CParameter, Encoder as ZstdRaw, Operation};
use zstd::stream::zio;

/// Encoders kept for reuse (a couple per core is all that runs at once).
const POOL_MAX: usize = 16;

/// xz streams are pooled for inputs up to this size; they all use this dictionary size (the
/// output is the same as with any dictionary at least as big as the input, and equal sizes
/// let liblzma keep every allocation).
pub const XZ_POOLED_DICT: u32 = 128 * 1024;

/// zstd contexts are pooled for inputs up to this size (zstd sizes its tables for the input
/// when the size is given).
const ZSTD_POOLED_MAX: u64 = 1 << 20;

fn take<T>(pool: &Mutex<Vec<T>>) -> Option<T> {
    pool.lock().unwrap_or_else(|p| p.into_inner()).pop()
}

fn give<T>(pool: &Mutex<Vec<T>>, item: T) {
    let mut v = pool.lock().unwrap_or_else(|p| p.into_inner());
    if v.len() < POOL_MAX {
        v.push(item);
    }
}

/// A liblzma stream (`lzma_end` on drop).
struct XzStream(sys::lzma_stream);

// SAFETY: an lzma_stream is plain data plus liblzma's private allocation, which is not tied
// to a thread; it is only ever used by one owner at a time.
unsafe impl Send for XzStream {}

impl XzStream {
    fn new() -> XzStream {
        // SAFETY: LZMA_STREAM_INIT is all zeros (null pointers, zero counters).
        XzStream(unsafe { std::mem::zeroed() })
    }
}

impl Drop for XzStream {
    fn drop(&mut self) {
        // SAFETY: the stream was zero-initialised and only used through liblzma; lzma_end
        // accepts streams in any state, including never initialised.
        unsafe { sys::lzma_end(&mut self.0) }
    }
}

static XZ_POOL: Mutex<Vec<XzStream>> = Mutex::new(Vec::new());

fn lzma_error(op: &str, code: sys::lzma_ret) -> io::Error {
    io::Error::other(format!("xz: {op} failed (liblzma error {code})"))
}

/// An xz (LZMA2, CRC64) compressing writer, single-threaded, with a reused stream when the
/// dictionary is [`XZ_POOLED_DICT`].
pub struct XzWriter<W: Write> {
    stream: Option<XzStream>,
    out: Option<W>,
    buf: Vec<u8>,
    pooled: bool,
}

impl<W: Write> XzWriter<W> {
    /// `preset` 0..=9 (liblzma's), with the dictionary size replaced by `dict_size`.
    pub fn new(out: W, preset: u32, dict_size: u32) -> io::Result<XzWriter<W>> {
        let pooled = dict_size == XZ_POOLED_DICT;
        let mut stream = if pooled { take(&XZ_POOL) } else { None }.unwrap_or_else(XzStream::new);
        // SAFETY: lzma_options_lzma is plain data (integers and a null preset dictionary
        // pointer when zeroed); lzma_lzma_preset fills it in.
        let mut opts: sys::lzma_options_lzma = unsafe { std::mem::zeroed() };
        // SAFETY: `opts` is a valid, writable options struct.
        if unsafe { sys::lzma_lzma_preset(&mut opts, preset) } != 0 {
            return Err(io::Error::other(format!("xz: unsupported preset {preset}")));
        }
        opts.dict_size = dict_size;
        let filters = [
            sys::lzma_filter {
                id: sys::LZMA_FILTER_LZMA2,
                options: (&mut opts as *mut sys::lzma_options_lzma).cast(),
            },
            sys::lzma_filter {
                id: sys::LZMA_VLI_UNKNOWN,
                options: std::ptr::null_mut(),
            },
        ];
        // SAFETY: the stream is zeroed or was used by liblzma before (re-initialising an
        // encoder reuses its memory); the filter chain is terminated and its options live
        // across the call (liblzma copies them).
        let r = unsafe {
            sys::lzma_stream_encoder(&mut stream.0, filters.as_ptr(), sys::LZMA_CHECK_CRC64)
        };
        if r != sys::LZMA_OK {
            return Err(lzma_error("setting up the encoder", r));
        }
        Ok(XzWriter {
            stream: Some(stream),
            out: Some(out),
            buf: vec![0u8; 64 * 1024],
            pooled,
        })
    }

    /// Run the encoder on `input` with `action`, writing what it produces; returns liblzma's
    /// last answer.
    fn code(&mut self, input: &[u8], action: sys::lzma_action) -> io::Result<sys::lzma_ret> {
        let (Some(stream), Some(out)) = (self.stream.as_mut(), self.out.as_mut()) else {
            return Err(io::Error::other("xz: the stream is finished"));
        };
        let s = &mut stream.0;
        s.next_in = input.as_ptr();
        s.avail_in = input.len();
        loop {
            s.next_out = self.buf.as_mut_ptr();
            s.avail_out = self.buf.len();
            // SAFETY: next_in/avail_in describe `input` and next_out/avail_out `self.buf`,
            // both alive and unaliased for the call; the stream was set up by `new`.
            let r = unsafe { sys::lzma_code(s, action) };
            let produced = self.buf.len() - s.avail_out;
            if r != sys::LZMA_OK && r != sys::LZMA_STREAM_END {
                s.next_in = std::ptr::null();
                s.avail_in = 0;
                // A failed stream is not reused.
                self.stream = None;
                return Err(lzma_error("compressing", r));
            }
            out.write_all(&self.buf[..produced])?;
            let done = match action {
                sys::LZMA_FINISH => r == sys::LZMA_STREAM_END,
                _ => s.avail_in == 0 && s.avail_out != 0,
            };
            if done {
                s.next_in = std::ptr::null();
                return Ok(r);
            }
        }
    }

    /// End the stream; the writer is given back (and the encoder to the pool).
    pub fn finish(mut self) -> io::Result<W> {
        self.code(&[], sys::LZMA_FINISH)?;
        if let (true, Some(s)) = (self.pooled, self.stream.take()) {
            give(&XZ_POOL, s);
        }
        let mut out = self
            .out
            .take()
            .ok_or_else(|| io::Error::other("xz: the stream is finished"))?;
        out.flush()?;
        Ok(out)
    }
}

impl<W: Write> Write for XzWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        self.code(data, sys::LZMA_RUN)?;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // As xz2's writer: flushing the underlying writer only (a full flush would end the
        // LZMA2 chunk and cost compression).
        match self.out.as_mut() {
            Some(o) => o.flush(),
            None => Ok(()),
        }
    }
}

static ZSTD_POOL: Mutex<Vec<ZstdRaw<'static>>> = Mutex::new(Vec::new());

/// A zstd compressing writer whose context comes from (and goes back to) a pool when the
/// input is small and its size known.
pub struct ZstdWriter<W: Write> {
    inner: zio::Writer<W, ZstdRaw<'static>>,
    pooled: bool,
}

impl<W: Write> ZstdWriter<W> {
    /// `size`, when known (and not 0: no NAR is empty), must be the exact input size.
    pub fn new(out: W, level: i32, threads: u32, size: Option<u64>) -> io::Result<ZstdWriter<W>> {
        let size = size.filter(|&n| n > 0);
        let pooled = threads <= 1 && size.is_some_and(|n| n <= ZSTD_POOLED_MAX);
        let mut enc = match if pooled { take(&ZSTD_POOL) } else { None } {
            Some(mut e) => {
                e.reinit()?;
                e
            }
            None => ZstdRaw::new(level)?,
        };
        enc.set_parameter(CParameter::CompressionLevel(level))?;
        if threads > 1 {
            enc.set_parameter(CParameter::NbWorkers(threads))?;
        }
        // The tables are sized for the input (and the frame records its size).
        enc.set_pledged_src_size(size)?;
        Ok(ZstdWriter {
            inner: zio::Writer::new(out, enc),
            pooled,
        })
    }

    pub fn finish(mut self) -> io::Result<W> {
        self.inner.finish()?;
        let (mut out, enc) = self.inner.into_inner();
        if self.pooled {
            give(&ZSTD_POOL, enc);
        }
        out.flush()?;
        Ok(out)
    }
}

impl<W: Write> Write for ZstdWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.inner.write(data)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn data(n: usize, seed: u32) -> Vec<u8> {
        (0..n as u32)
            .map(|i| ((i / 7).wrapping_mul(seed) % 61) as u8)
            .collect()
    }

    #[test]
    fn reused_encoders_make_whole_streams() {
        // Sizes around the pooling limits, with abandoned encoders in between (a failed
        // upload drops its encoder unfinished).
        let sizes = [0, 1, 5000, 200_000, 131_072, 131_073, 3, 2_000_000, 70_000];
        for round in 0..3u32 {
            for (i, &n) in sizes.iter().enumerate() {
                let input = data(n, round * 31 + i as u32 + 1);
                let dict = if n as u64 <= XZ_POOLED_DICT as u64 {
                    XZ_POOLED_DICT
                } else {
                    8 << 20
                };
                let mut xz = XzWriter::new(Vec::new(), 6, dict).unwrap();
                xz.write_all(&input).unwrap();
                let packed = xz.finish().unwrap();
                let mut back = Vec::new();
                xz2::read::XzDecoder::new(&packed[..])
                    .read_to_end(&mut back)
                    .unwrap();
                assert_eq!(back, input, "xz {n}");

                let mut z = ZstdWriter::new(Vec::new(), 3, 1, Some(n as u64)).unwrap();
                z.write_all(&input).unwrap();
                let packed = z.finish().unwrap();
                assert_eq!(zstd::decode_all(&packed[..]).unwrap(), input, "zstd {n}");

                let mut abandoned = XzWriter::new(Vec::new(), 6, XZ_POOLED_DICT).unwrap();
                abandoned.write_all(&input[..n / 2]).unwrap();
                drop(abandoned);
                let mut abandoned = ZstdWriter::new(Vec::new(), 3, 1, Some(n as u64)).unwrap();
                abandoned.write_all(&input[..n / 2]).unwrap();
                drop(abandoned);
            }
        }
    }

    #[test]
    fn zstd_refuses_a_size_that_is_not_the_input_size() {
        let mut z = ZstdWriter::new(Vec::new(), 3, 1, Some(10)).unwrap();
        let r = z
            .write_all(&[1u8; 100])
            .and_then(|()| z.finish().map(|_| ()));
        assert!(r.is_err());
        // The pool is not poisoned by that.
        let mut z = ZstdWriter::new(Vec::new(), 3, 1, Some(4)).unwrap();
        z.write_all(b"abcd").unwrap();
        assert_eq!(zstd::decode_all(&z.finish().unwrap()[..]).unwrap(), b"abcd");
    }
}
