//! The answer to each route. Store queries run on the blocking pool; NARs (plain, or
//! compressed with zstd or xz as they are dumped) and logs are produced there too and streamed
//! ([`crate::nar_stream`]). A path is held as a
//! temporary GC root ([`firn_store::temproots::ScopedTempRoots`]) while its narinfo is read
//! from the database and from just before a NAR or listing request checks it until the body
//! is produced (or dropped unsent), so a concurrent `nix-store --gc` cannot delete it
//! mid-stream. Realisations (`ca-derivations`) come from the store's `Realisations` table,
//! signed on the fly as narinfos are. A `HEAD` request gets the
//! same status and headers as a `GET`, and no producer is started.

use std::convert::Infallible;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use firn_cache::compression::Compression;
use firn_format::{HashFormat, NarInfo, StorePath};
use firn_store::path_info::ValidPathInfo;
use firn_store::realisations::Realisation;
use firn_store::temproots::TempRootGuard;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::Semaphore;

use crate::nar_stream::{spawn_producer, ChannelBody, ChunkWriter, RangeWriter};
use crate::range::{self, RangeAnswer};
use crate::routes::{self, Reject, Route};
use crate::{logs, Result, ServeError, State};

/// A response body: small ones whole, the rest streamed.
pub type ResBody = Either<Full<Bytes>, ChannelBody>;

type Producer = Box<dyn FnOnce(&mut ChunkWriter) -> Result<()> + Send>;

enum ReplyBody {
    Whole(Bytes),
    Stream {
        what: String,
        len: Option<u64>,
        produce: Producer,
    },
}

/// A response before it becomes one (so `HEAD` can drop the body without producing it).
struct Reply {
    status: StatusCode,
    content_type: &'static str,
    headers: Vec<(header::HeaderName, HeaderValue)>,
    body: ReplyBody,
}

impl Reply {
    fn whole(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Reply {
        Reply {
            status,
            content_type,
            headers: Vec::new(),
            body: ReplyBody::Whole(body.into()),
        }
    }

    fn text(status: StatusCode, msg: &'static str) -> Reply {
        Reply::whole(status, "text/plain; charset=utf-8", msg)
    }

    fn not_found() -> Reply {
        Reply::text(StatusCode::NOT_FOUND, "not found\n")
    }

    fn stream(
        status: StatusCode,
        content_type: &'static str,
        what: String,
        len: Option<u64>,
        produce: Producer,
    ) -> Reply {
        Reply {
            status,
            content_type,
            headers: Vec::new(),
            body: ReplyBody::Stream { what, len, produce },
        }
    }

    fn header(mut self, name: header::HeaderName, value: String) -> Reply {
        if let Ok(v) = HeaderValue::from_str(&value) {
            self.headers.push((name, v));
        }
        self
    }

    fn into_response(self, state: &State, head: bool) -> Response<ResBody> {
        let len = match &self.body {
            ReplyBody::Whole(b) => Some(b.len() as u64),
            ReplyBody::Stream { len, .. } => *len,
        };
        let body = match self.body {
            _ if head => Either::Left(Full::new(Bytes::new())),
            ReplyBody::Whole(b) => Either::Left(Full::new(b)),
            ReplyBody::Stream { what, len, produce } => {
                Either::Right(spawn_producer(state.producers.clone(), what, len, produce))
            }
        };
        let mut r = Response::new(body);
        *r.status_mut() = self.status;
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        if let Some(n) = len {
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        }
        for (k, v) in self.headers {
            h.insert(k, v);
        }
        r
    }
}

/// Answer one request.
pub async fn handle(
    state: Arc<State>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<ResBody>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let range = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    drop(req);
    let head = method == Method::HEAD;
    let reply = if method != Method::GET && !head {
        Reply::text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
            .header(header::ALLOW, "GET, HEAD".into())
    } else {
        match routes::parse(&path) {
            Err(Reject::NotFound) => Reply::not_found(),
            Err(Reject::BadRequest) => Reply::text(StatusCode::BAD_REQUEST, "bad request\n"),
            Ok(route) => match answer(&state, route, range.as_deref()).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!("{e}");
                    Reply::text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n")
                }
            },
        }
    };
    tracing::debug!("{peer} {method} {path} {}", reply.status.as_u16());
    Ok(reply.into_response(&state, head))
}

