//! Hashes and paths of derivations: CppNix's `hashDerivationModulo`, the output paths of a
//! derivation computed from it, and the store path of the `.drv` file.
//!
//! The hash modulo of an input-addressed derivation is the SHA-256 of its ATerm with every
//! input derivation path replaced by the base16 of that input's own hash modulo; a fixed-output
//! derivation's hash is that of `fixed:out:<[r:]algo>:<base16 hash>:<output path>`, so that
//! changing how a fixed output is fetched does not change anything that depends on it.
//! Reading input derivations is IO, so callers supply them; [`DrvHashes`] memoises.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::{
    ingestion_prefix, output_path_name, Derivation, DerivationOutput, DerivationType, DrvError,
    OutputKind,
};
use crate::hash::{Hash, HashAlgo};
use crate::store_path::{StoreDir, StorePath, StorePathError};

/// Whether the hash modulo can give output paths now, or only after some build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrvHashKind {
    /// Output paths follow from the hash.
    Regular,
    /// The derivation (or one of its inputs) is floating content-addressed or impure.
    Deferred,
}

/// The hash modulo of a derivation, per output (input-addressed derivations give every output
/// the same hash; a fixed-output derivation's `out` has its own).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DrvHash {
    pub hashes: OutputHashes,
    pub kind: DrvHashKind,
}

/// The hash of each output, by output name. A short sorted vector: every derivation an
/// evaluation makes keeps one, and most have a single output.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct OutputHashes(Vec<(String, Hash)>);

impl OutputHashes {
    pub fn get(&self, output: &str) -> Option<&Hash> {
        self.0
            .binary_search_by(|(o, _)| o.as_str().cmp(output))
            .ok()
            .map(|i| &self.0[i].1)
    }

    pub fn insert(&mut self, output: String, hash: Hash) {
        match self.0.binary_search_by(|(o, _)| o.cmp(&output)) {
            Ok(i) => self.0[i].1 = hash,
            Err(i) => self.0.insert(i, (output, hash)),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Hash)> {
        self.0.iter().map(|(o, h)| (o, h))
    }

    pub fn values(&self) -> impl Iterator<Item = &Hash> {
        self.0.iter().map(|(_, h)| h)
    }
}

impl FromIterator<(String, Hash)> for OutputHashes {
    fn from_iter<I: IntoIterator<Item = (String, Hash)>>(iter: I) -> Self {
        let mut v: Vec<(String, Hash)> = iter.into_iter().collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v.dedup_by(|a, b| a.0 == b.0);
        v.shrink_to_fit();
        OutputHashes(v)
    }
}

impl<'a> IntoIterator for &'a OutputHashes {
    type Item = (&'a String, &'a Hash);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (String, Hash)>,
        fn(&'a (String, Hash)) -> (&'a String, &'a Hash),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(o, h)| (o, h))
    }
}

/// The placeholder that stands for output `output` of the derivation being built, in the
/// environment of floating content-addressed derivations: `/<nix32 of sha256("nix-output:<output>")>`.
pub fn hash_placeholder(output: &str) -> String {
    let h = Hash::digest(HashAlgo::Sha256, format!("nix-output:{output}"));
    format!("/{}", h.to_nix32())
}

/// The placeholder that stands for output `output` of the derivation at `drv_path` (named
/// `drv_name`) in derivations that depend on it while its path is not known (a floating
/// content-addressed or deferred derivation): `/<nix32 of sha256("nix-upstream-output:<drv
/// hash part>:<output path name>")>`.
pub fn downstream_placeholder(drv_path: &StorePath, drv_name: &str, output: &str) -> String {
    let clear = format!(
        "nix-upstream-output:{}:{}",
        drv_path.hash_part(),
        output_path_name(drv_name, output)
    );
    format!("/{}", Hash::digest(HashAlgo::Sha256, clear).to_nix32())
}

impl Derivation {
    /// The path of fixed output `id` with the given method and hash.
    fn fixed_path(
        &self,
        sd: &StoreDir,
        id: &str,
        method: crate::store_path::FileIngestionMethod,
        hash: &Hash,
    ) -> Result<StorePath, StorePathError> {
        sd.make_fixed_output_path(&output_path_name(&self.name, id), method, hash, [], false)
    }

