//! Content-addressed derivations (`ca-derivations`): firn and CppNix 2.8, each on its own chroot
//! store, instantiate the same `.drv` files and build the same graph (floating outputs with
//! self-references, several outputs referring to each other, flat hashing, input-addressed
//! and fixed-output derivations on top of floating ones, floating ones on top of floating and
//! input-addressed ones) to the same final paths, bytes, database rows (`ValidPaths`, `Refs`,
//! `DerivationOutputs`, `Realisations`, `RealisationsRefs`) and resolved derivations. Each
//! reads the other's realisations. Without the feature both refuse, and a failed build
//! registers nothing. The builders are the host's static busybox.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

const FEATURE: [&str; 2] = ["--extra-experimental-features", "ca-derivations"];

const PRELUDE: &str = r#"
  bb = builtins.path {
    path = /usr/bin;
    name = "busybox";
    filter = p: t: baseNameOf p == "busybox";
  };
  mk = name: script: attrs: derivation ({
    inherit name;
    system = "x86_64-linux";
    builder = "${bb}/busybox";
    args = [ "sh" "-c" script ];
  } // attrs);
  ca = attrs: attrs // { __contentAddressed = true; };
"#;

const GRAPH: &str = r#"
rec {
  plain = mk "plain" "echo hello > $out" { };
  fod = mk "fod" "echo -n foo > $out" {
    outputHash = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"; outputHashAlgo = "sha256";
  };
  caA = mk "ca-a" "mkdir $out; echo hello > $out/f; echo $out > $out/self; ln -s $out/f $out/link" (ca { });
  caMulti = mk "ca-multi" "mkdir $out $dev; echo lib > $out/lib; echo $out > $out/self; echo $out > $dev/points-to-out" (ca { outputs = [ "out" "dev" ]; });
  caFlat = mk "ca-flat" "echo flat > $out" (ca { outputHashMode = "flat"; outputHashAlgo = "sha1"; });
  cross = mk "ca-cross" "mkdir $out $lib $doc; echo $lib > $out/uses-lib; echo $doc > $lib/uses-doc; echo $out $lib > $out/both; echo doc > $doc/d" (ca { outputs = [ "out" "lib" "doc" ]; });
  iaOnCa = mk "ia-on-ca" "cat ${caA}/f > $out; echo ${caA} >> $out; echo ${caMulti.dev} >> $out" { };
  caOnCa = mk "ca-on-ca" "mkdir $out; cat ${caA}/f > $out/g; echo ${caA} > $out/ref; cat ${caMulti.dev}/points-to-out >> $out/ref" (ca { });
  iaOnIaOnCa = mk "ia-on-ia" "cat ${iaOnCa} > $out" { };
  caOnPlain = mk "ca-on-plain" "mkdir $out; cat ${plain} ${fod} > $out/x; echo ${plain} > $out/ref" (ca { });
  fodOnCa = mk "fod-on-ca" "echo -n foo > $out; true ${cross.lib}" {
    outputHash = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"; outputHashAlgo = "sha256";
  };
  top = mk "top" "echo ${cross} ${cross.doc} ${caOnPlain} ${fodOnCa} ${caFlat} > $out" { };
  same1 = mk "same" "echo same > $out" (ca { extra = "1"; });
  same2 = mk "same" "echo same > $out" (ca { extra = "2"; });
}
"#;

const ATTRS: &[&str] = &[
    "plain",
    "fod",
    "caA",
    "caMulti",
    "caMulti.dev",
    "caFlat",
    "cross",
    "cross.lib",
    "cross.doc",
    "iaOnCa",
    "caOnCa",
    "iaOnIaOnCa",
    "caOnPlain",
    "fodOnCa",
    "top",
    "same1",
    "same2",
];

/// Write expression `body` (with the prelude in scope) to file `name` of `e`.
fn write_expr(e: &Env, name: &str, body: &str) -> PathBuf {
    e.write(name, &format!("let {PRELUDE} in {body}"))
}

/// `tool` of firn or CppNix on `store` with the feature on.
fn tool(firn_side: bool, name: &str, store: &str) -> Command {
    let mut c = if firn_side { firn(name) } else { cppnix(name) };
    c.args(FEATURE).args(["--store", store]);
    if firn_side && name == "nix-build" {
        c.args(["--option", "sandbox", "true"]);
    }
    c
}

fn run(c: &mut Command) -> (Option<i32>, String, String) {
    let out = c.output().expect("run");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
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

/// The rows of a store's database that a build writes, in an order independent of row ids.
fn rows(store: &str) -> Vec<(&'static str, Vec<String>)> {
    let db = rusqlite::Connection::open(Path::new(store).join("nix/var/nix/db/db.sqlite"))
        .expect("opening the database");
    let queries = [
        (
            "ValidPaths",
            "select path||' '||hash||' '||ifnull(deriver,'-')||' '||narSize||' '||ifnull(ultimate,'-')||' '||ifnull(sigs,'-')||' '||ifnull(ca,'-') from ValidPaths",
        ),
        (
            "Refs",
            "select a.path||' '||b.path from Refs join ValidPaths a on a.id = referrer join ValidPaths b on b.id = reference",
        ),
        (
            "DerivationOutputs",
            "select v.path||' '||d.id||' '||d.path from DerivationOutputs d join ValidPaths v on v.id = d.drv",
        ),
        (
            "Realisations",
            "select r.drvPath||'!'||r.outputName||' '||v.path||' '||quote(r.signatures) from Realisations r join ValidPaths v on v.id = r.outputPath",
        ),
        (
            "RealisationsRefs",
            "select a.drvPath||'!'||a.outputName||' '||b.drvPath||'!'||b.outputName from RealisationsRefs x join Realisations a on a.id = x.referrer join Realisations b on b.id = x.realisationReference",
        ),
    ];
    queries
        .into_iter()
        .map(|(table, q)| (table, sorted_rows(&db, q)))
        .collect()
}

fn count(store: &str, table: &str) -> i64 {
    let db = rusqlite::Connection::open(Path::new(store).join("nix/var/nix/db/db.sqlite"))
        .expect("opening the database");
    db.query_row(&format!("select count(*) from {table}"), [], |r| r.get(0))
        .expect("count")
}

/// The same graph gives the same `.drv` files, output paths, contents and database rows.
#[test]
fn ca_graph_equals_cppnix() {
    need_busybox();
    let e = env();
    let file = write_expr(&e, "default.nix", GRAPH);
    let (sf, sc) = (e.store("firn"), e.store("cppnix"));

    // One input-addressed output is built without the feature first: it gets its realisation
    // later, when a build with the feature meets it valid.
    let plain_f = ok_str(
        firn("nix-build")
            .args(["--store", &sf, "--no-out-link", "-A", "plain"])
            .args(["--option", "sandbox", "true"])
            .arg(&file),
    );
    let plain_c = ok_str(
        cppnix("nix-build")
            .args(["--store", &sc, "--no-out-link", "-A", "plain"])
            .arg(&file),
    );
    assert_eq!(plain_f, plain_c);

    // Instantiation: same drvPaths, same bytes.
    for &a in ATTRS {
        let df = ok_str(
            tool(true, "nix-instantiate", &sf)
                .args(["-A", a])
                .arg(&file),
        );
        let dc = ok_str(
            tool(false, "nix-instantiate", &sc)
                .args(["-A", a])
                .arg(&file),
        );
        assert_eq!(df, dc, "drvPath of {a}");
        let d = df.trim().split('!').next().unwrap_or_default();
        assert_eq!(
            std::fs::read(real(&sf, d)).expect("read"),
            std::fs::read(real(&sc, d)).expect("read"),
            "the .drv of {a}"
        );
    }
    // The output attribute of a floating derivation is CppNix's placeholder.
    let ph = |side: bool, store: &str| {
        ok_str(
            tool(side, "nix-instantiate", store)
                .args(["--eval", "--read-write-mode", "-A", "caMulti.dev.outPath"])
                .arg(&file),
        )
    };
    let (pf, pc) = (ph(true, &sf), ph(false, &sc));
    assert_eq!(pf, pc);
    assert!(pf.starts_with("\"/") && !pf.contains("/nix/store"), "{pf}");

    // Building: the same final paths, printed in the same order.
    let mut bf = tool(true, "nix-build", &sf);
    let mut bc = tool(false, "nix-build", &sc);
    for &a in ATTRS {
        bf.args(["-A", a]);
        bc.args(["-A", a]);
    }
    let (cf, outf, errf) = run(bf.arg("--no-out-link").arg(&file));
    let (cc, outc, errc) = run(bc.arg("--no-out-link").arg(&file));
    assert_eq!(cf, Some(0), "firn: {errf}");
    assert_eq!(cc, Some(0), "cppnix: {errc}");
    assert_eq!(outf, outc, "output paths\nfirn: {errf}\ncppnix: {errc}");
    assert_eq!(outf.lines().count(), ATTRS.len());
    // Floating outputs are at content-addressed paths, not at their scratch paths.
    for p in outf.lines() {
        assert!(Path::new(&real(&sf, p)).symlink_metadata().is_ok(), "{p}");
        assert_eq!(nar_hash(&sf, p), nar_hash(&sc, p), "contents of {p}");
    }
    // Resolved derivations are announced as CppNix does.
    for line in errc
        .lines()
        .filter(|l| l.starts_with("resolved derivation"))
    {
        assert!(errf.contains(line), "missing '{line}' in:\n{errf}");
    }
    assert!(errf.contains("resolved derivation"), "{errf}");
    // And their builds, under the resolved derivation's name: the same set of lines (the
    // order of parallel builds may differ).
    let building = |err: &str| -> std::collections::BTreeSet<String> {
        err.lines()
            .filter(|l| l.starts_with("building '"))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        building(&errf),
        building(&errc),
        "firn: {errf}\ncppnix: {errc}"
    );

    // The same rows: outputs (content-addressed, with their deriver), resolved derivations,
    // realisations of every build and their references.
    let (rf, rc) = (rows(&sf), rows(&sc));
    for ((table, a), (_, b)) in rf.iter().zip(&rc) {
        assert_eq!(a, b, "table {table}");
    }
    assert!(count(&sf, "Realisations") >= 20);
    assert!(count(&sf, "RealisationsRefs") >= 5);
    for s in [&sf, &sc] {
        let v = std::fs::read_to_string(Path::new(s).join("nix/var/nix/db/ca-schema"))
            .expect("ca-schema");
        assert_eq!(v.trim(), "3");
    }

    // CppNix finds firn's store consistent and uses firn's realisations (nothing rebuilt),
    // and the other way round.
    ok(cppnix("nix-store")
        .args(FEATURE)
        .args(["--store", &sf, "--verify", "--check-contents"]));
    for (side, store) in [(false, &sf), (true, &sc)] {
        let mut b = tool(side, "nix-build", store);
        for &a in ATTRS {
            b.args(["-A", a]);
        }
        let (code, out, err) = run(b.arg("--no-out-link").arg(&file));
        assert_eq!(code, Some(0), "{err}");
        assert_eq!(out, outf);
        assert!(!err.contains("building"), "rebuilt:\n{err}");
    }

    // `nix-store --realise` and `nix build --json` give the final paths too.
    let drv = ok_str(
        tool(true, "nix-instantiate", &sf)
            .args(["-A", "caMulti"])
            .arg(&file),
    );
    let drv = drv.trim();
    let rf = ok_str(tool(true, "nix-store", &sf).args(["--realise", drv]));
    let rc = ok_str(tool(false, "nix-store", &sc).args(["--realise", drv]));
    assert_eq!(rf, rc);
    assert_eq!(rf.lines().count(), 2);
    let json = |side: bool, store: &str| {
        let mut c = if side { firn("nix") } else { cppnix("nix") };
        c.args([
            "--extra-experimental-features",
            "nix-command ca-derivations",
        ])
        .args(["--store", store, "build", "--json", "--no-link", "-f"])
        .arg(&file)
        .args(["caMulti", "iaOnCa", "cross.lib"]);
        ok_str(&mut c)
    };
    assert_eq!(json(true, &sf), json(false, &sc));

    // Result links point at the final paths.
    let link = |side: bool, store: &str, name: &str| -> Vec<(String, String)> {
        let out = e.dir.join(name);
        ok(tool(side, "nix-build", store)
            .args(["-A", "caMulti.all", "-o"])
            .arg(&out)
            .arg(&file));
        let mut v: Vec<(String, String)> = std::fs::read_dir(&e.dir)
            .expect("read_dir")
            .filter_map(|d| d.ok())
            .filter(|d| d.file_name().to_string_lossy().starts_with(name))
            .map(|d| {
                let n = d.file_name().to_string_lossy().replacen(name, "", 1);
                let t = std::fs::read_link(d.path()).expect("a link");
                (n, t.to_string_lossy().into_owned())
            })
            .collect();
        v.sort();
        v
    };
    let lf = link(true, &sf, "res-firn");
    assert_eq!(lf, link(false, &sc, "res-cppnix"));
    assert_eq!(lf.len(), 2, "{lf:?}");
}

/// Without the feature, instantiating and building content-addressed derivations fail as in
/// CppNix.
#[test]
fn ca_needs_the_feature() {
    need_busybox();
    let e = env();
    let file = write_expr(&e, "default.nix", GRAPH);
    let (sf, sc) = (e.store("firn"), e.store("cppnix"));
    const DISABLED: &str = "experimental Nix feature 'ca-derivations' is disabled";
    for (side, store) in [(true, &sf), (false, &sc)] {
        let mut c = if side {
            firn("nix-instantiate")
        } else {
            cppnix("nix-instantiate")
        };
        let (code, _, err) = run(c.args(["--store", store, "-A", "caA"]).arg(&file));
        assert_eq!(code, Some(1), "{err}");
        assert!(err.contains(DISABLED), "{err}");
        // An input-addressed derivation needs nothing.
        let mut c = if side {
            firn("nix-instantiate")
        } else {
            cppnix("nix-instantiate")
        };
        ok(c.args(["--store", store, "-A", "plain"]).arg(&file));
        assert!(
            !Path::new(store).join("nix/var/nix/db/ca-schema").exists(),
            "no realisation tables without the feature"
        );
        // A content-addressed `.drv` made with the feature is not built without it.
        let drv = ok_str(
            tool(side, "nix-instantiate", store)
                .args(["-A", "iaOnCa"])
                .arg(&file),
        );
        let mut c = if side {
            firn("nix-store")
        } else {
            cppnix("nix-store")
        };
        let (code, _, err) = run(c.args(["--store", store, "--realise", drv.trim()]));
        assert_eq!(code, Some(1), "{err}");
        assert!(err.contains(DISABLED), "{err}");
    }
}

/// A content-addressed build that fails (or makes no output) registers nothing: no output
/// path, no realisation, nothing left at a final path; its dependents are not built.
#[test]
fn failed_ca_build_registers_nothing() {
    need_busybox();
    let e = env();
    let file = write_expr(
        &e,
        "default.nix",
        r#"rec {
  fails = mk "ca-fails" "mkdir $out; echo partial > $out/f; exit 3" (ca { });
  noOut = mk "ca-no-out" "echo nothing" (ca { });
  dep = mk "dep-on-failing" "cat ${fails}/f > $out" (ca { });
}"#,
    );
    let (sf, sc) = (e.store("firn"), e.store("cppnix"));
    for (side, store) in [(true, &sf), (false, &sc)] {
        // Refused outputs: CppNix 2.8 exits 1 (`OutputRejected` is no permanent failure),
        // and so does firn.
        let refused = 1;
        for (attr, msg, want) in [
            ("fails", "failed with exit code 3", 100),
            (
                "noOut",
                "failed to produce output path for output 'out'",
                refused,
            ),
            ("dep", "dependencies of derivation", 100),
        ] {
            let (code, _, err) = run(tool(side, "nix-build", store)
                .args(["--no-out-link", "-A", attr])
                .arg(&file));
            assert_eq!(code, Some(want), "{attr} (firn: {side}): {err}");
            assert!(err.contains(msg), "{attr} (firn: {side}): {err}");
        }
        assert_eq!(count(store, "Realisations"), 0);
        let db = rusqlite::Connection::open(Path::new(store).join("nix/var/nix/db/db.sqlite"))
            .expect("db");
        let outputs: i64 = db
            .query_row(
                "select count(*) from ValidPaths where path not like '%.drv' and path not like '%-busybox'",
                [],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(outputs, 0, "firn: {side}");
        // Nothing of the failed builds is in the store directory (lock files aside).
        let left: Vec<String> = std::fs::read_dir(Path::new(store).join("nix/store"))
            .expect("read_dir")
            .filter_map(|d| d.ok())
            .map(|d| d.file_name().to_string_lossy().into_owned())
            .filter(|n| {
                !n.ends_with(".drv")
                    && !n.ends_with(".lock")
                    && !n.ends_with("-busybox")
                    && !n.ends_with(".chroot")
                    && n != ".links"
            })
            .collect();
        assert!(left.is_empty(), "firn: {side}: {left:?}");
    }
}

/// stderr with the chroot store's root left out (CppNix names outputs by their files).
fn plain_stderr(err: &str, store: &str) -> String {
    err.replace(store, "<root>")
}

/// `--check` of content-addressed derivations, as CppNix 2.8: a floating one is built again
/// and passes whether or not its builder is deterministic (a new result has another path,
/// which is not valid, so there is nothing to compare: 2.8 lets it pass and keeps nothing of
/// it); a deterministic one is compared and passes. A derivation resolved before its build is
/// checked through its resolved derivation (`checking outputs of` that one), and a
/// non-deterministic input-addressed one on top of a floating one fails with 104. Without
/// valid outputs, checking is refused. Stderr, exit codes and rows as CppNix's.
#[test]
fn check_of_ca_derivations_equals_cppnix() {
    need_busybox();
    let e = env();
    let file = write_expr(
        &e,
        "default.nix",
        r#"rec {
          det = mk "det" "mkdir $out; echo hi > $out/f; echo $out > $out/self" (ca { });
          nondet = mk "nondet" "mkdir $out; cat /proc/sys/kernel/random/uuid > $out/f" (ca { });
          caOn = mk "ca-on" "mkdir $out; cat ${det}/f > $out/g; echo ${det} > $out/ref" (ca { });
          iaOnNondet = mk "ia-on-nondet" "cat ${det}/f > $out; cat /proc/sys/kernel/random/uuid >> $out" { };
        }"#,
    );
    let (sf, sc) = (e.store("firn"), e.store("cppnix"));
    let build = |side: bool, store: &str, attr: &str, check: bool| {
        let mut c = tool(side, "nix-build", store);
        c.args(["--no-out-link", "-A", attr]).arg(&file);
        if check {
            c.arg("--check");
        }
        let (code, out, err) = run(&mut c);
        (code, out, plain_stderr(&err, store))
    };
    for attr in ["det", "nondet", "caOn", "iaOnNondet"] {
        // Not built yet: refused.
        let f = build(true, &sf, attr, true);
        let c = build(false, &sc, attr, true);
        assert_eq!(f, c, "--check of {attr} before it is built");
        assert_eq!(f.0, Some(1), "{}", f.2);
        // Built, then checked. Floating outputs differ between the sides when the builder is
        // not deterministic: only the exit code and messages are compared then.
        let f0 = build(true, &sf, attr, false);
        let c0 = build(false, &sc, attr, false);
        assert_eq!((f0.0, c0.0), (Some(0), Some(0)), "{}\n{}", f0.2, c0.2);
        let f = build(true, &sf, attr, true);
        let c = build(false, &sc, attr, true);
        let same_paths = f0.1 == c0.1;
        if same_paths {
            assert_eq!(f, c, "--check of {attr}");
        } else {
            assert_eq!(f.0, c.0, "--check of {attr}: {}\n{}", f.2, c.2);
        }
        // What each side's check says, with its own output path for the other's.
        let f_err = f.2.replace(f0.1.trim(), "<out>");
        let c_err = c.2.replace(c0.1.trim(), "<out>");
        assert_eq!(f_err, c_err, "--check of {attr}");
        // The output printed is the valid one (none after a failed check).
        if f.0 == Some(0) {
            assert_eq!(f.1, f0.1, "{attr}");
        }
    }
    // The deterministic and non-deterministic floating ones pass; the input-addressed one on
    // top of a floating one does not.
    assert_eq!(build(true, &sf, "nondet", true).0, Some(0));
    let (code, _, err) = build(true, &sf, "iaOnNondet", true);
    assert_eq!(code, Some(104), "{err}");
    assert!(err.contains("may not be deterministic"), "{err}");
    // Checks leave nothing new in the store: no new valid paths, no leftovers of the builds.
    for store in [&sf, &sc] {
        let names: Vec<String> = std::fs::read_dir(Path::new(store).join("nix/store"))
            .expect("listing the store")
            .map(|d| d.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".lock") && !n.ends_with(".drv") && !n.starts_with('.'))
            .collect();
        // busybox, det, nondet, ca-on, ia-on-nondet.
        assert_eq!(names.len(), 5, "{store}: {names:?}");
    }
    assert_eq!(count(&sf, "ValidPaths"), count(&sc, "ValidPaths"));
    assert_eq!(count(&sf, "Realisations"), count(&sc, "Realisations"));
}

