//! Derivations against CppNix 2.8: `.drv` files it writes are parsed and printed back byte for
//! byte; their `.drv` paths, output paths (recomputed from scratch the way the evaluator does)
//! and `nix show-derivation` JSON match CppNix's.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use firn_format::derivation::{Derivation, DerivationOutput, DrvError, DrvHashes, OutputKind};
use firn_format::{StoreDir, StorePath};
use rand::{Rng, SeedableRng};

/// Instantiate `expr` into the chroot store `store`; the `.drv` path.
fn instantiate(dir: &Path, store: &Path, n: usize, expr: &str) -> StorePath {
    let f = dir.join(format!("e{n}.nix"));
    std::fs::write(&f, expr).expect("writing an expression");
    let out = run(cppnix("nix-instantiate").arg("--store").arg(store).arg(&f));
    StoreDir::default()
        .parse(out.trim())
        .expect("nix-instantiate prints a store path")
}

fn read_drv(store: &Path, p: &StorePath) -> Result<Derivation, DrvError> {
    let text = std::fs::read_to_string(store.join("nix/store").join(p.base_name()))
        .map_err(|e| DrvError::Invalid(format!("reading {p}: {e}")))?;
    Derivation::parse(
        &StoreDir::default(),
        &text,
        p.name().trim_end_matches(".drv"),
    )
}

const SH: &str = r#"system = "x86_64-linux"; builder = "/bin/sh";"#;

