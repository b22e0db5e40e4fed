//! `builtin:buildenv` (the builder of `nix-env`'s profiles): firn and CppNix 2.8 build the
//! same user environments, from packages made with the host's static busybox, into separate
//! chroot stores; the output paths, the NAR bytes and the references must be equal, and the
//! collisions CppNix refuses must fail in firn with the same message.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// (Written after [`LET_BUSYBOX`] and [`MK_BUSYBOX`].)
const EXPR: &str = r#"in rec {
  d = mk "d" "mkdir -p $out/share/doc; echo d > $out/share/doc/d" { };
  a = mk "a" ''
    mkdir -p $out/bin $out/share/doc $out/share/info $out/nix-support $out/lib
    echo a > $out/bin/a; chmod +x $out/bin/a
    ln -s a $out/bin/a-link
    echo a > $out/share/doc/a
    echo dir > $out/share/info/dir
    echo info > $out/share/info/a.info
    echo lib > $out/lib/liba
    echo hidden > $out/.hidden
    echo log > $out/log
    echo manifest > $out/manifest.nix
    echo x > $out/nix-support/setup-hook
    ln -s /nonexistent $out/dangling
  '' { };
  p = mk "p" "mkdir -p $out/bin $out/share/doc; echo p > $out/bin/p; echo p > $out/bin/a; echo p > $out/share/doc/p" { };
  b = mk "b" ''
    mkdir -p $out/bin $out/share/doc $out/share/man/man1 $out/nix-support
    echo b > $out/bin/b
    echo b > $out/share/doc/b
    echo b > $out/share/man/man1/b.1
    echo ${p} > $out/nix-support/propagated-user-env-packages
  '' { };
  c = mk "c" "mkdir -p $out/bin; echo c > $out/bin/a" { };
  c7 = mk "c7" "mkdir -p $out/bin; echo c7 > $out/bin/a; echo c7 > $out/bin/c7" { };
  linky = mk "linky" "mkdir $out; ln -s ${d}/share $out/share; ln -s ${d}/share/doc/d $out/d-file" { };
  multi = mk "multi" "mkdir -p $out/bin $dev/include; echo m > $out/bin/m; echo h > $dev/include/m.h" {
    outputs = [ "out" "dev" ];
  };
  z = mk "z" "mkdir -p $out/bin; echo z > $out/bin/a" { };
  notdir = mk "notdir" "echo file > $out" { };
  fileShare = mk "file-share" "mkdir $out; echo f > $out/share" { };

  manifest = builtins.toFile "manifest.nix" "[ ]";
  buildenv = derivations: derivation {
    name = "env";
    system = "builtin";
    builder = "builtin:buildenv";
    inherit manifest derivations;
  };

  env = buildenv [
    "true" 5 1 a
    "true" 5 1 b
    "true" 3 1 c
    "true" 7 1 c7
    "true" 6 1 linky
    "true" 5 2 multi.out multi.dev
    "false" 5 1 z
    "true" 5 1 notdir
  ];
  samePriority = buildenv [ "true" 5 1 a "true" 5 1 c ];
  dirOverFile = buildenv [ "true" 1 1 fileShare "true" 5 1 a ];
  fileOverDir = buildenv [ "true" 1 1 a "true" 1 1 b "true" 5 1 fileShare ];
}
"#;

struct Setup {
    _tmp: tempfile::TempDir,
    file: PathBuf,
    firn_store: String,
    cppnix_store: String,
}

fn setup() -> Setup {
    need_busybox();
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("default.nix");
    std::fs::write(&file, format!("{LET_BUSYBOX}{MK_BUSYBOX}{EXPR}")).expect("write");
    let firn_store = store_dir(tmp.path(), "firn");
    let cppnix_store = store_dir(tmp.path(), "cppnix");
    Setup {
        _tmp: tmp,
        file,
        firn_store,
        cppnix_store,
    }
}

impl Setup {
    fn firn_build(&self, attr: &str) -> Command {
        let mut c = firn("nix-build");
        c.args(["--store", &self.firn_store, "--no-out-link"])
            .args(["--option", "sandbox", "true", "-A", attr])
            .arg(&self.file);
        c
    }

    fn cppnix_build(&self, attr: &str) -> Command {
        let mut c = cppnix("nix-build");
        c.args(["--store", &self.cppnix_store, "--no-out-link", "-A", attr])
            .arg(&self.file);
        c
    }
}

/// `nix-store --dump` of where a chroot store keeps `path` (it dumps a file-system path).
fn dump(store: &str, path: &str) -> Vec<u8> {
    let real = Path::new(store).join(path.trim_start_matches('/'));
    ok(cppnix("nix-store").arg("--dump").arg(real))
}

fn references(store: &str, path: &str) -> String {
    ok_str(cppnix("nix-store").args(["--store", store, "-q", "--references", path]))
}

