//! Running a [`Plan`]: builds start as soon as their inputs are done, up to `max-jobs` at once,
//! on as many build slots ([`Slot`]: threads that each run one build after another and keep
//! what their sandboxes can share); lookups the builds share are in a [`BuildCache`], and what
//! they leave is deleted in the background ([`Trash`]). The calling thread receives log lines
//! and results and reports them to the display. A failure stops everything else unless
//! `keep-going` is set; builds that depend on a failed one are reported as such.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use firn_format::derivation::hash_placeholder;
use firn_format::signature::SecretKey;
use firn_format::StorePath;
use firn_store::lock::PathLocks;
use firn_store::LocalStore;

use crate::cache::BuildCache;
use crate::env::{builder_env, EnvInputs};
use crate::log::LogWriter;
use crate::outputs::{canonicalise_output, check_outputs, check_ownership, Checked, Refused};
use crate::plan::{Node, Plan};
use crate::rewrite::{fallback_path, rewrite_path, Rewrites};
use crate::run::{run, Ended, Launch, Limits};
use crate::sandbox::{self, Bind, Input, Spec};
use crate::slot::Slot;
use crate::trash::{Doomed, Trash};
use crate::{BuildError, BuildSettings, FailKind, Failure, SandboxMode};

/// What the display hears about.
pub enum Event<'a> {
    /// A build started (`building '...drv'...`, or with `check`, `--check` of a derivation
    /// asked for: `checking outputs of '...drv'...`): its outputs are locked and not all valid.
    Started { drv: &'a StorePath, check: bool },
    /// Another process holds a lock on the outputs of `drv`; the build waits for it. `text`
    /// is CppNix's `waiting for lock on '…', '…'` (the locked outputs' real paths).
    Waiting { drv: &'a StorePath, text: &'a str },
    /// One line the builder printed (without the newline).
    Log { drv: &'a StorePath, line: &'a str },
    /// A derivation was resolved (`ca-derivations`): `resolved` is built in its place (from
    /// here on, the events of the build name it).
    Resolved {
        drv: &'a StorePath,
        resolved: &'a StorePath,
    },
    /// A message about a build that is shown whether or not build logs are (CppNix prints
    /// these as errors: `note: keeping build directory '...'`).
    Note { drv: &'a StorePath, text: &'a str },
    /// A build ended; `None` on success.
    Finished {
        drv: &'a StorePath,
        failure: Option<&'a Failure>,
    },
}

/// The result of running a plan.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Derivations built (or found built by another process).
    pub built: Vec<StorePath>,
    pub failures: Vec<Failure>,
}

enum Msg {
    /// Resolved to this derivation, which is built (`true`) or found built already.
    Resolved(usize, StorePath),
    Log(usize, String),
    Note(usize, String),
    /// The outputs are locked and the build starts.
    Started(usize),
    /// Waiting for another process's lock on the outputs.
    Waiting(usize, String),
    Done(usize, Result<(), Failure>),
}

static SANDBOX_WORKS: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();

/// Whether namespaces can be created here (checked once per process).
pub fn sandbox_available() -> Result<(), String> {
    SANDBOX_WORKS.get_or_init(sandbox::probe).clone()
}

/// Only impure and fixed-output derivations may depend on impure ones: as CppNix, a build of
/// another that does ends the realisation before anything is built.
fn check_impure_inputs(store: &LocalStore, plan: &Plan) -> Result<(), BuildError> {
    let impure: BTreeSet<&StorePath> = plan
        .nodes
        .iter()
        .filter(|n| crate::ca::is_impure(&n.drv))
        .map(|n| &n.drv_path)
        .collect();
    if impure.is_empty() {
        return Ok(());
    }
    for n in &plan.nodes {
        if crate::ca::is_impure(&n.drv) || n.drv.is_fixed_output() {
            continue;
        }
        if let Some(input) = n.drv.input_drvs.keys().find(|i| impure.contains(i)) {
            let sd = store.store_dir();
            return Err(BuildError::Other(format!(
                "pure derivation '{}' depends on impure derivation '{}'",
                sd.display(&n.drv_path),
                sd.display(input)
            )));
        }
    }
    Ok(())
}

