//! Evaluation errors. `throw` and failed assertions are catchable by `builtins.tryEval`;
//! everything else is not.

use thiserror::Error;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// `throw`: catchable.
    Throw,
    /// A failed `assert`: catchable.
    Assert,
    /// `abort`: never caught.
    Abort,
    /// Everything else (type errors, missing attributes, infinite recursion, ...).
    Other,
}

/// An evaluation error. Boxed, so that every `EResult` stays as small as its value (errors
/// are rare; results are returned by every evaluation step).
#[derive(Clone, Debug, Error)]
#[error("{}", .0.msg)]
pub struct EvalError(Box<ErrorData>);

#[derive(Clone, Debug)]
pub struct ErrorData {
    pub kind: ErrorKind,
    pub msg: String,
    /// `… while …` frames, innermost first.
    pub trace: Vec<String>,
    /// Where it happened, rendered (`at FILE:LINE:COL:` and the lines there); set by the
    /// evaluator for the innermost expression that failed.
    pub at: Option<String>,
}

impl std::ops::Deref for EvalError {
    type Target = ErrorData;
    fn deref(&self) -> &ErrorData {
        &self.0
    }
}

impl std::ops::DerefMut for EvalError {
    fn deref_mut(&mut self) -> &mut ErrorData {
        &mut self.0
    }
}

impl EvalError {
    pub fn new(msg: impl Into<String>) -> EvalError {
        EvalError::with_kind(ErrorKind::Other, msg)
    }

    pub fn with_kind(kind: ErrorKind, msg: impl Into<String>) -> EvalError {
        EvalError(Box::new(ErrorData {
            kind,
            msg: msg.into(),
            trace: Vec::new(),
            at: None,
        }))
    }

    /// The message, and with `trace` the `… while …` frames (`--show-trace`), outermost
    /// last, as CppNix prints them.
    pub fn render(&self, trace: bool) -> String {
        let mut s = self.msg.clone();
        if let Some(at) = self.at.as_deref().filter(|a| !a.is_empty()) {
            s.push('\n');
            s.push_str(at.trim_end());
        }
        if trace {
            for t in &self.trace {
                s.push_str("\n\n       … ");
                s.push_str(t);
            }
        }
        s
    }

    /// Is this caught by `tryEval`?
    pub fn catchable(&self) -> bool {
        matches!(self.kind, ErrorKind::Throw | ErrorKind::Assert)
    }
}

pub type EResult<T> = Result<T, EvalError>;

pub fn err<T>(msg: impl Into<String>) -> EResult<T> {
    Err(EvalError::new(msg))
}

/// An error about a file, as current Nix words the common cases: a missing path is "path
/// 'P' does not exist", a file where a directory was needed "'P' is not a directory";
/// otherwise "OP 'P': the system's message".
pub fn io_error(op: &str, path: &str, e: &std::io::Error) -> EvalError {
    match e.kind() {
        std::io::ErrorKind::NotFound => EvalError::new(format!("path '{path}' does not exist")),
        std::io::ErrorKind::NotADirectory => {
            // Through symlinks, as Nix resolves them before reading.
            let shown = std::fs::canonicalize(path)
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|_| path.to_string());
            EvalError::new(format!("'{shown}' is not a directory"))
        }
        _ => EvalError::new(format!("{op} '{path}': {e}")),
    }
}
