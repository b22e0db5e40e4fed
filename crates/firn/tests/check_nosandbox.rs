//! Rebuilding outputs that are valid already without the sandbox (`--option sandbox false`):
//! `--check`, and a derivation some of whose outputs are valid. The builder makes those at
//! CppNix's fallback paths and the hash parts are rewritten back afterwards, so the results
//! must be those of CppNix 2.8 (the oracle): equal NAR hashes for a deterministic build (its
//! own path inside included), exit status 104 and the same message for one that is not, and
//! `<output>.check` kept only with `--keep-failed`.
//!
//! Without the sandbox a build cannot happen in a chroot store, so each test has a store of
//! its own whose store directory is where its files are (`NIX_STORE_DIR` and friends); the
//! builder is the host's busybox, reachable without a sandbox.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

const EXPR: &str = r#"
let
  mk = name: script: attrs: derivation ({
    inherit name;
    system = "x86_64-linux";
    builder = "/usr/bin/busybox";
    args = [ "sh" "-c" script ];
  } // attrs);
in {
  det = mk "det" "echo same > $out" { };
  # Its own path in a file, in a symlink's target, and through a placeholder.
  selfref = mk "selfref" ''
    mkdir $out
    echo $out > $out/me
    echo $marker >> $out/me
    ln -s $out/me $out/link
  '' { marker = builtins.placeholder "out"; };
  # Its own hash in file names, around others: the fallback hash may sort elsewhere than the
  # real one, so the rewritten entries are not in NAR order any more.
  selfname = mk "selfname" ''
    mkdir $out
    for n in 0 5 a h m r z; do echo $n > $out/$n; done
    h=$(basename $out)
    touch $out/''${h%%-*} $out/$h
  '' { };
  nondet = mk "nondet" "cat /proc/sys/kernel/random/uuid > $out" { };
  # Refers to `dep` (which it must not) only when the file `flag` beside this one exists.
  refs = let dep = mk "dep" "echo dep > $out" { }; in mk "refs" ''
    if test -e ${toString ./flag}; then echo ${dep} > $out; else echo none > $out; fi
  '' { disallowedReferences = [ dep ]; };
  # Says where it is built, and fails.
  top = mk "top" "echo TOP=$NIX_BUILD_TOP; echo TMPDIR=$TMPDIR; exit 1" { };
  # `dev` refers to `out`, and says where `out` is.
  multi = mk "multi" "mkdir $out $dev; echo lib > $out/lib; echo $out > $dev/where" {
    outputs = [ "out" "dev" ];
  };
}
"#;

/// A store whose files are at its store directory, and the expression.
struct Env {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    file: PathBuf,
}

fn env() -> Env {
    need_busybox();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    let file = dir.join("default.nix");
    std::fs::write(&file, EXPR).expect("writing the expression");
    Env {
        _tmp: tmp,
        dir,
        file,
    }
}

impl Env {
    fn store_dir(&self) -> PathBuf {
        self.dir.join("store")
    }

    fn setup(&self, c: &mut Command) {
        c.env("NIX_STORE_DIR", self.dir.join("store"))
            .env("NIX_STATE_DIR", self.dir.join("state"))
            .env("NIX_LOG_DIR", self.dir.join("log"))
            .env("TMPDIR", &self.dir);
    }

    /// `nix-build -A attr` without the sandbox or build users.
    fn build(&self, mut c: Command, attr: &str) -> Command {
        self.setup(&mut c);
        c.arg(&self.file)
            .args(["-A", attr, "--no-out-link"])
            .args(["--option", "sandbox", "false"])
            .args(["--option", "build-users-group", ""]);
        c
    }

    fn firn(&self, attr: &str) -> Command {
        self.build(firn("nix-build"), attr)
    }

    fn cppnix(&self, attr: &str) -> Command {
        self.build(cppnix("nix-build"), attr)
    }

    fn nix_store(&self) -> Command {
        let mut c = cppnix("nix-store");
        self.setup(&mut c);
        c
    }

    /// The NAR hash CppNix has registered for `path`.
    fn registered_hash(&self, path: &str) -> String {
        ok_str(self.nix_store().args(["-q", "--hash", path]))
            .trim()
            .to_string()
    }

    /// Entries of the store directory other than `.drv`s, locks and `.links`.
    fn entries(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.store_dir())
            .expect("reading the store directory")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".drv") && !n.ends_with(".lock") && n != ".links")
            .collect();
        v.sort();
        v
    }
}

