//! `framebus bench`: throughput, latency, CPU and isolation, measured with
//! real processes of this binary (as a user would run them), against the
//! memcpy ceiling (measured in the same run) and the naive pipe transport.

use std::io::IsTerminal;
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use framebus_consumer::{inspect, BusSnapshot};
use rustix::thread::{sched_getaffinity, sched_setaffinity, CpuSet};
use serde::Serialize;
use shm_layout::{BusName, Layout, LayoutRequest};

use super::child::{last_json, lines, proc_figures, ProcFigures, Reaper};
use super::consume::ConsumeSummary;
use super::pipe::PipeSummary;
use crate::cli::{parse_fps, parse_max_fps, parse_seconds, parse_size};
use crate::report::{rate_cell, table, LatencyUs};

/// Which transport carries the frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// framebus: shared memory slots and trigger FIFOs.
    Shm,
    /// The naive alternative: every frame copied through a pipe per consumer.
    Pipe,
}

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// One run with the given transport.
    Throughput,
    /// The same run over shared memory and over pipes, with ratios.
    Compare,
    /// A full-speed consumer's rate beside slow, stopped and killed ones.
    Isolation,
    /// Sizes x consumer counts, one table.
    Sweep,
}

/// `framebus bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Frame size as WIDTHxHEIGHT.
    #[arg(long, default_value = "1920x1080", value_parser = parse_size)]
    pub size: (u32, u32),
    /// Pixel format of the bus (shm transport; the pipe transport is gray8
    /// only).
    #[arg(long, default_value = "gray8", value_name = "gray8|gray16|bgr8|rgb8", value_parser = crate::cli::parse_format)]
    pub format: shm_layout::PixelFormat,
    /// Consumer processes.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=32))]
    pub consumers: u32,
    /// Consumers' rate limits, comma-separated, cycled over the consumers
    /// (default: none, every frame they can take).
    #[arg(long, value_delimiter = ',', value_parser = parse_max_fps)]
    pub max_fps: Option<Vec<f64>>,
    /// Consumers' algorithm: mean | verify | busy:MS.
    #[arg(long, default_value = "mean")]
    pub algo: String,
    /// Producer frame rate; 0 = as fast as possible. Default: 0, or 1000
    /// for the isolation scenario.
    #[arg(long, value_parser = parse_fps)]
    pub fps: Option<f64>,
    /// Seconds measured (per run, or per isolation phase).
    #[arg(long, default_value_t = 5.0, value_parser = parse_seconds)]
    pub duration: f64,
    /// Seconds run before measuring.
    #[arg(long, default_value_t = 1.0, value_parser = parse_seconds)]
    pub warmup: f64,
    /// Transport for the throughput scenario.
    #[arg(long, value_enum, default_value = "shm")]
    pub transport: Transport,
    /// What to measure.
    #[arg(long, value_enum, default_value = "throughput")]
    pub scenario: Scenario,
    /// Give the producer a CPU of its own: pin it to CPU N and every
    /// consumer to the other CPUs (throughput scenario, shm transport).
    /// Tells a producer starved of CPU from a slow publish path.
    #[arg(long, value_name = "N")]
    pub producer_cpu: Option<usize>,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// One run's configuration.
#[derive(Debug, Clone)]
struct RunConfig {
    transport: Transport,
    width: u32,
    height: u32,
    format: shm_layout::PixelFormat,
    consumers: u32,
    max_fps: Vec<f64>,
    algo: String,
    fps: f64,
    warmup: f64,
    duration: f64,
    producer_cpu: Option<usize>,
}

impl RunConfig {
    /// Consumer `i`'s rate limit, 0 = no limit.
    fn rate_of(&self, i: usize) -> f64 {
        match self.max_fps.len() {
            0 => 0.0,
            n => self.max_fps[i % n],
        }
    }
}

/// One process's figures over the measured window.
#[derive(Debug, Clone, Serialize)]
pub struct ProcResult {
    role: &'static str,
    pid: u32,
    /// A consumer's rate limit, 0 = no limit; absent for the producer.
    #[serde(skip_serializing_if = "Option::is_none")]
    max_fps: Option<f64>,
    fps: f64,
    frames: u64,
    cpu_pct: f64,
    peak_rss_mib: f64,
    publish_us: Option<f64>,
    latency_us: Option<LatencyUs>,
    coalesced: Option<u64>,
    bad_frames: Option<u64>,
}

