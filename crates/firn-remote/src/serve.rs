//! The `nix-store --serve` protocol (CppNix 2.8's version 2.7), over any byte stream: as a
//! client, an `ssh://HOST` store runs `nix-store --serve --write` on the host through `ssh`
//! (or, for `localhost`, through `sh -c`, as CppNix does) and speaks to it on its
//! stdin/stdout; as a server, [`serve`] answers on a reader/writer pair.
//!
//! Commands: query valid paths (1), query path infos (2), dump a path's NAR (3), import
//! paths (4), export paths (5), build paths (6), query a closure (7), build a derivation sent
//! whole (8, what CppNix's remote-build hook uses; see [`crate::build`]), add a path from its
//! NAR (9).

use std::collections::BTreeSet;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Mutex;

use firn_format::derivation::Derivation;
use firn_format::hash::HashFormat;
use firn_format::{ContentAddress, Hash, HashAlgo, StoreDir, StorePath};
use firn_store::{LocalStore, ValidPathInfo};

use crate::build::{
    realisations, write_basic_derivation, BuildOptions, BuildResult, BuildStatus, WireDerivation,
};
use crate::wire::*;
use crate::{RemoteError, Result};

pub const MAGIC_1: u64 = 0x390c9deb;
pub const MAGIC_2: u64 = 0x5452eecb;
pub const VERSION: u64 = 0x207;

pub const CMD_QUERY_VALID_PATHS: u64 = 1;
pub const CMD_QUERY_PATH_INFOS: u64 = 2;
pub const CMD_DUMP_STORE_PATH: u64 = 3;
pub const CMD_IMPORT_PATHS: u64 = 4;
pub const CMD_EXPORT_PATHS: u64 = 5;
pub const CMD_BUILD_PATHS: u64 = 6;
pub const CMD_QUERY_CLOSURE: u64 = 7;
pub const CMD_BUILD_DERIVATION: u64 = 8;
pub const CMD_ADD_TO_STORE_NAR: u64 = 9;

fn minor(v: u64) -> u64 {
    v & 0xff
}

/// How to reach the remote `nix-store` (the `ssh://` URI's parameters).
#[derive(Clone, Debug, Default)]
pub struct SshParams {
    /// `remote-program` (default `nix-store`).
    pub remote_program: Option<String>,
    /// `remote-store`: `--store` for the remote command.
    pub remote_store: Option<String>,
    /// `ssh-key`: `-i FILE`.
    pub ssh_key: Option<String>,
    /// `compress`: `-C`.
    pub compress: bool,
}

struct Conn {
    child: Child,
    to: BufWriter<ChildStdin>,
    from: BufReader<ChildStdout>,
    version: u64,
    good: bool,
}

impl Conn {
    /// Close the session: the server sees end-of-file and exits; then it is reaped.
    fn close(self) {
        let Conn {
            mut child,
            mut to,
            from,
            ..
        } = self;
        let _ = to.flush();
        drop(to);
        drop(from);
        let _ = child.wait();
    }
}

/// An `ssh://HOST` store: one `nix-store --serve --write` session, used by one operation at
/// a time.
pub struct SshStore {
    host: String,
    params: SshParams,
    sd: StoreDir,
    conn: Mutex<Option<Conn>>,
}

/// A paired, quoted string for `sh -c`.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

impl SshStore {
    /// Connect to `host` (`user@host` allowed) and exchange the greeting.
    pub fn open(host: &str, params: SshParams, sd: &StoreDir) -> Result<SshStore> {
        let s = SshStore {
            host: host.to_string(),
            params,
            sd: sd.clone(),
            conn: Mutex::new(None),
        };
        let conn = s.connect()?;
        *s.conn.lock().unwrap_or_else(|p| p.into_inner()) = Some(conn);
        Ok(s)
    }

    pub fn uri(&self) -> String {
        format!("ssh://{}", self.host)
    }

    pub fn store_dir(&self) -> &StoreDir {
        &self.sd
    }

    /// End the session now (also done when the store is dropped).
    pub fn close(&self) {
        if let Some(c) = self.conn.lock().unwrap_or_else(|p| p.into_inner()).take() {
            c.close();
        }
    }

