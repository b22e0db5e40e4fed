//! `builtins.fetchClosure` (the `fetch-closure` experimental feature), as current Nix has it:
//! a store path's closure is copied from a binary cache into the local store, and the path is
//! given back as a string with itself as context, readable even in pure evaluation.
//!
//! Three forms, checked as current Nix checks them:
//! - `{ fromStore; fromPath; }`: the path must be content-addressed (it needs no signature);
//! - `{ fromStore; fromPath; toPath; }`: the closure is rewritten to content-addressed form
//!   (unless `toPath` is valid already) and `toPath` must be what `fromPath` became; with
//!   `toPath = ""` the error names the path to write there;
//! - `{ fromStore; fromPath; inputAddressed = true; }`: the path must be input-addressed (it
//!   is copied only if signed by a trusted key, unless `require-sigs` is off).
//!
//! Caches and copying belong to other crates: the program gives the evaluator a
//! [`ClosureSource`] ([`set_source`]), which does the copying and rewriting.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use firn_format::StorePath;
use firn_store::LocalStore;

use crate::builtins::{attrs_arg, force, string, PrimFn, ONLY};
use crate::builtins_drv::coerce_path_value;
use crate::error::{err, EResult, EvalError};
use crate::eval::Evaluator;
use crate::value::*;

/// What `fetchClosure` needs from binary caches. Errors are messages for the user.
pub trait ClosureSource: Send + Sync {
    /// Copy `path` and its closure from the cache `from` (a URL) into `to`, checking
    /// signatures as the settings say; paths `to` has are skipped.
    fn copy_closure(&self, to: &LocalStore, from: &str, path: &StorePath) -> Result<(), String>;

    /// Rewrite the closure of `path` in the cache `from` to content-addressed form, adding
    /// the rewritten paths to `to`; gives the path `path` became (CppNix's
    /// `makeContentAddressed`).
    fn make_content_addressed(
        &self,
        to: &LocalStore,
        from: &str,
        path: &StorePath,
    ) -> Result<StorePath, String>;
}

static SOURCE: OnceLock<Box<dyn ClosureSource>> = OnceLock::new();

/// Give this process's evaluators their way to binary caches (the first call counts).
pub fn set_source(source: Box<dyn ClosureSource>) {
    let _ = SOURCE.set(source);
}

fn source() -> EResult<&'static dyn ClosureSource> {
    match SOURCE.get() {
        Some(s) => Ok(s.as_ref()),
        None => err("'fetchClosure' cannot reach binary caches in this program"),
    }
}

/// The arguments, as given.
#[derive(Default)]
struct Args {
    from_store: Option<String>,
    from_path: Option<StorePath>,
    /// `Some(None)`: `toPath = ""`.
    to_path: Option<Option<StorePath>>,
    input_addressed: Option<bool>,
}

const FN: &str = "builtins.fetchClosure";

fn attr_frame(mut x: EvalError, name: &str) -> EvalError {
    x.trace.push(format!(
        "while evaluating the attribute '{name}' passed to {FN}"
    ));
    x
}

/// CppNix's `coerceToStorePath`: a path or string that is a store path itself (not a file
/// inside one).
fn store_path_of(ev: &mut Evaluator, v: &Value) -> EResult<StorePath> {
    let (s, _) = coerce_path_value(ev, v, None)?;
    match ev.store.dir.parse(&s) {
        Ok(p) => Ok(p),
        Err(_) => err(format!("path '{s}' is not in the Nix store")),
    }
}

fn read_args(ev: &mut Evaluator, t: &Thunk) -> EResult<Args> {
    let set = attrs_arg(ev, t, (ONLY, FN))?;
    let mut args = Args::default();
    for (name, value) in set.iter() {
        let name: &str = name;
        let with_frame = |x| attr_frame(x, name);
        match name {
            "fromPath" => {
                let v = force(ev, value).map_err(with_frame)?;
                args.from_path = Some(store_path_of(ev, &v).map_err(with_frame)?);
            }
            "toPath" => {
                let v = force(ev, value).map_err(with_frame)?;
                args.to_path = Some(match &v {
                    Value::String(s) if s.s.is_empty() => None,
                    _ => Some(store_path_of(ev, &v).map_err(with_frame)?),
                });
            }
            "fromStore" => {
                let s = string(ev, value).map_err(with_frame)?;
                let s = crate::eval::no_context(s).map_err(with_frame)?;
                args.from_store = Some(s.to_string());
            }
            "inputAddressed" => match force(ev, value).map_err(with_frame)? {
                Value::Bool(b) => args.input_addressed = Some(b),
                v => return Err(with_frame(ev.type_error("a Boolean", &v))),
            },
            _ => {
                return err(format!(
                    "attribute '{name}' isn't supported in call to 'fetchClosure'"
                ))
            }
        }
    }
    Ok(args)
}

/// Whether `url` is a store `fetchClosure` may fetch from: an HTTP(S) binary cache, or a
/// `file://` one when `_NIX_IN_TEST` is set (as in current Nix, for tests); no parameters.
fn check_store_url(url: &str) -> EResult<()> {
    let scheme = url.split_once("://").map(|(s, _)| s);
    let allowed = match scheme {
        Some("http") | Some("https") => true,
        Some("file") => std::env::var_os("_NIX_IN_TEST").is_some(),
        _ => false,
    };
    if !allowed {
        return err("'fetchClosure' only supports http:// and https:// stores");
    }
    if url.contains('?') {
        return err(format!(
            "'fetchClosure' does not support URL query parameters (in '{url}')"
        ));
    }
    Ok(())
}

