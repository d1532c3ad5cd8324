//! Hostile peers (another process of the same user, or a group member):
//! a bus they own or made writable by everyone is refused, a symbolic link
//! in place of a trigger directory is neither used nor followed, and a
//! directory planted at a consumer's FIFO path gets that consumer evicted
//! (and re-registered) instead of retried forever. A process that keeps
//! writing a live bus's slot table stops its producer with the named error
//! `SlotTableCorrupt`, and the bus can be taken over. Truncation under load
//! is in `truncation.rs`.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::forged::{plant, valid_header, WritableBus};
use common::in_process::StopOnDrop;
use common::{u, Bus};
use rustix::process::Signal;

const T: Duration = Duration::from_secs(30);
const NOBODY: u32 = 65534;

/// A valid-looking bus object made by hand, mode 0600.
fn plant_bus(bus: &Bus) {
    let (bytes, l) = valid_header(64, 48);
    plant(bus, &bytes, l.total_size);
}

fn refused(bus: &Bus, args: &[&str], expect: &[&str]) {
    let (status, _, err) = bus.run(args);
    assert!(!status.success(), "{args:?} used an untrusted bus: {err}");
    assert_ne!(status.code(), Some(101), "{args:?} panicked: {err}");
    for e in expect {
        assert!(err.contains(e), "{args:?}: expected {e:?} in: {err}");
    }
}

/// A bus object another user made (here: uid 65534, as a group member or a
/// 0666 object would allow) is refused by consume, inspect and snapshot,
/// with the owner and the mode named; trusting that uid explicitly lifts
/// the refusal.
#[test]
#[ignore = "needs root: chowns a bus to another user (CI runs it)"]
fn a_bus_owned_by_another_user_is_refused() {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test chowns a bus to another user: run it as root (CI does, with --ignored)"
    );
    let bus = Bus::new("forged");
    plant_bus(&bus);
    rustix::fs::chown(
        bus.shm_path(),
        Some(rustix::fs::Uid::from_raw(NOBODY)),
        None,
    )
    .expect("chown the forged object");
    let name = bus.name.clone();
    let expect = [
        "refusing",
        "owner uid 65534",
        "mode 0600",
        "FRAMEBUS_TRUST_OWNERS=65534",
    ];
    refused(&bus, &["consume", "--bus", &name, "--frames", "1"], &expect);
    refused(&bus, &["inspect", "--bus", &name], &expect);
    let png = bus.root.join("x.png");
    refused(
        &bus,
        &[
            "snapshot",
            "--bus",
            &name,
            "-o",
            png.to_str().expect("utf-8"),
        ],
        &expect,
    );
    assert!(!png.exists(), "snapshot wrote the forged bus's frame");
    // Trusted on purpose: inspect gets past the owner check (and stops at
    // the forged header's missing trigger directory instead).
    let mut cmd = bus.command(&["inspect", "--bus", &name, "--json"]);
    cmd.env("FRAMEBUS_TRUST_OWNERS", "65534");
    let out = cmd.output().expect("inspect");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("refusing"), "{err}");
    assert!(err.contains("trigger directory"), "{err}");
}

/// Our own bus made writable by everyone is refused too.
#[test]
fn a_world_writable_bus_is_refused() {
    let mut bus = Bus::new("w666");
    bus.producer(&["--fps", "50", "--size", "64x48"]);
    std::fs::set_permissions(bus.shm_path(), std::fs::Permissions::from_mode(0o666))
        .expect("chmod");
    let name = bus.name.clone();
    refused(
        &bus,
        &["consume", "--bus", &name, "--frames", "1"],
        &["refusing", "everyone may write it", "mode 0666"],
    );
}

