//! `nix-instantiate --parse`: parse success and failure agree with CppNix 2.8 on a corpus of
//! snippets (2.8 prints the AST in an older format, so only the outcome is compared), and the
//! printed form is checked on cases where both formats agree.

mod common;

use common::*;

const CORPUS: &[&str] = &[
    "1",
    "1.5",
    ".5",
    "1.",
    "0.5e10",
    "1e5",
    "\"s\"",
    "''s''",
    "x: x",
    "{ a, b ? 1, ... }: a",
    "args@{ a }: a",
    "{ a }@args: a",
    "{ }: 1",
    "{ ... }: 1",
    "let a = 1; in a",
    "let { body = 1; }",
    "rec { a = 1; b = a; }",
    "{ a.b.c = 1; a.b.d = 2; }",
    "{ \"a\" = 1; }",
    "{ ${\"a\"} = 1; }",
    "x: { ${x} = 1; }",
    "[ 1 2 3 ]",
    "[ (x: x) ]",
    "x: x.a.b or 1",
    "x: x ? a.b",
    "x: -x",
    "x: !x",
    "1 + 2 * 3 - 4 / 5",
    "x: y: x < y",
    "x: y: x <= y && x >= y || x > y",
    "a: b: a -> b",
    "a: b: a // b",
    "a: b: a ++ b",
    "a: b: a == b",
    "a: b: a != b",
    "if true then 1 else 2",
    "with builtins; head",
    "assert true; 1",
    "./a/b",
    "/abs/path",
    "~/home",
    "<nixpkgs>",
    "<nixpkgs/lib>",
    "http://example.org/x?y=z",
    "x: ./a/${x}/b",
    "x: \"a${x}b\"",
    "x: ''\n  a\n  ${x}\n''",
    "''\n  $${x}\n''",
    "\"\\n\\t\\\\\\\"\"",
    "__curPos",
    "map or [ ]",
    "x: x.or",
    "{ or = 1; }",
    "{ inherit (builtins) head; }",
    "let inherit (builtins) head; in head",
    "a: a.\"b c\"",
    "/* comment */ 1 # trailing",
    "x:x",
    "{ a = 1; } // { b = 2; }",
    // Failures.
    "",
    "1 +",
    "{",
    "}",
    "[ 1",
    "x:",
    "let a = 1 in a",
    "{ a = 1; a = 2; }",
    "{ a.b = 1; a = 2; }",
    "{ a, a }: 1",
    "a@{ a }: 1",
    "let ${\"a\" + \"b\"} = 1; in 1",
    "x",
    "let a = b; in a",
    "1 == 2 == 3",
    "1 < 2 < 3",
    "./a/",
    "\"unterminated",
    "''unterminated",
    "/* unterminated",
    "9223372036854775808",
    "{ a = 1 }",
    "if 1 then 2",
    "a: b: a b c d,",
    "x: x.",
    "é",
];

#[test]
fn parse_outcomes_agree_with_cppnix() {
    for expr in CORPUS {
        let ours = firn("nix-instantiate")
            .args(["--parse", "-E", expr])
            .output()
            .unwrap();
        let theirs = cppnix("nix-instantiate")
            .args(["--parse", "-E", expr])
            .output()
            .unwrap();
        assert_eq!(
            ours.status.success(),
            theirs.status.success(),
            "{expr:?}: firn {}, CppNix {}\nfirn: {}\nCppNix: {}",
            ours.status,
            theirs.status,
            String::from_utf8_lossy(&ours.stderr),
            String::from_utf8_lossy(&theirs.stderr)
        );
        if !ours.status.success() {
            assert_eq!(ours.status.code(), Some(1), "{expr:?}");
            assert!(
                String::from_utf8_lossy(&ours.stderr).starts_with("error: "),
                "{expr:?}"
            );
        }
    }
}

#[test]
fn parse_output_and_stdin() {
    let out = run_with_input(
        firn("nix-instantiate").args(["--parse", "-"]),
        b"{ a.b = 1; c = [ 1 2 ]; }",
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "{ a = { b = 1; }; c = [ (1) (2) ]; }\n"
    );
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("default.nix");
    std::fs::write(&f, "x: ./sibling").unwrap();
    let out = ok_str(firn("nix-instantiate").arg("--parse").arg(tmp.path()));
    assert_eq!(out, format!("(x: {}/sibling)\n", tmp.path().display()));
    let out = firn("nix-instantiate")
        .args(["--parse", "-E", "let\n  a = ;\nin a"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: syntax error, unexpected ';'\n       at «string»:2:7:\n            1| let\n            2|   a = ;\n             |       ^\n            3| in a\n"
    );
}
