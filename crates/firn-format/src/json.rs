//! JSON as CppNix writes it: its JSON library keeps an object's keys sorted, so what it
//! prints (`flake.lock`, `nix flake show --json`, structured attributes) has them in order.

/// A copy of `v` with every object's keys sorted.
pub fn sort_json(v: &serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let mut out = serde_json::Map::new();
            for k in keys {
                out.insert(k.clone(), sort_json(&m[k]));
            }
            serde_json::Value::Object(out)
        }
        serde_json::Value::Array(a) => serde_json::Value::Array(a.iter().map(sort_json).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_in_order_at_every_depth() {
        let v = serde_json::json!({ "b": [ { "z": 1, "a": 2 } ], "a": { "y": null, "x": true } });
        assert_eq!(
            sort_json(&v).to_string(),
            r#"{"a":{"x":true,"y":null},"b":[{"a":2,"z":1}]}"#
        );
    }
}