/// Build everything in `plan`. A derivation to check whose outputs are not valid fails it
/// before anything is built (as CppNix); so does [`crate::interrupt`], at any time, killing
/// what runs.
pub fn realise(
    store: &LocalStore,
    settings: &BuildSettings,
    plan: &Plan,
    display: &mut dyn FnMut(Event),
) -> Result<Outcome, BuildError> {
    if let Some(drv) = plan.uncheckable.first() {
        return Err(BuildError::Other(format!(
            "some outputs of '{}' are not valid, so checking is not possible",
            store.store_dir().display(drv)
        )));
    }
    check_impure_inputs(store, plan)?;
    for (drv, outputs) in &plan.realised {
        crate::ca::register_realisations(store, drv, outputs, false, &[])?;
    }
    for r in &plan.substituted_realisations {
        store.register_realisation(r)?;
    }
    let n = plan.nodes.len();
    let mut waiting: Vec<usize> = plan.nodes.iter().map(|x| x.deps.len()).collect();
    let mut ready: VecDeque<usize> = (0..n).filter(|&i| waiting[i] == 0).collect();
    let mut state = vec![0u8; n]; // 0 pending, 1 running, 2 done, 3 failed/skipped
    let mut outcome = Outcome::default();
    let cancel = AtomicBool::new(false);
    let max_jobs = settings.max_jobs.max(1);
    let mut stopping = false;
    // An error that ends the realisation (not a failed build).
    let mut fatal = None;
    let cache = BuildCache::new();
    // The derivation each build is shown as: its own, or once resolved, the resolved one.
    let mut shown: Vec<StorePath> = plan.nodes.iter().map(|n| n.drv_path.clone()).collect();
    // Builds to start, taken by whichever slot is free.
    let (job_tx, job_rx) = mpsc::channel::<usize>();
    let job_rx = std::sync::Mutex::new(job_rx);
    std::thread::scope(|scope| -> Result<(), BuildError> {
        // Moved in: dropped when this closure returns, which ends the slots (and then the
        // cleanup thread).
        let job_tx = job_tx;
        let trash = Trash::spawn(scope)
            .map_err(|e| BuildError::Other(format!("starting a cleanup thread: {e}")))?;
        let (tx, rx) = mpsc::channel::<Msg>();
        let mut slots = 0usize;
        let mut running = 0usize;
        loop {
            if crate::interrupted() {
                stopping = true;
                cancel.store(true, Ordering::Relaxed);
            }
            while running < max_jobs && !stopping {
                let Some(i) = ready.pop_front() else { break };
                if state[i] != 0 {
                    continue;
                }
                if let (Some(src), false) =
                    (plan.nodes[i].missing_srcs.first(), settings.substitute)
                {
                    // CppNix throws out of the whole realisation here.
                    let sd = store.store_dir();
                    fatal = Some(BuildError::Other(format!(
                        "dependency '{}' of '{}' does not exist, and substitution is disabled",
                        sd.display(src),
                        sd.display(&plan.nodes[i].drv_path)
                    )));
                    stopping = true;
                    cancel.store(true, Ordering::Relaxed);
                    break;
                }
                if !plan.nodes[i].missing_srcs.is_empty() {
                    // Fails before it is built, as a failure of its own (CppNix's
                    // `DependencyFailed` after its sources' substitutions failed).
                    state[i] = 1;
                    running += 1;
                    let node = &plan.nodes[i];
                    let _ = tx.send(Msg::Done(
                        i,
                        Err(Failure {
                            drv: node.drv_path.clone(),
                            kind: FailKind::DependencyFailed,
                            msg: format!(
                                "{} dependencies of derivation '{}' failed to build",
                                node.missing_srcs.len(),
                                store.store_dir().display(&node.drv_path)
                            ),
                        }),
                    ));
                    continue;
                }
                if let Err(e) = check_homeless_shelter(store, settings, &plan.nodes[i]) {
                    fatal = Some(e);
                    stopping = true;
                    cancel.store(true, Ordering::Relaxed);
                    break;
                }
                state[i] = 1;
                running += 1;
                if slots < running {
                    let tx = tx.clone();
                    let (cancel, job_rx) = (&cancel, &job_rx);
                    let mut slot = Slot::new(slots, &cache, trash.clone());
                    std::thread::Builder::new()
                        .name(format!("build slot {slots}"))
                        .spawn_scoped(scope, move || loop {
                            let next = job_rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                            let Ok(i) = next else { break };
                            let node = &plan.nodes[i];
                            let emit = |line| {
                                let _ = tx.send(Msg::Log(i, line));
                            };
                            let note = |text| {
                                let _ = tx.send(Msg::Note(i, text));
                            };
                            let resolved = |p: &StorePath| {
                                let _ = tx.send(Msg::Resolved(i, p.clone()));
                            };
                            let started = || {
                                let _ = tx.send(Msg::Started(i));
                            };
                            let waiting = |text| {
                                let _ = tx.send(Msg::Waiting(i, text));
                            };
                            let hooks = Hooks {
                                emit: &emit,
                                note: &note,
                                resolved: &resolved,
                                started: &started,
                                waiting: &waiting,
                            };
                            let r = build_one(store, settings, node, cancel, &hooks, &mut slot);
                            let r = match r {
                                Ok(r) => r,
                                Err(e) => Err(Failure {
                                    drv: node.drv_path.clone(),
                                    kind: FailKind::Misc,
                                    msg: e.to_string(),
                                }),
                            };
                            let _ = tx.send(Msg::Done(i, r));
                        })
                        .map_err(|e| BuildError::Other(format!("starting a build thread: {e}")))?;
                    slots += 1;
                }
                job_tx
                    .send(i)
                    .map_err(|_| BuildError::Other("the build slots are gone".into()))?;
            }
            if running == 0 {
                break;
            }
            let Ok(msg) = rx.recv() else { break };
            match msg {
                Msg::Resolved(i, p) => {
                    display(Event::Resolved {
                        drv: &plan.nodes[i].drv_path,
                        resolved: &p,
                    });
                    shown[i] = p;
                }
                // A resolved derivation's build is shown under the derivation it was
                // resolved to, once its outputs are locked and found missing (not while it
                // waits for another process's build of them).
                Msg::Started(i) => display(Event::Started {
                    drv: &shown[i],
                    check: plan.nodes[i].check,
                }),
                Msg::Waiting(i, text) => display(Event::Waiting {
                    drv: &shown[i],
                    text: &text,
                }),
                Msg::Log(i, line) => display(Event::Log {
                    drv: &shown[i],
                    line: &line,
                }),
                Msg::Note(i, text) => display(Event::Note {
                    drv: &shown[i],
                    text: &text,
                }),
                Msg::Done(i, r) => {
                    running -= 1;
                    let node = &plan.nodes[i];
                    match r {
                        Ok(()) => {
                            state[i] = 2;
                            outcome.built.push(node.drv_path.clone());
                            display(Event::Finished {
                                drv: &shown[i],
                                failure: None,
                            });
                            for &d in &node.dependents {
                                waiting[d] -= 1;
                                if waiting[d] == 0 && state[d] == 0 {
                                    ready.push_back(d);
                                }
                            }
                        }
                        Err(f) => {
                            state[i] = 3;
                            let cancelled = f.kind == FailKind::Cancelled;
                            if !cancelled {
                                display(Event::Finished {
                                    drv: &shown[i],
                                    failure: Some(&f),
                                });
                                outcome.failures.push(f);
                            }
                            // Everything downstream can no longer be built.
                            let mut todo: Vec<usize> = node.dependents.iter().copied().collect();
                            while let Some(d) = todo.pop() {
                                if state[d] != 0 {
                                    continue;
                                }
                                state[d] = 3;
                                let dn = &plan.nodes[d];
                                let failed_deps =
                                    dn.deps.iter().filter(|&&x| state[x] == 3).count();
                                outcome.failures.push(Failure {
                                    drv: dn.drv_path.clone(),
                                    kind: FailKind::DependencyFailed,
                                    msg: format!(
                                        "{failed_deps} dependencies of derivation '{}' failed to build",
                                        store.store_dir().display(&dn.drv_path)
                                    ),
                                });
                                todo.extend(dn.dependents.iter().copied());
                            }
                            if !settings.keep_going && !cancelled {
                                stopping = true;
                                cancel.store(true, Ordering::Relaxed);
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    })?;
    if let Some(e) = fatal {
        return Err(e);
    }
    if crate::interrupted() {
        return Err(BuildError::Interrupted);
    }
    Ok(outcome)
}

/// Outputs of the input derivations a build uses, plus its input sources.
fn direct_inputs(
    store: &LocalStore,
    node: &Node,
    cache: &BuildCache,
) -> Result<BTreeSet<StorePath>, BuildError> {
    let mut inputs: BTreeSet<StorePath> = node.drv.input_srcs.clone();
    for (drv, outs) in &node.drv.input_drvs {
        // The database records every registered .drv's outputs; the file is parsed only when
        // it does not (a .drv registered by something that did not fill that table).
        let paths = cache.derivation_outputs(store, drv, outs)?;
        for o in outs {
            match paths.get(o) {
                Some(p) => {
                    inputs.insert(p.clone());
                }
                None => {
                    return Err(BuildError::Other(format!(
                        "derivation '{}' has no output '{o}'",
                        store.store_dir().display(drv)
                    )))
                }
            }
        }
    }
    Ok(inputs)
}

fn fail(node: &Node, kind: FailKind, msg: String) -> Result<Result<(), Failure>, BuildError> {
    Ok(Err(Failure {
        drv: node.drv_path.clone(),
        kind,
        msg,
    }))
}

/// Keeps the last lines of a log for the failure message.
struct Tail {
    lines: VecDeque<String>,
    max: usize,
    partial: Vec<u8>,
}

impl Tail {
    fn push(&mut self, data: &[u8], emit: &dyn Fn(String)) {
        for &b in data {
            if b == b'\n' {
                let line = String::from_utf8_lossy(&self.partial).into_owned();
                let line = line.strip_suffix('\r').unwrap_or(&line).to_string();
                self.partial.clear();
                if self.lines.len() == self.max {
                    self.lines.pop_front();
                }
                self.lines.push_back(line.clone());
                emit(line);
            } else {
                self.partial.push(b);
            }
        }
    }

    fn finish(&mut self, emit: &dyn Fn(String)) {
        if !self.partial.is_empty() {
            self.push(b"\n", emit);
        }
    }
}

/// Removes a directory tree when dropped (unless disarmed), through the slot's [`Trash`].
/// `.1`: the directories it holds when all went as expected, `.3`: where to move it first
/// (see [`Doomed`]).
struct Cleanup<'a>(
    Option<PathBuf>,
    &'static [&'static str],
    &'a Trash,
    Option<PathBuf>,
);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            self.2.throw(Doomed {
                path,
                dirs: self.1,
                stash: self.3.take(),
            });
        }
    }
}

fn env_bool(drv: &firn_format::derivation::Derivation, name: &str) -> bool {
    if let Some(json) = drv.env.get("__json") {
        return serde_json::from_str::<serde_json::Value>(json)
            .ok()
            .and_then(|v| v.get(name).and_then(|b| b.as_bool()))
            .unwrap_or(false);
    }
    drv.env.get(name).map(String::as_str) == Some("1")
}

fn required_features(drv: &firn_format::derivation::Derivation) -> BTreeSet<String> {
    if let Some(json) = drv.env.get("__json") {
        return serde_json::from_str::<serde_json::Value>(json)
            .ok()
            .and_then(|v| {
                v.get("requiredSystemFeatures").and_then(|l| {
                    l.as_array().map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str().map(String::from))
                            .collect()
                    })
                })
            })
            .unwrap_or_default();
    }
    drv.env
        .get("requiredSystemFeatures")
        .map(|s| s.split_ascii_whitespace().map(String::from).collect())
        .unwrap_or_default()
}

