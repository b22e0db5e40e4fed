//! Build settings and flags that change how (or whether) a derivation is built, run by firn
//! and by CppNix 2.8 on the same derivations, each in a chroot store of its own (sandboxed):
//! `requiredSystemFeatures` against `system-features`, `max-silent-time`, `nix-store -r
//! --add-root` with the garbage collector, build logs (`nix-store -l`, `nix log`),
//! `nix-build --arg`/`--argstr`/`-E`/`-o`, `sandbox-paths`/`extra-sandbox-paths`,
//! `__noChroot` against `sandbox = true`/`relaxed`, `impureEnvVars` of a fixed-output
//! derivation, and `allowSubstitutes = false` with a binary cache that has the output. The
//! exit status, what was built, the outputs' contents and the gist of the message must be
//! the same.

mod common;

use std::path::{Path, PathBuf};
use std::time::Instant;

use common::*;

/// The variable `impureEnvVars` passes (a name no caller sets by accident).
const IMPURE_VAR: &str = "FIRN_TEST_IMPURE_VAR";

const EXPR: &str = r#"{
  feat = mk "feat" "echo hi > $out" { requiredSystemFeatures = [ "kvm-nonexistent" ]; };
  silent = mk "silent" "sleep 20; echo x > $out" { };
  ticking = mk "ticking" "for i in 1 2 3 4; do echo tick; sleep 0.5; done; echo x > $out" { };
  logged = mk "logged" "echo hello-from-builder; echo x > $out" { };
  args = { x, y }: mk "args-${y}" "echo ${toString x} ${y} > $out" { };
  sp = mk "sp" "cat /target/f > $out || echo missing > $out" { };
  nochroot = mk "nochroot" "cat @HOSTFILE@ > $out || echo missing > $out" { __noChroot = true; };
  impure = mk "impure" "echo $@VAR@ > $out" {
    impureEnvVars = [ "@VAR@" ];
    outputHashMode = "flat";
    outputHashAlgo = "sha256";
    outputHash = builtins.hashString "sha256" "bar\n";
  };
  nosub = mk "nosub" "echo built > $out" { allowSubstitutes = false; };
  sub = mk "sub" "echo built > $out" { };
}"#;

/// The derivations of [`EXPR`] built by both sides, and a host directory for the sandbox-path
/// cases.
struct Oracle {
    b: BuildOracle,
    /// A host directory holding `f` (contents `secret`).
    host_dir: PathBuf,
}

impl std::ops::Deref for Oracle {
    type Target = BuildOracle;
    fn deref(&self) -> &BuildOracle {
        &self.b
    }
}

fn oracle() -> Oracle {
    need_busybox();
    let e = env();
    let host_dir = e.dir.join("hostdir");
    std::fs::create_dir_all(&host_dir).expect("making the host directory");
    std::fs::write(host_dir.join("f"), "secret\n").expect("writing the host file");
    let body = EXPR
        .replace("@HOSTFILE@", &host_dir.join("f").to_string_lossy())
        .replace("@VAR@", IMPURE_VAR);
    let file = e.write(
        "default.nix",
        &format!("{LET_BUSYBOX}{MK_BUSYBOX}in {body}"),
    );
    Oracle {
        b: BuildOracle { e, file },
        host_dir,
    }
}

/// Where `path` (a `/nix/store/…` path) is on disk in the chroot store `store`.
fn real(store: &str, path: &str) -> PathBuf {
    Path::new(store).join(path.trim().trim_start_matches('/'))
}

/// The contents of output `path` in `store`.
fn contents(store: &str, path: &str) -> String {
    std::fs::read_to_string(real(store, path)).expect("reading an output")
}

/// Both sides built `tag`'s derivation (`(CppNix's, firn's)` outcome), to the same output
/// path, with contents `want`.
fn both_built(o: &Oracle, tag: &str, (c, f): &(Outcome, Outcome), want: &str) {
    assert_eq!(c.code, Some(0), "{tag} (CppNix): {}", c.stderr);
    assert_eq!(f.code, Some(0), "{tag} (firn): {}", f.stderr);
    assert_eq!(f.stdout, c.stdout, "{tag}");
    for (firn_side, r) in [(false, c), (true, f)] {
        let got = contents(&o.store(firn_side, tag), &r.stdout);
        assert_eq!(got, want, "{tag} ({})", side_name(firn_side));
    }
}

