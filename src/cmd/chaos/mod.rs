//! `framebus chaos`: a fault-injection run. A fake producer at full rate and
//! K `verify` consumers, while consumers are SIGKILLed at random moments
//! (often while they hold a pin) and restarted, others are SIGSTOPped and
//! resumed, and the producer is SIGKILLed and restarted. A monitor reads the
//! bus every millisecond. At the end everything is stopped cleanly and the
//! machine checked for leftovers.
//!
//! `--namespaces` runs every process in a simulated container (its own pid
//! and mount namespaces, a private /tmp; only /dev/shm shared), where every
//! process is pid 1: so entries are identified by consumer name (unique per
//! start) and generation, never by pid. `--forks N` has consumers fork N
//! times while holding a frame (`consume --fork-check-on-usr1`).
//!
//! On Windows consumers and producers are killed with `TerminateProcess`
//! and stopped cleanly by closing their stdin (`--stop-on-stdin-eof`); there
//! are no stops, forks or namespaces there.
//!
//! This module holds the arguments and the run (the schedule of events);
//! `procs` starts and signals the processes, `stderr` classifies and counts
//! the consumers' stderr lines, `monitor` reads the bus and judges
//! reclaims, publish gaps and re-attachments (pure functions, unit-tested
//! with hand-built snapshots), and `report` holds the report, its verdict
//! and its printing.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use framebus_consumer::inspect;

use super::child::last_json;
use super::consume::ConsumeSummary;
use crate::parse::{parse_seconds, parse_size};

use monitor::{judge_reattach, monitor_loop, Monitor, PendingReclaim, ReattachCheck};
use procs::{
    exe, namespaces_unavailable, start_consumer, start_producer, wait_attached, Act, Consumer,
    ConsumerSpec,
};
use report::{print_report, ChaosReport};
use stderr::Counters;

mod monitor;
mod procs;
mod report;
mod stderr;

/// `framebus chaos`.
#[derive(Debug, Args)]
#[command(
    after_help = "Exit status 0 only if no frame was bad, every consumer re-attached after every\nproducer restart (within --reattach-timeout), every dead consumer's pin was\nreclaimed (by --reclaim-timeout after the last event), every fork check passed\n(--forks), and nothing was left behind. The two timeouts guard against hangs;\nraise them on a slow or loaded machine (wine, emulation).\n\n--namespaces runs each producer and consumer in a simulated container:\n`unshare --pid --fork --kill-child --mount --mount-proc` with a private /tmp, so\nevery process is pid 1 of its own namespace and only /dev/shm is shared. It\nneeds root and a working `unshare`.\n\nExamples:\n  framebus chaos --duration 60 --kills 200 --producer-restarts 5      # what CI runs\n  framebus chaos --duration 20 --kills 50 --producer-restarts 2 --namespaces --forks 5  # CI, root\n  framebus chaos --duration 600 --kills 2000 --producer-restarts 50  # a long soak"
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
    /// Run the producer and every consumer in its own pid and mount
    /// namespaces (a simulated container; needs root and `unshare`).
    #[arg(long)]
    pub namespaces: bool,
    /// Consumer forks over the run: a consumer keeps a frame, forks, its
    /// child must be refused the consumer and the frame must not change.
    #[arg(long, default_value_t = 0)]
    pub forks: u32,
    /// Deadline for re-attaching: after a producer restart, every running
    /// consumer must show a frame of the new producer within this many
    /// seconds (a guard against a hang, not a speed target: a check passes
    /// as soon as the frames are there).
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0, value_parser = parse_seconds)]
    pub reattach_timeout: f64,
    /// Deadline for reclaims: after the last event, the entries of killed
    /// consumers still held get up to this many seconds more to be
    /// reclaimed; one still held when the run stops fails it.
    #[arg(long, value_name = "SECONDS", default_value_t = 2.0, value_parser = parse_seconds)]
    pub reclaim_timeout: f64,
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

