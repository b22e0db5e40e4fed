//! Which certificate authorities an `https://` server may be signed by, as CppNix decides:
//! the CA bundle is the `ssl-cert-file` setting if set, else `$NIX_SSL_CERT_FILE`, else
//! `$SSL_CERT_FILE`, else the first of `/etc/ssl/certs/ca-certificates.crt` and
//! `/nix/var/nix/profiles/default/etc/ssl/certs/ca-bundle.crt` that exists.
//!
//! As with curl's `CURLOPT_CAINFO`, which CppNix sets, a bundle found that way is the whole
//! set of trusted roots (and a server whose own certificate it holds is trusted too, see
//! [`crate::pinned`]), and one that cannot be read or holds no certificate fails every
//! `https://` request (with an error naming it). Without any bundle, ureq's built-in Mozilla
//! roots are used. The configuration is made once per bundle and shared by every agent.
//!
//! CppNix reads the variables with `value_or`: a `NIX_SSL_CERT_FILE` that is set but empty
//! hides `SSL_CERT_FILE`, and then the system's bundle is looked for.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::client::WebPkiServerVerifier;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use thiserror::Error;

use crate::pinned::BundleVerifier;

/// The bundles CppNix 2.8 looks for when neither the setting nor the environment names one.
pub const DEFAULT_BUNDLES: [&str; 2] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/nix/var/nix/profiles/default/etc/ssl/certs/ca-bundle.crt",
];

/// A CA bundle that cannot be used.
#[derive(Debug, Error)]
pub enum TlsError {
    #[error("reading the CA certificate file '{path}': {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing the CA certificate file '{path}': {why}")]
    Parse { path: PathBuf, why: String },
    #[error("the CA certificate file '{path}' holds no usable certificate")]
    NoCertificates { path: PathBuf },
    #[error("setting up TLS with the CA certificate file '{path}': {why}")]
    Setup { path: PathBuf, why: String },
}

/// The `ssl-cert-file` setting, as the CLI read it (`None`: not set).
static SETTING: Mutex<Option<PathBuf>> = Mutex::new(None);

/// The configuration made from the last bundle used, with that bundle's name.
static CONFIG: Mutex<Option<(PathBuf, Arc<ClientConfig>)>> = Mutex::new(None);

/// Hand over the `ssl-cert-file` setting (an empty value means unset, as CppNix's empty
/// default does). Requests made after this use it.
pub fn set_ssl_cert_file(setting: Option<&str>) {
    let value = setting.filter(|s| !s.is_empty()).map(PathBuf::from);
    if let Ok(mut s) = SETTING.lock() {
        *s = value;
    }
}

/// The CA bundle in effect for this process (see the module's rule), if any.
pub fn ca_file() -> Option<PathBuf> {
    let setting = SETTING.lock().ok().and_then(|s| s.clone());
    choose_ca_file(
        setting.as_deref(),
        |name| std::env::var_os(name),
        |p| p.exists(),
    )
}

/// CppNix's rule, with the environment and the filesystem as arguments.
pub fn choose_ca_file(
    setting: Option<&Path>,
    env: impl Fn(&str) -> Option<OsString>,
    exists: impl Fn(&Path) -> bool,
) -> Option<PathBuf> {
    if let Some(s) = setting.filter(|s| !s.as_os_str().is_empty()) {
        return Some(s.to_path_buf());
    }
    let from_env = env("NIX_SSL_CERT_FILE").or_else(|| env("SSL_CERT_FILE"));
    if let Some(v) = from_env.filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(v));
    }
    DEFAULT_BUNDLES
        .iter()
        .map(Path::new)
        .find(|p| exists(p))
        .map(Path::to_path_buf)
}

/// The TLS configuration for `https://` requests: `None` to keep ureq's built-in roots (no
/// bundle in effect), otherwise one trusting exactly the bundle's certificates.
pub fn client_config() -> Result<Option<Arc<ClientConfig>>, TlsError> {
    let Some(path) = ca_file() else {
        return Ok(None);
    };
    let mut cached = CONFIG.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((p, config)) = cached.as_ref() {
        if *p == path {
            return Ok(Some(config.clone()));
        }
    }
    let config = config_for_bundle(&path)?;
    *cached = Some((path, config.clone()));
    Ok(Some(config))
}

