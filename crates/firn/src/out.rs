//! Printing results on standard output as CppNix's `std::cout` does: a failed write (most
//! often a reader that went away, `nix ... | head`) is ignored, where `println!` would panic.

/// `println!` that ignores a failed write.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `print!` that ignores a failed write.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($arg)*);
    }};
}

/// Buffered standard output for text results (queries, listings) that ignores a failed
/// write as [`outln!`] does: `nix-store -q ... | head` ends with status 0, as with CppNix,
/// whose text results go through `std::cout`. Binary streams (NARs, exports) keep their
/// errors: CppNix reports those.
pub fn text_stdout() -> std::io::BufWriter<IgnoreErrors<std::io::StdoutLock<'static>>> {
    std::io::BufWriter::new(IgnoreErrors(std::io::stdout().lock()))
}

/// A writer whose writes and flushes always succeed (a failure drops the bytes).
pub struct IgnoreErrors<W>(pub W);

impl<W: std::io::Write> std::io::Write for IgnoreErrors<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = self.0.write_all(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        let _ = self.0.flush();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    struct Closed;
    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
    }

    #[test]
    fn failed_writes_are_dropped() {
        let mut w = std::io::BufWriter::new(super::IgnoreErrors(Closed));
        for _ in 0..10_000 {
            writeln!(w, "a line of text").unwrap();
        }
        w.flush().unwrap();
    }
}
