//! Codec micro benchmarks: encoding and decoding a request-like struct with a 64 B and a
//! 4 KiB payload, in every codec `rpc-core` ships: bincode and JSON for serde types, and a
//! protobuf message through the proto format in protobuf, bincode and JSON.

use std::hint::black_box;
use std::time::Duration;

use bytes::BytesMut;
use criterion::{BenchmarkId, Criterion, Throughput};
use rpc_core::Codec;
use serde::{Deserialize, Serialize};

/// A typical call argument: a few scalars, a short string and an opaque payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    id: u64,
    user: String,
    quantity: u32,
    price: f64,
    payload: Vec<u8>,
}

/// The same struct with the payload marked `#[serde(with = "serde_bytes")]`: serialized
/// with one `serialize_bytes` (a length and a copy) instead of one call per byte.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct OrderBytes {
    id: u64,
    user: String,
    quantity: u32,
    price: f64,
    #[serde(with = "serde_bytes")]
    payload: Vec<u8>,
}

fn order(size: usize) -> Order {
    Order {
        id: 0x0123_4567_89ab_cdef,
        user: "alice@example.com".to_owned(),
        quantity: 3,
        price: 19.99,
        payload: (0..size).map(|i| (i * 7) as u8).collect(),
    }
}

fn codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    for size in [64usize, 4096] {
        let value = order(size);
        group.throughput(Throughput::Bytes(size as u64));
        for codec in Codec::SERDE {
            let label = format!("{codec}/{size}B");
            let mut out = BytesMut::with_capacity(4 * size + 256);
            group.bench_function(BenchmarkId::new("encode", &label), |b| {
                b.iter(|| {
                    out.clear();
                    codec.encode(black_box(&value), &mut out).ok();
                    black_box(out.len())
                });
            });
            let mut encoded = BytesMut::new();
            codec.encode(&value, &mut encoded).ok();
            assert_eq!(codec.decode::<Order>(&encoded).ok().as_ref(), Some(&value));
            group.bench_function(BenchmarkId::new("decode", &label), |b| {
                b.iter(|| black_box(codec.decode::<Order>(black_box(&encoded)).ok()));
            });
            group.bench_function(BenchmarkId::new("roundtrip", &label), |b| {
                b.iter(|| {
                    out.clear();
                    codec.encode(black_box(&value), &mut out).ok();
                    black_box(codec.decode::<Order>(&out).ok())
                });
            });
        }
    }
    group.finish();
}

/// `Order` as a protobuf message (what `rpc-build` generates, serde derives included).
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ProtoOrder {
    #[prost(uint64, tag = "1")]
    id: u64,
    #[prost(string, tag = "2")]
    user: String,
    #[prost(uint32, tag = "3")]
    quantity: u32,
    #[prost(double, tag = "4")]
    price: f64,
    #[prost(bytes = "vec", tag = "5")]
    payload: Vec<u8>,
}

impl rpc_core::format::ProtoMessage for ProtoOrder {}

/// A proto service's body (one message) in each codec, as stub and skeleton write and read it.
fn codec_proto(c: &mut Criterion) {
    use rpc_core::format::{Decode, Encode, Prost};
    let mut group = c.benchmark_group("codec_proto");
    for size in [64usize, 4096] {
        let plain = order(size);
        let value = ProtoOrder {
            id: plain.id,
            user: plain.user,
            quantity: plain.quantity,
            price: plain.price,
            payload: plain.payload,
        };
        group.throughput(Throughput::Bytes(size as u64));
        for codec in [Codec::Protobuf, Codec::Bincode, Codec::Json] {
            let label = format!("{codec}/{size}B");
            let mut out = BytesMut::with_capacity(4 * size + 256);
            group.bench_function(BenchmarkId::new("roundtrip", &label), |b| {
                b.iter(|| {
                    out.clear();
                    <Prost as Encode<(&ProtoOrder,)>>::encode(
                        codec,
                        &(black_box(&value),),
                        &mut out,
                    )
                    .ok();
                    black_box(<Prost as Decode<(ProtoOrder,)>>::decode(codec, &out).ok())
                });
            });
        }
    }
    group.finish();
}

fn codec_serde_bytes(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec_serde_bytes");
    for size in [64usize, 4096] {
        let plain = order(size);
        let value = OrderBytes {
            id: plain.id,
            user: plain.user,
            quantity: plain.quantity,
            price: plain.price,
            payload: plain.payload,
        };
        group.throughput(Throughput::Bytes(size as u64));
        let codec = Codec::Bincode;
        let label = format!("{codec}/{size}B");
        let mut out = BytesMut::with_capacity(2 * size + 256);
        group.bench_function(BenchmarkId::new("roundtrip", &label), |b| {
            b.iter(|| {
                out.clear();
                codec.encode(black_box(&value), &mut out).ok();
                black_box(codec.decode::<OrderBytes>(&out).ok())
            });
        });
    }
    group.finish();
}

fn main() {
    // What `criterion_group!`/`criterion_main!` expand to, minus the undocumented `pub fn`.
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    codec(&mut criterion);
    codec_serde_bytes(&mut criterion);
    codec_proto(&mut criterion);
    criterion.final_summary();
}
