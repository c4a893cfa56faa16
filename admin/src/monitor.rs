//! Dubbo-style monitor: processes push their statistics every interval to a monitor
//! service, which keeps the latest report of each process and shows the aggregate.
//!
//! The monitor is an ordinary service of this framework ([`Monitor`], `rpc.Monitor`): a
//! process pushes with [`push`] through a [`MonitorClient`] (any registry, balancing,
//! transport), a monitor process serves a [`MonitorServer`] over a [`MonitorStore`] and
//! shows it with [`crate::AdminBuilder::monitor`] (`GET /monitor`, `GET /api/monitor`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rpc_core::stats::{MethodSnapshot, Stats};
use serde::{Deserialize, Serialize};

/// How often a process pushes by default, as in Dubbo.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);

/// The monitor service: receives one process's statistics.
#[rpc_core::service(name = "rpc.Monitor")]
pub trait Monitor {
    /// Takes a process's report; answers how many processes the monitor now follows.
    async fn collect(&self, report: Report) -> u32;
}

/// What a process pushes: who it is and its numbers per method.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Report {
    /// The application (Dubbo's `application.name`).
    pub application: String,
    /// Host name or address of the process.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// When the report was made, ms since the Unix epoch.
    pub at_ms: u64,
    /// The push interval, so the monitor knows when a process has gone quiet.
    pub interval_ms: u64,
    /// One entry per method and side.
    pub methods: Vec<MethodReport>,
}

/// One method's numbers in a [`Report`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MethodReport {
    /// `provider` or `consumer`.
    pub side: String,
    /// Service name.
    pub service: String,
    /// Method name.
    pub method: String,
    /// Calls finished.
    pub total: u64,
    /// Calls that succeeded.
    pub succeeded: u64,
    /// Calls that failed.
    pub failed: u64,
    /// Calls under way.
    pub in_flight: u64,
    /// Calls per second over the last minute.
    pub qps_1m: f64,
    /// Mean latency, µs.
    pub avg_us: u64,
    /// Median latency, µs.
    pub p50_us: u64,
    /// 99th percentile latency, µs.
    pub p99_us: u64,
    /// Largest latency, µs.
    pub max_us: u64,
}

impl From<&MethodSnapshot> for MethodReport {
    fn from(m: &MethodSnapshot) -> MethodReport {
        MethodReport {
            side: m.side.name().to_owned(),
            service: m.service.clone(),
            method: m.method.clone(),
            total: m.total,
            succeeded: m.succeeded,
            failed: m.failed_total,
            in_flight: m.in_flight,
            qps_1m: m.qps_1m,
            avg_us: m.latency_us.avg,
            p50_us: m.latency_us.p50,
            p99_us: m.latency_us.p99,
            max_us: m.latency_us.max,
        }
    }
}

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// This process's report from `stats` now.
pub fn report(stats: &Stats, application: &str, interval: Duration) -> Report {
    Report {
        application: application.to_owned(),
        host: std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into()),
        pid: std::process::id(),
        at_ms: epoch_ms(),
        interval_ms: interval.as_millis() as u64,
        methods: stats
            .snapshot()
            .iter()
            // Calls to the monitor itself are not news to the monitor.
            .filter(|m| m.service != MONITOR_DESCRIPTOR.name)
            .map(MethodReport::from)
            .collect(),
    }
}

/// Pushes this process's statistics every `interval` through `client` until the
/// returned handle is dropped. A failed push is logged and the next one tried on time.
pub fn push(
    client: MonitorClient,
    stats: Stats,
    application: &str,
    interval: Duration,
) -> PushHandle {
    let application = application.to_owned();
    let interval = interval.max(Duration::from_millis(10));
    let task = tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let report = report(&stats, &application, interval);
            match client.collect(report).await {
                Ok(processes) => tracing::debug!(processes, "statistics pushed to the monitor"),
                Err(error) => tracing::warn!(%error, "could not push statistics to the monitor"),
            }
        }
    });
    PushHandle { task }
}

