//! `--check` in the sandbox (chroot stores), against CppNix 2.8 (the oracle) on stores of the
//! same contents: the same stderr line for line (store roots and kept build directories
//! aside), stdout and exit status for `nix-build --check` and `nix-store --realise --check` of
//! a build that is not deterministic (104, "may not be deterministic: output '...' differs",
//! with `-K` "differs from '....check'" and the result and build directory kept), of one whose
//! input must be built first (built normally, only the one asked for is checked, nothing is
//! announced), and of one never built (exit 1, "checking is not possible"); `run-diff-hook`
//! keeps the result too and runs `diff-hook` (as the build's user) on both.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// (Written after [`LET_BUSYBOX`].)
const EXPR: &str = r#"  mk = name: script: derivation {
    inherit name;
    system = "x86_64-linux";
    builder = "${bb}/busybox";
    args = [ "sh" "-c" script ];
  };
  dep = mk "dep" "echo dep > $out";
in {
  inherit dep;
  nondet = mk "nondet" "cat /proc/sys/kernel/random/uuid > $out";
  top = mk "top" "cat ${dep} > $out";
  fresh = mk "fresh" "echo fresh > $out";
}
"#;

/// One implementation's store, build directories and commands.
struct Side {
    tag: &'static str,
    tool: fn(&str) -> Command,
    store: String,
    tmp: PathBuf,
}

/// What a command did, with the side's store root and kept build directories written the same
/// way for both.
#[derive(Debug, PartialEq, Eq)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: Vec<String>,
}

impl Side {
    fn new(dir: &Path, tag: &'static str, tool: fn(&str) -> Command) -> Side {
        let tmp = dir.join(format!("tmp-{tag}"));
        std::fs::create_dir_all(&tmp).expect("mkdir");
        Side {
            tag,
            tool,
            store: store_dir(dir, tag),
            tmp,
        }
    }

    fn cmd(&self, name: &str) -> Command {
        let mut c = (self.tool)(name);
        c.env("TMPDIR", &self.tmp).args(["--store", &self.store]);
        c
    }

    fn nix_build(&self, file: &Path, attr: &str, extra: &[&str]) -> Command {
        let mut c = self.cmd("nix-build");
        c.arg(file).args(["-A", attr, "--no-out-link"]).args(extra);
        c
    }

    fn run(&self, c: &mut Command) -> Run {
        let out = c.output().expect("running a command");
        let norm = |s: &str| s.replace(&self.store, "STORE");
        let stderr = String::from_utf8_lossy(&out.stderr)
            .lines()
            .map(
                |l| match l.strip_prefix("note: keeping build directory '") {
                    Some(rest) => {
                        let dir = rest.trim_end_matches('\'');
                        assert!(
                            Path::new(dir).is_dir() && Path::new(dir).starts_with(&self.tmp),
                            "{}: kept build directory {dir}",
                            self.tag
                        );
                        "note: keeping build directory 'DIR'".to_string()
                    }
                    None => norm(l),
                },
            )
            .collect();
        Run {
            code: out.status.code(),
            stdout: norm(&String::from_utf8_lossy(&out.stdout)),
            stderr,
        }
    }

    fn real(&self, path: &str) -> PathBuf {
        Path::new(&self.store).join(&path[1..])
    }
}

