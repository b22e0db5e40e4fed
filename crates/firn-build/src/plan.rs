//! What a realisation has to do: the derivations whose wanted outputs are not valid (and, for
//! those, the derivations of their missing inputs), as a graph with edges from each build to
//! the builds it waits for; plus the store paths that are neither valid nor buildable.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use firn_format::derivation::Derivation;
use firn_format::StorePath;
use firn_store::realisations::{DrvOutput, Realisation};
use firn_store::LocalStore;

use crate::{BuildError, DerivedPath};

/// One derivation to build.
pub struct Node {
    pub drv_path: StorePath,
    pub drv: Derivation,
    /// Every output's path (for a floating content-addressed derivation, the scratch path it
    /// is built at, see [`crate::ca::scratch_path`]).
    pub outputs: BTreeMap<String, StorePath>,
    /// Builds this one waits for.
    pub deps: BTreeSet<usize>,
    /// Builds that wait for this one.
    pub dependents: BTreeSet<usize>,
    /// `--check` of a derivation asked for: built again and compared with its valid outputs
    /// (CppNix's `bmCheck`, which the derivations it waits for do not get).
    pub check: bool,
    /// It depends on derivations whose outputs are not known before they are built
    /// (`ca-derivations`): it is resolved then (see [`crate::ca::resolve`]) and the resolved
    /// derivation is built in its place (`outputs` is not used).
    pub resolve: bool,
    /// Listed in "these N derivations will be built" (CppNix's `queryMissing`): reached from
    /// what was asked for through derivations whose wanted outputs are not all valid. A
    /// derivation only checked is not, nor what only it waits for.
    pub announced: bool,
    /// Input sources that are neither valid nor substitutable: the build fails before it
    /// starts, as CppNix's, whose substitution goals for them fail ("N dependencies of
    /// derivation '…' failed to build"); they are not in [`Plan::missing`], as CppNix's
    /// `queryMissing` does not look at input sources.
    pub missing_srcs: BTreeSet<StorePath>,
}

/// The builds to run, in an order where every node comes after its dependencies.
#[derive(Default)]
pub struct Plan {
    pub nodes: Vec<Node>,
    /// Store paths that are needed but neither valid, nor buildable, nor substitutable.
    pub missing: BTreeSet<StorePath>,
    /// Paths to fetch from substituters (whole closures, minus what is valid) before building.
    pub substitutions: BTreeSet<StorePath>,
    /// Derivations to check (`--check`) whose wanted outputs are not all valid, so that
    /// checking is not possible: the realisation fails before building anything.
    pub uncheckable: Vec<StorePath>,
    /// With `ca-derivations`: derivations met whose outputs (known from the derivation) are
    /// valid, with those outputs. Running the plan records their realisations, as CppNix 2.8
    /// does for the goals it makes.
    pub realised: Vec<(Derivation, BTreeMap<String, StorePath>)>,
    /// With `ca-derivations`: realisations found in substituters for outputs not known
    /// locally, dependencies first; their output paths are among `substitutions`. Running the
    /// plan (after the substitutions are fetched) records them, as CppNix 2.8's
    /// `DrvOutputSubstitutionGoal` does.
    pub substituted_realisations: Vec<Realisation>,
}

/// The planner's view of the substituters.
pub trait Substitutable {
    /// If every one of `paths` (none valid here) can be fetched with its closure, the paths
    /// that fetching takes (the closures minus valid paths); otherwise `None`.
    fn closure(
        &self,
        store: &LocalStore,
        paths: &BTreeSet<StorePath>,
    ) -> Result<Option<BTreeSet<StorePath>>, BuildError>;

    /// A substituter's (trusted) realisation of `id` (`ca-derivations`), if one has it.
    fn realisation(
        &self,
        _store: &LocalStore,
        _id: &DrvOutput,
    ) -> Result<Option<Realisation>, BuildError> {
        Ok(None)
    }
}

