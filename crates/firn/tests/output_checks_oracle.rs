//! What CppNix 2.8 refuses or changes about a build's outputs, run by firn and by CppNix on
//! the same derivations (each in a chroot store of its own, sandboxed): outputs referring to
//! each other in a cycle, `outputChecks.<output>.maxSize`/`maxClosureSize` (structured
//! attributes only), outputs writable by others, the system-call filter (no setuid or setgid
//! modes), `NIX_BUILD_CORES` for `cores = 0`, and `nix-build`'s obsolete link flags. The
//! exit status, the message and what became valid must be the same.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn expr(body: &str) -> String {
    format!("{LET_BUSYBOX}{MK_BUSYBOX}in {body}")
}

/// `$out` of a structured-attributes build, for busybox's `sh` (no associative arrays).
const STRUCTURED_OUT: &str = r#"out=$(sed -n \"s/^declare -A outputs=(\\['out'\\]='\\([^']*\\)'.*/\\1/p\" /build/.attrs.sh); "#;

const EXPR: &str = r#"rec {
  cycle = mk "cycle" "echo $dev > $out; echo $out > $dev" { outputs = [ "out" "dev" ]; };
  cycle3 = mk "cycle3" "echo $b > $a; echo $c > $b; echo $a > $c" { outputs = [ "a" "b" "c" ]; };
  noCycle = mk "no-cycle" "echo $dev > $out; echo $dev > $dev" { outputs = [ "out" "dev" ]; };
  big = mk "big" "${so} mkdir $out; echo 0123456789 > $out/f" {
    __structuredAttrs = true; outputChecks.out.maxSize = 100;
  };
  bigOk = mk "big-ok" "${so} mkdir $out; echo 0123456789 > $out/f" {
    __structuredAttrs = true; outputChecks.out.maxSize = 296;
  };
  bigClosure = mk "big-closure" "${so} echo ${bb} > $out" {
    __structuredAttrs = true; outputChecks.out.maxClosureSize = 10000;
  };
  bigClosureOk = mk "big-closure-ok" "${so} echo ${bb} > $out" {
    __structuredAttrs = true; outputChecks.out = { maxClosureSize = 100000000; maxSize = 1000; };
  };
  plainMax = mk "plain-max" "mkdir $out; echo 0123456789 > $out/f" { maxSize = 1; maxClosureSize = 1; };
  suid = mk "suid" "touch $out; chmod 4755 $out; echo rc=$?" { };
  sgid = mk "sgid" "mkdir $out; chmod 2755 $out; echo rc=$?; touch $out/f; chmod 6644 $out/f; true" { };
  groupWritable = mk "gw" "touch $out; chmod 664 $out" { };
  worldWritable = mk "ww" "mkdir $out; chmod 757 $out" { };
  writableInside = mk "writable-inside" "mkdir $out; touch $out/f; chmod 666 $out/f" { };
  link = mk "link" "ln -s /nonexistent $out" { };
  cores = mk "cores" "echo $NIX_BUILD_CORES > $out" { };
}"#;

fn oracle() -> BuildOracle {
    need_busybox();
    let e = env();
    let body = EXPR.replace("${so}", STRUCTURED_OUT);
    let file = e.write("default.nix", &expr(&body));
    BuildOracle { e, file }
}

impl BuildOracle {
    /// The output paths of `attr`'s derivation that are valid in the store `tag`, with
    /// their NAR hashes.
    fn valid_outputs(&self, firn_side: bool, tag: &str, attr: &str) -> Vec<(String, String)> {
        let store = self.store(firn_side, tag);
        let drv = ok_str(
            cppnix("nix-instantiate")
                .args(["--store", &store, "-A", attr])
                .arg(&self.file),
        );
        // (`drv!a` when the first output is not `out`.)
        let drv = drv.trim().split('!').next().unwrap_or_default().to_string();
        let outs = ok_str(cppnix("nix-store").args(["--store", &store, "-q", "--outputs", &drv]));
        outs.lines()
            .filter_map(|p| {
                let out = cppnix("nix-store")
                    .args(["--store", &store, "-q", "--hash", p])
                    .output()
                    .expect("running nix-store");
                out.status.success().then(|| {
                    (
                        p.to_string(),
                        String::from_utf8_lossy(&out.stdout).trim().to_string(),
                    )
                })
            })
            .collect()
    }

    /// Both stores hold the same valid outputs of `attr`, with the same NAR hashes.
    fn assert_same_outputs(&self, tag: &str, attr: &str) {
        assert_eq!(
            self.valid_outputs(true, tag, attr),
            self.valid_outputs(false, tag, attr),
            "{attr} {tag}"
        );
    }