/// Where a builder's `HOME` points; without the sandbox it must not exist (CppNix's
/// `homeDir`).
pub const HOMELESS_SHELTER: &str = "/homeless-shelter";

/// Whether the store's files live elsewhere than its store directory (a chroot store): then
/// it can only be built for through the sandbox, which mounts it where builders expect it (as
/// CppNix does).
fn is_chroot_store(store: &LocalStore) -> bool {
    store.layout().real_store_dir != Path::new(store.store_dir().as_str())
}

/// Whether `node` is to be built in the sandbox (CppNix's `useChroot`, before a
/// `sandbox-fallback`); `Err` when the settings forbid what it asks for.
fn chroot_build(store: &LocalStore, settings: &BuildSettings, node: &Node) -> Result<bool, String> {
    let no_chroot = env_bool(&node.drv, "__noChroot");
    let sandbox = match settings.sandbox {
        SandboxMode::Off => false,
        SandboxMode::Relaxed => !no_chroot,
        SandboxMode::On => {
            if no_chroot {
                return Err(format!(
                    "derivation '{}' has '__noChroot' set, but that's not allowed when 'sandbox' is 'true'",
                    store.store_dir().display(&node.drv_path)
                ));
            }
            true
        }
    };
    Ok(sandbox || is_chroot_store(store))
}

/// Before a build starts without the sandbox, the builder's `HOME` must not exist on the host:
/// whatever an earlier build (or anything else) left there would leak into this one. As in
/// CppNix, this fails the whole realisation (an error, not a failed build), before the build
/// is announced; it is not checked for a build that only ends up unsandboxed through
/// `sandbox-fallback`.
fn check_homeless_shelter(
    store: &LocalStore,
    settings: &BuildSettings,
    node: &Node,
) -> Result<(), BuildError> {
    if chroot_build(store, settings, node) == Ok(false)
        && fs::symlink_metadata(HOMELESS_SHELTER).is_ok()
    {
        return Err(BuildError::Other(format!(
            "home directory '{HOMELESS_SHELTER}' exists; please remove it to assure purity of builds without sandboxing"
        )));
    }
    Ok(())
}

/// Where a build reports to: `emit` gets the builder's output lines, `note` messages to show
/// in any case, `resolved` the derivation a derivation was resolved to.
pub struct Hooks<'a> {
    pub emit: &'a dyn Fn(String),
    pub note: &'a dyn Fn(String),
    pub resolved: &'a dyn Fn(&StorePath),
    /// The build starts (its outputs locked, not all valid).
    pub started: &'a dyn Fn(),
    /// The outputs' locks are held by another process (CppNix's message).
    pub waiting: &'a dyn Fn(String),
}

/// Lock a build's outputs (their real paths); when another process holds one, say so first
/// as CppNix 2.8 does (`waiting for lock on 'A', 'B'`: every output, sorted), then wait.
fn lock_outputs(real_outputs: &[PathBuf], hooks: &Hooks) -> Result<PathLocks, BuildError> {
    if let Some(locks) = PathLocks::try_lock(real_outputs)? {
        return Ok(locks);
    }
    let mut paths: Vec<String> = real_outputs
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    paths.sort();
    paths.dedup();
    let shown: Vec<String> = paths.iter().map(|p| format!("'{p}'")).collect();
    (hooks.waiting)(format!("waiting for lock on {}", shown.join(", ")));
    Ok(PathLocks::lock(real_outputs)?)
}

