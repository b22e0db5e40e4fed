//! `nix why-depends` (plain, `--all`, `--precise`) compared with CppNix 2.8 on a small graph
//! whose files really contain the references.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use firn_format::{Hash, HashAlgo, StoreDir, StorePath};

fn nar_of_file(data: &[u8]) -> Vec<u8> {
    let s = |b: &[u8]| {
        let mut v = (b.len() as u64).to_le_bytes().to_vec();
        v.extend_from_slice(b);
        v.resize(v.len() + (8 - b.len() % 8) % 8, 0);
        v
    };
    [
        &b"nix-archive-1"[..],
        b"(",
        b"type",
        b"regular",
        b"contents",
        data,
        b")",
    ]
    .iter()
    .flat_map(|t| s(t))
    .collect()
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for d in chars.by_ref() {
                if d == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn why_depends_matches_cppnix() {
    let tmp = tempfile::tempdir().unwrap();
    let store = store_dir(tmp.path(), "s");
    ok(cppnix("nix-store").args(["--store", &store, "--init"]));
    let sd = StoreDir::default();
    // name -> references
    let graph: &[(&str, &[&str])] = &[
        ("bottom", &[]),
        ("mid", &["bottom"]),
        ("left", &["bottom"]),
        ("right", &["mid"]),
        ("top", &["left", "right"]),
    ];
    let mut paths: BTreeMap<&str, StorePath> = BTreeMap::new();
    for (i, (name, _)) in graph.iter().enumerate() {
        let h = Hash::digest(HashAlgo::Sha256, name.as_bytes()).truncate_xor(20);
        let mut b = [0u8; 20];
        b.copy_from_slice(&h);
        let _ = i;
        paths.insert(name, StorePath::from_parts(&b, name).unwrap());
    }
    let mut reg = String::new();
    for (name, refs) in graph {
        let mut data = format!("{name} is a file with some padding text around references\n");
        for r in *refs {
            data.push_str(&format!("it uses {} here\n", sd.display(&paths[r])));
        }
        let real = Path::new(&store)
            .join("nix/store")
            .join(paths[name].base_name());
        std::fs::write(&real, &data).unwrap();
        let nar = nar_of_file(data.as_bytes());
        reg.push_str(&format!(
            "{}\n{}\n{}\n\n{}\n",
            sd.display(&paths[name]),
            Hash::digest(HashAlgo::Sha256, &nar).to_base16(),
            nar.len(),
            refs.len()
        ));
        for r in *refs {
            reg.push_str(&format!("{}\n", sd.display(&paths[r])));
        }
    }
    let out = run_with_input(
        cppnix("nix-store").args(["--store", &store, "--load-db"]),
        reg.as_bytes(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (from, to) in [
        ("top", "bottom"),
        ("top", "mid"),
        ("right", "bottom"),
        ("top", "top"),
    ] {
        for flags in [
            vec![],
            vec!["--all"],
            vec!["--precise"],
            vec!["--all", "--precise"],
        ] {
            let a = ok_str(
                firn("nix")
                    .args(["why-depends", "--store", &store])
                    .args(&flags)
                    .arg(sd.display(&paths[from]))
                    .arg(sd.display(&paths[to])),
            );
            let b = ok_str(
                cppnix("nix")
                    .args(["why-depends", "--store", &store])
                    .args(&flags)
                    .arg(sd.display(&paths[from]))
                    .arg(sd.display(&paths[to])),
            );
            assert_eq!(a, strip_ansi(&b), "why-depends {from} {to} {flags:?}");
        }
    }
    // Not a dependency: a message, nothing on stdout.
    let out = firn("nix")
        .args(["why-depends", "--store", &store])
        .arg(sd.display(&paths["bottom"]))
        .arg(sd.display(&paths["top"]))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not depend on"));
}
