//! A builder's `HOME` is `/homeless-shelter`, which must not exist, as in CppNix 2.8 (the
//! oracle):
//! - without the sandbox, a build does not start while `/homeless-shelter` exists on the host
//!   (CppNix checks before starting the builder, and only when it does not sandbox): the
//!   realisation fails with exit status 1 and CppNix's message. A builder that made it (as
//!   root without build users it can) thus fails the next unsandboxed build;
//! - in the sandbox, the host's `/homeless-shelter` does not matter, and with build users the
//!   sandbox's root belongs to someone else than the builder: writing to `HOME` fails with
//!   "Permission denied", as in CppNix.
//!
//! The tests that need `/homeless-shelter` on the host make it in a root of their own: a
//! private mount namespace (`unshare`) whose root is a tmpfs holding binds of the host's
//! top-level directories.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

const EXPR: &str = r#"
let
  mk = name: script: derivation {
    inherit name;
    system = "x86_64-linux";
    builder = "/usr/bin/busybox";
    args = [ "sh" "-c" script ];
  };
in {
  writeHome = mk "write-home" "mkdir -p $HOME && echo x > $HOME/x && echo ok > $out";
  plain = mk "plain" "echo ok > $out";
  sandboxed = mk "sandboxed" "test ! -e /homeless-shelter && echo ok > $out";
}
"#;

/// The same builders from the store (for the sandbox, which has no `/usr/bin`).
/// (Written after [`LET_BUSYBOX`].)
const SANDBOX_EXPR: &str = r#"  mk = name: script: derivation {
    inherit name;
    system = "x86_64-linux";
    builder = "${bb}/busybox";
    args = [ "sh" "-c" script ];
  };
in {
  writeHome = mk "write-home" "echo x > $HOME && echo ok > $out";
  # The root, /etc and /tmp are not the builder's to change.
  skeleton = mk "skeleton" ''
    ! mkdir /x 2>/dev/null
    ! echo evil >> /etc/passwd 2>/dev/null
    ! chmod 777 / 2>/dev/null
    ! chmod 777 /etc 2>/dev/null
    ! chmod 700 /tmp 2>/dev/null
    touch /tmp/fine /build/fine
    echo ok > $out
  '';
  sandboxed = mk "sandboxed" "test ! -e /homeless-shelter && echo ok > $out";
}
"#;

/// Single-quoted for `sh`.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A command to run in a [`PrivateRoot`]: its environment changes (None: removed) and argv.
struct Step {
    env: Vec<(String, Option<String>)>,
    argv: Vec<String>,
}

/// Runs commands in a root of its own (see the module's notes) and keeps their results.
struct PrivateRoot {
    dir: PathBuf,
    make_home: bool,
    steps: Vec<Step>,
}

impl PrivateRoot {
    fn new(dir: &Path, make_home: bool) -> PrivateRoot {
        std::fs::create_dir_all(dir).expect("creating the directory of the private root");
        PrivateRoot {
            dir: dir.to_path_buf(),
            make_home,
            steps: Vec::new(),
        }
    }

