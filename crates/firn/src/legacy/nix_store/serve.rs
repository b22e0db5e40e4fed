//! `nix-store --serve [--write]`: the `nix-store --serve` protocol on stdin/stdout (what
//! `ssh://` stores, `nix-copy-closure` and CppNix's remote-build hook talk to). The protocol
//! is `firn_remote::serve`; this is what it asks of the store: builds (of paths, and of
//! derivations sent whole, built with firn's builder under their `.drv` path) and
//! substitution.
//!
//! Builds take the client's options as CppNix's server does: `max-silent-time`, `timeout`,
//! `max-build-log-size` and `keep-failed` replace this machine's settings, substitution is
//! off and no build log is kept here (the client keeps what the builder prints, which goes to
//! stderr). A client that hangs up while its build runs interrupts it (as CppNix's
//! `MonitorFdHup`): the builders are killed, nothing is registered, and the session ends
//! with "interrupted by the user". So does one that hangs up while its build waits for the
//! lock on an output another process is building (the wait is given up).

use std::collections::BTreeSet;
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Result;
use firn_build::schedule::Event;
use firn_build::{FailKind, Failure as BuildFailure};
use firn_format::derivation::Derivation;
use firn_format::StorePath;
use firn_remote::build::{BuildOptions, BuildResult, BuildStatus};
use firn_store::LocalStore;

use crate::context::{Ctx, Failure};
use crate::realise::{build_settings, BuildFlags};

pub fn serve_op(ctx: &Ctx, store: &LocalStore, write: bool) -> Result<()> {
    let mut input = std::io::BufReader::with_capacity(1 << 16, std::io::stdin().lock());
    let mut output = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let mut build = |paths: &[String], options: &BuildOptions| {
        let _watch = watch_client();
        let ctx = &with_client_options(ctx, options);
        let wanted: Result<Vec<_>> = paths
            .iter()
            .map(|p| crate::realise::parse_derived_path(store, p))
            .collect();
        let r =
            wanted.and_then(|w| crate::realise::realise(ctx, store, &w, &BuildFlags::default()));
        r.map_err(|e| {
            let code = e.downcast_ref::<Failure>().map_or(1, |f| f.code as u64);
            (code, format!("{e:#}"))
        })
    };
    let mut build_derivation = |drv_path: &StorePath, drv: &Derivation, options: &BuildOptions| {
        let _watch = watch_client();
        build_sent_derivation(&with_client_options(ctx, options), store, drv_path, drv)
    };
    // Substitution for clients that ask for it, with this store's substituters (opened on
    // first use); what fails is a warning on stderr, which the client shows.
    let mut subs: Option<Option<firn_cache::Substituters>> = None;
    let mut substitute = |missing: &BTreeSet<StorePath>| {
        let subs = subs.get_or_insert_with(|| match ctx.substituters() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("warning: {e:#}");
                None
            }
        });
        let Some(subs) = subs else { return };
        let sd = store.store_dir();
        let progress = |ev: firn_cache::substitute::Progress<'_>| {
            if let firn_cache::substitute::Progress::Start { path, from, .. } = ev {
                eprintln!("copying path '{}' from '{from}'...", sd.display(path));
            }
        };
        match subs.substitute_paths(store, missing, &progress) {
            Ok(r) => {
                for (p, e) in r.failed {
                    eprintln!("warning: substituting '{}': {e}", sd.display(&p));
                }
            }
            Err(e) => eprintln!("warning: {e}"),
        }
        for w in subs.take_warnings() {
            eprintln!("warning: {w}");
        }
    };
    let hooks = firn_remote::serve::Hooks {
        build: &mut build,
        build_derivation: &mut build_derivation,
        substitute: &mut substitute,
    };
    let served = firn_remote::serve::serve(store, write, &mut input, &mut output, hooks);
    if firn_build::interrupted() {
        // The client went away during a build (answering it may have failed too).
        anyhow::bail!("interrupted by the user");
    }
    served?;
    Ok(())
}

/// While a build runs, nothing reads from the client: watch stdin for it hanging up, which
/// interrupts the build, also while it waits for the lock on an output that another process
/// is building.
fn watch_client() -> Option<firn_remote::hangup::HangupWatch> {
    let on_hangup = || {
        firn_build::interrupt();
        firn_store::lock::interrupt_path_lock_waits();
    };
    match firn_remote::hangup::HangupWatch::start(0, on_hangup) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!("cannot watch the client for hanging up: {e}");
            None
        }
    }
}

