//! `builtins.getFlake` against CppNix 2.8 (`flakes` on), each in a chroot store and fetcher
//! cache of its own, on the same flakes: a top-level flake with a path input that has its
//! own lock file, a Git input, a non-flake input, an input of an input overridden by
//! `follows`, and an input named only in the `outputs` pattern, locked by CppNix's
//! `nix flake lock`. With the lock files both give the same outputs and source attributes
//! (`outPath`, `narHash`, `rev`, `revCount`, `lastModified`...) for every node. Without the
//! top-level lock file CppNix 2.8 refuses; firn locks in memory as current Nix does (with
//! its warning), and gets the same inputs. Bad flakes fail with the messages of the flake
//! module.

mod common;
use common::*;

use std::path::Path;
use std::process::Command;

const DATE: &str = "2026-11-01T12:00:00Z";

use common::flake_tool as tool;

/// Evaluate `expr` strictly; the output, or the error's last line.
fn eval(firn_side: bool, dir: &Path, expr: &str, impure: bool) -> (bool, String, String) {
    let mut c = tool(firn_side, "nix-instantiate", dir);
    c.args(["--eval", "--strict", "-E", expr]);
    if !impure {
        c.args(["--option", "pure-eval", "true"]);
    }
    let out = c.output().expect("running nix-instantiate");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim_end().to_string(),
        match out.status.success() {
            true => String::from_utf8_lossy(&out.stderr).into_owned(),
            false => last_error(&out.stderr),
        },
    )
}

/// `run` for CppNix 2.8's side, then for firn's; firn's result must equal CppNix's (`what`
/// names the case in the failure), which is returned.
fn agree<T: PartialEq + std::fmt::Debug>(
    what: impl std::fmt::Display,
    mut run: impl FnMut(bool) -> T,
) -> T {
    let cppnix = run(false);
    let firn = run(true);
    assert_eq!(firn, cppnix, "{what}");
    cppnix
}

/// The names in directory `dir`, sorted.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// How `c` ended: its exit code, standard output and standard error.
fn ran(c: &mut Command) -> (Option<i32>, String, String) {
    let o = outcome(c);
    (o.code, o.stdout, o.stderr)
}

/// The last line of `stderr` that starts with `error: ` (indented or not), or "".
fn last_error(stderr: &[u8]) -> String {
    String::from_utf8_lossy(stderr)
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with("error: "))
        .unwrap_or("")
        .to_string()
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

