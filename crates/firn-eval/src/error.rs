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
    /// A bad name of a hash algorithm or format: CppNix's `UsageError`, which its command
    /// line tools follow with "Try 'PROGRAM --help' for more information.".
    Usage,
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
    /// The error had no position of its own when a builtin's frame (which has the call's)
    /// was added: with `--show-trace` its `at` is not shown, as current Nix has none there.
    pub at_in_frame: bool,
    /// For "infinite recursion encountered": the address of the thunk found being forced
    /// again (its first force adds "entering the infinite recursion"), else 0.
    pub blackhole: usize,
    /// Close names for a misspelt one (current Nix's suggestions), shown after the position
    /// as "Did you mean ...?".
    pub suggestions: Vec<String>,
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
            at_in_frame: false,
            blackhole: 0,
            suggestions: Vec::new(),
        }))
    }

    /// The message and its position, as printed after `error: `; with `trace`
    /// (`--show-trace`) and frames, current Nix's layout instead: a line break (so the
    /// prefix stands alone, see [`error_line`]), the `… while …` frames outermost first
    /// (repeats folded, see [`fold_frames`]), then `error: ` and the message.
    ///
    /// Without the frames, an error that has no position of its own (`at` empty) shows its
    /// innermost frame's, which current Nix would show in that frame.
    pub fn render(&self, trace: bool) -> String {
        let frames = trace && !self.trace.is_empty();
        let at = match self.at.as_deref() {
            _ if frames && self.at_in_frame => None,
            Some("") if !frames => self
                .trace
                .iter()
                .find_map(|f| f.find(FRAME_AT).map(|i| &f[i + 1..])),
            at => at.filter(|a| !a.is_empty()),
        };
        let mut s = indent_rest(&self.msg);
        if let Some(at) = at {
            s.push('\n');
            s.push_str(at.trim_end());
        }
        if let Some(hint) = firn_syntax::suggest::did_you_mean(&self.suggestions) {
            s.push_str("\n       ");
            s.push_str(&hint);
        }
        if !frames {
            return s;
        }
        let mut out = String::new();
        for item in fold_frames(self.trace.iter().rev().map(String::as_str)) {
            match item {
                Folded::Frame(f) => {
                    out.push_str("\n       … ");
                    out.push_str(&frame_layout(f));
                    out.push('\n');
                }
                Folded::Omitted(n) => {
                    out.push_str(&format!("\n       ({n} duplicate frames omitted)\n"));
                }
            }
        }
        out.push_str("\n       error: ");
        out.push_str(&s);
        out
    }

    /// Is this caught by `tryEval`?
    pub fn catchable(&self) -> bool {
        matches!(self.kind, ErrorKind::Throw | ErrorKind::Assert)
    }
}

/// `error: ` and a [`EvalError::render`]ed text (just `error:` before a text that starts on
/// the next line), as the CLI prints an error.
pub fn error_line(text: &str) -> String {
    if text.starts_with('\n') {
        format!("error:{text}")
    } else {
        format!("error: {text}")
    }
}

/// A frame of a `--show-trace` listing, or how many repeated frames were left out there.
#[derive(Debug, PartialEq, Eq)]
pub enum Folded<'a> {
    Frame(&'a str),
    Omitted(usize),
}

/// Current Nix's folding of repeated frames (given outermost first): a frame (text and
/// position) that was shown already is held back; the run of held-back frames is shown
/// anyway if it has at most 5, else it becomes "(N duplicate frames omitted)". What was
/// shown is remembered for the whole listing (CppNix means to forget it after each omission,
/// but clears a copy). Frames without text are not shown.
pub fn fold_frames<'a>(frames: impl Iterator<Item = &'a str>) -> Vec<Folded<'a>> {
    fn flush<'a>(out: &mut Vec<Folded<'a>>, held: &mut Vec<&'a str>) {
        if held.len() > 5 {
            out.push(Folded::Omitted(held.len()));
        } else {
            out.extend(held.iter().map(|f| Folded::Frame(f)));
        }
        held.clear();
    }
    let mut seen = std::collections::HashSet::new();
    let mut held = Vec::new();
    let mut out = Vec::new();
    for f in frames.filter(|f| !f.is_empty()) {
        if !seen.insert(f) {
            held.push(f);
            continue;
        }
        flush(&mut out, &mut held);
        out.push(Folded::Frame(f));
    }
    flush(&mut out, &mut held);
    out
}

/// Where a frame's position starts (see [`frame_layout`]).
const FRAME_AT: &str = "\n       at ";

/// A frame (its text, then maybe its position as [`crate::positions::Positions::render`]
/// gives it) laid out under its `… `: the position's `at` two columns further in.
fn frame_layout(frame: &str) -> String {
    match frame.find(FRAME_AT) {
        Some(i) => format!(
            "{}\n  {}",
            indent_rest(&frame[..i]),
            frame[i + 1..].trim_end()
        ),
        None => indent_rest(frame),
    }
}

/// A message's lines after the first indented to line up under its first (which follows
/// `error: ` or `… `), and no line with trailing blanks, as CppNix prints messages.
fn indent_rest(text: &str) -> String {
    let chomp = |l: &str| l.trim_end_matches([' ', '\t', '\r', '\n']).to_string();
    let mut lines = text.split('\n');
    let mut out = chomp(lines.next().unwrap_or_default());
    for l in lines {
        out.push('\n');
        let l = chomp(l);
        if !l.is_empty() {
            out.push_str("       ");
            out.push_str(&l);
        }
    }
    out
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
