//! Frame micro benchmarks: writing one frame (16-byte header + body) into a buffer, and
//! splitting 1 or 64 frames out of a read buffer with `FrameDecoder`.

use std::hint::black_box;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput};
use tokio_util::codec::Decoder;
use transports::tcp::frame::{FLAG_REQUEST, FLAG_TWO_WAY, Frame, FrameDecoder};

const BODY: usize = 64;

fn frame(id: u64) -> Frame {
    let body: Bytes = (0..BODY).map(|i| i as u8).collect::<Vec<u8>>().into();
    Frame::new(FLAG_REQUEST | FLAG_TWO_WAY | 24, 0, id, body)
}

fn frames(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame");
    let one = frame(1);
    group.throughput(Throughput::Elements(1));
    let mut out = BytesMut::with_capacity(1024);
    group.bench_function("encode/64B", |b| {
        b.iter(|| {
            out.clear();
            black_box(&one).encode(&mut out);
            black_box(out.len())
        });
    });
    for count in [1u64, 64] {
        let mut wire = BytesMut::new();
        for id in 0..count {
            frame(id).encode(&mut wire);
        }
        group.throughput(Throughput::Elements(count));
        group.bench_function(
            BenchmarkId::new("decode/64B", format!("{count} frames")),
            |b| {
                let mut decoder = FrameDecoder::default();
                b.iter_batched_ref(
                    || wire.clone(),
                    |buf| {
                        let mut frames = 0u64;
                        while let Ok(Some(frame)) = decoder.decode(buf) {
                            black_box(&frame);
                            frames += 1;
                        }
                        assert_eq!(frames, count);
                    },
                    BatchSize::SmallInput,
                );
            },
        );
    }
    group.finish();
}

fn main() {
    // What `criterion_group!`/`criterion_main!` expand to, minus the undocumented `pub fn`.
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    frames(&mut criterion);
    criterion.final_summary();
}