    /// CppNix's `hashDerivationModulo`. `input` gives the (unmasked) hash modulo of each input
    /// derivation; with `mask_outputs` the derivation's own output paths and the environment
    /// variables named after its outputs are blanked first (as when computing output paths).
    pub fn hash_derivation_modulo<E: From<DrvError>>(
        &self,
        sd: &StoreDir,
        mask_outputs: bool,
        mut input: impl FnMut(&StorePath) -> Result<DrvHash, E>,
    ) -> Result<DrvHash, E> {
        let kind = match self.derivation_type()? {
            DerivationType::ContentAddressed { fixed: true } => {
                let mut hashes = OutputHashes::default();
                for (id, o) in &self.outputs {
                    let OutputKind::Fixed { method, hash } = o.kind()? else {
                        return Err(DrvError::Invalid(format!("output '{id}' is not fixed")).into());
                    };
                    let path = self
                        .fixed_path(sd, id, method, &hash)
                        .map_err(DrvError::from)?;
                    let s = format!(
                        "fixed:out:{}{}:{}:{}",
                        ingestion_prefix(method),
                        hash.algo(),
                        hash.to_base16(),
                        sd.display(&path)
                    );
                    hashes.insert(id.clone(), Hash::digest(HashAlgo::Sha256, s));
                }
                return Ok(DrvHash {
                    hashes,
                    kind: DrvHashKind::Regular,
                });
            }
            DerivationType::Impure => {
                let h = Hash::digest(HashAlgo::Sha256, "impure");
                return Ok(DrvHash {
                    hashes: self
                        .outputs
                        .keys()
                        .map(|k| (k.clone(), h.clone()))
                        .collect(),
                    kind: DrvHashKind::Deferred,
                });
            }
            DerivationType::ContentAddressed { fixed: false } => DrvHashKind::Deferred,
            DerivationType::InputAddressed { .. } => DrvHashKind::Regular,
        };
        let (inputs, kind) = self.modulo_inputs(sd, kind, &mut input)?;
        let h = Hash::digest(
            HashAlgo::Sha256,
            self.unparse(sd, mask_outputs, Some(&inputs)),
        );
        Ok(DrvHash {
            hashes: self
                .outputs
                .keys()
                .map(|k| (k.clone(), h.clone()))
                .collect(),
            kind,
        })
    }

    /// The input derivations as the hash modulo writes them (base16 of each input's hash
    /// modulo → the output names used), and the kind of hash (deferred if any input is).
    fn modulo_inputs<E: From<DrvError>>(
        &self,
        sd: &StoreDir,
        mut kind: DrvHashKind,
        input: &mut impl FnMut(&StorePath) -> Result<DrvHash, E>,
    ) -> Result<(BTreeMap<String, BTreeSet<String>>, DrvHashKind), E> {
        let mut inputs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (d, outs) in &self.input_drvs {
            let res = input(d)?;
            if res.kind == DrvHashKind::Deferred {
                kind = DrvHashKind::Deferred;
            }
            for out in outs {
                let h = res
                    .hashes
                    .get(out)
                    .ok_or_else(|| DrvError::MissingInputOutput {
                        drv: sd.display(d),
                        output: out.clone(),
                    })?;
                inputs.entry(h.to_base16()).or_default().insert(out.clone());
            }
        }
        Ok((inputs, kind))
    }

    /// The ATerm text of the `.drv` file and the (unmasked) hash modulo (what
    /// [`DrvHashes::instantiate`] gives in one pass for input-addressed derivations).
    pub fn aterm_and_hash_modulo<E: From<DrvError>>(
        &self,
        sd: &StoreDir,
        input: impl FnMut(&StorePath) -> Result<DrvHash, E>,
    ) -> Result<(String, DrvHash), E> {
        let h = self.hash_derivation_modulo(sd, false, input)?;
        Ok((self.to_aterm(sd), h))
    }

