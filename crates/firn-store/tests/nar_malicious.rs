//! Hostile NARs: handcrafted bytes that try to escape the target (`..`, `/`, duplicates that
//! would write through a symlink), break the order, lie about lengths or end early. `restore_path`
//! refuses each with the matching error and creates nothing outside the target; CppNix 2.8's
//! `nix-store --restore` refuses the same NARs.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use firn_format::nar::NarError;
use firn_store::nar_fs::{restore_path, NarFsError};

/// One NAR string: length, bytes, zero padding.
fn s(x: &[u8]) -> Vec<u8> {
    let mut v = (x.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(x);
    v.resize(v.len() + (8 - x.len() % 8) % 8, 0);
    v
}

fn nar(tokens: &[&[u8]]) -> Vec<u8> {
    tokens.iter().flat_map(|t| s(t)).collect()
}

const HEAD: [&[u8]; 4] = [b"nix-archive-1", b"(", b"type", b"directory"];

/// A root directory with the given entries, each already encoded.
fn dir(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut v = nar(&HEAD);
    for e in entries {
        v.extend_from_slice(e);
    }
    v.extend_from_slice(&s(b")"));
    v
}

fn entry(name: &[u8], node: Vec<u8>) -> Vec<u8> {
    let mut v = nar(&[b"entry", b"(", b"name", name, b"node"]);
    v.extend(node);
    v.extend(s(b")"));
    v
}

fn file(contents: &[u8]) -> Vec<u8> {
    let mut v = nar(&[b"(", b"type", b"regular", b"contents"]);
    v.extend(s(contents));
    v.extend(s(b")"));
    v
}

fn link(target: &[u8]) -> Vec<u8> {
    nar(&[b"(", b"type", b"symlink", b"target", target, b")"])
}

fn subdir(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut v = nar(&[b"(", b"type", b"directory"]);
    for e in entries {
        v.extend_from_slice(e);
    }
    v.extend(s(b")"));
    v
}

/// Everything under `root`, as relative paths.
fn listing(root: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(p) = todo.pop() {
        let m = fs::symlink_metadata(&p).unwrap();
        out.insert(p.strip_prefix(root).unwrap().to_path_buf());
        if m.is_dir() {
            for e in fs::read_dir(&p).unwrap() {
                todo.push(e.unwrap().path());
            }
        }
    }
    out
}

/// A sandbox: `outside/` holds a sentinel a hostile NAR might try to reach, `t` is the target.
struct Sandbox {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
}

impl Sandbox {
    fn new() -> Sandbox {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("sandbox");
        let outside = root.join("outside");
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("sentinel"), b"keep").unwrap();
        Sandbox {
            _tmp: tmp,
            root,
            outside,
        }
    }

    fn target(&self) -> PathBuf {
        self.root.join("t")
    }

    /// Nothing but the target was added to the sandbox, and the sentinel is untouched.
    fn assert_untouched(&self, what: &str) {
        let got: BTreeSet<PathBuf> = listing(&self.root)
            .into_iter()
            .filter(|p| !p.starts_with("t"))
            .collect();
        let want: BTreeSet<PathBuf> = ["", "outside", "outside/sentinel"]
            .iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(
            got, want,
            "{what}: something was created outside the target"
        );
        assert_eq!(fs::read(self.outside.join("sentinel")).unwrap(), b"keep");
    }
}

/// Does CppNix's `nix-store --restore` accept `bytes`?
fn cppnix_accepts(bytes: &[u8]) -> bool {
    use std::io::Write;
    let sb = Sandbox::new();
    let mut child = Command::new("nix-store")
        .arg("--restore")
        .arg(sb.target())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting nix-store");
    // It may stop reading at the first error: a broken pipe is expected then.
    let _ = child
        .stdin
        .take()
        .expect("stdin was piped")
        .write_all(bytes);
    let ok = child.wait().expect("waiting for nix-store").success();
    sb.assert_untouched("CppNix");
    ok
}

/// Restore `bytes` in a fresh sandbox; it must fail without touching anything outside.
fn refuse(what: &str, bytes: &[u8]) -> NarError {
    let sb = Sandbox::new();
    let e = restore_path(&mut &bytes[..], &sb.target()).expect_err(what);
    sb.assert_untouched(what);
    match e {
        NarFsError::Restore { source, path } => {
            assert_eq!(path, sb.target());
            source
        }
        other => panic!("{what}: expected a NAR error, got {other}"),
    }
}

