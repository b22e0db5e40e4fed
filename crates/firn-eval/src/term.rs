//! Text for stderr, as Nix's logger writes it: escape sequences (such as the colours that
//! nixpkgs' module system puts in its messages) are kept on a terminal and removed
//! otherwise, so logs and `grep` see plain text.

use std::borrow::Cow;
use std::io::{IsTerminal, Write};

/// `s` as it should go to stderr.
pub fn for_stderr(s: &str) -> Cow<'_, str> {
    if std::io::stderr().is_terminal() {
        Cow::Borrowed(s)
    } else {
        strip_escapes(s)
    }
}

/// Write `s` and a line break to stderr (as [`for_stderr`] has it), raw bytes as the bytes
/// (see [`firn_syntax::bytes`]).
pub fn write_stderr_line(s: &str) {
    let s = for_stderr(s);
    let mut out = firn_syntax::bytes::encode(&s).into_owned();
    out.push(b'\n');
    // As `eprintln!`, but a closed stderr is not worth a panic.
    let _ = std::io::stderr().lock().write_all(&out);
}

/// Write `s` (and a line break when `newline`) to stdout, raw bytes as the bytes (see
/// [`firn_syntax::bytes`]), as Nix prints strings.
pub fn write_stdout(s: &str, newline: bool) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    let r = out
        .write_all(&firn_syntax::bytes::encode(s))
        .and_then(|()| {
            if newline {
                out.write_all(b"\n")
            } else {
                Ok(())
            }
        })
        .and_then(|()| out.flush());
    match r {
        // As CppNix, whose results go to `std::cout`: a reader that went away
        // (`nix eval ... | head`) is not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r,
    }
}

/// `s` without ANSI escape sequences: CSI (`ESC [` … final byte), OSC (`ESC ]` … BEL or
/// `ESC \`), and two-byte `ESC x` sequences.
pub fn strip_escapes(s: &str) -> Cow<'_, str> {
    if !s.contains('\x1b') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('[') => {
                // Parameter and intermediate bytes, then one final byte (0x40..=0x7e).
                for c in chars.by_ref() {
                    if ('\x40'..='\x7e').contains(&c) {
                        break;
                    }
                }
            }
            Some(']') => {
                while let Some(c) = chars.next() {
                    if c == '\x07' {
                        break;
                    }
                    if c == '\x1b' && chars.peek() == Some(&'\\') {
                        chars.next();
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_removed() {
        assert_eq!(strip_escapes("plain"), "plain");
        assert_eq!(
            strip_escapes("a \x1b[1;35m\"configuration\"\x1b[0m b"),
            "a \"configuration\" b"
        );
        assert_eq!(
            strip_escapes("\x1b]8;;http://x\x07link\x1b]8;;\x1b\\"),
            "link"
        );
        assert_eq!(strip_escapes("x\x1b"), "x");
    }
}
