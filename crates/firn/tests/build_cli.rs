//! Around a build, firn's `nix-build`, `nix-store --realise` and `nix build` do what CppNix
//! 2.8's do, each on its own chroot store: `secret-key-files` signs the outputs built (and,
//! with `ca-derivations`, their realisations) and nothing else; the builders' output goes to
//! stderr as it comes (legacy commands unless `-Q`, `nix build` with `-L`) and a failure ends
//! with the last log lines only when they were not shown; `--quiet`; and the `--dry-run`
//! messages for one and several derivations and for paths to fetch. The builders are the
//! host's static busybox.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;

/// (Written after [`LET_BUSYBOX`] and [`MK_BUSYBOX`].)
const EXPR: &str = r#"in rec {
  plain = mk "plain" "echo hello > $out" { };
  multi = mk "multi" "mkdir $out $dev; echo $out > $dev/out" { outputs = [ "out" "dev" ]; };
  fod = mk "fod" "echo -n foo > $out" {
    outputHash = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"; outputHashAlgo = "sha256";
  };
  ca = mk "ca" "mkdir $out; echo $out > $out/self" { __contentAddressed = true; };
  onCa = mk "on-ca" "cat ${ca}/self > $out" { };
  a = mk "a" "echo a > $out" { };
  b = mk "b" "echo ${a} > $out" { };
  c = mk "c" "cat ${b} > $out; echo ${plain} >> $out" { };
  talk = mk "talk" "echo out-1; echo err-1 >&2; sleep 3; echo out-2; echo err-2 >&2; touch $out" { };
  fail = mk "fail" "for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14; do echo line $i; done; exit 3" { };
}
"#;

fn write_expr(e: &Env) -> PathBuf {
    e.write("default.nix", &format!("{LET_BUSYBOX}{MK_BUSYBOX}{EXPR}"))
}

/// `tool` of firn or of CppNix on `store`, with the narinfo cache in the test's directory.
fn tool(firn_side: bool, name: &str, store: &str, e: &Env) -> Command {
    let mut c = if firn_side { firn(name) } else { cppnix(name) };
    c.args(["--store", store])
        .env("XDG_CACHE_HOME", e.dir.join("cache-home"));
    if firn_side && name != "nix-store" {
        c.args(["--option", "sandbox", "true"]);
    }
    c
}

