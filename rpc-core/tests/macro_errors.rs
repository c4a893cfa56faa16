//! Compile errors of `#[service]`: each mistake fails at the offending token with a message
//! that says what to write instead. The expected output lives in `tests/ui/*.stderr`
//! (regenerate with `TRYBUILD=overwrite cargo test -p rpc-core --test macro_errors`).

use rpc_core::client::{ClusterMode, loadbalance};

#[test]
fn service_macro_rejects_invalid_traits_with_clear_errors() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
    cases.pass("tests/ui/pass/*.rs");
}

/// The names listed by the compile error in `tests/ui/<case>.stderr` ("expected one of
/// "a", "b"...").
fn names_the_macro_accepts(case: &str) -> Vec<String> {
    let path = format!("{}/tests/ui/{case}.stderr", env!("CARGO_MANIFEST_DIR"));
    let stderr = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let list = stderr
        .lines()
        .find_map(|line| line.split_once("expected one of ").map(|(_, list)| list))
        .unwrap_or_else(|| panic!("{path} lists no names"));
    quoted(list)
}

/// Every `"..."` in `text`, in order.
fn quoted(text: &str) -> Vec<String> {
    text.split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// The macro checks cluster names at compile time against its own copy of the list; the
/// client builder checks them again at run time. Both must know the same names.
#[test]
fn the_macro_and_the_runtime_know_the_same_cluster_modes() {
    let compile_time = names_the_macro_accepts("unknown_cluster");
    for name in &compile_time {
        assert!(name.parse::<ClusterMode>().is_ok(), "{name}");
    }
    // The runtime lists what it knows when it refuses a name.
    let refusal = "no-such-mode"
        .parse::<ClusterMode>()
        .err()
        .map(|error| error.to_string())
        .unwrap_or_default();
    let mut run_time = quoted(&refusal);
    run_time.retain(|name| name != "no-such-mode");
    assert_eq!(compile_time, run_time, "{refusal}");
}

#[test]
fn the_macro_and_the_runtime_know_the_same_load_balancers() {
    let compile_time = names_the_macro_accepts("unknown_loadbalance");
    assert_eq!(compile_time, loadbalance::NAMES);
    for name in &compile_time {
        assert!(loadbalance::by_name(name).is_ok(), "{name}");
    }
}
