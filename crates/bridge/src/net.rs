//! The zenoh side of the bridge (feature `zenoh`): the session, `bridge out`
//! and `bridge in`. Everything here is blocking; zenoh runs its own tokio
//! runtime on its own threads, so callers need no async code.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use framebus_consumer::{Consumer, ConsumerConfig};
use framebus_producer::ProducerConfig;
use shm_layout::{BusName, PixelFormat};
use zenoh::key_expr::KeyExpr;
use zenoh::qos::CongestionControl;
use zenoh::sample::Sample;
use zenoh::{Session, Wait};

use crate::error::{BridgeError, NetError};
use crate::payload::{encode_frame, Compression, FrameMeta, HEADER_LEN};
use crate::republish::{Outcome, Republisher};
use crate::stats::{unix_ms, BridgeStats, Role, StatsFile, STATS_INTERVAL};

/// How the bridge reaches the other host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetOptions {
    /// Endpoints to listen on, e.g. `tcp/0.0.0.0:7447`.
    pub listen: Vec<String>,
    /// Endpoints to connect to, e.g. `tcp/192.168.1.10:7447`.
    pub connect: Vec<String>,
    /// A zenoh config file (JSON5); the endpoints above are added to it.
    pub config_file: Option<PathBuf>,
}

impl NetOptions {
    /// The endpoints in words, for logs and the stats file.
    pub fn describe(&self) -> Vec<String> {
        let mut v: Vec<String> = self.listen.iter().map(|e| format!("listen {e}")).collect();
        v.extend(self.connect.iter().map(|e| format!("connect {e}")));
        if let Some(f) = &self.config_file {
            v.push(format!("config {}", f.display()));
        }
        v
    }
}

/// The key a bus is published under unless `--key` says otherwise:
/// `framebus/<bus>`.
pub fn default_key(bus: &BusName) -> String {
    format!("framebus/{bus}")
}

/// Checks that `key` is one zenoh key (no wildcards: a bridge carries one
/// bus).
pub fn check_key(key: &str) -> Result<KeyExpr<'static>, BridgeError> {
    let bad = |why: String| BridgeError::BadKey {
        key: key.to_owned(),
        why,
    };
    if key.contains('*') || key.contains('$') {
        return Err(bad(
            "a bridge carries one bus, so the key must name one key: no wildcards (* ** $*)".into(),
        ));
    }
    KeyExpr::try_from(key.to_owned()).map_err(|e| bad(e.to_string()))
}

/// Checks one endpoint: `tcp/HOST:PORT` (the only transport in this build).
fn check_endpoint(endpoint: &str) -> Result<String, BridgeError> {
    let bad = |why: &str| BridgeError::BadEndpoint {
        endpoint: endpoint.to_owned(),
        why: why.to_owned(),
    };
    let parsed: zenoh::config::EndPoint = endpoint
        .parse()
        .map_err(|e: NetError| bad(&e.to_string()))?;
    if parsed.protocol().as_str() != "tcp" {
        return Err(bad("this build of framebus carries frames over TCP only"));
    }
    let addr = parsed.address();
    let addr = addr.as_str();
    let port_ok = addr
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !port_ok {
        return Err(bad("the address needs a host and a port"));
    }
    Ok(parsed.to_string())
}

