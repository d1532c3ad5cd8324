//! The cost of the producer's liveness pass: one token test per entry that
//! is not Free (`F_OFD_GETLK` on Linux, opening a named event on Windows),
//! every housekeeping interval (50 ms).
//!
//! `cargo bench -p framebus-platform --bench token`

use criterion::{criterion_group, criterion_main, Criterion};
use framebus_platform::{
    create_shm, open_shm, size_shm, token_held, try_hold_token, unlink_shm, TokenId,
};

fn liveness_pass(c: &mut Criterion) {
    // A real bus object (POSIX shm on Linux, a named mapping on Windows).
    let name = format!("/framebus.token-bench-{}", std::process::id());
    let bus = create_shm(&name, 0o600, None)
        .expect("create the bench object")
        .expect("a new name");
    size_shm(&bus, 65536).expect("size");
    let open = || open_shm(&name).expect("open").expect("the object exists").0;
    // Eight consumers, each with its own open holding its entry's token.
    let holders: Vec<_> = (0..8)
        .map(|i| {
            let h = open();
            assert!(try_hold_token(&h, TokenId::Consumer(i)).expect("hold"));
            h
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
    drop(bus);
    let _ = unlink_shm(&name);
}

criterion_group!(benches, liveness_pass);
criterion_main!(benches);
