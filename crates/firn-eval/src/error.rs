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

#[derive(Clone, Debug, Error)]
#[error("{msg}")]
pub struct EvalError {
    pub kind: ErrorKind,
    pub msg: String,
    /// `… while …` frames, innermost first.
    pub trace: Vec<String>,
    /// Where it happened, rendered (`at FILE:LINE:COL:` and the lines there); set by the
    /// evaluator for the innermost expression that failed.
    pub at: Option<String>,
}

impl EvalError {
    pub fn new(msg: impl Into<String>) -> EvalError {
        EvalError {
            kind: ErrorKind::Other,
            msg: msg.into(),
            trace: Vec::new(),
            at: None,
        }
    }

    pub fn with_kind(kind: ErrorKind, msg: impl Into<String>) -> EvalError {
        EvalError {
            kind,
            msg: msg.into(),
            trace: Vec::new(),
            at: None,
        }
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
