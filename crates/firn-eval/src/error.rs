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
    /// The frames of `trace` (by index) that are not shown as most are (see [`FramePrint`]),
    /// in the order they were added.
    pub marks: Vec<(u32, FramePrint)>,
    /// Where the thunks this error failed keep it once it is caught: an index into the
    /// evaluator's `failed` errors (see `Evaluator::settle`).
    pub memo: Option<u32>,
}

/// When a frame is shown without `--show-trace` (current Nix's `TracePrint`, and its
/// frames added only with `--show-trace`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FramePrint {
    /// Among the first few frames, before the trace is truncated.
    Default,
    /// Even after the trace is truncated (`addErrorContext`, derivations, where an infinite
    /// recursion starts).
    Always,
    /// Only with `--show-trace` (the frames of a function call: "while calling 'f'" and its
    /// "from call site"), which current Nix adds only then.
    Verbose,
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
            marks: Vec::new(),
            memo: None,
        }))
    }

    /// Add frame `text` (outside the frames already there) that is shown as `print` says.
    /// (Out of line: callers' error paths are inlined in the evaluator's hot functions.)
    #[cold]
    #[inline(never)]
    pub fn push_frame(&mut self, text: String, print: FramePrint) {
        if print != FramePrint::Default {
            let i = self.trace.len() as u32;
            self.marks.push((i, print));
        }
        self.trace.push(text);
    }

    /// How frame `i` of `trace` is shown.
    pub fn frame_print(&self, i: usize) -> FramePrint {
        self.marks
            .iter()
            .find(|(j, _)| *j as usize == i)
            .map_or(FramePrint::Default, |(_, p)| *p)
    }

    /// The message and its position, as printed after `error: `, laid out as current Nix
    /// does: with frames to show, a line break (so the prefix stands alone, see
    /// [`error_line`]), the `… while …` frames outermost first (repeats folded, see
    /// [`fold_frames`]), then `error: ` and the message. With `trace` (`--show-trace`) all
    /// frames are shown; without, not those of function calls ([`FramePrint::Verbose`]), and
    /// only the first few before "(stack trace truncated; ...)" except those always shown.
    ///
    /// Without frames to show, an error that has no position of its own (`at` empty) shows
    /// its innermost frame's, which current Nix would show in that frame.
    pub fn render(&self, trace: bool) -> String {
        let shown = self.shown_frames(trace);
        self.layout(fold_frames_limited(shown.into_iter(), !trace), "error")
    }

    /// The message and its position without frames (as the repl shows an error in a value).
    pub fn render_alone(&self) -> String {
        self.layout((Vec::new(), false), "error")
    }

    /// This error's message, position and frames as current Nix logs a warning that has
    /// them: [`Self::render`] under `warning:` (every line two columns further in, as the
    /// prefix is two longer), with `warning: ` before the message.
    pub fn render_as_warning(&self, trace: bool) -> String {
        let shown = self.shown_frames(trace);
        let text = self.layout(fold_frames_limited(shown.into_iter(), !trace), "warning");
        let extra = "warning: ".len() - "error: ".len();
        let text = indent_lines(&text, extra);
        if text.starts_with('\n') {
            format!("warning:{text}")
        } else {
            format!("warning: {text}")
        }
    }

    /// [`Self::render`] with the frames to show, folded, and whether some were left out;
    /// `level` names what it is before the message (`error`) when frames come first.
    fn layout(&self, (folded, truncated): (Vec<Folded<'_>>, bool), level: &str) -> String {
        let frames = !folded.is_empty();
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
        for item in folded {
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
        if truncated {
            out.push_str(
                "\n       (stack trace truncated; use '--show-trace' to show the full, detailed trace)\n",
            );
        }
        out.push_str("\n       ");
        out.push_str(level);
        out.push_str(": ");
        out.push_str(&s);
        out
    }

    /// The frames (outermost first) that may be shown, with how: all with `trace`, else
    /// those not [`FramePrint::Verbose`].
    fn shown_frames(&self, trace: bool) -> Vec<(&str, FramePrint)> {
        let mut frames: Vec<(&str, FramePrint)> = self
            .trace
            .iter()
            .enumerate()
            .map(|(i, f)| (f.as_str(), self.frame_print(i)))
            .filter(|(_, p)| trace || *p != FramePrint::Verbose)
            .collect();
        frames.reverse();
        frames
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
    fold_frames_limited(frames.map(|f| (f, FramePrint::Default)), false).0
}

/// [`fold_frames`], and with `limit` (no `--show-trace`) current Nix's truncation: once the
/// frames shown count more than 3 (a frame with a position counts twice), only
/// [`FramePrint::Always`] frames are shown. Also says whether any frame was left out so.
pub fn fold_frames_limited<'a>(
    frames: impl Iterator<Item = (&'a str, FramePrint)>,
    limit: bool,
) -> (Vec<Folded<'a>>, bool) {
    let mut fold = Fold::default();
    let mut truncated = false;
    for (f, print) in frames.filter(|(f, _)| !f.is_empty()) {
        if limit && fold.count > 3 {
            truncated = true;
        }
        if truncated && print != FramePrint::Always {
            continue;
        }
        if !fold.seen.insert(f) {
            fold.held.push(f);
            continue;
        }
        fold.flush();
        fold.show(f);
    }
    fold.flush();
    (fold.out, truncated)
}

/// The state of [`fold_frames_limited`].
#[derive(Default)]
struct Fold<'a> {
    seen: std::collections::HashSet<&'a str>,
    /// Frames shown before, held back.
    held: Vec<&'a str>,
    out: Vec<Folded<'a>>,
    /// Frames shown, those with a position twice.
    count: usize,
}

impl<'a> Fold<'a> {
    fn show(&mut self, f: &'a str) {
        self.count += if f.contains(FRAME_AT) { 2 } else { 1 };
        self.out.push(Folded::Frame(f));
    }

    fn flush(&mut self) {
        let held = std::mem::take(&mut self.held);
        if held.len() > 5 {
            self.out.push(Folded::Omitted(held.len()));
        } else {
            for f in held {
                self.show(f);
            }
        }
    }
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
    indent_lines(text, "error: ".len())
}

/// `text`'s lines after the first indented by `width` columns (an empty line left empty),
/// each without trailing blanks: how CppNix lays out what follows a prefix of that width.
pub(crate) fn indent_lines(text: &str, width: usize) -> String {
    let chomp = |l: &str| l.trim_end_matches([' ', '\t', '\r', '\n']).to_string();
    let mut lines = text.split('\n');
    let mut out = chomp(lines.next().unwrap_or_default());
    for l in lines {
        out.push('\n');
        let l = chomp(l);
        if !l.is_empty() {
            out.extend(std::iter::repeat_n(' ', width));
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
