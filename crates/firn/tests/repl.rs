//! `nix repl`: sessions piped into firn and into CppNix 2.8, outputs compared line by line.
//! Piped input is echoed after each prompt on stdout, values go to stdout, messages and
//! errors to stderr. Normalised: CppNix's colours (2.8 prints them even into a pipe), the
//! version in the banner, and blank lines on stderr (firn's error locations are laid out
//! without them).

mod common;

use std::path::Path;

use common::*;

/// Files the sessions load.
fn fixtures(dir: &Path) {
    let w = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().expect("has a parent")).expect("mkdir");
        std::fs::write(p, text).expect("write a fixture");
    };
    w(
        "f.nix",
        "{ a = 1; b = \"x\"; c = { d = 2; }; f = x: x + 1; }\n",
    );
    w("g.nix", "{ y ? 5 }: { z = y * 2; }\n");
    w("l.nix", "[ 1 2 ]\n");
    w("lam.nix", "{ f = x: x; g = { a, b ? 1 }: a; }\n");
    w("sp/foo/default.nix", "{ fromsp = 1; }\n");
}

/// One session's output: exit status, stdout, stderr.
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn run(mut c: std::process::Command, dir: &Path, store: &str, args: &[&str], input: &str) -> Run {
    c.current_dir(dir)
        .env("HOME", dir)
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("NIX_PATH", "")
        .args(["--store", store, "repl"])
        .args(args);
    let out = run_with_input(&mut c, input.as_bytes());
    Run {
        ok: out.status.success(),
        stdout: normalise(&String::from_utf8_lossy(&out.stdout)),
        stderr: normalise(&String::from_utf8_lossy(&out.stderr)),
    }
}

