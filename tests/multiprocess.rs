//! The core guarantees, with real producer and consumer processes.

mod common;

use std::time::Duration;

use common::{u, Bus};
use rustix::process::Signal;
use serde_json::Value;

const T: Duration = Duration::from_secs(30);

fn consumer_entry(v: &Value, pid: u32) -> Option<&Value> {
    v["consumers"].as_array()?.iter().find(|c| c["pid"] == pid)
}

fn frames_of(v: &Value, pid: u32) -> u64 {
    consumer_entry(v, pid).map_or(0, |c| u(&c["frames"]))
}

/// Test 1: three consumers at different --max-fps each follow their own
/// limit (never more frames than it allows over their run; a lower limit,
/// fewer frames), and `verify` finds no bad frame. Rates themselves are
/// measured in `bench`, not asserted here.
#[test]
fn consumers_run_at_their_own_rates() {
    let mut bus = Bus::new("rates");
    bus.producer(&["--size", "320x240", "--fps", "100", "--max-consumers", "4"]);
    let mut procs: Vec<_> = [50.0, 20.0, 5.0]
        .into_iter()
        .map(|rate| {
            let r = rate.to_string();
            (
                rate,
                bus.consumer(&[
                    "--algo",
                    "verify",
                    "--max-fps",
                    &r,
                    "--duration",
                    "3",
                    "--json",
                ]),
            )
        })
        .collect();
    let mut counts = Vec::new();
    for (rate, p) in &mut procs {
        let s = p.last_json(T);
        assert_eq!(u(&s["bad_frames"]), 0, "{s}");
        // A count, not a rate: the limiter lets frames in on a schedule of
        // one per period, the first at once and each up to a quarter period
        // early, so the frames taken within the consumer's own run of
        // `seconds` are at most rate x seconds + 1.25 (a slow machine only
        // lowers the count; the run may end a little after 3 s, which its
        // own clock includes).
        let frames = u(&s["frames"]);
        let seconds = s["seconds"].as_f64().expect("seconds");
        assert!(frames > 0, "consumer at {rate} fps got nothing: {s}");
        assert!(
            (frames as f64) <= *rate * seconds + 1.25,
            "consumer at {rate} fps took {frames} frames in its {seconds} s: {s}"
        );
        counts.push(frames);
        for key in ["frames", "reattached", "coalesced"] {
            assert!(s[key].is_u64(), "missing {key}: {s}");
        }
        for key in ["p50", "p99", "max"] {
            assert!(
                s["latency_us"][key].is_number(),
                "missing latency {key}: {s}"
            );
        }
    }
    // Each followed its own limit, not the camera's (100 fps) or another's:
    // at most 151, 61 and 16 frames.
    eprintln!("frames at 50, 20, 5 fps: {counts:?}");
}

/// Test 2: a consumer SIGKILLed while holding a pin loses its pin bit on
/// every slot and its FIFO (how soon is a figure for `bench`), and the
/// producer keeps publishing.
#[test]
fn killed_consumer_pin_is_reclaimed() {
    let mut bus = Bus::new("kill");
    bus.producer(&["--size", "320x240", "--fps", "200", "--max-consumers", "4"]);
    // busy:1000 holds each frame pinned for a second.
    let victim = bus.consumer(&["--algo", "busy:1000"]);
    let other = bus.consumer(&["--algo", "verify", "--json", "--duration", "30"]);
    let entry = bus.wait_for("the victim to hold a pin", T, |v| {
        consumer_entry(v, victim.pid)
            .is_some_and(|c| !c["pinned_slots"].as_array().is_some_and(Vec::is_empty))
    });
    let victim_entry = consumer_entry(&entry, victim.pid).expect("victim entry");
    let index = u(&victim_entry["index"]);
    let generation = u(&victim_entry["generation"]);
    let bit = 1u64 << index;
    let fifo = bus
        .trigger_dir()
        .join(format!("consumer-{index}-{generation}.fifo"));
    assert!(
        fifo.exists(),
        "FIFO {fifo:?} should exist while the consumer runs"
    );
    let published_before = u(&entry["producer"]["frames_published"]);
    victim.signal(Signal::KILL);
    let killed = std::time::Instant::now();
    let after = bus.wait_for("the dead consumer's pin to be reclaimed", T, |v| {
        v["slots"]
            .as_array()
            .expect("slots")
            .iter()
            .all(|s| u(&s["pins"]) & bit == 0)
            && consumer_entry(v, victim.pid).is_none()
            && !fifo.exists()
    });
    eprintln!(
        "reclaimed {:?} after SIGKILL (inspect included)",
        killed.elapsed()
    );
    let later = bus.wait_for("the producer to keep publishing", T, |v| {
        u(&v["producer"]["frames_published"]) > u(&after["producer"]["frames_published"]) + 20
    });
    assert!(u(&later["producer"]["frames_published"]) > published_before);
    // The other consumer was never disturbed.
    other.signal(Signal::TERM);
    let mut other = other;
    let s = other.last_json(T);
    assert_eq!(u(&s["bad_frames"]), 0, "{s}");
    assert!(u(&s["frames"]) > 0, "{s}");
}