    /// [`Derivation::hash_derivation_modulo`] for the common case where each input derivation
    /// has one hash for all its outputs (true of every derivation without experimental
    /// features); gives this derivation's hash (for a fixed-output one, that of `out`).
    pub fn hash_modulo(
        &self,
        sd: &StoreDir,
        mask_outputs: bool,
        mut input_hash: impl FnMut(&StorePath) -> Result<Hash, DrvError>,
    ) -> Result<Hash, DrvError> {
        let res = self.hash_derivation_modulo(sd, mask_outputs, |p| {
            let h = input_hash(p)?;
            let outs = self.input_drvs.get(p).into_iter().flatten();
            Ok::<_, DrvError>(DrvHash {
                hashes: outs.map(|o| (o.clone(), h.clone())).collect(),
                kind: DrvHashKind::Regular,
            })
        })?;
        res.hashes
            .get("out")
            .or_else(|| res.hashes.values().next())
            .cloned()
            .ok_or_else(|| DrvError::Invalid("must have at least one output".into()))
    }

    /// Fill in the output paths (and their environment variables) from `drv_hash`, the hash
    /// modulo computed with masked outputs; fixed outputs get their content-addressed path and
    /// do not need the hash.
    pub fn fill_output_paths(&mut self, sd: &StoreDir, drv_hash: &Hash) -> Result<(), DrvError> {
        if self.is_fixed_output() {
            return self.fill_fixed_output_path(sd);
        }
        let ids: Vec<String> = self.outputs.keys().cloned().collect();
        for id in ids {
            let path = sd.make_output_path(&id, drv_hash, &self.name)?;
            self.env.insert(id.clone(), sd.display(&path));
            self.outputs
                .insert(id, DerivationOutput::input_addressed(path));
        }
        Ok(())
    }

    /// Set the path (and environment variable) of each fixed output from its hash.
    fn fill_fixed_output_path(&mut self, sd: &StoreDir) -> Result<(), DrvError> {
        let ids: Vec<String> = self.outputs.keys().cloned().collect();
        for id in ids {
            let (method, h) = self.outputs[&id].fixed().ok_or_else(|| {
                DrvError::Invalid(format!("fixed output '{id}' has no valid hash"))
            })?;
            let path = self.fixed_path(sd, &id, method, &h)?;
            self.env.insert(id.clone(), sd.display(&path));
            if let Some(o) = self.outputs.get_mut(&id) {
                o.path = Some(path);
            }
        }
        Ok(())
    }

    /// Compute the outputs of a freshly made derivation the way `derivation` does in CppNix:
    /// a fixed output gets its content-addressed path; floating and impure outputs get a
    /// [`hash_placeholder`] in the environment; otherwise every output is blanked, the masked
    /// hash modulo taken (with `input` giving each input derivation's hash modulo), and the
    /// output paths made from it (left deferred if an input is deferred).
    pub fn compute_output_paths<E: From<DrvError>>(
        &mut self,
        sd: &StoreDir,
        input: impl FnMut(&StorePath) -> Result<DrvHash, E>,
    ) -> Result<(), E> {
        match self.derivation_type()? {
            DerivationType::ContentAddressed { fixed: true } => self.fill_fixed_output_path(sd)?,
            DerivationType::ContentAddressed { fixed: false } | DerivationType::Impure => {
                for id in self.outputs.keys() {
                    self.env.insert(id.clone(), hash_placeholder(id));
                }
            }
            DerivationType::InputAddressed { .. } => {
                for (id, o) in self.outputs.iter_mut() {
                    *o = DerivationOutput::deferred();
                    self.env.insert(id.clone(), String::new());
                }
                let res = self.hash_derivation_modulo(sd, true, input)?;
                if res.kind == DrvHashKind::Regular {
                    for (id, h) in &res.hashes {
                        let p = sd
                            .make_output_path(id, h, &self.name)
                            .map_err(DrvError::from)?;
                        self.env.insert(id.clone(), sd.display(&p));
                        self.outputs
                            .insert(id.clone(), DerivationOutput::input_addressed(p));
                    }
                }
            }
        }
        Ok(())
    }

