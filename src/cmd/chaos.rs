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

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use framebus_consumer::{inspect, BusSnapshot};
use rustix::process::{Pid, Signal, WaitOptions};
use serde::Serialize;
use shm_layout::BusName;

use super::child::{last_json, Reaper};
use super::consume::ConsumeSummary;
use crate::cli::{parse_seconds, parse_size};

/// `framebus chaos`.
#[derive(Debug, Args)]
#[command(
    after_help = "Exit status 0 only if no frame was bad, every consumer re-attached after every\nproducer restart, every dead consumer's pin was reclaimed, every fork check passed\n(--forks), and nothing was left behind.\n\n--namespaces runs each producer and consumer in a simulated container:\n`unshare --pid --fork --kill-child --mount --mount-proc` with a private /tmp, so\nevery process is pid 1 of its own namespace and only /dev/shm is shared. It\nneeds root and a working `unshare`.\n\nExamples:\n  framebus chaos --duration 60 --kills 200 --producer-restarts 5      # what CI runs\n  framebus chaos --duration 20 --kills 50 --producer-restarts 2 --namespaces --forks 5  # CI, root\n  framebus chaos --duration 600 --kills 2000 --producer-restarts 50  # a long soak"
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
    /// The kills whose entries were never reclaimed: name, entry, generation.
    unreclaimed_entries: Vec<String>,
    namespaces: bool,
    forks_requested: u64,
    forks: u64,
    fork_failures: u64,
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

/// A started producer or consumer: the process chaos spawned (in
/// namespace mode the `unshare` wrapper) and the framebus process itself
/// (in namespace mode the wrapper's first child, pid 1 of its namespace).
struct Proc {
    child: Reaper,
    namespaced: bool,
    /// Host pid of the framebus process, once known.
    real: Option<u32>,
}

impl Proc {
    /// The framebus process's host pid; in namespace mode `None` until
    /// the wrapper has started it.
    fn real_pid(&mut self) -> Option<u32> {
        if !self.namespaced {
            return Some(self.child.pid());
        }
        if self.real.is_none() {
            let w = self.child.pid();
            self.real = std::fs::read_to_string(format!("/proc/{w}/task/{w}/children"))
                .ok()
                .and_then(|c| c.split_whitespace().next().and_then(|p| p.parse().ok()));
        }
        self.real
    }

