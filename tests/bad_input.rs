//! Test 5: bad input gives one clear line on stderr and a non-zero exit,
//! never a panic or a hang.

mod common;

use common::forged::{plant, valid_header};
use common::Bus;

/// Runs `args`, expects failure, returns stderr.
fn fails(bus: &Bus, args: &[&str], expect: &str) -> String {
    let (status, _out, err) = bus.run(args);
    assert!(!status.success(), "{args:?} should fail; stderr: {err}");
    assert_ne!(status.code(), Some(101), "{args:?} panicked: {err}");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    assert!(
        err.contains(expect),
        "{args:?}: expected {expect:?} in stderr: {err}"
    );
    err
}

#[test]
fn unknown_bus() {
    let bus = Bus::new("unknown");
    fails(&bus, &["consume", "--bus", &bus.name], "no bus named");
    fails(&bus, &["inspect", "--bus", &bus.name], "no bus named");
}

#[test]
fn bad_bus_names() {
    let bus = Bus::new("names");
    for name in ["a/b", "", "..", "-x", &"x".repeat(65), "sp ace"] {
        let arg = format!("--bus={name}");
        fails(&bus, &["consume", &arg], "invalid bus name");
        fails(&bus, &["produce", &arg], "invalid bus name");
    }
}

#[test]
fn foreign_object() {
    let bus = Bus::new("foreign");
    plant(&bus, &[0xAB; 4096], 4096);
    fails(&bus, &["consume", "--bus", &bus.name], "not a framebus bus");
    fails(&bus, &["inspect", "--bus", &bus.name], "not a framebus bus");
    // A producer refuses to take over something that is not a bus.
    fails(&bus, &["produce", "--bus", &bus.name], "not a framebus bus");
    assert!(
        bus.shm_path().exists(),
        "a foreign object must not be removed"
    );
}

#[test]
fn wrong_version() {
    let bus = Bus::new("version");
    let (mut bytes, l) = valid_header(64, 48);
    // Version 1 is the pid-era layout: a consumer of this build refuses it.
    bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
    plant(&bus, &bytes, l.total_size);
    fails(&bus, &["consume", "--bus", &bus.name], "layout version 1");
}

#[test]
fn truncated_object() {
    let bus = Bus::new("trunc");
    let (bytes, l) = valid_header(64, 48);
    plant(&bus, &bytes, l.total_size - 4096);
    fails(&bus, &["consume", "--bus", &bus.name], "truncated");
    let bus2 = Bus::new("tiny");
    plant(&bus2, &bytes[..100], 100);
    fails(
        &bus2,
        &["consume", "--bus", &bus2.name],
        "smaller than a framebus header",
    );
}

#[test]
fn corrupt_geometry_in_header() {
    let bus = Bus::new("geom");
    let (mut bytes, l) = valid_header(64, 48);
    bytes[40..44].copy_from_slice(&0u32.to_le_bytes()); // width 0
    plant(&bus, &bytes, l.total_size);
    fails(&bus, &["consume", "--bus", &bus.name], "width");
    let bus2 = Bus::new("geom2");
    let (mut bytes, l) = valid_header(64, 48);
    bytes[104..112].copy_from_slice(&(u64::MAX - 4095).to_le_bytes()); // gray_offset
    plant(&bus2, &bytes, l.total_size);
    fails(&bus2, &["consume", "--bus", &bus2.name], "gray_offset");
}

#[test]
fn absurd_sizes() {
    let bus = Bus::new("size");
    fails(
        &bus,
        &["produce", "--bus", &bus.name, "--size", "0x0"],
        "not a size",
    );
    fails(
        &bus,
        &["produce", "--bus", &bus.name, "--size", "100000x100000"],
        "not a size",
    );
    fails(
        &bus,
        &[
            "produce",
            "--bus",
            &bus.name,
            "--size",
            "16384x16384",
            "--max-consumers",
            "63",
            "--pins-per-consumer",
            "8",
        ],
        "64 GiB",
    );
    fails(
        &bus,
        &["produce", "--bus", &bus.name, "--max-consumers", "0"],
        "max-consumers",
    );
    fails(
        &bus,
        &["consume", "--bus", &bus.name, "--algo", "median"],
        "unknown algorithm",
    );
    assert!(!bus.shm_path().exists());
}

/// A file planted where entry 0's first FIFO goes does not stop the
/// consumer: it gives the claim back and claims again (a new generation,
/// hence a new FIFO name), and the file stays untouched.
#[test]
fn fifo_path_is_a_regular_file() {
    let mut bus = Bus::new("fifo");
    bus.producer(&["--fps", "50"]);
    let fifo = bus.trigger_dir().join("consumer-0-1.fifo");
    std::fs::write(&fifo, b"not a fifo").expect("plant a regular file");
    let (status, out, err) = bus.run(&[
        "consume", "--bus", &bus.name, "--algo", "verify", "--frames", "3", "--json",
    ]);
    assert!(status.success(), "{err}");
    assert!(err.contains("regular file"), "the obstacle is named: {err}");
    let summary: serde_json::Value =
        serde_json::from_str(out.lines().last().expect("summary")).expect("json");
    assert_eq!(summary["frames"], 3, "{out}");
    assert_eq!(summary["bad_frames"], 0, "{out}");
    assert_eq!(
        std::fs::read(&fifo).expect("still there"),
        b"not a fifo",
        "the file must be left untouched"
    );
    let v = bus.inspect();
    assert!(
        v["consumers"].as_array().expect("consumers").is_empty(),
        "{v}"
    );
}