/// One run's figures.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    transport: Transport,
    width: u32,
    height: u32,
    /// The bus's pixel format name.
    format: &'static str,
    consumers: u32,
    algo: String,
    fps_target: f64,
    seconds: f64,
    memcpy_fps: f64,
    producer_fps: f64,
    producer_vs_memcpy: f64,
    /// CPU time the producer spent per published frame: compared with the
    /// memcpy time it tells a slow publish path from a CPU-starved producer.
    producer_cpu_us_per_frame: f64,
    /// The CPU the producer had to itself (`--producer-cpu`), if any.
    producer_cpu: Option<usize>,
    consumer_fps_mean: f64,
    delivered_fps: f64,
    cpu_us_per_delivered_frame: f64,
    bad_frames: u64,
    processes: Vec<ProcResult>,
}

static RUNS: AtomicU32 = AtomicU32::new(0);

fn exe() -> anyhow::Result<std::path::PathBuf> {
    std::env::current_exe().context("cannot find the framebus binary to start")
}

/// Waits `secs`, showing progress on a terminal (a redrawn line on stderr:
/// one write every 250 ms, nothing else, so it does not disturb the run).
fn wait_with_progress(label: &str, secs: f64) {
    let tty = std::io::stderr().is_terminal();
    let start = Instant::now();
    let total = Duration::from_secs_f64(secs);
    while start.elapsed() < total {
        if tty {
            eprint!(
                "\r{label}: {:.1}/{secs:.1} s ",
                start.elapsed().as_secs_f64()
            );
        }
        std::thread::sleep((total - start.elapsed().min(total)).min(Duration::from_millis(250)));
    }
    if tty {
        eprint!("\r{:width$}\r", "", width = label.len() + 24);
    }
}

/// The ceiling: frames/s of a plain memcpy of one frame into the slots of a
/// shared memory object laid out like the bus (a memfd, populated like the
/// producer's mapping), cycling through the slots like the producer does.
fn memcpy_fps(layout: &Layout) -> anyhow::Result<f64> {
    let len = layout.frame_len();
    let pitch = layout.slot_pitch as usize;
    let bytes = pitch * layout.slot_count as usize;
    let fd = rustix::fs::memfd_create("framebus-bench-ceiling", rustix::fs::MemfdFlags::CLOEXEC)
        .context("cannot create a memfd for the memcpy ceiling")?;
    rustix::fs::ftruncate(&fd, bytes as u64).context("cannot size the memfd")?;
    let file = std::fs::File::from(fd);
    // SAFETY: the memfd is private to this process (nobody else can open
    // it, and no other mapping of it exists), so the mutable mapping is
    // never modified behind our back.
    let mut slots = unsafe {
        memmap2::MmapOptions::new()
            .len(bytes)
            .populate()
            .map_mut(&file)
    }
    .context("cannot map the memfd")?;
    let src: Vec<u8> = (0..len).map(|i| i as u8).collect();
    let start = Instant::now();
    let mut copies = 0usize;
    while copies < 20 || start.elapsed() < Duration::from_millis(500) {
        let at = (copies % layout.slot_count as usize) * pitch;
        slots[at..at + len].copy_from_slice(&src);
        std::hint::black_box(&slots);
        copies += 1;
    }
    Ok(copies as f64 / start.elapsed().as_secs_f64())
}

/// The CPU set `{cpu}` and the set of every other CPU this process may use.
fn cpu_split(cpu: usize) -> anyhow::Result<(CpuSet, CpuSet)> {
    let allowed = sched_getaffinity(None).context("cannot read this process's CPU affinity")?;
    let usable: Vec<usize> = (0..CpuSet::MAX_CPU)
        .filter(|&c| allowed.is_set(c))
        .collect();
    if !usable.contains(&cpu) || usable.len() < 2 {
        bail!("--producer-cpu {cpu}: this process may run on CPUs {usable:?}; pick one of them, and at least one must remain for the consumers");
    }
    let (mut only, mut others) = (CpuSet::new(), CpuSet::new());
    only.set(cpu);
    for &c in usable.iter().filter(|&&c| c != cpu) {
        others.set(c);
    }
    Ok((only, others))
}

