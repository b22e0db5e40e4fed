//! Realisations that meet what another process holds or what is missing, as CppNix 2.8's
//! `nix-store --realise`: a build whose outputs another process has locked says `waiting for
//! lock on '…', '…'...` (every output's real path, at `lvlWarn`: shown down to two `--quiet`s)
//! before it builds; a substitution waits silently; a derivation whose input source is not
//! valid fails before building, with "1 dependencies of derivation '…' failed to build" (with
//! `substitute = false`, the realisation ends: "dependency '…' of '…' does not exist, and
//! substitution is disabled").
//! The builders are the host's static busybox.

mod common;

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const EXPR: &str = r#"in {
  multi = mk "multi" "mkdir $out $dev" { outputs = [ "out" "dev" ]; };
  plain = mk "plain" "echo plain > $out" { };
  usesSrc = mk "uses-src" "cat ${./src.txt} > $out" { };
}
"#;

/// `tool` of firn or of CppNix on `store`.
fn tool(firn_side: bool, name: &str, store: &str, e: &Env) -> Command {
    let mut c = if firn_side { firn(name) } else { cppnix(name) };
    c.args(["--store", store])
        .env("XDG_CACHE_HOME", e.dir.join("cache-home"));
    c
}

fn setup(e: &Env) -> std::path::PathBuf {
    e.write("src.txt", "source\n");
    e.write("default.nix", &format!("{LET_BUSYBOX}{MK_BUSYBOX}{EXPR}"))
}

fn instantiate(firn_side: bool, store: &str, e: &Env, file: &Path, attr: &str) -> String {
    ok_str(
        tool(firn_side, "nix-instantiate", store, e)
            .args(["-A", attr])
            .arg(file),
    )
    .trim()
    .to_string()
}

/// Hold CppNix's lock on the store path `path` of the chroot store `store` (its `.lock`
/// file) until the result is dropped.
fn hold_lock(store: &str, path: &str) -> File {
    let f = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(format!("{store}{path}.lock"))
        .expect("opening a lock file");
    // SAFETY: flock on a descriptor this function owns.
    assert_eq!(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) }, 0);
    f
}

/// Run `c` while `lock` is held, releasing it after a while; exit code and stderr (with
/// `store`'s root shown as `<root>`).
fn run_while_locked(c: &mut Command, lock: File, store: &str) -> (Option<i32>, String) {
    let child = c
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning a command");
    std::thread::sleep(Duration::from_millis(1500));
    drop(lock);
    let out = child.wait_with_output().expect("waiting for a command");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).replace(store, "<root>"),
    )
}

#[test]
fn lock_waits_are_announced_as_cppnix() {
    need_busybox();
    let e = env();
    let file = setup(&e);
    for quiet in 0..4 {
        let got: Vec<(Option<i32>, String)> = [true, false]
            .into_iter()
            .map(|firn_side| {
                let s = e.store(&format!("{firn_side}-{quiet}"));
                let drv = instantiate(firn_side, &s, &e, &file, "multi");
                let outs =
                    ok_str(tool(firn_side, "nix-store", &s, &e).args(["-q", "--outputs", &drv]));
                let dev = outs
                    .lines()
                    .find(|l| l.ends_with("-dev"))
                    .expect("a dev output");
                let lock = hold_lock(&s, dev);
                let mut c = tool(firn_side, "nix-store", &s, &e);
                c.args(["-r", &drv]);
                for _ in 0..quiet {
                    c.arg("--quiet");
                }
                run_while_locked(&mut c, lock, &s)
            })
            .collect();
        assert_eq!(got[0], got[1], "with {quiet} --quiet");
        assert_eq!(got[0].0, Some(0));
        assert_eq!(
            got[0].1.contains("waiting for lock on '<root>/nix/store/"),
            quiet < 3,
            "{}",
            got[0].1
        );
    }
}

#[test]
fn substitution_lock_waits_are_silent_as_cppnix() {
    need_busybox();
    let e = env();
    let file = setup(&e);
    // A cache with `plain`, made by CppNix.
    let src = e.store("src");
    let plain = ok_str(
        cppnix("nix-build")
            .args(["--store", &src, "--no-out-link", "-A", "plain"])
            .arg(&file),
    );
    let plain = plain.trim();
    let cache = format!("file://{}", e.dir.join("cache").display());
    ok(cppnix("nix").args(["copy", "--store", &src, "--to", &cache, plain]));
    let got: Vec<(Option<i32>, String)> = [true, false]
        .into_iter()
        .map(|firn_side| {
            let s = e.store(&format!("subst-{firn_side}"));
            std::fs::create_dir_all(format!("{s}/nix/store")).expect("mkdir");
            let lock = hold_lock(&s, plain);
            let mut c = tool(firn_side, "nix-store", &s, &e);
            c.args(["-r", plain])
                .args(["--option", "substituters", &cache])
                .args(["--option", "require-sigs", "false"]);
            run_while_locked(&mut c, lock, &s)
        })
        .collect();
    assert_eq!(got[0], got[1]);
    assert_eq!(got[0].0, Some(0));
    assert!(!got[0].1.contains("waiting for lock"), "{}", got[0].1);
}

#[test]
fn a_missing_input_source_fails_as_cppnix() {
    need_busybox();
    let e = env();
    let file = setup(&e);
    let got: Vec<Vec<(Option<i32>, String)>> = [true, false]
        .into_iter()
        .map(|firn_side| {
            let s = e.store(&format!("src-{firn_side}"));
            let drv = instantiate(firn_side, &s, &e, &file, "usesSrc");
            let refs =
                ok_str(tool(firn_side, "nix-store", &s, &e).args(["-q", "--references", &drv]));
            let src = refs
                .lines()
                .find(|l| l.ends_with("-src.txt"))
                .expect("the source is an input")
                .to_string();
            // The source disappears from the store (as a damaged store would lose it).
            let db = rusqlite::Connection::open(format!("{s}/nix/var/nix/db/db.sqlite"))
                .expect("opening the store database");
            db.execute(
                "delete from Refs where reference = (select id from ValidPaths where path = ?1)",
                [&src],
            )
            .expect("deleting references");
            db.execute("delete from ValidPaths where path = ?1", [&src])
                .expect("deleting the source");
            drop(db);
            let real = format!("{s}{src}");
            let mut perms = std::fs::metadata(&real).expect("stat").permissions();
            std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o644);
            std::fs::set_permissions(&real, perms).expect("chmod");
            std::fs::remove_file(&real).expect("removing the source");
            let d = drv.as_str();
            [
                vec!["-r", d],
                vec!["-r", d, "-k"],
                vec!["-r", d, "--dry-run"],
                vec!["-r", d, "--option", "substitute", "false"],
            ]
            .iter()
            .map(|args| {
                let out = tool(firn_side, "nix-store", &s, &e)
                    .args(args)
                    .output()
                    .expect("run");
                (
                    out.status.code(),
                    String::from_utf8_lossy(&out.stderr).into_owned(),
                )
            })
            .collect()
        })
        .collect();
    assert_eq!(got[0], got[1]);
    assert_eq!(got[0][0].0, Some(1));
    assert!(
        got[0][0].1.contains("1 dependencies of derivation '"),
        "{}",
        got[0][0].1
    );
    assert!(
        got[0][3]
            .1
            .contains("does not exist, and substitution is disabled"),
        "{}",
        got[0][3].1
    );
}