#[test]
fn get_flake_agrees_with_cppnix() {
    let e = env();
    let dir = &e.dir;
    let (lib, mid, top, data) = (
        dir.join("lib"),
        dir.join("mid"),
        dir.join("top"),
        dir.join("data"),
    );
    // A flake in a Git repository, two commits.
    write(
        &lib.join("flake.nix"),
        "{ description = \"lib\"; outputs = { self }: { v = \"lib-1\"; }; }\n",
    );
    git(&lib, &["init", "-q", "-b", "main"], DATE);
    git(&lib, &["add", "."], DATE);
    git(&lib, &["commit", "-q", "-m", "one"], DATE);
    write(
        &lib.join("flake.nix"),
        "{ description = \"lib\"; outputs = { self }: { v = \"lib-2\"; n = self.revCount; }; }\n",
    );
    git(
        &lib,
        &["commit", "-q", "-am", "two"],
        "2026-11-02T12:00:00Z",
    );
    let lib_url = format!("git+file://{}", lib.display());
    // A path flake with its own lock file, taking `lib` at its first commit.
    let first = git(&lib, &["rev-list", "--max-parents=0", "HEAD"], DATE);
    write(
        &mid.join("flake.nix"),
        &format!(
            "{{\n  inputs.lib.url = \"{lib_url}?rev={first}\";\n  outputs = {{ self, lib }}: {{ w = lib.v; libRev = lib.rev; }};\n}}\n"
        ),
    );
    write(&data.join("file"), "data\n");
    write(
        &top.join("flake.nix"),
        &format!(
            r#"{{
  description = "top";
  inputs = {{
    mid.url = "path:{mid}";
    lib2.url = "{lib_url}";
    mid.inputs.lib.follows = "lib2";
    data = {{ url = "path:{data}"; flake = false; }};
    same.follows = "mid";
  }};
  outputs = {{ self, mid, lib2, data, same, ... }}: {{
    w = mid.w;
    libRev = mid.libRev;
    file = builtins.readFile (data + "/file");
    sameW = same.w;
    topNames = builtins.attrNames self;
  }};
}}
"#,
            mid = mid.display(),
            data = data.display()
        ),
    );
    for flake in [&mid, &top] {
        let out = tool(false, "nix", dir)
            .args(["flake", "lock"])
            .arg(format!("path:{}", flake.display()))
            .output()
            .expect("nix flake lock");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let node = |n: &str| {
        format!(
            "{{ inherit ({n}) outPath narHash lastModified lastModifiedDate; rev = {n}.rev or null; revCount = {n}.revCount or null; names = builtins.attrNames {n}; }}"
        )
    };
    let get = format!("builtins.getFlake \"path:{}\"", top.display());
    let inputs = format!(
        "let f = {get}; in {{ inherit (f) w libRev file sameW; mid = {}; lib2 = {}; data = {}; midLib = {}; inputs = builtins.attrNames f.inputs; }}",
        node("f.inputs.mid"),
        node("f.inputs.lib2"),
        node("f.inputs.data"),
        node("f.inputs.mid.inputs.lib"),
    );
    let whole = format!(
        "let f = {get}; in {{ top = {}; names = builtins.attrNames f; out = f.outputs.topNames; src = builtins.attrNames f.sourceInfo; }}",
        node("f")
    );
    for expr in [&inputs, &whole] {
        let cpp = eval(false, dir, expr, true);
        assert!(cpp.0, "CppNix: {}", cpp.2);
        let ours = eval(true, dir, expr, true);
        assert!(ours.0, "firn: {}", ours.2);
        assert_eq!(ours.1, cpp.1, "{expr}");
    }
    // The follows took: `mid`'s `lib` is `lib2`, at the newest commit.
    let cpp = eval(false, dir, &inputs, true).1;
    let second = git(&lib, &["rev-parse", "HEAD"], DATE);
    assert!(cpp.contains(&format!("libRev = \"{second}\"")), "{cpp}");

    // A locked reference in pure mode (both), an unlocked one refused.
    let top_nar = eval(
        false,
        dir,
        &format!("(builtins.getFlake \"path:{}\").narHash", top.display()),
        true,
    )
    .1;
    let locked = format!(
        "(builtins.getFlake \"path:{}?narHash={}\").w",
        top.display(),
        top_nar
            .trim_matches('"')
            .replace('+', "%2B")
            .replace('/', "%2F")
    );
    assert_eq!(
        eval(true, dir, &locked, false).1,
        eval(false, dir, &locked, false).1
    );
    let unlocked = eval(true, dir, &get, false);
    assert!(!unlocked.0);
    assert!(
        unlocked
            .2
            .contains("cannot call 'getFlake' on unlocked flake reference"),
        "{}",
        unlocked.2
    );

    // Without the top-level lock file: locked in memory (current Nix's behaviour; 2.8
    // refuses), `mid`'s own lock file ignored for the overridden `lib`, the rest fetched.
    std::fs::remove_file(top.join("flake.lock")).expect("rm");
    let ours = eval(true, dir, &inputs, true);
    assert!(ours.0, "{}", ours.2);
    assert_eq!(ours.1, cpp);
    assert!(
        ours.2.contains(&format!(
            "warning: not writing modified lock file of flake 'path:{}':",
            top.display()
        )) && ours.2.contains("Added input 'lib2':"),
        "{}",
        ours.2
    );
    // And `mid` alone uses its own lock file: `lib` at the first commit.
    let mid_alone = eval(
        true,
        dir,
        &format!("(builtins.getFlake \"path:{}\").w", mid.display()),
        true,
    );
    assert_eq!(mid_alone.1, "\"lib-1\"", "{}", mid_alone.2);

    // Bad flakes.
    let bad = |name: &str, text: &str| {
        let d = dir.join(name);
        write(&d.join("flake.nix"), text);
        eval(
            true,
            dir,
            &format!("(builtins.getFlake \"path:{}\").x", d.display()),
            true,
        )
    };
    let cases = [
        (
            "b1",
            "{ outputs = _: { }; foo = 1; }",
            "has an unsupported attribute 'foo'",
        ),
        (
            "b2",
            "{ description = \"d\"; }",
            "lacks attribute 'outputs'",
        ),
        (
            "b3",
            "{ inputs.a.follows = \"nope\"; outputs = _: { }; }",
            "input 'a' follows a non-existent input 'nope'",
        ),
        (
            "b4",
            "{ inputs.a = { url = \"path:/x\"; bogus = 1; }; outputs = _: { }; }",
            "unexpected flake input attribute 'bogus'",
        ),
        (
            "b5",
            "{ outputs = 1; }",
            "flake attribute 'outputs' is an integer",
        ),
    ];
    for (name, text, msg) in cases {
        let (ok, _, err) = bad(name, text);
        assert!(!ok && err.contains(msg), "{name}: {err}");
    }
    // A corrupt lock file is an error naming it, and is left as it was.
    let corrupt = dir.join("b6");
    write(&corrupt.join("flake.nix"), "{ outputs = _: { x = 1; }; }");
    write(&corrupt.join("flake.lock"), "{ \"version\": 7, \"nodes\": ");
    let (ok, _, err) = eval(
        true,
        dir,
        &format!("(builtins.getFlake \"path:{}\").x", corrupt.display()),
        true,
    );
    assert!(
        !ok && err.contains("flake.lock' is not valid JSON"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(corrupt.join("flake.lock")).expect("read"),
        "{ \"version\": 7, \"nodes\": "
    );
    // A lock file of the wrong shape too.
    write(
        &corrupt.join("flake.lock"),
        r#"{"version": 7, "root": "root", "nodes": {"root": {"inputs": 5}}}"#,
    );
    let (ok, _, err) = eval(
        true,
        dir,
        &format!("(builtins.getFlake \"path:{}\").x", corrupt.display()),
        true,
    );
    assert!(
        !ok && err.contains("has bad 'inputs' in node 'root'"),
        "{err}"
    );
}

/// Flake installables of `nix eval` and `nix build` (`REF#ATTRPATH`, `.`, a directory in a
/// Git repository): the attribute paths tried (`packages.SYSTEM.`, `legacyPackages.SYSTEM.`,
/// as given; the default package), the lock file written as CppNix writes it (the same
/// bytes, and added to a Git repository's index), and the derivations `nix build` would
/// build.
#[test]
fn flake_installables_agree_with_cppnix() {
    let e = env();
    let dir = &e.dir;
    write(&dir.join("c/data"), "hello\n");
    let flake = |text: &str| {
        format!(
            "{{\n  inputs.c = {{ url = \"path:{}\"; flake = false; }};\n  outputs = {{ self, c }}: {text};\n}}\n",
            dir.join("c").display()
        )
    };
    let outputs = r#"{
    x = builtins.readFile (c + "/data");
    packages.x86_64-linux.hello = derivation { name = "hello"; builder = "/bin/sh"; args = [ "-c" "echo hi > $out" ]; system = "x86_64-linux"; };
    packages.x86_64-linux.default = self.packages.x86_64-linux.hello;
    legacyPackages.x86_64-linux.leg = "leg";
    s.t = [ 1 { u = "v"; } ];
  }"#;
    let plain = dir.join("plain");
    write(&plain.join("flake.nix"), &flake(outputs));
    let repo = dir.join("repo");
    write(&repo.join("sub/flake.nix"), &flake(outputs));
    git(&repo, &["init", "-q", "-b", "main"], DATE);
    git(&repo, &["add", "."], DATE);
    git(&repo, &["commit", "-q", "-m", "one"], DATE);

    let run = |firn_side: bool, cwd: &Path, args: &[&str]| {
        let (code, stdout, stderr) = ran(tool(firn_side, "nix", dir).current_dir(cwd).args(args));
        (
            code,
            stdout.trim_end().to_string(),
            last_error(stderr.as_bytes()),
        )
    };
    let plain_ref = format!("path:{}", plain.display());
    let sub = repo.join("sub");
    // A directory inside a flake names it; one outside any flake is an error.
    let deep = plain.join("deep/er");
    std::fs::create_dir_all(&deep).expect("mkdir");
    std::fs::create_dir_all(dir.join("empty")).expect("mkdir");
    let cases: Vec<(&Path, Vec<String>)> = vec![
        (dir, vec!["eval".into(), format!("{plain_ref}#x")]),
        (dir, vec!["eval".into(), format!("{plain_ref}#leg")]),
        (dir, vec!["eval".into(), format!("{plain_ref}#s.t.1.u")]),
        (dir, vec!["eval".into(), format!("{plain_ref}#hello.name")]),
        (
            dir,
            vec!["eval".into(), "--raw".into(), format!("{plain_ref}#x")],
        ),
        (dir, vec!["eval".into(), format!("{plain_ref}#nope")]),
        (dir, vec!["eval".into(), format!("{plain_ref}#x.y")]),
        (dir, vec!["eval".into(), format!("{plain_ref}#s.q")]),
        (dir, vec!["eval".into(), format!("{plain_ref}#s.t.1")]),
        (
            dir,
            vec!["eval".into(), "--json".into(), format!("{plain_ref}#s")],
        ),
        (&plain, vec!["eval".into(), ".#x".into()]),
        (&plain, vec!["eval".into(), ".#default.drvPath".into()]),
        (dir, vec!["eval".into(), "./plain#x".into()]),
        (
            dir,
            vec![
                "eval".into(),
                "--apply".into(),
                "x: x + \"!\"".into(),
                "./plain#x".into(),
            ],
        ),
        (&sub, vec!["eval".into(), ".#x".into()]),
        (&deep, vec!["eval".into(), ".#x".into()]),
        (dir, vec!["eval".into(), "./empty#x".into()]),
        (dir, vec!["eval".into(), "./nothere#x".into()]),
        (
            &plain,
            vec!["build".into(), "--dry-run".into(), "--json".into()],
        ),
        (
            &plain,
            vec![
                "build".into(),
                "--dry-run".into(),
                "--json".into(),
                ".#hello".into(),
            ],
        ),
    ];
    let mut sides = Vec::new();
    for side in [false, true] {
        // Each side writes its own lock files, from none.
        let _ = std::fs::remove_file(plain.join("flake.lock"));
        let _ = std::fs::remove_file(sub.join("flake.lock"));
        git(&repo, &["reset", "-q"], DATE);
        let mut seen = Vec::new();
        for (cwd, args) in &cases {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            seen.push(run(side, cwd, &args));
        }
        let lock = std::fs::read(plain.join("flake.lock")).expect("a lock file was written");
        let sub_lock = std::fs::read(sub.join("flake.lock")).expect("a lock file was written");
        let index = git(&repo, &["status", "--porcelain"], DATE);
        sides.push((seen, lock, sub_lock, index));
    }
    let (ours, cpp) = (&sides[1], &sides[0]);
    for ((f, c), case) in ours.0.iter().zip(&cpp.0).zip(&cases) {
        assert_eq!(f.0, c.0, "{case:?}: {}", f.2);
        // What `nix build --dry-run` would build is compared below.
        if case.1[0] != "build" {
            assert_eq!(f, c, "{case:?}");
        }
    }
    assert_eq!(ours.1, cpp.1, "the lock files differ");
    assert_eq!(ours.2, cpp.2, "the lock files differ");
    assert_eq!(ours.3, cpp.3);
    assert!(cpp.3.contains("flake.lock"), "{}", cpp.3);
    // The same derivation as CppNix would build.
    let dry = |firn_side: bool| {
        let out = tool(firn_side, "nix", dir)
            .current_dir(&plain)
            .args(["build", "--dry-run", ".#hello"])
            .output()
            .expect("nix build");
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter(|l| l.trim_start().starts_with("/nix/store/"))
            .map(|l| l.trim().to_string())
            .collect::<Vec<_>>()
    };
    let cpp = dry(false);
    assert!(!cpp.is_empty());
    assert_eq!(dry(true), cpp);
}

