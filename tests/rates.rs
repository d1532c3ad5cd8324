//! Rates in shared memory: each consumer's skipped frames (sequence gaps),
//! window fps and latency percentiles in its consumer entry, the producer's
//! publish rate in the header; read by other processes (`inspect`, `list`)
//! with no IPC. Skipped counts are checked exactly against a known schedule:
//! the producer is driven in this process, frame by frame.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::in_process::InProcess;
use common::{f, u, Bus, EXE};
use framebus_consumer::{Consumer, ConsumerConfig};
use framebus_producer::{FakeSource, FrameSource, Producer, ProducerConfig};
use serde_json::Value;

const T: Duration = Duration::from_secs(30);

/// Runs `framebus ARGS` (a separate process, inheriting this process's
/// `FRAMEBUS_RUNTIME_DIR`) and parses its JSON stdout.
fn cli_json(args: &[&str]) -> Value {
    let mut child = Command::new(EXE)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn framebus");
    let status = common::wait_timeout(&mut child, T).expect("framebus timed out");
    let mut out = String::new();
    let mut err = String::new();
    use std::io::Read;
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("stdout");
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("stderr");
    assert!(status.success(), "framebus {args:?} failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("framebus {args:?}: {e}: {out}"))
}

#[test]
fn skipped_frames_are_exact_and_rates_are_in_shared_memory() {
    let tb = InProcess::new("rates", "skip");
    let mut source = FakeSource::new(64, 48);
    let mut producer =
        Producer::create(ProducerConfig::new(tb.bus.clone()), 64, 48).expect("create producer");
    let mut consumer = Consumer::attach(ConsumerConfig {
        name: "sampler".into(),
        ..ConsumerConfig::new(tb.bus.clone())
    })
    .expect("attach");
    let mut publish = |n: u64| {
        for _ in 0..n {
            producer
                .publish(|seq, slot| source.fill(seq, slot))
                .expect("publish");
        }
    };
    // Schedule: publish k frames, take the newest; the consumer skips k - 1
    // of them, except for the first take (no earlier frame to count from).
    let mut expected_skipped = 0;
    for (i, k) in [3u64, 3, 1, 5, 2, 1, 10].into_iter().enumerate() {
        publish(k);
        let frame = consumer
            .next_frame(Some(T))
            .expect("next_frame")
            .expect("a frame within the timeout");
        if i > 0 {
            expected_skipped += k - 1;
        }
        drop(frame);
        assert_eq!(consumer.skipped(), expected_skipped, "after take {i}");
    }
    assert_eq!(expected_skipped, 16, "gaps 2, 0, 4, 1, 0 and 9");
    assert_eq!(consumer.frames(), 7);

    // Another process reads the same figures from the consumer's entry.
    let bus = tb.bus.to_string();
    let v = cli_json(&["inspect", "--bus", &bus, "--json"]);
    let entries = v["consumers"].as_array().expect("consumers");
    let me = entries
        .iter()
        .find(|c| c["name"] == "sampler")
        .unwrap_or_else(|| panic!("no entry named sampler: {v}"));
    assert_eq!(u(&me["skipped"]), expected_skipped, "{me}");
    assert_eq!(u(&me["frames"]), 7, "{me}");
    assert!(f(&me["fps"]) > 0.0, "a window rate was stored: {me}");
    assert!(f(&me["latency_p99_us"]) >= f(&me["latency_p50_us"]), "{me}");
    assert!(f(&me["window_age_ms"]) >= 0.0, "{me}");
    assert!(f(&v["producer"]["publish_fps"]) > 0.0, "{v}");
    assert!(
        v.get("clean").is_none(),
        "a live bus has no clean hint: {v}"
    );

    let l = cli_json(&["list", "--json", "--sample", "0"]);
    let row = l["buses"]
        .as_array()
        .expect("buses")
        .iter()
        .find(|b| b["bus"] == bus.as_str())
        .unwrap_or_else(|| panic!("{bus} not listed: {l}"))
        .clone();
    assert!(f(&row["publish_fps"]) > 0.0, "{row}");
    let entry = &row["consumer_entries"][0];
    assert_eq!(u(&entry["skipped"]), expected_skipped, "{row}");

    // A new claim starts its entry's figures afresh.
    drop(consumer);
    let mut again = Consumer::attach(ConsumerConfig {
        name: "again".into(),
        ..ConsumerConfig::new(tb.bus.clone())
    })
    .expect("attach again");
    publish(1);
    drop(again.next_frame(Some(T)).expect("next").expect("a frame"));
    let v = cli_json(&["inspect", "--bus", &bus, "--json"]);
    let again_entry = v["consumers"]
        .as_array()
        .expect("consumers")
        .iter()
        .find(|c| c["name"] == "again")
        .cloned()
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(u(&again_entry["skipped"]), 0, "{again_entry}");
}

/// `consume --json` reports `skipped`: a consumer limited to 10 fps on a
/// 200 fps bus takes the newest frame each time and skips the rest.
#[test]
fn consume_reports_skipped_frames() {
    let mut bus = Bus::new("rates-consume");
    bus.producer(&["--size", "64x48", "--fps", "200"]);
    let mut c = bus.consumer(&[
        "--algo",
        "verify",
        "--max-fps",
        "10",
        "--frames",
        "5",
        "--json",
    ]);
    let summary = c.last_json(T);
    assert_eq!(u(&summary["frames"]), 5, "{summary}");
    assert_eq!(u(&summary["bad_frames"]), 0, "{summary}");
    assert!(u(&summary["skipped"]) > 0, "{summary}");
    // A consumer that keeps up with a slow bus skips nothing.
    let mut every = bus.consumer(&["--algo", "verify", "--frames", "1", "--json"]);
    let s = every.last_json(T);
    assert_eq!(u(&s["skipped"]), 0, "{s}");
}
