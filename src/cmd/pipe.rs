//! The naive alternative `framebus bench --transport pipe` measures against:
//! the producer copies every frame in full into one pipe per consumer
//! (blocking writes, so the slowest consumer paces everyone), and each
//! consumer copies it out of the pipe before running the same algorithms
//! as `framebus consume`. Hidden subcommands `pipe-produce` and
//! `pipe-consume`.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{ChildStdin, Command, ExitCode, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use framebus_consumer::{builtin, BusInfo, FrameView};
use serde::{Deserialize, Serialize};
use shm_layout::pattern::Pattern;
use shm_layout::{Layout, LayoutRequest};

use super::child::Reaper;
use super::consume::ConsumeSummary;
use super::monotonic_ns;
use crate::parse::{parse_max_fps, parse_seconds, parse_size};
use crate::report::{Latencies, RateMeter};

/// Bytes of the per-frame header: seq, capture_ns, publish_ns (u64),
/// width, height, stride, zero (u32), little-endian.
const HEADER_LEN: usize = 40;

/// `framebus pipe-produce`.
#[derive(Debug, Args)]
pub struct PipeProduceArgs {
    /// Frame size.
    #[arg(long, default_value = "640x480", value_parser = parse_size)]
    pub size: (u32, u32),
    /// Frames per second; 0 = as fast as the slowest consumer allows.
    #[arg(long, default_value_t = 0.0)]
    pub fps: f64,
    /// Consumer processes to start.
    #[arg(long, default_value_t = 1)]
    pub consumers: u32,
    /// Their algorithm.
    #[arg(long, default_value = "mean")]
    pub algo: String,
    /// Their rate limits, comma-separated, cycled over the consumers.
    #[arg(long, value_delimiter = ',', value_parser = parse_max_fps)]
    pub max_fps: Option<Vec<f64>>,
    /// Leave the first SECONDS out of the figures.
    #[arg(long, value_parser = parse_seconds)]
    pub warmup: Option<f64>,
    /// Run this long (warm-up included); default: until SIGINT/SIGTERM.
    #[arg(long, value_parser = parse_seconds)]
    pub duration: Option<f64>,
}

/// `framebus pipe-consume`: reads frames from stdin.
#[derive(Debug, Args)]
pub struct PipeConsumeArgs {
    /// Algorithm: mean | verify | busy:MS.
    #[arg(long, default_value = "mean")]
    pub algo: String,
    /// Process at most this many frames per second (all are still read).
    #[arg(long)]
    pub max_fps: Option<f64>,
    /// Leave the first SECONDS out of the figures.
    #[arg(long, value_parser = parse_seconds)]
    pub warmup: Option<f64>,
}

/// What `pipe-produce` prints last: its own figures and its consumers'.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PipeSummary {
    pub frames: u64,
    pub seconds: f64,
    pub fps: f64,
    pub publish_us_mean: f64,
    pub consumer_pids: Vec<u32>,
    pub consumers: Vec<ConsumeSummary>,
}

pub fn produce(args: PipeProduceArgs) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("cannot find the framebus binary")?;
    let (width, height) = args.size;
    let layout = Layout::compute(LayoutRequest {
        width,
        height,
        max_consumers: 1,
        pins_per_consumer: 1,
        format: shm_layout::PixelFormat::Gray8,
        significant_bits: 0,
    })?;
    let stride = layout.stride as usize;
    let rates = args.max_fps.clone().unwrap_or_default();
    let mut children = Vec::new();
    for i in 0..args.consumers as usize {
        let mut cmd = Command::new(&exe);
        cmd.args(["pipe-consume", "--algo", &args.algo])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        if let Some(w) = args.warmup {
            cmd.args(["--warmup", &w.to_string()]);
        }
        if let Some(r) = rates.get(i % rates.len().max(1)) {
            cmd.args(["--max-fps", &r.to_string()]);
        }
        let mut child = Reaper(Some(cmd.spawn().context("cannot start a pipe consumer")?));
        let stdin = child
            .0
            .as_mut()
            .and_then(|c| c.stdin.take())
            .context("consumer stdin")?;
        let stdout = child
            .0
            .as_mut()
            .and_then(|c| c.stdout.take())
            .context("consumer stdout")?;
        children.push((child, Some(stdin), stdout));
    }
    let pids: Vec<u32> = children.iter().map(|(c, _, _)| c.pid()).collect();
    let pid_list = pids
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",");
    println!("ready pids={pid_list}");
    std::io::stdout().flush()?;

    let stop = super::stop_flag()?;
    let pattern = Pattern::new(width);
    let mut frame = vec![0u8; HEADER_LEN + layout.frame_len()];
    let start = Instant::now();
    let end = args.duration.map(|d| start + Duration::from_secs_f64(d));
    let mut warmup_end = args.warmup.map(|w| start + Duration::from_secs_f64(w));
    let period = (args.fps > 0.0).then(|| Duration::from_secs_f64(1.0 / args.fps));
    let mut next = start;
    let (mut frames, mut publish_ns, mut window_start, mut seq) = (0u64, 0u64, start, 0u64);
    let mut rate = RateMeter::default();
    while !stop.load(Ordering::Relaxed) && end.is_none_or(|e| Instant::now() < e) {
        if warmup_end.is_some_and(|w| Instant::now() >= w) {
            warmup_end = None;
            (frames, publish_ns, window_start) = (0, 0, Instant::now());
            rate = RateMeter::default();
        }
        if let Some(p) = period {
            let now = Instant::now();
            if now < next {
                std::thread::sleep(next - now);
            }
            next = if Instant::now() > next + p {
                Instant::now() + p
            } else {
                next + p
            };
        }
        seq += 1;
        let t0 = monotonic_ns();
        pattern.fill(seq, &mut frame[HEADER_LEN..], stride, height);
        let published = monotonic_ns();
        write_header(
            &mut frame[..HEADER_LEN],
            seq,
            t0,
            published,
            width,
            height,
            stride as u32,
        );
        for (_, stdin, _) in &mut children {
            let gone = stdin
                .as_mut()
                .is_some_and(|s: &mut ChildStdin| s.write_all(&frame).is_err());
            if gone {
                *stdin = None; // a consumer died: stop feeding it
            }
        }
        frames += 1;
        rate.tick(Instant::now());
        publish_ns += monotonic_ns() - t0;
    }
    let seconds = window_start.elapsed().as_secs_f64();
    let mut consumers = Vec::new();
    for (mut child, stdin, stdout) in children {
        drop(stdin); // EOF: the consumer prints its summary and exits
        let last = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .last()
            .unwrap_or_default();
        child.wait(Duration::from_secs(30))?;
        consumers.push(
            serde_json::from_str(&last)
                .with_context(|| format!("a pipe consumer printed no summary: {last:?}"))?,
        );
    }
    let summary = PipeSummary {
        frames,
        seconds,
        fps: rate.fps(),
        publish_us_mean: if frames == 0 {
            0.0
        } else {
            publish_ns as f64 / frames as f64 / 1e3
        },
        consumer_pids: pids,
        consumers,
    };
    println!("{}", serde_json::to_string(&summary)?);
    Ok(ExitCode::SUCCESS)
}

