//! Rate limiter micro benchmarks: one permit from each algorithm when the limit never
//! triggers (the cost every admitted call pays), from one thread and from two contending.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::Criterion;
use rpc_core::limit::{Acquire, Algorithm, RateLimit, RateLimiter};
use tokio::time::Instant;

fn limiters() -> Vec<(&'static str, Arc<dyn RateLimiter>)> {
    [
        ("token_bucket", Algorithm::TokenBucket),
        ("leaky_bucket", Algorithm::LeakyBucket),
        ("sliding_window", Algorithm::SlidingWindow),
        ("fixed_window", Algorithm::FixedWindow),
    ]
    .into_iter()
    .map(|(name, algorithm)| {
        // Far above any rate a benchmark loop reaches: every call is granted.
        let limit = RateLimit::per_second(u32::MAX).algorithm(algorithm);
        (name, limit.limiter("bench"))
    })
    .collect()
}

fn granted(limiter: &dyn RateLimiter) -> bool {
    matches!(
        limiter.acquire(Instant::now(), Duration::ZERO),
        Acquire::Ready(rpc_core::limit::Permit::Granted)
    )
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("limit");
    for (name, limiter) in limiters() {
        group.bench_function(name, |b| b.iter(|| black_box(granted(limiter.as_ref()))));
        // A second thread taking permits from the same limiter all along: the cost under
        // contention, as on a provider's two worker threads.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let rival = {
            let (limiter, stop) = (limiter.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    black_box(granted(limiter.as_ref()));
                }
            })
        };
        group.bench_function(format!("{name}-contended"), |b| {
            b.iter(|| black_box(granted(limiter.as_ref())))
        });
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = rival.join();
    }
    group.finish();
}

fn main() {
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    bench(&mut criterion);
    criterion.final_summary();
}