    /// The store path of the `.drv` file itself: a text path named `<name>.drv` over the ATerm,
    /// referring to the input sources and input derivations.
    pub fn drv_path(&self, sd: &StoreDir) -> Result<StorePath, StorePathError> {
        let text = self.to_aterm(sd);
        let h = Hash::digest(HashAlgo::Sha256, text.as_bytes());
        sd.make_text_path(&format!("{}.drv", self.name), &h, &self.references())
    }
}

/// The hash modulo of an input derivation, from `memo` (where [`DrvHashes::ensure`] put it).
fn known<'m, E: From<DrvError>>(
    memo: &'m HashMap<StorePath, DrvHash, foldhash::fast::RandomState>,
    sd: &'m StoreDir,
) -> impl FnMut(&StorePath) -> Result<DrvHash, E> + 'm {
    move |i| {
        memo.get(i).cloned().ok_or_else(|| {
            E::from(DrvError::Invalid(format!(
                "no hash for input '{}'",
                sd.display(i)
            )))
        })
    }
}

/// Memoised hashes modulo of derivations by path (unmasked, as inputs use them).
#[derive(Clone, Debug, Default)]
pub struct DrvHashes {
    memo: HashMap<StorePath, DrvHash, foldhash::fast::RandomState>,
}

impl DrvHashes {
    pub fn new() -> DrvHashes {
        DrvHashes::default()
    }

    /// A hash already known.
    pub fn get(&self, drv: &StorePath) -> Option<&DrvHash> {
        self.memo.get(drv)
    }

    /// Record a hash computed elsewhere.
    pub fn insert(&mut self, drv: StorePath, hash: DrvHash) {
        self.memo.insert(drv, hash);
    }