/// This machine's settings with a client's build options in place (CppNix's
/// `getBuildSettings`).
fn with_client_options(ctx: &Ctx, o: &BuildOptions) -> Ctx {
    let mut settings = ctx.settings.clone();
    settings.set("max-silent-time", &o.max_silent_time.to_string());
    settings.set("timeout", &o.build_timeout.to_string());
    settings.set("max-build-log-size", &o.max_log_size.to_string());
    settings.set("keep-failed", if o.keep_failed { "true" } else { "false" });
    settings.set("substitute", "false");
    settings.set("keep-build-log", "false");
    if o.build_repeat > 0 {
        tracing::warn!(
            "firn does not repeat builds: 'repeat = {}' from the client is ignored",
            o.build_repeat
        );
    }
    Ctx {
        settings,
        verbosity: ctx.verbosity,
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Build `drv`, sent whole by a client, as `drv_path` (CppNix's `Store::buildDerivation`):
/// its input sources must be valid (the client copied them; nothing is substituted), and
/// the builder's output goes to stderr for the client.
fn build_sent_derivation(
    ctx: &Ctx,
    store: &LocalStore,
    drv_path: &StorePath,
    drv: &Derivation,
) -> BuildResult {
    let sd = store.store_dir();
    let misc = |msg: String| BuildResult::new(BuildStatus::MiscFailure, msg);
    let missing_input = |p: &StorePath| {
        misc(format!(
            "dependency '{}' of '{}' does not exist, and substitution is disabled",
            sd.display(p),
            sd.display(drv_path)
        ))
    };
    for p in &drv.input_srcs {
        match store.is_valid_path(p) {
            Ok(true) => {}
            Ok(false) => return missing_input(p),
            Err(e) => return misc(e.to_string()),
        }
    }
    let settings = match build_settings(ctx, store, &BuildFlags::default()) {
        Ok(s) => s,
        Err(e) => return misc(format!("{e:#}")),
    };
    let plan = match firn_build::plan::plan_derivation(store, drv_path, drv.clone(), None) {
        Ok(p) => p,
        Err(e) => return misc(e.to_string()),
    };
    if let Some(p) = plan.missing.iter().next() {
        return missing_input(p);
    }
    if plan.nodes.is_empty() {
        return BuildResult::new(BuildStatus::AlreadyValid, "");
    }
    let start = now();
    let outcome = firn_build::schedule::realise(store, &settings, &plan, &mut |e| {
        if let Event::Log { line: text, .. } | Event::Note { text, .. } = e {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "{text}");
        }
    });
    let stop = now();
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => return misc(e.to_string()),
    };
    let mut result = match outcome.failures.first() {
        None => BuildResult::new(BuildStatus::Built, ""),
        Some(f) => BuildResult::new(status_of(f, drv), without_log_tail(&f.msg)),
    };
    if result.status != BuildStatus::MiscFailure {
        result.times_built = 1;
        result.start_time = start;
        result.stop_time = stop;
    }
    result
}

/// A failure's message without the last log lines firn-build appends: the client has seen
/// them already (as CppNix's server, which prints build logs, leaves them out).
fn without_log_tail(msg: &str) -> String {
    match msg.find(";\n       last ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// The status CppNix reports for a failure like `f`: a builder that failed is a permanent
/// failure (a transient one for fixed-output derivations, which depend on the network),
/// outputs refused after a successful builder are rejected.
fn status_of(f: &BuildFailure, drv: &Derivation) -> BuildStatus {
    match f.kind {
        FailKind::TimedOut => BuildStatus::TimedOut,
        FailKind::LogLimit => BuildStatus::LogLimitExceeded,
        FailKind::HashMismatch => BuildStatus::OutputRejected,
        FailKind::NotDeterministic => BuildStatus::NotDeterministic,
        FailKind::DependencyFailed => BuildStatus::DependencyFailed,
        FailKind::Misc | FailKind::Cancelled => BuildStatus::MiscFailure,
        FailKind::Rejected => BuildStatus::OutputRejected,
        FailKind::Transient => BuildStatus::TransientFailure,
        FailKind::Failed if drv.is_fixed_output() => BuildStatus::TransientFailure,
        FailKind::Failed => BuildStatus::PermanentFailure,
    }
}