    /// Add `c` (its program, arguments and environment) as the next step.
    fn step(&mut self, c: &Command) {
        let env = c
            .get_envs()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.map(|v| v.to_string_lossy().into_owned()),
                )
            })
            .collect();
        let argv = std::iter::once(c.get_program())
            .chain(c.get_args())
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        self.steps.push(Step { env, argv });
    }

    /// Run the steps one after the other; each one's exit status and stderr.
    fn run(&self) -> Vec<(i32, String)> {
        let root = self.dir.join("root");
        let out = self.dir.join("out");
        std::fs::create_dir_all(&root).expect("mkdir");
        std::fs::create_dir_all(&out).expect("mkdir");
        let mut script = String::from(
            "set -e\n\
             r=\"$1\"\n\
             mount -t tmpfs none \"$r\"\n\
             for e in /* /.[!.]*; do\n\
             \x20 [ -e \"$e\" ] || [ -L \"$e\" ] || continue\n\
             \x20 n=${e#/}\n\
             \x20 if [ -L \"$e\" ]; then ln -s \"$(readlink \"$e\")\" \"$r/$n\"\n\
             \x20 elif [ -d \"$e\" ]; then mkdir \"$r/$n\"; mount --rbind \"$e\" \"$r/$n\"\n\
             \x20 else touch \"$r/$n\"; mount --bind \"$e\" \"$r/$n\"; fi\n\
             done\n",
        );
        if self.make_home {
            script.push_str("mkdir \"$r/homeless-shelter\"\n");
        }
        let mut inner = String::new();
        for (i, Step { env, argv }) in self.steps.iter().enumerate() {
            inner.push('(');
            for (k, v) in env {
                match v {
                    Some(v) => inner.push_str(&format!("export {k}={}; ", quote(v))),
                    None => inner.push_str(&format!("unset {k}; ")),
                }
            }
            let argv: Vec<String> = argv.iter().map(|a| quote(a)).collect();
            let o = out.join(i.to_string());
            inner.push_str(&format!(
                "exec {} 2>{} >/dev/null); echo $? > {}\n",
                argv.join(" "),
                quote(&format!("{}.err", o.display())),
                quote(&format!("{}.rc", o.display()))
            ));
        }
        // The tmpfs becomes the namespace's root (`pivot_root`, not `chroot`: user namespaces,
        // which sandboxes need, cannot be made from a chroot).
        script.push_str(&format!(
            "mkdir \"$r/.old-root\"\n\
             cd \"$r\"\n\
             pivot_root . .old-root\n\
             umount -l /.old-root\n\
             rmdir /.old-root\n\
             cd /\n\
             exec /bin/sh -c {}\n",
            quote(&inner)
        ));
        let mut c = Command::new("unshare");
        // SAFETY: a plain getter.
        if unsafe { libc::geteuid() } != 0 {
            c.arg("--map-root-user");
        }
        let res = c
            .args([
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                &script,
                "sh",
            ])
            .arg(&root)
            .output()
            .expect("running unshare");
        assert!(
            res.status.success(),
            "setting up the private root failed: {}",
            String::from_utf8_lossy(&res.stderr)
        );
        (0..self.steps.len())
            .map(|i| {
                let o = out.join(i.to_string());
                let rc = std::fs::read_to_string(format!("{}.rc", o.display()))
                    .expect("a step's exit status");
                let err = std::fs::read_to_string(format!("{}.err", o.display()))
                    .expect("a step's stderr");
                (rc.trim().parse().expect("an exit status"), err)
            })
            .collect()
    }
}

/// A store whose files are at its store directory (so that builds can run unsandboxed), in
/// `dir`, and `nix-build` (firn's or CppNix's) of `attr` in it without the sandbox or build
/// users.
fn unsandboxed(dir: &Path, mut c: Command, file: &Path, attr: &str) -> Command {
    c.env("NIX_STORE_DIR", dir.join("store"))
        .env("NIX_STATE_DIR", dir.join("state"))
        .env("NIX_LOG_DIR", dir.join("log"))
        .env("TMPDIR", dir)
        .arg(file)
        .args(["-A", attr, "--no-out-link"])
        .args(["--option", "sandbox", "false"])
        .args(["--option", "build-users-group", ""]);
    c
}

/// `nix-build` of `attr` in the chroot store `store` (so in the sandbox).
fn sandboxed(store: &str, mut c: Command, file: &Path, attr: &str) -> Command {
    c.args(["--store", store])
        .arg(file)
        .args(["-A", attr, "--no-out-link"]);
    c
}

fn error_lines(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .map(String::from)
        .collect()
}

const MESSAGE: &str = "error: home directory '/homeless-shelter' exists; please remove it to assure purity of builds without sandboxing";

