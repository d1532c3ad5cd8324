//! `framebus bridge out|in|latency`: carry a bus to other hosts over zenoh
//! (the network ends need the `bridge` feature; see doc/BRIDGE.md).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use framebus_bridge::Compression;
use framebus_consumer::{Consumer, ConsumerConfig};
use serde::Serialize;

use crate::parse::{parse_max_fps, parse_seconds};
use crate::report::{Latencies, LatencyUs};

const BRIDGE_HELP: &str = "Two hosts, camera on A (192.168.1.10), algorithms on B:
  A$ framebus produce --bus cam0 --size 1920x1080 --fps 30
  A$ framebus bridge out --bus cam0 --listen tcp/0.0.0.0:7447 --compress lz4
  B$ framebus bridge in --key framebus/cam0 --bus cam0 --connect tcp/192.168.1.10:7447
  B$ framebus consume --bus cam0 --algo mean          # unchanged consumers

Every pixel format crosses (gray8, gray16 with its significant bits, bgr8,
rgb8): the far bus is created in the camera bus's format and re-created when
it changes.

Either end may listen and the other connect. Multicast scouting is off: the
endpoints are explicit (or in a zenoh --config file). `framebus inspect --bus NAME`
shows a running bridge's counters on either host. See doc/BRIDGE.md.";

/// `framebus bridge`.
#[derive(Debug, Args)]
#[command(after_help = BRIDGE_HELP)]
pub struct BridgeArgs {
    /// Which end.
    #[command(subcommand)]
    pub command: BridgeCommand,
}

/// The ends of a bridge.
#[derive(Debug, Subcommand)]
pub enum BridgeCommand {
    /// Read a local bus as a consumer and publish its frames to other hosts.
    #[command(
        after_help = "Prints `ready bus=NAME key=KEY` once publishing, then `attached bus=NAME WxH\nformat=FORMAT bits=BITS` each time it attaches to the bus's producer (it waits for\none, and re-attaches after a restart). With --json the last stdout line is the\nfinal counters as JSON.\n\nEvery pixel format is carried (gray8, gray16 with its significant bits, bgr8,\nrgb8). A slow link drops frames (newest first); the camera host never waits on it.\n\nExamples:\n  framebus bridge out --bus cam0 --listen tcp/0.0.0.0:7447\n  framebus bridge out --bus cam0 --connect tcp/192.168.1.20:7447 --compress lz4 --max-fps 10"
    )]
    Out(BridgeOutArgs),
    /// Receive frames from `bridge out` and produce them as a local bus.
    #[command(
        after_help = "Prints `ready bus=NAME key=KEY` once subscribed, then `bus bus=NAME WxH instance=ID\nformat=FORMAT bits=BITS` each time it creates the local bus, in the camera bus's\npixel format: at the first frame, and again (consumers re-attach by themselves)\nwhen the camera's geometry, pixel format or producer changes. Frames keep the\ncamera bus's sequence numbers and capture times. With --json the last stdout\nline is the final counters as JSON.\n\nExamples:\n  framebus bridge in --key framebus/cam0 --bus cam0 --connect tcp/192.168.1.10:7447\n  framebus bridge in --key framebus/cam0 --bus cam0-remote --listen tcp/0.0.0.0:7447 --max-consumers 4"
    )]
    In(BridgeInArgs),
    /// Measure frames/s and latency from capture to pin on a (bridged) bus.
    #[command(
        after_help = "Latency here is the consumer's pin time minus the frame's capture time. A bridged\nbus keeps the camera host's capture times, so the figure is end to end when both\nends run on one machine (one CLOCK_MONOTONIC); across machines it is meaningless.\n\nExample:\n  framebus bridge latency --bus cam0-remote --duration 10 --warmup 2 --json"
    )]
    Latency(BridgeLatencyArgs),
}