/// A trigger directory swapped for a symbolic link: a new consumer refuses
/// to create its FIFO through it, and the producer's shutdown does not
/// follow it (the files where it points stay).
#[test]
fn a_symlinked_trigger_directory_is_neither_used_nor_followed() {
    let mut bus = Bus::new("symdir");
    let producer = bus.producer(&["--fps", "50", "--size", "64x48"]);
    let dir = bus.trigger_dir();
    let decoy = bus.root.join("decoy");
    std::fs::create_dir(&decoy).expect("decoy dir");
    let planted = decoy.join("consumer-0-1.fifo");
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        &planted,
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .expect("a FIFO in the decoy");
    std::fs::write(decoy.join("keep.txt"), b"mine").expect("a file in the decoy");
    let moved = bus.root.join("moved-away");
    std::fs::rename(&dir, &moved).expect("move the trigger directory");
    std::os::unix::fs::symlink(&decoy, &dir).expect("symlink in its place");
    let name = bus.name.clone();
    refused(
        &bus,
        &["consume", "--bus", &name, "--frames", "1"],
        &["refusing", "symbolic link"],
    );
    producer.signal(Signal::TERM);
    bus.wait(&producer, T);
    assert!(
        planted.exists(),
        "the producer's shutdown followed the link"
    );
    assert!(decoy.join("keep.txt").exists());
    assert!(!bus.shm_path().exists(), "the bus itself is removed");
}

/// A directory planted at a Ready consumer's FIFO path: the producer evicts
/// that registration (it cannot be a FIFO the consumer made) instead of
/// retrying forever, and the consumer registers again and gets frames.
#[test]
fn a_directory_at_a_fifo_path_is_evicted_not_retried_forever() {
    let mut bus = Bus::new("fifodir");
    let producer = bus.producer(&["--fps", "200", "--size", "64x48"]);
    // Stop the producer so the consumer stays Ready (not yet connected).
    producer.signal(Signal::STOP);
    let name = bus.name.clone();
    let mut consumer = bus.spawn(&[
        "consume", "--bus", &name, "--algo", "verify", "--frames", "50", "--json",
    ]);
    consumer.expect_line("attached bus=", T);
    let v = bus.inspect();
    let c = &v["consumers"][0];
    assert_eq!(c["state"], "ready", "{v:#}");
    let fifo = bus.trigger_dir().join(format!(
        "consumer-{}-{}.fifo",
        u(&c["index"]),
        u(&c["generation"])
    ));
    std::fs::remove_file(&fifo).expect("remove the FIFO");
    std::fs::create_dir(&fifo).expect("a directory in its place");
    producer.signal(Signal::CONT);
    let summary = consumer.last_json(T);
    assert_eq!(summary["frames"], 50, "{summary}");
    assert_eq!(summary["bad_frames"], 0, "{summary}");
    assert!(fifo.is_dir(), "the planted directory is left alone");
    std::fs::remove_dir(&fifo).expect("remove the planted directory");
}

/// The chmod race of a group-shared trigger directory: a member (uid 65534
/// in the bus's group) renames symbolic links to one of the producer's
/// files over every consumer FIFO it sees, in a loop, while consumers of
/// the owner start one after another. The directory is sticky (3770), so
/// the member's renames over the owner's FIFOs are refused, and the file's
/// mode never changes.
#[test]
fn the_chmod_race_never_changes_a_victim_file() {
    chmod_race("the_chmod_race_never_changes_a_victim_file", true);
}

/// The same race in a directory without the sticky bit (as an older
/// producer made it, or an administrator's chmod): now the member's
/// renames succeed, and only the consumer's own steps keep the file safe —
/// the FIFO is opened relative to the directory with `O_NOFOLLOW`, checked
/// with `fstat` to be a FIFO of ours, and its mode set with `fchmod` on
/// the opened FIFO. The test goes on until the attacker has won at least
/// one rename, so the race really was run.
#[test]
fn the_chmod_race_without_the_sticky_bit_still_changes_nothing() {
    chmod_race(
        "the_chmod_race_without_the_sticky_bit_still_changes_nothing",
        false,
    );
}

