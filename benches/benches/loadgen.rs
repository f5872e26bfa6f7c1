//! The loadgen's own work per message besides the syscalls: stamp the payload, verify every
//! echoed byte, record the latency.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use ringecho_loadgen::engine::new_histogram;
use ringecho_loadgen::payload::Payload;

fn per_message(c: &mut Criterion) {
    let mut group = c.benchmark_group("loadgen_per_message");
    for size in [64usize, 4096] {
        let mut p = Payload::new(42, size);
        let mut h = new_histogram();
        let mut seq = 0u64;
        let mut echoed = vec![0u8; size];
        group.bench_with_input(
            BenchmarkId::new("stamp_verify_record", size),
            &size,
            |b, _| {
                b.iter(|| {
                    seq += 1;
                    echoed.copy_from_slice(p.stamp(seq));
                    let bad = p.mismatches(black_box(&echoed));
                    h.saturating_record(black_box(20 + (seq & 63)));
                    bad
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, per_message);
criterion_main!(benches);