/// Build one derivation whose inputs are all valid, in `slot`. `Ok(Err(..))` is a failed
/// build.
pub fn build_one(
    store: &LocalStore,
    settings: &BuildSettings,
    node: &Node,
    cancel: &AtomicBool,
    hooks: &Hooks,
    slot: &mut Slot,
) -> Result<Result<(), Failure>, BuildError> {
    if node.resolve {
        return build_resolved(store, settings, node, cancel, hooks, slot);
    }
    let (emit, note) = (hooks.emit, hooks.note);
    let cache = slot.cache();
    let sd = store.store_dir();
    let drv = &node.drv;
    let drv_shown = sd.display(&node.drv_path);
    let builtin = drv.builder.starts_with("builtin:");
    // Floating content-addressed outputs (and impure ones, which are built the same way)
    // get their paths from their contents after the build.
    let floating = crate::ca::is_floating(drv) || crate::ca::is_impure(drv);

    // Can this machine build it at all?
    let features = required_features(drv);
    let platform_ok = drv.platform == settings.system
        || settings.extra_platforms.contains(&drv.platform)
        || builtin;
    if !platform_ok || !features.is_subset(&settings.system_features) {
        let f: Vec<&str> = features.iter().map(String::as_str).collect();
        let have: Vec<&str> = settings
            .system_features
            .iter()
            .map(String::as_str)
            .collect();
        return fail(
            node,
            FailKind::Misc,
            format!(
                "a '{}' with features {{{}}} is required to build '{drv_shown}', but I am a '{}' with features {{{}}}",
                drv.platform,
                f.join(", "),
                settings.system,
                have.join(", ")
            ),
        );
    }

    // Lock the outputs, then look again: another process may have built them meanwhile.
    for p in node.outputs.values() {
        cache.add_temp_root(store, p)?;
    }
    let real_outputs: Vec<PathBuf> = node.outputs.values().map(|p| store.real_path(p)).collect();
    let mut locks = lock_outputs(&real_outputs, hooks)?;
    let mut valid = BTreeSet::new();
    for p in node.outputs.values() {
        if store.is_valid_path(p)? {
            valid.insert(p.clone());
        }
    }
    if !node.check && valid.len() == node.outputs.len() {
        locks.set_deletion(true);
        crate::ca::register_realisations(store, drv, &node.outputs, false, &[])?;
        return Ok(Ok(()));
    }
    (hooks.started)();

    let mut use_sandbox = match chroot_build(store, settings, node) {
        Ok(b) => b,
        Err(msg) => return fail(node, FailKind::Misc, msg),
    };
    let chroot_store = is_chroot_store(store);
    if builtin {
        use_sandbox = false;
    }
    if use_sandbox {
        if let Err(e) = sandbox_available() {
            if chroot_store {
                return fail(
                    node,
                    FailKind::Misc,
                    format!("building '{drv_shown}' in a chroot store needs the sandbox, which cannot be set up here: {e}"),
                );
            }
            if settings.sandbox_fallback {
                tracing::warn!("building '{drv_shown}' without the sandbox: {e}");
                use_sandbox = false;
            } else {
                return fail(
                    node,
                    FailKind::Misc,
                    format!("the sandbox cannot be set up here ({e}); set 'sandbox = false' to build without it"),
                );
            }
        }
    }
    // Without the sandbox, the builder cannot make the outputs that are valid already at their
    // paths: it makes them at fallback paths, whose hash parts stand for the real ones in its
    // environment and are rewritten back afterwards (CppNix's hash rewriting, see `rewrite`).
    // With the sandbox, every output is made in the sandbox's own store.
    let mut redirected: BTreeMap<StorePath, StorePath> = BTreeMap::new();
    if !use_sandbox {
        for p in node.outputs.values().filter(|p| valid.contains(*p)) {
            redirected.insert(p.clone(), fallback_path(sd, &node.drv_path, p)?);
        }
    }
    let scratch = |p: &StorePath| -> StorePath { redirected.get(p).unwrap_or(p).clone() };

    let inputs = direct_inputs(store, node, cache)?;
    let input_closure = cache.closure(store, &inputs)?;
    for p in &input_closure {
        cache.add_temp_root(store, p)?;
    }

    // The build directory.
    let tmp_dir = make_build_dir(&settings.build_dir, &node.drv_path)?;
    // What a build leaves is deleted in the background, except after an unsandboxed build as
    // a build user: the next build as that user could look into it meanwhile, so it goes
    // before the user is released.
    let trash = if !use_sandbox && settings.build_users_group.is_some() {
        Trash::inline()
    } else {
        slot.trash().clone()
    };
    let trash = &trash;
    let mut tmp_cleanup = Cleanup(Some(tmp_dir.clone()), &[], trash, None);
    let tmp_in_sandbox = if use_sandbox {
        settings.sandbox_build_dir.clone()
    } else {
        tmp_dir.to_string_lossy().into_owned()
    };

    // Stale leftovers at the output paths (invalid, since we hold the locks) go first, and
    // whatever is at the fallback paths (never valid; they go again when the build is over).
    for p in node.outputs.values() {
        if !valid.contains(p) {
            firn_store::canon::delete_path(&store.real_path(p))?;
        }
    }
    for f in redirected.values() {
        cache.add_temp_root(store, f)?;
        firn_store::canon::delete_path(&store.real_path(f))?;
    }
    let _fallbacks = Fallbacks(redirected.values().map(|f| store.real_path(f)).collect());

    // Where the sandbox's outputs appear (known once the build user is), and its directories,
    // removed afterwards.
    let mut out_dir: Option<PathBuf> = None;
    let mut upper_cleanup = Cleanup(None, &[], trash, None);
    let mut work_cleanup = Cleanup(None, sandbox::WORK_DIRS, trash, None);

    let mut rewrites: BTreeMap<String, String> = node
        .outputs
        .iter()
        .map(|(name, p)| (hash_placeholder(name), sd.display(&scratch(p))))
        .collect();
    for (real, fallback) in &redirected {
        rewrites.insert(
            real.hash_part().to_string(),
            fallback.hash_part().to_string(),
        );
    }
    let closure_json = |paths: &BTreeSet<StorePath>| -> Result<serde_json::Value, BuildError> {
        let c = cache.closure(store, paths)?;
        let mut list = Vec::new();
        for p in &c {
            if let Some(info) = store.query_path_info_shared(p)? {
                list.push(serde_json::json!({
                    "path": sd.display(p),
                    "narHash": info.nar_hash.to_sri(),
                    "narSize": info.nar_size,
                    "references": info.references.iter().map(|r| sd.display(r)).collect::<Vec<_>>(),
                }));
            }
        }
        Ok(serde_json::Value::Array(list))
    };
    let env = builder_env(&EnvInputs {
        drv,
        store_dir: sd,
        tmp_dir: &tmp_dir,
        tmp_dir_in_sandbox: &tmp_in_sandbox,
        cores: settings.cores,
        rewrites: &rewrites,
        closure_json: &closure_json,
    })?;
    if !drv.env.contains_key("__json") {
        write_reference_graphs(store, drv, &tmp_dir, &input_closure, cache)?;
    }

    let mut log = if settings.keep_build_log {
        Some(LogWriter::create(
            &settings.log_dir,
            &node.drv_path,
            settings.compress_build_log,
        )?)
    } else {
        None
    };
    let mut tail = Tail {
        lines: VecDeque::new(),
        max: settings.log_lines.max(1),
        partial: Vec::new(),
    };
    let start = Instant::now();
    // As root with `build-users-group`: the builder runs as a free member of the group, which
    // owns the build directory (and the sandbox's directories) while it runs; the user is held
    // until the outputs are checked and owned by the store again.
    let user = match &settings.build_users_group {
        // SAFETY: a plain getter.
        Some(g) if !builtin && unsafe { libc::geteuid() } == 0 => {
            Some(cache.build_user(g, &settings.user_pool_dir)?)
        }
        _ => None,
    };
    if let Some(u) = &user {
        crate::users::chown_tree(&tmp_dir, u.uid, u.gid)?;
        tracing::debug!("building '{drv_shown}' as build user '{}'", u.name);
    }
    let ended = if builtin {
        let out = node.outputs.get("out").ok_or_else(|| {
            BuildError::Other(format!(
                "'{drv_shown}': builtin builders need an output named 'out'"
            ))
        })?;
        match crate::builtin::run_builtin(
            &drv.builder,
            &env,
            &store.real_path(&scratch(out)),
            sd.as_str(),
            &store.layout().real_store_dir,
        ) {
            Ok(text) => {
                tail.push(text.as_bytes(), emit);
                if let Some(l) = log.as_mut() {
                    let _ = l.write(text.as_bytes());
                }
                Ended::Exited(0)
            }
            Err(msg) => Ended::SetupFailed(msg),
        }
    } else {
        let args: Vec<String> = drv
            .args
            .iter()
            .map(|a| firn_format::rewrite::rewrite_strings(a, &rewrites))
            .collect();
        let argv0 = Path::new(&drv.builder)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| drv.builder.clone());
        let launch = if use_sandbox {
            // Fixed-output and impure builders keep the host's network (CppNix's
            // `isSandboxed`).
            let fixed = drv.is_fixed_output() || crate::ca::is_impure(drv);
            let inputs = input_closure
                .iter()
                .map(|p| {
                    Ok(Input {
                        name: p.base_name().to_string(),
                        is_dir: cache.is_dir(store, p)?,
                    })
                })
                .collect::<Result<Vec<_>, BuildError>>()?;
            let mut binds = vec![Bind {
                source: tmp_dir.clone(),
                target: settings.sandbox_build_dir.clone(),
                read_only: false,
                optional: false,
            }];
            for entry in &settings.sandbox_paths {
                let (entry, optional) = match entry.strip_suffix('?') {
                    Some(e) => (e, true),
                    None => (entry.as_str(), false),
                };
                let (target, source) = entry.split_once('=').unwrap_or((entry, entry));
                binds.push(Bind {
                    source: PathBuf::from(source),
                    target: target.to_string(),
                    read_only: false,
                    optional,
                });
            }
            if fixed {
                for p in ["/etc/resolv.conf", "/etc/services", "/etc/hosts"] {
                    binds.push(Bind {
                        source: PathBuf::from(p),
                        target: p.to_string(),
                        read_only: true,
                        optional: true,
                    });
                }
            }
            let sandbox =
                slot.sandbox_store(store, &inputs, user.as_ref().map(|u| (u.uid, u.gid)))?;
            if let Some(d) = &sandbox.dirs {
                upper_cleanup.0 = Some(d.upper.clone());
                upper_cleanup.3 = Some(sandbox.trash.clone());
                work_cleanup.0 = Some(d.work.clone());
                work_cleanup.3 = Some(sandbox.trash.clone());
            }
            out_dir = Some(sandbox.out_dir.clone());
            Launch::Sandboxed(Box::new(Spec {
                root: sandbox.root,
                store: sandbox.view,
                store_dir: sd.as_str().to_string(),
                real_store_dir: store.layout().real_store_dir.clone(),
                inputs,
                binds,
                private_network: !fixed,
                work_dir: settings.sandbox_build_dir.clone(),
                builder: drv.builder.clone(),
                argv: std::iter::once(argv0).chain(args).collect(),
                env: env.into_iter().collect(),
                shm_size: settings.shm_size.clone(),
                linux32: drv.platform == "i686-linux" && settings.system == "x86_64-linux",
                uname26: settings.impersonate_linux26
                    && (drv.platform == "i686-linux" || drv.platform == "x86_64-linux"),
                build_user: user.as_ref().map(|u| (u.uid, u.gid)),
                syscall_filter: syscall_filter(settings),
            }))
        } else {
            if let Some(u) = &user {
                // Outputs are made directly in the store: the group may create entries
                // there (CppNix's 1775 root:<group>).
                ensure_store_dir_for_group(store, u.gid)?;
            }
            Launch::Direct {
                builder: drv.builder.clone(),
                argv0,
                args,
                env,
                cwd: tmp_dir.clone(),
                user: user.as_ref().map(|u| (u.uid, u.gid, u.groups.clone())),
                syscall_filter: syscall_filter(settings),
            }
        };
        let limits = Limits {
            timeout: settings.timeout,
            max_silent: settings.max_silent_time,
            max_log: settings.max_log_size,
        };
        let (net, mount) = slot.namespaces(out_dir.as_deref());
        let ended = run(launch, net, mount, limits, cancel, &mut |data| {
            if let Some(l) = log.as_mut() {
                let _ = l.write(data);
            }
            tail.push(data, emit);
        });
        if let (Some(u), false) = (&user, use_sandbox) {
            // Whatever the builder left running (outside a PID namespace) goes.
            crate::users::kill_user(u.uid);
        }
        ended?
    };
    tail.finish(emit);
    if let Some(l) = log.take() {
        l.finish().map_err(|e| {
            BuildError::Other(format!("writing the build log of '{drv_shown}': {e}"))
        })?;
    }
    tracing::debug!(
        "builder of '{drv_shown}' ended after {:?}: {ended:?}",
        start.elapsed()
    );

    let failure = |kind: FailKind, head: String| -> Failure {
        let mut msg = head;
        if settings.log_tail
            && !tail.lines.is_empty()
            && matches!(
                kind,
                FailKind::Failed | FailKind::Transient | FailKind::Rejected | FailKind::TimedOut
            )
        {
            msg.push_str(&format!(";\n       last {} log lines:", tail.lines.len()));
            for l in &tail.lines {
                msg.push_str(&format!("\n       > {l}"));
            }
            if settings.keep_build_log {
                msg.push_str(&format!(
                    "\n       For full logs, run 'nix log {drv_shown}'."
                ));
            }
        }
        Failure {
            drv: node.drv_path.clone(),
            kind,
            msg,
        }
    };
    // Where the outputs are: in the sandbox's upper layer, or already in place.
    let location = |p: &StorePath| -> PathBuf {
        match &out_dir {
            Some(d) => d.join(p.base_name()),
            None => store.real_path(&scratch(p)),
        }
    };
    // A builder that failed is a permanent failure, except for fixed-output derivations
    // (CppNix's `TransientFailure`: they are not sandboxed and depend on the network).
    let builder_failed = if drv.is_fixed_output() || crate::ca::is_impure(drv) {
        FailKind::Transient
    } else {
        FailKind::Failed
    };
    // Set once the outputs are valid (a failing post-build hook must not remove them).
    let mut installed = false;
    let result: Result<(), Failure> = match ended {
        Ended::Exited(0) => {
            // What the builder left is looked at as it is first (CppNix's check of its
            // permissions and owner); outputs made at fallback paths get the real hash parts
            // back next.
            let checked = check_ownership(&node.outputs, &location, user.as_ref().map(|u| u.uid))
                .and_then(|()| {
                    unredirect(node, &location, &redirected).map_err(|e| Refused {
                        kind: FailKind::Misc,
                        msg: e.to_string(),
                    })
                })
                .and_then(|()| {
                    if floating {
                        // `--check` compares with the valid outputs instead of applying the
                        // reference rules, as for the other derivations.
                        crate::ca::finish_floating(
                            store,
                            &node.drv_path,
                            drv,
                            &node.outputs,
                            &location,
                            &input_closure,
                            !node.check,
                        )
                    } else {
                        // `--check` leaves out `allowedReferences` and friends (CppNix
                        // 2.8 compares with the valid outputs instead).
                        check_outputs(
                            store,
                            &node.drv_path,
                            drv,
                            &node.outputs,
                            &location,
                            &input_closure,
                            !node.check,
                        )
                    }
                });
            match checked {
                Err(r) => Err(Failure {
                    drv: node.drv_path.clone(),
                    kind: r.kind,
                    msg: r.msg,
                }),
                Ok(checked) => {
                    if node.check {
                        let hook = DiffHook {
                            settings,
                            user: user.as_ref().map(|u| (u.uid, u.gid)),
                            tmp_dir: &tmp_dir,
                            note,
                        };
                        compare_with_valid(store, node, &checked, &hook).and_then(|()| {
                            mark_ultimate(store, settings, &checked).map_err(|e| Failure {
                                drv: node.drv_path.clone(),
                                kind: FailKind::Misc,
                                msg: e.to_string(),
                            })?;
                            // As CppNix 2.8, the hook runs after a check that passed, with
                            // no output paths (`OUT_PATHS` empty).
                            match &settings.post_build_hook {
                                Some(hook) => run_post_build_hook(
                                    hook,
                                    store,
                                    node,
                                    &BTreeMap::new(),
                                    (emit, note),
                                )
                                .map_err(|msg| Failure {
                                    drv: node.drv_path.clone(),
                                    kind: FailKind::Failed,
                                    msg,
                                }),
                                None => Ok(()),
                            }
                        })
                    } else {
                        let keys = crate::sign::read_keys(&settings.secret_key_files)?;
                        if floating {
                            install_floating(store, &checked, &keys)?;
                        } else {
                            install(store, use_sandbox, &checked, &valid, &keys)?;
                        }
                        installed = true;
                        locks.set_deletion(true);
                        let finals: BTreeMap<String, StorePath> = checked
                            .iter()
                            .map(|c| (c.name.clone(), c.info.path.clone()))
                            .chain(
                                node.outputs
                                    .iter()
                                    .filter(|(_, p)| valid.contains(*p))
                                    .map(|(n, p)| (n.clone(), p.clone())),
                            )
                            .collect();
                        crate::ca::register_realisations(store, drv, &finals, false, &keys)?;
                        if crate::ca::is_impure(drv) {
                            crate::ca::record_impure(&node.drv_path, &finals);
                        }
                        match &settings.post_build_hook {
                            Some(hook) => {
                                run_post_build_hook(hook, store, node, &finals, (emit, note))
                                    .map_err(|msg| Failure {
                                        drv: node.drv_path.clone(),
                                        kind: FailKind::Failed,
                                        msg,
                                    })
                            }
                            None => Ok(()),
                        }
                    }
                }
            }
        }
        Ended::Exited(c) => Err(failure(
            builder_failed,
            format!("builder for '{drv_shown}' failed with exit code {c}"),
        )),
        Ended::Signaled(s) => Err(failure(
            builder_failed,
            format!(
                "builder for '{drv_shown}' failed due to signal {s} ({})",
                firn_store::exit_status::signal_name(s)
            ),
        )),
        Ended::TimedOut(t) => Err(failure(
            FailKind::TimedOut,
            format!("building of '{drv_shown}' timed out after {t} seconds"),
        )),
        Ended::Silent(t) => Err(failure(
            FailKind::TimedOut,
            format!("building of '{drv_shown}' timed out after {t} seconds of silence"),
        )),
        Ended::LogLimit(n) => Err(failure(
            FailKind::LogLimit,
            format!(
                "building of '{drv_shown}' killed after writing more than {n} bytes of log output"
            ),
        )),
        Ended::SetupFailed(m) => Err(failure(
            builder_failed,
            format!("while setting up the build environment of '{drv_shown}': {m}"),
        )),
        Ended::Cancelled => Err(Failure {
            drv: node.drv_path.clone(),
            kind: FailKind::Cancelled,
            msg: format!("building '{drv_shown}' was cancelled"),
        }),
    };
    if node.check && floating {
        // What a check of a floating derivation built is only compared: nothing of it stays
        // at its scratch paths (without the sandbox, that is where it was made).
        for p in node.outputs.values() {
            let _ = firn_store::canon::delete_path(&store.real_path(p));
        }
    }
    if let Err(f) = &result {
        // Nothing of a failed build stays at an output path.
        for p in node.outputs.values() {
            if !valid.contains(p) && !installed {
                let _ = firn_store::canon::delete_path(&store.real_path(p));
            }
        }
        if settings.keep_failed && !matches!(f.kind, FailKind::Misc | FailKind::Cancelled) {
            let kept = tmp_cleanup.0.take();
            if let Some(k) = kept {
                note(format!("note: keeping build directory '{}'", k.display()));
            }
        }
    }
    drop(upper_cleanup);
    drop(work_cleanup);
    drop(tmp_cleanup);
    drop(user);
    Ok(result)
}

