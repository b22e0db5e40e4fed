//! The experimental features that change what an evaluation accepts, as the
//! `experimental-features` setting names them.

/// Which of the evaluator's experimental features are on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Features {
    /// `pipe-operators`: `|>` and `<|` parse.
    pub pipe_operators: bool,
    /// `ca-derivations`: `__contentAddressed = true` is allowed.
    pub ca_derivations: bool,
    /// `impure-derivations`: `__impure = true` is allowed.
    pub impure_derivations: bool,
    /// `fetch-closure`: `builtins.fetchClosure` exists.
    pub fetch_closure: bool,
    /// `dynamic-derivations`: `builtins.outputOf` exists.
    pub dynamic_derivations: bool,
    /// `flakes`: `builtins.getFlake` exists.
    pub flakes: bool,
    /// `parse-toml-timestamps`: `fromTOML` gives dates and times as
    /// `{ _type = "timestamp"; value = …; }`.
    pub parse_toml_timestamps: bool,
    /// Not an experimental feature but the setting `allow-unsafe-native-code-during-evaluation`,
    /// which gates builtins the same way: `builtins.exec` exists.
    pub native_code: bool,
}

impl Features {
    /// The features named in `list` (the setting's value: names separated by white space);
    /// names of other features are ignored here.
    pub fn from_names(list: &str) -> Features {
        let mut f = Features::default();
        for name in list.split_whitespace() {
            match name {
                "pipe-operators" => f.pipe_operators = true,
                "ca-derivations" => f.ca_derivations = true,
                "impure-derivations" => f.impure_derivations = true,
                "fetch-closure" => f.fetch_closure = true,
                "dynamic-derivations" => f.dynamic_derivations = true,
                "parse-toml-timestamps" => f.parse_toml_timestamps = true,
                "flakes" => f.flakes = true,
                _ => {}
            }
        }
        f
    }

    /// Whether the builtin `name` exists with these features: as in Nix, a builtin behind a
    /// feature that is off is not there at all (`builtins ? fetchClosure` is false).
    pub fn has_builtin(&self, name: &str) -> bool {
        match name {
            "fetchClosure" => self.fetch_closure,
            "outputOf" => self.dynamic_derivations,
            "exec" => self.native_code,
            "getFlake" => self.flakes,
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_turn_features_on() {
        let f = Features::from_names("nix-command  fetch-closure\tca-derivations flakes");
        assert!(f.fetch_closure && f.ca_derivations);
        assert!(!f.pipe_operators && !f.impure_derivations && !f.dynamic_derivations);
        assert!(!f.parse_toml_timestamps);
        assert!(Features::from_names("parse-toml-timestamps").parse_toml_timestamps);
        assert_eq!(Features::from_names(""), Features::default());
        assert!(f.has_builtin("fetchClosure") && f.has_builtin("map"));
        assert!(!f.has_builtin("outputOf") && !f.has_builtin("exec"));
        let native = Features {
            native_code: true,
            ..f
        };
        assert!(native.has_builtin("exec"));
    }
}
