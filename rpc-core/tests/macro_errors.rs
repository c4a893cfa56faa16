//! Compile errors of `#[service]`: each mistake fails at the offending token with a message
//! that says what to write instead. The expected output lives in `tests/ui/*.stderr`
//! (regenerate with `TRYBUILD=overwrite cargo test -p rpc-core --test macro_errors`).

#[test]
fn service_macro_rejects_invalid_traits_with_clear_errors() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
    cases.pass("tests/ui/pass/*.rs");
}
