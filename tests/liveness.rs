//! Liveness is the kernel's word (issue: containers, fork, pid reuse and a
//! held frame that never changes). Real producers and consumers on real
//! shared memory; simulated containers are `unshare --pid --fork --mount`
//! with a private `/tmp` (root only: skipped with a message elsewhere).

mod common;

use std::time::{Duration, Instant};

use common::{containers_unavailable, first_child, skip, u, Bus, Proc};
use framebus_consumer::{Consumer, ConsumerConfig, ConsumerError};
use rustix::process::Signal;
use serde_json::Value;
use shm_layout::BusName;

const T: Duration = Duration::from_secs(30);

/// Stops a producer started with `Bus::container_command` (pid 1 of its
/// namespace, a child of `unshare`) with SIGTERM and checks that its clean
/// stop removed the bus.
fn stop_namespaced_producer(bus: &mut Bus, producer: &Proc) {
    let pid1 = first_child(producer.pid, T);
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid1 as i32).expect("pid"),
        Signal::TERM,
    )
    .expect("stop the namespaced producer");
    bus.wait(producer, T);
    assert!(!bus.shm_path().exists(), "a clean stop removes the bus");
}

fn consumers(v: &Value) -> &Vec<Value> {
    v["consumers"].as_array().expect("consumers")
}

/// A consumer in its own pid and mount namespaces (pid 1 there, private
/// `/tmp`), sharing only `/dev/shm` with the producer: it attaches with no
/// option, gets every frame whole, and when it is SIGKILLed its entry is
/// reclaimed — although host pid 1 (its number in the table) is alive.
#[test]
fn container_consumer_attaches_and_is_reclaimed_after_kill() {
    if let Some(why) = containers_unavailable() {
        return skip(
            "container_consumer_attaches_and_is_reclaimed_after_kill",
            &why,
        );
    }
    let mut bus = Bus::new_in_dev_shm("ctc");
    bus.producer(&["--size", "160x120", "--fps", "200"]);
    let name = bus.name.clone();
    let cmd = bus.container_command(&[
        "consume", "--bus", &name, "--algo", "verify", "--frames", "100", "--json",
    ]);
    let mut counted = bus.spawn_command(cmd);
    let summary = counted.last_json(T);
    assert_eq!(summary["frames"], 100, "{summary}");
    assert_eq!(summary["bad_frames"], 0, "{summary}");
    assert_eq!(summary["reattached"], 0, "{summary}");

    let cmd = bus.container_command(&["consume", "--bus", &name, "--algo", "busy:20"]);
    let mut victim = bus.spawn_command(cmd);
    victim.expect_line("attached bus=", T);
    let v = bus.wait_for(
        "the namespaced consumer with pid 1 holding frames",
        T,
        |v| {
            consumers(v)
                .iter()
                .any(|c| c["pid"] == 1 && c["alive"] == true && u(&c["frames"]) > 0)
        },
    );
    assert_eq!(consumers(&v).len(), 1, "{v:#}");
    let pid1 = first_child(victim.pid, T);
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid1 as i32).expect("pid"),
        Signal::KILL,
    )
    .expect("kill the namespaced consumer");
    let killed = Instant::now();
    let v = bus.wait_for("its entry reclaimed", T, |v| consumers(v).is_empty());
    eprintln!(
        "namespaced pid-1 consumer reclaimed {:?} after SIGKILL",
        killed.elapsed()
    );
    assert!(
        v["slots"]
            .as_array()
            .expect("slots")
            .iter()
            .all(|s| u(&s["pins"]) & !(1 << 63) == 0),
        "no pin left: {v:#}"
    );
}

