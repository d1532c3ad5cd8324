//! The bus on Windows, end to end with real processes: a producer, a fast
//! and a slow verifying consumer, a consumer killed while it holds a frame
//! (`TerminateProcess`) and reclaimed, a producer killed and restarted
//! (the consumers re-attach once), and nothing left afterwards.
//!
//! Built for `x86_64-pc-windows-gnu` and run under wine in CI
//! (`.ci/windows.sh`); on other targets this file is empty.
#![cfg(windows)]

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

mod windows_common;
use windows_common::{consumer, inspect, spawn, wait_for, EXE};

/// The bus names `framebus list --json` shows.
fn listed() -> Vec<String> {
    let out = Command::new(EXE)
        .args(["list", "--json"])
        .env("RUST_LOG", "error")
        .output()
        .expect("run list");
    assert!(
        out.status.success(),
        "list failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("list --json");
    v["buses"]
        .as_array()
        .map(|b| {
            b.iter()
                .filter_map(|r| r["bus"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The marker `list` finds buses by (doc/WINDOWS.md).
fn marker(bus: &str) -> std::path::PathBuf {
    let local = std::env::var_os("LOCALAPPDATA").expect("LOCALAPPDATA");
    std::path::Path::new(&local)
        .join("framebus")
        .join("buses")
        .join(bus)
}

#[test]
fn a_windows_bus_survives_kills_and_a_restart() {
    let bus = format!("wintest-e2e-{}", std::process::id());
    let produce = [
        "produce",
        "--bus",
        &bus,
        "--size",
        "320x240",
        "--fps",
        "60",
        "--max-consumers",
        "4",
        "--json",
    ];
    let mut producer = spawn(&produce);
    producer.line("ready", Duration::from_secs(30));
    assert!(listed().contains(&bus), "`list` shows the running bus");
    let consume = |name: &str, max_fps: &str, algo: &str, secs: &str| {
        spawn(&[
            "consume",
            "--bus",
            &bus,
            "--algo",
            algo,
            "--max-fps",
            max_fps,
            "--name",
            name,
            "--duration",
            secs,
            "--json",
        ])
    };
    let mut fast = consume("fast", "0", "verify", "20");
    let mut slow = consume("slow", "5", "verify", "20");
    fast.line("attached", Duration::from_secs(30));
    slow.line("attached", Duration::from_secs(30));

    // A consumer that holds each frame for 300 ms, killed while it holds one.
    let mut holder = consume("holder", "0", "busy:300", "60");
    holder.line("attached", Duration::from_secs(30));
    let seen = wait_for(
        &bus,
        "the holder holding a frame",
        Duration::from_secs(30),
        |v| {
            consumer(v, "holder")
                .is_some_and(|c| c["pinned_slots"].as_array().is_some_and(|p| !p.is_empty()))
        },
    );
    let index = consumer(&seen, "holder").expect("holder")["index"].clone();
    holder.kill();
    wait_for(
        &bus,
        "the killed holder's entry reclaimed",
        Duration::from_secs(30),
        |v| {
            consumer(v, "holder").is_none()
                && v["consumers"].as_array().is_some_and(|cs| {
                    cs.iter()
                        .all(|c| c["index"] != index || c["name"] != "holder")
                })
                && v["slots"].as_array().is_some_and(|s| {
                    s.iter()
                        .map(|x| x["pins"].as_u64().unwrap_or(0))
                        .sum::<u64>()
                        <= 3
                })
        },
    );

    // The producer dies; a new one takes the bus; the consumers re-attach.
    let before = inspect(&bus).expect("inspect")["instance_id"].clone();
    producer.kill();
    let mut producer = spawn(&produce);
    producer.line("ready", Duration::from_secs(30));
    let after = wait_for(
        &bus,
        "both consumers on the new producer",
        Duration::from_secs(30),
        |v| {
            v["instance_id"] != before
                && ["fast", "slow"]
                    .iter()
                    .all(|n| consumer(v, n).is_some_and(|c| c["frames"].as_u64().unwrap_or(0) > 0))
        },
    );
    assert_ne!(after["instance_id"], before);

    let fast = fast.summary(Duration::from_secs(60));
    let slow = slow.summary(Duration::from_secs(60));
    for (name, s) in [("fast", &fast), ("slow", &slow)] {
        assert_eq!(s["bad_frames"], 0, "{name}: {s}");
        assert_eq!(s["reattached"], 1, "{name} re-attached once: {s}");
        assert!(s["frames"].as_u64().unwrap_or(0) > 0, "{name}: {s}");
    }
    assert!(
        fast["frames"].as_u64() > slow["frames"].as_u64(),
        "the unlimited consumer took more frames than the 5 fps one: {fast} {slow}"
    );
    // An upper bound on a limited rate (behaviour, not speed): the limiter
    // lets frames in on a schedule of one per 0.2 s (kept across the
    // re-attach), the first at once and each up to a quarter period early,
    // so the n frames taken within the consumer's run of `seconds` are at
    // most 5 x seconds + 1.25: a count against its own clock, no margin
    // needed for a loaded host.
    let (n, secs) = (
        slow["frames"].as_u64().unwrap_or(u64::MAX),
        slow["seconds"].as_f64().unwrap_or(0.0),
    );
    assert!(
        n as f64 <= 5.0 * secs + 1.25,
        "the 5 fps limit held ({n} frames in {secs} s): {slow}"
    );

    // Nothing left once every process has ended: the kernel removed every
    // object with its last handle; only the killed producer's marker stays,
    // which `list` skips and `clean` removes.
    producer.kill();
    drop(producer);
    assert!(inspect(&bus).is_none(), "no bus object is left");
    assert!(
        !listed().contains(&bus),
        "`list` skips a bus that does not open"
    );
    assert!(marker(&bus).exists(), "a killed producer leaves its marker");
    let out = Command::new(EXE)
        .args(["clean", "--bus", &bus])
        .output()
        .expect("run clean");
    assert!(
        out.status.success(),
        "clean: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!marker(&bus).exists(), "`clean` removes the marker");
}

#[test]
fn a_producer_that_ends_by_itself_leaves_nothing() {
    let bus = format!("wintest-end-{}", std::process::id());
    let mut producer = spawn(&[
        "produce",
        "--bus",
        &bus,
        "--size",
        "64x48",
        "--fps",
        "100",
        "--duration",
        "3",
        "--json",
    ]);
    producer.line("ready", Duration::from_secs(30));
    assert!(marker(&bus).exists());
    let mut reader = spawn(&["consume", "--bus", &bus, "--algo", "verify", "--json"]);
    reader.line("attached", Duration::from_secs(30));
    let p = producer.summary(Duration::from_secs(30));
    assert!(p["frames"].as_u64().unwrap_or(0) > 0, "{p}");
    // The consumer sees its trigger pipe break and waits for a new producer.
    wait_for_gone(&bus, Duration::from_secs(30));
    assert!(!marker(&bus).exists(), "a clean stop removes the marker");
    reader.kill();
}

/// Waits until `inspect` no longer finds a live producer on `bus`.
fn wait_for_gone(bus: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while inspect(bus).is_some_and(|v| v["producer"]["alive"] == true) {
        assert!(
            Instant::now() < deadline,
            "the producer of {bus} still seen after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn ctrl_break_stops_a_producer_cleanly() {
    use windows_sys::Win32::System::Console::{
        AllocConsole, GenerateConsoleCtrlEvent, CTRL_BREAK_EVENT,
    };
    // SAFETY: a plain call; it fails harmlessly if the process has a console.
    unsafe { AllocConsole() };
    let bus = format!("wintest-break-{}", std::process::id());
    let mut producer = spawn(&[
        "produce", "--bus", &bus, "--size", "64x48", "--fps", "100", "--json",
    ]);
    producer.line("ready", Duration::from_secs(30));
    // SAFETY: a plain call; the group id is the child's pid (it was started
    // with CREATE_NEW_PROCESS_GROUP).
    let sent = unsafe { GenerateConsoleCtrlEvent(CTRL_BREAK_EVENT, producer.child.id()) };
    if sent == 0 {
        println!(
            "SKIPPED ctrl_break_stops_a_producer_cleanly: GenerateConsoleCtrlEvent failed ({}); no console here",
            std::io::Error::last_os_error()
        );
        return;
    }
    let p = producer.summary(Duration::from_secs(30));
    assert!(p["frames"].as_u64().unwrap_or(0) > 0, "{p}");
    assert!(!marker(&bus).exists(), "a clean stop removes the marker");
}

#[test]
fn chaos_on_windows_loses_nothing() {
    let bus = format!("wintest-chaos-{}", std::process::id());
    // Chaos's event deadlines raised from their defaults (5 s to re-attach,
    // 2 s for the last reclaims) to the suite's hang guard: wine on a
    // loaded two-core machine. A check passes as soon as its event is seen.
    let mut chaos = spawn(&[
        "chaos",
        "--bus",
        &bus,
        "--duration",
        "10",
        "--kills",
        "12",
        "--producer-restarts",
        "2",
        "--consumers",
        "3",
        "--reattach-timeout",
        "30",
        "--reclaim-timeout",
        "30",
        "--json",
    ]);
    // Its stdout to the end (the report is its last line), bounded by a
    // hang guard beyond the run and both deadlines; chaos's stderr (which
    // names a missed deadline) goes to the test's.
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut text = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match chaos.lines.recv_timeout(left) {
            Ok(l) => text.push(l),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(e) => panic!("chaos did not finish within 300 s ({e}): {text:?}"),
        }
    }
    let status = loop {
        if let Some(status) = chaos.child.try_wait().expect("wait for chaos") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "chaos closed its stdout but did not exit"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let r: Value = text
        .iter()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON report: {text:?}"));
    assert!(status.success(), "chaos failed: {r}");
    assert_eq!(r["reattach_timeout_s"], 30.0, "{r}");
    assert_eq!(r["bad_frames"], 0, "{r}");
    assert_eq!(r["consumer_kills"], 12, "{r}");
    assert_eq!(r["producer_restarts"], 2, "{r}");
    assert_eq!(r["unreclaimed"], 0, "{r}");
    assert_eq!(r["reattach_failures"], 0, "{r}");
    assert_eq!(r["stops"], 0, "no SIGSTOP on Windows: {r}");
    assert!(r["frames_verified"].as_u64().unwrap_or(0) > 0, "{r}");
    assert_eq!(r["leftovers"], serde_json::json!([]), "{r}");
}

/// The zenoh bridge on Windows: a bgr8 camera bus → `bridge out` →
/// `bridge in` → a far bus a verifying consumer reads (0 bad), `inspect`
/// showing the running `bridge out` from its stats file and token, and
/// nothing left once the bridges stop. Built only with `--features bridge`.
#[cfg(feature = "bridge")]
#[test]
fn the_bridge_carries_a_colour_bus_on_windows() {
    let pid = std::process::id();
    let (cam, far, key) = (
        format!("wintest-cam-{pid}"),
        format!("wintest-far-{pid}"),
        format!("wintest-key-{pid}"),
    );
    // A port of this process's own (pid-derived) on loopback.
    let endpoint = format!("tcp/127.0.0.1:{}", 20000 + pid % 20000);
    let mut producer = spawn(&[
        "produce", "--bus", &cam, "--size", "160x120", "--fps", "30", "--format", "bgr8",
    ]);
    producer.line("ready", Duration::from_secs(30));
    let out = spawn(&[
        "bridge", "out", "--bus", &cam, "--key", &key, "--listen", &endpoint,
    ]);
    out.line("ready", Duration::from_secs(60));
    let bridge_in = spawn(&[
        "bridge",
        "in",
        "--bus",
        &far,
        "--key",
        &key,
        "--connect",
        &endpoint,
    ]);
    bridge_in.line("ready", Duration::from_secs(60));
    let created = bridge_in.line("bus bus=", Duration::from_secs(60));
    assert!(created.contains("format=bgr8"), "{created}");
    let mut verify = spawn(&[
        "consume", "--bus", &far, "--algo", "verify", "--frames", "30", "--json",
    ]);
    let s = verify.summary(Duration::from_secs(60));
    assert_eq!(s["frames"], 30, "{s}");
    assert_eq!(s["bad_frames"], 0, "{s}");
    // `inspect` shows the running bridge out (its stats file, rewritten
    // every 500 ms, and its liveness token).
    wait_for(
        &cam,
        "the running bridge out in inspect",
        Duration::from_secs(30),
        |v| {
            v["bridges"]
                .as_array()
                .is_some_and(|b| b.iter().any(|b| b["role"] == "out" && b["alive"] == true))
        },
    );
    drop(bridge_in);
    drop(out);
    producer.kill();
    drop(producer);
    assert!(
        inspect(&cam).is_none() && inspect(&far).is_none(),
        "no bus left"
    );
}
