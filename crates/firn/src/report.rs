//! The text of an error as the user sees it: the message and its causes, joined by `: `.
//!
//! Many errors name their cause in their own message (`thiserror`'s `{0}` with `#[from]`)
//! and also return it as their source, so printing every link of the chain would repeat it
//! (`... in NAR stream: Broken pipe: Broken pipe`). A cause whose text the message already
//! ends with is left out.

/// `e` and its causes, each said once.
pub fn error_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = String::new();
    for cause in std::iter::successors(Some(e), |c| c.source()) {
        let text = cause.to_string();
        if out.is_empty() {
            out = text;
        } else if !text.is_empty() && !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::error_text;

    #[derive(Debug, thiserror::Error)]
    #[error("I/O error in NAR stream: {0}")]
    struct Wrapping(#[from] std::io::Error);

    #[test]
    fn a_cause_the_message_already_names_is_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "Broken pipe");
        let e = anyhow::Error::new(Wrapping(io)).context("writing NAR of '/x'");
        assert_eq!(
            error_text(e.as_ref()),
            "writing NAR of '/x': I/O error in NAR stream: Broken pipe"
        );
    }

    #[test]
    fn causes_not_named_are_joined() {
        let e = anyhow::anyhow!("inner").context("middle").context("outer");
        assert_eq!(error_text(e.as_ref()), "outer: middle: inner");
    }
}