/// A producer in its own pid and mount namespaces (pid 1 there): host
/// consumers attach, get every frame whole and are never evicted.
#[test]
fn container_producer_serves_host_consumers() {
    if let Some(why) = containers_unavailable() {
        return skip("container_producer_serves_host_consumers", &why);
    }
    let mut bus = Bus::new_in_dev_shm("ctp");
    let name = bus.name.clone();
    let cmd = bus.container_command(&[
        "produce", "--bus", &name, "--size", "160x120", "--fps", "200",
    ]);
    let mut producer = bus.spawn_command(cmd);
    producer.expect_line(&format!("ready bus={name}"), T);
    let v = bus.inspect();
    assert_eq!(v["producer"]["pid"], 1, "the header names pid 1: {v:#}");
    assert_eq!(v["producer"]["alive"], true, "{v:#}");
    let mut a = bus.spawn(&[
        "consume", "--bus", &name, "--algo", "verify", "--frames", "300", "--json",
    ]);
    let mut b = bus.spawn(&[
        "consume", "--bus", &name, "--algo", "verify", "--frames", "300", "--json",
    ]);
    for c in [&mut a, &mut b] {
        let s = c.last_json(T);
        assert_eq!(s["frames"], 300, "{s}");
        assert_eq!(s["bad_frames"], 0, "{s}");
        assert_eq!(s["reattached"], 0, "never evicted: {s}");
    }
    stop_namespaced_producer(&mut bus, &producer);
}

/// Checks that a held `frame` still holds exactly `copy`, lets go of it,
/// and takes a newer frame: the consumer kept its registration throughout.
fn let_go_of_an_unchanged_frame(
    consumer: &mut Consumer,
    frame: framebus_consumer::Frame<'static>,
    copy: &[u8],
) {
    assert!(frame.pixels() == copy, "the held frame changed");
    let seq = frame.seq();
    drop(frame);
    let next = consumer
        .next_frame(Some(T))
        .expect("next")
        .expect("a frame");
    assert!(next.seq() > seq, "no newer frame after letting go");
}

/// Runs `child` in a forked child of this test process and reports whether
/// it returned true. The child calls only framebus (which checks for the
/// fork first), drops values (close/munmap) and `_exit`s.
fn in_forked_child(child: impl FnOnce() -> bool) -> bool {
    // SAFETY: the child runs `child` — framebus calls that check for the
    // fork before anything else, and drops — then `_exit`s: it takes no
    // lock another thread of this process may hold.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let ok = child();
        // SAFETY: ends the child at once, without running the parent's
        // atexit handlers or the test harness.
        unsafe { libc::_exit(if ok { 0 } else { 3 }) };
    }
    let mut status = 0;
    // SAFETY: waits for our own child; `status` is a valid out pointer.
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(waited, pid);
    libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
}

/// Containers need no option: a producer in one simulated container and
/// consumers in another and on the host, none of them given
/// `FRAMEBUS_RUNTIME_DIR`, meet under the default trigger root
/// `/dev/shm/framebus-<uid>` (the `/dev/shm` a container shares with the
/// host, unlike its private `/tmp`), get every frame whole, and the
/// producer's clean stop removes its trigger directory there.
#[test]
fn containers_need_no_option_with_the_default_trigger_root() {
    if let Some(why) = containers_unavailable() {
        return skip(
            "containers_need_no_option_with_the_default_trigger_root",
            &why,
        );
    }
    let mut bus = Bus::new("ctdefault");
    let name = bus.name.clone();
    let uid = rustix::process::getuid().as_raw();
    let default_dir = std::path::PathBuf::from(format!("/dev/shm/framebus-{uid}/{name}"));
    // Removes the trigger directory under the shared default root even
    // when the test fails (the Bus removes only its own root).
    struct RemoveDir(std::path::PathBuf);
    impl Drop for RemoveDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _remove = RemoveDir(default_dir.clone());
    let mut cmd = bus.container_command(&[
        "produce", "--bus", &name, "--size", "160x120", "--fps", "200",
    ]);
    cmd.env_remove("FRAMEBUS_RUNTIME_DIR");
    let mut producer = bus.spawn_command(cmd);
    producer.expect_line(&format!("ready bus={name}"), T);
    let v = bus.inspect();
    assert_eq!(
        v["trigger_dir"],
        default_dir.to_string_lossy().as_ref(),
        "{v:#}"
    );
    let mut cmd = bus.container_command(&[
        "consume", "--bus", &name, "--algo", "verify", "--frames", "100", "--json",
    ]);
    cmd.env_remove("FRAMEBUS_RUNTIME_DIR");
    let mut in_container = bus.spawn_command(cmd);
    let mut cmd = bus.command(&[
        "consume", "--bus", &name, "--algo", "verify", "--frames", "100", "--json",
    ]);
    cmd.env_remove("FRAMEBUS_RUNTIME_DIR");
    let mut on_host = bus.spawn_command(cmd);
    for (who, c) in [
        ("in a container", &mut in_container),
        ("on the host", &mut on_host),
    ] {
        let s = c.last_json(T);
        assert_eq!(s["frames"], 100, "consumer {who}: {s}");
        assert_eq!(s["bad_frames"], 0, "consumer {who}: {s}");
        assert_eq!(s["reattached"], 0, "consumer {who}: {s}");
    }
    stop_namespaced_producer(&mut bus, &producer);
    assert!(
        !default_dir.exists(),
        "a clean stop removes its trigger directory under the default root"
    );
}

