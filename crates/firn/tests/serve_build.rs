//! Remote builds on firn: CppNix 2.8's `nix-build` with no local build slots (`max-jobs 0`)
//! and `builders = ssh://localhost?remote-store=...` hands its derivations to its build hook,
//! which copies the inputs to the remote store, sends each derivation whole
//! (`cmdBuildDerivation`) and copies the outputs back. `localhost` is reached by running the
//! remote command through a shell, and `PATH` puts firn's `nix-store` first, so firn's
//! `nix-store --serve --write` builds them (in a chroot store, so in its sandbox). Every
//! CppNix-client test runs against CppNix's server too, to hold it to the oracle. Then firn's
//! own client drives firn's server at the protocol level.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use firn_format::{Derivation, StoreDir, StorePath};
use firn_remote::build::{BuildOptions, BuildStatus};
use firn_remote::serve::{SshParams, SshStore};

/// `dep` and a fixed-output `fod` are inputs of `top`, whose output refers to `dep`'s; `fail`
/// fails after printing a line; `slow` would take a minute.
/// (Written after [`LET_BUSYBOX`] and [`MK_BUSYBOX`].)
const EXPR: &str = r#"in rec {
  dep = mk "dep" "echo dep-contents > $out" { };
  fod = mk "fod" "echo fixed > $out" {
    outputHashMode = "flat";
    outputHashAlgo = "sha256";
    outputHash = builtins.hashString "sha256" "fixed\n";
  };
  top = mk "top" ''
    read x < ${dep}
    read y < ${fod}
    echo "top sees $x and $y" > $out
    echo "${dep}" >> $out
    echo log-line-from-top
  '' { };
  fail = mk "fail" "echo about-to-fail; mkdir -p $out; exit 3" { };
  slow = mk "slow" "sleep 60; echo done > $out" { };
}
"#;

struct Env {
    tmp: tempfile::TempDir,
    file: String,
}

fn env() -> Env {
    need_busybox();
    let tmp = tempfile::tempdir().expect("tmp");
    let file = tmp.path().join("default.nix");
    std::fs::write(&file, format!("{LET_BUSYBOX}{MK_BUSYBOX}{EXPR}"))
        .expect("writing the expression");
    Env {
        file: file.to_string_lossy().into_owned(),
        tmp,
    }
}

/// Which `nix-store --serve` builds: firn's, or (to hold the test to the oracle) CppNix's.
const REMOTES: [(&str, bool); 2] = [("firn", true), ("cppnix", false)];

impl Env {
    fn store(&self, name: &str) -> String {
        store_dir(self.tmp.path(), name)
    }

    /// CppNix's `nix-build -A attr` into the `client` store, building only on `remote`.
    fn nix_build(
        &self,
        firn_serves: bool,
        client: &str,
        remote: &str,
        attr: &str,
        extra: &[&str],
    ) -> Command {
        let mut c = cppnix("nix-build");
        let path = if firn_serves {
            format!("{}:/usr/bin:/bin", firn_bin_dir().display())
        } else {
            "/usr/bin:/bin".to_string()
        };
        // Build directories (kept with -K) go to the test's directory.
        c.env("PATH", path)
            .env("TMPDIR", self.tmp.path())
            .args(["--store", client, "--no-out-link", "--max-jobs", "0"])
            .arg("--builders")
            .arg(format!(
                "ssh://localhost?remote-store={remote} x86_64-linux"
            ))
            .args(extra)
            .args([self.file.as_str(), "-A", attr]);
        c
    }

    fn contents(&self, store: &str, path: &str) -> String {
        std::fs::read_to_string(Path::new(store).join(&path[1..])).expect("reading a store path")
    }

    fn valid(&self, store: &str, path: &str) -> bool {
        cppnix("nix-store")
            .args(["--store", store, "--check-validity", path])
            .output()
            .expect("running nix-store")
            .status
            .success()
    }

    /// The output path of `attr`.
    fn out_path(&self, attr: &str) -> String {
        let e = format!("(import {}).{attr}.outPath", self.file);
        let out = ok_str(cppnix("nix-instantiate").args([
            "--store",
            &self.store("eval"),
            "--eval",
            "--read-write-mode",
            "-E",
            &e,
        ]));
        out.trim().trim_matches('"').to_string()
    }
}

