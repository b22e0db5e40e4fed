//! Builds: `nix-build` by firn (sandbox on) and by CppNix 2.8 (which always sandboxes in a
//! chroot store) on the same deterministic derivations must give the same output paths, the
//! same bytes and the same references; and the sandbox, failures, hash mismatches, crashes and
//! concurrent builders must behave as Nix's do. The builders are the host's static busybox,
//! imported into the store by the expression itself.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// The base name of the entry of `store`'s store directory ending in `suffix`.
fn store_entry(store: &str, suffix: &str) -> Option<String> {
    std::fs::read_dir(Path::new(store).join("nix/store"))
        .ok()?
        .filter_map(|d| d.ok())
        .map(|d| d.file_name().to_string_lossy().into_owned())
        .find(|n| n.ends_with(suffix))
}

/// The lines of a shared build log, sorted.
fn sorted_lines(path: &Path) -> Vec<String> {
    let mut lines: Vec<String> = std::fs::read_to_string(path)
        .expect("read")
        .lines()
        .map(String::from)
        .collect();
    lines.sort();
    lines
}

fn expr(body: &str) -> String {
    // Busybox in the store and `mk`, from the shared test prelude.
    format!("{LET_BUSYBOX}{MK_BUSYBOX}in {body}")
}

fn firn_build(store: &str, file: &Path) -> Command {
    let mut c = firn("nix-build");
    c.arg("--store")
        .arg(store)
        .arg(file)
        .arg("--no-out-link")
        .args(["--option", "sandbox", "true"]);
    c
}

fn real(store: &str, path: &str) -> PathBuf {
    Path::new(store).join(path.trim_start_matches('/'))
}

fn nar_hash(store: &str, path: &str) -> String {
    ok_str(
        cppnix("nix-hash")
            .args(["--type", "sha256"])
            .arg(real(store, path)),
    )
}

fn references(store: &str, path: &str) -> String {
    ok_str(cppnix("nix-store").args(["--store", store, "-q", "--references", path]))
}

const DETERMINISTIC: &str = r#"
rec {
  plain = mk "plain" "echo hello > $out" { };
  envdump = mk "envdump" "env | sort > $out; id >> $out; hostname >> $out; pwd >> $out" { extra = "x y"; };
  multi = mk "multi" "mkdir $out $dev; echo lib > $out/lib; echo $out > $dev/points-to-out; ln -s $out/lib $dev/link" { outputs = [ "out" "dev" ]; };
  usesMulti = mk "uses-multi" "cat ${multi.dev}/points-to-out > $out; echo ${multi} >> $out" { };
  passFile = mk "pass-file" "cat $bigPath > $out; echo $bigPath >> $out" { passAsFile = [ "big" ]; big = "a lot of text"; };
  structured = mk "structured" "cat /build/.attrs.sh /build/.attrs.json > $(sed -n \"s/^declare -A outputs=(\\['out'\\]='\\([^']*\\)'.*/\\1/p\" /build/.attrs.sh)" {
    __structuredAttrs = true; list = [ "a" "b" ]; set = { k = "v"; }; n = 3; f = 1.5; b = true; nul = null;
  };
  fodFlat = mk "fod-flat" "echo -n foo > $out" {
    outputHash = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"; outputHashAlgo = "sha256";
  };
  fodRec = mk "fod-rec" "mkdir $out; echo -n foo > $out/f" {
    outputHashMode = "recursive"; outputHashAlgo = "sha256"; outputHash = "sha256-MRcueSIcIWcgEdsA9xNTkkXNTeoD8PR28VWuJ1vZ/zA=";
  };
  usesFod = mk "uses-fod" "cat ${fodFlat} ${fodRec}/f > $out" { };
  chain = let a = mk "a" "echo a > $out" { }; b = mk "b" "cat ${a} > $out; echo ${a} >> $out" { }; in mk "c" "cat ${b} > $out" { };
  placeholder = mk "ph" "echo $marker > $out" { marker = builtins.placeholder "out"; };
}
"#;

