//! A bus object truncated while mapped (to 0, to one page, to half) under
//! load never kills anyone: the producer names `BusTruncated` and creates
//! its bus again, a consumer gets `BusTruncated` once and then frames from
//! the new bus, `inspect` names it, and no process dies of a signal.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use common::{u, Bus};
use framebus_consumer::{Consumer, ConsumerConfig, ConsumerError};
use rustix::process::Signal;
use shm_layout::BusName;

const T: Duration = Duration::from_secs(30);

fn truncate(bus: &Bus, len: u64) {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(bus.shm_path())
        .expect("open the bus object");
    f.set_len(len).expect("truncate");
}

#[test]
fn truncation_under_load_is_survived_and_named() {
    let mut bus = Bus::new("trunc");
    let mut producer = bus.producer(&["--fps", "300", "--size", "320x240"]);
    // A consumer process beside the in-process one: it must survive too.
    let mut cli = bus.consumer(&["--algo", "mean"]);
    let name = BusName::new(&bus.name).expect("bus name");
    let mut consumer = Consumer::attach(ConsumerConfig::new(name)).expect("attach");
    let mut truncations = 0;
    for len in [None, Some(0), Some(4096)] {
        let before = bus.inspect();
        let total = u(&before["geometry"]["total_size"]);
        let len = len.unwrap_or(total / 2);
        // Take a few frames, then shrink the object under everyone.
        for _ in 0..3 {
            consumer
                .next_frame(Some(T))
                .expect("a frame")
                .expect("in time");
        }
        truncate(&bus, len);
        truncations += 1;
        let deadline = Instant::now() + T;
        let named = loop {
            match consumer.next_frame(Some(Duration::from_millis(100))) {
                Err(ConsumerError::BusTruncated { .. }) => break true,
                Ok(_) => {}
                Err(e) => panic!("truncated to {len}: unexpected error {e}"),
            }
            assert!(
                Instant::now() < deadline,
                "no BusTruncated after truncating to {len}"
            );
        };
        assert!(named);
        // The producer created the bus again: a new instance serves frames.
        let frame = consumer
            .next_frame(Some(T))
            .expect("a frame")
            .expect("in time");
        assert_ne!(
            frame.instance_id(),
            u64::from_str_radix(before["instance_id"].as_str().expect("id"), 16).expect("hex"),
            "frames come from the re-created bus"
        );
        drop(frame);
        let v = bus.inspect();
        assert_eq!(v["producer"]["alive"], true, "{v:#}");
        assert_eq!(u(&v["geometry"]["total_size"]), total);
        // The consumer process is back on the new bus too.
        let instance = v["instance_id"].clone();
        bus.wait_for("the consumer process on the re-created bus", T, |v| {
            v["instance_id"] == instance
                && v["consumers"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| c["name"] == "mean" && u(&c["frames"]) > 0))
        });
    }
    drop(consumer);
    cli.signal(Signal::TERM);
    let status = bus.wait(&cli, T);
    assert_eq!(
        status.signal(),
        None,
        "the consumer process died of a signal"
    );
    assert!(
        status.success(),
        "the consumer process failed: {}",
        cli.stderr()
    );
    let err = cli.stderr();
    assert_eq!(
        err.matches("BusTruncated: the bus object was truncated")
            .count(),
        truncations,
        "the consumer process names every truncation: {err}"
    );
    producer.signal(Signal::TERM);
    let status = bus.wait(&producer, T);
    assert_eq!(status.signal(), None, "the producer died of a signal");
    assert!(
        status.success(),
        "the producer failed: {}",
        producer.stderr()
    );
    let err = producer.stderr();
    assert_eq!(
        err.matches("BusTruncated").count(),
        truncations,
        "the producer names every truncation: {err}"
    );
}