fn chmod_race(test: &str, sticky: bool) {
    const GROUP: u32 = 4242;
    const STARTS: usize = 60;
    const MAX_STARTS: usize = 400;
    if !rustix::process::geteuid().is_root() {
        return common::skip(test, "not root (needs another user)");
    }
    let mut bus = Bus::new(if sticky { "chmodrace" } else { "chmodrace2" });
    bus.producer(&["--fps", "200", "--size", "64x48", "--group", "4242"]);
    let victim = bus.root.join("victim");
    std::fs::write(&victim, b"owner only").expect("victim file");
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let dir = bus.trigger_dir();
    let dir_mode = std::fs::metadata(&dir).expect("trigger dir").mode() & 0o7777;
    assert_eq!(dir_mode, 0o3770, "the producer's trigger directory");
    if !sticky {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o2770))
            .expect("clear the sticky bit");
    }
    // For every live FIFO it sees, the attacker appends a byte to a file
    // of its own: `.won` when its rename over the FIFO succeeded,
    // `.denied` when it was refused, so the test can tell the race was
    // run. (A rename onto a name whose FIFO its consumer removed meanwhile
    // also "wins": only the non-sticky case counts wins.)
    let script = r#"
        dir=$1; victim=$2
        while [ ! -e "$dir/.stop" ]; do
          for f in "$dir"/consumer-*.fifo; do
            [ -p "$f" ] || continue
            ln -sf "$victim" "$dir/.link" 2>/dev/null || continue
            if mv -f "$dir/.link" "$f" 2>/dev/null; then
              printf x >> "$dir/.won"
            else
              printf x >> "$dir/.denied"
            fi
          done
        done
    "#;
    let mut attacker = std::process::Command::new("sh");
    {
        use std::os::unix::process::CommandExt;
        attacker
            .args(["-c", script, "attacker"])
            .arg(&dir)
            .arg(&victim)
            .uid(NOBODY)
            .gid(GROUP)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
    }
    let mut attacker = attacker.spawn().expect("start the attacker");
    let count = |file: &str| std::fs::metadata(dir.join(file)).map_or(0, |m| m.len());
    let name = bus.name.clone();
    let (mut attached, mut starts) = (0, 0);
    let race_seen = |sticky: bool| count(if sticky { ".denied" } else { ".won" }) > 0;
    while starts < STARTS || (!race_seen(sticky) && starts < MAX_STARTS) {
        starts += 1;
        let (status, _, _) = bus.run(&["consume", "--bus", &name, "--frames", "1"]);
        if status.success() {
            attached += 1;
        }
        let mode = std::fs::symlink_metadata(&victim).expect("victim").mode() & 0o7777;
        assert_eq!(mode, 0o600, "the victim's mode changed (start {starts})");
    }
    std::fs::write(dir.join(".stop"), b"").expect("stop the attacker");
    let _ = common::wait_timeout(&mut attacker, Duration::from_secs(30));
    let _ = attacker.kill();
    let (denied, won) = (count(".denied"), count(".won"));
    eprintln!(
        "{test}: {attached} of {starts} consumer starts attached; attacker's renames over a live FIFO: {won} done, {denied} refused"
    );
    for f in [".stop", ".link", ".denied", ".won"] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    assert_eq!(
        std::fs::read(&victim).expect("victim"),
        b"owner only",
        "the victim file was touched"
    );
    if sticky {
        assert!(
            denied > 0,
            "no rename over a live FIFO was refused in {starts} starts: the race was not run"
        );
        assert!(attached > 0, "no consumer could attach at all");
    } else {
        assert!(
            won > 0,
            "the attacker never won a rename in {starts} starts: the race was not run"
        );
    }
}

/// A consumer name holding control characters (ESC, BEL, DEL, a C1 CSI, a
/// bidi override; the name is written by the consumer, untrusted) is
/// printed escaped by `inspect`, never raw; the JSON carries it escaped
/// too (`\uXXXX`, decoding to the same name).
#[test]
fn inspect_escapes_control_characters() {
    let mut bus = Bus::new("escape");
    bus.producer(&["--fps", "50", "--size", "64x48"]);
    // ESC and BEL (C0), DEL, CSI as a C1 control, a bidi override: 16
    // bytes, the name's limit.
    let evil = "c\u{1b}[2J\u{7}\u{7f}\u{9b}1m\u{202e}";
    bus.consumer(&["--algo", "mean", "--name", evil]);
    let name = bus.name.clone();
    let (status, out, err) = bus.run(&["inspect", "--bus", &name]);
    assert!(status.success(), "{err}");
    let raw = |s: &str| s.contains(['\u{1b}', '\u{7}', '\u{7f}', '\u{9b}', '\u{202e}']);
    assert!(!raw(&out), "raw control characters: {out:?}");
    assert!(
        out.contains("c\\u{1b}[2J\\u{7}\\u{7f}\\u{9b}1m\\u{202e}"),
        "{out}"
    );
    let (status, json, err) = bus.run(&["inspect", "--bus", &name, "--json"]);
    assert!(status.success(), "{err}");
    assert!(!raw(&json), "raw control characters: {json:?}");
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(
        v["consumers"][0]["name"], evil,
        "the JSON keeps the name, escaped"
    );
}

