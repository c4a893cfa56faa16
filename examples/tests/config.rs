//! The sample configuration files, and `provider --config` / `consumer --config` with a
//! token: a consumer that finds the provider in the registry gets through, one given its
//! address does not.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

#[test]
fn the_sample_files_are_valid() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config");
    for name in ["provider.toml", "provider.yaml", "consumer.toml"] {
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

/// A YAML file alone turns on both protocols, the admin endpoint and size-rotated access
/// log files.
#[test]
fn a_yaml_file_configures_both_protocols_the_admin_endpoint_and_the_access_log() {
    use std::io::{Read, Write};
    let dir = std::env::temp_dir().join(format!("rpc-example-yaml-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let registry = format!("file://{}", dir.join("registry").display());
    let logs = dir.join("logs");
    let config = dir.join("rpc.yaml");
    std::fs::write(
        &config,
        format!(
            "registry:\n  address: {registry}\nprotocols:\n  tcp:\n    host: 127.0.0.1\n    port: 0\n  \
             http2:\n    host: 127.0.0.1\n    port: 0\nprovider:\n  accesslog: true\nadmin:\n  \
             address: 127.0.0.1:0\naccess-log:\n  dir: {}\n  rotation: size:1M\n  keep: 3\n",
            logs.display()
        ),
    )
    .unwrap();
    let mut provider = Command::new(env!("CARGO_BIN_EXE_provider"))
        .args(["--config", config.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(provider.stdout.take().unwrap());
    let mut lines = Vec::new();
    for line in stdout.lines() {
        let line = line.unwrap();
        let done = line.starts_with("admin at ");
        lines.push(line);
        if done {
            break;
        }
    }
    let listening: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("listening on "))
        .collect();
    let admin = lines
        .iter()
        .find_map(|l| l.strip_prefix("admin at http://"))
        .map(|rest| rest.trim_end_matches('/').to_owned());
    let health = admin.as_ref().map(|address| {
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        write!(
            stream,
            "GET /health HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut reply = String::new();
        let _ = stream.read_to_string(&mut reply);
        reply
    });
    // The consumer's own file: with `admin.address` it would serve its admin endpoint
    // until stopped.
    let consumer_config = dir.join("consumer.yml");
    std::fs::write(
        &consumer_config,
        format!("registry:\n  address: {registry}\n"),
    )
    .unwrap();
    let member = Command::new(env!("CARGO_BIN_EXE_consumer"))
        .args([
            "--config",
            consumer_config.to_str().unwrap(),
            "--calls",
            "1",
        ])
        .stderr(Stdio::null())
        .output()
        .unwrap();
    let _ = Command::new("kill")
        .args(["-INT", &provider.id().to_string()])
        .status();
    let _ = provider.wait();
    let log = std::fs::read_to_string(logs.join("access.log")).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);

    assert_eq!(listening.len(), 2, "{lines:#?}");
    assert!(listening[0].contains("(tcp"), "{lines:#?}");
    assert!(
        listening[1].contains("(tri") || listening[1].contains("(h2"),
        "{lines:#?}"
    );
    let health = health.unwrap_or_else(|| panic!("no admin line in {lines:#?}"));
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(member.status.success(), "{:?}", member);
    assert!(log.contains("method=\"greet\""), "{log}");
}
