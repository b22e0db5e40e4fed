//! Nix configuration: `nix.conf` files, `NIX_CONFIG`, and `--option`/setting flags.
//!
//! Settings are read in Nix's order, later sources overriding earlier ones: the system file
//! `$NIX_CONF_DIR/nix.conf` (default `/etc/nix`), the user files (`$XDG_CONFIG_DIRS` and
//! `$XDG_CONFIG_HOME`, `nix/nix.conf`; or only `$NIX_USER_CONF_FILES`), then `NIX_CONFIG`, then
//! the command line. `extra-NAME = v` appends to `NAME`; `include`/`!include` pull in other files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// What kind of value a known setting takes on the command line.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Value,
}

/// Settings firn knows, with their defaults (those that differ from "unset").
pub const KNOWN: &[(&str, Kind, &str)] = &[
    ("store", Kind::Value, "auto"),
    ("experimental-features", Kind::Value, ""),
    ("keep-outputs", Kind::Bool, "false"),
    ("keep-derivations", Kind::Bool, "true"),
    ("auto-optimise-store", Kind::Bool, "false"),
    ("max-jobs", Kind::Value, "1"),
    // (`cores`' default, the number of cores, is set when loading.)
    ("cores", Kind::Value, ""),
    ("sandbox", Kind::Value, "true"),
    ("substituters", Kind::Value, "https://cache.nixos.org/"),
    (
        "trusted-public-keys",
        Kind::Value,
        "cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=",
    ),
    ("require-sigs", Kind::Bool, "true"),
    ("secret-key-files", Kind::Value, ""),
    ("min-free", Kind::Value, "0"),
    ("max-free", Kind::Value, "18446744073709551615"),
    ("system", Kind::Value, "x86_64-linux"),
    ("fsync-metadata", Kind::Bool, "true"),
    ("fsync-store-paths", Kind::Bool, "false"),
    ("use-sqlite-wal", Kind::Bool, "true"),
    ("warn-dirty", Kind::Bool, "true"),
    // Evaluation.
    ("show-trace", Kind::Bool, "false"),
    ("pure-eval", Kind::Bool, "false"),
    ("restrict-eval", Kind::Bool, "false"),
    ("allow-import-from-derivation", Kind::Bool, "true"),
    ("abort-on-warn", Kind::Bool, "false"),
    ("trace-verbose", Kind::Bool, "false"),
    ("max-call-depth", Kind::Value, "10000"),
    ("lint-short-path-literals", Kind::Value, "ignore"),
    ("lint-absolute-path-literals", Kind::Value, "ignore"),
    ("lint-url-literals", Kind::Value, "ignore"),
    ("nix-path", Kind::Value, ""),
    ("allowed-uris", Kind::Value, ""),
    ("eval-cache", Kind::Bool, "true"),
    ("tarball-ttl", Kind::Value, "3600"),
    ("accept-flake-config", Kind::Bool, "false"),
    (
        "flake-registry",
        Kind::Value,
        "https://channels.nixos.org/flake-registry.json",
    ),
    // Building.
    ("timeout", Kind::Value, "0"),
    ("max-silent-time", Kind::Value, "0"),
    ("keep-going", Kind::Bool, "false"),
    ("keep-failed", Kind::Bool, "false"),
    ("run-diff-hook", Kind::Bool, "false"),
    ("diff-hook", Kind::Value, ""),
    ("keep-env-derivations", Kind::Bool, "false"),
    ("fallback", Kind::Bool, "false"),
    ("build-dir", Kind::Value, ""),
    ("sandbox-paths", Kind::Value, ""),
    ("sandbox-fallback", Kind::Bool, "true"),
    ("build-users-group", Kind::Value, ""),
    ("builders", Kind::Value, ""),
    ("builders-use-substitutes", Kind::Bool, "false"),
    (
        "system-features",
        Kind::Value,
        "benchmark big-parallel kvm nixos-test uid-range",
    ),
    ("extra-platforms", Kind::Value, ""),
    ("compress-build-log", Kind::Bool, "true"),
    ("max-build-log-size", Kind::Value, "0"),
    ("log-lines", Kind::Value, "10"),
    ("print-build-logs", Kind::Bool, "false"),
    ("print-missing", Kind::Bool, "true"),
    ("repeat", Kind::Value, "0"),
    ("pre-build-hook", Kind::Value, ""),
    ("post-build-hook", Kind::Value, ""),
    ("impure-env", Kind::Value, ""),
    ("filter-syscalls", Kind::Bool, "true"),
    ("allow-new-privileges", Kind::Bool, "false"),
    // Substitution and downloads.
    ("substitute", Kind::Bool, "true"),
    ("trusted-substituters", Kind::Value, ""),
    ("http-connections", Kind::Value, "25"),
    ("connect-timeout", Kind::Value, "0"),
    ("stalled-download-timeout", Kind::Value, "300"),
    ("download-attempts", Kind::Value, "5"),
    ("narinfo-cache-positive-ttl", Kind::Value, "2592000"),
    ("narinfo-cache-negative-ttl", Kind::Value, "3600"),
    ("netrc-file", Kind::Value, "/etc/nix/netrc"),
    ("ssl-cert-file", Kind::Value, ""),
    ("hashed-mirrors", Kind::Value, ""),
    // Users.
    ("trusted-users", Kind::Value, "root"),
    ("allowed-users", Kind::Value, "*"),
];

