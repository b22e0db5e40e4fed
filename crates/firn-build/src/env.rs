//! The builder's environment, exactly as Nix sets it: the fixed variables (`PATH`, `HOME`,
//! `NIX_STORE`, `NIX_BUILD_CORES`, `NIX_BUILD_TOP`, `TMPDIR`...), the derivation's own `env`
//! (with `passAsFile` attributes written to `.attr-<hash>` files), and for structured
//! attributes the `.attrs.json` and `.attrs.sh` files.

use firn_format::rewrite::rewrite_strings as rewrite;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use firn_format::derivation::{hash_placeholder, Derivation};
use firn_format::{Hash, HashAlgo, StoreDir, StorePath};

use crate::BuildError;

/// Inputs to [`builder_env`].
pub struct EnvInputs<'a> {
    pub drv: &'a Derivation,
    pub store_dir: &'a StoreDir,
    /// The build directory on the host (files are written here).
    pub tmp_dir: &'a Path,
    /// The same directory as the builder sees it (`/build` in the sandbox).
    pub tmp_dir_in_sandbox: &'a str,
    pub cores: usize,
    /// Placeholder strings (`/1rz4g4z...`) to the output paths they stand for.
    pub rewrites: &'a BTreeMap<String, String>,
    /// For `exportReferencesGraph` in structured attrs: the closure of a set of paths, as
    /// `nix path-info --json` objects.
    pub closure_json: &'a dyn Fn(&BTreeSet<StorePath>) -> Result<serde_json::Value, BuildError>,
}

fn write(p: &Path, data: &[u8]) -> Result<(), BuildError> {
    fs::write(p, data).map_err(|e| BuildError::io("writing", p, e))
}

/// The builder's environment; writes `passAsFile` and structured-attribute files into
/// `tmp_dir`.
pub fn builder_env(i: &EnvInputs) -> Result<BTreeMap<String, String>, BuildError> {
    let mut env = BTreeMap::new();
    env.insert("PATH".into(), "/path-not-set".into());
    env.insert("HOME".into(), "/homeless-shelter".into());
    env.insert("NIX_STORE".into(), i.store_dir.as_str().to_string());
    env.insert("NIX_BUILD_CORES".into(), i.cores.to_string());
    let structured = i.drv.env.get("__json");
    if structured.is_none() {
        let pass_as_file: BTreeSet<&str> = i
            .drv
            .env
            .get("passAsFile")
            .map(|s| s.split_ascii_whitespace().collect())
            .unwrap_or_default();
        for (k, v) in &i.drv.env {
            if pass_as_file.contains(k.as_str()) {
                let h = Hash::digest(HashAlgo::Sha256, k.as_bytes());
                let name = format!(".attr-{}", h.to_nix32());
                write(&i.tmp_dir.join(&name), rewrite(v, i.rewrites).as_bytes())?;
                env.insert(
                    format!("{k}Path"),
                    format!("{}/{name}", i.tmp_dir_in_sandbox),
                );
            } else {
                env.insert(k.clone(), v.clone());
            }
        }
    }
    for k in ["NIX_BUILD_TOP", "TMPDIR", "TEMPDIR", "TMP", "TEMP", "PWD"] {
        env.insert(k.into(), i.tmp_dir_in_sandbox.to_string());
    }
    if i.drv.is_fixed_output() {
        env.insert("NIX_OUTPUT_CHECKED".into(), "1".into());
    }
    // Builders that are not sandboxed (fixed-output and impure ones) get the caller's values
    // of the variables `impureEnvVars` names.
    let impure = matches!(
        i.drv.derivation_type(),
        Ok(firn_format::derivation::DerivationType::Impure)
    );
    if i.drv.is_fixed_output() || impure {
        if let Some(vars) = impure_env_vars(i.drv, structured)? {
            for v in vars {
                env.insert(v.clone(), std::env::var(&v).unwrap_or_default());
            }
        }
    }
    env.insert("NIX_LOG_FD".into(), "2".into());
    env.insert("TERM".into(), "xterm-256color".into());
    if let Some(json) = structured {
        let mut attrs: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| BuildError::Other(format!("cannot process __json attribute: {e}")))?;
        let obj = attrs
            .as_object_mut()
            .ok_or_else(|| BuildError::Other("the __json attribute is not a JSON object".into()))?;
        let mut outputs = serde_json::Map::new();
        for name in i.drv.outputs.keys() {
            outputs.insert(
                name.clone(),
                serde_json::Value::String(rewrite(&hash_placeholder(name), i.rewrites)),
            );
        }
        obj.insert("outputs".into(), serde_json::Value::Object(outputs));
        if let Some(serde_json::Value::Object(graphs)) = obj.get("exportReferencesGraph").cloned() {
            for (key, paths) in graphs {
                let mut set = BTreeSet::new();
                for p in paths.as_array().into_iter().flatten() {
                    if let Some(s) = p.as_str() {
                        set.insert(i.store_dir.parse(s).map_err(|e| {
                            BuildError::Other(format!("exportReferencesGraph: {e}"))
                        })?);
                    }
                }
                obj.insert(key, (i.closure_json)(&set)?);
            }
        }
        // CppNix writes the JSON with sorted keys and no spaces.
        let sorted = firn_format::json::sort_json(&attrs);
        let text = serde_json::to_string(&sorted)
            .map_err(|e| BuildError::Other(format!("writing .attrs.json: {e}")))?;
        write(
            &i.tmp_dir.join(".attrs.json"),
            rewrite(&text, i.rewrites).as_bytes(),
        )?;
        write(
            &i.tmp_dir.join(".attrs.sh"),
            rewrite(&attrs_shell(&sorted), i.rewrites).as_bytes(),
        )?;
        env.insert(
            "NIX_ATTRS_JSON_FILE".into(),
            format!("{}/.attrs.json", i.tmp_dir_in_sandbox),
        );
        env.insert(
            "NIX_ATTRS_SH_FILE".into(),
            format!("{}/.attrs.sh", i.tmp_dir_in_sandbox),
        );
    }
    for v in env.values_mut() {
        *v = rewrite(v, i.rewrites);
    }
    Ok(env)
}

