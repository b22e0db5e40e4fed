//! `builtin:buildenv`: the builder of `nix-env`'s user environments (profiles), behaving as
//! CppNix 2.8's.
//!
//! The `derivations` attribute is a whitespace-separated list of groups
//! `active priority count path...`. The active packages, lowest priority number first (then by
//! path), are merged into one tree of symbolic links at `$out`: a directory only one package
//! has is a single link to it; when a second package brings the same directory, the link is
//! replaced by a real directory holding links to both packages' entries. Two packages with the
//! same file: the lower priority number wins, equal priorities are an error. Packages named in
//! a package's `nix-support/propagated-user-env-packages` follow, at priorities 1000, 1001, ...
//! A few names never enter the tree (`nix-support`, `log`, `info/dir`, `manifest.nix`, ...),
//! nor do names starting with a dot. Last, `$out/manifest.nix` links to the `manifest`.
//!
//! The links point at the logical store paths, but the packages are read where their files
//! are: in a chroot store, below the real store directory. Symbolic links inside the packages
//! are therefore followed here, one component at a time, in the logical namespace.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// How many symbolic links one lookup may follow (Linux's limit).
const MAX_LINKS: usize = 40;

/// Names (as suffixes of the package-side path) that never enter a user environment.
const SKIPPED: [&[u8]; 7] = [
    b"/propagated-build-inputs",
    b"/nix-support",
    b"/perllocal.pod",
    b"/info/dir",
    b"/log",
    b"/manifest.nix",
    b"/manifest.json",
];

/// Build the user environment described by `env` into `out` (the output's real location).
/// `store_dir` is the logical store directory, `real_store_dir` where its files are. Returns
/// the log text (warnings) or an error message.
pub fn build(
    env: &BTreeMap<String, String>,
    out: &Path,
    store_dir: &str,
    real_store_dir: &Path,
) -> Result<String, String> {
    let attr = |name: &str| {
        env.get(name)
            .ok_or_else(|| format!("attribute '{name}' missing"))
    };
    let out_logical = attr("out")?;
    fs::create_dir_all(out).map_err(|e| format!("creating directory '{}': {e}", out.display()))?;

    let pkgs = parse_derivations(attr("derivations")?)?;
    let mut b = Builder {
        store_dir: store_dir.trim_end_matches('/').as_bytes().to_vec(),
        real_store_dir: real_store_dir.to_path_buf(),
        priorities: HashMap::new(),
        symlinks: 0,
        log: String::new(),
    };
    b.build_profile(out, out_logical.as_bytes(), pkgs)?;

    let manifest = attr("manifest")?;
    let link = out.join("manifest.nix");
    std::os::unix::fs::symlink(manifest, &link).map_err(|e| {
        format!("creating symlink from '{out_logical}/manifest.nix' to '{manifest}': {e}")
    })?;
    tracing::debug!("created {} symlinks in user environment", b.symlinks);
    Ok(b.log)
}

struct Package {
    path: Vec<u8>,
    active: bool,
    priority: i32,
}

/// `derivations`: groups of `active priority count path1 ... pathN`.
fn parse_derivations(s: &str) -> Result<Vec<Package>, String> {
    let mut tokens = s.split([' ', '\t', '\n', '\r']).filter(|t| !t.is_empty());
    let mut pkgs = Vec::new();
    while let Some(active) = tokens.next() {
        let mut next = |what: &str| {
            tokens.next().ok_or_else(|| {
                format!("malformed attribute 'derivations': {what} missing at the end")
            })
        };
        let priority = parse_int(next("a priority")?)?;
        let count = parse_int(next("an output count")?)?;
        for _ in 0..count {
            pkgs.push(Package {
                path: next("an output path")?.as_bytes().to_vec(),
                active: active != "false",
                priority,
            });
        }
    }
    Ok(pkgs)
}

