//! Smoke tests of `framebus bench`: tiny frames, about a second, and
//! well-formed JSON with every field, for both transports and the
//! isolation scenario. No timing assertions: the machines are shared.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{f, u, Bus};
use serde_json::Value;

fn bench(bus: &Bus, extra: &[&str]) -> Value {
    let mut args = vec![
        "bench",
        "--size",
        "64x48",
        "--duration",
        "1",
        "--warmup",
        "0.2",
        "--json",
    ];
    args.extend_from_slice(extra);
    let (status, out, err) = bus.run(&args);
    assert!(status.success(), "bench {extra:?} failed: {err}");
    let last = out.lines().last().unwrap_or_default();
    serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("bench {extra:?} printed no JSON ({e}): {out}"))
}

fn check_run(r: &Value, transport: &str, consumers: u64) {
    assert_eq!(r["transport"], transport, "{r}");
    for key in [
        "memcpy_fps",
        "producer_fps",
        "producer_vs_memcpy",
        "consumer_fps_mean",
        "delivered_fps",
        "cpu_us_per_delivered_frame",
        "seconds",
    ] {
        assert!(f(&r[key]) >= 0.0, "{key}: {r}");
    }
    assert!(
        f(&r["memcpy_fps"]) > 0.0 && f(&r["producer_fps"]) > 0.0,
        "{r}"
    );
    assert_eq!(u(&r["bad_frames"]), 0, "{r}");
    let procs = r["processes"].as_array().expect("processes");
    assert_eq!(procs.len() as u64, consumers + 1, "{r}");
    assert_eq!(procs[0]["role"], "producer");
    assert!(f(&procs[0]["publish_us"]) > 0.0, "{r}");
    for p in procs {
        assert!(
            u(&p["pid"]) > 0 && f(&p["cpu_pct"]) >= 0.0 && f(&p["peak_rss_mib"]) > 0.0,
            "{p}"
        );
    }
    for c in &procs[1..] {
        assert!(u(&c["frames"]) > 0, "{c}");
        for key in ["p50", "p90", "p99", "p999", "max"] {
            assert!(f(&c["latency_us"][key]) > 0.0, "latency {key}: {c}");
        }
        assert!(c["coalesced"].is_u64(), "{c}");
    }
}

#[test]
fn shm_transport() {
    let bus = Bus::new("bench-shm");
    // Rate limits cycle over the consumers; 0 = no limit, reported as 0.
    let v = bench(&bus, &["--consumers", "2", "--max-fps", "10,0"]);
    assert_eq!(v["scenario"], "throughput");
    let run = &v["runs"][0];
    check_run(run, "shm", 2);
    let procs = &run["processes"];
    assert!(
        procs[0].get("max_fps").is_none(),
        "the producer has no limit field: {run}"
    );
    assert_eq!(f(&procs[1]["max_fps"]), 10.0, "{run}");
    assert_eq!(f(&procs[2]["max_fps"]), 0.0, "{run}");
}

#[test]
fn pipe_transport() {
    let bus = Bus::new("bench-pipe");
    let v = bench(
        &bus,
        &[
            "--consumers",
            "2",
            "--transport",
            "pipe",
            "--algo",
            "verify",
        ],
    );
    check_run(&v["runs"][0], "pipe", 2);
}

#[test]
fn isolation_scenario() {
    let bus = Bus::new("bench-iso");
    let v = bench(&bus, &["--scenario", "isolation", "--fps", "500"]);
    let phases = v["isolation"]["phases"].as_array().expect("phases");
    assert_eq!(phases.len(), 4, "{v}");
    for p in phases {
        assert!(
            f(&p["consumer_fps"]) > 0.0
                && f(&p["ratio_to_alone"]) > 0.0
                && f(&p["producer_fps"]) > 0.0,
            "{p}"
        );
    }
    assert_eq!(u(&v["isolation"]["bad_frames"]), 0, "{v}");
}

#[test]
fn producer_on_a_cpu_of_its_own() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 {
        common::skip(
            "producer_on_a_cpu_of_its_own",
            "one CPU: --producer-cpu needs two",
        );
        return;
    }
    let bus = Bus::new("bench-cpu");
    let v = bench(&bus, &["--consumers", "2", "--producer-cpu", "0"]);
    let run = &v["runs"][0];
    check_run(run, "shm", 2);
    assert_eq!(u(&run["producer_cpu"]), 0, "{run}");

    let (status, _, err) = bus.run(&["bench", "--scenario", "compare", "--producer-cpu", "0"]);
    assert!(
        !status.success() && err.contains("throughput scenario over shm only"),
        "{err}"
    );
}

/// `--stop-on-stdin-eof`, how `bench` stops its producer and consumers
/// where there is no SIGTERM (Windows): a process whose stdin is closed
/// stops as on SIGTERM, with its JSON summary and success.
#[test]
fn stop_on_stdin_eof() {
    let mut bus = Bus::new("bench-eof");
    let name = bus.name.clone();
    let mut cmd = bus.command(&[
        "produce",
        "--bus",
        &name,
        "--fps",
        "100",
        "--json",
        "--stop-on-stdin-eof",
    ]);
    cmd.stdin(Stdio::null());
    let mut producer = bus.spawn_command(cmd);
    let summary = producer.last_json(Duration::from_secs(20));
    assert_eq!(summary["bus"], name.as_str(), "{summary}");
    assert!(bus.wait(&producer, Duration::from_secs(10)).success());

    let _running = bus.producer(&["--fps", "100"]);
    let mut cmd = bus.command(&["consume", "--bus", &name, "--json", "--stop-on-stdin-eof"]);
    cmd.stdin(Stdio::null());
    let mut consumer = bus.spawn_command(cmd);
    let summary = consumer.last_json(Duration::from_secs(20));
    assert_eq!(u(&summary["bad_frames"]), 0, "{summary}");
    assert!(bus.wait(&consumer, Duration::from_secs(10)).success());
}
