//! `framebus consume`.

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use framebus_consumer::{builtin, Consumer, ConsumerConfig};
use serde::{Deserialize, Serialize};

use crate::cli::ConsumeArgs;
use crate::report::{Latencies, LatencyUs, RateMeter};

/// The JSON summary `consume --json` prints last.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConsumeSummary {
    pub bus: String,
    pub algo: String,
    pub frames: u64,
    pub seconds: f64,
    pub fps: f64,
    pub bad_frames: u64,
    pub reattached: u64,
    pub coalesced: u64,
    pub latency_us: LatencyUs,
    pub last_value: Option<f64>,
}

pub fn run(args: ConsumeArgs) -> anyhow::Result<ExitCode> {
    let bus = super::bus_name(&args.bus)?;
    let mut algo = builtin(&args.algo).context("bad --algo")?;
    let config = ConsumerConfig {
        name: args.name.clone().unwrap_or_else(|| args.algo.clone()),
        max_fps: crate::cli::limit(args.max_fps),
        ..ConsumerConfig::new(bus.clone())
    };
    let stop = super::stop_flag()?;
    let mut consumer = match args.wait {
        Some(s) => Consumer::attach_wait(config, Duration::from_secs_f64(s)),
        None => Consumer::attach(config),
    }
    .map_err(|e| super::attach_error(&bus, e))?;
    if let Some(info) = consumer.info() {
        println!(
            "attached bus={bus} entry={} pid={}",
            info.entry,
            std::process::id()
        );
    }
    let mut started = Instant::now();
    let deadline = args.duration.map(|s| started + Duration::from_secs_f64(s));
    let mut warmup_end = args.warmup.map(|s| started + Duration::from_secs_f64(s));
    let mut latencies = Latencies::new();
    // The rate counts intervals between frames taken, not frames over time.
    let mut rate = RateMeter::default();
    let mut instance = 0u64;
    // Coalesced triggers of producers that are gone (each new producer's
    // counter starts from 0 again).
    let mut coalesced_past = 0u64;
    // Figures count from `started`, `frames_before` and `coalesced_before`
    // (moved to the end of the warm-up, if any).
    let (mut frames_before, mut coalesced_before) = (0u64, 0u64);
    loop {
        if warmup_end.is_some_and(|w| Instant::now() >= w) {
            warmup_end = None;
            started = Instant::now();
            frames_before = consumer.frames();
            coalesced_before = coalesced_past + consumer.coalesced();
            latencies = Latencies::new();
            rate = RateMeter::default();
        }
        if stop.load(Ordering::Relaxed) || args.frames.is_some_and(|n| consumer.frames() >= n) {
            break;
        }
        let mut wait = Duration::from_millis(100);
        if let Some(d) = deadline {
            let now = Instant::now();
            if now >= d {
                break;
            }
            wait = wait.min(d - now);
        }
        let coalesced_now = consumer.coalesced();
        let Some(frame) = consumer.next_frame(Some(wait))? else {
            continue;
        };
        if frame.instance_id() != instance {
            if instance != 0 {
                // A new producer: its counter starts again from 0.
                coalesced_past += coalesced_now;
            }
            instance = frame.instance_id();
            algo.setup(&frame.bus())
                .map_err(|m| anyhow::anyhow!("algorithm {} setup failed: {m}", args.algo))?;
        }
        latencies.record(frame.latency_ns());
        rate.tick(Instant::now());
        algo.process(&frame.view()).map_err(|m| {
            anyhow::anyhow!(
                "algorithm {} failed on frame {}: {m}",
                args.algo,
                frame.seq()
            )
        })?;
    }
    let seconds = started.elapsed().as_secs_f64();
    algo.teardown()
        .map_err(|m| anyhow::anyhow!("algorithm {} teardown failed: {m}", args.algo))?;
    let summary = algo.summary();
    let frames = consumer.frames() - frames_before;
    let report = ConsumeSummary {
        bus: bus.to_string(),
        algo: args.algo.clone(),
        frames,
        seconds,
        fps: rate.fps(),
        bad_frames: summary.bad_frames,
        reattached: consumer.reattached(),
        coalesced: (coalesced_past + consumer.coalesced()).saturating_sub(coalesced_before),
        latency_us: latencies.summary(),
        last_value: summary.last_value,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        let l = report.latency_us;
        println!(
            "bus {}: {} frames in {:.1} s ({:.1} fps), {} bad, re-attached {}x, {} triggers coalesced, latency p50 {:.0} us p99 {:.0} us max {:.0} us",
            report.bus, report.frames, report.seconds, report.fps, report.bad_frames, report.reattached, report.coalesced, l.p50, l.p99, l.max
        );
    }
    Ok(if report.bad_frames > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}