fn fetch_closure(ev: &mut Evaluator, a: &[Thunk]) -> EResult<Value> {
    let args = read_args(ev, &a[0])?;
    let Some(from_path) = args.from_path else {
        return err("attribute 'fromPath' is missing in call to 'fetchClosure'");
    };
    let input_addressed = args.input_addressed.unwrap_or(false);
    if input_addressed && args.to_path.is_some() {
        return err(
            "attribute 'inputAddressed' is set to true, but 'toPath' is also set. Please remove one of them",
        );
    }
    let Some(from_store) = args.from_store else {
        return err("attribute 'fromStore' is missing in call to 'fetchClosure'");
    };
    check_store_url(&from_store)?;
    let Some(local) = ev.store.backend().cloned() else {
        return err("'fetchClosure' needs a local store to copy paths into");
    };
    let shown = |ev: &Evaluator, p: &StorePath| ev.store.dir.display(p);
    // The path given back stays while this process runs, even if a collection starts before
    // it is used (as current Nix, a temporary root from before its validity is checked).
    let root = match &args.to_path {
        Some(Some(p)) => Some(p),
        Some(None) => None,
        None => Some(&from_path),
    };
    if let Some(p) = root {
        local.add_temp_root(p).map_err(|e| {
            EvalError::new(format!(
                "adding a temporary root for '{}': {e}",
                shown(ev, p)
            ))
        })?;
    }
    let result = match args.to_path {
        Some(to_path) => {
            let valid = match &to_path {
                Some(p) => ev.store.is_valid(p)?,
                None => false,
            };
            let to_path = match to_path {
                Some(p) if valid => p,
                to_path => {
                    let made = source()?
                        .make_content_addressed(&local, &from_store, &from_path)
                        .map_err(EvalError::new)?;
                    match to_path {
                        Some(want) if want == made => want,
                        Some(want) => {
                            return err(format!(
                                "rewriting '{}' to content-addressed form yielded '{}', while '{}' was expected",
                                shown(ev, &from_path),
                                shown(ev, &made),
                                shown(ev, &want)
                            ))
                        }
                        None => {
                            return err(format!(
                                "rewriting '{}' to content-addressed form yielded '{}'\nUse this value for the 'toPath' attribute passed to 'fetchClosure'",
                                shown(ev, &from_path),
                                shown(ev, &made)
                            ))
                        }
                    }
                }
            };
            if !is_content_addressed(ev, &local, &to_path)? {
                return err(format!(
                    "The 'toPath' value '{}' is input-addressed, so it can't possibly be the result of rewriting to a content-addressed path.\n\nSet 'toPath' to an empty string to make Nix report the correct content-addressed path.",
                    shown(ev, &to_path)
                ));
            }
            to_path
        }
        None => {
            if !ev.store.is_valid(&from_path)? {
                source()?
                    .copy_closure(&local, &from_store, &from_path)
                    .map_err(EvalError::new)?;
            }
            let ca = is_content_addressed(ev, &local, &from_path)?;
            if input_addressed && ca {
                return err(format!(
                    "The store object referred to by 'fromPath' at '{}' is not input-addressed, but 'inputAddressed' is set to 'true'.\n\nRemove the 'inputAddressed' attribute (it defaults to 'false') to expect 'fromPath' to be content-addressed",
                    shown(ev, &from_path)
                ));
            }
            if !input_addressed && !ca {
                return err(format!(
                    "The 'fromPath' value '{}' is input-addressed, but 'inputAddressed' is set to 'false' (default).\n\nIf you do intend to fetch an input-addressed store path, add\n\n    inputAddressed = true;\n\nto the 'fetchClosure' arguments.\n\nNote that to ensure authenticity input-addressed store paths, users must configure a trusted binary cache public key on their systems. This is not needed for content-addressed paths.",
                    shown(ev, &from_path)
                ));
            }
            from_path
        }
    };
    // The whole closure is readable from here on, in pure evaluation too.
    let closure: BTreeSet<StorePath> = ev.store.closure(&result)?;
    for p in &closure {
        let s = shown(ev, p);
        ev.allow_store_path(&s);
    }
    Ok(Value::String(ev.allowed_store_string(&result)))
}

/// Whether valid path `p` follows from its content address (CppNix's `isContentAddressed`).
fn is_content_addressed(ev: &Evaluator, local: &LocalStore, p: &StorePath) -> EResult<bool> {
    let shown = ev.store.dir.display(p);
    let info = local
        .query_path_info(p)
        .map_err(|e| EvalError::new(format!("querying path '{shown}': {e}")))?;
    let Some(info) = info else {
        return err(format!("path '{shown}' is not valid"));
    };
    Ok(info.is_content_addressed(&ev.store.dir))
}

pub fn table() -> Vec<(&'static str, usize, PrimFn)> {
    vec![("fetchClosure", 1, fetch_closure)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls() {
        assert!(check_store_url("https://cache.nixos.org").is_ok());
        assert!(check_store_url("http://localhost:8080").is_ok());
        let e = check_store_url("s3://bucket").unwrap_err();
        assert_eq!(
            e.msg,
            "'fetchClosure' only supports http:// and https:// stores"
        );
        assert!(check_store_url("daemon").is_err());
        let e = check_store_url("https://c.example?priority=10").unwrap_err();
        assert!(e.msg.contains("does not support URL query parameters"));
    }
}
