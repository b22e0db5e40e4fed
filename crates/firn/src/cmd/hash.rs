//! `nix hash path|file|convert|to-*`, and the hashing shared with `nix-hash`.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use firn_format::{Hash, HashAlgo, HashFormat, Hasher};

/// What to hash of a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashMode {
    /// The file's bytes.
    Flat,
    /// The NAR serialisation.
    Nar,
}

/// Hash one path in `mode`.
pub fn hash_path(path: &Path, mode: HashMode, algo: HashAlgo) -> Result<Hash> {
    match mode {
        HashMode::Nar => Ok(firn_store::nar_fs::hash_path(path, algo)?.0),
        HashMode::Flat => {
            let mut f = std::fs::File::open(path)
                .with_context(|| format!("opening file '{}'", path.display()))?;
            let mut h = Hasher::new(algo);
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = f
                    .read(&mut buf)
                    .with_context(|| format!("reading file '{}'", path.display()))?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
            Ok(h.finish())
        }
    }
}

/// Print the hash of each path, as `nix-hash` and `nix hash path` do.
pub fn hash_paths(
    paths: &[String],
    mode: HashMode,
    algo: HashAlgo,
    format: HashFormat,
    truncate: bool,
) -> Result<()> {
    for p in paths {
        let h = hash_path(Path::new(p), mode, algo)?;
        let h = if truncate && h.algo().size() > 20 {
            let folded = h.truncate_xor(20);
            // A folded hash keeps its algorithm's name but has only 20 bytes.
            let b64 = || data_encoding::BASE64.encode(&folded);
            match format {
                HashFormat::Base16 => data_encoding::HEXLOWER.encode(&folded),
                HashFormat::Nix32 => firn_format::nixbase32::encode(&folded),
                HashFormat::Base64 => b64(),
                HashFormat::Sri => format!("{}-{}", h.algo(), b64()),
            }
        } else {
            h.encode(format, format == HashFormat::Sri)
        };
        outln!("{h}");
    }
    Ok(())
}

#[derive(Subcommand, Debug)]
pub enum HashCmd {
    /// Print the cryptographic hash of the NAR serialisation of a path.
    Path(HashPathArgs),
    /// Print the cryptographic hash of a regular file.
    File(HashPathArgs),
    /// Convert between hash formats.
    Convert(ConvertArgs),
    /// Convert a hash to base-16 representation (deprecated; use `nix hash convert`).
    #[command(name = "to-base16")]
    ToBase16(ToArgs),
    /// Convert a hash to base-32 representation (deprecated; use `nix hash convert`).
    #[command(name = "to-base32")]
    ToBase32(ToArgs),
    /// Convert a hash to base-64 representation (deprecated; use `nix hash convert`).
    #[command(name = "to-base64")]
    ToBase64(ToArgs),
    /// Convert a hash to SRI representation (deprecated; use `nix hash convert`).
    #[command(name = "to-sri")]
    ToSri(ToArgs),
}

#[derive(Args, Debug)]
pub struct HashPathArgs {
    /// Hash algorithm (md5, sha1, sha256, sha512).
    #[arg(long = "type", alias = "algo", default_value = "sha256")]
    algo: String,
    /// How to hash: `nar` (the NAR serialisation) or `flat` (the file's bytes).
    #[arg(long)]
    mode: Option<String>,
    /// Print the hash in SRI format (the default).
    #[arg(long)]
    sri: bool,
    /// Print the hash in base-64.
    #[arg(long)]
    base64: bool,
    /// Print the hash in Nix's base-32.
    #[arg(long)]
    base32: bool,
    /// Print the hash in base-16.
    #[arg(long)]
    base16: bool,
    paths: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// The format the input must be in (base16, nix32, base64, sri).
    #[arg(long)]
    from: Option<String>,
    /// The output format (default sri).
    #[arg(long, default_value = "sri")]
    to: String,
    /// The hash algorithm, when the input does not name it.
    #[arg(long = "hash-algo", alias = "algo")]
    algo: Option<String>,
    hashes: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ToArgs {
    /// The hash algorithm, when the input does not name it.
    #[arg(long = "type")]
    algo: Option<String>,
    hashes: Vec<String>,
}

fn parse_algo(s: &str) -> Result<HashAlgo> {
    Ok(s.parse::<HashAlgo>()?)
}

pub fn run(cmd: HashCmd) -> Result<()> {
    match cmd {
        HashCmd::Path(a) => return run_hash(a, HashMode::Nar),
        HashCmd::File(a) => return run_hash(a, HashMode::Flat),
        HashCmd::Convert(a) => {
            let algo = a.algo.as_deref().map(parse_algo).transpose()?;
            let to: HashFormat = a.to.parse()?;
            let from: Option<HashFormat> = a.from.as_deref().map(str::parse).transpose()?;
            for s in &a.hashes {
                let (h, found) = Hash::parse_with_format(s, algo)?;
                if let Some(f) = from {
                    if f != found {
                        bail!(
                            "input hash '{s}' has format '{}', but '--from {}' was specified",
                            found.name(),
                            f.name()
                        );
                    }
                }
                outln!("{}", h.encode(to, to == HashFormat::Sri));
            }
        }
        HashCmd::ToBase16(a) => to_base(a, HashFormat::Base16)?,
        HashCmd::ToBase32(a) => to_base(a, HashFormat::Nix32)?,
        HashCmd::ToBase64(a) => to_base(a, HashFormat::Base64)?,
        HashCmd::ToSri(a) => to_base(a, HashFormat::Sri)?,
    }
    Ok(())
}

fn to_base(a: ToArgs, format: HashFormat) -> Result<()> {
    eprintln!("warning: The old format conversion subcommands of `nix hash` were deprecated in favor of `nix hash convert`.");
    let algo = a.algo.as_deref().map(parse_algo).transpose()?;
    for s in &a.hashes {
        let h = Hash::parse(s, algo)?;
        outln!("{}", h.encode(format, format == HashFormat::Sri));
    }
    Ok(())
}

fn run_hash(a: HashPathArgs, default_mode: HashMode) -> Result<()> {
    let algo = parse_algo(&a.algo)?;
    let mode = match a.mode.as_deref() {
        None => default_mode,
        Some("nar") => HashMode::Nar,
        Some("flat") => HashMode::Flat,
        Some(m) => bail!("unknown file ingestion method '{m}', expect 'flat' or 'nar'"),
    };
    let format = if a.base16 {
        HashFormat::Base16
    } else if a.base32 {
        HashFormat::Nix32
    } else if a.base64 {
        HashFormat::Base64
    } else {
        let _ = a.sri;
        HashFormat::Sri
    };
    hash_paths(&a.paths, mode, algo, format, false)
}
