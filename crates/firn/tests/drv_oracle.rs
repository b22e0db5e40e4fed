//! `.drv` files written by CppNix 2.8: parsed and printed back byte for byte, and their paths
//! and output paths recomputed by firn.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use firn_format::derivation::Derivation;
use firn_format::{Hash, StoreDir, StorePath};

const EXPRS: &[&str] = &[
    r#"derivation { name = "simple"; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" "echo > $out" ]; }"#,
    r#"derivation { name = "multi"; system = "x86_64-linux"; builder = "/bin/sh"; outputs = [ "out" "dev" "lib" ]; env1 = "quote \" backslash \\ tab	 cr \r nl
"; }"#,
    r#"derivation { name = "flat-md5"; system = "x86_64-linux"; builder = "/bin/sh"; outputHashAlgo = "md5"; outputHash = "d41d8cd98f00b204e9800998ecf8427e"; }"#,
    r#"derivation { name = "rec-sha1"; system = "x86_64-linux"; builder = "/bin/sh"; outputHashMode = "recursive"; outputHashAlgo = "sha1"; outputHash = "da39a3ee5e6b4b0d3255bfef95601890afd80709"; }"#,
    r#"derivation { name = "rec-sha256-sri"; system = "x86_64-linux"; builder = "/bin/sh"; outputHashMode = "recursive"; outputHash = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="; }"#,
    r#"let
      a = derivation { name = "a"; system = "x86_64-linux"; builder = "/bin/sh"; outputs = [ "out" "bin" ]; };
      f = derivation { name = "f"; system = "x86_64-linux"; builder = "/bin/sh"; outputHash = "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73"; outputHashAlgo = "sha256"; };
      src = builtins.toFile "s" "text";
    in derivation { name = "deps"; system = "x86_64-linux"; builder = "/bin/sh"; args = [ a.bin "${a}" f src ]; }"#,
];

/// Recompute the hash modulo of a .drv in `store`, recursively through its inputs.
fn hash_modulo(
    sd: &StoreDir,
    root: &Path,
    drv: &StorePath,
    mask: bool,
    memo: &mut BTreeMap<StorePath, Hash>,
) -> Hash {
    if !mask {
        if let Some(h) = memo.get(drv) {
            return h.clone();
        }
    }
    let text = std::fs::read_to_string(root.join("nix/store").join(drv.base_name())).unwrap();
    let d = Derivation::parse(sd, &text, drv.name().trim_end_matches(".drv")).unwrap();
    let inputs: Vec<StorePath> = d.input_drvs.keys().cloned().collect();
    let mut hashes = BTreeMap::new();
    for i in inputs {
        let h = hash_modulo(sd, root, &i, false, memo);
        hashes.insert(i, h);
    }
    let h = d.hash_modulo(sd, mask, |p| Ok(hashes[p].clone())).unwrap();
    if !mask {
        memo.insert(drv.clone(), h.clone());
    }
    h
}

#[test]
fn cppnix_drvs_roundtrip_and_paths_match() {
    let tmp = tempfile::tempdir().unwrap();
    let store = store_dir(tmp.path(), "s");
    let sd = StoreDir::default();
    let mut memo = BTreeMap::new();
    for (i, e) in EXPRS.iter().enumerate() {
        let f = tmp.path().join(format!("e{i}.nix"));
        std::fs::write(&f, e).unwrap();
        let drv_path = ok_str(cppnix("nix-instantiate").args(["--store", &store]).arg(&f));
        let drv_path = sd.parse(drv_path.trim()).unwrap();
        let real = Path::new(&store)
            .join("nix/store")
            .join(drv_path.base_name());
        let text = std::fs::read_to_string(&real).unwrap();
        let name = drv_path.name().trim_end_matches(".drv");
        let d = Derivation::parse(&sd, &text, name).unwrap();
        assert_eq!(d.to_aterm(&sd), text, "printing {drv_path}");
        assert_eq!(d.drv_path(&sd).unwrap(), drv_path, "drv path of {name}");
        // Output paths: blank them, hash modulo with masked outputs, fill them in again.
        let mut blank = d.clone();
        for (id, o) in blank.outputs.iter_mut() {
            o.path = None;
            blank.env.insert(id.clone(), String::new());
        }
        let h = {
            let mut hashes = BTreeMap::new();
            for i in d.input_drvs.keys() {
                hashes.insert(
                    i.clone(),
                    hash_modulo(&sd, Path::new(&store), i, false, &mut memo),
                );
            }
            blank
                .hash_modulo(&sd, true, |p| Ok(hashes[p].clone()))
                .unwrap()
        };
        blank.fill_output_paths(&sd, &h).unwrap();
        assert_eq!(blank, d, "output paths of {name}");
        // nix derivation show agrees with CppNix's show-derivation.
        let a: serde_json::Value = serde_json::from_slice(&ok(firn("nix")
            .args(["derivation", "show", "--store", &store])
            .arg(sd.display(&drv_path))))
        .unwrap();
        let b: serde_json::Value = serde_json::from_slice(&ok(cppnix("nix")
            .args(["show-derivation", "--store", &store])
            .arg(sd.display(&drv_path))))
        .unwrap();
        assert_eq!(a, b, "derivation show {name}");
    }
}

#[test]
fn malformed_drv_files_are_errors() {
    let sd = StoreDir::default();
    for bad in [
        "",
        "Derive(",
        "Derive([(\"out\",\"/nix/store/x\",\"\",\"\")],[],[],\"s\",\"b\",[],[])",
        "Derive([],[],[],\"s\",\"b\",[],[]) trailing",
        "Derive([],[],[\"relative/path\"],\"s\",\"b\",[],[])",
        "Derive([],[],[],\"unterminated,\"b\",[],[])",
        "Derive([],[],[],\"s\",\"b\",[\"a\" \"b\"],[])",
    ] {
        assert!(Derivation::parse(&sd, bad, "x").is_err(), "{bad:?}");
    }
}