    /// Neither store holds a valid output of `attr`.
    fn assert_no_outputs(&self, tag: &str, attr: &str) {
        assert_eq!(
            self.valid_outputs(false, tag, attr),
            vec![],
            "{attr} (CppNix)"
        );
        assert_eq!(self.valid_outputs(true, tag, attr), vec![], "{attr} (firn)");
    }
}

/// Outputs that refer to each other cannot be registered: exit 1, CppNix's message naming
/// the same two outputs, nothing valid.
#[test]
fn output_cycles_refused_as_cppnix() {
    let o = oracle();
    for (attr, msg) in [
        (
            "cycle",
            "in the references of output 'dev' from output 'out'",
        ),
        ("cycle3", "in the references of output 'a' from output 'c'"),
    ] {
        let r = o.both("s", attr, &[]);
        assert_both_failed(&r, 1, msg, attr);
        assert!(
            r.0.error.contains("error: cycle detected in build of '"),
            "{}",
            r.0.error
        );
        o.assert_no_outputs("s", attr);
    }
    // One output referring to the other (and to itself) is fine.
    let (c, f) = o.both("s", "noCycle", &[]);
    assert_eq!(
        (c.code, f.code),
        (Some(0), Some(0)),
        "{}\n{}",
        c.stderr,
        f.stderr
    );
    o.assert_same_outputs("s", "noCycle");
}

/// `outputChecks.out.maxSize` and `.maxClosureSize` with structured attributes: exit 1 and
/// CppNix's message (the NAR size, the closure's sum); the attributes alone mean nothing.
#[test]
fn output_size_limits_as_cppnix() {
    let o = oracle();
    for (attr, code, msg) in [
        ("big", 1, "is too large at 296 bytes; limit is 100 bytes"),
        ("bigOk", 0, ""),
        ("bigClosure", 1, "error: closure of path '/nix/store/"),
        ("bigClosureOk", 0, ""),
        ("plainMax", 0, ""),
    ] {
        let (c, f) = o.both("s", attr, &[]);
        assert_eq!(c.code, Some(code), "{attr} (CppNix): {}", c.stderr);
        assert_eq!(f.code, Some(code), "{attr} (firn): {}", f.stderr);
        if code == 0 {
            assert_eq!(f.stdout, c.stdout, "{attr}");
        } else {
            assert!(c.error.contains(msg), "{attr}: {}", c.error);
            assert_eq!(f.error, c.error, "{attr}");
        }
        o.assert_same_outputs("s", attr);
    }
}

/// The builder cannot make setuid or setgid files (the output keeps its mode, the same NAR
/// as CppNix's); with `filter-syscalls = false` it can (and the bits are stripped when the
/// output is made canonical). A top-level output writable by others is refused; inside the
/// output, and for a symlink, it is not.
#[test]
fn output_permissions_as_cppnix() {
    let o = oracle();
    for (tag, extra) in [
        ("filtered", &[][..]),
        ("unfiltered", &["--option", "filter-syscalls", "false"][..]),
    ] {
        for attr in ["suid", "sgid"] {
            let (c, f) = o.both(tag, attr, extra);
            assert_eq!(c.code, Some(0), "{attr} {tag} (CppNix): {}", c.stderr);
            assert_eq!(f.code, Some(0), "{attr} {tag} (firn): {}", f.stderr);
            let want = if tag == "filtered" { "rc=1" } else { "rc=0" };
            assert!(
                c.stderr.contains(want),
                "{attr} {tag} (CppNix): {}",
                c.stderr
            );
            assert!(f.stderr.contains(want), "{attr} {tag} (firn): {}", f.stderr);
            o.assert_same_outputs(tag, attr);
        }
    }
    let (c, f) = o.both("s", "suid", &[]);
    assert_eq!((c.code, f.code), (Some(0), Some(0)));
    let path = f.stdout.trim();
    let mode = |store: &str| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::symlink_metadata(Path::new(store).join(&path[1..]))
            .expect("the output")
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode(&o.store(true, "s")), 0o444);
    assert_eq!(mode(&o.store(false, "s")), 0o444);
    for attr in ["groupWritable", "worldWritable"] {
        let (c, f) = o.both("s", attr, &[]);
        assert_eq!(c.code, Some(1), "{attr} (CppNix): {}", c.stderr);
        assert_eq!(f.code, Some(1), "{attr} (firn): {}", f.stderr);
        for e in [&c.error, &f.error] {
            assert!(
                e.starts_with("error: suspicious ownership or permission on '")
                    && e.contains("for output 'out'; rejecting this build output"),
                "{attr}: {e}"
            );
        }
        o.assert_no_outputs("s", attr);
    }
    for attr in ["writableInside", "link"] {
        let (c, f) = o.both("s", attr, &[]);
        assert_eq!(
            (c.code, f.code),
            (Some(0), Some(0)),
            "{attr}: {}\n{}",
            c.stderr,
            f.stderr
        );
        o.assert_same_outputs("s", attr);
    }
}

