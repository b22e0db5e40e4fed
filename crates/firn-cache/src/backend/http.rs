//! `http://` and `https://` caches: `GET` (404 and 403 mean "not there", as in CppNix), `HEAD`,
//! and `PUT` for writing. One connection pool per cache, trusting the CA bundle CppNix would
//! ([`firn_http::tls`]); transient failures (connection errors, 5xx, 429) are retried a few
//! times with a growing pause.

// ureq's error carries the response; it is passed straight on, never stored.
#![allow(clippy::result_large_err)]

use std::io::Read;
use std::time::Duration;

use super::{check_key, Backend, Upload};
use crate::{CacheError, Result};

pub struct HttpBackend {
    base: String,
    agent: ureq::Agent,
    attempts: u32,
}

impl HttpBackend {
    /// A client for the cache at `base`; fails when the CA bundle in effect (see
    /// [`firn_http::tls`]) cannot be used.
    pub fn new(base: String, connections: usize) -> Result<HttpBackend> {
        let agent = firn_http::agent_builder(&base)
            .map_err(|e| CacheError::Tls {
                cache: base.clone(),
                source: e,
            })?
            .timeout_connect(Duration::from_secs(10))
            .timeout_read(Duration::from_secs(300))
            .max_idle_connections(connections.max(1))
            .max_idle_connections_per_host(connections.max(1))
            .build();
        Ok(HttpBackend {
            base,
            agent,
            attempts: 3,
        })
    }

    fn url(&self, key: &str) -> String {
        format!("{}/{key}", self.base)
    }

    /// Run `req` until it succeeds, fails for good, or the attempts are used up.
    fn with_retries<T>(
        &self,
        url: &str,
        mut req: impl FnMut() -> std::result::Result<T, ureq::Error>,
    ) -> std::result::Result<T, ureq::Error> {
        let mut pause = Duration::from_millis(100);
        let mut attempt = 1;
        loop {
            match req() {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let transient = match &e {
                        ureq::Error::Status(code, _) => *code >= 500 || *code == 429,
                        ureq::Error::Transport(t) => !matches!(
                            t.kind(),
                            ureq::ErrorKind::InvalidUrl
                                | ureq::ErrorKind::UnknownScheme
                                | ureq::ErrorKind::Dns
                                | ureq::ErrorKind::ConnectionFailed
                        ),
                    };
                    if !transient || attempt >= self.attempts {
                        return Err(e);
                    }
                    tracing::warn!("{url}: {e}; retrying in {} ms", pause.as_millis());
                    std::thread::sleep(pause);
                    pause *= 4;
                    attempt += 1;
                }
            }
        }
    }
}

fn describe(e: ureq::Error) -> String {
    super::describe_ureq(e, None)
}

impl Backend for HttpBackend {
    fn name(&self) -> &str {
        &self.base
    }

    fn get(&self, key: &str) -> Result<Option<Box<dyn Read + Send>>> {
        check_key(key, &self.base)?;
        let url = self.url(key);
        match self.with_retries(&url, || self.agent.get(&url).call()) {
            Ok(resp) => Ok(Some(resp.into_reader())),
            Err(ureq::Error::Status(404 | 403, _)) => Ok(None),
            Err(e) => Err(CacheError::Download {
                url,
                why: describe(e),
            }),
        }
    }

    fn exists(&self, key: &str) -> Result<bool> {
        check_key(key, &self.base)?;
        let url = self.url(key);
        match self.with_retries(&url, || self.agent.head(&url).call()) {
            Ok(_) => Ok(true),
            Err(ureq::Error::Status(404 | 403, _)) => Ok(false),
            Err(e) => Err(CacheError::Download {
                url,
                why: describe(e),
            }),
        }
    }

    fn put(&self, key: &str, data: Upload<'_>, mime: &str) -> Result<()> {
        check_key(key, &self.base)?;
        let url = self.url(key);
        let r = self.with_retries(&url, || {
            let req = self.agent.put(&url).set("Content-Type", mime);
            match &data {
                Upload::Bytes(b) => req.send_bytes(b),
                Upload::File { path, size } => {
                    let f = std::fs::File::open(path).map_err(ureq::Error::from)?;
                    req.set("Content-Length", &size.to_string()).send(f)
                }
            }
        });
        r.map(|_| ()).map_err(|e| CacheError::Upload {
            url,
            why: describe(e),
        })
    }
}
