//! Load balancer micro benchmarks: the cost of one pick, for each balancer `by_name`
//! knows, over 10 and 100 providers of equal weight, (`NAME-mixed`) of weights 1, 2, 3,
//! ..., and (`NAME-busy`) of equal weight with calls in flight: 0, 1, 2 or 3 by position,
//! so a quarter of them tie for the fewest (no retry, no warm-up).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion};
use rpc_core::client::loadbalance::{self, LoadBalance, Tried};
use rpc_core::client::{Provider, Providers};
use rpc_core::{Codec, MethodDescriptor, Request, Transport};
use transports::TcpTransport;

static METHOD: MethodDescriptor = MethodDescriptor::new("pick");

/// `count` providers on lazily connecting channels: a pick never calls them.
fn providers(count: usize) -> Providers {
    let transport = TcpTransport::default();
    (0..count)
        .filter_map(|i| {
            let address = format!("10.0.{}.{}:20880", i / 250, i % 250);
            let channel = transport.connect(&address).ok()?;
            Some(Provider::new(address, channel))
        })
        .collect::<Vec<_>>()
        .into()
}

fn request() -> Request {
    Request::new(
        "bench.Service",
        "",
        &METHOD,
        Codec::Bincode,
        Default::default(),
        Duration::from_secs(1),
    )
}

fn pick(c: &mut Criterion) {
    let mut group = c.benchmark_group("loadbalance");
    let tried = Tried::default();
    for (count, mixed, busy) in [
        (10usize, false, false),
        (100, false, false),
        (100, true, false),
        (100, false, true),
    ] {
        let mut providers = providers(count);
        assert_eq!(providers.len(), count, "every provider made");
        if mixed {
            providers = providers
                .iter()
                .enumerate()
                .map(|(i, p)| p.clone().with_weight(i as u32 + 1))
                .collect::<Vec<_>>()
                .into();
        }
        // Calls made and never polled: each counts in flight until dropped, and sends
        // nothing.
        let in_flight: Vec<_> = match busy {
            true => providers
                .iter()
                .enumerate()
                .flat_map(|(i, p)| (0..i % 4).map(move |_| p.call(request())))
                .collect(),
            false => Vec::new(),
        };
        for name in loadbalance::NAMES {
            let Ok(balancer) = loadbalance::by_name(name) else {
                continue;
            };
            let balancer: Arc<dyn LoadBalance> = balancer;
            let mut request = request();
            // Warm the balancer's state (the hash ring, the round-robin scores) outside the
            // measurement: it is built once per provider list.
            request.hash_key = Some(0);
            black_box(balancer.select(&providers, &request, &tried));
            let mut key = 0u64;
            let id = match (mixed, busy) {
                (true, _) => format!("{name}-mixed"),
                (_, true) => format!("{name}-busy"),
                _ => name.to_owned(),
            };
            group.bench_function(BenchmarkId::new(id, count), |b| {
                b.iter(|| {
                    // A new key each pick, spread as the stub's hash spreads them.
                    key = key.wrapping_add(0x9e37_79b9_7f4a_7c15);
                    request.hash_key = Some(key);
                    black_box(balancer.select(black_box(&providers), &request, &tried))
                });
            });
        }
        drop(in_flight);
    }
    group.finish();
}

fn main() {
    // What `criterion_group!`/`criterion_main!` expand to, minus the undocumented `pub fn`.
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    pick(&mut criterion);
    criterion.final_summary();
}
