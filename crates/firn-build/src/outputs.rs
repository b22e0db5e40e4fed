//! After a successful build: check and register the outputs as CppNix does. What the builder
//! left must not be writable by others nor owned by someone else; each output is then
//! canonicalised (permissions, times, ownership, no setuid), serialised once to compute its NAR
//! hash and size and to find its references (hash parts of the input closure and of the other
//! outputs), checked against a fixed-output hash, for cycles between outputs, and against
//! `allowedReferences` and friends (and, with structured attributes, the size limits), moved
//! from the sandbox into the store under its lock, and registered with the others in one
//! transaction.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use firn_format::derivation::Derivation;
use firn_format::{ContentAddress, FileIngestionMethod, Hash, HashAlgo, StoreDir, StorePath};
use firn_store::{LocalStore, ValidPathInfo};

use crate::refscan::ScanSink;
use crate::{BuildError, FailKind};

/// A checked output, ready to be moved into place and registered.
pub struct Checked {
    pub name: String,
    pub info: ValidPathInfo,
    /// Where the builder left it.
    pub location: PathBuf,
}

/// Why the outputs were refused.
pub struct Refused {
    pub kind: FailKind,
    pub msg: String,
}

impl From<BuildError> for Refused {
    fn from(e: BuildError) -> Refused {
        Refused {
            kind: FailKind::Rejected,
            msg: e.to_string(),
        }
    }
}

/// Canonicalise, hash, scan and check every output of `drv`; `allowedReferences` and
/// friends only with `apply_rules` (not for `--check`, as CppNix 2.8).
pub fn check_outputs(
    store: &LocalStore,
    drv_path: &StorePath,
    drv: &Derivation,
    outputs: &BTreeMap<String, StorePath>,
    location: &dyn Fn(&StorePath) -> PathBuf,
    input_closure: &BTreeSet<StorePath>,
    apply_rules: bool,
) -> Result<Vec<Checked>, Refused> {
    let sd = store.store_dir();
    let mut candidates: BTreeSet<StorePath> = input_closure.clone();
    candidates.extend(outputs.values().cloned());
    let mut checked = Vec::new();
    for (name, path) in outputs {
        let loc = location(path);
        let (nar_hash, nar_size, refs) = scan_output(sd, drv_path, name, path, &loc, &candidates)?;
        let mut info = ValidPathInfo::new(path.clone(), nar_hash.clone(), nar_size);
        info.references = refs;
        info.deriver = Some(drv_path.clone());
        info.ultimate = true;
        if let Some(o) = drv.outputs.get(name) {
            if let Some((method, expected)) = o.fixed() {
                let got = match method {
                    FileIngestionMethod::Recursive if expected.algo() == HashAlgo::Sha256 => {
                        nar_hash.clone()
                    }
                    FileIngestionMethod::Recursive => {
                        firn_store::nar_fs::hash_path(&loc, expected.algo())
                            .map_err(|e| BuildError::Other(e.to_string()))?
                            .0
                    }
                    FileIngestionMethod::Flat => {
                        let meta = fs::symlink_metadata(&loc)
                            .map_err(|e| BuildError::io("getting status of", &loc, e))?;
                        if !meta.is_file() {
                            return Err(Refused {
                                kind: FailKind::Rejected,
                                msg: format!(
                                    "output path '{}' should be a non-executable regular file since recursive hashing is not enabled (outputHashMode=flat)",
                                    sd.display(path)
                                ),
                            });
                        }
                        firn_store::local::hash_file(&loc, expected.algo())
                            .map_err(|e| BuildError::Other(e.to_string()))?
                            .0
                    }
                };
                if got != expected {
                    return Err(Refused {
                        kind: FailKind::HashMismatch,
                        msg: hash_mismatch_message(sd, drv_path, path, &expected, &got),
                    });
                }
                info.ca = Some(ContentAddress::Fixed(method, got));
            }
        }
        checked.push(Checked {
            name: name.clone(),
            info,
            location: loc,
        });
    }
    // Outputs referring to each other in a cycle cannot be registered one after the other:
    // CppNix refuses the build (also for `--check`).
    let refs: BTreeMap<&str, &BTreeSet<StorePath>> = checked
        .iter()
        .map(|c| (c.name.as_str(), &c.info.references))
        .collect();
    reference_order(&sd.display(drv_path), outputs, &|n| refs[n])?;
    if apply_rules {
        check_reference_rules(sd, drv, &checked, store)?;
    }
    Ok(checked)
}