impl Oracle {
    /// The derivation of `attr`, instantiated into the store `tag` by that side.
    fn instantiate(&self, firn_side: bool, tag: &str, attr: &str) -> String {
        ok_str(
            tool_of(firn_side, "nix-instantiate")
                .arg("--store")
                .arg(self.store(firn_side, tag))
                .args(["-A", attr])
                .arg(&self.file),
        )
        .trim()
        .to_string()
    }
}

/// A derivation needing a system feature the machine lacks is refused (exit 1, CppNix's
/// message naming the features wanted and had, nothing built); `--option system-features`
/// naming it lets it build.
#[test]
fn required_system_features_as_cppnix() {
    let o = oracle();
    let r = o.both("s", "feat", &[]);
    assert_both_failed(
        &r,
        1,
        "a 'x86_64-linux' with features {kvm-nonexistent} is required to build '",
        "feat",
    );
    assert_eq!((r.0.stdout.as_str(), r.1.stdout.as_str()), ("", ""));

    let extra = ["--option", "system-features", "kvm-nonexistent"];
    both_built(&o, "s", &o.both("s", "feat", &extra), "hi\n");
}

/// `--max-silent-time 1` (and `--option max-silent-time 1`) kills a builder that would stay
/// silent for 20 s: exit 101, "timed out after 1 seconds of silence", nothing printed. A
/// builder that runs longer than a second but keeps writing is not killed.
#[test]
fn max_silent_time_as_cppnix() {
    let o = oracle();
    for (tag, extra) in [
        ("flag", &["--max-silent-time", "1"][..]),
        ("option", &["--option", "max-silent-time", "1"][..]),
    ] {
        for firn_side in [false, true] {
            let t = Instant::now();
            let r = o.build(firn_side, tag, "silent", extra);
            assert_eq!(
                r.code,
                Some(101),
                "{tag} ({}): {}",
                side_name(firn_side),
                r.stderr
            );
            // CppNix 2.8 names the goal (`….drv!out' from .drv file`), firn the
            // derivation: only the end of the message is compared.
            assert!(
                r.error.contains("timed out after 1 seconds of silence"),
                "{tag} ({}): {}",
                side_name(firn_side),
                r.error
            );
            assert!(
                t.elapsed().as_secs() < 15,
                "{tag} ({})",
                side_name(firn_side)
            );
            assert_eq!(r.stdout, "");
        }
    }
    let (c, f) = o.both("tick", "ticking", &["--max-silent-time", "1"]);
    assert_eq!(c.code, Some(0), "CppNix: {}", c.stderr);
    assert_eq!(f.code, Some(0), "firn: {}", f.stderr);
    assert_eq!(f.stdout, c.stdout);
}

/// `nix-store -r DRV --add-root LINK` makes LINK point at the output and registers it as an
/// indirect root: the garbage collector keeps the output while LINK exists and deletes it
/// once LINK is gone. `nix-store -l` and `nix log` print the builder's output, also from a
/// store the other implementation built in.
#[test]
fn add_root_and_build_logs_as_cppnix() {
    let o = oracle();
    let mut outs = Vec::new();
    for firn_side in [false, true] {
        let who = side_name(firn_side);
        let store = o.store(firn_side, "s");
        let drv = o.instantiate(firn_side, "s", "logged");
        let link = o.e.dir.join(format!("link-{who}"));
        let r = outcome(
            tool_of(firn_side, "nix-store")
                .args(["--store", &store, "-r", &drv, "--add-root"])
                .arg(&link),
        );
        assert_eq!(r.code, Some(0), "{who}: {}", r.stderr);
        assert_eq!(r.stdout.trim(), link.to_string_lossy(), "{who}");
        assert!(
            r.stderr.contains("hello-from-builder"),
            "{who}: {}",
            r.stderr
        );
        let out = std::fs::read_link(&link)
            .expect("the root link")
            .to_string_lossy()
            .into_owned();
        assert!(out.ends_with("-logged"), "{who}: {out}");
        assert_eq!(contents(&store, &out), "x\n", "{who}");
        // The indirect root: a link in gcroots/auto to LINK.
        let auto: Vec<PathBuf> =
            std::fs::read_dir(Path::new(&store).join("nix/var/nix/gcroots/auto"))
                .expect("gcroots/auto")
                .map(|e| std::fs::read_link(e.expect("an entry").path()).expect("a root link"))
                .collect();
        assert_eq!(auto, vec![link.clone()], "{who}");

        // The build log, by either implementation.
        for reader in [false, true] {
            let by = side_name(reader);
            for (tool, args) in [
                ("nix-store", ["-l", "--store"]),
                ("nix", ["log", "--store"]),
            ] {
                let l = outcome(tool_of(reader, tool).args(args).args([&store, &drv]));
                assert_eq!(l.code, Some(0), "{who}'s log by {by} {tool}: {}", l.stderr);
                assert_eq!(
                    l.stdout, "hello-from-builder\n",
                    "{who}'s log by {by} {tool}"
                );
            }
        }

        let gc = outcome(tool_of(firn_side, "nix-store").args(["--store", &store, "--gc"]));
        assert_eq!(gc.code, Some(0), "{who}: {}", gc.stderr);
        assert!(
            is_valid(&store, &out),
            "{who}: the rooted output was collected"
        );
        std::fs::remove_file(&link).expect("removing the root link");
        let gc = outcome(tool_of(firn_side, "nix-store").args(["--store", &store, "--gc"]));
        assert_eq!(gc.code, Some(0), "{who}: {}", gc.stderr);
        assert!(
            !is_valid(&store, &out),
            "{who}: the unrooted output was kept"
        );
        outs.push(out);
    }
    assert_eq!(outs[0], outs[1]);
}

