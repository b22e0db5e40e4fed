//! `firn serve`: serve the local store (`--store`) as an HTTP binary cache, as `nix-serve` and
//! `harmonia` do; the server itself is `firn_serve`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use firn_cache::compression::Compression;
use firn_format::SecretKey;

use crate::context::Ctx;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ServeCompression {
    None,
    Zstd,
    Xz,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address and port to listen on (`host:port`; port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:5000")]
    listen: String,
    /// Sign narinfos and realisations with the secret key in this file (may be repeated).
    #[arg(long = "secret-key-file")]
    secret_key_files: Vec<PathBuf>,
    /// The cache's priority in `nix-cache-info` (lower is preferred).
    #[arg(long, default_value_t = 30)]
    priority: i32,
    /// How NARs are offered: uncompressed, or compressed on the fly with zstd or xz.
    #[arg(long, value_enum, default_value = "none")]
    compression: ServeCompression,
    /// The compression level (zstd: default 3; xz: 0-9, default 6).
    #[arg(long = "compression-level")]
    compression_level: Option<i32>,
}

pub fn run(ctx: &Ctx, a: ServeArgs) -> Result<()> {
    let store = ctx.open_store()?;
    let log_dir = match std::env::var_os("NIX_LOG_DIR") {
        Some(d) => PathBuf::from(d),
        None => firn_store::config::rooted(
            store.config().root.as_deref(),
            Path::new("/nix/var/log/nix"),
        ),
    };
    let mut config = firn_serve::ServeConfig::new(a.listen, log_dir);
    for f in &a.secret_key_files {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("reading the secret key file '{}'", f.display()))?;
        let key = SecretKey::parse(text.trim())
            .with_context(|| format!("secret key file '{}'", f.display()))?;
        config.secret_keys.push(key);
    }
    config.priority = a.priority;
    config.compression = match a.compression {
        ServeCompression::None => Compression::None,
        ServeCompression::Zstd => Compression::Zstd,
        ServeCompression::Xz => Compression::Xz,
    };
    config.compression_level = a.compression_level.unwrap_or(-1);
    let server = firn_serve::Server::bind(store, config)?;
    for addr in server.local_addrs() {
        eprintln!("firn serve: listening on http://{addr}");
    }
    server.run()?;
    Ok(())
}
