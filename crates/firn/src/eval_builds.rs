//! How evaluations build what they read (import from derivation) in this program: the
//! evaluator's [`Builder`], made from the command's settings (`allow-import-from-derivation`,
//! the build and substitution settings), installed for every command.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use firn_build::DerivedPath;
use firn_eval::ifd::Builder;
use firn_format::StorePath;
use firn_store::LocalStore;

use crate::context::{Ctx, Failure};
use crate::realise::{realise, BuildFlags};
use crate::settings::Settings;

/// Builds derivation outputs for the evaluator, with the settings of the command.
pub struct EvalBuilds {
    settings: Settings,
    verbosity: i32,
}

/// The status of the last build an evaluation needed that failed (0: none).
static FAILED: AtomicU8 = AtomicU8::new(0);

/// Whether import from derivation is allowed when `allow-import-from-derivation` is not
/// set (CppNix's `setDefault` of it: `nix flake check` turns it off for `hydraJobs`).
static IFD_BY_DEFAULT: AtomicBool = AtomicBool::new(true);

/// Set whether import from derivation is allowed unless the user set
/// `allow-import-from-derivation`.
pub fn set_ifd_by_default(allowed: bool) {
    IFD_BY_DEFAULT.store(allowed, Ordering::Relaxed);
}

/// The exit status of a build an evaluation of this process needed and that failed (100 and
/// up, as CppNix's `buildPaths` gives): the status a command stopped by it ends with.
pub fn failed_status() -> Option<u8> {
    match FAILED.load(Ordering::Relaxed) {
        0 => None,
        c => Some(c),
    }
}

/// Let evaluations of this process build what they import.
pub fn install(ctx: &Ctx) {
    firn_eval::ifd::set_builder(Box::new(EvalBuilds {
        settings: ctx.settings.clone(),
        verbosity: ctx.verbosity,
    }));
}

impl Builder for EvalBuilds {
    fn build(
        &self,
        store: &LocalStore,
        wanted: &BTreeMap<StorePath, BTreeSet<String>>,
    ) -> Result<BTreeMap<StorePath, BTreeMap<String, StorePath>>, String> {
        let sd = store.store_dir();
        let allowed = match self.settings.is_set("allow-import-from-derivation") {
            true => self.settings.get_bool("allow-import-from-derivation"),
            false => IFD_BY_DEFAULT.load(Ordering::Relaxed),
        };
        if !allowed {
            let drv = wanted
                .keys()
                .next()
                .map(|d| sd.display(d))
                .unwrap_or_default();
            return Err(format!(
                "cannot build '{drv}' during evaluation because the option 'allow-import-from-derivation' is disabled"
            ));
        }
        // With what flakes' `nixConfig` set since (as CppNix's global configuration).
        let ctx = Ctx {
            settings: self.settings.clone(),
            verbosity: self.verbosity,
        }
        .with_flake_config();
        let paths: Vec<DerivedPath> = wanted
            .iter()
            .map(|(drv, outputs)| DerivedPath::Built {
                drv: drv.clone(),
                outputs: Some(outputs.clone()),
            })
            .collect();
        let flags = BuildFlags {
            failures_in_error: true,
            ..BuildFlags::default()
        };
        realise(&ctx, store, &paths, &flags).map_err(|e| match e.downcast_ref::<Failure>() {
            Some(f) => {
                FAILED.store(f.code, Ordering::Relaxed);
                f.msg.clone()
            }
            None => crate::report::error_text(e.as_ref()),
        })?;
        // Where the outputs are: in the derivation, or (floating content-addressed) in the
        // realisations the builds recorded.
        let text = |e: firn_build::BuildError| e.to_string();
        let mut built = BTreeMap::new();
        for (drv, outputs) in wanted {
            let d = firn_build::plan::read_derivation(store, drv).map_err(text)?;
            let mut known = firn_build::ca::output_map(store, &d).map_err(text)?;
            let paths: BTreeMap<String, StorePath> = outputs
                .iter()
                .filter_map(|o| Some((o.clone(), known.remove(o)??)))
                .collect();
            built.insert(drv.clone(), paths);
        }
        Ok(built)
    }
}