#[test]
fn cppnix_builds_remotely_on_firn() {
    let e = env();
    let (dep, fod) = (e.out_path("dep"), e.out_path("fod"));
    for (tag, firn_serves) in REMOTES {
        let client = e.store(&format!("client-{tag}"));
        let remote = e.store(&format!("remote-{tag}"));
        let out = ok_str(&mut e.nix_build(firn_serves, &client, &remote, "top", &[]));
        let top = out.trim().to_string();
        assert_eq!(
            e.contents(&client, &top),
            format!("top sees dep-contents and fixed\n{dep}\n"),
            "{tag}"
        );
        assert_eq!(e.contents(&client, &fod), "fixed\n", "{tag}");
        // Built on the remote (registered there), copied back with their references.
        for p in [&top, &dep, &fod] {
            assert!(e.valid(&remote, p), "{tag}: {p} is not valid on the remote");
            assert!(e.valid(&client, p), "{tag}: {p} did not come back");
        }
        let refs =
            ok_str(cppnix("nix-store").args(["--store", &client, "-q", "--references", &top]));
        assert_eq!(refs.trim(), dep, "{tag}");
        // What came back is what the remote has, and both stores are sound.
        for p in [&top, &dep, &fod] {
            let h = |s: &str| ok_str(cppnix("nix-store").args(["--store", s, "-q", "--hash", p]));
            assert_eq!(h(&client), h(&remote), "{tag}: {p}");
        }
        ok(cppnix("nix-store").args(["--store", &remote, "--verify", "--check-contents"]));
        ok(cppnix("nix-store").args(["--store", &client, "--verify", "--check-contents"]));
        // Another client asks for the same: the remote has the outputs already (and says so
        // with their realisations), the client copies them.
        let client2 = e.store(&format!("client2-{tag}"));
        let out = e
            .nix_build(firn_serves, &client2, &remote, "top", &[])
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{tag}: {err}");
        assert!(
            !err.contains("log-line-from-top"),
            "{tag}: built again: {err}"
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), top);
        assert_eq!(
            e.contents(&client2, &top),
            e.contents(&client, &top),
            "{tag}"
        );
    }
}

#[test]
fn failing_remote_build_fails_the_client() {
    let e = env();
    let fail = e.out_path("fail");
    let mut messages = Vec::new();
    for (tag, firn_serves) in REMOTES {
        let client = e.store(&format!("client-{tag}"));
        let remote = e.store(&format!("remote-{tag}"));
        let out = e
            .nix_build(firn_serves, &client, &remote, "fail", &["--keep-failed"])
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{tag}: {err}");
        assert!(err.contains("about-to-fail"), "{tag}: {err}");
        // The remote's message, as the client reports it.
        let msg = err
            .lines()
            .find(|l| l.starts_with("error: build of "))
            .unwrap_or_else(|| panic!("{tag}: no remote failure in:\n{err}"))
            .replace(&remote, "REMOTE");
        assert!(msg.ends_with("failed with exit code 3"), "{tag}: {msg}");
        messages.push(msg);
        // Nothing of the failed build is valid anywhere, nor left at the output path.
        assert!(!e.valid(&remote, &fail), "{tag}");
        assert!(!e.valid(&client, &fail), "{tag}");
        assert!(!Path::new(&remote).join(&fail[1..]).exists(), "{tag}");
        // The client's keep-failed reached the remote, which kept the build directory.
        let kept = err
            .lines()
            .find_map(|l| {
                let rest = l.split("note: keeping build directory '").nth(1)?;
                Some(rest.split('\'').next()?.to_string())
            })
            .unwrap_or_else(|| panic!("{tag}: no kept build directory in:\n{err}"));
        assert!(Path::new(&kept).is_dir(), "{tag}: {kept}");
        assert!(
            kept.starts_with(&*e.tmp.path().to_string_lossy()),
            "{tag}: {kept}"
        );
    }
    assert_eq!(messages[0], messages[1]);
}

