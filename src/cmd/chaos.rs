//! `framebus chaos`: a fault-injection run. A fake producer at full rate and
//! K `verify` consumers, while consumers are SIGKILLed at random moments
//! (often while they hold a pin) and restarted, others are SIGSTOPped and
//! resumed, and the producer is SIGKILLed and restarted. A monitor reads the
//! bus every millisecond. At the end everything is stopped cleanly and the
//! machine checked for leftovers.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use framebus_consumer::{inspect, BusSnapshot};
use rustix::process::Signal;
use serde::Serialize;
use shm_layout::BusName;

use super::child::{last_json, Reaper};
use super::consume::ConsumeSummary;
use crate::cli::{parse_seconds, parse_size};

/// `framebus chaos`.
#[derive(Debug, Args)]
#[command(
    after_help = "Exit status 0 only if no frame was bad, every consumer re-attached after every\nproducer restart, every dead consumer's pin was reclaimed, and nothing was left behind.\n\nExamples:\n  framebus chaos --duration 60 --kills 200 --producer-restarts 5      # what CI runs\n  framebus chaos --duration 600 --kills 2000 --producer-restarts 50  # a long soak"
)]
pub struct ChaosArgs {
    /// Bus name (default: chaos-<pid>).
    #[arg(long)]
    pub bus: Option<String>,
    /// Frame size.
    #[arg(long, default_value = "320x240", value_parser = parse_size)]
    pub size: (u32, u32),
    /// Verify consumers kept running.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=30))]
    pub consumers: u32,
    /// Consumer SIGKILLs over the run.
    #[arg(long, default_value_t = 200)]
    pub kills: u32,
    /// Producer SIGKILL-and-restarts over the run.
    #[arg(long, default_value_t = 5)]
    pub producer_restarts: u32,
    /// Seconds of chaos.
    #[arg(long, default_value_t = 60.0, value_parser = parse_seconds)]
    pub duration: f64,
    /// Random seed (default: from the clock); the same seed replays the same schedule.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What `chaos` reports.
#[derive(Debug, Default, Serialize)]
pub struct ChaosReport {
    seed: u64,
    seconds: f64,
    frames_published: u64,
    frames_verified: u64,
    bad_frames: u64,
    consumer_kills: u64,
    kills_while_pinned: u64,
    stops: u64,
    producer_restarts: u64,
    reclaims_timed: u64,
    worst_reclaim_ms: f64,
    unreclaimed: u64,
    worst_publish_gap_ms: f64,
    reattach_failures: u64,
    leftovers: Vec<String>,
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(1);
        shm_layout::pattern::splitmix64(self.0)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A running verify consumer.
struct Consumer {
    child: Reaper,
    out: mpsc::Receiver<String>,
}

/// A kill whose reclaim the monitor times.
struct PendingReclaim {
    pid: u32,
    bit: u64,
    instance: u64,
    at: Instant,
}

#[derive(Default)]
struct Monitor {
    latest: Option<BusSnapshot>,
    last_publish: Option<(u64, Instant)>,
    worst_gap: Duration,
    pending: Vec<PendingReclaim>,
    worst_reclaim: Duration,
    reclaims: u64,
    /// Last frame count seen per consumer pid (for consumers that die).
    frames_by_pid: HashMap<u32, u64>,
    /// Frames published, per producer instance.
    published: HashMap<u64, u64>,
}

fn exe() -> anyhow::Result<std::path::PathBuf> {
    std::env::current_exe().context("cannot find the framebus binary")
}

fn quiet(cmd: &mut Command) -> &mut Command {
    cmd.env("RUST_LOG", "warn")
}

fn start_producer(bus: &BusName, size: &str, max_consumers: u32) -> anyhow::Result<Reaper> {
    let mut cmd = Command::new(exe()?);
    quiet(&mut cmd)
        .args([
            "produce",
            "--bus",
            bus.as_str(),
            "--size",
            size,
            "--fps",
            "0",
        ])
        .args(["--max-consumers", &max_consumers.to_string()])
        .stdout(Stdio::piped());
    let mut child = Reaper(Some(cmd.spawn().context("cannot start the producer")?));
    let stdout = child
        .0
        .as_mut()
        .and_then(|c| c.stdout.take())
        .context("producer stdout")?;
    let mut first = String::new();
    // The ready line comes within milliseconds; a bounded read on a thread.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let _ = r.read_line(&mut first);
        let _ = tx.send(first);
        // Keep draining so the producer never blocks on a full stdout.
        let mut sink = String::new();
        while r.read_line(&mut sink).is_ok_and(|n| n > 0) {
            sink.clear();
        }
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(l) if l.starts_with("ready ") => Ok(child),
        _ => bail!("the producer did not become ready within 20 s"),
    }
}

fn start_consumer(bus: &BusName, i: usize, bad: &Arc<AtomicU64>) -> anyhow::Result<Consumer> {
    let mut cmd = Command::new(exe()?);
    quiet(&mut cmd)
        .args([
            "consume",
            "--bus",
            bus.as_str(),
            "--algo",
            "verify",
            "--json",
            "--wait",
            "30",
        ])
        .args(["--name", &format!("chaos-{i}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = Reaper(Some(cmd.spawn().context("cannot start a consumer")?));
    let out = super::child::lines(
        child
            .0
            .as_mut()
            .and_then(|c| c.stdout.take())
            .context("consumer stdout")?,
    );
    let stderr = child
        .0
        .as_mut()
        .and_then(|c| c.stderr.take())
        .context("consumer stderr")?;
    // Count "bad frame" warnings as they are written, so frames verified by
    // consumers that are killed later still count.
    let bad = Arc::clone(bad);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("bad frame") {
                bad.fetch_add(1, Ordering::Relaxed);
                eprintln!("{line}");
            }
        }
    });
    Ok(Consumer { child, out })
}

/// Waits for the consumer's first stdout line, `attached bus=...`.
fn wait_attached(c: &Consumer, timeout: Duration) -> anyhow::Result<()> {
    match c.out.recv_timeout(timeout) {
        Ok(line) if line.starts_with("attached ") => Ok(()),
        Ok(line) => bail!("expected its `attached` line first, got {line:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            bail!("it exited before attaching (see its error above)")
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            bail!("it did not attach within {} s", timeout.as_secs())
        }
    }
}

fn monitor_loop(
    bus: BusName,
    state: Arc<Mutex<Monitor>>,
    restarting: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        let snap = inspect(&bus).ok();
        let now = Instant::now();
        let Ok(mut m) = state.lock() else { return };
        if let Some(s) = snap {
            let alive = s.producer_alive && s.producer_state == "running";
            match m.last_publish {
                Some((n, t))
                    if s.frames_published == n && alive && !restarting.load(Ordering::Relaxed) =>
                {
                    m.worst_gap = m.worst_gap.max(now - t);
                }
                Some((n, _)) if s.frames_published == n => {}
                _ => m.last_publish = Some((s.frames_published, now)),
            }
            if restarting.load(Ordering::Relaxed) {
                m.last_publish = None;
            }
            for c in &s.consumers {
                m.frames_by_pid.insert(c.pid, c.frames);
            }
            m.published.insert(s.instance_id, s.frames_published);
            let pending = std::mem::take(&mut m.pending);
            for p in pending {
                if p.instance != s.instance_id {
                    continue; // a producer restart intervened: not timed
                }
                let pinned = s.slots.iter().any(|x| x.pins & p.bit != 0 && x.pins != 0);
                let owned = s.consumers.iter().any(|c| c.pid == p.pid);
                if pinned || owned {
                    m.pending.push(p);
                } else {
                    m.reclaims += 1;
                    m.worst_reclaim = m.worst_reclaim.max(now - p.at);
                }
            }
            m.latest = Some(s);
        }
        drop(m);
        std::thread::sleep(Duration::from_millis(1));
    }
}

