//! `builtins.parseFlakeRef` and `builtins.flakeRefToString` through `nix-instantiate --eval`.
//! CppNix 2.8 (the oracle elsewhere) lacks them, so the expected outputs are upstream Nix's
//! (its `tests/functional/lang` cases and the flake reference unit tests).

mod common;

use common::*;

fn eval(expr: &str) -> std::process::Output {
    firn("nix-instantiate")
        .args(["--eval", "--strict", "-E", expr])
        .output()
        .expect("running nix-instantiate")
}

#[test]
fn parse_and_print_agree_with_upstream() {
    let cases = [
        (
            r#"builtins.parseFlakeRef "github:NixOS/nixpkgs/23.05?dir=lib""#,
            r#"{ dir = "lib"; owner = "NixOS"; ref = "23.05"; repo = "nixpkgs"; type = "github"; }"#,
        ),
        (
            r#"builtins.flakeRefToString { type = "github"; owner = "NixOS"; repo = "nixpkgs"; ref = "23.05"; dir = "lib"; }"#,
            r#""github:NixOS/nixpkgs/23.05?dir=lib""#,
        ),
        (
            r#"builtins.parseFlakeRef "nixpkgs/nixos-23.05""#,
            r#"{ id = "nixpkgs"; ref = "nixos-23.05"; type = "indirect"; }"#,
        ),
        (
            r#"builtins.parseFlakeRef "/foo/bar?revCount=123&lastModified=5""#,
            r#"{ lastModified = 5; path = "/foo/bar"; revCount = 123; type = "path"; }"#,
        ),
        (
            r#"builtins.parseFlakeRef "git+https://example.org/repo?ref=main&shallow=1""#,
            r#"{ ref = "main"; shallow = true; type = "git"; url = "https://example.org/repo"; }"#,
        ),
        (
            r#"builtins.parseFlakeRef "https://example.org/x.tar.gz""#,
            r#"{ type = "tarball"; url = "https://example.org/x.tar.gz"; }"#,
        ),
        (
            r#"map (s: builtins.flakeRefToString (builtins.parseFlakeRef s)) [ "nixpkgs" "/foo bar/baz?dir=bla space" "git+file:///repo?rev=A3A3DDA3BACF61E8A39258A0ED9C924EECA8E293&ref=main" "http://localhost:8181/test/+3d.tar.gz" ]"#,
            r#"[ "flake:nixpkgs" "path:/foo%20bar/baz?dir=bla%20space" "git+file:///repo?ref=main&rev=a3a3dda3bacf61e8a39258a0ed9c924eeca8e293" "http://localhost:8181/test/%2B3d.tar.gz" ]"#,
        ),
        (
            r#"builtins.flakeRefToString { type = "path"; path = "/x"; lastModified = 7; __final = true; }"#,
            r#""path:/x?lastModified=7""#,
        ),
    ];
    for (expr, want) in cases {
        let out = eval(expr);
        assert!(
            out.status.success(),
            "{expr}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim_end(),
            want,
            "{expr}"
        );
    }
}

#[test]
fn errors_as_upstream() {
    let cases = [
        (
            r#"builtins.parseFlakeRef "./foo""#,
            "flake reference './foo' is not an absolute path",
        ),
        (
            r#"builtins.parseFlakeRef "/foo#bar""#,
            "unexpected fragment 'bar' in flake reference '/foo#bar'",
        ),
        (
            r#"builtins.parseFlakeRef "foo:bar""#,
            "input 'foo:bar' is unsupported",
        ),
        (
            r#"let n = -1; in builtins.seq n (builtins.flakeRefToString { type = "github"; owner = "NixOS"; repo = n; ref = "23.05"; dir = "lib"; })"#,
            "negative value given for flake ref attr repo: -1",
        ),
        (
            r#"builtins.flakeRefToString { type = "github"; owner = [ ]; repo = "r"; }"#,
            "flake reference attribute sets may only contain integers, Booleans, and strings, but attribute 'owner' is a list",
        ),
        (
            r#"builtins.flakeRefToString { type = "foo"; }"#,
            r#"cannot show unsupported input '{"type":"foo"}'"#,
        ),
        (
            r#"builtins.flakeRefToString { owner = "o"; }"#,
            "'type' attribute to specify input scheme is required but not provided",
        ),
        (
            r#"builtins.flakeRefToString { type = "github"; owner = "o"; repo = "r"; url = "u"; }"#,
            "input attribute 'url' not supported by scheme 'github'",
        ),
    ];
    for (expr, msg) in cases {
        let out = eval(expr);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{expr}: {stderr}");
        assert!(stderr.contains(msg), "{expr}: {stderr}");
    }
}
