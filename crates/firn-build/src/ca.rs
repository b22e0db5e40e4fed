//! Content-addressed derivations (`ca-derivations`), as CppNix 2.8 builds them.
//!
//! - A floating output is built at a scratch path (CppNix's `makeFallbackPath` for an output
//!   name); afterwards its hash is taken with the scratch hash part zeroed
//!   ([`ModuloSink`]), which gives the final path; the scratch hash part is rewritten to the
//!   final one and the output registered there, content-addressed ([`finish_floating`]).
//! - A derivation that depends on floating or deferred derivations is resolved before it is
//!   built (see [`firn_format::derivation::Derivation::resolve`]); the resolved derivation is
//!   written to the store and built in its place.
//! - With the feature on, every build records realisations (`Realisations` table): the
//!   derivation's masked hash modulo and output name → output path.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, OnceLock};

use firn_format::derivation::{
    output_path_name, Derivation, DerivationType, DrvError, DrvHashes, OutputHashes, OutputKind,
};
use firn_format::{
    ContentAddress, FileIngestionMethod, Hash, HashAlgo, Hasher, StoreDir, StorePath,
};
use firn_store::realisations::{DrvOutput, Realisation};
use firn_store::{LocalStore, ValidPathInfo};

use crate::outputs::{
    canonicalise_output, check_reference_rules, reference_order, scan_output, Checked, Refused,
};
use crate::plan::read_derivation;
use crate::rewrite::{rewrite_path, Rewrites};
use crate::{BuildError, FailKind};

/// The hashes modulo of the derivations seen by this process (a `.drv` path fixes its
/// contents, so they stay true).
fn hashes() -> MutexGuard<'static, DrvHashes> {
    static HASHES: OnceLock<Mutex<DrvHashes>> = OnceLock::new();
    HASHES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

fn drv_err(e: DrvError) -> BuildError {
    BuildError::Other(e.to_string())
}

/// Loading an input derivation for the hashes modulo: errors travel as [`DrvError`], the
/// only error type [`DrvHashes`] passes through, and come back out as [`BuildError`].
fn loader(store: &LocalStore) -> impl FnMut(&StorePath) -> Result<Derivation, DrvError> + '_ {
    |p| read_derivation(store, p).map_err(|e| DrvError::Invalid(e.to_string()))
}

/// CppNix's `staticOutputHashes`: the masked hash modulo of `drv`, per output.
pub fn static_hashes(store: &LocalStore, drv: &Derivation) -> Result<OutputHashes, BuildError> {
    let sd = store.store_dir();
    let h = hashes()
        .of_derivation(sd, drv, true, loader(store))
        .map_err(drv_err)?;
    Ok(h.hashes)
}

/// Whether `drv`'s output paths are known from the derivation alone (not floating, not
/// deferred).
pub fn has_known_paths(drv: &Derivation) -> Result<bool, BuildError> {
    Ok(matches!(
        drv.derivation_type().map_err(drv_err)?,
        DerivationType::InputAddressed { deferred: false }
            | DerivationType::ContentAddressed { fixed: true }
    ))
}

/// Whether `drv` is floating content-addressed.
pub fn is_floating(drv: &Derivation) -> bool {
    matches!(
        drv.derivation_type(),
        Ok(DerivationType::ContentAddressed { fixed: false })
    )
}

/// Whether `drv` is impure (`impure-derivations`): built every time it is needed, its
/// outputs content-addressed afterwards, without realisations.
pub fn is_impure(drv: &Derivation) -> bool {
    matches!(drv.derivation_type(), Ok(DerivationType::Impure))
}

/// The outputs of the impure derivations built by this process, by derivation. They have no
/// realisations: only the build that made them knows them (CppNix's goal results), for the
/// derivations resolved on top of them and for `nix build`'s report.
fn impure_outputs() -> MutexGuard<'static, BTreeMap<StorePath, BTreeMap<String, StorePath>>> {
    static BUILT: OnceLock<Mutex<BTreeMap<StorePath, BTreeMap<String, StorePath>>>> =
        OnceLock::new();
    BUILT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Remember the outputs an impure derivation's build made.
