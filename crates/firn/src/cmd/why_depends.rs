//! `nix why-depends PACKAGE DEPENDENCY`: show the chain of references by which a path depends
//! on another (the shortest first), and with `--precise` the files that hold each reference.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::io::{IsTerminal, Write};

use anyhow::Result;
use clap::Args;
use firn_format::StorePath;
use firn_store::LocalStore;

use crate::closure::{compute_closure, ClosureOptions};
use crate::cmd::accessor::{Accessor, FsAccessor, Stat};
use crate::paths::{follow_links_to_store_path, path_info};

#[derive(Args, Debug)]
pub struct WhyDependsArgs {
    /// Show all edges in the dependency graph leading from PACKAGE to DEPENDENCY, not just the
    /// shortest path.
    #[arg(short = 'a', long)]
    all: bool,
    /// For each edge, show the files in the parent that cause the dependency.
    #[arg(long)]
    precise: bool,
    package: String,
    dependency: String,
}

const TREE_CONN: &str = "├───";
const TREE_LAST: &str = "└───";
const TREE_LINE: &str = "│   ";
const TREE_NULL: &str = "    ";

struct Style {
    tty: bool,
}

impl Style {
    fn normal(&self) -> &'static str {
        if self.tty {
            "\x1b[0m"
        } else {
            ""
        }
    }
    fn grey(&self, on: bool) -> &'static str {
        if self.tty && on {
            "\x1b[38;5;244m"
        } else {
            ""
        }
    }
    fn hilite(&self, s: &str, pos: usize, len: usize, green: bool) -> String {
        if !self.tty {
            return s.to_string();
        }
        let colour = if green { "\x1b[32;1m" } else { "\x1b[34;1m" };
        format!(
            "{}{}{}{}{}",
            &s[..pos],
            colour,
            &s[pos..pos + len],
            "\x1b[0m",
            &s[pos + len..]
        )
    }
}

/// Non-printable bytes shown as `.`, as CppNix's `filterPrintable`.
fn printable(b: &[u8]) -> String {
    b.iter()
        .map(|&c| {
            if (32..127).contains(&c) {
                c as char
            } else {
                '.'
            }
        })
        .collect()
}

