//! `builtins.fetchGit` against CppNix 2.8 on the same repositories: a clean local repository
//! by path, a `file://` URL with the `rev` of an older commit, `ref = "main"`, a dirty working
//! tree (tracked files only, the all-zero `rev`), a bare repository (fetched through the
//! `gitv3` cache), a custom `name`, and errors (an unknown `rev`, an unknown attribute). Every
//! attribute of the result is compared (as JSON), and the NAR hash of `outPath` in each store.

mod common;
#[path = "common/fetcher_oracle.rs"]
mod fetcher_oracle;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;
use fetcher_oracle::*;

const DATE1: &str = "2021-03-04T05:06:07Z";
const DATE2: &str = "2022-08-09T10:11:12Z";

/// A repository with an executable, a symlink, a subdirectory and two commits; returns the
/// two commit ids.
fn make_repo(dir: &Path) -> (String, String) {
    std::fs::create_dir_all(dir).expect("mkdir");
    git(dir, &["init", "-q", "-b", "main"], DATE1);
    std::fs::write(dir.join("README"), "first\n").expect("write");
    std::fs::create_dir_all(dir.join("sub/deeper")).expect("mkdir");
    std::fs::write(dir.join("sub/deeper/data"), "deep\n").expect("write");
    std::fs::write(dir.join("run.sh"), "#!/bin/sh\necho hi\n").expect("write");
    std::fs::set_permissions(dir.join("run.sh"), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    std::os::unix::fs::symlink("sub/deeper/data", dir.join("link")).expect("symlink");
    git(dir, &["add", "-A"], DATE1);
    git(dir, &["commit", "-q", "-m", "first"], DATE1);
    let first = git(dir, &["rev-parse", "HEAD"], DATE1);
    std::fs::write(dir.join("README"), "second\n").expect("write");
    std::fs::write(dir.join("sub/new"), "new\n").expect("write");
    git(dir, &["add", "-A"], DATE2);
    git(dir, &["commit", "-q", "-m", "second"], DATE2);
    let second = git(dir, &["rev-parse", "HEAD"], DATE2);
    (first, second)
}

#[test]
fn fetchgit_equals_cppnix() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    let repo = dir.join("repo");
    let (first, second) = make_repo(&repo);
    let repo_s = repo.to_string_lossy().into_owned();

    // A clean repository by path string: HEAD of the current branch.
    let v = same(
        dir,
        "clean",
        &wrap(&format!("builtins.fetchGit \"{repo_s}\"")),
    )
    .v;
    assert_eq!(v["rev"], second.as_str());
    assert_eq!(v["shortRev"], &second[..7]);
    assert_eq!(v["revCount"], 2);
    assert_eq!(v["submodules"], false);
    assert!(v["narHash"].is_string(), "fetchGit gives a narHash");
    assert_eq!(v["lastModifiedDate"], "20220809101112");
    assert!(v["out"].as_str().unwrap().ends_with("-source"));
    let clean_out = v["out"].as_str().unwrap().to_string();

    // A path value gives the same.
    let v = same(dir, "path", &wrap(&format!("builtins.fetchGit {repo_s}"))).v;
    assert_eq!(v["out"], clean_out.as_str());

    // A file:// URL with the rev of the first commit.
    let v = same(
        dir,
        "rev",
        &wrap(&format!(
            "builtins.fetchGit {{ url = \"file://{repo_s}\"; rev = \"{first}\"; }}"
        )),
    )
    .v;
    assert_eq!(v["rev"], first.as_str());
    assert_eq!(v["revCount"], 1);
    assert_eq!(v["lastModifiedDate"], "20210304050607");

    // ref = "main", and a name.
    let v = same(
        dir,
        "ref",
        &wrap(&format!(
            "builtins.fetchGit {{ url = \"{repo_s}\"; ref = \"main\"; name = \"proj\"; }}"
        )),
    )
    .v;
    assert_eq!(v["rev"], second.as_str());
    assert!(v["out"].as_str().unwrap().ends_with("-proj"));

    // A bare repository is fetched into the cache.
    let bare = dir.join("bare.git");
    git(
        dir,
        &["clone", "-q", "--bare", &repo_s, &bare.to_string_lossy()],
        DATE2,
    );
    let v = same(
        dir,
        "bare",
        &wrap(&format!(
            "builtins.fetchGit {{ url = \"file://{}\"; ref = \"main\"; }}",
            bare.display()
        )),
    )
    .v;
    assert_eq!(v["rev"], second.as_str());
    assert_eq!(v["out"], clean_out.as_str());
    let gitv3 = dir.join("cache-firn/nix/gitv3");
    assert!(
        std::fs::read_dir(&gitv3).is_ok_and(|mut d| d.next().is_some()),
        "firn keeps a cache repository in {}",
        gitv3.display()
    );
    let v = same(
        dir,
        "bare-rev",
        &wrap(&format!(
            "builtins.fetchGit {{ url = \"file://{}\"; ref = \"main\"; rev = \"{first}\"; }}",
            bare.display()
        )),
    )
    .v;
    assert_eq!(v["revCount"], 1);

    // A dirty working tree: tracked files as they are on disk, untracked ones left out.
    std::fs::write(repo.join("README"), "changed\n").expect("write");
    std::fs::write(repo.join("untracked"), "not in git\n").expect("write");
    let r = same(
        dir,
        "dirty",
        &wrap(&format!("builtins.fetchGit \"{repo_s}\"")),
    );
    for e in &r.stderr {
        assert!(e.contains(&format!("Git tree '{repo_s}' is dirty")), "{e}");
    }
    let v = r.v;
    assert_eq!(v["rev"], "0000000000000000000000000000000000000000");
    assert_eq!(v["shortRev"], "0000000");
    assert_eq!(v["revCount"], 0);
    assert_eq!(v["lastModifiedDate"], "20220809101112");
    let out = v["out"].as_str().unwrap();
    assert_dirty_tree_files(&real(&store_dir(dir, "firn-dirty"), out), ".git");

    // An unknown rev fails in both, naming the repository.
    let (mine, theirs) = both(
        dir,
        "badrev",
        &wrap(&format!(
            "builtins.fetchGit {{ url = \"{repo_s}\"; rev = \"{}\"; }}",
            "1".repeat(40)
        )),
    );
    for r in [&mine, &theirs] {
        assert!(!r.ok);
        assert!(
            r.stderr.contains("Cannot find Git revision"),
            "{}",
            r.stderr
        );
        assert!(r.stderr.contains(&repo_s), "{}", r.stderr);
    }

    // Not a repository, and an unknown attribute: errors in both.
    let missing = dir.join("missing").to_string_lossy().into_owned();
    for (tag, expr, msg) in [
        (
            "missing",
            format!("builtins.fetchGit \"{missing}\""),
            missing.as_str(),
        ),
        (
            "badattr",
            format!("builtins.fetchGit {{ url = \"{repo_s}\"; foo = 1; }}"),
            "unsupported Git input attribute 'foo'",
        ),
    ] {
        let (mine, theirs) = both(dir, tag, &wrap(&expr));
        assert!(!theirs.ok, "{tag}: CppNix succeeded");
        assert!(!mine.ok, "{tag}: firn succeeded");
        assert!(mine.stderr.contains(msg), "{tag}: {}", mine.stderr);
    }
}
