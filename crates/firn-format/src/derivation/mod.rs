//! Derivations: the ATerm `.drv` format (parsed and printed byte for byte), the hash "modulo"
//! fixed-output inputs that input-addressed output paths are computed from, the paths of the
//! outputs and of the `.drv` file itself, and the JSON that `nix derivation show` prints.
//!
//! The submodules split the work: [`aterm`] reads and writes the text, [`modulo`] computes
//! hashes and paths, [`json`] renders the JSON form.

pub mod aterm;
pub mod json;
pub mod modulo;
pub mod resolve;

use std::collections::{BTreeMap, BTreeSet};

use thiserror::Error;

use crate::hash::{Hash, HashAlgo, HashError};
use crate::store_path::{FileIngestionMethod, StorePath, StorePathError};

pub use modulo::{
    computed_output_placeholder_hash, downstream_placeholder, downstream_placeholder_hash,
    hash_placeholder, placeholder_text, DrvHash, DrvHashKind, DrvHashes, Instantiated,
    OutputHashes,
};

/// One output as the `.drv` file states it: the three strings after the output's name.
///
/// Which of the fields are set decides the kind of output (see [`OutputKind`]). Values read by
/// [`Derivation::parse`] are normalised the way CppNix reads them: fixed hashes in base16,
/// fixed output paths recomputed from the hash, unused fields blank.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DerivationOutput {
    /// The output path; `None` for floating content-addressed, impure or deferred outputs.
    pub path: Option<StorePath>,
    /// `""` for input-addressed outputs, else `[r:]<algo>`.
    pub hash_algo: String,
    /// `""`, or for fixed outputs the expected hash in base16, or `impure`.
    pub hash: String,
}

/// The typed meaning of a [`DerivationOutput`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutputKind {
    /// An output whose path comes from the hash of the derivation.
    InputAddressed(StorePath),
    /// An output whose contents are known in advance.
    Fixed {
        method: FileIngestionMethod,
        hash: Hash,
    },
    /// A content-addressed output whose hash is only known after the build (`ca-derivations`).
    Floating {
        method: FileIngestionMethod,
        algo: HashAlgo,
    },
    /// An input-addressed output whose path is not computed yet.
    Deferred,
    /// An output of an impure derivation (`impure-derivations`).
    Impure {
        method: FileIngestionMethod,
        algo: HashAlgo,
    },
}

/// `r:` for recursive ingestion, nothing for flat.
pub fn ingestion_prefix(method: FileIngestionMethod) -> &'static str {
    match method {
        FileIngestionMethod::Recursive => "r:",
        FileIngestionMethod::Flat => "",
    }
}

/// Split `[r:]<algo>` into the ingestion method and the algorithm.
pub fn parse_method_algo(s: &str) -> Result<(FileIngestionMethod, HashAlgo), HashError> {
    let (method, algo) = match s.strip_prefix("r:") {
        Some(a) => (FileIngestionMethod::Recursive, a),
        None => (FileIngestionMethod::Flat, s),
    };
    Ok((method, algo.parse()?))
}

/// The store path name of output `output` of a derivation named `drv_name`: the name itself
/// for `out`, else `<drv_name>-<output>`.
pub fn output_path_name(drv_name: &str, output: &str) -> String {
    if output == "out" {
        drv_name.to_string()
    } else {
        // Every derivation with several outputs names each: made at its size, without the
        // formatting machinery.
        let mut name = String::with_capacity(drv_name.len() + 1 + output.len());
        name.push_str(drv_name);
        name.push('-');
        name.push_str(output);
        name
    }
}

impl DerivationOutput {
    /// An input-addressed output at `path`.
    pub fn input_addressed(path: StorePath) -> DerivationOutput {
        DerivationOutput {
            path: Some(path),
            hash_algo: String::new(),
            hash: String::new(),
        }
    }

    /// An input-addressed output whose path is not known yet.
    pub fn deferred() -> DerivationOutput {
        DerivationOutput {
            path: None,
            hash_algo: String::new(),
            hash: String::new(),
        }
    }