pub fn run(store: &LocalStore, a: WhyDependsArgs) -> Result<()> {
    let sd = store.store_dir().clone();
    let package = follow_links_to_store_path(&sd, &a.package)?;
    let dependency = follow_links_to_store_path(&sd, &a.dependency)?;
    path_info(store, &package)?;
    let closure = compute_closure(store, [package.clone()], &ClosureOptions::default())?;
    if !closure.contains(&dependency) {
        eprintln!(
            "'{}' does not depend on '{}'",
            sd.display(&package),
            sd.display(&dependency)
        );
        return Ok(());
    }
    // Distances to the dependency, along reversed references (breadth first: every edge costs 1).
    let mut refs: BTreeMap<StorePath, BTreeSet<StorePath>> = BTreeMap::new();
    let mut rrefs: HashMap<StorePath, Vec<StorePath>> = HashMap::new();
    for p in &closure {
        let r = path_info(store, p)?.references;
        for q in &r {
            rrefs.entry(q.clone()).or_default().push(p.clone());
        }
        refs.insert(p.clone(), r);
    }
    let mut dist: HashMap<StorePath, usize> = HashMap::new();
    dist.insert(dependency.clone(), 0);
    let mut queue = VecDeque::from([dependency.clone()]);
    while let Some(n) = queue.pop_front() {
        let d = dist[&n];
        for r in rrefs.get(&n).into_iter().flatten() {
            if !dist.contains_key(r) {
                dist.insert(r.clone(), d + 1);
                queue.push_back(r.clone());
            }
        }
    }

    let style = Style {
        tty: std::io::stdout().is_terminal(),
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut visited: BTreeSet<StorePath> = BTreeSet::new();
    if !a.precise {
        writeln!(out, "{}", sd.display(&package))?;
    }

    // Depth-first printing with an explicit stack: (node, first pad, tail pad, children, next).
    struct Frame {
        children: Vec<StorePath>,
        next: usize,
        hits: HashMap<String, Vec<String>>,
        tail: String,
        node: StorePath,
    }
    let dep_hash = dependency.hash_part().to_string();
    // Enter a node: print it (precise), decide whether to stop, and collect its children.
    let enter = |node: &StorePath,
                 first_pad: &str,
                 tail_pad: &str,
                 visited: &mut BTreeSet<StorePath>,
                 out: &mut dyn Write|
     -> Result<Option<Frame>> {
        let was_visited = visited.contains(node);
        if a.precise {
            writeln!(
                out,
                "{}{}{}{}{}",
                first_pad,
                style.grey(was_visited),
                if first_pad.is_empty() { "" } else { "→ " },
                sd.display(node),
                style.normal()
            )?;
        }
        if *node == dependency && !a.all && package != dependency {
            return Ok(None);
        }
        if was_visited {
            return Ok(Some(Frame {
                children: Vec::new(),
                next: 0,
                hits: HashMap::new(),
                tail: tail_pad.to_string(),
                node: node.clone(),
            }));
        }
        if a.precise {
            visited.insert(node.clone());
        }
        let mut children: Vec<(usize, StorePath)> = refs[node]
            .iter()
            .filter(|r| !(**r == *node && package != dependency))
            .filter_map(|r| dist.get(r).map(|d| (*d, r.clone())))
            .collect();
        // Stable: ties keep the sorted order of the references, as CppNix's multimap does.
        children.sort_by_key(|x| x.0);
        let mut hits: HashMap<String, Vec<String>> = HashMap::new();
        if a.precise {
            let hashes: BTreeSet<String> = children
                .iter()
                .map(|(_, p)| p.hash_part().to_string())
                .collect();
            let acc = FsAccessor {
                root: store.real_path(node),
            };
            let mut stack = vec![String::new()];
            while let Some(rel) = stack.pop() {
                let shown = if rel.is_empty() {
                    "/".to_string()
                } else {
                    rel[1..].to_string()
                };
                match acc.stat(&rel)? {
                    Some(Stat::Directory) => {
                        for name in acc.read_dir(&rel)?.into_iter().rev() {
                            stack.push(format!("{rel}/{name}"));
                        }
                    }
                    Some(Stat::Regular { .. }) => {
                        let contents = acc.read_file(&rel)?;
                        for h in &hashes {
                            if let Some(pos) = find(&contents, h.as_bytes()) {
                                let start = pos.saturating_sub(32);
                                let end = (pos + h.len() + 32).min(contents.len());
                                let text = printable(&contents[start..end]);
                                hits.entry(h.clone()).or_default().push(format!(
                                    "{}: …{}…",
                                    shown,
                                    style.hilite(&text, pos - start, h.len(), *h == dep_hash)
                                ));
                            }
                        }
                    }
                    Some(Stat::Symlink(target)) => {
                        for h in &hashes {
                            if let Some(pos) = target.find(h.as_str()) {
                                hits.entry(h.clone()).or_default().push(format!(
                                    "{} -> {}",
                                    shown,
                                    style.hilite(&target, pos, h.len(), *h == dep_hash)
                                ));
                            }
                        }
                    }
                    None => {}
                }
            }
        }
        Ok(Some(Frame {
            children: children.into_iter().map(|(_, p)| p).collect(),
            next: 0,
            hits,
            tail: tail_pad.to_string(),
            node: node.clone(),
        }))
    };

    let mut stack: Vec<Frame> = Vec::new();
    match enter(&package, "", "", &mut visited, &mut out)? {
        Some(f) => stack.push(f),
        None => {
            out.flush()?;
            return Ok(());
        }
    }
    'outer: while let Some(top) = stack.last_mut() {
        if top.next >= top.children.len() {
            stack.pop();
            continue;
        }
        let child = top.children[top.next].clone();
        top.next += 1;
        let last = if a.all {
            top.next == top.children.len()
        } else {
            true
        };
        if !a.all {
            // Only the shortest path is followed.
            top.next = top.children.len();
        }
        let tail = top.tail.clone();
        let hash = child.hash_part().to_string();
        if let Some(hs) = top.hits.get(&hash) {
            for (i, hit) in hs.iter().enumerate() {
                let lead = match (i == 0, last) {
                    (true, true) => TREE_LAST,
                    (true, false) => TREE_CONN,
                    (false, true) => TREE_NULL,
                    (false, false) => TREE_LINE,
                };
                writeln!(out, "{tail}{lead}{hit}")?;
                if !a.all {
                    break;
                }
            }
        }
        let pad = format!("{}{}", tail, if last { TREE_NULL } else { TREE_LINE });
        if !a.precise {
            let node = top.node.clone();
            writeln!(
                out,
                "{}{}{}{}{}",
                tail,
                style.grey(visited.contains(&child)),
                if last { TREE_LAST } else { TREE_CONN },
                sd.display(&child),
                style.normal()
            )?;
            visited.insert(node);
        }
        match enter(&child, &pad, &pad, &mut visited, &mut out)? {
            Some(f) => stack.push(f),
            None => break 'outer,
        }
    }
    out.flush()?;
    Ok(())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
