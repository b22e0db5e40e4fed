//! How a child process ended, in CppNix's words (its `statusToString`): the text that follows
//! a program's name in error messages, such as "failed with exit code 1" or "failed due to
//! signal 9 (Killed)". One place for builders, hooks and the evaluator's programs.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

/// The C library's name of signal `s` ("Killed", "Segmentation fault", ...), as CppNix
/// prints it.
pub fn signal_name(s: i32) -> String {
    // SAFETY: strsignal returns a pointer to a static or thread-local string (or NULL),
    // which is copied at once.
    unsafe {
        let p = libc::strsignal(s);
        if p.is_null() {
            format!("Unknown signal {s}")
        } else {
            std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    }
}

/// "failed with exit code N", "failed due to signal N (NAME)", or "failed".
pub fn describe(status: &ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("failed with exit code {c}"),
        (None, Some(s)) => format!("failed due to signal {s} ({})", signal_name(s)),
        (None, None) => "failed".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_as_cppnix_writes_them() {
        assert_eq!(
            describe(&ExitStatus::from_raw(3 << 8)),
            "failed with exit code 3"
        );
        assert_eq!(
            describe(&ExitStatus::from_raw(libc::SIGKILL)),
            "failed due to signal 9 (Killed)"
        );
        assert_eq!(signal_name(libc::SIGSEGV), "Segmentation fault");
        assert_eq!(signal_name(libc::SIGTERM), "Terminated");
    }
}
