//! The command line, as clap derives it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// A multi-consumer camera frame bus over shared memory.
///
/// A producer writes frames into shared memory slots; consumers at their own
/// rates pin the newest frame and read it zero-copy. Logs go to stderr
/// (set RUST_LOG=info or debug for more).
#[derive(Debug, Parser)]
#[command(name = "framebus", version, propagate_version = true)]
#[command(
    after_help = "Examples:\n  framebus demo\n  framebus produce --bus cam0 --size 1920x1080 --fps 30\n  framebus consume --bus cam0 --algo verify --max-fps 15\n  framebus inspect --bus cam0 --json"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a bus and publish frames into it until stopped (Ctrl-C).
    #[command(
        after_help = "Prints `ready bus=NAME` on stdout once consumers may attach.\n\nExamples:\n  framebus produce --bus cam0\n  framebus produce --bus bench --size 1920x1080 --fps 0 --max-consumers 4\n  framebus produce --bus diff --pins-per-consumer 2   # consumers may hold 2 frames"
    )]
    Produce(ProduceArgs),
    /// Attach to a bus and run an algorithm on its frames.
    #[command(
        after_help = "With --json, the last stdout line is a JSON object: frames, fps, bad_frames,\nreattached, coalesced, latency_us {p50, p90, p99, p999, max} (publish -> frame pinned).\n\nExamples:\n  framebus consume --bus cam0 --algo verify\n  framebus consume --bus cam0 --algo busy:20 --max-fps 5 --duration 10 --json"
    )]
    Consume(ConsumeArgs),
    /// Show a bus: geometry, every slot and every consumer entry.
    #[command(
        after_help = "Reads shared memory only: it never registers or disturbs the bus.\n\nExamples:\n  framebus inspect --bus cam0\n  framebus inspect --bus cam0 --json | jq '.slots[].pins'"
    )]
    Inspect(InspectArgs),
    /// Run a fake 640x480 camera at 60 fps with consumers at 60, 15 and 2 fps
    /// and print each process's rate and latency.
    Demo(DemoArgs),
    /// Measure throughput, latency, CPU and isolation against the memcpy
    /// ceiling and a plain pipe.
    #[command(after_help = BENCH_HELP)]
    Bench(crate::cmd::BenchArgs),
    /// Write the newest frame of a bus to a PNG file.
    Snapshot(crate::cmd::SnapshotArgs),
    /// Kill, stop and restart consumers and producers at random while
    /// verifying every frame; report what was lost and left behind.
    Chaos(crate::cmd::ChaosArgs),
    /// Remove what a crashed producer left behind (only when it is gone).
    Clean(crate::cmd::CleanArgs),
    /// (internal) the pipe transport's producer, for `bench --transport pipe`.
    #[command(hide = true)]
    PipeProduce(crate::cmd::PipeProduceArgs),
    /// (internal) the pipe transport's consumer, for `bench --transport pipe`.
    #[command(hide = true)]
    PipeConsume(crate::cmd::PipeConsumeArgs),
}

const BENCH_HELP: &str = "Scenarios:
  throughput  one producer and --consumers processes (default)
  compare     throughput over shared memory, then over pipes, and their ratios
  isolation   a full-speed consumer alone, beside a 1 fps one, beside a stopped one,
              beside one killed mid-run: its rate in each phase as a ratio to the first
  sweep       640x480, 1920x1080, 3840x2160 x 1, 2, 4, 8 consumers in one table

Examples:
  framebus bench --size 1920x1080 --consumers 4 --algo mean
  framebus bench --scenario compare --consumers 4
  framebus bench --size 1920x1080 --consumers 4 --fps 1000 --json
  framebus bench --scenario isolation";

/// `framebus produce`.
#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// Bus name: 1-64 characters of A-Z a-z 0-9 _ . -
    #[arg(long)]
    pub bus: String,
    /// Frame source: `fake` (a self-checking test pattern).
    #[arg(long, default_value = "fake")]
    pub source: String,
    /// Frame size as WIDTHxHEIGHT.
    #[arg(long, default_value = "640x480", value_parser = parse_size)]
    pub size: (u32, u32),
    /// Frames per second; 0 = as fast as possible.
    #[arg(long, default_value_t = 30.0, value_parser = parse_fps)]
    pub fps: f64,
    /// Most consumers attached at once (1-63).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=63))]
    pub max_consumers: u32,
    /// Frames each consumer may hold pinned at once (1-8); the bus has
    /// max_consumers * K + 2 slots.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=8))]
    pub pins_per_consumer: u32,
    /// Stop after this many frames.
    #[arg(long)]
    pub frames: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long, value_parser = parse_seconds)]
    pub duration: Option<f64>,
    /// Leave the first SECONDS out of the summary's figures (steady state only).
    #[arg(long, value_parser = parse_seconds)]
    pub warmup: Option<f64>,
    /// Print a JSON summary as the last stdout line at exit.
    #[arg(long)]
    pub json: bool,
}

