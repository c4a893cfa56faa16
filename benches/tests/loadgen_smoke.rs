//! Smoke test of `loadgen`: a very short run of every system must complete without errors
//! and print one well-formed line per system plus the ratio lines.

use std::process::Command;

#[test]
fn a_short_run_of_every_system_completes_without_errors() {
    let output = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "--secs",
            "0.3",
            "--warmup",
            "0.1",
            "--concurrency",
            "4",
            "--size",
            "32",
            "--systems",
            "rpc,rpc-bare,rpc-token,tarpc,tonic",
        ])
        .output()
        .expect("loadgen runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    for system in ["rpc", "rpc-bare", "rpc-token", "tarpc", "tonic"] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("system={system} ")))
            .unwrap_or_else(|| panic!("no line for {system} in:\n{stdout}\n{stderr}"));
        assert!(line.contains(" errors=0"), "{line}\n{stderr}");
        let qps: f64 = line
            .split_whitespace()
            .find_map(|f| f.strip_prefix("qps="))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no qps in {line}"));
        assert!(qps > 0.0, "{line}");
    }
    assert!(stdout.contains("ratio rpc/tarpc qps="), "{stdout}");
    assert!(stdout.contains("ratio rpc/tonic qps="), "{stdout}");
}

#[test]
fn bad_arguments_are_rejected() {
    let output = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--systems", "grpc-java"])
        .output()
        .expect("loadgen runs");
    assert_eq!(output.status.code(), Some(2));
}
