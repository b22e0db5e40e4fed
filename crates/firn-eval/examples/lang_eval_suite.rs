//! Run the evaluator over the upstream `eval-okay-*` and `eval-fail-*` cases (NixOS/nix
//! `tests/functional/lang`, extracted outside this repository):
//!
//!     cargo run --release -p firn-eval --example lang_eval_suite -- /path/to/tests/functional/lang
//!
//! An `eval-okay` case passes when `--eval --strict` output equals its `.exp` (or, for a case
//! with an `.exp.xml`, `--eval --xml --no-location --strict` output equals that), with the
//! test directory's parent shown as `/pwd`, as the upstream harness does; an `eval-fail` case
//! passes when evaluation fails. Cases that need flags (`.flags`) are skipped and counted.

use std::path::Path;

use firn_eval::{print::print_value, Evaluator};

fn run_one(path: &Path, xml: bool) -> Result<String, String> {
    let mut ev = Evaluator::new();
    ev.set_stack_size(firn_eval::eval::EVAL_THREAD_STACK);
    let v = ev
        .import(&path.to_string_lossy())
        .map_err(|e| e.msg.clone())?;
    if xml {
        let opts = firn_eval::builtins_misc::XmlOptions {
            strict: true,
            location: false,
        };
        return firn_eval::builtins_misc::value_to_xml(&mut ev, &v, opts)
            .map(|x| x.s.to_string())
            .map_err(|(_, e)| e.msg.clone());
    }
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
        // Cases that need flags, and `eval-okay` cases upstream disabled (no `.exp` and no
        // `.exp.xml`). A case with both is checked both ways, as upstream.
        let checks: Vec<(bool, std::path::PathBuf)> = [(false, "exp"), (true, "exp.xml")]
            .into_iter()
            .map(|(xml, e)| (xml, dir.join(format!("{stem}.{e}"))))
            .filter(|(_, f)| f.exists())
            .collect();
        let disabled = stem.starts_with("eval-okay") && checks.is_empty();
        if dir.join(format!("{stem}.flags")).exists() || disabled {
            skipped += 1;
            continue;
        }
        let run = |xml: bool| {
            let path = dir.join(n);
            std::thread::Builder::new()
                .stack_size(firn_eval::eval::EVAL_THREAD_STACK)
                .spawn(move || run_one(&path, xml))
                .expect("spawning an evaluation thread")
                .join()
                .unwrap_or_else(|_| Err("panicked".into()))
        };
        let ok = if stem.starts_with("eval-okay-") {
            checks.iter().all(|(xml, exp_file)| {
                let exp = std::fs::read_to_string(exp_file).unwrap_or_default();
                match run(*xml) {
                    Ok(out) => {
                        let out = out.replace(&pwd, "/pwd");
                        let good = out.trim_end() == exp.trim_end();
                        if !good && verbose {
                            println!(
                                "FAIL {stem} ({}):\n  got      {}\n  expected {}",
                                exp_file.display(),
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
            })
        } else {
            let result = run(false);
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