/// The same derivations built by firn and by CppNix give the same paths, bytes and references.
#[test]
fn builds_equal_cppnix() {
    need_busybox();
    let e = env();
    let file = e.write("default.nix", &expr(DETERMINISTIC));
    let (sf, sc) = (e.store("firn"), e.store("cppnix"));
    let attrs = [
        "plain",
        "envdump",
        "multi",
        "multi.dev",
        "usesMulti",
        "passFile",
        "structured",
        "fodFlat",
        "fodRec",
        "usesFod",
        "chain",
        "placeholder",
    ];
    for a in attrs {
        let pf = ok_str(firn_build(&sf, &file).args(["-A", a]));
        let pc = ok_str(
            cppnix("nix-build")
                .args(["--store", &sc, "--no-out-link", "-A", a])
                .arg(&file),
        );
        assert_eq!(pf, pc, "output path of {a}");
        let p = pf.trim();
        assert_eq!(nar_hash(&sf, p), nar_hash(&sc, p), "contents of {a} ({p})");
        assert_eq!(references(&sf, p), references(&sc, p), "references of {a}");
    }
    // firn's store is consistent in CppNix's eyes, and CppNix reads firn's logs.
    ok(cppnix("nix-store").args(["--store", &sf, "--verify", "--check-contents"]));
    let drv = ok_str(
        firn("nix-instantiate")
            .args(["--store", &sf, "-A", "plain"])
            .arg(&file),
    );
    let log = ok_str(cppnix("nix-store").args(["--store", &sf, "-l", drv.trim()]));
    let _ = log;
    // Nothing is rebuilt the second time.
    let out = firn_build(&sf, &file)
        .args(["-A", "chain"])
        .output()
        .expect("run");
    assert!(out.status.success());
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("building"),
        "rebuilt: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn stderr_of(c: &mut Command) -> (Option<i32>, String) {
    let out = c.output().expect("run");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A build sees only its inputs: no host files, no network, no writes to its inputs.
#[test]
fn sandbox_isolates_builds() {
    need_busybox();
    let e = env();
    let secret = e.write("secret", "host data\n");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = listener.local_addr().expect("addr").port();
    let file = e.write(
        "default.nix",
        &expr(&format!(
            r#"{{
  readHost = mk "read-host" "cat {secret} > $out" {{ }};
  readEtc = mk "read-etc" "grep -q root:x:0:0:Nix /etc/passwd && ! test -e /etc/shadow && touch $out" {{ }};
  net = mk "net" "echo hi | nc -w 2 127.0.0.1 {port} && touch $out" {{ }};
  writeInput = mk "write-input" "chmod u+w ${{bb}}; echo x > ${{bb}}/evil && touch $out" {{ }};
  listStore = mk "list-store" "ls /nix/store > $out" {{ dep = mk "dep" "touch $out" {{ }}; }};
  home = mk "home" "test ! -e /homeless-shelter && test -d /build && test -w /tmp && touch $out" {{ }};
}}"#,
            secret = secret.display()
        )),
    );
    let s = e.store("s");
    for (attr, should_work) in [
        ("readHost", false),
        ("readEtc", true),
        ("net", false),
        ("writeInput", false),
        ("home", true),
    ] {
        let (code, err) = stderr_of(firn_build(&s, &file).args(["-A", attr]));
        assert_eq!(code == Some(0), should_work, "{attr}: {err}");
        if !should_work {
            assert_eq!(code, Some(100), "{attr}: {err}");
            assert!(err.contains("failed with exit code"), "{attr}: {err}");
        }
    }
    // The input was not modified.
    let bb_dir = store_entry(&s, "-busybox").expect("busybox in the store");
    assert!(!Path::new(&s)
        .join("nix/store")
        .join(bb_dir)
        .join("evil")
        .exists());
    // Only the input closure is visible.
    let p = ok_str(firn_build(&s, &file).args(["-A", "listStore"]));
    let listing = std::fs::read_to_string(real(&s, p.trim())).expect("read");
    let names: Vec<&str> = listing.lines().collect();
    assert_eq!(names.len(), 3, "{listing}");
    assert!(names.iter().any(|n| n.ends_with("-busybox")));
    assert!(names.iter().any(|n| n.ends_with("-dep")));
    assert!(names.iter().any(|n| n.ends_with("-list-store")));
    drop(listener);
}

/// A fixed-output hash mismatch exits 102, names both hashes, and registers nothing.
#[test]
fn fixed_output_mismatch() {
    need_busybox();
    let e = env();
    let file = e.write(
        "default.nix",
        &expr(
            r#"mk "fod" "echo -n bar > $out" {
  outputHash = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"; outputHashAlgo = "sha256";
}"#,
        ),
    );
    let s = e.store("s");
    let (code, err) = stderr_of(&mut firn_build(&s, &file));
    assert_eq!(code, Some(102), "{err}");
    assert!(
        err.contains("hash mismatch in fixed-output derivation"),
        "{err}"
    );
    assert!(
        err.contains("specified: sha256-LCa0a2j/xo/5m0U8HTBBNBNCLXBkg7+g+YpeiGJm564="),
        "{err}"
    );
    assert!(err.contains("got:    sha256-"), "{err}");
    let out = ok_str(
        firn("nix-store")
            .args(["--store", &s, "-q", "--outputs"])
            .arg(ok_str(firn("nix-instantiate").args(["--store", &s]).arg(&file)).trim()),
    );
    let (code, _) =
        stderr_of(cppnix("nix-store").args(["--store", &s, "--check-validity", out.trim()]));
    assert_ne!(code, Some(0), "the output must not be valid");
    assert!(!real(&s, out.trim()).exists());
}