/// The zenoh configuration: the config file (if any), then the endpoints
/// from the command line, peer mode, and no multicast scouting unless the
/// file turns it on.
pub fn zenoh_config(opts: &NetOptions) -> Result<zenoh::Config, BridgeError> {
    let listen = opts
        .listen
        .iter()
        .map(|e| check_endpoint(e))
        .collect::<Result<Vec<_>, _>>()?;
    let connect = opts
        .connect
        .iter()
        .map(|e| check_endpoint(e))
        .collect::<Result<Vec<_>, _>>()?;
    if listen.is_empty() && connect.is_empty() && opts.config_file.is_none() {
        return Err(BridgeError::NoEndpoint);
    }
    let mut config = match &opts.config_file {
        Some(path) => zenoh::Config::from_file(path).map_err(|source| BridgeError::ConfigFile {
            path: path.clone(),
            source,
        })?,
        None => zenoh::Config::default(),
    };
    let from_file = opts.config_file.is_some();
    let set = |config: &mut zenoh::Config, key: &str, value: String| {
        config
            .insert_json5(key, &value)
            .map_err(|source| BridgeError::Net {
                what: format!("cannot set zenoh option {key} = {value}"),
                source,
            })
    };
    let unset = |config: &zenoh::Config, key: &str| {
        config
            .get_json(key)
            .map_or(true, |v| v.trim() == "null" || v.trim().is_empty())
    };
    let json_list = |v: &[String]| serde_json::to_string(v).unwrap_or_else(|_| "[]".to_owned());
    if !from_file || unset(&config, "mode") {
        set(&mut config, "mode", "\"peer\"".into())?;
    }
    // Endpoints: exactly those given (a peer would otherwise also listen on
    // a random port of every interface), added to a config file's own.
    for (key, given) in [("listen/endpoints", listen), ("connect/endpoints", connect)] {
        if !from_file || !given.is_empty() {
            let mut all = given;
            if from_file {
                all.extend(existing_endpoints(&config, key));
            }
            set(&mut config, key, json_list(&all))?;
        }
    }
    // Explicit configuration: no multicast scouting unless the file asks.
    if !from_file || unset(&config, "scouting/multicast/enabled") {
        set(&mut config, "scouting/multicast/enabled", "false".into())?;
    }
    // An unreachable endpoint: open the session anyway and keep retrying
    // in the background, 250 ms doubling to 4 s (the bridge logs it).
    if !from_file || unset(&config, "connect/retry") {
        set(
            &mut config,
            "connect/retry",
            "{period_init_ms: 250, period_max_ms: 4000, period_increase_factor: 2}".into(),
        )?;
    }
    if !from_file || unset(&config, "connect/exit_on_failure") {
        set(&mut config, "connect/exit_on_failure", "false".into())?;
    }
    // Congestion control "drop" for frames of many fragments: zenoh's
    // default gives a message 50 ms to get all its fragments queued, then
    // drops the rest, so on a link slower than one frame per 50 ms (a 2 MB
    // frame on 100 Mbit/s takes 166 ms) *every* frame is cut short and
    // nothing arrives. Instead: a frame whose first fragment finds no room
    // within 50 ms is dropped whole (the next one is newer anyway); a frame
    // that got in may take up to 10 s to be queued, so it arrives whole.
    // `bridge out` blocks meanwhile, never the camera's producer.
    // (A config file that leaves zenoh's default in place gets ours.)
    for (key, value, zenoh_default) in [
        (DROP_WAIT_KEY, DROP_WAIT_US, "1000"),
        (DROP_FRAGMENTS_KEY, DROP_FRAGMENTS_US, "50000"),
    ] {
        let current = config.get_json(key).unwrap_or_default();
        if !from_file || unset(&config, key) || current.trim() == zenoh_default {
            set(&mut config, key, value.to_string())?;
        }
    }
    Ok(config)
}

/// How long a dropped frame's first fragment waits for room in zenoh's
/// queue (µs).
const DROP_WAIT_US: u64 = 50_000;
const DROP_WAIT_KEY: &str = "transport/link/tx/queue/congestion_control/drop/wait_before_drop";
/// How long all of a frame's fragments may take to be queued (µs).
const DROP_FRAGMENTS_US: u64 = 10_000_000;
const DROP_FRAGMENTS_KEY: &str =
    "transport/link/tx/queue/congestion_control/drop/max_wait_before_drop_fragments";

/// The endpoints a config file already lists under `key`.
fn existing_endpoints(config: &zenoh::Config, key: &str) -> Vec<String> {
    config
        .get_json(key)
        .ok()
        .and_then(|j| serde_json::from_str::<serde_json::Value>(&j).ok())
        .map(|v| {
            // Either a list, or per mode {router: [...], peer: [...]}.
            let list = v.get("peer").cloned().unwrap_or(v);
            list.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|e| e.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        })
        .unwrap_or_default()
}

