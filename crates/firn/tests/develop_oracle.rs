//! `nix develop` and `nix print-dev-env` against CppNix 2.8, each with a chroot store of its
//! own, on a flake whose development shell's builder is the host's bash (put in the sandbox
//! with `extra-sandbox-paths`) and whose `stdenv` is a small `setup` script defining
//! functions, an array and an associative array. The commands run in the environment, a
//! stdenv phase, `--unset`, `--ignore-environment`/`--keep`, the script `print-dev-env`
//! prints and its `--json` (the dump differs from CppNix's only where it must: the
//! environment derivation's own output paths, the time, the dump's line number), and the
//! errors: a builder that is not bash, `--command` with `--phase`.

mod common;
use common::*;

use std::path::Path;
use std::process::Command;

const FLAKE: &str = r#"{
  outputs = { self }: let
    stdenv = derivation {
      name = "mini-stdenv";
      system = "x86_64-linux";
      builder = "/usr/bin/bash";
      PATH = "/usr/bin";
      args = [ "-c" ''
        mkdir $out
        cat > $out/setup <<'SETUP'
        runHook() { "$1"; }
        buildPhase() { echo "building-phase FOO=$FOO ''${arr[1]} ''${assoc["a b"]}"; }
        declare -a arr=(one "two words")
        declare -A assoc=([k]=v ["a b"]=c)
        SETUP
      '' ];
    };
    shell = derivation {
      name = "devenv";
      system = "x86_64-linux";
      builder = "/usr/bin/bash";
      inherit stdenv;
      args = [ "-c" "echo built > $out" ];
      FOO = "bar baz";
      QUOTED = "it's \"quoted\"\n";
      shellHook = "echo hook-ran";
      outputs = [ "out" "dev" ];
      allowedReferences = [ ];
    };
  in {
    devShells.x86_64-linux.default = shell;
    packages.x86_64-linux.notBash = derivation { name = "sh"; system = "x86_64-linux"; builder = "/bin/sh"; };
  };
}
"#;

/// `nix ARGS` of either side, with flakes, its own store and caches, no registry, no
/// substituters, and the host's bash and libraries in the sandbox.
fn nix(firn_side: bool, dir: &Path, args: &[&str]) -> Command {
    let mut c = flake_tool(firn_side, "nix", dir);
    c.env("KEPT", "kept-value")
        .env("DROPPED", "dropped-value")
        .current_dir(dir)
        .args([
            "--option",
            "flake-registry",
            &dir.join("none.json").to_string_lossy(),
        ])
        .args(["--option", "substituters", ""])
        .args(["--option", "extra-sandbox-paths", &host_bash_paths()])
        .args(args);
    c
}

/// The host's directories bash and its libraries are in (those of them this system has).
fn host_bash_paths() -> String {
    ["/usr/bin", "/usr/lib", "/usr/lib64", "/lib64", "/lib"]
        .into_iter()
        .filter(|p| Path::new(p).exists())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The last line of `stderr` starting with `error: ` (after indentation), or "".
fn last_error(stderr: &str) -> String {
    stderr
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with("error: "))
        .unwrap_or("")
        .to_string()
}

/// `text` without the values that differ from run to run (time, the dump's line number).
fn steady(text: &str) -> String {
    text.lines()
        .filter(|l| !l.starts_with("EPOCHREALTIME=") && !l.starts_with("EPOCHSECONDS="))
        .filter(|l| !l.starts_with("LINENO="))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn develop_agrees_with_cppnix() {
    assert!(
        Path::new("/usr/bin/bash").exists(),
        "the develop tests need the host's bash"
    );
    let e = env();
    let dir = &e.dir;
    std::fs::create_dir_all(dir.join("f")).expect("mkdir");
    std::fs::write(dir.join("f/flake.nix"), FLAKE).expect("write");
    let flake = format!("path:{}", dir.join("f").display());
    // (A command runs in a new bash: the exported variables only.)
    let shell = "echo \"FOO=$FOO QUOTED=$QUOTED out=$out IN=$IN_NIX_SHELL\"; echo \"KEPT=${KEPT-unset} DROPPED=${DROPPED-unset}\"";
    let cases: Vec<Vec<&str>> = vec![
        vec!["develop", &flake, "-c", "bash", "-c", shell],
        vec!["develop", &flake, "--build"],
        vec!["develop", &flake, "--phase", "build"],
        vec![
            "develop", &flake, "-u", "DROPPED", "-c", "bash", "-c", shell,
        ],
        vec![
            "develop",
            &flake,
            "-i",
            "-k",
            "KEPT",
            "-c",
            "/usr/bin/bash",
            "-c",
            shell,
        ],
        vec!["print-dev-env", &flake],
        vec!["develop", &flake, "--build", "-c", "true"],
    ];
    let not_bash = format!("{flake}#notBash");
    let mut cases = cases;
    cases.push(vec!["develop", &not_bash, "-c", "true"]);
    let mut results = Vec::new();
    for args in &cases {
        let mut seen = Vec::new();
        for side in [false, true] {
            let out = nix(side, dir, args).output().expect("running nix");
            let stdout = String::from_utf8_lossy(&out.stdout).replace(side_name(side), "SIDE");
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            seen.push((out.status.code(), steady(&stdout), last_error(&stderr)));
        }
        assert_eq!(seen[1], seen[0], "{args:?}");
        results.push(seen.remove(0));
    }
    // What the cases show (the same on both sides, checked above).
    let out = |i: usize| &results[i].1;
    assert!(
        out(0).contains("FOO=bar baz QUOTED=it's \"quoted\"\n out="),
        "{}",
        out(0)
    );
    assert!(
        out(0).contains("/outputs/out IN=impure\nKEPT=kept-value DROPPED=dropped-value"),
        "{}",
        out(0)
    );
    assert!(
        out(1).contains("hook-ran\nbuilding-phase FOO=bar baz two words c"),
        "{}",
        out(1)
    );
    assert!(out(3).contains("DROPPED=unset"), "{}", out(3));
    assert!(
        out(4).contains("KEPT=kept-value DROPPED=unset"),
        "{}",
        out(4)
    );
    assert!(out(5).contains("buildPhase ()\n{\n"), "{}", out(5));
    assert_eq!(
        results[6].2,
        "error: you cannot use both '--command' and '--phase'"
    );
    assert_eq!(
        results[7].2,
        "error: 'nix develop' only works on derivations that use 'bash' as their builder"
    );
    // The environment as JSON: the same variables and functions, but for the values that
    // cannot be the same (the environment derivation's outputs, the time, the line).
    let mut envs = Vec::new();
    for side in [false, true] {
        let out = nix(side, dir, &["print-dev-env", "--json", &flake])
            .output()
            .expect("running nix");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        let vars = j["variables"].as_object_mut().expect("variables");
        for v in ["out", "dev", "EPOCHREALTIME", "EPOCHSECONDS", "LINENO"] {
            assert!(vars.remove(v).is_some(), "{v}");
        }
        envs.push(j);
    }
    assert_eq!(envs[1], envs[0]);
    assert_eq!(envs[0]["variables"]["FOO"]["value"], "bar baz");
    assert_eq!(envs[0]["variables"]["assoc"]["type"], "associative");
    assert!(envs[0]["bashFunctions"]["buildPhase"].is_string());
}
