//! The CLI side of building: settings to [`BuildSettings`], what-will-be-built messages, the
//! build display on stderr, failure reporting with CppNix's exit codes, and `result` links.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use firn_build::plan::Substitutable;
use firn_build::{BuildError, BuildSettings, DerivedPath, SandboxMode};
use firn_cache::substitute::{Available, Progress};
use firn_cache::Substituters;
use firn_format::StorePath;
use firn_store::LocalStore;
use std::collections::HashMap;
use std::sync::Mutex;

use crate::build_display::{Display, DisplayOptions};
use crate::context::{Ctx, Failure};
use crate::logger;

/// Flags shared by `nix-store -r`, `nix-build` and `nix build`.
#[derive(Clone, Debug, Default)]
pub struct BuildFlags {
    pub dry_run: bool,
    pub check: bool,
    pub keep_failed: bool,
    pub keep_going: bool,
    pub print_build_logs: bool,
    /// A legacy command (`nix-build`, `nix-store --realise`): as CppNix's, it logs plainly
    /// (`raw`, no status line) and shows the builders' output as it comes, unprefixed.
    pub legacy: bool,
    /// `-Q`/`--no-build-output` (legacy commands): the builders' output is not shown; a
    /// failure ends with its last lines instead.
    pub no_build_output: bool,
    /// Failures reported as CppNix's `buildPaths` reports them (as the legacy commands do,
    /// but without their logging): `nix flake check`.
    pub build_paths_errors: bool,
    /// The failures' messages are the error's (for an evaluation that builds: its error
    /// says why, as CppNix's does) rather than printed.
    pub failures_in_error: bool,
}

impl BuildFlags {
    /// Take a legacy command's build flag (`-K`, `-k`, `--check`, `--dry-run`) if `a` is one.
    /// `-L`/`--print-build-logs` is not one: CppNix 2.8's `nix-build` and `nix-store` reject
    /// it as an unknown flag (see `settings::NIX_COMMAND_ONLY`).
    pub fn take(&mut self, a: &str) -> bool {
        match a {
            "--dry-run" => self.dry_run = true,
            "--check" => self.check = true,
            "-K" | "--keep-failed" => self.keep_failed = true,
            "-k" | "--keep-going" => self.keep_going = true,
            _ => return false,
        }
        true
    }
}

fn duration(ctx: &Ctx, name: &str) -> Option<Duration> {
    ctx.settings
        .get(name)
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&n| n > 0)
        .map(Duration::from_secs)
}