/// Test 3: a SIGSTOPped consumer slows neither the producer nor the other
/// consumers: its pipe fills, the producer coalesces its triggers instead
/// of waiting, and the others keep receiving frames.
#[test]
fn stopped_consumer_does_not_block_anyone() {
    let mut bus = Bus::new("stop");
    // Unpaced small frames: thousands per second fill a stopped consumer's
    // pipe (64 KiB = 4096 triggers) within a second or two.
    bus.producer(&["--size", "64x48", "--fps", "0", "--max-consumers", "4"]);
    let stopped = bus.consumer(&["--algo", "mean"]);
    let mut runner = bus.consumer(&["--algo", "verify", "--json", "--duration", "60"]);
    bus.wait_for("both consumers connected", T, |v| {
        [stopped.pid, runner.pid].iter().all(|&p| {
            consumer_entry(v, p).is_some_and(|c| c["state"] == "connected" && u(&c["frames"]) > 0)
        })
    });
    stopped.signal(Signal::STOP);
    let first = bus.wait_for("the stopped consumer's triggers to be coalesced", T, |v| {
        consumer_entry(v, stopped.pid).is_some_and(|c| u(&c["coalesced"]) > 0)
    });
    // While it stays stopped, the producer and the running consumer go on.
    let (p0, r0) = (
        u(&first["producer"]["frames_published"]),
        frames_of(&first, runner.pid),
    );
    let (s0, c0) = (
        frames_of(&first, stopped.pid),
        u(&consumer_entry(&first, stopped.pid).expect("entry")["coalesced"]),
    );
    let later = bus.wait_for("progress while a consumer is stopped", T, |v| {
        u(&v["producer"]["frames_published"]) > p0 + 1000
            && frames_of(v, runner.pid) > r0 + 100
            && consumer_entry(v, stopped.pid).is_some_and(|c| u(&c["coalesced"]) > c0 + 100)
    });
    assert_eq!(
        frames_of(&later, stopped.pid),
        s0,
        "a stopped consumer cannot have processed frames"
    );
    stopped.signal(Signal::CONT);
    bus.wait_for("the resumed consumer to catch up", T, |v| {
        frames_of(v, stopped.pid) > s0
    });
    runner.signal(Signal::TERM);
    let s = runner.last_json(T);
    assert_eq!(u(&s["bad_frames"]), 0, "{s}");
}

/// Test 4: the producer SIGKILLed and a new one started on the same bus: a
/// running consumer attaches to it by itself and keeps receiving.
#[test]
fn consumer_reattaches_to_a_new_producer() {
    let mut bus = Bus::new("restart");
    let first = bus.producer(&["--size", "160x120", "--fps", "200"]);
    let mut consumer = bus.consumer(&["--algo", "verify", "--json", "--duration", "60"]);
    let before = bus.wait_for("frames from the first producer", T, |v| {
        frames_of(v, consumer.pid) > 10
    });
    let first_instance = before["instance_id"].clone();
    first.signal(Signal::KILL);
    bus.wait(&first, T);
    // The stale bus is taken over by the new producer.
    bus.producer(&["--size", "160x120", "--fps", "200"]);
    let after = bus.wait_for("frames from the second producer", T, |v| {
        frames_of(v, consumer.pid) > 10
    });
    assert_ne!(
        after["instance_id"], first_instance,
        "a new producer has a new instance id"
    );
    consumer.signal(Signal::TERM);
    let s = consumer.last_json(T);
    assert!(u(&s["reattached"]) >= 1, "{s}");
    assert_eq!(u(&s["bad_frames"]), 0, "{s}");
}