/// Output `name` (store path `path`) of `drv_path` where the builder left it (`loc`):
/// refused if missing, canonicalised, then serialised once for its NAR hash and size and the
/// `candidates` it refers to.
pub fn scan_output(
    sd: &StoreDir,
    drv_path: &StorePath,
    name: &str,
    path: &StorePath,
    loc: &Path,
    candidates: &BTreeSet<StorePath>,
) -> Result<(Hash, u64, BTreeSet<StorePath>), Refused> {
    if fs::symlink_metadata(loc).is_err() {
        return Err(Refused {
            kind: FailKind::Rejected,
            msg: format!(
                "builder for '{}' failed to produce output path for output '{name}' at '{}'",
                sd.display(drv_path),
                sd.display(path)
            ),
        });
    }
    canonicalise_output(loc)?;
    let mut sink = ScanSink::new(candidates.iter());
    firn_store::nar_fs::dump_path(loc, &mut sink)
        .map_err(|e| BuildError::Other(format!("serialising '{}': {e}", loc.display())))?;
    Ok(sink.finish())
}

/// CppNix's check of what a successful builder left, before anything is canonicalised:
/// an output (other than a symlink) that is group- or world-writable, or (with a build user,
/// `owner`) not owned by the builder, may have been tampered with by someone else, and the
/// build is refused. Outputs are looked at in name order; the first missing one ends the
/// check (it is [`scan_output`]'s to report).
pub fn check_ownership(
    outputs: &BTreeMap<String, StorePath>,
    location: &dyn Fn(&StorePath) -> PathBuf,
    owner: Option<u32>,
) -> Result<(), Refused> {
    use std::os::unix::fs::MetadataExt;
    for (name, path) in outputs {
        let loc = location(path);
        let Ok(meta) = fs::symlink_metadata(&loc) else {
            return Ok(());
        };
        let writable = !meta.file_type().is_symlink() && meta.mode() & 0o022 != 0;
        if writable || owner.is_some_and(|uid| meta.uid() != uid) {
            return Err(Refused {
                kind: FailKind::Rejected,
                msg: format!(
                    "suspicious ownership or permission on '{}' for output '{name}'; rejecting this build output",
                    loc.display()
                ),
            });
        }
    }
    Ok(())
}

/// The output names with every output after the outputs it refers to (`refs` gives an
/// output's references), found as CppNix's `topoSort` does (depth first, names in order), so
/// that a cycle is reported with the same two outputs: "cycle detected in build of '…' in
/// the references of output '…' from output '…'".
pub(crate) fn reference_order<'a>(
    drv_shown: &str,
    outputs: &BTreeMap<String, StorePath>,
    refs: &dyn Fn(&str) -> &'a BTreeSet<StorePath>,
) -> Result<Vec<String>, Refused> {
    let by_path: BTreeMap<&StorePath, &String> = outputs.iter().map(|(n, p)| (p, n)).collect();
    let deps = |name: &String| -> Vec<String> {
        let names: BTreeSet<String> = refs(name)
            .iter()
            .filter(|r| Some(*r) != outputs.get(name))
            .filter_map(|r| by_path.get(r).map(|n| (*n).clone()))
            .collect();
        names.into_iter().collect()
    };
    let mut order = Vec::new();
    // 1: on the current path (CppNix's `parents`), 2: done.
    let mut state: BTreeMap<String, u8> = BTreeMap::new();
    for start in outputs.keys() {
        if state.get(start) == Some(&2) {
            continue;
        }
        let mut stack = vec![(start.clone(), deps(start), 0usize)];
        state.insert(start.clone(), 1);
        while let Some((name, ds, i)) = stack.last_mut() {
            if *i < ds.len() {
                let d = ds[*i].clone();
                *i += 1;
                match state.get(&d) {
                    Some(2) => {}
                    Some(_) => {
                        return Err(Refused {
                            kind: FailKind::Rejected,
                            msg: format!(
                                "cycle detected in build of '{drv_shown}' in the references of output '{d}' from output '{name}'"
                            ),
                        })
                    }
                    None => {
                        state.insert(d.clone(), 1);
                        let dd = deps(&d);
                        stack.push((d, dd, 0));
                    }
                }
            } else {
                state.insert(name.clone(), 2);
                order.push(name.clone());
                stack.pop();
            }
        }
    }
    Ok(order)
}