pub fn record_impure(drv_path: &StorePath, outputs: &BTreeMap<String, StorePath>) {
    impure_outputs().insert(drv_path.clone(), outputs.clone());
}

/// The outputs of impure derivation `drv_path` if this process built it.
pub fn built_impure(drv_path: &StorePath) -> Option<BTreeMap<String, StorePath>> {
    impure_outputs().get(drv_path).cloned()
}

/// Whether `drv` must be resolved before it is built (CppNix 2.8's `inputsRealised`): a
/// deferred input-addressed derivation, a floating one with input derivations, or (with the
/// feature on) a fixed-output one with input derivations.
pub fn needs_resolution(drv: &Derivation, feature: bool) -> Result<bool, BuildError> {
    if drv.input_drvs.is_empty() {
        return Ok(false);
    }
    Ok(match drv.derivation_type().map_err(drv_err)? {
        DerivationType::InputAddressed { deferred } => deferred,
        DerivationType::ContentAddressed { fixed } => !fixed || feature,
        DerivationType::Impure => true,
    })
}

/// The message CppNix gives for a derivation whose outputs need the feature.
pub fn feature_disabled() -> BuildError {
    BuildError::Other(
        "experimental Nix feature 'ca-derivations' is disabled; use '--extra-experimental-features ca-derivations' to override".into(),
    )
}

/// CppNix's `queryPartialDerivationOutputMap`: each output's path if known, from the
/// derivation, or (with the feature on) from a realisation whose path is valid.
pub fn output_map(
    store: &LocalStore,
    drv: &Derivation,
) -> Result<BTreeMap<String, Option<StorePath>>, BuildError> {
    let mut out = BTreeMap::new();
    let mut unknown = Vec::new();
    for (name, o) in &drv.outputs {
        match (o.kind().map_err(drv_err)?, &o.path) {
            (OutputKind::InputAddressed(p), _) => {
                out.insert(name.clone(), Some(p));
            }
            (OutputKind::Fixed { .. }, Some(p)) => {
                out.insert(name.clone(), Some(p.clone()));
            }
            _ => {
                out.insert(name.clone(), None);
                unknown.push(name.clone());
            }
        }
    }
    // Impure outputs have no realisations.
    if !unknown.is_empty() && store.ca_derivations() && !is_impure(drv) {
        let hashes = static_hashes(store, drv)?;
        for name in unknown {
            let Some(h) = hashes.get(&name) else { continue };
            let id = DrvOutput {
                drv_hash: h.clone(),
                output: name.clone(),
            };
            if let Some(r) = store.query_realisation(&id)? {
                out.insert(name, Some(r.out_path));
            }
        }
    }
    Ok(out)
}

/// The scratch path a floating output is built at: CppNix's `makeFallbackPath` for an output
/// name (type `rewrite:<drv base name>:name:<output>`, inner hash SHA-256 of zeroes).
pub fn scratch_path(
    sd: &StoreDir,
    drv_path: &StorePath,
    drv_name: &str,
    output: &str,
) -> Result<StorePath, BuildError> {
    let zero = Hash::from_bytes(HashAlgo::Sha256, &[0u8; 32])
        .ok_or_else(|| BuildError::Other("cannot make a zero SHA-256 hash".into()))?;
    let ty = format!("rewrite:{}:name:{output}", drv_path.base_name());
    sd.make_store_path(&ty, &zero, &output_path_name(drv_name, output))
        .map_err(|e| {
            BuildError::Other(format!(
                "computing the scratch path of output '{output}' of '{}': {e}",
                sd.display(drv_path)
            ))
        })
}

/// CppNix's `HashModuloSink`: hashes a stream with every occurrence of `modulus` (a scratch
/// hash part) replaced by zero bytes, then the position of each occurrence (`|<offset>`), so
/// the hash does not depend on the scratch path but self-references still count.
pub struct ModuloSink {
    hasher: Hasher,
    modulus: Vec<u8>,
    held: Vec<u8>,
    /// Bytes passed to the hasher so far.
    pos: u64,
    matches: Vec<u64>,
}