/// `nix flake lock`, `nix flake update` and `nix flake metadata` (text and `--json`, and the
/// deprecated `info`) as CppNix 2.8's: the same lock files, the same warnings listing what
/// changed, the same metadata.
#[test]
fn flake_commands_agree_with_cppnix() {
    let e = env();
    let dir = &e.dir;
    write(&dir.join("c/data"), "one\n");
    write(
        &dir.join("b/flake.nix"),
        &format!(
            "{{ inputs.c = {{ url = \"path:{}\"; flake = false; }}; outputs = {{ self, c }}: {{ }}; }}\n",
            dir.join("c").display()
        ),
    );
    let top = dir.join("top");
    write(
        &top.join("flake.nix"),
        &format!(
            "{{\n  description = \"the top\";\n  inputs.b.url = \"path:{}\";\n  inputs.d.follows = \"b/c\";\n  outputs = {{ self, b, d }}: {{ }};\n}}\n",
            dir.join("b").display()
        ),
    );
    let reference = format!("path:{}", top.display());
    // The flakes' files get one modification time before each command, so that both sides
    // see the same `lastModified` whatever the last command wrote.
    let settle = || {
        let mut c = Command::new("find");
        c.arg(dir)
            .args([
                "-path",
                &format!("{}/CppNix", dir.display()),
                "-prune",
                "-o",
            ])
            .args(["-path", &format!("{}/firn", dir.display()), "-prune", "-o"])
            .args(["-exec", "touch", "-h", "-d", DATE, "{}", "+"]);
        assert!(c.status().expect("find").success());
    };
    let run = |firn_side: bool, args: &[&str]| {
        settle();
        ran(tool(firn_side, "nix", dir).args(args))
    };
    let mut sides = Vec::new();
    for side in [false, true] {
        let _ = std::fs::remove_file(top.join("flake.lock"));
        let _ = std::fs::remove_file(dir.join("c/data2"));
        let lock = run(side, &["flake", "lock", &reference]);
        let locked = std::fs::read(top.join("flake.lock")).expect("a lock file");
        let again = run(side, &["flake", "lock", &reference]);
        let meta = run(side, &["flake", "metadata", &reference]);
        let json = run(side, &["flake", "metadata", "--json", &reference]);
        let info = run(side, &["flake", "info", &reference]);
        // A new file in `c`: `update` locks it afresh (and lists the change).
        std::fs::write(dir.join("c/data2"), "two\n").expect("write");
        let update = run(side, &["flake", "update", &reference]);
        let updated = std::fs::read(top.join("flake.lock")).expect("a lock file");
        // The lock flags: one input afresh, an override (never written), no updates.
        std::fs::write(dir.join("c/data2"), "three\n").expect("write");
        let one = run(
            side,
            &["flake", "lock", "--update-input", "b/c", &reference],
        );
        let c2 = dir.join("c2");
        write(&c2.join("data"), "other\n");
        let overridden = run(
            side,
            &[
                "flake",
                "metadata",
                "--json",
                "--override-input",
                "b/c",
                &format!("path:{}", c2.display()),
                &reference,
            ],
        );
        let after = std::fs::read(top.join("flake.lock")).expect("a lock file");
        std::fs::remove_file(top.join("flake.lock")).expect("rm");
        let refused = run(
            side,
            &["flake", "lock", "--no-update-lock-file", &reference],
        );
        let unwritten = run(side, &["flake", "lock", "--no-write-lock-file", &reference]);
        let flags = (
            one,
            overridden.0,
            overridden.2,
            after,
            refused,
            unwritten.0,
            top.join("flake.lock").exists(),
        );
        sides.push((
            lock, locked, again, meta, json, info, update, updated, flags,
        ));
    }
    let (c, f) = (&sides[0], &sides[1]);
    assert_eq!(f.0, c.0, "flake lock");
    assert!(c.0 .2.contains("warning: creating lock file"), "{}", c.0 .2);
    assert_eq!(f.1, c.1, "the lock files differ");
    assert_eq!(f.2, c.2, "flake lock again: nothing to do");
    assert_eq!(f.3, c.3, "flake metadata");
    assert!(c.3 .1.contains("follows input 'b/c'"), "{}", c.3 .1);
    assert_eq!(f.4, c.4, "flake metadata --json");
    assert_eq!(f.5, c.5, "flake info");
    // The modification times of `c` differ between the two runs (it was written again).
    let dates = |s: &str| {
        s.lines()
            .filter(|l| !l.contains("lastModified="))
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert_eq!(f.6 .0, c.6 .0, "flake update: {}", f.6 .2);
    assert_eq!(dates(&f.6 .2), dates(&c.6 .2), "flake update");
    assert!(c.6 .2.contains("Updated input 'b/c':"), "{}", c.6 .2);
    let without_times = |b: &[u8]| {
        String::from_utf8_lossy(b)
            .lines()
            .filter(|l| !l.contains("\"lastModified\""))
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        without_times(&f.7),
        without_times(&c.7),
        "updated lock files"
    );
}

/// `nix flake show` (the tree, `--json`, `--legacy`) as CppNix 2.8's, standard output and
/// standard error each: every kind of output it names, and what it shows before an error.
#[test]
fn flake_show_agrees_with_cppnix() {
    let e = env();
    let dir = &e.dir;
    let good = dir.join("good");
    write(
        &good.join("flake.nix"),
        r#"{
  description = "shown";
  outputs = { self }: {
    packages.x86_64-linux.hello = derivation { name = "hello"; builder = "/bin/sh"; system = "x86_64-linux"; } // { meta.description = "says hi"; };
    packages.x86_64-linux.default = self.packages.x86_64-linux.hello;
    legacyPackages.x86_64-linux = { leg = self.packages.x86_64-linux.hello; broken = throw "no"; };
    lib.f = x: x;
    overlays.default = final: prev: { };
    nixosModules.m = { };
    apps.x86_64-linux.default = { type = "app"; program = "/bin/sh"; };
    devShells.x86_64-linux.default = self.packages.x86_64-linux.hello;
    checks.x86_64-linux.t = self.packages.x86_64-linux.hello;
    formatter.x86_64-linux = self.packages.x86_64-linux.hello;
    templates.t = { path = ./.; description = "a template"; };
    hydraJobs.a.b = self.packages.x86_64-linux.hello;
  };
}
"#,
    );
    let bad = dir.join("bad");
    write(
        &bad.join("flake.nix"),
        "{ outputs = { self }: { apps.x86_64-linux.x = { program = \"y\"; }; packages.x86_64-linux.p = 1; }; }\n",
    );
    for (flake, args) in [
        (&good, &["flake", "show"][..]),
        (&good, &["flake", "show", "--json"]),
        (&good, &["flake", "show", "--legacy"]),
        (&bad, &["flake", "show"]),
    ] {
        let seen = agree(format!("{args:?} in {}", flake.display()), |side| {
            ran(tool(side, "nix", dir).current_dir(flake).args(args))
        });
        assert!(!seen.1.is_empty() || seen.0 != Some(0), "{args:?}");
    }
}

