//! A nixpkgs-style package set (callPackage, overrides, overlays, stdenv.mkDerivation with
//! propagated inputs and several outputs; written by `bench/gen_pkgset.sh`) evaluates to the
//! same drvPaths in firn as in CppNix 2.8, and instantiates to the same `.drv` files.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn generate(dir: &Path, n: usize) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/gen_pkgset.sh");
    let st = Command::new("bash")
        .arg(&script)
        .arg(dir)
        .arg(n.to_string())
        .status()
        .expect("running gen_pkgset.sh");
    assert!(st.success(), "gen_pkgset.sh failed");
}

#[test]
fn package_set_drv_paths_equal_cppnix() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let set = tmp.path().join("pkgs");
    generate(&set, 300);
    let drvpaths = set.join("drvpaths.nix");
    let eval = |c: &mut Command| {
        ok_str(c.args(["--eval", "--strict", "--json"]).arg(&drvpaths))
            .trim_end()
            .to_string()
    };
    let ours = eval(&mut firn("nix-instantiate"));
    let theirs = eval(&mut cppnix("nix-instantiate"));
    assert!(ours.matches(".drv").count() == 300, "{ours}");
    assert_eq!(ours, theirs);

    // Instantiating writes the same derivations (each store its own chroot).
    let (a, b) = (tmp.path().join("s1"), tmp.path().join("s2"));
    let inst = |c: &mut Command, store: &Path| {
        let mut paths: Vec<String> = ok_str(c.arg("--store").arg(store).arg(&set))
            .lines()
            .map(str::to_string)
            .collect();
        paths.sort();
        paths
    };
    let ours = inst(&mut firn("nix-instantiate"), &a);
    let theirs = inst(&mut cppnix("nix-instantiate"), &b);
    assert_eq!(ours.len(), 300);
    assert_eq!(ours, theirs);
    for p in ours.iter().take(20) {
        let x = std::fs::read(a.join(&p[1..])).expect("firn's .drv");
        let y = std::fs::read(b.join(&p[1..])).expect("CppNix's .drv");
        assert_eq!(x, y, "{p}");
    }
}