const IMPURE: &str = r#"rec {
  imp = mk "imp" "mkdir $out; cat /proc/sys/kernel/random/uuid > $out/f; echo $out > $out/self" { __impure = true; };
  impMulti = mk "imp-multi" "mkdir $out $dev; echo $out > $dev/p" { __impure = true; outputs = [ "out" "dev" ]; };
  impFlat = mk "imp-flat" "echo flat > $out" { __impure = true; outputHashMode = "flat"; outputHashAlgo = "sha1"; };
  onImp = mk "on-imp" "cat ${imp}/f > $out" { };
  caOnImp = mk "ca-on-imp" "cat ${imp}/f > $out" (ca { });
  impOnImp = mk "imp-on-imp" "cat ${imp}/f > $out" { __impure = true; };
  fodOnImp = mk "fod-on-imp" "echo -n foo > $out; true ${imp}" {
    outputHash = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"; outputHashAlgo = "sha256";
  };
  both = mk "both" "true" (ca { __impure = true; });
}"#;

const IMPURE_FEATURES: [&str; 2] = [
    "--extra-experimental-features",
    "impure-derivations ca-derivations",
];

/// Impure derivations (`impure-derivations`), as CppNix 2.8: the same `.drv` files (impure
/// outputs; input-addressed dependents deferred); the feature is needed to instantiate and to
/// build; every build runs the builder again and registers content-addressed outputs without
/// realisations; a pure derivation other than a fixed-output one may not depend on an impure
/// one; `nix-store -r` then fails, since the outputs have no recorded paths (2.8's
/// `nix-build` even aborts there; firn's fails with the same message), while `nix build`
/// reports the outputs built.
#[test]
fn impure_derivations_equal_cppnix() {
    need_busybox();
    let e = env();
    let file = write_expr(&e, "default.nix", IMPURE);
    let (sf, sc) = (e.store("firn"), e.store("cppnix"));
    let side_tool = |side: bool, name: &str, store: &str| {
        let mut c = if side { firn(name) } else { cppnix(name) };
        c.args(IMPURE_FEATURES).args(["--store", store]);
        if side && name != "nix-store" {
            c.args(["--option", "sandbox", "true"]);
        }
        c
    };
    // Without the feature: refused, as CppNix.
    for side in [true, false] {
        let store = if side { &sf } else { &sc };
        let mut c = if side {
            firn("nix-instantiate")
        } else {
            cppnix("nix-instantiate")
        };
        let (code, _, err) = run(c.args(["--store", store, "-A", "imp"]).arg(&file));
        assert_eq!(code, Some(1), "{err}");
        assert!(
            err.contains("experimental Nix feature 'impure-derivations' is disabled; use '--extra-experimental-features impure-derivations' to override"),
            "{err}"
        );
    }
    // Same drvPaths and bytes.
    let mut drvs = std::collections::BTreeMap::new();
    for a in [
        "imp", "impMulti", "impFlat", "onImp", "caOnImp", "impOnImp", "fodOnImp",
    ] {
        let df = ok_str(
            side_tool(true, "nix-instantiate", &sf)
                .args(["-A", a])
                .arg(&file),
        );
        let dc = ok_str(
            side_tool(false, "nix-instantiate", &sc)
                .args(["-A", a])
                .arg(&file),
        );
        assert_eq!(df, dc, "drvPath of {a}");
        let d = df.trim().to_string();
        assert_eq!(
            std::fs::read(real(&sf, &d)).expect("read"),
            std::fs::read(real(&sc, &d)).expect("read"),
            ".drv of {a}"
        );
        drvs.insert(a, d);
    }
    for side in [true, false] {
        let (code, _, err) = run(side_tool(side, "nix-instantiate", &sf)
            .args(["-A", "both"])
            .arg(&file));
        assert_eq!(code, Some(1), "{err}");
        assert!(
            err.contains("derivation cannot be both content-addressed and impure"),
            "{err}"
        );
    }
    // Reading an impure .drv for a build needs the feature too.
    for side in [true, false] {
        let store = if side { &sf } else { &sc };
        let mut c = if side {
            firn("nix-store")
        } else {
            cppnix("nix-store")
        };
        c.args(FEATURE).args(["--store", store, "-r", &drvs["imp"]]);
        let (code, _, err) = run(&mut c);
        assert_eq!(code, Some(1), "{err}");
        assert_eq!(
            err,
            "error: experimental Nix feature 'impure-derivations' is disabled; use '--extra-experimental-features impure-derivations' to override\n"
        );
    }
    // nix-store -r: built, then no path to print.
    let realise = |side: bool, attr: &str| {
        let store = if side { &sf } else { &sc };
        let (code, out, err) = run(side_tool(side, "nix-store", store).args(["-r", &drvs[attr]]));
        (code, out, err)
    };
    for attr in [
        "imp", "impMulti", "impFlat", "impOnImp", "fodOnImp", "onImp", "caOnImp",
    ] {
        let f = realise(true, attr);
        let c = realise(false, attr);
        // The resolved derivations of `impOnImp` and `fodOnImp` name the (random) output of
        // `imp`: their paths differ between the sides.
        let strip = |s: &str| -> String {
            s.lines()
                .filter(|l| {
                    !l.starts_with("resolved derivation")
                        && !l.contains("imp-on-imp.drv'...")
                        && !l.contains("fod-on-imp.drv'...")
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(
            (f.0, &f.1),
            (c.0, &c.1),
            "nix-store -r {attr}: {}\n{}",
            f.2,
            c.2
        );
        assert_eq!(strip(&f.2), strip(&c.2), "nix-store -r {attr}");
    }
    // Built again every time: a new output each time for `imp` (its builder prints a random
    // id), none of them with a realisation.
    let outs_of = |store: &str, drv: &str| -> Vec<String> {
        let db = rusqlite::Connection::open(Path::new(store).join("nix/var/nix/db/db.sqlite"))
            .expect("opening the database");
        let mut st = db
            .prepare("select path||' '||ifnull(ca,'-')||' '||ifnull(ultimate,'-') from ValidPaths where deriver = ?1")
            .expect("prepare");
        st.query_map([drv], |r| r.get::<_, String>(0))
            .expect("query")
            .map(|r| r.expect("row"))
            .collect()
    };
    for store in [&sf, &sc] {
        let imp = outs_of(store, &drvs["imp"]);
        assert_eq!(imp.len(), 3, "{imp:?}");
        assert!(
            imp.iter()
                .all(|r| r.contains(" fixed:r:sha256:") && r.ends_with(" 1")),
            "{imp:?}"
        );
        assert_eq!(
            count(store, "Realisations"),
            count(&sc, "Realisations"),
            "{store}"
        );
        // Deterministic builders give the same content-addressed paths on both sides.
        let flat = outs_of(store, &drvs["impFlat"]);
        assert_eq!(flat, outs_of(&sc, &drvs["impFlat"]));
        assert_eq!(
            outs_of(store, &drvs["impMulti"]),
            outs_of(&sc, &drvs["impMulti"])
        );
    }
    // `nix build` reports what the build made.
    let (code, out, err) = run(side_tool(true, "nix", &sf)
        .args(["--extra-experimental-features", "nix-command"])
        .args(["build", "--no-link", "--json", "-f"])
        .arg(&file)
        .arg("impFlat"));
    assert_eq!(code, Some(0), "{err}");
    let flat = outs_of(&sc, &drvs["impFlat"]);
    let path = flat[0].split(' ').next().unwrap_or_default();
    assert!(out.contains(&format!("\"out\":\"{path}\"")), "{out}");
}
