//! What the evaluator's tests share.

use firn_eval::{builtins::deep_force, print::print_value, EvalError, Evaluator};

/// Evaluate `text` strictly on a big stack (as the CLI does): its printed value, or the error.
pub fn run(text: &str) -> Result<String, EvalError> {
    run_with(text, |_| {})
}

/// [`run`] with an evaluator that `setup` has set up first (its settings).
pub fn run_with(
    text: &str,
    setup: impl FnOnce(&mut Evaluator) + Send + 'static,
) -> Result<String, EvalError> {
    let text = text.to_string();
    std::thread::Builder::new()
        .stack_size(firn_eval::eval::EVAL_THREAD_STACK)
        .spawn(move || {
            let mut ev = Evaluator::new();
            ev.set_stack_size(firn_eval::eval::EVAL_THREAD_STACK);
            setup(&mut ev);
            let e = ev.parse(&text, "«test»", "/")?;
            let v = ev.eval_top(e)?;
            deep_force(&mut ev, &v)?;
            print_value(&mut ev, &v, true)
        })
        .expect("spawning")
        .join()
        .expect("no panic")
}
