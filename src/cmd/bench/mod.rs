//! `framebus bench`: throughput, latency, CPU and isolation, measured with
//! real processes of this binary (as a user would run them), against the
//! memcpy ceiling (measured in the same run) and the naive pipe transport.
//!
//! This module holds the arguments and the scenario dispatch; each run is
//! measured in `shm` or `pipe`, the isolation phases in `isolation`.
//!
//! On Windows the same scenarios run, without what needs Linux or Unix:
//! CPU and peak RSS (from /proc), `--producer-cpu` (sched_setaffinity) and
//! the isolation phase beside a stopped consumer (SIGSTOP); the output says
//! so where those figures would be.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::parse::{parse_fps, parse_max_fps, parse_seconds, parse_size};
use figures::RunResult;

mod ceiling;
mod figures;
mod isolation;
mod output;
mod pipe;
mod processes;
mod procfs;
mod shm;

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
    #[arg(long, default_value = "gray8", value_name = "gray8|gray16|bgr8|rgb8", value_parser = crate::parse::parse_format)]
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

fn run_one(cfg: &RunConfig) -> anyhow::Result<RunResult> {
    match cfg.transport {
        Transport::Shm => shm::run_shm(cfg),
        Transport::Pipe => pipe::run_pipe(cfg),
    }
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
        #[cfg(unix)]
        procfs::cpu_split(cpu)?;
        #[cfg(not(unix))]
        bail!("--producer-cpu {cpu}: pinning processes to CPUs is Linux-only (sched_setaffinity); not available on this OS");
    }
    let mut bad = 0;
    match args.scenario {
        Scenario::Throughput => {
            let r = run_one(&cfg)?;
            bad += r.bad_frames;
            output::throughput(&r, args.json)?;
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
            output::compare(shm, pipe, args.json)?;
        }
        Scenario::Isolation => {
            let r = isolation::isolation(&cfg)?;
            bad += r.bad_frames;
            output::isolation(&r, cfg.duration, args.json)?;
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
            output::sweep(&runs, args.json)?;
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