/// Another process of the bus's user keeps setting a pin bit no consumer
/// can own (entry 62's, on a bus of 2 entries) on every slot. The producer
/// clears such bits every 16 passes that find no slot, but they are back
/// before its next pass: once that has lasted a second it stops with the
/// named error `SlotTableCorrupt` (exit status 1, not a panic or a signal)
/// and removes its bus. Its consumer survives, re-attaches to the producer
/// that takes the bus over, and never sees a bad frame.
///
/// On a loaded machine the writer thread is sometimes off the CPU when the
/// producer has just cleared the bits, and the producer then gets a slot
/// (as it should). So the test also stops the producer for more than a
/// second at a time while the writer runs, as a busy scheduler could: a
/// producer stopped inside its search resumes to a table still full of
/// stray bits, and its next budget pass finds the second exceeded.
#[test]
fn a_slot_table_written_by_another_process_stops_the_producer_with_slot_table_corrupt() {
    let mut bus = Bus::new("corrupt");
    let name = bus.name.clone();
    let args = ["--size", "64x48", "--fps", "0", "--max-consumers", "2"];
    let mut producer = bus.producer(&args);
    let mut consumer = bus.consumer(&["--algo", "verify", "--wait", "30", "--json"]);
    let shm = WritableBus::map(&bus);
    let stray = 1u64 << 62;
    assert!(shm.control().consumers().len() < 62, "bit 62 must be stray");
    let stop = Arc::new(AtomicBool::new(false));
    let status = std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                for slot in shm.control().slots() {
                    slot.pins.fetch_or(stray, Ordering::Relaxed);
                }
            }
        });
        // Stop the writer whatever happens (a failed assertion included).
        let _stop = StopOnDrop(Arc::clone(&stop));
        // A hang guard only: each round has a fair chance (it stops the
        // producer in a search that began before the stop).
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            producer.signal(Signal::STOP);
            std::thread::sleep(Duration::from_millis(1050));
            producer.signal(Signal::CONT);
            std::thread::sleep(Duration::from_millis(50));
            if producer.try_finished().is_some() {
                break bus.wait(&producer, T);
            }
            assert!(
                Instant::now() < deadline,
                "the producer did not stop while its slot table was being written"
            );
        }
    });
    drop(shm);
    let err = producer.stderr();
    assert_eq!(
        status.signal(),
        None,
        "the producer died of a signal: {err}"
    );
    assert_eq!(
        status.code(),
        Some(1),
        "the producer did not stop with an error (101: a panic): {err}"
    );
    let expected = format!(
        "error: producer of bus {name} stopped: no free slot for 1 s although every consumer was held to its pin budget: another process is writing bus {name:?}'s slot table; stop it and restart the producer"
    );
    assert!(
        err.lines().any(|l| l == expected),
        "expected the line {expected:?} in the producer's stderr (last lines: {:?})",
        err.lines().rev().take(5).collect::<Vec<_>>()
    );
    assert!(
        !bus.shm_path().exists(),
        "the stopped producer left its bus object behind"
    );
    // Another producer takes the bus over; the consumer re-attaches to it.
    let mut second = bus.producer(&args);
    bus.wait_for("the consumer's frames on the new bus", T, |v| {
        v["consumers"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| u(&c["frames"]) > 0))
    });
    consumer.signal(Signal::TERM);
    let summary = consumer.last_json(T);
    assert_eq!(summary["bad_frames"], 0, "{summary}");
    assert!(u(&summary["reattached"]) >= 1, "{summary}");
    assert!(bus.wait(&consumer, T).success(), "{summary}");
    second.signal(Signal::TERM);
    let status = bus.wait(&second, T);
    assert!(status.success(), "{}", second.stderr());
    assert!(!bus.shm_path().exists(), "the second producer left its bus");
}
