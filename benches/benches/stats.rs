//! Call statistics micro benchmarks: what counting one call costs a provider or a consumer
//! (`MethodStats::start` + `CallGuard::finish`: in flight, bytes, histogram, rate window),
//! from one thread and with a second thread counting calls of the same method all along
//! (a provider's two worker threads on one hot method).

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use criterion::Criterion;
use rpc_core::stats::{MethodStats, Side, Stats};

fn count_one(stats: &MethodStats) {
    stats.start(black_box(64)).finish(Ok(black_box(64)));
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("stats");
    for (name, side) in [("provider", Side::Provider), ("consumer", Side::Consumer)] {
        let stats = Stats::new().method(side, "bench.Echo", "echo");
        group.bench_function(name, |b| b.iter(|| count_one(stats)));
        let stop = Arc::new(AtomicBool::new(false));
        let rival = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    count_one(stats);
                }
            })
        };
        group.bench_function(format!("{name}-contended"), |b| b.iter(|| count_one(stats)));
        stop.store(true, Ordering::Relaxed);
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
