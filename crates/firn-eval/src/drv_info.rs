//! Finding the derivations in a value, as `nix-instantiate`, `nix-build` and `nix-env` do
//! (CppNix's `getDerivations`): a derivation itself; the derivations among a set's attributes
//! (valid names only, in name order, entering nested sets that say
//! `recurseForDerivations = true`); the derivations in a list.

use std::collections::HashSet;
use std::rc::Rc;

use crate::error::{err, EResult};
use crate::eval::Evaluator;
use crate::value::{AttrMap, Value};

/// A derivation found in a value, with where it was found.
#[derive(Clone)]
pub struct DrvInfo {
    /// The attribute path, dotted (`hello`, `pkgs.hello`, `0`).
    pub attr_path: String,
    pub attrs: Rc<crate::value::AttrSet>,
}

impl DrvInfo {
    fn string_attr(&self, ev: &mut Evaluator, name: &str) -> EResult<Option<String>> {
        match self.attrs.get(name) {
            Some(t) => {
                let v = ev.force(&t.clone())?;
                Ok(Some(ev.coerce_to_string(&v, false, false)?.s.to_string()))
            }
            None => Ok(None),
        }
    }

    /// `drvPath`, which a derivation must have.
    pub fn drv_path(&self, ev: &mut Evaluator) -> EResult<String> {
        match self.string_attr(ev, "drvPath")? {
            Some(p) => Ok(p),
            None => err(format!(
                "derivation '{}' has no 'drvPath' attribute",
                self.attr_path
            )),
        }
    }

    /// `outPath`.
    pub fn out_path(&self, ev: &mut Evaluator) -> EResult<String> {
        match self.string_attr(ev, "outPath")? {
            Some(p) => Ok(p),
            None => err(format!(
                "derivation '{}' has no 'outPath' attribute",
                self.attr_path
            )),
        }
    }

    /// `outputName`, or empty.
    pub fn output_name(&self, ev: &mut Evaluator) -> EResult<String> {
        Ok(self.string_attr(ev, "outputName")?.unwrap_or_default())
    }
}

fn is_valid_attr_name(n: &str) -> bool {
    let mut chars = n.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '+'))
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// If `v` is a derivation, record it (once) and say so; `false` means "look inside".
fn take_if_derivation(
    ev: &mut Evaluator,
    v: &Value,
    path: &str,
    out: &mut Vec<DrvInfo>,
    done: &mut HashSet<*const crate::value::AttrSet>,
) -> EResult<bool> {
    let Value::Attrs(a) = v else {
        return Ok(false);
    };
    if !ev.is_derivation(a)? {
        return Ok(false);
    }
    if done.insert(Rc::as_ptr(a)) {
        out.push(DrvInfo {
            attr_path: path.to_string(),
            attrs: a.clone(),
        });
    }
    Ok(true)
}

/// The derivations in `v` (functions are called with `auto_args` first).
pub fn get_derivations(ev: &mut Evaluator, v: Value, auto_args: &AttrMap) -> EResult<Vec<DrvInfo>> {
    let mut out = Vec::new();
    let mut done = HashSet::new();
    walk(ev, v, "", auto_args, &mut out, &mut done)?;
    Ok(out)
}

fn walk(
    ev: &mut Evaluator,
    v: Value,
    path: &str,
    auto_args: &AttrMap,
    out: &mut Vec<DrvInfo>,
    done: &mut HashSet<*const crate::value::AttrSet>,
) -> EResult<()> {
    let v = ev.auto_call(v, auto_args)?;
    if take_if_derivation(ev, &v, path, out, done)? {
        return Ok(());
    }
    match &v {
        Value::Attrs(a) => {
            let combine = a.contains_key("_combineChannels");
            for (name, t) in a.iter() {
                if !is_valid_attr_name(name) {
                    continue;
                }
                let p = join(path, name);
                let x = ev.force(&t.clone())?;
                if combine {
                    walk(ev, x, &p, auto_args, out, done)?;
                } else if !take_if_derivation(ev, &x, &p, out, done)? {
                    if let Value::Attrs(inner) = &x {
                        if let Some(r) = inner.get("recurseForDerivations") {
                            if matches!(ev.force(&r.clone())?, Value::Bool(true)) {
                                walk(ev, x.clone(), &p, auto_args, out, done)?;
                            }
                        }
                    }
                }
            }
            Ok(())
        }
        Value::List(items) => {
            for (i, t) in items.iter().enumerate() {
                let p = join(path, &i.to_string());
                let x = ev.force(t)?;
                if !take_if_derivation(ev, &x, &p, out, done)? {
                    walk(ev, x, &p, auto_args, out, done)?;
                }
            }
            Ok(())
        }
        _ => err("expression does not evaluate to a derivation (or a set or list of those)"),
    }
}
