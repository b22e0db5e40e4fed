//! Runtime roots: store paths that live processes use, found in `/proc` as CppNix's
//! `findRuntimeRoots` finds them (executable, working directory, open files, mapped files,
//! store paths in the environment, and a few kernel helper settings).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;

/// Candidate path (anything absolute) -> the `/proc` files it was found in.
pub(super) type Unchecked = BTreeMap<String, BTreeSet<String>>;

/// Scan `/proc` for paths in use; `store_dirs` are the directories whose paths are looked for
/// in environments (the logical store dir, and the real one for a chroot store).
pub(super) fn scan_proc(store_dirs: &[&str]) -> Unchecked {
    let mut unchecked = Unchecked::new();
    let Ok(rd) = fs::read_dir("/proc") else {
        return unchecked;
    };
    for e in rd.flatten() {
        let pid = e.file_name().to_string_lossy().into_owned();
        if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let base = format!("/proc/{pid}");
        for l in ["exe", "cwd"] {
            read_proc_link(&format!("{base}/{l}"), &mut unchecked);
        }
        let Ok(fds) = fs::read_dir(format!("{base}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let name = fd.file_name();
            let name = name.to_string_lossy();
            if !name.starts_with('.') {
                read_proc_link(&format!("{base}/fd/{name}"), &mut unchecked);
            }
        }
        let maps = format!("{base}/maps");
        if let Ok(text) = fs::read_to_string(&maps) {
            for line in text.lines() {
                if let Some(p) = mapped_file(line) {
                    unchecked
                        .entry(p.to_string())
                        .or_default()
                        .insert(maps.clone());
                }
            }
        }
        let env = format!("{base}/environ");
        if let Ok(bytes) = fs::read(&env) {
            let text = String::from_utf8_lossy(&bytes);
            for dir in store_dirs {
                for p in find_store_paths(&text, dir) {
                    unchecked.entry(p).or_default().insert(env.clone());
                }
            }
        }
    }
    for f in [
        "/proc/sys/kernel/modprobe",
        "/proc/sys/kernel/fbsplash",
        "/proc/sys/kernel/poweroff_cmd",
    ] {
        if let Ok(t) = fs::read_to_string(f) {
            unchecked.entry(t).or_default().insert(f.to_string());
        }
    }
    unchecked
}

fn read_proc_link(file: &str, out: &mut Unchecked) {
    if let Ok(t) = fs::read_link(file) {
        let t = t.to_string_lossy();
        if t.starts_with('/') {
            out.entry(t.into_owned())
                .or_default()
                .insert(file.to_string());
        }
    }
}

/// The file of a `/proc/PID/maps` line: exactly six fields, the last an absolute path (so a
/// `(deleted)` mapping does not count).
fn mapped_file(line: &str) -> Option<&str> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    match fields.as_slice() {
        [_, _, _, _, _, p] if p.starts_with('/') => Some(p),
        _ => None,
    }
}

/// Store paths mentioned in `text`: `<store_dir>/` then a lowercase letter or digit and any
/// number of store path name characters.
pub(super) fn find_store_paths(text: &str, store_dir: &str) -> Vec<String> {
    let mut out = Vec::new();
    let prefix = format!("{store_dir}/");
    let mut rest = text;
    while let Some(i) = rest.find(&prefix) {
        let after = &rest[i + prefix.len()..];
        let first_ok = after
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_digit() || b.is_ascii_lowercase());
        let len = if first_ok {
            after
                .bytes()
                .take_while(|b| b.is_ascii_alphanumeric() || b"+-._?=".contains(b))
                .count()
        } else {
            0
        };
        if len > 0 {
            out.push(format!("{prefix}{}", &after[..len]));
        }
        rest = &after[len..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_paths_in_environment() {
        let env = "PATH=/nix/store/abc-x/bin:/usr/bin\0FOO=/nix/store/def-y\0BAR=/nix/store/-no\0";
        assert_eq!(
            find_store_paths(env, "/nix/store"),
            vec!["/nix/store/abc-x", "/nix/store/def-y"]
        );
    }

    #[test]
    fn maps_lines() {
        let ok = "7f0c-7f0d r-xp 00000000 fd:01 123 /nix/store/abc-glibc/lib/libc.so.6";
        assert_eq!(mapped_file(ok), Some("/nix/store/abc-glibc/lib/libc.so.6"));
        let deleted = "7f0c-7f0d r-xp 00000000 fd:01 123 /nix/store/abc-x/lib (deleted)";
        assert_eq!(mapped_file(deleted), None);
        assert_eq!(mapped_file("7f0c-7f0d rw-p 00000000 00:00 0"), None);
        assert_eq!(mapped_file("7f0c-7f0d rw-p 00000000 00:00 0 [heap]"), None);
    }

    #[test]
    fn own_process_is_scanned() {
        // This test process's executable and working directory are always found.
        let exe = std::env::current_exe().expect("the test binary has a path");
        let found = scan_proc(&["/nix/store"]);
        let me = format!("/proc/{}/exe", std::process::id());
        assert!(found
            .get(&exe.to_string_lossy().into_owned())
            .is_some_and(|s| s.contains(&me)));
    }
}