    fn io(&self, op: &'static str) -> impl Fn(io::Error) -> RemoteError + '_ {
        move |e| RemoteError::Io {
            op,
            host: self.host.clone(),
            source: e,
        }
    }

    fn command(&self) -> Command {
        let mut remote = format!(
            "{} --serve --write",
            self.params.remote_program.as_deref().unwrap_or("nix-store")
        );
        if let Some(st) = self
            .params
            .remote_store
            .as_deref()
            .filter(|s| !s.is_empty())
        {
            remote.push_str(" --store ");
            remote.push_str(&shell_quote(st));
        }
        if self.host == "localhost" {
            let mut c = Command::new("sh");
            c.arg("-c").arg(remote);
            return c;
        }
        let mut c = Command::new("ssh");
        c.arg(&self.host).args(["-x", "-a"]);
        if let Ok(opts) = std::env::var("NIX_SSHOPTS") {
            c.args(opts.split_whitespace());
        }
        if let Some(k) = &self.params.ssh_key {
            c.args(["-i", k]);
        }
        if self.params.compress {
            c.arg("-C");
        }
        c.arg(remote);
        c
    }

    fn connect(&self) -> Result<Conn> {
        let mut child = self
            .command()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(self.io("starting ssh for"))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(RemoteError::Connect(self.host.clone()));
        };
        let mut to = BufWriter::new(stdin);
        let mut from = BufReader::new(stdout);
        let greet = (|| -> io::Result<u64> {
            write_u64(&mut to, MAGIC_1)?;
            write_u64(&mut to, VERSION)?;
            to.flush()?;
            read_u64(&mut from)
        })();
        let magic = match greet {
            Ok(m) => m,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(RemoteError::Connect(self.host.clone()));
            }
        };
        if magic != MAGIC_2 {
            let _ = child.kill();
            let _ = child.wait();
            return Err(RemoteError::Mismatch {
                host: self.host.clone(),
                got: String::new(),
            });
        }
        let version = read_u64(&mut from).map_err(self.io("reading the protocol version of"))?;
        if version & 0xff00 != 0x200 || minor(version) < 4 {
            let _ = child.kill();
            let _ = child.wait();
            return Err(RemoteError::Version {
                host: self.host.clone(),
                version,
            });
        }
        // The client's version was sent with the magic.
        Ok(Conn {
            child,
            to,
            from,
            version,
            good: true,
        })
    }

    /// Run `f` on the connection (reconnecting if the last one broke).
    fn with_conn<T>(&self, f: impl FnOnce(&mut Conn) -> Result<T>) -> Result<T> {
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if guard.as_ref().is_none_or(|c| !c.good) {
            if let Some(old) = guard.take() {
                old.close();
            }
            *guard = Some(self.connect()?);
        }
        let conn = guard
            .as_mut()
            .ok_or_else(|| RemoteError::Connect(self.host.clone()))?;
        let r = f(conn);
        if r.is_err() {
            conn.good = false;
        }
        r
    }

    fn paths_out<'a>(&'a self, paths: impl IntoIterator<Item = &'a StorePath>) -> Vec<String> {
        paths.into_iter().map(|p| self.sd.display(p)).collect()
    }

    fn parse_paths(&self, v: Vec<String>) -> Result<BTreeSet<StorePath>> {
        v.iter()
            .map(|s| {
                self.sd.parse(s).map_err(|e| RemoteError::Protocol {
                    host: self.host.clone(),
                    why: e.to_string(),
                })
            })
            .collect()
    }

    /// Which of `paths` the remote store has.
    pub fn query_valid_paths(&self, paths: &BTreeSet<StorePath>) -> Result<BTreeSet<StorePath>> {
        self.query_valid_paths_substituting(paths, false)
    }

    /// Which of `paths` the remote store has; with `substitute`, it first fetches the missing
    /// ones from its own substituters (a server without `--write` ignores the flag).
    pub fn query_valid_paths_substituting(
        &self,
        paths: &BTreeSet<StorePath>,
        substitute: bool,
    ) -> Result<BTreeSet<StorePath>> {
        let out = self.paths_out(paths);
        let got = self.with_conn(|c| {
            let io = self.io("querying valid paths on");
            write_u64(&mut c.to, CMD_QUERY_VALID_PATHS).map_err(&io)?;
            write_u64(&mut c.to, 0).map_err(&io)?; // lock
            write_u64(&mut c.to, substitute as u64).map_err(&io)?;
            write_strings(&mut c.to, out.iter().map(String::as_str)).map_err(&io)?;
            c.to.flush().map_err(&io)?;
            read_strings(&mut c.from).map_err(&io)
        })?;
        self.parse_paths(got)
    }

    /// The infos of those of `paths` that are valid remotely.
    pub fn query_path_infos(&self, paths: &[StorePath]) -> Result<Vec<ValidPathInfo>> {
        let out = self.paths_out(paths);
        self.with_conn(|c| {
            let io = self.io("querying path info on");
            write_u64(&mut c.to, CMD_QUERY_PATH_INFOS).map_err(&io)?;
            write_strings(&mut c.to, out.iter().map(String::as_str)).map_err(&io)?;
            c.to.flush().map_err(&io)?;
            let mut infos = Vec::new();
            loop {
                let p = read_string(&mut c.from).map_err(&io)?;
                if p.is_empty() {
                    break;
                }
                let bad = |why: String| RemoteError::Protocol {
                    host: self.host.clone(),
                    why,
                };
                let path = self.sd.parse(&p).map_err(|e| bad(e.to_string()))?;
                let deriver = read_string(&mut c.from).map_err(&io)?;
                let refs = read_strings(&mut c.from).map_err(&io)?;
                let _download_size = read_u64(&mut c.from).map_err(&io)?;
                let nar_size = read_u64(&mut c.from).map_err(&io)?;
                let hash = read_string(&mut c.from).map_err(&io)?;
                let ca = read_string(&mut c.from).map_err(&io)?;
                let sigs = read_strings(&mut c.from).map_err(&io)?;
                let nar_hash = Hash::parse(&hash, None).map_err(|e| bad(e.to_string()))?;
                let mut info = ValidPathInfo::new(path, nar_hash, nar_size);
                if !deriver.is_empty() {
                    info.deriver = Some(self.sd.parse(&deriver).map_err(|e| bad(e.to_string()))?);
                }
                for r in refs {
                    info.references
                        .insert(self.sd.parse(&r).map_err(|e| bad(e.to_string()))?);
                }
                if !ca.is_empty() {
                    info.ca = Some(ContentAddress::parse(&ca).map_err(|e| bad(e.to_string()))?);
                }
                info.sigs = sigs.into_iter().collect();
                infos.push(info);
            }
            Ok(infos)
        })
    }

    /// The closure of `paths` in the remote store.
    pub fn query_closure(&self, paths: &BTreeSet<StorePath>) -> Result<BTreeSet<StorePath>> {
        let out = self.paths_out(paths);
        let got = self.with_conn(|c| {
            let io = self.io("querying a closure on");
            write_u64(&mut c.to, CMD_QUERY_CLOSURE).map_err(&io)?;
            write_u64(&mut c.to, 0).map_err(&io)?;
            write_strings(&mut c.to, out.iter().map(String::as_str)).map_err(&io)?;
            c.to.flush().map_err(&io)?;
            read_strings(&mut c.from).map_err(&io)
        })?;
        self.parse_paths(got)
    }

    /// Stream the NAR of `p` to `f`, which must read exactly one NAR from its reader.
    pub fn with_nar<T>(
        &self,
        p: &StorePath,
        f: impl FnOnce(&mut dyn Read) -> Result<T>,
    ) -> Result<T> {
        let path = self.sd.display(p);
        self.with_conn(|c| {
            let io = self.io("asking for a NAR from");
            write_u64(&mut c.to, CMD_DUMP_STORE_PATH).map_err(&io)?;
            write_string(&mut c.to, &path).map_err(&io)?;
            c.to.flush().map_err(&io)?;
            f(&mut c.from)
        })
    }

    /// Write the NAR of `p` to `out`.
    pub fn dump_nar(&self, p: &StorePath, out: &mut dyn Write) -> Result<()> {
        self.with_nar(p, |r| {
            let mut tee = Tee { inner: r, out };
            firn_format::nar::parse(&mut tee, &mut firn_format::nar::reader::Validate)?;
            Ok(())
        })
    }

    /// Add a path to the remote store from its NAR (written by `produce`).
    pub fn add_to_store_nar(
        &self,
        info: &ValidPathInfo,
        produce: &mut dyn FnMut(&mut dyn Write) -> Result<()>,
    ) -> Result<()> {
        let sd = &self.sd;
        self.with_conn(|c| {
            if minor(c.version) < 5 {
                return Err(RemoteError::Other(format!(
                    "'{}' speaks 'nix-store --serve' {:#x}, too old to add paths to",
                    self.host, c.version
                )));
            }
            let io = self.io("adding a path to");
            let w = &mut c.to;
            write_u64(w, CMD_ADD_TO_STORE_NAR).map_err(&io)?;
            write_string(w, &sd.display(&info.path)).map_err(&io)?;
            let deriver = info
                .deriver
                .as_ref()
                .map(|d| sd.display(d))
                .unwrap_or_default();
            write_string(w, &deriver).map_err(&io)?;
            write_string(w, &info.nar_hash.encode(HashFormat::Base16, false)).map_err(&io)?;
            let refs = self.paths_out(&info.references);
            write_strings(w, refs.iter().map(String::as_str)).map_err(&io)?;
            write_u64(w, info.registration_time.max(0) as u64).map_err(&io)?;
            write_u64(w, info.nar_size).map_err(&io)?;
            write_u64(w, info.ultimate as u64).map_err(&io)?;
            write_strings(w, info.sigs.iter().map(String::as_str)).map_err(&io)?;
            let ca = info.ca.as_ref().map(|c| c.to_string()).unwrap_or_default();
            write_string(w, &ca).map_err(&io)?;
            let mut counting = CountingWriter { inner: w, n: 0 };
            produce(&mut counting)?;
            if counting.n != info.nar_size {
                return Err(RemoteError::Other(format!(
                    "the NAR of '{}' has {} bytes, not {} as registered",
                    sd.display(&info.path),
                    counting.n,
                    info.nar_size
                )));
            }
            c.to.flush().map_err(&io)?;
            if read_u64(&mut c.from).map_err(&io)? != 1 {
                return Err(RemoteError::Other(format!(
                    "failed to add path '{}' to remote host '{}'",
                    sd.display(&info.path),
                    self.host
                )));
            }
            Ok(())
        })
    }

    /// Build `drv` on the remote store as `drv_path` (`cmdBuildDerivation`): its input
    /// sources must be valid there already; the outputs are valid there afterwards if the
    /// result says so.
    pub fn build_derivation(
        &self,
        drv_path: &StorePath,
        drv: &Derivation,
        options: &BuildOptions,
    ) -> Result<BuildResult> {
        let path = self.sd.display(drv_path);
        self.with_conn(|c| {
            let io = self.io("building a derivation on");
            write_u64(&mut c.to, CMD_BUILD_DERIVATION).map_err(&io)?;
            write_string(&mut c.to, &path).map_err(&io)?;
            write_basic_derivation(&mut c.to, &self.sd, drv).map_err(&io)?;
            options.write(&mut c.to, c.version).map_err(&io)?;
            c.to.flush().map_err(&io)?;
            BuildResult::read(&mut c.from, c.version).map_err(&io)
        })
    }
}