fn outside_link() -> Vec<u8> {
    // Relative, so it points at the sandbox's `outside` from the target's root.
    link(b"../outside")
}

#[test]
fn names_that_escape_are_refused() {
    let payload = || subdir(&[entry(b"pwned", file(b"x"))]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("..", dir(&[entry(b"..", payload())])),
        (".", dir(&[entry(b".", payload())])),
        ("slash", dir(&[entry(b"../outside", payload())])),
        ("absolute", dir(&[entry(b"/tmp", payload())])),
        ("empty", dir(&[entry(b"", file(b"x"))])),
        ("nul", dir(&[entry(b"a\0b", file(b"x"))])),
        (
            "nested ..",
            dir(&[entry(b"d", subdir(&[entry(b"..", payload())]))]),
        ),
    ];
    for (what, bytes) in cases {
        let e = refuse(what, &bytes);
        assert!(matches!(e, NarError::BadName { .. }), "{what}: {e}");
        assert!(e.to_string().contains("invalid file name"), "{what}: {e}");
        assert!(!cppnix_accepts(&bytes), "CppNix accepts {what}");
    }
}

#[test]
fn unsorted_and_duplicate_entries_are_refused() {
    // Out of order but distinct. CppNix 2.8 restores these: its sort check compares each name
    // with a variable that is reset for every entry, so it never fires (later versions fixed
    // that and refuse them, as firn does).
    let unsorted: Vec<(&str, Vec<u8>)> = vec![
        (
            "unsorted",
            dir(&[entry(b"b", file(b"")), entry(b"a", file(b""))]),
        ),
        // Byte order, not locale order: 'a' (0x61) sorts after '_' (0x5f).
        (
            "locale order",
            dir(&[entry(b"a", file(b"")), entry(b"_", file(b""))]),
        ),
    ];
    for (what, bytes) in unsorted {
        let e = refuse(what, &bytes);
        assert!(matches!(e, NarError::NotSorted { .. }), "{what}: {e}");
        assert!(e.to_string().contains("not strictly sorted"), "{what}: {e}");
        assert!(cppnix_accepts(&bytes), "CppNix 2.8 now refuses {what}");
    }
    // Repeated names: CppNix refuses these when creating the second object fails.
    let duplicates: Vec<(&str, Vec<u8>)> = vec![
        (
            "duplicate",
            dir(&[entry(b"a", file(b"")), entry(b"a", file(b""))]),
        ),
        // A symlink out of the target, then the same name as a directory: writing into it
        // would follow the symlink.
        (
            "duplicate through a symlink",
            dir(&[
                entry(b"a", outside_link()),
                entry(b"a", subdir(&[entry(b"pwned", file(b"x"))])),
            ]),
        ),
        (
            "file over a symlink",
            dir(&[entry(b"a", outside_link()), entry(b"a", file(b"x"))]),
        ),
    ];
    for (what, bytes) in duplicates {
        let e = refuse(what, &bytes);
        assert!(matches!(e, NarError::NotSorted { .. }), "{what}: {e}");
        assert!(!cppnix_accepts(&bytes), "CppNix accepts {what}");
    }
}

#[test]
fn lies_about_lengths_are_refused() {
    // A name claiming 2^62 bytes.
    let mut huge_name = nar(&HEAD);
    huge_name.extend(nar(&[b"entry", b"(", b"name"]));
    huge_name.extend_from_slice(&(1u64 << 62).to_le_bytes());
    huge_name.extend_from_slice(b"aaaaaaaa");
    let e = refuse("huge name", &huge_name);
    assert!(matches!(e, NarError::TooLong { .. }), "{e}");
    assert!(!cppnix_accepts(&huge_name));

    // A file claiming more contents than there are.
    let mut huge_file = nar(&[b"nix-archive-1", b"(", b"type", b"regular", b"contents"]);
    huge_file.extend_from_slice(&(1u64 << 40).to_le_bytes());
    huge_file.extend_from_slice(b"short");
    let e = refuse("huge file", &huge_file);
    assert!(matches!(e, NarError::Truncated(_)), "{e}");
    assert!(!cppnix_accepts(&huge_file));

    // A symlink target longer than any path.
    let long_target = dir(&[entry(b"l", link(&[b'x'; 5000]))]);
    let e = refuse("long target", &long_target);
    assert!(matches!(e, NarError::TooLong { .. }), "{e}");
    assert!(!cppnix_accepts(&long_target));

    // A name longer than NAME_MAX.
    let long_name = dir(&[entry(&[b'n'; 256], file(b""))]);
    let e = refuse("long name", &long_name);
    assert!(matches!(e, NarError::TooLong { .. }), "{e}");
    assert!(!cppnix_accepts(&long_name));
}

