//! Fuzz the NAR listing: for any input, both listing forms agree on whether it is a NAR, and
//! for a NAR whose names and targets are UTF-8 the streamed CppNix-style bytes are valid JSON
//! equal to the `Value` form. Never panics.
#![no_main]

use firn_format::nar::listing::{list_nar, write_listing};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut bytes = Vec::new();
    let streamed = write_listing(&mut &data[..], &mut bytes, true);
    let value = list_nar(&mut &data[..], true);
    assert_eq!(streamed.is_ok(), value.is_ok(), "the two forms disagree");
    if let (Ok(_), Ok(v)) = (streamed, value) {
        if let Ok(parsed) = serde_json::from_slice::<serde_json::Value>(&bytes) {
            assert_eq!(parsed, v, "the streamed listing means something else");
        } else {
            // Only names or targets that are not UTF-8 make the bytes invalid JSON.
            assert!(std::str::from_utf8(&bytes).is_err(), "invalid JSON from UTF-8 names");
        }
    }
});