/// Stops the pushes of [`push`] when dropped.
#[derive(Debug)]
pub struct PushHandle {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PushHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The latest report of every process that pushed, forgetting a process silent for three
/// of its intervals. Cheap to clone (shared).
#[derive(Clone, Default, Debug)]
pub struct MonitorStore {
    reports: Arc<Mutex<Reports>>,
}

/// Latest report per (application, host, pid), with when it arrived (ms since the epoch).
type Reports = HashMap<(String, String, u32), (u64, Report)>;

/// At most this many processes are followed; reports from more are refused, so a flood
/// of made-up process ids cannot grow the store without bound.
pub const MAX_PROCESSES: usize = 10_000;

impl MonitorStore {
    /// An empty store.
    pub fn new() -> MonitorStore {
        MonitorStore::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Reports> {
        self.reports
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Keeps `report` as its process's latest; returns how many processes are followed.
    pub fn insert(&self, report: Report) -> rpc_core::Result<u32> {
        let now = epoch_ms();
        let mut reports = self.lock();
        reports.retain(|_, (received, r)| {
            now.saturating_sub(*received) <= 3 * r.interval_ms.max(1_000)
        });
        let key = (report.application.clone(), report.host.clone(), report.pid);
        if reports.len() >= MAX_PROCESSES && !reports.contains_key(&key) {
            return Err(rpc_core::Error::Rejected(format!(
                "the monitor follows {MAX_PROCESSES} processes already"
            )));
        }
        reports.insert(key, (now, report));
        Ok(reports.len() as u32)
    }

    /// The latest report of each process followed, oldest application first.
    pub fn processes(&self) -> Vec<Report> {
        let now = epoch_ms();
        let mut reports: Vec<Report> = self
            .lock()
            .values()
            .filter(|(received, r)| now.saturating_sub(*received) <= 3 * r.interval_ms.max(1_000))
            .map(|(_, r)| r.clone())
            .collect();
        reports.sort_by(|a, b| {
            (&a.application, &a.host, a.pid).cmp(&(&b.application, &b.host, b.pid))
        });
        reports
    }

    /// Every method summed over the processes: counts, in flight and rates added, the
    /// mean weighted by calls, the largest p99 and max (an upper bound of the true p99:
    /// percentiles of separate processes do not add up).
    pub fn aggregate(&self) -> Vec<Aggregate> {
        let mut all: HashMap<(String, String, String), Aggregate> = HashMap::new();
        for report in self.processes() {
            for m in report.methods {
                let entry = all
                    .entry((m.side.clone(), m.service.clone(), m.method.clone()))
                    .or_insert_with(|| Aggregate {
                        side: m.side.clone(),
                        service: m.service.clone(),
                        method: m.method.clone(),
                        ..Aggregate::default()
                    });
                let weight_before = entry.total as f64;
                entry.processes += 1;
                entry.total += m.total;
                entry.succeeded += m.succeeded;
                entry.failed += m.failed;
                entry.in_flight += m.in_flight;
                entry.qps_1m += m.qps_1m;
                entry.avg_us = match entry.total {
                    0 => 0,
                    total => {
                        ((entry.avg_us as f64 * weight_before + m.avg_us as f64 * m.total as f64)
                            / total as f64) as u64
                    }
                };
                entry.p99_us = entry.p99_us.max(m.p99_us);
                entry.max_us = entry.max_us.max(m.max_us);
            }
        }
        let mut all: Vec<Aggregate> = all.into_values().collect();
        all.sort_by(|a, b| (&a.side, &a.service, &a.method).cmp(&(&b.side, &b.service, &b.method)));
        all
    }
}

/// One method summed over every process ([`MonitorStore::aggregate`]).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Aggregate {
    /// `provider` or `consumer`.
    pub side: String,
    /// Service name.
    pub service: String,
    /// Method name.
    pub method: String,
    /// Processes reporting it.
    pub processes: u32,
    /// Calls finished.
    pub total: u64,
    /// Calls that succeeded.
    pub succeeded: u64,
    /// Calls that failed.
    pub failed: u64,
    /// Calls under way.
    pub in_flight: u64,
    /// Calls per second over the last minute, all processes.
    pub qps_1m: f64,
    /// Mean latency weighted by calls, µs.
    pub avg_us: u64,
    /// The largest p99 of any process, µs.
    pub p99_us: u64,
    /// The largest latency of any process, µs.
    pub max_us: u64,
}

impl Monitor for MonitorStore {
    async fn collect(&self, report: Report) -> u32 {
        match self.insert(report) {
            Ok(processes) => processes,
            Err(error) => {
                tracing::warn!(%error, "monitor report refused");
                0
            }
        }
    }
}
