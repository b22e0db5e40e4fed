//! `builtins.fetchMercurial` and `builtins.fetchTree` of `hg` inputs against CppNix 2.8 on the
//! same Mercurial repository (the `hg` tool must be installed): a clean repository by path, an
//! older revision by its node, a branch and a tag by name (`rev` that is not a node), a custom
//! `name`, `fetchTree` by attributes and by `hg+file://` URL, an unclean working tree (tracked
//! files only, the all-zero `rev`), errors, and the fetcher cache shared with CppNix (a
//! revision either fetched is found by the other without the repository). Every attribute of
//! the result is compared (as JSON), and the NAR hash of `outPath` in each store.

mod common;
#[path = "common/fetcher_oracle.rs"]
mod fetcher_oracle;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::*;
use fetcher_oracle::*;

/// Run `hg` in `dir` with a fixed user and no user or system configuration.
fn hg(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("hg")
        .args(["--config", "ui.username=Firn Test <test@firn.invalid>"])
        .args(args)
        .current_dir(dir)
        .env("HGPLAIN", "1")
        .env("HGRCPATH", "")
        .env("HOME", dir)
        .output()
        .expect("running hg (install Mercurial: apt-get install mercurial)");
    assert!(
        out.status.success(),
        "hg {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("hg output is UTF-8")
        .trim()
        .to_string()
}

/// The node of the working directory's parent.
fn node(dir: &Path) -> String {
    hg(dir, &["log", "-r", ".", "--template", "{node}"])
}

struct Repo {
    first: String,
    second: String,
    /// The commit `hg tag` made on `default` (its tip).
    tagged: String,
    /// The tip of branch `feature`.
    feature: String,
}

/// A repository with an executable, a symlink and a subdirectory: two commits on `default`,
/// a tag `v1` of the first (a third commit), and a branch `feature` with one commit; the
/// working directory is left at `default`.
fn make_repo(dir: &Path) -> Repo {
    std::fs::create_dir_all(dir).expect("mkdir");
    hg(dir, &["init"]);
    std::fs::write(dir.join("README"), "first\n").expect("write");
    std::fs::create_dir_all(dir.join("sub/deeper")).expect("mkdir");
    std::fs::write(dir.join("sub/deeper/data"), "deep\n").expect("write");
    std::fs::write(dir.join("run.sh"), "#!/bin/sh\necho hi\n").expect("write");
    std::fs::set_permissions(dir.join("run.sh"), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    std::os::unix::fs::symlink("sub/deeper/data", dir.join("link")).expect("symlink");
    hg(dir, &["add", "-q"]);
    hg(
        dir,
        &["commit", "-m", "first", "-d", "2021-03-04 05:06:07 +0000"],
    );
    let first = node(dir);
    std::fs::write(dir.join("README"), "second\n").expect("write");
    std::fs::write(dir.join("sub/new"), "new\n").expect("write");
    hg(dir, &["add", "-q"]);
    hg(
        dir,
        &["commit", "-m", "second", "-d", "2022-08-09 10:11:12 +0000"],
    );
    let second = node(dir);
    hg(
        dir,
        &["tag", "-r", &first, "-d", "2022-08-10 00:00:00 +0000", "v1"],
    );
    let tagged = node(dir);
    hg(dir, &["branch", "-q", "feature"]);
    std::fs::write(dir.join("README"), "feature\n").expect("write");
    hg(
        dir,
        &["commit", "-m", "feature", "-d", "2022-08-11 00:00:00 +0000"],
    );
    let feature = node(dir);
    hg(dir, &["update", "-q", "default"]);
    Repo {
        first,
        second,
        tagged,
        feature,
    }
}

#[test]
fn fetchmercurial_equals_cppnix() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    let repo_dir = dir.join("repo");
    let repo = make_repo(&repo_dir);
    let r = repo_dir.to_string_lossy().into_owned();

    // A clean repository by path string: the tip of `default`, cloned into the cache.
    let v = same(
        dir,
        "clean",
        &wrap(&format!("builtins.fetchMercurial \"{r}\"")),
    )
    .v;
    assert_eq!(v["rev"], repo.tagged.as_str());
    assert_eq!(v["shortRev"], &repo.tagged[..12]);
    assert_eq!(v["branch"], "default");
    assert_eq!(v["revCount"], 2);
    assert!(v.get("narHash").is_none(), "{v}");
    let clean_out = v["out"].as_str().expect("out").to_string();
    assert!(clean_out.ends_with("-source"));
    let hg_cache = dir.join("cache-firn/nix/hg");
    assert!(
        std::fs::read_dir(&hg_cache).is_ok_and(|mut d| d.next().is_some()),
        "firn keeps a clone in {}",
        hg_cache.display()
    );
    let files = real(&store_dir(dir, "firn-clean"), &clean_out);
    assert!(!files.join(".hg").exists());
    assert!(!files.join(".hg_archival.txt").exists());
    assert_eq!(
        std::fs::read_to_string(files.join(".hgtags")).expect(".hgtags"),
        format!("{} v1\n", repo.first)
    );

    // A path value gives the same.
    let v = same(dir, "path", &wrap(&format!("builtins.fetchMercurial {r}"))).v;
    assert_eq!(v["out"], clean_out.as_str());

    // An older revision by its node, through a file:// URL.
    let v = same(
        dir,
        "rev",
        &wrap(&format!(
            "builtins.fetchMercurial {{ url = \"file://{r}\"; rev = \"{}\"; }}",
            repo.first
        )),
    )
    .v;
    assert_eq!(v["rev"], repo.first.as_str());
    assert_eq!(v["revCount"], 0);

    // A branch by name, with a name for the store path.
    let v = same(
        dir,
        "branch",
        &wrap(&format!(
            "builtins.fetchMercurial {{ url = \"{r}\"; rev = \"feature\"; name = \"proj\"; }}"
        )),
    )
    .v;
    assert_eq!(v["rev"], repo.feature.as_str());
    assert_eq!(v["branch"], "feature");
    assert_eq!(v["revCount"], 3);
    assert!(v["out"].as_str().expect("out").ends_with("-proj"));

    // A tag by name: its commit, on `default`.
    let v = same(
        dir,
        "tag",
        &wrap(&format!(
            "builtins.fetchMercurial {{ url = \"{r}\"; rev = \"v1\"; }}"
        )),
    )
    .v;
    assert_eq!(v["rev"], repo.first.as_str());
    assert_eq!(v["branch"], "default");

    // fetchTree, by attributes and by URL: the same tree, with its narHash.
    let v = same(
        dir,
        "tree-attrs",
        &wrap(&format!(
            "builtins.fetchTree {{ type = \"hg\"; url = \"file://{r}\"; ref = \"feature\"; }}"
        )),
    )
    .v;
    assert_eq!(v["rev"], repo.feature.as_str());
    assert_eq!(v["shortRev"], &repo.feature[..7]);
    assert!(v["narHash"].is_string());
    let v = same(
        dir,
        "tree-url",
        &wrap(&format!(
            "builtins.fetchTree \"hg+file://{r}?rev={}\"",
            repo.second
        )),
    )
    .v;
    assert_eq!(v["rev"], repo.second.as_str());
    assert_eq!(v["revCount"], 1);

    // An unclean working tree: tracked files as they are on disk, untracked ones left out.
    std::fs::write(repo_dir.join("README"), "changed\n").expect("write");
    std::fs::write(repo_dir.join("untracked"), "not in hg\n").expect("write");
    let s = same(
        dir,
        "unclean",
        &wrap(&format!("builtins.fetchMercurial \"{r}\"")),
    );
    for e in &s.stderr {
        assert!(
            e.contains(&format!("Mercurial tree '{r}' is unclean")),
            "{e}"
        );
    }
    let v = s.v;
    assert_eq!(v["rev"], "0000000000000000000000000000000000000000");
    assert_eq!(v["shortRev"], "000000000000");
    assert_eq!(v["branch"], "default");
    assert!(v.get("revCount").is_none(), "{v}");
    let out = v["out"].as_str().expect("out");
    assert_dirty_tree_files(&real(&store_dir(dir, "firn-unclean"), out), ".hg");
    let v = same(
        dir,
        "unclean-tree",
        &wrap(&format!("builtins.fetchTree \"hg+file://{r}\"")),
    )
    .v;
    assert!(v.get("rev").is_none(), "{v}");
    hg(&repo_dir, &["revert", "-q", "--all", "--no-backup"]);
    std::fs::remove_file(repo_dir.join("untracked")).expect("rm");

    // Errors in both: an unknown revision, an unknown argument or attribute, no URL.
    for (tag, expr, msg) in [
        (
            "badrev",
            format!(
                "builtins.fetchMercurial {{ url = \"{r}\"; rev = \"{}\"; }}",
                "1".repeat(40)
            ),
            "hg failed with exit code 255",
        ),
        (
            "badbranch",
            format!("builtins.fetchMercurial {{ url = \"{r}\"; rev = \"nosuch\"; }}"),
            "hg failed with exit code 255",
        ),
        (
            "badarg",
            format!("builtins.fetchMercurial {{ url = \"{r}\"; foo = 1; }}"),
            "unsupported argument 'foo' to 'fetchMercurial'",
        ),
        (
            "badattr",
            format!("builtins.fetchTree {{ type = \"hg\"; url = \"{r}\"; foo = 1; }}"),
            "unsupported Mercurial input attribute 'foo'",
        ),
        (
            "nourl",
            "builtins.fetchMercurial { rev = \"default\"; }".to_string(),
            "'url' argument required",
        ),
    ] {
        let (mine, theirs) = both(dir, tag, &wrap(&expr));
        assert!(!theirs.ok, "{tag}: CppNix succeeded");
        assert!(!mine.ok, "{tag}: firn succeeded");
        assert!(theirs.stderr.contains(msg), "{tag}: {}", theirs.stderr);
        assert!(mine.stderr.contains(msg), "{tag}: {}", mine.stderr);
    }
}

/// A revision fetched by one is found by the other in the shared fetcher cache and store,
/// without the repository.
#[test]
fn fetcher_cache_is_shared_with_cppnix() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    let repo_dir = dir.join("repo");
    let repo = make_repo(&repo_dir);
    let r = repo_dir.to_string_lossy().into_owned();
    let store = store_dir(dir, "shared");
    let cache = dir.join("cache");
    let by_rev = |rev: &str| {
        wrap(&format!(
            "builtins.fetchMercurial {{ url = \"{r}\"; rev = \"{rev}\"; }}"
        ))
    };
    let first = run(
        cppnix("nix-instantiate"),
        dir,
        &cache,
        store.clone(),
        &by_rev(&repo.first),
    );
    assert!(first.ok, "CppNix: {}", first.stderr);
    let second = run(
        firn("nix-instantiate"),
        dir,
        &cache,
        store.clone(),
        &by_rev(&repo.second),
    );
    assert!(second.ok, "firn: {}", second.stderr);

    std::fs::rename(&repo_dir, dir.join("moved")).expect("mv");
    let cache_of = |c: Command, rev: &str| run(c, dir, &cache, store.clone(), &by_rev(rev));
    let mine = cache_of(firn("nix-instantiate"), &repo.first);
    assert!(mine.ok, "firn did not find CppNix's entry: {}", mine.stderr);
    let theirs = cache_of(cppnix("nix-instantiate"), &repo.second);
    assert!(
        theirs.ok,
        "CppNix did not find firn's entry: {}",
        theirs.stderr
    );
    let json = |s: &str| serde_json::from_str::<serde_json::Value>(s).expect("JSON");
    assert_eq!(json(&mine.stdout), json(&first.stdout));
    assert_eq!(json(&theirs.stdout), json(&second.stdout));
    assert_eq!(json(&mine.stdout)["revCount"], 0);
    assert_eq!(json(&theirs.stdout)["revCount"], 1);
}