/// `framebus consume`.
#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// Bus name.
    #[arg(long)]
    pub bus: String,
    /// Algorithm: mean | verify | busy:MS.
    #[arg(long, default_value = "mean")]
    pub algo: String,
    /// Process at most this many frames per second (always the newest).
    #[arg(long, value_parser = parse_positive_fps)]
    pub max_fps: Option<f64>,
    /// Stop after this many frames.
    #[arg(long)]
    pub frames: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long, value_parser = parse_seconds)]
    pub duration: Option<f64>,
    /// Leave the first SECONDS out of the summary's figures (steady state only).
    #[arg(long, value_parser = parse_seconds)]
    pub warmup: Option<f64>,
    /// Wait up to this many seconds for the bus to appear instead of failing.
    #[arg(long, value_parser = parse_seconds)]
    pub wait: Option<f64>,
    /// Name shown by `inspect` (16 bytes kept).
    #[arg(long)]
    pub name: Option<String>,
    /// Print a JSON summary as the last stdout line at exit.
    #[arg(long)]
    pub json: bool,
}

/// `framebus inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Bus name.
    #[arg(long)]
    pub bus: String,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// `framebus demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How long the consumers run, in seconds.
    #[arg(long, default_value_t = 10.0, value_parser = parse_seconds)]
    pub seconds: f64,
    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
    /// The framebus binary to run as producer and consumers (default: this one).
    #[arg(long, hide = true)]
    pub exe: Option<PathBuf>,
}

/// Parses `WIDTHxHEIGHT`.
pub fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let err = || format!("{s:?} is not a size: use WIDTHxHEIGHT, e.g. 640x480 (1 to 16384 each)");
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(err)?;
    let (w, h): (u32, u32) = (
        w.trim().parse().map_err(|_| err())?,
        h.trim().parse().map_err(|_| err())?,
    );
    if w == 0 || h == 0 || w > 16384 || h > 16384 {
        return Err(err());
    }
    Ok((w, h))
}

pub fn parse_fps(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if f.is_finite() && (0.0..=100_000.0).contains(&f) => Ok(f),
        _ => Err(format!(
            "{s:?} is not a frame rate: use a number from 0 (unpaced) to 100000"
        )),
    }
}

/// Parses a comma-separated list of frame rates above 0.
pub fn parse_fps_list(s: &str) -> Result<Vec<f64>, String> {
    s.split(',').map(|x| parse_positive_fps(x.trim())).collect()
}

pub fn parse_positive_fps(s: &str) -> Result<f64, String> {
    match parse_fps(s)? {
        f if f > 0.0 => Ok(f),
        _ => Err("--max-fps must be above 0 (leave it out for no limit)".into()),
    }
}

pub fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if f.is_finite() && f > 0.0 && f <= 1e7 => Ok(f),
        _ => Err(format!(
            "{s:?} is not a duration: use a number of seconds above 0"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_the_documented_commands() {
        let ok = [
            vec![
                "framebus",
                "produce",
                "--bus",
                "b",
                "--size",
                "1920x1080",
                "--fps",
                "0",
                "--max-consumers",
                "4",
                "--pins-per-consumer",
                "2",
                "--frames",
                "10",
            ],
            vec![
                "framebus",
                "consume",
                "--bus",
                "b",
                "--algo",
                "busy:5",
                "--max-fps",
                "15",
                "--frames",
                "3",
                "--duration",
                "2",
                "--json",
            ],
            vec!["framebus", "inspect", "--bus", "b", "--json"],
            vec!["framebus", "demo", "--seconds", "3"],
        ];
        for args in ok {
            Cli::try_parse_from(&args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        }
    }

    #[test]
    fn rejects_bad_values() {
        let bad = [
            vec!["framebus", "produce", "--bus", "b", "--size", "0x0"],
            vec![
                "framebus",
                "produce",
                "--bus",
                "b",
                "--size",
                "100000x100000",
            ],
            vec!["framebus", "produce", "--bus", "b", "--size", "640"],
            vec!["framebus", "produce", "--bus", "b", "--max-consumers", "64"],
            vec![
                "framebus",
                "produce",
                "--bus",
                "b",
                "--pins-per-consumer",
                "0",
            ],
            vec!["framebus", "produce", "--bus", "b", "--fps", "-1"],
            vec!["framebus", "consume", "--bus", "b", "--max-fps", "0"],
            vec!["framebus", "consume", "--bus", "b", "--duration", "nan"],
        ];
        for args in bad {
            assert!(Cli::try_parse_from(&args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("640x480"), Ok((640, 480)));
        assert_eq!(parse_size("1920X1080"), Ok((1920, 1080)));
        assert!(parse_size("x").is_err());
    }
}