#[test]
fn client_timeout_reaches_the_remote() {
    let e = env();
    let slow = e.out_path("slow");
    for (tag, firn_serves) in REMOTES {
        let client = e.store(&format!("client-{tag}"));
        let remote = e.store(&format!("remote-{tag}"));
        let start = std::time::Instant::now();
        let out = e
            .nix_build(
                firn_serves,
                &client,
                &remote,
                "slow",
                &["--option", "timeout", "2"],
            )
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{tag}: {err}");
        assert!(err.contains("timed out after 2 seconds"), "{tag}: {err}");
        assert!(
            start.elapsed().as_secs() < 50,
            "{tag}: the remote did not stop the build"
        );
        assert!(!e.valid(&remote, &slow), "{tag}");
    }
}

/// A derivation named `name` running `script` with busybox (the directory `bb`), its output
/// paths computed as `derivation` does.
fn busybox_drv(bb: &StorePath, name: &str, script: &str) -> (StorePath, Derivation) {
    let sd = StoreDir::default();
    let mut d = Derivation {
        name: name.into(),
        platform: "x86_64-linux".into(),
        builder: format!("{}/busybox", sd.display(bb)),
        args: vec!["sh".into(), "-c".into(), script.into()],
        ..Default::default()
    };
    d.input_srcs.insert(bb.clone());
    d.outputs
        .insert("out".into(), firn_format::DerivationOutput::deferred());
    d.env.insert("out".into(), String::new());
    d.env.insert("name".into(), name.into());
    d.env.insert("system".into(), d.platform.clone());
    d.env.insert("builder".into(), d.builder.clone());
    d.compute_output_paths::<firn_format::DrvError>(&sd, |_| unreachable!("no input derivations"))
        .expect("output paths");
    (d.drv_path(&sd).expect("drv path"), d)
}