/// Where the other end is.
#[derive(Debug, Args)]
pub struct NetArgs {
    /// Listen for the other end on ENDPOINT, e.g. tcp/0.0.0.0:7447
    /// (repeatable).
    #[arg(long, value_name = "ENDPOINT")]
    pub listen: Vec<String>,
    /// Connect to the other end at ENDPOINT, e.g. tcp/192.168.1.10:7447
    /// (repeatable); retried with backoff until it answers.
    #[arg(long, value_name = "ENDPOINT")]
    pub connect: Vec<String>,
    /// A zenoh configuration file (JSON5) for anything the options do not
    /// cover; --listen and --connect add to its endpoints. Multicast
    /// scouting stays off unless the file turns it on.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// `--compress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompressArg {
    /// Raw pixels.
    None,
    /// lz4 (fast; worth it on links slower than the frames).
    Lz4,
}

/// `framebus bridge out`.
#[derive(Debug, Args)]
pub struct BridgeOutArgs {
    /// The local bus to read.
    #[arg(long)]
    pub bus: String,
    /// The zenoh key to publish under (default: framebus/BUS).
    #[arg(long, value_name = "KEYEXPR")]
    pub key: Option<String>,
    /// Send at most this many frames per second (always the newest); 0 =
    /// no limit (the default).
    #[arg(long, value_parser = parse_max_fps)]
    pub max_fps: Option<f64>,
    /// How to send the pixels.
    #[arg(long, value_enum, default_value_t = CompressArg::None)]
    pub compress: CompressArg,
    /// Where the other end is.
    #[command(flatten)]
    pub net: NetArgs,
    /// Stop after this many seconds.
    #[arg(long, value_parser = parse_seconds)]
    pub duration: Option<f64>,
    /// Print the final counters as JSON (the last stdout line).
    #[arg(long)]
    pub json: bool,
}

/// `framebus bridge in`.
#[derive(Debug, Args)]
pub struct BridgeInArgs {
    /// The zenoh key `bridge out` publishes under (framebus/BUS by default
    /// there).
    #[arg(long, value_name = "KEYEXPR")]
    pub key: String,
    /// The local bus to produce.
    #[arg(long)]
    pub bus: String,
    /// Most local consumers attached at once (1-63).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=63))]
    pub max_consumers: u32,
    /// Frames each local consumer may hold pinned at once (1-8); 2 by
    /// default, as for `produce`.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=8))]
    pub pins_per_consumer: u32,
    /// Where the other end is.
    #[command(flatten)]
    pub net: NetArgs,
    /// Stop after this many seconds.
    #[arg(long, value_parser = parse_seconds)]
    pub duration: Option<f64>,
    /// Print the final counters as JSON (the last stdout line).
    #[arg(long)]
    pub json: bool,
}

/// `framebus bridge latency`.
#[derive(Debug, Args)]
pub struct BridgeLatencyArgs {
    /// The bus to measure.
    #[arg(long)]
    pub bus: String,
    /// How long to measure, in seconds.
    #[arg(long, default_value_t = 10.0, value_parser = parse_seconds)]
    pub duration: f64,
    /// Leave the first SECONDS out of the figures.
    #[arg(long, value_parser = parse_seconds)]
    pub warmup: Option<f64>,
    /// Wait up to this many seconds for the bus to appear.
    #[arg(long, default_value_t = 30.0, value_parser = parse_seconds)]
    pub wait: f64,
    /// Print the figures as JSON (the last stdout line).
    #[arg(long)]
    pub json: bool,
}

/// Runs `framebus bridge out|in|latency`.
pub fn run(args: BridgeArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        BridgeCommand::Out(a) => net::out(a),
        BridgeCommand::In(a) => net::run_in(a),
        BridgeCommand::Latency(a) => latency(a),
    }
}

impl From<CompressArg> for Compression {
    fn from(c: CompressArg) -> Self {
        match c {
            CompressArg::None => Compression::None,
            CompressArg::Lz4 => Compression::Lz4,
        }
    }
}