fn exprs() -> Vec<String> {
    let mut v: Vec<String> = vec![
        format!(r#"derivation {{ name = "simple"; {SH} args = [ "-c" "echo > $out" ]; }}"#),
        format!(r#"derivation {{ name = "multi"; {SH} outputs = [ "out" "dev" "lib" ]; }}"#),
        format!(
            r#"derivation {{ name = "escapes"; {SH} args = [ "a\"b" "c\\d" ]; v = "quote \" backslash \\ tab	 cr \r nl
end"; "k" = "$ {{ }} ' `"; }}"#
        ),
    ];
    // Fixed outputs: flat and recursive, each algorithm (the hashes of the empty string).
    for (algo, hash) in [
        ("md5", "d41d8cd98f00b204e9800998ecf8427e"),
        ("sha1", "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
        ("sha256", "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73"),
        ("sha512", "z4PhNX7vuL3xVChQ1m2AB9Yg5AULVxXcg/SpIdNs6c5H0NE8XYXysP+DGNKHfuwvY7kxvUdBeoGlODJ6+SfaPg=="),
    ] {
        for mode in ["flat", "recursive"] {
            v.push(format!(
                r#"derivation {{ name = "fixed-{mode}-{algo}"; {SH} outputHashMode = "{mode}"; outputHashAlgo = "{algo}"; outputHash = "{hash}"; }}"#
            ));
        }
    }
    v.push(format!(
        r#"let
          a = derivation {{ name = "a"; {SH} outputs = [ "out" "bin" ]; }};
          f = derivation {{ name = "f"; {SH} outputHash = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="; }};
          g = derivation {{ name = "g"; {SH} outputHashMode = "recursive"; outputHash = "sha1-2jmj7l5rSw0yVb/vlWAYkK/YBwk="; args = [ a ]; }};
          src = builtins.toFile "s" "text";
          mid = derivation {{ name = "mid"; {SH} args = [ a.bin f ]; }};
        in derivation {{ name = "deps"; {SH} args = [ mid "${{a}}" g src ]; }}"#
    ));
    v
}

/// Blank the outputs of a derivation CppNix made, then compute them again as the evaluator
/// does.
fn recompute(store: &Path, memo: &mut DrvHashes, d: &Derivation) -> Derivation {
    let sd = StoreDir::default();
    let mut b = blank(d);
    memo.compute_output_paths(&sd, &mut b, |p| read_drv(store, p))
        .expect("computing output paths");
    b
}

/// A derivation CppNix made with its outputs as the evaluator first makes them.
fn blank(d: &Derivation) -> Derivation {
    let mut blank = d.clone();
    for (id, o) in blank.outputs.iter_mut() {
        blank.env.insert(id.clone(), String::new());
        *o = match o.kind().expect("CppNix writes valid outputs") {
            OutputKind::Fixed { method, hash } => {
                DerivationOutput::fixed_output(method, &hash, None)
            }
            _ => DerivationOutput::deferred(),
        };
    }
    blank
}

#[test]
fn cppnix_drvs_roundtrip_and_paths_match() {
    let dir = Scratch::new("drv");
    let store = dir.0.join("store");
    let sd = StoreDir::default();
    let mut memo = DrvHashes::new();
    let mut seen = 0;
    for (n, e) in exprs().iter().enumerate() {
        let top = instantiate(&dir.0, &store, n, e);
        // The whole closure of derivations, inputs included.
        let closure = run(cppnix("nix-store")
            .arg("--store")
            .arg(&store)
            .args(["-q", "--requisites"])
            .arg(sd.display(&top)));
        for line in closure.lines().filter(|l| l.ends_with(".drv")) {
            let p = sd.parse(line).expect("a store path");
            let text = std::fs::read_to_string(store.join("nix/store").join(p.base_name()))
                .expect("reading a .drv");
            let d = read_drv(&store, &p).expect("parsing a .drv CppNix wrote");
            assert_eq!(d.to_aterm(&sd), text, "printing {p}");
            assert_eq!(d.drv_path(&sd).expect("drv path"), p, "drv path of {p}");
            assert_eq!(recompute(&store, &mut memo, &d), d, "output paths of {p}");
            // The text and the hash modulo made together, as the evaluator makes them, equal
            // the ones made apart.
            let (aterm, together) = memo
                .aterm_and_hash(&sd, &d, |q| read_drv(&store, q))
                .expect("text and hash modulo");
            assert_eq!(aterm, text, "text made with the hash modulo of {p}");
            let apart = memo
                .of_derivation(&sd, &d, false, |q| read_drv(&store, q))
                .expect("hash modulo");
            assert_eq!(together, apart, "hash modulo made with the text of {p}");
            // All of it at once from the blanked derivation, as derivationStrict does.
            let mut fresh = blank(&d);
            let (aterm, h) = memo
                .instantiate(&sd, &mut fresh, |q| read_drv(&store, q))
                .expect("instantiating");
            assert_eq!(fresh, d, "outputs filled in by instantiating {p}");
            assert_eq!(aterm, text, "text made by instantiating {p}");
            assert_eq!(h, apart, "hash modulo made by instantiating {p}");
            // Output paths as nix-store lists them.
            let outs = run(cppnix("nix-store")
                .arg("--store")
                .arg(&store)
                .args(["-q", "--outputs"])
                .arg(sd.display(&p)));
            let ours: Vec<String> = d
                .outputs
                .values()
                .map(|o| sd.display(o.path.as_ref().expect("known output path")))
                .collect();
            let mut theirs: Vec<String> = outs.lines().map(str::to_string).collect();
            theirs.sort();
            let mut ours_sorted = ours.clone();
            ours_sorted.sort();
            assert_eq!(ours_sorted, theirs, "outputs of {p}");
            // The JSON of show-derivation.
            let json = run(cppnix("nix")
                .args(["show-derivation", "--store"])
                .arg(&store)
                .arg(sd.display(&p)));
            let theirs: serde_json::Value = serde_json::from_str(&json).expect("JSON");
            let ours = firn_format::derivation::json::show_json(&sd, [(&p, &d)]);
            assert_eq!(ours, theirs, "show-derivation of {p}");
            seen += 1;
        }
    }
    assert!(seen >= 16, "only {seen} derivations checked");
}

/// A derivation made from scratch as the evaluator does (outputs computed, then the `.drv`
/// path) matches what `nix-instantiate` makes of the same expression.
fn from_scratch(n: usize, system: &str, system_nix: &str, outputs: &[&str], readable: bool) {
    let dir = Scratch::new(&format!("drv-scratch-{n}"));
    let store = dir.0.join("store");
    let sd = StoreDir::default();
    let outs_nix: Vec<String> = outputs.iter().map(|o| format!("\"{o}\"")).collect();
    let expr = format!(
        "derivation {{ name = \"made\"; system = \"{system_nix}\"; builder = \"/bin/sh\"; outputs = [ {} ]; args = [ \"-c\" \"x\\ny\" ]; }}",
        outs_nix.join(" ")
    );
    let want = if readable {
        instantiate(&dir.0, &store, 0, &expr)
    } else {
        // CppNix writes the file, then fails reading it back: take it from the store.
        let f = dir.0.join("e.nix");
        std::fs::write(&f, &expr).expect("writing an expression");
        let out = cppnix("nix-instantiate")
            .arg("--store")
            .arg(&store)
            .arg(&f)
            .output();
        assert!(!out.expect("running nix-instantiate").status.success());
        let drvs: Vec<StorePath> = std::fs::read_dir(store.join("nix/store"))
            .expect("listing the store")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with("-made.drv"))
            .map(|n| StorePath::from_base_name(&n).expect("a store path"))
            .collect();
        assert_eq!(drvs.len(), 1, "{drvs:?}");
        drvs[0].clone()
    };
    let mut d = Derivation {
        name: "made".into(),
        outputs: outputs
            .iter()
            .map(|o| (o.to_string(), DerivationOutput::deferred()))
            .collect(),
        input_drvs: BTreeMap::new(),
        input_srcs: Default::default(),
        platform: system.into(),
        builder: "/bin/sh".into(),
        args: vec!["-c".into(), "x\ny".into()],
        env: [
            ("builder", "/bin/sh"),
            ("name", "made"),
            ("outputs", &outputs.join(" ")),
            ("system", system),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    };
    d.compute_output_paths(&sd, |p| {
        Err::<firn_format::derivation::DrvHash, _>(DrvError::Invalid(format!("no input {p}")))
    })
    .expect("computing output paths");
    let text = std::fs::read_to_string(store.join("nix/store").join(want.base_name()))
        .expect("reading the .drv");
    assert_eq!(d.to_aterm(&sd), text);
    assert_eq!(d.drv_path(&sd).expect("drv path"), want);
}

#[test]
fn derivation_built_from_scratch_matches_cppnix() {
    from_scratch(
        0,
        "x86_64-linux",
        "x86_64-linux",
        &["out", "doc", "bin"],
        true,
    );
}

/// CppNix writes the system string without escapes (so a `"` in it makes a `.drv` that neither
/// CppNix nor firn can read back); the `.drv` path follows from those bytes, and ours must too.
#[test]
fn system_is_written_unescaped() {
    from_scratch(1, "odd\"sys\ttem", "odd\\\"sys\\ttem", &["out"], false);
    let sd = StoreDir::default();
    let text = "Derive([(\"out\",\"\",\"\",\"\")],[],[],\"odd\"sys\",\"b\",[],[])";
    assert!(Derivation::parse(&sd, text, "made").is_err());
}

#[test]
fn malformed_drv_files_are_errors() {
    let sd = StoreDir::default();
    for bad in [
        "",
        "Derive(",
        "Derive([],[],[],\"s\",\"b\",[],[])x",
        "Derive([(\"out\",\"/nix/store/x\",\"\",\"\")],[],[],\"s\",\"b\",[],[])",
        "Derive([],[],[\"relative/path\"],\"s\",\"b\",[],[])",
        "Derive([],[(\"/nix/store/ffffffffffffffffffffffffffffffff-d.drv\",[\"out\"]],[],\"s\",\"b\",[],[])",
        "Derive([],[],[],\"unterminated,\"b\",[],[])",
        "Derive([],[],[],\"s\",\"b\",[\"a\" \"b\"],[])",
        "Derive([],[],[],\"s\",\"b\",[],[(\"k\")])",
        "Derive([(\"out\",\"\",\"sha256\",\"00\")],[],[],\"s\",\"b\",[],[])",
        "Derive([(\"out\",\"\",\"crc32\",\"\")],[],[],\"s\",\"b\",[],[])",
        "Derive([],[],[],\"s\",\"b\",[],[]",
        "derive([],[],[],\"s\",\"b\",[],[])",
    ] {
        let e = Derivation::parse(&sd, bad, "x");
        assert!(e.is_err(), "{bad:?} parsed");
        assert!(e.unwrap_err().to_string().contains("derivation"), "{bad:?}");
    }
}

/// Random damage to real `.drv` text gives errors or derivations, never a panic; what parses
/// prints back to text that parses to the same derivation.
#[test]
fn damaged_drvs_never_panic() {
    let sd = StoreDir::default();
    let samples = [
        r#"Derive([("dev","/nix/store/7s5jvfm1fxjgk4g0w4zjgdkqc9gd6a0k-m-dev","",""),("out","/nix/store/ffffffffffffffffffffffffffffffff-m","","")],[("/nix/store/ssssssssssssssssssssssssssssssss-d.drv",["bin","out"])],["/nix/store/0000000000000000000000000000000a-s"],"x86_64-linux","/bin/sh",["-c","a\"b\\c\nd"],[("out","/nix/store/ffffffffffffffffffffffffffffffff-m"),("t","\t\r")])"#,
        r#"Derive([("out","/nix/store/1ddj3yp7s6gcv6m4h5b4nf7ng0j5lq9y-f","r:sha1","da39a3ee5e6b4b0d3255bfef95601890afd80709")],[],[],"s","b",[],[])"#,
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(8);
    let alphabet = b"()[],\"\\/:-abnrt0";
    for sample in samples {
        let bytes = sample.as_bytes();
        for _ in 0..3000 {
            let mut b = bytes.to_vec();
            for _ in 0..rng.gen_range(1..4) {
                let i = rng.gen_range(0..b.len());
                match rng.gen_range(0..3) {
                    0 => b[i] = alphabet[rng.gen_range(0..alphabet.len())],
                    1 => {
                        b.remove(i);
                    }
                    _ => b.insert(i, alphabet[rng.gen_range(0..alphabet.len())]),
                }
                if b.is_empty() {
                    break;
                }
            }
            let Ok(text) = std::str::from_utf8(&b) else {
                continue;
            };
            if let Ok(d) = Derivation::parse(&sd, text, "m") {
                let again = Derivation::parse(&sd, &d.to_aterm(&sd), "m");
                // Unescaped names and paths may not survive; everything else must.
                if let Ok(again) = again {
                    assert_eq!(again, d, "{text}");
                }
            }
        }
    }
}
