//! What every command needs: the settings, the store, and the error kinds that map to exit
//! codes.

use std::path::PathBuf;

use anyhow::{bail, Result};
use firn_cache::cache::OpenOptions;
use firn_cache::copy::AnyStore;
use firn_cache::{BinaryCache, CacheUri, Substituters, TrustPolicy};
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
    /// `-v` adds one, `--quiet` takes one away; below 0, informational messages (what will
    /// be built, `building '…'`) are not printed.
    pub verbosity: i32,
}

impl Ctx {
    /// This context with the settings taken from flakes' `nixConfig` (by the evaluations of
    /// this command) set over its own, as CppNix sets them in its global configuration
    /// before it builds.
    pub fn with_flake_config(&self) -> Ctx {
        let mut settings = self.settings.clone();
        for (name, value) in firn_eval::flake_config::accepted() {
            settings.set(&name, &value);
        }
        Ctx {
            settings,
            verbosity: self.verbosity,
        }
    }

    /// Load settings and take the global options out of `args` (of a `nix` command).
    pub fn new(args: Vec<String>) -> Result<(Ctx, Vec<String>)> {
        Self::with_args(args, false)
    }

    /// [`Ctx::new`] for a legacy command (`nix-build`, `nix-store`, ...), which lacks some of
    /// `nix`'s global flags.
    pub fn legacy(args: Vec<String>) -> Result<(Ctx, Vec<String>)> {
        Self::with_args(args, true)
    }

    fn with_args(args: Vec<String>, legacy: bool) -> Result<(Ctx, Vec<String>)> {
        let mut settings = Settings::load()?;
        let (rest, common) = take_common_args(args, &mut settings, legacy)?;
        // Every https request of this process trusts the CA bundle CppNix would.
        firn_http::set_ssl_cert_file(settings.get("ssl-cert-file"));
        init_logging(common.verbosity);
        crate::logger::set_json(settings.get("log-format") == Some("internal-json"));
        if shows_warnings(common.verbosity) {
            settings.warn_unknown();
        }
        let ctx = Ctx {
            settings,
            verbosity: common.verbosity,
        };
        crate::closure_source::install(&ctx);
        crate::eval_builds::install(&ctx);
        Ok((ctx, rest))
    }

    /// The URI of the store named by `--store`, the `store` setting or `NIX_REMOTE`.
    pub fn store_uri(&self) -> String {
        let mut uri = self.settings.get("store").unwrap_or("auto").to_string();
        if uri == "auto" || uri.is_empty() {
            if let Ok(r) = std::env::var("NIX_REMOTE") {
                if !r.is_empty() {
                    uri = r;
                }
            }
        }
        uri
    }

    /// Whether the store named by `--store`, the `store` setting or `NIX_REMOTE` is
    /// CppNix's `dummy://` store (see [`is_dummy_uri`]).
    pub fn dummy_store(&self) -> bool {
        is_dummy_uri(&self.store_uri())
    }

    /// Open the local store named by `--store`, the `store` setting or `NIX_REMOTE`.
    pub fn open_store(&self) -> Result<LocalStore> {
        let uri = self.store_uri();
        if is_dummy_uri(&uri) {
            return Err(DummyStoreError::NeedsStore.into());
        }
        if CacheUri::is_cache_uri(&uri) {
            bail!("this operation needs a local store, but '{uri}' is a binary cache");
        }
        self.open_local_at(&uri)
    }

    /// Open the store at `uri`: a binary cache, an `ssh://` store or a local store.
    pub fn open_any_at(&self, uri: &str) -> Result<AnyStore> {
        if is_dummy_uri(uri) {
            return Err(DummyStoreError::NeedsStore.into());
        }
        if let Some(rest) = uri.strip_prefix("ssh://") {
            let (host, query) = rest.split_once('?').unwrap_or((rest, ""));
            if host.is_empty() {
                bail!("store URI '{uri}' has no host");
            }
            let mut params = firn_remote::serve::SshParams::default();
            for kv in query.split('&').filter(|s| !s.is_empty()) {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                match k {
                    "remote-program" => params.remote_program = Some(v.to_string()),
                    "remote-store" => params.remote_store = Some(v.to_string()),
                    "ssh-key" => params.ssh_key = Some(v.to_string()),
                    "compress" => params.compress = v == "true" || v == "1",
                    "max-connections" | "base64-ssh-public-host-key" | "trusted" => {}
                    _ => bail!("unsupported parameter '{k}' in store URI '{uri}'"),
                }
            }
            let store = firn_remote::serve::SshStore::open(host, params, &self.store_dir())?;
            return Ok(AnyStore::Ssh(store));
        }
        if CacheUri::is_cache_uri(uri) {
            Ok(AnyStore::Cache(BinaryCache::open(
                uri,
                &self.store_dir(),
                &self.cache_options(),
            )?))
        } else {
            Ok(AnyStore::Local(self.open_local_at(uri)?))
        }
    }

    /// Open the store named by `--store` (a binary cache or the local store).
    pub fn open_any(&self) -> Result<AnyStore> {
        self.open_any_at(&self.store_uri())
    }