/// `nix run` (an app, a package's main program, the default, `--file`) and `nix shell`
/// (`-c`; and the packages an output propagates in `PATH`, firn alone) as CppNix 2.8's: the same program
/// run with the same arguments, its store mounted at `/nix/store` for the chroot stores the
/// tests use. The builders are the host's busybox.
#[test]
fn run_and_shell_agree_with_cppnix() {
    need_busybox();
    let e = env();
    let dir = &e.dir;
    let flake = dir.join("app");
    write(
        &flake.join("flake.nix"),
        r#"{
  outputs = { self }: let
    bb = builtins.path { path = /usr/bin; name = "busybox"; filter = p: t: baseNameOf p == "busybox"; };
    mk = name: script: attrs: derivation ({ inherit name; system = "x86_64-linux"; builder = "${bb}/busybox"; args = [ "sh" "-c" script ]; } // attrs);
    tool = mk "tool-2" ''
      mkdir -p $out/bin
      printf '#!${bb}/busybox sh\necho "tool says $*"\n' > $out/bin/tool
      chmod +x $out/bin/tool
    '' { };
  in {
    packages.x86_64-linux.hello = mk "hello-1.0" ''
      mkdir -p $out/bin
      printf '#!${bb}/busybox sh\necho "hello from $(basename $0) with $*"\n' > $out/bin/hello
      chmod +x $out/bin/hello
    '' { };
    packages.x86_64-linux.withTool = mk "with-tool" ''
      mkdir -p $out/nix-support
      echo ${tool} > $out/nix-support/propagated-user-env-packages
    '' { };
    packages.x86_64-linux.named = mk "named-3.1" ''
      mkdir -p $out/bin
      printf '#!${bb}/busybox sh\necho "main program"\n' > $out/bin/prog
      chmod +x $out/bin/prog
    '' { } // { meta.mainProgram = "prog"; };
    packages.x86_64-linux.default = self.packages.x86_64-linux.hello;
    apps.x86_64-linux.greet = { type = "app"; program = "${self.packages.x86_64-linux.hello}/bin/hello"; };
  };
}
"#,
    );
    write(
        &dir.join("file.nix"),
        &format!(
            "{{ hello = (builtins.getFlake \"path:{}\").packages.x86_64-linux.hello; }}\n",
            flake.display()
        ),
    );
    let file = dir.join("file.nix").to_string_lossy().into_owned();
    let cases: Vec<Vec<&str>> = vec![
        vec!["run", "--impure", ".#hello", "--", "a", "-b"],
        vec!["run", "--impure", ".#greet", "x"],
        // Options before `--` are `nix run`'s, wherever they are.
        vec!["run", ".#hello", "--impure", "z"],
        vec!["run", "--impure"],
        vec!["run", "--impure", ".#named"],
        vec!["run", "--impure", "--file", &file, "hello", "y"],
        vec![
            "shell", "--impure", ".#hello", "-c", "hello", "via", "shell",
        ],
        vec!["run", "--impure", ".#nope"],
    ];
    for args in &cases {
        let seen = agree(format!("{args:?}"), |side| {
            let (code, stdout, stderr) = ran(tool(side, "nix", dir).current_dir(&flake).args(args));
            (code, stdout, last_error(stderr.as_bytes()))
        });
        assert!(
            seen.0 == Some(0) || !seen.2.is_empty(),
            "{args:?}: {seen:?}"
        );
    }
}

/// Flake IDs resolved through the global registry the `flake-registry` setting names (a
/// file here), in installables, `nix flake metadata` and `nix flake prefetch` (text and
/// `--json`), and an ID no registry has: as CppNix 2.8.
#[test]
fn registries_and_prefetch_agree_with_cppnix() {
    let e = env();
    let dir = &e.dir;
    let target = dir.join("target");
    write(
        &target.join("flake.nix"),
        "{ description = \"registered\"; outputs = { self }: { v = \"from the registry\"; }; }\n",
    );
    let registry = dir.join("registry.json");
    write(
        &registry,
        &format!(
            "{{\"flakes\":[{{\"from\":{{\"type\":\"indirect\",\"id\":\"myreg\"}},\"to\":{{\"type\":\"path\",\"path\":\"{}\"}}}}],\"version\":2}}\n",
            target.display()
        ),
    );
    let registry = registry.to_string_lossy().into_owned();
    let cases: [&[&str]; 6] = [
        &["eval", "myreg#v"],
        &["flake", "metadata", "myreg"],
        &["flake", "prefetch", "myreg"],
        &["flake", "prefetch", "--json", "myreg"],
        &["flake", "prefetch", &format!("path:{}", target.display())],
        &["eval", "nope#v"],
    ];
    for args in cases {
        let seen = agree(format!("{args:?}"), |side| {
            let registry = ["--option", "flake-registry", &registry];
            ran(tool(side, "nix", dir).args(registry).args(args))
        });
        assert!(!seen.1.is_empty() || !seen.2.is_empty(), "{args:?}");
    }
}

