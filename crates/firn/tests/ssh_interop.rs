//! `ssh://` stores and `nix-copy-closure`: the `nix-store --serve` protocol between firn and
//! CppNix 2.8 in all four pairings (client/server), to and from. The host is `localhost`,
//! which CppNix (and firn, the same way) reaches by running the remote command with a shell
//! instead of `ssh`; `PATH` decides whose `nix-store --serve` answers.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// A chroot store with a closure of three paths (a tree, a note naming it, a top naming
/// both); returns the top.
fn make_closure(tmp: &Path, store: &str) -> String {
    let tree = tmp.join("tree");
    awkward_tree(&tree);
    let e = format!(
        r#"let tree = builtins.path {{ path = {}; name = "tree"; }};
               note = builtins.toFile "note" "see ${{tree}}";
           in builtins.toFile "top" "${{note}} ${{tree}}""#,
        tree.display()
    );
    let out = ok_str(firn("nix-instantiate").args([
        "--store",
        store,
        "--eval",
        "--read-write-mode",
        "-E",
        &e,
    ]));
    out.trim().trim_matches('"').to_string()
}

fn closure(store: &str, p: &str) -> Vec<(String, String)> {
    let mut v: Vec<String> = ok_str(cppnix("nix-store").args(["--store", store, "-qR", p]))
        .lines()
        .map(String::from)
        .collect();
    v.sort();
    v.into_iter()
        .map(|p| {
            let h = ok_str(cppnix("nix-store").args(["--store", store, "-q", "--hash", &p]));
            (p, h)
        })
        .collect()
}

/// `PATH` for the remote side: firn's tools first, or only CppNix's.
fn remote_path(firn_serves: bool) -> String {
    if firn_serves {
        format!("{}:/usr/bin:/bin", firn_bin_dir().display())
    } else {
        "/usr/bin:/bin".to_string()
    }
}

fn client(firn_client: bool, tool: &str) -> Command {
    if firn_client {
        firn(tool)
    } else {
        cppnix(tool)
    }
}

#[test]
fn nix_copy_over_ssh_all_pairings() {
    let tmp = tempfile::tempdir().expect("tmp");
    let a = store_dir(tmp.path(), "a");
    let top = make_closure(tmp.path(), &a);
    let want = closure(&a, &top);
    assert_eq!(want.len(), 3);
    for firn_client in [true, false] {
        for firn_server in [true, false] {
            let tag = format!("client-{firn_client}-server-{firn_server}");
            // To the remote store.
            let remote = store_dir(tmp.path(), &format!("to-{tag}"));
            ok(client(firn_client, "nix")
                .env("PATH", remote_path(firn_server))
                .args(["copy", "--no-check-sigs", "--store", &a, "--to"])
                .arg(format!("ssh://localhost?remote-store={remote}"))
                .arg(&top));
            assert_eq!(closure(&remote, &top), want, "{tag} to");
            ok(cppnix("nix-store").args(["--store", &remote, "--verify", "--check-contents"]));
            // From it, into a fresh store.
            let local = store_dir(tmp.path(), &format!("from-{tag}"));
            ok(client(firn_client, "nix")
                .env("PATH", remote_path(firn_server))
                .args(["copy", "--no-check-sigs", "--store", &local, "--from"])
                .arg(format!("ssh://localhost?remote-store={a}"))
                .arg(&top));
            assert_eq!(closure(&local, &top), want, "{tag} from");
        }
    }
}

#[test]
fn nix_copy_closure_both_ways() {
    let tmp = tempfile::tempdir().expect("tmp");
    let a = store_dir(tmp.path(), "a");
    let top = make_closure(tmp.path(), &a);
    let want = closure(&a, &top);
    // `nix-copy-closure` has no remote-store option: the remote `nix-store` finds its store
    // through NIX_REMOTE, which the shell passes on.
    let b = store_dir(tmp.path(), "b");
    ok(firn("nix-copy-closure")
        .env("PATH", remote_path(false))
        .env("NIX_REMOTE", &b)
        .args(["--store", &a, "--to", "localhost", &top]));
    assert_eq!(closure(&b, &top), want);
    let c = store_dir(tmp.path(), "c");
    ok(firn("nix-copy-closure")
        .env("PATH", remote_path(true))
        .env("NIX_REMOTE", &a)
        .args(["--store", &c, "--from", "localhost", &top]));
    assert_eq!(closure(&c, &top), want);
}

#[test]
fn serve_without_write_refuses_changes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let a = store_dir(tmp.path(), "a");
    let top = make_closure(tmp.path(), &a);
    let b = store_dir(tmp.path(), "b");
    // The remote program is `nix-store` without `--write`... which `--serve --write` adds;
    // use a wrapper that drops it.
    let wrapper = tmp.path().join("ro-nix-store");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec {} --serve --store \"$4\"\n",
            firn_bin_dir().join("nix-store").display()
        ),
    )
    .expect("write wrapper");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let out = firn("nix")
        .args(["copy", "--no-check-sigs", "--store", &a, "--to"])
        .arg(format!(
            "ssh://localhost?remote-program={}&remote-store={b}",
            wrapper.display()
        ))
        .arg(&top)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not allowed"), "{err}");
    let valid = cppnix("nix-store")
        .args(["--store", &b, "--check-validity", &top])
        .output()
        .expect("run");
    assert!(!valid.status.success());
}
