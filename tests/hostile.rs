//! Hostile peers (another process of the same user, or a group member):
//! a bus they own or made writable by everyone is refused, a symbolic link
//! in place of a trigger directory is neither used nor followed, and a
//! directory planted at a consumer's FIFO path gets that consumer evicted
//! (and re-registered) instead of retried forever. Truncation under load is
//! in `truncation.rs`.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

use common::forged::{plant, valid_header};
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
/// the owner start one after another. A consumer sets its FIFO's mode on
/// the FIFO it opened (never by path), and the directory is sticky, so the
/// file's mode never changes.
#[test]
fn the_chmod_race_never_changes_a_victim_file() {
    const GROUP: u32 = 4242;
    const STARTS: usize = 60;
    if !rustix::process::geteuid().is_root() {
        return common::skip(
            "the_chmod_race_never_changes_a_victim_file",
            "not root (needs another user)",
        );
    }
    let mut bus = Bus::new("chmodrace");
    bus.producer(&["--fps", "200", "--size", "64x48", "--group", "4242"]);
    let victim = bus.root.join("victim");
    std::fs::write(&victim, b"owner only").expect("victim file");
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let dir = bus.trigger_dir();
    let script = r#"
        dir=$1; victim=$2; n=0
        while [ ! -e "$dir/.stop" ]; do
          for f in "$dir"/consumer-*.fifo; do
            [ -e "$f" ] || continue
            ln -sf "$victim" "$dir/.link" 2>/dev/null && mv -f "$dir/.link" "$f" 2>/dev/null
            n=$((n + 1))
          done
        done
        echo "attempts=$n"
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
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
    }
    let attacker = attacker.spawn().expect("start the attacker");
    let name = bus.name.clone();
    let mut attached = 0;
    for _ in 0..STARTS {
        let (status, _, _) = bus.run(&["consume", "--bus", &name, "--frames", "1"]);
        if status.success() {
            attached += 1;
        }
        let mode = std::fs::symlink_metadata(&victim).expect("victim").mode() & 0o7777;
        assert_eq!(mode, 0o600, "the victim's mode changed");
    }
    std::fs::write(dir.join(".stop"), b"").expect("stop the attacker");
    let out = attacker.wait_with_output().expect("the attacker ends");
    let report = String::from_utf8_lossy(&out.stdout);
    eprintln!("{attached} of {STARTS} consumer starts attached; attacker {report}");
    let _ = std::fs::remove_file(dir.join(".stop"));
    let _ = std::fs::remove_file(dir.join(".link"));
    assert_eq!(
        std::fs::read(&victim).expect("victim"),
        b"owner only",
        "the victim file was touched"
    );
    assert!(attached > 0, "no consumer could attach at all");
}

/// A consumer name holding ESC/BEL bytes (the name is written by the
/// consumer, untrusted) is printed escaped by `inspect`, never raw; the
/// JSON carries it escaped too.
#[test]
fn inspect_escapes_control_characters() {
    let mut bus = Bus::new("escape");
    bus.producer(&["--fps", "50", "--size", "64x48"]);
    let evil = "cam\u{1b}[2J\u{7}x";
    bus.consumer(&["--algo", "mean", "--name", evil]);
    let name = bus.name.clone();
    let (status, out, err) = bus.run(&["inspect", "--bus", &name]);
    assert!(status.success(), "{err}");
    assert!(
        !out.contains('\u{1b}') && !out.contains('\u{7}'),
        "raw control bytes: {out:?}"
    );
    assert!(out.contains("cam\\u{1b}[2J\\u{7}x"), "{out}");
    let (status, json, err) = bus.run(&["inspect", "--bus", &name, "--json"]);
    assert!(status.success(), "{err}");
    assert!(
        !json.contains('\u{1b}') && !json.contains('\u{7}'),
        "raw control bytes: {json:?}"
    );
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(
        v["consumers"][0]["name"], evil,
        "the JSON keeps the name, escaped"
    );
}