impl ModuloSink {
    pub fn new(algo: HashAlgo, modulus: &str) -> ModuloSink {
        ModuloSink {
            hasher: Hasher::new(algo),
            modulus: modulus.as_bytes().to_vec(),
            held: Vec::new(),
            pos: 0,
            matches: Vec::new(),
        }
    }

    pub fn finish(mut self) -> Hash {
        let held = std::mem::take(&mut self.held);
        self.hasher.update(&held);
        for m in &self.matches {
            self.hasher.update(format!("|{m}").as_bytes());
        }
        self.hasher.finish()
    }
}

impl Write for ModuloSink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.modulus.len();
        if n == 0 {
            self.hasher.update(data);
            return Ok(data.len());
        }
        self.held.extend_from_slice(data);
        let mut i = 0;
        while i + n <= self.held.len() {
            if self.held[i..i + n] == self.modulus[..] {
                self.matches.push(self.pos + i as u64);
                self.held[i..i + n].fill(0);
                i += n;
            } else {
                i += 1;
            }
        }
        // The last n - 1 bytes may start an occurrence that the next write completes.
        let keep = (n - 1).min(self.held.len());
        let done = self.held.len() - keep;
        self.hasher.update(&self.held[..done]);
        self.pos += done as u64;
        self.held.drain(..done);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn refused(msg: String) -> Refused {
    Refused {
        kind: FailKind::Rejected,
        msg,
    }
}

