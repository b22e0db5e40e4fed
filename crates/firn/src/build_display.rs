//! How builds are shown on stderr while they run: CppNix's plain lines (`building '…'...`,
//! builder output, lock waits), its `internal-json` activity lines, and on a terminal a live
//! status area under them: a line per running build (its name, how long it has run, its last
//! log line) and a summary line (done, running, queued, elapsed time), redrawn as events come
//! and once a second (so the clocks move while a builder is silent).

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use firn_build::schedule::Event;
use firn_format::{StoreDir, StorePath};

/// At most this many running builds get a line of their own (the rest are counted).
const MAX_BUILD_LINES: usize = 10;

/// What the display shows, fixed for one realisation.
pub struct DisplayOptions {
    /// Builder output is printed as it comes.
    pub print_logs: bool,
    /// Log lines start with `<name>> `.
    pub prefix_logs: bool,
    /// `--quiet`: `building '…'` is not printed.
    pub quiet: bool,
    /// `waiting for lock on '…'...` is printed: by the legacy commands, down to two
    /// `--quiet`s (CppNix 2.8's `lvlWarn` activity, which `nix build`'s progress display
    /// leaves out).
    pub lock_waits: bool,
    /// `--log-format internal-json`: CppNix's `@nix {...}` activity lines instead of text.
    pub json: bool,
    /// The live status area is drawn (stderr is a terminal and the format asks for it).
    pub status: bool,
    /// Derivations to build in all (done, running and queued).
    pub total: usize,
}

/// A build running.
struct Running {
    /// The builder's last line (escape sequences and control characters removed).
    last: String,
    since: Instant,
}

/// The display of one realisation (see the module header).
pub struct Display {
    sd: StoreDir,
    opts: DisplayOptions,
    /// Activity ids for `json`.
    ids: BTreeMap<StorePath, u64>,
    /// `json`: the ids of lock waits going on (stopped when the build starts or ends).
    wait_ids: BTreeMap<StorePath, u64>,
    /// `json`: activities started so far (ids are the pid's, then this count).
    activities: u64,
    running: BTreeMap<StorePath, Running>,
    done: usize,
    failed: usize,
    start: Instant,
    /// Lines of the status area on the screen (the cursor is at the end of the last).
    drawn: usize,
}

impl Display {
    pub fn new(sd: StoreDir, opts: DisplayOptions) -> Display {
        Display {
            sd,
            opts,
            ids: BTreeMap::new(),
            wait_ids: BTreeMap::new(),
            activities: 0,
            running: BTreeMap::new(),
            done: 0,
            failed: 0,
            start: Instant::now(),
            drawn: 0,
        }
    }

    /// Run `build` (which reports its events to the callback it is given) with this display,
    /// redrawing the status area once a second meanwhile when there is one.
    pub fn run<T>(self, build: impl FnOnce(&mut dyn FnMut(Event)) -> T) -> T {
        let ticking = self.opts.status;
        let mut this = self;
        if this.opts.json {
            this.json_begin();
        }
        let display = Mutex::new(this);
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let r = std::thread::scope(|s| {
            if ticking {
                let display = &display;
                s.spawn(move || {
                    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                        stopped.recv_timeout(Duration::from_secs(1))
                    {
                        lock(display).redraw();
                    }
                });
            }
            let r = build(&mut |e| lock(&display).event(e));
            drop(stop);
            r
        });
        lock(&display).finish();
        r
    }