/// firn's own client (`SshStore::build_derivation`) against firn's server, at the protocol
/// level: a build, the same build again, a failing builder, a timeout from the client's
/// options, a missing input and an unknown hash algorithm, all in one session.
#[test]
fn firn_client_builds_on_firn() {
    need_busybox();
    let tmp = tempfile::tempdir().expect("tmp");
    let remote = store_dir(tmp.path(), "remote");
    let bb_dir = tmp.path().join("bb");
    std::fs::create_dir(&bb_dir).expect("mkdir");
    std::fs::copy("/usr/bin/busybox", bb_dir.join("busybox")).expect("copying busybox");
    let bb = ok_str(
        cppnix("nix-store")
            .args(["--store", &remote, "--add"])
            .arg(&bb_dir),
    );
    let sd = StoreDir::default();
    let bb = sd.parse(bb.trim()).expect("busybox path");
    // The remote side, isolated from this machine's configuration as the other tools are.
    let program = tmp.path().join("remote-nix-store");
    std::fs::write(
        &program,
        format!(
            "#!/bin/sh\nexport NIX_CONF_DIR=/nonexistent-firn-test-conf NIX_USER_CONF_FILES= NIX_CONFIG='substituters ='\nexec {} \"$@\"\n",
            firn_bin_dir().join("nix-store").display()
        ),
    )
    .expect("writing the remote program");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let params = SshParams {
        remote_program: Some(program.to_string_lossy().into_owned()),
        remote_store: Some(remote.clone()),
        ..Default::default()
    };
    let conn = SshStore::open("localhost", params, &sd).expect("connecting");
    let options = BuildOptions::default();
    let valid = |p: &StorePath| {
        cppnix("nix-store")
            .args(["--store", &remote, "--check-validity", &sd.display(p)])
            .output()
            .expect("run")
            .status
            .success()
    };

    let (ok_drv, ok) = busybox_drv(&bb, "ok", "echo hello > $out");
    let out = ok.outputs["out"].path.clone().expect("output path");
    let r = conn
        .build_derivation(&ok_drv, &ok, &options)
        .expect("build");
    assert_eq!(r.status, BuildStatus::Built, "{}", r.error_msg);
    assert_eq!(r.times_built, 1);
    assert!(r.start_time > 0 && r.start_time <= r.stop_time);
    assert_eq!(r.built_outputs.len(), 1);
    assert!(r.built_outputs[0].0.starts_with("sha256:") && r.built_outputs[0].0.ends_with("!out"));
    assert!(r.built_outputs[0].1.contains(out.base_name()));
    assert!(valid(&out));
    let text = std::fs::read_to_string(Path::new(&remote).join(&sd.display(&out)[1..]));
    assert_eq!(text.expect("reading the output"), "hello\n");

    let again = conn
        .build_derivation(&ok_drv, &ok, &options)
        .expect("build");
    assert_eq!(again.status, BuildStatus::AlreadyValid);
    assert_eq!(again.times_built, 0);
    assert_eq!(again.built_outputs, r.built_outputs);

    let (fail_drv, fail) = busybox_drv(&bb, "fail", "echo failing; exit 3");
    let r = conn
        .build_derivation(&fail_drv, &fail, &options)
        .expect("build");
    assert_eq!(r.status, BuildStatus::PermanentFailure);
    assert!(
        r.error_msg.ends_with("failed with exit code 3"),
        "{}",
        r.error_msg
    );
    assert_eq!(r.times_built, 1);
    assert!(r.built_outputs.is_empty());
    assert!(!valid(fail.outputs["out"].path.as_ref().expect("path")));

    let (slow_drv, slow) = busybox_drv(&bb, "slow", "sleep 30; echo > $out");
    let quick = BuildOptions {
        build_timeout: 1,
        ..Default::default()
    };
    let r = conn
        .build_derivation(&slow_drv, &slow, &quick)
        .expect("build");
    assert_eq!(r.status, BuildStatus::TimedOut, "{}", r.error_msg);
    assert!(
        r.error_msg.contains("timed out after 1 seconds"),
        "{}",
        r.error_msg
    );

    let missing = sd
        .parse("/nix/store/00000000000000000000000000000000-missing")
        .expect("path");
    let (lost_drv, mut lost) = busybox_drv(&bb, "lost", "echo > $out");
    lost.input_srcs.insert(missing.clone());
    let r = conn
        .build_derivation(&lost_drv, &lost, &options)
        .expect("build");
    assert_eq!(r.status, BuildStatus::MiscFailure);
    assert!(
        r.error_msg
            .contains("does not exist, and substitution is disabled"),
        "{}",
        r.error_msg
    );

    let (odd_drv, mut odd) = busybox_drv(&bb, "odd", "echo > $out");
    odd.outputs.insert(
        "out".into(),
        firn_format::DerivationOutput {
            path: None,
            hash_algo: "r:sha257".into(),
            hash: String::new(),
        },
    );
    let r = conn
        .build_derivation(&odd_drv, &odd, &options)
        .expect("build");
    assert_eq!(r.status, BuildStatus::MiscFailure);
    assert!(r.error_msg.contains("sha257"), "{}", r.error_msg);

    // The session is still in step.
    let asked = [bb.clone(), out.clone(), missing].into_iter().collect();
    let v = conn.query_valid_paths(&asked).expect("query");
    assert_eq!(v, [bb, out].into_iter().collect());
}

/// The processes whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").expect("reading /proc").flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) {
            if String::from_utf8_lossy(&cmdline).contains(marker) {
                found.push(pid);
            }
        }
    }
    found
}

/// Wait up to `secs` seconds for `cond`.
fn wait_until(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    cond()
}

/// A session with a server (firn's, or CppNix's) that is building a derivation that would
/// sleep for an hour, asked for with `cmd` (`cmdBuildDerivation` or `cmdBuildPaths`).
struct SleeperBuild {
    remote: String,
    server: std::process::Child,
    to: Option<std::process::ChildStdin>,
    from: Option<std::process::ChildStdout>,
    /// In the builder's command line (its script), and nowhere else.
    marker: String,
    out: String,
    drv_path: StorePath,
    drv: Derivation,
}

