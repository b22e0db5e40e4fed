//! `builtins.exec`, against CppNix 2.8: present only with
//! `allow-unsafe-native-code-during-evaluation`, the program's output evaluated as Nix, and
//! the same messages for a program that fails, is killed, cannot be run, or prints what
//! does not parse or evaluate.

mod common;

use common::*;

/// `nix-instantiate --eval --strict -E expr` of one side, native code allowed or not.
fn eval(firn_side: bool, native: bool, expr: &str) -> Outcome {
    let e = env();
    let mut c = tool_of(firn_side, "nix-instantiate");
    c.args(["--store", &e.store(side_name(firn_side))])
        .args([
            "--option",
            "allow-unsafe-native-code-during-evaluation",
            if native { "true" } else { "false" },
        ])
        .args(["--eval", "--strict", "-E", expr]);
    outcome(&mut c)
}

/// The message of the error (its last `error:` line), without colours.
fn message(o: &Outcome) -> String {
    let plain = o
        .stderr
        .replace("\x1b[", "\u{1}")
        .split('\u{1}')
        .enumerate()
        .fold(String::new(), |mut acc, (i, part)| {
            // Drop the `…m` of each escape sequence but the text before the first.
            let text = if i == 0 {
                part
            } else {
                part.split_once('m').map_or("", |(_, t)| t)
            };
            acc.push_str(text);
            acc
        });
    plain
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("error: "))
        .next_back()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn exec_equals_cppnix() {
    for native in [false, true] {
        let (c, f) = (
            eval(false, native, "builtins ? exec"),
            eval(true, native, "builtins ? exec"),
        );
        assert_eq!(c.stdout, f.stdout, "{}", f.stderr);
        assert_eq!(f.stdout.trim(), if native { "true" } else { "false" });
    }
    for expr in [
        r#"builtins.exec [ "echo" "{ a = 1; b = [ \"x\" (1 + 2) ]; }" ]"#,
        r#"builtins.exec [ "sh" "-c" "echo $((6 * 7))" ]"#,
        r#"(builtins.exec [ "echo" "x: x * 2" ]) 21"#,
        r#"builtins.exec [ "printf" "%s" "\"${toString 5}\"" ]"#,
    ] {
        let (c, f) = (eval(false, true, expr), eval(true, true, expr));
        assert_eq!(
            (c.code, &c.stdout),
            (Some(0), &f.stdout),
            "{expr}: {}",
            f.stderr
        );
        assert_eq!(f.code, Some(0), "{expr}");
    }
    for expr in [
        "builtins.exec [ ]",
        r#"builtins.exec [ "false" ]"#,
        r#"builtins.exec [ "sh" "-c" "kill -9 $$" ]"#,
        r#"builtins.exec [ "firn-test-no-such-program" ]"#,
        r#"builtins.exec [ "echo" "throw \"from the output\"" ]"#,
        r#"builtins.exec [ "echo" "1 +" ]"#,
    ] {
        let (c, f) = (eval(false, true, expr), eval(true, true, expr));
        assert_eq!((c.code, f.code), (Some(1), Some(1)), "{expr}: {}", f.stderr);
        assert_eq!(
            message(&c),
            message(&f),
            "{expr}:\n{}\n{}",
            c.stderr,
            f.stderr
        );
    }
    // Arguments of the wrong type fail on both sides (firn words type errors as current
    // Nix does: "expected a list but found a string").
    for expr in [r#"builtins.exec "echo""#, "builtins.exec [ 1 ]"] {
        let (c, f) = (eval(false, true, expr), eval(true, true, expr));
        assert_eq!((c.code, f.code), (Some(1), Some(1)), "{expr}: {}", f.stderr);
    }
    // A program that cannot be run: the reason first, as CppNix's child prints it.
    let f = eval(
        true,
        true,
        r#"builtins.exec [ "firn-test-no-such-program" ]"#,
    );
    assert!(
        f.stderr
            .contains("executing 'firn-test-no-such-program': No such file or directory"),
        "{}",
        f.stderr
    );
}
