//! Store-path arguments of the new CLI: paths (or links to them), `--all`, `-r`.

use std::collections::BTreeSet;

use anyhow::{bail, Result};
use clap::Args;
use firn_format::StorePath;
use firn_store::LocalStore;

use crate::closure::{compute_closure, ClosureOptions};
use crate::paths::follow_links_to_store_path;

#[derive(Args, Debug, Default)]
pub struct StorePathArgs {
    /// Apply the operation to every store path.
    #[arg(long)]
    pub all: bool,
    /// Apply the operation to the closure of the given paths.
    #[arg(short = 'r', long = "recursive")]
    pub recursive: bool,
    /// Store paths, or symlinks to them (such as `./result`).
    pub installables: Vec<String>,
}

impl StorePathArgs {
    /// The store paths these arguments name, without duplicates.
    pub fn resolve(&self, store: &LocalStore) -> Result<Vec<StorePath>> {
        let sd = store.store_dir();
        let mut set: BTreeSet<StorePath> = BTreeSet::new();
        if self.all {
            if !self.installables.is_empty() {
                bail!("'--all' does not expect arguments");
            }
            set.extend(store.query_all_valid_paths()?);
        } else {
            for i in &self.installables {
                let p = follow_links_to_store_path(sd, i)?;
                if !store.is_valid_path(&p)? {
                    bail!("path '{}' is not valid", sd.display(&p));
                }
                set.insert(p);
            }
        }
        if self.recursive {
            set = compute_closure(store, set, &ClosureOptions::default())?;
        }
        Ok(set.into_iter().collect())
    }
}