impl Drop for SshStore {
    fn drop(&mut self) {
        self.close();
    }
}

struct Tee<'a> {
    inner: &'a mut dyn Read,
    out: &'a mut dyn Write,
}

impl Read for Tee<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out.write_all(&buf[..n])?;
        Ok(n)
    }
}

struct CountingWriter<'a> {
    inner: &'a mut dyn Write,
    n: u64,
}

impl Write for CountingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// What the server does for `cmdBuildPaths`: build the given `path[!outputs]` strings with the
/// client's options; `Err((status, message))` on failure.
pub type BuildHook<'a> =
    dyn FnMut(&[String], &BuildOptions) -> std::result::Result<(), (u64, String)> + 'a;

/// What the server does for `cmdBuildDerivation`: build all outputs of the derivation (checked
/// already, without input derivations) as its `.drv` path, which need not be valid, with the
/// client's options. The realisations of a successful result are filled in by the server if
/// the hook leaves them out.
pub type BuildDerivationHook<'a> =
    dyn FnMut(&StorePath, &Derivation, &BuildOptions) -> BuildResult + 'a;

/// What the server does when a client asks for valid paths with the `substitute` flag (as
/// `nix copy --substitute-on-destination` and `nix-copy-closure -s` do): try to fetch the
/// given paths (missing, not derivations) from the store's substituters. Failures are for the
/// hook to report (as warnings): the answer is then simply what is valid.
pub type SubstituteHook<'a> = dyn FnMut(&BTreeSet<StorePath>) + 'a;