/// `nix flake new` and `nix flake init` from a local template: the files written and
/// announced, the welcome text, a template path given as a string and a file already there
/// with other contents refused — what CppNix 2.8 prints for the same template in a store at
/// `/nix/store` (compared by hand: 2.8 cannot take a template from a chroot store, which it
/// reports as not in the store, so this test checks firn alone). Lines are sorted: a
/// directory's entries are written in the order they are read.
#[test]
fn templates_as_cppnix_writes_them() {
    let e = env();
    let dir = &e.dir;
    let tpl = dir.join("tpl");
    write(&tpl.join("t1/flake.nix"), "{ outputs = _: { }; }\n");
    write(&tpl.join("t1/sub/README"), "readme\n");
    write(
        &tpl.join("flake.nix"),
        "{ outputs = { self }: { templates.t1 = { path = ./t1; description = \"one\"; welcomeText = \"Welcome!\"; }; templates.str = { path = \"/tmp/x\"; description = \"bad\"; }; defaultTemplate = self.templates.t1; }; }\n",
    );
    let reference = format!("path:{}", tpl.display());
    let work = dir.join("work");
    std::fs::create_dir_all(work.join("here")).expect("mkdir");
    let run = |cwd: &Path, args: &[&str]| {
        let out = tool(true, "nix", dir)
            .current_dir(cwd)
            .args(args)
            .output()
            .expect("running nix");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .replace(&work.display().to_string(), "WORK");
        let mut lines: Vec<String> = text.lines().map(String::from).collect();
        lines.sort();
        (out.status.code(), lines)
    };
    let wrote = |d: &str| {
        vec![
            String::new(),
            String::new(),
            String::new(),
            "    Welcome!".to_string(),
            format!("wrote: WORK/{d}/flake.nix"),
            format!("wrote: WORK/{d}/sub"),
            format!("wrote: WORK/{d}/sub/README"),
        ]
    };
    let new = run(
        &work,
        &["flake", "new", "-t", &format!("{reference}#t1"), "out"],
    );
    assert_eq!(new, (Some(0), wrote("out")));
    let init = run(&work.join("here"), &["flake", "init", "-t", &reference]);
    assert_eq!(init, (Some(0), wrote("here")));
    assert_eq!(
        std::fs::read_to_string(work.join("out/sub/README")).expect("read"),
        "readme\n"
    );
    let string = run(
        &work,
        &["flake", "new", "-t", &format!("{reference}#str"), "bad"],
    );
    assert_eq!(
        string,
        (
            Some(1),
            vec![
                "       If you've set 'templates.str.path' to a string, try using a path instead."
                    .to_string(),
                "error: '/tmp/x' was not found in the Nix store".to_string()
            ]
        )
    );
    write(&work.join("clash/flake.nix"), "other\n");
    let clash = run(
        &work.join("clash"),
        &["flake", "init", "-t", &format!("{reference}#t1")],
    );
    assert_eq!(clash.0, Some(1));
    assert!(
        clash.1.contains(
            &"error: refusing to overwrite existing file 'WORK/clash/flake.nix'".to_string()
        ),
        "{clash:?}"
    );
    assert_eq!(
        std::fs::read_to_string(work.join("clash/flake.nix")).expect("read"),
        "other\n",
        "a clashing file is left as it was"
    );
}