async fn answer(state: &Arc<State>, route: Route, range: Option<&str>) -> Result<Reply> {
    match route {
        Route::CacheInfo => {
            let sd = state.store.store_dir();
            let text = format!(
                "StoreDir: {sd}\nWantMassQuery: 1\nPriority: {}\n",
                state.priority
            );
            Ok(Reply::whole(StatusCode::OK, "text/x-nix-cache-info", text))
        }
        Route::NarInfo { hash } => match lookup(state, hash).await? {
            None => Ok(Reply::not_found()),
            Some(info) => Ok(Reply::whole(
                StatusCode::OK,
                "text/x-nix-narinfo",
                narinfo(state, &info)?,
            )),
        },
        Route::Nar {
            hash,
            nar_hash,
            compression,
        } => {
            let Some(info) = lookup(state, hash).await? else {
                return Ok(Reply::not_found());
            };
            // The path stays a temporary root until the NAR is sent (the guard goes with the
            // producer); it is looked up again once held, since a collector may have deleted
            // it since the (possibly remembered) lookup.
            let Some((info, root)) = hold_valid(state, info.path).await? else {
                return Ok(Reply::not_found());
            };
            if let Some(nh) = nar_hash {
                if nh != info.nar_hash.encode(HashFormat::Nix32, false) {
                    return Ok(Reply::not_found());
                }
            }
            Ok(nar(state, info, root, compression, range))
        }
        Route::Listing { hash } => {
            let Some(info) = lookup(state, hash).await? else {
                return Ok(Reply::not_found());
            };
            let Some((info, root)) = hold_valid(state, info.path).await? else {
                return Ok(Reply::not_found());
            };
            let st = state.clone();
            let path = info.path.clone();
            let shown = || state.store.store_dir().display(&info.path);
            let listing = blocking(&state.producers, "listing", shown, move || {
                let _root = root;
                listing(&st, &path)
            })
            .await?;
            Ok(Reply::whole(StatusCode::OK, "application/json", listing))
        }
        Route::Log { path } => log(state, path).await,
        Route::Realisation { id } => {
            let st = state.clone();
            let shown = || format!("realisation '{id}'");
            let q = id.clone();
            let found = blocking(&state.queries, "looking up", shown, move || {
                st.store
                    .query_realisation(&q)
                    .map_err(|e| ServeError::store("querying", format!("realisation '{q}'"), e))
            })
            .await?;
            Ok(match found {
                None => Reply::not_found(),
                Some(r) => Reply::whole(StatusCode::OK, "application/json", realisation(state, r)),
            })
        }
    }
}

/// A realisation's file (`ca-derivations`): as the store records it, with a signature by each
/// of the server's keys added (as its narinfos get). A store opened without the feature has
/// none to serve.
fn realisation(state: &State, mut r: Realisation) -> String {
    for key in &state.secret_keys {
        firn_cache::realisation::sign(&mut r, key);
    }
    firn_cache::realisation::to_json(&r)
}

/// Run `f` on the blocking pool once one of the `limit` permits is free: the store answers
/// one query at a time, so a few threads serve any number of requests, and fewer threads keep
/// the allocator's per-thread memory down.
async fn blocking<T: Send + 'static>(
    limit: &Arc<Semaphore>,
    op: &'static str,
    shown: impl FnOnce() -> String,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let permit = limit.clone().acquire_owned().await;
    let r = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        f()
    })
    .await;
    r.map_err(|_| ServeError::Panicked { op, path: shown() })?
}

/// The valid path with hash part `hash`, and its info. Answers are remembered for
/// [`RECENT_TTL`], so bursts of lookups (a client fetching a closure asks for each narinfo,
/// then each NAR) do not each go to the database.
async fn lookup(state: &Arc<State>, hash: String) -> Result<Option<ValidPathInfo>> {
    if let Some(hit) = state.recent.get(&hash) {
        return Ok(hit);
    }
    let found = lookup_uncached(state, hash.clone()).await?;
    state.recent.put(hash, found.clone());
    Ok(found)
}

async fn lookup_uncached(state: &Arc<State>, hash: String) -> Result<Option<ValidPathInfo>> {
    let st = state.clone();
    let shown = || format!("{}/{hash}", state.store.store_dir());
    let h = hash.clone();
    blocking(&state.queries, "looking up", shown, move || {
        lookup_blocking(&st, &h)
    })
    .await
}

fn lookup_blocking(state: &State, hash: &str) -> Result<Option<ValidPathInfo>> {
    let store = &state.store;
    let err = |op, source| ServeError::store(op, format!("{}/{hash}", store.store_dir()), source);
    let Some(p) = store
        .query_path_from_hash_part(hash)
        .map_err(|e| err("looking up the hash part", e))?
    else {
        return Ok(None);
    };
    // Held while the narinfo is made from what the database says.
    Ok(hold_valid_blocking(state, &p)?.map(|(info, _root)| info))
}

