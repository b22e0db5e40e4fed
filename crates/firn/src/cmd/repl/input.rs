//! Reading the repl's input. On a terminal: rustyline (line editing, Tab completion through
//! [`super::complete`], history in `~/.local/share/nix/repl-history`, one line per entry as
//! CppNix's editline keeps it, so both can share the file). Otherwise lines are read plainly
//! and echoed after the prompt, as CppNix prints piped input.

use std::cell::RefCell;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::rc::Rc;

use rustyline::completion::Completer;
use rustyline::config::{CompletionType, Config};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{Context, Editor, Helper};

use super::Session;

/// What reading gave.
pub enum Line {
    Text(String),
    /// Ctrl-C at the prompt: drop the input so far.
    Interrupted,
    Eof,
}

pub struct Reader {
    kind: Kind,
}

enum Kind {
    Plain(std::io::StdinLock<'static>),
    Terminal {
        editor: Box<Editor<ReplHelper, DefaultHistory>>,
        history: Option<PathBuf>,
    },
}

impl Reader {
    /// A terminal reader when stdin and stdout are terminals (and rustyline can use them),
    /// else a plain one.
    pub fn new(session: Rc<RefCell<Session>>) -> Reader {
        if std::io::stdin().is_terminal() && std::io::stdout().is_terminal() {
            let config = Config::builder()
                .completion_type(CompletionType::List)
                .auto_add_history(false)
                .max_history_size(10_000)
                .map(|b| b.build());
            if let Ok(config) = config {
                if let Ok(mut editor) = Editor::with_config(config) {
                    editor.set_helper(Some(ReplHelper { session }));
                    let history = history_file();
                    if let Some(h) = &history {
                        load_history(&mut editor, h);
                    }
                    return Reader {
                        kind: Kind::Terminal {
                            editor: Box::new(editor),
                            history,
                        },
                    };
                }
            }
        }
        Reader {
            kind: Kind::Plain(std::io::stdin().lock()),
        }
    }

    pub fn read_line(&mut self, prompt: &str) -> Line {
        match &mut self.kind {
            Kind::Plain(stdin) => {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(prompt.as_bytes());
                let _ = out.flush();
                let mut buf = Vec::new();
                match stdin.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => Line::Eof,
                    Ok(_) => {
                        if buf.last() == Some(&b'\n') {
                            buf.pop();
                        }
                        let line = String::from_utf8_lossy(&buf).into_owned();
                        let _ = writeln!(out, "{line}");
                        Line::Text(line)
                    }
                }
            }
            Kind::Terminal { editor, history } => match editor.readline(prompt) {
                Ok(line) => {
                    if !line.trim().is_empty() {
                        let _ = editor.add_history_entry(line.as_str());
                        if let Some(h) = history {
                            append_history(h, &line);
                        }
                    }
                    Line::Text(line)
                }
                Err(ReadlineError::Interrupted) => Line::Interrupted,
                Err(ReadlineError::Eof) => Line::Eof,
                Err(e) => {
                    super::notice(&format!("error: reading the input: {e}"));
                    Line::Eof
                }
            },
        }
    }

    /// At the end of the input: leave the terminal on a new line.
    pub fn finish(&mut self) {
        if let Kind::Terminal { .. } = self.kind {
            outln!();
        }
    }
}

/// `$XDG_DATA_HOME/nix/repl-history` (default `~/.local/share`), its directory made.
fn history_file() -> Option<PathBuf> {
    let data = match std::env::var_os("XDG_DATA_HOME") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(std::env::var_os("HOME")?).join(".local/share"),
    };
    let dir = data.join("nix");
    std::fs::create_dir_all(&dir).ok()?;
    Some(dir.join("repl-history"))
}

/// Lines of the history file become entries (the file may be CppNix's).
fn load_history(editor: &mut Editor<ReplHelper, DefaultHistory>, path: &PathBuf) {
    let Ok(text) = std::fs::read(path) else {
        return;
    };
    for line in String::from_utf8_lossy(&text).lines() {
        if !line.trim().is_empty() && line != "#V2" {
            let _ = editor.add_history_entry(line);
        }
    }
}

fn append_history(path: &PathBuf, line: &str) {
    use std::fs::OpenOptions;
    if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(path) {
        let _ = writeln!(f, "{line}");
    }
}

/// rustyline's view of the session: completion only.
pub struct ReplHelper {
    session: Rc<RefCell<Session>>,
}

impl Completer for ReplHelper {
    type Candidate = String;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<String>)> {
        let Ok(mut session) = self.session.try_borrow_mut() else {
            return Ok((pos, Vec::new()));
        };
        let prefix = line.get(..pos).unwrap_or(line);
        Ok(super::complete::complete(&mut session, prefix))
    }
}

impl Hinter for ReplHelper {
    type Hint = String;
}

impl Highlighter for ReplHelper {}

impl Validator for ReplHelper {}

impl Helper for ReplHelper {}
