//! Realising derivations: turning `.drv` files into valid store paths the way Nix does.
//!
//! - [`plan`] walks the derivation graph from what was asked for and finds what must be built
//!   (and what is missing);
//! - [`schedule`] builds it, inputs first, up to `max-jobs` at once on as many build slots
//!   (threads running one build after another), each build holding its outputs' locks
//!   (CppNix's `.lock` protocol); [`cache`] remembers what the builds look up, [`trash`]
//!   deletes what they leave in the background;
//! - [`sandbox`] is the Linux sandbox (namespaces and a chroot of the input closure), with
//!   what a slot keeps for its sandboxes (a network namespace, [`netns`]; a store tree or an
//!   overlay's lower layer); [`run`] starts a builder and watches it, [`env`] is its
//!   environment, [`seccomp`] the system-call filter it runs under;
//! - [`outputs`] checks and registers what a build produced; [`refscan`] finds references;
//!   [`rewrite`] moves outputs that are valid already out of an unsandboxed build's way (hash
//!   rewriting);
//! - [`log`] stores build logs where CppNix keeps them; [`builtin`] holds the builders that run
//!   inside firn (`builtin:fetchurl`, `builtin:buildenv`).

pub mod buildenv;
pub mod builtin;
pub mod ca;
pub mod cache;
pub mod env;
pub mod log;
pub mod netns;
pub mod outputs;
pub mod plan;
pub mod refscan;
pub mod rewrite;
pub mod run;
pub mod sandbox;
pub mod schedule;
pub mod seccomp;
pub mod sign;
pub mod slot;
pub mod trash;
pub mod users;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use firn_format::StorePath;
use thiserror::Error;

