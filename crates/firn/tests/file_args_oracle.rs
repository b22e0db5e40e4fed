//! Command-line files and attribute paths as CppNix 2.8 takes them, compared on the same
//! inputs: `nix-instantiate`'s and `nix eval`'s file arguments (`<name>` from the search
//! path, tarball URLs, `-` for stdin), search path entries that are URLs (downloaded; in
//! `NIX_PATH`, split around the URL's colons) or missing (skipped with a warning), the
//! steps of an attribute path (auto-arguments, list indices, CppNix's errors), when
//! `--eval` calls the result, and `nix eval`'s `--arg`, `--argstr`, `-I`, `--read-only` and
//! `--write-to`.

mod common;
use common::*;

use std::path::Path;
use std::process::Command;

/// What a run printed: its exit code, its output (trimmed), and its error's last line.
fn result(c: &mut Command) -> (Option<i32>, String, String) {
    let out = c.output().expect("running a command");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let error = stderr
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with("error: "))
        .map(|l| l.trim().to_string())
        .unwrap_or_default();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).trim_end().to_string(),
        error,
    )
}

/// A tool of either side, its store and caches in `dir` (its own for each side), run in
/// `cwd`.
fn tool(firn_side: bool, name: &str, dir: &Path, cwd: &Path) -> Command {
    let side = dir.join(side_name(firn_side));
    let mut c = tool_of(firn_side, name);
    c.current_dir(cwd)
        .env("XDG_CACHE_HOME", side.join("cache"))
        .env("NIX_PATH", "")
        .args(["--store", &side.join("store").to_string_lossy()]);
    c
}

/// A tarball of `src/` holding `default.nix` (`{ v = 42; }`) and `sub/x.nix`.
fn tarball(dir: &Path) -> Vec<u8> {
    let root = dir.join("tar");
    std::fs::create_dir_all(root.join("src/sub")).expect("mkdir");
    std::fs::write(root.join("src/default.nix"), "{ v = 42; }").expect("write");
    std::fs::write(root.join("src/sub/x.nix"), "\"sub\"").expect("write");
    let out = Command::new("tar")
        .args(["-C", &root.to_string_lossy(), "-cf", "-", "src"])
        .output()
        .expect("tar");
    assert!(out.status.success());
    gzip(&out.stdout)
}