fn impure_env_vars(
    drv: &Derivation,
    structured: Option<&String>,
) -> Result<Option<Vec<String>>, BuildError> {
    if let Some(json) = structured {
        let v: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| BuildError::Other(format!("cannot process __json attribute: {e}")))?;
        return Ok(v.get("impureEnvVars").and_then(|l| l.as_array()).map(|l| {
            l.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        }));
    }
    Ok(drv
        .env
        .get("impureEnvVars")
        .map(|s| s.split_ascii_whitespace().map(String::from).collect()))
}

fn shell_escape(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn is_shell_var(k: &str) -> bool {
    let mut chars = k.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn simple_shell_value(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(shell_escape(s)),
        serde_json::Value::Number(n) => {
            let f = n.as_f64()?;
            if f.ceil() == f {
                Some(format!("{}", f as i64))
            } else {
                None
            }
        }
        serde_json::Value::Null => Some("''".into()),
        serde_json::Value::Bool(b) => Some(if *b { "1".into() } else { String::new() }),
        _ => None,
    }
}

/// `.attrs.sh`: the attributes a shell can hold (strings, numbers, Booleans, null, and lists
/// or sets of those) as `declare` statements, in key order.
pub fn attrs_shell(v: &serde_json::Value) -> String {
    let mut out = String::new();
    let Some(obj) = v.as_object() else {
        return out;
    };
    let mut keys: Vec<&String> = obj.keys().collect();
    keys.sort();
    for k in keys {
        if !is_shell_var(k) {
            continue;
        }
        let value = &obj[k];
        if let Some(s) = simple_shell_value(value) {
            out.push_str(&format!("declare {k}={s}\n"));
        } else if let Some(items) = value.as_array() {
            let parts: Option<Vec<String>> = items.iter().map(simple_shell_value).collect();
            if let Some(parts) = parts {
                let mut s = String::new();
                for p in parts {
                    s.push_str(&p);
                    s.push(' ');
                }
                out.push_str(&format!("declare -a {k}=({s})\n"));
            }
        } else if let Some(m) = value.as_object() {
            let mut inner: Vec<&String> = m.keys().collect();
            inner.sort();
            let mut s = String::new();
            let mut good = true;
            for k2 in inner {
                match simple_shell_value(&m[k2]) {
                    Some(v2) => s.push_str(&format!("[{}]={v2} ", shell_escape(k2))),
                    None => {
                        good = false;
                        break;
                    }
                }
            }
            if good {
                out.push_str(&format!("declare -A {k}=({s})\n"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_attrs_like_nix() {
        let v: serde_json::Value = serde_json::from_str(
            r#"{"b":"it's","a":[1,"x",true,null],"c":{"k":"v","j":2},"bad-name":1,"n":{"x":[1]},"f":1.5,"t":false}"#,
        )
        .unwrap();
        assert_eq!(
            attrs_shell(&v),
            "declare -a a=(1 'x' 1 '' )\ndeclare b='it'\\''s'\ndeclare -A c=(['j']=2 ['k']='v' )\ndeclare t=\n"
        );
    }
}
