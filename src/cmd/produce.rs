//! `framebus produce`.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Args;
use framebus_producer::{
    open_source, run_source, Captured, FrameSource, ProducerConfig, ProducerError, RunOptions,
    SlotWriter, SourceError, SourceOptions, SourceSpec, SourceTimings,
};
use serde::Serialize;

use crate::parse::{parse_format, parse_fps, parse_group, parse_mode, parse_seconds, parse_size};
use crate::report::RateMeter;

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

#[derive(Debug, Serialize)]
struct Summary {
    bus: String,
    source: String,
    width: u32,
    height: u32,
    format: &'static str,
    significant_bits: u8,
    frames: u64,
    seconds: f64,
    fps: f64,
    publish_us_mean: f64,
    fill_us_mean: f64,
    /// Camera read / video decode per frame (camera and video sources).
    decode_us_mean: f64,
    /// BGR -> gray straight into the slot, per frame.
    convert_us_mean: f64,
    /// Copy into the debug BGR slot per frame (with --debug-bgr).
    bgr_us_mean: f64,
    /// Times the bus was re-created because the source changed geometry.
    recreated: u64,
    reclaimed: u64,
}

/// Default fake-camera rate (its default size is `open_source`'s).
const FAKE_FPS: f64 = 30.0;

pub fn run(args: ProduceArgs) -> anyhow::Result<ExitCode> {
    let bus = super::bus_name(&args.bus)?;
    let spec = SourceSpec::parse(&args.source)?;
    match &spec {
        SourceSpec::Fake if args.debug_bgr => bail!(
            "--debug-bgr needs a colour source: the fake camera makes gray frames only; use --source camera:N or video:PATH, or leave out --debug-bgr"
        ),
        SourceSpec::Fake | SourceSpec::Camera(_) if args.looping => {
            bail!("--loop applies to video files only (--source video:PATH)")
        }
        SourceSpec::Video(path) if args.size.is_some() => bail!(
            "--size does not apply to --source video:{}: the bus takes the file's own frame size",
            path.display()
        ),
        _ => {}
    }
    if args.bits.is_some() && args.format != shm_layout::PixelFormat::Gray16 {
        bail!(
            "--bits applies to --format gray16 only ({} has 8 significant bits)",
            args.format
        );
    }
    let opts = SourceOptions {
        size: args.size,
        fps: args.fps,
        looping: args.looping,
    };
    let mut source = open_source(&spec, &opts).context("cannot open the frame source")?;
    // Pacing: the fake camera at --fps (30 by default); a video at --fps,
    // else its own rate; a camera sets its own pace (a read blocks until
    // the next frame), so the producer does not pace it.
    let fps = match spec {
        SourceSpec::Fake => args.fps.unwrap_or(FAKE_FPS),
        SourceSpec::Video(_) => args.fps.or(source.native_fps()).unwrap_or(FAKE_FPS),
        SourceSpec::Camera(_) => 0.0,
    };
    let nominal_fps = match spec {
        SourceSpec::Camera(_) => source.native_fps().unwrap_or(0.0),
        _ => fps,
    };
    let (mode, group) = sharing(args.mode, args.group)?;
    let config = ProducerConfig {
        mode,
        group,
        max_consumers: args.max_consumers,
        pins_per_consumer: args.pins_per_consumer,
        nominal_fps,
        debug_bgr: args.debug_bgr,
        ..ProducerConfig::new(bus.clone()).with_format(args.format, args.bits.unwrap_or(0))
    };
    let stop = super::stop_flag_or_stdin_eof(args.stop_on_stdin_eof)?;
    let started = Instant::now();
    let secs = std::time::Duration::from_secs_f64;
    let mut source = Metered {
        inner: source.as_mut(),
        from: started + args.warmup.map_or(std::time::Duration::ZERO, secs),
        rate: RateMeter::default(),
    };
    let run_opts = RunOptions {
        fps: Some(fps),
        frames: args.frames,
        duration: args.duration.map(secs),
        warmup: args.warmup.map(secs),
    };
    let mut buses = 0u64;
    let mut geometry = source.size();
    let mut significant_bits = 8;
    let mut ready_err = None;
    let result = run_source(config, &mut source, run_opts, &stop, |producer| {
        buses += 1;
        let layout = producer.layout();
        geometry = (layout.width, layout.height);
        significant_bits = layout.significant_bits;
        if buses == 1 {
            if let Err(e) = crate::out::write_all(format!("ready bus={bus}\n").as_bytes()) {
                ready_err = Some(e);
            }
        } else {
            eprintln!(
                "bus {bus} re-created at {}x{} (the source's frame size changed); consumers re-attach by themselves",
                layout.width, layout.height
            );
        }
    });
    if let Some(e) = ready_err {
        return Err(e);
    }
    let stats = result.map_err(|e| {
        let what = match (&e, buses) {
            (ProducerError::BusBusy { .. }, 0) => {
                format!("refused to start a second producer on bus {bus}")
            }
            (_, 0) => format!("cannot create bus {bus}"),
            _ => format!("producer of bus {bus} stopped"),
        };
        anyhow::Error::new(e).context(what)
    })?;
    let timings = source.timings();
    // The figures cover the time after the warm-up.
    let elapsed = started.elapsed().as_secs_f64();
    let seconds = match args.warmup {
        Some(w) if elapsed > w => elapsed - w,
        _ => elapsed,
    };
    let per_frame = |ns: u64, frames: u64| {
        if frames == 0 {
            0.0
        } else {
            ns as f64 / frames as f64 / 1000.0
        }
    };
    let summary = Summary {
        bus: bus.to_string(),
        source: spec.to_string(),
        width: geometry.0,
        height: geometry.1,
        format: args.format.name(),
        significant_bits,
        frames: stats.frames,
        seconds,
        fps: source.rate.fps(),
        publish_us_mean: per_frame(stats.publish_ns_total, stats.frames),
        fill_us_mean: per_frame(stats.fill_ns_total, stats.frames),
        decode_us_mean: per_frame(timings.decode_ns_total, timings.frames),
        convert_us_mean: per_frame(timings.convert_ns_total, timings.frames),
        bgr_us_mean: per_frame(timings.bgr_ns_total, timings.frames),
        recreated: buses.saturating_sub(1),
        reclaimed: stats.reclaimed,
    };
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        let mut line = format!(
            "bus {}: {} frames in {:.1} s ({:.1} fps), publish {:.1} us/frame (fill {:.1} us)",
            summary.bus,
            summary.frames,
            summary.seconds,
            summary.fps,
            summary.publish_us_mean,
            summary.fill_us_mean
        );
        if timings.frames > 0 {
            line += &format!(
                " [decode {:.1} us, convert to gray {:.1} us, BGR copy {:.1} us]",
                summary.decode_us_mean, summary.convert_us_mean, summary.bgr_us_mean
            );
        }
        line += &format!(", {} consumers reclaimed", summary.reclaimed);
        if summary.recreated > 0 {
            line += &format!(", bus re-created {} time(s)", summary.recreated);
        }
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

/// A source that notes when each frame is filled (after the warm-up), so
/// the summary's fps counts intervals between frames, not frames over the
/// whole run.
struct Metered<'a> {
    inner: &'a mut dyn FrameSource,
    /// When the warm-up ends.
    from: Instant,
    rate: RateMeter,
}