/// Make `path` a temporary root, then read its info (`None`: it is not valid, or no longer).
async fn hold_valid(
    state: &Arc<State>,
    path: StorePath,
) -> Result<Option<(ValidPathInfo, TempRootGuard)>> {
    let st = state.clone();
    let shown = || state.store.store_dir().display(&path);
    let p = path.clone();
    blocking(&state.queries, "holding", shown, move || {
        hold_valid_blocking(&st, &p)
    })
    .await
}

fn hold_valid_blocking(
    state: &State,
    path: &StorePath,
) -> Result<Option<(ValidPathInfo, TempRootGuard)>> {
    let store = &state.store;
    let shown = || store.store_dir().display(path);
    // Rooted first, then checked: a collector either sees the root and keeps the path, or
    // had deleted it already (then it is not valid any more).
    let root = state
        .roots
        .hold(path)
        .map_err(|e| ServeError::store("adding a temporary root for", shown(), e))?;
    // Straight from the database, not through the store's path-info cache: that cache never
    // shrinks, and other processes change the store under a long-running server.
    let info = store
        .db()
        .query_path_info(path)
        .map_err(|e| ServeError::store("querying the path info of", shown(), e))?;
    Ok(info.map(|i| (i, root)))
}

/// The narinfo of a valid path, signed with the server's keys.
fn narinfo(state: &State, info: &ValidPathInfo) -> Result<String> {
    let sd = state.store.store_dir();
    let url = format!(
        "nar/{}-{}.nar{}",
        info.path.hash_part(),
        info.nar_hash.encode(HashFormat::Nix32, false),
        state.compression.extension()
    );
    let mut ni = NarInfo::new(info.path.clone(), url, info.nar_hash.clone(), info.nar_size);
    ni.compression = state.compression.name().to_string();
    if state.compression == Compression::None {
        ni.file_hash = Some(info.nar_hash.clone());
        ni.file_size = info.nar_size;
    }
    ni.references = info.references.clone();
    ni.deriver = info.deriver.clone();
    ni.sigs = info.sigs.clone();
    ni.ca = info.ca.clone();
    for key in &state.secret_keys {
        ni.sign(sd, key).map_err(|source| ServeError::Sign {
            path: sd.display(&info.path),
            source,
        })?;
    }
    Ok(ni.to_text(sd))
}

