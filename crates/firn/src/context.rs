//! What every command needs: the settings, the store, and the error kinds that map to exit
//! codes.

use std::path::PathBuf;

use anyhow::{bail, Result};
use firn_store::LocalStore;

use crate::settings::{take_common_args, Settings};

/// A command-line mistake; the caller adds the "Try '... --help'" hint.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// A failure with a specific exit code (e.g. `--verify` finding problems); `silent` when the
/// command already printed what went wrong.
#[derive(Debug, thiserror::Error)]
#[error("{msg}")]
pub struct Failure {
    pub code: u8,
    pub msg: String,
    pub silent: bool,
}

pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    UsageError(msg.into()).into()
}

/// Settings plus the remaining arguments.
pub struct Ctx {
    pub settings: Settings,
}

impl Ctx {
    /// Load settings and take the global options out of `args`.
    pub fn new(args: Vec<String>) -> Result<(Ctx, Vec<String>)> {
        let mut settings = Settings::load()?;
        let (rest, common) = take_common_args(args, &mut settings)?;
        init_logging(common.verbosity);
        Ok((Ctx { settings }, rest))
    }

    /// Open the store named by `--store`, the `store` setting or `NIX_REMOTE`.
    pub fn open_store(&self) -> Result<LocalStore> {
        let mut uri = self.settings.get("store").unwrap_or("auto").to_string();
        if uri == "auto" || uri.is_empty() {
            if let Ok(r) = std::env::var("NIX_REMOTE") {
                if !r.is_empty() {
                    uri = r;
                }
            }
        }
        let root = parse_local_uri(&uri)?;
        let mut config = firn_store::LocalStoreConfig::default();
        if let Some(dir) = std::env::var_os("NIX_STORE_DIR") {
            config.store_dir = firn_format::StoreDir::new(dir.to_string_lossy().into_owned());
        }
        if let Some(dir) = std::env::var_os("NIX_STATE_DIR") {
            config.state_dir = PathBuf::from(dir);
        }
        config.root = root;
        config.fsync_store_paths = self.settings.get_bool("fsync-store-paths");
        config.auto_optimise = self.settings.get_bool("auto-optimise-store");
        Ok(LocalStore::open(config)?)
    }
}

/// Log to stderr: warnings by default, info with `-v`, debug with `-vv`/`--debug`.
fn init_logging(verbosity: i32) {
    let level = match verbosity {
        i32::MIN..=-1 => tracing::Level::ERROR,
        0 => tracing::Level::WARN,
        1 => tracing::Level::INFO,
        2 => tracing::Level::DEBUG,
        _ => tracing::Level::TRACE,
    };
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .with_level(false)
        .try_init();
}

/// The chroot root of a local store URI (`None` for the real root).
fn parse_local_uri(uri: &str) -> Result<Option<PathBuf>> {
    if uri == "auto" || uri == "local" || uri.is_empty() {
        return Ok(None);
    }
    if uri.starts_with('/') {
        return Ok(Some(PathBuf::from(uri)));
    }
    if let Some(rest) = uri.strip_prefix("local") {
        let query = rest.strip_prefix('?').unwrap_or("");
        let mut root = None;
        for kv in query.split('&').filter(|s| !s.is_empty()) {
            match kv.split_once('=') {
                Some(("root", v)) => root = Some(PathBuf::from(v)),
                _ => bail!("unsupported parameter '{kv}' in store URI '{uri}'"),
            }
        }
        return Ok(root);
    }
    bail!(
        "store URI '{uri}' is not supported by firn yet (supported: 'auto', 'local', 'local?root=DIR', '/DIR')"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_uris() {
        assert_eq!(parse_local_uri("auto").unwrap(), None);
        assert_eq!(parse_local_uri("/x").unwrap(), Some(PathBuf::from("/x")));
        assert_eq!(
            parse_local_uri("local?root=/y").unwrap(),
            Some(PathBuf::from("/y"))
        );
        assert!(parse_local_uri("s3://b").is_err());
    }
}
