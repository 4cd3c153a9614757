//! Misuse of `#[tracealloc::profile]` is a compile error with a clear
//! message: the cases under `tests/ui/`, with the expected messages beside
//! them (`TRYBUILD=overwrite` rewrites the `.stderr` files).
#![cfg(feature = "macros")]

#[test]
fn misuse_is_a_compile_error() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