pub fn run(args: ChaosArgs) -> anyhow::Result<ExitCode> {
    let bus = super::bus_name(
        &args
            .bus
            .clone()
            .unwrap_or_else(|| format!("chaos-{}", std::process::id())),
    )?;
    let seed = args
        .seed
        .unwrap_or_else(|| super::monotonic_ns() ^ u64::from(std::process::id()));
    let mut rng = Rng(seed);
    let size = format!("{}x{}", args.size.0, args.size.1);
    // Room for consumers re-attaching while their old entries are reclaimed.
    let max_consumers = (args.consumers * 2 + 2).min(63);
    let started = Instant::now();
    let mut producer = start_producer(&bus, &size, max_consumers)?;
    let bad = Arc::new(AtomicU64::new(0));
    let mut consumers: Vec<Consumer> = (0..args.consumers as usize)
        .map(|i| start_consumer(&bus, i, &bad))
        .collect::<anyhow::Result<_>>()?;
    let state = Arc::new(Mutex::new(Monitor::default()));
    let restarting = Arc::new(AtomicBool::new(false));
    let stop_monitor = Arc::new(AtomicBool::new(false));
    let monitor = {
        let (b, s, r, st) = (
            bus.clone(),
            Arc::clone(&state),
            Arc::clone(&restarting),
            Arc::clone(&stop_monitor),
        );
        std::thread::spawn(move || monitor_loop(b, s, r, st))
    };
    let snapshot = || state.lock().ok().and_then(|m| m.latest.clone());
    let mut report = ChaosReport {
        seed,
        ..ChaosReport::default()
    };
    let mut killed_frames = 0u64;

    // The schedule: kills and restarts spread evenly with jitter.
    let total = Duration::from_secs_f64(args.duration);
    let mut events: Vec<(Duration, u8)> = Vec::new();
    for k in 0..args.kills {
        let base = total.mul_f64((f64::from(k) + 0.5) / f64::from(args.kills.max(1)));
        events.push((base, 0));
        if k % 8 == 7 {
            events.push((base + Duration::from_millis(rng.below(100)), 1)); // a stop
        }
    }
    for r in 0..args.producer_restarts {
        events.push((
            total.mul_f64((f64::from(r) + 0.5) / f64::from(args.producer_restarts.max(1))),
            2,
        ));
    }
    events.sort();
    let mut stopped: Vec<(usize, Instant)> = Vec::new();
    let mut reattach_checks: Vec<(Instant, u64, Vec<u32>)> = Vec::new();
    let chaos_start = Instant::now();
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    for (at, kind) in events {
        // Resume consumers whose stop is over, and judge re-attachments.
        loop {
            let now = chaos_start.elapsed();
            if now >= at {
                break;
            }
            std::thread::sleep((at - now).min(Duration::from_millis(5)));
            resume_due(&mut stopped, &consumers)?;
            judge_reattach(&mut reattach_checks, &snapshot, &mut report, false);
        }
        if tty {
            eprint!(
                "\rchaos: {:.0}/{:.0} s, {} kills, {} restarts, {} bad ",
                chaos_start.elapsed().as_secs_f64(),
                args.duration,
                report.consumer_kills,
                report.producer_restarts,
                bad.load(Ordering::Relaxed)
            );
        }
        match kind {
            0 => {
                // Kill a random running (not stopped) consumer and replace it.
                let running: Vec<usize> = (0..consumers.len())
                    .filter(|i| !stopped.iter().any(|(s, _)| s == i))
                    .collect();
                let Some(&i) = running.get(rng.below(running.len() as u64) as usize) else {
                    continue;
                };
                let pid = consumers[i].child.pid();
                // Every other kill waits (up to 100 ms) until its victim is
                // seen holding a pin, read straight from the bus.
                let want_pinned = report.consumer_kills % 2 == 0;
                let deadline = Instant::now() + Duration::from_millis(100);
                let (snap, entry) = loop {
                    let snap = inspect(&bus).ok();
                    let entry = snap
                        .as_ref()
                        .and_then(|s| s.consumers.iter().find(|c| c.pid == pid).cloned());
                    let pinned = entry.as_ref().is_some_and(|e| !e.pinned_slots.is_empty());
                    if !want_pinned || pinned || Instant::now() >= deadline {
                        break (snap, entry);
                    }
                };
                consumers[i].child.signal(Signal::KILL)?;
                let at = Instant::now();
                consumers[i].child.wait(Duration::from_secs(10))?;
                report.consumer_kills += 1;
                if let (Some(e), Some(s)) = (entry, snap) {
                    if !e.pinned_slots.is_empty() {
                        report.kills_while_pinned += 1;
                    }
                    if let Ok(mut m) = state.lock() {
                        m.pending.push(PendingReclaim {
                            pid,
                            bit: 1 << e.index,
                            instance: s.instance_id,
                            at,
                        });
                    }
                }
                killed_frames += state
                    .lock()
                    .ok()
                    .and_then(|m| m.frames_by_pid.get(&pid).copied())
                    .unwrap_or(0);
                consumers[i] = start_consumer(&bus, i, &bad)?;
            }
            1 => {
                let running: Vec<usize> = (0..consumers.len())
                    .filter(|i| !stopped.iter().any(|(s, _)| s == i))
                    .collect();
                if running.len() > 1 {
                    let i = running[rng.below(running.len() as u64) as usize];
                    consumers[i].child.signal(Signal::STOP)?;
                    stopped.push((
                        i,
                        Instant::now() + Duration::from_millis(100 + rng.below(300)),
                    ));
                    report.stops += 1;
                }
            }
            _ => {
                restarting.store(true, Ordering::Relaxed);
                producer.signal(Signal::KILL)?;
                producer.wait(Duration::from_secs(10))?;
                producer = start_producer(&bus, &size, max_consumers)?;
                restarting.store(false, Ordering::Relaxed);
                report.producer_restarts += 1;
                // Every consumer not stopped must show frames on the new
                // instance within 5 s.
                let pids: Vec<u32> = (0..consumers.len())
                    .filter(|i| !stopped.iter().any(|(s, _)| s == i))
                    .map(|i| consumers[i].child.pid())
                    .collect();
                let instance = loop {
                    match snapshot() {
                        Some(s) if s.producer_pid == producer.pid() => break s.instance_id,
                        _ if chaos_start.elapsed() > total + Duration::from_secs(30) => {
                            bail!("the monitor lost the bus")
                        }
                        _ => std::thread::sleep(Duration::from_millis(1)),
                    }
                };
                reattach_checks.push((Instant::now() + Duration::from_secs(5), instance, pids));
            }
        }
    }
    // Let the last stops and re-attachments finish.
    let settle = Instant::now() + Duration::from_secs(6);
    while Instant::now() < settle && (!stopped.is_empty() || !reattach_checks.is_empty()) {
        std::thread::sleep(Duration::from_millis(5));
        resume_due(&mut stopped, &consumers)?;
        judge_reattach(&mut reattach_checks, &snapshot, &mut report, false);
    }
    judge_reattach(&mut reattach_checks, &snapshot, &mut report, true);
    // Give pending reclaims their time, then stop everything cleanly.
    let settle = Instant::now() + Duration::from_secs(2);
    while Instant::now() < settle && state.lock().map(|m| !m.pending.is_empty()).unwrap_or(false) {
        std::thread::sleep(Duration::from_millis(5));
    }
    if tty {
        eprintln!();
    }
    let trigger_dir = snapshot().map(|s| s.trigger_dir);
    for c in &consumers {
        c.child.signal(Signal::CONT)?;
    }
    // A consumer restarted a moment ago may not have installed its signal
    // handlers yet; a TERM then would kill it without its summary. Its
    // `attached` line says it has (they are installed before attaching).
    for (i, c) in consumers.iter().enumerate() {
        wait_attached(c, Duration::from_secs(30)).with_context(|| format!("consumer chaos-{i}"))?;
    }
    for c in &consumers {
        c.child.signal(Signal::TERM)?;
    }
    for c in &mut consumers {
        let s: ConsumeSummary = last_json(&c.out, Duration::from_secs(30))?;
        c.child.wait(Duration::from_secs(10))?;
        report.frames_verified += s.frames;
    }
    report.frames_verified += killed_frames;
    stop_monitor.store(true, Ordering::Relaxed);
    let _ = monitor.join();
    producer.signal(Signal::TERM)?;
    producer.wait(Duration::from_secs(10))?;
    if let Ok(m) = state.lock() {
        report.frames_published = m.published.values().sum();
        report.worst_reclaim_ms = m.worst_reclaim.as_secs_f64() * 1e3;
        report.reclaims_timed = m.reclaims;
        report.unreclaimed = m.pending.len() as u64;
        report.worst_publish_gap_ms = m.worst_gap.as_secs_f64() * 1e3;
    }
    report.bad_frames = bad.load(Ordering::Relaxed);
    report.seconds = started.elapsed().as_secs_f64();
    for left in [
        format!("/dev/shm{}", bus.shm_name()),
        format!("/dev/shm{}", bus.lock_name()),
    ] {
        if std::path::Path::new(&left).exists() {
            report.leftovers.push(left);
        }
    }
    if let Some(dir) = trigger_dir {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            report.leftovers.push(e.path().display().to_string());
        }
    }
    let failed = report.bad_frames > 0
        || report.reattach_failures > 0
        || report.unreclaimed > 0
        || !report.leftovers.is_empty()
        || report.frames_verified == 0;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_report(&report);
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn resume_due(stopped: &mut Vec<(usize, Instant)>, consumers: &[Consumer]) -> anyhow::Result<()> {
    let now = Instant::now();
    let mut i = 0;
    while i < stopped.len() {
        if stopped[i].1 <= now {
            consumers[stopped[i].0].child.signal(Signal::CONT)?;
            stopped.swap_remove(i);
        } else {
            i += 1;
        }
    }
    Ok(())
}

