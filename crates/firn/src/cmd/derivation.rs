//! `nix derivation show` (and the older `nix show-derivation`).

use std::collections::BTreeSet;

use anyhow::Result;
use clap::Args;
use firn_store::LocalStore;
use serde_json::{Map, Value};

use crate::closure::{compute_closure, read_derivation, ClosureOptions};
use crate::paths::follow_links_to_store_path;

#[derive(Args, Debug)]
pub struct ShowArgs {
    /// Include the dependencies of the derivations (their closure).
    #[arg(short = 'r', long)]
    recursive: bool,
    /// Derivations (`.drv` store paths), or symlinks to them.
    installables: Vec<String>,
}

pub fn show(store: &LocalStore, a: ShowArgs) -> Result<()> {
    let sd = store.store_dir().clone();
    let mut drvs: BTreeSet<_> = a
        .installables
        .iter()
        .map(|i| follow_links_to_store_path(&sd, i))
        .collect::<Result<_>>()?;
    if a.recursive {
        drvs = compute_closure(store, drvs, &ClosureOptions::default())?;
    }
    let mut root = Map::new();
    for d in drvs.iter().filter(|d| d.is_derivation()) {
        let drv = read_derivation(store, d)?;
        root.insert(sd.display(d), drv.to_json(&sd));
    }
    outln!("{}", serde_json::to_string_pretty(&Value::Object(root))?);
    Ok(())
}