/// A tool's name, its arguments, and variables of its environment.
type Case<'a> = (&'a str, Vec<String>, Vec<(&'a str, String)>);

#[test]
fn file_arguments_search_paths_and_attr_paths_as_cppnix() {
    let e = env();
    let dir = &e.dir;
    std::fs::create_dir_all(dir.join("sp/foo")).expect("mkdir");
    std::fs::write(
        dir.join("sp/foo/default.nix"),
        "{ a ? 1 }: { x = { b ? 2 }: { y = a + b; l = [ 1 { z = b; } ]; }; n = 3; f = q: q; }",
    )
    .expect("write");
    let tgz = dir.join("t.tar.gz");
    std::fs::write(&tgz, tarball(dir)).expect("write");
    let file_url = format!("file://{}", tgz.display());
    let port = http_server(vec![("/t.tar.gz", tarball(dir))]);
    let http_url = format!("http://127.0.0.1:{port}/t.tar.gz");
    let sp = dir.join("sp").to_string_lossy().into_owned();
    let foo = dir
        .join("sp/foo/default.nix")
        .to_string_lossy()
        .into_owned();
    let missing = dir.join("nonexistent").to_string_lossy().into_owned();

    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let mut cases: Vec<Case> = vec![
        // `--eval` calls the value only when there are `--arg`s; `-A`'s steps call it with
        // its defaults.
        ("nix-instantiate", s(&["--eval", &foo]), vec![]),
        ("nix-instantiate", s(&["--eval", "-A", "x", &foo]), vec![]),
        ("nix-instantiate", s(&["--eval", "-A", "x.y", &foo]), vec![]),
        (
            "nix-instantiate",
            s(&["--eval", "--arg", "c", "1", "-A", "x", &foo]),
            vec![],
        ),
        (
            "nix-instantiate",
            s(&["--eval", "--arg", "a", "5", "-A", "x.l.1.z", &foo]),
            vec![],
        ),
        // An `--arg` is evaluated only if it is used.
        (
            "nix-instantiate",
            s(&["--eval", "--arg", "q", "throw \"unused\"", "-A", "n", &foo]),
            vec![],
        ),
        // The errors of a step.
        ("nix-instantiate", s(&["--eval", "-A", "x.w", &foo]), vec![]),
        (
            "nix-instantiate",
            s(&["--eval", "-A", "x.l.5", &foo]),
            vec![],
        ),
        (
            "nix-instantiate",
            s(&["--eval", "-A", "x.l.q", &foo]),
            vec![],
        ),
        ("nix-instantiate", s(&["--eval", "-A", "n.0", &foo]), vec![]),
        (
            "nix-instantiate",
            s(&["--eval", "-A", "x..y", &foo]),
            vec![],
        ),
        (
            "nix-instantiate",
            s(&["--eval", "-A", "x.\"y", &foo]),
            vec![],
        ),
        // File arguments: from the search path, and tarballs by URL.
        (
            "nix-instantiate",
            s(&["--eval", "-I", &sp, "<foo>", "-A", "n"]),
            vec![],
        ),
        ("nix-instantiate", s(&["--eval", "<foo>"]), vec![]),
        (
            "nix-instantiate",
            s(&["--eval", &file_url, "-A", "v"]),
            vec![],
        ),
        (
            "nix-instantiate",
            s(&["--eval", &http_url, "-A", "v"]),
            vec![],
        ),
        (
            "nix-instantiate",
            s(&["--parse", "-I", &sp, "<foo>"]),
            vec![],
        ),
        // URL entries of the search path, downloaded; in NIX_PATH around their colons.
        (
            "nix-instantiate",
            s(&[
                "--eval",
                "--strict",
                "-E",
                "[ (import <t>).v (import <t/sub/x.nix>) ]",
            ]),
            vec![("NIX_PATH", format!("t={file_url}:{sp}"))],
        ),
        (
            "nix-instantiate",
            s(&["--eval", "--strict", "-E", "builtins.nixPath"]),
            vec![("NIX_PATH", format!("t={file_url}:{sp}:channel:x::/y:"))],
        ),
        (
            "nix-instantiate",
            s(&[
                "--eval",
                "-I",
                &format!("t={http_url}"),
                "-E",
                "(import <t>).v",
            ]),
            vec![],
        ),
        // An entry that does not exist or cannot be downloaded is skipped.
        (
            "nix-instantiate",
            s(&[
                "--eval",
                "-I",
                &missing,
                "-I",
                &sp,
                "-E",
                "(import <foo> { }).n",
            ]),
            vec![],
        ),
        (
            "nix-instantiate",
            s(&[
                "--eval",
                "-I",
                &format!("foo=http://127.0.0.1:{port}/nope.tar.gz"),
                "-I",
                &sp,
                "-E",
                "(import <foo> { }).n",
            ]),
            vec![],
        ),
        // `nix eval`: the same files and steps, and its own options.
        (
            "nix",
            s(&["eval", "-f", &foo, "x.y", "--arg", "a", "3"]),
            vec![],
        ),
        (
            "nix",
            s(&["eval", "-f", &foo, "x.y", "--argstr", "b", "s"]),
            vec![],
        ),
        ("nix", s(&["eval", "-f", &foo]), vec![]),
        ("nix", s(&["eval", "-f", &foo, "x"]), vec![]),
        ("nix", s(&["eval", "-f", &foo, "x.l.1.z", "--json"]), vec![]),
        ("nix", s(&["eval", "-f", &foo, "x.l.7"]), vec![]),
        ("nix", s(&["eval", "-f", &foo, "x.yy"]), vec![]),
        ("nix", s(&["eval", "-I", &sp, "-f", "<foo>", "n"]), vec![]),
        ("nix", s(&["eval", "-f", &file_url, "v"]), vec![]),
        (
            "nix",
            s(&[
                "eval",
                "--expr",
                "{ a = [ 1 2 ]; }",
                "a.1",
                "--apply",
                "x: x * 3",
            ]),
            vec![],
        ),
        (
            "nix",
            s(&[
                "eval",
                "--read-only",
                "--expr",
                "(derivation { name = \"a\"; builder = \"b\"; system = \"c\"; }).drvPath",
            ]),
            vec![],
        ),
        (
            "nix",
            s(&[
                "eval",
                "--impure",
                "-I",
                &sp,
                "--expr",
                "(import <foo> { }).n",
            ]),
            vec![],
        ),
    ];
    // Write-to: a set of strings as a tree; anything else is an error.
    for (i, expr) in ["{ a = \"x\"; b.c = \"y\"; }", "\"s\"", "{ a = 1; }", "1"]
        .iter()
        .enumerate()
    {
        cases.push((
            "nix",
            s(&["eval", "--write-to", &format!("OUT/w{i}"), "--expr", expr]),
            vec![],
        ));
    }
    for (name, args, envs) in &cases {
        let mut seen = Vec::new();
        let mut trees = Vec::new();
        for firn_side in [false, true] {
            let out = dir.join("out").join(side_name(firn_side));
            std::fs::create_dir_all(&out).expect("mkdir");
            let mut c = tool(firn_side, name, dir, dir);
            for a in args {
                c.arg(a.replace("OUT/", &format!("{}/", out.display())));
            }
            for (k, v) in envs {
                c.env(k, v);
            }
            seen.push(result(&mut c));
            trees.push(listing(&out));
        }
        assert_eq!(seen[1], seen[0], "{name} {args:?} {envs:?}");
        assert_eq!(trees[1], trees[0], "{name} {args:?}");
    }

    // The warnings for entries skipped.
    let warned = |firn_side: bool| {
        let out = tool(firn_side, "nix-instantiate", dir, dir)
            .args(["--eval", "-I", &missing, "-I", &sp, "-E", "<foo>"])
            .output()
            .expect("run");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let (cpp, ours) = (warned(false), warned(true));
    let expected = format!("warning: Nix search path entry '{missing}' does not exist, ignoring");
    assert!(cpp.contains(&expected), "{cpp}");
    assert!(ours.contains(&expected), "{ours}");
    // An existing `--write-to` path is refused, and left as it was.
    let there = dir.join("there");
    std::fs::write(&there, "keep").expect("write");
    let (code, _, error) = result(
        tool(true, "nix", dir, dir)
            .args(["eval", "--write-to"])
            .arg(&there)
            .args(["--expr", "\"s\""]),
    );
    assert_eq!(code, Some(1));
    assert_eq!(
        error,
        format!("error: path '{}' already exists", there.display())
    );
    assert_eq!(std::fs::read_to_string(&there).expect("read"), "keep");
}

/// Every file under `dir` with its contents, and every directory, sorted (relative paths).
fn listing(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let p = entry.path();
            let rel = p
                .strip_prefix(dir)
                .map(|r| r.to_string_lossy().into_owned())
                .unwrap_or_default();
            if p.is_dir() {
                out.push(format!("{rel}/"));
                todo.push(p);
            } else {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                out.push(format!("{rel}: {text}"));
            }
        }
    }
    out.sort();
    out
}