    fn event(&mut self, e: Event) {
        let stderr = std::io::stderr();
        let mut err = stderr.lock();
        if self.opts.json {
            self.json_event(e, &mut err);
            let _ = err.flush();
            return;
        }
        self.clear_status(&mut err);
        match e {
            Event::Started { drv, check } => {
                if !self.opts.quiet {
                    let _ = writeln!(err, "{}...", started_text(&self.sd, drv, check));
                }
                self.running.insert(
                    drv.clone(),
                    Running {
                        last: String::new(),
                        since: Instant::now(),
                    },
                );
            }
            Event::Note { text, .. } => {
                let _ = writeln!(err, "{text}");
            }
            Event::Waiting { text, .. } => {
                if self.opts.lock_waits {
                    let _ = writeln!(err, "{text}...");
                }
            }
            Event::Resolved { drv, resolved } => {
                if !self.opts.quiet {
                    let _ = writeln!(err, "{}...", resolved_text(&self.sd, drv, resolved));
                }
            }
            Event::Log { drv, line } => {
                if self.opts.print_logs && self.opts.prefix_logs {
                    let name = drv.name().trim_end_matches(".drv");
                    let _ = writeln!(err, "{name}> {line}");
                } else if self.opts.print_logs {
                    let _ = writeln!(err, "{line}");
                }
                if let Some(r) = self.running.get_mut(drv) {
                    let shown = visible(line);
                    // A blank line keeps the last one worth showing.
                    if !shown.trim().is_empty() {
                        r.last = shown.trim_end().to_string();
                    }
                }
            }
            Event::Finished { drv, failure } => {
                self.running.remove(drv);
                if failure.is_some() {
                    self.failed += 1;
                } else {
                    self.done += 1;
                }
            }
        }
        self.draw_status(&mut err);
        let _ = err.flush();
    }

    /// The status area drawn again (its clocks moved).
    fn redraw(&mut self) {
        if self.drawn == 0 {
            return;
        }
        let stderr = std::io::stderr();
        let mut err = stderr.lock();
        self.clear_status(&mut err);
        self.draw_status(&mut err);
        let _ = err.flush();
    }

    fn finish(&mut self) {
        let stderr = std::io::stderr();
        let mut err = stderr.lock();
        self.clear_status(&mut err);
        if self.opts.json {
            // The builds, then the realisation, as CppNix ends them.
            for id in [BUILDS_ID, REALISE_ID] {
                let stop = serde_json::json!({ "action": "stop", "id": self.activity(id) });
                let _ = writeln!(err, "@nix {stop}");
            }
        }
        let _ = err.flush();
    }

    /// `internal-json`: an activity id of this process (CppNix's: the pid, then a count).
    fn activity(&self, n: u64) -> u64 {
        (u64::from(std::process::id()) << 32) + n
    }

    /// `internal-json`: the id of a new activity.
    fn next_activity(&mut self) -> u64 {
        self.activities += 1;
        self.activity(self.activities)
    }

    /// `internal-json`: the realisation's activity and its builds' (CppNix's `actRealise`,
    /// type 102, and `actBuilds`, type 104, whose progress counts tools show), started before
    /// any build.
    fn json_begin(&mut self) {
        let mut err = std::io::stderr().lock();
        for (id, kind) in [(REALISE_ID, 102), (BUILDS_ID, 104)] {
            let start = serde_json::json!({
                "action": "start", "id": self.activity(id), "level": 0, "type": kind,
                "text": "", "parent": 0, "fields": [],
            });
            let _ = writeln!(err, "@nix {start}");
        }
        self.json_progress(&mut err);
        self.activities = BUILDS_ID;
    }

    /// `internal-json`: the builds' progress (CppNix's `resProgress`, type 105: done,
    /// expected, running, failed; a failed build is no longer expected).
    fn json_progress(&self, err: &mut impl Write) {
        let progress = serde_json::json!({
            "action": "result", "id": self.activity(BUILDS_ID), "type": 105,
            "fields": [
                self.done,
                self.opts.total.saturating_sub(self.failed),
                self.running.len(),
                self.failed,
            ],
        });
        let _ = writeln!(err, "@nix {progress}");
    }

    fn clear_status(&mut self, err: &mut impl Write) {
        if self.drawn == 0 {
            return;
        }
        let _ = write!(err, "\r\x1b[K");
        for _ in 1..self.drawn {
            let _ = write!(err, "\x1b[A\x1b[K");
        }
        self.drawn = 0;
    }

    fn draw_status(&mut self, err: &mut impl Write) {
        if !self.opts.status || self.running.is_empty() {
            return;
        }
        let (width, height) = terminal_size();
        let lines = self.status_lines(width, height, Instant::now());
        let _ = write!(err, "{}", lines.join("\n"));
        self.drawn = lines.len();
    }

