//! An HTTP binary cache over a local store, as `nix-serve` and `harmonia` are: CppNix (and
//! firn) can use `http://host:port` as a substituter or `nix copy --from` it.
//!
//! - [`routes`] turns a request path into a [`routes::Route`] (pure; refuses anything that is
//!   not exactly one of the cache's file names, so no request reaches outside the store);
//! - [`handlers`] answers each route: `nix-cache-info`, narinfos signed on the fly, NARs,
//!   `.ls` listings, build logs and (with `ca-derivations`) realisations;
//! - [`nar_stream`] produces response bodies on blocking threads through a bounded channel, so a
//!   NAR is never held whole in memory;
//! - [`range`] parses `Range` headers; [`logs`] finds build logs.
//!
//! The server is tokio + hyper (HTTP/1.1 with keep-alive): one task per connection, store
//! queries and NAR dumps on the blocking pool. A path is a temporary GC root while it is
//! looked up and while its NAR (or listing) is produced, so a collector (firn's or CppNix's)
//! running meanwhile cannot delete it mid-stream.

pub mod handlers;
pub mod logs;
pub mod nar_stream;
pub mod range;
pub mod routes;

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use firn_cache::compression::Compression;
use firn_format::SecretKey;
use firn_store::temproots::ScopedTempRoots;
use firn_store::LocalStore;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use thiserror::Error;
use tokio::net::{TcpListener, TcpSocket};

/// The largest request head (request line and headers) accepted; bigger ones get 431.
pub const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// How long a client may take to send a request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How many store queries run at once (the store answers one at a time anyway).
pub const QUERY_THREADS: usize = 8;

/// The listen backlog (bursts of thousands of connections).
const BACKLOG: u32 = 4096;

/// What can go wrong serving.
#[derive(Debug, Error)]
pub enum ServeError {
    #[error("cannot resolve listen address '{addr}': {source}")]
    Resolve { addr: String, source: io::Error },
    #[error("listen address '{0}' resolves to no address")]
    NoAddress(String),
    #[error("listening on '{addr}': {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("starting the async runtime: {0}")]
    Runtime(io::Error),
    #[error("{op} '{path}': {source}")]
    Store {
        op: &'static str,
        path: String,
        source: Box<firn_store::StoreError>,
    },
    #[error("signing the narinfo of '{path}': {source}")]
    Sign {
        path: String,
        source: firn_format::signature::FingerprintError,
    },
    #[error("{op} '{path}': {source}")]
    Io {
        op: &'static str,
        path: String,
        source: io::Error,
    },
    #[error("listing the NAR of '{path}': {source}")]
    Listing {
        path: String,
        source: Box<firn_format::nar::NarError>,
    },
    #[error("{op} '{path}': a worker thread panicked")]
    Panicked { op: &'static str, path: String },
    #[error("the client went away")]
    ClientGone,
}

pub type Result<T, E = ServeError> = std::result::Result<T, E>;

impl ServeError {
    /// A store operation `op` on `path` failed.
    pub fn store(op: &'static str, path: String, source: firn_store::StoreError) -> ServeError {
        ServeError::Store {
            op,
            path,
            source: Box::new(source),
        }
    }
}

/// How to serve.
#[derive(Clone)]
pub struct ServeConfig {
    /// `host:port` to listen on (every address it resolves to).
    pub listen: String,
    /// Keys narinfos are signed with, in addition to the paths' own signatures.
    pub secret_keys: Vec<SecretKey>,
    /// `Priority` in `nix-cache-info`.
    pub priority: i32,
    /// How NARs are offered in narinfos (`none`, `zstd` or `xz`; each is served on
    /// request).
    pub compression: Compression,
    /// The compression level (`< 0`: the method's default, zstd 3, xz 6).
    pub compression_level: i32,
    /// Where build logs are (`<log dir>/drvs/xx/rest[.bz2]`).
    pub log_dir: PathBuf,
    /// Runtime worker threads (`None`: one per core).
    pub worker_threads: Option<usize>,
}

impl ServeConfig {
    pub fn new(listen: impl Into<String>, log_dir: PathBuf) -> ServeConfig {
        ServeConfig {
            listen: listen.into(),
            secret_keys: Vec::new(),
            priority: 30,
            compression: Compression::None,
            compression_level: -1,
            log_dir,
            worker_threads: None,
        }
    }
}

/// What every request handler shares.
pub struct State {
    pub store: LocalStore,
    /// Temporary GC roots for the paths being sent (see [`handlers`]).
    pub roots: Arc<ScopedTempRoots>,
    pub secret_keys: Vec<SecretKey>,
    pub priority: i32,
    pub compression: Compression,
    pub compression_level: i32,
    pub log_dir: PathBuf,
    /// Permits for response producers and listings ([`nar_stream::MAX_PRODUCERS`]).
    pub producers: Arc<tokio::sync::Semaphore>,
    /// Permits for store queries ([`QUERY_THREADS`]).
    pub queries: Arc<tokio::sync::Semaphore>,
    /// Recent lookups by hash part.
    pub recent: Recent,
}

/// How long a lookup is remembered. Short: a path deleted or added meanwhile is seen within
/// this time (clients cache narinfos for far longer anyway).
pub const RECENT_TTL: std::time::Duration = std::time::Duration::from_secs(2);
const RECENT_MAX: usize = 1 << 16;

/// Recent answers of the store (path infos, or "no such path") by hash part.
#[derive(Default)]
pub struct Recent(
    std::sync::Mutex<
        std::collections::HashMap<String, (std::time::Instant, Option<firn_store::ValidPathInfo>)>,
    >,
);

impl Recent {
    pub fn get(&self, hash: &str) -> Option<Option<firn_store::ValidPathInfo>> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let (at, v) = map.get(hash)?;
        (at.elapsed() < RECENT_TTL).then(|| v.clone())
    }