/// Exit status and stderr.
fn status_and_stderr(c: &mut Command) -> (Option<i32>, String) {
    let out = c.output().expect("running a command");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The `error: ...` lines of a stderr.
fn error_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.starts_with("error:")).collect()
}

/// `--check` of deterministic builds passes, whoever built them and whoever checks; an output
/// mentioning its own path, or another output's, comes back with the same NAR hash; nothing is
/// left at the fallback paths by firn.
#[test]
fn check_of_deterministic_builds_passes() {
    let e = env();
    // Some built by CppNix, some by firn.
    let det = ok_str(&mut e.cppnix("det")).trim().to_string();
    // Two outputs, one mentioning the other: both are made at fallback paths.
    ok(&mut e.cppnix("multi"));
    let selfref = ok_str(&mut e.firn("selfref")).trim().to_string();
    let selfname = ok_str(&mut e.firn("selfname")).trim().to_string();
    let before = e.entries();
    let det_hash = e.registered_hash(&det);
    let selfref_hash = e.registered_hash(&selfref);
    let selfname_hash = e.registered_hash(&selfname);

    let me = std::fs::read_to_string(Path::new(&selfref).join("me")).expect("reading 'me'");
    assert_eq!(me, format!("{selfref}\n{selfref}\n"));

    for attr in ["det", "selfref", "multi", "selfname"] {
        let (code, err) = status_and_stderr(e.firn(attr).arg("--check"));
        assert_eq!(code, Some(0), "firn --check -A {attr}:\n{err}");
        assert_eq!(e.entries(), before, "firn left something in the store");
    }
    // CppNix agrees (and leaves its fallback paths behind).
    for attr in ["det", "selfref", "multi", "selfname"] {
        let (code, err) = status_and_stderr(e.cppnix(attr).arg("--check"));
        assert_eq!(code, Some(0), "CppNix --check -A {attr}:\n{err}");
    }
    assert_eq!(e.registered_hash(&det), det_hash);
    assert_eq!(e.registered_hash(&selfref), selfref_hash);
    assert_eq!(e.registered_hash(&selfname), selfname_hash);
    // The outputs themselves were not touched.
    ok(e.nix_store().args(["--verify", "--check-contents"]));
    let me2 = std::fs::read_to_string(Path::new(&selfref).join("me")).expect("reading 'me'");
    assert_eq!(me2, me);
    assert_eq!(
        std::fs::read_link(Path::new(&selfref).join("link")).expect("readlink"),
        Path::new(&selfref).join("me")
    );
}

/// `--check` of a build that is not deterministic exits 104 with CppNix's message; the
/// differing result is kept at `<output>.check` only with `--keep-failed`.
#[test]
fn check_of_nondeterministic_build_exits_104() {
    let e = env();
    let out = ok_str(&mut e.firn("nondet")).trim().to_string();
    let hash = e.registered_hash(&out);
    let check = format!("{out}.check");
    let before = e.entries();

    let (code, firn_err) = status_and_stderr(e.firn("nondet").arg("--check"));
    assert_eq!(code, Some(104), "firn:\n{firn_err}");
    assert!(
        firn_err.contains(&format!("may not be deterministic: output '{out}' differs")),
        "{firn_err}"
    );
    assert_eq!(e.entries(), before, "firn left something in the store");
    let (code, cpp_err) = status_and_stderr(e.cppnix("nondet").arg("--check"));
    assert_eq!(code, Some(104), "CppNix:\n{cpp_err}");
    assert_eq!(error_lines(&firn_err), error_lines(&cpp_err));
    // CppNix leaves its fallback path behind.
    for n in e.entries() {
        if !before.contains(&n) {
            let p = e.store_dir().join(&n);
            let _ = std::fs::remove_file(&p);
        }
    }
    assert_eq!(e.entries(), before);
    assert!(!Path::new(&check).exists());

    let (code, firn_err) = status_and_stderr(e.firn("nondet").args(["--check", "-K"]));
    assert_eq!(code, Some(104), "firn -K:\n{firn_err}");
    assert!(
        firn_err.contains(&format!(
            "may not be deterministic: output '{out}' differs from '{check}'"
        )),
        "{firn_err}"
    );
    let kept = std::fs::read_to_string(&check).expect("the .check result");
    let valid = std::fs::read_to_string(&out).expect("the valid output");
    assert_ne!(kept, valid);
    assert_eq!(kept.len(), valid.len());
    std::fs::remove_file(&check).expect("removing the .check result");

    let (code, cpp_err) = status_and_stderr(e.cppnix("nondet").args(["--check", "-K"]));
    assert_eq!(code, Some(104), "CppNix -K:\n{cpp_err}");
    assert!(Path::new(&check).exists());
    // The valid output stays as it was.
    assert_eq!(e.registered_hash(&out), hash);
    ok(e.nix_store().args(["--verify", "--check-contents"]));
}