/// `nix flake check` on flakes with one problem each (CppNix 2.8 checks outputs in the order
/// of its symbol table, firn in name order, so each flake has one error to find), a flake
/// that passes, and `--keep-going` over two errors: the same exit codes and errors. Then
/// the checks of this system built: one failing (exit 100, the builder's error), and the
/// passing one's output in the store.
#[test]
fn flake_check_agrees_with_cppnix() {
    need_busybox();
    let e = env();
    let dir = &e.dir;
    let mk =
        r#"mk = name: derivation { inherit name; system = "x86_64-linux"; builder = "/bin/sh"; };"#;
    let cases: Vec<(&str, &str)> = vec![
        (
            "good",
            r#"checks.x86_64-linux.a = mk "a"; checks.aarch64-linux.a = mk "b";
               packages.x86_64-linux.default = mk "p"; devShells.x86_64-linux.default = mk "s";
               apps.x86_64-linux.default = { type = "app"; program = "/bin/sh"; };
               overlays.default = final: prev: { }; overlays.under = _final: _: { };
               overlay = final: prev: { };
               nixosModules.default = { config, ... }: { }; nixosModules.set = { a = 1; };
               nixosConfigurations.m = { config.system.build.toplevel = mk "top"; };
               bundlers.x86_64-linux.default = x: x; legacyPackages.x86_64-linux = { };
               hydraJobs.build.x86_64-linux = mk "job"; formatter.x86_64-linux = 1;
               defaultPackage.x86_64-linux = mk "old"; unknownOutput = 1;"#,
        ),
        (
            "not-derivation",
            r#"packages.x86_64-linux.bad = { x = 1; };"#,
        ),
        (
            "broken-derivation",
            r#"checks.x86_64-linux.bad = mk (throw "no name");"#,
        ),
        ("overlay-final", "overlays.wrong = self: super: { };"),
        ("overlay-prev", "overlays.wrong = final: super: { };"),
        ("overlay-formals", "overlay = { final }: prev: { };"),
        ("module-closed", "nixosModules.bad = { config }: { };"),
        (
            "module-option",
            r#"nixosModules.bad = { a = throw "bad option"; };"#,
        ),
        ("module-kind", "nixosModule = 1;"),
        ("system", "legacyPackages.badsystem = { };"),
        (
            "nixos-missing",
            "nixosConfigurations.m = { config = { }; };",
        ),
        (
            "nixos-not-derivation",
            "nixosConfigurations.m = { config.system.build.toplevel = { }; };",
        ),
        ("jobset", r#"hydraJobs = mk "j";"#),
        ("job", "hydraJobs.a.b = 1;"),
        ("bundler", "bundlers.x86_64-linux.b = 1;"),
        ("template-path", r#"templates.t = { description = "x"; };"#),
        ("checks-kind", "checks = 5;"),
        ("per-system-kind", "packages.x86_64-linux = [ ];"),
    ];
    for (name, outputs) in &cases {
        let flake = dir.join("check").join(name);
        write(
            &flake.join("flake.nix"),
            &format!(
                "{{\n  outputs = {{ self }}: let\n    {mk}\n  in {{\n    {outputs}\n  }};\n}}\n"
            ),
        );
        let mut seen = Vec::new();
        for side in [false, true] {
            let (code, _, stderr) = ran(tool(side, "nix", dir)
                .args(["flake", "check", "--no-build"])
                .arg(format!("path:{}", flake.display())));
            let unknown = stderr.contains("warning: unknown flake output 'unknownOutput'");
            let error = last_error(stderr.as_bytes()).replace(side_name(side), "SIDE");
            seen.push((code, error, unknown));
        }
        // A type error in current Nix's words, as all of firn's (2.8: "value is an integer
        // while a set was expected").
        if let Some(kind) = seen[0].1.strip_prefix("error: value is ") {
            let kind = kind.trim_end_matches(" while a set was expected");
            assert!(
                seen[1]
                    .1
                    .starts_with(&format!("error: expected a set but found {kind}")),
                "{name}: {seen:?}"
            );
            seen[1].1 = seen[0].1.clone();
        }
        assert_eq!(seen[1], seen[0], "{name}");
        assert_eq!(seen[0].0 == Some(0), *name == "good", "{name}: {seen:?}");
    }
    // `--keep-going`: both errors shown as ignored, and the command fails at the end.
    let flake = dir.join("check/two");
    write(
        &flake.join("flake.nix"),
        "{ outputs = { self }: { overlay = x: x; packages.x86_64-linux.p = 1; }; }\n",
    );
    for side in [false, true] {
        let (code, _, stderr) = ran(tool(side, "nix", dir)
            .args(["flake", "check", "--no-build", "--keep-going"])
            .arg(format!("path:{}", flake.display())));
        assert_eq!(code, Some(1), "{stderr}");
        assert_eq!(
            stderr.matches("error (ignored): error:").count(),
            2,
            "{stderr}"
        );
        assert_eq!(
            last_error(stderr.as_bytes()),
            "error: some errors were encountered during the evaluation"
        );
    }
    // Builds: this system's checks only.
    let flake = dir.join("check/build");
    write(
        &flake.join("flake.nix"),
        r#"{
  outputs = { self }: let
    bb = builtins.path { path = /usr/bin; name = "busybox"; filter = p: t: baseNameOf p == "busybox"; };
    mk = name: script: derivation { inherit name; system = "x86_64-linux"; builder = "${bb}/busybox"; args = [ "sh" "-c" script ]; };
  in {
    checks.x86_64-linux.pass = mk "pass" "echo ok > $out";
    checks.x86_64-linux.fail = mk "fail" "echo failing >&2; exit 3";
    checks.aarch64-linux.other = mk "other" "exit 1";
  };
}
"#,
    );
    // Without `--keep-going` the first failure stops the run (the other check is named as
    // failed, as CppNix's `buildPaths` names it).
    let stopped = agree("", |side| {
        let (code, _, stderr) = ran(tool(side, "nix", dir)
            .args(["flake", "check", "--impure"])
            .args(["--option", "substituters", ""])
            .arg(format!("path:{}", flake.display())));
        (code, last_error(stderr.as_bytes()))
    });
    assert_eq!(stopped.0, Some(100), "{stopped:?}");
    assert!(stopped.1.starts_with("error: build of "), "{stopped:?}");
    let seen = agree("", |side| {
        let (code, _, stderr) = ran(tool(side, "nix", dir)
            .args(["flake", "check", "--impure", "--keep-going"])
            .args(["--option", "substituters", ""])
            .arg(format!("path:{}", flake.display())));
        let store = dir.join(side_name(side)).join("store/nix/store");
        let built: Vec<String> = names_in(&store)
            .into_iter()
            .filter(|n| n.ends_with("-pass") || n.ends_with("-fail") || n.ends_with("-other"))
            .collect();
        (code, last_error(stderr.as_bytes()), built)
    });
    assert_eq!(seen.0, Some(100), "{seen:?}");
    assert!(
        seen.1.contains("-fail.drv' failed with exit code 3"),
        "{seen:?}"
    );
    assert_eq!(seen.2.len(), 1, "only the passing check's output: {seen:?}");
}

/// `--commit-lock-file` in a Git repository: the lock file created and then updated is
/// committed with CppNix 2.8's message (summary `flake.lock: Add`/`Update`, or the
/// `commit-lockfile-summary` setting, then the changes without colours) and its warning of
/// the new revision.
#[test]
fn commit_lock_file_agrees_with_cppnix() {
    let e = env();
    let dir = &e.dir;
    let seen = agree("", |side| {
        let root = dir.join("commit").join(side_name(side));
        let (dep, top) = (root.join("dep"), root.join("top"));
        write(
            &dep.join("flake.nix"),
            "{ outputs = { self }: { v = 1; }; }\n",
        );
        write(
            &top.join("flake.nix"),
            &format!(
                "{{ inputs.dep.url = \"path:{}\"; outputs = {{ self, dep }}: {{ v = dep.v; }}; }}\n",
                dep.display()
            ),
        );
        git(&top, &["init", "-q", "-b", "main"], DATE);
        git(&top, &["add", "flake.nix"], DATE);
        git(&top, &["commit", "-q", "-m", "init"], DATE);
        let nix = |args: &[&str]| {
            let (code, _, stderr) = ran(tool(side, "nix", dir)
                .current_dir(&top)
                .args(args)
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .env("GIT_AUTHOR_NAME", "Firn Test")
                .env("GIT_AUTHOR_EMAIL", "test@firn.invalid")
                .env("GIT_COMMITTER_NAME", "Firn Test")
                .env("GIT_COMMITTER_EMAIL", "test@firn.invalid")
                .env("GIT_AUTHOR_DATE", DATE)
                .env("GIT_COMMITTER_DATE", DATE));
            let warnings: Vec<String> = stderr
                .lines()
                .filter(|l| l.starts_with("warning: "))
                .map(
                    |l| match l.starts_with("warning: committed new revision '") {
                        true => "warning: committed new revision".to_string(),
                        false => l.replace(side_name(side), "SIDE"),
                    },
                )
                .collect();
            (code, warnings)
        };
        let created = nix(&["flake", "lock", "--commit-lock-file"]);
        write(
            &dep.join("flake.nix"),
            "{ outputs = { self }: { v = 2; }; }\n",
        );
        let updated = nix(&["flake", "update", "--commit-lock-file"]);
        write(
            &dep.join("flake.nix"),
            "{ outputs = { self }: { v = 3; }; }\n",
        );
        let summary = nix(&[
            "flake",
            "update",
            "--commit-lock-file",
            "--option",
            "commit-lockfile-summary",
            "chore: bump",
        ]);
        // A path input's `lastModified` is its files' time, written a moment apart per side.
        let log =
            git(&top, &["log", "--format=%s%n%b%n---"], DATE).replace(side_name(side), "SIDE");
        let log = log
            .split("lastModified=")
            .map(|part| part.trim_start_matches(|c: char| c.is_ascii_digit()))
            .collect::<Vec<_>>()
            .join("lastModified=N");
        let status = git(&top, &["status", "--short"], DATE);
        (created, updated, summary, log, status)
    });
    let (created, _, _, log, status) = &seen;
    assert_eq!(created.0, Some(0), "{seen:?}");
    assert!(log.starts_with("chore: bump\n"), "{log}");
    assert!(
        log.contains("flake.lock: Update\n") && log.contains("flake.lock: Add\n"),
        "{log}"
    );
    assert!(status.is_empty(), "everything committed: {status}");
}

/// `--inputs-from` (a flake's locked inputs, `follows` followed, as registry entries for
/// their names) and `--override-flake` (an entry of the command line), before the
/// registries: in `nix eval` and `nix flake metadata`, and an ID neither has.
#[test]
fn inputs_from_and_override_flake_agree_with_cppnix() {
    let e = env();
    let dir = &e.dir;
    let (dep, src) = (dir.join("dep"), dir.join("src"));
    write(
        &dep.join("flake.nix"),
        "{ outputs = { self }: { v = \"from-dep\"; }; }\n",
    );
    write(
        &src.join("flake.nix"),
        &format!(
            "{{ inputs.dep.url = \"path:{}\"; inputs.other.follows = \"dep\"; outputs = {{ self, dep, other }}: {{ }}; }}\n",
            dep.display()
        ),
    );
    let from = format!("path:{}", src.display());
    let to = format!("path:{}", dep.display());
    let none = dir.join("no-registry.json").to_string_lossy().into_owned();
    let cases: Vec<Vec<&str>> = vec![
        vec!["eval", "--inputs-from", &from, "dep#v"],
        vec!["eval", "--inputs-from", &from, "other#v"],
        vec!["eval", "--inputs-from", &from, "nope#v"],
        vec!["eval", "--override-flake", "dep", &to, "dep#v"],
        vec!["eval", "--override-flake", "flake:dep", &to, "dep#v"],
        vec!["flake", "metadata", "--json", "--inputs-from", &from, "dep"],
    ];
    for args in &cases {
        let seen = agree(format!("{args:?}"), |side| {
            // The flag registry's options first: CppNix 2.8 reads `--inputs-from` as it
            // parses it.
            let (code, stdout, stderr) = ran(tool(side, "nix", dir)
                .args(["--option", "flake-registry", &none])
                .args(args));
            (code, stdout, last_error(stderr.as_bytes()))
        });
        let found = args[0] == "eval" && !args.contains(&"nope#v");
        assert_eq!(
            seen.1.trim_end() == "\"from-dep\"",
            found,
            "{args:?}: {seen:?}"
        );
    }
}

/// `nix flake archive`: the tree of the flake's and its inputs' sources (`--json`; `follows`
/// left out, an input met twice shown twice), the same with `--dry-run` (paths computed, not
/// fetched), and `--to` a binary cache: the same sources copied.
#[test]
fn archive_agrees_with_cppnix() {
    let e = env();
    let dir = &e.dir;
    let (dep, g, top) = (dir.join("dep"), dir.join("g"), dir.join("top"));
    write(&dep.join("flake.nix"), "{ outputs = { self }: { }; }\n");
    write(
        &g.join("flake.nix"),
        &format!(
            "{{ inputs.dep.url = \"path:{}\"; outputs = {{ self, dep }}: {{ }}; }}\n",
            dep.display()
        ),
    );
    git(&g, &["init", "-q", "-b", "main"], DATE);
    git(&g, &["add", "."], DATE);
    git(&g, &["commit", "-q", "-m", "g"], DATE);
    write(
        &top.join("flake.nix"),
        &format!(
            "{{ inputs.dep.url = \"path:{dep}\"; inputs.g.url = \"git+file://{g}\"; inputs.g.inputs.dep.follows = \"dep\"; inputs.data = {{ url = \"path:{dep}\"; flake = false; }}; outputs = {{ self, ... }}: {{ }}; }}\n",
            dep = dep.display(),
            g = g.display()
        ),
    );
    let top_ref = format!("path:{}", top.display());
    // The lock file first (written by CppNix), so that both sides read the same.
    let (code, _, _) = ran(tool(false, "nix", dir).args(["flake", "lock", &top_ref]));
    assert_eq!(code, Some(0));
    let seen = agree("", |side| {
        let cache = dir.join(format!("{}-cache", side_name(side)));
        let mut outs = Vec::new();
        for args in [
            vec!["flake", "archive", "--dry-run", "--json", &top_ref],
            vec!["flake", "archive", "--json", &top_ref],
        ] {
            outs.push(ran(tool(side, "nix", dir).args(&args)).1);
        }
        let to = format!("file://{}", cache.display());
        let (code, _, stderr) =
            ran(tool(side, "nix", dir).args(["flake", "archive", "--to", &to, &top_ref]));
        assert_eq!(code, Some(0), "{stderr}");
        (outs, names_in(&cache))
    });
    let (outs, listed) = &seen;
    assert_eq!(outs[0], outs[1], "--dry-run computes the same paths");
    assert!(
        outs[0].contains("\"inputs\":{\"data\":{\"path\":"),
        "{outs:?}"
    );
    assert_eq!(
        listed.iter().filter(|n| n.ends_with(".narinfo")).count(),
        3,
        "{listed:?}"
    );
}

/// `nix flake clone`: a Git flake cloned (on its `ref`), and CppNix 2.8's errors: no
/// `--dest`, an input that is not a repository, a revision, a clone that fails.
#[test]
fn clone_agrees_with_cppnix() {
    let e = env();
    let dir = &e.dir;
    let repo = dir.join("repo");
    write(&repo.join("flake.nix"), "{ outputs = { self }: { }; }\n");
    git(&repo, &["init", "-q", "-b", "main"], DATE);
    git(&repo, &["add", "."], DATE);
    git(&repo, &["commit", "-q", "-m", "one"], DATE);
    git(&repo, &["branch", "other"], DATE);
    let rev = git(&repo, &["rev-parse", "HEAD"], DATE);
    let none = dir.join("no-registry.json").to_string_lossy().into_owned();
    let url = format!("git+file://{}", repo.display());
    let seen = agree("", |side| {
        let dest = |n: &str| {
            dir.join(format!("{}-{n}", side_name(side)))
                .to_string_lossy()
                .into_owned()
        };
        let cases: Vec<Vec<String>> = vec![
            vec![url.clone(), "--dest".into(), dest("a")],
            vec![format!("{url}?ref=other"), "-f".into(), dest("b")],
            vec![url.clone()],
            vec![
                format!("path:{}", repo.display()),
                "--dest".into(),
                dest("c"),
            ],
            vec![
                format!("{url}?rev={}", rev.trim()),
                "--dest".into(),
                dest("d"),
            ],
            vec![
                format!("git+file://{}/nope", dir.display()),
                "--dest".into(),
                dest("e"),
            ],
        ];
        let mut outs = Vec::new();
        for args in &cases {
            let (code, _, stderr) = ran(tool(side, "nix", dir)
                .args(["--option", "flake-registry", &none, "flake", "clone"])
                .args(args));
            outs.push((code, last_error(stderr.as_bytes())));
        }
        let branch = git(Path::new(&dest("b")), &["branch", "--show-current"], DATE);
        let files = std::fs::read_to_string(Path::new(&dest("a")).join("flake.nix")).ok();
        (outs, branch, files)
    });
    assert_eq!(seen.1.trim(), "other");
    assert_eq!(seen.0[0], (Some(0), String::new()));
    assert!(seen.2.is_some());
}

/// A flake's `nixConfig`: read (strings, lists, numbers, booleans; other values are CppNix's
/// errors), applied by the commands that apply it (the safe settings taken; the others
/// warned about and ignored, unless `--accept-flake-config` or the user's
/// `trusted-settings.json` says so; `nix flake metadata` applies nothing), and what is taken
/// in force for the builds that follow (`keep-failed`).
#[test]
fn nix_config_agrees_with_cppnix() {
    need_busybox();
    let e = env();
    let dir = &e.dir;
    let flakes = [
        (
            "settings",
            r#"nixConfig = { bash-prompt = "x> "; extra-substituters = [ "http://a.invalid" "http://b.invalid" ]; sandbox = false; cores = 3; extra-bash-prompt-suffix = "s"; };"#,
        ),
        ("set", "nixConfig.x = { };"),
        ("list", "nixConfig.x = [ 1 ];"),
        ("null", "nixConfig.x = ./flake.nix; nixConfig.y = null;"),
    ];
    for (name, config) in flakes {
        write(
            &dir.join("nc").join(name).join("flake.nix"),
            &format!("{{\n  {config}\n  outputs = {{ self }}: {{ v = 1; }};\n}}\n"),
        );
    }
    write(
        &dir.join("nc/keep/flake.nix"),
        r#"{
  nixConfig.keep-failed = true;
  outputs = { self }: let
    bb = builtins.path { path = /usr/bin; name = "busybox"; filter = p: t: baseNameOf p == "busybox"; };
  in { packages.x86_64-linux.default = derivation { name = "nc-keep-fails"; system = "x86_64-linux"; builder = "${bb}/busybox"; args = [ "sh" "-c" "exit 1" ]; }; };
}
"#,
    );
    let at = |name: &str| format!("path:{}", dir.join("nc").join(name).display());
    let cases: Vec<Vec<String>> = vec![
        vec!["flake".into(), "lock".into(), at("settings")],
        vec!["eval".into(), format!("{}#v", at("settings"))],
        vec![
            "eval".into(),
            "--accept-flake-config".into(),
            format!("{}#v", at("settings")),
        ],
        vec![
            "flake".into(),
            "metadata".into(),
            "--json".into(),
            at("settings"),
        ],
        vec!["eval".into(), format!("{}#v", at("set"))],
        vec!["eval".into(), format!("{}#v", at("list"))],
        vec!["eval".into(), format!("{}#v", at("null"))],
        vec![
            "build".into(),
            "--impure".into(),
            "--no-link".into(),
            at("keep"),
        ],
        vec![
            "build".into(),
            "--impure".into(),
            "--no-link".into(),
            "--accept-flake-config".into(),
            at("keep"),
        ],
    ];
    // Saved answers: `sandbox = false` trusted, `cores = 3` not.
    let saved = "{\"sandbox\":{\"false\":true},\"cores\":{\"3\":false}}";
    for trusted in [false, true] {
        for args in &cases {
            agree(format!("{args:?} (trusted list: {trusted})"), |side| {
                let home = dir.join(side_name(side)).join("home");
                let list = home.join(".local/share/nix/trusted-settings.json");
                match trusted {
                    true => write(&list, saved),
                    false => {
                        let _ = std::fs::remove_file(&list);
                    }
                }
                let (code, _, stderr) = ran(tool(side, "nix", dir)
                    .args(["--option", "substituters", ""])
                    .args(args));
                let lines: Vec<String> = stderr
                    .lines()
                    .filter(|l| {
                        l.starts_with("warning: ")
                            || l.starts_with("error: ")
                            || l.starts_with("note: ")
                    })
                    .map(|l| match l.starts_with("note: keeping build directory") {
                        true => "note: keeping build directory".to_string(),
                        false => l.to_string(),
                    })
                    .collect();
                (code, lines)
            });
        }
    }
    for d in std::fs::read_dir("/tmp")
        .expect("/tmp")
        .filter_map(|e| e.ok())
    {
        if d.file_name()
            .to_string_lossy()
            .starts_with("nix-build-nc-keep-fails.drv-")
        {
            let _ = std::fs::remove_dir_all(d.path());
        }
    }
}