fn write_header(h: &mut [u8], seq: u64, capture: u64, publish: u64, w: u32, ht: u32, stride: u32) {
    h[0..8].copy_from_slice(&seq.to_le_bytes());
    h[8..16].copy_from_slice(&capture.to_le_bytes());
    h[16..24].copy_from_slice(&publish.to_le_bytes());
    h[24..28].copy_from_slice(&w.to_le_bytes());
    h[28..32].copy_from_slice(&ht.to_le_bytes());
    h[32..36].copy_from_slice(&stride.to_le_bytes());
    h[36..40].copy_from_slice(&0u32.to_le_bytes());
}

pub fn consume(args: PipeConsumeArgs) -> anyhow::Result<ExitCode> {
    let mut algo = builtin(&args.algo).context("bad --algo")?;
    let mut input = std::io::stdin().lock();
    let mut header = [0u8; HEADER_LEN];
    let mut pixels = Vec::new();
    let mut latencies = Latencies::new();
    let mut started = Instant::now();
    let mut warmup_end = args.warmup.map(|w| started + Duration::from_secs_f64(w));
    let period_ns = args.max_fps.filter(|f| *f > 0.0).map(|f| (1e9 / f) as u64);
    let (mut frames, mut next_due, mut set_up) = (0u64, 0u64, false);
    let mut rate = RateMeter::default();
    loop {
        match input.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e).context("cannot read a frame from stdin"),
        }
        let u64_at = |i: usize| u64::from_le_bytes(header[i..i + 8].try_into().unwrap_or_default());
        let u32_at = |i: usize| u32::from_le_bytes(header[i..i + 4].try_into().unwrap_or_default());
        let (seq, capture_ns, publish_ns) = (u64_at(0), u64_at(8), u64_at(16));
        let (width, height, stride) = (u32_at(24), u32_at(28), u32_at(32));
        if stride < width
            || width == 0
            || height == 0
            || u64::from(stride) * u64::from(height) > 1 << 30
        {
            bail!("bad frame header on stdin: {width}x{height} stride {stride}");
        }
        pixels.resize(stride as usize * height as usize, 0);
        input
            .read_exact(&mut pixels)
            .context("a frame was cut short on stdin")?;
        let received = monotonic_ns();
        if warmup_end.is_some_and(|w| Instant::now() >= w) {
            warmup_end = None;
            (frames, started, latencies) = (0, Instant::now(), Latencies::new());
            rate = RateMeter::default();
        }
        if let Some(p) = period_ns {
            if received < next_due {
                continue; // read, but not processed: over this consumer's rate
            }
            next_due = if next_due == 0 || received > next_due + p {
                received + p
            } else {
                next_due + p
            };
        }
        if !set_up {
            let layout = Layout::compute(LayoutRequest {
                width,
                height,
                max_consumers: 1,
                pins_per_consumer: 1,
                format: shm_layout::PixelFormat::Gray8,
                significant_bits: 0,
            })?;
            let info = BusInfo {
                layout,
                instance_id: 0,
                producer_pid: 0,
                entry: 0,
                generation: 0,
            };
            algo.setup(&info)
                .map_err(|m| anyhow::anyhow!("algorithm setup failed: {m}"))?;
            set_up = true;
        }
        latencies.record(received.saturating_sub(publish_ns));
        let view = FrameView {
            width,
            height,
            stride,
            format: shm_layout::PixelFormat::Gray8,
            significant_bits: 8,
            seq,
            capture_ns,
            pixels: &pixels,
        };
        algo.process(&view)
            .map_err(|m| anyhow::anyhow!("algorithm failed on frame {seq}: {m}"))?;
        frames += 1;
        rate.tick(Instant::now());
    }
    algo.teardown()
        .map_err(|m| anyhow::anyhow!("algorithm teardown failed: {m}"))?;
    let seconds = started.elapsed().as_secs_f64();
    let summary = algo.summary();
    let report = ConsumeSummary {
        bus: "pipe".into(),
        algo: args.algo,
        frames,
        seconds,
        fps: rate.fps(),
        bad_frames: summary.bad_frames,
        reattached: 0,
        coalesced: 0,
        // A pipe delivers every frame.
        skipped: 0,
        latency_us: latencies.summary(),
        last_value: summary.last_value,
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(ExitCode::SUCCESS)
}
