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

const LEAF: &str = "/nix/store/11111111111111111111111111111111-leaf";
const MID: &str = "/nix/store/22222222222222222222222222222222-mid";
const TOP: &str = "/nix/store/33333333333333333333333333333333-top";

fn contents(store: &str, p: &str) -> String {
    std::fs::read_to_string(Path::new(store).join(&p[1..])).expect("reading a store path")
}

/// `-s` to an `ssh://` store: the query for valid paths carries the `substitute` flag, and
/// the serving side (firn's or CppNix's `nix-store --serve --write`) fetches what it can from
/// its own substituters first; the rest is copied. The source has `top` → `mid` → `leaf`; a
/// signed cache has other versions of `leaf` and `top` (not `mid`, so `top` cannot be
/// substituted). Every pairing must end with `leaf` from the cache, the others from the
/// source.
#[test]
fn substitute_on_destination_over_ssh() {
    let tmp = tempfile::tempdir().expect("tmp");
    let a = store_dir(tmp.path(), "a");
    register_files(
        &a,
        &[
            (LEAF, "leaf from the source\n", &[]),
            (MID, "mid from the source\n", &[LEAF]),
            (TOP, "top from the source\n", &[MID]),
        ],
    );
    let b = store_dir(tmp.path(), "b");
    register_files(
        &b,
        &[
            (LEAF, "leaf from the cache\n", &[]),
            (MID, "mid from the cache\n", &[LEAF]),
            (TOP, "top from the cache\n", &[MID]),
        ],
    );
    let sk = tmp.path().join("k.sk");
    let pk = tmp.path().join("k.pk");
    ok(cppnix("nix-store")
        .args(["--generate-binary-cache-key", "ssh-subst-1"])
        .arg(&sk)
        .arg(&pk));
    let pk = std::fs::read_to_string(&pk).expect("read pk");
    let cache = tmp.path().join("cache");
    let uri = format!("file://{}", cache.display());
    ok(firn("nix")
        .args(["copy", "--store", &b, "--to"])
        .arg(format!("{uri}?secret-key={}", sk.display()))
        .arg(TOP));
    std::fs::remove_file(cache.join("22222222222222222222222222222222.narinfo"))
        .expect("removing mid's narinfo");
    // The remote side reads its settings from NIX_CONFIG (the shell passes it on).
    let remote_conf = format!("substituters = {uri}\ntrusted-public-keys = {pk}");
    let check = |store: &str, tag: &str| {
        assert_eq!(contents(store, LEAF), "leaf from the cache\n", "{tag}");
        assert_eq!(contents(store, MID), "mid from the source\n", "{tag}");
        assert_eq!(contents(store, TOP), "top from the source\n", "{tag}");
        ok(cppnix("nix-store").args(["--store", store, "--verify", "--check-contents"]));
    };
    for firn_client in [true, false] {
        for firn_server in [true, false] {
            let tag = format!("client-{firn_client}-server-{firn_server}");
            let remote = store_dir(tmp.path(), &format!("to-{tag}"));
            ok(client(firn_client, "nix")
                .env("PATH", remote_path(firn_server))
                .env("NIX_CONFIG", &remote_conf)
                .args(["copy", "-s", "--no-check-sigs", "--store", &a, "--to"])
                .arg(format!("ssh://localhost?remote-store={remote}"))
                .arg(TOP));
            check(&remote, &tag);
        }
    }
    // Without the flag, nothing is substituted.
    let plain = store_dir(tmp.path(), "plain");
    ok(firn("nix")
        .env("PATH", remote_path(true))
        .env("NIX_CONFIG", &remote_conf)
        .args(["copy", "--no-check-sigs", "--store", &a, "--to"])
        .arg(format!("ssh://localhost?remote-store={plain}"))
        .arg(TOP));
    assert_eq!(contents(&plain, LEAF), "leaf from the source\n");
    // nix-copy-closure -s, both directions (from: the local store substitutes).
    let c = store_dir(tmp.path(), "c");
    ok(firn("nix-copy-closure")
        .env("PATH", remote_path(true))
        .env("NIX_REMOTE", &c)
        .env("NIX_CONFIG", &remote_conf)
        .args(["--store", &a, "-s", "--to", "localhost", TOP]));
    check(&c, "nix-copy-closure --to");
    let d = store_dir(tmp.path(), "d");
    ok(firn("nix-copy-closure")
        .env("PATH", remote_path(true))
        .env("NIX_REMOTE", &a)
        .env("NIX_CONFIG", &remote_conf)
        .args(["--store", &d, "-s", "--from", "localhost", TOP]));
    check(&d, "nix-copy-closure --from");
}
