//! Hashes and paths of derivations: CppNix's `hashDerivationModulo`, the output paths of a
//! derivation computed from it, and the store path of the `.drv` file.
//!
//! The hash modulo of an input-addressed derivation is the SHA-256 of its ATerm with every
//! input derivation path replaced by the base16 of that input's own hash modulo; a fixed-output
//! derivation's hash is that of `fixed:out:<[r:]algo>:<base16 hash>:<output path>`, so that
//! changing how a fixed output is fetched does not change anything that depends on it.
//! Reading input derivations is IO, so callers supply them; [`DrvHashes`] memoises.

use std::collections::{hash_map, BTreeSet, HashMap, HashSet};

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
    placeholder_text(&downstream_placeholder_hash(drv_path, drv_name, output))
}

/// The hash [`downstream_placeholder`] writes (in nix32, after a `/`).
pub fn downstream_placeholder_hash(drv_path: &StorePath, drv_name: &str, output: &str) -> Hash {
    let clear = format!(
        "nix-upstream-output:{}:{}",
        drv_path.hash_part(),
        output_path_name(drv_name, output)
    );
    Hash::digest(HashAlgo::Sha256, clear)
}

/// The hash of the placeholder that stands for output `output` of a derivation which is not
/// known yet because it is itself the output of a build (a dynamic derivation), given the hash
/// of that derivation's own placeholder (`drv_placeholder`: a [`downstream_placeholder_hash`],
/// or one of these for a deeper nesting): the SHA-256 of `nix-computed-output:<nix32 of
/// drv_placeholder XOR-folded to 20 bytes>:<output>`.
pub fn computed_output_placeholder_hash(drv_placeholder: &Hash, output: &str) -> Hash {
    let folded = crate::nixbase32::encode(&drv_placeholder.fold_into::<20>());
    Hash::digest(
        HashAlgo::Sha256,
        format!("nix-computed-output:{folded}:{output}"),
    )
}

/// A placeholder as it is written in strings: `/` and the hash in nix32.
pub fn placeholder_text(h: &Hash) -> String {
    format!("/{}", h.to_nix32())
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

    /// The input derivations as the hash modulo writes them (each input's hash modulo with
    /// the output names used), and the kind of hash (deferred if any input is).
    fn modulo_inputs<'a, E: From<DrvError>>(
        &'a self,
        sd: &StoreDir,
        mut kind: DrvHashKind,
        input: &mut impl FnMut(&StorePath) -> Result<DrvHash, E>,
    ) -> Result<(ModuloInputs<'a>, DrvHashKind), E> {
        let mut inputs = ModuloInputs::with_capacity(self.input_drvs.len());
        for (d, outs) in &self.input_drvs {
            let res = input(d)?;
            if res.kind == DrvHashKind::Deferred {
                kind = DrvHashKind::Deferred;
            }
            inputs.add(sd, d, outs, &res.hashes)?;
        }
        inputs.finish();
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
        sd.make_text_path(&format!("{}.drv", self.name), &h, self.sorted_references())
    }
}

/// The input derivations as the hash modulo writes them: instead of its path, each input
/// gives the base16 of its own hash modulo, with the outputs used. Kept as the hashes and
/// (hash, output) pairs, sorted as the text is (bytes sort as their base16 does) and grouped
/// when written: two inputs may have the same hash (fixed outputs with the same contents),
/// and their outputs are then merged, as in CppNix's map from hash to outputs. No text is
/// made for the hashes until they are written.
pub(crate) struct ModuloInputs<'a> {
    hashes: Vec<Hash>,
    /// The first eight bytes of the hash (which nearly always tell two apart, in a register),
    /// its place in `hashes`, and an output name.
    pairs: Vec<(u64, u32, &'a str)>,
}

impl<'a> ModuloInputs<'a> {
    fn with_capacity(inputs: usize) -> Self {
        ModuloInputs {
            hashes: Vec::with_capacity(inputs),
            pairs: Vec::with_capacity(inputs),
        }
    }

