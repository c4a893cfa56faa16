//! The sample configuration files, and `provider --config` / `consumer --config` with a
//! token: a consumer that finds the provider in the registry gets through, one given its
//! address does not.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

#[test]
fn the_sample_files_are_valid() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config");
    for name in ["provider.toml", "consumer.toml"] {
        let config = rpc_core::Config::load_with_env(dir.join(name), Vec::new())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(config.registry.address.is_some(), "{name}");
    }
}

#[test]
fn a_consumer_configured_with_the_registry_gets_the_token_a_stranger_does_not() {
    let dir = std::env::temp_dir().join(format!("rpc-example-config-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let registry = format!("file://{}", dir.join("registry").display());
    let config = dir.join("rpc.toml");
    std::fs::write(
        &config,
        format!(
            "[registry]\naddress = \"{registry}\"\n[protocols.tcp]\nhost = \"127.0.0.1\"\nport = 0\n\
             [provider]\ntoken = true\naccesslog = true\n[consumer]\ntimeout = 5000\n"
        ),
    )
    .unwrap();

    let mut provider = Command::new(env!("CARGO_BIN_EXE_provider"))
        .args(["--config", config.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(provider.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let address = first
        .split_whitespace()
        .find(|w| w.starts_with("127.0.0.1:"))
        .unwrap_or_else(|| panic!("no address in {first:?}"))
        .to_owned();

    let member = Command::new(env!("CARGO_BIN_EXE_consumer"))
        .args(["--config", config.to_str().unwrap(), "--calls", "1"])
        .stderr(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&member.stdout);
    let stranger = Command::new(env!("CARGO_BIN_EXE_consumer"))
        .args(["--connect", &address, "--calls", "1"])
        .stderr(Stdio::null())
        .output()
        .unwrap();
    let refused = String::from_utf8_lossy(&stranger.stdout);
    let bad_key = Command::new(env!("CARGO_BIN_EXE_consumer"))
        .args(["--config", config.to_str().unwrap()])
        .env("RPC_CONSUMER_TIMEUOT", "1")
        .output()
        .unwrap();
    let bad_key_error = String::from_utf8_lossy(&bad_key.stderr);

    let _ = Command::new("kill")
        .args(["-INT", &provider.id().to_string()])
        .status();
    let _ = provider.wait();
    let _ = std::fs::remove_dir_all(&dir);

    assert!(member.status.success(), "{text}");
    assert!(text.contains("greet -> Hello, consumer #0!"), "{text}");
    assert!(!stranger.status.success(), "{refused}");
    assert!(refused.contains("unauthorized: missing token"), "{refused}");
    assert!(!bad_key.status.success());
    assert!(
        bad_key_error.contains("did you mean `RPC_CONSUMER_TIMEOUT`?"),
        "{bad_key_error}"
    );
}
