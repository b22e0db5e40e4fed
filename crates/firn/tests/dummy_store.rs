//! The `dummy://` store (what the upstream language tests run with): firn against CppNix 2.8
//! on evaluations that only compute paths (they work), evaluations and commands that would
//! write (they fail, naming the store operation), and validity queries (nothing is valid).
//! Exit codes, stdout and the error message (the `error: ...` line) must agree.

mod common;

use std::process::{Command, Output};

use common::*;

const MISSING: &str = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-x";
const DRV: &str = "derivation { name = \"x\"; system = \"x\"; builder = \"x\"; }";

/// What is compared: exit code, stdout, and the error message.
fn outcome(out: &Output) -> (Option<i32>, String, String) {
    let err = String::from_utf8_lossy(&out.stderr);
    // The message: CppNix 2.8 prints it first and alone; firn, as current Nix, prints an
    // evaluation error's frames first and the message last (`error: ...`, indented).
    let message = err
        .lines()
        .rev()
        .map(str::trim_start)
        .find(|l| l.starts_with("error: "))
        .or_else(|| err.lines().next())
        .unwrap_or("");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        message.to_string(),
    )
}

/// Run `tool args` in `dir` with both implementations, the store given as `NIX_REMOTE` or
/// `--store`, and return the mismatch, if any.
fn compare(dir: &std::path::Path, tool: &str, args: &[&str], by_env: bool) -> Option<String> {
    let run = |mut c: Command| {
        c.current_dir(dir);
        if by_env {
            c.env("NIX_REMOTE", "dummy://");
        } else {
            c.args(["--store", "dummy://"]);
        }
        c.args(args).output().expect("running a command")
    };
    let ours = outcome(&run(firn(tool)));
    let theirs = outcome(&run(cppnix(tool)));
    (ours != theirs).then(|| format!("{tool} {args:?}\n  firn:   {ours:?}\n  CppNix: {theirs:?}"))
}

#[test]
fn evaluation_with_a_dummy_store_agrees_with_cppnix() {
    let e = env();
    e.write("file", "hello\n");
    let mut exprs: Vec<String> = [
        "1 + 1",
        "builtins.storeDir",
        "builtins.toFile \"a\" \"b\"",
        "\"${./file}\"",
        "builtins.path { path = ./file; }",
        "builtins.filterSource (p: t: true) ./file",
        "builtins.storePath /nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-x",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    exprs.push(format!("({DRV}).drvPath"));
    exprs.push(format!("({DRV}).outPath"));
    let url = format!("file://{}", e.dir.join("file").display());
    exprs.push(format!("builtins.fetchurl \"{url}\""));
    let mut mismatches = Vec::new();
    for expr in &exprs {
        // Read-only mode computes paths; read-write mode must write, which fails.
        for extra in [&[][..], &["--read-write-mode"][..]] {
            let mut args = vec!["--eval", "--strict"];
            args.extend_from_slice(extra);
            args.extend(["-E", expr.as_str()]);
            for by_env in [true, false] {
                mismatches.extend(compare(&e.dir, "nix-instantiate", &args, by_env));
            }
        }
    }
    // Instantiating and building write `.drv` files.
    mismatches.extend(compare(&e.dir, "nix-instantiate", &["-E", DRV], false));
    mismatches.extend(compare(&e.dir, "nix-build", &["-E", DRV], false));
    mismatches.extend(compare(&e.dir, "nix-build", &["-E", "{ }"], false));
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

#[test]
fn nix_store_with_a_dummy_store_agrees_with_cppnix() {
    let e = env();
    e.write("file", "hello\n");
    let drv = format!("{MISSING}.drv");
    let cases: &[&[&str]] = &[
        &["--add", "file"],
        &["--add-fixed", "sha256", "file"],
        &["--add-fixed", "--recursive", "sha256", "file"],
        &[
            "--print-fixed-path",
            "sha256",
            "1vhjwbqh3ccgkbigyh8yg4ar5an5w5nj6nd5dvpiqjj7yxvm0mb5",
            "x",
        ],
        &["--check-validity", MISSING],
        &["--check-validity", "--print-invalid", MISSING],
        &["-q", "--references", MISSING],
        &["-q", "--requisites", MISSING],
        &["-q", "--hash", "file"],
        &["--verify-path", MISSING],
        &["--realise", MISSING],
        &["--realise", &drv],
        &["--gc"],
        &["--delete", MISSING],
        &["--read-log", MISSING],
        &["--verify"],
        &["--optimise"],
        &["--init"],
        &["--dump", "file"],
        &["--dump-db"],
        &["--repair-path", MISSING],
    ];
    let mut mismatches = Vec::new();
    for args in cases {
        mismatches.extend(compare(&e.dir, "nix-store", args, false));
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}