    /// The outputs `outs` of input `d`, whose hashes are `hashes`.
    fn add(
        &mut self,
        sd: &StoreDir,
        d: &StorePath,
        outs: &'a BTreeSet<String>,
        hashes: &OutputHashes,
    ) -> Result<(), DrvError> {
        for out in outs {
            let h = hashes
                .get(out)
                .ok_or_else(|| DrvError::MissingInputOutput {
                    drv: sd.display(d),
                    output: out.clone(),
                })?;
            // An input's outputs mostly share one hash: kept once.
            if self.hashes.last() != Some(h) {
                self.hashes.push(h.clone());
            }
            let i = u32::try_from(self.hashes.len() - 1).expect("fewer than 2^32 inputs");
            let mut prefix = [0u8; 8];
            let n = h.as_bytes().len().min(8);
            prefix[..n].copy_from_slice(&h.as_bytes()[..n]);
            self.pairs
                .push((u64::from_be_bytes(prefix), i, out.as_str()));
        }
        Ok(())
    }

    /// Sort and drop repeats, once all inputs are in.
    fn finish(&mut self) {
        let hashes = &self.hashes;
        let bytes = |i: u32| hashes[i as usize].as_bytes();
        let order = |a: &(u64, u32, &str), b: &(u64, u32, &str)| {
            a.0.cmp(&b.0)
                .then_with(|| bytes(a.1).cmp(bytes(b.1)))
                .then_with(|| a.2.cmp(b.2))
        };
        self.pairs.sort_unstable_by(order);
        self.pairs.dedup_by(|a, b| order(a, b).is_eq());
    }