    /// A fixed output expecting `hash`; its path is filled in by
    /// [`Derivation::fill_output_paths`] (or give it with `path`).
    pub fn fixed_output(
        method: FileIngestionMethod,
        hash: &Hash,
        path: Option<StorePath>,
    ) -> DerivationOutput {
        DerivationOutput {
            path,
            hash_algo: format!("{}{}", ingestion_prefix(method), hash.algo()),
            hash: hash.to_base16(),
        }
    }

    /// A floating content-addressed output.
    pub fn floating(method: FileIngestionMethod, algo: HashAlgo) -> DerivationOutput {
        DerivationOutput {
            path: None,
            hash_algo: format!("{}{algo}", ingestion_prefix(method)),
            hash: String::new(),
        }
    }

    /// An output of an impure derivation.
    pub fn impure(method: FileIngestionMethod, algo: HashAlgo) -> DerivationOutput {
        DerivationOutput {
            path: None,
            hash_algo: format!("{}{algo}", ingestion_prefix(method)),
            hash: "impure".into(),
        }
    }

    /// What kind of output this is; an error if the fields do not make sense together.
    pub fn kind(&self) -> Result<OutputKind, DrvError> {
        let bad = |msg: String| DrvError::Invalid(msg);
        if self.hash_algo.is_empty() {
            return Ok(match &self.path {
                Some(p) => OutputKind::InputAddressed(p.clone()),
                None => OutputKind::Deferred,
            });
        }
        let (method, algo) = parse_method_algo(&self.hash_algo)
            .map_err(|e| bad(format!("output hash algorithm: {e}")))?;
        if self.hash == "impure" {
            Ok(OutputKind::Impure { method, algo })
        } else if self.hash.is_empty() {
            Ok(OutputKind::Floating { method, algo })
        } else {
            Ok(OutputKind::Fixed {
                method,
                hash: parse_fixed_hash(&self.hash, algo)?,
            })
        }
    }

    /// For a fixed output: how its contents are hashed, and the expected hash.
    pub fn fixed(&self) -> Option<(FileIngestionMethod, Hash)> {
        match self.kind() {
            Ok(OutputKind::Fixed { method, hash }) => Some((method, hash)),
            _ => None,
        }
    }
}

/// The expected hash of a fixed output as `.drv` files give it: bare digits (base16, nix32 or
/// base64, told apart by length), no algorithm prefix and no SRI.
pub(crate) fn parse_fixed_hash(s: &str, algo: HashAlgo) -> Result<Hash, DrvError> {
    if s.contains(':') || s.contains('-') {
        return Err(DrvError::Invalid(format!(
            "fixed output hash '{s}' must be bare digits without an algorithm"
        )));
    }
    Hash::parse(s, Some(algo)).map_err(|e| DrvError::Invalid(format!("fixed output hash: {e}")))
}

/// What kind of derivation this is, from the kinds of its outputs (they may not be mixed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DerivationType {
    /// All outputs input-addressed; `deferred` if their paths are not computed yet.
    InputAddressed { deferred: bool },
    /// A single fixed output `out` (`fixed`), or floating content-addressed outputs.
    ContentAddressed { fixed: bool },
    /// Impure outputs.
    Impure,
}

/// A derivation: how to build some outputs from some inputs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Derivation {
    /// The name (the `.drv` file's name without `.drv`); not part of the ATerm.
    pub name: String,
    pub outputs: BTreeMap<String, DerivationOutput>,
    /// Input derivations and which of their outputs are used.
    pub input_drvs: BTreeMap<StorePath, BTreeSet<String>>,
    pub input_srcs: BTreeSet<StorePath>,
    /// The system type, e.g. `x86_64-linux` (`system` in Nix).
    pub platform: String,
    pub builder: String,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
}

