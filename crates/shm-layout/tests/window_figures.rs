//! The window figures a consumer keeps in its entry (bytes 64..128, their
//! offsets pinned by `tables.rs`'s const asserts): what is stored is what is
//! read back, field by field, and a new claim clears them.

use shm_layout::sync::Ordering;
use shm_layout::tables::{ConsumerEntry, WindowFigures};

#[test]
fn window_figures_round_trip_at_their_offsets_and_reset() {
    let e = ConsumerEntry::default();
    let w = WindowFigures {
        fps_milli: 29_970,
        window_ms: 2_000,
        latency_p50_ns: 123_456,
        latency_p99_ns: 7_654_321,
        updated_ns: 42_000_000_000,
    };
    e.store_window(&w);
    assert_eq!(e.window(), w);
    assert_eq!(e.window_fps_milli.load(Ordering::Relaxed), 29_970);
    assert_eq!(e.window_ms.load(Ordering::Relaxed), 2_000);
    assert_eq!(e.latency_p50_ns.load(Ordering::Relaxed), 123_456);
    assert_eq!(e.latency_p99_ns.load(Ordering::Relaxed), 7_654_321);
    assert_eq!(e.window_updated_ns.load(Ordering::Relaxed), 42_000_000_000);
    e.skipped.store(5, Ordering::Relaxed);
    e.reset_figures();
    assert_eq!(e.window(), WindowFigures::default());
    assert_eq!(e.skipped.load(Ordering::Relaxed), 0);
}