/// Pins every thread of process `pid` to `cpus`.
fn pin_to(pid: u32, cpus: &CpuSet) -> anyhow::Result<()> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .with_context(|| format!("cannot list the threads of process {pid}"))?;
    for task in tasks.flatten() {
        let tid = task
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<i32>().ok());
        if let Some(tid) = tid.and_then(rustix::process::Pid::from_raw) {
            sched_setaffinity(Some(tid), cpus)
                .with_context(|| format!("cannot pin thread {tid:?} of process {pid}"))?;
        }
    }
    Ok(())
}

fn sample(pids: &[u32]) -> Vec<ProcFigures> {
    pids.iter()
        .map(|&p| proc_figures(p).unwrap_or_default())
        .collect()
}

fn cpu_pct(a: &ProcFigures, b: &ProcFigures, secs: f64) -> f64 {
    (b.cpu_s - a.cpu_s).max(0.0) / secs.max(1e-9) * 100.0
}

fn consumer_result(
    pid: u32,
    max_fps: f64,
    s: &ConsumeSummary,
    cpu: f64,
    rss_kib: u64,
) -> ProcResult {
    ProcResult {
        role: "consumer",
        pid,
        max_fps: Some(max_fps),
        fps: s.fps,
        frames: s.frames,
        cpu_pct: cpu,
        peak_rss_mib: rss_kib as f64 / 1024.0,
        publish_us: None,
        latency_us: Some(s.latency_us),
        coalesced: Some(s.coalesced),
        bad_frames: Some(s.bad_frames),
    }
}

fn finish(cfg: &RunConfig, memcpy: f64, seconds: f64, processes: Vec<ProcResult>) -> RunResult {
    let producer_fps = processes.first().map_or(0.0, |p| p.fps);
    let producer_cpu_us_per_frame = processes.first().map_or(0.0, |p| {
        if p.fps > 0.0 {
            p.cpu_pct / 100.0 / p.fps * 1e6
        } else {
            0.0
        }
    });
    let consumers: Vec<&ProcResult> = processes.iter().filter(|p| p.role == "consumer").collect();
    let delivered_fps: f64 = consumers.iter().map(|c| c.fps).sum();
    let cpu_total_s: f64 = processes.iter().map(|p| p.cpu_pct / 100.0 * seconds).sum();
    let delivered = delivered_fps * seconds;
    RunResult {
        transport: cfg.transport,
        width: cfg.width,
        height: cfg.height,
        format: cfg.format.name(),
        consumers: cfg.consumers,
        algo: cfg.algo.clone(),
        fps_target: cfg.fps,
        seconds,
        memcpy_fps: memcpy,
        producer_fps,
        producer_vs_memcpy: producer_fps / memcpy.max(1e-9),
        producer_cpu_us_per_frame,
        producer_cpu: cfg.producer_cpu,
        consumer_fps_mean: delivered_fps / consumers.len().max(1) as f64,
        delivered_fps,
        cpu_us_per_delivered_frame: if delivered > 0.0 {
            cpu_total_s * 1e6 / delivered
        } else {
            0.0
        },
        bad_frames: consumers.iter().filter_map(|c| c.bad_frames).sum(),
        processes,
    }
}

/// A bus name unique to this bench run.
fn bench_bus() -> anyhow::Result<BusName> {
    let n = RUNS.fetch_add(1, Ordering::Relaxed);
    Ok(BusName::new(&format!("bench-{}-{n}", std::process::id()))?)
}