/// A re-attachment check passes once every listed pid shows frames on the
/// new instance; it fails if its deadline passes first (or at the end).
fn judge_reattach(
    checks: &mut Vec<(Instant, u64, Vec<u32>)>,
    snapshot: &dyn Fn() -> Option<BusSnapshot>,
    report: &mut ChaosReport,
    final_call: bool,
) {
    let Some(s) = snapshot() else { return };
    checks.retain_mut(|(deadline, instance, pids)| {
        if s.instance_id != *instance {
            return false; // superseded by another restart
        }
        pids.retain(|p| !s.consumers.iter().any(|c| c.pid == *p && c.frames > 0));
        if pids.is_empty() {
            return false;
        }
        if final_call || Instant::now() >= *deadline {
            // Killed consumers are not expected back under the same pid.
            report.reattach_failures += pids
                .iter()
                .filter(|p| super::child::proc_figures(**p).is_some())
                .count() as u64;
            return false;
        }
        true
    });
}

fn print_report(r: &ChaosReport) {
    let rows = vec![
        vec!["seconds".to_owned(), format!("{:.1}", r.seconds)],
        vec!["frames published".into(), r.frames_published.to_string()],
        vec!["frames verified".into(), r.frames_verified.to_string()],
        vec!["bad frames".into(), r.bad_frames.to_string()],
        vec![
            "consumer kills (while pinned)".into(),
            format!("{} ({})", r.consumer_kills, r.kills_while_pinned),
        ],
        vec!["consumer stops".into(), r.stops.to_string()],
        vec!["producer restarts".into(), r.producer_restarts.to_string()],
        vec![
            "worst reclaim after kill".into(),
            format!(
                "{:.1} ms over {} timed",
                r.worst_reclaim_ms, r.reclaims_timed
            ),
        ],
        vec!["pins never reclaimed".into(), r.unreclaimed.to_string()],
        vec![
            "worst publish gap".into(),
            format!("{:.1} ms", r.worst_publish_gap_ms),
        ],
        vec!["re-attach failures".into(), r.reattach_failures.to_string()],
        vec![
            "leftovers".into(),
            if r.leftovers.is_empty() {
                "none".into()
            } else {
                r.leftovers.join(", ")
            },
        ],
        vec!["seed".into(), r.seed.to_string()],
    ];
    print!("{}", crate::report::table(&["chaos", "result"], &rows));
}