#[test]
fn truncated_nars_are_refused_everywhere() {
    let whole = dir(&[
        entry(b"a", file(b"contents!")),
        entry(b"d", subdir(&[entry(b"x", link(b"../a"))])),
        entry(b"e", subdir(&[])),
    ]);
    // The whole NAR is fine, for both.
    let sb = Sandbox::new();
    restore_path(&mut &whole[..], &sb.target()).unwrap();
    sb.assert_untouched("whole");
    assert!(cppnix_accepts(&whole));
    for cut in (0..whole.len()).step_by(5) {
        let e = refuse(&format!("cut at {cut}"), &whole[..cut]);
        assert!(
            matches!(e, NarError::Truncated(_) | NarError::BadMagic),
            "cut at {cut}: {e}"
        );
    }
    for cut in [0, 23, 100, whole.len() - 1] {
        assert!(
            !cppnix_accepts(&whole[..cut]),
            "CppNix accepts a cut at {cut}"
        );
    }
}

#[test]
fn malformed_tokens_are_refused() {
    let mut bad_padding = dir(&[entry(b"a", file(b"abc"))]);
    // The byte after "abc" is padding.
    let pos = bad_padding
        .windows(3)
        .position(|w| w == b"abc")
        .expect("the contents are there")
        + 3;
    bad_padding[pos] = 1;
    let e = refuse("padding", &bad_padding);
    assert!(
        matches!(e, NarError::BadPadding(p) if p == pos as u64),
        "{e}"
    );

    let mut bad_magic = dir(&[]);
    bad_magic[8 + 12] = b'2';
    assert!(matches!(refuse("magic", &bad_magic), NarError::BadMagic));
    assert!(!cppnix_accepts(&bad_magic));

    let fifo = nar(&[b"nix-archive-1", b"(", b"type", b"fifo", b")"]);
    assert!(matches!(refuse("fifo", &fifo), NarError::Unexpected { .. }));
    assert!(!cppnix_accepts(&fifo));

    let unknown = dir(&[nar(&[b"entry", b"(", b"nom", b"a"])]);
    assert!(matches!(
        refuse("unknown token", &unknown),
        NarError::Unexpected { .. }
    ));
    assert!(!cppnix_accepts(&unknown));
}

#[test]
fn excessive_depth_is_refused() {
    let depth = firn_format::nar::MAX_DEPTH + 5;
    let mut bytes = nar(&[b"nix-archive-1"]);
    for _ in 0..depth {
        bytes.extend(nar(&[
            b"(",
            b"type",
            b"directory",
            b"entry",
            b"(",
            b"name",
            b"d",
            b"node",
        ]));
    }
    bytes.extend(file(b""));
    for _ in 0..depth {
        bytes.extend(nar(&[b")", b")"]));
    }
    let e = refuse("depth", &bytes);
    assert!(matches!(e, NarError::TooDeep(_)), "{e}");
}

#[test]
fn an_existing_target_is_never_written_through() {
    let sb = Sandbox::new();
    let t = sb.target();
    // The target exists as a symlink to the outside directory.
    std::os::unix::fs::symlink("outside", &t).unwrap();
    for bytes in [dir(&[entry(b"pwned", file(b"x"))]), file(b"x"), link(b"y")] {
        let e = restore_path(&mut &bytes[..], &t).unwrap_err();
        assert!(e.to_string().contains(&*t.to_string_lossy()), "{e}");
        sb.assert_untouched("existing target");
    }
}