/// A failing builder: exit 100, its output (or with `-Q`, the last log lines), the log stored for `nix-store -l` (firn's
/// and CppNix's), dependents reported; `--keep-going` still builds what does not depend on it.
#[test]
fn failing_build_and_keep_going() {
    need_busybox();
    let e = env();
    let file = e.write(
        "default.nix",
        &expr(
            r#"let bad = mk "bad" "echo line-one; echo line-two >&2; exit 3" { };
                   good = mk "good" "sleep 0.3; echo ok > $out" { };
               in [ (mk "top" "cat ${bad} > $out" { }) good ]"#,
        ),
    );
    let s = e.store("s");
    let (code, err) = stderr_of(&mut firn_build(&s, &file));
    assert_eq!(code, Some(100), "{err}");
    assert!(err.contains("failed with exit code 3"), "{err}");
    // The builder's output was shown as it came, so no last log lines follow (as CppNix).
    assert!(
        err.lines().any(|l| l == "line-one") && err.lines().any(|l| l == "line-two"),
        "{err}"
    );
    assert!(!err.contains("log lines"), "{err}");
    assert!(err.contains("dependencies of derivation"), "{err}");
    // With `-Q` they are not shown as they come, but end the error.
    let (code, err) = stderr_of(firn_build(&s, &file).arg("-Q"));
    assert_eq!(code, Some(100), "{err}");
    assert!(
        err.contains("last 2 log lines:\n       > line-one\n       > line-two"),
        "{err}"
    );
    // The stored log, read by both implementations.
    let bad_drv = store_entry(&s, "-bad.drv").expect("bad.drv");
    let bad_drv = format!("/nix/store/{bad_drv}");
    for tool in [firn("nix-store"), cppnix("nix-store")] {
        let mut tool = tool;
        let log = ok_str(tool.args(["--store", &s, "-l", &bad_drv]));
        assert_eq!(log, "line-one\nline-two\n");
    }
    // With --keep-going the independent derivation is built.
    let (code, err) = stderr_of(firn_build(&s, &file).arg("--keep-going"));
    assert_eq!(code, Some(100), "{err}");
    let good = ok_str(firn_build(&s, &file).args(["-A", "1"]));
    assert!(real(&s, good.trim()).exists());
}

/// `--check` passes for a deterministic build and exits 104 for one that is not.
#[test]
fn check_detects_nondeterminism() {
    need_busybox();
    let e = env();
    let file = e.write(
        "default.nix",
        &expr(
            r#"{ det = mk "det" "echo same > $out" { };
                 nondet = mk "nondet" "cat /proc/sys/kernel/random/uuid > $out" { }; }"#,
        ),
    );
    let s = e.store("s");
    ok(firn_build(&s, &file).args(["-A", "det"]));
    ok(firn_build(&s, &file).args(["-A", "nondet"]));
    ok(firn_build(&s, &file).args(["-A", "det", "--check"]));
    let (code, err) = stderr_of(firn_build(&s, &file).args(["-A", "nondet", "--check"]));
    assert_eq!(code, Some(104), "{err}");
    assert!(err.contains("may not be deterministic"), "{err}");
}

/// `timeout` kills the build and exits 101; disallowed references fail the build.
#[test]
fn timeout_and_reference_rules() {
    need_busybox();
    let e = env();
    let file = e.write(
        "default.nix",
        &expr(
            r#"{ slow = mk "slow" "sleep 30; touch $out" { };
                 refs = mk "refs" "echo ${bb} > $out" { allowedReferences = [ ]; };
                 refsOk = mk "refs-ok" "echo ${bb} > $out" { allowedReferences = [ bb ]; }; }"#,
        ),
    );
    let s = e.store("s");
    let t = std::time::Instant::now();
    let (code, err) =
        stderr_of(firn_build(&s, &file).args(["-A", "slow", "--option", "timeout", "1"]));
    assert_eq!(code, Some(101), "{err}");
    assert!(err.contains("timed out after 1 seconds"), "{err}");
    assert!(t.elapsed().as_secs() < 20);
    // Refused outputs are no permanent failure for CppNix 2.8: exit status 1.
    let (code, err) = stderr_of(firn_build(&s, &file).args(["-A", "refs"]));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("is not allowed to refer to"), "{err}");
    ok(firn_build(&s, &file).args(["-A", "refsOk"]));
}