    pub fn put(&self, hash: String, v: Option<firn_store::ValidPathInfo>) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= RECENT_MAX {
            map.retain(|_, (at, _)| at.elapsed() < RECENT_TTL);
            if map.len() >= RECENT_MAX {
                map.clear();
            }
        }
        map.insert(hash, (std::time::Instant::now(), v));
    }
}

/// A bound server, not yet accepting.
pub struct Server {
    runtime: tokio::runtime::Runtime,
    listeners: Vec<TcpListener>,
    state: Arc<State>,
}

impl Server {
    /// Start the runtime and bind every address `config.listen` resolves to.
    pub fn bind(store: LocalStore, config: ServeConfig) -> Result<Server> {
        raise_fd_limit();
        let mut rt = tokio::runtime::Builder::new_multi_thread();
        rt.enable_all().thread_name("firn-serve");
        if let Some(n) = config.worker_threads {
            rt.worker_threads(n.max(1));
        }
        let runtime = rt.build().map_err(ServeError::Runtime)?;
        let addrs: Vec<SocketAddr> = config
            .listen
            .to_socket_addrs()
            .map_err(|source| ServeError::Resolve {
                addr: config.listen.clone(),
                source,
            })?
            .collect();
        if addrs.is_empty() {
            return Err(ServeError::NoAddress(config.listen.clone()));
        }
        let listeners = {
            let _guard = runtime.enter();
            addrs.iter().map(|a| listen(*a)).collect::<Result<_>>()?
        };
        let state = Arc::new(State {
            roots: ScopedTempRoots::new(&store),
            store,
            secret_keys: config.secret_keys,
            priority: config.priority,
            compression: config.compression,
            compression_level: config.compression_level,
            log_dir: config.log_dir,
            producers: nar_stream::producer_limit(),
            queries: Arc::new(tokio::sync::Semaphore::new(QUERY_THREADS)),
            recent: Recent::default(),
        });
        Ok(Server {
            runtime,
            listeners,
            state,
        })
    }

    /// The addresses actually bound (with the ports chosen for port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// Accept connections until the process ends.
    pub fn run(self) -> Result<()> {
        let Server {
            runtime,
            listeners,
            state,
        } = self;
        runtime.block_on(async move {
            let mut accepting = tokio::task::JoinSet::new();
            for l in listeners {
                accepting.spawn(accept_loop(l, state.clone()));
            }
            while accepting.join_next().await.is_some() {}
        });
        Ok(())
    }
}

fn listen(addr: SocketAddr) -> Result<TcpListener> {
    let bind_err = |source| ServeError::Bind { addr, source };
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(bind_err)?;
    socket.set_reuseaddr(true).map_err(bind_err)?;
    socket.bind(addr).map_err(bind_err)?;
    socket.listen(BACKLOG).map_err(bind_err)
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors or a connection reset before it was accepted: wait
                // a moment (connections end and free descriptors) and go on.
                tracing::warn!("accepting a connection: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handlers::handle(state.clone(), peer, req));
            let conn = http1::Builder::new()
                .max_buf_size(MAX_REQUEST_HEAD)
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!("connection from {peer}: {e}");
            }
        });
    }
}

/// Let the process have as many open files as it may (one per connection, plus NAR files).
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                tracing::debug!(
                    "raising the open file limit: {}",
                    io::Error::last_os_error()
                );
            }
        }
    }
}
