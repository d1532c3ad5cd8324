//! The monitor's judging, fed hand-built snapshots (no processes).

use std::time::{Duration, Instant};

use framebus_consumer::{BusSnapshot, ConsumerSnapshot, SlotSnapshot};

use super::*;

const A: u64 = 0xa;
const B: u64 = 0xb;

/// A consumer entry `index` of generation `generation` named `name` with
/// `frames` frames read.
fn entry(index: u32, generation: u32, name: &str, frames: u64) -> ConsumerSnapshot {
    ConsumerSnapshot {
        index,
        state: "connected".into(),
        pid: 1,
        generation,
        name: name.into(),
        frames,
        coalesced: 0,
        last_latency_ns: 0,
        latency_p50_ns: 0,
        latency_p99_ns: 0,
        last_seq: 0,
        skipped: 0,
        fps: 0.0,
        window_ms: 0,
        window_age_ms: None,
        max_fps: 0.0,
        alive: true,
        pinned_slots: Vec::new(),
    }
}

/// A snapshot of producer instance `instance` (alive, running) that has
/// published `published` frames, with slots pinned by `pins` (one word per
/// slot) and the consumer entries `consumers`.
fn snap(
    instance: u64,
    published: u64,
    pins: &[u64],
    consumers: Vec<ConsumerSnapshot>,
) -> BusSnapshot {
    BusSnapshot {
        bus: "chaos-test".into(),
        instance_id: instance,
        producer_pid: 1,
        producer_alive: true,
        producer_state: "running".into(),
        width: 16,
        height: 8,
        stride: 16,
        format: shm_layout::PixelFormat::Gray8,
        significant_bits: 0,
        slot_count: pins.len() as u32,
        max_consumers: 6,
        pins_per_consumer: 1,
        nominal_fps: 0.0,
        total_size: 0,
        trigger_dir: String::new(),
        frames_published: published,
        latest: None,
        heartbeat_age_ms: 0.0,
        last_publish_us: 0.0,
        publish_fps: 0.0,
        slots: pins
            .iter()
            .enumerate()
            .map(|(i, &p)| SlotSnapshot {
                index: i as u32,
                seq: 0,
                pins: p,
                writing: false,
                latest: false,
            })
            .collect(),
        consumers,
    }
}

fn pending(index: u32, generation: u32, instance: u64, at: Instant) -> PendingReclaim {
    PendingReclaim {
        index,
        generation,
        name: format!("chaos-{index}-0"),
        instance,
        at,
    }
}

#[test]
fn stderr_lines_are_classified_by_their_words() {
    use StderrLine::*;
    let cases = [
        (
            "2026-11-29T10:00:00Z WARN framebus: bad frame seq=12 slot=3",
            BadFrame,
        ),
        ("bad frame", BadFrame),
        (
            "fork check passed: child refused, frame unchanged",
            ForkPassed,
        ),
        ("fork check failed: the frame changed", ForkFailed),
        // The verdicts count only at the start of a line.
        ("note: fork check passed", Other),
        (" fork check failed", Other),
        ("attached bus=chaos-1", Other),
        ("", Other),
    ];
    for (line, want) in cases {
        assert_eq!(StderrLine::classify(line), want, "{line:?}");
    }
}

#[test]
fn counters_count_bad_frames_and_fork_verdicts() {
    let c = Counters::default();
    assert!(!c.count(StderrLine::BadFrame));
    assert!(!c.count(StderrLine::BadFrame));
    assert!(!c.count(StderrLine::Other));
    assert!(c.count(StderrLine::ForkPassed));
    assert!(c.count(StderrLine::ForkFailed));
    assert_eq!(c.bad.load(Ordering::Relaxed), 2);
    assert_eq!(c.forks.load(Ordering::Relaxed), 2);
    assert_eq!(c.fork_failures.load(Ordering::Relaxed), 1);
}

#[test]
fn a_reclaim_is_pending_while_the_entry_is_in_the_table() {
    let p = pending(2, 7, A, Instant::now());
    // Owned by the victim's (index, generation), no pin: pending.
    let s = snap(A, 10, &[0, 0, 0], vec![entry(2, 7, "chaos-2-0", 5)]);
    assert_eq!(p.state_in(&s), ReclaimState::Pending);
    // Another index of the same generation, or the same index of another
    // generation, is not the victim's entry.
    let s = snap(A, 10, &[0, 0, 0], vec![entry(3, 7, "x", 5)]);
    assert_eq!(p.state_in(&s), ReclaimState::Reclaimed);
    let s = snap(A, 10, &[0, 0, 0], vec![entry(2, 8, "chaos-2-1", 5)]);
    assert_eq!(p.state_in(&s), ReclaimState::Reclaimed);
}