/// Errors that stop the realisation itself (not a failing builder, see [`Failure`]).
#[derive(Debug, Error)]
pub enum BuildError {
    #[error(transparent)]
    Store(#[from] firn_store::StoreError),
    #[error("{op} '{path}': {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Rewrite(#[from] rewrite::RewriteError),
    #[error(transparent)]
    Sign(#[from] sign::SignError),
    /// The realisation was interrupted ([`interrupt`]); its builders were killed.
    #[error("interrupted by the user")]
    Interrupted,
    #[error("{0}")]
    Other(String),
}

impl BuildError {
    pub fn io(op: &'static str, path: &Path, source: std::io::Error) -> BuildError {
        BuildError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// `sandbox = true | false | relaxed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SandboxMode {
    Off,
    On,
    /// On, except for derivations with `__noChroot = true`.
    Relaxed,
}

/// How many times a builder's exec is tried while its file is busy (ETXTBSY: still open for
/// writing in a child another thread forked, until that child's own exec), and the pause
/// between tries; the sandboxed and the unsandboxed start share them.
pub(crate) const EXEC_BUSY_TRIES: u32 = 100;
pub(crate) const EXEC_BUSY_PAUSE_MS: u64 = 10;

/// The settings a realisation runs with (Nix's names in the comments).
#[derive(Clone, Debug)]
pub struct BuildSettings {
    /// `max-jobs`.
    pub max_jobs: usize,
    /// `cores`, passed as `NIX_BUILD_CORES`.
    pub cores: usize,
    pub sandbox: SandboxMode,
    /// `sandbox-fallback`: build without the sandbox where namespaces cannot be created.
    pub sandbox_fallback: bool,
    /// `sandbox-paths` and `extra-sandbox-paths`: `target=source` (a trailing `?` makes one
    /// optional).
    pub sandbox_paths: Vec<String>,
    /// `sandbox-build-dir`.
    pub sandbox_build_dir: String,
    /// `sandbox-dev-shm-size`.
    pub shm_size: String,
    /// Where build directories are made (`build-dir`, else `$TMPDIR`, else `/tmp`).
    pub build_dir: PathBuf,
    pub keep_going: bool,
    /// `keep-failed` (`-K`).
    pub keep_failed: bool,
    /// `run-diff-hook` and `diff-hook`: when `--check` finds an output that differs, the
    /// program is run (as the build's user) on the valid output and the new one (kept at
    /// `<output>.check`, as with `keep-failed`), the derivation and the build directory.
    pub run_diff_hook: bool,
    pub diff_hook: Option<PathBuf>,
    pub timeout: Option<Duration>,
    pub max_silent_time: Option<Duration>,
    /// `system` and `extra-platforms`.
    pub system: String,
    pub extra_platforms: Vec<String>,
    /// `system-features`.
    pub system_features: BTreeSet<String>,
    /// `keep-build-log`, `compress-build-log`, and the log directory.
    pub keep_build_log: bool,
    pub compress_build_log: bool,
    pub log_dir: PathBuf,
    /// `impersonate-linux-26`.
    pub impersonate_linux26: bool,
    /// How many log lines a failure shows (`log-lines`).
    pub log_lines: usize,
    /// A failed builder's message ends with its last `log_lines` lines (CppNix leaves them
    /// out when the log was shown as it came).
    pub log_tail: bool,
    /// `post-build-hook`: a program run after each successful build with `DRV_PATH` and
    /// `OUT_PATHS` in its environment (for example to push the outputs to a cache).
    pub post_build_hook: Option<PathBuf>,
    /// `max-build-log-size`: a builder writing more is killed (None: no limit).
    pub max_log_size: Option<u64>,
    /// `build-users-group`: builds run as its members (when firn runs as root), each taken
    /// through a lock in `user_pool_dir/userpool`.
    pub build_users_group: Option<String>,
    /// The state directory holding `userpool/` (`/nix/var/nix`, shared with CppNix).
    pub user_pool_dir: PathBuf,
    /// `secret-key-files`: the built outputs (and their realisations) are signed with each.
    pub secret_key_files: Vec<PathBuf>,
    /// `substitute`: off, a derivation whose input source is missing ends the realisation
    /// (CppNix's "does not exist, and substitution is disabled") instead of failing alone.
    pub substitute: bool,
    /// `filter-syscalls`: builders (sandboxed or not) run under [`seccomp::Filter`].
    pub filter_syscalls: bool,
    /// `allow-new-privileges`: builders may gain privileges through setuid programs (no
    /// `no_new_privs`).
    pub allow_new_privileges: bool,
}

impl BuildSettings {
    /// Nix's defaults for a store whose log directory is `log_dir`.
    pub fn new(log_dir: PathBuf) -> BuildSettings {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        BuildSettings {
            max_jobs: 1,
            cores,
            sandbox: SandboxMode::On,
            sandbox_fallback: true,
            sandbox_paths: Vec::new(),
            sandbox_build_dir: "/build".into(),
            shm_size: "50%".into(),
            build_dir: std::env::var_os("TMPDIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/tmp")),
            keep_going: false,
            keep_failed: false,
            run_diff_hook: false,
            diff_hook: None,
            timeout: None,
            max_silent_time: None,
            system: default_system().into(),
            extra_platforms: Vec::new(),
            system_features: ["nixos-test", "benchmark", "big-parallel"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            keep_build_log: true,
            compress_build_log: true,
            log_dir,
            impersonate_linux26: true,
            log_lines: 10,
            log_tail: true,
            post_build_hook: None,
            max_log_size: None,
            build_users_group: None,
            user_pool_dir: PathBuf::from("/nix/var/nix"),
            secret_key_files: Vec::new(),
            substitute: true,
            filter_syscalls: true,
            allow_new_privileges: false,
        }
    }
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Interrupt every realisation of this process, as CppNix's `triggerInterrupt` (for example
/// when the client of `nix-store --serve` hangs up while its build runs): running builders are
/// killed, nothing more starts, and [`schedule::realise`] returns [`BuildError::Interrupted`].
/// Builds that were killed leave nothing valid, as any failed build. It cannot be undone: the
/// process is expected to end.
pub fn interrupt() {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Whether [`interrupt`] was called.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

/// Nix's name for this platform.
pub fn default_system() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "x86_64-linux",
        "aarch64" => "aarch64-linux",
        "x86" => "i686-linux",
        "riscv64" => "riscv64-linux",
        "powerpc64" => "powerpc64-linux",
        "arm" => "armv7l-linux",
        _ => "unknown-linux",
    }
}

/// What kind of failure a build had; decides the exit code as CppNix's does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailKind {
    /// The builder failed (or its environment could not be set up).
    Failed,
    /// The builder of a fixed-output derivation failed: CppNix's `TransientFailure` (such
    /// builds depend on the network), which does not make the exit status 100.
    Transient,
    /// The builder succeeded but its outputs were refused (missing, wrong type, forbidden
    /// references): CppNix's `OutputRejected`, which does not make the exit status 100 either
    /// (only a hash mismatch does, 102).
    Rejected,
    /// `timeout` or `max-silent-time`.
    TimedOut,
    /// A fixed-output hash mismatch.
    HashMismatch,
    /// `--check` found different outputs.
    NotDeterministic,
    /// An input failed, so this was never started.
    DependencyFailed,
    /// Cannot be built here (wrong system, missing features, sandbox setup).
    Misc,
    /// Killed for writing more than `max-build-log-size` (exit status 1, as CppNix).
    LogLimit,
    /// Stopped because another build failed (without `keep-going`); not reported.
    Cancelled,
}

/// One derivation that could not be built.
#[derive(Clone, Debug)]
pub struct Failure {
    pub drv: StorePath,
    pub kind: FailKind,
    pub msg: String,
}

/// CppNix's exit status for a set of failures (`Worker::exitStatus`): 100 plus 1 for a
/// timeout, 2 for a hash mismatch, 4 for a `--check` mismatch (only that bit: 104), or 1 when
/// none of those happened and no builder failed permanently (refused outputs, failed
/// fixed-output builders, dependencies, setup problems).
pub fn exit_status(failures: &[Failure]) -> u8 {
    if failures.is_empty() {
        return 0;
    }
    let mut mask = 0u8;
    for f in failures {
        match f.kind {
            FailKind::Failed => mask |= 0x04,
            FailKind::TimedOut => mask |= 0x04 | 0x01,
            FailKind::HashMismatch => mask |= 0x04 | 0x02,
            FailKind::NotDeterministic => mask |= 0x08,
            FailKind::Transient
            | FailKind::Rejected
            | FailKind::DependencyFailed
            | FailKind::Misc
            | FailKind::LogLimit
            | FailKind::Cancelled => {}
        }
    }
    if mask == 0 {
        return 1;
    }
    0x60 | mask
}

/// Something a user asked to realise.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DerivedPath {
    /// A store path that must be valid.
    Opaque(StorePath),
    /// Outputs of a derivation (`None`: all of them).
    Built {
        drv: StorePath,
        outputs: Option<BTreeSet<String>>,
    },
}

#[cfg(test)]
mod exit_status_tests {
    use super::*;