/// Where the file at the logical `path` is in the chroot store `store`, following links (to
/// absolute logical paths too) one component at a time.
fn resolve_in_store(store: &str, path: &str) -> PathBuf {
    let mut todo: Vec<String> = path.split('/').rev().map(String::from).collect();
    let mut cur = String::new();
    let mut hops = 0;
    while let Some(c) = todo.pop() {
        if c.is_empty() || c == "." {
            continue;
        }
        let next = format!("{cur}/{c}");
        let real = Path::new(store).join(next.trim_start_matches('/'));
        match std::fs::read_link(&real) {
            Ok(target) => {
                hops += 1;
                assert!(hops < 40, "too many links in {path}");
                let target = target.to_string_lossy().into_owned();
                if target.starts_with('/') {
                    cur.clear();
                }
                todo.extend(target.split('/').rev().map(String::from));
            }
            Err(_) => cur = next,
        }
    }
    Path::new(store).join(cur.trim_start_matches('/'))
}

fn failure(c: &mut Command) -> String {
    let out = c.output().expect("running nix-build");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{c:?} succeeded:\n{stderr}");
    stderr
}

/// The text of `stderr` from `start` to the end of its line.
fn excerpt<'a>(stderr: &'a str, start: &str) -> &'a str {
    let i = stderr
        .find(start)
        .unwrap_or_else(|| panic!("no '{start}' in:\n{stderr}"));
    let rest = &stderr[i..];
    &rest[..rest.find('\n').unwrap_or(rest.len())]
}

/// A profile merging directories, with priorities, propagated packages, several outputs, an
/// inactive package, links between packages, skipped names and a non-directory package.
#[test]
fn buildenv_equals_cppnix() {
    let s = setup();
    let pf = ok_str(&mut s.firn_build("env"));
    let pc = ok_str(&mut s.cppnix_build("env"));
    assert_eq!(pf, pc, "output path");
    let p = pf.trim();
    let (df, dc) = (dump(&s.firn_store, p), dump(&s.cppnix_store, p));
    assert!(
        df == dc,
        "the NARs of {p} differ:\nfirn:\n{}\ncppnix:\n{}",
        String::from_utf8_lossy(&df),
        String::from_utf8_lossy(&dc)
    );
    assert_eq!(
        references(&s.firn_store, p),
        references(&s.cppnix_store, p),
        "references of {p}"
    );
    // The profile is what a user environment should be (guards against both being empty).
    let out = Path::new(&s.firn_store).join(p.trim_start_matches('/'));
    for (link, content) in [
        ("bin/a", "c\n"),
        ("bin/a-link", "a\n"),
        ("bin/b", "b\n"),
        ("bin/c7", "c7\n"),
        ("bin/p", "p\n"),
        ("bin/m", "m\n"),
        ("include/m.h", "h\n"),
        ("lib/liba", "lib\n"),
        ("share/doc/a", "a\n"),
        ("share/doc/d", "d\n"),
        ("share/info/a.info", "info\n"),
        ("share/man/man1/b.1", "b\n"),
        ("d-file", "d\n"),
        ("manifest.nix", "[ ]"),
    ] {
        let real = resolve_in_store(&s.firn_store, &format!("{p}/{link}"));
        assert_eq!(
            std::fs::read_to_string(&real).unwrap_or_else(|e| panic!("{link}: {e}")),
            content,
            "{link}"
        );
    }
    for absent in [
        "log",
        ".hidden",
        "dangling",
        "nix-support",
        "notdir",
        "share/info/dir",
    ] {
        assert!(
            std::fs::symlink_metadata(out.join(absent)).is_err(),
            "{absent}"
        );
    }
    assert!(
        std::fs::symlink_metadata(out.join("share/doc"))
            .expect("share/doc")
            .is_dir(),
        "merged directories are real"
    );
    // CppNix accepts firn's store.
    ok(cppnix("nix-store").args(["--store", &s.firn_store, "--verify", "--check-contents"]));
}

/// Collisions CppNix refuses fail in firn too, with CppNix's message.
#[test]
fn buildenv_collisions_fail_as_cppnix() {
    let s = setup();
    for (attr, start) in [
        ("samePriority", "packages '"),
        ("dirOverFile", "collision between '"),
        ("fileOverDir", "collision between non-directory '"),
    ] {
        let ec = failure(&mut s.cppnix_build(attr));
        let ef = failure(&mut s.firn_build(attr));
        let expected = excerpt(&ec, start);
        assert!(
            ef.contains(expected),
            "{attr}: firn's error lacks CppNix's '{expected}':\n{ef}"
        );
        if attr != "samePriority" {
            assert!(ef.contains("collision"), "{attr}: {ef}");
        }
    }
}