#[test]
fn a_reclaim_is_pending_while_the_victims_bit_is_on_a_slot() {
    let p = pending(2, 7, A, Instant::now());
    // Entry gone, bit 2 still on slot 1 and nobody owns index 2.
    let s = snap(A, 10, &[0, 1 << 2, 0], vec![entry(0, 1, "other", 5)]);
    assert_eq!(p.state_in(&s), ReclaimState::Pending);
    // The bit of another entry (1 << 1, 1 << 3, the writer bit) is not
    // the victim's.
    let s = snap(A, 10, &[1 << 1, 1 << 3, 1 << 63], vec![]);
    assert_eq!(p.state_in(&s), ReclaimState::Reclaimed);
    // Index 2 has a new owner: bit 2 is its pin, the old entry was freed.
    let s = snap(A, 10, &[0, 1 << 2, 0], vec![entry(2, 8, "chaos-2-1", 0)]);
    assert_eq!(p.state_in(&s), ReclaimState::Reclaimed);
    // ... but not while the victim still owns it too.
    let s = snap(
        A,
        10,
        &[0, 1 << 2, 0],
        vec![entry(2, 7, "chaos-2-0", 0), entry(2, 8, "chaos-2-1", 0)],
    );
    assert_eq!(p.state_in(&s), ReclaimState::Pending);
    // A high index's bit (62) is tested as such.
    let p = pending(62, 1, A, Instant::now());
    let s = snap(A, 10, &[1 << 62], vec![]);
    assert_eq!(p.state_in(&s), ReclaimState::Pending);
}

#[test]
fn a_reclaim_across_a_producer_restart_is_not_timed() {
    let p = pending(2, 7, A, Instant::now());
    // Even with the victim's entry still in the new instance's table.
    let s = snap(B, 10, &[1 << 2], vec![entry(2, 7, "chaos-2-0", 5)]);
    assert_eq!(p.state_in(&s), ReclaimState::OtherInstance);
}

#[test]
fn observe_times_reclaims_and_keeps_the_pending_ones() {
    let t0 = Instant::now();
    let mut m = Monitor::default();
    m.pending.push(pending(1, 3, A, t0));
    m.pending
        .push(pending(2, 4, A, t0 + Duration::from_millis(10)));
    m.pending.push(pending(3, 5, B, t0));
    // Entry 1 reclaimed, entry 2 still pinned, entry 3 of another instance.
    let s = snap(A, 10, &[1 << 2], vec![entry(0, 1, "chaos-0-0", 4)]);
    m.observe(s, t0 + Duration::from_millis(30), false);
    assert_eq!(m.reclaims, 1);
    assert_eq!(m.worst_reclaim, Duration::from_millis(30));
    assert_eq!(
        m.pending.iter().map(|p| p.index).collect::<Vec<_>>(),
        [2],
        "the reclaimed and the untimed ones leave the list"
    );
    // Entry 2 reclaimed 15 ms after its kill: the worst stays 30 ms.
    m.observe(
        snap(A, 11, &[0], vec![]),
        t0 + Duration::from_millis(25),
        false,
    );
    assert_eq!(m.reclaims, 2);
    assert_eq!(m.worst_reclaim, Duration::from_millis(30));
    assert!(m.pending.is_empty());
    assert_eq!(m.latest.as_ref().map(|s| s.frames_published), Some(11));
}

#[test]
fn observe_measures_the_worst_gap_between_publishes() {
    let t0 = Instant::now();
    let ms = |n| t0 + Duration::from_millis(n);
    let mut m = Monitor::default();
    m.observe(snap(A, 5, &[0], vec![]), ms(0), false);
    assert_eq!(m.worst_gap, Duration::ZERO);
    m.observe(snap(A, 5, &[0], vec![]), ms(40), false);
    assert_eq!(m.worst_gap, Duration::from_millis(40));
    // A new frame: measured from its sighting on.
    m.observe(snap(A, 6, &[0], vec![]), ms(50), false);
    m.observe(snap(A, 6, &[0], vec![]), ms(60), false);
    assert_eq!(m.worst_gap, Duration::from_millis(40));
    m.observe(snap(A, 6, &[0], vec![]), ms(100), false);
    assert_eq!(m.worst_gap, Duration::from_millis(50));
    // A producer that is not running (or not alive) has no gap.
    let mut stopping = snap(A, 6, &[0], vec![]);
    stopping.producer_state = "stopping".into();
    m.observe(stopping, ms(200), false);
    let mut dead = snap(A, 6, &[0], vec![]);
    dead.producer_alive = false;
    m.observe(dead, ms(300), false);
    assert_eq!(m.worst_gap, Duration::from_millis(50));
    // Nor across a restart chaos is making: the clock starts again after.
    m.observe(snap(A, 6, &[0], vec![]), ms(400), true);
    assert_eq!(m.worst_gap, Duration::from_millis(50));
    assert_eq!(m.last_publish, None);
    m.observe(snap(B, 0, &[0], vec![]), ms(500), false);
    m.observe(snap(B, 0, &[0], vec![]), ms(520), false);
    assert_eq!(m.worst_gap, Duration::from_millis(50));
    m.observe(snap(B, 0, &[0], vec![]), ms(580), false);
    assert_eq!(m.worst_gap, Duration::from_millis(80));
}

