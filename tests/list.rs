//! `framebus list`: real producers (alive, SIGSTOPped, SIGKILLed) and a
//! consumer, listed with their state, geometry, measured rate and
//! consumers; a stale bus names the command that cleans it. Other tests'
//! buses may be listed too: only this test's are looked at.

mod common;

use std::time::{Duration, Instant};

use common::{f, u, Bus};
use rustix::process::Signal;
use serde_json::Value;

const T: Duration = Duration::from_secs(30);

/// `framebus list --json` (run from `bus`'s environment) and the row of
/// the bus named `name`, if listed.
fn listed(bus: &Bus, extra: &[&str], name: &str) -> (Value, Option<Value>) {
    let mut args = vec!["list", "--json"];
    args.extend_from_slice(extra);
    let (status, out, err) = bus.run(&args);
    assert!(status.success(), "list failed: {err}");
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"));
    let row = v["buses"]
        .as_array()
        .expect("buses")
        .iter()
        .find(|b| b["bus"] == name)
        .cloned();
    (v, row)
}

/// Polls `list` until the row of `name` satisfies `cond`.
fn wait_row(
    bus: &Bus,
    extra: &[&str],
    name: &str,
    what: &str,
    cond: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + T;
    loop {
        let (v, row) = listed(bus, extra, name);
        if let Some(r) = row.filter(|r| cond(r)) {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; last list: {v:#}"
        );
    }
}

#[test]
fn lists_live_stopped_and_stale_buses() {
    let mut a = Bus::new("list-a");
    let pa = a.producer(&["--size", "160x120", "--fps", "100", "--max-consumers", "3"]);
    a.consumer(&["--name", "watcher"]);
    let mut b = Bus::new("list-b");
    let pb = b.producer(&["--size", "64x48", "--fps", "50"]);

    // Alive, with its geometry, a measured rate and its consumer.
    let ra = wait_row(
        &a,
        &["--sample", "0.3"],
        &a.name,
        "bus a with its consumer",
        |r| u(&r["consumers"]) == 1,
    );
    assert_eq!(ra["state"], "alive", "{ra}");
    assert_eq!(u(&ra["producer_pid"]), u64::from(pa.pid), "{ra}");
    assert_eq!((u(&ra["width"]), u(&ra["height"])), (160, 120), "{ra}");
    assert_eq!(u(&ra["max_consumers"]), 3, "{ra}");
    assert_eq!(ra["fps_source"], "measured", "{ra}");
    assert!(f(&ra["fps"]) > 0.0, "{ra}");
    assert_eq!(ra["consumer_entries"][0]["name"], "watcher", "{ra}");
    assert!(ra.get("clean").is_none(), "{ra}");

    // Without sampling: the nominal rate, and it says so.
    let (v, rb) = listed(&b, &["--sample", "0"], &b.name);
    let rb = rb.unwrap_or_else(|| panic!("bus b not listed: {v:#}"));
    assert_eq!(rb["fps_source"], "nominal", "{rb}");
    assert_eq!(f(&rb["fps"]), 50.0, "{rb}");
    assert_eq!(f(&v["sample_s"]), 0.0, "{v}");

    // SIGSTOPped: its process exists, its heartbeat ages.
    pb.signal(Signal::STOP);
    let rb = wait_row(&b, &["--sample", "0"], &b.name, "bus b stopped", |r| {
        r["state"] == "stopped"
    });
    assert!(rb.get("clean").is_none(), "{rb}");
    pb.signal(Signal::CONT);
    wait_row(&b, &["--sample", "0"], &b.name, "bus b alive again", |r| {
        r["state"] == "alive"
    });

    // SIGKILLed: stale, with the exact command to run, in JSON and table.
    pb.signal(Signal::KILL);
    b.wait(&pb, T);
    let rb = wait_row(&b, &["--sample", "0"], &b.name, "bus b stale", |r| {
        r["state"] == "stale"
    });
    let clean = format!("framebus clean --bus {}", b.name);
    assert_eq!(rb["clean"], clean.as_str(), "{rb}");
    let (status, out, err) = b.run(&["list", "--sample", "0"]);
    assert!(status.success(), "{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("{} ", b.name)))
        .unwrap_or_else(|| panic!("no row for {}: {out}", b.name));
    assert!(line.contains("stale") && line.contains(&clean), "{line}");
    assert!(
        out.lines().last().is_some_and(|l| l.contains("stale")),
        "summary line: {out}"
    );

    // inspect of the crashed bus names the same command (table and JSON).
    let (status, out, err) = b.run(&["inspect", "--bus", &b.name]);
    assert!(status.success(), "{err}");
    assert!(out.contains(&format!("remove it with: {clean}")), "{out}");
    assert_eq!(b.inspect()["clean"], clean.as_str());

    // The command named cleans it, and then it is no longer listed.
    let (status, _, err) = b.run(&["clean", "--bus", &b.name]);
    assert!(status.success(), "{err}");
    let (v, rb) = listed(&b, &["--sample", "0"], &b.name);
    assert!(rb.is_none(), "cleaned bus still listed: {v:#}");
}

#[test]
fn list_never_registers() {
    let mut bus = Bus::new("list-ro");
    bus.producer(&["--size", "64x48", "--max-consumers", "1"]);
    let name = bus.name.clone();
    listed(&bus, &["--sample", "0.1"], &name);
    let v = bus.inspect();
    assert!(
        v["consumers"].as_array().is_some_and(Vec::is_empty),
        "{v:#}"
    );
}
