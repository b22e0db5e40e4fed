//! Fuzz the Nix parser: any text parses or gives an error (never a panic or a stack overflow),
//! and what parses prints (`--parse` form) without panicking.
#![no_main]

use firn_syntax::{parse, show::show, Interner, Source};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // Pipe operators on, so the whole grammar is reached; lints at their defaults.
    let src = Source {
        origin: "«fuzz»",
        base_dir: "/b",
        home: "/h",
        pipe_operators: true,
        lints: Default::default(),
    };
    let mut i = Interner::default();
    match parse(text, &src, &mut i) {
        Ok(e) => {
            let _ = show(&i, &e);
        }
        Err(e) => {
            let _ = firn_syntax::render_error(&e, text, "«fuzz»");
        }
    }
});