/// The NAR of `info.path`: whole or a range of it, or compressed (zstd, xz) as it is dumped.
fn nar(
    state: &Arc<State>,
    info: ValidPathInfo,
    root: TempRootGuard,
    compression: Compression,
    range_header: Option<&str>,
) -> Reply {
    const NAR: &str = "application/x-nix-nar";
    let what = format!("NAR of '{}'", state.store.store_dir().display(&info.path));
    let st = state.clone();
    let size = info.nar_size;
    if compression != Compression::None {
        let level = state.compression_level;
        let produce: Producer = Box::new(move |w| {
            let _root = root;
            let shown = st.store.store_dir().display(&info.path);
            let io_err = |source| ServeError::Io {
                op: "compressing the NAR of",
                path: shown.clone(),
                source,
            };
            let mut enc = compression
                .encoder(&mut *w, level, false, Some(size))
                .map_err(io_err)?;
            dump_range(&st, &info.path, 0, size, &mut enc)?;
            enc.finish().map_err(io_err)?;
            Ok(())
        });
        return Reply::stream(StatusCode::OK, NAR, what, None, produce);
    }
    let (status, start, len) = match range::parse(range_header, size) {
        RangeAnswer::Full => (StatusCode::OK, 0, size),
        RangeAnswer::Partial { start, end } => {
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        RangeAnswer::Unsatisfiable => {
            return Reply::text(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable\n")
                .header(header::CONTENT_RANGE, format!("bytes */{size}"));
        }
    };
    let produce: Producer = Box::new(move |w| {
        let _root = root;
        dump_range(&st, &info.path, start, len, w)
    });
    let mut r = Reply::stream(status, NAR, what, Some(len), produce)
        .header(header::ACCEPT_RANGES, "bytes".into());
    if status == StatusCode::PARTIAL_CONTENT {
        r = r.header(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{size}", start + len - 1),
        );
    }
    r
}

/// Write bytes `start..start + len` of the NAR of `path` (stopping the dump there); an error
/// if the NAR on disk is shorter than that.
fn dump_range(
    state: &State,
    path: &StorePath,
    start: u64,
    len: u64,
    out: &mut dyn Write,
) -> Result<()> {
    let mut rw = RangeWriter::new(out, start, len);
    let r = state.store.nar_from_path(path, &mut rw);
    if rw.done() {
        return Ok(());
    }
    let shown = state.store.store_dir().display(path);
    r.map_err(|source| ServeError::store("dumping", shown.clone(), source))?;
    Err(ServeError::Io {
        op: "dumping",
        path: shown,
        source: io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the NAR is shorter than its registered size (the path changed on disk)",
        ),
    })
}

/// The `.ls` listing of a path: the NAR is dumped into a pipe on a second thread and listed
/// as it arrives; only the listing is held in memory.
fn listing(state: &State, path: &StorePath) -> Result<Vec<u8>> {
    let shown = state.store.store_dir().display(path);
    let (reader, writer) = io::pipe().map_err(|source| ServeError::Io {
        op: "creating a pipe to list",
        path: shown.clone(),
        source,
    })?;
    std::thread::scope(|s| {
        let dumper = s.spawn(move || {
            let mut w = BufWriter::with_capacity(crate::nar_stream::CHUNK, writer);
            state.store.nar_from_path(path, &mut w)?;
            w.flush().map_err(|e| firn_store::StoreError::Io {
                op: "writing the NAR of",
                path: path.base_name().into(),
                source: e,
            })
        });
        let mut out = Vec::new();
        let mut reader = BufReader::with_capacity(crate::nar_stream::CHUNK, reader);
        let listed = firn_format::nar::listing::write_listing(&mut reader, &mut out, true);
        // Unblock the dumper if the listing stopped early.
        drop(reader);
        match dumper.join() {
            Err(_) => Err(ServeError::Panicked {
                op: "dumping",
                path: shown.clone(),
            }),
            Ok(Err(source)) => Err(ServeError::store("dumping", shown.clone(), source)),
            Ok(Ok(())) => listed.map(|_| out).map_err(|source| ServeError::Listing {
                path: shown.clone(),
                source: Box::new(source),
            }),
        }
    })
}

/// The build log of `path` (a `.drv`, or a valid path whose deriver is used).
async fn log(state: &Arc<State>, path: StorePath) -> Result<Reply> {
    let drv = if path.is_derivation() {
        path
    } else {
        match lookup(state, path.hash_part().to_string()).await? {
            Some(ValidPathInfo {
                deriver: Some(d), ..
            }) => d,
            _ => return Ok(Reply::not_found()),
        }
    };
    let log_dir = state.log_dir.clone();
    let d = drv.clone();
    let shown_drv = || drv.base_name().to_string();
    let found = blocking(&state.queries, "opening the log of", shown_drv, move || {
        logs::open_log(&log_dir, &d).map_err(|source| ServeError::Io {
            op: "opening the build log of",
            path: d.base_name().to_string(),
            source,
        })
    })
    .await?;
    let Some(log) = found else {
        return Ok(Reply::not_found());
    };
    let what = format!("log of '{}'", drv.base_name());
    let shown = log.path.display().to_string();
    let (len, produce): (Option<u64>, Producer) = if log.compressed {
        let produce = Box::new(move |w: &mut ChunkWriter| {
            let mut d = bzip2::read::MultiBzDecoder::new(BufReader::new(log.file));
            copy_exact(&mut d, w, None, "decompressing log file", &shown)
        });
        (None, produce)
    } else {
        let size = log.size;
        let produce = Box::new(move |w: &mut ChunkWriter| {
            copy_exact(
                &mut log.file.take(size),
                w,
                Some(size),
                "reading log file",
                &shown,
            )
        });
        (Some(size), produce)
    };
    Ok(Reply::stream(
        StatusCode::OK,
        "text/plain; charset=utf-8",
        what,
        len,
        produce,
    ))
}

/// Copy `r` to `w`; with `len`, exactly that many bytes.
fn copy_exact(
    r: &mut dyn Read,
    w: &mut ChunkWriter,
    len: Option<u64>,
    op: &'static str,
    path: &str,
) -> Result<()> {
    let io_err = |source| ServeError::Io {
        op,
        path: path.to_string(),
        source,
    };
    let n = io::copy(r, w).map_err(io_err)?;
    match len {
        Some(l) if l != n => Err(io_err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the file shrank while being sent",
        ))),
        _ => Ok(()),
    }
}