#[test]
fn check_in_the_sandbox_as_cppnix() {
    need_busybox();
    let tmp = tempfile::tempdir().expect("tmp");
    // The diff hook runs as the build user (when there are build users): it must reach it.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let file = tmp.path().join("default.nix");
    std::fs::write(&file, format!("{LET_BUSYBOX}{EXPR}")).expect("writing the expression");
    let hook = tmp.path().join("diff-hook");
    std::fs::write(
        &hook,
        "#!/bin/sh\necho \"diff $1 $2 $3 $(test -d \"$4\" && echo with-build-dir)\"\n",
    )
    .expect("writing the diff hook");
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let hook = hook.to_string_lossy().into_owned();
    let sides = [
        Side::new(tmp.path(), "cppnix", cppnix),
        Side::new(tmp.path(), "firn", firn),
    ];
    let mut transcripts: Vec<Vec<(&str, Run)>> = Vec::new();
    for s in &sides {
        let tag = s.tag;
        let nondet = ok_str(&mut s.nix_build(&file, "nondet", &[]))
            .trim()
            .to_string();
        ok(&mut s.nix_build(&file, "top", &[]));
        let dep = ok_str(&mut s.nix_build(&file, "dep", &[]))
            .trim()
            .to_string();
        ok(cppnix("nix-store").args(["--store", &s.store, "--delete", &dep]));
        let drv = |attr: &str| {
            ok_str(
                firn("nix-instantiate")
                    .args(["--store", &s.store])
                    .arg(&file)
                    .args(["-A", attr]),
            )
            .trim()
            .to_string()
        };
        let (nondet_drv, top_drv) = (drv("nondet"), drv("top"));
        let before = std::fs::read(s.real(&nondet)).expect("reading the output");

        let mut t = Vec::new();
        let r = s.run(&mut s.nix_build(&file, "nondet", &["--check"]));
        assert_eq!(r.code, Some(104), "{tag}: {r:?}");
        t.push(("nix-build --check", r));
        assert!(!s.real(&format!("{nondet}.check")).exists(), "{tag}");

        let r = s.run(&mut s.nix_build(&file, "nondet", &["--check", "-K"]));
        assert_eq!(r.code, Some(104), "{tag}: {r:?}");
        t.push(("nix-build --check -K", r));
        let kept = std::fs::read(s.real(&format!("{nondet}.check"))).expect("the .check result");
        assert_ne!(kept, before, "{tag}");
        // The valid output is as it was.
        assert_eq!(
            std::fs::read(s.real(&nondet)).expect("reading the output"),
            before,
            "{tag}"
        );

        std::fs::remove_file(s.real(&format!("{nondet}.check"))).expect("removing .check");
        let r = s.run(&mut s.nix_build(
            &file,
            "nondet",
            &[
                "--check",
                "--option",
                "run-diff-hook",
                "true",
                "--option",
                "diff-hook",
                &hook,
            ],
        ));
        assert_eq!(r.code, Some(104), "{tag}: {r:?}");
        let diff = format!("diff {nondet} STORE{nondet}.check {nondet_drv} with-build-dir");
        assert!(r.stderr.contains(&diff), "{tag}: {r:?}");
        assert!(s.real(&format!("{nondet}.check")).exists(), "{tag}");
        t.push(("nix-build --check with a diff hook", r));

        let r = s.run(&mut s.nix_build(&file, "top", &["--check"]));
        assert_eq!(r.code, Some(0), "{tag}: {r:?}");
        t.push(("nix-build --check, input missing", r));
        assert!(s.real(&dep).exists(), "{tag}: the input was built");

        let r = s.run(&mut s.nix_build(&file, "fresh", &["--check"]));
        assert_eq!(r.code, Some(1), "{tag}: {r:?}");
        t.push(("nix-build --check, never built", r));

        let r = s.run(
            s.cmd("nix-store")
                .args(["--realise", "--check", &nondet_drv]),
        );
        assert_eq!(r.code, Some(104), "{tag}: {r:?}");
        t.push(("nix-store --realise --check", r));

        let r = s.run(s.cmd("nix-store").args(["-r", "--check", &top_drv]));
        assert_eq!(r.code, Some(0), "{tag}: {r:?}");
        t.push(("nix-store -r --check, deterministic", r));

        ok(cppnix("nix-store").args(["--store", &s.store, "--verify", "--check-contents"]));
        transcripts.push(t);
    }
    for ((what, cpp), (_, ours)) in transcripts[0].iter().zip(&transcripts[1]) {
        assert_eq!(ours, cpp, "{what}");
    }
    // What the transcripts say, in CppNix's words.
    let nondet = &transcripts[0][1].1.stderr;
    assert!(
        nondet
            .iter()
            .any(|l| l.starts_with("checking outputs of '")),
        "{nondet:?}"
    );
    assert!(
        nondet.iter().any(|l| l.starts_with("error: derivation '")
            && l.contains("may not be deterministic: output 'STORE/nix/store/")
            && l.ends_with("-nondet.check'")),
        "{nondet:?}"
    );
}
