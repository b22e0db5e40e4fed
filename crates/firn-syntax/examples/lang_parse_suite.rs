//! Run the parser over the upstream language test suite (NixOS/nix `tests/functional/lang`,
//! extracted outside this repository) and report what passes:
//!
//!     cargo run -p firn-syntax --example lang_parse_suite -- /path/to/tests/functional/lang
//!
//! `parse-okay-*.nix` must parse and print as their `.exp`; `parse-fail-*.nix` must fail;
//! every `eval-*.nix` must parse, except `eval-fail-*` whose expected error is a parse error.

use std::path::Path;

use firn_syntax::{parse, show::show, Interner, Source};

fn main() {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: lang_parse_suite DIR");
        std::process::exit(2);
    };
    let src = Source {
        origin: "«stdin»",
        base_dir: "/pwd",
        home: "/home/user",
        pipe_operators: false,
        lints: Default::default(),
    };
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("reading the test directory")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".nix"))
        .collect();
    names.sort();
    let (mut pass, mut fail) = (0, 0);
    let (mut err_same, mut err_total) = (0, 0);
    let mut err_diffs = Vec::new();
    let mut failures = Vec::new();
    for n in &names {
        let path = Path::new(&dir).join(n);
        // As bytes: sources need not be UTF-8 (see `firn_syntax::bytes`).
        let Ok(text) = std::fs::read(&path).map(firn_syntax::bytes::decode) else {
            continue;
        };
        let stem = n.trim_end_matches(".nix");
        let mut interner = Interner::default();
        let result = parse(&text, &src, &mut interner);
        let ok = if stem.starts_with("parse-okay-") {
            let exp = std::fs::read_to_string(Path::new(&dir).join(format!("{stem}.exp")))
                .unwrap_or_default();
            match &result {
                Ok(e) => {
                    let got = show(&interner, e);
                    if got.trim_end() == exp.trim_end() {
                        true
                    } else {
                        failures.push(format!(
                            "{stem}: got\n  {got}\nexpected\n  {}",
                            exp.trim_end()
                        ));
                        false
                    }
                }
                Err(e) => {
                    failures.push(format!("{stem}: parse error {}", e.msg));
                    false
                }
            }
        } else if stem.starts_with("parse-fail-") {
            if let Err(e) = &result {
                // The next step: the message text, as `.err.exp` has it.
                if let Ok(exp) =
                    std::fs::read_to_string(Path::new(&dir).join(format!("{stem}.err.exp")))
                {
                    err_total += 1;
                    let got = firn_syntax::render_error(e, &text, "«stdin»");
                    if got.trim_end() == exp.trim_end() {
                        err_same += 1;
                    } else {
                        err_diffs.push(format!("{stem}:\n{got}--- expected:\n{exp}"));
                    }
                }
            }
            if result.is_ok() {
                failures.push(format!("{stem}: parsed but should fail"));
            }
            result.is_err()
        } else if stem.starts_with("eval-") {
            let err_exp = std::fs::read_to_string(Path::new(&dir).join(format!("{stem}.err.exp")))
                .unwrap_or_default();
            // A parse-time error has no "… while evaluating" trace.
            let first = err_exp.lines().next().unwrap_or("");
            let expect_parse_error = stem.starts_with("eval-fail-")
                && !err_exp.contains('…')
                && [
                    "syntax error",
                    "already defined",
                    "duplicate formal",
                    "dynamic attributes not allowed",
                    "experimental Nix feature",
                    "invalid integer",
                    "path has a trailing slash",
                    "undefined variable",
                ]
                .iter()
                .any(|p| first.contains(p));
            match (&result, expect_parse_error) {
                (Ok(_), false) | (Err(_), true) => true,
                (Err(e), false) => {
                    failures.push(format!("{stem}: parse error {}", e.msg));
                    false
                }
                (Ok(_), true) => {
                    failures.push(format!(
                        "{stem}: parsed but its expected error is a parse error"
                    ));
                    false
                }
            }
        } else {
            continue;
        };
        if ok {
            pass += 1;
        } else {
            fail += 1;
        }
    }
    for f in &failures {
        println!("FAIL {f}");
    }
    if std::env::var_os("SHOW_ERROR_DIFFS").is_some() {
        for d in &err_diffs {
            println!("ERROR TEXT {d}");
        }
    }
    println!("parse-fail error text identical to .err.exp: {err_same} of {err_total}");
    println!("{pass} passed, {fail} failed");
}