/// A session with a new server (firn's, or CppNix's) on `remote` that asks it to build `drv`
/// with `cmd` (`cmdBuildDerivation` or `cmdBuildPaths`): the server, and the client's ends.
fn request_build(
    remote: &str,
    drv_path: &StorePath,
    drv: &Derivation,
    firn_serves: bool,
    cmd: u64,
) -> (
    std::process::Child,
    std::process::ChildStdin,
    std::process::ChildStdout,
) {
    use firn_remote::serve::{CMD_BUILD_DERIVATION, MAGIC_1, MAGIC_2};
    use firn_remote::wire::{read_u64, write_string, write_strings, write_u64};
    use std::io::Write;
    use std::process::Stdio;

    let sd = StoreDir::default();
    let mut server = if firn_serves {
        firn("nix-store")
    } else {
        cppnix("nix-store")
    };
    let mut server = server
        .args(["--store", remote, "--serve", "--write"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the server");
    let mut to = server.stdin.take().expect("stdin");
    let mut from = server.stdout.take().expect("stdout");
    write_u64(&mut to, MAGIC_1).expect("greeting");
    to.flush().expect("greeting");
    assert_eq!(read_u64(&mut from).expect("greeting"), MAGIC_2);
    let version = read_u64(&mut from).expect("the server's version");
    write_u64(&mut to, 0x207).expect("our version");
    write_u64(&mut to, cmd).expect("the command");
    if cmd == CMD_BUILD_DERIVATION {
        write_string(&mut to, &sd.display(drv_path)).expect("the .drv path");
        firn_remote::build::write_basic_derivation(&mut to, &sd, drv).expect("the derivation");
    } else {
        let wanted = format!("{}!out", sd.display(drv_path));
        write_strings(&mut to, [wanted.as_str()].into_iter()).expect("the paths");
    }
    BuildOptions::default()
        .write(&mut to, version.min(0x207))
        .expect("the options");
    to.flush().expect("sending the request");
    (server, to, from)
}

impl SleeperBuild {
    fn start(e: &Env, tag: &str, firn_serves: bool, cmd: u64) -> SleeperBuild {
        let sd = StoreDir::default();
        let remote = e.store(&format!("{tag}-{cmd}"));
        // A derivation of its own per run, instantiated in the remote store.
        let marker = format!("sleeper-marker-{tag}-{cmd}-{}", std::process::id());
        let file = e.tmp.path().join(format!("{marker}.nix"));
        std::fs::write(
            &file,
            format!(
                "let bb = builtins.path {{ path = /usr/bin; name = \"busybox\"; filter = p: t: baseNameOf p == \"busybox\"; }};\n\
                 in derivation {{ name = \"sleeper\"; system = \"x86_64-linux\"; builder = \"${{bb}}/busybox\";\n\
                 args = [ \"sh\" \"-c\" \"sleep 3600; : {marker}; touch $out\" ]; }}\n"
            ),
        )
        .expect("writing the expression");
        let drv_path = ok_str(
            cppnix("nix-instantiate")
                .args(["--store", &remote])
                .arg(&file),
        );
        let drv_path = sd.parse(drv_path.trim()).expect("a .drv path");
        let real_drv = Path::new(&remote).join(&sd.display(&drv_path)[1..]);
        let text = std::fs::read_to_string(&real_drv).expect("reading the .drv");
        let drv = Derivation::parse(&sd, &text, "sleeper").expect("parsing the .drv");
        let out = sd.display(&drv.outputs["out"].path.clone().expect("an output path"));

        let (server, to, from) = request_build(&remote, &drv_path, &drv, firn_serves, cmd);
        let b = SleeperBuild {
            remote,
            server,
            to: Some(to),
            from: Some(from),
            marker,
            out,
            drv_path,
            drv,
        };
        assert!(
            wait_until(60, || !b.builders().is_empty()),
            "{tag}/{cmd}: the builder never started"
        );
        b
    }

    /// The builder's processes.
    fn builders(&self) -> Vec<u32> {
        processes_with(&self.marker)
    }

    /// Whether the output's lock is held (by someone else).
    fn output_locked(&self) -> bool {
        let lock = Path::new(&self.remote).join(format!("{}.lock", &self.out[1..]));
        let Ok(f) = std::fs::File::open(&lock) else {
            return false;
        };
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a descriptor we own (closed, which unlocks, when `f` is dropped).
        unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) != 0 }
    }

    /// The builder is gone within seconds, and so is the server; nothing is valid or left at
    /// the output path, and its lock is free.
    fn assert_stopped(&mut self, e: &Env, what: &str) {
        assert!(
            wait_until(10, || self.builders().is_empty()),
            "{what}: the builder still runs: {:?}",
            self.builders()
        );
        assert!(
            wait_until(10, || self.server.try_wait().expect("waiting").is_some()),
            "{what}: the server still runs"
        );
        let status = self.server.wait().expect("reaping the server");
        assert!(!status.success(), "{what}: {status}");
        assert!(!e.valid(&self.remote, &self.out), "{what}");
        assert!(
            !Path::new(&self.remote).join(&self.out[1..]).exists(),
            "{what}: something is left at the output path"
        );
        let lock = Path::new(&self.remote).join(format!("{}.lock", &self.out[1..]));
        if let Ok(f) = std::fs::File::open(&lock) {
            use std::os::fd::AsRawFd;
            // SAFETY: flock on a descriptor we own.
            let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            assert_eq!(r, 0, "{what}: the output is still locked");
        }
    }
}

