//! `framebus top --once` and `top --json --count N` against a real bus
//! with real consumer processes: every figure comes from shared memory.

mod common;

use std::time::Duration;

use common::{f, u, Bus};
use serde_json::Value;

const T: Duration = Duration::from_secs(30);

/// The consumer named `name` in a `top --json` line's bus `bus`.
fn consumer<'a>(line: &'a Value, bus: &str, name: &str) -> Option<&'a Value> {
    line["buses"].as_array()?.iter().find(|b| b["bus"] == bus)?["consumers"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)
}

#[test]
fn top_once_and_json_show_every_consumer() {
    let mut bus = Bus::new("top");
    bus.producer(&["--size", "64x48", "--fps", "100"]);
    let slow = bus.consumer(&["--algo", "verify", "--max-fps", "10"]);
    let _fast = bus.consumer(&["--algo", "mean"]);
    // Wait (on the bus's own figures) until the slow consumer has skipped
    // frames and measured a rate.
    bus.wait_for("the slow consumer to skip frames", T, |v| {
        v["consumers"].as_array().is_some_and(|cs| {
            cs.iter().any(|c| {
                c["pid"].as_u64() == Some(u64::from(slow.pid))
                    && c["skipped"].as_u64().unwrap_or(0) > 0
                    && f(&c["fps"]) > 0.0
            })
        })
    });

    let (status, out, err) = bus.run(&["top", "--bus", &bus.name, "--once"]);
    assert!(status.success(), "top --once failed: {err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].contains("skipped") && lines[0].contains("p99 us"),
        "{out}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&bus.name) && l.contains("alive")),
        "{out}"
    );
    let slow_row = lines
        .iter()
        .find(|l| l.contains(&slow.pid.to_string()))
        .unwrap_or_else(|| panic!("no row for pid {}: {out}", slow.pid));
    assert!(
        slow_row.contains("verify") && slow_row.contains("connected"),
        "{slow_row}"
    );
    assert!(lines.iter().any(|l| l.contains("mean")), "{out}");
    assert!(out.contains("1 bus(es), 2 consumer(s)"), "{out}");

    let (status, out, err) = bus.run(&[
        "top",
        "--bus",
        &bus.name,
        "--json",
        "--count",
        "2",
        "--interval",
        "0.1",
    ]);
    assert!(status.success(), "top --json failed: {err}");
    let stream: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(stream.len(), 2, "--count 2: {out}");
    assert!(f(&stream[1]["time_s"]) > f(&stream[0]["time_s"]), "{out}");
    for line in &stream {
        let c = consumer(line, &bus.name, "verify").unwrap_or_else(|| panic!("{line}"));
        assert_eq!(u(&c["pid"]), u64::from(slow.pid), "{c}");
        assert_eq!(f(&c["max_fps"]), 10.0, "{c}");
        assert!(u(&c["skipped"]) > 0, "{c}");
        assert!(c["alive"].as_bool().unwrap_or(false), "{c}");
        let fast = consumer(line, &bus.name, "mean").unwrap_or_else(|| panic!("{line}"));
        assert_eq!(f(&fast["max_fps"]), 0.0, "no limit is 0 in JSON: {fast}");
        assert!(f(&line["buses"][0]["publish_fps"]) > 0.0, "{line}");
    }
}

#[test]
fn top_without_a_terminal_says_what_to_use() {
    let bus = Bus::new("top-noterm");
    let (status, _, err) = bus.run(&["top"]);
    assert!(!status.success());
    assert!(err.contains("--once") && err.contains("--json"), "{err}");
    let (status, _, err) = bus.run(&["top", "--bus", &bus.name, "--once"]);
    assert!(!status.success());
    assert!(err.contains("framebus list"), "{err}");
}