/// The build settings from `nix.conf`, the environment and the command line.
pub fn build_settings(ctx: &Ctx, store: &LocalStore, flags: &BuildFlags) -> Result<BuildSettings> {
    let root = store.config().root.clone();
    let log_dir = match std::env::var_os("NIX_LOG_DIR") {
        Some(d) => PathBuf::from(d),
        None => firn_store::config::rooted(root.as_deref(), Path::new("/nix/var/log/nix")),
    };
    let mut s = BuildSettings::new(log_dir);
    let s_get = |n: &str| ctx.settings.get(n).unwrap_or("").to_string();
    s.max_jobs = match s_get("max-jobs").as_str() {
        "auto" => s.cores,
        "" => 1,
        v => v
            .parse()
            .map_err(|_| anyhow::anyhow!("invalid value '{v}' for 'max-jobs'"))?,
    };
    if s.max_jobs == 0 {
        anyhow::bail!("'max-jobs' is 0 and there are no remote builders, so nothing can be built");
    }
    // As CppNix 2.8, `cores = 0` reaches builders as `NIX_BUILD_CORES=0` (theirs to read
    // as "all cores"); unset, it is the number of cores.
    if let Ok(c) = s_get("cores").parse::<usize>() {
        s.cores = c;
    }
    s.sandbox = match s_get("sandbox").as_str() {
        "false" | "0" | "no" => SandboxMode::Off,
        "relaxed" => SandboxMode::Relaxed,
        _ => SandboxMode::On,
    };
    s.sandbox_fallback = ctx.settings.get("sandbox-fallback") != Some("false");
    s.substitute = ctx.settings.get_bool("substitute");
    s.sandbox_paths = ctx.settings.get_list("sandbox-paths");
    if let Some(d) = ctx
        .settings
        .get("sandbox-build-dir")
        .filter(|d| !d.is_empty())
    {
        s.sandbox_build_dir = d.to_string();
    }
    if let Some(d) = ctx.settings.get("build-dir").filter(|d| !d.is_empty()) {
        s.build_dir = PathBuf::from(d);
    }
    s.keep_going = flags.keep_going || ctx.settings.get_bool("keep-going");
    s.keep_failed = flags.keep_failed || ctx.settings.get_bool("keep-failed");
    s.timeout = duration(ctx, "timeout");
    s.max_silent_time = duration(ctx, "max-silent-time");
    if let Some(sys) = ctx.settings.get("system").filter(|v| !v.is_empty()) {
        s.system = sys.to_string();
    }
    s.extra_platforms = ctx.settings.get_list("extra-platforms");
    let features = ctx.settings.get_list("system-features");
    if !features.is_empty() {
        s.system_features = features.into_iter().collect();
    }
    // Features firn cannot provide are not claimed: `uid-range` builds (no uid ranges are
    // allocated) and `kvm` without /dev/kvm.
    s.system_features.remove("uid-range");
    if !Path::new("/dev/kvm").exists() {
        s.system_features.remove("kvm");
    }
    s.compress_build_log = ctx.settings.get("compress-build-log") != Some("false");
    s.keep_build_log = ctx.settings.get("keep-build-log") != Some("false");
    if let Some(n) = ctx.settings.get("log-lines").and_then(|v| v.parse().ok()) {
        s.log_lines = n;
    }
    s.impersonate_linux26 = ctx.settings.get("impersonate-linux-26") != Some("false");
    s.filter_syscalls = !matches!(
        ctx.settings.get("filter-syscalls"),
        Some("false" | "no" | "0")
    );
    s.allow_new_privileges = ctx.settings.get_bool("allow-new-privileges");
    // Build users only make sense for root; a group that does not exist (no Nix install
    // created it) means building as root, with a warning, rather than not building.
    // SAFETY: a plain getter.
    if unsafe { libc::geteuid() } == 0 {
        if let Some(g) = ctx
            .settings
            .get("build-users-group")
            .filter(|g| !g.is_empty())
        {
            if firn_build::users::group_exists(g) {
                s.build_users_group = Some(g.to_string());
            } else {
                eprintln!(
                    "warning: the group '{g}' specified in 'build-users-group' does not exist; builds run as root"
                );
            }
        }
    }
    s.user_pool_dir = std::env::var_os("NIX_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/nix/var/nix"));
    s.max_log_size = ctx
        .settings
        .get("max-build-log-size")
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&n| n > 0);
    s.run_diff_hook = ctx.settings.get_bool("run-diff-hook");
    s.diff_hook = ctx
        .settings
        .get("diff-hook")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from);
    s.post_build_hook = ctx
        .settings
        .get("post-build-hook")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from);
    s.secret_key_files = ctx
        .settings
        .get_list("secret-key-files")
        .into_iter()
        .map(PathBuf::from)
        .collect();
    s.log_tail = !log_display(ctx, flags).print_logs;
    Ok(s)
}

/// How a realisation shows itself on stderr, from `--log-format`, `-L` and `-Q`.
struct LogDisplay {
    /// The `--log-format` in effect (a legacy command's default is `raw`).
    format: String,
    /// The builders' output is shown as it comes (a failure then leaves out its last lines).
    print_logs: bool,
    /// Shown lines start with `<name>> ` (the new CLI and `bar-with-logs`).
    prefix: bool,
}