/// `nix-build --arg x EXPR --argstr y STR` calls the function `-E` gives (and the function
/// `-A` selects) with them; `-o NAME` makes the result link NAME (a root). The same output
/// paths, contents and links.
#[test]
fn nix_build_args_and_out_link_as_cppnix() {
    let o = oracle();
    let expr = format!(
        "{{ x, y }}: (import {}).args {{ inherit x y; }}",
        o.file.display()
    );
    let mut seen = Vec::new();
    for firn_side in [false, true] {
        let who = side_name(firn_side);
        let store = o.store(firn_side, "s");
        let work = o.e.dir.join(format!("work-{who}"));
        std::fs::create_dir_all(&work).expect("making a work directory");
        let r = outcome(
            tool_of(firn_side, "nix-build")
                .current_dir(&work)
                .args([
                    "--store", &store, "--arg", "x", "1 + 2", "--argstr", "y", "str",
                ])
                .args(["-E", &expr, "-o", "mylink"]),
        );
        assert_eq!(r.code, Some(0), "{who}: {}", r.stderr);
        let out = r.stdout.trim().to_string();
        assert!(out.ends_with("-args-str"), "{who}: {out}");
        assert_eq!(contents(&store, &out), "3 str\n", "{who}");
        let target = std::fs::read_link(work.join("mylink")).expect("the result link");
        assert_eq!(target, Path::new(&out), "{who}");
        let auto: Vec<PathBuf> =
            std::fs::read_dir(Path::new(&store).join("nix/var/nix/gcroots/auto"))
                .expect("gcroots/auto")
                .map(|e| std::fs::read_link(e.expect("an entry").path()).expect("a root link"))
                .collect();
        assert_eq!(auto, vec![work.join("mylink")], "{who}");

        // A function selected by -A from a file, called with the same arguments.
        let r = outcome(
            tool_of(firn_side, "nix-build")
                .current_dir(&work)
                .args([
                    "--store", &store, "--arg", "x", "[ 1 2 ]", "--argstr", "y", "two",
                ])
                .args(["-A", "args", "-o", "other"])
                .arg(&o.file),
        );
        assert_eq!(r.code, Some(0), "{who}: {}", r.stderr);
        let out2 = r.stdout.trim().to_string();
        assert_eq!(contents(&store, &out2), "1 2 two\n", "{who}");
        let target = std::fs::read_link(work.join("other")).expect("the result link");
        assert_eq!(target, Path::new(&out2), "{who}");
        seen.push((out, out2));
    }
    assert_eq!(seen[0], seen[1]);
}

/// `extra-sandbox-paths` (and `sandbox-paths`) `/target=HOSTDIR` makes the host directory
/// visible to the builder at `/target`; without it, it is not there.
#[test]
fn sandbox_paths_as_cppnix() {
    let o = oracle();
    let mapping = format!("/target={}", o.host_dir.display());
    for (tag, extra, want) in [
        (
            "extra",
            vec!["--option", "extra-sandbox-paths", mapping.as_str()],
            "secret\n",
        ),
        (
            "plain",
            vec!["--option", "sandbox-paths", mapping.as_str()],
            "secret\n",
        ),
        ("none", vec![], "missing\n"),
    ] {
        both_built(&o, tag, &o.both(tag, "sp", &extra), want);
    }
}

