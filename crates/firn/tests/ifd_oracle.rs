//! Import from derivation, against CppNix 2.8: an evaluation that reads an output of a
//! derivation (`import`, `readFile`, `readDir`, `pathExists`) builds it first, in the
//! evaluation's store and with its settings; a build that fails, the setting
//! `allow-import-from-derivation` off, and a read-only evaluation (whose `.drv` files are
//! not in the store) stop it with CppNix's errors. Each side has its own chroot store; the
//! builders are the host's static busybox.

mod common;

use common::*;

const BODY: &str = r#"{
  value = (import (mk "gen" "echo '{ x = 6; y = \"z\"; }' > $out" { })).x * 7;
  text = builtins.readFile (mk "txt" "echo hello > $out" { });
  dir = builtins.attrNames (builtins.readDir (mk "d" "mkdir $out; echo > $out/a; echo > $out/b" { }));
  exists = builtins.pathExists "${mk "e" "mkdir $out" { }}/nothing";
  hash = builtins.hashFile "sha256" (mk "h" "echo hi > $out" { });
  scoped = scopedImport { z = 5; } (mk "s" "echo 'z * 2' > $out" { });
  twice = let g = mk "gen2" "echo 1 > $out" { }; in import g + import g;
  txtPath = builtins.unsafeDiscardStringContext (mk "txt" "echo hello > $out" { }).outPath;
  fails = import (mk "bad" "echo oops; exit 3" { });
}
"#;

/// `nix-instantiate --eval --strict -A attr` of one side in its store, sandboxed, with
/// `extra` options.
fn eval(
    firn_side: bool,
    store: &str,
    file: &std::path::Path,
    attr: &str,
    extra: &[&str],
) -> Outcome {
    let mut c = tool_of(firn_side, "nix-instantiate");
    c.args(["--store", store, "--option", "sandbox", "true"])
        .args(["--option", "substituters", ""])
        .args(extra)
        .args(["--eval", "--strict", "-A", attr])
        .arg(file);
    outcome(&mut c)
}

/// [`eval`] of `attr`, which must succeed with the value `want`.
fn expect_value(
    firn_side: bool,
    store: &str,
    file: &std::path::Path,
    attr: &str,
    extra: &[&str],
    want: &str,
) {
    let o = eval(firn_side, store, file, attr, extra);
    assert_eq!(
        (o.code, o.stdout.trim()),
        (Some(0), want),
        "{} {attr}: {}",
        side_name(firn_side),
        o.stderr
    );
}

#[test]
fn reading_an_output_builds_it_as_cppnix() {
    need_busybox();
    let e = env();
    let file = e.write("ifd.nix", &format!("{LET_BUSYBOX}{MK_BUSYBOX}in {BODY}"));
    let rw = ["--read-write-mode"];
    for side in [false, true] {
        let store = e.store(&format!("rw-{}", side_name(side)));
        for (attr, want) in [
            ("value", "42"),
            ("text", "\"hello\\n\""),
            ("dir", "[ \"a\" \"b\" ]"),
            ("exists", "false"),
            ("twice", "2"),
            (
                "hash",
                "\"98ea6e4f216f2fb4b69fff9b3a44842c38686ca685f3f55dc48c5d3fb1107be4\"",
            ),
            ("scoped", "10"),
        ] {
            expect_value(side, &store, &file, attr, &rw, want);
        }
        // The output is in the store, valid in CppNix's eyes (firn's side too), and not
        // built again.
        let o = eval(side, &store, &file, "txtPath", &rw);
        let out = o.stdout.trim().trim_matches('"').to_string();
        assert!(
            out.ends_with("-txt") && is_valid(&store, &out),
            "{out}: {}",
            o.stderr
        );
        let o = eval(side, &store, &file, "text", &rw);
        assert!(!o.stderr.contains("building '"), "{}", o.stderr);
        // A builder that fails: the evaluation's error is the build's, and so is the exit
        // status.
        let o = eval(side, &store, &file, "fails", &rw);
        assert_eq!(o.code, Some(100), "{}", o.stderr);
        assert!(
            o.error.contains("builder for '")
                && o.error.contains("-bad.drv' failed with exit code 3"),
            "{}: {}",
            side_name(side),
            o.stderr
        );
    }
    // The setting off: nothing is built, with CppNix's message.
    for side in [false, true] {
        let store = e.store(&format!("off-{}", side_name(side)));
        let o = eval(
            side,
            &store,
            &file,
            "text",
            &[
                "--read-write-mode",
                "--option",
                "allow-import-from-derivation",
                "false",
            ],
        );
        assert_eq!(o.code, Some(1), "{}", o.stderr);
        assert!(
            o.error.contains("-txt.drv' during evaluation because the option 'allow-import-from-derivation' is disabled"),
            "{}: {}",
            side_name(side),
            o.stderr
        );
        assert!(!o.stderr.contains("building '"), "{}", o.stderr);
    }
    // Read-only (`--eval` alone): the `.drv` is not in the store, so it cannot be built.
    for side in [false, true] {
        let store = e.store(&format!("ro-{}", side_name(side)));
        let o = eval(side, &store, &file, "text", &[]);
        assert_eq!(o.code, Some(1), "{}", o.stderr);
        assert!(
            o.error.contains("-txt.drv' is not valid"),
            "{}: {}",
            side_name(side),
            o.stderr
        );
    }
}

/// A floating content-addressed output (`ca-derivations`) is named by a placeholder until it
/// is built: reading it builds it and reads the path the build recorded, on both sides.
#[test]
fn floating_content_addressed_outputs_are_read_once_built() {
    need_busybox();
    let e = env();
    let body = r#"let ca = { __contentAddressed = true; outputHashMode = "recursive"; outputHashAlgo = "sha256"; };
in {
  value = (import (mk "gen" "echo '{ x = 6; }' > $out" ca)).x * 7;
  sub = builtins.readFile "${mk "d" "mkdir $out; echo inner > $out/a" ca}/a";
  both = builtins.readFile "${mk "d" "mkdir $out; echo inner > $out/a" ca}/a"
    + builtins.readFile (mk "t" "echo two > $out" ca);
}
"#;
    let file = e.write("ca-ifd.nix", &format!("{LET_BUSYBOX}{MK_BUSYBOX}in {body}"));
    let opts = [
        "--read-write-mode",
        "--extra-experimental-features",
        "ca-derivations",
    ];
    for side in [false, true] {
        let store = e.store(&format!("ca-{}", side_name(side)));
        for (attr, want) in [
            ("value", "42"),
            ("sub", "\"inner\\n\""),
            ("both", "\"inner\\ntwo\\n\""),
        ] {
            expect_value(side, &store, &file, attr, &opts, want);
        }
    }
}
