//! `framebus bridge` end to end over loopback: real producer, bridge and
//! consumer processes, each side with its own runtime directory as if on
//! its own host, joined by zenoh over TCP on 127.0.0.1.
#![cfg(feature = "bridge")]

mod common;

use std::time::Duration;

use common::{u, Bus, Proc};
use rustix::process::Signal;
use serde_json::Value;

const T: Duration = Duration::from_secs(30);

/// A port nobody listens on now (the kernel's pick; a tiny race with other
/// processes picking ports, acceptable on a test host).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Removes the buses' producer lock objects, which a SIGKILLed producer
/// leaves in /dev/shm (the `Bus` guards remove the shm objects and the
/// runtime directories).
struct LockGuard(Vec<String>);

impl Drop for LockGuard {
    fn drop(&mut self) {
        for bus in &self.0 {
            let _ = std::fs::remove_file(format!("/dev/shm/.framebus-lock.{bus}"));
        }
    }
}

fn consumer_frames(v: &Value, pid: u32) -> u64 {
    v["consumers"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["pid"] == pid))
        .map_or(0, |c| u(&c["frames"]))
}

fn bridge_stats<'a>(v: &'a Value, role: &str) -> Option<&'a Value> {
    v["bridges"]
        .as_array()?
        .iter()
        .find(|b| b["role"] == role && b["alive"] == true)
}

/// Starts `bridge in` on the far side and waits until it has created its
/// bus (the first frame arrived).
fn start_bridge_in(far: &mut Bus, key: &str, args: &[&str]) -> Proc {
    let name = far.name.clone();
    let mut all = vec!["bridge", "in", "--key", key, "--bus", &name];
    all.extend_from_slice(args);
    let mut p = far.spawn(&all);
    p.expect_line(&format!("ready bus={name} key={key}"), T);
    p.expect_line(&format!("bus bus={name} "), T);
    p
}