/// A build's temporary directory as CppNix 2.8 makes it (`createTempDir`):
/// `<root>/nix-build-<drv name>.drv-<n>` with the first `n` from 0 whose directory does not
/// exist yet (mode 0700), in `root` with its symbolic links resolved.
pub(crate) fn make_build_dir(root: &Path, drv_path: &StorePath) -> Result<PathBuf, BuildError> {
    use std::os::unix::fs::DirBuilderExt;
    fs::create_dir_all(root).map_err(|e| BuildError::io("creating build directory", root, e))?;
    let root = fs::canonicalize(root)
        .map_err(|e| BuildError::io("resolving the build directory root", root, e))?;
    let mut n: u64 = 0;
    loop {
        let dir = root.join(format!("nix-build-{}-{n}", drv_path.name()));
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => n += 1,
            Err(e) => return Err(BuildError::io("creating build directory", &dir, e)),
        }
    }
}

/// The store directory as CppNix keeps it with build users: owned by root and the build
/// group, mode 1775 (members create outputs; the sticky bit keeps them from removing others').
fn ensure_store_dir_for_group(store: &LocalStore, gid: u32) -> Result<(), BuildError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = &store.layout().real_store_dir;
    let meta = fs::metadata(dir).map_err(|e| BuildError::io("reading", dir, e))?;
    if meta.uid() != 0 || meta.gid() != gid || meta.mode() & 0o7777 != 0o1775 {
        std::os::unix::fs::chown(dir, Some(0), Some(gid))
            .map_err(|e| BuildError::io("changing the owner of", dir, e))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o1775))
            .map_err(|e| BuildError::io("changing the mode of", dir, e))?;
    }
    Ok(())
}