/// The fixed-output mismatch message, with the hashes in the forms a user can paste.
pub fn hash_mismatch_message(
    sd: &StoreDir,
    drv_path: &StorePath,
    path: &StorePath,
    expected: &Hash,
    got: &Hash,
) -> String {
    format!(
        "hash mismatch in fixed-output derivation '{}':\n         specified: {}\n            got:    {}\n       (as nix32: specified {}:{}, got {}:{}; output path '{}')",
        sd.display(drv_path),
        expected.to_sri(),
        got.to_sri(),
        expected.algo(),
        expected.to_nix32(),
        got.algo(),
        got.to_nix32(),
        sd.display(path),
    )
}

/// Permissions 0444/0555, modification time 1, no setuid/setgid, owned by us.
pub(crate) fn canonicalise_output(path: &Path) -> Result<(), BuildError> {
    use std::os::unix::fs::MetadataExt;
    // Our own uid: files the builder made as another user (a build user) are taken over.
    // SAFETY: geteuid/getegid cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let meta =
            fs::symlink_metadata(&p).map_err(|e| BuildError::io("getting status of", &p, e))?;
        if meta.uid() != uid || meta.gid() != gid {
            let c = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str()))
                .map_err(|_| BuildError::Other("a path contains a NUL byte".into()))?;
            // SAFETY: `c` is NUL-terminated.
            if unsafe { libc::lchown(c.as_ptr(), uid, gid) } == -1 {
                return Err(BuildError::io(
                    "changing ownership of",
                    &p,
                    std::io::Error::last_os_error(),
                ));
            }
        }
        if meta.is_dir() {
            // The directory may be unreadable as the builder left it.
            firn_store::canon::make_writable(&p)?;
            for e in fs::read_dir(&p).map_err(|e| BuildError::io("reading directory", &p, e))? {
                let e = e.map_err(|e| BuildError::io("reading directory", &p, e))?;
                stack.push(e.path());
            }
        }
    }
    firn_store::canon::canonicalise(path)?;
    Ok(())
}

/// Resolve an `allowedReferences`-style list: output names of this derivation or store paths.
fn resolve_spec(
    sd: &StoreDir,
    items: &[String],
    checked: &[Checked],
) -> Result<BTreeSet<StorePath>, BuildError> {
    let mut out = BTreeSet::new();
    for i in items {
        if let Some(c) = checked.iter().find(|c| &c.name == i) {
            out.insert(c.info.path.clone());
        } else if sd.is_in_store(i) {
            out.insert(sd.parse(i).map_err(|e| BuildError::Other(e.to_string()))?);
        } else {
            return Err(BuildError::Other(format!(
                "derivation contains an illegal reference specifier '{i}'"
            )));
        }
    }
    Ok(out)
}

/// The checks one output is subject to: from `outputChecks.<name>` with structured
/// attributes, else from the derivation's environment.
#[derive(Default)]
struct Rules {
    /// `maxSize` and `maxClosureSize` (bytes of NAR), only with structured attributes.
    max_size: Option<u64>,
    max_closure_size: Option<u64>,
    allowed_refs: Option<Vec<String>>,
    allowed_reqs: Option<Vec<String>>,
    disallowed_refs: Vec<String>,
    disallowed_reqs: Vec<String>,
}

/// A size limit as CppNix reads it (`get<uint64_t>`): a number, negative ones wrapping and
/// fractions cut; anything else is an error in nlohmann's words.
fn size_limit(v: &serde_json::Value) -> Result<u64, String> {
    if let Some(n) = v.as_u64() {
        Ok(n)
    } else if let Some(n) = v.as_i64() {
        Ok(n as u64)
    } else if let Some(f) = v.as_f64() {
        Ok(f as u64)
    } else {
        let kind = match v {
            serde_json::Value::Null => "null",
            serde_json::Value::Bool(_) => "boolean",
            serde_json::Value::String(_) => "string",
            serde_json::Value::Array(_) => "array",
            _ => "object",
        };
        Err(format!(
            "[json.exception.type_error.302] type must be number, but is {kind}"
        ))
    }
}

