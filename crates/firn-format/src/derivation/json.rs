//! The JSON form of derivations that `nix derivation show` (`nix show-derivation` in 2.8)
//! prints: `{"<drv path>": {"outputs", "inputSrcs", "inputDrvs", "system", "builder", "args",
//! "env"}}`, keys in CppNix's order.

use serde_json::{json, Map, Value};

use super::{ingestion_prefix, Derivation, OutputKind};
use crate::store_path::{StoreDir, StorePath};

impl Derivation {
    /// The JSON object for this derivation (the value under its `.drv` path).
    pub fn to_json(&self, sd: &StoreDir) -> Value {
        let mut outputs = Map::new();
        for (id, o) in &self.outputs {
            let mut m = Map::new();
            match o.kind() {
                Ok(OutputKind::InputAddressed(p)) => {
                    m.insert("path".into(), json!(sd.display(&p)));
                }
                Ok(OutputKind::Fixed { method, hash }) => {
                    if let Some(p) = &o.path {
                        m.insert("path".into(), json!(sd.display(p)));
                    }
                    m.insert(
                        "hashAlgo".into(),
                        json!(format!("{}{}", ingestion_prefix(method), hash.algo())),
                    );
                    m.insert("hash".into(), json!(hash.to_base16()));
                }
                Ok(OutputKind::Floating { .. }) => {
                    m.insert("hashAlgo".into(), json!(o.hash_algo));
                }
                Ok(OutputKind::Impure { .. }) => {
                    m.insert("hashAlgo".into(), json!(o.hash_algo));
                    m.insert("impure".into(), json!(true));
                }
                Ok(OutputKind::Deferred) => {}
                // Not something CppNix can hold: show the fields as they are.
                Err(_) => {
                    if let Some(p) = &o.path {
                        m.insert("path".into(), json!(sd.display(p)));
                    }
                    m.insert("hashAlgo".into(), json!(o.hash_algo));
                    m.insert("hash".into(), json!(o.hash));
                }
            }
            outputs.insert(id.clone(), Value::Object(m));
        }
        let srcs: Vec<String> = self.input_srcs.iter().map(|p| sd.display(p)).collect();
        let mut drvs = Map::new();
        for (d, outs) in &self.input_drvs {
            drvs.insert(sd.display(d), json!(outs));
        }
        let mut obj = Map::new();
        obj.insert("outputs".into(), Value::Object(outputs));
        obj.insert("inputSrcs".into(), json!(srcs));
        obj.insert("inputDrvs".into(), Value::Object(drvs));
        obj.insert("system".into(), json!(self.platform));
        obj.insert("builder".into(), json!(self.builder));
        obj.insert("args".into(), json!(self.args));
        obj.insert("env".into(), json!(self.env));
        Value::Object(obj)
    }
}

/// The whole document `nix derivation show` prints for these derivations.
pub fn show_json<'a>(
    sd: &StoreDir,
    drvs: impl IntoIterator<Item = (&'a StorePath, &'a Derivation)>,
) -> Value {
    let mut root = Map::new();
    for (p, d) in drvs {
        root.insert(sd.display(p), d.to_json(sd));
    }
    Value::Object(root)
}