    /// The status area for a terminal of `width` columns and `height` rows at time `now`: a
    /// line per running build (as many as fit), then the summary.
    fn status_lines(&self, width: usize, height: usize, now: Instant) -> Vec<String> {
        let rows = height.saturating_sub(2).clamp(1, MAX_BUILD_LINES);
        let shown = if self.running.len() > rows {
            rows - 1
        } else {
            rows
        };
        let mut lines = Vec::new();
        for (drv, r) in self.running.iter().take(shown) {
            let mut line = format!(
                "  {} ({})",
                drv.name().trim_end_matches(".drv"),
                clock(now.duration_since(r.since))
            );
            if !r.last.is_empty() {
                line.push_str(": ");
                line.push_str(&r.last);
            }
            lines.push(line);
        }
        if self.running.len() > shown {
            lines.push(format!("  … and {} more", self.running.len() - shown));
        }
        let queued = self
            .opts
            .total
            .saturating_sub(self.done + self.failed + self.running.len());
        let failed = match self.failed {
            0 => String::new(),
            n => format!(", {n} failed"),
        };
        lines.push(format!(
            "[{} done{failed}, {} running, {} queued, {}]",
            self.done,
            self.running.len(),
            queued,
            clock(now.duration_since(self.start))
        ));
        lines
            .into_iter()
            .map(|l| l.chars().take(width.saturating_sub(1)).collect())
            .collect()
    }

    fn json_event(&mut self, e: Event, err: &mut impl Write) {
        // Activity type 105 is a build, result type 101 a build log line (CppNix's numbering).
        let counts_change = matches!(e, Event::Started { .. } | Event::Finished { .. });
        match &e {
            Event::Started { drv, .. } => {
                self.running.insert(
                    (*drv).clone(),
                    Running {
                        last: String::new(),
                        since: Instant::now(),
                    },
                );
            }
            Event::Finished { drv, failure } => {
                self.running.remove(*drv);
                if failure.is_some() {
                    self.failed += 1;
                } else {
                    self.done += 1;
                }
            }
            _ => {}
        }
        let wait_done = match &e {
            Event::Started { drv, .. } | Event::Finished { drv, .. } => self.wait_ids.remove(*drv),
            _ => None,
        };
        if let Some(id) = wait_done {
            let _ = writeln!(
                err,
                "@nix {}",
                serde_json::json!({ "action": "stop", "id": id })
            );
        }
        let line = match e {
            Event::Waiting { drv, text } => {
                // Activity type 111 is CppNix's `actBuildWaiting`, at `lvlWarn`.
                let id = self.next_activity();
                self.wait_ids.insert(drv.clone(), id);
                serde_json::json!({
                    "action": "start", "id": id, "level": 1, "type": 111, "parent": 0,
                    "text": text, "fields": [],
                })
            }
            Event::Started { drv, check } => {
                let id = self.next_activity();
                self.ids.insert(drv.clone(), id);
                serde_json::json!({
                    "action": "start", "id": id, "level": 3, "type": 105, "parent": 0,
                    "text": started_text(&self.sd, drv, check),
                    "fields": [self.sd.display(drv), "", 1, 1],
                })
            }
            Event::Note { text, .. } => serde_json::json!({
                "action": "msg", "level": 0, "msg": text,
            }),
            Event::Resolved { drv, resolved } => serde_json::json!({
                "action": "msg", "level": 3, "msg": resolved_text(&self.sd, drv, resolved),
            }),
            Event::Log { drv, line } => serde_json::json!({
                "action": "result", "id": self.ids.get(drv).copied().unwrap_or(0),
                "type": 101, "fields": [line],
            }),
            // A failure's error comes with the others at the end, as in the other formats.
            Event::Finished { drv, .. } => {
                serde_json::json!({ "action": "stop", "id": self.ids.get(drv).copied().unwrap_or(0) })
            }
        };
        let _ = writeln!(err, "@nix {line}");
        if counts_change {
            self.json_progress(err);
        }
    }
}