    /// Each hash with its outputs (in order).
    pub(crate) fn groups(
        &self,
    ) -> impl Iterator<Item = (&Hash, impl Iterator<Item = &'a str> + '_)> {
        let hash = |i: u32| &self.hashes[i as usize];
        self.pairs
            .chunk_by(move |a, b| hash(a.1) == hash(b.1))
            .map(move |g| (hash(g[0].1), g.iter().map(|(_, _, o)| *o)))
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

/// What [`DrvHashes::instantiate_hashed`] gives of a derivation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instantiated {
    /// The ATerm text of the `.drv` file.
    pub text: String,
    /// The (unmasked) hash modulo.
    pub hash: DrvHash,
    /// The SHA-256 of `text`, if it was asked for.
    pub text_hash: Option<Hash>,
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

    /// Record a hash computed elsewhere unless one is known (a derivation made again has the
    /// same hash): one look-up.
    pub fn insert_new(&mut self, drv: &StorePath, hash: DrvHash) {
        if let hash_map::Entry::Vacant(e) = self.memo.entry(drv.clone()) {
            e.insert(hash);
        }
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
        load: impl FnMut(&StorePath) -> Result<Derivation, E>,
    ) -> Result<(String, DrvHash), E> {
        let made = self.instantiate_hashed(sd, drv, false, load)?;
        Ok((made.text, made.hash))
    }

    /// [`DrvHashes::instantiate`], also giving the SHA-256 of the `.drv` text when
    /// `text_hash` is asked for (what its store path is made from, when the store does not
    /// hash the text itself). The `.drv` text and the unmasked text of the hash modulo start
    /// with the same outputs, whose blocks are then hashed once for both.
    pub fn instantiate_hashed<E: From<DrvError>>(
        &mut self,
        sd: &StoreDir,
        drv: &mut Derivation,
        text_hash: bool,
        mut load: impl FnMut(&StorePath) -> Result<Derivation, E>,
    ) -> Result<Instantiated, E> {
        // The inputs' hashes, each looked up once (their derivations read first if need be).
        let found = loop {
            let found: Option<Vec<&DrvHash>> =
                drv.input_drvs.keys().map(|d| self.memo.get(d)).collect();
            match found {
                Some(found) => break found,
                None => self.ensure(sd, drv.input_drvs.keys(), &mut load)?,
            }
        };
        if !matches!(
            drv.derivation_type()?,
            DerivationType::InputAddressed { .. }
        ) || found.iter().any(|h| h.kind == DrvHashKind::Deferred)
        {
            // Not made from the hash modulo, or output paths wait for a build: nothing to
            // share.
            let (text, hash) = self.instantiate_other(sd, drv, load)?;
            let text_hash = text_hash.then(|| Hash::digest(HashAlgo::Sha256, text.as_bytes()));
            return Ok(Instantiated {
                text,
                hash,
                text_hash,
            });
        }
        for (id, o) in drv.outputs.iter_mut() {
            *o = DerivationOutput::deferred();
            match drv.env.get_mut(id) {
                Some(v) => v.clear(),
                None => {
                    drv.env.insert(id.clone(), String::new());
                }
            }
        }
        let drv_ro: &Derivation = drv;
        let mut inputs = ModuloInputs::with_capacity(drv_ro.input_drvs.len());
        for ((d, outs), h) in drv_ro.input_drvs.iter().zip(found) {
            inputs.add(sd, d, outs, &h.hashes)?;
        }
        inputs.finish();
        let mut inputs_by_hash = String::with_capacity(inputs.pairs.len() * 80 + 4);
        drv_ro.unparse_inputs(&mut inputs_by_hash, sd, Some(&inputs));
        let mut rest_masked = String::with_capacity(drv_ro.rest_len_hint(sd));
        let mut marks = Vec::with_capacity(drv_ro.outputs.len());
        drv_ro.unparse_rest_marked(&mut rest_masked, sd, true, &mut marks);
        let mut head = String::with_capacity(64 + 48 * drv_ro.outputs.len());
        drv_ro.unparse_outputs(&mut head, sd, true);
        let mut hasher = crate::hash::Hasher::new(HashAlgo::Sha256);
        for part in [&head, &inputs_by_hash, &rest_masked] {
            hasher.update(part.as_bytes());
        }
        let masked = hasher.finish();
        // In the order of the outputs.
        let mut paths = Vec::with_capacity(drv_ro.outputs.len());
        for id in drv_ro.outputs.keys() {
            let p = sd
                .make_output_path(id, &masked, &drv_ro.name)
                .map_err(DrvError::from)?;
            paths.push(p);
        }
        let path_of = |id: &str| {
            let i = drv_ro.outputs.keys().position(|o| o == id)?;
            paths.get(i)
        };

        // The `.drv` text: outputs, input derivations by path, and the rest with the paths
        // put in; the hash modulo is of the same text with the inputs by hash instead.
        let path_len = sd.as_str().len() + 1 + drv_ro.name.len() + 48;
        let inputs_len: usize = drv_ro
            .input_drvs
            .iter()
            .map(|(d, outs)| path_len + d.name().len() + 16 * outs.len())
            .sum();
        let mut aterm = String::with_capacity(
            head.len() + inputs_len + rest_masked.len() + 2 * marks.len() * path_len,
        );
        drv_ro.unparse_outputs_with(&mut aterm, sd, |id, _| path_of(id));
        let head_len = aterm.len();
        drv_ro.unparse_inputs(&mut aterm, sd, None);
        let rest_start = aterm.len();
        super::aterm::splice_output_paths(&mut aterm, &rest_masked, &marks, |out, id| {
            if let Some(p) = path_of(id) {
                sd.display_into(out, p);
            }
        });
        let mut hasher = crate::hash::Hasher::new(HashAlgo::Sha256);
        hasher.update(&aterm.as_bytes()[..head_len]);
        // The `.drv` text goes on from here with the inputs by path instead.
        let text_hasher = text_hash.then(|| hasher.clone());
        for part in [&inputs_by_hash, &aterm[rest_start..]] {
            hasher.update(part.as_bytes());
        }
        let h = hasher.finish();
        let text_hash = text_hasher.map(|mut t| {
            t.update(&aterm.as_bytes()[head_len..]);
            t.finish()
        });

        for ((id, o), p) in drv.outputs.iter_mut().zip(paths) {
            if let Some(v) = drv.env.get_mut(id) {
                *v = sd.display(&p);
            }
            o.path = Some(p);
        }
        let hashes = drv.outputs.keys().map(|k| (k.clone(), h.clone())).collect();
        Ok(Instantiated {
            text: aterm,
            hash: DrvHash {
                hashes,
                kind: DrvHashKind::Regular,
            },
            text_hash,
        })
    }

    /// [`DrvHashes::instantiate`] of a derivation whose text cannot be shared: fixed-output,
    /// floating, impure, or depending on a deferred one.
    fn instantiate_other<E: From<DrvError>>(
        &mut self,
        sd: &StoreDir,
        drv: &mut Derivation,
        mut load: impl FnMut(&StorePath) -> Result<Derivation, E>,
    ) -> Result<(String, DrvHash), E> {
        self.ensure(sd, drv.input_drvs.keys(), &mut load)?;
        let memo = &self.memo;
        let mut input = known::<E>(memo, sd);
        drv.compute_output_paths(sd, &mut input)?;
        drv.aterm_and_hash_modulo(sd, input)
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::store_path::FileIngestionMethod;

    fn drv(name: &str, builder: &str, outputs: &[(&str, DerivationOutput)]) -> Derivation {
        let mut d = Derivation {
            name: name.into(),
            platform: "x86_64-linux".into(),
            builder: builder.into(),
            ..Default::default()
        };
        for (id, o) in outputs {
            d.outputs.insert((*id).into(), o.clone());
            d.env.insert((*id).into(), String::new());
        }
        d.env.insert("name".into(), name.into());
        d
    }

    /// Placeholders for outputs of derivations that are not built yet, and for outputs of
    /// derivations that are themselves outputs (dynamic derivations). The expected values were
    /// computed by hand with a separate script (Python's `hashlib.sha256` and a direct
    /// transcription of nixbase32: characters `0-9a-z` without `e o u t`, the digest read as
    /// a little-endian bit string in 5-bit groups, last group first; and the XOR-fold of byte
    /// `i` into byte `i % 20`), from these clear texts:
    /// - `nix-upstream-output:g1w7hy3qg1w7hy3qg1w7hy3qg1w7hy3q:foo` (output `out` of
    ///   `foo.drv`: the output path name is the derivation name alone);
    /// - `nix-upstream-output:g1w7hy3qg1w7hy3qg1w7hy3qg1w7hy3q:foo.drv` (output `out` of
    ///   `foo.drv.drv`, a derivation that makes a derivation);
    /// - `nix-computed-output:jwhdxqah2znyzl0rvvl43b4fidlw05ij:out` (output `out` of what the
    ///   previous one stands for; the middle part is the nixbase32 of the previous digest
    ///   folded to 20 bytes);
    /// - `nix-computed-output:yf49xq5hqxgw1gn8ak6h4cqlcphmdskk:dev` (output `dev` one level
    ///   deeper).
    ///
    /// The first and third agree with the values in current Nix's own unit tests of these
    /// placeholders.
    #[test]
    fn placeholders_of_unbuilt_and_dynamic_outputs() {
        let sd = StoreDir::default();
        let foo = sd
            .parse("/nix/store/g1w7hy3qg1w7hy3qg1w7hy3qg1w7hy3q-foo.drv")
            .unwrap();
        assert_eq!(
            downstream_placeholder(&foo, "foo", "out"),
            "/0c6rn30q4frawknapgwq386zq358m8r6msvywcvc89n6m5p2dgbz"
        );
        let producer = sd
            .parse("/nix/store/g1w7hy3qg1w7hy3qg1w7hy3qg1w7hy3q-foo.drv.drv")
            .unwrap();
        let inner = downstream_placeholder_hash(&producer, "foo.drv", "out");
        assert_eq!(
            placeholder_text(&inner),
            "/0glc0ffbbgasr1xxp7lbjwhdxqah2znyzvlmvmsg84fl8c91p25r"
        );
        assert_eq!(
            crate::nixbase32::encode(&inner.fold_into::<20>()),
            "jwhdxqah2znyzl0rvvl43b4fidlw05ij"
        );
        let outer = computed_output_placeholder_hash(&inner, "out");
        assert_eq!(
            placeholder_text(&outer),
            "/0gn6agqxjyyalf0dpihgyf49xq5hqxgw100f0wydnj6yqrhqsb3w"
        );
        assert_eq!(
            placeholder_text(&computed_output_placeholder_hash(&outer, "dev")),
            "/1a8sbnd284f5s6q28l37rgvmj8rr7x0pgvz3xw8dz24yyxp2jqpa"
        );
    }

    /// Inputs sharing a hash are one group wherever they come, outputs in order and once;
    /// groups in the order of the base16 text.
    #[test]
    fn modulo_inputs_group_by_hash() {
        let sd = StoreDir::default();
        let d = drv("x", "/bin/sh", &[]);
        let h = |s: &str| Hash::digest(HashAlgo::Sha256, s);
        let one =
            |o: &str, s: &str| -> OutputHashes { [(o.to_string(), h(s))].into_iter().collect() };
        let set = |o: &[&str]| -> BTreeSet<String> { o.iter().map(|o| o.to_string()).collect() };
        let (out, dev, both) = (set(&["out"]), set(&["dev"]), set(&["dev", "out"]));
        let p = sd
            .parse("/nix/store/ffffffffffffffffffffffffffffffff-x.drv")
            .expect("a path");
        let mut inputs = ModuloInputs::with_capacity(4);
        inputs.add(&sd, &p, &out, &one("out", "a")).expect("add");
        inputs.add(&sd, &p, &dev, &one("dev", "b")).expect("add");
        let ab: OutputHashes = [("out".to_string(), h("a")), ("dev".to_string(), h("b"))]
            .into_iter()
            .collect();
        inputs.add(&sd, &p, &both, &ab).expect("add");
        inputs.add(&sd, &p, &dev, &one("dev", "a")).expect("add");
        inputs.finish();
        let mut text = String::new();
        d.unparse_inputs(&mut text, &sd, Some(&inputs));
        let mut want = [
            format!("(\"{}\",[\"dev\",\"out\"])", h("a").to_base16()),
            format!("(\"{}\",[\"dev\"])", h("b").to_base16()),
        ];
        want.sort();
        assert_eq!(text, format!("[{}],", want.join(",")));
        assert!(inputs.add(&sd, &p, &out, &one("dev", "a")).is_err());
    }

    /// The text hash given by `instantiate_hashed` (from the outputs hashed once for two
    /// texts) is that of the text, for input-addressed derivations with one output or
    /// several (outputs longer than a block) and for fixed-output ones (made apart); the
    /// rest is what `instantiate` gives.
    #[test]
    fn instantiate_hashed_gives_the_text_hash() {
        let sd = StoreDir::default();
        let empty = Hash::digest(HashAlgo::Sha256, b"");
        let fixed = DerivationOutput::fixed_output(FileIngestionMethod::Flat, &empty, None);
        let many: Vec<(String, DerivationOutput)> = (0..6)
            .map(|i| (format!("output{i}"), DerivationOutput::deferred()))
            .collect();
        let many: Vec<(&str, DerivationOutput)> =
            many.iter().map(|(o, d)| (o.as_str(), d.clone())).collect();
        let no_inputs =
            |_: &StorePath| -> Result<Derivation, DrvError> { unreachable!("no inputs") };
        for outs in [
            vec![("out", DerivationOutput::deferred())],
            many,
            vec![("out", fixed)],
        ] {
            let d = drv("x", "/bin/sh", &outs);
            let (mut a, mut b, mut c) = (d.clone(), d.clone(), d);
            let made = DrvHashes::new()
                .instantiate_hashed(&sd, &mut a, true, no_inputs)
                .expect("instantiating");
            let want = Hash::digest(HashAlgo::Sha256, made.text.as_bytes());
            assert_eq!(made.text_hash.as_ref(), Some(&want));
            let (text, hash) = DrvHashes::new()
                .instantiate(&sd, &mut b, no_inputs)
                .expect("instantiating");
            assert_eq!((&text, &hash), (&made.text, &made.hash));
            assert_eq!(a, b);
            let unhashed = DrvHashes::new()
                .instantiate_hashed(&sd, &mut c, false, no_inputs)
                .expect("instantiating");
            assert_eq!(unhashed.text_hash, None);
        }
    }

    /// Two inputs with one hash modulo (fixed outputs with the same name and contents, made
    /// differently) are one entry of the text hashed, with their outputs merged, as in
    /// CppNix's map from hash to outputs; the text and hashes made in one go agree with
    /// those made apart.
    #[test]
    fn inputs_with_one_hash_are_merged() {
        let sd = StoreDir::default();
        let empty = Hash::digest(HashAlgo::Sha256, b"");
        let fixed = DerivationOutput::fixed_output(FileIngestionMethod::Flat, &empty, None);
        let mut made: HashMap<StorePath, Derivation> = HashMap::new();
        let mut memo = DrvHashes::new();
        let mut paths = Vec::new();
        for (name, builder) in [("f", "/bin/sh"), ("f", "/bin/bash"), ("a", "/bin/sh")] {
            let outs = if name == "f" {
                vec![("out", fixed.clone())]
            } else {
                vec![
                    ("out", DerivationOutput::deferred()),
                    ("dev", DerivationOutput::deferred()),
                ]
            };
            let mut d = drv(name, builder, &outs);
            let (_, h) = memo
                .instantiate(&sd, &mut d, |_| -> Result<Derivation, DrvError> {
                    unreachable!("no inputs")
                })
                .expect("instantiating an input");
            let p = d.drv_path(&sd).expect("drv path");
            memo.insert(p.clone(), h);
            made.insert(p.clone(), d);
            paths.push(p);
        }
        let load = |p: &StorePath| {
            made.get(p)
                .cloned()
                .ok_or_else(|| DrvError::Invalid(format!("no {p}")))
        };
        let mut c = drv("c", "/bin/sh", &[("out", DerivationOutput::deferred())]);
        c.input_drvs.insert(paths[0].clone(), ["out".into()].into());
        c.input_drvs.insert(paths[1].clone(), ["out".into()].into());
        c.input_drvs
            .insert(paths[2].clone(), ["dev".into(), "out".into()].into());
        let mut apart = c.clone();

        let (aterm, h) = DrvHashes::new()
            .instantiate(&sd, &mut c, load)
            .expect("instantiating");
        DrvHashes::new()
            .compute_output_paths(&sd, &mut apart, load)
            .expect("output paths");
        assert_eq!(c, apart);
        assert_eq!(aterm, apart.to_aterm(&sd));
        let (aterm2, h2) = DrvHashes::new()
            .aterm_and_hash(&sd, &apart, load)
            .expect("text and hash");
        assert_eq!((&aterm2, &h2), (&aterm, &h));

        // The text hashed, made the way it was before: a map from base16 to output names.
        let mut by_hash: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (p, outs) in &c.input_drvs {
            let hp = memo.get(p).expect("input hash");
            for o in outs {
                let hex = hp.hashes.get(o).expect("output hash").to_base16();
                by_hash.entry(hex).or_default().insert(o.clone());
            }
        }
        assert_eq!(by_hash.len(), 2, "the two fixed inputs share a hash");
        let mut inputs = String::from("[");
        for (i, (hex, outs)) in by_hash.iter().enumerate() {
            if i > 0 {
                inputs.push(',');
            }
            let outs: Vec<String> = outs.iter().map(|o| format!("\"{o}\"")).collect();
            inputs.push_str(&format!("(\"{hex}\",[{}])", outs.join(",")));
        }
        inputs.push_str("],");
        let mut by_path = String::new();
        c.unparse_inputs(&mut by_path, &sd, None);
        let text = aterm.replacen(&by_path, &inputs, 1);
        assert_ne!(text, aterm);
        let want = Hash::digest(HashAlgo::Sha256, text);
        assert_eq!(h.hashes.get("out"), Some(&want));
    }
}
