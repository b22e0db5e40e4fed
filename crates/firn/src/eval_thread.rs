//! The thread evaluations run on: a stack sized for deep evaluations, and a heap that is
//! never handed back.
//!
//! An evaluation builds a heap of values as large as the work (hundreds of megabytes for a
//! real package set). Freeing it value by value, and then letting the thread end (which makes
//! the allocator walk every page the thread owned), costs a tenth of a short evaluation and
//! gains nothing: the process either exits right after or goes on to build, as CppNix does with
//! its evaluator still alive. So the closure's result is sent back and the thread then sleeps
//! until the process exits; closures leak their evaluator instead of dropping it.

use anyhow::{Context, Result};

/// Run `job` on a fresh thread with the evaluator's stack size and return its result. The
/// thread is parked, not ended, once the result has been handed over.
pub fn run<T, F>(job: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    crate::alloc::configure();
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("evaluator".into())
        .stack_size(firn_eval::eval::EVAL_THREAD_STACK)
        .spawn(move || {
            let r = job();
            if tx.send(r).is_ok() {
                loop {
                    std::thread::park();
                }
            }
        })
        .context("starting the evaluator thread")?;
    // The sender is dropped without a message only when the job panicked.
    rx.recv()
        .map_err(|_| anyhow::anyhow!("the evaluator panicked"))
}