impl Drop for SleeperBuild {
    /// A failed test leaves nothing running: the server and the builder (by their ids).
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        for pid in self.builders() {
            // SAFETY: killing the builder this test started.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
}

/// A client that hangs up while the build it asked for runs (`cmdBuildDerivation` or
/// `cmdBuildPaths`) stops it, as CppNix's server does: the builder is killed within seconds,
/// the output is not valid, its lock is free, and the server ends.
#[test]
fn client_hanging_up_cancels_its_build() {
    use firn_remote::serve::{CMD_BUILD_DERIVATION, CMD_BUILD_PATHS};
    need_busybox();
    let e = env();
    for (tag, firn_serves) in REMOTES {
        for cmd in [CMD_BUILD_DERIVATION, CMD_BUILD_PATHS] {
            let mut b = SleeperBuild::start(&e, &format!("hangup-{tag}"), firn_serves, cmd);
            // The client goes away.
            drop(b.to.take());
            drop(b.from.take());
            b.assert_stopped(&e, &format!("{tag}/{cmd}"));
        }
    }
}

/// A second client asks for the same build while the first one's runs: its server waits for
/// the output's lock. When that client hangs up, its server notices (as CppNix's does) and
/// ends; the first build goes on, its lock held. Once its client hangs up too, nothing is
/// left: no valid output, nothing at the output path, the lock free.
#[test]
fn client_hanging_up_while_waiting_for_the_lock() {
    use firn_remote::serve::{CMD_BUILD_DERIVATION, CMD_BUILD_PATHS};
    need_busybox();
    let e = env();
    for (tag, firn_serves) in REMOTES {
        for cmd in [CMD_BUILD_DERIVATION, CMD_BUILD_PATHS] {
            let what = format!("{tag}/{cmd}");
            let mut first = SleeperBuild::start(&e, &format!("lockwait-{tag}"), firn_serves, cmd);
            let (mut second, to, from) =
                request_build(&first.remote, &first.drv_path, &first.drv, firn_serves, cmd);
            // It waits (for as long as the first build runs).
            std::thread::sleep(std::time::Duration::from_secs(2));
            assert!(
                second.try_wait().expect("waiting").is_none(),
                "{what}: the second server did not wait"
            );
            assert_eq!(
                first.builders().len(),
                1,
                "{what}: a second builder started"
            );
            drop(to);
            drop(from);
            let ended = wait_until(10, || second.try_wait().expect("waiting").is_some());
            if !ended {
                let _ = second.kill();
            }
            let status = second.wait().expect("reaping the second server");
            assert!(ended, "{what}: the second server still waits");
            assert!(!status.success(), "{what}: {status}");
            // The first build is untouched.
            assert!(
                !first.builders().is_empty(),
                "{what}: the first build stopped"
            );
            assert!(
                first.output_locked(),
                "{what}: the output's lock was given up"
            );
            drop(first.to.take());
            drop(first.from.take());
            first.assert_stopped(&e, &what);
        }
    }
}

/// A server that is killed takes its (sandboxed) builder along.
#[test]
fn killed_server_takes_its_builder_along() {
    use firn_remote::serve::CMD_BUILD_DERIVATION;
    need_busybox();
    let e = env();
    let mut b = SleeperBuild::start(&e, "killed", true, CMD_BUILD_DERIVATION);
    b.server.kill().expect("kill -9 of the server");
    b.assert_stopped(&e, "killed");
}
