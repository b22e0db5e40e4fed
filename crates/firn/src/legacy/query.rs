//! `nix-store --query`: outputs, closures, referrers, trees, graphs, roots.

use std::collections::BTreeSet;
use std::io::Write;

use anyhow::{bail, Result};
use firn_format::StorePath;
use firn_store::LocalStore;

use crate::closure::{compute_closure, topo_sort, ClosureOptions};
use crate::context::{usage, Ctx};
use crate::paths::{follow_links_to_store_path, path_info};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Query {
    Default,
    Outputs,
    Requisites,
    References,
    Referrers,
    ReferrersClosure,
    Deriver,
    Binding,
    Hash,
    Size,
    Tree,
    Graph,
    Resolve,
    Roots,
}

pub fn run(
    ctx: &Ctx,
    store: &LocalStore,
    out: &mut impl Write,
    flags: Vec<String>,
    mut args: Vec<String>,
) -> Result<()> {
    let sd = store.store_dir().clone();
    let mut query = Query::Default;
    let mut use_output = false;
    let mut include_outputs = false;
    let mut binding = String::new();
    for f in &flags {
        let prev = query;
        match f.as_str() {
            "--outputs" => query = Query::Outputs,
            "--requisites" | "-R" => query = Query::Requisites,
            "--references" => query = Query::References,
            "--referrers" | "--referers" => query = Query::Referrers,
            "--referrers-closure" | "--referers-closure" => query = Query::ReferrersClosure,
            "--deriver" | "-d" => query = Query::Deriver,
            "--binding" | "-b" => {
                if args.is_empty() {
                    return Err(usage("expected binding name"));
                }
                binding = args.remove(0);
                query = Query::Binding;
            }
            "--hash" => query = Query::Hash,
            "--size" => query = Query::Size,
            "--tree" => query = Query::Tree,
            "--graph" => query = Query::Graph,
            "--resolve" => query = Query::Resolve,
            "--roots" => query = Query::Roots,
            "--use-output" | "-u" => use_output = true,
            "--include-outputs" => include_outputs = true,
            "--force-realise" | "--force-realize" | "-f" => {
                bail!("'--force-realise' needs builds, which firn does not do yet")
            }
            "--graphml" => bail!("'--graphml' is not implemented by firn yet"),
            _ => return Err(usage(format!("unknown flag '{f}'"))),
        }
        if prev != Query::Default && prev != query {
            return Err(usage(format!(
                "query type '{f}' conflicts with earlier flag"
            )));
        }
    }
    if query == Query::Default {
        query = Query::Outputs;
    }
    let follow = |s: &str| follow_links_to_store_path(&sd, s);
    // The outputs of a derivation when asked for (`-u`), else the path itself.
    let maybe_outputs = |p: StorePath, use_output: bool| -> Result<Vec<StorePath>> {
        if use_output && p.is_derivation() {
            Ok(crate::closure::derivation_outputs(store, &p)?
                .into_values()
                .collect())
        } else {
            Ok(vec![p])
        }
    };
    match query {
        Query::Default | Query::Outputs => {
            for a in &args {
                let outs: BTreeSet<StorePath> =
                    maybe_outputs(follow(a)?, true)?.into_iter().collect();
                for o in outs {
                    writeln!(out, "{}", sd.display(&o))?;
                }
            }
        }
        Query::Requisites | Query::References | Query::Referrers | Query::ReferrersClosure => {
            let mut paths = BTreeSet::new();
            for a in &args {
                for p in maybe_outputs(follow(a)?, use_output)? {
                    match query {
                        Query::Requisites => {
                            let opts = ClosureOptions {
                                include_outputs,
                                ..Default::default()
                            };
                            paths.extend(compute_closure(store, [p], &opts)?);
                        }
                        Query::References => paths.extend(path_info(store, &p)?.references),
                        Query::Referrers => paths.extend(store.query_referrers(&p)?),
                        _ => {
                            let opts = ClosureOptions {
                                flip: true,
                                ..Default::default()
                            };
                            paths.extend(compute_closure(store, [p], &opts)?);
                        }
                    }
                }
            }
            let sorted = topo_sort(store, &paths)?;
            for p in sorted.iter().rev() {
                writeln!(out, "{}", sd.display(p))?;
            }
        }
        Query::Deriver => {
            for a in &args {
                let info = path_info(store, &follow(a)?)?;
                match &info.deriver {
                    Some(d) => writeln!(out, "{}", sd.display(d))?,
                    None => writeln!(out, "unknown-deriver")?,
                }
            }
        }
        Query::Binding => {
            for a in &args {
                let p = follow(a)?;
                let drv_path = if p.is_derivation() {
                    p
                } else {
                    match path_info(store, &p)?.deriver {
                        Some(d) => d,
                        None => bail!("deriver of path '{}' is not known", sd.display(&p)),
                    }
                };
                let drv = crate::closure::read_derivation(store, &drv_path)?;
                match drv.env.get(&binding) {
                    Some(v) => writeln!(out, "{v}")?,
                    None => bail!(
                        "derivation '{}' has no environment binding named '{}'",
                        sd.display(&drv_path),
                        binding
                    ),
                }
            }
        }
        Query::Hash | Query::Size => {
            for a in &args {
                for p in maybe_outputs(follow(a)?, use_output)? {
                    let info = path_info(store, &p)?;
                    if query == Query::Hash {
                        writeln!(out, "{}", info.nar_hash)?;
                    } else {
                        writeln!(out, "{}", info.nar_size)?;
                    }
                }
            }
        }
        Query::Tree => {
            let mut done = BTreeSet::new();
            for a in &args {
                print_tree(store, out, &follow(a)?, "", "", &mut done)?;
            }
        }
        Query::Graph => {
            let mut roots = BTreeSet::new();
            for a in &args {
                roots.extend(maybe_outputs(follow(a)?, use_output)?);
            }
            print_dot_graph(store, out, roots)?;
        }
        Query::Resolve => {
            for a in &args {
                writeln!(out, "{}", sd.display(&follow(a)?))?;
            }
        }
        Query::Roots => {
            let mut targets = BTreeSet::new();
            for a in &args {
                targets.extend(maybe_outputs(follow(a)?, use_output)?);
            }
            let opts = ClosureOptions {
                flip: true,
                include_outputs: ctx.settings.get_bool("keep-outputs"),
                include_derivers: ctx.settings.get_bool("keep-derivations"),
            };
            let referrers = compute_closure(store, targets, &opts)?;
            for (target, links) in store.find_roots(false)? {
                if referrers.contains(&target) {
                    for link in links {
                        writeln!(out, "{} -> {}", link, sd.display(&target))?;
                    }
                }
            }
        }
    }
    Ok(())
}