fn log_display(ctx: &Ctx, flags: &BuildFlags) -> LogDisplay {
    let mut format = ctx.settings.get("log-format").unwrap_or("").to_string();
    if flags.legacy && format.is_empty() {
        format = "raw".into();
    }
    // A legacy command in a plain format shows the logs unless told not to (`-Q`, CppNix's
    // `verbose-build`); elsewhere `-L`, `print-build-logs` or `bar-with-logs` do.
    let plain_legacy = flags.legacy && format == "raw";
    let print_logs = flags.print_build_logs
        || format == "bar-with-logs"
        || ctx.settings.get_bool("print-build-logs")
        || (plain_legacy && !flags.no_build_output);
    LogDisplay {
        print_logs: print_logs && format != "internal-json",
        prefix: !plain_legacy,
        format,
    }
}

/// CppNix's auto-GC: when the store's file system has less than `min-free` bytes available,
/// collect garbage until `max-free` bytes are (the derivations being realised, with their
/// closures, are held as temporary roots first).
fn auto_gc(ctx: &Ctx, store: &LocalStore, wanted: &[DerivedPath]) -> Result<()> {
    let num = |name: &str, default: u64| {
        ctx.settings
            .get(name)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(default)
    };
    let min_free = num("min-free", 0);
    if min_free == 0 {
        return Ok(());
    }
    let max_free = num("max-free", u64::MAX);
    let real = store.layout().real_store_dir.clone();
    let avail = free_bytes(&real)?;
    if avail >= min_free {
        return Ok(());
    }
    // What is about to be built must survive: the derivations and their closures.
    let mut stack: Vec<StorePath> = wanted
        .iter()
        .map(|w| match w {
            DerivedPath::Opaque(p) => p.clone(),
            DerivedPath::Built { drv, .. } => drv.clone(),
        })
        .collect();
    let mut seen = BTreeSet::new();
    while let Some(p) = stack.pop() {
        if !seen.insert(p.clone()) {
            continue;
        }
        store.add_temp_root(&p)?;
        if let Some(info) = store.query_path_info(&p)? {
            stack.extend(
                info.references
                    .iter()
                    .filter(|r| !seen.contains(*r))
                    .cloned(),
            );
        }
    }
    let to_free = max_free.saturating_sub(avail);
    eprintln!("running auto-GC to free {to_free} bytes");
    let opts = firn_store::gc::GcOptions {
        max_freed: to_free,
        keep_outputs: ctx.settings.get_bool("keep-outputs"),
        keep_derivations: ctx.settings.get_bool("keep-derivations"),
        ..firn_store::gc::GcOptions::default()
    };
    let res = store.collect_garbage(&opts)?;
    tracing::info!("auto-GC freed {} bytes", res.bytes_freed);
    Ok(())
}

/// Bytes available to unprivileged users on the file system holding `dir`.
fn free_bytes(dir: &Path) -> Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid C string and `st` a writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(anyhow::anyhow!(
            "getting the free space of '{}': {}",
            dir.display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

/// The planner's access to the substituters; remembers where each path is to be fetched from.
struct Finder<'a> {
    ctx: &'a Ctx,
    subs: std::sync::OnceLock<Option<Substituters>>,
    found: Mutex<HashMap<StorePath, Available>>,
}

impl Finder<'_> {
    fn subs(&self) -> Option<&Substituters> {
        self.subs
            .get_or_init(|| match self.ctx.substituters() {
                Ok(s) => s,
                Err(e) => {
                    eprintln!(
                        "warning: not using substituters: {}",
                        crate::report::error_text(e.as_ref())
                    );
                    None
                }
            })
            .as_ref()
    }
}

