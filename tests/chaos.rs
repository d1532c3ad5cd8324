//! A short `framebus chaos` run (the long one is a command: see README):
//! consumers killed (some while pinned), stopped and restarted, the
//! producer killed and restarted; no bad frame, no leftovers.

mod common;

use common::{f, u, Bus};

#[test]
fn short_chaos_run_is_clean() {
    let bus = Bus::new("chaos");
    let name = bus.name.clone();
    let (status, out, err) = bus.run(&[
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
    ]);
    // With --json, the JSON is all of stdout: no child's line before it.
    assert_eq!(out.lines().count(), 1, "stdout beyond the JSON: {out}");
    let r: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("no JSON ({e}): {out} {err}"));
    assert!(status.success(), "chaos failed: {r:#} {err}");
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
    let bus = if extra.contains(&"--namespaces") {
        Bus::new_in_dev_shm(test)
    } else {
        Bus::new(test)
    };
    let name = bus.name.clone();
    let mut args = vec!["chaos", "--bus", &name, "--size", "64x48", "--json"];
    args.extend_from_slice(extra);
    let (status, out, err) = bus.run(&args);
    let last = out.lines().last().unwrap_or_default();
    let r: serde_json::Value =
        serde_json::from_str(last).unwrap_or_else(|e| panic!("no JSON ({e}): {out} {err}"));
    (status.success(), r, err)
}

/// The counts every clean run shows.
fn assert_clean(r: &serde_json::Value, kills: u64, restarts: u64) {
    assert_eq!(u(&r["bad_frames"]), 0, "{r}");
    assert_eq!(u(&r["consumer_kills"]), kills, "{r}");
    assert_eq!(u(&r["producer_restarts"]), restarts, "{r}");
    assert_eq!(u(&r["reattach_failures"]), 0, "{r}");
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