/// A frame held by a live consumer stays byte-identical for 3 s at 1000 fps
/// while other consumers join, leave and die around it.
#[test]
fn held_frame_never_changes_while_others_come_and_go() {
    let mut bus = Bus::new("held");
    bus.producer(&["--size", "160x120", "--fps", "1000", "--max-consumers", "6"]);
    let mut consumer = Consumer::attach(ConsumerConfig::new(
        BusName::new(&bus.name).expect("bus name"),
    ))
    .expect("attach");
    let frame = consumer
        .next_frame_owned(Some(T))
        .expect("a frame")
        .expect("before the timeout");
    let copy = frame.pixels().to_vec();
    let held_since = Instant::now();
    let start_published = u(&bus.inspect()["producer"]["frames_published"]);
    for rounds in 1..=10 {
        let leaver = bus.consumer(&["--algo", "verify", "--frames", "20"]);
        let victim = bus.consumer(&["--algo", "busy:5"]);
        victim.signal(Signal::KILL);
        bus.wait(&victim, T);
        bus.wait(&leaver, T);
        assert!(
            frame.pixels() == copy.as_slice(),
            "the held frame changed (round {rounds})"
        );
    }
    // Held on for 3 s and 3000 frames (each slot rewritten many times),
    // checked at every look.
    bus.wait_for(
        "3000 frames published and 3 s passed while the frame is held",
        4 * T,
        |v| {
            assert!(
                frame.pixels() == copy.as_slice(),
                "the held frame changed after {:?}",
                held_since.elapsed()
            );
            u(&v["producer"]["frames_published"]) >= start_published + 3000
                && held_since.elapsed() >= Duration::from_secs(3)
        },
    );
    let_go_of_an_unchanged_frame(&mut consumer, frame, &copy);
}

/// Every owner of an entry has its own FIFO name: a leaver that removes its
/// FIFO late can never remove its successor's, and a stray file at one
/// FIFO name stops nobody. 60 hand-overs of one entry, each successor gets
/// frames after the predecessor's (late) removal of its own FIFO.
#[test]
fn fifo_hand_over_is_race_free() {
    let mut bus = Bus::new("handover");
    bus.producer(&["--size", "64x48", "--fps", "500", "--max-consumers", "1"]);
    let name = BusName::new(&bus.name).expect("bus name");
    let mut failures = 0;
    let mut previous: Option<std::path::PathBuf> = None;
    for round in 0..60 {
        let mut c = Consumer::attach_wait(ConsumerConfig::new(name.clone()), T).expect("attach");
        let info = c.info().expect("attached");
        assert_eq!(info.entry, 0, "one entry only");
        let fifo = bus
            .trigger_dir()
            .join(format!("consumer-0-{}.fifo", info.generation));
        assert!(fifo.exists(), "round {round}: {} missing", fifo.display());
        if let Some(old) = previous.take() {
            assert_ne!(old, fifo, "a successor reuses its predecessor's FIFO name");
            // The predecessor's delayed removal of *its* FIFO: a no-op
            // for the successor.
            let _ = std::fs::remove_file(&old);
        }
        match c.next_frame(Some(T)) {
            Ok(Some(_)) => {}
            other => {
                failures += 1;
                eprintln!("round {round}: {other:?}");
            }
        }
        previous = Some(fifo);
    }
    assert_eq!(failures, 0);
}

