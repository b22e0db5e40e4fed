//! Fuzz the narinfo parser: never panics; what parses prints to text that parses the same.
#![no_main]

use firn_format::narinfo::NarInfo;
use firn_format::StoreDir;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let sd = StoreDir::default();
    if let Ok(n) = NarInfo::parse(&sd, text, "fuzz") {
        let again = NarInfo::parse(&sd, &n.to_text(&sd), "fuzz").expect("printed narinfo parses");
        assert_eq!(again, n);
    }
});