/// A derivation with one output valid and one not is built again without the sandbox: the
/// valid output stays, the other is made, and where it mentions the valid one it has the real
/// path, as CppNix made it.
#[test]
fn partly_valid_derivation_is_rebuilt() {
    let e = env();
    let drv = ok_str(e.nix_store().args(["-q"]).arg("--deriver").arg({
        let outs = ok_str(&mut e.cppnix("multi"));
        outs.lines().next().expect("an output").to_string()
    }));
    let drv = drv.trim().to_string();
    let outs = ok_str(e.nix_store().args(["-q", "--outputs", &drv]));
    let outs: Vec<&str> = outs.lines().collect();
    let (dev, out) = match outs.as_slice() {
        [a, b] if a.ends_with("-dev") => (a.to_string(), b.to_string()),
        [a, b] => (b.to_string(), a.to_string()),
        other => panic!("two outputs expected, got {other:?}"),
    };
    let dev_hash = e.registered_hash(&dev);
    let out_hash = e.registered_hash(&out);
    let refs = ok_str(e.nix_store().args(["-q", "--references", &dev]));

    // `dev` goes; `out` stays valid.
    ok(e.nix_store().args(["--delete", &dev]));
    assert!(!Path::new(&dev).exists());

    let before: Vec<String> = e.entries();
    let got = ok_str(&mut e.firn("multi.dev"));
    assert_eq!(got.trim(), dev);
    assert_eq!(e.registered_hash(&dev), dev_hash);
    assert_eq!(e.registered_hash(&out), out_hash);
    assert_eq!(
        ok_str(e.nix_store().args(["-q", "--references", &dev])),
        refs
    );
    assert_eq!(
        std::fs::read_to_string(Path::new(&dev).join("where")).expect("reading 'where'"),
        format!("{out}\n")
    );
    // Nothing but `dev` is new in the store (the fallback path of `out` is gone).
    let mut want = before.clone();
    want.push(
        Path::new(&dev)
            .file_name()
            .expect("a base name")
            .to_string_lossy()
            .into_owned(),
    );
    want.sort();
    assert_eq!(e.entries(), want);
    ok(e.nix_store().args(["--verify", "--check-contents"]));
}

/// The `ultimate` flag of a valid path in the store's database, and its registration time.
fn ultimate_and_time(e: &Env, path: &str) -> (i64, i64) {
    let db = rusqlite::Connection::open(e.dir.join("state/db/db.sqlite")).expect("db");
    db.query_row(
        "select ultimate, registrationTime from ValidPaths where path = ?",
        [path],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .expect("querying the path")
}

fn set_not_ultimate(e: &Env, path: &str) {
    let db = rusqlite::Connection::open(e.dir.join("state/db/db.sqlite")).expect("db");
    db.execute(
        "update ValidPaths set ultimate = 0, registrationTime = 5 where path = ?",
        [path],
    )
    .expect("updating the path");
}

/// As CppNix 2.8's `--check`: the rebuilt output is compared with the valid one without
/// `allowedReferences` and friends (a differing one is not deterministic, exit 104, not a
/// refused output); a check that passes makes the valid output ultimately trusted (its
/// registration time stays) and runs the `post-build-hook` with no `OUT_PATHS`; one that
/// fails does not run it.
#[test]
fn check_rules_hook_and_ultimate_as_cppnix() {
    let e = env();
    let refs = ok_str(&mut e.firn("refs")).trim().to_string();
    let det = ok_str(&mut e.firn("det")).trim().to_string();
    ok(&mut e.firn("nondet"));

    // The rebuilt `refs` refers to what it must not.
    let flag = e.dir.join("flag");
    std::fs::write(&flag, "").expect("writing the flag");
    let (code, firn_err) = status_and_stderr(e.firn("refs").arg("--check"));
    let (cpp_code, cpp_err) = status_and_stderr(e.cppnix("refs").arg("--check"));
    assert_eq!(cpp_code, Some(104), "CppNix:\n{cpp_err}");
    assert_eq!(code, Some(104), "firn:\n{firn_err}");
    assert!(
        firn_err.contains(&format!("output '{refs}' differs")),
        "{firn_err}"
    );
    assert_eq!(error_lines(&firn_err), error_lines(&cpp_err));
    std::fs::remove_file(&flag).expect("removing the flag");

    // `ultimate` and the post-build-hook.
    let hook = e.dir.join("hook.sh");
    let log = e.dir.join("hook.log");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\necho \"DRV_PATH=$DRV_PATH OUT_PATHS=[$OUT_PATHS]\" >> {}\n",
            log.display()
        ),
    )
    .expect("writing the hook");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let with_hook = |mut c: Command| -> Vec<String> {
        let _ = std::fs::remove_file(&log);
        let (code, err) = status_and_stderr(c.args(["--option", "post-build-hook"]).arg(&hook));
        assert!(code == Some(0) || code == Some(104), "{err}");
        // Announced without `-L` when it runs.
        let announced = format!("running post-build-hook '{}'...", hook.display());
        assert_eq!(err.contains(&announced), code == Some(0), "{err}");
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    };
    let mut seen = Vec::new();
    for side in ["cppnix", "firn"] {
        set_not_ultimate(&e, &det);
        assert_eq!(ultimate_and_time(&e, &det), (0, 5));
        let run = |attr: &str| {
            let mut c = if side == "firn" {
                e.firn(attr)
            } else {
                e.cppnix(attr)
            };
            c.arg("--check");
            c
        };
        let passed = with_hook(run("det"));
        assert_eq!(ultimate_and_time(&e, &det), (1, 5), "{side}");
        let failed = with_hook(run("nondet"));
        assert!(failed.is_empty(), "{side}: {failed:?}");
        seen.push(passed);
    }
    assert_eq!(seen[0].len(), 1, "{seen:?}");
    assert!(seen[0][0].ends_with("OUT_PATHS=[]"), "{seen:?}");
    assert_eq!(seen[0], seen[1]);
}

