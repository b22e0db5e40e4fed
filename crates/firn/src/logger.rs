//! Messages for the user on stderr in the chosen log format: plain lines, or with
//! `--log-format internal-json` CppNix's `@nix {"action":"msg","level":N,"msg":"…"}` lines,
//! so that a tool reading that format (nix-output-monitor, say) sees no stray text.
//!
//! Levels are CppNix's verbosity numbers: 0 error, 1 warning, 2 notice, 3 info.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

pub const ERROR: u8 = 0;
pub const WARN: u8 = 1;
pub const NOTICE: u8 = 2;
pub const INFO: u8 = 3;

static JSON: AtomicBool = AtomicBool::new(false);

/// Whether messages are written as `internal-json` lines (set once the settings are read).
pub fn set_json(on: bool) {
    JSON.store(on, Ordering::Relaxed);
}

pub fn json() -> bool {
    JSON.load(Ordering::Relaxed)
}

/// One message at `level`, as the log format writes it.
pub fn line(level: u8, text: &str) {
    let mut err = std::io::stderr().lock();
    write_line(&mut err, level, text);
}

/// [`line`] to `out`.
pub fn write_line(out: &mut impl Write, level: u8, text: &str) {
    let _ = if json() {
        writeln!(out, "@nix {}", json_msg(level, text))
    } else {
        writeln!(out, "{text}")
    };
}

/// The `internal-json` form of a message.
pub fn json_msg(level: u8, text: &str) -> serde_json::Value {
    serde_json::json!({ "action": "msg", "level": level, "msg": text })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_in_each_format() {
        let mut out = Vec::new();
        write_line(&mut out, WARN, "warning: \"x\"");
        set_json(true);
        write_line(&mut out, ERROR, "error: a\nb");
        set_json(false);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "warning: \"x\"\n@nix {\"action\":\"msg\",\"level\":0,\"msg\":\"error: a\\nb\"}\n"
        );
    }
}