/// Prints a line on stdout at once (scripts and tests wait for it).
fn say(line: &str) -> anyhow::Result<()> {
    crate::out::write_all(format!("{line}\n").as_bytes())
}

#[cfg(feature = "bridge")]
mod net {
    use super::*;
    use framebus_bridge::net::{default_key, Event, InOptions, NetOptions, OutOptions};
    use framebus_bridge::BridgeStats;
    use framebus_producer::ProducerConfig;

    fn net_options(a: NetArgs) -> NetOptions {
        NetOptions {
            listen: a.listen,
            connect: a.connect,
            config_file: a.config,
        }
    }

    /// Prints an event's line; the first failed stdout write is kept in
    /// `failed`, and ends the command once the bridge returns.
    fn print_event(e: Event, failed: &mut Option<anyhow::Error>) {
        let line = match e {
            Event::Ready { key, bus } => format!("ready bus={bus} key={key}"),
            Event::Attached {
                bus,
                width,
                height,
                format,
                significant_bits,
            } => {
                format!("attached bus={bus} {width}x{height} format={format} bits={significant_bits}")
            }
            Event::BusCreated {
                bus,
                width,
                height,
                format,
                significant_bits,
                instance_id,
            } => format!(
                "bus bus={bus} {width}x{height} instance={instance_id:016x} format={format} bits={significant_bits}"
            ),
        };
        if let Err(e) = say(&line) {
            failed.get_or_insert(e);
        }
    }

    fn finish(stats: &BridgeStats, json: bool) -> anyhow::Result<ExitCode> {
        if json {
            say(&crate::report::terminal_safe_json(&serde_json::to_string(
                stats,
            )?))?;
        } else {
            say(&format!(
                "bridge {} bus {} key {}: {} frames {}, {} dropped, {:.1} MB/s at the end",
                stats.role.as_str(),
                stats.bus,
                stats.key,
                stats.frames(),
                match stats.role {
                    framebus_bridge::Role::Out => "sent",
                    framebus_bridge::Role::In => "published",
                },
                stats.dropped(),
                stats.bytes_per_s / 1e6
            ))?;
        }
        Ok(ExitCode::SUCCESS)
    }

    pub(super) fn out(a: BridgeOutArgs) -> anyhow::Result<ExitCode> {
        let bus = super::super::bus_name(&a.bus)?;
        let opts = OutOptions {
            key: a.key.clone().unwrap_or_else(|| default_key(&bus)),
            bus,
            max_fps: crate::parse::limit(a.max_fps),
            compression: a.compress.into(),
            net: net_options(a.net),
            duration: a.duration.map(Duration::from_secs_f64),
        };
        let stop = super::super::stop_flag()?;
        let mut failed = None;
        let stats = framebus_bridge::net::run_out(&opts, &stop, |e| print_event(e, &mut failed))
            .with_context(|| format!("bridge out of bus {} stopped", opts.bus))?;
        if let Some(e) = failed {
            return Err(e);
        }
        finish(&stats, a.json)
    }

    pub(super) fn run_in(a: BridgeInArgs) -> anyhow::Result<ExitCode> {
        let bus = super::super::bus_name(&a.bus)?;
        let opts = InOptions {
            key: a.key.clone(),
            producer: ProducerConfig {
                max_consumers: a.max_consumers,
                pins_per_consumer: a.pins_per_consumer,
                ..ProducerConfig::new(bus.clone())
            },
            net: net_options(a.net),
            duration: a.duration.map(Duration::from_secs_f64),
        };
        let stop = super::super::stop_flag()?;
        let mut failed = None;
        let stats = framebus_bridge::net::run_in(&opts, &stop, |e| print_event(e, &mut failed))
            .with_context(|| format!("bridge in to bus {bus} stopped"))?;
        if let Some(e) = failed {
            return Err(e);
        }
        finish(&stats, a.json)
    }
}