/// Exit statuses of refused outputs (missing, or breaking `allowedReferences`,
/// `disallowedReferences`, `allowedRequisites`, `disallowedRequisites`) and failed
/// fixed-output builders, alone and beside other failures, with and without `--keep-going`,
/// through `nix-build`, `nix-store --realise` and `nix build`: those of CppNix 2.8, run on a
/// store of its own.
#[test]
fn refused_outputs_exit_as_cppnix() {
    need_busybox();
    let e = env();
    let file = e.write(
        "default.nix",
        &expr(
            r#"let dep = mk "dep" "echo ${bb} > $out" { }; in rec {
  noOut = mk "no-out" "echo nothing" { };
  noDev = mk "no-dev" "touch $out" { outputs = [ "out" "dev" ]; };
  allowedRefs = mk "allowed-refs" "echo ${bb} > $out" { allowedReferences = [ ]; };
  disallowedRefs = mk "disallowed-refs" "echo ${bb} > $out" { disallowedReferences = [ bb ]; };
  allowedReqs = mk "allowed-reqs" "echo ${dep} > $out" { allowedRequisites = [ dep ]; };
  disallowedReqs = mk "disallowed-reqs" "echo ${dep} > $out" { disallowedRequisites = [ bb ]; };
  fails = mk "fails" "exit 3" { };
  good = mk "good" "touch $out" { };
  fodFails = mk "fod-fails" "exit 3" {
    outputHash = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"; outputHashAlgo = "sha256";
  };
  depOnRefused = mk "dep-on-refused" "cat ${allowedRefs} > $out" { };
}"#,
        ),
    );
    let (sf, sc) = (e.store("firn"), e.store("cppnix"));
    let tool = |firn_side: bool, name: &str| -> Command {
        let mut c = if firn_side { firn(name) } else { cppnix(name) };
        c.arg("--store")
            .arg(if firn_side { &sf } else { &sc })
            .args(["--option", "sandbox", "true"]);
        c
    };
    // (attributes, --keep-going, CppNix 2.8's exit status, what the message says)
    let cases: &[(&[&str], bool, i32, &str)] = &[
        (
            &["noOut"],
            false,
            1,
            "failed to produce output path for output 'out'",
        ),
        (
            &["noDev"],
            false,
            1,
            "failed to produce output path for output 'dev'",
        ),
        (&["allowedRefs"], false, 1, "is not allowed to refer to"),
        (&["disallowedRefs"], false, 1, "is not allowed to refer to"),
        (&["allowedReqs"], false, 1, "is not allowed to refer to"),
        (&["disallowedReqs"], false, 1, "is not allowed to refer to"),
        (&["fodFails"], false, 1, "failed with exit code 3"),
        (&["fails"], false, 100, "failed with exit code 3"),
        (&["depOnRefused"], false, 1, "dependencies of derivation"),
        (&["noOut", "good"], true, 1, "failed to produce output path"),
        (
            &["disallowedRefs", "fails"],
            true,
            100,
            "is not allowed to refer to",
        ),
        (
            &["disallowedReqs", "fodFails"],
            true,
            1,
            "is not allowed to refer to",
        ),
        (
            &["allowedRefs", "depOnRefused"],
            true,
            1,
            "is not allowed to refer to",
        ),
    ];
    for (attrs, keep_going, want, msg) in cases {
        let mut errors = Vec::new();
        for side in [false, true] {
            let mut c = tool(side, "nix-build");
            c.arg(&file).arg("--no-out-link");
            for a in attrs.iter() {
                c.args(["-A", a]);
            }
            if *keep_going {
                c.arg("--keep-going");
            }
            let (code, err) = stderr_of(&mut c);
            assert_eq!(code, Some(*want), "{attrs:?} (firn: {side}): {err}");
            assert!(err.contains(msg), "{attrs:?} (firn: {side}): {err}");
            errors.push(err);
        }
        // A refused reference is reported in CppNix's words, its paths included.
        if attrs.len() == 1 && msg.contains("refer to") {
            let from = |e: &str| e[e.find("error:").unwrap_or(0)..].to_string();
            assert_eq!(from(&errors[1]), from(&errors[0]), "{attrs:?}");
        }
    }
    // The same through `nix-store --realise` and `nix build`.
    for attr in ["noOut", "disallowedReqs", "fodFails"] {
        for keep_going in [false, true] {
            for side in [false, true] {
                let drv = ok_str(tool(side, "nix-instantiate").arg(&file).args(["-A", attr]));
                let mut c = tool(side, "nix-store");
                c.args(["--realise", drv.trim()]);
                let mut n = tool(side, "nix");
                if side {
                    n.args(["--extra-experimental-features", "nix-command"]);
                }
                n.args(["build", "--no-link", "-f"]).arg(&file).arg(attr);
                for c in [&mut c, &mut n] {
                    if keep_going {
                        c.arg("--keep-going");
                    }
                    let (code, err) = stderr_of(c);
                    assert_eq!(code, Some(1), "{c:?}: {err}");
                }
            }
        }
    }
}