    /// The logical store directory (`NIX_STORE_DIR` or `/nix/store`).
    pub fn store_dir(&self) -> firn_format::StoreDir {
        match std::env::var_os("NIX_STORE_DIR") {
            Some(dir) => firn_format::StoreDir::new(dir.to_string_lossy().into_owned()),
            None => firn_format::StoreDir::default(),
        }
    }

    pub fn cache_options(&self) -> OpenOptions {
        OpenOptions {
            http_connections: self
                .settings
                .get("http-connections")
                .and_then(|v| v.parse().ok())
                .filter(|&n: &usize| n > 0)
                .unwrap_or(25),
        }
    }

    /// How many paths a transfer between `stores` works on at once: an `ssh://` end one;
    /// remote caches wait on the network, so many (`http-connections`); otherwise the work is
    /// compression and hashing, so one per core.
    pub fn transfer_jobs(&self, stores: &[&AnyStore]) -> usize {
        if stores.iter().any(|s| matches!(s, AnyStore::Ssh(_))) {
            1
        } else if stores
            .iter()
            .any(|s| matches!(s, AnyStore::Cache(c) if c.remote))
        {
            self.cache_options().http_connections.clamp(1, 64)
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }

    /// Which narinfos to trust: `require-sigs` and `trusted-public-keys`.
    pub fn trust_policy(&self) -> Result<TrustPolicy> {
        Ok(TrustPolicy {
            require_sigs: self.settings.get_bool("require-sigs"),
            keys: crate::cmd::key::trusted_public_keys(&self.settings)?,
        })
    }

    /// The configured substituters (`substituters`, `extra-substituters`), opened; `None`
    /// when substitution is off (`substitute = false` or no substituters).
    pub fn substituters(&self) -> Result<Option<Substituters>> {
        if !self.settings.get_bool("substitute") {
            return Ok(None);
        }
        let uris: Vec<String> = self.settings.get_list("substituters");
        if uris.is_empty() {
            return Ok(None);
        }
        let disk = self.disk_cache();
        let subs = Substituters::open(
            &uris,
            &self.store_dir(),
            &self.cache_options(),
            self.trust_policy()?,
            disk,
        );
        for w in subs.take_warnings() {
            crate::logger::line(crate::logger::WARN, &format!("warning: {w}"));
        }
        Ok((!subs.is_empty()).then_some(subs))
    }

    /// Have a remote binary cache look narinfos up through the narinfo disk cache, as CppNix's
    /// do (a `file://` cache does not use it, so it is not opened for one).
    pub fn attach_disk_cache(&self, c: &mut firn_cache::cache::BinaryCache) -> Result<()> {
        if c.remote {
            if let Some(disk) = self.disk_cache() {
                c.use_disk_cache(std::sync::Arc::new(disk))?;
            }
        }
        Ok(())
    }

    /// CppNix's narinfo disk cache (`binary-cache-v6.sqlite`) with the configured TTLs, or
    /// `None` (with a warning in the log) when it cannot be opened.
    pub fn disk_cache(&self) -> Option<firn_cache::disk_cache::DiskCache> {
        let ttl = |name: &str, default: i64| {
            self.settings
                .get(name)
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        let p = firn_cache::disk_cache::default_path()?;
        match firn_cache::disk_cache::DiskCache::open(
            &p,
            ttl("narinfo-cache-positive-ttl", 30 * 24 * 3600),
            ttl("narinfo-cache-negative-ttl", 3600),
        ) {
            Ok(d) => Some(d),
            Err(e) => {
                tracing::warn!("not using the narinfo disk cache: {e}");
                None
            }
        }
    }

    fn open_local_at(&self, uri: &str) -> Result<LocalStore> {
        let root = parse_local_uri(uri)?;
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
        config.ca_derivations = self.settings.has_feature("ca-derivations");
        config.impure_derivations = self.settings.has_feature("impure-derivations");
        Ok(LocalStore::open(config)?)
    }
}

/// `dummy://` (parameters after it are ignored): CppNix's dummy store, which holds no paths
/// and cannot add any. Commands that only compute store paths (evaluation in read-only mode,
/// `--print-fixed-path`) work with it; validity queries answer "not valid"; the rest fail
/// with [`DummyStoreError`].
pub fn is_dummy_uri(uri: &str) -> bool {
    uri.starts_with("dummy://")
}

/// What a `dummy://` store refuses.
#[derive(Debug, thiserror::Error)]
pub enum DummyStoreError {
    /// A store operation, named as CppNix names it (`addToStore`, `addTextToStore`, ...).
    #[error("operation '{0}' is not supported by store 'dummy'")]
    Unsupported(&'static str),
    /// A command that needs a store holding paths.
    #[error("this command needs a store that can hold paths, which store 'dummy' cannot")]
    NeedsStore,
}

/// Whether warnings are shown at `verbosity`: down to two `--quiet`s below the default, as
/// Nix's `lvlWarn` messages.
pub fn shows_warnings(verbosity: i32) -> bool {
    verbosity >= -2
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
        "store URI '{uri}' is not supported by firn yet (supported: 'auto', 'local', 'local?root=DIR', '/DIR', 'dummy://')"
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

    #[test]
    fn dummy_uris() {
        assert!(is_dummy_uri("dummy://"));
        assert!(is_dummy_uri("dummy://?foo=bar"));
        assert!(!is_dummy_uri("dummy"));
        assert!(!is_dummy_uri("local"));
    }
}
