//! The zenoh side of the bridge (feature `zenoh`): the session, `bridge out`
//! and `bridge in`. Everything here is blocking; zenoh runs its own tokio
//! runtime on its own threads, so callers need no async code.
//!
//! This file holds what both directions share: the endpoints and the zenoh
//! configuration ([`NetOptions`], [`zenoh_config`], [`open_session`]), the
//! key ([`default_key`], [`check_key`]), what a running bridge reports
//! ([`Event`]), the connectivity log and the rates in the stats file.
//! `send.rs` is `bridge out` ([`run_out`]), `receive.rs` is `bridge in`
//! ([`run_in`]).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use shm_layout::{BusName, PixelFormat};
use zenoh::key_expr::KeyExpr;
use zenoh::{Session, Wait};

use crate::error::{BridgeError, NetError};

mod receive;
mod send;

pub use receive::{run_in, InOptions};
pub use send::{run_out, OutOptions};

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

/// Closes the session, logging (not failing) if zenoh complains.
fn close(session: Session) {
    if let Err(e) = session.close().wait() {
        tracing::debug!("closing the zenoh session: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
