//! `nix-cache-info`: the file at the root of a binary cache that says which store directory
//! its paths belong to (`StoreDir`), whether clients may query many paths at once
//! (`WantMassQuery`), and its priority (`Priority`, lower is preferred).
//!
//! Lines are `Key: value`; lines without a colon and unknown keys are ignored, as CppNix
//! does. A cache CppNix creates holds only the `StoreDir` line, so the other two are optional.

use thiserror::Error;

use crate::store_path::StoreDir;

/// A `nix-cache-info` that cannot be used.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CacheInfoError {
    #[error("nix-cache-info of '{cache}': bad Priority '{value}': not an integer")]
    BadPriority { cache: String, value: String },
    #[error("binary cache '{cache}' is for Nix stores with prefix '{found}', not '{ours}'")]
    WrongStoreDir {
        cache: String,
        found: String,
        ours: String,
    },
}

/// What a binary cache says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheInfo {
    /// The store directory the cache's paths are for (`/nix/store` if not given).
    pub store_dir: String,
    /// `WantMassQuery: 1` or `0`, if given.
    pub want_mass_query: Option<bool>,
    /// `Priority`, if given.
    pub priority: Option<i32>,
}

impl Default for CacheInfo {
    fn default() -> Self {
        CacheInfo {
            store_dir: StoreDir::default().to_string(),
            want_mass_query: None,
            priority: None,
        }
    }
}

impl CacheInfo {
    /// A new cache's info, as CppNix writes it: only the store directory.
    pub fn new(sd: &StoreDir) -> CacheInfo {
        CacheInfo {
            store_dir: sd.to_string(),
            ..CacheInfo::default()
        }
    }

    /// Parse the file's text; `cache` names the cache in errors.
    pub fn parse_from(text: &str, cache: &str) -> Result<CacheInfo, CacheInfoError> {
        let mut c = CacheInfo::default();
        for line in text.split('\n') {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let v = v.trim_matches(|c| " \t\n\r".contains(c));
            match k {
                "StoreDir" => c.store_dir = v.to_string(),
                "WantMassQuery" => c.want_mass_query = Some(v == "1"),
                "Priority" => {
                    c.priority = Some(v.parse().map_err(|_| CacheInfoError::BadPriority {
                        cache: cache.to_string(),
                        value: v.to_string(),
                    })?)
                }
                _ => {}
            }
        }
        Ok(c)
    }

    /// [`CacheInfo::parse_from`] for a cache that need not be named.
    pub fn parse(text: &str) -> Result<CacheInfo, CacheInfoError> {
        Self::parse_from(text, "nix-cache-info")
    }

    /// The file's text: `StoreDir`, then `WantMassQuery` and `Priority` when set.
    pub fn to_text(&self) -> String {
        let mut s = format!("StoreDir: {}\n", self.store_dir);
        if let Some(w) = self.want_mass_query {
            s.push_str(&format!("WantMassQuery: {}\n", u8::from(w)));
        }
        if let Some(p) = self.priority {
            s.push_str(&format!("Priority: {p}\n"));
        }
        s
    }

    /// An error unless the cache is for store directory `sd`.
    pub fn check_store_dir(&self, sd: &StoreDir, cache: &str) -> Result<(), CacheInfoError> {
        if self.store_dir == sd.as_str() {
            Ok(())
        } else {
            Err(CacheInfoError::WrongStoreDir {
                cache: cache.to_string(),
                found: self.store_dir.clone(),
                ours: sd.to_string(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print() {
        let text = "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n";
        let c = CacheInfo::parse(text).unwrap();
        assert_eq!(c.want_mass_query, Some(true));
        assert_eq!(c.priority, Some(40));
        assert_eq!(c.to_text(), text);
        let c = CacheInfo::parse("junk line\nStoreDir:/gnu/store  \nOther: x\n").unwrap();
        assert_eq!(c.store_dir, "/gnu/store");
        assert_eq!((c.want_mass_query, c.priority), (None, None));
        assert_eq!(c.to_text(), "StoreDir: /gnu/store\n");
    }

    #[test]
    fn bad_priority_and_wrong_store() {
        assert!(matches!(
            CacheInfo::parse("Priority: high\n"),
            Err(CacheInfoError::BadPriority { .. })
        ));
        let c = CacheInfo::parse("StoreDir: /gnu/store\n").unwrap();
        let e = c
            .check_store_dir(&StoreDir::default(), "file:///c")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "binary cache 'file:///c' is for Nix stores with prefix '/gnu/store', not '/nix/store'"
        );
        assert!(CacheInfo::new(&StoreDir::default())
            .check_store_dir(&StoreDir::default(), "c")
            .is_ok());
    }
}
