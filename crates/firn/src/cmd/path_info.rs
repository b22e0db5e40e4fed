//! `nix path-info`: query information about store paths.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use anyhow::{bail, Result};
use clap::Args;
use firn_cache::copy::parallel_map;
use firn_cache::BinaryCache;
use firn_format::{NarInfo, StorePath};
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

/// `nix path-info --store <binary cache>`: the same output from the cache's narinfos (plus,
/// in JSON, where the NAR is: `url`, `compression`, `downloadHash`, `downloadSize`).
pub fn run_cache(cache: &BinaryCache, a: PathInfoArgs) -> Result<()> {
    let sd = cache.store_dir().clone();
    let mut roots = Vec::new();
    if a.paths.all {
        // Every path the cache lists (file:// and s3://; others give CppNix's error).
        roots = cache.query_all_valid_paths(16)?;
    }
    for i in &a.paths.installables {
        roots.push(crate::paths::follow_links_to_store_path(&sd, i)?);
    }
    // The narinfos of the roots (and with -r or -S, of their closures).
    let mut infos: BTreeMap<StorePath, Option<NarInfo>> = BTreeMap::new();
    let mut frontier: Vec<StorePath> = roots.clone();
    let follow = a.paths.recursive || a.closure_size;
    while !frontier.is_empty() {
        let got = parallel_map(&frontier, 16, |p| cache.query_narinfo(p));
        let mut next = Vec::new();
        for (p, r) in frontier.into_iter().zip(got) {
            let ni = r?;
            if let (true, Some(ni)) = (follow, &ni) {
                for r in &ni.references {
                    if !infos.contains_key(r) && !next.contains(r) {
                        next.push(r.clone());
                    }
                }
            }
            infos.insert(p, ni);
        }
        next.retain(|p| !infos.contains_key(p));
        frontier = next;
    }
    let wanted: Vec<StorePath> = if a.paths.recursive {
        infos.keys().cloned().collect()
    } else {
        roots
    };
    // (NAR bytes, download bytes) of a path's closure.
    let closure_size = |p: &StorePath| -> (u64, u64) {
        let mut seen = BTreeSet::new();
        let mut stack = vec![p.clone()];
        let mut total = (0, 0);
        while let Some(q) = stack.pop() {
            if !seen.insert(q.clone()) {
                continue;
            }
            if let Some(Some(ni)) = infos.get(&q) {
                total.0 += ni.nar_size;
                total.1 += ni.file_size;
                stack.extend(ni.references.iter().cloned());
            }
        }
        total
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if a.json {
        let mut list = Vec::new();
        for p in wanted.iter().collect::<BTreeSet<_>>() {
            let Some(Some(ni)) = infos.get(p) else {
                list.push(json!({"path": sd.display(p), "valid": false}));
                continue;
            };
            let mut o = Map::new();
            o.insert("path".into(), json!(sd.display(p)));
            o.insert("narHash".into(), json!(ni.nar_hash.to_sri()));
            o.insert("narSize".into(), json!(ni.nar_size));
            let refs: Vec<String> = ni.references.iter().map(|r| sd.display(r)).collect();
            o.insert("references".into(), json!(refs));
            if let Some(ca) = &ni.ca {
                o.insert("ca".into(), json!(ca.to_string()));
            }
            if a.closure_size {
                o.insert("closureSize".into(), json!(closure_size(p).0));
                o.insert("closureDownloadSize".into(), json!(closure_size(p).1));
            }
            if let Some(d) = &ni.deriver {
                o.insert("deriver".into(), json!(sd.display(d)));
            }
            if !ni.sigs.is_empty() {
                let sigs: Vec<&String> = ni.sigs.iter().collect();
                o.insert("signatures".into(), json!(sigs));
            }
            o.insert("url".into(), json!(ni.url));
            if let Some(h) = &ni.file_hash {
                o.insert("downloadHash".into(), json!(h.to_sri()));
            }
            if ni.file_size != 0 {
                o.insert("downloadSize".into(), json!(ni.file_size));
            }
            list.push(Value::Object(o));
        }
        writeln!(out, "{}", Value::Array(list))?;
        out.flush()?;
        return Ok(());
    }
    // References before referrers, as for the local store.
    let mut order = Vec::new();
    let mut done = BTreeSet::new();
    for root in wanted.iter().collect::<BTreeSet<_>>() {
        let mut stack = vec![(root.clone(), false)];
        while let Some((p, expanded)) = stack.pop() {
            if expanded {
                order.push(p);
                continue;
            }
            if !done.insert(p.clone()) {
                continue;
            }
            stack.push((p.clone(), true));
            if let Some(Some(ni)) = infos.get(&p) {
                for r in ni.references.iter().rev() {
                    if wanted.contains(r) && !done.contains(r) {
                        stack.push((r.clone(), false));
                    }
                }
            }
        }
    }
    let width = order.iter().map(|p| sd.display(p).len()).max().unwrap_or(0);
    for p in &order {
        let Some(Some(ni)) = infos.get(p) else {
            out.flush()?;
            bail!("path '{}' is not valid", sd.display(p));
        };
        let s = sd.display(p);
        write!(out, "{s}")?;
        if a.size || a.closure_size || a.sigs {
            write!(out, "{}", " ".repeat(width.saturating_sub(s.len())))?;
        }
        if a.size {
            write!(out, "{}", size_field(ni.nar_size, a.human))?;
        }
        if a.closure_size {
            write!(out, "{}", size_field(closure_size(p).0, a.human))?;
        }
        if a.sigs {
            let mut ss = Vec::new();
            if let Some(ca) = &ni.ca {
                ss.push(format!("ca:{ca}"));
            }
            ss.extend(ni.sigs.iter().cloned());
            write!(out, "\t{}", ss.join(" "))?;
        }
        writeln!(out)?;
    }
    out.flush()?;
    Ok(())
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
    let infos = store.query_path_infos(&sorted)?;
    for (p, info) in sorted.iter().zip(infos) {
        let Some(info) = info else {
            out.flush()?;
            bail!("path '{}' is not valid", sd.display(p));
        };
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
