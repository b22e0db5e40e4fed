//! Helpers shared by the CppNix comparison tests: scratch directories, running CppNix, and a
//! store holding a path that needs a signature.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use firn_format::{StoreDir, StorePath};

/// A scratch directory removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("firn-format-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("creating a scratch directory");
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn cppnix(tool: &str) -> Command {
    let mut c = Command::new(tool);
    c.env("NIX_CONF_DIR", "/nonexistent-firn-test-conf")
        .env("NIX_USER_CONF_FILES", "")
        .env("NIX_CONFIG", "substituters =")
        .env_remove("NIX_REMOTE");
    if tool == "nix" {
        c.args(["--extra-experimental-features", "nix-command"]);
    }
    c
}

pub fn run(c: &mut Command) -> String {
    let out = c.output().expect("running CppNix");
    assert!(
        out.status.success(),
        "{c:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("CppNix prints UTF-8")
}

/// A store holding a `.drv` (which has a reference) imported from another store, so that it has
/// no content address and needs signatures to be trusted. Returns the store and the path.
pub fn unsigned_store(dir: &Path) -> (PathBuf, StorePath) {
    let a = dir.join("a");
    let b = dir.join("b");
    let expr = dir.join("e.nix");
    std::fs::write(
        &expr,
        r#"derivation { name = "sig"; system = "x"; builder = "/bin/sh"; args = [ (builtins.toFile "in" "data") ]; }"#,
    )
    .expect("writing an expression");
    let drv = run(cppnix("nix-instantiate").arg("--store").arg(&a).arg(&expr));
    let drv = drv.trim().to_string();
    let closure =
        run(cppnix("nix-store")
            .arg("--store")
            .arg(&a)
            .args(["-q", "--requisites", &drv]));
    let export = run(cppnix("nix-store")
        .arg("--store")
        .arg(&a)
        .arg("--export")
        .args(closure.lines()));
    let mut import = cppnix("nix-store")
        .arg("--store")
        .arg(&b)
        .arg("--import")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("running nix-store --import");
    std::io::Write::write_all(
        import.stdin.as_mut().expect("stdin is piped"),
        export.as_bytes(),
    )
    .expect("feeding the export");
    drop(import.stdin.take());
    assert!(import.wait().expect("waiting").success());
    (b, StoreDir::default().parse(&drv).expect("a store path"))
}