/// The outputs of a floating derivation after its builder succeeded: each moved (in
/// reference order) from its scratch path to its content-addressed path, with the scratch
/// hash parts of itself and of the outputs done before rewritten, and checked against the
/// reference rules (unless `rules` is false: `--check`). `outputs` are the scratch paths by
/// output name, `location` where the builder left each. Impure outputs are content-addressed
/// the same way.
pub fn finish_floating(
    store: &LocalStore,
    drv_path: &StorePath,
    drv: &Derivation,
    outputs: &BTreeMap<String, StorePath>,
    location: &dyn Fn(&StorePath) -> PathBuf,
    input_closure: &BTreeSet<StorePath>,
    rules: bool,
) -> Result<Vec<Checked>, Refused> {
    let sd = store.store_dir();
    let drv_shown = sd.display(drv_path);
    let mut candidates: BTreeSet<StorePath> = input_closure.clone();
    candidates.extend(outputs.values().cloned());
    // Canonicalise and scan each output where the builder left it.
    let mut scanned: BTreeMap<String, (PathBuf, BTreeSet<StorePath>, fs::Metadata)> =
        BTreeMap::new();
    for (name, scratch) in outputs {
        let loc = location(scratch);
        let (_, _, refs) = scan_output(sd, drv_path, name, scratch, &loc, &candidates)?;
        let meta =
            fs::symlink_metadata(&loc).map_err(|e| BuildError::io("getting status of", &loc, e))?;
        scanned.insert(name.clone(), (loc, refs, meta));
    }
    let order = reference_order(&drv_shown, outputs, &|n| &scanned[n].1)?;
    // Scratch path → final path of the outputs done so far.
    let mut finals: BTreeMap<StorePath, StorePath> = BTreeMap::new();
    let mut checked = Vec::new();
    for name in order {
        let scratch = &outputs[&name];
        let (loc, refs, meta) = &scanned[&name];
        let (method, algo) = match drv.outputs.get(&name).map(|o| o.kind()) {
            Some(Ok(
                OutputKind::Floating { method, algo } | OutputKind::Impure { method, algo },
            )) => (method, algo),
            _ => {
                return Err(refused(format!(
                    "output '{name}' of '{drv_shown}' is not floating content-addressed"
                )))
            }
        };
        if method == FileIngestionMethod::Flat {
            use std::os::unix::fs::PermissionsExt;
            if !meta.is_file() || meta.permissions().mode() & 0o100 != 0 {
                return Err(refused(format!(
                    "output path '{}' should be a non-executable regular file since recursive hashing is not enabled (outputHashMode=flat)",
                    loc.display()
                )));
            }
        }
        // References to outputs done before take their final hash parts first.
        let earlier = Rewrites::new(finals.iter());
        if !earlier.is_empty() {
            rewrite_path(loc, &earlier).map_err(BuildError::from)?;
            canonicalise_output(loc)?;
        }
        let mut sink = ModuloSink::new(algo, scratch.hash_part());
        match method {
            FileIngestionMethod::Recursive => firn_store::nar_fs::dump_path(loc, &mut sink)
                .map_err(|e| BuildError::Other(format!("hashing '{}': {e}", loc.display())))?,
            FileIngestionMethod::Flat => {
                let mut f = fs::File::open(loc).map_err(|e| BuildError::io("opening", loc, e))?;
                io::copy(&mut f, &mut sink).map_err(|e| BuildError::io("reading", loc, e))?;
            }
        }
        let got = sink.finish();
        tracing::debug!(
            "output '{name}' of '{drv_shown}' at '{}': hash modulo '{}' is {}",
            loc.display(),
            scratch.hash_part(),
            got.to_base16()
        );
        let self_ref = refs.contains(scratch);
        let other_refs: BTreeSet<StorePath> = refs
            .iter()
            .filter(|r| *r != scratch)
            .map(|r| finals.get(r).cloned().unwrap_or_else(|| r.clone()))
            .collect();
        let final_path = sd
            .make_fixed_output_path(
                &output_path_name(&drv.name, &name),
                method,
                &got,
                &other_refs,
                self_ref,
            )
            .map_err(|e| {
                BuildError::Other(format!(
                    "computing the path of output '{name}' of '{drv_shown}': {e}"
                ))
            })?;
        if &final_path != scratch {
            rewrite_path(loc, &Rewrites::new([(scratch, &final_path)]))
                .map_err(BuildError::from)?;
            canonicalise_output(loc)?;
        }
        let (nar_hash, nar_size) = firn_store::nar_fs::hash_path(loc, HashAlgo::Sha256)
            .map_err(|e| BuildError::Other(format!("hashing '{}': {e}", loc.display())))?;
        let mut info = ValidPathInfo::new(final_path.clone(), nar_hash, nar_size);
        info.references = other_refs;
        if self_ref {
            info.references.insert(final_path.clone());
        }
        info.ca = Some(ContentAddress::Fixed(method, got));
        info.deriver = Some(drv_path.clone());
        info.ultimate = true;
        finals.insert(scratch.clone(), final_path);
        checked.push(Checked {
            name,
            info,
            location: loc.clone(),
        });
    }
    if rules {
        check_reference_rules(sd, drv, &checked, store)?;
    }
    Ok(checked)
}

/// Record realisations of `drv` (a pure derivation just built, or found valid): each output
/// of `paths` under `drv`'s static hash, with `dependent` realisations, signed with `keys`
/// (CppNix signs those of outputs it built, not those it found valid).
pub fn register_realisations(
    store: &LocalStore,
    drv: &Derivation,
    paths: &BTreeMap<String, StorePath>,
    with_dependents: bool,
    keys: &[firn_format::signature::SecretKey],
) -> Result<(), BuildError> {
    if !store.ca_derivations() || matches!(drv.derivation_type(), Ok(DerivationType::Impure)) {
        return Ok(());
    }
    let hashes = static_hashes(store, drv)?;
    for (name, path) in paths {
        let Some(h) = hashes.get(name) else { continue };
        let dependent = if with_dependents {
            dependent_realisations(store, drv, path)?
        } else {
            BTreeMap::new()
        };
        let mut r = Realisation {
            id: DrvOutput {
                drv_hash: h.clone(),
                output: name.clone(),
            },
            out_path: path.clone(),
            signatures: BTreeSet::new(),
            dependent,
        };
        crate::sign::sign_realisation(&mut r, keys);
        store.register_realisation(&r)?;
    }
    Ok(())
}

