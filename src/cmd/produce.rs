//! `framebus produce`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{bail, Context};
use framebus_producer::{
    run as run_producer, FakeSource, FrameSource, Producer, ProducerConfig, RunOptions,
};
use serde::Serialize;

use crate::cli::ProduceArgs;

#[derive(Debug, Serialize)]
struct Summary {
    bus: String,
    frames: u64,
    seconds: f64,
    fps: f64,
    publish_us_mean: f64,
    fill_us_mean: f64,
    reclaimed: u64,
}

pub fn run(args: ProduceArgs) -> anyhow::Result<ExitCode> {
    let bus = super::bus_name(&args.bus)?;
    let (w, h) = args.size;
    let mut source: Box<dyn FrameSource> = match args.source.as_str() {
        "fake" => Box::new(FakeSource::new(w, h)),
        other => bail!("unknown --source {other:?}: this build knows `fake` (cameras and video files come with the opencv feature)"),
    };
    let (w, h) = source.size();
    let config = ProducerConfig {
        max_consumers: args.max_consumers,
        pins_per_consumer: args.pins_per_consumer,
        nominal_fps: args.fps,
        ..ProducerConfig::new(bus.clone())
    };
    let stop = super::stop_flag()?;
    let mut producer = Producer::create(config, w, h)
        .with_context(|| format!("cannot start producing bus {bus}"))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready bus={bus}")?;
    out.flush()?;
    drop(out);
    let started = std::time::Instant::now();
    let secs = std::time::Duration::from_secs_f64;
    let opts = RunOptions {
        fps: Some(args.fps),
        frames: args.frames,
        duration: args.duration.map(secs),
        warmup: args.warmup.map(secs),
    };
    let result = run_producer(&mut producer, source.as_mut(), opts, &stop);
    producer.shutdown();
    let stats = result.with_context(|| format!("producer of bus {bus} stopped"))?;
    // The figures cover the time after the warm-up.
    let elapsed = started.elapsed().as_secs_f64();
    let seconds = match args.warmup {
        Some(w) if elapsed > w => elapsed - w,
        _ => elapsed,
    };
    let per_frame = |ns: u64| {
        if stats.frames == 0 {
            0.0
        } else {
            ns as f64 / stats.frames as f64 / 1000.0
        }
    };
    let summary = Summary {
        bus: bus.to_string(),
        frames: stats.frames,
        seconds,
        fps: stats.frames as f64 / seconds.max(1e-9),
        publish_us_mean: per_frame(stats.publish_ns_total),
        fill_us_mean: per_frame(stats.fill_ns_total),
        reclaimed: stats.reclaimed,
    };
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        eprintln!(
            "bus {}: {} frames in {:.1} s ({:.1} fps), publish {:.1} us/frame (fill {:.1} us), {} consumers reclaimed",
            summary.bus, summary.frames, summary.seconds, summary.fps, summary.publish_us_mean, summary.fill_us_mean, summary.reclaimed
        );
    }
    Ok(ExitCode::SUCCESS)
}