/// Run the `post-build-hook` for a finished build: `DRV_PATH` and `OUT_PATHS` (the outputs,
/// space-separated) in its environment, announced as CppNix's (`running post-build-hook
/// '…'...`, shown without `-L`), its output shown as build output. A hook that fails fails
/// the build (its outputs stay valid), as in CppNix.
fn run_post_build_hook(
    hook: &Path,
    store: &LocalStore,
    node: &Node,
    outputs: &BTreeMap<String, StorePath>,
    hooks: (&dyn Fn(String), &dyn Fn(String)),
) -> Result<(), String> {
    let (emit, note) = hooks;
    let sd = store.store_dir();
    let outs: Vec<String> = outputs.values().map(|p| sd.display(p)).collect();
    note(format!("running post-build-hook '{}'...", hook.display()));
    let out = std::process::Command::new(hook)
        .env("DRV_PATH", sd.display(&node.drv_path))
        .env("OUT_PATHS", outs.join(" "))
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("running post-build-hook '{}': {e}", hook.display()))?;
    for line in String::from_utf8_lossy(&out.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&out.stderr).lines())
    {
        emit(format!("post-build-hook: {line}"));
    }
    if !out.status.success() {
        return Err(format!(
            "post-build-hook '{}' {}",
            hook.display(),
            match out.status.code() {
                Some(c) => format!("exited with code {c}"),
                None => "was killed by a signal".to_string(),
            }
        ));
    }
    Ok(())
}

/// Move checked outputs into the store (from the sandbox) and register them in one
/// transaction, signed with `keys`. Outputs that were already valid keep their old copy.
fn install(
    store: &LocalStore,
    from_sandbox: bool,
    checked: &[Checked],
    valid: &BTreeSet<StorePath>,
    keys: &[SecretKey],
) -> Result<(), BuildError> {
    let mut infos = Vec::new();
    for c in checked {
        if valid.contains(&c.info.path) {
            continue;
        }
        let real = store.real_path(&c.info.path);
        if from_sandbox {
            firn_store::canon::delete_path(&real)?;
            // A directory needs write permission to be moved to another parent.
            firn_store::canon::make_writable(&c.location)?;
            fs::rename(&c.location, &real)
                .map_err(|e| BuildError::io("moving output into place", &real, e))?;
            firn_store::canon::canonicalise_top(&real)?;
        }
        let mut info = c.info.clone();
        crate::sign::sign_path_info(store.store_dir(), &mut info, keys)?;
        infos.push(info);
    }
    store.register_valid_paths(&infos)?;
    Ok(())
}