/// The effective configuration.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    values: BTreeMap<String, String>,
    /// Names the user set that Nix does not know (see [`Settings::set_user`]).
    unknown: std::collections::BTreeSet<String>,
    /// The settings given a value (not left at their defaults), by name.
    explicit: std::collections::BTreeSet<String>,
}

impl Settings {
    /// Load from the files and the environment (not yet the command line).
    pub fn load() -> Result<Settings> {
        let mut s = Settings::default();
        for (name, _, default) in KNOWN {
            s.values.insert(name.to_string(), default.to_string());
        }
        // As CppNix: `cores` is the number of cores unless configured.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        s.values.insert("cores".to_string(), cores.to_string());
        // As CppNix: root builds as the members of `nixbld` unless configured otherwise.
        // SAFETY: a plain getter.
        if unsafe { libc::geteuid() } == 0 {
            s.values
                .insert("build-users-group".to_string(), "nixbld".to_string());
        }
        let conf_dir = std::env::var_os("NIX_CONF_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/etc/nix"));
        s.apply_file(&conf_dir.join("nix.conf"), false)?;
        if let Some(files) = std::env::var_os("NIX_USER_CONF_FILES") {
            for f in std::env::split_paths(&files) {
                s.apply_file(&f, false)?;
            }
        } else {
            let dirs = std::env::var("XDG_CONFIG_DIRS").unwrap_or_else(|_| "/etc/xdg".into());
            for d in dirs.split(':').filter(|d| !d.is_empty()).rev() {
                s.apply_file(&Path::new(d).join("nix/nix.conf"), false)?;
            }
            let home = std::env::var_os("XDG_CONFIG_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
            if let Some(h) = home {
                s.apply_file(&h.join("nix/nix.conf"), false)?;
            }
        }
        if let Ok(text) = std::env::var("NIX_CONFIG") {
            s.apply_text(&text, Path::new("NIX_CONFIG"), None)?;
        }
        Ok(s)
    }

