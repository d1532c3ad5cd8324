//! A short `framebus chaos` run (the long one is a command: see README):
//! consumers killed (some while pinned), stopped and restarted, the
//! producer killed and restarted; no bad frame, no leftovers.

mod common;

use std::time::Duration;

use common::{f, u, Bus};

/// Chaos's event deadlines, raised from their defaults (5 s to re-attach,
/// 2 s for the last reclaims) to the suite's usual hang guard: the chaos
/// runs of this file share two cores with each other and the rest of the
/// suite. A check passes as soon as its event is seen, so a clean run takes
/// no longer for them.
const DEADLINES: [&str; 4] = ["--reattach-timeout", "30", "--reclaim-timeout", "30"];

/// Runs `framebus ARGS` (a chaos run) to its end, bounded by a hang guard
/// beyond its duration and both deadlines; returns (success, stdout lines,
/// the report: the last line, stderr).
fn run_chaos(bus: &mut Bus, args: &[&str]) -> (bool, Vec<String>, serde_json::Value, String) {
    let mut p = bus.spawn(args);
    let r = p.last_json(Duration::from_secs(240));
    let status = bus.wait(&p, Duration::from_secs(30));
    (status.success(), p.seen.clone(), r, p.stderr())
}

#[test]
fn short_chaos_run_is_clean() {
    let mut bus = Bus::new("chaos");
    let name = bus.name.clone();
    let mut args = vec![
        "chaos",
        "--bus",
        &name,
        "--size",
        "64x48",
        "--consumers",
        "3",
        "--kills",
        "12",
        "--producer-restarts",
        "2",
        "--duration",
        "4",
        "--json",
    ];
    args.extend_from_slice(&DEADLINES);
    let (ok, out, r, err) = run_chaos(&mut bus, &args);
    // With --json, the JSON is all of stdout: no child's line before it.
    assert_eq!(out.len(), 1, "stdout beyond the JSON: {out:?}");
    assert!(ok, "chaos failed: {r:#} {err}");
    assert_eq!(f(&r["reattach_timeout_s"]), 30.0, "{r}");
    assert_eq!(f(&r["reclaim_timeout_s"]), 30.0, "{r}");
    assert!(r["worst_reattach_ms"].is_number(), "{r}");
    assert_eq!(u(&r["bad_frames"]), 0, "{r}");
    assert_eq!(u(&r["consumer_kills"]), 12, "{r}");
    assert_eq!(u(&r["producer_restarts"]), 2, "{r}");
    assert_eq!(u(&r["reattach_failures"]), 0, "{r}");
    assert_eq!(u(&r["unreclaimed"]), 0, "{r}");
    assert!(r["leftovers"].as_array().is_some_and(Vec::is_empty), "{r}");
    assert!(
        u(&r["frames_verified"]) > 0 && f(&r["worst_reclaim_ms"]) >= 0.0,
        "{r}"
    );
}

/// Runs `chaos --json` with `extra` on a fresh bus; returns (success, report).
fn chaos(test: &str, extra: &[&str]) -> (bool, serde_json::Value, String) {
    // Simulated containers have their own /tmp: the trigger root must be
    // under /dev/shm.
    let mut bus = if extra.contains(&"--namespaces") {
        Bus::new_in_dev_shm(test)
    } else {
        Bus::new(test)
    };
    let name = bus.name.clone();
    let mut args = vec!["chaos", "--bus", &name, "--size", "64x48", "--json"];
    args.extend_from_slice(&DEADLINES);
    args.extend_from_slice(extra);
    let (ok, _, r, err) = run_chaos(&mut bus, &args);
    (ok, r, err)
}

/// The counts every clean run shows.
fn assert_clean(r: &serde_json::Value, kills: u64, restarts: u64) {
    assert_eq!(u(&r["bad_frames"]), 0, "{r}");
    assert_eq!(u(&r["consumer_kills"]), kills, "{r}");
    assert_eq!(u(&r["producer_restarts"]), restarts, "{r}");
    assert_eq!(u(&r["reattach_failures"]), 0, "{r}");
    assert!(
        r["reattach_failed"].as_array().is_some_and(Vec::is_empty),
        "{r}"
    );
    // Every kill seen on the bus was reclaimed.
    assert_eq!(u(&r["unreclaimed"]), 0, "{r}");
    assert!(
        r["unreclaimed_entries"]
            .as_array()
            .is_some_and(Vec::is_empty),
        "{r}"
    );
    assert!(r["leftovers"].as_array().is_some_and(Vec::is_empty), "{r}");
    assert!(u(&r["frames_verified"]) > 0, "{r}");
}

#[test]
fn chaos_with_forks_is_clean() {
    let (ok, r, err) = chaos(
        "chaos-forks",
        &[
            "--consumers",
            "3",
            "--kills",
            "8",
            "--producer-restarts",
            "1",
            "--forks",
            "6",
            "--duration",
            "8",
        ],
    );
    assert!(ok, "chaos --forks failed: {r:#} {err}");
    assert_clean(&r, 8, 1);
    assert_eq!(r["namespaces"], false, "{r}");
    // A fork asked of a consumer killed before its next frame is lost; the
    // others all ran, and none failed.
    assert_eq!(u(&r["forks_requested"]), 6, "{r}");
    assert!(u(&r["forks"]) > 0, "{r}");
    assert_eq!(u(&r["fork_failures"]), 0, "{r}");
}

#[test]
fn chaos_in_namespaces_is_clean() {
    if let Some(why) = common::containers_unavailable() {
        common::skip("chaos_in_namespaces_is_clean", &why);
        return;
    }
    let (ok, r, err) = chaos(
        "chaos-ns",
        &[
            "--consumers",
            "3",
            "--kills",
            "10",
            "--producer-restarts",
            "2",
            "--forks",
            "4",
            "--duration",
            "8",
            "--namespaces",
        ],
    );
    assert!(ok, "chaos --namespaces failed: {r:#} {err}");
    assert_clean(&r, 10, 2);
    assert_eq!(r["namespaces"], true, "{r}");
    assert!(u(&r["reclaims_timed"]) > 0, "{r}");
    assert!(u(&r["forks"]) > 0, "{r}");
    assert_eq!(u(&r["fork_failures"]), 0, "{r}");
}

#[test]
fn chaos_namespaces_without_root_says_why() {
    if rustix::process::geteuid().is_root() {
        common::skip(
            "chaos_namespaces_without_root_says_why",
            "running as root (the refusal needs a non-root user)",
        );
        return;
    }
    let bus = Bus::new("chaos-noroot");
    let name = bus.name.clone();
    let (status, _, err) = bus.run(&["chaos", "--bus", &name, "--namespaces"]);
    assert!(!status.success());
    assert!(
        err.contains("--namespaces") && err.contains("root"),
        "{err}"
    );
}