/// Exit code and stderr.
fn run(c: &mut Command) -> (Option<i32>, String) {
    let out = c.output().expect("running a command");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `(path, sigs)` of every valid path, and `(id, path, signatures)` of every realisation.
fn signatures(store: &str) -> (Vec<String>, Vec<String>) {
    let db = rusqlite::Connection::open(Path::new(store).join("nix/var/nix/db/db.sqlite"))
        .expect("opening the database");
    let query = |q: &str| sorted_rows(&db, q);
    let has_realisations: bool = db
        .query_row(
            "select count(*) > 0 from sqlite_master where name = 'Realisations'",
            [],
            |r| r.get(0),
        )
        .expect("looking for the Realisations table");
    (
        query("select path||' '||ifnull(sigs,'-') from ValidPaths"),
        if !has_realisations {
            Vec::new()
        } else {
            query(
                "select r.drvPath||'!'||r.outputName||' '||v.path||' '||ifnull(r.signatures,'-') \
             from Realisations r join ValidPaths v on v.id = r.outputPath",
            )
        },
    )
}

/// Built outputs and realisations carry the same signatures by each key of
/// `secret-key-files` (from `--option` or `nix.conf`) as CppNix gives them; sources,
/// `.drv` files and `nix-store --add` get none.
#[test]
fn secret_key_files_sign_built_outputs() {
    need_busybox();
    let e = env();
    let file = write_expr(&e);
    let keys: Vec<String> = ["k1", "k2"]
        .iter()
        .map(|k| {
            let sec = e.dir.join(format!("{k}.sec"));
            ok(cppnix("nix-store")
                .arg("--generate-binary-cache-key")
                .arg(k)
                .arg(&sec)
                .arg(e.dir.join(format!("{k}.pub"))));
            sec.to_string_lossy().into_owned()
        })
        .collect();
    let added = e.write("added.txt", "added\n");
    let mut rows = Vec::new();
    for firn_side in [true, false] {
        let s = e.store(if firn_side { "firn" } else { "cppnix" });
        ok(tool(firn_side, "nix-build", &s, &e)
            .args(["--extra-experimental-features", "ca-derivations"])
            .args(["--option", "secret-key-files", &keys.join(" ")])
            .args([
                "--no-out-link",
                "-A",
                "plain",
                "-A",
                "multi.dev",
                "-A",
                "fod",
            ])
            .args(["-A", "onCa"])
            .arg(&file));
        ok(tool(firn_side, "nix-store", &s, &e)
            .args(["--option", "secret-key-files", &keys[0]])
            .arg("--add")
            .arg(&added));
        rows.push(signatures(&s));
    }
    assert_eq!(rows[0], rows[1], "signatures: firn, then CppNix");
    let (paths, realisations) = &rows[0];
    let signed = |l: &&String| l.contains(" k1:") && l.contains(" k2:");
    // plain, multi (2), fod, ca, on-ca, and at least the realisations of ca and on-ca.
    assert_eq!(paths.iter().filter(signed).count(), 6, "{paths:#?}");
    assert!(
        realisations.iter().filter(signed).count() >= 2,
        "{realisations:#?}"
    );

    // The setting from nix.conf.
    let conf = e.dir.join("conf");
    std::fs::create_dir_all(&conf).expect("mkdir");
    std::fs::write(
        conf.join("nix.conf"),
        format!("secret-key-files = {}\n", keys[1]),
    )
    .expect("writing nix.conf");
    let mut rows = Vec::new();
    for firn_side in [true, false] {
        let s = e.store(if firn_side {
            "firn-conf"
        } else {
            "cppnix-conf"
        });
        ok(tool(firn_side, "nix-build", &s, &e)
            .env("NIX_CONF_DIR", &conf)
            .args(["--no-out-link", "-A", "plain"])
            .arg(&file));
        rows.push(signatures(&s).0);
    }
    assert_eq!(
        rows[0], rows[1],
        "signatures from nix.conf: firn, then CppNix"
    );
    assert_eq!(
        rows[0].iter().filter(|l| l.contains(" k2:")).count(),
        1,
        "{:#?}",
        rows[0]
    );
}

/// The legacy commands show the builders' output on stderr as it comes, unprefixed, and a
/// failure then ends without its last log lines; `-Q` hides the output and brings the lines
/// back; `--quiet` leaves out what will be built and `building '…'`. `nix build` shows the
/// output with `-L` only (prefixed with the derivation's name).
#[test]
fn builder_output_on_stderr_as_cppnix() {
    need_busybox();
    let e = env();
    let file = write_expr(&e);
    let sides = [(true, e.store("firn")), (false, e.store("cppnix"))];
    let drv = ok_str(
        cppnix("nix-instantiate")
            .args(["--store", &sides[1].1, "-A", "fail"])
            .arg(&file),
    );
    let drv = drv.trim();
    ok(firn("nix-instantiate")
        .args(["--store", &sides[0].1, "-A", "fail"])
        .arg(&file));
    let cases: &[(&str, &[&str])] = &[
        ("nix-build", &[]),
        ("nix-build", &["-Q"]),
        ("nix-build", &["--no-build-output"]),
        ("nix-build", &["--quiet"]),
        ("nix-build", &["--log-format", "bar"]),
        ("nix-build", &["--log-format", "bar-with-logs"]),
        ("nix-store", &["-r"]),
        ("nix-store", &["-r", "-Q"]),
        ("nix-store", &["-r", "--quiet"]),
        ("nix", &["build"]),
        ("nix", &["build", "-L"]),
        ("nix", &["build", "--quiet"]),
    ];
    for (name, args) in cases {
        let mut got = Vec::new();
        for (firn_side, s) in &sides {
            let mut c = tool(*firn_side, name, s, &e);
            c.args(*args);
            match *name {
                "nix-build" => c.args(["--no-out-link", "-A", "fail"]).arg(&file),
                "nix-store" => c.arg(drv),
                _ => c.args(["--no-link", "-f"]).arg(&file).arg("fail"),
            };
            got.push(run(&mut c));
        }
        assert_eq!(got[0], got[1], "{name} {args:?}: firn, then CppNix");
        let code = if *name == "nix" { 1 } else { 100 };
        assert_eq!(got[0].0, Some(code), "{name} {args:?}");
    }

    // The lines come while the builder runs, stdout and stderr alike.
    let mut child = tool(true, "nix-build", &sides[0].1, &e)
        .args(["--no-out-link", "-A", "talk"])
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting nix-build");
    let stderr = child.stderr.take().expect("stderr is piped");
    let mut lines = BufReader::new(stderr).lines();
    let first = lines
        .by_ref()
        .map(|l| l.expect("reading stderr"))
        .find(|l| l == "out-1" || l == "err-1");
    assert!(first.is_some(), "no builder output");
    assert!(
        child.try_wait().expect("polling nix-build").is_none(),
        "the builder's first line came only after the build"
    );
    let rest: Vec<String> = lines.map(|l| l.expect("reading stderr")).collect();
    assert!(child.wait().expect("waiting").success(), "{rest:?}");
    for l in ["out-2", "err-2"] {
        assert!(rest.iter().any(|r| r == l), "{l} missing: {rest:?}");
    }
}

/// `--dry-run` lists what will be built (one derivation, several in CppNix's order) and what
/// will be fetched (one path, several, with the sizes) in CppNix's words.
#[test]
fn dry_run_messages_as_cppnix() {
    need_busybox();
    let e = env();
    let file = write_expr(&e);
    // A cache holding a, b and plain (and busybox), made by CppNix.
    let src = e.store("src");
    let cache = format!("file://{}", e.dir.join("cache").display());
    let built = ok_str(
        cppnix("nix-build")
            .args(["--store", &src, "--no-out-link", "-A", "b", "-A", "plain"])
            .arg(&file),
    );
    let mut copy = cppnix("nix");
    copy.args(["copy", "--store", &src, "--to", &cache]);
    for p in built.lines() {
        copy.arg(p);
    }
    ok(&mut copy);
    let subst = [
        "--option",
        "substituters",
        &cache,
        "--option",
        "require-sigs",
        "false",
    ];
    let cases: &[(&str, &[&str])] = &[
        ("nix-build", &["-A", "a"]),
        ("nix-build", &["-A", "c"]),
        (
            "nix-build",
            &["-A", "a", "-A", "b", "-A", "c", "-A", "talk"],
        ),
        ("nix-build", &["--quiet", "-A", "c"]),
        ("nix", &["a"]),
        ("nix", &["c", "talk"]),
        ("nix", &["--quiet", "c"]),
    ];
    for with_cache in [false, true] {
        for (name, args) in cases {
            let mut got = Vec::new();
            for firn_side in [true, false] {
                let s = e.store(if firn_side { "firn" } else { "cppnix" });
                let mut c = tool(firn_side, name, &s, &e);
                if with_cache {
                    c.args(subst);
                }
                if *name == "nix" {
                    c.args(["build", "--dry-run", "--no-link", "-f"]).arg(&file);
                } else {
                    c.args(["--dry-run", "--no-out-link"]).arg(&file);
                }
                c.args(*args);
                got.push(run(&mut c));
            }
            assert_eq!(
                got[0], got[1],
                "{name} {args:?} (cache: {with_cache}): firn, then CppNix"
            );
            assert_eq!(got[0].0, Some(0), "{name} {args:?}: {}", got[0].1);
        }
    }
}

/// What cannot be substituted or built, as CppNix 2.8's legacy commands: `nix-store -r` lists
/// it under "don't know how to build these paths" (unless `--quiet`; also with `--dry-run`,
/// which then succeeds), builds the rest, and fails with exit code 1 naming every failed
/// request in one `build of ... failed` (a missing derivation alone: "cannot build missing
/// derivation"). With `-k`, two failed builds end the same way. `-L`, `--print-build-logs`
/// and `--no-print-build-logs` are unknown flags of `nix-build` and `nix-store` (flags of
/// `nix` only, in CppNix 2.8).
#[test]
fn missing_paths_and_unknown_flags_equal_cppnix() {
    need_busybox();
    let e = env();
    let file = write_expr(&e);
    let two = e.write(
        "two.nix",
        &format!(
            "{LET_BUSYBOX}{}",
            r#"
  mk = name: script: derivation {
    inherit name;
    system = "x86_64-linux";
    builder = "${bb}/busybox";
    args = [ "sh" "-c" script ];
  };
in [ (mk "f1" "exit 1") (mk "f2" "exit 2") ]
"#
        ),
    );
    let sides = [(true, e.store("firn")), (false, e.store("cppnix"))];
    let drvs: Vec<String> = sides
        .iter()
        .map(|(side, s)| {
            ok_str(
                tool(*side, "nix-instantiate", s, &e)
                    .args(["-A", "plain"])
                    .arg(&file),
            )
            .trim()
            .to_string()
        })
        .collect();
    assert_eq!(drvs[0], drvs[1]);
    let foo = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-foo";
    let bar = "/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-bar";
    let missing_drv = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-foo.drv";
    let cases: Vec<Vec<&str>> = vec![
        vec![foo],
        vec![foo, bar],
        vec![foo, "--dry-run"],
        vec![foo, "--quiet"],
        vec![foo, "-k"],
        vec![foo, &drvs[0]],
        vec![missing_drv],
        vec![missing_drv, bar],
        vec!["-L", foo],
        vec![foo, "--print-build-logs"],
        vec!["--no-print-build-logs", foo],
    ];
    // Usage errors name the program as it was called.
    let bin_dir = format!("{}/", firn_bin_dir().display());
    let plain = |(code, err): (Option<i32>, String)| {
        (code, err.replace(&bin_dir, "").replace("/usr/bin/", ""))
    };
    for args in &cases {
        let got: Vec<(Option<i32>, String)> = sides
            .iter()
            .map(|(side, s)| plain(run(tool(*side, "nix-store", s, &e).arg("-r").args(args))))
            .collect();
        assert_eq!(got[0], got[1], "nix-store -r {args:?}");
        assert_eq!(
            got[0].0,
            Some(if args.contains(&"--dry-run") { 0 } else { 1 })
        );
    }
    for args in [
        vec!["-L", "-A", "plain"],
        vec!["-KL", "-A", "plain"],
        vec!["--print-build-logs", "-A", "plain"],
        vec!["-k", "--no-out-link"],
    ] {
        let got: Vec<(Option<i32>, String)> = sides
            .iter()
            .map(|(side, s)| {
                let f = if args.contains(&"-k") { &two } else { &file };
                plain(run(tool(*side, "nix-build", s, &e).args(&args).arg(f)))
            })
            .collect();
        assert_eq!(got[0], got[1], "nix-build {args:?}");
    }
}

/// `nix-build PATH.drv` builds the derivation as it is (the chroot store's logical path is
/// read through the store), with `!OUTPUT` choosing the output; what is printed, the exit
/// codes and the errors for an output the derivation lacks or for two outputs are CppNix's.
#[test]
fn nix_build_of_a_drv_path_equals_cppnix() {
    need_busybox();
    let e = env();
    let file = write_expr(&e);
    let sides = [(true, e.store("firn")), (false, e.store("cppnix"))];
    let mut outcomes: Vec<Vec<(Option<i32>, String, String)>> = Vec::new();
    for (side, s) in &sides {
        let drv = ok_str(
            tool(*side, "nix-instantiate", s, &e)
                .args(["-A", "multi"])
                .arg(&file),
        )
        .trim()
        .to_string();
        let mut got = Vec::new();
        for arg in [
            drv.clone(),
            format!("{drv}!dev"),
            format!("{drv}!nope"),
            format!("{drv}!out,dev"),
        ] {
            let out = tool(*side, "nix-build", s, &e)
                .args(["--no-out-link", &arg])
                .output()
                .expect("running nix-build");
            let stderr = String::from_utf8_lossy(&out.stderr);
            let last_error = stderr
                .lines()
                .rfind(|l| l.starts_with("error:"))
                .unwrap_or("")
                .to_string();
            got.push((
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                last_error,
            ));
        }
        outcomes.push(got);
    }
    assert_eq!(outcomes[0], outcomes[1]);
    let [built, dev, nope, two] = &outcomes[0][..] else {
        panic!("four cases")
    };
    assert_eq!(built.0, Some(0), "{built:?}");
    assert!(built.1.trim().ends_with("-multi"), "{built:?}");
    assert_eq!(dev.0, Some(0), "{dev:?}");
    assert!(dev.1.trim().ends_with("-multi-dev"), "{dev:?}");
    assert!(nope.2.contains("does not have output 'nope'"), "{nope:?}");
    assert!(two.2.contains("more than one derivation output"), "{two:?}");
}

/// `nix build --rebuild` (the new CLI's name for `--check`): built again and compared, with
/// CppNix's messages and exit code, for a deterministic and a changing derivation.
#[test]
fn nix_build_rebuild_as_cppnix() {
    need_busybox();
    let e = env();
    let file = e.write(
        "r.nix",
        &format!(
            "{LET_BUSYBOX}{MK_BUSYBOX}in {{\n  same = mk \"same\" \"echo same > $out\" {{ }};\n  changes = mk \"changes\" \"cat /proc/sys/kernel/random/uuid > $out\" {{ }};\n}}\n"
        ),
    );
    for attr in ["same", "changes"] {
        let mut got = Vec::new();
        for firn_side in [true, false] {
            let s = e.store(&format!("{attr}-{firn_side}"));
            let build = |extra: &[&str]| {
                let mut c = tool(firn_side, "nix", &s, &e);
                c.args(["build", "--no-link", "-f"]).arg(&file).arg(attr);
                c.args(extra);
                run(&mut c)
            };
            assert_eq!(build(&[]).0, Some(0), "{attr}, firn: {firn_side}");
            let (code, stderr) = build(&["--rebuild"]);
            let checking = stderr
                .lines()
                .filter(|l| l.starts_with("checking outputs of '"))
                .count();
            got.push((code, checking));
        }
        assert_eq!(got[0], got[1], "{attr}: firn, then CppNix");
    }
}
