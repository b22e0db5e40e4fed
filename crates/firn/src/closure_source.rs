//! How `builtins.fetchClosure` reaches binary caches in this program: the evaluator's
//! [`ClosureSource`], made from the command's settings (`require-sigs`,
//! `trusted-public-keys`, `http-connections`, the store directory) and installed when the
//! `fetch-closure` feature is on.

use std::collections::BTreeSet;

use firn_cache::copy::{copy_closure, AnyStore, CopyOptions};
use firn_eval::fetch_closure::ClosureSource;
use firn_format::StorePath;
use firn_store::LocalStore;

use crate::context::Ctx;
use crate::settings::Settings;

/// Copies and rewrites closures for the evaluator, with the settings of the command.
pub struct CacheClosures {
    settings: Settings,
    verbosity: i32,
}

/// Give evaluators of this process a way to binary caches, if `fetch-closure` is on.
pub fn install(ctx: &Ctx) {
    if ctx.settings.has_feature("fetch-closure") {
        firn_eval::fetch_closure::set_source(Box::new(CacheClosures {
            settings: ctx.settings.clone(),
            verbosity: ctx.verbosity,
        }));
    }
}

impl CacheClosures {
    fn ctx(&self) -> Ctx {
        Ctx {
            settings: self.settings.clone(),
            verbosity: self.verbosity,
        }
    }

    /// The binary cache at `url`, with the jobs for a walk of its closure.
    fn open_cache(&self, ctx: &Ctx, url: &str) -> anyhow::Result<(AnyStore, usize)> {
        let src = ctx.open_any_at(url)?;
        let jobs = ctx.transfer_jobs(&[&src]);
        Ok((src, jobs))
    }
}

fn message(e: anyhow::Error) -> String {
    format!("{e:#}")
}

impl ClosureSource for CacheClosures {
    fn copy_closure(&self, to: &LocalStore, from: &str, path: &StorePath) -> Result<(), String> {
        let ctx = self.ctx();
        let go = || -> anyhow::Result<()> {
            let (src, jobs) = self.open_cache(&ctx, from)?;
            // The copy writes through a store of its own, opened as the evaluator's was.
            let dst = AnyStore::Local(LocalStore::open(to.config().clone())?);
            let check_sigs = if ctx.settings.get_bool("require-sigs") {
                Some(ctx.trust_policy()?)
            } else {
                None
            };
            let sd = to.store_dir().clone();
            // As CppNix logs the copy.
            let log = crate::cmd::copy::CopyLog::new(&ctx, &src, &dst);
            let opts = CopyOptions {
                jobs,
                check_sigs,
                substitute: false,
                dst_substituters: None,
                on_start: Some(&|n| log.start(n)),
            };
            let report = copy_closure(&src, &dst, &BTreeSet::from([path.clone()]), &opts, &|p| {
                log.path(p)
            })?;
            if let Some((p, e)) = report.failed.into_iter().next() {
                anyhow::bail!("copying path '{}' from '{from}': {e}", sd.display(&p));
            }
            Ok(())
        };
        go().map_err(message)
    }

    fn make_content_addressed(
        &self,
        to: &LocalStore,
        from: &str,
        path: &StorePath,
    ) -> Result<StorePath, String> {
        let ctx = self.ctx();
        let go = || -> anyhow::Result<StorePath> {
            let (src, jobs) = self.open_cache(&ctx, from)?;
            let remapped = crate::make_ca::make_content_addressed(
                &src,
                &BTreeSet::from([path.clone()]),
                jobs,
                &|p| Ok(to.is_valid_path(p)?),
                &mut |info, nar| Ok(to.add_nar(info, &mut &nar[..])?),
                &|line| {
                    if ctx.verbosity >= 0 {
                        eprintln!("{line}");
                    }
                },
            )?;
            remapped.get(path).cloned().ok_or_else(|| {
                anyhow::anyhow!("'{}' was not rewritten", to.store_dir().display(path))
            })
        };
        go().map_err(message)
    }
}
