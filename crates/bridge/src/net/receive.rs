//! `bridge in`, the receiving side: subscribes to the key and republishes
//! every frame as the producer of a local bus.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use framebus_producer::ProducerConfig;
use zenoh::sample::Sample;
use zenoh::Wait;

use super::{average, check_key, close, open_session, Connectivity, Event, NetOptions, Rates};
use crate::error::BridgeError;
use crate::payload::HEADER_LEN;
use crate::republish::{Outcome, Republisher};
use crate::stats::{unix_ms, BridgeStats, Role, StatsFile, STATS_INTERVAL};

/// `framebus bridge in`.
#[derive(Debug, Clone)]
pub struct InOptions {
    /// The key to subscribe to.
    pub key: String,
    /// The local bus to produce (its name and consumer budget; the
    /// geometry, pixel format and significant bits come with the frames).
    pub producer: ProducerConfig,
    /// Where the other end is.
    pub net: NetOptions,
    /// Stop after this long.
    pub duration: Option<Duration>,
}

/// The newest sample not yet handled: the subscriber's callback replaces
/// it, so a busy bridge always takes the newest frame next and counts the
/// ones it never got to.
#[derive(Default)]
struct Mailbox {
    slot: Mutex<Option<Sample>>,
    ready: Condvar,
    overrun: AtomicU64,
}

impl Mailbox {
    fn put(&self, sample: Sample) {
        let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        if slot.replace(sample).is_some() {
            self.overrun.fetch_add(1, Ordering::Relaxed);
        }
        self.ready.notify_one();
    }

    fn take(&self, timeout: Duration) -> Option<Sample> {
        let slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        let (mut slot, _) = self
            .ready
            .wait_timeout_while(slot, timeout, |s| s.is_none())
            .unwrap_or_else(|p| p.into_inner());
        slot.take()
    }
}

/// Copies the republisher's and the mailbox's counters into `stats`.
fn take_counters(stats: &mut BridgeStats, republisher: &Republisher, mailbox: &Mailbox) {
    let c = republisher.counters();
    stats.frames_published = c.published;
    stats.frames_lost = c.lost;
    stats.dropped_stale = c.stale;
    stats.dropped_invalid = c.invalid;
    stats.buses_created = c.buses_created;
    stats.last_seq = c.last_seq;
    stats.dropped_overrun = mailbox.overrun.load(Ordering::Relaxed);
}

/// Subscribes to `opts.key` and publishes every frame received as the
/// producer of a local bus, so local consumers run unchanged. The bus is
/// created at the first frame's geometry and pixel format, and re-created
/// (new instance id; consumers re-attach by themselves) when the geometry,
/// the pixel format (or its significant bits) or the camera host's
/// producer changes. Bad payloads are dropped and counted. Runs until
/// `stop` is set or `opts.duration` passes; returns the final counters.
pub fn run_in(
    opts: &InOptions,
    stop: &AtomicBool,
    mut on_event: impl FnMut(Event),
) -> Result<BridgeStats, BridgeError> {
    let key = check_key(&opts.key)?;
    let bus = opts.producer.bus.clone();
    let mut republisher = Republisher::new(opts.producer.clone())?;
    let session = open_session(&opts.net)?;
    let mailbox = Arc::new(Mailbox::default());
    let inbox = Arc::clone(&mailbox);
    let subscriber = session
        .declare_subscriber(key)
        .callback(move |sample| inbox.put(sample))
        .wait()
        .map_err(|source| BridgeError::Net {
            what: format!("cannot subscribe to {}", opts.key),
            source,
        })?;
    tracing::info!(%bus, key = %opts.key, endpoints = %opts.net.describe().join(", "), "bridge in ready");
    on_event(Event::Ready {
        key: opts.key.clone(),
        bus: bus.to_string(),
    });
    let started = Instant::now();
    let mut stats = BridgeStats {
        role: Role::In,
        bus: bus.to_string(),
        key: opts.key.clone(),
        pid: std::process::id(),
        endpoints: opts.net.describe(),
        started_unix_ms: unix_ms(),
        ..BridgeStats::default()
    };
    let mut file = StatsFile::new(&bus, Role::In);
    let mut conn = Connectivity::new(&opts.net);
    let mut rates = Rates::new();
    let mut next_tick = Instant::now();
    let mut warned_invalid = 0u64;
    let mut head = [0u8; HEADER_LEN];
    let result = loop {
        if stop.load(Ordering::Relaxed) || opts.duration.is_some_and(|d| started.elapsed() >= d) {
            break Ok(());
        }
        if Instant::now() >= next_tick {
            next_tick = Instant::now() + STATS_INTERVAL;
            stats.peers = conn.check(&session);
            take_counters(&mut stats, &republisher, &mailbox);
            (stats.fps, stats.bytes_per_s) =
                rates.update(stats.frames_published, stats.bytes_received);
            stats.updated_unix_ms = unix_ms();
            file.write(&stats);
        }
        let Some(sample) = mailbox.take(Duration::from_millis(50)) else {
            republisher.housekeeping();
            continue;
        };
        let payload = sample.payload();
        let total = payload.len();
        stats.frames_received += 1;
        stats.bytes_received += total as u64;
        let mut reader = payload.reader();
        let n = read_up_to(&mut reader, &mut head);
        let outcome = match republisher.handle(&head[..n], total, &mut reader) {
            Ok(o) => o,
            Err(e) => break Err(e),
        };
        match outcome {
            Outcome::Published { new_bus: true, .. } => {
                if let Some(p) = republisher.producer() {
                    let l = p.layout();
                    on_event(Event::BusCreated {
                        bus: bus.to_string(),
                        width: l.width,
                        height: l.height,
                        format: l.format,
                        significant_bits: l.significant_bits,
                        instance_id: p.instance_id(),
                    });
                }
            }
            Outcome::Published { .. } => {}
            Outcome::Stale { seq } => {
                tracing::debug!(seq, "dropped a frame not newer than the last one");
            }
            Outcome::Invalid(e) => {
                // Log the first few, then every 100th: a foreign publisher
                // on the key must not flood the log.
                warned_invalid += 1;
                if warned_invalid <= 5 || warned_invalid % 100 == 0 {
                    tracing::warn!(key = %opts.key, count = warned_invalid, "dropped an invalid payload of {total} bytes: {e}");
                }
                stats.last_error = Some(e.to_string());
            }
            Outcome::NoBus(why) => {
                warned_invalid += 1;
                if warned_invalid <= 5 || warned_invalid % 100 == 0 {
                    tracing::warn!(%bus, "dropped a frame the local bus cannot hold: {why}");
                }
                stats.last_error = Some(why);
            }
        }
    };
    drop(subscriber);
    close(session);
    take_counters(&mut stats, &republisher, &mailbox);
    (stats.fps, stats.bytes_per_s) = average(started, stats.frames_published, stats.bytes_received);
    // Remove the stats file before the bus, so nothing is left behind.
    drop(file);
    republisher.shutdown();
    result.map(|()| stats)
}

