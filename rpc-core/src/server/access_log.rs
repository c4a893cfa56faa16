//! The access log: one `tracing` event per call served, under its own target.
//!
//! [`AccessLogLayer`] is a provider layer ([`super::ServerBuilder::access_log`] adds it
//! outermost). Each call that reached the provider stack gives one INFO event under the
//! target [`ACCESS_TARGET`] (`rpc::access`) with the fields `caller`, `service`,
//! `method`, `status` (`ok` or the [`crate::Code`] name), `duration_us`,
//! `request_bytes` and `response_bytes`; the subscriber adds the time. Route it with the
//! subscriber's filter (`rpc::access=info`), or to files with
//! [`file_writer`] (rotation daily or hourly via `tracing-appender`, or by size via
//! `file-rotate`).
//! Calls refused before the stack (a bad token, an unknown service) are logged under
//! `rpc::security` or at debug instead.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::Instant;

use tower::{Layer, Service};

use crate::{Error, Response, Result, ServerRequest};

/// The `tracing` target of access log events.
pub const ACCESS_TARGET: &str = "rpc::access";

/// Logs every call that passes through it (see the [module docs](self)).
#[derive(Clone, Copy, Debug, Default)]
pub struct AccessLogLayer {
    _private: (),
}

impl AccessLogLayer {
    /// The layer.
    pub fn new() -> AccessLogLayer {
        AccessLogLayer { _private: () }
    }
}

impl<S> Layer<S> for AccessLogLayer {
    type Service = AccessLog<S>;

    fn layer(&self, inner: S) -> AccessLog<S> {
        AccessLog { inner }
    }
}

/// The service of [`AccessLogLayer`].
#[derive(Clone, Debug)]
pub struct AccessLog<S> {
    inner: S,
}

impl<S> Service<ServerRequest> for AccessLog<S>
where
    S: Service<ServerRequest, Response = Response, Error = Error>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response>> + Send>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<()>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: ServerRequest) -> Self::Future {
        // A disabled target costs one check of the subscriber's interest per call.
        if !tracing::enabled!(target: ACCESS_TARGET, tracing::Level::INFO) {
            return Box::pin(self.inner.call(request));
        }
        let started = Instant::now();
        let service = request.method.service().name;
        let method = request.method.descriptor().name;
        let caller = request.context.peer_addr();
        let request_bytes = request.body.len();
        let call = self.inner.call(request);
        Box::pin(async move {
            let result = call.await;
            let (status, response_bytes) = match &result {
                Ok(response) => ("ok", response.body.len()),
                Err(error) => (error.code().name(), 0),
            };
            let duration_us = started.elapsed().as_micros() as u64;
            match caller {
                Some(caller) => {
                    tracing::info!(target: ACCESS_TARGET, %caller, service, method, status, duration_us, request_bytes, response_bytes, "call")
                }
                None => {
                    tracing::info!(target: ACCESS_TARGET, caller = "-", service, method, status, duration_us, request_bytes, response_bytes, "call")
                }
            }
            result
        })
    }
}

/// Flushes an access log file writer when dropped ([`file_writer`]).
pub type FileGuard = tracing_appender::non_blocking::WorkerGuard;

/// How often an access log file starts anew.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rotation {
    /// A new file every day (`PREFIX.YYYY-MM-DD`).
    Daily,
    /// A new file every hour (`PREFIX.YYYY-MM-DD-HH`).
    Hourly,
    /// One file, never rotated.
    Never,
    /// A new file once the current one passes this many bytes: `PREFIX` is the current
    /// file, `PREFIX.1` the one before, and so on.
    Size(u64),
}

impl std::str::FromStr for Rotation {
    type Err = Error;

    fn from_str(text: &str) -> Result<Rotation> {
        match text {
            "daily" => Ok(Rotation::Daily),
            "hourly" => Ok(Rotation::Hourly),
            "never" => Ok(Rotation::Never),
            other => match other.strip_prefix("size:").map(parse_size) {
                Some(Some(bytes)) if bytes > 0 => Ok(Rotation::Size(bytes)),
                _ => Err(Error::Config(format!(
                    "unknown access log rotation {other:?}; expected daily, hourly, never or \
                     size:BYTES (with an optional K, M or G suffix, e.g. size:64M)"
                ))),
            },
        }
    }
}

/// `64M` as bytes (K, M and G are powers of 1024).
fn parse_size(text: &str) -> Option<u64> {
    let (digits, unit) = match text.trim().char_indices().last()? {
        (at, 'K' | 'k') => (&text[..at], 1 << 10),
        (at, 'M' | 'm') => (&text[..at], 1 << 20),
        (at, 'G' | 'g') => (&text[..at], 1 << 30),
        _ => (text.trim(), 1),
    };
    digits.trim().parse::<u64>().ok()?.checked_mul(unit)
}

/// A non-blocking writer of files in `dir` named `prefix` plus the date (or, rotated by
/// size, `prefix`, `prefix.1`, ...), rotated as `rotation` says, keeping at most `keep`
/// files (0: all). Give it to a
/// `tracing_subscriber::fmt` layer filtered to [`ACCESS_TARGET`]; keep the guard alive
/// for as long as lines should be written (dropping it flushes).
pub fn file_writer(
    dir: impl AsRef<Path>,
    prefix: &str,
    rotation: Rotation,
    keep: usize,
) -> Result<(
    tracing_appender::non_blocking::NonBlocking,
    tracing_appender::non_blocking::WorkerGuard,
)> {
    let cannot_open = |error: &dyn std::fmt::Display| {
        Error::Config(format!(
            "cannot open the access log in {}: {error}",
            dir.as_ref().display()
        ))
    };
    let rotation = match rotation {
        Rotation::Daily => tracing_appender::rolling::Rotation::DAILY,
        Rotation::Hourly => tracing_appender::rolling::Rotation::HOURLY,
        Rotation::Never => tracing_appender::rolling::Rotation::NEVER,
        Rotation::Size(bytes) => {
            // `FileRotate::new` panics when it cannot create the directory or is given a
            // zero limit: both are checked here first.
            std::fs::create_dir_all(dir.as_ref()).map_err(|e| cannot_open(&e))?;
            let limit = usize::try_from(bytes.max(1)).unwrap_or(usize::MAX);
            let files = if keep == 0 {
                usize::MAX
            } else {
                keep.saturating_sub(1).max(1)
            };
            let writer = file_rotate::FileRotate::new(
                dir.as_ref().join(prefix),
                file_rotate::suffix::AppendCount::new(files),
                file_rotate::ContentLimit::BytesSurpassed(limit),
                file_rotate::compression::Compression::None,
                None,
            );
            return Ok(tracing_appender::non_blocking(writer));
        }
    };
    let mut builder = tracing_appender::rolling::RollingFileAppender::builder()
        .rotation(rotation)
        .filename_prefix(prefix);
    if keep > 0 {
        builder = builder.max_log_files(keep);
    }
    let appender = builder
        .build(dir.as_ref())
        .map_err(|error| cannot_open(&error))?;
    Ok(tracing_appender::non_blocking(appender))
}