pub fn run(args: ChaosArgs) -> anyhow::Result<ExitCode> {
    if cfg!(not(unix)) && args.forks > 0 {
        bail!("--forks needs fork and SIGUSR1 (Linux)");
    }
    if args.namespaces {
        if let Some(why) = namespaces_unavailable() {
            bail!("--namespaces cannot run here: {why}");
        }
        let me = exe()?;
        if me.starts_with("/tmp") {
            bail!(
                "--namespaces cannot run {}: each simulated container mounts its own /tmp, which hides it; build or copy framebus elsewhere",
                me.display()
            );
        }
        if let Some(dir) = std::env::var_os("FRAMEBUS_RUNTIME_DIR")
            .filter(|d| std::path::Path::new(d).starts_with("/tmp"))
        {
            bail!(
                "--namespaces cannot use FRAMEBUS_RUNTIME_DIR={}: each simulated container mounts its own /tmp, so the producer's triggers would be out of the consumers' reach; unset it (the default is under /dev/shm)",
                std::path::Path::new(&dir).display()
            );
        }
        // A namespaced process whose wrapper is SIGKILLed is reparented to
        // chaos (not to init), which reaps it (`Proc::kill`).
        #[cfg(unix)]
        rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
            .context("cannot become a child subreaper (for the namespaced processes)")?;
    }
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
    let mut producer = start_producer(&bus, &size, max_consumers, args.namespaces)?;
    let counters = Arc::new(Counters::default());
    let spec = ConsumerSpec {
        bus: &bus,
        namespaced: args.namespaces,
        forks: args.forks > 0,
        counters: &counters,
    };
    // Consumer i's n-th start is named chaos-<i>-<n> (16 bytes at most).
    let mut starts = vec![0u32; args.consumers as usize];
    let mut consumers: Vec<Consumer> = (0..args.consumers as usize)
        .map(|i| start_consumer(&spec, format!("chaos-{i}-0")))
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
        namespaces: args.namespaces,
        reattach_timeout_s: args.reattach_timeout,
        reclaim_timeout_s: args.reclaim_timeout,
        ..ChaosReport::default()
    };
    let reattach_timeout = Duration::from_secs_f64(args.reattach_timeout);
    let mut killed_frames = 0u64;

    // The schedule: kills, restarts and forks spread evenly with jitter.
    const KILL: u8 = 0;
    const STOP: u8 = 1;
    const RESTART: u8 = 2;
    const FORK: u8 = 3;
    let total = Duration::from_secs_f64(args.duration);
    let mut events: Vec<(Duration, u8)> = Vec::new();
    for k in 0..args.kills {
        let base = total.mul_f64((f64::from(k) + 0.5) / f64::from(args.kills.max(1)));
        events.push((base, KILL));
        // Stops are SIGSTOP/SIGCONT: Linux only.
        if cfg!(unix) && k % 8 == 7 {
            events.push((base + Duration::from_millis(rng.below(100)), STOP));
        }
    }
    for r in 0..args.producer_restarts {
        events.push((
            total.mul_f64((f64::from(r) + 0.5) / f64::from(args.producer_restarts.max(1))),
            RESTART,
        ));
    }
    for f in 0..args.forks {
        let base = total.mul_f64((f64::from(f) + 0.3) / f64::from(args.forks.max(1)));
        events.push((base + Duration::from_millis(rng.below(50)), FORK));
    }
    // A min-heap, so an event that cannot run yet can be put back later.
    let mut events: std::collections::BinaryHeap<std::cmp::Reverse<(Duration, u8)>> =
        events.into_iter().map(std::cmp::Reverse).collect();
    let mut stopped: Vec<(usize, Instant)> = Vec::new();
    let mut reattach_checks: Vec<ReattachCheck> = Vec::new();
    let chaos_start = Instant::now();
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    while let Some(std::cmp::Reverse((at, kind))) = events.pop() {
        // Resume consumers whose stop is over, and judge re-attachments.
        loop {
            let now = chaos_start.elapsed();
            if now >= at {
                break;
            }
            std::thread::sleep((at - now).min(Duration::from_millis(5)));
            resume_due(&mut stopped, &mut consumers)?;
            judge_reattach(
                &mut reattach_checks,
                &snapshot,
                &consumers,
                &mut report,
                false,
            );
        }
        if tty {
            eprint!(
                "\rchaos: {:.0}/{:.0} s, {} kills, {} restarts, {} forks, {} bad ",
                chaos_start.elapsed().as_secs_f64(),
                args.duration,
                report.consumer_kills,
                report.producer_restarts,
                counters.forks.load(Ordering::Relaxed),
                counters.bad.load(Ordering::Relaxed)
            );
        }
        let running: Vec<usize> = (0..consumers.len())
            .filter(|i| !stopped.iter().any(|(s, _)| s == i))
            .collect();
        match kind {
            KILL => {
                // Kill a random running (not stopped) consumer and replace it.
                let Some(&i) = running.get(rng.below(running.len() as u64) as usize) else {
                    continue;
                };
                let name = consumers[i].name.clone();
                // Every other kill waits (up to 100 ms) until its victim is
                // seen holding a pin, read straight from the bus.
                let want_pinned = report.consumer_kills % 2 == 0;
                let deadline = Instant::now() + Duration::from_millis(100);
                let (snap, entry) = loop {
                    let snap = inspect(&bus).ok();
                    let entry = snap
                        .as_ref()
                        .and_then(|s| s.consumers.iter().find(|c| c.name == name).cloned());
                    let pinned = entry.as_ref().is_some_and(|e| !e.pinned_slots.is_empty());
                    if !want_pinned || pinned || Instant::now() >= deadline {
                        break (snap, entry);
                    }
                };
                let at = Instant::now();
                consumers[i].proc.kill()?;
                report.consumer_kills += 1;
                if let (Some(e), Some(s)) = (entry, snap) {
                    if !e.pinned_slots.is_empty() {
                        report.kills_while_pinned += 1;
                    }
                    if let Ok(mut m) = state.lock() {
                        m.pending.push(PendingReclaim {
                            index: e.index,
                            generation: e.generation,
                            name: name.clone(),
                            instance: s.instance_id,
                            at,
                        });
                    }
                }
                killed_frames += state
                    .lock()
                    .ok()
                    .and_then(|m| m.frames_by_name.get(&name).copied())
                    .unwrap_or(0);
                starts[i] += 1;
                consumers[i] = start_consumer(&spec, format!("chaos-{i}-{}", starts[i]))?;
            }
            STOP => {
                // In namespace mode only a consumer whose framebus process
                // has started can be stopped (the wrapper must not be).
                let ready: Vec<usize> = running
                    .iter()
                    .copied()
                    .filter(|&i| consumers[i].proc.real_pid().is_some())
                    .collect();
                if running.len() > 1 && !ready.is_empty() {
                    let i = ready[rng.below(ready.len() as u64) as usize];
                    consumers[i].proc.signal(Act::Stop)?;
                    stopped.push((
                        i,
                        Instant::now() + Duration::from_millis(100 + rng.below(300)),
                    ));
                    report.stops += 1;
                }
            }
            FORK => {
                // Only a consumer that has attached has its SIGUSR1 handler.
                let ready: Vec<usize> = running
                    .iter()
                    .copied()
                    .filter(|&i| consumers[i].poll_attached())
                    .collect();
                let Some(&i) = ready.get(rng.below(ready.len() as u64) as usize) else {
                    // Every consumer is (re-)attaching, after a kill or a
                    // producer restart: ask again shortly, until the run ends.
                    if at < total {
                        events.push(std::cmp::Reverse((at + Duration::from_millis(20), FORK)));
                    } else {
                        eprintln!("chaos: no attached running consumer to fork; fork skipped");
                    }
                    continue;
                };
                consumers[i].proc.signal(Act::ForkCheck)?;
                consumers[i].forks_asked += 1;
                report.forks_requested += 1;
            }
            _ => {
                restarting.store(true, Ordering::Relaxed);
                let old_instance = snapshot().map(|s| s.instance_id);
                producer.kill()?;
                producer = start_producer(&bus, &size, max_consumers, args.namespaces)?;
                restarting.store(false, Ordering::Relaxed);
                report.producer_restarts += 1;
                // Every consumer not stopped must show frames on the new
                // instance within --reattach-timeout.
                let names: Vec<String> =
                    running.iter().map(|&i| consumers[i].name.clone()).collect();
                let instance = loop {
                    match snapshot() {
                        Some(s) if Some(s.instance_id) != old_instance && s.producer_alive => {
                            break s.instance_id
                        }
                        _ if chaos_start.elapsed() > total + Duration::from_secs(30) => {
                            bail!(
                                "the monitor did not see the restarted producer running on the bus within {:.0} s of the run's start (its duration + 30 s)",
                                (total + Duration::from_secs(30)).as_secs_f64()
                            )
                        }
                        _ => std::thread::sleep(Duration::from_millis(1)),
                    }
                };
                reattach_checks.push(ReattachCheck {
                    deadline: Instant::now() + reattach_timeout,
                    instance,
                    names,
                });
            }
        }
    }
    // Let the last stops and fork checks finish (up to 10 s), and the
    // re-attachment checks (each up to its deadline).
    let forks_outstanding = |cs: &[Consumer]| {
        cs.iter()
            .any(|c| c.forks_done.load(Ordering::Relaxed) < c.forks_asked)
    };
    let settle = Instant::now() + Duration::from_secs(10);
    let reattach_end = reattach_checks
        .iter()
        .map(|c| c.deadline)
        .max()
        .unwrap_or(settle);
    loop {
        let now = Instant::now();
        let others = (!stopped.is_empty() || forks_outstanding(&consumers)) && now < settle;
        let reattaching = !reattach_checks.is_empty() && now < reattach_end;
        if !others && !reattaching {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
        resume_due(&mut stopped, &mut consumers)?;
        judge_reattach(
            &mut reattach_checks,
            &snapshot,
            &consumers,
            &mut report,
            false,
        );
    }
    judge_reattach(
        &mut reattach_checks,
        &snapshot,
        &consumers,
        &mut report,
        true,
    );
    // Give pending reclaims their time, then stop everything cleanly.
    let settle = Instant::now() + Duration::from_secs_f64(args.reclaim_timeout);
    while Instant::now() < settle && state.lock().map(|m| !m.pending.is_empty()).unwrap_or(false) {
        std::thread::sleep(Duration::from_millis(5));
    }
    if tty {
        eprintln!();
    }
    #[cfg(unix)]
    let trigger_dir = snapshot().map(|s| s.trigger_dir);
    for c in &mut consumers {
        c.proc.signal(Act::Cont)?;
    }
    // A consumer restarted a moment ago may not have installed its signal
    // handlers yet; a TERM then would kill it without its summary. Its
    // `attached` line says it has (they are installed before attaching).
    for c in &mut consumers {
        let name = c.name.clone();
        wait_attached(c, Duration::from_secs(30)).with_context(|| format!("consumer {name}"))?;
    }
    for c in &mut consumers {
        c.proc.signal(Act::Term)?;
    }
    for c in &mut consumers {
        let s: ConsumeSummary = last_json(&c.out, Duration::from_secs(30))?;
        c.proc.child.wait(Duration::from_secs(10))?;
        report.frames_verified += s.frames;
    }
    report.frames_verified += killed_frames;
    stop_monitor.store(true, Ordering::Relaxed);
    let _ = monitor.join();
    producer.signal(Act::Term)?;
    producer.child.wait(Duration::from_secs(10))?;
    if let Ok(m) = state.lock() {
        m.finish(&mut report, Instant::now());
    }
    if report.unreclaimed > 0 {
        eprintln!(
            "chaos: {} killed consumer entries still held when the run stopped, past the reclaim deadline (--reclaim-timeout {} s after the last event, then the clean stop)",
            report.unreclaimed, args.reclaim_timeout
        );
    }
    report.bad_frames = counters.bad.load(Ordering::Relaxed);
    report.forks = counters.forks.load(Ordering::Relaxed);
    report.fork_failures = counters.fork_failures.load(Ordering::Relaxed);
    report.seconds = started.elapsed().as_secs_f64();
    #[cfg(unix)]
    for left in [
        format!("/dev/shm{}", bus.shm_name()),
        format!("/dev/shm{}", bus.lock_name()),
    ] {
        if std::path::Path::new(&left).exists() {
            report.leftovers.push(left);
        }
    }
    // Windows: objects go with their last handle; a bus that still opens,
    // or a bus in `list`, is left behind.
    #[cfg(windows)]
    {
        if inspect(&bus).is_ok() {
            report.leftovers.push(format!("bus object of {bus}"));
        }
        if framebus_producer::buses_on_machine().contains(&bus) {
            report
                .leftovers
                .push(format!("the marker of {bus} (framebus list)"));
        }
    }
    #[cfg(unix)]
    if let Some(dir) = trigger_dir {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            report.leftovers.push(e.path().display().to_string());
        }
    }
    let failed = report.failed(args.forks > 0);
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

fn resume_due(
    stopped: &mut Vec<(usize, Instant)>,
    consumers: &mut [Consumer],
) -> anyhow::Result<()> {
    let now = Instant::now();
    let mut i = 0;
    while i < stopped.len() {
        if stopped[i].1 <= now {
            consumers[stopped[i].0].proc.signal(Act::Cont)?;
            stopped.swap_remove(i);
        } else {
            i += 1;
        }
    }
    Ok(())
}