    /// Make sure the hashes of `drvs` and of everything they depend on are known, reading
    /// derivations with `load`. Works with an explicit stack, so deep chains do not overflow.
    pub fn ensure<'a, E: From<DrvError>>(
        &mut self,
        sd: &StoreDir,
        drvs: impl IntoIterator<Item = &'a StorePath>,
        load: &mut impl FnMut(&StorePath) -> Result<Derivation, E>,
    ) -> Result<(), E> {
        for root in drvs {
            if self.memo.contains_key(root) {
                continue;
            }
            let mut stack = vec![(root.clone(), load(root)?)];
            let mut active: HashSet<StorePath> = HashSet::from([root.clone()]);
            while let Some((_, d)) = stack.last() {
                let next = d
                    .input_drvs
                    .keys()
                    .find(|i| !self.memo.contains_key(*i))
                    .cloned();
                match next {
                    Some(i) => {
                        if !active.insert(i.clone()) {
                            return Err(DrvError::Cycle(sd.display(&i)).into());
                        }
                        let di = load(&i)?;
                        stack.push((i, di));
                    }
                    None => {
                        let Some((p, d)) = stack.pop() else { break };
                        let memo = &self.memo;
                        let h = d.hash_derivation_modulo(sd, false, known(memo, sd))?;
                        active.remove(&p);
                        self.memo.insert(p, h);
                    }
                }
            }
        }
        Ok(())
    }

    /// The hash modulo of the derivation at `drv`, computing and remembering what is missing.
    pub fn of_path<E: From<DrvError>>(
        &mut self,
        sd: &StoreDir,
        drv: &StorePath,
        mut load: impl FnMut(&StorePath) -> Result<Derivation, E>,
    ) -> Result<DrvHash, E> {
        self.ensure(sd, [drv], &mut load)?;
        self.memo
            .get(drv)
            .cloned()
            .ok_or_else(|| DrvError::Invalid(format!("no hash for '{}'", sd.display(drv))).into())
    }

    /// The hash modulo of an in-memory derivation (its inputs read with `load` as needed).
    pub fn of_derivation<E: From<DrvError>>(
        &mut self,
        sd: &StoreDir,
        drv: &Derivation,
        mask_outputs: bool,
        mut load: impl FnMut(&StorePath) -> Result<Derivation, E>,
    ) -> Result<DrvHash, E> {
        self.ensure(sd, drv.input_drvs.keys(), &mut load)?;
        let memo = &self.memo;
        drv.hash_derivation_modulo(sd, mask_outputs, known(memo, sd))
    }

    /// [`Derivation::aterm_and_hash_modulo`] with the inputs' hashes from here (read with
    /// `load` as needed).
    pub fn aterm_and_hash<E: From<DrvError>>(
        &mut self,
        sd: &StoreDir,
        drv: &Derivation,
        mut load: impl FnMut(&StorePath) -> Result<Derivation, E>,
    ) -> Result<(String, DrvHash), E> {
        self.ensure(sd, drv.input_drvs.keys(), &mut load)?;
        let memo = &self.memo;
        drv.aterm_and_hash_modulo(sd, known(memo, sd))
    }

    /// What `derivationStrict` does with a freshly made derivation, in one go: fill in its
    /// output paths ([`Derivation::compute_output_paths`]) and give the `.drv` text and the
    /// derivation's (unmasked) hash modulo ([`Derivation::aterm_and_hash_modulo`]). For an
    /// input-addressed derivation the environment is written once, masked, and the output
    /// paths are put into that text afterwards; the three texts (masked for the output paths,
    /// the `.drv` file, unmasked for the hash modulo) share it.
    pub fn instantiate<E: From<DrvError>>(
        &mut self,
        sd: &StoreDir,
        drv: &mut Derivation,
        mut load: impl FnMut(&StorePath) -> Result<Derivation, E>,
    ) -> Result<(String, DrvHash), E> {
        self.ensure(sd, drv.input_drvs.keys(), &mut load)?;
        let memo = &self.memo;
        let mut input = known::<E>(memo, sd);
        if !matches!(
            drv.derivation_type()?,
            DerivationType::InputAddressed { .. }
        ) {
            drv.compute_output_paths(sd, &mut input)?;
            return drv.aterm_and_hash_modulo(sd, input);
        }
        for (id, o) in drv.outputs.iter_mut() {
            *o = DerivationOutput::deferred();
            drv.env.insert(id.clone(), String::new());
        }
        let (inputs, kind) = drv.modulo_inputs(sd, DrvHashKind::Regular, &mut input)?;
        if kind == DrvHashKind::Deferred {
            // Output paths wait for a build: nothing to share.
            drv.compute_output_paths(sd, &mut input)?;
            return drv.aterm_and_hash_modulo(sd, input);
        }
        let mut inputs_by_hash = String::with_capacity(inputs.len() * 80 + 4);
        drv.unparse_inputs(&mut inputs_by_hash, sd, Some(&inputs));
        let mut rest_masked = String::with_capacity(1024);
        let mut marks = Vec::new();
        drv.unparse_rest_marked(&mut rest_masked, sd, true, &mut marks);
        let mut head = String::with_capacity(256);
        drv.unparse_outputs(&mut head, sd, true);
        let mut hasher = crate::hash::Hasher::new(HashAlgo::Sha256);
        for part in [&head, &inputs_by_hash, &rest_masked] {
            hasher.update(part.as_bytes());
        }
        let masked = hasher.finish();
        let mut paths = BTreeMap::new();
        for id in drv.outputs.keys() {
            let p = sd
                .make_output_path(id, &masked, &drv.name)
                .map_err(DrvError::from)?;
            paths.insert(id.clone(), p);
        }
        let rest = super::aterm::splice_output_paths(&rest_masked, &marks, |id| {
            paths.get(id).map(|p| sd.display(p)).unwrap_or_default()
        });
        drop(marks);
        for (id, p) in paths {
            drv.env.insert(id.clone(), sd.display(&p));
            drv.outputs.insert(id, DerivationOutput::input_addressed(p));
        }
        head.clear();
        drv.unparse_outputs(&mut head, sd, false);
        let mut aterm = String::with_capacity(head.len() + rest.len() + 512);
        aterm.push_str(&head);
        drv.unparse_inputs(&mut aterm, sd, None);
        aterm.push_str(&rest);
        let mut hasher = crate::hash::Hasher::new(HashAlgo::Sha256);
        for part in [&head, &inputs_by_hash, &rest] {
            hasher.update(part.as_bytes());
        }
        let h = hasher.finish();
        let hashes = drv.outputs.keys().map(|k| (k.clone(), h.clone())).collect();
        Ok((aterm, DrvHash { hashes, kind }))
    }

    /// [`Derivation::compute_output_paths`] with the inputs' hashes from here (read with
    /// `load` as needed).
    pub fn compute_output_paths<E: From<DrvError>>(
        &mut self,
        sd: &StoreDir,
        drv: &mut Derivation,
        mut load: impl FnMut(&StorePath) -> Result<Derivation, E>,
    ) -> Result<(), E> {
        self.ensure(sd, drv.input_drvs.keys(), &mut load)?;
        let memo = &self.memo;
        drv.compute_output_paths(sd, known(memo, sd))
    }
}