/// Read and parse a `.drv` file from the store.
pub fn read_derivation(store: &LocalStore, drv_path: &StorePath) -> Result<Derivation, BuildError> {
    let sd = store.store_dir();
    if !store.is_valid_path(drv_path)? {
        return Err(BuildError::Other(format!(
            "path '{}' is not valid",
            sd.display(drv_path)
        )));
    }
    let real = store.real_path(drv_path);
    let text = std::fs::read_to_string(&real)
        .map_err(|e| BuildError::io("reading derivation", &real, e))?;
    let name = drv_path.name().trim_end_matches(".drv");
    let drv = Derivation::parse(sd, &text, name).map_err(|e| {
        BuildError::Other(format!(
            "error parsing derivation '{}': {e}",
            sd.display(drv_path)
        ))
    })?;
    // As CppNix, a derivation with impure outputs is not even read without the feature.
    if !store.impure_derivations() && crate::ca::is_impure(&drv) {
        return Err(BuildError::Other(
            "experimental Nix feature 'impure-derivations' is disabled; use '--extra-experimental-features impure-derivations' to override".into(),
        ));
    }
    Ok(drv)
}

/// The output paths of a derivation; every output must have a known path: from the
/// derivation, or (`ca-derivations`) from a realisation.
pub fn output_paths(
    drv_path: &StorePath,
    drv: &Derivation,
    store: &LocalStore,
) -> Result<BTreeMap<String, StorePath>, BuildError> {
    let mut out = BTreeMap::new();
    for (name, p) in crate::ca::output_map(store, drv)? {
        match p {
            Some(p) => {
                out.insert(name, p);
            }
            None if !store.ca_derivations() => return Err(crate::ca::feature_disabled()),
            None => {
                return Err(BuildError::Other(format!(
                    "output '{name}' of derivation '{}' has no store path mapped to it",
                    store.store_dir().display(drv_path)
                )))
            }
        }
    }
    Ok(out)
}

struct Planner<'a> {
    store: &'a LocalStore,
    subst: Option<&'a dyn Substitutable>,
    check: bool,
    plan: Plan,
    index: HashMap<StorePath, usize>,
    visiting: BTreeSet<StorePath>,
}