impl FrameSource for Metered<'_> {
    fn size(&self) -> (u32, u32) {
        self.inner.size()
    }

    fn native_fps(&self) -> Option<f64> {
        self.inner.native_fps()
    }

    fn fill(&mut self, seq: u64, slot: &mut SlotWriter<'_>) -> Result<Captured, SourceError> {
        let captured = self.inner.fill(seq, slot)?;
        let now = Instant::now();
        if now >= self.from {
            self.rate.tick(now);
        }
        Ok(captured)
    }

    fn timings(&self) -> SourceTimings {
        self.inner.timings()
    }
}

/// The bus's mode and group from `--mode` and `--group`: owner-only unless
/// either asks to share; `--mode 660` alone shares with our own group.
fn sharing(mode: Option<u32>, group: Option<u32>) -> anyhow::Result<(u32, Option<u32>)> {
    match (mode, group) {
        (None | Some(0o600), None) => Ok((0o600, None)),
        (Some(0o600), Some(g)) => {
            bail!("--group {g} shares the bus but --mode 600 keeps it owner-only: drop one of them")
        }
        (_, Some(g)) => Ok((0o660, Some(g))),
        #[cfg(unix)]
        (Some(m), None) => Ok((m, Some(rustix::process::getegid().as_raw()))),
        #[cfg(not(unix))]
        (Some(_), None) => bail!("--mode and --group are Linux permissions; on Windows a bus is this user's alone, or shared with the SID in FRAMEBUS_WINDOWS_SHARE_SID (see doc/WINDOWS.md)"),
    }
}