/// Opens the zenoh session.
pub fn open_session(opts: &NetOptions) -> Result<Session, BridgeError> {
    let config = zenoh_config(opts)?;
    zenoh::open(config)
        .wait()
        .map_err(|source| BridgeError::Net {
            what: format!(
                "cannot open the zenoh session ({})",
                opts.describe().join(", ")
            ),
            source,
        })
}

/// Watches the session's peers and says in the log when the other end is
/// missing (with a growing interval), found or lost. Zenoh itself retries
/// the `--connect` endpoints with backoff.
struct Connectivity {
    endpoints: String,
    connecting: bool,
    peers: u32,
    since: Instant,
    next_warning: Duration,
}

impl Connectivity {
    fn new(opts: &NetOptions) -> Self {
        Self {
            endpoints: opts.describe().join(", "),
            connecting: !opts.connect.is_empty(),
            peers: 0,
            since: Instant::now(),
            next_warning: Duration::from_secs(2),
        }
    }

    fn check(&mut self, session: &Session) -> u32 {
        let info = session.info();
        let peers = (info.peers_zid().wait().count() + info.routers_zid().wait().count()) as u32;
        if peers > 0 && self.peers == 0 {
            tracing::info!(peers, endpoints = %self.endpoints, "connected to the other end");
        } else if peers == 0 && self.peers > 0 {
            self.since = Instant::now();
            self.next_warning = Duration::from_secs(2);
            tracing::warn!(endpoints = %self.endpoints, "lost the connection to the other end; {}", if self.connecting { "reconnecting (retries back off to every 4 s)" } else { "waiting for it to connect again" });
        } else if peers == 0 && self.since.elapsed() >= self.next_warning {
            let secs = self.since.elapsed().as_secs();
            if self.connecting {
                tracing::warn!(endpoints = %self.endpoints, "no connection after {secs} s: the endpoint is unreachable or nothing listens there yet (start the other end with --listen); retrying with backoff");
            } else {
                tracing::info!(endpoints = %self.endpoints, "no peer has connected in {secs} s; waiting (start the other end with --connect to this host)");
            }
            self.next_warning = (self.next_warning * 2).min(Duration::from_secs(60));
        }
        self.peers = peers;
        peers
    }
}

/// What a running bridge reports to its caller (the CLI prints these as
/// the lines tests and scripts wait for).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The zenoh session is open and the publisher or subscriber declared.
    Ready {
        /// The key.
        key: String,
        /// The local bus.
        bus: String,
    },
    /// `out` attached to the local bus (again, after its producer restarted).
    Attached {
        /// The local bus.
        bus: String,
        /// Its geometry.
        width: u32,
        /// Its geometry.
        height: u32,
        /// Its pixel format.
        format: PixelFormat,
        /// Its significant bits per value.
        significant_bits: u8,
    },
    /// `in` created the local bus (again, after a change of geometry, of
    /// pixel format or of the camera host's producer).
    BusCreated {
        /// The local bus.
        bus: String,
        /// Its geometry.
        width: u32,
        /// Its geometry.
        height: u32,
        /// Its pixel format (the camera bus's).
        format: PixelFormat,
        /// Its significant bits per value (the camera bus's).
        significant_bits: u8,
        /// Its new instance id.
        instance_id: u64,
    },
}

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

/// Rates over the last stats interval.
struct Rates {
    at: Instant,
    frames: u64,
    bytes: u64,
}

impl Rates {
    fn new() -> Self {
        Self {
            at: Instant::now(),
            frames: 0,
            bytes: 0,
        }
    }

    /// Frames/s and bytes/s since the last call.
    fn update(&mut self, frames: u64, bytes: u64) -> (f64, f64) {
        let dt = self.at.elapsed().as_secs_f64().max(1e-6);
        let r = (
            (frames - self.frames) as f64 / dt,
            (bytes - self.bytes) as f64 / dt,
        );
        *self = Self {
            at: Instant::now(),
            frames,
            bytes,
        };
        r
    }
}

