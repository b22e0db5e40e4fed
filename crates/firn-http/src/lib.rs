//! HTTP(S) clients for firn: binary caches (`http(s)://`, `s3://`), the fetchers
//! (`fetchurl`, `fetchTarball`, ...) and `builtin:fetchurl` all make their agents here, so
//! one rule decides which certificate authorities an `https://` server may be signed by.
//!
//! - [`tls`]: the CA bundle as CppNix picks it (`ssl-cert-file`, `NIX_SSL_CERT_FILE`,
//!   `SSL_CERT_FILE`, the system's bundle) and the TLS configuration made from it;
//! - [`pinned`]: a server whose own certificate is in the bundle is trusted, as curl does.
//!
//! The CLI hands the `ssl-cert-file` setting over once, with [`set_ssl_cert_file`], after it
//! has read the configuration; libraries only call [`agent_builder`].

pub mod pinned;
pub mod tls;

pub use tls::{set_ssl_cert_file, TlsError};

/// The `User-Agent` of firn's requests.
pub const USER_AGENT: &str = concat!("firn/", env!("CARGO_PKG_VERSION"));

/// A ureq agent builder for requests to `url` (and where it redirects), with firn's user
/// agent and the trust roots [`tls::client_config`] chooses; the caller adds its timeouts and
/// pool sizes. A CA bundle that cannot be used fails `https://` URLs; a plain `http://` one
/// does not need it (as with curl, which only reads the bundle for TLS), and trusts no
/// server should it be redirected to `https://`.
pub fn agent_builder(url: &str) -> Result<ureq::AgentBuilder, TlsError> {
    let builder = ureq::AgentBuilder::new().user_agent(USER_AGENT);
    match tls::client_config() {
        Ok(Some(config)) => Ok(builder.tls_config(config)),
        Ok(None) => Ok(builder),
        Err(e) if !url.starts_with("https://") => {
            tracing::debug!("{e} (not needed for '{url}')");
            Ok(match tls::trust_nothing() {
                Some(config) => builder.tls_config(config),
                None => builder,
            })
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::tls;

    /// The only test here that sets the process's `ssl-cert-file`.
    #[test]
    fn an_unusable_bundle_fails_only_https() {
        tls::set_ssl_cert_file(Some("/nonexistent/firn-test-bundle.pem"));
        assert!(super::agent_builder("http://127.0.0.1:1/x").is_ok());
        let e = super::agent_builder("https://127.0.0.1:1/x")
            .map(|_| ())
            .unwrap_err();
        assert!(e.to_string().contains("firn-test-bundle.pem"), "{e}");
        tls::set_ssl_cert_file(Some(""));
        assert_eq!(
            tls::ca_file(),
            tls::choose_ca_file(None, |n| std::env::var_os(n), |p| p.exists())
        );
    }
}
