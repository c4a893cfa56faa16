//! The provider's statistics time a call from when the transport read it
//! (`Context::with_received_at`), not from when the call reached the statistics layer:
//! one clock read per call fewer, and time spent queued before the layer is counted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rpc_core::server::Dispatcher;
use rpc_core::stats::{Side, Stats, StatsLayer};
use rpc_core::{Attachments, Codec, Context, Response, ServerRequest};
use tower::{Layer, ServiceExt};

/// A service to resolve a method of.
#[rpc_core::service(name = "test.Clock")]
pub trait Clock {
    /// Answers at once.
    async fn tick(&self) -> u32;
}

struct ClockImpl;

impl Clock for ClockImpl {
    async fn tick(&self) -> u32 {
        1
    }
}

async fn latency_of(context: Context) -> u64 {
    let stats = Stats::new();
    let layer = StatsLayer::new(stats.table(Side::Provider, &[&CLOCK_DESCRIPTOR]));
    let dispatcher = Dispatcher::new(vec![Arc::new(ClockServer::new(ClockImpl))]);
    let request = ServerRequest {
        method: dispatcher.resolve("test.Clock", "", "tick").unwrap(),
        context,
        codec: Codec::Bincode,
        body: Default::default(),
    };
    // The layer's inner service answers at once: all the latency is what came before.
    let answer = tower::service_fn(|_: ServerRequest| {
        std::future::ready(Ok(Response::new(Codec::Bincode, Default::default())))
    });
    layer.layer(answer).oneshot(request).await.unwrap();
    let snapshot = stats.snapshot();
    assert_eq!(snapshot.len(), 1);
    assert_eq!(snapshot[0].succeeded, 1);
    snapshot[0].latency_us.max
}

#[tokio::test]
async fn a_call_is_timed_from_when_the_transport_read_it() {
    let received = Instant::now() - Duration::from_millis(300);
    let context = Context::new(Attachments::new(), None, None).with_received_at(received);
    assert_eq!(context.received_at(), Some(received));
    let micros = latency_of(context).await;
    assert!(micros >= 300_000, "{micros} µs");
}

#[tokio::test]
async fn without_a_receive_time_the_layer_reads_the_clock() {
    let micros = latency_of(Context::new(Attachments::new(), None, None)).await;
    assert!(micros < 300_000, "{micros} µs");
}
