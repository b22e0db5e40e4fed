//! The compression methods of binary caches as streams: `xz` (CppNix's default), `zstd`,
//! `bzip2` and `none`, with the file extensions CppNix gives NARs. Encoders for small inputs
//! are reused ([`pooled`]).

pub mod pooled;

use std::io::{self, Read, Write};

use pooled::{XzWriter, ZstdWriter, XZ_POOLED_DICT};

use crate::{CacheError, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Xz,
    Zstd,
    Bzip2,
}

impl Compression {
    /// From a narinfo's `Compression` or a `compression=` parameter (empty means `bzip2`, as
    /// old narinfos without the field were).
    pub fn parse(s: &str) -> Result<Compression> {
        Ok(match s {
            "none" => Compression::None,
            "xz" => Compression::Xz,
            "zstd" => Compression::Zstd,
            "bzip2" | "" => Compression::Bzip2,
            other => return Err(CacheError::UnknownCompression(other.to_string())),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
            Compression::Bzip2 => "bzip2",
        }
    }

    /// The extension after `.nar` in NAR file names.
    pub fn extension(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Xz => ".xz",
            Compression::Zstd => ".zst",
            Compression::Bzip2 => ".bz2",
        }
    }

    /// A reader that decompresses `input`.
    pub fn decoder<'a>(
        self,
        input: Box<dyn Read + Send + 'a>,
    ) -> io::Result<Box<dyn Read + Send + 'a>> {
        Ok(match self {
            Compression::None => input,
            Compression::Xz => Box::new(xz2::read::XzDecoder::new_multi_decoder(input)),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(input)?),
            Compression::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(input)),
        })
    }

    /// A writer that compresses into `out`; `level` < 0 means the method's default, `parallel`
    /// uses every core (xz, zstd). `size_hint`, the input's size when known, lets xz use a
    /// dictionary no larger than the input (the same compression, but far less memory to set
    /// up for the many small files of a store).
    pub fn encoder<W: Write + Send>(
        self,
        out: W,
        level: i32,
        parallel: bool,
        size_hint: Option<u64>,
    ) -> io::Result<Encoder<W>> {
        let threads = if parallel {
            std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
        } else {
            1
        };
        Ok(match self {
            Compression::None => Encoder::None(out),
            Compression::Xz => {
                let preset = if level < 0 { 6 } else { level.min(9) as u32 };
                let preset_dict = xz_preset_dict(preset);
                // LZMA2's smallest dictionary is 4 KiB; one no bigger than the input compresses
                // the same and costs far less to set up. Small inputs all get the pooled size.
                let dict = match size_hint {
                    Some(n) if n <= XZ_POOLED_DICT as u64 => XZ_POOLED_DICT.min(preset_dict),
                    Some(n) => (n.clamp(4096, 1 << 30).next_power_of_two() as u32).min(preset_dict),
                    None => preset_dict,
                };
                if threads > 1 {
                    let mut opts =
                        xz2::stream::LzmaOptions::new_preset(preset).map_err(io::Error::other)?;
                    opts.dict_size(dict);
                    let mut filters = xz2::stream::Filters::new();
                    filters.lzma2(&opts);
                    let stream = xz2::stream::MtStreamBuilder::new()
                        .filters(filters)
                        .threads(threads)
                        .check(xz2::stream::Check::Crc64)
                        .encoder()
                        .map_err(io::Error::other)?;
                    Encoder::XzMt(xz2::write::XzEncoder::new_stream(out, stream))
                } else {
                    Encoder::Xz(XzWriter::new(out, preset, dict)?)
                }
            }
            Compression::Zstd => {
                let level = if level < 0 { 3 } else { level.min(19) };
                Encoder::Zstd(ZstdWriter::new(out, level, threads, size_hint)?)
            }
            Compression::Bzip2 => {
                let level = if level < 0 {
                    9
                } else {
                    level.clamp(1, 9) as u32
                };
                Encoder::Bzip2(bzip2::write::BzEncoder::new(
                    out,
                    bzip2::Compression::new(level),
                ))
            }
        })
    }
}

/// The dictionary size of an xz preset (as liblzma defines them).
fn xz_preset_dict(preset: u32) -> u32 {
    match preset {
        0 => 256 << 10,
        1 => 1 << 20,
        2 => 2 << 20,
        3 | 4 => 4 << 20,
        5 | 6 => 8 << 20,
        7 => 16 << 20,
        8 => 32 << 20,
        _ => 64 << 20,
    }
}

/// A compressing writer; [`Encoder::finish`] ends the stream and gives the writer back.
pub enum Encoder<W: Write> {
    None(W),
    Xz(XzWriter<W>),
    XzMt(xz2::write::XzEncoder<W>),
    Zstd(ZstdWriter<W>),
    Bzip2(bzip2::write::BzEncoder<W>),
}

impl<W: Write> Encoder<W> {
    pub fn finish(self) -> io::Result<W> {
        match self {
            Encoder::None(mut w) => {
                w.flush()?;
                Ok(w)
            }
            Encoder::Xz(e) => e.finish(),
            Encoder::XzMt(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
            Encoder::Bzip2(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::None(w) => w.write(buf),
            Encoder::Xz(e) => e.write(buf),
            Encoder::XzMt(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
            Encoder::Bzip2(e) => e.write(buf),
        }
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Encoder::None(w) => w.write_all(buf),
            Encoder::Xz(e) => e.write_all(buf),
            Encoder::XzMt(e) => e.write_all(buf),
            Encoder::Zstd(e) => e.write_all(buf),
            Encoder::Bzip2(e) => e.write_all(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::None(w) => w.flush(),
            Encoder::Xz(e) => e.flush(),
            Encoder::XzMt(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
            Encoder::Bzip2(e) => e.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_every_method() {
        let data: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for c in [
            Compression::None,
            Compression::Xz,
            Compression::Zstd,
            Compression::Bzip2,
        ] {
            for parallel in [false, true] {
                let hint = parallel.then_some(data.len() as u64);
                let mut e = c.encoder(Vec::new(), -1, parallel, hint).unwrap();
                e.write_all(&data).unwrap();
                let packed = e.finish().unwrap();
                let mut back = Vec::new();
                c.decoder(Box::new(&packed[..]))
                    .unwrap()
                    .read_to_end(&mut back)
                    .unwrap();
                assert_eq!(back, data, "{c:?} parallel={parallel}");
            }
        }
        assert!(Compression::parse("lz4").is_err());
        assert_eq!(Compression::parse("").unwrap(), Compression::Bzip2);
    }

    #[test]
    fn corrupt_input_is_an_error() {
        for c in [Compression::Xz, Compression::Zstd, Compression::Bzip2] {
            let mut back = Vec::new();
            let r = c
                .decoder(Box::new(&b"definitely not compressed data"[..]))
                .and_then(|mut d| d.read_to_end(&mut back));
            assert!(r.is_err(), "{c:?}");
        }
    }
}