/// `kill -9` of firn in the middle of a build leaves a consistent store, and a rerun builds.
#[test]
fn killed_mid_build_then_rerun() {
    need_busybox();
    let e = env();
    let flag_dir = e.dir.join("flags");
    std::fs::create_dir_all(&flag_dir).expect("mkdir");
    std::fs::write(flag_dir.join("wait"), "").expect("flag");
    let file = e.write(
        "default.nix",
        &expr(&format!(
            r#"mk "waits" "mkdir $out; echo partial > $out/a; while test -e {d}/wait; do sleep 0.05; done; echo done > $out/b" {{ }}"#,
            d = flag_dir.display()
        )),
    );
    let s = e.store("s");
    let sandbox_path = format!("{}", flag_dir.display());
    let mut child = firn_build(&s, &file)
        .args(["--option", "extra-sandbox-paths", &sandbox_path])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    // Wait until the builder is running (its output directory exists in the sandbox).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if store_entry(&s, ".chroot").is_some() {
            std::thread::sleep(std::time::Duration::from_millis(300));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the build never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    // Nothing incomplete is valid.
    let drv = ok_str(firn("nix-instantiate").args(["--store", &s]).arg(&file));
    let out = ok_str(firn("nix-store").args(["--store", &s, "-q", "--outputs", drv.trim()]));
    let (code, _) =
        stderr_of(cppnix("nix-store").args(["--store", &s, "--check-validity", out.trim()]));
    assert_ne!(code, Some(0));
    ok(cppnix("nix-store").args(["--store", &s, "--verify", "--check-contents"]));
    // A rerun succeeds.
    std::fs::remove_file(flag_dir.join("wait")).expect("unflag");
    let p = ok_str(firn_build(&s, &file).args(["--option", "extra-sandbox-paths", &sandbox_path]));
    assert_eq!(
        std::fs::read_to_string(real(&s, p.trim()).join("b")).expect("read"),
        "done\n"
    );
}