/// Starts a producer and waits for its ready line.
fn start_producer(
    bus: &BusName,
    cfg: &RunConfig,
    max_consumers: u32,
) -> anyhow::Result<(Reaper, std::sync::mpsc::Receiver<String>)> {
    let size = format!("{}x{}", cfg.width, cfg.height);
    let mut cmd = Command::new(exe()?);
    cmd.args([
        "produce",
        "--bus",
        bus.as_str(),
        "--size",
        &size,
        "--fps",
        &cfg.fps.to_string(),
        "--format",
        cfg.format.name(),
    ])
    // Its consumers hold one frame at a time: one pin each, as the
    // figures in doc/BENCHMARKS.md were measured.
    .args(["--pins-per-consumer", "1"])
    .args([
        "--max-consumers",
        &max_consumers.to_string(),
        "--warmup",
        &cfg.warmup.to_string(),
        "--json",
    ])
    .stdout(Stdio::piped());
    let mut child = Reaper(Some(cmd.spawn().context("cannot start the producer")?));
    let out = lines(
        child
            .0
            .as_mut()
            .and_then(|c| c.stdout.take())
            .context("producer stdout")?,
    );
    match out.recv_timeout(Duration::from_secs(30)) {
        Ok(l) if l.starts_with("ready ") => Ok((child, out)),
        _ => bail!("the producer did not become ready within 30 s"),
    }
}

/// Starts a consumer and waits for its attached line.
fn start_consumer(
    bus: &BusName,
    args: &[&str],
) -> anyhow::Result<(Reaper, std::sync::mpsc::Receiver<String>)> {
    let mut cmd = Command::new(exe()?);
    cmd.args(["consume", "--bus", bus.as_str(), "--json"])
        .args(args)
        .stdout(Stdio::piped());
    let mut child = Reaper(Some(cmd.spawn().context("cannot start a consumer")?));
    let out = lines(
        child
            .0
            .as_mut()
            .and_then(|c| c.stdout.take())
            .context("consumer stdout")?,
    );
    match out.recv_timeout(Duration::from_secs(30)) {
        Ok(l) if l.starts_with("attached ") => Ok((child, out)),
        _ => bail!("a consumer did not attach within 30 s"),
    }
}

fn snapshot(bus: &BusName) -> anyhow::Result<BusSnapshot> {
    inspect(bus).with_context(|| format!("cannot read bus {bus}"))
}

#[derive(serde::Deserialize)]
struct ProducerJson {
    publish_us_mean: f64,
}

fn run_shm(cfg: &RunConfig) -> anyhow::Result<RunResult> {
    let layout = Layout::compute(LayoutRequest {
        width: cfg.width,
        height: cfg.height,
        max_consumers: cfg.consumers,
        pins_per_consumer: 1,
        format: cfg.format,
        significant_bits: 0,
    })?;
    let memcpy = memcpy_fps(&layout)?;
    let bus = bench_bus()?;
    let (mut producer, prod_out) = start_producer(&bus, cfg, cfg.consumers)?;
    let mut consumers = Vec::new();
    for i in 0..cfg.consumers as usize {
        // No --duration: the bench stops every process with SIGTERM right
        // after its last sample, so none has exited when it is sampled.
        let warmup = cfg.warmup.to_string();
        let mut args = vec!["--algo", cfg.algo.as_str(), "--warmup", warmup.as_str()];
        let rate = cfg.rate_of(i).to_string();
        args.extend(["--max-fps", rate.as_str()]);
        consumers.push(start_consumer(&bus, &args)?);
    }
    if let Some(cpu) = cfg.producer_cpu {
        let (only, others) = cpu_split(cpu)?;
        pin_to(producer.pid(), &only)?;
        for (c, _) in &consumers {
            pin_to(c.pid(), &others)?;
        }
    }
    let label = format!("bench shm {}x{} x{}", cfg.width, cfg.height, cfg.consumers);
    wait_with_progress(&format!("{label} (warm-up)"), cfg.warmup);
    let mut pids = vec![producer.pid()];
    pids.extend(consumers.iter().map(|(c, _)| c.pid()));
    let (t0, snap0, cpu0) = (Instant::now(), snapshot(&bus)?, sample(&pids));
    wait_with_progress(&label, cfg.duration);
    let (snap1, cpu1) = (snapshot(&bus)?, sample(&pids));
    let secs = t0.elapsed().as_secs_f64();
    let mut processes = Vec::new();
    let frames = snap1.frames_published - snap0.frames_published;
    let mut results = Vec::new();
    for (child, _) in &consumers {
        child.signal(rustix::process::Signal::TERM)?;
    }
    for (i, (mut child, out)) in consumers.into_iter().enumerate() {
        let s: ConsumeSummary = last_json(&out, Duration::from_secs(30))?;
        child.wait(Duration::from_secs(10))?;
        results.push((i, s));
    }
    producer.signal(rustix::process::Signal::TERM)?;
    let prod: ProducerJson = last_json(&prod_out, Duration::from_secs(30))?;
    producer.wait(Duration::from_secs(10))?;
    processes.push(ProcResult {
        role: "producer",
        pid: pids[0],
        max_fps: None,
        fps: frames as f64 / secs,
        frames,
        cpu_pct: cpu_pct(&cpu0[0], &cpu1[0], secs),
        peak_rss_mib: cpu1[0].peak_rss_kib as f64 / 1024.0,
        publish_us: Some(prod.publish_us_mean),
        latency_us: None,
        coalesced: None,
        bad_frames: None,
    });
    for (i, s) in results {
        processes.push(consumer_result(
            pids[i + 1],
            cfg.rate_of(i),
            &s,
            cpu_pct(&cpu0[i + 1], &cpu1[i + 1], secs),
            cpu1[i + 1].peak_rss_kib,
        ));
    }
    Ok(finish(cfg, memcpy, secs, processes))
}