/// A second producer on a live bus is refused with the first one's pid, and
/// a clean producer stop removes the shm object and every FIFO.
#[test]
fn live_bus_is_refused_and_clean_stop_leaves_nothing() {
    let mut bus = Bus::new("busy");
    let first = bus.producer(&["--fps", "50"]);
    let consumer = bus.consumer(&["--algo", "mean"]);
    let name = bus.name.clone();
    let (status, _, err) = bus.run(&["produce", "--bus", &name]);
    assert!(!status.success());
    assert!(
        err.contains(&format!("process {}", first.pid)),
        "error should name the live producer: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    first.signal(Signal::TERM);
    let status = bus.wait(&first, T);
    assert!(status.success(), "producer exit {status:?}");
    assert!(!bus.shm_path().exists(), "shm object left behind");
    let leftovers: Vec<_> = std::fs::read_dir(bus.trigger_dir())
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    // The consumer may already have re-created nothing: it waits for a new
    // producer without creating FIFOs until one exists.
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
    consumer.signal(Signal::KILL);
}

/// Two producers started at the same moment on one bus: exactly one runs,
/// the other is refused (the bus lock, not a pid check, decides).
#[test]
fn simultaneous_producers_one_wins() {
    for round in 0..3 {
        let bus = Bus::new(&format!("race{round}"));
        let name = bus.name.clone();
        let spawn = || {
            bus.command(&[
                "produce",
                "--bus",
                &name,
                "--size",
                "1920x1080",
                "--frames",
                "200",
                "--fps",
                "100",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn producer")
        };
        let (a, b) = (spawn(), spawn());
        let outs = [
            a.wait_with_output().expect("producer a"),
            b.wait_with_output().expect("producer b"),
        ];
        let ready = outs
            .iter()
            .filter(|o| String::from_utf8_lossy(&o.stdout).contains("ready bus="))
            .count();
        let refused: Vec<String> = outs
            .iter()
            .filter(|o| !o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
            .collect();
        assert_eq!(
            ready, 1,
            "round {round}: exactly one producer may run; stderr: {refused:?}"
        );
        assert_eq!(refused.len(), 1, "round {round}: {refused:?}");
        // The loser names the winner, or (if the winner has not created
        // the object yet) says the bus is locked.
        assert!(
            refused[0].contains("already produced by process")
                || refused[0].contains("is locked by another process"),
            "{}",
            refused[0]
        );
    }
}

/// A process that writes pin bits of consumer entries that do not exist
/// into every slot cannot stall the producer: it clears them and goes on.
#[test]
fn stray_pin_bits_do_not_stall_the_producer() {
    use std::os::unix::fs::FileExt;
    let mut bus = Bus::new("stray");
    bus.producer(&["--size", "64x48", "--fps", "500", "--max-consumers", "1"]);
    let v = bus.wait_for("frames", T, |v| u(&v["producer"]["frames_published"]) > 10);
    let slots = u(&v["geometry"]["slot_count"]);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(bus.shm_path())
        .expect("open shm");
    // The slot table starts at 4096 (doc/LAYOUT.md); bit 62 belongs to no
    // consumer of a 1-consumer bus.
    for s in 0..slots {
        file.write_all_at(&(1u64 << 62).to_le_bytes(), 4096 + 64 * s)
            .expect("write pins");
    }
    let before = u(&bus.inspect()["producer"]["frames_published"]);
    let after = bus.wait_for("the producer to go on", T, |v| {
        u(&v["producer"]["frames_published"]) > before + 100
    });
    for s in after["slots"].as_array().expect("slots") {
        assert_eq!(u(&s["pins"]) & (1 << 62), 0, "stray bit left: {s}");
    }
}

/// A process that writes nonsense over the whole consumer table, owner
/// words included (impossible states, made-up pids, stray figures), cannot
/// crash or stall the producer: it evicts what it did not set, goes on
/// publishing, and a consumer that arrives afterwards attaches and gets
/// whole frames.
#[test]
fn scribbled_consumer_table_does_not_stall_the_producer() {
    use std::os::unix::fs::FileExt;
    let mut bus = Bus::new("scribble");
    bus.producer(&["--size", "64x48", "--fps", "500", "--max-consumers", "4"]);
    let first = bus.consumer(&["--algo", "verify"]);
    bus.wait_for("the first consumer to take frames", T, |v| {
        frames_of(v, first.pid) > 10
    });
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(bus.shm_path())
        .expect("open shm");
    let mut word = [0u8; 8];
    file.read_exact_at(&mut word, 88)
        .expect("consumer_table_offset"); // doc/LAYOUT.md §5.1
    let table = u64::from_le_bytes(word);
    const ENTRY: u64 = 128; // a consumer entry, doc/LAYOUT.md §7
                            // xorshift64: the same nonsense on every run.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let before = u(&bus.inspect()["producer"]["frames_published"]);
    for round in 0..50 {
        for byte in (0..4 * ENTRY).step_by(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Every other round, owner words get states the producer never
            // sets (5..=255) with a pid of this live test process.
            let value = if round % 2 == 0 && byte % ENTRY == 0 {
                u64::from(std::process::id()) << 32 | (x & 0xffff_ff00) | (5 + x % 251)
            } else {
                x
            };
            file.write_all_at(&value.to_le_bytes(), table + byte)
                .expect("scribble");
        }
    }
    let after = bus.wait_for("the producer to go on publishing", T, |v| {
        u(&v["producer"]["frames_published"]) > before + 200
    });
    assert_eq!(after["producer"]["alive"], true, "{after}");
    // Clear the table as a fresh bus has it, so the nonsense pids cannot
    // hold every entry (the producer frees an entry only once its pid is
    // dead), then a newcomer attaches and checks every byte it gets.
    file.write_all_at(&[0u8; 4 * ENTRY as usize], table)
        .expect("clear");
    let mut late = bus.consumer(&["--algo", "verify", "--frames", "50", "--json"]);
    let summary = late.last_json(T);
    assert_eq!(u(&summary["frames"]), 50, "{summary}");
    assert_eq!(u(&summary["bad_frames"]), 0, "{summary}");
}
