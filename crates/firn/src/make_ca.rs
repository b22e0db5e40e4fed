//! Rewriting a closure to content-addressed form, as CppNix's `makeContentAddressed`: for
//! `nix store make-content-addressed` and `builtins.fetchClosure { toPath = …; }`.
//!
//! Each path of the closure, references first, is read as a NAR from the source store; the
//! paths it refers to that were rewritten before are replaced (whole printed store paths, as
//! CppNix replaces them); the result is hashed with its own hash part zeroed (CppNix's hash
//! modulo, [`ModuloSink`]), which gives a fixed-output (`source`) path with the same name
//! and references; its own hash part is then rewritten to the new one and the path is added
//! to the destination with that content address. A content-addressed path needs no
//! signature, so the rewritten closure can be trusted anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use anyhow::{Context, Result};
use firn_build::ca::ModuloSink;
use firn_build::rewrite::{HashRewriter, Rewrites};
use firn_cache::copy::AnyStore;
use firn_format::{ContentAddress, FileIngestionMethod, Hash, HashAlgo, StorePath};
use firn_store::ValidPathInfo;

/// Where rewritten paths go: given each path's info and NAR, in reference order.
pub type AddPath<'a> = dyn FnMut(&ValidPathInfo, &[u8]) -> Result<()> + 'a;

/// Rewrite the closure of `roots` in `src`, adding each rewritten path with `add` unless
/// `has` says the destination has it already; `show` is told of each rewrite as it starts
/// (CppNix logs `rewriting 'OLD' to 'NEW'`). Returns what each path of the closure became.
pub fn make_content_addressed(
    src: &AnyStore,
    roots: &BTreeSet<StorePath>,
    jobs: usize,
    has: &dyn Fn(&StorePath) -> Result<bool>,
    add: &mut AddPath<'_>,
    show: &dyn Fn(&str),
) -> Result<BTreeMap<StorePath, StorePath>> {
    let sd = src.store_dir().clone();
    let infos = firn_cache::copy::closure_infos(src, roots, jobs)?;
    let all: BTreeSet<StorePath> = infos.keys().cloned().collect();
    let mut order = firn_store::topo::topo_sort(&all, |p| {
        infos
            .get(p)
            .map(|i| i.references.clone())
            .unwrap_or_default()
    })
    .map_err(anyhow::Error::msg)?;
    // The sort puts referrers first.
    order.reverse();
    let mut remapped: BTreeMap<StorePath, StorePath> = BTreeMap::new();
    for path in order {
        let Some(info) = infos.get(&path) else {
            continue;
        };
        let shown = sd.display(&path);
        let mut nar = Vec::with_capacity(usize::try_from(info.nar_size).unwrap_or(0));
        src.dump_nar(&path, &mut nar)
            .with_context(|| format!("reading the NAR of '{shown}'"))?;
        // A cache's NAR is checked against its narinfo here (CppNix 2.8 takes it as it is):
        // a rewritten path vouches for its contents, so they must be the ones signed for.
        let got = Hash::digest(info.nar_hash.algo(), &nar);
        if got != info.nar_hash || (info.nar_size != 0 && nar.len() as u64 != info.nar_size) {
            anyhow::bail!(
                "the NAR of '{shown}' in '{}' does not match its information: hash '{}' and size {}, expected '{}' and size {}",
                src.describe(),
                got.to_sri(),
                nar.len(),
                info.nar_hash.to_sri(),
                info.nar_size
            );
        }
        let mut rewrites = BTreeMap::new();
        let mut references = BTreeSet::new();
        let mut self_ref = false;
        for r in &info.references {
            if *r == path {
                self_ref = true;
                continue;
            }
            let to = remapped.get(r).unwrap_or(r);
            if to != r {
                rewrites.insert(sd.display(r), sd.display(to));
            }
            references.insert(to.clone());
        }
        let nar = firn_format::rewrite::rewrite_bytes(nar, &rewrites);
        let mut modulo = ModuloSink::new(HashAlgo::Sha256, path.hash_part());
        modulo.write_all(&nar).context("hashing a NAR in memory")?;
        let hash = modulo.finish();
        let new = sd
            .make_fixed_output_path(
                path.name(),
                FileIngestionMethod::Recursive,
                &hash,
                &references,
                self_ref,
            )
            .with_context(|| format!("making the content-addressed path of '{shown}'"))?;
        show(&format!("rewriting '{shown}' to '{}'", sd.display(&new)));
        if !has(&new)? {
            let pair = Rewrites::new([(&path, &new)]);
            let mut rewriter = HashRewriter::new(&pair, Vec::with_capacity(nar.len()));
            rewriter
                .write_all(&nar)
                .context("rewriting a NAR in memory")?;
            let out = rewriter.finish().context("rewriting a NAR in memory")?;
            let mut new_info = ValidPathInfo::new(
                new.clone(),
                Hash::digest(HashAlgo::Sha256, &out),
                out.len() as u64,
            );
            new_info.references = references;
            if self_ref {
                new_info.references.insert(new.clone());
            }
            new_info.ca = Some(ContentAddress::Fixed(FileIngestionMethod::Recursive, hash));
            add(&new_info, &out).with_context(|| format!("adding '{}'", sd.display(&new)))?;
        }
        remapped.insert(path, new);
    }
    Ok(remapped)
}