fn run_pipe(cfg: &RunConfig) -> anyhow::Result<RunResult> {
    let layout = Layout::compute(LayoutRequest {
        width: cfg.width,
        height: cfg.height,
        max_consumers: cfg.consumers,
        pins_per_consumer: 1,
        format: shm_layout::PixelFormat::Gray8,
        significant_bits: 0,
    })?;
    let memcpy = memcpy_fps(&layout)?;
    let size = format!("{}x{}", cfg.width, cfg.height);
    let mut cmd = Command::new(exe()?);
    cmd.args([
        "pipe-produce",
        "--size",
        &size,
        "--fps",
        &cfg.fps.to_string(),
        "--consumers",
        &cfg.consumers.to_string(),
    ])
    .args(["--algo", &cfg.algo, "--warmup", &cfg.warmup.to_string()])
    .stdout(Stdio::piped());
    if !cfg.max_fps.is_empty() {
        let list = cfg
            .max_fps
            .iter()
            .map(f64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        cmd.args(["--max-fps", &list]);
    }
    let mut producer = Reaper(Some(cmd.spawn().context("cannot start the pipe producer")?));
    let out = lines(
        producer
            .0
            .as_mut()
            .and_then(|c| c.stdout.take())
            .context("pipe producer stdout")?,
    );
    let ready = out
        .recv_timeout(Duration::from_secs(30))
        .context("the pipe producer did not start")?;
    let consumer_pids: Vec<u32> = ready
        .strip_prefix("ready pids=")
        .context("unexpected first line from the pipe producer")?
        .split(',')
        .filter_map(|p| p.parse().ok())
        .collect();
    let label = format!("bench pipe {}x{} x{}", cfg.width, cfg.height, cfg.consumers);
    wait_with_progress(&format!("{label} (warm-up)"), cfg.warmup);
    let mut pids = vec![producer.pid()];
    pids.extend(&consumer_pids);
    let (t0, cpu0) = (Instant::now(), sample(&pids));
    wait_with_progress(&label, cfg.duration);
    let cpu1 = sample(&pids);
    let secs = t0.elapsed().as_secs_f64();
    producer.signal(rustix::process::Signal::TERM)?;
    let summary: PipeSummary = last_json(&out, Duration::from_secs(60))?;
    producer.wait(Duration::from_secs(10))?;
    let mut processes = vec![ProcResult {
        role: "producer",
        pid: pids[0],
        max_fps: None,
        fps: summary.fps,
        frames: summary.frames,
        cpu_pct: cpu_pct(&cpu0[0], &cpu1[0], secs),
        peak_rss_mib: cpu1[0].peak_rss_kib as f64 / 1024.0,
        publish_us: Some(summary.publish_us_mean),
        latency_us: None,
        coalesced: None,
        bad_frames: None,
    }];
    for (i, s) in summary.consumers.iter().enumerate() {
        processes.push(consumer_result(
            pids[i + 1],
            cfg.rate_of(i),
            s,
            cpu_pct(&cpu0[i + 1], &cpu1[i + 1], secs),
            cpu1[i + 1].peak_rss_kib,
        ));
    }
    Ok(finish(cfg, memcpy, secs, processes))
}

fn run_one(cfg: &RunConfig) -> anyhow::Result<RunResult> {
    match cfg.transport {
        Transport::Shm => run_shm(cfg),
        Transport::Pipe => run_pipe(cfg),
    }
}

/// The isolation scenario's figures.
#[derive(Debug, Clone, Serialize)]
pub struct IsolationResult {
    width: u32,
    height: u32,
    fps_target: f64,
    algo: String,
    phases: Vec<Phase>,
    bad_frames: u64,
}

/// One isolation phase.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    name: &'static str,
    consumer_fps: f64,
    ratio_to_alone: f64,
    producer_fps: f64,
}