/// An unsandboxed builder that makes its `HOME` succeeds; the next unsandboxed build then fails
/// before it starts, as CppNix's does (exit status 1, its message, nothing built), while a
/// sandboxed one is not concerned.
#[test]
fn an_existing_home_stops_unsandboxed_builds() {
    need_busybox();
    let tmp = tempfile::tempdir().expect("tmp");
    let file = tmp.path().join("default.nix");
    std::fs::write(&file, EXPR).expect("writing the expression");
    let sandbox_file = tmp.path().join("sandbox.nix");
    std::fs::write(&sandbox_file, format!("{LET_BUSYBOX}{SANDBOX_EXPR}"))
        .expect("writing the expression");
    let mut results = Vec::new();
    for (tag, tool) in [("cppnix", cppnix as fn(&str) -> Command), ("firn", firn)] {
        let dir = tmp.path().join(tag);
        let mut root = PrivateRoot::new(&dir.join("private"), false);
        root.step(&unsandboxed(&dir, tool("nix-build"), &file, "writeHome"));
        root.step(&unsandboxed(&dir, tool("nix-build"), &file, "plain"));
        let chroot_store = store_dir(&dir, "chroot-store");
        root.step(&sandboxed(
            &chroot_store,
            tool("nix-build"),
            &sandbox_file,
            "sandboxed",
        ));
        let r = root.run();
        assert_eq!(
            r[0].0, 0,
            "{tag}: writing HOME without the sandbox:\n{}",
            r[0].1
        );
        assert_eq!(r[1].0, 1, "{tag}: building with HOME there:\n{}", r[1].1);
        assert_eq!(error_lines(&r[1].1), [MESSAGE], "{tag}");
        assert!(!r[1].1.contains("building '"), "{tag}: {}", r[1].1);
        assert_eq!(r[2].0, 0, "{tag}: sandboxed:\n{}", r[2].1);
        // Nothing of `plain` was built.
        let built: Vec<String> = std::fs::read_dir(dir.join("store"))
            .expect("reading the store directory")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with("-plain"))
            .collect();
        assert!(built.is_empty(), "{tag}: {built:?}");
        results.push(r[1].1.clone());
    }
    // The same words from both.
    assert_eq!(error_lines(&results[0]), error_lines(&results[1]));
    // The hosts's root was not touched.
    assert!(!Path::new("/homeless-shelter").exists());
}

/// With `/homeless-shelter` there from the start, the first unsandboxed build fails already.
#[test]
fn an_existing_home_stops_the_first_unsandboxed_build() {
    need_busybox();
    let tmp = tempfile::tempdir().expect("tmp");
    let file = tmp.path().join("default.nix");
    std::fs::write(&file, EXPR).expect("writing the expression");
    let mut errs = Vec::new();
    for (tag, tool) in [("cppnix", cppnix as fn(&str) -> Command), ("firn", firn)] {
        let dir = tmp.path().join(tag);
        let mut root = PrivateRoot::new(&dir.join("private"), true);
        root.step(&unsandboxed(&dir, tool("nix-build"), &file, "plain"));
        let r = root.run();
        assert_eq!(r[0].0, 1, "{tag}:\n{}", r[0].1);
        errs.push(error_lines(&r[0].1));
    }
    assert_eq!(errs[0], [MESSAGE]);
    assert_eq!(errs[0], errs[1]);
}

/// Whether builds here run as build users (root, and the `nixbld` group exists), which is when
/// the sandbox's root is not the builder's.
fn build_users() -> bool {
    // SAFETY: a plain getter.
    let root = unsafe { libc::geteuid() } == 0;
    root && std::fs::read_to_string("/etc/group")
        .is_ok_and(|g| g.lines().any(|l| l.starts_with("nixbld:")))
}

/// In the sandbox, writing to `HOME` fails as in CppNix ("Permission denied" with build users,
/// whose sandbox root belongs to root); the sandbox's skeleton is not the builder's either.
#[test]
fn sandboxed_builder_cannot_write_home() {
    need_busybox();
    let tmp = tempfile::tempdir().expect("tmp");
    let file = tmp.path().join("sandbox.nix");
    std::fs::write(&file, format!("{LET_BUSYBOX}{SANDBOX_EXPR}")).expect("writing the expression");
    let users = build_users();
    let mut codes = Vec::new();
    for (tag, tool) in [("cppnix", cppnix as fn(&str) -> Command), ("firn", firn)] {
        let store = store_dir(tmp.path(), tag);
        let out = sandboxed(&store, tool("nix-build"), &file, "writeHome")
            .output()
            .expect("running nix-build");
        let err = String::from_utf8_lossy(&out.stderr);
        if users {
            assert_eq!(out.status.code(), Some(100), "{tag}:\n{err}");
            assert!(
                err.contains("sh: can't create /homeless-shelter: Permission denied"),
                "{tag}:\n{err}"
            );
            assert!(
                err.contains("-write-home.drv' failed with exit code 1"),
                "{tag}:\n{err}"
            );
            ok(&mut sandboxed(&store, tool("nix-build"), &file, "skeleton"));
        }
        codes.push(out.status.code());
    }
    assert_eq!(codes[0], codes[1]);
}
