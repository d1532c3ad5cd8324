//! `bridge out`, the sending side: reads the local bus as an ordinary
//! consumer and publishes each frame under the key.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use framebus_consumer::{Consumer, ConsumerConfig};
use shm_layout::BusName;
use zenoh::qos::CongestionControl;
use zenoh::Wait;

use super::{average, check_key, close, open_session, Connectivity, Event, NetOptions, Rates};
use crate::error::BridgeError;
use crate::payload::{encode_frame, Compression, FrameMeta};
use crate::stats::{unix_ms, BridgeStats, Role, StatsFile, STATS_INTERVAL};

/// `framebus bridge out`.
#[derive(Debug, Clone)]
pub struct OutOptions {
    /// The local bus to read.
    pub bus: BusName,
    /// The key to publish under.
    pub key: String,
    /// Send at most this many frames per second (always the newest).
    pub max_fps: Option<f64>,
    /// How to encode the pixels.
    pub compression: Compression,
    /// Where the other end is.
    pub net: NetOptions,
    /// Stop after this long.
    pub duration: Option<Duration>,
}

/// Attaches to `opts.bus` as an ordinary consumer and publishes its frames
/// under `opts.key`, newest first: zenoh's congestion control drops what a
/// slow link cannot carry, and the camera host's producer never waits on
/// the bridge. Runs until `stop` is set or `opts.duration` passes; returns
/// the final counters.
pub fn run_out(
    opts: &OutOptions,
    stop: &AtomicBool,
    mut on_event: impl FnMut(Event),
) -> Result<BridgeStats, BridgeError> {
    let key = check_key(&opts.key)?;
    let session = open_session(&opts.net)?;
    let publisher = session
        .declare_publisher(key)
        .congestion_control(CongestionControl::Drop)
        .wait()
        .map_err(|source| BridgeError::Net {
            what: format!("cannot declare a publisher on {}", opts.key),
            source,
        })?;
    tracing::info!(bus = %opts.bus, key = %opts.key, compression = %opts.compression, endpoints = %opts.net.describe().join(", "), "bridge out ready");
    on_event(Event::Ready {
        key: opts.key.clone(),
        bus: opts.bus.to_string(),
    });
    let started = Instant::now();
    let mut stats = BridgeStats {
        role: Role::Out,
        bus: opts.bus.to_string(),
        key: opts.key.clone(),
        pid: std::process::id(),
        endpoints: opts.net.describe(),
        compression: opts.compression.to_string(),
        started_unix_ms: unix_ms(),
        ..BridgeStats::default()
    };
    let mut file = StatsFile::new(&opts.bus, Role::Out);
    let mut conn = Connectivity::new(&opts.net);
    let mut rates = Rates::new();
    let mut next_tick = Instant::now();
    let config = ConsumerConfig {
        name: "bridge-out".into(),
        max_fps: opts.max_fps,
        ..ConsumerConfig::new(opts.bus.clone())
    };
    let mut consumer: Option<Consumer> = None;
    let mut waiting_logged = false;
    let (mut last_instance, mut last_seq) = (0u64, 0u64);
    let (mut scratch, mut buf) = (Vec::new(), Vec::new());
    loop {
        if stop.load(Ordering::Relaxed) || opts.duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        if Instant::now() >= next_tick {
            next_tick = Instant::now() + STATS_INTERVAL;
            stats.peers = conn.check(&session);
            (stats.fps, stats.bytes_per_s) = rates.update(stats.frames_sent, stats.bytes_sent);
            stats.updated_unix_ms = unix_ms();
            file.write(&stats);
        }
        let Some(c) = consumer.as_mut() else {
            match Consumer::attach(config.clone()) {
                Ok(c) => {
                    if let Some(info) = c.info() {
                        on_event(Event::Attached {
                            bus: opts.bus.to_string(),
                            width: info.layout.width,
                            height: info.layout.height,
                            format: info.layout.format,
                            significant_bits: info.layout.significant_bits,
                        });
                    }
                    consumer = Some(c);
                }
                Err(e) if e.is_transient() => {
                    if !waiting_logged {
                        waiting_logged = true;
                        tracing::info!(bus = %opts.bus, "waiting for the bus's producer: {e}");
                    }
                    std::thread::sleep(framebus_consumer::LIVENESS_INTERVAL);
                }
                Err(e) => return Err(e.into()),
            }
            continue;
        };
        let Some(frame) = c.next_frame(Some(Duration::from_millis(100)))? else {
            continue;
        };
        if frame.instance_id() == last_instance && frame.seq() > last_seq + 1 {
            stats.frames_skipped += frame.seq() - last_seq - 1;
        }
        last_instance = frame.instance_id();
        last_seq = frame.seq();
        stats.last_seq = last_seq;
        // Nobody subscribed: don't spend the camera host's CPU on encoding.
        let matching = publisher
            .matching_status()
            .wait()
            .map_or(true, |m| m.matching());
        if !matching {
            stats.frames_unmatched += 1;
            continue;
        }
        let meta = FrameMeta {
            source_instance: frame.instance_id(),
            seq: frame.seq(),
            capture_ns: frame.capture_ns(),
            publish_ns: frame.publish_ns(),
            width: frame.width(),
            height: frame.height(),
            // Per frame: a restarted producer may use another format.
            format: frame.format(),
            significant_bits: frame.significant_bits(),
        };
        encode_frame(
            &meta,
            frame.pixels(),
            frame.stride() as usize,
            opts.compression,
            &mut scratch,
            &mut buf,
        );
        // The frame is copied: let the producer have its slot back.
        drop(frame);
        let len = buf.len() as u64;
        // The buffer moves into zenoh (no copy); the next frame gets a new one.
        match publisher.put(std::mem::take(&mut buf)).wait() {
            Ok(()) => {
                stats.frames_sent += 1;
                stats.bytes_sent += len;
            }
            Err(e) => {
                stats.send_errors += 1;
                if stats.last_error.is_none() {
                    tracing::warn!(key = %opts.key, "cannot publish a frame: {e}");
                }
                stats.last_error = Some(e.to_string());
            }
        }
    }
    (stats.fps, stats.bytes_per_s) = average(started, stats.frames_sent, stats.bytes_sent);
    drop(publisher);
    close(session);
    Ok(stats)
}
