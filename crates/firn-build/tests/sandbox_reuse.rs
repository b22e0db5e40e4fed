//! What a build slot keeps from one sandboxed build to the next (its network namespace, its
//! sandbox directory, its store tree or its overlay's lower layer) must not let a build see
//! anything a previous one left: files in `/tmp`, `/build` or the store directory, processes,
//! sockets. Builds run here one after another in one slot, as the scheduler runs them, as a
//! stand-in build user (uid and gid 30000, which need not exist), with the store tree (as
//! with build users) and with the overlay (as without). Each test runs in its own thread,
//! whose mount namespace the store tree changes.
//! The builder is the host's static busybox (`apt-get install busybox-static`), as in the
//! build tests of the `firn` crate.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use firn_build::netns::NetSlot;
use firn_build::run::{run, Ended, Launch, Limits};
use firn_build::sandbox::lower::LowerDir;
use firn_build::sandbox::tree::StoreTree;
use firn_build::sandbox::{self, Bind, Input, SandboxDir, Spec, StoreView};

const BB: &str = "00000000000000000000000000000000-busybox";
const USER: u32 = 30000;

struct Slot {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    store: PathBuf,
    net: NetSlot,
    dir: SandboxDir,
    tree: Option<StoreTree>,
    lower: Option<LowerDir>,
    builds: u32,
}

fn is_root() -> bool {
    // SAFETY: a plain getter.
    unsafe { libc::geteuid() == 0 }
}

/// How a slot's sandboxes get their store directory.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// The slot's store tree (as with build users).
    Tree,
    /// An overlay, its mount points in the slot's kept lower layer.
    OverlayKeptLower,
    /// An overlay, its mount points made in each sandbox.
    Overlay,
}