/// After every producer SIGKILL the consumer attaches exactly once to the
/// next producer: `reattached` equals the number of restarts.
#[test]
fn reattached_equals_producer_restarts() {
    const RESTARTS: u64 = 30;
    let mut bus = Bus::new("reatt");
    let mut producer = bus.producer(&["--size", "64x48", "--fps", "200"]);
    let mut consumer = bus.consumer(&["--algo", "verify", "--json"]);
    for _ in 0..RESTARTS {
        let instance = bus.inspect()["instance_id"].clone();
        producer.signal(Signal::KILL);
        bus.wait(&producer, T);
        producer = bus.producer(&["--size", "64x48", "--fps", "200"]);
        bus.wait_for("the consumer on the new instance", T, |v| {
            v["instance_id"] != instance
                && consumers(v)
                    .iter()
                    .any(|c| c["state"] == "connected" && u(&c["frames"]) > 0)
        });
    }
    consumer.signal(Signal::TERM);
    let summary = consumer.last_json(T);
    assert_eq!(summary["reattached"], RESTARTS, "{summary}");
    assert_eq!(summary["bad_frames"], 0, "{summary}");
}

/// The child of `fork` in a process that holds a consumer: every consumer
/// call fails naming the fork, and dropping the child's copies of the
/// consumer and of a held frame does nothing to the parent, whose frame
/// stays byte-identical and whose registration stands.
#[test]
fn forked_consumer_child_never_acts_for_its_parent() {
    let mut bus = Bus::new("forkc");
    bus.producer(&["--size", "160x120", "--fps", "500"]);
    let mut consumer = Consumer::attach(ConsumerConfig::new(
        BusName::new(&bus.name).expect("bus name"),
    ))
    .expect("attach");
    let frame = consumer
        .next_frame_owned(Some(T))
        .expect("a frame")
        .expect("before the timeout");
    let copy = frame.pixels().to_vec();
    let entry = consumer.info().expect("attached").entry;
    // The child drops its copies (taken out of these), the parent keeps its own.
    let (mut frame, mut consumer) = (Some(frame), Some(consumer));
    let refused = in_forked_child(|| {
        let forked = matches!(
            consumer
                .as_mut()
                .map(|c| c.next_frame(Some(Duration::ZERO))),
            Some(Err(ConsumerError::Forked { .. }))
        );
        drop(frame.take());
        drop(consumer.take());
        forked
    });
    assert!(
        refused,
        "the child's consumer call did not fail with Forked"
    );
    let (frame, mut consumer) = (
        frame.expect("the parent's frame"),
        consumer.expect("the parent's consumer"),
    );
    let published = u(&bus.inspect()["producer"]["frames_published"]);
    let v = bus.wait_for("200 more frames after the child exited", T, |v| {
        u(&v["producer"]["frames_published"]) >= published + 200
    });
    let me = consumers(&v)
        .iter()
        .find(|c| u(&c["index"]) == u64::from(entry))
        .unwrap_or_else(|| panic!("the parent's entry is gone: {v:#}"));
    assert_eq!(me["state"], "connected", "{v:#}");
    assert_eq!(
        me["pinned_slots"].as_array().map(Vec::len),
        Some(1),
        "{v:#}"
    );
    let_go_of_an_unchanged_frame(&mut consumer, frame, &copy);
}