const TREE_CONN: &str = "├───";
const TREE_LAST: &str = "└───";
const TREE_LINE: &str = "│   ";
const TREE_NULL: &str = "    ";

fn print_tree(
    store: &LocalStore,
    out: &mut impl Write,
    path: &StorePath,
    first_pad: &str,
    tail_pad: &str,
    done: &mut BTreeSet<StorePath>,
) -> Result<()> {
    let sd = store.store_dir();
    if !done.insert(path.clone()) {
        writeln!(out, "{}{} [...]", first_pad, sd.display(path))?;
        return Ok(());
    }
    writeln!(out, "{}{}", first_pad, sd.display(path))?;
    let info = path_info(store, path)?;
    let mut sorted = topo_sort(store, &info.references)?;
    sorted.reverse();
    let n = sorted.len();
    for (i, r) in sorted.iter().enumerate() {
        let last = i + 1 == n;
        print_tree(
            store,
            out,
            r,
            &format!("{}{}", tail_pad, if last { TREE_LAST } else { TREE_CONN }),
            &format!("{}{}", tail_pad, if last { TREE_NULL } else { TREE_LINE }),
            done,
        )?;
    }
    Ok(())
}

const COLOURS: [&str; 6] = ["black", "red", "green", "blue", "magenta", "burlywood"];

fn print_dot_graph(
    store: &LocalStore,
    out: &mut impl Write,
    roots: BTreeSet<StorePath>,
) -> Result<()> {
    let mut work = roots;
    let mut done = BTreeSet::new();
    let mut colour = 0usize;
    writeln!(out, "digraph G {{")?;
    while let Some(p) = work.pop_first() {
        if !done.insert(p.clone()) {
            continue;
        }
        writeln!(
            out,
            "\"{}\" [label = \"{}\", shape = box, style = filled, fillcolor = \"#ff0000\"];",
            p.base_name(),
            p.name()
        )?;
        for r in path_info(store, &p)?.references {
            if r != p {
                writeln!(
                    out,
                    "\"{}\" -> \"{}\" [color = \"{}\"];",
                    r.base_name(),
                    p.base_name(),
                    COLOURS[colour % COLOURS.len()]
                )?;
                colour += 1;
                work.insert(r);
            }
        }
    }
    writeln!(out, "}}")?;
    Ok(())
}