impl Substitutable for Finder<'_> {
    fn realisation(
        &self,
        _store: &LocalStore,
        id: &firn_store::realisations::DrvOutput,
    ) -> Result<Option<firn_store::realisations::Realisation>, BuildError> {
        Ok(self
            .subs()
            .and_then(|s| s.query_realisation(id))
            .map(|(_, r)| r))
    }

    fn closure(
        &self,
        store: &LocalStore,
        paths: &BTreeSet<StorePath>,
    ) -> Result<Option<BTreeSet<StorePath>>, BuildError> {
        let Some(subs) = self.subs() else {
            return Ok(None);
        };
        let r = subs
            .query_closure(store, paths)
            .map_err(|e| BuildError::Other(e.to_string()))?;
        Ok(match r {
            Ok(items) => {
                let mut found = self.found.lock().unwrap_or_else(|p| p.into_inner());
                let mut set = BTreeSet::new();
                for (p, a) in items {
                    set.insert(p.clone());
                    found.insert(p, a);
                }
                Some(set)
            }
            Err(_) => None,
        })
    }
}

/// The message for a failed substitution of `path`: `substituting 'P': E`, or the error
/// alone when it names the substitution already (as the download's errors do, with the
/// cache), so the path is not said twice.
fn substitution_failure(path: &str, e: &firn_cache::CacheError) -> String {
    let text = e.to_string();
    if text.starts_with(&format!("substituting '{path}'")) {
        text
    } else {
        format!("substituting '{path}': {text}")
    }
}

/// Fetch the planned substitutions, printing `copying path ... from ...` for each (unless
/// `quiet`); returns the failures.
fn fetch_substitutions(
    store: &LocalStore,
    f: &Finder<'_>,
    paths: &BTreeSet<StorePath>,
    quiet: bool,
) -> Vec<(StorePath, firn_cache::CacheError)> {
    let found = f.found.lock().unwrap_or_else(|p| p.into_inner());
    let items: Vec<(StorePath, Available)> = paths
        .iter()
        .filter_map(|p| found.get(p).map(|a| (p.clone(), a.clone())))
        .collect();
    drop(found);
    let sd = store.store_dir().clone();
    let Some(Some(subs)) = f.subs.get() else {
        return Vec::new();
    };
    // On a terminal, a status line under the `copying path` lines: paths done of all, and
    // MiB received of the NARs' total.
    let tty = std::io::stderr().is_terminal();
    let total_paths = items.len();
    let sizes: HashMap<&StorePath, u64> = items.iter().map(|(p, a)| (p, a.info.nar_size)).collect();
    let total_bytes: u64 = sizes.values().sum();
    struct FetchStatus {
        done: usize,
        bytes: BTreeMap<StorePath, u64>,
    }
    let state = Mutex::new(FetchStatus {
        done: 0,
        bytes: BTreeMap::new(),
    });
    let draw = |st: &FetchStatus, err: &mut std::io::StderrLock<'_>| {
        let got: u64 = st.bytes.values().sum();
        let mib = |n: u64| n as f64 / (1024.0 * 1024.0);
        let _ = write!(
            err,
            "\r\x1b[K[{}/{} paths fetched, {:.1}/{:.1} MiB]",
            st.done,
            total_paths,
            mib(got),
            mib(total_bytes)
        );
    };
    let failed = subs.fetch(store, &items, &|ev| {
        let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
        let mut err = std::io::stderr().lock();
        match ev {
            Progress::Start { path, from, .. } => {
                if tty {
                    let _ = write!(err, "\r\x1b[K");
                }
                if !quiet {
                    let text = format!("copying path '{}' from '{from}'...", sd.display(path));
                    logger::write_line(&mut err, logger::INFO, &text);
                }
            }
            Progress::Bytes { path, done } => {
                st.bytes.insert(path.clone(), done);
            }
            Progress::Done { path } => {
                st.done += 1;
                if let Some(&n) = sizes.get(path) {
                    st.bytes.insert(path.clone(), n);
                }
            }
        }
        if tty {
            draw(&st, &mut err);
        }
    });
    if tty {
        let _ = write!(std::io::stderr(), "\r\x1b[K");
    }
    failed
}