    /// Sends `sig` to the framebus process (waiting up to 10 s for the
    /// wrapper to start it). SIGKILL goes to the wrapper instead, which
    /// takes its child with it (`--kill-child`), as a container runtime's
    /// kill would.
    fn signal(&mut self, sig: Signal) -> anyhow::Result<()> {
        if !self.namespaced || sig == Signal::KILL {
            return self.child.signal(sig);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let pid = loop {
            if let Some(p) = self.real_pid() {
                break p;
            }
            if Instant::now() >= deadline {
                bail!("unshare (pid {}) started no child", self.child.pid());
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        let pid = Pid::from_raw(pid as i32).context("pid 0")?;
        rustix::process::kill_process(pid, sig)
            .with_context(|| format!("cannot signal process {pid:?}"))
    }

    /// SIGKILLs it and waits until the framebus process is gone too (in
    /// namespace mode it was reparented to chaos, the subreaper: reaped
    /// here).
    fn kill(&mut self) -> anyhow::Result<()> {
        let real = self.real_pid();
        self.signal(Signal::KILL)?;
        self.child.wait(Duration::from_secs(10))?;
        let Some(real) = real.filter(|_| self.namespaced) else {
            return Ok(());
        };
        let pid = Pid::from_raw(real as i32).context("pid 0")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match rustix::process::waitpid(Some(pid), WaitOptions::NOHANG) {
                Ok(Some(_)) => return Ok(()),
                // Not (yet) our child: gone if /proc no longer has it.
                Err(rustix::io::Errno::CHILD)
                    if !std::path::Path::new(&format!("/proc/{real}")).exists() =>
                {
                    return Ok(())
                }
                _ => {}
            }
            if Instant::now() >= deadline {
                bail!("process {real} (in a namespace) did not die within 10 s of its wrapper's SIGKILL");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// A running verify consumer.
struct Consumer {
    proc: Proc,
    /// `chaos-<i>-<start>`: unique per start, so it names its entry.
    name: String,
    out: mpsc::Receiver<String>,
    /// Whether its `attached` line was read.
    attached: bool,
    /// Fork checks asked of it (SIGUSR1s sent) and finished (its stderr).
    forks_asked: u64,
    forks_done: Arc<AtomicU64>,
}

impl Consumer {
    /// Reads its `attached` line if it is there (without waiting).
    fn poll_attached(&mut self) -> bool {
        if !self.attached {
            if let Ok(line) = self.out.try_recv() {
                self.attached = line.starts_with("attached ");
            }
        }
        self.attached
    }
}

/// Counters the consumers' stderr readers keep.
#[derive(Default)]
struct Counters {
    bad: AtomicU64,
    forks: AtomicU64,
    fork_failures: AtomicU64,
}

/// A kill whose reclaim the monitor times: the entry (index, generation)
/// the victim owned.
struct PendingReclaim {
    index: u32,
    generation: u32,
    name: String,
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
    /// Last frame count seen per consumer name (for consumers that die).
    frames_by_name: HashMap<String, u64>,
    /// Frames published, per producer instance.
    published: HashMap<u64, u64>,
}

fn exe() -> anyhow::Result<std::path::PathBuf> {
    std::env::current_exe().context("cannot find the framebus binary")
}

fn quiet(cmd: &mut Command) -> &mut Command {
    cmd.env("RUST_LOG", "warn")
}

/// A command running framebus: directly, or in namespace mode in a
/// simulated container (the form of the tests' `Bus::container_command`);
/// framebus's own arguments follow.
fn framebus(namespaced: bool) -> anyhow::Result<Command> {
    if !namespaced {
        return Ok(Command::new(exe()?));
    }
    let mut c = Command::new("unshare");
    c.args([
        "--pid",
        "--fork",
        "--kill-child",
        "--mount",
        "--mount-proc",
        "--",
        "sh",
        "-c",
        "mount -t tmpfs tmpfs /tmp && exec \"$0\" \"$@\"",
    ])
    .arg(exe()?);
    Ok(c)
}

/// Why namespace mode cannot run here, if it cannot.
fn namespaces_unavailable() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("it needs root (it creates pid and mount namespaces)".into());
    }
    match Command::new("unshare")
        .args(["--pid", "--fork", "--kill-child", "--mount", "--mount-proc"])
        .args(["--", "sh", "-c", "mount -t tmpfs tmpfs /tmp"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => None,
        Ok(s) => Some(format!(
            "`unshare --pid --fork --mount --mount-proc` with a tmpfs /tmp failed here ({s})"
        )),
        Err(e) => Some(format!("cannot run `unshare` (util-linux): {e}")),
    }
}

fn start_producer(
    bus: &BusName,
    size: &str,
    max_consumers: u32,
    namespaced: bool,
) -> anyhow::Result<Proc> {
    let mut cmd = framebus(namespaced)?;
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
        Ok(l) if l.starts_with("ready ") => Ok(Proc {
            child,
            namespaced,
            real: None,
        }),
        _ => bail!("the producer did not become ready within 20 s"),
    }
}

/// What each consumer start needs to know.
struct ConsumerSpec<'a> {
    bus: &'a BusName,
    namespaced: bool,
    forks: bool,
    counters: &'a Arc<Counters>,
}

fn start_consumer(spec: &ConsumerSpec<'_>, name: String) -> anyhow::Result<Consumer> {
    let bus = spec.bus;
    let mut cmd = framebus(spec.namespaced)?;
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
        .args(["--name", &name])
        .args(spec.forks.then_some("--fork-check-on-usr1"))
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
    // Count "bad frame" warnings and fork checks as they are written, so
    // those of consumers that are killed later still count.
    let counters = Arc::clone(spec.counters);
    let forks_done = Arc::new(AtomicU64::new(0));
    let done = Arc::clone(&forks_done);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("bad frame") {
                counters.bad.fetch_add(1, Ordering::Relaxed);
                eprintln!("{line}");
            } else if line.starts_with("fork check passed") {
                counters.forks.fetch_add(1, Ordering::Relaxed);
                done.fetch_add(1, Ordering::Relaxed);
            } else if line.starts_with("fork check failed") {
                counters.forks.fetch_add(1, Ordering::Relaxed);
                counters.fork_failures.fetch_add(1, Ordering::Relaxed);
                done.fetch_add(1, Ordering::Relaxed);
                eprintln!("{line}");
            }
        }
    });
    Ok(Consumer {
        proc: Proc {
            child,
            namespaced: spec.namespaced,
            real: None,
        },
        name,
        out,
        attached: false,
        forks_asked: 0,
        forks_done,
    })
}