fn frames_of(s: &BusSnapshot, pid: u32) -> u64 {
    s.consumers
        .iter()
        .find(|c| c.pid == pid)
        .map_or(0, |c| c.frames)
}

fn isolation(cfg: &RunConfig) -> anyhow::Result<IsolationResult> {
    let bus = bench_bus()?;
    let (mut producer, prod_out) = start_producer(&bus, cfg, 4)?;
    let total = (cfg.warmup + 4.0 * cfg.duration + 60.0).to_string();
    let (mut full, full_out) = start_consumer(
        &bus,
        &[
            "--algo",
            &cfg.algo,
            "--duration",
            &total,
            "--name",
            "full-speed",
        ],
    )?;
    let measure = |label: &str,
                   mid: Option<&mut dyn FnMut() -> anyhow::Result<()>>|
     -> anyhow::Result<(f64, f64)> {
        let (t0, s0) = (Instant::now(), snapshot(&bus)?);
        match mid {
            Some(action) => {
                wait_with_progress(label, cfg.duration / 2.0);
                action()?;
                wait_with_progress(label, cfg.duration / 2.0);
            }
            None => wait_with_progress(label, cfg.duration),
        }
        let s1 = snapshot(&bus)?;
        let secs = t0.elapsed().as_secs_f64();
        let consumer = (frames_of(&s1, full.pid()) - frames_of(&s0, full.pid())) as f64 / secs;
        let produced = (s1.frames_published - s0.frames_published) as f64 / secs;
        Ok((consumer, produced))
    };
    wait_with_progress("bench isolation (warm-up)", cfg.warmup);
    let mut phases = Vec::new();
    let alone = measure("isolation: alone", None)?;
    phases.push(("alone", alone));
    let (slow, _slow_out) = start_consumer(
        &bus,
        &["--algo", "mean", "--max-fps", "1", "--name", "one-fps"],
    )?;
    phases.push((
        "beside a 1 fps consumer",
        measure("isolation: beside 1 fps", None)?,
    ));
    slow.signal(rustix::process::Signal::STOP)?;
    phases.push((
        "beside a stopped consumer",
        measure("isolation: beside stopped", None)?,
    ));
    let (victim, _victim_out) = start_consumer(&bus, &["--algo", "busy:20", "--name", "victim"])?;
    let mut kill = || victim.signal(rustix::process::Signal::KILL);
    phases.push((
        "beside a consumer killed mid-run",
        measure("isolation: beside killed", Some(&mut kill))?,
    ));
    full.signal(rustix::process::Signal::TERM)?;
    let summary: ConsumeSummary = last_json(&full_out, Duration::from_secs(30))?;
    full.wait(Duration::from_secs(10))?;
    slow.signal(rustix::process::Signal::KILL)?;
    producer.signal(rustix::process::Signal::TERM)?;
    let _: ProducerJson = last_json(&prod_out, Duration::from_secs(30))?;
    producer.wait(Duration::from_secs(10))?;
    let base = alone.0.max(1e-9);
    Ok(IsolationResult {
        width: cfg.width,
        height: cfg.height,
        fps_target: cfg.fps,
        algo: cfg.algo.clone(),
        phases: phases
            .into_iter()
            .map(|(name, (c, p))| Phase {
                name,
                consumer_fps: c,
                ratio_to_alone: c / base,
                producer_fps: p,
            })
            .collect(),
        bad_frames: summary.bad_frames,
    })
}