/// Malformed `.drv` text, or a derivation that makes no sense.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DrvError {
    #[error("malformed derivation at byte {offset}: expected {expected}")]
    Expected { offset: usize, expected: String },
    #[error("malformed derivation at byte {offset}: {msg}")]
    Bad { offset: usize, msg: String },
    #[error("invalid derivation: {0}")]
    Invalid(String),
    #[error("derivation '{0}' depends on itself")]
    Cycle(String),
    #[error("input derivation '{drv}' has no output '{output}'")]
    MissingInputOutput { drv: String, output: String },
    #[error(transparent)]
    Path(#[from] StorePathError),
}

impl Derivation {
    /// The kind of derivation, as CppNix decides it; an error for no outputs, mixed output
    /// kinds, or a fixed output that is not the single output `out`.
    pub fn derivation_type(&self) -> Result<DerivationType, DrvError> {
        let (mut ia, mut fixed, mut floating, mut deferred, mut impure) = (0, 0, 0, 0, 0);
        let mut floating_algo = None;
        for o in self.outputs.values() {
            match o.kind()? {
                OutputKind::InputAddressed(_) => ia += 1,
                OutputKind::Fixed { .. } => fixed += 1,
                OutputKind::Floating { algo, .. } => {
                    floating += 1;
                    if floating_algo.is_some_and(|a| a != algo) {
                        return Err(DrvError::Invalid(
                            "all floating outputs must use the same hash type".into(),
                        ));
                    }
                    floating_algo = Some(algo);
                }
                OutputKind::Deferred => deferred += 1,
                OutputKind::Impure { .. } => impure += 1,
            }
        }
        let total = ia + fixed + floating + deferred + impure;
        if total == 0 {
            return Err(DrvError::Invalid("must have at least one output".into()));
        }
        if ia == total {
            Ok(DerivationType::InputAddressed { deferred: false })
        } else if fixed == total {
            if fixed > 1 {
                return Err(DrvError::Invalid("only one fixed output is allowed".into()));
            }
            if !self.outputs.contains_key("out") {
                return Err(DrvError::Invalid(
                    "single fixed output must be named \"out\"".into(),
                ));
            }
            Ok(DerivationType::ContentAddressed { fixed: true })
        } else if floating == total {
            Ok(DerivationType::ContentAddressed { fixed: false })
        } else if deferred == total {
            Ok(DerivationType::InputAddressed { deferred: true })
        } else if impure == total {
            Ok(DerivationType::Impure)
        } else {
            Err(DrvError::Invalid(
                "can't mix derivation output types".into(),
            ))
        }
    }

    /// Is this a fixed-output derivation (a single output `out` with a hash)?
    pub fn is_fixed_output(&self) -> bool {
        matches!(
            self.derivation_type(),
            Ok(DerivationType::ContentAddressed { fixed: true })
        )
    }

    /// The references of the `.drv` file: input sources and input derivations.
    pub fn references(&self) -> BTreeSet<StorePath> {
        self.sorted_references().into_iter().cloned().collect()
    }

    /// [`Derivation::references`] borrowed, in order and each once: the two sets merged
    /// (a derivation given with all its outputs is in both).
    pub fn sorted_references(&self) -> Vec<&StorePath> {
        let mut out = Vec::with_capacity(self.input_srcs.len() + self.input_drvs.len());
        let mut srcs = self.input_srcs.iter().peekable();
        let mut drvs = self.input_drvs.keys().peekable();
        loop {
            let next = match (srcs.peek(), drvs.peek()) {
                (Some(s), Some(d)) => match s.cmp(d) {
                    std::cmp::Ordering::Less => srcs.next(),
                    std::cmp::Ordering::Greater => drvs.next(),
                    std::cmp::Ordering::Equal => {
                        drvs.next();
                        srcs.next()
                    }
                },
                (Some(_), None) => srcs.next(),
                (None, _) => drvs.next(),
            };
            match next {
                Some(p) => out.push(p),
                None => return out,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `out` is named as the derivation; other outputs get their name after a dash.
    #[test]
    fn output_path_names() {
        assert_eq!(output_path_name("hello-2.12", "out"), "hello-2.12");
        assert_eq!(output_path_name("hello-2.12", "dev"), "hello-2.12-dev");
        assert_eq!(output_path_name("x", ""), "x-");
    }
}