/// Without colours, with the banner's version as `VERSION`.
fn normalise(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' && chars.peek() == Some(&'[') {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
            continue;
        }
        out.push(c);
    }
    out.lines()
        .map(|l| {
            match l
                .strip_prefix("Welcome to Nix ")
                .and_then(|r| r.split_once(". Type :? for help."))
            {
                Some(_) => "Welcome to Nix VERSION. Type :? for help.".to_string(),
                None => l.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn no_blank_lines(s: &str) -> Vec<&str> {
    s.lines().filter(|l| !l.trim().is_empty()).collect()
}

/// Run the session in both, each on its own store; return both runs.
fn both(args: &[&str], input: &str) -> (Run, Run) {
    let tmp = tempfile::tempdir().expect("tempdir");
    fixtures(tmp.path());
    let ours = run(
        firn("nix"),
        tmp.path(),
        &store_dir(tmp.path(), "store-firn"),
        args,
        input,
    );
    let theirs = run(
        cppnix("nix"),
        tmp.path(),
        &store_dir(tmp.path(), "store-nix"),
        args,
        input,
    );
    (ours, theirs)
}

/// The session gives the same stdout, and the same stderr up to blank lines.
fn same(args: &[&str], input: &str) -> Run {
    let (ours, theirs) = both(args, input);
    assert_eq!(
        ours.ok, theirs.ok,
        "exit status; firn's stderr:\n{}",
        ours.stderr
    );
    let (o, t): (Vec<&str>, Vec<&str>) = (
        ours.stdout.lines().collect(),
        theirs.stdout.lines().collect(),
    );
    for (i, (a, b)) in o.iter().zip(&t).enumerate() {
        assert_eq!(
            a,
            b,
            "stdout line {}\nfirn:\n{}\nCppNix:\n{}",
            i + 1,
            ours.stdout,
            theirs.stdout
        );
    }
    assert_eq!(
        o.len(),
        t.len(),
        "stdout lines\nfirn:\n{}\nCppNix:\n{}",
        ours.stdout,
        theirs.stdout
    );
    assert_eq!(
        no_blank_lines(&ours.stderr),
        no_blank_lines(&theirs.stderr),
        "stderr\nfirn:\n{}\nCppNix:\n{}",
        ours.stderr,
        theirs.stderr
    );
    ours
}

#[test]
fn expressions_are_printed_as_cppnix_prints_them() {
    same(
        &[],
        r#"1 + 2
"a${"b"}\$\n\t\""
{ a = { b = 1; }; c = [ 1 2 { x = 1; } ]; d = "s"; }
[ [] {} ]
{ b = 1; a = 2; B = 3; "a b" = 4; "if" = 5; x-y = 6; "1a" = 7; }
null
true
1.5
123456789.0
./foo
/abs/path
x: x
builtins.map
builtins.add 1
derivation { name = "a"; builder = "b"; system = "c"; }
{ type = "derivation"; }
let x = [ 1 ]; in [ x x ]
let r = { a = r; }; in r
{ a = 1; b = throw "t"; c = 2; }
{ a = { b = throw "t"; }; }
import ./lam.nix
"#,
    );
}

#[test]
fn bindings_capture_what_was_in_scope() {
    same(
        &[],
        "y = 1\nx = y + 1\ny = 10\nx\ny\nb=2\nb\n  c   =   3  \nc\nw = undefinedvar\nw\n\
         v = throw \"boom\"\nv\nr = r + 1\nx == 2\nmap = 1\nmap\n",
    );
}

/// Lines of bindings, as current Nix's repl takes them (CppNix 2.8 refuses them): several on
/// a line, `inherit` with and without a source and with or without its `;`. Each binds in
/// the scope of its line; a line that is not bindings is still an expression.
#[test]
fn lines_of_bindings_as_current_nix() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = store_dir(tmp.path(), "store");
    let input = "a = { x = 10; y = 20; }\ninherit (a) x y\nx + y\np = 1; q = 2;\np + q\n\
                 foo = 42\ninherit foo\nfoo\ninherit (a) z;\nz\nr = 5; s = ;\na == a\n";
    let r = run(firn("nix"), tmp.path(), &store, &[], input);
    let out = no_blank_lines(&r.stdout).join("\n");
    for want in [
        "nix-repl> x + y\n30",
        "nix-repl> p + q\n3",
        "nix-repl> foo\n42",
        "nix-repl> a == a\ntrue",
    ] {
        assert!(out.contains(want), "{want}:\n{out}\n{}", r.stderr);
    }
    // What `inherit (a) z` binds fails when used, naming what was meant.
    assert!(
        r.stderr.contains("attribute 'z' missing")
            && r.stderr.contains("Did you mean one of x or y?"),
        "{}",
        r.stderr
    );
    // Not bindings after all: the first binding's error, as CppNix 2.8 reports it.
    assert!(r.stderr.contains("syntax error"), "{}", r.stderr);
}

#[test]
fn multi_line_input_continues_until_complete() {
    same(
        &[],
        "{ a = 1;\n  b = 2; }\nd =\n 4\nd\n\"multi\nline\"\n(1 +\n+ 2)\n1 +\n+ 2\n:t\n1\nlet\n  q = 3;\nin q\n",
    );
}

#[test]
fn errors_are_reported_and_the_session_goes_on() {
    same(
        &[],
        "foo\n1\nabort \"stop\"\n2\nthrow \"t\"\n{}.b\n{ a = {}.b; }\n:foo\n\
         { type = \"derivation\"; drvPath = \"/nix/store/abc\"; }\nassert false; 1\n3\n",
    );
}

#[test]
fn print_and_type_commands() {
    same(
        &[],
        r#":p { a = { b = { c = 1; }; }; }
:p [ 1 { a = [ 2 ]; } ]
:p let r = { a = r; }; in r
:p let x = [ 1 ]; in { a = x; b = x; }
:p { a = { b = throw "t"; }; }
:p "s\n"
:t 1
:t "s"
:t "${./f.nix}"
:t { }
:t [ ]
:t x: x
:t null
:t 1.0
:t ./foo
:t true
:t builtins.add
:t builtins.add 1
:t map
:t builtins.foldl'
:t derivation
:doc 1
:st
:st
:st true
:st nonsense
"#,
    );
}

#[test]
fn load_add_and_reload() {
    same(
        &[],
        ":l f.nix\na\nc\nf 2\n:l ./g.nix\nz\n:l l.nix\n:a { q = 1; }\nq\nbound = 4\n:r\nq\n\
         bound\na\nz\n:l nonexist.nix\n:l\n:a 1\n:l <nope>\n",
    );
}

#[test]
fn files_on_the_command_line_are_loaded() {
    same(
        &["-I", "sp", "<foo>", "./g.nix", "--arg", "y", "7"],
        "fromsp\nz\n",
    );
    same(&["f.nix", "--argstr", "y", "7"], "a\nz\n");
    // A file that cannot be loaded at startup ends the repl with status 1.
    let r = same(&["l.nix"], "1\n");
    assert!(!r.ok);
    let r = same(&["<nope>"], "1\n");
    assert!(!r.ok);
}

#[test]
fn quit_ends_the_session() {
    same(&[], "1\n:q\n2\n");
    same(&[], "1\n:quit\n2\n");
}

#[test]
fn errors_inside_values_with_locations() {
    // An assertion inside a value prints its message (and location) in its place.
    let (ours, theirs) = both(
        &[],
        "{ a = assert false; 1; b = 2; }\n:p [ (assert false; 1) 2 ]\n",
    );
    assert_eq!(no_blank_lines(&ours.stdout), no_blank_lines(&theirs.stdout));
    assert_eq!(no_blank_lines(&ours.stderr), no_blank_lines(&theirs.stderr));
}

/// firn's own commands and arguments (CppNix 2.8 has no `--file`/`--expr` for `nix repl`,
/// and its builtin documentation is its own text: firn's `:doc` is compared with firn's).
#[test]
fn firn_file_expr_and_doc() {
    let tmp = tempfile::tempdir().expect("tempdir");
    fixtures(tmp.path());
    let store = store_dir(tmp.path(), "store");
    let r = run(firn("nix"), tmp.path(), &store, &["--file", "f.nix"], "b\n");
    assert!(r.ok, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("Loading installable ''...\nAdded 4 variables."),
        "{}",
        r.stderr
    );
    assert!(r.stdout.contains("nix-repl> b\n\"x\"\n"), "{}", r.stdout);

    let r = run(
        firn("nix"),
        tmp.path(),
        &store,
        &["--file", "g.nix", "--arg", "y", "3"],
        "z\n",
    );
    assert!(
        r.stdout.contains("nix-repl> z\n6\n"),
        "{}\n{}",
        r.stdout,
        r.stderr
    );

    let r = run(
        firn("nix"),
        tmp.path(),
        &store,
        &["--expr", "{ p = { q = 7; }; }", "p"],
        "q\n:ll\n",
    );
    assert!(
        r.stderr
            .contains("Loading installable 'p'...\nAdded 1 variables."),
        "{}",
        r.stderr
    );
    assert!(r.stdout.contains("nix-repl> q\n7\n"), "{}", r.stdout);
    assert!(r.stdout.contains("nix-repl> :ll\nq\n"), "{}", r.stdout);

    let r = run(
        firn("nix"),
        tmp.path(),
        &store,
        &[],
        ":doc builtins.add\n:?\n:b 1\n:i 1\n:doc derivation\n:doc builtins.add 1\n",
    );
    assert!(
        r.stdout.contains(
            "nix-repl> :doc builtins.add\nSynopsis: builtins.add a b\n\n    The sum of the numbers a and b"
        ),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("The following commands are available:"));
    assert!(
        r.stdout
            .contains(":doc derivation\nSynopsis: builtins.derivation attrs\n"),
        "{}",
        r.stdout
    );
    // A function: where it is defined, and its doc comment (current Nix; CppNix 2.8 has
    // none for functions), its Markdown laid out as a terminal shows it.
    std::fs::write(
        tmp.path().join("doc.nix"),
        "{\n  /**\n    Add `one`\n    to *x*.\n    - More.\n  */\n  inc = x: x + 1;\n  plain = y: y;\n  /** The version. */\n  version = \"1\";\n  n = 2;\n  f = { __functor = self: z: z; };\n}\n",
    )
    .expect("write");
    let d = run(
        firn("nix"),
        tmp.path(),
        &store,
        &[],
        ":l doc.nix\n:doc inc\n:doc plain\n:doc (z: z)\n:a { s = import ./doc.nix; }\n:doc s.version\n:doc s.n\n:doc s.f\n",
    );
    let doc = tmp.path().join("doc.nix");
    let want = format!(
        ":doc inc\nFunction `inc`\n  … defined at {}:7:9\n\n    Add one to x.\n\n      · More.\n",
        doc.display()
    );
    assert!(d.stdout.contains(&want), "{}", d.stdout);
    let want = format!(
        ":doc plain\nFunction `plain`\n  … defined at {}:8:11\n",
        doc.display()
    );
    assert!(d.stdout.contains(&want), "{}", d.stdout);
    assert!(
        d.stdout
            .contains(":doc (z: z)\nFunction defined at «string»:1:2\n"),
        "{}",
        d.stdout
    );
    // An attribute that is not a function: where it is defined, and its doc comment.
    let want = format!(
        ":doc s.version\nAttribute `version`\n\n  … defined at {}:10:3\n\n    The version.\n",
        doc.display()
    );
    assert!(d.stdout.contains(&want), "{}", d.stdout);
    let want = format!(
        ":doc s.n\nAttribute `n`\n\n  … defined at {}:11:3\n\nNo documentation found.\n",
        doc.display()
    );
    assert!(d.stdout.contains(&want), "{}", d.stdout);
    // A set with `__functor` is the function it stands for.
    let want = format!(":doc s.f\nFunction defined at {}:12:27\n", doc.display());
    assert!(d.stdout.contains(&want), "{}", d.stdout);
    // A partly applied builtin, like any other value without documentation.
    assert!(
        r.stderr
            .contains("error: value does not have documentation"),
        "{}",
        r.stderr
    );
    assert!(r
        .stderr
        .contains("error: expression does not evaluate to a derivation"));
    assert!(r.stderr.contains("':i'"), "{}", r.stderr);
    assert!(
        r.stderr.contains("not supported by firn yet"),
        "{}",
        r.stderr
    );
}

/// `:b` builds (busybox as the builder, as in `build_oracle`) and lists the outputs as CppNix.
#[test]
fn build_command_lists_outputs() {
    assert!(
        Path::new("/usr/bin/busybox").exists(),
        "the build tests need /usr/bin/busybox (apt-get install busybox-static)"
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        tmp.path().join("bb.nix"),
        r#"rec {
  bb = builtins.path { path = /usr/bin; name = "busybox"; filter = p: t: baseNameOf p == "busybox"; };
  hello = derivation { name = "hello"; system = "x86_64-linux"; builder = "${bb}/busybox"; args = [ "sh" "-c" "echo hi > $out" ]; };
  two = derivation { name = "two"; system = "x86_64-linux"; builder = "${bb}/busybox";
    args = [ "sh" "-c" "echo a > $out; echo b > $dev" ]; outputs = [ "out" "dev" ]; };
}
"#,
    )
    .expect("write");
    let input = ":b hello\n:b two\n:b 1\nhello\n";
    let ours = run(
        firn("nix"),
        tmp.path(),
        &store_dir(tmp.path(), "store-firn"),
        &["./bb.nix"],
        input,
    );
    let theirs = run(
        cppnix("nix"),
        tmp.path(),
        &store_dir(tmp.path(), "store-nix"),
        &["./bb.nix"],
        input,
    );
    assert_eq!(
        ours.stdout, theirs.stdout,
        "firn's stderr:\n{}",
        ours.stderr
    );
    assert!(
        ours.stdout.contains("  out -> /nix/store/"),
        "{}",
        ours.stdout
    );
}

/// A session on a terminal (a pseudo-terminal): rustyline's editing, Tab completion of
/// attribute paths, builtins and file names, and the history file, CppNix's, one line each.
#[test]
fn terminal_completion_and_history() {
    use std::io::{Read, Write};
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    let tmp = tempfile::tempdir().expect("tempdir");
    fixtures(tmp.path());
    let (mut master, mut slave) = (-1, -1);
    let size = libc::winsize {
        ws_row: 24,
        ws_col: 100,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty writes two new descriptors, which are owned below.
    let r = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    assert_eq!(r, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened and nothing else owns them.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let mut child = firn("nix")
        .current_dir(tmp.path())
        .env("HOME", tmp.path())
        .env("XDG_DATA_HOME", tmp.path().join("data"))
        .env("TERM", "xterm")
        .args(["--store", &store_dir(tmp.path(), "store"), "repl"])
        .stdin(slave.try_clone().expect("dup"))
        .stdout(slave.try_clone().expect("dup"))
        .stderr(slave)
        .spawn()
        .expect("starting firn repl");
    let mut writer = std::fs::File::from(master.try_clone().expect("dup"));
    let mut reader = std::fs::File::from(master);
    let seen = Arc::new(Mutex::new(String::new()));
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            seen2.lock().expect("lock").push_str(&text);
        }
    });
    let mut from = 0;
    // Send keys, then wait until the output (after what was seen before) shows `want`.
    let mut step = |keys: &str, want: &str| {
        writer
            .write_all(keys.as_bytes())
            .expect("write to the terminal");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            {
                let s = seen.lock().expect("lock");
                if let Some(i) = s[from..].find(want) {
                    from += i + want.len();
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "waiting for {want:?} after {keys:?}; the terminal shows:\n{}",
                    normalise(&s)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    // Keys are sent once the prompt is shown (typed ahead, the line discipline would take
    // Ctrl-D as the end of a line, not as a key).
    step("", "nix-repl> ");
    step("xs = { foo = 1; fob = 2; }\r", "nix-repl> ");
    // The first Tab completes the common part, the second lists the candidates.
    step("xs.fo\t\t", "xs.fob  xs.foo");
    step("\x15builtins.attrN\t", "builtins.attrNames");
    step("\r", "«primop»");
    step("", "nix-repl> ");
    step("./f.\t", "./f.nix");
    step("\r", "/f.nix");
    step("", "nix-repl> ");
    step(":l ./g.\t", ":l ./g.nix");
    step("\r", "Added 1 variables.");
    step("", "nix-repl> ");
    step("z\r", "10");
    step("", "nix-repl> ");
    step("\x04", "");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for firn") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("firn repl did not end at Ctrl-D");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    let history = std::fs::read_to_string(tmp.path().join("data/nix/repl-history"))
        .expect("the history file");
    assert_eq!(
        history,
        "xs = { foo = 1; fob = 2; }\nbuiltins.attrNames\n./f.nix\n:l ./g.nix\nz\n"
    );
}
