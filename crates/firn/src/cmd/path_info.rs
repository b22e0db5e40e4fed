//! `nix path-info`: query information about store paths.

use std::collections::BTreeSet;
use std::io::Write;

use anyhow::Result;
use clap::Args;
use firn_format::StorePath;
use firn_store::LocalStore;
use serde_json::{json, Map, Value};

use crate::closure::{compute_closure, topo_sort, ClosureOptions};
use crate::cmd::installables::StorePathArgs;

#[derive(Args, Debug)]
#[command(disable_help_flag = true)]
pub struct PathInfoArgs {
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
    #[command(flatten)]
    paths: StorePathArgs,
    /// Print the size of the NAR serialisation of each path.
    #[arg(short = 's', long = "size")]
    size: bool,
    /// Print the sum of the sizes of the NAR serialisations of the closure of each path.
    #[arg(short = 'S', long = "closure-size")]
    closure_size: bool,
    /// With -s and -S, print sizes in a human-friendly format such as 5.67G.
    #[arg(short = 'h', long = "human-readable")]
    human: bool,
    /// Show signatures.
    #[arg(long)]
    sigs: bool,
    /// Produce output in JSON format.
    #[arg(long)]
    json: bool,
}

/// The closure size (sum of NAR sizes) of a path.
pub fn closure_size(store: &LocalStore, p: &StorePath) -> Result<u64> {
    let closure = compute_closure(store, [p.clone()], &ClosureOptions::default())?;
    let mut total = 0u64;
    for q in &closure {
        total += crate::paths::path_info(store, q)?.nar_size;
    }
    Ok(total)
}

fn size_field(value: u64, human: bool) -> String {
    if !human {
        return format!("\t{value:11}");
    }
    const UNITS: [char; 9] = [' ', 'K', 'M', 'G', 'T', 'P', 'E', 'Z', 'Y'];
    let mut power = 0;
    let mut res = value as f64;
    while res > 1024.0 && power < UNITS.len() - 1 {
        power += 1;
        res /= 1024.0;
    }
    format!("\t{:6.1}{}", res, UNITS[power])
}

/// The JSON object CppNix 2.8 prints for one path.
pub fn path_info_json(store: &LocalStore, p: &StorePath, show_closure_size: bool) -> Result<Value> {
    let sd = store.store_dir();
    let Some(info) = store.query_path_info(p)? else {
        return Ok(json!({"path": sd.display(p), "valid": false}));
    };
    let mut o = Map::new();
    o.insert("path".into(), json!(sd.display(p)));
    o.insert("narHash".into(), json!(info.nar_hash.to_sri()));
    o.insert("narSize".into(), json!(info.nar_size));
    let refs: Vec<String> = info.references.iter().map(|r| sd.display(r)).collect();
    o.insert("references".into(), json!(refs));
    if let Some(ca) = &info.ca {
        o.insert("ca".into(), json!(ca.to_string()));
    }
    if show_closure_size {
        o.insert("closureSize".into(), json!(closure_size(store, p)?));
    }
    if let Some(d) = &info.deriver {
        o.insert("deriver".into(), json!(sd.display(d)));
    }
    if info.registration_time != 0 {
        o.insert("registrationTime".into(), json!(info.registration_time));
    }
    if info.ultimate {
        o.insert("ultimate".into(), json!(true));
    }
    if !info.sigs.is_empty() {
        let sigs: Vec<&String> = info.sigs.iter().collect();
        o.insert("signatures".into(), json!(sigs));
    }
    Ok(Value::Object(o))
}

pub fn run(store: &LocalStore, a: PathInfoArgs) -> Result<()> {
    let sd = store.store_dir().clone();
    let paths = a.paths.resolve(store)?;
    let set: BTreeSet<StorePath> = paths.into_iter().collect();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if a.json {
        let mut list = Vec::new();
        for p in &set {
            list.push(path_info_json(store, p, a.closure_size)?);
        }
        writeln!(out, "{}", Value::Array(list))?;
        out.flush()?;
        return Ok(());
    }
    let mut sorted = topo_sort(store, &set)?;
    sorted.reverse();
    let width = sorted
        .iter()
        .map(|p| sd.display(p).len())
        .max()
        .unwrap_or(0);
    for p in &sorted {
        let info = crate::paths::path_info(store, p)?;
        let s = sd.display(p);
        write!(out, "{s}")?;
        if a.size || a.closure_size || a.sigs {
            write!(out, "{}", " ".repeat(width.saturating_sub(s.len())))?;
        }
        if a.size {
            write!(out, "{}", size_field(info.nar_size, a.human))?;
        }
        if a.closure_size {
            write!(out, "{}", size_field(closure_size(store, p)?, a.human))?;
        }
        if a.sigs {
            let mut ss = Vec::new();
            if info.ultimate {
                ss.push("ultimate".to_string());
            }
            if let Some(ca) = &info.ca {
                ss.push(format!("ca:{ca}"));
            }
            ss.extend(info.sigs.iter().cloned());
            write!(out, "\t{}", ss.join(" "))?;
        }
        writeln!(out)?;
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes() {
        assert_eq!(size_field(120, false), "\t        120");
        assert_eq!(size_field(120, true), "\t 120.0 ");
        assert_eq!(size_field(5 * 1024 * 1024, true), "\t   5.0M");
    }
}