#[test]
fn finish_sums_the_instances_and_names_the_unreclaimed() {
    let t0 = Instant::now();
    let mut m = Monitor::default();
    m.observe(
        snap(A, 100, &[0], vec![entry(0, 1, "chaos-0-0", 40)]),
        t0,
        false,
    );
    m.observe(snap(A, 120, &[0], vec![]), t0, false);
    m.observe(
        snap(B, 30, &[0], vec![entry(1, 2, "chaos-1-0", 9)]),
        t0,
        false,
    );
    assert_eq!(m.frames_by_name.get("chaos-0-0"), Some(&40));
    assert_eq!(m.frames_by_name.get("chaos-1-0"), Some(&9));
    m.pending.push(PendingReclaim {
        index: 3,
        generation: 7,
        name: "chaos-2-4".into(),
        instance: B,
        at: t0,
    });
    let mut r = ChaosReport::default();
    m.finish(&mut r, t0 + Duration::from_millis(2000));
    assert_eq!(r.frames_published, 150, "the last count of each instance");
    assert_eq!(r.unreclaimed, 1);
    assert_eq!(
        r.unreclaimed_entries,
        ["chaos-2-4 (entry 3 generation 7, killed 2.0 s before the end)"]
    );
    assert_eq!(r.reclaims_timed, 0);
}

fn check(instance: u64, deadline: Instant, names: &[&str]) -> ReattachCheck {
    ReattachCheck {
        deadline,
        instance,
        names: names.iter().map(|n| n.to_string()).collect(),
    }
}

#[test]
fn a_reattach_check_waits_for_frames_on_the_new_instance() {
    let now = Instant::now();
    let later = now + Duration::from_secs(5);
    let all = |_: &str| true;
    let mut checks = vec![check(A, later, &["a", "b", "c"])];
    // a has frames, b is attached without frames yet, c not there.
    let s = snap(A, 10, &[0], vec![entry(0, 1, "a", 3), entry(1, 1, "b", 0)]);
    assert!(judge_reattach_in(&mut checks, &s, &all, now, false).is_empty());
    assert_eq!(checks.len(), 1);
    assert_eq!(checks[0].names, ["b", "c"]);
    // Both show frames: the check passes and is settled.
    let s = snap(A, 10, &[0], vec![entry(1, 1, "b", 1), entry(2, 1, "c", 2)]);
    assert!(judge_reattach_in(&mut checks, &s, &all, now, false).is_empty());
    assert!(checks.is_empty());
}

#[test]
fn a_reattach_check_fails_at_its_deadline_for_running_consumers_only() {
    let now = Instant::now();
    let s = snap(A, 10, &[0], vec![entry(0, 1, "a", 3)]);
    let b_running = |n: &str| n == "b";
    // At the deadline b (still running) failed; c was killed: not expected.
    let mut checks = vec![check(A, now, &["a", "b", "c"])];
    assert_eq!(
        judge_reattach_in(&mut checks, &s, &b_running, now, false),
        [("b".to_owned(), A)]
    );
    assert!(checks.is_empty());
    // Before the deadline nothing fails, unless it is the final call.
    let mut checks = vec![check(A, now + Duration::from_secs(5), &["b"])];
    assert!(judge_reattach_in(&mut checks, &s, &b_running, now, false).is_empty());
    assert_eq!(checks.len(), 1);
    assert_eq!(
        judge_reattach_in(&mut checks, &s, &b_running, now, true),
        [("b".to_owned(), A)]
    );
    assert!(checks.is_empty());
}

#[test]
fn a_reattach_check_is_dropped_when_another_restart_supersedes_it() {
    let now = Instant::now();
    let mut checks = vec![check(A, now, &["b"]), check(B, now, &["b"])];
    // The bus is now instance B: A's check is dropped without a verdict,
    // B's fails (b shows no frames on B).
    let s = snap(B, 0, &[0], vec![entry(0, 1, "b", 0)]);
    assert_eq!(
        judge_reattach_in(&mut checks, &s, &|_| true, now, false),
        [("b".to_owned(), B)]
    );
    assert!(checks.is_empty());
}
