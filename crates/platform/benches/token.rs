//! The cost of the producer's liveness pass: one `F_OFD_GETLK` per entry
//! that is not Free, every housekeeping interval (50 ms).
//!
//! `cargo bench -p framebus-platform --bench token`

use criterion::{criterion_group, criterion_main, Criterion};
use framebus_platform::{token_held, try_hold_token, TokenId};

fn liveness_pass(c: &mut Criterion) {
    let path = std::env::temp_dir().join(format!("fb-token-bench-{}", std::process::id()));
    std::fs::write(&path, b"").expect("bench file");
    let open = || {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .expect("open")
    };
    // Eight consumers, each with its own open holding its entry's token.
    let holders: Vec<_> = (0..8)
        .map(|i| {
            let f = open();
            assert!(try_hold_token(&f, TokenId::Consumer(i)).expect("hold"));
            f
        })
        .collect();
    let producer = open();
    c.bench_function("token_held (one entry, held)", |b| {
        b.iter(|| token_held(&producer, TokenId::Consumer(3)).expect("test"))
    });
    c.bench_function("liveness pass, 8 live entries", |b| {
        b.iter(|| {
            (0..8)
                .filter(|&i| token_held(&producer, TokenId::Consumer(i)).expect("test"))
                .count()
        })
    });
    c.bench_function("liveness pass, 63 entries (8 live)", |b| {
        b.iter(|| {
            (0..63)
                .filter(|&i| token_held(&producer, TokenId::Consumer(i)).expect("test"))
                .count()
        })
    });
    drop(holders);
    let _ = std::fs::remove_file(&path);
}

criterion_group!(benches, liveness_pass);
criterion_main!(benches);