    fn failures(kinds: &[FailKind]) -> Vec<Failure> {
        let drv = StorePath::from_base_name("p5gi1gqmzx6i7jy18f8ywh20hiqviagq-top.drv")
            .expect("a store path");
        kinds
            .iter()
            .map(|&kind| Failure {
                drv: drv.clone(),
                kind,
                msg: String::new(),
            })
            .collect()
    }

    /// As CppNix 2.8's `Worker::exitStatus`: only permanent builder failures, timeouts, hash
    /// and `--check` mismatches make it 100 and more; refused outputs and failed
    /// fixed-output builders alone give 1.
    #[test]
    fn exit_status_as_cppnix() {
        use FailKind::*;
        for (kinds, want) in [
            (&[][..], 0),
            (&[Rejected][..], 1),
            (&[Transient][..], 1),
            (&[Rejected, DependencyFailed][..], 1),
            (&[Rejected, Transient, Misc, LogLimit][..], 1),
            (&[Failed][..], 100),
            (&[Rejected, Failed][..], 100),
            (&[TimedOut, Rejected][..], 101),
            (&[HashMismatch][..], 102),
            (&[NotDeterministic][..], 104),
            (&[NotDeterministic, Rejected][..], 104),
            (&[NotDeterministic, Failed][..], 108),
        ] {
            assert_eq!(exit_status(&failures(kinds)), want, "{kinds:?}");
        }
    }
}