/// An integer as C++'s `std::stoi` reads one: an optional sign, digits, and anything after.
fn parse_int(t: &str) -> Result<i32, String> {
    let bad = || format!("malformed attribute 'derivations': '{t}' is not a number");
    let (neg, rest) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(bad());
    }
    let n: i64 = rest[..digits]
        .parse()
        .map_err(|_| format!("malformed attribute 'derivations': '{t}' is out of range"))?;
    let n = if neg { -n } else { n };
    i32::try_from(n)
        .map_err(|_| format!("malformed attribute 'derivations': '{t}' is out of range"))
}

struct Builder {
    /// The logical store directory, without a trailing slash.
    store_dir: Vec<u8>,
    real_store_dir: PathBuf,
    /// The priority of each link made, by its logical path.
    priorities: HashMap<Vec<u8>, i32>,
    symlinks: u64,
    log: String,
}

fn show(p: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(p)
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(dir.len() + 1 + name.len());
    p.extend_from_slice(dir);
    p.push(b'/');
    p.extend_from_slice(name);
    p
}

fn errno(e: &io::Error) -> Option<i32> {
    e.raw_os_error()
}

fn is_missing(e: &io::Error) -> bool {
    matches!(errno(e), Some(libc::ENOENT) | Some(libc::ENOTDIR))
}

impl Builder {
    /// Where the logical path `p` (absolute) is on disk.
    fn real(&self, p: &[u8]) -> PathBuf {
        let sd = &self.store_dir;
        if let Some(rest) = p.strip_prefix(sd.as_slice()) {
            if rest.is_empty() {
                return self.real_store_dir.clone();
            }
            if let Some(rest) = rest.strip_prefix(b"/") {
                return self.real_store_dir.join(OsStr::from_bytes(rest));
            }
        }
        PathBuf::from(OsStr::from_bytes(p))
    }

    /// Whether `p` is the store directory or one of its ancestors: always a directory, which
    /// need not exist at its logical place on disk.
    fn is_store_ancestor(&self, p: &[u8]) -> bool {
        p.is_empty()
            || p == self.store_dir.as_slice()
            || (self.store_dir.starts_with(p) && self.store_dir.get(p.len()) == Some(&b'/'))
    }