/// What the server does beyond answering from the store.
pub struct Hooks<'a> {
    pub build: &'a mut BuildHook<'a>,
    pub build_derivation: &'a mut BuildDerivationHook<'a>,
    pub substitute: &'a mut SubstituteHook<'a>,
}

/// Serve one session of the protocol on `input`/`output` for `store` until the client hangs
/// up. Without `write`, commands that change the store are refused (which ends the session,
/// as in CppNix).
pub fn serve(
    store: &LocalStore,
    write: bool,
    input: &mut dyn Read,
    output: &mut dyn Write,
    hooks: Hooks<'_>,
) -> Result<()> {
    let Hooks {
        build,
        build_derivation,
        substitute,
    } = hooks;
    let sd = store.store_dir().clone();
    let io = |op: &'static str| {
        move |e: io::Error| RemoteError::Io {
            op,
            host: "the client".into(),
            source: e,
        }
    };
    let magic = read_u64(input).map_err(io("reading the greeting of"))?;
    if magic != MAGIC_1 {
        return Err(RemoteError::Other("protocol mismatch".into()));
    }
    write_u64(output, MAGIC_2).map_err(io("greeting"))?;
    write_u64(output, VERSION).map_err(io("greeting"))?;
    output.flush().map_err(io("greeting"))?;
    let client = read_u64(input).map_err(io("reading the version of"))?;
    let parse = |v: Vec<String>| -> Result<Vec<StorePath>> {
        v.iter()
            .map(|s| sd.parse(s).map_err(|e| RemoteError::Other(e.to_string())))
            .collect()
    };
    let refuse = |what: &str| -> Result<()> {
        if write {
            Ok(())
        } else {
            Err(RemoteError::Other(format!("{what} is not allowed")))
        }
    };
    loop {
        let cmd = match read_u64(input) {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(io("reading a command from")(e)),
        };
        let rd = io("reading a request from");
        let wr = io("answering");
        match cmd {
            CMD_QUERY_VALID_PATHS => {
                let lock = read_bool(input).map_err(&rd)?;
                let subst = read_bool(input).map_err(&rd)?;
                let paths = parse(read_strings(input).map_err(&rd)?)?;
                if lock && write {
                    for p in &paths {
                        store.add_temp_root(p)?;
                    }
                }
                // As CppNix: only a server that may change the store substitutes, and never
                // derivations (nothing is built).
                if subst && write {
                    let mut missing = BTreeSet::new();
                    for p in paths.iter().filter(|p| !p.is_derivation()) {
                        if !store.is_valid_path(p)? {
                            missing.insert(p.clone());
                        }
                    }
                    if !missing.is_empty() {
                        substitute(&missing);
                    }
                }
                let mut valid = Vec::new();
                for p in &paths {
                    if store.is_valid_path(p)? {
                        valid.push(sd.display(p));
                    }
                }
                valid.sort();
                valid.dedup();
                write_strings(output, valid.iter().map(String::as_str)).map_err(&wr)?;
            }
            CMD_QUERY_PATH_INFOS => {
                let paths = parse(read_strings(input).map_err(&rd)?)?;
                for p in &paths {
                    let Some(info) = store.query_path_info(p)? else {
                        continue;
                    };
                    write_string(output, &sd.display(&info.path)).map_err(&wr)?;
                    let deriver = info
                        .deriver
                        .as_ref()
                        .map(|d| sd.display(d))
                        .unwrap_or_default();
                    write_string(output, &deriver).map_err(&wr)?;
                    let refs: Vec<String> = info.references.iter().map(|r| sd.display(r)).collect();
                    write_strings(output, refs.iter().map(String::as_str)).map_err(&wr)?;
                    write_u64(output, info.nar_size).map_err(&wr)?;
                    write_u64(output, info.nar_size).map_err(&wr)?;
                    if minor(client) >= 4 {
                        write_string(output, &info.nar_hash.encode(HashFormat::Nix32, true))
                            .map_err(&wr)?;
                        let ca = info.ca.as_ref().map(|c| c.to_string()).unwrap_or_default();
                        write_string(output, &ca).map_err(&wr)?;
                        write_strings(output, info.sigs.iter().map(String::as_str)).map_err(&wr)?;
                    }
                }
                write_string(output, "").map_err(&wr)?;
            }
            CMD_DUMP_STORE_PATH => {
                let p = read_string(input).map_err(&rd)?;
                let p = sd
                    .parse(&p)
                    .map_err(|e| RemoteError::Other(e.to_string()))?;
                store.nar_from_path(&p, output)?;
            }
            CMD_IMPORT_PATHS => {
                refuse("importing paths")?;
                store.import_paths(input)?;
                write_u64(output, 1).map_err(&wr)?;
            }
            CMD_EXPORT_PATHS => {
                let _obsolete = read_u64(input).map_err(&rd)?;
                let paths = parse(read_strings(input).map_err(&rd)?)?;
                store.export_paths(&paths.into_iter().collect(), output)?;
            }
            CMD_BUILD_PATHS => {
                refuse("building paths")?;
                let paths = read_strings(input).map_err(&rd)?;
                let options = BuildOptions::read(input, client).map_err(&rd)?;
                match build(&paths, &options) {
                    Ok(()) => write_u64(output, 0).map_err(&wr)?,
                    Err((status, msg)) => {
                        write_u64(output, status).map_err(&wr)?;
                        write_string(output, &msg).map_err(&wr)?;
                    }
                }
            }
            CMD_QUERY_CLOSURE => {
                let include_outputs = read_bool(input).map_err(&rd)?;
                let paths = parse(read_strings(input).map_err(&rd)?)?;
                let closure = closure(store, paths, include_outputs)?;
                let out: Vec<String> = closure.iter().map(|p| sd.display(p)).collect();
                write_strings(output, out.iter().map(String::as_str)).map_err(&wr)?;
            }
            CMD_ADD_TO_STORE_NAR => {
                refuse("importing paths")?;
                let bad = |e: String| RemoteError::Other(e);
                let path = sd
                    .parse(&read_string(input).map_err(&rd)?)
                    .map_err(|e| bad(e.to_string()))?;
                let deriver = read_string(input).map_err(&rd)?;
                let hash = read_string(input).map_err(&rd)?;
                let hash =
                    Hash::parse(&hash, Some(HashAlgo::Sha256)).map_err(|e| bad(e.to_string()))?;
                let refs = parse(read_strings(input).map_err(&rd)?)?;
                let registration_time = read_u64(input).map_err(&rd)?;
                let nar_size = read_u64(input).map_err(&rd)?;
                let ultimate = read_bool(input).map_err(&rd)?;
                let sigs = read_strings(input).map_err(&rd)?;
                let ca = read_string(input).map_err(&rd)?;
                if nar_size == 0 {
                    return Err(bad(
                        "narInfo is too old and missing the narSize field".into()
                    ));
                }
                let mut info = ValidPathInfo::new(path, hash, nar_size);
                if !deriver.is_empty() {
                    info.deriver = Some(sd.parse(&deriver).map_err(|e| bad(e.to_string()))?);
                }
                info.references = refs.into_iter().collect();
                info.registration_time = registration_time.min(i64::MAX as u64) as i64;
                info.ultimate = ultimate;
                info.sigs = sigs.into_iter().collect();
                if !ca.is_empty() {
                    info.ca = Some(ContentAddress::parse(&ca).map_err(|e| bad(e.to_string()))?);
                }
                let mut sized = input.take(nar_size);
                let r = store.add_nar(&info, &mut sized);
                // Whatever happened, keep the stream in step.
                io::copy(&mut sized, &mut io::sink()).map_err(&rd)?;
                r?;
                write_u64(output, 1).map_err(&wr)?;
            }
            CMD_BUILD_DERIVATION => {
                refuse("building paths")?;
                // All of the request is read before anything is checked, so that a derivation
                // that makes no sense fails its build and leaves the session in step.
                let drv_path = read_string(input).map_err(&rd)?;
                let wire = WireDerivation::read(input).map_err(&rd)?;
                let options = BuildOptions::read(input, client).map_err(&rd)?;
                let result =
                    build_sent_derivation(&sd, &drv_path, &wire, &options, build_derivation);
                result.write(output, client).map_err(&wr)?;
            }
            other => return Err(RemoteError::Other(format!("unknown serve command {other}"))),
        }
        output.flush().map_err(io("answering"))?;
    }
    Ok(())
}

