//! Build logs where CppNix keeps them: `<log dir>/drvs/<first two characters of the .drv's
//! base name>/<the rest>`, bzip2-compressed (`.bz2`) unless `compress-build-log` is false, so
//! `nix log` and `nix-store -l` of either implementation find them.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::Path;

use firn_format::StorePath;

use crate::BuildError;

/// An open log file being written.
pub enum LogWriter {
    Plain(File),
    Bz(bzip2::write::BzEncoder<File>),
}

impl LogWriter {
    pub fn create(
        log_dir: &Path,
        drv: &StorePath,
        compress: bool,
    ) -> Result<LogWriter, BuildError> {
        let [bz, plain, _] = firn_store::config::build_log_paths(log_dir, drv);
        let path = if compress { bz } else { plain };
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| BuildError::io("creating directory", parent, e))?;
        }
        let f = File::create(&path).map_err(|e| BuildError::io("creating log file", &path, e))?;
        Ok(if compress {
            // The smallest blocks (100 kB): a compressor with bigger ones costs megabytes of
            // memory to set up for every build, most of whose logs are short.
            LogWriter::Bz(bzip2::write::BzEncoder::new(f, bzip2::Compression::fast()))
        } else {
            LogWriter::Plain(f)
        })
    }

    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            LogWriter::Plain(f) => f.write_all(data),
            LogWriter::Bz(e) => e.write_all(data),
        }
    }

    pub fn finish(self) -> io::Result<()> {
        match self {
            LogWriter::Plain(mut f) => f.flush(),
            LogWriter::Bz(e) => e.finish().map(|_| ()),
        }
    }
}

/// The stored log of a derivation, decompressed; `None` when there is none.
pub fn read_log(log_dir: &Path, drv: &StorePath) -> Result<Option<Vec<u8>>, BuildError> {
    let [bz, plain, flat] = firn_store::config::build_log_paths(log_dir, drv);
    match File::open(&bz) {
        Ok(f) => {
            let mut out = Vec::new();
            bzip2::read::MultiBzDecoder::new(f)
                .read_to_end(&mut out)
                .map_err(|e| BuildError::io("decompressing log file", &bz, e))?;
            return Ok(Some(out));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(BuildError::io("opening log file", &bz, e)),
    }
    // Uncompressed, or in the layout before `drvs/` existed.
    for p in [plain, flat] {
        match fs::read(&p) {
            Ok(data) => return Ok(Some(data)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(BuildError::io("reading log file", &p, e)),
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_both_forms() {
        let dir = tempfile::tempdir().unwrap();
        let drv = StorePath::from_base_name("7rjj86a15146cq1d3qy068lml7n8ykzm-a.drv").unwrap();
        for compress in [true, false] {
            let d = dir.path().join(compress.to_string());
            let mut w = LogWriter::create(&d, &drv, compress).unwrap();
            w.write(b"hello\nworld\n").unwrap();
            w.finish().unwrap();
            assert_eq!(read_log(&d, &drv).unwrap().unwrap(), b"hello\nworld\n");
            let expect = if compress {
                "jj86a15146cq1d3qy068lml7n8ykzm-a.drv.bz2"
            } else {
                "jj86a15146cq1d3qy068lml7n8ykzm-a.drv"
            };
            assert!(d.join("drvs/7r").join(expect).exists());
        }
        assert!(read_log(dir.path(), &drv).unwrap().is_none());
    }
}