    /// The logical path `path` (relative paths are taken from `base`, a canonical directory)
    /// with every symbolic link followed, as the kernel would in a root where the store
    /// directory holds the store's files. The result is absolute and holds no links.
    fn resolve(&self, base: &[u8], path: &[u8]) -> io::Result<Vec<u8>> {
        // `cur` is canonical; the empty string stands for `/`.
        let mut cur: Vec<u8> = if path.starts_with(b"/") {
            Vec::new()
        } else {
            base.strip_suffix(b"/").unwrap_or(base).to_vec()
        };
        let mut todo: VecDeque<Vec<u8>> = VecDeque::new();
        push_front_components(&mut todo, path);
        let mut links = 0;
        while let Some(c) = todo.pop_front() {
            if c == b"." {
                continue;
            }
            if c == b".." {
                let cut = cur.iter().rposition(|&b| b == b'/').unwrap_or(0);
                cur.truncate(cut);
                continue;
            }
            let next = join(&cur, &c);
            if self.is_store_ancestor(&next) {
                cur = next;
                continue;
            }
            let real = self.real(&next);
            let md = fs::symlink_metadata(&real)?;
            if md.file_type().is_symlink() {
                links += 1;
                if links > MAX_LINKS {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                let target = fs::read_link(&real)?;
                let target = target.as_os_str().as_bytes();
                if target.starts_with(b"/") {
                    cur.clear();
                }
                push_front_components(&mut todo, target);
            } else {
                if !md.is_dir() && !todo.is_empty() {
                    return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
                }
                cur = next;
            }
        }
        if cur.is_empty() {
            cur.push(b'/');
        }
        Ok(cur)
    }

    /// `lstat` of a canonical logical path.
    fn is_dir(&self, canon: &[u8]) -> io::Result<bool> {
        if self.is_store_ancestor(canon.strip_suffix(b"/").unwrap_or(canon)) {
            return Ok(true);
        }
        Ok(fs::symlink_metadata(self.real(canon))?.is_dir())
    }

    fn warn(&mut self, msg: String) {
        tracing::warn!("{msg}");
        self.log.push_str("warning: ");
        self.log.push_str(&msg);
        self.log.push('\n');
    }

    fn build_profile(
        &mut self,
        out: &Path,
        out_logical: &[u8],
        mut pkgs: Vec<Package>,
    ) -> Result<(), String> {
        let mut done: BTreeSet<Vec<u8>> = BTreeSet::new();
        let mut postponed: BTreeSet<Vec<u8>> = BTreeSet::new();

        // The packages installed explicitly, in priority order (fewer links replaced).
        pkgs.sort_by(|a, b| a.priority.cmp(&b.priority).then(a.path.cmp(&b.path)));
        for p in &pkgs {
            if p.active {
                self.add_pkg(
                    &mut done,
                    &mut postponed,
                    &p.path,
                    p.priority,
                    out,
                    out_logical,
                )?;
            }
        }

        // The packages they propagate come later: they lose collisions.
        let mut counter: i32 = 1000;
        while !postponed.is_empty() {
            let round = std::mem::take(&mut postponed);
            for p in &round {
                self.add_pkg(&mut done, &mut postponed, p, counter, out, out_logical)?;
                counter = counter.wrapping_add(1);
            }
        }
        Ok(())
    }

    fn add_pkg(
        &mut self,
        done: &mut BTreeSet<Vec<u8>>,
        postponed: &mut BTreeSet<Vec<u8>>,
        pkg: &[u8],
        priority: i32,
        out: &Path,
        out_logical: &[u8],
    ) -> Result<(), String> {
        if !done.insert(pkg.to_vec()) {
            return Ok(());
        }
        self.link_package(pkg, out, out_logical, priority)?;

        let file = join(pkg, b"nix-support/propagated-user-env-packages");
        let contents = match self.read_file(&file) {
            Ok(c) => c,
            Err(e) if is_missing(&e) => return Ok(()),
            Err(e) => return Err(format!("reading file '{}': {e}", show(&file))),
        };
        for p in contents.split(|&b| b == b' ' || b == b'\n') {
            if !p.is_empty() && !done.contains(p) {
                postponed.insert(p.to_vec());
            }
        }
        Ok(())
    }

    fn read_file(&self, p: &[u8]) -> io::Result<Vec<u8>> {
        if !p.starts_with(b"/") {
            return Err(io::Error::from_raw_os_error(libc::ENOENT));
        }
        let canon = self.resolve(b"/", p)?;
        fs::read(self.real(&canon))
    }

    /// The links for one package's top directory.
    fn link_package(
        &mut self,
        pkg: &[u8],
        out: &Path,
        out_logical: &[u8],
        priority: i32,
    ) -> Result<(), String> {
        let opening = |e: io::Error| format!("opening directory '{}': {e}", show(pkg));
        let canon = if pkg.starts_with(b"/") {
            self.resolve(b"/", pkg)
        } else {
            Err(io::Error::from_raw_os_error(libc::ENOENT))
        };
        let canon = match canon {
            Ok(c) => c,
            Err(e) if errno(&e) == Some(libc::ENOTDIR) => {
                self.not_a_directory(pkg);
                return Ok(());
            }
            Err(e) => return Err(opening(e)),
        };
        if !self.is_dir(&canon).map_err(opening)? {
            self.not_a_directory(pkg);
            return Ok(());
        }
        self.create_links(pkg, &canon, out, out_logical, priority)
    }

    fn not_a_directory(&mut self, pkg: &[u8]) {
        self.warn(format!(
            "not including '{}' in the user environment because it's not a directory",
            show(pkg)
        ));
    }

    /// Link the entries of the directory `src` (whose canonical form is `src_canon`) into
    /// `dst` (real), whose logical path is `dst_logical`.
    fn create_links(
        &mut self,
        src: &[u8],
        src_canon: &[u8],
        dst: &Path,
        dst_logical: &[u8],
        priority: i32,
    ) -> Result<(), String> {
        let src_real = self.real(src_canon);
        let opening = |e: io::Error| format!("opening directory '{}': {e}", show(src));
        let mut names: Vec<Vec<u8>> = Vec::new();
        for entry in fs::read_dir(&src_real).map_err(opening)? {
            let entry = entry.map_err(|e| format!("reading directory '{}': {e}", show(src)))?;
            names.push(entry.file_name().as_bytes().to_vec());
        }
        names.sort();

        for name in names {
            if name.starts_with(b".") {
                continue;
            }
            let src_file = join(src, &name);
            let dst_file_logical = join(dst_logical, &name);
            let dst_file = dst.join(OsStr::from_bytes(&name));

            let status = self
                .resolve(src_canon, &name)
                .and_then(|c| Ok((self.is_dir(&c)?, c)));
            let (src_is_dir, src_file_canon) = match status {
                Ok(s) => s,
                Err(e) if is_missing(&e) => {
                    self.warn(format!(
                        "skipping dangling symlink '{}'",
                        show(&dst_file_logical)
                    ));
                    continue;
                }
                Err(e) => return Err(format!("getting status of '{}': {e}", show(&src_file))),
            };

            if SKIPPED.iter().any(|s| src_file.ends_with(s)) {
                continue;
            }

            let dst_status = match fs::symlink_metadata(&dst_file) {
                Ok(md) => Some(md.file_type()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => {
                    return Err(format!(
                        "getting status of '{}': {e}",
                        show(&dst_file_logical)
                    ))
                }
            };

            if src_is_dir {
                match dst_status {
                    Some(t) if t.is_dir() => {
                        self.create_links(
                            &src_file,
                            &src_file_canon,
                            &dst_file,
                            &dst_file_logical,
                            priority,
                        )?;
                        continue;
                    }
                    Some(t) if t.is_symlink() => {
                        // So far one package's directory: make it a real one holding links to
                        // that package's entries, then add this package's.
                        let status_err = |e: io::Error| {
                            format!("getting status of '{}': {e}", show(&dst_file_logical))
                        };
                        let link = fs::read_link(&dst_file).map_err(status_err)?;
                        let target = self
                            .resolve(dst_logical, link.as_os_str().as_bytes())
                            .map_err(status_err)?;
                        let target_is_dir = self
                            .is_dir(&target)
                            .map_err(|e| format!("getting status of '{}': {e}", show(&target)))?;
                        if !target_is_dir {
                            return Err(format!(
                                "collision between '{}' and non-directory '{}'",
                                show(&src_file),
                                show(&target)
                            ));
                        }
                        fs::remove_file(&dst_file)
                            .map_err(|e| format!("unlinking '{}': {e}", show(&dst_file_logical)))?;
                        make_dir(&dst_file).map_err(|e| {
                            format!("creating directory '{}': {e}", show(&dst_file_logical))
                        })?;
                        let previous = self.priorities.get(&dst_file_logical).copied().unwrap_or(0);
                        self.create_links(
                            &target,
                            &target,
                            &dst_file,
                            &dst_file_logical,
                            previous,
                        )?;
                        self.create_links(
                            &src_file,
                            &src_file_canon,
                            &dst_file,
                            &dst_file_logical,
                            priority,
                        )?;
                        continue;
                    }
                    _ => {}
                }
            } else {
                match dst_status {
                    Some(t) if t.is_symlink() => {
                        let previous = self.priorities.get(&dst_file_logical).copied().unwrap_or(0);
                        if previous == priority {
                            let other = fs::read_link(&dst_file).map_err(|e| {
                                format!("reading symlink '{}': {e}", show(&dst_file_logical))
                            })?;
                            return Err(format!(
                                "packages '{}' and '{}' have the same priority {priority}; \
                                 use 'nix-env --set-flag priority NUMBER INSTALLED_PKGNAME' \
                                 to change the priority of one of the conflicting packages \
                                 (0 being the highest priority)",
                                show(&src_file),
                                other.display()
                            ));
                        }
                        if previous < priority {
                            continue;
                        }
                        fs::remove_file(&dst_file)
                            .map_err(|e| format!("unlinking '{}': {e}", show(&dst_file_logical)))?;
                    }
                    Some(t) if t.is_dir() => {
                        return Err(format!(
                            "collision between non-directory '{}' and directory '{}'",
                            show(&src_file),
                            show(&dst_file_logical)
                        ));
                    }
                    _ => {}
                }
            }

            std::os::unix::fs::symlink(OsStr::from_bytes(&src_file), &dst_file).map_err(|e| {
                format!(
                    "creating symlink from '{}' to '{}': {e}",
                    show(&dst_file_logical),
                    show(&src_file)
                )
            })?;
            self.priorities.insert(dst_file_logical, priority);
            self.symlinks += 1;
        }
        Ok(())
    }
}

fn make_dir(p: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new().mode(0o755).create(p)
}

/// Put the components of `path` in front of `todo`, in order; a trailing slash becomes a `.`
/// so that it still requires a directory.
fn push_front_components(todo: &mut VecDeque<Vec<u8>>, path: &[u8]) {
    let mut comps: Vec<Vec<u8>> = path
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    if path.len() > 1 && path.ends_with(b"/") {
        comps.push(b".".to_vec());
    }
    for c in comps.into_iter().rev() {
        todo.push_front(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A chroot-like layout: logical `/nix/store` is `<tmp>/real/nix/store`.
    struct Fixture {
        _tmp: tempfile::TempDir,
        real_store: PathBuf,
    }

    const SD: &str = "/nix/store";

    fn fixture() -> Fixture {
        let tmp = tempfile::tempdir().expect("tempdir");
        let real_store = tmp.path().join("real/nix/store");
        fs::create_dir_all(&real_store).expect("mkdir");
        Fixture {
            _tmp: tmp,
            real_store,
        }
    }

    impl Fixture {
        fn file(&self, logical: &str, data: &str) {
            let p = self
                .real_store
                .join(logical.trim_start_matches("/nix/store/"));
            fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            fs::write(p, data).expect("write");
        }
        fn link(&self, logical: &str, target: &str) {
            let p = self
                .real_store
                .join(logical.trim_start_matches("/nix/store/"));
            fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            symlink(target, p).expect("symlink");
        }
        fn run(&self, derivations: &str) -> (Result<String, String>, PathBuf) {
            let out = self.real_store.join("out-env");
            let _ = fs::remove_dir_all(&out);
            let env: BTreeMap<String, String> = [
                ("out", "/nix/store/out-env"),
                ("derivations", derivations),
                ("manifest", "/nix/store/m-manifest"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
            (build(&env, &out, SD, &self.real_store), out)
        }
    }

    fn target(p: &Path) -> String {
        fs::read_link(p)
            .expect("a link")
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn merges_and_prioritises() {
        let f = fixture();
        f.file("/nix/store/a/bin/x", "a");
        f.file("/nix/store/a/share/doc/a", "a");
        f.file("/nix/store/a/nix-support/foo", "");
        f.file("/nix/store/a/.hidden", "");
        f.file("/nix/store/a/share/info/dir", "");
        f.file("/nix/store/b/bin/x", "b");
        f.file("/nix/store/b/share/doc/b", "b");
        f.file("/nix/store/b/lib/only-b", "b");
        f.link("/nix/store/b/dangling", "/nix/store/nowhere");
        let (r, out) = f.run("true 5 1 /nix/store/b true 3 1 /nix/store/a false 0 1 /nix/store/c");
        let log = r.expect("builds");
        assert!(log.contains("skipping dangling symlink '/nix/store/out-env/dangling'"));
        assert_eq!(target(&out.join("bin/x")), "/nix/store/a/bin/x");
        assert_eq!(target(&out.join("lib")), "/nix/store/b/lib");
        assert_eq!(target(&out.join("share/doc/a")), "/nix/store/a/share/doc/a");
        assert_eq!(target(&out.join("share/doc/b")), "/nix/store/b/share/doc/b");
        assert!(fs::symlink_metadata(out.join("share/info/dir")).is_err());
        assert!(fs::symlink_metadata(out.join("nix-support")).is_err());
        assert!(fs::symlink_metadata(out.join(".hidden")).is_err());
        assert_eq!(target(&out.join("manifest.nix")), "/nix/store/m-manifest");
    }

    #[test]
    fn equal_priorities_collide() {
        let f = fixture();
        f.file("/nix/store/a/bin/x", "a");
        f.file("/nix/store/b/bin/x", "b");
        let (r, _) = f.run("true 5 1 /nix/store/a true 5 1 /nix/store/b");
        let e = r.expect_err("collides");
        assert!(
            e.starts_with(
                "packages '/nix/store/b/bin/x' and '/nix/store/a/bin/x' have the same priority 5;"
            ),
            "{e}"
        );
    }

    #[test]
    fn file_against_directory() {
        let f = fixture();
        f.file("/nix/store/a/x/y", "a");
        f.file("/nix/store/b/x/z", "b");
        f.file("/nix/store/c/x", "c");
        let (r, _) = f.run("true 1 1 /nix/store/a true 2 1 /nix/store/b true 3 1 /nix/store/c");
        assert_eq!(
            r.expect_err("collides"),
            "collision between non-directory '/nix/store/c/x' and directory '/nix/store/out-env/x'"
        );
        let (r, _) = f.run("true 1 1 /nix/store/c true 2 1 /nix/store/a");
        assert_eq!(
            r.expect_err("collides"),
            "collision between '/nix/store/a/x' and non-directory '/nix/store/c/x'"
        );
    }

    #[test]
    fn follows_links_logically_and_propagates() {
        let f = fixture();
        // `share` of a is a link into d, through the logical store directory.
        f.file("/nix/store/d/share/doc/d", "d");
        f.link("/nix/store/a/share", "/nix/store/d/share");
        f.file("/nix/store/b/share/doc/b", "b");
        f.file(
            "/nix/store/b/nix-support/propagated-user-env-packages",
            "/nix/store/p\n/nix/store/a",
        );
        f.file("/nix/store/p/bin/p", "p");
        f.file("/nix/store/b/info", "not a dir");
        f.file("/nix/store/notdir", "file");
        let (r, out) = f.run("true 5 2 /nix/store/a /nix/store/b true 5 1 /nix/store/notdir");
        let log = r.expect("builds");
        assert!(log.contains("not including '/nix/store/notdir'"), "{log}");
        // The merged directory's first entries come from the canonical target.
        assert_eq!(target(&out.join("share/doc/d")), "/nix/store/d/share/doc/d");
        assert!(fs::symlink_metadata(out.join("share/doc"))
            .expect("dir")
            .is_dir());
        assert_eq!(target(&out.join("share/doc/b")), "/nix/store/b/share/doc/b");
        assert_eq!(target(&out.join("bin")), "/nix/store/p/bin");
        assert_eq!(target(&out.join("info")), "/nix/store/b/info");
    }

    #[test]
    fn malformed_derivations() {
        let f = fixture();
        let (r, _) = f.run("true x 1 /nix/store/a");
        assert!(r.expect_err("bad").contains("not a number"));
        let (r, _) = f.run("true 5 2 /nix/store/a");
        assert!(r.expect_err("bad").contains("missing"));
        let (r, _) = f.run("true 5 1 /nix/store/missing");
        assert!(r
            .expect_err("bad")
            .starts_with("opening directory '/nix/store/missing'"));
        assert_eq!(parse_int("+7abc"), Ok(7));
        assert_eq!(parse_int("-3"), Ok(-3));
        assert!(parse_int("99999999999").is_err());
    }
}
