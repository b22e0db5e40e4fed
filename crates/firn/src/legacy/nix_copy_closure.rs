//! `nix-copy-closure [--to|--from] [--gzip] [--include-outputs] [-s] HOST PATHS...`: copy
//! closures to or from another machine's store over SSH (the `nix-store --serve` protocol),
//! as CppNix does it: signatures are not checked. With `-s`, the destination first fetches
//! what it can from its own substituters.

use std::collections::BTreeSet;

use anyhow::Result;
use firn_cache::copy::{copy_closure, AnyStore, CopyOptions};
use firn_format::StorePath;

use crate::context::{usage, Ctx};
use crate::paths::follow_links_to_store_path;

pub fn main(args: Vec<String>) -> Result<()> {
    let (ctx, args) = Ctx::legacy(super::expand_short_flags(args))?;
    let mut to = true;
    let mut gzip = false;
    let mut include_outputs = false;
    let mut use_substitutes = false;
    let mut host = None;
    let mut paths = Vec::new();
    for a in args {
        match a.as_str() {
            "--to" => to = true,
            "--from" => to = false,
            "--gzip" => gzip = true,
            "--include-outputs" => include_outputs = true,
            // The destination first fetches what it can from its substituters.
            "--use-substitutes" | "-s" => use_substitutes = true,
            "--help" => {
                outln!("Usage: nix-copy-closure [--to | --from] [--gzip] [--include-outputs] [--use-substitutes | -s] [user@]machine paths...");
                return Ok(());
            }
            "--version" => {
                outln!("{}", crate::version_line("nix-copy-closure"));
                return Ok(());
            }
            s if s.starts_with('-') => return Err(usage(format!("unrecognised flag '{s}'"))),
            _ if host.is_none() => host = Some(a),
            _ => paths.push(a),
        }
    }
    let Some(host) = host else {
        return Err(usage("no host name specified"));
    };
    let uri = format!("ssh://{host}{}", if gzip { "?compress=true" } else { "" });
    let local = ctx.open_store()?;
    let remote = ctx.open_any_at(&uri)?;
    let sd = local.store_dir().clone();
    let mut set: BTreeSet<StorePath> = BTreeSet::new();
    for p in &paths {
        let p = if to {
            follow_links_to_store_path(&sd, p)?
        } else {
            sd.parse(p)?
        };
        if include_outputs && p.is_derivation() && to {
            for out in local.query_derivation_outputs(&p)?.into_values() {
                if local.is_valid_path(&out)? {
                    set.insert(out);
                }
            }
        }
        set.insert(p);
    }
    let local = AnyStore::Local(local);
    let (src, dst) = if to {
        (&local, &remote)
    } else {
        (&remote, &local)
    };
    // Copying from the remote host into the local store, the local store substitutes with
    // this command's substituters; copying to it, the remote does with its own.
    let local_subs = if use_substitutes && !to {
        ctx.substituters()?
    } else {
        None
    };
    let log = crate::cmd::copy::CopyLog::new(&ctx, src, dst);
    let opts = CopyOptions {
        jobs: 1,
        check_sigs: None,
        substitute: use_substitutes,
        dst_substituters: local_subs.as_ref(),
        on_start: Some(&|n| log.start(n)),
    };
    let report = copy_closure(src, dst, &set, &opts, &|p| log.path(p))?;
    crate::cmd::copy::finish(&sd, &report)
}
