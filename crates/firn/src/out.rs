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
