//! `rpcctl` against a running `provider` (with its admin endpoint), as a user runs them.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A provider with `--admin 127.0.0.1:0`: its service address and admin URL, as printed.
struct Provider {
    child: Child,
    address: String,
    admin: String,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_provider() -> Provider {
    let mut child = Command::new(env!("CARGO_BIN_EXE_provider"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--registry",
            "none",
            "--admin",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn provider");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
    let (mut address, mut admin) = (None, None);
    while admin.is_none() {
        let mut line = String::new();
        assert!(
            stdout.read_line(&mut line).expect("read") > 0,
            "provider exited early"
        );
        if line.starts_with("listening on ") {
            address = line.split_whitespace().nth(2).map(str::to_owned);
        }
        if let Some(url) = line.strip_prefix("admin at ") {
            admin = Some(url.trim().to_owned());
        }
    }
    assert!(
        admin.as_deref().unwrap().starts_with("http://127.0.0.1:"),
        "{admin:?}"
    );
    Provider {
        child,
        address: address.expect("the provider printed its address"),
        admin: admin.unwrap(),
    }
}

fn rpcctl(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_rpcctl"))
        .args(args)
        .output()
        .expect("run rpcctl");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn rpcctl_lists_describes_and_calls_through_the_admin_endpoint() {
    let provider = start_provider();
    let admin = provider.admin.as_str();

    let (ok, out, err) = rpcctl(&["--admin", admin, "list"]);
    assert!(ok, "{err}");
    assert!(out.contains("provides demo.Greeter greet(name)"), "{out}");
    assert!(out.contains("add(a, b)"), "{out}");
    assert!(out.contains("provides Echo echo(payload)"), "{out}");

    let (ok, out, err) = rpcctl(&["--admin", admin, "describe", "demo.Greeter"]);
    assert!(ok, "{err}");
    assert!(out.contains("slow(millis) timeout_ms=200"), "{out}");
    assert!(out.contains("log(line) oneway"), "{out}");

    let (ok, out, err) = rpcctl(&["--admin", admin, "call", "demo.Greeter", "add", "[40, 2]"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "42");
    let (ok, out, err) = rpcctl(&[
        "--admin",
        admin,
        "call",
        "demo.Greeter",
        "add",
        r#"{"a": 1, "b": 2}"#,
    ]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "3");

    let (ok, _, err) = rpcctl(&[
        "--admin",
        admin,
        "call",
        "demo.Greeter",
        "add",
        "[\"x\", 2]",
    ]);
    assert!(!ok);
    assert!(err.contains("400"), "{err}");
    let (ok, _, err) = rpcctl(&["--admin", admin, "describe", "demo.Nope"]);
    assert!(!ok);
    assert!(err.contains("no service"), "{err}");
}

#[test]
fn rpcctl_calls_a_provider_directly_by_address() {
    let provider = start_provider();
    let (ok, out, err) = rpcctl(&[
        "--address",
        &provider.address,
        "call",
        "demo.Greeter",
        "greet",
        r#"["ada"]"#,
    ]);
    assert!(ok, "{err}");
    let result: serde_json::Value = serde_json::from_str(&out).expect("JSON result");
    assert_eq!(result["Ok"], "Hello, ada! (from provider)");
    let (ok, _, err) = rpcctl(&[
        "--address",
        &provider.address,
        "call",
        "demo.Greeter",
        "nope",
    ]);
    assert!(!ok);
    assert!(err.contains("method not found"), "{err}");
}