    fn apply_file(&mut self, path: &Path, must_exist: bool) -> Result<()> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("reading '{}'", path.display())),
        };
        self.apply_text(&text, path, path.parent())
    }

    /// Apply `name = value` lines; `dir` resolves relative `include`s.
    pub fn apply_text(&mut self, text: &str, origin: &Path, dir: Option<&Path>) -> Result<()> {
        for (lineno, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            if words[0] == "include" || words[0] == "!include" {
                if words.len() != 2 {
                    bail!(
                        "syntax error in configuration line '{}' in '{}'",
                        raw,
                        origin.display()
                    );
                }
                let p = match dir {
                    Some(d) => d.join(words[1]),
                    None => PathBuf::from(words[1]),
                };
                self.apply_file(&p, words[0] == "include")?;
                continue;
            }
            let Some((name, value)) = line.split_once('=') else {
                bail!(
                    "illegal configuration line '{}' in '{}' (line {})",
                    raw,
                    origin.display(),
                    lineno + 1
                );
            };
            let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
            self.set_user(name.trim(), &value);
        }
        Ok(())
    }

    /// A setting as the user gives it (a configuration file, `NIX_CONFIG`, `--option`): an
    /// old name stands for its setting; a name Nix does not know is not applied but
    /// remembered, to be warned about as Nix does ([`Settings::warn_unknown`]).
    pub fn set_user(&mut self, name: &str, value: &str) {
        let (extra, base) = match name.strip_prefix("extra-") {
            Some(b) => ("extra-", b),
            None => ("", name),
        };
        let base = crate::setting_names::ALIASES
            .iter()
            .find(|(alias, _)| *alias == base)
            .map_or(base, |(_, target)| target);
        if !crate::setting_names::is_nix_setting(base) {
            self.unknown.insert(name.to_string());
            return;
        }
        self.set(&format!("{extra}{base}"), value);
    }

    /// Nix's "unknown setting" warnings for the names [`Settings::set_user`] did not know.
    pub fn warn_unknown(&self) {
        for name in &self.unknown {
            eprintln!("warning: unknown setting '{name}'");
        }
    }

    /// Set a setting; `extra-NAME` appends.
    pub fn set(&mut self, name: &str, value: &str) {
        self.explicit
            .insert(name.strip_prefix("extra-").unwrap_or(name).to_string());
        if let Some(base) = name.strip_prefix("extra-") {
            let e = self.values.entry(base.to_string()).or_default();
            if e.is_empty() {
                *e = value.to_string();
            } else if !value.is_empty() {
                e.push(' ');
                e.push_str(value);
            }
        } else {
            self.values.insert(name.to_string(), value.to_string());
        }
    }

    /// Whether `name` was given a value (by a configuration file, the environment or the
    /// command line), rather than left at its default.
    pub fn is_set(&self, name: &str) -> bool {
        self.explicit.contains(name)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    pub fn get_bool(&self, name: &str) -> bool {
        matches!(self.get(name), Some("true") | Some("1") | Some("yes"))
    }

    /// A whitespace-separated list setting.
    pub fn get_list(&self, name: &str) -> Vec<String> {
        self.get(name)
            .map(|v| v.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// `max-call-depth`, which must be a positive integer (Nix's message otherwise).
    pub fn max_call_depth(&self) -> anyhow::Result<usize> {
        match self.get("max-call-depth") {
            None => Ok(firn_eval::eval::MAX_CALL_DEPTH),
            Some(v) => v
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    anyhow::anyhow!("configuration setting 'max-call-depth' should be an integer")
                }),
        }
    }

    /// The parser's lints: `lint-short-path-literals`, `lint-absolute-path-literals` and
    /// `lint-url-literals` (`ignore` when unset; Nix's message for another value).
    pub fn lints(&self) -> anyhow::Result<firn_syntax::Lints> {
        let mut lints = firn_syntax::Lints::default();
        for name in firn_syntax::Lints::SETTINGS {
            let Some(v) = self.get(name) else { continue };
            let level = v.trim().parse().map_err(|_| {
                let bad = firn_syntax::lint::BadDiagnose(v.to_string());
                crate::context::usage(format!("option '{name}' has {bad}"))
            })?;
            lints.set(name, level);
        }
        Ok(lints)
    }

    /// Whether the experimental feature `name` is enabled (`experimental-features`, also
    /// through `extra-experimental-features`).
    pub fn has_feature(&self, name: &str) -> bool {
        self.get("experimental-features")
            .is_some_and(|v| v.split_whitespace().any(|f| f == name))
    }

    /// The experimental features that matter to an evaluation.
    pub fn eval_features(&self) -> firn_eval::Features {
        firn_eval::Features {
            native_code: self.get_bool("allow-unsafe-native-code-during-evaluation"),
            ..firn_eval::Features::from_names(self.get("experimental-features").unwrap_or(""))
        }
    }
}

/// Options common to every command, taken out of the argument list before the command's own
/// parser sees it.
#[derive(Clone, Debug, Default)]
pub struct Common {
    pub verbosity: i32,
}

/// Settings that CppNix 2.8 has only as flags of `nix` (`-L`/`--print-build-logs`), not as
/// settings: its legacy commands (`nix-build`, `nix-store`, ...) refuse `--NAME` and
/// `--no-NAME` as unknown flags, so firn's leave them to the command's own parser there.
const NIX_COMMAND_ONLY: &[&str] = &["print-build-logs"];

