//! Fuzz the `.drv` parser: any text either parses (and prints back identically) or is refused.
#![no_main]

use firn_format::derivation::Derivation;
use firn_format::StoreDir;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let sd = StoreDir::default();
    if let Ok(d) = Derivation::parse(&sd, text, "x") {
        let printed = d.to_aterm(&sd);
        let again = Derivation::parse(&sd, &printed, "x").expect("printed derivations parse");
        assert_eq!(again, d);
    }
});
