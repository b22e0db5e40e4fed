//! `nix-store --gc` and `nix-store --delete`.

use std::collections::BTreeSet;
use std::io::Write;

use anyhow::Result;
use firn_store::gc::{GcAction, GcOptions};
use firn_store::LocalStore;

use crate::context::{usage, Ctx};
use crate::paths::follow_links_to_store_path;

pub fn run(
    ctx: &Ctx,
    store: &LocalStore,
    delete: bool,
    flags: Vec<String>,
    args: Vec<String>,
) -> Result<()> {
    let sd = store.store_dir().clone();
    let mut opts = GcOptions {
        keep_outputs: ctx.settings.get_bool("keep-outputs"),
        keep_derivations: ctx.settings.get_bool("keep-derivations"),
        ..GcOptions::default()
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if delete {
        for f in &flags {
            if f == "--ignore-liveness" {
                opts.ignore_liveness = true;
            } else {
                return Err(usage(format!("unknown flag '{f}'")));
            }
        }
        let paths: BTreeSet<_> = args
            .iter()
            .map(|a| follow_links_to_store_path(&sd, a))
            .collect::<Result<_>>()?;
        opts.action = GcAction::DeleteSpecific(paths);
        let res = store.collect_garbage(&opts)?;
        crate::paths::print_gc_summary(&mut out, &res)?;
        out.flush()?;
        return Ok(());
    }
    let mut print_roots = false;
    opts.action = GcAction::DeleteDead;
    let mut it = flags.iter();
    while let Some(f) = it.next() {
        match f.as_str() {
            "--print-roots" => print_roots = true,
            "--print-live" => opts.action = GcAction::ReturnLive,
            "--print-dead" => opts.action = GcAction::ReturnDead,
            "--max-freed" => {
                let v = it
                    .next()
                    .ok_or_else(|| usage("flag '--max-freed' requires an argument"))?;
                opts.max_freed = parse_size(v)?;
            }
            _ => return Err(usage(format!("bad sub-operation '{f}' in GC"))),
        }
    }
    if !args.is_empty() {
        return Err(usage("no arguments expected"));
    }
    if print_roots {
        let mut pairs = BTreeSet::new();
        for (target, links) in store.find_roots(false)? {
            for l in links {
                pairs.insert((l, target.clone()));
            }
        }
        for (l, t) in pairs {
            writeln!(out, "{} -> {}", l, sd.display(&t))?;
        }
    } else {
        let action_deletes = matches!(opts.action, GcAction::DeleteDead);
        let res = store.collect_garbage(&opts)?;
        if action_deletes {
            crate::paths::print_gc_summary(&mut out, &res)?;
        } else {
            for p in &res.paths {
                writeln!(out, "{p}")?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

/// An integer with an optional unit suffix (K, M, G, T), as Nix's `string2IntWithUnitPrefix`.
pub fn parse_size(s: &str) -> Result<u64> {
    let (num, mult) = match s.chars().last() {
        Some('K') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M') => (&s[..s.len() - 1], 1u64 << 20),
        Some('G') => (&s[..s.len() - 1], 1u64 << 30),
        Some('T') => (&s[..s.len() - 1], 1u64 << 40),
        _ => (s, 1),
    };
    let n: i64 = num
        .parse()
        .map_err(|_| usage(format!("'{s}' is not an integer")))?;
    Ok((n.max(0) as u64).saturating_mul(mult))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10").unwrap(), 10);
        assert_eq!(parse_size("2K").unwrap(), 2048);
        assert_eq!(parse_size("-5").unwrap(), 0);
        assert!(parse_size("x").is_err());
    }
}