/// Print what would be built and fetched (`these N derivations will be built:`, `these N
/// paths will be fetched (...)`), as CppNix does.
fn print_missing(
    store: &LocalStore,
    plan: &firn_build::plan::Plan,
    finder: Option<&Finder<'_>>,
    level: u8,
) {
    let sd = store.store_dir();
    let mut err = std::io::stderr().lock();
    // Not what is only checked (`--check`), nor what only that waits for. In CppNix's order:
    // its topological sort of the derivations (referrers first), reversed.
    let nodes: BTreeMap<&StorePath, &firn_build::plan::Node> = plan
        .nodes
        .iter()
        .filter(|n| n.announced)
        .map(|n| (&n.drv_path, n))
        .collect();
    let set: BTreeSet<StorePath> = nodes.keys().map(|&p| p.clone()).collect();
    let mut announced = firn_store::topo::topo_sort(&set, |p| {
        nodes
            .get(p)
            .map(|n| {
                n.drv
                    .input_drvs
                    .keys()
                    .chain(&n.drv.input_srcs)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    })
    .unwrap_or_else(|_| set.iter().cloned().collect());
    announced.reverse();
    if !announced.is_empty() {
        let n = announced.len();
        if n == 1 {
            logger::write_line(&mut err, level, "this derivation will be built:");
        } else {
            logger::write_line(
                &mut err,
                level,
                &format!("these {n} derivations will be built:"),
            );
        }
        for drv in &announced {
            logger::write_line(&mut err, level, &format!("  {}", sd.display(drv)));
        }
    }
    if let (Some(f), false) = (finder, plan.substitutions.is_empty()) {
        let found = f.found.lock().unwrap_or_else(|p| p.into_inner());
        let (mut download, mut unpacked) = (0u64, 0u64);
        for p in &plan.substitutions {
            if let Some(a) = found.get(p) {
                download += a.info.file_size;
                unpacked += a.info.nar_size;
            }
        }
        // Single precision, as CppNix computes them.
        let mib = |n: u64| n as f32 / (1024.0 * 1024.0);
        let n = plan.substitutions.len();
        let text = format!(
            "{} ({:.2} MiB download, {:.2} MiB unpacked):",
            if n == 1 {
                "this path will be fetched".to_string()
            } else {
                format!("these {n} paths will be fetched")
            },
            mib(download),
            mib(unpacked)
        );
        logger::write_line(&mut err, level, &text);
        for p in &plan.substitutions {
            logger::write_line(&mut err, level, &format!("  {}", sd.display(p)));
        }
    }
    if !plan.missing.is_empty() {
        logger::write_line(&mut err, level, "don't know how to build these paths:");
        for p in &plan.missing {
            logger::write_line(&mut err, level, &format!("  {}", sd.display(p)));
        }
    }
}

/// Realise `wanted`; returns nothing, or fails with CppNix's exit status after printing each
/// failure.
pub fn realise(
    ctx: &Ctx,
    store: &LocalStore,
    wanted: &[DerivedPath],
    flags: &BuildFlags,
) -> Result<()> {
    let settings = build_settings(ctx, store, flags)?;
    if !flags.dry_run {
        auto_gc(ctx, store, wanted)?;
    }
    // Substituters are opened when the plan first needs one.
    let finder = (!flags.check && ctx.settings.get_bool("substitute")).then(|| Finder {
        ctx,
        subs: std::sync::OnceLock::new(),
        found: Mutex::new(HashMap::new()),
    });
    let mut plan = firn_build::plan::plan(
        store,
        wanted,
        flags.check,
        finder.as_ref().map(|f| f as &dyn Substitutable),
    )?;
    if let Some(Some(s)) = finder.as_ref().and_then(|f| f.subs.get()) {
        for w in s.take_warnings() {
            logger::line(logger::WARN, &format!("warning: {w}"));
        }
    }
    let sd = store.store_dir();
    // What was asked for and cannot be had (CppNix's goals that find no substituter): the
    // legacy commands list it, build the rest, and fail at the end (`top_missing`).
    let top_missing: BTreeSet<StorePath> = if flags.legacy {
        wanted
            .iter()
            .map(|w| match w {
                DerivedPath::Opaque(p) => p,
                DerivedPath::Built { drv, .. } => drv,
            })
            .filter(|p| plan.missing.contains(*p))
            .cloned()
            .collect()
    } else {
        BTreeSet::new()
    };
    if plan.missing.iter().any(|p| !top_missing.contains(p)) {
        let mut msg = String::new();
        for p in plan.missing.iter().filter(|p| !top_missing.contains(*p)) {
            if !msg.is_empty() {
                msg.push_str("\n       ");
            }
            msg.push_str(&format!(
                "path '{}' is required, but there is no substituter that can build it",
                sd.display(p)
            ));
        }
        if !flags.dry_run {
            return Err(anyhow::anyhow!(msg));
        }
    }
    // The legacy commands announce what they do unless `--quiet`; `nix build` only what
    // `--dry-run` would do (whatever the verbosity), as CppNix 2.8.
    let announce = if flags.legacy {
        ctx.verbosity >= 0
    } else {
        flags.dry_run
    };
    if announce {
        // At CppNix's levels: info for the legacy commands, error for `nix build --dry-run`.
        let level = if flags.legacy {
            logger::INFO
        } else {
            logger::ERROR
        };
        print_missing(store, &plan, finder.as_ref(), level);
    }
    if flags.dry_run {
        return Ok(());
    }
    if let (Some(f), false) = (&finder, plan.substitutions.is_empty()) {
        let failed = fetch_substitutions(store, f, &plan.substitutions, ctx.verbosity < 0);
        // A substitute that is gone (the narinfo without its NAR) is reported, then counts as
        // no substitute at all, so what it was for is built even without --fallback (CppNix
        // 2.8's `SubstituteGone`); a broken one fails the realisation unless --fallback.
        let (gone, failed): (Vec<_>, Vec<_>) = failed.into_iter().partition(|(_, e)| e.is_gone());
        for (p, e) in &gone {
            let text = format!("error: {}", substitution_failure(&sd.display(p), e));
            logger::line(logger::ERROR, &text);
        }
        if !failed.is_empty() || !gone.is_empty() {
            if !failed.is_empty() && !ctx.settings.get_bool("fallback") {
                for (p, e) in &failed {
                    let text = format!("error: {}", substitution_failure(&sd.display(p), e));
                    logger::line(logger::ERROR, &text);
                }
                return Err(Failure {
                    code: 1,
                    msg: "some substitutes failed (usually happens due to networking issues); try '--fallback' to build derivations from source".into(),
                    silent: false,
                }
                .into());
            }
            for (p, e) in &failed {
                let text = format!(
                    "warning: {}; building from source (--fallback)",
                    substitution_failure(&sd.display(p), e)
                );
                logger::line(logger::WARN, &text);
            }
            plan = firn_build::plan::plan(store, wanted, flags.check, None)?;
            if !plan.missing.is_empty() {
                let p = plan
                    .missing
                    .iter()
                    .next()
                    .map(|p| sd.display(p))
                    .unwrap_or_default();
                anyhow::bail!(
                    "path '{p}' is required, but there is no substituter that can build it"
                );
            }
        }
    }
    let LogDisplay {
        format,
        print_logs,
        prefix,
    } = log_display(ctx, flags);
    let tty = std::io::stderr().is_terminal();
    let display = Display::new(
        sd.clone(),
        DisplayOptions {
            print_logs,
            prefix_logs: prefix,
            quiet: ctx.verbosity < 0,
            lock_waits: flags.legacy && crate::context::shows_warnings(ctx.verbosity),
            json: format == "internal-json",
            // `raw` never draws a status area; `bar` and `bar-with-logs` do on a terminal, as
            // does the default when logs are not printed.
            status: tty
                && match format.as_str() {
                    "raw" => false,
                    "bar" | "bar-with-logs" => true,
                    _ => !print_logs,
                },
            total: plan.nodes.len(),
        },
    );
    let outcome =
        display.run(|report| firn_build::schedule::realise(store, &settings, &plan, report))?;
    if outcome.failures.is_empty() && top_missing.is_empty() {
        return Ok(());
    }
    let code = match firn_build::exit_status(&outcome.failures) {
        0 => 1,
        c => c,
    };
    let mut failed_drvs = BTreeSet::new();
    for f in &outcome.failures {
        failed_drvs.insert(f.drv.clone());
    }
    let lines = if flags.legacy || flags.build_paths_errors {
        // Without `--keep-going`, the requests left unbuilt when the first failure stopped
        // the run count as failed too (CppNix's goals that never finished).
        let cancelled: BTreeSet<StorePath> = match settings.keep_going {
            true => BTreeSet::new(),
            false => {
                let built: BTreeSet<&StorePath> = outcome.built.iter().collect();
                wanted
                    .iter()
                    .filter_map(|w| match w {
                        DerivedPath::Built { drv, .. } => Some(drv),
                        DerivedPath::Opaque(_) => None,
                    })
                    .filter(|d| {
                        plan.nodes.iter().any(|n| &n.drv_path == *d)
                            && !built.contains(d)
                            && !failed_drvs.contains(*d)
                    })
                    .cloned()
                    .collect()
            }
        };
        legacy_failure_lines(
            sd,
            wanted,
            &plan,
            &outcome.failures,
            (&top_missing, &cancelled),
        )
    } else {
        outcome.failures.iter().map(|f| f.msg.clone()).collect()
    };
    if flags.failures_in_error && !lines.is_empty() {
        return Err(Failure {
            code,
            msg: lines.join("\n"),
            silent: false,
        }
        .into());
    }
    let mut err = std::io::stderr().lock();
    for l in lines {
        logger::write_line(&mut err, logger::ERROR, &format!("error: {l}"));
    }
    Err(Failure {
        code,
        msg: format!("{} derivations failed to build", failed_drvs.len()),
        silent: true,
    }
    .into())
}

/// The errors a legacy command shows after its builds, in CppNix 2.8's order (`buildPaths`):
/// failures of what was not asked for (and of resolved derivations built in place of what
/// was) as they came; then those of the requests (CppNix's goals, ordered by name), the first
/// last; and when more than one request failed (those `cancelled` when a failure stopped the
/// run too), or one without an error of its own (a path that could be neither substituted
/// nor built, a resolved derivation's build), `build of ... failed` naming every failed
/// request.
fn legacy_failure_lines(
    sd: &firn_format::StoreDir,
    wanted: &[DerivedPath],
    plan: &firn_build::plan::Plan,
    failures: &[firn_build::Failure],
    (missing, cancelled): (&BTreeSet<StorePath>, &BTreeSet<StorePath>),
) -> Vec<String> {
    let tops: BTreeSet<&StorePath> = wanted
        .iter()
        .filter_map(|w| match w {
            DerivedPath::Built { drv, .. } => Some(drv),
            DerivedPath::Opaque(_) => None,
        })
        .collect();
    let resolved: BTreeSet<&StorePath> = plan
        .nodes
        .iter()
        .filter(|n| n.resolve)
        .map(|n| &n.drv_path)
        .collect();
    // CppNix orders the derivation goals (the only ones with errors here) by name.
    let key = |p: &StorePath| (p.name().to_string(), sd.display(p));
    let mut lines = Vec::new();
    let mut held: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut failed: BTreeSet<StorePath> = missing.union(cancelled).cloned().collect();
    for f in failures {
        if !tops.contains(&f.drv) {
            lines.push(f.msg.clone());
            continue;
        }
        failed.insert(f.drv.clone());
        if resolved.contains(&f.drv) && f.kind != firn_build::FailKind::DependencyFailed {
            lines.push(f.msg.clone());
        } else {
            held.insert(key(&f.drv), f.msg.clone());
        }
    }
    for m in missing.iter().filter(|m| tops.contains(m)) {
        held.insert(
            key(m),
            format!("cannot build missing derivation '{}'", sd.display(m)),
        );
    }
    let mut held = held.into_values();
    let first = held.next();
    lines.extend(held);
    match first {
        Some(ex) if failed.len() == 1 => lines.push(ex),
        first => {
            lines.extend(first);
            if !failed.is_empty() {
                let names: Vec<String> = failed
                    .iter()
                    .map(|p| format!("'{}'", sd.display(p)))
                    .collect();
                lines.push(format!("build of {} failed", names.join(", ")));
            }
        }
    }
    lines
}

/// Parse `PATH`, `PATH.drv`, `PATH.drv!out,dev` / `^out` (CppNix's legacy `!` and the new `^`).
pub fn parse_derived_path(store: &LocalStore, s: &str) -> Result<DerivedPath> {
    let sd = store.store_dir();
    let (path, outputs) = match s.rsplit_once(['!', '^']) {
        Some((p, o)) if p.ends_with(".drv") => (p, Some(o)),
        _ => (s, None),
    };
    let sp = crate::paths::follow_links_to_store_path(sd, path)?;
    if sp.is_derivation() {
        let outputs = match outputs {
            None | Some("*") => None,
            Some(o) => Some(o.split(',').map(String::from).collect()),
        };
        Ok(DerivedPath::Built { drv: sp, outputs })
    } else {
        Ok(DerivedPath::Opaque(sp))
    }
}

/// The output paths a derived path stands for, after it was realised (`None`: all outputs).
pub fn resolved_outputs(store: &LocalStore, p: &DerivedPath) -> Result<Vec<(String, StorePath)>> {
    match p {
        DerivedPath::Opaque(sp) => Ok(vec![(String::new(), sp.clone())]),
        DerivedPath::Built { drv, outputs } => {
            let d = firn_build::plan::read_derivation(store, drv)?;
            let all = firn_build::plan::output_paths(drv, &d, store)?;
            Ok(all
                .into_iter()
                .filter(|(n, _)| match outputs {
                    None => true,
                    Some(o) => o.contains(n),
                })
                .collect())
        }
    }
}

/// The output paths a derived path stands for after this process realised it: as
/// [`resolved_outputs`], but an impure derivation's outputs (which have no realisations) are
/// those its build made (`nix build` reports them; the legacy commands, as CppNix 2.8's, only
/// look in the store and fail).
pub fn built_outputs(store: &LocalStore, p: &DerivedPath) -> Result<Vec<(String, StorePath)>> {
    if let DerivedPath::Built { drv, outputs } = p {
        if let Some(all) = firn_build::ca::built_impure(drv) {
            return Ok(all
                .into_iter()
                .filter(|(n, _)| outputs.as_ref().is_none_or(|o| o.contains(n)))
                .collect());
        }
    }
    resolved_outputs(store, p)
}

/// Make `link` an indirect GC root pointing to `target` (replacing an old link), as
/// `nix-build`'s `result` links.
pub fn make_result_link(store: &LocalStore, link: &Path, target: &StorePath) -> Result<PathBuf> {
    let abs = PathBuf::from(crate::paths::absolute(&link.to_string_lossy())?);
    Ok(store.add_perm_root(target, &abs)?)
}

/// Print the stored build log of a derivation, or of the derivation that built a path
/// (`nix log`, `nix-store -l`).
pub fn print_log(store: &LocalStore, log_dir: &Path, arg: &str) -> Result<()> {
    let sd = store.store_dir();
    let p = crate::paths::follow_links_to_store_path(sd, arg)?;
    let drv = if p.is_derivation() {
        Some(p.clone())
    } else {
        store.query_path_info(&p)?.and_then(|i| i.deriver)
    };
    if let Some(d) = drv {
        if let Some(log) = firn_build::log::read_log(log_dir, &d)? {
            let mut out = std::io::stdout().lock();
            out.write_all(&log)?;
            out.flush()?;
            return Ok(());
        }
    }
    anyhow::bail!("build log of '{}' is not available", sd.display(&p))
}
