//! Per-task latency recording and the summary printed per system.

use std::time::Duration;

use hdrhistogram::Histogram;

/// Latencies and outcomes of the calls one or more tasks made in the measured window.
#[derive(Debug, Clone)]
pub struct Recorder {
    /// Latency of every successful call, in nanoseconds.
    pub latency: Histogram<u64>,
    /// Calls that completed successfully (and echoed the right number of bytes).
    pub ok: u64,
    /// Calls that failed, timed out or echoed something else.
    pub errors: u64,
    /// The first error seen, for the report.
    pub first_error: Option<String>,
}

impl Default for Recorder {
    fn default() -> Recorder {
        Recorder::new()
    }
}

impl Recorder {
    /// An empty recorder tracking 1 ns to 60 s at 3 significant digits.
    pub fn new() -> Recorder {
        Recorder {
            latency: Histogram::new_with_bounds(1, 60_000_000_000, 3)
                .unwrap_or_else(|e| unreachable!("static histogram bounds are valid: {e}")),
            ok: 0,
            errors: 0,
            first_error: None,
        }
    }

    /// Records a successful call that took `elapsed`.
    pub fn success(&mut self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.latency.saturating_record(nanos.max(1));
        self.ok += 1;
    }

    /// Records a failed call.
    pub fn failure(&mut self, error: impl std::fmt::Display) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(error.to_string());
        }
    }

    /// Adds another recorder's counts into this one.
    pub fn merge(&mut self, other: &Recorder) {
        self.latency.add(&other.latency).ok();
        self.ok += other.ok;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
    }

    /// Summarizes the calls made during `window`.
    pub fn summary(&self, system: &str, window: Duration) -> Summary {
        let us = |q: f64| self.latency.value_at_quantile(q) as f64 / 1000.0;
        Summary {
            system: system.to_owned(),
            qps: self.ok as f64 / window.as_secs_f64(),
            p50_us: us(0.50),
            p99_us: us(0.99),
            p999_us: us(0.999),
            errors: self.errors,
            cpu_per_call: None,
        }
    }
}

/// The result line of one system.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// The system's name (`rpc`, `tarpc`, `tonic`).
    pub system: String,
    /// Successful calls per second.
    pub qps: f64,
    /// Median latency, microseconds.
    pub p50_us: f64,
    /// 99th percentile latency, microseconds.
    pub p99_us: f64,
    /// 99.9th percentile latency, microseconds.
    pub p999_us: f64,
    /// Failed calls.
    pub errors: u64,
    /// CPU time per call over the measured window, of the client and of the server
    /// process, when measured.
    pub cpu_per_call: Option<CpuPerCall>,
}

/// CPU time (user + system, every thread) a process spent per call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuPerCall {
    /// The load generator's process, microseconds per call.
    pub client_us: f64,
    /// The server's process, microseconds per call.
    pub server_us: f64,
}

impl CpuPerCall {
    /// Client and server together, microseconds per call.
    pub fn total_us(&self) -> f64 {
        self.client_us + self.server_us
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "system={} qps={:.0} p50_us={:.1} p99_us={:.1} p999_us={:.1} errors={}",
            self.system, self.qps, self.p50_us, self.p99_us, self.p999_us, self.errors
        )?;
        if let Some(cpu) = &self.cpu_per_call {
            write!(
                f,
                " client_cpu_us_per_call={:.2} server_cpu_us_per_call={:.2}",
                cpu.client_us, cpu.server_us
            )?;
        }
        Ok(())
    }
}

impl Summary {
    /// `ratio A/B qps=..x p99=..x`: throughput and tail latency of `self` relative to `other`.
    pub fn ratio(&self, other: &Summary) -> String {
        let div = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
        format!(
            "ratio {}/{} qps={:.2}x p50={:.2}x p99={:.2}x",
            self.system,
            other.system,
            div(self.qps, other.qps),
            div(self.p50_us, other.p50_us),
            div(self.p99_us, other.p99_us),
        )
    }
}