/// Move the outputs of a floating derivation from their scratch locations to their
/// content-addressed paths, each under its lock, and register them in one transaction, signed
/// with `keys`. A path already valid (the same contents made by another derivation) is kept,
/// and the new copy dropped.
fn install_floating(
    store: &LocalStore,
    checked: &[Checked],
    keys: &[SecretKey],
) -> Result<(), BuildError> {
    let reals: Vec<PathBuf> = checked
        .iter()
        .map(|c| store.real_path(&c.info.path))
        .collect();
    for c in checked {
        store.add_temp_root(&c.info.path)?;
    }
    let mut locks = PathLocks::lock(&reals)?;
    let mut infos = Vec::new();
    for (c, real) in checked.iter().zip(&reals) {
        if store.is_valid_path(&c.info.path)? {
            firn_store::canon::delete_path(&c.location)?;
            continue;
        }
        firn_store::canon::delete_path(real)?;
        firn_store::canon::make_writable(&c.location)?;
        fs::rename(&c.location, real)
            .map_err(|e| BuildError::io("moving output into place", real, e))?;
        firn_store::canon::canonicalise_top(real)?;
        let mut info = c.info.clone();
        crate::sign::sign_path_info(store.store_dir(), &mut info, keys)?;
        infos.push(info);
    }
    store.register_valid_paths(&infos)?;
    locks.set_deletion(true);
    Ok(())
}

/// Build a derivation that must be resolved first (`ca-derivations`): resolve it now that its
/// inputs are built, write the resolved derivation to the store, build that (unless its
/// outputs are known and valid already), and record the realisations of the original.
fn build_resolved(
    store: &LocalStore,
    settings: &BuildSettings,
    node: &Node,
    cancel: &AtomicBool,
    hooks: &Hooks,
    slot: &mut Slot,
) -> Result<Result<(), Failure>, BuildError> {
    let sd = store.store_dir();
    let (path, drv) = crate::ca::resolve(store, &node.drv_path, &node.drv)?;
    let known = crate::ca::has_known_paths(&drv)?;
    let partial = crate::ca::output_map(store, &drv)?;
    let mut all_valid = true;
    for p in partial.values() {
        match p {
            Some(p) if store.is_valid_path(p)? => {}
            _ => all_valid = false,
        }
    }
    // `--check` checks the resolved derivation (CppNix hands its build mode on), which needs
    // its outputs valid.
    (hooks.resolved)(&path);
    if node.check && !all_valid {
        return fail(
            node,
            FailKind::Misc,
            format!(
                "some outputs of '{}' are not valid, so checking is not possible",
                sd.display(&path)
            ),
        );
    }
    if !all_valid || node.check {
        let outputs = if known {
            partial
                .iter()
                .filter_map(|(n, p)| p.clone().map(|p| (n.clone(), p)))
                .collect()
        } else {
            drv.outputs
                .keys()
                .map(|o| Ok((o.clone(), crate::ca::scratch_path(sd, &path, &drv.name, o)?)))
                .collect::<Result<_, BuildError>>()?
        };
        let inner = Node {
            drv_path: path.clone(),
            drv: drv.clone(),
            outputs,
            deps: BTreeSet::new(),
            dependents: BTreeSet::new(),
            check: node.check,
            resolve: false,
            announced: true,
            missing_srcs: BTreeSet::new(),
        };
        if let Err(f) = build_one(store, settings, &inner, cancel, hooks, slot)? {
            return Ok(Err(Failure {
                drv: node.drv_path.clone(),
                ..f
            }));
        }
    } else if known {
        let valid = partial
            .iter()
            .filter_map(|(n, p)| p.clone().map(|p| (n.clone(), p)))
            .collect();
        crate::ca::register_realisations(store, &drv, &valid, false, &[])?;
    }
    // The resolved derivation's outputs are the original's (an impure one's are known from
    // its build only).
    let mut paths = BTreeMap::new();
    if crate::ca::is_impure(&drv) {
        let built = crate::ca::built_impure(&path).unwrap_or_default();
        crate::ca::record_impure(&node.drv_path, &built);
        return Ok(Ok(()));
    }
    for (name, p) in crate::ca::output_map(store, &drv)? {
        match p {
            Some(p) => {
                paths.insert(name, p);
            }
            None => {
                return Err(BuildError::Other(format!(
                    "output '{name}' of the resolved derivation '{}' has no realisation after its build",
                    sd.display(&path)
                )))
            }
        }
    }
    let fixed = node.drv.is_fixed_output();
    // As CppNix, the original derivation's realisations are signed even when the resolved
    // derivation's outputs were valid already.
    let keys = crate::sign::read_keys(&settings.secret_key_files)?;
    crate::ca::register_realisations(store, &node.drv, &paths, !fixed, &keys)?;
    Ok(Ok(()))
}

/// The system-call filter builders run under (`filter-syscalls`, `allow-new-privileges`).
fn syscall_filter(settings: &BuildSettings) -> Option<crate::seccomp::Filter> {
    if !settings.filter_syscalls {
        return None;
    }
    crate::seccomp::Filter::new(settings.allow_new_privileges)
}

/// The outputs made at fallback paths take the real paths' hash parts back, in all outputs
/// (one may mention another); an output the builder did not make is left for
/// [`check_outputs`] to report.
fn unredirect(
    node: &Node,
    location: &dyn Fn(&StorePath) -> PathBuf,
    redirected: &BTreeMap<StorePath, StorePath>,
) -> Result<(), BuildError> {
    if redirected.is_empty() {
        return Ok(());
    }
    let rewrites = Rewrites::new(redirected.iter().map(|(real, f)| (f, real)));
    for p in node.outputs.values() {
        let loc = location(p);
        if fs::symlink_metadata(&loc).is_err() {
            continue;
        }
        // Canonical first: what is read is then owned by us and readable, and holds no hard
        // link to a file outside the output.
        canonicalise_output(&loc)?;
        rewrite_path(&loc, &rewrites)?;
    }
    Ok(())
}

/// Deletes the fallback paths of a build (see [`crate::rewrite`]) when dropped.
struct Fallbacks(Vec<PathBuf>);

impl Drop for Fallbacks {
    fn drop(&mut self) {
        for p in &self.0 {
            if let Err(e) = firn_store::canon::delete_path(p) {
                tracing::warn!("{e}");
            }
        }
    }
}

/// What `--check` needs for an output that differs: whether to keep it, and the diff hook.
struct DiffHook<'a> {
    settings: &'a BuildSettings,
    /// The build's user (uid, gid), which runs the hook.
    user: Option<(u32, u32)>,
    tmp_dir: &'a Path,
    /// Where the hook's output is shown.
    note: &'a dyn Fn(String),
}