/// Reads until `buf` is full or the reader ends; returns the bytes read.
fn read_up_to(r: &mut impl std::io::Read, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::{encode_frame, Compression, FrameMeta};
    use shm_layout::{BusName, PixelFormat};
    use std::sync::mpsc;

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port")
    }

    /// Polls `cond` until it holds; panics after `timeout`.
    fn eventually(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn bridge_in_drops_and_counts_foreign_payloads_and_goes_on() {
        let port = free_port();
        let endpoint = format!("tcp/127.0.0.1:{port}");
        let bus = BusName::new(&format!("bridge-net-{}", std::process::id())).unwrap();
        let key = format!("framebus-unit/{bus}");
        let session = open_session(&NetOptions {
            listen: vec![endpoint.clone()],
            ..NetOptions::default()
        })
        .expect("open the publishing session");
        let publisher = session
            .declare_publisher(key.clone())
            .wait()
            .expect("declare a publisher");
        let opts = InOptions {
            key,
            producer: ProducerConfig::new(bus.clone()),
            net: NetOptions {
                connect: vec![endpoint],
                ..NetOptions::default()
            },
            duration: Some(Duration::from_secs(60)),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, events) = mpsc::channel();
        let handle = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                run_in(&opts, &stop, |e| {
                    let _ = tx.send(e);
                })
            })
        };
        let t = Duration::from_secs(20);
        assert!(matches!(events.recv_timeout(t), Ok(Event::Ready { .. })));
        eventually("the subscriber to match", t, || {
            publisher
                .matching_status()
                .wait()
                .is_ok_and(|m| m.matching())
        });
        // Garbage until the bridge has counted some (it keeps only the
        // newest sample, so one could be replaced before it is looked at).
        eventually("an invalid payload to be counted", t, || {
            let _ = publisher.put(b"hello, not a frame".to_vec()).wait();
            let mut bad = vec![0u8; 100];
            bad[..4].copy_from_slice(b"FBBR");
            let _ = publisher.put(bad).wait();
            crate::stats::read_stats(&bus)
                .first()
                .is_some_and(|r| r.stats.dropped_invalid >= 2)
        });
        // A real frame then creates the bus.
        let mut px = vec![0u8; 64 * 4];
        shm_layout::pattern::Pattern::new(64).fill(5, &mut px, 64, 4);
        let meta = FrameMeta {
            source_instance: 1,
            seq: 5,
            capture_ns: 1,
            publish_ns: 2,
            width: 64,
            height: 4,
            format: PixelFormat::Gray8,
            significant_bits: 8,
        };
        let mut frame = Vec::new();
        encode_frame(
            &meta,
            &px,
            64,
            Compression::Lz4,
            &mut Vec::new(),
            &mut frame,
        );
        publisher.put(frame).wait().expect("put a frame");
        match events.recv_timeout(t) {
            Ok(Event::BusCreated { width, height, .. }) => assert_eq!((width, height), (64, 4)),
            other => panic!("expected the bus to be created, got {other:?}"),
        }
        stop.store(true, Ordering::Relaxed);
        let stats = handle
            .join()
            .expect("bridge thread")
            .expect("bridge in ran");
        assert!(stats.dropped_invalid >= 2, "{stats:?}");
        assert_eq!(stats.frames_published, 1, "{stats:?}");
        assert_eq!(stats.last_seq, 5, "{stats:?}");
        assert_eq!(stats.buses_created, 1, "{stats:?}");
        assert!(stats.last_error.is_some(), "{stats:?}");
        // Stopped cleanly: no bus and no stats file left.
        assert!(!std::path::Path::new(&format!("/dev/shm/framebus.{bus}")).exists());
        assert!(crate::stats::read_stats(&bus).is_empty());
        drop(publisher);
        close(session);
    }
}