/// Check a derivation a client sent and have `hook` build it; a derivation that makes no sense
/// is a failed build (`MiscFailure`, as CppNix's errors before a build starts).
fn build_sent_derivation(
    sd: &StoreDir,
    drv_path: &str,
    wire: &WireDerivation,
    options: &BuildOptions,
    hook: &mut BuildDerivationHook<'_>,
) -> BuildResult {
    let checked = sd
        .parse(drv_path)
        .map_err(|e| format!("cannot build '{drv_path}': {e}"))
        .and_then(|p| {
            let drv = wire.to_derivation(sd, &p).map_err(|e| e.to_string())?;
            Ok((p, drv))
        });
    let (path, drv) = match checked {
        Ok(x) => x,
        Err(msg) => return BuildResult::new(BuildStatus::MiscFailure, msg),
    };
    let mut result = hook(&path, &drv, options);
    if result.status.success() && result.built_outputs.is_empty() {
        let outputs = drv
            .outputs
            .iter()
            .filter_map(|(name, o)| Some((name.clone(), o.path.clone()?)))
            .collect();
        match realisations(sd, &path, &drv, &outputs) {
            Ok(r) => result.built_outputs = r,
            Err(e) => return BuildResult::new(BuildStatus::MiscFailure, e.to_string()),
        }
    }
    result
}