impl Planner<'_> {
    /// The node for `drv_path` if any of `wanted` (None: all) must be built.
    fn visit(
        &mut self,
        drv_path: &StorePath,
        wanted: Option<&BTreeSet<String>>,
        top: bool,
    ) -> Result<Option<usize>, BuildError> {
        if let Some(&i) = self.index.get(drv_path) {
            if self.check && top {
                // Asked for, and met before as an input: checked all the same (CppNix makes
                // the goals of what was asked for first).
                self.plan.nodes[i].check = true;
                let outputs = self.plan.nodes[i].outputs.clone();
                if !self.all_valid(&outputs, wanted)? {
                    self.plan.uncheckable.push(drv_path.clone());
                }
            }
            return Ok(Some(i));
        }
        let drv = read_derivation(self.store, drv_path)?;
        self.visit_derivation(drv_path, drv, wanted, top)
    }

    /// Whether the `wanted` outputs (None: all) among `outputs` are valid.
    fn all_valid(
        &self,
        outputs: &BTreeMap<String, StorePath>,
        wanted: Option<&BTreeSet<String>>,
    ) -> Result<bool, BuildError> {
        for (name, p) in outputs {
            if wanted.is_some_and(|w| !w.contains(name)) {
                continue;
            }
            if !self.store.is_valid_path(p)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// [`Planner::visit`] for a derivation already in hand (read from the store, or given).
    fn visit_derivation(
        &mut self,
        drv_path: &StorePath,
        drv: Derivation,
        wanted: Option<&BTreeSet<String>>,
        top: bool,
    ) -> Result<Option<usize>, BuildError> {
        if let Some(&i) = self.index.get(drv_path) {
            return Ok(Some(i));
        }
        if !self.visiting.insert(drv_path.clone()) {
            return Err(BuildError::Other(format!(
                "derivation '{}' depends on itself",
                self.store.store_dir().display(drv_path)
            )));
        }
        let feature = self.store.ca_derivations();
        let known = crate::ca::has_known_paths(&drv)?;
        if !known && !feature {
            return Err(crate::ca::feature_disabled());
        }
        let partial = crate::ca::output_map(self.store, &drv)?;
        if let Some(w) = wanted {
            for name in w {
                if !partial.contains_key(name) {
                    return Err(BuildError::Other(format!(
                        "derivation '{}' does not have wanted outputs '{name}'",
                        self.store.store_dir().display(drv_path)
                    )));
                }
            }
        }
        let mut invalid = BTreeSet::new();
        let mut unknown = false;
        let mut valid = BTreeMap::new();
        for (name, p) in &partial {
            let Some(p) = p else {
                unknown |= wanted.is_none_or(|w| w.contains(name));
                continue;
            };
            if self.store.is_valid_path(p)? {
                valid.insert(name.clone(), p.clone());
            } else if wanted.is_none_or(|w| w.contains(name)) {
                invalid.insert(p.clone());
            }
        }
        // As CppNix 2.8 with the feature on: outputs found valid get their realisations
        // (when the plan runs).
        if feature && known && !valid.is_empty() {
            self.plan.realised.push((drv.clone(), valid));
        }
        let resolve = crate::ca::needs_resolution(&drv, feature)?;
        let outputs: BTreeMap<String, StorePath> = if !known {
            if (crate::ca::is_floating(&drv) || crate::ca::is_impure(&drv)) && !resolve {
                let sd = self.store.store_dir();
                drv.outputs
                    .keys()
                    .map(|o| {
                        Ok((
                            o.clone(),
                            crate::ca::scratch_path(sd, drv_path, &drv.name, o)?,
                        ))
                    })
                    .collect::<Result<_, BuildError>>()?
            } else {
                BTreeMap::new()
            }
        } else {
            partial
                .iter()
                .filter_map(|(n, p)| p.clone().map(|p| (n.clone(), p)))
                .collect()
        };
        let needed = !invalid.is_empty() || unknown;
        let check = self.check && top;
        if check && needed {
            self.plan.uncheckable.push(drv_path.clone());
        }
        if !needed && !check {
            self.visiting.remove(drv_path);
            return Ok(None);
        }
        // Outputs a cache has need no build (nor the inputs' builds), unless the derivation
        // says `allowSubstitutes = false` or this is `--check`. Outputs whose paths are not
        // known (`ca-derivations`) are substituted when a cache has their realisations.
        // Impure derivations are always built.
        let allow =
            drv.env.get("allowSubstitutes").is_none_or(|v| v == "1") && !crate::ca::is_impure(&drv);
        if needed && allow && !check {
            let mut fetch_paths = invalid.clone();
            let mut found = Some(Vec::new());
            if unknown {
                found = self.substitutable_realisations(&drv, &partial, wanted)?;
                for r in found.iter().flatten() {
                    if !self.store.is_valid_path(&r.out_path)? {
                        fetch_paths.insert(r.out_path.clone());
                    }
                }
            }
            if let Some(realisations) = found {
                let fetch = if fetch_paths.is_empty() {
                    Some(BTreeSet::new())
                } else {
                    self.substitutable(&fetch_paths)?
                };
                if let Some(fetch) = fetch {
                    self.plan.substitutions.extend(fetch);
                    for r in realisations {
                        if !self
                            .plan
                            .substituted_realisations
                            .iter()
                            .any(|x| x.id == r.id)
                        {
                            self.plan.substituted_realisations.push(r);
                        }
                    }
                    self.visiting.remove(drv_path);
                    return Ok(None);
                }
            }
        }
        let mut deps = BTreeSet::new();
        for (input, outs) in &drv.input_drvs {
            if let Some(i) = self.visit(input, Some(outs), false)? {
                deps.insert(i);
            }
        }
        let mut missing_srcs = BTreeSet::new();
        for src in &drv.input_srcs {
            if !self.obtainable(src)? {
                missing_srcs.insert(src.clone());
            }
        }
        let i = self.plan.nodes.len();
        for &d in &deps {
            self.plan.nodes[d].dependents.insert(i);
        }
        self.plan.nodes.push(Node {
            drv_path: drv_path.clone(),
            drv,
            outputs,
            deps,
            dependents: BTreeSet::new(),
            check,
            resolve,
            // Only checked: all wanted outputs are valid (see `announce`).
            announced: needed,
            missing_srcs,
        });
        self.index.insert(drv_path.clone(), i);
        self.visiting.remove(drv_path);
        Ok(Some(i))
    }

    /// Settle [`Node::announced`]: what was asked for (`tops`) and, through each node that is
    /// announced, what it waits for. Dependencies come before their dependents in the plan,
    /// so one pass from the end does.
    fn announce(&mut self, tops: &BTreeSet<usize>) {
        let nodes = &mut self.plan.nodes;
        let mut reached: Vec<bool> = (0..nodes.len()).map(|i| tops.contains(&i)).collect();
        for i in (0..nodes.len()).rev() {
            let n = &mut nodes[i];
            n.announced = reached[i] && (!n.check || n.announced);
            if n.announced {
                for &d in &n.deps {
                    reached[d] = true;
                }
            }
        }
    }

    /// The realisations (with the ones they depend on, dependencies first) that substituters
    /// have for the wanted outputs (None: all) of `drv` whose paths are not known here; `None`
    /// unless every one is found. As CppNix's `DrvOutputSubstitutionGoal`, a realisation that
    /// depends on an output realised here at another path is not taken.
    fn substitutable_realisations(
        &self,
        drv: &Derivation,
        partial: &BTreeMap<String, Option<StorePath>>,
        wanted: Option<&BTreeSet<String>>,
    ) -> Result<Option<Vec<Realisation>>, BuildError> {
        let Some(subst) = self.subst else {
            return Ok(None);
        };
        if !self.store.ca_derivations() {
            return Ok(None);
        }
        let hashes = crate::ca::static_hashes(self.store, drv)?;
        let mut out: Vec<Realisation> = Vec::new();
        for (name, p) in partial {
            if p.is_some() || wanted.is_some_and(|w| !w.contains(name)) {
                continue;
            }
            let Some(h) = hashes.get(name) else {
                return Ok(None);
            };
            let id = DrvOutput {
                drv_hash: h.clone(),
                output: name.clone(),
            };
            // Depth first through the dependent realisations, each after what it depends on.
            let mut stack: Vec<(DrvOutput, Option<Realisation>)> = vec![(id, None)];
            let mut fetched: BTreeSet<DrvOutput> = BTreeSet::new();
            while let Some((id, r)) = stack.pop() {
                if let Some(r) = r {
                    out.push(r);
                    continue;
                }
                if out.iter().any(|x| x.id == id) || !fetched.insert(id.clone()) {
                    continue;
                }
                let Some(r) = subst.realisation(self.store, &id)? else {
                    return Ok(None);
                };
                stack.push((id.clone(), Some(r.clone())));
                for (dep, dep_path) in &r.dependent {
                    if *dep == id {
                        continue;
                    }
                    match self.store.query_realisation(dep)? {
                        Some(local) if &local.out_path != dep_path => {
                            tracing::warn!(
                                "substituter has an incompatible realisation for '{dep}', ignoring"
                            );
                            return Ok(None);
                        }
                        Some(_) => {}
                        None => stack.push((dep.clone(), None)),
                    }
                }
            }
        }
        Ok(Some(out))
    }

    fn substitutable(
        &self,
        paths: &BTreeSet<StorePath>,
    ) -> Result<Option<BTreeSet<StorePath>>, BuildError> {
        match self.subst {
            Some(s) => s.closure(self.store, paths),
            None => Ok(None),
        }
    }

    /// A path that must be valid: fine if it is, fetched if a cache has it, else missing.
    fn need_path(&mut self, p: &StorePath) -> Result<(), BuildError> {
        if !self.obtainable(p)? {
            self.plan.missing.insert(p.clone());
        }
        Ok(())
    }

    /// Whether `p` is valid or can be substituted (then it, with what it needs, is planned
    /// to be).
    fn obtainable(&mut self, p: &StorePath) -> Result<bool, BuildError> {
        if self.store.is_valid_path(p)? || self.plan.substitutions.contains(p) {
            return Ok(true);
        }
        match self.substitutable(&BTreeSet::from([p.clone()]))? {
            Some(fetch) => {
                self.plan.substitutions.extend(fetch);
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

/// Work out what realising `wanted` takes. With `check`, the requested derivations are built
/// again even when their outputs are valid. With `subst`, what caches have is fetched rather
/// than built.
pub fn plan(
    store: &LocalStore,
    wanted: &[DerivedPath],
    check: bool,
    subst: Option<&dyn Substitutable>,
) -> Result<Plan, BuildError> {
    let mut p = Planner {
        store,
        subst,
        check,
        plan: Plan::default(),
        index: HashMap::new(),
        visiting: BTreeSet::new(),
    };
    let mut tops = BTreeSet::new();
    for w in wanted {
        match w {
            DerivedPath::Opaque(path) => p.need_path(path)?,
            DerivedPath::Built { drv, outputs } => {
                // A derivation that is not there and cannot be fetched is missing, as a path.
                if !store.is_valid_path(drv)? {
                    p.need_path(drv)?;
                    if p.plan.missing.contains(drv) {
                        continue;
                    }
                }
                tops.extend(p.visit(drv, outputs.as_ref(), true)?);
            }
        }
    }
    p.announce(&tops);
    Ok(p.plan)
}

/// Work out what building all outputs of `drv` takes, the derivation given in memory under
/// `drv_path`, whose `.drv` file need not be in the store (a derivation a client sent over the
/// wire: CppNix's `buildDerivation`). Its input derivations, if any, are read from the store as
/// in [`plan`]; its input sources must be valid, substitutable, or end up in `missing`.
pub fn plan_derivation(
    store: &LocalStore,
    drv_path: &StorePath,
    drv: Derivation,
    subst: Option<&dyn Substitutable>,
) -> Result<Plan, BuildError> {
    let mut p = Planner {
        store,
        subst,
        check: false,
        plan: Plan::default(),
        index: HashMap::new(),
        visiting: BTreeSet::new(),
    };
    let top = p.visit_derivation(drv_path, drv, None, true)?;
    p.announce(&top.into_iter().collect());
    // A remote build is refused as a whole when an input is missing (the client sends them
    // first).
    let srcs: Vec<StorePath> = p
        .plan
        .nodes
        .iter()
        .flat_map(|n| n.missing_srcs.iter().cloned())
        .collect();
    p.plan.missing.extend(srcs);
    Ok(p.plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use firn_format::DerivationOutput;

    #[test]
    fn a_given_derivation_is_planned_without_its_drv_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(firn_store::LocalStoreConfig {
            root: Some(dir.path().to_path_buf()),
            ..Default::default()
        })
        .unwrap();
        let sd = store.store_dir().clone();
        let src = store.add_text("src", b"src", &BTreeSet::new()).unwrap();
        let gone = sd
            .parse("/nix/store/11111111111111111111111111111111-gone")
            .unwrap();
        let out = sd
            .parse("/nix/store/22222222222222222222222222222222-x")
            .unwrap();
        let drv_path = sd
            .parse("/nix/store/33333333333333333333333333333333-x.drv")
            .unwrap();
        let mut drv = Derivation {
            name: "x".into(),
            outputs: [("out".into(), DerivationOutput::input_addressed(out))].into(),
            input_srcs: [src.clone(), gone.clone()].into(),
            ..Default::default()
        };
        let plan = plan_derivation(&store, &drv_path, drv.clone(), None).unwrap();
        assert_eq!(plan.nodes.len(), 1);
        assert_eq!(plan.nodes[0].drv_path, drv_path);
        assert_eq!(plan.nodes[0].drv, drv);
        assert_eq!(plan.nodes[0].missing_srcs, BTreeSet::from([gone.clone()]));
        assert_eq!(plan.missing, BTreeSet::from([gone]));
        // Outputs that are valid already: nothing to build.
        drv.outputs
            .insert("out".into(), DerivationOutput::input_addressed(src));
        let plan = plan_derivation(&store, &drv_path, drv, None).unwrap();
        assert!(plan.nodes.is_empty());
    }
}
