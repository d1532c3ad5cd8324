//! Micro-benchmarks of the contract's hot operations: a consumer's pin and
//! release of a slot, the producer's choice of a free slot, and header
//! validation (what every attach pays).
#![cfg(not(loom))]

use criterion::{criterion_group, criterion_main, Criterion};
use shm_layout::header::MAGIC;
use shm_layout::pin::{self, consumer_bit, PinOutcome};
use shm_layout::{view, Layout, LayoutRequest, SlotEntry};
use std::hint::black_box;

fn pin_release(c: &mut Criterion) {
    let slot = SlotEntry::default();
    let bit = consumer_bit(3);
    c.bench_function("pin + release (uncontended)", |b| {
        b.iter(|| {
            let got = pin::try_pin(black_box(&slot), bit);
            debug_assert_eq!(got, PinOutcome::Pinned);
            pin::release(&slot, bit);
        })
    });
}

fn acquire_slot(c: &mut Criterion) {
    // 8 consumers x 1 pin + 2 = 10 slots, every consumer holding a slot:
    // the worst case for the producer's scan.
    let slots: Vec<SlotEntry> = (0..10).map(|_| SlotEntry::default()).collect();
    for i in 0..8u32 {
        assert_eq!(
            pin::try_pin(&slots[i as usize], consumer_bit(i)),
            PinOutcome::Pinned
        );
    }
    c.bench_function("acquire free slot + end write (8 of 10 pinned)", |b| {
        b.iter(|| {
            let s = pin::acquire_free_slot(black_box(&slots), Some(8), 0)
                .unwrap_or_else(|| panic!("slot 9 is free"));
            pin::end_write(&slots[s as usize]);
        })
    });
}

fn validate(c: &mut Criterion) {
    let layout = Layout::compute(LayoutRequest {
        width: 1920,
        height: 1080,
        max_consumers: 8,
        pins_per_consumer: 1,
        format: shm_layout::PixelFormat::Gray8,
        significant_bits: 0,
    })
    .unwrap_or_else(|e| panic!("1080p layout: {e}"));
    let mut header = layout.header(1, 1, 30_000, 0, 0);
    header.magic = MAGIC;
    let bytes = bytemuck::bytes_of(&header).to_vec();
    let mut padded = bytes.clone();
    padded.resize(256, 0);
    c.bench_function("header validation (1080p, 8 consumers)", |b| {
        b.iter(|| view::header_from_bytes(black_box(&padded), layout.total_size).is_ok())
    });
}

criterion_group!(benches, pin_release, acquire_slot, validate);
criterion_main!(benches);
