//! The provider and consumer binaries, run as a user would run them.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Starts `provider` on a free port; returns it, the address it printed and its stdout.
fn start_provider(codecs: &str) -> (Child, String, BufReader<std::process::ChildStdout>) {
    let mut provider = Command::new(env!("CARGO_BIN_EXE_provider"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--codec",
            codecs,
            "--name",
            "p-test",
            "--registry",
            "none",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn provider");
    let stdout = provider.stdout.take().expect("provider stdout is piped");
    let mut stdout = BufReader::new(stdout);
    let mut first = String::new();
    stdout
        .read_line(&mut first)
        .expect("read the provider's first line");
    let address = first
        .split_whitespace()
        .find(|w| w.starts_with("127.0.0.1:"))
        .unwrap_or_else(|| panic!("no address in {first:?}"))
        .to_owned();
    (provider, address, stdout)
}

fn consumer(address: &str, codec: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_consumer"))
        .args(["--connect", address, "--codec", codec, "--calls", "2"])
        .stderr(Stdio::null())
        .output()
        .expect("run consumer")
}

fn interrupt_and_wait(mut provider: Child) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .args(["-INT", &provider.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    let started = Instant::now();
    loop {
        if let Some(status) = provider.try_wait().expect("wait for provider") {
            return status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "provider did not stop after Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_consumer_calls_a_provider_which_stops_cleanly_on_ctrl_c() {
    let (provider, address, mut stdout) = start_provider("bincode,json,protobuf");
    for codec in ["bincode", "json", "protobuf"] {
        let output = consumer(&address, codec);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "consumer --codec {codec}: {stdout}"
        );
        assert!(
            stdout.contains("SayHello -> Hello, proto consumer! (from p-test)"),
            "{stdout}"
        );
        if codec == "protobuf" {
            assert!(
                !stdout.contains("greet ->"),
                "serde services skipped: {stdout}"
            );
            continue;
        }
        assert!(
            stdout.contains("greet -> Hello, consumer #1! (from p-test)"),
            "{stdout}"
        );
        assert!(stdout.contains("echo -> ping"), "{stdout}");
    }
    let status = interrupt_and_wait(provider);
    assert!(status.success(), "provider exited with {status}");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).expect("read provider output");
    assert_eq!(rest.trim(), "stopped");
}

#[test]
fn a_provider_limited_to_json_refuses_a_bincode_consumer() {
    let (provider, address, _stdout) = start_provider("json");
    let output = consumer(&address, "bincode");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{stdout}");
    assert!(stdout.contains("codec bincode is not enabled"), "{stdout}");
    assert!(interrupt_and_wait(provider).success());
}