/// CppNix's `drvOutputReferences`: the realisations of `drv`'s inputs (and, through their
/// own dependent realisations, of theirs) whose paths `out_path` refers to.
fn dependent_realisations(
    store: &LocalStore,
    drv: &Derivation,
    out_path: &StorePath,
) -> Result<BTreeMap<DrvOutput, StorePath>, BuildError> {
    let sd = store.store_dir();
    let mut todo: Vec<DrvOutput> = Vec::new();
    for (input, outs) in &drv.input_drvs {
        let d = read_derivation(store, input)?;
        let hashes = static_hashes(store, &d)?;
        for o in outs {
            let h = hashes.get(o).ok_or_else(|| {
                BuildError::Other(format!(
                    "derivation '{}' has no output '{o}'",
                    sd.display(input)
                ))
            })?;
            todo.push(DrvOutput {
                drv_hash: h.clone(),
                output: o.clone(),
            });
        }
    }
    let mut all: BTreeMap<DrvOutput, StorePath> = BTreeMap::new();
    while let Some(id) = todo.pop() {
        if all.contains_key(&id) {
            continue;
        }
        let r = store
            .query_realisation(&id)?
            .ok_or_else(|| BuildError::Other(format!("Unrealised derivation '{id}'")))?;
        todo.extend(r.dependent.keys().cloned());
        all.insert(id, r.out_path);
    }
    let refs = store
        .query_path_info(out_path)?
        .map(|i| i.references)
        .unwrap_or_default();
    Ok(all.into_iter().filter(|(_, p)| refs.contains(p)).collect())
}

/// The resolved form of `drv` (see [`Derivation::resolve`]), written to the store as CppNix
/// does: the path of its `.drv` file and the derivation.
pub fn resolve(
    store: &LocalStore,
    drv_path: &StorePath,
    drv: &Derivation,
) -> Result<(StorePath, Derivation), BuildError> {
    let sd = store.store_dir();
    let mut inputs = BTreeMap::new();
    for (input, outs) in &drv.input_drvs {
        let d = read_derivation(store, input)?;
        let map = if is_impure(&d) {
            built_impure(input)
                .unwrap_or_default()
                .into_iter()
                .map(|(n, p)| (n, Some(p)))
                .collect()
        } else {
            output_map(store, &d)?
        };
        for o in outs {
            match map.get(o) {
                Some(Some(p)) => {
                    inputs.insert((input.clone(), o.clone()), p.clone());
                }
                _ => {
                    return Err(BuildError::Other(format!(
                        "output '{o}' of input '{}' of '{}' is missing, so it cannot be resolved",
                        sd.display(input),
                        sd.display(drv_path)
                    )))
                }
            }
        }
    }
    let resolved = drv.resolve(sd, &inputs).map_err(drv_err)?;
    let text = resolved.to_aterm(sd);
    let path = store.add_text(
        &format!("{}.drv", resolved.name),
        text.as_bytes(),
        &resolved.references(),
    )?;
    Ok((path, resolved))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn modulo(chunks: &[&[u8]], modulus: &str) -> Hash {
        let mut s = ModuloSink::new(HashAlgo::Sha256, modulus);
        for c in chunks {
            s.write_all(c).unwrap();
        }
        s.finish()
    }

    #[test]
    fn modulo_hash_zeroes_the_modulus_and_counts_positions() {
        let m = "abcd";
        // Without an occurrence: the plain hash.
        assert_eq!(
            modulo(&[b"hello world"], m),
            Hash::digest(HashAlgo::Sha256, "hello world")
        );
        // An occurrence split across writes is found; the hash is of the zeroed text and
        // its position.
        let want = Hash::digest(HashAlgo::Sha256, b"xy\0\0\0\0z|2".as_slice());
        assert_eq!(modulo(&[b"xyab", b"cdz"], m), want);
        assert_eq!(modulo(&[b"xyabcdz"], m), want);
        assert_eq!(modulo(&[b"x", b"y", b"a", b"b", b"c", b"d", b"z"], m), want);
    }
}