fn rules_for(drv: &Derivation, output: &str) -> Result<Rules, String> {
    let list = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    if let Some(json) = drv.env.get("__json") {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else {
            return Ok(Rules::default());
        };
        let Some(c) = v.get("outputChecks").and_then(|c| c.get(output)) else {
            return Ok(Rules::default());
        };
        return Ok(Rules {
            max_size: c.get("maxSize").map(size_limit).transpose()?,
            max_closure_size: c.get("maxClosureSize").map(size_limit).transpose()?,
            allowed_refs: c.get("allowedReferences").map(list),
            allowed_reqs: c.get("allowedRequisites").map(list),
            disallowed_refs: c.get("disallowedReferences").map(list).unwrap_or_default(),
            disallowed_reqs: c.get("disallowedRequisites").map(list).unwrap_or_default(),
        });
    }
    let words = |k: &str| {
        drv.env
            .get(k)
            .map(|s| s.split_ascii_whitespace().map(String::from).collect())
    };
    // Without structured attributes there are no size limits (CppNix 2.8 reads only these).
    Ok(Rules {
        allowed_refs: words("allowedReferences"),
        allowed_reqs: words("allowedRequisites"),
        disallowed_refs: words("disallowedReferences").unwrap_or_default(),
        disallowed_reqs: words("disallowedRequisites").unwrap_or_default(),
        ..Rules::default()
    })
}

pub(crate) fn check_reference_rules(
    sd: &StoreDir,
    drv: &Derivation,
    checked: &[Checked],
    store: &LocalStore,
) -> Result<(), Refused> {
    // The new outputs (not valid yet), for closures that run through them.
    let new_infos: BTreeMap<&StorePath, &ValidPathInfo> =
        checked.iter().map(|c| (&c.info.path, &c.info)).collect();
    // A closure and the sum of its NAR sizes.
    let closure = |start: &StorePath| -> Result<(BTreeSet<StorePath>, u64), BuildError> {
        let mut done = BTreeSet::new();
        let mut size = 0u64;
        let mut todo = vec![start.clone()];
        while let Some(p) = todo.pop() {
            if !done.insert(p.clone()) {
                continue;
            }
            if let Some(info) = new_infos.get(&p) {
                size = size.saturating_add(info.nar_size);
                todo.extend(info.references.iter().cloned());
            } else if let Some(info) = store.query_path_info_shared(&p)? {
                size = size.saturating_add(info.nar_size);
                todo.extend(info.references.iter().cloned());
            }
        }
        Ok((done, size))
    };
    for c in checked {
        let rules = rules_for(drv, &c.name).map_err(|msg| Refused {
            kind: FailKind::Rejected,
            msg,
        })?;
        let path = &c.info.path;
        // CppNix's order: the sizes first, then the references.
        if let Some(max) = rules.max_size.filter(|max| c.info.nar_size > *max) {
            return Err(Refused {
                kind: FailKind::Rejected,
                msg: format!(
                    "path '{}' is too large at {} bytes; limit is {max} bytes",
                    sd.display(path),
                    c.info.nar_size
                ),
            });
        }
        if let Some(max) = rules.max_closure_size {
            let (_, size) = closure(path)?;
            if size > max {
                return Err(Refused {
                    kind: FailKind::Rejected,
                    msg: format!(
                        "closure of path '{}' is too large at {size} bytes; limit is {max} bytes",
                        sd.display(path)
                    ),
                });
            }
        }
        let check = |allowed: bool, items: &[String], requisites: bool| -> Result<(), Refused> {
            let spec = resolve_spec(sd, items, checked)?;
            let used: BTreeSet<StorePath> = if requisites {
                closure(path)?.0
            } else {
                c.info.references.clone()
            };
            let bad: Vec<String> = used
                .iter()
                .filter(|p| *p != path)
                .filter(|p| spec.contains(*p) != allowed)
                .map(|p| sd.display(p))
                .collect();
            if bad.is_empty() {
                return Ok(());
            }
            // CppNix 2.8's words, for references and requisites alike.
            let mut msg = format!(
                "output '{}' is not allowed to refer to the following paths:",
                sd.display(path)
            );
            for b in bad {
                msg.push_str(&format!("\n         {b}"));
            }
            Err(Refused {
                kind: FailKind::Rejected,
                msg,
            })
        };
        if let Some(a) = &rules.allowed_refs {
            check(true, a, false)?;
        }
        if let Some(a) = &rules.allowed_reqs {
            check(true, a, true)?;
        }
        if !rules.disallowed_refs.is_empty() {
            check(false, &rules.disallowed_refs, false)?;
        }
        if !rules.disallowed_reqs.is_empty() {
            check(false, &rules.disallowed_reqs, true)?;
        }
    }
    Ok(())
}
