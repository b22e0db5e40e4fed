//! Run the evaluator over the upstream `eval-okay-*` and `eval-fail-*` cases (NixOS/nix
//! `tests/functional/lang`, extracted outside this repository):
//!
//!     cargo run --release -p firn-eval --example lang_eval_suite -- /path/to/tests/functional/lang
//!
//! An `eval-okay` case passes when `--eval --strict` output equals its `.exp` (with the test
//! directory's parent shown as `/pwd`, as the upstream harness does); an `eval-fail` case
//! passes when evaluation fails. Cases that need flags (`.flags`) are skipped and counted.

use std::path::Path;

use firn_eval::{print::print_value, Evaluator};

fn run_one(path: &Path) -> Result<String, String> {
    let mut ev = Evaluator::new();
    ev.set_stack_size(firn_eval::eval::EVAL_THREAD_STACK);
    let v = ev
        .import(&path.to_string_lossy())
        .map_err(|e| e.msg.clone())?;
    firn_eval::builtins::deep_force(&mut ev, &v).map_err(|e| e.msg.clone())?;
    print_value(&mut ev, &v, true).map_err(|e| e.msg.clone())
}

fn main() {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: lang_eval_suite DIR");
        std::process::exit(2);
    };
    let dir = std::fs::canonicalize(&dir).expect("the test directory exists");
    let pwd = dir
        .parent()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("reading the test directory")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("eval-") && n.ends_with(".nix"))
        .collect();
    names.sort();
    let (mut pass, mut fail, mut skipped) = (0, 0, 0);
    let verbose = std::env::var_os("VERBOSE").is_some();
    // As the upstream harness.
    std::env::set_var("TEST_VAR", "foo");
    std::env::set_var("HOME", "/fake-home");
    for n in &names {
        let stem = n.trim_end_matches(".nix");
        // Cases that need flags, and `eval-okay` cases upstream disabled (no `.exp`).
        let disabled = stem.starts_with("eval-okay") && !dir.join(format!("{stem}.exp")).exists();
        if dir.join(format!("{stem}.flags")).exists() || disabled {
            skipped += 1;
            continue;
        }
        let path = dir.join(n);
        let handle = std::thread::Builder::new()
            .stack_size(firn_eval::eval::EVAL_THREAD_STACK)
            .spawn(move || run_one(&path))
            .expect("spawning an evaluation thread");
        let result = handle.join().unwrap_or_else(|_| Err("panicked".into()));
        let ok = if stem.starts_with("eval-okay-") {
            let exp = std::fs::read_to_string(dir.join(format!("{stem}.exp"))).unwrap_or_default();
            match &result {
                Ok(out) => {
                    let out = out.replace(&pwd, "/pwd");
                    let good = out.trim_end() == exp.trim_end();
                    if !good && verbose {
                        println!(
                            "FAIL {stem}:\n  got      {}\n  expected {}",
                            out.chars().take(300).collect::<String>(),
                            exp.trim_end().chars().take(300).collect::<String>()
                        );
                    }
                    good
                }
                Err(e) => {
                    if verbose {
                        println!("FAIL {stem}: {}", e.lines().next().unwrap_or(""));
                    }
                    false
                }
            }
        } else {
            if result.is_ok() && verbose {
                println!("FAIL {stem}: evaluated but should fail");
            }
            result.is_err()
        };
        if ok {
            pass += 1;
        } else {
            fail += 1;
        }
    }
    println!("{skipped} skipped (need flags, or disabled upstream)");
    println!("{pass} passed, {fail} failed");
}
