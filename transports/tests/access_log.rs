//! The access log over TCP: one line per call under `rpc::access`, with caller, service,
//! method, status, duration and sizes; and its file writer.
//!
//! The test runs on a current-thread runtime, so the server's tasks log where its
//! subscriber is the default.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{ProbeClient, ProbeImpl, ProbeServer};
use rpc_core::Server;
use rpc_core::server::access_log::{ACCESS_TARGET, Rotation, file_writer};
use transports::TcpTransport;

/// Appends to a shared buffer.
#[derive(Clone)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Buffer {
    fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

#[tokio::test]
async fn each_call_logs_one_line_with_caller_service_method_status_duration_and_sizes() {
    let buffer = Buffer(Arc::default());
    let sink = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(format!(
            "{ACCESS_TARGET}=info"
        )))
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = Server::builder()
        .transport(TcpTransport::default())
        .add_service(ProbeServer::new(ProbeImpl::default()))
        .access_log(true)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let probe = ProbeClient::builder()
        .transport(TcpTransport::default())
        .address(server.local_addr().to_string())
        .timeout(Duration::from_secs(10))
        .retries(0)
        .build()
        .unwrap();
    assert_eq!(probe.echo("x".repeat(100)).await.unwrap().len(), 100);
    let _ = probe.explode("boom".into()).await.unwrap_err();

    let found = common::eventually(Duration::from_secs(10), || buffer.lines().len() >= 2).await;
    let lines = buffer.lines();
    assert!(found.is_some(), "{lines:#?}");
    assert_eq!(lines.len(), 2, "{lines:#?}");
    let (ok, failed) = (&lines[0], &lines[1]);
    for line in [ok, failed] {
        assert!(line.contains(" INFO rpc::access: call"), "{line}");
        assert!(line.contains("caller=127.0.0.1:"), "{line}");
        assert!(line.contains("service=\"test.Probe\""), "{line}");
        assert!(line.contains("duration_us="), "{line}");
        // The subscriber's timestamp opens the line.
        assert!(line.starts_with("20"), "{line}");
    }
    assert!(ok.contains("method=\"echo\""), "{ok}");
    assert!(ok.contains("status=\"ok\""), "{ok}");
    // bincode: a length prefix and the 100 bytes, each way.
    assert!(ok.contains("request_bytes=10"), "{ok}");
    assert!(ok.contains("response_bytes=10"), "{ok}");
    assert!(failed.contains("method=\"explode\""), "{failed}");
    assert!(failed.contains("status=\"service error\""), "{failed}");
    assert!(failed.contains("response_bytes=0"), "{failed}");
}

#[test]
fn the_file_writer_writes_lines_under_its_prefix() {
    let dir = std::env::temp_dir().join(format!("rpc-access-log-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    {
        let (writer, _flush) = file_writer(&dir, "access.log", Rotation::Daily, 7).unwrap();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(writer)
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: ACCESS_TARGET, service = "demo.Greeter", "call");
        });
    }
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("access.log."), "{name}");
    let text = std::fs::read_to_string(&files[0]).unwrap();
    assert!(text.contains("service=\"demo.Greeter\""), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
    assert!("weekly".parse::<Rotation>().is_err());
}

#[test]
fn the_size_rotated_writer_starts_a_new_file_past_the_limit_and_keeps_a_bounded_number() {
    let dir = std::env::temp_dir().join(format!("rpc-access-log-size-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let rotation: Rotation = "size:1K".parse().unwrap();
    assert_eq!(rotation, Rotation::Size(1024));
    {
        let (writer, _flush) = file_writer(&dir, "access.log", rotation, 3).unwrap();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(writer)
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            // About 100 bytes a line: 100 lines are about ten files' worth.
            for call in 0..100 {
                tracing::info!(target: ACCESS_TARGET, call, service = "demo.Greeter", "call");
            }
        });
    }
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["access.log", "access.log.1", "access.log.2"]);
    for name in &names {
        let size = std::fs::metadata(dir.join(name)).unwrap().len();
        // A file ends with the line that took it past the limit.
        assert!(size < 1024 + 200, "{name}: {size} bytes");
    }
    let newest = std::fs::read_to_string(dir.join("access.log")).unwrap();
    assert!(newest.contains("call=99"), "{newest}");
    let _ = std::fs::remove_dir_all(&dir);
    for bad in ["size:", "size:0", "size:12X", "size:-1"] {
        assert!(bad.parse::<Rotation>().is_err(), "{bad}");
    }
    assert_eq!(
        "size:2M".parse::<Rotation>().unwrap(),
        Rotation::Size(2 << 20)
    );
}