/// Two firn processes realising the same graph build each derivation once.
#[test]
fn concurrent_builders_build_once() {
    need_busybox();
    let e = env();
    let shared = e.dir.join("shared");
    std::fs::create_dir_all(&shared).expect("mkdir");
    std::fs::write(shared.join("log"), "").expect("log");
    // Builders run as build users when the tests run as root (firn's and CppNix's alike), so
    // the shared log must be writable by all.
    let open_up = || {
        for (p, mode) in [(shared.clone(), 0o777), (shared.join("log"), 0o666)] {
            std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(mode))
                .expect("chmod");
        }
    };
    open_up();
    let file = e.write(
        "default.nix",
        &expr(&format!(
            r#"let n = name: deps: mk name "echo ${{name}} >> {d}/log; sleep 0.2; echo ${{toString deps}} > $out" {{ }};
                   a = n "a" [ ]; b = n "b" [ a ]; c = n "c" [ a ]; d = n "d" [ b c ];
               in d"#,
            d = shared.display()
        )),
    );
    let s = e.store("s");
    let sp = shared.display().to_string();
    // Write the .drv files first, so both processes race only on building.
    ok(firn("nix-instantiate").args(["--store", &s]).arg(&file));
    let spawn = || {
        firn_build(&s, &file)
            .args(["--option", "extra-sandbox-paths", &sp, "-j", "2"])
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn")
    };
    let (mut x, mut y) = (spawn(), spawn());
    assert!(x.wait().expect("wait").success());
    assert!(y.wait().expect("wait").success());
    assert_eq!(sorted_lines(&shared.join("log")), ["a", "b", "c", "d"]);

    // firn and CppNix on one store take the same output locks: each derivation is built once.
    std::fs::write(shared.join("log"), "").expect("log");
    open_up();
    let file2 = e.write(
        "second.nix",
        &expr(&format!(
            r#"let n = name: deps: mk name "echo ${{name}} >> {d}/log; sleep 0.3; echo ${{toString deps}} > $out" {{ }};
                   a = n "a2" [ ]; b = n "b2" [ a ]; c = n "c2" [ a ]; d = n "d2" [ b c ];
               in d"#,
            d = shared.display()
        )),
    );
    ok(firn("nix-instantiate").args(["--store", &s]).arg(&file2));
    let mut x = firn_build(&s, &file2)
        .args(["--option", "extra-sandbox-paths", &sp, "-j", "2"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let mut y = cppnix("nix-build")
        .args(["--store", &s, "--no-out-link", "-j", "2"])
        .args(["--option", "extra-sandbox-paths", &sp])
        .arg(&file2)
        .stderr(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    assert!(x.wait().expect("wait").success());
    assert!(y.wait().expect("wait").success());
    assert_eq!(sorted_lines(&shared.join("log")), ["a2", "b2", "c2", "d2"]);
}

/// The README's example package set builds, with firn and with CppNix, to the same paths and
/// bytes, and its program runs.
#[test]
fn readme_example_package_set() {
    need_busybox();
    let e = env();
    let pkgs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/pkgs");
    let (sf, sc) = (e.store("firn"), e.store("cppnix"));
    let pf = ok_str(
        firn("nix")
            .args([
                "build",
                "--store",
                &sf,
                "--no-link",
                "--print-out-paths",
                "-f",
            ])
            .arg(&pkgs)
            .args(["world", "--option", "sandbox", "true"]),
    );
    let pc = ok_str(
        cppnix("nix-build")
            .args(["--store", &sc, "--no-out-link", "-A", "world"])
            .arg(&pkgs),
    );
    assert_eq!(pf, pc);
    let world = pf.trim();
    assert_eq!(nar_hash(&sf, world), nar_hash(&sc, world));
    let manifest = std::fs::read_to_string(real(&sf, world).join("manifest.json")).expect("read");
    assert!(manifest.contains("-hello-1.0"), "{manifest}");
    // The hello program, run against the chroot store through its own busybox.
    let hello = std::fs::read_link(real(&sf, world).join("bin/hello")).expect("link");
    let script = std::fs::read_to_string(real(&sf, &hello.to_string_lossy())).expect("script");
    let greeting = script
        .lines()
        .nth(1)
        .expect("second line")
        .trim_start_matches("cat ");
    let text = std::fs::read_to_string(real(&sf, greeting)).expect("greeting");
    assert_eq!(text, "Hello from firn, built in a sandbox on Linux.\n");
}

/// `builtin:fetchurl` over HTTP (a file, an executable, an unpacked NAR and an unpacked
/// `.nar.xz`, directly and through `<nix/fetchurl.nix>`) gives the same paths and contents as
/// CppNix's; a 404 fails in both.
#[test]
fn builtin_fetchurl_over_http() {
    let e = env();
    let tree = e.dir.join("tree");
    std::fs::create_dir_all(tree.join("d")).expect("mkdir");
    std::fs::write(tree.join("d/f"), "inside\n").expect("write");
    let nar = ok(cppnix("nix-store").arg("--dump").arg(&tree));
    let nar_sri = ok_str(
        cppnix("nix")
            .args(["hash", "path", "--type", "sha256"])
            .arg(&tree),
    );
    let mut xz = xz2::write::XzEncoder::new(Vec::new(), 6);
    std::io::Write::write_all(&mut xz, &nar).expect("compress");
    let nar_xz = xz.finish().expect("compress");
    let port = http_server(vec![
        ("/hello.txt", b"hello over http\n".to_vec()),
        ("/tree.nar", nar),
        ("/tree.nar.xz", nar_xz),
    ]);
    let file_hash = ok_str(
        cppnix("nix-hash")
            .args(["--type", "sha256", "--flat", "--base32"])
            .arg(e.write("hello.txt", "hello over http\n")),
    );
    let expr = format!(
        r#"let f = attrs: derivation ({{ builder = "builtin:fetchurl"; system = "builtin"; outputHashAlgo = "sha256"; }} // attrs);
           u = p: "http://127.0.0.1:{port}/${{p}}";
        in {{
          flat = f {{ name = "hello.txt"; url = u "hello.txt"; outputHash = "{h}"; outputHashMode = "flat"; }};
          nar = f {{ name = "tree"; url = u "tree.nar"; unpack = true; outputHashMode = "recursive"; outputHash = "{n}"; }};
          narxz = f {{ name = "tree-xz"; url = u "tree.nar.xz"; unpack = true; outputHashMode = "recursive"; outputHash = "{n}"; }};
          # Nix's own `<nix/fetchurl.nix>` (built into both).
          corepkgs = import <nix/fetchurl.nix> {{ url = u "hello.txt"; sha256 = "{h}"; }};
          corepkgsUnpack = import <nix/fetchurl.nix> {{ url = u "tree.nar.xz"; hash = "{n}"; unpack = true; }};
        }}"#,
        h = file_hash.trim(),
        n = nar_sri.trim()
    );
    let file = e.write("fetch.nix", &expr);
    for attr in ["flat", "nar", "narxz", "corepkgs", "corepkgsUnpack"] {
        let c = e.store(&format!("cpp-{attr}"));
        let cpp = ok_str(
            cppnix("nix-build")
                .args(["--store", &c, "--no-out-link", "-A", attr])
                .arg(&file),
        );
        let f = e.store(&format!("firn-{attr}"));
        let mine = ok_str(firn_build(&f, &file).args(["-A", attr]));
        assert_eq!(cpp, mine, "{attr}");
        assert_eq!(
            nar_hash(&c, cpp.trim()),
            nar_hash(&f, mine.trim()),
            "{attr}"
        );
    }
    // Executable: the NAR hash of an executable file with those bytes.
    let exe_dir = e.dir.join("exe");
    std::fs::write(&exe_dir, "hello over http\n").expect("write");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&exe_dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let exe_hash = ok_str(
        cppnix("nix")
            .args(["hash", "path", "--type", "sha256"])
            .arg(&exe_dir),
    );
    let exe_file = e.write(
        "exe.nix",
        &format!(
            r#"derivation {{ builder = "builtin:fetchurl"; system = "builtin"; name = "hello-exe"; url = "http://127.0.0.1:{port}/hello.txt"; executable = true; outputHashMode = "recursive"; outputHashAlgo = "sha256"; outputHash = "{}"; }}"#,
            exe_hash.trim()
        ),
    );
    let c = e.store("cpp-exe");
    let cpp = ok_str(
        cppnix("nix-build")
            .args(["--store", &c, "--no-out-link"])
            .arg(&exe_file),
    );
    let f = e.store("firn-exe");
    let mine = ok_str(&mut firn_build(&f, &exe_file));
    assert_eq!(cpp, mine);
    let mode = std::fs::metadata(real(&f, mine.trim()))
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111);

    // A 404: both fail, nothing valid.
    let missing = e.write(
        "missing.nix",
        &format!(
            r#"derivation {{ builder = "builtin:fetchurl"; system = "builtin"; name = "missing"; url = "http://127.0.0.1:{port}/nope"; outputHashMode = "flat"; outputHashAlgo = "sha256"; outputHash = "{}"; }}"#,
            file_hash.trim()
        ),
    );
    let f = e.store("firn-missing");
    let (code, err) = stderr_of(&mut firn_build(&f, &missing));
    assert_ne!(code, Some(0));
    assert!(err.contains("HTTP error 404"), "{err}");
}

/// `post-build-hook` runs after each build with `DRV_PATH` and `OUT_PATHS`; the classic use,
/// pushing the outputs to a binary cache, works; a failing hook fails the build but leaves
/// the outputs valid.
#[test]
fn post_build_hook() {
    need_busybox();
    let e = env();
    let store = e.store("s");
    let cache = e.dir.join("cache");
    let log = e.dir.join("hook.log");
    let nix = firn_bin_dir().join("nix");
    let hook = e.dir.join("hook.sh");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\nset -e\necho \"$DRV_PATH $OUT_PATHS\" >> {log}\necho pushing\nexec {nix} copy --store {store} --to file://{cache} $OUT_PATHS\n",
            log = log.display(),
            nix = nix.display(),
            cache = cache.display()
        ),
    )
    .expect("write hook");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let file = e.write(
        "hooked.nix",
        &expr(r#"mk "hooked" "echo hooked > $out" { }"#),
    );
    let (code, err) = stderr_of(
        firn_build(&store, &file)
            .args(["--option", "post-build-hook"])
            .arg(&hook),
    );
    assert_eq!(code, Some(0), "{err}");
    let out = store_entry(&store, "-hooked").expect("built");
    let logged = std::fs::read_to_string(&log).expect("hook ran");
    assert!(logged.contains(".drv /nix/store/"), "{logged}");
    assert!(
        logged.trim_end().ends_with(&format!("/nix/store/{out}")),
        "{logged}"
    );
    let hash = &out[..32];
    assert!(
        cache.join(format!("{hash}.narinfo")).exists(),
        "the hook pushed the output"
    );

    // A failing hook: the build fails, the output is valid all the same.
    let bad = e.dir.join("bad.sh");
    std::fs::write(&bad, "#!/bin/sh\necho broken >&2\nexit 3\n").expect("write");
    std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let file = e.write(
        "hooked2.nix",
        &expr(r#"mk "hooked2" "echo hooked2 > $out" { }"#),
    );
    let (code, err) = stderr_of(
        firn_build(&store, &file)
            .args(["--option", "post-build-hook"])
            .arg(&bad),
    );
    assert_ne!(code, Some(0));
    assert!(
        err.contains("post-build-hook") && err.contains("exited with code 3"),
        "{err}"
    );
    let out2 = store_entry(&store, "-hooked2").expect("built");
    let valid = cppnix("nix-store")
        .args(["--store", &store, "--check-validity"])
        .arg(format!("/nix/store/{out2}"))
        .output()
        .expect("run");
    assert!(valid.status.success());
}

/// Auto-GC: with less than `min-free` available (here: always), garbage is collected before
/// building — dead paths go, what is being built and its inputs stay.
#[test]
fn auto_gc_before_building() {
    need_busybox();
    let e = env();
    let store = e.store("s");
    let junk = e.write("junk.txt", "nobody needs me\n");
    let dead = ok_str(
        firn("nix-store")
            .args(["--store", &store, "--add"])
            .arg(&junk),
    );
    let file = e.write(
        "gc.nix",
        &expr(r#"mk "after-gc" "cat ${bb}/busybox > /dev/null; echo ok > $out" { }"#),
    );
    let (code, err) =
        stderr_of(firn_build(&store, &file).args(["--option", "min-free", "1000000000000000000"]));
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("running auto-GC to free"), "{err}");
    let check = |p: &str| {
        cppnix("nix-store")
            .args(["--store", &store, "--check-validity", p])
            .output()
            .expect("run")
            .status
            .success()
    };
    assert!(!check(dead.trim()), "the dead path was collected");
    let out = store_entry(&store, "-after-gc").expect("built");
    assert!(check(&format!("/nix/store/{out}")));
}

/// `max-build-log-size`: a builder that writes more is killed, with the exit status CppNix
/// gives.
#[test]
fn log_size_limit() {
    need_busybox();
    let e = env();
    let file = e.write(
        "chatty.nix",
        &expr(r#"mk "chatty" "i=0; while [ $i -lt 2000 ]; do echo line $i of a rather long log; i=$((i+1)); done; echo > $out" { }"#),
    );
    let f = e.store("firn");
    let (fc, ferr) =
        stderr_of(firn_build(&f, &file).args(["--option", "max-build-log-size", "1000"]));
    assert!(
        ferr.contains("killed after writing more than 1000 bytes of log output"),
        "{ferr}"
    );
    assert!(store_entry(&f, "-chatty").is_none());
    let c = e.store("cpp");
    let (cc, cerr) = stderr_of(
        cppnix("nix-build")
            .args([
                "--store",
                &c,
                "--no-out-link",
                "--option",
                "max-build-log-size",
                "1000",
            ])
            .arg(&file),
    );
    assert!(
        cerr.contains("killed after writing more than 1000 bytes"),
        "{cerr}"
    );
    assert_eq!(fc, cc);
    // Without the limit it builds.
    let (code, err) = stderr_of(&mut firn_build(&f, &file));
    assert_eq!(code, Some(0), "{err}");
}

/// The uids of the running processes whose command line contains `marker`.
fn uids_running(marker: &str) -> Vec<u32> {
    let mut uids = Vec::new();
    for e in std::fs::read_dir("/proc").expect("proc").flatten() {
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        if !String::from_utf8_lossy(&cmd).contains(marker) {
            continue;
        }
        if let Ok(status) = std::fs::read_to_string(e.path().join("status")) {
            if let Some(uid) = status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
            {
                uids.push(uid);
            }
        }
    }
    uids.sort();
    uids.dedup();
    uids
}

/// As root (CI runs as root, and Debian's nix-bin creates `nixbld`), builds run as members
/// of `build-users-group`, two at a time as two different users, never as root.
#[test]
fn builds_run_as_build_users() {
    need_busybox();
    // SAFETY: a plain getter.
    let root = unsafe { libc::geteuid() } == 0;
    let group = ok_str(
        Command::new("getent")
            .args(["group", "nixbld"])
            .env("LC_ALL", "C"),
    );
    assert!(
        root && !group.trim().is_empty(),
        "this test needs root and the nixbld group (apt-get install nix-bin)"
    );
    let e = env();
    let marker = format!("marker{}", std::process::id());
    let file = e.write(
        "users.nix",
        &expr(&format!(
            r#"let s = n: mk "sleepy-${{n}}" ": {marker}-${{n}}; ${{bb}}/busybox sleep 1.5; echo > $out" {{ }};
               in [ (s "a") (s "b") ]"#
        )),
    );
    let store = e.store("s");
    let mut child = firn_build(&store, &file)
        .args(["-j", "2"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    // Look until both run at once or the build is over (however long evaluating and setting
    // up the sandboxes takes on a loaded machine).
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
        seen = uids_running(&marker);
        if seen.len() == 2 || child.try_wait().expect("try_wait").is_some() {
            break;
        }
    }
    assert!(child.wait().expect("wait").success());
    assert_eq!(seen.len(), 2, "two builds, two build users: {seen:?}");
    assert!(!seen.contains(&0), "no build runs as root: {seen:?}");
    let members = group.trim().rsplit(':').next().unwrap_or("").to_string();
    for uid in seen {
        let name = ok_str(Command::new("id").args(["-nu", &uid.to_string()]));
        assert!(
            members.split(',').any(|m| m == name.trim()),
            "{name} in {members}"
        );
    }
}

/// A run stopped by a failure (no `--keep-going`) names the requests it left unbuilt among
/// the failed ones, as CppNix 2.8's `buildPaths` (`build of '…', '…' failed`); with
/// `--keep-going` the other request is built and only the failure is reported.
#[test]
fn a_stopped_run_names_unbuilt_requests_as_cppnix() {
    need_busybox();
    let e = env();
    let file = e.write(
        "default.nix",
        &expr(r#"{ fails = mk "fails" "exit 3" { }; good = mk "good" "touch $out" { }; }"#),
    );
    for keep_going in [false, true] {
        let mut seen = Vec::new();
        for side in [false, true] {
            let s = e.store(&format!(
                "{}-{keep_going}",
                if side { "firn" } else { "cppnix" }
            ));
            let tool = |name: &str| {
                let mut c = if side { firn(name) } else { cppnix(name) };
                c.args(["--store", &s]);
                c
            };
            let drvs: Vec<String> = ["fails", "good"]
                .iter()
                .map(|a| {
                    ok_str(tool("nix-instantiate").arg(&file).args(["-A", a]))
                        .trim()
                        .to_string()
                })
                .collect();
            let mut c = tool("nix-store");
            c.arg("--realise").args(&drvs);
            if keep_going {
                c.arg("--keep-going");
            }
            let (code, err) = stderr_of(&mut c);
            let errors: Vec<String> = err
                .lines()
                .filter(|l| l.starts_with("error: "))
                .map(String::from)
                .collect();
            seen.push((code, errors));
        }
        assert_eq!(seen[1], seen[0], "keep-going: {keep_going}");
        assert_eq!(
            seen[0]
                .1
                .last()
                .is_some_and(|l| l.starts_with("error: build of ")),
            !keep_going,
            "{seen:?}"
        );
    }
}