/// Without the sandbox the builder runs in `$TMPDIR/nix-build-<drv name>.drv-<n>` (the first
/// free `n`), as CppNix 2.8's; with `--keep-failed` that directory is kept, a `--check` that
/// finds a difference included.
#[test]
fn build_directory_named_as_cppnix() {
    let e = env();
    // Taken names are skipped.
    std::fs::create_dir(e.dir.join("nix-build-top.drv-0")).expect("mkdir");
    let tops = |c: &mut Command| -> (String, String) {
        let (code, err) = status_and_stderr(c.arg("-K"));
        assert_eq!(code, Some(100), "{err}");
        let value = |key: &str| {
            err.lines()
                .find_map(|l| l.split_once(key).map(|(_, v)| v.to_string()))
                .unwrap_or_else(|| panic!("no {key} in:\n{err}"))
        };
        let top = value("TOP=");
        assert_eq!(value("TMPDIR="), top);
        assert!(
            err.contains(&format!("note: keeping build directory '{top}'")),
            "{err}"
        );
        let base = Path::new(&top)
            .file_name()
            .expect("a base name")
            .to_string_lossy()
            .into_owned();
        assert_eq!(
            Path::new(&top).parent(),
            Some(e.dir.canonicalize().expect("canonicalize").as_path())
        );
        (base, top)
    };
    let (cpp, _) = tops(&mut e.cppnix("top"));
    assert_eq!(cpp, "nix-build-top.drv-1");
    let (firn, kept) = tops(&mut e.firn("top"));
    assert_eq!(firn, "nix-build-top.drv-2");
    assert!(Path::new(&kept).is_dir());

    // A `--check` that finds a difference keeps the build directory with `-K`, as CppNix's.
    ok(&mut e.firn("nondet"));
    for side in ["cppnix", "firn"] {
        let mut c = if side == "firn" {
            e.firn("nondet")
        } else {
            e.cppnix("nondet")
        };
        let (code, err) = status_and_stderr(c.args(["--check", "-K"]));
        assert_eq!(code, Some(104), "{side}: {err}");
        let note = err
            .lines()
            .find(|l| l.starts_with("note: keeping build directory"))
            .unwrap_or_else(|| panic!("{side}: no note in:\n{err}"));
        assert!(note.contains("/nix-build-nondet.drv-0'"), "{side}: {note}");
        let dir = note
            .trim_start_matches("note: keeping build directory '")
            .trim_end_matches('\'');
        std::fs::remove_dir_all(dir).expect("removing the kept directory");
        for n in e.entries() {
            if n.ends_with(".check") {
                let _ = std::fs::remove_file(e.store_dir().join(n));
            }
        }
    }
}
