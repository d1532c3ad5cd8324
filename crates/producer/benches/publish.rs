//! Micro-benchmark of a whole publish with no consumer attached (slot
//! choice, fill, metadata, latest, fan-out over an empty table), on a real
//! bus in /dev/shm, for a tiny frame (protocol cost) and a 1080p frame
//! (dominated by writing the pixels).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use framebus_producer::{FakeSource, FrameSource, Producer, ProducerConfig};
use shm_layout::BusName;

fn publish(c: &mut Criterion) {
    let mut group = c.benchmark_group("publish, no consumers");
    for (w, h) in [(64u32, 48u32), (1920, 1080)] {
        let bus = BusName::new(&format!("criterion-publish-{}-{w}x{h}", std::process::id()))
            .unwrap_or_else(|e| panic!("{e}"));
        let mut producer = Producer::create(ProducerConfig::new(bus), w, h)
            .unwrap_or_else(|e| panic!("cannot create a bus: {e}"));
        let mut source = FakeSource::new(w, h);
        let (sw, sh) = source.size();
        group.throughput(Throughput::Bytes(u64::from(sw) * u64::from(sh)));
        group.bench_function(format!("{w}x{h}"), |b| {
            b.iter(|| {
                producer
                    .publish(|seq, slot| source.fill(seq, slot))
                    .unwrap_or_else(|e| panic!("{e}"))
            })
        });
        // Dropping the producer removes the bus.
    }
    group.finish();
}

criterion_group!(benches, publish);
criterion_main!(benches);