impl DiffHook<'_> {
    /// Whether a differing output is kept at `<output>.check` (CppNix: with `keep-failed` or
    /// `run-diff-hook`).
    fn keeps(&self) -> bool {
        self.settings.keep_failed || self.settings.run_diff_hook
    }

    /// CppNix's `handleDiffHook`: run `diff-hook` (if `run-diff-hook`) with the valid output,
    /// the new one, the derivation and the build directory, from `/`; what it prints on
    /// stdout is shown, and its failure too, neither failing anything.
    fn run(&self, valid: &str, new: &Path, drv: &str) {
        let Some(hook) = self
            .settings
            .diff_hook
            .as_ref()
            .filter(|_| self.settings.run_diff_hook)
        else {
            return;
        };
        use std::os::unix::process::CommandExt;
        let mut c = std::process::Command::new(hook);
        c.arg(valid)
            .arg(new)
            .arg(drv)
            .arg(self.tmp_dir)
            .current_dir("/")
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit());
        if let Some((uid, gid)) = self.user {
            c.uid(uid).gid(gid);
        }
        let failed = match c.output() {
            Ok(out) if out.status.success() => {
                let text = String::from_utf8_lossy(&out.stdout);
                let text = text.trim_end_matches('\n');
                if !text.is_empty() {
                    (self.note)(text.to_string());
                }
                return;
            }
            Ok(out) => firn_store::exit_status::describe(&out.status),
            Err(e) => format!("could not be started: {e}"),
        };
        (self.note)(format!(
            "error: diff hook execution failed: diff-hook program '{}' {failed}",
            hook.display()
        ));
    }
}

/// `--check`: the new outputs must equal the valid ones (those not valid are not compared,
/// nor registered, as in CppNix). A differing output is kept at `<output>.check` with
/// `keep-failed` or `run-diff-hook`, and the diff hook runs, as CppNix does (which also keeps
/// the build directory with `keep-failed`).
fn compare_with_valid(
    store: &LocalStore,
    node: &Node,
    checked: &[Checked],
    hook: &DiffHook<'_>,
) -> Result<(), Failure> {
    let sd = store.store_dir();
    for c in checked {
        let old = store.query_path_info(&c.info.path).ok().flatten();
        match old {
            Some(old) if old.nar_hash != c.info.nar_hash => {
                // CppNix names the outputs by where their files are (in a chroot store too).
                let real = store.real_path(&c.info.path);
                let drv_shown = sd.display(&node.drv_path);
                let mut msg = format!(
                    "derivation '{drv_shown}' may not be deterministic: output '{}' differs",
                    real.display()
                );
                if hook.keeps() {
                    let mut dst = real.clone().into_os_string();
                    dst.push(".check");
                    let dst = PathBuf::from(dst);
                    if let Err(e) = keep_check_result(&c.location, &dst) {
                        return Err(Failure {
                            drv: node.drv_path.clone(),
                            kind: FailKind::Misc,
                            msg: e.to_string(),
                        });
                    }
                    hook.run(&sd.display(&c.info.path), &dst, &drv_shown);
                    msg.push_str(&format!(" from '{}'", dst.display()));
                }
                return Err(Failure {
                    drv: node.drv_path.clone(),
                    kind: FailKind::NotDeterministic,
                    msg,
                });
            }
            Some(_) | None => {}
        }
    }
    Ok(())
}

/// After a `--check` that passed, the outputs are ultimately trusted: CppNix registers them
/// again with `ultimate` set and signed with `secret-key-files` (their registration time
/// stays).
fn mark_ultimate(
    store: &LocalStore,
    settings: &BuildSettings,
    checked: &[Checked],
) -> Result<(), BuildError> {
    let mut again = Vec::new();
    let mut keys = None;
    for c in checked {
        if let Some(mut info) = store.query_path_info(&c.info.path)? {
            if !info.ultimate {
                info.ultimate = true;
                if keys.is_none() {
                    keys = Some(crate::sign::read_keys(&settings.secret_key_files)?);
                }
                crate::sign::sign_path_info(
                    store.store_dir(),
                    &mut info,
                    keys.as_deref().unwrap_or_default(),
                )?;
                again.push(info);
            }
        }
    }
    if !again.is_empty() {
        store.register_valid_paths(&again)?;
    }
    Ok(())
}

/// Move a differing `--check` result to `dst` (replacing what is there).
fn keep_check_result(from: &Path, dst: &Path) -> Result<(), BuildError> {
    firn_store::canon::delete_path(dst)?;
    // A directory needs write permission to be moved to another parent.
    firn_store::canon::make_writable(from)?;
    fs::rename(from, dst).map_err(|e| BuildError::io("moving the check result to", dst, e))?;
    firn_store::canon::canonicalise_top(dst)?;
    Ok(())
}

/// `exportReferencesGraph = [ name path ... ]` without structured attributes: a file `name`
/// in the build directory with the closure of `path` in the `--register-validity` format.
fn write_reference_graphs(
    store: &LocalStore,
    drv: &firn_format::derivation::Derivation,
    tmp_dir: &Path,
    input_closure: &BTreeSet<StorePath>,
    cache: &BuildCache,
) -> Result<(), BuildError> {
    let Some(spec) = drv.env.get("exportReferencesGraph") else {
        return Ok(());
    };
    let sd = store.store_dir();
    let words: Vec<&str> = spec.split_ascii_whitespace().collect();
    if !words.len().is_multiple_of(2) {
        return Err(BuildError::Other(format!(
            "odd number of tokens in 'exportReferencesGraph': '{spec}'"
        )));
    }
    for pair in words.chunks(2) {
        let (name, path) = (pair[0], pair[1]);
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(BuildError::Other(format!(
                "invalid file name '{name}' in 'exportReferencesGraph'"
            )));
        }
        let (p, _) = sd
            .parse_inside(path)
            .map_err(|e| BuildError::Other(format!("exportReferencesGraph: {e}")))?;
        if !input_closure.contains(&p) {
            return Err(BuildError::Other(format!(
                "'exportReferencesGraph' contains a non-input path '{path}'"
            )));
        }
        let c = cache.closure(store, &BTreeSet::from([p]))?;
        let mut text = String::new();
        for q in &c {
            let info = store
                .query_path_info_shared(q)?
                .ok_or_else(|| BuildError::Other(format!("'{}' is not valid", sd.display(q))))?;
            text.push_str(&sd.display(q));
            text.push('\n');
            text.push_str(
                &info
                    .deriver
                    .as_ref()
                    .map(|d| sd.display(d))
                    .unwrap_or_default(),
            );
            text.push('\n');
            text.push_str(&format!("{}\n", info.references.len()));
            for r in &info.references {
                text.push_str(&sd.display(r));
                text.push('\n');
            }
        }
        let f = tmp_dir.join(name);
        fs::write(&f, text).map_err(|e| BuildError::io("writing", &f, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `nix-build-<name>.drv-<n>`: the first free `n`, in the root with its links resolved.
    #[test]
    fn build_dirs_are_named_as_cppnix() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("root");
        let drv = StorePath::from_base_name("p5gi1gqmzx6i7jy18f8ywh20hiqviagq-top.drv")
            .expect("a store path");
        let first = make_build_dir(&root, &drv).expect("first");
        let root = fs::canonicalize(&root).expect("canonicalize");
        assert_eq!(first, root.join("nix-build-top.drv-0"));
        // Taken names are skipped, free ones below are used again.
        fs::create_dir(root.join("nix-build-top.drv-2")).expect("mkdir");
        let second = make_build_dir(&root, &drv).expect("second");
        assert_eq!(second, root.join("nix-build-top.drv-1"));
        let third = make_build_dir(&root, &drv).expect("third");
        assert_eq!(third, root.join("nix-build-top.drv-3"));
        fs::remove_dir(&first).expect("rmdir");
        assert_eq!(make_build_dir(&root, &drv).expect("again"), first);
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&third).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        // Through a link, the directory is under its target.
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&root, &link).expect("symlink");
        assert_eq!(
            make_build_dir(&link, &drv).expect("through a link"),
            root.join("nix-build-top.drv-4")
        );
    }
}