/// Frames/s and bytes/s over the whole run (the final counters' rates).
fn average(started: Instant, frames: u64, bytes: u64) -> (f64, f64) {
    let secs = started.elapsed().as_secs_f64().max(1e-6);
    (frames as f64 / secs, bytes as f64 / secs)
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

/// Closes the session, logging (not failing) if zenoh complains.
fn close(session: Session) {
    if let Err(e) = session.close().wait() {
        tracing::debug!("closing the zenoh session: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::encode_frame;
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

    #[test]
    fn keys() {
        assert!(check_key("framebus/cam0").is_ok());
        assert!(check_key("site-a/line.2/cam_0").is_ok());
        for bad in ["", "framebus/*", "framebus/**", "a//b", "/a", "a/", "a/$*b"] {
            let e = check_key(bad).unwrap_err();
            assert!(matches!(e, BridgeError::BadKey { .. }), "{bad}: {e}");
        }
        assert_eq!(default_key(&BusName::new("cam0").unwrap()), "framebus/cam0");
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            check_endpoint("tcp/127.0.0.1:7447").unwrap(),
            "tcp/127.0.0.1:7447"
        );
        assert!(check_endpoint("tcp/[::]:7447").is_ok());
        assert!(check_endpoint("tcp/localhost:80").is_ok());
        for bad in [
            "",
            "127.0.0.1:7447",
            "udp/127.0.0.1:7447",
            "tcp/127.0.0.1",
            "tcp/:80",
            "quic/h:1",
        ] {
            let e = check_endpoint(bad).unwrap_err();
            assert!(matches!(e, BridgeError::BadEndpoint { .. }), "{bad}: {e}");
            assert!(e.to_string().contains("tcp/HOST:PORT"), "{e}");
        }
    }

    #[test]
    fn config_is_explicit() {
        let opts = NetOptions {
            listen: vec!["tcp/127.0.0.1:17447".into()],
            connect: vec![],
            config_file: None,
        };
        let c = zenoh_config(&opts).unwrap();
        assert_eq!(c.get_json("mode").unwrap(), "\"peer\"");
        assert_eq!(c.get_json("scouting/multicast/enabled").unwrap(), "false");
        let listen: serde_json::Value =
            serde_json::from_str(&c.get_json("listen/endpoints").unwrap()).unwrap();
        assert_eq!(listen.to_string(), r#"["tcp/127.0.0.1:17447"]"#);
        let connect: serde_json::Value =
            serde_json::from_str(&c.get_json("connect/endpoints").unwrap()).unwrap();
        assert_eq!(connect.to_string(), "[]");
        assert_eq!(c.get_json(DROP_WAIT_KEY).unwrap(), "50000");
        assert_eq!(c.get_json(DROP_FRAGMENTS_KEY).unwrap(), "10000000");
        assert!(matches!(
            zenoh_config(&NetOptions::default()),
            Err(BridgeError::NoEndpoint)
        ));
    }

    #[test]
    fn a_config_file_may_turn_scouting_on() {
        let dir = std::env::temp_dir().join(format!("framebus-zcfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let on = dir.join("on.json5");
        std::fs::write(
            &on,
            "{ scouting: { multicast: { enabled: true } }, connect: { endpoints: [\"tcp/10.0.0.1:7447\"] } }",
        )
        .unwrap();
        let opts = NetOptions {
            listen: vec![],
            connect: vec!["tcp/127.0.0.1:17448".into()],
            config_file: Some(on),
        };
        let c = zenoh_config(&opts).unwrap();
        assert_eq!(c.get_json("scouting/multicast/enabled").unwrap(), "true");
        assert_eq!(c.get_json(DROP_FRAGMENTS_KEY).unwrap(), "10000000");
        let connect = c.get_json("connect/endpoints").unwrap();
        assert!(
            connect.contains("127.0.0.1:17448") && connect.contains("10.0.0.1:7447"),
            "{connect}"
        );
        let bad = dir.join("bad.json5");
        std::fs::write(&bad, "{ this is not json5").unwrap();
        let e = zenoh_config(&NetOptions {
            config_file: Some(bad),
            ..NetOptions::default()
        })
        .unwrap_err();
        assert!(matches!(e, BridgeError::ConfigFile { .. }), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
