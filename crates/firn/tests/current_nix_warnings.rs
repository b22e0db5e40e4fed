//! What current Nix (newer than the CppNix 2.8 oracle, which has none of these) prints on
//! stderr while an evaluation succeeds, as the upstream language tests expect it: the layout
//! of `builtins.warn`, `convertHash`'s old format name, the legacy `e or` calls, the
//! derivation attributes `__structuredAttrs` disables; and `fromTOML`'s timestamps behind
//! `parse-toml-timestamps`.

mod common;

use common::*;

/// `nix-instantiate --eval --strict` of file `text` (written to a fresh directory, as
/// `/d/f.nix` is shown) with `args` first: stdout and stderr, which must succeed.
fn eval_file(args: &[&str], text: &str) -> (String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let f = dir.path().join("f.nix");
    std::fs::write(&f, text).expect("write");
    let out = firn("nix-instantiate")
        .args(args)
        .args(["--eval", "--strict"])
        .arg(&f)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr)
        .replace(&*dir.path().to_string_lossy(), "/d")
        .to_string();
    assert!(out.status.success(), "{text}: {stderr}");
    (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

#[test]
fn warn_indents_continued_lines_under_the_first() {
    let (out, err) = eval_file(&[], r#"builtins.warn "foo\nbar  \n\nbaz" 1"#);
    assert_eq!(out, "1\n");
    assert_eq!(
        err,
        "evaluation warning: foo\n                    bar\n\n                    baz\n"
    );
    // A message that starts with a line break is left as it is.
    let (_, err) = eval_file(&[], r#"builtins.warn "\nfoo\nbar" null"#);
    assert_eq!(err, "evaluation warning:\nfoo\nbar\n");
}

#[test]
fn convert_hash_warns_about_base32() {
    let (out, err) = eval_file(
        &[],
        r#"builtins.convertHash { hash = "sha1-qUqP5cyxm6YcTAhz05Hph5gvu9M="; toHashFormat = "base32"; }"#,
    );
    assert_eq!(out, "\"sfxjz647x68x6wq89hfad6xirkjqyjm9\"\n");
    assert_eq!(
        err,
        "warning: \"base32\" is a deprecated alias for hash format \"nix32\".\n"
    );
    let (_, err) = eval_file(
        &[],
        r#"builtins.convertHash { hash = "sha1-qUqP5cyxm6YcTAhz05Hph5gvu9M="; toHashFormat = "nix32"; }"#,
    );
    assert_eq!(err, "");
}

#[test]
fn legacy_or_calls_warn_where_their_meaning_will_change() {
    let (out, err) = eval_file(
        &[],
        "let or = 1; g = x: x; in [\n  (g (g or))\n  ([ g or ])\n  (map or [ ])\n]\n",
    );
    assert_eq!(out, "[ 1 [ 1 ] [ ] ]\n");
    assert_eq!(
        err,
        "warning: at /d/f.nix:3:6: This expression uses `or` as an identifier in a way that \
         will change in a future Nix release.\nWrap this entire expression in parentheses to \
         preserve its current meaning:\n    (g or)\nGive feedback at \
         https://github.com/NixOS/nix/pull/11121\n"
    );
}

#[test]
fn structured_attrs_disable_legacy_output_checks_with_a_warning() {
    let text = "(derivationStrict {\n  name = \"d\";\n  system = \"x\";\n  builder = \"/b\";\n  \
                __structuredAttrs = true;\n  maxSize = 1;\n}).out\n";
    let (_, err) = eval_file(&[], text);
    assert_eq!(
        err,
        "warning:\n         … while evaluating derivation 'd'\n\n         warning: \
         'structuredAttrs' disables the effect of the derivation attribute 'maxSize'; use \
         'outputChecks.<output>.maxSize' instead\n         at /d/f.nix:6:3:\n              5|   \
         __structuredAttrs = true;\n              6|   maxSize = 1;\n               |   ^\n\
         \x20             7| }).out\n"
    );
    // Without structured attributes, `maxSize` is an attribute as before; `__json` set by
    // hand is deprecated.
    let (_, err) = eval_file(&[], &text.replace("__structuredAttrs = true", "x = 1"));
    assert_eq!(err, "");
    let (_, err) = eval_file(
        &[],
        &text.replace("__structuredAttrs = true", "__json = \"{}\""),
    );
    assert!(
        err.contains("warning: setting structured attributes via '__json' is deprecated"),
        "{err}"
    );
}

#[test]
fn toml_timestamps_with_the_experimental_feature() {
    let text = "builtins.fromTOML ''\n  a = 1979-05-27 07:32:00.12Z\n  b = 1979-05-27t00:32:00.1234567891\n  \
                c = 1979-05-27\n  d = 07:32:00.123400\n  e = 1979-05-27T00:32:00-07:00\n''\n";
    let (out, err) = eval_file(
        &["--extra-experimental-features", "parse-toml-timestamps"],
        text,
    );
    assert_eq!(err, "");
    assert_eq!(
        out,
        "{ a = { _type = \"timestamp\"; value = \"1979-05-27T07:32:00.120Z\"; }; \
         b = { _type = \"timestamp\"; value = \"1979-05-27T00:32:00.123456789\"; }; \
         c = { _type = \"timestamp\"; value = \"1979-05-27\"; }; \
         d = { _type = \"timestamp\"; value = \"07:32:00.123400\"; }; \
         e = { _type = \"timestamp\"; value = \"1979-05-27T00:32:00-07:00\"; }; }\n"
    );
    // Without it, as CppNix 2.8: an error.
    let out = firn("nix-instantiate")
        .args([
            "--eval",
            "--strict",
            "-E",
            "builtins.fromTOML \"a = 1979-05-27\"",
        ])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("while parsing TOML: Dates and times are not supported"));
}
