//! The command line, as clap derives it.

use std::path::PathBuf;
use std::sync::LazyLock;

use clap::{Args, Parser, Subcommand};

use crate::parse::{
    parse_format, parse_fps, parse_group, parse_max_fps, parse_mode, parse_seconds, parse_size,
};

/// A multi-consumer camera frame bus over shared memory.
///
/// A producer writes frames into shared memory slots; consumers at their own
/// rates pin the newest frame and read it zero-copy. Logs go to stderr
/// (set RUST_LOG=info or debug for more).
#[derive(Debug, Parser)]
#[command(name = "framebus", version = VERSION.as_str(), propagate_version = true)]
#[command(
    after_help = "Examples:\n  framebus demo\n  framebus produce --bus cam0 --size 1920x1080 --fps 30\n  framebus consume --bus cam0 --algo verify --max-fps 15\n  framebus list\n  framebus top\n  framebus view --bus cam0      # then open http://127.0.0.1:8080/\n  framebus inspect --bus cam0 --json"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// What `--version` prints after the name: the version and which optional
/// features this binary was built with, e.g. `0.1.0 (features: opencv=no,
/// bridge=yes)`.
pub static VERSION: LazyLock<String> = LazyLock::new(|| {
    let yes_no = |on: bool| if on { "yes" } else { "no" };
    format!(
        "{} (features: opencv={}, bridge={})",
        env!("CARGO_PKG_VERSION"),
        yes_no(cfg!(feature = "opencv")),
        yes_no(cfg!(feature = "bridge"))
    )
});

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a bus and publish frames into it until stopped (Ctrl-C).
    #[command(
        after_help = "Prints `ready bus=NAME` on stdout once consumers may attach, and a summary line\n(with --json, a JSON object) when it stops.\n\nExamples:\n  framebus produce --bus cam0\n  framebus produce --bus bench --size 1920x1080 --fps 0 --max-consumers 4\n  framebus produce --bus diff --pins-per-consumer 2   # consumers may hold 2 frames\n  framebus produce --bus cam0 --group video           # members of `video` may consume (with FRAMEBUS_TRUST_OWNERS=<your uid>)\n  framebus produce --bus cam0 --source camera:0 --debug-bgr   # needs --features opencv\n  framebus produce --bus clip --source video:clip.mp4 --loop --fps 0"
    )]
    Produce(ProduceArgs),
    /// Attach to a bus and run an algorithm on its frames.
    #[command(
        after_help = "Prints `attached bus=NAME entry=N pid=P` on stdout once attached, and a summary\nline when it stops. With --json, that summary is a JSON object: frames, fps,\nbad_frames, reattached, coalesced, skipped (sequence gaps between frames taken),\nlatency_us {p50, p90, p99, p999, max}\n(publish -> frame pinned). fps counts intervals: (frames - 1) over the time from\nthe first frame to the last.\n\nExamples:\n  framebus consume --bus cam0 --algo verify\n  framebus consume --bus cam0 --algo busy:20 --max-fps 5 --duration 10 --json"
    )]
    Consume(ConsumeArgs),
    /// Show a bus: geometry, every slot and every consumer entry.
    #[command(
        after_help = "Reads shared memory only: it never registers or disturbs the bus.\n\nExamples:\n  framebus inspect --bus cam0\n  framebus inspect --bus cam0 --json | jq '.slots[].pins'"
    )]
    Inspect(InspectArgs),
    /// List every bus on this machine you may read: producer state,
    /// geometry, measured fps, consumers; stale buses with the command
    /// that cleans them.
    List(crate::cmd::ListArgs),
    /// A live view of one or all buses, one row per consumer (fps vs its
    /// limit, skipped, coalesced, latency, pins), refreshed like `top`.
    Top(crate::cmd::TopArgs),
    /// Serve a web page showing a bus's live picture (MJPEG) and figures.
    View(crate::cmd::ViewArgs),
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
    /// Carry a bus to other hosts over zenoh: `bridge out` on the camera
    /// host, `bridge in` on the other (build with --features bridge).
    Bridge(crate::cmd::BridgeArgs),
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
    /// Frame source: `fake` (a self-checking test pattern), `camera:INDEX`
    /// (an OpenCV camera, /dev/videoINDEX) or `video:PATH` (any video file
    /// OpenCV can decode). Cameras and videos need a build with
    /// `--features opencv`.
    #[arg(long, default_value = "fake", value_name = "fake|camera:N|video:PATH")]
    pub source: String,
    /// Frame size as WIDTHxHEIGHT: the fake camera's (default 640x480), or
    /// what to ask a camera for (the bus takes what it really delivers).
    /// Video files have their own.
    #[arg(long, value_parser = parse_size)]
    pub size: Option<(u32, u32)>,
    /// Pixel format of the bus's frames: gray8 (one byte a pixel), gray16
    /// (little-endian u16; see --bits), bgr8 or rgb8 (three bytes a pixel).
    /// The fake camera draws its pattern in any of them; a camera or video
    /// fills bgr8/rgb8 directly, gray16 only from a 16-bit capture.
    #[arg(long, default_value = "gray8", value_name = "gray8|gray16|bgr8|rgb8", value_parser = parse_format)]
    pub format: shm_layout::PixelFormat,
    /// Significant bits of a gray16 bus (10 for mono10, 12 for mono12...;
    /// default 16). Recorded in the header; values are not shifted.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=16))]
    pub bits: Option<u8>,
    /// Frames per second; 0 = as fast as possible. Default: 30 for the fake
    /// camera, the file's own rate for a video; asked of a camera, which
    /// then sets the pace.
    #[arg(long, value_parser = parse_fps)]
    pub fps: Option<f64>,
    /// Start a video file over at its end instead of stopping.
    #[arg(long = "loop")]
    pub looping: bool,
    /// Also copy each colour frame into the bus's debug BGR slot (for
    /// `framebus snapshot --bgr`); costs one frame copy per frame. Camera
    /// and video sources only.
    #[arg(long)]
    pub debug_bgr: bool,
    /// Most consumers attached at once (1-63).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=63))]
    pub max_consumers: u32,
    /// Frames each consumer may hold pinned at once (1-8); the bus has
    /// max_consumers * K + 2 slots. The default, 2, lets a loop keep the
    /// previous frame while it takes the next (Python's `img =
    /// frame.array` does); 1 saves memory: a 1920x1080 bus of 8 consumers
    /// is 26 MiB with 1, 42 MiB with 2.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=8))]
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
    /// Share the bus with the members of GROUP (a name from /etc/group or a
    /// numeric gid): the shared memory object becomes 0660 in that group,
    /// the trigger directory setgid and sticky 3770, and members' consumers
    /// are accepted; a member who is another user must trust this one
    /// (FRAMEBUS_TRUST_OWNERS=<this uid>). Default: owner only. You must be
    /// a member of GROUP (or root).
    #[arg(long, value_name = "NAME|GID", value_parser = parse_group)]
    pub group: Option<u32>,
    /// Permissions of the bus: 600 (owner only; the default without --group)
    /// or 660 (owner and group; the default with --group, and without it the
    /// producer's own group).
    #[arg(long, value_name = "600|660", value_parser = parse_mode)]
    pub mode: Option<u32>,
    /// (internal, for `bench` and `chaos`) Stop as on SIGTERM once stdin is
    /// closed: how they stop their processes on Windows, which has no SIGTERM.
    #[arg(long, hide = true)]
    pub stop_on_stdin_eof: bool,
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
    /// Process at most this many frames per second (always the newest);
    /// 0 = no limit (the default).
    #[arg(long, value_parser = parse_max_fps)]
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
    /// (for `chaos --forks`) On each SIGUSR1, keep the next frame, fork, and
    /// check that the child is refused the consumer (`Forked`) and that the
    /// held frame stays byte-identical; results on stderr (`fork check
    /// passed`/`fork check failed`) and in the JSON summary.
    #[arg(long, hide = true)]
    pub fork_check_on_usr1: bool,
    /// (internal, for `bench` and `chaos`) Stop as on SIGTERM once stdin is
    /// closed: how they stop their processes on Windows, which has no SIGTERM.
    #[arg(long, hide = true)]
    pub stop_on_stdin_eof: bool,
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
            // Zero means "no limit" for every rate flag.
            vec!["framebus", "consume", "--bus", "b", "--max-fps", "0"],
            vec!["framebus", "bench", "--max-fps", "10,0"],
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
            vec!["framebus", "consume", "--bus", "b", "--max-fps", "-1"],
            vec!["framebus", "bench", "--max-fps", "10,x"],
            vec!["framebus", "consume", "--bus", "b", "--duration", "nan"],
        ];
        for args in bad {
            assert!(Cli::try_parse_from(&args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn zero_is_no_limit() {
        let cli = Cli::try_parse_from(["framebus", "bench", "--max-fps", "10,0"]).expect("parse");
        match cli.command {
            Command::Bench(b) => assert_eq!(b.max_fps, Some(vec![10.0, 0.0])),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn version_names_the_features() {
        let v = Cli::command().render_version();
        assert!(v.contains("opencv=") && v.contains("bridge="), "{v}");
    }
}
