//! `framebus clean` and environment independence: the producer lock and
//! the trigger directory do not depend on `FRAMEBUS_RUNTIME_DIR`.

mod common;

use std::time::Duration;

use common::{u, Bus};
use rustix::process::Signal;

const T: Duration = Duration::from_secs(30);

/// A consumer whose FRAMEBUS_RUNTIME_DIR differs from its producer's still gets
/// frames: it uses the trigger directory the producer recorded in the bus.
#[test]
fn consumer_with_another_runtime_dir_connects() {
    let mut bus = Bus::new("env");
    bus.producer(&["--fps", "100", "--size", "64x48"]);
    let other = tempdir("env-other");
    let mut consumer = bus
        .command(&[
            "consume", "--bus", &bus.name, "--algo", "verify", "--frames", "20", "--json",
        ])
        .env("FRAMEBUS_RUNTIME_DIR", &other)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn consumer");
    let status = common::wait_timeout(&mut consumer, T).expect("consumer finished");
    assert!(status.success(), "consumer exit {status:?}");
    let _ = std::fs::remove_dir_all(other);
}

/// `clean` leaves a live producer's bus alone — even run with another
/// FRAMEBUS_RUNTIME_DIR — and removes a killed producer's object and FIFOs.
#[test]
fn clean_removes_only_stale_buses() {
    let mut bus = Bus::new("clean");
    let producer = bus.producer(&["--fps", "100", "--size", "64x48"]);
    let consumer = bus.consumer(&["--algo", "mean"]);
    bus.wait_for("a connected consumer", T, |v| {
        v["consumers"]
            .as_array()
            .is_some_and(|c| c.len() == 1 && u(&c[0]["frames"]) > 0)
    });
    let name = bus.name.clone();
    let other = tempdir("clean-other");
    let out = bus
        .command(&["clean", "--bus", &name])
        .env("FRAMEBUS_RUNTIME_DIR", &other)
        .output()
        .expect("run clean");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("left alone"),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(bus.shm_path().exists(), "clean removed a live bus");
    // Kill both: the bus and the consumer's FIFO are left behind.
    consumer.signal(Signal::STOP);
    producer.signal(Signal::KILL);
    bus.wait(&producer, T);
    // Entry 0's first owner: generation 1.
    let fifo = bus.trigger_dir().join("consumer-0-1.fifo");
    let lock = std::path::PathBuf::from(format!("/dev/shm/.framebus-lock.{name}"));
    assert!(fifo.exists() && bus.shm_path().exists() && lock.exists());
    let (status, out, err) = bus.run(&["clean", "--bus", &name]);
    assert!(status.success(), "{err}");
    assert!(
        out.contains("removed")
            && out.contains(&format!("framebus.{name}"))
            && out.contains(&format!(".framebus-lock.{name}")),
        "{out}"
    );
    assert!(!bus.shm_path().exists(), "stale object left");
    assert!(!fifo.exists(), "stale FIFO left");
    assert!(!lock.exists(), "stale lock object left");
    let (_, again, _) = bus.run(&["clean", "--bus", &name]);
    assert!(again.contains("nothing left behind"), "{again}");
    consumer.signal(Signal::KILL);
    let _ = std::fs::remove_dir_all(other);
}

fn tempdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("framebus-test-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}