/// Waits for the consumer's first stdout line, `attached bus=...`.
fn wait_attached(c: &mut Consumer, timeout: Duration) -> anyhow::Result<()> {
    if c.attached {
        return Ok(());
    }
    match c.out.recv_timeout(timeout) {
        Ok(line) if line.starts_with("attached ") => {
            c.attached = true;
            Ok(())
        }
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
                m.frames_by_name.insert(c.name.clone(), c.frames);
            }
            m.published.insert(s.instance_id, s.frames_published);
            let pending = std::mem::take(&mut m.pending);
            for p in pending {
                if p.instance != s.instance_id {
                    continue; // a producer restart intervened: not timed
                }
                // Done once the victim's (index, generation) has left the
                // table and its bit is on no slot — unless the index has a
                // new owner, whose pins those bits are (an entry is freed
                // only after its bits are cleared).
                let bit = 1u64 << p.index;
                let pinned = s.slots.iter().any(|x| x.pins & bit != 0);
                let owned = s
                    .consumers
                    .iter()
                    .any(|c| c.index == p.index && c.generation == p.generation);
                let reused = s
                    .consumers
                    .iter()
                    .any(|c| c.index == p.index && c.generation != p.generation);
                if owned || (pinned && !reused) {
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

/// A re-attachment check: every listed consumer (by name) must show frames
/// on the new producer's instance before the deadline.
struct ReattachCheck {
    deadline: Instant,
    instance: u64,
    names: Vec<String>,
}

pub fn run(args: ChaosArgs) -> anyhow::Result<ExitCode> {
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
        ..ChaosReport::default()
    };
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
        if k % 8 == 7 {
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
                    consumers[i].proc.signal(Signal::STOP)?;
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
                consumers[i].proc.signal(Signal::USR1)?;
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
                // instance within 5 s.
                let names: Vec<String> =
                    running.iter().map(|&i| consumers[i].name.clone()).collect();
                let instance = loop {
                    match snapshot() {
                        Some(s) if Some(s.instance_id) != old_instance && s.producer_alive => {
                            break s.instance_id
                        }
                        _ if chaos_start.elapsed() > total + Duration::from_secs(30) => {
                            bail!("the monitor lost the bus")
                        }
                        _ => std::thread::sleep(Duration::from_millis(1)),
                    }
                };
                reattach_checks.push(ReattachCheck {
                    deadline: Instant::now() + Duration::from_secs(5),
                    instance,
                    names,
                });
            }
        }
    }
    // Let the last stops, re-attachments and fork checks finish.
    let forks_outstanding = |cs: &[Consumer]| {
        cs.iter()
            .any(|c| c.forks_done.load(Ordering::Relaxed) < c.forks_asked)
    };
    let settle = Instant::now() + Duration::from_secs(10);
    while Instant::now() < settle
        && (!stopped.is_empty() || !reattach_checks.is_empty() || forks_outstanding(&consumers))
    {
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
    let settle = Instant::now() + Duration::from_secs(2);
    while Instant::now() < settle && state.lock().map(|m| !m.pending.is_empty()).unwrap_or(false) {
        std::thread::sleep(Duration::from_millis(5));
    }
    if tty {
        eprintln!();
    }
    let trigger_dir = snapshot().map(|s| s.trigger_dir);
    for c in &mut consumers {
        c.proc.signal(Signal::CONT)?;
    }
    // A consumer restarted a moment ago may not have installed its signal
    // handlers yet; a TERM then would kill it without its summary. Its
    // `attached` line says it has (they are installed before attaching).
    for c in &mut consumers {
        let name = c.name.clone();
        wait_attached(c, Duration::from_secs(30)).with_context(|| format!("consumer {name}"))?;
    }
    for c in &mut consumers {
        c.proc.signal(Signal::TERM)?;
    }
    for c in &mut consumers {
        let s: ConsumeSummary = last_json(&c.out, Duration::from_secs(30))?;
        c.proc.child.wait(Duration::from_secs(10))?;
        report.frames_verified += s.frames;
    }
    report.frames_verified += killed_frames;
    stop_monitor.store(true, Ordering::Relaxed);
    let _ = monitor.join();
    producer.signal(Signal::TERM)?;
    producer.child.wait(Duration::from_secs(10))?;
    if let Ok(m) = state.lock() {
        report.frames_published = m.published.values().sum();
        report.worst_reclaim_ms = m.worst_reclaim.as_secs_f64() * 1e3;
        report.reclaims_timed = m.reclaims;
        report.unreclaimed = m.pending.len() as u64;
        report.worst_publish_gap_ms = m.worst_gap.as_secs_f64() * 1e3;
        for p in &m.pending {
            let what = format!(
                "{} (entry {} generation {}, killed {:.1} s before the end)",
                p.name,
                p.index,
                p.generation,
                p.at.elapsed().as_secs_f64()
            );
            eprintln!("chaos: never reclaimed: {what}");
            report.unreclaimed_entries.push(what);
        }
    }
    report.bad_frames = counters.bad.load(Ordering::Relaxed);
    report.forks = counters.forks.load(Ordering::Relaxed);
    report.fork_failures = counters.fork_failures.load(Ordering::Relaxed);
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
        || report.fork_failures > 0
        || (args.forks > 0 && report.forks == 0)
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

fn resume_due(
    stopped: &mut Vec<(usize, Instant)>,
    consumers: &mut [Consumer],
) -> anyhow::Result<()> {
    let now = Instant::now();
    let mut i = 0;
    while i < stopped.len() {
        if stopped[i].1 <= now {
            consumers[stopped[i].0].proc.signal(Signal::CONT)?;
            stopped.swap_remove(i);
        } else {
            i += 1;
        }
    }
    Ok(())
}

/// A re-attachment check passes once every listed consumer shows frames on
/// the new instance; it fails if its deadline passes first (or at the end)
/// while that consumer is still running (a killed one is not expected back:
/// its replacement has another name).
fn judge_reattach(
    checks: &mut Vec<ReattachCheck>,
    snapshot: &dyn Fn() -> Option<BusSnapshot>,
    consumers: &[Consumer],
    report: &mut ChaosReport,
    final_call: bool,
) {
    let Some(s) = snapshot() else { return };
    checks.retain_mut(|check| {
        if s.instance_id != check.instance {
            return false; // superseded by another restart
        }
        check
            .names
            .retain(|n| !s.consumers.iter().any(|c| &c.name == n && c.frames > 0));
        if check.names.is_empty() {
            return false;
        }
        if final_call || Instant::now() >= check.deadline {
            for n in &check.names {
                if consumers.iter().any(|c| &c.name == n) {
                    eprintln!(
                        "chaos: consumer {n} did not re-attach to producer instance {:#x}",
                        check.instance
                    );
                    report.reattach_failures += 1;
                }
            }
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
            "forks (failed)".into(),
            format!(
                "{} of {} asked ({})",
                r.forks, r.forks_requested, r.fork_failures
            ),
        ],
        vec!["namespaces".into(), r.namespaces.to_string()],
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