/// `__noChroot = true` is refused with `sandbox = true` (exit 1, CppNix's message) and
/// allowed with `sandbox = relaxed`, where a chroot store still builds it in the sandbox (the
/// host file is not seen), as CppNix 2.8 does.
#[test]
fn no_chroot_as_cppnix() {
    let o = oracle();
    assert_both_failed(
        &o.both("s", "nochroot", &[]),
        1,
        "has '__noChroot' set, but that's not allowed when 'sandbox' is 'true'",
        "nochroot",
    );

    let extra = ["--option", "sandbox", "relaxed"];
    both_built(&o, "s", &o.both("s", "nochroot", &extra), "missing\n");
}

/// `impureEnvVars` of a fixed-output derivation passes the variable from the caller's
/// environment: with it the hash matches; without it the build fails with a hash mismatch
/// (exit 102).
#[test]
fn impure_env_vars_as_cppnix() {
    let o = oracle();
    let mut outs = Vec::new();
    for firn_side in [false, true] {
        let who = side_name(firn_side);
        let r = outcome(
            o.build_cmd(firn_side, "with", "impure", &[])
                .env(IMPURE_VAR, "bar"),
        );
        assert_eq!(r.code, Some(0), "{who}: {}", r.stderr);
        assert_eq!(contents(&o.store(firn_side, "with"), &r.stdout), "bar\n");
        outs.push(r.stdout);

        let r = outcome(
            o.build_cmd(firn_side, "without", "impure", &[])
                .env_remove(IMPURE_VAR),
        );
        assert_eq!(r.code, Some(102), "{who}: {}", r.stderr);
        assert!(
            r.error
                .contains("error: hash mismatch in fixed-output derivation '"),
            "{who}: {}",
            r.error
        );
        assert_eq!(r.stdout, "", "{who}");
    }
    assert_eq!(outs[0], outs[1]);
}

/// With a binary cache holding the outputs, a derivation with `allowSubstitutes = false` is
/// built locally (by `nix-build` and by `nix-store -r DRV`) while one without it is
/// fetched; CppNix 2.8 has no `always-allow-substitutes` to override that.
#[test]
fn allow_substitutes_false_as_cppnix() {
    let o = oracle();
    // The cache, filled by CppNix from a store of its own.
    let src = o.e.store("src");
    let cache = format!("file://{}", o.e.dir.join("cache").display());
    for attr in ["nosub", "sub"] {
        let out = ok_str(
            cppnix("nix-build")
                .args(["--store", &src, "--no-out-link", "-A", attr])
                .arg(&o.file),
        );
        ok(cppnix("nix").args(["copy", "--store", &src, "--to", &cache, out.trim()]));
    }
    let subst = [
        "--option",
        "substituters",
        cache.as_str(),
        "--option",
        "require-sigs",
        "false",
    ];
    for firn_side in [false, true] {
        let who = side_name(firn_side);
        for (attr, builds) in [("nosub", true), ("sub", false)] {
            let tag = format!("b-{attr}");
            let r = o.build(firn_side, &tag, attr, &subst);
            assert_eq!(r.code, Some(0), "{attr} ({who}): {}", r.stderr);
            assert_eq!(
                r.stderr.contains("building '"),
                builds,
                "{attr} ({who}): {}",
                r.stderr
            );
            assert_eq!(
                r.stderr.contains("copying path '"),
                !builds,
                "{attr} ({who}): {}",
                r.stderr
            );
            assert_eq!(contents(&o.store(firn_side, &tag), &r.stdout), "built\n");
        }
        // nix-store -r of the derivation, in a store holding only the derivation.
        let tag = "r-nosub";
        let drv = o.instantiate(firn_side, tag, "nosub");
        let r = outcome(
            tool_of(firn_side, "nix-store")
                .args(["--store", &o.store(firn_side, tag), "-r", &drv])
                .args(subst),
        );
        assert_eq!(r.code, Some(0), "nix-store -r ({who}): {}", r.stderr);
        assert!(r.stderr.contains("building '"), "{who}: {}", r.stderr);
        assert!(!r.stderr.contains("copying path '"), "{who}: {}", r.stderr);
    }
}