/// The closure of `paths` in `store` (with the outputs of derivations when asked).
fn closure(
    store: &LocalStore,
    paths: Vec<StorePath>,
    include_outputs: bool,
) -> Result<BTreeSet<StorePath>> {
    let mut seen = BTreeSet::new();
    let mut stack = paths;
    while let Some(p) = stack.pop() {
        if !seen.insert(p.clone()) {
            continue;
        }
        let info = store.query_path_info(&p)?.ok_or_else(|| {
            RemoteError::Store(firn_store::StoreError::InvalidPath(
                store.store_dir().display(&p),
            ))
        })?;
        stack.extend(
            info.references
                .iter()
                .filter(|r| !seen.contains(*r))
                .cloned(),
        );
        if include_outputs && p.is_derivation() {
            for out in store.query_derivation_outputs(&p)?.into_values() {
                if store.is_valid_path(&out)? {
                    stack.push(out);
                }
            }
        }
    }
    Ok(seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A session that asks which of `paths` are valid (with `substitute`), then hangs up:
    /// the server's answer and what its substitute hook was asked for.
    fn ask(
        store: &LocalStore,
        write: bool,
        substitute: bool,
        paths: &[String],
    ) -> (Vec<String>, Vec<BTreeSet<StorePath>>) {
        let mut req = Vec::new();
        write_u64(&mut req, MAGIC_1).unwrap();
        write_u64(&mut req, VERSION).unwrap();
        write_u64(&mut req, CMD_QUERY_VALID_PATHS).unwrap();
        write_u64(&mut req, 0).unwrap();
        write_u64(&mut req, substitute as u64).unwrap();
        write_strings(&mut req, paths.iter().map(String::as_str)).unwrap();
        let mut out = Vec::new();
        let mut asked = Vec::new();
        let mut build =
            |_: &[String], _: &BuildOptions| -> std::result::Result<(), (u64, String)> { Ok(()) };
        let mut build_drv = |_: &StorePath, _: &Derivation, _: &BuildOptions| {
            BuildResult::new(BuildStatus::MiscFailure, "not here")
        };
        let mut subst = |missing: &BTreeSet<StorePath>| asked.push(missing.clone());
        let hooks = Hooks {
            build: &mut build,
            build_derivation: &mut build_drv,
            substitute: &mut subst,
        };
        serve(store, write, &mut &req[..], &mut out, hooks).unwrap();
        let mut r = &out[..];
        assert_eq!(read_u64(&mut r).unwrap(), MAGIC_2);
        assert_eq!(read_u64(&mut r).unwrap(), VERSION);
        (read_strings(&mut r).unwrap(), asked)
    }

    /// What a build-derivation hook was asked to build.
    type Asked = Vec<(StorePath, Derivation, BuildOptions)>;

    /// A session that sends `cmdBuildDerivation` for each of `requests` (a `.drv` path and a
    /// basic derivation, built or refused by a hook that records what it got and answers
    /// `answer`), then asks which paths are valid (to show the session is still in step).
    fn build_session(
        write: bool,
        requests: &[(String, Vec<u8>)],
        answer: BuildResult,
    ) -> (Result<Vec<u8>>, Asked) {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(firn_store::LocalStoreConfig {
            root: Some(dir.path().to_path_buf()),
            ..Default::default()
        })
        .unwrap();
        let options = BuildOptions {
            max_silent_time: 7,
            build_timeout: 8,
            max_log_size: 9,
            build_repeat: 0,
            enforce_determinism: false,
            keep_failed: true,
        };
        let mut req = Vec::new();
        write_u64(&mut req, MAGIC_1).unwrap();
        write_u64(&mut req, VERSION).unwrap();
        for (drv_path, drv) in requests {
            write_u64(&mut req, CMD_BUILD_DERIVATION).unwrap();
            write_string(&mut req, drv_path).unwrap();
            req.extend_from_slice(drv);
            options.write(&mut req, VERSION).unwrap();
        }
        write_u64(&mut req, CMD_QUERY_VALID_PATHS).unwrap();
        write_u64(&mut req, 0).unwrap();
        write_u64(&mut req, 0).unwrap();
        write_strings(&mut req, std::iter::empty()).unwrap();
        let mut got = Vec::new();
        let mut build =
            |_: &[String], _: &BuildOptions| -> std::result::Result<(), (u64, String)> { Ok(()) };
        let mut build_drv = |p: &StorePath, d: &Derivation, o: &BuildOptions| {
            got.push((p.clone(), d.clone(), o.clone()));
            answer.clone()
        };
        let mut subst = |_: &BTreeSet<StorePath>| {};
        let hooks = Hooks {
            build: &mut build,
            build_derivation: &mut build_drv,
            substitute: &mut subst,
        };
        let mut out = Vec::new();
        let r = serve(&store, write, &mut &req[..], &mut out, hooks).map(|()| out);
        (r, got)
    }

    fn basic(drv: &Derivation) -> Vec<u8> {
        let mut b = Vec::new();
        write_basic_derivation(&mut b, &StoreDir::default(), drv).unwrap();
        b
    }

    fn hello() -> (String, Derivation) {
        let sd = StoreDir::default();
        let out = sd
            .parse("/nix/store/11111111111111111111111111111111-hello")
            .unwrap();
        let drv = Derivation {
            name: "hello".into(),
            outputs: [(
                "out".to_string(),
                firn_format::DerivationOutput::input_addressed(out),
            )]
            .into(),
            platform: "x86_64-linux".into(),
            builder: "/bin/sh".into(),
            ..Default::default()
        };
        (
            "/nix/store/00000000000000000000000000000000-hello.drv".into(),
            drv,
        )
    }

    #[test]
    fn build_derivation_reaches_the_hook_and_answers_with_realisations() {
        let (path, drv) = hello();
        let (out, got) = build_session(
            true,
            &[(path.clone(), basic(&drv))],
            BuildResult::new(BuildStatus::Built, ""),
        );
        let out = out.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(StoreDir::default().display(&got[0].0), path);
        assert_eq!(got[0].1, drv);
        assert_eq!(got[0].2.build_timeout, 8);
        assert!(got[0].2.keep_failed);
        let mut r = &out[16..];
        let res = BuildResult::read(&mut r, VERSION).unwrap();
        assert_eq!(res.status, BuildStatus::Built);
        assert_eq!(res.built_outputs.len(), 1);
        assert!(res.built_outputs[0].0.ends_with("!out"));
        assert!(res.built_outputs[0]
            .1
            .contains("11111111111111111111111111111111-hello"));
        assert!(read_strings(&mut r).unwrap().is_empty());
        assert!(r.is_empty());
    }

    #[test]
    fn bad_derivations_fail_their_build_and_keep_the_session() {
        let (path, drv) = hello();
        let mut unknown_algo = drv.clone();
        unknown_algo.outputs.insert(
            "out".into(),
            firn_format::DerivationOutput {
                path: None,
                hash_algo: "r:sha257".into(),
                hash: String::new(),
            },
        );
        let requests = [
            (path.clone(), basic(&unknown_algo)),
            (
                "/nix/store/00000000000000000000000000000000-hello".into(),
                basic(&drv),
            ),
            ("not a path".into(), basic(&drv)),
        ];
        let (out, got) = build_session(true, &requests, BuildResult::new(BuildStatus::Built, ""));
        let out = out.unwrap();
        assert!(got.is_empty(), "the hook must not see bad derivations");
        let mut r = &out[16..];
        for want in ["sha257", "'.drv'", "not a path"] {
            let res = BuildResult::read(&mut r, VERSION).unwrap();
            assert_eq!(res.status, BuildStatus::MiscFailure);
            assert!(res.error_msg.contains(want), "{}", res.error_msg);
            assert!(res.built_outputs.is_empty());
        }
        assert!(read_strings(&mut r).unwrap().is_empty());
        // A failed build has no realisations either.
        let (out, _) = build_session(
            true,
            &[(path.clone(), basic(&drv))],
            BuildResult::new(BuildStatus::PermanentFailure, "builder failed"),
        );
        let res = BuildResult::read(&mut &out.unwrap()[16..], VERSION).unwrap();
        assert_eq!(res.status, BuildStatus::PermanentFailure);
        assert!(res.built_outputs.is_empty());
        // A stream cut short in the derivation ends the session with an error.
        let mut cut = basic(&drv);
        cut.truncate(20);
        let mut req = Vec::new();
        write_u64(&mut req, MAGIC_1).unwrap();
        write_u64(&mut req, VERSION).unwrap();
        write_u64(&mut req, CMD_BUILD_DERIVATION).unwrap();
        write_string(&mut req, &path).unwrap();
        req.extend_from_slice(&cut);
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(firn_store::LocalStoreConfig {
            root: Some(dir.path().to_path_buf()),
            ..Default::default()
        })
        .unwrap();
        let mut build =
            |_: &[String], _: &BuildOptions| -> std::result::Result<(), (u64, String)> { Ok(()) };
        let mut build_drv = |_: &StorePath, _: &Derivation, _: &BuildOptions| -> BuildResult {
            panic!("a cut request reached the hook")
        };
        let mut subst = |_: &BTreeSet<StorePath>| {};
        let hooks = Hooks {
            build: &mut build,
            build_derivation: &mut build_drv,
            substitute: &mut subst,
        };
        assert!(serve(&store, true, &mut &req[..], &mut Vec::new(), hooks).is_err());
    }

    #[test]
    fn build_derivation_needs_write() {
        let (path, drv) = hello();
        let (out, got) = build_session(
            false,
            &[(path, basic(&drv))],
            BuildResult::new(BuildStatus::Built, ""),
        );
        let e = out.unwrap_err().to_string();
        assert!(e.contains("building paths is not allowed"), "{e}");
        assert!(got.is_empty());
    }

    #[test]
    fn query_valid_paths_substitutes_only_when_asked_and_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(firn_store::LocalStoreConfig {
            root: Some(dir.path().to_path_buf()),
            ..Default::default()
        })
        .unwrap();
        let sd = store.store_dir().clone();
        let valid = store.add_text("here", b"here", &BTreeSet::new()).unwrap();
        let missing = sd
            .parse("/nix/store/11111111111111111111111111111111-missing")
            .unwrap();
        let drv = sd
            .parse("/nix/store/22222222222222222222222222222222-x.drv")
            .unwrap();
        let paths: Vec<String> = [&valid, &missing, &drv]
            .iter()
            .map(|p| sd.display(p))
            .collect();
        let (answer, asked) = ask(&store, true, true, &paths);
        assert_eq!(answer, vec![sd.display(&valid)]);
        // Only the missing path that is not a derivation.
        assert_eq!(asked, vec![BTreeSet::from([missing.clone()])]);
        // Not asked for, or not allowed to write: no substitution.
        assert!(ask(&store, true, false, &paths).1.is_empty());
        assert!(ask(&store, false, true, &paths).1.is_empty());
        // Nothing missing: the hook is not called.
        assert!(ask(&store, true, true, &paths[..1]).1.is_empty());
    }
}