#[cfg(not(feature = "bridge"))]
mod net {
    use super::*;

    fn missing() -> anyhow::Error {
        anyhow::anyhow!(
            "this framebus was built without the network bridge: rebuild it with the feature, `cargo build --release --features bridge` (or `cargo install --path . --features bridge`)"
        )
    }

    pub(super) fn out(_: BridgeOutArgs) -> anyhow::Result<ExitCode> {
        Err(missing())
    }

    pub(super) fn run_in(_: BridgeInArgs) -> anyhow::Result<ExitCode> {
        Err(missing())
    }
}

/// What `bridge latency --json` prints.
#[derive(Debug, Serialize)]
struct LatencyReport {
    bus: String,
    frames: u64,
    seconds: f64,
    fps: f64,
    /// Capture (camera host) to pin (here), microseconds.
    capture_to_pin_us: LatencyUs,
    /// Publish on this bus to pin, microseconds (the last hop only).
    publish_to_pin_us: LatencyUs,
    first_seq: u64,
    last_seq: u64,
    /// Sequence numbers skipped between frames taken (frames this consumer
    /// never saw: dropped upstream or replaced by newer ones).
    seq_gaps: u64,
    /// Frames whose sequence number was not above the previous one's on
    /// the same bus instance (must be 0).
    out_of_order: u64,
    reattached: u64,
}

