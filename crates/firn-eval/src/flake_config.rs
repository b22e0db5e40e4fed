//! A flake's `nixConfig`, as CppNix 2.8 reads and applies it:
//! - [`read`]: each setting's value as the configuration text would give it (a string; a
//!   path, copied to the store; an integer; `true`/`false`; a list of strings joined by
//!   spaces); any other value is an error.
//! - [`apply`] (for the commands that apply it: installables, `nix flake lock|update|check`,
//!   `nix run`): `bash-prompt`, `bash-prompt-prefix`, `bash-prompt-suffix` and
//!   `flake-registry` are taken; another setting only with `accept-flake-config`, or as the
//!   user's `trusted-settings.json` has its value, or as the user answers on a terminal
//!   (and may save the answer there); one not taken gets CppNix's warning. What is taken is
//!   kept for the command ([`accepted`]), which applies it to what it does next (builds),
//!   as CppNix sets its global configuration.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::sync::Mutex;

use crate::builtins::force;
use crate::error::{err, EResult, EvalError};
use crate::eval::Evaluator;
use crate::value::{Thunk, Value};

/// The settings any flake may set.
const SAFE: [&str; 4] = [
    "bash-prompt",
    "bash-prompt-prefix",
    "bash-prompt-suffix",
    "flake-registry",
];

/// The settings taken from flakes in this process, in order (CppNix's global configuration).
static ACCEPTED: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

/// The settings taken from flakes' `nixConfig` so far in this process.
pub fn accepted() -> Vec<(String, String)> {
    ACCEPTED.lock().map(|a| a.clone()).unwrap_or_default()
}

/// The settings of a `nixConfig` set (`t`), by name, with their values as text.
pub(crate) fn read(ev: &mut Evaluator, t: &Thunk) -> EResult<Vec<(String, String)>> {
    let Value::Attrs(set) = force(ev, t)? else {
        return err("flake attribute 'nixConfig' is not a set");
    };
    let mut out = Vec::new();
    for (name, t) in set.iter() {
        let v = force(ev, t)?;
        let text = match &v {
            Value::String(s) if s.context.is_empty() => s.s.to_string(),
            Value::String(s) => {
                return err(format!(
                    "the string '{}' is not allowed to refer to a store path (such as '{}')",
                    s.s,
                    s.context.first().map(|c| c.to_string()).unwrap_or_default()
                ))
            }
            Value::Path(_) => ev.coerce_to_string(&v, false, true)?.s.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::List(items) => {
                let mut words = Vec::new();
                for item in items.iter() {
                    match force(ev, item)? {
                        Value::String(s) => words.push(s.s.to_string()),
                        // CppNix 2.8 names the list's type here.
                        _ => {
                            return err(format!(
                                "list element in flake configuration setting '{name}' is a list while a string is expected"
                            ))
                        }
                    }
                }
                words.join(" ")
            }
            other => {
                return err(format!(
                    "flake configuration setting '{name}' is {}",
                    other.type_name()
                ))
            }
        };
        out.push((name.to_string(), text));
    }
    Ok(out)
}

/// Take a flake's settings (see the module's header); `accept`: `accept-flake-config`.
pub(crate) fn apply(settings: &[(String, String)], accept: bool) -> EResult<()> {
    let mut trusted_list: Option<BTreeMap<String, BTreeMap<String, bool>>> = None;
    for (name, value) in settings {
        let base = name.strip_prefix("extra-").unwrap_or(name);
        if !SAFE.contains(&base) && !accept {
            let list = match &mut trusted_list {
                Some(l) => l,
                None => trusted_list.insert(read_trusted_list()),
            };
            let trusted = match list.get(name).and_then(|values| values.get(value)) {
                Some(saved) => {
                    warn(&format!(
                        "Using saved setting for '{name} = {value}' from ~/.local/share/nix/trusted-settings.json."
                    ));
                    *saved
                }
                None => {
                    let trusted = ask(&format!(
                        "do you want to allow configuration setting '{name}' to be set to '\x1b[31;1m{value}\x1b[0m' (y/N)?"
                    ));
                    let what = if trusted { "trusted" } else { "untrusted" };
                    if ask(&format!(
                        "do you want to permanently mark this value as {what} (y/N)?"
                    )) {
                        list.entry(name.clone())
                            .or_default()
                            .insert(value.clone(), trusted);
                        write_trusted_list(list)?;
                    }
                    trusted
                }
            };
            if !trusted {
                warn(&format!(
                    "ignoring untrusted flake configuration setting '{name}'"
                ));
                continue;
            }
        }
        if let Ok(mut a) = ACCEPTED.lock() {
            a.push((name.clone(), value.clone()));
        }
    }
    Ok(())
}

fn warn(text: &str) {
    crate::term::write_stderr_line(&format!("warning: {text}"));
}

/// A yes-or-no question on the terminal (no, without one: CppNix's answer when it cannot
/// ask).
fn ask(question: &str) -> bool {
    if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
        return false;
    }
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "{question} ");
    let _ = err.flush();
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line).is_err() {
        return false;
    }
    line.trim_start().starts_with(['y', 'Y'])
}

/// `$XDG_DATA_HOME/nix/trusted-settings.json` (`~/.local/share` by default).
fn trusted_list_path() -> std::path::PathBuf {
    let data = match std::env::var_os("XDG_DATA_HOME") {
        Some(d) if !d.is_empty() => std::path::PathBuf::from(d),
        _ => std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
            .join(".local/share"),
    };
    data.join("nix/trusted-settings.json")
}

/// The saved answers, by setting and value (none if the file is missing or unreadable, as
/// CppNix reads it).
fn read_trusted_list() -> BTreeMap<String, BTreeMap<String, bool>> {
    std::fs::read_to_string(trusted_list_path())
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default()
}

fn write_trusted_list(list: &BTreeMap<String, BTreeMap<String, bool>>) -> EResult<()> {
    let path = trusted_list_path();
    let fail = |e: String| EvalError::new(format!("writing '{}': {e}", path.display()));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
    }
    let text = serde_json::to_string(list).map_err(|e| fail(e.to_string()))?;
    std::fs::write(&path, text).map_err(|e| fail(e.to_string()))
}