fn slot(mode: Mode) -> Slot {
    assert!(
        Path::new("/usr/bin/busybox").exists(),
        "the sandbox tests need /usr/bin/busybox (apt-get install busybox-static)"
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = tmp.path().to_path_buf();
    let store = base.join("store");
    std::fs::create_dir_all(store.join(BB)).expect("mkdir");
    std::fs::copy("/usr/bin/busybox", store.join(BB).join("busybox")).expect("copy busybox");
    // The stand-in build user must reach the store and the build directories.
    for p in [&base, &store] {
        std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
    }
    let dir = SandboxDir::create(&store, SandboxDir::new_name(0), Some(USER)).expect("dir");
    let (tree, lower) = match mode {
        Mode::Tree => {
            let t = StoreTree::create(&dir.path, &store, USER).expect("store tree");
            (Some(t), None)
        }
        Mode::OverlayKeptLower => (None, LowerDir::create(0, Some(USER)).expect("lower layer")),
        Mode::Overlay => (None, None),
    };
    Slot {
        _tmp: tmp,
        base,
        store,
        net: NetSlot::new(),
        dir,
        tree,
        lower,
        builds: 0,
    }
}

impl Slot {
    /// Run `script` in a fresh sandbox of this slot; its exit code and output.
    fn build(&mut self, script: &str) -> (Ended, String) {
        self.builds += 1;
        let build_dir = self.base.join(format!("build-{}", self.builds));
        std::fs::create_dir(&build_dir).expect("mkdir");
        std::os::unix::fs::chown(&build_dir, Some(USER), Some(USER)).expect("chown");
        let inputs = vec![Input {
            name: BB.into(),
            is_dir: true,
        }];
        let mut dirs = None;
        let store = match &mut self.tree {
            Some(t) => {
                t.prepare(&inputs).expect("prepare the store tree");
                StoreView::Tree {
                    base: t.base().to_path_buf(),
                }
            }
            None => {
                let d = self.dir.next_build(Some((USER, USER))).expect("dirs");
                let lower = self.lower.as_mut().map(|l| {
                    l.sync(&inputs).expect("sync lower layer");
                    l.path().to_path_buf()
                });
                dirs = Some(d.clone());
                StoreView::Overlay {
                    upper: d.upper,
                    work: d.work,
                    lower,
                }
            }
        };
        let spec = Spec {
            root: self.dir.root(),
            store,
            store_dir: "/nix/store".into(),
            real_store_dir: self.store.clone(),
            inputs,
            binds: vec![Bind {
                source: build_dir.clone(),
                target: "/build".into(),
                read_only: false,
                optional: false,
            }],
            private_network: true,
            work_dir: "/build".into(),
            builder: format!("/nix/store/{BB}/busybox"),
            argv: vec!["busybox".into(), "sh".into(), "-c".into(), script.into()],
            env: vec![("PATH".into(), format!("/nix/store/{BB}"))],
            shm_size: "50%".into(),
            linux32: false,
            uname26: false,
            build_user: Some((USER, USER)),
            syscall_filter: firn_build::seccomp::Filter::new(false),
        };
        let mut out = Vec::new();
        let limits = Limits {
            timeout: Some(std::time::Duration::from_secs(30)),
            ..Default::default()
        };
        let ended = run(
            Launch::Sandboxed(Box::new(spec)),
            &mut self.net,
            self.tree.as_ref().map(|t| t.mount_ns()),
            limits,
            &AtomicBool::new(false),
            &mut |d| out.extend_from_slice(d),
        )
        .expect("run");
        // As the scheduler does: the build's own directories go, the slot's stay.
        let _ = firn_store::canon::delete_path(&build_dir);
        if let Some(d) = dirs {
            let _ = firn_store::canon::delete_path(&d.work);
            let _ = firn_store::canon::delete_path(&d.upper);
        }
        (ended, String::from_utf8_lossy(&out).into_owned())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let _ = firn_store::canon::delete_path(&self.dir.path);
    }
}

/// A build leaves files, a process and a listening socket behind; the next build in the slot
/// sees none of them.
#[test]
fn a_build_sees_nothing_the_previous_one_left() {
    nothing_left(Mode::Tree);
}

#[test]
fn a_build_sees_nothing_the_previous_one_left_overlay() {
    nothing_left(Mode::OverlayKeptLower);
    nothing_left(Mode::Overlay);
}

fn nothing_left(mode: Mode) {
    if sandbox::probe().is_err() || (mode == Mode::Tree && !is_root()) {
        eprintln!("skipped: namespaces cannot be created here");
        return;
    }
    let mut s = slot(mode);
    let (ended, log) = s.build(
        "echo secret > /tmp/left; echo secret > /build/left; echo secret > /nix/store/left; \
         nc -l -p 7777 </dev/null & sleep 1000 & sleep 0.3; \
         cat /proc/net/tcp /proc/net/tcp6; echo started",
    );
    assert_eq!(ended, Ended::Exited(0), "{log}");
    assert!(log.contains("started"), "{log}");
    // It was listening on 7777 (0x1E61) when it ended (state 0A).
    let listening = |log: &str| {
        log.lines()
            .any(|l| l.contains(":1E61 ") && l.split_whitespace().nth(3) == Some("0A"))
    };
    assert!(listening(&log), "{log}");
    let (ended, log) = s.build(&format!(
        "set -e; ls -A /tmp /build; ls /nix/store; \
         test ! -e /tmp/left; test ! -e /build/left; test ! -e /nix/store/left; \
         test \"$(ls /nix/store)\" = {BB}; \
         for p in /proc/[0-9]*; do echo \"process $p\"; done; \
         if nc -w 1 127.0.0.1 7777 </dev/null; then echo listener; exit 1; fi; \
         cat /proc/net/tcp /proc/net/tcp6 /proc/net/unix; echo clean"
    ));
    assert_eq!(ended, Ended::Exited(0), "{log}");
    assert!(log.contains("clean"), "{log}");
    assert!(!listening(&log), "{log}");
    // Only the shell itself (PID 1) runs.
    let processes: Vec<&str> = log.lines().filter(|l| l.starts_with("process ")).collect();
    assert_eq!(processes, vec!["process /proc/1"], "{log}");
    if is_root() {
        // The namespace was reused (it was clean), so the checks above were about it.
        assert_eq!(s.net.namespaces_made(), 1);
    }
}

/// A TCP connection closed on `lo` leaves a socket in `TIME_WAIT`: the next build gets a new
/// network namespace rather than that one.
#[test]
fn a_namespace_with_sockets_left_is_not_reused() {
    if sandbox::probe().is_err() || !is_root() {
        eprintln!("skipped: needs root and namespaces");
        return;
    }
    let mut s = slot(Mode::Tree);
    let (ended, log) = s.build("echo first");
    assert_eq!(ended, Ended::Exited(0), "{log}");
    assert_eq!(s.net.namespaces_made(), 1);
    // A connection made and closed: one end stays in TIME_WAIT (state 06).
    let (ended, log) = s.build(
        "nc -l -p 7778 </dev/null & sleep 0.3; echo hi | nc -w 1 127.0.0.1 7778; \
         sleep 0.2; cat /proc/net/tcp /proc/net/tcp6",
    );
    assert_eq!(ended, Ended::Exited(0), "{log}");
    let time_wait = |log: &str| {
        log.lines()
            .filter(|l| l.split_whitespace().nth(3) == Some("06"))
            .count()
    };
    assert!(time_wait(&log) > 0, "no TIME_WAIT socket: {log}");
    let (ended, log) = s.build("cat /proc/net/tcp /proc/net/tcp6; echo done");
    assert_eq!(ended, Ended::Exited(0), "{log}");
    assert_eq!(s.net.namespaces_made(), 2, "{log}");
    let sockets = log
        .lines()
        .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
        .count();
    assert_eq!(sockets, 0, "sockets seen by the next build: {log}");
}