/// The certificates of the PEM bundle at `path`, and those of them usable as trust roots
/// (system bundles hold a few that are not); none at all is an error.
pub fn load_bundle(path: &Path) -> Result<(RootCertStore, Vec<CertificateDer<'static>>), TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Parse {
            path: path.to_path_buf(),
            why: e.to_string(),
        })?;
    let mut roots = RootCertStore::empty();
    let (added, skipped) = roots.add_parsable_certificates(certs.iter().cloned());
    if skipped > 0 {
        tracing::debug!(
            "'{}': {skipped} certificates cannot be trust roots",
            path.display()
        );
    }
    if added == 0 {
        return Err(TlsError::NoCertificates {
            path: path.to_path_buf(),
        });
    }
    Ok((roots, certs))
}

/// A client configuration trusting the bundle at `path` (TLS 1.2 and 1.3, *ring*, as ureq's
/// own): servers its certificates sign, and those whose own certificate it holds
/// ([`crate::pinned`]).
pub fn config_for_bundle(path: &Path) -> Result<Arc<ClientConfig>, TlsError> {
    let setup = |why: String| TlsError::Setup {
        path: path.to_path_buf(),
        why,
    };
    let (roots, certs) = load_bundle(path)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| setup(e.to_string()))?;
    let verifier = Arc::new(BundleVerifier::new(webpki, certs));
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
        .map_err(|e| setup(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A client configuration that trusts no server (for when the bundle in effect is unusable
/// but a request that should not need it is made anyway); `None` if it cannot be made.
pub fn trust_nothing() -> Option<Arc<ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
        .ok()?
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth();
    Some(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test CA of the CLI's TLS tests (a self-signed certificate).
    const TEST_CA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../firn/tests/data/tls/ca.pem");

    /// [`choose_ca_file`] with the environment `vars`.
    fn choose(
        setting: Option<&str>,
        vars: &[(&str, &str)],
        exists: &dyn Fn(&Path) -> bool,
    ) -> Option<PathBuf> {
        let env = |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| OsString::from(v))
        };
        choose_ca_file(setting.map(Path::new), env, exists)
    }

    #[test]
    fn the_rule() {
        let none = |_: &Path| false;
        let system = |p: &Path| p == Path::new(DEFAULT_BUNDLES[0]);
        let profile = |p: &Path| p == Path::new(DEFAULT_BUNDLES[1]);
        let both = [("NIX_SSL_CERT_FILE", "/n"), ("SSL_CERT_FILE", "/s")];
        assert_eq!(choose(Some("/set"), &both, &system), Some("/set".into()));
        assert_eq!(choose(Some(""), &both, &system), Some("/n".into()));
        assert_eq!(choose(None, &both, &none), Some("/n".into()));
        assert_eq!(
            choose(None, &[("SSL_CERT_FILE", "/s")], &none),
            Some("/s".into())
        );
        // Set but empty: SSL_CERT_FILE is not looked at (CppNix's `value_or`).
        let empty = [("NIX_SSL_CERT_FILE", ""), ("SSL_CERT_FILE", "/s")];
        assert_eq!(
            choose(None, &empty, &system),
            Some(DEFAULT_BUNDLES[0].into())
        );
        assert_eq!(choose(None, &empty, &none), None);
        assert_eq!(choose(None, &[], &profile), Some(DEFAULT_BUNDLES[1].into()));
        assert_eq!(choose(None, &[], &none), None);
    }

    #[test]
    fn bundles() {
        let (roots, certs) = load_bundle(Path::new(TEST_CA)).expect("the test CA loads");
        assert_eq!((roots.len(), certs.len()), (1, 1));
        config_for_bundle(Path::new(TEST_CA)).expect("a configuration");

        let tmp = tempfile::tempdir().expect("tempdir");
        let missing = tmp.path().join("missing.pem");
        let e = load_bundle(&missing).map(|_| ()).unwrap_err();
        assert!(matches!(e, TlsError::Read { .. }), "{e}");
        assert!(e.to_string().contains(&*missing.to_string_lossy()), "{e}");

        let empty = tmp.path().join("empty.pem");
        std::fs::write(&empty, "no certificates here\n").expect("write");
        let e = load_bundle(&empty).map(|_| ()).unwrap_err();
        assert!(matches!(e, TlsError::NoCertificates { .. }), "{e}");
        assert!(e.to_string().contains("empty.pem"), "{e}");

        let bad = tmp.path().join("bad.pem");
        std::fs::write(
            &bad,
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        )
        .expect("write");
        let e = load_bundle(&bad).map(|_| ()).unwrap_err();
        assert!(matches!(e, TlsError::Parse { .. }), "{e}");
        assert!(e.to_string().contains("bad.pem"), "{e}");
    }
}
