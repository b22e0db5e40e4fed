//! Lints of the parser: current Nix's settings `lint-short-path-literals`,
//! `lint-absolute-path-literals` and `lint-url-literals`, each `ignore` (the default),
//! `warn` (the parse goes on; the warning is handed back with the result) or `fatal` (a
//! parse error).

use std::str::FromStr;

use thiserror::Error;

/// What to do about a construct a lint is about (current Nix's `Diagnose`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Diagnose {
    #[default]
    Ignore,
    Warn,
    Fatal,
}

/// A lint setting's value that is none of `ignore`, `warn`, `fatal`.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("invalid value '{0}' (expected 'ignore', 'warn', or 'fatal')")]
pub struct BadDiagnose(pub String);

impl FromStr for Diagnose {
    type Err = BadDiagnose;

    fn from_str(s: &str) -> Result<Diagnose, BadDiagnose> {
        match s {
            "ignore" => Ok(Diagnose::Ignore),
            "warn" => Ok(Diagnose::Warn),
            "fatal" => Ok(Diagnose::Fatal),
            _ => Err(BadDiagnose(s.to_string())),
        }
    }
}

/// The lint settings a parse follows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lints {
    /// `lint-short-path-literals`: a relative path literal not starting with `.` (`a/b`).
    pub short_path_literals: Diagnose,
    /// `lint-absolute-path-literals`: a path literal starting with `/` or `~/`.
    pub absolute_path_literals: Diagnose,
    /// `lint-url-literals`: an unquoted URL (`http://example.com`).
    pub url_literals: Diagnose,
}

impl Lints {
    /// The settings' names, as in `nix.conf`.
    pub const SETTINGS: [&'static str; 3] = [
        "lint-short-path-literals",
        "lint-absolute-path-literals",
        "lint-url-literals",
    ];

    /// Set the lint named `setting` (one of [`Lints::SETTINGS`]); false for another name.
    pub fn set(&mut self, setting: &str, level: Diagnose) -> bool {
        let slot = match setting {
            "lint-short-path-literals" => &mut self.short_path_literals,
            "lint-absolute-path-literals" => &mut self.absolute_path_literals,
            "lint-url-literals" => &mut self.url_literals,
            _ => return false,
        };
        *slot = level;
        true
    }
}

/// The message of a lint that applies to the literal `literal` (as written), without the
/// setting's name; `fatal` words the URL lint as an error.
pub fn url_message(literal: &str, fatal: bool) -> String {
    let how = if fatal { "disallowed" } else { "discouraged" };
    format!("URL literals are {how}. Consider using a string literal \"{literal}\" instead")
}

/// The message of `lint-absolute-path-literals` for `literal` (`home`: a `~/` path).
pub fn absolute_message(literal: &str, home: bool) -> String {
    let what = if home { "home" } else { "absolute" };
    format!(
        "{what} path literals are not portable. Consider replacing path literal '{literal}' by \
         a string, relative path, or parameter"
    )
}

/// The message of `lint-short-path-literals` for `literal`.
pub fn short_message(literal: &str) -> String {
    format!(
        "relative path literal '{literal}' should be prefixed with '.' for clarity: './{literal}'"
    )
}