/// `NIX_BUILD_CORES` is `cores` as configured, 0 included; unset, the number of cores.
#[test]
fn build_cores_as_cppnix() {
    let o = oracle();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    for (tag, extra, want) in [
        ("default", &[][..], cores.to_string()),
        ("flag0", &["--cores", "0"][..], "0".to_string()),
        ("option0", &["--option", "cores", "0"][..], "0".to_string()),
        ("flag3", &["--cores", "3"][..], "3".to_string()),
    ] {
        let (c, f) = o.both(tag, "cores", extra);
        assert_eq!(
            (c.code, f.code),
            (Some(0), Some(0)),
            "{tag}: {}\n{}",
            c.stderr,
            f.stderr
        );
        for (side, out) in [(false, &c), (true, &f)] {
            let store = o.store(side, tag);
            let got = std::fs::read_to_string(Path::new(&store).join(&out.stdout.trim()[1..]))
                .expect("reading the output");
            assert_eq!(got.trim(), want, "{tag} (firn: {side})");
        }
    }
}

/// `nix-build`'s obsolete `--drv-link NAME` (its argument taken and ignored), `--add-drv-link`
/// and `--indirect`: no link besides `result`, as CppNix 2.8.
#[test]
fn nix_build_obsolete_link_flags() {
    let o = oracle();
    for side in [false, true] {
        let dir = o.e.dir.join(if side { "cwd-firn" } else { "cwd-cppnix" });
        std::fs::create_dir_all(&dir).expect("mkdir");
        let mut c = if side {
            firn("nix-build")
        } else {
            cppnix("nix-build")
        };
        c.current_dir(&dir)
            .arg("--store")
            .arg(o.store(side, "links"))
            .args(["--drv-link", "drvlink", "--add-drv-link", "--indirect"])
            .args(["-A", "link", "-o", "res"])
            .arg(&o.file);
        let out = outcome(&mut c);
        assert_eq!(out.code, Some(0), "firn: {side}: {}", out.stderr);
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .expect("reading the directory")
            .map(|e| {
                e.expect("an entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        assert_eq!(names, vec!["res"], "firn: {side}");
    }
}

/// Without the sandbox the builder runs under the same filter (CppNix installs it for every
/// local build), unless `filter-syscalls = false`. Such builds need a store whose store
/// directory is where its files are.
#[test]
fn unsandboxed_builds_are_filtered_too() {
    need_busybox();
    let e = env();
    let file = e.write(
        "default.nix",
        r#"derivation {
  name = "suid";
  system = "x86_64-linux";
  builder = "/usr/bin/busybox";
  args = [ "sh" "-c" "touch $out; chmod 4755 $out; echo rc=$?" ];
}"#,
    );
    for (tag, filter) in [("filtered", "true"), ("unfiltered", "false")] {
        let mut hashes = Vec::new();
        for side in [false, true] {
            let dir = e.dir.join(format!("{tag}-{side}"));
            let setup = |c: &mut Command| {
                c.env("NIX_STORE_DIR", dir.join("store"))
                    .env("NIX_STATE_DIR", dir.join("state"))
                    .env("NIX_LOG_DIR", dir.join("log"))
                    .env("TMPDIR", &e.dir);
            };
            let mut c = if side {
                firn("nix-build")
            } else {
                cppnix("nix-build")
            };
            setup(&mut c);
            c.arg(&file)
                .arg("--no-out-link")
                .args(["--option", "sandbox", "false"])
                .args(["--option", "build-users-group", ""])
                .args(["--option", "filter-syscalls", filter]);
            let out = outcome(&mut c);
            assert_eq!(out.code, Some(0), "{tag} (firn: {side}): {}", out.stderr);
            let want = if filter == "true" { "rc=1" } else { "rc=0" };
            assert!(
                out.stderr.contains(want),
                "{tag} (firn: {side}): {}",
                out.stderr
            );
            let mut q = cppnix("nix-store");
            setup(&mut q);
            hashes.push(ok_str(q.args(["-q", "--hash", out.stdout.trim()])));
        }
        assert_eq!(hashes[0], hashes[1], "{tag}");
    }
}
