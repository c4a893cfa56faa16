//! `GET /metrics`: the statistics in Prometheus text exposition (OpenMetrics), written by
//! `prometheus-client` from a snapshot taken at scrape time.
//!
//! Families, each labelled `service` and `method`, per side (`rpc_provider_*` for calls
//! served, `rpc_consumer_*` for calls made):
//! `..._requests_total{result}` (`success` or an error kind), `..._requests_in_flight`,
//! `..._request_duration_seconds` (histogram, buckets at powers of two from 64 µs to 33 s),
//! `..._received_bytes_total`, `..._sent_bytes_total`. Consumers add
//! `rpc_consumer_provider_in_flight{service,provider}` and
//! `rpc_consumer_provider_latency_seconds{service,provider}` (moving average).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use rpc_core::stats::{MethodSnapshot, Side};

use crate::Shared;

/// Histogram bucket bounds, as exponents of two microseconds: 64 µs .. 33.5 s. Powers of
/// two are bucket edges of the statistics' own histogram, so the counts are exact.
const BUCKET_EXPONENTS: std::ops::RangeInclusive<u32> = 6..=25;

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub(crate) async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let scrape = Scrape {
        methods: shared.stats.snapshot(),
        providers: shared
            .clients()
            .iter()
            .flat_map(|client| {
                let service = client.service().to_owned();
                client
                    .providers()
                    .iter()
                    .map(|p| ProviderSample {
                        service: service.clone(),
                        address: p.address.to_string(),
                        in_flight: p.stats.in_flight() as i64,
                        latency_s: p.stats.latency_us() as f64 / 1e6,
                    })
                    .collect::<Vec<_>>()
            })
            .collect(),
        uptime_s: shared.started.elapsed().as_secs_f64(),
        ready: shared.servers().iter().any(|s| s.is_ready()),
    };
    let mut registry = Registry::default();
    registry.register_collector(Box::new(scrape));
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &registry) {
        Ok(()) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "metrics could not be encoded",
        )
            .into_response(),
    }
}

#[derive(Debug)]
struct ProviderSample {
    service: String,
    address: String,
    in_flight: i64,
    latency_s: f64,
}

#[derive(Debug)]
struct Scrape {
    methods: Vec<MethodSnapshot>,
    providers: Vec<ProviderSample>,
    uptime_s: f64,
    ready: bool,
}

/// A label value as written: prometheus-client writes values verbatim, so the characters
/// that would end or break a quoted value are replaced.
fn label(value: &str) -> String {
    value
        .chars()
        .map(|c| match c {
            '"' | '\\' | '\n' | '\r' => '_',
            c => c,
        })
        .collect()
}

fn method_labels(m: &MethodSnapshot) -> Vec<(&'static str, String)> {
    vec![("service", label(&m.service)), ("method", label(&m.method))]
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for side in [Side::Provider, Side::Consumer] {
            let methods: Vec<&MethodSnapshot> =
                self.methods.iter().filter(|m| m.side == side).collect();
            if methods.is_empty() {
                continue;
            }
            let prefix = format!("rpc_{}", side.name());
            let who = match side {
                Side::Provider => "served",
                Side::Consumer => "made",
            };

            let name = format!("{prefix}_requests");
            let help = format!("Calls {who} and finished, by outcome (success or error kind).");
            let mut family = encoder.encode_descriptor(&name, &help, None, MetricType::Counter)?;
            for m in &methods {
                let mut outcomes = vec![("success", m.succeeded)];
                outcomes.extend(m.failed.iter().map(|(kind, n)| (*kind, *n)));
                for (result, count) in outcomes {
                    let mut labels = method_labels(m);
                    labels.push(("result", result.to_owned()));
                    family
                        .encode_family(&labels)?
                        .encode_counter::<NoLabelSet, _, u64>(&count, None)?;
                }
            }

            let name = format!("{prefix}_requests_in_flight");
            let help = format!("Calls {who} and not finished yet.");
            let mut family = encoder.encode_descriptor(&name, &help, None, MetricType::Gauge)?;
            for m in &methods {
                family
                    .encode_family(&method_labels(m))?
                    .encode_gauge(&(m.in_flight as i64))?;
            }

            let name = format!("{prefix}_request_duration");
            let help = format!("Latency of calls {who}.");
            let mut family = encoder.encode_descriptor(
                &name,
                &help,
                Some(&Unit::Seconds),
                MetricType::Histogram,
            )?;
            for m in &methods {
                let h = &m.histogram;
                let mut below = 0;
                let mut buckets = Vec::with_capacity(BUCKET_EXPONENTS.count() + 1);
                for exp in BUCKET_EXPONENTS {
                    let upto = h.count_at_most((1u64 << exp) - 1);
                    buckets.push(((1u64 << exp) as f64 / 1e6, upto - below));
                    below = upto;
                }
                buckets.push((f64::MAX, h.count() - below));
                family
                    .encode_family(&method_labels(m))?
                    .encode_histogram::<NoLabelSet>(
                        h.sum_us() as f64 / 1e6,
                        h.count(),
                        &buckets,
                        None,
                    )?;
            }

            for (name, help, value) in [
                (
                    format!("{prefix}_received"),
                    "Encoded bytes received: arguments (provider) or results (consumer).",
                    (|m: &MethodSnapshot| m.bytes_in) as fn(&MethodSnapshot) -> u64,
                ),
                (
                    format!("{prefix}_sent"),
                    "Encoded bytes sent: results (provider) or arguments (consumer).",
                    |m: &MethodSnapshot| m.bytes_out,
                ),
            ] {
                let mut family = encoder.encode_descriptor(
                    &name,
                    help,
                    Some(&Unit::Bytes),
                    MetricType::Counter,
                )?;
                for m in &methods {
                    family
                        .encode_family(&method_labels(m))?
                        .encode_counter::<NoLabelSet, _, u64>(&value(m), None)?;
                }
            }
        }

        if !self.providers.is_empty() {
            let mut family = encoder.encode_descriptor(
                "rpc_consumer_provider_in_flight",
                "Calls under way to each provider, as this consumer counts them.",
                None,
                MetricType::Gauge,
            )?;
            for p in &self.providers {
                let labels = [
                    ("service", label(&p.service)),
                    ("provider", label(&p.address)),
                ];
                family.encode_family(&labels)?.encode_gauge(&p.in_flight)?;
            }
            let mut family = encoder.encode_descriptor(
                "rpc_consumer_provider_latency",
                "Recent latency of each provider (moving average), as this consumer sees it.",
                Some(&Unit::Seconds),
                MetricType::Gauge,
            )?;
            for p in &self.providers {
                let labels = [
                    ("service", label(&p.service)),
                    ("provider", label(&p.address)),
                ];
                family.encode_family(&labels)?.encode_gauge(&p.latency_s)?;
            }
        }

        encoder
            .encode_descriptor(
                "rpc_admin_uptime",
                "Time since the admin endpoint started.",
                Some(&Unit::Seconds),
                MetricType::Gauge,
            )?
            .encode_gauge(&self.uptime_s)?;
        encoder
            .encode_descriptor(
                "rpc_ready",
                "1 while a server of this process serves, else 0.",
                None,
                MetricType::Gauge,
            )?
            .encode_gauge(&(self.ready as i64))?;
        Ok(())
    }
}