/// `internal-json` activities of every realisation (see [`Display::json_begin`]); a build's
/// own activity ids come after these.
const REALISE_ID: u64 = 1;
const BUILDS_ID: u64 = 2;

/// CppNix's text for a derivation resolved before its build (`ca-derivations`).
fn resolved_text(sd: &StoreDir, drv: &StorePath, resolved: &StorePath) -> String {
    format!(
        "resolved derivation: '{}' -> '{}'",
        sd.display(drv),
        sd.display(resolved)
    )
}

/// CppNix's text for a build that starts: `building '...drv'`, or for `--check` of what was
/// asked for, `checking outputs of '...drv'`.
fn started_text(sd: &StoreDir, drv: &StorePath, check: bool) -> String {
    if check {
        format!("checking outputs of '{}'", sd.display(drv))
    } else {
        format!("building '{}'", sd.display(drv))
    }
}

/// The display, locked (a panic while drawing leaves nothing the next draw cannot redo).
fn lock(d: &Mutex<Display>) -> std::sync::MutexGuard<'_, Display> {
    match d.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// A duration as the status area shows it: `7s`, `2m05s`, `1h02m`.
fn clock(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s / 60 % 60),
    }
}

/// A builder's line as one status line can show it: escape sequences (colours, cursor
/// moves) and other control characters removed, tabs as spaces.
fn visible(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => {
                // CSI (`ESC [ ... final`), or a two-character sequence.
                if chars.next_if_eq(&'[').is_some() {
                    for x in chars.by_ref() {
                        if ('\x40'..='\x7e').contains(&x) {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            }
            '\t' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// The terminal's columns and rows (80×24 when stderr is no terminal).
fn terminal_size() -> (usize, usize) {
    // SAFETY: TIOCGWINSZ fills the zeroed winsize struct.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    if unsafe { libc::ioctl(2, libc::TIOCGWINSZ, &mut ws) } == 0 && ws.ws_col > 0 {
        (ws.ws_col as usize, (ws.ws_row as usize).max(3))
    } else {
        (80, 24)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn display(total: usize) -> Display {
        Display::new(
            StoreDir::default(),
            DisplayOptions {
                print_logs: false,
                prefix_logs: false,
                quiet: false,
                lock_waits: false,
                json: false,
                status: true,
                total,
            },
        )
    }

    fn drv(name: &str) -> StorePath {
        StorePath::from_base_name(&format!("{}-{name}.drv", "0".repeat(32)))
            .expect("a valid store path")
    }

    #[test]
    fn a_line_per_running_build_and_the_counts() {
        let mut d = display(5);
        let t0 = d.start;
        d.running.insert(
            drv("a-1"),
            Running {
                last: "compiling a.c".into(),
                since: t0,
            },
        );
        d.running.insert(
            drv("b-2"),
            Running {
                last: String::new(),
                since: t0 + Duration::from_secs(60),
            },
        );
        d.done = 1;
        let now = t0 + Duration::from_secs(125);
        assert_eq!(
            d.status_lines(80, 24, now),
            [
                "  a-1 (2m05s): compiling a.c",
                "  b-2 (1m05s)",
                "[1 done, 2 running, 2 queued, 2m05s]",
            ]
        );
        d.failed = 1;
        assert_eq!(
            d.status_lines(80, 24, now)[2],
            "[1 done, 1 failed, 2 running, 1 queued, 2m05s]"
        );
        // Narrow: every line is cut to fit; short: the builds that do not fit are counted.
        assert_eq!(d.status_lines(10, 24, now)[0], "  a-1 (2m");
        assert_eq!(
            d.status_lines(80, 3, now),
            [
                "  … and 2 more",
                "[1 done, 1 failed, 2 running, 1 queued, 2m05s]"
            ]
        );
    }

    #[test]
    fn builder_lines_lose_escapes_and_controls() {
        assert_eq!(
            visible("\x1b[1;32mok\x1b[0m\tdone\r\x07"),
            "ok done".to_string()
        );
        assert_eq!(clock(Duration::from_secs(3725)), "1h02m");
    }
}
