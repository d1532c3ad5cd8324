//! [`run`] and [`run_source`]: the publishing loop of a [`Producer`] fed
//! by a [`FrameSource`], with pacing, housekeeping and bus re-creation.

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::error::ProducerError;
use crate::producer::{Producer, ProducerConfig, ProducerStats, HOUSEKEEPING_INTERVAL};
use crate::source::{FrameSource, SourceError};
use crate::sys;

/// How [`run`] paces and ends.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Frames per second; `None` or 0 = as fast as possible.
    pub fps: Option<f64>,
    /// Stop after this many frames.
    pub frames: Option<u64>,
    /// Stop after this long (warm-up included).
    pub duration: Option<Duration>,
    /// Reset the figures [`run`] returns after this long, so they describe
    /// the steady state only.
    pub warmup: Option<Duration>,
}

/// Publishes frames from `source` until `stop` is set, the source ends,
/// `opts.frames` were published or `opts.duration` passed. Pacing sleeps in short steps so
/// housekeeping (reclaiming dead consumers) and `stop` stay responsive.
pub fn run(
    producer: &mut Producer,
    source: &mut dyn FrameSource,
    opts: RunOptions,
    stop: &AtomicBool,
) -> Result<ProducerStats, ProducerError> {
    let period_ns = match opts.fps {
        Some(f) if f > 0.0 => Some((1e9 / f) as u64),
        _ => None,
    };
    let start = sys::monotonic_ns();
    let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    let end_ns = opts.duration.map(|d| start.saturating_add(nanos(d)));
    let mut warmup_end_ns = opts.warmup.map(|d| start.saturating_add(nanos(d)));
    let mut next_ns = start;
    let mut frames = 0u64;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let now = sys::monotonic_ns();
        if opts.frames.is_some_and(|n| frames >= n) || end_ns.is_some_and(|e| now >= e) {
            break;
        }
        if warmup_end_ns.is_some_and(|w| now >= w) {
            warmup_end_ns = None;
            producer.reset_stats();
        }
        if let Some(period) = period_ns {
            loop {
                let now = sys::monotonic_ns();
                if now >= next_ns
                    || stop.load(std::sync::atomic::Ordering::Relaxed)
                    || end_ns.is_some_and(|e| now >= e)
                {
                    break;
                }
                let step = (next_ns - now).min(HOUSEKEEPING_INTERVAL.as_nanos() as u64 / 2);
                std::thread::sleep(Duration::from_nanos(step));
                producer.housekeeping();
            }
            let now = sys::monotonic_ns();
            if stop.load(std::sync::atomic::Ordering::Relaxed) || end_ns.is_some_and(|e| now >= e) {
                break;
            }
            // Keep a steady schedule, but never burst to catch up.
            next_ns = if now > next_ns + period {
                now + period
            } else {
                next_ns + period
            };
        }
        match producer.publish(|seq, slot| source.fill(seq, slot)) {
            Ok(_) => frames += 1,
            Err(ProducerError::Source(SourceError::Ended)) => break,
            Err(e) => return Err(e),
        }
    }
    Ok(producer.stats())
}

/// Like [`run`], but owns the bus: creates it at the source's size, calls
/// `on_bus` with every bus it creates, and publishes until the same ends as
/// [`run`]'s. When the source's frames change size
/// ([`SourceError::GeometryChanged`], e.g. a camera switching resolution),
/// it shuts the bus down — consumers see end-of-file and wait for the next
/// producer — and creates it again at the new size, with a new instance id;
/// consumers re-attach by themselves. No frame of the wrong geometry is ever
/// written into a slot. `opts.frames` and `opts.duration` count over all
/// the buses; the figures returned are their sum (after `opts.warmup`).
pub fn run_source(
    config: ProducerConfig,
    source: &mut dyn FrameSource,
    opts: RunOptions,
    stop: &AtomicBool,
    mut on_bus: impl FnMut(&Producer),
) -> Result<ProducerStats, ProducerError> {
    let start = sys::monotonic_ns();
    let elapsed = || Duration::from_nanos(sys::monotonic_ns().saturating_sub(start));
    let mut total = ProducerStats::default();
    let mut frames_left = opts.frames;
    loop {
        let (width, height) = source.size();
        let mut producer = Producer::create(config.clone(), width, height)?;
        on_bus(&producer);
        let since = elapsed();
        let warmup = opts
            .warmup
            .and_then(|w| w.checked_sub(since))
            .filter(|w| !w.is_zero());
        let run_opts = RunOptions {
            frames: frames_left,
            duration: opts.duration.map(|d| d.saturating_sub(since)),
            warmup,
            ..opts
        };
        let result = run(&mut producer, source, run_opts, stop);
        let stats = producer.stats();
        if warmup.is_some_and(|w| elapsed() >= since + w) {
            // This bus's figures were reset after the warm-up: drop the
            // earlier buses' too.
            total = ProducerStats::default();
        }
        total.frames += stats.frames;
        total.reclaimed += stats.reclaimed;
        total.publish_ns_total += stats.publish_ns_total;
        total.fill_ns_total += stats.fill_ns_total;
        // Every frame this bus published counts, warm-up included (its
        // figures may have been reset after the warm-up).
        let published = producer.frames_published();
        frames_left = frames_left.map(|n| n.saturating_sub(published));
        match result {
            Err(ProducerError::BusTruncated { .. }) => {
                tracing::warn!(bus = %config.bus, "BusTruncated: another process shrank the bus object; re-creating the bus");
                drop(producer);
                let done = stop.load(std::sync::atomic::Ordering::Relaxed)
                    || frames_left == Some(0)
                    || opts.duration.is_some_and(|d| elapsed() >= d);
                if done {
                    return Ok(total);
                }
            }
            Err(ProducerError::Source(SourceError::GeometryChanged {
                width: w,
                height: h,
            })) => {
                tracing::info!(bus = %config.bus, old = %format!("{width}x{height}"), new = %format!("{w}x{h}"), "the source changed geometry: re-creating the bus");
                // Clean shutdown: consumers see EOF and re-attach to the
                // new bus.
                drop(producer);
                if source.size() == (width, height) {
                    return Err(SourceError::Failed(format!(
                        "the source reported new frames of {w}x{h} but still says its size is {width}x{height}"
                    ))
                    .into());
                }
                let done = stop.load(std::sync::atomic::Ordering::Relaxed)
                    || frames_left == Some(0)
                    || opts.duration.is_some_and(|d| elapsed() >= d);
                if done {
                    return Ok(total);
                }
            }
            Err(e) => return Err(e),
            Ok(_) => return Ok(total),
        }
    }
}
