//! firn's multi-call binary.
fn main() {}
