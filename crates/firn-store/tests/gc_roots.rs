//! Finding roots on chroot stores, compared with CppNix 2.8: direct links in `gcroots/`,
//! indirect roots through `gcroots/auto` (made by firn's `add_perm_root` and by CppNix's
//! `--add-root`, with the same names), profiles, runtime roots of a live process, and the
//! removal of stale `auto` links.

mod gc_support;

use std::collections::BTreeSet;

use firn_store::roots::Roots;
use gc_support::*;

/// `link -> target` lines, as `nix-store --gc --print-roots` prints them.
fn lines(store: &firn_store::LocalStore, roots: &Roots) -> BTreeSet<String> {
    roots
        .iter()
        .flat_map(|(p, links)| {
            links
                .iter()
                .map(move |l| format!("{l} -> {}", store.store_dir().display(p)))
        })
        .collect()
}

#[test]
fn roots_equal_cppnix() {
    let ts = TestStore::new();
    let s = ts.open();
    let direct = add(&s, "direct", "1", &[]);
    let indirect = add(&s, "indirect", "2", &[]);
    let by_cppnix = add(&s, "by-cppnix", "3", &[]);
    let profile = add(&s, "profile", "4", &[]);
    let file_root = add(&s, "file-root", "5", &[]);
    let _dead = add(&s, "dead", "6", &[]);
    direct_root(&ts, &s, "sub/dir/direct", &direct);
    // An indirect root made by firn: the link outside, and gcroots/auto/<name> pointing to it.
    let result = ts.root().join("home/result");
    let made = s.add_perm_root(&indirect, &result).expect("adding a root");
    assert_eq!(made, result);
    assert_eq!(
        std::fs::read_link(&result).expect("link"),
        std::path::Path::new(&s.store_dir().display(&indirect))
    );
    // A profile generation with the usual relative link.
    let profiles = ts.state().join("profiles");
    std::os::unix::fs::symlink(s.store_dir().display(&profile), profiles.join("p-1-link"))
        .expect("symlink");
    std::os::unix::fs::symlink("p-1-link", profiles.join("p")).expect("symlink");
    // A regular file named like a store path is a root too.
    std::fs::write(ts.state().join("gcroots").join(file_root.base_name()), "").expect("write");
    drop(s);

    // CppNix's --add-root names its auto link the way firn does.
    let cpp_link = ts.root().join("home/cpp-result");
    let shown = ts.cppnix_lines(&[
        "--add-root",
        cpp_link.to_str().expect("utf-8 temp dir"),
        "--realise",
        &format!("/nix/store/{}", by_cppnix.base_name()),
    ]);
    assert_eq!(shown, BTreeSet::from([cpp_link.display().to_string()]));
    let s = ts.open();
    let auto = s.indirect_root_name(&cpp_link);
    assert_eq!(
        std::fs::read_link(&auto).expect("CppNix's auto link"),
        cpp_link
    );
    assert!(std::fs::read_link(s.indirect_root_name(&result)).is_ok_and(|t| t == result));

    let roots = s.find_roots(false).expect("finding roots");
    let keys: BTreeSet<_> = roots.keys().cloned().collect();
    assert_eq!(
        keys,
        BTreeSet::from([direct, indirect, by_cppnix, profile.clone(), file_root])
    );
    assert_eq!(
        roots[&profile],
        BTreeSet::from([
            profiles.join("p-1-link").display().to_string(),
            // Through the relative link `p`, the generation link is found again.
        ])
    );
    let ours = lines(&s, &roots);
    drop(s);
    let theirs = ts.cppnix_lines(&["--gc", "--print-roots"]);
    assert_eq!(ours, theirs);
}

#[test]
fn stale_auto_links_are_removed() {
    let ts = TestStore::new();
    let s = ts.open();
    let p = add(&s, "x", "x", &[]);
    let link = ts.root().join("result");
    s.add_perm_root(&p, &link).expect("adding a root");
    let auto = s.indirect_root_name(&link);
    // (Without the temporary roots: this store object holds one for `p`.)
    assert!(s.find_roots_no_temp(false).expect("roots").contains_key(&p));
    std::fs::remove_file(&link).expect("removing the user's link");
    let roots = s.find_roots_no_temp(false).expect("roots");
    assert!(!roots.contains_key(&p));
    assert!(
        std::fs::symlink_metadata(&auto).is_err(),
        "stale auto link kept"
    );
}

#[test]
fn perm_roots_refuse_to_clobber_or_go_in_the_store() {
    let ts = TestStore::new();
    let s = ts.open();
    let p = add(&s, "x", "x", &[]);
    let file = ts.root().join("file");
    std::fs::write(&file, "mine").expect("write");
    let err = s
        .add_perm_root(&p, &file)
        .expect_err("must not clobber a file");
    assert!(err.to_string().contains("already exists"), "{err}");
    let err = s
        .add_perm_root(&p, std::path::Path::new("/nix/store/foo"))
        .expect_err("must not root inside the store");
    assert!(
        err.to_string().contains("in the Nix store is forbidden"),
        "{err}"
    );
}

#[test]
fn runtime_roots_of_a_live_process() {
    let ts = TestStore::new();
    let s = ts.open();
    let p = add(&s, "held-open", "content", &[]);
    let q = add(&s, "in-environment", "content2", &[]);
    // A child with a store file open (through the chroot's real path) and a logical store
    // path in its environment.
    let mut child = std::process::Command::new("sh")
        .args(["-c", "exec sleep 60 < \"$1\"", "sh"])
        .arg(ts.real(&p))
        .env("SOME_PATH", format!("/nix/store/{}/bin", q.base_name()))
        .spawn()
        .expect("spawning a child");
    let pid = child.id();
    // Wait for the very links asked for: before `exec`, the shell holds the path only in its
    // command line (itself a root), so the file descriptor appears a moment later.
    let fd_link = format!("/proc/{pid}/fd/0");
    let env_link = format!("/proc/{pid}/environ");
    let seen = |roots: &Roots| {
        roots.get(&p).is_some_and(|l| l.contains(&fd_link))
            && roots.get(&q).is_some_and(|l| l.contains(&env_link))
    };
    let mut roots = Roots::new();
    for _ in 0..500 {
        roots = s.find_roots(false).expect("roots");
        if seen(&roots) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(seen(&roots), "{roots:?}");
    // Censored, as the collector asks for them.
    let censored = s.find_roots(true).expect("roots");
    assert_eq!(censored[&q], BTreeSet::from(["{censored}".to_string()]));
    child.kill().expect("kill");
    child.wait().expect("wait");
}
