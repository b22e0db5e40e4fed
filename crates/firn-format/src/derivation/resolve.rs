//! Resolving a derivation (`ca-derivations`): once the outputs of its input derivations are
//! built, a derivation that depends on floating content-addressed or deferred derivations is
//! replaced by one without input derivations. Their outputs become input sources, the
//! placeholders standing for them ([`downstream_placeholder`]) become the real paths, and
//! deferred outputs get their input-addressed paths from the hash of the result.

use std::collections::BTreeMap;

use super::modulo::downstream_placeholder;
use super::{Derivation, DerivationOutput, DrvError, DrvHash};
use crate::rewrite::rewrite_strings;
use crate::store_path::{StoreDir, StorePath};

impl Derivation {
    /// The resolved form of this derivation, given the path of every output of an input
    /// derivation that it uses (`(input .drv, output name)` → path). An error names the first
    /// input output that is missing.
    pub fn resolve(
        &self,
        sd: &StoreDir,
        input_outputs: &BTreeMap<(StorePath, String), StorePath>,
    ) -> Result<Derivation, DrvError> {
        let mut resolved = self.clone();
        resolved.input_drvs.clear();
        let mut rewrites = BTreeMap::new();
        for (input, outputs) in &self.input_drvs {
            let input_name = input.name().strip_suffix(".drv").unwrap_or(input.name());
            for output in outputs {
                let Some(actual) = input_outputs.get(&(input.clone(), output.clone())) else {
                    return Err(DrvError::MissingInputOutput {
                        drv: sd.display(input),
                        output: output.clone(),
                    });
                };
                rewrites.insert(
                    downstream_placeholder(input, input_name, output),
                    sd.display(actual),
                );
                resolved.input_srcs.insert(actual.clone());
            }
        }
        resolved.builder = rewrite_strings(&self.builder, &rewrites);
        resolved.args = self
            .args
            .iter()
            .map(|a| rewrite_strings(a, &rewrites))
            .collect();
        let mut env = BTreeMap::new();
        for (k, v) in &self.env {
            // As CppNix, the first of two names that become the same wins.
            env.entry(rewrite_strings(k, &rewrites))
                .or_insert_with(|| rewrite_strings(v, &rewrites));
        }
        resolved.env = env;
        let masked: DrvHash = resolved.hash_derivation_modulo(
            sd,
            true,
            |p: &StorePath| -> Result<DrvHash, DrvError> {
                Err(DrvError::Invalid(format!(
                    "resolved derivation still has input '{}'",
                    sd.display(p)
                )))
            },
        )?;
        let deferred: Vec<String> = resolved
            .outputs
            .iter()
            .filter(|(_, o)| o.hash_algo.is_empty() && o.path.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        for id in deferred {
            let h = masked
                .hashes
                .get(&id)
                .ok_or_else(|| DrvError::Invalid(format!("no hash for output '{id}'")))?;
            let path = sd.make_output_path(&id, h, &resolved.name)?;
            resolved.env.insert(id.clone(), sd.display(&path));
            resolved
                .outputs
                .insert(id, DerivationOutput::input_addressed(path));
        }
        Ok(resolved)
    }

    /// CppNix's `staticOutputHashes`: the hash modulo with the outputs masked, per output,
    /// with `input` giving each input derivation's hash modulo. This identifies an output in
    /// the `Realisations` table (`sha256:<base16>!<output>`).
    pub fn static_output_hashes<E: From<DrvError>>(
        &self,
        sd: &StoreDir,
        input: impl FnMut(&StorePath) -> Result<DrvHash, E>,
    ) -> Result<super::OutputHashes, E> {
        Ok(self.hash_derivation_modulo(sd, true, input)?.hashes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::derivation::OutputKind;
    use crate::hash::HashAlgo;
    use crate::store_path::FileIngestionMethod;

    #[test]
    fn placeholders_become_paths_and_deferred_outputs_get_paths() {
        let sd = StoreDir::default();
        let input = sd
            .parse("/nix/store/11111111111111111111111111111111-dep.drv")
            .unwrap();
        let real = sd
            .parse("/nix/store/22222222222222222222222222222222-dep")
            .unwrap();
        let ph = downstream_placeholder(&input, "dep", "out");
        let mut drv = Derivation {
            name: "top".into(),
            builder: "/bin/sh".into(),
            args: vec![format!("{ph}/bin/x")],
            platform: "x86_64-linux".into(),
            ..Default::default()
        };
        drv.input_drvs
            .insert(input.clone(), ["out".to_string()].into());
        drv.outputs
            .insert("out".into(), DerivationOutput::deferred());
        drv.env.insert("dep".into(), ph.clone());
        drv.env.insert("out".into(), String::new());
        let map = BTreeMap::from([((input.clone(), "out".to_string()), real.clone())]);
        let r = drv.resolve(&sd, &map).unwrap();
        assert!(r.input_drvs.is_empty());
        assert!(r.input_srcs.contains(&real));
        assert_eq!(r.args, vec![format!("{}/bin/x", sd.display(&real))]);
        assert_eq!(r.env["dep"], sd.display(&real));
        let OutputKind::InputAddressed(p) = r.outputs["out"].kind().unwrap() else {
            panic!("not input-addressed")
        };
        assert_eq!(r.env["out"], sd.display(&p));
        // A missing input output is an error naming it.
        let e = drv.resolve(&sd, &BTreeMap::new()).unwrap_err();
        assert!(e.to_string().contains("dep.drv"), "{e}");
        // Floating outputs stay floating.
        drv.outputs.insert(
            "out".into(),
            DerivationOutput::floating(FileIngestionMethod::Recursive, HashAlgo::Sha256),
        );
        let r = drv.resolve(&sd, &map).unwrap();
        assert!(matches!(
            r.outputs["out"].kind().unwrap(),
            OutputKind::Floating { .. }
        ));
    }
}
