//! Derivations, string context and sources copied to the store: `nix-instantiate` by firn and
//! by CppNix 2.8 on the same expressions, each into its own chroot store, must print the same
//! `.drv` paths and leave the same store paths with the same bytes and references.

mod common;

use std::path::Path;

use common::*;

/// A file of derivations exercising every attribute `derivationStrict` treats specially, every
/// kind of context, and every way of copying sources.
const DERIVATIONS: &str = r#"
let
  sys = "x86_64-linux";
  mk = attrs: derivation ({ system = sys; builder = "/bin/sh"; } // attrs);
  dep = mk { name = "dep"; outputs = [ "out" "dev" "lib" ]; args = [ "-c" "echo" ]; };
  fodFlat = mk { name = "fod-flat"; outputHash = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"; outputHashAlgo = "sha256"; };
  fodRec = mk { name = "fod-rec"; outputHash = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="; outputHashMode = "recursive"; };
  fodSha1 = mk { name = "fod-sha1"; outputHashAlgo = "sha1"; outputHash = "0bfsgh9qbhr6z1cch5r1g4p5d4hbsdb4"; };
  fodSha512 = mk { name = "fod-sha512"; outputHash = "sha512:cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"; };
  fodDep = mk { name = "uses-fod"; a = fodFlat; b = fodRec; c = fodSha1; d = fodSha512; };
in {
  inherit dep fodFlat fodRec fodSha1 fodSha512 fodDep;
  env = mk {
    name = "env-1.0";
    int = 42; neg = -7; float = 1.5; t = true; f = false; n = null;
    list = [ 1 "two" [ 3 ] null false 2.25 ];
    nested = "${dep.dev}/include:${dep.lib}";
    src = ./src;
    file = ./src/a;
    args = [ "-e" ./src/a dep 3 ];
    passAsFile = [ "big" ];
    big = "lots of text";
  };
  multi = mk { name = "multi"; outputs = [ "bin" "out" "man" ]; inherit dep; };
  multiPick = mk { name = "multi-pick"; x = (mk { name = "m2"; outputs = [ "a" "b" ]; }).b; };
  structured = mk {
    name = "structured";
    __structuredAttrs = true;
    outputs = [ "out" "doc" ];
    deps = [ dep dep.dev ];
    path = ./src;
    attrs = { z = 1; a = [ true null 0.1 ]; s = "x\ny\"z"; };
    outputChecks.out.allowedReferences = [ ];
  };
  ignoreNulls = mk { name = "ign"; __ignoreNulls = true; gone = null; kept = 1; };
  whole = mk { name = "whole"; d = dep.drvPath; e = fodDep.drvPath; };
  discard = mk { name = "discard"; d = builtins.unsafeDiscardOutputDependency dep.drvPath; };
  files = mk {
    name = "files";
    t = builtins.toFile "script.sh" "echo ${./src/a} ${builtins.toFile "inner" "x"}";
    filtered = builtins.filterSource (p: t: baseNameOf p != "b" && t != "symlink") ./src;
    named = builtins.path { path = ./src; name = "renamed"; };
    flat = builtins.path { path = ./src/a; recursive = false; };
    filt2 = builtins.path { path = ./src; filter = p: t: t == "directory" || baseNameOf p == "c"; };
    interp = "${./src/sub}";
  };
  placeholders = mk { name = "ph"; outputs = [ "out" "dev" ]; p = builtins.placeholder "dev"; };
  appended = mk {
    name = "appended";
    x = builtins.appendContext "text" {
      ${builtins.unsafeDiscardStringContext dep.drvPath} = { outputs = [ "lib" ]; };
      ${builtins.unsafeDiscardStringContext fodFlat.drvPath} = { allOutputs = true; };
    };
  };
  list = [ (mk { name = "in-list"; }) { notADrv = 1; } ];
  nestedSet = {
    recurseForDerivations = true;
    inner = mk { name = "inner"; };
    "bad name" = mk { name = "skipped"; };
    deeper = { x = mk { name = "not-reached"; }; };
  };
}
"#;

fn write_sources(dir: &Path) {
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a"), "aaa\n").unwrap();
    std::fs::write(src.join("b"), "bbb\n").unwrap();
    std::fs::write(src.join("c"), "ccc\n").unwrap();
    std::fs::write(src.join("sub/d"), "ddd\n").unwrap();
    std::os::unix::fs::symlink("a", src.join("link")).unwrap();
    std::fs::write(dir.join("drvs.nix"), DERIVATIONS).unwrap();
}

/// Every store path under a chroot store, with the NAR hash of its files (by CppNix's
/// `nix-hash`) and its references.
fn store_contents(store: &str) -> Vec<(String, Vec<u8>, String)> {
    let mut names: Vec<String> = std::fs::read_dir(format!("{store}/nix/store"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let p = format!("/nix/store/{n}");
            let nar = ok(cppnix("nix-hash").args(["--type", "sha256", &format!("{store}{p}")]));
            let refs =
                ok_str(cppnix("nix-store").args(["--store", store, "-q", "--references", &p]));
            (n, nar, refs)
        })
        .collect()
}

#[test]
fn instantiation_matches_cppnix() {
    let tmp = tempfile::tempdir().unwrap();
    write_sources(tmp.path());
    let file = tmp.path().join("drvs.nix");
    let file = file.to_str().unwrap();
    let (ours_store, theirs_store) = (store_dir(tmp.path(), "firn"), store_dir(tmp.path(), "cpp"));

    let ours = ok_str(
        firn("nix-instantiate")
            .env("NIX_REMOTE", &ours_store)
            .arg(file),
    );
    let theirs = ok_str(cppnix("nix-instantiate").args(["--store", &theirs_store, file]));
    assert_eq!(ours, theirs);
    assert_eq!(ours.lines().count(), 17, "{ours}");

    // The same paths, with the same bytes and references; CppNix finds firn's store sound.
    let a = store_contents(&ours_store);
    let b = store_contents(&theirs_store);
    assert_eq!(
        a.iter().map(|x| &x.0).collect::<Vec<_>>(),
        b.iter().map(|x| &x.0).collect::<Vec<_>>()
    );
    for (x, y) in a.iter().zip(&b) {
        assert!(x.1 == y.1, "contents of {} differ", x.0);
        assert_eq!(x.2, y.2, "references of {}", x.0);
    }
    let verify = cppnix("nix-store")
        .args(["--store", &ours_store, "--verify", "--check-contents"])
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let said = String::from_utf8_lossy(&verify.stderr);
    assert!(
        !said.contains("error") && !said.contains("modified"),
        "{said}"
    );

    // Derivers of outputs are what CppNix records for `.drv` outputs.
    let q = |store: &str, tool: fn(&str) -> std::process::Command| {
        ok_str(
            tool("nix-store")
                .args(["--store", store, "-q", "--outputs"])
                .args(ours.lines().map(|l| l.split('!').next().unwrap_or(l))),
        )
    };
    assert_eq!(q(&ours_store, firn), q(&theirs_store, cppnix));

    // Attribute selection and output names (`!dev`).
    for attr in ["dep.dev", "multiPick", "list", "nestedSet", "fodDep"] {
        let o = ok_str(
            firn("nix-instantiate")
                .env("NIX_REMOTE", &ours_store)
                .args([file, "-A", attr]),
        );
        let t =
            ok_str(cppnix("nix-instantiate").args(["--store", &theirs_store, file, "-A", attr]));
        assert_eq!(o, t, "-A {attr}");
    }
}

#[test]
fn eval_mode_computes_paths_without_writing() {
    let tmp = tempfile::tempdir().unwrap();
    write_sources(tmp.path());
    let file = tmp.path().join("drvs.nix");
    let file = file.to_str().unwrap();
    let ours_store = store_dir(tmp.path(), "firn");
    let theirs_store = store_dir(tmp.path(), "cpp");
    let expr = format!(
        "let d = import {file}; in {{ \
           paths = map (x: {{ inherit (x) drvPath outPath; }}) [ d.env d.structured d.files d.discard d.fodDep ]; \
           ctx = builtins.getContext (d.env.drvPath + d.dep.dev + d.files.outPath + \"${{./src}}\"); \
           json = builtins.toJSON {{ p = ./src/a; s = \"${{d.dep}}\"; }}; \
           jsonCtx = builtins.getContext (builtins.toJSON [ d.dep.lib ]); \
           ph = builtins.placeholder \"out\"; \
           has = builtins.hasContext \"${{d.dep}}\"; \
           discarded = builtins.getContext (builtins.unsafeDiscardOutputDependency d.dep.drvPath); \
         }}"
    );
    let ours = ok_str(
        firn("nix-instantiate")
            .env("NIX_REMOTE", &ours_store)
            .current_dir(tmp.path())
            .args(["--eval", "--strict", "--json", "-E", &expr]),
    );
    let theirs = ok_str(cppnix("nix-instantiate").current_dir(tmp.path()).args([
        "--store",
        &theirs_store,
        "--eval",
        "--strict",
        "--json",
        "-E",
        &expr,
    ]));
    assert_eq!(ours.trim_end(), theirs.trim_end());
    // Read-only mode: nothing was added to the store.
    let added: Vec<_> = std::fs::read_dir(format!("{ours_store}/nix/store"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .count()
        })
        .into_iter()
        .collect();
    assert!(added.iter().all(|n| *n == 0), "{added:?}");
}

#[test]
fn bad_derivations_fail_like_cppnix() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        (
            r#"derivation { name = "x"; system = "s"; }"#,
            "required attribute 'builder' missing",
        ),
        (
            r#"derivation { name = "x"; builder = "b"; }"#,
            "required attribute 'system' missing",
        ),
        (
            r#"derivation { name = "x.drv"; builder = "b"; system = "s"; }"#,
            "derivation names are not allowed to end in '.drv'",
        ),
        (
            r#"derivation { name = "x"; builder = "b"; system = "s"; outputs = [ "a" "a" ]; }"#,
            "duplicate derivation output 'a'",
        ),
        (
            r#"derivation { name = "x"; builder = "b"; system = "s"; outputs = [ ]; }"#,
            "'builtins.head' called on an empty list",
        ),
        (
            r#"derivation { name = "x"; builder = "b"; system = "s"; outputs = [ "drv" ]; }"#,
            "invalid derivation output name 'drv'",
        ),
        (
            r#"derivation { name = "x"; builder = "b"; system = "s"; outputHashMode = "weird"; outputHash = ""; }"#,
            "invalid value 'weird' for 'outputHashMode' attribute",
        ),
        (
            r#"derivation { name = "x"; builder = "b"; system = "s"; outputs = [ "out" "dev" ]; outputHash = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="; }"#,
            "multiple outputs are not supported in fixed-output derivations",
        ),
        (
            r#"derivation { name = "x y"; builder = "b"; system = "s"; }"#,
            "x y",
        ),
        (
            r#"derivation { name = "x"; builder = "b"; system = "s"; f = x: x; }"#,
            "cannot coerce a function to a string",
        ),
        (
            r#"let d = derivation { name = "x"; builder = "b"; system = "s"; }; in builtins.toFile "f" "${d}""#,
            "must not contain a reference to a derivation",
        ),
        (
            r#"builtins.appendContext "x" { "/tmp/foo" = { path = true; }; }"#,
            "is not a store path",
        ),
    ];
    for (expr, msg) in cases {
        let store = store_dir(tmp.path(), "s");
        let ours = firn("nix-instantiate")
            .env("NIX_REMOTE", &store)
            .args(["-E", expr])
            .output()
            .unwrap();
        let theirs = cppnix("nix-instantiate")
            .args(["--store", &store, "-E", expr])
            .output()
            .unwrap();
        assert_eq!(
            ours.status.code(),
            Some(1),
            "{expr}: {}",
            String::from_utf8_lossy(&ours.stderr)
        );
        assert_eq!(theirs.status.code(), Some(1), "{expr}");
        let err = String::from_utf8_lossy(&ours.stderr);
        assert!(err.contains(msg), "{expr}: {err}");
    }
}

/// `builtins.path`'s filter is called in CppNix's order (depth first, names sorted, a kept
/// directory entered before its next sibling): traces from the filter come out as CppNix's
/// (nixpkgs' `lib.fileset` tests depend on it).
#[test]
fn path_filter_is_called_in_cppnix_order() {
    let e = env();
    let src = e.dir.join("tree");
    for d in ["a/x", "e", "b"] {
        std::fs::create_dir_all(src.join(d)).unwrap();
    }
    for f in ["a/x/y", "a/c", "d", "e/f", "b/g"] {
        std::fs::write(src.join(f), f).unwrap();
    }
    let file = e.write(
        "filter.nix",
        r#"builtins.path {
  path = ./tree;
  name = "tree";
  filter = p: t: builtins.trace "${baseNameOf p} ${t}" (baseNameOf p != "b");
}"#,
    );
    let traces = |mut c: std::process::Command| {
        let out = c
            .args(["--eval", "--strict"])
            .arg(&file)
            .output()
            .expect("running nix-instantiate");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let mut firn_cmd = firn("nix-instantiate");
    firn_cmd.args(["--store", &e.store("firn")]);
    let mut cpp_cmd = cppnix("nix-instantiate");
    cpp_cmd.args(["--store", &e.store("cppnix")]);
    let (ours, theirs) = (traces(firn_cmd), traces(cpp_cmd));
    assert_eq!(ours, theirs);
    assert!(
        ours.starts_with("trace: a directory\ntrace: c regular\ntrace: x directory\n"),
        "{ours}"
    );
    // The directory left out is not entered.
    assert!(!ours.contains("trace: g "), "{ours}");
}