/// `framebus bridge latency`: an ordinary consumer that records capture ->
/// pin and publish -> pin for every frame.
fn latency(a: BridgeLatencyArgs) -> anyhow::Result<ExitCode> {
    let bus = super::bus_name(&a.bus)?;
    let stop = super::stop_flag()?;
    let config = ConsumerConfig {
        name: "latency".into(),
        ..ConsumerConfig::new(bus.clone())
    };
    let mut consumer = Consumer::attach_wait(config, Duration::from_secs_f64(a.wait))
        .with_context(|| format!("cannot attach to bus {bus}"))?;
    say(&format!("attached bus={bus}"))?;
    let mut started = Instant::now();
    let end = started + Duration::from_secs_f64(a.duration + a.warmup.unwrap_or(0.0));
    let mut warmup_end = a.warmup.map(|w| started + Duration::from_secs_f64(w));
    let (mut capture, mut publish) = (Latencies::new(), Latencies::new());
    let (mut frames, mut first_seq, mut last_seq, mut gaps, mut out_of_order) = (0u64, 0, 0, 0, 0);
    let mut instance = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= end {
            break;
        }
        if warmup_end.is_some_and(|w| now >= w) {
            warmup_end = None;
            started = now;
            (capture, publish) = (Latencies::new(), Latencies::new());
            (frames, first_seq, gaps, out_of_order) = (0, 0, 0, 0);
        }
        let Some(frame) = consumer.next_frame(Some((end - now).min(Duration::from_millis(100))))?
        else {
            continue;
        };
        let pinned = super::monotonic_ns();
        capture.record(pinned.saturating_sub(frame.capture_ns()));
        publish.record(frame.latency_ns());
        let seq = frame.seq();
        if frame.instance_id() == instance {
            if seq <= last_seq {
                out_of_order += 1;
            } else if first_seq != 0 {
                gaps += seq - last_seq - 1;
            }
        }
        instance = frame.instance_id();
        if first_seq == 0 {
            first_seq = seq;
        }
        last_seq = seq;
        frames += 1;
    }
    let seconds = started.elapsed().as_secs_f64();
    let report = LatencyReport {
        bus: bus.to_string(),
        frames,
        seconds,
        fps: frames as f64 / seconds.max(1e-9),
        capture_to_pin_us: capture.summary(),
        publish_to_pin_us: publish.summary(),
        first_seq,
        last_seq,
        seq_gaps: gaps,
        out_of_order,
        reattached: consumer.reattached(),
    };
    if a.json {
        say(&serde_json::to_string(&report)?)?;
    } else {
        let (c, p) = (report.capture_to_pin_us, report.publish_to_pin_us);
        say(&format!(
            "bus {}: {} frames in {:.1} s ({:.1} fps); capture -> pin p50 {:.0} us p99 {:.0} us max {:.0} us; publish -> pin p50 {:.0} us p99 {:.0} us; seq {}..{}, {} skipped, {} out of order",
            report.bus, report.frames, report.seconds, report.fps, c.p50, c.p99, c.max, p.p50, p.p99, report.first_seq, report.last_seq, report.seq_gaps, report.out_of_order
        ))?;
    }
    Ok(if report.out_of_order > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use clap::{Parser, Subcommand};

    use super::*;

    /// The command line cut down to the `bridge` subcommand, mounted as
    /// `crate::cli::Cli` mounts it (whose own tests parse it whole), so that
    /// these tests need nothing from above `cmd`.
    #[derive(Debug, Parser)]
    #[command(name = "framebus")]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    #[derive(Debug, Subcommand)]
    enum Command {
        Bridge(BridgeArgs),
    }

    #[test]
    fn parses_the_documented_commands() {
        let ok = [
            vec![
                "framebus",
                "bridge",
                "out",
                "--bus",
                "cam0",
                "--listen",
                "tcp/0.0.0.0:7447",
            ],
            vec![
                "framebus",
                "bridge",
                "out",
                "--bus",
                "cam0",
                "--key",
                "site/cam0",
                "--connect",
                "tcp/10.0.0.2:7447",
                "--connect",
                "tcp/10.0.0.3:7447",
                "--compress",
                "lz4",
                "--max-fps",
                "10",
                "--config",
                "z.json5",
                "--json",
            ],
            vec![
                "framebus",
                "bridge",
                "in",
                "--key",
                "framebus/cam0",
                "--bus",
                "cam0",
                "--connect",
                "tcp/10.0.0.1:7447",
                "--max-consumers",
                "4",
                "--pins-per-consumer",
                "2",
                "--duration",
                "5",
            ],
            vec![
                "framebus",
                "bridge",
                "latency",
                "--bus",
                "cam0",
                "--duration",
                "3",
                "--warmup",
                "1",
                "--json",
            ],
        ];
        for args in ok {
            Cli::try_parse_from(&args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        }
        let cli = Cli::try_parse_from([
            "framebus",
            "bridge",
            "out",
            "--bus",
            "b",
            "--compress",
            "lz4",
            "--listen",
            "tcp/[::]:1",
        ])
        .unwrap();
        let Command::Bridge(BridgeArgs {
            command: BridgeCommand::Out(a),
        }) = cli.command
        else {
            panic!("not bridge out");
        };
        assert_eq!(Compression::from(a.compress), Compression::Lz4);
        assert_eq!(a.net.listen, ["tcp/[::]:1"]);
        assert!(a.key.is_none());
    }

    #[test]
    fn rejects_bad_values() {
        let bad = [
            vec![
                "framebus",
                "bridge",
                "out",
                "--bus",
                "b",
                "--compress",
                "gzip",
            ],
            vec!["framebus", "bridge", "out", "--bus", "b", "--max-fps", "-1"],
            vec!["framebus", "bridge", "out"],
            vec!["framebus", "bridge", "in", "--bus", "b"],
            vec![
                "framebus",
                "bridge",
                "in",
                "--key",
                "k",
                "--bus",
                "b",
                "--max-consumers",
                "64",
            ],
            vec![
                "framebus",
                "bridge",
                "latency",
                "--bus",
                "b",
                "--duration",
                "-1",
            ],
            vec!["framebus", "bridge"],
        ];
        for args in bad {
            assert!(Cli::try_parse_from(&args).is_err(), "{args:?}");
        }
    }
}
