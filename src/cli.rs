//! The command line, as clap derives it.

use std::sync::LazyLock;

use clap::{Parser, Subcommand};

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
    Produce(crate::cmd::ProduceArgs),
    /// Attach to a bus and run an algorithm on its frames.
    #[command(
        after_help = "Prints `attached bus=NAME entry=N pid=P` on stdout once attached, and a summary\nline when it stops. With --json, that summary is a JSON object: frames, fps,\nbad_frames, reattached, coalesced, skipped (sequence gaps between frames taken),\nlatency_us {p50, p90, p99, p999, max}\n(publish -> frame pinned). fps counts intervals: (frames - 1) over the time from\nthe first frame to the last.\n\nExamples:\n  framebus consume --bus cam0 --algo verify\n  framebus consume --bus cam0 --algo busy:20 --max-fps 5 --duration 10 --json"
    )]
    Consume(crate::cmd::ConsumeArgs),
    /// Show a bus: geometry, every slot and every consumer entry.
    #[command(
        after_help = "Reads shared memory only: it never registers or disturbs the bus.\n\nExamples:\n  framebus inspect --bus cam0\n  framebus inspect --bus cam0 --json | jq '.slots[].pins'"
    )]
    Inspect(crate::cmd::InspectArgs),
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
    Demo(crate::cmd::DemoArgs),
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