/// Camera bus -> bridge out -> bridge in -> far bus: a verify consumer on
/// the far bus gets whole frames with the camera's sequence numbers
/// (verify checks each frame against the pattern of its seq), always
/// increasing; after `bridge in` is SIGKILLed and restarted, the stream
/// resumes and the consumer re-attaches by itself; after `bridge out` is
/// SIGKILLed and restarted, the stream resumes on the same far bus.
#[test]
fn frames_cross_the_bridge_and_resume_after_bridge_in_restarts() {
    let mut cam = Bus::new("br-cam");
    let mut far = Bus::new("br-far");
    let _locks = LockGuard(vec![cam.name.clone(), far.name.clone()]);
    let endpoint = format!("tcp/127.0.0.1:{}", free_port());
    let key = format!("framebus-test/{}", cam.name);
    cam.producer(&["--size", "320x240", "--fps", "50"]);
    let cam_name = cam.name.clone();
    let out_args = [
        "bridge", "out", "--bus", &cam_name, "--key", &key, "--listen", &endpoint,
    ];
    let mut out = cam.spawn(&out_args);
    out.expect_line(&format!("ready bus={cam_name} key={key}"), T);
    let bridge_in = start_bridge_in(&mut far, &key, &["--connect", &endpoint]);
    // --frames: the consumer needs frames from after the restart to finish.
    let mut verify = far.consumer(&["--algo", "verify", "--frames", "300", "--json"]);
    let far_name = far.name.clone();
    let mut seqs = far.spawn(&[
        "bridge",
        "latency",
        "--bus",
        &far_name,
        "--duration",
        "120",
        "--json",
    ]);
    seqs.expect_line("attached bus=", T);
    let before = far.wait_for("frames on the far bus", T, |v| {
        consumer_frames(v, verify.pid) >= 30
    });
    // inspect shows both ends' counters.
    let stats_in = bridge_stats(&before, "in").expect("bridge in stats in inspect");
    assert!(u(&stats_in["frames_published"]) > 0, "{stats_in}");
    assert_eq!(u(&stats_in["dropped_invalid"]), 0, "{stats_in}");
    let cam_view = cam.inspect();
    let stats_out = bridge_stats(&cam_view, "out").expect("bridge out stats in inspect");
    assert!(u(&stats_out["frames_sent"]) > 0, "{stats_out}");
    assert_eq!(u(&stats_out["peers"]), 1, "{stats_out}");
    // The far bus carries the camera's numbers.
    let far_seq = u(&before["latest"]["seq"]);
    let cam_seq = u(&cam_view["latest"]["seq"]);
    assert!(
        far_seq > 0 && far_seq <= cam_seq,
        "far {far_seq}, camera {cam_seq}"
    );

    bridge_in.signal(Signal::KILL);
    far.wait(&bridge_in, T);
    let restarted = start_bridge_in(&mut far, &key, &["--connect", &endpoint]);
    let mid = far.wait_for("frames after bridge in restarted", T, |v| {
        consumer_frames(v, verify.pid) >= 20
    });
    let frames_mid = consumer_frames(&mid, verify.pid);

    out.signal(Signal::KILL);
    cam.wait(&out, T);
    let mut out = cam.spawn(&out_args);
    out.expect_line(&format!("ready bus={cam_name} key={key}"), T);
    let after = far.wait_for("frames after bridge out restarted", T, |v| {
        consumer_frames(v, verify.pid) >= frames_mid + 20
    });
    assert_eq!(
        after["instance_id"], mid["instance_id"],
        "a restarted bridge out must not re-create the far bus"
    );

    let summary = verify.last_json(T);
    assert_eq!(u(&summary["bad_frames"]), 0, "{summary}");
    assert_eq!(u(&summary["frames"]), 300, "{summary}");
    assert!(u(&summary["reattached"]) >= 1, "{summary}");
    seqs.signal(Signal::TERM);
    let report = seqs.last_json(T);
    assert_eq!(u(&report["out_of_order"]), 0, "{report}");
    assert!(
        u(&report["last_seq"]) > u(&report["first_seq"]) + 100,
        "{report}"
    );
    assert!(u(&report["reattached"]) >= 1, "{report}");

    // A clean stop removes the far bus and the stats file.
    restarted.signal(Signal::TERM);
    assert!(far.wait(&restarted, T).success());
    assert!(!far.shm_path().exists(), "the far bus was left behind");
    out.signal(Signal::TERM);
    assert!(cam.wait(&out, T).success());
    let left: Vec<_> = std::fs::read_dir(far.root.join("framebus").join(".bridge"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "stats files left: {left:?}");
}

/// The other way round, and the endpoint unreachable at first: `bridge
/// out` connects to a port nobody listens on, says so in its log and keeps
/// retrying; once `bridge in` listens there, frames flow (lz4, rate-capped).
#[test]
fn out_retries_an_unreachable_endpoint_until_in_listens() {
    let mut cam = Bus::new("br-retry-cam");
    let mut far = Bus::new("br-retry-far");
    let _locks = LockGuard(vec![cam.name.clone(), far.name.clone()]);
    let endpoint = format!("tcp/127.0.0.1:{}", free_port());
    let key = format!("framebus-test/{}", cam.name);
    cam.producer(&["--size", "160x120", "--fps", "100"]);
    let cam_name = cam.name.clone();
    let mut out = cam.spawn(&[
        "bridge",
        "out",
        "--bus",
        &cam_name,
        "--key",
        &key,
        "--connect",
        &endpoint,
        "--compress",
        "lz4",
        "--max-fps",
        "20",
        "--duration",
        "60",
        "--json",
    ]);
    out.expect_line("ready bus=", T);
    // It runs without a peer, and logs the endpoint as unreachable after
    // 2 s of that: wait until its stats file (rewritten every 0.5 s, after
    // the check that logs) shows 2.2 s without a peer.
    cam.wait_for("bridge out to run 2.2 s unconnected", T, |v| {
        bridge_stats(v, "out").is_some_and(|s| {
            assert_eq!(u(&s["peers"]), 0, "connected to nothing? {s}");
            u(&s["updated_unix_ms"]).saturating_sub(u(&s["started_unix_ms"])) >= 2200
        })
    });
    let _bridge_in = start_bridge_in(&mut far, &key, &["--listen", &endpoint]);
    let mut verify = far.consumer(&["--algo", "verify", "--frames", "20", "--json"]);
    let summary = verify.last_json(T);
    assert_eq!(u(&summary["bad_frames"]), 0, "{summary}");
    out.signal(Signal::TERM);
    let stats = out.last_json(T);
    assert!(u(&stats["frames_sent"]) >= 20, "{stats}");
    assert_eq!(stats["compression"], "lz4", "{stats}");
    // --max-fps 20 from a 100 fps camera: most frames skipped, none sent
    // faster than the cap (loose bound for a noisy host).
    assert!(
        u(&stats["frames_skipped"]) > u(&stats["frames_sent"]),
        "{stats}"
    );
    let log = out.stderr();
    assert!(
        log.contains("no connection after") && log.contains(&endpoint),
        "no unreachable-endpoint warning in the log: {log}"
    );
}

/// Clear errors: a bus that is already produced here, a bad endpoint, a
/// wildcard key, no endpoint at all.
#[test]
fn bridge_errors_are_clear() {
    let mut bus = Bus::new("br-err");
    let _locks = LockGuard(vec![bus.name.clone()]);
    let producer = bus.producer(&["--size", "64x48", "--fps", "10"]);
    let name = bus.name.clone();
    let port = format!("tcp/127.0.0.1:{}", free_port());
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec![
                "bridge", "in", "--key", "k/x", "--bus", &name, "--listen", &port,
            ],
            format!("already produced on this host by process {}", producer.pid),
        ),
        (
            vec![
                "bridge",
                "out",
                "--bus",
                &name,
                "--connect",
                "udp/127.0.0.1:7447",
            ],
            "TCP only".into(),
        ),
        (
            vec![
                "bridge",
                "out",
                "--bus",
                &name,
                "--connect",
                "127.0.0.1:7447",
            ],
            "tcp/HOST:PORT".into(),
        ),
        (
            vec![
                "bridge",
                "out",
                "--bus",
                &name,
                "--key",
                "framebus/*",
                "--listen",
                &port,
            ],
            "no wildcards".into(),
        ),
        (
            vec!["bridge", "in", "--key", "k/x", "--bus", "other-bus"],
            "no endpoint".into(),
        ),
    ];
    for (args, want) in cases {
        let (status, _, err) = bus.run(&args);
        assert!(!status.success(), "{args:?} succeeded");
        assert_eq!(status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(&want), "{args:?}: expected {want:?} in {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}
