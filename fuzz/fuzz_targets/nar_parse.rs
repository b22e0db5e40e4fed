//! Fuzz the NAR reader: any input either parses (and then re-encodes to the same bytes) or is
//! refused with an error; it never panics.
#![no_main]

use firn_format::nar::reader::{parse, Rewrite};
use firn_format::nar::NarWriter;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = data;
    let mut rw = Rewrite(NarWriter::new(Vec::new()).expect("writing to a Vec cannot fail"));
    if let Ok(n) = parse(&mut input, &mut rw) {
        let out = rw.0.finish().expect("a parsed NAR re-encodes completely");
        assert_eq!(&data[..n as usize], &out[..], "re-encoding differs");
    }
});