/// The child of `fork` in a process that runs a producer: publishing fails
/// naming the fork, and dropping the child's copy of the producer removes
/// nothing — the bus, its lock and the FIFOs stay the parent's, a second
/// producer is still refused, and the parent's consumer never notices.
#[test]
fn forked_producer_child_never_shuts_the_bus_down() {
    use framebus_producer::{FakeSource, FrameSource, Producer, ProducerConfig, ProducerError};
    let mut bus = Bus::new("forkp");
    let name = BusName::new(&bus.name).expect("bus name");
    let mut source = FakeSource::new(64, 48);
    let producer = Producer::create(ProducerConfig::new(name.clone()), 64, 48).expect("create");
    let trigger_dir = producer.trigger_dir();
    let bus_name = bus.name.clone();
    let mut consumer = bus.spawn(&[
        "consume", "--bus", &bus_name, "--algo", "verify", "--frames", "200", "--json",
    ]);
    consumer.expect_line("attached bus=", T);
    // The child drops its copy (taken out of this), the parent keeps its own.
    let mut producer = Some(producer);
    let refused = in_forked_child(|| {
        let forked = matches!(
            producer
                .as_mut()
                .map(|p| p.publish(|seq, slot| source.fill(seq, slot))),
            Some(Err(ProducerError::Forked { .. }))
        );
        drop(producer.take());
        forked
    });
    assert!(refused, "the child's publish did not fail with Forked");
    let mut producer = producer.expect("the parent's producer");
    assert!(bus.shm_path().exists(), "the child removed the bus");
    assert!(
        std::path::Path::new(&format!("/dev/shm/.framebus-lock.{}", bus.name)).exists(),
        "the child removed the bus lock"
    );
    assert!(
        trigger_dir.is_dir(),
        "the child removed the trigger directory"
    );
    assert!(matches!(
        Producer::create(ProducerConfig::new(name), 64, 48),
        Err(ProducerError::BusBusy { .. })
    ));
    let deadline = Instant::now() + T;
    while consumer.try_finished().is_none() {
        producer
            .publish(|seq, slot| source.fill(seq, slot))
            .expect("the parent still publishes");
        assert!(
            Instant::now() < deadline,
            "the consumer did not get 200 frames"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let summary = consumer.last_json(T);
    assert_eq!(summary["frames"], 200, "{summary}");
    assert_eq!(summary["bad_frames"], 0, "{summary}");
    assert_eq!(summary["reattached"], 0, "{summary}");
    drop(producer);
    assert!(
        !bus.shm_path().exists(),
        "the parent's drop removes the bus"
    );
}

/// `(index, generation)` of the entry named `name` in an `inspect`, if any.
fn entry_of(v: &Value, name: &str) -> Option<(u64, u64)> {
    consumers(v)
        .iter()
        .find(|c| c["name"] == name)
        .map(|c| (u(&c["index"]), u(&c["generation"])))
}

/// Whether `p` has printed its `attached` line (reads what is there
/// without waiting); panics if it ended.
fn attached(p: &mut Proc) -> bool {
    let ended = p.try_finished().is_some();
    let yes = p.seen.iter().any(|l| l.starts_with("attached bus="));
    if ended && !yes {
        let pid = p.pid;
        panic!("consumer {pid} ended unattached: {}", p.stderr());
    }
    yes
}

/// Registrations racing reclaims on a table of two entries, with real
/// processes: one steady consumer holds an entry throughout; the other
/// entry's owner is SIGKILLed round after round while two consumers
/// register for it — one that has been retrying on the full table since
/// the round before, and one started just before the kill. Exactly one of
/// them attaches, the other keeps waiting for the next round. Each claim is
/// a new (entry, generation), never one seen before and never shared: the
/// table lists exactly the steady consumer and the newest one, each on its
/// own entry, both alive. No consumer sees a bad frame; the last kill is
/// reclaimed, the last waiter attaches, and a clean stop leaves nothing.
#[test]
fn registrations_racing_reclaims_on_a_full_table_lose_no_entry() {
    const ROUNDS: usize = 20;
    let mut bus = Bus::new("regrace");
    let name = bus.name.clone();
    let mut producer = bus.producer(&["--size", "64x48", "--fps", "300", "--max-consumers", "2"]);
    let consumer = |bus: &mut Bus, who: &str| {
        bus.spawn(&[
            "consume", "--bus", &name, "--algo", "verify", "--wait", "60", "--json", "--name", who,
        ])
    };
    let mut steady = consumer(&mut bus, "steady");
    steady.expect_line("attached bus=", T);
    let mut victim = consumer(&mut bus, "r-0");
    victim.expect_line("attached bus=", T);
    let v = bus.wait_for("both consumers listed", T, |v| {
        entry_of(v, "steady").is_some() && entry_of(v, "r-0").is_some()
    });
    let steady_entry = entry_of(&v, "steady").expect("steady's entry");
    let mut seen = vec![steady_entry, entry_of(&v, "r-0").expect("r-0's entry")];
    // The table is full: r-1 retries until an entry is reclaimed.
    let mut waiter = (consumer(&mut bus, "r-1"), "r-1".to_owned());
    let mut killed = Vec::new();
    for round in 1..=ROUNDS + 1 {
        let victim_entry = *seen.last().expect("an entry");
        let newcomer = (round <= ROUNDS).then(|| {
            let who = format!("r-{}", round + 1);
            (consumer(&mut bus, &who), who)
        });
        victim.signal(Signal::KILL);
        killed.push(victim);
        // One of the two attaches.
        let mut racers = vec![waiter];
        racers.extend(newcomer);
        let deadline = Instant::now() + T;
        let first = loop {
            if let Some(i) = racers.iter_mut().position(|(p, _)| attached(p)) {
                break i;
            }
            assert!(Instant::now() < deadline, "round {round}: nobody attached");
            std::thread::sleep(Duration::from_millis(1));
        };
        let (winner, who) = racers.swap_remove(first);
        let loser = racers.pop();
        let v = bus.wait_for(&format!("{who} listed"), T, |v| entry_of(v, &who).is_some());
        let entry = entry_of(&v, &who).expect("listed");
        let line = winner
            .seen
            .iter()
            .find(|l| l.starts_with("attached bus="))
            .cloned()
            .unwrap_or_default();
        assert!(
            line.contains(&format!(" entry={} ", entry.0)),
            "{who} said {line:?} but inspect shows entry {entry:?}: {v:#}"
        );
        assert!(
            !seen.contains(&entry),
            "round {round}: {who} got (entry, generation) {entry:?} again: {v:#}"
        );
        if entry.0 == victim_entry.0 {
            assert!(
                entry.1 > victim_entry.1,
                "round {round}: entry {} reused without a new generation: {v:#}",
                entry.0
            );
        }
        // Exactly the steady consumer and the winner, on two entries.
        let listed = consumers(&v);
        assert_eq!(listed.len(), 2, "round {round}: {v:#}");
        assert_eq!(entry_of(&v, "steady"), Some(steady_entry), "{v:#}");
        assert_ne!(
            entry.0, steady_entry.0,
            "round {round}: shared entry: {v:#}"
        );
        assert!(
            listed.iter().all(|c| c["alive"] == true),
            "round {round}: a listed consumer is dead: {v:#}"
        );
        seen.push(entry);
        victim = winner;
        match loser {
            Some(mut l) => {
                assert!(
                    !attached(&mut l.0),
                    "round {round}: {} attached too: {v:#}",
                    l.1
                );
                waiter = l;
            }
            None => break,
        }
    }
    assert_eq!(
        seen.len(),
        ROUNDS + 3,
        "every registration got its own entry"
    );
    // The last winner stops cleanly: its entry is freed, nothing pinned.
    victim.signal(Signal::TERM);
    let summary = victim.last_json(T);
    assert_eq!(summary["bad_frames"], 0, "{summary}");
    let v = bus.wait_for("only the steady consumer left", T, |v| {
        consumers(v).len() == 1
    });
    assert_eq!(entry_of(&v, "steady"), Some(steady_entry), "{v:#}");
    let stray = v["slots"]
        .as_array()
        .expect("slots")
        .iter()
        .map(|s| u(&s["pins"]) & !(1 << 63) & !(1 << steady_entry.0))
        .fold(0, |a, b| a | b);
    assert_eq!(stray, 0, "pins of a dead consumer left: {v:#}");
    for mut k in killed {
        let err = k.stderr();
        assert!(!err.contains("bad frame"), "pid {}: {err}", k.pid);
    }
    steady.signal(Signal::TERM);
    let summary = steady.last_json(T);
    assert_eq!(summary["bad_frames"], 0, "{summary}");
    assert_eq!(
        summary["reattached"], 0,
        "the steady consumer was never evicted: {summary}"
    );
    assert!(u(&summary["frames"]) > 0, "{summary}");
    producer.signal(Signal::TERM);
    assert!(bus.wait(&producer, T).success(), "{}", producer.stderr());
    assert!(!bus.shm_path().exists(), "the bus object was left behind");
    assert!(
        !bus.trigger_dir().exists(),
        "the trigger directory (and FIFOs) left behind"
    );
}
