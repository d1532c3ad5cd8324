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