/// `nix flake check` turns import from derivation off for `hydraJobs` (not for the other
/// outputs) unless the user set `allow-import-from-derivation`, as CppNix 2.8.
#[test]
fn flake_check_hydra_jobs_ifd_agrees_with_cppnix() {
    need_busybox();
    let e = env();
    let dir = &e.dir;
    for (name, output) in [
        ("hydra", "hydraJobs.j.x86_64-linux = job;"),
        ("packages", "packages.x86_64-linux.j = job;"),
    ] {
        write(
            &dir.join("ifd").join(name).join("flake.nix"),
            &format!(
                r#"{{
  outputs = {{ self }}: let
    bb = builtins.path {{ path = /usr/bin; name = "busybox"; filter = p: t: baseNameOf p == "busybox"; }};
    gen = derivation {{ name = "gen"; system = "x86_64-linux"; builder = "${{bb}}/busybox"; args = [ "sh" "-c" "echo '\"from-ifd\"' > $out" ]; }};
    job = derivation {{ name = import gen; system = "x86_64-linux"; builder = "${{bb}}/busybox"; args = [ "sh" "-c" "echo > $out" ]; }};
  in {{ {output} }};
}}
"#
            ),
        );
    }
    let at = |name: &str| format!("path:{}", dir.join("ifd").join(name).display());
    let cases: Vec<(Vec<String>, bool)> = vec![
        (vec![at("hydra")], false),
        (vec![at("packages")], true),
        (
            vec![
                "--option".into(),
                "allow-import-from-derivation".into(),
                "true".into(),
                at("hydra"),
            ],
            true,
        ),
    ];
    for (args, passes) in &cases {
        let seen = agree(format!("{args:?}"), |side| {
            let (code, _, stderr) = ran(tool(side, "nix", dir)
                .args(["--option", "substituters", ""])
                .args(["flake", "check", "--impure"])
                .args(args));
            (code, last_error(stderr.as_bytes()))
        });
        assert_eq!(seen.0 == Some(0), *passes, "{args:?}: {seen:?}");
    }
}