/// Remove the global options (`--option N V`, `--store URI`, `-v`, `--quiet`, `--debug`,
/// `--log-format F`, `-j N`, `--experimental-features`, and `--NAME [V]` / `--no-NAME` for known
/// settings, but for a `legacy` command not those of [`NIX_COMMAND_ONLY`]) from `args`,
/// applying them to `settings`.
pub fn take_common_args(
    args: Vec<String>,
    settings: &mut Settings,
    legacy: bool,
) -> Result<(Vec<String>, Common)> {
    let mut out = Vec::with_capacity(args.len());
    let mut common = Common::default();
    let mut it = args.into_iter();
    let need = |it: &mut std::vec::IntoIter<String>, flag: &str| -> Result<String> {
        it.next()
            .with_context(|| format!("flag '{flag}' requires an argument"))
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--" => {
                out.push(a);
                out.extend(it.by_ref());
                break;
            }
            "--option" => {
                let n = need(&mut it, "--option")?;
                let v = need(&mut it, "--option")?;
                settings.set_user(&n, &v);
            }
            "-v" | "--verbose" => common.verbosity += 1,
            "--quiet" => common.verbosity -= 1,
            "--debug" => common.verbosity = 4,
            "--log-format" => {
                let v = need(&mut it, "--log-format")?;
                settings.set("log-format", &v);
            }
            "-j" | "--max-jobs" => {
                let v = need(&mut it, &a)?;
                settings.set("max-jobs", &v);
            }
            // A short flag's value may follow it at once, as in `-j2` or `-jauto`.
            j if j.len() > 2 && j.starts_with("-j") => settings.set("max-jobs", &j[2..]),
            _ => {
                if let Some(name) = a.strip_prefix("--") {
                    let (base, negated) = match name.strip_prefix("no-") {
                        Some(b) => (b, true),
                        None => (name, false),
                    };
                    let lookup = base.strip_prefix("extra-").unwrap_or(base);
                    let known = KNOWN
                        .iter()
                        .find(|(n, _, _)| *n == lookup)
                        .filter(|_| !(legacy && NIX_COMMAND_ONLY.contains(&lookup)));
                    if let Some((_, kind, _)) = known {
                        match kind {
                            Kind::Bool => {
                                settings.set(base, if negated { "false" } else { "true" });
                                continue;
                            }
                            Kind::Value if !negated => {
                                let v = need(&mut it, &a)?;
                                settings.set(base, &v);
                                continue;
                            }
                            Kind::Value => {}
                        }
                    }
                }
                if a.len() > 2
                    && a.starts_with('-')
                    && !a.starts_with("--")
                    && a[1..].bytes().all(|b| b == b'v')
                {
                    common.verbosity += (a.len() - 1) as i32;
                    continue;
                }
                out.push(a);
            }
        }
    }
    Ok((out, common))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_lines_and_extra() {
        let mut s = Settings::default();
        s.apply_text(
            "substituters = a b # comment\nextra-substituters = c\n\n",
            Path::new("t"),
            None,
        )
        .unwrap();
        assert_eq!(s.get_list("substituters"), vec!["a", "b", "c"]);
        assert!(s.apply_text("nonsense", Path::new("t"), None).is_err());
    }

    #[test]
    fn old_names_and_unknown_settings() {
        let mut s = Settings::default();
        s.apply_text(
            "build-use-sandbox = false\nextra-binary-caches = x\nno-such-thing = 1\nprint-build-logs = true\n",
            Path::new("t"),
            None,
        )
        .unwrap();
        assert_eq!(s.get("sandbox"), Some("false"));
        assert_eq!(s.get_list("substituters"), vec!["x"]);
        // Nix has `print-build-logs` only as a flag of `nix`: as a setting it is unknown.
        assert!(!s.get_bool("print-build-logs"));
        assert_eq!(
            s.unknown.iter().collect::<Vec<_>>(),
            ["no-such-thing", "print-build-logs"]
        );
    }

    #[test]
    fn common_args_are_taken() {
        let mut s = Settings::default();
        let args = [
            "--store",
            "/x",
            "-vv",
            "store",
            "--option",
            "cores",
            "3",
            "--option",
            "no-such-setting",
            "b",
            "--keep-outputs",
            "--run-diff-hook",
            "--diff-hook",
            "/bin/hook",
            "p",
        ]
        .map(String::from)
        .to_vec();
        let (rest, c) = take_common_args(args, &mut s, false).unwrap();
        assert_eq!(rest, vec!["store", "p"]);
        assert_eq!(c.verbosity, 2);
        assert_eq!(s.get("store"), Some("/x"));
        assert_eq!(s.get("cores"), Some("3"));
        assert_eq!(s.get("no-such-setting"), None);
        assert!(s.unknown.contains("no-such-setting"));
        assert!(s.get_bool("keep-outputs"));
        assert!(s.get_bool("run-diff-hook"));
        assert_eq!(s.get("diff-hook"), Some("/bin/hook"));
        // `-j` with its value attached, as CppNix's short flags take one.
        for (flag, jobs) in [("-j3", "3"), ("-jauto", "auto")] {
            let (rest, _) =
                take_common_args(vec![flag.to_string(), "p".into()], &mut s, false).unwrap();
            assert_eq!(rest, vec!["p"]);
            assert_eq!(s.get("max-jobs"), Some(jobs));
        }
    }

    #[test]
    fn nix_only_flags_are_left_to_legacy_commands() {
        let args = [
            "--print-build-logs",
            "--no-print-build-logs",
            "--keep-going",
        ]
        .map(String::from);
        let mut s = Settings::default();
        let (rest, _) = take_common_args(args.to_vec(), &mut s, true).unwrap();
        assert_eq!(rest, vec!["--print-build-logs", "--no-print-build-logs"]);
        let mut s = Settings::default();
        let (rest, _) = take_common_args(args[..1].to_vec(), &mut s, false).unwrap();
        assert!(rest.is_empty());
        assert!(s.get_bool("print-build-logs"));
    }
}