fn print_run(r: &RunResult) {
    let target = format!("{} fps", rate_cell(r.fps_target));
    println!(
        "{} {}x{} {}, {} consumer(s) running {}, producer {}, {:.1} s measured",
        match r.transport {
            Transport::Shm => "framebus (shm)",
            Transport::Pipe => "pipe",
        },
        r.width,
        r.height,
        r.format,
        r.consumers,
        r.algo,
        target,
        r.seconds
    );
    if let Some(cpu) = r.producer_cpu {
        println!("producer pinned to CPU {cpu}, consumers to the other CPUs");
    }
    println!(
        "memcpy ceiling {:.0} frames/s ({:.1} us/frame); producer {:.0} frames/s = {:.2}x the ceiling, \
         using {:.1} us of CPU per frame ({:.2}x the memcpy time)",
        r.memcpy_fps,
        1e6 / r.memcpy_fps,
        r.producer_fps,
        r.producer_vs_memcpy,
        r.producer_cpu_us_per_frame,
        r.producer_cpu_us_per_frame * r.memcpy_fps / 1e6
    );
    let rows: Vec<Vec<String>> = r
        .processes
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let l = p.latency_us.unwrap_or_default();
            let lat = |v: f64| {
                if p.latency_us.is_some() {
                    format!("{v:.0}")
                } else {
                    "-".into()
                }
            };
            vec![
                if p.role == "producer" {
                    "producer".into()
                } else {
                    format!("consumer {i}")
                },
                p.max_fps.map_or("-".into(), rate_cell),
                format!("{:.0}", p.fps),
                format!("{:.0}", p.cpu_pct),
                format!("{:.0}", p.peak_rss_mib),
                p.publish_us.map_or("-".into(), |u| format!("{u:.0}")),
                lat(l.p50),
                lat(l.p90),
                lat(l.p99),
                lat(l.p999),
                lat(l.max),
                p.coalesced.map_or("-".into(), |c| c.to_string()),
                p.bad_frames.map_or("-".into(), |c| c.to_string()),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "process",
                "max fps",
                "fps",
                "cpu %",
                "peak rss MiB",
                "publish us",
                "p50 us",
                "p90",
                "p99",
                "p99.9",
                "max",
                "coalesced",
                "bad"
            ],
            &rows
        )
    );
    println!(
        "delivered {:.0} frames/s in all, {:.1} us of CPU per delivered frame (all processes)\n",
        r.delivered_fps, r.cpu_us_per_delivered_frame
    );
}

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    builtin_check(&args.algo)?;
    let default_fps = if args.scenario == Scenario::Isolation {
        1000.0
    } else {
        0.0
    };
    if args.format != shm_layout::PixelFormat::Gray8
        && (args.transport == Transport::Pipe || args.scenario != Scenario::Throughput)
    {
        bail!(
            "--format {} applies to the throughput scenario over shm only (the pipe transport carries gray8)",
            args.format
        );
    }
    let cfg = RunConfig {
        transport: args.transport,
        width: args.size.0,
        height: args.size.1,
        format: args.format,
        consumers: args.consumers,
        max_fps: args.max_fps.clone().unwrap_or_default(),
        algo: args.algo.clone(),
        fps: args.fps.unwrap_or(default_fps),
        warmup: args.warmup,
        duration: args.duration,
        producer_cpu: args.producer_cpu,
    };
    if let Some(cpu) = args.producer_cpu {
        if args.scenario != Scenario::Throughput || args.transport != Transport::Shm {
            bail!("--producer-cpu applies to the throughput scenario over shm only (the other runs would not be comparable)");
        }
        cpu_split(cpu)?;
    }
    let mut bad = 0;
    match args.scenario {
        Scenario::Throughput => {
            let r = run_one(&cfg)?;
            bad += r.bad_frames;
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string(
                        &serde_json::json!({"scenario": "throughput", "runs": [r]})
                    )?
                );
            } else {
                print_run(&r);
            }
        }
        Scenario::Compare => {
            let shm = run_one(&RunConfig {
                transport: Transport::Shm,
                ..cfg.clone()
            })?;
            let pipe = run_one(&RunConfig {
                transport: Transport::Pipe,
                ..cfg.clone()
            })?;
            bad += shm.bad_frames + pipe.bad_frames;
            let fps_ratio = shm.consumer_fps_mean / pipe.consumer_fps_mean.max(1e-9);
            let cpu_ratio =
                pipe.cpu_us_per_delivered_frame / shm.cpu_us_per_delivered_frame.max(1e-9);
            if args.json {
                let v = serde_json::json!({
                    "scenario": "compare", "runs": [shm, pipe],
                    "ratios": {"consumer_fps_shm_over_pipe": fps_ratio, "cpu_per_frame_pipe_over_shm": cpu_ratio},
                });
                println!("{}", serde_json::to_string(&v)?);
            } else {
                print_run(&shm);
                print_run(&pipe);
                println!("framebus / pipe: {fps_ratio:.1}x the frames per second per consumer, {cpu_ratio:.1}x less CPU per delivered frame");
            }
        }
        Scenario::Isolation => {
            let r = isolation(&cfg)?;
            bad += r.bad_frames;
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string(
                        &serde_json::json!({"scenario": "isolation", "isolation": r})
                    )?
                );
            } else {
                println!(
                    "isolation: {}x{} at {}, a full-speed `{}` consumer, {:.1} s per phase",
                    r.width,
                    r.height,
                    format!("{} fps", rate_cell(r.fps_target)),
                    r.algo,
                    cfg.duration
                );
                let rows: Vec<Vec<String>> = r
                    .phases
                    .iter()
                    .map(|p| {
                        vec![
                            p.name.to_string(),
                            format!("{:.0}", p.consumer_fps),
                            format!("{:.3}", p.ratio_to_alone),
                            format!("{:.0}", p.producer_fps),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table(
                        &["phase", "consumer fps", "ratio to alone", "producer fps"],
                        &rows
                    )
                );
            }
        }
        Scenario::Sweep => {
            let mut runs = Vec::new();
            for (w, h) in [(640, 480), (1920, 1080), (3840, 2160)] {
                for k in [1, 2, 4, 8] {
                    let r = run_one(&RunConfig {
                        width: w,
                        height: h,
                        consumers: k,
                        ..cfg.clone()
                    })?;
                    bad += r.bad_frames;
                    if !args.json && !std::io::stderr().is_terminal() {
                        eprintln!("bench sweep: {w}x{h} x{k} done");
                    }
                    runs.push(r);
                }
            }
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string(&serde_json::json!({"scenario": "sweep", "runs": runs}))?
                );
            } else {
                let rows: Vec<Vec<String>> = runs
                    .iter()
                    .map(|r| {
                        let p99 = r
                            .processes
                            .iter()
                            .filter_map(|p| p.latency_us)
                            .map(|l| l.p99)
                            .fold(0.0, f64::max);
                        let p50 = r
                            .processes
                            .iter()
                            .filter_map(|p| p.latency_us)
                            .map(|l| l.p50)
                            .fold(0.0, f64::max);
                        vec![
                            format!("{}x{}", r.width, r.height),
                            r.consumers.to_string(),
                            format!("{:.0}", r.memcpy_fps),
                            format!("{:.0}", r.producer_fps),
                            format!("{:.2}", r.producer_vs_memcpy),
                            format!("{:.0}", r.consumer_fps_mean),
                            format!("{p50:.0}"),
                            format!("{p99:.0}"),
                            format!("{:.1}", r.cpu_us_per_delivered_frame),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table(
                        &[
                            "size",
                            "consumers",
                            "memcpy fps",
                            "producer fps",
                            "x ceiling",
                            "consumer fps",
                            "worst p50 us",
                            "worst p99 us",
                            "cpu us/frame"
                        ],
                        &rows
                    )
                );
            }
        }
    }
    Ok(if bad > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn builtin_check(algo: &str) -> anyhow::Result<()> {
    framebus_consumer::builtin(algo)
        .map(drop)
        .context("bad --algo")
}
