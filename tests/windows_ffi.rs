//! The C ABI on Windows, with real processes: the C example consumer
//! (`examples/c/consumer.c`) and the C++ example producer
//! (`examples/c/producer.cpp`), cross-compiled with mingw-w64 against
//! `framebus.dll` and the committed header, beside the Windows `framebus`
//! CLI. A C consumer verifies every byte of the Rust producer's frames, a
//! C consumer killed (`TerminateProcess`) while it holds a frame is
//! reclaimed by the Rust producer, and the C consumer (linked with the DLL
//! and, once more, with the static library) and the Rust consumer verify
//! the C++ producer's frames.
//!
//! The C programs are built by `.ci/windows-ffi.sh`, which puts them and
//! `framebus.dll` in one directory and names it in `FRAMEBUS_WIN_C_DIR`
//! (this test runs under wine, where no compiler is at hand). Without that
//! variable every test says "SKIPPED (...)" on stderr and passes.
//!
//! Built for `x86_64-pc-windows-gnu` and run under wine in CI; on other
//! targets this file is empty (`tests/ffi.rs` is the Linux counterpart).
#![cfg(windows)]

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

mod windows_common;
use windows_common::{consumer, inspect, spawn_program as spawn, wait_for, EXE};

/// Generous bound on any one wait (under wine every call is slow; never a
/// performance assertion).
const WAIT: Duration = Duration::from_secs(60);

/// The directory holding `consumer.exe` (linked with `framebus.dll`),
/// `consumer-static.exe` (with `libframebus.a`), `producer.exe` and
/// `framebus.dll`, or `None` after printing why the test is skipped.
fn c_dir(test: &str) -> Option<PathBuf> {
    let Some(dir) = std::env::var_os("FRAMEBUS_WIN_C_DIR") else {
        eprintln!(
            "{test}: SKIPPED (FRAMEBUS_WIN_C_DIR is not set; .ci/windows-ffi.sh builds the C programs and sets it)"
        );
        return None;
    };
    let dir = PathBuf::from(dir);
    for f in [
        "consumer.exe",
        "consumer-static.exe",
        "producer.exe",
        "framebus.dll",
    ] {
        assert!(
            dir.join(f).is_file(),
            "FRAMEBUS_WIN_C_DIR={} has no {f}",
            dir.display()
        );
    }
    Some(dir)
}

fn pins(v: &Value) -> u64 {
    v["slots"].as_array().map_or(u64::MAX, |s| {
        s.iter().map(|x| x["pins"].as_u64().unwrap_or(0)).sum()
    })
}

/// Checks a verifying consumer's summary: `frames` taken, none bad.
fn assert_verified(who: &str, s: &Value, frames: u64) {
    eprintln!("{who}: {s}");
    assert_eq!(s["frames"].as_u64(), Some(frames), "{who}: {s}");
    assert_eq!(s["bad_frames"].as_u64(), Some(0), "{who}: {s}");
}

#[test]
fn c_consumer_verifies_the_rust_producer_and_a_killed_one_is_reclaimed() {
    let Some(dir) = c_dir("c_consumer_verifies_the_rust_producer_and_a_killed_one_is_reclaimed")
    else {
        return;
    };
    let c_consumer = dir.join("consumer.exe");
    let bus = format!("winffi-rust-{}", std::process::id());
    let mut producer = spawn(
        &PathBuf::from(EXE),
        &[
            "produce",
            "--bus",
            &bus,
            "--size",
            "320x240",
            "--fps",
            "60",
            "--max-consumers",
            "4",
        ],
    );
    producer.line("ready", WAIT);

    // A C consumer that verifies every byte of 120 frames...
    let mut verifier = spawn(
        &c_consumer,
        &[
            "--bus",
            &bus,
            "--frames",
            "120",
            "--verify",
            "--quiet",
            "--json",
            "--timeout-ms",
            "30000",
            "--name",
            "c-verify",
        ],
    );
    verifier.line("attached", WAIT);
    // ...and one that pins a frame and holds it until it is killed.
    let mut holder = spawn(
        &c_consumer,
        &[
            "--bus",
            &bus,
            "--hold",
            "--timeout-ms",
            "30000",
            "--name",
            "c-holder",
        ],
    );
    holder.line("attached", WAIT);
    holder.line("holding", WAIT);
    wait_for(&bus, "the C holder's pin", WAIT, |v| {
        consumer(v, "c-holder")
            .is_some_and(|c| c["pinned_slots"].as_array().is_some_and(|p| !p.is_empty()))
    });
    holder.kill();
    // The Rust producer reclaims the killed C consumer's entry and pin.
    wait_for(&bus, "the killed C holder reclaimed", WAIT, |v| {
        consumer(v, "c-holder").is_none() && pins(v) <= 1
    });

    let s = verifier.summary(WAIT);
    assert_verified("C consumer of the Rust producer", &s, 120);
    assert_eq!(s["reattached"].as_u64(), Some(0), "{s}");

    // Nothing left once the producer has ended.
    producer.kill();
    drop(producer);
    assert!(inspect(&bus).is_none(), "no bus object is left");
}

#[test]
fn c_and_rust_consumers_verify_the_cpp_producer() {
    let Some(dir) = c_dir("c_and_rust_consumers_verify_the_cpp_producer") else {
        return;
    };
    let bus = format!("winffi-cpp-{}", std::process::id());
    let mut producer = spawn(
        &dir.join("producer.exe"),
        &["--bus", &bus, "--size", "320x240", "--fps", "60"],
    );
    let ready = producer.line("ready", WAIT);
    assert!(ready.contains("size=320x240"), "{ready}");

    let c_args = [
        "--bus",
        &bus,
        "--frames",
        "120",
        "--verify",
        "--quiet",
        "--json",
        "--timeout-ms",
        "30000",
    ];
    let mut c = spawn(&dir.join("consumer.exe"), &c_args);
    let mut c_static = spawn(&dir.join("consumer-static.exe"), &c_args);
    let mut rust = spawn(
        &PathBuf::from(EXE),
        &[
            "consume", "--bus", &bus, "--algo", "verify", "--frames", "120", "--json",
        ],
    );
    c.line("attached", WAIT);
    c_static.line("attached", WAIT);
    rust.line("attached", WAIT);
    assert_verified("C consumer of the C++ producer", &c.summary(WAIT), 120);
    assert_verified(
        "statically linked C consumer of the C++ producer",
        &c_static.summary(WAIT),
        120,
    );
    assert_verified(
        "Rust consumer of the C++ producer",
        &rust.summary(WAIT),
        120,
    );

    producer.kill();
    drop(producer);
    assert!(inspect(&bus).is_none(), "no bus object is left");
}
